/* relay_ws.c - one WebSocket session relayed between a client and an
 * upstream: upstream connect (TCP or TLS), the upgrade handshake, frames
 * relayed both ways with back-pressure, the close handshake, the end report.
 *
 *   relay_ws_start ──> CONNECTING ──connected (TLS verified)──> HANDSHAKE
 *                        │  (DNS, TCP, TLS)   GET + Upgrade sent   │
 *                        │                                         │ reply head
 *                        │ error: 502 / deadline: 504      101 ok  │  other: 4xx/5xx/502
 *                        v                                    v    v
 *                      ENDING <──close handshake, EOF, ───── OPEN  ENDING
 *                        │       error, idle, shutdown     (frames relayed)
 *                        │ outputs flushed (or linger deadline)
 *                        v
 *                      on_end (deferred event) ──> freed
 *
 * Client-first mode (the key is in the client's first message): the client
 * gets its 101 in relay_ws_start and the relay starts in FIRST; the first
 * text message goes to on_first, which gives the upstream URL and headers
 * (then CONNECTING as above, the rewritten message sent first once OPEN)
 * or refuses (close 1008, ENDING). Refusals after that reach the client as
 * close frames, since it has had its 101.
 *
 * Every end goes through relay_finish(r, reason): the first reason wins,
 * reading stops on both sides, what is queued is flushed, and on_end runs
 * from a zero-delay event, never from inside relay_ws_start or a callback
 * the caller is in, so a caller may call relay_ws_shutdown from on_message
 * or on_open. Data frames are forwarded chunk by chunk as the parser yields
 * them (a frame header with the same opcode, FIN and length, then payload
 * pieces, re-masked with a fresh key toward the upstream), so memory per
 * session does not depend on message size. */
#include "common.h"
#include "relay_ws.h"
#include "http.h"
#include "httpparse.h"
#include "ws.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define RELAY_WS_HEAD_MAX       (16 * 1024) /* upstream handshake reply head */
#define RELAY_WS_IDLE_FACTOR    5           /* idle limit = idle_timeout_ms * this */
#define RELAY_WS_LINGER_MS      5000        /* close reply wait, and output flush at the end */
#define RELAY_WS_HOLD_MAX       (1u << 20)  /* held first message when max_message is 0 */
#define RELAY_WS_FIRST_MS       2000        /* client-first defaults when limits has none */
#define RELAY_WS_FIRST_MAX      65536
#define RELAY_WS_CUT_LINGER_MS  1000   /* FIN before the close of a client cut mid-message */
#define RELAY_WS_HIGH_DEFAULT   262144 /* client_high_watermark when unset */
#define RELAY_WS_EARLY_READ_MAX 65536  /* client bytes read before the upstream accepts */
#define RELAY_WS_HOST_MAX       256

enum relay_ws_state {
    RELAY_WS_CONNECTING = 0, /* DNS, TCP connect, TLS handshake */
    RELAY_WS_HANDSHAKE,      /* upgrade request sent, reading the reply head */
    RELAY_WS_OPEN,           /* frames relayed both ways */
    RELAY_WS_ENDING,         /* end decided: flushing outputs, then on_end and free */
    RELAY_WS_FIRST,          /* client-first: the client has its 101; reading its first message */
    RELAY_WS_FIRST_WAIT,     /* client-first: on_first decides later (relay_ws_first_decided) */
};

/* A copy of the text message being received from one side. */
struct relay_msg {
    char *buf;
    size_t len, cap;
    bool active;    /* collecting the current message */
    bool truncated; /* longer than the bound: only the first bytes are kept */
};

/* One end of the relay. Frames read from a side are written to the other. */
struct relay_side {
    struct relay_ws *r;
    struct bufferevent *bev;
    struct ws_parser parser; /* frames coming from this side */
    bool is_client;
    unsigned dead : 1;       /* TCP gone or given up: nothing more read or written */
    unsigned got_close : 1;  /* a close frame came from this side */
    unsigned sent_close : 1; /* a close frame went to this side: no more frames to it */
    unsigned paused : 1;     /* not read: the other side's output is above the high-water mark */
    uint8_t key[4];          /* masking key of the frame being written to this side */
    uint64_t out_left;       /* payload bytes still owed to the frame being written here */
    struct relay_msg meter;  /* text message from this side, for on_message */
};

/* A parsed ws:// or wss:// URL. */
struct relay_url {
    bool tls;
    bool ip;   /* host is an IP literal: no SNI, verify the address */
    bool ipv6; /* bracket it in Host */
    int port;
    char host[RELAY_WS_HOST_MAX]; /* without brackets */
    char *path;                   /* path and query, starts with '/' (malloc'd) */
};

struct relay_ws {
    enum relay_ws_state state;
    struct event_base *base;
    struct evdns_base *dns;
    struct config_limits limits;
    size_t high;               /* high-water mark of either output */
    size_t max_message;        /* parser limit, 0 = none */
    size_t meter_max;          /* copy bound for on_message */
    bool hold_first;           /* hold the first client text message */
    bool hold_all;             /* hold every client text message */
    bool client_first;         /* the client had its 101 before the upstream was chosen */
    unsigned hold_done : 1;    /* it went by */
    unsigned activity : 1;     /* a frame moved since the idle timer last fired */
    unsigned end_pending : 1;  /* end_ev is active: on_end is next */
    unsigned cut_client : 1;   /* the client was cut while it may still be sending */
    unsigned lingering : 1;    /* its FIN is sent: the timer ends the session */
    struct relay_msg held;     /* the held first message (client-first: the one for on_first) */
    unsigned drain_client : 1; /* ending: read and discard the client's input until flushed */
    SSL_CTX *tls;              /* for a wss:// upstream given by on_first (borrowed) */
    char *first;               /* client-first: sent to the upstream first (wiped) */
    size_t first_len;

    struct relay_url url;
    char *headers;                  /* extra upstream header lines; wiped once sent */
    char sent_key[WS_KEY_LEN + 1];  /* our Sec-WebSocket-Key to the upstream */
    char accept[WS_ACCEPT_LEN + 1]; /* our Sec-WebSocket-Accept to the client */
    char *client_protocol;

    struct relay_side client, up;
    struct event *timer;  /* connect deadline, idle check, close wait or linger */
    struct event *end_ev; /* deferred on_end + free */
    struct relay_ws_end_info info;

    int (*on_message)(void *arg, enum relay_ws_dir dir, const char *data, size_t len, bool complete,
                      char **replace, size_t *replace_len, const char **reason);
    void (*on_binary)(void *arg, enum relay_ws_dir dir, const uint8_t *data, size_t len,
                      uint64_t message_off, bool last);
    void (*on_open)(void *arg);
    void (*on_end)(void *arg, const struct relay_ws_end_info *info);
    char *(*error_body)(void *arg, int status, const char *message);
    int (*on_first)(void *arg, const char *msg, size_t len, struct relay_ws_target *out);
    void *arg;
};

static void relay_finish(struct relay_ws *r, enum relay_ws_end end);
static void side_process(struct relay_side *s);
static void first_message(struct relay_ws *r);

/* --- small helpers -------------------------------------------------------- */

static struct relay_side *other(struct relay_side *s)
{
    return s->is_client ? &s->r->up : &s->r->client;
}

static const char *side_name(const struct relay_side *s)
{
    return s->is_client ? "client" : "upstream";
}

static void timer_arm(struct relay_ws *r, int ms)
{
    if (ms <= 0) {
        evtimer_del(r->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

/* Realtime sessions are legitimately quiet for long stretches (a user
 * thinking, a paused call): the idle limit is a multiple of the HTTP one. */
static int idle_ms(const struct relay_ws *r)
{
    int64_t ms = (int64_t)r->limits.idle_timeout_ms * RELAY_WS_IDLE_FACTOR;
    return (int)MIN(ms, (int64_t)INT32_MAX);
}

static void msg_wipe(struct relay_msg *m)
{
    if (m->buf != NULL)
        OPENSSL_cleanse(m->buf, m->cap);
    free(m->buf);
    memset(m, 0, sizeof(*m));
}

/* Appends up to bound bytes in total; sets truncated past it. -1 on OOM. */
static int msg_append(struct relay_msg *m, const uint8_t *data, size_t len, size_t bound)
{
    size_t take = len;
    if (m->len + take > bound) {
        take = bound - m->len;
        m->truncated = true;
    }
    if (take == 0)
        return 0;
    if (m->len + take > m->cap) {
        size_t cap = m->cap ? m->cap : 1024;
        while (cap < m->len + take)
            cap *= 2;
        cap = MIN(cap, bound);
        char *nb = malloc(cap);
        if (nb == NULL)
            return -1;
        /* Not realloc: the old buffer may hold a credential and is wiped. */
        if (m->buf != NULL) {
            memcpy(nb, m->buf, m->len);
            OPENSSL_cleanse(m->buf, m->cap);
            free(m->buf);
        }
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, take);
    m->len += take;
    return 0;
}

/* --- URL ------------------------------------------------------------------ */

/* Parses ws://host[:port]/path?query or wss://...; the host is a name, an
 * IPv4 literal or a bracketed IPv6 literal. Refused: other schemes, user
 * info, fragments, spaces, control and non-ASCII bytes, empty or bad ports.
 * Fills u (u->path malloc'd). */
static int url_parse(const char *s, struct relay_url *u)
{
    memset(u, 0, sizeof(*u));
    if (s == NULL)
        return -1;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#' || *c == '\\')
            return -1;
    if (strncasecmp(s, "wss://", 6) == 0) {
        u->tls = true;
        s += 6;
    } else if (strncasecmp(s, "ws://", 5) == 0) {
        s += 5;
    } else {
        return -1;
    }
    const char *auth_end = s + strcspn(s, "/?");
    if (memchr(s, '@', (size_t)(auth_end - s)) != NULL)
        return -1;
    const char *host = s, *host_end, *p;
    if (*s == '[') {
        host = s + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL)
            return -1;
        p = host_end + 1;
        u->ipv6 = true;
    } else {
        host_end = memchr(s, ':', (size_t)(auth_end - s));
        if (host_end == NULL)
            host_end = auth_end;
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof(u->host))
        return -1;
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    if (u->ipv6) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return -1;
        u->ip = true;
    } else {
        for (size_t i = 0; i < hl; i++) {
            char c = u->host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return -1;
        }
        struct in_addr a4;
        u->ip = inet_pton(AF_INET, u->host, &a4) == 1;
    }
    u->port = u->tls ? 443 : 80;
    if (p < auth_end) {
        if (*p != ':' || p + 1 == auth_end)
            return -1;
        long port = 0;
        for (const char *c = p + 1; c < auth_end; c++) {
            if (*c < '0' || *c > '9')
                return -1;
            port = port * 10 + (*c - '0');
            if (port > 65535)
                return -1;
        }
        if (port == 0)
            return -1;
        u->port = (int)port;
    }
    /* "ws://h?q" has an empty path: the request target is "/?q". */
    size_t pl = strlen(auth_end);
    u->path = malloc(pl + 2);
    if (u->path == NULL)
        return -1;
    snprintf(u->path, pl + 2, "%s%s", *auth_end == '/' ? "" : "/", auth_end);
    return 0;
}

/* --- writing frames ------------------------------------------------------- */

/* Appends to dst's output and applies back-pressure: above the high-water
 * mark the side feeding dst stops being read until dst drains to half. */
static void side_write(struct relay_side *dst, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(dst->bev);
    if (len > 0 && evbuffer_add(out, data, len) == -1) {
        log_error("ws relay: out of memory writing to the %s", side_name(dst));
        dst->dead = 1;
        relay_finish(dst->r,
                     dst->is_client ? RELAY_WS_END_CLIENT_GONE : RELAY_WS_END_UPSTREAM_GONE);
        return;
    }
    struct relay_side *src = other(dst);
    if (!src->paused && evbuffer_get_length(out) > dst->r->high) {
        src->paused = 1;
        bufferevent_disable(src->bev, EV_READ);
    }
}

/* True if a frame may be started toward dst now. */
static bool can_send(const struct relay_side *dst)
{
    return !dst->dead && !dst->sent_close && dst->r->state != RELAY_WS_ENDING;
}

/* Frame header toward dst; toward the upstream the frame is masked with a
 * fresh key (RFC 6455 §5.3), kept in dst->key for its payload. */
static int frame_start(struct relay_side *dst, int opcode, bool fin, uint64_t len)
{
    uint8_t h[WS_FRAME_HEADER_MAX];
    bool mask = !dst->is_client;
    if (mask && ws_new_mask_key(dst->key) == -1)
        return -1;
    size_t n = ws_frame_header(h, opcode, fin, len, mask, dst->key);
    if (n == 0)
        return -1;
    side_write(dst, h, n);
    dst->out_left = len;
    return 0;
}

/* Payload bytes at offset off of the frame being written to dst. data is
 * masked in place toward the upstream. */
static void frame_payload(struct relay_side *dst, uint8_t *data, size_t len, uint64_t off)
{
    if (!dst->is_client)
        ws_mask(data, len, dst->key, off);
    side_write(dst, data, len);
    dst->out_left -= MIN((uint64_t)len, dst->out_left);
}

static void send_control(struct relay_side *dst, int opcode, const uint8_t *payload, size_t len)
{
    uint8_t buf[WS_CONTROL_MAX];
    len = MIN(len, sizeof(buf));
    if (len > 0)
        memcpy(buf, payload, len);
    if (frame_start(dst, opcode, true, len) == -1)
        return;
    frame_payload(dst, buf, len, 0);
}

/* A close frame of our own toward dst. Skipped when a frame toward dst is
 * half written (its payload is in flight from the other side and a frame
 * cannot be interrupted): dst then only sees the TCP close. */
static void send_close(struct relay_side *dst, int code, const char *reason)
{
    if (dst->dead || dst->sent_close || dst->bev == NULL)
        return;
    dst->sent_close = 1;
    if (dst->is_client)
        dst->r->info.client_close_sent = code;
    if (dst->out_left > 0)
        return;
    uint8_t payload[WS_CONTROL_MAX];
    size_t n = ws_close_payload(payload, code, reason);
    send_control(dst, WS_OP_CLOSE, payload, n);
}

/* --- reading frames ------------------------------------------------------- */

/* The caller ended the session over a message (a policy): the client gets
 * close 1008 with its reason, the upstream a normal close. */
static void policy_end(struct relay_ws *r, const char *reason)
{
    send_close(&r->client, WS_CLOSE_POLICY, reason != NULL ? reason : "refused by the proxy");
    send_close(&r->up, WS_CLOSE_NORMAL, NULL);
    relay_finish(r, RELAY_WS_END_POLICY);
}

/* Returns -1 when on_message ended the session (policy_end done). */
static int deliver_message(struct relay_ws *r, struct relay_side *s, const char *data, size_t len,
                           bool complete, char **replace, size_t *replace_len)
{
    enum relay_ws_dir dir = s->is_client ? RELAY_WS_FROM_CLIENT : RELAY_WS_FROM_UPSTREAM;
    char *rep = NULL;
    size_t rep_len = 0;
    const char *reason = NULL;
    int rc = r->on_message(r->arg, dir, data, len, complete, &rep, &rep_len, &reason);
    if (replace != NULL) {
        *replace = rep;
        *replace_len = rep_len;
    } else if (rep != NULL) {
        /* Only a held client message can be replaced. */
        OPENSSL_cleanse(rep, rep_len);
        free(rep);
    }
    if (rc != 0 && r->state == RELAY_WS_OPEN) { /* any non-zero refuses */
        policy_end(r, reason);
        return -1;
    }
    return 0;
}

/* A held client text message (the first, or each with hold_all), whole:
 * on_message may replace it (to take a credential out) or refuse it; it
 * then goes out as one frame. */
static int held_chunk(struct relay_ws *r, struct relay_side *s, const struct ws_event *ev)
{
    size_t bound = r->hold_all && r->meter_max ? r->meter_max
                   : r->max_message            ? r->max_message
                                               : RELAY_WS_HOLD_MAX;
    if (msg_append(&r->held, ev->data, ev->len, bound) == -1 || r->held.truncated) {
        send_close(s, WS_CLOSE_TOO_BIG, "message too big to inspect");
        send_close(&r->up, WS_CLOSE_GOING_AWAY, NULL);
        relay_finish(r, RELAY_WS_END_CLIENT_GONE);
        return 1;
    }
    if (!(ev->flags & WS_CHUNK_MSG_END))
        return 0;
    if (!r->hold_all)
        r->hold_done = 1;
    char *rep = NULL;
    size_t rep_len = 0;
    int refused = 0;
    if (r->on_message != NULL)
        refused = deliver_message(r, s, r->held.buf ? r->held.buf : "", r->held.len, true, &rep,
                                  &rep_len);
    uint8_t *data = rep != NULL ? (uint8_t *)rep : (uint8_t *)r->held.buf;
    size_t len = rep != NULL ? rep_len : r->held.len;
    struct relay_side *d = &r->up;
    if (refused == 0 && r->state == RELAY_WS_OPEN && can_send(d) &&
        frame_start(d, WS_OP_TEXT, true, len) == 0) {
        frame_payload(d, data, len, 0);
        r->info.bytes_from_client += len;
    }
    if (rep != NULL) {
        OPENSSL_cleanse(rep, rep_len);
        free(rep);
    }
    msg_wipe(&r->held);
    return r->state == RELAY_WS_OPEN ? 0 : 1;
}

static int on_data(struct relay_ws *r, struct relay_side *s, const struct ws_event *ev)
{
    struct relay_side *d = other(s);
    if (s->is_client && ev->opcode == WS_OP_TEXT &&
        (r->hold_all || (r->hold_first && !r->hold_done)))
        return held_chunk(r, s, ev);

    /* The metering copy comes first: forwarding masks the bytes in place. */
    if (ev->opcode == WS_OP_BINARY && r->on_binary != NULL)
        r->on_binary(r->arg, s->is_client ? RELAY_WS_FROM_CLIENT : RELAY_WS_FROM_UPSTREAM, ev->data,
                     ev->len, ev->message_off, (ev->flags & WS_CHUNK_MSG_END) != 0);
    struct relay_msg *m = &s->meter;
    if (ev->flags & WS_CHUNK_MSG_START) {
        m->len = 0;
        m->truncated = false;
        m->active = ev->opcode == WS_OP_TEXT && r->on_message != NULL && r->meter_max > 0;
    }
    if (m->active && msg_append(m, ev->data, ev->len, r->meter_max) == -1) {
        m->truncated = true;
        m->active = false;
    }

    if (can_send(d)) {
        if ((ev->flags & WS_CHUNK_FRAME_START) &&
            frame_start(d, ev->frame_opcode, ev->fin, ev->frame_len) == -1) {
            d->dead = 1;
            relay_finish(r, d->is_client ? RELAY_WS_END_CLIENT_GONE : RELAY_WS_END_UPSTREAM_GONE);
            return 1;
        }
        frame_payload(d, ev->data, ev->len, ev->frame_off);
        if (s->is_client)
            r->info.bytes_from_client += ev->len;
        else
            r->info.bytes_from_upstream += ev->len;
    }

    if ((ev->flags & WS_CHUNK_MSG_END) && m->active) {
        m->active = false;
        if (deliver_message(r, s, m->buf ? m->buf : "", m->len, !m->truncated, NULL, NULL) == -1)
            return 1;
    }
    return r->state == RELAY_WS_OPEN ? 0 : 1;
}

static int on_close(struct relay_ws *r, struct relay_side *s, const struct ws_event *ev)
{
    struct relay_side *d = other(s);
    s->got_close = 1;
    if (r->info.close_code == 0) {
        r->info.close_code = ev->close_code;
        r->info.closed_by_client = s->is_client;
    }
    /* The close payload (code and reason) goes on as it came. */
    if (can_send(d) && d->out_left == 0) {
        d->sent_close = 1;
        send_control(d, WS_OP_CLOSE, ev->data, ev->len);
    }
    bufferevent_disable(s->bev, EV_READ);
    if (d->got_close || d->dead)
        relay_finish(r, RELAY_WS_END_OK);
    else
        timer_arm(r, RELAY_WS_LINGER_MS); /* wait this long for the other side's close */
    return 1;
}

/* Client-first: frames before (and of) the first message. Only a text
 * message may come first: it carries the key. It is held whole, so it is
 * bounded by ws_first_message_max_bytes (an unauthenticated peer gets no
 * more of our memory): a frame that announces more is refused at its
 * header, before its payload is read. */
static int first_event(struct relay_ws *r, struct relay_side *s, const struct ws_event *ev)
{
    switch (ev->type) {
    case WS_EVENT_DATA:
        if (ev->opcode == WS_OP_TEXT) {
            size_t bound = r->limits.ws_first_message_max_bytes;
            if (r->max_message != 0)
                bound = MIN(bound, r->max_message);
            uint64_t frame_rest = ev->frame_len - ev->frame_off;
            if (frame_rest > bound - MIN(bound, r->held.len) ||
                msg_append(&r->held, ev->data, ev->len, bound) == -1 || r->held.truncated) {
                send_close(s, WS_CLOSE_TOO_BIG, "first message too big");
                r->cut_client = 1;
                relay_finish(r, RELAY_WS_END_CLIENT_GONE);
                return 1;
            }
            if (!(ev->flags & WS_CHUNK_MSG_END))
                return 0;
            first_message(r);
            return 1; /* what follows waits for the upstream */
        }
        break;
    case WS_EVENT_PING:
    case WS_EVENT_PONG:
        break;
    case WS_EVENT_CLOSE:
        /* Gone before saying who it is: answer its close, nothing upstream. */
        s->got_close = 1;
        r->info.close_code = ev->close_code;
        r->info.closed_by_client = true;
        s->sent_close = 1;
        send_control(s, WS_OP_CLOSE, ev->data, ev->len);
        relay_finish(r, RELAY_WS_END_OK);
        return 1;
    }
    send_close(s, WS_CLOSE_POLICY, "the first message must be text with the key");
    relay_finish(r, RELAY_WS_END_UNAUTHORIZED);
    return 1;
}

static int on_event(struct relay_side *s, const struct ws_event *ev)
{
    struct relay_ws *r = s->r;
    if (r->state == RELAY_WS_FIRST && s->is_client)
        return first_event(r, s, ev);
    if (r->state != RELAY_WS_OPEN)
        return 1;
    r->activity = 1;
    switch (ev->type) {
    case WS_EVENT_DATA:
        return on_data(r, s, ev);
    case WS_EVENT_PING:
    case WS_EVENT_PONG: {
        struct relay_side *d = other(s);
        if (can_send(d))
            send_control(d, ev->type == WS_EVENT_PING ? WS_OP_PING : WS_OP_PONG, ev->data, ev->len);
        return r->state == RELAY_WS_OPEN ? 0 : 1;
    }
    case WS_EVENT_CLOSE:
        return on_close(r, s, ev);
    }
    return 0;
}

static int client_event_cb(void *arg, const struct ws_event *ev)
{
    return on_event(arg, ev);
}

static int upstream_event_cb(void *arg, const struct ws_event *ev)
{
    return on_event(arg, ev);
}

/* A frame from s broke the protocol: s gets a close with the parser's code,
 * the other side 1001 (the client is going) or 1011 (the upstream failed). */
static void side_protocol_error(struct relay_side *s)
{
    struct relay_ws *r = s->r;
    const char *why = NULL;
    int code = ws_parser_error(&s->parser, &why);
    log_info("ws relay: %s protocol error (close %d): %s", side_name(s), code, why ? why : "");
    send_close(s, code, why);
    send_close(other(s), s->is_client ? WS_CLOSE_GOING_AWAY : WS_CLOSE_INTERNAL,
               s->is_client ? NULL : "upstream protocol error");
    relay_finish(r, s->is_client ? RELAY_WS_END_CLIENT_GONE : RELAY_WS_END_UPSTREAM_GONE);
}

/* Parses and relays everything in s's input buffer. The parser unmasks in
 * place, so it is fed the buffer's own contiguous pieces (no copy). Reading
 * is bounded by the bufferevent's single-read size, so consuming all of it
 * keeps memory bounded even while the other side is paused. */
static void side_process(struct relay_side *s)
{
    struct relay_ws *r = s->r;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while ((r->state == RELAY_WS_OPEN || (r->state == RELAY_WS_FIRST && s->is_client)) &&
           !s->dead && !s->got_close) {
        size_t n = evbuffer_get_contiguous_space(in);
        if (n == 0)
            break;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        if (p == NULL)
            break;
        size_t used = 0;
        enum ws_status st = ws_parser_feed(&s->parser, p, n, &used);
        evbuffer_drain(in, used);
        if (st == WS_ERROR) {
            side_protocol_error(s);
            break;
        }
        if (st == WS_CLOSED)
            break;
    }
    /* After a close: ignored. (Client-first, once the first message went to
     * on_first, the client's next frames wait in the buffer for the upstream.) */
    if (s->got_close || r->state == RELAY_WS_ENDING)
        evbuffer_drain(in, evbuffer_get_length(in));
}

/* --- the end -------------------------------------------------------------- */

static void schedule_end(struct relay_ws *r)
{
    if (r->end_pending)
        return;
    r->end_pending = 1;
    event_active(r->end_ev, 0, 0);
}

static bool side_drained(const struct relay_side *s)
{
    return s->dead || s->bev == NULL || evbuffer_get_length(bufferevent_get_output(s->bev)) == 0;
}

static void check_drained(struct relay_ws *r)
{
    if (r->state != RELAY_WS_ENDING)
        return;
    if (r->lingering) {
        if (r->client.dead)
            schedule_end(r); /* the client closed after our FIN: nothing left to lose */
        return;
    }
    if (!side_drained(&r->client) || !side_drained(&r->up))
        return;
    if ((r->cut_client || r->drain_client) && !r->client.dead && r->client.bev != NULL) {
        /* Closing a socket with unread input sends a reset, which can
         * destroy our close frame before the client read it: FIN first,
         * then the close a moment later (a cut client is not read any
         * more; a drained one is read and discarded until it closes too). */
        evutil_socket_t fd = bufferevent_getfd(r->client.bev);
        if (fd != -1 && shutdown(fd, SHUT_WR) == 0) {
            r->lingering = 1;
            timer_arm(r, RELAY_WS_CUT_LINGER_MS);
            return;
        }
    }
    schedule_end(r);
}

static void side_stop(struct relay_side *s)
{
    if (s->bev == NULL)
        return;
    if (s->dead) {
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    if (s->is_client && s->r->drain_client) {
        /* Reading goes on, discarded (the ENDING case of the read
         * callback), until the output is flushed: closing with unread
         * input makes the kernel answer with a reset, and the client would
         * lose the close frame just sent (a refused first message that was
         * followed by more frames while it was decided). Bounded by the
         * linger deadline. */
        bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
    } else {
        bufferevent_disable(s->bev, EV_READ);
    }
    /* The write callback now fires once the output is empty. */
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
}

/* Decides the end (the first reason wins): stop reading, flush both outputs
 * for up to RELAY_WS_LINGER_MS, then on_end from end_ev and free. */
static void relay_finish(struct relay_ws *r, enum relay_ws_end end)
{
    if (r->state == RELAY_WS_ENDING)
        return;
    r->state = RELAY_WS_ENDING;
    r->info.end = end;
    side_stop(&r->client);
    side_stop(&r->up);
    timer_arm(r, RELAY_WS_LINGER_MS);
    check_drained(r);
}

/* Before any 101: answers the client with an HTTP error whose body is the
 * caller's (error_body), then ends. */
static void relay_refuse(struct relay_ws *r, int status, const char *message, enum relay_ws_end end)
{
    if (r->state == RELAY_WS_ENDING)
        return;
    log_info("ws relay: upstream %s:%d refused or failed (%d): %s", r->url.host, r->url.port,
             status, message);
    r->up.dead = 1;
    if (r->client_first) {
        /* The client has had its 101: it learns with a close frame. */
        int code = end == RELAY_WS_END_SHUTDOWN     ? WS_CLOSE_GOING_AWAY
                   : status == 401 || status == 403 ? WS_CLOSE_POLICY
                                                    : WS_CLOSE_INTERNAL;
        send_close(&r->client, code, message);
    } else if (!r->client.dead) {
        char *body = r->error_body ? r->error_body(r->arg, status, message) : NULL;
        size_t bl = body ? strlen(body) : 0;
        struct evbuffer *out = bufferevent_get_output(r->client.bev);
        /* The client may have sent early frames: it is not read any more. */
        bufferevent_disable(r->client.bev, EV_READ);
        bufferevent_enable(r->client.bev, EV_WRITE);
        if (evbuffer_add_printf(out,
                                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                                status, http_reason(status), bl) < 0 ||
            (bl > 0 && evbuffer_add(out, body, bl) == -1))
            r->client.dead = 1;
        free(body);
    }
    relay_finish(r, end);
}

static void end_cb(evutil_socket_t fd, short what, void *arg);

static void side_free(struct relay_side *s)
{
    if (s->bev != NULL) {
        SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
        /* A close_notify when the connection is still good: best effort. */
        if (ssl != NULL && !s->dead && SSL_is_init_finished(ssl))
            (void)SSL_shutdown(ssl);
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    msg_wipe(&s->meter);
}

static void relay_free(struct relay_ws *r)
{
    side_free(&r->client);
    side_free(&r->up);
    if (r->timer != NULL)
        event_free(r->timer);
    if (r->end_ev != NULL)
        event_free(r->end_ev);
    msg_wipe(&r->held);
    if (r->first != NULL) {
        OPENSSL_cleanse(r->first, r->first_len);
        free(r->first);
    }
    if (r->headers != NULL) {
        OPENSSL_cleanse(r->headers, strlen(r->headers));
        free(r->headers);
    }
    free(r->url.path);
    free(r->client_protocol);
    free(r);
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_ws *r = arg;
    (void)fd;
    (void)what;
    r->info.ended_ms = mono_ms();
    log_debug("ws relay: upstream %s:%d session ended (%d, close %d)", r->url.host, r->url.port,
              (int)r->info.end, r->info.close_code);
    if (r->on_end != NULL)
        r->on_end(r->arg, &r->info);
    relay_free(r);
}

/* --- upstream handshake --------------------------------------------------- */

/* What the upstream's reply head says about the upgrade. */
struct relay_reply {
    bool upgrade_ok;    /* Upgrade lists "websocket" */
    bool connection_ok; /* Connection lists "upgrade" */
    bool extensions;    /* an extension was selected: none was offered */
    int n_accept;
    const char *accept;
    size_t accept_len;
};

/* Reads the upgrade fields of a parsed reply head (httpparse_response has
 * checked the syntax). Several Upgrade or Connection fields form one list.
 * Pointers in out point into the head. */
static void reply_upgrade(const struct httpparse_response *resp, struct relay_reply *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct httpparse_header *h = &resp->headers[i];
        const char *v = h->value;
        size_t nl = h->name_len, vl = h->value_len;
        if (nl == 7 && strncasecmp(h->name, "upgrade", 7) == 0) {
            out->upgrade_ok = out->upgrade_ok || httpparse_list_has(v, vl, "websocket");
        } else if (nl == 10 && strncasecmp(h->name, "connection", 10) == 0) {
            out->connection_ok = out->connection_ok || httpparse_list_has(v, vl, "upgrade");
        } else if (nl == 20 && strncasecmp(h->name, "sec-websocket-accept", 20) == 0) {
            out->n_accept++;
            out->accept = v;
            out->accept_len = vl;
        } else if (nl == 24 && strncasecmp(h->name, "sec-websocket-extensions", 24) == 0) {
            out->extensions = out->extensions || vl > 0;
        }
    }
}

/* The client's 101 and its frame parser. */
static int client_accept(struct relay_ws *r)
{
    struct evbuffer *out = bufferevent_get_output(r->client.bev);
    if (evbuffer_add_printf(out,
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                            r->accept, r->client_protocol ? "Sec-WebSocket-Protocol: " : "",
                            r->client_protocol ? r->client_protocol : "",
                            r->client_protocol ? "\r\n" : "") < 0)
        return -1;
    struct ws_parser_options copt = {
        .role = WS_ROLE_SERVER, .max_message = r->max_message, .validate_utf8 = true};
    ws_parser_init(&r->client.parser, &copt, client_event_cb, &r->client);
    return 0;
}

/* The upstream accepted: answer the client's upgrade (unless it had its 101
 * already: client-first) and start relaying. */
static void relay_open(struct relay_ws *r)
{
    r->state = RELAY_WS_OPEN;
    r->info.opened_ms = mono_ms();
    bufferevent_enable(r->client.bev, EV_WRITE);
    if (!r->client_first && client_accept(r) == -1) {
        r->client.dead = 1;
        relay_finish(r, RELAY_WS_END_CLIENT_GONE);
        return;
    }
    struct ws_parser_options uopt = {
        .role = WS_ROLE_CLIENT, .max_message = r->max_message, .validate_utf8 = true};
    ws_parser_init(&r->up.parser, &uopt, upstream_event_cb, &r->up);

    size_t low = r->high / 2;
    bufferevent_setwatermark(r->client.bev, EV_READ, 0, 0);
    bufferevent_setwatermark(r->client.bev, EV_WRITE, low, 0);
    bufferevent_setwatermark(r->up.bev, EV_WRITE, low, 0);
    r->activity = 0;
    timer_arm(r, idle_ms(r)); /* 0 or less: no idle limit */

    if (r->first != NULL) {
        /* Client-first: the rewritten first message, ahead of everything
         * the client sent after it. */
        if (frame_start(&r->up, WS_OP_TEXT, true, r->first_len) == -1) {
            r->up.dead = 1;
            r->drain_client = 1;
            send_close(&r->client, WS_CLOSE_INTERNAL, "upstream connection lost");
            relay_finish(r, RELAY_WS_END_UPSTREAM_GONE);
            return;
        }
        frame_payload(&r->up, (uint8_t *)r->first, r->first_len, 0);
        r->info.bytes_from_client += r->first_len;
        OPENSSL_cleanse(r->first, r->first_len);
        free(r->first);
        r->first = NULL;
        if (r->state != RELAY_WS_OPEN)
            return;
    }

    if (r->on_open != NULL)
        r->on_open(r->arg);
    if (r->state != RELAY_WS_OPEN)
        return;
    bufferevent_enable(r->client.bev, EV_READ);
    bufferevent_enable(r->up.bev, EV_READ);
    /* Bytes after the upstream's head are its first frames; the client's
     * input may hold frames it sent before its 101. */
    side_process(&r->up);
    side_process(&r->client);
}

static void handshake_read(struct relay_ws *r)
{
    static const struct httpparse_limits head_limits = {.max_header_bytes = RELAY_WS_HEAD_MAX};
    struct evbuffer *in = bufferevent_get_input(r->up.bev);
    size_t scan = MIN(evbuffer_get_length(in), (size_t)RELAY_WS_HEAD_MAX);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan);
    if (p == NULL)
        return; /* nothing yet (or no memory: the connect deadline ends it) */
    /* ~4 KiB of field slots; this runs once per session, from the loop. */
    struct httpparse_response head;
    int code = 0;
    const char *why = NULL;
    switch (httpparse_response(p, scan, &head_limits, &head, &code, &why)) {
    case HTTPPARSE_INCOMPLETE:
        return;
    case HTTPPARSE_ERROR:
        log_debug("ws relay: upstream %s:%d handshake reply refused: %s", r->url.host, r->url.port,
                  why);
        relay_refuse(r, 502,
                     code == 431 ? "the upstream's handshake reply is too large"
                                 : "the upstream's handshake reply is malformed",
                     RELAY_WS_END_UPSTREAM_REFUSED);
        return;
    case HTTPPARSE_DONE:
        break;
    }
    r->info.upstream_status = head.status;
    if (head.status != 101) {
        int status = head.status >= 400 && head.status <= 599 ? head.status : 502;
        relay_refuse(r, status, "the upstream refused the WebSocket connection",
                     RELAY_WS_END_UPSTREAM_REFUSED);
        return;
    }
    struct relay_reply rep;
    reply_upgrade(&head, &rep);
    if (!rep.upgrade_ok || !rep.connection_ok || rep.n_accept != 1 || rep.extensions ||
        !ws_check_accept(r->sent_key, rep.accept, rep.accept_len)) {
        relay_refuse(r, 502, "the upstream's WebSocket handshake reply is invalid",
                     RELAY_WS_END_UPSTREAM_REFUSED);
        return;
    }
    evbuffer_drain(in, head.head_len);
    relay_open(r);
}

/* The header copy is handed to the output buffer by reference and wiped
 * when libevent lets go of it (written or freed). */
static void headers_cleanup(const void *data, size_t len, void *arg)
{
    (void)arg;
    OPENSSL_cleanse((void *)data, len);
    free((void *)data);
}

static void handshake_send(struct relay_ws *r)
{
    struct evbuffer *out = bufferevent_get_output(r->up.bev);
    bool default_port = r->url.port == (r->url.tls ? 443 : 80);
    char port[8] = "";
    if (!default_port)
        snprintf(port, sizeof(port), ":%d", r->url.port);
    int rc = evbuffer_add_printf(
        out,
        "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
        r->url.path, r->url.ipv6 ? "[" : "", r->url.host, r->url.ipv6 ? "]" : "", port,
        r->sent_key);
    if (rc >= 0 && r->headers != NULL) {
        size_t hl = strlen(r->headers);
        if (evbuffer_add_reference(out, r->headers, hl, headers_cleanup, NULL) == -1)
            rc = -1;
        else
            r->headers = NULL;
    }
    if (rc < 0 || evbuffer_add(out, "\r\n", 2) == -1) {
        relay_refuse(r, 502, "cannot send the upgrade request", RELAY_WS_END_UPSTREAM_REFUSED);
        return;
    }
    r->state = RELAY_WS_HANDSHAKE;
    bufferevent_enable(r->up.bev, EV_READ | EV_WRITE);
}

/* --- callbacks ------------------------------------------------------------ */

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct relay_side *s = arg;
    struct relay_ws *r = s->r;
    (void)bev;
    switch (r->state) {
    case RELAY_WS_CONNECTING:
    case RELAY_WS_HANDSHAKE:
        /* Client bytes wait (bounded by the read watermark) for the 101. */
        if (!s->is_client)
            handshake_read(r);
        break;
    case RELAY_WS_FIRST_WAIT:
        break; /* client bytes wait for the decision */
    case RELAY_WS_FIRST:
    case RELAY_WS_OPEN:
        side_process(s);
        break;
    case RELAY_WS_ENDING:
        evbuffer_drain(bufferevent_get_input(s->bev),
                       evbuffer_get_length(bufferevent_get_input(s->bev)));
        break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct relay_side *s = arg;
    struct relay_ws *r = s->r;
    if (r->state == RELAY_WS_ENDING) {
        check_drained(r);
        return;
    }
    struct relay_side *src = other(s);
    if (r->state == RELAY_WS_OPEN && src->paused &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= r->high / 2) {
        src->paused = 0;
        if (!src->dead && !src->got_close)
            bufferevent_enable(src->bev, EV_READ);
    }
}

/* Logs why TLS to the upstream failed; true if the certificate was refused. */
static bool log_tls_failure(struct relay_ws *r, struct bufferevent *bev)
{
    unsigned long e;
    char buf[256];
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) == 0)
            continue; /* libevent's own code for a failed handshake */
        ERR_error_string_n(e, buf, sizeof(buf));
        log_warn("ws relay: TLS to upstream %s:%d failed: %s", r->url.host, r->url.port, buf);
    }
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (v == X509_V_OK)
        return false;
    log_warn("ws relay: upstream %s:%d certificate refused: %s", r->url.host, r->url.port,
             X509_verify_cert_error_string(v));
    return true;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct relay_side *s = arg;
    struct relay_ws *r = s->r;
    if (what & BEV_EVENT_CONNECTED) {
        if (!s->is_client && r->state == RELAY_WS_CONNECTING) {
            int one = 1;
            evutil_socket_t fd = bufferevent_getfd(bev);
            if (fd != -1)
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            handshake_send(r);
        }
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    s->dead = 1;
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    switch (r->state) {
    case RELAY_WS_FIRST:
    case RELAY_WS_FIRST_WAIT:
        relay_finish(r, RELAY_WS_END_CLIENT_GONE); /* only the client is connected */
        break;
    case RELAY_WS_CONNECTING:
    case RELAY_WS_HANDSHAKE:
        if (s->is_client) {
            relay_finish(r, RELAY_WS_END_CLIENT_GONE);
        } else {
            int dns_err = bufferevent_socket_get_dns_error(bev);
            if (dns_err != 0)
                log_warn("ws relay: cannot resolve upstream %s: %s", r->url.host,
                         evutil_gai_strerror(dns_err));
            bool cert = r->url.tls && log_tls_failure(r, bev);
            relay_refuse(r, 502,
                         cert ? "the upstream's TLS certificate could not be verified"
                         : r->state == RELAY_WS_CONNECTING
                             ? "the upstream cannot be reached"
                             : "the upstream closed the connection during the handshake",
                         RELAY_WS_END_UPSTREAM_REFUSED);
        }
        break;
    case RELAY_WS_OPEN:
        if (r->client.got_close || r->up.got_close) {
            relay_finish(r, RELAY_WS_END_OK); /* TCP close after a close frame */
        } else if (s->is_client) {
            relay_finish(r, RELAY_WS_END_CLIENT_GONE); /* the upstream just gets a TCP close */
        } else {
            /* 1006 may not be sent: the client learns with 1011. It is
             * still sending (audio, say): its frames are read and dropped
             * until the close is out, or the reset its unread bytes would
             * cause could destroy the close and what was relayed before. */
            r->drain_client = 1;
            send_close(&r->client, WS_CLOSE_INTERNAL, "upstream connection lost");
            relay_finish(r, RELAY_WS_END_UPSTREAM_GONE);
        }
        break;
    case RELAY_WS_ENDING:
        check_drained(r);
        break;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_ws *r = arg;
    (void)fd;
    (void)what;
    switch (r->state) {
    case RELAY_WS_FIRST:
        send_close(&r->client, WS_CLOSE_POLICY, "no first message with the key in time");
        r->cut_client = 1;
        relay_finish(r, RELAY_WS_END_TIMEOUT);
        break;
    case RELAY_WS_FIRST_WAIT:
        send_close(&r->client, WS_CLOSE_POLICY, "the session could not begin in time");
        relay_finish(r, RELAY_WS_END_TIMEOUT);
        break;
    case RELAY_WS_CONNECTING:
    case RELAY_WS_HANDSHAKE:
        relay_refuse(r, 504, "the upstream did not accept the WebSocket connection in time",
                     RELAY_WS_END_TIMEOUT);
        break;
    case RELAY_WS_OPEN:
        if (r->client.got_close || r->up.got_close) {
            /* The other side never answered the close: the side that
             * closed gets its answer from us (its own code back), not a
             * bare TCP close it would read as 1006. */
            int code = r->info.close_code;
            if (code < 1000 || code == 1005 || code == 1006 || code == 1015)
                code = WS_CLOSE_NORMAL;
            if (r->client.got_close)
                send_close(&r->client, code, NULL);
            if (r->up.got_close)
                send_close(&r->up, code, NULL);
            relay_finish(r, RELAY_WS_END_OK);
        } else if (r->activity) {
            r->activity = 0;
            timer_arm(r, idle_ms(r));
        } else {
            send_close(&r->client, WS_CLOSE_GOING_AWAY, "idle timeout");
            send_close(&r->up, WS_CLOSE_GOING_AWAY, "idle timeout");
            relay_finish(r, RELAY_WS_END_TIMEOUT);
        }
        break;
    case RELAY_WS_ENDING:
        schedule_end(r); /* linger over: whatever is still queued is dropped */
        break;
    }
}

/* --- start and shutdown --------------------------------------------------- */

static struct bufferevent *upstream_bev(struct relay_ws *r, SSL_CTX *ctx)
{
    if (!r->url.tls)
        return bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (ctx == NULL)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    /* Verification: the context's trust store (the configured CA or the
     * system's), the peer's name (or IP) checked against the URL's host.
     * SNI carries names only (RFC 6066 §3 forbids IP literals). */
    static const unsigned char alpn[] = "\x08http/1.1";
    int ok = SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) == 0;
    if (r->url.ip)
        ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), r->url.host) == 1;
    else
        ok = ok && SSL_set_tlsext_host_name(ssl, r->url.host) == 1 &&
             SSL_set1_host(ssl, r->url.host) == 1;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    struct bufferevent *bev =
        ok ? bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE)
           : NULL;
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Servers often close without close_notify; that is an EOF. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Header lines must each end with CRLF and may not end the head early. */
static bool headers_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0)
        return true;
    if (n < 2 || memcmp(h + n - 2, "\r\n", 2) != 0 || strstr(h, "\r\n\r\n") != NULL || h[0] == '\r')
        return false;
    for (size_t i = 0; i < n; i++)
        if (h[i] == '\n' && (i == 0 || h[i - 1] != '\r'))
            return false;
    return true;
}

/* Starts the upstream connection (r->url set, r->up.bev made): DNS, TCP,
 * TLS, then handshake_send from event_cb. */
static void upstream_connect(struct relay_ws *r)
{
    bufferevent_setcb(r->up.bev, read_cb, write_cb, event_cb, &r->up);
    timer_arm(r, r->limits.upstream_connect_timeout_ms);
    /* Errors reported from here (even synchronously, by the resolver) go
     * through the callbacks, which end the session from end_ev. */
    if (bufferevent_socket_connect_hostname(r->up.bev, r->dns, AF_UNSPEC, r->url.host,
                                            r->url.port) == -1 &&
        r->state == RELAY_WS_CONNECTING) {
        int dns_err = bufferevent_socket_get_dns_error(r->up.bev);
        if (dns_err != 0)
            log_warn("ws relay: cannot resolve upstream %s: %s", r->url.host,
                     evutil_gai_strerror(dns_err));
        relay_refuse(r, 502, "the upstream cannot be reached", RELAY_WS_END_UPSTREAM_REFUSED);
    }
}

static void target_wipe(struct relay_ws_target *t)
{
    free(t->upstream_url);
    if (t->upstream_headers != NULL) {
        OPENSSL_cleanse(t->upstream_headers, strlen(t->upstream_headers));
        free(t->upstream_headers);
    }
    if (t->first_message != NULL) {
        OPENSSL_cleanse(t->first_message, t->first_len);
        free(t->first_message);
    }
    memset(t, 0, sizeof(*t));
}

/* Client-first: the whole first message is in r->held. on_first says where
 * to connect (and what to send first) or refuses. */
static void first_target(struct relay_ws *r, int rc, struct relay_ws_target *tp);

static void first_message(struct relay_ws *r)
{
    struct relay_ws_target t = {0};
    int rc = r->on_first(r->arg, r->held.buf ? r->held.buf : "", r->held.len, &t);
    msg_wipe(&r->held); /* it may hold a key */
    if (r->state != RELAY_WS_FIRST) {
        target_wipe(&t); /* on_first called relay_ws_shutdown */
        return;
    }
    if (rc == 1) {
        /* Decided later: the client's next frames wait (bounded), the
         * first-message deadline still runs. */
        target_wipe(&t);
        r->state = RELAY_WS_FIRST_WAIT;
        bufferevent_setwatermark(r->client.bev, EV_READ, 0, RELAY_WS_EARLY_READ_MAX);
        return;
    }
    first_target(r, rc, &t);
}

void relay_ws_first_decided(struct relay_ws *r, int rc, struct relay_ws_target *t)
{
    if (r == NULL || r->state != RELAY_WS_FIRST_WAIT) {
        target_wipe(t);
        return;
    }
    r->state = RELAY_WS_FIRST;
    r->drain_client = rc != 0; /* frames sent meanwhile must not turn the close into a reset */
    first_target(r, rc, t);
}

/* on_first's answer: refuse, or connect upstream with its target. */
static void first_target(struct relay_ws *r, int rc, struct relay_ws_target *tp)
{
    struct relay_ws_target t = *tp;
    memset(tp, 0, sizeof(*tp));
    if (rc != 0) { /* any non-zero refuses: fail closed */
        /* Frames the client sent after its first message (or sends before
         * it reads the close) must not turn the close into a reset. */
        r->drain_client = 1;
        send_close(&r->client, WS_CLOSE_POLICY,
                   t.refuse_reason != NULL ? t.refuse_reason : "invalid or missing key");
        relay_finish(r, RELAY_WS_END_UNAUTHORIZED);
        target_wipe(&t);
        return;
    }
    if (url_parse(t.upstream_url, &r->url) == -1 ||
        (t.upstream_headers != NULL && !headers_ok(t.upstream_headers)) ||
        (r->up.bev = upstream_bev(r, r->tls)) == NULL) {
        log_warn("ws relay: the upstream given for the first message is not usable");
        send_close(&r->client, WS_CLOSE_INTERNAL, "cannot connect upstream");
        relay_finish(r, RELAY_WS_END_UPSTREAM_REFUSED);
        target_wipe(&t);
        return;
    }
    if (t.upstream_headers != NULL && t.upstream_headers[0] != '\0') {
        r->headers = t.upstream_headers;
        t.upstream_headers = NULL;
    }
    r->first = t.first_message;
    r->first_len = t.first_message != NULL ? t.first_len : 0;
    t.first_message = NULL;
    target_wipe(&t);
    /* Frames after the first wait for the upstream, as in the normal mode. */
    r->state = RELAY_WS_CONNECTING;
    bufferevent_setwatermark(r->client.bev, EV_READ, 0, RELAY_WS_EARLY_READ_MAX);
    upstream_connect(r);
}

struct relay_ws *relay_ws_start(const struct relay_ws_params *p)
{
    struct relay_ws *r = NULL;
    if (p == NULL || p->base == NULL || p->client == NULL || p->client_key == NULL ||
        (p->client_first && p->on_first == NULL) ||
        (!p->client_first && p->upstream_headers != NULL && !headers_ok(p->upstream_headers)) ||
        (p->client_protocol != NULL &&
         !httpparse_token_valid(p->client_protocol, strlen(p->client_protocol))))
        goto failed;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto failed;
    r->url.path = NULL;
    if (!p->client_first && url_parse(p->upstream_url, &r->url) == -1) {
        log_warn("ws relay: upstream URL is not a valid ws:// or wss:// URL");
        goto failed;
    }
    r->base = p->base;
    r->dns = p->dns;
    r->tls = p->tls;
    if (p->limits != NULL) {
        r->limits = *p->limits;
    } else {
        r->limits.upstream_connect_timeout_ms = 10000;
        r->limits.idle_timeout_ms = 60000;
    }
    if (r->limits.ws_first_message_timeout_ms <= 0)
        r->limits.ws_first_message_timeout_ms = RELAY_WS_FIRST_MS;
    if (r->limits.ws_first_message_max_bytes == 0)
        r->limits.ws_first_message_max_bytes = RELAY_WS_FIRST_MAX;
    r->high =
        r->limits.client_high_watermark ? r->limits.client_high_watermark : RELAY_WS_HIGH_DEFAULT;
    r->max_message = p->max_message;
    r->meter_max = p->meter_max;
    r->hold_first = p->hold_first_client_message;
    r->hold_all = p->hold_client_text;
    r->client_first = p->client_first;
    r->hold_done = p->client_first; /* on_first has the first message */
    r->on_message = p->on_message;
    r->on_binary = p->on_binary;
    r->on_open = p->on_open;
    r->on_end = p->on_end;
    r->error_body = p->error_body;
    r->on_first = p->on_first;
    r->arg = p->arg;
    r->client.r = r;
    r->client.is_client = true;
    r->up.r = r;

    if (ws_accept_key(p->client_key, strlen(p->client_key), r->accept) == -1 ||
        ws_client_key(r->sent_key) == -1)
        goto failed;
    if (p->client_protocol != NULL && (r->client_protocol = strdup(p->client_protocol)) == NULL)
        goto failed;
    if (!p->client_first && p->upstream_headers != NULL && p->upstream_headers[0] != '\0' &&
        (r->headers = strdup(p->upstream_headers)) == NULL)
        goto failed;
    if (!p->client_first && p->first_message != NULL) {
        if ((r->first = malloc(p->first_len + 1)) == NULL)
            goto failed;
        memcpy(r->first, p->first_message, p->first_len);
        r->first[p->first_len] = '\0';
        r->first_len = p->first_len;
    }
    r->timer = evtimer_new(r->base, timer_cb, r);
    r->end_ev = event_new(r->base, -1, 0, end_cb, r);
    if (r->timer == NULL || r->end_ev == NULL)
        goto failed;
    if (!p->client_first && (r->up.bev = upstream_bev(r, p->tls)) == NULL)
        goto failed;
    /* Client-first: the 101 goes out now (nothing else is in the client's
     * output yet, so a failure leaves the connection the caller's). */
    if (p->client_first) {
        r->client.bev = p->client;
        int rc = client_accept(r);
        r->client.bev = NULL;
        if (rc == -1)
            goto failed;
    }

    /* From here the client connection is ours. Until the upstream accepts,
     * its bytes are read only up to a bound (so its EOF is still seen). */
    r->client.bev = p->client;
    if (bufferevent_openssl_get_ssl(r->client.bev) != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(r->client.bev, 1);
    bufferevent_setcb(r->client.bev, read_cb, write_cb, event_cb, &r->client);
    bufferevent_set_timeouts(r->client.bev, NULL, NULL);
    bufferevent_setwatermark(r->client.bev, EV_READ, 0,
                             p->client_first ? 0 : RELAY_WS_EARLY_READ_MAX);
    bufferevent_setwatermark(r->client.bev, EV_WRITE, 0, 0);
    bufferevent_enable(r->client.bev, EV_READ | EV_WRITE);

    if (p->client_first) {
        /* The first message is bounded in size (first_event) and in time
         * from the 101, as an unauthenticated socket must be. */
        r->state = RELAY_WS_FIRST;
        timer_arm(r, r->limits.ws_first_message_timeout_ms);
        /* Frames already read with the upgrade request: from the loop, so
         * on_first never runs inside relay_ws_start. */
        if (evbuffer_get_length(bufferevent_get_input(r->client.bev)) > 0)
            bufferevent_trigger(r->client.bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
        return r;
    }
    upstream_connect(r);
    return r;

failed:
    if (r != NULL) {
        r->client.bev = NULL; /* still the caller's */
        relay_free(r);
    }
    return NULL;
}

void relay_ws_shutdown(struct relay_ws *r)
{
    if (r == NULL || r->state == RELAY_WS_ENDING)
        return;
    if (r->state != RELAY_WS_OPEN) {
        /* Client-first: the client has its 101 and gets a 1001 instead. */
        relay_refuse(r, 503, "the proxy is shutting down", RELAY_WS_END_SHUTDOWN);
        return;
    }
    send_close(&r->client, WS_CLOSE_GOING_AWAY, "server shutting down");
    send_close(&r->up, WS_CLOSE_GOING_AWAY, "server shutting down");
    relay_finish(r, RELAY_WS_END_SHUTDOWN);
}

void relay_ws_end(struct relay_ws *r, const char *client_text, size_t len, const char *reason)
{
    if (r == NULL || r->state != RELAY_WS_OPEN)
        return;
    struct relay_side *c = &r->client;
    uint8_t *copy =
        client_text != NULL ? malloc(len + 1) : NULL; /* payloads are written in place */
    if (copy != NULL && can_send(c) && c->out_left == 0 &&
        frame_start(c, WS_OP_TEXT, true, len) == 0) {
        memcpy(copy, client_text, len);
        frame_payload(c, copy, len, 0);
    }
    free(copy);
    policy_end(r, reason);
}
