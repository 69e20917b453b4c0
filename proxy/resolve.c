/* resolve.c - proxy-key authentication with a per-worker cache, and the
 * resolution of DESIGN §3: the rule table (resolve_rule), session pinning
 * (session.h), BYOK connections opened per request. The balance gate is
 * the exchange's (ledger.h). */
#include "common.h"
#include "resolve.h"
#include "crypto.h"
#include "metrics.h"
#include "session.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 1024
#define CACHE_MAX     8192
struct cache_entry {
    struct cache_entry *next;
    struct store_key key;
    struct resolve_identity id;
};

/* A connection as stored (sealed), cached per worker until the next admin
 * write; opened per request, so a rotation is seen by the next request. */
struct conn_entry {
    struct conn_entry *next;
    bool missing; /* negative entry: the owner has no such connection */
    struct store_connection c;
};

struct resolver {
    const struct config *cfg;
    int pin_ttl_s; /* the local pin table's TTL: session_ttl_s, or a cache's in fleet mode */
    struct store *store;
    uint64_t generation;
    size_t n_entries;
    struct cache_entry *buckets[CACHE_BUCKETS];
    size_t n_conns;
    struct conn_entry *conns[CACHE_BUCKETS];
};

struct resolver *resolve_new(const struct config *cfg, struct store *store)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    r->store = store;
    r->pin_ttl_s = cfg->session_ttl_s;
    r->generation = store_generation();
    return r;
}

static void cache_clear(struct resolver *r)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cache_entry *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        r->buckets[i] = NULL;
    }
    r->n_entries = 0;
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct conn_entry *ce = r->conns[i], *cnext;
        for (; ce != NULL; ce = cnext) {
            cnext = ce->next;
            crypto_wipe(ce->c.sealed, sizeof(ce->c.sealed));
            free(ce);
        }
        r->conns[i] = NULL;
    }
    r->n_conns = 0;
}

void resolve_set_pin_ttl(struct resolver *r, int seconds)
{
    r->pin_ttl_s = seconds;
}

struct store *resolve_store(struct resolver *r)
{
    return r->store;
}

void resolve_free(struct resolver *r)
{
    if (r == NULL)
        return;
    cache_clear(r);
    free(r);
}

static size_t bucket_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % CACHE_BUCKETS;
}

/* Loads key + tenant (+ parent) from the store into a new cache entry. */
static enum resolve_status cache_fill(struct resolver *r, const char *key_id,
                                      struct cache_entry **out)
{
    struct cache_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return RESOLVE_STORE_ERROR;
    enum resolve_status st = RESOLVE_STORE_ERROR;
    int rc = store_key_get(r->store, key_id, &e->key);
    if (rc == STORE_ERR_NOT_FOUND) {
        st = RESOLVE_UNAUTHORIZED;
        goto failed;
    }
    if (rc != STORE_OK)
        goto failed;
    rc = store_tenant_get(r->store, e->key.tenant_id, &e->id.tenant);
    if (rc == STORE_ERR_NOT_FOUND) {
        st = RESOLVE_UNAUTHORIZED;
        goto failed;
    }
    if (rc != STORE_OK)
        goto failed;
    if (e->id.tenant.parent_id[0] != '\0') {
        rc = store_tenant_get(r->store, e->id.tenant.parent_id, &e->id.parent);
        if (rc == STORE_OK)
            e->id.has_parent = true;
        else if (rc != STORE_ERR_NOT_FOUND)
            goto failed;
    }
    if (store_byok_get(r->store, e->id.tenant.id, &e->id.tenant_byok) != STORE_OK ||
        (e->id.has_parent &&
         store_byok_get(r->store, e->id.parent.id, &e->id.parent_byok) != STORE_OK))
        goto failed;
    str_copy(e->id.key_id, sizeof(e->id.key_id), e->key.id);
    if (r->n_entries >= CACHE_MAX)
        cache_clear(r);
    size_t b = bucket_of(key_id);
    e->next = r->buckets[b];
    r->buckets[b] = e;
    r->n_entries++;
    *out = e;
    return RESOLVE_OK;
failed:
    free(e);
    return st;
}

enum resolve_status resolve_auth(struct resolver *r, const char *key, size_t len,
                                 struct resolve_identity *out)
{
    char key_id[ID_MAX];
    if (key == NULL || crypto_proxy_key_id(key, len, key_id) == -1)
        return RESOLVE_UNAUTHORIZED;
    uint64_t gen = store_generation();
    if (gen != r->generation) {
        cache_clear(r);
        r->generation = gen;
    }
    struct cache_entry *e = r->buckets[bucket_of(key_id)];
    while (e != NULL && strcmp(e->key.id, key_id) != 0)
        e = e->next;
    if (e == NULL) {
        enum resolve_status st = cache_fill(r, key_id, &e);
        if (st != RESOLVE_OK)
            return st;
    }
    unsigned char hash[CRYPTO_HASH_LEN];
    crypto_key_hash(key, len, hash);
    bool ok = crypto_equal(hash, e->key.hash, CRYPTO_HASH_LEN);
    crypto_wipe(hash, sizeof(hash));
    if (!ok || e->key.revoked_at_ms != 0)
        return RESOLVE_UNAUTHORIZED;
    *out = e->id;
    return RESOLVE_OK;
}

/* Every reason the rules give, once: a pin names its slots' reasons by
 * index when it is written down (resolve_pin_encode), so another instance
 * reads the same words. Append only: stored pins keep their indexes. */
enum rule_reason {
    R_OWNER_PLAN,
    R_OWNER_WD,
    R_OWNER_OFF,
    R_PLAN,
    R_OFF,
    R_NO_SLOT,
    R_EMPTY,
    R_BYOK_OWNER,
    R_BYOK_OWN,
    R_FALLBACK,
    R__COUNT
};
static const char *const rule_reasons[R__COUNT] = {
    [R_OWNER_PLAN] = "platform key: the agency owner's plan lacks the byok or agency feature",
    [R_OWNER_WD] = "platform key: the agency owner has wallet deduction on (owner pays)",
    [R_OWNER_OFF] = "platform key: the agency owner's BYOK toggle is off",
    [R_PLAN] = "platform key: the tenant's plan lacks the byok feature",
    [R_OFF] = "platform key: the tenant's BYOK toggle is off",
    [R_NO_SLOT] = "platform key: this provider has no BYOK slot (platform keys only)",
    [R_EMPTY] = "platform key: no connection is selected for this slot",
    [R_BYOK_OWNER] = "BYOK: the agency owner's connection for this slot",
    [R_BYOK_OWN] = "BYOK: the tenant's own connection for this slot",
    [R_FALLBACK] = "platform key: the pinned connection is gone or unreadable (fallback)",
};

/* --- the rules ------------------------------------------------------------ */

void resolve_rule(const struct resolve_inputs *in, const struct provider *p,
                  struct resolve_rule *out)
{
    const struct store_tenant *t = in->tenant;
    memset(out, 0, sizeof(*out));
    const struct store_byok *settings = NULL;
    bool usable = false;

    if (in->parent != NULL) {
        /* Rule 1: a subaccount pays through its agency owner and can only
         * ever use the owner's keys. */
        const struct store_tenant *a = in->parent;
        str_copy(out->payer_id, sizeof(out->payer_id), a->id);
        str_copy(out->owner_id, sizeof(out->owner_id), a->id);
        if (!a->feature_byok || !a->feature_agency) {
            out->reason = rule_reasons[R_OWNER_PLAN];
        } else if (a->wallet_deduction) {
            out->reason = rule_reasons[R_OWNER_WD];
        } else if (in->parent_byok == NULL || !in->parent_byok->enabled) {
            out->reason = rule_reasons[R_OWNER_OFF];
        } else {
            settings = in->parent_byok;
            usable = true;
        }
    } else {
        str_copy(out->payer_id, sizeof(out->payer_id), t->id);
        str_copy(out->owner_id, sizeof(out->owner_id), t->id);
        if (!t->feature_byok)
            out->reason = rule_reasons[R_PLAN];
        else if (in->tenant_byok == NULL || !in->tenant_byok->enabled)
            out->reason = rule_reasons[R_OFF];
        else {
            settings = in->tenant_byok;
            usable = true;
        }
    }
    if (!usable)
        return;
    /* Rule 2: per slot. */
    int slot = provider_slot_index(p);
    if (slot < 0) {
        out->reason = rule_reasons[R_NO_SLOT];
        return;
    }
    if (settings->slots[slot][0] == '\0') {
        out->reason = rule_reasons[R_EMPTY];
        return;
    }
    out->byok = true;
    str_copy(out->connection_id, sizeof(out->connection_id), settings->slots[slot]);
    out->reason = in->parent != NULL ? rule_reasons[R_BYOK_OWNER] : rule_reasons[R_BYOK_OWN];
}

/* The owner's connection, through the per-worker cache. STORE_ERR_NOT_FOUND
 * when it is gone. */
static int connection_get(struct resolver *r, const char *owner_id, const char *conn_id,
                          struct store_connection **out)
{
    size_t b = bucket_of(conn_id);
    struct conn_entry *e = r->conns[b];
    while (e != NULL && (strcmp(e->c.id, conn_id) != 0 || strcmp(e->c.tenant_id, owner_id) != 0))
        e = e->next;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return STORE_ERR_INTERNAL;
        int rc = store_connection_get(r->store, owner_id, conn_id, &e->c);
        if (rc == STORE_ERR_NOT_FOUND) {
            memset(&e->c, 0, sizeof(e->c));
            str_copy(e->c.id, sizeof(e->c.id), conn_id);
            str_copy(e->c.tenant_id, sizeof(e->c.tenant_id), owner_id);
            e->missing = true;
        } else if (rc != STORE_OK) {
            free(e);
            return rc;
        }
        if (r->n_conns >= CACHE_MAX)
            cache_clear(r);
        e->next = r->conns[b];
        r->conns[b] = e;
        r->n_conns++;
    }
    if (e->missing)
        return STORE_ERR_NOT_FOUND;
    *out = &e->c;
    return STORE_OK;
}

/* Connections already warned about as unreadable, process-wide, so the log
 * says it once per connection (and sealed version), not once per request. */
#define WARNED_MAX 4096
static struct {
    pthread_mutex_t mu;
    size_t n;
    char ids[WARNED_MAX][ID_MAX + 12];
} warned = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool first_warning(const struct store_connection *c)
{
    char key[ID_MAX + 12];
    snprintf(key, sizeof(key), "%s/%d", c->id, c->key_version);
    bool first = true;
    pthread_mutex_lock(&warned.mu);
    for (size_t i = 0; i < warned.n && first; i++)
        first = strcmp(warned.ids[i], key) != 0;
    if (first && warned.n < WARNED_MAX)
        memcpy(warned.ids[warned.n++], key, sizeof(key));
    pthread_mutex_unlock(&warned.mu);
    return first;
}

/* True when the sealed key opens under the master key in force. */
static bool conn_opens(const struct store_connection *c)
{
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t n = 0;
    bool ok =
        crypto_open(c->tenant_id, c->id, c->key_version, c->sealed, c->sealed_len, pt, &n) == 0;
    crypto_wipe(pt, sizeof(pt));
    return ok;
}

/* Takes the pinned (or fresh) decision for provider p: which key, and who
 * pays. The key itself is opened later (resolve_open_key). */
static enum resolve_status apply_pin(struct resolver *r, const struct session_pin *pin,
                                     const struct provider *p, struct resolve_decision *out)
{
    int slot = provider_slot_index(p);
    str_copy(out->payer_id, sizeof(out->payer_id), pin->payer_id);
    if (slot >= 0 && pin->byok[slot]) {
        struct store_connection *c = NULL;
        int rc = connection_get(r, pin->owner_id, pin->connection_id[slot], &c);
        if (rc == STORE_OK && conn_opens(c)) {
            out->byok = true;
            out->conn = *c;
            str_copy(out->connection_id, sizeof(out->connection_id), c->id);
            out->reason = pin->reason[slot];
            return RESOLVE_OK;
        }
        if (rc == STORE_OK) {
            /* The seed's rule stands (the platform key carries the line),
             * but loudly: after a botched master-key rotation every BYOK
             * tenant would be billed to its wallet. */
            metrics_inc(METRICS_CONN_UNREADABLE);
            if (first_warning(c))
                log_warn("connection %s of tenant %s cannot be decrypted (master key version %d "
                         "in force, sealed under %d): its lines run on the platform key, billed "
                         "to the wallet, with fallback_reason connection_unreadable. Start the "
                         "proxy with the master key it was sealed under (BYOK_MASTER_KEY, "
                         "BYOK_MASTER_KEY_VERSION), or finish the rotation with "
                         "--rotate-master-key.",
                         c->id, c->tenant_id, crypto_key_version(), c->key_version);
            snprintf(out->fallback_reason, sizeof(out->fallback_reason), "connection_unreadable");
        } else if (rc == STORE_ERR_NOT_FOUND) {
            snprintf(out->fallback_reason, sizeof(out->fallback_reason), "connection_deleted");
        } else {
            return RESOLVE_STORE_ERROR;
        }
        out->reason = rule_reasons[R_FALLBACK];
    } else {
        out->reason = slot >= 0 ? pin->reason[slot] : rule_reasons[R_NO_SLOT];
    }
    out->byok = false;
    if (config_platform_key(r->cfg, p)->key == NULL)
        return RESOLVE_NO_PLATFORM_KEY;
    return RESOLVE_OK;
}

static bool pin_equal(const struct session_pin *a, const struct session_pin *b)
{
    if (strcmp(a->payer_id, b->payer_id) != 0 || strcmp(a->owner_id, b->owner_id) != 0)
        return false;
    for (int s = 0; s < SESSION_SLOTS; s++)
        if (a->byok[s] != b->byok[s] || strcmp(a->connection_id[s], b->connection_id[s]) != 0)
            return false;
    return true;
}

enum resolve_status resolve_session(struct resolver *r, const struct resolve_identity *id,
                                    const struct provider *p, const char *session_id,
                                    struct resolve_decision *out)
{
    return resolve_session_pin(r, id, p, session_id, out, NULL);
}

enum resolve_status resolve_pinned(struct resolver *r, const struct session_pin *pin,
                                   const struct provider *p, struct resolve_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->provider = p;
    out->new_session = true;
    uint64_t gen = store_generation();
    if (gen != r->generation) {
        cache_clear(r);
        r->generation = gen;
    }
    enum resolve_status st = apply_pin(r, pin, p, out);
    if (st != RESOLVE_OK)
        resolve_done(out);
    return st;
}

enum resolve_status resolve_key_identity(struct resolver *r, const char *key_id,
                                         struct resolve_identity *out)
{
    uint64_t gen = store_generation();
    if (gen != r->generation) {
        cache_clear(r);
        r->generation = gen;
    }
    struct cache_entry *e = r->buckets[bucket_of(key_id)];
    while (e != NULL && strcmp(e->key.id, key_id) != 0)
        e = e->next;
    if (e == NULL) {
        enum resolve_status st = cache_fill(r, key_id, &e);
        if (st != RESOLVE_OK)
            return st;
    }
    if (e->key.revoked_at_ms != 0)
        return RESOLVE_UNAUTHORIZED;
    *out = e->id;
    return RESOLVE_OK;
}

enum resolve_status resolve_session_pin(struct resolver *r, const struct resolve_identity *id,
                                        const struct provider *p, const char *session_id,
                                        struct resolve_decision *out, struct session_pin *pin_out)
{
    memset(out, 0, sizeof(*out));
    out->provider = p;
    uint64_t gen = store_generation();
    if (gen != r->generation) {
        cache_clear(r);
        r->generation = gen;
    }

    struct session_pin pin;
    bool pinned = session_id != NULL && session_get(id->tenant.id, session_id, r->pin_ttl_s, &pin);
    if (!pinned) {
        /* Rule 3: a new session decides every slot now. */
        struct resolve_inputs in = {
            .tenant = &id->tenant,
            .parent = id->has_parent ? &id->parent : NULL,
            .tenant_byok = &id->tenant_byok,
            .parent_byok = id->has_parent ? &id->parent_byok : NULL,
        };
        struct resolve_rule rule;
        memset(&pin, 0, sizeof(pin));
        resolve_rule(&in, p, &rule); /* payer and owner do not depend on the slot */
        str_copy(pin.payer_id, sizeof(pin.payer_id), rule.payer_id);
        str_copy(pin.owner_id, sizeof(pin.owner_id), rule.owner_id);
        for (size_t s = 0; s < provider_slot_count(); s++) {
            resolve_rule(&in, provider_slot_at(s), &rule);
            pin.byok[s] = rule.byok;
            str_copy(pin.connection_id[s], sizeof(pin.connection_id[s]), rule.connection_id);
            pin.reason[s] = rule.reason;
        }
        out->new_session = true;
    }

    enum resolve_status st = apply_pin(r, &pin, p, out);
    if (st != RESOLVE_OK) {
        resolve_done(out);
        return st;
    }
    if (out->new_session) {
        if (session_id != NULL) {
            struct session_pin kept = pin;
            session_put(id->tenant.id, session_id, r->pin_ttl_s, &kept);
            if (!pin_equal(&kept, &pin)) {
                /* A concurrent first request of the same session won the
                 * race: follow its decision. */
                resolve_done(out);
                memset(out, 0, sizeof(*out));
                out->provider = p;
                st = apply_pin(r, &kept, p, out);
                if (st != RESOLVE_OK) {
                    resolve_done(out);
                    return st;
                }
                pin = kept;
            }
        }
    }
    if (pin_out != NULL)
        *pin_out = pin;
    return RESOLVE_OK;
}

int resolve_open_key(struct resolver *r, struct resolve_decision *d)
{
    if (d->byok) {
        const struct store_connection *c = &d->conn;
        size_t n = 0;
        if (crypto_open(c->tenant_id, c->id, c->key_version, c->sealed, c->sealed_len, d->secret,
                        &n) == -1)
            return -1;
        d->api_key = d->secret;
        d->region = c->region[0] != '\0' ? c->region : NULL;
        return 0;
    }
    const struct config_platform_key *pk = config_platform_key(r->cfg, d->provider);
    if (pk->key == NULL)
        return -1;
    d->api_key = pk->key;
    d->region = pk->region;
    return 0;
}

void resolve_done(struct resolve_decision *d)
{
    crypto_wipe(d->secret, sizeof(d->secret));
    crypto_wipe(d->conn.sealed, sizeof(d->conn.sealed));
    if (d->api_key == d->secret)
        d->api_key = NULL;
}

/* --- pins written down ---------------------------------------------------- */

static int reason_index(const char *reason)
{
    for (int i = 0; i < R__COUNT; i++)
        if (reason == rule_reasons[i] || (reason != NULL && strcmp(reason, rule_reasons[i]) == 0))
            return i;
    return -1;
}

char *resolve_pin_encode(const struct session_pin *pin)
{
    json_t *slots = json_object();
    json_t *root = json_pack("{s:s, s:s, s:o}", "payer", pin->payer_id, "owner", pin->owner_id,
                             "slots", slots);
    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < provider_slot_count(); i++) {
        json_t *e = json_pack("{s:b, s:s, s:i}", "byok", pin->byok[i], "conn",
                              pin->connection_id[i], "reason", reason_index(pin->reason[i]));
        if (e == NULL || json_object_set_new(slots, provider_slot_at(i)->name, e) == -1) {
            json_decref(root);
            return NULL;
        }
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

int resolve_pin_decode(const char *text, size_t len, struct session_pin *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = json_loadb(text, len, 0, NULL);
    const char *payer = json_string_value(json_object_get(root, "payer"));
    const char *owner = json_string_value(json_object_get(root, "owner"));
    json_t *slots = json_object_get(root, "slots");
    int rc = -1;
    if (payer == NULL || owner == NULL || !json_is_object(slots) || strlen(payer) >= ID_MAX ||
        strlen(owner) >= ID_MAX)
        goto out;
    str_copy(out->payer_id, sizeof(out->payer_id), payer);
    str_copy(out->owner_id, sizeof(out->owner_id), owner);
    for (size_t i = 0; i < provider_slot_count(); i++) {
        /* A slot the text does not name (added since it was written) runs
         * on the platform key. */
        out->reason[i] = rule_reasons[R_EMPTY];
        json_t *e = json_object_get(slots, provider_slot_at(i)->name);
        if (e == NULL)
            continue;
        const char *conn = json_string_value(json_object_get(e, "conn"));
        json_t *ri = json_object_get(e, "reason");
        if (conn == NULL || strlen(conn) >= ID_MAX || !json_is_integer(ri))
            goto out;
        out->byok[i] = json_is_true(json_object_get(e, "byok"));
        str_copy(out->connection_id[i], sizeof(out->connection_id[i]), conn);
        json_int_t idx = json_integer_value(ri);
        out->reason[i] = idx >= 0 && idx < R__COUNT ? rule_reasons[idx] : rule_reasons[R_EMPTY];
        if (out->byok[i] && conn[0] == '\0')
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc == -1)
        memset(out, 0, sizeof(*out));
    return rc;
}
