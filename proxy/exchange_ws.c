/* exchange_ws.c - one WebSocket session: the upgrade checked, the upstream
 * handshake built with the injected key (in the browsers' first-message
 * mode only once that message has authenticated the session), frames
 * relayed by relay_ws, and the session metered as it goes.
 *
 *   START --upgrade ok--> CONNECTING (relay_ws: upstream handshake) --101--> OPEN
 *     \                        ^
 *      client-first: 101 now, FIRST (waiting for the key in the first
 *      message; on_first authenticates, resolves, builds the target)
 *
 *   OPEN: every text message and binary chunk goes to the provider's socket
 *   meter. A record is written for each unit the meter reports (e.g. a
 *   completed response of a realtime model), else
 *   every usage.ws_interval_s with what was metered in it; the `platform`
 *   line (per-minute fee, always the wallet's) every interval; and at the
 *   end one final record of each line with the rest (estimated where the
 *   provider's report is missing). Records carry the session id (the
 *   X-Session-Id, or "ws_<first record id>"), seq (1, 2, ... per line) and
 *   final. An upstream close other than 1000/1001 ends with outcome
 *   upstream_error.
 *
 * Everything ends in on_end (relay_ws calls it once): final records,
 * free. */
#include "common.h"
#include "exchange.h"
#include "conncap.h"
#include "crypto.h"
#include "ledger.h"
#include "meter.h"
#include "pricing.h"
#include "relay_ws.h"
#include "urlenc.h"
#include "ws.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_METER_MAX   (256 * 1024)       /* text messages metered up to this size */
#define WS_MESSAGE_MAX (16 * 1024 * 1024) /* relayed message size limit */

enum ws_state {
    WSX_START = 0,  /* stages passed, upgrade not checked yet */
    WSX_FIRST,      /* client-first: the client has its 101, its key is to come */
    WSX_CONNECTING, /* the upstream handshake is under way */
    WSX_OPEN,       /* relaying */
};

/* What the upstream handshake needs from the client's upgrade request,
 * copied out of it (the request is gone when a first-message session
 * authenticates). */
struct ws_prep {
    char tail[2048];       /* upstream path and forwarded query (no credentials) */
    char protocols[512];   /* forwarded subprotocols, "" none */
    char fwd[1536];        /* forwarded header lines */
    char fwd_wallet[1536]; /* the same without those a wallet line may not send */
    char query[1024];      /* the client's query, for the meter (credentials removed) */
};

struct ws_exchange {
    struct exchange base;
    enum ws_state state;
    struct relay_ws *relay;
    struct ws_prep *prep; /* until the upstream target is built */
    struct ws_meter meter;
    struct event *timer; /* interval records */
    /* The client connection's place under the caps (conncap.h), taken over
     * with the socket; given back when the session ends. */
    struct conncap_slot slot;
    bool started;        /* authenticated: records are written at the end */
    int64_t opened_mono; /* the upstream accepted; 0 never */
    int seq_unit, seq_platform;
    /* Costs recorded so far, so each record's cost is the growth of the
     * session's cost (no rounding per record). */
    char cost_model[MODEL_MAX];
    struct usage_units cost_base; /* units recorded at an earlier model */
    int64_t cost_recorded;        /* cost recorded at cost_model */
    int64_t platform_ms, platform_cost;
    uint64_t access_gen;               /* store generation its access was last checked at */
    char *first_text;                  /* the first message, while its session is decided */
    struct resolve_identity *first_id; /* fleet mode: its key's identity, while Redis answers */
    struct rasync_req *pin_req;        /* fleet mode: its session's pin asked of Redis */
    struct rasync_req *regate_req;     /* fleet mode: the funds asked of Redis */
};

struct ws_exchange *exchange_ws_new(const struct exchange *ex)
{
    struct ws_exchange *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->base = *ex;
    x->base.prev = x->base.next = NULL;
    x->base.live = false;
    x->started = !ex->client_first;
    return x;
}

static void prep_free(struct ws_exchange *x)
{
    if (x->prep != NULL) {
        crypto_wipe(x->prep, sizeof(*x->prep));
        free(x->prep);
        x->prep = NULL;
    }
}

void exchange_ws_free(void *arg)
{
    struct ws_exchange *x = arg;
    if (x == NULL)
        return;
    exchange_unlink(&x->base);
    rasync_cancel(x->regate_req);
    rasync_cancel(x->pin_req);
    exchange_release(&x->base);
    if (x->first_id != NULL) {
        crypto_wipe(x->first_id, sizeof(*x->first_id));
        free(x->first_id);
    }
    if (x->first_text != NULL) {
        crypto_wipe(x->first_text, strlen(x->first_text));
        free(x->first_text);
    }
    if (x->timer != NULL)
        event_free(x->timer);
    ws_meter_free(&x->meter);
    prep_free(x);
    conncap_leave(&x->slot);
    free(x);
}

/* --- records ---------------------------------------------------------------- */

static void units_sub(struct usage_units *a, const struct usage_units *b)
{
    a->input_tokens -= b->input_tokens;
    a->cached_input_tokens -= b->cached_input_tokens;
    a->output_tokens -= b->output_tokens;
    a->audio_input_tokens -= b->audio_input_tokens;
    a->audio_output_tokens -= b->audio_output_tokens;
    a->characters -= b->characters;
    a->audio_ms -= b->audio_ms;
}

/* A record of the session's line with what the meter has not recorded yet. */
static void write_unit(struct ws_exchange *x, bool final, int status, enum usage_outcome outcome)
{
    const struct dataplane *dp = x->base.dp;
    const struct provider *p = x->base.rt.provider;
    struct usage_record r = x->base.rec;
    if (x->seq_unit > 0 && crypto_new_ulid("", r.id, sizeof(r.id)) == -1)
        return;
    r.ts_ms = now_ms();
    r.seq = ++x->seq_unit;
    r.final = final;
    r.status = status;
    r.outcome = outcome;
    r.duration_ms = mono_ms() - x->base.start_mono;
    ws_meter_take(&x->meter, &r.units);
    r.estimated = x->meter.estimated;
    str_copy(r.model, sizeof(r.model), x->meter.model);
    /* This record's cost is what the session's cost grew by. */
    if (strcmp(x->cost_model, x->meter.model) != 0) {
        x->cost_base = x->meter.recorded;
        units_sub(&x->cost_base, &r.units);
        x->cost_recorded = 0;
        str_copy(x->cost_model, sizeof(x->cost_model), x->meter.model);
    }
    struct usage_units since = x->meter.recorded;
    units_sub(&since, &x->cost_base);
    int64_t cost = exchange_cost(dp, p, x->meter.model, &since);
    r.cost_micros = cost > x->cost_recorded ? cost - x->cost_recorded : 0;
    x->cost_recorded = MAX(cost, x->cost_recorded);
    /* The session's hold turns into its first record's exact charge. */
    exchange_take_hold(&x->base, &r);
    exchange_submit(&r);
}

/* Ends the open session: the client gets the error as one of the
 * provider's socket messages, then close 1008 with reason. */
static void end_session(struct ws_exchange *x, int status, const char *type, const char *reason,
                        const char *message)
{
    const struct provider *p = x->base.rt.provider;
    json_t *j = p->ws_error != NULL ? p->ws_error(type, reason, message)
                                    : route_error_body(p, status, type, reason, message);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    relay_ws_end(x->relay, text, text != NULL ? strlen(text) : 0, reason);
    free(text);
}

static void end_for_balance(struct ws_exchange *x, int64_t funds);

static void regate_answer(void *arg, enum fleet_status st, int64_t available)
{
    struct ws_exchange *x = arg;
    struct exchange *ex = &x->base;
    x->regate_req = NULL;
    if (st != FLEET_OK || x->relay == NULL)
        return;
    int64_t funds = available - ledger_held(ex->decision.payer_id);
    if (funds <= -ex->dp->cfg->balance.ws_grace_micros)
        end_for_balance(x, funds);
}

/* Rule 4 at each charge of a wallet session: once the payer's available
 * funds are at or below -balance.ws_grace_micros, the session ends after
 * the unit just recorded. BYOK sessions, and simulated ones that charge
 * nothing (simulate.charge false), are never ended for balance. */
static void regate(struct ws_exchange *x)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    int64_t funds;
    if (ex->decision.byok || ex->rec.no_charge || x->relay == NULL)
        return;
    if (dp->fleet != NULL) {
        /* Fleet mode: Redis has the payer's funds; this instance's charges
         * not yet committed are subtracted when it answers. */
        if (x->regate_req == NULL)
            (void)fleet_available(dp->fleet, ex->decision.payer_id, regate_answer, x,
                                  &x->regate_req);
        return;
    }
    if (ledger_available(resolve_store(dp->resolver), ex->decision.payer_id, &funds) == -1 ||
        funds > -dp->cfg->balance.ws_grace_micros)
        return;
    end_for_balance(x, funds);
}

/* Ends the session for balance (regate's verdict). */
static void end_for_balance(struct ws_exchange *x, int64_t funds)
{
    struct exchange *ex = &x->base;
    log_info("ws session %s: payer %s has %lld micro-USD available: ended (insufficient_balance)",
             ex->rec.session_id, ex->decision.payer_id, (long long)funds);
    metrics_refused(ex->rt.provider, METRICS_REFUSED_BALANCE);
    end_session(x, 402, "insufficient_quota", "insufficient_balance",
                "The account's plan credits and wallet are used up: the session ends here. Top "
                "up the wallet or connect your own provider key (BYOK).");
}

/* The platform's per-minute fee for the time since the last one: always
 * the wallet's, whoever's key carried the session. */
static void write_platform(struct ws_exchange *x, bool final, int64_t now_mono,
                           enum usage_outcome outcome)
{
    const struct dataplane *dp = x->base.dp;
    if (x->opened_mono == 0)
        return;
    struct usage_record r = x->base.rec;
    if (crypto_new_ulid("", r.id, sizeof(r.id)) == -1)
        return;
    int64_t total_ms = MAX((int64_t)0, now_mono - x->opened_mono);
    const struct config_price *price = pricing_find(dp->cfg, r.provider, x->meter.model);
    int64_t per_min =
        price != NULL && price->session_per_minute > 0 ? price->session_per_minute : 0;
    int64_t total_cost = (per_min * total_ms + 30000) / 60000;
    snprintf(r.line, sizeof(r.line), "platform");
    str_copy(r.model, sizeof(r.model), x->meter.model);
    r.ts_ms = now_ms();
    r.billed_byok = false;
    r.connection_id[0] = '\0';
    r.fallback_reason[0] = '\0';
    r.unmetered = false;
    memset(&r.units, 0, sizeof(r.units));
    r.units.audio_ms = total_ms - x->platform_ms;
    r.estimated = false;
    r.cost_micros = MAX((int64_t)0, total_cost - x->platform_cost);
    r.seq = ++x->seq_platform;
    r.final = final;
    r.status = 101;
    r.outcome = outcome;
    r.duration_ms = mono_ms() - x->base.start_mono;
    x->platform_ms = total_ms;
    x->platform_cost = MAX(total_cost, x->platform_cost);
    exchange_submit(&r);
}

/* A by_unit meter completed a unit (Realtime's response.done). */
static void on_unit(void *arg)
{
    struct ws_exchange *x = arg;
    write_unit(x, false, 101, USAGE_OUTCOME_OK);
    regate(x);
}

static bool units_zero(const struct usage_units *u)
{
    return u->input_tokens == 0 && u->cached_input_tokens == 0 && u->output_tokens == 0 &&
           u->audio_input_tokens == 0 && u->audio_output_tokens == 0 && u->characters == 0 &&
           u->audio_ms == 0;
}

static void interval_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ws_exchange *x = arg;
    (void)fd;
    (void)what;
    if (x->meter.ops != NULL && !x->meter.ops->by_unit) {
        ws_meter_interval(&x->meter);
        struct usage_units grown = x->meter.total;
        units_sub(&grown, &x->meter.recorded);
        if (!units_zero(&grown)) {
            write_unit(x, false, 101, USAGE_OUTCOME_OK);
            write_platform(x, false, mono_ms(), USAGE_OUTCOME_OK);
            regate(x);
            return;
        }
    }
    write_platform(x, false, mono_ms(), USAGE_OUTCOME_OK);
}

/* --- the upstream target -------------------------------------------------- */

static const char *const refusal_reason[METRICS_REFUSED__COUNT] = {
    [METRICS_REFUSED_AUTH] = "invalid or missing key",
    [METRICS_REFUSED_BALANCE] = "insufficient_balance",
    [METRICS_REFUSED_ENDPOINT] = "endpoint_not_allowed",
    [METRICS_REFUSED_MODEL] = "model_not_priced",
    [METRICS_REFUSED_LIMITS] = "tenant_limit",
    [METRICS_REFUSED_REQUEST] = "bad request",
    [METRICS_REFUSED_UNAVAILABLE] = "the proxy cannot serve this session now",
};

/* Meter, price check, key, URL and handshake lines for the session. h is
 * the upgrade request, NULL once it is gone (first-message sessions). The
 * caller wipes headers. */
static int build_target(struct ws_exchange *x, const struct httpparse_request *h, char *url,
                        size_t url_size, char *headers, size_t headers_size,
                        struct exchange_refusal *why)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    const struct provider *p = ex->rt.provider;
    struct ws_prep *pp = x->prep;
    char base[1024], value[CRYPTO_SECRET_MAX + 16];
    const char *name = NULL;
    int rc = -1;
    headers[0] = '\0';
    memset(why, 0, sizeof(*why));
    why->status = 500;
    why->type = "server_error";
    why->code = "internal_error";
    why->why = METRICS_REFUSED_UNAVAILABLE;
    snprintf(why->message, sizeof(why->message), "cannot start the session");

    if (ws_meter_init(&x->meter, ex->ep != NULL ? ex->ep->ws : NULL,
                      ex->ep != NULL ? ex->ep->model_query : NULL, pp->query,
                      strlen(pp->query)) == -1)
        return -1;
    if (ex->model[0] != '\0')
        str_copy(x->meter.model, sizeof(x->meter.model), ex->model);
    x->meter.unit = on_unit;
    x->meter.unit_arg = x;
    /* Fail-closed pricing at the handshake, where the model is known. */
    if (x->meter.ops != NULL && !x->meter.ops->inspect_client_text &&
        exchange_check_price(ex, x->meter.model, why) == -1)
        return -1;
    if (resolve_open_key(dp->resolver, &ex->decision) == -1)
        return -1;
    if (route_upstream_base(dp->cfg, p, ex->rt.host, ex->decision.region, base, sizeof(base)) ==
        -1) {
        why->status = 502;
        why->code = "no_upstream";
        snprintf(why->message, sizeof(why->message),
                 "no upstream is configured for this route (or the key has no valid region)");
        goto done;
    }
    bool tls = strncmp(base, "https://", 8) == 0;
    int n =
        snprintf(url, url_size, "%s%s%s", tls ? "wss://" : "ws://", base + (tls ? 8 : 7), pp->tail);
    if (n < 0 || (size_t)n >= url_size) {
        why->status = 414;
        why->type = "invalid_request_error";
        why->code = "url_too_long";
        snprintf(why->message, sizeof(why->message), "the upstream URL is too long");
        goto done;
    }
    int vl = route_inject_value(p, h, ex->decision.api_key, &name, value, sizeof(value));
    if (vl < 0)
        goto done;
    size_t hn = (size_t)snprintf(headers, headers_size, "%s: %s\r\n", name, value);
    if (pp->protocols[0] != '\0' && hn < headers_size)
        hn += (size_t)snprintf(headers + hn, headers_size - hn, "Sec-WebSocket-Protocol: %s\r\n",
                               pp->protocols);
    if (hn < headers_size)
        hn += (size_t)snprintf(headers + hn, headers_size - hn, "%s",
                               ex->decision.byok ? pp->fwd : pp->fwd_wallet);
    if (!ex->decision.byok) {
        const struct config_platform_key *pk = config_platform_key(dp->cfg, p);
        for (size_t i = 0; i < p->n_platform_headers && hn < headers_size; i++)
            if (pk->headers[i] != NULL)
                hn += (size_t)snprintf(headers + hn, headers_size - hn, "%s: %s\r\n",
                                       p->platform_headers[i].header, pk->headers[i]);
    }
    if (hn >= headers_size) {
        crypto_wipe(headers, headers_size);
        headers[0] = '\0';
        why->status = 400;
        why->type = "invalid_request_error";
        why->code = "headers_too_large";
        snprintf(why->message, sizeof(why->message),
                 "the upgrade request's headers are too large to forward");
        goto done;
    }
    rc = 0;
done:
    crypto_wipe(value, sizeof(value));
    resolve_done(&ex->decision);
    return rc;
}

/* The upstream path, forwarded query (an ephemeral token's model in place
 * of the client's), subprotocols and headers, from the upgrade request. */
static int prepare(struct ws_exchange *x, const struct httpparse_request *h, char *answer,
                   struct exchange_refusal *why)
{
    struct exchange *ex = &x->base;
    const struct provider *p = ex->rt.provider;
    struct ws_prep *pp = calloc(1, sizeof(*pp));
    memset(why, 0, sizeof(*why));
    why->why = METRICS_REFUSED_LIMITS;
    if (pp == NULL) {
        why->status = 500;
        why->type = "server_error";
        why->code = "internal_error";
        snprintf(why->message, sizeof(why->message), "out of memory");
        return -1;
    }
    x->prep = pp;
    char query[1024];
    int ql = h->query != NULL ? route_forward_query(h, query, sizeof(query)) : 0;
    if (ql < 0 || (size_t)ql >= sizeof(pp->query))
        goto too_long;
    memcpy(pp->query, query, (size_t)ql + 1);
    if (ex->model[0] != '\0' && ex->ep != NULL && ex->ep->model_query != NULL) {
        /* The token's model, not the client's. */
        char rest[1024] = "", enc[3 * MODEL_MAX];
        size_t rl = 0;
        struct urlenc_query it;
        struct urlenc_pair pair;
        urlenc_query_init(&it, query, (size_t)ql);
        while (urlenc_query_next(&it, &pair))
            if (!urlenc_name_is(&pair, ex->ep->model_query) && rl + pair.raw_len + 2 < sizeof(rest))
                rl += (size_t)snprintf(rest + rl, sizeof(rest) - rl, "%s%.*s", rl ? "&" : "",
                                       (int)pair.raw_len, pair.raw);
        if (urlenc_encode(ex->model, enc, sizeof(enc)) < 0)
            goto too_long;
        ql = snprintf(query, sizeof(query), "%s=%s%s%s", ex->ep->model_query, enc, rl ? "&" : "",
                      rest);
        if (ql < 0 || (size_t)ql >= sizeof(query))
            goto too_long;
    }
    int tn = snprintf(pp->tail, sizeof(pp->tail), "%.*s%s%s", (int)ex->rt.upstream_path_len,
                      ex->rt.upstream_path, ql > 0 ? "?" : "", ql > 0 ? query : "");
    if (tn < 0 || (size_t)tn >= sizeof(pp->tail))
        goto too_long;
    struct route_key key;
    route_credential(p, h, true, &key);
    if (route_forward_protocols(p, h, &key, pp->protocols, sizeof(pp->protocols), answer) == -1)
        goto headers_too_large;
    size_t an = 0, wn = 0;
    for (const char *const *f = p->ws_forward_headers; f != NULL && *f != NULL; f++) {
        const struct httpparse_header *fh = httpparse_find(h, *f);
        if (fh == NULL)
            continue;
        bool wallet_drop = false;
        for (const char *const *w = p->wallet_request_headers; w != NULL && *w != NULL; w++)
            wallet_drop |= strcasecmp(*w, *f) == 0;
        an += (size_t)snprintf(pp->fwd + MIN(an, sizeof(pp->fwd)),
                               sizeof(pp->fwd) - MIN(an, sizeof(pp->fwd)), "%.*s: %.*s\r\n",
                               (int)fh->name_len, fh->name, (int)fh->value_len, fh->value);
        if (!wallet_drop)
            wn += (size_t)snprintf(pp->fwd_wallet + MIN(wn, sizeof(pp->fwd_wallet)),
                                   sizeof(pp->fwd_wallet) - MIN(wn, sizeof(pp->fwd_wallet)),
                                   "%.*s: %.*s\r\n", (int)fh->name_len, fh->name,
                                   (int)fh->value_len, fh->value);
    }
    if (an >= sizeof(pp->fwd) || wn >= sizeof(pp->fwd_wallet))
        goto headers_too_large;
    return 0;
too_long:
    why->status = 414;
    why->type = "invalid_request_error";
    why->code = "url_too_long";
    snprintf(why->message, sizeof(why->message), "the request's URL is too long to forward");
    return -1;
headers_too_large:
    why->status = 400;
    why->type = "invalid_request_error";
    why->code = "headers_too_large";
    snprintf(why->message, sizeof(why->message),
             "the upgrade request's headers are too large to forward");
    return -1;
}

/* --- first-message credentials (browsers) ------------------------------------ */

/* Wipes a string value taken out of a message (a key): jansson frees
 * without wiping. Drops the reference. */
static void json_wipe_string(json_t *v)
{
    if (json_is_string(v))
        crypto_wipe((char *)json_string_value(v), json_string_length(v));
    json_decref(v);
}

/* Removes every first-message credential of p from root; the first one
 * that holds a key (in declared order) is returned in *key (a reference the
 * caller wipes with json_wipe_string). */
static void take_first_message_key(const struct provider *p, json_t *root, json_t **key,
                                   const char **value, size_t *len)
{
    *key = NULL;
    *value = NULL;
    *len = 0;
    for (size_t i = 0; i < p->n_creds; i++) {
        const struct provider_cred *c = &p->creds[i];
        if (c->kind != PROVIDER_CRED_FIRST_MESSAGE)
            continue;
        json_t *v = json_incref(json_object_get(root, c->name));
        if (v == NULL)
            continue;
        json_object_del(root, c->name);
        const char *s = json_string_value(v);
        size_t n = json_string_length(v), sl = c->scheme != NULL ? strlen(c->scheme) : 0;
        if (*key == NULL && s != NULL &&
            (c->scheme == NULL ||
             (n > sl + 1 && strncasecmp(s, c->scheme, sl) == 0 && s[sl] == ' '))) {
            *key = v;
            *value = s + (c->scheme != NULL ? sl + 1 : 0);
            *len = n - (c->scheme != NULL ? sl + 1 : 0);
        } else {
            json_wipe_string(v);
        }
    }
}

/* The first message of a first-message session: authenticate on its key,
 * resolve, and give the relay the upstream and the message without any
 * credential member. */
/* The target of a first-message session that passed its stages: the
 * upstream and the message without any credential (text, malloc'd; taken).
 * 0, or -1 with *why. */
static int first_fill(struct ws_exchange *x, char *text, struct relay_ws_target *out,
                      struct exchange_refusal *why)
{
    char url[2048], headers[2048];
    int rc = -1;
    headers[0] = '\0';
    if (build_target(x, NULL, url, sizeof(url), headers, sizeof(headers), why) == -1) {
        free(text);
        goto out;
    }
    x->started = true;
    out->first_message = text;
    out->first_len = text != NULL ? strlen(text) : 0;
    out->upstream_url = strdup(url);
    out->upstream_headers = strdup(headers);
    if (text == NULL || out->upstream_url == NULL || out->upstream_headers == NULL) {
        *why = (struct exchange_refusal){.status = 500,
                                         .type = "server_error",
                                         .code = "out_of_memory",
                                         .why = METRICS_REFUSED_UNAVAILABLE};
        goto out; /* the relay frees what is in *out */
    }
    /* on_message does not see the first message: meter it here. */
    ws_meter_text(&x->meter, true, text, out->first_len, true);
    x->state = WSX_CONNECTING;
    prep_free(x);
    rc = 0;
out:
    crypto_wipe(headers, sizeof(headers));
    return rc;
}

/* Fleet mode: Redis admitted the first-message session (exchange.c). */
static void first_go(struct exchange *ex)
{
    struct ws_exchange *x = container_of(ex, struct ws_exchange, base);
    struct relay_ws_target t = {0};
    struct exchange_refusal why;
    char *text = x->first_text;
    x->first_text = NULL;
    int rc = first_fill(x, text, &t, &why);
    if (rc == -1) {
        metrics_refused(ex->rt.provider, why.why);
        t.refuse_reason = refusal_reason[why.why];
    }
    relay_ws_first_decided(x->relay, rc, &t);
}

static void first_refused(struct exchange *ex, const struct exchange_refusal *why)
{
    struct ws_exchange *x = container_of(ex, struct ws_exchange, base);
    struct relay_ws_target t = {0};
    metrics_refused(ex->rt.provider, why->why);
    t.refuse_reason = refusal_reason[why->why];
    log_info("ws session: the first message's session cannot begin: %s", why->code);
    relay_ws_first_decided(x->relay, -1, &t);
}

/* The stages of a first-message session after its key proved id: the
 * session's pin (fleet mode: Redis first), admission and lease (fleet mode:
 * Redis), then the target. 0 with *out filled, 1 (decided later:
 * relay_ws_first_decided), or -1 with out->refuse_reason. mode: as
 * dp->pin_mode for exchange_authenticated. */
static int first_decide(struct ws_exchange *x, const struct resolve_identity *id, int mode,
                        struct relay_ws_target *out);

/* Fleet mode: Redis answered about the session's pin (as dataplane.c's
 * pin stage does for a head). */
static void first_pin_answer(void *arg, enum fleet_status st, const char *text, size_t len)
{
    struct ws_exchange *x = arg;
    struct exchange *ex = &x->base;
    struct session_pin pin;
    int mode = DP_PIN_LOCAL;
    x->pin_req = NULL;
    if (st == FLEET_OK && text != NULL && resolve_pin_decode(text, len, &pin) == 0) {
        session_replace(ex->rec.tenant_id, ex->session_header, FLEET_PIN_CACHE_S, &pin);
        mode = 0;
    } else if (st == FLEET_ABSENT) {
        mode = DP_PIN_FRESH;
    } else if (st == FLEET_OK) {
        log_warn("fleet: the pin of a session of tenant %s is unreadable: decided anew",
                 ex->rec.tenant_id);
    }
    struct relay_ws_target t = {0};
    int rc = first_decide(x, x->first_id, mode, &t);
    if (rc != 1)
        relay_ws_first_decided(x->relay, rc, &t);
}

/* Asks Redis for the session's pin (or writes a new one's): 1 (asked) or
 * -1 (Redis is down). */
static int first_pin_stage(struct ws_exchange *x, const struct resolve_identity *id)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    bool publish = ex->pin_publish;
    char *text = ex->pin_text;
    ex->pin_text = NULL;
    ex->pin_fetch = ex->pin_publish = false;
    resolve_done(&ex->decision);
    if (x->first_id == NULL) {
        if ((x->first_id = malloc(sizeof(*x->first_id))) == NULL) {
            free(text);
            return -1;
        }
        *x->first_id = *id;
    }
    enum fleet_status st =
        publish ? fleet_pin_put(dp->fleet, ex->rec.tenant_id, ex->session_header, text,
                                dp->cfg->session_ttl_s, first_pin_answer, x, &x->pin_req)
                : fleet_pin_get(dp->fleet, ex->rec.tenant_id, ex->session_header,
                                dp->cfg->session_ttl_s, first_pin_answer, x, &x->pin_req);
    free(text);
    return st == FLEET_PENDING ? 1 : -1;
}

static int first_decide(struct ws_exchange *x, const struct resolve_identity *id, int mode,
                        struct relay_ws_target *out)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    const struct provider *p = ex->rt.provider;
    struct exchange_refusal why;
    dp->pin_mode = mode;
    int arc = exchange_authenticated(ex, id, &why);
    dp->pin_mode = 0;
    if (arc == 0 && (ex->pin_fetch || ex->pin_publish)) {
        if (first_pin_stage(x, id) == 1)
            return 1;
        /* Redis is down: this instance decides alone, publishing nothing. */
        return first_decide(x, id, DP_PIN_LOCAL, out);
    }
    if (arc == -1 || exchange_admit(ex, &why) == -1 || exchange_go_live(ex, &why) == -1)
        goto refused;
    if (ex->admit_pending || ex->live_pending) {
        /* Fleet mode: Redis admits it first; the relay waits. */
        ex->resume = first_go;
        ex->refused = first_refused;
        int drc = exchange_decide_async(ex, NULL, &why);
        if (drc == 1)
            return 1;
        ex->resume = NULL;
        ex->refused = NULL;
        if (drc == -1)
            goto refused;
    }
    char *text = x->first_text;
    x->first_text = NULL;
    if (first_fill(x, text, out, &why) == -1)
        goto refused;
    return 0;
refused:
    metrics_refused(p, why.why);
    out->refuse_reason = refusal_reason[why.why];
    log_info("ws session: the first message's session cannot begin: %s", why.code);
    return -1;
}

/* The first message of a first-message session: authenticate on its key,
 * then the stages after it (first_decide), the message kept without any
 * credential member. */
static int on_first(void *arg, const char *msg, size_t len, struct relay_ws_target *out)
{
    struct ws_exchange *x = arg;
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    const struct provider *p = ex->rt.provider;
    json_t *key = NULL;
    const char *k = NULL;
    size_t kl = 0;
    int rc = -1;
    json_t *root = json_loadb(msg, len, 0, NULL);
    if (!json_is_object(root))
        goto out;
    take_first_message_key(p, root, &key, &k, &kl);
    struct resolve_identity id;
    if (resolve_auth(dp->resolver, k, kl, &id) != RESOLVE_OK) {
        metrics_refused(p, METRICS_REFUSED_AUTH);
        metrics_inc(METRICS_AUTH_FAILURES);
        goto out;
    }
    x->first_text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    rc = first_decide(x, &id, 0, out);
out:
    json_wipe_string(key);
    json_decref(root);
    return rc;
}

/* --- relay callbacks ------------------------------------------------------- */

static int on_message(void *arg, enum relay_ws_dir dir, const char *data, size_t len, bool complete,
                      char **replace, size_t *replace_len, const char **reason)
{
    struct ws_exchange *x = arg;
    struct exchange *ex = &x->base;
    const struct provider *p = ex->rt.provider;
    bool from_client = dir == RELAY_WS_FROM_CLIENT;
    if (from_client && replace != NULL && complete &&
        provider_has_cred(p, PROVIDER_CRED_FIRST_MESSAGE)) {
        /* A first message may carry a key whatever the handshake did: it
         * never goes upstream. */
        json_t *root = json_loadb(data, len, JSON_PRESERVE_ORDER, NULL);
        json_t *key = NULL;
        const char *k;
        size_t kl;
        if (json_is_object(root)) {
            size_t before = json_object_size(root);
            take_first_message_key(p, root, &key, &k, &kl);
            if (json_object_size(root) != before) {
                char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (text != NULL) {
                    *replace = text;
                    *replace_len = strlen(text);
                    data = text;
                    len = *replace_len;
                }
            }
        }
        json_wipe_string(key);
        json_decref(root);
    }
    bool inspect = from_client && x->meter.ops != NULL && x->meter.ops->inspect_client_text;
    struct usage_units before = x->meter.total;
    char model_before[MODEL_MAX];
    if (inspect)
        memcpy(model_before, x->meter.model, sizeof(model_before));
    ws_meter_text(&x->meter, from_client, data, len, complete);
    if (inspect) {
        /* Each message names its model: priced, or refused
         * before it is forwarded - and then not metered either. */
        struct exchange_refusal why;
        x->meter.model_changed = false;
        if (exchange_check_price(ex, x->meter.model, &why) == -1) {
            x->meter.total = before;
            memcpy(x->meter.model, model_before, sizeof(model_before));
            metrics_refused(p, METRICS_REFUSED_MODEL);
            *reason = "model_not_priced";
            return -1;
        }
    }
    return 0;
}

static void on_binary(void *arg, enum relay_ws_dir dir, const uint8_t *data, size_t len,
                      uint64_t off, bool last)
{
    struct ws_exchange *x = arg;
    ws_meter_binary(&x->meter, dir == RELAY_WS_FROM_CLIENT, data, len, off, last);
}

static char *error_body(void *arg, int status, const char *message)
{
    struct ws_exchange *x = arg;
    json_t *j = route_error_body(x->base.rt.provider, status, "upstream_error",
                                 status == 504 ? "upstream_timeout" : "upstream_error", message);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static void on_open(void *arg)
{
    struct ws_exchange *x = arg;
    struct dataplane *dp = x->base.dp;
    x->state = WSX_OPEN;
    x->opened_mono = mono_ms();
    x->access_gen = 0; /* checked at the next tick: a change while it connected counts */
    x->base.rec.ttfb_ms = x->opened_mono - x->base.start_mono;
    metrics_observe_upstream(x->base.rt.provider, 101, x->base.rec.ttfb_ms);
    x->timer = event_new(dp->base, -1, EV_PERSIST, interval_cb, x);
    if (x->timer != NULL) {
        struct timeval tv = {dp->cfg->usage_ws_interval_s, 0};
        evtimer_add(x->timer, &tv);
    }
}

static enum usage_outcome outcome_of(const struct relay_ws_end_info *info)
{
    switch (info->end) {
    case RELAY_WS_END_OK:
    case RELAY_WS_END_POLICY:
        /* A close from the upstream other than normal / going away is the
         * provider failing the session. */
        if (info->close_code != 0 && !info->closed_by_client &&
            info->close_code != WS_CLOSE_NORMAL && info->close_code != WS_CLOSE_GOING_AWAY &&
            info->close_code != WS_CLOSE_NO_STATUS)
            return USAGE_OUTCOME_UPSTREAM_ERROR;
        return USAGE_OUTCOME_OK;
    case RELAY_WS_END_CLIENT_GONE:
    case RELAY_WS_END_SHUTDOWN:
    case RELAY_WS_END_UNAUTHORIZED:
        return USAGE_OUTCOME_CLIENT_DISCONNECT;
    case RELAY_WS_END_TIMEOUT:
        return USAGE_OUTCOME_TIMEOUT;
    case RELAY_WS_END_UPSTREAM_GONE:
    case RELAY_WS_END_UPSTREAM_REFUSED:
        break;
    }
    return USAGE_OUTCOME_UPSTREAM_ERROR;
}

static void on_end(void *arg, const struct relay_ws_end_info *info)
{
    struct ws_exchange *x = arg;
    x->relay = NULL;
    if (x->timer != NULL)
        evtimer_del(x->timer);
    if (x->started) {
        enum usage_outcome outcome = outcome_of(info);
        int status = info->opened_ms ? 101 : (info->upstream_status ? info->upstream_status : 502);
        if (info->opened_ms) {
            struct ws_meter_end end = {
                .wall_ms = MAX((int64_t)0, info->ended_ms - info->opened_ms),
                .bytes_from_client = info->bytes_from_client,
                .bytes_from_upstream = info->bytes_from_upstream,
                .cut = info->end != RELAY_WS_END_OK,
            };
            ws_meter_interval(&x->meter);
            ws_meter_finish(&x->meter, &end);
        }
        write_unit(x, true, status, outcome);
        write_platform(x, true, info->ended_ms, outcome);
    } else if (x->state == WSX_FIRST &&
               (info->end == RELAY_WS_END_TIMEOUT || info->client_close_sent == WS_CLOSE_TOO_BIG)) {
        /* The key's message came too late or too big: refused before
         * anything went upstream (limits.ws_first_message_*). */
        metrics_refused(x->base.rt.provider, METRICS_REFUSED_LIMITS);
    }
    exchange_ws_free(x);
}

/* --- the session ------------------------------------------------------------ */

void exchange_ws_run(struct ws_exchange *x, struct http_conn *c, struct http_request *req)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    const struct provider *p = ex->rt.provider;
    const struct httpparse_request *h = &req->head;
    struct exchange_refusal why;
    const char *bad = NULL;
    char answer[ROUTE_ANSWER_MAX] = "";
    char url[2048], headers[2048];
    headers[0] = '\0';

    int st = ws_check_upgrade(h, &bad);
    if (st != 0) {
        struct http_kv v13[] = {{"Sec-WebSocket-Version", "13"}};
        why = (struct exchange_refusal){.status = st,
                                        .type = "invalid_request_error",
                                        .code = "bad_websocket_upgrade",
                                        .why = METRICS_REFUSED_REQUEST};
        str_copy(why.message, sizeof(why.message), bad);
        metrics_refused(p, why.why);
        http_respond_json(c, st, route_error_body(p, st, why.type, why.code, why.message),
                          st == 426 ? v13 : NULL, st == 426 ? 1 : 0);
        exchange_ws_free(x);
        return;
    }
    if (prepare(x, h, answer, &why) == -1)
        goto refused;
    if (!ex->client_first) {
        if (build_target(x, h, url, sizeof(url), headers, sizeof(headers), &why) == -1)
            goto refused;
        prep_free(x);
        x->state = WSX_CONNECTING;
    } else {
        x->state = WSX_FIRST;
    }
    const struct httpparse_header *kh = httpparse_find(h, "sec-websocket-key");
    char client_key[64];
    snprintf(client_key, sizeof(client_key), "%.*s", kh ? (int)kh->value_len : 0,
             kh ? kh->value : "");
    struct relay_ws_params rp = {
        .base = dp->base,
        .dns = dp->dns,
        .tls = dp->tls_client,
        .limits = &dp->cfg->limits,
        .client_key = client_key,
        .client_protocol = answer[0] != '\0' ? answer : NULL,
        .upstream_url = ex->client_first ? NULL : url,
        .upstream_headers = ex->client_first ? NULL : headers,
        .first_message = ex->first_message,
        .first_len = ex->first_message != NULL ? strlen(ex->first_message) : 0,
        .client_first = ex->client_first,
        .on_first = ex->client_first ? on_first : NULL,
        .max_message = WS_MESSAGE_MAX,
        .meter_max = WS_METER_MAX,
        .on_message = on_message,
        .hold_first_client_message = provider_has_cred(p, PROVIDER_CRED_FIRST_MESSAGE),
        .hold_client_text = x->meter.ops != NULL && x->meter.ops->inspect_client_text,
        .on_binary = on_binary,
        .on_open = on_open,
        .on_end = on_end,
        .error_body = error_body,
        .arg = x,
    };
    /* A first-message session's meter (and its inspection) is known only
     * once it authenticated: per-message inspection is not offered there. */
    /* From here the connection is the relay's: the request is gone. */
    rp.client = http_conn_take(c, &x->slot);
    x->relay = relay_ws_start(&rp);
    crypto_wipe(headers, sizeof(headers));
    if (x->relay == NULL) {
        log_error("request %s: cannot start the WebSocket relay", ex->rec.id);
        bufferevent_free(rp.client);
        exchange_ws_free(x);
        return;
    }
    exchange_link(ex);
    return;
refused:
    crypto_wipe(headers, sizeof(headers));
    exchange_refuse(c, p, &why);
    exchange_ws_free(x);
}

int exchange_ws_check_access(struct exchange *ex)
{
    struct ws_exchange *x = container_of(ex, struct ws_exchange, base);
    uint64_t gen = store_generation();
    if (x->access_gen == gen)
        return 0;
    if (x->state != WSX_OPEN || x->relay == NULL)
        return 0; /* checked again once open */
    struct resolve_identity id;
    enum resolve_status st = resolve_key_identity(ex->dp->resolver, ex->rec.key_id, &id);
    if (st == RESOLVE_STORE_ERROR)
        return 0; /* the next tick tries again */
    x->access_gen = gen;
    if (st == RESOLVE_OK && strcmp(id.tenant.id, ex->rec.tenant_id) == 0 &&
        strcmp(id.tenant.parent_id, ex->parent_id) == 0)
        return 0;
    bool moved = st == RESOLVE_OK && strcmp(id.tenant.id, ex->rec.tenant_id) == 0;
    log_info("ws session %s of tenant %s: %s: ended", ex->rec.session_id, ex->rec.tenant_id,
             moved ? "the tenant's parent changed" : "its key was revoked or its tenant deleted");
    metrics_refused(ex->rt.provider, METRICS_REFUSED_AUTH);
    if (moved)
        end_session(x, 403, "invalid_request_error", "access_changed",
                    "The tenant's agency (parent_id) changed since this session began: start a "
                    "new session.");
    else
        end_session(x, 401, "invalid_request_error", "access_revoked",
                    "The proxy key of this session was revoked, or its tenant deleted.");
    return 1;
}

void exchange_ws_shutdown(struct exchange *ex)
{
    struct ws_exchange *x = container_of(ex, struct ws_exchange, base);
    if (x->relay != NULL)
        relay_ws_shutdown(x->relay);
}
