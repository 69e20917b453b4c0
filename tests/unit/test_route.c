/* test_route.c - routes, inbound credential positions, credential query
 * parameters never forwarded, injected headers, upstream bases (Azure by
 * region, never a host chosen by the request) and provider error shapes. */
#include "common.h"
#include "route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static struct httpparse_request parsed;
static char head_buf[4096];

static const struct httpparse_request *parse(const char *head)
{
    struct httpparse_limits lim = {8192, 32768, 100};
    int status;
    const char *why;
    snprintf(head_buf, sizeof(head_buf), "%s", head);
    assert_int_equal(httpparse_request(head_buf, strlen(head_buf), &lim, &parsed, &status, &why),
                     HTTPPARSE_DONE);
    return &parsed;
}

static void test_match(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        int provider; /* -1: no route */
        const char *upstream;
        bool stt;
    } cases[] = {
        {"/v1/chat/completions", PROVIDER_OPENAI, "/v1/chat/completions", false},
        {"/openai/v1/embeddings", PROVIDER_OPENAI, "/v1/embeddings", false},
        {"/deepseek/chat/completions", PROVIDER_DEEPSEEK, "/chat/completions", false},
        {"/elevenlabs/v1/text-to-speech/abc", PROVIDER_ELEVENLABS, "/v1/text-to-speech/abc", false},
        {"/azure/tts/cognitiveservices/v1", PROVIDER_AZURE_SPEECH, "/cognitiveservices/v1", false},
        {"/azure/stt/speech/recognition/conversation/cognitiveservices/v1", PROVIDER_AZURE_SPEECH,
         "/speech/recognition/conversation/cognitiveservices/v1", true},
        {"/deepgram/v1/listen", PROVIDER_DEEPGRAM, "/v1/listen", false},
        {"/anthropic/v1/messages", PROVIDER_ANTHROPIC, "/v1/messages", false},
        {"/cartesia/tts/bytes", PROVIDER_CARTESIA, "/tts/bytes", false},
        {"/cartesia", PROVIDER_CARTESIA, "", false},
        {"/cartesiax/tts", -1, NULL, false},
        {"/v1x", -1, NULL, false},
        {"/azure/ttsx", -1, NULL, false},
        {"/", -1, NULL, false},
        {"/admin/tenants", -1, NULL, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct route r;
        int rc = route_match(cases[i].path, strlen(cases[i].path), &r);
        if (cases[i].provider < 0) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(r.provider, cases[i].provider);
        assert_int_equal(r.upstream_path_len, strlen(cases[i].upstream));
        assert_memory_equal(r.upstream_path, cases[i].upstream, r.upstream_path_len);
        assert_int_equal(r.azure_stt, cases[i].stt);
    }
}

static void expect_cred(enum provider_id p, const char *head, const char *want)
{
    size_t len = 0;
    const char *v = route_credential(p, parse(head), &len);
    if (want == NULL) {
        assert_null(v);
        assert_int_equal(len, 0);
    } else {
        assert_non_null(v);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(v, want, len);
    }
}

static void test_credentials(void **state)
{
    (void)state;
    expect_cred(PROVIDER_OPENAI,
                "GET /v1/models HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k1\r\n\r\n", "k1");
    expect_cred(PROVIDER_OPENAI,
                "GET /v1/models HTTP/1.1\r\nHost: a\r\nAuthorization: Token k1\r\n\r\n", NULL);
    expect_cred(PROVIDER_ELEVENLABS, "POST /x HTTP/1.1\r\nHost: a\r\nxi-api-key: k2\r\n\r\n", "k2");
    expect_cred(PROVIDER_AZURE_SPEECH,
                "POST /x HTTP/1.1\r\nHost: a\r\nOcp-Apim-Subscription-Key: k3\r\n\r\n", "k3");
    expect_cred(PROVIDER_AZURE_SPEECH,
                "GET /x?language=en-US&Ocp-Apim-Subscription-Key=k4&X-ConnectionId=1 "
                "HTTP/1.1\r\nHost: a\r\n\r\n",
                "k4");
    expect_cred(PROVIDER_DEEPGRAM, "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Token k5\r\n\r\n",
                "k5");
    expect_cred(PROVIDER_ANTHROPIC, "POST /x HTTP/1.1\r\nHost: a\r\nx-api-key: k6\r\n\r\n", "k6");
    expect_cred(PROVIDER_ANTHROPIC,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k7\r\n\r\n", "k7");
    expect_cred(PROVIDER_CARTESIA, "POST /x HTTP/1.1\r\nHost: a\r\nX-API-Key: k8\r\n\r\n", "k8");
    expect_cred(PROVIDER_CARTESIA, "POST /x HTTP/1.1\r\nHost: a\r\n\r\n", NULL);
}

static void test_forward_query(void **state)
{
    (void)state;
    char out[256];
    const struct httpparse_request *h = parse(
        "GET /x?language=en-US&Ocp-Apim-Subscription-Key=SECRET&format=simple"
        "&api_key=S2&X-ConnectionId=abc&access_token=S3&xi_api_key=S4 HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t n = route_forward_query(h, out, sizeof(out));
    assert_string_equal(out, "language=en-US&format=simple&X-ConnectionId=abc");
    assert_int_equal(n, strlen(out));
    assert_null(strstr(out, "SECRET"));
    assert_null(strstr(out, "S2"));
    assert_null(strstr(out, "S3"));
    assert_null(strstr(out, "S4"));

    /* One parameter, in a buffer of exactly its size + 1 (as the data plane
     * sizes it). */
    h = parse("GET /x?output_format=mp3_22050_32 HTTP/1.1\r\nHost: a\r\n\r\n");
    char exact[sizeof("output_format=mp3_22050_32")];
    assert_int_equal(route_forward_query(h, exact, sizeof(exact)),
                     strlen("output_format=mp3_22050_32"));
    assert_string_equal(exact, "output_format=mp3_22050_32");

    h = parse("GET /x?ocp-apim-subscription-key=only HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    h = parse("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 0);
}

static void test_inject(void **state)
{
    (void)state;
    static const struct {
        enum provider_id p;
        const char *head_extra;
        const char *want;
    } cases[] = {
        {PROVIDER_OPENAI, "", "Authorization: Bearer REAL"},
        {PROVIDER_DEEPSEEK, "", "Authorization: Bearer REAL"},
        {PROVIDER_ELEVENLABS, "", "xi-api-key: REAL"},
        {PROVIDER_AZURE_SPEECH, "", "Ocp-Apim-Subscription-Key: REAL"},
        {PROVIDER_DEEPGRAM, "", "Authorization: Token REAL"},
        {PROVIDER_ANTHROPIC, "", "x-api-key: REAL"},
        {PROVIDER_CARTESIA, "X-API-Key: proxykey\r\n", "X-API-Key: REAL"},
        {PROVIDER_CARTESIA, "Authorization: Bearer proxykey\r\n", "Authorization: Bearer REAL"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char head[256];
        snprintf(head, sizeof(head), "POST /x HTTP/1.1\r\nHost: a\r\n%s\r\n", cases[i].head_extra);
        struct curl_slist *l = route_inject(cases[i].p, parse(head), NULL, "REAL");
        assert_non_null(l);
        assert_string_equal(l->data, cases[i].want);
        assert_null(l->next);
        curl_slist_free_all(l);
    }
}

static void test_upstream_base(void **state)
{
    (void)state;
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.upstreams[PROVIDER_OPENAI] = (char *)"http://127.0.0.1:1/oa";
    cfg.upstreams[PROVIDER_AZURE_SPEECH] = (char *)"http://127.0.0.1:2/{region}/tts";
    cfg.upstream_azure_stt = (char *)"https://{region}.stt.speech.microsoft.com";
    char out[256];
    struct route r = {PROVIDER_OPENAI, "/v1/x", 5, false};
    assert_int_equal(route_upstream_base(&cfg, &r, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.1:1/oa");

    r = (struct route){PROVIDER_AZURE_SPEECH, "/cognitiveservices/v1", 21, false};
    assert_int_equal(route_upstream_base(&cfg, &r, "westeurope", out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.1:2/westeurope/tts");
    r.azure_stt = true;
    assert_int_equal(route_upstream_base(&cfg, &r, "eastus", out, sizeof(out)), 0);
    assert_string_equal(out, "https://eastus.stt.speech.microsoft.com");
    /* A region never picks a host outside the template. */
    const char *hostile[] = {"East US", "eastus.evil.com", "169.254.169.254#", "evil.com/x",
                             "",        "EASTUS"};
    for (size_t i = 0; i < ARRAY_SIZE(hostile); i++)
        assert_int_equal(route_upstream_base(&cfg, &r, hostile[i], out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, &r, NULL, out, sizeof(out)), -1);
    /* Not configured. */
    r = (struct route){PROVIDER_DEEPGRAM, "/v1/listen", 10, false};
    assert_int_equal(route_upstream_base(&cfg, &r, NULL, out, sizeof(out)), -1);
}

static void test_error_shapes(void **state)
{
    (void)state;
    json_t *j =
        route_error_body(PROVIDER_OPENAI, 401, "invalid_request_error", "invalid_api_key", "m");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "invalid_api_key");
    json_decref(j);
    j = route_error_body(PROVIDER_ELEVENLABS, 401, "t", "invalid_api_key", "m");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "detail"), "status")),
                        "invalid_api_key");
    json_decref(j);
    j = route_error_body(PROVIDER_ANTHROPIC, 402, "t", "c", "m");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "billing_error");
    json_decref(j);
    j = route_error_body(PROVIDER_DEEPGRAM, 401, "t", "INVALID_AUTH", "m");
    assert_string_equal(json_string_value(json_object_get(j, "err_code")), "INVALID_AUTH");
    json_decref(j);
    j = route_error_body(PROVIDER_AZURE_SPEECH, 404, "t", "c", "m");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "404");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),         cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_forward_query), cmocka_unit_test(test_inject),
        cmocka_unit_test(test_upstream_base), cmocka_unit_test(test_error_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
