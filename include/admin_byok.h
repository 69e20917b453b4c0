/* admin_byok.h - the BYOK side of the admin API: connections, BYOK
 * settings, resolution explain and Check Status. Handlers for admin.c's
 * route table; x is borrowed for the call. Not a public interface. */
#ifndef BYOK_ADMIN_BYOK_H
#define BYOK_ADMIN_BYOK_H

#include "admin_core.h"

void admin_byok_conn_create(struct admin_ctx *x);
void admin_byok_conn_list(struct admin_ctx *x);
void admin_byok_conn_get(struct admin_ctx *x);
void admin_byok_conn_patch(struct admin_ctx *x);
void admin_byok_conn_delete(struct admin_ctx *x);
void admin_byok_get(struct admin_ctx *x);
void admin_byok_put(struct admin_ctx *x);
void admin_byok_resolve(struct admin_ctx *x);
/* Answered later, when every call finished: the request stays open. */
void admin_byok_check(struct admin_ctx *x);
/* Cancels and frees every Check Status still in flight (admin_free): their
 * clients get no answer. */
void admin_byok_cancel_checks(struct admin *a);

#endif
