/* upstream.c - one worker's upstream HTTP: picks the engine for each
 * request (the own HTTP/1.1 client for plain http:// upstreams given by
 * address, libcurl for the rest) and passes the calls on. */
#include "common.h"
#include "upstream_engine.h"

#include <stdlib.h>

struct upstream_pool {
    struct upstream_curl *curl;
    struct upstream_h1 *h1;
};

struct upstream_pool *upstream_pool_new(struct event_base *base, const struct config *cfg)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->curl = upstream_curl_new(base, cfg);
    p->h1 = upstream_h1_new(base, cfg);
    if (p->curl == NULL || p->h1 == NULL) {
        upstream_pool_free(p);
        return NULL;
    }
    return p;
}

void upstream_pool_free(struct upstream_pool *p)
{
    if (p == NULL)
        return;
    upstream_h1_free(p->h1);
    upstream_curl_free(p->curl);
    free(p);
}

size_t upstream_pool_active(const struct upstream_pool *p)
{
    return upstream_curl_active(p->curl) + upstream_h1_active(p->h1);
}

struct upstream_xfer *upstream_start(struct upstream_pool *p, const struct upstream_request *req,
                                     const struct upstream_callbacks *cb, void *arg)
{
    bool declined = false;
    struct upstream_xfer *x = upstream_h1_start(p->h1, req, cb, arg, &declined);
    return declined ? upstream_curl_start(p->curl, req, cb, arg) : x;
}

void upstream_resume(struct upstream_xfer *x)
{
    if (x->kind == UPSTREAM_ENGINE_H1)
        upstream_h1_resume(x);
    else
        upstream_curl_resume(x);
}

bool upstream_paused(const struct upstream_xfer *x)
{
    return x->kind == UPSTREAM_ENGINE_H1 ? upstream_h1_paused(x) : upstream_curl_paused(x);
}

void upstream_cancel(struct upstream_xfer *x)
{
    if (x == NULL)
        return;
    if (x->kind == UPSTREAM_ENGINE_H1)
        upstream_h1_cancel(x);
    else
        upstream_curl_cancel(x);
}
