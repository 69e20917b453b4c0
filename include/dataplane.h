/* dataplane.h - the data-plane request handler (one per worker). */
#ifndef BYOK_DATAPLANE_H
#define BYOK_DATAPLANE_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "resolve.h"
#include "upstream.h"

struct dataplane;

/* All arguments borrowed for the dataplane's lifetime. Caller frees with
 * dataplane_free(). */
MUST_CHECK struct dataplane *dataplane_new(const struct config *cfg, struct upstream_pool *pool,
                                           struct resolver *resolver);
void dataplane_free(struct dataplane *dp);

/* http_request_cb for the data listener; arg is the struct dataplane. */
void dataplane_handle(struct http_conn *c, struct http_request *req, void *arg);

#endif
