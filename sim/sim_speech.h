/* sim_speech.h - the audio simulated voice providers send and the
 * arithmetic around it (pure, no I/O): output formats (16-bit PCM, G.711
 * mu-law and A-law, MP3), a generator that writes a clip of a given length
 * piece by piece (a 440 Hz tone in PCM and G.711, silent frames in MP3, a
 * WAV header when the format has one), how long generated speech is for a
 * text, and how many words a transcript of some audio holds.
 *
 * Speech runs at SIM_SPEECH_MS_PER_CHAR per billed character (about 1,000
 * characters or 160 words a minute) and a transcript has one word per
 * SIM_SPEECH_MS_PER_WORD of audio (150 words a minute), so the units a
 * simulated voice provider reports follow from what the proxy meters. */
#ifndef BYOK_SIM_SPEECH_H
#define BYOK_SIM_SPEECH_H

#include "common.h"
#include "sim_provider.h"

#define SIM_SPEECH_MS_PER_CHAR 60
#define SIM_SPEECH_MS_PER_WORD 400

enum sim_audio_codec {
    SIM_AUDIO_PCM16 = 0, /* signed 16-bit little-endian */
    SIM_AUDIO_MULAW,     /* G.711 mu-law, 8 bits a sample */
    SIM_AUDIO_ALAW,      /* G.711 A-law, 8 bits a sample */
    SIM_AUDIO_MP3,       /* MPEG-1 (32-48 kHz) or MPEG-2 (16-24 kHz) Layer III */
};

struct sim_audio_format {
    enum sim_audio_codec codec;
    uint32_t sample_rate;
    uint32_t bitrate; /* MP3: bits a second; 0 otherwise */
    bool wav;         /* a RIFF/WAVE header first (PCM and G.711 only) */
};

/* 0 when f is a format the generator writes: PCM or G.711 at 8000 to 48000
 * Hz, MP3 at 16000, 22050, 24000 (MPEG-2, 8-160 kbit/s) or 32000, 44100,
 * 48000 Hz (MPEG-1, 32-320 kbit/s) at a bitrate of its table; no WAV header
 * on MP3. -1 otherwise. */
MUST_CHECK int sim_audio_format_check(const struct sim_audio_format *f);

/* Bytes of one second of audio: exact for PCM and G.711, the nominal
 * bitrate / 8 for MP3. */
uint64_t sim_audio_bytes_per_sec(const struct sim_audio_format *f);
/* The MIME type a provider labels f with. Static storage. */
const char *sim_audio_mime(const struct sim_audio_format *f);

/* Milliseconds of generated speech for a text of characters billed
 * characters (0 for none). */
int64_t sim_speech_ms(int64_t characters);
/* Words of a transcript of audio_ms of speech: one a SIM_SPEECH_MS_PER_WORD,
 * rounded up; at least 1 when there is any audio, 0 when none. */
int64_t sim_transcript_words(int64_t audio_ms);

/* The transcript of words first .. first + n - 1 of the generated text
 * (sim_word()), NUL-terminated, without a leading space: as written
 * ("Simulated replies come from the byok simulator,"), or lexical (lower
 * case, no punctuation: "simulated replies come from the byok simulator").
 * Caller frees with free(); NULL when out of memory. */
char *sim_transcript(size_t first, size_t n, bool lexical);
/* Word i of the generated text in lexical form into out (at most out_size
 * bytes with the NUL). */
void sim_transcript_word(size_t i, bool lexical, char *out, size_t out_size);

/* A 44-byte canonical WAV header (PCM or G.711 format tag, mono) for
 * data_bytes of audio in f. */
#define SIM_WAV_HEADER_LEN 44
void sim_wav_header(const struct sim_audio_format *f, uint32_t data_bytes,
                    uint8_t out[SIM_WAV_HEADER_LEN]);

/* A clip written in pieces: its units are samples (PCM, G.711) or frames
 * (MP3), the WAV header comes before the first of them. */
struct sim_audio_gen {
    struct sim_audio_format f; /* private */
    uint64_t total;            /* units in the clip */
    uint64_t done;             /* units written */
    uint64_t unit_samples;     /* samples a unit holds: 1, or 1152 / 576 (MP3) */
    bool header;               /* the WAV header is still to write */
};

/* Starts a clip of audio_ms (at least one unit when audio_ms > 0; f must
 * pass sim_audio_format_check). */
void sim_audio_gen_init(struct sim_audio_gen *g, const struct sim_audio_format *f,
                        int64_t audio_ms);
/* The clip's real length in ms (its units, rounded up): what a meter of its
 * bytes finds. */
int64_t sim_audio_gen_ms(const struct sim_audio_gen *g);
/* All of the clip's bytes, header included. */
uint64_t sim_audio_gen_bytes(const struct sim_audio_gen *g);
/* Bytes still to write for the audio up to until_ms of the clip (capped at
 * its end; the header counts with the first piece). */
size_t sim_audio_gen_pending(const struct sim_audio_gen *g, int64_t until_ms);
/* Writes those bytes into out (room for sim_audio_gen_pending()) and
 * returns their count. */
size_t sim_audio_gen_write(struct sim_audio_gen *g, int64_t until_ms, uint8_t *out);
/* True when every byte of the clip is written. */
bool sim_audio_gen_done(const struct sim_audio_gen *g);

/* ---- a clip as an HTTP reply (sim_speech_reply.c) ----------------------- */

/* Audio is sent in pieces of this much. */
#define SIM_SPEECH_CHUNK_MS 100

/* Streams a generated clip of audio_ms in f as the reply (200,
 * content_type, the extra headers, borrowed for the call): piece k is due
 * sim_pace_audio_ms(audio_rtf, k x SIM_SPEECH_CHUNK_MS) after the first, so
 * at audio_rtf 1 the clip takes its own length less one piece, at 0 it goes
 * at once; a "reset" fault cuts the connection after half the clip. f must
 * pass sim_audio_format_check. Ends the request. */
void sim_speech_reply(struct sim_request *r, const struct sim_audio_format *f,
                      const char *content_type, int64_t audio_ms, const struct http_kv *extra,
                      size_t n_extra);

#endif
