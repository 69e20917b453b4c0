/* jscan_test.h - the comparison of the scanner (jscan.h) with jansson that
 * tests/unit/test_jscan.c and tests/fuzz/fuzz_jscan.c make: what the
 * scanner accepts jansson parses, and every value reads the same both ways. */
#ifndef BYOK_JSCAN_TEST_H
#define BYOK_JSCAN_TEST_H

#include "jscan.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Code points of UTF-8 text (as meter_utf8_chars). */
static inline int64_t jscan_test_chars(const char *s, size_t len)
{
    int64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* true when the checked value v reads as jansson's j, all the way down. */
static inline bool jscan_test_same(struct jspan v, const json_t *j)
{
    switch (jscan_type(v)) {
    case JSCAN_OBJECT: {
        if (!json_is_object(j))
            return false;
        size_t pos = 0, unique = 0;
        struct jspan k, m;
        while (jscan_next_member(v, &pos, &k, &m)) {
            /* A checked key holds no NUL: as a C string for jscan_get. */
            char *key = malloc(k.len + 1);
            if (key == NULL)
                abort();
            memcpy(key, k.p, k.len);
            key[k.len] = '\0';
            struct jspan last = jscan_get(v, key);
            free(key);
            const json_t *jm = json_object_getn(j, k.p, k.len);
            if (jm == NULL || last.p == NULL || !jscan_test_same(last, jm))
                return false;
            unique += last.p == m.p; /* the member jansson kept */
        }
        return unique == json_object_size(j);
    }
    case JSCAN_ARRAY: {
        if (!json_is_array(j))
            return false;
        size_t pos = 0, i = 0;
        struct jspan e;
        while (jscan_next(v, &pos, &e))
            if (i >= json_array_size(j) || !jscan_test_same(e, json_array_get(j, i++)))
                return false;
        return i == json_array_size(j);
    }
    case JSCAN_STRING: {
        if (!json_is_string(j))
            return false;
        size_t n = json_string_length(j);
        char buf[4096];
        if (jscan_string(v, NULL, 0) != n)
            return false;
        if (n <= sizeof(buf) &&
            (jscan_string(v, buf, sizeof(buf)) != n || memcmp(buf, json_string_value(j), n) != 0))
            return false;
        return jscan_string_chars(v) == jscan_test_chars(json_string_value(j), n);
    }
    case JSCAN_NUMBER: {
        bool is_int;
        int64_t i = 0;
        double d = 0;
        if (!jscan_number(v, &is_int, &i, &d) || is_int != json_is_integer(j))
            return false;
        if (is_int)
            return i == json_integer_value(j);
        return json_is_real(j) &&
               (d == json_real_value(j) || (isnan(d) && isnan(json_real_value(j))));
    }
    case JSCAN_TRUE:
        return json_is_true(j);
    case JSCAN_FALSE:
        return json_is_false(j);
    case JSCAN_NULL:
        return json_is_null(j);
    default:
        return false;
    }
}

/* The property both tests check on any bytes: when the scanner is sure,
 * jansson parses the same value. Returns 1 when the scanner was sure, 0
 * when not, -1 when the two disagree. prefix: the value that starts the
 * text, what follows ignored (jscan_check_prefix, JSON_DISABLE_EOF_CHECK). */
static inline int jscan_test_compare(const char *s, size_t len, bool prefix)
{
    struct jspan v;
    bool sure = prefix ? jscan_check_prefix(s, len, &v) : jscan_check(s, len, &v);
    if (!sure)
        return 0;
    json_t *j = json_loadb(s, len, prefix ? JSON_DISABLE_EOF_CHECK : 0, NULL);
    int rc = j != NULL && jscan_test_same(v, j) ? 1 : -1;
    json_decref(j);
    return rc;
}

#endif
