/* resolve.c - proxy-key authentication with a per-worker cache, and the
 * resolution of DESIGN §3 (platform keys at this stage). */
#include "common.h"
#include "resolve.h"
#include "crypto.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 1024
#define CACHE_MAX     8192
/* A payer whose cached funds exceed this is re-read after charges at most
 * every FUNDS_RECHECK_MS: one request cannot plausibly take it from above $1
 * to zero, and a read per request would put the store on the hot path.
 * Near zero, every committed charge triggers a re-read. */
#define FUNDS_COMFORT_MICROS 1000000
#define FUNDS_RECHECK_MS     1000

struct cache_entry {
    struct cache_entry *next;
    struct store_key key;
    struct resolve_identity id;
};

/* A payer's plan credits + wallet as last read, for the balance gate. */
struct balance_entry {
    struct balance_entry *next;
    char payer_id[ID_MAX];
    int64_t funds;
    uint64_t balance_generation; /* store_balance_generation() when read */
    int64_t read_at;             /* mono_ms() when read */
};

struct resolver {
    const struct config *cfg;
    struct store *store;
    uint64_t generation;
    size_t n_entries;
    struct cache_entry *buckets[CACHE_BUCKETS];
    size_t n_balances;
    struct balance_entry *balances[CACHE_BUCKETS];
};

struct resolver *resolve_new(const struct config *cfg, struct store *store)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    r->store = store;
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
        struct balance_entry *e = r->balances[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        r->balances[i] = NULL;
    }
    r->n_balances = 0;
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
    snprintf(e->id.key_id, sizeof(e->id.key_id), "%s", e->key.id);
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

/* Plan credits + wallet of payer_id, re-read from the store only when a
 * charge or an admin write happened since the last read. */
static enum resolve_status payer_funds(struct resolver *r, const char *payer_id, int64_t *funds)
{
    uint64_t gen = store_generation();
    if (gen != r->generation) {
        cache_clear(r);
        r->generation = gen;
    }
    uint64_t bgen = store_balance_generation();
    size_t b = bucket_of(payer_id);
    struct balance_entry *e = r->balances[b];
    while (e != NULL && strcmp(e->payer_id, payer_id) != 0)
        e = e->next;
    if (e != NULL &&
        (e->balance_generation == bgen ||
         (e->funds > FUNDS_COMFORT_MICROS && mono_ms() - e->read_at < FUNDS_RECHECK_MS))) {
        *funds = e->funds;
        return RESOLVE_OK;
    }
    struct store_tenant t;
    int rc = store_tenant_get(r->store, payer_id, &t);
    if (rc == STORE_ERR_NOT_FOUND)
        return RESOLVE_UNAUTHORIZED;
    if (rc != STORE_OK)
        return RESOLVE_STORE_ERROR;
    if (e == NULL) {
        if (r->n_balances >= CACHE_MAX)
            cache_clear(r);
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return RESOLVE_STORE_ERROR;
        snprintf(e->payer_id, sizeof(e->payer_id), "%s", payer_id);
        e->next = r->balances[b];
        r->balances[b] = e;
        r->n_balances++;
    }
    e->funds = t.plan_credits_micros + t.wallet_micros;
    e->balance_generation = bgen;
    e->read_at = mono_ms();
    *funds = e->funds;
    return RESOLVE_OK;
}

enum resolve_status resolve_session(struct resolver *r, const struct resolve_identity *id,
                                    enum provider_id p, const char *session_id,
                                    struct resolve_decision *out)
{
    (void)session_id;
    memset(out, 0, sizeof(*out));
    out->provider = p;
    /* Rule 1: a subaccount's payer is its agency owner. */
    const struct store_tenant *payer = id->has_parent ? &id->parent : &id->tenant;
    snprintf(out->payer_id, sizeof(out->payer_id), "%s", payer->id);

    /* Rule 2 (this stage): platform key, billed to the wallet. */
    out->byok = false;
    out->reason = "platform key: BYOK is not available at this stage";
    const struct config_platform_key *pk = &r->cfg->platform_keys[p];
    if (pk->key == NULL)
        return RESOLVE_NO_PLATFORM_KEY;
    out->api_key = pk->key;
    out->region = pk->region;

    /* Rule 4: the balance gate. */
    int64_t funds = 0;
    enum resolve_status st = payer_funds(r, payer->id, &funds);
    if (st != RESOLVE_OK)
        return st;
    if (funds <= 0)
        return RESOLVE_NO_FUNDS;
    return RESOLVE_OK;
}
