/* metrics.h - process-wide counters and a latency histogram, rendered in
 * Prometheus text format on the admin listener. Updates are relaxed atomic
 * adds: no lock on the hot path. */
#ifndef BYOK_METRICS_H
#define BYOK_METRICS_H

#include "common.h"
#include "provider.h"

#include <event2/buffer.h>

enum metrics_counter {
    METRICS_REQUESTS_TOTAL = 0,   /* data-plane requests answered */
    METRICS_REQUESTS_REJECTED,    /* 4xx produced by the proxy itself */
    METRICS_UPSTREAM_ERRORS,      /* 502/504 and mid-stream upstream failures */
    METRICS_CLIENT_DISCONNECTS,   /* client went away mid-request */
    METRICS_CONNECTIONS_ACCEPTED, /* downstream connections */
    METRICS_AUTH_FAILURES,        /* 401 on the data plane */
    METRICS__COUNT
};

void metrics_inc(enum metrics_counter c);
void metrics_add(enum metrics_counter c, uint64_t n);
/* Per-provider request count and upstream latency (ms to first byte). */
void metrics_observe_upstream(enum provider_id p, int status, int64_t ttfb_ms);
void metrics_conn_open(int delta); /* current open downstream connections */

/* Appends the Prometheus text exposition to out. */
void metrics_render(struct evbuffer *out);

#endif
