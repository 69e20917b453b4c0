/* crypto.c - master key loading, AES-256-GCM sealing of connection keys, ids
 * (ULID), proxy keys, keyed hashing and constant-time compare on top of
 * OpenSSL 3. */
#include "common.h"
#include "crypto.h"
#include "secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASTER_KEY_ENV "BYOK_MASTER_KEY"
#define MASTER_KEY_ADVICE                                                                          \
    MASTER_KEY_ENV " must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)"
#define HASH_KEY_INFO   "byok-proxy proxy-key hash v1"
#define KEY_VERSION_ENV "BYOK_MASTER_KEY_VERSION"

#define PROXY_KEY_PREFIX "bpk_"
#define KEY_ID_CHARS     16 /* 80 random bits in base32 */
#define KEY_SECRET_BYTES 32
#define KEY_SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define PROXY_KEY_LEN    (sizeof(PROXY_KEY_PREFIX) - 1 + KEY_ID_CHARS + 1 + KEY_SECRET_CHARS)
#define ULID_LEN         26

static const char crockford_upper[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char crockford_lower[] = "0123456789abcdefghjkmnpqrstvwxyz";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The master key and the proxy-key hashing key share one secret_alloc()
 * page (out of core dumps, locked in RAM when allowed). Written at startup
 * (before worker threads exist), read-only after. */
struct key_page {
    unsigned char master[CRYPTO_MASTER_KEY_LEN];
    unsigned char hash[CRYPTO_HASH_LEN];
};
static struct key_page *keys;
static bool master_loaded; /* seal/open refuse to run on a wiped (zero) key */
static int key_version = 1;
static _Atomic uint64_t open_count;
/* HMAC-SHA256 under keys->hash with the key schedule done once: the digest
 * states after the ipad and opad blocks. crypto_key_hash() copies them per
 * call, which avoids HMAC()'s algorithm fetch on every request. Read-only
 * after init, so threads share them. */
static EVP_MD *sha256_md;
static EVP_MD_CTX *hmac_inner, *hmac_outer;

static void hmac_states_free(void)
{
    EVP_MD_CTX_free(hmac_inner);
    EVP_MD_CTX_free(hmac_outer);
    EVP_MD_free(sha256_md);
    hmac_inner = hmac_outer = NULL;
    sha256_md = NULL;
}

/* The key page, allocated at first use; NULL only when out of memory. */
static struct key_page *keys_get(void)
{
    if (keys == NULL)
        keys = secret_alloc(sizeof(*keys));
    return keys;
}

static MUST_CHECK int hmac_states_init(void)
{
    unsigned char pad[64];
    hmac_states_free();
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    hmac_inner = EVP_MD_CTX_new();
    hmac_outer = EVP_MD_CTX_new();
    if (sha256_md == NULL || hmac_inner == NULL || hmac_outer == NULL)
        goto failed;
    memset(pad, 0x36, sizeof(pad));
    for (size_t i = 0; i < sizeof(keys->hash); i++)
        pad[i] ^= keys->hash[i];
    if (EVP_DigestInit_ex(hmac_inner, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(hmac_inner, pad, sizeof(pad)) != 1)
        goto failed;
    memset(pad, 0x5c, sizeof(pad));
    for (size_t i = 0; i < sizeof(keys->hash); i++)
        pad[i] ^= keys->hash[i];
    if (EVP_DigestInit_ex(hmac_outer, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(hmac_outer, pad, sizeof(pad)) != 1)
        goto failed;
    OPENSSL_cleanse(pad, sizeof(pad));
    return 0;
failed:
    OPENSSL_cleanse(pad, sizeof(pad));
    hmac_states_free();
    return -1;
}

/* HKDF-SHA256(master, no salt, info) -> keys->hash. */
static MUST_CHECK int derive_hash_key(void)
{
    int rc = -1;
    size_t out_len = sizeof(keys->hash);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (ctx == NULL)
        goto out;
    if (EVP_PKEY_derive_init(ctx) <= 0 || EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_key(ctx, keys->master, sizeof(keys->master)) <= 0 ||
        EVP_PKEY_CTX_add1_hkdf_info(ctx, (const unsigned char *)HASH_KEY_INFO,
                                    (int)strlen(HASH_KEY_INFO)) <= 0 ||
        EVP_PKEY_derive(ctx, keys->hash, &out_len) <= 0 || out_len != sizeof(keys->hash))
        goto out;
    if (hmac_states_init() == -1)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* Decodes standard base64 (with '=' padding, surrounding whitespace allowed)
 * into out; returns the exact decoded length or -1. out must hold
 * 3 * (strlen(text) / 4) bytes. */
static long base64_decode(const char *text, unsigned char *out)
{
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    if (len == 0 || len % 4 != 0 || len > INT_MAX)
        return -1;
    /* EVP_DecodeBlock counts padding as zero bytes; take them off again. */
    size_t pad = 0;
    if (text[len - 1] == '=')
        pad++;
    if (text[len - 2] == '=')
        pad++;
    int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
    if (n < 0 || (size_t)n < pad)
        return -1;
    return (long)((size_t)n - pad);
}

/* Parses BYOK_MASTER_KEY_VERSION (unset = 1) and removes it from the
 * environment, so a rotation run cannot leak it to a child either. */
static MUST_CHECK int read_key_version(int *out, char *err, size_t err_size)
{
    const char *val = getenv(KEY_VERSION_ENV);
    *out = 1;
    if (val == NULL)
        return 0;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%s", val);
    unsetenv(KEY_VERSION_ENV);
    const char *p = buf;
    while (isspace((unsigned char)*p))
        p++;
    char *end = NULL;
    errno = 0;
    long v =
        (n > 0 && (size_t)n < sizeof(buf) && isdigit((unsigned char)*p)) ? strtol(p, &end, 10) : 0;
    if (end != NULL)
        while (isspace((unsigned char)*end))
            end++;
    if (end == NULL || *end != '\0' || errno != 0 || v < 1 || v > INT_MAX) {
        snprintf(err, err_size,
                 "%s must be a positive integer (the master key version; 1 when unset)",
                 KEY_VERSION_ENV);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int crypto_init_from_env(char *err, size_t err_size)
{
    int rc = -1;
    unsigned char *decoded = NULL;
    size_t decoded_cap = 0;
    char version_err[160] = "";
    int version = 1;
    bool oom = false;
    /* Read (and remove) both variables before judging either, so a bad
     * version never leaves the key behind in the environment. */
    bool version_ok = read_key_version(&version, version_err, sizeof(version_err)) == 0;
    /* Out of the environment at once: wiped in place, so it is gone from
     * /proc/<pid>/environ too, and unset, so no child inherits it. */
    char *copy = secret_env_take(MASTER_KEY_ENV, &oom);
    if (oom) {
        snprintf(err, err_size, "out of memory reading %s", MASTER_KEY_ENV);
        goto out;
    }
    if (copy == NULL || copy[0] == '\0') {
        snprintf(err, err_size, "%s is not set: " MASTER_KEY_ADVICE, MASTER_KEY_ENV);
        goto out;
    }
    decoded_cap = 3 * (strlen(copy) / 4) + 3;
    decoded = malloc(decoded_cap);
    if (decoded == NULL) {
        snprintf(err, err_size, "out of memory reading %s", MASTER_KEY_ENV);
        goto out;
    }
    long n = base64_decode(copy, decoded);
    if (n != CRYPTO_MASTER_KEY_LEN) {
        snprintf(err, err_size, "%s", MASTER_KEY_ADVICE);
        goto out;
    }
    if (!version_ok) {
        snprintf(err, err_size, "%s", version_err);
        goto out;
    }
    if (keys_get() == NULL) {
        snprintf(err, err_size, "out of memory for the keys");
        goto out;
    }
    memcpy(keys->master, decoded, CRYPTO_MASTER_KEY_LEN);
    master_loaded = true;
    key_version = version;
    if (derive_hash_key() == -1) {
        snprintf(err, err_size, "deriving the proxy-key hashing key from %s failed",
                 MASTER_KEY_ENV);
        crypto_shutdown();
        goto out;
    }
    rc = 0;
out:
    secret_free(copy);
    if (decoded != NULL) {
        OPENSSL_cleanse(decoded, decoded_cap);
        free(decoded);
    }
    return rc;
}

void crypto_init_raw(const unsigned char key[CRYPTO_MASTER_KEY_LEN])
{
    /* Only reachable failures: no memory for one page, or OpenSSL itself
     * broken; hashing with a zero key would silently accept wrong keys
     * later, so stop here. */
    if (keys_get() == NULL) {
        log_error("crypto: out of memory for the keys");
        abort();
    }
    memcpy(keys->master, key, CRYPTO_MASTER_KEY_LEN);
    master_loaded = true;
    key_version = 1;
    if (derive_hash_key() == -1) {
        log_error("crypto: HKDF derivation failed");
        abort();
    }
}

void crypto_shutdown(void)
{
    secret_free(keys); /* wipes */
    keys = NULL;
    master_loaded = false;
    hmac_states_free();
}

int crypto_key_version(void)
{
    return key_version;
}

int crypto_decode_master_key(const char *b64, unsigned char key[CRYPTO_MASTER_KEY_LEN])
{
    if (b64 == NULL)
        return -1;
    size_t cap = 3 * (strlen(b64) / 4) + 3;
    unsigned char *decoded = malloc(cap);
    if (decoded == NULL)
        return -1;
    long n = base64_decode(b64, decoded);
    int rc = -1;
    if (n == CRYPTO_MASTER_KEY_LEN) {
        memcpy(key, decoded, CRYPTO_MASTER_KEY_LEN);
        rc = 0;
    }
    OPENSSL_cleanse(decoded, cap);
    free(decoded);
    return rc;
}

void crypto_set_hash_key(const unsigned char key[CRYPTO_HASH_LEN])
{
    if (keys_get() == NULL) {
        log_error("crypto: out of memory for the keys");
        abort();
    }
    memcpy(keys->hash, key, CRYPTO_HASH_LEN);
    /* crypto_key_hash works from the precomputed states, not keys->hash. If
     * this fails (OpenSSL broken) the states are gone and every compare
     * fails closed. */
    if (hmac_states_init() == -1)
        log_error("crypto: HMAC key schedule failed");
}

void crypto_get_hash_key(unsigned char out[CRYPTO_HASH_LEN])
{
    if (keys == NULL) {
        memset(out, 0, CRYPTO_HASH_LEN);
        return;
    }
    memcpy(out, keys->hash, CRYPTO_HASH_LEN);
}

/* AAD = tenant_id || 0x00 || connection_id: the separator keeps ("ab","c")
 * and ("a","bc") apart. Fed in three updates (GCM allows several). */
static MUST_CHECK int gcm_aad(EVP_CIPHER_CTX *ctx, bool enc, const char *tenant_id,
                              const char *connection_id)
{
    static const unsigned char sep = 0x00;
    const unsigned char *parts[3] = {(const unsigned char *)tenant_id, &sep,
                                     (const unsigned char *)connection_id};
    size_t lens[3] = {strlen(tenant_id), 1, strlen(connection_id)};
    for (int i = 0; i < 3; i++) {
        int outl = 0;
        if (lens[i] == 0)
            continue;
        if (lens[i] > INT_MAX)
            return -1;
        int ok = enc ? EVP_EncryptUpdate(ctx, NULL, &outl, parts[i], (int)lens[i])
                     : EVP_DecryptUpdate(ctx, NULL, &outl, parts[i], (int)lens[i]);
        if (ok != 1)
            return -1;
    }
    return 0;
}

int crypto_seal_with(const unsigned char key[CRYPTO_MASTER_KEY_LEN], const char *tenant_id,
                     const char *connection_id, const unsigned char *pt, size_t pt_len,
                     unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len)
{
    int rc = -1;
    int n = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    if (tenant_id == NULL || connection_id == NULL || (pt == NULL && pt_len != 0) ||
        pt_len > CRYPTO_SECRET_MAX)
        goto out;
    /* A fresh random IV per seal: GCM with a repeated (key, IV) pair leaks
     * the XOR of the plaintexts and the authentication key. */
    unsigned char *iv = out, *ct = out + CRYPTO_IV_LEN;
    if (crypto_random(iv, CRYPTO_IV_LEN) == -1)
        goto out;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_IV_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) != 1 ||
        gcm_aad(ctx, true, tenant_id, connection_id) == -1)
        goto out;
    if (pt_len > 0 && EVP_EncryptUpdate(ctx, ct, &n, pt, (int)pt_len) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + n, &fin) != 1 || (size_t)n + (size_t)fin != pt_len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, ct + pt_len) != 1)
        goto out;
    *out_len = CRYPTO_IV_LEN + pt_len + CRYPTO_TAG_LEN;
    rc = 0;
out:
    /* EVP_CIPHER_CTX_free cleanses the key schedule it holds. */
    EVP_CIPHER_CTX_free(ctx);
    if (rc == -1)
        OPENSSL_cleanse(out, CRYPTO_SEALED_MAX);
    return rc;
}

int crypto_open_with(const unsigned char key[CRYPTO_MASTER_KEY_LEN], const char *tenant_id,
                     const char *connection_id, const unsigned char *sealed, size_t sealed_len,
                     char pt[CRYPTO_SECRET_MAX + 1], size_t *pt_len)
{
    int rc = -1;
    int n = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char tag[CRYPTO_TAG_LEN];
    if (tenant_id == NULL || connection_id == NULL || sealed == NULL ||
        sealed_len < CRYPTO_IV_LEN + CRYPTO_TAG_LEN || sealed_len > CRYPTO_SEALED_MAX)
        goto out;
    size_t ct_len = sealed_len - CRYPTO_IV_LEN - CRYPTO_TAG_LEN;
    const unsigned char *iv = sealed, *ct = sealed + CRYPTO_IV_LEN;
    /* The tag is copied because EVP's SET_TAG takes a non-const pointer. */
    memcpy(tag, ct + ct_len, CRYPTO_TAG_LEN);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_IV_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) != 1 ||
        gcm_aad(ctx, false, tenant_id, connection_id) == -1)
        goto out;
    if (ct_len > 0 && EVP_DecryptUpdate(ctx, (unsigned char *)pt, &n, ct, (int)ct_len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, tag) != 1)
        goto out;
    /* The tag is checked here; before it passes, pt holds unauthenticated
     * bytes, which the failure path wipes. */
    if (EVP_DecryptFinal_ex(ctx, (unsigned char *)pt + n, &fin) != 1 ||
        (size_t)n + (size_t)fin != ct_len)
        goto out;
    pt[ct_len] = '\0';
    *pt_len = ct_len;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(tag, sizeof(tag));
    if (rc == -1)
        OPENSSL_cleanse(pt, CRYPTO_SECRET_MAX + 1);
    return rc;
}

int crypto_seal(const char *tenant_id, const char *connection_id, const unsigned char *pt,
                size_t pt_len, unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len)
{
    if (!master_loaded)
        return -1;
    return crypto_seal_with(keys->master, tenant_id, connection_id, pt, pt_len, out, out_len);
}

int crypto_open(const char *tenant_id, const char *connection_id, int version,
                const unsigned char *sealed, size_t sealed_len, char pt[CRYPTO_SECRET_MAX + 1],
                size_t *pt_len)
{
    /* Another version was sealed under another key: refusing early gives
     * the same answer as a failed tag, without the work. */
    if (!master_loaded || version != key_version) {
        OPENSSL_cleanse(pt, CRYPTO_SECRET_MAX + 1);
        return -1;
    }
    if (crypto_open_with(keys->master, tenant_id, connection_id, sealed, sealed_len, pt, pt_len) ==
        -1)
        return -1;
    atomic_fetch_add_explicit(&open_count, 1, memory_order_relaxed);
    return 0;
}

uint64_t crypto_open_count(void)
{
    return atomic_load_explicit(&open_count, memory_order_relaxed);
}

int crypto_random(unsigned char *buf, size_t n)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(buf, chunk) != 1)
            return -1;
        buf += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* Per-thread state that makes ids from one thread strictly increasing even
 * within one millisecond (the random part is incremented). */
static _Thread_local int64_t ulid_last_ms = -1;
static _Thread_local unsigned char ulid_last_rand[10];

/* The random parts of a thread's ids, drawn 64 at a time: a RAND_bytes call
 * per id cost a trip through the DRBG and a getpid() (its fork check) per
 * request at low concurrency. Ids are public (x-proxy-request-id), so
 * bytes waiting here are no secret. The proxy never forks after start. */
static _Thread_local unsigned char ulid_pool[640];
static _Thread_local size_t ulid_pool_left;

static int ulid_random(unsigned char out[10])
{
    if (ulid_pool_left < 10) {
        if (crypto_random(ulid_pool, sizeof(ulid_pool)) == -1)
            return -1;
        ulid_pool_left = sizeof(ulid_pool);
    }
    memcpy(out, ulid_pool + sizeof(ulid_pool) - ulid_pool_left, 10);
    ulid_pool_left -= 10;
    return 0;
}

int crypto_new_ulid(const char *prefix, char *out, size_t out_size)
{
    size_t plen = strlen(prefix);
    if (out_size < plen + ULID_LEN + 1)
        return -1;

    int64_t ms = now_ms();
    unsigned char rnd[10];
    if (ms <= ulid_last_ms) {
        /* Same (or a stepped-back) millisecond: continue from the last id. */
        ms = ulid_last_ms;
        memcpy(rnd, ulid_last_rand, sizeof(rnd));
        int i = (int)sizeof(rnd) - 1;
        while (i >= 0 && ++rnd[i] == 0)
            i--;
        if (i < 0 && ulid_random(rnd) == -1) /* 2^80 ids in 1 ms: never */
            return -1;
    } else if (ulid_random(rnd) == -1) {
        return -1;
    }
    ulid_last_ms = ms;
    memcpy(ulid_last_rand, rnd, sizeof(rnd));

    /* 128 bits: 48-bit big-endian time then 80 random bits, 5 bits per char
     * from the top (the first char carries only 3 bits). */
    unsigned char bytes[16];
    uint64_t t = (uint64_t)ms & 0xFFFFFFFFFFFFull;
    for (int i = 5; i >= 0; i--) {
        bytes[i] = (unsigned char)(t & 0xff);
        t >>= 8;
    }
    memcpy(bytes + 6, rnd, sizeof(rnd));

    memcpy(out, prefix, plen);
    char *p = out + plen;
    for (int c = 0; c < ULID_LEN; c++) {
        unsigned v = 0;
        for (int k = 5 * c; k < 5 * c + 5; k++) {
            /* 26 chars hold 130 bits: the first two are zero padding. */
            int bit = k - 2;
            unsigned b = bit < 0 ? 0 : (bytes[bit / 8] >> (7 - bit % 8)) & 1u;
            v = v << 1 | b;
        }
        p[c] = crockford_upper[v];
    }
    p[ULID_LEN] = '\0';
    return 0;
}

int crypto_new_proxy_key(char key_id[ID_MAX], char key[CRYPTO_PROXY_KEY_MAX])
{
    unsigned char rnd[KEY_ID_CHARS + KEY_SECRET_BYTES];
    int rc = -1;
    if (crypto_random(rnd, sizeof(rnd)) == -1)
        goto out;

    char id[KEY_ID_CHARS + 1];
    for (int i = 0; i < KEY_ID_CHARS; i++)
        id[i] = crockford_lower[rnd[i] & 31];
    id[KEY_ID_CHARS] = '\0';

    char *p = key;
    memcpy(p, PROXY_KEY_PREFIX, sizeof(PROXY_KEY_PREFIX) - 1);
    p += sizeof(PROXY_KEY_PREFIX) - 1;
    memcpy(p, id, KEY_ID_CHARS);
    p += KEY_ID_CHARS;
    *p++ = '_';
    /* base64url without padding, 3 bytes -> 4 chars; the last 2 bytes give 3. */
    const unsigned char *s = rnd + KEY_ID_CHARS;
    size_t i = 0;
    for (; i + 3 <= KEY_SECRET_BYTES; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *p++ = b64url[(v >> 18) & 63];
        *p++ = b64url[(v >> 12) & 63];
        *p++ = b64url[(v >> 6) & 63];
        *p++ = b64url[v & 63];
    }
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    *p++ = b64url[(v >> 18) & 63];
    *p++ = b64url[(v >> 12) & 63];
    *p++ = b64url[(v >> 6) & 63];
    *p = '\0';

    snprintf(key_id, ID_MAX, "k_%s", id);
    rc = 0;
out:
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return rc;
}

int crypto_proxy_key_id(const char *key, size_t len, char key_id[ID_MAX])
{
    const size_t plen = sizeof(PROXY_KEY_PREFIX) - 1;
    if (len != PROXY_KEY_LEN || memcmp(key, PROXY_KEY_PREFIX, plen) != 0)
        return -1;
    const char *id = key + plen;
    for (size_t i = 0; i < KEY_ID_CHARS; i++) {
        if (id[i] == '\0' || strchr(crockford_lower, id[i]) == NULL)
            return -1;
    }
    if (id[KEY_ID_CHARS] != '_')
        return -1;
    const char *secret = id + KEY_ID_CHARS + 1;
    for (size_t i = 0; i < KEY_SECRET_CHARS; i++) {
        if (secret[i] == '\0' || strchr(b64url, secret[i]) == NULL)
            return -1;
    }
    memcpy(key_id, "k_", 2);
    memcpy(key_id + 2, id, KEY_ID_CHARS);
    key_id[2 + KEY_ID_CHARS] = '\0';
    return 0;
}

void crypto_key_hash(const char *key, size_t len, unsigned char out[CRYPTO_HASH_LEN])
{
    unsigned char inner[CRYPTO_HASH_LEN];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || hmac_inner == NULL || EVP_MD_CTX_copy_ex(ctx, hmac_inner) != 1 ||
        EVP_DigestUpdate(ctx, key, len) != 1 || EVP_DigestFinal_ex(ctx, inner, NULL) != 1 ||
        EVP_MD_CTX_copy_ex(ctx, hmac_outer) != 1 ||
        EVP_DigestUpdate(ctx, inner, sizeof(inner)) != 1 ||
        EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        /* Only when OpenSSL is broken. A fixed value is not an HMAC output
         * of any stored key in practice, so the compare fails closed. */
        log_error("crypto: HMAC-SHA256 failed");
        memset(out, 0, CRYPTO_HASH_LEN);
        out[0] = 0xff;
    }
    OPENSSL_cleanse(inner, sizeof(inner));
    EVP_MD_CTX_free(ctx);
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void crypto_wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}
