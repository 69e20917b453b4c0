/* dataplane.c - the data-plane request handler: route, authenticate the
 * proxy key, resolve key and payer, meter the request, relay the exchange
 * through upstream.c with back-pressure, and emit one usage record.
 *
 *   client ─req─> route ─> resolve_auth ─> resolve_session ─> meter_request
 *                                                                 │
 *   client <─head/bytes── on_head / on_data <── libcurl <─────────┘ upstream_start
 *        (SSE: metered per event; the injected usage chunk dropped when the
 *         client did not ask for it)
 *   on_done / client abort ──> meter_finish ─> pricing ─> usage_submit
 */
#include "common.h"
#include "dataplane.h"
#include "crypto.h"
#include "meter.h"
#include "metrics.h"
#include "pricing.h"
#include "route.h"
#include "sse.h"
#include "relay_ws.h"
#include "usage.h"
#include "ws.h"

#include <event2/dns.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SSE_MAX_EVENT  (1024 * 1024)
#define JSON_METER_MAX (8 * 1024 * 1024) /* replies larger than this are not metered */

struct dataplane {
    const struct config *cfg;
    struct upstream_pool *pool;
    struct resolver *resolver;
    struct event_base *base;
    struct evdns_base *dns;      /* upstream WebSocket host names */
    SSL_CTX *tls_client;         /* upstream wss:// (borrowed) */
    struct ws_session *sessions; /* live WebSocket sessions (for shutdown) */
    size_t n_sessions;
};

/* What the upstream handshake needs from the client's upgrade request,
 * copied out of it: in the first-message mode (ElevenLabs browsers) the
 * request is gone when the key arrives. */
struct ws_prep {
    struct route rt;    /* provider and host kind; upstream_path is the request's: unused */
    char tail[1536];    /* upstream path and forwarded query (no credentials) */
    char headers[1536]; /* forwarded lines: subprotocols, OpenAI/Cartesia headers */
};

/* One relayed WebSocket session (OpenAI Realtime) and what it used. */
struct ws_session {
    struct dataplane *dp;
    struct ws_session *prev, *next;
    struct relay_ws *relay;
    struct usage_record rec; /* the session's record, filled at the end */
    int64_t start_mono;
    bool got_usage;
    enum provider_id provider;
    int64_t pcm_bytes_per_s; /* Deepgram linear16: for an estimate without Metadata */
    int64_t el_code_points;  /* ElevenLabs stream-input: text characters sent */
    /* Azure Speech STT: framed binary audio from the client, each message
     * [2-byte header length][headers][payload]; the first payload is the
     * WAV header with the byte rate. */
    uint32_t az_hdr;          /* header length being read (its 2 bytes) */
    uint64_t az_payload_from; /* message offset where the payload starts */
    bool az_riff_seen;
    int64_t az_byte_rate;
    int64_t az_audio_bytes;
    /* What the upstream handshake needs from the upgrade request; freed
     * once the upstream URL and headers are built. */
    struct ws_prep *prep;
    bool started; /* authenticated and resolved: the record is written at the end */
};

struct exchange {
    struct dataplane *dp;
    struct http_conn *c; /* NULL once the client is gone */
    struct http_request *req;
    struct upstream_xfer *xfer;
    struct resolve_decision decision;
    struct meter meter;
    struct usage_record rec;
    char *rewritten; /* upstream body when the request was rewritten */
    size_t rewritten_len;

    struct sse_parser *sse;
    struct evbuffer *json; /* non-stream JSON reply kept for metering */
    bool filter_sse;       /* drop the injected usage chunk */
    bool head_seen;
    int status;
};

struct dataplane *dataplane_new(const struct config *cfg, struct upstream_pool *pool,
                                struct resolver *resolver, struct event_base *base,
                                SSL_CTX *tls_client)
{
    struct dataplane *dp = calloc(1, sizeof(*dp));
    if (dp == NULL)
        return NULL;
    dp->cfg = cfg;
    dp->pool = pool;
    dp->resolver = resolver;
    dp->base = base;
    dp->tls_client = tls_client;
    dp->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (dp->dns == NULL)
        dp->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (dp->dns == NULL) {
        free(dp);
        return NULL;
    }
    return dp;
}

void dataplane_free(struct dataplane *dp)
{
    if (dp == NULL)
        return;
    evdns_base_free(dp->dns, 0);
    free(dp);
}

size_t dataplane_ws_sessions(const struct dataplane *dp)
{
    return dp->n_sessions;
}

void dataplane_shutdown(struct dataplane *dp)
{
    for (struct ws_session *s = dp->sessions; s != NULL; s = s->next)
        relay_ws_shutdown(s->relay);
}

/* --- proxy-made replies --------------------------------------------------- */

static void reply_error(struct http_conn *c, enum provider_id p, int status, const char *type,
                        const char *code, const char *message, const struct http_kv *extra,
                        size_t n_extra)
{
    metrics_inc(METRICS_REQUESTS_TOTAL);
    if (status < 500)
        metrics_inc(METRICS_REQUESTS_REJECTED);
    http_respond_json(c, status, route_error_body(p, status, type, code, message), extra, n_extra);
}

/* --- exchange lifecycle --------------------------------------------------- */

static void exchange_free(struct exchange *ex)
{
    sse_free(ex->sse);
    if (ex->json)
        evbuffer_free(ex->json);
    free(ex->rewritten);
    free(ex);
}

/* Finalises metering and hands the record to the writer. */
static void exchange_record(struct exchange *ex, enum usage_outcome outcome)
{
    struct usage_record *r = &ex->rec;
    r->status = ex->status;
    r->outcome = outcome;
    r->duration_ms = mono_ms() - ex->req->start_mono;
    if (ex->json != NULL && outcome == USAGE_OUTCOME_OK) {
        size_t n = evbuffer_get_length(ex->json);
        const char *body = (const char *)evbuffer_pullup(ex->json, -1);
        meter_response_json(&ex->meter, body, n);
    }
    /* Only a successful (or cut-off successful) exchange consumed anything;
     * an error reply from the provider is recorded with zero units. */
    bool consumed = (ex->status >= 200 && ex->status < 300) ||
                    (!ex->head_seen && outcome == USAGE_OUTCOME_CLIENT_DISCONNECT);
    if (consumed)
        r->estimated = meter_finish(&ex->meter);
    else
        memset(&ex->meter.units, 0, sizeof(ex->meter.units));
    r->units = ex->meter.units;
    snprintf(r->model, sizeof(r->model), "%s", ex->meter.model);
    r->cost_micros = pricing_cost(pricing_find(ex->dp->cfg, r->provider, r->model), &r->units);
    usage_submit(r);
    metrics_inc(METRICS_REQUESTS_TOTAL);
}

static void on_client_abort(struct http_conn *c, void *arg)
{
    struct exchange *ex = arg;
    (void)c;
    ex->c = NULL;
    if (ex->xfer != NULL) {
        upstream_cancel(ex->xfer);
        ex->xfer = NULL;
    }
    if (!ex->head_seen)
        ex->status = 499;
    exchange_record(ex, USAGE_OUTCOME_CLIENT_DISCONNECT);
    exchange_free(ex);
}

static void on_client_drain(struct http_conn *c, void *arg)
{
    struct exchange *ex = arg;
    (void)c;
    if (ex->xfer != NULL && upstream_paused(ex->xfer))
        upstream_resume(ex->xfer);
}

/* --- upstream callbacks --------------------------------------------------- */

static bool header_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

static bool hop_by_hop_response(const char *line, size_t name_len)
{
    static const char *const names[] = {"connection",        "keep-alive",     "proxy-connection",
                                        "transfer-encoding", "content-length", "te",
                                        "trailer",           "upgrade",        "date"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (header_is(line, name_len, names[i]))
            return true;
    return false;
}

static int sse_event(void *arg, const struct sse_event *ev)
{
    struct exchange *ex = arg;
    bool drop = meter_sse_event(&ex->meter, ev->event, ev->data, ev->data_len);
    if (ex->filter_sse && !drop && ex->c != NULL)
        http_stream_write(ex->c, ev->raw, ev->raw_len);
    return 0;
}

static void on_head(struct upstream_xfer *x, const struct upstream_head *h, void *arg)
{
    struct exchange *ex = arg;
    (void)x;
    ex->head_seen = true;
    ex->status = h->status;
    ex->rec.ttfb_ms = mono_ms() - ex->req->start_mono;
    metrics_observe_upstream(ex->rec.provider, h->status, ex->rec.ttfb_ms);

    struct evbuffer *hdrs = evbuffer_new();
    bool is_sse = false, is_json = false;
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
        if (ex->meter.kind != METER_NONE)
            meter_response_header(&ex->meter, line, nl, v, strlen(v));
        if (header_is(line, nl, "content-type")) {
            is_sse = strncasecmp(v, "text/event-stream", 17) == 0;
            is_json = strncasecmp(v, "application/json", 16) == 0;
        } else if (header_is(line, nl, "x-request-id") || header_is(line, nl, "request-id") ||
                   header_is(line, nl, "dg-request-id") || header_is(line, nl, "x-requestid") ||
                   header_is(line, nl, "apim-request-id")) {
            snprintf(ex->rec.upstream_request_id, sizeof(ex->rec.upstream_request_id), "%s", v);
        }
        if (hdrs) {
            evbuffer_add(hdrs, line, strlen(line));
            evbuffer_add(hdrs, "\r\n", 2);
        }
    }
    if (hdrs) {
        evbuffer_add_printf(hdrs, "x-billed-to: %s\r\nx-proxy-request-id: %s\r\n",
                            ex->decision.byok ? "byok" : "wallet", ex->rec.id);
    }
    int64_t cl = h->content_length;
    if (is_sse && ex->meter.kind != METER_NONE) {
        ex->sse = sse_new(SSE_MAX_EVENT, sse_event, ex);
        ex->filter_sse = ex->sse != NULL && ex->meter.kind == METER_CHAT && ex->meter.stream &&
                         !ex->meter.client_include_usage;
        if (ex->filter_sse)
            cl = -1; /* the body may shrink */
    } else if (is_json && ex->meter.kind != METER_NONE && h->status >= 200 && h->status < 300) {
        ex->json = evbuffer_new();
    }
    if (ex->c != NULL)
        http_stream_begin(ex->c, h->status, NULL, hdrs, cl);
    if (hdrs)
        evbuffer_free(hdrs);
}

static enum upstream_data_result on_data(struct upstream_xfer *x, const char *data, size_t len,
                                         void *arg)
{
    struct exchange *ex = arg;
    (void)x;
    if (ex->c == NULL)
        return UPSTREAM_DATA_OK;
    if (http_conn_output_pending(ex->c) > ex->dp->cfg->limits.client_high_watermark)
        return UPSTREAM_DATA_PAUSE;
    if (ex->sse != NULL) {
        if (!ex->filter_sse)
            http_stream_write(ex->c, data, len);
        if (sse_feed(ex->sse, data, len) == -1) {
            /* An event beyond the metering limit: relay the rest untouched. */
            if (ex->filter_sse) {
                size_t n = 0;
                const char *pending = sse_pending(ex->sse, &n);
                http_stream_write(ex->c, pending, n);
            }
            log_warn("request %s: SSE event over %d bytes, metering stopped", ex->rec.id,
                     SSE_MAX_EVENT);
            sse_free(ex->sse);
            ex->sse = NULL;
            ex->filter_sse = false;
        }
        return UPSTREAM_DATA_OK;
    }
    if (ex->json != NULL) {
        if (evbuffer_get_length(ex->json) + len <= JSON_METER_MAX) {
            evbuffer_add(ex->json, data, len);
        } else {
            evbuffer_free(ex->json);
            ex->json = NULL;
        }
    }
    http_stream_write(ex->c, data, len);
    return UPSTREAM_DATA_OK;
}

static void on_done(struct upstream_xfer *x, CURLcode result, const char *errbuf, void *arg)
{
    struct exchange *ex = arg;
    (void)x;
    ex->xfer = NULL;
    struct http_conn *c = ex->c;
    enum usage_outcome outcome = USAGE_OUTCOME_OK;
    if (result == CURLE_OPERATION_TIMEDOUT)
        outcome = USAGE_OUTCOME_TIMEOUT;
    else if (result != CURLE_OK)
        outcome = USAGE_OUTCOME_UPSTREAM_ERROR;

    if (outcome != USAGE_OUTCOME_OK) {
        metrics_inc(METRICS_UPSTREAM_ERRORS);
        log_warn("request %s: upstream %s failed: %s", ex->rec.id, provider_name(ex->rec.provider),
                 errbuf);
    }
    if (c != NULL) {
        http_conn_set_callbacks(c, NULL, NULL, NULL);
        if (!ex->head_seen) {
            int status = outcome == USAGE_OUTCOME_TIMEOUT ? 504 : 502;
            ex->status = status;
            const char *msg = status == 504
                                  ? "the upstream provider did not answer in time"
                                  : "the upstream provider could not be reached or sent a "
                                    "malformed reply";
            struct http_kv extra[] = {{"x-billed-to", ex->decision.byok ? "byok" : "wallet"},
                                      {"x-proxy-request-id", ex->rec.id}};
            http_respond_json(
                c, status,
                route_error_body(ex->rec.provider, status, "upstream_error",
                                 status == 504 ? "upstream_timeout" : "upstream_unreachable", msg),
                extra, ARRAY_SIZE(extra));
        } else {
            if (ex->filter_sse && ex->sse != NULL) {
                /* Bytes after the last complete event go out as they came. */
                size_t n = 0;
                const char *pending = sse_pending(ex->sse, &n);
                http_stream_write(c, pending, n);
            }
            http_stream_end(c, outcome == USAGE_OUTCOME_OK);
        }
    }
    exchange_record(ex, outcome);
    exchange_free(ex);
}

static const struct upstream_callbacks upstream_cbs = {on_head, on_data, on_done};

/* --- request handling ----------------------------------------------------- */

static int build_headers(const struct httpparse_request *h, enum provider_id p, const char *api_key,
                         struct curl_slist **out)
{
    struct curl_slist *l = NULL;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *hd = &h->headers[i];
        if (route_strip_header(p, h, hd))
            continue;
        l = upstream_header_append(l, hd->name, hd->name_len, hd->value, hd->value_len);
        if (l == NULL)
            return -1;
    }
    /* The injected credential, where this provider expects it. */
    l = route_inject(p, h, l, api_key);
    if (l == NULL)
        return -1;
    /* No "Expect: 100-continue" from curl for large bodies: the body is
     * already here, a round trip would only add latency. */
    struct curl_slist *l2 = curl_slist_append(l, "Expect:");
    if (l2 == NULL)
        goto failed;
    *out = l2;
    return 0;
failed:
    curl_slist_free_all(l);
    return -1;
}

/* The line of a call that uses nothing metered (a voices list, a models
 * list): named after what the provider is for. */
static const char *unmetered_line(const struct route *rt)
{
    switch (rt->provider) {
    case PROVIDER_ELEVENLABS:
    case PROVIDER_CARTESIA:
        return "tts";
    case PROVIDER_AZURE_SPEECH:
        return rt->azure_stt ? "stt" : "tts";
    case PROVIDER_DEEPGRAM:
        return "stt";
    case PROVIDER_OPENAI:
        /* Minting a Realtime client secret / session: a realtime line. */
        if (rt->upstream_path_len >= 12 && memcmp(rt->upstream_path, "/v1/realtime", 12) == 0)
            return "realtime";
        return "llm";
    default:
        return "llm";
    }
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

/* --- WebSocket sessions: OpenAI Realtime, Deepgram live, Cartesia ----------
 *
 * One record per session (OpenAI: line "realtime" with the usage of every
 * response.done and input transcription summed; Deepgram: "stt" with the
 * final Metadata duration; Cartesia: "tts" with the characters of the
 * transcripts sent), written when the socket closes, plus a "platform" line
 * (per-minute fee, always billed to the wallet) for a session that opened.
 * Per session rather than per response: a session is what the assistant
 * bills and pins, and one record survives a socket cut mid-reply. */

#define RT_METER_MAX (256 * 1024)

static void ws_session_unlink(struct ws_session *s)
{
    struct dataplane *dp = s->dp;
    if (s->prev)
        s->prev->next = s->next;
    else
        dp->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    dp->n_sessions--;
}

static void ws_session_free(struct ws_session *s)
{
    if (s->prep != NULL)
        crypto_wipe(s->prep, sizeof(*s->prep)); /* the forwarded headers */
    free(s->prep);
    free(s);
}

static int64_t json_count(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/* Code points of the string member `field` of a JSON text message. */
static int64_t json_string_chars(const char *data, size_t len, const char *field)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    const char *t = json_string_value(json_object_get(root, field));
    int64_t n = 0;
    for (; t != NULL && *t; t++)
        n += ((unsigned char)*t & 0xc0) != 0x80;
    json_decref(root);
    return n;
}

/* Azure Speech STT: counts the audio payload bytes of the client's binary
 * frames (PROVIDERS.md §3.3), skipping each frame's header block and the
 * WAV header of the first; the byte rate comes from that WAV header. */
static void az_on_binary(void *arg, enum relay_ws_dir dir, const uint8_t *data, size_t len,
                         uint64_t off, bool last)
{
    struct ws_session *s = arg;
    (void)last;
    if (s->provider != PROVIDER_AZURE_SPEECH || dir != RELAY_WS_FROM_CLIENT)
        return;
    for (size_t i = 0; i < len; i++, off++) {
        if (off < 2) {
            s->az_hdr = off == 0 ? data[i] : (s->az_hdr << 8) | data[i];
            if (off == 1)
                s->az_payload_from = 2 + (uint64_t)s->az_hdr;
            continue;
        }
        if (off < s->az_payload_from)
            continue;
        /* Payload from here on in this chunk. */
        const uint8_t *p = data + i;
        size_t n = len - i;
        if (!s->az_riff_seen && off == s->az_payload_from && n >= 44 && memcmp(p, "RIFF", 4) == 0 &&
            memcmp(p + 8, "WAVE", 4) == 0) {
            s->az_riff_seen = true;
            s->az_byte_rate =
                (int64_t)p[28] | (int64_t)p[29] << 8 | (int64_t)p[30] << 16 | (int64_t)p[31] << 24;
            n -= 44;
        }
        s->az_audio_bytes += (int64_t)n;
        return;
    }
}

/* Deepgram live: the final Metadata message has the billed duration;
 * Cartesia: the characters of every transcript the client sent. */
static void voice_ws_meter(struct ws_session *s, enum relay_ws_dir dir, const char *data,
                           size_t len)
{
    struct usage_units *u = &s->rec.units;
    if (s->provider == PROVIDER_DEEPGRAM && dir == RELAY_WS_FROM_UPSTREAM &&
        memmem(data, len, "\"Metadata\"", 10) != NULL) {
        json_t *root = json_loadb(data, len, 0, NULL);
        json_t *d = json_object_get(root, "duration");
        if (json_is_number(d) && json_number_value(d) > 0) {
            u->audio_ms = (int64_t)(json_number_value(d) * 1000.0 + 0.5);
            s->got_usage = true;
        }
        json_decref(root);
    } else if (s->provider == PROVIDER_AZURE_SPEECH && dir == RELAY_WS_FROM_CLIENT) {
        /* TTS: the SSML of "Path: ssml" messages (CRLF headers, blank line,
         * body) is what is billed. */
        const char *end = memmem(data, len, "\r\n\r\n", 4);
        if (end != NULL && memmem(data, (size_t)(end - data), "ath: ssml", 9) != NULL) {
            const char *body = end + 4;
            u->characters += meter_ssml_characters(body, len - (size_t)(body - data));
            s->got_usage = true;
        }
    } else if (s->provider == PROVIDER_ELEVENLABS && dir == RELAY_WS_FROM_CLIENT &&
               memmem(data, len, "\"text\"", 6) != NULL) {
        /* Code points sent; the model's credit rate applies at the end. */
        s->el_code_points += json_string_chars(data, len, "text");
        s->got_usage = true;
    } else if (s->provider == PROVIDER_CARTESIA && dir == RELAY_WS_FROM_CLIENT &&
               memmem(data, len, "\"transcript\"", 12) != NULL) {
        u->characters += json_string_chars(data, len, "transcript");
        if (s->rec.model[0] == '\0') {
            json_t *root = json_loadb(data, len, 0, NULL);
            const char *m = json_string_value(json_object_get(root, "model_id"));
            if (m != NULL)
                snprintf(s->rec.model, sizeof(s->rec.model), "%s", m);
            json_decref(root);
        }
        s->got_usage = true;
    }
}

static void rt_on_message(void *arg, enum relay_ws_dir dir, const char *data, size_t len,
                          bool complete, char **replace, size_t *replace_len)
{
    struct ws_session *s = arg;
    if (replace != NULL && s->provider == PROVIDER_ELEVENLABS && complete &&
        (memmem(data, len, "xi_api_key", 10) != NULL ||
         memmem(data, len, "\"authorization\"", 15) != NULL)) {
        /* The first message may carry a key (browsers): it never goes
         * upstream, whatever key it is. */
        json_t *root = json_loadb(data, len, JSON_PRESERVE_ORDER, NULL);
        if (json_is_object(root)) {
            json_object_del(root, "xi_api_key");
            json_object_del(root, "authorization");
            char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (text != NULL) {
                *replace = text;
                *replace_len = strlen(text);
            }
        }
        json_decref(root);
    }
    if (!complete)
        return;
    if (s->provider != PROVIDER_OPENAI) {
        voice_ws_meter(s, dir, data, len);
        return;
    }
    if (dir != RELAY_WS_FROM_UPSTREAM)
        return;
    /* Only two server events carry usage; skip the JSON parse of the rest
     * (audio deltas are most of the traffic). */
    bool done = memmem(data, len, "\"response.done\"", 15) != NULL;
    bool transcribed =
        !done && memmem(data, len, "input_audio_transcription.completed\"", 36) != NULL;
    if (!done && !transcribed)
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    struct usage_units *u = &s->rec.units;
    if (done) {
        json_t *usage = json_object_get(json_object_get(root, "response"), "usage");
        if (json_is_object(usage)) {
            json_t *in = json_object_get(usage, "input_token_details");
            json_t *out = json_object_get(usage, "output_token_details");
            u->input_tokens += json_count(usage, "input_tokens");
            u->output_tokens += json_count(usage, "output_tokens");
            u->cached_input_tokens += json_count(in, "cached_tokens");
            u->audio_input_tokens += json_count(in, "audio_tokens");
            u->audio_output_tokens += json_count(out, "audio_tokens");
            s->got_usage = true;
        }
    } else {
        json_t *usage = json_object_get(root, "usage");
        json_t *secs = json_object_get(usage, "seconds");
        if (json_is_number(secs) && json_number_value(secs) > 0) {
            u->audio_ms += (int64_t)(json_number_value(secs) * 1000.0 + 0.5);
        } else if (json_is_object(usage)) {
            u->input_tokens += json_count(usage, "input_tokens");
            u->output_tokens += json_count(usage, "output_tokens");
        }
        s->got_usage = true;
    }
    json_decref(root);
}

static char *rt_error_body(void *arg, int status, const char *message)
{
    struct ws_session *s = arg;
    json_t *j = route_error_body(s->provider, status, "upstream_error",
                                 status == 504 ? "upstream_timeout" : "upstream_error", message);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static void rt_on_open(void *arg)
{
    struct ws_session *s = arg;
    s->rec.ttfb_ms = mono_ms() - s->start_mono;
}

static void rt_on_end(void *arg, const struct relay_ws_end_info *info)
{
    struct ws_session *s = arg;
    struct dataplane *dp = s->dp;
    struct usage_record *r = &s->rec;
    ws_session_unlink(s);
    if (!s->started) {
        /* Client-first and the first message never authenticated: nobody
         * to bill, nothing reached the upstream. */
        ws_session_free(s);
        return;
    }
    r->status = info->opened_ms ? 101 : (info->upstream_status ? info->upstream_status : 502);
    switch (info->end) {
    case RELAY_WS_END_OK:
        r->outcome = USAGE_OUTCOME_OK;
        break;
    case RELAY_WS_END_CLIENT_GONE:
    case RELAY_WS_END_SHUTDOWN:
    case RELAY_WS_END_UNAUTHORIZED: /* not once started */
        r->outcome = USAGE_OUTCOME_CLIENT_DISCONNECT;
        break;
    case RELAY_WS_END_TIMEOUT:
        r->outcome = USAGE_OUTCOME_TIMEOUT;
        break;
    case RELAY_WS_END_UPSTREAM_GONE:
    case RELAY_WS_END_UPSTREAM_REFUSED:
        r->outcome = USAGE_OUTCOME_UPSTREAM_ERROR;
        break;
    }
    r->duration_ms = mono_ms() - s->start_mono;
    if (s->provider == PROVIDER_AZURE_SPEECH && s->az_audio_bytes > 0) {
        /* Without a WAV header the SDK's default format: 16 kHz 16-bit mono. */
        int64_t rate = s->az_byte_rate > 0 ? s->az_byte_rate : 32000;
        r->units.audio_ms += s->az_audio_bytes * 1000 / rate;
        r->estimated = s->az_byte_rate <= 0;
    }
    if (s->provider == PROVIDER_ELEVENLABS) {
        if (r->model[0] == '\0')
            snprintf(r->model, sizeof(r->model), "eleven_multilingual_v2"); /* the default */
        r->units.characters = meter_el_characters(r->model, s->el_code_points);
    }
    if (s->provider == PROVIDER_DEEPGRAM && !s->got_usage && s->pcm_bytes_per_s > 0 &&
        info->bytes_from_client > 0) {
        /* No final Metadata (the client never sent CloseStream, or the
         * socket was cut): estimate the streamed audio from its bytes. */
        r->units.audio_ms =
            (int64_t)(info->bytes_from_client * 1000 / (uint64_t)s->pcm_bytes_per_s);
        r->estimated = true;
    }
    r->cost_micros = pricing_cost(pricing_find(dp->cfg, r->provider, r->model), &r->units);
    usage_submit(r);
    metrics_inc(METRICS_REQUESTS_TOTAL);

    if (info->opened_ms) {
        /* The platform's per-minute fee for a voice session: always the
         * wallet's, whoever's key carried the audio. */
        struct usage_record pl = *r;
        if (crypto_new_ulid("", pl.id, sizeof(pl.id)) == 0) {
            int64_t ms = MAX((int64_t)0, info->ended_ms - info->opened_ms);
            snprintf(pl.line, sizeof(pl.line), "platform");
            pl.billed_byok = false;
            pl.connection_id[0] = '\0';
            pl.fallback_reason[0] = '\0';
            memset(&pl.units, 0, sizeof(pl.units));
            pl.units.audio_ms = ms;
            pl.estimated = false;
            const struct config_price *price = pricing_find(dp->cfg, r->provider, r->model);
            pl.cost_micros = price && price->session_per_minute > 0
                                 ? (price->session_per_minute * ms + 30000) / 60000
                                 : 0;
            usage_submit(&pl);
        }
    }
    ws_session_free(s);
}

/* The value of query parameter name (raw), copied into out; "" if absent. */
static void query_param(const struct httpparse_request *h, const char *name, char *out,
                        size_t out_size)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            snprintf(out, out_size, "%.*s", (int)(pe - q - (ptrdiff_t)nl - 1), q + nl + 1);
            return;
        }
        q = amp ? amp + 1 : end;
    }
}

/* The WebSocket routes served (the path after the route prefix). */
static bool ws_route(const struct route *rt)
{
    static const struct {
        enum provider_id p;
        const char *path;
    } routes[] = {
        {PROVIDER_OPENAI, "/v1/realtime"},
        {PROVIDER_DEEPGRAM, "/v1/listen"},
        {PROVIDER_CARTESIA, "/tts/websocket"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
        if (rt->provider == routes[i].p && rt->upstream_path_len == strlen(routes[i].path) &&
            memcmp(rt->upstream_path, routes[i].path, rt->upstream_path_len) == 0)
            return true;
    if (rt->provider == PROVIDER_AZURE_SPEECH) {
        /* The Speech SDK's sockets (PROVIDERS.md §3.3). */
        static const char *const stt[] = {
            "/stt/speech/universal/v2",
            "/speech/recognition/interactive/cognitiveservices/v1",
            "/speech/recognition/conversation/cognitiveservices/v1",
            "/speech/recognition/dictation/cognitiveservices/v1",
        };
        static const char tts_ws[] = "/tts/cognitiveservices/websocket/v1";
        if (!rt->azure_stt)
            return rt->upstream_path_len == sizeof(tts_ws) - 1 &&
                   memcmp(rt->upstream_path, tts_ws, sizeof(tts_ws) - 1) == 0;
        for (size_t i = 0; i < ARRAY_SIZE(stt); i++)
            if (rt->upstream_path_len == strlen(stt[i]) &&
                memcmp(rt->upstream_path, stt[i], rt->upstream_path_len) == 0)
                return true;
        return false;
    }
    /* ElevenLabs /v1/text-to-speech/{voice_id}/stream-input (and multi-). */
    static const char tts[] = "/v1/text-to-speech/";
    const char *path = rt->upstream_path;
    size_t n = rt->upstream_path_len;
    if (rt->provider != PROVIDER_ELEVENLABS || n <= sizeof(tts) - 1 ||
        memcmp(path, tts, sizeof(tts) - 1) != 0)
        return false;
    const char *voice = path + sizeof(tts) - 1;
    const char *slash = memchr(voice, '/', (size_t)(path + n - voice));
    if (slash == NULL || slash == voice)
        return false;
    size_t rest = (size_t)(path + n - slash);
    return (rest == 13 && memcmp(slash, "/stream-input", 13) == 0) ||
           (rest == 19 && memcmp(slash, "/multi-stream-input", 19) == 0);
}

/* Why a session could not be resolved into an upstream connection. */
enum ws_begin {
    WS_BEGIN_OK = 0,
    WS_BEGIN_NO_FUNDS,    /* the balance gate: 402 */
    WS_BEGIN_NO_KEY,      /* no platform key for the provider */
    WS_BEGIN_NO_UPSTREAM, /* no upstream configured (Azure: no valid region) */
    WS_BEGIN_URL_TOO_LONG,
    WS_BEGIN_HEADERS_TOO_LARGE,
    WS_BEGIN_INTERNAL,
};

/* Copies out of the upgrade request what the session needs later: the
 * record's request fields, and s->prep (path, query, forwarded headers,
 * protocols[0..plen) to pass on). Returns 0, or the HTTP status to refuse
 * the upgrade with (414, 400, 500). */
static int ws_prepare(struct dataplane *dp, struct ws_session *s, const struct http_request *req,
                      const struct route *rt, const char *protocols, size_t plen)
{
    const struct httpparse_request *h = &req->head;
    const enum provider_id p = rt->provider;
    struct usage_record *r = &s->rec;
    s->dp = dp;
    s->provider = p;
    s->start_mono = req->start_mono;
    r->ts_ms = req->start_ms;
    r->ttfb_ms = -1;
    r->provider = p;
    r->has_slot = provider_is_slot(p);
    const struct httpparse_header *sh = httpparse_find(h, "x-session-id");
    if (sh != NULL && session_id_ok(sh->value, sh->value_len))
        snprintf(r->session_id, sizeof(r->session_id), "%.*s", (int)sh->value_len, sh->value);
    snprintf(r->line, sizeof(r->line), "%s",
             p == PROVIDER_OPENAI                                                      ? "realtime"
             : p == PROVIDER_DEEPGRAM || (p == PROVIDER_AZURE_SPEECH && rt->azure_stt) ? "stt"
                                                                                       : "tts");
    snprintf(r->endpoint, sizeof(r->endpoint), "%.*s",
             (int)MIN(rt->upstream_path_len, sizeof(r->endpoint) - 1), rt->upstream_path);
    query_param(h, p == PROVIDER_CARTESIA || p == PROVIDER_ELEVENLABS ? "model_id" : "model",
                r->model, sizeof(r->model));
    if (p == PROVIDER_DEEPGRAM) {
        char enc[32], rate[16], ch[8];
        query_param(h, "encoding", enc, sizeof(enc));
        query_param(h, "sample_rate", rate, sizeof(rate));
        query_param(h, "channels", ch, sizeof(ch));
        long sr = strtol(rate, NULL, 10), nch = ch[0] ? strtol(ch, NULL, 10) : 1;
        if (strcmp(enc, "linear16") == 0 && sr > 0 && sr <= 192000 && nch > 0 && nch <= 16)
            s->pcm_bytes_per_s = (int64_t)sr * 2 * nch;
    }

    struct ws_prep *pp = calloc(1, sizeof(*pp));
    if (pp == NULL)
        return 500;
    s->prep = pp;
    pp->rt = *rt;
    pp->rt.upstream_path = NULL;
    pp->rt.upstream_path_len = 0;
    char query[512] = "";
    size_t ql = h->query ? route_forward_query(h, query, sizeof(query)) : 0;
    int tn = snprintf(pp->tail, sizeof(pp->tail), "%.*s%s%s", (int)rt->upstream_path_len,
                      rt->upstream_path, ql ? "?" : "", ql ? query : "");
    if (tn < 0 || (size_t)tn >= sizeof(pp->tail))
        return 414;
    /* The client's remaining subprotocols and the headers that select
     * behaviour (OpenAI, Cartesia). */
    int hn = 0;
    if (plen > 0)
        hn =
            snprintf(pp->headers, sizeof(pp->headers), "Sec-WebSocket-Protocol: %s\r\n", protocols);
    static const char *const fwd[] = {"openai-beta", "openai-organization", "openai-project",
                                      "user-agent", "cartesia-version"};
    for (size_t i = 0; i < ARRAY_SIZE(fwd) && hn >= 0 && (size_t)hn < sizeof(pp->headers); i++) {
        const struct httpparse_header *fh = httpparse_find(h, fwd[i]);
        if (fh != NULL)
            hn += snprintf(pp->headers + hn, sizeof(pp->headers) - (size_t)hn, "%.*s: %.*s\r\n",
                           (int)fh->name_len, fh->name, (int)fh->value_len, fh->value);
    }
    if (hn < 0 || (size_t)hn >= sizeof(pp->headers))
        return 400;
    return 0;
}

/* The part shared by the handshake-key and first-message paths once the
 * proxy key is authenticated: who pays and which key goes upstream
 * (resolve_session), the record's identity fields, the upstream URL and
 * the handshake header lines with the injected key (the caller wipes
 * headers). h is the upgrade request (for Cartesia's header style), NULL
 * once it is gone (ElevenLabs only). Frees s->prep. */
static enum ws_begin ws_session_begin(struct dataplane *dp, struct ws_session *s,
                                      const struct resolve_identity *id,
                                      const struct httpparse_request *h, char *url, size_t url_size,
                                      char *headers, size_t headers_size)
{
    struct usage_record *r = &s->rec;
    const enum provider_id p = s->provider;
    struct ws_prep *pp = s->prep;
    enum ws_begin rc = WS_BEGIN_INTERNAL;
    struct curl_slist *inj = NULL;
    struct resolve_decision d;
    headers[0] = '\0';
    if (pp == NULL)
        return WS_BEGIN_INTERNAL;
    enum resolve_status rs =
        resolve_session(dp->resolver, id, p, r->session_id[0] ? r->session_id : NULL, &d);
    if (rs != RESOLVE_OK)
        return rs == RESOLVE_NO_FUNDS ? WS_BEGIN_NO_FUNDS : WS_BEGIN_NO_KEY;

    if (crypto_new_ulid("", r->id, sizeof(r->id)) == -1)
        goto done;
    snprintf(r->tenant_id, sizeof(r->tenant_id), "%s", id->tenant.id);
    snprintf(r->payer_id, sizeof(r->payer_id), "%s", d.payer_id);
    snprintf(r->key_id, sizeof(r->key_id), "%s", id->key_id);
    r->billed_byok = d.byok;
    snprintf(r->connection_id, sizeof(r->connection_id), "%s", d.connection_id);
    snprintf(r->fallback_reason, sizeof(r->fallback_reason), "%s", d.fallback_reason);

    /* Upstream URL: the provider's base (Azure: of the key's region) with
     * ws(s):// + path + query without credentials. */
    char base[1024];
    if (route_upstream_base(dp->cfg, &pp->rt, d.region, base, sizeof(base)) == -1) {
        rc = WS_BEGIN_NO_UPSTREAM;
        goto done;
    }
    bool tls = strncmp(base, "https://", 8) == 0;
    int un =
        snprintf(url, url_size, "%s%s%s", tls ? "wss://" : "ws://", base + (tls ? 8 : 7), pp->tail);
    if (un < 0 || (size_t)un >= url_size) {
        rc = WS_BEGIN_URL_TOO_LONG;
        goto done;
    }
    /* Upstream handshake headers: the injected key, then what the client's
     * request passes on. */
    inj = route_inject(p, h, NULL, d.api_key);
    if (inj == NULL)
        goto done;
    int hn = snprintf(headers, headers_size, "%s\r\n%s", inj->data, pp->headers);
    if (hn < 0 || (size_t)hn >= headers_size) {
        crypto_wipe(headers, headers_size);
        headers[0] = '\0';
        rc = WS_BEGIN_HEADERS_TOO_LARGE;
        goto done;
    }
    rc = WS_BEGIN_OK;

done:
    if (inj != NULL) {
        crypto_wipe(inj->data, strlen(inj->data));
        curl_slist_free_all(inj);
    }
    resolve_done(&d);
    crypto_wipe(pp, sizeof(*pp));
    free(pp);
    s->prep = NULL;
    return rc;
}

/* The HTTP refusal of an upgrade whose session could not begin. */
static void ws_begin_reply(struct http_conn *c, enum provider_id p, enum ws_begin b)
{
    struct http_kv extra[] = {{"x-billed-to", "wallet"}, {"x-should-retry", "false"}};
    switch (b) {
    case WS_BEGIN_NO_FUNDS:
        reply_error(c, p, 402, "insufficient_quota", "insufficient_balance",
                    "The account's plan credits and wallet are used up. Top up the wallet "
                    "or connect your own provider key (BYOK).",
                    extra, ARRAY_SIZE(extra));
        break;
    case WS_BEGIN_NO_KEY:
        reply_error(c, p, 502, "server_error", "no_platform_key",
                    "no key is available for this provider", extra, 1);
        break;
    case WS_BEGIN_NO_UPSTREAM:
        reply_error(c, p, 502, "server_error", "no_upstream",
                    "no upstream is configured for this route (for Azure: the key has no valid "
                    "region)",
                    NULL, 0);
        break;
    case WS_BEGIN_URL_TOO_LONG:
        reply_error(c, p, 414, "invalid_request_error", "url_too_long",
                    "the upstream URL of this request is too long", NULL, 0);
        break;
    case WS_BEGIN_HEADERS_TOO_LARGE:
        reply_error(c, p, 400, "invalid_request_error", "headers_too_large",
                    "the upgrade request's headers are too large to forward", NULL, 0);
        break;
    case WS_BEGIN_OK:
    case WS_BEGIN_INTERNAL:
        reply_error(c, p, 500, "server_error", "internal_error", "cannot start the session", NULL,
                    0);
        break;
    }
}

/* Wipes the string value of a JSON member taken out of a message (a key):
 * jansson frees without wiping. Drops the reference. */
static void json_wipe_string(json_t *v)
{
    if (json_is_string(v))
        crypto_wipe((char *)json_string_value(v), json_string_length(v));
    json_decref(v);
}

/* ElevenLabs stream-input with the key in the first message (browsers,
 * PROVIDERS.md §2.3): {"xi_api_key":"<key>"} or {"authorization":"Bearer
 * <key>"}. Authenticates and resolves the session as the handshake path
 * does, and gives the relay the upstream and the message without either
 * member (whatever key they held). Counts the message's text: on_message
 * does not see it. -1 on any failure (the client gets close 1008). */
static int el_on_first(void *arg, const char *msg, size_t len, struct relay_ws_target *out)
{
    struct ws_session *s = arg;
    struct dataplane *dp = s->dp;
    int rc = -1;
    char url[2048], headers[2048];
    headers[0] = '\0';
    json_t *root = json_loadb(msg, len, 0, NULL);
    json_t *xi = NULL, *au = NULL;
    const char *key = NULL;
    size_t key_len = 0;
    if (!json_is_object(root))
        goto failed;
    /* Our own references: the strings are wiped after the members go. */
    xi = json_incref(json_object_get(root, "xi_api_key"));
    au = json_incref(json_object_get(root, "authorization"));
    if (json_object_del(root, "xi_api_key") == 0 && !json_is_string(xi))
        goto failed;
    (void)json_object_del(root, "authorization");
    if (json_is_string(xi)) {
        key = json_string_value(xi);
        key_len = json_string_length(xi);
    } else if (json_is_string(au) && json_string_length(au) > 7 &&
               strncasecmp(json_string_value(au), "Bearer ", 7) == 0) {
        key = json_string_value(au) + 7;
        key_len = json_string_length(au) - 7;
    }
    struct resolve_identity id;
    enum resolve_status rs = resolve_auth(dp->resolver, key, key_len, &id);
    if (rs != RESOLVE_OK) {
        metrics_inc(METRICS_AUTH_FAILURES);
        log_info("ws session: the first message's proxy key is missing or invalid");
        goto failed;
    }
    enum ws_begin b =
        ws_session_begin(dp, s, &id, NULL, url, sizeof(url), headers, sizeof(headers));
    if (b != WS_BEGIN_OK) {
        log_info("request %s: the first-message session cannot begin (%d)", s->rec.id, (int)b);
        goto failed;
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    out->first_message = text;
    out->first_len = text != NULL ? strlen(text) : 0;
    out->upstream_url = strdup(url);
    out->upstream_headers = strdup(headers);
    if (text == NULL || out->upstream_url == NULL || out->upstream_headers == NULL)
        goto failed; /* the relay frees what is in *out */
    voice_ws_meter(s, RELAY_WS_FROM_CLIENT, text, out->first_len);
    s->started = true;
    rc = 0;

failed:
    crypto_wipe(headers, sizeof(headers));
    json_wipe_string(xi);
    json_wipe_string(au);
    json_decref(root);
    return rc;
}

static void ws_handle(struct dataplane *dp, struct http_conn *c, struct http_request *req,
                      const struct route *rt)
{
    const struct httpparse_request *h = &req->head;
    const enum provider_id p = rt->provider;
    const char *why = NULL;
    int st = ws_check_upgrade(h, &why);
    if (st != 0) {
        struct http_kv v13[] = {{"Sec-WebSocket-Version", "13"}};
        reply_error(c, p, st, "invalid_request_error", "bad_websocket_upgrade", why,
                    st == 426 ? v13 : NULL, st == 426 ? 1 : 0);
        return;
    }

    /* The proxy key: where the route takes it (header; Azure/Cartesia also
     * query), or in the browsers' subprotocol forms - OpenAI's
     * "openai-insecure-api-key.<key>", Deepgram's "token, <key>" - which are
     * dropped from what goes upstream. */
    size_t key_len = 0;
    const char *key = route_credential(p, h, &key_len);
    if (key == NULL && p == PROVIDER_CARTESIA) {
        static const char *const qnames[] = {"api_key", "access_token"};
        for (size_t i = 0; i < ARRAY_SIZE(qnames) && key == NULL; i++) {
            size_t nl = strlen(qnames[i]);
            const char *q = h->query, *end = h->query ? h->query + h->query_len : NULL;
            while (q != NULL && q < end && key == NULL) {
                const char *amp = memchr(q, '&', (size_t)(end - q));
                const char *pe = amp ? amp : end;
                if ((size_t)(pe - q) > nl + 1 && strncasecmp(q, qnames[i], nl) == 0 &&
                    q[nl] == '=') {
                    key = q + nl + 1;
                    key_len = (size_t)(pe - key);
                }
                q = amp ? amp + 1 : end;
            }
        }
    }
    char protocols[512] = "";
    size_t plen = 0;
    bool offered_realtime = false, offered_token = false, next_is_key = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct httpparse_header *hd = &h->headers[i];
        if (hd->name_len != 22 || strncasecmp(hd->name, "sec-websocket-protocol", 22) != 0)
            continue;
        struct ws_list it;
        const char *item;
        size_t n;
        ws_list_init(&it, hd->value, hd->value_len);
        while (ws_list_next(&it, &item, &n)) {
            if (p == PROVIDER_OPENAI && n > 24 &&
                strncmp(item, "openai-insecure-api-key.", 24) == 0) {
                if (key == NULL) {
                    key = item + 24;
                    key_len = n - 24;
                }
                continue;
            }
            if (p == PROVIDER_DEEPGRAM && next_is_key) {
                next_is_key = false;
                if (key == NULL) {
                    key = item;
                    key_len = n;
                }
                continue;
            }
            if (p == PROVIDER_DEEPGRAM && n == 5 && strncasecmp(item, "token", 5) == 0) {
                offered_token = next_is_key = true;
                continue;
            }
            if (!ws_token_valid(item, n) || plen + n + 3 >= sizeof(protocols))
                continue;
            if (n == 8 && memcmp(item, "realtime", 8) == 0)
                offered_realtime = true;
            plen += (size_t)snprintf(protocols + plen, sizeof(protocols) - plen, "%s%.*s",
                                     plen ? ", " : "", (int)n, item);
        }
    }

    /* Without a key on the handshake, ElevenLabs browsers send it in the
     * first message: the relay answers 101 and el_on_first takes it from
     * there. */
    bool client_first = key == NULL && p == PROVIDER_ELEVENLABS;
    struct resolve_identity id;
    if (!client_first) {
        enum resolve_status rs = resolve_auth(dp->resolver, key, key_len, &id);
        if (rs != RESOLVE_OK) {
            metrics_inc(METRICS_AUTH_FAILURES);
            reply_error(c, p, rs == RESOLVE_STORE_ERROR ? 503 : 401, "invalid_request_error",
                        "invalid_api_key",
                        "Incorrect or missing proxy key: send it where the provider's SDK sends "
                        "its key (header, or the browser subprotocol / query forms)",
                        NULL, 0);
            return;
        }
    }

    struct ws_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        reply_error(c, p, 500, "server_error", "out_of_memory", "out of memory", NULL, 0);
        return;
    }
    st = ws_prepare(dp, s, req, rt, protocols, plen);
    if (st != 0) {
        ws_session_free(s);
        ws_begin_reply(c, p,
                       st == 414   ? WS_BEGIN_URL_TOO_LONG
                       : st == 400 ? WS_BEGIN_HEADERS_TOO_LARGE
                                   : WS_BEGIN_INTERNAL);
        return;
    }
    char url[2048], headers[2048];
    if (!client_first) {
        enum ws_begin b =
            ws_session_begin(dp, s, &id, h, url, sizeof(url), headers, sizeof(headers));
        if (b != WS_BEGIN_OK) {
            crypto_wipe(headers, sizeof(headers));
            ws_session_free(s);
            ws_begin_reply(c, p, b);
            return;
        }
        s->started = true;
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
        .client = NULL,
        .client_key = client_key,
        .client_protocol = offered_realtime ? "realtime"
                           : offered_token  ? "token"
                                            : NULL,
        .upstream_url = client_first ? NULL : url,
        .upstream_headers = client_first ? NULL : headers,
        .client_first = client_first,
        .on_first = client_first ? el_on_first : NULL,
        .max_message = 16 * 1024 * 1024,
        .meter_max = RT_METER_MAX,
        .on_message = rt_on_message,
        .on_binary = p == PROVIDER_AZURE_SPEECH ? az_on_binary : NULL,
        .hold_first_client_message = p == PROVIDER_ELEVENLABS,
        .on_open = rt_on_open,
        .on_end = rt_on_end,
        .error_body = rt_error_body,
        .arg = s,
    };
    /* From here the connection is the relay's: the request is gone. */
    rp.client = http_conn_take(c);
    s->relay = relay_ws_start(&rp);
    if (!client_first)
        crypto_wipe(headers, sizeof(headers));
    if (s->relay == NULL) {
        log_error("request %s: cannot start the WebSocket relay", s->rec.id);
        bufferevent_free(rp.client);
        ws_session_free(s);
        return;
    }
    s->next = dp->sessions;
    if (dp->sessions)
        dp->sessions->prev = s;
    dp->sessions = s;
    dp->n_sessions++;
}

void dataplane_handle(struct http_conn *c, struct http_request *req, void *arg)
{
    struct dataplane *dp = arg;
    const struct httpparse_request *h = &req->head;
    struct route rt;
    char msg[256];

    if (route_match(h->path, h->path_len, &rt) == -1) {
        char safe[96];
        snprintf(msg, sizeof(msg),
                 "unknown route %s: the proxy serves /v1/ and /openai/v1/ (OpenAI), "
                 "/elevenlabs/v1/, /azure/tts/, /azure/stt/, /deepgram/v1/, /anthropic/v1/, "
                 "/cartesia/ and /deepseek/",
                 log_safe(h->path, h->path_len, safe, sizeof(safe)));
        reply_error(c, PROVIDER_OPENAI, 404, "invalid_request_error", "unknown_route", msg, NULL,
                    0);
        return;
    }
    enum provider_id p = rt.provider;
    if (route_path_unsafe(h->path, h->path_len)) {
        reply_error(c, p, 400, "invalid_request_error", "invalid_path",
                    "the path has '.' or '..' segments or a backslash; send a normalised path",
                    NULL, 0);
        return;
    }
    if (h->upgrade_websocket) {
        if (ws_route(&rt)) {
            ws_handle(dp, c, req, &rt);
            return;
        }
        reply_error(c, p, 501, "invalid_request_error", "websocket_not_supported",
                    "this WebSocket route is not served (served: OpenAI Realtime, ElevenLabs "
                    "stream-input, Azure Speech STT/TTS, Deepgram live, Cartesia)",
                    NULL, 0);
        return;
    }

    size_t key_len = 0;
    const char *key = route_credential(p, h, &key_len);
    struct resolve_identity id;
    enum resolve_status st = resolve_auth(dp->resolver, key, key_len, &id);
    if (st == RESOLVE_STORE_ERROR) {
        reply_error(c, p, 503, "server_error", "store_unavailable",
                    "the proxy cannot reach its store right now; retry shortly", NULL, 0);
        return;
    }
    if (st != RESOLVE_OK) {
        metrics_inc(METRICS_AUTH_FAILURES);
        reply_error(c, p, 401, "invalid_request_error", "invalid_api_key",
                    key ? "Incorrect proxy key provided. Use a key created with POST "
                          "/admin/tenants/{id}/keys, sent as Authorization: Bearer <key>."
                        : "No proxy key provided. Send Authorization: Bearer <proxy key>.",
                    NULL, 0);
        return;
    }

    const struct httpparse_header *sh = httpparse_find(h, "x-session-id");
    if (sh != NULL && !session_id_ok(sh->value, sh->value_len)) {
        reply_error(c, p, 400, "invalid_request_error", "invalid_session_id",
                    "X-Session-Id must be 1-127 visible ASCII characters", NULL, 0);
        return;
    }
    char session[SESSION_MAX] = "";
    if (sh != NULL) {
        memcpy(session, sh->value, sh->value_len);
        session[sh->value_len] = '\0';
    }

    struct exchange *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) {
        reply_error(c, p, 500, "server_error", "out_of_memory", "out of memory", NULL, 0);
        return;
    }
    ex->dp = dp;
    ex->c = c;
    ex->req = req;
    st = resolve_session(dp->resolver, &id, p, session[0] ? session : NULL, &ex->decision);
    if (st != RESOLVE_OK) {
        struct http_kv extra[] = {{"x-billed-to", "wallet"}, {"x-should-retry", "false"}};
        if (st == RESOLVE_NO_FUNDS)
            reply_error(c, p, 402, "insufficient_quota", "insufficient_balance",
                        "The account's plan credits and wallet are used up. Top up the wallet "
                        "or connect your own provider key (BYOK).",
                        extra, ARRAY_SIZE(extra));
        else if (st == RESOLVE_NO_PLATFORM_KEY)
            reply_error(c, p, 502, "server_error", "no_platform_key",
                        "the proxy has no platform key for this provider (platform_keys in the "
                        "config)",
                        extra, 1);
        else if (st == RESOLVE_UNAUTHORIZED)
            reply_error(c, p, 401, "invalid_request_error", "invalid_api_key",
                        "the tenant of this proxy key no longer exists", NULL, 0);
        else
            reply_error(c, p, 503, "server_error", "store_unavailable",
                        "the proxy cannot reach its store right now; retry shortly", NULL, 0);
        free(ex);
        return;
    }

    struct usage_record *r = &ex->rec;
    if (crypto_new_ulid("", r->id, sizeof(r->id)) == -1) {
        resolve_done(&ex->decision);
        reply_error(c, p, 500, "server_error", "internal_error", "cannot create a request id", NULL,
                    0);
        free(ex);
        return;
    }
    r->ts_ms = req->start_ms;
    snprintf(r->tenant_id, sizeof(r->tenant_id), "%s", id.tenant.id);
    snprintf(r->payer_id, sizeof(r->payer_id), "%s", ex->decision.payer_id);
    snprintf(r->key_id, sizeof(r->key_id), "%s", id.key_id);
    snprintf(r->session_id, sizeof(r->session_id), "%s", session);
    r->provider = p;
    r->has_slot = provider_is_slot(p);
    r->billed_byok = ex->decision.byok;
    snprintf(r->connection_id, sizeof(r->connection_id), "%s", ex->decision.connection_id);
    snprintf(r->fallback_reason, sizeof(r->fallback_reason), "%s", ex->decision.fallback_reason);
    r->ttfb_ms = -1;
    size_t ep = MIN(rt.upstream_path_len, sizeof(r->endpoint) - 1);
    memcpy(r->endpoint, rt.upstream_path, ep);
    r->endpoint[ep] = '\0';

    enum meter_kind kind = (h->method_len == 4 && memcmp(h->method, "POST", 4) == 0)
                               ? route_meter_kind(&rt)
                               : METER_NONE;
    meter_init(&ex->meter, kind);
    snprintf(r->line, sizeof(r->line), "%s",
             kind != METER_NONE ? meter_line_name(kind) : unmetered_line(&rt));
    size_t body_len = evbuffer_get_length(req->body);
    const char *body = body_len ? (const char *)evbuffer_pullup(req->body, -1) : NULL;
    if (kind != METER_NONE && h->query != NULL)
        meter_request_query(&ex->meter, h->query, h->query_len);
    if (kind != METER_NONE && body_len > 0) {
        const struct httpparse_header *ct = httpparse_find(h, "content-type");
        if (meter_request(&ex->meter, body, body_len, ct ? ct->value : NULL, ct ? ct->value_len : 0,
                          &ex->rewritten, &ex->rewritten_len) == -1)
            log_debug("request %s: body is not the JSON the meter expects", r->id);
    }

    /* URL = upstream base (Azure: of the key's region) + path after the
     * route prefix + query without credentials. */
    char base[1024];
    if (route_upstream_base(dp->cfg, &rt, ex->decision.region, base, sizeof(base)) == -1) {
        resolve_done(&ex->decision);
        reply_error(c, p, 502, "server_error", "no_upstream",
                    "no upstream is configured for this route (for Azure: the key has no valid "
                    "region)",
                    NULL, 0);
        exchange_free(ex);
        return;
    }
    size_t url_len = strlen(base) + rt.upstream_path_len + h->query_len + 2;
    char *url = malloc(url_len + 1);
    char *query = h->query ? malloc(h->query_len + 1) : NULL;
    size_t query_len = query ? route_forward_query(h, query, h->query_len + 1) : 0;
    struct curl_slist *headers = NULL;
    if (url == NULL || (h->query && query == NULL) ||
        build_headers(h, p, ex->decision.api_key, &headers) == -1) {
        free(url);
        free(query);
        resolve_done(&ex->decision);
        reply_error(c, p, 500, "server_error", "internal_error", "out of memory", NULL, 0);
        exchange_free(ex);
        return;
    }
    snprintf(url, url_len + 1, "%s%.*s%s%s", base, (int)rt.upstream_path_len, rt.upstream_path,
             query_len ? "?" : "", query_len ? query : "");
    free(query);

    char method[16];
    snprintf(method, sizeof(method), "%.*s", (int)MIN(h->method_len, sizeof(method) - 1),
             h->method);
    struct upstream_request ureq = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = ex->rewritten ? ex->rewritten : body,
        .body_len = ex->rewritten ? ex->rewritten_len : body_len,
        .has_body = body_len > 0 || h->content_length == 0 || h->chunked,
    };
    ex->xfer = upstream_start(dp->pool, &ureq, &upstream_cbs, ex);
    free(url);
    resolve_done(&ex->decision); /* the key now lives only in the headers (wiped on free) */
    if (ex->xfer == NULL) {
        reply_error(c, p, 502, "server_error", "internal_error",
                    "the proxy could not start the upstream request", NULL, 0);
        exchange_free(ex);
        return;
    }
    http_conn_set_callbacks(c, on_client_abort, on_client_drain, ex);
}
