/* fuzz_ws.c - libFuzzer target for the WebSocket frame parser in both roles:
 * the same stream fed whole, byte by byte and in random pieces (with and
 * without a callback that pauses after every event) must give the same
 * frames, payload bytes and status; what was delivered, re-encoded with the
 * frame writer for the other direction, must parse back the same. Also the
 * UTF-8 validator, the list iterator and the close-payload builder. */
#include "common.h"

#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_rec {
    uint8_t *script; /* split-independent summary of the events */
    size_t script_len, script_cap;
    uint8_t *enc; /* the events re-encoded for the other role (optional) */
    size_t enc_len, enc_cap;
    bool enc_mask;
    uint8_t enc_key[4];
    bool stop_every;
    bool frame_open; /* a data frame started and has not ended */
    bool cut_short;  /* a chunk reached its frame's end without FRAME_END:
                        only the prefix before a UTF-8 error does that */
    uint64_t frame_len, frame_seen;
};

static void add(uint8_t *buf, size_t *len, size_t cap, const void *p, size_t n)
{
    if (*len + n > cap)
        abort();
    if (n > 0)
        memcpy(buf + *len, p, n);
    *len += n;
}

static void script(struct fuzz_rec *r, const void *p, size_t n)
{
    add(r->script, &r->script_len, r->script_cap, p, n);
}

static void encode(struct fuzz_rec *r, int opcode, bool fin, uint64_t frame_len, const uint8_t *p,
                   size_t n, uint64_t off, bool header)
{
    if (r->enc == NULL)
        return;
    if (header) {
        uint8_t h[WS_FRAME_HEADER_MAX];
        size_t hl = ws_frame_header(h, opcode, fin, frame_len, r->enc_mask, r->enc_key);
        if (hl < 2)
            abort(); /* the parser accepted it, so it can be written */
        add(r->enc, &r->enc_len, r->enc_cap, h, hl);
    }
    size_t at = r->enc_len;
    add(r->enc, &r->enc_len, r->enc_cap, p, n);
    if (r->enc_mask)
        ws_mask(r->enc + at, n, r->enc_key, off);
}

static int on_event(void *arg, const struct ws_event *ev)
{
    struct fuzz_rec *r = arg;
    uint8_t tag[4] = {(uint8_t)ev->type, 0, 0, 0};
    if (r->cut_short)
        abort(); /* nothing may follow it */
    if (ev->type == WS_EVENT_DATA) {
        bool start = (ev->flags & WS_CHUNK_FRAME_START) != 0;
        if (start == r->frame_open || ev->frame_off != (start ? 0 : r->frame_seen) ||
            ev->frame_off + ev->len > ev->frame_len ||
            (ev->opcode != WS_OP_TEXT && ev->opcode != WS_OP_BINARY) ||
            (((ev->flags & WS_CHUNK_MSG_START) != 0) !=
             (start && ev->frame_opcode != WS_OP_CONTINUATION)) ||
            ((ev->flags & WS_CHUNK_MSG_END) && !(ev->flags & WS_CHUNK_FRAME_END)) ||
            ((ev->flags & WS_CHUNK_MSG_END) && !ev->fin) ||
            ((ev->flags & WS_CHUNK_FRAME_END) && ev->frame_off + ev->len != ev->frame_len) ||
            (ev->len == 0 && ev->frame_len != 0))
            abort();
        r->cut_short =
            !(ev->flags & WS_CHUNK_FRAME_END) && ev->frame_off + ev->len == ev->frame_len;
        if (r->cut_short && ev->opcode != WS_OP_TEXT)
            abort();
        if (start) {
            r->frame_open = true;
            r->frame_len = ev->frame_len;
            tag[1] = (uint8_t)ev->frame_opcode;
            tag[2] = (uint8_t)ev->opcode;
            tag[3] = (uint8_t)(ev->fin ? 1 : 0);
            script(r, "S", 1);
            script(r, tag, 4);
            script(r, &ev->frame_len, sizeof(ev->frame_len));
        }
        r->frame_seen = ev->frame_off + ev->len;
        script(r, ev->data, ev->len);
        encode(r, ev->frame_opcode, ev->fin, ev->frame_len, ev->data, ev->len, ev->frame_off,
               start);
        if (ev->flags & WS_CHUNK_FRAME_END) {
            r->frame_open = false;
            script(r, (ev->flags & WS_CHUNK_MSG_END) ? "M" : "E", 1);
        }
    } else {
        /* Control frames come between data frames, never inside one. */
        if (r->frame_open || ev->len > WS_CONTROL_MAX)
            abort();
        int op = ev->type == WS_EVENT_PING   ? WS_OP_PING
                 : ev->type == WS_EVENT_PONG ? WS_OP_PONG
                                             : WS_OP_CLOSE;
        if (ev->type == WS_EVENT_CLOSE) {
            if (ev->len == 0
                    ? ev->close_code != WS_CLOSE_NO_STATUS
                    : !ws_close_code_valid(ev->close_code) || ev->reason_len != ev->len - 2)
                abort();
        }
        script(r, "C", 1);
        script(r, tag, 4);
        script(r, &ev->close_code, sizeof(ev->close_code));
        script(r, &ev->len, sizeof(ev->len));
        script(r, ev->data, ev->len);
        encode(r, op, true, ev->len, ev->data, ev->len, 0, true);
    }
    return r->stop_every ? 1 : 0;
}

/* xorshift: piece sizes derived from the input, so runs are reproducible. */
static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

struct fuzz_run {
    enum ws_status status;
    int code;
    size_t consumed;
};

/* Feeds a private copy of in[0..len): split 0 = whole, 1 = byte by byte,
 * otherwise random pieces of 1..split bytes. */
static struct fuzz_run run(const struct ws_parser_options *opt, const uint8_t *in, size_t len,
                           unsigned split, uint32_t seed, struct fuzz_rec *r)
{
    struct fuzz_run out = {0};
    uint8_t *copy = malloc(len + 1);
    if (copy == NULL)
        abort();
    if (len > 0)
        memcpy(copy, in, len);
    struct ws_parser p;
    ws_parser_init(&p, opt, on_event, r);
    size_t at = 0;
    enum ws_status rc = WS_MORE;
    while (rc != WS_CLOSED && rc != WS_ERROR) {
        size_t step = split == 0 ? len - at : split == 1 ? 1 : 1 + next_rand(&seed) % split;
        step = MIN(step, len - at);
        size_t used = (size_t)-1;
        rc = ws_parser_feed(&p, copy + at, step, &used);
        if (used > step || (rc == WS_MORE && used != step))
            abort();
        at += used;
        if (at == len && rc != WS_STOPPED)
            break;
    }
    const char *why = NULL;
    out.code = ws_parser_error(&p, &why);
    if ((rc == WS_ERROR) != (out.code != 0))
        abort();
    if (rc == WS_ERROR) {
        if (why == NULL || strlen(why) > WS_CLOSE_REASON_MAX ||
            (why >= (const char *)copy && why < (const char *)copy + len + 1))
            abort();
        if (out.code != WS_CLOSE_PROTOCOL && out.code != WS_CLOSE_INVALID_DATA &&
            out.code != WS_CLOSE_TOO_BIG)
            abort();
    }
    if (r->cut_short && rc != WS_ERROR)
        abort();
    out.status = rc;
    out.consumed = at;
    free(copy);
    return out;
}

static void rec_init(struct fuzz_rec *r, size_t len, bool with_enc)
{
    memset(r, 0, sizeof(*r));
    /* A frame header is >= 2 input bytes and adds 14 script bytes; each
     * data byte adds one; a zero-length control frame adds 17. */
    r->script_cap = 16 * len + 64;
    r->script = malloc(r->script_cap);
    if (with_enc) {
        r->enc_cap = 8 * len + 64;
        r->enc = malloc(r->enc_cap);
    }
    if (r->script == NULL || (with_enc && r->enc == NULL))
        abort();
}

static void rec_done(struct fuzz_rec *r)
{
    free(r->script);
    free(r->enc);
}

static void same(const struct fuzz_run *a, const struct fuzz_rec *ra, const struct fuzz_run *b,
                 const struct fuzz_rec *rb)
{
    if (a->status != b->status || a->code != b->code)
        abort();
    if (a->status != WS_ERROR && a->consumed != b->consumed)
        abort();
    if (ra->script_len != rb->script_len || memcmp(ra->script, rb->script, ra->script_len) != 0)
        abort();
}

static void fuzz_parser(uint8_t mode, uint8_t split, const uint8_t *in, size_t len)
{
    struct ws_parser_options opt = {
        .role = (mode & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER,
        .validate_utf8 = (mode & 2) != 0,
        /* Small limits reach the 1009 path. */
        .max_message = (mode & 4) ? (uint64_t)split * 3 : 0,
    };
    struct fuzz_rec whole, bytes, pieces;
    rec_init(&whole, len, true);
    rec_init(&bytes, len, false);
    rec_init(&pieces, len, false);
    whole.enc_mask = opt.role == WS_ROLE_CLIENT; /* re-encoded for a server */
    memcpy(whole.enc_key, (uint8_t[4]){mode, split, 0x5a, (uint8_t)len}, 4);
    bytes.stop_every = (mode & 8) != 0;
    pieces.stop_every = (mode & 16) != 0;

    struct fuzz_run a = run(&opt, in, len, 0, 0, &whole);
    struct fuzz_run b = run(&opt, in, len, 1, 0, &bytes);
    struct fuzz_run c = run(&opt, in, len, 2 + split, 0x9e3779b9u ^ split ^ (uint32_t)len, &pieces);
    same(&a, &whole, &b, &bytes);
    same(&a, &whole, &c, &pieces);

    if (a.status != WS_ERROR) {
        /* Re-encoded for the other direction, it parses back the same. */
        struct ws_parser_options back = opt;
        back.role = opt.role == WS_ROLE_CLIENT ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
        struct fuzz_rec again;
        rec_init(&again, whole.enc_len, false);
        struct fuzz_run d = run(&back, whole.enc, whole.enc_len, 0, 0, &again);
        if (d.status != (a.status == WS_CLOSED ? WS_CLOSED : WS_MORE) ||
            d.consumed != whole.enc_len || again.script_len != whole.script_len ||
            memcmp(again.script, whole.script, whole.script_len) != 0)
            abort();
        rec_done(&again);
    }
    rec_done(&whole);
    rec_done(&bytes);
    rec_done(&pieces);
}

static void fuzz_helpers(uint8_t split, const uint8_t *in, size_t len)
{
    /* UTF-8: split in two anywhere gives the one-shot answer. */
    struct ws_utf8 u1, u2;
    ws_utf8_init(&u1);
    size_t bad = ws_utf8_feed(&u1, in, len);
    size_t cut = len == 0 ? 0 : split % (len + 1);
    ws_utf8_init(&u2);
    size_t first = ws_utf8_feed(&u2, in, cut);
    size_t bad2 = first < cut ? first : cut + ws_utf8_feed(&u2, in + cut, len - cut);
    if (bad != bad2 || ws_utf8_complete(&u1) != ws_utf8_complete(&u2))
        abort();

    /* List items stay inside the value, trimmed, without commas. */
    struct ws_list it;
    const char *item;
    size_t item_len;
    ws_list_init(&it, (const char *)in, len);
    while (ws_list_next(&it, &item, &item_len)) {
        if (item < (const char *)in || item + item_len > (const char *)in + len || item_len == 0 ||
            memchr(item, ',', item_len) != NULL || item[0] == ' ' || item[0] == '\t' ||
            item[item_len - 1] == ' ' || item[item_len - 1] == '\t')
            abort();
        (void)ws_token_valid(item, item_len);
    }

    /* A valid reason stays valid UTF-8 when cut to fit a close frame. */
    char *reason = malloc(len + 1);
    if (reason == NULL)
        abort();
    memcpy(reason, in, len);
    reason[len] = '\0';
    uint8_t payload[WS_CONTROL_MAX];
    int code = 1000 + split;
    size_t n = ws_close_payload(payload, code, reason);
    if (code == WS_CLOSE_NO_STATUS ? n != 0 : n < 2 || n > WS_CONTROL_MAX)
        abort();
    size_t rlen = strlen(reason);
    if (n >= 2 && bad == len && ws_utf8_complete(&u1) && rlen == len) {
        struct ws_utf8 u;
        ws_utf8_init(&u);
        if (ws_utf8_feed(&u, payload + 2, n - 2) != n - 2 || !ws_utf8_complete(&u))
            abort();
    }
    free(reason);

    /* Accept checking matches only the right value (spaces/tabs around it
     * are allowed). */
    if (ws_check_accept("dGhlIHNhbXBsZSBub25jZQ==", (const char *)in, len)) {
        const char *v = (const char *)in;
        size_t vl = len;
        while (vl > 0 && (v[0] == ' ' || v[0] == '\t'))
            v++, vl--;
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (vl != WS_ACCEPT_LEN || memcmp(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", vl) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    uint8_t split = data[1];
    fuzz_parser(mode, split, data + 2, size - 2);
    fuzz_helpers(split, data + 2, size - 2);
    return 0;
}
