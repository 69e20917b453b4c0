/* sim_deepgram_live.c - Deepgram's live transcription socket (WS
 * /v1/listen), simulated; results are paced by the audio received:
 *
 *   binary audio              counted; its length from encoding=,
 *                             sample_rate=, channels= (linear16, linear32,
 *                             mulaw, alaw), else from a WAV header in the
 *                             first message, else the wall clock since the
 *                             first audio (opus, flac, containers)
 *   the first audio        ─> SpeechStarted (vad_events=true)
 *   every 500 ms of audio  ─> Results is_final false (interim_results=true)
 *   every 2 s of audio     ─> Results is_final true, speech_final true, then
 *                             UtteranceEnd (utterance_end_ms=)
 *   {"type":"KeepAlive"}      nothing (it keeps the socket open)
 *   {"type":"Finalize"}    ─> Results is_final true, from_finalize true, of
 *                             the audio since the last final one
 *   {"type":"CloseStream"} ─> the last final Results, Metadata {request_id,
 *   (or an empty message)     sha256 of the audio, created, duration,
 *                             channels, models, model_info}, close 1000
 *   nothing for 10 s       ─> close 1011 NET-0001, as Deepgram does
 *   anything else          ─> close 1008
 *
 * Metadata's duration is the audio's length, what the proxy bills. A
 * "reset" fault drops the socket without a close frame after the first
 * Results. */
#include "common.h"
#include "audio.h"
#include "sim_deepgram.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define FINAL_MS   2000
#define INTERIM_MS 500
#define IDLE_MS    10000

struct live {
    struct sim_ws *ws;
    bool reset;      /* the "reset" fault: drop after the first Results */
    bool interim;    /* interim_results=true */
    bool punctuate;  /* punctuate or smart_format */
    bool vad_events; /* SpeechStarted */
    bool utterance_end;
    bool started;  /* SpeechStarted sent (or not asked for) and audio came */
    bool wav_read; /* the first audio message was looked at */
    bool dropped;  /* the socket is being dropped or closed: nothing more */
    int channels;
    char request_id[64];
    struct sim_deepgram_model model;
    uint64_t bytes_per_sec; /* 0: the wall clock */
    uint64_t bytes;
    int64_t first_mono; /* mono_ms() of the first audio, -1 before */
    int64_t final_ms;   /* end of the last final result */
    int64_t interim_ms; /* audio at the last result */
    size_t word;        /* the next word of the transcript */
    EVP_MD_CTX *sha;
};

static int64_t audio_ms(const struct live *l)
{
    if (l->bytes_per_sec > 0)
        return (int64_t)(l->bytes * 1000 / l->bytes_per_sec);
    return l->first_mono >= 0 ? mono_ms() - l->first_mono : 0;
}

static void send_json(struct live *l, json_t *v)
{
    char *text = sim_deepgram_dump(v);
    if (text != NULL)
        sim_ws_send(l->ws, true, text, strlen(text));
    else
        log_error("sim deepgram: out of memory sending a message");
    free(text);
}

/* A Results message of the audio from start_ms to end_ms; a final one
 * moves the transcript on. */
static void results(struct live *l, int64_t start_ms, int64_t end_ms, bool is_final,
                    bool speech_final, bool from_finalize)
{
    size_t words = (size_t)sim_transcript_words(end_ms - start_ms);
    json_t *m = json_pack(
        "{ss s[ii] sf sf sb sb s{s[o]} s{ss so ss} sb}", "type", "Results", "channel_index", 0,
        l->channels, "duration", (double)(end_ms - start_ms) / 1000.0, "start",
        (double)start_ms / 1000.0, "is_final", is_final, "speech_final", speech_final, "channel",
        "alternatives", sim_deepgram_alternative(l->word, words, start_ms, end_ms, l->punctuate),
        "metadata", "request_id", l->request_id, "model_info", sim_deepgram_model_info(&l->model),
        "model_uuid", l->model.uuid, "from_finalize", from_finalize);
    send_json(l, m);
    l->interim_ms = end_ms;
    if (is_final) {
        l->word += words;
        l->final_ms = end_ms;
        if (l->utterance_end && words > 0)
            send_json(l, json_pack("{ss s[ii] sf}", "type", "UtteranceEnd", "channel", 0,
                                   l->channels, "last_word_end", (double)end_ms / 1000.0));
    }
    if (l->reset) {
        l->dropped = true;
        sim_ws_drop(l->ws);
    }
}

static void close_stream(struct live *l)
{
    int64_t ms = audio_ms(l);
    if (ms > l->final_ms)
        results(l, l->final_ms, ms, true, true, false);
    if (l->dropped)
        return;
    unsigned char md[32];
    unsigned int md_len = 0;
    char sha[65] = "", created[32];
    if (EVP_DigestFinal_ex(l->sha, md, &md_len) == 1 && md_len == 32)
        sim_deepgram_hex(md, 32, sha);
    sim_deepgram_created(created);
    json_t *info = json_object();
    json_object_set_new(info, l->model.uuid, sim_deepgram_model_info(&l->model));
    send_json(l, json_pack("{ss ss ss ss ss sf si s[s] so}", "type", "Metadata", "transaction_key",
                           "deprecated", "request_id", l->request_id, "sha256", sha, "created",
                           created, "duration", (double)ms / 1000.0, "channels", l->channels,
                           "models", l->model.uuid, "model_info", info));
    l->dropped = true;
    sim_ws_close(l->ws, WS_CLOSE_NORMAL, NULL);
}

static void audio(struct live *l, const uint8_t *data, size_t len)
{
    struct audio_wav w;
    if (!l->wav_read && l->bytes_per_sec == 0 && len >= 4 && memcmp(data, "RIFF", 4) == 0 &&
        audio_wav_header(data, len, &w) == 0 && w.bytes_per_sec > 0) {
        /* Audio in a WAV stream: its header says the rate, its bytes are
         * not audio. */
        l->bytes_per_sec = w.bytes_per_sec;
        size_t skip = w.data_offset > 0 ? MIN(w.data_offset, len) : len;
        data += skip;
        len -= skip;
    }
    l->wav_read = true;
    if (len == 0)
        return;
    if (l->first_mono < 0)
        l->first_mono = mono_ms();
    l->bytes += len;
    EVP_DigestUpdate(l->sha, data, len);
    if (!l->started) {
        l->started = true;
        if (l->vad_events)
            send_json(l, json_pack("{ss s[i] sf}", "type", "SpeechStarted", "channel", 0,
                                   "timestamp", (double)l->final_ms / 1000.0));
    }
    int64_t ms = audio_ms(l);
    /* Bounded: each pass moves final_ms on by FINAL_MS, up to ms. */
    while (!l->dropped && ms - l->final_ms >= FINAL_MS)
        results(l, l->final_ms, l->final_ms + FINAL_MS, true, true, false);
    if (!l->dropped && l->interim && ms - l->interim_ms >= INTERIM_MS && ms > l->final_ms)
        results(l, l->final_ms, ms, false, false, false);
}

static void idle(void *arg)
{
    struct live *l = arg;
    l->dropped = true;
    sim_ws_close(l->ws, WS_CLOSE_INTERNAL,
                 "NET-0001: no audio or message within 10 s (simulated Deepgram)");
}

static void control(struct live *l, const uint8_t *data, size_t len)
{
    json_t *root = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(root, "type"));
    if (type != NULL && strcmp(type, "KeepAlive") == 0) {
        /* nothing: the idle timer is re-armed */
    } else if (type != NULL && strcmp(type, "Finalize") == 0) {
        int64_t ms = audio_ms(l);
        results(l, l->final_ms, MAX(ms, l->final_ms), true, false, true);
    } else if (type != NULL && strcmp(type, "CloseStream") == 0) {
        close_stream(l);
    } else {
        l->dropped = true;
        sim_ws_close(l->ws, WS_CLOSE_POLICY,
                     "DATA-0000: expected audio or a KeepAlive, Finalize or CloseStream message");
    }
    json_decref(root);
}

static void on_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct live *l = sim_ws_arg(ws);
    if (l->dropped)
        return;
    sim_ws_after(ws, IDLE_MS, idle, l);
    if (text)
        control(l, data, len);
    else if (len == 0)
        close_stream(l); /* the older way to end the stream */
    else
        audio(l, data, len);
}

static void on_close(struct sim_ws *ws, int code)
{
    struct live *l = sim_ws_arg(ws);
    (void)code;
    EVP_MD_CTX_free(l->sha);
    free(l);
}

static const struct sim_ws_ops live_ops = {on_message, on_close};

/* The subprotocol to answer: "token" or "bearer" when the client offered
 * its key that way (never the key itself); NULL otherwise. */
static const char *answer_protocol(struct sim_request *r)
{
    size_t len = 0;
    const char *v = sim_header(r, "sec-websocket-protocol", &len);
    if (v == NULL)
        return NULL;
    while (len > 0 && *v == ' ')
        v++, len--;
    if (len >= 5 && strncasecmp(v, "token", 5) == 0 && (len == 5 || v[5] == ',' || v[5] == ' '))
        return "token";
    if (len >= 6 && strncasecmp(v, "bearer", 6) == 0 && (len == 6 || v[6] == ',' || v[6] == ' '))
        return "bearer";
    return NULL;
}

void sim_deepgram_live(struct sim_request *r)
{
    char enc[16], rate[16], ch[8], uem[16];
    uint64_t bps = 0;
    sim_deepgram_query(r, "encoding", enc, sizeof(enc));
    sim_deepgram_query(r, "sample_rate", rate, sizeof(rate));
    sim_deepgram_query(r, "channels", ch, sizeof(ch));
    if (sim_deepgram_encoding(enc, rate, ch, &bps) == -1) {
        sim_error(r, SIM_ERR_BAD_REQUEST,
                  "Bad Request: encoding needs a sample_rate (and a known encoding and "
                  "channel count)");
        return;
    }
    struct live *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->sha = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(l->sha, EVP_sha256(), NULL) != 1) {
        if (l != NULL)
            EVP_MD_CTX_free(l->sha);
        free(l);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    l->bytes_per_sec = bps;
    l->channels = ch[0] ? (int)strtol(ch, NULL, 10) : 1;
    l->first_mono = -1;
    l->reset = sim_reset_drawn(r);
    l->interim = sim_deepgram_query_true(r, "interim_results");
    l->punctuate =
        sim_deepgram_query_true(r, "punctuate") || sim_deepgram_query_true(r, "smart_format");
    l->vad_events = sim_deepgram_query_true(r, "vad_events");
    sim_deepgram_query(r, "utterance_end_ms", uem, sizeof(uem));
    l->utterance_end = uem[0] != '\0' && strtol(uem, NULL, 10) > 0;
    sim_deepgram_model(r, &l->model);
    snprintf(l->request_id, sizeof(l->request_id), "%s", sim_request_id(r));
    l->ws = sim_ws_accept(r, answer_protocol(r), &live_ops, l);
    if (l->ws == NULL) {
        EVP_MD_CTX_free(l->sha);
        free(l);
        return;
    }
    sim_ws_after(l->ws, IDLE_MS, idle, l);
}
