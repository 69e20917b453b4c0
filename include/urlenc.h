/* urlenc.h - the one query-string iterator and percent-decoder of the proxy
 * (RFC 3986 §2.1, application/x-www-form-urlencoded for '+'): routing reads
 * credential names and the model from queries with it, the admin API its
 * filters. Pure functions over byte ranges: no allocation, fuzzed. */
#ifndef BYOK_URLENC_H
#define BYOK_URLENC_H

#include "common.h"

/* Value of a hexadecimal digit, -1 when c is not one. The proxy's one hex
 * digit reader: percent escapes here, chunk sizes in httpparse.c. Inline
 * because the chunked decoder calls it per byte. */
static inline int urlenc_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into out (NUL-terminated): "%XX" is a byte, and with
 * plus_space '+' is a space. Returns the decoded length, or -1 when an
 * escape is malformed, the result holds a NUL or a control byte (when
 * no_controls), or out_size is too small. */
MUST_CHECK int urlenc_decode(const char *s, size_t len, bool plus_space, bool no_controls,
                             char *out, size_t out_size);

/* Percent-encodes s into out (NUL-terminated): every byte outside RFC 3986's
 * unreserved set becomes "%XX". Returns the length, or -1 when out_size is
 * too small (out is then ""). */
MUST_CHECK int urlenc_encode(const char *s, char *out, size_t out_size);

/* Walks the "name=value&..." pairs of a query (without '?'). Empty pairs
 * ("&&") are skipped; a pair without '=' has an empty value (value_len 0,
 * has_value false). Names and values are raw (still encoded). */
struct urlenc_query {
    const char *cur; /* private */
    const char *end; /* private */
};

struct urlenc_pair {
    const char *raw; /* the whole pair as written */
    size_t raw_len;
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    bool has_value;
};

void urlenc_query_init(struct urlenc_query *it, const char *query, size_t len);
bool urlenc_query_next(struct urlenc_query *it, struct urlenc_pair *out);

/* True when the pair's name, percent-decoded ('+' as space), equals name
 * without regard to ASCII case. A name that does not decode compares
 * unequal to every name. */
bool urlenc_name_is(const struct urlenc_pair *pair, const char *name);

/* The decoded value of the first parameter called name (as urlenc_name_is
 * matches it) copied into out; 0 when found and it fits, -1 otherwise (out
 * is then ""). */
MUST_CHECK int urlenc_query_get(const char *query, size_t len, const char *name, char *out,
                                size_t out_size);

#endif
