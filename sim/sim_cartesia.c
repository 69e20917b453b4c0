/* sim_cartesia.c - simulated Cartesia (PROVIDERS.md §4.2), upstream
 * "cartesia":
 *
 *   POST /tts/bytes      audio of output_format (container raw | wav | mp3;
 *                        encoding pcm_s16le | pcm_f32le | pcm_mulaw |
 *                        pcm_alaw; sample_rate; mp3 bit_rate) as long as
 *                        the transcript takes to speak (15 characters a
 *                        second x generation_config.speed), chunked and
 *                        paced at audio_rtf (100 ms pieces)
 *   POST /tts/sse        the same audio (raw only) as "chunk" events
 *                        {type, data (base64), done: false, status_code
 *                        206, step_time, context_id}, word "timestamps"
 *                        events when add_timestamps, then "done"
 *   WS   /tts/websocket  generation requests per context_id: each
 *                        transcript's audio as chunk messages paced at
 *                        audio_rtf (with timestamps when asked), then done
 *                        once a request has continue != true; flush:
 *                        flush_done with the context's flush_id; cancel:
 *                        the context's queued audio dropped; contexts are
 *                        generated one after the other (the real service
 *                        interleaves them)
 *   GET  /voices
 *
 * Keys: X-API-Key, Authorization: Bearer, or ?api_key= / ?access_token=
 * (browsers); Cartesia-Version is not required. Errors {"error",
 * "status_code"}, on the socket {type: "error", ...}. Not simulated: infill,
 * voice cloning and the other API families, STT, phoneme timestamps,
 * max_buffer_delay_ms (text is generated as it comes). */
#include "common.h"
#include "meter.h"
#include "sim_audio.h"
#include "sim_provider.h"
#include "sim_speaker.h"
#include "urlenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIECE_MS       100
#define CONTEXT_ID_MAX 128

/* ---- shared pieces ------------------------------------------------------------ */

/* output_format -> f; -1 with the message in *why when it is not one
 * Cartesia takes (raw_only: the streaming endpoints). */
static int cart_format(json_t *o, bool raw_only, struct sim_audio_format *f, const char **why)
{
    static const struct {
        const char *name;
        enum sim_audio_codec codec;
    } encodings[] = {{"pcm_s16le", SIM_AUDIO_PCM16},
                     {"pcm_f32le", SIM_AUDIO_F32},
                     {"pcm_mulaw", SIM_AUDIO_MULAW},
                     {"pcm_alaw", SIM_AUDIO_ALAW}};
    const char *container = json_string_value(json_object_get(o, "container"));
    const char *encoding = json_string_value(json_object_get(o, "encoding"));
    json_t *rate = json_object_get(o, "sample_rate"), *br = json_object_get(o, "bit_rate");
    bool raw = container != NULL && strcmp(container, "raw") == 0;
    bool wav = container != NULL && strcmp(container, "wav") == 0;
    bool mp3 = container != NULL && strcmp(container, "mp3") == 0;
    uint32_t r = json_is_integer(rate) ? (uint32_t)json_integer_value(rate) : 0;
    if (raw_only && (wav || mp3)) {
        *why = "output_format: only the raw container streams here (wav and mp3: /tts/bytes)";
        return -1;
    }
    if (mp3 &&
        sim_audio_format_set(f, SIM_AUDIO_MP3, false, r,
                             json_is_integer(br) ? (uint32_t)json_integer_value(br) : 128000) == 0)
        return 0;
    for (size_t i = 0; (raw || wav) && encoding != NULL && i < ARRAY_SIZE(encodings); i++)
        if (strcmp(encoding, encodings[i].name) == 0 &&
            sim_audio_format_set(f, encodings[i].codec, wav, r, 0) == 0) {
            if (raw)
                f->mime = "application/octet-stream";
            return 0;
        }
    *why = "output_format: expected {container: raw|wav|mp3, encoding: pcm_s16le|pcm_f32le|"
           "pcm_mulaw|pcm_alaw, sample_rate} (mp3: sample_rate and bit_rate)";
    return -1;
}

static double cart_speed(json_t *body)
{
    json_t *s = json_object_get(json_object_get(body, "generation_config"), "speed");
    return json_is_number(s) && json_number_value(s) > 0 ? json_number_value(s) : 1.0;
}

/* A generation request's transcript, model and voice, checked; the
 * message for the first that is wrong. */
static const char *check_request(json_t *body, bool need_transcript)
{
    if (!json_is_object(body))
        return "the body must be a JSON object";
    const char *model = json_string_value(json_object_get(body, "model_id"));
    if (model == NULL || model[0] == '\0')
        return "model_id is required";
    if (need_transcript && !json_is_string(json_object_get(body, "transcript")))
        return "transcript is required";
    json_t *voice = json_object_get(body, "voice");
    if (!json_is_string(voice) && !json_is_string(json_object_get(voice, "id")))
        return "voice is required: {\"mode\": \"id\", \"id\": \"...\"}";
    return NULL;
}

/* Word timestamps of the words of text starting in [from_ms, to_ms) of
 * total_ms (characters share the audio evenly); NULL when none. */
static json_t *word_timestamps(const char *text, int64_t total_ms, int64_t from_ms, int64_t to_ms)
{
    size_t len = strlen(text);
    int64_t n = meter_utf8_chars(text, len), k = 0;
    json_t *words = json_array(), *start = json_array(), *end = json_array();
    for (size_t i = 0; i < len && n > 0;) {
        while (i < len && text[i] == ' ') {
            i++;
            k++;
        }
        size_t w = i;
        int64_t kw = k;
        while (i < len && text[i] != ' ') {
            if (((unsigned char)text[i] & 0xC0) != 0x80)
                k++;
            i++;
        }
        double s = (double)total_ms * (double)kw / (double)n,
               e = (double)total_ms * (double)k / (double)n;
        if (i > w && s >= (double)from_ms && s < (double)to_ms) {
            json_array_append_new(words, json_stringn(text + w, i - w));
            json_array_append_new(start, json_real(s / 1000.0));
            json_array_append_new(end, json_real(e / 1000.0));
        }
    }
    if (json_array_size(words) == 0) {
        json_decref(words);
        json_decref(start);
        json_decref(end);
        return NULL;
    }
    return json_pack("{so so so}", "words", words, "start", start, "end", end);
}

/* ---- /tts/bytes and /tts/sse ------------------------------------------------------- */

struct gen {
    char *text;
    char ctx[CONTEXT_ID_MAX];
    int64_t ms;
    bool sse, timestamps;
    struct sim_audio_out out;
    struct evbuffer *buf;
};

static void gen_free(void *p)
{
    struct gen *g = p;
    if (g != NULL) {
        free(g->text);
        if (g->buf != NULL)
            evbuffer_free(g->buf);
    }
    free(g);
}

/* The chunk message of piece i (its audio rendered into g->buf, drained),
 * and its timestamps message (NULL when none or not asked). */
static json_t *chunk_msg(struct gen *g, size_t i, int64_t rtf_ppm, json_t **ts)
{
    int64_t from = (int64_t)i * PIECE_MS, to = MIN(from + PIECE_MS, g->ms);
    *ts = NULL;
    if (sim_audio_render(&g->out, to, g->buf) == -1)
        return NULL;
    size_t len = evbuffer_get_length(g->buf);
    char *b64 = sim_audio_base64(evbuffer_pullup(g->buf, -1), len);
    evbuffer_drain(g->buf, len);
    if (b64 == NULL)
        return NULL;
    json_t *o = json_pack("{ss ss sb si sf ss}", "type", "chunk", "data", b64, "done", 0,
                          "status_code", 206, "step_time",
                          (double)sim_pace_audio_ms(rtf_ppm, to - from), "context_id", g->ctx);
    free(b64);
    json_t *w = g->timestamps ? word_timestamps(g->text, g->ms, from, to) : NULL;
    if (w != NULL)
        *ts = json_pack("{ss sb si ss so}", "type", "timestamps", "done", 0, "status_code", 206,
                        "context_id", g->ctx, "word_timestamps", w);
    return o;
}

static void http_piece(struct sim_request *r, size_t i)
{
    struct gen *g = sim_state(r);
    if (!g->sse) {
        if (sim_audio_render(&g->out, (int64_t)(i + 1) * PIECE_MS, g->buf) == -1) {
            sim_cut(r);
            return;
        }
        size_t len = evbuffer_get_length(g->buf);
        sim_stream_write(r, (const char *)evbuffer_pullup(g->buf, -1), len);
        evbuffer_drain(g->buf, len);
        return;
    }
    json_t *ts;
    json_t *chunk = chunk_msg(g, i, sim_tunables(r)->audio_rtf_ppm, &ts);
    if (chunk == NULL) {
        sim_cut(r);
        return;
    }
    sim_sse(r, "chunk", chunk);
    if (ts != NULL)
        sim_sse(r, "timestamps", ts);
}

static void http_done(struct sim_request *r)
{
    struct gen *g = sim_state(r);
    if (g->sse)
        sim_sse(r, "done",
                json_pack("{ss sb si ss}", "type", "done", "done", 1, "status_code", 200,
                          "context_id", g->ctx));
}

static const struct sim_token_ops http_ops = {http_piece, http_done};

static void tts(struct sim_request *r, bool sse)
{
    json_t *body = sim_json(r);
    const char *why = check_request(body, true);
    struct sim_audio_format f;
    if (why != NULL || cart_format(json_object_get(body, "output_format"), sse, &f, &why) == -1) {
        sim_error(r, SIM_ERR_BAD_REQUEST, why);
        return;
    }
    struct gen *g = calloc(1, sizeof(*g));
    const char *text = json_string_value(json_object_get(body, "transcript"));
    if (g == NULL || (g->text = strdup(text)) == NULL || (g->buf = evbuffer_new()) == NULL) {
        gen_free(g);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_set_state(r, g, gen_free);
    const char *ctx = json_string_value(json_object_get(body, "context_id"));
    if (ctx != NULL)
        snprintf(g->ctx, sizeof(g->ctx), "%s", ctx);
    else
        snprintf(g->ctx, sizeof(g->ctx), "ctx_%016llx", (unsigned long long)sim_rand(r));
    g->sse = sse;
    g->timestamps = json_is_true(json_object_get(body, "add_timestamps"));
    g->ms = sim_audio_speech_ms(meter_utf8_chars(text, strlen(text)), cart_speed(body));
    sim_audio_out_init(&g->out, &f, g->ms);
    sim_stream_begin(r, 200, sse ? "text/event-stream" : f.mime, NULL, 0);
    size_t n = (size_t)MAX((int64_t)1, (g->ms + PIECE_MS - 1) / PIECE_MS);
    sim_stream_audio(r, n, PIECE_MS, &http_ops);
}

static void tts_bytes(struct sim_request *r)
{
    tts(r, false);
}

static void tts_sse(struct sim_request *r)
{
    tts(r, true);
}

static void voices(struct sim_request *r)
{
    sim_reply_json(r, 200,
                   json_pack("{s[{ss ss ss ss sb}] sb sn}", "data", "id",
                             "a0e99841-438c-4a64-b679-ae501e7d6091", "name", "Simulated Voice",
                             "description", "a voice of the byok simulator", "language", "en",
                             "is_public", 1, "has_more", 0, "next_page"),
                   NULL, 0);
}

/* ---- the WebSocket ---------------------------------------------------------------- */

struct cart_ws {
    struct sim_ws *ws;
    struct sim_speaker *sp;
    uint64_t flushes; /* flush_done ids given */
};

/* One queued reply of a context: a transcript's audio, then (done) its
 * done message, or (flush) a flush_done. */
struct ws_gen {
    struct cart_ws *cw;
    struct gen g;
    size_t pieces;
    bool done;     /* send done after the audio */
    int64_t flush; /* > 0: send flush_done with this id after the audio */
    int64_t rtf;
};

static void ws_gen_free(void *u)
{
    struct ws_gen *w = u;
    if (w != NULL) {
        free(w->g.text);
        if (w->g.buf != NULL)
            evbuffer_free(w->g.buf);
    }
    free(w);
}

static void cart_send(struct cart_ws *cw, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s != NULL)
        sim_ws_send(cw->ws, true, s, strlen(s));
    free(s);
}

static void ws_piece(struct sim_ws *ws, void *u, size_t i)
{
    struct ws_gen *w = u;
    json_t *ts;
    (void)ws;
    json_t *chunk = chunk_msg(&w->g, i, w->rtf, &ts);
    if (chunk != NULL)
        cart_send(w->cw, chunk);
    if (ts != NULL)
        cart_send(w->cw, ts);
}

static void ws_done(struct sim_ws *ws, void *u)
{
    struct ws_gen *w = u;
    (void)ws;
    if (w->flush > 0)
        cart_send(w->cw, json_pack("{ss ss sI sb sb si}", "type", "flush_done", "context_id",
                                   w->g.ctx, "flush_id", (json_int_t)w->flush, "flush_done", 1,
                                   "done", 0, "status_code", 206));
    if (w->done)
        cart_send(w->cw, json_pack("{ss sb si ss}", "type", "done", "done", 1, "status_code", 206,
                                   "context_id", w->g.ctx));
}

static const struct sim_speaker_ops ws_gen_ops = {ws_piece, ws_done, ws_gen_free};

static bool same_context(void *u, void *arg)
{
    return strcmp(((struct ws_gen *)u)->g.ctx, arg) == 0;
}

static void ws_error(struct cart_ws *cw, const char *ctx, const char *message)
{
    json_t *o = json_pack("{ss si sb ss}", "type", "error", "status_code", 400, "done", 1, "error",
                          message);
    if (ctx != NULL)
        json_object_set_new(o, "context_id", json_string(ctx));
    cart_send(cw, o);
}

static void ws_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct cart_ws *cw = sim_ws_arg(ws);
    json_t *msg = text ? json_loadb((const char *)data, len, 0, NULL) : NULL;
    if (!json_is_object(msg)) {
        json_decref(msg);
        ws_error(cw, NULL, "invalid JSON: expected a generation request object");
        return;
    }
    const char *cid = json_string_value(json_object_get(msg, "context_id"));
    char ctx[CONTEXT_ID_MAX];
    if (cid != NULL)
        snprintf(ctx, sizeof(ctx), "%s", cid);
    else
        snprintf(ctx, sizeof(ctx), "ctx_%016llx", (unsigned long long)sim_ws_rand(ws));
    if (json_is_true(json_object_get(msg, "cancel"))) {
        sim_speaker_cancel(cw->sp, same_context, ctx);
        json_decref(msg);
        return;
    }
    const char *why = check_request(msg, true);
    struct sim_audio_format f;
    if (why != NULL || cart_format(json_object_get(msg, "output_format"), true, &f, &why) == -1) {
        ws_error(cw, ctx, why);
        json_decref(msg);
        return;
    }
    struct ws_gen *w = calloc(1, sizeof(*w));
    const char *t = json_string_value(json_object_get(msg, "transcript"));
    if (w == NULL || (w->g.text = strdup(t)) == NULL || (w->g.buf = evbuffer_new()) == NULL) {
        ws_gen_free(w);
        json_decref(msg);
        sim_ws_close(ws, 1011, "out of memory");
        return;
    }
    w->cw = cw;
    snprintf(w->g.ctx, sizeof(w->g.ctx), "%s", ctx);
    w->g.timestamps = json_is_true(json_object_get(msg, "add_timestamps"));
    w->g.ms = sim_audio_speech_ms(meter_utf8_chars(t, strlen(t)), cart_speed(msg));
    w->done = !json_is_true(json_object_get(msg, "continue"));
    /* (flush ids count per socket: increasing within each context too) */
    w->flush = json_is_true(json_object_get(msg, "flush")) ? (int64_t)++cw->flushes : 0;
    w->rtf = sim_ws_tunables(ws)->audio_rtf_ppm;
    w->pieces = w->g.ms > 0 ? (size_t)((w->g.ms + PIECE_MS - 1) / PIECE_MS) : 0;
    sim_audio_out_init(&w->g.out, &f, w->g.ms);
    json_decref(msg);
    if (sim_speaker_say(cw->sp, w->pieces, PIECE_MS, &ws_gen_ops, w) == -1)
        sim_ws_close(ws, 1011, "out of memory");
}

static void ws_close(struct sim_ws *ws, int code)
{
    struct cart_ws *cw = sim_ws_arg(ws);
    (void)code;
    sim_speaker_free(cw->sp);
    free(cw);
}

static const struct sim_ws_ops cart_ops = {ws_message, ws_close};

static void websocket(struct sim_request *r)
{
    struct cart_ws *cw = calloc(1, sizeof(*cw));
    if (cw == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    struct sim_ws *ws = sim_ws_accept(r, NULL, &cart_ops, cw);
    if (ws == NULL) {
        free(cw);
        return;
    }
    cw->ws = ws;
    if ((cw->sp = sim_speaker_new(ws)) == NULL)
        sim_ws_close(ws, 1011, "out of memory");
}

/* ---- keys and errors ----------------------------------------------------------------- */

static bool query_key(struct sim_request *r, const char *name)
{
    const struct httpparse_request *h = sim_head(r);
    char v[8];
    if (h->query == NULL)
        return false;
    /* Long keys do not fit v: present and non-empty is what counts. */
    int rc = urlenc_query_get(h->query, h->query_len, name, v, sizeof(v));
    if (rc == 0)
        return v[0] != '\0';
    struct urlenc_query it;
    struct urlenc_pair p;
    urlenc_query_init(&it, h->query, h->query_len);
    while (urlenc_query_next(&it, &p))
        if (urlenc_name_is(&p, name) && p.value_len > 0)
            return true;
    return false;
}

static bool authorized(struct sim_request *r)
{
    return sim_has_key(r, "x-api-key", NULL) || sim_has_key(r, "authorization", "Bearer") ||
           query_key(r, "api_key") || query_key(r, "access_token");
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    static const struct {
        int status;
        const char *message;
    } shapes[] = {
        [SIM_ERR_BAD_REQUEST] = {400, "invalid request"},
        [SIM_ERR_UNAUTHORIZED] = {401, "Invalid API key (simulated Cartesia: none was sent)"},
        [SIM_ERR_NOT_FOUND] = {404, "Not found"},
        [SIM_ERR_RATE_LIMIT] = {429, "Rate limit exceeded (simulated Cartesia)"},
        [SIM_ERR_SERVER] = {500, "Internal server error (simulated Cartesia)"},
    };
    char message[512];
    if ((what == SIM_ERR_BAD_REQUEST || what == SIM_ERR_NOT_FOUND) && detail != NULL)
        snprintf(message, sizeof(message), "%s%s", what == SIM_ERR_NOT_FOUND ? "Not found: " : "",
                 detail);
    else
        snprintf(message, sizeof(message), "%s", shapes[what].message);
    struct http_kv retry = {"retry-after", "1"};
    sim_reply_json(r, shapes[what].status,
                   json_pack("{ss si}", "error", message, "status_code", shapes[what].status),
                   &retry, what == SIM_ERR_RATE_LIMIT ? 1 : 0);
}

static const struct sim_route routes[] = {
    {"POST", "/tts/bytes", tts_bytes, NULL},
    {"POST", "/tts/sse", tts_sse, NULL},
    {"GET", "/tts/websocket", NULL, websocket},
    {"GET", "/voices", voices, NULL},
};

const struct sim_provider sim_cartesia = {
    .upstream = "cartesia",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "x-request-id",
    .request_id_prefix = "",
};
