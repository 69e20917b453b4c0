/* session.h - session pinning (DESIGN §3.3): the decision for every slot,
 * taken at a session's first request and kept while the session is used
 * (sliding TTL). Process-wide and shared by the workers (a session's
 * requests may arrive on any connection and so any worker); sharded
 * mutexes, held only for a copy. Not persisted: a restart starts new
 * sessions (fleet mode keeps them in Redis). */
#ifndef BYOK_SESSION_H
#define BYOK_SESSION_H

#include "common.h"
#include "provider.h"

#define SESSION_SLOTS PROVIDER_SLOT_MAX /* indexed by slot number (provider.h) */

struct session_pin {
    char payer_id[ID_MAX];
    char owner_id[ID_MAX]; /* whose BYOK connections the slots name */
    bool byok[SESSION_SLOTS];
    char connection_id[SESSION_SLOTS][ID_MAX]; /* "" when not byok */
    const char *reason[SESSION_SLOTS];         /* static strings */
};

/* max_sessions bounds memory; beyond it new sessions are not pinned (each
 * request decides alone) and a warning is logged. */
MUST_CHECK int session_init(size_t max_sessions);
void session_shutdown(void);

/* Finds the pin of (tenant_id, session_id) that has not expired, copies it
 * to out and slides its expiry to now + ttl_s. */
bool session_get(const char *tenant_id, const char *session_id, int ttl_s, struct session_pin *out);
/* Stores pin for (tenant_id, session_id). When a concurrent first request
 * already stored one, that one wins and is copied into *pin, so both
 * requests use the same decision. Returns false when the table is full
 * (the pin is then not kept). */
bool session_put(const char *tenant_id, const char *session_id, int ttl_s, struct session_pin *pin);
/* Stores pin for (tenant_id, session_id), replacing one already there
 * (fleet mode: the pin that stands in Redis wins over a local guess). */
void session_replace(const char *tenant_id, const char *session_id, int ttl_s,
                     const struct session_pin *pin);
/* Drops expired pins (called from a worker timer). */
void session_sweep(void);
/* Drops every pin of tenant_id (DESIGN §3.3: its key was revoked, it was
 * deleted or its parent changed): its next request starts a new session. */
void session_drop_tenant(const char *tenant_id);
size_t session_count(void);
/* For tests: the clock expiry is measured on (default mono_ms). */
void session_set_clock(int64_t (*clock)(void));

#endif
