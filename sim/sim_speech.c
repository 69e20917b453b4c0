/* sim_speech.c - what simulated voice providers say and hear
 * (sim_speech.h): formats, the clip generator, speech and transcript
 * arithmetic, transcript text. Pure.
 *
 * MP3 frames are silent and valid: a frame header, then zeroed side
 * information (no main data, no scale factors: every granule decodes to
 * zero), frame after frame without padding, so each frame's length is what
 * its header says and any decoder plays the clip for its length. */
#include "common.h"
#include "sim_provider.h"
#include "sim_speech.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TONE_HZ        440
#define TONE_AMPLITUDE 8000.0

/* Layer III bitrates (kbit/s) by bitrate index 1..14: MPEG-1, then
 * MPEG-2/2.5. */
static const uint16_t mp3_rates_v1[14] = {32,  40,  48,  56,  64,  80,  96,
                                          112, 128, 160, 192, 224, 256, 320};
static const uint16_t mp3_rates_v2[14] = {8,  16, 24, 32,  40,  48,  56,
                                          64, 80, 96, 112, 128, 144, 160};

static bool mp3_v1(uint32_t sample_rate)
{
    return sample_rate >= 32000;
}

/* The sample-rate index of a frame header, -1 for a rate MP3 has not. */
static int mp3_rate_index(uint32_t sample_rate)
{
    switch (sample_rate) {
    case 44100:
    case 22050:
        return 0;
    case 48000:
    case 24000:
        return 1;
    case 32000:
    case 16000:
        return 2;
    default:
        return -1;
    }
}

/* The bitrate index of a frame header, -1 for a bitrate the table has not. */
static int mp3_bitrate_index(uint32_t sample_rate, uint32_t bitrate)
{
    const uint16_t *t = mp3_v1(sample_rate) ? mp3_rates_v1 : mp3_rates_v2;
    for (int i = 0; i < 14; i++)
        if ((uint32_t)t[i] * 1000 == bitrate)
            return i + 1;
    return -1;
}

/* Bytes of one frame, no padding. */
static uint64_t mp3_frame_len(const struct sim_audio_format *f)
{
    return (uint64_t)(mp3_v1(f->sample_rate) ? 144 : 72) * f->bitrate / f->sample_rate;
}

int sim_audio_format_check(const struct sim_audio_format *f)
{
    switch (f->codec) {
    case SIM_AUDIO_PCM16:
    case SIM_AUDIO_MULAW:
    case SIM_AUDIO_ALAW:
        return f->sample_rate >= 8000 && f->sample_rate <= 48000 ? 0 : -1;
    case SIM_AUDIO_MP3:
        return !f->wav && mp3_rate_index(f->sample_rate) >= 0 &&
                       mp3_bitrate_index(f->sample_rate, f->bitrate) > 0
                   ? 0
                   : -1;
    }
    return -1;
}

uint64_t sim_audio_bytes_per_sec(const struct sim_audio_format *f)
{
    switch (f->codec) {
    case SIM_AUDIO_PCM16:
        return (uint64_t)f->sample_rate * 2;
    case SIM_AUDIO_MULAW:
    case SIM_AUDIO_ALAW:
        return f->sample_rate;
    case SIM_AUDIO_MP3:
        return f->bitrate / 8;
    }
    return 0;
}

const char *sim_audio_mime(const struct sim_audio_format *f)
{
    if (f->codec == SIM_AUDIO_MP3)
        return "audio/mpeg";
    if (f->wav)
        return "audio/wav";
    switch (f->codec) {
    case SIM_AUDIO_MULAW:
        return "audio/basic";
    case SIM_AUDIO_ALAW:
        return "audio/x-alaw-basic";
    default:
        return "audio/pcm";
    }
}

int64_t sim_speech_ms(int64_t characters)
{
    return characters > 0 ? characters * SIM_SPEECH_MS_PER_CHAR : 0;
}

int64_t sim_transcript_words(int64_t audio_ms)
{
    if (audio_ms <= 0)
        return 0;
    return (audio_ms + SIM_SPEECH_MS_PER_WORD - 1) / SIM_SPEECH_MS_PER_WORD;
}

void sim_transcript_word(size_t i, bool lexical, char *out, size_t out_size)
{
    const char *w = sim_word(i);
    size_t n = 0;
    while (*w == ' ')
        w++;
    for (; *w && n + 1 < out_size; w++) {
        unsigned char c = (unsigned char)*w;
        if (!lexical)
            out[n++] = (char)c;
        else if (isalnum(c) || c == '\'' || c == '-')
            out[n++] = (char)tolower(c);
    }
    out[n] = '\0';
}

char *sim_transcript(size_t first, size_t n, bool lexical)
{
    size_t len = 0;
    for (size_t i = first; i < first + n; i++)
        len += strlen(sim_word(i)) + 1;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t at = 0;
    for (size_t i = first; i < first + n; i++) {
        if (at > 0)
            out[at++] = ' ';
        sim_transcript_word(i, lexical, out + at, len + 1 - at);
        at += strlen(out + at);
    }
    out[at] = '\0';
    return out;
}

static void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, v & 0xffff);
    put_le16(p + 2, v >> 16);
}

void sim_wav_header(const struct sim_audio_format *f, uint32_t data_bytes,
                    uint8_t out[SIM_WAV_HEADER_LEN])
{
    uint16_t bits = f->codec == SIM_AUDIO_PCM16 ? 16 : 8;
    uint16_t tag = f->codec == SIM_AUDIO_MULAW ? 7 : f->codec == SIM_AUDIO_ALAW ? 6 : 1;
    memcpy(out, "RIFF", 4);
    put_le32(out + 4, data_bytes > UINT32_MAX - 36 ? UINT32_MAX : 36 + data_bytes);
    memcpy(out + 8, "WAVEfmt ", 8);
    put_le32(out + 16, 16);
    put_le16(out + 20, tag);
    put_le16(out + 22, 1); /* mono */
    put_le32(out + 24, f->sample_rate);
    put_le32(out + 28, f->sample_rate * (bits / 8u));
    put_le16(out + 32, bits / 8u);
    put_le16(out + 34, bits);
    memcpy(out + 36, "data", 4);
    put_le32(out + 40, data_bytes);
}

/* ---- G.711 (ITU-T G.711, as in the classic Sun reference code) ------------ */

static uint8_t linear_to_ulaw(int16_t pcm)
{
    int v = pcm;
    int sign = v < 0 ? 0x80 : 0;
    if (sign)
        v = -v;
    if (v > 32635)
        v = 32635;
    v += 0x84;
    int exponent = 7;
    for (int mask = 0x4000; (v & mask) == 0 && exponent > 0; mask >>= 1)
        exponent--;
    int mantissa = (v >> (exponent + 3)) & 0x0f;
    return (uint8_t) ~(sign | (exponent << 4) | mantissa);
}

static uint8_t linear_to_alaw(int16_t pcm)
{
    int v = pcm;
    int sign = v >= 0 ? 0x80 : 0;
    if (!sign)
        v = -v - 1;
    if (v > 32767)
        v = 32767;
    int out;
    if (v >= 256) {
        int exponent = 7;
        for (int mask = 0x4000; (v & mask) == 0 && exponent > 1; mask >>= 1)
            exponent--;
        out = (exponent << 4) | ((v >> (exponent + 3)) & 0x0f);
    } else {
        out = v >> 4;
    }
    return (uint8_t)((out | sign) ^ 0x55);
}

/* ---- the generator -------------------------------------------------------- */

static uint64_t unit_bytes(const struct sim_audio_gen *g)
{
    switch (g->f.codec) {
    case SIM_AUDIO_PCM16:
        return 2;
    case SIM_AUDIO_MP3:
        return mp3_frame_len(&g->f);
    default:
        return 1;
    }
}

void sim_audio_gen_init(struct sim_audio_gen *g, const struct sim_audio_format *f, int64_t audio_ms)
{
    memset(g, 0, sizeof(*g));
    g->f = *f;
    g->unit_samples = f->codec != SIM_AUDIO_MP3 ? 1 : mp3_v1(f->sample_rate) ? 1152 : 576;
    g->header = f->wav && f->codec != SIM_AUDIO_MP3;
    if (audio_ms <= 0)
        return;
    uint64_t samples = ((uint64_t)audio_ms * f->sample_rate + 999) / 1000;
    g->total = (samples + g->unit_samples - 1) / g->unit_samples;
}

int64_t sim_audio_gen_ms(const struct sim_audio_gen *g)
{
    uint64_t samples = g->total * g->unit_samples;
    return (int64_t)((samples * 1000 + g->f.sample_rate - 1) / g->f.sample_rate);
}

uint64_t sim_audio_gen_bytes(const struct sim_audio_gen *g)
{
    uint64_t header = g->f.wav && g->f.codec != SIM_AUDIO_MP3 ? SIM_WAV_HEADER_LEN : 0;
    return header + g->total * unit_bytes(g);
}

/* Units of the clip due by until_ms. */
static uint64_t units_due(const struct sim_audio_gen *g, int64_t until_ms)
{
    if (until_ms <= 0)
        return 0;
    if (until_ms >= sim_audio_gen_ms(g))
        return g->total;
    uint64_t samples = ((uint64_t)until_ms * g->f.sample_rate + 999) / 1000;
    return MIN(g->total, (samples + g->unit_samples - 1) / g->unit_samples);
}

size_t sim_audio_gen_pending(const struct sim_audio_gen *g, int64_t until_ms)
{
    uint64_t due = units_due(g, until_ms);
    uint64_t units = due > g->done ? due - g->done : 0;
    return (size_t)((g->header ? SIM_WAV_HEADER_LEN : 0) + units * unit_bytes(g));
}

/* Sample n of the tone; the waveform repeats every second (440 whole
 * cycles), so the phase is taken within the second. */
static int16_t tone(uint64_t n, uint32_t rate)
{
    double phase = 2.0 * M_PI * TONE_HZ * (double)(n % rate) / (double)rate;
    return (int16_t)lrint(TONE_AMPLITUDE * sin(phase));
}

size_t sim_audio_gen_write(struct sim_audio_gen *g, int64_t until_ms, uint8_t *out)
{
    size_t n = 0;
    if (g->header) {
        uint64_t data = g->total * unit_bytes(g);
        sim_wav_header(&g->f, data > UINT32_MAX ? UINT32_MAX : (uint32_t)data, out);
        n = SIM_WAV_HEADER_LEN;
        g->header = false;
    }
    uint64_t due = units_due(g, until_ms);
    if (g->f.codec == SIM_AUDIO_MP3) {
        size_t len = (size_t)mp3_frame_len(&g->f);
        uint8_t b1 = mp3_v1(g->f.sample_rate) ? 0xfb : 0xf3; /* sync, version, layer III, no CRC */
        uint8_t b2 = (uint8_t)(mp3_bitrate_index(g->f.sample_rate, g->f.bitrate) << 4 |
                               mp3_rate_index(g->f.sample_rate) << 2);
        for (; g->done < due; g->done++) {
            memset(out + n, 0, len);
            out[n] = 0xff;
            out[n + 1] = b1;
            out[n + 2] = b2;
            out[n + 3] = 0xc0; /* mono */
            n += len;
        }
        return n;
    }
    for (; g->done < due; g->done++) {
        int16_t s = tone(g->done, g->f.sample_rate);
        switch (g->f.codec) {
        case SIM_AUDIO_MULAW:
            out[n++] = linear_to_ulaw(s);
            break;
        case SIM_AUDIO_ALAW:
            out[n++] = linear_to_alaw(s);
            break;
        default:
            put_le16(out + n, (uint16_t)s);
            n += 2;
            break;
        }
    }
    return n;
}

bool sim_audio_gen_done(const struct sim_audio_gen *g)
{
    return !g->header && g->done >= g->total;
}
