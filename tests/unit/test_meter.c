/* test_meter.c - unit tests of usage metering, reached as the data plane
 * reaches it: the served endpoint of a request (route_endpoint) names its
 * REST meter (struct meter_ops) or WebSocket meter (struct ws_meter_ops).
 * Endpoints served and their lines; request parsing and the include_usage
 * rewrite; replies streamed or not; multipart uploads; WAV and Ogg
 * durations (audio.h); estimates; every provider's meters, REST and
 * WebSocket; SSML and Azure's framed audio. */
#include "common.h"

#include "audio.h"
#include "meter.h"
#include "multipart.h"
#include "providers/azure_speech.h"
#include "route.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The served endpoint of a request on the full proxy path (as the client
 * sends it, without query), or NULL when the path has no route or the
 * endpoint is not served. */
static const struct provider_endpoint *endpoint_n(const char *method, const char *path, size_t len,
                                                  bool ws)
{
    struct route rt;
    if (route_match(path, len, &rt) == -1)
        return NULL;
    return route_endpoint(&rt, method, strlen(method), ws);
}

static const struct provider_endpoint *endpoint(const char *method, const char *path, bool ws)
{
    return endpoint_n(method, path, strlen(path), ws);
}

/* The REST meter of a served, metered endpoint. */
static const struct meter_ops *ops_for(const char *method, const char *path)
{
    const struct provider_endpoint *ep = endpoint(method, path, false);
    if (ep == NULL || ep->meter == NULL)
        fail_msg("%s %s: not a metered endpoint", method, path);
    return ep->meter;
}

/* The WebSocket meter of a served socket endpoint (GET upgrade). */
static const struct provider_endpoint *ws_endpoint(const char *path)
{
    const struct provider_endpoint *ep = endpoint("GET", path, true);
    if (ep == NULL || ep->ws == NULL)
        fail_msg("GET %s (upgrade): not a metered socket endpoint", path);
    return ep;
}

#define OPS_CHAT          ops_for("POST", "/v1/chat/completions")
#define OPS_RESPONSES     ops_for("POST", "/v1/responses")
#define OPS_EMBEDDINGS    ops_for("POST", "/v1/embeddings")
#define OPS_SPEECH        ops_for("POST", "/v1/audio/speech")
#define OPS_TRANSCRIPTION ops_for("POST", "/v1/audio/transcriptions")
#define OPS_DEEPSEEK_CHAT ops_for("POST", "/deepseek/chat/completions")
#define OPS_EL_TTS        ops_for("POST", "/elevenlabs/v1/text-to-speech/v1")
#define OPS_ANTHROPIC     ops_for("POST", "/anthropic/v1/messages")
#define OPS_DG_LISTEN     ops_for("POST", "/deepgram/v1/listen")
#define OPS_DG_SPEAK      ops_for("POST", "/deepgram/v1/speak")
#define OPS_CARTESIA_TTS  ops_for("POST", "/cartesia/tts/bytes")
#define OPS_AZURE_TTS     ops_for("POST", "/azure/tts/cognitiveservices/v1")
#define OPS_AZURE_STT                                                                              \
    ops_for("POST", "/azure/stt/speech/recognition/conversation/cognitiveservices/v1")

static int request(struct meter *m, const char *body, char **rw, size_t *rw_len)
{
    return meter_request(m, body, strlen(body), "application/json", 16, rw, rw_len);
}

static bool sse(struct meter *m, const char *event, const char *data)
{
    return meter_sse_event(m, event, data, strlen(data));
}

static void response(struct meter *m, const char *body)
{
    meter_response_json(m, body, strlen(body));
}

/* --- served endpoints ------------------------------------------------------- */

/* What a request reaches: the endpoint's line and meter, by method and full
 * proxy path. Paths that are not served (not declared for a wallet line)
 * give NULL, whatever their prefix. */
static void test_endpoints(void **state)
{
    (void)state;
    static const struct {
        const char *method;
        const char *path;
        const char *line;  /* NULL: not served */
        const char *meter; /* meter_ops name, NULL: served, not metered */
    } cases[] = {
        /* OpenAI, both prefixes. */
        {"POST", "/v1/chat/completions", "llm", "openai.chat"},
        {"POST", "/openai/v1/chat/completions", "llm", "openai.chat"},
        {"POST", "/v1/responses", "llm", "openai.responses"},
        {"POST", "/v1/embeddings", "embeddings", "openai.embeddings"},
        {"POST", "/v1/audio/speech", "tts", "openai.speech"},
        {"POST", "/v1/audio/transcriptions", "stt", "openai.transcription"},
        {"POST", "/v1/audio/translations", "stt", "openai.transcription"},
        {"GET", "/v1/models", "llm", NULL},
        {"GET", "/v1/models/gpt-4o", "llm", NULL},
        {"POST", "/v1/models", NULL, NULL}, /* the method matters */
        {"GET", "/v1/chat/completions", NULL, NULL},
        {"POST", "/v1/chat/completions/", NULL, NULL},
        {"POST", "/v1/chat/completion", NULL, NULL},
        {"GET", "/v1/responses/resp_1", NULL, NULL},
        {"GET", "/v1/models/", NULL, NULL},
        {"POST", "/v1/messages", NULL, NULL},
        {"POST", "/openai/chat/completions", NULL, NULL}, /* no route */
        {"GET", "/v1/files", NULL, NULL},
        /* DeepSeek: with and without /v1; its balance is not served. */
        {"POST", "/deepseek/chat/completions", "llm", "openai.chat"},
        {"POST", "/deepseek/v1/chat/completions", "llm", "openai.chat"},
        {"GET", "/deepseek/models", "llm", NULL},
        {"POST", "/deepseek/models", NULL, NULL},
        {"GET", "/deepseek/user/balance", NULL, NULL},
        {"POST", "/deepseekchat/completions", NULL, NULL},
        {"POST", "/deepseek/v1/v1/chat/completions", NULL, NULL},
        /* ElevenLabs: one voice segment, four forms. */
        {"POST", "/elevenlabs/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", "tts", "elevenlabs.tts"},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/stream", "tts", "elevenlabs.tts"},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/with-timestamps", "tts", "elevenlabs.tts"},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/stream/with-timestamps", "tts",
         "elevenlabs.tts"},
        {"POST", "/elevenlabs/v1/text-to-speech/", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech//stream", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/stream-input", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/stream/", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/", NULL, NULL},
        {"POST", "/elevenlabs/v1/text-to-speech/v1/with-timestamps/stream", NULL, NULL},
        {"POST", "/elevenlabs/v1/voices", NULL, NULL},
        {"GET", "/elevenlabs/v1/voices", "tts", NULL},
        {"GET", "/elevenlabs/v1/voices/v1", "tts", NULL},
        {"GET", "/elevenlabs/v1/models", "tts", NULL},
        {"GET", "/elevenlabs/v1/user", NULL, NULL},
        /* Anthropic: count_tokens is free, served unmetered. */
        {"POST", "/anthropic/v1/messages", "llm", "anthropic.messages"},
        {"POST", "/anthropic/v1/messages/count_tokens", "llm", NULL},
        {"GET", "/anthropic/v1/models", "llm", NULL},
        {"POST", "/anthropic/v1/messages/", NULL, NULL},
        {"POST", "/anthropic/messages", NULL, NULL},
        {"POST", "/anthropic/v1/chat/completions", NULL, NULL},
        {"GET", "/anthropic/v1/messages/batches", NULL, NULL},
        /* Deepgram. */
        {"POST", "/deepgram/v1/listen", "stt", "deepgram.listen"},
        {"POST", "/deepgram/v1/speak", "tts", "deepgram.speak"},
        {"GET", "/deepgram/v1/models", "stt", NULL},
        {"POST", "/deepgram/v1/listen/", NULL, NULL},
        {"GET", "/deepgram/v1/projects", NULL, NULL},
        /* Cartesia. */
        {"POST", "/cartesia/tts/bytes", "tts", "cartesia.tts"},
        {"POST", "/cartesia/tts/sse", "tts", "cartesia.tts"},
        {"POST", "/cartesia/tts/websocket", NULL, NULL},
        {"GET", "/cartesia/voices", "tts", NULL},
        {"POST", "/cartesia/voices", NULL, NULL},
        {"GET", "/cartesia", NULL, NULL},
        /* Azure Speech: each endpoint on its own host only. */
        {"POST", "/azure/tts/cognitiveservices/v1", "tts", "azure_speech.tts"},
        {"GET", "/azure/tts/cognitiveservices/voices/list", "tts", NULL},
        {"POST", "/azure/stt/cognitiveservices/v1", NULL, NULL},
        {"GET", "/azure/stt/cognitiveservices/voices/list", NULL, NULL},
        {"POST", "/azure/stt/speech/recognition/conversation/cognitiveservices/v1", "stt",
         "azure_speech.stt"},
        {"POST", "/azure/stt/speech/recognition/interactive/cognitiveservices/v1", "stt",
         "azure_speech.stt"},
        {"POST", "/azure/stt/speech/recognition/dictation/cognitiveservices/v1", "stt",
         "azure_speech.stt"},
        {"POST", "/azure/tts/speech/recognition/dictation/cognitiveservices/v1", NULL, NULL},
        {"POST", "/azure/stt/speech/recognition/other/cognitiveservices/v1", NULL, NULL},
        {"POST", "/azure/stt/speech/recognition/conversation/cognitiveservices/v2", NULL, NULL},
        {"POST", "/azure/stt/stt/speech/universal/v2", NULL, NULL},
        {"POST", "/azure/stt", NULL, NULL},
        /* Methods no endpoint declares. */
        {"TRACE", "/v1/chat/completions", NULL, NULL},
        {"DELETE", "/v1/models/gpt-4o", NULL, NULL},
        {"post", "/v1/chat/completions", NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct provider_endpoint *ep = endpoint(cases[i].method, cases[i].path, false);
        if (cases[i].line == NULL) {
            if (ep != NULL)
                fail_msg("%s %s: served (line %s), should not be", cases[i].method, cases[i].path,
                         ep->line);
            continue;
        }
        if (ep == NULL)
            fail_msg("%s %s: not served", cases[i].method, cases[i].path);
        assert_string_equal(ep->line, cases[i].line);
        assert_null(ep->ws);
        assert_int_equal(ep->flags & PROVIDER_EP_WS, 0);
        if (cases[i].meter == NULL) {
            if (ep->meter != NULL)
                fail_msg("%s %s: metered by %s", cases[i].method, cases[i].path, ep->meter->name);
        } else {
            if (ep->meter == NULL)
                fail_msg("%s %s: not metered", cases[i].method, cases[i].path);
            assert_string_equal(ep->meter->name, cases[i].meter);
        }
    }
    /* OpenAI's chat meter serves DeepSeek too. */
    assert_ptr_equal(OPS_DEEPSEEK_CHAT, OPS_CHAT);
    /* The length bounds the path: a longer buffer's prefix is used. */
    const char *q = "/v1/embeddings?x=1";
    assert_non_null(endpoint_n("POST", q, 14, false));
    assert_null(endpoint_n("POST", q, strlen(q), false));
    q = "/anthropic/v1/messages?beta=true";
    assert_ptr_equal(endpoint_n("POST", q, 22, false)->meter, OPS_ANTHROPIC);
    assert_null(endpoint_n("POST", q, strlen(q), false));
    struct route rt;
    assert_int_equal(route_match("", 0, &rt), -1);
    assert_int_equal(route_match(NULL, 0, &rt), -1);
}

/* Socket endpoints are matched only for upgrade requests, and only they. */
static void test_ws_endpoints(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        const char *line;
        const char *meter; /* ws_meter_ops name; NULL: not a socket endpoint */
        const char *model_query;
    } cases[] = {
        {"/v1/realtime", "realtime", "openai.realtime", "model"},
        {"/openai/v1/realtime", "realtime", "openai.realtime", "model"},
        {"/elevenlabs/v1/text-to-speech/v1/stream-input", "tts", "elevenlabs.stream_input",
         "model_id"},
        {"/elevenlabs/v1/text-to-speech/v1/multi-stream-input", "tts", "elevenlabs.stream_input",
         "model_id"},
        {"/deepgram/v1/listen", "stt", "deepgram.listen_socket", "model"},
        {"/deepgram/v1/speak", "tts", "deepgram.speak_socket", "model"},
        {"/cartesia/tts/websocket", "tts", "cartesia.tts_socket", NULL},
        {"/azure/tts/cognitiveservices/websocket/v1", "tts", "azure_speech.tts_socket", NULL},
        {"/azure/tts/tts/cognitiveservices/websocket/v1", "tts", "azure_speech.tts_socket", NULL},
        {"/azure/stt/speech/recognition/conversation/cognitiveservices/v1", "stt",
         "azure_speech.stt_socket", NULL},
        {"/azure/stt/speech/recognition/interactive/cognitiveservices/v1", "stt",
         "azure_speech.stt_socket", NULL},
        {"/azure/stt/speech/recognition/dictation/cognitiveservices/v1", "stt",
         "azure_speech.stt_socket", NULL},
        {"/azure/stt/stt/speech/universal/v2", "stt", "azure_speech.stt_socket", NULL},
        /* Not sockets. */
        {"/v1/chat/completions", NULL, NULL, NULL},
        {"/v1/models", NULL, NULL, NULL},
        {"/v1/realtime/calls", NULL, NULL, NULL},
        {"/elevenlabs/v1/text-to-speech/v1", NULL, NULL, NULL},
        {"/azure/stt/cognitiveservices/websocket/v1", NULL, NULL, NULL},
        {"/azure/tts/speech/recognition/conversation/cognitiveservices/v1", NULL, NULL, NULL},
        {"/anthropic/v1/messages", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct provider_endpoint *ep = endpoint("GET", cases[i].path, true);
        if (cases[i].meter == NULL) {
            if (ep != NULL)
                fail_msg("GET %s (upgrade): served", cases[i].path);
            continue;
        }
        if (ep == NULL || ep->ws == NULL)
            fail_msg("GET %s (upgrade): not a socket endpoint", cases[i].path);
        assert_string_equal(ep->line, cases[i].line);
        assert_string_equal(ep->ws->name, cases[i].meter);
        assert_null(ep->meter);
        assert_int_not_equal(ep->flags & PROVIDER_EP_WS, 0);
        if (cases[i].model_query == NULL)
            assert_null(ep->model_query);
        else
            assert_string_equal(ep->model_query, cases[i].model_query);
        /* The same path without an upgrade is another endpoint (or none). */
        const struct provider_endpoint *plain = endpoint("GET", cases[i].path, false);
        assert_true(plain == NULL || plain->ws == NULL);
        /* Upgrades are GET requests. */
        assert_null(endpoint("POST", cases[i].path, true));
    }
    /* Only OpenAI Realtime reports units itself; only Cartesia names the
     * model per client message. */
    assert_true(ws_endpoint("/v1/realtime")->ws->by_unit);
    assert_false(ws_endpoint("/deepgram/v1/listen")->ws->by_unit);
    assert_true(ws_endpoint("/cartesia/tts/websocket")->ws->inspect_client_text);
    assert_false(ws_endpoint("/v1/realtime")->ws->inspect_client_text);

    /* Ephemeral tokens are minted by the proxy: served, not metered. */
    static const char *const mints[] = {"/v1/realtime/client_secrets", "/v1/realtime/sessions",
                                        "/openai/v1/realtime/client_secrets"};
    for (size_t i = 0; i < ARRAY_SIZE(mints); i++) {
        const struct provider_endpoint *ep = endpoint("POST", mints[i], false);
        assert_non_null(ep);
        assert_int_not_equal(ep->flags & PROVIDER_EP_MINT, 0);
        assert_null(ep->meter);
        assert_string_equal(ep->line, "realtime");
    }
    assert_null(endpoint("GET", "/v1/realtime/client_secrets", false));
}

static void test_chat_non_stream(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    assert_int_equal(m.upload_audio_ms, -1);
    char *rw = (char *)1;
    size_t rw_len = 7;
    assert_int_equal(
        request(&m,
                "{\"model\":\"gpt-4o-mini\",\"messages\":["
                "{\"role\":\"system\",\"content\":\"Be brief\"},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\xc3\xa9llo\"},"
                "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                &rw, &rw_len),
        0);
    assert_null(rw);
    assert_int_equal(rw_len, 0);
    assert_string_equal(m.model, "gpt-4o-mini");
    assert_false(m.stream);
    /* "Be brief" (8) + "héllo" (5 code points). */
    assert_int_equal(m.prompt_chars, 13);

    response(&m, "{\"id\":\"c1\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],"
                 "\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":50,\"total_tokens\":170,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":100,\"audio_tokens\":7},"
                 "\"completion_tokens_details\":{\"reasoning_tokens\":3,\"audio_tokens\":9}}}");
    assert_true(m.got_usage);
    assert_int_equal(m.units.input_tokens, 120);
    assert_int_equal(m.units.cached_input_tokens, 100);
    assert_int_equal(m.units.audio_input_tokens, 7);
    assert_int_equal(m.units.output_tokens, 50);
    assert_int_equal(m.units.audio_output_tokens, 9);
    /* The request named the model: the reply's snapshot name does not
     * replace it. */
    assert_string_equal(m.model, "gpt-4o-mini");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 120);
}

static void test_chat_model_from_reply(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    char *rw;
    size_t rw_len;
    assert_int_equal(
        request(&m, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &rw, &rw_len), 0);
    assert_string_equal(m.model, "");
    response(&m, "{\"model\":\"gpt-4o\",\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2}}");
    assert_string_equal(m.model, "gpt-4o");
    assert_int_equal(m.units.input_tokens, 0); /* negative counts are not trusted */
    assert_int_equal(m.units.output_tokens, 2);
}

/* The fast path parses only the last "usage" key's object: a "usage" that
 * appears inside string content (escaped quotes) must not be taken. */
static void test_usage_fast_path(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    char *rw;
    size_t rw_len;
    assert_int_equal(request(&m, "{\"model\":\"gpt-4o-mini\",\"messages\":[]}", &rw, &rw_len), 0);
    response(&m, "{\"choices\":[{\"message\":{\"content\":\"fake \\\"usage\\\": "
                 "{\\\"prompt_tokens\\\":999}\"}}],\n \"usage\" :\n {\"prompt_tokens\":11,"
                 "\"completion_tokens\":4}}");
    assert_true(m.got_usage);
    assert_int_equal(m.units.input_tokens, 11);
    assert_int_equal(m.units.output_tokens, 4);

    /* "usage" only inside a string: no usage, and no crash. */
    meter_init(&m, OPS_EMBEDDINGS);
    assert_int_equal(
        request(&m, "{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}", &rw, &rw_len), 0);
    response(&m, "{\"data\":[{\"note\":\"\\\"usage\\\":{}\"}]}");
    assert_false(m.got_usage);

    /* A usage key whose value is not an object falls back to the full
     * parse, which finds no usage object either. */
    meter_init(&m, OPS_EMBEDDINGS);
    assert_int_equal(
        request(&m, "{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}", &rw, &rw_len), 0);
    response(&m, "{\"usage\":null}");
    assert_false(m.got_usage);
}

static void test_bad_json(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(request(&m, "{\"model\":\"x\",\"stream\":true", &rw, &rw_len), -1);
    assert_null(rw);
    assert_int_equal(request(&m, "[1,2]", &rw, &rw_len), -1);
    assert_int_equal(meter_request(&m, "", 0, NULL, 0, &rw, &rw_len), -1);
    /* Unmetered endpoints do not look at the body, nor count anything. */
    const struct provider_endpoint *models = endpoint("GET", "/v1/models", false);
    assert_non_null(models);
    assert_null(models->meter);
    meter_init(&m, models->meter);
    assert_int_equal(request(&m, "not json", &rw, &rw_len), 0);
    assert_null(rw);
    response(&m, "{\"usage\":{\"prompt_tokens\":5}}");
    assert_false(sse(&m, "", "{\"usage\":{\"prompt_tokens\":5}}"));
    assert_false(meter_wants_json(&m));
    assert_false(meter_wants_sse(&m));
    assert_false(meter_finish(&m));
    assert_false(m.got_usage);
    assert_int_equal(m.units.input_tokens, 0);
    assert_string_equal(meter_model(&m), "");
    /* A reply that is not JSON leaves the meter alone. */
    meter_init(&m, OPS_CHAT);
    response(&m, "<html>bad gateway</html>");
    assert_false(m.got_usage);
}

/* Without stream_options the member is inserted as text: every other byte
 * of the client's body is unchanged. */
static void test_rewrite_inserts(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    const char *body = "  {\"model\": \"gpt-4o-mini\", \"stream\": true, \"temperature\": 0.7,"
                       " \"messages\": [{\"role\": \"user\", \"content\": \"Say hi\"}]}";
    char *rw = NULL;
    size_t rw_len = 0;
    assert_int_equal(request(&m, body, &rw, &rw_len), 0);
    assert_true(m.stream);
    assert_false(m.client_include_usage);
    assert_int_equal(m.prompt_chars, 6);
    assert_non_null(rw);
    const char *expect =
        "  {\"stream_options\":{\"include_usage\":true},\"model\": \"gpt-4o-mini\","
        " \"stream\": true, \"temperature\": 0.7,"
        " \"messages\": [{\"role\": \"user\", \"content\": \"Say hi\"}]}";
    assert_int_equal(rw_len, strlen(expect));
    assert_memory_equal(rw, expect, rw_len);
    json_t *j = json_loadb(rw, rw_len, 0, NULL);
    assert_non_null(j);
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);
    free(rw);
}

/* With stream_options present (include_usage false or absent, or null) the
 * body is re-serialised: other keys, values and member order are kept. */
static void test_rewrite_merges(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"gpt-4o-mini\",\"stream\":true,"
        "\"stream_options\":{\"include_obfuscation\":false,\"include_usage\":false},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}",
        "{\"model\":\"gpt-4o-mini\",\"stream\":true,"
        "\"stream_options\":{\"include_obfuscation\":false},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}",
        "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":null,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        struct meter m;
        meter_init(&m, OPS_CHAT);
        char *rw = NULL;
        size_t rw_len = 0;
        assert_int_equal(request(&m, bodies[i], &rw, &rw_len), 0);
        assert_false(m.client_include_usage);
        assert_non_null(rw);
        json_t *got = json_loadb(rw, rw_len, 0, NULL);
        json_t *want = json_loads(bodies[i], 0, NULL);
        assert_non_null(got);
        assert_non_null(want);
        json_t *so = json_object_get(got, "stream_options");
        assert_true(json_is_true(json_object_get(so, "include_usage")));
        if (i < 2)
            assert_true(json_is_false(json_object_get(so, "include_obfuscation")));
        /* Apart from stream_options the documents are equal. */
        json_object_del(got, "stream_options");
        json_object_del(want, "stream_options");
        assert_true(json_equal(got, want));
        /* Member order is the client's. */
        const char *model_at = strstr(rw, "\"model\"");
        const char *so_at = strstr(rw, "\"stream_options\"");
        const char *user_at = strstr(rw, "\"user\"");
        assert_true(model_at < so_at && so_at < user_at);
        json_decref(got);
        json_decref(want);
        free(rw);
    }
}

static void test_no_rewrite_cases(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        /* client already asked */
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        /* not streaming */
        "{\"model\":\"m\",\"stream\":false}",
        "{\"model\":\"m\"}",
        /* stream_options of the wrong type: the provider answers */
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":\"x\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        struct meter m;
        meter_init(&m, OPS_CHAT);
        char *rw = (char *)1;
        size_t rw_len;
        assert_int_equal(request(&m, bodies[i], &rw, &rw_len), 0);
        assert_null(rw);
        assert_int_equal(m.client_include_usage, i == 0);
    }
    /* Only chat completions are rewritten. */
    struct meter r;
    meter_init(&r, OPS_RESPONSES);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(request(&r, "{\"model\":\"m\",\"stream\":true,\"input\":\"x\"}", &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_true(r.stream);
    /* DeepSeek's chat completions (OpenAI's meter) are: its streams report
     * usage the same way. */
    struct meter d;
    meter_init(&d, OPS_DEEPSEEK_CHAT);
    rw = NULL;
    assert_int_equal(
        request(&d, "{\"model\":\"deepseek-chat\",\"stream\":true,\"messages\":[]}", &rw, &rw_len),
        0);
    assert_non_null(rw);
    assert_non_null(strstr(rw, "\"include_usage\":true"));
    free(rw);
}

#define CHUNK(content)                                                                             \
    "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\","                \
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":" content "},\"finish_reason\":null}],"      \
    "\"usage\":null}"
#define USAGE_CHUNK                                                                                \
    "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\","                \
    "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,"                      \
    "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":0}}}"

static void run_chat_stream(bool client_asked)
{
    struct meter m;
    meter_init(&m, OPS_CHAT);
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o-mini\",\"stream\":true,%s\"messages\":"
             "[{\"role\":\"user\",\"content\":\"Say hello\"}]}",
             client_asked ? "\"stream_options\":{\"include_usage\":true}," : "");
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m, body, &rw, &rw_len), 0);
    assert_int_equal(rw != NULL, !client_asked);
    free(rw);

    assert_false(sse(&m, "",
                     "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],"
                     "\"usage\":null}"));
    assert_false(sse(&m, "", CHUNK("\"Hel\"")));
    assert_false(sse(&m, "", CHUNK("\"lo \\\"w\\u00e9\\\"\"")));
    assert_false(m.got_usage);
    /* The usage chunk is dropped only when we asked for it. */
    assert_int_equal(sse(&m, "", USAGE_CHUNK), !client_asked);
    assert_false(sse(&m, "", "[DONE]"));
    assert_true(m.got_usage);
    assert_int_equal(m.units.input_tokens, 12);
    assert_int_equal(m.units.output_tokens, 5);
    /* "Hel" + "lo \"wé\"" = 3 + 7 characters. */
    assert_int_equal(m.output_chars, 10);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 12);
}

static void test_chat_stream_drop_rule(void **state)
{
    (void)state;
    run_chat_stream(false);
    run_chat_stream(true);
}

/* A chunk with usage and choices is never dropped (some servers report
 * usage on the last content chunk). */
static void test_chat_usage_with_choices_kept(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    assert_false(sse(&m, "",
                     "{\"choices\":[{\"delta\":{\"content\":\"x\"}}],"
                     "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}"));
    assert_true(m.got_usage);
}

static void test_chat_stream_estimate(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_CHAT);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":["
                             "{\"role\":\"user\",\"content\":\"123456789\"}]}",
                             &rw, &rw_len),
                     0);
    free(rw);
    assert_false(sse(&m, "", CHUNK("\"Hello\"")));
    /* The stream breaks before the usage chunk. */
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 3);  /* ceil(9/4) */
    assert_int_equal(m.units.output_tokens, 2); /* ceil(5/4) */
}

static void test_responses(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_RESPONSES);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"gpt-4.1\",\"instructions\":\"Be nice\",\"input\":["
                             "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":"
                             "\"abc\"}]},{\"role\":\"user\",\"content\":\"de\"}]}",
                             &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_int_equal(m.prompt_chars, 7 + 3 + 2);
    response(&m, "{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":30,\"input_tokens_details\":"
                 "{\"cached_tokens\":10},\"output_tokens\":8,\"output_tokens_details\":"
                 "{\"reasoning_tokens\":2},\"total_tokens\":38}}");
    assert_int_equal(m.units.input_tokens, 30);
    assert_int_equal(m.units.cached_input_tokens, 10);
    assert_int_equal(m.units.output_tokens, 8);
    assert_false(meter_finish(&m));

    /* A string input. */
    meter_init(&m, OPS_RESPONSES);
    assert_int_equal(request(&m, "{\"model\":\"gpt-4.1\",\"input\":\"hello\"}", &rw, &rw_len), 0);
    assert_int_equal(m.prompt_chars, 5);
}

static void test_responses_stream(void **state)
{
    (void)state;
    /* Named events, and the same events without event lines. */
    for (int named = 0; named < 2; named++) {
        struct meter m;
        meter_init(&m, OPS_RESPONSES);
        char *rw = NULL;
        size_t rw_len;
        assert_int_equal(
            request(&m, "{\"previous_response_id\":\"r\",\"stream\":true,\"input\":\"hi\"}", &rw,
                    &rw_len),
            0);
        assert_null(rw);
        assert_false(sse(&m, named ? "response.created" : "",
                         "{\"type\":\"response.created\",\"response\":{\"usage\":null}}"));
        assert_false(sse(&m, named ? "response.output_text.delta" : "",
                         "{\"type\":\"response.output_text.delta\",\"delta\":\"Hi the\"}"));
        assert_false(sse(&m, named ? "response.output_text.delta" : "",
                         "{\"type\":\"response.output_text.delta\",\"delta\":\"re\"}"));
        assert_int_equal(m.output_chars, 8);
        /* Usage only counts on a terminal event. */
        assert_false(sse(&m, named ? "response.in_progress" : "",
                         "{\"type\":\"response.in_progress\",\"response\":{\"usage\":"
                         "{\"input_tokens\":99,\"output_tokens\":99}}}"));
        assert_false(m.got_usage);
        assert_false(
            sse(&m, named ? "response.incomplete" : "",
                "{\"type\":\"response.incomplete\",\"response\":{\"model\":\"gpt-4.1-mini\","
                "\"usage\":{\"input_tokens\":5,\"input_tokens_details\":"
                "{\"cached_tokens\":1},\"output_tokens\":2}}}"));
        assert_true(m.got_usage);
        assert_int_equal(m.units.input_tokens, 5);
        assert_int_equal(m.units.cached_input_tokens, 1);
        assert_int_equal(m.units.output_tokens, 2);
        assert_string_equal(m.model, "gpt-4.1-mini");
        assert_false(meter_finish(&m));
    }
    /* Aborted before the terminal event: estimate. */
    struct meter e;
    meter_init(&e, OPS_RESPONSES);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(
        request(&e, "{\"model\":\"x\",\"stream\":true,\"input\":\"abcde\"}", &rw, &rw_len), 0);
    assert_false(sse(&e, "response.output_text.delta", "{\"delta\":\"abc\"}"));
    assert_true(meter_finish(&e));
    assert_int_equal(e.units.input_tokens, 2);
    assert_int_equal(e.units.output_tokens, 1);
}

static void test_embeddings(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_EMBEDDINGS);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"text-embedding-3-small\",\"input\":[\"a\",\"b\"],"
                             "\"encoding_format\":\"base64\"}",
                             &rw, &rw_len),
                     0);
    assert_string_equal(m.model, "text-embedding-3-small");
    response(&m, "{\"object\":\"list\",\"data\":[],\"usage\":{\"prompt_tokens\":8,"
                 "\"total_tokens\":8}}");
    assert_true(m.got_usage);
    assert_int_equal(m.units.input_tokens, 8);
    assert_int_equal(m.units.output_tokens, 0);
    assert_false(meter_finish(&m));

    /* No usage in the reply (cut, or not JSON): estimated from the input's
     * characters, 4 per token, never 0. */
    static const struct {
        const char *body;
        int64_t tokens;
    } inputs[] = {
        {"{\"model\":\"text-embedding-3-small\",\"input\":\"123456789\"}", 3},
        {"{\"model\":\"text-embedding-3-small\",\"input\":[\"abcd\",\"efgh\",\"i\"]}", 3},
        {"{\"model\":\"text-embedding-3-small\",\"input\":\"\"}", 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(inputs); i++) {
        meter_init(&m, OPS_EMBEDDINGS);
        assert_int_equal(request(&m, inputs[i].body, &rw, &rw_len), 0);
        response(&m, "<html>502</html>");
        assert_false(m.got_usage);
        assert_true(meter_finish(&m));
        assert_int_equal(m.units.input_tokens, inputs[i].tokens);
        assert_int_equal(m.units.output_tokens, 0);
        assert_string_equal(m.model, "text-embedding-3-small");
    }
    /* Token arrays are not characters: counted as nothing (the reply's
     * usage is what bills them). */
    meter_init(&m, OPS_EMBEDDINGS);
    assert_int_equal(request(&m, "{\"model\":\"m\",\"input\":[[1,2,3]]}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 0);
}

/* DeepSeek speaks OpenAI's chat shape; its cache hits are
 * prompt_cache_hit_tokens, counted as cached input. */
static void test_deepseek_cache_hits(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_DEEPSEEK_CHAT);
    assert_int_equal(request(&m,
                             "{\"model\":\"deepseek-chat\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"hi\"}]}",
                             &rw, &rw_len),
                     0);
    assert_null(rw);
    response(&m, "{\"model\":\"deepseek-chat\",\"usage\":{\"prompt_tokens\":100,"
                 "\"completion_tokens\":7,\"total_tokens\":107,\"prompt_cache_hit_tokens\":80,"
                 "\"prompt_cache_miss_tokens\":20}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 100);
    assert_int_equal(m.units.cached_input_tokens, 80);
    assert_int_equal(m.units.output_tokens, 7);
    assert_string_equal(m.model, "deepseek-chat");

    /* The stream's usage chunk, likewise. */
    meter_init(&m, OPS_DEEPSEEK_CHAT);
    assert_int_equal(request(&m,
                             "{\"model\":\"deepseek-reasoner\",\"stream\":true,"
                             "\"messages\":[]}",
                             &rw, &rw_len),
                     0);
    free(rw);
    assert_true(sse(&m, "",
                    "{\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":5,"
                    "\"prompt_cache_hit_tokens\":48,\"prompt_cache_miss_tokens\":2}}"));
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 50);
    assert_int_equal(m.units.cached_input_tokens, 48);

    /* OpenAI's cached_tokens is read first when both are present. */
    meter_init(&m, OPS_CHAT);
    response(&m, "{\"model\":\"x\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":4},"
                 "\"prompt_cache_hit_tokens\":9}}");
    assert_int_equal(m.units.cached_input_tokens, 4);
    /* No cache report: 0. */
    meter_init(&m, OPS_DEEPSEEK_CHAT);
    response(&m, "{\"model\":\"x\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1}}");
    assert_int_equal(m.units.cached_input_tokens, 0);
}

static void test_speech(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_SPEECH);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"tts-1\",\"input\":\"h\xc3\xa9llo \xe2\x82\xac\","
                             "\"voice\":\"alloy\"}",
                             &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 7); /* code points, not bytes */
    assert_int_equal(m.units.input_tokens, 0);

    /* stream_format sse: the reported tokens replace the characters. */
    meter_init(&m, OPS_SPEECH);
    assert_int_equal(request(&m,
                             "{\"model\":\"gpt-4o-mini-tts\",\"input\":\"hello\","
                             "\"stream_format\":\"sse\"}",
                             &rw, &rw_len),
                     0);
    assert_false(sse(&m, "", "{\"type\":\"speech.audio.delta\",\"audio\":\"AAAA\"}"));
    assert_false(m.got_usage);
    assert_false(sse(&m, "",
                     "{\"type\":\"speech.audio.done\",\"usage\":{\"input_tokens\":4,"
                     "\"output_tokens\":40,\"total_tokens\":44}}"));
    assert_false(meter_finish(&m));
    assert_true(m.got_usage);
    assert_int_equal(m.units.input_tokens, 4);
    assert_int_equal(m.units.output_tokens, 40);
    assert_int_equal(m.units.audio_output_tokens, 40);
    assert_int_equal(m.units.characters, 0);
}

/* Little-endian writers for the WAV and Ogg builders. */
static size_t put(unsigned char *out, size_t n, const void *s, size_t l)
{
    memcpy(out + n, s, l);
    return n + l;
}

static size_t put16(unsigned char *out, size_t n, uint16_t v)
{
    out[n] = (unsigned char)(v & 0xff);
    out[n + 1] = (unsigned char)(v >> 8);
    return n + 2;
}

static size_t put32(unsigned char *out, size_t n, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        out[n + (size_t)i] = (unsigned char)(v >> (8 * i));
    return n + 4;
}

static size_t put_fmt(unsigned char *out, size_t n, uint16_t format, uint32_t rate,
                      uint16_t channels, uint16_t bits, uint32_t byte_rate)
{
    n = put(out, n, "fmt ", 4);
    n = put32(out, n, 16);
    n = put16(out, n, format);
    n = put16(out, n, channels);
    n = put32(out, n, rate);
    n = put32(out, n, byte_rate);
    n = put16(out, n, (uint16_t)(channels * bits / 8));
    return put16(out, n, bits);
}

/* A chunk with its id, size and body (padded to an even size). */
static size_t put_chunk(unsigned char *out, size_t n, const char *id, const void *body,
                        uint32_t size)
{
    n = put(out, n, id, 4);
    n = put32(out, n, size);
    n = put(out, n, body, size);
    if (size & 1)
        out[n++] = 0;
    return n;
}

/* A PCM WAV with the given header byte rate, optional LIST chunk before
 * fmt, and data_bytes of audio behind a data chunk declaring `declared`. */
static size_t make_wav_rate(unsigned char *out, uint32_t rate, uint16_t channels, uint16_t bits,
                            uint32_t byte_rate, uint32_t data_bytes, uint32_t declared,
                            bool list_first)
{
    size_t n = 0;
    n = put(out, n, "RIFF", 4);
    n = put32(out, n, 0); /* RIFF size: not used */
    n = put(out, n, "WAVE", 4);
    if (list_first)
        n = put_chunk(out, n, "LIST", "INFOx", 5); /* odd size: padded to 6 */
    n = put_fmt(out, n, 1, rate, channels, bits, byte_rate);
    n = put(out, n, "data", 4);
    n = put32(out, n, declared);
    memset(out + n, 0x11, data_bytes);
    return n + data_bytes;
}

/* A canonical 44-byte-header PCM WAV plus optional extra chunks. */
static size_t make_wav(unsigned char *out, uint32_t rate, uint16_t channels, uint16_t bits,
                       uint32_t data_bytes, uint32_t declared, bool list_first)
{
    return make_wav_rate(out, rate, channels, bits, rate * channels * bits / 8, data_bytes,
                         declared, list_first);
}

static void test_wav_duration(void **state)
{
    (void)state;
    unsigned char *w = malloc(200000);
    assert_non_null(w);
    /* 16 kHz mono 16-bit: 32000 bytes/s; 48000 bytes = 1.5 s. */
    size_t n = make_wav(w, 16000, 1, 16, 48000, 48000, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 1500);
    assert_int_equal(audio_duration_ms(w, n), 1500);
    struct audio_wav hdr;
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.sample_rate, 16000);
    assert_int_equal(hdr.channels, 1);
    assert_int_equal(hdr.bits, 16);
    assert_int_equal(hdr.format, 1);
    assert_int_equal(hdr.bytes_per_sec, 32000);
    assert_int_equal(hdr.data_offset, 44);
    assert_int_equal(hdr.data_declared, 48000);
    assert_int_equal(hdr.fact_samples, 0);
    /* A LIST chunk (odd size, padded) before fmt. */
    n = make_wav(w, 16000, 1, 16, 48000, 48000, true);
    assert_int_equal(audio_wav_duration_ms(w, n), 1500);
    /* Streaming writer: size left open. */
    n = make_wav(w, 24000, 1, 16, 24000, 0xFFFFFFFFu, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 500);
    n = make_wav(w, 24000, 1, 16, 24000, 0, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 500);
    /* Declared larger than what was uploaded: count what is there. */
    n = make_wav(w, 8000, 2, 16, 3200, 999999, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 100);
    /* Rounded up to the next millisecond. */
    n = make_wav(w, 8000, 1, 8, 1, 1, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 1);
    /* Not WAV, truncated headers, no fmt. */
    assert_int_equal(audio_wav_duration_ms((const unsigned char *)"ID3\x03garbage", 10), -1);
    assert_int_equal(audio_duration_ms((const unsigned char *)"ID3\x03garbage", 10), -1);
    assert_int_equal(audio_wav_duration_ms(w, 11), -1);
    assert_int_equal(audio_wav_duration_ms(w, 30), -1);
    assert_int_equal(audio_wav_duration_ms(NULL, 0), -1);
    assert_int_equal(audio_wav_header(w, 30, &hdr), -1);
    n = make_wav(w, 16000, 1, 16, 100, 100, false);
    memcpy(w + 12, "junk", 4); /* fmt chunk renamed */
    assert_int_equal(audio_wav_duration_ms(w, n), -1);
    assert_int_equal(audio_wav_header(w, n, &hdr), -1);
    /* A header without a data chunk (a stream's head cut short) parses but
     * has no duration. */
    n = make_wav(w, 16000, 1, 16, 0, 0, false) - 8;
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.data_offset, 0);
    assert_int_equal(audio_wav_duration_ms(w, n), -1);
    free(w);
}

/* The rate is sample rate x channels x bits, never the header's byte rate:
 * a forged byte rate cannot shrink (or grow) the billed duration. */
static void test_wav_forged_byte_rate(void **state)
{
    (void)state;
    const uint32_t data = 16000 * 2 * 60; /* 60 s of 16 kHz 16-bit mono */
    unsigned char *w = malloc(data + 100);
    assert_non_null(w);
    size_t n = make_wav_rate(w, 16000, 1, 16, 0x7fffffffu, data, data, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 60000);
    assert_int_equal(audio_duration_ms(w, n), 60000);
    struct audio_wav hdr;
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.bytes_per_sec, 32000);
    n = make_wav_rate(w, 16000, 1, 16, 0, data, data, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 60000);
    n = make_wav_rate(w, 16000, 1, 16, 1, data, data, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 60000);
    /* Through the meters that bill uploads. */
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    n = make_wav_rate(w, 16000, 1, 16, 0x7fffffffu, data, data, false);
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)w, n, "audio/wav", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 60000);
    meter_init(&m, OPS_DG_LISTEN);
    assert_int_equal(meter_request(&m, (const char *)w, n, "audio/wav", 9, &rw, &rw_len), 0);
    assert_int_equal(m.upload_audio_ms, 60000);
    /* Stereo 44.1 kHz 24-bit: 264600 bytes/s, whatever the header says. */
    n = make_wav_rate(w, 44100, 2, 24, 1234, 264600 * 2, 264600 * 2, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 2000);
    free(w);
}

/* Extra chunks before and after the audio are skipped; a data size that is
 * short while audio-like bytes follow does not hide them. */
static void test_wav_chunks(void **state)
{
    (void)state;
    unsigned char *w = malloc(200000);
    assert_non_null(w);
    static const unsigned char fact[4] = {0x80, 0x3e, 0, 0}; /* 16000 samples */
    unsigned char audio[32000];
    memset(audio, 0x11, sizeof(audio));

    /* LIST and fact before fmt and data, LIST and id3 after data. */
    size_t n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_chunk(w, n, "LIST", "INFOISFTLavf", 12);
    n = put_chunk(w, n, "fact", fact, 4);
    n = put_fmt(w, n, 1, 16000, 1, 16, 32000);
    n = put_chunk(w, n, "data", audio, 16000); /* 0.5 s */
    n = put_chunk(w, n, "LIST", "INFOICMTa comment", 17);
    n = put_chunk(w, n, "id3 ", "ID3\x03\0\0\0\0\0\0", 10);
    assert_int_equal(audio_wav_duration_ms(w, n), 500);
    struct audio_wav hdr;
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.fact_samples, 16000);
    assert_int_equal(hdr.data_declared, 16000);

    /* fmt after the data: read on because the data's size says where it
     * ends. */
    n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_chunk(w, n, "data", audio, 32000);
    n = put_fmt(w, n, 1, 16000, 1, 16, 0);
    assert_int_equal(audio_wav_duration_ms(w, n), 1000);

    /* A data chunk declaring 0.5 s followed by 1 s of bytes that are not
     * chunks: all of it is audio. */
    n = make_wav(w, 16000, 1, 16, 48000, 16000, false);
    assert_int_equal(audio_wav_duration_ms(w, n), 1500);
    /* Bytes after the declared size that look like a chunk id but whose
     * size does not fit: audio too. */
    n = make_wav(w, 16000, 1, 16, 32000, 16000, false);
    memset(w + 44 + 16000, 'A', 16000);
    assert_int_equal(audio_wav_duration_ms(w, n), 1000);
    /* Declared 0 (never patched) with a LIST after the audio cannot be
     * told apart from audio: counted, never less than what was sent. */
    n = make_wav(w, 16000, 1, 16, 16000, 0, false);
    n = put_chunk(w, n, "LIST", "INFO", 4);
    assert_int_equal(audio_wav_duration_ms(w, n), 501); /* 16012 bytes */

    /* RF64: the data size comes from ds64. */
    unsigned char ds64[28] = {0};
    ds64[8] = 0x00; /* data size 32000 = 0x7d00 */
    ds64[9] = 0x7d;
    n = 0;
    n = put(w, n, "RF64", 4);
    n = put32(w, n, 0xFFFFFFFFu);
    n = put(w, n, "WAVE", 4);
    n = put_chunk(w, n, "ds64", ds64, sizeof(ds64));
    n = put_fmt(w, n, 1, 16000, 1, 16, 32000);
    n = put(w, n, "data", 4);
    n = put32(w, n, 0xFFFFFFFFu);
    n = put(w, n, audio, 32000);
    n = put_chunk(w, n, "LIST", "INFO", 4);
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.data_declared, 32000);
    assert_int_equal(audio_wav_duration_ms(w, n), 1000);

    /* WAVE_FORMAT_EXTENSIBLE with a PCM sub-format: 48 kHz stereo 16-bit. */
    unsigned char ext[40] = {0};
    ext[0] = 0xFE; /* 0xFFFE */
    ext[1] = 0xFF;
    ext[2] = 2;    /* channels */
    ext[4] = 0x80; /* 48000 = 0xbb80 */
    ext[5] = 0xbb;
    ext[14] = 16; /* bits */
    ext[16] = 22; /* cbSize */
    ext[24] = 1;  /* sub-format GUID: PCM */
    n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_chunk(w, n, "fmt ", ext, sizeof(ext));
    n = put_chunk(w, n, "data", audio, 19200); /* 100 ms at 192000 B/s */
    assert_int_equal(audio_wav_header(w, n, &hdr), 0);
    assert_int_equal(hdr.format, 1);
    assert_int_equal(hdr.bytes_per_sec, 192000);
    assert_int_equal(audio_wav_duration_ms(w, n), 100);

    /* mu-law 8 kHz 8-bit: 8000 bytes/s. */
    n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_fmt(w, n, 7, 8000, 1, 8, 0);
    n = put_chunk(w, n, "data", audio, 8000);
    assert_int_equal(audio_wav_duration_ms(w, n), 1000);

    /* Another codec (IMA ADPCM) counts only with a fact sample count. */
    n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_fmt(w, n, 0x11, 8000, 1, 4, 4055);
    n = put_chunk(w, n, "fact", fact, 4); /* 16000 samples at 8 kHz */
    n = put_chunk(w, n, "data", audio, 8000);
    assert_int_equal(audio_wav_duration_ms(w, n), 2000);
    n = 0;
    n = put(w, n, "RIFF", 4);
    n = put32(w, n, 0);
    n = put(w, n, "WAVE", 4);
    n = put_fmt(w, n, 0x11, 8000, 1, 4, 4055);
    n = put_chunk(w, n, "data", audio, 8000);
    assert_int_equal(audio_wav_duration_ms(w, n), -1);
    free(w);
}

/* --- Ogg ------------------------------------------------------------------- */

/* One Ogg page (CRC left 0: not checked) with a single packet. */
static size_t ogg_page(unsigned char *out, int64_t granule, uint32_t serial, const void *body,
                       size_t body_len)
{
    assert_true(body_len < 255);
    memcpy(out, "OggS", 4);
    out[4] = 0;
    out[5] = 0;
    for (int i = 0; i < 8; i++)
        out[6 + i] = (unsigned char)((uint64_t)granule >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[14 + i] = (unsigned char)(serial >> (8 * i));
    memset(out + 18, 0, 8); /* sequence, CRC */
    out[26] = 1;
    out[27] = (unsigned char)body_len;
    memcpy(out + 28, body, body_len);
    return 28 + body_len;
}

/* One Ogg page holding packets (lacing computed). With open_last the last
 * packet continues on the next page: its length must be a multiple of 255
 * and no lacing value ends it. flags: 1 = continued from the last page. */
struct opkt {
    const unsigned char *d;
    size_t len;
};

static size_t ogg_page_packets(unsigned char *out, unsigned flags, int64_t granule, uint32_t serial,
                               const struct opkt *p, size_t n, bool open_last)
{
    unsigned char lacing[255];
    size_t segs = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = p[i].len;
        bool open = open_last && i == n - 1;
        assert_true(!open || len % 255 == 0);
        while (len >= 255) {
            lacing[segs++] = 255;
            len -= 255;
        }
        if (!open)
            lacing[segs++] = (unsigned char)len;
        assert_true(segs <= 255);
    }
    size_t o = 0;
    o = put(out, o, "OggS", 4);
    out[o++] = 0;
    out[o++] = (unsigned char)flags;
    for (int i = 0; i < 8; i++)
        out[o++] = (unsigned char)((uint64_t)granule >> (8 * i));
    o = put32(out, o, serial);
    memset(out + o, 0, 8); /* sequence, CRC */
    o += 8;
    out[o++] = (unsigned char)segs;
    o = put(out, o, lacing, segs);
    for (size_t i = 0; i < n; i++)
        o = put(out, o, p[i].d, p[i].len);
    return o;
}

/* OpusHead (pre-skip) and OpusTags pages of stream serial. */
static size_t opus_head(unsigned char *out, uint32_t serial, uint16_t pre_skip)
{
    unsigned char head[19] = "OpusHead\x01\x01";
    head[10] = (unsigned char)(pre_skip & 0xff);
    head[11] = (unsigned char)(pre_skip >> 8);
    head[12] = 0x80; /* 48000 Hz input rate: informative only */
    head[13] = 0xbb;
    size_t n = ogg_page(out, 0, serial, head, sizeof(head));
    return n + ogg_page(out + n, 0, serial, "OpusTags\0\0\0\0\0\0\0\0", 16);
}

/* ceil(samples at 48 kHz / 48) */
static int64_t opus_ms(int64_t samples)
{
    return samples <= 0 ? 0 : (samples + 47) / 48;
}

/* Ogg Opus: the duration is the sum of the packets' TOC durations minus the
 * pre-skip; the granule positions (written by the client) are not read. */
static void test_ogg_opus_toc(void **state)
{
    (void)state;
    unsigned char *buf = malloc(200000);
    assert_non_null(buf);
    unsigned char pkt[600];
    memset(pkt, 0x55, sizeof(pkt));

    /* 100 audio pages, one CELT 20 ms packet each (TOC 0xF8: config 31,
     * code 0), every granule 0. */
    size_t n = opus_head(buf, 7, 312);
    pkt[0] = 0xF8;
    for (int i = 0; i < 100; i++) {
        struct opkt p = {pkt, 40};
        n += ogg_page_packets(buf + n, 0, 0, 7, &p, 1, false);
    }
    assert_int_equal(audio_ogg_duration_ms(buf, n), opus_ms(100 * 960 - 312));
    assert_int_equal(audio_ogg_duration_ms(buf, n), 1994);
    assert_int_equal(audio_duration_ms(buf, n), 1994);
    /* Huge granules change nothing. */
    size_t n2 = opus_head(buf, 7, 312);
    for (int i = 0; i < 100; i++) {
        struct opkt p = {pkt, 40};
        n2 += ogg_page_packets(buf + n2, 0, INT64_C(48000) * 3600 * (i + 1), 7, &p, 1, false);
    }
    assert_int_equal(n2, n);
    assert_int_equal(audio_ogg_duration_ms(buf, n2), 1994);

    /* Several packets per page, TOC codes 0-3, SILK / hybrid / CELT frame
     * sizes (RFC 6716 §3.1). */
    static const struct {
        unsigned char toc, count;
        int samples;
    } tocs[] = {
        {0x00, 0, 480},     /* SILK NB 10 ms, 1 frame */
        {0x08, 0, 960},     /* SILK NB 20 ms */
        {0x10, 0, 1920},    /* SILK NB 40 ms */
        {0x18, 0, 2880},    /* SILK NB 60 ms */
        {0x19, 0, 5760},    /* SILK 60 ms, 2 frames (code 1) */
        {0x60, 0, 480},     /* hybrid SWB 10 ms */
        {0x68, 0, 960},     /* hybrid SWB 20 ms */
        {0x62, 0, 960},     /* hybrid 10 ms, 2 frames (code 2) */
        {0x80, 0, 120},     /* CELT NB 2.5 ms */
        {0xF0, 0, 480},     /* CELT FB 10 ms */
        {0xFB, 3, 2880},    /* CELT 20 ms, code 3, 3 frames */
        {0xFB, 0x83, 2880}, /* code 3 with VBR/padding flags: still 3 frames */
        {0xFB, 7, 0},       /* 7 x 20 ms = 140 ms > 120 ms: invalid, nothing */
        {0x1B, 2, 5760},    /* SILK 60 ms x 2 = 120 ms: the longest packet */
    };
    int64_t want = 0;
    unsigned char tp[ARRAY_SIZE(tocs)][8];
    struct opkt ps[ARRAY_SIZE(tocs)];
    for (size_t i = 0; i < ARRAY_SIZE(tocs); i++) {
        memset(tp[i], 0x33, sizeof(tp[i]));
        tp[i][0] = tocs[i].toc;
        tp[i][1] = tocs[i].count;
        ps[i] = (struct opkt){tp[i], sizeof(tp[i])};
        want += tocs[i].samples;
    }
    n = opus_head(buf, 3, 0);
    n += ogg_page_packets(buf + n, 0, 0, 3, ps, ARRAY_SIZE(ps), false);
    assert_int_equal(audio_ogg_duration_ms(buf, n), opus_ms(want));

    /* A packet spanning two pages counts once; a page of another stream
     * (another serial) is not this stream's audio. */
    n = opus_head(buf, 9, 0);
    pkt[0] = 0xF8;
    struct opkt big = {pkt, 510};
    n += ogg_page_packets(buf + n, 0, 0, 9, &big, 1, true);
    struct opkt rest = {pkt + 510, 90};
    n += ogg_page_packets(buf + n, 1, 0, 9, &rest, 1, false);
    unsigned char other[8] = {0xF8, 1, 2, 3, 4, 5, 6, 7};
    struct opkt op = {other, sizeof(other)};
    n += ogg_page_packets(buf + n, 0, 960, 10, &op, 1, false);
    assert_int_equal(audio_ogg_duration_ms(buf, n), 20);

    /* A truncated last page: its packets are not counted. */
    n = opus_head(buf, 7, 0);
    pkt[0] = 0xF8;
    struct opkt one = {pkt, 40};
    n += ogg_page_packets(buf + n, 0, 0, 7, &one, 1, false);
    n += ogg_page_packets(buf + n, 0, 0, 7, &one, 1, false);
    assert_int_equal(audio_ogg_duration_ms(buf, n), 40);
    assert_int_equal(audio_ogg_duration_ms(buf, n - 1), 20);

    /* The pre-skip is never more than the audio: 0, not negative. */
    n = opus_head(buf, 7, 3840);
    n += ogg_page_packets(buf + n, 0, 0, 7, &one, 1, false);
    assert_int_equal(audio_ogg_duration_ms(buf, n), 0);

    /* Not Ogg, or an Ogg of another codec. */
    assert_int_equal(audio_ogg_duration_ms((const unsigned char *)"RIFF", 4), -1);
    assert_int_equal(audio_ogg_duration_ms(NULL, 0), -1);
    n = ogg_page(buf, 0, 7, "Speex   ", 8);
    n += ogg_page(buf + n, 16000, 7, "a", 1);
    assert_int_equal(audio_ogg_duration_ms(buf, n), -1);
    free(buf);
}

static size_t make_multipart(char *out, const char *boundary, const char *model,
                             const unsigned char *file, size_t file_len, bool stream)
{
    int n = sprintf(out,
                    "--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n%s\r\n"
                    "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                    "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n",
                    boundary, model, boundary);
    memcpy(out + n, file, file_len);
    size_t len = (size_t)n + file_len;
    if (stream)
        len += (size_t)sprintf(out + len,
                               "\r\n--%s\r\ncontent-disposition: form-data; name=stream\r\n\r\n"
                               "true",
                               boundary);
    len += (size_t)sprintf(out + len, "\r\n--%s--\r\n", boundary);
    return len;
}

static void test_transcription_multipart(void **state)
{
    (void)state;
    unsigned char *wav = malloc(100000);
    char *body = malloc(200000);
    assert_non_null(wav);
    assert_non_null(body);
    size_t wav_len = make_wav(wav, 16000, 1, 16, 64000, 64000, false); /* 2 s */
    size_t len = make_multipart(body, "----formdata-abc", "whisper-1", wav, wav_len, false);
    static const char ct[] = "multipart/form-data; boundary=----formdata-abc";
    struct meter m;
    meter_init(&m, OPS_TRANSCRIPTION);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(meter_request(&m, body, len, ct, strlen(ct), &rw, &rw_len), 0);
    assert_null(rw);
    assert_string_equal(m.model, "whisper-1");
    assert_int_equal(m.upload_audio_ms, 2000);
    assert_false(m.stream);
    /* A text reply has no usage: the upload's duration is metered. */
    meter_response_json(&m, "hello there", 11);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2000);

    /* Quoted boundary, streaming, and a reply with token usage. */
    len = make_multipart(body, "x y", "gpt-4o-transcribe", wav, wav_len, true);
    static const char ct2[] = "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"x y\"";
    meter_init(&m, OPS_TRANSCRIPTION);
    assert_int_equal(meter_request(&m, body, len, ct2, strlen(ct2), &rw, &rw_len), 0);
    assert_string_equal(m.model, "gpt-4o-transcribe");
    assert_true(m.stream);
    assert_int_equal(m.upload_audio_ms, 2000);
    assert_false(sse(&m, "", "{\"type\":\"transcript.text.delta\",\"delta\":\"hi\"}"));
    assert_false(sse(&m, "",
                     "{\"type\":\"transcript.text.done\",\"text\":\"hi\",\"usage\":{"
                     "\"type\":\"tokens\",\"input_tokens\":20,\"input_token_details\":"
                     "{\"audio_tokens\":18,\"text_tokens\":2},\"output_tokens\":3}}"));
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 20);
    assert_int_equal(m.units.audio_input_tokens, 18);
    assert_int_equal(m.units.output_tokens, 3);
    assert_int_equal(m.units.audio_ms, 0);

    /* Not a format whose duration can be read (mp3) and no usage in the
     * reply: estimated from the upload's size at 32 kbit/s, never 0. */
    unsigned char *mp3 = malloc(40000);
    assert_non_null(mp3);
    memset(mp3, 0xAA, 40000);
    memcpy(mp3, "ID3\x03", 4);
    len = make_multipart(body, "b", "whisper-1", mp3, 40000, false);
    meter_init(&m, OPS_TRANSCRIPTION);
    assert_int_equal(
        meter_request(&m, body, len, "multipart/form-data; boundary=b", 31, &rw, &rw_len), 0);
    assert_int_equal(m.upload_audio_ms, -1);
    meter_response_json(&m, "hello there", 11);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 10000);
    /* A tiny one still counts. */
    len = make_multipart(body, "b", "whisper-1", (const unsigned char *)"ID3....", 7, false);
    meter_init(&m, OPS_TRANSCRIPTION);
    assert_int_equal(
        meter_request(&m, body, len, "multipart/form-data; boundary=b", 31, &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2);
    /* The same upload with a reported duration: the report, not an
     * estimate. */
    len = make_multipart(body, "b", "whisper-1", mp3, 40000, false);
    meter_init(&m, OPS_TRANSCRIPTION);
    assert_int_equal(
        meter_request(&m, body, len, "multipart/form-data; boundary=b", 31, &rw, &rw_len), 0);
    response(&m, "{\"text\":\"hi\",\"duration\":7.25}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 7250);
    free(mp3);

    /* The longest boundary accepted (200), and one too long. */
    char longb[202];
    memset(longb, 'q', 201);
    longb[201] = '\0';
    char ctl[260];
    for (int extra = 0; extra < 2; extra++) {
        longb[200 + extra] = '\0';
        len = make_multipart(body, longb, "whisper-1", wav, wav_len, false);
        snprintf(ctl, sizeof(ctl), "multipart/form-data; boundary=%s", longb);
        meter_init(&m, OPS_TRANSCRIPTION);
        assert_int_equal(meter_request(&m, body, len, ctl, strlen(ctl), &rw, &rw_len),
                         extra ? -1 : 0);
        assert_int_equal(m.upload_audio_ms, extra ? -1 : 2000);
        longb[200] = 'q';
    }

    /* No boundary, or not multipart. */
    meter_init(&m, OPS_TRANSCRIPTION);
    assert_int_equal(meter_request(&m, body, len, "multipart/form-data", 19, &rw, &rw_len), -1);
    assert_int_equal(meter_request(&m, body, len, NULL, 0, &rw, &rw_len), -1);
    free(wav);
    free(body);
}

static void test_transcription_json_usage(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_TRANSCRIPTION);
    m.upload_audio_ms = 9999;
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"duration\",\"seconds\":2.4567}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2457);
    assert_int_equal(m.units.input_tokens, 0);

    meter_init(&m, OPS_TRANSCRIPTION);
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"duration\",\"seconds\":3}}");
    assert_int_equal(m.units.audio_ms, 3000);

    meter_init(&m, OPS_TRANSCRIPTION);
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"tokens\",\"input_tokens\":14,"
                 "\"input_token_details\":{\"text_tokens\":0,\"audio_tokens\":14},"
                 "\"output_tokens\":45,\"total_tokens\":59}}");
    assert_int_equal(m.units.input_tokens, 14);
    assert_int_equal(m.units.audio_input_tokens, 14);
    assert_int_equal(m.units.output_tokens, 45);
}

static void header(struct meter *m, const char *name, const char *value)
{
    meter_response_header(m, name, strlen(name), value, strlen(value));
}

static void test_elevenlabs(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;

    /* No model_id: the API's default (1 credit per character) is recorded. */
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(request(&m, "{\"text\":\"Gr\xc3\xbc\xc3\x9f dich\"}", &rw, &rw_len), 0);
    assert_null(rw);
    /* The default is what the model is priced at (it fills m.model at the
     * end). */
    assert_string_equal(meter_model(&m), "eleven_multilingual_v2");
    header(&m, "content-type", "audio/mpeg");
    header(&m, "x-character-count", "99");
    assert_false(meter_finish(&m));
    assert_string_equal(m.model, "eleven_multilingual_v2");
    assert_int_equal(m.units.characters, 9); /* code points */
    assert_int_equal(m.units.input_tokens, 0);

    /* Turbo and Flash bill half a credit per character, rounded up. */
    static const struct {
        const char *model;
        int64_t chars;
    } rates[] = {
        {"eleven_turbo_v2_5", 5}, {"eleven_flash_v2_5", 5}, {"eleven_turbo_v2", 5},
        {"eleven_flash_v2", 5},   {"eleven_v3", 9},         {"eleven_multilingual_v2", 9},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rates); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"text\":\"123456789\",\"model_id\":\"%s\"}",
                 rates[i].model);
        meter_init(&m, OPS_EL_TTS);
        assert_int_equal(request(&m, body, &rw, &rw_len), 0);
        assert_string_equal(m.model, rates[i].model);
        assert_false(meter_finish(&m));
        assert_int_equal(m.units.characters, rates[i].chars);
    }
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(
        request(&m, "{\"text\":\"12345678\",\"model_id\":\"eleven_flash_v2_5\"}", &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 4);
    /* Rounding: 1 code point of a turbo model is 1 character, 2 are 1;
     * code points, not bytes (a 4-byte emoji is one). */
    static const struct {
        const char *text;
        int64_t chars;
    } halves[] = {
        {"a", 1}, {"ab", 1}, {"abc", 2}, {"", 0}, {"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xc3\xa9", 2},
    };
    for (size_t i = 0; i < ARRAY_SIZE(halves); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"text\":\"%s\",\"model_id\":\"eleven_turbo_v2_5\"}",
                 halves[i].text);
        meter_init(&m, OPS_EL_TTS);
        assert_int_equal(request(&m, body, &rw, &rw_len), 0);
        assert_false(meter_finish(&m));
        assert_int_equal(m.units.characters, halves[i].chars);
    }

    /* character-cost is what ElevenLabs billed: it wins, any case, blanks
     * allowed; a value that is not a count is ignored. */
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(
        request(&m, "{\"text\":\"123456789\",\"model_id\":\"eleven_turbo_v2_5\"}", &rw, &rw_len),
        0);
    header(&m, "Character-Cost", " 7 \r");
    header(&m, "character-cost", "abc");
    header(&m, "character-cost", "-3");
    header(&m, "character-cost", "");
    header(&m, "character-costs", "100");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 7);

    meter_init(&m, OPS_EL_TTS);
    header(&m, "CHARACTER-COST", "0");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);

    /* No text and no header: estimated (zero); the header alone is enough. */
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(request(&m, "{\"model_id\":\"eleven_v3\"}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(request(&m, "not json", &rw, &rw_len), -1);
    assert_string_equal(meter_model(&m), "eleven_multilingual_v2");
    assert_true(meter_finish(&m));
    assert_string_equal(m.model, "eleven_multilingual_v2");
    meter_init(&m, OPS_EL_TTS);
    header(&m, "character-cost", "12");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 12);
    assert_string_equal(m.model, "eleven_multilingual_v2");

    /* A with-timestamps JSON reply carries no usage and changes nothing. */
    meter_init(&m, OPS_EL_TTS);
    assert_int_equal(request(&m, "{\"text\":\"abc\",\"model_id\":\"\"}", &rw, &rw_len), 0);
    assert_string_equal(meter_model(&m), "eleven_multilingual_v2"); /* empty id = omitted */
    response(&m, "{\"audio_base64\":\"AAAA\",\"alignment\":{\"characters\":[\"a\",\"b\",\"c\"]},"
                 "\"usage\":{\"characters\":50}}");
    assert_false(sse(&m, "", "{\"text\":\"x\"}"));
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 3);
    assert_string_equal(m.model, "eleven_multilingual_v2");
}

static void test_anthropic(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, OPS_ANTHROPIC);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,"
                             "\"system\":[{\"type\":\"text\",\"text\":\"Be brief\"}],"
                             "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                             "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
                             "\"text\":\"yes\"}]}]}",
                             &rw, &rw_len),
                     0);
    assert_null(rw); /* never rewritten */
    assert_string_equal(m.model, "claude-sonnet-4-5");
    assert_false(m.stream);
    assert_int_equal(m.prompt_chars, 8 + 2 + 3);
    response(&m,
             "{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"claude-sonnet-4-5-20250929\","
             "\"content\":[{\"type\":\"tool_use\",\"input\":{\"usage\":{\"input_tokens\":999}}}],"
             "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":200,"
             "\"cache_read_input_tokens\":3000,\"output_tokens\":42}}");
    assert_true(m.got_usage);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 10 + 200 + 3000);
    assert_int_equal(m.units.cached_input_tokens, 3000);
    assert_int_equal(m.units.output_tokens, 42);
    assert_string_equal(m.model, "claude-sonnet-4-5");

    /* String system prompt; the model from the reply; no cache counts. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_int_equal(request(&m,
                             "{\"system\":\"abcd\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"efgh\"}]}",
                             &rw, &rw_len),
                     0);
    assert_int_equal(m.prompt_chars, 8);
    response(&m, "{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":5,"
                 "\"output_tokens\":6}}");
    assert_false(meter_finish(&m));
    assert_string_equal(m.model, "claude-haiku-4-5");
    assert_int_equal(m.units.input_tokens, 5);
    assert_int_equal(m.units.cached_input_tokens, 0);

    /* A reply without usage: estimated like chat. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_int_equal(request(&m,
                             "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"123456789\"}]}",
                             &rw, &rw_len),
                     0);
    response(&m, "{\"type\":\"message\"}");
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 3);
    assert_int_equal(m.units.output_tokens, 0);
}

#define MSG_START                                                                                  \
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-opus-4-1\","     \
    "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"                          \
    "\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}"
#define TEXT_DELTA(t)                                                                              \
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","            \
    "\"text\":" t "}}"

static void test_anthropic_stream(void **state)
{
    (void)state;
    /* Named events (the wire format), and the same without event lines. */
    for (int named = 0; named < 2; named++) {
        struct meter m;
        meter_init(&m, OPS_ANTHROPIC);
        char *rw = NULL;
        size_t rw_len;
        assert_int_equal(request(&m,
                                 "{\"model\":\"claude-opus-4-1\",\"stream\":true,\"messages\":"
                                 "[{\"role\":\"user\",\"content\":\"hi\"}]}",
                                 &rw, &rw_len),
                         0);
        assert_null(rw);
        assert_true(m.stream);
        assert_false(sse(&m, named ? "message_start" : "", MSG_START));
        assert_true(m.got_usage);
        assert_false(m.usage_final);
        assert_int_equal(m.units.input_tokens, 1125);
        assert_int_equal(m.units.cached_input_tokens, 1000);
        assert_false(sse(&m, named ? "content_block_start" : "",
                         "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                         "{\"type\":\"text\",\"text\":\"\"}}"));
        assert_false(sse(&m, named ? "ping" : "", "{\"type\":\"ping\"}"));
        assert_false(sse(&m, named ? "content_block_delta" : "", TEXT_DELTA("\"Hel\"")));
        assert_false(sse(&m, named ? "content_block_delta" : "", TEXT_DELTA("\"lo \\u00e9\"")));
        assert_false(sse(&m, named ? "content_block_delta" : "",
                         "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                         "\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}"));
        assert_int_equal(m.output_chars, 3 + 4 + 4);
        /* output_tokens is cumulative: the last one counts, not the sum. */
        assert_false(sse(&m, named ? "message_delta" : "",
                         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},"
                         "\"usage\":{\"output_tokens\":7}}"));
        assert_false(sse(&m, named ? "message_delta" : "",
                         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                         "\"usage\":{\"output_tokens\":15,\"input_tokens\":null}}"));
        assert_false(sse(&m, named ? "message_stop" : "", "{\"type\":\"message_stop\"}"));
        assert_false(meter_finish(&m));
        assert_int_equal(m.units.input_tokens, 1125);
        assert_int_equal(m.units.cached_input_tokens, 1000);
        assert_int_equal(m.units.output_tokens, 15);
        assert_string_equal(m.model, "claude-opus-4-1");
    }

    /* Versions that repeat the input side in message_delta: taken. */
    struct meter m;
    meter_init(&m, OPS_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_false(sse(&m, "message_delta",
                     "{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,"
                     "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":1200,"
                     "\"output_tokens\":9}}"));
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 30 + 0 + 1200);
    assert_int_equal(m.units.cached_input_tokens, 1200);
    assert_int_equal(m.units.output_tokens, 9);
    assert_string_equal(m.model, "claude-opus-4-1"); /* from message_start */

    /* Cut after message_start: the input is known, the output estimated
     * from the streamed text (at least the reported 1). */
    meter_init(&m, OPS_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_false(sse(&m, "content_block_delta", TEXT_DELTA("\"123456789\"")));
    assert_false(sse(&m, "content_block_delta",
                     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                     "\"thinking_delta\",\"thinking\":\"abc\"}}"));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 1125);
    assert_int_equal(m.units.output_tokens, 3); /* ceil(12/4) */
    meter_init(&m, OPS_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.output_tokens, 1);

    /* Nothing arrived: both sides estimated. */
    meter_init(&m, OPS_ANTHROPIC);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(request(&m,
                             "{\"model\":\"claude-x\",\"stream\":true,\"messages\":[{\"role\":"
                             "\"user\",\"content\":\"12345\"}]}",
                             &rw, &rw_len),
                     0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 2);
    assert_int_equal(m.units.output_tokens, 0);

    /* An error before message_start (overloaded): nothing was consumed. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_int_equal(request(&m,
                             "{\"model\":\"claude-x\",\"stream\":true,\"messages\":[{\"role\":"
                             "\"user\",\"content\":\"12345\"}]}",
                             &rw, &rw_len),
                     0);
    assert_false(sse(&m, "error",
                     "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                     "\"message\":\"Overloaded\"}}"));
    assert_true(m.stream_error);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 0);
    assert_int_equal(m.units.output_tokens, 0);

    /* An error after message_start: what was streamed is estimated. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_false(sse(&m, "content_block_delta", TEXT_DELTA("\"12345678\"")));
    assert_false(sse(&m, "", "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}"));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 1125);
    assert_int_equal(m.units.output_tokens, 2);

    /* Garbage data never crashes nor counts. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_false(sse(&m, "message_start", "{not json"));
    assert_false(sse(&m, "message_delta", "[1,2]"));
    assert_false(sse(&m, "", "{\"type\":7}"));
    assert_false(m.got_usage);
}

static void test_deepgram_listen(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;

    /* model= from the query, form-decoded; the first one counts. */
    meter_init(&m, OPS_DG_LISTEN);
    const char *q = "smart_format=true&model=nova%2D3+x&model=base&punctuate=true";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "nova-3 x");
    /* Names are matched after percent-decoding, without regard to case
     * (urlenc.h). */
    meter_init(&m, OPS_DG_LISTEN);
    q = "xmodel=a&MOD%45L=nova-3";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "nova-3");
    /* The first model parameter is the one read (urlenc_query_get), even
     * when empty; a malformed escape names no model. (The meter before the
     * provider split skipped an empty value and kept a bad escape as
     * written.) */
    meter_init(&m, OPS_DG_LISTEN);
    q = "xmodel=a&model=&model=nova-2";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "");
    meter_init(&m, OPS_DG_LISTEN);
    q = "model=nova-2%ZZ";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "");
    meter_init(&m, OPS_DG_LISTEN);
    q = "language=en";
    meter_request_query(&m, q, strlen(q));
    meter_request_query(&m, NULL, 0);
    assert_string_equal(m.model, ""); /* no default is assumed */
    /* Only Deepgram reads the query. */
    meter_init(&m, OPS_CHAT);
    q = "model=gpt-4o";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "");

    /* The reply's metadata.duration is the usage (the metadata object
     * first, as Deepgram sends it, or anywhere). */
    unsigned char *wav = malloc(100000);
    assert_non_null(wav);
    size_t wav_len = make_wav(wav, 16000, 1, 16, 32000, 32000, false); /* 1 s */
    meter_init(&m, OPS_DG_LISTEN);
    assert_int_equal(meter_request(&m, (const char *)wav, wav_len, "audio/wav", 9, &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_int_equal(m.upload_audio_ms, 1000);
    response(&m, "{\"metadata\":{\"request_id\":\"r\",\"duration\":25.9335,\"channels\":1},"
                 "\"results\":{\"channels\":[{\"alternatives\":[{\"transcript\":\"hi\"}]}]}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 25934);

    meter_init(&m, OPS_DG_LISTEN);
    response(&m, "{\"results\":{\"metadata\":{\"x\":1}},\"metadata\":{\"duration\":2}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2000);

    /* No duration in the reply: the WAV's, estimated. */
    meter_init(&m, OPS_DG_LISTEN);
    assert_int_equal(meter_request(&m, (const char *)wav, wav_len, "audio/wav", 9, &rw, &rw_len),
                     0);
    response(&m, "{\"request_id\":\"r\"}"); /* callback= mode */
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 1000);

    /* A {"url":...} body and no reply: zero, estimated. */
    meter_init(&m, OPS_DG_LISTEN);
    assert_int_equal(request(&m, "{\"url\":\"https://x/a.wav\"}", &rw, &rw_len), 0);
    assert_int_equal(m.upload_audio_ms, -1);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 0);
    free(wav);
}

static void test_deepgram_speak(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_DG_SPEAK);
    const char *q = "model=aura-2-thalia-en&encoding=linear16";
    meter_request_query(&m, q, strlen(q));
    assert_int_equal(request(&m, "{\"text\":\"Hello, w\xc3\xb6rld\"}", &rw, &rw_len), 0);
    assert_string_equal(m.model, "aura-2-thalia-en");
    header(&m, "dg-model-name", "aura-asteria-en"); /* the query's model stays */
    header(&m, "character-cost", "99");             /* ElevenLabs' header: ignored */
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 12);
    assert_string_equal(m.model, "aura-2-thalia-en");

    /* dg-char-count overrides; dg-model-name names the model when the query
     * did not. */
    meter_init(&m, OPS_DG_SPEAK);
    assert_int_equal(request(&m, "{\"text\":\"Hello\"}", &rw, &rw_len), 0);
    header(&m, "DG-Model-Name", "aura-asteria-en\r");
    header(&m, "dg-char-count", "6");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 6);
    assert_string_equal(m.model, "aura-asteria-en");

    /* No text: estimated. */
    meter_init(&m, OPS_DG_SPEAK);
    assert_int_equal(request(&m, "{\"txt\":\"Hello\"}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);
}

static void test_cartesia(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_CARTESIA_TTS);
    assert_int_equal(request(&m,
                             "{\"model_id\":\"sonic-2\",\"transcript\":\"Hi \xe2\x82\xac!\","
                             "\"voice\":{\"mode\":\"id\",\"id\":\"v\"},\"output_format\":"
                             "{\"container\":\"raw\"}}",
                             &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_string_equal(m.model, "sonic-2");
    /* /tts/sse events are relayed as they are and carry no usage. */
    assert_false(sse(&m, "chunk", "{\"type\":\"chunk\",\"data\":\"AAAA\",\"done\":false}"));
    assert_false(sse(&m, "", "{\"type\":\"done\",\"usage\":{\"characters\":99}}"));
    header(&m, "character-cost", "99");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 5);

    meter_init(&m, OPS_CARTESIA_TTS);
    assert_int_equal(request(&m, "{\"model_id\":\"sonic-2\"}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);
}

static int64_t ssml(const char *doc, char *model, size_t model_size)
{
    struct meter m;
    meter_init(&m, OPS_AZURE_TTS);
    char *rw = NULL;
    size_t rw_len;
    assert_int_equal(meter_request(&m, doc, strlen(doc), "application/ssml+xml", 20, &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_false(meter_finish(&m));
    if (model != NULL)
        snprintf(model, model_size, "%s", m.model);
    return m.units.characters;
}

static void test_azure_tts_ssml(void **state)
{
    (void)state;
    char model[MODEL_MAX];
    assert_int_equal(ssml("<speak version='1.0' xml:lang='en-US'><voice "
                          "name='en-US-JennyNeural'>Hi</voice></speak>",
                          model, sizeof(model)),
                     2);
    assert_string_equal(model, "en-US-JennyNeural");

    /* Declaration and comments count nothing; whitespace counts as written;
     * nested tags, empty elements, the first voice is the model. */
    assert_int_equal(ssml("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<speak version=\"1.0\">\n"
                          "<!-- a <comment> & more -->"
                          "<voice xml:lang = \"en\" name = \"en-US-AvaNeural\">"
                          "Hello <break time=\"500ms\"/><prosody rate=\"+10%\">big "
                          "<emphasis>world</emphasis></prosody>.</voice>"
                          "<voice name=\"de-DE-KatjaNeural\">Gr\xc3\xbc\xc3\x9f</voice></speak>",
                          model, sizeof(model)),
                     2 + 6 + 4 + 5 + 1 + 4);
    assert_string_equal(model, "en-US-AvaNeural");

    /* Entity references are one character each; CDATA content counts as
     * written (no entities there); a stray '&' is itself. */
    assert_int_equal(ssml("<speak><voice name='v'>a&amp;b &lt;&gt;&quot;&apos; &#65;&#x42;&#X43;"
                          "<![CDATA[x&amp;<y>]]> & c&nbsp;</voice></speak>",
                          NULL, 0),
                     3 + 1 + 4 + 1 + 3 + 9 + 1 + 1 + 1 + 7);

    /* '>' inside quoted attribute values does not end the tag. */
    assert_int_equal(ssml("<speak><voice name=\"a>b\" style='x>y'>ok</voice>"
                          "<mstts:express-as style=\"cheerful\" note='1 > 0'>yes</mstts:express-as>"
                          "</speak>",
                          model, sizeof(model)),
                     2 + 3);
    assert_string_equal(model, "a>b");

    /* Only <voice name> names the model, not <voicex> or other attributes. */
    assert_int_equal(ssml("<speak><voicex name='no'/><voice gender='f' names='no'>"
                          "<voice name='yes'>1</voice></voice></speak>",
                          model, sizeof(model)),
                     1);
    assert_string_equal(model, "yes");

    /* A byte order mark is not text; plain text with no markup counts. */
    assert_int_equal(ssml("\xef\xbb\xbf<speak>ab</speak>", NULL, 0), 2);
    assert_int_equal(ssml("just text", NULL, 0), 9);

    /* Unterminated constructs stop the count; nothing is read past the end. */
    assert_int_equal(ssml("ab<!-- cd", NULL, 0), 2);
    assert_int_equal(ssml("ab<![CDATA[cd", NULL, 0), 2);
    assert_int_equal(ssml("ab<?xml cd", NULL, 0), 2);
    assert_int_equal(ssml("ab<voice name='x", model, sizeof(model)), 2);
    assert_string_equal(model, "");
    assert_int_equal(ssml("ab<voice name=", NULL, 0), 2);
    assert_int_equal(ssml("ab&#x", NULL, 0), 2 + 3);
    assert_int_equal(ssml("ab&", NULL, 0), 3);

    /* No body: estimated. */
    struct meter m;
    meter_init(&m, OPS_AZURE_TTS);
    assert_true(meter_finish(&m));

    /* The scanner itself (providers/azure_speech.h): the voice is taken
     * only while still "", and may be NULL. */
    const char *doc = "<speak><voice name='b'>xy</voice></speak>";
    char voice[MODEL_MAX] = "";
    assert_int_equal(azure_ssml_characters(doc, strlen(doc), voice), 2);
    assert_string_equal(voice, "b");
    snprintf(voice, sizeof(voice), "kept");
    assert_int_equal(azure_ssml_characters(doc, strlen(doc), voice), 2);
    assert_string_equal(voice, "kept");
    assert_int_equal(azure_ssml_characters(doc, strlen(doc), NULL), 2);
    assert_int_equal(azure_ssml_characters("", 0, NULL), 0);
    /* The length bounds the document. */
    assert_int_equal(azure_ssml_characters("abcdef", 3, NULL), 3);
}

static void test_azure_stt(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    unsigned char *buf = malloc(100000);
    assert_non_null(buf);

    /* WAV: the uploaded duration is what is billed; the reply's Duration
     * (speech span, 100-ns ticks) is not used. */
    size_t n = make_wav(buf, 16000, 1, 16, 80000, 80000, false); /* 2.5 s */
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n,
                                   "audio/wav; codecs=audio/pcm; samplerate=16000", 45, &rw,
                                   &rw_len),
                     0);
    assert_null(rw);
    response(&m, "{\"RecognitionStatus\":\"Success\",\"DisplayText\":\"Hi.\",\"Offset\":"
                 "3000000,\"Duration\":11000000}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2500);

    /* Ogg Opus: the packets' TOC durations minus the pre-skip; the granule
     * positions (the client writes them) are not read. "audio1" and
     * "audio2" are TOC 0x61 (hybrid 10 ms, 2 frames: 960 samples each),
     * "no packet end" 0x6e (hybrid 20 ms, 2 frames: 1920), the page of
     * serial 8 is another stream. */
    unsigned char head[19] = "OpusHead\x01\x01";
    head[10] = 0x38; /* pre-skip 312 */
    head[11] = 0x01;
    n = ogg_page(buf, 0, 7, head, sizeof(head));
    n += ogg_page(buf + n, 0, 7, "OpusTags", 8);
    n += ogg_page(buf + n, 48000, 7, "audio1", 6);
    n += ogg_page(buf + n, 9999999, 8, "other stream", 12);
    n += ogg_page(buf + n, -1, 7, "no packet end", 13);
    n += ogg_page(buf + n, 312 + 96000, 7, "audio2", 6);
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(
        meter_request(&m, (const char *)buf, n, "audio/ogg; codecs=opus", 22, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, opus_ms(960 + 1920 + 960 - 312)); /* 74 */
    /* A truncated last page: its packet is not counted. */
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n - 1, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, opus_ms(960 + 1920 - 312)); /* 54 */
    /* 60 CELT 20 ms packets whose pages all carry granule 0: 1.2 s minus
     * the pre-skip, billed, not estimated. */
    n = opus_head(buf, 5, 312);
    unsigned char celt[30];
    memset(celt, 0x42, sizeof(celt));
    celt[0] = 0xF8;
    for (int i = 0; i < 60; i++) {
        struct opkt p = {celt, sizeof(celt)};
        n += ogg_page_packets(buf + n, 0, 0, 5, &p, 1, false);
    }
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(
        meter_request(&m, (const char *)buf, n, "audio/ogg; codecs=opus", 22, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, opus_ms(60 * 960 - 312)); /* 1194 */

    /* Ogg Vorbis: granules at the stream's rate. */
    unsigned char vh[30] = "\x01vorbis";
    vh[11] = 0;
    vh[12] = 0x44; /* 44100 */
    vh[13] = 0xAC;
    n = ogg_page(buf, 0, 1, vh, sizeof(vh));
    n += ogg_page(buf + n, 44100 * 3, 1, "a", 1);
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 3000);

    /* Another format: estimated from the upload's size at 32 kbit/s (never
     * silently 0). */
    static const struct {
        const char *body;
        size_t len;
        int64_t ms;
    } unknown[] = {
        {"ID3\x03 mp3 data here", 18, 5},
        {"OggS", 4, 1},
    };
    for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
        meter_init(&m, OPS_AZURE_STT);
        assert_int_equal(
            meter_request(&m, unknown[i].body, unknown[i].len, "audio/mpeg", 10, &rw, &rw_len), 0);
        assert_true(meter_finish(&m));
        assert_int_equal(m.units.audio_ms, unknown[i].ms);
    }
    memset(buf, 0x5A, 8000);
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, 8000, "audio/mpeg", 10, &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2000);
    /* An Ogg Opus with headers and no audio packet is 0 ms of audio, read,
     * not estimated (granule-based reading called this unknown). */
    n = ogg_page(buf, 0, 7, head, sizeof(head));
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 0);
    /* Ogg Speex: not read, estimated from its 65 bytes. */
    meter_init(&m, OPS_AZURE_STT);
    n = ogg_page(buf, 0, 7, "Speex   ", 8);
    n += ogg_page(buf + n, 16000, 7, "a", 1);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 17);
    /* No body at all: 0, estimated. */
    meter_init(&m, OPS_AZURE_STT);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 0);
    free(buf);
}

/* --- multipart (multipart.h) ------------------------------------------------ */

struct parts {
    char names[8][64];
    char data[8][64];
    size_t lens[8];
    int n;
};

static void collect(void *arg, const char *name, const char *data, size_t len)
{
    struct parts *p = arg;
    if (p->n >= 8)
        return;
    snprintf(p->names[p->n], sizeof(p->names[0]), "%s", name);
    snprintf(p->data[p->n], sizeof(p->data[0]), "%.*s", (int)MIN(len, 63), data);
    p->lens[p->n++] = len;
}

static void test_multipart(void **state)
{
    (void)state;
    char out[64];
    static const char ct[] = "multipart/form-data; charset=utf-8; Boundary=\"a b\"; x=1";
    assert_int_equal(multipart_param(ct, strlen(ct), "boundary", out, sizeof(out)), 0);
    assert_string_equal(out, "a b");
    assert_int_equal(multipart_param(ct, strlen(ct), "x", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(multipart_param(ct, strlen(ct), "charset", out, sizeof(out)), 0);
    assert_string_equal(out, "utf-8");
    assert_int_equal(multipart_param(ct, strlen(ct), "missing", out, sizeof(out)), -1);
    assert_int_equal(multipart_param(ct, strlen(ct), "boundary", out, 3), -1); /* too long */
    static const char cd[] = "form-data; name=\"file\"; filename=\"a;b.wav\"";
    assert_int_equal(multipart_param(cd, strlen(cd), "filename", out, sizeof(out)), 0);
    assert_string_equal(out, "a;b.wav");
    assert_int_equal(multipart_param(cd, strlen(cd), "name", out, sizeof(out)), 0);
    assert_string_equal(out, "file");
    assert_int_equal(multipart_param("form-data; name=", 16, "name", out, sizeof(out)), -1);
    assert_int_equal(multipart_param("form-data; name=\"\"", 18, "name", out, sizeof(out)), -1);

    /* Parts in order, names from Content-Disposition (any case); a part
     * without a name has ""; the body may open without a CRLF; the
     * closing delimiter ends it. */
    static const char body[] =
        "--XY\r\n"
        "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
        "whisper-1\r\n"
        "--XY\r\n"
        "CONTENT-DISPOSITION: form-data; name=language\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "en\r\n"
        "--XY\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "anon\r\n"
        "--XY--\r\n"
        "--XY\r\nContent-Disposition: form-data; name=\"late\"\r\n\r\nno\r\n";
    struct parts p = {0};
    assert_int_equal(
        multipart_parse(body, strlen(body), "multipart/form-data; boundary=XY", 32, collect, &p),
        0);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.names[0], "model");
    assert_string_equal(p.data[0], "whisper-1");
    assert_string_equal(p.names[1], "language");
    assert_string_equal(p.data[1], "en");
    assert_string_equal(p.names[2], "");
    assert_string_equal(p.data[2], "anon");

    /* A truncated last part is not reported. */
    memset(&p, 0, sizeof(p));
    size_t cut = (size_t)(strstr(body, "anon") - body) + 2;
    assert_int_equal(
        multipart_parse(body, cut, "multipart/form-data; boundary=XY", 32, collect, &p), 0);
    assert_int_equal(p.n, 2);

    /* Not multipart, no boundary, no delimiter in the body. */
    memset(&p, 0, sizeof(p));
    assert_int_equal(multipart_parse(body, strlen(body), "application/json", 16, collect, &p), -1);
    assert_int_equal(multipart_parse(body, strlen(body), "multipart/form-data", 19, collect, &p),
                     -1);
    assert_int_equal(
        multipart_parse(body, strlen(body), "multipart/form-data; boundary=ZZ", 32, collect, &p),
        -1);
    assert_int_equal(multipart_parse(NULL, 0, "multipart/form-data; boundary=XY", 32, collect, &p),
                     -1);
    assert_int_equal(p.n, 0);
}

/* --- meter helpers ----------------------------------------------------------- */

static void test_helpers(void **state)
{
    (void)state;
    assert_int_equal(meter_header_count("12", 2), 12);
    assert_int_equal(meter_header_count(" 7 \r", 4), 7);
    assert_int_equal(meter_header_count("12.5", 4), 13);
    assert_int_equal(meter_header_count("12.0", 4), 12);
    assert_int_equal(meter_header_count("1.", 2), -1);
    assert_int_equal(meter_header_count("-3", 2), -1);
    assert_int_equal(meter_header_count("", 0), -1);
    assert_int_equal(meter_header_count("1 2", 3), -1);
    assert_int_equal(meter_header_count("99999999999999999999999", 23), -1);
    assert_int_equal(meter_chars_tokens(0), 0);
    assert_int_equal(meter_chars_tokens(1), 1);
    assert_int_equal(meter_chars_tokens(4), 1);
    assert_int_equal(meter_chars_tokens(5), 2);
    assert_int_equal(meter_chars_tokens(-5), 0);
    assert_int_equal(meter_utf8_chars("h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10), 4);
    const char *d = "{\"a\":{\"text\":\"ab\\\"c\\u00e9\"},\"text\" : \"xyz\",\"texts\":\"no\","
                    "\"q\":\"\\\"text\\\":\\\"no\\\"\"}";
    assert_int_equal(meter_scan_string_chars(d, strlen(d), "text"), 5 + 3);
    const char *hm = "{\"text\":\"h\xc3\xa9llo\"}";
    assert_int_equal(meter_message_chars(hm, strlen(hm), "text"), 5);
    assert_int_equal(meter_message_chars("{\"text\":5}", 10, "text"), 0);
    assert_int_equal(meter_message_chars("not json", 8, "text"), 0);

    /* A model name is cut at a character boundary. */
    char model[MODEL_MAX];
    char longname[MODEL_MAX + 8];
    memset(longname, 'a', sizeof(longname));
    longname[MODEL_MAX - 2] = '\xc3'; /* é straddles the limit */
    longname[MODEL_MAX - 1] = '\xa9';
    meter_set_model(model, longname, sizeof(longname));
    assert_int_equal(strlen(model), MODEL_MAX - 2);

    /* The first or last "usage" object of a text. */
    const char *two = "{\"usage\":{\"a\":1},\"x\":[],\"usage\" : {\"a\":2}}";
    json_t *u = meter_key_object(two, strlen(two), "\"usage\"", false);
    assert_int_equal(json_integer_value(json_object_get(u, "a")), 1);
    json_decref(u);
    u = meter_key_object(two, strlen(two), "\"usage\"", true);
    assert_int_equal(json_integer_value(json_object_get(u, "a")), 2);
    json_decref(u);
    assert_null(meter_key_object("{\"usage\":null}", 14, "\"usage\"", true));
    assert_true(meter_has_usage_object(two, strlen(two)));
    assert_false(meter_has_usage_object("{\"usage\":null}", 14));
    assert_false(meter_has_usage_object("{\"x\":\"usage\"}", 13));
}

/* --- WebSocket meters ---------------------------------------------------------- */

static void ws_open(struct ws_meter *m, const char *path, const char *query)
{
    const struct provider_endpoint *ep = ws_endpoint(path);
    assert_int_equal(ws_meter_init(m, ep->ws, ep->model_query, query, query ? strlen(query) : 0),
                     0);
}

static void ws_text(struct ws_meter *m, bool from_client, const char *data)
{
    ws_meter_text(m, from_client, data, strlen(data), true);
}

static void count_unit(void *arg)
{
    (*(int *)arg)++;
}

/* A JSON text message whose string member `key` holds n copies of c. */
static char *big_message(const char *before, const char *key, char c, size_t n)
{
    size_t len = strlen(before) + strlen(key) + n + 16;
    char *s = malloc(len);
    assert_non_null(s);
    int k = snprintf(s, len, "%s\"%s\":\"", before, key);
    memset(s + k, c, n);
    snprintf(s + (size_t)k + n, len - (size_t)k - n, "\"}");
    return s;
}

/* OpenAI Realtime: each response.done's usage is summed and reported as a
 * unit; a completed input transcription is a unit of its own; a response
 * cut before its response.done is estimated at the end. */
static void test_ws_openai_realtime(void **state)
{
    (void)state;
    struct ws_meter m;
    int units = 0;
    ws_open(&m, "/v1/realtime", "model=gpt-realtime-mini&x=1");
    assert_string_equal(m.model, "gpt-realtime-mini");
    m.unit = count_unit;
    m.unit_arg = &units;

    ws_text(&m, true, "{\"type\":\"session.update\",\"session\":{\"instructions\":\"hi\"}}");
    ws_text(&m, false, "{\"type\":\"session.created\"}");
    ws_text(&m, false, "{\"type\":\"response.created\",\"response\":{\"id\":\"r1\"}}");
    ws_text(&m, false, "{\"type\":\"response.output_audio.delta\",\"delta\":\"AAAA\"}");
    ws_text(&m, false, "{\"type\":\"response.output_audio_transcript.delta\",\"delta\":\"Hi\"}");
    assert_int_equal(units, 0);
    assert_int_equal(m.total.input_tokens, 0);
    static const char done1[] =
        "{\"type\":\"response.done\",\"response\":{\"id\":\"r1\",\"status\":\"completed\","
        "\"usage\":{\"total_tokens\":150,\"input_tokens\":100,\"output_tokens\":50,"
        "\"input_token_details\":{\"cached_tokens\":20,\"text_tokens\":40,\"audio_tokens\":60},"
        "\"output_token_details\":{\"text_tokens\":10,\"audio_tokens\":40}}}}";
    /* An incomplete message (a fragment) is not read. */
    ws_meter_text(&m, false, done1, sizeof(done1) - 1 - 10, false);
    assert_int_equal(units, 0);
    assert_int_equal(m.total.input_tokens, 0);
    ws_text(&m, false, done1);
    assert_int_equal(units, 1);
    assert_int_equal(m.total.input_tokens, 100);
    assert_int_equal(m.total.cached_input_tokens, 20);
    assert_int_equal(m.total.audio_input_tokens, 60);
    assert_int_equal(m.total.output_tokens, 50);
    assert_int_equal(m.total.audio_output_tokens, 40);
    struct usage_units take;
    ws_meter_take(&m, &take);
    assert_int_equal(take.input_tokens, 100);
    assert_int_equal(take.output_tokens, 50);
    ws_meter_take(&m, &take);
    assert_int_equal(take.input_tokens, 0);

    /* A second response sums; the client's text does not count. */
    ws_text(&m, true, "{\"type\":\"response.create\"}");
    ws_text(&m, false,
            "{\"type\":\"response.done\",\"response\":{\"usage\":{\"input_tokens\":7,"
            "\"output_tokens\":3,\"input_token_details\":{\"cached_tokens\":0}}}}");
    assert_int_equal(units, 2);
    assert_int_equal(m.total.input_tokens, 107);
    assert_int_equal(m.total.output_tokens, 53);
    ws_meter_take(&m, &take);
    assert_int_equal(take.input_tokens, 7);
    assert_int_equal(take.output_tokens, 3);
    assert_int_equal(take.audio_output_tokens, 0);

    /* A failed response without usage is still a unit (nothing to add). */
    ws_text(&m, false, "{\"type\":\"response.done\",\"response\":{\"status\":\"failed\"}}");
    assert_int_equal(units, 3);
    assert_int_equal(m.total.input_tokens, 107);

    /* Input transcription: seconds, or tokens. */
    ws_text(&m, false,
            "{\"type\":\"conversation.item.input_audio_transcription.completed\","
            "\"transcript\":\"hi\",\"usage\":{\"type\":\"duration\",\"seconds\":2.5}}");
    assert_int_equal(units, 4);
    assert_int_equal(m.total.audio_ms, 2500);
    ws_text(&m, false,
            "{\"type\":\"conversation.item.input_audio_transcription.completed\","
            "\"usage\":{\"type\":\"tokens\",\"input_tokens\":12,\"input_token_details\":"
            "{\"audio_tokens\":10},\"output_tokens\":4}}");
    assert_int_equal(units, 5);
    assert_int_equal(m.total.input_tokens, 119);
    assert_int_equal(m.total.audio_input_tokens, 70);
    assert_int_equal(m.total.output_tokens, 57);

    /* Nothing pending: finish adds nothing and nothing is estimated. */
    struct ws_meter_end end = {.wall_ms = 60000, .cut = false};
    ws_meter_finish(&m, &end);
    assert_false(m.estimated);
    assert_int_equal(m.total.input_tokens, 119);
    ws_meter_free(&m);

    /* Cut in the middle of a response: the audio and text since the last
     * response.done are estimated. Client audio 64000 base64 chars =
     * 48000 bytes = 1 s of 24 kHz PCM16 = 10 tokens (1 / 100 ms); client
     * text 5 chars = 2 tokens; server audio 6400 chars = 100 ms = 2 tokens
     * (1 / 50 ms); server text 8 chars = 2 tokens. */
    units = 0;
    ws_open(&m, "/v1/realtime", "model=gpt-realtime");
    m.unit = count_unit;
    m.unit_arg = &units;
    char *in_audio = big_message("{\"type\":\"input_audio_buffer.append\",", "audio", 'A', 64000);
    ws_text(&m, true, in_audio);
    free(in_audio);
    ws_text(&m, true,
            "{\"type\":\"conversation.item.create\",\"item\":{\"type\":\"message\",\"content\":"
            "[{\"type\":\"input_text\",\"text\":\"hello\"}]}}");
    ws_text(&m, false, "{\"type\":\"response.created\",\"response\":{}}");
    char *out_audio = big_message("{\"type\":\"response.output_audio.delta\",\"item_id\":\"i\",",
                                  "delta", 'B', 6400);
    ws_text(&m, false, out_audio);
    free(out_audio);
    ws_text(&m, false, "{\"type\":\"response.output_text.delta\",\"delta\":\"abcdefgh\"}");
    assert_int_equal(units, 0);
    assert_int_equal(m.total.output_tokens, 0);
    end = (struct ws_meter_end){.wall_ms = 5000, .cut = true};
    ws_meter_finish(&m, &end);
    assert_true(m.estimated);
    assert_int_equal(m.total.input_tokens, 10 + 2);
    assert_int_equal(m.total.audio_input_tokens, 10);
    assert_int_equal(m.total.output_tokens, 2 + 2);
    assert_int_equal(m.total.audio_output_tokens, 2);
    assert_int_equal(units, 0); /* the session writes the final record itself */
    ws_meter_take(&m, &take);
    assert_int_equal(take.input_tokens, 12);
    ws_meter_free(&m);

    /* Audio appended and then answered: the response.done has it, nothing
     * is estimated at the end. */
    ws_open(&m, "/v1/realtime", NULL);
    assert_string_equal(m.model, ""); /* priced by the socket's model: none named */
    in_audio = big_message("{\"type\":\"input_audio_buffer.append\",", "audio", 'A', 6400);
    ws_text(&m, true, in_audio);
    free(in_audio);
    ws_text(&m, false, "{\"type\":\"response.created\"}");
    ws_text(&m, false,
            "{\"type\":\"response.done\",\"response\":{\"usage\":{\"input_tokens\":3,"
            "\"output_tokens\":1}}}");
    ws_meter_finish(&m, &end);
    assert_false(m.estimated);
    assert_int_equal(m.total.input_tokens, 3);
    ws_meter_free(&m);
}

/* ElevenLabs stream-input: the code points of every text the client sent,
 * at the model's rate, rounded once over the session. */
static void test_ws_elevenlabs(void **state)
{
    (void)state;
    struct ws_meter m;
    ws_open(&m, "/elevenlabs/v1/text-to-speech/voice1/stream-input",
            "model_id=eleven_flash_v2_5&output_format=pcm_16000");
    assert_string_equal(m.model, "eleven_flash_v2_5");
    ws_text(&m, true,
            "{\"text\":\" \",\"voice_settings\":{\"stability\":0.5},\"xi_api_key\":\"k\"}");
    assert_int_equal(m.total.characters, 1); /* ceil(1 / 2) */
    ws_text(&m, true, "{\"text\":\"a\",\"try_trigger_generation\":true}");
    assert_int_equal(m.total.characters, 1); /* 2 code points: 1, not 1 + 1 */
    ws_text(&m, true, "{\"text\":\"b\"}");
    assert_int_equal(m.total.characters, 2); /* 3: 2 */
    struct usage_units take;
    ws_meter_take(&m, &take);
    assert_int_equal(take.characters, 2);
    ws_text(&m, true, "{\"text\":\"w\xc3\xb6rld\"}"); /* 5 code points: 8 in all */
    assert_int_equal(m.total.characters, 4);
    /* The server's messages, fragments and messages without text do not
     * count. */
    ws_text(&m, false, "{\"audio\":\"AAAA\",\"alignment\":{\"chars\":[\"a\"]},\"text\":\"xyz\"}");
    ws_meter_text(&m, true, "{\"text\":\"abcdef\"}", 17, false);
    ws_text(&m, true, "{\"flush\":true}");
    ws_text(&m, true, "{\"text\":\"\"}");
    assert_int_equal(m.total.characters, 4);
    ws_meter_take(&m, &take);
    assert_int_equal(take.characters, 2);
    struct ws_meter_end end = {.wall_ms = 1000};
    ws_meter_finish(&m, &end);
    assert_false(m.estimated);
    ws_meter_free(&m);

    /* No model_id: the API's default, a full credit per character. */
    ws_open(&m, "/elevenlabs/v1/text-to-speech/voice1/multi-stream-input", "");
    assert_string_equal(m.model, "eleven_multilingual_v2");
    ws_text(&m, true, "{\"text\":\"abc\",\"context_id\":\"c\"}");
    assert_int_equal(m.total.characters, 3);
    ws_meter_free(&m);
    ws_open(&m, "/elevenlabs/v1/text-to-speech/voice1/stream-input", "model_id=eleven_turbo_v2");
    ws_text(&m, true, "{\"text\":\"abc\"}");
    assert_int_equal(m.total.characters, 2);
    ws_meter_free(&m);
}

static void dg_audio(struct ws_meter *m, size_t bytes)
{
    static uint8_t chunk[4000];
    for (size_t off = 0; off < bytes; off += sizeof(chunk)) {
        size_t n = MIN(sizeof(chunk), bytes - off);
        ws_meter_binary(m, true, chunk, n, 0, true);
    }
}

/* Deepgram listen: linear16 streams are estimated from their bytes at each
 * interval; the final Metadata's duration is what Deepgram bills. */
static void test_ws_deepgram(void **state)
{
    (void)state;
    struct ws_meter m;
    struct usage_units take;
    ws_open(&m, "/deepgram/v1/listen",
            "model=nova-3&encoding=linear16&sample_rate=16000&channels=1&smart_format=true");
    assert_string_equal(m.model, "nova-3");
    dg_audio(&m, 32000); /* 1 s at 32000 B/s */
    assert_int_equal(m.total.audio_ms, 0);
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 1000);
    assert_true(m.estimated);
    ws_meter_take(&m, &take);
    assert_int_equal(take.audio_ms, 1000);
    dg_audio(&m, 16000);
    ws_meter_binary(&m, false, (const uint8_t *)"xx", 2, 0, true); /* the server's: not audio */
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 1500);
    /* Results do not change the count; a client's "Metadata" is not one. */
    ws_text(&m, false, "{\"type\":\"Results\",\"duration\":9.0,\"start\":0}");
    ws_text(&m, true, "{\"type\":\"Metadata\",\"duration\":99}");
    assert_int_equal(m.total.audio_ms, 1500);
    ws_text(&m, false,
            "{\"type\":\"Metadata\",\"transaction_key\":\"deprecated\",\"request_id\":\"r\","
            "\"duration\":1.6,\"channels\":1}");
    assert_int_equal(m.total.audio_ms, 1600);
    assert_false(m.estimated);
    /* Final: later intervals and the end keep it. */
    dg_audio(&m, 32000);
    ws_meter_interval(&m);
    struct ws_meter_end end = {.wall_ms = 90000, .cut = false};
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 1600);
    assert_false(m.estimated);
    ws_meter_take(&m, &take);
    assert_int_equal(take.audio_ms, 600);
    ws_meter_free(&m);

    /* A Metadata duration below what was already recorded never takes it
     * back. */
    ws_open(&m, "/deepgram/v1/listen", "encoding=linear16&sample_rate=16000");
    assert_string_equal(m.model, ""); /* no default: priced by "*" */
    dg_audio(&m, 64000);
    ws_meter_interval(&m);
    ws_meter_take(&m, &take);
    assert_int_equal(take.audio_ms, 2000);
    ws_text(&m, false, "{\"type\":\"Metadata\",\"duration\":1.5}");
    assert_int_equal(m.total.audio_ms, 2000);
    ws_meter_take(&m, &take);
    assert_int_equal(take.audio_ms, 0);
    ws_meter_free(&m);

    /* linear16 cut without Metadata: the bytes, estimated. Rates from the
     * query: stereo 48 kHz linear16, 8 kHz mulaw. */
    ws_open(&m, "/deepgram/v1/listen", "encoding=linear16&sample_rate=48000&channels=2");
    dg_audio(&m, 96000); /* 0.5 s at 192000 B/s */
    end = (struct ws_meter_end){.wall_ms = 10000, .cut = true};
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 500);
    assert_true(m.estimated);
    ws_meter_free(&m);
    ws_open(&m, "/deepgram/v1/listen", "encoding=mulaw&sample_rate=8000");
    dg_audio(&m, 12000);
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 1500);
    ws_meter_free(&m);

    /* opus (no fixed byte rate), no Metadata: the session's wall clock,
     * estimated; the intervals cannot count it. */
    ws_open(&m, "/deepgram/v1/listen", "model=nova-2&encoding=opus&sample_rate=48000");
    dg_audio(&m, 5000);
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 0);
    end = (struct ws_meter_end){.wall_ms = 12345, .cut = true};
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 12345);
    assert_true(m.estimated);
    ws_meter_free(&m);
    /* A container (no encoding) with its Metadata: the Metadata. */
    ws_open(&m, "/deepgram/v1/listen", "model=nova-2");
    dg_audio(&m, 5000);
    ws_text(&m, false, "{\"type\":\"Metadata\",\"duration\":3.25}");
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 3250);
    assert_false(m.estimated);
    ws_meter_free(&m);
    /* No audio at all: nothing, not an estimate. */
    ws_open(&m, "/deepgram/v1/listen", "encoding=opus");
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 0);
    assert_false(m.estimated);
    ws_meter_free(&m);

    /* speak: the code points of every text the client sends. */
    ws_open(&m, "/deepgram/v1/speak", "model=aura-2-thalia-en&encoding=linear16");
    assert_string_equal(m.model, "aura-2-thalia-en");
    ws_text(&m, true, "{\"type\":\"Speak\",\"text\":\"Hello, w\xc3\xb6rld\"}");
    ws_text(&m, true, "{\"type\":\"Flush\"}");
    ws_text(&m, false, "{\"type\":\"Flushed\",\"text\":\"xyz\"}");
    ws_text(&m, true, "{\"type\":\"Speak\",\"text\":\"again\"}");
    assert_int_equal(m.total.characters, 12 + 5);
    ws_meter_free(&m);
}

/* One Speech SDK binary message: [2-byte header length][headers][payload]. */
static size_t azure_frame(uint8_t *out, const char *headers, const uint8_t *payload,
                          size_t payload_len)
{
    size_t hl = strlen(headers);
    out[0] = (uint8_t)(hl >> 8);
    out[1] = (uint8_t)(hl & 0xff);
    memcpy(out + 2, headers, hl);
    if (payload_len > 0)
        memcpy(out + 2 + hl, payload, payload_len);
    return 2 + hl + payload_len;
}

/* A streaming WAV header (data size 0, as the SDK writes it) whose byte
 * rate field is wrong. */
static size_t stream_wav_header(uint8_t *out, uint32_t rate, uint16_t channels, uint16_t bits)
{
    return make_wav_rate(out, rate, channels, bits, 1, 0, 0, false);
}

static const char AZ_AUDIO_HEADERS[] = "Path: audio\r\nX-RequestId: 0123456789abcdef\r\n"
                                       "X-Timestamp: 2024-01-01T00:00:00.000Z\r\n"
                                       "Content-Type: audio/x-wav\r\n";

/* Azure STT framed audio: the payload bytes after the SDK headers; the
 * first payload's WAV header gives the rate (sample rate x channels x
 * bits) and is not audio. */
static void test_azure_frames(void **state)
{
    (void)state;
    uint8_t *msg = malloc(100000), *payload = malloc(100000);
    assert_non_null(msg);
    assert_non_null(payload);
    memset(payload, 0x22, 100000);

    /* 24 kHz stereo 16-bit = 96000 B/s. First message: header + 4800
     * bytes; then two messages of 43200 bytes: 91200 bytes = 950 ms. */
    size_t h = stream_wav_header(payload, 24000, 2, 16);
    assert_int_equal(h, 44);
    struct azure_frames f;
    memset(&f, 0, sizeof(f));
    size_t n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, h + 4800);
    /* Fed a few bytes at a time: the same. */
    for (size_t off = 0; off < n; off += 3)
        azure_frames_feed(&f, msg + off, MIN((size_t)3, n - off), off, off + 3 >= n);
    assert_int_equal(f.bytes_per_sec, 96000);
    assert_int_equal(f.audio_bytes, 4800);
    memset(payload, 0x22, 44);
    for (int i = 0; i < 2; i++) {
        n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, 43200);
        azure_frames_feed(&f, msg, n, 0, true);
    }
    assert_int_equal(f.audio_bytes, 4800 + 2 * 43200);
    assert_int_equal(audio_bytes_ms(f.audio_bytes, f.bytes_per_sec), 950);
    /* A header-only message (end of a turn) adds nothing. */
    n = azure_frame(msg, AZ_AUDIO_HEADERS, NULL, 0);
    azure_frames_feed(&f, msg, n, 0, true);
    assert_int_equal(f.audio_bytes, 91200);

    /* The same through the socket meter, chunked, both ways. */
    struct ws_meter m;
    ws_open(&m, "/azure/stt/speech/recognition/conversation/cognitiveservices/v1",
            "language=en-US&format=simple");
    h = stream_wav_header(payload, 16000, 1, 16); /* 32000 B/s */
    n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, h + 16000);
    ws_meter_binary(&m, true, msg, 10, 0, false);
    ws_meter_binary(&m, true, msg + 10, n - 10, 10, true);
    ws_meter_binary(&m, false, msg, n, 0, true); /* the server's: not audio */
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 500);
    assert_false(m.estimated);
    memset(payload, 0x22, 44);
    n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, 32000);
    ws_meter_binary(&m, true, msg, n, 0, true);
    ws_text(&m, true, "Path: speech.config\r\n\r\n{\"context\":{}}");
    struct ws_meter_end end = {.wall_ms = 99000};
    ws_meter_finish(&m, &end);
    assert_int_equal(m.total.audio_ms, 1500);
    assert_false(m.estimated);
    ws_meter_free(&m);

    /* A new turn's WAV header changes the rate for what follows. */
    memset(&f, 0, sizeof(f));
    h = stream_wav_header(payload, 8000, 1, 16); /* 16000 B/s */
    n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, h + 8000);
    azure_frames_feed(&f, msg, n, 0, true);
    assert_int_equal(f.bytes_per_sec, 16000);
    assert_int_equal(f.audio_bytes, 8000);

    /* No WAV header: the SDK's default 16 kHz 16-bit mono, estimated. */
    ws_open(&m, "/azure/stt/speech/recognition/interactive/cognitiveservices/v1", NULL);
    memset(payload, 0x22, 100);
    n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, 16000);
    ws_meter_binary(&m, true, msg, n, 0, true);
    ws_meter_interval(&m);
    assert_int_equal(m.total.audio_ms, 500);
    assert_true(m.estimated);
    ws_meter_free(&m);
    /* A payload that opens with "R" but is no WAV: audio. */
    memset(&f, 0, sizeof(f));
    memcpy(payload, "RIFX", 4);
    n = azure_frame(msg, AZ_AUDIO_HEADERS, payload, 600);
    azure_frames_feed(&f, msg, n, 0, true);
    assert_int_equal(f.audio_bytes, 600);
    assert_int_equal(f.bytes_per_sec, 0);
    /* A short payload that could be the start of a WAV header, ended: it is
     * audio. */
    memset(&f, 0, sizeof(f));
    n = azure_frame(msg, AZ_AUDIO_HEADERS, (const uint8_t *)"RIF", 3);
    azure_frames_feed(&f, msg, n, 0, true);
    assert_int_equal(f.audio_bytes, 3);
    free(msg);
    free(payload);
}

/* Azure TTS socket: the SSML of "Path: ssml" messages; the first voice is
 * the model. */
static void test_ws_azure_tts(void **state)
{
    (void)state;
    struct ws_meter m;
    ws_open(&m, "/azure/tts/cognitiveservices/websocket/v1", NULL);
    assert_string_equal(m.model, "");
    ws_text(&m, true,
            "Path: speech.config\r\nX-RequestId: a\r\n\r\n{\"context\":{\"synthesis\":{}}}");
    assert_int_equal(m.total.characters, 0);
    ws_text(&m, true,
            "X-RequestId: a\r\npath :ssml\r\nContent-Type: application/ssml+xml\r\n\r\n"
            "<speak version='1.0'><voice name='en-US-AvaNeural'>Hello &amp; bye</voice></speak>");
    /* "path :ssml" is not the header "Path:" - not read. */
    assert_int_equal(m.total.characters, 0);
    ws_text(&m, true,
            "X-RequestId: a\r\nPATH:  ssml \r\nContent-Type: application/ssml+xml\r\n\r\n"
            "<speak version='1.0'><voice name='en-US-AvaNeural'>Hello &amp; bye</voice></speak>");
    assert_int_equal(m.total.characters, 11);
    assert_string_equal(m.model, "en-US-AvaNeural");
    assert_true(m.model_changed);
    m.model_changed = false;
    ws_text(&m, true,
            "Path: ssml\r\n\r\n<speak><voice name='de-DE-KatjaNeural'>Hallo</voice></speak>");
    assert_int_equal(m.total.characters, 16);
    assert_string_equal(m.model, "en-US-AvaNeural"); /* the session's first voice */
    assert_false(m.model_changed);
    /* The server's messages and fragments do not count. */
    ws_text(&m, false, "Path: ssml\r\n\r\n<speak>server</speak>");
    ws_meter_text(&m, true, "Path: ssml\r\n\r\n<speak>frag</speak>", 34, false);
    assert_int_equal(m.total.characters, 16);
    ws_meter_free(&m);
}

/* Cartesia: the code points of every transcript; every message names its
 * model, a change is flagged so the session can check its price. */
static void test_ws_cartesia(void **state)
{
    (void)state;
    struct ws_meter m;
    ws_open(&m, "/cartesia/tts/websocket", "cartesia_version=2024-06-10&api_key=k");
    assert_string_equal(m.model, "");
    assert_false(m.model_changed);
    ws_text(&m, true,
            "{\"model_id\":\"sonic-2\",\"transcript\":\"Hello \",\"voice\":{\"mode\":\"id\","
            "\"id\":\"v\"},\"context_id\":\"c1\",\"continue\":true}");
    assert_int_equal(m.total.characters, 6);
    assert_string_equal(m.model, "sonic-2");
    assert_true(m.model_changed);
    m.model_changed = false;
    ws_text(&m, true,
            "{\"model_id\":\"sonic-2\",\"transcript\":\"w\xc3\xb6rld\",\"context_id\":\"c1\"}");
    assert_int_equal(m.total.characters, 11);
    assert_false(m.model_changed); /* the same model */
    ws_text(&m, true, "{\"model_id\":\"sonic-turbo\",\"transcript\":\"x\",\"context_id\":\"c2\"}");
    assert_int_equal(m.total.characters, 12);
    assert_string_equal(m.model, "sonic-turbo");
    assert_true(m.model_changed);
    m.model_changed = false;
    /* The server's chunks, cancel messages and fragments do not count. */
    ws_text(&m, false, "{\"type\":\"chunk\",\"data\":\"AAAA\",\"transcript\":\"abc\"}");
    ws_text(&m, true, "{\"context_id\":\"c1\",\"cancel\":true}");
    ws_meter_text(&m, true, "{\"transcript\":\"abc\"}", 20, false);
    assert_int_equal(m.total.characters, 12);
    assert_false(m.model_changed);
    struct usage_units take;
    ws_meter_take(&m, &take);
    assert_int_equal(take.characters, 12);
    ws_meter_free(&m);
}

/* An Ogg demuxer resynchronises on the next "OggS" after bytes that are not
 * a page (RFC 3533 §6; libogg, FFmpeg): the audio after them is decoded and
 * billed upstream. The duration must count it, or say it cannot (-1: the
 * meters then estimate from the size) - never report less. */
static void test_ogg_junk_between_pages(void **state)
{
    (void)state;
    unsigned char *buf = malloc(100000);
    assert_non_null(buf);
    unsigned char celt[40];
    memset(celt, 0x42, sizeof(celt));
    celt[0] = 0xF8; /* CELT 20 ms */
    size_t n = opus_head(buf, 7, 312);
    buf[n++] = 0; /* one byte that is not a page */
    for (int i = 0; i < 500; i++) {
        struct opkt p = {celt, sizeof(celt)};
        n += ogg_page_packets(buf + n, 0, 0, 7, &p, 1, false);
    }
    int64_t full = opus_ms(500 * 960 - 312); /* 9994 ms */
    int64_t got = audio_ogg_duration_ms(buf, n);
    if (got != -1 && got < full)
        fail_msg("Ogg Opus with a junk byte before 10 s of audio pages: %lld ms, want %lld "
                 "(or -1)",
                 (long long)got, (long long)full);
    /* Through the Azure STT meter: at least the audio, or an estimate. */
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    bool estimated = meter_finish(&m);
    if (!estimated && m.units.audio_ms < full)
        fail_msg("Azure STT billed %lld ms (exact) for 10 s of Opus", (long long)m.units.audio_ms);
    free(buf);
}

/* A chained Ogg (RFC 3533 §4: a second logical stream begins after the
 * first ends) is played through by decoders; its second stream is audio
 * too. */
static void test_ogg_chained_streams(void **state)
{
    (void)state;
    unsigned char *buf = malloc(100000);
    assert_non_null(buf);
    unsigned char celt[40];
    memset(celt, 0x42, sizeof(celt));
    celt[0] = 0xF8;
    struct opkt p = {celt, sizeof(celt)};
    /* Stream 1: headers and one 20 ms packet, end of stream. */
    size_t n = opus_head(buf, 1, 0);
    n += ogg_page_packets(buf + n, 4, 960, 1, &p, 1, false); /* EOS */
    /* Stream 2: headers and 500 packets (10 s). */
    size_t s2 = n;
    n += opus_head(buf + n, 2, 0);
    buf[s2 + 5] = 2; /* BOS */
    for (int i = 0; i < 500; i++)
        n += ogg_page_packets(buf + n, 0, (int64_t)(i + 1) * 960, 2, &p, 1, false);
    int64_t got = audio_ogg_duration_ms(buf, n);
    if (got != -1 && got < 10000)
        fail_msg("chained Ogg Opus (20 ms then 10 s): %lld ms, want >= 10000 (or -1)",
                 (long long)got);
    /* Two chained Vorbis streams whose (client-written) granules are near
     * the top of the range: the sum saturates (found by fuzz_audio: a
     * signed overflow; regressions/audio/ogg-chained-granule-sum-overflow). */
    unsigned char vh[30] = "\x01vorbis";
    vh[12] = 1; /* 1 Hz */
    n = ogg_page(buf, 0, 1, vh, sizeof(vh));
    n += ogg_page(buf + n, INT64_MAX, 1, "a", 1);
    size_t v2 = n;
    n += ogg_page(buf + n, 0, 2, vh, sizeof(vh));
    buf[v2 + 5] = 2; /* BOS */
    n += ogg_page(buf + n, INT64_MAX, 2, "a", 1);
    assert_int_equal(audio_ogg_duration_ms(buf, n), INT64_MAX);
    free(buf);
}

/* meter_response_header looks only at the headers of its meter. */
static void test_response_header_kinds(void **state)
{
    (void)state;
    const struct meter_ops *kinds[] = {NULL,          OPS_CHAT,         OPS_SPEECH,
                                       OPS_ANTHROPIC, OPS_CARTESIA_TTS, OPS_AZURE_TTS,
                                       OPS_DG_LISTEN, OPS_AZURE_STT,    OPS_TRANSCRIPTION};
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        struct meter m;
        meter_init(&m, kinds[i]);
        header(&m, "character-cost", "5");
        header(&m, "dg-char-count", "5");
        header(&m, "dg-model-name", "aura");
        assert_int_equal(m.header_characters, -1);
        assert_string_equal(m.model, "");
    }
    struct meter m;
    meter_init(&m, OPS_EL_TTS);
    header(&m, "dg-char-count", "5");
    assert_int_equal(m.header_characters, -1);
    header(&m, "character-cost", "12.5"); /* a fraction is rounded up */
    assert_int_equal(m.header_characters, 13);
    header(&m, "character-cost", "99999999999999999999999");
    assert_int_equal(m.header_characters, 13);
    header(&m, "character-cost", "1.");
    header(&m, "character-cost", "1 2");
    assert_int_equal(m.header_characters, 13);
    meter_response_header(&m, "character-cost", 14, "42xyz", 2); /* the length bounds it */
    assert_int_equal(m.header_characters, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_ws_endpoints),
        cmocka_unit_test(test_chat_non_stream),
        cmocka_unit_test(test_chat_model_from_reply),
        cmocka_unit_test(test_usage_fast_path),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_rewrite_inserts),
        cmocka_unit_test(test_rewrite_merges),
        cmocka_unit_test(test_no_rewrite_cases),
        cmocka_unit_test(test_chat_stream_drop_rule),
        cmocka_unit_test(test_chat_usage_with_choices_kept),
        cmocka_unit_test(test_chat_stream_estimate),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_responses_stream),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_deepseek_cache_hits),
        cmocka_unit_test(test_speech),
        cmocka_unit_test(test_wav_duration),
        cmocka_unit_test(test_wav_forged_byte_rate),
        cmocka_unit_test(test_wav_chunks),
        cmocka_unit_test(test_ogg_opus_toc),
        cmocka_unit_test(test_transcription_multipart),
        cmocka_unit_test(test_transcription_json_usage),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_elevenlabs),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_deepgram_listen),
        cmocka_unit_test(test_cartesia),
        cmocka_unit_test(test_azure_tts_ssml),
        cmocka_unit_test(test_azure_stt),
        cmocka_unit_test(test_response_header_kinds),
        cmocka_unit_test(test_ws_openai_realtime),
        cmocka_unit_test(test_ws_elevenlabs),
        cmocka_unit_test(test_ws_deepgram),
        cmocka_unit_test(test_azure_frames),
        cmocka_unit_test(test_ws_azure_tts),
        cmocka_unit_test(test_ws_cartesia),
        cmocka_unit_test(test_ogg_junk_between_pages),
        cmocka_unit_test(test_ogg_chained_streams),
        /* Last: a heap-use-after-free in deepgram.c aborts the run under
         * ASan (see the test). */
        cmocka_unit_test(test_deepgram_speak),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
