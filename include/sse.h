/* sse.h - incremental Server-Sent Events parser (WHATWG event-stream rules)
 * used for metering and for filtering whole events out of a relayed stream.
 *
 * Bytes are fed as they arrive; each complete event (terminated by an empty
 * line; CRLF, LF and CR line endings all accepted) is delivered with its raw
 * bytes (exactly as received, including the terminating empty line) so a
 * caller can forward or drop it unchanged, plus the parsed `event` name and
 * the `data` lines joined with '\n'. Comment lines (":...") are part of the
 * raw bytes; an event with no data and no event field (e.g. only a comment) is
 * still delivered with data_len 0 so its raw bytes can be forwarded. */
#ifndef BYOK_SSE_H
#define BYOK_SSE_H

#include "common.h"

struct sse_event {
    const char *raw; /* borrowed until the callback returns */
    size_t raw_len;
    const char *event; /* "" when absent; NUL-terminated */
    const char *data;  /* NUL-terminated; data lines joined with '\n' */
    size_t data_len;
};

/* Return 0 to continue, -1 to stop parsing (sse_feed then returns -1). */
typedef int (*sse_event_cb)(void *arg, const struct sse_event *ev);

struct sse_parser; /* opaque */

/* max_event: an event larger than this is an overflow: sse_feed returns -1
 * and the parser stops (the caller keeps relaying but stops metering).
 * Caller frees with sse_free(). */
MUST_CHECK struct sse_parser *sse_new(size_t max_event, sse_event_cb cb, void *arg);
void sse_free(struct sse_parser *p);
/* Returns 0, or -1 on overflow or when the callback stopped. */
MUST_CHECK int sse_feed(struct sse_parser *p, const char *data, size_t len);
/* Bytes received that are not part of a complete event yet (raw). Used when
 * a stream ends without a final blank line: the caller forwards them as-is. */
const char *sse_pending(const struct sse_parser *p, size_t *len);

#endif
