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
    METRICS_TOKENS_MINTED,        /* ephemeral tokens issued */
    METRICS_CONN_UNREADABLE,      /* BYOK lines on the platform key: connection undecryptable */
    METRICS_ACCEPT_PAUSES,        /* listener paused: accept failed (out of descriptors) */
    METRICS__COUNT
};

/* Why the proxy refused a request before anything went upstream. */
enum metrics_refusal {
    METRICS_REFUSED_AUTH = 0,           /* no or wrong proxy key (401) */
    METRICS_REFUSED_BALANCE,            /* balance gate (402) */
    METRICS_REFUSED_ENDPOINT,           /* endpoint_not_allowed (403) */
    METRICS_REFUSED_MODEL,              /* model_not_priced (403) */
    METRICS_REFUSED_LIMITS,             /* size, rate and tenant limits (413, 414, 429, 431) */
    METRICS_REFUSED_REQUEST,            /* malformed request, unknown route (400, 404) */
    METRICS_REFUSED_UNAVAILABLE,        /* store or configuration (5xx before upstream) */
    METRICS_REFUSED_CONNECTIONS,        /* connection refused at accept: limits.max_connections */
    METRICS_REFUSED_CONNECTIONS_CLIENT, /* ... limits.max_connections_per_client */
    METRICS_REFUSED__COUNT
};

void metrics_inc(enum metrics_counter c);
void metrics_add(enum metrics_counter c, uint64_t n);
/* A refusal; p may be NULL (no route). */
void metrics_refused(const struct provider *p, enum metrics_refusal why);
/* Per-provider upstream latency (ms to first byte, -1 when none). */
void metrics_observe_upstream(const struct provider *p, int status, int64_t ttfb_ms);
/* A proxied exchange ended: by provider, status class and billed_to. */
void metrics_exchange(const struct provider *p, int status, bool byok);
void metrics_conn_open(int delta); /* current open downstream connections */

/* Appends the Prometheus text exposition to out. */
void metrics_render(struct evbuffer *out);

#endif
