/* route.c - path prefixes of DESIGN §4 and, per provider, where the
 * inbound proxy key sits (header, query), how the real key is injected, the
 * upstream base URL (Azure: by region) and the provider's error shape. */
#include "common.h"
#include "route.h"
#include "crypto.h"
#include "upstream.h"

#include <stdio.h>

#include <string.h>
#include <strings.h>

struct prefix {
    const char *prefix; /* matched at a segment boundary */
    size_t strip;       /* bytes removed before appending to the upstream base */
    enum provider_id provider;
    bool azure_stt;
};

/* Longest first where prefixes overlap. */
static const struct prefix prefixes[] = {
    {"/openai/v1", 7, PROVIDER_OPENAI, false},
    {"/v1", 0, PROVIDER_OPENAI, false},
    {"/deepseek", 9, PROVIDER_DEEPSEEK, false},
    {"/elevenlabs/v1", 11, PROVIDER_ELEVENLABS, false},
    {"/azure/tts", 10, PROVIDER_AZURE_SPEECH, false},
    {"/azure/stt", 10, PROVIDER_AZURE_SPEECH, true},
    {"/deepgram/v1", 9, PROVIDER_DEEPGRAM, false},
    {"/anthropic/v1", 10, PROVIDER_ANTHROPIC, false},
    {"/cartesia", 9, PROVIDER_CARTESIA, false},
};

/* Query parameters that carry a credential: never forwarded. */
static const char *const credential_params[] = {"ocp-apim-subscription-key",
                                                "authorization",
                                                "api_key",
                                                "access_token",
                                                "xi_api_key",
                                                "xi-api-key"};

static bool has_prefix(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0 && (len == n || path[n] == '/');
}

int route_match(const char *path, size_t len, struct route *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
        if (has_prefix(path, len, prefixes[i].prefix)) {
            out->provider = prefixes[i].provider;
            out->upstream_path = path + prefixes[i].strip;
            out->upstream_path_len = len - prefixes[i].strip;
            out->azure_stt = prefixes[i].azure_stt;
            return 0;
        }
    }
    return -1;
}

enum meter_kind route_meter_kind(const struct route *rt)
{
    return meter_kind_for(rt->provider, rt->azure_stt, rt->upstream_path, rt->upstream_path_len);
}

/* A segment that is "." or ".." once "%2e" is read as '.'. */
static bool dot_segment(const char *s, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
                   (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
        } else {
            return false;
        }
        dots++;
    }
    return dots == 1 || dots == 2;
}

bool route_path_unsafe(const char *path, size_t len)
{
    if (memchr(path, '\\', len) != NULL || memchr(path, '\0', len) != NULL)
        return true;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (j > i && dot_segment(path + i, j - i))
            return true;
        i = j + 1;
    }
    return false;
}

static bool name_is(const struct httpparse_header *hd, const char *name)
{
    size_t n = strlen(name);
    return hd->name_len == n && strncasecmp(hd->name, name, n) == 0;
}

/* The token after "<scheme> " in an Authorization header, or NULL. */
static const char *auth_token(const struct httpparse_request *h, const char *scheme, size_t *len)
{
    size_t sl = strlen(scheme);
    const struct httpparse_header *a = httpparse_find(h, "authorization");
    if (a == NULL || a->value_len < sl + 1 || strncasecmp(a->value, scheme, sl) != 0 ||
        a->value[sl] != ' ')
        return NULL;
    const char *v = a->value + sl + 1;
    size_t n = a->value_len - sl - 1;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    *len = n;
    return n ? v : NULL;
}

static const char *header_value(const struct httpparse_request *h, const char *name, size_t *len)
{
    const struct httpparse_header *hd = httpparse_find(h, name);
    if (hd == NULL || hd->value_len == 0)
        return NULL;
    *len = hd->value_len;
    return hd->value;
}

/* The raw value of query parameter name (case-insensitive), or NULL. */
static const char *query_value(const struct httpparse_request *h, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        if (eq != NULL && (size_t)(eq - q) == nl && strncasecmp(q, name, nl) == 0 && pe > eq + 1) {
            *len = (size_t)(pe - eq - 1);
            return eq + 1;
        }
        q = amp ? amp + 1 : end;
    }
    return NULL;
}

const char *route_credential(enum provider_id p, const struct httpparse_request *h, size_t *len)
{
    const char *v = NULL;
    *len = 0;
    switch (p) {
    case PROVIDER_OPENAI:
    case PROVIDER_DEEPSEEK:
        v = auth_token(h, "bearer", len);
        break;
    case PROVIDER_ELEVENLABS:
        v = header_value(h, "xi-api-key", len);
        break;
    case PROVIDER_AZURE_SPEECH:
        v = header_value(h, "ocp-apim-subscription-key", len);
        if (v == NULL)
            v = query_value(h, "ocp-apim-subscription-key", len);
        break;
    case PROVIDER_DEEPGRAM:
        v = auth_token(h, "token", len);
        break;
    case PROVIDER_ANTHROPIC:
        v = header_value(h, "x-api-key", len);
        if (v == NULL)
            v = auth_token(h, "bearer", len);
        break;
    case PROVIDER_CARTESIA:
        v = header_value(h, "x-api-key", len);
        if (v == NULL)
            v = auth_token(h, "bearer", len);
        break;
    case PROVIDER__COUNT:
        break;
    }
    if (v == NULL)
        *len = 0;
    return v;
}

size_t route_forward_query(const struct httpparse_request *h, char *out, size_t out_size)
{
    size_t n = 0;
    const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
    if (out_size == 0)
        return 0;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        size_t name_len = (size_t)((eq ? eq : pe) - q);
        bool drop = false;
        for (size_t i = 0; i < ARRAY_SIZE(credential_params); i++)
            if (strlen(credential_params[i]) == name_len &&
                strncasecmp(q, credential_params[i], name_len) == 0)
                drop = true;
        size_t plen = (size_t)(pe - q);
        if (!drop && plen > 0 && n + (n > 0) + plen + 1 <= out_size) {
            if (n > 0)
                out[n++] = '&';
            memcpy(out + n, q, plen);
            n += plen;
        }
        q = amp ? amp + 1 : end;
    }
    out[n] = '\0';
    return n;
}

struct curl_slist *route_inject(enum provider_id p, const struct httpparse_request *h,
                                struct curl_slist *l, const char *key)
{
    const char *name = "Authorization", *prefix = "";
    switch (p) {
    case PROVIDER_OPENAI:
    case PROVIDER_DEEPSEEK:
        prefix = "Bearer ";
        break;
    case PROVIDER_ELEVENLABS:
        name = "xi-api-key";
        break;
    case PROVIDER_AZURE_SPEECH:
        name = "Ocp-Apim-Subscription-Key";
        break;
    case PROVIDER_DEEPGRAM:
        prefix = "Token ";
        break;
    case PROVIDER_ANTHROPIC:
        name = "x-api-key";
        break;
    case PROVIDER_CARTESIA:
        /* Answer in the style the client used: older API versions know
         * X-API-Key, newer ones Bearer. */
        if (httpparse_find(h, "x-api-key") != NULL)
            name = "X-API-Key";
        else
            prefix = "Bearer ";
        break;
    case PROVIDER__COUNT:
        break;
    }
    size_t pl = strlen(prefix), kl = strlen(key);
    char value[CRYPTO_SECRET_MAX + 16];
    if (pl + kl >= sizeof(value)) {
        curl_slist_free_all(l);
        return NULL;
    }
    memcpy(value, prefix, pl);
    memcpy(value + pl, key, kl);
    struct curl_slist *r = upstream_header_append(l, name, strlen(name), value, pl + kl);
    crypto_wipe(value, sizeof(value));
    return r;
}

int route_upstream_base(const struct config *cfg, const struct route *rt, const char *region,
                        char *out, size_t out_size)
{
    const char *base = cfg->upstreams[rt->provider];
    if (rt->provider == PROVIDER_AZURE_SPEECH) {
        const char *tmpl = rt->azure_stt ? cfg->upstream_azure_stt : base;
        const char *at = tmpl ? strstr(tmpl, "{region}") : NULL;
        char why[160];
        /* The region comes from a saved connection or the config, both
         * checked against the allow-list; checked again here because it
         * becomes part of a host name. */
        if (at == NULL || region == NULL || config_check_region(region, why, sizeof(why)) == -1)
            return -1;
        int n = snprintf(out, out_size, "%.*s%s%s", (int)(at - tmpl), tmpl, region, at + 8);
        return n < 0 || (size_t)n >= out_size ? -1 : 0;
    }
    if (base == NULL)
        return -1;
    int n = snprintf(out, out_size, "%s", base);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

bool route_strip_header(enum provider_id p, const struct httpparse_request *h,
                        const struct httpparse_header *hd)
{
    static const char *const always[] = {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "expect",
        "x-session-id",
        "accept-encoding",
        /* every provider's credential positions: never forwarded, whatever the route */
        "authorization",
        "xi-api-key",
        "ocp-apim-subscription-key",
        "x-api-key",
    };
    (void)p;
    for (size_t i = 0; i < ARRAY_SIZE(always); i++)
        if (name_is(hd, always[i]))
            return true;
    /* Headers named in Connection are hop-by-hop too. */
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *c = &h->headers[i];
        if (c->name_len == 10 && strncasecmp(c->name, "connection", 10) == 0) {
            char name[128];
            if (hd->name_len < sizeof(name)) {
                memcpy(name, hd->name, hd->name_len);
                name[hd->name_len] = '\0';
                if (httpparse_list_has(c->value, c->value_len, name))
                    return true;
            }
        }
    }
    return false;
}

/* Anthropic's error types by status (PROVIDERS.md §4.4). */
static const char *anthropic_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    default:
        return "api_error";
    }
}

json_t *route_error_body(enum provider_id p, int status, const char *type, const char *code,
                         const char *message)
{
    char st[8];
    snprintf(st, sizeof(st), "%d", status);
    switch (p) {
    case PROVIDER_ELEVENLABS:
        return json_pack("{s:{s:s,s:s}}", "detail", "status", code, "message", message);
    case PROVIDER_AZURE_SPEECH:
        return json_pack("{s:{s:s,s:s}}", "error", "code", st, "message", message);
    case PROVIDER_DEEPGRAM:
        return json_pack("{s:s,s:s}", "err_code", code, "err_msg", message);
    case PROVIDER_ANTHROPIC:
        return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
                         anthropic_type(status), "message", message);
    case PROVIDER_CARTESIA:
        return json_pack("{s:s,s:s}", "error", message, "code", code);
    case PROVIDER_OPENAI:
    case PROVIDER_DEEPSEEK:
    default:
        return json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", message, "type", type,
                         "param", "code", code);
    }
}
