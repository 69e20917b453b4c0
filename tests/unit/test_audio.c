/* test_audio.c - unit tests of the one WAV and Ogg (Opus, Vorbis) reader
 * (audio.h): durations from the real format and bytes, never the header's
 * word (byte rates, granules); WAV chunks, RF64, extensible and other
 * codecs; Opus TOC durations and pre-skip; junk between Ogg pages and
 * chained streams. Two tests also feed the bytes through the upload meters
 * (Azure STT, Deepgram listen) to check that what is billed is not
 * shortened. Builders in meter_test.h. */
#include "common.h"

#include "audio.h"
#include "meter.h"
#include "meter_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
    /* Demuxers skip to the next capture pattern: so does the reader. */
    assert_int_equal(audio_ogg_duration_ms(buf, n), full);
    /* Junk between every page, and at the end. */
    unsigned char *junky = malloc(200000);
    assert_non_null(junky);
    size_t jn = opus_head(junky, 7, 312);
    for (int i = 0; i < 500; i++) {
        struct opkt p = {celt, sizeof(celt)};
        memcpy(junky + jn, "Ogg!", 4); /* almost a page */
        jn += 4;
        jn += ogg_page_packets(junky + jn, 0, 0, 7, &p, 1, false);
    }
    memcpy(junky + jn, "OggS\0", 5);
    jn += 5;
    assert_int_equal(audio_ogg_duration_ms(junky, jn), full);
    free(junky);
    /* Through the Azure STT meter: the whole audio, exact. */
    struct meter m;
    char *rw = NULL;
    size_t rw_len;
    meter_init(&m, OPS_AZURE_STT);
    assert_int_equal(meter_request(&m, (const char *)buf, n, "audio/ogg", 9, &rw, &rw_len), 0);
    assert_false(meter_finish(&m));
    assert_int_equal(m.units.audio_ms, full);
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
    assert_int_equal(audio_ogg_duration_ms(buf, n), 10020); /* both streams */
    /* A stream that is not audio (no OpusHead) grouped in: its pages are
     * not counted. */
    size_t s3 = n;
    n += ogg_page(buf + n, 0, 3, "fishead\0", 8);
    buf[s3 + 5] = 2; /* BOS */
    for (int i = 0; i < 50; i++)
        n += ogg_page_packets(buf + n, 0, 0, 3, &p, 1, false);
    assert_int_equal(audio_ogg_duration_ms(buf, n), 10020);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_duration),
        cmocka_unit_test(test_wav_forged_byte_rate),
        cmocka_unit_test(test_wav_chunks),
        cmocka_unit_test(test_ogg_opus_toc),
        cmocka_unit_test(test_ogg_junk_between_pages),
        cmocka_unit_test(test_ogg_chained_streams),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
