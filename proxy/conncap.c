/* conncap.c - caps on open downstream connections, in all and per client
 * address: one mutex over a chained hash of the addresses with open
 * connections (an address leaves the table with its last connection, so
 * the table holds at most max_total entries). Taken once when a connection
 * is accepted and once when it closes: never on the request path. */
#include "common.h"
#include "conncap.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define CONNCAP_KEY_MAX 8 /* an IPv4 address, or the /64 of an IPv6 one */

struct conncap_entry {
    struct conncap_entry *next;
    uint8_t key[CONNCAP_KEY_MAX];
    uint8_t key_len;
    size_t count;
};

struct conncap {
    pthread_mutex_t lock;
    size_t max_total, max_per_client;
    size_t open;
    uint64_t seed; /* random: a client cannot choose addresses that collide */
    size_t mask;   /* buckets - 1 (a power of two) */
    struct conncap_entry **buckets;
};

struct conncap *conncap_new(size_t max_total, size_t max_per_client)
{
    struct conncap *cc = calloc(1, sizeof(*cc));
    if (cc == NULL)
        return NULL;
    /* About one bucket per possible entry, at most 64 Ki buckets. */
    size_t n = 64;
    while (n < max_total && n < 65536)
        n *= 2;
    cc->buckets = calloc(n, sizeof(*cc->buckets));
    if (cc->buckets == NULL || pthread_mutex_init(&cc->lock, NULL) != 0) {
        free(cc->buckets);
        free(cc);
        return NULL;
    }
    cc->mask = n - 1;
    cc->max_total = max_total;
    cc->max_per_client = max_per_client;
    if (getrandom(&cc->seed, sizeof(cc->seed), 0) != (ssize_t)sizeof(cc->seed))
        cc->seed = (uint64_t)mono_ms() * 0x9e3779b97f4a7c15ULL;
    return cc;
}

void conncap_free(struct conncap *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i <= cc->mask; i++) {
        struct conncap_entry *e = cc->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(cc->buckets);
    pthread_mutex_destroy(&cc->lock);
    free(cc);
}

/* The address a client is counted by; 0 when its family has none. */
static size_t client_key(const struct sockaddr *sa, uint8_t key[CONNCAP_KEY_MAX])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            memcpy(key, a + 12, 4);
            return 4;
        }
        memcpy(key, a, 8);
        return 8;
    }
    return 0;
}

static size_t bucket_of(const struct conncap *cc, const uint8_t *key, size_t len)
{
    uint64_t h = cc->seed ^ len;
    for (size_t i = 0; i < len; i++) {
        h ^= key[i];
        h *= 0x100000001b3ULL;
    }
    /* Final avalanche (splitmix64), so the low bits depend on every byte. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (size_t)h & cc->mask;
}

enum conncap_result conncap_enter(struct conncap *cc, const struct sockaddr *sa,
                                  struct conncap_slot *slot)
{
    memset(slot, 0, sizeof(*slot));
    if (cc == NULL)
        return CONNCAP_OK;
    uint8_t key[CONNCAP_KEY_MAX];
    size_t len = client_key(sa, key);
    enum conncap_result rc = CONNCAP_OK;
    struct conncap_entry *e = NULL;
    pthread_mutex_lock(&cc->lock);
    if (cc->open >= cc->max_total) {
        rc = CONNCAP_FULL;
        goto done;
    }
    if (len > 0 && cc->max_per_client > 0) {
        size_t b = bucket_of(cc, key, len);
        for (e = cc->buckets[b]; e != NULL; e = e->next)
            if (e->key_len == len && memcmp(e->key, key, len) == 0)
                break;
        if (e != NULL && e->count >= cc->max_per_client) {
            rc = CONNCAP_CLIENT_FULL;
            goto done;
        }
        if (e == NULL) {
            e = calloc(1, sizeof(*e));
            if (e == NULL) {
                rc = CONNCAP_FULL;
                goto done;
            }
            memcpy(e->key, key, len);
            e->key_len = (uint8_t)len;
            e->next = cc->buckets[b];
            cc->buckets[b] = e;
        }
        e->count++;
    }
    cc->open++;
    slot->cap = cc;
    slot->entry = e;
done:
    pthread_mutex_unlock(&cc->lock);
    return rc;
}

void conncap_leave(struct conncap_slot *slot)
{
    struct conncap *cc = slot->cap;
    if (cc == NULL)
        return;
    pthread_mutex_lock(&cc->lock);
    cc->open--;
    struct conncap_entry *e = slot->entry;
    if (e != NULL && --e->count == 0) {
        struct conncap_entry **pp = &cc->buckets[bucket_of(cc, e->key, e->key_len)];
        while (*pp != e)
            pp = &(*pp)->next;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&cc->lock);
    memset(slot, 0, sizeof(*slot));
}

size_t conncap_open(struct conncap *cc)
{
    if (cc == NULL)
        return 0;
    pthread_mutex_lock(&cc->lock);
    size_t n = cc->open;
    pthread_mutex_unlock(&cc->lock);
    return n;
}
