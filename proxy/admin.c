/* admin.c - the admin API (DESIGN §6): tenants, balances, proxy keys, BYOK
 * connections and settings, resolution explain, Check Status, usage queries,
 * metrics and health, behind a bearer token on its own listener.
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
#include "check.h"
#include "crypto.h"
#include "metrics.h"
#include "resolve.h"
#include "upstream.h"
#include "usage.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ADMIN_MAX_SEGMENTS  8
#define ADMIN_MAX_PARAMS    2
#define USAGE_LIMIT_DEFAULT 100
#define USAGE_LIMIT_MAX     1000
/* Largest balance or top-up accepted: $1e9. Keeps balance arithmetic far
 * from int64 overflow however many top-ups are applied. */
#define BALANCE_MAX INT64_C(1000000000000000)

struct admin {
    const struct config *cfg;
    struct store *store;
    /* SHA-256 of the admin token. Only the digest is kept: comparing digests
     * in constant time does not leak the token's length either. */
    unsigned char token_hash[32];
    /* Check Status transfers run on the admin thread's own event base;
     * created on the first check, freed by admin_free(). */
    struct upstream_pool *pool;
    struct admin_check *checks; /* checks in flight (their clients wait) */
};

/* A Check Status request answered later, when its calls finished. */
struct admin_check {
    struct admin *a;
    struct http_conn *c;
    struct check_run *run;
    struct admin_check *prev, *next;
    char method[16];
    char path_log[160];
};

/* One request being handled. Handlers either answer with reply_json() or
 * record an error with admin_fail(); the dispatcher sends that error. */
struct admin_ctx {
    struct admin *a;
    struct http_conn *c;
    struct http_request *req;
    char method[16];
    char path_log[160]; /* log_safe()'d path, for the one log line */
    bool responded;
    int err_status;
    char err_code[32];
    char err_msg[512];
    char params[ADMIN_MAX_PARAMS][ID_MAX]; /* ids captured from the path */
    /* The body may carry a provider key: parse errors must not quote it. */
    bool secret_body;
};

typedef void (*admin_handler)(struct admin_ctx *x);

struct admin_route {
    const char *method;
    const char *pattern; /* "{}" matches one id segment */
    admin_handler fn;
    bool public; /* answered without the admin token */
};

/* ---- responses --------------------------------------------------------- */

static bool is_write(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

static void log_request(struct admin_ctx *x, int status)
{
    if (is_write(x->method))
        log_info("admin %s %s -> %d", x->method, x->path_log, status);
    else
        log_debug("admin %s %s -> %d", x->method, x->path_log, status);
}

/* Takes ownership of body. */
static void reply_json(struct admin_ctx *x, int status, json_t *body, const struct http_kv *extra,
                       size_t n_extra)
{
    if (x->responded) {
        json_decref(body);
        return;
    }
    x->responded = true;
    log_request(x, status);
    http_respond_json(x->c, status, body, extra, n_extra);
}

static void reply_error_now(struct admin_ctx *x, int status, const char *code, const char *msg,
                            const struct http_kv *extra, size_t n_extra)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    reply_json(x, status, body, extra, n_extra);
}

static int admin_fail(struct admin_ctx *x, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

/* Records the error to send (first one wins) and returns -1, so validation
 * helpers can be chained with ||. */
static int admin_fail(struct admin_ctx *x, int status, const char *code, const char *fmt, ...)
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

#define bad_request(x, ...) admin_fail((x), 400, "invalid_request", __VA_ARGS__)

/* Maps a store status to the error the client sees. what names the object
 * for 404 ("tenant \"t1\""). */
static int store_fail(struct admin_ctx *x, int rc, const char *what)
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

/* ---- small helpers ----------------------------------------------------- */

/* Ids (tenant, key): 1..63 of [A-Za-z0-9._-], not "." or ".." (which
 * clients and intermediaries rewrite in paths). */
static bool valid_id(const char *s, size_t len)
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

/* ISO-8601 UTC with milliseconds: "2026-11-24T12:00:00.000Z". */
static void iso_time(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *time_json(int64_t ms)
{
    char buf[32];
    if (ms <= 0)
        return json_null();
    iso_time(ms, buf);
    return json_string(buf);
}

static json_t *tenant_json(const struct store_tenant *t)
{
    return json_pack("{s:s, s:s, s:{s:b, s:b}, s:o, s:b, s:I, s:I, s:o, s:o}", "id", t->id, "name",
                     t->name, "features", "byok", t->feature_byok, "agency", t->feature_agency,
                     "parent_id", t->parent_id[0] ? json_string(t->parent_id) : json_null(),
                     "wallet_deduction", t->wallet_deduction, "plan_credits_micros",
                     (json_int_t)t->plan_credits_micros, "wallet_micros",
                     (json_int_t)t->wallet_micros, "created_at", time_json(t->created_at_ms),
                     "updated_at", time_json(t->updated_at_ms));
}

static json_t *byok_json(const struct store_byok *b)
{
    json_t *slots = json_object();
    for (int i = 0; slots != NULL && i <= PROVIDER_AZURE_SPEECH; i++)
        json_object_set_new(slots, provider_name((enum provider_id)i),
                            b->slots[i][0] ? json_string(b->slots[i]) : json_null());
    return json_pack("{s:b, s:o, s:o}", "enabled", b->enabled, "slots", slots, "updated_at",
                     time_json(b->updated_at_ms));
}

/* The tenant with its BYOK settings ("byok"). */
static void reply_tenant(struct admin_ctx *x, int status, const struct store_tenant *t,
                         const struct http_kv *extra, size_t n_extra)
{
    struct store_byok b;
    int rc = store_byok_get(x->a->store, t->id, &b);
    if (rc != STORE_OK) {
        store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        return;
    }
    json_t *body = tenant_json(t);
    json_t *bj = byok_json(&b);
    if (body == NULL || bj == NULL || json_object_set_new(body, "byok", bj) == -1) {
        json_decref(body);
        admin_fail(x, 500, "internal", "could not encode tenant");
        return;
    }
    reply_json(x, status, body, extra, n_extra);
}

/* Reads the request body as a JSON object. An empty body is {} unless
 * required. Sets the 400 error on failure. *out is owned by the caller. */
static int read_body(struct admin_ctx *x, bool required, json_t **out)
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
static int check_fields(struct admin_ctx *x, json_t *obj, const char *prefix,
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
static int get_bool(struct admin_ctx *x, json_t *obj, const char *name, bool *out, bool *present)
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

static int get_int(struct admin_ctx *x, json_t *obj, const char *name, int64_t min, int64_t max,
                   int64_t *out, bool *present)
{
    json_t *v = json_object_get(obj, name);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return bad_request(x, "%s must be an integer from %" PRId64 " to %" PRId64 " (micro-USD)",
                           name, min, max);
    *out = json_integer_value(v);
    return 0;
}

/* A printable string field of 1..size-1 bytes, copied into out. */
static int get_text(struct admin_ctx *x, json_t *obj, const char *name, char *out, size_t size,
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

static int get_id_field(struct admin_ctx *x, json_t *obj, const char *name, char out[ID_MAX],
                        bool *present)
{
    json_t *v = json_object_get(obj, name);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v) || !valid_id(json_string_value(v), json_string_length(v)))
        return bad_request(x, "%s must be 1 to %d characters of [A-Za-z0-9._-]", name, ID_MAX - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_features(struct admin_ctx *x, json_t *obj, struct store_tenant *t)
{
    static const char *const names[] = {"byok", "agency"};
    json_t *f = json_object_get(obj, "features");
    bool present;
    if (f == NULL || json_is_null(f))
        return 0;
    if (!json_is_object(f))
        return bad_request(x, "features must be an object {\"byok\": bool, \"agency\": bool}");
    if (check_fields(x, f, "features.", names, ARRAY_SIZE(names)) == -1)
        return -1;
    json_t *b = json_object_get(f, "byok"), *a = json_object_get(f, "agency");
    if ((b != NULL && !json_is_null(b) && !json_is_boolean(b)) ||
        (a != NULL && !json_is_null(a) && !json_is_boolean(a)))
        return bad_request(x, "features.byok and features.agency must be true or false");
    if (get_bool(x, f, "byok", &t->feature_byok, &present) == -1 ||
        get_bool(x, f, "agency", &t->feature_agency, &present) == -1)
        return -1;
    return 0;
}

struct children_scan {
    const char *parent_id;
    bool found;
};

static void children_cb(void *arg, const struct store_tenant *t)
{
    struct children_scan *cs = arg;
    if (strcmp(t->parent_id, cs->parent_id) == 0)
        cs->found = true;
}

/* Subaccounts may not own subaccounts (DESIGN §3 resolves one level): the
 * parent must exist, not be the tenant itself, not be a subaccount, and
 * the tenant must not already own subaccounts. */
static int check_parent(struct admin_ctx *x, const char *self_id, const char *parent_id,
                        bool may_have_children)
{
    struct store_tenant p;
    if (strcmp(self_id, parent_id) == 0)
        return bad_request(x, "parent_id must not be the tenant itself");
    int rc = store_tenant_get(x->a->store, parent_id, &p);
    if (rc == STORE_ERR_NOT_FOUND)
        return bad_request(x, "parent_id: tenant \"%s\" does not exist", parent_id);
    if (rc != STORE_OK)
        return store_fail(x, rc, "parent tenant");
    if (p.parent_id[0] != '\0')
        return bad_request(x,
                           "parent_id: tenant \"%s\" is itself a subaccount of \"%s\"; "
                           "subaccounts cannot own subaccounts",
                           parent_id, p.parent_id);
    if (may_have_children) {
        struct children_scan cs = {self_id, false};
        rc = store_tenant_list(x->a->store, children_cb, &cs);
        if (rc != STORE_OK)
            return store_fail(x, rc, "tenant list");
        if (cs.found)
            return bad_request(x,
                               "parent_id: tenant \"%s\" owns subaccounts, so it cannot "
                               "become a subaccount",
                               self_id);
    }
    return 0;
}

/* ---- tenants ----------------------------------------------------------- */

static void h_tenant_create(struct admin_ctx *x)
{
    static const char *const fields[] = {
        "id",           "name", "features", "parent_id", "wallet_deduction", "plan_credits_micros",
        "wallet_micros"};
    struct store_tenant t = {0};
    json_t *body = NULL;
    bool has_id, has_name, has, has_parent;
    if (read_body(x, true, &body) == -1 ||
        check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_id_field(x, body, "id", t.id, &has_id) == -1 ||
        get_text(x, body, "name", t.name, sizeof(t.name), &has_name) == -1 ||
        get_features(x, body, &t) == -1 ||
        get_id_field(x, body, "parent_id", t.parent_id, &has_parent) == -1 ||
        get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1 ||
        get_int(x, body, "plan_credits_micros", 0, BALANCE_MAX, &t.plan_credits_micros, &has) ==
            -1 ||
        get_int(x, body, "wallet_micros", 0, BALANCE_MAX, &t.wallet_micros, &has) == -1)
        goto out;
    if (!has_name) {
        bad_request(x, "name is required (a string of 1 to %zu bytes)", sizeof(t.name) - 1);
        goto out;
    }
    if (!has_id && crypto_new_ulid("t_", t.id, sizeof(t.id)) == -1) {
        admin_fail(x, 500, "internal", "could not generate an id");
        goto out;
    }
    if (has_parent && check_parent(x, t.id, t.parent_id, false) == -1)
        goto out;
    t.created_at_ms = t.updated_at_ms = now_ms();
    int rc = store_tenant_create(x->a->store, &t);
    if (rc == STORE_ERR_EXISTS) {
        admin_fail(x, 409, "conflict", "tenant \"%s\" already exists", t.id);
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "tenant");
        goto out;
    }
    store_generation_bump();
    char location[32 + ID_MAX];
    snprintf(location, sizeof(location), "/admin/tenants/%s", t.id);
    struct http_kv loc = {"Location", location};
    reply_tenant(x, 201, &t, &loc, 1);
out:
    json_decref(body);
}

/* Loads the tenant named by the first path parameter; 404 if absent. */
static int load_tenant(struct admin_ctx *x, struct store_tenant *t)
{
    int rc = store_tenant_get(x->a->store, x->params[0], t);
    if (rc == STORE_ERR_NOT_FOUND)
        return admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", x->params[0]);
    if (rc != STORE_OK)
        return store_fail(x, rc, "tenant");
    return 0;
}

static void h_tenant_get(struct admin_ctx *x)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == 0)
        reply_tenant(x, 200, &t, NULL, 0);
}

static void h_tenant_patch(struct admin_ctx *x)
{
    static const char *const fields[] = {"name", "features", "parent_id", "wallet_deduction"};
    struct store_tenant t;
    json_t *body = NULL;
    bool has;
    if (read_body(x, true, &body) == -1)
        goto out;
    if (json_object_get(body, "plan_credits_micros") || json_object_get(body, "wallet_micros")) {
        bad_request(x,
                    "balances cannot be patched: use POST /admin/tenants/%s/topup with "
                    "{\"wallet_micros\": n, \"plan_credits_micros\": n}",
                    x->params[0]);
        goto out;
    }
    if (json_object_get(body, "id")) {
        bad_request(x, "id cannot be changed");
        goto out;
    }
    if (check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 || load_tenant(x, &t) == -1 ||
        get_text(x, body, "name", t.name, sizeof(t.name), &has) == -1 ||
        get_features(x, body, &t) == -1 ||
        get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1)
        goto out;
    json_t *pv = json_object_get(body, "parent_id");
    if (pv != NULL && json_is_null(pv)) {
        t.parent_id[0] = '\0';
    } else if (pv != NULL) {
        char parent[ID_MAX];
        if (get_id_field(x, body, "parent_id", parent, &has) == -1)
            goto out;
        /* Re-stating the current parent is not a move: skip the scan. */
        if (strcmp(parent, t.parent_id) != 0 && check_parent(x, t.id, parent, true) == -1)
            goto out;
        memcpy(t.parent_id, parent, sizeof(parent));
    }
    t.updated_at_ms = now_ms();
    int rc = store_tenant_update(x->a->store, &t);
    if (rc == STORE_OK)
        rc = store_tenant_get(x->a->store, t.id, &t);
    if (rc != STORE_OK) {
        store_fail(x, rc, "tenant");
        goto out;
    }
    store_generation_bump();
    reply_tenant(x, 200, &t, NULL, 0);
out:
    json_decref(body);
}

static void h_tenant_delete(struct admin_ctx *x)
{
    int rc = store_tenant_delete(x->a->store, x->params[0]);
    if (rc == STORE_ERR_CONFLICT) {
        admin_fail(x, 409, "conflict",
                   "tenant \"%s\" still has subaccounts: delete them or clear their parent_id "
                   "first",
                   x->params[0]);
        return;
    }
    if (rc == STORE_ERR_NOT_FOUND) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", x->params[0]);
        return;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "tenant");
        return;
    }
    store_generation_bump();
    reply_json(x, 200, json_pack("{s:s, s:b}", "id", x->params[0], "deleted", 1), NULL, 0);
}

static void tenant_list_cb(void *arg, const struct store_tenant *t)
{
    json_t *v = tenant_json(t);
    if (v != NULL)
        json_array_append_new(arg, v);
}

static void h_tenant_list(struct admin_ctx *x)
{
    json_t *arr = json_array();
    int rc = arr ? store_tenant_list(x->a->store, tenant_list_cb, arr) : STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        json_decref(arr);
        store_fail(x, rc, "tenant list");
        return;
    }
    reply_json(x, 200, json_pack("{s:o}", "tenants", arr), NULL, 0);
}

static void h_tenant_topup(struct admin_ctx *x)
{
    static const char *const fields[] = {"wallet_micros", "plan_credits_micros"};
    json_t *body = NULL;
    int64_t wallet = 0, plan = 0;
    bool has_wallet, has_plan;
    struct store_tenant t;
    /* Negative amounts are corrections (refund reversal, manual fix). */
    if (read_body(x, true, &body) == -1 ||
        check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_int(x, body, "wallet_micros", -BALANCE_MAX, BALANCE_MAX, &wallet, &has_wallet) == -1 ||
        get_int(x, body, "plan_credits_micros", -BALANCE_MAX, BALANCE_MAX, &plan, &has_plan) == -1)
        goto out;
    if (!has_wallet && !has_plan) {
        bad_request(x, "give wallet_micros and/or plan_credits_micros (integers, micro-USD)");
        goto out;
    }
    int rc = store_tenant_topup(x->a->store, x->params[0], wallet, plan, &t);
    if (rc == STORE_ERR_NOT_FOUND) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", x->params[0]);
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "tenant");
        goto out;
    }
    store_generation_bump();
    reply_tenant(x, 200, &t, NULL, 0);
out:
    json_decref(body);
}

/* ---- proxy keys -------------------------------------------------------- */

/* JSON text of a string value, or "null" for "". Caller frees. */
static char *json_text_or_null(const char *s)
{
    json_t *v = s[0] ? json_string(s) : json_null();
    char *text = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    return text;
}

static void h_key_create(struct admin_ctx *x)
{
    static const char *const fields[] = {"label"};
    struct store_tenant t;
    struct store_key k = {0};
    char key[CRYPTO_PROXY_KEY_MAX] = "";
    char *label = NULL, *text = NULL;
    json_t *body = NULL;
    bool has;
    int len = -1;
    if (read_body(x, false, &body) == -1 ||
        check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_text(x, body, "label", k.label, sizeof(k.label), &has) == -1 ||
        load_tenant(x, &t) == -1)
        goto out;
    if (crypto_new_proxy_key(k.id, key) == -1) {
        admin_fail(x, 500, "internal", "could not generate a key");
        goto out;
    }
    memcpy(k.tenant_id, t.id, sizeof(k.tenant_id));
    crypto_key_hash(key, strlen(key), k.hash);
    k.created_at_ms = now_ms();
    int rc = store_key_create(x->a->store, &k);
    if (rc != STORE_OK) {
        store_fail(x, rc, "key");
        goto out;
    }
    store_generation_bump();
    /* Built by hand rather than through a json_t so the one copy of the
     * secret we own can be wiped (jansson frees strings without wiping). The
     * key alphabet (base64url, '_') needs no JSON escaping. */
    char created[32];
    iso_time(k.created_at_ms, created);
    if ((label = json_text_or_null(k.label)) == NULL)
        goto oom;
    len = asprintf(&text, "{\"id\":\"%s\",\"key\":\"%s\",\"label\":%s,\"created_at\":\"%s\"}\n",
                   k.id, key, label, created);
    if (len == -1) {
        text = NULL;
        goto oom;
    }
    x->responded = true;
    log_request(x, 201);
    http_respond(x->c, 201, "application/json", text, (size_t)len, NULL, 0);
    goto out;
oom:
    /* The key row exists but its secret was never shown: revoke it so no
     * unusable-but-valid key lingers. */
    if (store_key_revoke(x->a->store, k.tenant_id, k.id) != STORE_OK)
        log_warn("admin: could not revoke undelivered key %s", k.id);
    admin_fail(x, 500, "internal", "out of memory");
out:
    if (text != NULL)
        OPENSSL_cleanse(text, (size_t)len);
    free(text);
    free(label);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(k.hash, sizeof(k.hash));
    json_decref(body);
}

static void key_list_cb(void *arg, const struct store_key *k)
{
    json_t *v = json_pack("{s:s, s:o, s:o, s:o}", "id", k->id, "label",
                          k->label[0] ? json_string(k->label) : json_null(), "created_at",
                          time_json(k->created_at_ms), "revoked_at", time_json(k->revoked_at_ms));
    if (v != NULL)
        json_array_append_new(arg, v);
}

static void h_key_list(struct admin_ctx *x)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == -1)
        return;
    json_t *arr = json_array();
    int rc = arr ? store_key_list(x->a->store, t.id, key_list_cb, arr) : STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        json_decref(arr);
        store_fail(x, rc, "key list");
        return;
    }
    reply_json(x, 200, json_pack("{s:o}", "keys", arr), NULL, 0);
}

static void h_key_revoke(struct admin_ctx *x)
{
    struct store_key k;
    const char *tid = x->params[0], *kid = x->params[1];
    int rc = store_key_get(x->a->store, kid, &k);
    if (rc == STORE_ERR_NOT_FOUND || (rc == STORE_OK && strcmp(k.tenant_id, tid) != 0)) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" has no key \"%s\"", tid, kid);
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "key");
        goto out;
    }
    /* Revoking twice is not an error: the first revocation time stands. */
    if (k.revoked_at_ms == 0) {
        rc = store_key_revoke(x->a->store, tid, kid);
        if (rc == STORE_OK)
            rc = store_key_get(x->a->store, kid, &k);
        if (rc != STORE_OK) {
            store_fail(x, rc, "key");
            goto out;
        }
        store_generation_bump();
    }
    reply_json(x, 200,
               json_pack("{s:s, s:o}", "id", k.id, "revoked_at", time_json(k.revoked_at_ms)), NULL,
               0);
out:
    OPENSSL_cleanse(k.hash, sizeof(k.hash));
}

/* ---- usage, metrics, health -------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Strict form decoding: %XX (two hex digits) and '+' for space; a stray '%'
 * or a decoded NUL/control byte is an error. */
static int query_decode(const char *s, size_t len, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || n + 1 >= out_size)
            return -1;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    return 0;
}

static void h_usage(struct admin_ctx *x)
{
    char tenant[ID_MAX] = "", session[SESSION_MAX] = "", limit_s[16] = "";
    bool seen[3] = {false, false, false};
    const struct httpparse_request *h = &x->req->head;
    const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        size_t klen = (size_t)(ke - q);
        const char *val = eq ? eq + 1 : pe;
        size_t vlen = (size_t)(pe - val);
        int which = -1;
        char *dst = NULL;
        size_t dsize = 0;
        if (klen == 9 && memcmp(q, "tenant_id", 9) == 0)
            which = 0, dst = tenant, dsize = sizeof(tenant);
        else if (klen == 10 && memcmp(q, "session_id", 10) == 0)
            which = 1, dst = session, dsize = sizeof(session);
        else if (klen == 5 && memcmp(q, "limit", 5) == 0)
            which = 2, dst = limit_s, dsize = sizeof(limit_s);
        if (klen > 0 && which < 0) {
            char safe[48];
            bad_request(x,
                        "unknown query parameter \"%s\" (expected: tenant_id, session_id, limit)",
                        log_safe(q, klen, safe, sizeof(safe)));
            return;
        }
        if (which >= 0) {
            if (seen[which]) {
                bad_request(x, "query parameter %.*s given twice", (int)klen, q);
                return;
            }
            seen[which] = true;
            if (query_decode(val, vlen, dst, dsize) == -1) {
                bad_request(x,
                            "query parameter %.*s: bad percent-encoding, control character "
                            "or longer than %zu bytes",
                            (int)klen, q, dsize - 1);
                return;
            }
        }
        q = amp ? amp + 1 : end;
    }
    int limit = USAGE_LIMIT_DEFAULT;
    if (limit_s[0] != '\0') {
        char *e;
        long v = strtol(limit_s, &e, 10);
        if (*e != '\0' || limit_s[0] < '0' || limit_s[0] > '9' || v < 1 || v > USAGE_LIMIT_MAX) {
            bad_request(x, "limit must be an integer from 1 to %d", USAGE_LIMIT_MAX);
            return;
        }
        limit = (int)v;
    }
    /* A request that just finished must be visible: flush the writer. */
    usage_writer_sync();
    json_t *arr = NULL;
    int rc = store_usage_query(x->a->store, tenant[0] ? tenant : NULL, session[0] ? session : NULL,
                               limit, &arr);
    if (rc != STORE_OK || arr == NULL) {
        json_decref(arr);
        store_fail(x, rc == STORE_OK ? STORE_ERR_INTERNAL : rc, "usage");
        return;
    }
    reply_json(x, 200, json_pack("{s:o}", "records", arr), NULL, 0);
}

static void h_metrics(struct admin_ctx *x)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        admin_fail(x, 500, "internal", "out of memory");
        return;
    }
    metrics_render(out);
    size_t len = evbuffer_get_length(out);
    const char *text = (const char *)evbuffer_pullup(out, -1);
    x->responded = true;
    log_request(x, 200);
    http_respond(x->c, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len, NULL,
                 0);
    evbuffer_free(out);
}

static void h_healthz(struct admin_ctx *x)
{
    reply_json(x, 200, json_pack("{s:s}", "status", "ok"), NULL, 0);
}

static void h_readyz(struct admin_ctx *x)
{
    if (store_ping(x->a->store) == STORE_OK)
        reply_json(x, 200, json_pack("{s:s}", "status", "ready"), NULL, 0);
    else
        reply_json(x, 503,
                   json_pack("{s:s, s:s}", "status", "not_ready", "reason", "store unreachable"),
                   NULL, 0);
}

/* ---- BYOK connections ---------------------------------------------------- */

/* Wipes every copy of a provider key this request holds: the "api_key"
 * string inside the parsed body (jansson frees strings without wiping) and
 * the raw request body. Must run before the reply is sent (that releases
 * the request). */
static void wipe_secrets(struct admin_ctx *x, json_t *body)
{
    json_t *k = body ? json_object_get(body, "api_key") : NULL;
    if (json_is_string(k))
        crypto_wipe((char *)json_string_value(k), json_string_length(k));
    struct evbuffer *b = x->req->body;
    size_t len = b ? evbuffer_get_length(b) : 0;
    unsigned char *data = len > 0 ? evbuffer_pullup(b, -1) : NULL;
    if (data != NULL)
        crypto_wipe(data, len);
}

static json_t *connection_json(const struct store_connection *c)
{
    char hint[sizeof(c->key_hint) + 4];
    snprintf(hint, sizeof(hint), "\xe2\x80\xa6%s", c->key_hint); /* "…abcd" */
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", c->id, "provider", provider_name(c->provider),
        "name", c->name, "region", c->region[0] ? json_string(c->region) : json_null(), "key_hint",
        hint, "created_at", time_json(c->created_at_ms), "updated_at", time_json(c->updated_at_ms));
}

static int get_slot_provider(struct admin_ctx *x, json_t *obj, enum provider_id *out)
{
    json_t *v = json_object_get(obj, "provider");
    if (v == NULL || json_is_null(v))
        return bad_request(x, "provider is required: one of openai, elevenlabs, azure_speech");
    if (json_is_string(v) && provider_parse(json_string_value(v), out) == 0 &&
        !provider_is_slot(*out))
        return bad_request(x,
                           "provider \"%s\" runs on platform keys only; a connection's provider "
                           "must be one of openai, elevenlabs, azure_speech",
                           provider_name(*out));
    if (!json_is_string(v) || provider_parse(json_string_value(v), out) == -1)
        return bad_request(x, "provider must be one of openai, elevenlabs, azure_speech");
    return 0;
}

/* The provider key: 1..CRYPTO_SECRET_MAX bytes of printable ASCII without
 * spaces. *key borrows the string inside obj. Messages never quote it. */
static int get_api_key(struct admin_ctx *x, json_t *obj, const char **key, size_t *len,
                       bool *present)
{
    json_t *v = json_object_get(obj, "api_key");
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v))
        return bad_request(x, "api_key must be a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > CRYPTO_SECRET_MAX)
        return bad_request(x, "api_key must be 1 to %d bytes long", CRYPTO_SECRET_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return bad_request(x, "api_key must be printable ASCII without spaces or line "
                                  "breaks (check for a stray newline or quote in the pasted key)");
    *key = s;
    *len = n;
    return 0;
}

/* region: required for azure_speech (an allow-listed short name, since it
 * becomes part of the upstream host name), refused for other providers. */
static int get_region(struct admin_ctx *x, json_t *obj, enum provider_id p, bool required,
                      char out[32], bool *present)
{
    json_t *v = json_object_get(obj, "region");
    char err[256];
    *present = v != NULL && !json_is_null(v);
    if (p != PROVIDER_AZURE_SPEECH) {
        if (*present)
            return bad_request(x, "region is only accepted for azure_speech connections");
        return 0;
    }
    if (!*present) {
        if (required)
            return bad_request(x, "region is required for azure_speech connections: the short "
                                  "region name of the key's Speech resource, e.g. \"eastus\"");
        return 0;
    }
    if (!json_is_string(v))
        return bad_request(x, "region must be a string such as \"eastus\"");
    if (config_check_region(json_string_value(v), err, sizeof(err)) == -1)
        return bad_request(x, "region: %s", err);
    snprintf(out, 32, "%s", json_string_value(v));
    return 0;
}

/* Seals key for c (tenant and id set) and fills key_version and key_hint.
 * The hint is the last 4 characters, fewer for keys shorter than 8 so a
 * short key is never shown whole. */
static int seal_key(struct admin_ctx *x, struct store_connection *c, const char *key, size_t len)
{
    if (crypto_seal(c->tenant_id, c->id, (const unsigned char *)key, len, c->sealed,
                    &c->sealed_len) == -1)
        return admin_fail(x, 500, "internal", "could not encrypt the key; see the proxy log");
    c->key_version = crypto_key_version();
    size_t h = MIN((size_t)4, len / 2);
    memcpy(c->key_hint, key + len - h, h);
    c->key_hint[h] = '\0';
    return 0;
}

static int connection_not_found(struct admin_ctx *x)
{
    return admin_fail(x, 404, "not_found", "tenant \"%s\" has no connection \"%s\"", x->params[0],
                      x->params[1]);
}

static void h_conn_create(struct admin_ctx *x)
{
    static const char *const fields[] = {"provider", "name", "api_key", "region"};
    struct store_tenant t;
    struct store_connection c = {0};
    json_t *body = NULL, *resp = NULL;
    const char *key = NULL;
    size_t key_len = 0;
    bool has_name, has_key, has_region;
    char location[64 + 2 * ID_MAX];
    struct http_kv loc = {"Location", location};
    x->secret_body = true;
    if (read_body(x, true, &body) == -1 ||
        check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_slot_provider(x, body, &c.provider) == -1 ||
        get_text(x, body, "name", c.name, sizeof(c.name), &has_name) == -1 ||
        get_api_key(x, body, &key, &key_len, &has_key) == -1 ||
        get_region(x, body, c.provider, true, c.region, &has_region) == -1)
        goto out;
    if (!has_name) {
        bad_request(x, "name is required (a string of 1 to %zu bytes)", sizeof(c.name) - 1);
        goto out;
    }
    if (!has_key) {
        bad_request(x, "api_key is required (the provider's secret key)");
        goto out;
    }
    if (load_tenant(x, &t) == -1)
        goto out;
    if (crypto_new_ulid("c_", c.id, sizeof(c.id)) == -1) {
        admin_fail(x, 500, "internal", "could not generate an id");
        goto out;
    }
    memcpy(c.tenant_id, t.id, sizeof(c.tenant_id));
    if (seal_key(x, &c, key, key_len) == -1)
        goto out;
    c.created_at_ms = c.updated_at_ms = now_ms();
    int rc = store_connection_create(x->a->store, &c);
    if (rc == STORE_ERR_NOT_FOUND) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", t.id);
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "connection");
        goto out;
    }
    store_generation_bump();
    snprintf(location, sizeof(location), "/admin/tenants/%s/connections/%s", t.id, c.id);
    if ((resp = connection_json(&c)) == NULL)
        admin_fail(x, 500, "internal", "could not encode connection");
out:
    /* Before replying: the reply releases the request body. */
    wipe_secrets(x, body);
    json_decref(body);
    if (resp != NULL)
        reply_json(x, 201, resp, &loc, 1);
}

static void conn_list_cb(void *arg, const struct store_connection *c)
{
    json_t *v = connection_json(c);
    if (v != NULL)
        json_array_append_new(arg, v);
}

static void h_conn_list(struct admin_ctx *x)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == -1)
        return;
    json_t *arr = json_array();
    int rc = arr ? store_connection_list(x->a->store, t.id, conn_list_cb, arr) : STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        json_decref(arr);
        store_fail(x, rc, "connection list");
        return;
    }
    reply_json(x, 200, json_pack("{s:o}", "connections", arr), NULL, 0);
}

/* Loads the connection named by the path (tenant, cid). Another tenant's
 * connection is NOT_FOUND in the store, so it is a plain 404 here. */
static int load_connection(struct admin_ctx *x, struct store_connection *c)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == -1)
        return -1;
    int rc = store_connection_get(x->a->store, t.id, x->params[1], c);
    if (rc == STORE_ERR_NOT_FOUND)
        return connection_not_found(x);
    if (rc != STORE_OK)
        return store_fail(x, rc, "connection");
    /* Belt and braces: never answer with another tenant's record. */
    if (strcmp(c->tenant_id, t.id) != 0)
        return connection_not_found(x);
    return 0;
}

static void h_conn_get(struct admin_ctx *x)
{
    struct store_connection c;
    if (load_connection(x, &c) == 0)
        reply_json(x, 200, connection_json(&c), NULL, 0);
}

/* Rename (name), rotate (api_key: resealed under a fresh IV and the current
 * master key version; takes effect at once, also for pinned sessions), or
 * move an Azure key to another region. */
static void h_conn_patch(struct admin_ctx *x)
{
    static const char *const fields[] = {"name", "api_key", "region"};
    struct store_connection c;
    json_t *body = NULL, *resp = NULL;
    const char *key = NULL;
    size_t key_len = 0;
    bool has_name, has_key, has_region;
    char name[sizeof(c.name)], region[sizeof(c.region)];
    x->secret_body = true;
    if (read_body(x, true, &body) == -1)
        goto out;
    if (json_object_get(body, "provider") || json_object_get(body, "id")) {
        bad_request(x, "provider and id cannot be changed: create a new connection instead");
        goto out;
    }
    if (check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        load_connection(x, &c) == -1 ||
        get_text(x, body, "name", name, sizeof(name), &has_name) == -1 ||
        get_api_key(x, body, &key, &key_len, &has_key) == -1 ||
        get_region(x, body, c.provider, false, region, &has_region) == -1)
        goto out;
    if (!has_name && !has_key && !has_region) {
        bad_request(x, "give name, api_key and/or region");
        goto out;
    }
    if (has_name)
        memcpy(c.name, name, sizeof(name));
    if (has_region)
        memcpy(c.region, region, sizeof(region));
    if (has_key && seal_key(x, &c, key, key_len) == -1)
        goto out;
    c.updated_at_ms = now_ms();
    int rc = store_connection_update(x->a->store, &c);
    if (rc == STORE_ERR_NOT_FOUND) {
        connection_not_found(x); /* deleted meanwhile */
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "connection");
        goto out;
    }
    store_generation_bump();
    if ((resp = connection_json(&c)) == NULL)
        admin_fail(x, 500, "internal", "could not encode connection");
out:
    wipe_secrets(x, body);
    json_decref(body);
    if (resp != NULL)
        reply_json(x, 200, resp, NULL, 0);
}

/* Deleting also clears every BYOK slot that selected it (store); pinned
 * sessions then fall back to platform keys with fallback_reason. */
static void h_conn_delete(struct admin_ctx *x)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == -1)
        return;
    int rc = store_connection_delete(x->a->store, t.id, x->params[1]);
    if (rc == STORE_ERR_NOT_FOUND) {
        connection_not_found(x);
        return;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "connection");
        return;
    }
    store_generation_bump();
    reply_json(x, 200, json_pack("{s:s, s:b}", "id", x->params[1], "deleted", 1), NULL, 0);
}

/* ---- BYOK settings ------------------------------------------------------- */

static void reply_byok(struct admin_ctx *x, const char *tenant_id)
{
    struct store_byok b;
    int rc = store_byok_get(x->a->store, tenant_id, &b);
    if (rc != STORE_OK) {
        store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        return;
    }
    json_t *body = byok_json(&b);
    if (body == NULL) {
        admin_fail(x, 500, "internal", "could not encode byok settings");
        return;
    }
    reply_json(x, 200, body, NULL, 0);
}

static void h_byok_get(struct admin_ctx *x)
{
    struct store_tenant t;
    if (load_tenant(x, &t) == 0)
        reply_byok(x, t.id);
}

/* slots.<name>: a connection id of this tenant for that provider, or null
 * (clears the slot); absent keeps the slot as it is. */
static int get_slot(struct admin_ctx *x, json_t *slots, const struct store_tenant *t,
                    enum provider_id p, struct store_byok *b)
{
    const char *name = provider_name(p);
    json_t *v = json_object_get(slots, name);
    struct store_connection c;
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        b->slots[p][0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || !valid_id(json_string_value(v), json_string_length(v)))
        return bad_request(x, "slots.%s must be a connection id (\"c_…\") or null", name);
    const char *id = json_string_value(v);
    int rc = store_connection_get(x->a->store, t->id, id, &c);
    /* Whether the id exists for another tenant is not revealed. */
    if (rc == STORE_ERR_NOT_FOUND || (rc == STORE_OK && strcmp(c.tenant_id, t->id) != 0))
        return bad_request(x, "slots.%s: \"%s\" is not a connection of tenant \"%s\"", name, id,
                           t->id);
    if (rc != STORE_OK)
        return store_fail(x, rc, "connection");
    if (c.provider != p)
        return bad_request(x, "slots.%s: connection \"%s\" belongs to provider %s, not %s", name,
                           id, provider_name(c.provider), name);
    memcpy(b->slots[p], c.id, sizeof(b->slots[p]));
    return 0;
}

static void h_byok_put(struct admin_ctx *x)
{
    static const char *const fields[] = {"enabled", "slots"};
    static const char *const slot_fields[] = {"openai", "elevenlabs", "azure_speech"};
    struct store_tenant t;
    struct store_byok b;
    json_t *body = NULL, *slots;
    bool has;
    if (load_tenant(x, &t) == -1)
        goto out;
    if (!t.feature_byok) {
        admin_fail(x, 403, "forbidden",
                   "tenant \"%s\"'s plan lacks the byok feature: set features.byok to true "
                   "(PATCH /admin/tenants/%s) before configuring BYOK",
                   t.id, t.id);
        goto out;
    }
    if (read_body(x, true, &body) == -1 ||
        check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1)
        goto out;
    int rc = store_byok_get(x->a->store, t.id, &b);
    if (rc != STORE_OK) {
        store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        goto out;
    }
    if (get_bool(x, body, "enabled", &b.enabled, &has) == -1)
        goto out;
    slots = json_object_get(body, "slots");
    if (slots != NULL && !json_is_null(slots)) {
        if (!json_is_object(slots)) {
            bad_request(x, "slots must be an object {\"openai\": id|null, \"elevenlabs\": "
                           "id|null, \"azure_speech\": id|null}");
            goto out;
        }
        if (check_fields(x, slots, "slots.", slot_fields, ARRAY_SIZE(slot_fields)) == -1)
            goto out;
        for (int p = 0; p <= PROVIDER_AZURE_SPEECH; p++)
            if (get_slot(x, slots, &t, (enum provider_id)p, &b) == -1)
                goto out;
    }
    b.updated_at_ms = now_ms();
    rc = store_byok_put(x->a->store, t.id, &b);
    if (rc == STORE_ERR_NOT_FOUND) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", t.id);
        goto out;
    }
    if (rc != STORE_OK) {
        store_fail(x, rc, "byok settings");
        goto out;
    }
    store_generation_bump();
    reply_byok(x, t.id);
out:
    json_decref(body);
}

/* ---- resolution explain -------------------------------------------------- */

/* GET …/resolve?provider=P: what a NEW session of the tenant would get now
 * (a running session keeps its pinned decision). */
static void h_resolve(struct admin_ctx *x)
{
    const struct httpparse_request *h = &x->req->head;
    const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
    char pname[32] = "";
    bool seen = false;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        size_t klen = (size_t)(ke - q);
        const char *val = eq ? eq + 1 : pe;
        if (klen == 8 && memcmp(q, "provider", 8) == 0) {
            if (seen) {
                bad_request(x, "query parameter provider given twice");
                return;
            }
            seen = true;
            if (query_decode(val, (size_t)(pe - val), pname, sizeof(pname)) == -1)
                pname[0] = '\0'; /* not a provider: reported below */
        } else if (klen > 0) {
            char safe[48];
            bad_request(x, "unknown query parameter \"%s\" (expected: provider)",
                        log_safe(q, klen, safe, sizeof(safe)));
            return;
        }
        q = amp ? amp + 1 : end;
    }
    enum provider_id p;
    if (!seen || provider_parse(pname, &p) == -1) {
        bad_request(x, "query parameter provider must be one of openai, elevenlabs, "
                       "azure_speech, deepgram, anthropic, cartesia, deepseek");
        return;
    }
    struct store_tenant t, parent;
    struct store_byok tb, pb;
    bool has_parent = false;
    if (load_tenant(x, &t) == -1)
        return;
    int rc = STORE_OK;
    if (t.parent_id[0] != '\0') {
        rc = store_tenant_get(x->a->store, t.parent_id, &parent);
        has_parent = rc == STORE_OK;
        if (rc == STORE_ERR_NOT_FOUND)
            rc = STORE_OK;
    }
    if (rc == STORE_OK)
        rc = store_byok_get(x->a->store, t.id, &tb);
    if (rc == STORE_OK && has_parent)
        rc = store_byok_get(x->a->store, parent.id, &pb);
    if (rc != STORE_OK) {
        store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "tenant");
        return;
    }
    struct resolve_inputs in = {&t, has_parent ? &parent : NULL, &tb, has_parent ? &pb : NULL};
    struct resolve_rule rule;
    resolve_rule(&in, p, &rule);
    bool byok = rule.byok;
    const char *reason = rule.reason;
    if (byok) {
        /* The rules selected a connection: it must still exist and open,
         * as at session start (resolve_session). */
        struct store_connection c;
        char pt[CRYPTO_SECRET_MAX + 1];
        size_t pt_len = 0;
        rc = store_connection_get(x->a->store, rule.owner_id, rule.connection_id, &c);
        if (rc == STORE_ERR_NOT_FOUND || (rc == STORE_OK && c.provider != p)) {
            byok = false;
            reason = "the selected connection no longer exists: platform key, billed to the "
                     "wallet";
        } else if (rc != STORE_OK) {
            store_fail(x, rc, "connection");
            return;
        } else if (crypto_open(c.tenant_id, c.id, c.key_version, c.sealed, c.sealed_len, pt,
                               &pt_len) == -1) {
            byok = false;
            reason = "the selected connection's key cannot be decrypted (sealed under another "
                     "master key version?): platform key, billed to the wallet";
        }
        crypto_wipe(pt, sizeof(pt));
    }
    json_t *body =
        json_pack("{s:s, s:o, s:s, s:o, s:s, s:s, s:s}", "provider", provider_name(p), "slot",
                  provider_is_slot(p) ? json_string(provider_name(p)) : json_null(), "billed_to",
                  byok ? "byok" : "wallet", "connection_id",
                  byok ? json_string(rule.connection_id) : json_null(), "payer_id", rule.payer_id,
                  "owner_id", rule.owner_id, "reason", reason ? reason : "");
    reply_json(x, 200, body, NULL, 0);
}

/* ---- Check Status -------------------------------------------------------- */

static void admin_check_unlink(struct admin_check *ac)
{
    struct admin *a = ac->a;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        a->checks = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    ac->prev = ac->next = NULL;
}

/* check_done_cb: every call finished (or timed out); answer the client. */
static void admin_check_done(json_t *report, void *arg)
{
    struct admin_check *ac = arg;
    struct http_conn *c = ac->c;
    int status = report ? 200 : 500;
    admin_check_unlink(ac);
    log_info("admin %s %s -> %d", ac->method, ac->path_log, status);
    if (report == NULL)
        report = json_pack("{s:{s:s,s:s}}", "error", "code", "internal", "message",
                           "out of memory while checking");
    /* ac is gone before the reply: answering may start the connection's
     * next request right away. */
    free(ac);
    http_respond_json(c, status, report, NULL, 0);
}

/* http_abort_cb: the client left while the calls ran. */
static void admin_check_abort(struct http_conn *c, void *arg)
{
    struct admin_check *ac = arg;
    (void)c;
    log_info("admin %s %s: client went away; check cancelled", ac->method, ac->path_log);
    check_cancel(ac->run);
    admin_check_unlink(ac);
    free(ac);
}

static void h_byok_check(struct admin_ctx *x)
{
    struct admin *a = x->a;
    struct store_tenant t;
    struct store_byok b;
    struct check_target targets[CHECK_SLOTS];
    json_t *body = NULL;
    memset(targets, 0, sizeof(targets));
    /* No parameters; an empty body or {} is fine. */
    if (read_body(x, false, &body) == -1)
        goto out;
    if (json_object_size(body) > 0) {
        bad_request(x, "this endpoint takes no parameters: send no body or {}");
        goto out;
    }
    if (load_tenant(x, &t) == -1)
        goto out;
    int rc = store_byok_get(a->store, t.id, &b);
    if (rc != STORE_OK) {
        store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        goto out;
    }
    /* The tenant's own settings, whatever the toggle and plan say: the
     * check answers "do these keys work", not "are they used". */
    for (int p = 0; p < CHECK_SLOTS; p++) {
        struct check_target *tg = &targets[p];
        if (b.slots[p][0] == '\0')
            continue;
        memcpy(tg->connection_id, b.slots[p], sizeof(tg->connection_id));
        rc = store_connection_get(a->store, t.id, b.slots[p], &tg->conn);
        if (rc == STORE_ERR_NOT_FOUND) {
            tg->kind = CHECK_TARGET_MISSING;
        } else if (rc != STORE_OK) {
            store_fail(x, rc, "connection");
            goto out;
        } else {
            tg->kind = CHECK_TARGET_CONNECTION;
        }
    }
    if (a->pool == NULL && (a->pool = upstream_pool_new(http_conn_base(x->c), a->cfg)) == NULL) {
        admin_fail(x, 500, "internal", "could not create the upstream pool");
        goto out;
    }
    struct admin_check *ac = calloc(1, sizeof(*ac));
    if (ac == NULL) {
        admin_fail(x, 500, "internal", "out of memory");
        goto out;
    }
    ac->a = a;
    ac->c = x->c;
    memcpy(ac->method, x->method, sizeof(ac->method));
    memcpy(ac->path_log, x->path_log, sizeof(ac->path_log));
    ac->run = check_start(a->pool, http_conn_base(x->c), a->cfg, targets, CHECK_DEADLINE_MS,
                          admin_check_done, ac);
    if (ac->run == NULL) {
        free(ac);
        admin_fail(x, 500, "internal", "out of memory");
        goto out;
    }
    ac->next = a->checks;
    if (a->checks)
        a->checks->prev = ac;
    a->checks = ac;
    http_conn_set_callbacks(x->c, admin_check_abort, NULL, ac);
    /* Answered by admin_check_done, from a later loop turn. */
    x->responded = true;
out:
    json_decref(body);
}

/* ---- dispatch ---------------------------------------------------------- */

static const struct admin_route routes[] = {
    {"GET", "/healthz", h_healthz, true},
    {"GET", "/readyz", h_readyz, true},
    {"GET", "/metrics", h_metrics, false},
    {"POST", "/admin/tenants", h_tenant_create, false},
    {"GET", "/admin/tenants", h_tenant_list, false},
    {"GET", "/admin/tenants/{}", h_tenant_get, false},
    {"PATCH", "/admin/tenants/{}", h_tenant_patch, false},
    {"DELETE", "/admin/tenants/{}", h_tenant_delete, false},
    {"POST", "/admin/tenants/{}/topup", h_tenant_topup, false},
    {"POST", "/admin/tenants/{}/keys", h_key_create, false},
    {"GET", "/admin/tenants/{}/keys", h_key_list, false},
    {"DELETE", "/admin/tenants/{}/keys/{}", h_key_revoke, false},
    {"POST", "/admin/tenants/{}/connections", h_conn_create, false},
    {"GET", "/admin/tenants/{}/connections", h_conn_list, false},
    {"GET", "/admin/tenants/{}/connections/{}", h_conn_get, false},
    {"PATCH", "/admin/tenants/{}/connections/{}", h_conn_patch, false},
    {"DELETE", "/admin/tenants/{}/connections/{}", h_conn_delete, false},
    {"GET", "/admin/tenants/{}/byok", h_byok_get, false},
    {"PUT", "/admin/tenants/{}/byok", h_byok_put, false},
    {"POST", "/admin/tenants/{}/byok/check", h_byok_check, false},
    {"GET", "/admin/tenants/{}/resolve", h_resolve, false},
    {"GET", "/admin/usage", h_usage, false},
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
static bool route_match(const char *pattern, const struct segment *segs, size_t n,
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

/* A body refused before (or after) its handler may still hold a provider
 * key (a connection POST with a bad token or content type): wipe it before
 * the error reply releases it. Admin bodies are small. */
static void wipe_body(struct http_request *req)
{
    size_t len = req->body ? evbuffer_get_length(req->body) : 0;
    unsigned char *data = len > 0 ? evbuffer_pullup(req->body, -1) : NULL;
    if (data != NULL)
        crypto_wipe(data, len);
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
            if (!route_match(routes[i].pattern, segs, n_segs, rc, &nc))
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
        wipe_body(req);
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
        wipe_body(req);
        reply_error_now(&x, 405, "method_not_allowed", msg, &hdr, 1);
        return;
    }
    for (size_t i = 0; i < n_caps; i++) {
        if (!valid_id(caps[i].p, caps[i].len)) {
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
    wipe_body(req);
    reply_error_now(&x, x.err_status, x.err_code, x.err_msg, NULL, 0);
}

/* ---- lifecycle ---------------------------------------------------------- */

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
    while (a->checks != NULL) {
        struct admin_check *ac = a->checks;
        check_cancel(ac->run);
        admin_check_unlink(ac);
        free(ac);
    }
    upstream_pool_free(a->pool);
    OPENSSL_cleanse(a->token_hash, sizeof(a->token_hash));
    free(a);
}
