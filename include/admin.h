/* admin.h - the admin API of DESIGN §6 on its own listener and thread. */
#ifndef BYOK_ADMIN_H
#define BYOK_ADMIN_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "store.h"

struct admin;

/* cfg and store are borrowed for the admin's lifetime (store: the admin
 * thread's own handle). token is copied (and wiped by admin_free). Caller
 * frees with admin_free(). */
MUST_CHECK struct admin *admin_new(const struct config *cfg, struct store *store,
                                   const char *token);
void admin_free(struct admin *a);

/* http_request_cb for the admin listener; arg is the struct admin. */
void admin_handle(struct http_conn *c, struct http_request *req, void *arg);

#endif
