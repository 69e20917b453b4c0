/* test_sim_audio.c - generated audio of the simulated voice providers
 * (sim/sim_audio.c): speech timing and token arithmetic, and every format
 * read back independently - WAV through the proxy's own reader (audio.h),
 * Ogg Opus through it too with every page's CRC recomputed, MP3 / ADTS /
 * FLAC frames walked header by header (sizes, CRCs, sample counts) - and
 * a rendering in paced pieces byte-identical to one in a single call; the
 * energy voice activity detector and G.711 decoding. The .c is included to
 * reach its G.711 encoders. */
#include "common.h"

#include "../../sim/sim_audio.c"

#include "audio.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_timing(void **state)
{
    (void)state;
    /* 15 characters a second: 30 characters are 2 s of speech. */
    assert_int_equal(sim_audio_speech_ms(30, 1.0), 2000);
    assert_int_equal(sim_audio_speech_ms(30, 2.0), 1000);
    assert_int_equal(sim_audio_speech_ms(30, 0.5), 4000);
    assert_int_equal(sim_audio_speech_ms(1, 1.0), 67); /* 66.7 rounded up */
    assert_int_equal(sim_audio_speech_ms(0, 1.0), 0);
    assert_int_equal(sim_audio_speech_ms(15, 0.0), 1000); /* a nonsense speed: normal */
    /* One transcript word per 400 ms, at least one. */
    assert_int_equal(sim_audio_transcript_words(0), 1);
    assert_int_equal(sim_audio_transcript_words(400), 1);
    assert_int_equal(sim_audio_transcript_words(401), 2);
    assert_int_equal(sim_audio_transcript_words(3000), 8);
    /* User audio 1 token / 100 ms, assistant 1 / 50 ms, rounded up. */
    assert_int_equal(sim_audio_user_tokens(2500), 25);
    assert_int_equal(sim_audio_user_tokens(2501), 26);
    assert_int_equal(sim_audio_user_tokens(0), 0);
    assert_int_equal(sim_audio_assistant_tokens(2000), 40);
    assert_int_equal(sim_audio_assistant_tokens(1), 1);
}

static void test_g711(void **state)
{
    (void)state;
    /* The CCITT reference values. */
    assert_int_equal(ulaw(0), 0xFF);
    assert_int_equal(ulaw(32767), 0x80);
    assert_int_equal(ulaw(-32768), 0x00);
    assert_int_equal(alaw(0), 0xD5);
    assert_int_equal(alaw(32767), 0xAA);
    assert_int_equal(alaw(-32768), 0x2A);
    /* Monotonic in the sample's magnitude (mu-law codes invert). */
    for (int v = 0; v < 32000; v += 500)
        assert_true((uint8_t)~ulaw((int16_t)(v + 500)) >= (uint8_t)~ulaw((int16_t)v));
}

/* The whole rendering of ms of f: in one call, or in pieces of step ms. */
static struct evbuffer *render(const struct sim_audio_format *f, int64_t ms, int64_t step)
{
    struct sim_audio_out o;
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    sim_audio_out_init(&o, f, ms);
    /* (A framed codec may finish early: its last frame starts before the end.) */
    for (int64_t at = step; step > 0 && at < ms; at += step)
        assert_int_equal(sim_audio_render(&o, at, b), 0);
    assert_int_equal(sim_audio_render(&o, ms, b), 0);
    assert_true(sim_audio_finished(&o));
    return b;
}

static struct sim_audio_format fmt(enum sim_audio_codec c, bool wav, uint32_t rate, uint32_t br)
{
    struct sim_audio_format f;
    assert_int_equal(sim_audio_format_set(&f, c, wav, rate, br), 0);
    return f;
}

/* Pieces and one call give the same bytes. */
static void same_in_pieces(const struct sim_audio_format *f, int64_t ms)
{
    struct evbuffer *a = render(f, ms, 0), *b = render(f, ms, 100);
    size_t n = evbuffer_get_length(a);
    assert_int_equal(evbuffer_get_length(b), n);
    assert_memory_equal(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), n);
    evbuffer_free(a);
    evbuffer_free(b);
}

static void test_samples_and_wav(void **state)
{
    (void)state;
    /* Raw PCM16 at 24 kHz: exactly 2 bytes per sample, a tone (not silence). */
    struct sim_audio_format f = fmt(SIM_AUDIO_PCM16, false, 24000, 0);
    struct evbuffer *b = render(&f, 2000, 100);
    assert_int_equal(evbuffer_get_length(b), 96000);
    const uint8_t *d = evbuffer_pullup(b, -1);
    int peak = 0;
    for (size_t i = 0; i < 96000; i += 2)
        peak = MAX(peak, abs((int16_t)(d[i] | d[i + 1] << 8)));
    assert_true(peak > 1000 && peak <= 6000);
    evbuffer_free(b);
    same_in_pieces(&f, 2350);
    /* Every sample codec in a WAV: the proxy's reader gives the length. */
    static const enum sim_audio_codec codecs[] = {SIM_AUDIO_PCM16, SIM_AUDIO_F32, SIM_AUDIO_MULAW,
                                                  SIM_AUDIO_ALAW};
    static const uint32_t rates[] = {8000, 16000, 22050, 24000, 44100};
    for (size_t c = 0; c < ARRAY_SIZE(codecs); c++)
        for (size_t r = 0; r < ARRAY_SIZE(rates); r++) {
            f = fmt(codecs[c], true, rates[r], 0);
            assert_string_equal(f.mime, "audio/wav");
            b = render(&f, 1500, 100);
            size_t len = evbuffer_get_length(b);
            assert_int_equal(audio_wav_duration_ms(evbuffer_pullup(b, -1), len), 1500);
            struct audio_wav w;
            assert_int_equal(audio_wav_header(evbuffer_pullup(b, -1), len, &w), 0);
            assert_int_equal(w.sample_rate, rates[r]);
            assert_int_equal(w.data_declared, len - w.data_offset);
            evbuffer_free(b);
            same_in_pieces(&f, 1234);
        }
    /* G.711 raw: one byte a sample. */
    f = fmt(SIM_AUDIO_MULAW, false, 8000, 0);
    b = render(&f, 1000, 0);
    assert_int_equal(evbuffer_get_length(b), 8000);
    evbuffer_free(b);
}

/* Walks MP3 frames: every header valid, sizes as the bitrate says. */
static void test_mp3(void **state)
{
    (void)state;
    static const struct {
        uint32_t rate, br, spf;
    } cases[] = {{44100, 128000, 1152},
                 {22050, 32000, 576},
                 {24000, 64000, 576},
                 {48000, 192000, 1152},
                 {8000, 8000, 576}};
    for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
        struct sim_audio_format f = fmt(SIM_AUDIO_MP3, false, cases[c].rate, cases[c].br);
        struct evbuffer *b = render(&f, 3000, 100);
        size_t len = evbuffer_get_length(b), at = 0, frames = 0;
        const uint8_t *d = evbuffer_pullup(b, -1);
        uint32_t coef = cases[c].spf == 1152 ? 144 : 72;
        while (at < len) {
            assert_true(len - at >= 4);
            assert_int_equal(d[at], 0xFF);
            assert_int_equal(d[at + 1] & 0xE0, 0xE0);
            assert_int_equal((d[at + 1] >> 1) & 3, 1); /* Layer III */
            int pad = (d[at + 2] >> 1) & 1;
            size_t size = coef * cases[c].br / cases[c].rate + (size_t)pad;
            at += size;
            frames++;
        }
        assert_int_equal(at, len);
        uint64_t samples = (uint64_t)cases[c].rate * 3;
        assert_true(frames * cases[c].spf >= samples &&
                    frames * cases[c].spf < samples + cases[c].spf);
        evbuffer_free(b);
        same_in_pieces(&f, 2222);
    }
    struct sim_audio_format f;
    assert_int_equal(sim_audio_format_set(&f, SIM_AUDIO_MP3, false, 44100, 100000), -1);
    assert_int_equal(sim_audio_format_set(&f, SIM_AUDIO_MP3, false, 12345, 64000), -1);
    assert_int_equal(sim_audio_format_set(&f, SIM_AUDIO_MP3, true, 44100, 128000), -1);
}

static void test_opus(void **state)
{
    (void)state;
    struct sim_audio_format f = fmt(SIM_AUDIO_OPUS, false, 24000, 0);
    for (int64_t ms = 0; ms <= 12000; ms += 2999) {
        struct evbuffer *b = render(&f, ms, 100);
        size_t len = evbuffer_get_length(b);
        uint8_t *d = evbuffer_pullup(b, -1);
        /* The proxy's reader: packets' durations minus the pre-skip. */
        int64_t got = audio_ogg_duration_ms(d, len);
        assert_true(got >= ms && got < ms + 20);
        /* Every page's CRC, and the last page ends the stream. */
        size_t at = 0, pages = 0;
        uint8_t last_type = 0;
        while (at < len) {
            assert_memory_equal(d + at, "OggS", 4);
            size_t n = d[at + 26], body = 0;
            for (size_t i = 0; i < n; i++)
                body += d[at + 27 + i];
            size_t plen = 27 + n + body;
            uint32_t crc =
                d[at + 22] | d[at + 23] << 8 | d[at + 24] << 16 | (uint32_t)d[at + 25] << 24;
            memset(d + at + 22, 0, 4);
            assert_int_equal(ogg_crc(d + at, plen), crc);
            last_type = d[at + 5];
            at += plen;
            pages++;
        }
        assert_int_equal(at, len);
        assert_true(pages >= 3);
        assert_int_equal(last_type, 0x04);
        evbuffer_free(b);
        /* (Pieces make more, shorter pages: the bytes differ, the audio not.) */
    }
}

static void test_aac(void **state)
{
    (void)state;
    struct sim_audio_format f = fmt(SIM_AUDIO_AAC, false, 24000, 0);
    struct evbuffer *b = render(&f, 2000, 100);
    size_t len = evbuffer_get_length(b), at = 0, frames = 0;
    const uint8_t *d = evbuffer_pullup(b, -1);
    while (at < len) {
        assert_int_equal(d[at], 0xFF);
        assert_int_equal(d[at + 1], 0xF1);
        assert_int_equal((d[at + 2] >> 2) & 0xF, 6); /* 24 kHz */
        size_t fl = (size_t)(d[at + 3] & 3) << 11 | (size_t)d[at + 4] << 3 | d[at + 5] >> 5;
        assert_int_equal(fl, 11);
        at += fl;
        frames++;
    }
    assert_int_equal(at, len);
    assert_int_equal(frames, (48000 + 1023) / 1024);
    evbuffer_free(b);
    struct sim_audio_format g;
    assert_int_equal(sim_audio_format_set(&g, SIM_AUDIO_AAC, false, 23000, 0), -1);
}

static void test_flac(void **state)
{
    (void)state;
    struct sim_audio_format f = fmt(SIM_AUDIO_FLAC, false, 24000, 0);
    struct evbuffer *b = render(&f, 2345, 100);
    size_t len = evbuffer_get_length(b);
    const uint8_t *d = evbuffer_pullup(b, -1);
    assert_memory_equal(d, "fLaC", 4);
    assert_int_equal(d[4], 0x80); /* the last metadata block: STREAMINFO */
    uint64_t si = 0;
    for (int i = 0; i < 8; i++)
        si = si << 8 | d[8 + 10 + i];
    assert_int_equal(si >> 44, 24000);
    assert_int_equal(si & UINT64_C(0xFFFFFFFFF), 24000 * 2345 / 1000);
    size_t at = 42;
    uint64_t samples = 0, frames = 0;
    while (at < len) {
        assert_int_equal(d[at], 0xFF);
        assert_int_equal(d[at + 1], 0xF8);
        size_t h = 4;
        /* The frame number: one byte below 128 frames, else a UTF-8-like lead. */
        h += d[at + 4] < 0x80 ? 1 : d[at + 4] < 0xE0 ? 2 : 3;
        uint64_t block = ((uint64_t)d[at + h] << 8 | d[at + h + 1]) + 1;
        h += 2;
        assert_int_equal(crc8(d + at, h), d[at + h]);
        size_t flen = h + 1 + 3 + 2;
        assert_int_equal(crc16(d + at, flen - 2),
                         (uint16_t)(d[at + flen - 2] << 8 | d[at + flen - 1]));
        samples += block;
        frames++;
        at += flen;
    }
    assert_int_equal(at, len);
    assert_int_equal(samples, 24000 * 2345 / 1000);
    assert_int_equal(frames, (samples + 4095) / 4096);
    evbuffer_free(b);
    /* Frame numbers past 127 take two bytes. */
    b = render(&f, 30000, 1000);
    assert_true(evbuffer_get_length(b) > 42);
    evbuffer_free(b);
}

/* The detector on a tone and on silence, in audio time. */
static void test_vad(void **state)
{
    (void)state;
    struct sim_audio_format f = fmt(SIM_AUDIO_PCM16, false, 24000, 0);
    struct evbuffer *b = render(&f, 1000, 0);
    size_t n = evbuffer_get_length(b) / 2;
    int16_t *tone = malloc(n * sizeof(*tone)), *quiet = calloc(24000, sizeof(*quiet));
    assert_non_null(tone);
    assert_non_null(quiet);
    memcpy(tone, evbuffer_pullup(b, -1), n * 2);
    evbuffer_free(b);
    struct sim_vad v;
    sim_vad_init(&v, 24000, 0.5, 300, 500);
    size_t used = 0;
    int64_t at = -1;
    /* Speech from the first frame: reported at 0 (the prefix is clamped). */
    assert_int_equal(sim_vad_feed(&v, tone, n, &used, &at), SIM_VAD_STARTED);
    assert_int_equal(at, 0);
    assert_int_equal(used, 240);
    /* The rest of the tone: no event (its envelope's dips are short). */
    assert_int_equal(sim_vad_feed(&v, tone + used, n - used, &used, &at), SIM_VAD_NONE);
    /* 500 ms of silence after the last speech frame: stopped at its end. */
    assert_int_equal(sim_vad_feed(&v, quiet, 24000, &used, &at), SIM_VAD_STOPPED);
    assert_true(at >= 950 && at <= 1000);
    assert_true(used >= 500 * 24 - 240 && used <= 500 * 24 + 240);
    assert_int_equal(sim_vad_feed(&v, quiet + used, 24000 - used, &used, &at), SIM_VAD_NONE);
    /* Quiet noise never starts speech. */
    for (size_t i = 0; i < 24000; i++)
        quiet[i] = (int16_t)((i % 7) * 30 - 90);
    sim_vad_init(&v, 24000, 0.5, 300, 500);
    assert_int_equal(sim_vad_feed(&v, quiet, 24000, &used, &at), SIM_VAD_NONE);
    /* A later start is reported prefix_padding_ms early. */
    assert_int_equal(sim_vad_feed(&v, tone, n, &used, &at), SIM_VAD_STARTED);
    assert_int_equal(at, 1000 - 300);
    free(tone);
    free(quiet);
    /* G.711 decoding inverts encoding within the quantization step. */
    for (int x = -32000; x <= 32000; x += 1234) {
        assert_true(abs(sim_audio_ulaw_decode(ulaw((int16_t)x)) - x) <= abs(x) / 16 + 8);
        assert_true(abs(sim_audio_alaw_decode(alaw((int16_t)x)) - x) <= abs(x) / 16 + 16);
    }
}

static void test_base64(void **state)
{
    (void)state;
    char *s = sim_audio_base64("abcde", 5);
    assert_string_equal(s, "YWJjZGU=");
    assert_int_equal(sim_audio_base64_len(s, strlen(s)), 5);
    free(s);
    assert_int_equal(sim_audio_base64_len("YWJj", 4), 3);
    assert_int_equal(sim_audio_base64_len("YQ==", 4), 1);
    assert_int_equal(sim_audio_base64_len("", 0), 0);
    assert_int_equal(sim_audio_base64_len("YWJ", 3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_g711),
        cmocka_unit_test(test_samples_and_wav),
        cmocka_unit_test(test_mp3),
        cmocka_unit_test(test_opus),
        cmocka_unit_test(test_aac),
        cmocka_unit_test(test_flac),
        cmocka_unit_test(test_vad),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
