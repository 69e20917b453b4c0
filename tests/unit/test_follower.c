/* test_follower.c - the replica follows the invalidation channel
 * (follower.h) against a real redis-server: admin writes through one store
 * handle (as another instance's admin API would make them) reach the
 * replica within 250 ms and move the store generation; a Redis restart
 * breaks the channel, and what changed meanwhile is read once it is back.
 * follower_sync: once it returns, the replica has every write made before
 * it (read-your-writes for this instance's admin API). */
#include "common.h"
#include "config.h"
#include "follower.h"
#include "replica.h"
#include "store.h"
#include "store_redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/thread.h>

#include "redis_server_test.h"

struct fixture {
    struct redis_server srv;
    char url[64];
    struct config cfg;
    struct store *admin; /* "another instance's" admin handle */
    struct replica *rp;
    struct store *r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(redis_server_start(&f->srv), 0);
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d/0", f->srv.port);
    f->cfg.store_backend = "redis";
    f->cfg.store_url = f->url;
    f->cfg.store_connect_timeout_ms = 1000;
    f->cfg.store_timeout_ms = 2000;
    char *err = NULL;
    f->admin = store_open_role(&f->cfg, STORE_ROLE_CONTROL, &err);
    if (f->admin == NULL)
        fail_msg("open: %s", err);
    f->rp = replica_new();
    f->r = replica_store(f->rp);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->r);
    replica_free(f->rp);
    store_close(f->admin);
    redis_server_destroy(&f->srv);
    free(f);
    return 0;
}

static void add_tenant(struct store *s, const char *id, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "%s", id);
    t.wallet_micros = wallet;
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
}

static void add_key(struct store *s, const char *tenant, const char *kid)
{
    struct store_key k = {0};
    snprintf(k.id, sizeof(k.id), "%s", kid);
    snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", tenant);
    snprintf(k.label, sizeof(k.label), "l");
    memset(k.hash, 1, sizeof(k.hash));
    k.created_at_ms = now_ms();
    assert_int_equal(store_key_create(s, &k), STORE_OK);
}

/* Polls until the replica shows key kid revoked (want_revoked) or gone
 * (want_missing); returns the ms it took, -1 past limit_ms. */
static int64_t wait_key(struct fixture *f, const char *kid, bool want_missing, int limit_ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 <= limit_ms) {
        struct store_key k;
        int rc = store_key_get(f->r, kid, &k);
        if (want_missing ? rc == STORE_ERR_NOT_FOUND : (rc == STORE_OK && k.revoked_at_ms != 0))
            return mono_ms() - t0;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, bounded by limit_ms */
    }
    return -1;
}

static bool wait_live(struct follower *fl, bool want, int limit_ms)
{
    int64_t t0 = mono_ms();
    while (follower_live(fl) != want && mono_ms() - t0 <= limit_ms) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, bounded by limit_ms */
    }
    return follower_live(fl) == want;
}

static void test_follow(void **state)
{
    struct fixture *f = *state;
    add_tenant(f->admin, "t1", 100);
    add_key(f->admin, "t1", "k_1");
    char *err = NULL;
    struct follower *fl = follower_start(&f->cfg, f->rp, &err);
    if (fl == NULL)
        fail_msg("start: %s", err);
    /* The first load is done before start returns. */
    struct store_key k;
    assert_int_equal(store_key_get(f->r, "k_1", &k), STORE_OK);
    assert_true(wait_live(fl, true, 5000));

    /* A revocation made through another handle reaches the replica, and
     * the generation moves (every worker's caches drop). */
    uint64_t gen = store_generation();
    assert_int_equal(store_key_revoke(f->admin, "t1", "k_1"), STORE_OK);
    int64_t ms = wait_key(f, "k_1", false, 250);
    assert_true(ms >= 0);
    assert_true(store_generation() > gen);
    /* A new tenant, a deletion. */
    add_tenant(f->admin, "t2", 5);
    add_key(f->admin, "t2", "k_2");
    assert_true(wait_key(f, "k_2", false, 250) == -1); /* present, not revoked */
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->r, "t2", &t), STORE_OK);
    assert_int_equal(store_tenant_delete(f->admin, "t2"), STORE_OK);
    assert_true(wait_key(f, "k_2", true, 250) >= 0);

    /* Redis goes away: the channel is down; a change made after it is back
     * but before the subscription is is still read (the whole re-read). */
    redis_server_kill(&f->srv);
    assert_true(wait_live(fl, false, 5000));
    assert_int_equal(redis_server_start(&f->srv), 0); /* same port, empty */
    if (store_ping(f->admin) != STORE_OK) /* the old connection fails once, then reconnects */
        assert_int_equal(store_ping(f->admin), STORE_OK);
    add_tenant(f->admin, "t3", 1);
    add_key(f->admin, "t3", "k_3");
    assert_true(wait_live(fl, true, 8000));
    int64_t t0 = mono_ms();
    while (store_key_get(f->r, "k_3", &k) != STORE_OK && mono_ms() - t0 < 3000) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, bounded */
    }
    assert_int_equal(store_key_get(f->r, "k_3", &k), STORE_OK);
    /* The restarted Redis is empty but for t3: the replica follows it. */
    assert_int_equal(store_tenant_get(f->r, "t1", &t), STORE_ERR_NOT_FOUND);
    assert_true(follower_refreshes(fl) >= 3);
    follower_stop(fl);
}

/* Read-your-writes: no polling, the replica has each write as soon as
 * follower_sync returns; another instance's markers are not ours. */
static void test_sync(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    struct follower *fl = follower_start(&f->cfg, f->rp, &err);
    if (fl == NULL)
        fail_msg("start: %s", err);
    assert_true(wait_live(fl, true, 5000));
    struct store_key k;
    struct store_tenant t;
    char tid[16], kid[16];
    for (int i = 0; i < 50; i++) {
        snprintf(tid, sizeof(tid), "s%d", i);
        snprintf(kid, sizeof(kid), "k_s%d", i);
        add_tenant(f->admin, tid, 1);
        add_key(f->admin, tid, kid);
        assert_int_equal(follower_sync(fl, f->admin, 1000), 0);
        assert_int_equal(store_key_get(f->r, kid, &k), STORE_OK);
        assert_int_equal(store_key_revoke(f->admin, tid, kid), STORE_OK);
        assert_int_equal(follower_sync(fl, f->admin, 1000), 0);
        assert_int_equal(store_key_get(f->r, kid, &k), STORE_OK);
        assert_true(k.revoked_at_ms != 0);
        assert_int_equal(store_tenant_delete(f->admin, tid), STORE_OK);
        assert_int_equal(follower_sync(fl, f->admin, 1000), 0);
        assert_int_equal(store_tenant_get(f->r, tid, &t), STORE_ERR_NOT_FOUND);
    }
    /* A marker of another process (another nonce) is not an answer: the
     * wait for ours still ends on ours. */
    assert_int_equal(store_redis_publish(f->admin, "sync:0000000000000000:999999"), STORE_OK);
    assert_int_equal(follower_sync(fl, f->admin, 1000), 0);
    /* The channel down: -1 at once (nothing to wait for). */
    redis_server_kill(&f->srv);
    assert_true(wait_live(fl, false, 5000));
    int64_t t0 = mono_ms();
    assert_int_equal(follower_sync(fl, f->admin, 1000), -1);
    assert_true(mono_ms() - t0 < 500);
    follower_stop(fl);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
