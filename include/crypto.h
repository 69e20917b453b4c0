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

/* --- Sealing connection keys (AES-256-GCM) ------------------------------
 *
 * Sealed form: 12-byte IV (fresh random per seal) || ciphertext || 16-byte
 * tag. AAD = tenant_id || 0x00 || connection_id, so a record of one tenant
 * or connection never opens as another. The master key version in force is
 * BYOK_MASTER_KEY_VERSION (a positive integer, default 1), read by
 * crypto_init_from_env() and stored with every sealed record; a record of
 * another version does not open (rotate with `byok-proxy --rotate-master-key`,
 * see rekey.h). Every open is counted (crypto_open_count) for audit. */
#define CRYPTO_IV_LEN     12
#define CRYPTO_TAG_LEN    16
#define CRYPTO_SECRET_MAX 512 /* longest provider key accepted */
#define CRYPTO_SEALED_MAX (CRYPTO_IV_LEN + CRYPTO_SECRET_MAX + CRYPTO_TAG_LEN)

/* The master key version in force. */
int crypto_key_version(void);

/* Seals pt[0..pt_len) (pt_len <= CRYPTO_SECRET_MAX) for (tenant_id,
 * connection_id) under the current master key into out (CRYPTO_SEALED_MAX
 * bytes); *out_len gets the sealed length. -1 on failure. */
MUST_CHECK int crypto_seal(const char *tenant_id, const char *connection_id,
                           const unsigned char *pt, size_t pt_len,
                           unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len);

/* Opens a sealed record of key version `version`. On success writes the
 * plaintext plus a NUL into pt (CRYPTO_SECRET_MAX + 1 bytes) and its length
 * to *pt_len; the caller wipes pt with crypto_wipe() as soon as it is used.
 * -1 when the version is not the one in force, or the record, IV, tag or AAD
 * do not match (tampering, wrong tenant/connection, wrong key). */
MUST_CHECK int crypto_open(const char *tenant_id, const char *connection_id, int version,
                           const unsigned char *sealed, size_t sealed_len,
                           char pt[CRYPTO_SECRET_MAX + 1], size_t *pt_len);

/* Number of successful crypto_open() calls since start (audit, /metrics). */
uint64_t crypto_open_count(void);

/* The same two operations under an explicit key, for master-key rotation. */
MUST_CHECK int crypto_seal_with(const unsigned char key[CRYPTO_MASTER_KEY_LEN],
                                const char *tenant_id, const char *connection_id,
                                const unsigned char *pt, size_t pt_len,
                                unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len);
MUST_CHECK int crypto_open_with(const unsigned char key[CRYPTO_MASTER_KEY_LEN],
                                const char *tenant_id, const char *connection_id,
                                const unsigned char *sealed, size_t sealed_len,
                                char pt[CRYPTO_SECRET_MAX + 1], size_t *pt_len);

/* Decodes base64 of exactly 32 bytes (surrounding whitespace allowed) into
 * key. -1 otherwise. */
MUST_CHECK int crypto_decode_master_key(const char *b64, unsigned char key[CRYPTO_MASTER_KEY_LEN]);

/* Installs the proxy-key hashing key (replacing the one derived at init).
 * It must survive master-key rotation, so the proxy keeps it sealed in the
 * store (rekey_load_pepper); crypto_init_* derive the initial value from the
 * master key, which is what the first start stores. */
void crypto_set_hash_key(const unsigned char key[CRYPTO_HASH_LEN]);
/* Copies the hashing key in force (to seal it into the store). */
void crypto_get_hash_key(unsigned char out[CRYPTO_HASH_LEN]);

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
