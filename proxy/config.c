/* config.c - loads the JSON config file (DESIGN §4b), validates every key with
 * an error that names it, fills in defaults and reads platform keys from the
 * environment. */
#include "common.h"

#include "config.h"
#include "config_json.h"
#include "httpparse.h"
#include "secret.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest price accepted (micro-USD per unit of the field): $1M per 1M
 * tokens. Keeps units x price far from int64 overflow in pricing.c. */
#define PRICE_MAX INT64_C(1000000000000)

/* An "upstreams" value: the simulator instead of the provider. */
#define SIMULATE "simulate"

static const char *const top_keys[] = {
    "listen",    "admin_listen",     "tls",           "workers",       "store",     "usage",
    "upstreams", "upstream_ca_file", "platform_keys", "session_ttl_s", "log_level", "limits",
    "pricing",   "balance",          "simulate",
};
static const char *const tls_keys[] = {"listen", "cert_file", "key_file"};
static const char *const store_keys[] = {
    "backend", "path", "url", "password_env", "timeout_ms", "connect_timeout_ms", "on_down"};
/* store keys that only the redis backend reads. */
static const char *const redis_only_keys[] = {"password_env", "timeout_ms", "connect_timeout_ms",
                                              "on_down"};
static const char *const usage_keys[] = {"jsonl_path", "spool_dir", "ws_interval_s"};
static const char *const balance_keys[] = {"hold_micros", "ws_grace_micros", "hold_ttl_s"};
/* The lines a hold may be configured for (DESIGN §3.4), "default" first. */
static const char *const hold_lines[CONFIG_HOLD_LINES] = {
    "default", "llm", "embeddings", "tts", "stt", "realtime", "platform"};
static const char *const log_levels[] = {"debug", "info", "warn", "error"};

/* One "limits" entry: where it lives in struct config_limits, its default
 * and its accepted range. */
struct limit_def {
    const char *key;
    size_t offset;
    bool is_int; /* int field (else size_t) */
    int64_t def, min, max;
};

#define LIMIT_SZ(f, d, lo, hi)                                                                     \
    {                                                                                              \
#f, offsetof(struct config_limits, f), false, d, lo, hi                                    \
    }
#define LIMIT_MS(f, d, lo, hi)                                                                     \
    {                                                                                              \
#f, offsetof(struct config_limits, f), true, d, lo, hi                                     \
    }

static const struct limit_def limit_defs[] = {
    LIMIT_SZ(max_request_line, 8192, 256, 1048576),
    LIMIT_SZ(max_header_bytes, 32768, 1024, 4194304),
    LIMIT_SZ(max_headers, 100, 8, HTTPPARSE_MAX_HEADERS),
    LIMIT_SZ(max_body_bytes, 33554432, 1024, INT64_C(4294967296)),
    LIMIT_MS(header_timeout_ms, 10000, 100, 3600000),
    LIMIT_MS(idle_timeout_ms, 60000, 100, 86400000),
    LIMIT_MS(upstream_connect_timeout_ms, 10000, 100, 600000),
    LIMIT_MS(upstream_timeout_ms, 600000, 0, 86400000),
    LIMIT_MS(shutdown_timeout_ms, 15000, 0, 3600000),
    LIMIT_SZ(client_high_watermark, 262144, 4096, 1073741824),
    LIMIT_MS(body_timeout_ms, 300000, 100, 86400000),
    LIMIT_SZ(max_connections, 8192, 1, 1000000),
    LIMIT_SZ(max_connections_per_client, 1024, 1, 1000000),
    LIMIT_MS(ws_first_message_timeout_ms, 2000, 100, 60000),
    LIMIT_SZ(ws_first_message_max_bytes, 65536, 1024, 16777216),
};

/* Price fields in file order, with their place in struct config_price. */
struct price_def {
    const char *key;
    size_t offset;
    unsigned field; /* PROVIDER_PRICE_* */
};

#define PRICE_FIELD(f, bit)                                                                        \
    {                                                                                              \
#f, offsetof(struct config_price, f), bit                                                  \
    }

static const struct price_def price_defs[] = {
    PRICE_FIELD(input_per_1m, PROVIDER_PRICE_INPUT),
    PRICE_FIELD(cached_input_per_1m, PROVIDER_PRICE_CACHED_INPUT),
    PRICE_FIELD(output_per_1m, PROVIDER_PRICE_OUTPUT),
    PRICE_FIELD(audio_input_per_1m, PROVIDER_PRICE_AUDIO_INPUT),
    PRICE_FIELD(audio_output_per_1m, PROVIDER_PRICE_AUDIO_OUTPUT),
    PRICE_FIELD(characters_per_1m, PROVIDER_PRICE_CHARACTERS),
    PRICE_FIELD(audio_per_minute, PROVIDER_PRICE_AUDIO_MINUTE),
    PRICE_FIELD(session_per_minute, PROVIDER_PRICE_SESSION_MINUTE),
};

/* Hostname per RFC 1123: dot-separated labels of letters, digits and inner
 * hyphens, each 1..63, total at most 253. */
static bool valid_hostname(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)ch) && !(ch == '-' && label > 0))
            return false;
        if (++label > 63)
            return false;
    }
    return h[len - 1] != '-' && h[len - 1] != '.';
}

/* True when h looks like an IPv4 literal (digits and dots only): such a host
 * must then be a valid dotted quad, not a "hostname" like 300.1.1.1. */
static bool looks_ipv4(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)h[i]) && h[i] != '.')
            return false;
    return len > 0;
}

int config_parse_address(const char *addr, char *host, size_t host_size, int *port, char *err,
                         size_t err_size)
{
    char show[96];
    const char *colon, *h;
    size_t hlen;
    config_json_shown(addr, show, sizeof(show));
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            goto not_host_port;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp))
            goto bad_ipv6;
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            goto bad_ipv6;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || colon == addr)
            goto not_host_port;
        h = addr;
        hlen = (size_t)(colon - addr);
        if (memchr(h, ':', hlen) != NULL) {
            snprintf(err, err_size,
                     "\"%s\": an IPv6 address must be in brackets (e.g. \"[::1]:8080\")", show);
            return -1;
        }
        if (looks_ipv4(h, hlen)) {
            char tmp[INET_ADDRSTRLEN + 1];
            struct in_addr a4;
            if (hlen >= sizeof(tmp))
                goto bad_ipv4;
            memcpy(tmp, h, hlen);
            tmp[hlen] = '\0';
            if (inet_pton(AF_INET, tmp, &a4) != 1)
                goto bad_ipv4;
        } else if (!valid_hostname(h, hlen)) {
            snprintf(err, err_size, "\"%s\": \"%.*s\" is not a valid host name", show,
                     (int)MIN(hlen, 64), h);
            return -1;
        }
    }

    /* The port: 1-5 digits, 1..65535, nothing after it. */
    const char *ps = colon + 1;
    size_t plen = strlen(ps);
    if (plen == 0)
        goto not_host_port;
    long pv = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char)ps[i]) || i >= 5)
            goto bad_port;
        pv = pv * 10 + (ps[i] - '0');
    }
    if (pv < 1 || pv > 65535)
        goto bad_port;
    if (hlen + 1 > host_size) {
        snprintf(err, err_size, "\"%s\": host is too long", show);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)pv;
    return 0;

not_host_port:
    snprintf(err, err_size, "\"%s\" is not host:port (e.g. \"127.0.0.1:8080\")", show);
    return -1;
bad_ipv6:
    snprintf(err, err_size, "\"%s\": not a valid IPv6 address in brackets", show);
    return -1;
bad_ipv4:
    snprintf(err, err_size, "\"%s\": not a valid IPv4 address", show);
    return -1;
bad_port:
    snprintf(err, err_size, "\"%s\": port must be a number from 1 to 65535", show);
    return -1;
}

static int get_address(struct config_json *p, json_t *obj, const char *parent, const char *key,
                       const char *def, char **out)
{
    if (config_json_string(p, obj, parent, key, def, out) == -1)
        return -1;
    if (*out == NULL)
        return 0;
    char host[256], msg[256], path[KEYPATH_MAX];
    int port;
    if (config_parse_address(*out, host, sizeof(host), &port, msg, sizeof(msg)) == -1) {
        config_json_path(path, sizeof(path), parent, key);
        return config_json_fail(p, "%s: %s", path, msg);
    }
    return 0;
}

/* Optional file path that must be readable now: a typo in a certificate path
 * should stop --check-config, not the first TLS handshake. */
static int get_readable_file(struct config_json *p, json_t *obj, const char *parent,
                             const char *key, char **out)
{
    if (config_json_string(p, obj, parent, key, NULL, out) == -1)
        return -1;
    if (*out != NULL && access(*out, R_OK) == -1) {
        char path[KEYPATH_MAX], show[160];
        config_json_path(path, sizeof(path), parent, key);
        return config_json_fail(p, "%s: cannot read \"%s\": %s", path,
                                config_json_shown(*out, show, sizeof(show)), strerror(errno));
    }
    return 0;
}

static int count_substr(const char *s, const char *sub)
{
    int n = 0;
    size_t sl = strlen(sub);
    for (const char *q = strstr(s, sub); q != NULL; q = strstr(q + sl, sub))
        n++;
    return n;
}

/* An upstream base URL: http(s)://host[:port][/prefix], no credentials, no
 * query or fragment. Trailing slashes are dropped so routes can append
 * "/v1/..." without producing "//". */
static int check_upstream_url(struct config_json *p, const char *path, char *url, bool region)
{
    char show[160];
    config_json_shown(url, show, sizeof(show));
    const char *rest;
    if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else
        return config_json_fail(p, "%s: \"%s\" must start with http:// or https://", path, show);
    if (strpbrk(url, "?#") != NULL)
        return config_json_fail(p, "%s: \"%s\" must not contain a query or fragment", path, show);
    size_t alen = strcspn(rest, "/");
    if (memchr(rest, '@', alen) != NULL)
        return config_json_fail(
            p,
            "%s: \"%s\" must not contain credentials (user@host); keys come from "
            "platform_keys",
            path, show);
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return config_json_fail(p, "%s: \"%s\" must not contain spaces or control characters",
                                    path, show);
    /* Host part: up to the port colon (or the closing bracket of [v6]). */
    size_t hlen = alen;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', alen);
        hlen = close ? (size_t)(close - rest) + 1 : 0;
    } else {
        const char *colon = memchr(rest, ':', alen);
        if (colon != NULL)
            hlen = (size_t)(colon - rest);
    }
    if (hlen == 0 || (rest[0] == '[' && hlen <= 2))
        return config_json_fail(p, "%s: \"%s\" has no host", path, show);
    if (hlen < alen) {
        const char *ps = rest + hlen;
        size_t plen = alen - hlen;
        long pv = 0;
        bool ok = plen >= 2 && plen <= 6 && ps[0] == ':';
        for (size_t i = 1; ok && i < plen; i++) {
            ok = isdigit((unsigned char)ps[i]);
            pv = pv * 10 + (ps[i] - '0');
        }
        if (!ok || pv < 1 || pv > 65535)
            return config_json_fail(p, "%s: \"%s\" has a bad port (1-65535)", path, show);
    }
    int regions = count_substr(url, "{region}");
    if (region && regions != 1)
        return config_json_fail(
            p,
            "%s: \"%s\" must contain \"{region}\" exactly once (the host of the key's "
            "region)",
            path, show);
    if (!region && regions != 0)
        return config_json_fail(p, "%s: \"{region}\" is only meaningful in region templates", path);
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/' && url + len - 1 >= rest + alen)
        url[--len] = '\0';
    return 0;
}

/* "upstreams": one key per provider host, named by the providers. */
static int parse_upstreams(struct config_json *p, json_t *root)
{
    struct config *cfg = p->cfg;
    json_t *obj = config_json_get(root, "upstreams");
    const char *keys[PROVIDER_MAX * PROVIDER_HOST_MAX];
    size_t n_keys = 0;
    for (size_t i = 0; i < provider_count(); i++)
        for (size_t h = 0; h < provider_at(i)->n_hosts; h++)
            keys[n_keys++] = provider_at(i)->hosts[h].config_key;
    if (obj != NULL && (config_json_object(p, obj, "upstreams") == -1 ||
                        config_json_keys(p, obj, "upstreams", keys, n_keys) == -1))
        return -1;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        for (size_t h = 0; h < pr->n_hosts; h++) {
            const struct provider_host *ph = &pr->hosts[h];
            char path[KEYPATH_MAX];
            config_json_path(path, sizeof(path), "upstreams", ph->config_key);
            if (config_json_string(p, obj, "upstreams", ph->config_key, ph->default_url,
                                   &cfg->upstreams[i][h]) == -1)
                return -1;
            char *url = cfg->upstreams[i][h];
            if (strcmp(url, SIMULATE) == 0) {
                /* The simulator in this process: its URL once it runs. */
                cfg->upstream_kind[i][h] = CONFIG_UPSTREAM_SIM_LOCAL;
                free(url);
                cfg->upstreams[i][h] = NULL;
                continue;
            }
            if (strncmp(url, SIMULATE ":", sizeof(SIMULATE)) == 0) {
                /* A byok-sim elsewhere, its records marked all the same. */
                cfg->upstream_kind[i][h] = CONFIG_UPSTREAM_SIM_REMOTE;
                memmove(url, url + sizeof(SIMULATE), strlen(url + sizeof(SIMULATE)) + 1);
            }
            if (check_upstream_url(p, path, url, ph->region) == -1)
                return -1;
        }
    }
    return 0;
}

bool config_upstream_simulated(const struct config *cfg, const struct provider *p, int host)
{
    if (host < 0 || host >= PROVIDER_HOST_MAX)
        return false;
    return cfg->upstream_kind[provider_index(p)][host] != CONFIG_UPSTREAM_REAL;
}

const char *config_upstream_ca_pem(const struct config *cfg, const struct provider *p, int host)
{
    if (p == NULL || host < 0 || (size_t)host >= p->n_hosts)
        return NULL;
    return cfg->upstream_kind[provider_index(p)][host] == CONFIG_UPSTREAM_SIM_LOCAL
               ? cfg->sim_ca_pem
               : NULL;
}

bool config_simulated_charges(const struct config *cfg)
{
    return cfg->simulate.charge;
}

int config_set_upstream(struct config *cfg, size_t provider, size_t host, const char *url)
{
    char *copy = strdup(url);
    if (copy == NULL)
        return -1;
    free(cfg->upstreams[provider][host]);
    cfg->upstreams[provider][host] = copy;
    return 0;
}

/* Every host of pr is simulated: it needs no platform key of its own. */
static bool all_simulated(const struct config *cfg, const struct provider *pr)
{
    for (size_t h = 0; h < pr->n_hosts; h++)
        if (!config_upstream_simulated(cfg, pr, (int)h))
            return false;
    return true;
}

static bool valid_env_name(const char *s)
{
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (const char *q = s; *q; q++)
        if (!(isalnum((unsigned char)*q) || *q == '_'))
            return false;
    return strlen(s) <= 128;
}

/* A platform header's value goes into requests as written: printable ASCII. */
static int check_header_value(struct config_json *p, const char *path, const char *v)
{
    for (const char *q = v; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            return config_json_fail(p, "%s: must be printable ASCII (it is sent as a header value)",
                                    path);
    return 0;
}

static int parse_platform_key(struct config_json *p, const struct provider *pr, json_t *e,
                              struct config_platform_key *pk)
{
    const char *keys[2 + PROVIDER_HDR_MAX];
    size_t n_keys = 0;
    char path[KEYPATH_MAX], kpath[KEYPATH_MAX];
    keys[n_keys++] = "key_env";
    if (pr->region)
        keys[n_keys++] = "region";
    for (size_t h = 0; h < pr->n_platform_headers; h++)
        keys[n_keys++] = pr->platform_headers[h].config_key;
    config_json_path(path, sizeof(path), "platform_keys", pr->name);
    config_json_path(kpath, sizeof(kpath), path, "key_env");
    if (config_json_object(p, e, path) == -1 || config_json_keys(p, e, path, keys, n_keys) == -1 ||
        config_json_string(p, e, path, "key_env", NULL, &pk->key_env) == -1)
        return -1;
    if (pk->key_env == NULL)
        return config_json_fail(
            p,
            "%s: required (the name of the environment variable holding the key, e.g. "
            "\"%s\")",
            kpath, pr->key_env_example ? pr->key_env_example : "PROVIDER_API_KEY");
    if (!valid_env_name(pk->key_env)) {
        char show[160];
        return config_json_fail(p,
                                "%s: \"%s\" is not a valid environment variable name "
                                "([A-Za-z_][A-Za-z0-9_]*)",
                                kpath, config_json_shown(pk->key_env, show, sizeof(show)));
    }
    /* Only the variable's name is ever printed, never its value. */
    const char *val = getenv(pk->key_env);
    if ((val == NULL || val[0] == '\0') && all_simulated(p->cfg, pr)) {
        /* A simulated provider runs without the platform's key. */
        val = CONFIG_SIM_PLATFORM_KEY;
        pk->placeholder = true;
    }
    if (val == NULL)
        return config_json_fail(p, "%s: environment variable %s is not set", kpath, pk->key_env);
    if (val[0] == '\0')
        return config_json_fail(p, "%s: environment variable %s is empty", kpath, pk->key_env);
    if ((pk->key = secret_strdup(val)) == NULL)
        return config_json_fail(p, "%s: out of memory", kpath);
    if (pr->region) {
        char rpath[KEYPATH_MAX], msg[256];
        config_json_path(rpath, sizeof(rpath), path, "region");
        if (config_json_string(p, e, path, "region", NULL, &pk->region) == -1)
            return -1;
        if (pk->region == NULL)
            return config_json_fail(
                p, "%s: required: the short region of the platform %s key (e.g. \"%s\")", rpath,
                pr->display, pr->region_example ? pr->region_example : "");
        if (pr->check_region(pk->region, msg, sizeof(msg)) == -1)
            return config_json_fail(p, "%s: %s", rpath, msg);
    }
    for (size_t h = 0; h < pr->n_platform_headers; h++) {
        char hpath[KEYPATH_MAX];
        const char *key = pr->platform_headers[h].config_key;
        config_json_path(hpath, sizeof(hpath), path, key);
        if (config_json_string(p, e, path, key, NULL, &pk->headers[h]) == -1 ||
            (pk->headers[h] != NULL && check_header_value(p, hpath, pk->headers[h]) == -1))
            return -1;
    }
    return 0;
}

static int parse_platform_keys(struct config_json *p, json_t *root)
{
    json_t *obj = config_json_get(root, "platform_keys");
    const char *names[PROVIDER_MAX];
    for (size_t i = 0; i < provider_count(); i++)
        names[i] = provider_at(i)->name;
    if (obj != NULL && (config_json_object(p, obj, "platform_keys") == -1 ||
                        config_json_keys(p, obj, "platform_keys", names, provider_count()) == -1))
        return -1;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        struct config_platform_key *pk = &p->cfg->platform_keys[i];
        json_t *e = config_json_get(obj, names[i]);
        if (e != NULL && parse_platform_key(p, pr, e, pk) == -1)
            return -1;
        if (e != NULL || !all_simulated(p->cfg, pr))
            continue;
        /* Simulated and no entry: a placeholder, so credential injection
         * still runs (the simulator wants a key where the provider does). */
        pk->placeholder = true;
        if (pr->region && pr->region_example == NULL)
            return config_json_fail(p,
                                    "platform_keys.%s: required with a simulated upstream: "
                                    "{\"key_env\": ..., \"region\": ...} (the region of its hosts)",
                                    pr->name);
        if ((pk->key = secret_strdup(CONFIG_SIM_PLATFORM_KEY)) == NULL ||
            (pr->region && (pk->region = strdup(pr->region_example)) == NULL))
            return config_json_fail(p, "platform_keys.%s: out of memory", pr->name);
    }
    return 0;
}

/* A model key: the exact name, a prefix ending in '*', or "*" alone. */
static bool valid_model_key(const char *m)
{
    size_t len = strlen(m);
    if (len == 0 || len >= MODEL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)m[i];
        if (ch <= 0x20 || ch >= 0x7f || (ch == '*' && i != len - 1))
            return false;
    }
    return true;
}

/* The price fields the provider bills, for a message. */
static void billed_fields(const struct provider *pr, char *out, size_t out_size)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(price_defs) && n < out_size; i++)
        if (pr->price_fields & price_defs[i].field)
            n += (size_t)snprintf(out + n, out_size - n, "%s%s", n ? ", " : "", price_defs[i].key);
}

static int parse_price(struct config_json *p, const struct provider *pr, json_t *e,
                       const char *path, const char *model, struct config_price *out)
{
    const char *keys[ARRAY_SIZE(price_defs)];
    for (size_t i = 0; i < ARRAY_SIZE(price_defs); i++)
        keys[i] = price_defs[i].key;
    if (config_json_object(p, e, path) == -1 ||
        config_json_keys(p, e, path, keys, ARRAY_SIZE(keys)) == -1)
        return -1;
    if ((out->model = strdup(model)) == NULL)
        return config_json_fail(p, "%s: out of memory", path);
    out->match_len = strlen(model);
    out->prefix = out->match_len > 0 && model[out->match_len - 1] == '*';
    out->match_len -= out->prefix ? 1 : 0;
    for (size_t i = 0; i < ARRAY_SIZE(price_defs); i++) {
        int64_t v;
        char fpath[KEYPATH_MAX];
        config_json_path(fpath, sizeof(fpath), path, price_defs[i].key);
        json_t *f = config_json_get(e, price_defs[i].key);
        if (f != NULL && !(pr->price_fields & price_defs[i].field)) {
            char billed[256];
            billed_fields(pr, billed, sizeof(billed));
            return config_json_fail(p, "%s: %s does not bill by this unit (its fields: %s)", fpath,
                                    pr->name, billed);
        }
        if (f != NULL && json_is_integer(f) && json_integer_value(f) < 0)
            return config_json_fail(
                p, "%s: must be a non-negative integer (micro-USD), got %" JSON_INTEGER_FORMAT,
                fpath, json_integer_value(f));
        if (config_json_int(p, e, path, price_defs[i].key, -1, 0, PRICE_MAX, &v) == -1)
            return -1;
        *(int64_t *)((char *)out + price_defs[i].offset) = v;
    }
    return 0;
}

static int parse_pricing(struct config_json *p, json_t *root)
{
    json_t *obj = config_json_get(root, "pricing");
    const char *names[PROVIDER_MAX];
    if (obj == NULL)
        return 0;
    for (size_t i = 0; i < provider_count(); i++)
        names[i] = provider_at(i)->name;
    if (config_json_object(p, obj, "pricing") == -1 ||
        config_json_keys(p, obj, "pricing", names, provider_count()) == -1)
        return -1;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        json_t *models = config_json_get(obj, pr->name);
        if (models == NULL)
            continue;
        char path[KEYPATH_MAX];
        config_json_path(path, sizeof(path), "pricing", pr->name);
        if (config_json_object(p, models, path) == -1)
            return -1;
        struct config_provider_prices *pp = &p->cfg->pricing[i];
        size_t n = json_object_size(models);
        if (n == 0)
            continue;
        if ((pp->prices = calloc(n, sizeof(*pp->prices))) == NULL)
            return config_json_fail(p, "%s: out of memory", path);
        const char *model;
        json_t *e;
        json_object_foreach(models, model, e)
        {
            char mpath[KEYPATH_MAX], show[MODEL_MAX + 8];
            config_json_path(mpath, sizeof(mpath), path, model);
            if (!valid_model_key(model))
                return config_json_fail(
                    p,
                    "pricing.%s: \"%s\" is not a valid model key (printable, no "
                    "spaces, < %d chars, '*' only at the end)",
                    pr->name, config_json_shown(model, show, sizeof(show)), MODEL_MAX);
            /* Counted before parsing so config_free() frees a half-filled entry. */
            struct config_price *price = &pp->prices[pp->n_prices++];
            if (parse_price(p, pr, e, mpath, model, price) == -1)
                return -1;
        }
    }
    return 0;
}

static int parse_limits(struct config_json *p, json_t *root)
{
    json_t *obj = config_json_get(root, "limits");
    const char *keys[ARRAY_SIZE(limit_defs)];
    for (size_t i = 0; i < ARRAY_SIZE(limit_defs); i++)
        keys[i] = limit_defs[i].key;
    if (obj != NULL && (config_json_object(p, obj, "limits") == -1 ||
                        config_json_keys(p, obj, "limits", keys, ARRAY_SIZE(keys)) == -1))
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(limit_defs); i++) {
        const struct limit_def *d = &limit_defs[i];
        int64_t v;
        if (config_json_int(p, obj, "limits", d->key, d->def, d->min, d->max, &v) == -1)
            return -1;
        char *field = (char *)&p->cfg->limits + d->offset;
        if (d->is_int)
            *(int *)field = (int)v;
        else
            *(size_t *)field = (size_t)v;
    }
    struct config_limits *l = &p->cfg->limits;
    if (l->max_header_bytes < l->max_request_line)
        return config_json_fail(
            p,
            "limits.max_header_bytes: %zu is smaller than limits.max_request_line "
            "(%zu); the head includes the request line",
            l->max_header_bytes, l->max_request_line);
    /* One address may not be allowed more than the whole process; the
     * default per-address cap follows a smaller max_connections. */
    if (l->max_connections_per_client > l->max_connections) {
        if (obj != NULL && config_json_get(obj, "max_connections_per_client") != NULL)
            return config_json_fail(p,
                                    "limits.max_connections_per_client: %zu is larger than "
                                    "limits.max_connections (%zu)",
                                    l->max_connections_per_client, l->max_connections);
        l->max_connections_per_client = l->max_connections;
    }
    return 0;
}

/* "balance" (DESIGN §3.4, §4b): holds per line, the socket grace. */
static int parse_balance(struct config_json *p, json_t *root)
{
    struct config_balance *b = &p->cfg->balance;
    json_t *obj = config_json_get(root, "balance");
    int64_t v;
    if (obj != NULL &&
        (config_json_object(p, obj, "balance") == -1 ||
         config_json_keys(p, obj, "balance", balance_keys, ARRAY_SIZE(balance_keys)) == -1))
        return -1;
    json_t *holds = obj != NULL ? config_json_get(obj, "hold_micros") : NULL;
    if (holds != NULL && (config_json_object(p, holds, "balance.hold_micros") == -1 ||
                          config_json_keys(p, holds, "balance.hold_micros", hold_lines,
                                           ARRAY_SIZE(hold_lines)) == -1))
        return -1;
    if (config_json_int(p, holds, "balance.hold_micros", "default", 10000, 0, PRICE_MAX, &v) == -1)
        return -1;
    b->hold_micros[0] = v;
    for (size_t i = 1; i < ARRAY_SIZE(hold_lines); i++) {
        /* realtime holds more by default: a voice session runs for minutes. */
        int64_t def = strcmp(hold_lines[i], "realtime") == 0 ? 100000 : b->hold_micros[0];
        if (config_json_int(p, holds, "balance.hold_micros", hold_lines[i], def, 0, PRICE_MAX,
                            &v) == -1)
            return -1;
        b->hold_micros[i] = v;
    }
    if (config_json_int(p, obj, "balance", "ws_grace_micros", 0, 0, PRICE_MAX, &v) == -1)
        return -1;
    b->ws_grace_micros = v;
    if (config_json_int(p, obj, "balance", "hold_ttl_s", 900, 1, 7 * 86400, &v) == -1)
        return -1;
    b->hold_ttl_s = (int)v;
    return 0;
}

int64_t config_hold_micros(const struct config *cfg, const char *line)
{
    for (size_t i = 1; i < ARRAY_SIZE(hold_lines); i++)
        if (strcmp(hold_lines[i], line) == 0)
            return cfg->balance.hold_micros[i];
    return cfg->balance.hold_micros[0];
}

int config_parse_redis_url(const char *url, char *host, size_t host_size, int *port, int *db,
                           char *err, size_t err_size)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, err_size,
                 "TLS to Redis (rediss://) is not supported: use redis:// on a "
                 "private network or a TLS tunnel (e.g. stunnel) next to the proxy");
        return -1;
    }
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0 || url[sizeof(scheme) - 1] == '\0') {
        snprintf(err, err_size, "must start with redis:// (e.g. \"redis://127.0.0.1:6379/0\")");
        return -1;
    }
    const char *s = url + sizeof(scheme) - 1;
    if (strchr(s, '@') != NULL) {
        /* Never echoed: it may hold a password. */
        snprintf(err, err_size,
                 "must not carry credentials: put the password in an environment variable and "
                 "name it in store.password_env");
        return -1;
    }
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    char authority[300];
    if (alen == 0 || alen + sizeof(":6379") > sizeof(authority)) {
        snprintf(err, err_size, "needs a host (e.g. \"redis://127.0.0.1:6379/0\")");
        return -1;
    }
    memcpy(authority, s, alen);
    authority[alen] = '\0';
    /* No port: the default one. A ':' after a bracketed IPv6 address, or
     * anywhere in a name or IPv4 address, starts the port. */
    const char *close = authority[0] == '[' ? strchr(authority, ']') : NULL;
    bool has_port =
        authority[0] == '[' ? close != NULL && close[1] == ':' : strchr(authority, ':') != NULL;
    if (!has_port)
        strcat(authority, ":6379");
    char msg[256];
    if (config_parse_address(authority, host, host_size, port, msg, sizeof(msg)) == -1) {
        snprintf(err, err_size, "%s", msg);
        return -1;
    }
    *db = 0;
    if (slash != NULL && slash[1] != '\0') {
        const char *d = slash + 1;
        size_t n = strlen(d);
        if (n > 6 || strspn(d, "0123456789") != n) {
            snprintf(err, err_size,
                     "the database after the host must be a number from 0 to 999999 "
                     "(e.g. \"redis://127.0.0.1:6379/0\"), with nothing after it");
            return -1;
        }
        *db = atoi(d);
    }
    return 0;
}

static int parse_store(struct config_json *p, json_t *root)
{
    struct config *cfg = p->cfg;
    json_t *obj = config_json_get(root, "store");
    int64_t v;
    cfg->store_connect_timeout_ms = 1000;
    cfg->store_timeout_ms = 1000;
    cfg->store_on_down = CONFIG_ON_DOWN_REFUSE_WALLET;
    if (obj == NULL) {
        if ((cfg->store_backend = strdup("sqlite")) == NULL ||
            (cfg->store_path = strdup("var/byok.db")) == NULL)
            return config_json_fail(p, "store: out of memory");
        return 0;
    }
    if (config_json_object(p, obj, "store") == -1 ||
        config_json_keys(p, obj, "store", store_keys, ARRAY_SIZE(store_keys)) == -1 ||
        config_json_string(p, obj, "store", "backend", "sqlite", &cfg->store_backend) == -1 ||
        config_json_string(p, obj, "store", "path", NULL, &cfg->store_path) == -1 ||
        config_json_string(p, obj, "store", "url", NULL, &cfg->store_url) == -1)
        return -1;
    if (strcmp(cfg->store_backend, "sqlite") == 0) {
        if (cfg->store_path == NULL)
            return config_json_fail(
                p, "store.path: required with backend \"sqlite\" (e.g. \"var/byok.db\")");
        if (cfg->store_url != NULL)
            return config_json_fail(p,
                                    "store.url: only used with backend \"redis\"; remove it or set "
                                    "store.backend to \"redis\"");
        for (size_t i = 0; i < ARRAY_SIZE(redis_only_keys); i++)
            if (config_json_get(obj, redis_only_keys[i]) != NULL)
                return config_json_fail(p, "store.%s: only used with backend \"redis\"",
                                        redis_only_keys[i]);
        return 0;
    }
    if (strcmp(cfg->store_backend, "redis") != 0) {
        char show[64];
        return config_json_fail(
            p, "store.backend: \"%s\" is not a backend (expected \"sqlite\" or \"redis\")",
            config_json_shown(cfg->store_backend, show, sizeof(show)));
    }
    if (cfg->store_url == NULL)
        return config_json_fail(p, "store.url: required with backend \"redis\" (e.g. "
                                   "\"redis://127.0.0.1:6379/0\")");
    char host[256], msg[256];
    int port, db;
    if (config_parse_redis_url(cfg->store_url, host, sizeof(host), &port, &db, msg, sizeof(msg)) ==
        -1)
        return config_json_fail(p, "store.url: %s", msg);
    if (cfg->store_path != NULL)
        return config_json_fail(p, "store.path: only used with backend \"sqlite\"");
    if (config_json_int(p, obj, "store", "connect_timeout_ms", 1000, 10, 60000, &v) == -1)
        return -1;
    cfg->store_connect_timeout_ms = (int)v;
    if (config_json_int(p, obj, "store", "timeout_ms", 1000, 10, 60000, &v) == -1)
        return -1;
    cfg->store_timeout_ms = (int)v;
    char *on_down = NULL;
    if (config_json_string(p, obj, "store", "on_down", "refuse_wallet", &on_down) == -1)
        return -1;
    bool serve = strcmp(on_down, "serve") == 0;
    bool refuse = strcmp(on_down, "refuse_wallet") == 0;
    if (!serve && !refuse) {
        char show[64];
        config_json_fail(
            p, "store.on_down: \"%s\" is not a choice (expected \"refuse_wallet\" or \"serve\")",
            config_json_shown(on_down, show, sizeof(show)));
        free(on_down);
        return -1;
    }
    free(on_down);
    cfg->store_on_down = serve ? CONFIG_ON_DOWN_SERVE : CONFIG_ON_DOWN_REFUSE_WALLET;
    if (config_json_string(p, obj, "store", "password_env", NULL, &cfg->store_password_env) == -1)
        return -1;
    if (cfg->store_password_env != NULL) {
        if (!valid_env_name(cfg->store_password_env)) {
            char show[160];
            return config_json_fail(
                p,
                "store.password_env: \"%s\" is not a valid environment variable name "
                "([A-Za-z_][A-Za-z0-9_]*)",
                config_json_shown(cfg->store_password_env, show, sizeof(show)));
        }
        /* Only the variable's name is ever printed, never its value. */
        const char *val = getenv(cfg->store_password_env);
        if (val == NULL)
            return config_json_fail(p, "store.password_env: environment variable %s is not set",
                                    cfg->store_password_env);
        if (val[0] == '\0')
            return config_json_fail(p, "store.password_env: environment variable %s is empty",
                                    cfg->store_password_env);
        if ((cfg->store_password = secret_strdup(val)) == NULL)
            return config_json_fail(p, "store.password_env: out of memory");
    }
    return 0;
}

static int parse_tls(struct config_json *p, json_t *root)
{
    struct config *cfg = p->cfg;
    json_t *obj = config_json_get(root, "tls");
    if (obj == NULL)
        return 0;
    if (config_json_object(p, obj, "tls") == -1 ||
        config_json_keys(p, obj, "tls", tls_keys, ARRAY_SIZE(tls_keys)) == -1)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(tls_keys); i++)
        if (config_json_get(obj, tls_keys[i]) == NULL)
            return config_json_fail(p, "tls.%s: required when \"tls\" is present", tls_keys[i]);
    if (get_address(p, obj, "tls", "listen", NULL, &cfg->tls_listen) == -1 ||
        get_readable_file(p, obj, "tls", "cert_file", &cfg->tls_cert_file) == -1 ||
        get_readable_file(p, obj, "tls", "key_file", &cfg->tls_key_file) == -1)
        return -1;
    return 0;
}

static int parse_root(struct config_json *p, json_t *root)
{
    struct config *cfg = p->cfg;
    int64_t v;
    if (!json_is_object(root))
        return config_json_fail(p, "config: the top level must be a JSON object, got %s",
                                config_json_type(root));
    if (config_json_keys(p, root, "", top_keys, ARRAY_SIZE(top_keys)) == -1)
        return -1;

    if (get_address(p, root, "", "listen", "127.0.0.1:8080", &cfg->listen) == -1 ||
        get_address(p, root, "", "admin_listen", "127.0.0.1:8081", &cfg->admin_listen) == -1 ||
        parse_tls(p, root) == -1)
        return -1;
    if (strcmp(cfg->listen, cfg->admin_listen) == 0)
        return config_json_fail(p, "admin_listen: must differ from listen (both are \"%s\")",
                                cfg->listen);
    if (cfg->tls_listen != NULL && (strcmp(cfg->tls_listen, cfg->listen) == 0 ||
                                    strcmp(cfg->tls_listen, cfg->admin_listen) == 0))
        return config_json_fail(p, "tls.listen: must differ from listen and admin_listen");

    if (config_json_int(p, root, "", "workers", 0, 0, 64, &v) == -1)
        return -1;
    cfg->workers = (int)v;
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n < 1 ? 1 : (int)MIN(n, 64);
    }

    if (parse_store(p, root) == -1)
        return -1;

    json_t *usage = config_json_get(root, "usage");
    if (usage != NULL &&
        (config_json_object(p, usage, "usage") == -1 ||
         config_json_keys(p, usage, "usage", usage_keys, ARRAY_SIZE(usage_keys)) == -1))
        return -1;
    if (config_json_string(p, usage, "usage", "jsonl_path", NULL, &cfg->usage_jsonl_path) == -1 ||
        config_json_string(p, usage, "usage", "spool_dir", "var/spool", &cfg->usage_spool_dir) ==
            -1 ||
        config_json_int(p, usage, "usage", "ws_interval_s", 30, 1, 3600, &v) == -1)
        return -1;
    cfg->usage_ws_interval_s = (int)v;

    if (config_simulate_parse(p, config_json_get(root, "simulate"), &cfg->simulate) == -1 ||
        parse_upstreams(p, root) == -1 ||
        get_readable_file(p, root, "", "upstream_ca_file", &cfg->upstream_ca_file) == -1 ||
        parse_platform_keys(p, root) == -1)
        return -1;

    if (config_json_int(p, root, "", "session_ttl_s", 3600, 1, 30 * 86400, &v) == -1)
        return -1;
    cfg->session_ttl_s = (int)v;

    if (config_json_string(p, root, "", "log_level", "info", &cfg->log_level) == -1)
        return -1;
    if (!config_json_in_list(cfg->log_level, log_levels, ARRAY_SIZE(log_levels))) {
        char show[64];
        return config_json_fail(
            p,
            "log_level: \"%s\" is not a level (expected one of: debug, info, warn, "
            "error)",
            config_json_shown(cfg->log_level, show, sizeof(show)));
    }

    if (parse_limits(p, root) == -1 || parse_pricing(p, root) == -1 || parse_balance(p, root) == -1)
        return -1;
    return 0;
}

/* Shared tail of config_load/config_parse: root is borrowed. */
static struct config *config_from_json(json_t *root, const char *origin, char **err)
{
    struct config_json p = {0};
    p.cfg = calloc(1, sizeof(*p.cfg));
    if (p.cfg == NULL || (p.cfg->path = strdup(origin)) == NULL) {
        free(p.cfg);
        *err = strdup("config: out of memory");
        return NULL;
    }
    if (parse_root(&p, root) == -1) {
        config_free(p.cfg);
        *err = p.err;
        return NULL;
    }
    return p.cfg;
}

struct config *config_load(const char *path, char **err)
{
    json_error_t jerr;
    *err = NULL;
    /* Messages do not repeat the path: the caller prints it once. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        int rc = jerr.line <= 0
                     ? asprintf(err, "%s", jerr.text)
                     : asprintf(err, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        if (rc == -1)
            *err = NULL;
        return NULL;
    }
    struct config *cfg = config_from_json(root, path, err);
    json_decref(root);
    return cfg;
}

struct config *config_parse(const char *json_text, char **err)
{
    json_error_t jerr;
    *err = NULL;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (asprintf(err, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text) == -1)
            *err = NULL;
        return NULL;
    }
    struct config *cfg = config_from_json(root, "(string)", err);
    json_decref(root);
    return cfg;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->listen);
    free(cfg->admin_listen);
    free(cfg->tls_listen);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    free(cfg->store_backend);
    free(cfg->store_path);
    free(cfg->store_url);
    free(cfg->store_password_env);
    secret_free(cfg->store_password); /* wipes */
    free(cfg->usage_jsonl_path);
    free(cfg->usage_spool_dir);
    free(cfg->upstream_ca_file);
    free(cfg->log_level);
    for (int i = 0; i < PROVIDER_MAX; i++) {
        struct config_platform_key *pk = &cfg->platform_keys[i];
        secret_free(pk->key); /* wipes */
        free(pk->key_env);
        free(pk->region);
        for (int h = 0; h < PROVIDER_HDR_MAX; h++)
            free(pk->headers[h]);
        for (int h = 0; h < PROVIDER_HOST_MAX; h++)
            free(cfg->upstreams[i][h]);
        for (size_t j = 0; j < cfg->pricing[i].n_prices; j++)
            free(cfg->pricing[i].prices[j].model);
        free(cfg->pricing[i].prices);
    }
    OPENSSL_cleanse(cfg, sizeof(*cfg));
    free(cfg);
}

void config_wipe_secret_env(const struct config *cfg)
{
    for (int i = 0; i < PROVIDER_MAX; i++)
        if (cfg->platform_keys[i].key_env != NULL)
            secret_env_wipe(cfg->platform_keys[i].key_env);
    if (cfg->store_password_env != NULL)
        secret_env_wipe(cfg->store_password_env);
}

const char *config_upstream(const struct config *cfg, const struct provider *p, int host)
{
    if (host < 0 || host >= PROVIDER_HOST_MAX)
        return NULL;
    return cfg->upstreams[provider_index(p)][host];
}

const struct config_platform_key *config_platform_key(const struct config *cfg,
                                                      const struct provider *p)
{
    return &cfg->platform_keys[provider_index(p)];
}

const struct config_provider_prices *config_prices(const struct config *cfg,
                                                   const struct provider *p)
{
    return &cfg->pricing[provider_index(p)];
}
