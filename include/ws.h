/* ws.h - WebSocket protocol (RFC 6455) without I/O: the opening-handshake
 * checks for both sides and an incremental frame parser and writer usable in
 * either direction (the proxy is a server to its client and a client to the
 * upstream, DESIGN §7 "Upstream WebSocket"). No allocation, fuzzable.
 *
 * No extension is ever negotiated (permessage-deflate is not offered and not
 * accepted), so every RSV bit must be 0. Subprotocol selection is the
 * caller's: ws_list_next() walks a Sec-WebSocket-Protocol value so a provider
 * module can drop credential entries (a "<prefix>.<key>" item, the item
 * after a "token" item) and echo the one it picks. */
#ifndef BYOK_WS_H
#define BYOK_WS_H

#include "common.h"

struct httpparse_request;

#define WS_KEY_LEN          24  /* Sec-WebSocket-Key: base64 of 16 bytes */
#define WS_ACCEPT_LEN       28  /* Sec-WebSocket-Accept: base64 of a SHA-1 */
#define WS_FRAME_HEADER_MAX 14  /* 2 + 8 (64-bit length) + 4 (masking key) */
#define WS_CONTROL_MAX      125 /* payload of a ping, pong or close frame */
#define WS_CLOSE_REASON_MAX (WS_CONTROL_MAX - 2)

/* Frame opcodes (RFC 6455 §5.2); every other value is refused with 1002. */
enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes the proxy sends or reports (RFC 6455 §7.4.1). 1005 and 1006
 * never appear on the wire: 1005 is what a close frame without a payload
 * reports, 1006 is for the caller's own bookkeeping (connection lost). */
#define WS_CLOSE_NORMAL       1000
#define WS_CLOSE_GOING_AWAY   1001
#define WS_CLOSE_PROTOCOL     1002
#define WS_CLOSE_NO_STATUS    1005
#define WS_CLOSE_ABNORMAL     1006
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY       1008
#define WS_CLOSE_TOO_BIG      1009
#define WS_CLOSE_INTERNAL     1011

/* ---- Opening handshake, server side (RFC 6455 §4.2.1) ---------------- */

/* Checks that a parsed request head is a valid WebSocket upgrade: method
 * GET, HTTP/1.1, Connection lists "upgrade" and Upgrade lists "websocket"
 * (case-insensitive, over every field of that name), exactly one
 * Sec-WebSocket-Version equal to "13", exactly one Sec-WebSocket-Key that is
 * base64 of 16 bytes (22 base64 characters and "==", as Node's ws checks).
 * Returns 0 when valid. Otherwise returns the HTTP status to answer and sets
 * *why to a static reason that never quotes the input:
 *   400 for everything but the version;
 *   426 when the version is missing or not 13 - the caller must then answer
 *       "426 Upgrade Required" with "Sec-WebSocket-Version: 13" (§4.4) so the
 *       client can retry with a version we speak.
 * req is borrowed for the call. */
MUST_CHECK int ws_check_upgrade(const struct httpparse_request *req, const char **why);

/* Writes Sec-WebSocket-Accept for key[0..len) - base64(SHA-1(key + the RFC's
 * GUID)), §4.2.2 - as 28 characters plus a NUL into out. The key is used as
 * given (ws_check_upgrade has validated it). -1 only if OpenSSL fails. */
MUST_CHECK int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

/* Iterator over a comma-separated list such as Sec-WebSocket-Protocol
 * (RFC 9110 §5.6.1): items come back trimmed of spaces and tabs, empty items
 * are skipped. Items are not checked: use ws_token_valid() before echoing one.
 * A request may carry several Sec-WebSocket-Protocol fields; they form one
 * list, so walk each of them. value is borrowed while iterating; the items
 * point into it. */
struct ws_list {
    const char *cur; /* private */
    const char *end; /* private */
};

void ws_list_init(struct ws_list *it, const char *value, size_t len);
/* Sets *item and *item_len to the next item; false at the end of the list. */
bool ws_list_next(struct ws_list *it, const char **item, size_t *item_len);

/* True if s[0..n) is a non-empty RFC 9110 token (what a subprotocol name must
 * be, RFC 6455 §4.1): httpparse_token_valid, the tree's one token table. */
bool ws_token_valid(const char *s, size_t n);

/* ---- Opening handshake, client side (RFC 6455 §4.1) ------------------- */

/* Writes a fresh Sec-WebSocket-Key (base64 of 16 random bytes) as 24
 * characters plus a NUL into out. -1 if the random generator fails. */
MUST_CHECK int ws_client_key(char out[WS_KEY_LEN + 1]);

/* True if accept_value[0..len) (surrounding spaces/tabs ignored) is the
 * Sec-WebSocket-Accept that answers sent_key (NUL-terminated, as made by
 * ws_client_key). The caller separately checks 101, Upgrade and Connection. */
bool ws_check_accept(const char *sent_key, const char *accept_value, size_t len);

/* ---- Incremental UTF-8 validation ------------------------------------- */

/* Strict UTF-8 (RFC 3629): overlong forms, surrogates (U+D800-DFFF) and
 * code points above U+10FFFF are invalid. Input may be split anywhere,
 * including inside a sequence. Zero-initialise or call ws_utf8_init(). */
struct ws_utf8 {
    uint8_t need; /* private: continuation bytes still expected, 0xff = failed */
    uint8_t lo;   /* private: range allowed for the next continuation byte */
    uint8_t hi;
};

void ws_utf8_init(struct ws_utf8 *u);
/* Validates s[0..n) after what was fed before. Returns n when every byte is
 * acceptable so far, else the index of the first offending byte (then the
 * validator stays failed and later calls return 0). */
size_t ws_utf8_feed(struct ws_utf8 *u, const uint8_t *s, size_t n);
/* True if the input so far ends on a character boundary and never failed. */
bool ws_utf8_complete(const struct ws_utf8 *u);

/* ---- Frame parser (RFC 6455 §5) ---------------------------------------
 *
 * Fed the bytes of one direction of a connection, in pieces split anywhere.
 * Data frames are never buffered or copied: their payload is delivered as it
 * arrives, in chunks that point into the caller's input, so a relay can
 * forward a message of any size with constant memory. Control frames (at
 * most 125 bytes) are gathered in the parser and delivered whole. Splitting
 * the input differently changes only where data chunks are cut: the frames,
 * their payload bytes, control events and the final status are the same.
 *
 * Refused with 1002 (protocol error): a set RSV bit; an unknown opcode; a
 * masked frame to a client or an unmasked frame to a server (§5.1); a control
 * frame that is fragmented or longer than 125 bytes; a continuation frame
 * with no message open; a text/binary frame while a fragmented message is
 * open; a 64-bit length with its top bit set; a length not in its shortest
 * encoding (§5.2 "the minimal number of bytes MUST be used"); a close
 * payload of 1 byte or with a code that may not be sent (ws_close_code_valid).
 * Refused with 1007: a close reason that is not UTF-8; a text message that is
 * not UTF-8 when validate_utf8 is on. Refused with 1009: a message whose
 * frames add up to more than max_message bytes (checked from each frame
 * header, before any of its payload is delivered). */

enum ws_role {
    WS_ROLE_SERVER = 0, /* we are the server: incoming frames must be masked */
    WS_ROLE_CLIENT,     /* we are the client: incoming frames must not be masked */
};

struct ws_parser_options {
    enum ws_role role;
    uint64_t max_message; /* bytes of one data message, all fragments; 0 = no limit */
    bool validate_utf8;   /* check text messages (turn on for messages the proxy reads) */
};

enum ws_event_type {
    WS_EVENT_DATA = 0, /* a chunk of a text/binary frame's payload */
    WS_EVENT_PING,
    WS_EVENT_PONG,
    WS_EVENT_CLOSE,
};

/* Flags of a WS_EVENT_DATA chunk. A frame's chunks carry FRAME_START on the
 * first and FRAME_END on the last (both on a frame delivered in one chunk,
 * and on a zero-length frame, which is delivered as one empty chunk). Only
 * non-empty chunks are delivered otherwise. On invalid UTF-8 the bytes before
 * the offending byte are delivered first, without the END flags (so the
 * result does not depend on how the input was split), then the feed returns
 * WS_ERROR: a relay that forwarded them closes both sides anyway. */
#define WS_CHUNK_FRAME_START 0x1u /* first chunk of a frame: frame_len is its size */
#define WS_CHUNK_FRAME_END   0x2u /* last chunk of a frame */
#define WS_CHUNK_MSG_START   0x4u /* first chunk of a message (a text/binary frame) */
#define WS_CHUNK_MSG_END                                                                           \
    0x8u /* last chunk of the message's FIN frame: the message                                     \
            is complete (and valid UTF-8, if validated) */

struct ws_event {
    enum ws_event_type type;
    /* Payload, unmasked. Borrowed until the callback returns; mutable, so a
     * relay may mask it in place (ws_mask) and write it out. For data it
     * points into the input given to ws_parser_feed; for control frames into
     * the parser. */
    uint8_t *data;
    size_t len;

    /* WS_EVENT_DATA only. */
    unsigned flags;       /* WS_CHUNK_* */
    int opcode;           /* of the message: WS_OP_TEXT or WS_OP_BINARY */
    int frame_opcode;     /* as on the wire: the message's, or WS_OP_CONTINUATION */
    bool fin;             /* the frame's FIN bit (the message ends with this frame) */
    uint64_t frame_len;   /* payload length of the whole frame */
    uint64_t frame_off;   /* offset of data[0] within the frame's payload */
    uint64_t message_off; /* offset of data[0] within the message */

    /* WS_EVENT_CLOSE only: the code (WS_CLOSE_NO_STATUS when the frame had no
     * payload) and the UTF-8 reason, pointing into data (not NUL-terminated). */
    int close_code;
    const char *reason;
    size_t reason_len;
};

/* Returns 0 to go on, non-zero to make ws_parser_feed return WS_STOPPED right
 * after this event (to pause for back-pressure: the parser stays usable and
 * is fed the rest later). It must not feed the same parser. */
typedef int (*ws_event_cb)(void *arg, const struct ws_event *ev);

enum ws_status {
    WS_MORE = 0, /* all input consumed; feed more */
    WS_STOPPED,  /* the callback asked to stop; *consumed bytes were used */
    WS_CLOSED,   /* a close frame was delivered and ends the input: *consumed
                    stops right after it; later feeds consume nothing */
    WS_ERROR,    /* protocol error: see ws_parser_error(); later feeds fail too */
};

/* Embeddable; every field is private. */
struct ws_parser {
    struct ws_parser_options opt;
    ws_event_cb cb;
    void *arg;
    int state;
    uint8_t hdr[WS_FRAME_HEADER_MAX]; /* header bytes gathered so far */
    uint8_t hdr_len;
    uint8_t hdr_need;
    bool fin;
    bool masked;
    int opcode; /* of the current frame */
    uint8_t key[4];
    uint64_t frame_len;
    uint64_t frame_off;
    bool in_message; /* a text/binary message is open (waiting for its FIN frame) */
    int msg_opcode;
    uint64_t msg_len; /* bytes of the open message so far, incl. the current frame */
    uint64_t msg_off; /* bytes of the open message delivered */
    bool check_utf8;  /* the open message is text and validate_utf8 is on */
    struct ws_utf8 utf8;
    uint8_t ctl[WS_CONTROL_MAX];
    int error_code;
    const char *error_why;
};

/* Sets up p (no allocation: nothing to free). opt is copied; cb(arg, ev) gets
 * the events. */
void ws_parser_init(struct ws_parser *p, const struct ws_parser_options *opt, ws_event_cb cb,
                    void *arg);

/* Parses in[0..len), calling cb for each event. Ownership: in is borrowed
 * for the call and MODIFIED: the payload bytes of masked data frames are
 * unmasked in place (header bytes and control frames are left as they were),
 * so the caller must not forward in[] itself afterwards, only the events.
 * *consumed is how many bytes were used: len on WS_MORE, fewer on
 * WS_STOPPED/WS_CLOSED (feed the rest, or drop it after a close). */
MUST_CHECK enum ws_status ws_parser_feed(struct ws_parser *p, uint8_t *in, size_t len,
                                         size_t *consumed);

/* After WS_ERROR: the close code to send (1002, 1007 or 1009) and a static
 * reason (short enough for a close frame, never quoting the input) in *why.
 * 0 when there was no error. */
int ws_parser_error(const struct ws_parser *p, const char **why);

/* True if a close frame may carry code (§7.4): 1000-1003, 1007-1014 (1012-1014
 * are IANA-registered: service restart, try again later, bad gateway - an
 * upstream sends them and a relay must pass them on), 3000-4999. */
bool ws_close_code_valid(int code);

/* ---- Frame writer -------------------------------------------------------- */

/* Writes a frame header into out and returns its length (2 to 14). With
 * mask, key is the frame's masking key (fresh from ws_new_mask_key for every
 * frame a client sends, §5.3) and the payload must then be masked with
 * ws_mask. Returns 0 for what may not be sent: an unknown opcode, a control
 * frame without fin or longer than 125 bytes, len >= 2^63. */
MUST_CHECK size_t ws_frame_header(uint8_t out[WS_FRAME_HEADER_MAX], int opcode, bool fin,
                                  uint64_t len, bool mask, const uint8_t key[4]);

/* XORs data[0..len) with key, starting at payload offset `offset` of the
 * frame, so a payload can be masked (or unmasked) in pieces. In place. */
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);

/* Writes four unpredictable bytes (a masking key). -1 if the random
 * generator fails. */
MUST_CHECK int ws_new_mask_key(uint8_t key[4]);

/* Writes a close payload into out: code (big-endian) then reason, which is
 * cut to WS_CLOSE_REASON_MAX bytes at a character boundary (reason is
 * NUL-terminated UTF-8, NULL for none). code 0 or WS_CLOSE_NO_STATUS gives an
 * empty payload (no code). Returns the payload length. */
size_t ws_close_payload(uint8_t out[WS_CONTROL_MAX], int code, const char *reason);

#endif
