/* sim_audio.h - the audio of simulated voice providers (sim_audio.c): how
 * long speech lasts for a text and how many words a transcript of some
 * audio has, the audio token rates of OpenAI's voice models, and the bytes
 * of generated audio in the formats providers answer with - real,
 * decodable streams (a tone in PCM, WAV, G.711; silence in MP3, Ogg Opus,
 * AAC and FLAC, whose encoders are out of scope), rendered piece by piece
 * so a reply can be paced. Pure: no I/O, no state of its own. */
#ifndef BYOK_SIM_AUDIO_H
#define BYOK_SIM_AUDIO_H

#include "common.h"

#include <event2/buffer.h>

/* How speech is timed: characters spoken per second at speed 1 (~150
 * words a minute), and transcript words per second of speech. */
#define SIM_AUDIO_CHARS_PER_S 15
#define SIM_AUDIO_WORD_MS     400

enum sim_audio_codec {
    SIM_AUDIO_PCM16 = 0, /* signed 16-bit little-endian samples, a tone */
    SIM_AUDIO_F32,       /* 32-bit float little-endian samples */
    SIM_AUDIO_MULAW,     /* G.711 mu-law bytes */
    SIM_AUDIO_ALAW,      /* G.711 A-law bytes */
    SIM_AUDIO_MP3,       /* MPEG-1/2/2.5 Layer III frames of silence */
    SIM_AUDIO_OPUS,      /* Ogg Opus, 20 ms packets (DTX: silence) */
    SIM_AUDIO_AAC,       /* ADTS AAC-LC frames of silence */
    SIM_AUDIO_FLAC,      /* native FLAC, constant (silent) subframes */
};

/* A mono audio format. */
struct sim_audio_format {
    enum sim_audio_codec codec;
    bool wav;             /* a sample codec in a RIFF/WAVE container */
    uint32_t sample_rate; /* Hz (Opus: the input rate; packets are 48 kHz) */
    uint32_t bitrate;     /* MP3: bits per second (a Layer III bitrate) */
    const char *mime;     /* the reply's Content-Type (static) */
};

/* Fills f; -1 when the combination is not one the renderer produces (an
 * MP3 rate or bitrate Layer III does not have, an AAC or FLAC rate outside
 * their tables, a container around a framed codec). */
MUST_CHECK int sim_audio_format_set(struct sim_audio_format *f, enum sim_audio_codec codec,
                                    bool wav, uint32_t sample_rate, uint32_t bitrate);

/* Milliseconds a voice takes to speak code_points characters at speed (1 =
 * normal, 2 = twice as fast): SIM_AUDIO_CHARS_PER_S characters a second,
 * rounded up; 0 for no text. */
int64_t sim_audio_speech_ms(int64_t code_points, double speed);
/* Words of a transcript of ms of speech: one per SIM_AUDIO_WORD_MS, rounded
 * up, at least 1. */
int64_t sim_audio_transcript_words(int64_t ms);
/* OpenAI's audio tokens (PROVIDERS.md §1.7): user audio 1 token per
 * 100 ms, assistant audio 1 per 50 ms, rounded up. */
int64_t sim_audio_user_tokens(int64_t ms);
int64_t sim_audio_assistant_tokens(int64_t ms);

/* A rendering of total_ms of audio, written piece by piece. */
struct sim_audio_out {
    struct sim_audio_format f;
    uint64_t total;  /* samples (at f.sample_rate; Opus: 48 kHz packets' samples) */
    uint64_t done;   /* samples rendered */
    uint64_t frames; /* frames or packets rendered (MP3, AAC, FLAC, Opus) */
    bool started;    /* the container's header is written */
    uint32_t ogg_page;
};

void sim_audio_out_init(struct sim_audio_out *o, const struct sim_audio_format *f,
                        int64_t total_ms);
/* Appends the audio up to upto_ms (at most the total) to out: the
 * container's header with the first piece, frames whose start falls
 * before upto_ms, everything left with upto_ms >= total_ms. -1 when out of
 * memory. */
MUST_CHECK int sim_audio_render(struct sim_audio_out *o, int64_t upto_ms, struct evbuffer *out);
/* True once everything is rendered. */
bool sim_audio_finished(const struct sim_audio_out *o);

/* A voice activity detector on the audio's own timeline (not the wall
 * clock): 10 ms frames whose mean |sample| exceeds the threshold are
 * speech. Speech starts at the first speech frame (reported prefix_ms
 * earlier, not before 0) and stops once silence_ms of non-speech frames
 * follow the last speech frame (reported at that frame's end): OpenAI
 * Realtime's server_vad, by energy. */
struct sim_vad {
    int64_t threshold;  /* mean |sample| of a speech frame */
    int64_t prefix_ms;  /* prefix_padding_ms */
    int64_t silence_ms; /* silence_duration_ms */
    uint32_t rate;
    uint64_t samples; /* fed so far */
    int64_t acc;      /* |sample| sum of the open frame */
    uint32_t in_frame;
    bool speaking;
    int64_t last_speech_ms; /* end of the last speech frame */
};

enum sim_vad_event {
    SIM_VAD_NONE = 0,
    SIM_VAD_STARTED, /* at_ms: audio_start_ms */
    SIM_VAD_STOPPED, /* at_ms: audio_end_ms */
};

/* threshold: OpenAI's 0..1 (0.5 is a mean |sample| of 800, about -32
 * dBFS). */
void sim_vad_init(struct sim_vad *v, uint32_t rate, double threshold, int64_t prefix_ms,
                  int64_t silence_ms);
/* Feeds samples until the first event (returned, with its time in *at_ms)
 * or their end (SIM_VAD_NONE); *used says how many were taken: feed the
 * rest again. */
enum sim_vad_event sim_vad_feed(struct sim_vad *v, const int16_t *s, size_t n, size_t *used,
                                int64_t *at_ms);
/* A G.711 byte as a 16-bit sample. */
int16_t sim_audio_ulaw_decode(uint8_t u);
int16_t sim_audio_alaw_decode(uint8_t a);

/* Base64 of d[0..len), NUL-terminated. Caller frees with free(); NULL when
 * out of memory. */
char *sim_audio_base64(const void *d, size_t len);
/* Bytes that base64 text of len characters decodes to (its padding
 * counted off); -1 when len is not a multiple of 4. */
int64_t sim_audio_base64_len(const char *s, size_t len);

#endif
