/* test_sim_pace.c - the simulator's pure pieces (sim_provider.h): generated
 * text and the word count that makes usage exact, token and audio pacing
 * arithmetic, the fault of a reply, the seeded generator. */
#include "common.h"

#include "config.h"
#include "sim_provider.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_words(void **state)
{
    (void)state;
    assert_int_equal(sim_count_words("", 0), 0);
    assert_int_equal(sim_count_words("   \t\n", 5), 0);
    assert_int_equal(sim_count_words("one", 3), 1);
    assert_int_equal(sim_count_words("  one two\tthree\nfour  ", 22), 4);
    assert_int_equal(sim_count_words("a b", 1), 1); /* the length bounds it */
    /* Token 0 has no leading space, every other one has: n tokens, n words. */
    assert_true(sim_word(0)[0] != ' ');
    for (size_t i = 1; i < 100; i++)
        assert_true(sim_word(i)[0] == ' ');
    for (size_t n = 0; n < 200; n += 7) {
        char *t = sim_text(n);
        assert_non_null(t);
        assert_int_equal(sim_count_words(t, strlen(t)), (int64_t)n);
        /* The text is the concatenation of the tokens a stream sends. */
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            assert_memory_equal(t + at, sim_word(i), strlen(sim_word(i)));
            at += strlen(sim_word(i));
        }
        assert_int_equal(strlen(t), at);
        free(t);
    }
}

static int64_t count_json(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    int64_t n = sim_count_json_words(v);
    json_decref(v);
    return n;
}

static void test_json_words(void **state)
{
    (void)state;
    assert_int_equal(sim_count_json_words(NULL), 0);
    assert_int_equal(count_json("\"two words\""), 2);
    assert_int_equal(count_json("42"), 0);
    /* Chat messages: content strings and parts; roles and types are not text. */
    assert_int_equal(count_json("[{\"role\":\"system\",\"content\":\"be brief\"},"
                                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a b "
                                "c\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x y\"}}]}]"),
                     5);
    /* Responses input items. */
    assert_int_equal(count_json("[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
                                "\"text\":\"stream this please\"}]}]"),
                     3);
    /* Embeddings: strings, and token arrays at one token per number. */
    assert_int_equal(count_json("[\"the first input\", \"and the second one\"]"), 7);
    assert_int_equal(count_json("[1, 2, 3]"), 3);
    assert_int_equal(count_json("[[1, 2], [3]]"), 3);
}

static void test_token_pacing(void **state)
{
    (void)state;
    /* No pacing: everything at once. */
    assert_int_equal(sim_pace_token_ms(0, 1000), 0);
    assert_int_equal(sim_pace_tokens_due(0, 0, 50), 50);
    assert_int_equal(sim_pace_tokens_due(0, -5, 50), 50);
    assert_int_equal(sim_pace_tokens_due(10, 0, 0), 0);
    /* 40 tokens/s: token 19 at 475 ms. */
    assert_int_equal(sim_pace_token_ms(40, 0), 0);
    assert_int_equal(sim_pace_token_ms(40, 1), 25);
    assert_int_equal(sim_pace_token_ms(40, 19), 475);
    assert_int_equal(sim_pace_token_ms(3, 1), 333);
    /* The first token is due at once, whatever the rate. */
    assert_int_equal(sim_pace_tokens_due(1, 0, 10), 1);
    assert_int_equal(sim_pace_tokens_due(40, 24, 20), 1);
    assert_int_equal(sim_pace_tokens_due(40, 25, 20), 2);
    assert_int_equal(sim_pace_tokens_due(40, 475, 20), 20);
    assert_int_equal(sim_pace_tokens_due(40, 10000, 20), 20);
    /* Faster than a token per millisecond: several due together. */
    assert_int_equal(sim_pace_tokens_due(5000, 0, 100), 5);
    assert_int_equal(sim_pace_tokens_due(5000, 1, 100), 10);
    /* The two agree for every token and rate: token i is due exactly at
     * sim_pace_token_ms(rate, i), not a millisecond earlier. */
    static const int64_t rates[] = {1, 3, 7, 40, 333, 999, 1000, 1001, 4096, 1000000};
    for (size_t r = 0; r < ARRAY_SIZE(rates); r++) {
        int64_t prev = 0;
        for (size_t i = 0; i < 3000; i++) {
            int64_t due = sim_pace_token_ms(rates[r], i);
            assert_true(due >= prev);
            prev = due;
            assert_true(sim_pace_tokens_due(rates[r], due, 3000) >= i + 1);
            if (due > 0)
                assert_true(sim_pace_tokens_due(rates[r], due - 1, 3000) <= i);
        }
    }
}

static void test_audio_pacing(void **state)
{
    (void)state;
    assert_int_equal(sim_pace_audio_ms(0, 5000), 0);
    assert_int_equal(sim_pace_audio_ms(1000000, 5000), 5000); /* real time */
    assert_int_equal(sim_pace_audio_ms(500000, 5000), 2500);  /* twice real time */
    assert_int_equal(sim_pace_audio_ms(2000000, 5000), 10000);
    assert_int_equal(sim_pace_audio_ms(333333, 3), 0); /* rounded down */
    assert_int_equal(sim_pace_audio_ms(1000000, -1), 0);
    /* The largest factor and a long stream: no overflow. */
    assert_int_equal(sim_pace_audio_ms(INT64_C(100000000), INT64_C(100000000000)),
                     INT64_C(10000000000000));
}

static void test_fault_for(void **state)
{
    (void)state;
    struct config_sim_tunables t = {0};
    assert_int_equal(sim_fault_for(&t, 0), CONFIG_SIM_ERR_KINDS);
    assert_int_equal(sim_fault_for(&t, 999999), CONFIG_SIM_ERR_KINDS);
    t.error_ppm[CONFIG_SIM_ERR_429] = 100000;
    t.error_ppm[CONFIG_SIM_ERR_500] = 200000;
    t.error_ppm[CONFIG_SIM_ERR_RESET] = 50000;
    assert_int_equal(sim_fault_for(&t, 0), CONFIG_SIM_ERR_429);
    assert_int_equal(sim_fault_for(&t, 99999), CONFIG_SIM_ERR_429);
    assert_int_equal(sim_fault_for(&t, 100000), CONFIG_SIM_ERR_500);
    assert_int_equal(sim_fault_for(&t, 299999), CONFIG_SIM_ERR_500);
    assert_int_equal(sim_fault_for(&t, 300000), CONFIG_SIM_ERR_RESET);
    assert_int_equal(sim_fault_for(&t, 349999), CONFIG_SIM_ERR_RESET);
    assert_int_equal(sim_fault_for(&t, 350000), CONFIG_SIM_ERR_KINDS);
    /* A rate of 1: every reply. */
    memset(&t, 0, sizeof(t));
    t.error_ppm[CONFIG_SIM_ERR_RESET] = 1000000;
    assert_int_equal(sim_fault_for(&t, 0), CONFIG_SIM_ERR_RESET);
    assert_int_equal(sim_fault_for(&t, 999999), CONFIG_SIM_ERR_RESET);
}

/* Draws with a seed: the same sequence for the same seed, another for
 * another; the rates come out as configured. */
static void test_seeded_draws(void **state)
{
    (void)state;
    struct config_sim_tunables t = {0};
    t.error_ppm[CONFIG_SIM_ERR_429] = 250000;
    t.error_ppm[CONFIG_SIM_ERR_500] = 100000;
    uint64_t a = 42, b = 42, c = 43;
    int counts[CONFIG_SIM_ERR_KINDS + 1] = {0};
    bool differ = false;
    for (int i = 0; i < 20000; i++) {
        uint64_t da = sim_rng_below(&a, 1000000);
        uint64_t db = sim_rng_below(&b, 1000000);
        uint64_t dc = sim_rng_below(&c, 1000000);
        assert_true(da < 1000000);
        assert_int_equal(da, db);
        differ |= da != dc;
        counts[sim_fault_for(&t, da)]++;
    }
    assert_true(differ);
    /* 20000 draws: 25% and 10% within 1.5 points (> 4 standard deviations). */
    assert_in_range(counts[CONFIG_SIM_ERR_429], 4700, 5300);
    assert_in_range(counts[CONFIG_SIM_ERR_500], 1700, 2300);
    assert_int_equal(counts[CONFIG_SIM_ERR_RESET], 0);
    assert_int_equal(sim_rng_below(&a, 1), 0);
    /* splitmix64's published first output for seed 0. */
    uint64_t z = 0;
    assert_true(sim_rng_next(&z) == UINT64_C(0xe220a8397b1dcdaf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),        cmocka_unit_test(test_json_words),
        cmocka_unit_test(test_token_pacing), cmocka_unit_test(test_audio_pacing),
        cmocka_unit_test(test_fault_for),    cmocka_unit_test(test_seeded_draws),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
