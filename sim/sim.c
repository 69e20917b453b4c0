/* sim.c - the simulator's core (sim.h, sim_provider.h): one listener per
 * simulated upstream on its own thread and event base, requests routed to
 * the provider modules, keys checked, faults drawn from the seeded
 * generator, replies paced on libevent timers.
 *
 *   on_request ─> route ─no─> error(404)
 *                   │
 *                   ├─ not authorized ─> error(401)
 *                   ├─ draw the fault, wait ttfb_ms (the request's timer)
 *                   ├─ fault 429 / 500 ─> error(429 / 500)
 *                   └─> handler: sim_reply*() | sim_stream_*() | sim_ws_accept()
 *                                 (a reset fault cuts the reply halfway)
 *
 * A request lives from on_request until its reply is complete (or the
 * client left: the HTTP server's abort callback): one struct sim_request,
 * freed by request_free(), which every end goes through. */
#include "common.h"
#include "sim_internal.h"
#include "urlenc.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#define PARAM_MAX    128
#define REGION_MAX   64
#define EXTRA_MAX    8 /* headers of a delayed reply */
#define TUNE_PPM     UINT64_C(1000000)
#define SSE_TYPE     "text/event-stream; charset=utf-8"
#define PATH_MAX_SIM 1024

struct sim_request {
    struct sim_upstream *up;
    struct http_conn *c; /* NULL once the request ended */
    struct http_request *req;
    const struct sim_route *route;
    char path[PATH_MAX_SIM];
    char param[PARAM_MAX];
    char region[REGION_MAX];
    char request_id[64];
    enum config_sim_error fault;
    char *body; /* NUL-terminated copy, made on first sim_body() */
    size_t body_len;
    json_t *json;
    bool json_tried;
    /* The request's one timer: ttfb, sim_after, token pacing, a delayed
     * reply. */
    struct event *timer;
    sim_handler_fn timer_fn;
    /* sim_stream_tokens, sim_stream_audio */
    const struct sim_token_ops *tok_ops;
    size_t tok_n, tok_next, tok_cut;
    int64_t tok_start;
    int64_t tok_chunk_ms; /* audio: ms per chunk; 0: tokens */
    bool tok_wait_drain;
    /* sim_reply_json_after_tokens */
    int delayed_status;
    json_t *delayed_body;
    char *delayed_extra[EXTRA_MAX][2];
    size_t delayed_n_extra;
    /* module state */
    void *state;
    void (*state_free)(void *);
};

/* ---- the request's life --------------------------------------------------- */

static void request_free(struct sim_request *r)
{
    if (r == NULL)
        return;
    if (r->c != NULL)
        http_conn_set_callbacks(r->c, NULL, NULL, NULL);
    if (r->timer != NULL)
        event_free(r->timer);
    if (r->state_free != NULL)
        r->state_free(r->state);
    json_decref(r->json);
    json_decref(r->delayed_body);
    for (size_t i = 0; i < r->delayed_n_extra; i++) {
        free(r->delayed_extra[i][0]);
        free(r->delayed_extra[i][1]);
    }
    free(r->body);
    free(r);
}

void sim_request_release(struct sim_request *r)
{
    request_free(r);
}

struct http_conn *sim_request_take_conn(struct sim_request *r)
{
    struct http_conn *c = r->c;
    if (c != NULL) {
        http_conn_set_callbacks(c, NULL, NULL, NULL);
        r->c = NULL;
    }
    return c;
}

struct sim_upstream *sim_request_upstream(const struct sim_request *r)
{
    return r->up;
}

/* The client went away: nothing more may touch the connection. */
static void on_abort(struct http_conn *c, void *arg)
{
    struct sim_request *r = arg;
    (void)c;
    r->c = NULL;
    request_free(r);
}

static void tokens_pump(struct sim_request *r);

static void on_drain(struct http_conn *c, void *arg)
{
    struct sim_request *r = arg;
    (void)c;
    if (r->tok_wait_drain) {
        r->tok_wait_drain = false;
        tokens_pump(r);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sim_request *r = arg;
    (void)fd;
    (void)what;
    sim_handler_fn fn = r->timer_fn;
    r->timer_fn = NULL;
    if (fn != NULL)
        fn(r);
}

void sim_after(struct sim_request *r, int64_t ms, sim_handler_fn fn)
{
    if (r->timer == NULL && (r->timer = evtimer_new(r->up->base, timer_cb, r)) == NULL) {
        /* No timer: answer late rather than never. */
        log_error("sim %s: cannot create a timer; answering now", r->up->prov->upstream);
        fn(r);
        return;
    }
    r->timer_fn = fn;
    struct timeval tv = {(time_t)(MAX(ms, 0) / 1000), (suseconds_t)(MAX(ms, 0) % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

/* ---- the request, read ---------------------------------------------------- */

const struct httpparse_request *sim_head(const struct sim_request *r)
{
    return &r->req->head;
}

const char *sim_path(const struct sim_request *r)
{
    return r->path;
}

const char *sim_param(const struct sim_request *r)
{
    return r->param;
}

const char *sim_region(const struct sim_request *r)
{
    return r->region;
}

const char *sim_header(const struct sim_request *r, const char *name, size_t *len)
{
    const struct httpparse_header *h = httpparse_find(&r->req->head, name);
    if (h == NULL)
        return NULL;
    if (len != NULL)
        *len = h->value_len;
    return h->value;
}

bool sim_has_key(const struct sim_request *r, const char *name, const char *scheme)
{
    size_t len;
    const char *v = sim_header(r, name, &len);
    if (v == NULL || len == 0)
        return false;
    if (scheme == NULL)
        return true;
    size_t sl = strlen(scheme);
    return len > sl + 1 && strncasecmp(v, scheme, sl) == 0 && v[sl] == ' ' &&
           sim_count_words(v + sl + 1, len - sl - 1) > 0;
}

const char *sim_body(const struct sim_request *r, size_t *len)
{
    struct sim_request *m = (struct sim_request *)r;
    if (m->body == NULL) {
        size_t n = evbuffer_get_length(r->req->body);
        m->body = malloc(n + 1);
        if (m->body == NULL) {
            if (len != NULL)
                *len = 0;
            return "";
        }
        evbuffer_copyout(r->req->body, m->body, n);
        m->body[n] = '\0';
        m->body_len = n;
    }
    if (len != NULL)
        *len = m->body_len;
    return m->body;
}

json_t *sim_json(struct sim_request *r)
{
    if (!r->json_tried) {
        size_t len;
        const char *b = sim_body(r, &len);
        r->json_tried = true;
        r->json = len > 0 ? json_loadb(b, len, 0, NULL) : NULL;
        if (r->json != NULL && !json_is_object(r->json)) {
            json_decref(r->json);
            r->json = NULL;
        }
    }
    return r->json;
}

const struct config_sim_tunables *sim_tunables(const struct sim_request *r)
{
    return r->up->tun;
}

const char *sim_request_id(const struct sim_request *r)
{
    return r->request_id;
}

uint64_t sim_rand(struct sim_request *r)
{
    return sim_rng_next(&r->up->rng);
}

void sim_set_state(struct sim_request *r, void *state, void (*free_fn)(void *))
{
    if (r->state_free != NULL && r->state != state)
        r->state_free(r->state);
    r->state = state;
    r->state_free = free_fn;
}

void *sim_state(const struct sim_request *r)
{
    return r->state;
}

bool sim_reset_drawn(const struct sim_request *r)
{
    return r->fault == CONFIG_SIM_ERR_RESET;
}

/* ---- replies -------------------------------------------------------------- */

/* The head's header lines: the request id, a content type, extras. */
static struct evbuffer *head_lines(struct sim_request *r, const char *content_type,
                                   const struct http_kv *extra, size_t n_extra)
{
    struct evbuffer *h = evbuffer_new();
    if (h == NULL)
        return NULL;
    evbuffer_add_printf(h, "%s: %s\r\n", r->up->prov->request_id_header, r->request_id);
    if (content_type != NULL)
        evbuffer_add_printf(h, "Content-Type: %s\r\n", content_type);
    for (size_t i = 0; i < n_extra; i++)
        evbuffer_add_printf(h, "%s: %s\r\n", extra[i].name, extra[i].value);
    return h;
}

void sim_reply(struct sim_request *r, int status, const char *content_type, const char *body,
               size_t len, const struct http_kv *extra, size_t n_extra)
{
    struct http_conn *c = r->c;
    if (c == NULL) {
        request_free(r);
        return;
    }
    /* Detached first: the server may start the connection's next request
     * from inside the reply. */
    http_conn_set_callbacks(c, NULL, NULL, NULL);
    r->c = NULL;
    if (r->fault == CONFIG_SIM_ERR_RESET) {
        struct evbuffer *h = head_lines(r, content_type, extra, n_extra);
        http_stream_begin(c, status, NULL, h, (int64_t)len);
        evbuffer_free(h);
        http_stream_write(c, body, len / 2);
        http_stream_end(c, false);
    } else {
        struct http_kv kv[EXTRA_MAX + 1];
        size_t n = 0;
        kv[n++] = (struct http_kv){r->up->prov->request_id_header, r->request_id};
        for (size_t i = 0; i < n_extra && n < ARRAY_SIZE(kv); i++)
            kv[n++] = extra[i];
        http_respond(c, status, content_type, body, len, kv, n);
    }
    request_free(r);
}

void sim_reply_json(struct sim_request *r, int status, json_t *body, const struct http_kv *extra,
                    size_t n_extra)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        log_error("sim %s: out of memory formatting a reply", r->up->prov->upstream);
        sim_reply(r, 500, "application/json", "{}", 2, extra, n_extra);
        return;
    }
    sim_reply(r, status, "application/json", text, strlen(text), extra, n_extra);
    free(text);
}

static void delayed_reply(struct sim_request *r)
{
    struct http_kv kv[EXTRA_MAX];
    for (size_t i = 0; i < r->delayed_n_extra; i++)
        kv[i] = (struct http_kv){r->delayed_extra[i][0], r->delayed_extra[i][1]};
    json_t *body = r->delayed_body;
    r->delayed_body = NULL;
    sim_reply_json(r, r->delayed_status, body, kv, r->delayed_n_extra);
}

void sim_reply_json_after_tokens(struct sim_request *r, size_t n, int status, json_t *body,
                                 const struct http_kv *extra, size_t n_extra)
{
    int64_t ms = n > 0 ? sim_pace_token_ms(r->up->tun->tokens_per_s, n - 1) : 0;
    if (ms == 0) {
        sim_reply_json(r, status, body, extra, n_extra);
        return;
    }
    r->delayed_status = status;
    r->delayed_body = body;
    for (size_t i = 0; i < n_extra && i < EXTRA_MAX; i++) {
        r->delayed_extra[i][0] = strdup(extra[i].name);
        r->delayed_extra[i][1] = strdup(extra[i].value);
        r->delayed_n_extra++;
        if (r->delayed_extra[i][0] == NULL || r->delayed_extra[i][1] == NULL) {
            log_error("sim %s: out of memory", r->up->prov->upstream);
            sim_cut(r);
            return;
        }
    }
    sim_after(r, ms, delayed_reply);
}

void sim_error(struct sim_request *r, enum sim_error what, const char *detail)
{
    r->up->prov->error(r, what, detail);
}

void sim_stream_begin(struct sim_request *r, int status, const char *content_type,
                      const struct http_kv *extra, size_t n_extra)
{
    if (r->c == NULL)
        return;
    struct evbuffer *h = head_lines(r, content_type, extra, n_extra);
    evbuffer_add_printf(h, "Cache-Control: no-cache\r\n");
    http_stream_begin(r->c, status, NULL, h, -1);
    evbuffer_free(h);
}

void sim_stream_write(struct sim_request *r, const char *data, size_t len)
{
    if (r->c != NULL)
        http_stream_write(r->c, data, len);
}

void sim_sse(struct sim_request *r, const char *name, json_t *data)
{
    char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (text == NULL || r->c == NULL) {
        free(text);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        if (name != NULL)
            evbuffer_add_printf(b, "event: %s\n", name);
        evbuffer_add_printf(b, "data: %s\n\n", text);
        size_t len = evbuffer_get_length(b);
        http_stream_write(r->c, (const char *)evbuffer_pullup(b, -1), len);
        evbuffer_free(b);
    }
    free(text);
}

void sim_stream_end(struct sim_request *r)
{
    struct http_conn *c = r->c;
    if (c != NULL) {
        http_conn_set_callbacks(c, NULL, NULL, NULL);
        r->c = NULL;
        http_stream_end(c, true);
    }
    request_free(r);
}

void sim_cut(struct sim_request *r)
{
    struct http_conn *c = r->c;
    if (c != NULL) {
        http_conn_set_callbacks(c, NULL, NULL, NULL);
        r->c = NULL;
        /* Before the head: the connection closes with no reply at all. */
        http_stream_end(c, false);
    }
    request_free(r);
}

/* ---- paced tokens --------------------------------------------------------- */

static void tokens_timer(struct sim_request *r)
{
    tokens_pump(r);
}

/* When piece i of a paced stream is due, in ms after the first. */
static int64_t piece_due_ms(const struct sim_request *r, size_t i)
{
    if (r->tok_chunk_ms > 0)
        return sim_pace_audio_ms(r->up->tun->audio_rtf_ppm, (int64_t)i * r->tok_chunk_ms);
    return sim_pace_token_ms(r->up->tun->tokens_per_s, i);
}

static void tokens_pump(struct sim_request *r)
{
    int64_t rate = r->up->tun->tokens_per_s;
    for (;;) {
        if (r->tok_next >= r->tok_cut) {
            sim_cut(r);
            return;
        }
        if (r->tok_next >= r->tok_n) {
            r->tok_ops->done(r);
            sim_stream_end(r);
            return;
        }
        int64_t elapsed = mono_ms() - r->tok_start;
        bool due = r->tok_chunk_ms > 0 ? piece_due_ms(r, r->tok_next) <= elapsed
                                       : r->tok_next < sim_pace_tokens_due(rate, elapsed, r->tok_n);
        if (!due) {
            sim_after(r, r->tok_start + piece_due_ms(r, r->tok_next) - mono_ms(), tokens_timer);
            return;
        }
        /* The client reads slowly: the next tokens wait for it. */
        if (http_conn_output_pending(r->c) > r->up->limits->client_high_watermark) {
            r->tok_wait_drain = true;
            return;
        }
        r->tok_ops->token(r, r->tok_next++);
    }
}

void sim_stream_tokens(struct sim_request *r, size_t n, const struct sim_token_ops *ops)
{
    r->tok_ops = ops;
    r->tok_n = n;
    r->tok_next = 0;
    r->tok_cut = r->fault == CONFIG_SIM_ERR_RESET ? n / 2 : SIZE_MAX;
    r->tok_start = mono_ms();
    r->tok_chunk_ms = 0;
    tokens_pump(r);
}

void sim_stream_audio(struct sim_request *r, size_t n, int64_t chunk_ms,
                      const struct sim_token_ops *ops)
{
    r->tok_ops = ops;
    r->tok_n = n;
    r->tok_next = 0;
    r->tok_cut = r->fault == CONFIG_SIM_ERR_RESET ? n / 2 : SIZE_MAX;
    r->tok_start = mono_ms();
    r->tok_chunk_ms = MAX(chunk_ms, (int64_t)1);
    tokens_pump(r);
}

/* ---- routing -------------------------------------------------------------- */

/* Matches path against a route pattern segment by segment; a "{id}"
 * segment takes one non-empty segment into param. */
static bool path_matches(const char *pattern, const char *path, char *param, size_t param_size)
{
    const char *p = pattern, *s = path;
    param[0] = '\0';
    while (*p != '\0' && *s != '\0') {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
        if (pl == 4 && memcmp(p, "{id}", 4) == 0) {
            if (sl == 0 || sl >= param_size)
                return false;
            memcpy(param, s, sl);
            param[sl] = '\0';
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return false;
        }
        p += pl;
        s += sl;
    }
    return *p == '\0' && *s == '\0';
}

static const struct sim_route *table_find(const struct sim_route *routes, size_t n,
                                          const char *method, size_t method_len, const char *path,
                                          char *param, size_t param_size)
{
    for (size_t i = 0; i < n; i++) {
        const struct sim_route *rt = &routes[i];
        if (strlen(rt->method) == method_len && memcmp(rt->method, method, method_len) == 0 &&
            path_matches(rt->path, path, param, param_size))
            return rt;
    }
    return NULL;
}

/* The provider's own routes first, then its more_routes tables. */
static const struct sim_route *route_find(const struct sim_provider *prov, const char *method,
                                          size_t method_len, const char *path, char *param,
                                          size_t param_size)
{
    const struct sim_route *rt =
        table_find(prov->routes, prov->n_routes, method, method_len, path, param, param_size);
    for (const struct sim_route_table *const *t = prov->more_routes; rt == NULL && t && *t; t++)
        rt = table_find((*t)->routes, (*t)->n, method, method_len, path, param, param_size);
    return rt;
}

static void after_ttfb(struct sim_request *r)
{
    if (r->fault == CONFIG_SIM_ERR_429) {
        sim_error(r, SIM_ERR_RATE_LIMIT, NULL);
        return;
    }
    if (r->fault == CONFIG_SIM_ERR_500) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    const struct httpparse_request *h = &r->req->head;
    if (h->upgrade_websocket)
        r->route->ws(r);
    else
        r->route->http(r);
}

/* Splits a regional host's path: "/<region>/rest" -> region, "/rest". */
static bool split_region(struct sim_request *r, const char *path, size_t len)
{
    if (len < 2 || path[0] != '/')
        return false;
    size_t rl = strcspn(path + 1, "/");
    if (rl == 0 || rl >= sizeof(r->region) || rl + 1 >= len)
        return false;
    memcpy(r->region, path + 1, rl);
    r->region[rl] = '\0';
    size_t rest = len - rl - 1;
    if (rest >= sizeof(r->path))
        return false;
    memcpy(r->path, path + 1 + rl, rest);
    r->path[rest] = '\0';
    return true;
}

static void on_request(struct http_conn *c, struct http_request *req, void *arg)
{
    struct sim_upstream *up = arg;
    const struct httpparse_request *h = &req->head;
    struct sim_request *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_respond(c, 503, "text/plain", "out of memory\n", 14, NULL, 0);
        return;
    }
    r->up = up;
    r->c = c;
    r->req = req;
    r->fault = CONFIG_SIM_ERR_KINDS;
    snprintf(r->request_id, sizeof(r->request_id), "%s%016" PRIx64 "%08" PRIx64,
             up->prov->request_id_prefix, up->id_base, ++up->id_seq);
    http_conn_set_callbacks(c, on_abort, on_drain, r);

    bool path_ok;
    if (up->region) {
        path_ok = split_region(r, h->path, h->path_len);
    } else {
        path_ok = h->path_len < sizeof(r->path);
        if (path_ok) {
            memcpy(r->path, h->path, h->path_len);
            r->path[h->path_len] = '\0';
        }
    }
    r->route = path_ok ? route_find(up->prov, h->method, h->method_len, r->path, r->param,
                                    sizeof(r->param))
                       : NULL;
    bool ws = h->upgrade_websocket;
    if (r->route == NULL || (ws ? r->route->ws == NULL : r->route->http == NULL)) {
        char what[160];
        char safe[96];
        snprintf(what, sizeof(what), "%.*s %s", (int)MIN(h->method_len, 16), h->method,
                 log_safe(h->path, h->path_len, safe, sizeof(safe)));
        sim_error(r, SIM_ERR_NOT_FOUND, what);
        return;
    }
    if (ws) {
        const char *why = NULL;
        int status = ws_check_upgrade(h, &why);
        if (status != 0) {
            struct http_kv v = {"Sec-WebSocket-Version", "13"};
            sim_reply(r, status, "text/plain", why, strlen(why), &v, status == 426 ? 1 : 0);
            return;
        }
    }
    if (!up->prov->authorized(r)) {
        sim_error(r, SIM_ERR_UNAUTHORIZED, NULL);
        return;
    }
    r->fault = sim_fault_for(up->tun, sim_rng_below(&up->rng, TUNE_PPM));
    if (up->tun->ttfb_ms > 0)
        sim_after(r, up->tun->ttfb_ms, after_ttfb);
    else
        after_ttfb(r);
}

/* ---- listeners and threads ------------------------------------------------ */

static void *upstream_main(void *arg)
{
    struct sim_upstream *up = arg;
    pthread_setname_np(pthread_self(), up->name);
    event_base_dispatch(up->base);
    return NULL;
}

/* On the upstream's own thread: close everything, leave the loop. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sim_upstream *up = arg;
    (void)fd;
    (void)what;
    if (up->close_sockets != NULL)
        up->close_sockets(up);
    http_server_free(up->http); /* aborts requests in flight: each frees itself */
    up->http = NULL;
    event_base_loopbreak(up->base);
}

/* The URL clients use: the listening host (a wildcard one as loopback)
 * and the port the socket got. */
static int make_url(struct sim_upstream *up, int fd, const char *host, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
        snprintf(err, err_size, "simulate %s: getsockname(): %s", up->prov->upstream,
                 strerror(errno));
        return -1;
    }
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    bool v6 = strchr(host, ':') != NULL;
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    const char *scheme = up->sim->ssl_ctx != NULL ? "https" : "http";
    snprintf(up->url, sizeof(up->url), v6 ? "%s://[%s]:%d%s" : "%s://%s:%d%s", scheme, host, port,
             up->region ? "/{region}" : "");
    return 0;
}

static int upstream_start(struct sim *s, struct sim_upstream *up, const struct sim_listen *l,
                          const struct config_simulate *settings,
                          const struct config_limits *limits, char *err, size_t err_size)
{
    up->sim = s;
    up->limits = limits;
    up->prov = sim_registry_find(l->upstream);
    if (up->prov == NULL) {
        snprintf(err, err_size,
                 "simulate %s: not simulated yet (the simulator speaks: %s); point the upstream "
                 "at a real URL",
                 l->upstream, sim_supported());
        return -1;
    }
    up->tun = config_simulate_tunables(settings, l->upstream);
    for (size_t i = 0; i < provider_count() && up->tun != NULL; i++)
        for (size_t h = 0; h < provider_at(i)->n_hosts; h++)
            if (strcmp(provider_at(i)->hosts[h].config_key, l->upstream) == 0)
                up->region = provider_at(i)->hosts[h].region;
    if (up->tun == NULL) {
        snprintf(err, err_size, "simulate %s: not an upstream of the proxy", l->upstream);
        return -1;
    }
    /* Each upstream its own sequence, the same for a seed whatever else is
     * simulated. */
    up->rng = s->seed;
    for (const char *p = l->upstream; *p; p++)
        up->rng = (up->rng ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
    up->id_base = sim_rng_next(&up->rng);
    snprintf(up->name, sizeof(up->name), "sim-%s", l->upstream);

    char host[256], msg[256];
    int port = 0;
    if (l->addr == NULL)
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (config_parse_address(l->addr, host, sizeof(host), &port, msg, sizeof(msg)) == -1) {
        snprintf(err, err_size, "simulate %s: listen address %s", l->upstream, msg);
        return -1;
    }
    int fd = http_listen_port(host, port, false, msg, sizeof(msg));
    if (fd == -1) {
        snprintf(err, err_size, "simulate %s: %s", l->upstream, msg);
        return -1;
    }
    if (make_url(up, fd, host, err, err_size) == -1) {
        close(fd);
        return -1;
    }
    up->base = event_base_new();
    up->stop_ev = up->base ? event_new(up->base, -1, 0, stop_cb, up) : NULL;
    struct http_server_opts opts = {
        .limits = limits,
        .on_request = on_request,
        .arg = up,
        .name = up->name,
        .uncounted = true,
        .ssl_ctx = s->ssl_ctx, /* simulate.tls: https:// and wss:// on the same listener */
    };
    up->http = up->stop_ev ? http_server_new(up->base, fd, &opts) : NULL;
    if (up->http == NULL) {
        if (up->stop_ev == NULL)
            close(fd);
        snprintf(err, err_size, "simulate %s: cannot start its listener (out of memory)",
                 l->upstream);
        return -1;
    }
    if (pthread_create(&up->thread, NULL, upstream_main, up) != 0) {
        snprintf(err, err_size, "simulate %s: cannot start its thread", l->upstream);
        return -1;
    }
    up->started = true;
    return 0;
}

struct sim *sim_start(const struct config_simulate *settings, const struct config_limits *limits,
                      const struct sim_listen *listens, size_t n, char *err, size_t err_size)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->ups = calloc(MAX(n, (size_t)1), sizeof(*s->ups))) == NULL) {
        free(s);
        snprintf(err, err_size, "simulate: out of memory");
        return NULL;
    }
    s->seed = settings->seed;
    if (!settings->seeded && RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
        s->seed = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
    if (!settings->seeded)
        s->seed &= (UINT64_C(1) << 53) - 1; /* printable and exact as a JSON number */
    if (settings->tls && (sim_tls_cert_make(&s->tls, err, err_size) == -1 ||
                          (s->ssl_ctx = sim_tls_server_ctx(&s->tls, err, err_size)) == NULL)) {
        sim_stop(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(listens[i].upstream, listens[j].upstream) == 0) {
                snprintf(err, err_size, "simulate %s: listed twice", listens[i].upstream);
                sim_stop(s);
                return NULL;
            }
        s->n = i + 1;
        if (upstream_start(s, &s->ups[i], &listens[i], settings, limits, err, err_size) == -1) {
            sim_stop(s);
            return NULL;
        }
    }
    return s;
}

const char *sim_url(const struct sim *s, size_t i)
{
    return i < s->n ? s->ups[i].url : NULL;
}

const char *sim_ca_pem(const struct sim *s)
{
    return s->ssl_ctx != NULL ? s->tls.pem : NULL;
}

uint64_t sim_seed(const struct sim *s)
{
    return s->seed;
}

void sim_stop(struct sim *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct sim_upstream *up = &s->ups[i];
        if (up->started) {
            event_active(up->stop_ev, 0, 0);
            pthread_join(up->thread, NULL);
        }
        http_server_free(up->http); /* a thread that never ran */
        if (up->stop_ev != NULL)
            event_free(up->stop_ev);
        if (up->base != NULL)
            event_base_free(up->base);
    }
    free(s->ups);
    SSL_CTX_free(s->ssl_ctx);
    sim_tls_cert_free(&s->tls);
    free(s);
}
