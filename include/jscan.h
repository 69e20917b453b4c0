/* jscan.h - an allocation-free reader of JSON text for the request path.
 *
 * The meters read a few members of each request and reply (a model, a
 * stream flag, prompt text, a usage object). Building a jansson tree for
 * that cost a worker ~11 % of its CPU (a node, a hash table and a wiped
 * free per value). This reader answers the same questions from the bytes.
 *
 * It is a fast path in front of jansson, not a second JSON parser with
 * opinions of its own: jscan_check() accepts only text that jansson
 * (json_loadb, flags 0) parses, and only what this reader answers exactly
 * as jansson's tree would. For anything else - invalid JSON, and valid
 * JSON beyond its limits (nesting over JSCAN_DEPTH, a key with an escape,
 * "\u0000", an integer over 18 digits, a number over 64 characters or with
 * an exponent over two digits) - it says "unsure" and the caller parses
 * with jansson as before. After a check the readers below are exact:
 * a member is the last one of its name (jansson keeps the last duplicate),
 * strings decode as jansson decodes them. tests/unit/test_jscan.c and
 * tests/fuzz/fuzz_jscan.c compare both on every value.
 *
 * Spans point into the caller's text and are valid while it is. */
#ifndef BYOK_JSCAN_H
#define BYOK_JSCAN_H

#include "common.h"

#define JSCAN_DEPTH 64 /* deeper nesting: unsure */

/* One JSON value's bytes (no surrounding blanks); p == NULL: none. */
struct jspan {
    const char *p;
    size_t len;
};

enum jscan_type {
    JSCAN_NONE = 0, /* an absent value */
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL,
};

/* true when s[0..len) is one object or array (blanks around it allowed)
 * that jansson parses and this reader answers for; *root is that value.
 * false: unsure, parse with jansson. */
MUST_CHECK bool jscan_check(const char *s, size_t len, struct jspan *root);
/* As jscan_check for the value that starts s; what follows it is not
 * looked at (jansson's JSON_DISABLE_EOF_CHECK). */
MUST_CHECK bool jscan_check_prefix(const char *s, size_t len, struct jspan *value);

/* The readers take values of a checked text. */
enum jscan_type jscan_type(struct jspan v);
/* The last member named key of an object; none when v is not an object or
 * has no such member. */
struct jspan jscan_get(struct jspan obj, const char *key);
/* Object members in order, duplicates included: start with *pos = 0;
 * *key is the name's bytes (a checked name holds no escape). false after
 * the last one (or when v is not an object). */
bool jscan_next_member(struct jspan obj, size_t *pos, struct jspan *key, struct jspan *value);
/* Array elements in order: start with *pos = 0; false after the last one
 * (or when v is not an array). */
bool jscan_next(struct jspan arr, size_t *pos, struct jspan *elem);
/* Code points of a string's decoded text (0 for anything else). */
int64_t jscan_string_chars(struct jspan v);
/* A string's decoded bytes, up to cap of them, into out; returns the
 * whole decoded length (0 for anything else). No terminating NUL. */
size_t jscan_string(struct jspan v, char *out, size_t cap);
/* A number: *is_int as jansson's json_is_integer, *i its value when it is
 * one, else *d the value jansson's strtod gives. false for a non-number. */
bool jscan_number(struct jspan v, bool *is_int, int64_t *i, double *d);

#endif
