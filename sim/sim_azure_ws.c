/* sim_azure_ws.c - the Speech SDK's socket protocol as simulated Azure
 * Speech speaks it (PROVIDERS.md §3.3; framing in sim_azure_proto.c).
 *
 * STT (/stt/speech/universal/v2, /speech/recognition/{mode}/cognitiveservices/v1):
 *
 *   speech.config, speech.context  read for the mode (interactive: one
 *                                  phrase a turn)
 *   audio (a new X-RequestId)  ─> turn.start
 *   audio (first PCM)          ─> speech.startDetected
 *   every 500 ms of audio      ─> speech.hypothesis {Text, Offset, Duration}
 *   every 2 s of audio         ─> speech.phrase {RecognitionStatus: Success,
 *                                 DisplayText, Offset, Duration (+ NBest)}
 *   audio, empty (end)         ─> speech.endDetected, the rest as a phrase
 *                                 (InitialSilenceTimeout when the turn had
 *                                 no audio), turn.end
 *
 * Interactive turns end after their first phrase: at the end of the audio,
 * or 15 s in. The audio's rate is its WAV header's (the SDK sends one in
 * each turn's first audio message), else 16 kHz 16-bit mono; offsets are
 * 100-ns ticks from the turn's start; the transcript is the generated text,
 * a word per 400 ms, running on across phrases and turns.
 *
 * TTS (/tts/cognitiveservices/websocket/v1, /cognitiveservices/websocket/v1):
 *
 *   speech.config               ignored
 *   synthesis.context           its synthesis.audio.outputFormat
 *   ssml (X-RequestId)       ─> turn.start, response {audio.streamId},
 *                               binary audio frames (X-StreamId) of 100 ms,
 *                               the first ttfb_ms after the ssml and frame k
 *                               sim_pace_audio_ms(audio_rtf, k x 100 ms)
 *                               after it, audio.metadata (SessionEnd), turn.end
 *
 * The clip is sim_speech_ms() of the SSML's billed characters. SSML sent
 * during a turn waits its turn (at most 64). Bad SSML or an output format
 * not simulated: close 1007. A "reset" fault drops the socket (no close
 * frame) after the first hypothesis (STT) or half the first clip (TTS). */
#include "common.h"
#include "audio.h"
#include "azure_speech.h"
#include "sim_azure.h"
#include "urlenc.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TTS_QUEUE_MAX  64
#define DEFAULT_FORMAT "raw-16khz-16bit-mono-pcm"

/* Sends one text message of path for request id rid (takes body). */
static void send_json(struct sim_ws *ws, const char *path, const char *rid, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    size_t len = 0;
    char *msg = text != NULL ? sim_azure_text_msg(path, rid, now_ms(), text, &len) : NULL;
    if (msg != NULL)
        sim_ws_send(ws, true, msg, len);
    else
        log_error("sim azure_speech: out of memory sending %s", path);
    free(text);
    free(msg);
}

/* {"context":{"serviceTag":"<32 hex>"}} */
static json_t *turn_context(const char *tag)
{
    return json_pack("{s{ss}}", "context", "serviceTag", tag);
}

/* ---- STT ------------------------------------------------------------------ */

struct stt {
    struct sim_ws *ws;
    bool reset;       /* the "reset" fault: drop after the first hypothesis */
    bool detailed;    /* format=detailed: phrases carry NBest */
    bool interactive; /* one phrase a turn */
    char socket_id[SIM_AZURE_HDR_MAX];
    unsigned turns;
    char turn[SIM_AZURE_HDR_MAX];  /* X-RequestId of the turn in progress, "" none */
    char ended[SIM_AZURE_HDR_MAX]; /* the last turn that ended: its late audio is ignored */
    uint64_t bytes_per_sec;        /* the turn's audio rate */
    uint64_t bytes;                /* the turn's audio */
    bool heard;                    /* speech.startDetected sent */
    int64_t phrase_ms;             /* where the phrase being heard starts */
    int64_t hyp_ms;                /* audio at the last hypothesis or phrase */
    size_t word;                   /* the next word of the generated transcript */
};

static int64_t turn_ms(const struct stt *s)
{
    return (int64_t)(s->bytes * 1000 / s->bytes_per_sec);
}

static void stt_turn_start(struct stt *s, const char *rid)
{
    snprintf(s->turn, sizeof(s->turn), "%s", rid);
    s->bytes_per_sec = SIM_AZURE_SDK_BYTES_PER_SEC;
    s->bytes = 0;
    s->heard = false;
    s->phrase_ms = s->hyp_ms = 0;
    char tag[SIM_AZURE_HDR_MAX + 16];
    snprintf(tag, sizeof(tag), "%s%08x", s->socket_id, ++s->turns);
    send_json(s->ws, "turn.start", rid, turn_context(tag));
}

/* The phrase of the audio from phrase_ms to end_ms. */
static void stt_phrase(struct stt *s, int64_t end_ms)
{
    size_t words = (size_t)sim_transcript_words(end_ms - s->phrase_ms);
    send_json(s->ws, "speech.phrase", s->turn,
              sim_azure_phrase("Success", s->phrase_ms, end_ms - s->phrase_ms, s->word, words,
                               s->detailed));
    s->word += words;
    s->phrase_ms = s->hyp_ms = end_ms;
}

/* The end of the turn's speech: endDetected, the phrase of what is left,
 * turn.end. */
static void stt_turn_end(struct stt *s, int64_t end_ms)
{
    send_json(s->ws, "speech.endDetected", s->turn,
              json_pack("{sI}", "Offset", (json_int_t)(end_ms * SIM_AZURE_TICKS_PER_MS)));
    if (!s->heard)
        send_json(s->ws, "speech.phrase", s->turn,
                  sim_azure_phrase("InitialSilenceTimeout", 0, end_ms, 0, 0, false));
    else if (end_ms > s->phrase_ms)
        stt_phrase(s, end_ms);
    send_json(s->ws, "turn.end", s->turn, json_object());
    snprintf(s->ended, sizeof(s->ended), "%s", s->turn);
    s->turn[0] = '\0';
}

static void stt_hypothesis(struct stt *s, int64_t ms)
{
    size_t words = (size_t)sim_transcript_words(ms - s->phrase_ms);
    char *text = sim_transcript(s->word, words, true);
    send_json(s->ws, "speech.hypothesis", s->turn,
              json_pack("{ss sI sI}", "Text", text ? text : "", "Offset",
                        (json_int_t)(s->phrase_ms * SIM_AZURE_TICKS_PER_MS), "Duration",
                        (json_int_t)((ms - s->phrase_ms) * SIM_AZURE_TICKS_PER_MS)));
    free(text);
    s->hyp_ms = ms;
}

static void stt_audio(struct stt *s, const struct sim_azure_msg *m)
{
    if (m->request_id[0] == '\0' || strcmp(m->request_id, s->ended) == 0)
        return;
    if (strcmp(m->request_id, s->turn) != 0)
        stt_turn_start(s, m->request_id);
    const uint8_t *p = m->body;
    size_t n = m->body_len;
    if (n == 0) {
        stt_turn_end(s, turn_ms(s));
        return;
    }
    struct audio_wav w;
    if (s->bytes == 0 && n >= 4 && memcmp(p, "RIFF", 4) == 0 && audio_wav_header(p, n, &w) == 0) {
        /* The turn's WAV header: its rate, and its bytes are not audio. */
        if (w.bytes_per_sec > 0)
            s->bytes_per_sec = w.bytes_per_sec;
        size_t skip = w.data_offset > 0 ? MIN(w.data_offset, n) : n;
        p += skip;
        n -= skip;
    }
    s->bytes += n;
    if (n > 0 && !s->heard) {
        s->heard = true;
        send_json(s->ws, "speech.startDetected", s->turn,
                  json_pack("{sI}", "Offset", (json_int_t)0));
    }
    int64_t ms = turn_ms(s);
    int64_t span = s->interactive ? SIM_AZURE_INTERACTIVE_MS : SIM_AZURE_PHRASE_MS;
    /* Bounded: each pass moves phrase_ms on by span, up to ms. */
    while (ms - s->phrase_ms >= span) {
        if (s->interactive) {
            stt_turn_end(s, s->phrase_ms + span);
            return;
        }
        stt_phrase(s, s->phrase_ms + span);
    }
    if (ms - s->hyp_ms >= SIM_AZURE_HYPOTHESIS_MS) {
        stt_hypothesis(s, ms);
        if (s->reset)
            sim_ws_drop(s->ws);
    }
}

/* speech.config ("recognition": "interactive") or speech.context
 * (phraseDetection.mode "Interactive") may say the mode. */
static void stt_config(struct stt *s, const struct sim_azure_msg *m)
{
    json_t *root = json_loadb((const char *)m->body, m->body_len, 0, NULL);
    const char *mode = json_string_value(json_object_get(root, "recognition"));
    if (mode == NULL)
        mode = json_string_value(json_object_get(json_object_get(root, "phraseDetection"), "mode"));
    if (mode != NULL)
        s->interactive = strcasecmp(mode, "interactive") == 0;
    json_decref(root);
}

static void stt_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct stt *s = sim_ws_arg(ws);
    struct sim_azure_msg m;
    if (sim_azure_msg_parse(text, data, len, &m) == -1) {
        sim_ws_close(ws, WS_CLOSE_INVALID_DATA, "Invalid message framing");
        return;
    }
    if (strcmp(m.path, "audio") == 0)
        stt_audio(s, &m);
    else if (strcmp(m.path, "speech.config") == 0 || strcmp(m.path, "speech.context") == 0)
        stt_config(s, &m);
    /* telemetry and the rest: nothing to answer */
}

static void stt_close(struct sim_ws *ws, int code)
{
    (void)code;
    free(sim_ws_arg(ws));
}

static const struct sim_ws_ops stt_ops = {stt_message, stt_close};

static bool mode_known(const char *mode)
{
    return strcmp(mode, "conversation") == 0 || strcmp(mode, "interactive") == 0 ||
           strcmp(mode, "dictation") == 0;
}

void sim_azure_stt_socket(struct sim_request *r)
{
    const char *mode = sim_param(r);
    if (mode[0] != '\0' && !mode_known(mode)) {
        sim_error(r, SIM_ERR_NOT_FOUND, sim_path(r));
        return;
    }
    struct stt *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    const struct httpparse_request *h = sim_head(r);
    char format[16];
    s->detailed = h->query != NULL &&
                  urlenc_query_get(h->query, h->query_len, "format", format, sizeof(format)) == 0 &&
                  strcasecmp(format, "detailed") == 0;
    s->interactive = strcmp(mode, "interactive") == 0;
    s->reset = sim_reset_drawn(r);
    snprintf(s->socket_id, sizeof(s->socket_id), "%s", sim_request_id(r));
    s->ws = sim_ws_accept(r, NULL, &stt_ops, s);
    if (s->ws == NULL)
        free(s);
}

/* ---- TTS ------------------------------------------------------------------ */

struct tts_turn {
    char rid[SIM_AZURE_HDR_MAX];
    int64_t audio_ms;
    struct tts_turn *next;
};

struct tts {
    struct sim_ws *ws;
    const struct config_sim_tunables *tun;
    bool reset; /* the "reset" fault: drop after half the first clip */
    char socket_id[SIM_AZURE_HDR_MAX];
    unsigned turns;
    char format[64]; /* synthesis.context's outputFormat */
    struct tts_turn *queue, *tail;
    size_t queued;
    struct tts_turn *cur; /* the turn being spoken */
    char stream_id[48];
    struct sim_audio_gen gen;
    int64_t start;   /* mono_ms() of the turn's first frame */
    int64_t sent_ms; /* audio sent */
    int64_t clip_ms;
    uint8_t *buf;
    size_t buf_size;
};

static void tts_next(struct tts *t);

static void tts_pump(void *arg)
{
    struct tts *t = arg;
    struct sim_ws *ws = t->ws;
    /* Bounded: every pass sends one more frame of a finite clip, or
     * returns. */
    for (;;) {
        if (sim_audio_gen_done(&t->gen)) {
            send_json(ws, "audio.metadata", t->cur->rid,
                      json_pack("{s[{ss s{sI}}]}", "Metadata", "Type", "SessionEnd", "Data",
                                "Offset", (json_int_t)(t->clip_ms * SIM_AZURE_TICKS_PER_MS)));
            send_json(ws, "turn.end", t->cur->rid, json_object());
            free(t->cur);
            t->cur = NULL;
            tts_next(t);
            return;
        }
        if (t->reset && t->sent_ms >= t->clip_ms / 2) {
            sim_ws_drop(ws);
            return;
        }
        int64_t wait = t->start + sim_pace_audio_ms(t->tun->audio_rtf_ppm, t->sent_ms) - mono_ms();
        if (wait > 0) {
            sim_ws_after(ws, wait, tts_pump, t);
            return;
        }
        int64_t until = t->sent_ms + SIM_AZURE_TTS_CHUNK_MS;
        size_t need = 512 + sim_audio_gen_pending(&t->gen, until);
        if (need > t->buf_size) {
            uint8_t *b = realloc(t->buf, need);
            if (b == NULL) {
                sim_ws_close(ws, WS_CLOSE_INTERNAL, "out of memory");
                return;
            }
            t->buf = b;
            t->buf_size = need;
        }
        size_t head =
            sim_azure_binary_head("audio", t->cur->rid, t->stream_id, now_ms(), t->buf, 512);
        size_t n = sim_audio_gen_write(&t->gen, until, t->buf + head);
        if (head > 0)
            sim_ws_send(ws, false, t->buf, head + n);
        t->sent_ms = until;
    }
}

/* Starts the next waiting turn, if any. */
static void tts_next(struct tts *t)
{
    struct tts_turn *turn = t->queue;
    if (turn == NULL || t->cur != NULL)
        return;
    t->queue = turn->next;
    if (t->queue == NULL)
        t->tail = NULL;
    t->queued--;
    t->cur = turn;
    struct sim_audio_format f;
    if (sim_azure_output_format(t->format, &f) == -1) {
        char why[120];
        snprintf(why, sizeof(why), "Unsupported output format: %.60s (simulated Azure)", t->format);
        sim_ws_close(t->ws, WS_CLOSE_INVALID_DATA, why);
        return;
    }
    char tag[SIM_AZURE_HDR_MAX + 16];
    snprintf(tag, sizeof(tag), "%s%08x", t->socket_id, ++t->turns);
    /* The stream id is upper-case hex, as the service writes it. */
    snprintf(t->stream_id, sizeof(t->stream_id), "%.24s%08X", t->socket_id, t->turns);
    for (char *c = t->stream_id; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    send_json(t->ws, "turn.start", turn->rid, turn_context(tag));
    json_t *resp = turn_context(tag);
    json_object_set_new(resp, "audio",
                        json_pack("{ss ss}", "type", "inline", "streamId", t->stream_id));
    send_json(t->ws, "response", turn->rid, resp);
    sim_audio_gen_init(&t->gen, &f, turn->audio_ms);
    t->clip_ms = sim_audio_gen_ms(&t->gen);
    t->sent_ms = 0;
    /* The turn's time to first audio. */
    t->start = mono_ms() + t->tun->ttfb_ms;
    if (t->tun->ttfb_ms > 0)
        sim_ws_after(t->ws, t->tun->ttfb_ms, tts_pump, t);
    else
        tts_pump(t);
}

static void tts_ssml(struct tts *t, const struct sim_azure_msg *m)
{
    const char *ssml = (const char *)m->body;
    if (memmem(ssml, m->body_len, "<speak", 6) == NULL) {
        sim_ws_close(t->ws, WS_CLOSE_INVALID_DATA, "Invalid SSML: no <speak> element");
        return;
    }
    if (t->queued >= TTS_QUEUE_MAX) {
        sim_ws_close(t->ws, WS_CLOSE_POLICY, "Too many SSML requests waiting (simulated Azure)");
        return;
    }
    struct tts_turn *turn = calloc(1, sizeof(*turn));
    if (turn == NULL) {
        sim_ws_close(t->ws, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    snprintf(turn->rid, sizeof(turn->rid), "%s", m->request_id);
    int64_t chars = azure_ssml_characters(ssml, m->body_len, NULL);
    turn->audio_ms = MIN(sim_speech_ms(chars), (int64_t)SIM_AZURE_TTS_MAX_MS);
    if (t->tail != NULL)
        t->tail->next = turn;
    else
        t->queue = turn;
    t->tail = turn;
    t->queued++;
    tts_next(t);
}

static void tts_context(struct tts *t, const struct sim_azure_msg *m)
{
    json_t *root = json_loadb((const char *)m->body, m->body_len, 0, NULL);
    const char *f = json_string_value(json_object_get(
        json_object_get(json_object_get(root, "synthesis"), "audio"), "outputFormat"));
    if (f != NULL)
        snprintf(t->format, sizeof(t->format), "%s", f);
    json_decref(root);
}

static void tts_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct tts *t = sim_ws_arg(ws);
    struct sim_azure_msg m;
    if (sim_azure_msg_parse(text, data, len, &m) == -1) {
        sim_ws_close(ws, WS_CLOSE_INVALID_DATA, "Invalid message framing");
        return;
    }
    if (strcmp(m.path, "ssml") == 0)
        tts_ssml(t, &m);
    else if (strcmp(m.path, "synthesis.context") == 0)
        tts_context(t, &m);
}

static void tts_close(struct sim_ws *ws, int code)
{
    struct tts *t = sim_ws_arg(ws);
    (void)code;
    while (t->queue != NULL) {
        struct tts_turn *next = t->queue->next;
        free(t->queue);
        t->queue = next;
    }
    free(t->cur);
    free(t->buf);
    free(t);
}

static const struct sim_ws_ops tts_ops = {tts_message, tts_close};

void sim_azure_tts_socket(struct sim_request *r)
{
    struct tts *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    t->tun = sim_tunables(r);
    t->reset = sim_reset_drawn(r);
    snprintf(t->socket_id, sizeof(t->socket_id), "%s", sim_request_id(r));
    snprintf(t->format, sizeof(t->format), "%s", DEFAULT_FORMAT);
    t->ws = sim_ws_accept(r, NULL, &tts_ops, t);
    if (t->ws == NULL)
        free(t);
}
