/* admin_tenants.h - the tenant side of the admin API: tenants and balances,
 * proxy keys, usage queries, metrics and health. Handlers for admin.c's
 * route table; x is borrowed for the call. Not a public interface. */
#ifndef BYOK_ADMIN_TENANTS_H
#define BYOK_ADMIN_TENANTS_H

#include "admin_core.h"

void admin_tenants_create(struct admin_ctx *x);
void admin_tenants_list(struct admin_ctx *x);
void admin_tenants_get(struct admin_ctx *x);
void admin_tenants_patch(struct admin_ctx *x);
void admin_tenants_delete(struct admin_ctx *x);
void admin_tenants_topup(struct admin_ctx *x);
void admin_tenants_key_create(struct admin_ctx *x);
void admin_tenants_key_list(struct admin_ctx *x);
void admin_tenants_key_revoke(struct admin_ctx *x);
void admin_tenants_usage(struct admin_ctx *x);
void admin_tenants_metrics(struct admin_ctx *x);
void admin_tenants_healthz(struct admin_ctx *x);
void admin_tenants_readyz(struct admin_ctx *x);

#endif
