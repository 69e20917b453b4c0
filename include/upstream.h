/* upstream.h - upstream HTTP for one worker, on its event_base: plain
 * http:// upstreams given by address (the simulator, a local sidecar, the
 * bench's mock) through the proxy's own HTTP/1.1 client (upstream_h1.c:
 * kept-alive connections, one send per request, no per-transfer setup), the
 * rest through one libcurl multi handle (upstream_curl.c: TLS verification,
 * HTTP/2 where offered, async DNS). Either way a transfer reports its
 * response head, its body bytes as they arrive (the consumer may ask to
 * pause: back-pressure), and its end; errors are reported as CURLcodes. */
#ifndef BYOK_UPSTREAM_H
#define BYOK_UPSTREAM_H

#include "common.h"
#include "config.h"

#include <curl/curl.h>
#include <event2/event.h>

/* Idle upstream connections each engine of one worker's pool keeps for
 * reuse, at most (descriptors: see main.c). */
#define UPSTREAM_IDLE_MAX 256

struct upstream_pool;
struct upstream_xfer;

/* Response head: status and the raw header lines ("Name: value", no CRLF). */
struct upstream_head {
    int status;
    int64_t content_length; /* -1 when unknown (chunked / close-delimited) */
    const char *const *lines;
    size_t n_lines;
};

enum upstream_data_result {
    UPSTREAM_DATA_OK = 0,
    UPSTREAM_DATA_PAUSE, /* data NOT consumed; it is delivered again after resume */
};

struct upstream_callbacks {
    /* The final (non-1xx) response head arrived. */
    void (*on_head)(struct upstream_xfer *x, const struct upstream_head *head, void *arg);
    enum upstream_data_result (*on_data)(struct upstream_xfer *x, const char *data, size_t len,
                                         void *arg);
    /* The transfer ended (result CURLE_OK or an error; errbuf has curl's
     * message, which never contains headers or keys). The transfer is
     * already freed: x is passed as NULL. */
    void (*on_done)(struct upstream_xfer *x, CURLcode result, const char *errbuf, void *arg);
};

/* One per worker. cfg borrowed for the pool's lifetime. Caller frees with
 * upstream_pool_free(). */
MUST_CHECK struct upstream_pool *upstream_pool_new(struct event_base *base,
                                                   const struct config *cfg);
/* Cancels every transfer (no callbacks) and frees. */
void upstream_pool_free(struct upstream_pool *p);
size_t upstream_pool_active(const struct upstream_pool *p);

struct upstream_request {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* copied */
    struct curl_slist *headers; /* takes ownership; freed with the transfer (values wiped) */
    const char *body;           /* borrowed until on_done or upstream_cancel */
    size_t body_len;
    bool has_body;
    /* The one CA (PEM, borrowed until upstream_start returns) this transfer
     * trusts instead of upstream_ca_file / the system store: the in-process
     * simulator's (config_upstream_ca_pem). NULL: the usual trust. */
    const char *ca_pem;
};

/* Starts a transfer. Returns NULL on failure (nothing started, headers
 * freed). */
MUST_CHECK struct upstream_xfer *upstream_start(struct upstream_pool *p,
                                                const struct upstream_request *req,
                                                const struct upstream_callbacks *cb, void *arg);
/* Resumes a transfer paused by UPSTREAM_DATA_PAUSE. Never call from inside
 * an upstream callback. */
void upstream_resume(struct upstream_xfer *x);
bool upstream_paused(const struct upstream_xfer *x);
/* Stops the transfer at once (the upstream connection is closed, not
 * reused) and frees it without calling on_done. Never call from inside an
 * upstream callback. */
void upstream_cancel(struct upstream_xfer *x);

/* Frees a header list, wiping every line first (they may carry a key).
 * NULL is a no-op. */
void upstream_headers_free(struct curl_slist *list);

/* Appends "Name: value" to list, wiping the temporary copy. Returns the new
 * list or NULL on failure (the old list is then freed). */
MUST_CHECK struct curl_slist *upstream_header_append(struct curl_slist *list, const char *name,
                                                     size_t name_len, const char *value,
                                                     size_t value_len);

#endif
