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

#include "admin_internal.h"
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
void admin_reply_json(struct admin_ctx *x, int status, json_t *body, const struct http_kv *extra,
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
    admin_reply_json(x, status, body, extra, n_extra);
}

/* Records the error to send (first one wins) and returns -1, so validation
 * helpers can be chained with ||. */
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

/* Maps a store status to the error the client sees. what names the object
 * for 404 ("tenant \"t1\""). */
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

/* ---- small helpers ----------------------------------------------------- */

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

/* ISO-8601 UTC with milliseconds: "2026-11-24T12:00:00.000Z". */
static void iso_time(int64_t ms, char out[32])
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
                     (json_int_t)t->wallet_micros, "created_at", admin_time_json(t->created_at_ms),
                     "updated_at", admin_time_json(t->updated_at_ms));
}

json_t *admin_byok_json(const struct store_byok *b)
{
    json_t *slots = json_object();
    for (int i = 0; slots != NULL && i <= PROVIDER_AZURE_SPEECH; i++)
        json_object_set_new(slots, provider_name((enum provider_id)i),
                            b->slots[i][0] ? json_string(b->slots[i]) : json_null());
    return json_pack("{s:b, s:o, s:o}", "enabled", b->enabled, "slots", slots, "updated_at",
                     admin_time_json(b->updated_at_ms));
}

/* The tenant with its BYOK settings ("byok"). */
static void reply_tenant(struct admin_ctx *x, int status, const struct store_tenant *t,
                         const struct http_kv *extra, size_t n_extra)
{
    struct store_byok b;
    int rc = store_byok_get(x->a->store, t->id, &b);
    if (rc != STORE_OK) {
        admin_store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        return;
    }
    json_t *body = tenant_json(t);
    json_t *bj = admin_byok_json(&b);
    if (body == NULL || bj == NULL || json_object_set_new(body, "byok", bj) == -1) {
        json_decref(body);
        admin_fail(x, 500, "internal", "could not encode tenant");
        return;
    }
    admin_reply_json(x, status, body, extra, n_extra);
}

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

static int get_id_field(struct admin_ctx *x, json_t *obj, const char *name, char out[ID_MAX],
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

static int get_features(struct admin_ctx *x, json_t *obj, struct store_tenant *t)
{
    static const char *const names[] = {"byok", "agency"};
    json_t *f = json_object_get(obj, "features");
    bool present;
    if (f == NULL || json_is_null(f))
        return 0;
    if (!json_is_object(f))
        return bad_request(x, "features must be an object {\"byok\": bool, \"agency\": bool}");
    if (admin_check_fields(x, f, "features.", names, ARRAY_SIZE(names)) == -1)
        return -1;
    json_t *b = json_object_get(f, "byok"), *a = json_object_get(f, "agency");
    if ((b != NULL && !json_is_null(b) && !json_is_boolean(b)) ||
        (a != NULL && !json_is_null(a) && !json_is_boolean(a)))
        return bad_request(x, "features.byok and features.agency must be true or false");
    if (admin_get_bool(x, f, "byok", &t->feature_byok, &present) == -1 ||
        admin_get_bool(x, f, "agency", &t->feature_agency, &present) == -1)
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
        return admin_store_fail(x, rc, "parent tenant");
    if (p.parent_id[0] != '\0')
        return bad_request(x,
                           "parent_id: tenant \"%s\" is itself a subaccount of \"%s\"; "
                           "subaccounts cannot own subaccounts",
                           parent_id, p.parent_id);
    if (may_have_children) {
        struct children_scan cs = {self_id, false};
        rc = store_tenant_list(x->a->store, children_cb, &cs);
        if (rc != STORE_OK)
            return admin_store_fail(x, rc, "tenant list");
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
    if (admin_read_body(x, true, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_id_field(x, body, "id", t.id, &has_id) == -1 ||
        admin_get_text(x, body, "name", t.name, sizeof(t.name), &has_name) == -1 ||
        get_features(x, body, &t) == -1 ||
        get_id_field(x, body, "parent_id", t.parent_id, &has_parent) == -1 ||
        admin_get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1 ||
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
        admin_store_fail(x, rc, "tenant");
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
int admin_load_tenant(struct admin_ctx *x, struct store_tenant *t)
{
    int rc = store_tenant_get(x->a->store, x->params[0], t);
    if (rc == STORE_ERR_NOT_FOUND)
        return admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", x->params[0]);
    if (rc != STORE_OK)
        return admin_store_fail(x, rc, "tenant");
    return 0;
}

static void h_tenant_get(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == 0)
        reply_tenant(x, 200, &t, NULL, 0);
}

static void h_tenant_patch(struct admin_ctx *x)
{
    static const char *const fields[] = {"name", "features", "parent_id", "wallet_deduction"};
    struct store_tenant t;
    json_t *body = NULL;
    bool has;
    if (admin_read_body(x, true, &body) == -1)
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
    if (admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        admin_load_tenant(x, &t) == -1 ||
        admin_get_text(x, body, "name", t.name, sizeof(t.name), &has) == -1 ||
        get_features(x, body, &t) == -1 ||
        admin_get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1)
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
        admin_store_fail(x, rc, "tenant");
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
        admin_store_fail(x, rc, "tenant");
        return;
    }
    store_generation_bump();
    admin_reply_json(x, 200, json_pack("{s:s, s:b}", "id", x->params[0], "deleted", 1), NULL, 0);
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
        admin_store_fail(x, rc, "tenant list");
        return;
    }
    admin_reply_json(x, 200, json_pack("{s:o}", "tenants", arr), NULL, 0);
}

static void h_tenant_topup(struct admin_ctx *x)
{
    static const char *const fields[] = {"wallet_micros", "plan_credits_micros"};
    json_t *body = NULL;
    int64_t wallet = 0, plan = 0;
    bool has_wallet, has_plan;
    struct store_tenant t;
    /* Negative amounts are corrections (refund reversal, manual fix). */
    if (admin_read_body(x, true, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
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
        admin_store_fail(x, rc, "tenant");
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
    if (admin_read_body(x, false, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        admin_get_text(x, body, "label", k.label, sizeof(k.label), &has) == -1 ||
        admin_load_tenant(x, &t) == -1)
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
        admin_store_fail(x, rc, "key");
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
                          admin_time_json(k->created_at_ms), "revoked_at",
                          admin_time_json(k->revoked_at_ms));
    if (v != NULL)
        json_array_append_new(arg, v);
}

static void h_key_list(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == -1)
        return;
    json_t *arr = json_array();
    int rc = arr ? store_key_list(x->a->store, t.id, key_list_cb, arr) : STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        json_decref(arr);
        admin_store_fail(x, rc, "key list");
        return;
    }
    admin_reply_json(x, 200, json_pack("{s:o}", "keys", arr), NULL, 0);
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
        admin_store_fail(x, rc, "key");
        goto out;
    }
    /* Revoking twice is not an error: the first revocation time stands. */
    if (k.revoked_at_ms == 0) {
        rc = store_key_revoke(x->a->store, tid, kid);
        if (rc == STORE_OK)
            rc = store_key_get(x->a->store, kid, &k);
        if (rc != STORE_OK) {
            admin_store_fail(x, rc, "key");
            goto out;
        }
        store_generation_bump();
    }
    admin_reply_json(
        x, 200, json_pack("{s:s, s:o}", "id", k.id, "revoked_at", admin_time_json(k.revoked_at_ms)),
        NULL, 0);
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
int admin_query_decode(const char *s, size_t len, char *out, size_t out_size)
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
            if (admin_query_decode(val, vlen, dst, dsize) == -1) {
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
        admin_store_fail(x, rc == STORE_OK ? STORE_ERR_INTERNAL : rc, "usage");
        return;
    }
    admin_reply_json(x, 200, json_pack("{s:o}", "records", arr), NULL, 0);
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
    admin_reply_json(x, 200, json_pack("{s:s}", "status", "ok"), NULL, 0);
}

static void h_readyz(struct admin_ctx *x)
{
    if (store_ping(x->a->store) == STORE_OK)
        admin_reply_json(x, 200, json_pack("{s:s}", "status", "ready"), NULL, 0);
    else
        admin_reply_json(
            x, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", "store unreachable"),
            NULL, 0);
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
    {"POST", "/admin/tenants/{}/connections", admin_conn_create, false},
    {"GET", "/admin/tenants/{}/connections", admin_conn_list, false},
    {"GET", "/admin/tenants/{}/connections/{}", admin_conn_get, false},
    {"PATCH", "/admin/tenants/{}/connections/{}", admin_conn_patch, false},
    {"DELETE", "/admin/tenants/{}/connections/{}", admin_conn_delete, false},
    {"GET", "/admin/tenants/{}/byok", admin_byok_get, false},
    {"PUT", "/admin/tenants/{}/byok", admin_byok_put, false},
    {"POST", "/admin/tenants/{}/byok/check", admin_byok_check, false},
    {"GET", "/admin/tenants/{}/resolve", admin_resolve, false},
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
