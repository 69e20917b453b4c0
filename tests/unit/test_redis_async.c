/* test_redis_async.c - the non-blocking Redis connection (redis_async.h)
 * against a real redis-server: commands and replies in order, scripts by
 * SHA with the NOSCRIPT fallback, AUTH, a command later than its deadline,
 * a server that goes away and comes back (and what /readyz sees of it:
 * rasync_all_up), cancellation. */
#include "common.h"
#include "redis_async.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "redis_server_test.h"

struct run {
    struct event_base *base;
    int got, want;
    int nulls;
    long long ints[16];
    char strs[16][64];
};

static void collect(void *arg, const redisReply *reply)
{
    struct run *u = arg;
    int i = u->got++;
    if (reply == NULL) {
        u->nulls++;
        snprintf(u->strs[i % 16], sizeof(u->strs[0]), "<none>");
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        u->ints[i % 16] = reply->integer;
        snprintf(u->strs[i % 16], sizeof(u->strs[0]), "%lld", reply->integer);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(u->strs[i % 16], sizeof(u->strs[0]), "ERR:%.50s", reply->str);
    } else if (reply->str != NULL) {
        snprintf(u->strs[i % 16], sizeof(u->strs[0]), "%.60s", reply->str);
    } else {
        snprintf(u->strs[i % 16], sizeof(u->strs[0]), "<type %d>", reply->type);
    }
    if (u->got >= u->want)
        event_base_loopbreak(u->base);
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until u->want replies came or ms passed. */
static void run_until(struct run *u, int ms)
{
    struct event *t = evtimer_new(u->base, give_up, u->base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    if (u->got < u->want)
        event_base_dispatch(u->base);
    event_free(t);
}

/* Runs the loop until rasync_up or ms passed. */
static bool wait_up(struct event_base *base, struct rasync *r, int ms)
{
    for (int i = 0; i < ms / 10 && !rasync_up(r); i++) {
        struct event *t = evtimer_new(base, give_up, base);
        struct timeval tv = {0, 10 * 1000};
        evtimer_add(t, &tv);
        event_base_dispatch(base);
        event_free(t);
    }
    return rasync_up(r);
}

/* PING until PONG comes back, within ms. */
static bool ping_until_pong(struct event_base *base, struct rasync *r, int ms)
{
    const char *ping[] = {"PING"};
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        if (!wait_up(base, r, (int)MAX((int64_t)10, end - mono_ms())))
            return false;
        struct run u = {.base = base, .want = 1};
        if (rasync_command(r, collect, &u, 1, ping, NULL) == NULL)
            continue;
        run_until(&u, 3000);
        if (strcmp(u.strs[0], "PONG") == 0)
            return true;
    }
    return false;
}

static const char *A(const char *s)
{
    return s;
}

static void test_commands_scripts_auth(void **state)
{
    (void)state;
    struct redis_server srv = {0};
    snprintf(srv.password, sizeof(srv.password), "pw-%d", (int)getpid());
    assert_int_equal(redis_server_start(&srv), 0);
    struct event_base *base = event_base_new();
    struct rasync_opts o = {.host = "127.0.0.1",
                            .port = srv.port,
                            .db = 2,
                            .password = srv.password,
                            .timeout_ms = 1000,
                            .name = "test"};
    struct rasync *r = rasync_new(base, &o);
    assert_non_null(r);
    assert_true(wait_up(base, r, 5000));

    struct run u = {.base = base, .want = 3};
    const char *set[] = {"SET", "k", "v1"};
    const char *get[] = {"GET", "k"};
    const char *incr[] = {"INCRBY", "n", "41"};
    assert_non_null(rasync_command(r, collect, &u, 3, set, NULL));
    assert_non_null(rasync_command(r, collect, &u, 2, get, NULL));
    assert_non_null(rasync_command(r, collect, &u, 3, incr, NULL));
    run_until(&u, 3000);
    assert_int_equal(u.got, 3);
    assert_string_equal(u.strs[0], "OK");
    assert_string_equal(u.strs[1], "v1");
    assert_int_equal(u.ints[2], 41);

    /* db 2 was selected: db 0 does not have the key. */
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *x = redisCommand(c, "AUTH %s", srv.password);
    freeReplyObject(x);
    x = redisCommand(c, "EXISTS k");
    assert_int_equal(x->integer, 0);
    freeReplyObject(x);
    x = redisCommand(c, "SELECT 2");
    freeReplyObject(x);
    x = redisCommand(c, "EXISTS k");
    assert_int_equal(x->integer, 1);
    freeReplyObject(x);

    /* A script by SHA; after SCRIPT FLUSH, NOSCRIPT sends its text again. */
    static struct redis_script s = {.name = "incrby",
                                    .text = "return redis.call('INCRBY', KEYS[1], ARGV[1])"};
    redis_script_init(&s);
    assert_int_equal(strlen(s.sha), 40);
    const char *args[] = {A("n"), A("1")};
    u = (struct run){.base = base, .want = 1};
    assert_non_null(rasync_eval(r, &s, collect, &u, 1, 2, args, NULL));
    run_until(&u, 3000);
    assert_int_equal(u.ints[0], 42);
    x = redisCommand(c, "SCRIPT FLUSH");
    freeReplyObject(x);
    u = (struct run){.base = base, .want = 1};
    assert_non_null(rasync_eval(r, &s, collect, &u, 1, 2, args, NULL));
    run_until(&u, 3000);
    assert_int_equal(u.got, 1);
    assert_int_equal(u.ints[0], 43);

    /* A cancelled request is not answered; the next one is. */
    u = (struct run){.base = base, .want = 1};
    struct rasync_req *q = rasync_command(r, collect, &u, 2, get, NULL);
    rasync_cancel(q);
    assert_non_null(rasync_command(r, collect, &u, 2, get, NULL));
    run_until(&u, 3000);
    assert_int_equal(u.got, 1);
    run_until(&u, 100); /* nothing more arrives */
    assert_int_equal(u.got, 1);

    redisFree(c);
    rasync_free(r);
    event_base_free(base);
    redis_server_destroy(&srv);
}

/* A reply later than the deadline: that request and every request behind it
 * get no reply, and the connection is made again. */
static void test_timeout_and_restart(void **state)
{
    (void)state;
    struct redis_server srv = {0};
    assert_int_equal(redis_server_start(&srv), 0);
    struct event_base *base = event_base_new();
    struct rasync_opts o = {
        .host = "127.0.0.1", .port = srv.port, .timeout_ms = 200, .name = "test"};
    assert_true(rasync_all_up()); /* none yet */
    struct rasync *r = rasync_new(base, &o);
    assert_false(rasync_all_up()); /* connecting */
    assert_true(wait_up(base, r, 5000));
    assert_true(rasync_all_up());

    struct run u = {.base = base, .want = 2};
    const char *sleep1[] = {"DEBUG", "SLEEP", "1"};
    const char *ping[] = {"PING"};
    assert_non_null(rasync_command(r, collect, &u, 3, sleep1, NULL));
    assert_non_null(rasync_command(r, collect, &u, 1, ping, NULL));
    int64_t t0 = mono_ms();
    run_until(&u, 3000);
    assert_int_equal(u.got, 2);
    assert_int_equal(u.nulls, 2);
    assert_true(mono_ms() - t0 < 900); /* at the deadline, not after the sleep */
    /* Served again once the server answers (it sleeps out its second). */
    assert_true(ping_until_pong(base, r, 5000));

    /* The server dies: pending requests get no reply; new ones are refused
     * at once while it is down; it comes back and so does the connection. */
    redis_server_kill(&srv);
    u = (struct run){.base = base, .want = 1};
    struct rasync_req *q = rasync_command(r, collect, &u, 1, ping, NULL);
    if (q != NULL) /* queued before the close was seen */
        run_until(&u, 3000);
    for (int i = 0; i < 100 && rasync_up(r); i++)
        run_until(&(struct run){.base = base, .want = 1}, 10);
    assert_false(rasync_up(r));
    assert_false(rasync_all_up()); /* what /readyz reports for the workers */
    assert_null(rasync_command(r, collect, &u, 1, ping, NULL));
    assert_int_equal(redis_server_start(&srv), 0);
    assert_true(ping_until_pong(base, r, 8000));
    assert_true(rasync_all_up());

    /* One down among several is enough; a freed one counts no more. */
    struct rasync_opts nowhere = o;
    nowhere.port = 1; /* nothing listens there */
    struct rasync *r2 = rasync_new(base, &nowhere);
    assert_false(rasync_all_up());
    run_until(&(struct run){.base = base, .want = 1}, 50);
    assert_false(rasync_all_up());
    rasync_free(r2);
    assert_true(rasync_all_up());

    rasync_free(r);
    event_base_free(base);
    redis_server_destroy(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands_scripts_auth),
        cmocka_unit_test(test_timeout_and_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
