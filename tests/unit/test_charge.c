/* test_charge.c - the charging policy (charge.h) that every store backend
 * applies: plan credits first, then the wallet (which may go negative),
 * nothing for BYOK or costless lines, nothing from a payer that is gone. */
#include "common.h"

#include "charge.h"

#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include <cmocka.h>

/* out starts as garbage: charge_apply must set every field. */
static enum charge_result apply(bool byok, int64_t cost, const struct charge_balance *payer,
                                struct charge *out)
{
    memset(out, 0x5a, sizeof(*out));
    return charge_apply(byok, false, cost, payer, out);
}

static void assert_charge(const struct charge *c, int64_t plan, int64_t wallet, int64_t after_plan,
                          int64_t after_wallet)
{
    assert_int_equal(c->plan_credits_micros, plan);
    assert_int_equal(c->wallet_micros, wallet);
    assert_int_equal(c->after.plan_credits_micros, after_plan);
    assert_int_equal(c->after.wallet_micros, after_wallet);
}

static void test_needed(void **state)
{
    (void)state;
    assert_true(charge_needed(false, false, 1));
    assert_true(charge_needed(false, false, INT64_MAX));
    assert_false(charge_needed(false, false, 0));
    assert_false(charge_needed(false, false, -5));
    assert_false(charge_needed(true, false, 1));
    assert_false(charge_needed(true, false, 0));
    /* Exempt (a simulated line under simulate.charge false). */
    assert_false(charge_needed(false, true, 1));
    assert_false(charge_needed(true, true, 1));
}

/* An exempt line is priced but takes nothing, whatever the balances. */
static void test_exempt(void **state)
{
    (void)state;
    struct charge c;
    struct charge_balance b = {100, 1000};
    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(charge_apply(false, true, 30, &b, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 100, 1000);
    b = (struct charge_balance){0, 0};
    assert_int_equal(charge_apply(false, true, 30, &b, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 0, 0);
    /* Not exempt: the same line charges. */
    assert_int_equal(charge_apply(false, false, 30, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 30, 0, -30);
}

static void test_plan_first(void **state)
{
    (void)state;
    struct charge c;
    /* The plan covers it all. */
    struct charge_balance b = {100, 1000};
    assert_int_equal(apply(false, 30, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 30, 0, 70, 1000);
    /* Exactly the plan. */
    b = (struct charge_balance){30, 5};
    assert_int_equal(apply(false, 30, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 30, 0, 0, 5);
    /* The plan runs out: the rest from the wallet. */
    b = (struct charge_balance){50, 100};
    assert_int_equal(apply(false, 80, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 50, 30, 0, 70);
    /* The payer's balances are only read. */
    assert_int_equal(b.plan_credits_micros, 50);
    assert_int_equal(b.wallet_micros, 100);
}

static void test_wallet_negative(void **state)
{
    (void)state;
    struct charge c;
    /* A running session is not cut off: the wallet goes below zero. */
    struct charge_balance b = {0, 70};
    assert_int_equal(apply(false, 100, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 100, 0, -30);
    b = c.after;
    assert_int_equal(apply(false, 7, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 7, 0, -37);
}

static void test_negative_plan_not_drawn(void **state)
{
    (void)state;
    struct charge c;
    struct charge_balance b = {-10, -30};
    assert_int_equal(apply(false, 7, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 7, -10, -37);
}

static void test_nothing_to_charge(void **state)
{
    (void)state;
    struct charge c;
    struct charge_balance b = {50, 100};
    /* BYOK lines are priced for insight, never charged. */
    assert_int_equal(apply(true, 500, &b, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 50, 100);
    /* No cost, or a negative one (never a credit). */
    assert_int_equal(apply(false, 0, &b, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 50, 100);
    assert_int_equal(apply(false, -40, &b, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 50, 100);
    /* Nothing to charge wins over a missing payer: no payer is needed. */
    assert_int_equal(apply(true, 500, NULL, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 0, 0);
    assert_int_equal(apply(false, 0, NULL, &c), CHARGE_NONE);
    assert_charge(&c, 0, 0, 0, 0);
}

static void test_missing_payer(void **state)
{
    (void)state;
    struct charge c;
    /* Deleted while the request ran: recorded uncharged. */
    assert_int_equal(apply(false, 40, NULL, &c), CHARGE_PAYER_MISSING);
    assert_charge(&c, 0, 0, 0, 0);
}

static void test_extremes(void **state)
{
    (void)state;
    struct charge c;
    /* The whole range of a plan. */
    struct charge_balance b = {INT64_MAX, 0};
    assert_int_equal(apply(false, INT64_MAX, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, INT64_MAX, 0, 0, 0);
    /* Down to exactly INT64_MIN: exact, no saturation needed. */
    b = (struct charge_balance){0, -INT64_MAX};
    assert_int_equal(apply(false, 1, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 1, 0, INT64_MIN);
    /* Two halves of 2^63 from an empty wallet (the store's overflow test). */
    const int64_t half = INT64_MAX / 2 + 1;
    b = (struct charge_balance){0, 0};
    assert_int_equal(apply(false, half, &b, &c), CHARGE_APPLIED);
    b = c.after;
    assert_int_equal(apply(false, half, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, half, 0, INT64_MIN);
    /* Beyond it the wallet stays at INT64_MIN; the amount taken is the cost. */
    b = (struct charge_balance){0, INT64_MIN + 5};
    assert_int_equal(apply(false, 10, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 0, 10, 0, INT64_MIN);
    b = (struct charge_balance){3, INT64_MIN};
    assert_int_equal(apply(false, INT64_MAX, &b, &c), CHARGE_APPLIED);
    assert_charge(&c, 3, INT64_MAX - 3, 0, INT64_MIN);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random balances and costs: the amounts always add up to the cost, the
 * plan is never drawn below zero nor beyond what it holds, and the balances
 * move by exactly the amounts taken. */
static void test_invariants(void **state)
{
    (void)state;
    for (int i = 0; i < 100000; i++) {
        struct charge_balance b = {(int64_t)(rnd() % 2000000) - 500000,
                                   (int64_t)(rnd() % 2000000) - 1000000};
        int64_t cost = (int64_t)(rnd() % 1500000) - 100000;
        bool byok = rnd() % 4 == 0;
        struct charge c;
        enum charge_result res = apply(byok, cost, &b, &c);
        if (byok || cost <= 0) {
            assert_int_equal(res, CHARGE_NONE);
            assert_charge(&c, 0, 0, b.plan_credits_micros, b.wallet_micros);
            continue;
        }
        assert_int_equal(res, CHARGE_APPLIED);
        assert_int_equal(c.plan_credits_micros + c.wallet_micros, cost);
        assert_true(c.plan_credits_micros >= 0 && c.wallet_micros >= 0);
        assert_true(c.plan_credits_micros <= MAX(b.plan_credits_micros, 0));
        /* Plan credits left over means the wallet was not touched. */
        if (c.after.plan_credits_micros > 0)
            assert_int_equal(c.wallet_micros, 0);
        assert_int_equal(c.after.plan_credits_micros,
                         b.plan_credits_micros - c.plan_credits_micros);
        assert_int_equal(c.after.wallet_micros, b.wallet_micros - c.wallet_micros);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_needed),
        cmocka_unit_test(test_exempt),
        cmocka_unit_test(test_plan_first),
        cmocka_unit_test(test_wallet_negative),
        cmocka_unit_test(test_negative_plan_not_drawn),
        cmocka_unit_test(test_nothing_to_charge),
        cmocka_unit_test(test_missing_payer),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
