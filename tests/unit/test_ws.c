/* test_ws.c - unit tests for the WebSocket module: RFC 6455 examples, every
 * protocol error of the frame parser, split-independence, UTF-8 validation,
 * the frame writer and masking, and the opening-handshake checks. */
#include "common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpparse.h"
#include "ws.h"

/* ---- recorder: what the parser delivered ---- */

#define REC_MAX_EVENTS 512
#define REC_BUF_CAP    (1u << 20)

struct rec_event {
    struct ws_event ev; /* data/reason pointers are not kept valid */
    size_t off;         /* payload bytes in rec.buf */
};

struct rec {
    struct rec_event ev[REC_MAX_EVENTS];
    size_t n;
    uint8_t *buf; /* every payload byte delivered, in order */
    size_t buf_len;
    /* A split-independent summary: frame boundaries, control events and
     * payload bytes, but not where data chunks were cut. */
    uint8_t *script;
    size_t script_len;
    bool stop_every; /* make the callback ask to stop after each event */
};

static void script_add(struct rec *r, const void *p, size_t n)
{
    assert_true(r->script_len + n <= REC_BUF_CAP);
    memcpy(r->script + r->script_len, p, n);
    r->script_len += n;
}

static int on_event(void *arg, const struct ws_event *ev)
{
    struct rec *r = arg;
    assert_true(r->buf_len + ev->len <= REC_BUF_CAP);
    /* Byte-by-byte runs make many events: keep the first ones, count all. */
    if (r->n < REC_MAX_EVENTS) {
        r->ev[r->n].ev = *ev;
        r->ev[r->n].off = r->buf_len;
    }
    r->n++;
    if (ev->len > 0)
        memcpy(r->buf + r->buf_len, ev->data, ev->len);
    r->buf_len += ev->len;

    uint8_t tag[4] = {(uint8_t)ev->type, 0, 0, 0};
    if (ev->type == WS_EVENT_DATA) {
        if (ev->flags & WS_CHUNK_FRAME_START) {
            tag[1] = (uint8_t)ev->frame_opcode;
            tag[2] = (uint8_t)ev->opcode;
            tag[3] = (uint8_t)((ev->fin ? 1 : 0) | ((ev->flags & WS_CHUNK_MSG_START) ? 2 : 0));
            script_add(r, "S", 1);
            script_add(r, tag, 4);
            script_add(r, &ev->frame_len, sizeof(ev->frame_len));
        }
        script_add(r, ev->data, ev->len);
        if (ev->flags & WS_CHUNK_FRAME_END)
            script_add(r, (ev->flags & WS_CHUNK_MSG_END) ? "M" : "E", 1);
    } else {
        script_add(r, "C", 1);
        script_add(r, tag, 4);
        script_add(r, &ev->close_code, sizeof(ev->close_code));
        script_add(r, &ev->len, sizeof(ev->len));
        script_add(r, ev->data, ev->len);
    }
    return r->stop_every ? 1 : 0;
}

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->buf = malloc(REC_BUF_CAP);
    r->script = malloc(REC_BUF_CAP);
    assert_non_null(r->buf);
    assert_non_null(r->script);
    return r;
}

static void rec_free(struct rec *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r->script);
    free(r);
}

struct run {
    enum ws_status status;
    int code;        /* ws_parser_error() */
    const char *why; /* ws_parser_error() */
    size_t consumed; /* total over all feeds */
};

/* Parses a copy of in[0..len) (the parser unmasks in place) fed in pieces
 * of `step` bytes (0 = all at once), resuming after WS_STOPPED. */
static struct run run_split(const struct ws_parser_options *opt, const uint8_t *in, size_t len,
                            size_t step, struct rec *r)
{
    struct ws_parser p;
    struct run out = {0};
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, in, len);
    ws_parser_init(&p, opt, on_event, r);
    size_t at = 0;
    enum ws_status rc = WS_MORE;
    while (at < len) {
        size_t n = step == 0 ? len - at : MIN(step, len - at);
        size_t used = 0;
        rc = ws_parser_feed(&p, copy + at, n, &used);
        assert_true(used <= n);
        at += used;
        if (rc == WS_CLOSED || rc == WS_ERROR)
            break;
        if (rc == WS_MORE)
            assert_int_equal(used, n);
    }
    /* Stopped on the last event: the parser has nothing left to say. */
    if (rc == WS_STOPPED && at == len) {
        size_t used = 1;
        rc = ws_parser_feed(&p, copy + at, 0, &used);
        assert_int_equal(used, 0);
    }
    out.status = rc;
    out.code = ws_parser_error(&p, &out.why);
    out.consumed = at;
    free(copy);
    return out;
}

static struct run run_all(const struct ws_parser_options *opt, const uint8_t *in, size_t len,
                          struct rec *r)
{
    return run_split(opt, in, len, 0, r);
}

static const struct ws_parser_options server_opt = {.role = WS_ROLE_SERVER};
static const struct ws_parser_options client_opt = {.role = WS_ROLE_CLIENT};
static const struct ws_parser_options client_utf8 = {.role = WS_ROLE_CLIENT, .validate_utf8 = true};

/* Appends one frame (built with the writer) to out; returns the new length. */
static size_t put_frame(uint8_t *out, size_t at, int opcode, bool fin, const void *payload,
                        size_t len, bool mask)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = ws_frame_header(out + at, opcode, fin, len, mask, key);
    assert_true(h >= 2);
    if (len > 0)
        memcpy(out + at + h, payload, len);
    if (mask)
        ws_mask(out + at + h, len, key, 0);
    return at + h + len;
}

/* Expects a protocol error with this close code, fed whole and byte by byte. */
static void expect_error(const struct ws_parser_options *opt, const uint8_t *in, size_t len,
                         int code)
{
    for (size_t step = 0; step <= 1; step++) {
        struct rec *r = rec_new();
        struct run res = run_split(opt, in, len, step, r);
        if (res.status != WS_ERROR)
            fail_msg("step %zu: expected WS_ERROR %d, got status %d", step, code, res.status);
        assert_int_equal(res.code, code);
        assert_non_null(res.why);
        assert_true(strlen(res.why) <= WS_CLOSE_REASON_MAX);
        assert_true(res.why < (const char *)in || res.why >= (const char *)in + len);
        rec_free(r);
    }
}

/* The same input fed whole, byte by byte, in a few odd step sizes and with a
 * callback that stops after every event must give the same summary. */
static void expect_split_independent(const struct ws_parser_options *opt, const uint8_t *in,
                                     size_t len)
{
    struct rec *whole = rec_new();
    struct run a = run_all(opt, in, len, whole);
    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64, 1000};
    for (size_t i = 0; i <= ARRAY_SIZE(steps); i++) {
        struct rec *r = rec_new();
        r->stop_every = i == ARRAY_SIZE(steps);
        struct run b = run_split(opt, in, len, i < ARRAY_SIZE(steps) ? steps[i] : 0, r);
        assert_int_equal(a.status, b.status);
        assert_int_equal(a.code, b.code);
        if (a.status != WS_ERROR)
            assert_int_equal(a.consumed, b.consumed);
        assert_int_equal(whole->script_len, r->script_len);
        assert_memory_equal(whole->script, r->script, whole->script_len);
        rec_free(r);
    }
    rec_free(whole);
}

/* ---- RFC 6455 §5.7 examples ---- */

static void test_rfc_unmasked_hello(void **state)
{
    (void)state;
    const uint8_t in[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    struct rec *r = rec_new();
    struct run res = run_all(&client_utf8, in, sizeof(in), r);
    assert_int_equal(res.status, WS_MORE);
    assert_int_equal(res.consumed, sizeof(in));
    assert_int_equal(r->n, 1);
    const struct ws_event *ev = &r->ev[0].ev;
    assert_int_equal(ev->type, WS_EVENT_DATA);
    assert_int_equal(ev->opcode, WS_OP_TEXT);
    assert_int_equal(ev->frame_opcode, WS_OP_TEXT);
    assert_true(ev->fin);
    assert_int_equal(ev->flags, WS_CHUNK_FRAME_START | WS_CHUNK_FRAME_END | WS_CHUNK_MSG_START |
                                    WS_CHUNK_MSG_END);
    assert_int_equal(ev->frame_len, 5);
    assert_int_equal(ev->len, 5);
    assert_memory_equal(r->buf, "Hello", 5);
    rec_free(r);
    /* The server must refuse it: client frames are masked. */
    expect_error(&server_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
}

static int on_event_check_in_place(void *arg, const struct ws_event *ev)
{
    const uint8_t *in = arg;
    /* Zero copy: the payload is the caller's buffer, unmasked in place. */
    assert_ptr_equal(ev->data, in + 6);
    assert_memory_equal(ev->data, "Hello", 5);
    return 0;
}

static void test_rfc_masked_hello(void **state)
{
    (void)state;
    const uint8_t in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct rec *r = rec_new();
    struct run res = run_all(&server_opt, in, sizeof(in), r);
    assert_int_equal(res.status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.len, 5);
    assert_memory_equal(r->buf, "Hello", 5);
    rec_free(r);

    uint8_t copy[sizeof(in)];
    memcpy(copy, in, sizeof(in));
    struct ws_parser p;
    size_t used;
    ws_parser_init(&p, &server_opt, on_event_check_in_place, copy);
    assert_int_equal(ws_parser_feed(&p, copy, sizeof(copy), &used), WS_MORE);
    assert_int_equal(used, sizeof(copy));
    assert_memory_equal(copy, in, 6); /* header untouched */

    expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    expect_split_independent(&server_opt, in, sizeof(in));
}

static void test_rfc_fragmented_hello(void **state)
{
    (void)state;
    const uint8_t in[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    struct rec *r = rec_new();
    struct run res = run_all(&client_utf8, in, sizeof(in), r);
    assert_int_equal(res.status, WS_MORE);
    assert_int_equal(r->n, 2);
    const struct ws_event *a = &r->ev[0].ev, *b = &r->ev[1].ev;
    assert_int_equal(a->frame_opcode, WS_OP_TEXT);
    assert_false(a->fin);
    assert_int_equal(a->flags, WS_CHUNK_FRAME_START | WS_CHUNK_FRAME_END | WS_CHUNK_MSG_START);
    assert_int_equal(b->frame_opcode, WS_OP_CONTINUATION);
    assert_int_equal(b->opcode, WS_OP_TEXT);
    assert_true(b->fin);
    assert_int_equal(b->flags, WS_CHUNK_FRAME_START | WS_CHUNK_FRAME_END | WS_CHUNK_MSG_END);
    assert_int_equal(b->message_off, 3);
    assert_int_equal(r->buf_len, 5);
    assert_memory_equal(r->buf, "Hello", 5);
    rec_free(r);
    expect_split_independent(&client_utf8, in, sizeof(in));
}

static void test_rfc_ping_pong(void **state)
{
    (void)state;
    const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct rec *r = rec_new();
    assert_int_equal(run_all(&client_opt, ping, sizeof(ping), r).status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.type, WS_EVENT_PING);
    assert_int_equal(r->ev[0].ev.len, 5);
    assert_memory_equal(r->buf, "Hello", 5);
    rec_free(r);

    r = rec_new();
    assert_int_equal(run_all(&server_opt, pong, sizeof(pong), r).status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.type, WS_EVENT_PONG);
    assert_memory_equal(r->buf, "Hello", 5);
    rec_free(r);
    /* Control frames are delivered whole, however they are split. */
    r = rec_new();
    assert_int_equal(run_split(&server_opt, pong, sizeof(pong), 1, r).status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.len, 5);
    rec_free(r);
}

static void check_binary_length(size_t n, const uint8_t *hdr, size_t hdr_len)
{
    size_t total = hdr_len + n;
    uint8_t *in = malloc(total);
    assert_non_null(in);
    memcpy(in, hdr, hdr_len);
    for (size_t i = 0; i < n; i++)
        in[hdr_len + i] = (uint8_t)(i * 7);
    /* The writer produces the RFC's header for the same length. */
    uint8_t mine[WS_FRAME_HEADER_MAX];
    assert_int_equal(ws_frame_header(mine, WS_OP_BINARY, true, n, false, NULL), hdr_len);
    assert_memory_equal(mine, hdr, hdr_len);

    struct rec *r = rec_new();
    struct run res = run_all(&client_opt, in, total, r);
    assert_int_equal(res.status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.frame_len, n);
    assert_int_equal(r->ev[0].ev.opcode, WS_OP_BINARY);
    assert_int_equal(r->buf_len, n);
    assert_memory_equal(r->buf, in + hdr_len, n);
    rec_free(r);

    /* Fed in a few pieces: chunks carry offsets, first/last flags. */
    r = rec_new();
    assert_int_equal(run_split(&client_opt, in, total, n / 4 + 1, r).status, WS_MORE);
    assert_true(r->n > 1 && r->n <= REC_MAX_EVENTS);
    uint64_t off = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct ws_event *ev = &r->ev[i].ev;
        assert_int_equal(ev->frame_off, off);
        assert_int_equal(!!(ev->flags & WS_CHUNK_FRAME_START), i == 0);
        assert_int_equal(!!(ev->flags & WS_CHUNK_FRAME_END), i == r->n - 1);
        assert_int_equal(!!(ev->flags & WS_CHUNK_MSG_END), i == r->n - 1);
        off += ev->len;
    }
    assert_int_equal(off, n);
    assert_memory_equal(r->buf, in + hdr_len, n);
    rec_free(r);
    free(in);
}

static void test_rfc_binary_256(void **state)
{
    (void)state;
    const uint8_t hdr[] = {0x82, 0x7e, 0x01, 0x00};
    check_binary_length(256, hdr, sizeof(hdr));
}

static void test_rfc_binary_64k(void **state)
{
    (void)state;
    const uint8_t hdr[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    check_binary_length(65536, hdr, sizeof(hdr));
}

/* ---- writer and masking ---- */

static void test_frame_header_writer(void **state)
{
    (void)state;
    uint8_t h[WS_FRAME_HEADER_MAX];
    const uint8_t key[4] = {1, 2, 3, 4};
    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 0, false, NULL), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0x00);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, false, 125, true, key), 6);
    assert_int_equal(h[0], 0x02);
    assert_int_equal(h[1], 0x80 | 125);
    assert_memory_equal(h + 2, key, 4);
    assert_int_equal(ws_frame_header(h, WS_OP_CONTINUATION, true, 126, false, NULL), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65535, true, key), 8);
    assert_int_equal(h[2], 0xff);
    assert_int_equal(h[3], 0xff);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65536, true, key), 14);
    assert_int_equal(h[1], 0x80 | 127);
    assert_memory_equal(h + 10, key, 4);
    assert_int_equal(ws_frame_header(h, WS_OP_PING, true, 125, false, NULL), 2);
    /* What may not be sent. */
    assert_int_equal(ws_frame_header(h, WS_OP_PING, true, 126, false, NULL), 0);
    assert_int_equal(ws_frame_header(h, WS_OP_CLOSE, false, 2, false, NULL), 0);
    assert_int_equal(ws_frame_header(h, 3, true, 1, false, NULL), 0);
    assert_int_equal(ws_frame_header(h, 0xb, true, 1, false, NULL), 0);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 1ull << 63, false, NULL), 0);
}

static void test_mask_across_offsets(void **state)
{
    (void)state;
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t plain[67], whole[67], pieces[67];
    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(i * 31 + 5);
    memcpy(whole, plain, sizeof(plain));
    ws_mask(whole, sizeof(whole), key, 0);
    for (size_t i = 0; i < sizeof(plain); i++)
        assert_int_equal(whole[i], plain[i] ^ key[i % 4]);
    /* Split in two at every position, and in three at every pair. */
    for (size_t a = 0; a <= sizeof(plain); a++) {
        for (size_t b = a; b <= sizeof(plain); b++) {
            memcpy(pieces, plain, sizeof(plain));
            ws_mask(pieces, a, key, 0);
            ws_mask(pieces + a, b - a, key, a);
            ws_mask(pieces + b, sizeof(plain) - b, key, b);
            assert_memory_equal(pieces, whole, sizeof(plain));
        }
    }
    /* A large offset keeps the phase (offset mod 4). */
    memcpy(pieces, plain + 3, 10);
    ws_mask(pieces, 10, key, (1ull << 40) + 3);
    assert_memory_equal(pieces, whole + 3, 10);
    /* Masking twice restores the input. */
    ws_mask(whole, sizeof(whole), key, 0);
    assert_memory_equal(whole, plain, sizeof(plain));
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    /* Frames built with the writer, masked, parse back on the server. */
    static uint8_t big[70000], in[70200];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i ^ (i >> 8));
    size_t n = put_frame(in, 0, WS_OP_BINARY, false, big, 100, true);
    n = put_frame(in, n, WS_OP_PING, true, "p", 1, true);
    n = put_frame(in, n, WS_OP_CONTINUATION, true, big + 100, sizeof(big) - 100, true);
    struct rec *r = rec_new();
    struct run res = run_all(&server_opt, in, n, r);
    assert_int_equal(res.status, WS_MORE);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->ev[1].ev.type, WS_EVENT_PING);
    assert_int_equal(r->buf_len, sizeof(big) + 1);
    assert_memory_equal(r->buf, big, 100);
    assert_memory_equal(r->buf + 101, big + 100, sizeof(big) - 100);
    rec_free(r);
    expect_split_independent(&server_opt, in, n);
}

/* ---- protocol errors ---- */

static void test_error_rsv_bits(void **state)
{
    (void)state;
    for (int bit = 4; bit <= 6; bit++) {
        uint8_t in[] = {(uint8_t)(0x81 | (1 << bit)), 0x01, 'x'};
        expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    }
    /* Also on a continuation frame of an open message. */
    const uint8_t cont[] = {0x01, 0x01, 'a', 0xc0, 0x01, 'b'};
    expect_error(&client_opt, cont, sizeof(cont), WS_CLOSE_PROTOCOL);
}

static void test_error_unknown_opcodes(void **state)
{
    (void)state;
    for (int op = 0; op < 16; op++) {
        if (op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY ||
            op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG)
            continue;
        uint8_t in[] = {(uint8_t)(0x80 | op), 0x00};
        expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    }
}

static void test_error_masking_by_role(void **state)
{
    (void)state;
    const uint8_t unmasked[] = {0x82, 0x00};
    const uint8_t masked[] = {0x82, 0x80, 1, 2, 3, 4};
    expect_error(&server_opt, unmasked, sizeof(unmasked), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, masked, sizeof(masked), WS_CLOSE_PROTOCOL);
    const uint8_t ping_unmasked[] = {0x89, 0x00};
    expect_error(&server_opt, ping_unmasked, sizeof(ping_unmasked), WS_CLOSE_PROTOCOL);
}

static void test_error_continuation_without_message(void **state)
{
    (void)state;
    const uint8_t in[] = {0x80, 0x01, 'x'};
    expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    /* After a complete message, a continuation is again out of place. */
    const uint8_t after[] = {0x81, 0x01, 'a', 0x00, 0x01, 'b'};
    expect_error(&client_opt, after, sizeof(after), WS_CLOSE_PROTOCOL);
}

static void test_error_new_message_inside_fragmented(void **state)
{
    (void)state;
    const uint8_t text[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
    const uint8_t binary[] = {0x02, 0x01, 'a', 0x82, 0x01, 'b'};
    expect_error(&client_opt, text, sizeof(text), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, binary, sizeof(binary), WS_CLOSE_PROTOCOL);
}

static void test_error_fragmented_control(void **state)
{
    (void)state;
    const uint8_t ping[] = {0x09, 0x01, 'x'};
    const uint8_t close[] = {0x08, 0x02, 0x03, 0xe8};
    expect_error(&client_opt, ping, sizeof(ping), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, close, sizeof(close), WS_CLOSE_PROTOCOL);
}

static void test_error_control_too_long(void **state)
{
    (void)state;
    /* 126 as a 16-bit length, and a 16-bit encoding of 125 (also too long
     * for the 7-bit field rule of control frames). */
    const uint8_t a[] = {0x89, 0x7e, 0x00, 0x7e};
    const uint8_t b[] = {0x8a, 0x7e, 0x00, 0x7d};
    const uint8_t c[] = {0x88, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x02};
    expect_error(&client_opt, a, sizeof(a), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, b, sizeof(b), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, c, sizeof(c), WS_CLOSE_PROTOCOL);
    /* 125 is the limit and is fine. */
    uint8_t ok[127] = {0x89, 0x7d};
    struct rec *r = rec_new();
    assert_int_equal(run_all(&client_opt, ok, sizeof(ok), r).status, WS_MORE);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.len, 125);
    rec_free(r);
}

static void test_error_64bit_length_msb(void **state)
{
    (void)state;
    const uint8_t in[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
    expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    /* Detected on the first length byte, before the rest arrives. */
    struct rec *r = rec_new();
    struct run res = run_all(&client_opt, in, 3, r);
    assert_int_equal(res.status, WS_ERROR);
    rec_free(r);
}

static void test_error_non_minimal_length(void **state)
{
    (void)state;
    uint8_t in16[4 + 125] = {0x82, 0x7e, 0x00, 0x7d}; /* 125 in 16 bits */
    uint8_t in64[10 + 200] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0x00, 0xc8};
    const uint8_t in64_edge[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    expect_error(&client_opt, in16, sizeof(in16), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, in64, sizeof(in64), WS_CLOSE_PROTOCOL);
    expect_error(&client_opt, in64_edge, sizeof(in64_edge), WS_CLOSE_PROTOCOL);
    /* The smallest of each encoding is accepted. */
    const uint8_t ok16[] = {0x82, 0x7e, 0x00, 0x7e};
    const uint8_t ok64[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    struct rec *r = rec_new();
    assert_int_equal(run_all(&client_opt, ok16, sizeof(ok16), r).status, WS_MORE);
    assert_int_equal(run_all(&client_opt, ok64, sizeof(ok64), r).status, WS_MORE);
    rec_free(r);
}

static void test_max_message_single_frame(void **state)
{
    (void)state;
    const struct ws_parser_options opt = {.role = WS_ROLE_CLIENT, .max_message = 10};
    uint8_t in[64];
    size_t n = put_frame(in, 0, WS_OP_TEXT, true, "0123456789", 10, false);
    struct rec *r = rec_new();
    assert_int_equal(run_all(&opt, in, n, r).status, WS_MORE);
    assert_int_equal(r->buf_len, 10);
    rec_free(r);
    n = put_frame(in, 0, WS_OP_BINARY, true, "0123456789a", 11, false);
    expect_error(&opt, in, n, WS_CLOSE_TOO_BIG);
    /* Refused from the header alone: nothing of the payload is delivered. */
    r = rec_new();
    assert_int_equal(run_all(&opt, in, 2, r).status, WS_ERROR);
    assert_int_equal(r->n, 0);
    rec_free(r);
    /* A 2^63-1 length against a limit does not overflow. */
    const uint8_t huge[] = {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_error(&opt, huge, sizeof(huge), WS_CLOSE_TOO_BIG);
}

static void test_max_message_fragments(void **state)
{
    (void)state;
    const struct ws_parser_options opt = {.role = WS_ROLE_CLIENT, .max_message = 10};
    uint8_t in[64];
    size_t n = put_frame(in, 0, WS_OP_TEXT, false, "01234", 5, false);
    n = put_frame(in, n, WS_OP_PING, true, "", 0, false);
    n = put_frame(in, n, WS_OP_CONTINUATION, false, "5678", 4, false);
    size_t ok_len = n;
    n = put_frame(in, n, WS_OP_CONTINUATION, true, "9a", 2, false);
    expect_error(&opt, in, n, WS_CLOSE_TOO_BIG);
    struct rec *r = rec_new();
    struct run res = run_all(&opt, in, n, r);
    assert_int_equal(r->buf_len, 9); /* the first two fragments went out */
    assert_int_equal(res.status, WS_ERROR);
    rec_free(r);
    /* The limit is per message: a second message starts from zero. */
    n = put_frame(in, ok_len, WS_OP_CONTINUATION, true, "9", 1, false);
    n = put_frame(in, n, WS_OP_BINARY, true, "0123456789", 10, false);
    r = rec_new();
    assert_int_equal(run_all(&opt, in, n, r).status, WS_MORE);
    assert_int_equal(r->buf_len, 20);
    rec_free(r);
}

/* ---- close frames ---- */

static void test_close_frame(void **state)
{
    (void)state;
    uint8_t in[64];
    uint8_t payload[WS_CONTROL_MAX];
    size_t pl = ws_close_payload(payload, 1001, "bye \xc3\xa9");
    assert_int_equal(pl, 2 + 6);
    assert_int_equal(payload[0], 0x03);
    assert_int_equal(payload[1], 0xe9);
    size_t n = put_frame(in, 0, WS_OP_CLOSE, true, payload, pl, true);
    n = put_frame(in, n, WS_OP_TEXT, true, "after", 5, true); /* ignored */
    struct rec *r = rec_new();
    struct run res = run_all(&server_opt, in, n, r);
    assert_int_equal(res.status, WS_CLOSED);
    assert_int_equal(res.consumed, 6 + pl); /* stops right after the close */
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].ev.type, WS_EVENT_CLOSE);
    assert_int_equal(r->ev[0].ev.close_code, 1001);
    assert_int_equal(r->ev[0].ev.reason_len, 6);
    assert_memory_equal(r->buf + 2, "bye \xc3\xa9", 6);
    rec_free(r);
    expect_split_independent(&server_opt, in, n);

    /* Empty close: no status code. */
    const uint8_t empty[] = {0x88, 0x00};
    r = rec_new();
    assert_int_equal(run_all(&client_opt, empty, sizeof(empty), r).status, WS_CLOSED);
    assert_int_equal(r->ev[0].ev.close_code, WS_CLOSE_NO_STATUS);
    assert_int_equal(r->ev[0].ev.reason_len, 0);
    rec_free(r);
}

static void test_closed_parser_consumes_nothing(void **state)
{
    (void)state;
    uint8_t in[] = {0x88, 0x02, 0x03, 0xe8, 0x81, 0x01, 'x'};
    struct ws_parser p;
    struct rec *r = rec_new();
    size_t used;
    ws_parser_init(&p, &client_opt, on_event, r);
    assert_int_equal(ws_parser_feed(&p, in, sizeof(in), &used), WS_CLOSED);
    assert_int_equal(used, 4);
    assert_int_equal(ws_parser_feed(&p, in + 4, 3, &used), WS_CLOSED);
    assert_int_equal(used, 0);
    assert_int_equal(r->n, 1);
    assert_int_equal(ws_parser_error(&p, NULL), 0);
    rec_free(r);
}

static void test_close_one_byte_payload(void **state)
{
    (void)state;
    const uint8_t in[] = {0x88, 0x01, 0x03};
    expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
}

static void test_close_code_table(void **state)
{
    (void)state;
    static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const int invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                  1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < ARRAY_SIZE(valid); i++) {
        assert_true(ws_close_code_valid(valid[i]));
        uint8_t in[] = {0x88, 0x02, (uint8_t)(valid[i] >> 8), (uint8_t)valid[i]};
        struct rec *r = rec_new();
        assert_int_equal(run_all(&client_opt, in, sizeof(in), r).status, WS_CLOSED);
        assert_int_equal(r->ev[0].ev.close_code, valid[i]);
        rec_free(r);
    }
    for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
        if (ws_close_code_valid(invalid[i]))
            fail_msg("close code %d accepted", invalid[i]);
        uint8_t in[] = {0x88, 0x02, (uint8_t)(invalid[i] >> 8), (uint8_t)invalid[i]};
        expect_error(&client_opt, in, sizeof(in), WS_CLOSE_PROTOCOL);
    }
}

static void test_close_reason_not_utf8(void **state)
{
    (void)state;
    const uint8_t in[] = {0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28};
    expect_error(&client_opt, in, sizeof(in), WS_CLOSE_INVALID_DATA);
    /* Truncated sequence at the end of the reason. */
    const uint8_t cut[] = {0x88, 0x03, 0x03, 0xe8, 0xe2};
    expect_error(&client_opt, cut, sizeof(cut), WS_CLOSE_INVALID_DATA);
}

static void test_close_payload_builder(void **state)
{
    (void)state;
    uint8_t out[WS_CONTROL_MAX];
    assert_int_equal(ws_close_payload(out, WS_CLOSE_NO_STATUS, "x"), 0);
    assert_int_equal(ws_close_payload(out, 0, NULL), 0);
    assert_int_equal(ws_close_payload(out, 1000, NULL), 2);
    /* 122 ASCII bytes then "é": cut to 122, not 123, to keep UTF-8 whole. */
    char reason[200];
    memset(reason, 'a', 122);
    strcpy(reason + 122, "\xc3\xa9zzzz");
    size_t n = ws_close_payload(out, 1011, reason);
    assert_int_equal(n, 2 + 122);
    struct ws_utf8 u;
    ws_utf8_init(&u);
    assert_int_equal(ws_utf8_feed(&u, out + 2, n - 2), n - 2);
    assert_true(ws_utf8_complete(&u));
    /* Exactly 123 ASCII bytes fit. */
    memset(reason, 'b', 150);
    reason[150] = '\0';
    assert_int_equal(ws_close_payload(out, 1000, reason), WS_CONTROL_MAX);
}

/* ---- parser behaviour ---- */

static void test_error_is_sticky(void **state)
{
    (void)state;
    uint8_t bad[] = {0xf1, 0x00};
    uint8_t good[] = {0x81, 0x01, 'x'};
    struct ws_parser p;
    struct rec *r = rec_new();
    size_t used;
    const char *why = NULL;
    ws_parser_init(&p, &client_opt, on_event, r);
    assert_int_equal(ws_parser_error(&p, &why), 0);
    assert_int_equal(ws_parser_feed(&p, bad, sizeof(bad), &used), WS_ERROR);
    assert_int_equal(ws_parser_feed(&p, good, sizeof(good), &used), WS_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(ws_parser_error(&p, &why), WS_CLOSE_PROTOCOL);
    assert_non_null(strstr(why, "reserved"));
    assert_int_equal(r->n, 0);
    rec_free(r);
}

static void test_control_inside_fragmented_message(void **state)
{
    (void)state;
    uint8_t in[128];
    size_t n = put_frame(in, 0, WS_OP_BINARY, false, "ab", 2, false);
    n = put_frame(in, n, WS_OP_PING, true, "p1", 2, false);
    n = put_frame(in, n, WS_OP_CONTINUATION, false, "cd", 2, false);
    n = put_frame(in, n, WS_OP_PONG, true, "", 0, false);
    n = put_frame(in, n, WS_OP_CONTINUATION, true, "e", 1, false);
    struct rec *r = rec_new();
    assert_int_equal(run_all(&client_opt, in, n, r).status, WS_MORE);
    assert_int_equal(r->n, 5);
    assert_int_equal(r->ev[1].ev.type, WS_EVENT_PING);
    assert_int_equal(r->ev[3].ev.type, WS_EVENT_PONG);
    assert_int_equal(r->ev[2].ev.opcode, WS_OP_BINARY);
    assert_int_equal(r->ev[2].ev.message_off, 2);
    assert_int_equal(r->ev[4].ev.message_off, 4);
    assert_true(r->ev[4].ev.flags & WS_CHUNK_MSG_END);
    assert_false(r->ev[2].ev.flags & WS_CHUNK_MSG_END);
    rec_free(r);
    expect_split_independent(&client_opt, in, n);
}

static void test_zero_length_frames(void **state)
{
    (void)state;
    uint8_t in[64];
    size_t n = put_frame(in, 0, WS_OP_TEXT, true, "", 0, true);
    n = put_frame(in, n, WS_OP_BINARY, false, "x", 1, true);
    n = put_frame(in, n, WS_OP_CONTINUATION, true, "", 0, true);
    struct rec *r = rec_new();
    assert_int_equal(run_all(&server_opt, in, n, r).status, WS_MORE);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->ev[0].ev.len, 0);
    assert_int_equal(r->ev[0].ev.flags, WS_CHUNK_FRAME_START | WS_CHUNK_FRAME_END |
                                            WS_CHUNK_MSG_START | WS_CHUNK_MSG_END);
    assert_int_equal(r->ev[2].ev.len, 0);
    assert_int_equal(r->ev[2].ev.flags,
                     WS_CHUNK_FRAME_START | WS_CHUNK_FRAME_END | WS_CHUNK_MSG_END);
    rec_free(r);
    expect_split_independent(&server_opt, in, n);
}

static void test_split_independent_stream(void **state)
{
    (void)state;
    /* A mixed stream in both directions, fed at many step sizes. */
    static uint8_t in[2][4096];
    uint8_t text[300];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (uint8_t)('a' + i % 26);
    memcpy(text + 100, "\xf0\x9f\x98\x80", 4); /* a 4-byte character */
    for (int dir = 0; dir < 2; dir++) {
        bool mask = dir == 0;
        size_t n = put_frame(in[dir], 0, WS_OP_TEXT, true, text, sizeof(text), mask);
        n = put_frame(in[dir], n, WS_OP_TEXT, false, text, 102, mask);
        n = put_frame(in[dir], n, WS_OP_PING, true, "ping", 4, mask);
        n = put_frame(in[dir], n, WS_OP_CONTINUATION, true, text + 102, 50, mask);
        n = put_frame(in[dir], n, WS_OP_BINARY, true, text, 7, mask);
        n = put_frame(in[dir], n, WS_OP_CLOSE, true, "\x03\xe8ok", 4, mask);
        struct ws_parser_options opt = {.role = mask ? WS_ROLE_SERVER : WS_ROLE_CLIENT,
                                        .validate_utf8 = true};
        struct rec *r = rec_new();
        struct run res = run_all(&opt, in[dir], n, r);
        assert_int_equal(res.status, WS_CLOSED);
        assert_int_equal(res.consumed, n);
        rec_free(r);
        expect_split_independent(&opt, in[dir], n);
    }
}

static void test_stop_and_resume(void **state)
{
    (void)state;
    uint8_t in[64];
    size_t n = put_frame(in, 0, WS_OP_TEXT, true, "one", 3, false);
    n = put_frame(in, n, WS_OP_PING, true, "", 0, false);
    n = put_frame(in, n, WS_OP_BINARY, true, "two", 3, false);
    struct ws_parser p;
    struct rec *r = rec_new();
    r->stop_every = true;
    ws_parser_init(&p, &client_opt, on_event, r);
    size_t used, at = 0;
    assert_int_equal(ws_parser_feed(&p, in, n, &used), WS_STOPPED);
    assert_int_equal(used, 5); /* right after the first frame */
    at += used;
    assert_int_equal(ws_parser_feed(&p, in + at, n - at, &used), WS_STOPPED);
    assert_int_equal(used, 2);
    at += used;
    assert_int_equal(ws_parser_feed(&p, in + at, n - at, &used), WS_STOPPED);
    at += used;
    assert_int_equal(at, n);
    assert_int_equal(ws_parser_feed(&p, in + at, 0, &used), WS_MORE);
    assert_int_equal(r->n, 3);
    assert_memory_equal(r->buf, "onetwo", 6);
    rec_free(r);
}

/* ---- UTF-8 ---- */

static void test_utf8_valid_split_everywhere(void **state)
{
    (void)state;
    /* 1-, 2-, 3- and 4-byte characters, incl. the edges of each range. */
    const char *s = "a\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                    "\xf0\x90\x80\x80\xf0\x9f\x98\x80\xf4\x8f\xbf\xbfz";
    size_t n = strlen(s);
    const uint8_t *b = (const uint8_t *)s;
    for (size_t cut = 0; cut <= n; cut++) {
        struct ws_utf8 u;
        ws_utf8_init(&u);
        assert_int_equal(ws_utf8_feed(&u, b, cut), cut);
        assert_int_equal(ws_utf8_feed(&u, b + cut, n - cut), n - cut);
        assert_true(ws_utf8_complete(&u));
    }
    /* Through the parser: a 4-byte character split across two fragments at
     * every position, and fed at every chunk size. */
    const uint8_t ch[] = {0xf0, 0x9f, 0x98, 0x80};
    for (size_t cut = 0; cut <= 4; cut++) {
        uint8_t in[32];
        size_t m = put_frame(in, 0, WS_OP_TEXT, false, ch, cut, true);
        m = put_frame(in, m, WS_OP_CONTINUATION, true, ch + cut, 4 - cut, true);
        const struct ws_parser_options opt = {.role = WS_ROLE_SERVER, .validate_utf8 = true};
        struct rec *r = rec_new();
        assert_int_equal(run_all(&opt, in, m, r).status, WS_MORE);
        assert_int_equal(r->buf_len, 4);
        assert_memory_equal(r->buf, ch, 4);
        rec_free(r);
        expect_split_independent(&opt, in, m);
    }
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t bad; /* index of the first offending byte; len = at the end */
    } cases[] = {
        {"\x80", 0},             /* stray continuation */
        {"ab\xbf", 2},           /* stray continuation */
        {"\xc0\x80", 0},         /* overlong NUL */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x80\x80", 1},     /* overlong 3-byte */
        {"\xe0\x9f\xbf", 1},     /* overlong 3-byte, edge */
        {"\xf0\x80\x80\x80", 1}, /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 1}, /* overlong 4-byte, edge */
        {"\xed\xa0\x80", 1},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", 1},     /* U+DFFF surrogate */
        {"\xf4\x90\x80\x80", 1}, /* U+110000 */
        {"\xf5\x80\x80\x80", 0}, /* lead byte past U+10FFFF */
        {"\xff", 0},             /* never valid */
        {"\xc3\x28", 1},         /* missing continuation */
        {"\xe2\x82\x28", 2},     /* missing continuation */
        {"ok\xe2\x82", 4},       /* truncated at the end */
        {"\xf0\x9f\x98", 3},     /* truncated at the end */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const uint8_t *b = (const uint8_t *)cases[i].s;
        size_t n = strlen(cases[i].s);
        struct ws_utf8 u;
        ws_utf8_init(&u);
        size_t got = ws_utf8_feed(&u, b, n);
        if (cases[i].bad < n) {
            if (got != cases[i].bad)
                fail_msg("case %zu: offending byte %zu, want %zu", i, got, cases[i].bad);
            assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"a", 1), 0);
        } else {
            assert_int_equal(got, n);
        }
        assert_false(ws_utf8_complete(&u));
        /* Byte by byte finds the same offending byte. */
        ws_utf8_init(&u);
        size_t at = 0;
        while (at < n && ws_utf8_feed(&u, b + at, 1) == 1)
            at++;
        assert_int_equal(at, MIN(cases[i].bad, n));

        /* The parser closes 1007 on it, in one frame or split in two frames
         * at every position; the bytes before the offending one go out. */
        for (size_t cut = 0; cut <= n; cut++) {
            uint8_t in[32];
            size_t m = put_frame(in, 0, WS_OP_TEXT, false, b, cut, false);
            m = put_frame(in, m, WS_OP_CONTINUATION, true, b + cut, n - cut, false);
            expect_error(&client_utf8, in, m, WS_CLOSE_INVALID_DATA);
            struct rec *r = rec_new();
            (void)run_all(&client_utf8, in, m, r);
            assert_int_equal(r->buf_len, MIN(cases[i].bad, n));
            for (size_t e = 0; e < r->n; e++)
                assert_false(r->ev[e].ev.flags & WS_CHUNK_MSG_END);
            rec_free(r);
            expect_split_independent(&client_utf8, in, m);
        }
    }
}

static void test_utf8_validation_off_or_binary(void **state)
{
    (void)state;
    const uint8_t bad_text[] = {0x81, 0x02, 0xc0, 0x80};
    const uint8_t bad_binary[] = {0x82, 0x02, 0xc0, 0x80};
    struct rec *r = rec_new();
    assert_int_equal(run_all(&client_opt, bad_text, sizeof(bad_text), r).status, WS_MORE);
    assert_int_equal(run_all(&client_utf8, bad_binary, sizeof(bad_binary), r).status, WS_MORE);
    assert_int_equal(r->buf_len, 4);
    rec_free(r);
    expect_error(&client_utf8, bad_text, sizeof(bad_text), WS_CLOSE_INVALID_DATA);
    /* A validated text message does not leak its state into the next. */
    uint8_t in[32];
    size_t n = put_frame(in, 0, WS_OP_TEXT, true, "\xc3\xa9", 2, false);
    n = put_frame(in, n, WS_OP_BINARY, true, "\xe2", 1, false);
    n = put_frame(in, n, WS_OP_TEXT, true, "x", 1, false);
    r = rec_new();
    assert_int_equal(run_all(&client_utf8, in, n, r).status, WS_MORE);
    assert_int_equal(r->n, 3);
    rec_free(r);
}

/* ---- handshake ---- */

static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(ws_accept_key(key, strlen(key), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(ws_check_accept(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    assert_true(ws_check_accept(key, " s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\t", 30));
    assert_false(ws_check_accept(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=", 28));
    assert_false(ws_check_accept(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", 27));
    assert_false(ws_check_accept(key, "", 0));
    assert_false(ws_check_accept("dGhlIHNhbXBsZSBub25jZq==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
}

static void test_client_key(void **state)
{
    (void)state;
    char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1];
    assert_int_equal(ws_client_key(a), 0);
    assert_int_equal(ws_client_key(b), 0);
    assert_int_equal(strlen(a), WS_KEY_LEN);
    assert_string_not_equal(a, b);
    assert_memory_equal(a + 22, "==", 2);
    /* The accept computed by a server for it is what the client checks. */
    assert_int_equal(ws_accept_key(a, strlen(a), acc), 0);
    assert_true(ws_check_accept(a, acc, strlen(acc)));
    assert_false(ws_check_accept(b, acc, strlen(acc)));
    uint8_t k1[4], k2[4];
    assert_int_equal(ws_new_mask_key(k1), 0);
    assert_int_equal(ws_new_mask_key(k2), 0);
}

static struct httpparse_request hreq;

/* Parses a request head and runs ws_check_upgrade on it. */
static int upgrade_status(const char *head, const char **why)
{
    static const struct httpparse_limits lim = {8192, 32768, 100};
    int status = 0;
    const char *perr = NULL;
    memset(&hreq, 0, sizeof(hreq));
    if (httpparse_request(head, strlen(head), &lim, &hreq, &status, &perr) != HTTPPARSE_DONE)
        fail_msg("request did not parse: %d %s", status, perr ? perr : "");
    *why = NULL;
    return ws_check_upgrade(&hreq, why);
}

#define UP_HEAD "GET /v1/realtime?model=m HTTP/1.1\r\nHost: a\r\n"
#define UP_CONN "Connection: Upgrade\r\nUpgrade: websocket\r\n"
#define UP_VER  "Sec-WebSocket-Version: 13\r\n"
#define UP_KEY  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

static void test_upgrade_valid(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(upgrade_status(UP_HEAD UP_CONN UP_VER UP_KEY "\r\n", &why), 0);
    assert_null(why);
    /* Lists, case and several Connection fields. */
    assert_int_equal(upgrade_status(UP_HEAD "Connection: keep-alive\r\nconnection: UPGRADE\r\n"
                                            "upgrade: WebSocket\r\n" UP_VER UP_KEY
                                            "Sec-WebSocket-Protocol: realtime\r\n\r\n",
                                    &why),
                     0);
    assert_int_equal(upgrade_status(UP_HEAD "Connection: keep-alive, Upgrade\r\n"
                                            "Upgrade: foo, websocket\r\n" UP_VER UP_KEY "\r\n",
                                    &why),
                     0);
}

static void expect_upgrade(const char *head, int want, const char *why_part)
{
    const char *why;
    int got = upgrade_status(head, &why);
    if (got != want)
        fail_msg("want %d (%s), got %d", want, why_part, got);
    assert_non_null(why);
    if (strstr(why, why_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", why, why_part);
}

static void test_upgrade_errors(void **state)
{
    (void)state;
    expect_upgrade("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" UP_CONN UP_VER UP_KEY
                   "\r\n",
                   400, "GET");
    expect_upgrade("GET / HTTP/1.0\r\nHost: a\r\n" UP_CONN UP_VER UP_KEY "\r\n", 400, "1.1");
    expect_upgrade(UP_HEAD "Upgrade: websocket\r\n" UP_VER UP_KEY "\r\n", 400, "Connection");
    expect_upgrade(UP_HEAD "Connection: keep-alive\r\nUpgrade: websocket\r\n" UP_VER UP_KEY "\r\n",
                   400, "Connection");
    expect_upgrade(UP_HEAD "Connection: Upgrade\r\n" UP_VER UP_KEY "\r\n", 400, "Upgrade");
    expect_upgrade(UP_HEAD "Connection: Upgrade\r\nUpgrade: h2c\r\n" UP_VER UP_KEY "\r\n", 400,
                   "Upgrade");
    /* Version: 426 (the caller adds Sec-WebSocket-Version: 13). */
    expect_upgrade(UP_HEAD UP_CONN "Sec-WebSocket-Version: 8\r\n" UP_KEY "\r\n", 426, "13");
    expect_upgrade(UP_HEAD UP_CONN UP_KEY "\r\n", 426, "Version");
    expect_upgrade(UP_HEAD UP_CONN "Sec-WebSocket-Version: 13, 8\r\n" UP_KEY "\r\n", 426,
                   "Version");
    expect_upgrade(UP_HEAD UP_CONN UP_VER UP_VER UP_KEY "\r\n", 426, "Version");
    /* Key. */
    expect_upgrade(UP_HEAD UP_CONN UP_VER "\r\n", 400, "missing Sec-WebSocket-Key");
    expect_upgrade(UP_HEAD UP_CONN UP_VER UP_KEY UP_KEY "\r\n", 400, "duplicate");
    expect_upgrade(UP_HEAD UP_CONN UP_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n\r\n", 400,
                   "base64");
    expect_upgrade(UP_HEAD UP_CONN UP_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n\r\n", 400,
                   "base64");
    expect_upgrade(UP_HEAD UP_CONN UP_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n\r\n",
                   400, "base64");
    expect_upgrade(UP_HEAD UP_CONN UP_VER
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSBh\r\n\r\n", /* 18 bytes */
                   400, "base64");
    expect_upgrade(UP_HEAD UP_CONN UP_VER
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n\r\n", /* 17 bytes */
                   400, "base64");
    expect_upgrade(UP_HEAD UP_CONN UP_VER "Sec-WebSocket-Key: \r\n\r\n", 400, "base64");
}

static void test_protocol_list(void **state)
{
    (void)state;
    const char *v = "realtime, openai-insecure-api-key.ek_123 ,\t openai-beta.realtime-v1,, ,x";
    const char *want[] = {"realtime", "openai-insecure-api-key.ek_123", "openai-beta.realtime-v1",
                          "x"};
    struct ws_list it;
    const char *item;
    size_t len, i = 0;
    ws_list_init(&it, v, strlen(v));
    while (ws_list_next(&it, &item, &len)) {
        assert_true(i < ARRAY_SIZE(want));
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(item, want[i], len);
        i++;
    }
    assert_int_equal(i, ARRAY_SIZE(want));
    assert_false(ws_list_next(&it, &item, &len)); /* stays at the end */
    ws_list_init(&it, " , ,", 4);
    assert_false(ws_list_next(&it, &item, &len));
    ws_list_init(&it, NULL, 0);
    assert_false(ws_list_next(&it, &item, &len));
    /* Bounded by len, not by a NUL. */
    ws_list_init(&it, "token, abc", 5);
    assert_true(ws_list_next(&it, &item, &len));
    assert_int_equal(len, 5);
    assert_false(ws_list_next(&it, &item, &len));
}

static void test_token_valid(void **state)
{
    (void)state;
    assert_true(ws_token_valid("realtime", 8));
    assert_true(ws_token_valid("openai-beta.realtime-v1", 23));
    assert_true(ws_token_valid("a!#$%&'*+-.^_`|~9", 17));
    assert_false(ws_token_valid("", 0));
    assert_false(ws_token_valid("a b", 3));
    assert_false(ws_token_valid("a/b", 3));
    assert_false(ws_token_valid("a=", 2));
    assert_false(ws_token_valid("a\0b", 3));
    assert_false(ws_token_valid("\"q\"", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_unmasked_hello),
        cmocka_unit_test(test_rfc_masked_hello),
        cmocka_unit_test(test_rfc_fragmented_hello),
        cmocka_unit_test(test_rfc_ping_pong),
        cmocka_unit_test(test_rfc_binary_256),
        cmocka_unit_test(test_rfc_binary_64k),
        cmocka_unit_test(test_frame_header_writer),
        cmocka_unit_test(test_mask_across_offsets),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_error_rsv_bits),
        cmocka_unit_test(test_error_unknown_opcodes),
        cmocka_unit_test(test_error_masking_by_role),
        cmocka_unit_test(test_error_continuation_without_message),
        cmocka_unit_test(test_error_new_message_inside_fragmented),
        cmocka_unit_test(test_error_fragmented_control),
        cmocka_unit_test(test_error_control_too_long),
        cmocka_unit_test(test_error_64bit_length_msb),
        cmocka_unit_test(test_error_non_minimal_length),
        cmocka_unit_test(test_max_message_single_frame),
        cmocka_unit_test(test_max_message_fragments),
        cmocka_unit_test(test_close_frame),
        cmocka_unit_test(test_closed_parser_consumes_nothing),
        cmocka_unit_test(test_close_one_byte_payload),
        cmocka_unit_test(test_close_code_table),
        cmocka_unit_test(test_close_reason_not_utf8),
        cmocka_unit_test(test_close_payload_builder),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_control_inside_fragmented_message),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_split_independent_stream),
        cmocka_unit_test(test_stop_and_resume),
        cmocka_unit_test(test_utf8_valid_split_everywhere),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_validation_off_or_binary),
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_client_key),
        cmocka_unit_test(test_upgrade_valid),
        cmocka_unit_test(test_upgrade_errors),
        cmocka_unit_test(test_protocol_list),
        cmocka_unit_test(test_token_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
