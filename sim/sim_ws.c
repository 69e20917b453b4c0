/* sim_ws.c - WebSocket sockets of simulated upstreams (sim_provider.h): the
 * 101 answer, the connection taken from the HTTP server, whole messages to
 * the module, pings answered, the close handshake, sends. Frames through
 * the project's codec (ws.h), server role.
 *
 *   sim_ws_accept ─> OPEN ─ client close / sim_ws_close ─> CLOSING (close
 *                     │       frame written) ─ flushed ─> finish
 *                     ├─ sim_ws_drop ─> DROPPING (no close frame) ─ flushed ─> FIN
 *                     │     ─ the peer's EOF, or 1 s ─> finish (input read and forgotten)
 *                     └─ EOF, error, stop ──────────────────────────────────> finish
 *
 * Every end goes through finish(), which calls the module's on_close once
 * and frees the socket; it runs only from the socket's own callbacks or a
 * deferred event, never from inside a module's call. */
#include "common.h"
#include "sim_internal.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

/* A dropped socket waits this long at most for the peer to close after
 * its FIN. */
#define DROP_LINGER_MS 1000

struct sim_ws {
    struct sim_upstream *up;
    struct bufferevent *bev;
    struct conncap_slot slot;
    const struct sim_ws_ops *ops;
    void *arg;
    struct ws_parser parser;
    struct evbuffer *msg; /* the message being gathered */
    bool msg_text;
    bool closing;            /* a close frame is written: finish once flushed */
    bool dropping;           /* sim_ws_drop: flush, FIN, discard input until EOF */
    bool shut;               /* the FIN is sent */
    bool finishing;          /* finish() is scheduled */
    int close_code;          /* what on_close will say */
    bool reset;              /* the upgrade drew the "reset" fault */
    struct event *finish_ev; /* finish() at a safe point */
    struct event *timer;     /* sim_ws_after(), made on first use */
    void (*timer_fn)(void *arg);
    void *timer_arg;
    void (*drain_fn)(void *arg); /* sim_ws_blocked() */
    void *drain_arg;
    struct sim_ws *prev, *next;
};

static void finish(struct sim_ws *ws)
{
    struct sim_upstream *up = ws->up;
    if (ws->prev != NULL)
        ws->prev->next = ws->next;
    else
        up->sockets = ws->next;
    if (ws->next != NULL)
        ws->next->prev = ws->prev;
    ws->timer_fn = NULL;
    ws->drain_fn = NULL;
    if (ws->timer != NULL)
        event_free(ws->timer);
    if (ws->ops->on_close != NULL)
        ws->ops->on_close(ws, ws->close_code);
    bufferevent_free(ws->bev);
    conncap_leave(&ws->slot);
    evbuffer_free(ws->msg);
    event_free(ws->finish_ev);
    free(ws);
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg);
}

/* finish() at the next loop turn (from inside a module's call). */
static void finish_later(struct sim_ws *ws, int code)
{
    if (ws->finishing)
        return;
    ws->finishing = true;
    ws->close_code = code;
    bufferevent_disable(ws->bev, EV_READ | EV_WRITE);
    event_active(ws->finish_ev, 0, 0);
}

static void send_frame(struct sim_ws *ws, int opcode, const void *data, size_t len)
{
    uint8_t h[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(h, opcode, true, len, false, NULL);
    if (hl == 0 || ws->closing || ws->finishing)
        return;
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    evbuffer_add(out, h, hl);
    if (len > 0)
        evbuffer_add(out, data, len);
}

void sim_ws_send(struct sim_ws *ws, bool text, const void *data, size_t len)
{
    send_frame(ws, text ? WS_OP_TEXT : WS_OP_BINARY, data, len);
}

void sim_ws_close(struct sim_ws *ws, int code, const char *reason)
{
    uint8_t payload[WS_CONTROL_MAX];
    size_t n = ws_close_payload(payload, code, reason);
    send_frame(ws, WS_OP_CLOSE, payload, n);
    if (ws->closing || ws->finishing)
        return;
    ws->closing = true;
    ws->close_code = code;
    bufferevent_disable(ws->bev, EV_READ);
    bufferevent_enable(ws->bev, EV_WRITE); /* write_cb finishes once flushed */
}

/* A dropped socket's output is flushed: send the FIN and wait (bounded)
 * for the peer's. Closing with unread input would send a reset instead,
 * which may destroy what was just sent before the peer reads it. */
static void drop_flushed(struct sim_ws *ws)
{
    static const struct timeval linger = {DROP_LINGER_MS / 1000, (DROP_LINGER_MS % 1000) * 1000};
    if (ws->shut)
        return;
    ws->shut = true;
    shutdown(bufferevent_getfd(ws->bev), SHUT_WR);
    event_add(ws->finish_ev, &linger);
}

void sim_ws_drop(struct sim_ws *ws)
{
    if (ws->closing || ws->finishing)
        return;
    /* What was sent before goes out first, as from a server that dies after
     * writing it; then the connection ends without a close frame. */
    ws->closing = true;
    ws->dropping = true;
    ws->close_code = WS_CLOSE_ABNORMAL;
    if (evbuffer_get_length(bufferevent_get_output(ws->bev)) == 0)
        drop_flushed(ws);
    else
        bufferevent_enable(ws->bev, EV_WRITE); /* write_cb goes on once flushed */
}

void *sim_ws_arg(const struct sim_ws *ws)
{
    return ws->arg;
}

const struct config_sim_tunables *sim_ws_tunables(const struct sim_ws *ws)
{
    return ws->up->tun;
}

bool sim_ws_reset_drawn(const struct sim_ws *ws)
{
    return ws->reset;
}

uint64_t sim_ws_rand(struct sim_ws *ws)
{
    return sim_rng_next(&ws->up->rng);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sim_ws *ws = arg;
    (void)fd;
    (void)what;
    void (*fn)(void *) = ws->timer_fn;
    ws->timer_fn = NULL;
    if (fn != NULL && !ws->closing && !ws->finishing)
        fn(ws->timer_arg);
}

void sim_ws_after(struct sim_ws *ws, int64_t ms, void (*fn)(void *arg), void *arg)
{
    ws->timer_fn = fn;
    ws->timer_arg = arg;
    if (fn == NULL) {
        if (ws->timer != NULL)
            evtimer_del(ws->timer);
        return;
    }
    if (ws->closing || ws->finishing)
        return; /* timer_cb would not call it */
    if (ws->timer == NULL && (ws->timer = evtimer_new(ws->up->base, timer_cb, ws)) == NULL) {
        /* No timer: the socket cannot be paced; end it rather than hang. */
        log_error("sim %s: cannot create a timer; closing the socket", ws->up->prov->upstream);
        ws->timer_fn = NULL;
        sim_ws_close(ws, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    struct timeval tv = {(time_t)(MAX(ms, 0) / 1000), (suseconds_t)(MAX(ms, 0) % 1000) * 1000};
    evtimer_add(ws->timer, &tv);
}

bool sim_ws_blocked(struct sim_ws *ws, void (*fn)(void *arg), void *arg)
{
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    if (evbuffer_get_length(out) <= ws->up->limits->client_high_watermark)
        return false;
    ws->drain_fn = fn; /* write_cb: once the output is written */
    ws->drain_arg = arg;
    return true;
}

static int on_event(void *arg, const struct ws_event *ev)
{
    struct sim_ws *ws = arg;
    switch (ev->type) {
    case WS_EVENT_DATA:
        if (ev->flags & WS_CHUNK_MSG_START) {
            evbuffer_drain(ws->msg, evbuffer_get_length(ws->msg));
            ws->msg_text = ev->opcode == WS_OP_TEXT;
        }
        if (evbuffer_add(ws->msg, ev->data, ev->len) == -1) {
            sim_ws_close(ws, WS_CLOSE_INTERNAL, "out of memory");
            return 1;
        }
        if (ev->flags & WS_CHUNK_MSG_END) {
            size_t len = evbuffer_get_length(ws->msg);
            const uint8_t *data = evbuffer_pullup(ws->msg, -1);
            ws->ops->on_message(ws, ws->msg_text, data, len);
            evbuffer_drain(ws->msg, len);
        }
        break;
    case WS_EVENT_PING:
        send_frame(ws, WS_OP_PONG, ev->data, ev->len);
        break;
    case WS_EVENT_PONG:
        break;
    case WS_EVENT_CLOSE: {
        /* Echo the client's code, as servers do. */
        int code = ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code;
        sim_ws_close(ws, code, NULL);
        ws->close_code = ev->close_code;
        return 1;
    }
    }
    /* The module ended the socket: stop reading. */
    return ws->closing || ws->finishing;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct sim_ws *ws = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (ws->dropping) {
        /* Gone for the client: its bytes are read and forgotten. */
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while (!ws->closing && !ws->finishing && evbuffer_get_length(in) > 0) {
        size_t len = evbuffer_get_length(in), used = 0;
        uint8_t *data = evbuffer_pullup(in, -1);
        enum ws_status st = ws_parser_feed(&ws->parser, data, len, &used);
        evbuffer_drain(in, used);
        if (st == WS_ERROR) {
            const char *why = NULL;
            int code = ws_parser_error(&ws->parser, &why);
            sim_ws_close(ws, code, why);
            break;
        }
        if (st == WS_CLOSED || st == WS_MORE)
            break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct sim_ws *ws = arg;
    if (ws->finishing || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (ws->closing) {
        if (ws->dropping)
            drop_flushed(ws);
        else
            finish_later(ws, ws->close_code);
        return;
    }
    void (*fn)(void *) = ws->drain_fn;
    ws->drain_fn = NULL;
    if (fn != NULL)
        fn(ws->drain_arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct sim_ws *ws = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        finish_later(ws, ws->closing ? ws->close_code : WS_CLOSE_ABNORMAL);
}

static void close_all(struct sim_upstream *up);

struct sim_ws *sim_ws_accept(struct sim_request *r, const char *subprotocol,
                             const struct sim_ws_ops *ops, void *arg)
{
    struct sim_upstream *up = sim_request_upstream(r);
    size_t key_len = 0;
    const char *key = sim_header(r, "sec-websocket-key", &key_len);
    char accept[WS_ACCEPT_LEN + 1];
    struct sim_ws *ws = calloc(1, sizeof(*ws));
    /* Everything that may fail before the connection is taken: a NULL
     * return never calls on_close (arg stays the caller's). */
    if (ws == NULL || key == NULL || ws_accept_key(key, key_len, accept) == -1 ||
        (ws->msg = evbuffer_new()) == NULL ||
        (ws->finish_ev = event_new(up->base, -1, 0, finish_cb, ws)) == NULL) {
        if (ws != NULL)
            evbuffer_free(ws->msg);
        free(ws);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return NULL;
    }
    struct http_conn *c = sim_request_take_conn(r);
    if (c == NULL) {
        event_free(ws->finish_ev);
        evbuffer_free(ws->msg);
        free(ws);
        sim_request_release(r);
        return NULL;
    }
    ws->up = up;
    ws->ops = ops;
    ws->arg = arg;
    ws->close_code = WS_CLOSE_ABNORMAL;
    ws->reset = sim_reset_drawn(r);
    ws->bev = http_conn_take(c, &ws->slot);
    struct ws_parser_options po = {
        .role = WS_ROLE_SERVER, .max_message = SIM_WS_MESSAGE_MAX, .validate_utf8 = true};
    ws_parser_init(&ws->parser, &po, on_event, ws);
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s: %s\r\n",
                        accept, up->prov->request_id_header, sim_request_id(r));
    if (subprotocol != NULL)
        evbuffer_add_printf(out, "Sec-WebSocket-Protocol: %s\r\n", subprotocol);
    evbuffer_add(out, "\r\n", 2);
    sim_request_release(r);
    ws->next = up->sockets;
    if (up->sockets != NULL)
        up->sockets->prev = ws;
    up->sockets = ws;
    up->close_sockets = close_all;
    bufferevent_setcb(ws->bev, read_cb, write_cb, event_cb, ws);
    bufferevent_enable(ws->bev, EV_READ | EV_WRITE);
    /* Frames the client sent right after its request: read at the next
     * loop turn, once the module has its socket. */
    if (evbuffer_get_length(bufferevent_get_input(ws->bev)) > 0)
        bufferevent_trigger(ws->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    return ws;
}

/* Closes every open socket of up (the simulator stops; up->close_sockets). */
static void close_all(struct sim_upstream *up)
{
    while (up->sockets != NULL) {
        up->sockets->close_code = WS_CLOSE_GOING_AWAY;
        finish(up->sockets);
    }
}
