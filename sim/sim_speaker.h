/* sim_speaker.h - paced replies on a simulated socket (sim_speaker.c): a
 * socket's generated replies ("utterances": a Realtime response, an
 * ElevenLabs generation, a Cartesia context's audio) queued in order and
 * sent piece by piece on the socket's timer:
 *
 *   say() ─> queued ─ its start: ttfb_ms after say(), and not before the
 *            previous one is generated ─> piece i due, after the start, at
 *            sim_pace_audio_ms(audio_rtf, i * chunk_ms) (audio), or at
 *            sim_pace_token_ms(tokens_per_s, i) (text: chunk_ms 0)
 *   ─> piece(0) .. piece(n-1) ─> done() ─> freed
 *
 * A slow client holds the next piece (sim_ws_blocked). A socket that drew
 * the "reset" fault is dropped (sim_ws_drop) after half the pieces of its
 * first utterance. The speaker owns the socket's timer (sim_ws_after): a
 * module using a speaker does not set it. Callbacks run from the timer or
 * the drain, never from inside say() or cancel(). */
#ifndef BYOK_SIM_SPEAKER_H
#define BYOK_SIM_SPEAKER_H

#include "common.h"
#include "sim_provider.h"

struct sim_speaker;

struct sim_speaker_ops {
    /* Sends piece i of utterance u. */
    void (*piece)(struct sim_ws *ws, void *u, size_t i);
    /* Every piece is sent (called too for an utterance of 0 pieces). */
    void (*done)(struct sim_ws *ws, void *u);
    /* Frees u: after done, when cancelled, or when the speaker is freed
     * (NULL: u is not freed). */
    void (*free)(void *u);
};

/* A speaker for ws (borrowed: free the speaker in the socket's on_close).
 * NULL when out of memory. Caller frees with sim_speaker_free(). */
struct sim_speaker *sim_speaker_new(struct sim_ws *ws);
/* Frees the queue (each utterance with its ops->free) and the speaker.
 * sim_speaker_free(NULL) is a no-op. Not from inside its callbacks. */
void sim_speaker_free(struct sim_speaker *sp);

/* Queues an utterance of n pieces (above). Takes ownership of u. -1 when
 * out of memory (u is then freed with ops->free). */
MUST_CHECK int sim_speaker_say(struct sim_speaker *sp, size_t n, int64_t chunk_ms,
                               const struct sim_speaker_ops *ops, void *u);
/* Removes the queued utterances for which match(u, arg) is true (match
 * NULL: all), the one being sent included, each freed with its ops->free
 * without done(). Returns how many. Not from inside its callbacks. */
size_t sim_speaker_cancel(struct sim_speaker *sp, bool (*match)(void *u, void *arg), void *arg);

#endif
