/* common.h - macros every module uses; included first in every .c file. */
#ifndef BYOK_COMMON_H
#define BYOK_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MUST_CHECK        __attribute__((warn_unused_result))
#define UNUSED            __attribute__((unused))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define MAX(a, b)                       ((a) > (b) ? (a) : (b))

/* Sizes of the fixed string fields used in records and caches. Longer client
 * supplied values are truncated (and never used as identifiers). */
#define ID_MAX      64  /* tenant ids, key ids, connection ids, record ids */
#define SESSION_MAX 128 /* X-Session-Id */
#define MODEL_MAX   96
#define PATH_MAX_   256 /* endpoint path recorded in usage (no query) */

#include "log.h"

#include <string.h>

/* Writes v in decimal to out (at least 21 bytes), no NUL; returns the
 * number of digits. */
static inline size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* FNV-1a 64 of a string's bytes, continuing h (FNV1A_INIT to start): the
 * hash of the proxy's small open-addressing tables and file names. */
#define FNV1A_INIT  14695981039346656037ULL
#define FNV1A_PRIME 1099511628211ULL
static inline uint64_t fnv1a_add(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        h = (h ^ *p) * FNV1A_PRIME;
    return h;
}

/* Copies src (NULL: "") into dst[size], truncated, always NUL-terminated:
 * what snprintf(dst, size, "%s", src) did on the hot path, without the
 * format machinery. size must be > 0. */
static inline void str_copy(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    if (src != NULL)
        while (n + 1 < size && src[n] != '\0')
            n++;
    memmove(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t now_ms(void);
/* Milliseconds from CLOCK_MONOTONIC, for durations and deadlines. */
int64_t mono_ms(void);

#endif
