/* test_store_redis.c - the Redis store backend against a real redis-server
 * (started by the test on a free loopback port): the cases every backend
 * shares (store_cases.h), then Redis's own - the key layout, money in one
 * atomic step per record with compare-and-set, holds (50 concurrent admits
 * against 1 micro-USD admit one), a batch that fails half-way, reconnects
 * after a restart, scripts reloaded, AUTH and the durability check. */
#include "common.h"
#include "config.h"
#include "redis_conn.h"
#include "store.h"
#include "store_redis.h"
#include "redis_server_test.h"

#include "store_cases.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

static struct redis_server srv;
static char url[64];
static char backend[] = "redis";

struct fixture {
    struct config cfg;
    struct store *s;
    redisContext *raw; /* behind the store's back */
};

static void cfg_init(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->store_backend = backend;
    cfg->store_url = url;
    cfg->store_connect_timeout_ms = 1000;
    cfg->store_timeout_ms = 2000;
}

static redisReply *raw(struct fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->raw, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void raw_ok(struct fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->raw, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    freeReplyObject(r);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* a write to a restarted server */
    if (redis_server_start(&srv) == -1) {
        redis_server_destroy(&srv);
        return -1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", srv.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_server_destroy(&srv);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cfg_init(&f->cfg);
    f->raw = redis_server_connect(&srv);
    assert_non_null(f->raw);
    raw_ok(f, "FLUSHALL");
    raw_ok(f, "SCRIPT FLUSH");
    char *err = NULL;
    f->s = store_open_role(&f->cfg, STORE_ROLE_CONTROL, &err);
    if (f->s == NULL)
        fail_msg("open: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    if (f->raw != NULL)
        redisFree(f->raw);
    free(f);
    return 0;
}

static struct store *case_store(void **state)
{
    return ((struct fixture *)*state)->s;
}

static char *case_stored_text(void **state, const char *id)
{
    struct fixture *f = *state;
    redisReply *r = raw(f, "GET byok:rec:%s", id);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char *text = strndup(r->str, r->len);
    freeReplyObject(r);
    assert_non_null(text);
    return text;
}

/* --- opening ------------------------------------------------------------- */

static void test_open(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    /* The data plane's synchronous open still refuses Redis: its requests
     * go through the asynchronous client. */
    assert_null(store_open(&f->cfg, &err));
    assert_string_equal(err, "the redis backend is not built yet");
    free(err);
    assert_string_equal(f->s->ops->name, "redis");
    assert_int_equal(store_ping(f->s), STORE_OK);
    /* Fleet stores take no lock. */
    struct store_lock *l = (struct store_lock *)1;
    assert_int_equal(store_lock(&f->cfg, &l, &err), 0);
    assert_null(l);

    /* Nobody listening: refused at open, naming the address. */
    struct config cfg;
    char bad[64];
    cfg_init(&cfg);
    int port = redis_server_free_port();
    snprintf(bad, sizeof(bad), "redis://127.0.0.1:%d", port);
    cfg.store_url = bad;
    assert_null(store_redis_open(&cfg, &err));
    char want[64];
    snprintf(want, sizeof(want), "Redis at 127.0.0.1:%d: connecting failed", port);
    if (strstr(err, want) == NULL)
        fail_msg("want \"%s\" in \"%s\"", want, err);
    free(err);

    /* A database number is selected. */
    char db5[64];
    snprintf(db5, sizeof(db5), "redis://127.0.0.1:%d/5", srv.port);
    cfg.store_url = db5;
    struct store *s5 = store_redis_open(&cfg, &err);
    assert_non_null(s5);
    struct store_tenant t = tenant("in5", "", 0, 0);
    assert_int_equal(store_tenant_create(s5, &t), STORE_OK);
    store_close(s5);
    raw_ok(f, "SELECT 5");
    redisReply *r = raw(f, "EXISTS byok:{t:in5}:tenant");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    raw_ok(f, "SELECT 0");
    assert_int_equal(store_tenant_get(f->s, "in5", &t), STORE_ERR_NOT_FOUND);
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    raw_ok(f, "CONFIG SET requirepass %s", "pw-for-tests");
    struct config cfg;
    cfg_init(&cfg);
    char wrong[] = "not-the-password", right[] = "pw-for-tests";
    char *err = NULL;
    /* Without a password, then with a wrong one: refused, never shown. */
    assert_null(store_redis_open(&cfg, &err));
    assert_non_null(strstr(err, "NOAUTH"));
    free(err);
    cfg.store_password = wrong;
    assert_null(store_redis_open(&cfg, &err));
    assert_non_null(strstr(err, "AUTH refused"));
    assert_null(strstr(err, wrong));
    free(err);
    cfg.store_password = right;
    struct store *s = store_redis_open(&cfg, &err);
    if (s == NULL)
        fail_msg("open with the password: %s", err);
    assert_int_equal(store_ping(s), STORE_OK);
    store_close(s);
    raw_ok(f, "AUTH %s", "pw-for-tests");
    raw_ok(f, "CONFIG SET requirepass %s", "");
}

/* DESIGN §7b: no acknowledged write lost needs appendonly + always. */
static void test_durability(void **state)
{
    struct fixture *f = *state;
    char detail[128];
    assert_int_equal(store_redis_durability(f->s, detail, sizeof(detail)), 0);
    assert_non_null(strstr(detail, "appendonly no"));
    raw_ok(f, "CONFIG SET appendonly yes");
    raw_ok(f, "CONFIG SET appendfsync always");
    assert_int_equal(store_redis_durability(f->s, detail, sizeof(detail)), 1);
    assert_string_equal(detail, "appendonly yes, appendfsync always");
    raw_ok(f, "CONFIG SET appendfsync everysec");
    assert_int_equal(store_redis_durability(f->s, detail, sizeof(detail)), 0);
    raw_ok(f, "CONFIG SET appendonly no");
}

/* --- the key layout (store_redis.h) -------------------------------------- */

static void hash_field_is(struct fixture *f, const char *key, const char *field, const char *want)
{
    redisReply *r = raw(f, "HGET %s %s", key, field);
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, want) != 0)
        fail_msg("%s %s: want \"%s\", got \"%s\"", key, field, want,
                 r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
    freeReplyObject(r);
}

static void key_type_is(struct fixture *f, const char *key, const char *want)
{
    redisReply *r = raw(f, "TYPE %s", key);
    if (strcmp(r->str, want) != 0)
        fail_msg("%s: want type %s, got %s", key, want, r->str);
    freeReplyObject(r);
}

static void test_key_layout(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    struct store_tenant a = tenant("ag", "", 7, 8), t = tenant("sub", "ag", 0, 0);
    a.feature_agency = true;
    assert_int_equal(store_tenant_create(s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    struct store_key k = {.id = "k_1", .tenant_id = "sub", .label = "l", .created_at_ms = 5};
    assert_int_equal(store_key_create(s, &k), STORE_OK);
    struct store_connection c = connection("c_1", "sub", P_OPENAI, 3);
    assert_int_equal(store_connection_create(s, &c), STORE_OK);
    struct store_byok b = {.enabled = true};
    snprintf(b.slots[S_OPENAI], ID_MAX, "c_1");
    assert_int_equal(store_byok_put(s, "sub", &b), STORE_OK);
    unsigned char sealed[20] = {1};
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 1, sealed, sizeof(sealed)), STORE_OK);
    struct usage_record r = record("u_1", "sub", "ag", 1234, 3, false);
    snprintf(r.session_id, sizeof(r.session_id), "conv-1");
    assert_int_equal(store_usage_write(s, &r, 1, NULL, NULL), STORE_OK);

    hash_field_is(f, "byok:{t:ag}:tenant", "plan", "4");
    hash_field_is(f, "byok:{t:ag}:tenant", "wallet", "8");
    hash_field_is(f, "byok:{t:ag}:tenant", "agency", "1");
    hash_field_is(f, "byok:{t:sub}:tenant", "parent", "ag");
    key_type_is(f, "byok:{t:ag}:subs", "set");
    key_type_is(f, "byok:tenants", "set");
    key_type_is(f, "byok:{t:sub}:keys", "zset");
    hash_field_is(f, "byok:{t:sub}:key:k_1", "label", "l");
    redisReply *x = raw(f, "GET byok:key:k_1");
    assert_string_equal(x->str, "sub");
    freeReplyObject(x);
    key_type_is(f, "byok:{t:sub}:conns", "zset");
    hash_field_is(f, "byok:{t:sub}:conn:c_1", "provider", "openai");
    x = raw(f, "GET byok:conn:c_1");
    assert_string_equal(x->str, "sub");
    freeReplyObject(x);
    hash_field_is(f, "byok:{t:sub}:byok", "slot:openai", "c_1");
    key_type_is(f, "byok:cref:c_1", "set");
    hash_field_is(f, "byok:secret:proxy_key_hash", "version", "1");
    key_type_is(f, "byok:secrets", "set");
    key_type_is(f, "byok:rec:u_1", "string");
    key_type_is(f, "byok:usage", "stream");
    key_type_is(f, "byok:usage:ts", "zset");
    key_type_is(f, "byok:{t:sub}:usage", "zset");
    key_type_is(f, "byok:usage:session:conv-1", "zset");
    char buf[64];
    assert_int_equal(store_redis_tenant_key(buf, sizeof(buf), "ag", "holds"), 0);
    assert_string_equal(buf, "byok:{t:ag}:holds");
    assert_int_equal(store_redis_tenant_key(buf, 10, "ag", "holds"), -1);
}

/* --- usage: the stream, partial batches, compare-and-set ------------------ */

/* Every record is appended once to byok:usage, with the stored text. */
static void test_usage_stream(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    struct usage_record b[2] = {record("u1", "t1", "t1", 1000, 30, false),
                                record("u2", "t1", "t1", 1001, 0, true)};
    struct usage_record_lines lines = {0};
    assert_int_equal(store_usage_write(f->s, b, 2, NULL, &lines), STORE_OK);
    assert_int_equal(store_usage_write(f->s, b, 2, NULL, NULL), STORE_OK); /* duplicates */
    redisReply *r = raw(f, "XRANGE byok:usage - +");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    for (size_t i = 0; i < 2; i++) {
        redisReply *fields = r->element[i]->element[1];
        assert_int_equal(fields->elements, 4);
        assert_string_equal(fields->element[0]->str, "id");
        assert_string_equal(fields->element[1]->str, b[i].id);
        assert_string_equal(fields->element[2]->str, "record");
        char *line = nth_line(&lines, 0, i);
        assert_string_equal(fields->element[3]->str, line);
        free(line);
    }
    freeReplyObject(r);
    usage_record_lines_free(&lines);
    balances(f->s, "t1", 0, 70);
}

/* The number of record script calls Redis ran so far (INFO commandstats). */
static long long evalsha_calls(struct fixture *f)
{
    redisReply *r = raw(f, "INFO commandstats");
    assert_non_null(r->str);
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = p != NULL ? strtoll(p + strlen("cmdstat_evalsha:calls="), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

static long long raw_int(struct fixture *f, const char *fmt, const char *arg)
{
    redisReply *r = raw(f, fmt, arg);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The shared lines case, then a batch that fails half-way: Redis commits
 * a payer's records of a batch in one step (one script call) and the
 * payers one after another, so the records of the payers that went
 * through are committed, their lines given back, every record left as
 * passed in; the retried batch charges only the rest. */
static void test_usage_lines(void **state)
{
    struct fixture *f = *state;
    struct usage_record_lines lines;
    usage_lines_body(state, &lines);
    struct store_tenant t2 = tenant("t2", "", 0, 50);
    assert_int_equal(store_tenant_create(f->s, &t2), STORE_OK);
    size_t dups = 99, before = lines.len;
    long long xlen = raw_int(f, "XLEN %s", "byok:usage");
    /* A hold key of the wrong type makes t1's call fail at its first
     * write: nothing of t1's records is written; t2's go through. */
    raw_ok(f, "SET byok:{t:t1}:holds broken");
    struct usage_record bad[5] = {
        record("u4", "t1", "t1", 1003, 5, false), record("v1", "t2", "t2", 1003, 4, false),
        record("u5", "t1", "t1", 1004, 7, false), record("u6", "t1", "t1", 1005, 1, false),
        record("v2", "t2", "t2", 1006, 2, false)};
    snprintf(bad[2].hold_id, sizeof(bad[2].hold_id), "h5");
    bad[0].charged_wallet_micros = -3;
    bad[1].charged_wallet_micros = -4;
    assert_int_equal(store_usage_write(f->s, bad, 5, &dups, &lines), STORE_ERR_INTERNAL);
    const char *committed[] = {"v1", "v2"};
    for (size_t i = 0; i < 2; i++) {
        char *line = nth_line(&lines, before, i);
        assert_non_null(line);
        char *row = case_stored_text(state, committed[i]);
        assert_string_equal(line, row);
        assert_non_null(strstr(line, i == 0 ? "\"wallet_micros\":4}" : "\"wallet_micros\":2}"));
        free(row);
        free(line);
    }
    assert_null(nth_line(&lines, before, 2));
    assert_int_equal(bad[0].charged_wallet_micros, -3); /* as passed in */
    assert_int_equal(bad[1].charged_wallet_micros, -4);
    assert_int_equal(bad[3].charged_wallet_micros, 0);
    balances(f->s, "t1", 0, 75);
    balances(f->s, "t2", 0, 44);
    const char *none[] = {"u4", "u5", "u6"};
    for (size_t i = 0; i < ARRAY_SIZE(none); i++)
        assert_int_equal(raw_int(f, "EXISTS byok:rec:%s", none[i]), 0);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), xlen + 2);
    assert_int_equal(raw_int(f, "ZCARD %s", "byok:{t:t1}:usage"), xlen);

    raw_ok(f, "DEL byok:{t:t1}:holds");
    before = lines.len;
    assert_int_equal(store_usage_write(f->s, bad, 5, &dups, &lines), STORE_OK);
    assert_int_equal(dups, 2);
    const char *now[] = {"u4", "u5", "u6"};
    for (size_t i = 0; i < ARRAY_SIZE(now); i++) {
        char *line = nth_line(&lines, before, i);
        assert_non_null(line);
        char *row = case_stored_text(state, now[i]);
        assert_string_equal(line, row);
        free(row);
        free(line);
    }
    assert_null(nth_line(&lines, before, 3));
    balances(f->s, "t1", 0, 62);
    balances(f->s, "t2", 0, 44);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), xlen + 5);
    usage_record_lines_free(&lines);
}

/* One call of the record script, raw: payer's keys, then per record its
 * mark and {t:<payer>}:usage (no sessions); args: 11 per record. */
static redisReply *record_call(struct fixture *f, const char *payer, const char *const *marks,
                               size_t n, const char *const *args, size_t nrec)
{
    assert_int_equal(n, nrec);
    struct redis_cmd cmd = {0};
    struct redis_conn *c = store_redis_conn(f->s);
    redis_cmd_evalsha(&cmd, store_redis_script(STORE_REDIS_SCRIPT_RECORD), (int)(5 + 2 * n));
    redis_cmd_str(&cmd, "byok:usage");
    redis_cmd_str(&cmd, "byok:usage:ts");
    redis_cmd_fmt(&cmd, "byok:{t:%s}:tenant", payer);
    redis_cmd_fmt(&cmd, "byok:{t:%s}:holds", payer);
    redis_cmd_fmt(&cmd, "byok:{t:%s}:holdamt", payer);
    for (size_t i = 0; i < n; i++) {
        redis_cmd_str(&cmd, marks[i]);
        redis_cmd_fmt(&cmd, "byok:{t:%s}:usage", payer);
    }
    for (size_t i = 0; i < 11 * nrec; i++)
        redis_cmd_str(&cmd, args[i]);
    redisReply *r =
        redis_conn_eval(c, store_redis_script(STORE_REDIS_SCRIPT_RECORD), &cmd, "test record");
    redis_cmd_free(&cmd);
    assert_non_null(r);
    return r;
}

/* A batch whose payer chain is broken by a duplicate (u1 was recorded
 * before, so u2 expects balances u1 never left): the script refuses u2
 * (compare-and-set), C computes it again from what Redis answered, and the
 * money is exact. */
static void test_usage_cas_retry(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 50, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    struct usage_record u1 = record("u1", "t1", "t1", 1000, 30, false);
    assert_int_equal(store_usage_write(f->s, &u1, 1, NULL, NULL), STORE_OK);
    balances(f->s, "t1", 20, 100);

    uint64_t before = store_redis_cas_conflicts();
    struct usage_record b[3] = {record("u1", "t1", "t1", 1000, 30, false),
                                record("u2", "t1", "t1", 1001, 40, false),
                                record("u3", "t1", "t1", 1002, 5, false)};
    size_t dups;
    assert_int_equal(store_usage_write(f->s, b, 3, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 1);
    assert_true(store_redis_cas_conflicts() > before);
    assert_int_equal(b[1].charged_plan_credits_micros, 20);
    assert_int_equal(b[1].charged_wallet_micros, 20);
    assert_int_equal(b[2].charged_plan_credits_micros, 0);
    assert_int_equal(b[2].charged_wallet_micros, 5);
    balances(f->s, "t1", 0, 75);

    /* A topup between the read and the script: the script answers the
     * balances it found and changes nothing. */
    const char *keys[] = {"byok:rec:u9"};
    const char *args[] = {"u9", "{}", "1003", "", "exact", "0", "80", "0", "70", "-10", "0"};
    redisReply *r = record_call(f, "t1", keys, 1, args, 1);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    const redisReply *e = r->element[0];
    assert_int_equal(e->type, REDIS_REPLY_ARRAY);
    assert_string_equal(e->element[0]->str, "conflict");
    assert_string_equal(e->element[1]->str, "0");
    assert_string_equal(e->element[2]->str, "75");
    freeReplyObject(r);
    assert_int_equal(raw_int(f, "EXISTS %s", "byok:rec:u9"), 0);
    balances(f->s, "t1", 0, 75);

    /* A wallet that would leave int64 stays at its floor (charge.h): the
     * script refuses the delta, the record goes again in exact mode. */
    struct store_tenant low = tenant("low", "", 0, INT64_MIN + 5);
    assert_int_equal(store_tenant_create(f->s, &low), STORE_OK);
    struct usage_record sat = record("s1", "low", "low", 1000, 10, false);
    assert_int_equal(store_usage_write(f->s, &sat, 1, NULL, NULL), STORE_OK);
    assert_int_equal(sat.charged_wallet_micros, 10);
    balances(f->s, "low", 0, INT64_MIN);

    /* A payer deleted between the read and the charge: recorded uncharged. */
    struct usage_record g = record("g1", "gone", "gone", 1000, 10, false);
    assert_int_equal(store_usage_write(f->s, &g, 1, NULL, NULL), STORE_OK);
    assert_int_equal(g.charged_wallet_micros, 0);
}

/* In one call the wallet is followed exactly until a delta moves it: a
 * record that needs it exactly after that (an "exact" one, a conflict,
 * whose answer carries it) answers "retry", nothing done, and goes first
 * in the next round. Before any delta a conflict carries the balances. */
static void test_record_script_retry(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    const char *marks[] = {"byok:rec:a1", "byok:rec:a2", "byok:rec:a3", "byok:rec:a4"};
    const char *args[] = {
        "a1",
        "{\"id\":\"a1\"}",
        "1000",
        "",
        "plan",
        "0",
        "100",
        "0",
        "95",
        "-5",
        "0",
        /* expects the wallet a1 leaves: not known exactly any more */
        "a2",
        "{\"id\":\"a2\"}",
        "1001",
        "",
        "exact",
        "0",
        "95",
        "0",
        "90",
        "0",
        "0",
        /* plan credits not what it expects: a conflict, after a delta */
        "a3",
        "{\"id\":\"a3\"}",
        "1002",
        "",
        "plan",
        "7",
        "95",
        "0",
        "90",
        "-5",
        "0",
        "a4",
        "{\"id\":\"a4\"}",
        "1003",
        "",
        "plan",
        "0",
        "95",
        "0",
        "85",
        "-10",
        "0",
    };
    redisReply *r = record_call(f, "t1", marks, 4, args, 4);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_string_equal(r->element[0]->str, "ok");
    assert_string_equal(r->element[1]->str, "retry");
    assert_string_equal(r->element[2]->str, "retry");
    assert_string_equal(r->element[3]->str, "ok");
    freeReplyObject(r);
    balances(f->s, "t1", 0, 85);
    assert_int_equal(raw_int(f, "EXISTS %s", "byok:rec:a2"), 0);
    assert_int_equal(raw_int(f, "EXISTS %s", "byok:rec:a3"), 0);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), 2);

    /* First in its call, the exact record compares both balances; the
     * conflict after it (no delta since) carries them. */
    const char *args2[] = {
        "a2", "{\"id\":\"a2\"}", "1001", "", "exact", "0", "85", "0", "80", "0",  "0",
        "a3", "{\"id\":\"a3\"}", "1002", "", "plan",  "7", "80", "0", "75", "-5", "0",
    };
    r = record_call(f, "t1", marks + 1, 2, args2, 2);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "ok");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_ARRAY);
    assert_string_equal(r->element[1]->element[0]->str, "conflict");
    assert_string_equal(r->element[1]->element[1]->str, "0");
    assert_string_equal(r->element[1]->element[2]->str, "80");
    freeReplyObject(r);
    balances(f->s, "t1", 0, 80);

    /* One id twice in a call: the second is a duplicate. */
    const char *marks3[] = {"byok:rec:a5", "byok:rec:a5"};
    const char *args3[] = {
        "a5", "{\"id\":\"a5\"}", "1004", "", "plan", "0", "80", "0", "79", "-1", "0",
        "a5", "{\"id\":\"a5\"}", "1004", "", "plan", "0", "79", "0", "78", "-1", "0",
    };
    r = record_call(f, "t1", marks3, 2, args3, 2);
    assert_string_equal(r->element[0]->str, "ok");
    assert_string_equal(r->element[1]->str, "duplicate");
    freeReplyObject(r);
    balances(f->s, "t1", 0, 79);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), 4);
}

static int64_t raw_hold_amounts(struct fixture *f, const char *payer, int64_t *total_field);

/* What records b[0 .. n) were charged, plan credits and wallet. */
static int64_t charged_sum(const struct usage_record *b, size_t n)
{
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += b[i].charged_plan_credits_micros + b[i].charged_wallet_micros;
    return sum;
}

/* A batch is one script call per payer and 32 records: 152 records of p1
 * (some of its subaccount "sub") and 38 of p2, interleaved, with holds (two
 * records naming one), sessions, BYOK lines and ids twice in the batch.
 * Money, holds, marks, the stream and the indexes are as one call per
 * record left them; the batch replayed (a spool after a crash) changes
 * nothing; a batch half replayed charges only its new half. */
static void test_usage_batch_calls(void **state)
{
    struct fixture *f = *state;
    struct store_tenant p1 = tenant("p1", "", 300, 100000), p2 = tenant("p2", "", 0, 5000);
    assert_int_equal(store_tenant_create(f->s, &p1), STORE_OK);
    assert_int_equal(store_tenant_create(f->s, &p2), STORE_OK);
    enum store_redis_admit res;
    char hid[32];
    for (int i = 0; i < 6; i++) {
        snprintf(hid, sizeof(hid), "hp1-%d", i); /* hp1-5: no record settles it */
        assert_int_equal(store_redis_admit(f->s, "p1", hid, 100, 60000, &res, NULL), STORE_OK);
        assert_int_equal(res, STORE_REDIS_ADMITTED);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(hid, sizeof(hid), "hp2-%d", i);
        assert_int_equal(store_redis_admit(f->s, "p2", hid, 50, 60000, &res, NULL), STORE_OK);
    }

    enum { UNIQUE = 190, N = UNIQUE + 6 };
    struct usage_record *b = calloc(N, sizeof(*b));
    assert_non_null(b);
    int p1_holds = 0, p2_holds = 0, sessions = 0;
    for (int i = 0; i < UNIQUE; i++) {
        char id[32];
        snprintf(id, sizeof(id), "b%03d", i);
        bool on_p2 = i % 5 == 4;
        const char *tenant_id = on_p2 ? "p2" : i % 7 == 0 ? "sub" : "p1";
        b[i] = record(id, tenant_id, on_p2 ? "p2" : "p1", 2000 + i, 1 + i % 9, i % 17 == 0);
        if (i % 3 == 0) {
            snprintf(b[i].session_id, sizeof(b[i].session_id), "s-%d", i % 4);
            sessions++;
        }
        if (!on_p2 && p1_holds < 6) { /* hp1-0 twice, hp1-1..4 once */
            snprintf(b[i].hold_id, sizeof(b[i].hold_id), "hp1-%d",
                     p1_holds == 0 ? 0 : p1_holds - 1);
            p1_holds++;
        } else if (on_p2 && p2_holds < 3) {
            snprintf(b[i].hold_id, sizeof(b[i].hold_id), "hp2-%d", p2_holds);
            p2_holds++;
        }
    }
    for (int i = UNIQUE; i < N; i++) { /* again, other costs: not charged */
        b[i] = b[(i - UNIQUE) * 31];
        b[i].cost_micros += 1000;
    }
    int64_t want1 = 0, want2 = 0;
    for (int i = 0; i < UNIQUE; i++)
        if (!b[i].billed_byok)
            *(strcmp(b[i].payer_id, "p2") == 0 ? &want2 : &want1) += b[i].cost_micros;

    /* Loaded (setup flushed the scripts): no NOSCRIPT round. */
    assert_int_equal(
        redis_conn_load(store_redis_conn(f->s), store_redis_script(STORE_REDIS_SCRIPT_RECORD)), 0);
    uint64_t conflicts = store_redis_cas_conflicts();
    long long calls = evalsha_calls(f);
    size_t dups = 99;
    struct usage_record_lines lines = {0};
    assert_int_equal(store_usage_write(f->s, b, N, &dups, &lines), STORE_OK);
    assert_int_equal(dups, N - UNIQUE);
    /* p1: 4 x 32 + 24 records, p2: 32 + 6 - one round, no conflict. */
    assert_int_equal(evalsha_calls(f) - calls, 7);
    assert_int_equal(store_redis_cas_conflicts(), conflicts);
    assert_int_equal(charged_sum(b, UNIQUE), want1 + want2);
    for (int i = UNIQUE; i < N; i++)
        assert_int_equal(b[i].charged_plan_credits_micros + b[i].charged_wallet_micros, 0);
    balances(f->s, "p1", 0, 100000 - (want1 - 300));
    balances(f->s, "p2", 0, 5000 - want2);
    int64_t held;
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 100); /* hp1-5 */
    assert_int_equal(store_redis_held(f->s, "p2", &held), STORE_OK);
    assert_int_equal(held, 0);
    int64_t field;
    assert_int_equal(raw_hold_amounts(f, "p1", &field), 100);
    assert_int_equal(field, 100);

    /* Once each in the stream, with the stored text, a payer's records in
     * batch order; the lines given back in batch order too. */
    redisReply *x = raw(f, "XRANGE byok:usage - +");
    assert_int_equal(x->elements, UNIQUE);
    int last_p1 = -1, last_p2 = -1;
    for (size_t i = 0; i < x->elements; i++) {
        redisReply *fields = x->element[i]->element[1];
        const char *id = fields->element[1]->str;
        int k = atoi(id + 1);
        assert_string_equal(b[k].id, id);
        int *last = strcmp(b[k].payer_id, "p2") == 0 ? &last_p2 : &last_p1;
        assert_true(k > *last);
        *last = k;
        char *row = case_stored_text(state, id);
        assert_string_equal(fields->element[3]->str, row);
        char *line = nth_line(&lines, 0, (size_t)k);
        assert_string_equal(line, row);
        free(line);
        free(row);
    }
    freeReplyObject(x);
    assert_null(nth_line(&lines, 0, UNIQUE));
    assert_int_equal(raw_int(f, "ZCARD %s", "byok:usage:ts"), UNIQUE);
    long long by_tenant = raw_int(f, "ZCARD %s", "byok:{t:p1}:usage") +
                          raw_int(f, "ZCARD %s", "byok:{t:sub}:usage") +
                          raw_int(f, "ZCARD %s", "byok:{t:p2}:usage");
    assert_int_equal(by_tenant, UNIQUE);
    assert_true(raw_int(f, "ZCARD %s", "byok:{t:sub}:usage") > 0);
    long long by_session = 0;
    for (int i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof(key), "byok:usage:session:s-%d", i);
        by_session += raw_int(f, "ZCARD %s", key);
    }
    assert_int_equal(by_session, sessions);
    json_t *q = NULL;
    assert_int_equal(store_usage_query(f->s, "sub", NULL, 0, &q), STORE_OK);
    assert_int_equal((long long)json_array_size(q), raw_int(f, "ZCARD %s", "byok:{t:sub}:usage"));
    json_decref(q);

    /* Replayed whole: every record a duplicate, nothing moves. */
    for (int i = 0; i < N; i++)
        b[i].charged_plan_credits_micros = b[i].charged_wallet_micros = 0;
    lines.len = 0;
    assert_int_equal(store_usage_write(f->s, b, N, &dups, &lines), STORE_OK);
    assert_int_equal(dups, N);
    assert_int_equal(lines.len, 0);
    assert_int_equal(charged_sum(b, N), 0);
    balances(f->s, "p1", 0, 100000 - (want1 - 300));
    balances(f->s, "p2", 0, 5000 - want2);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), UNIQUE);
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 100);

    /* Half replayed: the first 95 again, then 40 new ones. */
    struct usage_record *h = calloc(135, sizeof(*h));
    assert_non_null(h);
    int64_t new1 = 0, new2 = 0;
    for (int i = 0; i < 135; i++) {
        if (i < 95) {
            h[i] = b[i];
            continue;
        }
        char id[32];
        snprintf(id, sizeof(id), "n%03d", i);
        bool on_p2 = i % 2 == 0;
        h[i] = record(id, on_p2 ? "p2" : "p1", on_p2 ? "p2" : "p1", 3000 + i, 3, false);
        *(on_p2 ? &new2 : &new1) += 3;
    }
    assert_int_equal(store_usage_write(f->s, h, 135, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 95);
    assert_int_equal(charged_sum(h, 135), new1 + new2);
    balances(f->s, "p1", 0, 100000 - (want1 - 300) - new1);
    balances(f->s, "p2", 0, 5000 - want2 - new2);
    assert_int_equal(raw_int(f, "XLEN %s", "byok:usage"), UNIQUE + 40);
    free(h);
    usage_record_lines_free(&lines);
    free(b);
}

#define CHARGE_THREADS 4
#define CHARGE_BATCHES 30
#define CHARGE_BATCH   10

struct charge_arg {
    struct config *cfg;
    int which;
    pthread_barrier_t *barrier;
    int rc;
    int retries; /* batches written again after a give-up */
};

static void *charge_thread(void *p)
{
    struct charge_arg *a = p;
    char *err = NULL;
    struct store *s = store_open_role(a->cfg, STORE_ROLE_CONTROL, &err);
    if (s == NULL) {
        free(err);
        a->rc = -1;
    }
    pthread_barrier_wait(a->barrier);
    for (int b = 0; b < CHARGE_BATCHES && a->rc == 0; b++) {
        struct usage_record recs[CHARGE_BATCH];
        for (int i = 0; i < CHARGE_BATCH; i++) {
            char id[ID_MAX];
            snprintf(id, sizeof(id), "w%d-%d-%d", a->which, b, i);
            /* Plan credits run out part-way: both balances move. */
            recs[i] = record(id, "payer", "payer", 1000 + b, 3 + i % 4, false);
        }
        /* As the writer does: a batch given up (contention past the CAS
         * rounds) is written again; its committed records come back as
         * duplicates, the rest are charged now. */
        size_t dups = 0;
        int tries = 0;
        while (store_usage_write(s, recs, CHARGE_BATCH, &dups, NULL) != STORE_OK && ++tries < 20)
            ;
        if (tries >= 20 || (tries == 0 && dups != 0))
            a->rc = -1;
        a->retries += tries;
        /* Another instance tops up meanwhile. */
        struct store_tenant t;
        if (b % 5 == 0 && store_tenant_topup(s, "payer", 1, 0, &t) != STORE_OK)
            a->rc = -1;
    }
    store_close(s);
    return NULL;
}

/* Several handles (instances) charging one payer at once: Σ charged equals
 * the balance drop exactly, and every record is charged once. */
static void test_usage_concurrent(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("payer", "", 1000, 100000);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, CHARGE_THREADS), 0);
    struct charge_arg args[CHARGE_THREADS];
    pthread_t th[CHARGE_THREADS];
    uint64_t conflicts = store_redis_cas_conflicts();
    for (int i = 0; i < CHARGE_THREADS; i++) {
        args[i] = (struct charge_arg){&f->cfg, i, &barrier, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, charge_thread, &args[i]), 0);
    }
    for (int i = 0; i < CHARGE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].rc, 0);
    }
    pthread_barrier_destroy(&barrier);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, "payer", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), CHARGE_THREADS * CHARGE_BATCHES * CHARGE_BATCH);
    int64_t plan = 0, wallet = 0, cost = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        json_t *ch = json_object_get(rec, "charged");
        plan += json_integer_value(json_object_get(ch, "plan_credits_micros"));
        wallet += json_integer_value(json_object_get(ch, "wallet_micros"));
        cost += json_integer_value(json_object_get(rec, "cost_micros"));
    }
    json_decref(arr);
    int64_t topups = CHARGE_THREADS * (CHARGE_BATCHES / 5);
    assert_int_equal(plan + wallet, cost);
    assert_int_equal(plan, 1000);
    balances(f->s, "payer", 0, 100000 + topups - wallet);
    print_message("concurrent charging: %" PRIu64 " compare-and-set conflicts re-computed\n",
                  store_redis_cas_conflicts() - conflicts);
}

/* --- holds --------------------------------------------------------------- */

#define ADMIT_THREADS 50

struct admit_arg {
    struct config *cfg;
    int which;
    pthread_barrier_t *barrier;
    enum store_redis_admit result;
    int rc;
};

static void *admit_thread(void *p)
{
    struct admit_arg *a = p;
    char *err = NULL;
    struct store *s = store_open_role(a->cfg, STORE_ROLE_CONTROL, &err);
    if (s == NULL) {
        fprintf(stderr, "open: %s\n", err);
        free(err);
        a->rc = -1;
    }
    pthread_barrier_wait(a->barrier); /* all admit at the same instant */
    if (s != NULL) {
        char hold[ID_MAX];
        snprintf(hold, sizeof(hold), "h%d", a->which);
        a->rc = store_redis_admit(s, "p1", hold, 10000, 60000, &a->result, NULL);
    }
    store_close(s);
    return NULL;
}

/* DESIGN §3.4: 50 concurrent new requests against 1 micro-USD admit
 * exactly one, fleet-wide (each thread its own connection: an instance). */
static void test_holds_admit_one_of_50(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("p1", "", 0, 1);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, ADMIT_THREADS), 0);
    struct admit_arg *args = calloc(ADMIT_THREADS, sizeof(*args));
    pthread_t th[ADMIT_THREADS];
    assert_non_null(args);
    for (int i = 0; i < ADMIT_THREADS; i++) {
        args[i] = (struct admit_arg){&f->cfg, i, &barrier, STORE_REDIS_NO_PAYER, 0};
        assert_int_equal(pthread_create(&th[i], NULL, admit_thread, &args[i]), 0);
    }
    int admitted = 0, refused = 0;
    for (int i = 0; i < ADMIT_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].rc, STORE_OK);
        admitted += args[i].result == STORE_REDIS_ADMITTED;
        refused += args[i].result == STORE_REDIS_NO_FUNDS;
    }
    pthread_barrier_destroy(&barrier);
    free(args);
    assert_int_equal(admitted, 1);
    assert_int_equal(refused, ADMIT_THREADS - 1);
    int64_t held = 0;
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 10000);
}

static void test_holds_expire_and_release(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("p1", "", 100, 0);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    enum store_redis_admit res;
    int64_t avail = 0;
    assert_int_equal(store_redis_admit(f->s, "p1", "h1", 150, 150, &res, &avail), STORE_OK);
    assert_int_equal(res, STORE_REDIS_ADMITTED);
    assert_int_equal(avail, 100);
    /* A retried admit of the same hold takes nothing more. */
    assert_int_equal(store_redis_admit(f->s, "p1", "h1", 150, 150, &res, &avail), STORE_OK);
    assert_int_equal(res, STORE_REDIS_ADMITTED);
    int64_t held;
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 150);
    assert_int_equal(store_redis_admit(f->s, "p1", "h2", 1, 60000, &res, &avail), STORE_OK);
    assert_int_equal(res, STORE_REDIS_NO_FUNDS);
    assert_int_equal(avail, -50);
    /* A dead instance's hold expires (Redis's clock): funds come back. */
    redis_server_sleep_ms(300);
    assert_int_equal(store_redis_admit(f->s, "p1", "h2", 30, 60000, &res, &avail), STORE_OK);
    assert_int_equal(res, STORE_REDIS_ADMITTED);
    assert_int_equal(avail, 100);
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 30);
    redisReply *r = raw(f, "PTTL byok:{t:p1}:holds");
    assert_true(r->integer > 0 && r->integer <= 60000); /* an idle payer's holds vanish */
    freeReplyObject(r);

    bool released = false;
    assert_int_equal(store_redis_release(f->s, "p1", "h2", &released), STORE_OK);
    assert_true(released);
    assert_int_equal(store_redis_release(f->s, "p1", "h2", &released), STORE_OK);
    assert_false(released);
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 0);
    assert_int_equal(store_redis_admit(f->s, "nobody", "h3", 1, 1000, &res, NULL), STORE_OK);
    assert_int_equal(res, STORE_REDIS_NO_PAYER);
}

/* Sum of the amounts in holdamt (its running total field aside), read raw. */
static int64_t raw_hold_amounts(struct fixture *f, const char *payer, int64_t *total_field)
{
    redisReply *r = raw(f, "HGETALL byok:{t:%s}:holdamt", payer);
    int64_t sum = 0;
    *total_field = -1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        if (strcmp(r->element[i]->str, "=sum") == 0)
            *total_field = strtoll(r->element[i + 1]->str, NULL, 10);
        else
            sum += strtoll(r->element[i + 1]->str, NULL, 10);
    }
    freeReplyObject(r);
    return sum;
}

/* The payer's held total is kept as holds come and go (admit, release, a
 * record that settles one, expiry), so an admission does not sum every
 * hold; a total missing beside holds is summed once. */
static void test_holds_running_total(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("p2", "", 0, 1000000000);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    enum store_redis_admit res;
    char id[32];
    int64_t expect = 0, held, field;
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "h%d", i);
        int64_t amt = (int64_t)(i % 10) * 137; /* some holds are 0 */
        assert_int_equal(
            store_redis_admit(f->s, "p2", id, amt, i % 5 == 0 ? 1000 : 60000, &res, NULL),
            STORE_OK);
        assert_int_equal(res, STORE_REDIS_ADMITTED);
        expect += amt;
    }
    assert_int_equal(store_redis_held(f->s, "p2", &held), STORE_OK);
    assert_int_equal(held, expect);
    /* Every third released, twice (the second does nothing). */
    for (int i = 1; i < 300; i += 3) {
        snprintf(id, sizeof(id), "h%d", i);
        for (int k = 0; k < 2; k++)
            assert_int_equal(store_redis_release(f->s, "p2", id, NULL), STORE_OK);
        expect -= (int64_t)(i % 10) * 137;
    }
    /* Records settle h2, h8, h14, ... (not released above). */
    for (int i = 2; i < 300; i += 6) {
        snprintf(id, sizeof(id), "u-h%d", i);
        struct usage_record r = record(id, "p2", "p2", 1000, 3, false);
        snprintf(r.hold_id, sizeof(r.hold_id), "h%d", i);
        assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
        expect -= (int64_t)(i % 10) * 137;
    }
    assert_int_equal(store_redis_held(f->s, "p2", &held), STORE_OK);
    assert_int_equal(held, expect);
    assert_int_equal(raw_hold_amounts(f, "p2", &field), expect);
    assert_int_equal(field, expect);
    /* The 1 s holds expire (Redis's clock): off the total. */
    redis_server_sleep_ms(1200);
    for (int i = 0; i < 300; i += 5) {
        bool gone_before = (i % 3 == 1) || (i % 6 == 2);
        if (!gone_before)
            expect -= (int64_t)(i % 10) * 137;
    }
    assert_int_equal(store_redis_held(f->s, "p2", &held), STORE_OK);
    assert_int_equal(held, expect);
    assert_int_equal(raw_hold_amounts(f, "p2", &field), expect);
    assert_int_equal(field, expect);
    /* A total lost (or never written) is summed again from the holds. */
    freeReplyObject(raw(f, "HDEL byok:{t:p2}:holdamt =sum"));
    assert_int_equal(store_redis_held(f->s, "p2", &held), STORE_OK);
    assert_int_equal(held, expect);
    assert_int_equal(raw_hold_amounts(f, "p2", &field), expect);
    assert_int_equal(field, expect);
}

/* The record releases its hold and charges its cost in one step: available
 * funds never jump up in between. */
static void test_record_releases_hold(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("p1", "", 0, 1000);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    enum store_redis_admit res;
    int64_t avail;
    assert_int_equal(store_redis_admit(f->s, "p1", "h1", 10000, 60000, &res, NULL), STORE_OK);
    assert_int_equal(res, STORE_REDIS_ADMITTED);
    assert_int_equal(store_redis_admit(f->s, "p1", "h2", 10000, 60000, &res, &avail), STORE_OK);
    assert_int_equal(res, STORE_REDIS_NO_FUNDS);
    assert_int_equal(avail, -9000);

    struct usage_record r = record("u1", "p1", "p1", 1000, 300, false);
    snprintf(r.hold_id, sizeof(r.hold_id), "h1");
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
    int64_t held;
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 0);
    balances(f->s, "p1", 0, 700);
    /* The hold id is not part of the record. */
    char *text = case_stored_text(state, "u1");
    assert_null(strstr(text, "h1"));
    free(text);

    /* A duplicate does nothing at all, not even release a hold it names. */
    assert_int_equal(store_redis_admit(f->s, "p1", "h3", 50, 60000, &res, NULL), STORE_OK);
    snprintf(r.hold_id, sizeof(r.hold_id), "h3");
    size_t dups;
    assert_int_equal(store_usage_write(f->s, &r, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 1);
    assert_int_equal(store_redis_held(f->s, "p1", &held), STORE_OK);
    assert_int_equal(held, 50);
    balances(f->s, "p1", 0, 700);
}

/* --- failures and recovery ----------------------------------------------- */

/* Redis restarted (or failed over): the next call fails, the one after
 * reconnects; the scripts are loaded again where Redis lost them. */
static void test_reconnect(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 10);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    uint64_t reconnects = redis_conn_reconnects();
    redisFree(f->raw);
    f->raw = NULL;
    redis_server_stop(&srv);
    assert_int_equal(store_ping(f->s), STORE_ERR_INTERNAL);
    assert_int_equal(store_tenant_get(f->s, "t1", &t), STORE_ERR_INTERNAL); /* still down */
    assert_int_equal(redis_server_start(&srv), 0);
    assert_int_equal(store_ping(f->s), STORE_OK);
    assert_true(redis_conn_reconnects() > reconnects);
    /* Nothing was saved (--save ''): a fresh store, scripts unknown. */
    assert_int_equal(store_tenant_get(f->s, "t1", &t), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    struct usage_record r = record("u1", "t1", "t1", 1000, 4, false);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
    balances(f->s, "t1", 0, 6);
    f->raw = redis_server_connect(&srv);
    assert_non_null(f->raw);
}

/* An operation that gives up half-way through its pipeline (out of
 * memory formatting a record...) leaves commands queued, maybe not even
 * sent: they never run later, and no later caller reads their replies. */
static void test_abandoned_pipeline(void **state)
{
    struct fixture *f = *state;
    struct redis_conn *c = store_redis_conn(f->s);
    struct redis_cmd cmd = {0};
    redis_cmd_start(&cmd);
    redis_cmd_str(&cmd, "SET");
    redis_cmd_str(&cmd, "byok:abandoned");
    redis_cmd_str(&cmd, "1");
    assert_int_equal(redis_conn_append(c, &cmd), 0);
    /* ... and the operation gives up without reading. */
    assert_int_equal(store_ping(f->s), STORE_OK);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->s, "nobody", &t), STORE_ERR_NOT_FOUND);
    redisReply *r = raw(f, "EXISTS byok:abandoned");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redis_cmd_free(&cmd);
}

/* A failover demotes the primary: READONLY answers make the handle connect
 * again before its next command (to whatever the address leads to now). */
static void test_readonly_reconnects(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 10);
    raw_ok(f, "REPLICAOF 127.0.0.1 %d", redis_server_free_port());
    assert_int_equal(store_tenant_create(f->s, &t), STORE_ERR_INTERNAL);
    struct usage_record r = record("u1", "t1", "t1", 1000, 0, true);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_ERR_INTERNAL);
    raw_ok(f, "REPLICAOF NO ONE");
    uint64_t reconnects = redis_conn_reconnects();
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    assert_true(redis_conn_reconnects() > reconnects);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
}

/* SCRIPT FLUSH (or a failover to a replica without the scripts): EVALSHA
 * answers NOSCRIPT, the script is loaded again, the call goes through. */
static void test_script_reload(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    raw_ok(f, "SCRIPT FLUSH");
    struct usage_record b[3] = {record("u1", "t1", "t1", 1000, 1, false),
                                record("u2", "t1", "t1", 1001, 2, false),
                                record("u3", "t1", "t1", 1002, 3, false)};
    assert_int_equal(store_usage_write(f->s, b, 3, NULL, NULL), STORE_OK);
    balances(f->s, "t1", 0, 94);
    raw_ok(f, "SCRIPT FLUSH");
    struct store_tenant out;
    assert_int_equal(store_tenant_topup(f->s, "t1", 6, 0, &out), STORE_OK);
    assert_int_equal(out.wallet_micros, 100);
}

/* A topup that would leave int64 changes nothing. */
static void test_topup_overflow(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", INT64_MAX - 5, 10), out;
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    assert_int_equal(store_tenant_topup(f->s, "t1", 1, 6, &out), STORE_ERR_INTERNAL);
    balances(f->s, "t1", INT64_MAX - 5, 10);
    assert_int_equal(store_tenant_topup(f->s, "t1", 1, 5, &out), STORE_OK);
    assert_int_equal(out.plan_credits_micros, INT64_MAX);
    assert_int_equal(out.wallet_micros, 11);
}

/* Re-sealing while someone writes a connection: nothing is written (the
 * WATCH saw the change), the command can run again. */
static int reseal_and_meddle(void *arg, const char *tenant_id, const char *id,
                             const unsigned char *sealed, size_t sealed_len, int version,
                             unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len,
                             int *out_version)
{
    struct fixture *f = arg;
    if (strcmp(id, "c_1") == 0)
        raw_ok(f, "HSET byok:{t:t1}:conn:c_2 name %s", "renamed meanwhile");
    (void)tenant_id;
    memcpy(out, sealed, sealed_len);
    out[0] ^= 0xff;
    *out_len = sealed_len;
    *out_version = version + 1;
    return 0;
}

static void test_reseal_all(void **state)
{
    struct fixture *f = *state;
    reseal_all_body(state);

    /* Changed under the re-sealing: all or nothing still. */
    struct store_connection c2 = connection("c_4", "t2", P_OPENAI, 0x44), got;
    assert_int_equal(store_connection_create(f->s, &c2), STORE_OK);
    size_t count = 99;
    assert_int_equal(store_reseal_all(f->s, reseal_and_meddle, f, &count), STORE_ERR_INTERNAL);
    assert_int_equal(count, 0);
    assert_int_equal(store_connection_get(f->s, "t2", "c_4", &got), STORE_OK);
    assert_int_equal(got.key_version, 1);
    assert_int_equal(got.sealed[0], 0x44);
    assert_int_equal(store_connection_get(f->s, "t1", "c_2", &got), STORE_OK);
    assert_string_equal(got.name, "renamed meanwhile");
    assert_int_equal(got.key_version, 2);

    /* Nothing to re-seal: an empty store commits zero records. */
    raw_ok(f, "FLUSHALL");
    struct reseal_arg a = {0};
    assert_int_equal(store_reseal_all(f->s, reseal_invert, &a, &count), STORE_OK);
    assert_int_equal(count, 0);
    assert_int_equal(a.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_with_subaccounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topup_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_charging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_subaccount_payer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_missing_payer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_batch_many_payers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_charge_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_cas_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_script_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_batch_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cross_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byok_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_delete_clears_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reseal_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_admit_one_of_50, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_expire_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_running_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_releases_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandoned_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
