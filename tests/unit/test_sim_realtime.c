/* test_sim_realtime.c - the simulated Realtime API's usage derivation
 * (sim/sim_openai_realtime.c, sim_openai.h): a response reads the
 * conversation (and instructions) at its start, its reply joins the
 * conversation at its end, and what it read and wrote is the cached prefix
 * of the next; response.done's usage object adds up the way OpenAI's
 * does (cached within input, totals the sums of their details). */
#include "common.h"

#include "sim_openai.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int64_t at_int(json_t *o, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(o, a);
    if (b != NULL)
        v = json_object_get(v, b);
    if (c != NULL)
        v = json_object_get(v, c);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* The usage object is self-consistent and says what u says. */
static void check_json(const struct sim_rt_usage *u)
{
    json_t *j = sim_openai_rt_usage_json(u);
    assert_non_null(j);
    int64_t in = u->in_text + u->in_audio, out = u->out_text + u->out_audio;
    assert_int_equal(at_int(j, "input_tokens", NULL, NULL), in);
    assert_int_equal(at_int(j, "output_tokens", NULL, NULL), out);
    assert_int_equal(at_int(j, "total_tokens", NULL, NULL), in + out);
    assert_int_equal(at_int(j, "input_token_details", "text_tokens", NULL), u->in_text);
    assert_int_equal(at_int(j, "input_token_details", "audio_tokens", NULL), u->in_audio);
    assert_int_equal(at_int(j, "input_token_details", "image_tokens", NULL), 0);
    int64_t cached = at_int(j, "input_token_details", "cached_tokens", NULL);
    assert_int_equal(cached, u->cached_text + u->cached_audio);
    assert_true(cached <= in);
    assert_int_equal(at_int(j, "input_token_details", "cached_tokens_details", "text_tokens"),
                     u->cached_text);
    assert_int_equal(at_int(j, "input_token_details", "cached_tokens_details", "audio_tokens"),
                     u->cached_audio);
    assert_int_equal(at_int(j, "output_token_details", "text_tokens", NULL), u->out_text);
    assert_int_equal(at_int(j, "output_token_details", "audio_tokens", NULL), u->out_audio);
    json_decref(j);
}

static void test_conversation(void **state)
{
    (void)state;
    struct sim_rt_ledger l = {0};
    struct sim_rt_usage u;
    /* 1 s of user audio committed (10 tokens), 3 words of instructions. */
    l.audio += 10;
    sim_openai_rt_begin(&l, 3, true, &u);
    assert_int_equal(u.in_text, 3);
    assert_int_equal(u.in_audio, 10);
    assert_int_equal(u.cached_text + u.cached_audio, 0);
    /* 16 words and 5934 ms of audio out: 119 tokens (1 per 50 ms, up). */
    sim_openai_rt_end(&l, &u, 16, 5934, true);
    assert_int_equal(u.out_text, 16);
    assert_int_equal(u.out_audio, 119);
    check_json(&u);
    assert_int_equal(l.text, 16);
    assert_int_equal(l.audio, 129);
    /* The next response re-reads everything: the first's input and output,
     * all cached. */
    struct sim_rt_usage v;
    sim_openai_rt_begin(&l, 3, true, &v);
    assert_int_equal(v.in_text + v.in_audio, 3 + 10 + 16 + 119);
    assert_int_equal(v.cached_text, 19);
    assert_int_equal(v.cached_audio, 129);
    sim_openai_rt_end(&l, &v, 16, 5934, true);
    check_json(&v);
    /* A user text item of 5 words: read, not cached. */
    l.text += 5;
    struct sim_rt_usage w;
    sim_openai_rt_begin(&l, 3, true, &w);
    assert_int_equal(w.in_text, 3 + 16 + 16 + 5);
    assert_int_equal(w.in_audio, 10 + 119 + 119);
    assert_int_equal(w.cached_text + w.cached_audio,
                     v.in_text + v.in_audio + v.out_text + v.out_audio);
    assert_int_equal(w.in_text - w.cached_text, 5);
    check_json(&w);
}

/* conversation "none": only the instructions (and its own input), nothing
 * cached, and the conversation does not change. */
static void test_out_of_band(void **state)
{
    (void)state;
    struct sim_rt_ledger l = {.text = 40, .audio = 60, .cached_text = 30, .cached_audio = 60};
    struct sim_rt_ledger before = l;
    struct sim_rt_usage u;
    sim_openai_rt_begin(&l, 7, false, &u);
    assert_int_equal(u.in_text, 7);
    assert_int_equal(u.in_audio, 0);
    assert_int_equal(u.cached_text + u.cached_audio, 0);
    sim_openai_rt_end(&l, &u, 4, 0, false);
    assert_int_equal(u.out_text, 4);
    assert_int_equal(u.out_audio, 0);
    assert_memory_equal(&l, &before, sizeof(l));
    check_json(&u);
    /* A cache larger than the input (items deleted since) is capped. */
    struct sim_rt_ledger shrunk = {.text = 2, .audio = 0, .cached_text = 50, .cached_audio = 9};
    sim_openai_rt_begin(&shrunk, 0, true, &u);
    assert_int_equal(u.cached_text, 2);
    assert_int_equal(u.cached_audio, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversation),
        cmocka_unit_test(test_out_of_band),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
