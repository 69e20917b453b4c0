/* meter_test.h - what the meter unit tests share (test_meter.c,
 * test_meter_speech.c, test_ws_meter.c, test_audio.c): endpoints and REST
 * meters looked up the way the data plane does (route_endpoint), the REST
 * meter calls on C strings, and the WAV and Ogg builders. Include after
 * common.h. */
#ifndef BYOK_TESTS_METER_TEST_H
#define BYOK_TESTS_METER_TEST_H

#include "meter.h"
#include "route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static inline int setup_routes(void **state)
{
    (void)state;
    char err[256];
    if (route_init(err, sizeof(err)) == -1) {
        fprintf(stderr, "route_init: %s\n", err);
        return -1;
    }
    return 0;
}

/* The served endpoint of a request on the full proxy path (as the client
 * sends it, without query), or NULL when the path has no route or the
 * endpoint is not served. */
static inline const struct provider_endpoint *endpoint_n(const char *method, const char *path,
                                                         size_t len, bool ws)
{
    struct route rt;
    if (route_match(path, len, &rt) == -1)
        return NULL;
    return route_endpoint(&rt, method, strlen(method), ws);
}

static inline const struct provider_endpoint *endpoint(const char *method, const char *path,
                                                       bool ws)
{
    return endpoint_n(method, path, strlen(path), ws);
}

/* The REST meter of a served, metered endpoint. */
static inline const struct meter_ops *ops_for(const char *method, const char *path)
{
    const struct provider_endpoint *ep = endpoint(method, path, false);
    if (ep == NULL || ep->meter == NULL)
        fail_msg("%s %s: not a metered endpoint", method, path);
    return ep->meter;
}

#define OPS_CHAT          ops_for("POST", "/v1/chat/completions")
#define OPS_RESPONSES     ops_for("POST", "/v1/responses")
#define OPS_EMBEDDINGS    ops_for("POST", "/v1/embeddings")
#define OPS_SPEECH        ops_for("POST", "/v1/audio/speech")
#define OPS_TRANSCRIPTION ops_for("POST", "/v1/audio/transcriptions")
#define OPS_DEEPSEEK_CHAT ops_for("POST", "/deepseek/chat/completions")
#define OPS_EL_TTS        ops_for("POST", "/elevenlabs/v1/text-to-speech/v1")
#define OPS_ANTHROPIC     ops_for("POST", "/anthropic/v1/messages")
#define OPS_DG_LISTEN     ops_for("POST", "/deepgram/v1/listen")
#define OPS_DG_SPEAK      ops_for("POST", "/deepgram/v1/speak")
#define OPS_CARTESIA_TTS  ops_for("POST", "/cartesia/tts/bytes")
#define OPS_AZURE_TTS     ops_for("POST", "/azure/tts/cognitiveservices/v1")
#define OPS_AZURE_STT                                                                              \
    ops_for("POST", "/azure/stt/speech/recognition/conversation/cognitiveservices/v1")

static inline int request(struct meter *m, const char *body, char **rw, size_t *rw_len)
{
    return meter_request(m, body, strlen(body), "application/json", 16, rw, rw_len);
}

static inline bool sse(struct meter *m, const char *event, const char *data)
{
    return meter_sse_event(m, event, data, strlen(data));
}

static inline void response(struct meter *m, const char *body)
{
    meter_response_json(m, body, strlen(body));
}

/* --- WAV ------------------------------------------------------------------- */

/* Little-endian writers for the WAV and Ogg builders. */
static inline size_t put(unsigned char *out, size_t n, const void *s, size_t l)
{
    memcpy(out + n, s, l);
    return n + l;
}

static inline size_t put16(unsigned char *out, size_t n, uint16_t v)
{
    out[n] = (unsigned char)(v & 0xff);
    out[n + 1] = (unsigned char)(v >> 8);
    return n + 2;
}

static inline size_t put32(unsigned char *out, size_t n, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        out[n + (size_t)i] = (unsigned char)(v >> (8 * i));
    return n + 4;
}

static inline size_t put_fmt(unsigned char *out, size_t n, uint16_t format, uint32_t rate,
                             uint16_t channels, uint16_t bits, uint32_t byte_rate)
{
    n = put(out, n, "fmt ", 4);
    n = put32(out, n, 16);
    n = put16(out, n, format);
    n = put16(out, n, channels);
    n = put32(out, n, rate);
    n = put32(out, n, byte_rate);
    n = put16(out, n, (uint16_t)(channels * bits / 8));
    return put16(out, n, bits);
}

/* A chunk with its id, size and body (padded to an even size). */
static inline size_t put_chunk(unsigned char *out, size_t n, const char *id, const void *body,
                               uint32_t size)
{
    n = put(out, n, id, 4);
    n = put32(out, n, size);
    n = put(out, n, body, size);
    if (size & 1)
        out[n++] = 0;
    return n;
}

/* A PCM WAV with the given header byte rate, optional LIST chunk before
 * fmt, and data_bytes of audio behind a data chunk declaring `declared`. */
static inline size_t make_wav_rate(unsigned char *out, uint32_t rate, uint16_t channels,
                                   uint16_t bits, uint32_t byte_rate, uint32_t data_bytes,
                                   uint32_t declared, bool list_first)
{
    size_t n = 0;
    n = put(out, n, "RIFF", 4);
    n = put32(out, n, 0); /* RIFF size: not used */
    n = put(out, n, "WAVE", 4);
    if (list_first)
        n = put_chunk(out, n, "LIST", "INFOx", 5); /* odd size: padded to 6 */
    n = put_fmt(out, n, 1, rate, channels, bits, byte_rate);
    n = put(out, n, "data", 4);
    n = put32(out, n, declared);
    memset(out + n, 0x11, data_bytes);
    return n + data_bytes;
}

/* A canonical 44-byte-header PCM WAV plus optional extra chunks. */
static inline size_t make_wav(unsigned char *out, uint32_t rate, uint16_t channels, uint16_t bits,
                              uint32_t data_bytes, uint32_t declared, bool list_first)
{
    return make_wav_rate(out, rate, channels, bits, rate * channels * bits / 8, data_bytes,
                         declared, list_first);
}

/* --- Ogg ------------------------------------------------------------------- */

/* One Ogg page (CRC left 0: not checked) with a single packet. */
static inline size_t ogg_page(unsigned char *out, int64_t granule, uint32_t serial,
                              const void *body, size_t body_len)
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

/* One Ogg page holding packets (lacing computed). With open_last the last
 * packet continues on the next page: its length must be a multiple of 255
 * and no lacing value ends it. flags: 1 = continued from the last page. */
struct opkt {
    const unsigned char *d;
    size_t len;
};

static inline size_t ogg_page_packets(unsigned char *out, unsigned flags, int64_t granule,
                                      uint32_t serial, const struct opkt *p, size_t n,
                                      bool open_last)
{
    unsigned char lacing[255];
    size_t segs = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = p[i].len;
        bool open = open_last && i == n - 1;
        assert_true(!open || len % 255 == 0);
        while (len >= 255) {
            lacing[segs++] = 255;
            len -= 255;
        }
        if (!open)
            lacing[segs++] = (unsigned char)len;
        assert_true(segs <= 255);
    }
    size_t o = 0;
    o = put(out, o, "OggS", 4);
    out[o++] = 0;
    out[o++] = (unsigned char)flags;
    for (int i = 0; i < 8; i++)
        out[o++] = (unsigned char)((uint64_t)granule >> (8 * i));
    o = put32(out, o, serial);
    memset(out + o, 0, 8); /* sequence, CRC */
    o += 8;
    out[o++] = (unsigned char)segs;
    o = put(out, o, lacing, segs);
    for (size_t i = 0; i < n; i++)
        o = put(out, o, p[i].d, p[i].len);
    return o;
}

/* OpusHead (pre-skip) and OpusTags pages of stream serial. */
static inline size_t opus_head(unsigned char *out, uint32_t serial, uint16_t pre_skip)
{
    unsigned char head[19] = "OpusHead\x01\x01";
    head[10] = (unsigned char)(pre_skip & 0xff);
    head[11] = (unsigned char)(pre_skip >> 8);
    head[12] = 0x80; /* 48000 Hz input rate: informative only */
    head[13] = 0xbb;
    size_t n = ogg_page(out, 0, serial, head, sizeof(head));
    return n + ogg_page(out + n, 0, serial, "OpusTags\0\0\0\0\0\0\0\0", 16);
}

/* ceil(samples at 48 kHz / 48) */
static inline int64_t opus_ms(int64_t samples)
{
    return samples <= 0 ? 0 : (samples + 47) / 48;
}

#endif
