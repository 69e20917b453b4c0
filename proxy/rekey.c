/* rekey.c - the master-key lifecycle: the proxy-key hashing key kept sealed
 * in the store (so proxy keys survive a master-key change), and the
 * `--rotate-master-key` command that re-seals everything under a new key. */
#include "common.h"
#include "rekey.h"
#include "config.h"
#include "crypto.h"
#include "secret.h"
#include "store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEPPER_NAME     "proxy_key_hash"
#define MASTER_KEY_ENV  "BYOK_MASTER_KEY"
#define NEW_KEY_ENV     "BYOK_MASTER_KEY_NEW"
#define KEY_VERSION_ENV "BYOK_MASTER_KEY_VERSION"
#define NEW_KEY_ADVICE  "base64 of exactly 32 bytes, e.g. `openssl rand -base64 32`"

int rekey_load_pepper(struct store *s, char *err, size_t err_size)
{
    int rc = -1;
    unsigned char sealed[CRYPTO_SEALED_MAX];
    unsigned char key[CRYPTO_HASH_LEN];
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t sealed_len = 0, pt_len = 0;
    int version = 0;

    int st = store_secret_get(s, PEPPER_NAME, &version, sealed, &sealed_len);
    if (st == STORE_ERR_NOT_FOUND) {
        /* First start (or a store from before the key was kept): keep the
         * one derived from this master key, which is what existing proxy
         * keys were hashed with. */
        crypto_get_hash_key(key);
        if (crypto_seal("", PEPPER_NAME, key, sizeof(key), sealed, &sealed_len) == -1) {
            snprintf(err, err_size, "sealing the proxy-key hashing key failed");
            goto out;
        }
        if (store_secret_put(s, PEPPER_NAME, crypto_key_version(), sealed, sealed_len) !=
            STORE_OK) {
            snprintf(err, err_size, "storing the sealed proxy-key hashing key failed");
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (st != STORE_OK) {
        snprintf(err, err_size, "reading the store's secrets failed");
        goto out;
    }
    if (version != crypto_key_version()) {
        snprintf(err, err_size,
                 "the store's secrets are sealed under master key version %d but %s is %d", version,
                 KEY_VERSION_ENV, crypto_key_version());
        goto out;
    }
    if (crypto_open("", PEPPER_NAME, version, sealed, sealed_len, pt, &pt_len) == -1) {
        snprintf(err, err_size, "%s does not open the store's secrets: wrong master key?",
                 MASTER_KEY_ENV);
        goto out;
    }
    if (pt_len != CRYPTO_HASH_LEN) {
        snprintf(err, err_size, "the store's proxy-key hashing key has the wrong length");
        goto out;
    }
    crypto_set_hash_key((const unsigned char *)pt);
    rc = 0;
out:
    crypto_wipe(key, sizeof(key));
    crypto_wipe(pt, sizeof(pt));
    return rc;
}

/* State of one rotation run, shared with the per-record callback. */
struct rotation {
    unsigned char cur[CRYPTO_MASTER_KEY_LEN];
    unsigned char next[CRYPTO_MASTER_KEY_LEN];
    int cur_version, next_version;
    size_t connections, secrets;
    char failure[256]; /* why a record could not be re-sealed (no secrets) */
};

/* Opens one record with the current key and seals it with the new one.
 * A record already at the new version (only possible if someone re-sealed
 * by hand) is kept when the new key opens it. */
static int rotate_record(void *arg, const char *tenant_id, const char *id,
                         const unsigned char *sealed, size_t sealed_len, int version,
                         unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len, int *out_version)
{
    struct rotation *r = arg;
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t pt_len = 0;
    int rc = -1;
    const char *what = tenant_id[0] == '\0' ? "secret" : "connection";

    if (version == r->next_version) {
        if (crypto_open_with(r->next, tenant_id, id, sealed, sealed_len, pt, &pt_len) == -1) {
            snprintf(r->failure, sizeof(r->failure),
                     "%s %s is already at version %d but %s does not open it", what, id, version,
                     NEW_KEY_ENV);
            goto out;
        }
        memcpy(out, sealed, sealed_len);
        *out_len = sealed_len;
        *out_version = version;
    } else if (version == r->cur_version) {
        if (crypto_open_with(r->cur, tenant_id, id, sealed, sealed_len, pt, &pt_len) == -1) {
            snprintf(r->failure, sizeof(r->failure),
                     "%s does not open %s %s (version %d): wrong current master key?",
                     MASTER_KEY_ENV, what, id, version);
            goto out;
        }
        if (crypto_seal_with(r->next, tenant_id, id, (const unsigned char *)pt, pt_len, out,
                             out_len) == -1) {
            snprintf(r->failure, sizeof(r->failure), "sealing %s %s under the new key failed", what,
                     id);
            goto out;
        }
        *out_version = r->next_version;
    } else {
        snprintf(r->failure, sizeof(r->failure),
                 "%s %s is sealed under master key version %d, but %s is %d", what, id, version,
                 KEY_VERSION_ENV, r->cur_version);
        goto out;
    }
    if (tenant_id[0] == '\0')
        r->secrets++;
    else
        r->connections++;
    rc = 0;
out:
    crypto_wipe(pt, sizeof(pt));
    return rc;
}

int rekey_rotate(const struct config *cfg, FILE *out)
{
    int rc = 1;
    struct store *s = NULL;
    struct store_lock *lock = NULL;
    char *serr = NULL;
    char err[256];
    bool oom = false;
    /* The keys of the run live out of core dumps, like the proxy's. */
    struct rotation *r = secret_alloc(sizeof(*r));
    /* Both variables leave the environment before anything can fail
     * (crypto_init_from_env() takes the current one out). */
    char *new_text = secret_env_take(NEW_KEY_ENV, &oom);
    const char *cur_env = getenv(MASTER_KEY_ENV);
    char *cur_text = cur_env != NULL ? secret_strdup(cur_env) : NULL;

    if (r == NULL || oom || (cur_env != NULL && cur_text == NULL)) {
        secret_env_wipe(MASTER_KEY_ENV);
        fprintf(out, "byok-proxy: out of memory\n");
        goto out;
    }
    /* Validates the current key and gives its version; also removes it
     * from the environment. */
    if (crypto_init_from_env(err, sizeof(err)) == -1) {
        fprintf(out, "byok-proxy: %s\n", err);
        goto out;
    }
    if (crypto_decode_master_key(cur_text, r->cur) == -1) {
        fprintf(out, "byok-proxy: %s must be " NEW_KEY_ADVICE "\n", MASTER_KEY_ENV);
        goto out;
    }
    if (new_text == NULL || new_text[0] == '\0') {
        fprintf(out,
                "byok-proxy: %s is not set: set it to the new master key (" NEW_KEY_ADVICE ")\n",
                NEW_KEY_ENV);
        goto out;
    }
    if (crypto_decode_master_key(new_text, r->next) == -1) {
        fprintf(out, "byok-proxy: %s must be " NEW_KEY_ADVICE "\n", NEW_KEY_ENV);
        goto out;
    }
    if (crypto_equal(r->cur, r->next, sizeof(r->cur))) {
        fprintf(out,
                "byok-proxy: %s is the same key as %s: generate a new one (" NEW_KEY_ADVICE ")\n",
                NEW_KEY_ENV, MASTER_KEY_ENV);
        goto out;
    }
    r->cur_version = crypto_key_version();
    if (r->cur_version == INT_MAX) {
        fprintf(out, "byok-proxy: %s is at its largest value; cannot rotate further\n",
                KEY_VERSION_ENV);
        goto out;
    }
    r->next_version = r->cur_version + 1;

    /* Re-sealing under a running proxy would leave it with keys it can no
     * longer open: refuse while one holds the store, and hold the store
     * ourselves meanwhile so none starts. */
    if (store_lock(cfg, &lock, &serr) == -1) {
        fprintf(out, "byok-proxy: nothing changed: %s; stop it before rotating the master key\n",
                serr != NULL ? serr : "cannot lock the store");
        goto out;
    }
    s = store_open_role(cfg, STORE_ROLE_CONTROL, &serr);
    if (s == NULL) {
        fprintf(out, "byok-proxy: store: %s\n", serr != NULL ? serr : "cannot open");
        goto out;
    }
    /* Checks the current key against the store before touching anything,
     * and seals the proxy-key hashing key first if this store never had it:
     * otherwise the new master key would derive another one and every
     * existing proxy key would stop matching. */
    if (rekey_load_pepper(s, err, sizeof(err)) == -1) {
        fprintf(out, "byok-proxy: nothing changed: %s\n", err);
        goto out;
    }
    size_t count = 0;
    if (store_reseal_all(s, rotate_record, r, &count) != STORE_OK) {
        fprintf(out, "byok-proxy: nothing changed: %s\n",
                r->failure[0] != '\0' ? r->failure : "the store could not be re-sealed");
        goto out;
    }
    fprintf(out,
            "re-sealed %zu connection%s and %zu secret%s under master key version %d. Now "
            "restart the proxy with %s=<the new key> %s=%d.\n",
            r->connections, r->connections == 1 ? "" : "s", r->secrets, r->secrets == 1 ? "" : "s",
            r->next_version, MASTER_KEY_ENV, KEY_VERSION_ENV, r->next_version);
    rc = 0;
out:
    store_close(s);
    store_unlock(lock);
    free(serr);
    secret_free(new_text);
    secret_free(cur_text);
    secret_free(r); /* wipes */
    /* A one-shot command: nothing may use the key after it. */
    crypto_shutdown();
    return rc;
}
