/* test_meter.c - unit tests of usage metering: endpoints, request parsing and
 * the include_usage rewrite, replies streamed or not, multipart WAV uploads,
 * estimates; the other providers' kinds, headers, SSML and Ogg durations. */
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

static void header(struct meter *m, const char *name, const char *value)
{
    meter_response_header(m, name, strlen(name), value, strlen(value));
}

static void test_kind_for(void **state)
{
    (void)state;
    static const struct {
        enum provider_id p;
        bool stt;
        const char *path;
        enum meter_kind kind;
        const char *line;
    } cases[] = {
        {PROVIDER_OPENAI, false, "/v1/chat/completions", METER_CHAT, "llm"},
        {PROVIDER_OPENAI, false, "/v1/audio/speech", METER_SPEECH, "tts"},
        {PROVIDER_OPENAI, false, "/chat/completions", METER_NONE, "llm"},
        {PROVIDER_OPENAI, false, "/v1/messages", METER_NONE, "llm"},
        {PROVIDER_DEEPSEEK, false, "/chat/completions", METER_CHAT, "llm"},
        {PROVIDER_DEEPSEEK, false, "/v1/chat/completions", METER_CHAT, "llm"},
        {PROVIDER_DEEPSEEK, false, "/models", METER_NONE, "llm"},
        {PROVIDER_DEEPSEEK, false, "/user/balance", METER_NONE, "llm"},
        {PROVIDER_DEEPSEEK, false, "chat/completions", METER_NONE, "llm"},
        {PROVIDER_DEEPSEEK, false, "/v1/v1/chat/completions", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", METER_EL_TTS,
         "tts"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/stream", METER_EL_TTS, "tts"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/with-timestamps", METER_EL_TTS, "tts"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/stream/with-timestamps", METER_EL_TTS,
         "tts"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech//stream", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/stream-input", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/stream/", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/", METER_NONE, "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/text-to-speech/v1/with-timestamps/stream", METER_NONE,
         "llm"},
        {PROVIDER_ELEVENLABS, false, "/v1/voices", METER_NONE, "llm"},
        {PROVIDER_ANTHROPIC, false, "/v1/messages", METER_ANTHROPIC, "llm"},
        {PROVIDER_ANTHROPIC, false, "/v1/messages/count_tokens", METER_NONE, "llm"},
        {PROVIDER_ANTHROPIC, false, "/v1/messages/", METER_NONE, "llm"},
        {PROVIDER_ANTHROPIC, false, "/messages", METER_NONE, "llm"},
        {PROVIDER_ANTHROPIC, false, "/v1/chat/completions", METER_NONE, "llm"},
        {PROVIDER_DEEPGRAM, false, "/v1/listen", METER_DG_LISTEN, "stt"},
        {PROVIDER_DEEPGRAM, false, "/v1/speak", METER_DG_SPEAK, "tts"},
        {PROVIDER_DEEPGRAM, false, "/v1/listen/", METER_NONE, "llm"},
        {PROVIDER_DEEPGRAM, false, "/v1/projects", METER_NONE, "llm"},
        {PROVIDER_CARTESIA, false, "/tts/bytes", METER_CARTESIA_TTS, "tts"},
        {PROVIDER_CARTESIA, false, "/tts/sse", METER_CARTESIA_TTS, "tts"},
        {PROVIDER_CARTESIA, false, "/tts/websocket", METER_NONE, "llm"},
        {PROVIDER_CARTESIA, false, "/voices", METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, false, "/cognitiveservices/v1", METER_AZURE_TTS, "tts"},
        {PROVIDER_AZURE_SPEECH, false, "/cognitiveservices/voices/list", METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, true, "/cognitiveservices/v1", METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, true, "/speech/recognition/conversation/cognitiveservices/v1",
         METER_AZURE_STT, "stt"},
        {PROVIDER_AZURE_SPEECH, true, "/speech/recognition/interactive/cognitiveservices/v1",
         METER_AZURE_STT, "stt"},
        {PROVIDER_AZURE_SPEECH, true, "/speech/recognition/dictation/cognitiveservices/v1",
         METER_AZURE_STT, "stt"},
        {PROVIDER_AZURE_SPEECH, false, "/speech/recognition/dictation/cognitiveservices/v1",
         METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, true, "/speech/recognition/other/cognitiveservices/v1", METER_NONE,
         "llm"},
        {PROVIDER_AZURE_SPEECH, true, "/speech/recognition/conversation/cognitiveservices/v2",
         METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, true, "/stt/speech/universal/v2", METER_NONE, "llm"},
        {PROVIDER_AZURE_SPEECH, true, "", METER_NONE, "llm"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        enum meter_kind k =
            meter_kind_for(cases[i].p, cases[i].stt, cases[i].path, strlen(cases[i].path));
        if (k != cases[i].kind)
            fail_msg("%s %s: kind %d, want %d", provider_name(cases[i].p), cases[i].path, k,
                     cases[i].kind);
        assert_string_equal(meter_line_name(k), cases[i].line);
    }
    /* The length bounds the path. */
    const char *q = "/v1/messages?beta=true";
    assert_int_equal(meter_kind_for(PROVIDER_ANTHROPIC, false, q, 12), METER_ANTHROPIC);
    assert_int_equal(meter_kind_for(PROVIDER_ANTHROPIC, false, q, strlen(q)), METER_NONE);
    assert_int_equal(meter_kind_for(PROVIDER_ANTHROPIC, false, NULL, 0), METER_NONE);
    assert_int_equal(meter_kind_for(PROVIDER__COUNT, false, "/v1/messages", 12), METER_NONE);
}

static void test_elevenlabs(void **state)
{
    (void)state;
    struct meter m;
    char *rw = NULL;
    size_t rw_len;

    /* No model_id: the API's default (1 credit per character) is recorded. */
    meter_init(&m, METER_EL_TTS);
    assert_int_equal(request(&m, "{\"text\":\"Gr\xc3\xbc\xc3\x9f dich\"}", &rw, &rw_len), 0);
    assert_null(rw);
    assert_string_equal(m.model, "eleven_multilingual_v2");
    header(&m, "content-type", "audio/mpeg");
    header(&m, "x-character-count", "99");
    assert_false(meter_finish(&m));
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
        meter_init(&m, METER_EL_TTS);
        assert_int_equal(request(&m, body, &rw, &rw_len), 0);
        assert_string_equal(m.model, rates[i].model);
        assert_false(meter_finish(&m));
        assert_int_equal(m.units.characters, rates[i].chars);
    }
    meter_init(&m, METER_EL_TTS);
    assert_int_equal(
        request(&m, "{\"text\":\"12345678\",\"model_id\":\"eleven_flash_v2_5\"}", &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 4);

    /* character-cost is what ElevenLabs billed: it wins, any case, blanks
     * allowed; a value that is not a count is ignored. */
    meter_init(&m, METER_EL_TTS);
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

    meter_init(&m, METER_EL_TTS);
    header(&m, "CHARACTER-COST", "0");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);

    /* No text and no header: estimated (zero); the header alone is enough. */
    meter_init(&m, METER_EL_TTS);
    assert_int_equal(request(&m, "{\"model_id\":\"eleven_v3\"}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);
    meter_init(&m, METER_EL_TTS);
    assert_int_equal(request(&m, "not json", &rw, &rw_len), -1);
    assert_string_equal(m.model, "eleven_multilingual_v2");
    assert_true(meter_finish(&m));
    meter_init(&m, METER_EL_TTS);
    header(&m, "character-cost", "12");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 12);
    assert_string_equal(m.model, "eleven_multilingual_v2");

    /* A with-timestamps JSON reply carries no usage and changes nothing. */
    meter_init(&m, METER_EL_TTS);
    assert_int_equal(request(&m, "{\"text\":\"abc\",\"model_id\":\"\"}", &rw, &rw_len), 0);
    assert_string_equal(m.model, "eleven_multilingual_v2"); /* empty id = omitted */
    response(&m, "{\"audio_base64\":\"AAAA\",\"alignment\":{\"characters\":[\"a\",\"b\",\"c\"]},"
                 "\"usage\":{\"characters\":50}}");
    assert_false(sse(&m, "", "{\"text\":\"x\"}"));
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 3);
}

static void test_anthropic(void **state)
{
    (void)state;
    struct meter m;
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
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
        meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_false(sse(&m, "content_block_delta", TEXT_DELTA("\"123456789\"")));
    assert_false(sse(&m, "content_block_delta",
                     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                     "\"thinking_delta\",\"thinking\":\"abc\"}}"));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 1125);
    assert_int_equal(m.units.output_tokens, 3); /* ceil(12/4) */
    meter_init(&m, METER_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.output_tokens, 1);

    /* Nothing arrived: both sides estimated. */
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_ANTHROPIC);
    assert_false(sse(&m, "message_start", MSG_START));
    assert_false(sse(&m, "content_block_delta", TEXT_DELTA("\"12345678\"")));
    assert_false(sse(&m, "", "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}"));
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.input_tokens, 1125);
    assert_int_equal(m.units.output_tokens, 2);

    /* Garbage data never crashes nor counts. */
    meter_init(&m, METER_ANTHROPIC);
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
    meter_init(&m, METER_DG_LISTEN);
    const char *q = "smart_format=true&model=nova%2D3+x&model=base&punctuate=true";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "nova-3 x");
    meter_init(&m, METER_DG_LISTEN);
    q = "xmodel=a&model=&model=nova-2%ZZ";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "nova-2%ZZ"); /* a bad escape is kept */
    meter_init(&m, METER_DG_LISTEN);
    q = "language=en";
    meter_request_query(&m, q, strlen(q));
    meter_request_query(&m, NULL, 0);
    assert_string_equal(m.model, ""); /* no default is assumed */
    /* Only Deepgram reads the query. */
    meter_init(&m, METER_CHAT);
    q = "model=gpt-4o";
    meter_request_query(&m, q, strlen(q));
    assert_string_equal(m.model, "");

    /* The reply's metadata.duration is the usage (the metadata object
     * first, as Deepgram sends it, or anywhere). */
    unsigned char *wav = malloc(100000);
    assert_non_null(wav);
    size_t wav_len = make_wav(wav, 16000, 1, 16, 32000, 32000, false); /* 1 s */
    meter_init(&m, METER_DG_LISTEN);
    assert_int_equal(meter_request(&m, (const char *)wav, wav_len, "audio/wav", 9, &rw, &rw_len),
                     0);
    assert_null(rw);
    assert_int_equal(m.upload_audio_ms, 1000);
    response(&m, "{\"metadata\":{\"request_id\":\"r\",\"duration\":25.9335,\"channels\":1},"
                 "\"results\":{\"channels\":[{\"alternatives\":[{\"transcript\":\"hi\"}]}]}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 25934);

    meter_init(&m, METER_DG_LISTEN);
    response(&m, "{\"results\":{\"metadata\":{\"x\":1}},\"metadata\":{\"duration\":2}}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2000);

    /* No duration in the reply: the WAV's, estimated. */
    meter_init(&m, METER_DG_LISTEN);
    assert_int_equal(meter_request(&m, (const char *)wav, wav_len, "audio/wav", 9, &rw, &rw_len),
                     0);
    response(&m, "{\"request_id\":\"r\"}"); /* callback= mode */
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 1000);

    /* A {"url":...} body and no reply: zero, estimated. */
    meter_init(&m, METER_DG_LISTEN);
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
    meter_init(&m, METER_DG_SPEAK);
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
    meter_init(&m, METER_DG_SPEAK);
    assert_int_equal(request(&m, "{\"text\":\"Hello\"}", &rw, &rw_len), 0);
    header(&m, "DG-Model-Name", "aura-asteria-en\r");
    header(&m, "dg-char-count", "6");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.characters, 6);
    assert_string_equal(m.model, "aura-asteria-en");

    /* No text: estimated. */
    meter_init(&m, METER_DG_SPEAK);
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
    meter_init(&m, METER_CARTESIA_TTS);
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

    meter_init(&m, METER_CARTESIA_TTS);
    assert_int_equal(request(&m, "{\"model_id\":\"sonic-2\"}", &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    assert_int_equal(m.units.characters, 0);
}

static int64_t ssml(const char *doc, char *model, size_t model_size)
{
    struct meter m;
    meter_init(&m, METER_AZURE_TTS);
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
    meter_init(&m, METER_AZURE_TTS);
    assert_true(meter_finish(&m));
}

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
    meter_init(&m, METER_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n,
                                   "audio/wav; codecs=audio/pcm; samplerate=16000", 45, &rw,
                                   &rw_len),
                     0);
    assert_null(rw);
    response(&m, "{\"RecognitionStatus\":\"Success\",\"DisplayText\":\"Hi.\",\"Offset\":"
                 "3000000,\"Duration\":11000000}");
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2500);

    /* Ogg Opus: last granule (48 kHz) minus pre-skip. */
    unsigned char head[19] = "OpusHead\x01\x01";
    head[10] = 0x38; /* pre-skip 312 */
    head[11] = 0x01;
    n = ogg_page(buf, 0, 7, head, sizeof(head));
    n += ogg_page(buf + n, 0, 7, "OpusTags", 8);
    n += ogg_page(buf + n, 48000, 7, "audio1", 6);
    n += ogg_page(buf + n, 9999999, 8, "other stream", 12);
    n += ogg_page(buf + n, -1, 7, "no packet end", 13);
    n += ogg_page(buf + n, 312 + 96000, 7, "audio2", 6);
    meter_init(&m, METER_AZURE_STT);
    assert_int_equal(
        meter_request(&m, (const char *)buf, n, "audio/ogg; codecs=opus", 22, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 2000);
    /* A truncated last page: its granule is not reached. */
    meter_init(&m, METER_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n - 1, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 993); /* (48000 - 312) / 48 */

    /* Ogg Vorbis: granules at the stream's rate. */
    unsigned char vh[30] = "\x01vorbis";
    vh[11] = 0;
    vh[12] = 0x44; /* 44100 */
    vh[13] = 0xAC;
    n = ogg_page(buf, 0, 1, vh, sizeof(vh));
    n += ogg_page(buf + n, 44100 * 3, 1, "a", 1);
    meter_init(&m, METER_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, 3000);

    /* Another format (or an Ogg with no audio page): 0 and estimated. */
    static const struct {
        const char *body;
        size_t len;
    } unknown[] = {
        {"ID3\x03 mp3 data here", 18},
        {"OggS", 4},
    };
    for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
        meter_init(&m, METER_AZURE_STT);
        assert_int_equal(
            meter_request(&m, unknown[i].body, unknown[i].len, "audio/mpeg", 10, &rw, &rw_len), 0);
        assert_true(meter_finish(&m));
        assert_int_equal(m.units.audio_ms, 0);
    }
    n = ogg_page(buf, 0, 7, head, sizeof(head));
    meter_init(&m, METER_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    meter_init(&m, METER_AZURE_STT);
    n = ogg_page(buf, 0, 7, "Speex   ", 8);
    n += ogg_page(buf + n, 16000, 7, "a", 1);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_true(meter_finish(&m));
    free(buf);
}

/* meter_response_header looks only at the headers of its kind. */
static void test_response_header_kinds(void **state)
{
    (void)state;
    static const enum meter_kind kinds[] = {METER_NONE,      METER_CHAT,         METER_SPEECH,
                                            METER_ANTHROPIC, METER_CARTESIA_TTS, METER_AZURE_TTS,
                                            METER_DG_LISTEN};
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
    meter_init(&m, METER_EL_TTS);
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
        cmocka_unit_test(test_kind_for),
        cmocka_unit_test(test_elevenlabs),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_deepgram_listen),
        cmocka_unit_test(test_deepgram_speak),
        cmocka_unit_test(test_cartesia),
        cmocka_unit_test(test_azure_tts_ssml),
        cmocka_unit_test(test_azure_stt),
        cmocka_unit_test(test_response_header_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
