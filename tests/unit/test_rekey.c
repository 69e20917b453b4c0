/* test_rekey.c - the sealed proxy-key hashing key and master-key rotation,
 * against a real SQLite store in a fresh temporary directory. */
#include "common.h"
#include "config.h"
#include "crypto.h"
#include "rekey.h"
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV         "BYOK_MASTER_KEY"
#define NEW_ENV     "BYOK_MASTER_KEY_NEW"
#define VERSION_ENV "BYOK_MASTER_KEY_VERSION"
#define PROXY_KEY   "bpk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static const char *const secrets[3] = {
    "sk-proj-canary-openai-0001",
    "el-canary-elevenlabs-0002",
    "az-canary-azure-0003",
};
static const char *const conn_ids[3] = {"c_1", "c_2", "c_3"};
static const char *const conn_tenants[3] = {"t1", "t1", "t2"};
static const char *const conn_providers[3] = {"openai", "elevenlabs", "azure_speech"};

struct fixture {
    char dir[64];
    char path[128];
    char backend[8];
    struct config cfg;
    unsigned char key_a[32], key_b[32], key_c[32];
    char a_b64[64], b_b64[64], c_b64[64];
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void b64(const unsigned char key[32], char out[64])
{
    assert_int_equal(EVP_EncodeBlock((unsigned char *)out, key, 32), 44);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-rekey-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/byok.db", f->dir);
    snprintf(f->backend, sizeof(f->backend), "sqlite");
    f->cfg.store_backend = f->backend;
    f->cfg.store_path = f->path;
    assert_int_equal(crypto_random(f->key_a, 32), 0);
    assert_int_equal(crypto_random(f->key_b, 32), 0);
    assert_int_equal(crypto_random(f->key_c, 32), 0);
    b64(f->key_a, f->a_b64);
    b64(f->key_b, f->b_b64);
    b64(f->key_c, f->c_b64);
    unsetenv(ENV);
    unsetenv(NEW_ENV);
    unsetenv(VERSION_ENV);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    crypto_shutdown();
    unsetenv(ENV);
    unsetenv(NEW_ENV);
    unsetenv(VERSION_ENV);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct store *open_store(struct fixture *f)
{
    char *err = NULL;
    struct store *s = store_open(&f->cfg, &err);
    if (s == NULL)
        fail_msg("open: %s", err);
    return s;
}

/* Loads a master key the way the proxy does (environment, with version). */
static void init_env(const char *b64_key, const char *version)
{
    char err[256];
    assert_int_equal(setenv(ENV, b64_key, 1), 0);
    if (version != NULL)
        assert_int_equal(setenv(VERSION_ENV, version, 1), 0);
    else
        unsetenv(VERSION_ENV);
    if (crypto_init_from_env(err, sizeof(err)) == -1)
        fail_msg("crypto init: %s", err);
}

static void hash_proxy_key(unsigned char out[CRYPTO_HASH_LEN])
{
    crypto_key_hash(PROXY_KEY, strlen(PROXY_KEY), out);
}

/* Two tenants, three connections sealed under the master key in force, and
 * the pepper; returns the proxy-key hash before any rotation. */
static void populate(struct fixture *f, unsigned char hash[CRYPTO_HASH_LEN])
{
    struct store *s = open_store(f);
    for (int i = 1; i <= 2; i++) {
        struct store_tenant t = {0};
        snprintf(t.id, sizeof(t.id), "t%d", i);
        snprintf(t.name, sizeof(t.name), "Tenant %d", i);
        assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    }
    for (int i = 0; i < 3; i++) {
        struct store_connection c = {0};
        snprintf(c.id, sizeof(c.id), "%s", conn_ids[i]);
        snprintf(c.tenant_id, sizeof(c.tenant_id), "%s", conn_tenants[i]);
        c.provider = provider_find(conn_providers[i]);
        snprintf(c.name, sizeof(c.name), "conn %d", i);
        c.key_version = crypto_key_version();
        assert_int_equal(crypto_seal(c.tenant_id, c.id, (const unsigned char *)secrets[i],
                                     strlen(secrets[i]), c.sealed, &c.sealed_len),
                         0);
        assert_int_equal(store_connection_create(s, &c), STORE_OK);
    }
    char err[256];
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);
    hash_proxy_key(hash);
    store_close(s);
}

/* The sealed rows, to compare before/after a run that must change nothing. */
struct snapshot {
    struct store_connection c[3];
    int secret_version;
    unsigned char secret[CRYPTO_SEALED_MAX];
    size_t secret_len;
};

static void snapshot(struct fixture *f, struct snapshot *snap)
{
    struct store *s = open_store(f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_connection_get(s, conn_tenants[i], conn_ids[i], &snap->c[i]),
                         STORE_OK);
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &snap->secret_version, snap->secret,
                                      &snap->secret_len),
                     STORE_OK);
    store_close(s);
}

static void assert_unchanged(struct fixture *f, const struct snapshot *before)
{
    struct snapshot now;
    snapshot(f, &now);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(now.c[i].key_version, before->c[i].key_version);
        assert_int_equal(now.c[i].sealed_len, before->c[i].sealed_len);
        assert_memory_equal(now.c[i].sealed, before->c[i].sealed, before->c[i].sealed_len);
    }
    assert_int_equal(now.secret_version, before->secret_version);
    assert_int_equal(now.secret_len, before->secret_len);
    assert_memory_equal(now.secret, before->secret, before->secret_len);
}

/* Runs the rotation command with the given variables (NULL = unset) and
 * returns its exit code; *text gets what it printed (caller frees). */
static int rotate(struct fixture *f, const char *cur, const char *next, const char *version,
                  char **text)
{
    if (cur != NULL)
        assert_int_equal(setenv(ENV, cur, 1), 0);
    else
        unsetenv(ENV);
    if (next != NULL)
        assert_int_equal(setenv(NEW_ENV, next, 1), 0);
    else
        unsetenv(NEW_ENV);
    if (version != NULL)
        assert_int_equal(setenv(VERSION_ENV, version, 1), 0);
    else
        unsetenv(VERSION_ENV);
    size_t size = 0;
    FILE *out = open_memstream(text, &size);
    assert_non_null(out);
    int rc = rekey_rotate(&f->cfg, out);
    fclose(out);
    /* Every key variable leaves the environment, whatever the outcome. */
    assert_null(getenv(ENV));
    assert_null(getenv(NEW_ENV));
    assert_null(getenv(VERSION_ENV));
    /* No key material in what it printed. */
    assert_null(strstr(*text, f->a_b64));
    assert_null(strstr(*text, f->b_b64));
    assert_null(strstr(*text, f->c_b64));
    for (int i = 0; i < 3; i++)
        assert_null(strstr(*text, secrets[i]));
    return rc;
}

static void test_pepper_first_load_and_reopen(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    unsigned char derived[CRYPTO_HASH_LEN], h1[CRYPTO_HASH_LEN], h2[CRYPTO_HASH_LEN];
    crypto_get_hash_key(derived);
    hash_proxy_key(h1);

    struct store *s = open_store(f);
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t len;
    int version;
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len),
                     STORE_ERR_NOT_FOUND);
    char err[256];
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);
    /* Stored sealed (never in the clear), under the version in force. */
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 1);
    assert_int_equal(len, CRYPTO_IV_LEN + CRYPTO_HASH_LEN + CRYPTO_TAG_LEN);
    assert_null(memmem(sealed, len, derived, sizeof(derived)));
    /* The first start keeps the derived key: existing proxy keys still match. */
    hash_proxy_key(h2);
    assert_memory_equal(h1, h2, 32);
    store_close(s);

    /* Same master key, reopened: the same hashing key comes back. */
    crypto_init_raw(f->key_a);
    s = open_store(f);
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);
    hash_proxy_key(h2);
    assert_memory_equal(h1, h2, 32);

    /* It really is read from the store: replace it with another value. */
    unsigned char other[CRYPTO_HASH_LEN];
    memset(other, 0x3c, sizeof(other));
    assert_int_equal(crypto_seal("", "proxy_key_hash", other, sizeof(other), sealed, &len), 0);
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 1, sealed, len), STORE_OK);
    crypto_init_raw(f->key_a);
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);
    unsigned char got[CRYPTO_HASH_LEN];
    crypto_get_hash_key(got);
    assert_memory_equal(got, other, sizeof(other));
    hash_proxy_key(h2);
    assert_memory_not_equal(h1, h2, 32);
    store_close(s);
}

static void test_pepper_wrong_key_or_version(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    struct store *s = open_store(f);
    char err[256];
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);

    /* Another master key of the same version: refused, with a hint. */
    crypto_init_raw(f->key_c);
    unsigned char before[CRYPTO_HASH_LEN], after[CRYPTO_HASH_LEN];
    crypto_get_hash_key(before);
    err[0] = '\0';
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "BYOK_MASTER_KEY does not open the store's secrets"));
    assert_non_null(strstr(err, "wrong master key"));
    crypto_get_hash_key(after);
    assert_memory_equal(before, after, 32); /* nothing installed */

    /* The right key under another version: names both versions. */
    init_env(f->a_b64, "2");
    err[0] = '\0';
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "sealed under master key version 1"));
    assert_non_null(strstr(err, "BYOK_MASTER_KEY_VERSION is 2"));
    assert_null(strstr(err, f->a_b64));
    store_close(s);
}

static void test_rotate_end_to_end(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    unsigned char hash_before[CRYPTO_HASH_LEN], hash_after[CRYPTO_HASH_LEN];
    populate(f, hash_before);
    struct snapshot before;
    snapshot(f, &before);

    char *text = NULL;
    int rc = rotate(f, f->a_b64, f->b_b64, NULL, &text);
    if (rc != 0)
        fail_msg("rotate: %s", text);
    assert_non_null(strstr(text, "re-sealed 3 connections and 1 secret under master key version "
                                 "2. Now restart the proxy with BYOK_MASTER_KEY=<the new key> "
                                 "BYOK_MASTER_KEY_VERSION=2."));
    free(text);

    /* Under the new key and version every connection opens to its secret. */
    init_env(f->b_b64, "2");
    struct store *s = open_store(f);
    for (int i = 0; i < 3; i++) {
        struct store_connection c;
        assert_int_equal(store_connection_get(s, conn_tenants[i], conn_ids[i], &c), STORE_OK);
        assert_int_equal(c.key_version, 2);
        assert_memory_not_equal(c.sealed, before.c[i].sealed, CRYPTO_IV_LEN);
        /* Other fields untouched. */
        assert_ptr_equal(c.provider, provider_find(conn_providers[i]));
        assert_string_equal(c.name, before.c[i].name);
        char pt[CRYPTO_SECRET_MAX + 1];
        size_t len;
        assert_int_equal(
            crypto_open(c.tenant_id, c.id, c.key_version, c.sealed, c.sealed_len, pt, &len), 0);
        assert_string_equal(pt, secrets[i]);
        crypto_wipe(pt, sizeof(pt));
        /* The old key no longer opens it. */
        assert_int_equal(
            crypto_open_with(f->key_a, c.tenant_id, c.id, c.sealed, c.sealed_len, pt, &len), -1);
    }
    /* Proxy keys keep working: the same hashing key, now sealed under B. */
    char err[256];
    if (rekey_load_pepper(s, err, sizeof(err)) == -1)
        fail_msg("pepper: %s", err);
    hash_proxy_key(hash_after);
    assert_memory_equal(hash_before, hash_after, 32);
    /* B's own derived key differs, so this is the stored one. */
    crypto_init_raw(f->key_b);
    hash_proxy_key(hash_after);
    assert_memory_not_equal(hash_before, hash_after, 32);

    /* Starting with the old key now fails clearly. */
    init_env(f->a_b64, NULL);
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version 2"));
    store_close(s);

    /* A second rotation (B v2 -> A v3) works the same way. */
    text = NULL;
    rc = rotate(f, f->b_b64, f->a_b64, "2", &text);
    if (rc != 0)
        fail_msg("rotate again: %s", text);
    assert_non_null(strstr(text, "under master key version 3"));
    free(text);
    init_env(f->a_b64, "3");
    s = open_store(f);
    assert_int_equal(rekey_load_pepper(s, err, sizeof(err)), 0);
    hash_proxy_key(hash_after);
    assert_memory_equal(hash_before, hash_after, 32);
    store_close(s);
}

static void test_rotate_wrong_current_key(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    unsigned char hash[CRYPTO_HASH_LEN];
    populate(f, hash);
    struct snapshot before;
    snapshot(f, &before);

    char *text = NULL;
    assert_int_equal(rotate(f, f->c_b64, f->b_b64, NULL, &text), 1);
    assert_non_null(strstr(text, "nothing changed"));
    assert_non_null(strstr(text, "wrong master key"));
    free(text);
    assert_unchanged(f, &before);

    /* The right key with the wrong version is refused too. */
    assert_int_equal(rotate(f, f->a_b64, f->b_b64, "5", &text), 1);
    assert_non_null(strstr(text, "version 1"));
    free(text);
    assert_unchanged(f, &before);
}

static void test_rotate_rolls_back_on_bad_record(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    unsigned char hash[CRYPTO_HASH_LEN];
    populate(f, hash);
    /* The last connection was damaged: the first two must not be left
     * re-sealed under B while it stays under A. */
    struct store *s = open_store(f);
    struct store_connection c;
    assert_int_equal(store_connection_get(s, "t2", "c_3", &c), STORE_OK);
    c.sealed[CRYPTO_IV_LEN] ^= 1;
    assert_int_equal(store_connection_update(s, &c), STORE_OK);
    store_close(s);
    struct snapshot before;
    snapshot(f, &before);

    char *text = NULL;
    assert_int_equal(rotate(f, f->a_b64, f->b_b64, NULL, &text), 1);
    assert_non_null(strstr(text, "nothing changed"));
    assert_non_null(strstr(text, "c_3"));
    free(text);
    assert_unchanged(f, &before);
}

static void test_rotate_bad_arguments(void **state)
{
    struct fixture *f = *state;
    crypto_init_raw(f->key_a);
    unsigned char hash[CRYPTO_HASH_LEN];
    populate(f, hash);
    struct snapshot before;
    snapshot(f, &before);
    char *text = NULL;

    assert_int_equal(rotate(f, f->a_b64, NULL, NULL, &text), 1);
    assert_non_null(strstr(text, "BYOK_MASTER_KEY_NEW is not set"));
    free(text);

    assert_int_equal(rotate(f, f->a_b64, "c2hvcnQ=", NULL, &text), 1);
    assert_non_null(strstr(text, "BYOK_MASTER_KEY_NEW must be base64 of exactly 32 bytes"));
    free(text);

    assert_int_equal(rotate(f, f->a_b64, f->a_b64, NULL, &text), 1);
    assert_non_null(strstr(text, "same key"));
    free(text);

    assert_int_equal(rotate(f, NULL, f->b_b64, NULL, &text), 1);
    assert_non_null(strstr(text, "BYOK_MASTER_KEY is not set"));
    free(text);

    assert_int_equal(rotate(f, f->a_b64, f->b_b64, "zero", &text), 1);
    assert_non_null(strstr(text, VERSION_ENV));
    free(text);

    assert_unchanged(f, &before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pepper_first_load_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pepper_wrong_key_or_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_wrong_current_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_rolls_back_on_bad_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
