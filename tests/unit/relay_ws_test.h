/* relay_ws_test.h - the fixture shared by the WebSocket relay's unit tests
 * (test_relay_ws.c, test_relay_ws_policy.c): a mock upstream server and a
 * test client over real loopback sockets, written with libevent and ws.h,
 * the relay's callbacks recording what they saw, and helpers to start a
 * relay. Every function is static (one copy per test executable); a test
 * file need not use them all. One event_base per test; the loop is driven
 * until a condition holds, with a deadline; no sleeps. */
#ifndef BYOK_TESTS_RELAY_WS_TEST_H
#define BYOK_TESTS_RELAY_WS_TEST_H

#include "common.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "relay_ws.h"
#include "ws.h"

/* A test file uses some of the helpers below, not necessarily all. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#define DEADLINE_MS 15000
#define MAX_MSGS    32
#define MAX_METER   32

/* Runs the loop until cond holds; fails the test past the deadline. A
 * persistent tick (see fixture) wakes EVLOOP_ONCE at least every 10 ms. */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        int64_t dl_ = mono_ms() + DEADLINE_MS;                                                     \
        while (!(cond)) {                                                                          \
            assert_true(mono_ms() < dl_);                                                          \
            event_base_loop(f->base, EVLOOP_ONCE);                                                 \
        }                                                                                          \
    } while (0)

enum up_mode {
    UP_ACCEPT = 0,   /* 101, then echo data frames and close frames */
    UP_ACCEPT_HELLO, /* 101 and a text frame in the same write */
    UP_REFUSE_401,   /* 401 with a JSON body */
    UP_SILENT,       /* reads the request, never answers */
    UP_BAD_ACCEPT,   /* 101 with a wrong Sec-WebSocket-Accept */
    UP_BARE_LF,      /* 101 with bare LF line ends */
    UP_OBS_FOLD,     /* 101 with a folded header line */
};

struct msg {
    int opcode;
    uint8_t *data;
    size_t len;
    int frames;
};

struct fixture;

/* A WebSocket endpoint of the test: the client, or the mock upstream's side
 * of the upstream connection (server). */
struct peer {
    struct fixture *f;
    struct bufferevent *bev;
    bool server;
    bool head_done;
    struct evbuffer *raw; /* bytes before the frames: the HTTP head (and body) */
    char head[8192];
    struct ws_parser parser;
    struct msg cur;
    struct msg msgs[MAX_MSGS];
    size_t n_msgs;
    int frames;
    uint64_t data_bytes;
    bool keep;       /* keep message bytes */
    bool echo;       /* server: echo data frames as they come */
    bool close_echo; /* answer a close with the same payload */
    bool check_pattern;
    bool pattern_ok;
    int n_ping, n_pong;
    uint8_t ctl[WS_CONTROL_MAX];
    size_t ctl_len;
    bool got_close;
    int close_code;
    char reason[WS_CONTROL_MAX];
    int proto_error;
    bool eof;
    bool reset; /* the connection ended in an error (a reset), not a FIN */
};

struct meter_rec {
    enum relay_ws_dir dir;
    char *data;
    size_t len;
    bool complete;
};

/* One on_binary call. */
struct binary_rec {
    enum relay_ws_dir dir;
    size_t len;
    uint64_t message_off;
    bool last;
};

struct fixture {
    struct event_base *base;
    struct evdns_base *dns;
    struct event *tick;
    int fds_before;

    struct evconnlistener *up_lis;
    int up_port;
    enum up_mode up_mode;
    struct peer up;
    bool up_accepted;

    struct bufferevent *front; /* the relay's client bev (the relay owns it) */
    struct peer client;
    char client_key[WS_KEY_LEN + 1];

    struct config_limits limits;
    struct relay_ws_params params;
    struct relay_ws *relay;
    int n_open, n_end;
    struct relay_ws_end_info end;
    struct meter_rec meter[MAX_METER];
    size_t n_meter;
    const char *replacement; /* for the first client message */
    bool shutdown_on_open;

    /* client-first: what on_first saw and answers */
    int n_first;
    char *first_seen;
    bool first_refuse;
    bool first_fill;                 /* fill the target even when refusing */
    bool first_shutdown;             /* call relay_ws_shutdown from on_first */
    const char *first_refuse_reason; /* out->refuse_reason */
    char first_url[128];
    const char *first_reply;

    /* message policy (test_relay_ws_policy.c) */
    const char *veto_text;    /* on_message refuses a message equal to this */
    const char *veto_reason;  /* ... with this reason */
    int veto_rc;              /* ... returning this (0: -1) */
    const char *replace_each; /* offered as every message's replacement */
    struct binary_rec binary[MAX_METER];
    size_t n_binary;

    /* wss: the mock upstream's context and the relay's (trusting it) */
    SSL_CTX *tls_server, *tls_client;
    char sni[128]; /* server name the mock upstream was asked for */

    /* bulk sender (back-pressure) */
    uint64_t bulk_total, bulk_queued;
    int64_t bulk_progress_ms;
    size_t front_out_max;
};

/* ---- helpers ------------------------------------------------------------- */

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

static uint8_t pattern_byte(uint64_t off)
{
    return (uint8_t)(off % 251);
}

static void peer_frame(struct peer *p, int opcode, bool fin, const void *data, size_t len)
{
    uint8_t h[WS_FRAME_HEADER_MAX], key[4] = {0};
    bool mask = !p->server;
    if (mask)
        assert_int_equal(ws_new_mask_key(key), 0);
    size_t n = ws_frame_header(h, opcode, fin, len, mask, key);
    assert_true(n > 0);
    struct evbuffer *out = bufferevent_get_output(p->bev);
    evbuffer_add(out, h, n);
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, data, len);
    if (mask)
        ws_mask(copy, len, key, 0);
    evbuffer_add(out, copy, len);
    free(copy);
}

static void peer_close(struct peer *p, int code, const char *reason)
{
    uint8_t pl[WS_CONTROL_MAX];
    size_t n = ws_close_payload(pl, code, reason);
    peer_frame(p, WS_OP_CLOSE, true, pl, n);
}

static void peer_gone(struct peer *p)
{
    if (p->bev != NULL)
        bufferevent_free(p->bev);
    p->bev = NULL;
}

static void peer_clear(struct peer *p)
{
    peer_gone(p);
    if (p->raw)
        evbuffer_free(p->raw);
    p->raw = NULL;
    free(p->cur.data);
    for (size_t i = 0; i < p->n_msgs && i < MAX_MSGS; i++)
        free(p->msgs[i].data);
}

static int peer_on_event(void *arg, const struct ws_event *ev)
{
    struct peer *p = arg;
    switch (ev->type) {
    case WS_EVENT_DATA:
        if (ev->flags & WS_CHUNK_MSG_START) {
            p->cur.opcode = ev->opcode;
            p->cur.len = 0;
            p->cur.frames = 0;
        }
        if (ev->flags & WS_CHUNK_FRAME_START) {
            p->cur.frames++;
            p->frames++;
        }
        if (p->check_pattern)
            for (size_t i = 0; i < ev->len; i++)
                if (ev->data[i] != pattern_byte(p->data_bytes + i))
                    p->pattern_ok = false;
        p->data_bytes += ev->len;
        if (p->keep && ev->len > 0) {
            p->cur.data = realloc(p->cur.data, p->cur.len + ev->len);
            assert_non_null(p->cur.data);
            memcpy(p->cur.data + p->cur.len, ev->data, ev->len);
            p->cur.len += ev->len;
        }
        if (p->echo) {
            struct evbuffer *out = bufferevent_get_output(p->bev);
            if (ev->flags & WS_CHUNK_FRAME_START) {
                uint8_t h[WS_FRAME_HEADER_MAX];
                size_t n =
                    ws_frame_header(h, ev->frame_opcode, ev->fin, ev->frame_len, false, NULL);
                evbuffer_add(out, h, n);
            }
            evbuffer_add(out, ev->data, ev->len);
        }
        if ((ev->flags & WS_CHUNK_MSG_END) && p->n_msgs < MAX_MSGS) {
            p->msgs[p->n_msgs++] = p->cur;
            memset(&p->cur, 0, sizeof(p->cur));
        }
        break;
    case WS_EVENT_PING:
    case WS_EVENT_PONG:
        if (ev->type == WS_EVENT_PING)
            p->n_ping++;
        else
            p->n_pong++;
        memcpy(p->ctl, ev->data, ev->len);
        p->ctl_len = ev->len;
        break;
    case WS_EVENT_CLOSE:
        p->got_close = true;
        p->close_code = ev->close_code;
        snprintf(p->reason, sizeof(p->reason), "%.*s", (int)ev->reason_len,
                 ev->reason ? ev->reason : "");
        if (p->close_echo)
            peer_frame(p, WS_OP_CLOSE, true, ev->data, ev->len);
        break;
    }
    return 0;
}

static void peer_feed(struct peer *p, struct evbuffer *in)
{
    while (evbuffer_get_length(in) > 0 && p->proto_error == 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        uint8_t *d = evbuffer_pullup(in, (ev_ssize_t)n);
        size_t used = 0;
        enum ws_status st = ws_parser_feed(&p->parser, d, n, &used);
        evbuffer_drain(in, used);
        if (st == WS_ERROR)
            p->proto_error = ws_parser_error(&p->parser, NULL);
        if (st == WS_CLOSED || st == WS_ERROR) {
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
    }
}

static void peer_init_parser(struct peer *p)
{
    struct ws_parser_options o = {.role = p->server ? WS_ROLE_SERVER : WS_ROLE_CLIENT};
    ws_parser_init(&p->parser, &o, peer_on_event, p);
}

static void upstream_reply(struct fixture *f, struct peer *p)
{
    struct evbuffer *out = bufferevent_get_output(p->bev);
    const char *k = strcasestr(p->head, "\r\nSec-WebSocket-Key: ");
    char accept[WS_ACCEPT_LEN + 1] = "";
    if (k != NULL)
        assert_int_equal(ws_accept_key(k + 21, WS_KEY_LEN, accept), 0);
    switch (f->up_mode) {
    case UP_ACCEPT:
    case UP_ACCEPT_HELLO:
        evbuffer_add_printf(out,
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                            accept);
        if (f->up_mode == UP_ACCEPT_HELLO)
            peer_frame(p, WS_OP_TEXT, true, "session.created", 15);
        break;
    case UP_REFUSE_401:
        evbuffer_add_printf(out, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 17\r\n\r\n{\"error\":\"nokey\"}");
        break;
    case UP_SILENT:
        break;
    case UP_BAD_ACCEPT:
        evbuffer_add_printf(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                                 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        break;
    case UP_BARE_LF:
        evbuffer_add_printf(out,
                            "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n"
                            "Connection: Upgrade\nSec-WebSocket-Accept: %s\n\n",
                            accept);
        break;
    case UP_OBS_FOLD:
        evbuffer_add_printf(out,
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\n websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                            accept);
        break;
    }
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    struct peer *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!p->head_done) {
        evbuffer_add_buffer(p->raw, in);
        struct evbuffer_ptr e = evbuffer_search(p->raw, "\r\n\r\n", 4, NULL);
        if (e.pos < 0)
            return;
        size_t hl = (size_t)e.pos + 4;
        if (!p->server && strncmp((char *)evbuffer_pullup(p->raw, 12), "HTTP/1.1 101", 12) != 0)
            return; /* an error reply: kept whole in raw (head and body) */
        assert_true(hl < sizeof(p->head));
        evbuffer_remove(p->raw, p->head, hl);
        p->head[hl] = '\0';
        p->head_done = true;
        peer_init_parser(p);
        if (p->server) {
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            const char *sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
            snprintf(p->f->sni, sizeof(p->f->sni), "%s", sni ? sni : "");
            upstream_reply(p->f, p);
        }
        in = p->raw;
    }
    peer_feed(p, in);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct peer *p = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        p->eof = true;
        p->reset = (what & BEV_EVENT_ERROR) != 0;
        peer_gone(p);
    }
}

/* Bulk sender: keeps up to 256 KiB queued on the upstream's output. */
static void bulk_fill(struct fixture *f)
{
    static uint8_t chunk[65536];
    struct evbuffer *out = bufferevent_get_output(f->up.bev);
    while (f->bulk_queued < f->bulk_total && evbuffer_get_length(out) < 262144) {
        size_t n = (size_t)MIN((uint64_t)sizeof(chunk), f->bulk_total - f->bulk_queued);
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern_byte(f->bulk_queued + i);
        peer_frame(&f->up, WS_OP_BINARY, true, chunk, n);
        f->bulk_queued += n;
    }
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct fixture *f = ((struct peer *)arg)->f;
    (void)bev;
    if (f->bulk_total > 0) {
        f->bulk_progress_ms = mono_ms();
        bulk_fill(f);
    }
}

static void up_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                         int socklen, void *arg)
{
    struct fixture *f = arg;
    (void)l;
    (void)sa;
    (void)socklen;
    assert_false(f->up_accepted);
    f->up_accepted = true;
    int small = 65536;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    if (f->tls_server != NULL) {
        SSL *ssl = SSL_new(f->tls_server);
        assert_non_null(ssl);
        f->up.bev = bufferevent_openssl_socket_new(f->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE);
        bufferevent_openssl_set_allow_dirty_shutdown(f->up.bev, 1);
    } else {
        f->up.bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    assert_non_null(f->up.bev);
    bufferevent_setcb(f->up.bev, peer_read_cb, up_write_cb, peer_event_cb, &f->up);
    bufferevent_setwatermark(f->up.bev, EV_WRITE, 131072, 0);
    bufferevent_enable(f->up.bev, EV_READ | EV_WRITE);
}

/* ---- relay callbacks ----------------------------------------------------- */

static int on_message(void *arg, enum relay_ws_dir dir, const char *data, size_t len, bool complete,
                      char **replace, size_t *replace_len, const char **reason)
{
    struct fixture *f = arg;
    assert_non_null(replace);
    assert_non_null(replace_len);
    assert_non_null(reason);
    if (f->n_meter < MAX_METER) {
        struct meter_rec *m = &f->meter[f->n_meter];
        m->dir = dir;
        m->complete = complete;
        m->len = len;
        m->data = malloc(len + 1);
        assert_non_null(m->data);
        memcpy(m->data, data, len);
        m->data[len] = '\0';
    }
    f->n_meter++;
    if (dir == RELAY_WS_FROM_CLIENT && f->replacement != NULL) {
        *replace = strdup(f->replacement);
        *replace_len = strlen(f->replacement);
        f->replacement = NULL;
    }
    return 0;
}

static void on_open(void *arg)
{
    struct fixture *f = arg;
    f->n_open++;
    if (f->shutdown_on_open)
        relay_ws_shutdown(f->relay);
}

static void on_end(void *arg, const struct relay_ws_end_info *info)
{
    struct fixture *f = arg;
    f->n_end++;
    f->end = *info;
    f->relay = NULL;
}

static int on_first(void *arg, const char *msg, size_t len, struct relay_ws_target *out)
{
    struct fixture *f = arg;
    f->n_first++;
    free(f->first_seen);
    f->first_seen = strndup(msg, len);
    assert_non_null(f->first_seen);
    out->refuse_reason = f->first_refuse_reason;
    if (f->first_refuse && !f->first_fill)
        return -1;
    /* The relay owns (wipes and frees) these, whatever on_first returns. */
    out->upstream_url = strdup(f->first_url);
    out->upstream_headers = strdup("xi-api-key: sk-up-1\r\n");
    out->first_message = strdup(f->first_reply);
    out->first_len = strlen(f->first_reply);
    if (f->first_shutdown)
        relay_ws_shutdown(f->relay);
    return f->first_refuse ? -1 : 0;
}

static char *error_body(void *arg, int status, const char *message)
{
    (void)arg;
    char *s = NULL;
    assert_true(asprintf(&s, "{\"error\":{\"status\":%d,\"message\":\"%s\"}}", status, message) >
                0);
    return s;
}

/* ---- fixture ------------------------------------------------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = count_fds();
    f->base = event_base_new();
    f->dns = evdns_base_new(f->base, 0);
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 10000};
    assert_int_equal(event_add(f->tick, &tv), 0);

    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    f->up_lis =
        evconnlistener_new_bind(f->base, up_accept_cb, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(f->up_lis);
    socklen_t sl = sizeof(sin);
    getsockname(evconnlistener_get_fd(f->up_lis), (struct sockaddr *)&sin, &sl);
    f->up_port = ntohs(sin.sin_port);
    f->up.f = f;
    f->up.server = true;
    f->up.keep = true;
    f->up.echo = true;
    f->up.close_echo = true;
    f->up.raw = evbuffer_new();
    f->client.f = f;
    f->client.keep = true;
    f->client.raw = evbuffer_new();

    f->limits.upstream_connect_timeout_ms = 5000;
    f->limits.idle_timeout_ms = 60000;
    f->limits.client_high_watermark = 262144;
    f->params = (struct relay_ws_params){
        .base = f->base,
        .dns = f->dns,
        .limits = &f->limits,
        .client_protocol = "realtime",
        .upstream_headers = "Authorization: Bearer sk-test-123\r\nOpenAI-Beta: realtime=v1\r\n",
        .max_message = 1 << 20,
        .meter_max = 4096,
        .on_message = on_message,
        .on_open = on_open,
        .on_end = on_end,
        .error_body = error_body,
        .arg = f,
    };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->relay != NULL) {
        relay_ws_shutdown(f->relay);
        int64_t dl = mono_ms() + DEADLINE_MS;
        while (f->relay != NULL && mono_ms() < dl)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
    peer_clear(&f->up);
    peer_clear(&f->client);
    for (size_t i = 0; i < f->n_meter && i < MAX_METER; i++)
        free(f->meter[i].data);
    free(f->first_seen);
    evconnlistener_free(f->up_lis);
    SSL_CTX_free(f->tls_server);
    SSL_CTX_free(f->tls_client);
    event_free(f->tick);
    evdns_base_free(f->dns, 0);
    event_base_free(f->base);
    int fds_after = count_fds();
    int before = f->fds_before;
    free(f);
    assert_int_equal(fds_after, before);
    return 0;
}

/* A connected loopback pair: the test client's end and the relay's client
 * end (what http.c would hand over after reading the upgrade request). */
static void tcp_pair(int *client_fd, int *front_fd)
{
    int lis = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lis, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lis, 1), 0);
    socklen_t sl = sizeof(sin);
    getsockname(lis, (struct sockaddr *)&sin, &sl);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int small = 65536;
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    int a = accept(lis, NULL, NULL);
    assert_true(a >= 0);
    close(lis);
    setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    evutil_make_socket_nonblocking(c);
    evutil_make_socket_nonblocking(a);
    *client_fd = c;
    *front_fd = a;
}

static void url_for(char *buf, size_t n, int port)
{
    snprintf(buf, n, "ws://127.0.0.1:%d/v1/realtime?model=gpt-test", port);
}

/* Starts a relay toward url with the test client connected to it. */
static void start_url(struct fixture *f, const char *url)
{
    int cfd, afd;
    tcp_pair(&cfd, &afd);
    f->client.bev = bufferevent_socket_new(f->base, cfd, BEV_OPT_CLOSE_ON_FREE);
    f->front = bufferevent_socket_new(f->base, afd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(f->client.bev);
    assert_non_null(f->front);
    bufferevent_setcb(f->client.bev, peer_read_cb, NULL, peer_event_cb, &f->client);
    bufferevent_enable(f->client.bev, EV_READ | EV_WRITE);
    assert_int_equal(ws_client_key(f->client_key), 0);
    f->params.client = f->front;
    f->params.client_key = f->client_key;
    f->params.upstream_url = url;
    f->relay = relay_ws_start(&f->params);
    assert_non_null(f->relay);
    /* on_end is never called from inside relay_ws_start. */
    assert_int_equal(f->n_end, 0);
}

static void start(struct fixture *f)
{
    char url[128];
    url_for(url, sizeof(url), f->up_port);
    start_url(f, url);
}

static void start_open(struct fixture *f)
{
    start(f);
    RUN_UNTIL(f->client.head_done && f->n_open == 1);
}

static bool has_line(const char *head, const char *line)
{
    return strcasestr(head, line) != NULL;
}

static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    getsockname(s, (struct sockaddr *)&sin, &sl);
    close(s);
    return ntohs(sin.sin_port);
}

/* Client-first: the relay answers 101 before anything upstream. */
static void start_client_first(struct fixture *f)
{
    f->params.client_first = true;
    f->params.on_first = on_first;
    f->params.client_protocol = NULL;
    f->params.upstream_headers = NULL;
    f->params.hold_first_client_message = true; /* no effect in this mode */
    f->first_reply = "{\"text\":\" \"}";
    snprintf(f->first_url, sizeof(f->first_url),
             "ws://127.0.0.1:%d/v1/text-to-speech/v/stream-input", f->up_port);
    start_url(f, NULL);
    RUN_UNTIL(f->client.head_done);
    assert_true(strncmp(f->client.head, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
    assert_false(f->up_accepted);
    assert_int_equal(f->n_open, 0);
}

#pragma GCC diagnostic pop

#endif
