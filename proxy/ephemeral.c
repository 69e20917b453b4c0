/* ephemeral.c - the ephemeral token table (see ephemeral.h): sharded hash
 * tables keyed by the token's SHA-256, entries unlinked when taken or
 * expired. */
#include "common.h"
#include "ephemeral.h"
#include "crypto.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS  16
#define BUCKETS 1024 /* per shard */

struct entry {
    struct entry *next;
    unsigned char digest[32];
    struct ephemeral_grant grant;
};

struct shard {
    pthread_mutex_t lock;
    struct entry *buckets[BUCKETS];
};

static struct shard shards[SHARDS];
static size_t max_entries;
static _Atomic size_t n_entries;
static bool ready;

int ephemeral_init(size_t max_tokens)
{
    for (size_t i = 0; i < SHARDS; i++) {
        if (pthread_mutex_init(&shards[i].lock, NULL) != 0)
            return -1;
        memset(shards[i].buckets, 0, sizeof(shards[i].buckets));
    }
    max_entries = max_tokens;
    n_entries = 0;
    ready = true;
    return 0;
}

void ephemeral_grant_free(struct ephemeral_grant *g)
{
    if (g->first_message != NULL) {
        crypto_wipe(g->first_message, strlen(g->first_message));
        free(g->first_message);
    }
    g->first_message = NULL;
}

static void entry_free(struct entry *e)
{
    ephemeral_grant_free(&e->grant);
    crypto_wipe(e, sizeof(*e));
    free(e);
}

void ephemeral_shutdown(void)
{
    if (!ready)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        for (size_t b = 0; b < BUCKETS; b++) {
            struct entry *e = shards[i].buckets[b], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                entry_free(e);
            }
            shards[i].buckets[b] = NULL;
        }
        pthread_mutex_destroy(&shards[i].lock);
    }
    n_entries = 0;
    ready = false;
}

static int digest_of(const char *token, size_t len, unsigned char out[32])
{
    unsigned int dl = 0;
    return EVP_Digest(token, len, out, &dl, EVP_sha256(), NULL) == 1 && dl == 32 ? 0 : -1;
}

static void place(const unsigned char d[32], size_t *shard, size_t *bucket)
{
    *shard = d[0] % SHARDS;
    *bucket = ((size_t)d[1] << 8 | d[2]) % BUCKETS;
}

bool ephemeral_is_token(const char *s, size_t len)
{
    size_t pl = sizeof(EPHEMERAL_PREFIX) - 1;
    return s != NULL && len > pl && memcmp(s, EPHEMERAL_PREFIX, pl) == 0;
}

int ephemeral_put(struct ephemeral_grant *g, char token[EPHEMERAL_TOKEN_MAX])
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[32];
    struct entry *e = NULL;
    if (!ready || n_entries >= max_entries || crypto_random(raw, sizeof(raw)) == -1)
        goto failed;
    /* 32 random bytes as 43 base64url characters (256 bits, no padding). */
    size_t n = sizeof(EPHEMERAL_PREFIX) - 1;
    memcpy(token, EPHEMERAL_PREFIX, n);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = acc << 8 | raw[i];
        bits += 8;
        while (bits >= 6) {
            token[n++] = b64url[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0)
        token[n++] = b64url[(acc << (6 - bits)) & 63];
    token[n] = '\0';
    crypto_wipe(raw, sizeof(raw));
    if ((e = calloc(1, sizeof(*e))) == NULL || digest_of(token, n, e->digest) == -1)
        goto failed;
    e->grant = *g;
    g->first_message = NULL; /* the entry's now */
    size_t sh, b;
    place(e->digest, &sh, &b);
    pthread_mutex_lock(&shards[sh].lock);
    e->next = shards[sh].buckets[b];
    shards[sh].buckets[b] = e;
    n_entries++;
    pthread_mutex_unlock(&shards[sh].lock);
    return 0;
failed:
    free(e);
    ephemeral_grant_free(g);
    crypto_wipe(token, EPHEMERAL_TOKEN_MAX);
    return -1;
}

int ephemeral_take(const char *token, size_t len, struct ephemeral_grant *out)
{
    unsigned char d[32];
    if (!ready || !ephemeral_is_token(token, len) || len >= EPHEMERAL_TOKEN_MAX ||
        digest_of(token, len, d) == -1)
        return -1;
    size_t sh, b;
    place(d, &sh, &b);
    struct entry *found = NULL;
    pthread_mutex_lock(&shards[sh].lock);
    for (struct entry **pp = &shards[sh].buckets[b]; *pp != NULL; pp = &(*pp)->next) {
        if (crypto_equal((*pp)->digest, d, sizeof(d))) {
            found = *pp;
            *pp = found->next; /* single use: gone whether or not it expired */
            n_entries--;
            break;
        }
    }
    pthread_mutex_unlock(&shards[sh].lock);
    if (found == NULL)
        return -1;
    int rc = -1;
    if (now_ms() < found->grant.expires_at_ms) {
        *out = found->grant;
        found->grant.first_message = NULL;
        rc = 0;
    }
    entry_free(found);
    return rc;
}

void ephemeral_sweep(void)
{
    if (!ready)
        return;
    int64_t now = now_ms();
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].lock);
        for (size_t b = 0; b < BUCKETS; b++) {
            struct entry **pp = &shards[i].buckets[b];
            while (*pp != NULL) {
                struct entry *e = *pp;
                if (now >= e->grant.expires_at_ms) {
                    *pp = e->next;
                    n_entries--;
                    entry_free(e);
                } else {
                    pp = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&shards[i].lock);
    }
}

size_t ephemeral_count(void)
{
    return n_entries;
}
