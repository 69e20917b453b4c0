/* fleet.h - a worker's per-request questions to Redis in fleet mode
 * (DESIGN §3.4, §6, §7b), asked without blocking (redis_async.h) and
 * answered by callback on the worker's event base:
 *
 *   - admission: the payer's available funds > 0, and a hold taken in the
 *     same step (store_redis.h's ADMIT script, fleet-wide, expiring after
 *     balance.hold_ttl_s); its release when no record settles it;
 *   - live sessions: a lease per open WebSocket session or streaming
 *     response, counted against the tenant's limits.live_sessions and its
 *     agency owner's across every instance; renewed while it runs, released
 *     at its end, expiring on its own when its instance dies;
 *   - session pins (DESIGN §3.3) kept in Redis as text (resolve_pin_encode):
 *     read with their sliding TTL moved, written first-come (a concurrent
 *     first request elsewhere wins and its pin is answered);
 *   - single-use values (ephemeral tokens' grants): put with an expiry,
 *     taken once.
 *
 * One struct fleet per worker. A question asked while Redis is down gets
 * FLEET_DOWN at once (no callback): the caller applies store.on_down. */
#ifndef BYOK_FLEET_H
#define BYOK_FLEET_H

#include "common.h"
#include "redis_async.h"

#include <event2/event.h>

struct config;
struct fleet;

/* Lease of a live session: how long it lives without renewal, and how
 * often the holder renews it. */
#define FLEET_LEASE_MS       30000
#define FLEET_LEASE_RENEW_MS 10000
/* How long a worker keeps a session's pin read from Redis before asking
 * again (each ask slides the Redis copy's TTL). */
#define FLEET_PIN_CACHE_S 5

enum fleet_status {
    FLEET_OK = 0,   /* admitted / counted */
    FLEET_NO_FUNDS, /* available funds <= 0 */
    FLEET_NO_PAYER, /* no such tenant */
    FLEET_LIMIT,    /* a live-session limit is reached */
    FLEET_DOWN,     /* no answer (down, timed out) */
    FLEET_ABSENT,   /* no such pin or value (or taken already) */
    FLEET_PENDING,  /* asked: the callback follows */
};

/* status: FLEET_OK / NO_FUNDS / NO_PAYER / DOWN; available: the payer's
 * funds before this hold (micro-USD; 0 with DOWN). */
typedef void (*fleet_admit_cb)(void *arg, enum fleet_status status, int64_t available);
/* status: FLEET_OK / LIMIT / DOWN (fleet_admit_leased: also NO_FUNDS /
 * NO_PAYER); owner_limited: the agency owner's limit (not the tenant's) was
 * the one reached. */
typedef void (*fleet_live_cb)(void *arg, enum fleet_status status, bool owner_limited);

/* status: FLEET_OK with text (borrowed for the call; for a put: the pin
 * that stands, ours or the winner's), FLEET_ABSENT, or FLEET_DOWN. */
typedef void (*fleet_text_cb)(void *arg, enum fleet_status status, const char *text, size_t len);

MUST_CHECK struct fleet *fleet_new(struct event_base *base, const struct config *cfg,
                                   const char *name);
void fleet_free(struct fleet *f);
bool fleet_up(const struct fleet *f);

/* Admission with a hold of hold_micros under hold_id (unique per line;
 * ttl: balance.hold_ttl_s). Asked at the end of this loop turn, with the
 * worker's other admissions of the turn in one script call. FLEET_PENDING
 * with *req set (cancel with fleet_admission_cancel: one not sent yet never
 * is; one sent may have taken its hold: release it), or FLEET_DOWN. */
struct fleet_admission;
enum fleet_status fleet_admit(struct fleet *f, const char *payer_id, const char *hold_id,
                              int64_t hold_micros, fleet_admit_cb cb, void *arg,
                              struct fleet_admission **req);
/* A live-session lease asked with an admission: lease_id for tenant_id
 * (limit: its live_sessions, 0 none) and its agency owner owner_id ("" or
 * NULL: none; owner_limit likewise). */
struct fleet_lease {
    const char *tenant_id;
    int64_t limit;
    const char *owner_id;
    int64_t owner_limit;
    const char *lease_id;
};
/* fleet_admit and fleet_live_acquire in one script, one round trip: the
 * funds first (FLEET_NO_FUNDS / NO_PAYER: no lease), then the limits
 * (FLEET_LIMIT: neither the hold nor the lease is taken), then both are
 * taken (FLEET_OK). FLEET_PENDING with *req set (a cancelled one may have
 * taken both: release both), or FLEET_DOWN. */
enum fleet_status fleet_admit_leased(struct fleet *f, const char *payer_id, const char *hold_id,
                                     int64_t hold_micros, const struct fleet_lease *lease,
                                     fleet_live_cb cb, void *arg, struct fleet_admission **req);
/* No answer for a: its callback is not called. */
void fleet_admission_cancel(struct fleet_admission *a);
/* Releases hold_id, answered by nobody (a hold is also released by the
 * record that carries its id, or expires). A release Redis may not have
 * run (down, or no answer) is sent again when the connection is back. */
void fleet_release(struct fleet *f, const char *payer_id, const char *hold_id);
/* Releases waiting for the connection (tests). */
size_t fleet_pending_releases(const struct fleet *f);

/* The payer's available funds now (plan credits + wallet - live holds), as
 * committed in Redis: the callback gets FLEET_OK with them, FLEET_NO_PAYER
 * or FLEET_DOWN. FLEET_PENDING (*req set) or FLEET_DOWN. */
enum fleet_status fleet_available(struct fleet *f, const char *payer_id, fleet_admit_cb cb,
                                  void *arg, struct rasync_req **req);

/* A lease for a live session of tenant_id (limit: its live_sessions, 0
 * none) and its agency owner owner_id ("" none; owner_limit likewise).
 * FLEET_PENDING (*req set) or FLEET_DOWN. */
enum fleet_status fleet_live_acquire(struct fleet *f, const char *tenant_id, int64_t limit,
                                     const char *owner_id, int64_t owner_limit,
                                     const char *lease_id, fleet_live_cb cb, void *arg,
                                     struct rasync_req **req);
/* Renews (for another FLEET_LEASE_MS) and releases a lease; unanswered. */
void fleet_live_renew(struct fleet *f, const char *tenant_id, const char *owner_id,
                      const char *lease_id);
void fleet_live_release(struct fleet *f, const char *tenant_id, const char *owner_id,
                        const char *lease_id);

/* The pin of (tenant_id, session_id), its TTL slid to ttl_s. FLEET_PENDING
 * (*req set) or FLEET_DOWN. */
enum fleet_status fleet_pin_get(struct fleet *f, const char *tenant_id, const char *session_id,
                                int ttl_s, fleet_text_cb cb, void *arg, struct rasync_req **req);
/* Writes pin text unless the session has one: the callback gets the pin
 * that stands. */
enum fleet_status fleet_pin_put(struct fleet *f, const char *tenant_id, const char *session_id,
                                const char *text, int ttl_s, fleet_text_cb cb, void *arg,
                                struct rasync_req **req);

/* A single-use value under name (e.g. an ephemeral token's hash) for ttl_ms;
 * FLEET_OK to the callback when stored, FLEET_ABSENT when the name exists. */
enum fleet_status fleet_value_put(struct fleet *f, const char *name, const char *text,
                                  int64_t ttl_ms, fleet_text_cb cb, void *arg,
                                  struct rasync_req **req);
/* Takes it: the callback gets it once (FLEET_OK), then FLEET_ABSENT. */
enum fleet_status fleet_value_take(struct fleet *f, const char *name, fleet_text_cb cb, void *arg,
                                   struct rasync_req **req);

#endif
