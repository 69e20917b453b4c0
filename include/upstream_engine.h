/* upstream_engine.h - the two engines behind upstream.h (internal to
 * upstream.c, upstream_curl.c and upstream_h1.c): the proxy's own HTTP/1.1
 * client for plain http:// upstreams given by address, and libcurl for the
 * rest (https://, host names, HTTP/2). upstream.c picks one per request;
 * each engine's transfer starts with struct upstream_xfer. */
#ifndef BYOK_UPSTREAM_ENGINE_H
#define BYOK_UPSTREAM_ENGINE_H

#include "common.h"
#include "upstream.h"

enum upstream_engine_kind {
    UPSTREAM_ENGINE_CURL = 0,
    UPSTREAM_ENGINE_H1,
};

/* The first member of each engine's transfer. */
struct upstream_xfer {
    enum upstream_engine_kind kind;
};

struct upstream_curl;
struct upstream_h1;

/* libcurl (upstream_curl.c). Same contracts as upstream.h's functions. */
MUST_CHECK struct upstream_curl *upstream_curl_new(struct event_base *base,
                                                   const struct config *cfg);
void upstream_curl_free(struct upstream_curl *p);
size_t upstream_curl_active(const struct upstream_curl *p);
MUST_CHECK struct upstream_xfer *upstream_curl_start(struct upstream_curl *p,
                                                     const struct upstream_request *req,
                                                     const struct upstream_callbacks *cb,
                                                     void *arg);
void upstream_curl_resume(struct upstream_xfer *x);
bool upstream_curl_paused(const struct upstream_xfer *x);
void upstream_curl_cancel(struct upstream_xfer *x);

/* The own HTTP/1.1 client (upstream_h1.c). */
MUST_CHECK struct upstream_h1 *upstream_h1_new(struct event_base *base, const struct config *cfg);
void upstream_h1_free(struct upstream_h1 *h);
size_t upstream_h1_active(const struct upstream_h1 *h);
/* Starts the request if the own client takes it: an http:// URL whose host
 * is an IPv4 or bracketed IPv6 address or "localhost" (127.0.0.1), no CA of
 * its own, at most 64 such origins per worker. Otherwise sets *declined and
 * returns NULL with the request untouched (headers still the caller's):
 * libcurl takes it. Else as upstream_start. */
MUST_CHECK struct upstream_xfer *upstream_h1_start(struct upstream_h1 *h,
                                                   const struct upstream_request *req,
                                                   const struct upstream_callbacks *cb, void *arg,
                                                   bool *declined);
void upstream_h1_resume(struct upstream_xfer *x);
bool upstream_h1_paused(const struct upstream_xfer *x);
void upstream_h1_cancel(struct upstream_xfer *x);

#endif
