/* admin.h - the admin API of DESIGN §6 on its own listener and thread. */
#ifndef BYOK_ADMIN_H
#define BYOK_ADMIN_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "store.h"

struct admin;
struct follower;

/* cfg and store are borrowed for the admin's lifetime (store: the admin
 * thread's own handle). token is copied (and wiped by admin_free). Caller
 * frees with admin_free(). */
MUST_CHECK struct admin *admin_new(const struct config *cfg, struct store *store,
                                   const char *token);
void admin_free(struct admin *a);
/* Fleet mode: the follower of this instance's replica (borrowed): a write's
 * success is answered once the replica has it, so a request to this
 * instance right after the answer sees the write (read-your-writes; other
 * instances see it within DESIGN §7b's 250 ms). */
void admin_set_follower(struct admin *a, struct follower *f);

/* http_request_cb for the admin listener; arg is the struct admin. */
void admin_handle(struct http_conn *c, struct http_request *req, void *arg);

#endif
