/* admin_tenants.c - the tenant side of the admin API (DESIGN §6): tenants
 * and their balances, proxy keys, usage queries, metrics and health.
 * Dispatched from admin.c; built on admin_core.c. */
#include "common.h"

#include "admin_core.h"
#include "urlenc.h"
#include "admin_tenants.h"
#include "crypto.h"
#include "ledger.h"
#include "metrics.h"
#include "redis_async.h"
#include "session.h"
#include "store_redis.h"
#include "usage.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE_LIMIT_DEFAULT 100
#define USAGE_LIMIT_MAX     1000
/* Largest balance or top-up accepted: $1e9. Keeps balance arithmetic far
 * from int64 overflow however many top-ups are applied. */
#define BALANCE_MAX INT64_C(1000000000000000)

/* DESIGN §3.3: the tenant's session pins go, on every instance in fleet
 * mode (where they live in Redis). */
static void drop_pins(struct admin_ctx *x, const char *tenant_id)
{
    session_drop_tenant(tenant_id);
    const char *backend = x->a->cfg->store_backend;
    if (backend != NULL && strcmp(backend, "redis") == 0 &&
        store_redis_drop_pins(x->a->store, tenant_id) != STORE_OK)
        log_warn("admin: the session pins of tenant %s could not be dropped in Redis; they "
                 "expire with session_ttl_s",
                 tenant_id);
}

/* ---- tenant fields ------------------------------------------------------ */

static json_t *tenant_json(const struct store_tenant *t)
{
    return json_pack(
        "{s:s, s:s, s:{s:b, s:b}, s:o, s:b, s:I, s:I, s:{s:o}, s:o, s:o}", "id", t->id, "name",
        t->name, "features", "byok", t->feature_byok, "agency", t->feature_agency, "parent_id",
        t->parent_id[0] ? json_string(t->parent_id) : json_null(), "wallet_deduction",
        t->wallet_deduction, "plan_credits_micros", (json_int_t)t->plan_credits_micros,
        "wallet_micros", (json_int_t)t->wallet_micros, "limits", "live_sessions",
        t->live_sessions > 0 ? json_integer((json_int_t)t->live_sessions) : json_null(),
        "created_at", admin_time_json(t->created_at_ms), "updated_at",
        admin_time_json(t->updated_at_ms));
}

/* "limits": {"live_sessions": N} (DESIGN §6); null clears the limit, absent
 * leaves it as it is. */
#define LIVE_SESSIONS_MAX 1000000
static int get_limits(struct admin_ctx *x, json_t *obj, struct store_tenant *t)
{
    static const char *const names[] = {"live_sessions"};
    json_t *l = json_object_get(obj, "limits");
    if (l == NULL)
        return 0;
    if (json_is_null(l)) {
        t->live_sessions = 0;
        return 0;
    }
    if (!json_is_object(l))
        return bad_request(x,
                           "limits must be an object {\"live_sessions\": n} (n from 1 to %d, "
                           "or null for no limit)",
                           LIVE_SESSIONS_MAX);
    if (admin_check_fields(x, l, "limits.", names, ARRAY_SIZE(names)) == -1)
        return -1;
    json_t *v = json_object_get(l, "live_sessions");
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        t->live_sessions = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > LIVE_SESSIONS_MAX)
        return bad_request(x,
                           "limits.live_sessions must be an integer from 1 to %d (WebSocket "
                           "sessions and streaming responses open at once), or null for no limit",
                           LIVE_SESSIONS_MAX);
    t->live_sessions = json_integer_value(v);
    return 0;
}

/* What the tenant's running requests hold and its charges not yet committed
 * reserve: this process's ledger, or in fleet mode the live holds in Redis
 * (every instance's) and this instance's uncommitted charges. */
static int64_t held_micros(struct admin_ctx *x, const char *tenant_id)
{
    const char *backend = x->a->cfg->store_backend;
    int64_t held = ledger_held(tenant_id), fleet = 0;
    if (backend != NULL && strcmp(backend, "redis") == 0 &&
        store_redis_held(x->a->store, tenant_id, &fleet) == STORE_OK)
        held += fleet;
    return held;
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
    /* What its running wallet lines hold and its uncommitted charges
     * reserve (DESIGN §3.4): plan credits + wallet - held_micros is what
     * the balance gate admits on. */
    if (body == NULL || bj == NULL || json_object_set_new(body, "byok", bj) == -1 ||
        json_object_set_new(body, "held_micros", json_integer((json_int_t)held_micros(x, t->id))) ==
            -1) {
        json_decref(body);
        admin_fail(x, 500, "internal", "could not encode tenant");
        return;
    }
    admin_reply_json(x, status, body, extra, n_extra);
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

/* DESIGN §6: the parent must exist, have the agency feature, not be the
 * tenant itself and not be a subaccount (§3 resolves one level), and the
 * tenant must not already own subaccounts. */
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
    if (!p.feature_agency)
        return bad_request(x,
                           "parent_id: tenant \"%s\" does not have the agency feature; give it "
                           "features.agency = true first (PATCH /admin/tenants/%s)",
                           parent_id, parent_id);
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

void admin_tenants_create(struct admin_ctx *x)
{
    static const char *const fields[] = {"id",
                                         "name",
                                         "features",
                                         "parent_id",
                                         "wallet_deduction",
                                         "plan_credits_micros",
                                         "wallet_micros",
                                         "limits"};
    struct store_tenant t = {0};
    json_t *body = NULL;
    bool has_id, has_name, has, has_parent;
    if (admin_read_body(x, true, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        admin_get_id(x, body, "id", t.id, &has_id) == -1 ||
        admin_get_text(x, body, "name", t.name, sizeof(t.name), &has_name) == -1 ||
        get_features(x, body, &t) == -1 ||
        admin_get_id(x, body, "parent_id", t.parent_id, &has_parent) == -1 ||
        admin_get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1 ||
        get_int(x, body, "plan_credits_micros", 0, BALANCE_MAX, &t.plan_credits_micros, &has) ==
            -1 ||
        get_int(x, body, "wallet_micros", 0, BALANCE_MAX, &t.wallet_micros, &has) == -1 ||
        get_limits(x, body, &t) == -1)
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

void admin_tenants_get(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == 0)
        reply_tenant(x, 200, &t, NULL, 0);
}

void admin_tenants_patch(struct admin_ctx *x)
{
    static const char *const fields[] = {"name", "features", "parent_id", "wallet_deduction",
                                         "limits"};
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
        admin_get_bool(x, body, "wallet_deduction", &t.wallet_deduction, &has) == -1 ||
        get_limits(x, body, &t) == -1)
        goto out;
    char parent_before[ID_MAX];
    memcpy(parent_before, t.parent_id, sizeof(parent_before));
    json_t *pv = json_object_get(body, "parent_id");
    if (pv != NULL && json_is_null(pv)) {
        t.parent_id[0] = '\0';
    } else if (pv != NULL) {
        char parent[ID_MAX];
        if (admin_get_id(x, body, "parent_id", parent, &has) == -1)
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
    if (strcmp(parent_before, t.parent_id) != 0) {
        /* DESIGN §3.3: the tenant's sessions end with its old owner: pins
         * dropped here, open sockets closed by their workers. */
        drop_pins(x, t.id);
        log_info("admin: tenant %s moved from parent \"%s\" to \"%s\": its sessions end", t.id,
                 parent_before, t.parent_id);
    }
    store_generation_bump();
    reply_tenant(x, 200, &t, NULL, 0);
out:
    json_decref(body);
}

void admin_tenants_delete(struct admin_ctx *x)
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
    drop_pins(x, x->params[0]);
    ledger_invalidate(x->params[0]);
    store_generation_bump();
    admin_reply_json(x, 200, json_pack("{s:s, s:b}", "id", x->params[0], "deleted", 1), NULL, 0);
}

static void tenant_list_cb(void *arg, const struct store_tenant *t)
{
    json_t *v = tenant_json(t);
    if (v != NULL)
        json_array_append_new(arg, v);
}

void admin_tenants_list(struct admin_ctx *x)
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

void admin_tenants_topup(struct admin_ctx *x)
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
    ledger_invalidate(t.id);
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

void admin_tenants_key_create(struct admin_ctx *x)
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
    admin_iso_time(k.created_at_ms, created);
    if ((label = json_text_or_null(k.label)) == NULL)
        goto oom;
    len = asprintf(&text, "{\"id\":\"%s\",\"key\":\"%s\",\"label\":%s,\"created_at\":\"%s\"}\n",
                   k.id, key, label, created);
    if (len == -1) {
        text = NULL;
        goto oom;
    }
    admin_reply_text(x, 201, "application/json", text, (size_t)len);
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

void admin_tenants_key_list(struct admin_ctx *x)
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

void admin_tenants_key_revoke(struct admin_ctx *x)
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
        /* DESIGN §3.3: no session keeps running on a revoked key. */
        drop_pins(x, tid);
        store_generation_bump();
    }
    admin_reply_json(
        x, 200, json_pack("{s:s, s:o}", "id", k.id, "revoked_at", admin_time_json(k.revoked_at_ms)),
        NULL, 0);
out:
    OPENSSL_cleanse(k.hash, sizeof(k.hash));
}

/* ---- usage, metrics, health -------------------------------------------- */

void admin_tenants_usage(struct admin_ctx *x)
{
    char tenant[ID_MAX] = "", session[SESSION_MAX] = "", limit_s[16] = "";
    bool seen[3] = {false, false, false};
    const struct httpparse_request *h = &x->req->head;
    struct urlenc_query it;
    struct urlenc_pair pair;
    urlenc_query_init(&it, h->query, h->query_len);
    while (urlenc_query_next(&it, &pair)) {
        const char *q = pair.name;
        size_t klen = pair.name_len;
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
            if (admin_query_decode(pair.value, pair.value_len, dst, dsize) == -1) {
                bad_request(x,
                            "query parameter %.*s: bad percent-encoding, control character "
                            "or longer than %zu bytes",
                            (int)klen, q, dsize - 1);
                return;
            }
        }
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

void admin_tenants_metrics(struct admin_ctx *x)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        admin_fail(x, 500, "internal", "out of memory");
        return;
    }
    metrics_render(out);
    size_t len = evbuffer_get_length(out);
    const char *text = (const char *)evbuffer_pullup(out, -1);
    admin_reply_text(x, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len);
    evbuffer_free(out);
}

void admin_tenants_healthz(struct admin_ctx *x)
{
    admin_reply_json(x, 200, json_pack("{s:s}", "status", "ok"), NULL, 0);
}

/* Ready when the store answers, and in fleet mode when every worker's own
 * Redis connection is up too: they reconnect on their own (with backoff)
 * after Redis comes back, and until then refuse wallet lines
 * (store.on_down). */
void admin_tenants_readyz(struct admin_ctx *x)
{
    const char *why = store_ping(x->a->store) != STORE_OK ? "store unreachable"
                      : !rasync_all_up()                  ? "store unreachable from a worker"
                                                          : NULL;
    if (why == NULL)
        admin_reply_json(x, 200, json_pack("{s:s}", "status", "ready"), NULL, 0);
    else
        admin_reply_json(x, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", why),
                         NULL, 0);
}
