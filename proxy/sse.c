/* sse.c - incremental text/event-stream parser: splits a relayed stream into
 * whole events (raw bytes + parsed name and data) for metering and filtering.
 *
 * Two ways of holding the event in progress:
 *   - direct: while a fed chunk holds whole events, they are parsed and
 *     delivered straight from the caller's buffer (no copy of the raw bytes);
 *   - buffered: an event that started in an earlier chunk lives in p->raw and
 *     is extended one line at a time, so every line is contiguous when parsed
 *     and each byte is scanned once however small the pieces are.
 * p->raw.len == 0 exactly when no byte of the next event has been consumed.
 *
 * A CR that ends a chunk may be the first half of a CRLF: the line it ends is
 * parsed at once, but if that line was the blank line closing an event the
 * event is held until the next byte shows whether an LF belongs to it, so the
 * raw bytes of every event end with its complete terminator.
 *
 * After overflow or a callback stop the parser keeps every byte it has not
 * delivered (including the rest of the chunk being fed) as pending, so
 * delivered raw + sse_pending() is always exactly the input fed so far; later
 * feeds return -1 without keeping anything (memory stays bounded while the
 * caller relays the rest of the stream itself). */
#include "common.h"

#include "sse.h"

#include <stdlib.h>
#include <string.h>

/* Above this capacity the raw buffer is released after its event is
 * delivered: most events are small and thousands of streams are open. */
#define SSE_KEEP_CAP 16384

struct sse_buf {
    char *p;
    size_t len, cap;
};

struct sse_parser {
    size_t max_event;
    sse_event_cb cb;
    void *arg;
    struct sse_buf raw;   /* buffered mode: bytes of the event in progress */
    size_t line_start;    /* offset in raw of the incomplete line */
    struct sse_buf data;  /* "data" values, each followed by '\n' */
    struct sse_buf event; /* last "event" value */
    bool after_cr;        /* the last byte consumed was a CR ending a line */
    bool dispatch_held;   /* that CR ended the blank line closing raw */
    bool first_line;      /* next line is the stream's first (BOM check) */
    bool stopped;         /* overflow or callback stop: feeds fail */
};

/* Next CR and LF at or after a position of one chunk, each found with memchr
 * once and remembered, so finding line ends is linear in the chunk. */
struct eol_finder {
    const char *d;
    size_t len;
    size_t cr, lf; /* position, len when none, SIZE_MAX when not searched */
};

static size_t find_byte(const char *d, size_t len, size_t from, char c)
{
    const char *q = memchr(d + from, c, len - from);
    return q == NULL ? len : (size_t)(q - d);
}

/* Position of the first CR or LF at or after from, len when none. */
static size_t eol_find(struct eol_finder *f, size_t from)
{
    if (f->cr == SIZE_MAX || (f->cr < from && f->cr != f->len))
        f->cr = find_byte(f->d, f->len, from, '\r');
    if (f->lf == SIZE_MAX || (f->lf < from && f->lf != f->len))
        f->lf = find_byte(f->d, f->len, from, '\n');
    return MIN(f->cr, f->lf);
}

MUST_CHECK static int buf_reserve(struct sse_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *np = realloc(b->p, cap);
    if (np == NULL)
        return -1;
    b->p = np;
    b->cap = cap;
    return 0;
}

MUST_CHECK static int buf_append(struct sse_buf *b, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (b->len > SIZE_MAX - n - 1 || buf_reserve(b, b->len + n + 1) == -1)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

struct sse_parser *sse_new(size_t max_event, sse_event_cb cb, void *arg)
{
    struct sse_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->max_event = max_event;
    p->cb = cb;
    p->arg = arg;
    p->first_line = true;
    return p;
}

void sse_free(struct sse_parser *p)
{
    if (p == NULL)
        return;
    free(p->raw.p);
    free(p->data.p);
    free(p->event.p);
    free(p);
}

const char *sse_pending(const struct sse_parser *p, size_t *len)
{
    *len = p->raw.len;
    return p->raw.len ? p->raw.p : "";
}

/* Parses one complete line (terminator excluded, len > 0). */
MUST_CHECK static int parse_line(struct sse_parser *p, const char *line, size_t len)
{
    if (p->first_line) {
        p->first_line = false;
        /* A UTF-8 byte order mark at the very start of the stream is not
         * part of the first field name. */
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
            if (len == 0)
                return 0;
        }
    }
    if (line[0] == ':')
        return 0; /* comment or keep-alive */
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (buf_append(&p->data, value, value_len) == -1 || buf_append(&p->data, "\n", 1) == -1)
            return -1;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        p->event.len = 0;
        if (buf_append(&p->event, value, value_len) == -1)
            return -1;
    }
    /* id, retry and unknown fields do not matter for metering; their bytes
     * stay in the raw event. */
    return 0;
}

/* Delivers one event whose raw bytes are given and resets the field state.
 * Returns the callback's verdict, or -1 on allocation failure. */
MUST_CHECK static int dispatch(struct sse_parser *p, const char *raw, size_t raw_len)
{
    /* Every data line added a '\n'; the last one is not part of the data. */
    if (p->data.len > 0)
        p->data.len--;
    if (buf_reserve(&p->data, p->data.len + 1) == -1 ||
        buf_reserve(&p->event, p->event.len + 1) == -1)
        return -1;
    p->data.p[p->data.len] = '\0';
    p->event.p[p->event.len] = '\0';
    struct sse_event ev = {
        .raw = raw,
        .raw_len = raw_len,
        .event = p->event.p,
        .data = p->data.p,
        .data_len = p->data.len,
    };
    int rc = p->cb(p->arg, &ev);
    p->data.len = 0;
    p->event.len = 0;
    return rc == 0 ? 0 : -1;
}

/* Empties the raw buffer after its event was delivered. */
static void raw_reset(struct sse_parser *p)
{
    p->raw.len = 0;
    p->line_start = 0;
    if (p->raw.cap > SSE_KEEP_CAP) {
        free(p->raw.p);
        p->raw.p = NULL;
        p->raw.cap = 0;
    }
}

/* Stops the parser, keeping rest (not delivered) after what raw holds. */
static int stop(struct sse_parser *p, const char *rest, size_t n)
{
    p->stopped = true;
    p->after_cr = false;
    p->dispatch_held = false;
    /* If this allocation fails the pending bytes are incomplete; the caller
     * is relaying anyway and nothing better can be done without memory. */
    if (buf_append(&p->raw, rest, n) == -1)
        log_warn("sse: out of memory keeping %zu pending bytes", n);
    return -1;
}

/* Length of the line terminator at d[t] (a CR or LF), and whether it is a CR
 * ending the chunk, whose LF may still come. */
static size_t eol_len(const char *d, size_t len, size_t t, bool *cr_at_end)
{
    *cr_at_end = false;
    if (d[t] == '\n')
        return 1;
    if (t + 1 < len)
        return d[t + 1] == '\n' ? 2 : 1;
    *cr_at_end = true;
    return 1;
}

/* Buffered mode: extends raw by one line (or the rest of the chunk) from
 * d[*pos..len). */
MUST_CHECK static int feed_buffered(struct sse_parser *p, struct eol_finder *f, size_t *pos)
{
    const char *d = f->d;
    size_t len = f->len;
    size_t t = eol_find(f, *pos);
    if (t == len) {
        if (len - *pos > p->max_event - MIN(p->max_event, p->raw.len))
            return stop(p, d + *pos, len - *pos);
        if (buf_append(&p->raw, d + *pos, len - *pos) == -1)
            return stop(p, d + *pos, len - *pos);
        *pos = len;
        return 0;
    }
    bool cr_at_end;
    size_t next = t + eol_len(d, len, t, &cr_at_end);
    if (next - *pos > p->max_event - MIN(p->max_event, p->raw.len) ||
        buf_append(&p->raw, d + *pos, next - *pos) == -1)
        return stop(p, d + *pos, len - *pos);
    size_t line_len = p->raw.len - (next - t) - p->line_start;
    const char *line = p->raw.p + p->line_start;
    *pos = next;
    p->line_start = p->raw.len;
    if (line_len > 0) {
        if (parse_line(p, line, line_len) == -1)
            return stop(p, d + next, len - next);
        p->after_cr = cr_at_end;
        return 0;
    }
    p->first_line = false;
    if (cr_at_end) {
        p->after_cr = true;
        p->dispatch_held = true;
        return 0;
    }
    if (dispatch(p, p->raw.p, p->raw.len) == -1) {
        /* The event was delivered: only the rest stays pending. */
        raw_reset(p);
        return stop(p, d + next, len - next);
    }
    raw_reset(p);
    return 0;
}

/* Direct mode: parses events straight out of the chunk from *pos; the first
 * incomplete event is copied into raw (switching to buffered mode). */
MUST_CHECK static int feed_direct(struct sse_parser *p, struct eol_finder *f, size_t *pos)
{
    const char *d = f->d;
    size_t len = f->len;
    size_t ev_start = *pos;
    size_t ls = *pos;
    for (;;) {
        size_t t = eol_find(f, ls);
        if (t == len) {
            if (len - ev_start > p->max_event)
                return stop(p, d + ev_start, len - ev_start);
            if (buf_append(&p->raw, d + ev_start, len - ev_start) == -1)
                return stop(p, d + ev_start, len - ev_start);
            p->line_start = ls - ev_start;
            *pos = len;
            return 0;
        }
        bool cr_at_end;
        size_t next = t + eol_len(d, len, t, &cr_at_end);
        if (next - ev_start > p->max_event)
            return stop(p, d + ev_start, len - ev_start);
        if (t > ls) {
            if (parse_line(p, d + ls, t - ls) == -1)
                return stop(p, d + ev_start, len - ev_start);
        } else {
            p->first_line = false;
        }
        if (cr_at_end) {
            /* Hold the event (and the state) until the next chunk. */
            if (buf_append(&p->raw, d + ev_start, next - ev_start) == -1)
                return stop(p, d + ev_start, len - ev_start);
            p->line_start = p->raw.len;
            p->after_cr = true;
            p->dispatch_held = (t == ls);
            *pos = next;
            return 0;
        }
        if (t == ls) {
            *pos = next;
            if (dispatch(p, d + ev_start, next - ev_start) == -1)
                return stop(p, d + next, len - next);
            return 0;
        }
        ls = next;
    }
}

int sse_feed(struct sse_parser *p, const char *data, size_t len)
{
    if (p->stopped)
        return -1; /* pending stays what it was when the parser stopped */
    size_t pos = 0;
    if (len > 0 && p->after_cr) {
        p->after_cr = false;
        if (data[0] == '\n') {
            /* Second half of a CRLF split across chunks: not a new line. */
            if (p->raw.len >= p->max_event)
                return stop(p, data, len);
            if (buf_append(&p->raw, data, 1) == -1)
                return stop(p, data, len);
            p->line_start = p->raw.len;
            pos = 1;
        }
        if (p->dispatch_held) {
            p->dispatch_held = false;
            int rc = dispatch(p, p->raw.p, p->raw.len);
            raw_reset(p);
            if (rc == -1)
                return stop(p, data + pos, len - pos);
        }
    }
    struct eol_finder f = {.d = data, .len = len, .cr = SIZE_MAX, .lf = SIZE_MAX};
    while (pos < len) {
        int rc = p->raw.len > 0 ? feed_buffered(p, &f, &pos) : feed_direct(p, &f, &pos);
        if (rc == -1)
            return -1;
    }
    return 0;
}
