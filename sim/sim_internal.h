/* sim_internal.h - the simulator core's own structures, shared by its files
 * (sim.c: listeners, routing, replies, pacing; sim_ws.c: sockets;
 * sim_registry.c: the modules). Provider modules use sim_provider.h only. */
#ifndef BYOK_SIM_INTERNAL_H
#define BYOK_SIM_INTERNAL_H

#include "common.h"
#include "sim.h"
#include "sim_provider.h"
#include "sim_tls.h"

#include <pthread.h>

#include <event2/event.h>

/* One simulated upstream: its listener, thread and loop. */
struct sim_upstream {
    struct sim *sim;
    const struct sim_provider *prov;
    bool region;                           /* a regional host: the region is the first segment */
    const struct config_sim_tunables *tun; /* borrowed from the settings */
    const struct config_limits *limits;
    char url[160];
    char name[16]; /* thread name */
    pthread_t thread;
    bool started;
    struct event_base *base;
    struct http_server *http;
    struct event *stop_ev;
    uint64_t rng;     /* the fault draws and sim_rand */
    uint64_t id_base; /* request ids: id_base, then a counter */
    uint64_t id_seq;
    struct sim_ws *sockets; /* open sockets (closed at stop) */
    /* Closes them: set by sim_ws.c when it opens the first (the core calls
     * it at stop without depending on the socket module). */
    void (*close_sockets)(struct sim_upstream *up);
};

struct sim {
    uint64_t seed;
    /* simulate.tls: the ephemeral certificate and the listeners' context
     * (NULL: plain HTTP). */
    struct sim_tls_cert tls;
    SSL_CTX *ssl_ctx;
    size_t n;
    struct sim_upstream *ups;
};

/* The module for an upstream key (sim_registry.c); NULL when none. */
const struct sim_provider *sim_registry_find(const char *upstream);
size_t sim_registry_count(void);
const struct sim_provider *sim_registry_at(size_t i);

/* Ends the request without a reply: the connection is already someone
 * else's (sim_ws_accept) or gone. Frees r. */
void sim_request_release(struct sim_request *r);
/* Takes the request's connection from it (NULL when it is gone): the
 * request then ends with sim_request_release(). */
struct http_conn *sim_request_take_conn(struct sim_request *r);
/* The upstream the request came to. */
struct sim_upstream *sim_request_upstream(const struct sim_request *r);

#endif
