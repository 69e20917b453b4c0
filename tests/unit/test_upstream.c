/* test_upstream.c - upstream.h over real loopback sockets, through the
 * proxy's own HTTP/1.1 client (upstream_h1.c): a scripted raw TCP server in
 * the test's own event_base records exactly the bytes it received (split
 * into requests with httpparse) and answers each request with scripted
 * pieces, each written only once the client has read the one before (the
 * server's unacknowledged bytes, SIOCOUTQ, and the client socket's unread
 * ones, FIONREAD, are 0; the client's end is found among this process's
 * descriptors by its address), so a split reply really arrives in several
 * reads and a paused transfer's next bytes wait unread in its socket. The
 * loop runs until a condition holds, with a deadline; no sleeps. Covered:
 * the request as sent (curl_slist header semantics, CR/LF refused, large
 * bodies), Content-Length / chunked / close-delimited / no-body replies,
 * interim heads, keep-alive reuse and when a connection is not reused, the
 * one retry of a reused connection closed under a request, pause and
 * resume, errors (refused, connect and reply timeouts, malformed head or
 * chunked framing, EOF mid-reply), a reply before the request was sent
 * whole, cancel, freeing the pool with transfers in flight, and the URLs
 * the own client declines (libcurl takes them). */
#include "common.h"

#include "config.h"
#include "httpparse.h"
#include "upstream.h"
#include "upstream_engine.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>

#define DEADLINE_MS 10000
#define MAX_CONNS   16
#define MAX_REQS    16
#define MAX_PIECES  16
#define MAX_OUT     1024
#define MAX_LINES   64
#define MAX_CALLS   64
#define FD_SCAN_MAX 1024
/* Every secret-looking value the tests send or get back contains this; no
 * errbuf may. */
#define LEAK "leakcanary"

struct fixture;

/* ---- the scripted server ----------------------------------------------- */

/* What the server answers to one request (by its number over all
 * connections): pieces written one by one, each once the client has read
 * the one before; split > 0 cuts every piece into writes of that many
 * bytes; shut: then shutdown(SHUT_WR) (the client sees EOF). No pieces and
 * no shut: the request is not answered. */
struct reply {
    const char *pieces[MAX_PIECES];
    size_t split;
    bool shut;
    bool early; /* answered once its head arrived; the body is then not read */
};

struct out {
    const char *p;
    size_t len;
    bool shut;
};

/* A request as the server received it. */
struct sreq {
    int conn;  /* accept order of its connection */
    int nth;   /* its number on that connection */
    char *raw; /* head and body exactly as received, NUL-terminated */
    size_t raw_len;
    size_t head_len;
};

struct sconn {
    struct fixture *f;
    int fd; /* -1 once closed */
    struct event *rev;
    int peer_port; /* the client's port */
    int client_fd; /* the client's end in this process; -1 unknown */
    char *in;      /* every byte received on this connection */
    size_t in_len, in_cap, parsed;
    int n_reqs;
    struct out q[MAX_OUT];
    size_t q_at, q_n, off;
    size_t writes; /* pieces written whole */
    int blind;     /* times the client's end was not found while it had to be */
    size_t skip;   /* body bytes of a request answered early, not recorded */
    bool shut;     /* write side shut down */
    bool eof;      /* the client closed its end (FIN or reset) */
};

struct fixture {
    struct event_base *base;
    struct event *tick;
    struct config *cfg;
    struct upstream_pool *pool;
    int fds_before;

    int family;
    int lfd;
    int port;
    struct event *lev;
    int accepts;
    struct sconn conns[MAX_CONNS];
    struct reply script[MAX_REQS];
    struct sreq reqs[MAX_REQS];
    int n_reqs;
    int parse_errors;
    bool in_start; /* inside upstream_start */
};

/* Runs the loop until cond holds; fails the test past the deadline. The
 * tick (1 ms) wakes EVLOOP_ONCE and lets the server write its next piece. */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        int64_t dl_ = mono_ms() + DEADLINE_MS;                                                     \
        while (!(cond)) {                                                                          \
            if (mono_ms() >= dl_)                                                                  \
                fail_msg("timed out waiting for %s", #cond);                                       \
            event_base_loop(f->base, EVLOOP_ONCE);                                                 \
        }                                                                                          \
    } while (0)

/* Runs n loop iterations (each at least one tick): for asserting that
 * something does NOT happen while a readable socket would be seen. */
static void run_iterations(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++)
        event_base_loop(f->base, EVLOOP_ONCE);
}

static int sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* fd is the client's end of c: its port is c's peer port and its peer is
 * the server. */
static bool fd_is_client_of(int fd, const struct sconn *c)
{
    struct sockaddr_storage a;
    socklen_t l = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &l) != 0 || sa_port(&a) != c->peer_port)
        return false;
    l = sizeof(a);
    return getpeername(fd, (struct sockaddr *)&a, &l) == 0 && sa_port(&a) == c->f->port;
}

/* The client's end of c in this process, -1 once the client closed it. */
static int client_fd(struct sconn *c)
{
    if (c->client_fd >= 0 && fd_is_client_of(c->client_fd, c))
        return c->client_fd;
    c->client_fd = -1;
    for (int fd = 3; fd < FD_SCAN_MAX; fd++)
        if (fd != c->fd && fd_is_client_of(fd, c)) {
            c->client_fd = fd;
            break;
        }
    return c->client_fd;
}

/* Bytes that arrived at the client's end of c and that it has not read. */
static int client_unread(struct sconn *c)
{
    int fd = client_fd(c);
    int n = 0;
    if (fd == -1 || ioctl(fd, FIONREAD, &n) != 0)
        return 0;
    return n;
}

/* Everything written so far reached the client (acknowledged) and the
 * client read it. */
static bool client_took_all(struct sconn *c)
{
    int outq = 0;
    if (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0)
        return false;
    if (c->writes > 0 && client_fd(c) == -1 && !c->eof)
        c->blind++; /* the client may have closed it: tests that split check */
    return client_unread(c) == 0;
}

static void sconn_close(struct sconn *c)
{
    if (c->fd == -1)
        return;
    event_free(c->rev);
    c->rev = NULL;
    close(c->fd);
    c->fd = -1;
}

static void pump(struct sconn *c)
{
    while (c->fd != -1 && !c->shut && c->q_at < c->q_n) {
        struct out *o = &c->q[c->q_at];
        if (c->off == 0 && !client_took_all(c))
            return;
        if (o->shut) {
            shutdown(c->fd, SHUT_WR);
            c->shut = true;
            c->q_at++;
            return;
        }
        ssize_t w = send(c->fd, o->p + c->off, o->len - c->off, MSG_NOSIGNAL);
        if (w == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            c->q_at = c->q_n; /* the client is gone */
            return;
        }
        c->off += (size_t)w;
        if (c->off < o->len)
            return;
        c->off = 0;
        c->q_at++;
        c->writes++;
    }
}

static void enqueue(struct sconn *c, const char *p, size_t len, bool shut)
{
    assert_true(c->q_n < MAX_OUT);
    c->q[c->q_n++] = (struct out){p, len, shut};
}

static void respond(struct sconn *c, int idx)
{
    if (idx >= MAX_REQS)
        return;
    const struct reply *r = &c->f->script[idx];
    for (size_t i = 0; i < MAX_PIECES && r->pieces[i] != NULL; i++) {
        size_t len = strlen(r->pieces[i]);
        size_t step = r->split != 0 ? r->split : len;
        for (size_t at = 0; at < len; at += step)
            enqueue(c, r->pieces[i] + at, MIN(step, len - at), false);
    }
    if (r->shut)
        enqueue(c, NULL, 0, true);
}

/* Splits what arrived into requests (head, then Content-Length bytes of
 * body) and answers each. */
static void parse_requests(struct sconn *c)
{
    struct fixture *f = c->f;
    size_t k = MIN(c->skip, c->in_len - c->parsed);
    c->parsed += k;
    c->skip -= k;
    while (c->parsed < c->in_len) {
        struct httpparse_request req;
        struct httpparse_limits lim = {0};
        int code = 0;
        const char *why = NULL;
        enum httpparse_status st =
            httpparse_request(c->in + c->parsed, c->in_len - c->parsed, &lim, &req, &code, &why);
        if (st == HTTPPARSE_INCOMPLETE)
            return;
        if (st == HTTPPARSE_ERROR) {
            print_error("server: bad request (%d %s)\n", code, why);
            f->parse_errors++;
            c->parsed = c->in_len;
            return;
        }
        size_t total = req.head_len + (req.content_length > 0 ? (size_t)req.content_length : 0);
        bool early = f->n_reqs < MAX_REQS && f->script[f->n_reqs].early;
        if (c->in_len - c->parsed < total) {
            if (!early)
                return;
            /* Answered now; the rest of the body is skipped, and not read
             * until the test says so. */
            c->skip = total - (c->in_len - c->parsed);
            total = c->in_len - c->parsed;
            event_del(c->rev);
        }
        int idx = f->n_reqs++;
        if (idx < MAX_REQS) {
            struct sreq *r = &f->reqs[idx];
            r->conn = (int)(c - f->conns);
            r->nth = c->n_reqs;
            r->raw = malloc(total + 1);
            assert_non_null(r->raw);
            memcpy(r->raw, c->in + c->parsed, total);
            r->raw[total] = '\0';
            r->raw_len = total;
            r->head_len = req.head_len;
        }
        c->n_reqs++;
        c->parsed += total;
        respond(c, idx);
    }
}

static void sconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *c = arg;
    (void)what;
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
            assert_non_null(c->in);
        }
        ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        c->eof = true; /* FIN, or a reset */
        break;
    }
    parse_requests(c);
    if (c->eof)
        sconn_close(c);
    else
        pump(c);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)what;
    for (;;) {
        struct sockaddr_storage a;
        socklen_t l = sizeof(a);
        int fd = accept4(lfd, (struct sockaddr *)&a, &l, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return;
        assert_true(f->accepts < MAX_CONNS);
        struct sconn *c = &f->conns[f->accepts++];
        c->f = f;
        c->fd = fd;
        c->client_fd = -1;
        c->peer_port = sa_port(&a);
        c->rev = event_new(f->base, fd, EV_READ | EV_PERSIST, sconn_read_cb, c);
        assert_non_null(c->rev);
        assert_int_equal(event_add(c->rev, NULL), 0);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < f->accepts; i++)
        pump(&f->conns[i]);
}

static void srv_start(struct fixture *f, int family)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*s4);
    }
    f->family = family;
    f->lfd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&ss, sl), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    sl = sizeof(ss);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&ss, &sl), 0);
    f->port = sa_port(&ss);
    f->lev = event_new(f->base, f->lfd, EV_READ | EV_PERSIST, accept_cb, f);
    assert_non_null(f->lev);
    assert_int_equal(event_add(f->lev, NULL), 0);
}

static void srv_stop(struct fixture *f)
{
    for (int i = 0; i < f->accepts; i++) {
        sconn_close(&f->conns[i]);
        free(f->conns[i].in);
    }
    memset(f->conns, 0, sizeof(f->conns));
    f->accepts = 0;
    for (int i = 0; i < f->n_reqs && i < MAX_REQS; i++)
        free(f->reqs[i].raw);
    memset(f->reqs, 0, sizeof(f->reqs));
    f->n_reqs = 0;
    if (f->lev != NULL)
        event_free(f->lev);
    f->lev = NULL;
    if (f->lfd >= 0)
        close(f->lfd);
    f->lfd = -1;
}

/* No connection is waiting to be accepted (a connect the client made would
 * be there: loopback handshakes complete inside connect()). */
static void assert_no_pending_accept(struct fixture *f)
{
    int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    assert_int_equal(fd, -1);
}

/* ---- the client: one transfer's callbacks, recorded -------------------- */

struct xrec {
    struct fixture *f;
    struct upstream_xfer *x;
    int pause_first; /* on_data answers PAUSE to this many calls */
    bool dead;       /* cancelled or the pool freed: no callback may come */
    int late;        /* callbacks that came while dead */

    int n_head;
    int status;
    int64_t content_length;
    char *lines[MAX_LINES];
    size_t n_lines;
    bool data_before_head;

    int n_calls;
    char *calls[MAX_CALLS]; /* each on_data call's bytes */
    size_t call_len[MAX_CALLS];
    bool call_paused[MAX_CALLS];
    char *data; /* the bytes taken (calls answered OK), NUL-terminated */
    size_t data_len;

    int n_done;
    bool done_in_start;
    CURLcode code;
    char errbuf[CURL_ERROR_SIZE];
};

static void on_head(struct upstream_xfer *x, const struct upstream_head *h, void *arg)
{
    struct xrec *r = arg;
    (void)x;
    if (r->dead)
        r->late++;
    r->n_head++;
    r->status = h->status;
    r->content_length = h->content_length;
    for (size_t i = 0; i < r->n_lines; i++)
        free(r->lines[i]);
    r->n_lines = 0;
    for (size_t i = 0; i < h->n_lines && i < MAX_LINES; i++)
        r->lines[r->n_lines++] = strdup(h->lines[i]);
}

static enum upstream_data_result on_data(struct upstream_xfer *x, const char *data, size_t len,
                                         void *arg)
{
    struct xrec *r = arg;
    (void)x;
    if (r->dead)
        r->late++;
    if (r->n_head == 0)
        r->data_before_head = true;
    bool pause = r->n_calls < r->pause_first;
    if (r->n_calls < MAX_CALLS) {
        r->calls[r->n_calls] = malloc(len + 1);
        memcpy(r->calls[r->n_calls], data, len);
        r->calls[r->n_calls][len] = '\0';
        r->call_len[r->n_calls] = len;
        r->call_paused[r->n_calls] = pause;
    }
    r->n_calls++;
    if (pause)
        return UPSTREAM_DATA_PAUSE;
    r->data = realloc(r->data, r->data_len + len + 1);
    memcpy(r->data + r->data_len, data, len);
    r->data_len += len;
    r->data[r->data_len] = '\0';
    return UPSTREAM_DATA_OK;
}

static void on_done(struct upstream_xfer *x, CURLcode code, const char *errbuf, void *arg)
{
    struct xrec *r = arg;
    if (r->dead)
        r->late++;
    if (x != NULL || r->f->in_start)
        r->done_in_start = true; /* x must be NULL; never from inside start */
    r->n_done++;
    r->code = code;
    snprintf(r->errbuf, sizeof(r->errbuf), "%s", errbuf != NULL ? errbuf : "");
    r->x = NULL;
}

static const struct upstream_callbacks cbs = {on_head, on_data, on_done};

static void xrec_clear(struct xrec *r)
{
    for (size_t i = 0; i < r->n_lines; i++)
        free(r->lines[i]);
    for (int i = 0; i < r->n_calls && i < MAX_CALLS; i++)
        free(r->calls[i]);
    free(r->data);
    memset(r, 0, sizeof(*r));
}

static struct curl_slist *slist(const char *const *lines)
{
    struct curl_slist *l = NULL;
    for (size_t i = 0; lines != NULL && lines[i] != NULL; i++) {
        l = curl_slist_append(l, lines[i]);
        assert_non_null(l);
    }
    return l;
}

/* Starts a transfer of url (a full URL). */
static struct upstream_xfer *start_url(struct fixture *f, struct xrec *r, const char *method,
                                       const char *url, const char *const *headers,
                                       const char *body, size_t body_len)
{
    struct upstream_request req = {
        .method = method,
        .url = url,
        .headers = slist(headers),
        .body = body,
        .body_len = body_len,
        .has_body = body != NULL,
    };
    r->f = f;
    f->in_start = true;
    r->x = upstream_start(f->pool, &req, &cbs, r);
    f->in_start = false;
    return r->x;
}

/* Starts a transfer of path on the scripted server. */
static struct upstream_xfer *start(struct fixture *f, struct xrec *r, const char *method,
                                   const char *path, const char *const *headers, const char *body,
                                   size_t body_len)
{
    char url[128];
    if (f->family == AF_INET6)
        snprintf(url, sizeof(url), "http://[::1]:%d%s", f->port, path);
    else
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
    return start_url(f, r, method, url, headers, body, body_len);
}

/* A GET of path that must succeed; returns after on_done. */
static void get_ok(struct fixture *f, struct xrec *r, const char *path)
{
    assert_non_null(start(f, r, "GET", path, NULL, NULL, 0));
    RUN_UNTIL(r->n_done == 1);
    assert_int_equal(r->code, CURLE_OK);
    assert_false(r->done_in_start);
}

/* Common checks once a transfer ended: one on_done, from the loop, and an
 * errbuf without any header value. */
static void assert_ended(struct xrec *r, CURLcode code)
{
    assert_int_equal(r->n_done, 1);
    assert_false(r->done_in_start);
    if (r->code != code)
        fail_msg("on_done: %d (%s), expected %d", r->code, r->errbuf, code);
    assert_null(strcasestr(r->errbuf, LEAK));
    assert_int_equal(r->late, 0);
    assert_false(r->data_before_head);
    if (code == CURLE_OK)
        assert_string_equal(r->errbuf, "");
    else
        assert_true(r->errbuf[0] != '\0');
}

static void assert_lines(const struct xrec *r, const char *const *want)
{
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    for (size_t i = 0; i < n && i < r->n_lines; i++)
        assert_string_equal(r->lines[i], want[i]);
    assert_int_equal(r->n_lines, n);
}

static void assert_data(const struct xrec *r, const char *want)
{
    assert_int_equal(r->data_len, strlen(want));
    if (r->data_len > 0)
        assert_string_equal(r->data, want);
}

/* The request the server got as number idx, exactly. */
static void assert_req(struct fixture *f, int idx, int conn, const char *want)
{
    assert_true(idx < f->n_reqs);
    assert_int_equal(f->reqs[idx].conn, conn);
    assert_string_equal(f->reqs[idx].raw, want);
    assert_int_equal(f->reqs[idx].raw_len, strlen(want));
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static char *fmt(const char *format, ...) PRINTF_LIKE(1, 2);
static char *fmt(const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    char *s = NULL;
    assert_true(vasprintf(&s, format, ap) >= 0);
    va_end(ap);
    return s;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xrec *r = arg;
    (void)fd;
    (void)what;
    upstream_resume(r->x);
}

/* upstream_resume from a zero timer: outside every upstream callback. */
static void resume_from_timer(struct fixture *f, struct xrec *r)
{
    struct timeval zero = {0, 0};
    assert_int_equal(event_base_once(f->base, -1, EV_TIMEOUT, resume_cb, r, &zero), 0);
}

/* ---- fixture ------------------------------------------------------------ */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = count_fds();
    f->lfd = -1;
    f->base = event_base_new();
    assert_non_null(f->base);
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, f);
    struct timeval tv = {0, 1000};
    assert_int_equal(event_add(f->tick, &tv), 0);
    char *err = NULL;
    f->cfg = config_parse("{}", &err);
    if (f->cfg == NULL)
        fail_msg("config: %s", err);
    f->pool = upstream_pool_new(f->base, f->cfg);
    assert_non_null(f->pool);
    srv_start(f, AF_INET);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    upstream_pool_free(f->pool);
    int parse_errors = f->parse_errors;
    srv_stop(f);
    event_free(f->tick);
    event_base_free(f->base);
    config_free(f->cfg);
    int before = f->fds_before;
    free(f);
    assert_int_equal(parse_errors, 0); /* every request was valid HTTP/1.1 */
    assert_int_equal(count_fds(), before);
    return 0;
}

static const char *const AUTH[] = {"Authorization: Bearer sk-" LEAK "-key", NULL};

/* ---- the request as sent, Content-Length replies ------------------------- */

static void test_content_length_reply(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\n"
                                             "Content-Type: text/plain\r\n"
                                             "X-Up:   padded  \r\n"
                                             "X-Secret: " LEAK "-reply\r\n"
                                             "Content-Length: 5\r\n"
                                             "\r\n"
                                             "hello"}};
    const char *headers[] = {"Authorization: Bearer sk-" LEAK "-key", "X-Empty;",         "Expect:",
                             "Content-Type: application/json",        "X-Spaced:   v  w", NULL};
    struct xrec r = {0};
    const char body[] = "{\"a\":1}";
    assert_non_null(
        start(f, &r, "POST", "/v1/chat/completions?x=1&y=%20z", headers, body, sizeof(body) - 1));
    assert_int_equal(r.n_done, 0);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);

    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, 5);
    const char *lines[] = {"Content-Type: text/plain", "X-Up: padded", "X-Secret: " LEAK "-reply",
                           "Content-Length: 5", NULL};
    assert_lines(&r, lines);
    assert_data(&r, "hello");

    /* "Name;" is sent with an empty value, "Expect:" not at all. */
    char *want = fmt("POST /v1/chat/completions?x=1&y=%%20z HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Authorization: Bearer sk-" LEAK "-key\r\n"
                     "X-Empty:\r\n"
                     "Content-Type: application/json\r\n"
                     "X-Spaced:   v  w\r\n"
                     "Content-Length: 7\r\n"
                     "\r\n"
                     "{\"a\":1}",
                     f->port);
    assert_int_equal(f->n_reqs, 1);
    assert_req(f, 0, 0, want);
    free(want);
    assert_null(strcasestr(f->reqs[0].raw, "Expect"));
    assert_int_equal(f->parse_errors, 0);
    assert_int_equal(upstream_pool_active(f->pool), 0);
    xrec_clear(&r);
}

/* GET without a body: no Content-Length; a Host of the caller's replaces
 * the URL's; an empty path is "/"; "localhost" is the own client's too. */
static void test_request_head_variants(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 4; i++)
        f->script[i] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}};

    struct xrec r = {0};
    const char *host[] = {"Host: api.example.test", "Accept: */*", NULL};
    assert_non_null(start(f, &r, "GET", "/a/b", host, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.content_length, 0);
    assert_int_equal(r.n_calls, 0);
    assert_req(f, 0, 0, "GET /a/b HTTP/1.1\r\nHost: api.example.test\r\nAccept: */*\r\n\r\n");
    xrec_clear(&r);

    /* DELETE with has_body and an empty body: Content-Length: 0. */
    const char *none[] = {NULL};
    assert_non_null(start(f, &r, "DELETE", "", none, "", 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    char *want =
        fmt("DELETE / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n", f->port);
    assert_req(f, 1, 0, want);
    free(want);
    xrec_clear(&r);

    /* POST without has_body still says Content-Length: 0. */
    struct upstream_request req = {.method = "POST", .headers = NULL};
    char url[64];
    snprintf(url, sizeof(url), "http://localhost:%d/p", f->port);
    req.url = url;
    r.f = f;
    f->in_start = true;
    r.x = upstream_start(f->pool, &req, &cbs, &r);
    f->in_start = false;
    assert_non_null(r.x);
    assert_int_equal(r.x->kind, UPSTREAM_ENGINE_H1);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    want = fmt("POST /p HTTP/1.1\r\nHost: localhost:%d\r\nContent-Length: 0\r\n\r\n", f->port);
    /* localhost is an origin of its own (its Host differs): a new connection. */
    assert_req(f, 2, 1, want);
    free(want);
    xrec_clear(&r);
    assert_int_equal(f->parse_errors, 0);
}

/* The request target is origin-form without a fragment, as libcurl sends
 * it: a query with no path gets its "/", a "#..." is not sent; "Host;"
 * replaces the proxy's Host (sent empty) rather than adding a second. */
static void test_request_target_and_host(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++)
        f->script[i] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}};
    struct xrec r = {0};
    const char *none[] = {NULL};
    assert_non_null(start(f, &r, "GET", "?x=1", none, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    char *want = fmt("GET /?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f->port);
    assert_req(f, 0, 0, want);
    free(want);
    xrec_clear(&r);

    assert_non_null(start(f, &r, "GET", "/a?b=2#frag", none, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    want = fmt("GET /a?b=2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f->port);
    assert_req(f, 1, 0, want);
    free(want);
    xrec_clear(&r);

    const char *empty_host[] = {"Host;", "Accept: */*", NULL};
    assert_non_null(start(f, &r, "GET", "/h", empty_host, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_req(f, 2, 0, "GET /h HTTP/1.1\r\nHost:\r\nAccept: */*\r\n\r\n");
    xrec_clear(&r);
    assert_int_equal(f->parse_errors, 0);
}

/* A header line with CR or LF could split the head: upstream_start returns
 * NULL and nothing is sent (the next request is the first the server sees,
 * on the first connection). */
static void test_header_crlf_refused(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    const char *cr[] = {"Accept: */*", "X-Evil: a\r\nX-Injected: " LEAK, NULL};
    const char *lf[] = {"X-Evil: a\nX-Injected: b", NULL};
    const char *cr_only[] = {"X-Evil: a\rb", NULL};
    const char *name_only[] = {"X-No-Colon", NULL};
    struct xrec r = {0};
    assert_null(start(f, &r, "GET", "/x", cr, NULL, 0));
    assert_null(start(f, &r, "POST", "/x", lf, "b", 1));
    assert_null(start(f, &r, "GET", "/x", cr_only, NULL, 0));
    assert_null(start(f, &r, "GET", "/x", name_only, NULL, 0));
    assert_int_equal(upstream_pool_active(f->pool), 0);
    assert_no_pending_accept(f);

    get_ok(f, &r, "/ok");
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "ok");
    assert_int_equal(r.n_calls, 1);
    assert_int_equal(f->accepts, 1);
    assert_int_equal(f->n_reqs, 1);
    char *want = fmt("GET /ok HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f->port);
    assert_req(f, 0, 0, want);
    assert_int_equal(f->conns[0].in_len, strlen(want));
    free(want);
    assert_int_equal(r.n_done, 1);
    xrec_clear(&r);
}

/* A large request body (partial sends, the write event) and a reply body
 * over several reads. */
static void test_large_bodies(void **state)
{
    struct fixture *f = *state;
    size_t up_len = 3 * 1024 * 1024 + 7;
    char *up = malloc(up_len);
    assert_non_null(up);
    for (size_t i = 0; i < up_len; i++)
        up[i] = (char)('a' + i % 26);
    size_t down_len = 300 * 1000;
    char *reply = fmt("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", down_len);
    size_t head_len = strlen(reply);
    reply = realloc(reply, head_len + down_len + 1);
    for (size_t i = 0; i < down_len; i++)
        reply[head_len + i] = (char)('A' + i % 26);
    reply[head_len + down_len] = '\0';
    f->script[0] = (struct reply){.pieces = {reply}};

    struct xrec r = {0};
    assert_non_null(start(f, &r, "PUT", "/upload", NULL, up, up_len));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.content_length, (int64_t)down_len);
    assert_int_equal(r.data_len, down_len);
    assert_memory_equal(r.data, reply + head_len, down_len);
    assert_true(r.n_calls > 1);

    assert_int_equal(f->n_reqs, 1);
    const struct sreq *q = &f->reqs[0];
    char *want = fmt("PUT /upload HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %zu\r\n\r\n",
                     f->port, up_len);
    assert_int_equal(q->head_len, strlen(want));
    assert_memory_equal(q->raw, want, q->head_len);
    assert_int_equal(q->raw_len, q->head_len + up_len);
    assert_memory_equal(q->raw + q->head_len, up, up_len);
    free(want);
    free(up);
    free(reply);
    xrec_clear(&r);
}

/* ---- framings ------------------------------------------------------------ */

static void test_chunked_reply(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\n"
                                             "Transfer-Encoding: chunked\r\n"
                                             "\r\n",
                                             "5", "\r\nhel", "lo\r\n1", "0;ext=1\r\n0123456789",
                                             "abcdef\r\n", "0\r\nX-Trailer: " LEAK "\r\n", "\r\n"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             "3\r\nabc\r\n0\r\n\r\n"}};
    struct xrec r = {0};
    get_ok(f, &r, "/c");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, -1);
    const char *lines[] = {"Transfer-Encoding: chunked", NULL};
    assert_lines(&r, lines);
    assert_data(&r, "hello0123456789abcdef");
    assert_true(f->conns[0].writes >= 8); /* it did arrive in pieces */
    assert_int_equal(f->conns[0].blind, 0);
    xrec_clear(&r);

    /* The end of the chunked body was found: the connection carries the
     * next request. */
    get_ok(f, &r, "/d");
    assert_data(&r, "abc");
    assert_int_equal(f->accepts, 1);
    assert_int_equal(f->reqs[1].conn, 0);
    xrec_clear(&r);
}

static void test_head_split_bytewise(void **state)
{
    struct fixture *f = *state;
    const char *reply = "HTTP/1.1 201 Created\r\n"
                        "X-A: b\r\n"
                        "Content-Length: 3\r\n"
                        "\r\n";
    f->script[0] = (struct reply){.pieces = {reply, "abc"}, .split = 1};
    struct xrec r = {0};
    get_ok(f, &r, "/split");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.content_length, 3);
    const char *lines[] = {"X-A: b", "Content-Length: 3", NULL};
    assert_lines(&r, lines);
    assert_data(&r, "abc");
    assert_int_equal(f->conns[0].writes, strlen(reply) + 3);
    assert_int_equal(f->conns[0].blind, 0);
    assert_int_equal(r.n_calls, 3);
    xrec_clear(&r);
}

static void test_interim_heads_skipped(void **state)
{
    struct fixture *f = *state;
    /* Across reads: 100 and the start of 103, the rest of 103, the final. */
    f->script[0] =
        (struct reply){.pieces = {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Ea",
                                  "rly Hints\r\nLink: </" LEAK ".css>; rel=preload\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    /* In one read. */
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 100 Continue\r\n\r\n"
                                             "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                             "HTTP/1.1 404 Not Found\r\nX-B: c\r\n"
                                             "Content-Length: 4\r\n\r\nnope"}};
    struct xrec r = {0};
    get_ok(f, &r, "/i");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.status, 200);
    const char *lines[] = {"Content-Length: 2", NULL};
    assert_lines(&r, lines);
    assert_data(&r, "ok");
    xrec_clear(&r);

    get_ok(f, &r, "/j");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.status, 404);
    const char *lines2[] = {"X-B: c", "Content-Length: 4", NULL};
    assert_lines(&r, lines2);
    assert_data(&r, "nope");
    assert_int_equal(f->accepts, 1);
    xrec_clear(&r);
}

static void test_no_body_replies(void **state)
{
    struct fixture *f = *state;
    f->script[0] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-H: 1\r\n\r\n"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 204 No Content\r\nX-H: 2\r\n\r\n"}};
    f->script[2] = (struct reply){
        .pieces = {"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"e\"\r\n\r\n"}};
    f->script[3] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"}};
    struct xrec r = {0};
    assert_non_null(start(f, &r, "HEAD", "/h", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, 0);
    assert_int_equal(r.n_calls, 0);
    char *want = fmt("HEAD /h HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f->port);
    assert_req(f, 0, 0, want);
    free(want);
    xrec_clear(&r);

    get_ok(f, &r, "/204");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.content_length, 0);
    assert_int_equal(r.n_calls, 0);
    const char *l204[] = {"X-H: 2", NULL};
    assert_lines(&r, l204);
    xrec_clear(&r);

    get_ok(f, &r, "/304");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.content_length, 0);
    assert_int_equal(r.n_calls, 0);
    xrec_clear(&r);

    /* None of them had a body to wait for: the connection carries on. */
    get_ok(f, &r, "/after");
    assert_data(&r, "hi");
    assert_int_equal(f->accepts, 1);
    assert_int_equal(f->reqs[3].conn, 0);
    xrec_clear(&r);
}

/* Neither Content-Length nor chunked: the body ends with the connection,
 * which is then not reused. */
static void test_until_close(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "part one ", "part two"},
        .shut = true};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"}};
    struct xrec r = {0};
    get_ok(f, &r, "/stream");
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.content_length, -1);
    assert_data(&r, "part one part two");
    RUN_UNTIL(f->conns[0].eof); /* the client closed its end */
    xrec_clear(&r);

    get_ok(f, &r, "/next");
    assert_data(&r, "x");
    assert_int_equal(f->accepts, 2);
    assert_int_equal(f->reqs[1].conn, 1);
    assert_int_equal(f->conns[0].n_reqs, 1);
    xrec_clear(&r);
}

/* ---- keep-alive ----------------------------------------------------------- */

static void test_keepalive_reuse(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"}};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree"}};
    const char *want[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        struct xrec r = {0};
        char path[16];
        snprintf(path, sizeof(path), "/r%d", i);
        assert_non_null(start(f, &r, "POST", path, AUTH, "b", 1));
        RUN_UNTIL(r.n_done == 1);
        assert_ended(&r, CURLE_OK);
        assert_data(&r, want[i]);
        char *req = fmt("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Authorization: Bearer sk-" LEAK "-key\r\nContent-Length: 1\r\n\r\nb",
                        path, f->port);
        assert_req(f, i, 0, req);
        assert_int_equal(f->reqs[i].nth, i);
        free(req);
        xrec_clear(&r);
    }
    assert_int_equal(f->accepts, 1);
    assert_false(f->conns[0].eof);
    assert_no_pending_accept(f);
}

/* Connection: close (and HTTP/1.0 without keep-alive) ends the connection
 * after the reply; HTTP/1.0 with keep-alive does not. */
static void test_connection_close_reply(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb"}};
    f->script[2] = (struct reply){
        .pieces = {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nc"}};
    f->script[3] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 1\r\n\r\nd"}};
    f->script[4] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ne"}};
    const char *want[] = {"a", "b", "c", "d", "e"};
    const int conn[] = {0, 1, 2, 2, 3};
    for (int i = 0; i < 5; i++) {
        struct xrec r = {0};
        get_ok(f, &r, "/");
        assert_data(&r, want[i]);
        assert_int_equal(f->reqs[i].conn, conn[i]);
        xrec_clear(&r);
    }
    assert_int_equal(f->accepts, 4);
    RUN_UNTIL(f->conns[0].eof && f->conns[1].eof && f->conns[2].eof);
    assert_false(f->conns[3].eof);
}

/* Bytes after the end of a reply: the connection is not trusted again. */
static void test_bytes_after_body_not_reused(void **state)
{
    struct fixture *f = *state;
    f->script[0] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             "2\r\nyo\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"}};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    struct xrec r = {0};
    get_ok(f, &r, "/1");
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "hi");
    RUN_UNTIL(f->conns[0].eof);
    xrec_clear(&r);

    get_ok(f, &r, "/2");
    assert_data(&r, "yo");
    RUN_UNTIL(f->conns[1].eof);
    xrec_clear(&r);

    get_ok(f, &r, "/3");
    assert_data(&r, "ok");
    assert_int_equal(f->accepts, 3);
    assert_int_equal(f->conns[0].n_reqs, 1);
    assert_int_equal(f->conns[1].n_reqs, 1);
    xrec_clear(&r);
}

/* The same for replies whose body is empty: Content-Length: 0, 204, and a
 * HEAD answered with a body. */
static void test_bytes_after_empty_body_not_reused(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nJUNK"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 204 No Content\r\n\r\nJUNK"}};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"}};
    f->script[3] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    struct xrec r = {0};
    get_ok(f, &r, "/1");
    assert_int_equal(r.n_calls, 0);
    RUN_UNTIL(f->conns[0].eof);
    xrec_clear(&r);

    get_ok(f, &r, "/2");
    assert_int_equal(r.status, 204);
    assert_int_equal(r.n_calls, 0);
    RUN_UNTIL(f->conns[1].eof);
    xrec_clear(&r);

    assert_non_null(start(f, &r, "HEAD", "/3", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_calls, 0);
    RUN_UNTIL(f->conns[2].eof);
    xrec_clear(&r);

    get_ok(f, &r, "/4");
    assert_data(&r, "ok");
    assert_int_equal(f->accepts, 4);
    xrec_clear(&r);
}

/* ---- connections the upstream closes ------------------------------------- */

/* An idle connection the server closes is dropped at once: the next
 * request opens a new one and never touches the old. */
static void test_idle_closed_by_server_dropped(void **state)
{
    struct fixture *f = *state;
    f->script[0] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"}, .shut = true};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"}};
    struct xrec r = {0};
    get_ok(f, &r, "/a");
    assert_data(&r, "1");
    xrec_clear(&r);
    /* The server's FIN reaches the idle connection: the client closes it. */
    RUN_UNTIL(f->conns[0].eof);
    assert_int_equal(f->conns[0].in_len, f->reqs[0].raw_len);

    get_ok(f, &r, "/b");
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "2");
    assert_int_equal(f->accepts, 2);
    assert_int_equal(f->reqs[1].conn, 1);
    assert_int_equal(f->reqs[1].nth, 0);
    xrec_clear(&r);
}

/* The race: the server closes a kept-alive connection just as request 2
 * arrives on it (without answering): request 2 goes again, once, on a new
 * connection. */
static void test_reused_conn_closed_retried_once(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"}};
    f->script[1] = (struct reply){.shut = true};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"}};
    struct xrec r = {0};
    get_ok(f, &r, "/a");
    xrec_clear(&r);

    assert_non_null(start(f, &r, "POST", "/b", AUTH, "body", 4));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_head, 1);
    assert_data(&r, "2");
    assert_int_equal(f->accepts, 2);
    assert_int_equal(f->n_reqs, 3);
    assert_int_equal(f->reqs[1].conn, 0);
    assert_int_equal(f->reqs[1].nth, 1);
    assert_int_equal(f->reqs[2].conn, 1);
    assert_int_equal(f->reqs[2].nth, 0);
    char *want = fmt("POST /b HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Authorization: Bearer sk-" LEAK "-key\r\nContent-Length: 4\r\n\r\nbody",
                     f->port);
    assert_req(f, 1, 0, want);
    assert_req(f, 2, 1, want);
    free(want);
    RUN_UNTIL(f->conns[0].eof);
    xrec_clear(&r);
}

/* The retry's new connection closes without an answer too: no third try. */
static void test_retry_closed_too_got_nothing(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"}};
    f->script[1] = (struct reply){.shut = true};
    f->script[2] = (struct reply){.shut = true};
    struct xrec r = {0};
    get_ok(f, &r, "/a");
    xrec_clear(&r);

    assert_non_null(start(f, &r, "GET", "/b", AUTH, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_GOT_NOTHING);
    assert_int_equal(r.n_head, 0);
    assert_int_equal(r.n_calls, 0);
    RUN_UNTIL(f->conns[0].eof && f->conns[1].eof);
    assert_int_equal(f->accepts, 2);
    assert_no_pending_accept(f);
    assert_int_equal(f->n_reqs, 3);
    assert_int_equal(upstream_pool_active(f->pool), 0);
    xrec_clear(&r);

    /* A new connection that closes without answering is not retried at
     * all (only a reused one is). */
    f->script[3] = (struct reply){.shut = true};
    assert_non_null(start(f, &r, "GET", "/c", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_GOT_NOTHING);
    RUN_UNTIL(f->conns[2].eof);
    assert_int_equal(f->accepts, 3);
    assert_no_pending_accept(f);
    assert_int_equal(f->n_reqs, 4);
    xrec_clear(&r);
}

/* ---- pause and resume ------------------------------------------------------ */

static void test_pause_resume(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nAAAA", "BBBB", "CCCC"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"}};
    struct xrec r = {0};
    r.pause_first = 2;
    assert_non_null(start(f, &r, "GET", "/p", NULL, NULL, 0));
    RUN_UNTIL(r.n_calls == 1);
    assert_true(upstream_paused(r.x));
    assert_string_equal(r.calls[0], "AAAA");
    /* The server sends the next piece (the client read the first); it
     * waits unread in the client's socket while the transfer is paused. */
    RUN_UNTIL(f->conns[0].writes == 2 && client_unread(&f->conns[0]) > 0);
    run_iterations(f, 20);
    assert_int_equal(r.n_calls, 1);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(client_unread(&f->conns[0]), 4);
    assert_int_equal(f->conns[0].writes, 2);

    /* Resumed: the held bytes come again, and are refused again. */
    resume_from_timer(f, &r);
    RUN_UNTIL(r.n_calls == 2);
    assert_string_equal(r.calls[1], "AAAA");
    assert_true(upstream_paused(r.x));
    run_iterations(f, 20);
    assert_int_equal(r.n_calls, 2);
    assert_int_equal(client_unread(&f->conns[0]), 4);

    /* Resumed again: taken, then the rest, in order. */
    resume_from_timer(f, &r);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "AAAABBBBCCCC");
    assert_string_equal(r.calls[2], "AAAA");
    assert_false(r.call_paused[2]);
    for (int i = 3; i < r.n_calls; i++)
        assert_false(r.call_paused[i]);
    assert_int_equal(f->conns[0].blind, 0);
    xrec_clear(&r);

    get_ok(f, &r, "/q");
    assert_data(&r, "z");
    assert_int_equal(f->accepts, 1);
    xrec_clear(&r);
}

/* The whole body is read while the consumer is paused: it ends only after
 * resume, with every byte delivered exactly once. */
static void test_pause_body_complete_while_paused(void **state)
{
    struct fixture *f = *state;
    f->script[0] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"}};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             "3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n"}};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"}};
    struct xrec r = {0};
    r.pause_first = 1;
    assert_non_null(start(f, &r, "GET", "/cl", NULL, NULL, 0));
    RUN_UNTIL(r.n_calls == 1 && f->conns[0].writes == 1 && client_took_all(&f->conns[0]));
    run_iterations(f, 10);
    assert_int_equal(r.n_done, 0);
    assert_true(upstream_paused(r.x));
    assert_string_equal(r.calls[0], "0123456789");
    resume_from_timer(f, &r);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.n_calls, 2);
    assert_data(&r, "0123456789");
    xrec_clear(&r);

    r.pause_first = 1;
    assert_non_null(start(f, &r, "GET", "/chunked", NULL, NULL, 0));
    RUN_UNTIL(r.n_calls == 1 && f->conns[0].writes == 2 && client_took_all(&f->conns[0]));
    run_iterations(f, 10);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(r.n_calls, 1);
    assert_string_equal(r.calls[0], "abc");
    resume_from_timer(f, &r);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "abcdefghi");
    xrec_clear(&r);

    /* Both connections' replies ended cleanly: still one connection. */
    get_ok(f, &r, "/z");
    assert_data(&r, "z");
    assert_int_equal(f->accepts, 1);
    xrec_clear(&r);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    /* A port bound but not listening: connecting is refused. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));

    struct xrec r = {0};
    struct upstream_xfer *x = start_url(f, &r, "POST", url, AUTH, "b", 1);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_H1);
    assert_int_equal(r.n_done, 0); /* not from inside upstream_start */
    assert_int_equal(upstream_pool_active(f->pool), 1);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_COULDNT_CONNECT);
    assert_int_equal(r.n_head, 0);
    assert_int_equal(upstream_pool_active(f->pool), 0);
    close(s);
    xrec_clear(&r);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    f->cfg->limits.upstream_timeout_ms = 200;
    struct xrec r = {0};
    int64_t t0 = mono_ms();
    assert_non_null(start(f, &r, "GET", "/slow", AUTH, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    int64_t took = mono_ms() - t0;
    assert_ended(&r, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(r.n_head, 0);
    assert_true(took >= 190);
    assert_true(took < 5000);
    assert_int_equal(f->n_reqs, 1);
    RUN_UNTIL(f->conns[0].eof);
    xrec_clear(&r);

    /* The deadline covers the body too: a head, then silence. */
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"}};
    t0 = mono_ms();
    assert_non_null(start(f, &r, "GET", "/slow-body", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    took = mono_ms() - t0;
    assert_ended(&r, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(r.n_head, 1);
    assert_data(&r, "01234");
    assert_true(took >= 190);
    RUN_UNTIL(f->conns[1].eof);
    xrec_clear(&r);
}

static void test_malformed_head(void **state)
{
    struct fixture *f = *state;
    char *big = malloc(40000);
    assert_non_null(big);
    strcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ");
    size_t at = strlen(big);
    memset(big + at, 'x', 39000);
    strcpy(big + at + 39000, "\r\n\r\n");
    const char *heads[] = {
        "HTTP/1.1 200 OK\r\nX-Leak: " LEAK "\r\nBad Header Line\r\n\r\n",
        "HTTP/1.1 200 OK\nX-Leak: " LEAK "\n\n",
        "HTTP/1.1 200 OK\r\nContent-Length: " LEAK "\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " LEAK "\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "SSH-2.0-" LEAK "\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        big,
    };
    for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
        f->script[i] = (struct reply){.pieces = {heads[i]}};
        struct xrec r = {0};
        assert_non_null(start(f, &r, "GET", "/m", NULL, NULL, 0));
        RUN_UNTIL(r.n_done == 1);
        if (r.code != CURLE_WEIRD_SERVER_REPLY)
            fail_msg("head %zu: on_done %d (%s)", i, r.code, r.errbuf);
        assert_ended(&r, CURLE_WEIRD_SERVER_REPLY);
        assert_int_equal(r.n_head, 0);
        assert_int_equal(r.n_calls, 0);
        /* Not reused after a bad reply. */
        RUN_UNTIL(f->conns[i].eof);
        assert_int_equal(f->accepts, (int)i + 1);
        xrec_clear(&r);
    }
    free(big);
}

/* The connection ends before the reply does. */
static void test_eof_mid_reply(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "hello"}, .shut = true};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             "5\r\nhello\r\n3\r\nwo"},
                                  .shut = true};
    f->script[2] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nX-Leak: " LEAK "\r\nContent-"}, .shut = true};
    struct xrec r = {0};
    assert_non_null(start(f, &r, "GET", "/cl", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_PARTIAL_FILE);
    assert_int_equal(r.n_head, 1);
    assert_int_equal(r.content_length, 10);
    assert_data(&r, "hello");
    xrec_clear(&r);

    assert_non_null(start(f, &r, "GET", "/chunked", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_PARTIAL_FILE);
    assert_data(&r, "hellowo");
    xrec_clear(&r);

    assert_non_null(start(f, &r, "GET", "/head", NULL, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_RECV_ERROR);
    assert_int_equal(r.n_head, 0);
    xrec_clear(&r);
    assert_int_equal(f->accepts, 3);
    RUN_UNTIL(f->conns[0].eof && f->conns[1].eof && f->conns[2].eof);
}

static void test_malformed_chunked(void **state)
{
    struct fixture *f = *state;
    const char *bodies[] = {
        "3\r\nabc\r\nzz\r\n",            /* not hex */
        "3\r\nabcX\r\n0\r\n\r\n",        /* no CRLF after the data */
        "3\nabc\r\n0\r\n\r\n",           /* bare LF */
        "ffffffffffffffffff\r\nabc\r\n", /* too large */
    };
    const char *want[] = {"abc", "abc", "", ""};
    char *replies[ARRAY_SIZE(bodies)];
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        replies[i] =
            fmt("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Leak: " LEAK "\r\n\r\n%s",
                bodies[i]);
        f->script[i] = (struct reply){.pieces = {replies[i]}};
        struct xrec r = {0};
        assert_non_null(start(f, &r, "GET", "/bad", NULL, NULL, 0));
        RUN_UNTIL(r.n_done == 1);
        if (r.code != CURLE_RECV_ERROR)
            fail_msg("body %zu: on_done %d (%s)", i, r.code, r.errbuf);
        assert_ended(&r, CURLE_RECV_ERROR);
        assert_int_equal(r.n_head, 1);
        assert_data(&r, want[i]);
        RUN_UNTIL(f->conns[i].eof);
        xrec_clear(&r);
        free(replies[i]);
    }
    assert_int_equal(f->accepts, (int)ARRAY_SIZE(bodies));
}

/* ---- cancel and free ----------------------------------------------------------- */

static void test_cancel_mid_body(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nfirst", "secnd", "third"}};
    struct xrec r = {0};
    assert_non_null(start(f, &r, "GET", "/c", NULL, NULL, 0));
    RUN_UNTIL(r.n_calls == 1);
    assert_data(&r, "first");
    /* The next piece is on its way (or there): cancel. */
    RUN_UNTIL(f->conns[0].writes == 2);
    upstream_cancel(r.x);
    r.dead = true;
    assert_int_equal(upstream_pool_active(f->pool), 0);
    RUN_UNTIL(f->conns[0].eof);
    run_iterations(f, 10);
    assert_int_equal(r.late, 0);
    assert_int_equal(r.n_calls, 1);
    assert_int_equal(r.n_done, 0);
    upstream_cancel(NULL); /* a no-op */
    xrec_clear(&r);
}

/* upstream_pool_free with a transfer waiting for its head, one paused with
 * held bytes and its resume pending, one connecting to a port that refuses
 * and an idle connection: no callbacks, every connection closed (no leaks:
 * ASan; no descriptors left: teardown). */
static void test_pool_free_in_flight(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){0}; /* not answered */
    f->script[1] =
        (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nheld", "more"}};
    f->script[2] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"}};
    struct xrec waiting = {0}, paused = {0}, idle = {0}, refused = {0};
    assert_non_null(start(f, &waiting, "GET", "/waiting", NULL, NULL, 0));
    RUN_UNTIL(f->n_reqs == 1);
    paused.pause_first = 100;
    assert_non_null(start(f, &paused, "GET", "/paused", NULL, NULL, 0));
    RUN_UNTIL(f->n_reqs == 2 && paused.n_calls == 1);
    get_ok(f, &idle, "/idle"); /* its connection stays idle */
    assert_int_equal(f->accepts, 3);

    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));
    assert_non_null(start_url(f, &refused, "GET", url, NULL, NULL, 0));
    upstream_resume(paused.x); /* its kick is pending */
    assert_int_equal(upstream_pool_active(f->pool), 3);

    idle.dead = waiting.dead = paused.dead = refused.dead = true;
    upstream_pool_free(f->pool);
    f->pool = NULL;
    close(s);
    RUN_UNTIL(f->conns[0].eof && f->conns[1].eof && f->conns[2].eof);
    run_iterations(f, 10);
    assert_int_equal(idle.late + waiting.late + paused.late + refused.late, 0);
    assert_int_equal(waiting.n_done + paused.n_done + refused.n_done, 0);
    assert_int_equal(paused.n_calls, 1);
    xrec_clear(&idle);
    xrec_clear(&waiting);
    xrec_clear(&paused);
    xrec_clear(&refused);
}

/* The upstream answers before the request body was sent whole (a 413 for
 * an upload): the reply is delivered, the rest of the body is not sent and
 * the connection is not reused. */
static void test_early_reply_while_sending(void **state)
{
    struct fixture *f = *state;
    f->script[0] = (struct reply){
        .pieces = {"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\n\r\ntoo big"},
        .early = true};
    f->script[1] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    /* More than the loopback socket buffers hold. */
    size_t len = 32 * 1024 * 1024;
    char *body = malloc(len);
    assert_non_null(body);
    memset(body, 'u', len);
    struct xrec r = {0};
    assert_non_null(start(f, &r, "POST", "/upload", NULL, body, len));
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.status, 413);
    assert_data(&r, "too big");
    xrec_clear(&r);
    /* The server reads what was sent: less than the body, then the close. */
    assert_int_equal(event_add(f->conns[0].rev, NULL), 0);
    RUN_UNTIL(f->conns[0].eof);
    assert_true(f->conns[0].in_len < len);
    assert_int_equal(f->n_reqs, 1);
    assert_true(f->reqs[0].raw_len < len);
    assert_true(starts_with(f->reqs[0].raw, "POST /upload HTTP/1.1\r\n"));

    get_ok(f, &r, "/next");
    assert_data(&r, "ok");
    assert_int_equal(f->accepts, 2);
    xrec_clear(&r);
    free(body);
}

/* A listener whose accept queue is full drops SYNs: connecting hangs. */
static int hung_listener(int *filler, int *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(s, 0), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    *port = ntohs(sin.sin_port);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(*filler, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return s;
}

static void test_connect_timeout(void **state)
{
    struct fixture *f = *state;
    int filler, port;
    int s = hung_listener(&filler, &port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);

    /* The connect timeout. */
    f->cfg->limits.upstream_connect_timeout_ms = 200;
    f->cfg->limits.upstream_timeout_ms = 0;
    struct xrec r = {0};
    int64_t t0 = mono_ms();
    assert_non_null(start_url(f, &r, "GET", url, AUTH, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    int64_t took = mono_ms() - t0;
    assert_ended(&r, CURLE_OPERATION_TIMEDOUT);
    assert_true(took >= 190);
    assert_true(took < 5000);
    xrec_clear(&r);

    /* The whole-reply deadline counts from the start, connecting included
     * (as CURLOPT_TIMEOUT_MS): it ends a connect that takes longer. */
    f->cfg->limits.upstream_connect_timeout_ms = 10000;
    f->cfg->limits.upstream_timeout_ms = 300;
    t0 = mono_ms();
    assert_non_null(start_url(f, &r, "GET", url, AUTH, NULL, 0));
    RUN_UNTIL(r.n_done == 1);
    took = mono_ms() - t0;
    assert_ended(&r, CURLE_OPERATION_TIMEDOUT);
    assert_true(took >= 290);
    assert_true(took < 5000);
    xrec_clear(&r);
    assert_int_equal(upstream_pool_active(f->pool), 0);
    close(filler);
    close(s);
}

/* Transfers in flight together each get a connection; both go idle and
 * carry the next two. */
static void test_concurrent_transfers(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 4; i++) {
        char *p = fmt("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", i);
        static char bufs[4][64];
        snprintf(bufs[i], sizeof(bufs[i]), "%s", p);
        free(p);
        f->script[i] = (struct reply){.pieces = {bufs[i]}};
    }
    struct xrec a = {0}, b = {0};
    assert_non_null(start(f, &a, "GET", "/a", NULL, NULL, 0));
    assert_non_null(start(f, &b, "GET", "/b", NULL, NULL, 0));
    assert_int_equal(upstream_pool_active(f->pool), 2);
    RUN_UNTIL(a.n_done == 1 && b.n_done == 1);
    assert_ended(&a, CURLE_OK);
    assert_ended(&b, CURLE_OK);
    assert_int_equal(a.data_len + b.data_len, 2);
    assert_int_equal(f->accepts, 2);
    xrec_clear(&a);
    xrec_clear(&b);

    assert_non_null(start(f, &a, "GET", "/c", NULL, NULL, 0));
    assert_non_null(start(f, &b, "GET", "/d", NULL, NULL, 0));
    RUN_UNTIL(a.n_done == 1 && b.n_done == 1);
    assert_ended(&a, CURLE_OK);
    assert_ended(&b, CURLE_OK);
    assert_int_equal(f->accepts, 2);
    assert_int_equal(f->conns[0].n_reqs, 2);
    assert_int_equal(f->conns[1].n_reqs, 2);
    xrec_clear(&a);
    xrec_clear(&b);
}

/* At most 64 origins per pool are the own client's; more go to libcurl,
 * which then serves the scripted server as well. */
static void test_origin_table_full(void **state)
{
    struct fixture *f = *state;
    struct xrec r = {0};
    char url[64];
    for (int i = 0; i < 64; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.%d:%d/x", 2 + i, f->port);
        struct upstream_xfer *x = start_url(f, &r, "GET", url, NULL, NULL, 0);
        assert_non_null(x);
        assert_int_equal(x->kind, UPSTREAM_ENGINE_H1);
        upstream_cancel(x);
    }
    snprintf(url, sizeof(url), "http://127.0.0.2:%d/again", f->port);
    struct upstream_xfer *x = start_url(f, &r, "GET", url, NULL, NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_H1);
    upstream_cancel(x);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(upstream_pool_active(f->pool), 0);

    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ncurl"}};
    int before = f->accepts;
    x = start(f, &r, "GET", "/via-curl", NULL, NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_CURL);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, 4);
    assert_data(&r, "curl");
    assert_int_equal(f->accepts, before + 1);
    assert_int_equal(f->n_reqs, 1);
    assert_true(starts_with(f->reqs[0].raw, "GET /via-curl HTTP/1.1\r\n"));
    xrec_clear(&r);
}

/* ---- what the own client declines ---------------------------------------- */

static void test_declined_urls_go_to_curl(void **state)
{
    struct fixture *f = *state;
    f->cfg->limits.upstream_connect_timeout_ms = 3000;
    f->cfg->limits.upstream_timeout_ms = 5000;
    struct xrec r = {0};
    int64_t t0 = mono_ms();
    struct upstream_xfer *x =
        start_url(f, &r, "GET", "http://example.invalid/v1/models", AUTH, NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_CURL);
    assert_int_equal(r.n_done, 0);
    RUN_UNTIL(r.n_done == 1);
    assert_true(mono_ms() - t0 < DEADLINE_MS);
    if (r.code != CURLE_COULDNT_RESOLVE_HOST && r.code != CURLE_OPERATION_TIMEDOUT &&
        r.code != CURLE_COULDNT_CONNECT)
        fail_msg("on_done %d (%s)", r.code, r.errbuf);
    assert_int_equal(r.n_done, 1);
    assert_null(strcasestr(r.errbuf, LEAK));
    assert_int_equal(r.n_head, 0);
    xrec_clear(&r);

    /* https://, a CA of its own: libcurl's (cancelled before they run). */
    char url[96];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", f->port);
    x = start_url(f, &r, "GET", url, NULL, NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_CURL);
    upstream_cancel(x);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", f->port);
    struct upstream_request req = {.method = "GET", .url = url, .ca_pem = "not a pem"};
    x = upstream_start(f->pool, &req, &cbs, &r);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_CURL);
    upstream_cancel(x);
    /* Userinfo in the authority: libcurl's too. */
    snprintf(url, sizeof(url), "http://u:p@127.0.0.1:%d/x", f->port);
    x = start_url(f, &r, "GET", url, NULL, NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->kind, UPSTREAM_ENGINE_CURL);
    upstream_cancel(x);
    assert_int_equal(upstream_pool_active(f->pool), 0);
    assert_int_equal(r.n_done, 0);
    xrec_clear(&r);
}

/* An IPv6 literal is the own client's too. */
static void test_ipv6_literal(void **state)
{
    struct fixture *f = *state;
    srv_stop(f);
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool v6 = probe >= 0 && bind(probe, (struct sockaddr *)&s6, sizeof(s6)) == 0;
    if (probe >= 0)
        close(probe);
    if (!v6) {
        srv_start(f, AF_INET);
        skip();
    }
    srv_start(f, AF_INET6);
    f->script[0] = (struct reply){.pieces = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6"}};
    struct xrec r = {0};
    assert_non_null(start(f, &r, "GET", "/six", NULL, NULL, 0));
    assert_int_equal(r.x->kind, UPSTREAM_ENGINE_H1);
    RUN_UNTIL(r.n_done == 1);
    assert_ended(&r, CURLE_OK);
    assert_data(&r, "v6");
    char *want = fmt("GET /six HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n", f->port);
    assert_req(f, 0, 0, want);
    free(want);
    xrec_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_content_length_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_head_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_target_and_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_crlf_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_split_bytewise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_heads_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_until_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_after_body_not_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_after_empty_body_not_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_closed_by_server_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_conn_closed_retried_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_closed_too_got_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_body_complete_while_paused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_mid_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_reply_while_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_transfers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declined_urls_go_to_curl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_literal, setup, teardown),
    };
    log_set_level(getenv("UPSTREAM_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
