/* store_redis.h - the Redis store backend (fleet mode, DESIGN §7b) and the
 * building blocks the data plane's asynchronous Redis client uses for money:
 * the key layout, the Lua scripts with their KEYS/ARGV conventions, and
 * synchronous wrappers of the balance holds (DESIGN §3.4).
 *
 * Key layout (README, "Fleet mode: key layout"). Every key of a tenant
 * carries the hash tag {t:<tenant id>} (tenant ids are [A-Za-z0-9._-]):
 *
 *   byok:{t:T}:tenant        hash   name byok agency parent wd plan wallet created updated live
 *   byok:{t:T}:keys          zset   key id -> created_at_ms
 *   byok:{t:T}:key:<kid>     hash   label hash created revoked seq
 *   byok:{t:T}:conns         zset   connection id -> created_at_ms
 *   byok:{t:T}:conn:<cid>    hash   provider name region hint version sealed created updated seq
 *   byok:{t:T}:byok          hash   enabled updated slot:<provider> -> connection id
 *   byok:{t:T}:subs          set    ids of the tenants whose parent_id is T
 *   byok:{t:T}:holds         zset   hold id -> expiry (Redis server time, ms)
 *   byok:{t:T}:holdamt       hash   hold id -> micro-USD held
 *   byok:{t:T}:usage         zset   record id -> ts_ms (records of tenant T)
 *
 * and the global keys lookups need:
 *
 *   byok:tenants             set    every tenant id
 *   byok:key:<kid>           string the tenant of proxy key kid
 *   byok:conn:<cid>          string the tenant of connection cid (ids are global)
 *   byok:cref:<cid>          set    tenants whose BYOK slots select cid
 *   byok:secret:<name>       hash   version sealed (the proxy's own sealed secrets)
 *   byok:secrets             set    their names
 *   byok:seq                 string counter: creation order of keys and connections
 *   byok:rec:<record id>     string the record's §5 JSON text; its existence is
 *                                   the "already recorded" mark of the id
 *   byok:usage               stream XADD byok:usage * id <record id> record <JSON>
 *   byok:usage:ts            zset   record id -> ts_ms (all records)
 *   byok:usage:session:<sid> zset   record id -> ts_ms (records of session sid)
 *
 * Money is integer micro-USD kept as decimal strings in the tenant hash;
 * scripts compare and set them as strings (exact over the whole int64
 * range), and add only hold amounts (exact below 2^53 micro-USD). */
#ifndef BYOK_STORE_REDIS_H
#define BYOK_STORE_REDIS_H

#include "common.h"
#include "redis_conn.h"
#include "usage_record.h"

#include <jansson.h>

struct config;
struct store;

#define STORE_REDIS_PREFIX "byok:"
#define STORE_REDIS_STREAM STORE_REDIS_PREFIX "usage"
/* Every admin write script publishes the ids of the tenants it changed on
 * this channel (follower.h keeps the workers' replica current from it). */
#define STORE_REDIS_CHANNEL STORE_REDIS_PREFIX "inval"

/* Opens a Redis handle for the calling thread (connects now: a wrong
 * address or password fails here, with a message naming host:port and
 * never the password). At the first open of the process, one warning is
 * logged when Redis does not report appendonly yes + appendfsync always.
 * Caller frees with store_close(). NULL with *err set (caller frees). */
MUST_CHECK struct store *store_redis_open(const struct config *cfg, char **err);

/* The connection of a Redis handle; NULL (logged) when s is another
 * backend. Borrowed for the handle's life. */
struct redis_conn *store_redis_conn(struct store *s);

/* What Redis says of its persistence: 1 = appendonly yes and appendfsync
 * always (no acknowledged write lost in a crash), 0 = less than that, -1 =
 * could not be read (CONFIG disabled). detail gets the values read. */
int store_redis_durability(struct store *s, char *detail, size_t detail_size);

/* Key names. The tenant's key of kind `what` ("tenant", "holds", ...):
 * byok:{t:<tenant>}:<what>. -1 when it does not fit. */
MUST_CHECK int store_redis_tenant_key(char *buf, size_t size, const char *tenant_id,
                                      const char *what);

/* --- Lua scripts ---------------------------------------------------------
 * Each is loaded once per Redis (SCRIPT LOAD) and run by EVALSHA with the
 * SHA-1 of its text (reloaded on NOSCRIPT). The conventions below are the
 * contract for an asynchronous caller. Times are Redis's (TIME), so
 * instances with skewed clocks agree on expiry. */
enum store_redis_script {
    /* Admission (DESIGN §3.4), of one request or of several in one call
     * (a worker's admissions of one loop turn). Per admission, in order:
     * KEYS {t:P}:tenant, {t:P}:holds, {t:P}:holdamt [, {t:T}:live [,
     * {t:O}:live]]; ARGV n (its live sets: 0, 1 or 2), hold id, hold
     * micro-USD (>= 0), ttl ms (> 0) [, with n > 0: lease id, lease ms, T's
     * limit, O's limit]. Each drops P's expired holds, then admits when
     * plan + wallet - sum of live holds > 0 and takes the hold (expiring
     * ttl ms from now); each sees the holds of those before it. A hold id
     * already held is admitted again without a second hold (a retried
     * admit). With live sets, the live-session lease of a streaming
     * response or session is taken in the same step (LIVE_ACQUIRE's rule,
     * checked after the funds and before any write: at a limit, no hold is
     * taken either). Reply: a flat array, per admission {status, available
     * before its hold}, status "admitted", "no_funds", "no_payer" (no such
     * tenant), "tenant_limit" or "owner_limit" (the tenant's or its agency
     * owner's live_sessions). */
    STORE_REDIS_SCRIPT_ADMIT = 0,
    /* A live-session lease (DESIGN §6), one sorted set per tenant: lease id
     * -> expiry. KEYS: {t:T}:live [, {t:O}:live] (O: T's agency owner).
     * ARGV: lease id, lease ms, T's limit, O's limit (0 = none). Expired
     * leases go first; a set at its limit refuses a lease it does not hold
     * already; the lease is counted in both sets or in neither. Reply:
     * "ok", "tenant" or "owner" (whose limit was reached). */
    STORE_REDIS_SCRIPT_LIVE_ACQUIRE,
    /* Renews a lease still held. KEYS as above. ARGV: lease id, lease ms.
     * Reply: "ok". */
    STORE_REDIS_SCRIPT_LIVE_RENEW,
    /* Release a hold no record will settle. KEYS: {t:P}:holds,
     * {t:P}:holdamt. ARGV: hold id. Reply: 1 released, 0 not held. */
    STORE_REDIS_SCRIPT_RELEASE,
    /* What P's live holds add up to. KEYS: {t:P}:holds, {t:P}:holdamt.
     * Reply: integer micro-USD (expired holds dropped first). */
    STORE_REDIS_SCRIPT_HELD,
    /* P's available funds (a re-gate). KEYS: {t:P}:tenant, {t:P}:holds,
     * {t:P}:holdamt. Reply: integer plan + wallet - live holds (expired
     * holds dropped first), or nil when P does not exist. */
    STORE_REDIS_SCRIPT_FUNDS,
    /* Usage records of one payer P, each all or nothing and idempotent on
     * its id (DESIGN §7b), in one call (the usage writer sends up to 32 per
     * call, the calls of a batch pipelined). KEYS: usage (stream),
     * usage:ts, {t:P}:tenant, {t:P}:holds, {t:P}:holdamt, then per record
     * rec:<id>, {t:T}:usage [, usage:session:<sid> when the record has a
     * session]. ARGV: per record 11 fields: record id, §5 JSON text, ts_ms,
     * hold id ("" = none), mode, expected plan, expected wallet, new plan,
     * new wallet, wallet delta (minus what the wallet pays), "1" when it
     * has a session key else "0". The records are taken in order, each
     * checked against P's balances as the records before it in the call
     * leave them. The split is computed by the caller with charge_apply()
     * (charge.h); the script only applies it:
     *   "none"     charges nothing (BYOK, no cost);
     *   "missing"  records uncharged, only if P still does not exist;
     *   "plan"     only if P's plan credits are still the expected ones
     *              (the split depends on nothing else, charge.h): plan set
     *              to the new value, wallet moved by the delta (HINCRBY,
     *              exact, whatever else moved it meanwhile);
     *   "exact"    only if both balances are the expected ones: both set
     *              (used when "plan" answered "saturate": a wallet within
     *              about 2^63 - 9e18 of the bottom of int64).
     * An applied record releases its hold, is stored under rec:<id>,
     * appended to the stream (XADD usage * id <id> record <text>) and
     * indexed, in the same step as its charge.
     * Reply: an array, one answer per record: "ok"; "duplicate" (the id is
     * recorded, or earlier in the call: nothing done); array {"conflict",
     * plan, wallet} (P changed, appeared or vanished: nothing done; its
     * balances now, nil when it is gone); "saturate" (the wallet is too
     * close to the bottom of int64 for a delta: nothing done); "retry"
     * (it needs P's exact wallet, which the script does not follow once a
     * delta moved it in this call: nothing done, send it again). Every
     * check comes before the first write (the release of the holds, else
     * the balances, else the marks) and no write after it can fail while
     * the keys have their types: an error reply (a key of the wrong type,
     * OOM at the first write) means nothing of the call was done. */
    STORE_REDIS_SCRIPT_RECORD,
    /* The backend's own scripts (store_redis.c): the admin writes, each
     * one atomic step like the SQLite backend's transactions. */
    STORE_REDIS_SCRIPT_TENANT_CREATE,
    STORE_REDIS_SCRIPT_TENANT_UPDATE,
    STORE_REDIS_SCRIPT_TENANT_DELETE,
    STORE_REDIS_SCRIPT_TOPUP,
    STORE_REDIS_SCRIPT_KEY_CREATE,
    STORE_REDIS_SCRIPT_KEY_REVOKE,
    STORE_REDIS_SCRIPT_CONN_CREATE,
    STORE_REDIS_SCRIPT_CONN_UPDATE,
    STORE_REDIS_SCRIPT_CONN_DELETE,
    STORE_REDIS_SCRIPT_BYOK_PUT,
    STORE_REDIS_SCRIPT__COUNT,
};

/* The script (text and SHA-1) of an id. */
const struct redis_script *store_redis_script(enum store_redis_script id);

/* --- balance holds, synchronously (tests, tools) ---------------------- */

enum store_redis_admit {
    STORE_REDIS_ADMITTED = 0,
    STORE_REDIS_NO_FUNDS,
    STORE_REDIS_NO_PAYER,
};

/* Runs the ADMIT script for payer_id. *out the decision; *available (may be
 * NULL) the payer's available funds before this hold. STORE_* code. */
MUST_CHECK int store_redis_admit(struct store *s, const char *payer_id, const char *hold_id,
                                 int64_t hold_micros, int64_t ttl_ms, enum store_redis_admit *out,
                                 int64_t *available);
/* Runs RELEASE; *released (may be NULL) whether the hold was there. */
MUST_CHECK int store_redis_release(struct store *s, const char *payer_id, const char *hold_id,
                                   bool *released);
/* Runs HELD: the payer's live holds in micro-USD. */
MUST_CHECK int store_redis_held(struct store *s, const char *payer_id, int64_t *held);

/* The usage half of the backend (store_redis_usage.c), called through the
 * store vtable: store_usage_write() and store_usage_query() of store.h. */
int store_redis_usage_write(struct store *s, struct usage_record *records, size_t n,
                            size_t *duplicates, struct usage_record_lines *lines);
int store_redis_usage_query(struct store *s, const char *tenant_id, const char *session_id,
                            int limit, json_t **out);

/* Fleet mode, DESIGN §3.3: drops every session pin of tenant_id in Redis
 * and tells every instance to drop its cached ones ("pins:<id>" on the
 * invalidation channel). STORE_* code. */
MUST_CHECK int store_redis_drop_pins(struct store *s, const char *tenant_id);

/* PUBLISHes message on the invalidation channel (follower_sync's
 * markers). STORE_* code. */
MUST_CHECK int store_redis_publish(struct store *s, const char *message);

/* Counters of this process (tests, metrics): compare-and-set conflicts of
 * the record script (each one a re-computed charge). */
uint64_t store_redis_cas_conflicts(void);

#endif
