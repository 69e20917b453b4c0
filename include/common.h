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

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t now_ms(void);
/* Milliseconds from CLOCK_MONOTONIC, for durations and deadlines. */
int64_t mono_ms(void);

#endif
