/* crypto.h - ids, proxy-key generation and keyed hashing, constant-time
 * compare (OpenSSL). AES-GCM sealing of connection keys comes with BYOK.
 *
 * Proxy key format: "bpk_" + key id (the "k_…" id without its prefix, 16
 * lowercase base32 chars) + "_" + 43 base64url chars (32 random bytes). The
 * id part lets the proxy fetch one row and compare the keyed hash in
 * constant time, rather than looking a secret up in an index. */
#ifndef BYOK_CRYPTO_H
#define BYOK_CRYPTO_H

#include "common.h"

#define CRYPTO_MASTER_KEY_LEN 32
#define CRYPTO_HASH_LEN       32
#define CRYPTO_PROXY_KEY_MAX  96

/* Loads the master key from BYOK_MASTER_KEY (base64 of exactly 32 bytes),
 * derives the proxy-key hashing key from it (HKDF-SHA256, info
 * "byok-proxy proxy-key hash v1"), and removes the variable from the process
 * environment. Returns -1 with a message in err (never quoting the value). */
MUST_CHECK int crypto_init_from_env(char *err, size_t err_size);
/* For tests: set the master key from raw bytes. */
void crypto_init_raw(const unsigned char key[CRYPTO_MASTER_KEY_LEN]);
/* Wipes key material. */
void crypto_shutdown(void);

/* Fills buf with n cryptographically random bytes; -1 on failure. */
MUST_CHECK int crypto_random(unsigned char *buf, size_t n);

/* A new id: prefix + 26-char ULID (time-ordered, Crockford base32),
 * e.g. "req_01JD…". out must hold strlen(prefix)+27 bytes. */
MUST_CHECK int crypto_new_ulid(const char *prefix, char *out, size_t out_size);

/* Creates a new proxy key: writes the key id ("k_" + 16 base32 chars) to
 * key_id and the full secret key to key (NUL-terminated). Caller wipes key
 * with crypto_wipe() after showing it once. */
MUST_CHECK int crypto_new_proxy_key(char key_id[ID_MAX], char key[CRYPTO_PROXY_KEY_MAX]);
/* Extracts the key id ("k_…") from a presented proxy key; -1 when the text
 * does not have the proxy-key shape (then it is not a key of ours). */
MUST_CHECK int crypto_proxy_key_id(const char *key, size_t len, char key_id[ID_MAX]);
/* HMAC-SHA256 under the derived hashing key. */
void crypto_key_hash(const char *key, size_t len, unsigned char out[CRYPTO_HASH_LEN]);
/* Constant-time equality (CRYPTO_memcmp). */
bool crypto_equal(const void *a, const void *b, size_t n);
/* OPENSSL_cleanse. */
void crypto_wipe(void *p, size_t n);

#endif
