/* http.h - downstream HTTP/1.1 connections on bufferevents: reading and
 * validating requests (httpparse), bodies, keep-alive, pipelining (one
 * request at a time, answered in order), limits, timeouts, and the response
 * API handlers use. Both the data plane and the admin listener use it with
 * different handlers. */
#ifndef BYOK_HTTP_H
#define BYOK_HTTP_H

#include "common.h"
#include "config.h"
#include "conncap.h"
#include "httpparse.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>

struct http_conn;
struct http_server;

/* A complete request: the head (copied, so it outlives the input buffer) and
 * the whole body (de-chunked). Borrowed by the handler until it finishes the
 * response. */
struct http_request {
    struct httpparse_request head; /* pointers into head_buf */
    char *head_buf;
    struct evbuffer *body;
    int64_t start_ms; /* wall clock when the head was complete */
    int64_t start_mono;
    /* What the head handler made of the request, handed to the request
     * handler; freed with ctx_free when the request ends before it gets
     * there (the client left during the body). The request handler takes
     * ownership (and sets ctx to NULL). */
    void *ctx;
    void (*ctx_free)(void *ctx);
};

/* Called when a request head is complete, before any of its body is read
 * or "100 Continue" is sent: the place to authenticate. Return 0 to go on
 * (the body is read, then on_request is called), or answer with
 * http_respond*() and return -1: the body is not read and the connection
 * closes after the answer when a body was announced. Return 1 to decide
 * later (an answer from another service): nothing more is read meanwhile
 * beyond what buffers hold; then call http_head_continue() or answer as for
 * -1. Without either within limits.header_timeout_ms the connection is
 * closed (the request's ctx_free runs, so a pending decision can be
 * dropped there). */
typedef int (*http_head_cb)(struct http_conn *c, struct http_request *req, void *arg);
/* In on_head: the request's whole body (none, or its Content-Length bytes,
 * not chunked) is in the input buffer already, so that reading it takes
 * nothing more from the client. */
bool http_body_buffered(const struct http_conn *c);
/* A head decided later (on_head returned 1) passed: read the body, then
 * on_request. A no-op when the request was answered meanwhile. */
void http_head_continue(struct http_conn *c);
/* Called once per request; the handler must finish it with http_respond*()
 * or http_stream_begin()/http_stream_end(), possibly later (async). */
typedef void (*http_request_cb)(struct http_conn *c, struct http_request *req, void *arg);
/* The client went away (or the server shuts down hard) while a request was
 * in flight: the handler must stop all work for it and must not touch c
 * after returning. */
typedef void (*http_abort_cb)(struct http_conn *c, void *arg);
/* The client's output buffer drained below the low watermark (resume a
 * paused upstream). */
typedef void (*http_drain_cb)(struct http_conn *c, void *arg);

struct http_server_opts {
    const struct config_limits *limits;
    http_head_cb on_head; /* may be NULL */
    http_request_cb on_request;
    void *arg;
    const char *name; /* "data" | "admin", for logs */
    SSL_CTX *ssl_ctx; /* TLS listener when set (borrowed; one SSL per connection) */
    /* Caps on open connections (borrowed, may be shared by servers on
     * several threads; NULL: none). A connection over a cap is refused at
     * accept without reading it: on a plain listener with one write of a
     * fixed 503 (429 for the per-address cap) with Retry-After, on a TLS
     * listener by closing it (no handshake is spent on it). */
    struct conncap *cap;
    /* Not the proxy's own clients (the in-process simulator, sim.h): its
     * connections and refusals stay out of the proxy's metrics. */
    bool uncounted;
};

/* A server-side TLS context from PEM files: TLS 1.2+, ALPN "http/1.1".
 * Returns NULL with a message in err (naming the file and OpenSSL's reason).
 * Caller frees with SSL_CTX_free(). */
MUST_CHECK SSL_CTX *http_tls_context(const char *cert_file, const char *key_file, char *err,
                                     size_t err_size);

/* Creates a server on base that accepts on listen_fd (an already bound and
 * listening socket; the server takes ownership). When accept() fails for
 * want of descriptors (or another non-transient error) the listener is
 * paused - no busy loop, one log line per episode at most once a second -
 * and resumed when one of its connections closes or after a backoff of
 * 50 ms doubling to 1 s. Caller frees with http_server_free(). */
MUST_CHECK struct http_server *http_server_new(struct event_base *base, int listen_fd,
                                               const struct http_server_opts *opts);
/* Stops accepting; idle keep-alive connections are closed at once, busy
 * ones after their current response. */
void http_server_stop_accepting(struct http_server *s);
/* Number of open connections (including ones with a request in flight). */
size_t http_server_conn_count(const struct http_server *s);
size_t http_server_busy_count(const struct http_server *s);
/* Closes every connection (aborting in-flight requests) and frees. */
void http_server_free(struct http_server *s);

/* Opens a listening TCP socket on "host:port" with SO_REUSEADDR and, if
 * reuseport, SO_REUSEPORT. Returns the fd or -1 with a message in err. */
MUST_CHECK int http_listen(const char *addr, bool reuseport, char *err, size_t err_size);
/* The same from a host (a name, an IPv4 or an IPv6 address without
 * brackets) and a port; port 0 lets the kernel pick one (getsockname). */
MUST_CHECK int http_listen_port(const char *host, int port, bool reuseport, char *err,
                                size_t err_size);

/* Registers the abort/drain callbacks for the request in flight. */
void http_conn_set_callbacks(struct http_conn *c, http_abort_cb on_abort, http_drain_cb on_drain,
                             void *arg);
struct event_base *http_conn_base(struct http_conn *c);
/* Bytes waiting in the client's output buffer. */
size_t http_conn_output_pending(struct http_conn *c);
/* Peer address for logs ("127.0.0.1:53412"). */
const char *http_conn_peer(struct http_conn *c);

/* A response header to add. */
struct http_kv {
    const char *name;
    const char *value;
};

/* Whole response. Adds Content-Length, Date, Connection as needed. */
void http_respond(struct http_conn *c, int status, const char *content_type, const char *body,
                  size_t len, const struct http_kv *extra, size_t n_extra);
/* JSON response; takes ownership of body (json_decref). */
void http_respond_json(struct http_conn *c, int status, json_t *body, const struct http_kv *extra,
                       size_t n_extra);

/* Streamed response. head holds the status line's code and reason plus the
 * headers to send verbatim (each "Name: value\r\n"); the server adds framing:
 * Content-Length when content_length >= 0, else chunked (HTTP/1.1) or close
 * delimiting (HTTP/1.0). */
void http_stream_begin(struct http_conn *c, int status, const char *reason,
                       struct evbuffer *headers, int64_t content_length);
/* Appends body bytes (framed as chunks when chunked). */
void http_stream_write(struct http_conn *c, const char *data, size_t len);
/* Ends the response. complete=false means the body is truncated: the
 * connection is closed without a final chunk so the client sees the
 * truncation. */
void http_stream_end(struct http_conn *c, bool complete);
bool http_stream_started(struct http_conn *c);

/* Hands the connection's bufferevent to the caller (a WebSocket upgrade):
 * callbacks, timeouts and watermarks are cleared, bytes the client sent
 * after the request stay in its input buffer. The http_conn is finished
 * (freed at the next loop turn) and the request it carried with it: copy
 * what you need from the request first. Caller owns (frees) the result,
 * and the connection's place under the caps, moved to *slot: the caller
 * gives it back with conncap_leave() when it closes the socket. */
MUST_CHECK struct bufferevent *http_conn_take(struct http_conn *c, struct conncap_slot *slot);

/* Reason phrase for a status code. */
const char *http_reason(int status);

#endif
