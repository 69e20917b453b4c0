/* test_config_simulate.c - the config's "simulate" section
 * (config_simulate.h) and the "simulate" upstreams: defaults, per-upstream
 * overrides, every error naming its key, the placeholder platform key of a
 * simulated provider, and "simulate:<URL>". */
#include "common.h"

#include "config.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void expect_error(const char *text, const char *needle)
{
    char *err = NULL;
    struct config *cfg = config_parse(text, &err);
    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("config accepted but should fail: %s", text);
    }
    assert_non_null(err);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\" (config: %s)", err, needle, text);
    free(err);
}

static struct config *parse_ok(const char *text)
{
    char *err = NULL;
    struct config *cfg = config_parse(text, &err);
    if (cfg == NULL)
        fail_msg("config rejected: %s (config: %s)", err ? err : "(no message)", text);
    return cfg;
}

static const struct config_sim_tunables *tun(const struct config *cfg, const char *key)
{
    const struct config_sim_tunables *t = config_simulate_tunables(&cfg->simulate, key);
    assert_non_null(t);
    return t;
}

static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{}");
    assert_false(cfg->simulate.present);
    assert_false(cfg->simulate.charge);
    assert_false(cfg->simulate.tls);
    assert_false(cfg->simulate.seeded);
    assert_false(config_simulated_charges(cfg));
    const struct config_sim_tunables *t = tun(cfg, "openai");
    assert_int_equal(t->ttfb_ms, 0);
    assert_int_equal(t->tokens_per_s, 0);
    assert_int_equal(t->reply_tokens, 16);
    assert_int_equal(t->audio_rtf_ppm, 0);
    for (int k = 0; k < CONFIG_SIM_ERR_KINDS; k++)
        assert_int_equal(t->error_ppm[k], 0);
    assert_null(config_simulate_tunables(&cfg->simulate, "nope"));
    /* Nothing is simulated unless an upstream says so. */
    assert_false(config_upstream_simulated(cfg, P_OPENAI, 0));
    assert_null(config_platform_key(cfg, P_OPENAI)->key);
    config_free(cfg);
}

static void test_overrides(void **state)
{
    (void)state;
    struct config *cfg = parse_ok(
        "{\"simulate\": {\"charge\": true, \"tls\": true, \"seed\": 42, \"ttfb_ms\": 20, "
        "\"tokens_per_s\": 50,"
        " \"reply_tokens\": 8, \"audio_rtf\": 0.5, \"errors\": {\"429\": 0.1, \"reset\": 0.25},"
        " \"providers\": {\"anthropic\": {\"ttfb_ms\": 300, \"errors\": {\"500\": 0.5}},"
        "                 \"azure_speech_stt\": {\"audio_rtf\": 2}}}}");
    assert_true(cfg->simulate.present);
    assert_true(cfg->simulate.charge);
    assert_true(cfg->simulate.tls);
    assert_true(config_simulated_charges(cfg));
    assert_true(cfg->simulate.seeded);
    assert_int_equal(cfg->simulate.seed, 42);
    const struct config_sim_tunables *o = tun(cfg, "openai");
    assert_int_equal(o->ttfb_ms, 20);
    assert_int_equal(o->tokens_per_s, 50);
    assert_int_equal(o->reply_tokens, 8);
    assert_int_equal(o->audio_rtf_ppm, 500000);
    assert_int_equal(o->error_ppm[CONFIG_SIM_ERR_429], 100000);
    assert_int_equal(o->error_ppm[CONFIG_SIM_ERR_500], 0);
    assert_int_equal(o->error_ppm[CONFIG_SIM_ERR_RESET], 250000);
    /* An override replaces what it names, one error rate at a time. */
    const struct config_sim_tunables *a = tun(cfg, "anthropic");
    assert_int_equal(a->ttfb_ms, 300);
    assert_int_equal(a->tokens_per_s, 50);
    assert_int_equal(a->error_ppm[CONFIG_SIM_ERR_429], 100000);
    assert_int_equal(a->error_ppm[CONFIG_SIM_ERR_500], 500000);
    assert_int_equal(a->error_ppm[CONFIG_SIM_ERR_RESET], 250000);
    assert_int_equal(tun(cfg, "azure_speech_stt")->audio_rtf_ppm, 2000000);
    assert_int_equal(tun(cfg, "azure_speech_tts")->audio_rtf_ppm, 500000);
    config_free(cfg);

    /* A rate of exactly 1 and a seed of 0 are values, not absences. */
    cfg = parse_ok("{\"simulate\": {\"seed\": 0, \"errors\": {\"reset\": 1}}}");
    assert_true(cfg->simulate.seeded);
    assert_int_equal(tun(cfg, "deepseek")->error_ppm[CONFIG_SIM_ERR_RESET], 1000000);
    config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{\"simulate\": []}", "simulate: expected an object, got an array");
    expect_error("{\"simulate\": {\"ttfb\": 1}}",
                 "unknown key \"simulate.ttfb\" (expected one of: charge, tls, seed, ttfb_ms");
    expect_error("{\"simulate\": {\"charge\": \"no\"}}",
                 "simulate.charge: expected true or false, got a string");
    expect_error("{\"simulate\": {\"tls\": 1}}",
                 "simulate.tls: expected true or false, got an integer");
    expect_error("{\"simulate\": {\"seed\": -1}}", "simulate.seed: -1 is out of range");
    expect_error("{\"simulate\": {\"ttfb_ms\": -5}}", "simulate.ttfb_ms: -5 is out of range");
    expect_error("{\"simulate\": {\"ttfb_ms\": 1.5}}",
                 "simulate.ttfb_ms: expected an integer, got a number with a fraction");
    expect_error("{\"simulate\": {\"reply_tokens\": 0}}",
                 "simulate.reply_tokens: 0 is out of range (1..1000000)");
    expect_error("{\"simulate\": {\"tokens_per_s\": 2000000}}",
                 "simulate.tokens_per_s: 2000000 is out of range");
    expect_error("{\"simulate\": {\"audio_rtf\": \"fast\"}}",
                 "simulate.audio_rtf: expected a number, got a string");
    expect_error("{\"simulate\": {\"audio_rtf\": 101}}",
                 "simulate.audio_rtf: 101 is out of range (0..100)");
    expect_error("{\"simulate\": {\"errors\": {\"404\": 0.1}}}",
                 "unknown key \"simulate.errors.404\" (expected one of: 429, 500, reset)");
    expect_error("{\"simulate\": {\"errors\": {\"429\": 1.5}}}",
                 "simulate.errors.429: 1.5 is out of range (0..1)");
    expect_error("{\"simulate\": {\"errors\": {\"500\": -0.1}}}",
                 "simulate.errors.500: -0.1 is out of range (0..1)");
    expect_error("{\"simulate\": {\"errors\": {\"429\": 0.6, \"reset\": 0.6}}}",
                 "simulate.errors: the rates add up to 1.2");
    /* The sum counts what the defaults leave in place. */
    expect_error("{\"simulate\": {\"errors\": {\"429\": 0.6},"
                 " \"providers\": {\"openai\": {\"errors\": {\"500\": 0.5}}}}}",
                 "simulate.providers.openai.errors: the rates add up to 1.1");
    expect_error("{\"simulate\": {\"providers\": {\"opneai\": {}}}}",
                 "unknown key \"simulate.providers.opneai\" (expected one of: openai, "
                 "elevenlabs, azure_speech_tts");
    expect_error("{\"simulate\": {\"providers\": {\"openai\": {\"seed\": 1}}}}",
                 "unknown key \"simulate.providers.openai.seed\" (expected one of: ttfb_ms");
    expect_error("{\"simulate\": {\"providers\": {\"openai\": 3}}}",
                 "simulate.providers.openai: expected an object, got an integer");
}

/* "simulate" upstreams: no URL until the simulator runs, a placeholder
 * platform key when the platform has none (or its variable is unset), the
 * platform's own key when it has one. */
static void test_simulated_upstreams(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("BYOK_TEST_SIM_UNSET"), 0);
    assert_int_equal(setenv("BYOK_TEST_SIM_SET", "sk-real-platform", 1), 0);
    struct config *cfg =
        parse_ok("{\"upstreams\": {\"openai\": \"simulate\", \"anthropic\": \"simulate\","
                 "  \"deepseek\": \"simulate\", \"azure_speech_tts\": \"simulate\","
                 "  \"deepgram\": \"simulate:http://127.0.0.1:9100/\"},"
                 " \"platform_keys\": {\"anthropic\": {\"key_env\": \"BYOK_TEST_SIM_UNSET\"},"
                 "  \"deepseek\": {\"key_env\": \"BYOK_TEST_SIM_SET\"}}}");
    assert_true(config_upstream_simulated(cfg, P_OPENAI, 0));
    assert_int_equal(cfg->upstream_kind[provider_index(P_OPENAI)][0], CONFIG_UPSTREAM_SIM_LOCAL);
    assert_null(config_upstream(cfg, P_OPENAI, 0));
    /* No entry: the placeholder. */
    const struct config_platform_key *pk = config_platform_key(cfg, P_OPENAI);
    assert_true(pk->placeholder);
    assert_string_equal(pk->key, CONFIG_SIM_PLATFORM_KEY);
    /* An entry whose variable is unset: the placeholder too. */
    pk = config_platform_key(cfg, P_ANTHROPIC);
    assert_true(pk->placeholder);
    assert_string_equal(pk->key, CONFIG_SIM_PLATFORM_KEY);
    /* The platform's own key when it is there. */
    pk = config_platform_key(cfg, provider_find("deepseek"));
    assert_false(pk->placeholder);
    assert_string_equal(pk->key, "sk-real-platform");
    /* A byok-sim elsewhere: simulated, its URL kept (trailing slash gone). */
    const struct provider *dg = provider_find("deepgram");
    assert_true(config_upstream_simulated(cfg, dg, 0));
    assert_int_equal(cfg->upstream_kind[provider_index(dg)][0], CONFIG_UPSTREAM_SIM_REMOTE);
    assert_string_equal(config_upstream(cfg, dg, 0), "http://127.0.0.1:9100");
    assert_true(config_platform_key(cfg, dg)->placeholder);
    /* Azure: only its TTS host is simulated, so its platform key is still
     * the platform's (none here), not a placeholder that would reach the
     * real STT host. */
    assert_true(config_upstream_simulated(cfg, P_AZURE_SPEECH, 0));
    assert_false(config_upstream_simulated(cfg, P_AZURE_SPEECH, 1));
    assert_null(config_platform_key(cfg, P_AZURE_SPEECH)->key);
    /* Real upstreams are not simulated. */
    assert_false(config_upstream_simulated(cfg, provider_find("cartesia"), 0));
    /* The simulator started: its URL. */
    assert_int_equal(config_set_upstream(cfg, provider_index(P_OPENAI), 0, "http://127.0.0.1:1"),
                     0);
    assert_string_equal(config_upstream(cfg, P_OPENAI, 0), "http://127.0.0.1:1");
    config_free(cfg);

    /* Both Azure hosts simulated: a placeholder with a placeholder region. */
    cfg = parse_ok("{\"upstreams\": {\"azure_speech_tts\": \"simulate\","
                   " \"azure_speech_stt\": \"simulate\"}}");
    pk = config_platform_key(cfg, P_AZURE_SPEECH);
    assert_true(pk->placeholder);
    assert_string_equal(pk->region, "eastus");
    config_free(cfg);

    /* A real upstream still needs its variable. */
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_SIM_UNSET\"}}}",
                 "platform_keys.openai.key_env: environment variable BYOK_TEST_SIM_UNSET is not "
                 "set");
    expect_error("{\"upstreams\": {\"openai\": \"simulate:ftp://x\"}}",
                 "upstreams.openai: \"ftp://x\" must start with http:// or https://");
    expect_error("{\"upstreams\": {\"openai\": \"simulated\"}}",
                 "upstreams.openai: \"simulated\" must start with http:// or https://");
    expect_error("{\"upstreams\": {\"azure_speech_tts\": \"simulate:http://127.0.0.1:9\"}}",
                 "must contain \"{region}\" exactly once");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_simulated_upstreams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
