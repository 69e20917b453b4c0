/* fuzz_httpparse.c - libFuzzer target for the request-head parser and the
 * chunked decoder: besides memory safety it checks that the results do not
 * depend on how the input is split into reads. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message: libFuzzer and the replay main both treat an abort
 * as a finding. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What the decoder handed out: length and an FNV-1a hash of the bytes. */
struct sink {
    uint64_t len;
    uint64_t hash;
    uint64_t limit;
    bool refused;
};

static int sink_out(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;
    CHECK(n > 0);
    if (s->len + n > s->limit) {
        s->refused = true;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        s->hash ^= (uint8_t)p[i];
        s->hash *= 0x100000001b3ULL;
    }
    s->len += n;
    return 0;
}

struct chunked_run {
    enum httpparse_chunked_status rc;
    size_t consumed;
    struct sink sink;
};

/* Feeds in[0..len) to a fresh decoder in pieces of `step` bytes (0: one
 * piece), the first piece being `first` bytes long. */
static void chunked_run(const char *in, size_t len, size_t first, size_t step, uint64_t limit,
                        struct chunked_run *r)
{
    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    memset(r, 0, sizeof(*r));
    r->sink.hash = 0xcbf29ce484222325ULL;
    r->sink.limit = limit;
    r->rc = HTTPPARSE_CHUNKED_MORE;
    size_t off = 0;
    bool first_piece = true;
    do {
        size_t n = first_piece ? first : (step ? step : len - off);
        first_piece = false;
        n = MIN(n, len - off);
        size_t used = (size_t)-1;
        const char *why = NULL;
        r->rc = httpparse_chunked_feed(&st, in + off, n, &used, sink_out, &r->sink, &why);
        CHECK(used <= n);
        r->consumed += used;
        if (r->rc == HTTPPARSE_CHUNKED_ERROR) {
            CHECK(why != NULL && why[0] != '\0');
            CHECK(why < in || why >= in + len); /* never quotes the input */
            return;
        }
        if (r->rc == HTTPPARSE_CHUNKED_DONE)
            return;
        CHECK(used == n);
        off += n;
    } while (off < len);
}

static void check_chunked(const char *in, size_t len, size_t split, uint64_t limit)
{
    struct chunked_run whole, halves, bytes;
    chunked_run(in, len, len, 0, limit, &whole);
    chunked_run(in, len, split, 0, limit, &halves);
    chunked_run(in, len, 1, 1, limit, &bytes);

    CHECK(whole.rc == halves.rc && whole.rc == bytes.rc);
    CHECK(whole.consumed <= len);
    if (whole.sink.refused || halves.sink.refused || bytes.sink.refused) {
        /* Where a refusal happens depends on the pieces; that it happens
         * does not. */
        CHECK(whole.rc == HTTPPARSE_CHUNKED_ERROR);
        CHECK(whole.sink.refused && halves.sink.refused && bytes.sink.refused);
        return;
    }
    CHECK(whole.consumed == halves.consumed && whole.consumed == bytes.consumed);
    CHECK(whole.sink.len == halves.sink.len && whole.sink.len == bytes.sink.len);
    CHECK(whole.sink.hash == halves.sink.hash && whole.sink.hash == bytes.sink.hash);
    if (whole.rc == HTTPPARSE_CHUNKED_MORE)
        CHECK(whole.consumed == len);
    /* Framing costs at least 5 bytes ("0\r\n\r\n") on top of the data. */
    if (whole.rc == HTTPPARSE_CHUNKED_DONE)
        CHECK(whole.sink.len + 5 <= whole.consumed);
}

static bool within(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static struct httpparse_request req, req2;

static void check_request(const char *buf, size_t len, const struct httpparse_limits *lim)
{
    int status = 0;
    const char *why = NULL;
    enum httpparse_status rc = httpparse_request(buf, len, lim, &req, &status, &why);
    if (rc == HTTPPARSE_ERROR) {
        CHECK(status == 400 || status == 414 || status == 431 || status == 505);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(why < buf || why >= buf + len);
        return;
    }
    if (rc == HTTPPARSE_INCOMPLETE)
        return;
    CHECK(rc == HTTPPARSE_DONE);
    CHECK(req.head_len >= 4 && req.head_len <= len);
    CHECK(req.head_len <= lim->max_header_bytes);
    CHECK(req.n_headers <= lim->max_headers && req.n_headers <= HTTPPARSE_MAX_HEADERS);
    CHECK(req.version_minor == 0 || req.version_minor == 1);
    CHECK(within(req.method, req.method_len, buf, req.head_len) && req.method_len > 0);
    CHECK(within(req.target, req.target_len, buf, req.head_len) && req.target[0] == '/');
    CHECK(req.path == req.target && req.path_len <= req.target_len);
    if (req.query != NULL)
        CHECK(req.query == req.path + req.path_len + 1 &&
              req.path_len + 1 + req.query_len == req.target_len);
    CHECK(req.target_len <= lim->max_request_line);
    for (size_t i = 0; i < req.n_headers; i++) {
        const struct httpparse_header *h = &req.headers[i];
        CHECK(within(h->name, h->name_len, buf, req.head_len) && h->name_len > 0);
        CHECK(within(h->value, h->value_len, buf, req.head_len));
        CHECK(memchr(h->name, '_', h->name_len) == NULL);
        CHECK(memchr(h->value, '\r', h->value_len) == NULL);
        CHECK(memchr(h->value, '\n', h->value_len) == NULL);
        /* Lookup by this name finds this field or an earlier one. */
        char name[256];
        if (h->name_len < sizeof(name)) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            const struct httpparse_header *f = httpparse_find(&req, name);
            CHECK(f != NULL && f <= h && f->name_len == h->name_len);
        }
    }
    CHECK(!(req.chunked && req.content_length >= 0));
    CHECK(req.content_length >= -1 && req.content_length <= INT64_MAX / 2);
    if (req.version_minor == 1)
        CHECK(req.host != NULL);
    CHECK(req.head_len >= 4 && memcmp(buf + req.head_len - 4, "\r\n\r\n", 4) == 0);

    /* The same head alone parses the same; one byte less is incomplete. */
    int status2 = 0;
    const char *why2 = NULL;
    CHECK(httpparse_request(buf, req.head_len, lim, &req2, &status2, &why2) == HTTPPARSE_DONE);
    CHECK(req2.head_len == req.head_len && req2.n_headers == req.n_headers);
    CHECK(req2.content_length == req.content_length && req2.chunked == req.chunked);
    CHECK(req2.keep_alive == req.keep_alive);
    CHECK(httpparse_request(buf, req.head_len - 1, lim, &req2, &status2, &why2) ==
          HTTPPARSE_INCOMPLETE);
}

/* Input layout: byte 0 picks the split point, byte 1 the limits; the rest is
 * both a request (head, then a chunked body if it says so) and, on its own,
 * a chunked body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t split_sel = data[0], lim_sel = data[1];
    size_t len = size - 2;
    /* An exact-size copy so that any read past the end is caught. */
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 2, len);

    struct httpparse_limits lim = {
        .max_request_line = (lim_sel & 1) ? 8192 : 32 + (lim_sel >> 2),
        .max_header_bytes = (lim_sel & 2) ? 32768 : 64 + (size_t)(lim_sel >> 2) * 4,
        .max_headers = (lim_sel & 0x80) ? 100 : 1 + (lim_sel & 0x0f),
    };
    size_t split = len ? split_sel % (len + 1) : 0;
    uint64_t limit = (lim_sel & 0x40) ? UINT64_MAX : (uint64_t)(lim_sel & 0x3f) * 4;

    check_request(buf, len, &lim);
    int status;
    const char *why;
    if (httpparse_request(buf, len, &lim, &req, &status, &why) == HTTPPARSE_DONE && req.chunked) {
        size_t body = len - req.head_len;
        check_chunked(buf + req.head_len, body, MIN(split, body), limit);
    }
    check_chunked(buf, len, split, limit);

    free(buf);
    return 0;
}
