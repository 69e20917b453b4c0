/* sim_speaker.c - paced replies on a simulated socket (sim_speaker.h): a
 * FIFO of utterances, one pump on the socket's timer. */
#include "common.h"
#include "sim_speaker.h"

#include <stdlib.h>

struct utterance {
    size_t n, next;   /* pieces, and the next to send */
    int64_t chunk_ms; /* audio ms per piece; 0: text tokens */
    int64_t start;    /* mono ms: piece 0 is due */
    bool first;       /* the socket's first utterance (a reset cuts it) */
    const struct sim_speaker_ops *ops;
    void *u;
    struct utterance *next_utt;
};

struct sim_speaker {
    struct sim_ws *ws;
    struct utterance *head, *tail;
    int64_t free_at; /* mono ms: the last queued utterance is generated */
    bool said;       /* an utterance was queued before */
    bool dropped;    /* the reset fault cut the socket */
};

static void utterance_free(struct utterance *t)
{
    if (t->ops->free != NULL)
        t->ops->free(t->u);
    free(t);
}

struct sim_speaker *sim_speaker_new(struct sim_ws *ws)
{
    struct sim_speaker *sp = calloc(1, sizeof(*sp));
    if (sp != NULL)
        sp->ws = ws;
    return sp;
}

void sim_speaker_free(struct sim_speaker *sp)
{
    if (sp == NULL)
        return;
    sim_ws_after(sp->ws, 0, NULL, NULL);
    while (sp->head != NULL) {
        struct utterance *t = sp->head;
        sp->head = t->next_utt;
        utterance_free(t);
    }
    free(sp);
}

/* When piece i of t is due, in ms after its start. */
static int64_t due_ms(const struct sim_speaker *sp, const struct utterance *t, size_t i)
{
    const struct config_sim_tunables *tun = sim_ws_tunables(sp->ws);
    if (t->chunk_ms > 0)
        return sim_pace_audio_ms(tun->audio_rtf_ppm, (int64_t)i * t->chunk_ms);
    return sim_pace_token_ms(tun->tokens_per_s, i);
}

static void pump(void *arg)
{
    struct sim_speaker *sp = arg;
    /* Each turn sends a piece or ends an utterance: bounded by the pieces
     * queued; a slow client or a piece not yet due ends the turn. */
    while (sp->head != NULL && !sp->dropped) {
        struct utterance *t = sp->head;
        if (t->first && sim_ws_reset_drawn(sp->ws) && t->next >= t->n / 2) {
            sp->dropped = true;
            sim_ws_drop(sp->ws);
            return;
        }
        int64_t wait = t->start + (t->next < t->n ? due_ms(sp, t, t->next) : 0) - mono_ms();
        if (wait > 0) {
            sim_ws_after(sp->ws, wait, pump, sp);
            return;
        }
        if (t->next >= t->n) {
            sp->head = t->next_utt;
            if (sp->head == NULL)
                sp->tail = NULL;
            t->ops->done(sp->ws, t->u);
            utterance_free(t);
            continue;
        }
        if (sim_ws_blocked(sp->ws, pump, sp))
            return;
        t->ops->piece(sp->ws, t->u, t->next++);
    }
}

int sim_speaker_say(struct sim_speaker *sp, size_t n, int64_t chunk_ms,
                    const struct sim_speaker_ops *ops, void *u)
{
    struct utterance *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        if (ops->free != NULL)
            ops->free(u);
        return -1;
    }
    const struct config_sim_tunables *tun = sim_ws_tunables(sp->ws);
    int64_t now = mono_ms();
    *t = (struct utterance){
        n, 0,   MAX(chunk_ms, (int64_t)0), MAX(now + tun->ttfb_ms, sp->free_at), !sp->said, ops,
        u, NULL};
    sp->said = true;
    sp->free_at = t->start + due_ms(sp, t, n);
    bool idle = sp->head == NULL;
    if (idle)
        sp->head = t;
    else
        sp->tail->next_utt = t;
    sp->tail = t;
    /* An idle speaker has no pump pending: start one (from the loop, not
     * from inside the caller). */
    if (idle)
        sim_ws_after(sp->ws, t->start - now, pump, sp);
    return 0;
}

size_t sim_speaker_cancel(struct sim_speaker *sp, bool (*match)(void *u, void *arg), void *arg)
{
    size_t n = 0;
    struct utterance **at = &sp->head, *last = NULL;
    while (*at != NULL) {
        struct utterance *t = *at;
        if (match == NULL || match(t->u, arg)) {
            *at = t->next_utt;
            utterance_free(t);
            n++;
        } else {
            last = t;
            at = &t->next_utt;
        }
    }
    sp->tail = last;
    if (sp->head == NULL) {
        sim_ws_after(sp->ws, 0, NULL, NULL);
        sp->free_at = 0;
    } else if (n > 0) {
        /* The head may be another utterance now: the pump re-plans. */
        sim_ws_after(sp->ws, 0, pump, sp);
    }
    return n;
}
