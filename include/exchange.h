/* exchange.h - what every data-plane exchange shares, whatever its
 * transport (internal to the data plane: dataplane.c, exchange.c,
 * exchange_http.c, exchange_ws.c).
 *
 * One pipeline, run on the request head before any body is read:
 *
 *   route -> endpoint -> credential -> authentication -> session -> boundary
 *         -> record identity
 *
 * (exchange_begin; a WebSocket whose key comes in its first message runs
 * the stages after the credential later, exchange_authenticated). The
 * transports part where the bytes start to flow: exchange_http.c relays a
 * request through upstream.h, exchange_ws.c a WebSocket session through
 * relay_ws. Both end in exchange_submit(), which hands the priced
 * record to the writer. Errors the proxy produces go out in the provider's
 * shape (exchange_refuse). */
#ifndef BYOK_EXCHANGE_H
#define BYOK_EXCHANGE_H

#include "common.h"
#include "config.h"
#include "ephemeral.h"
#include "http.h"
#include "metrics.h"
#include "resolve.h"
#include "route.h"
#include "upstream.h"
#include "fleet.h"
#include "live.h"
#include "usage.h"

#include <event2/dns.h>
#include <openssl/ssl.h>

struct fleet;
struct fleet_admission;
struct exchange_refusal;

#define DP_PIN_FRESH 1
#define DP_PIN_LOCAL 2

/* One per worker: what its exchanges use. */
struct dataplane {
    const struct config *cfg;
    struct upstream_pool *pool;
    struct resolver *resolver;
    struct event_base *base;
    struct evdns_base *dns;     /* upstream WebSocket host names */
    struct event *access_timer; /* live sessions' access re-checked (DESIGN §3.3) */
    SSL_CTX *tls_client;        /* upstream wss:// (borrowed) */
    struct fleet *fleet;        /* fleet mode: the worker's Redis client (borrowed), else NULL */
    /* Fleet mode, while the stages are re-run after Redis answered about a
     * session's pin: 0 normal, DP_PIN_FRESH Redis has none (decide and
     * publish), DP_PIN_LOCAL Redis is down (decide here, publish nothing). */
    int pin_mode;
    /* Fleet mode, while the stages are re-run after Redis gave an
     * ephemeral token's grant (taken once): the grant, else NULL. */
    struct ephemeral_grant *grant;
    /* Exchanges that own their client connection or outlive it: WebSocket
     * sessions, and HTTP exchanges reading a reply on after their client
     * left. Ended by dataplane_shutdown. */
    struct exchange *live;
    size_t n_ws;
    size_t n_detached;
};

enum exchange_transport {
    EXCHANGE_HTTP = 0,
    EXCHANGE_WS,
};

/* The stages' result, embedded first in each transport's exchange. */
struct exchange {
    struct dataplane *dp;
    enum exchange_transport transport;
    struct exchange *prev, *next; /* in dp->live while live */
    bool live;
    struct route rt; /* upstream_path points into the request head */
    /* The served endpoint, or NULL: a BYOK line to an endpoint the proxy
     * does not meter (a wallet line never gets this far without one). */
    const struct provider_endpoint *ep;
    struct resolve_decision decision;
    struct usage_record rec; /* identity fields; units and outcome at the end */
    int64_t start_mono;
    /* Rule 4's hold on the payer while a wallet line runs (0: none); its
     * first record releases it (exchange_take_hold), else exchange_release. */
    int64_t hold_micros;
    /* Fleet mode: the hold is Redis's, named by hold_id (the record id);
     * admit_pending while its admission is asked (exchange_admit_async). */
    char hold_id[ID_MAX];
    bool admit_pending;
    /* Fleet mode, a session without a local pin: pin_fetch asks Redis for
     * it first; pin_publish (text malloc'd in pin_text) writes a new
     * session's pin before anything else (dataplane.c re-runs the stages
     * with the pin that stands). */
    bool pin_fetch, pin_publish;
    char *pin_text;
    /* Fleet mode, an ephemeral token in the key's place: token_take asks
     * Redis for its grant (named token_name) first. */
    bool token_take;
    char token_name[EPHEMERAL_NAME_MAX];
    /* Fleet mode: a live-session lease (live_pending while asked). */
    bool live_pending, lease_held;
    char lease_id[ID_MAX];
    struct event *lease_timer;         /* renews the lease while it runs */
    struct rasync_req *step_req;       /* the live-session lease being asked */
    struct fleet_admission *admit_req; /* the admission being answered */
    struct http_conn *pending_conn;    /* the request waiting for it */
    void (*resume)(struct exchange *); /* what goes on after it (NULL: the head) */
    /* How a refusal then answers (NULL: exchange_refuse, the request's
     * context going with it). */
    void (*refused)(struct exchange *, const struct exchange_refusal *);
    char parent_id[ID_MAX];                /* the tenant's parent when authenticated ("" none) */
    int64_t live_limit, parent_live_limit; /* their limits.live_sessions (0 none) */
    struct live_slot live_slot;            /* counted as a live session (exchange_go_live) */
    /* WebSocket only. */
    bool client_first;                /* the key comes in the first message */
    char *first_message;              /* an ephemeral token's session config, sent upstream first */
    char model[MODEL_MAX];            /* an ephemeral token's model ("" none) */
    char session_header[SESSION_MAX]; /* the X-Session-Id as sent ("" none) */
};

/* A refusal, in the provider's error shape. */
struct exchange_refusal {
    int status;
    const char *type; /* the type vocabulary of provider.h: "invalid_request_error" */
    const char *code; /* "endpoint_not_allowed" */
    char message[512];
    enum metrics_refusal why;
    bool wallet;   /* add x-billed-to: wallet */
    bool no_retry; /* add x-should-retry: false */
    bool retry;    /* add x-should-retry: true, retry-after: 1 */
};

/* Runs the stages on req's head. 0: ex is filled (ex->client_first when
 * the key is still to come); -1: *why says how to refuse. Nothing is
 * allocated on failure. */
MUST_CHECK int exchange_begin(struct dataplane *dp, const struct http_request *req,
                              struct exchange *ex, struct exchange_refusal *why);

/* The stages after authentication (session, boundary, record identity),
 * for an identity proved later (a WebSocket's first message). */
MUST_CHECK int exchange_authenticated(struct exchange *ex, const struct resolve_identity *id,
                                      struct exchange_refusal *why);

/* Rule 4 (DESIGN §3.4): a wallet line is admitted only while its payer's
 * available funds are > 0, and then holds balance.hold_micros of its line
 * until its record is written. BYOK lines pass without a hold. Runs last,
 * once every other stage passed (exchange_begin does; a first-message
 * socket calls it after exchange_authenticated). -1 with *why (402). */
MUST_CHECK int exchange_admit(struct exchange *ex, struct exchange_refusal *why);
/* The hold, handed to the record that releases it (r->hold_micros, and in
 * fleet mode r->hold_id); nothing after the first. */
void exchange_take_hold(struct exchange *ex, struct usage_record *r);
/* Fleet mode: the stages left decisions to Redis (admission with a hold,
 * a live-session lease). Asks them in order for the request on c; when the
 * last is answered the exchange goes on (ex->resume when set, else
 * http_head_continue) or is refused. 1: asked; 0: nothing to ask; -1 with
 * *why: refuse now. ex must not move meanwhile (it is the transport's). */
MUST_CHECK int exchange_decide_async(struct exchange *ex, struct http_conn *c,
                                     struct exchange_refusal *why);
/* DESIGN §6 limits.live_sessions: counts a WebSocket session or streaming
 * response against its tenant's limit and its agency owner's; -1 with *why
 * (429 tenant_limit, x-should-retry: true, retry-after) when one is
 * reached. Uncounted by exchange_release. */
MUST_CHECK int exchange_go_live(struct exchange *ex, struct exchange_refusal *why);

/* Fail-closed pricing (DESIGN §4a): -1 with *why when a wallet line's
 * model has no price. */
MUST_CHECK int exchange_check_price(const struct exchange *ex, const char *model,
                                    struct exchange_refusal *why);

/* Answers c with the refusal in p's error shape (p NULL: the default shape,
 * the registry's first provider) and counts it. */
void exchange_refuse(struct http_conn *c, const struct provider *p,
                     const struct exchange_refusal *why);

/* The cost of units of model p/model (0 when it has no price). */
int64_t exchange_cost(const struct dataplane *dp, const struct provider *p, const char *model,
                      const struct usage_units *u);
/* Hands r (priced) to the writer; counts it. */
void exchange_submit(struct usage_record *r);

/* Takes ex into / out of dp->live. */
void exchange_link(struct exchange *ex);
void exchange_unlink(struct exchange *ex);

/* Frees what exchange_begin kept (the decision's secrets, the first
 * message, a hold no record took). */
void exchange_release(struct exchange *ex);

/* The transports (exchange_http.c, exchange_ws.c). */
struct http_exchange;
struct ws_exchange;

/* HTTP: the head passed the stages; ex_http takes ownership of ex's
 * contents. Reads nothing: the body comes, then exchange_http_run. */
MUST_CHECK struct http_exchange *exchange_http_new(const struct exchange *ex);
void exchange_http_free(void *x); /* http_request.ctx_free */
/* The whole request is here: meter it, check the price, start upstream. */
void exchange_http_run(struct http_exchange *x, struct http_conn *c, struct http_request *req);
/* Server shutdown: an exchange reading on after its client left stops. */
void exchange_http_shutdown(struct exchange *ex);

MUST_CHECK struct ws_exchange *exchange_ws_new(const struct exchange *ex);
void exchange_ws_free(void *x);
void exchange_ws_run(struct ws_exchange *x, struct http_conn *c, struct http_request *req);
void exchange_ws_shutdown(struct exchange *ex);
/* DESIGN §3.3: when the store generation moved since the session's last
 * check, ends an open session whose key was revoked, whose tenant was
 * deleted or whose parent changed (close 1008). 1 when it ended it. */
int exchange_ws_check_access(struct exchange *ex);

#endif
