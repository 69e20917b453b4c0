/* upstream_curl.c - the libcurl engine of upstream.h (https://, host names,
 * HTTP/2): libcurl multi on the worker's event_base: socket and timer
 * callbacks drive curl (the hiperfifo shape, CURLOPT_PRIVATE back-pointer),
 * body bytes go to the consumer as they arrive, and a consumer that cannot
 * take more pauses the transfer (CURL_WRITEFUNC_PAUSE) until it drains.
 *
 * Freeing rules: a transfer is removed from the multi handle only outside
 * curl's callbacks: in check_done() after curl reported it finished, or in
 * upstream_cancel() called from a libevent callback. */
#include "common.h"
#include "upstream_engine.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define MAX_HEAD_LINES 128
#define SPARE_EASY_MAX 64 /* reset easy handles kept for reuse */

struct upstream_curl {
    struct event_base *base;
    const struct config *cfg;
    CURLM *multi;
    struct event *timer;
    int running;
    size_t active;
    struct curl_xfer *xfers;     /* all live transfers, for pool_free */
    CURL *spare[SPARE_EASY_MAX]; /* curl_easy_reset() handles: reuse saves their setup */
    size_t n_spare;
};

struct curl_xfer {
    struct upstream_xfer base; /* UPSTREAM_ENGINE_CURL */
    struct upstream_curl *pool;
    struct curl_xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    const struct upstream_callbacks *cb;
    void *arg;
    char *url;

    /* Response head being collected. */
    int status;
    char *lines[MAX_HEAD_LINES];
    size_t n_lines;
    bool head_done;
    bool paused;

    char errbuf[CURL_ERROR_SIZE];
};

/* Per-socket state handed to curl with curl_multi_assign. */
struct upstream_sock {
    struct event *ev;
    struct upstream_curl *pool;
};

static void check_done(struct upstream_curl *p);

/* --- header lists (curl_slist: both engines take them) -------------------- */

struct curl_slist *upstream_header_append(struct curl_slist *list, const char *name,
                                          size_t name_len, const char *value, size_t value_len)
{
    size_t n = name_len + value_len + 3;
    char stack[512];
    char *line = n <= sizeof(stack) ? stack : malloc(n);
    if (line == NULL)
        goto failed;
    memcpy(line, name, name_len);
    if (value_len == 0) {
        /* curl's syntax for "send this header with an empty value" */
        line[name_len] = ';';
        line[name_len + 1] = '\0';
    } else {
        line[name_len] = ':';
        line[name_len + 1] = ' ';
        memcpy(line + name_len + 2, value, value_len);
        line[name_len + 2 + value_len] = '\0';
    }
    struct curl_slist *l = curl_slist_append(list, line);
    OPENSSL_cleanse(line, n);
    if (line != stack)
        free(line);
    if (l == NULL)
        goto failed;
    return l;
failed:
    upstream_headers_free(list);
    return NULL;
}

void upstream_headers_free(struct curl_slist *list)
{
    for (struct curl_slist *i = list; i != NULL; i = i->next)
        OPENSSL_cleanse(i->data, strlen(i->data));
    curl_slist_free_all(list);
}

/* --- libevent <-> curl ---------------------------------------------------- */

static void event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_curl *p = arg;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(p->multi, fd, action, &p->running);
    /* The timer is curl's to manage (multi_timer_cb): a transfer added from
     * inside check_done() has just armed it. */
    check_done(p);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_curl *p = arg;
    (void)fd;
    (void)what;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &p->running);
    check_done(p);
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    struct upstream_curl *p = arg;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(p->timer);
        return 0;
    }
    /* 0 means "call socket_action now"; doing it from the loop (not here)
     * keeps curl from re-entering itself. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    return 0;
}

static int multi_socket_cb(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    struct upstream_curl *p = arg;
    struct upstream_sock *us = sockp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (us != NULL) {
            event_free(us->ev);
            free(us);
            curl_multi_assign(p->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (us == NULL) {
        us = calloc(1, sizeof(*us));
        if (us == NULL)
            return -1;
        us->pool = p;
        us->ev = event_new(p->base, s, kind, event_cb, p);
        if (us->ev == NULL) {
            free(us);
            return -1;
        }
        curl_multi_assign(p->multi, s, us);
    } else {
        event_del(us->ev);
        event_assign(us->ev, p->base, s, kind, event_cb, p);
    }
    event_add(us->ev, NULL);
    return 0;
}

/* --- transfers ------------------------------------------------------------ */

static void xfer_unlink_free(struct curl_xfer *x)
{
    struct upstream_curl *p = x->pool;
    if (x->prev)
        x->prev->next = x->next;
    else
        p->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    p->active--;
    curl_multi_remove_handle(p->multi, x->easy);
    if (p->n_spare < SPARE_EASY_MAX) {
        curl_easy_reset(x->easy);
        p->spare[p->n_spare++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    upstream_headers_free(x->headers);
    for (size_t i = 0; i < x->n_lines; i++)
        free(x->lines[i]);
    free(x->url);
    free(x);
}

static void check_done(struct upstream_curl *p)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct curl_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode result = msg->data.result;
        if (x == NULL)
            continue;
        if (result == CURLE_OK && !x->head_done) {
            /* A reply without body still has a head. */
            struct upstream_head h = {x->status, 0, (const char *const *)x->lines, x->n_lines};
            x->head_done = true;
            if (x->status >= 200)
                x->cb->on_head(&x->base, &h, x->arg);
        }
        /* Detach before the callback so the consumer may start new
         * transfers freely; free after. */
        const struct upstream_callbacks *cb = x->cb;
        void *arg = x->arg;
        char errbuf[CURL_ERROR_SIZE];
        memcpy(errbuf, x->errbuf, sizeof(errbuf));
        if (errbuf[0] == '\0' && result != CURLE_OK)
            snprintf(errbuf, sizeof(errbuf), "%s", curl_easy_strerror(result));
        xfer_unlink_free(x);
        cb->on_done((struct upstream_xfer *)NULL, result, errbuf, arg);
    }
}

static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    struct curl_xfer *x = arg;
    size_t len = size * n;
    if (x->head_done)
        return len; /* trailers: not forwarded */
    size_t l = len;
    while (l > 0 && (data[l - 1] == '\n' || data[l - 1] == '\r'))
        l--;
    if (l >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new status line: drop lines of an earlier 1xx head. */
        for (size_t i = 0; i < x->n_lines; i++)
            free(x->lines[i]);
        x->n_lines = 0;
        long code = 0;
        const char *sp = memchr(data, ' ', l);
        if (sp != NULL)
            code = strtol(sp + 1, NULL, 10);
        x->status = (int)code;
        return len;
    }
    if (l == 0) {
        /* End of a head. 1xx heads are not final. */
        if (x->status >= 200) {
            curl_off_t cl = -1;
            curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            struct upstream_head h = {x->status, (int64_t)cl, (const char *const *)x->lines,
                                      x->n_lines};
            x->head_done = true;
            x->cb->on_head(&x->base, &h, x->arg);
        }
        return len;
    }
    if (x->n_lines >= MAX_HEAD_LINES)
        return 0; /* absurd reply: abort the transfer (502) */
    char *line = strndup(data, l);
    if (line == NULL)
        return 0;
    x->lines[x->n_lines++] = line;
    return len;
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    struct curl_xfer *x = arg;
    size_t len = size * n;
    if (!x->head_done) {
        /* Body without a parsed head cannot happen with HTTP; be safe. */
        struct upstream_head h = {x->status, -1, (const char *const *)x->lines, x->n_lines};
        x->head_done = true;
        x->cb->on_head(&x->base, &h, x->arg);
    }
    if (x->cb->on_data(&x->base, data, len, x->arg) == UPSTREAM_DATA_PAUSE) {
        x->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return len;
}

struct upstream_xfer *upstream_curl_start(struct upstream_curl *p,
                                          const struct upstream_request *req,
                                          const struct upstream_callbacks *cb, void *arg)
{
    struct curl_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        upstream_headers_free(req->headers);
        return NULL;
    }
    x->base.kind = UPSTREAM_ENGINE_CURL;
    x->pool = p;
    x->cb = cb;
    x->arg = arg;
    x->headers = req->headers;
    x->url = strdup(req->url);
    x->easy = p->n_spare > 0 ? p->spare[--p->n_spare] : curl_easy_init();
    if (x->easy == NULL || x->url == NULL)
        goto failed;
    CURL *e = x->easy;
    const struct config_limits *lim = &p->cfg->limits;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* Paths are forwarded as the client sent them (already checked). */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    /* Bytes are relayed as received: no decoding. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_pem != NULL) {
        /* Copied by libcurl; verification stays on (peer and host). */
        struct curl_blob ca = {(void *)req->ca_pem, strlen(req->ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
    } else if (p->cfg->upstream_ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, p->cfg->upstream_ca_file);
    }
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)lim->upstream_connect_timeout_ms);
    if (lim->upstream_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)lim->upstream_timeout_ms);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 16384L);

    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->has_body || strcmp(req->method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK)
        goto failed;
    x->next = p->xfers;
    if (p->xfers)
        p->xfers->prev = x;
    p->xfers = x;
    p->active++;
    return &x->base;
failed:
    if (x->easy)
        curl_easy_cleanup(x->easy);
    upstream_headers_free(x->headers);
    free(x->url);
    free(x);
    return NULL;
}

void upstream_curl_resume(struct upstream_xfer *xfer)
{
    struct curl_xfer *x = container_of(xfer, struct curl_xfer, base);
    if (!x->paused)
        return;
    x->paused = false;
    /* May call write_cb right here with the held data, which may pause
     * again; that is fine outside of curl's own callbacks. */
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
    /* Let curl progress anything it queued. */
    struct timeval tv = {0, 0};
    evtimer_add(x->pool->timer, &tv);
}

bool upstream_curl_paused(const struct upstream_xfer *xfer)
{
    return container_of(xfer, const struct curl_xfer, base)->paused;
}

void upstream_curl_cancel(struct upstream_xfer *xfer)
{
    xfer_unlink_free(container_of(xfer, struct curl_xfer, base));
}

size_t upstream_curl_active(const struct upstream_curl *p)
{
    return p->active;
}

struct upstream_curl *upstream_curl_new(struct event_base *base, const struct config *cfg)
{
    struct upstream_curl *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->base = base;
    p->cfg = cfg;
    p->multi = curl_multi_init();
    p->timer = evtimer_new(base, timer_cb, p);
    if (p->multi == NULL || p->timer == NULL) {
        upstream_curl_free(p);
        return NULL;
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, multi_socket_cb);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)UPSTREAM_IDLE_MAX);
    return p;
}

void upstream_curl_free(struct upstream_curl *p)
{
    if (p == NULL)
        return;
    while (p->xfers != NULL)
        xfer_unlink_free(p->xfers);
    while (p->n_spare > 0)
        curl_easy_cleanup(p->spare[--p->n_spare]);
    if (p->multi)
        curl_multi_cleanup(p->multi);
    if (p->timer)
        event_free(p->timer);
    free(p);
}
