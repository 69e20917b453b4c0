/* httpparse.h - strict HTTP/1.1 head parsing (RFC 9112 as HAProxy and
 * Envoy apply it, DESIGN §4c): the request heads clients send, the response
 * heads upstreams send back (the WebSocket handshake reply), and the one
 * RFC 9110 token class every module checks names against. Pure functions over
 * byte buffers: no I/O, no allocation, fuzzable.
 *
 * Rejected with 400 (the caller answers and closes, nothing goes upstream):
 * Content-Length together with Transfer-Encoding; a Transfer-Encoding other
 * than exactly "chunked" (case-insensitive); duplicate (even equal) or
 * malformed Content-Length; whitespace between a field name and the colon;
 * obs-fold (a line starting with SP/HTAB); a bare LF anywhere in the head or in
 * chunked framing; missing or duplicate Host; a field name containing '_' or
 * any non-token byte; control bytes in values; a malformed request line;
 * an HTTP version other than 1.0/1.1 (505 for HTTP/2+ or 0.9 style).
 * 414 when the request line is longer than the limit; 431 when the head is
 * larger than the limit or has more fields than the limit. */
#ifndef BYOK_HTTPPARSE_H
#define BYOK_HTTPPARSE_H

#include "common.h"

#define HTTPPARSE_MAX_HEADERS 128 /* hard cap; limits.max_headers may be lower */

/* A limit of 0 means the default (8 KiB request line, 32 KiB head,
 * HTTPPARSE_MAX_HEADERS fields). */
struct httpparse_limits {
    size_t max_request_line; /* requests only: a response's status line is
                                bounded by max_header_bytes */
    size_t max_header_bytes; /* whole head incl. the first line and final CRLF */
    size_t max_headers;
};

struct httpparse_header {
    const char *name; /* points into the parsed buffer; not NUL-terminated */
    size_t name_len;
    const char *value; /* leading/trailing OWS removed */
    size_t value_len;
};

struct httpparse_request {
    const char *method;
    size_t method_len;
    const char *target; /* origin-form "/path?query" (absolute-form is rejected: 400) */
    size_t target_len;
    const char *path; /* target up to '?' */
    size_t path_len;
    const char *query; /* after '?', NULL when absent */
    size_t query_len;
    int version_minor; /* 0 or 1 */
    struct httpparse_header headers[HTTPPARSE_MAX_HEADERS];
    size_t n_headers;
    size_t head_len; /* bytes of the head incl. the empty line */

    /* Derived from the headers while parsing. */
    bool chunked;           /* Transfer-Encoding: chunked */
    int64_t content_length; /* -1 when absent */
    bool keep_alive;        /* version default adjusted by Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade_websocket; /* Connection: upgrade + Upgrade: websocket */
    const char *host;       /* value of the single Host field */
    size_t host_len;
};

enum httpparse_status {
    HTTPPARSE_DONE = 0,   /* a whole head was parsed; req->head_len bytes used */
    HTTPPARSE_INCOMPLETE, /* need more bytes (limits not yet exceeded) */
    HTTPPARSE_ERROR,      /* *http_status and *why are set */
};

/* Parses one request head from buf[0..len). Pointers in req point into buf
 * and stay valid as long as buf does. On HTTPPARSE_ERROR, *http_status is
 * 400/414/431/505 and *why a static human-readable reason that names what was
 * wrong (safe to send to the client: it never quotes the input). */
MUST_CHECK enum httpparse_status httpparse_request(const char *buf, size_t len,
                                                   const struct httpparse_limits *limits,
                                                   struct httpparse_request *req, int *http_status,
                                                   const char **why);

/* Response heads (RFC 9112 §4), as strict as requests: "HTTP/1.0" or
 * "HTTP/1.1", one SP, three digits (100-999), then nothing or SP and a reason
 * phrase (HTAB, SP, VCHAR, obs-text); field names are tokens ('_' allowed:
 * nothing maps a response's names to variables) followed directly by ':';
 * values without control bytes. CRLF line ends only: a bare LF, a CR without
 * LF, obs-fold and leading empty lines are errors. Nothing is derived from
 * the fields: the caller walks headers[] (several fields may carry one list,
 * e.g. Connection) with httpparse_list_has. */
struct httpparse_response {
    int version_minor;  /* 0 or 1 */
    int status;         /* 100..999 */
    const char *reason; /* points into the parsed buffer; may be empty */
    size_t reason_len;
    struct httpparse_header headers[HTTPPARSE_MAX_HEADERS];
    size_t n_headers;
    size_t head_len; /* bytes of the head incl. the empty line */
};

/* Parses one response head from buf[0..len) (bytes after the head, e.g. the
 * first WebSocket frames, are not looked at). Uses limits->max_header_bytes
 * and max_headers (limits may be NULL: defaults). Pointers in resp point into
 * buf and stay valid as long as buf does. INCOMPLETE only while the head can
 * still end within the limits. On HTTPPARSE_ERROR, *code (may be NULL) is 431
 * when the head is larger than the limit or has more fields than the limit,
 * else 400 (malformed), and *why (may be NULL) a static reason that never
 * quotes the input. */
MUST_CHECK enum httpparse_status httpparse_response(const char *buf, size_t len,
                                                    const struct httpparse_limits *limits,
                                                    struct httpparse_response *resp, int *code,
                                                    const char **why);

/* True if c is an RFC 9110 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~". The
 * one token table of the tree (field names, methods, subprotocol names). */
bool httpparse_tchar(char c);

/* True if s[0..n) is a non-empty RFC 9110 token. */
bool httpparse_token_valid(const char *s, size_t n);

/* Case-insensitive lookup of the first field called name; NULL if none. */
const struct httpparse_header *httpparse_find(const struct httpparse_request *req,
                                              const char *name);

/* True if the comma-separated list in value (Connection-style) contains token
 * (case-insensitive). */
bool httpparse_list_has(const char *value, size_t value_len, const char *token);

/* Incremental chunked-body decoder. Strict: chunk-size is hex without leading
 * whitespace, extensions are skipped, every line ends in CRLF (bare LF → error),
 * trailers are skipped (they are not forwarded). */
struct httpparse_chunked {
    int state;          /* private */
    uint64_t remaining; /* private: bytes left in the current chunk */
    size_t line_len;    /* private: length of the current size/trailer line */
};

enum httpparse_chunked_status {
    HTTPPARSE_CHUNKED_MORE = 0, /* all input consumed, body not finished */
    HTTPPARSE_CHUNKED_DONE,     /* the final chunk and trailers were read */
    HTTPPARSE_CHUNKED_ERROR,
};

void httpparse_chunked_init(struct httpparse_chunked *st);

/* Decodes in[0..len). Data bytes are passed to out(arg, data, n) (possibly
 * several calls). *consumed is how many input bytes were used: all of them on
 * MORE; on DONE the bytes after the body (a pipelined next request) are not
 * consumed. out returns -1 to stop with ERROR (e.g. body too large). *why is
 * set on ERROR. */
typedef int (*httpparse_data_cb)(void *arg, const char *data, size_t n);
MUST_CHECK enum httpparse_chunked_status
httpparse_chunked_feed(struct httpparse_chunked *st, const char *in, size_t len, size_t *consumed,
                       httpparse_data_cb out, void *arg, const char **why);

#endif
