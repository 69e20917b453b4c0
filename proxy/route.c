/* route.c - routing, credential positions and upstream bases, read from the
 * provider registry (see route.h). The tables built by route_init() are
 * read-only afterwards and shared by every worker. */
#include "common.h"
#include "route.h"
#include "crypto.h"
#include "upstream.h"
#include "urlenc.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PREFIX_MAX   (PROVIDER_MAX * 4)
#define CRED_SET_MAX 64

struct prefix {
    const char *prefix;
    size_t len;
    const struct provider *provider;
    const struct provider_route *route;
};

/* Longest first. */
static struct prefix prefixes[PREFIX_MAX];
static size_t n_prefixes;
static char prefix_list[1024];

/* Every credential position of every provider: removed from every request,
 * whatever its route. */
struct name_set {
    const char *names[CRED_SET_MAX];
    size_t n;
};
static struct name_set cred_headers, cred_queries, sub_prefixes, sub_pairs;

static int set_add(struct name_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->names[i], name) == 0)
            return 0;
    if (s->n >= CRED_SET_MAX)
        return -1;
    s->names[s->n++] = name;
    return 0;
}

static int cmp_prefix(const void *a, const void *b)
{
    const struct prefix *x = a, *y = b;
    return x->len == y->len ? 0 : x->len > y->len ? -1 : 1;
}

int route_init(char *err, size_t err_size)
{
    if (provider_registry_check(err, err_size) == -1)
        return -1;
    n_prefixes = 0;
    memset(&cred_headers, 0, sizeof(cred_headers));
    memset(&cred_queries, 0, sizeof(cred_queries));
    memset(&sub_prefixes, 0, sizeof(sub_prefixes));
    memset(&sub_pairs, 0, sizeof(sub_pairs));
    /* A generic API-key header some SDKs send: never forwarded either. */
    int rc = set_add(&cred_headers, "api-key");
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (size_t r = 0; r < p->n_routes; r++) {
            if (n_prefixes >= PREFIX_MAX) {
                snprintf(err, err_size, "route: more than %d prefixes", PREFIX_MAX);
                return -1;
            }
            prefixes[n_prefixes++] =
                (struct prefix){p->routes[r].prefix, strlen(p->routes[r].prefix), p, &p->routes[r]};
        }
        for (size_t c = 0; c < p->n_creds; c++) {
            const struct provider_cred *cr = &p->creds[c];
            switch (cr->kind) {
            case PROVIDER_CRED_HEADER:
            case PROVIDER_CRED_SCHEME:
                rc |= set_add(&cred_headers, cr->name);
                break;
            case PROVIDER_CRED_QUERY:
            case PROVIDER_CRED_FIRST_MESSAGE: /* never meant for a query: removed there too */
                rc |= set_add(&cred_queries, cr->name);
                break;
            case PROVIDER_CRED_SUBPROTOCOL:
                rc |= set_add(&sub_prefixes, cr->name);
                break;
            case PROVIDER_CRED_SUBPROTOCOL_PAIR:
                rc |= set_add(&sub_pairs, cr->name);
                break;
            }
        }
        for (const char *const *q = p->extra_cred_query; q != NULL && *q != NULL; q++)
            rc |= set_add(&cred_queries, *q);
    }
    if (rc != 0) {
        snprintf(err, err_size, "route: more than %d credential names", CRED_SET_MAX);
        return -1;
    }
    qsort(prefixes, n_prefixes, sizeof(prefixes[0]), cmp_prefix);
    size_t pl = 0;
    prefix_list[0] = '\0';
    for (size_t i = 0; i < provider_count(); i++)
        for (size_t r = 0; r < provider_at(i)->n_routes && pl < sizeof(prefix_list); r++)
            pl += (size_t)snprintf(prefix_list + pl, sizeof(prefix_list) - pl, "%s%s/",
                                   pl ? ", " : "", provider_at(i)->routes[r].prefix);
    return 0;
}

const char *route_prefix_list(void)
{
    return prefix_list;
}

int route_match(const char *path, size_t len, struct route *out)
{
    for (size_t i = 0; i < n_prefixes; i++) {
        const struct prefix *x = &prefixes[i];
        if (len >= x->len && memcmp(path, x->prefix, x->len) == 0 &&
            (len == x->len || path[x->len] == '/')) {
            out->provider = x->provider;
            out->host = x->route->host;
            out->upstream_path = path + x->route->strip;
            out->upstream_path_len = len - x->route->strip;
            return 0;
        }
    }
    return -1;
}

/* pattern: literal bytes, "{}" = one non-empty segment. */
static bool pattern_match(const char *pat, const char *path, size_t len)
{
    size_t i = 0;
    while (*pat != '\0') {
        if (pat[0] == '{' && pat[1] == '}') {
            size_t start = i;
            while (i < len && path[i] != '/')
                i++;
            if (i == start)
                return false;
            pat += 2;
            continue;
        }
        if (i >= len || path[i] != *pat)
            return false;
        i++;
        pat++;
    }
    return i == len;
}

const struct provider_endpoint *route_endpoint(const struct route *rt, const char *method,
                                               size_t method_len, bool ws)
{
    const struct provider *p = rt->provider;
    for (size_t i = 0; i < p->n_endpoints; i++) {
        const struct provider_endpoint *ep = &p->endpoints[i];
        if (((ep->flags & PROVIDER_EP_WS) != 0) != ws)
            continue;
        if (ep->host >= 0 && ep->host != rt->host)
            continue;
        if (strlen(ep->method) != method_len || memcmp(ep->method, method, method_len) != 0)
            continue;
        if (pattern_match(ep->pattern, rt->upstream_path, rt->upstream_path_len))
            return ep;
    }
    return NULL;
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

/* --- credentials ------------------------------------------------------------- */

static bool is_protocol_header(const struct httpparse_header *hd)
{
    return hd->name_len == 22 && strncasecmp(hd->name, "sec-websocket-protocol", 22) == 0;
}

/* The token after "<scheme> " in a header value, or NULL. */
static const char *scheme_token(const struct httpparse_header *hd, const char *scheme, size_t *len)
{
    size_t sl = strlen(scheme);
    if (hd->value_len <= sl || strncasecmp(hd->value, scheme, sl) != 0 ||
        (hd->value[sl] != ' ' && hd->value[sl] != '\t'))
        return NULL;
    const char *v = hd->value + sl;
    size_t n = hd->value_len - sl;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    *len = n;
    return n ? v : NULL;
}

static const char *find_subprotocol(const struct httpparse_request *h,
                                    const struct provider_cred *cr, size_t *len)
{
    size_t nl = strlen(cr->name);
    bool next_is_key = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *hd = &h->headers[i];
        if (!is_protocol_header(hd))
            continue;
        struct ws_list it;
        const char *item;
        size_t n;
        ws_list_init(&it, hd->value, hd->value_len);
        while (ws_list_next(&it, &item, &n)) {
            if (next_is_key) {
                *len = n;
                return item;
            }
            if (cr->kind == PROVIDER_CRED_SUBPROTOCOL && n > nl &&
                strncasecmp(item, cr->name, nl) == 0) {
                *len = n - nl;
                return item + nl;
            }
            if (cr->kind == PROVIDER_CRED_SUBPROTOCOL_PAIR && n == nl &&
                strncasecmp(item, cr->name, nl) == 0)
                next_is_key = true;
        }
    }
    return NULL;
}

void route_credential(const struct provider *p, const struct httpparse_request *h, bool ws,
                      struct route_key *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t c = 0; c < p->n_creds && out->key == NULL; c++) {
        const struct provider_cred *cr = &p->creds[c];
        const struct httpparse_header *hd;
        const char *v = NULL;
        size_t n = 0;
        switch (cr->kind) {
        case PROVIDER_CRED_HEADER:
            hd = httpparse_find(h, cr->name);
            if (hd != NULL && hd->value_len > 0) {
                v = hd->value;
                n = hd->value_len;
            }
            break;
        case PROVIDER_CRED_SCHEME:
            hd = httpparse_find(h, cr->name);
            if (hd != NULL)
                v = scheme_token(hd, cr->scheme, &n);
            break;
        case PROVIDER_CRED_QUERY: {
            struct urlenc_query it;
            struct urlenc_pair pair;
            urlenc_query_init(&it, h->query, h->query_len);
            while (v == NULL && urlenc_query_next(&it, &pair))
                if (pair.value_len > 0 && urlenc_name_is(&pair, cr->name)) {
                    v = pair.value;
                    n = pair.value_len;
                }
            break;
        }
        case PROVIDER_CRED_SUBPROTOCOL:
        case PROVIDER_CRED_SUBPROTOCOL_PAIR:
            if (ws)
                v = find_subprotocol(h, cr, &n);
            break;
        case PROVIDER_CRED_FIRST_MESSAGE:
            break; /* the WebSocket session reads it */
        }
        if (v != NULL && n > 0) {
            out->key = v;
            out->len = n;
            out->cred = cr;
        }
    }
}

static bool name_in(const struct name_set *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->names[i]) == len && strncasecmp(s->names[i], name, len) == 0)
            return true;
    return false;
}

static bool name_listed(const char *const *list, const char *name, size_t len)
{
    for (; list != NULL && *list != NULL; list++)
        if (strlen(*list) == len && strncasecmp(*list, name, len) == 0)
            return true;
    return false;
}

bool route_strip_header(const struct provider *p, bool byok, const struct httpparse_request *h,
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
        NULL,
    };
    if (name_listed(always, hd->name, hd->name_len) ||
        name_in(&cred_headers, hd->name, hd->name_len))
        return true;
    if (!byok && name_listed(p->wallet_request_headers, hd->name, hd->name_len))
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

static bool cred_query(const struct urlenc_pair *pair)
{
    for (size_t i = 0; i < cred_queries.n; i++)
        if (urlenc_name_is(pair, cred_queries.names[i]))
            return true;
    /* A name that does not decode cannot be shown harmless: dropped. */
    char buf[128];
    return urlenc_decode(pair->name, pair->name_len, true, false, buf, sizeof(buf)) < 0;
}

int route_forward_query(const struct httpparse_request *h, char *out, size_t out_size)
{
    size_t n = 0;
    struct urlenc_query it;
    struct urlenc_pair pair;
    if (out_size == 0)
        return -1;
    urlenc_query_init(&it, h->query, h->query_len);
    while (urlenc_query_next(&it, &pair)) {
        if (cred_query(&pair))
            continue;
        if (n + (n > 0) + pair.raw_len + 1 > out_size) {
            out[0] = '\0';
            return -1;
        }
        if (n > 0)
            out[n++] = '&';
        memcpy(out + n, pair.raw, pair.raw_len);
        n += pair.raw_len;
    }
    out[n] = '\0';
    return (int)n;
}

int route_forward_protocols(const struct provider *p, const struct httpparse_request *h,
                            const struct route_key *key, char *out, size_t out_size,
                            char answer[ROUTE_ANSWER_MAX])
{
    size_t n = 0;
    bool skip_next = false;
    const char *pair = NULL; /* the pair name the key came in */
    answer[0] = '\0';
    if (out_size == 0)
        return -1;
    out[0] = '\0';
    if (key != NULL && key->cred != NULL && key->cred->kind == PROVIDER_CRED_SUBPROTOCOL_PAIR)
        pair = key->cred->name;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *hd = &h->headers[i];
        if (!is_protocol_header(hd))
            continue;
        struct ws_list it;
        const char *item;
        size_t len;
        ws_list_init(&it, hd->value, hd->value_len);
        while (ws_list_next(&it, &item, &len)) {
            if (skip_next) {
                skip_next = false;
                continue;
            }
            if (name_in(&sub_pairs, item, len)) {
                /* Browsers compare the answer with what they offered
                 * byte for byte: answer in the client's spelling. */
                if (pair != NULL && answer[0] == '\0' && strlen(pair) == len &&
                    strncasecmp(pair, item, len) == 0 && len < ROUTE_ANSWER_MAX)
                    snprintf(answer, ROUTE_ANSWER_MAX, "%.*s", (int)len, item);
                skip_next = true;
                continue;
            }
            bool cred = false;
            for (size_t k = 0; k < sub_prefixes.n && !cred; k++) {
                size_t pl = strlen(sub_prefixes.names[k]);
                cred = len >= pl && strncasecmp(item, sub_prefixes.names[k], pl) == 0;
            }
            if (cred || !ws_token_valid(item, len))
                continue;
            for (const char *const *a = p->ws_answer_protocols; a != NULL && *a != NULL; a++)
                if (answer[0] == '\0' && pair == NULL && strlen(*a) == len &&
                    memcmp(*a, item, len) == 0 && len < ROUTE_ANSWER_MAX)
                    snprintf(answer, ROUTE_ANSWER_MAX, "%s", *a);
            if (n + (n > 0 ? 2 : 0) + len + 1 > out_size)
                return -1;
            if (n > 0) {
                memcpy(out + n, ", ", 2);
                n += 2;
            }
            memcpy(out + n, item, len);
            n += len;
            out[n] = '\0';
        }
    }
    return (int)n;
}

bool route_wallet_refused_query(const struct provider_endpoint *ep,
                                const struct httpparse_request *h, const char **name)
{
    for (const char *const *q = ep->wallet_refused_query; q != NULL && *q != NULL; q++) {
        struct urlenc_query it;
        struct urlenc_pair pair;
        urlenc_query_init(&it, h->query, h->query_len);
        while (urlenc_query_next(&it, &pair))
            if (urlenc_name_is(&pair, *q)) {
                *name = *q;
                return true;
            }
    }
    return false;
}

int route_model_query_count(const struct provider_endpoint *ep, const struct httpparse_request *h)
{
    int n = 0;
    struct urlenc_query it;
    struct urlenc_pair pair;
    if (ep->model_query == NULL || h->query == NULL)
        return 0;
    urlenc_query_init(&it, h->query, h->query_len);
    while (urlenc_query_next(&it, &pair) && n < 2) {
        if (!urlenc_name_is(&pair, ep->model_query))
            continue;
        char v[MODEL_MAX];
        if (urlenc_decode(pair.value, pair.value_len, true, true, v, sizeof(v)) < 0)
            return -1;
        n++;
    }
    return n;
}

/* --- injection and upstream -------------------------------------------------- */

int route_inject_value(const struct provider *p, const struct httpparse_request *h, const char *key,
                       const char **name, char *value, size_t value_size)
{
    const char *header = p->inject_header, *scheme = p->inject_scheme;
    if (p->inject_pick != NULL)
        p->inject_pick(h, &header, &scheme);
    int n = scheme != NULL ? snprintf(value, value_size, "%s %s", scheme, key)
                           : snprintf(value, value_size, "%s", key);
    *name = header;
    if (n < 0 || (size_t)n >= value_size) {
        crypto_wipe(value, value_size);
        return -1;
    }
    return n;
}

struct curl_slist *route_inject(const struct provider *p, const struct httpparse_request *h,
                                struct curl_slist *l, const char *key)
{
    char value[CRYPTO_SECRET_MAX + 16];
    const char *name;
    int n = route_inject_value(p, h, key, &name, value, sizeof(value));
    if (n < 0) {
        curl_slist_free_all(l);
        return NULL;
    }
    struct curl_slist *r = upstream_header_append(l, name, strlen(name), value, (size_t)n);
    crypto_wipe(value, sizeof(value));
    return r;
}

int route_upstream_base(const struct config *cfg, const struct provider *p, int host,
                        const char *region, char *out, size_t out_size)
{
    if (host < 0 || (size_t)host >= p->n_hosts)
        return -1;
    const char *base = config_upstream(cfg, p, host);
    if (base == NULL)
        return -1;
    int n;
    if (p->hosts[host].region) {
        const char *at = strstr(base, "{region}");
        char why[160];
        /* The region comes from a saved connection or the config, both
         * checked; checked again here because it becomes a host name. */
        if (at == NULL || region == NULL || p->check_region == NULL ||
            p->check_region(region, why, sizeof(why)) == -1)
            return -1;
        n = snprintf(out, out_size, "%.*s%s%s", (int)(at - base), base, region, at + 8);
    } else {
        n = snprintf(out, out_size, "%s", base);
    }
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

json_t *route_error_body(const struct provider *p, int status, const char *type, const char *code,
                         const char *message)
{
    return p->error_body(status, type, code, message);
}
