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
 * is kept only up to params.meter_max bytes for the on_message callback.
 *
 * Behaviour the caller can rely on (proxy/relay_ws.c):
 * - wss://: SNI with the host name (never for an IP literal), the peer
 *   certificate verified against params.tls's trust store and checked for
 *   the URL's host name (SSL_set1_host) or IP address
 *   (X509_VERIFY_PARAM_set1_ip_asc), ALPN "http/1.1"; dirty shutdowns (no
 *   close_notify) count as EOF on both sides.
 * - Upstream handshake reply (parsed by httpparse_response): CRLF line ends
 *   only (bare LF, obs-fold and control bytes refused), head at most 16 KiB
 *   and HTTPPARSE_MAX_HEADERS fields; 101 needs Upgrade:
 *   websocket, Connection: upgrade, the right Sec-WebSocket-Accept and no
 *   Sec-WebSocket-Extensions (none is offered).
 * - Deadlines: upstream_connect_timeout_ms covers DNS + TCP + TLS + the
 *   upgrade reply (504 and RELAY_WS_END_TIMEOUT); the idle limit is a
 *   whole period of idle_timeout_ms * 5 without a frame either way (checked
 *   once per period, so quiet for 5x to 10x; Realtime sessions are
 *   legitimately quiet), then close 1001 both ways; after one side's close
 *   frame the other has 5 s to answer; at the end, queued output gets up to
 *   5 s to flush.
 * - Text messages are checked for UTF-8 both ways (1007 to the sender).
 *   A protocol error on one side: that side gets a close with the parser's
 *   code (1002/1007/1009), the other 1001 (toward the upstream) or 1011
 *   (toward the client); TCP loss without a close frame: the client gets
 *   1011 if the upstream died, the upstream just a TCP close if the client
 *   did. A close frame we originate is skipped (TCP close only) if a frame
 *   toward that side is half written.
 * - Back-pressure: above limits->client_high_watermark (default 256 KiB)
 *   on either side's output the other side is no longer read, until the
 *   output drains to half of it.
 * - Client-first mode (params.client_first; browsers that put the key
 *   in the first message): the client gets its 101 at once, its first
 *   message (text, whole, at most limits->ws_first_message_max_bytes,
 *   default 64 KiB: a frame announcing more gets close 1009 before its
 *   payload is read, RELAY_WS_END_CLIENT_GONE) goes to on_first, which
 *   decides where to connect and what to send first. That message must be
 *   complete within limits->ws_first_message_timeout_ms of the 101
 *   (default 2 s; else close 1008, RELAY_WS_END_TIMEOUT); nothing is
 *   connected upstream before it; a binary message, a ping or a pong before that
 *   message is complete (even between its fragments, which RFC 6455 would
 *   allow: no client sends its key that way, and an unauthenticated peer
 *   gets nothing answered): close 1008 (RELAY_WS_END_UNAUTHORIZED), as when
 *   on_first refuses. From then on
 *   as in the normal mode, except that a refusal or failure of the upstream
 *   reaches the client as a close frame (1008 for an upstream 401/403, 1011
 *   otherwise; 1001 on shutdown) instead of an HTTP error. */
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
    RELAY_WS_END_UNAUTHORIZED,     /* client-first: on_first refused, or no text first */
    RELAY_WS_END_POLICY,           /* on_message ended the session (close 1008) */
};

struct relay_ws_end_info {
    enum relay_ws_end end;
    int upstream_status;   /* status of the upstream's handshake reply; 0 if none */
    int close_code;        /* code of the first close frame seen, 0 if none */
    bool closed_by_client; /* who sent the first close frame */
    int client_close_sent; /* code of a close the relay itself sent the client, 0 if none */
    int64_t opened_ms;     /* mono_ms() when the upstream accepted, 0 if never */
    int64_t ended_ms;
    uint64_t bytes_from_client, bytes_from_upstream; /* payload bytes relayed */
};

/* Where a client-first session goes, filled by on_first. Every pointer is
 * malloc'd by on_first and owned by the relay from then on (wiped and freed,
 * on success or not). */
struct relay_ws_target {
    char *upstream_url;     /* as relay_ws_params.upstream_url */
    char *upstream_headers; /* as relay_ws_params.upstream_headers; may be NULL */
    /* Sent to the upstream as the first client text message once it
     * accepted (the client's first message, rewritten); NULL: none. Must be
     * UTF-8 (it is not checked). */
    char *first_message;
    size_t first_len;
    /* When on_first refuses: the client's close 1008 reason (a static
     * string; NULL: "invalid or missing key"). */
    const char *refuse_reason;
};

struct relay_ws_params {
    struct event_base *base;
    struct evdns_base *dns; /* for upstream host names */
    SSL_CTX *tls;           /* client context for wss:// (verifies peers) */
    const struct config_limits *limits;

    /* The client connection after its upgrade request was read: the relay
     * takes ownership. Bytes already in its input buffer are the client's
     * first frames. */
    struct bufferevent *client;
    /* Sec-WebSocket-Key of the client's request (copied). */
    const char *client_key;
    /* Sec-WebSocket-Protocol value to answer the client with, or NULL. */
    const char *client_protocol;

    /* ws://host[:port]/path?query or wss://... (copied). NULL in the
     * client-first mode (on_first gives it). */
    const char *upstream_url;
    /* Extra upstream handshake header lines, each "Name: value\r\n" (e.g.
     * the injected credential, Sec-WebSocket-Protocol, forwarded client
     * headers). The relay adds Host, Upgrade, Connection, Sec-WebSocket-Key
     * and Sec-WebSocket-Version itself. Copied, and the copy is wiped once
     * sent (it holds a key). Ignored in the client-first mode. */
    const char *upstream_headers;
    /* Sent to the upstream as the first client text message once it
     * accepted, before anything the client sends (copied, wiped); NULL:
     * none. Ignored in the client-first mode (on_first gives it). */
    const char *first_message;
    size_t first_len;

    /* Client-first mode: answer the client's upgrade with 101 at once, read
     * its first message (a whole text message) and call on_first with it
     * (msg borrowed for the call, not NUL-terminated). on_first returns 0
     * with *out filled to connect upstream (as the normal mode does with
     * upstream_url/upstream_headers, then first_message goes first), 1 to
     * decide later (relay_ws_first_decided; the client's next frames wait),
     * or -1 (any other value) to refuse: the client gets close 1008 "invalid or missing key"
     * and the session ends with RELAY_WS_END_UNAUTHORIZED, nothing connected.
     * on_message is not called for that first message (on_first sees it),
     * and hold_first_client_message has no effect. on_first may call
     * relay_ws_shutdown. Required when client_first is set. */
    bool client_first;
    int (*on_first)(void *arg, const char *msg, size_t len, struct relay_ws_target *out);

    size_t max_message; /* ws message size limit both ways (1009 above) */
    size_t meter_max;   /* text messages up to this size are passed to on_message
                           (0: only held messages: the first with
                           hold_first_client_message, every client text
                           with hold_client_text) */

    /* A whole text message (or its first meter_max bytes: complete=false)
     * in either direction. A held client message (the first with
     * hold_first_client_message, every one with hold_client_text) is passed
     * whole (complete=true; bounded by max_message, or meter_max with
     * hold_client_text, or 1 MiB) before it is forwarded: on_message may
     * return a malloc'd replacement in *replace (the relay wipes and frees
     * it; for a message that is not held it is ignored), or return -1 (any
     * non-zero) with a static *reason to end the session: the client gets close 1008 with
     * that reason, the upstream 1000, the end is RELAY_WS_END_POLICY, and a
     * held message is not forwarded. data is borrowed for the call. */
    int (*on_message)(void *arg, enum relay_ws_dir dir, const char *data, size_t len, bool complete,
                      char **replace, size_t *replace_len, const char **reason);
    bool hold_first_client_message;
    bool hold_client_text;
    /* Every chunk of a binary message, in either direction, as it is relayed
     * (unmasked; borrowed for the call): message_off is the chunk's offset
     * in its message, last is set on the message's final chunk. For
     * metering audio (framed audio messages). May be NULL. */
    void (*on_binary)(void *arg, enum relay_ws_dir dir, const uint8_t *data, size_t len,
                      uint64_t message_off, bool last);
    /* The upstream accepted; the client got its 101 (and, client-first,
     * the upstream the first message). */
    void (*on_open)(void *arg);
    /* Exactly once, at the end, from an event of its own (never from inside
     * relay_ws_start or relay_ws_shutdown); the relay frees itself right
     * after, so the handle is invalid once this returns. For
     * RELAY_WS_END_UPSTREAM_REFUSED before any 101, the relay has already
     * answered the client with an HTTP error built by error_body (never in
     * the client-first mode: error_body is not called there). */
    void (*on_end)(void *arg, const struct relay_ws_end_info *info);
    /* Body (JSON text, malloc'd) of the HTTP error the client gets when the
     * upstream refuses or cannot be reached; status is 502, 504, 503
     * (relay_ws_shutdown before the upstream accepted), or the upstream's
     * 4xx/5xx. message is a static English sentence, never upstream text. */
    char *(*error_body)(void *arg, int status, const char *message);
    void *arg;
};

/* Starts connecting upstream (client-first mode: answers the client with
 * 101 and waits for its first message). Returns NULL on immediate failure (bad URL:
 * not ws:// or wss://, user info, a fragment, spaces or control bytes, a bad
 * port; wss:// without p->tls; upstream_headers not CRLF-terminated lines or
 * containing an empty line; a client_protocol that is not a token;
 * client_first without on_first; out of memory); the client bev is then still the caller's. p->dns
 * should be set: without it libevent resolves names with blocking getaddrinfo. Every string in p is
 * copied; p itself is borrowed for the call. */
MUST_CHECK struct relay_ws *relay_ws_start(const struct relay_ws_params *p);

/* Server shutdown: sends close 1001 (going away) both ways and ends the
 * session (on_end with RELAY_WS_END_SHUTDOWN, from the loop). Before the
 * upstream accepted, the client gets an HTTP 503 instead (client-first: only
 * the client gets its 1001). A no-op once the
 * end is decided (idempotent until on_end). */
void relay_ws_shutdown(struct relay_ws *r);

/* Client-first: on_first returned 1 (it asks another service first). Its
 * answer: rc 0 with *t the target (as on_first fills it), or non-zero to
 * refuse (t->refuse_reason). Takes what *t holds. A no-op (t wiped) when
 * the session ended meanwhile (client gone, deadline). */
void relay_ws_first_decided(struct relay_ws *r, int rc, struct relay_ws_target *t);

/* The caller ends an open session (its balance ran out, its key was
 * revoked): the client gets client_text as one text frame (a provider-shaped
 * error; NULL for none) after everything already relayed, then close 1008
 * with reason; the upstream a normal close; on_end follows from the loop
 * with RELAY_WS_END_POLICY. May be called from the relay's callbacks. A
 * no-op before the session is open and once its end is decided. */
void relay_ws_end(struct relay_ws *r, const char *client_text, size_t len, const char *reason);

#endif
