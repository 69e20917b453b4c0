/* audio.c - duration of uploaded audio from its real format (see audio.h). */
#include "common.h"
#include "audio.h"

#include <string.h>

#define WAV_FORMAT_PCM        0x0001
#define WAV_FORMAT_FLOAT      0x0003
#define WAV_FORMAT_ALAW       0x0006
#define WAV_FORMAT_MULAW      0x0007
#define WAV_FORMAT_EXTENSIBLE 0xFFFE
#define OPUS_RATE             48000
#define OPUS_PACKET_MAX       5760 /* 120 ms at 48 kHz: the longest packet (RFC 6716 §3.2.5) */

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

int64_t audio_bytes_ms(uint64_t bytes, uint64_t bytes_per_sec)
{
    if (bytes_per_sec == 0)
        return 0;
    if (bytes > UINT64_MAX / 1000)
        return INT64_MAX;
    uint64_t ms = (bytes * 1000 + bytes_per_sec - 1) / bytes_per_sec;
    return ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
}

/* --- WAV -------------------------------------------------------------------- */

static bool pcm_like(uint16_t format)
{
    return format == WAV_FORMAT_PCM || format == WAV_FORMAT_FLOAT || format == WAV_FORMAT_ALAW ||
           format == WAV_FORMAT_MULAW;
}

static void wav_fmt(const uint8_t *b, uint32_t size, size_t remaining, struct audio_wav *out)
{
    out->format = le16(b);
    out->channels = le16(b + 2);
    out->sample_rate = le32(b + 4);
    out->bits = le16(b + 14);
    if (out->format == WAV_FORMAT_EXTENSIBLE && size >= 40 && remaining >= 40)
        out->format = le16(b + 24); /* the sub-format GUID starts with the tag */
    out->bytes_per_sec = 0;
    bool bits_ok =
        out->bits == 8 || out->bits == 16 || out->bits == 24 || out->bits == 32 || out->bits == 64;
    if (pcm_like(out->format) && bits_ok && out->sample_rate > 0 && out->sample_rate <= 768000 &&
        out->channels > 0 && out->channels <= 64)
        out->bytes_per_sec = (uint64_t)out->sample_rate * out->channels * out->bits / 8;
}

int audio_wav_header(const uint8_t *d, size_t len, struct audio_wav *out)
{
    memset(out, 0, sizeof(*out));
    if (d == NULL || len < 12 || (memcmp(d, "RIFF", 4) != 0 && memcmp(d, "RF64", 4) != 0) ||
        memcmp(d + 8, "WAVE", 4) != 0)
        return -1;
    bool have_fmt = false;
    uint64_t ds64_data = 0;
    size_t pos = 12;
    while (len - pos >= 8) {
        const uint8_t *id = d + pos;
        uint32_t size = le32(d + pos + 4);
        size_t body = pos + 8;
        size_t remaining = len - body;
        if (memcmp(id, "ds64", 4) == 0 && size >= 16 && remaining >= 16) {
            ds64_data = le64(d + body + 8);
        } else if (memcmp(id, "fmt ", 4) == 0) {
            if (size < 16 || remaining < 16)
                return -1;
            wav_fmt(d + body, size, remaining, out);
            have_fmt = true;
        } else if (memcmp(id, "fact", 4) == 0 && size >= 4 && remaining >= 4) {
            out->fact_samples = le32(d + body);
        } else if (memcmp(id, "data", 4) == 0 && out->data_offset == 0) {
            out->data_offset = body;
            out->data_declared = size == 0xFFFFFFFFu && ds64_data > 0 ? ds64_data : size;
            /* The audio follows. A header that put "fmt " after the data
             * is read on only when the data's size says where it ends. */
            if (have_fmt || out->data_declared >= remaining)
                break;
        }
        if (size > remaining)
            break;
        pos = body + size;
        if ((size & 1) && pos < len)
            pos++; /* chunks are padded to even sizes */
    }
    return have_fmt ? 0 : -1;
}

/* True when d[from..len) is a run of well-formed chunks (printable ids,
 * sizes that fit), as a LIST or id3 chunk after the audio is. */
static bool chunks_to_end(const uint8_t *d, size_t len, size_t from)
{
    size_t pos = from;
    while (len - pos >= 8) {
        for (int i = 0; i < 4; i++)
            if (d[pos + i] < 0x20 || d[pos + i] > 0x7e)
                return false;
        uint32_t size = le32(d + pos + 4);
        if (size > len - pos - 8)
            return false;
        pos += 8 + (size_t)size;
        if ((size & 1) && pos < len)
            pos++;
    }
    return pos == len;
}

int64_t audio_wav_duration_ms(const uint8_t *d, size_t len)
{
    struct audio_wav w;
    if (audio_wav_header(d, len, &w) == -1 || w.data_offset == 0 || w.data_offset > len)
        return -1;
    uint64_t avail = len - w.data_offset;
    uint64_t bytes = avail;
    if (w.data_declared < avail) {
        /* A data size shorter than what follows counts only when the rest is
         * chunks; otherwise the trailing bytes are audio too. */
        size_t tail = w.data_offset + (size_t)w.data_declared + (w.data_declared & 1);
        if (tail <= len && chunks_to_end(d, len, tail))
            bytes = w.data_declared;
    }
    if (w.bytes_per_sec > 0)
        return audio_bytes_ms(bytes, w.bytes_per_sec);
    if (w.fact_samples > 0 && w.sample_rate > 0)
        return audio_bytes_ms(w.fact_samples, w.sample_rate);
    return -1;
}

/* --- Ogg -------------------------------------------------------------------- */

/* Samples at 48 kHz of one Opus packet (RFC 6716 §3.1), 0 when invalid. */
static uint32_t opus_samples(uint8_t toc, int count_byte, size_t packet_len)
{
    static const uint32_t silk[4] = {480, 960, 1920, 2880};
    static const uint32_t celt[4] = {120, 240, 480, 960};
    if (packet_len == 0)
        return 0;
    unsigned config = toc >> 3;
    uint32_t frame;
    if (config < 12)
        frame = silk[config & 3];
    else if (config < 16)
        frame = (config & 1) ? 960 : 480;
    else
        frame = celt[config & 3];
    uint32_t frames;
    switch (toc & 3) {
    case 0:
        frames = 1;
        break;
    case 1:
    case 2:
        frames = 2;
        break;
    default:
        if (count_byte < 0)
            return 0;
        frames = (uint32_t)count_byte & 0x3f;
        break;
    }
    uint32_t total = frames * frame;
    return total <= OPUS_PACKET_MAX ? total : 0;
}

enum ogg_kind { OGG_UNKNOWN = 0, OGG_OPUS, OGG_VORBIS };

#define OGG_STREAMS_MAX 16 /* logical audio streams followed in one file */

/* One logical stream (RFC 3533 §4): chained streams follow one another,
 * grouped ones interleave their pages; every Opus or Vorbis one is audio a
 * decoder plays, so each is counted. */
struct ogg_walk {
    enum ogg_kind kind;
    uint32_t serial;
    uint64_t rate;
    int64_t pre_skip;
    int64_t granule;  /* Vorbis: last granule position */
    uint64_t packets; /* packets started in the stream */
    bool in_packet;   /* the last segment seen continues */
    bool skipping;    /* inside a packet begun on a page we did not read */
    size_t pkt_len;
    int toc;          /* first byte of the packet, -1 none yet */
    int count;        /* second byte, -1 none yet */
    uint64_t samples; /* Opus: audio samples at 48 kHz */
};

static void ogg_segment(struct ogg_walk *w, const uint8_t *seg, size_t n, bool ends)
{
    if (w->skipping) {
        if (ends)
            w->skipping = false;
        return;
    }
    if (!w->in_packet) {
        w->packets++;
        w->pkt_len = 0;
        w->toc = -1;
        w->count = -1;
    }
    for (size_t i = 0; i < n && w->count < 0; i++) {
        if (w->pkt_len + i == 0)
            w->toc = seg[i];
        else if (w->pkt_len + i == 1)
            w->count = seg[i];
    }
    w->pkt_len += n;
    w->in_packet = !ends;
    /* Packets 1 and 2 are OpusHead and OpusTags; audio follows. */
    if (ends && w->kind == OGG_OPUS && w->packets > 2 && w->toc >= 0)
        w->samples += opus_samples((uint8_t)w->toc, w->count, w->pkt_len);
}

/* Opens the stream a beginning-of-stream page starts, from its first packet;
 * false when it is not audio we know (another stream of the file: ignored). */
static bool ogg_open(struct ogg_walk *w, uint32_t serial, const uint8_t *body, size_t len)
{
    memset(w, 0, sizeof(*w));
    w->serial = serial;
    w->granule = -1;
    if (len >= 19 && memcmp(body, "OpusHead", 8) == 0) {
        w->kind = OGG_OPUS;
        w->rate = OPUS_RATE; /* Opus granules and frames count 48 kHz samples */
        w->pre_skip = le16(body + 10);
        return true;
    }
    if (len >= 16 && memcmp(body, "\x01vorbis", 7) == 0) {
        w->kind = OGG_VORBIS;
        w->rate = le32(body + 12);
        return true;
    }
    return false;
}

static int64_t ogg_stream_ms(const struct ogg_walk *w)
{
    if (w->kind == OGG_OPUS) {
        int64_t samples = (int64_t)w->samples - w->pre_skip;
        return audio_bytes_ms((uint64_t)(samples > 0 ? samples : 0), OPUS_RATE);
    }
    if (w->rate > 0 && w->granule >= 0)
        return audio_bytes_ms((uint64_t)w->granule, w->rate);
    return -1; /* Vorbis without a granule: the caller estimates from the size */
}

/* Bytes that are not a page (junk, a damaged page) are skipped up to the
 * next capture pattern, as demuxers do (libogg's ogg_sync_pageseek): what a
 * decoder would still play is counted. */
int64_t audio_ogg_duration_ms(const uint8_t *d, size_t len)
{
    struct ogg_walk streams[OGG_STREAMS_MAX];
    size_t n_streams = 0;
    size_t pos = 0;
    if (d == NULL || len < 27 || memcmp(d, "OggS", 4) != 0)
        return -1;
    while (len - pos >= 27) {
        if (memcmp(d + pos, "OggS", 4) != 0) {
            const uint8_t *next = memmem(d + pos + 1, len - pos - 1, "OggS", 4);
            if (next == NULL)
                break;
            pos = (size_t)(next - d);
            continue;
        }
        size_t segs = d[pos + 26];
        if (len - pos - 27 < segs)
            break;
        const uint8_t *table = d + pos + 27;
        size_t body = 0;
        for (size_t i = 0; i < segs; i++)
            body += table[i];
        size_t start = pos + 27 + segs;
        if (len - start < body)
            break; /* a truncated last page: its packets are not counted */
        bool continued = (d[pos + 5] & 1) != 0, bos = (d[pos + 5] & 2) != 0;
        uint32_t serial = le32(d + pos + 14);
        struct ogg_walk *w = NULL;
        for (size_t i = 0; i < n_streams && w == NULL; i++)
            if (streams[i].serial == serial)
                w = &streams[i];
        if ((bos || pos == 0) && w == NULL) {
            if (n_streams == OGG_STREAMS_MAX)
                return -1; /* more than this is not an upload to measure exactly */
            if (ogg_open(&streams[n_streams], serial, d + start, body))
                w = &streams[n_streams++];
        } else if (w != NULL) {
            if (w->kind == OGG_VORBIS) {
                int64_t g = (int64_t)le64(d + pos + 6);
                if (g >= 0) /* -1: no packet ends on this page */
                    w->granule = g;
            }
            if (continued && !w->in_packet)
                w->skipping = true;
            if (!continued && w->in_packet)
                w->in_packet = false; /* the packet never ended: dropped */
        }
        if (w != NULL) {
            size_t off = start;
            for (size_t i = 0; i < segs; i++) {
                ogg_segment(w, d + off, table[i], table[i] < 255);
                off += table[i];
            }
        }
        pos = start + body;
    }
    int64_t total = -1;
    for (size_t i = 0; i < n_streams; i++) {
        int64_t ms = ogg_stream_ms(&streams[i]);
        if (ms < 0)
            continue;
        if (total < 0)
            total = 0;
        total = ms > INT64_MAX - total ? INT64_MAX : total + ms; /* saturating */
    }
    return total;
}

int64_t audio_duration_ms(const uint8_t *d, size_t len)
{
    int64_t ms = audio_wav_duration_ms(d, len);
    return ms >= 0 ? ms : audio_ogg_duration_ms(d, len);
}
