/* test_urlenc.c - unit tests of the one query iterator and percent-decoder:
 * pairs as written, empty pairs, names without '=', decoding rules, names
 * compared after decoding and without regard to case. */
#include "common.h"

#include "urlenc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include <cmocka.h>

static void test_encode(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(urlenc_encode("gpt-4o_mini.v2~x", out, sizeof(out)), 16);
    assert_string_equal(out, "gpt-4o_mini.v2~x");
    assert_int_equal(urlenc_encode("a b&c=d/\xc3\xa9", out, sizeof(out)), 22);
    assert_string_equal(out, "a%20b%26c%3Dd%2F%C3%A9");
    /* Round trip through the decoder. */
    char back[32];
    assert_int_equal(urlenc_decode(out, strlen(out), false, false, back, sizeof(back)), 10);
    assert_string_equal(back, "a b&c=d/\xc3\xa9");
    /* Exactly fitting and one byte short. */
    char four[4];
    assert_int_equal(urlenc_encode("abc", four, sizeof(four)), 3);
    assert_int_equal(urlenc_encode("ab ", four, sizeof(four)), -1);
    assert_string_equal(four, "");
    assert_int_equal(urlenc_encode("", four, 1), 0);
}

static void test_hex(void **state)
{
    (void)state;
    assert_int_equal(urlenc_hex('0'), 0);
    assert_int_equal(urlenc_hex('9'), 9);
    assert_int_equal(urlenc_hex('a'), 10);
    assert_int_equal(urlenc_hex('F'), 15);
    assert_int_equal(urlenc_hex('g'), -1);
    assert_int_equal(urlenc_hex('%'), -1);
}

static void test_decode(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(urlenc_decode("a%2Db+c", 7, true, true, out, sizeof(out)), 5);
    assert_string_equal(out, "a-b c");
    assert_int_equal(urlenc_decode("a%2db+c", 7, false, true, out, sizeof(out)), 5);
    assert_string_equal(out, "a-b+c");
    /* Malformed escapes, NUL, controls (when refused), no room. */
    assert_int_equal(urlenc_decode("%4", 2, true, true, out, sizeof(out)), -1);
    assert_string_equal(out, "");
    assert_int_equal(urlenc_decode("%zz", 3, true, true, out, sizeof(out)), -1);
    assert_int_equal(urlenc_decode("a%00b", 5, true, false, out, sizeof(out)), -1);
    assert_int_equal(urlenc_decode("a%0Ab", 5, true, true, out, sizeof(out)), -1);
    assert_int_equal(urlenc_decode("a%0Ab", 5, true, false, out, sizeof(out)), 3);
    assert_int_equal(urlenc_decode("abcd", 4, true, true, out, 4), -1);
    assert_int_equal(urlenc_decode("abc", 3, true, true, out, 4), 3);
    assert_int_equal(urlenc_decode("", 0, true, true, out, 1), 0);
}

static void test_iterate(void **state)
{
    (void)state;
    const char *q = "a=1&&b&c=&d=x%3Dy&=e";
    struct urlenc_query it;
    struct urlenc_pair p;
    urlenc_query_init(&it, q, strlen(q));
    const char *names[] = {"a", "b", "c", "d", ""};
    const char *values[] = {"1", "", "", "x%3Dy", "e"};
    const bool has[] = {true, false, true, true, true};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        assert_true(urlenc_query_next(&it, &p));
        assert_int_equal(p.name_len, strlen(names[i]));
        assert_memory_equal(p.name, names[i], p.name_len);
        assert_int_equal(p.value_len, strlen(values[i]));
        assert_memory_equal(p.value, values[i], p.value_len);
        assert_int_equal(p.has_value, has[i]);
    }
    assert_false(urlenc_query_next(&it, &p));
    /* No query at all. */
    urlenc_query_init(&it, NULL, 0);
    assert_false(urlenc_query_next(&it, &p));
}

static void test_names_after_decoding(void **state)
{
    (void)state;
    const char *q = "x=1&Ocp%2DApim-Subscription-Key=k1&MODEL=m%2B1&bad%=2";
    struct urlenc_query it;
    struct urlenc_pair p;
    urlenc_query_init(&it, q, strlen(q));
    assert_true(urlenc_query_next(&it, &p));
    assert_false(urlenc_name_is(&p, "ocp-apim-subscription-key"));
    assert_true(urlenc_query_next(&it, &p));
    assert_true(urlenc_name_is(&p, "ocp-apim-subscription-key"));
    assert_true(urlenc_query_next(&it, &p));
    assert_true(urlenc_name_is(&p, "model"));
    assert_true(urlenc_query_next(&it, &p));
    assert_false(urlenc_name_is(&p, "bad%")); /* does not decode: equal to nothing */

    char out[16];
    assert_int_equal(urlenc_query_get(q, strlen(q), "model", out, sizeof(out)), 0);
    assert_string_equal(out, "m+1");
    assert_int_equal(urlenc_query_get(q, strlen(q), "OCP-APIM-SUBSCRIPTION-KEY", out, sizeof(out)),
                     0);
    assert_string_equal(out, "k1");
    assert_int_equal(urlenc_query_get(q, strlen(q), "nope", out, sizeof(out)), -1);
    assert_string_equal(out, "");
    assert_int_equal(urlenc_query_get("m=abcdefgh", 10, "m", out, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_iterate),
        cmocka_unit_test(test_names_after_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
