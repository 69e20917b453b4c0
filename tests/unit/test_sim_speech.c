/* test_sim_speech.c - the pure pieces of the simulated voice providers:
 * the Speech SDK socket framing and Azure's output format names
 * (sim_azure_proto.c), the audio clip generator, speech and transcript
 * arithmetic (sim_speech.c), Deepgram's encodings and word timings
 * (sim_deepgram.c). What the simulator writes is read back with the
 * proxy's own readers (audio.h, the Azure meter's frame parser), so the
 * two sides agree on every byte a meter counts. */
#include "common.h"

#include "audio.h"
#include "providers/azure_speech.h"
#include "sim_azure.h"
#include "sim_deepgram.h"
#include "sim_speech.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- Speech SDK framing ---------------------------------------------------- */

static int parse_str(bool text, const char *s, size_t len, struct sim_azure_msg *m)
{
    return sim_azure_msg_parse(text, (const uint8_t *)s, len, m);
}

static void test_text_frames(void **state)
{
    (void)state;
    struct sim_azure_msg m;
    /* As the SDK writes them: "Name: value" lines, a blank line, the body. */
    const char sdk[] = "Path: speech.context\r\nX-RequestId: 7338061444F44FD0A4B12B467A7DC6AC\r\n"
                       "X-Timestamp: 2026-12-06T14:12:18.691Z\r\n"
                       "Content-Type: application/json\r\n\r\n{\"phraseDetection\":{}}";
    assert_int_equal(parse_str(true, sdk, strlen(sdk), &m), 0);
    assert_string_equal(m.path, "speech.context");
    assert_string_equal(m.request_id, "7338061444F44FD0A4B12B467A7DC6AC");
    assert_string_equal(m.content_type, "application/json");
    assert_int_equal(m.body_len, strlen("{\"phraseDetection\":{}}"));
    assert_memory_equal(m.body, "{\"phraseDetection\":{}}", m.body_len);
    /* Names without regard to case, values trimmed, the path lower-cased,
     * no space after the colon (the Node mock's style). */
    const char loose[] = "path:Speech.Config \r\nx-requestid:  abc\t\r\n\r\n";
    assert_int_equal(parse_str(true, loose, strlen(loose), &m), 0);
    assert_string_equal(m.path, "speech.config");
    assert_string_equal(m.request_id, "abc");
    assert_int_equal(m.body_len, 0);
    /* No blank line: all headers, no body. */
    const char heads[] = "Path: telemetry\r\nX-RequestId: r1";
    assert_int_equal(parse_str(true, heads, strlen(heads), &m), 0);
    assert_string_equal(m.path, "telemetry");
    assert_string_equal(m.request_id, "r1");
    assert_int_equal(m.body_len, 0);
    /* A body holding CRLFs is the body: only the first blank line splits. */
    const char crlf[] = "Path: ssml\r\n\r\n<speak>\r\n\r\nhi</speak>";
    assert_int_equal(parse_str(true, crlf, strlen(crlf), &m), 0);
    assert_int_equal(m.body_len, strlen("<speak>\r\n\r\nhi</speak>"));
    /* A value too long for its field is cut, never overflowed. */
    char big[600];
    int n = snprintf(big, sizeof(big), "X-RequestId: %0400d\r\n\r\n", 7);
    assert_int_equal(parse_str(true, big, (size_t)n, &m), 0);
    assert_int_equal(strlen(m.request_id), SIM_AZURE_HDR_MAX - 1);
    /* Lines without a colon, empty names: ignored. */
    const char junk[] = "garbage\r\n: value\r\nPath: audio\r\n\r\n";
    assert_int_equal(parse_str(true, junk, strlen(junk), &m), 0);
    assert_string_equal(m.path, "audio");
    assert_string_equal(m.request_id, "");
}

static void test_binary_frames(void **state)
{
    (void)state;
    struct sim_azure_msg m;
    /* The SDK's audio message: 2-byte length, headers ending in CRLF, the
     * payload (here a WAV header, as each turn's first audio). */
    const char head[] = "Path: audio\r\nX-RequestId: R1\r\nContent-Type: audio/x-wav\r\n";
    uint8_t msg[256];
    size_t hl = strlen(head);
    msg[0] = (uint8_t)(hl >> 8);
    msg[1] = (uint8_t)hl;
    memcpy(msg + 2, head, hl);
    memcpy(msg + 2 + hl, "RIFFxxxx", 8);
    assert_int_equal(sim_azure_msg_parse(false, msg, 2 + hl + 8, &m), 0);
    assert_string_equal(m.path, "audio");
    assert_string_equal(m.request_id, "R1");
    assert_string_equal(m.content_type, "audio/x-wav");
    assert_int_equal(m.body_len, 8);
    assert_memory_equal(m.body, "RIFFxxxx", 8);
    /* An empty payload: the end of the audio. */
    assert_int_equal(sim_azure_msg_parse(false, msg, 2 + hl, &m), 0);
    assert_int_equal(m.body_len, 0);
    /* Shorter than its header length, or no length at all: refused. */
    assert_int_equal(sim_azure_msg_parse(false, msg, 2 + hl - 1, &m), -1);
    assert_int_equal(sim_azure_msg_parse(false, msg, 1, &m), -1);
    assert_int_equal(sim_azure_msg_parse(false, msg, 0, &m), -1);
    /* A zero header length: all payload. */
    uint8_t bare[] = {0, 0, 'a', 'b'};
    assert_int_equal(sim_azure_msg_parse(false, bare, sizeof(bare), &m), 0);
    assert_string_equal(m.path, "");
    assert_int_equal(m.body_len, 2);
}

static void test_built_frames(void **state)
{
    (void)state;
    struct sim_azure_msg m;
    size_t len = 0;
    /* now_ms 1234 is 1970-01-01T00:00:01.234Z. */
    char *t = sim_azure_text_msg("turn.start", "RID", 1234, "{\"a\":1}", &len);
    assert_non_null(t);
    assert_int_equal(len, strlen(t));
    assert_non_null(strstr(t, "X-Timestamp: 1970-01-01T00:00:01.234Z\r\n"));
    assert_int_equal(sim_azure_msg_parse(true, (uint8_t *)t, len, &m), 0);
    assert_string_equal(m.path, "turn.start");
    assert_string_equal(m.request_id, "RID");
    assert_int_equal(m.body_len, 7);
    assert_memory_equal(m.body, "{\"a\":1}", 7);
    free(t);

    uint8_t buf[600];
    size_t hl = sim_azure_binary_head("audio", "RID", "STREAM1", 0, buf, 512);
    assert_true(hl > 2);
    memset(buf + hl, 0x5a, 64);
    assert_int_equal(sim_azure_msg_parse(false, buf, hl + 64, &m), 0);
    assert_string_equal(m.path, "audio");
    assert_string_equal(m.request_id, "RID");
    assert_int_equal(m.body_len, 64);
    assert_non_null(memmem(buf, hl, "X-StreamId: STREAM1\r\n", 21));
    /* The proxy's meter of Speech SDK frames reads the same framing: it
     * finds exactly the payload (no WAV header here: estimated rate). */
    struct azure_frames f;
    memset(&f, 0, sizeof(f));
    azure_frames_feed(&f, buf, hl + 64, 0, true);
    assert_int_equal(f.audio_bytes, 64);
    /* No stream id: no such header. Too small a buffer: 0. */
    hl = sim_azure_binary_head("audio", "RID", NULL, 0, buf, 512);
    assert_null(memmem(buf, hl, "X-StreamId", 10));
    assert_int_equal(sim_azure_binary_head("audio", "RID", NULL, 0, buf, 40), 0);
    assert_int_equal(sim_azure_binary_head("audio", "RID", NULL, 0, buf, 2), 0);
}

/* ---- output formats ---------------------------------------------------------- */

static void expect_format(const char *name, enum sim_audio_codec codec, uint32_t rate,
                          uint32_t bitrate, bool wav)
{
    struct sim_audio_format f;
    if (sim_azure_output_format(name, &f) != 0)
        fail_msg("%s: refused", name);
    assert_int_equal(f.codec, codec);
    assert_int_equal(f.sample_rate, rate);
    assert_int_equal(f.bitrate, bitrate);
    assert_int_equal(f.wav, wav);
}

static void test_output_formats(void **state)
{
    (void)state;
    expect_format("riff-16khz-16bit-mono-pcm", SIM_AUDIO_PCM16, 16000, 0, true);
    expect_format("raw-24khz-16bit-mono-pcm", SIM_AUDIO_PCM16, 24000, 0, false);
    expect_format("riff-22050hz-16bit-mono-pcm", SIM_AUDIO_PCM16, 22050, 0, true);
    expect_format("raw-44100hz-16bit-mono-pcm", SIM_AUDIO_PCM16, 44100, 0, false);
    expect_format("riff-48khz-16bit-mono-pcm", SIM_AUDIO_PCM16, 48000, 0, true);
    expect_format("raw-8khz-8bit-mono-mulaw", SIM_AUDIO_MULAW, 8000, 0, false);
    expect_format("riff-8khz-8bit-mono-alaw", SIM_AUDIO_ALAW, 8000, 0, true);
    expect_format("audio-16khz-32kbitrate-mono-mp3", SIM_AUDIO_MP3, 16000, 32000, false);
    expect_format("audio-24khz-48kbitrate-mono-mp3", SIM_AUDIO_MP3, 24000, 48000, false);
    expect_format("audio-24khz-160kbitrate-mono-mp3", SIM_AUDIO_MP3, 24000, 160000, false);
    expect_format("audio-48khz-192kbitrate-mono-mp3", SIM_AUDIO_MP3, 48000, 192000, false);
    expect_format("RIFF-16KHZ-16BIT-MONO-PCM", SIM_AUDIO_PCM16, 16000, 0, true);
    static const char *const refused[] = {
        "ogg-24khz-16bit-mono-opus",        /* not generated */
        "webm-24khz-16bit-mono-opus",       /* not generated */
        "raw-24khz-16bit-mono-truesilk",    /* not generated */
        "riff-16khz-8bit-mono-mulaw",       /* Azure's G.711 is 8 kHz */
        "riff-16khz-8bit-mono-pcm",         /* 8-bit PCM: no such format */
        "riff-32khz-16bit-mono-pcm",        /* not a rate Azure names */
        "riff-16khz-16bit-stereo-pcm",      /* mono only */
        "audio-24khz-50kbitrate-mono-mp3",  /* not an MP3 bitrate */
        "audio-24khz-192kbitrate-mono-mp3", /* above MPEG-2's table */
        "audio-24khz-kbitrate-mono-mp3",
        "audio-24khz-48kbit-mono-mp3",
        "riff-16khz-16bit-mono-pcm-extra",
        "riff-16khz-16bit-mono",
        "",
    };
    struct sim_audio_format f;
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
        if (sim_azure_output_format(refused[i], &f) != -1)
            fail_msg("%s: accepted", refused[i]);
}

/* ---- the clip generator ------------------------------------------------------ */

/* The whole clip, written in pieces of piece_ms (0: all at once). */
static uint8_t *clip(const struct sim_audio_format *f, int64_t ms, int64_t piece_ms, size_t *len,
                     struct sim_audio_gen *g)
{
    sim_audio_gen_init(g, f, ms);
    size_t total = (size_t)sim_audio_gen_bytes(g);
    uint8_t *out = malloc(total + 1);
    assert_non_null(out);
    size_t n = 0;
    int64_t until = piece_ms > 0 ? piece_ms : INT64_MAX;
    /* Bounded: the clip ends by ms + piece_ms. */
    for (int guard = 0; !sim_audio_gen_done(g); guard++) {
        assert_true(guard < 100000);
        size_t want = sim_audio_gen_pending(g, until);
        size_t got = sim_audio_gen_write(g, until, out + n);
        assert_int_equal(got, want);
        n += got;
        assert_true(n <= total);
        until += piece_ms;
    }
    assert_int_equal(n, total);
    *len = n;
    return out;
}

static void test_pcm_clips(void **state)
{
    (void)state;
    struct sim_audio_gen g;
    size_t len, len2;
    struct sim_audio_format f = {.codec = SIM_AUDIO_PCM16, .sample_rate = 16000, .wav = true};
    assert_int_equal(sim_audio_format_check(&f), 0);
    uint8_t *a = clip(&f, 1000, 0, &len, &g);
    assert_int_equal(len, 44 + 32000);
    assert_int_equal(sim_audio_gen_ms(&g), 1000);
    /* The proxy's WAV reader: 16 kHz 16-bit mono, exactly 1 s. */
    struct audio_wav w;
    assert_int_equal(audio_wav_header(a, len, &w), 0);
    assert_int_equal(w.sample_rate, 16000);
    assert_int_equal(w.bits, 16);
    assert_int_equal(w.channels, 1);
    assert_int_equal(w.data_offset, 44);
    assert_int_equal(w.data_declared, 32000);
    assert_int_equal(audio_duration_ms(a, len), 1000);
    /* Pieces of 100 ms (the paced reply) make the same bytes. */
    uint8_t *b = clip(&f, 1000, SIM_SPEECH_CHUNK_MS, &len2, &g);
    assert_int_equal(len2, len);
    assert_memory_equal(a, b, len);
    /* A tone, not silence; sample 0 is 0. */
    assert_int_equal(a[44] | a[45], 0);
    bool loud = false;
    for (size_t i = 44; i + 1 < len && !loud; i += 2)
        loud = (int16_t)(a[i] | a[i + 1] << 8) > 4000;
    assert_true(loud);
    free(a);
    free(b);

    /* Raw 24 kHz: no header; 2.64 s (44 characters of SSML). */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_PCM16, .sample_rate = 24000};
    a = clip(&f, sim_speech_ms(44), 100, &len, &g);
    assert_int_equal(len, 2640 * 48);
    free(a);
    /* 22050 Hz: a sample does not fall on a millisecond; the clip is the
     * samples covering it, and the proxy reads that length. */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_PCM16, .sample_rate = 22050, .wav = true};
    a = clip(&f, 1001, 100, &len, &g);
    assert_int_equal(len, 44 + 2 * 22073);
    assert_int_equal(sim_audio_gen_ms(&g), 1002);
    assert_int_equal(audio_duration_ms(a, len), 1002);
    free(a);
    /* G.711 in WAV: one byte a sample; the proxy reads its length. The
     * tone starts at 0: mu-law 0xff, A-law 0xd5. */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_MULAW, .sample_rate = 8000, .wav = true};
    a = clip(&f, 500, 100, &len, &g);
    assert_int_equal(len, 44 + 4000);
    assert_int_equal(audio_duration_ms(a, len), 500);
    assert_int_equal(a[44], 0xff);
    free(a);
    f.codec = SIM_AUDIO_ALAW;
    a = clip(&f, 500, 0, &len, &g);
    assert_int_equal(audio_duration_ms(a, len), 500);
    assert_int_equal(a[44], 0xd5);
    free(a);
    /* An empty clip: just its header; nothing at all without one. */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_PCM16, .sample_rate = 16000, .wav = true};
    a = clip(&f, 0, 100, &len, &g);
    assert_int_equal(len, 44);
    free(a);
    f.wav = false;
    sim_audio_gen_init(&g, &f, 0);
    assert_true(sim_audio_gen_done(&g));
    assert_int_equal(sim_audio_gen_pending(&g, INT64_MAX), 0);
    /* Nothing is due before the clip starts. */
    sim_audio_gen_init(&g, &f, 1000);
    assert_int_equal(sim_audio_gen_pending(&g, 0), 0);
    assert_int_equal(sim_audio_gen_pending(&g, 1), 32);
    assert_int_equal(sim_audio_gen_pending(&g, 2000), 32000);
}

static void test_mp3_clips(void **state)
{
    (void)state;
    struct sim_audio_gen g;
    size_t len;
    /* MPEG-2 Layer III, 24 kHz, 48 kbit/s: 576 samples (24 ms) and 144
     * bytes a frame. */
    struct sim_audio_format f = {.codec = SIM_AUDIO_MP3, .sample_rate = 24000, .bitrate = 48000};
    assert_int_equal(sim_audio_format_check(&f), 0);
    uint8_t *a = clip(&f, 1000, 100, &len, &g);
    assert_int_equal(len, 42 * 144); /* ceil(1000 / 24) frames */
    assert_int_equal(sim_audio_gen_ms(&g), 1008);
    for (size_t i = 0; i < len; i += 144) {
        /* sync, MPEG-2, layer III, no CRC; bitrate index 6, 24 kHz; mono */
        assert_int_equal(a[i], 0xff);
        assert_int_equal(a[i + 1], 0xf3);
        assert_int_equal(a[i + 2], 6 << 4 | 1 << 2);
        assert_int_equal(a[i + 3], 0xc0);
        for (size_t k = 4; k < 144; k++)
            assert_int_equal(a[i + k], 0); /* silent: no side information, no data */
    }
    free(a);
    /* MPEG-1, 48 kHz, 192 kbit/s: 1152 samples (24 ms), 576 bytes. */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_MP3, .sample_rate = 48000, .bitrate = 192000};
    a = clip(&f, 240, 0, &len, &g);
    assert_int_equal(len, 10 * 576);
    assert_int_equal(a[1], 0xfb);
    assert_int_equal(a[2], 11 << 4 | 1 << 2);
    free(a);
    /* Deepgram's default, 22050 Hz at 48 kbit/s: 156 bytes (no padding). */
    f = (struct sim_audio_format){.codec = SIM_AUDIO_MP3, .sample_rate = 22050, .bitrate = 48000};
    a = clip(&f, 1860, 100, &len, &g);
    assert_int_equal(len, 72 * 156);
    assert_int_equal(a[2], 6 << 4 | 0 << 2);
    free(a);
    /* Not writable: a rate or bitrate MP3 has not, a WAV header on MP3, a
     * PCM rate out of range. */
    struct sim_audio_format bad[] = {
        {.codec = SIM_AUDIO_MP3, .sample_rate = 8000, .bitrate = 32000},
        {.codec = SIM_AUDIO_MP3, .sample_rate = 24000, .bitrate = 50000},
        {.codec = SIM_AUDIO_MP3, .sample_rate = 24000, .bitrate = 192000},
        {.codec = SIM_AUDIO_MP3, .sample_rate = 48000, .bitrate = 8000},
        {.codec = SIM_AUDIO_MP3, .sample_rate = 24000, .bitrate = 48000, .wav = true},
        {.codec = SIM_AUDIO_PCM16, .sample_rate = 4000},
        {.codec = SIM_AUDIO_PCM16, .sample_rate = 96000},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(sim_audio_format_check(&bad[i]), -1);
}

/* ---- speech and transcripts ------------------------------------------------ */

static void test_speech_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(sim_speech_ms(0), 0);
    assert_int_equal(sim_speech_ms(-3), 0);
    assert_int_equal(sim_speech_ms(1), SIM_SPEECH_MS_PER_CHAR);
    assert_int_equal(sim_speech_ms(1000), 60000);
    assert_int_equal(sim_transcript_words(0), 0);
    assert_int_equal(sim_transcript_words(-5), 0);
    assert_int_equal(sim_transcript_words(1), 1);
    assert_int_equal(sim_transcript_words(400), 1);
    assert_int_equal(sim_transcript_words(401), 2);
    assert_int_equal(sim_transcript_words(2000), 5);
    assert_int_equal(sim_transcript_words(60000), 150);
    assert_int_equal(
        sim_audio_bytes_per_sec(&(struct sim_audio_format){SIM_AUDIO_PCM16, 24000, 0, false}),
        48000);
    assert_int_equal(
        sim_audio_bytes_per_sec(&(struct sim_audio_format){SIM_AUDIO_MULAW, 8000, 0, true}), 8000);
    assert_int_equal(
        sim_audio_bytes_per_sec(&(struct sim_audio_format){SIM_AUDIO_MP3, 22050, 48000, false}),
        6000);
}

static void test_transcripts(void **state)
{
    (void)state;
    char *t = sim_transcript(0, 6, false);
    assert_string_equal(t, "Simulated replies come from the byok");
    free(t);
    /* From a later word: no leading space; punctuation as generated. */
    t = sim_transcript(5, 5, false);
    assert_string_equal(t, "byok simulator, not from a");
    free(t);
    /* Lexical: lower case, no punctuation. */
    t = sim_transcript(5, 6, true);
    assert_string_equal(t, "byok simulator not from a model");
    free(t);
    t = sim_transcript(3, 0, true);
    assert_string_equal(t, "");
    free(t);
    /* n words whatever the start (the generated text wraps around). */
    for (size_t first = 0; first < 70; first += 9)
        for (size_t n = 1; n < 50; n += 7) {
            t = sim_transcript(first, n, first % 2 == 0);
            assert_int_equal(sim_count_words(t, strlen(t)), (int64_t)n);
            assert_true(t[0] != ' ');
            free(t);
        }
    char w[8];
    sim_transcript_word(6, false, w, sizeof(w));
    assert_string_equal(w, "simulat"); /* cut to fit */
    sim_transcript_word(6, true, w, sizeof(w));
    assert_string_equal(w, "simulat");
}

/* ---- Deepgram ------------------------------------------------------------- */

static void test_deepgram_pieces(void **state)
{
    (void)state;
    uint64_t bps = 99;
    assert_int_equal(sim_deepgram_encoding("", "", "", &bps), 0);
    assert_int_equal(bps, 0);
    assert_int_equal(sim_deepgram_encoding("linear16", "16000", "", &bps), 0);
    assert_int_equal(bps, 32000);
    assert_int_equal(sim_deepgram_encoding("linear16", "48000", "2", &bps), 0);
    assert_int_equal(bps, 192000);
    assert_int_equal(sim_deepgram_encoding("mulaw", "8000", "1", &bps), 0);
    assert_int_equal(bps, 8000);
    assert_int_equal(sim_deepgram_encoding("linear32", "16000", "1", &bps), 0);
    assert_int_equal(bps, 64000);
    /* Known but not fixed-rate: accepted, no byte rate. */
    assert_int_equal(sim_deepgram_encoding("opus", "48000", "", &bps), 0);
    assert_int_equal(bps, 0);
    /* An encoding needs a sample rate; unknown names and silly figures are
     * refused. */
    assert_int_equal(sim_deepgram_encoding("linear16", "", "", &bps), -1);
    assert_int_equal(sim_deepgram_encoding("mp3", "16000", "", &bps), -1);
    assert_int_equal(sim_deepgram_encoding("linear16", "16000", "0", &bps), -1);
    assert_int_equal(sim_deepgram_encoding("linear16", "16000", "99", &bps), -1);
    assert_int_equal(sim_deepgram_encoding("linear16", "1000", "", &bps), -1);

    /* Words spread evenly over the span, the last ending at its end. */
    json_t *alt = sim_deepgram_alternative(0, 5, 2000, 4000, true);
    assert_string_equal(json_string_value(json_object_get(alt, "transcript")),
                        "Simulated replies come from the");
    json_t *words = json_object_get(alt, "words");
    assert_int_equal(json_array_size(words), 5);
    json_t *w0 = json_array_get(words, 0), *w4 = json_array_get(words, 4);
    assert_string_equal(json_string_value(json_object_get(w0, "word")), "simulated");
    assert_string_equal(json_string_value(json_object_get(w0, "punctuated_word")), "Simulated");
    assert_true(json_real_value(json_object_get(w0, "start")) == 2.0);
    assert_true(json_real_value(json_object_get(w0, "end")) == 2.4);
    assert_true(json_real_value(json_object_get(w4, "end")) == 4.0);
    char *s = sim_deepgram_dump(alt);
    assert_non_null(strstr(s, "\"end\":2.4,")); /* seconds written short */
    free(s);
    /* Without punctuation: lexical transcript, no punctuated_word; none. */
    alt = sim_deepgram_alternative(5, 2, 0, 800, false);
    assert_string_equal(json_string_value(json_object_get(alt, "transcript")), "byok simulator");
    assert_null(
        json_object_get(json_array_get(json_object_get(alt, "words"), 0), "punctuated_word"));
    json_decref(alt);
    alt = sim_deepgram_alternative(0, 0, 0, 0, true);
    assert_string_equal(json_string_value(json_object_get(alt, "transcript")), "");
    assert_int_equal(json_array_size(json_object_get(alt, "words")), 0);
    json_decref(alt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_frames),       cmocka_unit_test(test_binary_frames),
        cmocka_unit_test(test_built_frames),      cmocka_unit_test(test_output_formats),
        cmocka_unit_test(test_pcm_clips),         cmocka_unit_test(test_mp3_clips),
        cmocka_unit_test(test_speech_arithmetic), cmocka_unit_test(test_transcripts),
        cmocka_unit_test(test_deepgram_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
