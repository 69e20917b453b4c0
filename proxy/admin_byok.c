/* admin_byok.c - the BYOK part of the admin API (DESIGN §6): connections
 * (sealed on write, never returned), BYOK settings, resolution explain and
 * Check Status. Dispatched from admin.c; built on admin_core.c. */
#include "common.h"

#include "admin_byok.h"
#include "admin_core.h"
#include "check.h"
#include "config.h"
#include "crypto.h"
#include "resolve.h"
#include "urlenc.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    admin_wipe_body(x->req);
}

static json_t *connection_json(const struct store_connection *c)
{
    char hint[sizeof(c->key_hint) + 4];
    snprintf(hint, sizeof(hint), "\xe2\x80\xa6%s", c->key_hint); /* "…abcd" */
    return json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", c->id, "provider",
                     provider_name(c->provider), "name", c->name, "region",
                     c->region[0] ? json_string(c->region) : json_null(), "key_hint", hint,
                     "created_at", admin_time_json(c->created_at_ms), "updated_at",
                     admin_time_json(c->updated_at_ms));
}

static int get_slot_provider(struct admin_ctx *x, json_t *obj, const struct provider **out)
{
    json_t *v = json_object_get(obj, "provider");
    if (v == NULL || json_is_null(v))
        return bad_request(x, "provider is required: one of %s", provider_slot_list());
    *out = json_is_string(v) ? provider_find(json_string_value(v)) : NULL;
    if (*out != NULL && !(*out)->slot)
        return bad_request(x,
                           "provider \"%s\" runs on platform keys only; a connection's provider "
                           "must be one of %s",
                           (*out)->name, provider_slot_list());
    if (*out == NULL)
        return bad_request(x, "provider must be one of %s", provider_slot_list());
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

/* region: required for providers whose hosts depend on it (an allow-listed
 * short name, since it becomes part of the upstream host name), refused for
 * other providers. */
static int get_region(struct admin_ctx *x, json_t *obj, const struct provider *p, bool required,
                      char out[32], bool *present)
{
    json_t *v = json_object_get(obj, "region");
    char err[256];
    *present = v != NULL && !json_is_null(v);
    if (!p->region) {
        if (*present)
            return bad_request(x,
                               "region is not accepted for %s connections (%s keys work "
                               "everywhere)",
                               p->name, p->display);
        return 0;
    }
    if (!*present) {
        if (required)
            return bad_request(x,
                               "region is required for %s connections: the short region name "
                               "of the key's resource, e.g. \"%s\"",
                               p->name, p->region_example ? p->region_example : "");
        return 0;
    }
    if (!json_is_string(v))
        return bad_request(x, "region must be a string such as \"%s\"",
                           p->region_example ? p->region_example : "");
    if (p->check_region(json_string_value(v), err, sizeof(err)) == -1)
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

void admin_byok_conn_create(struct admin_ctx *x)
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
    if (admin_read_body(x, true, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        get_slot_provider(x, body, &c.provider) == -1 ||
        admin_get_text(x, body, "name", c.name, sizeof(c.name), &has_name) == -1 ||
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
    if (admin_load_tenant(x, &t) == -1)
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
        admin_store_fail(x, rc, "connection");
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
        admin_reply_json(x, 201, resp, &loc, 1);
}

static void conn_list_cb(void *arg, const struct store_connection *c)
{
    json_t *v = connection_json(c);
    if (v != NULL)
        json_array_append_new(arg, v);
}

void admin_byok_conn_list(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == -1)
        return;
    json_t *arr = json_array();
    int rc = arr ? store_connection_list(x->a->store, t.id, conn_list_cb, arr) : STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        json_decref(arr);
        admin_store_fail(x, rc, "connection list");
        return;
    }
    admin_reply_json(x, 200, json_pack("{s:o}", "connections", arr), NULL, 0);
}

/* Loads the connection named by the path (tenant, cid). Another tenant's
 * connection is NOT_FOUND in the store, so it is a plain 404 here. */
static int load_connection(struct admin_ctx *x, struct store_connection *c)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == -1)
        return -1;
    int rc = store_connection_get(x->a->store, t.id, x->params[1], c);
    if (rc == STORE_ERR_NOT_FOUND)
        return connection_not_found(x);
    if (rc != STORE_OK)
        return admin_store_fail(x, rc, "connection");
    /* Belt and braces: never answer with another tenant's record. */
    if (strcmp(c->tenant_id, t.id) != 0)
        return connection_not_found(x);
    return 0;
}

void admin_byok_conn_get(struct admin_ctx *x)
{
    struct store_connection c;
    if (load_connection(x, &c) == 0)
        admin_reply_json(x, 200, connection_json(&c), NULL, 0);
}

/* Rename (name), rotate (api_key: resealed under a fresh IV and the current
 * master key version; takes effect at once, also for pinned sessions), or
 * move a key to another region. */
void admin_byok_conn_patch(struct admin_ctx *x)
{
    static const char *const fields[] = {"name", "api_key", "region"};
    struct store_connection c;
    json_t *body = NULL, *resp = NULL;
    const char *key = NULL;
    size_t key_len = 0;
    bool has_name, has_key, has_region;
    char name[sizeof(c.name)], region[sizeof(c.region)];
    x->secret_body = true;
    if (admin_read_body(x, true, &body) == -1)
        goto out;
    if (json_object_get(body, "provider") || json_object_get(body, "id")) {
        bad_request(x, "provider and id cannot be changed: create a new connection instead");
        goto out;
    }
    if (admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1 ||
        load_connection(x, &c) == -1 ||
        admin_get_text(x, body, "name", name, sizeof(name), &has_name) == -1 ||
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
        admin_store_fail(x, rc, "connection");
        goto out;
    }
    store_generation_bump();
    if ((resp = connection_json(&c)) == NULL)
        admin_fail(x, 500, "internal", "could not encode connection");
out:
    wipe_secrets(x, body);
    json_decref(body);
    if (resp != NULL)
        admin_reply_json(x, 200, resp, NULL, 0);
}

/* Deleting also clears every BYOK slot that selected it (store); pinned
 * sessions then fall back to platform keys with fallback_reason. */
void admin_byok_conn_delete(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == -1)
        return;
    int rc = store_connection_delete(x->a->store, t.id, x->params[1]);
    if (rc == STORE_ERR_NOT_FOUND) {
        connection_not_found(x);
        return;
    }
    if (rc != STORE_OK) {
        admin_store_fail(x, rc, "connection");
        return;
    }
    store_generation_bump();
    admin_reply_json(x, 200, json_pack("{s:s, s:b}", "id", x->params[1], "deleted", 1), NULL, 0);
}

/* ---- BYOK settings ------------------------------------------------------- */

static void reply_byok(struct admin_ctx *x, const char *tenant_id)
{
    struct store_byok b;
    int rc = store_byok_get(x->a->store, tenant_id, &b);
    if (rc != STORE_OK) {
        admin_store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        return;
    }
    json_t *body = admin_byok_json(&b);
    if (body == NULL) {
        admin_fail(x, 500, "internal", "could not encode byok settings");
        return;
    }
    admin_reply_json(x, 200, body, NULL, 0);
}

void admin_byok_get(struct admin_ctx *x)
{
    struct store_tenant t;
    if (admin_load_tenant(x, &t) == 0)
        reply_byok(x, t.id);
}

/* slots.<name>: a connection id of this tenant for that provider, or null
 * (clears the slot); absent keeps the slot as it is. */
static int get_slot(struct admin_ctx *x, json_t *slots, const struct store_tenant *t, size_t slot,
                    struct store_byok *b)
{
    const struct provider *p = provider_slot_at(slot);
    const char *name = p->name;
    json_t *v = json_object_get(slots, name);
    struct store_connection c;
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        b->slots[slot][0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || !admin_valid_id(json_string_value(v), json_string_length(v)))
        return bad_request(x, "slots.%s must be a connection id (\"c_…\") or null", name);
    const char *id = json_string_value(v);
    int rc = store_connection_get(x->a->store, t->id, id, &c);
    /* Whether the id exists for another tenant is not revealed. */
    if (rc == STORE_ERR_NOT_FOUND || (rc == STORE_OK && strcmp(c.tenant_id, t->id) != 0))
        return bad_request(x, "slots.%s: \"%s\" is not a connection of tenant \"%s\"", name, id,
                           t->id);
    if (rc != STORE_OK)
        return admin_store_fail(x, rc, "connection");
    if (c.provider != p)
        return bad_request(x, "slots.%s: connection \"%s\" belongs to provider %s, not %s", name,
                           id, provider_name(c.provider), name);
    memcpy(b->slots[slot], c.id, sizeof(b->slots[slot]));
    return 0;
}

void admin_byok_put(struct admin_ctx *x)
{
    static const char *const fields[] = {"enabled", "slots"};
    const char *slot_fields[PROVIDER_SLOT_MAX];
    struct store_tenant t;
    struct store_byok b;
    json_t *body = NULL, *slots;
    bool has;
    for (size_t i = 0; i < provider_slot_count(); i++)
        slot_fields[i] = provider_slot_at(i)->name;
    if (admin_load_tenant(x, &t) == -1)
        goto out;
    if (!t.feature_byok) {
        admin_fail(x, 403, "forbidden",
                   "tenant \"%s\"'s plan lacks the byok feature: set features.byok to true "
                   "(PATCH /admin/tenants/%s) before configuring BYOK",
                   t.id, t.id);
        goto out;
    }
    if (admin_read_body(x, true, &body) == -1 ||
        admin_check_fields(x, body, "", fields, ARRAY_SIZE(fields)) == -1)
        goto out;
    int rc = store_byok_get(x->a->store, t.id, &b);
    if (rc != STORE_OK) {
        admin_store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        goto out;
    }
    if (admin_get_bool(x, body, "enabled", &b.enabled, &has) == -1)
        goto out;
    slots = json_object_get(body, "slots");
    if (slots != NULL && !json_is_null(slots)) {
        if (!json_is_object(slots)) {
            bad_request(x,
                        "slots must be an object of slot name to connection id or null "
                        "(slots: %s)",
                        provider_slot_list());
            goto out;
        }
        if (admin_check_fields(x, slots, "slots.", slot_fields, provider_slot_count()) == -1)
            goto out;
        for (size_t i = 0; i < provider_slot_count(); i++)
            if (get_slot(x, slots, &t, i, &b) == -1)
                goto out;
    }
    b.updated_at_ms = now_ms();
    rc = store_byok_put(x->a->store, t.id, &b);
    if (rc == STORE_ERR_NOT_FOUND) {
        admin_fail(x, 404, "not_found", "tenant \"%s\" does not exist", t.id);
        goto out;
    }
    if (rc != STORE_OK) {
        admin_store_fail(x, rc, "byok settings");
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
void admin_byok_resolve(struct admin_ctx *x)
{
    const struct httpparse_request *h = &x->req->head;
    char pname[32] = "";
    bool seen = false;
    struct urlenc_query it;
    struct urlenc_pair pair;
    urlenc_query_init(&it, h->query, h->query_len);
    while (urlenc_query_next(&it, &pair)) {
        if (pair.name_len == 8 && memcmp(pair.name, "provider", 8) == 0) {
            if (seen) {
                bad_request(x, "query parameter provider given twice");
                return;
            }
            seen = true;
            if (admin_query_decode(pair.value, pair.value_len, pname, sizeof(pname)) == -1)
                pname[0] = '\0'; /* not a provider: reported below */
        } else if (pair.name_len > 0) {
            char safe[48];
            bad_request(x, "unknown query parameter \"%s\" (expected: provider)",
                        log_safe(pair.name, pair.name_len, safe, sizeof(safe)));
            return;
        }
    }
    const struct provider *p = seen ? provider_find(pname) : NULL;
    if (p == NULL) {
        bad_request(x, "query parameter provider must be one of %s", provider_list());
        return;
    }
    struct store_tenant t, parent;
    struct store_byok tb, pb;
    bool has_parent = false;
    if (admin_load_tenant(x, &t) == -1)
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
        admin_store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "tenant");
        return;
    }
    struct resolve_inputs in = {&t, has_parent ? &parent : NULL, &tb, has_parent ? &pb : NULL};
    struct resolve_rule rule;
    resolve_rule(&in, p, &rule);
    bool byok = rule.byok;
    const char *reason = rule.reason, *fallback = NULL;
    char why[512];
    if (byok) {
        /* The rules selected a connection: it must still exist and open,
         * as at session start (resolve_session). */
        struct store_connection c;
        char pt[CRYPTO_SECRET_MAX + 1];
        size_t pt_len = 0;
        rc = store_connection_get(x->a->store, rule.owner_id, rule.connection_id, &c);
        if (rc == STORE_ERR_NOT_FOUND || (rc == STORE_OK && c.provider != p)) {
            byok = false;
            fallback = "connection_deleted";
            reason = "the selected connection no longer exists: platform key, billed to the "
                     "wallet";
        } else if (rc != STORE_OK) {
            admin_store_fail(x, rc, "connection");
            return;
        } else if (crypto_open(c.tenant_id, c.id, c.key_version, c.sealed, c.sealed_len, pt,
                               &pt_len) == -1) {
            byok = false;
            fallback = "connection_unreadable";
            snprintf(why, sizeof(why),
                     "the selected connection %s cannot be decrypted with the master key in "
                     "force (version %d; it was sealed under version %d): platform key, billed "
                     "to the wallet. Start the proxy with the master key it was sealed under, "
                     "or finish the rotation with --rotate-master-key",
                     c.id, crypto_key_version(), c.key_version);
            reason = why;
        }
        crypto_wipe(pt, sizeof(pt));
    }
    json_t *body = json_pack(
        "{s:s, s:o, s:s, s:o, s:s, s:s, s:s, s:o}", "provider", provider_name(p), "slot",
        p->slot ? json_string(p->name) : json_null(), "billed_to", byok ? "byok" : "wallet",
        "connection_id", byok ? json_string(rule.connection_id) : json_null(), "payer_id",
        rule.payer_id, "owner_id", rule.owner_id, "reason", reason ? reason : "", "fallback_reason",
        fallback != NULL ? json_string(fallback) : json_null());
    admin_reply_json(x, 200, body, NULL, 0);
}

/* ---- Check Status -------------------------------------------------------- */

/* A Check Status request answered later, when its calls finished. */
struct admin_check {
    struct admin *a;
    struct http_conn *c;
    struct check_run *run;
    struct admin_check *prev, *next;
    char method[16];
    char path_log[160];
};

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
    admin_log_reply(ac->method, ac->path_log, status);
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

void admin_byok_check(struct admin_ctx *x)
{
    struct admin *a = x->a;
    struct store_tenant t;
    struct store_byok b;
    struct check_target targets[CHECK_SLOTS];
    json_t *body = NULL;
    memset(targets, 0, sizeof(targets));
    /* No parameters; an empty body or {} is fine. */
    if (admin_read_body(x, false, &body) == -1)
        goto out;
    if (json_object_size(body) > 0) {
        bad_request(x, "this endpoint takes no parameters: send no body or {}");
        goto out;
    }
    if (admin_load_tenant(x, &t) == -1)
        goto out;
    int rc = store_byok_get(a->store, t.id, &b);
    if (rc != STORE_OK) {
        admin_store_fail(x, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_INTERNAL : rc, "byok settings");
        goto out;
    }
    /* The tenant's own settings, whatever the toggle and plan say: the
     * check answers "do these keys work", not "are they used". */
    for (size_t p = 0; p < provider_slot_count(); p++) {
        struct check_target *tg = &targets[p];
        if (b.slots[p][0] == '\0')
            continue;
        memcpy(tg->connection_id, b.slots[p], sizeof(tg->connection_id));
        rc = store_connection_get(a->store, t.id, b.slots[p], &tg->conn);
        if (rc == STORE_ERR_NOT_FOUND) {
            tg->kind = CHECK_TARGET_MISSING;
        } else if (rc != STORE_OK) {
            admin_store_fail(x, rc, "connection");
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

void admin_byok_cancel_checks(struct admin *a)
{
    while (a->checks != NULL) {
        struct admin_check *ac = a->checks;
        check_cancel(ac->run);
        admin_check_unlink(ac);
        free(ac);
    }
}
