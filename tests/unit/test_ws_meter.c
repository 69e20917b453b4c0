/* test_ws_meter.c - unit tests of the WebSocket meters (struct
 * ws_meter_ops), reached as the data plane reaches them: the socket
 * endpoint of an upgrade request. Which endpoints are sockets; OpenAI
 * Realtime (units, estimates of a cut response), ElevenLabs stream-input,
 * Deepgram listen and speak, Azure Speech (framed audio, SSML), Cartesia. */
#include "common.h"

#include "audio.h"
#include "meter.h"
#include "meter_test.h"
#include "providers/azure_speech.h"
#include "route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The WebSocket meter of a served socket endpoint (GET upgrade). */
static const struct provider_endpoint *ws_endpoint(const char *path)
{
    const struct provider_endpoint *ep = endpoint("GET", path, true);
    if (ep == NULL || ep->ws == NULL)
        fail_msg("GET %s (upgrade): not a metered socket endpoint", path);
    return ep;
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
    ws_meter_text(&m, true, "Path: ssml\r\n\r\n<speak>frag</speak>", 33, false);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_endpoints),
        /* Each provider's socket meter. */
        cmocka_unit_test(test_ws_openai_realtime),
        cmocka_unit_test(test_ws_elevenlabs),
        cmocka_unit_test(test_ws_deepgram),
        cmocka_unit_test(test_azure_frames),
        cmocka_unit_test(test_ws_azure_tts),
        cmocka_unit_test(test_ws_cartesia),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
