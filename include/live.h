/* live.h - live-session counts (DESIGN §6, tenant limits.live_sessions): how
 * many WebSocket sessions and streaming responses each tenant has open in
 * this process, and the admission against its limit and its agency owner's
 * (a subaccount's sessions count against both). One mutex, held for a hash
 * lookup. In SQLite mode one process owns the store (store_sqlite_lock.c),
 * so these counts are the tenant's whole count. */
#ifndef BYOK_LIVE_H
#define BYOK_LIVE_H

#include "common.h"

/* What one open session counts against; zeroed = nothing held. */
struct live_slot {
    char tenant_id[ID_MAX];
    char owner_id[ID_MAX]; /* the agency owner, "" none */
    bool held;
};

/* Counts a session of tenant_id (limit: its limits.live_sessions, 0 none)
 * and of its agency owner owner_id ("" none; owner_limit likewise). -1 when
 * either is at its limit (nothing counted; *which names whose limit). */
MUST_CHECK int live_acquire(const char *tenant_id, int64_t limit, const char *owner_id,
                            int64_t owner_limit, struct live_slot *out, const char **which);
/* Uncounts; a no-op on a slot that holds nothing. */
void live_release(struct live_slot *slot);
/* Open sessions counted for tenant_id (its own and, for an agency owner,
 * its subaccounts'). */
int64_t live_count(const char *tenant_id);

#endif
