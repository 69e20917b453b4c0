/* test_pricing.c - unit tests of price lookup (exact, longest prefix, "*")
 * and of cost arithmetic (parts, fallbacks, single half-up rounding, no
 * overflow). The config is built by hand: only pricing.c is under test. */
#include "common.h"

#include "pricing.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* An entry as config.c makes it: the model and its match length. */
static struct config_price unset(const char *model)
{
    size_t n = strlen(model);
    bool prefix = n > 0 && model[n - 1] == '*';
    return (struct config_price){
        .model = (char *)model,
        .match_len = prefix ? n - 1 : n,
        .prefix = prefix,
        .input_per_1m = -1,
        .cached_input_per_1m = -1,
        .output_per_1m = -1,
        .audio_input_per_1m = -1,
        .audio_output_per_1m = -1,
        .characters_per_1m = -1,
        .audio_per_minute = -1,
        .session_per_minute = -1,
    };
}

static void test_lookup_precedence(void **state)
{
    (void)state;
    /* "*" first and the shorter prefix after the longer one: order in the
     * table must not matter. */
    struct config_price openai[] = {
        unset("*"), unset("gpt-4o-mini*"), unset("gpt-4o*"), unset("gpt-4o-mini"), unset("tts-1"),
    };
    struct config_price eleven[] = {unset("eleven_turbo_v2_5")};
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pricing[provider_index(P_OPENAI)].prices = openai;
    cfg.pricing[provider_index(P_OPENAI)].n_prices = ARRAY_SIZE(openai);
    cfg.pricing[provider_index(P_ELEVENLABS)].prices = eleven;
    cfg.pricing[provider_index(P_ELEVENLABS)].n_prices = ARRAY_SIZE(eleven);

    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "gpt-4o-mini"), &openai[3]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "gpt-4o-mini-2024-07-18"), &openai[1]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "gpt-4o-2024-11-20"), &openai[2]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "gpt-4o"), &openai[2]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "tts-1"), &openai[4]);
    /* An exact entry is not a prefix. */
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "tts-1-hd"), &openai[0]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, "o3"), &openai[0]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, ""), &openai[0]);
    assert_ptr_equal(pricing_find(&cfg, P_OPENAI, NULL), &openai[0]);
    /* No "*" entry: nothing. */
    assert_ptr_equal(pricing_find(&cfg, P_ELEVENLABS, "eleven_turbo_v2_5"), &eleven[0]);
    assert_null(pricing_find(&cfg, P_ELEVENLABS, "eleven_multilingual_v2"));
    assert_null(pricing_find(&cfg, P_DEEPGRAM, "nova-3"));
    assert_null(pricing_find(NULL, P_OPENAI, "gpt-4o"));
    assert_null(pricing_find(&cfg, NULL, "gpt-4o"));
}

static void test_design_examples(void **state)
{
    (void)state;
    struct config_price mini = unset("gpt-4o-mini");
    mini.input_per_1m = 150000;
    mini.output_per_1m = 600000;
    struct usage_units u = {.input_tokens = 12, .output_tokens = 5};
    /* 12 × 0.15 + 5 × 0.60 = 4.8 micro-USD → 5. */
    assert_int_equal(pricing_cost(&mini, &u), 5);

    struct config_price tts = unset("tts-1");
    tts.characters_per_1m = 15000000;
    struct usage_units c = {.characters = 4095};
    assert_int_equal(pricing_cost(&tts, &c), 61425);

    assert_int_equal(pricing_cost(NULL, &u), 0);
}

static void test_rounding_once(void **state)
{
    (void)state;
    struct config_price p = unset("m");
    p.input_per_1m = 500000; /* 0.5 micro per token */
    struct usage_units u = {.input_tokens = 1};
    assert_int_equal(pricing_cost(&p, &u), 1); /* exactly half: up */
    p.input_per_1m = 499999;
    assert_int_equal(pricing_cost(&p, &u), 0);

    /* Two parts of 0.4 each: rounded separately 0 + 0, once 0.8 → 1. */
    p.input_per_1m = 400000;
    p.output_per_1m = 400000;
    u.output_tokens = 1;
    assert_int_equal(pricing_cost(&p, &u), 1);

    /* Fractions of token and audio parts add up before rounding: 0.3 for a
     * token and 0.25 for 1 ms at 15000 per minute. */
    struct config_price a = unset("m");
    a.input_per_1m = 300000;
    a.audio_per_minute = 15000;
    struct usage_units ua = {.input_tokens = 1, .audio_ms = 1};
    assert_int_equal(pricing_cost(&a, &ua), 1);
    ua.input_tokens = 0;
    assert_int_equal(pricing_cost(&a, &ua), 0);
}

static void test_audio_minutes(void **state)
{
    (void)state;
    struct config_price w = unset("whisper-1");
    w.audio_per_minute = 6000; /* $0.006 / min */
    struct usage_units u = {.audio_ms = 90000};
    assert_int_equal(pricing_cost(&w, &u), 9000);
    u.audio_ms = 5; /* 0.5 micro */
    assert_int_equal(pricing_cost(&w, &u), 1);
    u.audio_ms = 4; /* 0.4 */
    assert_int_equal(pricing_cost(&w, &u), 0);
    u.audio_ms = 2457; /* 245.7 */
    assert_int_equal(pricing_cost(&w, &u), 246);
}

static void test_parts_and_fallbacks(void **state)
{
    (void)state;
    struct usage_units u = {
        .input_tokens = 1000,
        .cached_input_tokens = 400,
        .audio_input_tokens = 100,
        .output_tokens = 300,
        .audio_output_tokens = 200,
    };
    struct config_price p = unset("gpt-realtime");
    p.input_per_1m = 4000000;
    p.cached_input_per_1m = 400000;
    p.audio_input_per_1m = 32000000;
    p.output_per_1m = 16000000;
    p.audio_output_per_1m = 64000000;
    /* 500×4 + 400×0.4 + 100×32 + 100×16 + 200×64 = 2000+160+3200+1600+12800. */
    assert_int_equal(pricing_cost(&p, &u), 19760);

    /* Unset cached and audio prices fall back to input and output. */
    struct config_price f = unset("m");
    f.input_per_1m = 1000000;
    f.output_per_1m = 2000000;
    assert_int_equal(pricing_cost(&f, &u), 1000 + 600);

    /* Unset input/output/characters/audio count as 0. */
    struct config_price none = unset("m");
    struct usage_units all = {
        .input_tokens = 5, .output_tokens = 5, .characters = 5, .audio_ms = 60000};
    assert_int_equal(pricing_cost(&none, &all), 0);
    none.characters_per_1m = 1000000;
    assert_int_equal(pricing_cost(&none, &all), 5);

    /* Subsets larger than their total (bad report) do not go negative. */
    struct usage_units bad = {.input_tokens = 10,
                              .cached_input_tokens = 50,
                              .output_tokens = -4,
                              .audio_output_tokens = 7};
    struct config_price q = unset("m");
    q.input_per_1m = 1000000;
    q.cached_input_per_1m = 500000;
    q.output_per_1m = 1000000;
    assert_int_equal(pricing_cost(&q, &bad), 5); /* 10 cached × 0.5 */
}

static void test_big_numbers(void **state)
{
    (void)state;
    struct config_price p = unset("m");
    p.input_per_1m = 1000000000;                            /* $1000 per 1M */
    struct usage_units u = {.input_tokens = 1000000000000}; /* 1e12 tokens */
    assert_int_equal(pricing_cost(&p, &u), 1000000000000000LL);

    /* Products beyond 64 bits are exact; a total beyond int64 saturates. */
    p.input_per_1m = INT64_MAX;
    p.output_per_1m = INT64_MAX;
    p.characters_per_1m = INT64_MAX;
    p.audio_per_minute = INT64_MAX;
    struct usage_units big = {.input_tokens = INT64_MAX,
                              .output_tokens = INT64_MAX,
                              .characters = INT64_MAX,
                              .audio_ms = INT64_MAX};
    assert_int_equal(pricing_cost(&p, &big), INT64_MAX);
    struct usage_units one = {.input_tokens = 3000000};
    /* 3e6 × (2^63-1) / 1e6 = 3 × (2^63-1) > int64: saturates. */
    assert_int_equal(pricing_cost(&p, &one), INT64_MAX);
    struct usage_units small = {.input_tokens = 1000000};
    assert_int_equal(pricing_cost(&p, &small), INT64_MAX); /* exactly INT64_MAX */
    struct usage_units half = {.input_tokens = 500000};
    /* (2^63-1)/2 = 4611686018427387903.5 → up. */
    assert_int_equal(pricing_cost(&p, &half), 4611686018427387904LL);
}

/* DESIGN §4a: the shipped config prices every current model of the seven
 * providers (a wallet line for an unpriced model is refused). The names
 * are the ones the SDKs and the providers' docs use today, dated snapshots
 * included; each must find a price with the right fields. */
static void test_shipped_config_prices_current_models(void **state)
{
    (void)state;
    static const struct {
        const char *provider, *model;
        unsigned need; /* price fields that must be set */
    } models[] = {
        {"openai", "gpt-4o-mini", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4o-mini-2024-07-18", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4o", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4o-2024-11-20", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4.1", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4.1-mini", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-4.1-nano-2025-04-14", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-5", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-5-mini", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-5-nano", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "o3", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "o4-mini", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"openai", "gpt-realtime", PROVIDER_PRICE_AUDIO_INPUT | PROVIDER_PRICE_AUDIO_OUTPUT},
        {"openai", "gpt-realtime-2025-08-28", PROVIDER_PRICE_AUDIO_INPUT},
        {"openai", "gpt-realtime-mini", PROVIDER_PRICE_AUDIO_INPUT | PROVIDER_PRICE_AUDIO_OUTPUT},
        {"openai", "gpt-4o-realtime-preview", PROVIDER_PRICE_AUDIO_INPUT},
        {"openai", "gpt-4o-mini-realtime-preview-2024-12-17", PROVIDER_PRICE_AUDIO_INPUT},
        {"openai", "text-embedding-3-small", PROVIDER_PRICE_INPUT},
        {"openai", "text-embedding-3-large", PROVIDER_PRICE_INPUT},
        {"openai", "tts-1", PROVIDER_PRICE_CHARACTERS},
        {"openai", "tts-1-hd", PROVIDER_PRICE_CHARACTERS},
        {"openai", "gpt-4o-mini-tts", PROVIDER_PRICE_OUTPUT},
        {"openai", "whisper-1", PROVIDER_PRICE_AUDIO_MINUTE},
        {"openai", "gpt-4o-transcribe", PROVIDER_PRICE_AUDIO_INPUT},
        {"openai", "gpt-4o-mini-transcribe", PROVIDER_PRICE_AUDIO_INPUT},
        {"elevenlabs", "eleven_multilingual_v2", PROVIDER_PRICE_CHARACTERS},
        {"elevenlabs", "eleven_turbo_v2_5", PROVIDER_PRICE_CHARACTERS},
        {"elevenlabs", "eleven_flash_v2_5", PROVIDER_PRICE_CHARACTERS},
        {"elevenlabs", "eleven_v3", PROVIDER_PRICE_CHARACTERS},
        {"azure_speech", "en-US-JennyNeural", PROVIDER_PRICE_CHARACTERS},
        {"azure_speech", "", PROVIDER_PRICE_AUDIO_MINUTE},
        {"deepgram", "nova-3", PROVIDER_PRICE_AUDIO_MINUTE},
        {"deepgram", "nova-2-general", PROVIDER_PRICE_AUDIO_MINUTE},
        {"deepgram", "aura-2-thalia-en", PROVIDER_PRICE_CHARACTERS},
        {"deepgram", "aura-asteria-en", PROVIDER_PRICE_CHARACTERS},
        {"anthropic", "claude-sonnet-4-5", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"anthropic", "claude-sonnet-4-20250514", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"anthropic", "claude-opus-4-1-20250805", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"anthropic", "claude-3-5-haiku-latest", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"anthropic", "claude-haiku-4-5", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"cartesia", "sonic-2", PROVIDER_PRICE_CHARACTERS},
        {"cartesia", "sonic-3", PROVIDER_PRICE_CHARACTERS},
        {"deepseek", "deepseek-chat", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
        {"deepseek", "deepseek-reasoner", PROVIDER_PRICE_INPUT | PROVIDER_PRICE_OUTPUT},
    };
    char *err = NULL;
    setenv("OPENAI_API_KEY", "sk-test-unused", 1);
    struct config *cfg = config_load(BYOK_SOURCE_DIR "/config/byok-proxy.json", &err);
    if (cfg == NULL)
        fail_msg("config/byok-proxy.json: %s", err);
    for (size_t i = 0; i < ARRAY_SIZE(models); i++) {
        const struct config_price *pr =
            pricing_find(cfg, provider_find(models[i].provider), models[i].model);
        if (pr == NULL)
            fail_msg("%s %s has no price in the shipped config", models[i].provider,
                     models[i].model);
        const int64_t fields[] = {pr->input_per_1m,        pr->cached_input_per_1m,
                                  pr->output_per_1m,       pr->audio_input_per_1m,
                                  pr->audio_output_per_1m, pr->characters_per_1m,
                                  pr->audio_per_minute,    pr->session_per_minute};
        for (size_t b = 0; b < ARRAY_SIZE(fields); b++)
            if ((models[i].need & (1u << b)) && fields[b] <= 0)
                fail_msg("%s %s (entry %s) lacks price field %zu", models[i].provider,
                         models[i].model, pr->model, b);
    }
    /* Fail-closed where the name carries the price: unknown models stay
     * unpriced. */
    assert_null(pricing_find(cfg, P_OPENAI, "gpt-7-ultra"));
    assert_null(pricing_find(cfg, P_ANTHROPIC, "claude-9"));
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_precedence),
        cmocka_unit_test(test_design_examples),
        cmocka_unit_test(test_rounding_once),
        cmocka_unit_test(test_audio_minutes),
        cmocka_unit_test(test_parts_and_fallbacks),
        cmocka_unit_test(test_big_numbers),
        cmocka_unit_test(test_shipped_config_prices_current_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
