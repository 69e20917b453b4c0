/* http.c - downstream HTTP/1.1 connections: accept (connection caps, pause
 * when descriptors run out), strict parsing, bodies (within their deadline),
 * keep-alive, in-order pipelining, limits, timeouts and the response API.
 *
 *   accept ──> READING_HEAD ──head ok──> READING_BODY ──body complete──> HANDLING
 *                  ^   │                      │                            │
 *                  │   └─ bad head: 4xx ──────┴── bad body: 4xx ──> CLOSING │
 *                  │                                                      │
 *                  └──── response done, keep-alive (next pipelined head) ─┘
 *                                         response done, no keep-alive ──> CLOSING
 *
 * One request is handled at a time per connection: bytes of a pipelined
 * next request wait in the input buffer until the current response is
 * complete, which answers pipelined requests in order by construction.
 * Every close goes through conn_close(c, reason); when a close is asked for
 * from inside an API call the free is deferred to a zero-delay event so no
 * caller up the stack is left holding a freed connection. A connection
 * answered before its request was read whole gets a FIN and is closed
 * HTTP_LINGER_MS later (CLOSING, lingering), so a reset does not destroy
 * the answer.
 *
 * Before any of that, accept_cb counts the connection under the caps
 * (conncap.h) or refuses it unread; an accept() failure pauses the
 * listener (accept_error_cb) instead of spinning on it. */
#include "common.h"
#include "http.h"
#include "metrics.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/err.h>

#define HTTP_READ_SIZE 16384 /* one recv() of a client */

enum http_conn_state {
    HTTP_CONN_READING_HEAD = 0,
    HTTP_CONN_READING_BODY,
    HTTP_CONN_HANDLING, /* handler owns the request; response may be streaming */
    HTTP_CONN_CLOSING,  /* flushing output, then freed */
};

struct http_conn {
    struct http_server *srv;
    struct bufferevent *bev;
    /* Plain sockets: reading is ours, into the bufferevent's input (a
     * socket bufferevent asks FIONREAD before every read: one syscall more
     * per request); writing stays the bufferevent's. NULL with TLS. */
    struct event *rev;
    enum http_conn_state state;
    struct http_conn *prev, *next; /* in srv->conns */

    struct http_request req;
    struct httpparse_chunked chunked;
    int64_t body_remaining; /* Content-Length body still to read */
    bool body_chunked;

    unsigned keep_alive : 1;          /* connection persists after this response */
    unsigned head_only : 1;           /* HEAD request: no response body */
    unsigned stream_started : 1;      /* response head sent */
    unsigned stream_chunked : 1;      /* response body framed as chunks */
    unsigned in_process : 1;          /* inside process_input(): no recursion */
    unsigned close_pending : 1;       /* deferred free scheduled */
    unsigned sent_continue : 1;       /* 100 Continue already sent */
    unsigned has_head_bytes : 1;      /* header timer armed for this head */
    unsigned tls : 1;                 /* OpenSSL bufferevent: no direct socket writes */
    unsigned body_deadline_armed : 1; /* the timer stands for body_deadline, not idleness */
    unsigned linger : 1;              /* answered before the request was read: closing_flushed() */
    unsigned head_pending : 1;        /* on_head decides later (http_head_continue) */
    unsigned lingering : 1;           /* FIN sent, waiting HTTP_LINGER_MS before the close */

    http_abort_cb on_abort;
    http_drain_cb on_drain;
    void *cb_arg;

    struct event *timer;    /* idle / header / body deadline */
    struct event *close_ev; /* deferred close */
    const char *close_reason;
    char peer[64];
    struct conncap_slot slot; /* place under the connection caps */
    int64_t body_deadline;    /* mono_ms() by which the whole body must be in */
};

struct http_server {
    struct event_base *base;
    struct evconnlistener *listener;
    struct http_server_opts opts;
    struct http_conn *conns;
    size_t n_conns, n_busy;
    bool accepting;
    /* accept() failed (descriptors exhausted): the listener is disabled
     * until resume_ev fires or a connection closes. */
    bool paused;
    bool starving;  /* accept has failed since the last success (logged once) */
    int backoff_ms; /* the next pause's length */
    struct event *resume_ev;
};

/* A connection answered before its request was read whole (a refusal on
 * the head, a bad or late body) is closed this long after its FIN. */
#define HTTP_LINGER_MS 1000

/* A paused listener waits this long, doubling up to the max, unless one
 * of its connections closes first. */
#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000

static void conn_close(struct http_conn *c, const char *reason);
static void process_input(struct http_conn *c);
static void body_timer_arm(struct http_conn *c);
static void accept_resume(struct http_server *s);
static void request_reset(struct http_conn *c);

/* --- helpers -------------------------------------------------------------- */

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* "Date: ..." value, cached per thread per second. */
static const char *http_date(void)
{
    static __thread time_t cached_sec;
    static __thread char cached[40];
    time_t now = time(NULL);
    if (now != cached_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_sec = now;
    }
    return cached;
}

static void timer_arm(struct http_conn *c, int ms)
{
    if (ms <= 0) {
        evtimer_del(c->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* --- accepting ------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN agreement: plain HTTP/1.1 anyway */
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *http_tls_context(const char *cert_file, const char *key_file, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, err_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    const char *what = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        what = "tls.cert_file";
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        what = "tls.key_file";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = "tls.key_file (does not match tls.cert_file)";
    if (what != NULL) {
        char reason[256];
        ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
        snprintf(err, err_size, "%s: %s", what, reason);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int http_listen(const char *addr, bool reuseport, char *err, size_t err_size)
{
    char host[256];
    int port;
    if (config_parse_address(addr, host, sizeof(host), &port, err, err_size) == -1)
        return -1;
    return http_listen_port(host, port, reuseport, err, err_size);
}

int http_listen_port(const char *host, int port, bool reuseport, char *err, size_t err_size)
{
    char addr[300];
    int fd = -1;
    struct addrinfo hints, *res = NULL;
    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve listen address %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, err_size, "socket(): %s", strerror(errno));
        goto failed;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)) {
        snprintf(err, err_size, "setsockopt(): %s", strerror(errno));
        goto failed;
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) == -1) {
        snprintf(err, err_size, "cannot listen on %s: %s", addr, strerror(errno));
        goto failed;
    }
    if (listen(fd, 1024) == -1) {
        snprintf(err, err_size, "listen() on %s: %s", addr, strerror(errno));
        goto failed;
    }
    freeaddrinfo(res);
    return fd;
failed:
    if (fd != -1)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_recv_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_close_ev_cb(evutil_socket_t fd, short what, void *arg);

/* "127.0.0.1:53412", "[::1]:53412" (for logs; addresses are not secrets). */
static void format_peer(const struct sockaddr *sa, char *out, size_t size)
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

/* Reading on and off: the own read event of a plain socket, the
 * bufferevent's with TLS. */
static void read_on(struct http_conn *c)
{
    if (c->rev != NULL)
        event_add(c->rev, NULL);
    else
        bufferevent_enable(c->bev, EV_READ);
}

static void read_off(struct http_conn *c)
{
    if (c->rev != NULL)
        event_del(c->rev);
    else
        bufferevent_disable(c->bev, EV_READ);
}

/* A connection over a cap, refused before anything of it is read and
 * without a bufferevent: a plain listener writes a fixed answer in one
 * non-blocking send (if the socket does not take it, the client sees the
 * close), a TLS listener just closes (a handshake would cost more than the
 * connection is worth). One log line a second at most. */
static void refuse_connection(struct http_server *s, evutil_socket_t fd, const struct sockaddr *sa,
                              enum conncap_result why)
{
    static struct log_limit limit;
    bool client = why == CONNCAP_CLIENT_FULL;
    metrics_refused(NULL,
                    client ? METRICS_REFUSED_CONNECTIONS_CLIENT : METRICS_REFUSED_CONNECTIONS);
    if (s->opts.ssl_ctx == NULL) {
        int status = client ? 429 : 503;
        const char *body =
            client ? "{\"error\":{\"message\":\"Too many connections from this address "
                     "(limits.max_connections_per_client); retry later.\",\"type\":"
                     "\"rate_limit_error\",\"code\":\"too_many_connections\"}}\n"
                   : "{\"error\":{\"message\":\"The proxy has as many connections open as it "
                     "takes (limits.max_connections); retry later.\",\"type\":\"server_error\","
                     "\"code\":\"too_many_connections\"}}\n";
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                         "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                         status, http_reason(status), strlen(body), body);
        if (n > 0 && (size_t)n < sizeof(buf)) {
            ssize_t w = send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)w;
        }
    }
    close(fd);
    unsigned long skipped = 0;
    if (log_limit_allow(&limit, 1000, &skipped)) {
        char peer[64];
        format_peer(sa, peer, sizeof(peer));
        log_warn("%s listener: connection from %s refused: %s (limits.%s); %lu other connections "
                 "refused since the last such line",
                 s->opts.name ? s->opts.name : "http", peer,
                 client ? "too many connections from this address" : "too many connections",
                 client ? "max_connections_per_client" : "max_connections", skipped);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct http_server *s = arg;
    struct conncap_slot slot;
    (void)l;
    (void)salen;
    s->starving = false;
    s->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    enum conncap_result cr = conncap_enter(s->opts.cap, sa, &slot);
    if (cr != CONNCAP_OK) {
        refuse_connection(s, fd, sa, cr);
        return;
    }
    struct http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        conncap_leave(&slot);
        close(fd);
        return;
    }
    c->srv = s;
    c->slot = slot;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (s->opts.ssl_ctx != NULL) {
        SSL *ssl = SSL_new(s->opts.ssl_ctx);
        c->tls = 1;
        c->bev = ssl ? bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (c->bev == NULL) {
            SSL_free(ssl);
            close(fd);
            fd = -1;
        } else {
            /* Clients often close without close_notify; that is an EOF. */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        }
    } else {
        c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
        c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_recv_cb, c);
    }
    c->timer = evtimer_new(s->base, conn_timer_cb, c);
    c->close_ev = event_new(s->base, -1, 0, conn_close_ev_cb, c);
    if (c->bev == NULL || c->timer == NULL || c->close_ev == NULL || (!c->tls && c->rev == NULL)) {
        if (c->rev)
            event_free(c->rev);
        if (c->bev)
            bufferevent_free(c->bev);
        else if (fd != -1)
            close(fd);
        if (c->timer)
            event_free(c->timer);
        if (c->close_ev)
            event_free(c->close_ev);
        conncap_leave(&c->slot);
        free(c);
        return;
    }
    format_peer(sa, c->peer, sizeof(c->peer));
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (!s->opts.uncounted) {
        metrics_inc(METRICS_CONNECTIONS_ACCEPTED);
        metrics_conn_open(1);
    }

    const struct config_limits *lim = s->opts.limits;
    /* Write low watermark: the write callback (and so the drain callback that
     * resumes a paused upstream) fires once the output fell to half the
     * high-water mark. */
    bufferevent_setwatermark(c->bev, EV_WRITE, lim->client_high_watermark / 2, 0);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    /* A client that does not drain its socket for the idle timeout is gone. */
    struct timeval wtv = {lim->idle_timeout_ms / 1000, (lim->idle_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    read_on(c);
    c->state = HTTP_CONN_READING_HEAD;
    timer_arm(c, lim->idle_timeout_ms);
}

static void accept_resume(struct http_server *s)
{
    if (!s->paused)
        return;
    s->paused = false;
    evtimer_del(s->resume_ev);
    if (s->listener != NULL)
        evconnlistener_enable(s->listener);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    accept_resume(arg);
}

/* accept() failed with an error libevent does not retry by itself
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...): the listening socket stays
 * readable, so without a pause the loop would spin on it. Pending
 * connections wait in the kernel's backlog meanwhile. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    static struct log_limit limit;
    struct http_server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)l;
    if (s->paused || s->listener == NULL)
        return;
    evconnlistener_disable(s->listener);
    s->paused = true;
    if (!s->opts.uncounted)
        metrics_inc(METRICS_ACCEPT_PAUSES);
    int wait_ms = s->backoff_ms;
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    evtimer_add(s->resume_ev, &tv);
    s->backoff_ms = MIN(s->backoff_ms * 2, ACCEPT_BACKOFF_MAX_MS);
    if (s->starving)
        return; /* this episode is logged already */
    s->starving = true;
    unsigned long skipped = 0;
    if (log_limit_allow(&limit, 1000, &skipped))
        log_warn("%s listener: accept() failed: %s; not accepting until a connection closes "
                 "(%zu open on this listener) or for %d ms, backing off to %d ms%s",
                 s->opts.name ? s->opts.name : "http", evutil_socket_error_to_string(err),
                 s->n_conns, wait_ms, ACCEPT_BACKOFF_MAX_MS,
                 err == EMFILE || err == ENFILE ? " (out of file descriptors: see ulimit -n and "
                                                  "limits.max_connections)"
                                                : "");
}

struct http_server *http_server_new(struct event_base *base, int listen_fd,
                                    const struct http_server_opts *opts)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(listen_fd);
        return NULL;
    }
    s->base = base;
    s->opts = *opts;
    s->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    s->resume_ev = evtimer_new(base, resume_cb, s);
    s->listener = s->resume_ev != NULL
                      ? evconnlistener_new(base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE, -1, listen_fd)
                      : NULL;
    if (s->listener == NULL) {
        close(listen_fd);
        if (s->resume_ev != NULL)
            event_free(s->resume_ev);
        free(s);
        return NULL;
    }
    evconnlistener_set_error_cb(s->listener, accept_error_cb);
    s->accepting = true;
    return s;
}

void http_server_stop_accepting(struct http_server *s)
{
    if (!s->accepting)
        return;
    s->accepting = false;
    evconnlistener_free(s->listener);
    s->listener = NULL;
    s->paused = false;
    evtimer_del(s->resume_ev);
    /* Idle connections go now; busy ones lose keep-alive and close after
     * their current response. */
    struct http_conn *c = s->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (c->state == HTTP_CONN_HANDLING)
            c->keep_alive = 0;
        else if (c->state == HTTP_CONN_READING_HEAD &&
                 evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_close(c, "server shutting down");
    }
}

size_t http_server_conn_count(const struct http_server *s)
{
    return s->n_conns;
}

size_t http_server_busy_count(const struct http_server *s)
{
    return s->n_busy;
}

void http_server_free(struct http_server *s)
{
    if (s == NULL)
        return;
    while (s->conns != NULL)
        conn_close(s->conns, "server stopped");
    if (s->listener)
        evconnlistener_free(s->listener);
    event_free(s->resume_ev);
    free(s);
}

/* --- closing -------------------------------------------------------------- */

static void conn_free(struct http_conn *c)
{
    struct http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (!s->opts.uncounted)
        metrics_conn_open(-1);
    if (c->state == HTTP_CONN_HANDLING)
        s->n_busy--;
    request_reset(c);
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    conncap_leave(&c->slot);
    event_free(c->timer);
    event_free(c->close_ev);
    free(c);
    /* A descriptor is free again: a listener paused for want of one may
     * try at once. */
    accept_resume(s);
}

/* Closes now. If a request is in flight its handler is told first (and must
 * let go of c). */
static void conn_close(struct http_conn *c, const char *reason)
{
    if (c->state == HTTP_CONN_HANDLING && c->on_abort != NULL) {
        http_abort_cb cb = c->on_abort;
        c->on_abort = NULL;
        c->on_drain = NULL;
        if (!c->srv->opts.uncounted)
            metrics_inc(METRICS_CLIENT_DISCONNECTS);
        cb(c, c->cb_arg);
    }
    log_debug("conn %s closed: %s", c->peer, reason);
    conn_free(c);
}

static void conn_close_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    conn_close(c, c->close_reason ? c->close_reason : "closed");
}

/* Frees c at the next loop turn; safe from inside any call on c. */
static void conn_close_deferred(struct http_conn *c, const char *reason)
{
    if (c->close_pending)
        return;
    c->close_pending = 1;
    c->close_reason = reason;
    event_active(c->close_ev, 0, 0);
}

/* The answer is flushed. Closing a socket whose input holds unread bytes
 * makes the kernel send a reset, and a reset can destroy the answer before
 * the client read it (it is still sending its body when we refuse it on
 * the head). So such a connection gets a FIN first and is closed a moment
 * later, without reading any more of it: its descriptor is held for
 * HTTP_LINGER_MS, no memory and no CPU. */
static void closing_flushed(struct http_conn *c)
{
    if (c->linger && !c->lingering) {
        c->lingering = 1;
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd != -1 && shutdown(fd, SHUT_WR) == 0) {
            timer_arm(c, HTTP_LINGER_MS);
            return;
        }
    }
    conn_close_deferred(c, c->close_reason);
}

/* Stops reading, flushes what is queued, then closes. */
static void conn_finish_and_close(struct http_conn *c, const char *reason)
{
    if (c->state == HTTP_CONN_HANDLING)
        c->srv->n_busy--;
    c->state = HTTP_CONN_CLOSING;
    c->close_reason = reason;
    read_off(c);
    evtimer_del(c->timer);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        closing_flushed(c);
    /* else conn_write_cb closes once drained (watermark 0 is not guaranteed,
     * so it checks the length itself). */
    else
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* --- responses ------------------------------------------------------------ */

/* Output is written straight to the socket when it is produced (flush_now)
 * and EV_WRITE is enabled only while bytes are left over: a small response
 * then costs one writev and no epoll change or extra loop turn. out_ready()
 * comes before adding output, so the socket bufferevent schedules the write
 * of whatever the socket does not take at once. */
static void out_ready(struct http_conn *c)
{
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE))
        bufferevent_enable(c->bev, EV_WRITE);
}

static void flush_now(struct http_conn *c)
{
    if (c->tls)
        return; /* bytes must go through OpenSSL: the bufferevent writes them */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0)
        return;
    /* A socket bufferevent keeps its output's start frozen so that only
     * its write callback drains it (evbuffer_write would fail at once);
     * it thaws it around its own write the same way. */
    evbuffer_unfreeze(out, 1);
    int rc = evbuffer_write(out, bufferevent_getfd(c->bev));
    evbuffer_freeze(out, 1);
    if (rc == -1)
        return; /* EAGAIN, or an error the write event will report */
    if (evbuffer_get_length(out) == 0)
        bufferevent_disable(c->bev, EV_WRITE);
}

static void write_head(struct http_conn *c, int status, const char *reason)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    out_ready(c);
    /* Built by hand: this runs for every response. */
    char line[160];
    const char *why = reason ? reason : http_reason(status);
    const char *date = http_date();
    size_t wl = strnlen(why, 80), dl = strlen(date), n = 0;
    memcpy(line, "HTTP/1.1 ", 9);
    n = 9;
    int st = status >= 100 && status <= 999 ? status : 500;
    line[n++] = (char)('0' + st / 100);
    line[n++] = (char)('0' + st / 10 % 10);
    line[n++] = (char)('0' + st % 10);
    line[n++] = ' ';
    memcpy(line + n, why, wl);
    n += wl;
    memcpy(line + n, "\r\nDate: ", 8);
    n += 8;
    memcpy(line + n, date, dl);
    n += dl;
    memcpy(line + n, "\r\n", 2);
    n += 2;
    evbuffer_add(out, line, n);
    if (!c->keep_alive)
        evbuffer_add(out, "Connection: close\r\n", 19);
}

/* The handler is done with the request: next request or close. */
static void request_done(struct http_conn *c)
{
    c->on_abort = NULL;
    c->on_drain = NULL;
    c->cb_arg = NULL;
    if (c->state != HTTP_CONN_HANDLING)
        return;
    if (!c->keep_alive || !c->srv->accepting) {
        conn_finish_and_close(c, "response complete, connection: close");
        return;
    }
    c->srv->n_busy--;
    request_reset(c);
    c->state = HTTP_CONN_READING_HEAD;
    read_on(c);
    timer_arm(c, c->srv->opts.limits->idle_timeout_ms);
    if (!c->in_process)
        process_input(c);
}

void http_respond(struct http_conn *c, int status, const char *content_type, const char *body,
                  size_t len, const struct http_kv *extra, size_t n_extra)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->stream_started || c->state == HTTP_CONN_CLOSING)
        return;
    write_head(c, status, NULL);
    for (size_t i = 0; i < n_extra; i++)
        evbuffer_add_printf(out, "%s: %s\r\n", extra[i].name, extra[i].value);
    if (status_has_body(status)) {
        if (content_type)
            evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
        evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", len);
        if (!c->head_only && len > 0)
            evbuffer_add(out, body, len);
    } else {
        evbuffer_add(out, "\r\n", 2);
    }
    c->stream_started = 1;
    flush_now(c);
    request_done(c);
}

void http_respond_json(struct http_conn *c, int status, json_t *body, const struct http_kv *extra,
                       size_t n_extra)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text == NULL) {
        http_respond(c, status, "application/json", "{}", 2, extra, n_extra);
    } else {
        size_t len = strlen(text);
        text = realloc(text, len + 2);
        text[len] = '\n';
        http_respond(c, status, "application/json", text, len + 1, extra, n_extra);
        free(text);
    }
    json_decref(body);
}

void http_stream_begin(struct http_conn *c, int status, const char *reason,
                       struct evbuffer *headers, int64_t content_length)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->stream_started || c->state == HTTP_CONN_CLOSING)
        return;
    bool body = status_has_body(status) && !c->head_only;
    c->stream_chunked = 0;
    if (status_has_body(status) && content_length < 0 && c->req.head.version_minor == 0)
        c->keep_alive = 0; /* HTTP/1.0: the body ends at close */
    write_head(c, status, reason);
    if (headers)
        evbuffer_add_buffer(out, headers);
    if (status_has_body(status)) {
        if (content_length >= 0) {
            char cl[48] = "Content-Length: ";
            size_t n = 16 + fmt_u64(cl + 16, (uint64_t)content_length);
            memcpy(cl + n, "\r\n", 2);
            evbuffer_add(out, cl, n + 2);
        } else if (c->req.head.version_minor >= 1) {
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
            c->stream_chunked = body;
        }
    }
    evbuffer_add(out, "\r\n", 2);
    c->stream_started = 1;
    /* With a body to follow, the head waits for its first bytes: when they
     * come in the same loop turn (usually: the upstream's head and first
     * bytes arrive in one read) both go out in one write and the EV_WRITE
     * write_head enabled is disabled again before the turn ends, which the
     * epoll change list turns into no syscall; otherwise the bufferevent
     * writes the head alone on the next turn. */
    if (!body)
        flush_now(c);
}

void http_stream_write(struct http_conn *c, const char *data, size_t len)
{
    if (!c->stream_started || c->head_only || len == 0 || c->state != HTTP_CONN_HANDLING)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    out_ready(c);
    if (c->stream_chunked) {
        char size_line[24];
        int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
        evbuffer_add(out, size_line, (size_t)n);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data, len);
    }
    flush_now(c);
}

void http_stream_end(struct http_conn *c, bool complete)
{
    if (c->state != HTTP_CONN_HANDLING)
        return;
    if (!complete) {
        /* Truncated: no final chunk; the close tells the client. */
        c->on_abort = NULL;
        c->on_drain = NULL;
        conn_finish_and_close(c, "upstream response truncated");
        return;
    }
    if (c->stream_chunked && !c->head_only) {
        out_ready(c);
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        flush_now(c);
    }
    request_done(c);
}

struct bufferevent *http_conn_take(struct http_conn *c, struct conncap_slot *slot)
{
    struct bufferevent *bev = c->bev;
    *slot = c->slot;
    memset(&c->slot, 0, sizeof(c->slot));
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
    evtimer_del(c->timer);
    if (c->rev != NULL) {
        /* The new owner reads through the bufferevent (what was read is
         * in its input already). */
        event_free(c->rev);
        c->rev = NULL;
    }
    c->bev = NULL;
    c->on_abort = NULL;
    c->on_drain = NULL;
    if (c->state == HTTP_CONN_HANDLING)
        c->srv->n_busy--;
    /* c itself may still be on the caller's stack (process_input): free it
     * at the next loop turn. */
    c->state = HTTP_CONN_CLOSING;
    conn_close_deferred(c, "taken over (WebSocket)");
    return bev;
}

bool http_stream_started(struct http_conn *c)
{
    return c->stream_started;
}

void http_conn_set_callbacks(struct http_conn *c, http_abort_cb on_abort, http_drain_cb on_drain,
                             void *arg)
{
    c->on_abort = on_abort;
    c->on_drain = on_drain;
    c->cb_arg = arg;
}

struct event_base *http_conn_base(struct http_conn *c)
{
    return c->srv->base;
}

size_t http_conn_output_pending(struct http_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

const char *http_conn_peer(struct http_conn *c)
{
    return c->peer;
}

/* Protocol-level error (before any handler): answer and close. The body is
 * in the data plane's default error shape. */
static void reject(struct http_conn *c, int status, const char *why)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\","
                     "\"code\":\"http_%d\"}}\n",
                     why, status);
    if (!c->srv->opts.uncounted)
        metrics_inc(METRICS_REQUESTS_REJECTED);
    c->keep_alive = 0;
    c->linger = 1; /* the client may still be sending what we refused */
    if (c->state != HTTP_CONN_HANDLING) {
        c->state = HTTP_CONN_HANDLING;
        c->srv->n_busy++;
    }
    c->stream_started = 0;
    log_info("conn %s: rejected with %d: %s", c->peer, status, why);
    http_respond(c, status, "application/json", body, (size_t)n, NULL, 0);
}

/* --- reading requests ----------------------------------------------------- */

static void request_reset(struct http_conn *c)
{
    if (c->req.ctx != NULL && c->req.ctx_free != NULL)
        c->req.ctx_free(c->req.ctx);
    c->req.ctx = NULL;
    c->req.ctx_free = NULL;
    free(c->req.head_buf);
    c->req.head_buf = NULL;
    if (c->req.body)
        evbuffer_free(c->req.body);
    c->req.body = NULL;
    memset(&c->req.head, 0, sizeof(c->req.head));
    c->body_remaining = 0;
    c->body_chunked = false;
    c->stream_started = 0;
    c->stream_chunked = 0;
    c->head_only = 0;
    c->sent_continue = 0;
    c->has_head_bytes = 0;
    c->head_pending = 0;
    c->linger = 0;
}

/* Moves every pointer of a parsed head from the input buffer to head_buf. */
static void rebase_head(struct httpparse_request *h, const char *from, char *to)
{
#define REBASE(p)                                                                                  \
    do {                                                                                           \
        if ((p) != NULL)                                                                           \
            (p) = to + ((p)-from);                                                                 \
    } while (0)
    REBASE(h->method);
    REBASE(h->target);
    REBASE(h->path);
    REBASE(h->query);
    REBASE(h->host);
    for (size_t i = 0; i < h->n_headers; i++) {
        REBASE(h->headers[i].name);
        REBASE(h->headers[i].value);
    }
#undef REBASE
}

static int body_append_cb(void *arg, const char *data, size_t n)
{
    struct http_conn *c = arg;
    if (evbuffer_get_length(c->req.body) + n > c->srv->opts.limits->max_body_bytes)
        return -1;
    return evbuffer_add(c->req.body, data, n);
}

static void dispatch(struct http_conn *c)
{
    c->state = HTTP_CONN_HANDLING;
    c->srv->n_busy++;
    evtimer_del(c->timer);
    /* Keep reading: EOF tells us the client went away, and pipelined bytes
     * simply wait in the input buffer. */
    c->srv->opts.on_request(c, &c->req, c->srv->opts.arg);
}

static void start_body(struct http_conn *c);

/* Returns true when the head is complete and the conn moved on. */
static bool read_head(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct config_limits *lim = c->srv->opts.limits;
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return false;
    if (!c->has_head_bytes) {
        c->has_head_bytes = 1;
        timer_arm(c, lim->header_timeout_ms);
    }
    size_t look = MIN(avail, lim->max_header_bytes + 1);
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    struct httpparse_limits pl = {lim->max_request_line, lim->max_header_bytes, lim->max_headers};
    int status = 0;
    const char *why = NULL;
    enum httpparse_status st = httpparse_request(buf, look, &pl, &c->req.head, &status, &why);
    if (st == HTTPPARSE_INCOMPLETE)
        return false;
    if (st == HTTPPARSE_ERROR) {
        reject(c, status, why);
        return false;
    }
    struct httpparse_request *h = &c->req.head;
    c->req.head_buf = malloc(h->head_len);
    c->req.body = evbuffer_new();
    if (c->req.head_buf == NULL || c->req.body == NULL) {
        reject(c, 500, "out of memory");
        return false;
    }
    memcpy(c->req.head_buf, buf, h->head_len);
    rebase_head(h, buf, c->req.head_buf);
    evbuffer_drain(in, h->head_len);
    c->req.start_ms = now_ms();
    c->req.start_mono = mono_ms();
    c->keep_alive = h->keep_alive;
    c->head_only = (h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0);

    if (h->chunked) {
        c->body_chunked = true;
        httpparse_chunked_init(&c->chunked);
    } else if (h->content_length > 0) {
        if ((uint64_t)h->content_length > lim->max_body_bytes) {
            reject(c, 413, "request body is larger than the limit (limits.max_body_bytes)");
            return false;
        }
        c->body_remaining = h->content_length;
    }
    bool body_pending = c->body_chunked || c->body_remaining > 0;
    if (c->srv->opts.on_head != NULL) {
        /* The head handler may answer at once: it owns the request like a
         * request handler does. A body it did not let in cannot be skipped
         * reliably, so such an answer closes the connection. */
        c->state = HTTP_CONN_HANDLING;
        c->srv->n_busy++;
        evtimer_del(c->timer);
        if (body_pending) {
            c->keep_alive = 0;
            c->linger = 1;
        }
        int rc = c->srv->opts.on_head(c, &c->req, c->srv->opts.arg);
        if (rc < 0)
            return c->state == HTTP_CONN_READING_HEAD; /* answered, kept alive: next head */
        if (rc > 0) {
            /* Decided later (http_head_continue or an answer): the body
             * waits in the buffers meanwhile, bounded as pipelined bytes
             * are; the decision must come within header_timeout_ms. */
            c->head_pending = 1;
            timer_arm(c, lim->header_timeout_ms);
            return false;
        }
        c->srv->n_busy--;
        c->keep_alive = h->keep_alive;
        c->linger = 0;
    }
    start_body(c);
    return true;
}

bool http_body_buffered(const struct http_conn *c)
{
    return !c->body_chunked &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) >= (uint64_t)c->body_remaining;
}

/* The head passed: the body is read (100 Continue first when asked). */
static void start_body(struct http_conn *c)
{
    const struct config_limits *lim = c->srv->opts.limits;
    const struct httpparse_request *h = &c->req.head;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool body_pending = c->body_chunked || c->body_remaining > 0;
    c->state = HTTP_CONN_READING_BODY;
    c->body_deadline = c->req.start_mono + lim->body_timeout_ms;
    body_timer_arm(c);
    if (h->expect_continue && body_pending && evbuffer_get_length(in) == 0) {
        out_ready(c);
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        flush_now(c);
        c->sent_continue = 1;
    }
}

void http_head_continue(struct http_conn *c)
{
    if (!c->head_pending || c->state != HTTP_CONN_HANDLING)
        return;
    c->head_pending = 0;
    c->srv->n_busy--;
    c->keep_alive = c->req.head.keep_alive;
    c->linger = 0;
    start_body(c);
    read_on(c);
    if (!c->in_process)
        process_input(c);
}

/* While a body is read: the idle timeout between its bytes, but never past
 * the deadline for the whole body (limits.body_timeout_ms from the end of
 * the head), so a trickle of bytes cannot hold the connection longer. */
static void body_timer_arm(struct http_conn *c)
{
    int64_t left = c->body_deadline - mono_ms();
    int idle = c->srv->opts.limits->idle_timeout_ms;
    c->body_deadline_armed = left <= idle;
    timer_arm(c, (int)MAX((int64_t)1, MIN((int64_t)idle, left)));
}

/* Returns true when the body is complete (and the request dispatched). */
static bool read_body(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->body_chunked) {
        while (evbuffer_get_length(in) > 0) {
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                break;
            size_t consumed = 0;
            const char *why = NULL;
            enum httpparse_chunked_status st = httpparse_chunked_feed(
                &c->chunked, v.iov_base, v.iov_len, &consumed, body_append_cb, c, &why);
            evbuffer_drain(in, consumed);
            if (st == HTTPPARSE_CHUNKED_ERROR) {
                if (evbuffer_get_length(c->req.body) + v.iov_len >
                    c->srv->opts.limits->max_body_bytes)
                    reject(c, 413, "request body is larger than the limit (limits.max_body_bytes)");
                else
                    reject(c, 400, why ? why : "malformed chunked body");
                return false;
            }
            if (st == HTTPPARSE_CHUNKED_DONE) {
                dispatch(c);
                return true;
            }
        }
        body_timer_arm(c);
        return false;
    }
    if (c->body_remaining > 0) {
        size_t avail = evbuffer_get_length(in);
        size_t take = MIN(avail, (size_t)c->body_remaining);
        if (take > 0) {
            evbuffer_remove_buffer(in, c->req.body, take);
            c->body_remaining -= (int64_t)take;
            body_timer_arm(c);
        }
        if (c->body_remaining > 0)
            return false;
    }
    dispatch(c);
    return true;
}

static void process_input(struct http_conn *c)
{
    c->in_process = 1;
    for (;;) {
        if (c->state == HTTP_CONN_READING_HEAD) {
            if (!read_head(c))
                break;
        } else if (c->state == HTTP_CONN_READING_BODY) {
            if (!read_body(c))
                break;
        } else {
            break; /* HANDLING / CLOSING: pipelined bytes wait */
        }
    }
    c->in_process = 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    (void)bev;
    if (c->close_pending)
        return;
    if (c->state == HTTP_CONN_HANDLING) {
        /* Pipelined bytes while busy: bounded so a client cannot grow our
         * memory; above the head limit we stop reading until it is our turn
         * (EOF is then noticed when we read again). */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) >
            c->srv->opts.limits->max_header_bytes + c->srv->opts.limits->max_body_bytes)
            read_off(c);
        return;
    }
    process_input(c);
}

/* A plain socket is readable: one recv(), its bytes added to the input
 * buffer, then the bufferevent's read path (conn_read_cb) or its EOF/error
 * path (conn_event_cb), as bufferevent_socket would call them. Read into
 * the stack and copied: the input's chunks are sized to what came (a
 * request body keeps its chunks for the whole exchange), as FIONREAD sized
 * them before. */
static void conn_recv_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)what;
    char buf[HTTP_READ_SIZE];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        /* A socket bufferevent keeps its input's end frozen so that only
         * it adds to it; it thaws it around its own reads the same way. */
        evbuffer_unfreeze(in, 0);
        int rc = evbuffer_add(in, buf, (size_t)n);
        evbuffer_freeze(in, 0);
        if (rc == -1) {
            event_del(c->rev);
            conn_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, c);
            return;
        }
        conn_read_cb(c->bev, c);
        return;
    }
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    event_del(c->rev);
    conn_event_cb(c->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    (void)bev;
    if (c->state == HTTP_CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->lingering)
            closing_flushed(c);
        return;
    }
    if (c->state == HTTP_CONN_HANDLING && c->on_drain != NULL)
        c->on_drain(c, c->cb_arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)bev;
    if (c->close_pending)
        return;
    if (what & BEV_EVENT_TIMEOUT) {
        conn_close(c, "client stopped reading (write timeout)");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_close(c, c->state == HTTP_CONN_HANDLING ? "client went away mid-request"
                                                     : "client closed");
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        conn_close(c, "socket error");
        return;
    }
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->close_pending)
        return;
    if (c->state == HTTP_CONN_CLOSING) {
        conn_close(c, c->close_reason ? c->close_reason : "closed after the answer");
        return;
    }
    if (c->state == HTTP_CONN_READING_HEAD && c->has_head_bytes) {
        reject(c, 408, "request head not received in time (limits.header_timeout_ms)");
        return;
    }
    if (c->state == HTTP_CONN_READING_BODY) {
        /* Nothing was answered yet (an answer before the body closes the
         * connection), so the client gets a 408; no request went upstream. */
        reject(c, 408,
               c->body_deadline_armed
                   ? "request body not complete in time (limits.body_timeout_ms)"
                   : "request body not received in time (limits.idle_timeout_ms)");
        return;
    }
    conn_close(c, c->head_pending ? "no decision on the request head in time" : "idle timeout");
}
