/* follower.h - keeps fleet mode's replica (replica.h) current (DESIGN §7b):
 * a thread of its own with a control store handle and a subscription to
 * the invalidation channel. Every admin write of any instance publishes the
 * ids of the tenants it changed (store_redis's scripts); the follower
 * re-reads each such tenant into the replica and bumps the store
 * generation, so every worker's caches drop and the change applies to the
 * next request, well within 250 ms of the admin reply.
 *
 * When the subscription breaks, messages may be lost: until it is back the
 * follower re-reads the whole replica every second (while Redis answers),
 * and once it is back it re-reads everything again before trusting the
 * channel. One log line per change of state. */
#ifndef BYOK_FOLLOWER_H
#define BYOK_FOLLOWER_H

#include "common.h"
#include "config.h"
#include "replica.h"

#include "store_redis.h"

#define FOLLOWER_CHANNEL STORE_REDIS_CHANNEL

struct follower;

/* Loads the whole replica now (from cfg's store, control role), then
 * starts the thread. NULL with *err set (caller frees) when the first load
 * fails. rp is borrowed and must outlive the follower. */
MUST_CHECK struct follower *follower_start(const struct config *cfg, struct replica *rp,
                                           char **err);
void follower_stop(struct follower *f);
/* The subscription is up (the replica follows every change). */
bool follower_live(const struct follower *f);
/* Tenants re-read since start (tests, metrics). */
uint64_t follower_refreshes(const struct follower *f);
/* Read-your-writes on this instance: called after an admin write on the
 * control handle s (the caller's thread's), publishes a marker on the
 * channel through s and waits (at most timeout_ms) until the follower has
 * seen it come back - by then every message the write published was
 * applied to the replica, so this instance's next request sees the write.
 * 0, or -1 when the channel is down (the whole re-reads of a broken
 * channel apply it within a second), the publish failed, or the wait timed
 * out. */
int follower_sync(struct follower *f, struct store *s, int timeout_ms);

#endif
