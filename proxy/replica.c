/* replica.c - an in-memory, read-only copy of a store's tenant data
 * (replica.h). Two chained hash tables under one rwlock: tenants (each with
 * its BYOK settings, connections and the ids of its keys) and keys (by key
 * id, the lookup of authentication). A refresh builds the new tenant off
 * the lock and swaps it in. */
#include "common.h"
#include "replica.h"
#include "crypto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

struct rkey {
    struct rkey *next;
    struct store_key k;
};

struct rtenant {
    struct rtenant *next;
    struct store_tenant t;
    struct store_byok byok;
    struct store_connection *conns; /* creation order */
    size_t n_conns, cap_conns;
    struct store_key *keys; /* creation order (also indexed in keys[]) */
    size_t n_keys, cap_keys;
};

struct replica {
    pthread_rwlock_t lock;
    struct rtenant *tenants[BUCKETS];
    struct rkey *keys[BUCKETS];
    size_t n_tenants;
};

struct replica_handle {
    struct store base;
    struct replica *rp;
};

static size_t bucket_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static void tenant_free(struct rtenant *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_conns; i++)
        crypto_wipe(e->conns[i].sealed, sizeof(e->conns[i].sealed));
    free(e->conns);
    for (size_t i = 0; i < e->n_keys; i++)
        crypto_wipe(e->keys[i].hash, sizeof(e->keys[i].hash));
    free(e->keys);
    free(e);
}

struct replica *replica_new(void)
{
    struct replica *rp = calloc(1, sizeof(*rp));
    if (rp == NULL)
        return NULL;
    if (pthread_rwlock_init(&rp->lock, NULL) != 0) {
        free(rp);
        return NULL;
    }
    return rp;
}

/* Caller holds the write lock. Unlinks (and frees) tenant id with its keys. */
static void drop_locked(struct replica *rp, const char *id)
{
    struct rtenant **pp = &rp->tenants[bucket_of(id)];
    while (*pp != NULL && strcmp((*pp)->t.id, id) != 0)
        pp = &(*pp)->next;
    struct rtenant *e = *pp;
    if (e == NULL)
        return;
    *pp = e->next;
    for (size_t i = 0; i < e->n_keys; i++) {
        struct rkey **kp = &rp->keys[bucket_of(e->keys[i].id)];
        while (*kp != NULL && strcmp((*kp)->k.id, e->keys[i].id) != 0)
            kp = &(*kp)->next;
        if (*kp != NULL) {
            struct rkey *k = *kp;
            *kp = k->next;
            crypto_wipe(k->k.hash, sizeof(k->k.hash));
            free(k);
        }
    }
    rp->n_tenants--;
    tenant_free(e);
}

/* Caller holds the write lock; e's keys get index entries. -1 out of memory
 * (e is then not linked; the caller frees it). */
static int link_locked(struct replica *rp, struct rtenant *e)
{
    struct rkey **made = calloc(e->n_keys + 1, sizeof(*made));
    if (made == NULL)
        return -1;
    for (size_t i = 0; i < e->n_keys; i++) {
        if ((made[i] = calloc(1, sizeof(**made))) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(made[j]);
            free(made);
            return -1;
        }
        made[i]->k = e->keys[i];
    }
    for (size_t i = 0; i < e->n_keys; i++) {
        size_t b = bucket_of(made[i]->k.id);
        made[i]->next = rp->keys[b];
        rp->keys[b] = made[i];
    }
    free(made);
    size_t b = bucket_of(e->t.id);
    e->next = rp->tenants[b];
    rp->tenants[b] = e;
    rp->n_tenants++;
    return 0;
}

struct fill {
    struct rtenant *e;
    bool oom;
};

static void key_cb(void *arg, const struct store_key *k)
{
    struct fill *f = arg;
    struct rtenant *e = f->e;
    if (e->n_keys == e->cap_keys) {
        size_t cap = e->cap_keys ? e->cap_keys * 2 : 4;
        struct store_key *grown = realloc(e->keys, cap * sizeof(*grown));
        if (grown == NULL) {
            f->oom = true;
            return;
        }
        e->keys = grown;
        e->cap_keys = cap;
    }
    e->keys[e->n_keys++] = *k;
}

static void conn_cb(void *arg, const struct store_connection *c)
{
    struct fill *f = arg;
    struct rtenant *e = f->e;
    if (e->n_conns == e->cap_conns) {
        size_t cap = e->cap_conns ? e->cap_conns * 2 : 4;
        struct store_connection *grown = realloc(e->conns, cap * sizeof(*grown));
        if (grown == NULL) {
            f->oom = true;
            return;
        }
        e->conns = grown;
        e->cap_conns = cap;
    }
    e->conns[e->n_conns++] = *c;
}

/* Reads tenant id from src into a new entry. STORE_ERR_NOT_FOUND when src
 * has no such tenant. */
static int read_tenant(struct store *src, const char *id, struct rtenant **out)
{
    struct rtenant *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return STORE_ERR_INTERNAL;
    struct fill f = {e, false};
    int rc = store_tenant_get(src, id, &e->t);
    if (rc == STORE_OK)
        rc = store_byok_get(src, id, &e->byok);
    if (rc == STORE_OK)
        rc = store_key_list(src, id, key_cb, &f);
    if (rc == STORE_OK)
        rc = store_connection_list(src, id, conn_cb, &f);
    if (rc == STORE_OK && f.oom)
        rc = STORE_ERR_INTERNAL;
    if (rc != STORE_OK) {
        tenant_free(e);
        return rc;
    }
    *out = e;
    return STORE_OK;
}

int replica_load_tenant(struct replica *rp, struct store *src, const char *tenant_id)
{
    struct rtenant *e = NULL;
    int rc = read_tenant(src, tenant_id, &e);
    if (rc != STORE_OK && rc != STORE_ERR_NOT_FOUND)
        return rc;
    pthread_rwlock_wrlock(&rp->lock);
    drop_locked(rp, tenant_id);
    if (e != NULL && link_locked(rp, e) == -1) {
        tenant_free(e);
        rc = STORE_ERR_INTERNAL;
    }
    pthread_rwlock_unlock(&rp->lock);
    return rc == STORE_ERR_NOT_FOUND ? STORE_OK : rc;
}

struct ids {
    char (*v)[ID_MAX];
    size_t n, cap;
    bool oom;
};

static void id_cb(void *arg, const struct store_tenant *t)
{
    struct ids *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char(*grown)[ID_MAX] = realloc(l->v, cap * sizeof(*grown));
        if (grown == NULL) {
            l->oom = true;
            return;
        }
        l->v = grown;
        l->cap = cap;
    }
    snprintf(l->v[l->n++], ID_MAX, "%s", t->id);
}

int replica_load_all(struct replica *rp, struct store *src)
{
    struct ids l = {0};
    int rc = store_tenant_list(src, id_cb, &l);
    if (rc == STORE_OK && l.oom)
        rc = STORE_ERR_INTERNAL;
    struct rtenant **fresh = rc == STORE_OK ? calloc(l.n + 1, sizeof(*fresh)) : NULL;
    if (rc == STORE_OK && fresh == NULL)
        rc = STORE_ERR_INTERNAL;
    size_t got = 0;
    for (size_t i = 0; rc == STORE_OK && i < l.n; i++) {
        int r = read_tenant(src, l.v[i], &fresh[got]);
        if (r == STORE_OK)
            got++;
        else if (r != STORE_ERR_NOT_FOUND) /* deleted since the list: skip */
            rc = r;
    }
    if (rc == STORE_OK) {
        pthread_rwlock_wrlock(&rp->lock);
        for (size_t b = 0; b < BUCKETS; b++) {
            struct rtenant *e = rp->tenants[b], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                tenant_free(e);
            }
            rp->tenants[b] = NULL;
            struct rkey *k = rp->keys[b], *knext;
            for (; k != NULL; k = knext) {
                knext = k->next;
                crypto_wipe(k->k.hash, sizeof(k->k.hash));
                free(k);
            }
            rp->keys[b] = NULL;
        }
        rp->n_tenants = 0;
        for (size_t i = 0; i < got; i++) {
            if (rc == STORE_OK && link_locked(rp, fresh[i]) == 0) {
                fresh[i] = NULL;
                continue;
            }
            rc = STORE_ERR_INTERNAL;
        }
        pthread_rwlock_unlock(&rp->lock);
    }
    for (size_t i = 0; fresh != NULL && i < got; i++)
        tenant_free(fresh[i]);
    free(fresh);
    free(l.v);
    return rc;
}

size_t replica_tenants(struct replica *rp)
{
    pthread_rwlock_rdlock(&rp->lock);
    size_t n = rp->n_tenants;
    pthread_rwlock_unlock(&rp->lock);
    return n;
}

void replica_free(struct replica *rp)
{
    if (rp == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        struct rtenant *e = rp->tenants[b], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            tenant_free(e);
        }
        struct rkey *k = rp->keys[b], *knext;
        for (; k != NULL; k = knext) {
            knext = k->next;
            free(k);
        }
    }
    pthread_rwlock_destroy(&rp->lock);
    free(rp);
}

/* --- the read-only store over the copy --------------------------------- */

static struct replica *rp_of(struct store *s)
{
    return container_of(s, struct replica_handle, base)->rp;
}

/* Caller holds a lock. */
static struct rtenant *find_tenant(struct replica *rp, const char *id)
{
    struct rtenant *e = rp->tenants[bucket_of(id)];
    while (e != NULL && strcmp(e->t.id, id) != 0)
        e = e->next;
    return e;
}

static void r_close(struct store *s)
{
    free(container_of(s, struct replica_handle, base));
}

static int r_ping(struct store *s)
{
    (void)s;
    return STORE_OK;
}

static int r_tenant_get(struct store *s, const char *id, struct store_tenant *out)
{
    struct replica *rp = rp_of(s);
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant *e = find_tenant(rp, id);
    if (e != NULL)
        *out = e->t;
    pthread_rwlock_unlock(&rp->lock);
    return e != NULL ? STORE_OK : STORE_ERR_NOT_FOUND;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((*(struct rtenant *const *)a)->t.id, (*(struct rtenant *const *)b)->t.id);
}

static int r_tenant_list(struct store *s, store_tenant_cb cb, void *arg)
{
    struct replica *rp = rp_of(s);
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant **v = malloc((rp->n_tenants + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t b = 0; v != NULL && b < BUCKETS; b++)
        for (struct rtenant *e = rp->tenants[b]; e != NULL; e = e->next)
            v[n++] = e;
    if (v != NULL) {
        qsort(v, n, sizeof(*v), cmp_id);
        for (size_t i = 0; i < n; i++)
            cb(arg, &v[i]->t);
    }
    pthread_rwlock_unlock(&rp->lock);
    free(v);
    return v != NULL ? STORE_OK : STORE_ERR_INTERNAL;
}

static int r_key_get(struct store *s, const char *key_id, struct store_key *out)
{
    struct replica *rp = rp_of(s);
    pthread_rwlock_rdlock(&rp->lock);
    struct rkey *k = rp->keys[bucket_of(key_id)];
    while (k != NULL && strcmp(k->k.id, key_id) != 0)
        k = k->next;
    if (k != NULL)
        *out = k->k;
    pthread_rwlock_unlock(&rp->lock);
    return k != NULL ? STORE_OK : STORE_ERR_NOT_FOUND;
}

static int r_key_list(struct store *s, const char *tenant_id, store_key_cb cb, void *arg)
{
    struct replica *rp = rp_of(s);
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant *e = find_tenant(rp, tenant_id);
    for (size_t i = 0; e != NULL && i < e->n_keys; i++)
        cb(arg, &e->keys[i]);
    pthread_rwlock_unlock(&rp->lock);
    return STORE_OK;
}

static int r_connection_get(struct store *s, const char *tenant_id, const char *id,
                            struct store_connection *out)
{
    struct replica *rp = rp_of(s);
    int rc = STORE_ERR_NOT_FOUND;
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant *e = find_tenant(rp, tenant_id);
    for (size_t i = 0; e != NULL && i < e->n_conns; i++) {
        if (strcmp(e->conns[i].id, id) == 0) {
            *out = e->conns[i];
            rc = STORE_OK;
            break;
        }
    }
    pthread_rwlock_unlock(&rp->lock);
    return rc;
}

static int r_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb,
                             void *arg)
{
    struct replica *rp = rp_of(s);
    if (tenant_id == NULL)
        return STORE_ERR_INTERNAL; /* every tenant's: not a worker's question */
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant *e = find_tenant(rp, tenant_id);
    for (size_t i = 0; e != NULL && i < e->n_conns; i++)
        cb(arg, &e->conns[i]);
    pthread_rwlock_unlock(&rp->lock);
    return STORE_OK;
}

static int r_byok_get(struct store *s, const char *tenant_id, struct store_byok *out)
{
    struct replica *rp = rp_of(s);
    pthread_rwlock_rdlock(&rp->lock);
    struct rtenant *e = find_tenant(rp, tenant_id);
    if (e != NULL)
        *out = e->byok;
    else
        memset(out, 0, sizeof(*out)); /* as a backend: no row reads disabled */
    pthread_rwlock_unlock(&rp->lock);
    return STORE_OK;
}

static int read_only(const char *what)
{
    static _Atomic bool warned;
    if (!warned) {
        warned = true;
        log_error("replica: %s asked of the read-only copy (a worker writes nothing to the "
                  "store)",
                  what);
    }
    return STORE_ERR_INTERNAL;
}

static int r_tenant_create(struct store *s, const struct store_tenant *t)
{
    (void)s;
    (void)t;
    return read_only("tenant create");
}

static int r_tenant_update(struct store *s, const struct store_tenant *t)
{
    (void)s;
    (void)t;
    return read_only("tenant update");
}

static int r_tenant_delete(struct store *s, const char *id)
{
    (void)s;
    (void)id;
    return read_only("tenant delete");
}

static int r_tenant_topup(struct store *s, const char *id, int64_t wallet, int64_t plan,
                          struct store_tenant *out)
{
    (void)s;
    (void)id;
    (void)wallet;
    (void)plan;
    (void)out;
    return read_only("topup");
}

static int r_key_create(struct store *s, const struct store_key *k)
{
    (void)s;
    (void)k;
    return read_only("key create");
}

static int r_key_revoke(struct store *s, const char *tenant_id, const char *key_id)
{
    (void)s;
    (void)tenant_id;
    (void)key_id;
    return read_only("key revoke");
}

static int r_usage_write(struct store *s, struct usage_record *records, size_t n,
                         size_t *duplicates, struct usage_record_lines *lines)
{
    (void)s;
    (void)records;
    (void)n;
    (void)duplicates;
    (void)lines;
    return read_only("usage write");
}

static int r_usage_query(struct store *s, const char *tenant_id, const char *session_id, int limit,
                         json_t **out)
{
    (void)s;
    (void)tenant_id;
    (void)session_id;
    (void)limit;
    (void)out;
    return read_only("usage query");
}

static int r_connection_create(struct store *s, const struct store_connection *c)
{
    (void)s;
    (void)c;
    return read_only("connection create");
}

static int r_connection_update(struct store *s, const struct store_connection *c)
{
    (void)s;
    (void)c;
    return read_only("connection update");
}

static int r_connection_delete(struct store *s, const char *tenant_id, const char *id)
{
    (void)s;
    (void)tenant_id;
    (void)id;
    return read_only("connection delete");
}

static int r_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b)
{
    (void)s;
    (void)tenant_id;
    (void)b;
    return read_only("byok put");
}

static int r_secret_get(struct store *s, const char *name, int *key_version,
                        unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len)
{
    (void)s;
    (void)name;
    (void)key_version;
    (void)sealed;
    (void)sealed_len;
    return read_only("secret get");
}

static int r_secret_put(struct store *s, const char *name, int key_version,
                        const unsigned char *sealed, size_t sealed_len)
{
    (void)s;
    (void)name;
    (void)key_version;
    (void)sealed;
    (void)sealed_len;
    return read_only("secret put");
}

static int r_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count)
{
    (void)s;
    (void)fn;
    (void)arg;
    (void)count;
    return read_only("reseal");
}

static const struct store_ops replica_ops = {
    .name = "replica",
    .close = r_close,
    .ping = r_ping,
    .tenant_create = r_tenant_create,
    .tenant_get = r_tenant_get,
    .tenant_update = r_tenant_update,
    .tenant_delete = r_tenant_delete,
    .tenant_topup = r_tenant_topup,
    .tenant_list = r_tenant_list,
    .key_create = r_key_create,
    .key_list = r_key_list,
    .key_revoke = r_key_revoke,
    .key_get = r_key_get,
    .usage_write = r_usage_write,
    .usage_query = r_usage_query,
    .connection_create = r_connection_create,
    .connection_get = r_connection_get,
    .connection_update = r_connection_update,
    .connection_delete = r_connection_delete,
    .connection_list = r_connection_list,
    .byok_get = r_byok_get,
    .byok_put = r_byok_put,
    .secret_get = r_secret_get,
    .secret_put = r_secret_put,
    .reseal_all = r_reseal_all,
};

struct store *replica_store(struct replica *rp)
{
    struct replica_handle *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->base.ops = &replica_ops;
    h->rp = rp;
    return &h->base;
}
