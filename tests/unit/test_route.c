/* test_route.c - the data plane's view of the provider registry: routes,
 * served endpoints (what a wallet line may reach), inbound credential
 * positions (headers, schemes, query parameters, subprotocols), every
 * credential stripped from what goes upstream, wallet-only stripping,
 * subprotocols forwarded and answered, injected headers, upstream bases
 * (Azure by region, never a host chosen by the request) and provider error
 * shapes. */
#include "common.h"
#include "providers_test.h"
#include "route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static int setup_routes(void **state)
{
    (void)state;
    char err[256];
    if (route_init(err, sizeof(err)) == -1) {
        fprintf(stderr, "route_init: %s\n", err);
        return -1;
    }
    return 0;
}

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

/* --- the registry ------------------------------------------------------------ */

static void test_registry(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(provider_registry_check(err, sizeof(err)), 0);
    assert_int_equal(provider_count(), 7);
    static const char *const names[] = {"openai",    "elevenlabs", "azure_speech", "deepgram",
                                        "anthropic", "cartesia",   "deepseek"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        const struct provider *p = provider_find(names[i]);
        assert_non_null(p);
        assert_string_equal(provider_name(p), names[i]);
        assert_ptr_equal(provider_at(provider_index(p)), p);
        assert_non_null(p->error_body);
    }
    assert_null(provider_find("OpenAI"));
    assert_null(provider_find("nope"));
    assert_null(provider_find(NULL));
    assert_string_equal(provider_name(NULL), "unknown");
    /* BYOK slots, in registry order. */
    assert_int_equal(provider_slot_count(), 3);
    assert_string_equal(provider_slot_list(), "openai, elevenlabs, azure_speech");
    assert_int_equal(S_OPENAI, 0);
    assert_int_equal(S_ELEVENLABS, 1);
    assert_int_equal(S_AZURE_SPEECH, 2);
    assert_int_equal(provider_slot_index(P_DEEPGRAM), -1);
    assert_null(provider_slot_at(3));
    assert_string_equal(
        provider_list(),
        "openai, elevenlabs, azure_speech, deepgram, anthropic, cartesia, deepseek");
}

/* --- routes --------------------------------------------------------------------- */

static void test_match(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        const char *provider; /* NULL: no route */
        const char *upstream;
        int host;
    } cases[] = {
        {"/v1/chat/completions", "openai", "/v1/chat/completions", 0},
        {"/openai/v1/embeddings", "openai", "/v1/embeddings", 0},
        {"/openai/v1", "openai", "/v1", 0},
        {"/deepseek/chat/completions", "deepseek", "/chat/completions", 0},
        {"/deepseek/v1/chat/completions", "deepseek", "/v1/chat/completions", 0},
        {"/elevenlabs/v1/text-to-speech/abc", "elevenlabs", "/v1/text-to-speech/abc", 0},
        {"/azure/tts/cognitiveservices/v1", "azure_speech", "/cognitiveservices/v1", 0},
        {"/azure/stt/speech/recognition/conversation/cognitiveservices/v1", "azure_speech",
         "/speech/recognition/conversation/cognitiveservices/v1", 1},
        {"/deepgram/v1/listen", "deepgram", "/v1/listen", 0},
        {"/anthropic/v1/messages", "anthropic", "/v1/messages", 0},
        {"/cartesia/tts/bytes", "cartesia", "/tts/bytes", 0},
        {"/cartesia", "cartesia", "", 0},
        {"/cartesiax/tts", NULL, NULL, 0},
        {"/v1x", NULL, NULL, 0},
        {"/azure/ttsx", NULL, NULL, 0},
        {"/azure", NULL, NULL, 0},
        {"/openai/v2/x", NULL, NULL, 0},
        {"/anthropic/messages", NULL, NULL, 0},
        {"/", NULL, NULL, 0},
        {"/admin/tenants", NULL, NULL, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct route r;
        int rc = route_match(cases[i].path, strlen(cases[i].path), &r);
        if (cases[i].provider == NULL) {
            if (rc != -1)
                fail_msg("%s: routed to %s", cases[i].path, provider_name(r.provider));
            continue;
        }
        assert_int_equal(rc, 0);
        assert_ptr_equal(r.provider, provider_find(cases[i].provider));
        assert_int_equal(r.host, cases[i].host);
        assert_int_equal(r.upstream_path_len, strlen(cases[i].upstream));
        assert_memory_equal(r.upstream_path, cases[i].upstream, r.upstream_path_len);
    }
    /* The length bounds the path. */
    struct route r;
    assert_int_equal(route_match("/cartesia/tts", 9, &r), 0);
    assert_int_equal(r.upstream_path_len, 0);
    assert_int_equal(route_match("/cartesia/tts", 8, &r), -1);
}

static void test_path_unsafe(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        bool unsafe;
    } cases[] = {
        {"/v1/chat/completions", false},
        {"/v1/models/gpt-4o.mini", false},
        {"/v1/..x/a", false},
        {"/v1/../admin", true},
        {"/v1/./x", true},
        {"/v1/%2e%2E/x", true},
        {"/v1/.%2e", true},
        {"/v1/%2e", true},
        {"/v1/a\\b", true},
        {"/v1/...", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (route_path_unsafe(cases[i].path, strlen(cases[i].path)) != cases[i].unsafe)
            fail_msg("%s: unsafe should be %d", cases[i].path, cases[i].unsafe);
    assert_true(route_path_unsafe("/v1/a\0b", 7));
}

/* --- served endpoints (what a wallet line reaches) -------------------------------- */

static const struct provider_endpoint *endpoint(const char *method, const char *path, bool ws)
{
    struct route rt;
    if (route_match(path, strlen(path), &rt) == -1)
        return NULL;
    return route_endpoint(&rt, method, strlen(method), ws);
}

static void test_endpoint_table(void **state)
{
    (void)state;
    static const struct {
        const char *method;
        const char *path;
        bool ws;
        const char *line; /* NULL: not served */
    } cases[] = {
        /* OpenAI */
        {"POST", "/v1/chat/completions", false, "llm"},
        {"POST", "/openai/v1/responses", false, "llm"},
        {"POST", "/v1/embeddings", false, "embeddings"},
        {"POST", "/v1/audio/speech", false, "tts"},
        {"POST", "/v1/audio/transcriptions", false, "stt"},
        {"POST", "/v1/audio/translations", false, "stt"},
        {"GET", "/v1/models", false, "llm"},
        {"GET", "/v1/models/gpt-4o-mini", false, "llm"},
        {"GET", "/v1/realtime", true, "realtime"},
        {"POST", "/v1/realtime/client_secrets", false, "realtime"},
        {"POST", "/v1/realtime/sessions", false, "realtime"},
        {"GET", "/v1/files", false, NULL},
        {"POST", "/v1/files", false, NULL},
        {"POST", "/v1/batches", false, NULL},
        {"POST", "/v1/fine_tuning/jobs", false, NULL},
        {"GET", "/v1/organization/costs", false, NULL},
        {"POST", "/v1/realtime/calls", false, NULL},
        {"GET", "/v1/realtime", false, NULL},
        {"GET", "/v1/chat/completions", true, NULL},
        {"DELETE", "/v1/models/ft:x", false, NULL},
        {"TRACE", "/v1/models", false, NULL},
        {"OPTIONS", "/v1/chat/completions", false, NULL},
        {"HEAD", "/v1/models", false, NULL},
        /* ElevenLabs */
        {"POST", "/elevenlabs/v1/text-to-speech/v", false, "tts"},
        {"POST", "/elevenlabs/v1/text-to-speech/v/stream", false, "tts"},
        {"GET", "/elevenlabs/v1/text-to-speech/v/stream-input", true, "tts"},
        {"GET", "/elevenlabs/v1/text-to-speech/v/multi-stream-input", true, "tts"},
        {"GET", "/elevenlabs/v1/voices", false, "tts"},
        {"GET", "/elevenlabs/v1/models", false, "tts"},
        {"POST", "/elevenlabs/v1/speech-to-text", false, NULL},
        {"POST", "/elevenlabs/v1/voices/add", false, NULL},
        {"GET", "/elevenlabs/v1/user/subscription", false, NULL},
        {"GET", "/elevenlabs/v1/history", false, NULL},
        {"TRACE", "/elevenlabs/v1/voices", false, NULL},
        /* Azure Speech: endpoints only on their host. */
        {"POST", "/azure/tts/cognitiveservices/v1", false, "tts"},
        {"GET", "/azure/tts/cognitiveservices/voices/list", false, "tts"},
        {"GET", "/azure/tts/cognitiveservices/websocket/v1", true, "tts"},
        {"POST", "/azure/stt/cognitiveservices/v1", false, NULL},
        {"GET", "/azure/stt/cognitiveservices/voices/list", false, NULL},
        {"GET", "/azure/stt/cognitiveservices/websocket/v1", true, NULL},
        {"POST", "/azure/stt/speech/recognition/conversation/cognitiveservices/v1", false, "stt"},
        {"POST", "/azure/stt/speech/recognition/interactive/cognitiveservices/v1", false, "stt"},
        {"POST", "/azure/stt/speech/recognition/dictation/cognitiveservices/v1", false, "stt"},
        {"GET", "/azure/stt/speech/recognition/conversation/cognitiveservices/v1", true, "stt"},
        {"GET", "/azure/stt/stt/speech/universal/v2", true, "stt"},
        {"POST", "/azure/tts/speech/recognition/conversation/cognitiveservices/v1", false, NULL},
        {"GET", "/azure/tts/speech/recognition/conversation/cognitiveservices/v1", true, NULL},
        {"POST", "/azure/stt/speechtotext/v3.2/transcriptions", false, NULL},
        {"TRACE", "/azure/tts/cognitiveservices/v1", false, NULL},
        /* Deepgram */
        {"POST", "/deepgram/v1/listen", false, "stt"},
        {"POST", "/deepgram/v1/speak", false, "tts"},
        {"GET", "/deepgram/v1/listen", true, "stt"},
        {"GET", "/deepgram/v1/speak", true, "tts"},
        {"GET", "/deepgram/v1/models", false, "stt"},
        {"GET", "/deepgram/v1/projects", false, NULL},
        {"POST", "/deepgram/v1/auth/grant", false, NULL},
        {"POST", "/deepgram/v1/read", false, NULL},
        /* Anthropic */
        {"POST", "/anthropic/v1/messages", false, "llm"},
        {"POST", "/anthropic/v1/messages/count_tokens", false, "llm"},
        {"GET", "/anthropic/v1/models", false, "llm"},
        {"POST", "/anthropic/v1/messages/batches", false, NULL},
        {"GET", "/anthropic/v1/files", false, NULL},
        {"GET", "/anthropic/v1/messages", false, NULL},
        /* Cartesia */
        {"POST", "/cartesia/tts/bytes", false, "tts"},
        {"POST", "/cartesia/tts/sse", false, "tts"},
        {"GET", "/cartesia/tts/websocket", true, "tts"},
        {"GET", "/cartesia/voices", false, "tts"},
        {"POST", "/cartesia/voices/clone", false, NULL},
        {"POST", "/cartesia/stt", false, NULL},
        {"GET", "/cartesia/tts/websocket", false, NULL},
        /* DeepSeek */
        {"POST", "/deepseek/chat/completions", false, "llm"},
        {"POST", "/deepseek/v1/chat/completions", false, "llm"},
        {"GET", "/deepseek/models", false, "llm"},
        {"GET", "/deepseek/v1/models", false, "llm"},
        {"GET", "/deepseek/user/balance", false, NULL},
        {"POST", "/deepseek/completions", false, NULL},
        {"POST", "/deepseek/beta/completions", false, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct provider_endpoint *ep = endpoint(cases[i].method, cases[i].path, cases[i].ws);
        if (cases[i].line == NULL) {
            if (ep != NULL)
                fail_msg("%s %s%s: served, should not be", cases[i].method, cases[i].path,
                         cases[i].ws ? " (upgrade)" : "");
            continue;
        }
        if (ep == NULL)
            fail_msg("%s %s%s: not served", cases[i].method, cases[i].path,
                     cases[i].ws ? " (upgrade)" : "");
        assert_string_equal(ep->line, cases[i].line);
        assert_int_equal((ep->flags & PROVIDER_EP_WS) != 0, cases[i].ws);
    }
    /* Every provider's hosts name a line for what declares none. */
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (size_t h = 0; h < p->n_hosts; h++)
            assert_non_null(p->hosts[h].line);
    }
}

/* A sideband socket attaches to a call by id: refused on wallet lines. */
static void test_wallet_refused_query(void **state)
{
    (void)state;
    const struct provider_endpoint *rt = endpoint("GET", "/v1/realtime", true);
    assert_non_null(rt);
    const char *name = NULL;
    static const char *const refused[] = {
        "GET /v1/realtime?call_id=rtc_123 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime?model=gpt-realtime&call_id=rtc_1 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime?CALL_ID=x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime?call%5Fid=x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime?call_id HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        name = NULL;
        if (!route_wallet_refused_query(rt, parse(refused[i]), &name))
            fail_msg("not refused: %s", refused[i]);
        assert_string_equal(name, "call_id");
    }
    static const char *const allowed[] = {
        "GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime?xcall_id=1&call_idx=2 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v1/realtime HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
        if (route_wallet_refused_query(rt, parse(allowed[i]), &name))
            fail_msg("refused: %s", allowed[i]);
    /* Endpoints without such parameters refuse nothing. */
    const struct provider_endpoint *chat = endpoint("POST", "/v1/chat/completions", false);
    assert_false(route_wallet_refused_query(
        chat, parse("POST /v1/chat/completions?call_id=1 HTTP/1.1\r\nHost: a\r\n\r\n"), &name));
}

/* --- credentials ---------------------------------------------------------------- */

static void expect_cred(const struct provider *p, bool ws, const char *head, const char *want)
{
    struct route_key k;
    route_credential(p, parse(head), ws, &k);
    if (want == NULL) {
        if (k.key != NULL)
            fail_msg("%s: found \"%.*s\" in %s", provider_name(p), (int)k.len, k.key, head);
        assert_int_equal(k.len, 0);
        assert_null(k.cred);
    } else {
        if (k.key == NULL)
            fail_msg("%s: no key in %s", provider_name(p), head);
        assert_int_equal(k.len, strlen(want));
        assert_memory_equal(k.key, want, k.len);
        assert_non_null(k.cred);
    }
}

static void test_credentials(void **state)
{
    (void)state;
    expect_cred(P_OPENAI, false,
                "GET /v1/models HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k1\r\n\r\n", "k1");
    expect_cred(P_OPENAI, false,
                "GET /v1/models HTTP/1.1\r\nHost: a\r\nAuthorization: Token k1\r\n\r\n", NULL);
    expect_cred(P_ELEVENLABS, false, "POST /x HTTP/1.1\r\nHost: a\r\nxi-api-key: k2\r\n\r\n", "k2");
    expect_cred(P_AZURE_SPEECH, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nOcp-Apim-Subscription-Key: k3\r\n\r\n", "k3");
    expect_cred(P_AZURE_SPEECH, false,
                "GET /x?language=en-US&Ocp-Apim-Subscription-Key=k4&X-ConnectionId=1 "
                "HTTP/1.1\r\nHost: a\r\n\r\n",
                "k4");
    expect_cred(P_DEEPGRAM, false, "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Token k5\r\n\r\n",
                "k5");
    expect_cred(P_ANTHROPIC, false, "POST /x HTTP/1.1\r\nHost: a\r\nx-api-key: k6\r\n\r\n", "k6");
    expect_cred(P_ANTHROPIC, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k7\r\n\r\n", "k7");
    expect_cred(P_CARTESIA, false, "POST /x HTTP/1.1\r\nHost: a\r\nX-API-Key: k8\r\n\r\n", "k8");
    expect_cred(P_CARTESIA, false, "POST /x HTTP/1.1\r\nHost: a\r\n\r\n", NULL);
    expect_cred(P_DEEPSEEK, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k9\r\n\r\n", "k9");

    /* Header names and schemes without regard to case. */
    expect_cred(P_ANTHROPIC, false, "POST /x HTTP/1.1\r\nHost: a\r\nX-API-KEY: K1\r\n\r\n", "K1");
    expect_cred(P_CARTESIA, false, "POST /x HTTP/1.1\r\nHost: a\r\nX-API-KEY: K2\r\n\r\n", "K2");
    expect_cred(P_ELEVENLABS, false, "POST /x HTTP/1.1\r\nHost: a\r\nXI-API-KEY: K3\r\n\r\n", "K3");
    expect_cred(P_AZURE_SPEECH, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nocp-apim-subscription-key: K4\r\n\r\n", "K4");
    expect_cred(P_OPENAI, false, "POST /x HTTP/1.1\r\nHost: a\r\nAUTHORIZATION: bearer K5\r\n\r\n",
                "K5");
    expect_cred(P_DEEPGRAM, false, "POST /x HTTP/1.1\r\nHost: a\r\nauthorization: TOKEN K6\r\n\r\n",
                "K6");
    /* Deepgram takes temporary tokens as Bearer. */
    expect_cred(P_DEEPGRAM, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer K7\r\n\r\n", "K7");
    /* Blanks after the scheme; a scheme alone or an empty value is no key;
     * the scheme must be a whole word. */
    expect_cred(P_OPENAI, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \t K8\r\n\r\n", "K8");
    expect_cred(P_OPENAI, false, "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer\r\n\r\n",
                NULL);
    expect_cred(P_OPENAI, false, "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: BearerK9\r\n\r\n",
                NULL);
    expect_cred(P_ELEVENLABS, false, "POST /x HTTP/1.1\r\nHost: a\r\nxi-api-key:\r\n\r\n", NULL);
    /* Another provider's header is not this provider's key. */
    expect_cred(P_OPENAI, false, "POST /x HTTP/1.1\r\nHost: a\r\nx-api-key: k\r\n\r\n", NULL);
    expect_cred(P_ELEVENLABS, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\n\r\n", NULL);
    /* The first position of the provider's list that holds one. */
    expect_cred(P_ANTHROPIC, false,
                "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer second\r\n"
                "x-api-key: first\r\n\r\n",
                "first");

    /* Query names after percent-decoding, without regard to case. */
    expect_cred(P_AZURE_SPEECH, false,
                "GET /x?Ocp%2DApim-Subscription-Key=k HTTP/1.1\r\nHost: a\r\n\r\n", "k");
    expect_cred(P_AZURE_SPEECH, false,
                "GET /x?OCP-APIM-SUBSCRIPTION-KEY=k2 HTTP/1.1\r\nHost: a\r\n\r\n", "k2");
    expect_cred(P_AZURE_SPEECH, false,
                "GET /x?ocp-apim-subscription-key=&ocp-apim-subscription-key=k3 "
                "HTTP/1.1\r\nHost: a\r\n\r\n",
                "k3");
    expect_cred(P_CARTESIA, false, "GET /x?api_key=c1 HTTP/1.1\r\nHost: a\r\n\r\n", "c1");
    expect_cred(P_CARTESIA, false, "GET /x?API%5FKEY=c2 HTTP/1.1\r\nHost: a\r\n\r\n", "c2");
    expect_cred(P_CARTESIA, false, "GET /x?access_token=c3 HTTP/1.1\r\nHost: a\r\n\r\n", "c3");
    /* A query parameter is only a key where the provider takes one. */
    expect_cred(P_OPENAI, false, "GET /x?api_key=o HTTP/1.1\r\nHost: a\r\n\r\n", NULL);
    expect_cred(P_ELEVENLABS, false, "GET /x?xi_api_key=e HTTP/1.1\r\nHost: a\r\n\r\n", NULL);

    /* Subprotocols, only on upgrades. */
    static const char rt_head[] =
        "GET /v1/realtime HTTP/1.1\r\nHost: a\r\n"
        "Sec-WebSocket-Protocol: realtime, "
        "openai-insecure-api-key.sk-proxy, openai-beta.realtime-v1\r\n\r\n";
    expect_cred(P_OPENAI, true, rt_head, "sk-proxy");
    expect_cred(P_OPENAI, false, rt_head, NULL);
    expect_cred(P_OPENAI, true,
                "GET /v1/realtime HTTP/1.1\r\nHost: a\r\n"
                "Sec-WebSocket-Protocol: realtime\r\n"
                "Sec-WebSocket-Protocol: OpenAI-Insecure-Api-Key.K2\r\n\r\n",
                "K2");
    expect_cred(P_OPENAI, true,
                "GET /v1/realtime HTTP/1.1\r\nHost: a\r\n"
                "Sec-WebSocket-Protocol: openai-insecure-api-key.\r\n\r\n",
                NULL);
    expect_cred(
        P_DEEPGRAM, true,
        "GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: token, dgkey\r\n\r\n",
        "dgkey");
    expect_cred(P_DEEPGRAM, true,
                "GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: bearer, tok\r\n\r\n",
                "tok");
    expect_cred(
        P_DEEPGRAM, false,
        "GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: token, dgkey\r\n\r\n", NULL);
    expect_cred(P_DEEPGRAM, true,
                "GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: token\r\n\r\n",
                NULL);
    /* The header wins over the subprotocol (its position comes first). */
    expect_cred(P_DEEPGRAM, true,
                "GET /v1/listen HTTP/1.1\r\nHost: a\r\nAuthorization: Token hdr\r\n"
                "Sec-WebSocket-Protocol: token, sub\r\n\r\n",
                "hdr");

    /* Where it came from. */
    struct route_key k;
    route_credential(P_DEEPGRAM,
                     parse("GET /v1/listen HTTP/1.1\r\nHost: a\r\n"
                           "Sec-WebSocket-Protocol: token, dgkey\r\n\r\n"),
                     true, &k);
    assert_int_equal(k.cred->kind, PROVIDER_CRED_SUBPROTOCOL_PAIR);
    assert_string_equal(k.cred->name, "token");
    route_credential(P_AZURE_SPEECH,
                     parse("GET /x?Ocp-Apim-Subscription-Key=q HTTP/1.1\r\n"
                           "Host: a\r\n\r\n"),
                     false, &k);
    assert_int_equal(k.cred->kind, PROVIDER_CRED_QUERY);
}

/* --- what never goes upstream ------------------------------------------------------ */

static const struct httpparse_header *header_named(const struct httpparse_request *h,
                                                   const char *name)
{
    const struct httpparse_header *hd = httpparse_find(h, name);
    if (hd == NULL)
        fail_msg("no header %s", name);
    return hd;
}

static void test_strip_headers(void **state)
{
    (void)state;
    static const char head[] = "POST /x HTTP/1.1\r\n"
                               "Host: proxy.example\r\n"
                               "Authorization: Bearer a\r\n"
                               "X-Api-Key: b\r\n"
                               "XI-API-KEY: c\r\n"
                               "Ocp-Apim-Subscription-Key: d\r\n"
                               "api-key: e\r\n"
                               "Content-Length: 2\r\n"
                               "Connection: keep-alive, X-Hop\r\n"
                               "Keep-Alive: timeout=5\r\n"
                               "TE: trailers\r\n"
                               "Upgrade: h2c\r\n"
                               "Proxy-Authorization: Basic x\r\n"
                               "Expect: 100-continue\r\n"
                               "X-Session-Id: s\r\n"
                               "Accept-Encoding: gzip\r\n"
                               "X-Hop: 1\r\n"
                               "Content-Type: application/json\r\n"
                               "OpenAI-Beta: realtime=v1\r\n"
                               "anthropic-version: 2023-06-01\r\n"
                               "Cartesia-Version: 2024-06-10\r\n"
                               "User-Agent: sdk\r\n"
                               "X-Custom: 1\r\n"
                               "\r\n";
    static const char *const stripped[] = {
        "host",    "authorization",       "x-api-key",  "xi-api-key",   "ocp-apim-subscription-key",
        "api-key", "content-length",      "connection", "keep-alive",   "te",
        "upgrade", "proxy-authorization", "expect",     "x-session-id", "accept-encoding",
        "x-hop",
    };
    static const char *const kept[] = {"content-type",     "openai-beta", "anthropic-version",
                                       "cartesia-version", "user-agent",  "x-custom"};
    /* Every credential of every provider, on every route, BYOK or not. */
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (int byok = 0; byok < 2; byok++) {
            const struct httpparse_request *h = parse(head);
            for (size_t s = 0; s < ARRAY_SIZE(stripped); s++)
                if (!route_strip_header(p, byok, h, header_named(h, stripped[s])))
                    fail_msg("%s (byok %d): %s forwarded", p->name, byok, stripped[s]);
            for (size_t k = 0; k < ARRAY_SIZE(kept); k++)
                if (route_strip_header(p, byok, h, header_named(h, kept[k])))
                    fail_msg("%s (byok %d): %s stripped", p->name, byok, kept[k]);
        }
    }
    /* Authorization in any scheme. */
    static const char *const schemes[] = {
        "Bearer x", "Token x", "Basic eA==", "Digest x", "bearer", "x"};
    for (size_t s = 0; s < ARRAY_SIZE(schemes); s++) {
        char h2[256];
        snprintf(h2, sizeof(h2), "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n\r\n",
                 schemes[s]);
        for (size_t i = 0; i < provider_count(); i++) {
            const struct httpparse_request *h = parse(h2);
            assert_true(
                route_strip_header(provider_at(i), false, h, header_named(h, "authorization")));
        }
    }
    /* Wallet lines: the headers that choose the platform's OpenAI account
     * are removed; on a BYOK line they are the client's own. */
    const struct httpparse_request *h =
        parse("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
              "OpenAI-Organization: org-client\r\nOpenAI-Project: proj_client\r\n\r\n");
    assert_true(route_strip_header(P_OPENAI, false, h, header_named(h, "openai-organization")));
    assert_true(route_strip_header(P_OPENAI, false, h, header_named(h, "openai-project")));
    assert_false(route_strip_header(P_OPENAI, true, h, header_named(h, "openai-organization")));
    assert_false(route_strip_header(P_OPENAI, true, h, header_named(h, "openai-project")));
    h = parse("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
              "openai-organization: org-client\r\nOPENAI-PROJECT: proj_client\r\n\r\n");
    assert_true(route_strip_header(P_OPENAI, false, h, header_named(h, "openai-organization")));
    assert_true(route_strip_header(P_OPENAI, false, h, header_named(h, "openai-project")));
}

static void test_forward_query(void **state)
{
    (void)state;
    char out[256];
    const struct httpparse_request *h = parse(
        "GET /x?language=en-US&Ocp-Apim-Subscription-Key=SECRET&format=simple"
        "&api_key=S2&X-ConnectionId=abc&access_token=S3&xi_api_key=S4 HTTP/1.1\r\nHost: a\r\n\r\n");
    int n = route_forward_query(h, out, sizeof(out));
    assert_string_equal(out, "language=en-US&format=simple&X-ConnectionId=abc");
    assert_int_equal(n, strlen(out));
    assert_null(strstr(out, "SECRET"));
    assert_null(strstr(out, "S2"));
    assert_null(strstr(out, "S3"));
    assert_null(strstr(out, "S4"));

    /* One parameter, in a buffer of exactly its size + 1 (as the data plane
     * sizes it); one byte less does not fit. */
    h = parse("GET /x?output_format=mp3_22050_32 HTTP/1.1\r\nHost: a\r\n\r\n");
    char exact[sizeof("output_format=mp3_22050_32")];
    assert_int_equal(route_forward_query(h, exact, sizeof(exact)),
                     strlen("output_format=mp3_22050_32"));
    assert_string_equal(exact, "output_format=mp3_22050_32");
    assert_int_equal(route_forward_query(h, exact, sizeof(exact) - 1), -1);
    assert_string_equal(exact, "");
    assert_int_equal(route_forward_query(h, exact, 0), -1);

    h = parse("GET /x?ocp-apim-subscription-key=only HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    h = parse("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 0);

    /* Names after percent-decoding and without regard to case: the same
     * set for every route (the query has no provider of its own). */
    h = parse("GET /x?a=1&Ocp%2DApim-Subscription-Key=k&OCP-APIM-SUBSCRIPTION-KEY=k2"
              "&API_KEY=k3&Access%5FToken=k4&XI_API_KEY=k5&xi-api-key=k6"
              "&Authorization=Bearer%20k7&authorization=k8&b=2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 7);
    assert_string_equal(out, "a=1&b=2");
    /* A name that does not decode cannot be shown harmless: dropped. */
    h = parse("GET /x?a=1&%ZZapi_key=k&api%=k2&b=2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(route_forward_query(h, out, sizeof(out)), 7);
    assert_string_equal(out, "a=1&b=2");
    /* Values and other names are forwarded as written; empty pairs go. */
    h = parse("GET /x?model=nova%2D3&&keywords=a+b&api_keyx=1&xapi_key=2&flag HTTP/1.1\r\n"
              "Host: a\r\n\r\n");
    assert_true(route_forward_query(h, out, sizeof(out)) > 0);
    assert_string_equal(out, "model=nova%2D3&keywords=a+b&api_keyx=1&xapi_key=2&flag");
}

/* Subprotocols: credential items never go upstream; the answer is a
 * protocol the client offered. */
static void test_forward_protocols(void **state)
{
    (void)state;
    char out[256];
    char answer[ROUTE_ANSWER_MAX];
    struct route_key key;

    /* OpenAI Realtime from a browser. */
    const struct httpparse_request *h =
        parse("GET /v1/realtime HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: realtime, "
              "openai-insecure-api-key.sk-proxy, openai-beta.realtime-v1\r\n\r\n");
    route_credential(P_OPENAI, h, true, &key);
    int n = route_forward_protocols(P_OPENAI, h, &key, out, sizeof(out), answer);
    assert_string_equal(out, "realtime, openai-beta.realtime-v1");
    assert_int_equal(n, strlen(out));
    assert_string_equal(answer, "realtime");
    assert_null(strstr(out, "sk-proxy"));
    /* In any case, in another header line. */
    h = parse("GET /v1/realtime HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: realtime\r\n"
              "sec-websocket-protocol: OPENAI-INSECURE-API-KEY.secret\r\n\r\n");
    route_credential(P_OPENAI, h, true, &key);
    assert_true(route_forward_protocols(P_OPENAI, h, &key, out, sizeof(out), answer) >= 0);
    assert_string_equal(out, "realtime");
    assert_string_equal(answer, "realtime");
    /* Removed on every route, whatever the provider. */
    for (size_t i = 0; i < provider_count(); i++) {
        h = parse("GET /x HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: "
                  "openai-insecure-api-key.k1, token, k2, x, bearer, k3, y\r\n\r\n");
        assert_true(route_forward_protocols(provider_at(i), h, NULL, out, sizeof(out), answer) >=
                    0);
        if (strcmp(out, "x, y") != 0)
            fail_msg("%s: forwarded \"%s\"", provider_at(i)->name, out);
    }
    /* Without "realtime" offered: no answer. */
    h = parse("GET /v1/realtime HTTP/1.1\r\nHost: a\r\n"
              "Sec-WebSocket-Protocol: openai-insecure-api-key.k\r\n\r\n");
    route_credential(P_OPENAI, h, true, &key);
    assert_int_equal(route_forward_protocols(P_OPENAI, h, &key, out, sizeof(out), answer), 0);
    assert_string_equal(out, "");
    assert_string_equal(answer, "");

    /* Deepgram: "token, <key>" and "bearer, <token>" pairs; the answer is
     * the pair's name. */
    h = parse("GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: token, dgkey\r\n\r\n");
    route_credential(P_DEEPGRAM, h, true, &key);
    assert_int_equal(route_forward_protocols(P_DEEPGRAM, h, &key, out, sizeof(out), answer), 0);
    assert_string_equal(out, "");
    assert_string_equal(answer, "token");
    h = parse("GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: bearer, tok\r\n\r\n");
    route_credential(P_DEEPGRAM, h, true, &key);
    assert_int_equal(route_forward_protocols(P_DEEPGRAM, h, &key, out, sizeof(out), answer), 0);
    assert_string_equal(answer, "bearer");
    /* The pair name in another case is a credential too: removed with its
     * key. */
    h = parse("GET /v1/listen HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: Token, dgkey, "
              "other\r\n\r\n");
    route_credential(P_DEEPGRAM, h, true, &key);
    assert_int_equal(route_forward_protocols(P_DEEPGRAM, h, &key, out, sizeof(out), answer), 5);
    assert_string_equal(out, "other");
    /* ... and answered as the client spelled it (browsers compare exactly). */
    assert_string_equal(answer, "Token");
    /* The key came in a header: nothing to answer. */
    h = parse("GET /v1/listen HTTP/1.1\r\nHost: a\r\nAuthorization: Token k\r\n"
              "Sec-WebSocket-Protocol: x\r\n\r\n");
    route_credential(P_DEEPGRAM, h, true, &key);
    assert_int_equal(route_forward_protocols(P_DEEPGRAM, h, &key, out, sizeof(out), answer), 1);
    assert_string_equal(answer, "");
    /* Items that are not tokens are dropped; out too small is an error. */
    h = parse("GET /x HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: a, b/c, d\r\n\r\n");
    assert_int_equal(route_forward_protocols(P_CARTESIA, h, NULL, out, sizeof(out), answer), 4);
    assert_string_equal(out, "a, d");
    assert_int_equal(route_forward_protocols(P_CARTESIA, h, NULL, out, 3, answer), -1);
    assert_int_equal(route_forward_protocols(P_CARTESIA, h, NULL, out, 0, answer), -1);
}

/* --- injection and upstream ------------------------------------------------------- */

static void test_inject(void **state)
{
    (void)state;
    static const struct {
        const char *provider;
        const char *head_extra;
        const char *want;
    } cases[] = {
        {"openai", "", "Authorization: Bearer REAL"},
        {"deepseek", "", "Authorization: Bearer REAL"},
        {"elevenlabs", "", "xi-api-key: REAL"},
        {"azure_speech", "", "Ocp-Apim-Subscription-Key: REAL"},
        {"deepgram", "", "Authorization: Token REAL"},
        {"anthropic", "", "x-api-key: REAL"},
        {"cartesia", "X-API-Key: proxykey\r\n", "X-API-Key: REAL"},
        {"cartesia", "Authorization: Bearer proxykey\r\n", "Authorization: Bearer REAL"},
        {"cartesia", "", "Authorization: Bearer REAL"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char head[256];
        snprintf(head, sizeof(head), "POST /x HTTP/1.1\r\nHost: a\r\n%s\r\n", cases[i].head_extra);
        struct curl_slist *l =
            route_inject(provider_find(cases[i].provider), parse(head), NULL, "REAL");
        assert_non_null(l);
        assert_string_equal(l->data, cases[i].want);
        assert_null(l->next);
        curl_slist_free_all(l);
    }
    /* Appended to an existing list. */
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    l = route_inject(P_OPENAI, parse("POST /x HTTP/1.1\r\nHost: a\r\n\r\n"), l, "REAL");
    assert_non_null(l);
    assert_string_equal(l->next->data, "Authorization: Bearer REAL");
    curl_slist_free_all(l);

    /* The value alone, with no request to take a style from. */
    char value[64];
    const char *name;
    assert_int_equal(route_inject_value(P_DEEPGRAM, NULL, "K", &name, value, sizeof(value)), 7);
    assert_string_equal(name, "Authorization");
    assert_string_equal(value, "Token K");
    assert_int_equal(route_inject_value(P_CARTESIA, NULL, "K", &name, value, sizeof(value)), 8);
    assert_string_equal(value, "Bearer K");
    assert_int_equal(route_inject_value(P_ELEVENLABS, NULL, "K", &name, value, sizeof(value)), 1);
    assert_string_equal(name, "xi-api-key");
    assert_string_equal(value, "K");
    /* Too small: -1, nothing of the key left behind. */
    assert_int_equal(route_inject_value(P_OPENAI, NULL, "SECRETKEY", &name, value, 10), -1);
    assert_null(memmem(value, 10, "SECRET", 6));
}

static void test_upstream_base(void **state)
{
    (void)state;
    static struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.upstreams[provider_index(P_OPENAI)][0] = (char *)"http://127.0.0.1:1/oa";
    cfg.upstreams[provider_index(P_AZURE_SPEECH)][0] = (char *)"http://127.0.0.1:2/{region}/tts";
    cfg.upstreams[provider_index(P_AZURE_SPEECH)][1] =
        (char *)"https://{region}.stt.speech.microsoft.com";
    assert_string_equal(config_upstream(&cfg, P_OPENAI, 0), "http://127.0.0.1:1/oa");
    char out[256];
    assert_int_equal(route_upstream_base(&cfg, P_OPENAI, 0, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.1:1/oa");
    /* A region means nothing to a host without one. */
    assert_int_equal(route_upstream_base(&cfg, P_OPENAI, 0, "evil.com", out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.1:1/oa");

    assert_int_equal(route_upstream_base(&cfg, P_AZURE_SPEECH, 0, "westeurope", out, sizeof(out)),
                     0);
    assert_string_equal(out, "http://127.0.0.1:2/westeurope/tts");
    /* The route's host picks the template. */
    struct route r;
    const char *stt = "/azure/stt/speech/recognition/conversation/cognitiveservices/v1";
    assert_int_equal(route_match(stt, strlen(stt), &r), 0);
    assert_int_equal(route_upstream_base(&cfg, r.provider, r.host, "eastus", out, sizeof(out)), 0);
    assert_string_equal(out, "https://eastus.stt.speech.microsoft.com");
    /* A region never picks a host outside the template. */
    const char *hostile[] = {"East US", "eastus.evil.com", "169.254.169.254#", "evil.com/x",
                             "",        "EASTUS",          "eastus/",          "eastus\r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(hostile); i++)
        for (int host = 0; host < 2; host++)
            assert_int_equal(
                route_upstream_base(&cfg, P_AZURE_SPEECH, host, hostile[i], out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, P_AZURE_SPEECH, 1, NULL, out, sizeof(out)), -1);
    /* Not configured, no such host, too small. */
    assert_int_equal(route_upstream_base(&cfg, P_DEEPGRAM, 0, NULL, out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, P_OPENAI, 1, NULL, out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, P_OPENAI, -1, NULL, out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, P_AZURE_SPEECH, 2, "eastus", out, sizeof(out)), -1);
    assert_int_equal(route_upstream_base(&cfg, P_OPENAI, 0, NULL, out, 10), -1);
    assert_int_equal(route_upstream_base(&cfg, P_AZURE_SPEECH, 1, "eastus", out, 20), -1);
    /* A template without {region} for a region host is not used. */
    cfg.upstreams[provider_index(P_AZURE_SPEECH)][0] = (char *)"https://fixed.example";
    assert_int_equal(route_upstream_base(&cfg, P_AZURE_SPEECH, 0, "eastus", out, sizeof(out)), -1);
}

static const char *str_at(json_t *j, const char *a, const char *b)
{
    json_t *v = json_object_get(j, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_string_value(v);
}

static void test_error_shapes(void **state)
{
    (void)state;
    json_t *j = route_error_body(P_OPENAI, 401, "invalid_request_error", "invalid_api_key", "m");
    assert_string_equal(str_at(j, "error", "code"), "invalid_api_key");
    assert_string_equal(str_at(j, "error", "type"), "invalid_request_error");
    assert_string_equal(str_at(j, "error", "message"), "m");
    assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    assert_string_equal(P_OPENAI->error_message(j), "m");
    json_decref(j);
    j = route_error_body(P_DEEPSEEK, 429, "rate_limit_error", "rate_limited", "slow");
    assert_string_equal(str_at(j, "error", "code"), "rate_limited");
    json_decref(j);
    j = route_error_body(P_ELEVENLABS, 401, "t", "invalid_api_key", "m");
    assert_string_equal(str_at(j, "detail", "status"), "invalid_api_key");
    assert_string_equal(str_at(j, "detail", "message"), "m");
    assert_string_equal(P_ELEVENLABS->error_message(j), "m");
    json_decref(j);
    static const struct {
        int status;
        const char *type;
    } anth[] = {{400, "invalid_request_error"},
                {401, "authentication_error"},
                {402, "billing_error"},
                {403, "permission_error"},
                {404, "not_found_error"},
                {413, "request_too_large"},
                {429, "rate_limit_error"},
                {500, "api_error"},
                {503, "api_error"}};
    for (size_t i = 0; i < ARRAY_SIZE(anth); i++) {
        j = route_error_body(P_ANTHROPIC, anth[i].status, "t", "c", "m");
        assert_string_equal(str_at(j, "type", NULL), "error");
        assert_string_equal(str_at(j, "error", "type"), anth[i].type);
        assert_string_equal(str_at(j, "error", "message"), "m");
        json_decref(j);
    }
    j = route_error_body(P_DEEPGRAM, 401, "t", "INVALID_AUTH", "m");
    assert_string_equal(str_at(j, "err_code", NULL), "INVALID_AUTH");
    assert_string_equal(str_at(j, "err_msg", NULL), "m");
    assert_string_equal(P_DEEPGRAM->error_message(j), "m");
    json_decref(j);
    j = route_error_body(P_AZURE_SPEECH, 404, "t", "c", "m");
    assert_string_equal(str_at(j, "error", "code"), "404");
    assert_string_equal(str_at(j, "error", "message"), "m");
    json_decref(j);
    j = route_error_body(P_CARTESIA, 402, "t", "insufficient_quota", "m");
    assert_string_equal(str_at(j, "error", NULL), "m");
    assert_string_equal(str_at(j, "code", NULL), "insufficient_quota");
    assert_string_equal(P_CARTESIA->error_message(j), "m");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_path_unsafe),
        cmocka_unit_test(test_endpoint_table),
        cmocka_unit_test(test_wallet_refused_query),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_strip_headers),
        cmocka_unit_test(test_forward_query),
        cmocka_unit_test(test_forward_protocols),
        cmocka_unit_test(test_inject),
        cmocka_unit_test(test_upstream_base),
        cmocka_unit_test(test_error_shapes),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
