/* sim_openai_realtime.c - simulated OpenAI Realtime (PROVIDERS.md §1.7):
 * the WebSocket GET /v1/realtime?model=… (or ?intent=transcription),
 * merged into the "openai" host (sim_openai.c's more_routes).
 *
 *   101 (subprotocol "realtime" when offered) ─> session.created
 *   session.update ─> session.updated (the session merged, as sent back)
 *   input_audio_buffer.append ─> buffered (server_vad: speech_started /
 *       speech_stopped by energy on the audio's own timeline, then an
 *       automatic commit and, with create_response, a response)
 *   input_audio_buffer.commit ─> committed, conversation.item.added/done
 *       (beta: .created), and with input transcription on:
 *       conversation.item.input_audio_transcription.delta / .completed
 *       (usage: tokens, or whisper-1's duration)
 *   input_audio_buffer.clear ─> cleared
 *   conversation.item.create / delete ─> added+done (beta: created) / deleted
 *   response.create ─> response.created, rate_limits.updated,
 *       output_item.added, content_part.added, then paced pieces (sim_speaker:
 *       100 ms of PCM16 24 kHz audio (or G.711) as output_audio.delta with
 *       its share of the transcript as output_audio_transcript.delta, at
 *       audio_rtf; text-only: one output_text.delta per word at
 *       tokens_per_s), then the .done events and response.done with usage
 *   response.cancel (or speech while a response runs) ─> response.done
 *       "cancelled", usage of what was sent
 *
 * Clients asking for the beta interface (OpenAI-Beta: realtime=v1, or the
 * openai-beta.realtime-v1 subprotocol) get beta names and shapes
 * (response.audio.delta, the beta session object). Usage is derived from
 * what was received and sent (the ledger below): a reply of reply_tokens
 * words (capped by max_output_tokens: status "incomplete"), its audio as
 * long as the words take to speak; input = instructions' and the
 * conversation's text words + its audio tokens (user audio 1 / 100 ms,
 * assistant 1 / 50 ms); what a previous response read or wrote is counted
 * cached (OpenAI caches repeated prefixes; the simulator caches any). A
 * reset fault drops the socket halfway through the first response.
 *
 * Not simulated: tools and function calls (never produced), images,
 * conversation.item.retrieve / truncate, WebRTC, idle timeouts, semantic
 * VAD's eagerness (treated as server_vad). */
#include "common.h"
#include "meter.h"
#include "sim_audio.h"
#include "sim_openai.h"
#include "sim_speaker.h"
#include "urlenc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#define PIECE_MS      100
#define OUT_RATE      24000
#define ITEMS_MAX     4096 /* conversation items kept; older ones leave the context */
#define COMMIT_MIN_MS 100
#define KEY_PROTOCOL  "openai-insecure-api-key."
#define BETA_PROTOCOL "openai-beta.realtime-v1"
#define ID_LEN        40

/* ---- usage (pure) ------------------------------------------------------------ */

void sim_openai_rt_begin(const struct sim_rt_ledger *l, int64_t instructions, bool conversation,
                         struct sim_rt_usage *u)
{
    memset(u, 0, sizeof(*u));
    u->in_text = instructions + (conversation ? l->text : 0);
    u->in_audio = conversation ? l->audio : 0;
    u->cached_text = conversation ? MIN(l->cached_text, u->in_text) : 0;
    u->cached_audio = conversation ? MIN(l->cached_audio, u->in_audio) : 0;
}

void sim_openai_rt_end(struct sim_rt_ledger *l, struct sim_rt_usage *u, int64_t out_text,
                       int64_t out_audio_ms, bool conversation)
{
    u->out_text = out_text;
    u->out_audio = sim_audio_assistant_tokens(out_audio_ms);
    if (!conversation)
        return;
    /* The reply joins the conversation; what this response read and wrote
     * is the prefix the next one finds cached. */
    l->text += u->out_text;
    l->audio += u->out_audio;
    l->cached_text = u->in_text + u->out_text;
    l->cached_audio = u->in_audio + u->out_audio;
}

json_t *sim_openai_rt_usage_json(const struct sim_rt_usage *u)
{
    int64_t in = u->in_text + u->in_audio, out = u->out_text + u->out_audio;
    return json_pack("{sI sI sI s{sI sI sI sI s{sI sI sI}} s{sI sI}}", "total_tokens",
                     (json_int_t)(in + out), "input_tokens", (json_int_t)in, "output_tokens",
                     (json_int_t)out, "input_token_details", "text_tokens", (json_int_t)u->in_text,
                     "audio_tokens", (json_int_t)u->in_audio, "image_tokens", (json_int_t)0,
                     "cached_tokens", (json_int_t)(u->cached_text + u->cached_audio),
                     "cached_tokens_details", "text_tokens", (json_int_t)u->cached_text,
                     "audio_tokens", (json_int_t)u->cached_audio, "image_tokens", (json_int_t)0,
                     "output_token_details", "text_tokens", (json_int_t)u->out_text, "audio_tokens",
                     (json_int_t)u->out_audio);
}

/* ---- the socket's state -------------------------------------------------------- */

/* A conversation item, as far as usage goes. */
struct item {
    char id[ID_LEN];
    int64_t text, audio; /* tokens */
    struct item *next;
};

struct rt;

struct response {
    struct rt *rt;
    char id[ID_LEN], item_id[ID_LEN], conv_id[ID_LEN];
    bool audio;        /* audio out (else text only) */
    bool conversation; /* "auto": it reads and joins the conversation */
    bool capped;       /* cut by max_output_tokens */
    size_t words;      /* of the reply */
    char *text;        /* the reply's text */
    int64_t audio_ms;  /* its audio's length */
    size_t pieces;     /* speaker pieces */
    size_t words_sent; /* words sent so far */
    int64_t ms_sent;   /* audio sent so far */
    struct sim_audio_out out;
    struct evbuffer *buf;
    json_t *metadata;
    struct sim_rt_usage usage;
};

struct rt {
    struct sim_ws *ws;
    struct sim_speaker *sp;
    bool beta;
    bool transcription; /* ?intent=transcription */
    char model[MODEL_MAX];
    json_t *session;
    /* input audio */
    uint64_t buf_bytes; /* appended since the last commit or clear */
    bool vad_on;
    struct sim_vad vad;
    char speech_item[ID_LEN]; /* the item the current speech will commit to */
    /* the conversation */
    struct item *items, *tail;
    size_t n_items;
    struct sim_rt_ledger ledger;
    struct response *resp; /* the one running */
};

static void new_id(struct rt *rt, const char *prefix, char out[ID_LEN])
{
    snprintf(out, ID_LEN, "%s_%016llx", prefix, (unsigned long long)sim_ws_rand(rt->ws));
}

/* One server event: its type and event_id first. Takes ownership of fields. */
static void ev(struct rt *rt, const char *type, json_t *fields)
{
    char id[ID_LEN];
    new_id(rt, "event", id);
    json_t *o = json_pack("{ss ss}", "type", type, "event_id", id);
    if (fields != NULL)
        json_object_update(o, fields);
    json_decref(fields);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s != NULL)
        sim_ws_send(rt->ws, true, s, strlen(s));
    free(s);
}

static void rt_error(struct rt *rt, const char *code, const char *message, json_t *client_event_id)
{
    ev(rt, "error",
       json_pack("{s{ss ss ss sn sO}}", "error", "type", "invalid_request_error", "code", code,
                 "message", message, "param", "event_id",
                 client_event_id ? client_event_id : json_null()));
}

/* ---- the session ----------------------------------------------------------------- */

/* v at the path of keys (NULL-terminated) under o; NULL when absent. */
static json_t *at(json_t *o, ...)
{
    va_list ap;
    va_start(ap, o);
    for (const char *k = va_arg(ap, const char *); k != NULL && o != NULL;
         k = va_arg(ap, const char *))
        o = json_object_get(o, k);
    va_end(ap);
    return o;
}

static json_t *turn_detection_default(bool beta)
{
    return json_pack("{ss sf si si sn sb sb}", "type", "server_vad", "threshold", 0.5,
                     "prefix_padding_ms", 300, "silence_duration_ms", beta ? 200 : 500,
                     "idle_timeout_ms", "create_response", 1, "interrupt_response", 1);
}

static json_t *session_new(struct rt *rt)
{
    char id[ID_LEN];
    new_id(rt, "sess", id);
    if (rt->beta)
        return json_pack("{ss ss ss s[ss] ss ss ss ss sn so s[] ss sf ss sf}", "id", id, "object",
                         "realtime.session", "model", rt->model, "modalities", "text", "audio",
                         "instructions", "", "voice", "alloy", "input_audio_format", "pcm16",
                         "output_audio_format", "pcm16", "input_audio_transcription",
                         "turn_detection", turn_detection_default(true), "tools", "tool_choice",
                         "auto", "temperature", 0.8, "max_response_output_tokens", "inf", "speed",
                         1.0);
    if (rt->transcription)
        return json_pack("{ss ss ss s{s{s{ss si} s{ss ss ss} so sn}} sn}", "type", "transcription",
                         "object", "realtime.transcription_session", "id", id, "audio", "input",
                         "format", "type", "audio/pcm", "rate", OUT_RATE, "transcription", "model",
                         "gpt-4o-transcribe", "language", "", "prompt", "", "turn_detection",
                         turn_detection_default(false), "noise_reduction", "include");
    return json_pack("{ss ss ss ss s[s] ss s[] ss ss sn sn sn sI s{s{s{ss si} sn sn so} "
                     "s{s{ss si} ss sf}}}",
                     "type", "realtime", "object", "realtime.session", "id", id, "model", rt->model,
                     "output_modalities", "audio", "instructions", "", "tools", "tool_choice",
                     "auto", "max_output_tokens", "inf", "tracing", "prompt", "include",
                     "expires_at", (json_int_t)time(NULL) + 3600, "audio", "input", "format",
                     "type", "audio/pcm", "rate", OUT_RATE, "transcription", "noise_reduction",
                     "turn_detection", turn_detection_default(false), "output", "format", "type",
                     "audio/pcm", "rate", OUT_RATE, "voice", "alloy", "speed", 1.0);
}

/* Merges src into dst, objects key by key (a null replaces). */
static void merge(json_t *dst, json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
    {
        json_t *d = json_object_get(dst, k);
        if (json_is_object(d) && json_is_object(v) && json_object_size(v) > 0)
            merge(d, v);
        else
            json_object_set_new(dst, k, json_deep_copy(v));
    }
}

static json_t *setting_turn_detection(struct rt *rt)
{
    return rt->beta ? at(rt->session, "turn_detection", NULL)
                    : at(rt->session, "audio", "input", "turn_detection", NULL);
}

static const char *setting_transcription_model(struct rt *rt)
{
    json_t *t = rt->beta ? at(rt->session, "input_audio_transcription", NULL)
                         : at(rt->session, "audio", "input", "transcription", NULL);
    return json_string_value(json_object_get(t, "model"));
}

/* The input or output audio's codec: G.711 by name, else PCM16. */
static enum sim_audio_codec setting_codec(struct rt *rt, bool input)
{
    const char *name =
        rt->beta ? json_string_value(
                       at(rt->session, input ? "input_audio_format" : "output_audio_format", NULL))
                 : json_string_value(at(rt->session, "audio", input ? "input" : "output", "format",
                                        "type", NULL));
    if (name == NULL)
        return SIM_AUDIO_PCM16;
    if (strstr(name, "ulaw") != NULL || strstr(name, "pcmu") != NULL)
        return SIM_AUDIO_MULAW;
    if (strstr(name, "alaw") != NULL || strstr(name, "pcma") != NULL)
        return SIM_AUDIO_ALAW;
    return SIM_AUDIO_PCM16;
}

/* Bytes a second of the input audio. */
static uint32_t input_byte_rate(struct rt *rt)
{
    return setting_codec(rt, true) == SIM_AUDIO_PCM16 ? OUT_RATE * 2 : 8000;
}

static int64_t bytes_ms(struct rt *rt, uint64_t bytes)
{
    return (int64_t)(bytes * 1000 / input_byte_rate(rt));
}

static void vad_configure(struct rt *rt)
{
    json_t *td = setting_turn_detection(rt);
    rt->vad_on = json_is_object(td);
    if (!rt->vad_on)
        return;
    json_t *th = json_object_get(td, "threshold"), *pre = json_object_get(td, "prefix_padding_ms"),
           *sil = json_object_get(td, "silence_duration_ms");
    uint32_t rate = setting_codec(rt, true) == SIM_AUDIO_PCM16 ? OUT_RATE : 8000;
    /* New parameters; the input's timeline and a speech in progress go on
     * (while the rate is the same). */
    struct sim_vad was = rt->vad;
    sim_vad_init(&rt->vad, rate, json_is_number(th) ? json_number_value(th) : 0.5,
                 json_is_integer(pre) ? json_integer_value(pre) : 300,
                 json_is_integer(sil) ? json_integer_value(sil) : 500);
    if (was.rate == rate) {
        rt->vad.samples = was.samples;
        rt->vad.acc = was.acc;
        rt->vad.in_frame = was.in_frame;
        rt->vad.speaking = was.speaking;
        rt->vad.last_speech_ms = was.last_speech_ms;
    }
}

static void session_event(struct rt *rt, const char *type)
{
    ev(rt, type, json_pack("{sO}", "session", rt->session));
}

static void session_update(struct rt *rt, json_t *msg)
{
    json_t *s = json_object_get(msg, "session");
    if (!json_is_object(s)) {
        rt_error(rt, "missing_required_parameter", "Missing required parameter: 'session'.",
                 json_object_get(msg, "event_id"));
        return;
    }
    json_t *old = json_incref(json_object_get(rt->session, "instructions"));
    merge(rt->session, s);
    json_object_del(rt->session, "client_secret");
    /* New instructions: the cached prefix no longer matches. */
    if (!json_equal(old, json_object_get(rt->session, "instructions")))
        rt->ledger.cached_text = rt->ledger.cached_audio = 0;
    json_decref(old);
    vad_configure(rt);
    session_event(rt, "session.updated");
}

/* ---- the conversation ---------------------------------------------------------------- */

static void item_free_all(struct rt *rt)
{
    while (rt->items != NULL) {
        struct item *i = rt->items;
        rt->items = i->next;
        free(i);
    }
    rt->tail = NULL;
}

/* Appends an item of text and audio tokens; the oldest leaves the context
 * beyond ITEMS_MAX (and the cache with it). Its id goes to id_out. */
static const char *item_add(struct rt *rt, const char *id, int64_t text, int64_t audio)
{
    struct item *i = calloc(1, sizeof(*i));
    if (i == NULL)
        return NULL;
    if (id != NULL && id[0] != '\0')
        snprintf(i->id, sizeof(i->id), "%s", id);
    else
        new_id(rt, "item", i->id);
    i->text = text;
    i->audio = audio;
    if (rt->tail != NULL)
        rt->tail->next = i;
    else
        rt->items = i;
    rt->tail = i;
    rt->ledger.text += text;
    rt->ledger.audio += audio;
    if (++rt->n_items > ITEMS_MAX) {
        struct item *old = rt->items;
        rt->items = old->next;
        rt->ledger.text -= old->text;
        rt->ledger.audio -= old->audio;
        rt->ledger.cached_text = rt->ledger.cached_audio = 0;
        rt->n_items--;
        free(old);
    }
    return i->id;
}

static json_t *id_or_null(const char *id)
{
    return id != NULL ? json_string(id) : json_null();
}

/* The events of a new item (takes ownership of item): GA added, and done
 * when it is complete already; beta created. */
static void item_events(struct rt *rt, json_t *item, const char *previous, bool complete)
{
    if (rt->beta) {
        ev(rt, "conversation.item.created",
           json_pack("{so sO}", "previous_item_id", id_or_null(previous), "item", item));
    } else {
        ev(rt, "conversation.item.added",
           json_pack("{so sO}", "previous_item_id", id_or_null(previous), "item", item));
        if (complete)
            ev(rt, "conversation.item.done",
               json_pack("{so sO}", "previous_item_id", id_or_null(previous), "item", item));
    }
    json_decref(item);
}

/* The transcription of a committed audio item, when the session asks. */
static void transcribe(struct rt *rt, const char *item_id, int64_t ms)
{
    const char *model = setting_transcription_model(rt);
    if (model == NULL)
        return;
    size_t n = (size_t)sim_audio_transcript_words(ms);
    char *text = sim_text(n);
    if (text == NULL)
        return;
    json_t *usage;
    if (strncmp(model, "whisper", 7) == 0) {
        usage = json_pack("{ss sf}", "type", "duration", "seconds", (double)ms / 1000.0);
    } else {
        int64_t audio = sim_audio_user_tokens(ms);
        usage = json_pack("{ss sI sI sI s{sI sI}}", "type", "tokens", "total_tokens",
                          (json_int_t)(audio + (int64_t)n), "input_tokens", (json_int_t)audio,
                          "output_tokens", (json_int_t)n, "input_token_details", "text_tokens",
                          (json_int_t)0, "audio_tokens", (json_int_t)audio);
        for (size_t i = 0; i < n; i++)
            ev(rt, "conversation.item.input_audio_transcription.delta",
               json_pack("{ss sI ss}", "item_id", item_id, "content_index", (json_int_t)0, "delta",
                         sim_word(i)));
    }
    ev(rt, "conversation.item.input_audio_transcription.completed",
       json_pack("{ss sI ss so}", "item_id", item_id, "content_index", (json_int_t)0, "transcript",
                 text, "usage", usage));
    free(text);
}

static void response_create(struct rt *rt, json_t *msg);
static void response_cancel(struct rt *rt, const char *reason);

/* Commits the buffer (which holds at least COMMIT_MIN_MS). */
static void commit(struct rt *rt, json_t *client_event_id)
{
    int64_t ms = bytes_ms(rt, rt->buf_bytes);
    if (ms < COMMIT_MIN_MS) {
        char m[200];
        snprintf(m, sizeof(m),
                 "Error committing input audio buffer: buffer too small. Expected at least "
                 "%dms of audio, but buffer only has %.2fms of audio.",
                 COMMIT_MIN_MS, (double)bytes_ms(rt, rt->buf_bytes));
        rt_error(rt, "input_audio_buffer_commit_empty", m, client_event_id);
        return;
    }
    const char *prev = rt->tail != NULL ? rt->tail->id : NULL;
    char prev_copy[ID_LEN] = "";
    if (prev != NULL)
        snprintf(prev_copy, sizeof(prev_copy), "%s", prev);
    const char *id = item_add(rt, rt->speech_item, 0, sim_audio_user_tokens(ms));
    rt->speech_item[0] = '\0';
    rt->buf_bytes = 0;
    if (id == NULL) {
        rt_error(rt, "server_error", "out of memory", client_event_id);
        return;
    }
    char item_id[ID_LEN];
    snprintf(item_id, sizeof(item_id), "%s", id);
    ev(rt, "input_audio_buffer.committed",
       json_pack("{so ss}", "previous_item_id", id_or_null(prev ? prev_copy : NULL), "item_id",
                 item_id));
    const char *model = setting_transcription_model(rt);
    json_t *item =
        json_pack("{ss ss ss ss ss s[{ss so}]}", "id", item_id, "object", "realtime.item", "type",
                  "message", "status", "completed", "role", "user", "content", "type",
                  "input_audio", "transcript", model != NULL ? json_string("") : json_null());
    item_events(rt, item, prev ? prev_copy : NULL, true);
    transcribe(rt, item_id, ms);
}

/* Feeds appended audio to the detector; acts on its events. */
static void vad_feed(struct rt *rt, const uint8_t *d, size_t len)
{
    enum sim_audio_codec c = setting_codec(rt, true);
    size_t bps = c == SIM_AUDIO_PCM16 ? 2 : 1, n = len / bps;
    int16_t s[1024];
    for (size_t at_s = 0; at_s < n;) {
        size_t k = MIN(n - at_s, ARRAY_SIZE(s));
        for (size_t i = 0; i < k; i++) {
            const uint8_t *p = d + (at_s + i) * bps;
            s[i] = c == SIM_AUDIO_PCM16   ? (int16_t)(p[0] | p[1] << 8)
                   : c == SIM_AUDIO_MULAW ? sim_audio_ulaw_decode(p[0])
                                          : sim_audio_alaw_decode(p[0]);
        }
        /* Each round takes samples or reports an event: bounded by k. */
        for (size_t off = 0; off < k;) {
            size_t used = 0;
            int64_t at_ms = 0;
            enum sim_vad_event e = sim_vad_feed(&rt->vad, s + off, k - off, &used, &at_ms);
            off += used;
            rt->buf_bytes += used * bps;
            if (e == SIM_VAD_STARTED) {
                new_id(rt, "item", rt->speech_item);
                ev(rt, "input_audio_buffer.speech_started",
                   json_pack("{sI ss}", "audio_start_ms", (json_int_t)at_ms, "item_id",
                             rt->speech_item));
                json_t *td = setting_turn_detection(rt);
                if (rt->resp != NULL && !json_is_false(json_object_get(td, "interrupt_response")))
                    response_cancel(rt, "turn_detected");
            } else if (e == SIM_VAD_STOPPED) {
                ev(rt, "input_audio_buffer.speech_stopped",
                   json_pack("{sI ss}", "audio_end_ms", (json_int_t)at_ms, "item_id",
                             rt->speech_item));
                commit(rt, NULL);
                json_t *td = setting_turn_detection(rt);
                if (!rt->transcription && rt->resp == NULL &&
                    !json_is_false(json_object_get(td, "create_response")))
                    response_create(rt, NULL);
            }
        }
        at_s += k;
    }
}

static void append(struct rt *rt, json_t *msg)
{
    json_t *a = json_object_get(msg, "audio");
    const char *b64 = json_string_value(a);
    int64_t len = b64 ? sim_audio_base64_len(b64, json_string_length(a)) : -1;
    if (len < 0) {
        rt_error(rt, "invalid_value", "Invalid 'audio': expected base64-encoded audio.",
                 json_object_get(msg, "event_id"));
        return;
    }
    if (!rt->vad_on) {
        rt->buf_bytes += (uint64_t)len;
        return;
    }
    uint8_t *d = malloc((size_t)json_string_length(a) / 4 * 3 + 3);
    if (d == NULL ||
        EVP_DecodeBlock(d, (const unsigned char *)b64, (int)json_string_length(a)) < 0) {
        free(d);
        rt_error(rt, "invalid_value", "Invalid 'audio': expected base64-encoded audio.",
                 json_object_get(msg, "event_id"));
        return;
    }
    vad_feed(rt, d, (size_t)len);
    free(d);
}

/* Tokens of a client item: its text words, its audio, a call's arguments
 * or output. */
static void item_tokens(struct rt *rt, json_t *item, int64_t *text, int64_t *audio)
{
    *text = sim_count_json_words(json_object_get(item, "content")) +
            sim_count_json_words(json_object_get(item, "output")) +
            sim_count_json_words(json_object_get(item, "arguments"));
    *audio = 0;
    size_t i;
    json_t *part;
    json_array_foreach(json_object_get(item, "content"), i, part)
    {
        json_t *a = json_object_get(part, "audio");
        int64_t len = json_is_string(a)
                          ? sim_audio_base64_len(json_string_value(a), json_string_length(a))
                          : -1;
        if (len > 0) {
            bool assistant =
                strcmp(json_string_value(json_object_get(item, "role")) ?: "", "assistant") == 0;
            int64_t ms = bytes_ms(rt, (uint64_t)len);
            *audio += assistant ? sim_audio_assistant_tokens(ms) : sim_audio_user_tokens(ms);
        }
    }
}

static void item_create(struct rt *rt, json_t *msg)
{
    json_t *item = json_object_get(msg, "item");
    if (!json_is_object(item) || !json_is_string(json_object_get(item, "type"))) {
        rt_error(rt, "missing_required_parameter", "Missing required parameter: 'item.type'.",
                 json_object_get(msg, "event_id"));
        return;
    }
    int64_t text, audio;
    item_tokens(rt, item, &text, &audio);
    const char *prev = rt->tail != NULL ? rt->tail->id : NULL;
    char prev_copy[ID_LEN] = "";
    if (prev != NULL)
        snprintf(prev_copy, sizeof(prev_copy), "%s", prev);
    const char *id = item_add(rt, json_string_value(json_object_get(item, "id")), text, audio);
    if (id == NULL) {
        rt_error(rt, "server_error", "out of memory", json_object_get(msg, "event_id"));
        return;
    }
    json_t *out = json_deep_copy(item);
    json_object_set_new(out, "id", json_string(id));
    json_object_set_new(out, "object", json_string("realtime.item"));
    if (json_object_get(out, "status") == NULL)
        json_object_set_new(out, "status", json_string("completed"));
    item_events(rt, out, prev ? prev_copy : NULL, true);
}

static void item_delete(struct rt *rt, json_t *msg)
{
    const char *id = json_string_value(json_object_get(msg, "item_id"));
    struct item **p = &rt->items, *prev = NULL;
    for (; id != NULL && *p != NULL; prev = *p, p = &(*p)->next)
        if (strcmp((*p)->id, id) == 0)
            break;
    if (id == NULL || *p == NULL) {
        char m[160];
        snprintf(m, sizeof(m), "Error deleting item: the item with id '%.64s' does not exist.",
                 id ? id : "");
        rt_error(rt, "item_delete_invalid_item_id", m, json_object_get(msg, "event_id"));
        return;
    }
    struct item *gone = *p;
    *p = gone->next;
    if (rt->tail == gone)
        rt->tail = prev;
    rt->ledger.text -= gone->text;
    rt->ledger.audio -= gone->audio;
    rt->ledger.cached_text = rt->ledger.cached_audio = 0;
    rt->n_items--;
    ev(rt, "conversation.item.deleted", json_pack("{ss}", "item_id", gone->id));
    free(gone);
}

/* ---- responses ------------------------------------------------------------------------ */

static void response_free(void *u)
{
    struct response *p = u;
    if (p == NULL)
        return;
    free(p->text);
    if (p->buf != NULL)
        evbuffer_free(p->buf);
    json_decref(p->metadata);
    free(p);
}

static const char *name_of(const struct rt *rt, const struct response *p, bool done,
                           bool transcript)
{
    static const char *const names[2][2][3] = {
        /* GA: audio, transcript, text; then beta */
        {{"response.output_audio.delta", "response.output_audio_transcript.delta",
          "response.output_text.delta"},
         {"response.output_audio.done", "response.output_audio_transcript.done",
          "response.output_text.done"}},
        {{"response.audio.delta", "response.audio_transcript.delta", "response.text.delta"},
         {"response.audio.done", "response.audio_transcript.done", "response.text.done"}},
    };
    return names[rt->beta][done][!p->audio ? 2 : transcript ? 1 : 0];
}

/* Where a delta goes: the response, item, output and content index. */
static json_t *where(const struct response *p)
{
    return json_pack("{ss ss sI sI}", "response_id", p->id, "item_id", p->item_id, "output_index",
                     (json_int_t)0, "content_index", (json_int_t)0);
}

/* The content part: the text or transcript of the words sent so far. */
static json_t *part(const struct response *p, bool whole)
{
    char *text = whole ? sim_text(p->words_sent) : NULL;
    const char *t = text ? text : "";
    json_t *o =
        p->audio
            ? json_pack("{ss ss}", "type", p->rt->beta ? "audio" : "output_audio", "transcript", t)
            : json_pack("{ss ss}", "type", p->rt->beta ? "text" : "output_text", "text", t);
    free(text);
    return o;
}

static json_t *item_obj(const struct response *p, const char *status, bool with_part)
{
    json_t *content = json_array();
    if (with_part)
        json_array_append_new(content, part(p, true));
    return json_pack("{ss ss ss ss ss so}", "id", p->item_id, "object", "realtime.item", "type",
                     "message", "status", status, "role", "assistant", "content", content);
}

static json_t *response_obj(const struct response *p, const char *status, json_t *details,
                            json_t *output, json_t *usage)
{
    struct rt *rt = p->rt;
    bool ulaw = setting_codec(rt, false) == SIM_AUDIO_MULAW,
         alaw = setting_codec(rt, false) == SIM_AUDIO_ALAW;
    json_t *conv = p->conversation ? json_string(p->conv_id) : json_null();
    json_t *o;
    if (rt->beta) {
        o = json_pack(
            "{ss ss ss so so so so ss ss sf ss so so}", "id", p->id, "object", "realtime.response",
            "status", status, "status_details", details ? details : json_null(), "output", output,
            "conversation_id", conv, "modalities",
            p->audio ? json_pack("[ss]", "audio", "text") : json_pack("[s]", "text"), "voice",
            "alloy", "output_audio_format",
            ulaw   ? "g711_ulaw"
            : alaw ? "g711_alaw"
                   : "pcm16",
            "temperature", 0.8, "max_output_tokens", "inf", "usage", usage ? usage : json_null(),
            "metadata", p->metadata ? json_incref(p->metadata) : json_null());
    } else {
        json_t *fmt = ulaw   ? json_pack("{ss}", "type", "audio/pcmu")
                      : alaw ? json_pack("{ss}", "type", "audio/pcma")
                             : json_pack("{ss si}", "type", "audio/pcm", "rate", OUT_RATE);
        o = json_pack("{ss ss ss so so so s[s] ss s{s{so ss}} so so}", "id", p->id, "object",
                      "realtime.response", "status", status, "status_details",
                      details ? details : json_null(), "output", output, "conversation_id", conv,
                      "output_modalities", p->audio ? "audio" : "text", "max_output_tokens", "inf",
                      "audio", "output", "format", fmt, "voice", "alloy", "usage",
                      usage ? usage : json_null(), "metadata",
                      p->metadata ? json_incref(p->metadata) : json_null());
    }
    return o;
}

static void response_piece(struct sim_ws *ws, void *u, size_t i)
{
    struct response *p = u;
    struct rt *rt = p->rt;
    (void)ws;
    size_t w_end = p->audio ? (i + 1) * p->words / p->pieces : MIN(i + 1, p->words);
    if (w_end > p->words_sent) {
        struct evbuffer *b = evbuffer_new();
        for (size_t j = p->words_sent; b != NULL && j < w_end; j++)
            evbuffer_add(b, sim_word(j), strlen(sim_word(j)));
        if (b != NULL && evbuffer_add(b, "", 1) == 0) {
            json_t *o = where(p);
            json_object_set_new(o, "delta", json_string((const char *)evbuffer_pullup(b, -1)));
            ev(rt, name_of(rt, p, false, true), o);
        }
        if (b != NULL)
            evbuffer_free(b);
        p->words_sent = w_end;
    }
    if (!p->audio)
        return;
    int64_t to = MIN((int64_t)(i + 1) * PIECE_MS, p->audio_ms);
    if (sim_audio_render(&p->out, to, p->buf) == -1)
        return;
    size_t len = evbuffer_get_length(p->buf);
    char *b64 = sim_audio_base64(evbuffer_pullup(p->buf, -1), len);
    evbuffer_drain(p->buf, len);
    if (b64 != NULL) {
        json_t *o = where(p);
        json_object_set_new(o, "delta", json_string(b64));
        ev(rt, name_of(rt, p, false, false), o);
    }
    free(b64);
    p->ms_sent = to;
}

/* Sends the closing events and response.done: status "completed",
 * "incomplete" (capped) or "cancelled" (reason), usage of what was sent. */
static void response_finish(struct response *p, const char *cancel_reason)
{
    struct rt *rt = p->rt;
    bool cancelled = cancel_reason != NULL;
    if (!cancelled) {
        if (p->audio) {
            ev(rt, name_of(rt, p, true, false), where(p));
            json_t *o = where(p);
            json_object_set_new(o, "transcript", json_string(p->text));
            ev(rt, name_of(rt, p, true, true), o);
        } else {
            json_t *o = where(p);
            json_object_set_new(o, "text", json_string(p->text));
            ev(rt, name_of(rt, p, true, true), o);
        }
        json_t *o = where(p);
        json_object_set_new(o, "part", part(p, true));
        ev(rt, "response.content_part.done", o);
    }
    const char *status = cancelled ? "cancelled" : p->capped ? "incomplete" : "completed";
    json_t *item = item_obj(p, cancelled ? "incomplete" : "completed", true);
    ev(rt, "response.output_item.done",
       json_pack("{ss sI sO}", "response_id", p->id, "output_index", (json_int_t)0, "item", item));
    /* The reply's item (still in the conversation unless deleted) holds
     * what was sent. */
    bool found = false;
    for (struct item *i = rt->items; p->conversation && i != NULL && !found; i = i->next)
        if (strcmp(i->id, p->item_id) == 0) {
            i->text = (int64_t)p->words_sent;
            i->audio = sim_audio_assistant_tokens(p->ms_sent);
            found = true;
        }
    if (found && !rt->beta)
        ev(rt, "conversation.item.done", json_pack("{sO}", "item", item));
    sim_openai_rt_end(&rt->ledger, &p->usage, (int64_t)p->words_sent, p->ms_sent, found);
    json_t *details =
        cancelled   ? json_pack("{ss ss}", "type", "cancelled", "reason", cancel_reason)
        : p->capped ? json_pack("{ss ss}", "type", "incomplete", "reason", "max_output_tokens")
                    : NULL;
    ev(rt, "response.done",
       json_pack("{so}", "response",
                 response_obj(p, status, details, json_pack("[O]", item),
                              sim_openai_rt_usage_json(&p->usage))));
    json_decref(item);
    rt->resp = NULL;
}

static void response_done(struct sim_ws *ws, void *u)
{
    (void)ws;
    response_finish(u, NULL);
}

static const struct sim_speaker_ops response_ops = {response_piece, response_done, response_free};

static void response_cancel(struct rt *rt, const char *reason)
{
    struct response *p = rt->resp;
    response_finish(p, reason);
    sim_speaker_cancel(rt->sp, NULL, NULL); /* frees p */
}

/* The first of the keys in o (then in the session) as a positive token
 * cap; 0 for none ("inf"). */
static int64_t max_tokens(struct rt *rt, json_t *rp)
{
    json_t *v = json_object_get(rp, "max_output_tokens");
    if (v == NULL)
        v = json_object_get(rt->session,
                            rt->beta ? "max_response_output_tokens" : "max_output_tokens");
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

static bool wants_audio(struct rt *rt, json_t *rp)
{
    const char *key = rt->beta ? "modalities" : "output_modalities";
    json_t *m = json_object_get(rp, key);
    if (!json_is_array(m))
        m = json_object_get(rt->session, key);
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), "audio") == 0)
            return true;
    }
    return !json_is_array(m);
}

static void response_create(struct rt *rt, json_t *msg)
{
    json_t *eid = json_object_get(msg, "event_id");
    if (rt->transcription) {
        rt_error(rt, "invalid_request_error",
                 "Responses are not available in a transcription session.", eid);
        return;
    }
    if (rt->resp != NULL) {
        char m[160];
        snprintf(m, sizeof(m), "Conversation already has an active response in progress: %s.",
                 rt->resp->id);
        rt_error(rt, "conversation_already_has_active_response", m, eid);
        return;
    }
    json_t *rp = json_object_get(msg, "response");
    struct response *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->buf = evbuffer_new()) == NULL) {
        free(p);
        rt_error(rt, "server_error", "out of memory", eid);
        return;
    }
    p->rt = rt;
    p->audio = wants_audio(rt, rp);
    const char *conv = json_string_value(json_object_get(rp, "conversation"));
    p->conversation = conv == NULL || strcmp(conv, "none") != 0;
    int64_t n = sim_ws_tunables(rt->ws)->reply_tokens, cap = max_tokens(rt, rp);
    p->capped = cap > 0 && cap < n;
    p->words = (size_t)(p->capped ? cap : n);
    p->text = sim_text(p->words);
    json_t *speed = rt->beta ? at(rt->session, "speed", NULL)
                             : at(rt->session, "audio", "output", "speed", NULL);
    p->audio_ms = p->audio && p->text
                      ? sim_audio_speech_ms(meter_utf8_chars(p->text, strlen(p->text)),
                                            json_is_number(speed) ? json_number_value(speed) : 1.0)
                      : 0;
    p->pieces =
        p->audio ? (size_t)MAX((int64_t)1, (p->audio_ms + PIECE_MS - 1) / PIECE_MS) : p->words;
    struct sim_audio_format f;
    bool g711 = setting_codec(rt, false) != SIM_AUDIO_PCM16;
    if (p->text == NULL || sim_audio_format_set(&f, setting_codec(rt, false), false,
                                                g711 ? 8000 : OUT_RATE, 0) == -1) {
        response_free(p);
        rt_error(rt, "server_error", "out of memory", eid);
        return;
    }
    sim_audio_out_init(&p->out, &f, p->audio_ms);
    json_t *instr = json_object_get(rp, "instructions");
    bool own_instr = json_is_string(instr);
    if (!own_instr)
        instr = json_object_get(rt->session, "instructions");
    sim_openai_rt_begin(&rt->ledger, sim_count_json_words(instr), p->conversation, &p->usage);
    if (own_instr) /* not the prefix a previous response read */
        p->usage.cached_text = p->usage.cached_audio = 0;
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(rp, "input"), i, in)
    {
        int64_t text, audio;
        item_tokens(rt, in, &text, &audio);
        p->usage.in_text += text;
        p->usage.in_audio += audio;
    }
    json_t *meta = json_object_get(rp, "metadata");
    p->metadata = json_is_object(meta) ? json_incref(meta) : NULL;
    new_id(rt, "resp", p->id);
    new_id(rt, "conv", p->conv_id);
    new_id(rt, "item", p->item_id);

    ev(rt, "response.created",
       json_pack("{so}", "response", response_obj(p, "in_progress", NULL, json_array(), NULL)));
    ev(rt, "rate_limits.updated",
       json_pack("{s[{ss si si sf} {ss si sI sf}]}", "rate_limits", "name", "requests", "limit",
                 10000, "remaining", 9999, "reset_seconds", 0.006, "name", "tokens", "limit",
                 2000000, "remaining", (json_int_t)(2000000 - p->usage.in_text - p->usage.in_audio),
                 "reset_seconds", 0.1));
    json_t *item = item_obj(p, "in_progress", false);
    ev(rt, "response.output_item.added",
       json_pack("{ss sI sO}", "response_id", p->id, "output_index", (json_int_t)0, "item", item));
    if (p->conversation) {
        const char *prev = rt->tail != NULL ? rt->tail->id : NULL;
        char prev_copy[ID_LEN] = "";
        if (prev != NULL)
            snprintf(prev_copy, sizeof(prev_copy), "%s", prev);
        if (item_add(rt, p->item_id, 0, 0) != NULL)
            item_events(rt, json_incref(item), prev ? prev_copy : NULL, false);
    }
    json_decref(item);
    json_t *o = where(p);
    json_object_set_new(o, "part", part(p, false));
    ev(rt, "response.content_part.added", o);
    rt->resp = p;
    if (sim_speaker_say(rt->sp, p->pieces, p->audio ? PIECE_MS : 0, &response_ops, p) == -1) {
        rt->resp = NULL;
        rt_error(rt, "server_error", "out of memory", eid);
    }
}

/* ---- the socket ------------------------------------------------------------------------ */

static void on_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct rt *rt = sim_ws_arg(ws);
    if (!text) {
        rt_error(rt, "invalid_value", "Binary frames are not supported: send JSON events.", NULL);
        return;
    }
    json_t *msg = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_t *eid = json_object_get(msg, "event_id");
    if (!json_is_object(msg) || type == NULL) {
        rt_error(rt, "invalid_json",
                 "The server could not parse the event: expected a JSON object with a type.", NULL);
    } else if (strcmp(type, "session.update") == 0) {
        session_update(rt, msg);
    } else if (strcmp(type, "input_audio_buffer.append") == 0) {
        append(rt, msg);
    } else if (strcmp(type, "input_audio_buffer.commit") == 0) {
        commit(rt, eid);
        rt->vad.speaking = false;
    } else if (strcmp(type, "input_audio_buffer.clear") == 0) {
        rt->buf_bytes = 0;
        rt->vad.speaking = false;
        ev(rt, "input_audio_buffer.cleared", NULL);
    } else if (strcmp(type, "conversation.item.create") == 0) {
        item_create(rt, msg);
    } else if (strcmp(type, "conversation.item.delete") == 0) {
        item_delete(rt, msg);
    } else if (strcmp(type, "response.create") == 0) {
        response_create(rt, msg);
    } else if (strcmp(type, "response.cancel") == 0) {
        if (rt->resp != NULL)
            response_cancel(rt, "client_cancelled");
        else
            rt_error(rt, "response_cancel_not_active",
                     "Cancellation failed: no active response found.", eid);
    } else {
        char m[320];
        snprintf(m, sizeof(m),
                 "Invalid value: '%.64s'. The simulator supports session.update, "
                 "input_audio_buffer.*, conversation.item.create|delete, "
                 "response.create|cancel.",
                 type);
        rt_error(rt, "invalid_value", m, eid);
    }
    json_decref(msg);
}

static void on_close(struct sim_ws *ws, int code)
{
    struct rt *rt = sim_ws_arg(ws);
    (void)code;
    sim_speaker_free(rt->sp); /* frees a response in progress */
    item_free_all(rt);
    json_decref(rt->session);
    free(rt);
}

static const struct sim_ws_ops rt_ops = {on_message, on_close};

/* Whether the Sec-WebSocket-Protocol list offers name (name* when prefix). */
static bool offers(struct sim_request *r, const char *name, bool prefix)
{
    size_t len = 0, nl = strlen(name);
    const char *v = sim_header(r, "sec-websocket-protocol", &len);
    for (size_t i = 0; v != NULL && i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == ','))
            i++;
        size_t n = 0;
        while (i + n < len && v[i + n] != ',' && v[i + n] != ' ')
            n++;
        if ((prefix ? n > nl : n == nl) && strncasecmp(v + i, name, nl) == 0)
            return true;
        i += n;
    }
    return false;
}

/* The subprotocol answered: "realtime" when offered, else the first that
 * is not a key; NULL when none was offered. Static storage or the header. */
static const char *pick_protocol(struct sim_request *r, char *out, size_t size)
{
    if (offers(r, "realtime", false))
        return "realtime";
    size_t len = 0;
    const char *v = sim_header(r, "sec-websocket-protocol", &len);
    for (size_t i = 0; v != NULL && i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == ','))
            i++;
        size_t n = 0;
        while (i + n < len && v[i + n] != ',' && v[i + n] != ' ')
            n++;
        if (n > 0 && n < size && strncasecmp(v + i, KEY_PROTOCOL, strlen(KEY_PROTOCOL)) != 0) {
            snprintf(out, size, "%.*s", (int)n, v + i);
            return out;
        }
        i += n;
    }
    return NULL;
}

static void realtime(struct sim_request *r)
{
    const struct httpparse_request *h = sim_head(r);
    char model[MODEL_MAX] = "", intent[32] = "", proto[64];
    bool call = false;
    if (h->query != NULL) {
        if (urlenc_query_get(h->query, h->query_len, "model", model, sizeof(model)) == -1)
            model[0] = '\0';
        if (urlenc_query_get(h->query, h->query_len, "intent", intent, sizeof(intent)) == -1)
            intent[0] = '\0';
        struct urlenc_query it;
        struct urlenc_pair pair;
        urlenc_query_init(&it, h->query, h->query_len);
        while (urlenc_query_next(&it, &pair))
            call |= urlenc_name_is(&pair, "call_id");
    }
    bool transcription = strcmp(intent, "transcription") == 0;
    if (call) {
        sim_error(r, SIM_ERR_BAD_REQUEST,
                  "WebRTC calls (call_id) are not simulated: connect with ?model=");
        return;
    }
    if (model[0] == '\0' && !transcription) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "Missing required parameter: 'model'.");
        return;
    }
    size_t bl = 0;
    const char *beta = sim_header(r, "openai-beta", &bl);
    struct rt *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    rt->beta = (beta != NULL && memmem(beta, bl, "realtime=v1", 11) != NULL) ||
               offers(r, BETA_PROTOCOL, false);
    rt->transcription = transcription;
    snprintf(rt->model, sizeof(rt->model), "%s", model[0] ? model : "gpt-4o-transcribe");
    struct sim_ws *ws = sim_ws_accept(r, pick_protocol(r, proto, sizeof(proto)), &rt_ops, rt);
    if (ws == NULL) {
        free(rt);
        return;
    }
    rt->ws = ws;
    rt->sp = sim_speaker_new(ws);
    rt->session = session_new(rt);
    if (rt->sp == NULL || rt->session == NULL) {
        sim_ws_close(ws, 1011, "out of memory");
        return;
    }
    vad_configure(rt);
    session_event(rt, rt->transcription && rt->beta ? "transcription_session.created"
                                                    : "session.created");
}

static const struct sim_route routes[] = {
    {"GET", "/v1/realtime", NULL, realtime},
};

const struct sim_route_table sim_openai_realtime_routes = {routes, ARRAY_SIZE(routes)};
