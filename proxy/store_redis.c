/* store_redis.c - the Redis store backend (fleet mode, DESIGN §7b): one
 * synchronous hiredis connection per handle (per thread), the tenants,
 * keys, connections, BYOK settings and secrets of store.h with the exact
 * semantics of the SQLite backend, each write one Lua script (one atomic
 * step, store_redis_lua.c). Usage records and holds: store_redis_usage.c.
 * Key layout: store_redis.h. */
#include "common.h"
#include "store_redis.h"
#include "config.h"
#include "store.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct redis_store {
    struct store base;
    struct redis_conn *conn;
    struct redis_cmd cmd; /* reused by every call */
};

static const struct store_ops redis_ops;

static struct redis_store *to_rs(struct store *s)
{
    return container_of(s, struct redis_store, base);
}

struct redis_conn *store_redis_conn(struct store *s)
{
    if (s == NULL || s->ops != &redis_ops) {
        log_error("store: a Redis operation on a %s handle", s != NULL ? s->ops->name : "null");
        return NULL;
    }
    return to_rs(s)->conn;
}

int store_redis_tenant_key(char *buf, size_t size, const char *tenant_id, const char *what)
{
    int n = snprintf(buf, size, STORE_REDIS_PREFIX "{t:%s}:%s", tenant_id, what);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* The command arguments naming keys: a tenant's, or a global one. */
static void arg_tkey(struct redis_cmd *cmd, const char *tenant_id, const char *what)
{
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:%s", tenant_id, what);
}

static void arg_tkey2(struct redis_cmd *cmd, const char *tenant_id, const char *what,
                      const char *id)
{
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:%s:%s", tenant_id, what, id);
}

static void arg_gkey(struct redis_cmd *cmd, const char *what, const char *id)
{
    if (id != NULL)
        redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "%s:%s", what, id);
    else
        redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "%s", what);
}

/* Logs what went wrong with reply r (an error reply's own text, never an
 * argument of ours) and frees it. */
static int fail_reply(struct redis_store *rs, const char *what, redisReply *r)
{
    if (r == NULL)
        return STORE_ERR_INTERNAL; /* logged by redis_conn */
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("store(redis): %s at %s: %.*s", what, redis_conn_name(rs->conn),
                  (int)MIN(r->len, 200), r->str);
    } else {
        log_error("store(redis): %s at %s: unexpected reply (type %d)", what,
                  redis_conn_name(rs->conn), r->type);
    }
    freeReplyObject(r);
    return STORE_ERR_INTERNAL;
}

/* A script's status reply as a STORE_* code; frees r. */
static int script_status(struct redis_store *rs, const char *what, redisReply *r)
{
    if (redis_reply_is(r, "ok")) {
        freeReplyObject(r);
        return STORE_OK;
    }
    int rc = redis_reply_is(r, "not_found")  ? STORE_ERR_NOT_FOUND
             : redis_reply_is(r, "exists")   ? STORE_ERR_EXISTS
             : redis_reply_is(r, "conflict") ? STORE_ERR_CONFLICT
                                             : -1;
    if (rc == -1)
        return fail_reply(rs, what, r);
    freeReplyObject(r);
    return rc;
}

static redisReply *eval(struct redis_store *rs, enum store_redis_script id, const char *what)
{
    return redis_conn_eval(rs->conn, store_redis_script(id), &rs->cmd, what);
}

static redisReply *call(struct redis_store *rs, const char *what)
{
    return redis_conn_call(rs->conn, &rs->cmd, what);
}

/* Replies of n pipelined commands, in order, into out[] (caller frees
 * each with freeReplyObject). -1 (everything freed) when the connection
 * failed on the way. */
static MUST_CHECK int replies(struct redis_store *rs, redisReply **out, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = redis_conn_reply(rs->conn, what);
        if (out[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                freeReplyObject(out[j]);
            return -1;
        }
    }
    return 0;
}

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
}

static bool field_i64(const redisReply *h, const char *field, int64_t *out)
{
    return redis_reply_i64(redis_hash_get(h, field), out) == 0;
}

static bool field_bool(const redisReply *h, const char *field)
{
    return redis_reply_is(redis_hash_get(h, field), "1");
}

/* --- connection and its lifetime ---------------------------------------- */

static void rs_close(struct store *s)
{
    struct redis_store *rs = to_rs(s);
    redis_conn_free(rs->conn);
    redis_cmd_free(&rs->cmd);
    free(rs);
}

static int rs_ping(struct store *s)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "PING");
    redisReply *r = call(rs, "PING");
    if (!redis_reply_is(r, "PONG"))
        return fail_reply(rs, "PING", r);
    freeReplyObject(r);
    return STORE_OK;
}

/* CONFIG GET <name> into out ("" when unknown). -1 when CONFIG is refused
 * (renamed away on managed Redis) or the connection failed. */
static int config_get(struct redis_store *rs, const char *name, char *out, size_t size)
{
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "CONFIG");
    redis_cmd_str(&rs->cmd, "GET");
    redis_cmd_str(&rs->cmd, name);
    redisReply *r = call(rs, "CONFIG GET");
    out[0] = '\0';
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r != NULL)
            freeReplyObject(r);
        return -1;
    }
    if (r->elements == 2)
        redis_reply_text(r->element[1], out, size);
    freeReplyObject(r);
    return 0;
}

int store_redis_durability(struct store *s, char *detail, size_t detail_size)
{
    if (store_redis_conn(s) == NULL)
        return -1;
    struct redis_store *rs = to_rs(s);
    char aof[32], fsync[32];
    if (config_get(rs, "appendonly", aof, sizeof(aof)) == -1 ||
        config_get(rs, "appendfsync", fsync, sizeof(fsync)) == -1) {
        snprintf(detail, detail_size, "CONFIG GET is not available");
        return -1;
    }
    snprintf(detail, detail_size, "appendonly %s, appendfsync %s", aof[0] ? aof : "?",
             fsync[0] ? fsync : "?");
    return strcmp(aof, "yes") == 0 && strcmp(fsync, "always") == 0 ? 1 : 0;
}

struct store *store_redis_open(const struct config *cfg, char **err)
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    *err = NULL;
    char host[256], msg[256];
    int port, db;
    if (cfg->store_url == NULL || config_parse_redis_url(cfg->store_url, host, sizeof(host), &port,
                                                         &db, msg, sizeof(msg)) == -1) {
        if (asprintf(err, "store.url: %s",
                     cfg->store_url == NULL ? "required with backend \"redis\"" : msg) == -1)
            *err = NULL;
        return NULL;
    }
    (void)store_redis_script(STORE_REDIS_SCRIPT_RECORD); /* the SHA-1s, once */
    struct redis_conn_opts opts = {
        .host = host,
        .port = port,
        .db = db,
        .password = cfg->store_password,
        .connect_timeout_ms = cfg->store_connect_timeout_ms,
        .timeout_ms = cfg->store_timeout_ms,
    };
    struct redis_conn *conn = redis_conn_new(&opts, err);
    if (conn == NULL)
        return NULL;
    struct redis_store *rs = calloc(1, sizeof(*rs));
    if (rs == NULL) {
        redis_conn_free(conn);
        *err = strdup("out of memory opening the Redis store");
        return NULL;
    }
    rs->base.ops = &redis_ops;
    rs->conn = conn;
    /* DESIGN §7b: no acknowledged charge may be lost, which only
     * appendonly + appendfsync always give. Said once per process. */
    if (!atomic_flag_test_and_set(&warned)) {
        char detail[128];
        int d = store_redis_durability(&rs->base, detail, sizeof(detail));
        if (d == 0)
            log_warn("store(redis): Redis at %s runs with %s: acknowledged charges and admin "
                     "writes can be lost if it crashes; set appendonly yes and appendfsync "
                     "always (README, \"Fleet mode\")",
                     redis_conn_name(conn), detail);
        else if (d == -1)
            log_warn("store(redis): cannot read the persistence settings of Redis at %s (%s): "
                     "make sure it runs with appendonly yes and appendfsync always",
                     redis_conn_name(conn), detail);
        if (redis_conn_ready(conn) == -1) {
            rs_close(&rs->base);
            *err = strdup("the connection to Redis was lost right after opening it");
            return NULL;
        }
    }
    return &rs->base;
}

/* --- tenants ------------------------------------------------------------- */

static MUST_CHECK int parse_tenant(const char *id_, const redisReply *h, struct store_tenant *t)
{
    char id[ID_MAX];
    snprintf(id, sizeof(id), "%s", id_); /* id_ may point into *t (a re-read) */
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    redis_reply_text(redis_hash_get(h, "name"), t->name, sizeof(t->name));
    redis_reply_text(redis_hash_get(h, "parent"), t->parent_id, sizeof(t->parent_id));
    t->feature_byok = field_bool(h, "byok");
    t->feature_agency = field_bool(h, "agency");
    t->wallet_deduction = field_bool(h, "wd");
    if (!field_i64(h, "plan", &t->plan_credits_micros) ||
        !field_i64(h, "wallet", &t->wallet_micros) || !field_i64(h, "created", &t->created_at_ms) ||
        !field_i64(h, "updated", &t->updated_at_ms)) {
        char safe[ID_MAX];
        log_error("store(redis): tenant %s has a malformed hash",
                  log_safe(id, strlen(id), safe, sizeof(safe)));
        return -1;
    }
    /* limits.live_sessions; absent (0, no limit) on a hash that never set it. */
    if (redis_hash_get(h, "live") != NULL && !field_i64(h, "live", &t->live_sessions))
        t->live_sessions = 0;
    return 0;
}

static void args_tenant_fields(struct redis_cmd *cmd, const struct store_tenant *t)
{
    redis_cmd_str(cmd, t->id);
    redis_cmd_str(cmd, t->name);
    redis_cmd_str(cmd, t->feature_byok ? "1" : "0");
    redis_cmd_str(cmd, t->feature_agency ? "1" : "0");
    redis_cmd_str(cmd, t->parent_id);
    redis_cmd_str(cmd, t->wallet_deduction ? "1" : "0");
}

static int rs_tenant_create(struct store *s, const struct store_tenant *t)
{
    struct redis_store *rs = to_rs(s);
    int64_t now = now_ms();
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_TENANT_CREATE), 2);
    arg_tkey(&rs->cmd, t->id, "tenant");
    arg_gkey(&rs->cmd, "tenants", NULL);
    args_tenant_fields(&rs->cmd, t);
    redis_cmd_i64(&rs->cmd, t->plan_credits_micros);
    redis_cmd_i64(&rs->cmd, t->wallet_micros);
    redis_cmd_i64(&rs->cmd, t->created_at_ms != 0 ? t->created_at_ms : now);
    redis_cmd_i64(&rs->cmd, t->updated_at_ms != 0 ? t->updated_at_ms : now);
    redis_cmd_i64(&rs->cmd, t->live_sessions);
    return script_status(rs, "tenant create",
                         eval(rs, STORE_REDIS_SCRIPT_TENANT_CREATE, "tenant create"));
}

static int rs_tenant_get(struct store *s, const char *id, struct store_tenant *out)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "HGETALL");
    arg_tkey(&rs->cmd, id, "tenant");
    redisReply *r = call(rs, "tenant get");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return fail_reply(rs, "tenant get", r);
    int rc = r->elements == 0                ? STORE_ERR_NOT_FOUND
             : parse_tenant(id, r, out) == 0 ? STORE_OK
                                             : STORE_ERR_INTERNAL;
    freeReplyObject(r);
    return rc;
}

static int rs_tenant_update(struct store *s, const struct store_tenant *t)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_TENANT_UPDATE), 1);
    arg_tkey(&rs->cmd, t->id, "tenant");
    args_tenant_fields(&rs->cmd, t);
    redis_cmd_i64(&rs->cmd, now_ms());
    redis_cmd_i64(&rs->cmd, t->live_sessions);
    return script_status(rs, "tenant update",
                         eval(rs, STORE_REDIS_SCRIPT_TENANT_UPDATE, "tenant update"));
}

static int rs_tenant_delete(struct store *s, const char *id)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_TENANT_DELETE), 2);
    arg_tkey(&rs->cmd, id, "tenant");
    arg_gkey(&rs->cmd, "tenants", NULL);
    redis_cmd_str(&rs->cmd, id);
    return script_status(rs, "tenant delete",
                         eval(rs, STORE_REDIS_SCRIPT_TENANT_DELETE, "tenant delete"));
}

static int rs_tenant_topup(struct store *s, const char *id, int64_t wallet, int64_t plan,
                           struct store_tenant *out)
{
    struct redis_store *rs = to_rs(s);
    if (wallet == INT64_MIN) {
        log_error("store(redis): tenant topup: wallet amount out of range");
        return STORE_ERR_INTERNAL;
    }
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_TOPUP), 1);
    arg_tkey(&rs->cmd, id, "tenant");
    redis_cmd_i64(&rs->cmd, wallet);
    redis_cmd_i64(&rs->cmd, plan);
    redis_cmd_i64(&rs->cmd, now_ms());
    redis_cmd_i64(&rs->cmd, -wallet);
    redisReply *r = eval(rs, STORE_REDIS_SCRIPT_TOPUP, "tenant topup");
    if (redis_reply_is(r, "not_found")) {
        freeReplyObject(r);
        return STORE_ERR_NOT_FOUND;
    }
    if (redis_reply_is(r, "overflow")) {
        freeReplyObject(r);
        log_error("store(redis): tenant topup: the balance would leave the 64-bit range");
        return STORE_ERR_INTERNAL;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return fail_reply(rs, "tenant topup", r);
    /* The hash right after this change, read in the same step. */
    int rc = parse_tenant(id, r, out) == 0 ? STORE_OK : STORE_ERR_INTERNAL;
    freeReplyObject(r);
    return rc;
}

/* The ids in the array reply r (strings), borrowed from it. */
static size_t array_len(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
}

static int cmp_tenant_id(const void *a, const void *b)
{
    return strcmp(((const struct store_tenant *)a)->id, ((const struct store_tenant *)b)->id);
}

/* SMEMBERS of a global set: a reply whose elements are the members. */
static redisReply *members(struct redis_store *rs, const char *set, const char *what)
{
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "SMEMBERS");
    arg_gkey(&rs->cmd, set, NULL);
    redisReply *r = call(rs, what);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        (void)fail_reply(rs, what, r);
        return NULL;
    }
    return r;
}

/* Every tenant, read by one pipelined HGETALL each, ordered by id. A
 * tenant deleted in between is left out. *out: caller frees. */
static MUST_CHECK int read_tenants(struct redis_store *rs, struct store_tenant **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    redisReply *ids = members(rs, "tenants", "tenant list");
    if (ids == NULL)
        return STORE_ERR_INTERNAL;
    size_t count = ids->elements;
    int rc = STORE_ERR_INTERNAL;
    struct store_tenant *ts = calloc(count + 1, sizeof(*ts));
    redisReply **hs = calloc(count + 1, sizeof(*hs));
    if (ts == NULL || hs == NULL)
        goto out;
    for (size_t i = 0; i < count; i++) {
        redis_cmd_start(&rs->cmd);
        redis_cmd_str(&rs->cmd, "HGETALL");
        arg_tkey(&rs->cmd, ids->element[i]->str, "tenant");
        if (redis_conn_append(rs->conn, &rs->cmd) == -1)
            goto out;
    }
    if (replies(rs, hs, count, "tenant list") == -1) {
        memset(hs, 0, (count + 1) * sizeof(*hs));
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        if (hs[i]->type != REDIS_REPLY_ARRAY || hs[i]->elements == 0)
            continue; /* deleted meanwhile */
        if (parse_tenant(ids->element[i]->str, hs[i], &ts[k]) == -1)
            goto out;
        k++;
    }
    qsort(ts, k, sizeof(*ts), cmp_tenant_id);
    *out = ts;
    *n = k;
    ts = NULL;
    rc = STORE_OK;
out:
    if (hs != NULL)
        free_replies(hs, count);
    free(hs);
    free(ts);
    freeReplyObject(ids);
    return rc;
}

static int rs_tenant_list(struct store *s, store_tenant_cb cb, void *arg)
{
    struct store_tenant *ts;
    size_t n;
    int rc = read_tenants(to_rs(s), &ts, &n);
    if (rc != STORE_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        cb(arg, &ts[i]);
    free(ts);
    return STORE_OK;
}

/* --- proxy keys ---------------------------------------------------------- */

struct key_row {
    struct store_key k;
    int64_t seq; /* creation order among equal created_at_ms */
};

static MUST_CHECK int parse_key(const char *kid_, const char *tenant_id_, const redisReply *h,
                                struct key_row *row)
{
    struct store_key *k = &row->k;
    char kid[ID_MAX], tenant_id[ID_MAX]; /* the arguments may point into *row */
    snprintf(kid, sizeof(kid), "%s", kid_);
    snprintf(tenant_id, sizeof(tenant_id), "%s", tenant_id_);
    memset(row, 0, sizeof(*row));
    snprintf(k->id, sizeof(k->id), "%s", kid);
    snprintf(k->tenant_id, sizeof(k->tenant_id), "%s", tenant_id);
    redis_reply_text(redis_hash_get(h, "label"), k->label, sizeof(k->label));
    const redisReply *hash = redis_hash_get(h, "hash");
    if (hash == NULL || hash->type != REDIS_REPLY_STRING || hash->len != sizeof(k->hash) ||
        !field_i64(h, "created", &k->created_at_ms) ||
        !field_i64(h, "revoked", &k->revoked_at_ms) || !field_i64(h, "seq", &row->seq)) {
        char safe[ID_MAX];
        log_error("store(redis): key %s has a malformed hash",
                  log_safe(kid, strlen(kid), safe, sizeof(safe)));
        return -1;
    }
    memcpy(k->hash, hash->str, sizeof(k->hash));
    return 0;
}

static int rs_key_create(struct store *s, const struct store_key *k)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_KEY_CREATE), 5);
    arg_tkey(&rs->cmd, k->tenant_id, "tenant");
    arg_gkey(&rs->cmd, "key", k->id);
    arg_tkey2(&rs->cmd, k->tenant_id, "key", k->id);
    arg_tkey(&rs->cmd, k->tenant_id, "keys");
    arg_gkey(&rs->cmd, "seq", NULL);
    redis_cmd_str(&rs->cmd, k->id);
    redis_cmd_str(&rs->cmd, k->tenant_id);
    redis_cmd_str(&rs->cmd, k->label);
    redis_cmd_add(&rs->cmd, k->hash, sizeof(k->hash));
    redis_cmd_i64(&rs->cmd, k->created_at_ms != 0 ? k->created_at_ms : now_ms());
    redis_cmd_i64(&rs->cmd, k->revoked_at_ms);
    return script_status(rs, "key create", eval(rs, STORE_REDIS_SCRIPT_KEY_CREATE, "key create"));
}

static int cmp_key_row(const void *a, const void *b)
{
    const struct key_row *x = a, *y = b;
    if (x->k.created_at_ms != y->k.created_at_ms)
        return x->k.created_at_ms < y->k.created_at_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ZRANGE of a tenant's index zset (what = "keys" or "conns"). */
static redisReply *tenant_index(struct redis_store *rs, const char *tenant_id, const char *what)
{
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "ZRANGE");
    arg_tkey(&rs->cmd, tenant_id, what);
    redis_cmd_str(&rs->cmd, "0");
    redis_cmd_str(&rs->cmd, "-1");
    redisReply *r = call(rs, what);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        (void)fail_reply(rs, what, r);
        return NULL;
    }
    return r;
}

static int rs_key_list(struct store *s, const char *tenant_id, store_key_cb cb, void *arg)
{
    struct redis_store *rs = to_rs(s);
    redisReply *ids = tenant_index(rs, tenant_id, "keys");
    if (ids == NULL)
        return STORE_ERR_INTERNAL;
    size_t n = ids->elements, k = 0;
    int rc = STORE_ERR_INTERNAL;
    struct key_row *rows = calloc(n + 1, sizeof(*rows));
    redisReply **hs = calloc(n + 1, sizeof(*hs));
    if (rows == NULL || hs == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        redis_cmd_start(&rs->cmd);
        redis_cmd_str(&rs->cmd, "HGETALL");
        arg_tkey2(&rs->cmd, tenant_id, "key", ids->element[i]->str);
        if (redis_conn_append(rs->conn, &rs->cmd) == -1)
            goto out;
    }
    if (replies(rs, hs, n, "key list") == -1) {
        memset(hs, 0, (n + 1) * sizeof(*hs));
        goto out;
    }
    rc = STORE_OK;
    for (size_t i = 0; i < n; i++) {
        if (hs[i]->type != REDIS_REPLY_ARRAY || hs[i]->elements == 0)
            continue;
        /* Like the SQLite backend: a malformed row is skipped and said. */
        if (parse_key(ids->element[i]->str, tenant_id, hs[i], &rows[k]) == -1)
            rc = STORE_ERR_INTERNAL;
        else
            k++;
    }
    qsort(rows, k, sizeof(*rows), cmp_key_row);
    for (size_t i = 0; i < k; i++)
        cb(arg, &rows[i].k);
out:
    if (hs != NULL)
        free_replies(hs, n);
    free(hs);
    free(rows);
    freeReplyObject(ids);
    return rc;
}

static int rs_key_revoke(struct store *s, const char *tenant_id, const char *key_id)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_KEY_REVOKE), 1);
    arg_tkey2(&rs->cmd, tenant_id, "key", key_id);
    redis_cmd_i64(&rs->cmd, now_ms());
    return script_status(rs, "key revoke", eval(rs, STORE_REDIS_SCRIPT_KEY_REVOKE, "key revoke"));
}

/* Two reads: the index names the tenant, whose slot holds the key. A key
 * deleted in between reads as absent. */
static int rs_key_get(struct store *s, const char *key_id, struct store_key *out)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "GET");
    arg_gkey(&rs->cmd, "key", key_id);
    redisReply *r = call(rs, "key get");
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        return fail_reply(rs, "key get", r);
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return STORE_ERR_NOT_FOUND;
    }
    char tenant[ID_MAX];
    redis_reply_text(r, tenant, sizeof(tenant));
    freeReplyObject(r);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "HGETALL");
    arg_tkey2(&rs->cmd, tenant, "key", key_id);
    r = call(rs, "key get");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return fail_reply(rs, "key get", r);
    struct key_row row;
    int rc = r->elements == 0                          ? STORE_ERR_NOT_FOUND
             : parse_key(key_id, tenant, r, &row) == 0 ? STORE_OK
                                                       : STORE_ERR_INTERNAL;
    if (rc == STORE_OK)
        *out = row.k;
    freeReplyObject(r);
    return rc;
}

/* --- connections --------------------------------------------------------- */

struct conn_row {
    struct store_connection c;
    int64_t seq;
};

static bool connection_valid(const struct store_connection *c)
{
    return c->sealed_len > 0 && c->sealed_len <= sizeof(c->sealed) && c->provider != NULL &&
           c->provider->slot;
}

static MUST_CHECK int parse_connection(const char *cid_, const char *tenant_id_,
                                       const redisReply *h, struct conn_row *row)
{
    struct store_connection *c = &row->c;
    char cid[ID_MAX], tenant_id[ID_MAX]; /* the arguments may point into *row */
    snprintf(cid, sizeof(cid), "%s", cid_);
    snprintf(tenant_id, sizeof(tenant_id), "%s", tenant_id_);
    memset(row, 0, sizeof(*row));
    snprintf(c->id, sizeof(c->id), "%s", cid);
    snprintf(c->tenant_id, sizeof(c->tenant_id), "%s", tenant_id);
    char pname[64];
    int64_t version = 0;
    redis_reply_text(redis_hash_get(h, "provider"), pname, sizeof(pname));
    redis_reply_text(redis_hash_get(h, "name"), c->name, sizeof(c->name));
    redis_reply_text(redis_hash_get(h, "region"), c->region, sizeof(c->region));
    redis_reply_text(redis_hash_get(h, "hint"), c->key_hint, sizeof(c->key_hint));
    const redisReply *sealed = redis_hash_get(h, "sealed");
    c->provider = provider_find(pname);
    if (c->provider == NULL || !c->provider->slot || sealed == NULL ||
        sealed->type != REDIS_REPLY_STRING || sealed->len == 0 || sealed->len > sizeof(c->sealed) ||
        !field_i64(h, "version", &version) || version < INT32_MIN || version > INT32_MAX ||
        !field_i64(h, "created", &c->created_at_ms) ||
        !field_i64(h, "updated", &c->updated_at_ms) || !field_i64(h, "seq", &row->seq)) {
        char safe[ID_MAX];
        log_error("store(redis): connection %s has a malformed hash",
                  log_safe(cid, strlen(cid), safe, sizeof(safe)));
        return -1;
    }
    c->key_version = (int)version;
    memcpy(c->sealed, sealed->str, sealed->len);
    c->sealed_len = sealed->len;
    return 0;
}

static int rs_connection_create(struct store *s, const struct store_connection *c)
{
    struct redis_store *rs = to_rs(s);
    if (!connection_valid(c))
        return STORE_ERR_INTERNAL;
    int64_t now = now_ms();
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_CONN_CREATE), 5);
    arg_tkey(&rs->cmd, c->tenant_id, "tenant");
    arg_gkey(&rs->cmd, "conn", c->id);
    arg_tkey2(&rs->cmd, c->tenant_id, "conn", c->id);
    arg_tkey(&rs->cmd, c->tenant_id, "conns");
    arg_gkey(&rs->cmd, "seq", NULL);
    redis_cmd_str(&rs->cmd, c->id);
    redis_cmd_str(&rs->cmd, c->tenant_id);
    redis_cmd_str(&rs->cmd, provider_name(c->provider));
    redis_cmd_str(&rs->cmd, c->name);
    redis_cmd_str(&rs->cmd, c->region);
    redis_cmd_str(&rs->cmd, c->key_hint);
    redis_cmd_i64(&rs->cmd, c->key_version);
    redis_cmd_add(&rs->cmd, c->sealed, c->sealed_len);
    redis_cmd_i64(&rs->cmd, c->created_at_ms != 0 ? c->created_at_ms : now);
    redis_cmd_i64(&rs->cmd, c->updated_at_ms != 0 ? c->updated_at_ms : now);
    return script_status(rs, "connection create",
                         eval(rs, STORE_REDIS_SCRIPT_CONN_CREATE, "connection create"));
}

/* Scoped by tenant in the key itself: another tenant's id reads as absent,
 * never as someone else's record. */
static int rs_connection_get(struct store *s, const char *tenant_id, const char *id,
                             struct store_connection *out)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "HGETALL");
    arg_tkey2(&rs->cmd, tenant_id, "conn", id);
    redisReply *r = call(rs, "connection get");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return fail_reply(rs, "connection get", r);
    struct conn_row *row = r->elements > 0 ? malloc(sizeof(*row)) : NULL;
    int rc;
    if (r->elements == 0)
        rc = STORE_ERR_NOT_FOUND;
    else if (row == NULL || parse_connection(id, tenant_id, r, row) == -1)
        rc = STORE_ERR_INTERNAL;
    else {
        *out = row->c;
        rc = STORE_OK;
    }
    if (row != NULL)
        crypto_wipe(row, sizeof(*row));
    free(row);
    freeReplyObject(r);
    return rc;
}

static int rs_connection_update(struct store *s, const struct store_connection *c)
{
    struct redis_store *rs = to_rs(s);
    if (!connection_valid(c))
        return STORE_ERR_INTERNAL;
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_CONN_UPDATE), 1);
    arg_tkey2(&rs->cmd, c->tenant_id, "conn", c->id);
    redis_cmd_str(&rs->cmd, c->name);
    redis_cmd_str(&rs->cmd, c->region);
    redis_cmd_str(&rs->cmd, c->key_hint);
    redis_cmd_i64(&rs->cmd, c->key_version);
    redis_cmd_add(&rs->cmd, c->sealed, c->sealed_len);
    redis_cmd_i64(&rs->cmd, c->updated_at_ms != 0 ? c->updated_at_ms : now_ms());
    return script_status(rs, "connection update",
                         eval(rs, STORE_REDIS_SCRIPT_CONN_UPDATE, "connection update"));
}

static int rs_connection_delete(struct store *s, const char *tenant_id, const char *id)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_CONN_DELETE), 3);
    arg_tkey2(&rs->cmd, tenant_id, "conn", id);
    arg_tkey(&rs->cmd, tenant_id, "conns");
    arg_gkey(&rs->cmd, "conn", id);
    redis_cmd_str(&rs->cmd, id);
    redis_cmd_i64(&rs->cmd, now_ms());
    return script_status(rs, "connection delete",
                         eval(rs, STORE_REDIS_SCRIPT_CONN_DELETE, "connection delete"));
}

static int cmp_conn_row(const void *a, const void *b)
{
    const struct conn_row *x = a, *y = b;
    if (x->c.created_at_ms != y->c.created_at_ms)
        return x->c.created_at_ms < y->c.created_at_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A growable array of connections. */
struct conn_rows {
    struct conn_row *v;
    size_t n, cap;
};

static void conn_rows_free(struct conn_rows *rows)
{
    if (rows->v != NULL)
        crypto_wipe(rows->v, rows->cap * sizeof(*rows->v));
    free(rows->v);
    memset(rows, 0, sizeof(*rows));
}

/* The connections of the tenants named in tenant_ids (n of them), ordered
 * by creation. strict: a malformed record fails the whole read (re-sealing
 * must not skip one); otherwise it is skipped and the result is
 * STORE_ERR_INTERNAL after the rest. */
static MUST_CHECK int read_connections(struct redis_store *rs, const char *const *tenant_ids,
                                       size_t n_tenants, bool strict, struct conn_rows *rows)
{
    redisReply **idx = calloc(n_tenants + 1, sizeof(*idx));
    redisReply **hs = NULL;
    const char **owner = NULL, **cid = NULL;
    size_t total = 0;
    int rc = STORE_ERR_INTERNAL;
    if (idx == NULL)
        return rc;
    redis_conn_settle(rs->conn);
    for (size_t i = 0; i < n_tenants; i++) {
        redis_cmd_start(&rs->cmd);
        redis_cmd_str(&rs->cmd, "ZRANGE");
        arg_tkey(&rs->cmd, tenant_ids[i], "conns");
        redis_cmd_str(&rs->cmd, "0");
        redis_cmd_str(&rs->cmd, "-1");
        if (redis_conn_append(rs->conn, &rs->cmd) == -1)
            goto out;
    }
    if (replies(rs, idx, n_tenants, "connection list") == -1) {
        memset(idx, 0, (n_tenants + 1) * sizeof(*idx));
        goto out;
    }
    for (size_t i = 0; i < n_tenants; i++)
        total += array_len(idx[i]);
    hs = calloc(total + 1, sizeof(*hs));
    owner = calloc(total + 1, sizeof(*owner));
    cid = calloc(total + 1, sizeof(*cid));
    rows->v = calloc(total + 1, sizeof(*rows->v));
    rows->cap = total + 1;
    if (hs == NULL || owner == NULL || cid == NULL || rows->v == NULL)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < n_tenants; i++) {
        for (size_t j = 0; j < array_len(idx[i]); j++, k++) {
            owner[k] = tenant_ids[i];
            cid[k] = idx[i]->element[j]->str;
            redis_cmd_start(&rs->cmd);
            redis_cmd_str(&rs->cmd, "HGETALL");
            arg_tkey2(&rs->cmd, owner[k], "conn", cid[k]);
            if (redis_conn_append(rs->conn, &rs->cmd) == -1)
                goto out;
        }
    }
    if (replies(rs, hs, total, "connection list") == -1) {
        memset(hs, 0, (total + 1) * sizeof(*hs));
        goto out;
    }
    rc = STORE_OK;
    for (k = 0; k < total; k++) {
        if (hs[k]->type != REDIS_REPLY_ARRAY || hs[k]->elements == 0)
            continue; /* deleted meanwhile */
        if (parse_connection(cid[k], owner[k], hs[k], &rows->v[rows->n]) == -1) {
            rc = STORE_ERR_INTERNAL;
            if (strict)
                goto out;
            continue;
        }
        rows->n++;
    }
    qsort(rows->v, rows->n, sizeof(*rows->v), cmp_conn_row);
out:
    if (hs != NULL)
        free_replies(hs, total);
    free_replies(idx, n_tenants);
    free(hs);
    free(idx);
    free(owner);
    free(cid);
    return rc;
}

/* The ids of every tenant (SMEMBERS byok:tenants), as an array of
 * pointers into *keep (caller frees both). */
static MUST_CHECK int all_tenant_ids(struct redis_store *rs, redisReply **keep, const char ***ids,
                                     size_t *n)
{
    *keep = members(rs, "tenants", "tenant ids");
    if (*keep == NULL)
        return -1;
    *n = (*keep)->elements;
    *ids = calloc(*n + 1, sizeof(**ids));
    if (*ids == NULL) {
        freeReplyObject(*keep);
        *keep = NULL;
        return -1;
    }
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = (*keep)->element[i]->str;
    return 0;
}

static int rs_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb,
                              void *arg)
{
    struct redis_store *rs = to_rs(s);
    struct conn_rows rows = {0};
    redisReply *keep = NULL;
    const char **ids = NULL;
    size_t n = 1;
    if (tenant_id == NULL && all_tenant_ids(rs, &keep, &ids, &n) == -1)
        return STORE_ERR_INTERNAL;
    int rc = read_connections(rs, tenant_id != NULL ? &tenant_id : ids, n, false, &rows);
    for (size_t i = 0; i < rows.n; i++)
        cb(arg, &rows.v[i].c);
    conn_rows_free(&rows);
    free(ids);
    if (keep != NULL)
        freeReplyObject(keep);
    return rc;
}

/* --- BYOK settings ------------------------------------------------------- */

static int rs_byok_get(struct store *s, const char *tenant_id, struct store_byok *out)
{
    struct redis_store *rs = to_rs(s);
    memset(out, 0, sizeof(*out));
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "HGETALL");
    arg_tkey(&rs->cmd, tenant_id, "byok");
    redisReply *r = call(rs, "byok get");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return fail_reply(rs, "byok get", r);
    /* No hash: disabled, empty slots. */
    out->enabled = redis_reply_is(redis_hash_get(r, "enabled"), "1");
    int64_t updated = 0;
    if (field_i64(r, "updated", &updated))
        out->updated_at_ms = updated;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i];
        if (f->type != REDIS_REPLY_STRING || f->len <= 5 || memcmp(f->str, "slot:", 5) != 0)
            continue;
        /* A slot of a provider this build does not know is ignored. */
        int slot = provider_slot_index(provider_find(f->str + 5));
        if (slot >= 0)
            redis_reply_text(r->element[i + 1], out->slots[slot], ID_MAX);
    }
    freeReplyObject(r);
    return STORE_OK;
}

static int rs_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b)
{
    struct redis_store *rs = to_rs(s);
    redis_cmd_evalsha(&rs->cmd, store_redis_script(STORE_REDIS_SCRIPT_BYOK_PUT), 2);
    arg_tkey(&rs->cmd, tenant_id, "tenant");
    arg_tkey(&rs->cmd, tenant_id, "byok");
    redis_cmd_str(&rs->cmd, tenant_id);
    redis_cmd_str(&rs->cmd, b->enabled ? "1" : "0");
    redis_cmd_i64(&rs->cmd, b->updated_at_ms != 0 ? b->updated_at_ms : now_ms());
    for (size_t i = 0; i < provider_slot_count(); i++) {
        if (b->slots[i][0] == '\0')
            continue;
        redis_cmd_str(&rs->cmd, provider_slot_at(i)->name);
        redis_cmd_str(&rs->cmd, b->slots[i]);
    }
    return script_status(rs, "byok put", eval(rs, STORE_REDIS_SCRIPT_BYOK_PUT, "byok put"));
}

/* --- the proxy's own secrets ---------------------------------------------- */

static MUST_CHECK int parse_secret(const char *name, const redisReply *version,
                                   const redisReply *sealed, int *key_version,
                                   unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len)
{
    int64_t v;
    if (redis_reply_i64(version, &v) == -1 || v < INT32_MIN || v > INT32_MAX || sealed == NULL ||
        sealed->type != REDIS_REPLY_STRING || sealed->len == 0 || sealed->len > CRYPTO_SEALED_MAX) {
        char safe[ID_MAX];
        log_error("store(redis): secret %s has a malformed hash",
                  log_safe(name, strlen(name), safe, sizeof(safe)));
        return -1;
    }
    *key_version = (int)v;
    memcpy(out, sealed->str, sealed->len);
    *out_len = sealed->len;
    return 0;
}

static void cmd_secret_get(struct redis_cmd *cmd, const char *name)
{
    redis_cmd_start(cmd);
    redis_cmd_str(cmd, "HMGET");
    arg_gkey(cmd, "secret", name);
    redis_cmd_str(cmd, "version");
    redis_cmd_str(cmd, "sealed");
}

static int rs_secret_get(struct store *s, const char *name, int *key_version,
                         unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len)
{
    struct redis_store *rs = to_rs(s);
    cmd_secret_get(&rs->cmd, name);
    redisReply *r = call(rs, "secret get");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return fail_reply(rs, "secret get", r);
    int rc;
    if (r->element[0]->type == REDIS_REPLY_NIL && r->element[1]->type == REDIS_REPLY_NIL)
        rc = STORE_ERR_NOT_FOUND;
    else
        rc = parse_secret(name, r->element[0], r->element[1], key_version, sealed, sealed_len) == 0
                 ? STORE_OK
                 : STORE_ERR_INTERNAL;
    freeReplyObject(r);
    return rc;
}

static void cmd_secret_put(struct redis_cmd *cmd, const char *name, int key_version,
                           const unsigned char *sealed, size_t sealed_len)
{
    redis_cmd_start(cmd);
    redis_cmd_str(cmd, "HSET");
    arg_gkey(cmd, "secret", name);
    redis_cmd_str(cmd, "version");
    redis_cmd_i64(cmd, key_version);
    redis_cmd_str(cmd, "sealed");
    redis_cmd_add(cmd, sealed, sealed_len);
}

/* The secret and its name in the index, in one MULTI/EXEC. */
static int rs_secret_put(struct store *s, const char *name, int key_version,
                         const unsigned char *sealed, size_t sealed_len)
{
    struct redis_store *rs = to_rs(s);
    if (sealed_len == 0 || sealed_len > CRYPTO_SEALED_MAX)
        return STORE_ERR_INTERNAL;
    redisReply *r[4] = {0};
    redis_conn_settle(rs->conn);
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "MULTI");
    if (redis_conn_append(rs->conn, &rs->cmd) == -1)
        return STORE_ERR_INTERNAL;
    cmd_secret_put(&rs->cmd, name, key_version, sealed, sealed_len);
    if (redis_conn_append(rs->conn, &rs->cmd) == -1)
        return STORE_ERR_INTERNAL;
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "SADD");
    arg_gkey(&rs->cmd, "secrets", NULL);
    redis_cmd_str(&rs->cmd, name);
    if (redis_conn_append(rs->conn, &rs->cmd) == -1)
        return STORE_ERR_INTERNAL;
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "EXEC");
    if (redis_conn_append(rs->conn, &rs->cmd) == -1 ||
        replies(rs, r, ARRAY_SIZE(r), "secret put") == -1)
        return STORE_ERR_INTERNAL;
    int rc = r[3]->type == REDIS_REPLY_ARRAY && r[3]->elements == 2 &&
                     !redis_reply_is_error(r[3]->element[0]) &&
                     !redis_reply_is_error(r[3]->element[1])
                 ? STORE_OK
                 : STORE_ERR_INTERNAL;
    if (rc != STORE_OK)
        log_error("store(redis): secret put at %s failed", redis_conn_name(rs->conn));
    free_replies(r, ARRAY_SIZE(r));
    return rc;
}

struct secret_row {
    char name[ID_MAX];
    int version;
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t sealed_len;
};

static int cmp_secret_row(const void *a, const void *b)
{
    return strcmp(((const struct secret_row *)a)->name, ((const struct secret_row *)b)->name);
}

/* Every secret named in byok:secrets, ordered by name. *out: caller frees
 * (wiped). */
static MUST_CHECK int read_secrets(struct redis_store *rs, struct secret_row **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    redisReply *names = members(rs, "secrets", "secret list");
    if (names == NULL)
        return STORE_ERR_INTERNAL;
    size_t count = names->elements, k = 0;
    int rc = STORE_ERR_INTERNAL;
    struct secret_row *rows = calloc(count + 1, sizeof(*rows));
    redisReply **hs = calloc(count + 1, sizeof(*hs));
    if (rows == NULL || hs == NULL)
        goto out;
    for (size_t i = 0; i < count; i++) {
        cmd_secret_get(&rs->cmd, names->element[i]->str);
        if (redis_conn_append(rs->conn, &rs->cmd) == -1)
            goto out;
    }
    if (replies(rs, hs, count, "secret list") == -1) {
        memset(hs, 0, (count + 1) * sizeof(*hs));
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        if (hs[i]->type != REDIS_REPLY_ARRAY || hs[i]->elements != 2)
            goto out;
        if (hs[i]->element[0]->type == REDIS_REPLY_NIL)
            continue;
        struct secret_row *row = &rows[k];
        redis_reply_text(names->element[i], row->name, sizeof(row->name));
        if (parse_secret(row->name, hs[i]->element[0], hs[i]->element[1], &row->version,
                         row->sealed, &row->sealed_len) == -1)
            goto out;
        k++;
    }
    qsort(rows, k, sizeof(*rows), cmp_secret_row);
    *out = rows;
    *n = k;
    rows = NULL;
    rc = STORE_OK;
out:
    if (hs != NULL)
        free_replies(hs, count);
    free(hs);
    if (rows != NULL)
        crypto_wipe(rows, (count + 1) * sizeof(*rows));
    free(rows);
    freeReplyObject(names);
    return rc;
}

static int rs_secret_list(struct store *s, store_secret_cb cb, void *arg)
{
    struct secret_row *rows;
    size_t n;
    int rc = read_secrets(to_rs(s), &rows, &n);
    if (rc != STORE_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        cb(arg, rows[i].name, rows[i].version, rows[i].sealed, rows[i].sealed_len);
    crypto_wipe(rows, n * sizeof(*rows));
    free(rows);
    return STORE_OK;
}

/* --- re-sealing, all or nothing ------------------------------------------ */

/* WATCH of the keys named by the arguments already in rs->cmd after
 * "WATCH". */
static MUST_CHECK int watch(struct redis_store *rs)
{
    redisReply *r = call(rs, "reseal WATCH");
    if (!redis_reply_is(r, "OK"))
        return fail_reply(rs, "reseal WATCH", r) == STORE_OK ? 0 : -1;
    freeReplyObject(r);
    return 0;
}

static void unwatch(struct redis_store *rs)
{
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "UNWATCH");
    redisReply *r = call(rs, "reseal UNWATCH");
    if (r != NULL)
        freeReplyObject(r);
}

/* Reads every connection and secret under WATCH, has fn re-seal each in
 * memory, then writes them all in one MULTI/EXEC, which Redis applies only
 * if none of what was read (or the sets that list them) changed since:
 * all or nothing, like the SQLite transaction. A store that changed
 * meanwhile fails with nothing written (run the command again). */
static int rs_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count)
{
    struct redis_store *rs = to_rs(s);
    struct conn_rows conns = {0};
    struct secret_row *secrets = NULL;
    size_t n_secrets = 0, n_ids = 0;
    redisReply *keep = NULL;
    const char **ids = NULL;
    int status = STORE_ERR_INTERNAL;
    bool watching = false;
    *count = 0;

    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "WATCH");
    arg_gkey(&rs->cmd, "tenants", NULL);
    arg_gkey(&rs->cmd, "secrets", NULL);
    if (watch(rs) == -1)
        goto out;
    watching = true;
    if (all_tenant_ids(rs, &keep, &ids, &n_ids) == -1)
        goto out;
    /* The lists first, then the records they name. */
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "WATCH");
    for (size_t i = 0; i < n_ids; i++)
        arg_tkey(&rs->cmd, ids[i], "conns");
    if (n_ids > 0 && watch(rs) == -1)
        goto out;
    if (read_connections(rs, ids, n_ids, true, &conns) != STORE_OK ||
        read_secrets(rs, &secrets, &n_secrets) != STORE_OK)
        goto out;
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "WATCH");
    for (size_t i = 0; i < conns.n; i++)
        arg_tkey2(&rs->cmd, conns.v[i].c.tenant_id, "conn", conns.v[i].c.id);
    for (size_t i = 0; i < n_secrets; i++)
        arg_gkey(&rs->cmd, "secret", secrets[i].name);
    if (conns.n + n_secrets > 0 && watch(rs) == -1)
        goto out;
    /* Read again now that they are watched: a change between the first
     * read and the WATCH would otherwise go unseen. */
    conn_rows_free(&conns);
    crypto_wipe(secrets, n_secrets * sizeof(*secrets));
    free(secrets);
    secrets = NULL;
    if (read_connections(rs, ids, n_ids, true, &conns) != STORE_OK ||
        read_secrets(rs, &secrets, &n_secrets) != STORE_OK)
        goto out;

    /* Every record re-sealed in memory before anything is written:
     * connections first (by creation), then secrets (by name). */
    unsigned char out_buf[CRYPTO_SEALED_MAX];
    size_t total = conns.n + n_secrets;
    for (size_t i = 0; i < total; i++) {
        bool secret = i >= conns.n;
        struct store_connection *c = secret ? NULL : &conns.v[i].c;
        struct secret_row *sr = secret ? &secrets[i - conns.n] : NULL;
        const char *id = secret ? sr->name : c->id;
        size_t out_len = 0;
        int out_version = 0;
        if (fn(arg, secret ? "" : c->tenant_id, id, secret ? sr->sealed : c->sealed,
               secret ? sr->sealed_len : c->sealed_len, secret ? sr->version : c->key_version,
               out_buf, &out_len, &out_version) == -1)
            goto out;
        if (out_len == 0 || out_len > sizeof(out_buf)) {
            log_error("store(redis): re-sealing %s gave a malformed value", id);
            goto out;
        }
        if (secret) {
            memcpy(sr->sealed, out_buf, out_len);
            sr->sealed_len = out_len;
            sr->version = out_version;
        } else {
            memcpy(c->sealed, out_buf, out_len);
            c->sealed_len = out_len;
            c->key_version = out_version;
        }
    }
    crypto_wipe(out_buf, sizeof(out_buf));

    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "MULTI");
    if (redis_conn_append(rs->conn, &rs->cmd) == -1)
        goto out;
    for (size_t i = 0; i < total; i++) {
        if (i < conns.n) {
            struct store_connection *c = &conns.v[i].c;
            redis_cmd_start(&rs->cmd);
            redis_cmd_str(&rs->cmd, "HSET");
            arg_tkey2(&rs->cmd, c->tenant_id, "conn", c->id);
            redis_cmd_str(&rs->cmd, "version");
            redis_cmd_i64(&rs->cmd, c->key_version);
            redis_cmd_str(&rs->cmd, "sealed");
            redis_cmd_add(&rs->cmd, c->sealed, c->sealed_len);
        } else {
            struct secret_row *sr = &secrets[i - conns.n];
            cmd_secret_put(&rs->cmd, sr->name, sr->version, sr->sealed, sr->sealed_len);
        }
        if (redis_conn_append(rs->conn, &rs->cmd) == -1)
            goto out;
    }
    redis_cmd_start(&rs->cmd);
    redis_cmd_str(&rs->cmd, "EXEC");
    if (redis_conn_append(rs->conn, &rs->cmd) == -1)
        goto out;
    watching = false; /* EXEC (or the connection's loss) ends the WATCH */
    bool queued_ok = true;
    for (size_t i = 0; i < total + 1; i++) {
        redisReply *r = redis_conn_reply(rs->conn, "reseal");
        if (r == NULL)
            goto out;
        queued_ok = queued_ok && !redis_reply_is_error(r);
        freeReplyObject(r);
    }
    redisReply *exec = redis_conn_reply(rs->conn, "reseal EXEC");
    if (exec == NULL)
        goto out;
    if (exec->type == REDIS_REPLY_NIL) {
        freeReplyObject(exec);
        log_error("store(redis): the store changed while re-sealing (a connection or secret was "
                  "written meanwhile): nothing was re-sealed; run it again with every proxy "
                  "stopped");
        goto out;
    }
    if (!queued_ok || exec->type != REDIS_REPLY_ARRAY || exec->elements != total) {
        (void)fail_reply(rs, "reseal EXEC", exec);
        goto out;
    }
    freeReplyObject(exec);
    *count = total;
    status = STORE_OK;
out:
    if (watching)
        unwatch(rs);
    conn_rows_free(&conns);
    if (secrets != NULL)
        crypto_wipe(secrets, n_secrets * sizeof(*secrets));
    free(secrets);
    free(ids);
    if (keep != NULL)
        freeReplyObject(keep);
    return status;
}

static const struct store_ops redis_ops = {
    .name = "redis",
    .close = rs_close,
    .ping = rs_ping,
    .tenant_create = rs_tenant_create,
    .tenant_get = rs_tenant_get,
    .tenant_update = rs_tenant_update,
    .tenant_delete = rs_tenant_delete,
    .tenant_topup = rs_tenant_topup,
    .tenant_list = rs_tenant_list,
    .key_create = rs_key_create,
    .key_list = rs_key_list,
    .key_revoke = rs_key_revoke,
    .key_get = rs_key_get,
    .usage_write = store_redis_usage_write,
    .usage_query = store_redis_usage_query,
    .connection_create = rs_connection_create,
    .connection_get = rs_connection_get,
    .connection_update = rs_connection_update,
    .connection_delete = rs_connection_delete,
    .connection_list = rs_connection_list,
    .byok_get = rs_byok_get,
    .byok_put = rs_byok_put,
    .secret_get = rs_secret_get,
    .secret_put = rs_secret_put,
    .secret_list = rs_secret_list,
    .reseal_all = rs_reseal_all,
};

int store_redis_drop_pins(struct store *s, const char *tenant_id)
{
    struct redis_conn *c = store_redis_conn(s);
    char pattern[ID_MAX + 32];
    if (c == NULL || store_redis_tenant_key(pattern, sizeof(pattern), tenant_id, "pin:*") == -1)
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    char cursor[32] = "0";
    int rc = STORE_OK;
    do {
        redis_cmd_start(&cmd);
        redis_cmd_str(&cmd, "SCAN");
        redis_cmd_str(&cmd, cursor);
        redis_cmd_str(&cmd, "MATCH");
        redis_cmd_str(&cmd, pattern);
        redis_cmd_str(&cmd, "COUNT");
        redis_cmd_str(&cmd, "1000");
        redisReply *r = redis_conn_call(c, &cmd, "drop pins (scan)");
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r != NULL)
                freeReplyObject(r);
            rc = STORE_ERR_INTERNAL;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        if (r->element[1]->elements > 0) {
            redis_cmd_start(&cmd);
            redis_cmd_str(&cmd, "UNLINK");
            for (size_t i = 0; i < r->element[1]->elements; i++)
                redis_cmd_str(&cmd, r->element[1]->element[i]->str);
            redisReply *d = redis_conn_call(c, &cmd, "drop pins (unlink)");
            if (d == NULL)
                rc = STORE_ERR_INTERNAL;
            else
                freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (rc == STORE_OK && strcmp(cursor, "0") != 0);
    redis_cmd_free(&cmd);
    if (rc == STORE_OK) {
        /* Every instance drops its cached pins of the tenant (follower.c). */
        char msg[ID_MAX + 8];
        snprintf(msg, sizeof(msg), "pins:%s", tenant_id);
        rc = store_redis_publish(s, msg);
    }
    return rc;
}

int store_redis_publish(struct store *s, const char *message)
{
    struct redis_conn *c = store_redis_conn(s);
    if (c == NULL)
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    redis_cmd_start(&cmd);
    redis_cmd_str(&cmd, "PUBLISH");
    redis_cmd_str(&cmd, STORE_REDIS_CHANNEL);
    redis_cmd_str(&cmd, message);
    redisReply *r = redis_conn_call(c, &cmd, "publish");
    redis_cmd_free(&cmd);
    int rc = r != NULL && r->type == REDIS_REPLY_INTEGER ? STORE_OK : STORE_ERR_INTERNAL;
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}
