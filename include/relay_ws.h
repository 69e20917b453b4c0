/* relay_ws.h - one WebSocket session relayed between a client and an
 * upstream (DESIGN §7 "Upstream WebSocket"): the proxy connects to the
 * upstream (plain TCP for ws://, an OpenSSL bufferevent with SNI and
 * hostname verification for wss://), performs the upgrade with the headers
 * the caller gives (the injected credential among them), and only then
 * answers the client's upgrade with 101; from there frames are relayed both
 * ways as they arrive, re-masked toward the upstream, with back-pressure
 * (a side whose output is above the high-water mark stops the other side's
 * reading), control frames passed through, and close codes relayed.
 *
 *   client bev ──frames──> ws_parser(server role) ──re-mask──> upstream bev
 *   client bev <──frames── ws_parser(client role) <─────────── upstream bev
 *                  │ on_message (text messages, for metering)
 *                  └ on_end once, then the relay frees itself
 *
 * Messages are never buffered whole for relaying; a copy of a text message
 * is kept only up to params.meter_max bytes for the on_message callback. */
#ifndef BYOK_RELAY_WS_H
#define BYOK_RELAY_WS_H

#include "common.h"
#include "config.h"

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct relay_ws;

enum relay_ws_dir {
    RELAY_WS_FROM_CLIENT = 0, /* client -> upstream */
    RELAY_WS_FROM_UPSTREAM,   /* upstream -> client */
};

enum relay_ws_end {
    RELAY_WS_END_OK = 0,           /* a close handshake, started by either side */
    RELAY_WS_END_CLIENT_GONE,      /* client closed the TCP connection / protocol error */
    RELAY_WS_END_UPSTREAM_GONE,    /* upstream died, reset, or protocol error */
    RELAY_WS_END_UPSTREAM_REFUSED, /* upgrade refused (status in the end info) or unreachable */
    RELAY_WS_END_TIMEOUT,          /* connect/handshake deadline, or idle timeout */
    RELAY_WS_END_SHUTDOWN,         /* relay_ws_shutdown() */
};

struct relay_ws_end_info {
    enum relay_ws_end end;
    int upstream_status;     /* status of the upstream's handshake reply; 0 if none */
    int close_code;          /* code of the first close frame seen, 0 if none */
    bool closed_by_client;   /* who sent the first close frame */
    int64_t opened_ms;       /* mono_ms() when the upstream accepted, 0 if never */
    int64_t ended_ms;
    uint64_t bytes_from_client, bytes_from_upstream; /* payload bytes relayed */
};

struct relay_ws_params {
    struct event_base *base;
    struct evdns_base *dns;    /* for upstream host names */
    SSL_CTX *tls;              /* client context for wss:// (verifies peers) */
    const struct config_limits *limits;

    /* The client connection after its upgrade request was read: the relay
     * takes ownership. Bytes already in its input buffer are the client's
     * first frames. */
    struct bufferevent *client;
    /* Sec-WebSocket-Key of the client's request (copied). */
    const char *client_key;
    /* Sec-WebSocket-Protocol value to answer the client with, or NULL. */
    const char *client_protocol;

    /* ws://host[:port]/path?query or wss://... (copied). */
    const char *upstream_url;
    /* Extra upstream handshake header lines, each "Name: value\r\n" (e.g.
     * the injected credential, Sec-WebSocket-Protocol, forwarded client
     * headers). The relay adds Host, Upgrade, Connection, Sec-WebSocket-Key
     * and Sec-WebSocket-Version itself. Copied, and the copy is wiped once
     * sent (it holds a key). */
    const char *upstream_headers;

    size_t max_message;  /* ws message size limit both ways (1009 above) */
    size_t meter_max;    /* text messages up to this size are passed to on_message */

    /* A whole text message (or its first meter_max bytes: complete=false)
     * in either direction. The first client message may be rewritten (to
     * remove a credential): return a malloc'd replacement in *replace (the
     * relay frees and wipes it) — only for the first client text message,
     * which the relay holds back until it is complete when
     * hold_first_client_message is set. */
    void (*on_message)(void *arg, enum relay_ws_dir dir, const char *data, size_t len,
                       bool complete, char **replace, size_t *replace_len);
    bool hold_first_client_message;
    /* The upstream accepted; the client got its 101. */
    void (*on_open)(void *arg);
    /* Exactly once, at the end; the relay frees itself right after. For
     * RELAY_WS_END_UPSTREAM_REFUSED before any 101, the relay has already
     * answered the client with an HTTP error built by error_body. */
    void (*on_end)(void *arg, const struct relay_ws_end_info *info);
    /* Body (JSON text, malloc'd) of the HTTP error the client gets when the
     * upstream refuses or cannot be reached; status is 502, 504, or the
     * upstream's 4xx/5xx. */
    char *(*error_body)(void *arg, int status, const char *message);
    void *arg;
};

/* Starts connecting upstream. Returns NULL on immediate failure (bad URL,
 * out of memory); the client bev is then still the caller's. */
MUST_CHECK struct relay_ws *relay_ws_start(const struct relay_ws_params *p);

/* Server shutdown: sends close 1001 (going away) both ways and ends the
 * session (on_end with RELAY_WS_END_SHUTDOWN). */
void relay_ws_shutdown(struct relay_ws *r);

#endif
