/* admin.c - the admin API's front (DESIGN §6): its route table and
 * dispatcher behind a bearer token on its own listener, and its lifecycle.
 * The handlers live in admin_tenants.c (tenants, balances, proxy keys,
 * usage, metrics, health) and admin_byok.c (connections, BYOK settings,
 * resolution explain, Check Status), both built on admin_core.c; nothing
 * calls back into this file.
 *
 *   request --> auth (all but /healthz, /readyz) --> route table --> handler
 *                 401 on a wrong token               404 / 405       JSON reply
 *
 * Paths are matched exactly, segment by segment: no trailing-slash variants
 * and no percent-decoding of path segments. An id in a path must already be
 * in the id alphabet [A-Za-z0-9._-], so "%2F" and friends are refused (400)
 * rather than decoded into something that could mean another tenant. */
#include "common.h"

#include "admin.h"
#include "admin_byok.h"
#include "admin_core.h"
#include "admin_tenants.h"
#include "crypto.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADMIN_MAX_SEGMENTS 8

/* ---- dispatch ---------------------------------------------------------- */

typedef void (*admin_handler)(struct admin_ctx *x);

struct admin_route {
    const char *method;
    const char *pattern; /* "{}" matches one id segment */
    admin_handler fn;
    bool public; /* answered without the admin token */
};

static const struct admin_route routes[] = {
    {"GET", "/healthz", admin_tenants_healthz, true},
    {"GET", "/readyz", admin_tenants_readyz, true},
    {"GET", "/metrics", admin_tenants_metrics, false},
    {"POST", "/admin/tenants", admin_tenants_create, false},
    {"GET", "/admin/tenants", admin_tenants_list, false},
    {"GET", "/admin/tenants/{}", admin_tenants_get, false},
    {"PATCH", "/admin/tenants/{}", admin_tenants_patch, false},
    {"DELETE", "/admin/tenants/{}", admin_tenants_delete, false},
    {"POST", "/admin/tenants/{}/topup", admin_tenants_topup, false},
    {"POST", "/admin/tenants/{}/keys", admin_tenants_key_create, false},
    {"GET", "/admin/tenants/{}/keys", admin_tenants_key_list, false},
    {"DELETE", "/admin/tenants/{}/keys/{}", admin_tenants_key_revoke, false},
    {"POST", "/admin/tenants/{}/connections", admin_byok_conn_create, false},
    {"GET", "/admin/tenants/{}/connections", admin_byok_conn_list, false},
    {"GET", "/admin/tenants/{}/connections/{}", admin_byok_conn_get, false},
    {"PATCH", "/admin/tenants/{}/connections/{}", admin_byok_conn_patch, false},
    {"DELETE", "/admin/tenants/{}/connections/{}", admin_byok_conn_delete, false},
    {"GET", "/admin/tenants/{}/byok", admin_byok_get, false},
    {"PUT", "/admin/tenants/{}/byok", admin_byok_put, false},
    {"POST", "/admin/tenants/{}/byok/check", admin_byok_check, false},
    {"GET", "/admin/tenants/{}/resolve", admin_byok_resolve, false},
    {"GET", "/admin/usage", admin_tenants_usage, false},
};

struct segment {
    const char *p;
    size_t len;
};

/* Splits "/a/b" into segments; an empty segment (trailing or double slash)
 * is kept so such paths match nothing. Returns -1 when not absolute or too
 * deep. */
static int split_path(const char *path, size_t len, struct segment *segs, size_t *n)
{
    *n = 0;
    if (len == 0 || path[0] != '/')
        return -1;
    size_t i = 1;
    for (;;) {
        if (*n == ADMIN_MAX_SEGMENTS)
            return -1;
        const char *slash = memchr(path + i, '/', len - i);
        size_t e = slash ? (size_t)(slash - path) : len;
        segs[*n].p = path + i;
        segs[*n].len = e - i;
        (*n)++;
        if (slash == NULL)
            return 0;
        i = e + 1;
    }
}

/* Matches the path against a pattern; captures "{}" segments. */
static bool pattern_match(const char *pattern, const struct segment *segs, size_t n,
                          struct segment *caps, size_t *n_caps)
{
    struct segment ps[ADMIN_MAX_SEGMENTS];
    size_t pn;
    *n_caps = 0;
    if (split_path(pattern, strlen(pattern), ps, &pn) == -1 || pn != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (ps[i].len == 2 && memcmp(ps[i].p, "{}", 2) == 0) {
            /* An empty id is a trailing-slash variant: no such path. */
            if (*n_caps == ADMIN_MAX_PARAMS || segs[i].len == 0)
                return false;
            caps[(*n_caps)++] = segs[i];
        } else if (ps[i].len != segs[i].len || memcmp(ps[i].p, segs[i].p, segs[i].len) != 0) {
            return false;
        }
    }
    return true;
}

static bool method_matches(const char *route_method, const char *method)
{
    /* HEAD is GET without a body (http.c drops the body). */
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* SHA-256 both sides then compare in constant time: neither the content nor
 * the length of the token leaks through timing. */
static bool token_ok(struct admin *a, const struct httpparse_request *h)
{
    const struct httpparse_header *auth = httpparse_find(h, "Authorization");
    if (auth == NULL || auth->value_len < 7 || strncasecmp(auth->value, "Bearer ", 7) != 0)
        return false;
    const char *tok = auth->value + 7;
    size_t len = auth->value_len - 7;
    while (len > 0 && (*tok == ' ' || *tok == '\t'))
        tok++, len--;
    if (len == 0)
        return false;
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (EVP_Digest(tok, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != sizeof(digest))
        return false;
    bool ok = crypto_equal(digest, a->token_hash, sizeof(digest));
    OPENSSL_cleanse(digest, sizeof(digest));
    return ok;
}

/* Bodies are JSON: a missing Content-Type is tolerated (small scripts often
 * omit it), any other media type is refused so a form post fails loudly
 * instead of being half-understood. */
static bool content_type_ok(const struct httpparse_request *h)
{
    const struct httpparse_header *ct = httpparse_find(h, "Content-Type");
    if (ct == NULL)
        return true;
    size_t len = ct->value_len;
    const char *semi = memchr(ct->value, ';', len);
    if (semi != NULL)
        len = (size_t)(semi - ct->value);
    while (len > 0 && (ct->value[len - 1] == ' ' || ct->value[len - 1] == '\t'))
        len--;
    return len == 16 && strncasecmp(ct->value, "application/json", 16) == 0;
}

void admin_handle(struct http_conn *c, struct http_request *req, void *arg)
{
    struct admin_ctx x = {.a = arg, .c = c, .req = req};
    const struct httpparse_request *h = &req->head;
    struct segment segs[ADMIN_MAX_SEGMENTS], caps[ADMIN_MAX_PARAMS];
    size_t n_segs = 0, n_caps = 0;
    const struct admin_route *found = NULL;
    char allow[64] = "";
    bool path_known = false, public = false;

    log_safe(h->method, MIN(h->method_len, sizeof(x.method) - 1), x.method, sizeof(x.method));
    log_safe(h->path, h->path_len, x.path_log, sizeof(x.path_log));

    if (split_path(h->path, h->path_len, segs, &n_segs) == 0) {
        for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
            size_t nc;
            struct segment rc[ADMIN_MAX_PARAMS];
            if (!pattern_match(routes[i].pattern, segs, n_segs, rc, &nc))
                continue;
            path_known = true;
            public = routes[i].public;
            size_t al = strlen(allow);
            snprintf(allow + al, sizeof(allow) - al, "%s%s", al ? ", " : "", routes[i].method);
            if (strcmp(routes[i].method, "GET") == 0) {
                al = strlen(allow);
                snprintf(allow + al, sizeof(allow) - al, ", HEAD");
            }
            if (found == NULL && method_matches(routes[i].method, x.method)) {
                found = &routes[i];
                memcpy(caps, rc, sizeof(rc));
                n_caps = nc;
            }
        }
    }

    /* Authenticate before revealing whether a path exists. */
    if (!public && !token_ok(x.a, h)) {
        admin_wipe_body(req);
        struct http_kv www = {"WWW-Authenticate", "Bearer realm=\"byok-proxy admin\""};
        log_warn("admin %s %s -> 401 (bad or missing token) from %s", x.method, x.path_log,
                 http_conn_peer(c));
        x.responded = true;
        http_respond_json(c, 401,
                          json_pack("{s:{s:s,s:s}}", "error", "code", "unauthorized", "message",
                                    "missing or wrong admin token: send Authorization: Bearer "
                                    "<BYOK_ADMIN_TOKEN>"),
                          &www, 1);
        return;
    }
    if (!path_known) {
        admin_fail(&x, 404, "not_found", "no admin endpoint at this path");
        goto send_error;
    }
    if (found == NULL) {
        struct http_kv hdr = {"Allow", allow};
        char msg[128];
        snprintf(msg, sizeof(msg), "method %s is not allowed here; allowed: %s", x.method, allow);
        admin_wipe_body(req);
        admin_reply_error(&x, 405, "method_not_allowed", msg, &hdr, 1);
        return;
    }
    for (size_t i = 0; i < n_caps; i++) {
        if (!admin_valid_id(caps[i].p, caps[i].len)) {
            bad_request(&x,
                        "the id in the path must be 1 to %d characters of [A-Za-z0-9._-] "
                        "(percent-encoding is not decoded)",
                        ID_MAX - 1);
            goto send_error;
        }
        memcpy(x.params[i], caps[i].p, caps[i].len);
        x.params[i][caps[i].len] = '\0';
    }
    bool has_body = req->body != NULL && evbuffer_get_length(req->body) > 0;
    if ((has_body || strcmp(x.method, "POST") == 0 || strcmp(x.method, "PATCH") == 0) &&
        !content_type_ok(h)) {
        admin_fail(&x, 415, "unsupported_media_type",
                   "request bodies must be JSON: send Content-Type: application/json");
        goto send_error;
    }

    found->fn(&x);
    if (x.responded)
        return;
    if (x.err_status == 0)
        admin_fail(&x, 500, "internal", "handler produced no response");
send_error:
    admin_wipe_body(req);
    admin_reply_error(&x, x.err_status, x.err_code, x.err_msg, NULL, 0);
}

/* ---- lifecycle ---------------------------------------------------------- */

void admin_set_follower(struct admin *a, struct follower *f)
{
    a->follower = f;
}

struct admin *admin_new(const struct config *cfg, struct store *store, const char *token)
{
    if (token == NULL || token[0] == '\0') {
        log_error("admin: BYOK_ADMIN_TOKEN is empty or not set; refusing to serve the admin API "
                  "without a token");
        return NULL;
    }
    if (strlen(token) < 16)
        log_warn("admin: BYOK_ADMIN_TOKEN is shorter than 16 characters; use a long random "
                 "token");
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->cfg = cfg;
    a->store = store;
    unsigned int dlen = 0;
    if (EVP_Digest(token, strlen(token), a->token_hash, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != sizeof(a->token_hash)) {
        log_error("admin: SHA-256 unavailable");
        free(a);
        return NULL;
    }
    return a;
}

void admin_free(struct admin *a)
{
    if (a == NULL)
        return;
    /* Normally none are left: freeing the admin's connections aborted
     * them. The pool goes after its transfers' owners. */
    admin_byok_cancel_checks(a);
    upstream_pool_free(a->pool);
    OPENSSL_cleanse(a->token_hash, sizeof(a->token_hash));
    free(a);
}
