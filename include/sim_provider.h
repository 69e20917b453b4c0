/* sim_provider.h - how a simulated provider plugs into the simulator's core
 * (sim.h). A provider is one file, sim/sim_<provider>.c, declaring one
 * struct sim_provider per upstream host it speaks (a key of "upstreams"),
 * listed once in sim/sim_registry.c. Nothing else changes: the core finds
 * the module by the upstream key, routes requests to its handlers, checks
 * the key with its authorized(), answers errors through its error(), and
 * gives it the helpers below to read the request and pace the reply.
 *
 * What the core does for every request, before a handler runs:
 *
 *   request complete ─> route (method + path; "{id}" matches one segment;
 *                       a regional host's first segment is the region)
 *        no route ───> error(SIM_ERR_NOT_FOUND)              at once
 *   ─> authorized()?   no ──> error(SIM_ERR_UNAUTHORIZED)     at once
 *   ─> draw the fault of this reply (simulate.errors, the seeded generator)
 *   ─> wait ttfb_ms
 *        fault 429 ───> error(SIM_ERR_RATE_LIMIT)
 *        fault 500 ───> error(SIM_ERR_SERVER)
 *   ─> the route's handler (http, or ws for an upgrade); a "reset" fault is
 *      applied by the reply helpers: the connection is cut in the middle of
 *      the reply (half its body, or after half its tokens).
 *
 * A handler finishes its request with exactly one of: sim_reply(),
 * sim_reply_json() (both may be paced: sim_reply_after_tokens()), a
 * stream (sim_stream_begin() ... sim_stream_end(), or sim_stream_tokens()
 * which paces generated tokens and ends the stream itself), sim_error(), or
 * sim_ws_accept() for an upgrade. It may do so later (from a timer: sim_after)
 * but must not touch r after: the core frees it, and frees it too when the
 * client goes away first (the module's state then goes with sim_set_state's
 * free function). Everything runs on the upstream's own thread.
 *
 * Text is generated, not invented per module: token i of a reply is
 * sim_word(i) (one word = one token, token i > 0 with a leading space), and
 * prompts are counted the same way (sim_count_words), so the usage a module
 * reports is exact and what an SDK shows is what the proxy records. */
#ifndef BYOK_SIM_PROVIDER_H
#define BYOK_SIM_PROVIDER_H

#include "common.h"
#include "config_simulate.h"
#include "http.h"

#include <jansson.h>

struct sim_request;
struct sim_ws;

/* What went wrong, for a provider's error reply (its status, type and code
 * are the module's: OpenAI's 429 is {"error":{"type":"requests","code":
 * "rate_limit_exceeded"}}, Anthropic's {"type":"error","error":{"type":
 * "rate_limit_error"}}). */
enum sim_error {
    SIM_ERR_BAD_REQUEST = 0, /* 400: the body is not what the endpoint takes */
    SIM_ERR_UNAUTHORIZED,    /* 401: no key where the provider wants one */
    SIM_ERR_NOT_FOUND,       /* 404: no such route */
    SIM_ERR_RATE_LIMIT,      /* 429: an injected rate-limit error */
    SIM_ERR_SERVER,          /* 500: an injected server error */
};

/* The handler of a route. */
typedef void (*sim_handler_fn)(struct sim_request *r);

struct sim_route {
    const char *method;  /* "POST", "GET" */
    const char *path;    /* "/v1/chat/completions"; a "{id}" segment matches one segment
                          * (sim_param gives it) */
    sim_handler_fn http; /* a plain request (NULL: none) */
    /* An upgrade request (GET with Upgrade: websocket, already checked by
     * ws_check_upgrade): the handler answers with sim_ws_accept() or
     * refuses with sim_error() (NULL: upgrades of this path get 404). */
    sim_handler_fn ws;
};

/* Routes of one host kept in another file than its provider's (OpenAI:
 * text in sim_openai.c, audio in sim_openai_audio.c, Realtime in
 * sim_openai_realtime.c): the provider lists the table in more_routes. */
struct sim_route_table {
    const struct sim_route *routes;
    size_t n;
};

/* One simulated upstream host. */
struct sim_provider {
    const char *upstream; /* the "upstreams" key it speaks: "openai" */
    const struct sim_route *routes;
    size_t n_routes;
    /* More route tables of this host, searched after routes in order
     * (NULL-terminated; NULL: none). */
    const struct sim_route_table *const *more_routes;
    /* True when the request carries a key where the real provider wants one
     * (any non-empty value: the simulator checks that the proxy injected
     * one, not which). A WebSocket whose key may come in its first message
     * answers true here and checks in its handler. */
    bool (*authorized)(struct sim_request *r);
    /* Writes the provider's error reply for what (detail: a sentence for the
     * message, may be NULL) with sim_reply_json(). */
    void (*error)(struct sim_request *r, enum sim_error what, const char *detail);
    /* The header that carries the request id in every reply ("x-request-id",
     * "request-id"), and its value's prefix ("req_"). */
    const char *request_id_header;
    const char *request_id_prefix;
};

/* ---- the request ------------------------------------------------------- */

/* Borrowed until the request ends. */
const struct httpparse_request *sim_head(const struct sim_request *r);
/* The path the route matched (no query; a regional host's region removed). */
const char *sim_path(const struct sim_request *r);
/* The "{id}" segment of the route ("" when the route has none). */
const char *sim_param(const struct sim_request *r);
/* The region of a regional host's request ("" otherwise). */
const char *sim_region(const struct sim_request *r);
/* Value of header name (case-insensitive), NULL when absent; *len its
 * length. */
const char *sim_header(const struct sim_request *r, const char *name, size_t *len);
/* True when header name is present with a non-empty value; with scheme
 * ("Bearer"), when it is "<scheme> <non-empty>" (scheme without regard to
 * case). */
bool sim_has_key(const struct sim_request *r, const char *name, const char *scheme);
/* The body (NUL-terminated copy), and its JSON when it parses as a JSON
 * object (else NULL). Borrowed until the request ends. */
const char *sim_body(const struct sim_request *r, size_t *len);
json_t *sim_json(struct sim_request *r);
/* This upstream's tunables (simulate + its overrides). */
const struct config_sim_tunables *sim_tunables(const struct sim_request *r);
/* The request id of this reply (also sent in the provider's header). */
const char *sim_request_id(const struct sim_request *r);
/* A number from this upstream's seeded generator (ids, choices). */
uint64_t sim_rand(struct sim_request *r);
/* Module state for the request: freed with free_fn (may be NULL) when the
 * request ends, however it ends. */
void sim_set_state(struct sim_request *r, void *state, void (*free_fn)(void *));
void *sim_state(const struct sim_request *r);

/* ---- replies ----------------------------------------------------------- */

/* A whole reply. The provider's request-id header is added; extra headers
 * are borrowed for the call. A "reset" fault sends the head and half the
 * body, then cuts the connection. Ends the request. */
void sim_reply(struct sim_request *r, int status, const char *content_type, const char *body,
               size_t len, const struct http_kv *extra, size_t n_extra);
/* The same with a JSON body (takes ownership of body). */
void sim_reply_json(struct sim_request *r, int status, json_t *body, const struct http_kv *extra,
                    size_t n_extra);
/* A JSON reply sent when a stream of n generated tokens would have ended
 * (sim_pace_token_ms(tokens_per_s, n - 1) from now): a non-stream
 * completion. Takes ownership of body; extra is copied. */
void sim_reply_json_after_tokens(struct sim_request *r, size_t n, int status, json_t *body,
                                 const struct http_kv *extra, size_t n_extra);
/* The provider's error reply (its error()). Ends the request. */
void sim_error(struct sim_request *r, enum sim_error what, const char *detail);

/* A streamed reply (chunked). The request-id header is added. */
void sim_stream_begin(struct sim_request *r, int status, const char *content_type,
                      const struct http_kv *extra, size_t n_extra);
void sim_stream_write(struct sim_request *r, const char *data, size_t len);
/* One SSE event: "event: <name>\n" (when name is not NULL) then "data:
 * <json>\n\n". Takes ownership of data. */
void sim_sse(struct sim_request *r, const char *name, json_t *data);
/* Ends the stream (the last chunk) and the request. */
void sim_stream_end(struct sim_request *r);
/* Cuts the connection now, in the middle of the reply: the client sees a
 * truncated body. Ends the request. */
void sim_cut(struct sim_request *r);
/* True when this reply drew the "reset" fault: a module that writes its
 * own stream (audio chunks, socket messages) calls sim_cut() halfway. */
bool sim_reset_drawn(const struct sim_request *r);

/* Generated tokens on a stream that has begun: token(r, i) is called for
 * i = 0 .. n-1, token i due sim_pace_token_ms(tokens_per_s, i) after the
 * call (tokens due together come in one turn; the client's back-pressure
 * holds the next ones), then done(r), which writes the closing events;
 * the stream is then ended. A "reset" fault cuts the connection after
 * n / 2 tokens instead. */
struct sim_token_ops {
    void (*token)(struct sim_request *r, size_t i);
    void (*done)(struct sim_request *r);
};
void sim_stream_tokens(struct sim_request *r, size_t n, const struct sim_token_ops *ops);

/* Paced audio on a stream that has begun, as sim_stream_tokens() (the same
 * ops, back-pressure and reset cut after n / 2), but chunk i covers audio
 * [i * chunk_ms, (i + 1) * chunk_ms) and is due sim_pace_audio_ms(
 * audio_rtf, i * chunk_ms) after the call: at audio_rtf 1.0 the audio
 * arrives in real time, at 0 all at once. */
void sim_stream_audio(struct sim_request *r, size_t n, int64_t chunk_ms,
                      const struct sim_token_ops *ops);

/* Calls fn(r) after ms milliseconds on the upstream's loop (a module's own
 * pacing: audio chunks at sim_pace_audio_ms). One pending call per request;
 * a new one replaces it. */
void sim_after(struct sim_request *r, int64_t ms, sim_handler_fn fn);

/* ---- WebSocket upgrades (route.ws) -------------------------------------- */

/* What a module hears from its socket. Text and binary messages come
 * whole (at most SIM_WS_MESSAGE_MAX bytes; a larger one closes with
 * 1009); pings are answered by the core. on_close: the client closed or
 * went away (code 1006); the socket is freed after it returns. */
#define SIM_WS_MESSAGE_MAX (16u << 20)
struct sim_ws_ops {
    void (*on_message)(struct sim_ws *ws, bool text, const uint8_t *data, size_t len);
    void (*on_close)(struct sim_ws *ws, int code);
};
/* Answers the upgrade with 101 (subprotocol: the Sec-WebSocket-Protocol to
 * select, or NULL) and takes the connection from the HTTP server. The
 * request ends here; the socket lives on with arg until it closes. NULL
 * when the connection is gone or memory ran out (the request is ended and
 * on_close is never called: arg is still the caller's to free). */
struct sim_ws *sim_ws_accept(struct sim_request *r, const char *subprotocol,
                             const struct sim_ws_ops *ops, void *arg);
void *sim_ws_arg(const struct sim_ws *ws);
/* Calls fn(arg) after ms milliseconds on the upstream's loop (a socket's
 * own pacing: audio frames at sim_pace_audio_ms, an idle timeout;
 * sim_speaker.h builds on it). One
 * pending call per socket; a new one replaces it, fn NULL cancels it; none
 * comes once the socket is closing (sim_ws_close, sim_ws_drop) or after
 * on_close. */
void sim_ws_after(struct sim_ws *ws, int64_t ms, void (*fn)(void *arg), void *arg);
/* Sends one whole text or binary message. */
void sim_ws_send(struct sim_ws *ws, bool text, const void *data, size_t len);
/* Sends a close frame (code, reason may be NULL) and closes once it is
 * written; on_close is then called with code. */
void sim_ws_close(struct sim_ws *ws, int code, const char *reason);
/* Drops the connection without a close frame (an upstream that vanishes:
 * the proxy reports 1006); what was sent before is delivered first, as
 * from a server that dies after writing it. on_close is called with
 * 1006. */
void sim_ws_drop(struct sim_ws *ws);
/* This upstream's tunables (borrowed for the socket's life). */
const struct config_sim_tunables *sim_ws_tunables(const struct sim_ws *ws);
/* True when the upgrade drew the "reset" fault: the module cuts the socket
 * with sim_ws_drop() halfway through its first reply. */
bool sim_ws_reset_drawn(const struct sim_ws *ws);
/* A number from this upstream's seeded generator. */
uint64_t sim_ws_rand(struct sim_ws *ws);
/* True when the client reads slowly (more than the high watermark waits to
 * be written): the module holds its next sends, and fn(arg) is called once
 * the output has drained (not after on_close). */
bool sim_ws_blocked(struct sim_ws *ws, void (*fn)(void *arg), void *arg);

/* ---- generated text and pacing (pure) ---------------------------------- */

/* Token i of a generated reply: a word, with a leading space when i > 0.
 * The text of n tokens is the concatenation of tokens 0..n-1 and has
 * exactly n words. Static storage. */
const char *sim_word(size_t i);
/* The text of n tokens, NUL-terminated. Caller frees with free(); NULL when
 * out of memory. */
char *sim_text(size_t n);
/* Words (maximal runs of non-space bytes) in s[0..len): the simulator's
 * token count. */
int64_t sim_count_words(const char *s, size_t len);
/* Words of the text in a JSON value: a string; the strings of an array; the
 * "text" (or "content") members of its objects, recursively - what chat
 * messages, content parts and Responses input items hold. */
int64_t sim_count_json_words(const json_t *v);

/* When token i of a reply is due, in ms after the first: i * 1000 /
 * tokens_per_s (integer division); always 0 when tokens_per_s is 0. */
int64_t sim_pace_token_ms(int64_t tokens_per_s, size_t i);
/* Tokens due by elapsed ms after the first: the largest k such that
 * tokens 0..k-1 are due (at least 1, at most n); n when tokens_per_s is 0. */
size_t sim_pace_tokens_due(int64_t tokens_per_s, int64_t elapsed_ms, size_t n);
/* Wall-clock time to produce audio_ms of audio at the real-time factor
 * (millionths): audio_ms * rtf_ppm / 10^6, rounded down. */
int64_t sim_pace_audio_ms(int64_t rtf_ppm, int64_t audio_ms);
/* The fault of one reply for a uniform draw in [0, 10^6): 429 below
 * error_ppm[429], then 500, then reset; CONFIG_SIM_ERR_KINDS for none. */
enum config_sim_error sim_fault_for(const struct config_sim_tunables *t, uint64_t draw_ppm);

/* The seeded generator (splitmix64): deterministic for a seed, one state
 * per upstream. */
uint64_t sim_rng_next(uint64_t *state);
/* A uniform draw in [0, bound) (bound > 0) without modulo bias. */
uint64_t sim_rng_below(uint64_t *state, uint64_t bound);

#endif
