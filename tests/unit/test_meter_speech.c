/* test_meter_speech.c - unit tests of the REST meters of the speech lines
 * (tts, stt), reached through their served endpoints as in test_meter.c:
 * OpenAI speech and transcriptions (multipart uploads, reported or read
 * durations, estimates), ElevenLabs, Deepgram listen and speak, Cartesia,
 * Azure Speech (SSML, uploaded WAV and Ogg); which reply headers each meter
 * reads. */
#include "common.h"

#include "meter.h"
#include "meter_test.h"
#include "providers/azure_speech.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
        cmocka_unit_test(test_speech),
        cmocka_unit_test(test_transcription_multipart),
        cmocka_unit_test(test_transcription_json_usage),
        cmocka_unit_test(test_elevenlabs),
        cmocka_unit_test(test_deepgram_listen),
        cmocka_unit_test(test_cartesia),
        cmocka_unit_test(test_azure_tts_ssml),
        cmocka_unit_test(test_azure_stt),
        cmocka_unit_test(test_response_header_kinds),
        cmocka_unit_test(test_deepgram_speak),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
