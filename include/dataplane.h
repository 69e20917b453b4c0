/* dataplane.h - the data-plane handlers of one worker: the request head
 * (the stages of exchange.h, before any body is read) and the request
 * (handed to its transport). */
#ifndef BYOK_DATAPLANE_H
#define BYOK_DATAPLANE_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "resolve.h"
#include "upstream.h"

struct fleet;

#include <openssl/ssl.h>

struct dataplane;

/* All arguments borrowed for the dataplane's lifetime. tls_client verifies
 * upstream wss:// peers (shared by the workers). Caller frees with
 * dataplane_free(). */
/* fleet: the worker's Redis client in fleet mode (borrowed), else NULL. */
MUST_CHECK struct dataplane *dataplane_new(const struct config *cfg, struct upstream_pool *pool,
                                           struct resolver *resolver, struct event_base *base,
                                           SSL_CTX *tls_client, struct fleet *fleet);
void dataplane_free(struct dataplane *dp);
/* Exchanges still running on their own: WebSocket sessions, and replies
 * read on after their client left. dataplane_shutdown ends them all (each
 * writes its usage records). */
size_t dataplane_live(const struct dataplane *dp);
void dataplane_shutdown(struct dataplane *dp);

/* http_head_cb and http_request_cb of the data listener; arg is the struct
 * dataplane. */
int dataplane_head(struct http_conn *c, struct http_request *req, void *arg);
void dataplane_handle(struct http_conn *c, struct http_request *req, void *arg);

#endif
