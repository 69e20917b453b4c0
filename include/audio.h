/* audio.h - how long uploaded audio is, from its real format and the bytes
 * really sent (DESIGN §5): the one WAV reader and Ogg reader of the proxy.
 * Pure functions over byte ranges, fuzzed.
 *
 * WAV (RIFF/RF64): the rate is sample rate x channels x bits per sample
 * (PCM, IEEE float, A-law, mu-law, and those inside WAVE_FORMAT_EXTENSIBLE),
 * never the header's declared byte rate alone; chunks may come in any order
 * and extra chunks (LIST, fact, ...) are skipped; the audio is what follows
 * the data chunk's header: its declared size when the bytes after it are
 * well-formed chunks, else everything to the end (a short declared size
 * does not hide audio). Other codecs count only with a "fact" sample count.
 * Ogg Opus: the sum of every audio packet's duration from its TOC byte
 * (RFC 6716 §3.1) minus the pre-skip - not the granule positions, which the
 * client writes. Ogg Vorbis: the last granule position. */
#ifndef BYOK_AUDIO_H
#define BYOK_AUDIO_H

#include "common.h"

/* The format of a WAV header. */
struct audio_wav {
    uint32_t sample_rate;
    uint16_t channels;
    uint16_t bits;
    uint16_t format;        /* the format tag (EXTENSIBLE resolved to its sub-format) */
    uint64_t bytes_per_sec; /* sample_rate x channels x bits / 8; 0 when not PCM-like */
    uint64_t fact_samples;  /* from a "fact" chunk, 0 when none */
    size_t data_offset;     /* where the audio starts; 0 when no data chunk was seen */
    uint64_t data_declared; /* the data chunk's size field */
};

/* Parses the header of a WAV file or stream in d[0..len). 0 when it is a WAV
 * header with a usable format chunk (the data chunk may be absent or open:
 * a stream's header). -1 otherwise. */
MUST_CHECK int audio_wav_header(const uint8_t *d, size_t len, struct audio_wav *out);

/* Duration in ms (rounded up) of a whole WAV, Ogg Opus or Ogg Vorbis
 * upload; -1 when the format is none of these or carries no usable rate. */
int64_t audio_duration_ms(const uint8_t *d, size_t len);

/* The same, for one format only (-1 when d is not that format). */
int64_t audio_wav_duration_ms(const uint8_t *d, size_t len);
int64_t audio_ogg_duration_ms(const uint8_t *d, size_t len);

/* Milliseconds (rounded up) of bytes of audio at bytes_per_sec; 0 when the
 * rate is 0. */
int64_t audio_bytes_ms(uint64_t bytes, uint64_t bytes_per_sec);

#endif
