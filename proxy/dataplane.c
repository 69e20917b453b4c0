/* dataplane.c - the data plane's entry points on one worker.
 *
 *   head  --> exchange_begin: route, endpoint, credential, auth, session,
 *             boundary, record identity  --refused--> provider-shaped error
 *         |   (before any body is read or "100 Continue" is sent)
 *         v
 *   body read by http.c
 *         v
 *   request --> exchange_http_run (REST, SSE, chunked audio)
 *           --> exchange_ws_run   (WebSocket sessions)
 *           --> mint              (ephemeral tokens: answered here)
 */
#include "common.h"
#include "dataplane.h"
#include "crypto.h"
#include "ephemeral.h"
#include "exchange.h"
#include "fleet.h"
#include "session.h"

#include <event2/dns.h>
#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* DESIGN §3.3: access changes reach live sessions within a second. */
#define ACCESS_TICK_MS 250

static void access_tick(evutil_socket_t fd, short what, void *arg)
{
    struct dataplane *dp = arg;
    (void)fd;
    (void)what;
    struct exchange *ex = dp->live, *next;
    for (; ex != NULL; ex = next) {
        next = ex->next;
        if (ex->transport == EXCHANGE_WS)
            (void)exchange_ws_check_access(ex);
    }
}

struct dataplane *dataplane_new(const struct config *cfg, struct upstream_pool *pool,
                                struct resolver *resolver, struct event_base *base,
                                SSL_CTX *tls_client, struct fleet *fleet)
{
    struct dataplane *dp = calloc(1, sizeof(*dp));
    if (dp == NULL)
        return NULL;
    dp->cfg = cfg;
    dp->pool = pool;
    dp->resolver = resolver;
    dp->base = base;
    dp->tls_client = tls_client;
    dp->fleet = fleet;
    dp->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (dp->dns == NULL)
        dp->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    struct timeval tv = {0, ACCESS_TICK_MS * 1000};
    dp->access_timer = event_new(base, -1, EV_PERSIST, access_tick, dp);
    if (dp->dns == NULL || dp->access_timer == NULL || evtimer_add(dp->access_timer, &tv) == -1) {
        if (dp->access_timer != NULL)
            event_free(dp->access_timer);
        if (dp->dns != NULL)
            evdns_base_free(dp->dns, 0);
        free(dp);
        return NULL;
    }
    return dp;
}

void dataplane_free(struct dataplane *dp)
{
    if (dp == NULL)
        return;
    event_free(dp->access_timer);
    evdns_base_free(dp->dns, 0);
    free(dp);
}

size_t dataplane_live(const struct dataplane *dp)
{
    return dp->n_ws + dp->n_detached;
}

void dataplane_shutdown(struct dataplane *dp)
{
    struct exchange *ex = dp->live, *next;
    for (; ex != NULL; ex = next) {
        next = ex->next;
        if (ex->transport == EXCHANGE_WS)
            exchange_ws_shutdown(ex);
        else
            exchange_http_shutdown(ex);
    }
}

/* --- fleet mode: a session's pin from Redis ------------------------------ */

/* A head waiting on Redis (its session's pin, or its ephemeral token's
 * grant); the request's context meanwhile (freed with it when the client
 * leaves). */
struct head_stage {
    struct dataplane *dp;
    struct http_conn *c;
    struct http_request *req;
    struct rasync_req *q;
    const struct provider *provider; /* refusals' shape */
    char tenant_id[ID_MAX];
    char session_id[SESSION_MAX];
};

static void head_stage_free(void *arg)
{
    struct head_stage *ps = arg;
    rasync_cancel(ps->q);
    free(ps);
}

/* A head's wait on Redis, with what its answer needs from ex; ex is
 * released (the stages run again after the answer). NULL when out of
 * memory (answered 500). */
static struct head_stage *stage_new(struct dataplane *dp, struct http_conn *c,
                                    struct http_request *req, struct exchange *ex)
{
    struct head_stage *ps = calloc(1, sizeof(*ps));
    if (ps != NULL) {
        ps->dp = dp;
        ps->c = c;
        ps->req = req;
        ps->provider = ex->rt.provider;
        str_copy(ps->tenant_id, sizeof(ps->tenant_id), ex->rec.tenant_id);
        str_copy(ps->session_id, sizeof(ps->session_id), ex->session_header);
    }
    exchange_release(ex);
    if (ps == NULL)
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL, 0);
    return ps;
}

/* The stages again, now that the pin is known (mode 0: in the local table),
 * absent in Redis (DP_PIN_FRESH) or unknowable (DP_PIN_LOCAL). */
static void rerun(struct head_stage *ps, int mode)
{
    struct dataplane *dp = ps->dp;
    struct http_conn *c = ps->c;
    struct http_request *req = ps->req;
    req->ctx = NULL;
    req->ctx_free = NULL;
    ps->q = NULL;
    head_stage_free(ps);
    dp->pin_mode = mode;
    int rc = dataplane_head(c, req, dp);
    dp->pin_mode = 0;
    if (rc == 0)
        http_head_continue(c);
}

static void pin_answer(void *arg, enum fleet_status st, const char *text, size_t len)
{
    struct head_stage *ps = arg;
    struct session_pin pin;
    if (st == FLEET_OK && text != NULL && resolve_pin_decode(text, len, &pin) == 0) {
        session_replace(ps->tenant_id, ps->session_id, FLEET_PIN_CACHE_S, &pin);
        rerun(ps, 0);
    } else if (st == FLEET_ABSENT) {
        rerun(ps, DP_PIN_FRESH);
    } else {
        if (st == FLEET_OK)
            log_warn("fleet: the pin of a session of tenant %s is unreadable: decided anew",
                     ps->tenant_id);
        rerun(ps, DP_PIN_LOCAL);
    }
}

/* Asks Redis for ex's session pin (pin_fetch) or writes a new session's
 * (pin_publish), then re-runs the stages: 1 (asked), or the result of a
 * re-run done at once when Redis is down. */
static int pin_stage(struct dataplane *dp, struct http_conn *c, struct http_request *req,
                     struct exchange *ex)
{
    char *text = ex->pin_text;
    bool publish = ex->pin_publish;
    ex->pin_text = NULL;
    struct head_stage *ps = stage_new(dp, c, req, ex);
    if (ps == NULL) {
        free(text);
        return -1;
    }
    enum fleet_status st = publish ? fleet_pin_put(dp->fleet, ps->tenant_id, ps->session_id, text,
                                                   dp->cfg->session_ttl_s, pin_answer, ps, &ps->q)
                                   : fleet_pin_get(dp->fleet, ps->tenant_id, ps->session_id,
                                                   dp->cfg->session_ttl_s, pin_answer, ps, &ps->q);
    free(text);
    if (st == FLEET_PENDING) {
        req->ctx = ps;
        req->ctx_free = head_stage_free;
        return 1;
    }
    /* Redis is down: this instance decides alone, publishing nothing. */
    free(ps);
    dp->pin_mode = DP_PIN_LOCAL;
    int rc = dataplane_head(c, req, dp);
    dp->pin_mode = 0;
    return rc;
}

/* --- fleet mode: an ephemeral token's grant from Redis ------------------- */

/* The head of a token that cannot open a session: refused in its
 * provider's shape (401, or 503 while Redis cannot say). */
static void token_refuse(struct head_stage *ps, bool down)
{
    struct http_conn *c = ps->c;
    const struct provider *p = ps->provider;
    struct exchange_refusal why = {.status = 401,
                                   .type = "invalid_request_error",
                                   .code = "invalid_api_key",
                                   .why = METRICS_REFUSED_AUTH};
    if (down) {
        why = (struct exchange_refusal){.status = 503,
                                        .type = "server_error",
                                        .code = "store_unavailable",
                                        .why = METRICS_REFUSED_UNAVAILABLE,
                                        .retry = true};
        snprintf(why.message, sizeof(why.message),
                 "the proxy cannot reach its store to check the ephemeral token; retry shortly");
    } else {
        str_copy(why.message, sizeof(why.message), EPHEMERAL_UNKNOWN);
    }
    if (ps->req != NULL) {
        ps->req->ctx = NULL;
        ps->req->ctx_free = NULL;
    }
    ps->q = NULL;
    head_stage_free(ps);
    exchange_refuse(c, p, &why);
}

static void token_answer(void *arg, enum fleet_status st, const char *text, size_t len)
{
    struct head_stage *ps = arg;
    struct dataplane *dp = ps->dp;
    struct ephemeral_grant g;
    if (st != FLEET_OK || text == NULL || ephemeral_grant_decode(text, len, &g) == -1) {
        if (st == FLEET_OK)
            log_warn("fleet: an ephemeral token's grant is unreadable: refused");
        token_refuse(ps, st == FLEET_DOWN);
        return;
    }
    dp->grant = &g; /* ephemeral_session takes it */
    rerun(ps, 0);
    dp->grant = NULL;
    ephemeral_grant_free(&g);
}

/* Takes ex's token's grant from Redis (once, fleet-wide), then re-runs the
 * stages with it: 1 (asked), or -1 (refused: Redis is down). */
static int token_stage(struct dataplane *dp, struct http_conn *c, struct http_request *req,
                       struct exchange *ex)
{
    char name[EPHEMERAL_NAME_MAX];
    memcpy(name, ex->token_name, sizeof(name));
    struct head_stage *ps = stage_new(dp, c, req, ex);
    if (ps == NULL)
        return -1;
    enum fleet_status st = fleet_value_take(dp->fleet, name, token_answer, ps, &ps->q);
    if (st == FLEET_PENDING) {
        req->ctx = ps;
        req->ctx_free = head_stage_free;
        return 1;
    }
    ps->req = NULL;
    token_refuse(ps, true);
    return -1;
}

int dataplane_head(struct http_conn *c, struct http_request *req, void *arg)
{
    struct dataplane *dp = arg;
    struct exchange ex;
    struct exchange_refusal why;
    if (exchange_begin(dp, req, &ex, &why) == -1) {
        exchange_refuse(c, ex.rt.provider, &why);
        return -1;
    }
    if (ex.pin_fetch || ex.pin_publish)
        return pin_stage(dp, c, req, &ex);
    if (ex.token_take)
        return token_stage(dp, c, req, &ex);
    void *x;
    if (ex.transport == EXCHANGE_WS) {
        x = exchange_ws_new(&ex);
        req->ctx_free = exchange_ws_free;
    } else {
        x = exchange_http_new(&ex);
        req->ctx_free = exchange_http_free;
    }
    if (x == NULL) {
        exchange_release(&ex);
        why = (struct exchange_refusal){.status = 500,
                                        .type = "server_error",
                                        .code = "out_of_memory",
                                        .why = METRICS_REFUSED_UNAVAILABLE};
        snprintf(why.message, sizeof(why.message), "out of memory");
        exchange_refuse(c, ex.rt.provider, &why);
        return -1;
    }
    req->ctx = x; /* owns what ex held now */
    if (ex.admit_pending && !ex.live_pending && ex.transport != EXCHANGE_WS &&
        http_body_buffered(c))
        /* Fleet mode, a request whose body is here already (the usual small
         * one): the admission waits for the body, where a streamed
         * request's lease is asked with it in one step (exchange_http). */
        return 0;
    if (ex.admit_pending || ex.live_pending) {
        /* Fleet mode: Redis decides; the head waits (http.h, on_head 1). */
        struct exchange *held = x; /* each transport's exchange starts with it */
        int rc = exchange_decide_async(held, c, &why);
        if (rc == -1) {
            exchange_refuse(c, ex.rt.provider, &why);
            return -1;
        }
        return rc;
    }
    return 0;
}

/* --- ephemeral tokens ---------------------------------------------------- */

static void mint_reply(struct http_conn *c, json_t *reply, bool byok)
{
    metrics_inc(METRICS_TOKENS_MINTED);
    metrics_inc(METRICS_REQUESTS_TOTAL);
    struct http_kv extra[] = {{"x-billed-to", byok ? "byok" : "wallet"},
                              {"cache-control", "no-store"}};
    http_respond_json(c, reply != NULL ? 200 : 500, reply, extra, ARRAY_SIZE(extra));
}

/* Fleet mode: a minted token's reply, waiting for Redis to hold its grant. */
struct mint_stage {
    struct http_conn *c;
    struct rasync_req *q;
    const struct provider *provider;
    json_t *reply;
    bool byok;
};

static void mint_stage_free(struct mint_stage *ms)
{
    rasync_cancel(ms->q);
    json_decref(ms->reply);
    free(ms);
}

static void mint_refuse(struct http_conn *c, const struct provider *p)
{
    struct exchange_refusal why = {.status = 503,
                                   .type = "server_error",
                                   .code = "store_unavailable",
                                   .why = METRICS_REFUSED_UNAVAILABLE,
                                   .retry = true};
    snprintf(why.message, sizeof(why.message),
             "the proxy cannot reach its store to keep the ephemeral token; retry shortly");
    exchange_refuse(c, p, &why);
}

static void mint_stored(void *arg, enum fleet_status st, const char *text, size_t len)
{
    struct mint_stage *ms = arg;
    (void)text;
    (void)len;
    ms->q = NULL;
    if (st == FLEET_OK) {
        json_t *reply = ms->reply;
        ms->reply = NULL;
        mint_reply(ms->c, reply, ms->byok);
    } else {
        /* FLEET_ABSENT: the name is taken (256 random bits: not seen). */
        mint_refuse(ms->c, ms->provider);
    }
    mint_stage_free(ms);
}

static void mint_abort(struct http_conn *c, void *arg)
{
    (void)c;
    mint_stage_free(arg);
}

/* Fleet mode: g's grant goes to Redis under its token's name, single use,
 * expiring with it; the reply waits for Redis (g is freed here). */
static void mint_fleet(struct exchange *ex, struct http_conn *c, struct ephemeral_grant *g,
                       const char *body, size_t len)
{
    const struct provider *p = ex->rt.provider;
    char token[EPHEMERAL_TOKEN_MAX], name[EPHEMERAL_NAME_MAX];
    char *text = NULL;
    struct mint_stage *ms = NULL;
    enum fleet_status st = FLEET_DOWN;
    if (ephemeral_token_new(token) == -1 ||
        ephemeral_token_name(token, strlen(token), name) == -1 ||
        (text = ephemeral_grant_encode(g)) == NULL || (ms = calloc(1, sizeof(*ms))) == NULL) {
        ephemeral_grant_free(g);
        free(text);
        crypto_wipe(token, sizeof(token));
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL, 0);
        return;
    }
    ms->c = c;
    ms->provider = p;
    ms->byok = ex->decision.byok;
    ms->reply = p->mint->reply(ex->rt.upstream_path, ex->rt.upstream_path_len, body, len, token,
                               g->expires_at_ms / 1000, g->model);
    crypto_wipe(token, sizeof(token));
    if (ms->reply != NULL)
        st = fleet_value_put(ex->dp->fleet, name, text, g->expires_at_ms - now_ms(), mint_stored,
                             ms, &ms->q);
    crypto_wipe(text, strlen(text));
    free(text);
    ephemeral_grant_free(g);
    if (st == FLEET_PENDING) {
        http_conn_set_callbacks(c, mint_abort, NULL, ms);
        return;
    }
    bool no_reply = ms->reply == NULL;
    mint_stage_free(ms);
    if (no_reply)
        mint_reply(c, NULL, false);
    else
        mint_refuse(c, p);
}

/* POST of a PROVIDER_EP_MINT endpoint: a proxy-issued ephemeral token
 * bound to the tenant, its session's decision and the posted session
 * config. Nothing goes upstream; no usage record (nothing was used). */
static void mint(struct exchange *ex, struct http_conn *c, struct http_request *req)
{
    const struct provider *p = ex->rt.provider;
    const struct httpparse_request *h = &req->head;
    struct exchange_refusal why = {.type = "invalid_request_error"};
    struct ephemeral_grant g;
    char token[EPHEMERAL_TOKEN_MAX], err[256];
    int ttl = 60;
    memset(&g, 0, sizeof(g));
    size_t len = req->body != NULL ? evbuffer_get_length(req->body) : 0;
    const char *body = len > 0 ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (p->mint == NULL ||
        p->mint->parse(ex->rt.upstream_path, ex->rt.upstream_path_len, body, len, g.model,
                       &g.first_message, &ttl, err, sizeof(err)) == -1) {
        why.status = 400;
        why.code = "invalid_request";
        why.why = METRICS_REFUSED_REQUEST;
        str_copy(why.message, sizeof(why.message), p->mint ? err : "not supported");
        goto refuse;
    }
    if (exchange_check_price(ex, g.model, &why) == -1)
        goto refuse;
    /* The session's decision, as its first request would take it. */
    struct resolve_identity id;
    struct resolve_decision d;
    enum resolve_status st = resolve_key_identity(ex->dp->resolver, ex->rec.key_id, &id);
    if (st == RESOLVE_OK)
        st = resolve_session_pin(ex->dp->resolver, &id, p,
                                 ex->session_header[0] ? ex->session_header : NULL, &d, &g.pin);
    if (st != RESOLVE_OK) {
        why.status = 503;
        why.type = "server_error";
        why.code = "store_unavailable";
        why.why = METRICS_REFUSED_UNAVAILABLE;
        snprintf(why.message, sizeof(why.message), "the session could not be resolved; retry");
        goto refuse;
    }
    resolve_done(&d);
    g.provider = p;
    str_copy(g.tenant_id, sizeof(g.tenant_id), ex->rec.tenant_id);
    str_copy(g.key_id, sizeof(g.key_id), ex->rec.key_id);
    str_copy(g.session_id, sizeof(g.session_id), ex->session_header);
    int64_t now = now_ms();
    g.expires_at_ms = now + (int64_t)ttl * 1000;
    if (ex->dp->fleet != NULL) {
        mint_fleet(ex, c, &g, body, len);
        return;
    }
    if (ephemeral_put(&g, token) == -1) {
        why.status = 503;
        why.type = "server_error";
        why.code = "tokens_exhausted";
        why.why = METRICS_REFUSED_LIMITS;
        snprintf(why.message, sizeof(why.message),
                 "the proxy holds too many unused ephemeral tokens; retry shortly");
        goto refuse;
    }
    json_t *reply = p->mint->reply(ex->rt.upstream_path, ex->rt.upstream_path_len, body, len, token,
                                   (now + (int64_t)ttl * 1000) / 1000, g.model);
    crypto_wipe(token, sizeof(token));
    (void)h;
    mint_reply(c, reply, ex->decision.byok);
    return;
refuse:
    ephemeral_grant_free(&g);
    exchange_refuse(c, p, &why);
}

void dataplane_handle(struct http_conn *c, struct http_request *req, void *arg)
{
    (void)arg;
    void *x = req->ctx;
    req->ctx = NULL; /* ours now */
    if (x == NULL) {
        http_respond(c, 500, "text/plain", "no exchange\n", 12, NULL, 0);
        return;
    }
    struct exchange *ex = x; /* each transport's exchange starts with it */
    if (ex->transport == EXCHANGE_WS) {
        exchange_ws_run(x, c, req);
        return;
    }
    if (ex->ep != NULL && (ex->ep->flags & PROVIDER_EP_MINT)) {
        mint(ex, c, req);
        exchange_http_free(x);
        return;
    }
    exchange_http_run(x, c, req);
}
