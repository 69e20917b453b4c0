/* check.c - BYOK Check Status: one tiny real call per configured slot, run
 * on the admin thread's event base through libcurl multi, never blocking it
 * (see check.h for the flow and the calls). */
#include "common.h"
#include "check.h"
#include "crypto.h"
#include "route.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_CAP 8192 /* bytes of a reply kept to read an error message from */

enum call_state {
    CALL_IDLE = 0, /* no transfer: result already set (or nothing to do) */
    CALL_RUNNING,  /* transfer in flight */
    CALL_DONE,     /* transfer ended; result set */
};

struct check_call {
    struct check_run *run;
    const struct provider *slot; /* NULL: an unused slot number */
    enum call_state state;
    struct upstream_xfer *xfer; /* while RUNNING */
    char connection_id[ID_MAX];
    char region[32];
    int http_status; /* 0 until a head arrived */
    char *body;      /* first BODY_CAP bytes of the reply */
    size_t body_len;
    /* SHA-256 and length of the key sent, so a reply that echoes the key is
     * scrubbed before any part of it reaches the report. The key itself is
     * wiped as soon as the request headers are built. */
    unsigned char key_digest[32];
    size_t key_len;
    json_t *result; /* the slot's report entry */
};

struct check_run {
    struct upstream_pool *pool;
    const struct config *cfg;
    struct event *timer; /* deadline, re-armed to 0 to finish from the loop */
    check_done_cb done_cb;
    void *arg;
    int deadline_ms;
    size_t running;
    struct check_call calls[CHECK_SLOTS];
};

/* ---- text helpers ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    size_t n;
    unsigned int cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Copies s into out as valid UTF-8 with control characters as spaces, runs
 * of whitespace collapsed, at most max bytes of text ("..." appended when
 * cut, at a character boundary). */
static void sanitize(const char *s, size_t len, size_t max, char *out, size_t out_size)
{
    size_t n = 0, i = 0;
    bool cut = false, space = true; /* true: drop leading whitespace */
    if (out_size < 4) {
        if (out_size > 0)
            out[0] = '\0';
        return;
    }
    if (max > out_size - 4)
        max = out_size - 4;
    while (i < len) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t seq = utf8_seq(u, len - i);
        if (seq == 0 || (seq == 1 && (u[0] < 0x20 || u[0] == 0x7f))) {
            bool ws = seq == 1; /* control character: whitespace-like */
            i++;
            if (ws) {
                if (!space && n < max)
                    out[n++] = ' ';
                space = true;
                continue;
            }
            u = (const unsigned char *)"?";
            seq = 1;
        } else {
            i += seq;
        }
        if (seq == 1 && u[0] == ' ') {
            if (space)
                continue;
            space = true;
        } else {
            space = false;
        }
        if (n + seq > max) {
            cut = true;
            break;
        }
        memcpy(out + n, u, seq);
        n += seq;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    if (cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Replaces every occurrence of the key (known by its SHA-256 and length)
 * in buf with '*': a mock or a misbehaving provider may echo the key. */
static void scrub_key(char *buf, size_t len, const unsigned char digest[32], size_t key_len)
{
    if (key_len == 0 || key_len > len)
        return;
    for (size_t i = 0; i + key_len <= len; i++) {
        unsigned char d[32];
        unsigned int dl = 0;
        if (EVP_Digest(buf + i, key_len, d, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
            continue;
        if (crypto_equal(d, digest, 32)) {
            memset(buf + i, '*', key_len);
            i += key_len - 1;
        }
    }
}

static void error_message(const struct provider *p, const char *body, size_t len,
                          const unsigned char *digest, size_t key_len, char *out, size_t out_size)
{
    json_t *root = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg =
        json_is_object(root) && p->error_message != NULL ? p->error_message(root) : NULL;
    size_t mlen = msg ? strlen(msg) : len;
    char *copy = malloc(mlen + 1);
    if (out_size > 0)
        out[0] = '\0';
    if (copy != NULL) {
        memcpy(copy, msg ? msg : body, mlen);
        copy[mlen] = '\0';
        if (digest != NULL)
            scrub_key(copy, mlen, digest, key_len);
        sanitize(copy, mlen, CHECK_DETAIL_MAX, out, out_size);
        free(copy);
    }
    json_decref(root);
}

void check_error_message(const struct provider *p, const char *body, size_t len, char *out,
                         size_t out_size)
{
    error_message(p, body, len, NULL, 0, out, out_size);
}

/* ---- requests ----------------------------------------------------------------- */

int check_build_url(const struct config *cfg, const struct provider *p, const char *region,
                    char *out, size_t out_size)
{
    char base[1024];
    if (p == NULL || p->check == NULL ||
        route_upstream_base(cfg, p, 0, region, base, sizeof(base)) == -1)
        return -1;
    int n = snprintf(out, out_size, "%s%s", base, p->check->path);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

static json_t *entry(const char *status, const char *detail, const char *connection_id)
{
    json_t *o = json_pack("{s:s, s:s}", "status", status, "detail", detail);
    if (o != NULL && connection_id != NULL && connection_id[0] != '\0')
        json_object_set_new(o, "connection_id", json_string(connection_id));
    return o;
}

static void on_head(struct upstream_xfer *x, const struct upstream_head *head, void *arg)
{
    struct check_call *call = arg;
    (void)x;
    call->http_status = head->status;
}

static enum upstream_data_result on_data(struct upstream_xfer *x, const char *data, size_t len,
                                         void *arg)
{
    struct check_call *call = arg;
    (void)x;
    /* Only the start of an error reply is read; audio of a successful TTS
     * call is discarded. */
    if (call->http_status >= 300 && call->body_len < BODY_CAP) {
        if (call->body == NULL && (call->body = malloc(BODY_CAP)) == NULL)
            return UPSTREAM_DATA_OK;
        size_t take = MIN(len, BODY_CAP - call->body_len);
        memcpy(call->body + call->body_len, data, take);
        call->body_len += take;
    }
    return UPSTREAM_DATA_OK;
}

/* Sets the result of a call that got an HTTP answer. */
static void result_http(struct check_call *call)
{
    char detail[CHECK_DETAIL_MAX + 256];
    const struct provider *p = call->slot;
    if (call->http_status >= 200 && call->http_status < 300) {
        if (p->region)
            snprintf(detail, sizeof(detail), "the key works in region %s: %s succeeded (HTTP %d)",
                     call->region, p->check->what, call->http_status);
        else
            snprintf(detail, sizeof(detail), "the key works: %s succeeded (HTTP %d)",
                     p->check->what, call->http_status);
        call->result = entry("ok", detail, call->connection_id);
    } else {
        char msg[CHECK_DETAIL_MAX + 8];
        error_message(p, call->body, call->body_len, call->key_digest, call->key_len, msg,
                      sizeof(msg));
        if (msg[0] == '\0' && p->region && (call->http_status == 401 || call->http_status == 403))
            snprintf(msg, sizeof(msg),
                     "access denied: the key is wrong or belongs to another region than %s",
                     call->region);
        if (msg[0] == '\0')
            snprintf(msg, sizeof(msg), "no error message in the reply");
        snprintf(detail, sizeof(detail), "%s answered HTTP %d: %s", p->display, call->http_status,
                 msg);
        call->result = entry("error", detail, call->connection_id);
    }
    if (call->result != NULL)
        json_object_set_new(call->result, "http_status", json_integer(call->http_status));
}

/* Sets the result of a call that got no HTTP answer. curl's message never
 * holds headers or keys; it may name the host, which is not secret. */
static void result_transport(struct check_call *call, CURLcode rc, const char *errbuf)
{
    char detail[CHECK_DETAIL_MAX + 256];
    bool connect_failure = rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT ||
                           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SSL_CONNECT_ERROR;
    if (call->slot->region && connect_failure)
        snprintf(detail, sizeof(detail),
                 "could not connect to the %s endpoint: the region is probably wrong (%s)",
                 call->region, errbuf);
    else
        snprintf(detail, sizeof(detail), "could not reach the %s endpoint: %s", call->slot->display,
                 errbuf);
    call->result = entry("error", detail, call->connection_id);
}

static void run_finish_soon(struct check_run *r)
{
    struct timeval now = {0, 0};
    evtimer_add(r->timer, &now);
}

static void on_done(struct upstream_xfer *x, CURLcode result, const char *errbuf, void *arg)
{
    struct check_call *call = arg;
    (void)x;
    call->xfer = NULL;
    call->state = CALL_DONE;
    if (result == CURLE_OK || call->http_status >= 200)
        result_http(call);
    else
        result_transport(call, result, errbuf ? errbuf : curl_easy_strerror(result));
    /* Finish from the loop, not from inside the pool's callback: the
     * consumer then may free or start transfers freely. */
    if (--call->run->running == 0)
        run_finish_soon(call->run);
}

static const struct upstream_callbacks call_callbacks = {on_head, on_data, on_done};

/* Opens the key, builds the headers (wiping every copy of the key), and
 * starts the transfer. Sets call->result itself on failure. */
static void call_start(struct check_call *call, const struct store_connection *conn)
{
    struct check_run *r = call->run;
    const struct provider *p = call->slot;
    char key[CRYPTO_SECRET_MAX + 1];
    char value[CRYPTO_SECRET_MAX + 16];
    char url[1024];
    size_t key_len = 0;
    struct curl_slist *h = NULL;
    const char *hname = NULL;
    unsigned int dl = 0;

    if (check_build_url(r->cfg, p, call->region, url, sizeof(url)) == -1) {
        call->result = entry("error",
                             p->region ? "the connection's region is not an allowed region name"
                                       : "the check URL is too long for the configured upstream",
                             call->connection_id);
        return;
    }
    if (crypto_open(conn->tenant_id, conn->id, conn->key_version, conn->sealed, conn->sealed_len,
                    key, &key_len) == -1) {
        call->result = entry("error",
                             "the connection's key cannot be decrypted (sealed under another "
                             "master key version, or the record was altered)",
                             call->connection_id);
        goto out;
    }
    if (EVP_Digest(key, key_len, call->key_digest, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
        call->key_len = 0; /* no scrubbing possible; the provider masks keys itself */
    else
        call->key_len = key_len;
    int vl = route_inject_value(p, NULL, key, &hname, value, sizeof(value));
    crypto_wipe(key, sizeof(key));
    if (vl >= 0)
        h = upstream_header_append(h, hname, strlen(hname), value, (size_t)vl);
    crypto_wipe(value, sizeof(value));
    if (h != NULL && p->check->content_type != NULL)
        h = upstream_header_append(h, "Content-Type", 12, p->check->content_type,
                                   strlen(p->check->content_type));
    if (h != NULL)
        h = upstream_header_append(h, "User-Agent", 10, "byok-proxy-check", 16);
    if (h == NULL) {
        call->result = entry("error", "out of memory", call->connection_id);
        goto out;
    }
    struct upstream_request req = {.url = url,
                                   .headers = h,
                                   .method = p->check->method,
                                   .ca_pem = config_upstream_ca_pem(r->cfg, p, 0)};
    if (p->check->body != NULL) {
        req.body = p->check->body;
        req.body_len = strlen(p->check->body);
        req.has_body = true;
    }
    /* upstream_start owns (and wipes) the header list from here on. */
    call->xfer = upstream_start(r->pool, &req, &call_callbacks, call);
    if (call->xfer == NULL) {
        call->result =
            entry("error", "could not start the request (out of memory)", call->connection_id);
        goto out;
    }
    call->state = CALL_RUNNING;
    r->running++;
out:
    crypto_wipe(key, sizeof(key));
    crypto_wipe(value, sizeof(value));
}

/* ---- the run ---------------------------------------------------------------------- */

static void run_free(struct check_run *r)
{
    for (size_t i = 0; i < CHECK_SLOTS; i++) {
        struct check_call *call = &r->calls[i];
        if (call->xfer != NULL)
            upstream_cancel(call->xfer);
        call->xfer = NULL;
        free(call->body);
        json_decref(call->result);
        crypto_wipe(call->key_digest, sizeof(call->key_digest));
    }
    if (r->timer != NULL)
        event_free(r->timer);
    free(r);
}

/* Deadline passed (calls still running) or every call ended (re-armed with
 * 0): time the late ones out, then report. */
/* The result of a call still running when the deadline passed. */
static void result_late(struct check_call *call)
{
    char detail[256];
    int ms = call->run->deadline_ms;
    if (call->http_status >= 200) {
        /* The answer is known; only its body was slow. */
        result_http(call);
        return;
    }
    if (call->slot->region)
        snprintf(detail, sizeof(detail),
                 "no answer from the %s endpoint within %d.%d s: the region is probably wrong, "
                 "or the endpoint is unreachable",
                 call->region, ms / 1000, ms % 1000 / 100);
    else
        snprintf(detail, sizeof(detail), "no answer from the %s endpoint within %d.%d s",
                 call->slot->display, ms / 1000, ms % 1000 / 100);
    call->result = entry("error", detail, call->connection_id);
}

/* Deadline passed (calls still running) or every call ended (re-armed with
 * 0): time the late ones out, then report. */
static void run_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct check_run *r = arg;
    (void)fd;
    (void)what;
    json_t *report = json_object();
    for (size_t i = 0; i < provider_slot_count(); i++) {
        struct check_call *call = &r->calls[i];
        if (call->state == CALL_RUNNING) {
            upstream_cancel(call->xfer);
            call->xfer = NULL;
            call->state = CALL_DONE;
            result_late(call);
        }
        if (call->result == NULL)
            call->result = entry("error", "out of memory", NULL);
        if (report != NULL && call->result != NULL) {
            json_object_set_new(report, call->slot->name, call->result);
            call->result = NULL;
        }
    }
    r->running = 0;
    check_done_cb cb = r->done_cb;
    void *cb_arg = r->arg;
    run_free(r);
    cb(report, cb_arg);
}

struct check_run *check_start(struct upstream_pool *pool, struct event_base *base,
                              const struct config *cfg,
                              const struct check_target targets[CHECK_SLOTS], int deadline_ms,
                              check_done_cb done_cb, void *arg)
{
    struct check_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->pool = pool;
    r->cfg = cfg;
    r->done_cb = done_cb;
    r->arg = arg;
    r->deadline_ms = deadline_ms;
    r->timer = evtimer_new(base, run_timer_cb, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < provider_slot_count(); i++) {
        struct check_call *call = &r->calls[i];
        const struct check_target *t = &targets[i];
        char detail[ID_MAX + 128];
        call->run = r;
        call->slot = provider_slot_at(i);
        snprintf(call->connection_id, sizeof(call->connection_id), "%s",
                 t->kind == CHECK_TARGET_NOT_CONFIGURED ? "" : t->connection_id);
        switch (t->kind) {
        case CHECK_TARGET_NOT_CONFIGURED:
            call->result = entry("not_configured", "no connection is selected for this slot", NULL);
            break;
        case CHECK_TARGET_MISSING:
            snprintf(detail, sizeof(detail),
                     "the selected connection \"%s\" does not exist any more", t->connection_id);
            call->result = entry("error", detail, t->connection_id);
            break;
        case CHECK_TARGET_CONNECTION:
            if (t->conn.provider != call->slot) {
                call->result = entry("error", "the selected connection is of another provider",
                                     t->connection_id);
                break;
            }
            snprintf(call->region, sizeof(call->region), "%s", t->conn.region);
            call_start(call, &t->conn);
            break;
        }
    }
    /* The deadline covers every call (they start together); with nothing
     * running, report from the next loop turn. */
    if (r->running == 0) {
        run_finish_soon(r);
    } else {
        struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
        evtimer_add(r->timer, &tv);
    }
    return r;
}

void check_cancel(struct check_run *r)
{
    if (r == NULL)
        return;
    run_free(r);
}
