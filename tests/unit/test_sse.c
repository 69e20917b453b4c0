/* test_sse.c - unit tests of the incremental SSE parser: line endings, fields,
 * splits at every position, the raw concatenation property, overflow. */
#include "common.h"

#include "sse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_EVENTS 64

/* What the callback saw. */
struct seen {
    int n;
    char *event[MAX_EVENTS];
    char *data[MAX_EVENTS];
    size_t data_len[MAX_EVENTS];
    char *raw_each[MAX_EVENTS];
    char *raw; /* all raw bytes delivered, in order */
    size_t raw_len;
    int stop_after; /* callback returns -1 on this event number (1-based), 0 never */
};

static char *dup_mem(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int collect(void *arg, const struct sse_event *ev)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_EVENTS);
    /* The parsed strings are NUL-terminated where the header says so. */
    assert_int_equal(ev->data[ev->data_len], '\0');
    s->event[s->n] = strdup(ev->event);
    s->data[s->n] = dup_mem(ev->data, ev->data_len);
    s->data_len[s->n] = ev->data_len;
    s->raw_each[s->n] = dup_mem(ev->raw, ev->raw_len);
    s->raw = realloc(s->raw, s->raw_len + ev->raw_len + 1);
    assert_non_null(s->raw);
    memcpy(s->raw + s->raw_len, ev->raw, ev->raw_len);
    s->raw_len += ev->raw_len;
    s->n++;
    return s->n == s->stop_after ? -1 : 0;
}

static void seen_free(struct seen *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->event[i]);
        free(s->data[i]);
        free(s->raw_each[i]);
    }
    free(s->raw);
    memset(s, 0, sizeof(*s));
}

/* Feeds input in pieces whose ends are given by cuts (ascending, < len),
 * checks the concatenation property, and returns the last sse_feed result. */
static int feed_cuts(struct seen *s, size_t max_event, const char *in, size_t len,
                     const size_t *cuts, size_t n_cuts)
{
    struct sse_parser *p = sse_new(max_event, collect, s);
    assert_non_null(p);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i <= n_cuts && rc == 0; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        rc = sse_feed(p, in + at, end - at);
        at = end;
    }
    size_t plen;
    const char *pend = sse_pending(p, &plen);
    /* Everything fed up to the last accepted or failing call. */
    assert_int_equal(s->raw_len + plen, at);
    if (s->raw_len > 0)
        assert_memory_equal(s->raw, in, s->raw_len);
    if (plen > 0)
        assert_memory_equal(pend, in + s->raw_len, plen);
    sse_free(p);
    return rc;
}

static int feed_whole(struct seen *s, const char *in)
{
    return feed_cuts(s, 1 << 20, in, strlen(in), NULL, 0);
}

static void assert_same_events(const struct seen *a, const struct seen *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_string_equal(a->event[i], b->event[i]);
        assert_int_equal(a->data_len[i], b->data_len[i]);
        assert_memory_equal(a->data[i], b->data[i], a->data_len[i]);
        assert_string_equal(a->raw_each[i], b->raw_each[i]);
    }
}

static void test_basic_fields(void **state)
{
    (void)state;
    struct seen s = {0};
    const char *in = "data: hello\n\n"
                     "event: response.completed\ndata: {\"a\":1}\n\n"
                     ": keep-alive\n\n"
                     "data: line1\ndata:line2\ndata:  two spaces\n\n"
                     "id: 7\nretry: 100\ndata\n\n"
                     "data: tail";
    assert_int_equal(feed_whole(&s, in), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.event[0], "");
    assert_string_equal(s.data[0], "hello");
    assert_string_equal(s.raw_each[0], "data: hello\n\n");
    assert_string_equal(s.event[1], "response.completed");
    assert_string_equal(s.data[1], "{\"a\":1}");
    /* A comment-only event is delivered with no data so it can be relayed. */
    assert_int_equal(s.data_len[2], 0);
    assert_string_equal(s.raw_each[2], ": keep-alive\n\n");
    assert_string_equal(s.data[3], "line1\nline2\n two spaces");
    /* "data" without a colon is a data line with an empty value. */
    assert_int_equal(s.data_len[4], 0);
    assert_string_equal(s.raw_each[4], "id: 7\nretry: 100\ndata\n\n");
    seen_free(&s);
}

static void test_line_endings(void **state)
{
    (void)state;
    const char *variants[] = {
        "event: a\ndata: x\ndata: y\n\ndata: z\n\n",
        "event: a\r\ndata: x\r\ndata: y\r\n\r\ndata: z\r\n\r\n",
        "event: a\rdata: x\rdata: y\r\rdata: z\r\r",
        "event: a\r\ndata: x\rdata: y\n\r\ndata: z\r\r\n",
    };
    for (size_t v = 0; v < ARRAY_SIZE(variants); v++) {
        /* The trailing comment starts a next event, so a final CR is known
         * not to be half of a CRLF (see test_crlf_split for the hold). */
        char in[128];
        snprintf(in, sizeof(in), "%s:more", variants[v]);
        struct seen s = {0};
        assert_int_equal(feed_whole(&s, in), 0);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.event[0], "a");
        assert_string_equal(s.data[0], "x\ny");
        assert_string_equal(s.event[1], "");
        assert_string_equal(s.data[1], "z");
        seen_free(&s);
    }
}

/* Every two-piece and three-piece split gives the same events as one feed. */
static void test_split_every_position(void **state)
{
    (void)state;
    const char *inputs[] = {
        "event: a\r\ndata: x\r\ndata: y\r\n\r\n: c\r\n\r\ndata: z\r\n\r\n",
        "event: a\rdata: x\rdata: y\r\r:c\r\rdata: z\r\r",
        "data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
        ("\xEF\xBB\xBF"
         "data: bom\n\n\n\ndata: q\r\n\r\n"),
    };
    for (size_t v = 0; v < ARRAY_SIZE(inputs); v++) {
        const char *in = inputs[v];
        size_t len = strlen(in);
        struct seen whole = {0};
        assert_int_equal(feed_whole(&whole, in), 0);
        for (size_t i = 1; i < len; i++) {
            for (size_t j = i; j < len; j++) {
                size_t cuts[2] = {i, j};
                struct seen s = {0};
                assert_int_equal(feed_cuts(&s, 1 << 20, in, len, cuts, 2), 0);
                assert_same_events(&whole, &s);
                seen_free(&s);
            }
        }
        seen_free(&whole);
    }
}

/* A CRLF split between CR and LF is one line end: no extra empty line, no
 * extra event, and the held event's raw ends with the LF. */
static void test_crlf_split(void **state)
{
    (void)state;
    const char *in = "data: a\r\n\r\ndata: b\r\n\r\n";
    size_t len = strlen(in);
    size_t cuts[] = {8, 11, 19, 22};
    struct seen s = {0};
    assert_int_equal(feed_cuts(&s, 1024, in, len, cuts, ARRAY_SIZE(cuts)), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.raw_each[0], "data: a\r\n\r\n");
    assert_string_equal(s.raw_each[1], "data: b\r\n\r\n");
    seen_free(&s);

    /* A CR-terminated event is delivered once the next byte shows it is not
     * a CRLF. */
    struct seen t = {0};
    struct sse_parser *p = sse_new(1024, collect, &t);
    assert_non_null(p);
    assert_int_equal(sse_feed(p, "data: a\r\r", 9), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(sse_feed(p, "d", 1), 0);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.raw_each[0], "data: a\r\r");
    assert_string_equal(t.data[0], "a");
    size_t plen;
    const char *pend = sse_pending(p, &plen);
    assert_int_equal(plen, 1);
    assert_memory_equal(pend, "d", 1);
    sse_free(p);
    seen_free(&t);
}

/* Counting collector for long streams: only concatenates raw. */
struct concat {
    char *raw;
    size_t len;
    size_t events;
    size_t data_bytes;
};

static int concat_cb(void *arg, const struct sse_event *ev)
{
    struct concat *c = arg;
    memcpy(c->raw + c->len, ev->raw, ev->raw_len);
    c->len += ev->raw_len;
    c->events++;
    c->data_bytes += ev->data_len;
    return 0;
}

static void run_concat(const char *in, size_t len, unsigned *seed, size_t max_step,
                       struct concat *c)
{
    c->raw = malloc(len + 1);
    assert_non_null(c->raw);
    c->len = 0;
    c->events = 0;
    c->data_bytes = 0;
    struct sse_parser *p = sse_new(1 << 20, concat_cb, c);
    assert_non_null(p);
    size_t at = 0;
    while (at < len) {
        *seed = *seed * 1103515245u + 12345u;
        size_t step = 1 + (*seed >> 16) % max_step;
        step = MIN(step, len - at);
        assert_int_equal(sse_feed(p, in + at, step), 0);
        at += step;
    }
    size_t plen;
    const char *pend = sse_pending(p, &plen);
    assert_int_equal(c->len + plen, len);
    assert_memory_equal(c->raw, in, c->len);
    assert_memory_equal(pend, in + c->len, plen);
    sse_free(p);
}

static void test_concatenation_property(void **state)
{
    (void)state;
    static const char *const parts[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "event: response.output_text.delta\r\ndata: {\"delta\":\"x\"}\r\n\r\n",
        ": ping\r\r",
        "id: 1\rdata: a\rdata: b\r\r",
        "\n",
        "\r",
        "data:\n\n",
        "retry: 10\r\n\r\n",
        "data: no end yet",
    };
    size_t cap = 1 << 16;
    char *in = malloc(cap);
    assert_non_null(in);
    unsigned seed = 42;
    size_t len = 0;
    while (len < cap - 128) {
        seed = seed * 1103515245u + 12345u;
        const char *pt = parts[(seed >> 16) % ARRAY_SIZE(parts)];
        memcpy(in + len, pt, strlen(pt));
        len += strlen(pt);
    }
    struct concat ref;
    unsigned s0 = 1;
    run_concat(in, len, &s0, len, &ref); /* mostly large pieces */
    for (int round = 0; round < 50; round++) {
        struct concat c;
        run_concat(in, len, &seed, round % 3 == 0 ? 2 : (round % 3 == 1 ? 17 : 4096), &c);
        /* Same events however the stream was cut. */
        assert_int_equal(c.events, ref.events);
        assert_int_equal(c.data_bytes, ref.data_bytes);
        assert_int_equal(c.len, ref.len);
        free(c.raw);
    }
    free(ref.raw);
    free(in);
}

static void test_blank_lines_only(void **state)
{
    (void)state;
    struct seen s = {0};
    assert_int_equal(feed_whole(&s, "\n\r\n\rdata: x\n\n"), 0);
    /* Each stray blank line is an empty event, then the real one. */
    assert_int_equal(s.n, 4);
    assert_int_equal(s.data_len[0], 0);
    assert_string_equal(s.raw_each[1], "\r\n");
    assert_string_equal(s.data[3], "x");
    seen_free(&s);
}

static void test_overflow(void **state)
{
    (void)state;
    /* An event of exactly max_event bytes is fine; one more byte is not. */
    const char *ok = "data: 12345\n\n"; /* 13 bytes */
    struct seen s = {0};
    assert_int_equal(feed_cuts(&s, 13, ok, strlen(ok), NULL, 0), 0);
    assert_int_equal(s.n, 1);
    seen_free(&s);

    const char *big = "data: 1\n\ndata: 123456\n\ndata: 2\n\n";
    size_t len = strlen(big);
    /* In one piece, and split inside the big event. */
    size_t cuts[] = {12, 15};
    for (size_t k = 0; k < 2; k++) {
        struct seen t = {0};
        assert_int_equal(feed_cuts(&t, 13, big, len, cuts, k ? 2 : 0), -1);
        assert_int_equal(t.n, 1);
        assert_string_equal(t.data[0], "1");
        seen_free(&t);
    }
    /* After overflow the parser stays stopped. */
    struct seen u = {0};
    struct sse_parser *p = sse_new(4, collect, &u);
    assert_non_null(p);
    assert_int_equal(sse_feed(p, "data: x", 7), -1);
    assert_int_equal(sse_feed(p, "\n\n", 2), -1);
    assert_int_equal(u.n, 0);
    size_t plen;
    (void)sse_pending(p, &plen);
    assert_int_equal(plen, 7);
    sse_free(p);
    seen_free(&u);
}

static void test_callback_stop(void **state)
{
    (void)state;
    struct seen s = {.stop_after = 2};
    const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    /* feed_cuts checks that the third event is kept pending, undelivered. */
    assert_int_equal(feed_cuts(&s, 1024, in, strlen(in), NULL, 0), -1);
    assert_int_equal(s.n, 2);
    seen_free(&s);
}

/* An event arriving one byte at a time costs linear time: a quadratic
 * rescan of a 4 MiB event would not finish within the test timeout. */
static void test_large_event_byte_by_byte(void **state)
{
    (void)state;
    size_t n = 4u << 20;
    char *in = malloc(n + 16);
    assert_non_null(in);
    memcpy(in, "data: ", 6);
    memset(in + 6, 'x', n);
    memcpy(in + 6 + n, "\r\n\r\n", 4);
    size_t len = n + 10;
    struct concat c = {.raw = malloc(len)};
    assert_non_null(c.raw);
    struct sse_parser *p = sse_new(len, concat_cb, &c);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(sse_feed(p, in + i, 1), 0);
    assert_int_equal(c.events, 1);
    assert_int_equal(c.data_bytes, n);
    assert_int_equal(c.len, len);
    sse_free(p);
    free(c.raw);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_fields),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_split_every_position),
        cmocka_unit_test(test_crlf_split),
        cmocka_unit_test(test_concatenation_property),
        cmocka_unit_test(test_blank_lines_only),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_large_event_byte_by_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
