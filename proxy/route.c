/* route.c - path prefixes of DESIGN §4 and the per-provider credential
 * position, header stripping and error shape. */
#include "common.h"
#include "route.h"

#include <string.h>
#include <strings.h>

struct prefix {
    const char *prefix; /* matched at a segment boundary */
    size_t strip;       /* bytes removed before appending to the upstream base */
    enum provider_id provider;
};

/* Longest first where prefixes overlap. */
static const struct prefix prefixes[] = {
    {"/openai/v1", 7, PROVIDER_OPENAI},
    {"/v1", 0, PROVIDER_OPENAI},
    {"/deepseek", 9, PROVIDER_DEEPSEEK},
};

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
            return 0;
        }
    }
    return -1;
}

enum meter_kind route_meter_kind(const struct route *rt)
{
    const char *p = rt->upstream_path;
    size_t n = rt->upstream_path_len;
    if (rt->provider == PROVIDER_DEEPSEEK && !(n >= 4 && memcmp(p, "/v1/", 4) == 0)) {
        /* DeepSeek serves the OpenAI paths with and without /v1. */
        char buf[PATH_MAX_];
        if (n + 3 >= sizeof(buf))
            return METER_NONE;
        memcpy(buf, "/v1", 3);
        memcpy(buf + 3, p, n);
        return meter_kind_for_path(buf, n + 3);
    }
    return meter_kind_for_path(p, n);
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

const char *route_credential(enum provider_id p, const struct httpparse_request *h, size_t *len)
{
    *len = 0;
    switch (p) {
    case PROVIDER_OPENAI:
    case PROVIDER_DEEPSEEK: {
        const struct httpparse_header *a = httpparse_find(h, "authorization");
        if (a == NULL || a->value_len < 7 || strncasecmp(a->value, "bearer ", 7) != 0)
            return NULL;
        const char *v = a->value + 7;
        size_t n = a->value_len - 7;
        while (n > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            n--;
        }
        *len = n;
        return n ? v : NULL;
    }
    default:
        return NULL;
    }
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

json_t *route_error_body(enum provider_id p, int status, const char *type, const char *code,
                         const char *message)
{
    (void)status;
    switch (p) {
    case PROVIDER_OPENAI:
    case PROVIDER_DEEPSEEK:
    default:
        return json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", message, "type", type,
                         "param", "code", code);
    }
}
