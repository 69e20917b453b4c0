/* sim_audio.c - generated audio of the simulated voice providers
 * (sim_audio.h): speech timing, audio token rates, and decodable audio in
 * the providers' formats, rendered piece by piece.
 *
 *   sample codecs  a 220 Hz tone with a 3 Hz envelope ("syllables"), as
 *                  PCM16, float, mu-law or A-law, raw or in a WAV whose
 *                  header declares the whole length up front
 *   MP3            silent Layer III frames (zero side info), padding bits
 *                  set as the bitrate needs (44.1 kHz)
 *   Ogg Opus       OpusHead, OpusTags, then pages of 1-byte 20 ms packets
 *                  (TOC only: DTX, decoded as silence), granules and CRCs
 *   AAC            ADTS frames of 1024 samples around a silent single-
 *                  channel element
 *   FLAC           STREAMINFO, then 4096-sample frames with one constant
 *                  subframe, CRC-8 and CRC-16
 *
 * Lengths are exact in samples for the sample codecs and FLAC; framed
 * codecs end on a whole frame (up to one frame longer). */
#include "common.h"
#include "sim_audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define OPUS_RATE      48000
#define OPUS_PACKET    960 /* 20 ms at 48 kHz */
#define OPUS_PRESKIP   312
#define OPUS_TOC_DTX   0xF8 /* config 31 (CELT FB 20 ms), mono, one frame */
#define OGG_SERIAL     0x5157u
#define OGG_PAGE_MAX   255 /* packets (one lacing value each) */
#define AAC_FRAME      1024
#define FLAC_BLOCK     4096
#define TONE_HZ        220.0
#define ENVELOPE_HZ    3.0
#define TONE_AMP       6000.0
#define RENDER_SAMPLES 4096 /* samples converted per step */

/* ---- speech timing and tokens ------------------------------------------------ */

int64_t sim_audio_speech_ms(int64_t code_points, double speed)
{
    if (code_points <= 0)
        return 0;
    if (!(speed > 0.0))
        speed = 1.0;
    double ms = (double)code_points * 1000.0 / SIM_AUDIO_CHARS_PER_S / speed;
    return (int64_t)ceil(ms - 1e-9);
}

int64_t sim_audio_transcript_words(int64_t ms)
{
    return ms <= 0 ? 1 : MAX((int64_t)1, (ms + SIM_AUDIO_WORD_MS - 1) / SIM_AUDIO_WORD_MS);
}

int64_t sim_audio_user_tokens(int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 99) / 100;
}

int64_t sim_audio_assistant_tokens(int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 49) / 50;
}

/* ---- formats ----------------------------------------------------------------- */

/* Layer III: the MPEG version of a rate, its index and bitrate table. */
struct mp3_kind {
    uint8_t version_bits; /* 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5 */
    uint8_t rate_index;
    uint32_t spf;         /* samples per frame */
    uint32_t coef;        /* frame bytes = coef * bitrate / rate */
    uint32_t side;        /* mono side information bytes */
    const uint16_t *kbps; /* by bitrate index 1..14 */
};

static const uint16_t mp3_kbps_v1[15] = {0,   32,  40,  48,  56,  64,  80, 96,
                                         112, 128, 160, 192, 224, 256, 320};
static const uint16_t mp3_kbps_v2[15] = {0,  8,  16, 24,  32,  40,  48, 56,
                                         64, 80, 96, 112, 128, 144, 160};

static bool mp3_kind(uint32_t rate, struct mp3_kind *k)
{
    static const struct {
        uint32_t rate;
        uint8_t version, index;
    } rates[] = {
        {44100, 3, 0}, {48000, 3, 1}, {32000, 3, 2}, {22050, 2, 0}, {24000, 2, 1},
        {16000, 2, 2}, {11025, 0, 0}, {12000, 0, 1}, {8000, 0, 2},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rates); i++)
        if (rates[i].rate == rate) {
            bool v1 = rates[i].version == 3;
            *k =
                (struct mp3_kind){rates[i].version, rates[i].index, v1 ? 1152 : 576,
                                  v1 ? 144 : 72,    v1 ? 17 : 9,    v1 ? mp3_kbps_v1 : mp3_kbps_v2};
            return true;
        }
    return false;
}

static int mp3_bitrate_index(const struct mp3_kind *k, uint32_t bitrate)
{
    for (int i = 1; i < 15; i++)
        if ((uint32_t)k->kbps[i] * 1000 == bitrate)
            return i;
    return -1;
}

static int aac_rate_index(uint32_t rate)
{
    static const uint32_t rates[] = {96000, 88200, 64000, 48000, 44100, 32000,
                                     24000, 22050, 16000, 12000, 11025, 8000};
    for (size_t i = 0; i < ARRAY_SIZE(rates); i++)
        if (rates[i] == rate)
            return (int)i;
    return -1;
}

/* FLAC's 4-bit sample rate code; 0 (rate in STREAMINFO) for the others. */
static uint8_t flac_rate_code(uint32_t rate)
{
    static const struct {
        uint32_t rate;
        uint8_t code;
    } codes[] = {{8000, 4},  {16000, 5}, {22050, 6},  {24000, 7},
                 {32000, 8}, {44100, 9}, {48000, 10}, {96000, 11}};
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        if (codes[i].rate == rate)
            return codes[i].code;
    return 0;
}

int sim_audio_format_set(struct sim_audio_format *f, enum sim_audio_codec codec, bool wav,
                         uint32_t sample_rate, uint32_t bitrate)
{
    static const char *const mimes[] = {
        [SIM_AUDIO_PCM16] = "audio/pcm",   [SIM_AUDIO_F32] = "audio/pcm",
        [SIM_AUDIO_MULAW] = "audio/basic", [SIM_AUDIO_ALAW] = "audio/x-alaw-basic",
        [SIM_AUDIO_MP3] = "audio/mpeg",    [SIM_AUDIO_OPUS] = "audio/ogg",
        [SIM_AUDIO_AAC] = "audio/aac",     [SIM_AUDIO_FLAC] = "audio/flac",
    };
    struct mp3_kind k;
    bool sample_codec = codec <= SIM_AUDIO_ALAW;
    if (sample_rate < 8000 || sample_rate > 192000 || (wav && !sample_codec))
        return -1;
    if (codec == SIM_AUDIO_MP3 &&
        (!mp3_kind(sample_rate, &k) || mp3_bitrate_index(&k, bitrate) < 0))
        return -1;
    if (codec == SIM_AUDIO_AAC && aac_rate_index(sample_rate) < 0)
        return -1;
    if (codec == SIM_AUDIO_FLAC && sample_rate > 655350)
        return -1;
    *f = (struct sim_audio_format){codec, wav, sample_rate, codec == SIM_AUDIO_MP3 ? bitrate : 0,
                                   wav ? "audio/wav" : mimes[codec]};
    return 0;
}

/* ---- sample codecs ------------------------------------------------------------- */

/* The tone from sample n on: two rotating phasors (a multiplication per
 * sample instead of two sin() calls), set exactly at each render call so
 * they never drift far. */
struct tone {
    double re, im, step_re, step_im;         /* the 220 Hz carrier */
    double env_re, env_im, env_sre, env_sim; /* the 3 Hz envelope */
};

static void tone_at(struct tone *t, uint64_t n, uint32_t rate)
{
    double a = 2.0 * M_PI * TONE_HZ * (double)(n % rate) / rate;
    double e = 2.0 * M_PI * ENVELOPE_HZ * (double)(n % rate) / rate;
    *t = (struct tone){
        cos(a), sin(a), cos(2.0 * M_PI * TONE_HZ / rate),     sin(2.0 * M_PI * TONE_HZ / rate),
        cos(e), sin(e), cos(2.0 * M_PI * ENVELOPE_HZ / rate), sin(2.0 * M_PI * ENVELOPE_HZ / rate)};
}

static int16_t tone_next(struct tone *t)
{
    double v = TONE_AMP * (0.55 + 0.45 * t->env_im) * t->im;
    double re = t->re * t->step_re - t->im * t->step_im;
    t->im = t->re * t->step_im + t->im * t->step_re;
    t->re = re;
    re = t->env_re * t->env_sre - t->env_im * t->env_sim;
    t->env_im = t->env_re * t->env_sim + t->env_im * t->env_sre;
    t->env_re = re;
    return (int16_t)lrint(v);
}

/* The first i with v <= table[i], else 8 (G.711 segment search). */
static int g711_segment(int v, const int table[8])
{
    for (int i = 0; i < 8; i++)
        if (v <= table[i])
            return i;
    return 8;
}

/* G.711 mu-law and A-law of a 16-bit sample (the CCITT reference). */
static uint8_t ulaw(int16_t sample)
{
    static const int ends[8] = {0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF};
    int v = sample >> 2, mask = 0xFF;
    if (v < 0) {
        v = -v;
        mask = 0x7F;
    }
    v = MIN(v, 8159) + (0x84 >> 2);
    int seg = g711_segment(v, ends);
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask);
}

static uint8_t alaw(int16_t sample)
{
    static const int ends[8] = {0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF};
    int v = sample >> 3, mask = 0xD5;
    if (v < 0) {
        v = -v - 1;
        mask = 0x55;
    }
    int seg = g711_segment(v, ends);
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    int a = (seg << 4) | ((seg < 2 ? v >> 1 : v >> seg) & 0xF);
    return (uint8_t)(a ^ mask);
}

static size_t sample_bytes(enum sim_audio_codec c)
{
    return c == SIM_AUDIO_PCM16 ? 2 : c == SIM_AUDIO_F32 ? 4 : 1;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* RIFF/WAVE header declaring total samples. PCM16 has the 16-byte format
 * chunk; float and G.711 the 18-byte one and a fact chunk, as the format
 * wants. */
static int wav_header(const struct sim_audio_out *o, struct evbuffer *out)
{
    uint8_t h[58];
    enum sim_audio_codec c = o->f.codec;
    bool pcm = c == SIM_AUDIO_PCM16;
    uint32_t bs = (uint32_t)sample_bytes(c);
    uint32_t tag = pcm ? 1 : c == SIM_AUDIO_F32 ? 3 : c == SIM_AUDIO_ALAW ? 6 : 7;
    uint32_t fmt_size = pcm ? 16 : 18;
    uint64_t data = o->total * bs;
    size_t n = 0;
    memcpy(h, "RIFF", 4);
    put_le(h + 4, MIN(UINT32_MAX, 4 + 8 + fmt_size + (pcm ? 0 : 12) + 8 + data), 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    put_le(h + 16, fmt_size, 4);
    put_le(h + 20, tag, 2);
    put_le(h + 22, 1, 2);
    put_le(h + 24, o->f.sample_rate, 4);
    put_le(h + 28, (uint64_t)o->f.sample_rate * bs, 4);
    put_le(h + 32, bs, 2);
    put_le(h + 34, bs * 8, 2);
    n = 36;
    if (!pcm) {
        put_le(h + n, 0, 2); /* cbSize */
        memcpy(h + n + 2, "fact", 4);
        put_le(h + n + 6, 4, 4);
        put_le(h + n + 10, MIN(UINT32_MAX, o->total), 4);
        n += 14;
    }
    memcpy(h + n, "data", 4);
    put_le(h + n + 4, MIN(UINT32_MAX, data), 4);
    n += 8;
    return evbuffer_add(out, h, n);
}

static int render_samples(struct sim_audio_out *o, uint64_t upto, struct evbuffer *out)
{
    uint8_t buf[RENDER_SAMPLES * 4];
    size_t bs = sample_bytes(o->f.codec);
    struct tone t;
    tone_at(&t, o->done, o->f.sample_rate);
    while (o->done < upto) {
        size_t n = (size_t)MIN((uint64_t)RENDER_SAMPLES, upto - o->done);
        for (size_t i = 0; i < n; i++) {
            int16_t s = tone_next(&t);
            switch (o->f.codec) {
            case SIM_AUDIO_PCM16:
                put_le(buf + 2 * i, (uint16_t)s, 2);
                break;
            case SIM_AUDIO_F32: {
                float v = (float)s / 32768.0f;
                uint32_t bits;
                memcpy(&bits, &v, sizeof(bits));
                put_le(buf + 4 * i, bits, 4);
                break;
            }
            case SIM_AUDIO_MULAW:
                buf[i] = ulaw(s);
                break;
            default:
                buf[i] = alaw(s);
                break;
            }
        }
        if (evbuffer_add(out, buf, n * bs) == -1)
            return -1;
        o->done += n;
    }
    return 0;
}

/* ---- MP3 ----------------------------------------------------------------------- */

static int render_mp3(struct sim_audio_out *o, uint64_t upto, struct evbuffer *out)
{
    struct mp3_kind k;
    if (!mp3_kind(o->f.sample_rate, &k))
        return -1;
    int bi = mp3_bitrate_index(&k, o->f.bitrate);
    uint64_t per = (uint64_t)k.coef * o->f.bitrate; /* frame bytes x rate */
    uint64_t base = per / o->f.sample_rate;
    uint8_t frame[1500];
    while (o->frames * k.spf < upto && o->frames * k.spf < o->total) {
        uint64_t f = o->frames;
        uint64_t size = (f + 1) * per / o->f.sample_rate - f * per / o->f.sample_rate;
        if (size > sizeof(frame) || bi < 0)
            return -1;
        memset(frame, 0, (size_t)size);
        frame[0] = 0xFF;
        frame[1] = (uint8_t)(0xE0 | (k.version_bits << 3) | (1 << 1) | 1); /* Layer III, no CRC */
        frame[2] = (uint8_t)((bi << 4) | (k.rate_index << 2) | ((size > base) << 1));
        frame[3] = 0xC4; /* mono, original */
        if (evbuffer_add(out, frame, (size_t)size) == -1)
            return -1;
        o->frames++;
    }
    o->done = MIN(o->total, o->frames * k.spf);
    return 0;
}

/* ---- Ogg Opus ------------------------------------------------------------------ */

static uint32_t ogg_crc(const uint8_t *d, size_t n)
{
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c ^= (uint32_t)d[i] << 24;
        for (int b = 0; b < 8; b++)
            c = (c & 0x80000000u) ? (c << 1) ^ 0x04C11DB7u : c << 1;
    }
    return c;
}

/* One page of n packets of the given lengths (each < 255) and data. */
static int ogg_page(struct sim_audio_out *o, uint8_t type, uint64_t granule, const uint8_t *lens,
                    size_t n, const uint8_t *data, size_t data_len, struct evbuffer *out)
{
    uint8_t page[27 + OGG_PAGE_MAX + OGG_PAGE_MAX * 64];
    if (n > OGG_PAGE_MAX || 27 + n + data_len > sizeof(page))
        return -1;
    memcpy(page, "OggS", 4);
    page[4] = 0;
    page[5] = type;
    put_le(page + 6, granule, 8);
    put_le(page + 14, OGG_SERIAL, 4);
    put_le(page + 18, o->ogg_page++, 4);
    put_le(page + 22, 0, 4);
    page[26] = (uint8_t)n;
    memcpy(page + 27, lens, n);
    memcpy(page + 27 + n, data, data_len);
    size_t len = 27 + n + data_len;
    put_le(page + 22, ogg_crc(page, len), 4);
    return evbuffer_add(out, page, len);
}

static uint64_t opus_packets(uint64_t total)
{
    return (total + OPUS_PRESKIP + OPUS_PACKET - 1) / OPUS_PACKET;
}

static int render_opus(struct sim_audio_out *o, uint64_t upto, struct evbuffer *out)
{
    if (!o->started) {
        uint8_t head[19] = {'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 1};
        put_le(head + 10, OPUS_PRESKIP, 2);
        put_le(head + 12, o->f.sample_rate, 4);
        static const uint8_t tags[] = {'O', 'p', 'u', 's', 'T', 'a', 'g', 's', 8, 0, 0, 0,
                                       'b', 'y', 'o', 'k', '-', 's', 'i', 'm', 0, 0, 0, 0};
        uint8_t l1 = sizeof(head), l2 = sizeof(tags);
        if (ogg_page(o, 0x02, 0, &l1, 1, head, sizeof(head), out) == -1 ||
            ogg_page(o, 0x00, 0, &l2, 1, tags, sizeof(tags), out) == -1)
            return -1;
    }
    uint64_t last = opus_packets(o->total);
    uint8_t lens[OGG_PAGE_MAX], data[OGG_PAGE_MAX];
    memset(lens, 1, sizeof(lens));
    memset(data, OPUS_TOC_DTX, sizeof(data));
    for (;;) {
        uint64_t want = upto >= o->total ? last : MIN(last, (upto + OPUS_PRESKIP) / OPUS_PACKET);
        if (o->frames >= want)
            break;
        size_t n = (size_t)MIN((uint64_t)OGG_PAGE_MAX, want - o->frames);
        o->frames += n;
        uint8_t type = o->frames == last ? 0x04 : 0x00;
        if (ogg_page(o, type, o->frames * OPUS_PACKET, lens, n, data, n, out) == -1)
            return -1;
    }
    o->done = MIN(o->total, o->frames * OPUS_PACKET);
    return 0;
}

/* ---- AAC (ADTS) ------------------------------------------------------------------ */

static int render_aac(struct sim_audio_out *o, uint64_t upto, struct evbuffer *out)
{
    /* A single-channel element with max_sfb 0 (no spectral data), then
     * END: a frame of silence. */
    static const uint8_t silent[] = {0x01, 0x40, 0x20, 0x07};
    size_t len = 7 + sizeof(silent);
    int sf = aac_rate_index(o->f.sample_rate);
    if (sf < 0)
        return -1;
    uint8_t frame[7 + sizeof(silent)] = {
        0xFF,
        0xF1,                              /* MPEG-4, no CRC */
        (uint8_t)((1 << 6) | (sf << 2)),   /* AAC LC, rate */
        (uint8_t)((1 << 6) | (len >> 11)), /* one channel */
        (uint8_t)(len >> 3),
        (uint8_t)(((len & 7) << 5) | 0x1F), /* buffer fullness 0x7FF: VBR */
        0xFC,
    };
    memcpy(frame + 7, silent, sizeof(silent));
    while (o->frames * AAC_FRAME < upto && o->frames * AAC_FRAME < o->total) {
        if (evbuffer_add(out, frame, len) == -1)
            return -1;
        o->frames++;
    }
    o->done = MIN(o->total, o->frames * AAC_FRAME);
    return 0;
}

/* ---- FLAC ------------------------------------------------------------------------- */

static uint8_t crc8(const uint8_t *d, size_t n)
{
    uint8_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int b = 0; b < 8; b++)
            c = (uint8_t)((c & 0x80) ? (c << 1) ^ 0x07 : c << 1);
    }
    return c;
}

static uint16_t crc16(const uint8_t *d, size_t n)
{
    uint16_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c ^= (uint16_t)(d[i] << 8);
        for (int b = 0; b < 8; b++)
            c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x8005 : c << 1);
    }
    return c;
}

/* FLAC's UTF-8-like coding of a frame number; returns its length. */
static size_t flac_number(uint8_t *p, uint64_t v)
{
    if (v < 0x80) {
        p[0] = (uint8_t)v;
        return 1;
    }
    size_t n = v < 0x800 ? 2 : v < 0x10000 ? 3 : v < 0x200000 ? 4 : v < 0x4000000 ? 5 : 6;
    static const uint8_t lead[7] = {0, 0, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC};
    for (size_t i = n - 1; i > 0; i--) {
        p[i] = (uint8_t)(0x80 | (v & 0x3F));
        v >>= 6;
    }
    p[0] = (uint8_t)(lead[n] | v);
    return n;
}

static int render_flac(struct sim_audio_out *o, uint64_t upto, struct evbuffer *out)
{
    if (!o->started) {
        uint8_t h[4 + 4 + 34] = {'f', 'L', 'a', 'C', 0x80, 0, 0, 34};
        uint8_t *si = h + 8;
        put_be(si, FLAC_BLOCK, 2);
        put_be(si + 2, FLAC_BLOCK, 2);
        /* frame sizes unknown (0), then rate:20 channels-1:3 bps-1:5 samples:36 */
        put_be(si + 10,
               ((uint64_t)o->f.sample_rate << 44) | ((uint64_t)15 << 36) |
                   (o->total & UINT64_C(0xFFFFFFFFF)),
               8);
        if (evbuffer_add(out, h, sizeof(h)) == -1)
            return -1;
    }
    uint8_t rate_code = flac_rate_code(o->f.sample_rate);
    while (o->frames * FLAC_BLOCK < upto && o->frames * FLAC_BLOCK < o->total) {
        uint64_t start = o->frames * FLAC_BLOCK;
        uint64_t block = MIN((uint64_t)FLAC_BLOCK, o->total - start);
        uint8_t f[32];
        size_t n = 0;
        f[n++] = 0xFF;
        f[n++] = 0xF8;                            /* sync, fixed block size */
        f[n++] = (uint8_t)((7 << 4) | rate_code); /* block size: 16 bits at the end */
        f[n++] = (4 << 1);                        /* mono, 16 bits per sample */
        n += flac_number(f + n, o->frames);
        put_be(f + n, block - 1, 2);
        n += 2;
        f[n] = crc8(f, n);
        n++;
        f[n++] = 0x00; /* CONSTANT subframe, no wasted bits */
        f[n++] = 0x00; /* its value: 0 */
        f[n++] = 0x00;
        put_be(f + n, crc16(f, n), 2);
        n += 2;
        if (evbuffer_add(out, f, n) == -1)
            return -1;
        o->frames++;
    }
    o->done = MIN(o->total, o->frames * FLAC_BLOCK);
    return 0;
}

/* ---- rendering --------------------------------------------------------------------- */

static uint64_t samples_at(const struct sim_audio_format *f, int64_t ms)
{
    uint64_t rate = f->codec == SIM_AUDIO_OPUS ? OPUS_RATE : f->sample_rate;
    return ms <= 0 ? 0 : (uint64_t)ms * rate / 1000;
}

void sim_audio_out_init(struct sim_audio_out *o, const struct sim_audio_format *f, int64_t total_ms)
{
    memset(o, 0, sizeof(*o));
    o->f = *f;
    o->total = samples_at(f, total_ms);
}

int sim_audio_render(struct sim_audio_out *o, int64_t upto_ms, struct evbuffer *out)
{
    uint64_t upto = MIN(o->total, samples_at(&o->f, upto_ms));
    int rc;
    switch (o->f.codec) {
    case SIM_AUDIO_MP3:
        rc = render_mp3(o, upto, out);
        break;
    case SIM_AUDIO_OPUS:
        rc = render_opus(o, upto, out);
        break;
    case SIM_AUDIO_AAC:
        rc = render_aac(o, upto, out);
        break;
    case SIM_AUDIO_FLAC:
        rc = render_flac(o, upto, out);
        break;
    default:
        rc = !o->started && o->f.wav ? wav_header(o, out) : 0;
        if (rc == 0)
            rc = render_samples(o, upto, out);
        break;
    }
    o->started = true;
    return rc;
}

bool sim_audio_finished(const struct sim_audio_out *o)
{
    if (o->f.codec == SIM_AUDIO_OPUS)
        return o->started && o->frames >= opus_packets(o->total);
    return o->started && o->done >= o->total;
}

/* ---- voice activity ------------------------------------------------------------------ */

#define VAD_FRAME_MS 10

void sim_vad_init(struct sim_vad *v, uint32_t rate, double threshold, int64_t prefix_ms,
                  int64_t silence_ms)
{
    memset(v, 0, sizeof(*v));
    v->rate = rate > 0 ? rate : 24000;
    v->threshold = (int64_t)(MAX(threshold, 0.0) * 1600.0);
    v->prefix_ms = MAX(prefix_ms, (int64_t)0);
    v->silence_ms = MAX(silence_ms, (int64_t)0);
}

enum sim_vad_event sim_vad_feed(struct sim_vad *v, const int16_t *s, size_t n, size_t *used,
                                int64_t *at_ms)
{
    uint32_t frame = MAX(v->rate * VAD_FRAME_MS / 1000, 1u);
    for (size_t i = 0; i < n; i++) {
        v->acc += s[i] < 0 ? -(int64_t)s[i] : s[i];
        v->samples++;
        if (++v->in_frame < frame)
            continue;
        bool speech = v->acc / (int64_t)frame > v->threshold;
        int64_t end_ms = (int64_t)(v->samples * 1000 / v->rate);
        v->acc = 0;
        v->in_frame = 0;
        *used = i + 1;
        if (speech && !v->speaking) {
            v->speaking = true;
            v->last_speech_ms = end_ms;
            *at_ms = MAX((int64_t)0, end_ms - VAD_FRAME_MS - v->prefix_ms);
            return SIM_VAD_STARTED;
        }
        if (speech) {
            v->last_speech_ms = end_ms;
        } else if (v->speaking && end_ms - v->last_speech_ms >= v->silence_ms) {
            v->speaking = false;
            *at_ms = v->last_speech_ms;
            return SIM_VAD_STOPPED;
        }
    }
    *used = n;
    return SIM_VAD_NONE;
}

int16_t sim_audio_ulaw_decode(uint8_t u)
{
    u = (uint8_t)~u;
    int t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    return (int16_t)((u & 0x80) ? 0x84 - t : t - 0x84);
}

int16_t sim_audio_alaw_decode(uint8_t a)
{
    a ^= 0x55;
    int t = (a & 0x0F) << 4, seg = (a & 0x70) >> 4;
    if (seg == 0)
        t += 8;
    else if (seg == 1)
        t += 0x108;
    else
        t = (t + 0x108) << (seg - 1);
    return (int16_t)((a & 0x80) ? t : -t);
}

/* ---- base64 ------------------------------------------------------------------------- */

char *sim_audio_base64(const void *d, size_t len)
{
    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    char *s = malloc(4 * ((len + 2) / 3) + 1);
    if (s != NULL)
        EVP_EncodeBlock((unsigned char *)s, d, (int)len);
    return s;
}

int64_t sim_audio_base64_len(const char *s, size_t len)
{
    if (len % 4 != 0)
        return -1;
    size_t pad = 0;
    if (len >= 1 && s[len - 1] == '=')
        pad++;
    if (len >= 2 && s[len - 2] == '=')
        pad++;
    return (int64_t)(len / 4 * 3 - pad);
}
