/* sim_elevenlabs.c - simulated ElevenLabs (PROVIDERS.md §2), upstream
 * "elevenlabs":
 *
 *   POST /v1/text-to-speech/{id}                  audio of output_format
 *        .../stream                               (mp3_44100_128 default;
 *        .../with-timestamps                      mp3_*, pcm_*, ulaw_8000,
 *        .../stream/with-timestamps               alaw_8000, opus_48000_*,
 *                                                 wav_*: sim_audio.h) as long
 *        as the text takes to speak (15 characters a second x
 *        voice_settings.speed); /stream chunked and paced at audio_rtf (100
 *        ms pieces), the plain form whole once generated (audio length x
 *        audio_rtf); with-timestamps as {audio_base64, alignment,
 *        normalized_alignment} (characters share the audio evenly), its
 *        stream as one such JSON line per piece. Headers: character-cost
 *        (the text's code points, half rounded up for turbo / flash models:
 *        what the proxy meters without it), request-id, history-item-id,
 *        current- / maximum-concurrent-requests.
 *   GET  /v1/voices, /v1/voices/{id}, /v1/models, /v1/user/subscription
 *   WS   /v1/text-to-speech/{id}/stream-input     key on the handshake
 *        (xi-api-key, Bearer) or in the first message (xi_api_key,
 *        authorization); text gathers until the chunk_length_schedule
 *        (first message's generation_config; default 120, 160, 250, 290
 *        characters), flush, try_trigger_generation or auto_mode; each
 *        generation is audio messages {audio, isFinal: null,
 *        normalizedAlignment, alignment} paced at audio_rtf; {"text": ""}
 *        generates the rest, then {"isFinal": true} and a close 1000
 *   WS   .../multi-stream-input                   the same per context_id
 *        (messages carry contextId; close_context ends one with its
 *        isFinal, close_socket all, then 1000; five contexts at most)
 *
 * Errors: {"detail": {"status", "message"}} (422 validation as a list, a
 * wrong route as FastAPI's {"detail": "Not Found"}). Not simulated: the
 * inactivity timeout, voice cloning and the other API families, SSML,
 * history, and the real server's sentence-aware splitting. */
#include "common.h"
#include "meter.h"
#include "sim_audio.h"
#include "sim_provider.h"
#include "sim_speaker.h"
#include "urlenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PIECE_MS       100
#define DEFAULT_MODEL  "eleven_multilingual_v2"
#define DEFAULT_FORMAT "mp3_44100_128"
#define CONTEXTS_MAX   5
#define SCHEDULE_MAX   8
#define CONTEXT_ID_MAX 128

/* ---- shared pieces ------------------------------------------------------------ */

/* output_format ("mp3_44100_128", "pcm_16000", "ulaw_8000", "opus_48000_64",
 * "wav_22050") -> f; -1 when unknown. */
static int el_format(const char *name, struct sim_audio_format *f)
{
    char kind[8] = "";
    unsigned rate = 0, kbps = 0;
    int n = sscanf(name, "%7[a-z0-9]_%u_%u", kind, &rate, &kbps);
    if (n < 2)
        return -1;
    struct {
        const char *kind;
        enum sim_audio_codec codec;
        bool wav, bitrate;
        const char *mime;
    } kinds[] = {
        {"mp3", SIM_AUDIO_MP3, false, true, "audio/mpeg"},
        {"pcm", SIM_AUDIO_PCM16, false, false, "audio/pcm"},
        {"ulaw", SIM_AUDIO_MULAW, false, false, "audio/basic"},
        {"alaw", SIM_AUDIO_ALAW, false, false, "audio/alaw"},
        {"opus", SIM_AUDIO_OPUS, false, true, "audio/opus"},
        {"wav", SIM_AUDIO_PCM16, true, false, "audio/wav"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        if (strcmp(kind, kinds[i].kind) == 0 && (n == 3) == kinds[i].bitrate &&
            sim_audio_format_set(f, kinds[i].codec, kinds[i].wav, rate, kbps * 1000) == 0) {
            f->mime = kinds[i].mime;
            return 0;
        }
    return -1;
}

/* Credits for code points of text with model: half, rounded up, for the
 * turbo and flash models (PROVIDERS.md §2.1). */
static int64_t el_cost(const char *model, int64_t code_points)
{
    if (strstr(model, "turbo") != NULL || strstr(model, "flash") != NULL)
        return code_points / 2 + (code_points & 1);
    return code_points;
}

static double el_speed(json_t *voice_settings)
{
    json_t *s = json_object_get(voice_settings, "speed");
    return json_is_number(s) && json_number_value(s) > 0 ? json_number_value(s) : 1.0;
}

/* The code points of text[0..len) and the byte offset of each (n + 1
 * entries, the last the length). Caller frees. */
static size_t *char_offsets(const char *text, size_t len, size_t *n)
{
    size_t *at = malloc((len + 1) * sizeof(*at)), k = 0;
    if (at == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            at[k++] = i;
    at[k] = len;
    *n = k;
    return at;
}

/* The alignment of the characters whose start falls in [from_ms, to_ms) of
 * text spoken over total_ms (each character an even share); times in
 * seconds (rest) or ms relative to from_ms (socket). */
static json_t *alignment(const char *text, int64_t total_ms, int64_t from_ms, int64_t to_ms,
                         bool socket)
{
    size_t n = 0, len = strlen(text);
    size_t *at = char_offsets(text, len, &n);
    json_t *chars = json_array(), *starts = json_array(), *ends = json_array();
    for (size_t k = 0; at != NULL && k < n; k++) {
        double s = (double)total_ms * (double)k / (double)n;
        double e = (double)total_ms * (double)(k + 1) / (double)n;
        if (s < (double)from_ms || s >= (double)to_ms)
            continue;
        json_array_append_new(chars, json_stringn(text + at[k], at[k + 1] - at[k]));
        if (socket) {
            json_array_append_new(starts, json_integer((json_int_t)(s - (double)from_ms)));
            json_array_append_new(ends, json_integer((json_int_t)(e - s)));
        } else {
            json_array_append_new(starts, json_real(s / 1000.0));
            json_array_append_new(ends, json_real(e / 1000.0));
        }
    }
    free(at);
    if (socket)
        return json_pack("{so so so}", "chars", chars, "charStartTimesMs", starts,
                         "charDurationsMs", ends);
    return json_pack("{so so so}", "characters", chars, "character_start_times_seconds", starts,
                     "character_end_times_seconds", ends);
}

/* ---- TTS REST ------------------------------------------------------------------- */

struct tts {
    char *text;
    char model[MODEL_MAX];
    int64_t ms;
    bool stream, timestamps;
    struct sim_audio_out out;
    struct evbuffer *buf;
};

static void tts_free(void *p)
{
    struct tts *t = p;
    if (t != NULL) {
        free(t->text);
        if (t->buf != NULL)
            evbuffer_free(t->buf);
    }
    free(t);
}

/* Renders audio up to ms into t->buf: false when out of memory. */
static bool tts_render(struct tts *t, int64_t ms)
{
    return sim_audio_render(&t->out, ms, t->buf) == 0;
}

/* One with-timestamps object over the audio in t->buf (drained). */
static char *timestamps_line(struct tts *t, int64_t from, int64_t to)
{
    size_t len = evbuffer_get_length(t->buf);
    char *b64 = sim_audio_base64(evbuffer_pullup(t->buf, -1), len);
    evbuffer_drain(t->buf, len);
    if (b64 == NULL)
        return NULL;
    json_t *al = alignment(t->text, t->ms, from, to, false);
    json_t *o =
        json_pack("{ss sO sO}", "audio_base64", b64, "alignment", al, "normalized_alignment", al);
    json_decref(al);
    free(b64);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void tts_piece(struct sim_request *r, size_t i)
{
    struct tts *t = sim_state(r);
    int64_t from = (int64_t)i * PIECE_MS, to = MIN(from + PIECE_MS, t->ms);
    if (!tts_render(t, (int64_t)(i + 1) * PIECE_MS)) {
        sim_cut(r);
        return;
    }
    if (t->timestamps) {
        char *line = timestamps_line(t, from, i == 0 && t->ms == 0 ? 1 : to);
        if (line != NULL) {
            sim_stream_write(r, line, strlen(line));
            sim_stream_write(r, "\n", 1);
        }
        free(line);
        return;
    }
    size_t len = evbuffer_get_length(t->buf);
    sim_stream_write(r, (const char *)evbuffer_pullup(t->buf, -1), len);
    evbuffer_drain(t->buf, len);
}

static void tts_end(struct sim_request *r)
{
    (void)r;
}

static const struct sim_token_ops tts_ops = {tts_piece, tts_end};

/* The plain forms: the whole reply once generated. */
static void tts_whole(struct sim_request *r)
{
    struct tts *t = sim_state(r);
    char cost[24], hist[40];
    snprintf(cost, sizeof(cost), "%lld",
             (long long)el_cost(t->model, meter_utf8_chars(t->text, strlen(t->text))));
    snprintf(hist, sizeof(hist), "%.32s", sim_request_id(r));
    struct http_kv h[] = {{"character-cost", cost},
                          {"history-item-id", hist},
                          {"current-concurrent-requests", "1"},
                          {"maximum-concurrent-requests", "5"}};
    if (!tts_render(t, t->ms)) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    if (t->timestamps) {
        char *line = timestamps_line(t, 0, t->ms + 1);
        if (line == NULL) {
            sim_error(r, SIM_ERR_SERVER, NULL);
            return;
        }
        sim_reply(r, 200, "application/json", line, strlen(line), h, ARRAY_SIZE(h));
        free(line);
        return;
    }
    size_t len = evbuffer_get_length(t->buf);
    sim_reply(r, 200, t->out.f.mime, (const char *)evbuffer_pullup(t->buf, -1), len, h,
              ARRAY_SIZE(h));
}

static void unprocessable(struct sim_request *r, const char *field, const char *msg)
{
    sim_reply_json(r, 422,
                   json_pack("{s[{s[ss] ss ss}]}", "detail", "loc", "body", field, "msg", msg,
                             "type", "value_error"),
                   NULL, 0);
}

static void tts(struct sim_request *r, bool stream, bool timestamps)
{
    json_t *body = sim_json(r);
    json_t *text = json_object_get(body, "text");
    if (!json_is_string(text)) {
        unprocessable(r, "text", "field required");
        return;
    }
    char fmt_name[40] = DEFAULT_FORMAT;
    const struct httpparse_request *h = sim_head(r);
    if (h->query != NULL &&
        urlenc_query_get(h->query, h->query_len, "output_format", fmt_name, sizeof(fmt_name)) == -1)
        snprintf(fmt_name, sizeof(fmt_name), "%s", DEFAULT_FORMAT);
    struct sim_audio_format f;
    if (el_format(fmt_name, &f) == -1) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "Invalid output_format.");
        return;
    }
    struct tts *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->text = strdup(json_string_value(text))) == NULL ||
        (t->buf = evbuffer_new()) == NULL) {
        tts_free(t);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_set_state(r, t, tts_free);
    const char *model = json_string_value(json_object_get(body, "model_id"));
    snprintf(t->model, sizeof(t->model), "%s", model && model[0] ? model : DEFAULT_MODEL);
    t->stream = stream;
    t->timestamps = timestamps;
    t->ms = sim_audio_speech_ms(meter_utf8_chars(t->text, strlen(t->text)),
                                el_speed(json_object_get(body, "voice_settings")));
    sim_audio_out_init(&t->out, &f, t->ms);
    if (!stream) {
        sim_after(r, sim_pace_audio_ms(sim_tunables(r)->audio_rtf_ppm, t->ms), tts_whole);
        return;
    }
    char cost[24];
    snprintf(cost, sizeof(cost), "%lld",
             (long long)el_cost(t->model, meter_utf8_chars(t->text, strlen(t->text))));
    struct http_kv hk[] = {{"character-cost", cost},
                           {"current-concurrent-requests", "1"},
                           {"maximum-concurrent-requests", "5"}};
    sim_stream_begin(r, 200, timestamps ? "application/json" : f.mime, hk, ARRAY_SIZE(hk));
    size_t n = (size_t)MAX((int64_t)1, (t->ms + PIECE_MS - 1) / PIECE_MS);
    sim_stream_audio(r, n, PIECE_MS, &tts_ops);
}

static void tts_plain(struct sim_request *r)
{
    tts(r, false, false);
}

static void tts_stream(struct sim_request *r)
{
    tts(r, true, false);
}

static void tts_timestamps(struct sim_request *r)
{
    tts(r, false, true);
}

static void tts_stream_timestamps(struct sim_request *r)
{
    tts(r, true, true);
}

/* ---- voices, models, subscription ------------------------------------------------ */

static json_t *voice_obj(const char *id, const char *name)
{
    return json_pack("{ss ss ss s{ss ss} sn ss}", "voice_id", id, "name", name, "category",
                     "premade", "labels", "accent", "american", "gender", "female", "description",
                     "preview_url", "");
}

static void voices(struct sim_request *r)
{
    sim_reply_json(r, 200,
                   json_pack("{s[oo] sb sn}", "voices", voice_obj("21m00Tcm4TlvDq8ikWAM", "Rachel"),
                             voice_obj("EXAVITQu4vr4xnSDxMaL", "Sarah"), "has_more", 0,
                             "next_page_token"),
                   NULL, 0);
}

/* Any id: the simulator serves every voice. */
static void voice(struct sim_request *r)
{
    sim_reply_json(r, 200, voice_obj(sim_param(r), "Simulated voice"), NULL, 0);
}

static void models(struct sim_request *r)
{
    static const struct {
        const char *id, *name;
        double factor;
    } m[] = {
        {"eleven_multilingual_v2", "Eleven Multilingual v2", 1.0},
        {"eleven_turbo_v2_5", "Eleven Turbo v2.5", 0.5},
        {"eleven_flash_v2_5", "Eleven Flash v2.5", 0.5},
        {"eleven_v3", "Eleven v3", 1.0},
    };
    json_t *a = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(m); i++)
        json_array_append_new(a, json_pack("{ss ss sb sf}", "model_id", m[i].id, "name", m[i].name,
                                           "can_do_text_to_speech", 1, "token_cost_factor",
                                           m[i].factor));
    sim_reply_json(r, 200, a, NULL, 0);
}

static void subscription(struct sim_request *r)
{
    sim_reply_json(r, 200,
                   json_pack("{ss sI sI ss sI}", "tier", "creator", "character_count",
                             (json_int_t)0, "character_limit", (json_int_t)100000, "status",
                             "active", "next_character_count_reset_unix", (json_int_t)1893456000),
                   NULL, 0);
}

/* ---- stream-input sockets ------------------------------------------------------------ */

struct el_ctx {
    char id[CONTEXT_ID_MAX];  /* "" on stream-input */
    struct evbuffer *pending; /* text not generated yet */
    size_t generations;
    bool open;
};

struct el_ws {
    struct sim_ws *ws;
    struct sim_speaker *sp;
    bool multi;
    bool keyed;  /* a key came on the handshake */
    bool first;  /* the first message is still to come */
    bool ending; /* EOS / close_socket: nothing more is read */
    bool auto_mode;
    char model[MODEL_MAX];
    struct sim_audio_format fmt;
    double speed;
    int64_t schedule[SCHEDULE_MAX];
    size_t n_schedule;
    struct el_ctx ctx[CONTEXTS_MAX];
};

/* One generation of a context's text, or (text NULL) its isFinal. */
struct el_gen {
    struct el_ws *el;
    char ctx[CONTEXT_ID_MAX];
    char *text;
    int64_t ms;
    size_t pieces;
    bool close_only; /* no text, no isFinal: the socket closes (1000) */
    struct sim_audio_out out;
    struct evbuffer *buf;
};

static void gen_free(void *u)
{
    struct el_gen *g = u;
    if (g != NULL) {
        free(g->text);
        if (g->buf != NULL)
            evbuffer_free(g->buf);
    }
    free(g);
}

static void el_send(struct el_ws *el, json_t *o, const char *ctx)
{
    if (el->multi)
        json_object_set_new(o, "contextId", json_string(ctx));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s != NULL)
        sim_ws_send(el->ws, true, s, strlen(s));
    free(s);
}

static void gen_piece(struct sim_ws *ws, void *u, size_t i)
{
    struct el_gen *g = u;
    (void)ws;
    int64_t from = (int64_t)i * PIECE_MS, to = MIN(from + PIECE_MS, g->ms);
    if (sim_audio_render(&g->out, to, g->buf) == -1)
        return;
    size_t len = evbuffer_get_length(g->buf);
    char *b64 = sim_audio_base64(evbuffer_pullup(g->buf, -1), len);
    evbuffer_drain(g->buf, len);
    if (b64 == NULL)
        return;
    json_t *al = alignment(g->text, g->ms, from, to, true);
    el_send(g->el,
            json_pack("{ss sn sO sO}", "audio", b64, "isFinal", "normalizedAlignment", al,
                      "alignment", al),
            g->ctx);
    json_decref(al);
    free(b64);
}

static void gen_done(struct sim_ws *ws, void *u)
{
    struct el_gen *g = u;
    if (g->text != NULL)
        return;
    if (g->close_only)
        sim_ws_close(ws, 1000, NULL);
    else
        el_send(g->el, json_pack("{sb}", "isFinal", 1), g->ctx);
}

static const struct sim_speaker_ops gen_ops = {gen_piece, gen_done, gen_free};

/* A generation of the context's pending text (final: also its isFinal);
 * NULL when out of memory (the socket is closed). */
static struct el_gen *gen_new(struct el_ws *el, const struct el_ctx *c)
{
    struct el_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        sim_ws_close(el->ws, 1011, "out of memory");
        return NULL;
    }
    g->el = el;
    if (c != NULL)
        snprintf(g->ctx, sizeof(g->ctx), "%s", c->id);
    return g;
}

static void say(struct el_ws *el, struct el_gen *g)
{
    if (sim_speaker_say(el->sp, g->pieces, PIECE_MS, &gen_ops, g) == -1)
        sim_ws_close(el->ws, 1011, "out of memory");
}

/* Queues the generation of the context's pending text (when not blank),
 * then with final its isFinal. */
static void generate(struct el_ws *el, struct el_ctx *c, bool final)
{
    size_t len = evbuffer_get_length(c->pending);
    const char *text = len > 0 ? (const char *)evbuffer_pullup(c->pending, -1) : "";
    if (sim_count_words(text, len) > 0) {
        struct el_gen *g = gen_new(el, c);
        if (g == NULL)
            return;
        if ((g->buf = evbuffer_new()) == NULL || (g->text = strndup(text, len)) == NULL) {
            gen_free(g);
            sim_ws_close(el->ws, 1011, "out of memory");
            return;
        }
        g->ms = sim_audio_speech_ms(meter_utf8_chars(text, len), el->speed);
        g->pieces = (size_t)MAX((int64_t)1, (g->ms + PIECE_MS - 1) / PIECE_MS);
        sim_audio_out_init(&g->out, &el->fmt, g->ms);
        c->generations++;
        say(el, g);
    }
    evbuffer_drain(c->pending, len);
    if (final) {
        struct el_gen *g = gen_new(el, c);
        if (g != NULL)
            say(el, g);
    }
}

/* The socket closes (1000) once everything queued has played. */
static void queue_close(struct el_ws *el)
{
    struct el_gen *g = gen_new(el, NULL);
    if (g != NULL) {
        g->close_only = true;
        say(el, g);
    }
}

static void el_reject(struct el_ws *el, const char *error, const char *message)
{
    el_send(el, json_pack("{ss ss si}", "message", message, "error", error, "code", 1008), "");
    sim_ws_close(el->ws, 1008, message);
}

static struct el_ctx *ctx_find(struct el_ws *el, const char *id, bool create)
{
    for (size_t i = 0; i < CONTEXTS_MAX; i++)
        if (el->ctx[i].open && strcmp(el->ctx[i].id, id) == 0)
            return &el->ctx[i];
    for (size_t i = 0; create && i < CONTEXTS_MAX; i++)
        if (!el->ctx[i].open &&
            (el->ctx[i].pending != NULL || (el->ctx[i].pending = evbuffer_new()) != NULL)) {
            el->ctx[i].open = true;
            el->ctx[i].generations = 0;
            snprintf(el->ctx[i].id, sizeof(el->ctx[i].id), "%s", id);
            return &el->ctx[i];
        }
    return NULL;
}

/* The first message: the key (when the handshake had none), the schedule. */
static bool first_message(struct el_ws *el, json_t *msg)
{
    el->first = false;
    const char *auth = json_string_value(json_object_get(msg, "authorization"));
    const char *key = json_string_value(json_object_get(msg, "xi_api_key"));
    bool bearer = auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0 && auth[7] != '\0';
    if (!el->keyed && !(key != NULL && key[0] != '\0') && !bearer) {
        el_reject(el, "invalid_api_key",
                  "No API key: send xi-api-key on the handshake or xi_api_key in the first "
                  "message.");
        return false;
    }
    json_t *sched =
        json_object_get(json_object_get(msg, "generation_config"), "chunk_length_schedule");
    int64_t got[SCHEDULE_MAX];
    size_t i, n = 0;
    json_t *v;
    json_array_foreach(sched, i, v)
    {
        if (json_is_integer(v) && json_integer_value(v) > 0 && n < SCHEDULE_MAX)
            got[n++] = json_integer_value(v);
    }
    if (n > 0) {
        memcpy(el->schedule, got, n * sizeof(got[0]));
        el->n_schedule = n;
    }
    json_t *vs = json_object_get(msg, "voice_settings");
    if (vs != NULL)
        el->speed = el_speed(vs);
    return true;
}

static void el_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct el_ws *el = sim_ws_arg(ws);
    json_t *msg = text ? json_loadb((const char *)data, len, 0, NULL) : NULL;
    if (el->ending) {
        json_decref(msg);
        return;
    }
    if (!json_is_object(msg)) {
        json_decref(msg);
        el_reject(el, "invalid_message", "Invalid message received: expected a JSON object.");
        return;
    }
    if (el->first && !first_message(el, msg)) {
        json_decref(msg);
        return;
    }
    const char *id = el->multi ? json_string_value(json_object_get(msg, "context_id")) : NULL;
    bool close_socket = el->multi && json_is_true(json_object_get(msg, "close_socket"));
    bool close_ctx = el->multi && json_is_true(json_object_get(msg, "close_context"));
    json_t *t = json_object_get(msg, "text");
    const char *s = json_string_value(t);
    bool eos = !el->multi && s != NULL && json_string_length(t) == 0;
    /* Closing names a context, it does not open one. */
    struct el_ctx *c = ctx_find(el, id ? id : "", !close_socket && !close_ctx);
    if (c == NULL && !close_socket && !close_ctx) {
        json_decref(msg);
        el_reject(el, "max_active_conversations",
                  "Too many open contexts: at most 5 per connection.");
        return;
    }
    if (c != NULL && s != NULL)
        evbuffer_add(c->pending, s, json_string_length(t));
    if (eos || close_socket) {
        /* Every open context plays out with its isFinal, then the close. */
        el->ending = true;
        for (size_t i = 0; i < CONTEXTS_MAX; i++)
            if (el->ctx[i].open) {
                el->ctx[i].open = false;
                generate(el, &el->ctx[i], true);
            }
        queue_close(el);
    } else if (close_ctx) {
        if (c != NULL) {
            c->open = false;
            generate(el, c, true);
        }
    } else {
        size_t pend = evbuffer_get_length(c->pending);
        int64_t want = el->schedule[MIN(c->generations, el->n_schedule - 1)];
        if (json_is_true(json_object_get(msg, "flush")) ||
            json_is_true(json_object_get(msg, "try_trigger_generation")) || el->auto_mode ||
            (s != NULL && el->multi && json_string_length(t) == 0) ||
            meter_utf8_chars((const char *)evbuffer_pullup(c->pending, -1), pend) >= want)
            generate(el, c, false);
    }
    json_decref(msg);
}

static void el_close(struct sim_ws *ws, int code)
{
    struct el_ws *el = sim_ws_arg(ws);
    (void)code;
    sim_speaker_free(el->sp);
    for (size_t i = 0; i < CONTEXTS_MAX; i++)
        if (el->ctx[i].pending != NULL)
            evbuffer_free(el->ctx[i].pending);
    free(el);
}

static const struct sim_ws_ops el_ops = {el_message, el_close};

static void stream_input(struct sim_request *r, bool multi)
{
    const struct httpparse_request *h = sim_head(r);
    char model[MODEL_MAX] = "", fmt[40] = DEFAULT_FORMAT, mode[8] = "";
    if (h->query != NULL) {
        if (urlenc_query_get(h->query, h->query_len, "model_id", model, sizeof(model)) == -1)
            model[0] = '\0';
        if (urlenc_query_get(h->query, h->query_len, "output_format", fmt, sizeof(fmt)) == -1)
            snprintf(fmt, sizeof(fmt), "%s", DEFAULT_FORMAT);
        if (urlenc_query_get(h->query, h->query_len, "auto_mode", mode, sizeof(mode)) == -1)
            mode[0] = '\0';
    }
    struct el_ws *el = calloc(1, sizeof(*el));
    if (el == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    if (el_format(fmt, &el->fmt) == -1) {
        free(el);
        sim_error(r, SIM_ERR_BAD_REQUEST, "Invalid output_format.");
        return;
    }
    static const int64_t schedule[] = {120, 160, 250, 290};
    memcpy(el->schedule, schedule, sizeof(schedule));
    el->n_schedule = ARRAY_SIZE(schedule);
    el->multi = multi;
    el->first = true;
    el->speed = 1.0;
    el->auto_mode = strcmp(mode, "true") == 0;
    el->keyed = sim_has_key(r, "xi-api-key", NULL) || sim_has_key(r, "authorization", "Bearer");
    snprintf(el->model, sizeof(el->model), "%s", model[0] ? model : DEFAULT_MODEL);
    struct sim_ws *ws = sim_ws_accept(r, NULL, &el_ops, el);
    if (ws == NULL) {
        free(el);
        return;
    }
    el->ws = ws;
    if ((el->sp = sim_speaker_new(ws)) == NULL)
        sim_ws_close(ws, 1011, "out of memory");
}

static void stream_input_one(struct sim_request *r)
{
    stream_input(r, false);
}

static void stream_input_multi(struct sim_request *r)
{
    stream_input(r, true);
}

/* ---- keys and errors --------------------------------------------------------------- */

/* xi-api-key or Bearer; a socket may bring its key in its first message. */
static bool authorized(struct sim_request *r)
{
    return sim_head(r)->upgrade_websocket || sim_has_key(r, "xi-api-key", NULL) ||
           sim_has_key(r, "authorization", "Bearer");
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    static const struct {
        int status;
        const char *code, *message;
    } shapes[] = {
        [SIM_ERR_BAD_REQUEST] = {400, "invalid_request", "Invalid request."},
        [SIM_ERR_UNAUTHORIZED] = {401, "needs_authorization",
                                  "Neither authorization header nor xi-api-key received, please "
                                  "provide one."},
        [SIM_ERR_NOT_FOUND] = {404, "not_found", "Not Found"},
        [SIM_ERR_RATE_LIMIT] = {429, "too_many_concurrent_requests",
                                "Too many concurrent requests (simulated ElevenLabs)."},
        [SIM_ERR_SERVER] = {500, "internal_error",
                            "An internal error occurred (simulated ElevenLabs)."},
    };
    if (what == SIM_ERR_NOT_FOUND) {
        sim_reply_json(r, 404, json_pack("{ss}", "detail", "Not Found"), NULL, 0);
        return;
    }
    sim_reply_json(r, shapes[what].status,
                   json_pack("{s{ss ss}}", "detail", "status", shapes[what].code, "message",
                             what == SIM_ERR_BAD_REQUEST && detail ? detail : shapes[what].message),
                   NULL, 0);
}

static const struct sim_route routes[] = {
    {"POST", "/v1/text-to-speech/{id}", tts_plain, NULL},
    {"POST", "/v1/text-to-speech/{id}/stream", tts_stream, NULL},
    {"POST", "/v1/text-to-speech/{id}/with-timestamps", tts_timestamps, NULL},
    {"POST", "/v1/text-to-speech/{id}/stream/with-timestamps", tts_stream_timestamps, NULL},
    {"GET", "/v1/text-to-speech/{id}/stream-input", NULL, stream_input_one},
    {"GET", "/v1/text-to-speech/{id}/multi-stream-input", NULL, stream_input_multi},
    {"GET", "/v1/voices", voices, NULL},
    {"GET", "/v1/voices/{id}", voice, NULL},
    {"GET", "/v1/models", models, NULL},
    {"GET", "/v1/user/subscription", subscription, NULL},
};

const struct sim_provider sim_elevenlabs = {
    .upstream = "elevenlabs",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "request-id",
    .request_id_prefix = "",
};
