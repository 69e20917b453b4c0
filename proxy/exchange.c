/* exchange.c - the stages every data-plane exchange goes through on its
 * request head, the pricing check, refusals in the provider's shape, and
 * the record's end (see exchange.h). */
#include "common.h"
#include "exchange.h"
#include "crypto.h"
#include "ephemeral.h"
#include "ledger.h"
#include "pricing.h"
#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int refuse(struct exchange_refusal *why, int status, const char *type, const char *code,
                  enum metrics_refusal reason, const char *fmt, ...) PRINTF_LIKE(6, 7);

static int refuse(struct exchange_refusal *why, int status, const char *type, const char *code,
                  enum metrics_refusal reason, const char *fmt, ...)
{
    memset(why, 0, sizeof(*why));
    why->status = status;
    why->type = type;
    why->code = code;
    why->why = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof(why->message), fmt, ap);
    va_end(ap);
    return -1;
}

void exchange_refuse(struct http_conn *c, const struct provider *p,
                     const struct exchange_refusal *why)
{
    struct http_kv extra[4];
    size_t n = 0;
    if (why->wallet)
        extra[n++] = (struct http_kv){"x-billed-to", "wallet"};
    if (why->no_retry)
        extra[n++] = (struct http_kv){"x-should-retry", "false"};
    if (why->retry) {
        extra[n++] = (struct http_kv){"x-should-retry", "true"};
        extra[n++] = (struct http_kv){"retry-after", "1"};
    }
    if (p == NULL)
        p = provider_at(0);
    metrics_refused(p, why->why);
    metrics_inc(METRICS_REQUESTS_TOTAL);
    if (why->status < 500)
        metrics_inc(METRICS_REQUESTS_REJECTED);
    if (why->why == METRICS_REFUSED_AUTH)
        metrics_inc(METRICS_AUTH_FAILURES);
    http_respond_json(c, why->status,
                      route_error_body(p, why->status, why->type, why->code, why->message), extra,
                      n);
}

static bool session_id_ok(const char *v, size_t n)
{
    if (n == 0 || n >= SESSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return false;
    return true;
}

/* "x-api-key" as people write it: "X-Api-Key". */
static void canonical(const char *name, char *out, size_t size)
{
    size_t i = 0;
    bool up = true;
    for (; name[i] != '\0' && i + 1 < size; i++) {
        char c = name[i];
        out[i] = up && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        up = c == '-';
    }
    out[i] = '\0';
}

/* Where the provider takes its key, for a 401's message (the socket-only
 * positions only for a socket). */
static void key_hint(const struct provider *p, bool ws, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < p->n_creds && n < size; i++) {
        const struct provider_cred *c = &p->creds[i];
        const char *sep = n == 0 ? "" : ", ";
        char name[64];
        canonical(c->name, name, sizeof(name));
        switch (c->kind) {
        case PROVIDER_CRED_HEADER:
            n += (size_t)snprintf(out + n, size - n, "%s%s: <key>", sep, name);
            break;
        case PROVIDER_CRED_SCHEME:
            n += (size_t)snprintf(out + n, size - n, "%s%s: %s <key>", sep, name, c->scheme);
            break;
        case PROVIDER_CRED_QUERY:
            n += (size_t)snprintf(out + n, size - n, "%s?%s=<key>", sep, c->name);
            break;
        case PROVIDER_CRED_SUBPROTOCOL:
            if (ws)
                n += (size_t)snprintf(out + n, size - n, "%ssubprotocol %s<key>", sep, c->name);
            break;
        case PROVIDER_CRED_SUBPROTOCOL_PAIR:
            if (ws)
                n += (size_t)snprintf(out + n, size - n, "%ssubprotocols \"%s, <key>\"", sep,
                                      c->name);
            break;
        case PROVIDER_CRED_FIRST_MESSAGE:
            if (ws)
                n += (size_t)snprintf(out + n, size - n, "%s\"%s\" in the first message", sep,
                                      c->name);
            break;
        }
    }
}

static int refuse_status(struct exchange_refusal *why, enum resolve_status st)
{
    switch (st) {
    case RESOLVE_UNAUTHORIZED:
        return refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
                      "the tenant of this proxy key no longer exists, or the key was revoked");
    case RESOLVE_NO_FUNDS:
        refuse(why, 402, "insufficient_quota", "insufficient_balance", METRICS_REFUSED_BALANCE,
               "The account's plan credits and wallet are used up. Top up the wallet or connect "
               "your own provider key (BYOK).");
        why->wallet = why->no_retry = true;
        return -1;
    case RESOLVE_NO_PLATFORM_KEY:
        refuse(why, 502, "server_error", "no_platform_key", METRICS_REFUSED_UNAVAILABLE,
               "the proxy has no platform key for this provider (platform_keys in the config)");
        why->wallet = true;
        return -1;
    case RESOLVE_STORE_ERROR:
    case RESOLVE_OK:
        break;
    }
    return refuse(why, 503, "server_error", "store_unavailable", METRICS_REFUSED_UNAVAILABLE,
                  "the proxy cannot reach its store right now; retry shortly");
}

/* DESIGN §4a: a wallet line reaches only the served endpoints. */
static int boundary(struct exchange *ex, const struct httpparse_request *h,
                    struct exchange_refusal *why)
{
    const struct provider *p = ex->rt.provider;
    char safe[128];
    if (ex->decision.byok)
        return 0;
    if (ex->ep == NULL)
        return refuse(why, 403, "invalid_request_error", "endpoint_not_allowed",
                      METRICS_REFUSED_ENDPOINT,
                      "%.*s %s is not served with the platform's %s key: only the endpoints the "
                      "proxy meters are (see the proxy's README); connect your own key (BYOK) to "
                      "use it",
                      (int)MIN(h->method_len, 16), h->method,
                      log_safe(h->path, h->path_len, safe, sizeof(safe)), p->display);
    const char *param = NULL;
    if (route_wallet_refused_query(ex->ep, h, &param))
        return refuse(
            why, 403, "invalid_request_error", "endpoint_not_allowed", METRICS_REFUSED_ENDPOINT,
            "the query parameter %s is not served with the platform's %s key", param, p->display);
    /* The model priced must be the model served: one the provider might
     * read differently from the meter is refused. */
    int models = route_model_query_count(ex->ep, h);
    if (models < 0)
        return refuse(why, 400, "invalid_request_error", "invalid_model_parameter",
                      METRICS_REFUSED_REQUEST,
                      "the query parameter %s is not valid percent-encoding or is longer than %d "
                      "bytes",
                      ex->ep->model_query, MODEL_MAX - 1);
    if (models > 1)
        return refuse(
            why, 400, "invalid_request_error", "invalid_model_parameter", METRICS_REFUSED_REQUEST,
            "the query names %s more than once; name the model once", ex->ep->model_query);
    return 0;
}

/* The record's identity fields, once who pays is known. */
static int identity(struct exchange *ex, const struct resolve_identity *id,
                    struct exchange_refusal *why)
{
    struct usage_record *r = &ex->rec;
    const struct resolve_decision *d = &ex->decision;
    if (crypto_new_ulid("", r->id, sizeof(r->id)) == -1)
        return refuse(why, 500, "server_error", "internal_error", METRICS_REFUSED_UNAVAILABLE,
                      "cannot create a request id");
    str_copy(r->tenant_id, sizeof(r->tenant_id), id->tenant.id);
    str_copy(ex->parent_id, sizeof(ex->parent_id), id->tenant.parent_id);
    ex->live_limit = id->tenant.live_sessions;
    ex->parent_live_limit = id->has_parent ? id->parent.live_sessions : 0;
    str_copy(r->payer_id, sizeof(r->payer_id), d->payer_id);
    str_copy(r->key_id, sizeof(r->key_id), id->key_id);
    r->billed_byok = d->byok;
    str_copy(r->connection_id, sizeof(r->connection_id), d->connection_id);
    str_copy(r->fallback_reason, sizeof(r->fallback_reason), d->fallback_reason);
    /* A socket without X-Session-Id is a session of its own: its records
     * share a proxy-made id. */
    if (ex->transport == EXCHANGE_WS && r->session_id[0] == '\0')
        snprintf(r->session_id, sizeof(r->session_id), "ws_%s", r->id);
    return 0;
}

int exchange_authenticated(struct exchange *ex, const struct resolve_identity *id,
                           struct exchange_refusal *why)
{
    const struct provider *p = ex->rt.provider;
    struct dataplane *dp = ex->dp;
    const char *session = ex->session_header[0] != '\0' ? ex->session_header : NULL;
    struct session_pin pin;
    if (dp->fleet != NULL && session != NULL && dp->pin_mode == 0 &&
        !session_get(id->tenant.id, session, FLEET_PIN_CACHE_S, &pin)) {
        /* Fleet mode: the session's pin may be another instance's. */
        ex->pin_fetch = true;
        str_copy(ex->rec.tenant_id, sizeof(ex->rec.tenant_id), id->tenant.id);
        return 0;
    }
    enum resolve_status st = resolve_session_pin(dp->resolver, id, p, session, &ex->decision, &pin);
    if (st != RESOLVE_OK)
        return refuse_status(why, st);
    if (dp->fleet != NULL && session != NULL && dp->pin_mode == DP_PIN_FRESH &&
        ex->decision.new_session) {
        /* A new session: its pin goes to Redis first, and the one that
         * stands there (another instance may have been first) is used. */
        ex->pin_text = resolve_pin_encode(&pin);
        if (ex->pin_text != NULL) {
            ex->pin_publish = true;
            str_copy(ex->rec.tenant_id, sizeof(ex->rec.tenant_id), id->tenant.id);
            return 0;
        }
    }
    ex->client_first = false;
    return identity(ex, id, why);
}

/* An ephemeral token in the key's place: the session it was minted for. */
static int ephemeral_session(struct exchange *ex, const char *token, size_t len,
                             struct exchange_refusal *why)
{
    struct ephemeral_grant g;
    struct resolve_identity id;
    const struct provider *p = ex->rt.provider;
    struct dataplane *dp = ex->dp;
    if (ex->transport != EXCHANGE_WS || ex->ep == NULL)
        return refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
                      "an ephemeral token only opens the WebSocket session it was minted for");
    if (dp->fleet != NULL && dp->grant == NULL) {
        /* Fleet mode: the grant is in Redis (minted on any instance). */
        if (ephemeral_token_name(token, len, ex->token_name) == -1)
            return refuse(why, 401, "invalid_request_error", "invalid_api_key",
                          METRICS_REFUSED_AUTH, "%s", EPHEMERAL_UNKNOWN);
        ex->token_take = true;
        return 0;
    }
    if (dp->grant != NULL) {
        g = *dp->grant; /* taken from Redis: ours now */
        dp->grant->first_message = NULL;
    } else if (ephemeral_take(token, len, &g) == -1) {
        return refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
                      "%s", EPHEMERAL_UNKNOWN);
    }
    int rc = -1;
    if (g.expires_at_ms <= now_ms()) {
        refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH, "%s",
               EPHEMERAL_UNKNOWN);
        goto done;
    }
    if (g.provider != p) {
        refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
               "the ephemeral token was minted for another provider");
        goto done;
    }
    enum resolve_status st = resolve_key_identity(ex->dp->resolver, g.key_id, &id);
    if (st == RESOLVE_OK && strcmp(id.tenant.id, g.tenant_id) != 0)
        st = RESOLVE_UNAUTHORIZED;
    if (st == RESOLVE_OK)
        st = resolve_pinned(ex->dp->resolver, &g.pin, p, &ex->decision);
    if (st != RESOLVE_OK) {
        refuse_status(why, st);
        goto done;
    }
    str_copy(ex->rec.session_id, sizeof(ex->rec.session_id), g.session_id);
    str_copy(ex->model, sizeof(ex->model), g.model);
    ex->first_message = g.first_message;
    g.first_message = NULL;
    rc = identity(ex, &id, why);
done:
    ephemeral_grant_free(&g);
    return rc;
}

int exchange_begin(struct dataplane *dp, const struct http_request *req, struct exchange *ex,
                   struct exchange_refusal *why)
{
    const struct httpparse_request *h = &req->head;
    char safe[96], hint[256];
    memset(ex, 0, sizeof(*ex));
    ex->dp = dp;
    ex->transport = h->upgrade_websocket ? EXCHANGE_WS : EXCHANGE_HTTP;
    ex->start_mono = req->start_mono;
    struct usage_record *r = &ex->rec;
    r->ts_ms = req->start_ms;
    r->ttfb_ms = -1;

    if (route_match(h->path, h->path_len, &ex->rt) == -1)
        return refuse(why, 404, "invalid_request_error", "unknown_route", METRICS_REFUSED_REQUEST,
                      "unknown route %s: the proxy serves %s",
                      log_safe(h->path, h->path_len, safe, sizeof(safe)), route_prefix_list());
    const struct provider *p = ex->rt.provider;
    r->provider = p;
    /* A simulated upstream: its records say so, and under simulate.charge
     * false its wallet lines are priced but neither held nor charged. */
    r->simulated = config_upstream_simulated(dp->cfg, p, ex->rt.host);
    r->no_charge = r->simulated && !config_simulated_charges(dp->cfg);
    if (route_path_unsafe(h->path, h->path_len))
        return refuse(why, 400, "invalid_request_error", "invalid_path", METRICS_REFUSED_REQUEST,
                      "the path has '.' or '..' segments or a backslash; send a normalised path");
    /* TRACE would echo the injected key back; CONNECT makes a tunnel. No
     * line, BYOK or not, forwards them. */
    if ((h->method_len == 5 && memcmp(h->method, "TRACE", 5) == 0) ||
        (h->method_len == 7 && memcmp(h->method, "CONNECT", 7) == 0))
        return refuse(why, 403, "invalid_request_error", "endpoint_not_allowed",
                      METRICS_REFUSED_ENDPOINT, "%.*s is never forwarded by this proxy",
                      (int)h->method_len, h->method);
    ex->ep = route_endpoint(&ex->rt, h->method, h->method_len, ex->transport == EXCHANGE_WS);

    const struct httpparse_header *sh = httpparse_find(h, "x-session-id");
    if (sh != NULL && !session_id_ok(sh->value, sh->value_len))
        return refuse(why, 400, "invalid_request_error", "invalid_session_id",
                      METRICS_REFUSED_REQUEST,
                      "X-Session-Id must be 1-127 visible ASCII characters");
    if (sh != NULL) {
        memcpy(ex->session_header, sh->value, sh->value_len);
        ex->session_header[sh->value_len] = '\0';
        memcpy(r->session_id, ex->session_header, sh->value_len + 1);
    }
    str_copy(r->line, sizeof(r->line), ex->ep != NULL ? ex->ep->line : p->hosts[ex->rt.host].line);
    size_t path_len =
        strnlen(ex->rt.upstream_path, MIN(ex->rt.upstream_path_len, sizeof(r->endpoint) - 1));
    memcpy(r->endpoint, ex->rt.upstream_path, path_len);
    r->endpoint[path_len] = '\0';

    struct route_key key;
    route_credential(p, h, ex->transport == EXCHANGE_WS, &key);
    if (key.key == NULL) {
        /* Browsers may put the key in the first message (a provider that
         * declares such a position): the session authenticates on it
         * (served endpoints only). */
        if (ex->transport == EXCHANGE_WS && ex->ep != NULL &&
            provider_has_cred(p, PROVIDER_CRED_FIRST_MESSAGE)) {
            ex->client_first = true;
            return 0;
        }
        key_hint(p, ex->transport == EXCHANGE_WS, hint, sizeof(hint));
        return refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
                      "No proxy key provided. Send it where the %s SDK sends its key (%s).",
                      p->display, hint);
    }
    if (ephemeral_is_token(key.key, key.len)) {
        if (ephemeral_session(ex, key.key, key.len, why) == -1)
            return -1;
        if (ex->token_take)
            return 0; /* dataplane.c asks Redis, then runs the stages again */
        if (boundary(ex, h, why) == -1 || exchange_admit(ex, why) == -1 ||
            exchange_go_live(ex, why) == -1) {
            exchange_release(ex);
            return -1;
        }
        return 0;
    }
    struct resolve_identity id;
    enum resolve_status st = resolve_auth(dp->resolver, key.key, key.len, &id);
    if (st == RESOLVE_STORE_ERROR)
        return refuse_status(why, st);
    if (st != RESOLVE_OK) {
        key_hint(p, ex->transport == EXCHANGE_WS, hint, sizeof(hint));
        return refuse(why, 401, "invalid_request_error", "invalid_api_key", METRICS_REFUSED_AUTH,
                      "Incorrect proxy key provided. Use a key created with POST "
                      "/admin/tenants/{id}/keys, sent where the %s SDK sends its key (%s).",
                      p->display, hint);
    }
    if (exchange_authenticated(ex, &id, why) == -1)
        return -1;
    if (ex->pin_fetch || ex->pin_publish)
        return 0; /* dataplane.c asks Redis, then runs the stages again */
    if (boundary(ex, h, why) == -1 || exchange_admit(ex, why) == -1 ||
        (ex->transport == EXCHANGE_WS && exchange_go_live(ex, why) == -1)) {
        exchange_release(ex);
        return -1;
    }
    /* A BYOK line to an endpoint the proxy does not meter: recorded with
     * zero units and metered: false. */
    r->unmetered = ex->ep == NULL;
    return 0;
}

int exchange_admit(struct exchange *ex, struct exchange_refusal *why)
{
    /* BYOK and charge-exempt lines (charge.h) cost the payer nothing. */
    if (ex->decision.byok || ex->rec.no_charge)
        return 0;
    struct dataplane *dp = ex->dp;
    int64_t hold = config_hold_micros(dp->cfg, ex->rec.line);
    if (dp->fleet != NULL) {
        /* Redis answers (exchange_admit_async), after the head stages. */
        ex->admit_pending = true;
        ex->hold_micros = hold;
        str_copy(ex->hold_id, sizeof(ex->hold_id), ex->rec.id);
        return 0;
    }
    switch (ledger_admit(resolve_store(dp->resolver), ex->decision.payer_id, hold)) {
    case LEDGER_OK:
        ex->hold_micros = hold;
        return 0;
    case LEDGER_NO_FUNDS:
        return refuse_status(why, RESOLVE_NO_FUNDS);
    case LEDGER_NO_PAYER:
        return refuse_status(why, RESOLVE_UNAUTHORIZED);
    case LEDGER_STORE_ERROR:
        break;
    }
    return refuse_status(why, RESOLVE_STORE_ERROR);
}

/* 429 at the tenant's live_sessions, or its agency owner's (owner). */
static int refuse_live_limit(const struct exchange *ex, bool owner, struct exchange_refusal *why)
{
    refuse(why, 429, "requests", "tenant_limit", METRICS_REFUSED_LIMITS,
           "%s has %lld WebSocket sessions and streaming responses open, its limit "
           "(limits.live_sessions): retry when one ends",
           owner ? "The agency owner of this tenant" : "This tenant",
           (long long)(owner ? ex->parent_live_limit : ex->live_limit));
    why->retry = true;
    return -1;
}

int exchange_go_live(struct exchange *ex, struct exchange_refusal *why)
{
    if (ex->dp->fleet != NULL) {
        /* Counted fleet-wide: a lease from Redis (exchange_decide_async). */
        if (!ex->lease_held)
            ex->live_pending = true;
        return 0;
    }
    const char *which = NULL;
    if (ex->live_slot.held || live_acquire(ex->rec.tenant_id, ex->live_limit, ex->parent_id,
                                           ex->parent_live_limit, &ex->live_slot, &which) == 0)
        return 0;
    return refuse_live_limit(ex, strcmp(which, ex->rec.tenant_id) != 0, why);
}

void exchange_take_hold(struct exchange *ex, struct usage_record *r)
{
    /* A fleet hold is Redis's, released by the record's script (hold_id);
     * the in-process ledger holds nothing then. */
    r->hold_micros = ex->dp->fleet != NULL ? 0 : ex->hold_micros;
    str_copy(r->hold_id, sizeof(r->hold_id), ex->hold_id);
    ex->hold_micros = 0;
    ex->hold_id[0] = '\0';
}

/* --- fleet mode: what Redis decides before the exchange goes on -----------
 * The steps left to Redis by the stages (admission with a hold, then a
 * live-session lease) run in order; when the last is answered the exchange
 * goes on (ex->resume, else the head continues), or it is refused. */

static int next_step(struct exchange *ex, struct exchange_refusal *why);

static int on_down(const struct exchange *ex, struct exchange_refusal *why)
{
    if (ex->dp->cfg->store_on_down == CONFIG_ON_DOWN_SERVE)
        return 0;
    refuse(why, 503, "server_error", "store_unavailable", METRICS_REFUSED_UNAVAILABLE,
           "the proxy cannot reach its store right now; retry shortly");
    why->retry = true;
    return -1;
}

static void step_done(struct exchange *ex, int rc, struct exchange_refusal *why)
{
    struct http_conn *c = ex->pending_conn;
    if (rc == 0)
        rc = next_step(ex, why);
    if (rc == 1)
        return;
    ex->pending_conn = NULL;
    if (rc == -1) {
        if (ex->refused != NULL) {
            ex->refused(ex, why);
            return;
        }
        /* Answers the request; its context (this exchange) goes with it. */
        exchange_refuse(c, ex->rt.provider, why);
        return;
    }
    if (ex->resume != NULL) {
        void (*resume)(struct exchange *) = ex->resume;
        ex->resume = NULL;
        resume(ex);
    } else {
        http_head_continue(c);
    }
}

/* The admission's answer: 0 go on, -1 refused (*why). */
static int admission_answer(struct exchange *ex, enum fleet_status st, struct exchange_refusal *why)
{
    ex->admit_pending = false;
    if (st != FLEET_OK && st != FLEET_DOWN) {
        ex->hold_id[0] = '\0';
        ex->hold_micros = 0;
    }
    if (st == FLEET_NO_FUNDS)
        return refuse_status(why, RESOLVE_NO_FUNDS);
    if (st == FLEET_NO_PAYER)
        return refuse_status(why, RESOLVE_UNAUTHORIZED);
    if (st == FLEET_DOWN) /* the hold may be taken: released with the exchange */
        return on_down(ex, why);
    return 0;
}

static void admitted(void *arg, enum fleet_status st, int64_t available)
{
    (void)available;
    struct exchange *ex = arg;
    struct exchange_refusal why;
    ex->admit_req = NULL;
    int rc = admission_answer(ex, st, &why);
    step_done(ex, rc, &why);
}

static void lease_renew(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exchange *ex = arg;
    fleet_live_renew(ex->dp->fleet, ex->rec.tenant_id, ex->parent_id, ex->lease_id);
}

/* The lease's answer: 0 go on, -1 refused (*why). */
static int lease_answer(struct exchange *ex, enum fleet_status st, bool owner_limited,
                        struct exchange_refusal *why)
{
    ex->live_pending = false;
    if (st == FLEET_OK) {
        ex->lease_held = true;
        ex->lease_timer = event_new(ex->dp->base, -1, EV_PERSIST, lease_renew, ex);
        struct timeval tv = {FLEET_LEASE_RENEW_MS / 1000, 0};
        if (ex->lease_timer != NULL)
            evtimer_add(ex->lease_timer, &tv);
        return 0;
    }
    ex->lease_id[0] = '\0';
    if (st != FLEET_LIMIT)
        return 0; /* down: not counted (sessions are not refused for want of a count) */
    return refuse_live_limit(ex, owner_limited, why);
}

static void leased(void *arg, enum fleet_status st, bool owner_limited)
{
    struct exchange *ex = arg;
    struct exchange_refusal why;
    ex->step_req = NULL;
    int rc = lease_answer(ex, st, owner_limited, &why);
    step_done(ex, rc, &why);
}

/* Both in one script. At a limit neither the hold nor the lease was taken;
 * refused for funds, no lease was; down: the hold may be taken (released
 * with the exchange) and the lease is not counted, as lease_answer has it. */
static void admitted_leased(void *arg, enum fleet_status st, bool owner_limited)
{
    struct exchange *ex = arg;
    struct exchange_refusal why;
    int rc;
    ex->admit_req = NULL;
    if (st == FLEET_LIMIT) {
        ex->admit_pending = false;
        ex->hold_id[0] = '\0';
        ex->hold_micros = 0;
        rc = lease_answer(ex, FLEET_LIMIT, owner_limited, &why);
    } else {
        rc = admission_answer(ex, st, &why);
        (void)lease_answer(ex, st == FLEET_OK ? FLEET_OK : FLEET_DOWN, false, &why);
    }
    step_done(ex, rc, &why);
}

/* 1: a step was asked; 0: none left; -1 with *why. */
static int next_step(struct exchange *ex, struct exchange_refusal *why)
{
    struct dataplane *dp = ex->dp;
    if (ex->admit_pending && ex->live_pending) {
        str_copy(ex->lease_id, sizeof(ex->lease_id), ex->rec.id);
        const struct fleet_lease lease = {.tenant_id = ex->rec.tenant_id,
                                          .limit = ex->live_limit,
                                          .owner_id = ex->parent_id,
                                          .owner_limit = ex->parent_live_limit,
                                          .lease_id = ex->lease_id};
        if (fleet_admit_leased(dp->fleet, ex->decision.payer_id, ex->hold_id, ex->hold_micros,
                               &lease, admitted_leased, ex, &ex->admit_req) == FLEET_PENDING)
            return 1;
        ex->lease_id[0] = '\0'; /* down: the steps below answer it */
    }
    if (ex->admit_pending) {
        if (fleet_admit(dp->fleet, ex->decision.payer_id, ex->hold_id, ex->hold_micros, admitted,
                        ex, &ex->admit_req) == FLEET_PENDING)
            return 1;
        ex->admit_pending = false;
        ex->hold_id[0] = '\0';
        ex->hold_micros = 0;
        if (on_down(ex, why) == -1)
            return -1;
    }
    if (ex->live_pending) {
        str_copy(ex->lease_id, sizeof(ex->lease_id), ex->rec.id);
        if (fleet_live_acquire(dp->fleet, ex->rec.tenant_id, ex->live_limit, ex->parent_id,
                               ex->parent_live_limit, ex->lease_id, leased, ex,
                               &ex->step_req) == FLEET_PENDING)
            return 1;
        ex->live_pending = false;
        ex->lease_id[0] = '\0';
    }
    return 0;
}

int exchange_decide_async(struct exchange *ex, struct http_conn *c, struct exchange_refusal *why)
{
    int rc = next_step(ex, why);
    if (rc == 1)
        ex->pending_conn = c;
    return rc;
}

int exchange_check_price(const struct exchange *ex, const char *model, struct exchange_refusal *why)
{
    const struct provider *p = ex->rt.provider;
    if (ex->decision.byok || pricing_find(ex->dp->cfg, p, model) != NULL)
        return 0;
    char safe[MODEL_MAX];
    if (model == NULL || model[0] == '\0')
        refuse(why, 403, "invalid_request_error", "model_not_priced", METRICS_REFUSED_MODEL,
               "the request names no model and the proxy has no default price for %s: add "
               "pricing.%s.\"*\" to the config, or use your own key (BYOK)",
               p->display, p->name);
    else
        refuse(why, 403, "invalid_request_error", "model_not_priced", METRICS_REFUSED_MODEL,
               "the model \"%s\" has no price in this proxy's config, so it cannot run on the "
               "platform's key: add pricing.%s.\"%s\" (or a prefix entry such as \"%s*\"), or "
               "use your own key (BYOK)",
               log_safe(model, strlen(model), safe, sizeof(safe)), p->name, safe, safe);
    why->wallet = why->no_retry = true;
    return -1;
}

int64_t exchange_cost(const struct dataplane *dp, const struct provider *p, const char *model,
                      const struct usage_units *u)
{
    return pricing_cost(pricing_find(dp->cfg, p, model), u);
}

void exchange_submit(struct usage_record *r)
{
    usage_submit(r);
    metrics_inc(METRICS_REQUESTS_TOTAL);
    metrics_exchange(r->provider, r->status, r->billed_byok);
}

void exchange_link(struct exchange *ex)
{
    struct dataplane *dp = ex->dp;
    if (ex->live)
        return;
    ex->live = true;
    ex->prev = NULL;
    ex->next = dp->live;
    if (dp->live != NULL)
        dp->live->prev = ex;
    dp->live = ex;
    if (ex->transport == EXCHANGE_WS)
        dp->n_ws++;
    else
        dp->n_detached++;
}

void exchange_unlink(struct exchange *ex)
{
    struct dataplane *dp = ex->dp;
    if (!ex->live)
        return;
    if (ex->prev != NULL)
        ex->prev->next = ex->next;
    else
        dp->live = ex->next;
    if (ex->next != NULL)
        ex->next->prev = ex->prev;
    ex->prev = ex->next = NULL;
    ex->live = false;
    if (ex->transport == EXCHANGE_WS)
        dp->n_ws--;
    else
        dp->n_detached--;
}

void exchange_release(struct exchange *ex)
{
    free(ex->pin_text);
    ex->pin_text = NULL;
    /* A fleet hold exists only once its admission was asked (an exchange
     * refused before its deferred admission, dataplane_head, took none). */
    bool hold_asked = !ex->admit_pending || ex->admit_req != NULL;
    if (ex->step_req != NULL || ex->admit_req != NULL) { /* the client left while Redis decided */
        rasync_cancel(ex->step_req);
        fleet_admission_cancel(ex->admit_req);
        ex->step_req = NULL;
        ex->admit_req = NULL;
        if (ex->live_pending && ex->lease_id[0] != '\0') /* it may have been counted */
            fleet_live_release(ex->dp->fleet, ex->rec.tenant_id, ex->parent_id, ex->lease_id);
    }
    if (ex->lease_timer != NULL) {
        event_free(ex->lease_timer);
        ex->lease_timer = NULL;
    }
    if (ex->lease_held) {
        fleet_live_release(ex->dp->fleet, ex->rec.tenant_id, ex->parent_id, ex->lease_id);
        ex->lease_held = false;
    }
    if (ex->dp->fleet == NULL)
        ledger_release(ex->decision.payer_id, ex->hold_micros);
    else if (ex->hold_id[0] != '\0' && hold_asked) /* the ledger holds nothing then */
        fleet_release(ex->dp->fleet, ex->decision.payer_id, ex->hold_id);
    ex->hold_micros = 0;
    ex->hold_id[0] = '\0';
    live_release(&ex->live_slot);
    resolve_done(&ex->decision);
    if (ex->first_message != NULL) {
        crypto_wipe(ex->first_message, strlen(ex->first_message));
        free(ex->first_message);
        ex->first_message = NULL;
    }
}
