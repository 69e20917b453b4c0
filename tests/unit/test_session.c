/* test_session.c - the pinned-session table: scoping, sliding expiry,
 * first writer wins, the size bound, sweeping, and concurrent use. */
#include "common.h"
#include "session.h"
#include "providers_test.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct session_pin pin_for(const char *payer, bool byok_openai)
{
    struct session_pin p;
    memset(&p, 0, sizeof(p));
    snprintf(p.payer_id, sizeof(p.payer_id), "%s", payer);
    snprintf(p.owner_id, sizeof(p.owner_id), "%s", payer);
    p.byok[S_OPENAI] = byok_openai;
    if (byok_openai)
        snprintf(p.connection_id[S_OPENAI], ID_MAX, "c_1");
    return p;
}

static int setup(void **state)
{
    (void)state;
    return session_init(16);
}

static int teardown(void **state)
{
    (void)state;
    session_shutdown();
    return 0;
}

static void test_scoped_by_tenant(void **state)
{
    (void)state;
    struct session_pin a = pin_for("ta", true), b = pin_for("tb", false), out;
    assert_true(session_put("ta", "conv-1", 60, &a));
    assert_false(session_get("tb", "conv-1", 60, &out));
    assert_true(session_put("tb", "conv-1", 60, &b));
    assert_true(session_get("ta", "conv-1", 60, &out));
    assert_string_equal(out.payer_id, "ta");
    assert_true(out.byok[S_OPENAI]);
    assert_true(session_get("tb", "conv-1", 60, &out));
    assert_string_equal(out.payer_id, "tb");
    assert_false(out.byok[S_OPENAI]);
    /* ("ab","c") and ("a","bc") are different keys. */
    struct session_pin c = pin_for("x", false);
    assert_true(session_put("ab", "c", 60, &c));
    assert_false(session_get("a", "bc", 60, &out));
    assert_int_equal(session_count(), 3);
}

static void test_first_writer_wins(void **state)
{
    (void)state;
    struct session_pin first = pin_for("t", true), second = pin_for("t", false);
    assert_true(session_put("t", "s", 60, &first));
    assert_true(session_put("t", "s", 60, &second));
    /* The loser got the winner's decision. */
    assert_true(second.byok[S_OPENAI]);
    assert_string_equal(second.connection_id[S_OPENAI], "c_1");
    assert_int_equal(session_count(), 1);
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* Expiry on an injected clock: gone after its TTL, pushed out by each use. */
static void test_expiry_slides(void **state)
{
    (void)state;
    session_set_clock(fake_clock);
    fake_now = 1000000;
    struct session_pin p = pin_for("t", true), out;
    assert_true(session_put("t", "short", 0, &p)); /* TTL 0: expired at once */
    assert_false(session_get("t", "short", 60, &out));
    assert_int_equal(session_count(), 0);

    assert_true(session_put("t", "s", 1, &p));
    /* Used every 0.9 s for 3 s: each use slides the 1 s TTL. */
    for (int i = 0; i < 4; i++) {
        fake_now += 900;
        assert_true(session_get("t", "s", 1, &out));
    }
    session_sweep();
    assert_int_equal(session_count(), 1);
    /* Idle for longer than the TTL: gone, and swept. */
    fake_now += 1001;
    session_sweep();
    assert_int_equal(session_count(), 0);
    assert_false(session_get("t", "s", 1, &out));
    session_set_clock(NULL);
}

static void test_bound(void **state)
{
    (void)state;
    struct session_pin p = pin_for("t", false);
    char id[32];
    for (int i = 0; i < 16; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_true(session_put("t", id, 60, &p));
    }
    assert_false(session_put("t", "one-too-many", 60, &p));
    assert_int_equal(session_count(), 16);
}

struct worker_arg {
    int index;
    int hits;
};

static void *worker(void *arg)
{
    struct worker_arg *w = arg;
    char id[32];
    for (int round = 0; round < 2000; round++) {
        snprintf(id, sizeof(id), "s%d", round % 8);
        struct session_pin p = pin_for(w->index % 2 ? "odd" : "even", w->index % 2);
        struct session_pin out;
        if (!session_get("t", id, 60, &out)) {
            assert_true(session_put("t", id, 60, &p));
            out = p;
        }
        /* Whoever pinned first, every thread sees one decision per id. */
        struct session_pin again;
        assert_true(session_get("t", id, 60, &again));
        assert_string_equal(again.payer_id, out.payer_id);
        w->hits++;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    pthread_t th[4];
    struct worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct worker_arg){i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].hits, 2000);
    }
    assert_int_equal(session_count(), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scoped_by_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_writer_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_slides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
