/* store_redis_lua.c - the Lua scripts of the Redis backend: the money steps
 * (admission holds, the usage records' charge) whose KEYS/ARGV conventions
 * store_redis.h documents, and the admin writes, each one atomic step.
 *
 * Rules every script keeps, because Redis runs a script atomically but does
 * not roll it back when it fails half-way: every check comes before the
 * first write, and nothing after the first write can fail (no arithmetic
 * on client values, no command that may refuse). Keys of other tenants
 * that only an index names (a parent's subaccount set, the slots that
 * select a connection) are built in the script from the prefix: fine on
 * one Redis (with replicas), not under Redis Cluster (README). */
#include "common.h"
#include "store_redis.h"

#include <pthread.h>

/* Helpers every script may use. tk(): a tenant's key, as
 * store_redis_tenant_key() builds it. */
#define PRELUDE                                                                                    \
    "local P = '" STORE_REDIS_PREFIX "'\n"                                                         \
    "local function tk(t, what) return P .. '{t:' .. t .. '}:' .. what end\n"

/* Tells every instance that tenant t's data changed (follower.h: the
 * replicas re-read it). Published from inside the write's own script, so a
 * change is never applied without its notice. */
#define PUB(t) "redis.call('PUBLISH', '" STORE_REDIS_CHANNEL "', " t ")\n"
/* The tenant id inside a tenant key's hash tag. */
#define TID(k) "string.match(" k ", '{t:(.-)}')"

/* `now`: Redis's clock in ms, so instances with skewed clocks agree. */
#define NOW                                                                                        \
    "local tm = redis.call('TIME')\n"                                                              \
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"

/* A payer's holds: hk (zset hold id -> expiry, Redis's clock ms) and ak
 * (hash hold id -> micro-USD, plus HOLD_SUM: their running total, so an
 * admission costs the same however many holds are out). SWEEP_FN defines
 * sweep(hk, ak): drops the expired ones (their amounts off the total) and
 * returns what the live ones add up to (`now` must be set); a total
 * missing beside holds (written before it existed) is summed once.
 * HOLDS_SWEEP sets `now` and `held` with it. */
#define HOLD_SUM "'=sum'" /* '=' is never in a hold id ([A-Za-z0-9._-]) */
// clang-format off
#define SWEEP_FN                                                                                   \
    "local function sweep(hk, ak)\n"                                                               \
    "  local held = redis.call('HGET', ak, " HOLD_SUM ")\n"                                        \
    "  if not held then\n"                                                                         \
    "    held = 0\n"                                                                               \
    "    local all = redis.call('HGETALL', ak)\n"                                                  \
    "    for i = 2, #all, 2 do held = held + tonumber(all[i]) end\n"                               \
    "    if #all > 0 then redis.call('HSET', ak, " HOLD_SUM ", string.format('%d', held)) end\n"   \
    "  else\n"                                                                                     \
    "    held = tonumber(held)\n"                                                                  \
    "  end\n"                                                                                      \
    "  local expired = redis.call('ZRANGEBYSCORE', hk, '-inf', now)\n"                             \
    "  for i = 1, #expired do\n"                                                                   \
    "    local a = redis.call('HGET', ak, expired[i])\n"                                           \
    "    if a then\n"                                                                              \
    "      redis.call('HDEL', ak, expired[i])\n"                                                   \
    "      held = redis.call('HINCRBY', ak, " HOLD_SUM ", string.format('%d', -tonumber(a)))\n"    \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', hk, '-inf', now) end\n"                 \
    "  return held\n"                                                                              \
    "end\n"
#define HOLDS_SWEEP(hk, ak) NOW SWEEP_FN "local held = sweep(" hk ", " ak ")\n"
// clang-format on

/* Drops hold id (a Lua expression) of hk/ak, its amount off the total;
 * sets `dropped` (0 or 1). */
#define HOLD_DROP(hk, ak, id)                                                                      \
    "local dropped = redis.call('ZREM', " hk ", " id ")\n"                                         \
    "local amt = redis.call('HGET', " ak ", " id ")\n"                                             \
    "if amt then\n"                                                                                \
    "  redis.call('HDEL', " ak ", " id ")\n"                                                       \
    "  redis.call('HINCRBY', " ak ", " HOLD_SUM ", string.format('%d', -tonumber(amt)))\n"         \
    "end\n"

/* Removes connection cid from every BYOK slot that selects it (any
 * tenant, found through byok:cref:<cid>); touch: set those settings'
 * updated time to `touch` (nil = leave it). */
#define CLEAR_REFS                                                                                 \
    "local function clear_refs(cid, touch)\n"                                                      \
    "  local ref = P .. 'cref:' .. cid\n"                                                          \
    "  for _, t in ipairs(redis.call('SMEMBERS', ref)) do\n"                                       \
    "    local bk = tk(t, 'byok')\n"                                                               \
    "    local f = redis.call('HGETALL', bk)\n"                                                    \
    "    local hit = false\n"                                                                      \
    "    for i = 1, #f, 2 do\n"                                                                    \
    "      if string.sub(f[i], 1, 5) == 'slot:' and f[i + 1] == cid then\n"                        \
    "        redis.call('HDEL', bk, f[i])\n"                                                       \
    "        hit = true\n"                                                                         \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "    if hit and touch then redis.call('HSET', bk, 'updated', touch) end\n"                     \
    "    if hit then " PUB("t") " end\n"                                                           \
                                "  end\n"                                                          \
                                "  redis.call('DEL', ref)\n"                                       \
                                "end\n"

/* Live-session leases (DESIGN §6), one sorted set per tenant: lease id ->
 * expiry (`now` ms). Over lk, a list of those sets (the tenant's, then its
 * agency owner's if any):
 *   live_full(lk, id, lt, lo): drops the expired leases, then names the
 *     set at its limit ('tenant' with lt, 'owner' with lo; 0 = none) that
 *     does not count id already, else nil; writes nothing else;
 *   live_take(lk, id, ttl): counts id in every set until now + ttl (a set
 *     vanishes with its last lease).
 * The owner's set lives in another tenant's slot: fine on one Redis, not
 * under Cluster (README). */
#define LIVE_FUNCS                                                                                 \
    "local function live_full(lk, id, lt, lo)\n"                                                   \
    "  for i = 1, #lk do redis.call('ZREMRANGEBYSCORE', lk[i], '-inf', now) end\n"                 \
    "  local lim = {lt, lo}\n"                                                                     \
    "  local name = {'tenant', 'owner'}\n"                                                         \
    "  for i = 1, #lk do\n"                                                                        \
    "    if lim[i] > 0 and not redis.call('ZSCORE', lk[i], id)\n"                                  \
    "       and redis.call('ZCARD', lk[i]) >= lim[i] then return name[i] end\n"                    \
    "  end\n"                                                                                      \
    "  return nil\n"                                                                               \
    "end\n"                                                                                        \
    "local function live_take(lk, id, ttl)\n"                                                      \
    "  for i = 1, #lk do\n"                                                                        \
    "    redis.call('ZADD', lk[i], now + ttl, id)\n"                                               \
    "    if redis.call('PTTL', lk[i]) < ttl then redis.call('PEXPIRE', lk[i], ttl) end\n"          \
    "  end\n"                                                                                      \
    "end\n"

static const char admit_lua[] =
    /* Admissions in order, each as if alone (store_redis.h). Per payer the
     * sweep and the balances are read once and then followed here. */
    NOW SWEEP_FN LIVE_FUNCS //
    "local held, bal, out = {}, {}, {}\n"
    "local k, a = 1, 1\n"
    "while a <= #ARGV do\n"
    "  local nl = tonumber(ARGV[a])\n"
    "  local tkey, hk, ak = KEYS[k], KEYS[k + 1], KEYS[k + 2]\n"
    "  local lk = {}\n"
    "  for i = 1, nl do lk[i] = KEYS[k + 2 + i] end\n"
    "  local id, amt, ttl = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])\n"
    "  local lid, lms, lt, lo\n"
    "  if nl > 0 then\n"
    "    lid, lms = ARGV[a + 4], tonumber(ARGV[a + 5])\n"
    "    lt, lo = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])\n"
    "    a = a + 8\n"
    "  else\n"
    "    a = a + 4\n"
    "  end\n"
    "  k = k + 3 + nl\n"
    "  local st, avail = 'admitted', 0\n"
    "  local b = bal[tkey]\n"
    "  if b == nil then\n"
    "    local v = redis.call('HMGET', tkey, 'plan', 'wallet')\n"
    "    b = (v[1] and v[2]) and tonumber(v[1]) + tonumber(v[2]) or false\n"
    "    bal[tkey] = b\n"
    "  end\n"
    "  if not b then\n"
    "    st = 'no_payer'\n"
    "  else\n"
    "    if held[ak] == nil then held[ak] = sweep(hk, ak) end\n"
    "    avail = b - held[ak]\n"
    "    local again = redis.call('ZSCORE', hk, id)\n"
    "    if again then\n"
    "      avail = avail + tonumber(redis.call('HGET', ak, id) or '0')\n"
    "    elseif avail <= 0 then\n"
    "      st = 'no_funds'\n"
    "    end\n"
    "    if st == 'admitted' and nl > 0 then\n"
    "      local full = live_full(lk, lid, lt, lo)\n"
    "      if full then st = full .. '_limit' end\n"
    "    end\n"
    "    if st == 'admitted' then\n"
    "      if not again then\n"
    "        redis.call('ZADD', hk, now + ttl, id)\n"
    "        redis.call('HSET', ak, id, amt)\n"
    "        held[ak] = redis.call('HINCRBY', ak, " HOLD_SUM ", amt)\n"
    /* The two keys vanish with the last hold of an idle payer. */
    "        if redis.call('PTTL', hk) < ttl then\n"
    "          redis.call('PEXPIRE', hk, ttl)\n"
    "          redis.call('PEXPIRE', ak, ttl)\n"
    "        end\n"
    "      end\n"
    "      if nl > 0 then live_take(lk, lid, lms) end\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = st\n"
    "  out[#out + 1] = avail\n"
    "end\n"
    "return out\n";

static const char live_acquire_lua[] =
    /* KEYS: live sets. ARGV: lease id, lease ms, tenant limit, owner limit. */
    NOW LIVE_FUNCS //
    "local full = live_full(KEYS, ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]))\n"
    "if full then return full end\n"
    "live_take(KEYS, ARGV[1], tonumber(ARGV[2]))\n"
    "return 'ok'\n";

static const char live_renew_lua[] =
    /* KEYS: live sets. ARGV: lease id, lease ms. Only a lease still held. */
    NOW //
    "local ttl = tonumber(ARGV[2])\n"
    "for i = 1, #KEYS do\n"
    "  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, ARGV[1]) == 1 then\n"
    "    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end\n"
    "  end\n"
    "end\n"
    "return 'ok'\n";

static const char release_lua[] =
    /* KEYS: holds, holdamt. ARGV: hold id. */
    HOLD_DROP("KEYS[1]", "KEYS[2]", "ARGV[1]") //
    "return dropped\n";

static const char held_lua[] =
    /* KEYS: holds, holdamt. */
    HOLDS_SWEEP("KEYS[1]", "KEYS[2]") //
    "return held\n";

static const char funds_lua[] =
    /* KEYS: tenant, holds, holdamt. */
    HOLDS_SWEEP("KEYS[2]", "KEYS[3]") //
    "local b = redis.call('HMGET', KEYS[1], 'plan', 'wallet')\n"
    "if not b[1] or not b[2] then return false end\n"
    "return tonumber(b[1]) + tonumber(b[2]) - held\n";

/* The usage records of one payer P, each one all or nothing and idempotent
 * on its id, in one call (store_redis.h has the contract). Two phases:
 * every record is checked first, in order, against P's balances as the
 * records before it in the call leave them (read once, then followed in
 * Lua); then what the accepted ones write is written, each kind of write
 * once for all of them where Redis takes several (hold releases, the
 * balances, the marks, the indexes) and one XADD per record. The first
 * write is the release of the holds (ZREM, which no maxmemory refuses),
 * else the balances, else the marks; none after it can fail while the keys
 * have their types.
 *
 * Exactness: plan credits and a wallet set in "exact" mode are followed as
 * strings, exact over the whole int64 range. A wallet moved by deltas is
 * followed as a double only (wnum: the "saturate" margin is far wider
 * than its error), so once a delta is taken the exact wallet is unknown
 * until the call ends: a record that needs it (an "exact" one, or a
 * conflict, whose answer carries it) answers "retry" and goes in the next
 * round, first of its payer there. Deltas (|d| <= 10^12, USAGE_AMOUNT_MAX)
 * are summed into one HINCRBY while the sum stays exact (each below 2^43
 * added to a sum below 2^52); any other gets its own HINCRBY. */
static const char record_lua[] =
    /* KEYS: usage (stream), usage:ts, {t:P}:tenant, {t:P}:holds,
     * {t:P}:holdamt, then per record rec:<id>, {t:T}:usage [,
     * usage:session:<sid>]. ARGV: per record 11 fields: id,
     * text, ts, hold id, mode, expected plan, expected wallet, new plan,
     * new wallet, wallet delta, has a session ("1"/"0"). */
    "local F = 11\n"
    "if #ARGV % F ~= 0 then return redis.error_reply('ERR record: bad arguments') end\n"
    "local n = #ARGV / F\n"
    "local res, todo, seen, rk = {}, {}, {}, {}\n"
    "local b, plan0, wnum, xw\n"
    "local wexact = true\n"
    "local small, big = 0, {}\n"
    "local holds, hseen = {}, {}\n"
    "local kx = 5\n"
    "for i = 1, n do\n"
    "  local a = (i - 1) * F\n"
    "  local id, mode = ARGV[a + 1], ARGV[a + 5]\n"
    "  rk[i] = kx + 1\n"
    "  if ARGV[a + 11] == '1' then kx = kx + 3 else kx = kx + 2 end\n"
    "  local r = 'ok'\n"
    "  if seen[id] or redis.call('EXISTS', KEYS[rk[i]]) == 1 then\n"
    "    r = 'duplicate'\n"
    "  elseif mode ~= 'none' then\n"
    "    if not b then\n"
    "      b = redis.call('HMGET', KEYS[3], 'plan', 'wallet')\n"
    "      plan0 = b[1]\n"
    "      wnum = tonumber(b[2])\n"
    "    end\n"
    "    if mode == 'exact' and not wexact then\n"
    "      r = 'retry'\n"
    "    elseif mode == 'missing' then\n"
    "      if b[1] then r = 'conflict' end\n"
    "    elseif b[1] ~= ARGV[a + 6] or (mode == 'exact' and b[2] ~= ARGV[a + 7]) then\n"
    "      r = 'conflict'\n"
    /* HINCRBY must not be refused: a wallet near the bottom of int64
     * (2^63 is about 9.22e18) is charged in exact mode, where C computes
     * the floor. */
    "    elseif mode == 'plan' and wnum + tonumber(ARGV[a + 10]) < -9.0e18 then\n"
    "      r = 'saturate'\n"
    "    end\n"
    "    if r == 'conflict' then\n"
    "      if wexact then r = {'conflict', b[1], b[2]} else r = 'retry' end\n"
    "    elseif r == 'ok' and mode == 'plan' then\n"
    "      b[1] = ARGV[a + 8]\n"
    "      local d = ARGV[a + 10]\n"
    "      if d ~= '0' then\n"
    "        local dn = tonumber(d)\n"
    "        wnum = wnum + dn\n"
    "        wexact = false\n"
    "        if dn > -8796093022208 and dn < 8796093022208 and small > -4503599627370496 and\n"
    "          small < 4503599627370496 then small = small + dn\n"
    "        else big[#big + 1] = d end\n"
    "      end\n"
    "    elseif r == 'ok' and mode == 'exact' then\n"
    /* Every delta before it was 0 (else it would retry): the wallet is
     * set to this, then the deltas after it move it. */
    "      b[1], b[2], xw = ARGV[a + 8], ARGV[a + 9], ARGV[a + 9]\n"
    "      wnum = tonumber(xw)\n"
    "    end\n"
    "  end\n"
    "  if r == 'ok' then\n"
    "    seen[id] = true\n"
    "    todo[#todo + 1] = i\n"
    "    local h = ARGV[a + 4]\n"
    "    if h ~= '' and not hseen[h] then\n"
    "      hseen[h] = true\n"
    "      holds[#holds + 1] = h\n"
    "    end\n"
    "  end\n"
    "  res[i] = r\n"
    "end\n"
    "if kx ~= #KEYS then return redis.error_reply('ERR record: keys and records disagree') end\n"
    "if #todo == 0 then return res end\n"
    /* Checked: from here on every command succeeds. */
    "if #holds > 0 then\n"
    "  local amt = redis.call('HMGET', KEYS[5], unpack(holds))\n"
    "  redis.call('ZREM', KEYS[4], unpack(holds))\n"
    "  local gone, sum = {}, 0\n"
    "  for j = 1, #holds do\n"
    "    if amt[j] then\n"
    "      gone[#gone + 1] = holds[j]\n"
    "      sum = sum + tonumber(amt[j])\n"
    "    end\n"
    "  end\n"
    "  if #gone > 0 then\n"
    "    redis.call('HDEL', KEYS[5], unpack(gone))\n"
    "    redis.call('HINCRBY', KEYS[5], " HOLD_SUM ", string.format('%d', -sum))\n"
    "  end\n"
    "end\n"
    "if xw then\n"
    "  redis.call('HSET', KEYS[3], 'plan', b[1], 'wallet', xw)\n"
    "elseif b and b[1] and b[1] ~= plan0 then\n"
    "  redis.call('HSET', KEYS[3], 'plan', b[1])\n"
    "end\n"
    "if small ~= 0 then redis.call('HINCRBY', KEYS[3], 'wallet', string.format('%d', small)) end\n"
    "for j = 1, #big do redis.call('HINCRBY', KEYS[3], 'wallet', big[j]) end\n"
    "local ms, ts, ix, ixk = {}, {}, {}, {}\n"
    "for _, i in ipairs(todo) do\n"
    "  local a = (i - 1) * F\n"
    "  ms[#ms + 1] = KEYS[rk[i]]\n"
    "  ms[#ms + 1] = ARGV[a + 2]\n"
    "  ts[#ts + 1] = ARGV[a + 3]\n"
    "  ts[#ts + 1] = ARGV[a + 1]\n"
    "  local last = rk[i] + 1\n"
    "  if ARGV[a + 11] == '1' then last = last + 1 end\n"
    "  for k = rk[i] + 1, last do\n"
    "    local z = ix[KEYS[k]]\n"
    "    if not z then\n"
    "      z = {}\n"
    "      ix[KEYS[k]] = z\n"
    "      ixk[#ixk + 1] = KEYS[k]\n"
    "    end\n"
    "    z[#z + 1] = ARGV[a + 3]\n"
    "    z[#z + 1] = ARGV[a + 1]\n"
    "  end\n"
    "end\n"
    "redis.call('MSET', unpack(ms))\n"
    "for _, i in ipairs(todo) do\n"
    "  local a = (i - 1) * F\n"
    "  redis.call('XADD', KEYS[1], '*', 'id', ARGV[a + 1], 'record', ARGV[a + 2])\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], unpack(ts))\n"
    "for _, k in ipairs(ixk) do redis.call('ZADD', k, unpack(ix[k])) end\n"
    "return res\n";

static const char tenant_create_lua[] =
    /* KEYS: tenant, tenants. ARGV: id, name, byok, agency, parent, wd,
     * plan, wallet, created, updated, live (limits.live_sessions). */
    PRELUDE //
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end\n"
    "redis.call('HSET', KEYS[1], 'name', ARGV[2], 'byok', ARGV[3], 'agency', ARGV[4],\n"
    "  'parent', ARGV[5], 'wd', ARGV[6], 'plan', ARGV[7], 'wallet', ARGV[8],\n"
    "  'created', ARGV[9], 'updated', ARGV[10], 'live', ARGV[11])\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "if ARGV[5] ~= '' then redis.call('SADD', tk(ARGV[5], 'subs'), ARGV[1]) end\n" PUB("ARGV[1]") //
    "return 'ok'\n";

static const char tenant_update_lua[] =
    /* KEYS: tenant. ARGV: id, name, byok, agency, parent, wd, updated, live. */
    PRELUDE //
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "local old = redis.call('HGET', KEYS[1], 'parent') or ''\n"
    "redis.call('HSET', KEYS[1], 'name', ARGV[2], 'byok', ARGV[3], 'agency', ARGV[4],\n"
    "  'parent', ARGV[5], 'wd', ARGV[6], 'updated', ARGV[7], 'live', ARGV[8])\n"
    "if old ~= ARGV[5] then\n"
    "  if old ~= '' then redis.call('SREM', tk(old, 'subs'), ARGV[1]) end\n"
    "  if ARGV[5] ~= '' then redis.call('SADD', tk(ARGV[5], 'subs'), ARGV[1]) end\n"
    "end\n" PUB("ARGV[1]") //
    "return 'ok'\n";

static const char tenant_delete_lua[] =
    /* KEYS: tenant, tenants. ARGV: id. Keys, connections (and every slot
     * selecting them), settings and holds go; usage records stay. */
    PRELUDE CLEAR_REFS //
    "local id = ARGV[1]\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "if redis.call('SCARD', tk(id, 'subs')) > 0 then return 'conflict' end\n"
    "for _, cid in ipairs(redis.call('ZRANGE', tk(id, 'conns'), 0, -1)) do\n"
    "  clear_refs(cid, nil)\n"
    "  redis.call('DEL', tk(id, 'conn:' .. cid))\n"
    "  if redis.call('GET', P .. 'conn:' .. cid) == id then redis.call('DEL', P .. 'conn:' .. cid) "
    "end\n"
    "end\n"
    "local f = redis.call('HGETALL', tk(id, 'byok'))\n"
    "for i = 1, #f, 2 do\n"
    "  if string.sub(f[i], 1, 5) == 'slot:' then redis.call('SREM', P .. 'cref:' .. f[i + 1], id) "
    "end\n"
    "end\n"
    "for _, kid in ipairs(redis.call('ZRANGE', tk(id, 'keys'), 0, -1)) do\n"
    "  redis.call('DEL', tk(id, 'key:' .. kid))\n"
    "  if redis.call('GET', P .. 'key:' .. kid) == id then redis.call('DEL', P .. 'key:' .. kid) "
    "end\n"
    "end\n"
    "local parent = redis.call('HGET', KEYS[1], 'parent')\n"
    "if parent and parent ~= '' then redis.call('SREM', tk(parent, 'subs'), id) end\n"
    "redis.call('DEL', KEYS[1], tk(id, 'conns'), tk(id, 'keys'), tk(id, 'byok'), tk(id, 'subs'),\n"
    "  tk(id, 'holds'), tk(id, 'holdamt'))\n"
    "redis.call('SREM', KEYS[2], id)\n" PUB("id") //
    "return 'ok'\n";

static const char topup_lua[] =
    /* KEYS: tenant. ARGV: wallet delta, plan delta, updated, -wallet delta.
     * HINCRBY refuses an overflow without writing; the wallet's is undone
     * when the plan's is refused. Reply: HGETALL after, or a status. */
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "local r = redis.pcall('HINCRBY', KEYS[1], 'wallet', ARGV[1])\n"
    "if type(r) == 'table' and r.err then return 'overflow' end\n"
    "r = redis.pcall('HINCRBY', KEYS[1], 'plan', ARGV[2])\n"
    "if type(r) == 'table' and r.err then\n"
    "  redis.call('HINCRBY', KEYS[1], 'wallet', ARGV[4])\n"
    "  return 'overflow'\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'updated', ARGV[3])\n" PUB(TID("KEYS[1]")) //
    "return redis.call('HGETALL', KEYS[1])\n";

static const char key_create_lua[] =
    /* KEYS: tenant, key index, key, keys, seq. ARGV: kid, tenant, label,
     * hash, created, revoked. */
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "local seq = redis.call('INCR', KEYS[5])\n"
    "redis.call('HSET', KEYS[3], 'label', ARGV[3], 'hash', ARGV[4], 'created', ARGV[5],\n"
    "  'revoked', ARGV[6], 'seq', seq)\n"
    "redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n" PUB("ARGV[2]") //
    "return 'ok'\n";

static const char key_revoke_lua[] =
    /* KEYS: key (under its tenant's tag: another tenant's key id is not
     * there). ARGV: now. Revoking twice keeps the first time. */
    "local r = redis.call('HGET', KEYS[1], 'revoked')\n"
    "if not r then return 'not_found' end\n"
    "if r == '0' then redis.call('HSET', KEYS[1], 'revoked', ARGV[1]) end\n" PUB(TID("KEYS[1]")) //
    "return 'ok'\n";

static const char conn_create_lua[] =
    /* KEYS: tenant, connection index, connection, conns, seq. ARGV: cid,
     * tenant, provider, name, region, hint, version, sealed, created,
     * updated. */
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "local seq = redis.call('INCR', KEYS[5])\n"
    "redis.call('HSET', KEYS[3], 'provider', ARGV[3], 'name', ARGV[4], 'region', ARGV[5],\n"
    "  'hint', ARGV[6], 'version', ARGV[7], 'sealed', ARGV[8], 'created', ARGV[9],\n"
    "  'updated', ARGV[10], 'seq', seq)\n"
    "redis.call('ZADD', KEYS[4], ARGV[9], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n" PUB("ARGV[2]") //
    "return 'ok'\n";

static const char conn_update_lua[] =
    /* KEYS: connection. ARGV: name, region, hint, version, sealed,
     * updated. */
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "redis.call('HSET', KEYS[1], 'name', ARGV[1], 'region', ARGV[2], 'hint', ARGV[3],\n"
    "  'version', ARGV[4], 'sealed', ARGV[5], 'updated', ARGV[6])\n" PUB(TID("KEYS[1]")) //
    "return 'ok'\n";

static const char conn_delete_lua[] =
    /* KEYS: connection, conns, connection index. ARGV: cid, now. In the
     * same step every slot selecting it is cleared: no reader ever sees a
     * slot naming a connection that is gone. */
    PRELUDE CLEAR_REFS //
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "redis.call('DEL', KEYS[1], KEYS[3])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "clear_refs(ARGV[1], ARGV[2])\n" PUB(TID("KEYS[1]")) //
    "return 'ok'\n";

static const char byok_put_lua[] =
    /* KEYS: tenant, byok. ARGV: tenant id, enabled, updated, then pairs
     * (provider, connection id). Replaces the whole settings. */
    PRELUDE //
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end\n"
    "local f = redis.call('HGETALL', KEYS[2])\n"
    "for i = 1, #f, 2 do\n"
    "  if string.sub(f[i], 1, 5) == 'slot:' then\n"
    "    redis.call('SREM', P .. 'cref:' .. f[i + 1], ARGV[1])\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('HSET', KEYS[2], 'enabled', ARGV[2], 'updated', ARGV[3])\n"
    "for i = 4, #ARGV - 1, 2 do\n"
    "  redis.call('HSET', KEYS[2], 'slot:' .. ARGV[i], ARGV[i + 1])\n"
    "  redis.call('SADD', P .. 'cref:' .. ARGV[i + 1], ARGV[1])\n"
    "end\n" PUB("ARGV[1]") //
    "return 'ok'\n";

static struct redis_script scripts[STORE_REDIS_SCRIPT__COUNT] = {
    [STORE_REDIS_SCRIPT_ADMIT] = {"admit", admit_lua, ""},
    [STORE_REDIS_SCRIPT_LIVE_ACQUIRE] = {"live_acquire", live_acquire_lua, ""},
    [STORE_REDIS_SCRIPT_LIVE_RENEW] = {"live_renew", live_renew_lua, ""},
    [STORE_REDIS_SCRIPT_RELEASE] = {"release", release_lua, ""},
    [STORE_REDIS_SCRIPT_HELD] = {"held", held_lua, ""},
    [STORE_REDIS_SCRIPT_FUNDS] = {"funds", funds_lua, ""},
    [STORE_REDIS_SCRIPT_RECORD] = {"record", record_lua, ""},
    [STORE_REDIS_SCRIPT_TENANT_CREATE] = {"tenant_create", tenant_create_lua, ""},
    [STORE_REDIS_SCRIPT_TENANT_UPDATE] = {"tenant_update", tenant_update_lua, ""},
    [STORE_REDIS_SCRIPT_TENANT_DELETE] = {"tenant_delete", tenant_delete_lua, ""},
    [STORE_REDIS_SCRIPT_TOPUP] = {"topup", topup_lua, ""},
    [STORE_REDIS_SCRIPT_KEY_CREATE] = {"key_create", key_create_lua, ""},
    [STORE_REDIS_SCRIPT_KEY_REVOKE] = {"key_revoke", key_revoke_lua, ""},
    [STORE_REDIS_SCRIPT_CONN_CREATE] = {"conn_create", conn_create_lua, ""},
    [STORE_REDIS_SCRIPT_CONN_UPDATE] = {"conn_update", conn_update_lua, ""},
    [STORE_REDIS_SCRIPT_CONN_DELETE] = {"conn_delete", conn_delete_lua, ""},
    [STORE_REDIS_SCRIPT_BYOK_PUT] = {"byok_put", byok_put_lua, ""},
};

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(scripts); i++)
        redis_script_init(&scripts[i]);
}

const struct redis_script *store_redis_script(enum store_redis_script id)
{
    pthread_once(&scripts_once, scripts_init);
    if ((unsigned)id >= ARRAY_SIZE(scripts))
        return NULL;
    return &scripts[id];
}
