/* exchange_http.c - one HTTP exchange: the request metered and priced, the
 * upstream request built with the injected key, the reply relayed as it
 * arrives (SSE metered per event, the injected usage chunk dropped when the
 * client did not ask for it), one usage record at the end.
 *
 *   HEAD (stages passed, body coming) --body--> exchange_http_run
 *     meter request, price check --refused--> 403 model_not_priced (no record)
 *     build URL + headers, open key, upstream_start, wipe key
 *   UPSTREAM --on_head--> STREAMING --on_done--> record, free
 *       \                    \
 *        client gone: a non-stream reply that is metered is read on to its
 *        end (DETACHED, bounded by the meter limit and the upstream
 *        timeout) and metered; otherwise the transfer stops and what was
 *        seen is metered (estimated when the provider's report is missing).
 *
 * Every end goes through finish(): record, unlink, free. */
#include "common.h"
#include "exchange.h"
#include "crypto.h"
#include "meter.h"
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SSE_MAX_EVENT  (1024 * 1024)
#define JSON_METER_MAX (8 * 1024 * 1024) /* replies larger than this are not metered */

enum http_state {
    HX_HEAD = 0,  /* stages passed; the body is being read */
    HX_DECIDING,  /* fleet mode: Redis counts the stream (a lease) first */
    HX_UPSTREAM,  /* request sent, no reply head yet */
    HX_STREAMING, /* reply head relayed; body flowing */
    HX_DETACHED,  /* the client left; the reply is read on to meter it */
};

struct http_exchange {
    struct exchange base;
    enum http_state state;
    struct http_conn *c;      /* NULL once the client is gone */
    struct http_request *req; /* the request, while the run waits on Redis */
    struct upstream_xfer *xfer;
    struct evbuffer *body; /* the request body, owned from run on (the upstream borrows it) */
    struct meter meter;
    char *rewritten; /* upstream body when the request was rewritten */
    size_t rewritten_len;
    struct sse_parser *sse;
    struct evbuffer *json; /* a metered JSON reply */
    bool json_overflow;    /* larger than JSON_METER_MAX: not metered */
    bool filter_sse;       /* drop the injected usage chunk */
    bool head_seen;
    int status;
};

static const struct upstream_callbacks upstream_cbs;

struct http_exchange *exchange_http_new(const struct exchange *ex)
{
    struct http_exchange *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->base = *ex;
    x->base.prev = x->base.next = NULL;
    x->state = HX_HEAD;
    return x;
}

void exchange_http_free(void *arg)
{
    struct http_exchange *x = arg;
    if (x == NULL)
        return;
    exchange_unlink(&x->base);
    exchange_release(&x->base);
    sse_free(x->sse);
    if (x->json != NULL)
        evbuffer_free(x->json);
    if (x->body != NULL)
        evbuffer_free(x->body);
    free(x->rewritten);
    free(x);
}

/* Meters the end, writes the record and frees the exchange. */
static void finish(struct http_exchange *x, enum usage_outcome outcome)
{
    struct usage_record *r = &x->base.rec;
    const struct dataplane *dp = x->base.dp;
    r->status = x->status;
    r->outcome = outcome;
    r->duration_ms = mono_ms() - x->base.start_mono;
    if (x->json != NULL && !x->json_overflow && x->status >= 200 && x->status < 300) {
        size_t n = evbuffer_get_length(x->json);
        meter_response_json(&x->meter, (const char *)evbuffer_pullup(x->json, -1), n);
    }
    /* Only a successful (or cut-off successful) exchange consumed anything;
     * an error reply from the provider is recorded with zero units. */
    bool consumed = (x->status >= 200 && x->status < 300) ||
                    (!x->head_seen && outcome == USAGE_OUTCOME_CLIENT_DISCONNECT);
    if (consumed)
        r->estimated = meter_finish(&x->meter);
    else
        memset(&x->meter.units, 0, sizeof(x->meter.units));
    r->units = x->meter.units;
    str_copy(r->model, sizeof(r->model), x->meter.model);
    r->cost_micros = exchange_cost(dp, r->provider, r->model, &r->units);
    exchange_take_hold(&x->base, r); /* becomes the exact charge */
    exchange_submit(r);
    exchange_http_free(x);
}

/* --- the client ----------------------------------------------------------- */

static void on_client_abort(struct http_conn *c, void *arg)
{
    struct http_exchange *x = arg;
    (void)c;
    x->c = NULL;
    if (x->state == HX_DECIDING) {
        /* Gone before anything went upstream: nothing used, no record. */
        exchange_http_free(x);
        return;
    }
    if (!x->head_seen)
        x->status = 499;
    /* What the provider bills does not depend on the client: a non-stream
     * reply that carries the usage is read to its end. */
    if (x->xfer != NULL && meter_wants_json(&x->meter) && !x->meter.stream && !x->json_overflow &&
        (x->json != NULL || !x->head_seen)) {
        x->state = HX_DETACHED;
        exchange_link(&x->base);
        if (upstream_paused(x->xfer))
            upstream_resume(x->xfer);
        return;
    }
    if (x->xfer != NULL) {
        upstream_cancel(x->xfer);
        x->xfer = NULL;
    }
    finish(x, USAGE_OUTCOME_CLIENT_DISCONNECT);
}

static void on_client_drain(struct http_conn *c, void *arg)
{
    struct http_exchange *x = arg;
    (void)c;
    if (x->xfer != NULL && upstream_paused(x->xfer))
        upstream_resume(x->xfer);
}

/* --- upstream ------------------------------------------------------------- */

static bool header_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

static bool listed(const char *const *list, const char *line, size_t name_len)
{
    for (; list != NULL && *list != NULL; list++)
        if (header_is(line, name_len, *list))
            return true;
    return false;
}

static bool hop_by_hop_response(const char *line, size_t name_len)
{
    static const char *const names[] = {
        "connection",     "keep-alive", "proxy-connection", "transfer-encoding",
        "content-length", "te",         "trailer",          "upgrade",
        "date",           NULL};
    return listed(names, line, name_len);
}

static int sse_event(void *arg, const struct sse_event *ev)
{
    struct http_exchange *x = arg;
    bool drop = meter_sse_event(&x->meter, ev->event, ev->data, ev->data_len);
    if (x->filter_sse && !drop && x->c != NULL)
        http_stream_write(x->c, ev->raw, ev->raw_len);
    return 0;
}

static void on_head(struct upstream_xfer *xfer, const struct upstream_head *h, void *arg)
{
    struct http_exchange *x = arg;
    const struct provider *p = x->base.rt.provider;
    bool wallet = !x->base.decision.byok;
    (void)xfer;
    x->head_seen = true;
    x->status = h->status;
    x->base.rec.ttfb_ms = mono_ms() - x->base.start_mono;
    metrics_observe_upstream(p, h->status, x->base.rec.ttfb_ms);
    if (x->state == HX_UPSTREAM)
        x->state = HX_STREAMING;

    struct evbuffer *hdrs = x->c != NULL ? evbuffer_new() : NULL;
    bool is_sse = false, is_json = false;
    size_t rid_rank = SIZE_MAX;
    for (size_t i = 0; i < h->n_lines; i++) {
        const char *line = h->lines[i];
        const char *colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            continue;
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (hop_by_hop_response(line, nl))
            continue;
        /* The platform account's identity stays with the platform. */
        if (wallet && listed(p->wallet_response_headers, line, nl))
            continue;
        meter_response_header(&x->meter, line, nl, v, strlen(v));
        if (header_is(line, nl, "content-type")) {
            is_sse = strncasecmp(v, "text/event-stream", 17) == 0;
            is_json = strncasecmp(v, "application/json", 16) == 0;
        }
        for (size_t k = 0;
             p->request_id_headers != NULL && p->request_id_headers[k] != NULL && k < rid_rank; k++)
            if (header_is(line, nl, p->request_id_headers[k])) {
                str_copy(x->base.rec.upstream_request_id, sizeof(x->base.rec.upstream_request_id),
                         v);
                rid_rank = k;
            }
        if (hdrs != NULL) {
            evbuffer_add(hdrs, line, strlen(line));
            evbuffer_add(hdrs, "\r\n", 2);
        }
    }
    if (hdrs != NULL) {
        evbuffer_add(hdrs, "x-billed-to: ", 13);
        evbuffer_add(hdrs, wallet ? "wallet" : "byok", wallet ? 6 : 4);
        evbuffer_add(hdrs, "\r\nx-proxy-request-id: ", 22);
        evbuffer_add(hdrs, x->base.rec.id, strlen(x->base.rec.id));
        evbuffer_add(hdrs, "\r\n", 2);
    }
    int64_t cl = h->content_length;
    if (is_sse && meter_wants_sse(&x->meter)) {
        x->sse = sse_new(SSE_MAX_EVENT, sse_event, x);
        x->filter_sse = x->sse != NULL && x->meter.stream && !x->meter.client_include_usage &&
                        x->meter.ops->request_body != NULL && x->rewritten != NULL;
        if (x->filter_sse)
            cl = -1; /* the body may shrink */
    } else if (is_json && meter_wants_json(&x->meter) && h->status >= 200 && h->status < 300) {
        x->json = evbuffer_new();
    }
    if (x->c != NULL)
        http_stream_begin(x->c, h->status, NULL, hdrs, cl);
    if (hdrs != NULL)
        evbuffer_free(hdrs);
}

static enum upstream_data_result on_data(struct upstream_xfer *xfer, const char *data, size_t len,
                                         void *arg)
{
    struct http_exchange *x = arg;
    (void)xfer;
    if (x->c != NULL &&
        http_conn_output_pending(x->c) > x->base.dp->cfg->limits.client_high_watermark)
        return UPSTREAM_DATA_PAUSE;
    if (x->sse != NULL) {
        if (x->c != NULL && !x->filter_sse)
            http_stream_write(x->c, data, len);
        if (sse_feed(x->sse, data, len) == -1) {
            /* An event beyond the metering limit: relay the rest untouched. */
            if (x->filter_sse && x->c != NULL) {
                size_t n = 0;
                const char *pending = sse_pending(x->sse, &n);
                http_stream_write(x->c, pending, n);
            }
            log_warn("request %s: SSE event over %d bytes, metering stopped", x->base.rec.id,
                     SSE_MAX_EVENT);
            sse_free(x->sse);
            x->sse = NULL;
            x->filter_sse = false;
        }
        return UPSTREAM_DATA_OK;
    }
    if (x->json != NULL && !x->json_overflow) {
        if (evbuffer_get_length(x->json) + len <= JSON_METER_MAX) {
            evbuffer_add(x->json, data, len);
        } else {
            x->json_overflow = true;
            evbuffer_free(x->json);
            x->json = NULL;
        }
    }
    if (x->c != NULL)
        http_stream_write(x->c, data, len);
    return UPSTREAM_DATA_OK;
}

static void on_done(struct upstream_xfer *xfer, CURLcode result, const char *errbuf, void *arg)
{
    struct http_exchange *x = arg;
    const struct provider *p = x->base.rt.provider;
    (void)xfer;
    x->xfer = NULL;
    struct http_conn *c = x->c;
    enum usage_outcome outcome = USAGE_OUTCOME_OK;
    if (result == CURLE_OPERATION_TIMEDOUT)
        outcome = USAGE_OUTCOME_TIMEOUT;
    else if (result != CURLE_OK)
        outcome = USAGE_OUTCOME_UPSTREAM_ERROR;
    if (outcome != USAGE_OUTCOME_OK) {
        metrics_inc(METRICS_UPSTREAM_ERRORS);
        log_warn("request %s: upstream %s failed: %s", x->base.rec.id, p->name, errbuf);
    }
    if (x->state == HX_DETACHED) {
        finish(x, outcome == USAGE_OUTCOME_OK ? USAGE_OUTCOME_CLIENT_DISCONNECT : outcome);
        return;
    }
    if (c != NULL) {
        http_conn_set_callbacks(c, NULL, NULL, NULL);
        if (!x->head_seen) {
            int status = outcome == USAGE_OUTCOME_TIMEOUT ? 504 : 502;
            x->status = status;
            const char *msg = status == 504
                                  ? "the upstream provider did not answer in time"
                                  : "the upstream provider could not be reached or sent a "
                                    "malformed reply";
            struct http_kv extra[] = {{"x-billed-to", x->base.decision.byok ? "byok" : "wallet"},
                                      {"x-proxy-request-id", x->base.rec.id}};
            http_respond_json(
                c, status,
                route_error_body(p, status, "upstream_error",
                                 status == 504 ? "upstream_timeout" : "upstream_unreachable", msg),
                extra, ARRAY_SIZE(extra));
        } else {
            if (x->filter_sse && x->sse != NULL) {
                /* Bytes after the last complete event go out as they came. */
                size_t n = 0;
                const char *pending = sse_pending(x->sse, &n);
                http_stream_write(c, pending, n);
            }
            http_stream_end(c, outcome == USAGE_OUTCOME_OK);
        }
    }
    finish(x, outcome);
}

static const struct upstream_callbacks upstream_cbs = {on_head, on_data, on_done};

/* --- the request ---------------------------------------------------------- */

/* The forwarded headers, the platform's own headers on a wallet line, and
 * the injected key. */
static int build_headers(const struct exchange *ex, const struct httpparse_request *h,
                         const char *api_key, struct curl_slist **out)
{
    const struct provider *p = ex->rt.provider;
    bool byok = ex->decision.byok;
    struct curl_slist *l = NULL;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *hd = &h->headers[i];
        if (route_strip_header(p, byok, h, hd))
            continue;
        l = upstream_header_append(l, hd->name, hd->name_len, hd->value, hd->value_len);
        if (l == NULL)
            return -1;
    }
    if (!byok) {
        const struct config_platform_key *pk = config_platform_key(ex->dp->cfg, p);
        for (size_t i = 0; i < p->n_platform_headers; i++) {
            const char *v = pk->headers[i];
            const char *name = p->platform_headers[i].header;
            if (v != NULL &&
                (l = upstream_header_append(l, name, strlen(name), v, strlen(v))) == NULL)
                return -1;
        }
    }
    l = route_inject(p, h, l, api_key);
    if (l == NULL)
        return -1;
    /* No "Expect: 100-continue" from curl for large bodies: the body is
     * already here, a round trip would only add latency. */
    struct curl_slist *l2 = curl_slist_append(l, "Expect:");
    if (l2 == NULL) {
        curl_slist_free_all(l);
        return -1;
    }
    *out = l2;
    return 0;
}

static void refuse_and_free(struct http_exchange *x, struct http_conn *c,
                            const struct exchange_refusal *why)
{
    exchange_refuse(c, x->base.rt.provider, why);
    exchange_http_free(x);
}

static void internal_error(struct http_exchange *x, struct http_conn *c, const char *msg)
{
    struct exchange_refusal why = {.status = 500,
                                   .type = "server_error",
                                   .code = "internal_error",
                                   .why = METRICS_REFUSED_UNAVAILABLE};
    str_copy(why.message, sizeof(why.message), msg);
    refuse_and_free(x, c, &why);
}

static void start_upstream(struct http_exchange *x);

static void resume_run(struct exchange *ex)
{
    struct http_exchange *x = container_of(ex, struct http_exchange, base);
    start_upstream(x);
}

static void refused_run(struct exchange *ex, const struct exchange_refusal *why)
{
    struct http_exchange *x = container_of(ex, struct http_exchange, base);
    refuse_and_free(x, x->c, why);
}

void exchange_http_run(struct http_exchange *x, struct http_conn *c, struct http_request *req)
{
    struct exchange *ex = &x->base;
    const struct httpparse_request *h = &req->head;
    struct exchange_refusal why;

    /* The body is ours from here: the upstream borrows it until the transfer
     * ends, which may be after the client (and its request) are gone. */
    x->body = req->body;
    req->body = NULL;
    size_t body_len = x->body != NULL ? evbuffer_get_length(x->body) : 0;
    const char *body = body_len ? (const char *)evbuffer_pullup(x->body, -1) : NULL;

    meter_init(&x->meter, ex->ep != NULL ? ex->ep->meter : NULL);
    if (h->query != NULL)
        meter_request_query(&x->meter, h->query, h->query_len);
    if (body_len > 0) {
        const struct httpparse_header *ct = httpparse_find(h, "content-type");
        if (meter_request(&x->meter, body, body_len, ct ? ct->value : NULL, ct ? ct->value_len : 0,
                          &x->rewritten, &x->rewritten_len) == -1)
            log_debug("request %s: body is not what the meter expects", ex->rec.id);
    }
    /* Fail-closed pricing: a metered wallet call must have a price. */
    if (x->meter.ops != NULL && exchange_check_price(ex, meter_model(&x->meter), &why) == -1) {
        refuse_and_free(x, c, &why);
        return;
    }
    /* A streaming response counts as a live session (DESIGN §6). */
    if (x->meter.stream && exchange_go_live(ex, &why) == -1) {
        refuse_and_free(x, c, &why);
        return;
    }
    x->c = c;
    x->req = req;
    if (ex->admit_pending || ex->live_pending) {
        /* Fleet mode: the admission (when the head did not wait for it,
         * dataplane_head) and the lease are Redis's answers, asked in one
         * step; the rest waits. */
        x->state = HX_DECIDING;
        http_conn_set_callbacks(c, on_client_abort, NULL, x);
        ex->resume = resume_run;
        ex->refused = refused_run;
        int rc = exchange_decide_async(ex, c, &why);
        if (rc == 1)
            return;
        ex->resume = NULL;
        ex->refused = NULL;
        if (rc == -1) {
            refuse_and_free(x, c, &why);
            return;
        }
    }
    start_upstream(x);
}

/* The rest of the run: the upstream request, built with the key. */
static void start_upstream(struct http_exchange *x)
{
    struct exchange *ex = &x->base;
    struct dataplane *dp = ex->dp;
    const struct provider *p = ex->rt.provider;
    struct http_conn *c = x->c;
    struct http_request *req = x->req;
    const struct httpparse_request *h = &req->head;
    struct exchange_refusal why;
    size_t body_len = x->body != NULL ? evbuffer_get_length(x->body) : 0;
    const char *body = body_len ? (const char *)evbuffer_pullup(x->body, -1) : NULL;

    /* URL = upstream base (of the key's region where it has one) + path
     * after the route prefix + query without credentials. */
    char base[1024];
    if (resolve_open_key(dp->resolver, &ex->decision) == -1) {
        internal_error(x, c, "the key for this request cannot be opened");
        return;
    }
    if (route_upstream_base(dp->cfg, p, ex->rt.host, ex->decision.region, base, sizeof(base)) ==
        -1) {
        resolve_done(&ex->decision);
        why = (struct exchange_refusal){.status = 502,
                                        .type = "server_error",
                                        .code = "no_upstream",
                                        .why = METRICS_REFUSED_UNAVAILABLE};
        snprintf(why.message, sizeof(why.message),
                 "no upstream is configured for this route (or the key has no valid region)");
        refuse_and_free(x, c, &why);
        return;
    }
    size_t url_size = strlen(base) + ex->rt.upstream_path_len + h->query_len + 2;
    char *url = malloc(url_size);
    char *query = h->query != NULL ? malloc(h->query_len + 1) : NULL;
    int query_len = query != NULL ? route_forward_query(h, query, h->query_len + 1) : 0;
    struct curl_slist *headers = NULL;
    if (url == NULL || (h->query != NULL && query == NULL) || query_len < 0 ||
        build_headers(ex, h, ex->decision.api_key, &headers) == -1) {
        free(url);
        free(query);
        resolve_done(&ex->decision);
        internal_error(x, c, "out of memory");
        return;
    }
    size_t base_len = strlen(base), at = 0;
    memcpy(url, base, base_len);
    at = base_len;
    memcpy(url + at, ex->rt.upstream_path, ex->rt.upstream_path_len);
    at += ex->rt.upstream_path_len;
    if (query_len > 0) {
        url[at++] = '?';
        memcpy(url + at, query, (size_t)query_len);
        at += (size_t)query_len;
    }
    url[at] = '\0';
    free(query);

    char method[16];
    size_t ml = MIN(h->method_len, sizeof(method) - 1);
    memcpy(method, h->method, ml);
    method[ml] = '\0';
    struct upstream_request ureq = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = x->rewritten != NULL ? x->rewritten : body,
        .body_len = x->rewritten != NULL ? x->rewritten_len : body_len,
        .has_body = body_len > 0 || h->content_length == 0 || h->chunked,
        .ca_pem = config_upstream_ca_pem(dp->cfg, p, ex->rt.host),
    };
    x->state = HX_UPSTREAM;
    x->xfer = upstream_start(dp->pool, &ureq, &upstream_cbs, x);
    free(url);
    resolve_done(&ex->decision); /* the key now lives only in the headers (wiped on free) */
    if (x->xfer == NULL) {
        why = (struct exchange_refusal){.status = 502,
                                        .type = "server_error",
                                        .code = "internal_error",
                                        .why = METRICS_REFUSED_UNAVAILABLE};
        snprintf(why.message, sizeof(why.message),
                 "the proxy could not start the upstream request");
        refuse_and_free(x, c, &why);
        return;
    }
    http_conn_set_callbacks(c, on_client_abort, on_client_drain, x);
}

void exchange_http_shutdown(struct exchange *ex)
{
    struct http_exchange *x = container_of(ex, struct http_exchange, base);
    if (x->state != HX_DETACHED || x->xfer == NULL)
        return;
    upstream_cancel(x->xfer);
    x->xfer = NULL;
    finish(x, USAGE_OUTCOME_CLIENT_DISCONNECT);
}
