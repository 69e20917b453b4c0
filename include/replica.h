/* replica.h - an in-memory, read-only copy of the tenant data of a store
 * (tenants, proxy keys, connections still sealed, BYOK settings), for the
 * workers of fleet mode (DESIGN §7b): they read it like a store and never
 * wait on the network. Filled and refreshed from any store backend by
 * whoever owns the source handle (in fleet mode a thread that follows the
 * invalidation channel); each refresh replaces whole tenants under a
 * write lock, so a reader sees a tenant as it was before or after, never
 * half of it. Balances are copied too but are not what fleet admission
 * decides on (holds run in Redis). */
#ifndef BYOK_REPLICA_H
#define BYOK_REPLICA_H

#include "common.h"
#include "store.h"

struct replica;

MUST_CHECK struct replica *replica_new(void);
void replica_free(struct replica *rp);

/* Replaces the whole copy with src's current data. STORE_* code; on failure
 * the copy is left as it was. */
MUST_CHECK int replica_load_all(struct replica *rp, struct store *src);
/* Re-reads one tenant (its record, keys, connections, BYOK settings), or
 * drops it when src no longer has it. STORE_* code. */
MUST_CHECK int replica_load_tenant(struct replica *rp, struct store *src, const char *tenant_id);
/* Tenants in the copy. */
size_t replica_tenants(struct replica *rp);

/* A read-only store over the copy (one per thread, like any handle):
 * ping, tenant get/list, key get/list, connection get/list, byok get.
 * Writes answer STORE_ERR_INTERNAL (logged once). Freed by store_close. */
MUST_CHECK struct store *replica_store(struct replica *rp);

#endif
