/* jscan.c - an allocation-free reader of JSON text (include/jscan.h): a
 * check that accepts only what jansson parses and this reader answers for,
 * then readers that walk the checked bytes. */
#include "common.h"
#include "jscan.h"

#include <stdlib.h>

#define NUMBER_MAX 64 /* characters of a number the reader takes */
#define INT_DIGITS 18 /* an integer of more digits may not fit jansson's */
#define EXP_DIGITS 2  /* with NUMBER_MAX, no real overflows a double */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *blanks(const char *p, const char *end)
{
    while (p < end && is_blank(*p))
        p++;
    return p;
}

static int hex4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at p (no overlong form, no
 * surrogate, nothing over U+10FFFF, as jansson's utf8_check_full), else 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* p at the opening quote; returns past the closing one, NULL when unsure.
 * A key may not hold an escape (keys are compared as bytes). */
static const char *check_string(const char *p, const char *end, bool key)
{
    for (p++; p < end;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL; /* jansson: control character */
        if (c < 0x80 && c != '\\') {
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return NULL;
            p += n;
            continue;
        }
        if (key || end - p < 2)
            return NULL;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            continue;
        case 'u':
            break;
        default:
            return NULL;
        }
        int v = hex4(p + 2, end);
        p += 6;
        if (v <= 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return NULL; /* invalid, \u0000, or a lone low surrogate */
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return NULL;
            int low = hex4(p + 2, end);
            if (low < 0xDC00 || low > 0xDFFF)
                return NULL;
            p += 6;
        }
    }
    return NULL;
}

static const char *check_number(const char *p, const char *end)
{
    const char *start = p;
    bool real = false;
    if (*p == '-')
        p++;
    const char *digits = p;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return NULL;
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    size_t int_digits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *exp = p;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
        if (p - exp > EXP_DIGITS)
            return NULL;
        real = true;
    }
    if (p - start > NUMBER_MAX || (!real && int_digits > INT_DIGITS))
        return NULL;
    return p;
}

static const char *check_word(const char *p, const char *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* The value starting at s (blanks before it skipped): an object or array
 * checked to its end. Returns past it, NULL when unsure. */
static const char *check_value(const char *p, const char *end)
{
    bool in_object[JSCAN_DEPTH];
    int depth = 0;
    enum { WANT_VALUE, WANT_KEY, AFTER_VALUE } want = WANT_VALUE;
    p = blanks(p, end);
    if (p >= end || (*p != '{' && *p != '['))
        return NULL; /* jansson: '[' or '{' expected */
    for (;;) {
        if (want == AFTER_VALUE && depth == 0)
            return p;
        p = blanks(p, end);
        if (p >= end)
            return NULL;
        if (want == WANT_KEY) {
            if (*p != '"' || (p = check_string(p, end, true)) == NULL)
                return NULL;
            p = blanks(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p++;
            want = WANT_VALUE;
            continue;
        }
        if (want == AFTER_VALUE) {
            bool obj = in_object[depth - 1];
            if (*p == ',') {
                p++;
                want = obj ? WANT_KEY : WANT_VALUE;
            } else if (*p == (obj ? '}' : ']')) {
                p++;
                depth--;
            } else {
                return NULL;
            }
            continue;
        }
        switch (*p) {
        case '{':
        case '[':
            if (depth == JSCAN_DEPTH)
                return NULL;
            in_object[depth++] = *p == '{';
            p = blanks(p + 1, end);
            if (p < end && *p == (in_object[depth - 1] ? '}' : ']')) {
                p++;
                depth--;
                want = AFTER_VALUE;
            } else {
                want = in_object[depth - 1] ? WANT_KEY : WANT_VALUE;
            }
            continue;
        case '"':
            p = check_string(p, end, false);
            break;
        case 't':
            p = check_word(p, end, "true", 4);
            break;
        case 'f':
            p = check_word(p, end, "false", 5);
            break;
        case 'n':
            p = check_word(p, end, "null", 4);
            break;
        default:
            p = check_number(p, end);
            break;
        }
        if (p == NULL)
            return NULL;
        want = AFTER_VALUE;
    }
}

bool jscan_check_prefix(const char *s, size_t len, struct jspan *value)
{
    const char *end = s + len;
    const char *start = blanks(s, end);
    const char *p = check_value(start, end);
    if (p == NULL)
        return false;
    value->p = start;
    value->len = (size_t)(p - start);
    return true;
}

bool jscan_check(const char *s, size_t len, struct jspan *root)
{
    return jscan_check_prefix(s, len, root) && blanks(root->p + root->len, s + len) == s + len;
}

/* ---- readers of checked text ------------------------------------------------ */

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

static const char *skip_value(const char *p, const char *end)
{
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_blank(*p))
            p++;
        return p;
    }
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return p + 1;
        }
        p++;
    }
    return end;
}

enum jscan_type jscan_type(struct jspan v)
{
    if (v.p == NULL || v.len == 0)
        return JSCAN_NONE;
    switch (v.p[0]) {
    case '{':
        return JSCAN_OBJECT;
    case '[':
        return JSCAN_ARRAY;
    case '"':
        return JSCAN_STRING;
    case 't':
        return JSCAN_TRUE;
    case 'f':
        return JSCAN_FALSE;
    case 'n':
        return JSCAN_NULL;
    default:
        return JSCAN_NUMBER;
    }
}

bool jscan_next_member(struct jspan obj, size_t *pos, struct jspan *key, struct jspan *value)
{
    if (jscan_type(obj) != JSCAN_OBJECT)
        return false;
    const char *end = obj.p + obj.len;
    const char *p = blanks(obj.p + (*pos == 0 ? 1 : *pos), end);
    if (p < end && *p == ',')
        p = blanks(p + 1, end);
    if (p >= end || *p != '"')
        return false;
    const char *k = p + 1; /* a checked key holds no escape */
    const char *q = memchr(k, '"', (size_t)(end - k));
    if (q == NULL)
        return false;
    p = blanks(q + 1, end);
    p = blanks(p + 1, end); /* past the colon */
    const char *v = p;
    p = skip_value(p, end);
    key->p = k;
    key->len = (size_t)(q - k);
    value->p = v;
    value->len = (size_t)(p - v);
    *pos = (size_t)(p - obj.p);
    return true;
}

struct jspan jscan_get(struct jspan obj, const char *key)
{
    struct jspan found = {NULL, 0}, k, v;
    size_t key_len = strlen(key), pos = 0;
    while (jscan_next_member(obj, &pos, &k, &v))
        if (k.len == key_len && memcmp(k.p, key, key_len) == 0)
            found = v;
    return found;
}

bool jscan_next(struct jspan arr, size_t *pos, struct jspan *elem)
{
    if (jscan_type(arr) != JSCAN_ARRAY)
        return false;
    const char *end = arr.p + arr.len;
    const char *p = blanks(arr.p + (*pos == 0 ? 1 : *pos), end);
    if (p < end && *p == ',')
        p = blanks(p + 1, end);
    if (p >= end || *p == ']')
        return false;
    const char *v = p;
    p = skip_value(p, end);
    elem->p = v;
    elem->len = (size_t)(p - v);
    *pos = (size_t)(p - arr.p);
    return true;
}

/* Decodes a checked string: its UTF-8 bytes, up to cap of them, into out
 * (may be NULL), its code points into *chars (may be NULL); returns the
 * whole decoded length. */
static size_t decode(struct jspan v, char *out, size_t cap, int64_t *chars)
{
    size_t n = 0;
    int64_t count = 0;
    const char *p = v.p + 1, *end = v.p + v.len - 1;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        char buf[4];
        size_t k;
        if (c != '\\') {
            /* A run of raw bytes: copied as they are. */
            const char *run = p;
            while (p < end && *p != '\\') {
                count += ((unsigned char)*p & 0xC0) != 0x80;
                p++;
            }
            size_t r = (size_t)(p - run);
            if (out != NULL && n < cap)
                memcpy(out + n, run, MIN(r, cap - n));
            n += r;
            continue;
        }
        count++;
        if (p[1] != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            buf[0] = to[strchr(from, p[1]) - from];
            k = 1;
            p += 2;
        } else {
            uint32_t cp = (uint32_t)hex4(p + 2, end);
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)hex4(p + 2, end) - 0xDC00);
                p += 6;
            }
            if (cp < 0x80) {
                buf[0] = (char)cp;
                k = 1;
            } else if (cp < 0x800) {
                buf[0] = (char)(0xC0 | cp >> 6);
                buf[1] = (char)(0x80 | (cp & 0x3F));
                k = 2;
            } else if (cp < 0x10000) {
                buf[0] = (char)(0xE0 | cp >> 12);
                buf[1] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[2] = (char)(0x80 | (cp & 0x3F));
                k = 3;
            } else {
                buf[0] = (char)(0xF0 | cp >> 18);
                buf[1] = (char)(0x80 | (cp >> 12 & 0x3F));
                buf[2] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[3] = (char)(0x80 | (cp & 0x3F));
                k = 4;
            }
        }
        if (out != NULL && n < cap)
            memcpy(out + n, buf, MIN(k, cap - n));
        n += k;
    }
    if (chars != NULL)
        *chars = count;
    return n;
}

int64_t jscan_string_chars(struct jspan v)
{
    if (jscan_type(v) != JSCAN_STRING)
        return 0;
    int64_t chars;
    decode(v, NULL, 0, &chars);
    return chars;
}

size_t jscan_string(struct jspan v, char *out, size_t cap)
{
    return jscan_type(v) == JSCAN_STRING ? decode(v, out, cap, NULL) : 0;
}

bool jscan_number(struct jspan v, bool *is_int, int64_t *i, double *d)
{
    if (jscan_type(v) != JSCAN_NUMBER || v.len > NUMBER_MAX)
        return false;
    *is_int = memchr(v.p, '.', v.len) == NULL && memchr(v.p, 'e', v.len) == NULL &&
              memchr(v.p, 'E', v.len) == NULL;
    if (*is_int) {
        bool neg = v.p[0] == '-';
        int64_t n = 0;
        for (size_t k = neg; k < v.len; k++)
            n = n * 10 + (v.p[k] - '0'); /* at most 18 digits: no overflow */
        *i = neg ? -n : n;
        return true;
    }
    char buf[NUMBER_MAX + 1];
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    *d = strtod(buf, NULL);
    return true;
}
