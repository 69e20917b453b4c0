/* test_fleet.c - a worker's questions to Redis in fleet mode (fleet.h)
 * against a real redis-server, on an event loop: 50 admissions at once
 * against 1 micro-USD admit one; a released hold admits the next; live
 * leases counted against the tenant's and the agency owner's limits,
 * released, and dropped once expired (an instance that died); an
 * admission and a lease in one step (funds first, then limits, neither
 * taken at a limit); pins first
 * come first served with a sliding TTL; single-use values; a Redis that is
 * down answers FLEET_DOWN at once. */
#include "common.h"
#include "config.h"
#include "fleet.h"
#include "store.h"
#include "store_redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "redis_server_test.h"

struct fixture {
    struct redis_server srv;
    char url[64];
    struct config cfg;
    struct store *admin;
    struct event_base *base;
    struct fleet *f;
};

struct tally {
    struct event_base *base;
    int want, got;
    int status[160];
    bool owner[160];
};

static void on_admit(void *arg, enum fleet_status st, int64_t available)
{
    (void)available;
    struct tally *t = arg;
    t->status[t->got++] = st;
    if (t->got >= t->want)
        event_base_loopbreak(t->base);
}

static int64_t last_available;

static void on_funds(void *arg, enum fleet_status st, int64_t available)
{
    last_available = available;
    on_admit(arg, st, available);
}

static void on_live(void *arg, enum fleet_status st, bool owner)
{
    struct tally *t = arg;
    t->owner[t->got] = owner;
    t->status[t->got++] = st;
    if (t->got >= t->want)
        event_base_loopbreak(t->base);
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void run(struct event_base *base, int ms)
{
    struct event *t = evtimer_new(base, give_up, base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    event_base_dispatch(base);
    event_free(t);
}

static void wait_up(struct fixture *f)
{
    for (int i = 0; i < 500 && !fleet_up(f->f); i++)
        run(f->base, 10);
    assert_true(fleet_up(f->f));
}

static void add_tenant(struct fixture *f, const char *id, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "%s", id);
    t.wallet_micros = wallet;
    assert_int_equal(store_tenant_create(f->admin, &t), STORE_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(redis_server_start(&f->srv), 0);
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d/0", f->srv.port);
    f->cfg.store_backend = "redis";
    f->cfg.store_url = f->url;
    f->cfg.store_connect_timeout_ms = 1000;
    f->cfg.store_timeout_ms = 2000;
    f->cfg.balance.hold_ttl_s = 900;
    char *err = NULL;
    f->admin = store_open_role(&f->cfg, STORE_ROLE_CONTROL, &err);
    if (f->admin == NULL)
        fail_msg("open: %s", err);
    f->base = event_base_new();
    f->f = fleet_new(f->base, &f->cfg, "test");
    assert_non_null(f->f);
    wait_up(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fleet_free(f->f);
    event_base_free(f->base);
    store_close(f->admin);
    redis_server_destroy(&f->srv);
    free(f);
    return 0;
}

static void test_admission(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "p", 1);
    struct tally t = {.base = f->base, .want = 50};
    struct fleet_admission *req;
    char id[32];
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "h%d", i);
        assert_int_equal(fleet_admit(f->f, "p", id, 10000, on_admit, &t, &req), FLEET_PENDING);
    }
    run(f->base, 5000);
    assert_int_equal(t.got, 50);
    int ok = 0, refused = 0;
    for (int i = 0; i < 50; i++) {
        ok += t.status[i] == FLEET_OK;
        refused += t.status[i] == FLEET_NO_FUNDS;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(refused, 49);
    int64_t held = 0;
    assert_int_equal(store_redis_held(f->admin, "p", &held), STORE_OK);
    assert_int_equal(held, 10000);
    /* The admitted one releases its hold (no record): the next is admitted. */
    int first = 0;
    while (t.status[first] != FLEET_OK)
        first++;
    snprintf(id, sizeof(id), "h%d", first);
    fleet_release(f->f, "p", id);
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_admit(f->f, "p", "h-next", 10000, on_admit, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_admit(f->f, "nobody", "h-x", 1, on_admit, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_NO_PAYER);
}

/* EVALSHA calls Redis has run so far. */
static long evalsha_calls(struct fixture *f)
{
    redisContext *c = redis_server_connect(&f->srv);
    redisReply *r = redisCommand(c, "INFO commandstats");
    assert_non_null(r);
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long n = p != NULL ? strtol(p + strlen("cmdstat_evalsha:calls="), NULL, 10) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static bool hold_in_redis(struct fixture *f, const char *payer, const char *hold)
{
    redisContext *c = redis_server_connect(&f->srv);
    char k[128];
    assert_int_equal(store_redis_tenant_key(k, sizeof(k), payer, "holds"), 0);
    redisReply *r = redisCommand(c, "ZSCORE %s %s", k, hold);
    bool in = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    redisFree(c);
    return in;
}

/* One loop turn's admissions go in one script call per 64, and each is
 * decided as if alone, in order: 150 over three payers (25,000 micro-USD
 * at 10,000 a hold: the first three admitted, as one at a time would; none
 * without funds; no such payer), one asked twice with the same hold id
 * admitted both times with one hold, and one cancelled before the turn
 * ended never sent (no callback, no hold: the next one takes its place). */
static void test_admission_batched(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "rich", 25000);
    add_tenant(f, "poor", 0);
    struct tally t = {.base = f->base, .want = 150};
    struct fleet_admission *req, *cancelled = NULL;
    const char *payers[] = {"rich", "poor", "nobody"};
    char id[32];
    long calls = evalsha_calls(f);
    for (int i = 0; i < 151; i++) {
        snprintf(id, sizeof(id), "h%d", i == 150 ? 0 : i); /* the last: h0 again */
        assert_int_equal(
            fleet_admit(f->f, i == 150 ? "rich" : payers[i % 3], id, 10000, on_admit, &t, &req),
            FLEET_PENDING);
        if (i == 3)
            cancelled = req;
    }
    fleet_admission_cancel(cancelled); /* h3 of "rich" */
    run(f->base, 5000);
    assert_int_equal(t.got, 150);
    assert_int_equal(evalsha_calls(f) - calls, 3); /* 150 sent: 64 + 64 + 22 */
    int got = 0;
    for (int i = 0; i < 151; i++) {
        if (i == 3)
            continue;
        int want = i == 150     ? FLEET_OK                             /* h0 again */
                   : i % 3 == 0 ? (i <= 9 ? FLEET_OK : FLEET_NO_FUNDS) /* h0, h6, h9 */
                   : i % 3 == 1 ? FLEET_NO_FUNDS
                                : FLEET_NO_PAYER;
        assert_int_equal(t.status[got], want);
        got++;
    }
    int64_t held = 0;
    assert_int_equal(store_redis_held(f->admin, "rich", &held), STORE_OK);
    assert_int_equal(held, 30000);
    assert_false(hold_in_redis(f, "rich", "h3"));
    assert_true(hold_in_redis(f, "rich", "h9"));
    /* The holds written at the call's end expire with the payer idle. */
    redisContext *c = redis_server_connect(&f->srv);
    for (int i = 0; i < 2; i++) {
        char k[128];
        assert_int_equal(store_redis_tenant_key(k, sizeof(k), "rich", i ? "holdamt" : "holds"), 0);
        redisReply *r = redisCommand(c, "PTTL %s", k);
        assert_true(r->integer > 890000 && r->integer <= 900000);
        freeReplyObject(r);
    }
    redisFree(c);
}

/* A socket's re-gate: plan + wallet - live holds, as Redis has them. */
static void test_available(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "q", 50000);
    struct tally t = {.base = f->base, .want = 2};
    struct rasync_req *req;
    struct fleet_admission *adm;
    assert_int_equal(fleet_admit(f->f, "q", "h1", 12000, on_admit, &t, &adm), FLEET_PENDING);
    assert_int_equal(fleet_admit(f->f, "q", "h2", 8000, on_admit, &t, &adm), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    assert_int_equal(t.status[1], FLEET_OK);
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_available(f->f, "q", on_funds, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    assert_int_equal(last_available, 50000 - 12000 - 8000);
    fleet_release(f->f, "q", "h1");
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_available(f->f, "q", on_funds, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(last_available, 50000 - 8000);
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_available(f->f, "nobody", on_funds, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_NO_PAYER);
}

static void test_live_leases(void **state)
{
    struct fixture *f = *state;
    struct tally t = {.base = f->base, .want = 4};
    struct rasync_req *req;
    /* Tenant limit 2 (its owner unlimited): the third is refused. */
    assert_int_equal(fleet_live_acquire(f->f, "s1", 2, "a", 3, "l1", on_live, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_live_acquire(f->f, "s1", 2, "a", 3, "l2", on_live, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_live_acquire(f->f, "s1", 2, "a", 3, "l3", on_live, &t, &req),
                     FLEET_PENDING);
    /* Another subaccount of the owner: the owner's 3 are reached with it. */
    assert_int_equal(fleet_live_acquire(f->f, "s2", 0, "a", 3, "l4", on_live, &t, &req),
                     FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.got, 4);
    assert_int_equal(t.status[0], FLEET_OK);
    assert_int_equal(t.status[1], FLEET_OK);
    assert_int_equal(t.status[2], FLEET_LIMIT);
    assert_false(t.owner[2]);
    assert_int_equal(t.status[3], FLEET_OK);
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_live_acquire(f->f, "s2", 0, "a", 3, "l5", on_live, &t, &req),
                     FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_LIMIT);
    assert_true(t.owner[0]);
    /* A release frees a place. */
    fleet_live_release(f->f, "s1", "a", "l1");
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_live_acquire(f->f, "s2", 0, "a", 3, "l6", on_live, &t, &req),
                     FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    /* An instance that died renews nothing: its lease expires (its expiry
     * set in the past here, as time would), and the place is free. */
    redisContext *c = redis_server_connect(&f->srv);
    char k1[96], k2[96];
    assert_int_equal(store_redis_tenant_key(k1, sizeof(k1), "s1", "live"), 0);
    assert_int_equal(store_redis_tenant_key(k2, sizeof(k2), "a", "live"), 0);
    redisReply *r = redisCommand(c, "ZADD %s XX 1 l2", k1);
    freeReplyObject(r);
    r = redisCommand(c, "ZADD %s XX 1 l2", k2);
    freeReplyObject(r);
    /* A renewal keeps a live one (l4) for another lease period. */
    fleet_live_renew(f->f, "s2", "a", "l4");
    t = (struct tally){.base = f->base, .want = 1};
    assert_int_equal(fleet_live_acquire(f->f, "s1", 2, "a", 3, "l7", on_live, &t, &req),
                     FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    r = redisCommand(c, "ZSCORE %s l4", k2);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
}

static bool in_live(struct fixture *f, const char *tenant, const char *lease)
{
    char k[96];
    assert_int_equal(store_redis_tenant_key(k, sizeof(k), tenant, "live"), 0);
    redisContext *c = redis_server_connect(&f->srv);
    redisReply *r = redisCommand(c, "ZSCORE %s %s", k, lease);
    bool in = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    redisFree(c);
    return in;
}

static enum fleet_status admit_leased(struct fixture *f, const char *payer, const char *hold,
                                      const char *tenant, int64_t limit, const char *owner,
                                      int64_t owner_limit, const char *lease, bool *owner_limited)
{
    struct tally t = {.base = f->base, .want = 1};
    struct fleet_admission *req;
    const struct fleet_lease l = {.tenant_id = tenant,
                                  .limit = limit,
                                  .owner_id = owner,
                                  .owner_limit = owner_limit,
                                  .lease_id = lease};
    assert_int_equal(fleet_admit_leased(f->f, payer, hold, 1000, &l, on_live, &t, &req),
                     FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.got, 1);
    *owner_limited = t.owner[0];
    return (enum fleet_status)t.status[0];
}

/* A streaming response's admission and its lease in one script: the funds
 * are decided first, then the limits; at a limit neither the hold nor the
 * lease is taken; a retried one (same hold and lease) is admitted again
 * without counting itself twice. */
static void test_admit_leased(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "pay", 100000);
    add_tenant(f, "poor", 0);
    bool owner = true;
    int64_t held = -1;
    assert_int_equal(admit_leased(f, "pay", "h1", "s1", 1, "a", 2, "l1", &owner), FLEET_OK);
    assert_true(in_live(f, "s1", "l1"));
    assert_true(in_live(f, "a", "l1"));
    assert_int_equal(store_redis_held(f->admin, "pay", &held), STORE_OK);
    assert_int_equal(held, 1000);
    /* The tenant's limit (1): refused, nothing taken. */
    assert_int_equal(admit_leased(f, "pay", "h2", "s1", 1, "a", 2, "l2", &owner), FLEET_LIMIT);
    assert_false(owner);
    assert_false(in_live(f, "s1", "l2"));
    assert_false(in_live(f, "a", "l2"));
    assert_int_equal(store_redis_held(f->admin, "pay", &held), STORE_OK);
    assert_int_equal(held, 1000);
    /* Another subaccount reaches the owner's 2; a third is refused for the owner. */
    assert_int_equal(admit_leased(f, "pay", "h3", "s2", 0, "a", 2, "l3", &owner), FLEET_OK);
    assert_int_equal(admit_leased(f, "pay", "h4", "s3", 0, "a", 2, "l4", &owner), FLEET_LIMIT);
    assert_true(owner);
    assert_false(in_live(f, "s3", "l4"));
    assert_int_equal(store_redis_held(f->admin, "pay", &held), STORE_OK);
    assert_int_equal(held, 2000);
    /* Retried: admitted again, one hold, one lease. */
    assert_int_equal(admit_leased(f, "pay", "h1", "s1", 1, "a", 2, "l1", &owner), FLEET_OK);
    assert_int_equal(store_redis_held(f->admin, "pay", &held), STORE_OK);
    assert_int_equal(held, 2000);
    /* Funds before limits: a payer without funds is refused for them even
     * where the limit is reached too, and takes no lease. */
    assert_int_equal(admit_leased(f, "poor", "h5", "s1", 1, "a", 2, "l5", &owner), FLEET_NO_FUNDS);
    assert_int_equal(admit_leased(f, "poor", "h6", "s4", 5, "", 0, "l6", &owner), FLEET_NO_FUNDS);
    assert_false(in_live(f, "s4", "l6"));
    assert_int_equal(admit_leased(f, "nobody", "h7", "s4", 5, "", 0, "l7", &owner), FLEET_NO_PAYER);
    assert_false(in_live(f, "s4", "l7"));
    /* A release frees the place: the tenant's next is admitted. */
    fleet_live_release(f->f, "s1", "a", "l1");
    assert_int_equal(admit_leased(f, "pay", "h8", "s1", 1, "a", 2, "l8", &owner), FLEET_OK);
}

struct texts {
    struct event_base *base;
    int want, got;
    int status[8];
    char text[8][256];
};

static void on_text(void *arg, enum fleet_status st, const char *text, size_t len)
{
    struct texts *t = arg;
    t->status[t->got] = st;
    snprintf(t->text[t->got], sizeof(t->text[0]), "%.*s", (int)len, text != NULL ? text : "");
    t->got++;
    if (t->got >= t->want)
        event_base_loopbreak(t->base);
}

/* Pins: the first writer wins, the second gets the winner's pin; a read
 * slides the TTL; another session has none. Single-use values: put once,
 * taken once. */
static void test_pins_and_values(void **state)
{
    struct fixture *f = *state;
    struct rasync_req *req;
    struct texts t = {.base = f->base, .want = 4};
    assert_int_equal(fleet_pin_put(f->f, "t1", "conv-1", "{\"pin\":\"A\"}", 60, on_text, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_pin_put(f->f, "t1", "conv-1", "{\"pin\":\"B\"}", 60, on_text, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_pin_get(f->f, "t1", "conv-1", 120, on_text, &t, &req), FLEET_PENDING);
    assert_int_equal(fleet_pin_get(f->f, "t2", "conv-1", 120, on_text, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.got, 4);
    assert_int_equal(t.status[0], FLEET_OK);
    assert_string_equal(t.text[0], "{\"pin\":\"A\"}");
    assert_int_equal(t.status[1], FLEET_OK);
    assert_string_equal(t.text[1], "{\"pin\":\"A\"}"); /* the winner's */
    assert_string_equal(t.text[2], "{\"pin\":\"A\"}");
    assert_int_equal(t.status[3], FLEET_ABSENT); /* pins are per tenant */
    redisContext *c = redis_server_connect(&f->srv);
    char key[128];
    assert_int_equal(store_redis_tenant_key(key, sizeof(key), "t1", "pin:conv-1"), 0);
    redisReply *r = redisCommand(c, "PTTL %s", key);
    assert_true(r->integer > 60000 && r->integer <= 120000); /* slid by the read */
    freeReplyObject(r);
    redisFree(c);

    t = (struct texts){.base = f->base, .want = 4};
    assert_int_equal(fleet_value_put(f->f, "ek-hash-1", "grant", 60000, on_text, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_value_put(f->f, "ek-hash-1", "other", 60000, on_text, &t, &req),
                     FLEET_PENDING);
    assert_int_equal(fleet_value_take(f->f, "ek-hash-1", on_text, &t, &req), FLEET_PENDING);
    assert_int_equal(fleet_value_take(f->f, "ek-hash-1", on_text, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.got, 4);
    assert_int_equal(t.status[0], FLEET_OK);
    assert_int_equal(t.status[1], FLEET_ABSENT); /* the name exists */
    assert_int_equal(t.status[2], FLEET_OK);
    assert_string_equal(t.text[2], "grant");
    assert_int_equal(t.status[3], FLEET_ABSENT); /* single use */
}

/* A release whose outcome is unknown (the connection dropped before the
 * answer: Redis stalled past the deadline) is sent again once the
 * connection is back, so the hold goes now rather than after
 * balance.hold_ttl_s. */
static void test_release_retried(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "r", 50000);
    struct tally t = {.base = f->base, .want = 1};
    struct fleet_admission *req;
    assert_int_equal(fleet_admit(f->f, "r", "h1", 7000, on_admit, &t, &req), FLEET_PENDING);
    run(f->base, 5000);
    assert_int_equal(t.status[0], FLEET_OK);
    int64_t held = 0;
    assert_int_equal(store_redis_held(f->admin, "r", &held), STORE_OK);
    assert_int_equal(held, 7000);
    /* Redis holds every other client's commands for 3 s (the deadline is
     * 2 s); its answer comes before the release is asked. */
    redisContext *c = redis_server_connect(&f->srv);
    redisReply *pause = redisCommand(c, "CLIENT PAUSE 3000 ALL");
    assert_non_null(pause);
    assert_int_equal(pause->type, REDIS_REPLY_STATUS);
    freeReplyObject(pause);
    fleet_release(f->f, "r", "h1");
    for (int i = 0; i < 400 && fleet_pending_releases(f->f) == 0; i++)
        run(f->base, 10);
    assert_int_equal(fleet_pending_releases(f->f), 1);
    for (int i = 0; i < 1000 && (fleet_pending_releases(f->f) > 0 || !fleet_up(f->f)); i++)
        run(f->base, 10);
    assert_int_equal(fleet_pending_releases(f->f), 0);
    for (int i = 0; i < 100 && held != 0; i++) {
        run(f->base, 20);
        if (store_redis_held(f->admin, "r", &held) != STORE_OK) /* its connection timed out */
            assert_int_equal(store_redis_held(f->admin, "r", &held), STORE_OK);
    }
    assert_int_equal(held, 0);
    redisFree(c);
}

static void test_down(void **state)
{
    struct fixture *f = *state;
    redis_server_kill(&f->srv);
    for (int i = 0; i < 500 && fleet_up(f->f); i++)
        run(f->base, 10);
    assert_false(fleet_up(f->f));
    struct rasync_req *req = NULL;
    struct fleet_admission *adm = NULL;
    struct tally t = {.base = f->base, .want = 1};
    assert_int_equal(fleet_admit(f->f, "p", "h", 1, on_admit, &t, &adm), FLEET_DOWN);
    assert_null(adm);
    assert_int_equal(fleet_live_acquire(f->f, "s", 1, "", 0, "l", on_live, &t, &req), FLEET_DOWN);
    assert_int_equal(t.got, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_available, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_leased, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pins_and_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
