/* upstream_h1.c - the proxy's own HTTP/1.1 client, for plain http://
 * upstreams given by address (the simulator, a sidecar, the bench's mock):
 * what libcurl's multi machinery cost per request (a liveness poll() and a
 * socket registered and removed with epoll for every transfer, a recv()
 * until EAGAIN, an easy handle and its 16 KiB buffer per transfer) is not
 * paid here. Per request: one sendmsg() of the head and body, usually one
 * recv() of the reply; connections stay registered for reading while idle,
 * so an upstream that closes one is seen at once and it is dropped.
 *
 *   start ──idle connection of the origin──────────────> SENDING
 *     └───none: non-blocking connect ──> CONNECTING ──writable──┘
 *   SENDING ──all sent──> HEAD ──final (non-1xx) head: on_head──> BODY
 *   BODY ──Content-Length / last chunk / EOF──> done: connection idle (or
 *     closed), transfer freed, on_done
 *
 * A reused connection that the upstream closed before sending a byte of
 * reply (its keep-alive ran out as the request went) is retried once on a
 * new connection, as libcurl does. Body bytes go to the consumer straight
 * from the engine's read buffer; only bytes a paused consumer has not
 * taken are copied (pending) and reading stops until upstream_resume.
 * Callbacks are never called from inside upstream_h1_start or
 * upstream_h1_resume: failures found there and resumed delivery run from a
 * zero-delay event (kick). */
#include "common.h"
#include "upstream_engine.h"
#include "httpparse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/crypto.h>

#define H1_READ_BUF       (16 * 1024) /* one recv(); what a paused consumer may hold */
#define H1_IDLE_TIMEOUT_S 60          /* an idle connection is closed after this */
#define H1_MAX_ORIGINS    64          /* distinct upstreams; more go to libcurl */
#define H1_HOST_MAX       80

struct h1_origin {
    char host[H1_HOST_MAX]; /* the URL's authority: the Host header */
    size_t host_len;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct h1_conn *idle; /* most recently used first */
};

struct h1_conn {
    struct upstream_h1 *eng;
    struct h1_origin *origin;
    evutil_socket_t fd;
    struct event rev;        /* EV_READ|EV_PERSIST while connected (idle too) */
    struct event wev;        /* while connecting or a send was partial */
    struct event idle_timer; /* while idle */
    struct h1_conn *prev_idle, *next_idle;
    struct h1_xfer *x; /* NULL while idle */
    bool connected;
    bool idle;
    unsigned uses; /* requests sent on it before the current one */
};

enum h1_state {
    H1_CONNECTING = 0,
    H1_SENDING,
    H1_HEAD, /* request sent, reply head not complete */
    H1_BODY,
};

enum h1_framing {
    H1_NO_BODY = 0,
    H1_LENGTH,
    H1_CHUNKED,
    H1_UNTIL_CLOSE,
};

struct h1_xfer {
    struct upstream_xfer base; /* UPSTREAM_ENGINE_H1 */
    struct upstream_h1 *eng;
    struct h1_xfer *prev, *next; /* eng->xfers */
    struct h1_origin *origin;
    struct h1_conn *conn;
    const struct upstream_callbacks *cb;
    void *arg;
    enum h1_state state;
    enum h1_framing framing;

    char *head; /* the request head; carries the key: wiped before free */
    size_t head_len;
    const char *body; /* borrowed (upstream.h) */
    size_t body_len;
    size_t sent; /* of head + body */

    char *rhead; /* reply head bytes while it spans reads */
    size_t rhead_len;
    int64_t remaining; /* H1_LENGTH */
    struct httpparse_chunked chunked;
    char *pending; /* body bytes the paused consumer has not taken */
    size_t pending_len;

    struct event timer; /* connect timeout, then the whole-reply deadline */
    struct event kick;  /* deferred failure or resumed delivery */
    int64_t deadline;   /* mono ms; 0 = none */
    CURLcode fail_code; /* set with fail_msg: kick fails the transfer */
    char fail_msg[CURL_ERROR_SIZE];

    unsigned head_only : 1; /* HEAD request: the reply has no body */
    unsigned paused : 1;
    unsigned complete : 1; /* the whole body arrived; pending still to deliver */
    unsigned reusable : 1; /* the connection may carry another request */
    unsigned retried : 1;
    unsigned got_bytes : 1;
};

struct upstream_h1 {
    struct event_base *base;
    const struct config *cfg;
    struct h1_origin origins[H1_MAX_ORIGINS];
    size_t n_origins;
    size_t n_idle;
    size_t active;
    struct h1_xfer *xfers;
    char *lines_buf; /* the reply head's "Name: value" lines for on_head */
    size_t lines_size;
    const char *lines[HTTPPARSE_MAX_HEADERS];
    char rbuf[H1_READ_BUF];
};

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void send_some(struct h1_xfer *x);
static bool feed(struct h1_xfer *x, const char *data, size_t len);

/* --- connections ---------------------------------------------------------- */

static void idle_unlink(struct h1_conn *c)
{
    if (!c->idle)
        return;
    if (c->prev_idle != NULL)
        c->prev_idle->next_idle = c->next_idle;
    else
        c->origin->idle = c->next_idle;
    if (c->next_idle != NULL)
        c->next_idle->prev_idle = c->prev_idle;
    c->prev_idle = c->next_idle = NULL;
    c->idle = false;
    c->eng->n_idle--;
}

static void conn_close(struct h1_conn *c)
{
    if (c == NULL)
        return;
    idle_unlink(c);
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->idle_timer);
    if (c->fd != -1)
        close(c->fd);
    free(c);
}

static void idle_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_close(arg);
}

/* Back to the origin's idle list, or closed when the worker keeps enough. */
static void conn_release(struct h1_conn *c)
{
    struct upstream_h1 *h = c->eng;
    c->x = NULL;
    event_del(&c->wev);
    event_add(&c->rev, NULL); /* a paused reply had stopped it */
    if (h->n_idle >= UPSTREAM_IDLE_MAX) {
        conn_close(c);
        return;
    }
    c->idle = true;
    c->prev_idle = NULL;
    c->next_idle = c->origin->idle;
    if (c->next_idle != NULL)
        c->next_idle->prev_idle = c;
    c->origin->idle = c;
    h->n_idle++;
    struct timeval tv = {H1_IDLE_TIMEOUT_S, 0};
    evtimer_add(&c->idle_timer, &tv);
}

static struct h1_conn *conn_new(struct upstream_h1 *h, struct h1_origin *o, evutil_socket_t fd)
{
    struct h1_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->eng = h;
    c->origin = o;
    c->fd = fd;
    event_assign(&c->rev, h->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    event_assign(&c->wev, h->base, fd, EV_WRITE, conn_write_cb, c);
    evtimer_assign(&c->idle_timer, h->base, idle_timeout_cb, c);
    return c;
}

/* --- transfers: the end ----------------------------------------------------- */

static void xfer_free(struct h1_xfer *x)
{
    struct upstream_h1 *h = x->eng;
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    h->active--;
    event_del(&x->timer);
    event_del(&x->kick);
    if (x->head != NULL) {
        OPENSSL_cleanse(x->head, x->head_len);
        free(x->head);
    }
    free(x->rhead);
    free(x->pending);
    free(x);
}

/* Ends the transfer: the connection back to the idle list (a whole reply on
 * a connection that may carry another) or closed, the transfer freed, then
 * on_done. Nothing of x may be touched after. */
static void finish(struct h1_xfer *x, CURLcode code, const char *msg)
{
    struct h1_conn *c = x->conn;
    x->conn = NULL;
    if (c != NULL) {
        if (code == CURLE_OK && x->reusable && c->connected)
            conn_release(c);
        else
            conn_close(c);
    }
    const struct upstream_callbacks *cb = x->cb;
    void *arg = x->arg;
    char errbuf[CURL_ERROR_SIZE];
    str_copy(errbuf, sizeof(errbuf), msg); /* msg may live in x */
    xfer_free(x);
    cb->on_done(NULL, code, errbuf, arg);
}

/* Fails later, from the kick event: for failures found inside
 * upstream_h1_start. */
static void fail_deferred(struct h1_xfer *x, CURLcode code, const char *msg)
{
    x->fail_code = code;
    if (msg != x->fail_msg)
        snprintf(x->fail_msg, sizeof(x->fail_msg), "%s", msg);
    event_active(&x->kick, EV_TIMEOUT, 1);
}

/* --- connecting and sending ------------------------------------------------- */

static void arm_timer(struct h1_xfer *x, int64_t ms)
{
    if (ms <= 0) {
        event_del(&x->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(&x->timer, &tv);
}

/* A new connection for x. Returns 0, or -1 with x->fail_msg set. */
static int connect_new(struct h1_xfer *x)
{
    struct upstream_h1 *h = x->eng;
    struct h1_origin *o = x->origin;
    int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(x->fail_msg, sizeof(x->fail_msg), "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&o->addr, o->addr_len) == -1 && errno != EINPROGRESS) {
        snprintf(x->fail_msg, sizeof(x->fail_msg), "could not connect to %s: %s", o->host,
                 strerror(errno));
        close(fd);
        return -1;
    }
    struct h1_conn *c = conn_new(h, o, fd);
    if (c == NULL) {
        close(fd);
        snprintf(x->fail_msg, sizeof(x->fail_msg), "out of memory");
        return -1;
    }
    c->x = x;
    x->conn = c;
    x->state = H1_CONNECTING;
    event_add(&c->wev, NULL);
    int64_t ms = h->cfg->limits.upstream_connect_timeout_ms;
    if (x->deadline) /* the whole-reply deadline runs while connecting too */
        ms = MIN(ms, MAX(x->deadline - mono_ms(), 1));
    arm_timer(x, ms);
    return 0;
}

/* A transfer whose reused connection died before any reply goes again,
 * once, on a new connection. Returns false when it may not; true when it
 * is connecting again or failed to (fail_code set: the caller fails it). */
static bool retry(struct h1_xfer *x)
{
    if (x->retried || x->got_bytes || x->conn == NULL || x->conn->uses == 0)
        return false;
    x->retried = 1;
    conn_close(x->conn);
    x->conn = NULL;
    x->sent = 0;
    if (connect_new(x) == -1)
        x->fail_code = CURLE_COULDNT_CONNECT;
    return true;
}

static void connected(struct h1_xfer *x)
{
    struct h1_conn *c = x->conn;
    c->connected = true;
    event_add(&c->rev, NULL);
    x->state = H1_SENDING;
    int64_t left = x->deadline ? x->deadline - mono_ms() : 0;
    if (x->deadline && left <= 0) {
        x->fail_code = CURLE_OPERATION_TIMEDOUT;
        snprintf(x->fail_msg, sizeof(x->fail_msg), "the upstream did not answer in time");
        return;
    }
    arm_timer(x, left);
    send_some(x);
}

/* Sends what is left of head and body; waits for writability if the socket
 * takes less. Never ends x: a failure sets fail_code for the caller (a
 * callback fails x, start defers it). */
static void send_some(struct h1_xfer *x)
{
    struct h1_conn *c = x->conn;
    struct iovec iov[2];
    int n = 0;
    if (x->sent < x->head_len)
        iov[n++] = (struct iovec){x->head + x->sent, x->head_len - x->sent};
    size_t body_sent = x->sent > x->head_len ? x->sent - x->head_len : 0;
    if (body_sent < x->body_len)
        iov[n++] = (struct iovec){(void *)(x->body + body_sent), x->body_len - body_sent};
    if (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                event_add(&c->wev, NULL);
                return;
            }
            int err = errno;
            if (!retry(x)) {
                x->fail_code = CURLE_SEND_ERROR;
                snprintf(x->fail_msg, sizeof(x->fail_msg), "send to the upstream failed: %s",
                         strerror(err));
            }
            return;
        }
        x->sent += (size_t)w;
    }
    if (x->sent < x->head_len + x->body_len) {
        event_add(&c->wev, NULL);
        return;
    }
    if (x->state == H1_SENDING)
        x->state = H1_HEAD;
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    struct h1_xfer *x = c->x;
    (void)what;
    if (x == NULL)
        return;
    if (x->state == H1_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            char msg[CURL_ERROR_SIZE];
            snprintf(msg, sizeof(msg), "could not connect to %s: %s", x->origin->host,
                     strerror(err));
            finish(x, CURLE_COULDNT_CONNECT, msg);
            return;
        }
        connected(x);
    } else if (x->state == H1_SENDING) {
        send_some(x);
    }
    if (x->fail_code != CURLE_OK)
        finish(x, x->fail_code, x->fail_msg);
}

/* --- the reply ------------------------------------------------------------ */

/* Body bytes to the consumer, or to pending while it is paused. Also the
 * chunked decoder's output (never stops it). */
static int deliver(void *arg, const char *data, size_t len)
{
    struct h1_xfer *x = arg;
    if (len == 0)
        return 0;
    if (!x->paused && x->cb->on_data(&x->base, data, len, x->arg) == UPSTREAM_DATA_OK)
        return 0;
    if (!x->paused) {
        x->paused = 1;
        if (x->conn != NULL)
            event_del(&x->conn->rev);
    }
    char *p = realloc(x->pending, x->pending_len + len);
    if (p == NULL) {
        log_error("upstream: out of memory holding a paused reply");
        return -1;
    }
    memcpy(p + x->pending_len, data, len);
    x->pending = p;
    x->pending_len += len;
    return 0;
}

/* The whole body arrived: done now, or once a paused consumer took it. */
static void complete(struct h1_xfer *x)
{
    x->complete = 1;
    if (!x->paused)
        finish(x, CURLE_OK, NULL);
}

static int64_t parse_length(const char *v, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        r = r * 10 + (v[i] - '0');
    }
    return r;
}

/* A final reply head: framing, reuse, on_head; extra is the count of bytes
 * read after it. Returns false when x ended. */
static bool take_head(struct h1_xfer *x, const struct httpparse_response *r, size_t extra)
{
    struct upstream_h1 *h = x->eng;
    int64_t cl = -1;
    bool chunked = false, te = false, close_after = r->version_minor == 0;
    size_t used = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct httpparse_header *hd = &r->headers[i];
        if (hd->name_len == 14 && strncasecmp(hd->name, "content-length", 14) == 0) {
            int64_t v = parse_length(hd->value, hd->value_len);
            if (v < 0 || (cl >= 0 && v != cl)) {
                finish(x, CURLE_WEIRD_SERVER_REPLY, "the upstream sent an invalid Content-Length");
                return false;
            }
            cl = v;
        } else if (hd->name_len == 17 && strncasecmp(hd->name, "transfer-encoding", 17) == 0) {
            te = true;
            size_t n = hd->value_len;
            chunked = n >= 7 && strncasecmp(hd->value + n - 7, "chunked", 7) == 0;
        } else if (hd->name_len == 10 && strncasecmp(hd->name, "connection", 10) == 0) {
            if (httpparse_list_has(hd->value, hd->value_len, "close"))
                close_after = true;
            else if (r->version_minor == 0 &&
                     httpparse_list_has(hd->value, hd->value_len, "keep-alive"))
                close_after = false;
        }
        /* "Name: value\0" for the consumer. */
        size_t need = hd->name_len + 2 + hd->value_len + 1;
        if (used + need > h->lines_size) {
            finish(x, CURLE_WEIRD_SERVER_REPLY, "the upstream's reply head is too large");
            return false;
        }
        char *line = h->lines_buf + used;
        memcpy(line, hd->name, hd->name_len);
        memcpy(line + hd->name_len, ": ", 2);
        memcpy(line + hd->name_len + 2, hd->value, hd->value_len);
        line[need - 1] = '\0';
        h->lines[i] = line;
        used += need;
    }
    if (r->status == 204 || r->status == 304 || x->head_only) {
        x->framing = H1_NO_BODY;
    } else if (te) {
        /* RFC 9112 §6.3: Transfer-Encoding wins over Content-Length; a
         * coding other than chunked last is read until the close. */
        x->framing = chunked ? H1_CHUNKED : H1_UNTIL_CLOSE;
        cl = -1;
        if (chunked)
            httpparse_chunked_init(&x->chunked);
    } else if (cl >= 0) {
        x->framing = H1_LENGTH;
        x->remaining = cl;
    } else {
        x->framing = H1_UNTIL_CLOSE;
    }
    x->reusable = !close_after && x->framing != H1_UNTIL_CLOSE;
    if (x->state == H1_SENDING) {
        /* Answered before the request was sent whole: this connection's
         * state is unknown after the reply. */
        x->reusable = 0;
        event_del(&x->conn->wev);
    }
    x->state = H1_BODY;
    /* The request head is not needed again (no retry after a reply). */
    OPENSSL_cleanse(x->head, x->head_len);
    free(x->head);
    x->head = NULL;
    x->head_len = 0;
    x->sent = 0;
    x->body_len = 0;
    struct upstream_head uh = {r->status, x->framing == H1_NO_BODY ? 0 : cl, h->lines,
                               r->n_headers};
    x->cb->on_head(&x->base, &uh, x->arg);
    if (x->framing == H1_NO_BODY || (x->framing == H1_LENGTH && x->remaining == 0)) {
        if (extra > 0)
            x->reusable = 0; /* bytes after a reply without body: not trusted */
        complete(x);
        return false;
    }
    return true;
}

enum head_result {
    HEAD_ENDED = 0, /* x ended (failed) */
    HEAD_MORE,      /* incomplete: the bytes are kept in rhead */
    HEAD_DONE,      /* final head taken; *rest the body bytes after it */
};

/* Reply head bytes, parsed from data, or from rhead (data appended) when
 * the head spans reads. On HEAD_DONE *rest may point into rhead: the caller
 * keeps rhead until it fed them. */
static enum head_result feed_head(struct h1_xfer *x, const char *data, size_t len,
                                  const char **rest, size_t *rest_len)
{
    const struct config_limits *lim = &x->eng->cfg->limits;
    const char *buf = data;
    size_t n = len;
    if (x->rhead != NULL) {
        char *p = realloc(x->rhead, x->rhead_len + len);
        if (p == NULL) {
            finish(x, CURLE_OUT_OF_MEMORY, "out of memory");
            return HEAD_ENDED;
        }
        memcpy(p + x->rhead_len, data, len);
        x->rhead = p;
        x->rhead_len += len;
        buf = x->rhead;
        n = x->rhead_len;
    }
    struct httpparse_limits pl = {0, lim->max_header_bytes, HTTPPARSE_MAX_HEADERS};
    struct httpparse_response r;
    int code = 0;
    const char *why = NULL;
    for (;;) {
        enum httpparse_status st =
            n > 0 ? httpparse_response(buf, n, &pl, &r, &code, &why) : HTTPPARSE_INCOMPLETE;
        if (st == HTTPPARSE_INCOMPLETE) {
            if (n == 0) {
                free(x->rhead);
                x->rhead = NULL;
                x->rhead_len = 0;
            } else if (x->rhead == NULL) {
                x->rhead = malloc(n);
                if (x->rhead == NULL) {
                    finish(x, CURLE_OUT_OF_MEMORY, "out of memory");
                    return HEAD_ENDED;
                }
                memcpy(x->rhead, buf, n);
                x->rhead_len = n;
            } else if (buf != x->rhead) {
                memmove(x->rhead, buf, n); /* interim heads skipped */
                x->rhead_len = n;
            }
            return HEAD_MORE;
        }
        if (st == HTTPPARSE_ERROR) {
            char msg[CURL_ERROR_SIZE];
            snprintf(msg, sizeof(msg), "the upstream sent a malformed reply head: %s", why);
            finish(x, CURLE_WEIRD_SERVER_REPLY, msg);
            return HEAD_ENDED;
        }
        if (r.status == 101) {
            finish(x, CURLE_WEIRD_SERVER_REPLY, "the upstream switched protocols unasked");
            return HEAD_ENDED;
        }
        if (r.status >= 200)
            break;
        /* Interim reply (100 Continue, 103 Early Hints): not forwarded. */
        buf += r.head_len;
        n -= r.head_len;
    }
    *rest = buf + r.head_len;
    *rest_len = n - r.head_len;
    return take_head(x, &r, *rest_len) ? HEAD_DONE : HEAD_ENDED;
}

/* Body bytes by framing. Returns false when x ended. */
static bool feed_body(struct h1_xfer *x, const char *data, size_t len)
{
    switch (x->framing) {
    case H1_LENGTH: {
        size_t take = (uint64_t)x->remaining < len ? (size_t)x->remaining : len;
        if (take < len)
            x->reusable = 0; /* bytes after the reply: the connection is not trusted */
        x->remaining -= (int64_t)take;
        if (deliver(x, data, take) == -1) {
            finish(x, CURLE_OUT_OF_MEMORY, "out of memory");
            return false;
        }
        if (x->remaining == 0) {
            complete(x);
            return false;
        }
        return true;
    }
    case H1_CHUNKED: {
        size_t used = 0;
        const char *why = NULL;
        enum httpparse_chunked_status st =
            httpparse_chunked_feed(&x->chunked, data, len, &used, deliver, x, &why);
        if (st == HTTPPARSE_CHUNKED_ERROR) {
            char msg[CURL_ERROR_SIZE];
            snprintf(msg, sizeof(msg), "the upstream sent a malformed chunked body: %s",
                     why != NULL ? why : "out of memory");
            finish(x, CURLE_RECV_ERROR, msg);
            return false;
        }
        if (st == HTTPPARSE_CHUNKED_DONE) {
            if (used < len)
                x->reusable = 0;
            complete(x);
            return false;
        }
        return true;
    }
    case H1_UNTIL_CLOSE:
        if (deliver(x, data, len) == -1) {
            finish(x, CURLE_OUT_OF_MEMORY, "out of memory");
            return false;
        }
        return true;
    case H1_NO_BODY:
        break;
    }
    x->reusable = 0;
    return true;
}

/* Bytes read for x. Returns false when x ended. */
static bool feed(struct h1_xfer *x, const char *data, size_t len)
{
    x->got_bytes = 1;
    if (x->state == H1_SENDING || x->state == H1_HEAD) {
        const char *rest = NULL;
        size_t rest_len = 0;
        enum head_result hr = feed_head(x, data, len, &rest, &rest_len);
        if (hr != HEAD_DONE)
            return hr == HEAD_MORE;
        /* The body's first bytes may live in rhead: kept until fed. */
        char *held = x->rhead;
        x->rhead = NULL;
        x->rhead_len = 0;
        bool alive = rest_len == 0 || feed_body(x, rest, rest_len);
        free(held);
        return alive;
    }
    return feed_body(x, data, len);
}

/* The upstream closed (or reset) the connection. */
static void on_eof(struct h1_xfer *x, int err)
{
    if (x->state == H1_BODY) {
        if (x->framing == H1_UNTIL_CLOSE) {
            x->reusable = 0;
            complete(x);
            return;
        }
        finish(x, CURLE_PARTIAL_FILE,
               "the upstream closed the connection before the end of the reply");
        return;
    }
    if (retry(x)) {
        if (x->fail_code != CURLE_OK)
            finish(x, x->fail_code, x->fail_msg);
        return; /* else connecting again */
    }
    char msg[CURL_ERROR_SIZE];
    if (err != 0)
        snprintf(msg, sizeof(msg), "the upstream connection failed before the reply: %s",
                 strerror(err));
    else
        snprintf(msg, sizeof(msg), "the upstream closed the connection %s",
                 x->got_bytes ? "in the middle of the reply head" : "without answering");
    finish(x, x->got_bytes ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING, msg);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    struct h1_xfer *x = c->x;
    struct upstream_h1 *h = c->eng;
    (void)what;
    if (x == NULL) {
        /* Idle: the upstream closed it, or sent bytes nobody asked for. */
        conn_close(c);
        return;
    }
    ssize_t n = recv(fd, h->rbuf, sizeof(h->rbuf), 0);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        on_eof(x, errno);
        return;
    }
    if (n == 0) {
        on_eof(x, 0);
        return;
    }
    (void)feed(x, h->rbuf, (size_t)n);
}

/* --- timers ----------------------------------------------------------------- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_xfer *x = arg;
    (void)fd;
    (void)what;
    char msg[CURL_ERROR_SIZE];
    if (x->state == H1_CONNECTING && !(x->deadline && mono_ms() >= x->deadline))
        snprintf(msg, sizeof(msg), "connecting to %s timed out after %d ms", x->origin->host,
                 x->eng->cfg->limits.upstream_connect_timeout_ms);
    else
        snprintf(msg, sizeof(msg), "no complete reply from %s within %d ms", x->origin->host,
                 x->eng->cfg->limits.upstream_timeout_ms);
    finish(x, CURLE_OPERATION_TIMEDOUT, msg);
}

/* A failure found in start, or delivery after upstream_h1_resume. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_xfer *x = arg;
    (void)fd;
    (void)what;
    if (x->fail_code != CURLE_OK) {
        finish(x, x->fail_code, x->fail_msg);
        return;
    }
    if (x->paused)
        return; /* paused again before this ran */
    if (x->pending_len > 0) {
        if (x->cb->on_data(&x->base, x->pending, x->pending_len, x->arg) == UPSTREAM_DATA_PAUSE) {
            x->paused = 1;
            return;
        }
        free(x->pending);
        x->pending = NULL;
        x->pending_len = 0;
    }
    if (x->complete) {
        finish(x, CURLE_OK, NULL);
        return;
    }
    if (x->conn != NULL && x->conn->connected)
        event_add(&x->conn->rev, NULL);
}

/* --- the request -------------------------------------------------------------- */

/* Parses "http://host[:port]/path..." for an address host. Returns the
 * origin (found or added) and the path (from its '/'), or NULL when the own
 * client does not take this URL. */
static struct h1_origin *origin_for(struct upstream_h1 *h, const char *url, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return NULL;
    const char *auth = url + 7;
    size_t auth_len = strcspn(auth, "/?#");
    if (auth_len == 0 || auth_len >= H1_HOST_MAX || memchr(auth, '@', auth_len) != NULL)
        return NULL;
    *path = auth + auth_len;
    for (size_t i = 0; i < h->n_origins; i++)
        if (h->origins[i].host_len == auth_len && memcmp(h->origins[i].host, auth, auth_len) == 0)
            return &h->origins[i];
    if (h->n_origins == H1_MAX_ORIGINS)
        return NULL;
    char host[H1_HOST_MAX];
    const char *port = NULL;
    if (auth[0] == '[') {
        const char *end = memchr(auth, ']', auth_len);
        if (end == NULL)
            return NULL;
        snprintf(host, sizeof(host), "%.*s", (int)(end - auth - 1), auth + 1);
        if (end + 1 < auth + auth_len) {
            if (end[1] != ':')
                return NULL;
            port = end + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        size_t hl = colon != NULL ? (size_t)(colon - auth) : auth_len;
        snprintf(host, sizeof(host), "%.*s", (int)hl, auth);
        if (colon != NULL)
            port = colon + 1;
    }
    long portnum = 80;
    if (port != NULL) {
        size_t pl = (size_t)(auth + auth_len - port);
        int64_t v = parse_length(port, pl);
        if (v <= 0 || v > 65535)
            return NULL;
        portnum = (long)v;
    }
    struct h1_origin o = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&o.addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&o.addr;
    if (strcasecmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)portnum);
        o.addr_len = sizeof(*v4);
    } else if (auth[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)portnum);
        o.addr_len = sizeof(*v6);
    } else {
        return NULL; /* a name: libcurl resolves it */
    }
    memcpy(o.host, auth, auth_len);
    o.host[auth_len] = '\0';
    o.host_len = auth_len;
    h->origins[h->n_origins] = o;
    return &h->origins[h->n_origins++];
}

/* A header line as curl_slist carries it: "Name: value" is sent, "Name:"
 * (nothing after the colon) is curl's "do not send", "Name;" sends the
 * name with an empty value. Returns the bytes it adds to the head (0: not
 * sent), -1 when the line could split the head (CR or LF). */
static ssize_t header_line(const char *line, char *out)
{
    size_t n = strlen(line);
    if (memchr(line, '\r', n) != NULL || memchr(line, '\n', n) != NULL)
        return -1;
    const char *colon = memchr(line, ':', n);
    if (colon == NULL) {
        if (n == 0 || line[n - 1] != ';')
            return -1;
        if (out != NULL) {
            memcpy(out, line, n - 1);
            memcpy(out + n - 1, ":\r\n", 3);
        }
        return (ssize_t)(n + 2);
    }
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '\0')
        return 0;
    if (out != NULL) {
        memcpy(out, line, n);
        memcpy(out + n, "\r\n", 2);
    }
    return (ssize_t)(n + 2);
}

/* "Host: x" or "Host;" (sent empty): the caller's Host replaces ours. */
static bool is_host_line(const char *line)
{
    return strncasecmp(line, "host:", 5) == 0 || strcasecmp(line, "host;") == 0;
}

static char *put(char *at, const char *s, size_t n)
{
    memcpy(at, s, n);
    return at + n;
}

/* The request head in one buffer. Returns 0 or -1 (bad header line or no
 * memory). */
static int build_head(struct h1_xfer *x, const struct upstream_request *req, const char *path)
{
    bool custom_host = false;
    bool has_body = req->has_body || strcmp(req->method, "POST") == 0;
    char cl[21];
    size_t cl_len = has_body ? fmt_u64(cl, req->body_len) : 0;
    /* The request target: origin-form, never a fragment (as libcurl). */
    size_t path_len = strcspn(path, "#");
    bool slash = path_len == 0 || path[0] != '/';
    size_t method_len = strlen(req->method);
    size_t n = method_len + 1 + slash + path_len + 11 + (has_body ? 16 + cl_len + 2 : 0) + 2;
    for (const struct curl_slist *l = req->headers; l != NULL; l = l->next) {
        ssize_t k = header_line(l->data, NULL);
        if (k < 0)
            return -1;
        n += (size_t)k;
        if (is_host_line(l->data))
            custom_host = true; /* "Host:" sends none, as with libcurl */
    }
    if (!custom_host)
        n += 6 + x->origin->host_len + 2;
    char *head = malloc(n);
    if (head == NULL)
        return -1;
    char *at = put(head, req->method, method_len);
    *at++ = ' ';
    if (slash)
        *at++ = '/';
    at = put(at, path, path_len);
    at = put(at, " HTTP/1.1\r\n", 11);
    if (!custom_host) {
        at = put(at, "Host: ", 6);
        at = put(at, x->origin->host, x->origin->host_len);
        at = put(at, "\r\n", 2);
    }
    for (const struct curl_slist *l = req->headers; l != NULL; l = l->next)
        at += header_line(l->data, at);
    if (has_body) {
        at = put(at, "Content-Length: ", 16);
        at = put(at, cl, cl_len);
        at = put(at, "\r\n", 2);
    }
    at = put(at, "\r\n", 2);
    x->head = head;
    x->head_len = (size_t)(at - head);
    return 0;
}

struct upstream_xfer *upstream_h1_start(struct upstream_h1 *h, const struct upstream_request *req,
                                        const struct upstream_callbacks *cb, void *arg,
                                        bool *declined)
{
    const char *path = NULL;
    struct h1_origin *o = req->ca_pem == NULL ? origin_for(h, req->url, &path) : NULL;
    *declined = o == NULL;
    if (o == NULL)
        return NULL;
    struct h1_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        upstream_headers_free(req->headers);
        return NULL;
    }
    x->base.kind = UPSTREAM_ENGINE_H1;
    x->eng = h;
    x->origin = o;
    x->cb = cb;
    x->arg = arg;
    x->body = req->body;
    x->body_len = req->body != NULL ? req->body_len : 0;
    x->head_only = strcmp(req->method, "HEAD") == 0;
    int rc = build_head(x, req, path);
    upstream_headers_free(req->headers);
    if (rc == -1) {
        free(x);
        return NULL;
    }
    evtimer_assign(&x->timer, h->base, timer_cb, x);
    event_assign(&x->kick, h->base, -1, 0, kick_cb, x);
    int64_t total = h->cfg->limits.upstream_timeout_ms;
    x->deadline = total > 0 ? mono_ms() + total : 0;
    x->next = h->xfers;
    if (h->xfers != NULL)
        h->xfers->prev = x;
    h->xfers = x;
    h->active++;

    struct h1_conn *c = o->idle;
    if (c != NULL) {
        idle_unlink(c);
        event_del(&c->idle_timer);
        c->uses++;
        c->x = x;
        x->conn = c;
        x->state = H1_SENDING;
        arm_timer(x, total);
        send_some(x);
        if (x->fail_code != CURLE_OK)
            fail_deferred(x, x->fail_code, x->fail_msg);
    } else if (connect_new(x) == -1) {
        fail_deferred(x, CURLE_COULDNT_CONNECT, x->fail_msg);
    }
    return &x->base;
}

void upstream_h1_resume(struct upstream_xfer *xfer)
{
    struct h1_xfer *x = container_of(xfer, struct h1_xfer, base);
    if (!x->paused)
        return;
    x->paused = 0;
    event_active(&x->kick, EV_TIMEOUT, 1);
}

bool upstream_h1_paused(const struct upstream_xfer *xfer)
{
    return container_of(xfer, const struct h1_xfer, base)->paused;
}

void upstream_h1_cancel(struct upstream_xfer *xfer)
{
    struct h1_xfer *x = container_of(xfer, struct h1_xfer, base);
    conn_close(x->conn);
    x->conn = NULL;
    xfer_free(x);
}

size_t upstream_h1_active(const struct upstream_h1 *h)
{
    return h->active;
}

struct upstream_h1 *upstream_h1_new(struct event_base *base, const struct config *cfg)
{
    struct upstream_h1 *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->base = base;
    h->cfg = cfg;
    /* Each line of a head adds at most ": " and a NUL to its bytes. */
    h->lines_size = cfg->limits.max_header_bytes + 2 * HTTPPARSE_MAX_HEADERS;
    h->lines_buf = malloc(h->lines_size);
    if (h->lines_buf == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

void upstream_h1_free(struct upstream_h1 *h)
{
    if (h == NULL)
        return;
    while (h->xfers != NULL)
        upstream_h1_cancel(&h->xfers->base);
    for (size_t i = 0; i < h->n_origins; i++)
        while (h->origins[i].idle != NULL)
            conn_close(h->origins[i].idle);
    free(h->lines_buf);
    free(h);
}
