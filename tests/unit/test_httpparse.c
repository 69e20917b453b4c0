/* test_httpparse.c - unit tests for the strict request-head parser, the
 * response-head parser, the token class and the chunked decoder (every
 * DESIGN §4c rejection, plus the valid shapes). */
#include "common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpparse.h"

static const struct httpparse_limits test_limits = {
    .max_request_line = 8192,
    .max_header_bytes = 32768,
    .max_headers = 100,
};

/* The request struct is ~4 KB: one per test, zeroed, not on the stack. */
static struct httpparse_request req;

static enum httpparse_status parse_n(const char *s, size_t n, const struct httpparse_limits *lim,
                                     int *status, const char **why)
{
    *status = 0;
    *why = NULL;
    return httpparse_request(s, n, lim, &req, status, why);
}

static enum httpparse_status parse(const char *s, int *status, const char **why)
{
    return parse_n(s, strlen(s), &test_limits, status, why);
}

/* Parses s expecting a complete head that spans all of s. */
static void expect_done(const char *s)
{
    int status;
    const char *why;
    enum httpparse_status rc = parse(s, &status, &why);
    if (rc != HTTPPARSE_DONE)
        fail_msg("expected DONE, got %d (%d %s)", rc, status, why ? why : "");
    assert_int_equal(req.head_len, strlen(s));
}

/* Parses buf[0..n) expecting an error with this status and a reason that
 * contains why_part and does not point into (quote) the input. */
static void expect_error_n(const char *s, size_t n, const struct httpparse_limits *lim,
                           int want_status, const char *why_part)
{
    int status;
    const char *why;
    enum httpparse_status rc = parse_n(s, n, lim, &status, &why);
    if (rc != HTTPPARSE_ERROR)
        fail_msg("expected ERROR %d (%s), got %d", want_status, why_part, rc);
    assert_int_equal(status, want_status);
    assert_non_null(why);
    if (strstr(why, why_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", why, why_part);
    assert_true(why < s || why >= s + n);
    /* Every error input below carries the marker "ZQX" somewhere. */
    assert_null(strstr(why, "ZQX"));
}

static void expect_error(const char *s, int want_status, const char *why_part)
{
    expect_error_n(s, strlen(s), &test_limits, want_status, why_part);
}

/* ---- valid requests ---- */

static void test_get_with_query(void **state)
{
    (void)state;
    const char *s = "GET /v1/models?limit=5&order=desc HTTP/1.1\r\n"
                    "Host: api.example.com:8080\r\n"
                    "User-Agent: t\r\n"
                    "\r\n";
    expect_done(s);
    assert_int_equal(req.method_len, 3);
    assert_memory_equal(req.method, "GET", 3);
    assert_int_equal(req.target_len, strlen("/v1/models?limit=5&order=desc"));
    assert_int_equal(req.path_len, strlen("/v1/models"));
    assert_memory_equal(req.path, "/v1/models", req.path_len);
    assert_non_null(req.query);
    assert_int_equal(req.query_len, strlen("limit=5&order=desc"));
    assert_memory_equal(req.query, "limit=5&order=desc", req.query_len);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.n_headers, 2);
    assert_int_equal(req.host_len, strlen("api.example.com:8080"));
    assert_memory_equal(req.host, "api.example.com:8080", req.host_len);
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade_websocket);
}

static void test_get_without_query(void **state)
{
    (void)state;
    expect_done("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_null(req.query);
    assert_int_equal(req.query_len, 0);
    assert_int_equal(req.path_len, 1);
    /* An empty query is still a query. */
    expect_done("GET /x? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(req.query);
    assert_int_equal(req.query_len, 0);
    assert_int_equal(req.path_len, 2);
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *s = "POST /v1/chat/completions HTTP/1.1\r\n"
                    "Host: a\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: 27\r\n"
                    "\r\n"
                    "{\"model\":\"gpt-4o-mini\"}....";
    int status;
    const char *why;
    assert_int_equal(parse(s, &status, &why), HTTPPARSE_DONE);
    assert_int_equal(req.content_length, 27);
    assert_int_equal(req.head_len, strstr(s, "\r\n\r\n") + 4 - s);
    assert_false(req.chunked);
    const struct httpparse_header *h = httpparse_find(&req, "content-type");
    assert_non_null(h);
    assert_int_equal(h->value_len, strlen("application/json"));
    assert_memory_equal(h->value, "application/json", h->value_len);
    assert_null(httpparse_find(&req, "content-typ"));
    assert_null(httpparse_find(&req, "x-missing"));
}

static void test_content_length_values(void **state)
{
    (void)state;
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(req.content_length, 0);
    /* OWS around the value is trimmed. */
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5\t \r\n\r\n");
    assert_int_equal(req.content_length, 5);
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:007\r\n\r\n");
    assert_int_equal(req.content_length, 7);
    /* The cap (INT64_MAX / 2) itself is accepted. */
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387903\r\n\r\n");
    assert_int_equal(req.content_length, INT64_MAX / 2);
}

static void test_post_chunked(void **state)
{
    (void)state;
    expect_done("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    expect_done("POST /up HTTP/1.1\r\nHost: a\r\ntransfer-encoding: ChUnKeD \r\n\r\n");
    assert_true(req.chunked);
}

static void test_pipelined_two_requests(void **state)
{
    (void)state;
    const char *first = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *second = "GET /bb HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
    char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", first, second);
    int status;
    const char *why;
    assert_int_equal(parse(buf, &status, &why), HTTPPARSE_DONE);
    assert_int_equal(req.head_len, strlen(first));
    assert_int_equal(req.path_len, 2);
    assert_true(req.keep_alive);

    assert_int_equal(parse(buf + req.head_len, &status, &why), HTTPPARSE_DONE);
    assert_int_equal(req.head_len, strlen(second));
    assert_int_equal(req.path_len, 3);
    assert_memory_equal(req.host, "b", 1);
    assert_false(req.keep_alive);
}

static void test_keep_alive_http11(void **state)
{
    (void)state;
    expect_done("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(req.keep_alive);
    expect_done("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_false(req.keep_alive);
    expect_done("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n");
    assert_false(req.keep_alive);
    expect_done("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    assert_true(req.keep_alive);
    /* "closed" is not "close". */
    expect_done("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
    assert_true(req.keep_alive);
}

static void test_keep_alive_http10(void **state)
{
    (void)state;
    /* HTTP/1.0 may omit Host. */
    expect_done("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(req.version_minor, 0);
    assert_false(req.keep_alive);
    assert_null(req.host);
    expect_done("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(req.keep_alive);
    expect_done("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert_false(req.keep_alive);
    /* Several Connection fields form one list. */
    expect_done("GET / HTTP/1.0\r\nConnection: x\r\nConnection: keep-alive\r\n\r\n");
    assert_true(req.keep_alive);
}

static void test_websocket_upgrade(void **state)
{
    (void)state;
    expect_done("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                "Upgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n");
    assert_true(req.upgrade_websocket);
    assert_true(req.keep_alive);
    /* Both halves are needed. */
    expect_done("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert_false(req.upgrade_websocket);
    expect_done("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
    assert_false(req.upgrade_websocket);
    expect_done("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n");
    assert_false(req.upgrade_websocket);
    expect_done("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: foo, websocket\r\nConnection: "
                "Upgrade\r\n\r\n");
    assert_true(req.upgrade_websocket);
}

static void test_expect_continue(void **state)
{
    (void)state;
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    assert_true(req.expect_continue);
    expect_done("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-ish\r\n\r\n");
    assert_false(req.expect_continue);
}

static void test_incremental_every_prefix(void **state)
{
    (void)state;
    const char *s = "\r\nPOST /v1/x?y=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 10\r\n"
                    "Connection: upgrade\r\nUpgrade: websocket\r\nX-Obs: caf\xc3\xa9\r\n\r\n";
    size_t n = strlen(s);
    int status;
    const char *why;
    for (size_t i = 0; i < n; i++) {
        enum httpparse_status rc = parse_n(s, i, &test_limits, &status, &why);
        if (rc != HTTPPARSE_INCOMPLETE)
            fail_msg("prefix of %zu bytes: got %d (%s)", i, rc, why ? why : "");
    }
    assert_int_equal(parse_n(s, n, &test_limits, &status, &why), HTTPPARSE_DONE);
    assert_int_equal(req.head_len, n);
    assert_int_equal(req.content_length, 10);
    assert_true(req.upgrade_websocket);
    assert_int_equal(req.n_headers, 5);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    expect_done(s);
    assert_int_equal(req.head_len, strlen(s));
    assert_memory_equal(req.method, "GET", 3);
    /* A lone LF is still a bare LF. */
    expect_error("\nGET /ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF");
}

static void test_value_ows_and_obs_text(void **state)
{
    (void)state;
    expect_done("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v a l \t \r\nX-B:\r\nX-C: \xff\x80\r\n\r\n");
    assert_int_equal(req.n_headers, 4);
    assert_int_equal(req.headers[1].value_len, strlen("v a l"));
    assert_memory_equal(req.headers[1].value, "v a l", 5);
    assert_int_equal(req.headers[1].name_len, 3);
    assert_int_equal(req.headers[2].value_len, 0);
    assert_int_equal(req.headers[3].value_len, 2);
    assert_int_equal(req.host_len, 1);
}

static void test_list_has(void **state)
{
    (void)state;
    const char *v = " keep-alive ,\tUpgrade,,x";
    assert_true(httpparse_list_has(v, strlen(v), "upgrade"));
    assert_true(httpparse_list_has(v, strlen(v), "KEEP-ALIVE"));
    assert_true(httpparse_list_has(v, strlen(v), "x"));
    assert_false(httpparse_list_has(v, strlen(v), "keep"));
    assert_false(httpparse_list_has(v, strlen(v), "close"));
    assert_false(httpparse_list_has("", 0, "close"));
    /* The length bounds the list, not a NUL. */
    assert_false(httpparse_list_has("close", 4, "close"));
}

static void test_limits_exact_fit(void **state)
{
    (void)state;
    struct httpparse_limits lim = {.max_request_line = 16, .max_header_bytes = 0, .max_headers = 2};
    const char *s = "GET /abc HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n"; /* line is 17 bytes */
    int status;
    const char *why;
    assert_int_equal(parse_n(s, strlen(s), &lim, &status, &why), HTTPPARSE_ERROR);
    assert_int_equal(status, 414);
    lim.max_request_line = 17;
    assert_int_equal(parse_n(s, strlen(s), &lim, &status, &why), HTTPPARSE_DONE);
    lim.max_header_bytes = strlen(s);
    assert_int_equal(parse_n(s, strlen(s), &lim, &status, &why), HTTPPARSE_DONE);
    lim.max_header_bytes = strlen(s) - 1;
    assert_int_equal(parse_n(s, strlen(s), &lim, &status, &why), HTTPPARSE_ERROR);
    assert_int_equal(status, 431);
}

/* ---- DESIGN §4c rejections ---- */

static void test_cl_and_te(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n",
                 400, "Content-Length and Transfer-Encoding");
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 5\r\n\r\n",
                 400, "Content-Length and Transfer-Encoding");
}

static void test_te_not_chunked(void **state)
{
    (void)state;
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzipZQX\r\n\r\n", 400,
                 "Transfer-Encoding other than chunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nX: ZQX\r\n\r\n", 400,
                 "Transfer-Encoding other than chunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nX: ZQX\r\n\r\n", 400,
                 "Transfer-Encoding other than chunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedZQX\r\n\r\n", 400,
                 "Transfer-Encoding other than chunked");
}

static void test_te_gzip_chunked(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400,
                 "Transfer-Encoding other than chunked");
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                 400, "Transfer-Encoding other than chunked");
}

static void test_te_duplicate(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n",
                 400, "duplicate Transfer-Encoding");
}

static void test_te_http10(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                 "Transfer-Encoding in an HTTP/1.0 request");
}

static void test_duplicate_cl_equal(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 400, "duplicate Content-Length");
}

static void test_duplicate_cl_different(void **state)
{
    (void)state;
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
                 400, "duplicate Content-Length");
}

static void test_malformed_cl(void **state)
{
    (void)state;
    static const char *const bad[] = {"12a", "-1", "+5", "5,5", "5, 5", "1 2", "0x10", "5.0"};
    char buf[256];
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        snprintf(buf, sizeof(buf), "POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        expect_error(buf, 400, "malformed Content-Length");
    }
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length:   \r\n\r\n", 400,
                 "empty Content-Length");
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n",
                 400, "Content-Length too large");
    /* Found by the fuzzer: overflow while multiplying, not only past the cap. */
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n",
                 400, "Content-Length too large");
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
                 400, "Content-Length too large");
    expect_error("POST /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length: "
                 "99999999999999999999999999999999\r\n\r\n",
                 400, "Content-Length too large");
}

static void test_space_before_colon(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400,
                 "whitespace between header name and colon");
    expect_error("GET /ZQX HTTP/1.1\r\nHost\t: a\r\n\r\n", 400,
                 "whitespace between header name and colon");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n", 400,
                 "invalid character in header name");
}

static void test_obs_fold(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, "obs-fold");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400, "obs-fold");
    /* Whitespace before the first field line too (RFC 9112 §2.2). */
    expect_error("GET /ZQX HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold");
}

static void test_bare_lf_in_head(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n", 400, "bare LF");
    /* Bare LF is refused even before the head is complete. */
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\nX", 400, "bare LF");
}

static void test_bare_cr_in_head(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", 400, "CR not followed by LF");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400,
                 "control character in header value");
    expect_error("GET /ZQX\r HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request target");
    expect_error("\r\r\nGET /ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CR not followed by LF");
}

static void test_missing_host(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "missing Host");
}

static void test_duplicate_host(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "duplicate Host");
    expect_error("GET /ZQX HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "duplicate Host");
}

static void test_invalid_host(void **state)
{
    (void)state;
    expect_error("GET / HTTP/1.1\r\nHost: a b ZQX\r\n\r\n", 400, "Host");
    expect_error("GET / HTTP/1.1\r\nHost: a/ZQX\r\n\r\n", 400, "Host");
    expect_done("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
}

static void test_underscore_in_name(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX_Api_Key: s\r\n\r\n", 400,
                 "header name contains '_'");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\n_: s\r\n\r\n", 400, "header name contains '_'");
}

static void test_bad_header_names(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400, "empty header name");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, "without colon");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", 400,
                 "invalid character in header name");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: v\r\n\r\n", 400,
                 "invalid character in header name");
}

static void test_control_in_value(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX: a\x01"
                 "b\r\n\r\n",
                 400, "control character in header value");
    expect_error("GET /ZQX HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400,
                 "control character in header value");
    static const char nul[] = "GET /ZQX HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    expect_error_n(nul, sizeof(nul) - 1, &test_limits, 400, "control character in header value");
    /* HTAB inside a value is fine. */
    expect_done("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n");
    assert_int_equal(req.headers[1].value_len, 3);
}

static void test_request_line_too_long(void **state)
{
    (void)state;
    struct httpparse_limits lim = {
        .max_request_line = 64, .max_header_bytes = 4096, .max_headers = 10};
    char buf[512];
    memset(buf, 0, sizeof(buf));
    strcpy(buf, "GET /ZQX");
    memset(buf + 8, 'a', 100);
    strcpy(buf + 108, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_error_n(buf, strlen(buf), &lim, 414, "request line too long");
    /* Refused before the line ends. */
    expect_error_n(buf, 70, &lim, 414, "request line too long");
    int status;
    const char *why;
    assert_int_equal(parse_n(buf, 64, &lim, &status, &why), HTTPPARSE_INCOMPLETE);
    assert_int_equal(parse_n(buf, 65, &lim, &status, &why), HTTPPARSE_ERROR);
    assert_int_equal(status, 414);
    /* A trailing CR might still be followed by the LF: not yet too long. */
    char cr[80];
    memset(cr, 'a', sizeof(cr));
    memcpy(cr, "GET /", 5);
    cr[64] = '\r';
    assert_int_equal(parse_n(cr, 65, &lim, &status, &why), HTTPPARSE_INCOMPLETE);
}

static void test_head_too_large(void **state)
{
    (void)state;
    struct httpparse_limits lim = {
        .max_request_line = 100, .max_header_bytes = 128, .max_headers = 50};
    char buf[1024];
    int off = snprintf(buf, sizeof(buf), "GET /ZQX HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 10; i++)
        off += snprintf(buf + off, sizeof(buf) - (size_t)off, "X-Pad-%d: 0123456789\r\n", i);
    off += snprintf(buf + off, sizeof(buf) - (size_t)off, "\r\n");
    expect_error_n(buf, (size_t)off, &lim, 431, "request head too large");
    /* Refused as soon as the limit is reached without the end of the head. */
    expect_error_n(buf, 128, &lim, 431, "request head too large");
    int status;
    const char *why;
    assert_int_equal(parse_n(buf, 127, &lim, &status, &why), HTTPPARSE_INCOMPLETE);
    /* Endless leading empty lines are bounded by the same limit. */
    char crlf[256];
    for (size_t i = 0; i < sizeof(crlf); i += 2)
        memcpy(crlf + i, "\r\n", 2);
    assert_int_equal(parse_n(crlf, 100, &lim, &status, &why), HTTPPARSE_INCOMPLETE);
    expect_error_n(crlf, sizeof(crlf), &lim, 431, "request head too large");
}

static void test_too_many_headers(void **state)
{
    (void)state;
    struct httpparse_limits lim = {
        .max_request_line = 100, .max_header_bytes = 8192, .max_headers = 5};
    char buf[1024];
    int off = snprintf(buf, sizeof(buf), "GET /ZQX HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 4; i++)
        off += snprintf(buf + off, sizeof(buf) - (size_t)off, "X-%d: v\r\n", i);
    int end = off;
    off += snprintf(buf + off, sizeof(buf) - (size_t)off, "\r\n");
    int status;
    const char *why;
    assert_int_equal(parse_n(buf, (size_t)off, &lim, &status, &why), HTTPPARSE_DONE);
    assert_int_equal(req.n_headers, 5);
    off = end + snprintf(buf + end, sizeof(buf) - (size_t)end, "X-5: v\r\n\r\n");
    expect_error_n(buf, (size_t)off, &lim, 431, "too many header fields");
    /* Refused as soon as a sixth field starts. */
    expect_error_n(buf, (size_t)end + 1, &lim, 431, "too many header fields");

    /* The hard cap applies when the configured limit is larger. */
    lim.max_headers = 100000;
    lim.max_header_bytes = 65536;
    static char big[65536];
    off = snprintf(big, sizeof(big), "GET /ZQX HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HTTPPARSE_MAX_HEADERS; i++)
        off += snprintf(big + off, sizeof(big) - (size_t)off, "X-%d: v\r\n", i);
    off += snprintf(big + off, sizeof(big) - (size_t)off, "\r\n");
    expect_error_n(big, (size_t)off, &lim, 431, "too many header fields");
}

static void test_version_not_supported(void **state)
{
    (void)state;
    expect_error("GET /ZQX HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP version not supported");
    expect_error("GET /ZQX HTTP/3\r\nHost: a\r\n\r\n", 505, "HTTP version not supported");
    expect_error("GET /ZQX HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP version not supported");
    expect_error("GET /ZQX HTTP/0.9\r\n\r\n", 505, "HTTP version not supported");
    expect_error("GET /ZQX\r\n\r\n", 505, "HTTP/0.9");
    /* The HTTP/2 connection preface. */
    expect_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nZQX", 505, "HTTP version not supported");
}

static void test_malformed_version(void **state)
{
    (void)state;
    expect_error("GET /ZQX http/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
    expect_error("GET /ZQX HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
    expect_error("GET /ZQX HTTP/1.\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
    expect_error("GET /ZQX HTTP/\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
    expect_error("GET /ZQX HTTX/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
}

static void test_target_forms(void **state)
{
    (void)state;
    expect_error("GET http://ZQX.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "absolute-form");
    expect_error("OPTIONS * HTTP/1.1\r\nHost: ZQX\r\n\r\n", 400, "asterisk-form");
    expect_error("CONNECT ZQX.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "must start with '/'");
    expect_error("GET ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400, "must start with '/'");
    expect_error("GET /ZQX#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request target");
    expect_error("GET /ZQX\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request target");
    expect_error("GET /ZQX\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request target");
    expect_error("GET /ZQX\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request target");
}

static void test_malformed_request_line(void **state)
{
    (void)state;
    expect_error("GET  /ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line");
    expect_error("GET /ZQX  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line");
    expect_error(" GET /ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line");
    expect_error("GET\t/ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request method");
    expect_error("G(T /ZQX HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 "invalid character in request method");
    expect_error("GETZQX\r\n\r\n", 400, "malformed request line");
}

/* ---- response heads ---- */

/* Also ~4 KB: static like req. */
static struct httpparse_response resp;

static enum httpparse_status resp_parse_n(const char *s, size_t n,
                                          const struct httpparse_limits *lim, int *code,
                                          const char **why)
{
    *code = 0;
    *why = NULL;
    return httpparse_response(s, n, lim, &resp, code, why);
}

/* Parses s expecting a complete head of head_len bytes (the rest of s
 * follows the head), and every shorter prefix to be INCOMPLETE. */
static void expect_resp_done_n(const char *s, size_t n, size_t head_len)
{
    int code;
    const char *why;
    for (size_t i = 0; i < head_len; i++) {
        enum httpparse_status rc = resp_parse_n(s, i, NULL, &code, &why);
        if (rc != HTTPPARSE_INCOMPLETE)
            fail_msg("prefix of %zu bytes: got %d (%s)", i, rc, why ? why : "");
    }
    enum httpparse_status rc = resp_parse_n(s, n, NULL, &code, &why);
    if (rc != HTTPPARSE_DONE)
        fail_msg("expected DONE, got %d (%d %s)", rc, code, why ? why : "");
    assert_int_equal(resp.head_len, head_len);
}

static void expect_resp_done(const char *s)
{
    expect_resp_done_n(s, strlen(s), strlen(s));
}

/* As expect_error_n, for a response head. */
static void expect_resp_error_n(const char *s, size_t n, const struct httpparse_limits *lim,
                                int want_code, const char *why_part)
{
    int code;
    const char *why;
    enum httpparse_status rc = resp_parse_n(s, n, lim, &code, &why);
    if (rc != HTTPPARSE_ERROR)
        fail_msg("expected ERROR %d (%s), got %d", want_code, why_part, rc);
    assert_int_equal(code, want_code);
    assert_non_null(why);
    if (strstr(why, why_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", why, why_part);
    assert_true(why < s || why >= s + n);
    assert_null(strstr(why, "ZQX"));
}

static void expect_resp_error(const char *s, const char *why_part)
{
    expect_resp_error_n(s, strlen(s), NULL, 400, why_part);
}

static void expect_field(size_t i, const char *name, const char *value)
{
    assert_true(i < resp.n_headers);
    const struct httpparse_header *h = &resp.headers[i];
    assert_int_equal(h->name_len, strlen(name));
    assert_memory_equal(h->name, name, h->name_len);
    assert_int_equal(h->value_len, strlen(value));
    if (h->value_len > 0)
        assert_memory_equal(h->value, value, h->value_len);
}

static void test_response_switching_protocols(void **state)
{
    (void)state;
    /* The head of a real upgrade reply, then the first frame. */
    const char *s = "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "\r\n"
                    "\x81\x02hi";
    size_t head = strlen(s) - 4;
    expect_resp_done_n(s, strlen(s), head);
    assert_int_equal(resp.version_minor, 1);
    assert_int_equal(resp.status, 101);
    assert_int_equal(resp.reason_len, strlen("Switching Protocols"));
    assert_memory_equal(resp.reason, "Switching Protocols", resp.reason_len);
    assert_int_equal(resp.n_headers, 3);
    expect_field(0, "Upgrade", "websocket");
    expect_field(1, "Connection", "Upgrade");
    expect_field(2, "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(httpparse_list_has(resp.headers[1].value, resp.headers[1].value_len, "upgrade"));
}

static void test_response_shapes(void **state)
{
    (void)state;
    /* No reason phrase, with or without its SP; HTTP/1.0; no fields. */
    expect_resp_done("HTTP/1.1 204\r\n\r\n");
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.reason_len, 0);
    assert_int_equal(resp.n_headers, 0);
    expect_resp_done("HTTP/1.1 401 \r\nWWW-Authenticate: Bearer\r\n\r\n");
    assert_int_equal(resp.status, 401);
    assert_int_equal(resp.reason_len, 0);
    expect_resp_done("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(resp.version_minor, 0);
    assert_int_equal(resp.status, 200);
    /* Status codes: any three digits from 100. */
    expect_resp_done("HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(resp.status, 100);
    expect_resp_done("HTTP/1.1 999 x\r\n\r\n");
    assert_int_equal(resp.status, 999);
    /* A reason phrase may hold SP, HTAB and obs-text. */
    expect_resp_done("HTTP/1.1 403 Forbidden \t \xe2\x9c\x97\r\n\r\n");
    assert_int_equal(resp.reason_len, strlen("Forbidden \t \xe2\x9c\x97"));
    /* OWS around values is trimmed; empty values, obs-text and '_' in names
     * are fine in a response. */
    const char *fields = "HTTP/1.1 200 OK\r\n"
                         "X-A:\t v a l \t\r\n"
                         "X-Empty:\r\n"
                         "X-Blank:   \r\n"
                         "X_Under_Score: 1\r\n"
                         "X-Text: caf\xc3\xa9\r\n"
                         "!#$%&'*+-.^_`|~09azAZ: t\r\n"
                         "\r\n";
    expect_resp_done(fields);
    assert_int_equal(resp.n_headers, 6);
    expect_field(0, "X-A", "v a l");
    expect_field(1, "X-Empty", "");
    expect_field(2, "X-Blank", "");
    expect_field(3, "X_Under_Score", "1");
    expect_field(4, "X-Text", "caf\xc3\xa9");
    expect_field(5, "!#$%&'*+-.^_`|~09azAZ", "t");
    /* Every pointer is into the head (no copies). */
    assert_true(resp.reason == fields + 13);
    for (size_t i = 0; i < resp.n_headers; i++) {
        const struct httpparse_header *h = &resp.headers[i];
        assert_true(h->name > fields && h->name + h->name_len < fields + resp.head_len);
        assert_true(h->value > h->name && h->value + h->value_len < fields + resp.head_len);
    }
}

static void test_response_bare_lf(void **state)
{
    (void)state;
    expect_resp_error("HTTP/1.1 101 ZQX\nUpgrade: websocket\r\n\r\n", "bare LF");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nUpgrade: websocket\n\r\n", "bare LF");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nUpgrade: websocket\r\n\n", "bare LF");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX: a\nb\r\n\r\n", "bare LF");
    expect_resp_error("\nHTTP/1.1 101 ZQX\r\n\r\n", "empty line before the status line");
    /* Refused when the line ends, not when the head does. */
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX: a\nY", "bare LF");
    expect_resp_error("HTTP/1.1 101\n", "bare LF");
}

static void test_response_cr_without_lf(void **state)
{
    (void)state;
    expect_resp_error("HTTP/1.1 101 ZQX\r\n\rX\r\n\r\n", "CR not followed by LF in response head");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX: a\rb\r\n\r\n", "control character in header value");
    expect_resp_error("HTTP/1.1 101 A\rZQX\r\n\r\n", "control character in reason phrase");
    expect_resp_error("HTTP/1.1 101\r\r\n\r\n", "malformed status line");
}

static void test_response_obs_fold(void **state)
{
    (void)state;
    expect_resp_error("HTTP/1.1 101 ZQX\r\nUpgrade: websocket\r\n ,x\r\n\r\n", "obs-fold");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nUpgrade: websocket\r\n\tx\r\n\r\n", "obs-fold");
    expect_resp_error("HTTP/1.1 101 ZQX\r\n Upgrade: websocket\r\n\r\n", "obs-fold");
}

static void test_response_control_bytes(void **state)
{
    (void)state;
    static const char nul[] = "HTTP/1.1 101 ZQX\r\nX: a\0b\r\n\r\n";
    expect_resp_error_n(nul, sizeof(nul) - 1, NULL, 400, "control character in header value");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX: a\x7f\r\n\r\n", "control character in header value");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX: \x1b[0m\r\n\r\n",
                      "control character in header value");
    expect_resp_error("HTTP/1.1 101 A\x01ZQX\r\n\r\n", "control character in reason phrase");
    expect_resp_error("HTTP/1.1 101 A\x7fZQX\r\n\r\n", "control character in reason phrase");
    static const char nul_reason[] = "HTTP/1.1 101 \0ZQX\r\n\r\n";
    expect_resp_error_n(nul_reason, sizeof(nul_reason) - 1, NULL, 400,
                        "control character in reason phrase");
}

static void test_response_bad_names(void **state)
{
    (void)state;
    expect_resp_error("HTTP/1.1 101 ZQX\r\nUpgrade : websocket\r\n\r\n",
                      "whitespace between header name and colon");
    expect_resp_error("HTTP/1.1 101 ZQX\r\n: v\r\n\r\n", "empty header name");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nNoColon\r\n\r\n", "header line without colon");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX@Y: v\r\n\r\n", "invalid character in header name");
    expect_resp_error("HTTP/1.1 101 ZQX\r\nX\"Y: v\r\n\r\n", "invalid character in header name");
    expect_resp_error("HTTP/1.1 101 ZQX\r\n\xc3\xa9: v\r\n\r\n",
                      "invalid character in header name");
}

static void test_response_bad_status_line(void **state)
{
    (void)state;
    expect_resp_error("HTTP/1.2 101 ZQX\r\n\r\n", "not 1.0 or 1.1");
    expect_resp_error("HTTP/2 101 ZQX\r\n\r\n", "not 1.0 or 1.1");
    expect_resp_error("HTTP/2.0 101 ZQX\r\n\r\n", "not 1.0 or 1.1");
    expect_resp_error("HTTP/1.x 101 ZQX\r\n\r\n", "not 1.0 or 1.1");
    expect_resp_error("http/1.1 101 ZQX\r\n\r\n", "malformed status line");
    expect_resp_error("HTTP/1.1\r\n\r\nZQX", "malformed status line");
    expect_resp_error("HTTP/1.1 10\r\n\r\nZQX", "malformed status line");
    expect_resp_error("HTTP/1.1  101 ZQX\r\n\r\n", "malformed status code");
    expect_resp_error("HTTP/1.1 1a1 ZQX\r\n\r\n", "malformed status code");
    expect_resp_error("HTTP/1.1 -10 ZQX\r\n\r\n", "malformed status code");
    expect_resp_error("HTTP/1.1 1011 ZQX\r\n\r\n", "malformed status line");
    expect_resp_error("HTTP/1.1 101\tZQX\r\n\r\n", "malformed status line");
    expect_resp_error("HTTP/1.1\t101 ZQX\r\n\r\n", "malformed status line");
    expect_resp_error("HTTP/1.1 099 ZQX\r\n\r\n", "status code below 100");
    expect_resp_error("HTTP/1.1 000\r\n\r\nZQX", "status code below 100");
    expect_resp_error("\r\nHTTP/1.1 101 ZQX\r\n\r\n", "empty line before the status line");
    expect_resp_error("\r\n\r\nZQX", "empty line before the status line");
    /* A peer speaking something else is refused from its first bytes. */
    expect_resp_error_n("SSH-2.0-ZQX", 3, NULL, 400, "malformed status line");
    expect_resp_error_n("ICY 200 OK\r\n", 1, NULL, 400, "malformed status line");
    expect_resp_error_n("HTTPS", 5, NULL, 400, "malformed status line");
    expect_resp_error_n("\x16\x03\x01", 3, NULL, 400, "malformed status line");
    /* ... and a status line is not judged before its line ends. */
    int code;
    const char *why;
    assert_int_equal(resp_parse_n("HTTP/", 5, NULL, &code, &why), HTTPPARSE_INCOMPLETE);
    assert_int_equal(resp_parse_n("HTTP/2.0 101", 12, NULL, &code, &why), HTTPPARSE_INCOMPLETE);
    assert_int_equal(resp_parse_n("", 0, NULL, &code, &why), HTTPPARSE_INCOMPLETE);
    assert_int_equal(resp_parse_n("\r", 1, NULL, &code, &why), HTTPPARSE_ERROR);
}

static void test_response_too_many_headers(void **state)
{
    (void)state;
    struct httpparse_limits lim = {.max_header_bytes = 8192, .max_headers = 3};
    char buf[1024];
    int off = snprintf(buf, sizeof(buf), "HTTP/1.1 101 ZQX\r\n");
    for (int i = 0; i < 3; i++)
        off += snprintf(buf + off, sizeof(buf) - (size_t)off, "X-%d: v\r\n", i);
    int end = off;
    off += snprintf(buf + off, sizeof(buf) - (size_t)off, "\r\n");
    int code;
    const char *why;
    assert_int_equal(resp_parse_n(buf, (size_t)off, &lim, &code, &why), HTTPPARSE_DONE);
    assert_int_equal(resp.n_headers, 3);
    off = end + snprintf(buf + end, sizeof(buf) - (size_t)end, "X-3: v\r\n\r\n");
    expect_resp_error_n(buf, (size_t)off, &lim, 431, "too many header fields");
    /* Refused as soon as a fourth field starts. */
    expect_resp_error_n(buf, (size_t)end + 1, &lim, 431, "too many header fields");

    /* Without limits (or with a larger one) the hard cap applies. */
    static char big[16384];
    off = snprintf(big, sizeof(big), "HTTP/1.1 101 ZQX\r\n");
    for (int i = 0; i < HTTPPARSE_MAX_HEADERS; i++)
        off += snprintf(big + off, sizeof(big) - (size_t)off, "X-%d: v\r\n", i);
    end = off;
    off += snprintf(big + off, sizeof(big) - (size_t)off, "\r\n");
    assert_int_equal(resp_parse_n(big, (size_t)off, NULL, &code, &why), HTTPPARSE_DONE);
    assert_int_equal(resp.n_headers, HTTPPARSE_MAX_HEADERS);
    off = end + snprintf(big + end, sizeof(big) - (size_t)end, "X-last: v\r\n\r\n");
    expect_resp_error_n(big, (size_t)off, NULL, 431, "too many header fields");
    lim.max_headers = 100000;
    lim.max_header_bytes = sizeof(big);
    expect_resp_error_n(big, (size_t)off, &lim, 431, "too many header fields");
}

static void test_response_limits(void **state)
{
    (void)state;
    char buf[1024];
    int off = snprintf(buf, sizeof(buf), "HTTP/1.1 101 ZQX\r\n");
    for (int i = 0; i < 6; i++)
        off += snprintf(buf + off, sizeof(buf) - (size_t)off, "X-Pad-%d: 0123456789\r\n", i);
    off += snprintf(buf + off, sizeof(buf) - (size_t)off, "\r\n");
    size_t head = (size_t)off;
    int code;
    const char *why;

    /* A head of exactly the limit fits; one byte less of limit does not. */
    struct httpparse_limits lim = {.max_header_bytes = head};
    assert_int_equal(resp_parse_n(buf, head, &lim, &code, &why), HTTPPARSE_DONE);
    assert_int_equal(resp.head_len, head);
    lim.max_header_bytes = head - 1;
    expect_resp_error_n(buf, head, &lim, 431, "response head too large");
    /* Refused as soon as the limit is reached without the end of the head,
     * INCOMPLETE before. */
    expect_resp_error_n(buf, head - 1, &lim, 431, "response head too large");
    assert_int_equal(resp_parse_n(buf, head - 2, &lim, &code, &why), HTTPPARSE_INCOMPLETE);
    /* An endless status line is bounded by the head limit too. */
    char line[600];
    memset(line, 'a', sizeof(line));
    memcpy(line, "HTTP/1.1 101 ", 13);
    lim.max_header_bytes = 512;
    assert_int_equal(resp_parse_n(line, 511, &lim, &code, &why), HTTPPARSE_INCOMPLETE);
    expect_resp_error_n(line, sizeof(line), &lim, 431, "response head too large");
    /* max_request_line does not apply to responses. */
    lim.max_request_line = 16;
    lim.max_header_bytes = 0; /* default: 32 KiB */
    assert_int_equal(resp_parse_n(buf, head, &lim, &code, &why), HTTPPARSE_DONE);
    /* Bytes after the head are not looked at, even past the limit. */
    static char tail[40000];
    memcpy(tail, buf, head);
    memset(tail + head, '\n', sizeof(tail) - head);
    assert_int_equal(resp_parse_n(tail, sizeof(tail), NULL, &code, &why), HTTPPARSE_DONE);
    assert_int_equal(resp.head_len, head);
    /* The default limit is 32 KiB. */
    static char huge[40000];
    memset(huge, 'a', sizeof(huge));
    memcpy(huge, "HTTP/1.1 200 ", 13);
    assert_int_equal(resp_parse_n(huge, 32767, NULL, &code, &why), HTTPPARSE_INCOMPLETE);
    expect_resp_error_n(huge, 32768, NULL, 431, "response head too large");
}

/* ---- the token class ---- */

static void test_tchar_table(void **state)
{
    (void)state;
    /* RFC 9110 §5.6.2, spelled out independently of the parser's table. */
    static const char punct[] = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c != 0 && memchr(punct, c, sizeof(punct) - 1) != NULL);
        if (httpparse_tchar((char)c) != want)
            fail_msg("httpparse_tchar(0x%02x) is %d", c, !want);
        char one = (char)c;
        assert_int_equal(httpparse_token_valid(&one, 1), want);
    }
    assert_true(httpparse_token_valid("openai-beta.realtime-v1", 23));
    assert_false(httpparse_token_valid("", 0));
    assert_false(httpparse_token_valid(NULL, 0));
    assert_false(httpparse_token_valid("a b", 3));
    assert_false(httpparse_token_valid("a\0b", 3));
    assert_true(httpparse_token_valid("a\0b", 1));
}

/* ---- chunked decoder ---- */

struct sink {
    char data[4096];
    size_t len;
    size_t calls;
    size_t limit; /* 0: unlimited */
};

static int sink_out(void *arg, const char *data, size_t n)
{
    struct sink *s = arg;
    s->calls++;
    if (s->limit > 0 && s->len + n > s->limit)
        return -1;
    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, data, n);
    s->len += n;
    return 0;
}

/* Feeds in[0..n) one byte at a time; returns the final status and the total
 * consumed in *used. */
static enum httpparse_chunked_status feed_bytewise(struct httpparse_chunked *st, const char *in,
                                                   size_t n, struct sink *sk, size_t *used,
                                                   const char **why)
{
    *used = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 99;
        enum httpparse_chunked_status rc =
            httpparse_chunked_feed(st, in + i, 1, &c, sink_out, sk, why);
        *used += c;
        if (rc != HTTPPARSE_CHUNKED_MORE)
            return rc;
        assert_int_equal(c, 1);
    }
    return HTTPPARSE_CHUNKED_MORE;
}

static enum httpparse_chunked_status feed_all(const char *in, size_t n, struct sink *sk,
                                              size_t *used, const char **why)
{
    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    *why = NULL;
    return httpparse_chunked_feed(&st, in, n, used, sink_out, sk, why);
}

static void test_chunked_simple(void **state)
{
    (void)state;
    const char *body = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    struct sink sk = {0};
    size_t used;
    const char *why;
    assert_int_equal(feed_all(body, strlen(body), &sk, &used, &why), HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(used, strlen(body));
    assert_int_equal(sk.len, 12);
    assert_memory_equal(sk.data, "hello, world", 12);
}

static void test_chunked_bytewise_ext_trailers(void **state)
{
    (void)state;
    const char *body = "A;name=value;q=\"quoted ; str\"\r\n0123456789\r\n"
                       "1f \t;x\r\nabcdefghijklmnopqrstuvwxyzABCDE\r\n"
                       "000\r\nX-Trailer: yes\r\nChecksum:\tabc \r\n\r\n";
    const char *want = "0123456789abcdefghijklmnopqrstuvwxyzABCDE";
    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    struct sink sk = {0};
    size_t used;
    const char *why = NULL;
    assert_int_equal(feed_bytewise(&st, body, strlen(body), &sk, &used, &why),
                     HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(used, strlen(body));
    assert_int_equal(sk.len, strlen(want));
    assert_memory_equal(sk.data, want, sk.len);
    /* Fed one byte at a time, each data byte arrives in its own call. */
    assert_int_equal(sk.calls, strlen(want));
}

static void test_chunked_every_split(void **state)
{
    (void)state;
    const char *body =
        "3;e\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n";
    size_t body_len = strlen(body) - strlen("GET / HTTP/1.1\r\n");
    size_t n = strlen(body);
    for (size_t split = 0; split <= n; split++) {
        struct httpparse_chunked st;
        httpparse_chunked_init(&st);
        struct sink sk = {0};
        size_t c1 = 0, c2 = 0;
        const char *why = NULL;
        enum httpparse_chunked_status rc =
            httpparse_chunked_feed(&st, body, split, &c1, sink_out, &sk, &why);
        if (rc == HTTPPARSE_CHUNKED_MORE) {
            assert_int_equal(c1, split);
            rc = httpparse_chunked_feed(&st, body + split, n - split, &c2, sink_out, &sk, &why);
        }
        assert_int_equal(rc, HTTPPARSE_CHUNKED_DONE);
        assert_int_equal(c1 + c2, body_len);
        assert_int_equal(sk.len, 19);
        assert_memory_equal(sk.data, "abc0123456789abcdef", 19);
    }
}

static void test_chunked_pipelined_rest(void **state)
{
    (void)state;
    const char *in = "2\r\nok\r\n0\r\n\r\nPOST / HTTP/1.1\r\n";
    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    struct sink sk = {0};
    size_t used;
    const char *why = NULL;
    assert_int_equal(httpparse_chunked_feed(&st, in, strlen(in), &used, sink_out, &sk, &why),
                     HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(used, strlen("2\r\nok\r\n0\r\n\r\n"));
    /* Once done, more input is left alone. */
    used = 99;
    assert_int_equal(httpparse_chunked_feed(&st, "xyz", 3, &used, sink_out, &sk, &why),
                     HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(used, 0);
}

static void test_chunked_size_forms(void **state)
{
    (void)state;
    struct sink sk = {0};
    size_t used;
    const char *why;
    const char *upper = "B\r\nhello world\r\n0\r\n\r\n";
    assert_int_equal(feed_all(upper, strlen(upper), &sk, &used, &why), HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(sk.len, 11);
    /* 16 digits with leading zeros is the most accepted. */
    sk.len = 0;
    const char *zeros = "0000000000000002\r\nhi\r\n0000000000000000\r\n\r\n";
    assert_int_equal(feed_all(zeros, strlen(zeros), &sk, &used, &why), HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(sk.len, 2);
    /* The largest chunk size is accepted (the data just never all arrives). */
    const char *cap = "3fffffffffffffff\r\nabc";
    assert_int_equal(feed_all(cap, strlen(cap), &sk, &used, &why), HTTPPARSE_CHUNKED_MORE);
    assert_int_equal(used, strlen(cap));
}

/* Expects the chunked input to fail with a reason containing why_part, both
 * in one feed and byte by byte. */
static void expect_chunked_error(const char *in, const char *why_part)
{
    struct sink sk = {0};
    size_t used;
    const char *why = NULL;
    enum httpparse_chunked_status rc = feed_all(in, strlen(in), &sk, &used, &why);
    if (rc != HTTPPARSE_CHUNKED_ERROR)
        fail_msg("expected chunked ERROR (%s), got %d", why_part, rc);
    assert_non_null(why);
    if (strstr(why, why_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", why, why_part);

    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    struct sink sk2 = {0};
    why = NULL;
    assert_int_equal(feed_bytewise(&st, in, strlen(in), &sk2, &used, &why),
                     HTTPPARSE_CHUNKED_ERROR);
    assert_non_null(why);
    assert_non_null(strstr(why, why_part));
    /* The error sticks. */
    why = NULL;
    assert_int_equal(httpparse_chunked_feed(&st, "0\r\n\r\n", 5, &used, sink_out, &sk2, &why),
                     HTTPPARSE_CHUNKED_ERROR);
    assert_non_null(why);
}

static void test_chunked_bare_lf(void **state)
{
    (void)state;
    expect_chunked_error("5\nhello\r\n0\r\n\r\n", "bare LF");
    expect_chunked_error("5\r\nhello\n0\r\n\r\n", "bare LF");
    expect_chunked_error("5;ext\nhello\r\n0\r\n\r\n", "bare LF");
    expect_chunked_error("0\r\n\n", "bare LF");
    expect_chunked_error("0\r\nX: y\n\r\n", "bare LF");
    expect_chunked_error("\n", "bare LF");
}

static void test_chunked_cr_without_lf(void **state)
{
    (void)state;
    expect_chunked_error("5\rhello\r\n", "CR not followed by LF");
    expect_chunked_error("5\r\nhello\rx", "CR not followed by LF");
    expect_chunked_error("0\r\n\rx", "CR not followed by LF");
    expect_chunked_error("0\r\nX: y\rx", "CR not followed by LF");
}

static void test_chunked_bad_sizes(void **state)
{
    (void)state;
    expect_chunked_error(" 5\r\nhello\r\n0\r\n\r\n", "not hexadecimal");
    expect_chunked_error("0x5\r\nhello\r\n0\r\n\r\n", "invalid character after chunk size");
    expect_chunked_error("-5\r\nhello\r\n", "not hexadecimal");
    expect_chunked_error("+5\r\nhello\r\n", "not hexadecimal");
    expect_chunked_error("\r\nhello\r\n", "not hexadecimal");
    expect_chunked_error("g\r\n", "not hexadecimal");
    expect_chunked_error("5 \r\nhello\r\n", "whitespace after chunk size");
    expect_chunked_error("00000000000000001\r\nh\r\n", "too many digits");
    expect_chunked_error("4000000000000000\r\n", "chunk size too large");
    expect_chunked_error("ffffffffffffffff\r\n", "chunk size too large");
}

static void test_chunked_data_not_crlf(void **state)
{
    (void)state;
    expect_chunked_error("5\r\nhelloX\r\n0\r\n\r\n", "chunk data not followed by CRLF");
    expect_chunked_error("3\r\nhello\r\n0\r\n\r\n", "chunk data not followed by CRLF");
}

static void test_chunked_extension_limits(void **state)
{
    (void)state;
    static char in[8192];
    size_t off = (size_t)snprintf(in, sizeof(in), "1;");
    memset(in + off, 'x', 4097);
    off += 4097;
    memcpy(in + off, "\r\na\r\n0\r\n\r\n", 11);
    expect_chunked_error(in, "chunk extension too long");
    /* Exactly the maximum is fine. */
    memcpy(in + 2 + 4096, "\r\na\r\n0\r\n\r\n", 11);
    struct sink sk = {0};
    size_t used;
    const char *why;
    assert_int_equal(feed_all(in, strlen(in), &sk, &used, &why), HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(sk.len, 1);
    expect_chunked_error("1;a\x01\r\nx\r\n0\r\n\r\n", "control character in chunk extension");
}

static void test_chunked_trailer_errors(void **state)
{
    (void)state;
    expect_chunked_error("0\r\nX: a\r\n folded\r\n\r\n", "obs-fold");
    expect_chunked_error("0\r\nX : a\r\n\r\n", "invalid chunked trailer field");
    expect_chunked_error("0\r\nX: a\x01\r\n\r\n", "control character in chunked trailer");
    static char in[20000];
    size_t off = (size_t)snprintf(in, sizeof(in), "0\r\n");
    while (off < 17000)
        off += (size_t)snprintf(in + off, sizeof(in) - off, "X-Pad: 0123456789abcdef\r\n");
    snprintf(in + off, sizeof(in) - off, "\r\n");
    expect_chunked_error(in, "chunked trailers too large");
}

static void test_chunked_consumer_refuses(void **state)
{
    (void)state;
    const char *in = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    struct sink sk = {.limit = 7};
    size_t used;
    const char *why = NULL;
    assert_int_equal(feed_all(in, strlen(in), &sk, &used, &why), HTTPPARSE_CHUNKED_ERROR);
    assert_non_null(why);
    assert_non_null(strstr(why, "too large"));
    assert_int_equal(sk.len, 5);
}

static void test_chunked_null_output(void **state)
{
    (void)state;
    const char *in = "5\r\nhello\r\n0\r\n\r\n";
    struct httpparse_chunked st;
    httpparse_chunked_init(&st);
    size_t used;
    const char *why = NULL;
    assert_int_equal(httpparse_chunked_feed(&st, in, strlen(in), &used, NULL, NULL, &why),
                     HTTPPARSE_CHUNKED_DONE);
    assert_int_equal(used, strlen(in));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_query),
        cmocka_unit_test(test_get_without_query),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_content_length_values),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_pipelined_two_requests),
        cmocka_unit_test(test_keep_alive_http11),
        cmocka_unit_test(test_keep_alive_http10),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_incremental_every_prefix),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_value_ows_and_obs_text),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_limits_exact_fit),
        cmocka_unit_test(test_cl_and_te),
        cmocka_unit_test(test_te_not_chunked),
        cmocka_unit_test(test_te_gzip_chunked),
        cmocka_unit_test(test_te_duplicate),
        cmocka_unit_test(test_te_http10),
        cmocka_unit_test(test_duplicate_cl_equal),
        cmocka_unit_test(test_duplicate_cl_different),
        cmocka_unit_test(test_malformed_cl),
        cmocka_unit_test(test_space_before_colon),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_bare_lf_in_head),
        cmocka_unit_test(test_bare_cr_in_head),
        cmocka_unit_test(test_missing_host),
        cmocka_unit_test(test_duplicate_host),
        cmocka_unit_test(test_invalid_host),
        cmocka_unit_test(test_underscore_in_name),
        cmocka_unit_test(test_bad_header_names),
        cmocka_unit_test(test_control_in_value),
        cmocka_unit_test(test_request_line_too_long),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_version_not_supported),
        cmocka_unit_test(test_malformed_version),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_malformed_request_line),
        cmocka_unit_test(test_response_switching_protocols),
        cmocka_unit_test(test_response_shapes),
        cmocka_unit_test(test_response_bare_lf),
        cmocka_unit_test(test_response_cr_without_lf),
        cmocka_unit_test(test_response_obs_fold),
        cmocka_unit_test(test_response_control_bytes),
        cmocka_unit_test(test_response_bad_names),
        cmocka_unit_test(test_response_bad_status_line),
        cmocka_unit_test(test_response_too_many_headers),
        cmocka_unit_test(test_response_limits),
        cmocka_unit_test(test_tchar_table),
        cmocka_unit_test(test_chunked_simple),
        cmocka_unit_test(test_chunked_bytewise_ext_trailers),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_pipelined_rest),
        cmocka_unit_test(test_chunked_size_forms),
        cmocka_unit_test(test_chunked_bare_lf),
        cmocka_unit_test(test_chunked_cr_without_lf),
        cmocka_unit_test(test_chunked_bad_sizes),
        cmocka_unit_test(test_chunked_data_not_crlf),
        cmocka_unit_test(test_chunked_extension_limits),
        cmocka_unit_test(test_chunked_trailer_errors),
        cmocka_unit_test(test_chunked_consumer_refuses),
        cmocka_unit_test(test_chunked_null_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
