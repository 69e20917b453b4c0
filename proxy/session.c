/* session.c - process-wide table of pinned session decisions, keyed by
 * (tenant id, session id), with sliding expiry. 64 shards, each a chained
 * hash table under its own mutex, so workers rarely meet on a lock and hold
 * it only for a lookup and a copy. */
#include "common.h"
#include "session.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS        64
#define SHARD_BUCKETS 1024

struct entry {
    struct entry *next;
    uint64_t hash;
    char tenant_id[ID_MAX];
    char session_id[SESSION_MAX];
    int64_t expires_ms; /* mono_ms() */
    struct session_pin pin;
};

struct shard {
    pthread_mutex_t mu;
    struct entry *buckets[SHARD_BUCKETS];
};

static struct shard *shards;
static int64_t (*clock_ms)(void) = mono_ms;
static size_t max_entries;
static _Atomic size_t n_entries;
static _Atomic bool warned_full;

static uint64_t key_hash(const char *tenant_id, const char *session_id)
{
    uint64_t h = fnv1a_add(FNV1A_INIT, tenant_id);
    h = (h ^ 0xff) * FNV1A_PRIME; /* separator: ("ab","c") != ("a","bc") */
    return fnv1a_add(h, session_id);
}

int session_init(size_t max_sessions)
{
    shards = calloc(SHARDS, sizeof(*shards));
    if (shards == NULL)
        return -1;
    for (size_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&shards[i].mu, NULL);
    max_entries = max_sessions;
    atomic_store(&n_entries, 0);
    atomic_store(&warned_full, false);
    return 0;
}

void session_shutdown(void)
{
    if (shards == NULL)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        for (size_t b = 0; b < SHARD_BUCKETS; b++) {
            struct entry *e = shards[i].buckets[b], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                free(e);
            }
        }
        pthread_mutex_destroy(&shards[i].mu);
    }
    free(shards);
    shards = NULL;
    atomic_store(&n_entries, 0);
}

/* Finds the live entry in its bucket, unlinking (and freeing) expired ones
 * met on the way. Called with the shard locked. */
static struct entry *find(struct shard *sh, size_t b, uint64_t h, const char *tenant_id,
                          const char *session_id, int64_t now)
{
    struct entry **pp = &sh->buckets[b];
    while (*pp != NULL) {
        struct entry *e = *pp;
        if (e->expires_ms <= now) {
            *pp = e->next;
            free(e);
            atomic_fetch_sub(&n_entries, 1);
            continue;
        }
        if (e->hash == h && strcmp(e->tenant_id, tenant_id) == 0 &&
            strcmp(e->session_id, session_id) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

bool session_get(const char *tenant_id, const char *session_id, int ttl_s, struct session_pin *out)
{
    if (shards == NULL)
        return false;
    uint64_t h = key_hash(tenant_id, session_id);
    struct shard *sh = &shards[h % SHARDS];
    size_t b = (size_t)((h / SHARDS) % SHARD_BUCKETS);
    int64_t now = clock_ms();
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, b, h, tenant_id, session_id, now);
    if (e != NULL) {
        e->expires_ms = now + (int64_t)ttl_s * 1000;
        *out = e->pin;
    }
    pthread_mutex_unlock(&sh->mu);
    return e != NULL;
}

bool session_put(const char *tenant_id, const char *session_id, int ttl_s, struct session_pin *pin)
{
    if (shards == NULL)
        return false;
    uint64_t h = key_hash(tenant_id, session_id);
    struct shard *sh = &shards[h % SHARDS];
    size_t b = (size_t)((h / SHARDS) % SHARD_BUCKETS);
    int64_t now = clock_ms();
    bool kept = true;
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, b, h, tenant_id, session_id, now);
    if (e != NULL) {
        /* A concurrent first request won: use its decision. */
        e->expires_ms = now + (int64_t)ttl_s * 1000;
        *pin = e->pin;
    } else if (atomic_load(&n_entries) >= max_entries || (e = calloc(1, sizeof(*e))) == NULL) {
        kept = false;
    } else {
        e->hash = h;
        snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", tenant_id);
        snprintf(e->session_id, sizeof(e->session_id), "%s", session_id);
        e->expires_ms = now + (int64_t)ttl_s * 1000;
        e->pin = *pin;
        e->next = sh->buckets[b];
        sh->buckets[b] = e;
        atomic_fetch_add(&n_entries, 1);
    }
    pthread_mutex_unlock(&sh->mu);
    if (!kept && !atomic_exchange(&warned_full, true))
        log_warn("session table full (%zu sessions): new sessions are not pinned until some "
                 "expire",
                 max_entries);
    return kept;
}

/* Drops every pin that is expired, or of tenant_id when it is not NULL. */
static void drop_where(const char *tenant_id)
{
    if (shards == NULL)
        return;
    int64_t now = clock_ms();
    for (size_t i = 0; i < SHARDS; i++) {
        struct shard *sh = &shards[i];
        pthread_mutex_lock(&sh->mu);
        for (size_t b = 0; b < SHARD_BUCKETS; b++) {
            struct entry **pp = &sh->buckets[b];
            while (*pp != NULL) {
                struct entry *e = *pp;
                if (e->expires_ms <= now ||
                    (tenant_id != NULL && strcmp(e->tenant_id, tenant_id) == 0)) {
                    *pp = e->next;
                    free(e);
                    atomic_fetch_sub(&n_entries, 1);
                } else {
                    pp = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    if (atomic_load(&n_entries) < max_entries)
        atomic_store(&warned_full, false);
}

void session_replace(const char *tenant_id, const char *session_id, int ttl_s,
                     const struct session_pin *pin)
{
    if (shards == NULL)
        return;
    uint64_t h = key_hash(tenant_id, session_id);
    struct shard *sh = &shards[h % SHARDS];
    size_t b = (size_t)((h / SHARDS) % SHARD_BUCKETS);
    int64_t now = clock_ms();
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, b, h, tenant_id, session_id, now);
    if (e != NULL) {
        e->expires_ms = now + (int64_t)ttl_s * 1000;
        e->pin = *pin;
    }
    pthread_mutex_unlock(&sh->mu);
    if (e == NULL) {
        struct session_pin copy = *pin;
        (void)session_put(tenant_id, session_id, ttl_s, &copy);
    }
}

void session_sweep(void)
{
    drop_where(NULL);
}

void session_drop_tenant(const char *tenant_id)
{
    drop_where(tenant_id);
}

void session_set_clock(int64_t (*clock)(void))
{
    clock_ms = clock ? clock : mono_ms;
}

size_t session_count(void)
{
    return atomic_load(&n_entries);
}
