/* admin_core.c - the admin API's framework: replies and the one log line,
 * errors, JSON bodies and field checks, ids, times, query decoding. The
 * handler modules and the dispatcher (admin.c) build on it; it calls no
 * handler. */
#include "common.h"

#include "admin_core.h"
#include "crypto.h"
#include "follower.h"
#include "provider.h"
#include "urlenc.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- replies ----------------------------------------------------------- */

static bool is_write(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

void admin_log_reply(const char *method, const char *path_log, int status)
{
    if (is_write(method))
        log_info("admin %s %s -> %d", method, path_log, status);
    else
        log_debug("admin %s %s -> %d", method, path_log, status);
}

/* Takes ownership of body. */
/* How long a write's answer waits for this instance's replica at most
 * (DESIGN §7b's bound for the other instances). */
#define ADMIN_SETTLE_MS 250

/* Fleet mode: a write's success waits (bounded) until this instance's
 * replica has applied it. */
static void settle(struct admin_ctx *x, int status)
{
    if (x->a->follower == NULL || status >= 300 || strcmp(x->method, "GET") == 0 ||
        strcmp(x->method, "HEAD") == 0)
        return;
    if (follower_sync(x->a->follower, x->a->store, ADMIN_SETTLE_MS) == -1)
        log_debug("admin %s %s: the replica did not confirm the write within %d ms", x->method,
                  x->path_log, ADMIN_SETTLE_MS);
}

void admin_reply_json(struct admin_ctx *x, int status, json_t *body, const struct http_kv *extra,
                      size_t n_extra)
{
    if (x->responded) {
        json_decref(body);
        return;
    }
    settle(x, status);
    x->responded = true;
    admin_log_reply(x->method, x->path_log, status);
    http_respond_json(x->c, status, body, extra, n_extra);
}

void admin_reply_text(struct admin_ctx *x, int status, const char *content_type, const char *text,
                      size_t len)
{
    if (x->responded)
        return;
    settle(x, status);
    x->responded = true;
    admin_log_reply(x->method, x->path_log, status);
    http_respond(x->c, status, content_type, text, len, NULL, 0);
}

void admin_reply_error(struct admin_ctx *x, int status, const char *code, const char *msg,
                       const struct http_kv *extra, size_t n_extra)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    admin_reply_json(x, status, body, extra, n_extra);
}

/* A body refused before (or after) its handler may still hold a provider
 * key (a connection POST with a bad token or content type): wipe it before
 * the reply releases it. Admin bodies are small. */
void admin_wipe_body(struct http_request *req)
{
    size_t len = req->body ? evbuffer_get_length(req->body) : 0;
    unsigned char *data = len > 0 ? evbuffer_pullup(req->body, -1) : NULL;
    if (data != NULL)
        crypto_wipe(data, len);
}

/* ---- errors ------------------------------------------------------------ */

int admin_fail(struct admin_ctx *x, int status, const char *code, const char *fmt, ...)
{
    if (x->err_status != 0)
        return -1;
    x->err_status = status;
    snprintf(x->err_code, sizeof(x->err_code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err_msg, sizeof(x->err_msg), fmt, ap);
    va_end(ap);
    /* Messages may quote client input (a JSON parse error): keep them
     * printable ASCII so they always encode as a JSON string. */
    for (char *q = x->err_msg; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            *q = '?';
    return -1;
}

int admin_store_fail(struct admin_ctx *x, int rc, const char *what)
{
    switch (rc) {
    case STORE_ERR_NOT_FOUND:
        return admin_fail(x, 404, "not_found", "%s does not exist", what);
    case STORE_ERR_EXISTS:
        return admin_fail(x, 409, "conflict", "%s already exists", what);
    case STORE_ERR_CONFLICT:
        return admin_fail(x, 409, "conflict", "%s is still referenced", what);
    default:
        return admin_fail(x, 500, "internal", "store error; see the proxy log");
    }
}

/* ---- values ------------------------------------------------------------ */

/* Ids (tenant, key): 1..63 of [A-Za-z0-9._-], not "." or ".." (which
 * clients and intermediaries rewrite in paths). */
bool admin_valid_id(const char *s, size_t len)
{
    if (len == 0 || len >= ID_MAX)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

void admin_iso_time(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

json_t *admin_time_json(int64_t ms)
{
    char buf[32];
    if (ms <= 0)
        return json_null();
    admin_iso_time(ms, buf);
    return json_string(buf);
}

json_t *admin_byok_json(const struct store_byok *b)
{
    json_t *slots = json_object();
    for (size_t i = 0; slots != NULL && i < provider_slot_count(); i++)
        json_object_set_new(slots, provider_slot_at(i)->name,
                            b->slots[i][0] ? json_string(b->slots[i]) : json_null());
    return json_pack("{s:b, s:o, s:o}", "enabled", b->enabled, "slots", slots, "updated_at",
                     admin_time_json(b->updated_at_ms));
}

/* %XX (two hex digits) and '+' for space; a stray '%', a decoded NUL or
 * control byte, or no room in out is an error. */
int admin_query_decode(const char *s, size_t len, char *out, size_t out_size)
{
    return urlenc_decode(s, len, true, true, out, out_size) < 0 ? -1 : 0;
}

/* ---- request bodies ---------------------------------------------------- */

/* Reads the request body as a JSON object. An empty body is {} unless
 * required. Sets the 400 error on failure. *out is owned by the caller. */
int admin_read_body(struct admin_ctx *x, bool required, json_t **out)
{
    struct evbuffer *b = x->req->body;
    size_t len = b ? evbuffer_get_length(b) : 0;
    *out = NULL;
    if (len == 0) {
        if (required)
            return bad_request(x, "request body must be a JSON object");
        *out = json_object();
        return *out ? 0 : admin_fail(x, 500, "internal", "out of memory");
    }
    const char *data = (const char *)evbuffer_pullup(b, -1);
    json_error_t jerr;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL && x->secret_body)
        return bad_request(x, "request body is not valid JSON (line %d, column %d)", jerr.line,
                           jerr.column);
    if (v == NULL)
        return bad_request(x, "request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                           jerr.line, jerr.column);
    if (!json_is_object(v)) {
        json_decref(v);
        return bad_request(x, "request body must be a JSON object");
    }
    *out = v;
    return 0;
}

/* Fails naming every field of obj outside allowed (prefix: "" or
 * "features."). */
int admin_check_fields(struct admin_ctx *x, json_t *obj, const char *prefix,
                       const char *const *allowed, size_t n)
{
    char unknown[256] = "", expected[256] = "";
    size_t ulen = 0, elen = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (ok)
            continue;
        char safe[64];
        log_safe(key, strlen(key), safe, sizeof(safe));
        if (ulen < sizeof(unknown))
            ulen += (size_t)snprintf(unknown + ulen, sizeof(unknown) - ulen, "%s\"%s%s\"",
                                     ulen ? ", " : "", prefix, safe);
    }
    if (ulen == 0)
        return 0;
    for (size_t i = 0; i < n && elen < sizeof(expected); i++)
        elen += (size_t)snprintf(expected + elen, sizeof(expected) - elen, "%s%s%s", i ? ", " : "",
                                 prefix, allowed[i]);
    return bad_request(x, "unknown field(s) %s (expected: %s)", unknown, expected);
}

/* Optional field getters: absent or null leaves *out untouched and *present
 * false. Each names the field in its error. */
int admin_get_bool(struct admin_ctx *x, json_t *obj, const char *name, bool *out, bool *present)
{
    json_t *v = json_object_get(obj, name);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_boolean(v))
        return bad_request(x, "%s must be true or false", name);
    *out = json_is_true(v);
    return 0;
}

/* A printable string field of 1..size-1 bytes, copied into out. */
int admin_get_text(struct admin_ctx *x, json_t *obj, const char *name, char *out, size_t size,
                   bool *present)
{
    json_t *v = json_object_get(obj, name);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v))
        return bad_request(x, "%s must be a string", name);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len >= size)
        return bad_request(x, "%s must be 1 to %zu bytes long", name, size - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return bad_request(x, "%s must not contain control characters", name);
    memcpy(out, s, len + 1);
    return 0;
}

/* An id field (admin_valid_id), copied into out. */
int admin_get_id(struct admin_ctx *x, json_t *obj, const char *name, char out[ID_MAX],
                 bool *present)
{
    json_t *v = json_object_get(obj, name);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v) || !admin_valid_id(json_string_value(v), json_string_length(v)))
        return bad_request(x, "%s must be 1 to %d characters of [A-Za-z0-9._-]", name, ID_MAX - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Loads the tenant named by the first path parameter; 404 if absent. */
int admin_load_tenant(struct admin_ctx *x, struct store_tenant *t)
{
    int rc = store_tenant_get(x->a->store, x->params[0], t);
    if (rc == STORE_ERR_NOT_FOUND)
        return admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", x->params[0]);
    if (rc != STORE_OK)
        return admin_store_fail(x, rc, "tenant");
    return 0;
}
