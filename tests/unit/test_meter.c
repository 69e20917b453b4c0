/* test_meter.c - unit tests of usage metering, reached as the data plane
 * reaches it: the served endpoint of a request (route_endpoint) names its
 * REST meter (struct meter_ops). Endpoints served and their lines; request
 * parsing and the include_usage rewrite; replies streamed or not;
 * estimates; the helpers the meters share; the LLM meters (OpenAI chat,
 * responses and embeddings, DeepSeek, Anthropic). Elsewhere: the speech
 * meters (test_meter_speech.c), the WebSocket meters (test_ws_meter.c), WAV
 * and Ogg (test_audio.c), multipart (test_multipart.c); shared helpers in
 * meter_test.h. */
#include "common.h"

#include "meter.h"
#include "meter_test.h"
#include "route.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
        ("{\"model\":\"gpt-4o-mini\",\"stream\":true,"
         "\"stream_options\":{\"include_obfuscation\":false,\"include_usage\":false},"
         "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}"),
        ("{\"model\":\"gpt-4o-mini\",\"stream\":true,"
         "\"stream_options\":{\"include_obfuscation\":false},"
         "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}"),
        ("{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":null,"
         "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"user\":\"\xc3\xa9\"}"),
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

/* A non-stream reply cut before its usage (the upstream reset mid-body):
 * estimated from the prompt and the text that was relayed, as a cut
 * stream is, not from the prompt alone. */
static void test_cut_reply_estimate(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_CHAT);
    assert_int_equal(request(&m,
                             "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"123456789\"}]}",
                             &rw, &rw_len),
                     0);
    assert_null(rw);
    response(&m, "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":\"Hello there\",\"refusal\":null},"
                 "\"finish_reason\":\"stop\"}],");
    assert_false(m.got_usage);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 3);  /* ceil(9/4) */
    assert_int_equal(m.units.output_tokens, 3); /* ceil(11/4) */

    /* Cut inside the text: what arrived counts. */
    meter_init(&m, OPS_CHAT);
    assert_int_equal(request(&m, "{\"model\":\"gpt-4o\",\"messages\":[]}", &rw, &rw_len), 0);
    response(&m, "{\"choices\":[{\"message\":{\"content\":\"abcde");
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.output_tokens, 2); /* ceil(5/4) */

    meter_init(&m, OPS_RESPONSES);
    assert_int_equal(request(&m, "{\"model\":\"gpt-4.1\",\"input\":\"hello\"}", &rw, &rw_len), 0);
    response(&m, "{\"id\":\"resp_1\",\"output\":[{\"type\":\"message\",\"content\":[{"
                 "\"type\":\"output_text\",\"text\":\"Hi there, friend\"}]}],\"text\":{"
                 "\"format\":{\"type\":\"text\"}},");
    assert_false(m.got_usage);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 2);  /* ceil(5/4) */
    assert_int_equal(m.units.output_tokens, 4); /* ceil(16/4) */
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

    /* A reply cut mid-body before its usage: the text (and thinking) that
     * was relayed counts, 4 characters per token, as for a cut stream. */
    meter_init(&m, OPS_ANTHROPIC);
    assert_int_equal(request(&m,
                             "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"123456789\"}]}",
                             &rw, &rw_len),
                     0);
    response(&m, "{\"id\":\"msg_2\",\"type\":\"message\",\"content\":[{\"type\":\"thinking\","
                 "\"thinking\":\"abcd\"},{\"type\":\"text\",\"text\":\"Hello th");
    assert_false(m.got_usage);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 3);  /* ceil(9/4) */
    assert_int_equal(m.units.output_tokens, 3); /* ceil((4 + 8)/4) */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
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
        cmocka_unit_test(test_cut_reply_estimate),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_responses_stream),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_deepseek_cache_hits),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_anthropic_stream),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
