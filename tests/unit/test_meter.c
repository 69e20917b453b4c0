/* test_meter.c - unit tests of usage metering: endpoints, request parsing and
 * the include_usage rewrite, replies streamed or not, multipart WAV uploads,
 * estimates. */
#include "common.h"

#include "meter.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

static void test_kind_for_path(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        enum meter_kind kind;
        const char *line;
    } cases[] = {
        {"/v1/chat/completions", METER_CHAT, "llm"},
        {"/v1/responses", METER_RESPONSES, "llm"},
        {"/v1/embeddings", METER_EMBEDDINGS, "embeddings"},
        {"/v1/audio/speech", METER_SPEECH, "tts"},
        {"/v1/audio/transcriptions", METER_TRANSCRIPTION, "stt"},
        {"/v1/audio/translations", METER_TRANSCRIPTION, "stt"},
        {"/v1/models", METER_NONE, "llm"},
        {"/v1/chat/completions/", METER_NONE, "llm"},
        {"/v1/chat/completion", METER_NONE, "llm"},
        {"/v1/responses/resp_1", METER_NONE, "llm"},
        {"", METER_NONE, "llm"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        enum meter_kind k = meter_kind_for_path(cases[i].path, strlen(cases[i].path));
        assert_int_equal(k, cases[i].kind);
        assert_string_equal(meter_line_name(k), cases[i].line);
    }
    /* The length bounds the comparison: a longer buffer's prefix is used. */
    const char *q = "/v1/embeddings?x=1";
    assert_int_equal(meter_kind_for_path(q, 14), METER_EMBEDDINGS);
    assert_int_equal(meter_kind_for_path(q, strlen(q)), METER_NONE);
}

static void test_chat_non_stream(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_CHAT);
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
    meter_init(&m, METER_CHAT);
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
    meter_init(&m, METER_CHAT);
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
    meter_init(&m, METER_EMBEDDINGS);
    assert_int_equal(
        request(&m, "{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}", &rw, &rw_len), 0);
    response(&m, "{\"data\":[{\"note\":\"\\\"usage\\\":{}\"}]}");
    assert_false(m.got_usage);

    /* A usage key whose value is not an object falls back to the full
     * parse, which finds no usage object either. */
    meter_init(&m, METER_EMBEDDINGS);
    assert_int_equal(
        request(&m, "{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}", &rw, &rw_len), 0);
    response(&m, "{\"usage\":null}");
    assert_false(m.got_usage);
}

static void test_bad_json(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_CHAT);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(request(&m, "{\"model\":\"x\",\"stream\":true", &rw, &rw_len), -1);
    assert_null(rw);
    assert_int_equal(request(&m, "[1,2]", &rw, &rw_len), -1);
    assert_int_equal(meter_request(&m, "", 0, NULL, 0, &rw, &rw_len), -1);
    /* Unmetered endpoints do not look at the body. */
    meter_init(&m, METER_NONE);
    assert_int_equal(request(&m, "not json", &rw, &rw_len), 0);
    /* A reply that is not JSON leaves the meter alone. */
    meter_init(&m, METER_CHAT);
    response(&m, "<html>bad gateway</html>");
    assert_false(m.got_usage);
}

/* Without stream_options the member is inserted as text: every other byte
 * of the client's body is unchanged. */
static void test_rewrite_inserts(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_CHAT);
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
        meter_init(&m, METER_CHAT);
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
        meter_init(&m, METER_CHAT);
        char *rw = (char *)1;
        size_t rw_len;
        assert_int_equal(request(&m, bodies[i], &rw, &rw_len), 0);
        assert_null(rw);
        assert_int_equal(m.client_include_usage, i == 0);
    }
    /* Only chat completions are rewritten. */
    struct meter r;
    meter_init(&r, METER_RESPONSES);
    char *rw = (char *)1;
    size_t rw_len;
    assert_int_equal(request(&r, "{\"model\":\"m\",\"stream\":true,\"input\":\"x\"}", &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_true(r.stream);
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
    meter_init(&m, METER_CHAT);
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
    meter_init(&m, METER_CHAT);
    assert_false(sse(&m, "",
                     "{\"choices\":[{\"delta\":{\"content\":\"x\"}}],"
                     "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}"));
    assert_true(m.got_usage);
}

static void test_chat_stream_estimate(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_CHAT);
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
    meter_init(&m, METER_RESPONSES);
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
    meter_init(&m, METER_RESPONSES);
    assert_int_equal(request(&m, "{\"model\":\"gpt-4.1\",\"input\":\"hello\"}", &rw, &rw_len), 0);
    assert_int_equal(m.prompt_chars, 5);
}

static void test_responses_stream(void **state)
{
    (void)state;
    /* Named events, and the same events without event lines. */
    for (int named = 0; named < 2; named++) {
        struct meter m;
        meter_init(&m, METER_RESPONSES);
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
    meter_init(&e, METER_RESPONSES);
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
    meter_init(&m, METER_EMBEDDINGS);
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
}

static void test_speech(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_SPEECH);
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
    meter_init(&m, METER_SPEECH);
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

/* A canonical 44-byte-header PCM WAV plus optional extra chunks. */
static size_t make_wav(unsigned char *out, uint32_t rate, uint16_t channels, uint16_t bits,
                       uint32_t data_bytes, uint32_t declared, bool list_first)
{
    size_t n = 0;
    uint32_t byte_rate = rate * channels * bits / 8;
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        memcpy(out + n, s, l);                                                                     \
        n += l;                                                                                    \
    } while (0)
#define PUT32(v)                                                                                   \
    do {                                                                                           \
        uint32_t v_ = (v);                                                                         \
        unsigned char b_[4] = {v_ & 0xff, (v_ >> 8) & 0xff, (v_ >> 16) & 0xff, v_ >> 24};          \
        PUT(b_, 4);                                                                                \
    } while (0)
#define PUT16(v)                                                                                   \
    do {                                                                                           \
        unsigned char b_[2] = {(v)&0xff, ((v) >> 8) & 0xff};                                       \
        PUT(b_, 2);                                                                                \
    } while (0)
    PUT("RIFF", 4);
    PUT32(0); /* RIFF size: not used */
    PUT("WAVE", 4);
    if (list_first) {
        PUT("LIST", 4);
        PUT32(5); /* odd size: padded to 6 */
        PUT("INFOx\0", 6);
    }
    PUT("fmt ", 4);
    PUT32(16);
    PUT16(1);
    PUT16(channels);
    PUT32(rate);
    PUT32(byte_rate);
    PUT16(channels * bits / 8);
    PUT16(bits);
    PUT("data", 4);
    PUT32(declared);
    memset(out + n, 0x11, data_bytes);
    n += data_bytes;
    return n;
}

static void test_wav_duration(void **state)
{
    (void)state;
    unsigned char *w = malloc(200000);
    assert_non_null(w);
    /* 16 kHz mono 16-bit: 32000 bytes/s; 48000 bytes = 1.5 s. */
    size_t n = make_wav(w, 16000, 1, 16, 48000, 48000, false);
    assert_int_equal(meter_wav_duration_ms(w, n), 1500);
    /* A LIST chunk (odd size, padded) before fmt. */
    n = make_wav(w, 16000, 1, 16, 48000, 48000, true);
    assert_int_equal(meter_wav_duration_ms(w, n), 1500);
    /* Streaming writer: size left open. */
    n = make_wav(w, 24000, 1, 16, 24000, 0xFFFFFFFFu, false);
    assert_int_equal(meter_wav_duration_ms(w, n), 500);
    /* Declared larger than what was uploaded: count what is there. */
    n = make_wav(w, 8000, 2, 16, 3200, 999999, false);
    assert_int_equal(meter_wav_duration_ms(w, n), 100);
    /* Not WAV, truncated headers, no fmt. */
    assert_int_equal(meter_wav_duration_ms((const unsigned char *)"ID3\x03garbage", 10), -1);
    assert_int_equal(meter_wav_duration_ms(w, 11), -1);
    assert_int_equal(meter_wav_duration_ms(w, 30), -1);
    assert_int_equal(meter_wav_duration_ms(NULL, 0), -1);
    n = make_wav(w, 16000, 1, 16, 100, 100, false);
    memcpy(w + 12, "junk", 4); /* fmt chunk renamed */
    assert_int_equal(meter_wav_duration_ms(w, n), -1);
    free(w);
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
    meter_init(&m, METER_TRANSCRIPTION);
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
    meter_init(&m, METER_TRANSCRIPTION);
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

    /* Not a WAV upload: duration unknown. */
    len = make_multipart(body, "b", "whisper-1", (const unsigned char *)"ID3....", 7, false);
    meter_init(&m, METER_TRANSCRIPTION);
    assert_int_equal(
        meter_request(&m, body, len, "multipart/form-data; boundary=b", 31, &rw, &rw_len), 0);
    assert_int_equal(m.upload_audio_ms, -1);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 0);

    /* The longest boundary accepted (200), and one too long. */
    char longb[202];
    memset(longb, 'q', 201);
    longb[201] = '\0';
    char ctl[260];
    for (int extra = 0; extra < 2; extra++) {
        longb[200 + extra] = '\0';
        len = make_multipart(body, longb, "whisper-1", wav, wav_len, false);
        snprintf(ctl, sizeof(ctl), "multipart/form-data; boundary=%s", longb);
        meter_init(&m, METER_TRANSCRIPTION);
        assert_int_equal(meter_request(&m, body, len, ctl, strlen(ctl), &rw, &rw_len),
                         extra ? -1 : 0);
        assert_int_equal(m.upload_audio_ms, extra ? -1 : 2000);
        longb[200] = 'q';
    }

    /* No boundary, or not multipart. */
    meter_init(&m, METER_TRANSCRIPTION);
    assert_int_equal(meter_request(&m, body, len, "multipart/form-data", 19, &rw, &rw_len), -1);
    assert_int_equal(meter_request(&m, body, len, NULL, 0, &rw, &rw_len), -1);
    free(wav);
    free(body);
}

static void test_transcription_json_usage(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_TRANSCRIPTION);
    m.upload_audio_ms = 9999;
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"duration\",\"seconds\":2.4567}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2457);
    assert_int_equal(m.units.input_tokens, 0);

    meter_init(&m, METER_TRANSCRIPTION);
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"duration\",\"seconds\":3}}");
    assert_int_equal(m.units.audio_ms, 3000);

    meter_init(&m, METER_TRANSCRIPTION);
    response(&m, "{\"text\":\"hi\",\"usage\":{\"type\":\"tokens\",\"input_tokens\":14,"
                 "\"input_token_details\":{\"text_tokens\":0,\"audio_tokens\":14},"
                 "\"output_tokens\":45,\"total_tokens\":59}}");
    assert_int_equal(m.units.input_tokens, 14);
    assert_int_equal(m.units.audio_input_tokens, 14);
    assert_int_equal(m.units.output_tokens, 45);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_for_path),
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
        cmocka_unit_test(test_speech),
        cmocka_unit_test(test_wav_duration),
        cmocka_unit_test(test_transcription_multipart),
        cmocka_unit_test(test_transcription_json_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
