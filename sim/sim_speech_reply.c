/* sim_speech_reply.c - a generated audio clip as a streamed HTTP reply
 * (sim_speech.h), paced at the upstream's audio real-time factor: what the
 * simulated TTS endpoints answer (Azure, Deepgram). */
#include "common.h"
#include "sim_speech.h"

#include <stdlib.h>

struct clip {
    struct sim_audio_gen gen;
    int64_t start;   /* mono_ms() of the first piece */
    int64_t sent_ms; /* audio written so far */
    int64_t clip_ms;
    uint8_t *buf; /* one piece */
    size_t buf_size;
};

static void clip_free(void *p)
{
    struct clip *c = p;
    if (c != NULL)
        free(c->buf);
    free(c);
}

static void clip_pump(struct sim_request *r)
{
    struct clip *c = sim_state(r);
    int64_t rtf = sim_tunables(r)->audio_rtf_ppm;
    /* Bounded: every pass writes one more piece of a clip of finite length,
     * or returns. */
    for (;;) {
        if (sim_audio_gen_done(&c->gen)) {
            sim_stream_end(r);
            return;
        }
        if (sim_reset_drawn(r) && c->sent_ms >= c->clip_ms / 2) {
            sim_cut(r);
            return;
        }
        int64_t wait = c->start + sim_pace_audio_ms(rtf, c->sent_ms) - mono_ms();
        if (wait > 0) {
            sim_after(r, wait, clip_pump);
            return;
        }
        int64_t until = c->sent_ms + SIM_SPEECH_CHUNK_MS;
        size_t n = sim_audio_gen_pending(&c->gen, until);
        if (n > c->buf_size) {
            uint8_t *b = realloc(c->buf, n);
            if (b == NULL) {
                log_error("sim: out of memory writing audio");
                sim_cut(r);
                return;
            }
            c->buf = b;
            c->buf_size = n;
        }
        n = sim_audio_gen_write(&c->gen, until, c->buf);
        sim_stream_write(r, (const char *)c->buf, n);
        c->sent_ms = until;
    }
}

void sim_speech_reply(struct sim_request *r, const struct sim_audio_format *f,
                      const char *content_type, int64_t audio_ms, const struct http_kv *extra,
                      size_t n_extra)
{
    struct clip *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_audio_gen_init(&c->gen, f, audio_ms);
    c->clip_ms = sim_audio_gen_ms(&c->gen);
    c->start = mono_ms();
    sim_set_state(r, c, clip_free);
    sim_stream_begin(r, 200, content_type, extra, n_extra);
    clip_pump(r);
}
