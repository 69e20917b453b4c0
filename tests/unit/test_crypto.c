/* test_crypto.c - ULIDs, proxy keys, keyed hashing, master key loading and
 * AES-256-GCM sealing of connection keys. */
#include "common.h"
#include "crypto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdlib.h>
#include <string.h>

#define ENV         "BYOK_MASTER_KEY"
#define VERSION_ENV "BYOK_MASTER_KEY_VERSION"

static const unsigned char key_a[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                        11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                        22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
/* base64 of key_a */
#define KEY_A_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static int64_t ulid_time(const char *ulid)
{
    int64_t t = 0;
    for (int i = 0; i < 10; i++)
        t = t * 32 + (int64_t)(strchr(crockford, ulid[i]) - crockford);
    return t;
}

static void test_ulid_format(void **state)
{
    (void)state;
    char id[64];
    int64_t before = now_ms();
    assert_int_equal(crypto_new_ulid("req_", id, sizeof(id)), 0);
    int64_t after = now_ms();
    assert_int_equal(strlen(id), 4 + 26);
    assert_memory_equal(id, "req_", 4);
    for (int i = 4; i < 30; i++)
        assert_non_null(strchr(crockford, id[i]));
    assert_true(id[4] <= '7'); /* 128 bits in 130: the first char has 3 bits */
    int64_t t = ulid_time(id + 4);
    assert_true(t >= before && t <= after);

    /* Too small a buffer is refused, not truncated. */
    char small[4 + 26];
    assert_int_equal(crypto_new_ulid("req_", small, sizeof(small)), -1);
    char exact[4 + 27];
    assert_int_equal(crypto_new_ulid("req_", exact, sizeof(exact)), 0);
}

static void test_ulid_ordering(void **state)
{
    (void)state;
    char prev[40], cur[40];
    assert_int_equal(crypto_new_ulid("", prev, sizeof(prev)), 0);
    /* Many ids fall in the same millisecond: still strictly increasing. */
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(crypto_new_ulid("", cur, sizeof(cur)), 0);
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, sizeof(prev));
    }
}

static void test_proxy_key_roundtrip(void **state)
{
    (void)state;
    char id[ID_MAX], key[CRYPTO_PROXY_KEY_MAX], got[ID_MAX];
    assert_int_equal(crypto_new_proxy_key(id, key), 0);
    assert_int_equal(strlen(id), 2 + 16);
    assert_memory_equal(id, "k_", 2);
    assert_int_equal(strlen(key), 4 + 16 + 1 + 43);
    assert_memory_equal(key, "bpk_", 4);
    assert_memory_equal(key + 4, id + 2, 16);
    assert_int_equal(crypto_proxy_key_id(key, strlen(key), got), 0);
    assert_string_equal(got, id);

    char id2[ID_MAX], key2[CRYPTO_PROXY_KEY_MAX];
    assert_int_equal(crypto_new_proxy_key(id2, key2), 0);
    assert_string_not_equal(id, id2);
    assert_string_not_equal(key, key2);
    crypto_wipe(key, sizeof(key));
    crypto_wipe(key2, sizeof(key2));
}

static void test_proxy_key_malformed(void **state)
{
    (void)state;
    char id[ID_MAX], key[CRYPTO_PROXY_KEY_MAX], got[ID_MAX];
    assert_int_equal(crypto_new_proxy_key(id, key), 0);
    size_t len = strlen(key);
    char bad[CRYPTO_PROXY_KEY_MAX + 8];

    assert_int_equal(crypto_proxy_key_id(key, len - 1, got), -1); /* truncated */
    assert_int_equal(crypto_proxy_key_id("", 0, got), -1);
    assert_int_equal(crypto_proxy_key_id("sk-proj-abc", 11, got), -1);

    memcpy(bad, key, len + 1);
    strcat(bad, "A"); /* too long */
    assert_int_equal(crypto_proxy_key_id(bad, len + 1, got), -1);

    struct {
        size_t pos;
        char ch;
    } cases[] = {
        {0, 'B'},       /* prefix */
        {3, '-'},       /* prefix separator */
        {4, 'A'},       /* uppercase in the id part */
        {5, 'u'},       /* not in Crockford base32 */
        {19, 'i'},      /* not in Crockford base32 */
        {20, 'x'},      /* id/secret separator */
        {21, '+'},      /* standard base64, not base64url */
        {40, '/'},      /* same */
        {len - 1, '='}, /* padding */
        {30, '\0'},     /* embedded NUL */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        memcpy(bad, key, len + 1);
        bad[cases[i].pos] = cases[i].ch;
        assert_int_equal(crypto_proxy_key_id(bad, len, got), -1);
    }
    crypto_wipe(key, sizeof(key));
}

static void test_key_hash(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    /* Known answer: HMAC-SHA256(HKDF-SHA256(key_a, no salt, info), text),
     * computed independently with Python's hmac module. */
    static const unsigned char expected[32] = {0xaf, 0x18, 0x30, 0x0a, 0x54, 0xfd, 0xdc, 0xe5,
                                               0x6f, 0x07, 0x4d, 0xd6, 0xba, 0xa1, 0x78, 0xa5,
                                               0x29, 0x29, 0x67, 0x05, 0xc8, 0xf4, 0x6a, 0x7a,
                                               0x9e, 0xff, 0x93, 0x22, 0xad, 0xea, 0xee, 0x41};
    const char *text = "bpk_0123456789abcdef_AAAA";
    unsigned char h1[32], h2[32], h3[32], h4[32];
    crypto_key_hash(text, strlen(text), h1);
    assert_memory_equal(h1, expected, 32);

    crypto_key_hash(text, strlen(text), h2);
    assert_true(crypto_equal(h1, h2, 32));

    const char *other = "bpk_0123456789abcdef_AAAB";
    crypto_key_hash(other, strlen(other), h3);
    assert_false(crypto_equal(h1, h3, 32));

    unsigned char key_b[32];
    memcpy(key_b, key_a, 32);
    key_b[31] ^= 1;
    crypto_init_raw(key_b);
    crypto_key_hash(text, strlen(text), h4);
    assert_false(crypto_equal(h1, h4, 32));
    crypto_shutdown();
}

static void test_equal(void **state)
{
    (void)state;
    unsigned char a[32] = {1, 2, 3}, b[32] = {1, 2, 3};
    assert_true(crypto_equal(a, b, sizeof(a)));
    b[31] = 1;
    assert_false(crypto_equal(a, b, sizeof(a)));
    assert_true(crypto_equal(a, b, 31));
    assert_true(crypto_equal(a, b, 0));
}

static void test_random(void **state)
{
    (void)state;
    unsigned char a[64] = {0}, b[64] = {0};
    assert_int_equal(crypto_random(a, sizeof(a)), 0);
    assert_int_equal(crypto_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

/* Loads value through the environment; returns crypto_init_from_env's rc. */
static int load_env(const char *value, char *err, size_t err_size)
{
    if (value != NULL)
        assert_int_equal(setenv(ENV, value, 1), 0);
    else
        unsetenv(ENV);
    err[0] = '\0';
    return crypto_init_from_env(err, err_size);
}

static void test_master_key_missing(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(load_env(NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ENV));
    assert_non_null(strstr(err, "32 bytes"));
    assert_int_equal(load_env("", err, sizeof(err)), -1);
    assert_non_null(strstr(err, ENV));
}

static void test_master_key_bad(void **state)
{
    (void)state;
    const char *values[] = {
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",       /* 31 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",       /* 33 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=AAAA",   /* 35 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",        /* unpadded */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd*h8=",       /* not base64 */
        "this is not base64 at all, it is a password!",       /* 44 chars */
        "000102030405060708090a0b0c0d0e0f101112131415161718", /* hex */
    };
    for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
        char err[256];
        assert_int_equal(load_env(values[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, ENV));
        assert_non_null(strstr(err, "base64 of exactly 32 bytes"));
        /* The message never quotes the value. */
        assert_null(strstr(err, values[i]));
        assert_null(strstr(err, "AAAAAAAA"));
        assert_null(getenv(ENV));
    }
}

static void test_master_key_valid(void **state)
{
    (void)state;
    char err[256];
    /* Trailing newline, as from `openssl rand -base64 32 > file`. */
    assert_int_equal(setenv(ENV, KEY_A_B64 "\n", 1), 0);
    char *in_env = getenv(ENV);
    assert_int_equal(crypto_init_from_env(err, sizeof(err)), 0);
    assert_null(getenv(ENV)); /* removed from the environment */
    /* and the string itself wiped (glibc keeps setenv strings allocated) */
    for (size_t i = 0; i < strlen(KEY_A_B64); i++)
        assert_int_equal(in_env[i], 0);

    /* The decoded bytes are exactly key_a: hashes match crypto_init_raw. */
    const char *text = "bpk_abc";
    unsigned char from_env[32], from_raw[32];
    crypto_key_hash(text, strlen(text), from_env);
    crypto_init_raw(key_a);
    crypto_key_hash(text, strlen(text), from_raw);
    assert_memory_equal(from_env, from_raw, 32);
    crypto_shutdown();
}

/* --- Sealing ------------------------------------------------------------ */

#define SECRET "sk-proj-canary-0123456789abcdef"

struct sealed {
    unsigned char b[CRYPTO_SEALED_MAX];
    size_t len;
};

static struct sealed seal(const char *tenant, const char *conn, const char *secret)
{
    struct sealed s;
    assert_int_equal(
        crypto_seal(tenant, conn, (const unsigned char *)secret, strlen(secret), s.b, &s.len), 0);
    return s;
}

/* rc of crypto_open under the version in force; on success checks pt. */
static int open_as(const char *tenant, const char *conn, const struct sealed *s)
{
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t len = 0;
    memset(pt, 'x', sizeof(pt));
    int rc = crypto_open(tenant, conn, crypto_key_version(), s->b, s->len, pt, &len);
    if (rc == 0) {
        assert_int_equal(len, strlen(SECRET));
        assert_string_equal(pt, SECRET);
    } else {
        /* Nothing unauthenticated is left behind in the caller's buffer. */
        for (size_t i = 0; i < sizeof(pt); i++)
            assert_int_equal(pt[i], 0);
    }
    crypto_wipe(pt, sizeof(pt));
    return rc;
}

static void test_seal_roundtrip(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    assert_int_equal(crypto_key_version(), 1);
    struct sealed s = seal("t1", "c_1", SECRET);
    assert_int_equal(s.len, CRYPTO_IV_LEN + strlen(SECRET) + CRYPTO_TAG_LEN);
    /* Not in the clear anywhere in the sealed form. */
    assert_null(memmem(s.b, s.len, "canary", 6));
    uint64_t before = crypto_open_count();
    assert_int_equal(open_as("t1", "c_1", &s), 0);
    assert_int_equal(crypto_open_count(), before + 1);
    /* A refused open is not counted. */
    assert_int_equal(open_as("t1", "c_2", &s), -1);
    assert_int_equal(crypto_open_count(), before + 1);
    crypto_shutdown();
}

static void test_seal_max_size(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    unsigned char secret[CRYPTO_SECRET_MAX];
    assert_int_equal(crypto_random(secret, sizeof(secret)), 0);
    unsigned char out[CRYPTO_SEALED_MAX];
    size_t out_len = 0;
    assert_int_equal(crypto_seal("t1", "c_1", secret, sizeof(secret), out, &out_len), 0);
    assert_int_equal(out_len, CRYPTO_SEALED_MAX);
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t pt_len = 0;
    assert_int_equal(crypto_open("t1", "c_1", 1, out, out_len, pt, &pt_len), 0);
    assert_int_equal(pt_len, CRYPTO_SECRET_MAX);
    assert_memory_equal(pt, secret, sizeof(secret));
    assert_int_equal(pt[CRYPTO_SECRET_MAX], '\0');

    /* One byte over the limit is refused. */
    unsigned char big[CRYPTO_SECRET_MAX + 1] = {0};
    assert_int_equal(crypto_seal("t1", "c_1", big, sizeof(big), out, &out_len), -1);
    /* Truncated sealed forms are refused. */
    assert_int_equal(
        crypto_open("t1", "c_1", 1, out, CRYPTO_IV_LEN + CRYPTO_TAG_LEN - 1, pt, &pt_len), -1);
    assert_int_equal(crypto_open("t1", "c_1", 1, out, out_len - 1, pt, &pt_len), -1);
    crypto_wipe(pt, sizeof(pt));
    crypto_shutdown();
}

static void test_seal_tamper(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    struct sealed good = seal("t1", "c_1", SECRET);
    assert_int_equal(open_as("t1", "c_1", &good), 0);

    /* Every single bit of IV, ciphertext and tag matters. */
    size_t regions[][2] = {
        {0, CRYPTO_IV_LEN},                              /* IV */
        {CRYPTO_IV_LEN, CRYPTO_IV_LEN + strlen(SECRET)}, /* ciphertext */
        {CRYPTO_IV_LEN + strlen(SECRET), good.len},      /* tag */
    };
    for (size_t r = 0; r < ARRAY_SIZE(regions); r++) {
        for (size_t i = regions[r][0]; i < regions[r][1]; i++) {
            struct sealed bad = good;
            bad.b[i] ^= (unsigned char)(1u << (i % 8));
            assert_int_equal(open_as("t1", "c_1", &bad), -1);
        }
    }

    /* AAD: another tenant, another connection, or the separator moved. */
    assert_int_equal(open_as("t2", "c_1", &good), -1);
    assert_int_equal(open_as("t1", "c_2", &good), -1);
    assert_int_equal(open_as("", "c_1", &good), -1);
    assert_int_equal(open_as("t1", "", &good), -1);
    assert_int_equal(open_as("t", "1c_1", &good), -1);
    assert_int_equal(open_as("t1c", "_1", &good), -1);
    crypto_shutdown();
}

static void test_seal_cross_tenant(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    /* Tenant B copies tenant A's sealed record into its own connection with
     * the same id: it still does not open as B's. */
    struct sealed a = seal("tenant_a", "c_same", SECRET);
    assert_int_equal(open_as("tenant_a", "c_same", &a), 0);
    assert_int_equal(open_as("tenant_b", "c_same", &a), -1);
    crypto_shutdown();
}

static void test_seal_fresh_iv(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    struct sealed s1 = seal("t1", "c_1", SECRET);
    struct sealed s2 = seal("t1", "c_1", SECRET);
    assert_int_equal(s1.len, s2.len);
    assert_memory_not_equal(s1.b, s2.b, CRYPTO_IV_LEN);
    assert_memory_not_equal(s1.b + CRYPTO_IV_LEN, s2.b + CRYPTO_IV_LEN,
                            s1.len - CRYPTO_IV_LEN - CRYPTO_TAG_LEN);
    assert_int_equal(open_as("t1", "c_1", &s1), 0);
    assert_int_equal(open_as("t1", "c_1", &s2), 0);
    crypto_shutdown();
}

static void test_seal_wrong_version_or_key(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    struct sealed s = seal("t1", "c_1", SECRET);
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t len;
    assert_int_equal(crypto_open("t1", "c_1", 2, s.b, s.len, pt, &len), -1);
    assert_int_equal(crypto_open("t1", "c_1", 0, s.b, s.len, pt, &len), -1);
    assert_int_equal(crypto_open("t1", "c_1", 1, s.b, s.len, pt, &len), 0);

    unsigned char key_b[32];
    memcpy(key_b, key_a, 32);
    key_b[0] ^= 0x80;
    assert_int_equal(crypto_open_with(key_b, "t1", "c_1", s.b, s.len, pt, &len), -1);
    assert_int_equal(crypto_open_with(key_a, "t1", "c_1", s.b, s.len, pt, &len), 0);
    assert_string_equal(pt, SECRET);

    /* Sealed under B explicitly: opens with B, not with the master (A). */
    struct sealed sb;
    assert_int_equal(crypto_seal_with(key_b, "t1", "c_1", (const unsigned char *)SECRET,
                                      strlen(SECRET), sb.b, &sb.len),
                     0);
    assert_int_equal(open_as("t1", "c_1", &sb), -1);
    assert_int_equal(crypto_open_with(key_b, "t1", "c_1", sb.b, sb.len, pt, &len), 0);
    assert_string_equal(pt, SECRET);

    /* After shutdown nothing seals or opens (the key is wiped, not zero). */
    crypto_shutdown();
    unsigned char out[CRYPTO_SEALED_MAX];
    size_t out_len;
    assert_int_equal(crypto_seal("t1", "c_1", (const unsigned char *)"x", 1, out, &out_len), -1);
    assert_int_equal(crypto_open("t1", "c_1", 1, s.b, s.len, pt, &len), -1);
    crypto_wipe(pt, sizeof(pt));
}

static void test_master_key_version(void **state)
{
    (void)state;
    char err[256];
    /* Unset: version 1. */
    unsetenv(VERSION_ENV);
    assert_int_equal(load_env(KEY_A_B64, err, sizeof(err)), 0);
    assert_int_equal(crypto_key_version(), 1);

    assert_int_equal(setenv(VERSION_ENV, "7", 1), 0);
    assert_int_equal(load_env(KEY_A_B64, err, sizeof(err)), 0);
    assert_int_equal(crypto_key_version(), 7);
    assert_null(getenv(VERSION_ENV));

    /* Records are stamped with the version in force and open only under it. */
    struct sealed s = seal("t1", "c_1", SECRET);
    char pt[CRYPTO_SECRET_MAX + 1];
    size_t len;
    assert_int_equal(crypto_open("t1", "c_1", 7, s.b, s.len, pt, &len), 0);
    assert_int_equal(crypto_open("t1", "c_1", 1, s.b, s.len, pt, &len), -1);
    crypto_wipe(pt, sizeof(pt));

    const char *bad[] = {
        "0", "-1", "x", "", "1x", "2147483648", "99999999999999999999999999999999999"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(setenv(VERSION_ENV, bad[i], 1), 0);
        assert_int_equal(load_env(KEY_A_B64, err, sizeof(err)), -1);
        assert_non_null(strstr(err, VERSION_ENV));
        /* Both variables are gone even though loading failed. */
        assert_null(getenv(VERSION_ENV));
        assert_null(getenv(ENV));
    }
    /* Surrounding whitespace (a value from a file) is accepted. */
    assert_int_equal(setenv(VERSION_ENV, " 3\n", 1), 0);
    assert_int_equal(load_env(KEY_A_B64, err, sizeof(err)), 0);
    assert_int_equal(crypto_key_version(), 3);
    /* crypto_init_raw is version 1. */
    crypto_init_raw(key_a);
    assert_int_equal(crypto_key_version(), 1);
    crypto_shutdown();
}

static void test_decode_master_key(void **state)
{
    (void)state;
    unsigned char key[32];
    assert_int_equal(crypto_decode_master_key(" " KEY_A_B64 "\n", key), 0);
    assert_memory_equal(key, key_a, 32);
    assert_int_equal(crypto_decode_master_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", key),
                     -1);
    assert_int_equal(crypto_decode_master_key("", key), -1);
    assert_int_equal(crypto_decode_master_key("not base64!", key), -1);
}

static void test_set_hash_key(void **state)
{
    (void)state;
    crypto_init_raw(key_a);
    unsigned char derived[CRYPTO_HASH_LEN], got[CRYPTO_HASH_LEN];
    crypto_get_hash_key(derived);

    const char *text = "bpk_0123456789abcdef_AAAA";
    unsigned char pepper[CRYPTO_HASH_LEN], h[CRYPTO_HASH_LEN], ref[CRYPTO_HASH_LEN];
    unsigned int ref_len = 0;
    for (size_t i = 0; i < sizeof(pepper); i++)
        pepper[i] = (unsigned char)(0xa0 + i);

    /* The derived key: crypto_key_hash is HMAC-SHA256 under it. */
    crypto_key_hash(text, strlen(text), h);
    assert_non_null(HMAC(EVP_sha256(), derived, sizeof(derived), (const unsigned char *)text,
                         strlen(text), ref, &ref_len));
    assert_memory_equal(h, ref, 32);

    crypto_set_hash_key(pepper);
    crypto_get_hash_key(got);
    assert_memory_equal(got, pepper, 32);
    crypto_key_hash(text, strlen(text), h);
    assert_non_null(HMAC(EVP_sha256(), pepper, sizeof(pepper), (const unsigned char *)text,
                         strlen(text), ref, &ref_len));
    assert_int_equal(ref_len, 32);
    assert_memory_equal(h, ref, 32);
    /* Differs from the hash under the derived key. */
    assert_non_null(HMAC(EVP_sha256(), derived, sizeof(derived), (const unsigned char *)text,
                         strlen(text), ref, &ref_len));
    assert_memory_not_equal(h, ref, 32);

    /* Setting it back restores the original hashes. */
    crypto_set_hash_key(derived);
    crypto_key_hash(text, strlen(text), h);
    assert_memory_equal(h, ref, 32);
    crypto_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ulid_format),
        cmocka_unit_test(test_ulid_ordering),
        cmocka_unit_test(test_proxy_key_roundtrip),
        cmocka_unit_test(test_proxy_key_malformed),
        cmocka_unit_test(test_key_hash),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_master_key_missing),
        cmocka_unit_test(test_master_key_bad),
        cmocka_unit_test(test_master_key_valid),
        cmocka_unit_test(test_seal_roundtrip),
        cmocka_unit_test(test_seal_max_size),
        cmocka_unit_test(test_seal_tamper),
        cmocka_unit_test(test_seal_cross_tenant),
        cmocka_unit_test(test_seal_fresh_iv),
        cmocka_unit_test(test_seal_wrong_version_or_key),
        cmocka_unit_test(test_master_key_version),
        cmocka_unit_test(test_decode_master_key),
        cmocka_unit_test(test_set_hash_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
