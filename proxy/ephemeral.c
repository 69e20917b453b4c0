/* ephemeral.c - the ephemeral token table (see ephemeral.h): sharded hash
 * tables keyed by the token's SHA-256, entries unlinked when taken or
 * expired. */
#include "common.h"
#include "ephemeral.h"
#include "crypto.h"
#include "resolve.h"

#include <jansson.h>

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

int ephemeral_token_new(char token[EPHEMERAL_TOKEN_MAX])
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[32];
    if (crypto_random(raw, sizeof(raw)) == -1)
        return -1;
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
    return 0;
}

int ephemeral_token_name(const char *token, size_t len, char name[EPHEMERAL_NAME_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    if (!ephemeral_is_token(token, len) || len >= EPHEMERAL_TOKEN_MAX ||
        digest_of(token, len, d) == -1)
        return -1;
    for (size_t i = 0; i < sizeof(d); i++) {
        name[2 * i] = hex[d[i] >> 4];
        name[2 * i + 1] = hex[d[i] & 15];
    }
    name[2 * sizeof(d)] = '\0';
    return 0;
}

int ephemeral_put(struct ephemeral_grant *g, char token[EPHEMERAL_TOKEN_MAX])
{
    struct entry *e = NULL;
    if (!ready || n_entries >= max_entries || ephemeral_token_new(token) == -1)
        goto failed;
    if ((e = calloc(1, sizeof(*e))) == NULL || digest_of(token, strlen(token), e->digest) == -1)
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

/* --- grants as text (fleet mode) ----------------------------------------- */

/* The session config is the caller's, not a secret, but it is treated like
 * the table's copy: wiped before jansson frees it. */
static void wipe_member(json_t *root, const char *name)
{
    json_t *v = json_object_get(root, name);
    if (json_is_string(v))
        crypto_wipe((char *)json_string_value(v), json_string_length(v));
}

char *ephemeral_grant_encode(const struct ephemeral_grant *g)
{
    char *pin = resolve_pin_encode(&g->pin);
    if (pin == NULL)
        return NULL;
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "provider", provider_name(g->provider),
                  "tenant", g->tenant_id, "key", g->key_id, "session", g->session_id, "pin", pin,
                  "model", g->model, "expires_at_ms", (json_int_t)g->expires_at_ms);
    free(pin);
    if (root != NULL && g->first_message != NULL &&
        json_object_set_new(root, "first_message", json_string(g->first_message)) == -1) {
        json_decref(root);
        root = NULL;
    }
    if (root == NULL)
        return NULL;
    char *text = json_dumps(root, JSON_COMPACT);
    wipe_member(root, "first_message");
    json_decref(root);
    return text;
}

/* Copies a string member into a fixed buffer: -1 when absent or too long. */
static int member(json_t *root, const char *name, char *out, size_t size)
{
    const char *v = json_string_value(json_object_get(root, name));
    if (v == NULL || strlen(v) >= size)
        return -1;
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

int ephemeral_grant_decode(const char *text, size_t len, struct ephemeral_grant *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = json_loadb(text, len, 0, NULL);
    char provider[32];
    const char *pin = json_string_value(json_object_get(root, "pin"));
    json_t *exp = json_object_get(root, "expires_at_ms");
    json_t *fm = json_object_get(root, "first_message");
    int rc = -1;
    if (!json_is_object(root) || pin == NULL || !json_is_integer(exp) ||
        (fm != NULL && !json_is_string(fm)) ||
        member(root, "provider", provider, sizeof(provider)) == -1 ||
        member(root, "tenant", out->tenant_id, sizeof(out->tenant_id)) == -1 ||
        member(root, "key", out->key_id, sizeof(out->key_id)) == -1 ||
        member(root, "session", out->session_id, sizeof(out->session_id)) == -1 ||
        member(root, "model", out->model, sizeof(out->model)) == -1 ||
        (out->provider = provider_find(provider)) == NULL ||
        resolve_pin_decode(pin, strlen(pin), &out->pin) == -1)
        goto out;
    out->expires_at_ms = json_integer_value(exp);
    if (fm != NULL && (out->first_message = strdup(json_string_value(fm))) == NULL)
        goto out;
    rc = 0;
out:
    wipe_member(root, "first_message");
    json_decref(root);
    if (rc == -1)
        ephemeral_grant_free(out);
    return rc;
}
