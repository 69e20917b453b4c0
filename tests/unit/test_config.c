/* test_config.c - config loading: a full file, defaults, every error class
 * (each message must name the offending key) and the shipped example. The
 * keys per provider (upstream hosts, platform keys and headers, regions,
 * billed price fields) come from the provider registry. */
#include "common.h"

#include "config.h"
#include "providers/azure_speech.h"
#include "providers_test.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Parses text and asserts it fails with an error containing every needle
 * (NULL-terminated list). */
static void expect_error(const char *text, ...)
{
    char *err = NULL;
    struct config *cfg = config_parse(text, &err);
    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("config accepted but should fail: %s", text);
    }
    assert_non_null(err);
    va_list ap;
    va_start(ap, text);
    for (const char *needle = va_arg(ap, const char *); needle != NULL;
         needle = va_arg(ap, const char *)) {
        if (strstr(err, needle) == NULL)
            fail_msg("error \"%s\" does not contain \"%s\" (config: %s)", err, needle, text);
    }
    va_end(ap);
    free(err);
}

static struct config *parse_ok(const char *text)
{
    char *err = NULL;
    struct config *cfg = config_parse(text, &err);
    if (cfg == NULL)
        fail_msg("config rejected: %s (config: %s)", err ? err : "(no message)", text);
    assert_null(err);
    return cfg;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_full_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/byok-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[128], key[128], ca[128], text[8192];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    write_file(cert, "x");
    write_file(key, "x");
    write_file(ca, "x");
    assert_int_equal(setenv("BYOK_TEST_OPENAI", "sk-test-openai-value", 1), 0);
    assert_int_equal(setenv("BYOK_TEST_AZURE", "azure-test-value", 1), 0);
    snprintf(
        text, sizeof(text),
        "{\"listen\": \"0.0.0.0:9080\", \"admin_listen\": \"[::1]:9081\","
        " \"tls\": {\"listen\": \"localhost:9443\", \"cert_file\": \"%s\", \"key_file\": \"%s\"},"
        " \"workers\": 3,"
        " \"store\": {\"backend\": \"redis\", \"url\": \"redis://127.0.0.1:6379/0\"},"
        " \"usage\": {\"jsonl_path\": \"u.jsonl\", \"spool_dir\": \"sp\", \"ws_interval_s\": 5},"
        " \"upstreams\": {\"openai\": \"http://127.0.0.1:9000/prefix/\","
        "   \"azure_speech_tts\": \"http://127.0.0.1:9001/{region}/tts\","
        "   \"azure_speech_stt\": \"https://{region}.stt.example.test:8443\","
        "   \"deepseek\": \"https://[::1]:9002\"},"
        " \"upstream_ca_file\": \"%s\","
        " \"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OPENAI\","
        "   \"organization\": \"org-abc\", \"project\": \"proj_1\"},"
        "   \"azure_speech\": {\"key_env\": \"BYOK_TEST_AZURE\", \"region\": \"westeurope\"}},"
        " \"session_ttl_s\": 120, \"log_level\": \"debug\","
        " \"limits\": {\"max_request_line\": 4096, \"max_headers\": 50,"
        "   \"upstream_timeout_ms\": 0, \"client_high_watermark\": 65536},"
        " \"pricing\": {\"openai\": {\"gpt-4o-mini*\": {\"input_per_1m\": 150000,"
        "   \"output_per_1m\": 600000, \"session_per_minute\": 0}, \"*\": {\"input_per_1m\": 1}},"
        "   \"elevenlabs\": {\"eleven_turbo_v2_5\": {\"characters_per_1m\": 50000000}}}}",
        cert, key, ca);
    struct config *cfg = parse_ok(text);
    assert_string_equal(cfg->listen, "0.0.0.0:9080");
    assert_string_equal(cfg->admin_listen, "[::1]:9081");
    assert_string_equal(cfg->tls_listen, "localhost:9443");
    assert_string_equal(cfg->tls_cert_file, cert);
    assert_string_equal(cfg->tls_key_file, key);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->store_backend, "redis");
    assert_string_equal(cfg->store_url, "redis://127.0.0.1:6379/0");
    assert_null(cfg->store_path);
    assert_string_equal(cfg->usage_jsonl_path, "u.jsonl");
    assert_string_equal(cfg->usage_spool_dir, "sp");
    assert_int_equal(cfg->usage_ws_interval_s, 5);
    /* Trailing slash dropped so routes can append "/v1/...". */
    assert_string_equal(config_upstream(cfg, P_OPENAI, 0), "http://127.0.0.1:9000/prefix");
    assert_string_equal(config_upstream(cfg, P_AZURE_SPEECH, 0),
                        "http://127.0.0.1:9001/{region}/tts");
    assert_string_equal(config_upstream(cfg, P_AZURE_SPEECH, 1),
                        "https://{region}.stt.example.test:8443");
    assert_string_equal(config_upstream(cfg, P_DEEPSEEK, 0), "https://[::1]:9002");
    assert_string_equal(config_upstream(cfg, P_ELEVENLABS, 0), "https://api.elevenlabs.io");
    assert_string_equal(cfg->upstream_ca_file, ca);
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->key_env, "BYOK_TEST_OPENAI");
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->key, "sk-test-openai-value");
    assert_null(config_platform_key(cfg, P_OPENAI)->region);
    /* Platform headers, in the provider's declaration order. */
    assert_int_equal(P_OPENAI->n_platform_headers, 2);
    assert_string_equal(P_OPENAI->platform_headers[0].config_key, "organization");
    assert_string_equal(P_OPENAI->platform_headers[0].header, "OpenAI-Organization");
    assert_string_equal(P_OPENAI->platform_headers[1].config_key, "project");
    assert_string_equal(P_OPENAI->platform_headers[1].header, "OpenAI-Project");
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->headers[0], "org-abc");
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->headers[1], "proj_1");
    assert_null(config_platform_key(cfg, P_OPENAI)->headers[2]);
    assert_null(config_platform_key(cfg, P_AZURE_SPEECH)->headers[0]);
    assert_string_equal(config_platform_key(cfg, P_AZURE_SPEECH)->key, "azure-test-value");
    assert_string_equal(config_platform_key(cfg, P_AZURE_SPEECH)->region, "westeurope");
    assert_null(config_platform_key(cfg, P_DEEPGRAM)->key_env);
    assert_null(config_platform_key(cfg, P_DEEPGRAM)->key);
    assert_int_equal(cfg->session_ttl_s, 120);
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->limits.max_request_line, 4096);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_int_equal(cfg->limits.upstream_timeout_ms, 0);
    assert_int_equal(cfg->limits.client_high_watermark, 65536);
    assert_int_equal(cfg->limits.max_header_bytes, 32768); /* default kept */
    assert_int_equal(config_prices(cfg, P_OPENAI)->n_prices, 2);
    const struct config_price *pr = &config_prices(cfg, P_OPENAI)->prices[0];
    assert_string_equal(pr->model, "gpt-4o-mini*");
    assert_int_equal(pr->input_per_1m, 150000);
    assert_int_equal(pr->output_per_1m, 600000);
    assert_int_equal(pr->session_per_minute, 0);
    assert_int_equal(pr->cached_input_per_1m, -1);
    assert_int_equal(pr->audio_per_minute, -1);
    assert_string_equal(config_prices(cfg, P_OPENAI)->prices[1].model, "*");
    assert_int_equal(config_prices(cfg, P_ELEVENLABS)->n_prices, 1);
    assert_int_equal(config_prices(cfg, P_ELEVENLABS)->prices[0].characters_per_1m, 50000000);
    assert_int_equal(config_prices(cfg, P_DEEPGRAM)->n_prices, 0);
    config_free(cfg);
    unlink(cert);
    unlink(key);
    unlink(ca);
    rmdir(dir);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{}");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:8081");
    assert_null(cfg->tls_listen);
    assert_null(cfg->tls_cert_file);
    assert_int_equal(cfg->workers, cores < 1 ? 1 : MIN(cores, 64));
    assert_string_equal(cfg->store_backend, "sqlite");
    assert_string_equal(cfg->store_path, "var/byok.db");
    assert_null(cfg->usage_jsonl_path);
    assert_string_equal(cfg->usage_spool_dir, "var/spool");
    assert_string_equal(config_upstream(cfg, P_OPENAI, 0), "https://api.openai.com");
    assert_string_equal(config_upstream(cfg, P_ELEVENLABS, 0), "https://api.elevenlabs.io");
    assert_string_equal(config_upstream(cfg, P_AZURE_SPEECH, 0),
                        "https://{region}.tts.speech.microsoft.com");
    assert_string_equal(config_upstream(cfg, P_AZURE_SPEECH, 1),
                        "https://{region}.stt.speech.microsoft.com");
    assert_string_equal(config_upstream(cfg, P_DEEPGRAM, 0), "https://api.deepgram.com");
    assert_string_equal(config_upstream(cfg, P_ANTHROPIC, 0), "https://api.anthropic.com");
    assert_string_equal(config_upstream(cfg, P_CARTESIA, 0), "https://api.cartesia.ai");
    assert_string_equal(config_upstream(cfg, P_DEEPSEEK, 0), "https://api.deepseek.com");
    assert_null(cfg->upstream_ca_file);
    /* Every provider host has its default; every provider no key and no
     * prices. */
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (size_t h = 0; h < p->n_hosts; h++)
            assert_string_equal(config_upstream(cfg, p, (int)h), p->hosts[h].default_url);
        assert_null(config_upstream(cfg, p, (int)p->n_hosts));
        assert_null(config_platform_key(cfg, p)->key_env);
        assert_null(config_platform_key(cfg, p)->key);
        assert_null(config_platform_key(cfg, p)->region);
        for (int h = 0; h < PROVIDER_HDR_MAX; h++)
            assert_null(config_platform_key(cfg, p)->headers[h]);
        assert_int_equal(config_prices(cfg, p)->n_prices, 0);
    }
    assert_null(config_upstream(cfg, P_OPENAI, -1));
    assert_null(config_upstream(cfg, P_OPENAI, PROVIDER_HOST_MAX));
    assert_int_equal(cfg->usage_ws_interval_s, 30);
    assert_int_equal(cfg->session_ttl_s, 3600);
    assert_string_equal(cfg->log_level, "info");
    assert_int_equal(cfg->limits.max_request_line, 8192);
    assert_int_equal(cfg->limits.max_header_bytes, 32768);
    assert_int_equal(cfg->limits.max_headers, 100);
    assert_int_equal(cfg->limits.max_body_bytes, 33554432);
    assert_int_equal(cfg->limits.header_timeout_ms, 10000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
    assert_int_equal(cfg->limits.upstream_connect_timeout_ms, 10000);
    assert_int_equal(cfg->limits.upstream_timeout_ms, 600000);
    assert_int_equal(cfg->limits.shutdown_timeout_ms, 15000);
    assert_int_equal(cfg->limits.client_high_watermark, 262144);
    assert_int_equal(cfg->limits.body_timeout_ms, 300000);
    assert_int_equal(cfg->limits.max_connections, 8192);
    assert_int_equal(cfg->limits.max_connections_per_client, 1024);
    assert_int_equal(cfg->limits.ws_first_message_timeout_ms, 2000);
    assert_int_equal(cfg->limits.ws_first_message_max_bytes, 65536);
    assert_non_null(cfg->path);
    config_free(cfg);

    /* null means "default" for optional keys. */
    cfg = parse_ok("{\"tls\": null, \"upstream_ca_file\": null, \"usage\": {\"jsonl_path\": null},"
                   " \"upstreams\": {\"openai\": null}, \"workers\": 0}");
    assert_null(cfg->tls_listen);
    assert_null(cfg->usage_jsonl_path);
    assert_string_equal(config_upstream(cfg, P_OPENAI, 0), "https://api.openai.com");
    assert_true(cfg->workers >= 1);
    config_free(cfg);
    config_free(NULL);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_error("{\"listn\": \"127.0.0.1:8080\"}", "unknown key \"listn\"",
                 "expected one of: listen, admin_listen", NULL);
    expect_error("{\"upstreams\": {\"opneai\": \"https://api.openai.com\"}}",
                 "unknown key \"upstreams.opneai\" (expected one of: openai, elevenlabs, "
                 "azure_speech_tts, azure_speech_stt, deepgram, anthropic, cartesia, deepseek)",
                 NULL);
    expect_error("{\"limits\": {\"max_body\": 1}}", "unknown key \"limits.max_body\"",
                 "max_body_bytes", NULL);
    expect_error("{\"store\": {\"backend\": \"sqlite\", \"path\": \"x\", \"pth\": \"y\"}}",
                 "unknown key \"store.pth\"", NULL);
    expect_error("{\"usage\": {\"jsonl\": \"x\"}}", "unknown key \"usage.jsonl\"", NULL);
    expect_error("{\"tls\": {\"listen\": \"127.0.0.1:8443\", \"cert\": \"x\"}}",
                 "unknown key \"tls.cert\"", NULL);
    expect_error("{\"platform_keys\": {\"openia\": {\"key_env\": \"X\"}}}",
                 "unknown key \"platform_keys.openia\"", NULL);
    /* region belongs to providers whose hosts depend on it; platform
     * headers to the provider that declares them. */
    expect_error(
        "{\"platform_keys\": {\"openai\": {\"key_env\": \"PATH\", \"region\": \"eastus\"}}}",
        "unknown key \"platform_keys.openai.region\" (expected one of: key_env, organization, "
        "project)",
        NULL);
    expect_error(
        "{\"platform_keys\": {\"deepgram\": {\"key_env\": \"PATH\", \"region\": \"eastus\"}}}",
        "unknown key \"platform_keys.deepgram.region\" (expected one of: key_env)", NULL);
    expect_error("{\"platform_keys\": {\"deepseek\": {\"key_env\": \"PATH\", "
                 "\"organization\": \"org\"}}}",
                 "unknown key \"platform_keys.deepseek.organization\" (expected one of: key_env)",
                 NULL);
    expect_error("{\"platform_keys\": {\"azure_speech\": {\"key_env\": \"PATH\", "
                 "\"region\": \"eastus\", \"project\": \"p\"}}}",
                 "unknown key \"platform_keys.azure_speech.project\" (expected one of: key_env, "
                 "region)",
                 NULL);
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"PATH\", "
                 "\"OpenAI-Organization\": \"org\"}}}",
                 "unknown key \"platform_keys.openai.OpenAI-Organization\"", NULL);
    expect_error("{\"usage\": {\"ws_interval\": 5}}", "unknown key \"usage.ws_interval\"",
                 "ws_interval_s", NULL);
    expect_error("{\"pricing\": {\"open_ai\": {}}}", "unknown key \"pricing.open_ai\"", NULL);
    expect_error("{\"pricing\": {\"openai\": {\"gpt-4o\": {\"input_per_1k\": 1}}}}",
                 "unknown key \"pricing.openai.gpt-4o.input_per_1k\"", "input_per_1m", NULL);
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_error("{\"workers\": \"2\"}", "workers: expected an integer, got a string", NULL);
    expect_error("{\"listen\": 8080}", "listen: expected a string, got an integer", NULL);
    expect_error("{\"listen\": \"\"}", "listen: must be a non-empty string", NULL);
    expect_error("{\"store\": \"sqlite\"}", "store: expected an object, got a string", NULL);
    expect_error("{\"upstreams\": []}", "upstreams: expected an object, got an array", NULL);
    expect_error("{\"session_ttl_s\": 1.5}", "session_ttl_s: expected an integer", NULL);
    expect_error("{\"limits\": {\"max_headers\": true}}",
                 "limits.max_headers: expected an integer, got a boolean", NULL);
    expect_error("{\"pricing\": {\"openai\": {\"gpt-4o\": {\"input_per_1m\": 2.5}}}}",
                 "pricing.openai.gpt-4o.input_per_1m: expected an integer", NULL);
    expect_error("{\"pricing\": {\"openai\": {\"gpt-4o\": 5}}}",
                 "pricing.openai.gpt-4o: expected an object", NULL);
    expect_error("{\"platform_keys\": {\"openai\": \"OPENAI_API_KEY\"}}",
                 "platform_keys.openai: expected an object", NULL);
    expect_error("{\"log_level\": \"verbose\"}", "log_level: \"verbose\" is not a level", NULL);
    expect_error("[1, 2]", "top level must be a JSON object", NULL);
    expect_error("{\"listen\": ", "line 1", NULL);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    expect_error("{\"listen\": \"127.0.0.1\"}",
                 "listen: \"127.0.0.1\" is not host:port (e.g. \"127.0.0.1:8080\")", NULL);
    expect_error("{\"listen\": \"127.0.0.1:0\"}", "listen:", "port must be", NULL);
    expect_error("{\"listen\": \"127.0.0.1:65536\"}", "listen:", "1 to 65535", NULL);
    expect_error("{\"listen\": \"127.0.0.1:80x\"}", "listen:", "port", NULL);
    expect_error("{\"listen\": \":8080\"}", "listen:", "is not host:port", NULL);
    expect_error("{\"admin_listen\": \"::1:8081\"}", "admin_listen:", "brackets", NULL);
    expect_error("{\"admin_listen\": \"[::1]\"}", "admin_listen:", "is not host:port", NULL);
    expect_error("{\"admin_listen\": \"[zz::1]:80\"}", "admin_listen:", "IPv6", NULL);
    expect_error("{\"listen\": \"300.1.1.1:80\"}", "listen:", "IPv4", NULL);
    expect_error("{\"listen\": \"bad_host:80\"}", "listen:", "not a valid host name", NULL);
    expect_error("{\"tls\": {\"listen\": \"8443\", \"cert_file\": \"/dev/null\","
                 " \"key_file\": \"/dev/null\"}}",
                 "tls.listen: \"8443\" is not host:port", NULL);
    expect_error("{\"listen\": \"127.0.0.1:9000\", \"admin_listen\": \"127.0.0.1:9000\"}",
                 "admin_listen: must differ from listen", NULL);

    char host[256], err[256];
    int port = 0;
    assert_int_equal(
        config_parse_address("[::1]:8443", host, sizeof(host), &port, err, sizeof(err)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8443);
    assert_int_equal(
        config_parse_address("localhost:1", host, sizeof(host), &port, err, sizeof(err)), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 1);
    assert_int_equal(
        config_parse_address("0.0.0.0:65535", host, sizeof(host), &port, err, sizeof(err)), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 65535);
    assert_int_equal(
        config_parse_address("a-b.example.com:80", host, sizeof(host), &port, err, sizeof(err)), 0);
    /* A host that does not fit the caller's buffer is an error, not a truncation. */
    char tiny[4];
    assert_int_equal(
        config_parse_address("localhost:80", tiny, sizeof(tiny), &port, err, sizeof(err)), -1);
}

static void test_platform_keys(void **state)
{
    (void)state;
    unsetenv("BYOK_TEST_SURELY_UNSET");
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_SURELY_UNSET\"}}}",
                 "platform_keys.openai.key_env: environment variable BYOK_TEST_SURELY_UNSET is "
                 "not set",
                 NULL);
    assert_int_equal(setenv("BYOK_TEST_EMPTY", "", 1), 0);
    expect_error("{\"platform_keys\": {\"deepgram\": {\"key_env\": \"BYOK_TEST_EMPTY\"}}}",
                 "platform_keys.deepgram.key_env: environment variable BYOK_TEST_EMPTY is empty",
                 NULL);
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"1BAD-NAME\"}}}",
                 "platform_keys.openai.key_env:", "not a valid environment variable name", NULL);
    expect_error("{\"platform_keys\": {\"openai\": {}}}", "platform_keys.openai.key_env: required",
                 NULL);
    /* The message names the provider's usual variable. */
    expect_error("{\"platform_keys\": {\"openai\": {}}}", "e.g. \"OPENAI_API_KEY\"", NULL);
    expect_error("{\"platform_keys\": {\"azure_speech\": {\"region\": \"eastus\"}}}",
                 "platform_keys.azure_speech.key_env: required", "e.g. \"AZURE_SPEECH_KEY\"", NULL);
    expect_error("{\"platform_keys\": {\"cartesia\": {\"key_env\": \"\"}}}",
                 "platform_keys.cartesia.key_env: must be a non-empty string", NULL);

    /* The value of a key never appears in an error. */
    assert_int_equal(setenv("BYOK_TEST_AZ", "super-secret-azure-key", 1), 0);
    char *err = NULL;
    struct config *cfg = config_parse(
        "{\"platform_keys\": {\"azure_speech\": {\"key_env\": \"BYOK_TEST_AZ\"}}}", &err);
    assert_null(cfg);
    assert_non_null(strstr(err, "platform_keys.azure_speech.region: required"));
    assert_non_null(strstr(err, "e.g. \"eastus\""));
    assert_null(strstr(err, "super-secret"));
    free(err);
}

static void test_bad_regions(void **state)
{
    (void)state;
    assert_int_equal(setenv("BYOK_TEST_AZ", "k", 1), 0);
    expect_error("{\"platform_keys\": {\"azure_speech\": {\"key_env\": \"BYOK_TEST_AZ\","
                 " \"region\": \"East US\"}}}",
                 "platform_keys.azure_speech.region: \"East US\" is not an Azure short region "
                 "name; use \"eastus\"",
                 NULL);
    expect_error("{\"platform_keys\": {\"azure_speech\": {\"key_env\": \"BYOK_TEST_AZ\","
                 " \"region\": \"eastus.evil.com\"}}}",
                 "platform_keys.azure_speech.region: \"eastus.evil.com\" is not a known Azure",
                 NULL);
    expect_error("{\"platform_keys\": {\"azure_speech\": {\"key_env\": \"BYOK_TEST_AZ\","
                 " \"region\": \"EASTUS\"}}}",
                 "platform_keys.azure_speech.region:", "use \"eastus\"", NULL);
    struct config *cfg = parse_ok("{\"platform_keys\": {\"azure_speech\": {\"key_env\": "
                                  "\"BYOK_TEST_AZ\", \"region\": \"koreacentral\"}}}");
    assert_string_equal(config_platform_key(cfg, P_AZURE_SPEECH)->region, "koreacentral");
    config_free(cfg);
}

static void test_bad_urls(void **state)
{
    (void)state;
    expect_error("{\"upstreams\": {\"openai\": \"ftp://api.openai.com\"}}",
                 "upstreams.openai:", "must start with http:// or https://", NULL);
    expect_error("{\"upstreams\": {\"openai\": \"api.openai.com\"}}",
                 "upstreams.openai:", "http://", NULL);
    expect_error("{\"upstreams\": {\"deepgram\": \"https://\"}}",
                 "upstreams.deepgram:", "has no host", NULL);
    expect_error("{\"upstreams\": {\"deepgram\": \"https:///v1\"}}",
                 "upstreams.deepgram:", "has no host", NULL);
    expect_error("{\"upstreams\": {\"anthropic\": \"https://user:pw@api.anthropic.com\"}}",
                 "upstreams.anthropic:", "credentials", NULL);
    expect_error("{\"upstreams\": {\"cartesia\": \"https://api.cartesia.ai/?x=1\"}}",
                 "upstreams.cartesia:", "query or fragment", NULL);
    expect_error("{\"upstreams\": {\"cartesia\": \"https://api.cartesia.ai#frag\"}}",
                 "upstreams.cartesia:", "query or fragment", NULL);
    expect_error("{\"upstreams\": {\"openai\": \"http://127.0.0.1:99999\"}}",
                 "upstreams.openai:", "bad port", NULL);
    expect_error(
        "{\"upstreams\": {\"azure_speech_tts\": \"https://eastus.tts.speech.microsoft.com\"}}",
        "upstreams.azure_speech_tts:", "{region}", "exactly once", NULL);
    expect_error("{\"upstreams\": {\"azure_speech_stt\": \"https://{region}.{region}.example\"}}",
                 "upstreams.azure_speech_stt:", "exactly once", NULL);
    expect_error("{\"upstreams\": {\"openai\": \"https://{region}.openai.com\"}}",
                 "upstreams.openai:", "{region}", NULL);
    expect_error("{\"upstreams\": {\"openai\": \"https://api.openai.com/a b\"}}",
                 "upstreams.openai:", "spaces", NULL);
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("{\"pricing\": {\"openai\": {\"gpt-4o\": {\"input_per_1m\": -1}}}}",
                 "pricing.openai.gpt-4o.input_per_1m: must be a non-negative integer", NULL);
    expect_error("{\"pricing\": {\"openai\": {\"gpt 4o\": {}}}}",
                 "pricing.openai:", "not a valid model key", NULL);
    expect_error("{\"pricing\": {\"openai\": {\"gpt*4o\": {}}}}",
                 "pricing.openai:", "not a valid model key", NULL);
    expect_error("{\"workers\": 65}", "workers: 65 is out of range (0..64)", NULL);
    expect_error("{\"workers\": -1}", "workers: -1 is out of range", NULL);
    expect_error("{\"session_ttl_s\": 0}", "session_ttl_s:", "out of range", NULL);
    expect_error("{\"limits\": {\"max_headers\": 1000}}", "limits.max_headers:", "out of range",
                 NULL);
    expect_error("{\"limits\": {\"max_request_line\": 65536, \"max_header_bytes\": 4096}}",
                 "limits.max_header_bytes:", NULL);
    expect_error("{\"store\": {\"backend\": \"sqlite\"}}", "store.path: required", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\"}}", "store.url: required", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"http://127.0.0.1:6379\"}}",
                 "store.url: must start with redis://", NULL);
    expect_error("{\"store\": {\"backend\": \"mysql\"}}", "store.backend: \"mysql\"", NULL);
    expect_error(
        "{\"store\": {\"backend\": \"sqlite\", \"path\": \"a.db\", \"url\": \"redis://x\"}}",
        "store.url:", NULL);
    expect_error("{\"tls\": {\"listen\": \"127.0.0.1:8443\", \"cert_file\": "
                 "\"/nonexistent/cert.pem\", \"key_file\": \"/dev/null\"}}",
                 "tls.cert_file: cannot read \"/nonexistent/cert.pem\"", NULL);
    expect_error("{\"tls\": {\"listen\": \"127.0.0.1:8443\", \"cert_file\": \"/dev/null\"}}",
                 "tls.key_file: required", NULL);
    expect_error("{\"upstream_ca_file\": \"/nonexistent/ca.pem\"}", "upstream_ca_file: cannot read",
                 NULL);
}

/* Fleet mode's store keys (DESIGN §7b): the URL's parts, the password read
 * from the variable named (never shown), timeouts, on_down, and every key
 * refused with the sqlite backend. */
static void test_store_redis(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r1\"}}");
    assert_null(cfg->store_password_env);
    assert_null(cfg->store_password);
    assert_int_equal(cfg->store_connect_timeout_ms, 1000);
    assert_int_equal(cfg->store_timeout_ms, 1000);
    assert_int_equal(cfg->store_on_down, CONFIG_ON_DOWN_REFUSE_WALLET);
    config_free(cfg);

    assert_int_equal(setenv("BYOK_TEST_REDIS_PW", "s3cret-pw", 1), 0);
    cfg = parse_ok("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://[::1]:7000/3\","
                   " \"password_env\": \"BYOK_TEST_REDIS_PW\", \"connect_timeout_ms\": 250,"
                   " \"timeout_ms\": 5000, \"on_down\": \"serve\"}}");
    assert_string_equal(cfg->store_password_env, "BYOK_TEST_REDIS_PW");
    assert_string_equal(cfg->store_password, "s3cret-pw");
    assert_int_equal(cfg->store_connect_timeout_ms, 250);
    assert_int_equal(cfg->store_timeout_ms, 5000);
    assert_int_equal(cfg->store_on_down, CONFIG_ON_DOWN_SERVE);
    /* Taken out of the environment once loaded. */
    config_wipe_secret_env(cfg);
    assert_null(getenv("BYOK_TEST_REDIS_PW"));
    config_free(cfg);

    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\","
                 " \"password_env\": \"BYOK_TEST_REDIS_PW\"}}",
                 "store.password_env: environment variable BYOK_TEST_REDIS_PW is not set", NULL);
    assert_int_equal(setenv("BYOK_TEST_REDIS_PW", "", 1), 0);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\","
                 " \"password_env\": \"BYOK_TEST_REDIS_PW\"}}",
                 "store.password_env: environment variable BYOK_TEST_REDIS_PW is empty", NULL);
    unsetenv("BYOK_TEST_REDIS_PW");
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\","
                 " \"password_env\": \"1BAD\"}}",
                 "store.password_env: \"1BAD\" is not a valid environment variable name", NULL);
    expect_error(
        "{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\", \"on_down\": \"x\"}}",
        "store.on_down: \"x\" is not a choice", "refuse_wallet", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\", \"timeout_ms\": 0}}",
                 "store.timeout_ms: 0 is out of range (10..60000)", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r\","
                 " \"connect_timeout_ms\": 60001}}",
                 "store.connect_timeout_ms:", "out of range", NULL);
    /* A password in the URL is refused without being repeated. */
    char *err = NULL;
    assert_null(config_parse(
        "{\"store\": {\"backend\": \"redis\", \"url\": \"redis://:hunter2@r:6379/0\"}}", &err));
    assert_non_null(strstr(err, "store.url: must not carry credentials"));
    assert_non_null(strstr(err, "store.password_env"));
    assert_null(strstr(err, "hunter2"));
    free(err);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"rediss://r:6380\"}}",
                 "store.url: TLS to Redis (rediss://) is not supported", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r:0/1\"}}",
                 "store.url:", "port must be a number from 1 to 65535", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r:6379/x\"}}",
                 "store.url: the database after the host must be a number", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://r/0?a=b\"}}",
                 "store.url: the database", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis:///0\"}}",
                 "store.url: needs a host", NULL);
    expect_error("{\"store\": {\"backend\": \"redis\", \"url\": \"redis://bad_host:1\"}}",
                 "store.url:", "not a valid host name", NULL);
    /* Redis keys with the sqlite backend. */
    expect_error(
        "{\"store\": {\"backend\": \"sqlite\", \"path\": \"a.db\", \"on_down\": \"serve\"}}",
        "store.on_down: only used with backend \"redis\"", NULL);
    expect_error("{\"store\": {\"backend\": \"sqlite\", \"path\": \"a.db\", \"timeout_ms\": 100}}",
                 "store.timeout_ms: only used with backend \"redis\"", NULL);

    char host[256], msg[256];
    int port, db;
    assert_int_equal(config_parse_redis_url("redis://127.0.0.1", host, sizeof(host), &port, &db,
                                            msg, sizeof(msg)),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_int_equal(db, 0);
    assert_int_equal(config_parse_redis_url("redis://cache.internal:6390/12", host, sizeof(host),
                                            &port, &db, msg, sizeof(msg)),
                     0);
    assert_string_equal(host, "cache.internal");
    assert_int_equal(port, 6390);
    assert_int_equal(db, 12);
    assert_int_equal(
        config_parse_redis_url("redis://[::1]/", host, sizeof(host), &port, &db, msg, sizeof(msg)),
        0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 6379);
    assert_int_equal(db, 0);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_error("{\"workers\": 1,\n \"workers\": 2}", "duplicate", "workers", NULL);
    expect_error("{\"upstreams\": {\"openai\": \"https://a.example\", \"openai\": "
                 "\"https://b.example\"}}",
                 "duplicate", "openai", NULL);
}

static void test_platform_headers(void **state)
{
    (void)state;
    assert_int_equal(setenv("BYOK_TEST_OA", "sk-x", 1), 0);
    struct config *cfg = parse_ok("{\"platform_keys\": {\"openai\": {\"key_env\": "
                                  "\"BYOK_TEST_OA\", \"project\": \"proj_only\"}}}");
    assert_null(config_platform_key(cfg, P_OPENAI)->headers[0]);
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->headers[1], "proj_only");
    config_free(cfg);
    cfg = parse_ok("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OA\", "
                   "\"organization\": null}}}");
    assert_null(config_platform_key(cfg, P_OPENAI)->headers[0]);
    config_free(cfg);
    /* Sent as header values: printable ASCII, non-empty strings. */
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OA\", "
                 "\"organization\": \"org\\r\\nX-Evil: 1\"}}}",
                 "platform_keys.openai.organization: must be printable ASCII", NULL);
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OA\", "
                 "\"project\": \"caf\u00e9\"}}}",
                 "platform_keys.openai.project: must be printable ASCII", NULL);
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OA\", "
                 "\"project\": \"\"}}}",
                 "platform_keys.openai.project: must be a non-empty string", NULL);
    expect_error("{\"platform_keys\": {\"openai\": {\"key_env\": \"BYOK_TEST_OA\", "
                 "\"organization\": 5}}}",
                 "platform_keys.openai.organization: expected a string, got an integer", NULL);
    /* The key is still required with headers. */
    expect_error("{\"platform_keys\": {\"openai\": {\"organization\": \"org\"}}}",
                 "platform_keys.openai.key_env: required", NULL);
    unsetenv("BYOK_TEST_OA");
}

static void test_ws_interval(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{\"usage\": {\"ws_interval_s\": 1}}");
    assert_int_equal(cfg->usage_ws_interval_s, 1);
    config_free(cfg);
    cfg = parse_ok("{\"usage\": {\"ws_interval_s\": 3600}}");
    assert_int_equal(cfg->usage_ws_interval_s, 3600);
    config_free(cfg);
    cfg = parse_ok("{\"usage\": {\"ws_interval_s\": null}}");
    assert_int_equal(cfg->usage_ws_interval_s, 30);
    config_free(cfg);
    cfg = parse_ok("{\"usage\": {}}");
    assert_int_equal(cfg->usage_ws_interval_s, 30);
    config_free(cfg);
    expect_error("{\"usage\": {\"ws_interval_s\": 0}}",
                 "usage.ws_interval_s: 0 is out of range (1..3600)", NULL);
    expect_error("{\"usage\": {\"ws_interval_s\": 3601}}",
                 "usage.ws_interval_s: 3601 is out of range (1..3600)", NULL);
    expect_error("{\"usage\": {\"ws_interval_s\": -5}}", "usage.ws_interval_s:", "out of range",
                 NULL);
    expect_error("{\"usage\": {\"ws_interval_s\": \"30\"}}",
                 "usage.ws_interval_s: expected an integer, got a string", NULL);
    expect_error("{\"usage\": {\"ws_interval_s\": 2.5}}",
                 "usage.ws_interval_s: expected an integer", NULL);
}

/* "balance" (DESIGN §3.4, §4b): holds per line with a default, realtime's
 * own default, the socket grace, the fleet hold TTL. */
static void test_balance(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{}");
    assert_int_equal(config_hold_micros(cfg, "llm"), 10000);
    assert_int_equal(config_hold_micros(cfg, "tts"), 10000);
    assert_int_equal(config_hold_micros(cfg, "realtime"), 100000);
    assert_int_equal(config_hold_micros(cfg, "no-such-line"), 10000);
    assert_int_equal(cfg->balance.ws_grace_micros, 0);
    assert_int_equal(cfg->balance.hold_ttl_s, 900);
    config_free(cfg);
    cfg = parse_ok("{\"balance\": {\"hold_micros\": {\"default\": 500, \"stt\": 0}, "
                   "\"ws_grace_micros\": 2000, \"hold_ttl_s\": 60}}");
    assert_int_equal(config_hold_micros(cfg, "llm"), 500);
    assert_int_equal(config_hold_micros(cfg, "stt"), 0);
    assert_int_equal(config_hold_micros(cfg, "realtime"), 100000);
    assert_int_equal(cfg->balance.ws_grace_micros, 2000);
    assert_int_equal(cfg->balance.hold_ttl_s, 60);
    config_free(cfg);
    expect_error("{\"balance\": {\"hold_micros\": {\"chat\": 5}}}",
                 "unknown key \"balance.hold_micros.chat\"", "llm", "realtime", NULL);
    expect_error("{\"balance\": {\"hold_micros\": {\"llm\": -1}}}",
                 "balance.hold_micros.llm: -1 is out of range", NULL);
    expect_error("{\"balance\": {\"ws_grace_micros\": -1}}",
                 "balance.ws_grace_micros:", "out of range", NULL);
    expect_error("{\"balance\": {\"hold_ttl_s\": 0}}", "balance.hold_ttl_s: 0 is out of range",
                 NULL);
    expect_error("{\"balance\": {\"holds\": 1}}", "unknown key \"balance.holds\"", NULL);
    expect_error("{\"balance\": 5}", "balance:", NULL);
}

/* The limits checked before authentication (issue 9): body deadline,
 * connection caps, first-message bounds. */
static void test_pre_auth_limits(void **state)
{
    (void)state;
    struct config *cfg =
        parse_ok("{\"limits\": {\"body_timeout_ms\": 1500, \"max_connections\": 100, "
                 "\"max_connections_per_client\": 10, \"ws_first_message_timeout_ms\": 500, "
                 "\"ws_first_message_max_bytes\": 4096}}");
    assert_int_equal(cfg->limits.body_timeout_ms, 1500);
    assert_int_equal(cfg->limits.max_connections, 100);
    assert_int_equal(cfg->limits.max_connections_per_client, 10);
    assert_int_equal(cfg->limits.ws_first_message_timeout_ms, 500);
    assert_int_equal(cfg->limits.ws_first_message_max_bytes, 4096);
    config_free(cfg);
    /* A smaller process cap lowers the default per-address cap with it... */
    cfg = parse_ok("{\"limits\": {\"max_connections\": 500}}");
    assert_int_equal(cfg->limits.max_connections_per_client, 500);
    config_free(cfg);
    cfg = parse_ok("{\"limits\": {\"max_connections\": 500, \"max_connections_per_client\": 500}}");
    assert_int_equal(cfg->limits.max_connections_per_client, 500);
    config_free(cfg);
    /* ... but an explicit one above it is a mistake. */
    expect_error("{\"limits\": {\"max_connections\": 500, \"max_connections_per_client\": 501}}",
                 "limits.max_connections_per_client: 501 is larger than limits.max_connections "
                 "(500)",
                 NULL);
    expect_error("{\"limits\": {\"body_timeout_ms\": 99}}",
                 "limits.body_timeout_ms: 99 is out of range (100..86400000)", NULL);
    expect_error("{\"limits\": {\"max_connections\": 0}}",
                 "limits.max_connections: 0 is out of range (1..1000000)", NULL);
    expect_error("{\"limits\": {\"max_connections_per_client\": 0}}",
                 "limits.max_connections_per_client: 0 is out of range", NULL);
    expect_error("{\"limits\": {\"ws_first_message_timeout_ms\": 60001}}",
                 "limits.ws_first_message_timeout_ms: 60001 is out of range (100..60000)", NULL);
    expect_error("{\"limits\": {\"ws_first_message_max_bytes\": 16777217}}",
                 "limits.ws_first_message_max_bytes: 16777217 is out of range (1024..16777216)",
                 NULL);
    expect_error("{\"limits\": {\"max_connections\": \"8192\"}}",
                 "limits.max_connections: expected an integer, got a string", NULL);
}

/* A price field the provider does not bill is refused, naming the fields it
 * bills: a price that would never apply is a mistake. */
static void test_unbilled_price_fields(void **state)
{
    (void)state;
    expect_error("{\"pricing\": {\"anthropic\": {\"x\": {\"characters_per_1m\": 1}}}}",
                 "pricing.anthropic.x.characters_per_1m: anthropic does not bill by this unit",
                 "(its fields: input_per_1m, cached_input_per_1m, output_per_1m)", NULL);
    expect_error("{\"pricing\": {\"deepseek\": {\"deepseek-chat\": {\"input_per_1m\": 1, "
                 "\"audio_input_per_1m\": 2}}}}",
                 "pricing.deepseek.deepseek-chat.audio_input_per_1m: deepseek does not bill",
                 "(its fields: input_per_1m, cached_input_per_1m, output_per_1m)", NULL);
    expect_error("{\"pricing\": {\"deepgram\": {\"nova-3\": {\"input_per_1m\": 1}}}}",
                 "pricing.deepgram.nova-3.input_per_1m: deepgram does not bill",
                 "(its fields: characters_per_1m, audio_per_minute, session_per_minute)", NULL);
    expect_error("{\"pricing\": {\"elevenlabs\": {\"*\": {\"audio_per_minute\": 1}}}}",
                 "pricing.elevenlabs.*.audio_per_minute: elevenlabs does not bill",
                 "(its fields: characters_per_1m, session_per_minute)", NULL);
    expect_error("{\"pricing\": {\"cartesia\": {\"sonic-2\": {\"output_per_1m\": 1}}}}",
                 "pricing.cartesia.sonic-2.output_per_1m: cartesia does not bill",
                 "(its fields: characters_per_1m, session_per_minute)", NULL);
    expect_error("{\"pricing\": {\"azure_speech\": {\"*\": {\"input_per_1m\": 1}}}}",
                 "pricing.azure_speech.*.input_per_1m: azure_speech does not bill",
                 "(its fields: characters_per_1m, audio_per_minute, session_per_minute)", NULL);
    /* Refused whatever its value. */
    expect_error("{\"pricing\": {\"anthropic\": {\"x\": {\"session_per_minute\": -1}}}}",
                 "pricing.anthropic.x.session_per_minute: anthropic does not bill", NULL);

    /* The fields each provider bills are accepted; null is absent. */
    struct config *cfg = parse_ok(
        "{\"pricing\": {"
        "\"openai\": {\"gpt-realtime\": {\"input_per_1m\": 1, \"cached_input_per_1m\": 2,"
        " \"output_per_1m\": 3, \"audio_input_per_1m\": 4, \"audio_output_per_1m\": 5,"
        " \"characters_per_1m\": 6, \"audio_per_minute\": 7, \"session_per_minute\": 8}},"
        "\"anthropic\": {\"claude*\": {\"input_per_1m\": 3000000, \"cached_input_per_1m\":"
        " 300000, \"output_per_1m\": 15000000, \"characters_per_1m\": null}},"
        "\"deepgram\": {\"nova-3\": {\"audio_per_minute\": 4300},"
        " \"aura*\": {\"characters_per_1m\": 30000000}, \"*\": {\"session_per_minute\": 1}},"
        "\"elevenlabs\": {\"*\": {\"characters_per_1m\": 1, \"session_per_minute\": 2}},"
        "\"azure_speech\": {\"*\": {\"characters_per_1m\": 1, \"audio_per_minute\": 2,"
        " \"session_per_minute\": 3}},"
        "\"cartesia\": {\"sonic-2\": {\"characters_per_1m\": 1}},"
        "\"deepseek\": {\"deepseek-chat\": {\"input_per_1m\": 1, \"cached_input_per_1m\": 2,"
        " \"output_per_1m\": 3}}}}");
    const struct config_price *o = &config_prices(cfg, P_OPENAI)->prices[0];
    assert_int_equal(o->input_per_1m, 1);
    assert_int_equal(o->cached_input_per_1m, 2);
    assert_int_equal(o->output_per_1m, 3);
    assert_int_equal(o->audio_input_per_1m, 4);
    assert_int_equal(o->audio_output_per_1m, 5);
    assert_int_equal(o->characters_per_1m, 6);
    assert_int_equal(o->audio_per_minute, 7);
    assert_int_equal(o->session_per_minute, 8);
    const struct config_price *a = &config_prices(cfg, P_ANTHROPIC)->prices[0];
    assert_string_equal(a->model, "claude*");
    assert_int_equal(a->characters_per_1m, -1);
    assert_int_equal(config_prices(cfg, P_DEEPGRAM)->n_prices, 3);
    assert_int_equal(config_prices(cfg, P_DEEPSEEK)->prices[0].output_per_1m, 3);
    assert_int_equal(config_prices(cfg, P_CARTESIA)->n_prices, 1);
    config_free(cfg);
}

/* The region check moved to the provider (Azure Speech declares it). */
static void test_region_check(void **state)
{
    (void)state;
    assert_true(P_AZURE_SPEECH->region);
    assert_ptr_equal(P_AZURE_SPEECH->check_region, azure_check_region);
    for (size_t i = 0; i < provider_count(); i++)
        if (provider_at(i) != P_AZURE_SPEECH)
            assert_false(provider_at(i)->region);
    char err[256];
    static const char *const ok[] = {"eastus", "westeurope", "koreacentral", "swedencentral",
                                     "australiaeast"};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
        assert_int_equal(azure_check_region(ok[i], err, sizeof(err)), 0);
    assert_int_equal(azure_check_region("East US", err, sizeof(err)), -1);
    assert_string_equal(err, "\"East US\" is not an Azure short region name; use \"eastus\"");
    assert_int_equal(azure_check_region("West Europe", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "use \"westeurope\""));
    assert_int_equal(azure_check_region("EASTUS", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "use \"eastus\""));
    static const char *const bad[] = {"eastus.evil.com", "", "169.254.169.254", "eastus/", "mars"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(azure_check_region(bad[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, "e.g. \"eastus\""));
    }
    /* Blanks are never part of a region; without them it would be one:
     * suggested. */
    assert_int_equal(azure_check_region("eastus ", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "use \"eastus\""));
    assert_int_equal(azure_check_region(NULL, err, sizeof(err)), -1);
    /* What the message shows of a region is printable. */
    assert_int_equal(azure_check_region("east\nus\"\x01", err, sizeof(err)), -1);
    assert_null(strchr(err, '\n'));
    assert_null(strchr(err, '\x01'));
}

static void test_load_file_errors(void **state)
{
    (void)state;
    char *err = NULL;
    assert_null(config_load("/nonexistent/byok.json", &err));
    assert_non_null(strstr(err, "/nonexistent/byok.json"));
    free(err);

    char path[] = "/tmp/byok-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "{\n  \"workers\": 1,\n  \"wrokers\": 2\n}\n");
    err = NULL;
    assert_null(config_load(path, &err));
    assert_string_equal(err, "unknown key \"wrokers\" (expected one of: listen, admin_listen, "
                             "tls, workers, store, usage, upstreams, upstream_ca_file, "
                             "platform_keys, session_ttl_s, log_level, limits, pricing, balance, "
                             "simulate)");
    free(err);
    write_file(path, "{\n  \"workers\": 1,\n  \"workers\": 2\n}\n");
    err = NULL;
    assert_null(config_load(path, &err));
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "duplicate object key near '\"workers\"'"));
    free(err);
    write_file(path, "{\"workers\": 2}");
    struct config *cfg = config_load(path, &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->workers, 2);
    config_free(cfg);
    unlink(path);
}

/* The example shipped in config/ must load as-is (with the variables it
 * names set), so a first run never starts with a config error. */
static void test_shipped_example(void **state)
{
    (void)state;
    char path[1024];
    const char *src = getenv("BYOK_SOURCE_DIR");
    if (src != NULL) {
        snprintf(path, sizeof(path), "%s/config/byok-proxy.json", src);
    } else {
        /* __FILE__ is <src>/tests/unit/test_config.c under CMake. */
        const char *suffix = "tests/unit/test_config.c";
        size_t n = strlen(__FILE__), sl = strlen(suffix);
        const char *file = __FILE__;
        assert_true(n >= sl && strcmp(file + n - sl, suffix) == 0);
        snprintf(path, sizeof(path), "%.*sconfig/byok-proxy.json", (int)(n - sl), __FILE__);
    }
    assert_int_equal(setenv("OPENAI_API_KEY", "sk-example", 1), 0);
    char *err = NULL;
    struct config *cfg = config_load(path, &err);
    if (cfg == NULL)
        fail_msg("%s: %s", path, err);
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:8081");
    assert_null(cfg->tls_listen);
    assert_string_equal(cfg->store_backend, "sqlite");
    assert_string_equal(cfg->store_path, "var/byok.db");
    assert_string_equal(cfg->usage_jsonl_path, "var/usage.jsonl");
    assert_string_equal(cfg->usage_spool_dir, "var/spool");
    assert_string_equal(config_platform_key(cfg, P_OPENAI)->key, "sk-example");
    assert_null(config_platform_key(cfg, P_ELEVENLABS)->key_env);
    assert_int_equal(cfg->usage_ws_interval_s, 30);
    /* Every price of the file is loaded, for every provider, with the
     * values written there (-1 for a field not written). The file changes
     * with the providers' prices: it is read again here rather than
     * counted by hand. */
    static const char *const fields[] = {
        "input_per_1m",        "cached_input_per_1m", "output_per_1m",    "audio_input_per_1m",
        "audio_output_per_1m", "characters_per_1m",   "audio_per_minute", "session_per_minute"};
    json_t *root = json_load_file(path, 0, NULL);
    assert_non_null(root);
    json_t *pricing = json_object_get(root, "pricing");
    size_t total = 0;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        const struct config_provider_prices *pp = config_prices(cfg, pr);
        json_t *models = json_object_get(pricing, pr->name);
        assert_int_equal(pp->n_prices, json_object_size(models));
        total += pp->n_prices;
        for (size_t k = 0; k < pp->n_prices; k++) {
            const struct config_price *cp = &pp->prices[k];
            json_t *e = json_object_get(models, cp->model);
            if (e == NULL)
                fail_msg("pricing.%s: %s not in the file", pr->name, cp->model);
            const int64_t got[] = {cp->input_per_1m,        cp->cached_input_per_1m,
                                   cp->output_per_1m,       cp->audio_input_per_1m,
                                   cp->audio_output_per_1m, cp->characters_per_1m,
                                   cp->audio_per_minute,    cp->session_per_minute};
            for (size_t f = 0; f < ARRAY_SIZE(fields); f++) {
                json_t *v = json_object_get(e, fields[f]);
                int64_t want = json_is_integer(v) ? json_integer_value(v) : -1;
                if (got[f] != want)
                    fail_msg("pricing.%s.%s.%s: %lld, file says %lld", pr->name, cp->model,
                             fields[f], (long long)got[f], (long long)want);
            }
        }
    }
    assert_true(total > 0);
    json_decref(root);
    bool seen_whisper = false;
    for (size_t i = 0; i < config_prices(cfg, P_OPENAI)->n_prices; i++) {
        const struct config_price *p = &config_prices(cfg, P_OPENAI)->prices[i];
        if (strcmp(p->model, "whisper-1") == 0) {
            seen_whisper = true;
            assert_int_equal(p->audio_per_minute, 6000);
            assert_int_equal(p->input_per_1m, -1);
        }
        assert_string_not_equal(p->model, "*");
    }
    assert_true(seen_whisper);
    config_free(cfg);

    unsetenv("OPENAI_API_KEY");
    err = NULL;
    assert_null(config_load(path, &err));
    assert_non_null(strstr(err, "platform_keys.openai.key_env: environment variable "
                                "OPENAI_API_KEY is not set"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),      cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_unknown_keys),     cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_addresses),    cmocka_unit_test(test_platform_keys),
        cmocka_unit_test(test_bad_regions),      cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_bad_values),       cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_load_file_errors), cmocka_unit_test(test_shipped_example),
        cmocka_unit_test(test_platform_headers), cmocka_unit_test(test_ws_interval),
        cmocka_unit_test(test_balance),          cmocka_unit_test(test_store_redis),
        cmocka_unit_test(test_pre_auth_limits),  cmocka_unit_test(test_unbilled_price_fields),
        cmocka_unit_test(test_region_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
