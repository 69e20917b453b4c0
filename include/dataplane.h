/* dataplane.h - the data-plane request handler (one per worker). */
#ifndef BYOK_DATAPLANE_H
#define BYOK_DATAPLANE_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "resolve.h"
#include "upstream.h"

#include <openssl/ssl.h>

struct dataplane;

/* All arguments borrowed for the dataplane's lifetime. Caller frees with
 * dataplane_free(). */
/* tls_client verifies upstream wss:// peers (shared by the workers). */
MUST_CHECK struct dataplane *dataplane_new(const struct config *cfg, struct upstream_pool *pool,
                                           struct resolver *resolver, struct event_base *base,
                                           SSL_CTX *tls_client);
void dataplane_free(struct dataplane *dp);
/* Live WebSocket sessions, and ending them all (server shutdown): each
 * writes its usage record when it has ended. */
size_t dataplane_ws_sessions(const struct dataplane *dp);
void dataplane_shutdown(struct dataplane *dp);

/* http_request_cb for the data listener; arg is the struct dataplane. */
void dataplane_handle(struct http_conn *c, struct http_request *req, void *arg);

#endif
