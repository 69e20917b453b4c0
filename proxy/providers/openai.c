/* openai.c - OpenAI (PROVIDERS.md §1): routes /v1 and /openai/v1, the
 * served endpoints, Bearer keys (and the browsers' Realtime subprotocol),
 * the organization/project headers, and the meters:
 *
 *   chat          $.usage of the reply, or the stream's usage chunk (the
 *                 proxy asks for it with stream_options.include_usage and
 *                 drops it when the client did not); cut streams are
 *                 estimated at 4 characters per token from the prompt text
 *                 and the relayed text (streamed, or of a reply cut before
 *                 its usage).
 *   responses     $.usage, or the terminal event's $.response.usage;
 *                 estimated as chat when cut.
 *   embeddings    $.usage.prompt_tokens.
 *   speech        characters of "input" (tts-1*), or the tokens of a
 *                 speech.audio.done event (stream_format sse).
 *   transcription $.usage (tokens or duration), verbose_json's duration, else
 *                 the uploaded file's real duration (audio.h); an upload of
 *                 unknown format without usage is estimated from its size.
 *   realtime      one unit per response.done and per completed input
 *                 transcription; a response cut before its response.done is
 *                 estimated (user audio ~1 token / 100 ms, assistant audio
 *                 ~1 token / 50 ms, text 4 characters per token). */
#include "common.h"
#include "openai_compat.h"
#include "audio.h"
#include "httpparse.h"
#include "multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Added to a chat request body whose client did not ask for stream usage. */
#define INCLUDE_USAGE_MEMBER "\"stream_options\":{\"include_usage\":true},"
/* An upload whose duration cannot be read is estimated at this bitrate
 * (bytes per second of compressed speech: 32 kbit/s). */
#define UNKNOWN_AUDIO_BYTES_PER_SEC 4000
/* Realtime audio is 24 kHz 16-bit PCM unless the session says otherwise. */
#define RT_PCM_BYTES_PER_SEC 48000

/* ---- replies --------------------------------------------------------------- */

static void chat_usage(struct meter *m, const struct meter_obj *u)
{
    m->units.input_tokens = meter_obj_count_at(u, "prompt_tokens", NULL);
    m->units.cached_input_tokens = meter_obj_count_at(u, "prompt_tokens_details", "cached_tokens");
    /* OpenAI-compatible providers (DeepSeek) report cache hits here. */
    if (m->units.cached_input_tokens == 0)
        m->units.cached_input_tokens = meter_obj_count_at(u, "prompt_cache_hit_tokens", NULL);
    m->units.audio_input_tokens = meter_obj_count_at(u, "prompt_tokens_details", "audio_tokens");
    m->units.output_tokens = meter_obj_count_at(u, "completion_tokens", NULL);
    m->units.audio_output_tokens =
        meter_obj_count_at(u, "completion_tokens_details", "audio_tokens");
    m->got_usage = true;
}

static void responses_usage(struct meter *m, const struct meter_obj *u)
{
    m->units.input_tokens = meter_obj_count_at(u, "input_tokens", NULL);
    m->units.cached_input_tokens = meter_obj_count_at(u, "input_tokens_details", "cached_tokens");
    m->units.output_tokens = meter_obj_count_at(u, "output_tokens", NULL);
    m->got_usage = true;
}

static void transcription_usage(struct meter *m, const json_t *u)
{
    const char *type = json_string_value(json_object_get(u, "type"));
    const json_t *seconds = json_object_get(u, "seconds");
    if ((type != NULL && strcmp(type, "duration") == 0) ||
        (type == NULL && json_is_number(seconds))) {
        m->units.audio_ms = meter_seconds_ms(seconds);
    } else {
        m->units.input_tokens = meter_count_at(u, "input_tokens", NULL);
        m->units.audio_input_tokens = meter_count_at(u, "input_token_details", "audio_tokens");
        m->units.output_tokens = meter_count_at(u, "output_tokens", NULL);
    }
    m->got_usage = true;
}

/* TTS models that report usage bill audio tokens out; all output tokens are
 * audio. The tokens replace the character count. */
static void speech_usage(struct meter *m, const json_t *u)
{
    m->units.input_tokens = meter_count_at(u, "input_tokens", NULL);
    m->units.output_tokens = meter_count_at(u, "output_tokens", NULL);
    m->units.audio_output_tokens = m->units.output_tokens;
    m->units.characters = 0;
    m->got_usage = true;
}

/* The usage object of a whole reply into *u; false when there is none.
 * When the model is known from the request only the (last) usage object is
 * read: embeddings replies carry kilobytes of vectors before it; it is read
 * from the bytes when the scanner is sure of them (jscan.h), else parsed
 * alone. Caller owns *root (json_decref). */
static bool reply_usage(struct meter *m, const char *body, size_t len, struct meter_obj *u,
                        json_t **root)
{
    *root = NULL;
    u->json = NULL;
    u->span.p = NULL;
    const char *at = m->model[0] != '\0' ? meter_key_object_at(body, len, "\"usage\"", true) : NULL;
    if (at != NULL && jscan_check_prefix(at, (size_t)(body + len - at), &u->span))
        return true;
    if (at != NULL && (*root = meter_object_at(at, (size_t)(body + len - at))) != NULL) {
        u->json = *root;
        return true;
    }
    *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(*root))
        return false;
    meter_take_model(m, json_object_get(*root, "model"));
    u->json = json_object_get(*root, "usage");
    return json_is_object(u->json);
}

static void chat_json(struct meter *m, const char *body, size_t len)
{
    json_t *root;
    struct meter_obj u;
    if (reply_usage(m, body, len, &u, &root))
        chat_usage(m, &u);
    else /* cut before its usage: the estimate counts the text relayed */
        m->output_chars = meter_scan_string_chars(body, len, "content");
    json_decref(root);
}

static void responses_json(struct meter *m, const char *body, size_t len)
{
    json_t *root;
    struct meter_obj u;
    if (reply_usage(m, body, len, &u, &root))
        responses_usage(m, &u);
    else /* cut before its usage: the estimate counts the text relayed */
        m->output_chars = meter_scan_string_chars(body, len, "text");
    json_decref(root);
}

static void embeddings_json(struct meter *m, const char *body, size_t len)
{
    json_t *root;
    struct meter_obj u;
    if (reply_usage(m, body, len, &u, &root)) {
        m->units.input_tokens = meter_obj_count_at(&u, "prompt_tokens", NULL);
        m->got_usage = true;
    }
    json_decref(root);
}

static void transcription_json(struct meter *m, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    meter_take_model(m, json_object_get(root, "model"));
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        transcription_usage(m, u);
    } else if (json_is_number(json_object_get(root, "duration"))) {
        /* verbose_json of models that report no usage object. */
        m->units.audio_ms = meter_seconds_ms(json_object_get(root, "duration"));
        m->got_usage = true;
    }
done:
    json_decref(root);
}

static void speech_json(struct meter *m, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u))
        speech_usage(m, u);
    json_decref(root);
}

/* ---- requests ------------------------------------------------------------- */

/* Adds stream_options.include_usage = true to a body without
 * stream_options: the member is inserted as text after the opening brace,
 * so every other byte reaches the provider exactly as the client sent it. */
static int insert_include_usage(const char *body, size_t len, char **out, size_t *out_len)
{
    const char *brace = memchr(body, '{', len);
    if (brace == NULL)
        return -1;
    size_t at = (size_t)(brace - body) + 1;
    size_t add = sizeof(INCLUDE_USAGE_MEMBER) - 1;
    char *nb = malloc(len + add + 1);
    if (nb == NULL)
        return -1;
    memcpy(nb, body, at);
    memcpy(nb + at, INCLUDE_USAGE_MEMBER, add);
    memcpy(nb + at + add, body + at, len - at);
    nb[len + add] = '\0';
    *out = nb;
    *out_len = len + add;
    return 0;
}

/* Adds stream_options.include_usage = true: inserted as text when the body
 * has no stream_options, otherwise the body is re-serialised (member order
 * kept). */
static int rewrite_include_usage(json_t *root, const char *body, size_t len, char **out,
                                 size_t *out_len)
{
    json_t *so = json_object_get(root, "stream_options");
    if (so == NULL)
        return insert_include_usage(body, len, out, out_len);
    if (json_is_null(so)) {
        json_t *obj = json_pack("{s:b}", "include_usage", 1);
        if (obj == NULL || json_object_set_new(root, "stream_options", obj) == -1)
            return -1;
    } else if (json_is_object(so)) {
        if (json_object_set_new(so, "include_usage", json_true()) == -1)
            return -1;
    } else {
        return -1; /* not ours to fix: the provider answers with its error */
    }
    char *nb = json_dumps(root, JSON_COMPACT);
    if (nb == NULL)
        return -1;
    *out = nb;
    *out_len = strlen(nb);
    return 0;
}

/* The JSON object of a request body, its model and stream flag. */
static json_t *json_request(struct meter *m, const char *body, size_t len)
{
    if (body == NULL || len == 0)
        return NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    meter_take_model(m, json_object_get(root, "model"));
    m->stream = json_is_true(json_object_get(root, "stream"));
    return root;
}

/* json_request from the bytes when the scanner is sure of them (jscan.h):
 * 1 with the model and stream flag taken and *root the object, -1 when the
 * body is not an object, 0 when unsure (then json_request). */
static int scan_request(struct meter *m, const char *body, size_t len, struct jspan *root)
{
    if (body == NULL || !jscan_check(body, len, root))
        return 0;
    if (jscan_type(*root) != JSCAN_OBJECT)
        return -1;
    meter_span_take_model(m, jscan_get(*root, "model"));
    m->stream = jscan_type(jscan_get(*root, "stream")) == JSCAN_TRUE;
    return 1;
}

/* chat_request on checked bytes: the same reads without a tree; only a
 * stream_options the client sent and that needs include_usage added is
 * parsed by jansson, to be re-serialised. */
static void chat_request_scan(struct meter *m, struct jspan root, const char *body, size_t len,
                              char **rewritten, size_t *rewritten_len)
{
    struct jspan so = jscan_get(root, "stream_options");
    m->client_include_usage = jscan_type(jscan_get(so, "include_usage")) == JSCAN_TRUE;
    m->prompt_chars = meter_span_content_chars(jscan_get(root, "messages"), 0);
    if (!m->stream || m->client_include_usage || rewritten == NULL)
        return;
    int rc = -1;
    if (so.p == NULL) {
        rc = insert_include_usage(body, len, rewritten, rewritten_len);
    } else {
        json_t *tree = json_loadb(body, len, 0, NULL);
        if (tree != NULL)
            rc = rewrite_include_usage(tree, body, len, rewritten, rewritten_len);
        json_decref(tree);
    }
    if (rc == -1)
        log_debug("meter: stream_options left as sent; usage will be estimated");
}

static int chat_request(struct meter *m, const char *body, size_t len, const char *ct,
                        size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    struct jspan checked;
    int sure = scan_request(m, body, len, &checked);
    if (sure == 1)
        chat_request_scan(m, checked, body, len, rewritten, rewritten_len);
    if (sure != 0)
        return sure == 1 ? 0 : -1;
    json_t *root = json_request(m, body, len);
    if (root == NULL)
        return -1;
    m->client_include_usage =
        json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
    m->prompt_chars = meter_content_chars(json_object_get(root, "messages"), 0);
    if (m->stream && !m->client_include_usage && rewritten != NULL &&
        rewrite_include_usage(root, body, len, rewritten, rewritten_len) == -1)
        log_debug("meter: stream_options left as sent; usage will be estimated");
    json_decref(root);
    return 0;
}

static int responses_request(struct meter *m, const char *body, size_t len, const char *ct,
                             size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    struct jspan checked;
    int sure = scan_request(m, body, len, &checked);
    if (sure == 1)
        m->prompt_chars = meter_span_content_chars(jscan_get(checked, "input"), 0) +
                          jscan_string_chars(jscan_get(checked, "instructions"));
    if (sure != 0)
        return sure == 1 ? 0 : -1;
    json_t *root = json_request(m, body, len);
    if (root == NULL)
        return -1;
    m->prompt_chars = meter_content_chars(json_object_get(root, "input"), 0) +
                      meter_json_chars(json_object_get(root, "instructions"));
    json_decref(root);
    return 0;
}

static int embeddings_request(struct meter *m, const char *body, size_t len, const char *ct,
                              size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    json_t *root = json_request(m, body, len);
    if (root == NULL)
        return -1;
    m->prompt_chars = meter_content_chars(json_object_get(root, "input"), 0);
    json_decref(root);
    return 0;
}

static int speech_request(struct meter *m, const char *body, size_t len, const char *ct,
                          size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    json_t *root = json_request(m, body, len);
    if (root == NULL)
        return -1;
    /* Kept in prompt_chars too: a usage report replaces the character
     * count and finish restores it when none came. */
    m->prompt_chars = meter_json_chars(json_object_get(root, "input"));
    m->units.characters = m->prompt_chars;
    m->have_text = true;
    json_decref(root);
    return 0;
}

struct upload {
    struct meter *m;
    size_t file_bytes;
};

static void transcription_part(void *arg, const char *name, const char *data, size_t len)
{
    struct upload *up = arg;
    struct meter *m = up->m;
    if (strcmp(name, "model") == 0) {
        while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\r' || data[len - 1] == '\n'))
            len--;
        meter_set_model(m->model, data, len);
    } else if (strcmp(name, "stream") == 0) {
        m->stream = len >= 4 && strncasecmp(data, "true", 4) == 0;
    } else if (strcmp(name, "file") == 0) {
        m->upload_audio_ms = audio_duration_ms((const uint8_t *)data, len);
        up->file_bytes = len;
    }
}

static int transcription_request(struct meter *m, const char *body, size_t len, const char *ct,
                                 size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)rewritten;
    (void)rewritten_len;
    struct upload up = {m, 0};
    int rc = multipart_parse(body, len, ct, ct_len, transcription_part, &up);
    m->aux[0] = (int64_t)up.file_bytes;
    return rc;
}

/* ---- streams ----------------------------------------------------------------- */

/* A chat chunk's model and usage from checked bytes (jscan.h); true: drop
 * it (the usage chunk the proxy asked for on the client's behalf). */
static bool chat_event_scan(struct meter *m, struct jspan root)
{
    if (jscan_type(root) != JSCAN_OBJECT)
        return false;
    meter_span_take_model(m, jscan_get(root, "model"));
    struct jspan u = jscan_get(root, "usage");
    if (jscan_type(u) != JSCAN_OBJECT)
        return false;
    chat_usage(m, &(struct meter_obj){.span = u});
    struct jspan choices = jscan_get(root, "choices"), first;
    size_t pos = 0;
    return jscan_type(choices) == JSCAN_ARRAY && !jscan_next(choices, &pos, &first) &&
           !m->client_include_usage;
}

static bool chat_event(struct meter *m, const char *event, const char *data, size_t len)
{
    (void)event;
    bool drop = false;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return false;
    m->output_chars += meter_scan_string_chars(data, len, "content");
    bool want_model = m->model[0] == '\0' && memmem(data, len, "\"model\"", 7) != NULL;
    if (!meter_has_usage_object(data, len) && !want_model)
        return false;
    struct jspan checked;
    if (jscan_check(data, len, &checked))
        return chat_event_scan(m, checked);
    json_t *root = json_loadb(data, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    meter_take_model(m, json_object_get(root, "model"));
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        chat_usage(m, &(struct meter_obj){.json = u});
        json_t *choices = json_object_get(root, "choices");
        /* The chunk we asked for on the client's behalf. */
        drop = json_is_array(choices) && json_array_size(choices) == 0 && !m->client_include_usage;
    }
done:
    json_decref(root);
    return drop;
}

static bool is_terminal_response(const char *type)
{
    return type != NULL &&
           (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
            strcmp(type, "response.failed") == 0);
}

/* A terminal event's model and usage from checked bytes (jscan.h); an
 * unnamed event is one when its "type" says so. */
static void responses_event_scan(struct meter *m, struct jspan root, bool named)
{
    if (jscan_type(root) != JSCAN_OBJECT)
        return;
    if (!named) {
        char type[40];
        struct jspan t = jscan_get(root, "type");
        size_t n = jscan_string(t, type, sizeof(type) - 1);
        if (jscan_type(t) != JSCAN_STRING || n > sizeof(type) - 1)
            return;
        type[n] = '\0';
        if (!is_terminal_response(type))
            return;
    }
    struct jspan resp = jscan_get(root, "response");
    meter_span_take_model(m, jscan_get(resp, "model"));
    struct jspan u = jscan_get(resp, "usage");
    if (jscan_type(u) == JSCAN_OBJECT)
        responses_usage(m, &(struct meter_obj){.span = u});
}

static bool responses_event(struct meter *m, const char *event, const char *data, size_t len)
{
    static const char delta_type[] = "response.output_text.delta";
    bool named = event[0] != '\0';
    if (named
            ? strcmp(event, delta_type) == 0
            : memmem(data, len, "\"response.output_text.delta\"", sizeof(delta_type) + 1) != NULL) {
        m->output_chars += meter_scan_string_chars(data, len, "delta");
        return false;
    }
    if (named ? !is_terminal_response(event) : !meter_has_usage_object(data, len))
        return false;
    struct jspan checked;
    if (jscan_check(data, len, &checked)) {
        responses_event_scan(m, checked, named);
        return false;
    }
    json_t *root = json_loadb(data, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    if (!named && !is_terminal_response(json_string_value(json_object_get(root, "type"))))
        goto done;
    json_t *resp = json_object_get(root, "response");
    meter_take_model(m, json_object_get(resp, "model"));
    json_t *u = json_object_get(resp, "usage");
    if (json_is_object(u))
        responses_usage(m, &(struct meter_obj){.json = u});
done:
    json_decref(root);
    return false;
}

/* transcript.text.done and speech.audio.done carry a top-level usage. */
static bool speech_event(struct meter *m, const char *event, const char *data, size_t len)
{
    (void)event;
    if (meter_has_usage_object(data, len))
        speech_json(m, data, len);
    return false;
}

static bool transcription_event(struct meter *m, const char *event, const char *data, size_t len)
{
    (void)event;
    if (!meter_has_usage_object(data, len))
        return false;
    json_t *root = json_loadb(data, len, 0, NULL);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u))
        transcription_usage(m, u);
    json_decref(root);
    return false;
}

/* ---- the end ------------------------------------------------------------------ */

static bool text_finish(struct meter *m)
{
    if (m->got_usage)
        return false;
    m->units.input_tokens = meter_chars_tokens(m->prompt_chars);
    m->units.output_tokens = meter_chars_tokens(m->output_chars);
    return true;
}

static bool embeddings_finish(struct meter *m)
{
    if (m->got_usage)
        return false;
    m->units.input_tokens = meter_chars_tokens(m->prompt_chars);
    return true;
}

static bool speech_finish(struct meter *m)
{
    if (!m->got_usage)
        m->units.characters = m->prompt_chars;
    return !m->got_usage && !m->have_text;
}

static bool transcription_finish(struct meter *m)
{
    if (m->got_usage)
        return false;
    if (m->upload_audio_ms >= 0) {
        m->units.audio_ms = m->upload_audio_ms;
        return false;
    }
    /* Neither a report nor a format we can read (mp3, m4a, webm): never
     * silently zero. */
    m->units.audio_ms = audio_bytes_ms((uint64_t)m->aux[0], UNKNOWN_AUDIO_BYTES_PER_SEC);
    return true;
}

const struct meter_ops openai_meter_chat = {
    .name = "openai.chat",
    .flags = METER_F_JSON_REPLY | METER_F_SSE,
    .request_body = chat_request,
    .response_json = chat_json,
    .sse_event = chat_event,
    .finish = text_finish,
};

static const struct meter_ops meter_responses = {
    .name = "openai.responses",
    .flags = METER_F_JSON_REPLY | METER_F_SSE,
    .request_body = responses_request,
    .response_json = responses_json,
    .sse_event = responses_event,
    .finish = text_finish,
};

static const struct meter_ops meter_embeddings = {
    .name = "openai.embeddings",
    .flags = METER_F_JSON_REPLY,
    .request_body = embeddings_request,
    .response_json = embeddings_json,
    .finish = embeddings_finish,
};

static const struct meter_ops meter_speech = {
    .name = "openai.speech",
    .flags = METER_F_SSE,
    .request_body = speech_request,
    .sse_event = speech_event,
    .finish = speech_finish,
};

static const struct meter_ops meter_transcription = {
    .name = "openai.transcription",
    .flags = METER_F_JSON_REPLY | METER_F_SSE,
    .request_body = transcription_request,
    .response_json = transcription_json,
    .sse_event = transcription_event,
    .finish = transcription_finish,
};

/* ---- Realtime (WebSocket) ---------------------------------------------------- */

struct rt_state {
    bool in_response;       /* response.created seen, its response.done not yet */
    int64_t in_audio_b64;   /* base64 audio appended since the last response.done */
    int64_t in_text_chars;  /* text the client added since then */
    int64_t out_audio_b64;  /* base64 audio deltas since then */
    int64_t out_text_chars; /* text and transcript deltas since then */
};

static bool has(const char *d, size_t n, const char *lit)
{
    return memmem(d, n, lit, strlen(lit)) != NULL;
}

static void rt_add_usage(struct ws_meter *m, const json_t *usage)
{
    const json_t *in = json_object_get(usage, "input_token_details");
    const json_t *out = json_object_get(usage, "output_token_details");
    struct usage_units *u = &m->total;
    u->input_tokens += meter_count_at(usage, "input_tokens", NULL);
    u->output_tokens += meter_count_at(usage, "output_tokens", NULL);
    u->cached_input_tokens += meter_count_at(in, "cached_tokens", NULL);
    u->audio_input_tokens += meter_count_at(in, "audio_tokens", NULL);
    u->audio_output_tokens += meter_count_at(out, "audio_tokens", NULL);
}

static void rt_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                    bool complete)
{
    struct rt_state *st = m->state;
    if (from_client) {
        /* Estimation material only: what the model will be billed for
         * comes in response.done. */
        if (has(data, len, "\"input_audio_buffer.append\""))
            st->in_audio_b64 += meter_scan_string_chars(data, len, "audio");
        else if (has(data, len, "\"conversation.item.create\""))
            st->in_text_chars += meter_scan_string_chars(data, len, "text");
        return;
    }
    if (has(data, len, "\"response.created\"")) {
        st->in_response = true;
        return;
    }
    if (has(data, len, "audio.delta\"")) {
        st->out_audio_b64 += meter_scan_string_chars(data, len, "delta");
        return;
    }
    if (has(data, len, "text.delta\"") || has(data, len, "transcript.delta\"")) {
        st->out_text_chars += meter_scan_string_chars(data, len, "delta");
        return;
    }
    /* Only two server events carry usage; the rest is not parsed (audio
     * deltas are most of the traffic). */
    bool done = has(data, len, "\"response.done\"");
    bool transcribed = !done && has(data, len, "input_audio_transcription.completed\"");
    if ((!done && !transcribed) || !complete)
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    if (done) {
        json_t *usage = json_object_get(json_object_get(root, "response"), "usage");
        if (json_is_object(usage))
            rt_add_usage(m, usage);
        memset(st, 0, sizeof(*st));
    } else {
        json_t *usage = json_object_get(root, "usage");
        json_t *secs = json_object_get(usage, "seconds");
        if (json_is_number(secs) && json_number_value(secs) > 0) {
            m->total.audio_ms += meter_seconds_ms(secs);
        } else if (json_is_object(usage)) {
            m->total.input_tokens += meter_count_at(usage, "input_tokens", NULL);
            m->total.audio_input_tokens +=
                meter_count_at(json_object_get(usage, "input_token_details"), "audio_tokens", NULL);
            m->total.output_tokens += meter_count_at(usage, "output_tokens", NULL);
        }
    }
    json_decref(root);
    ws_meter_unit(m);
}

/* A response cut before its response.done: OpenAI has billed what it
 * generated, estimate it (PROVIDERS.md §1.7). */
static void rt_finish(struct ws_meter *m, const struct ws_meter_end *end)
{
    struct rt_state *st = m->state;
    (void)end;
    if (!st->in_response && st->out_audio_b64 == 0 && st->out_text_chars == 0)
        return;
    /* base64 -> PCM bytes -> ms; user audio 1 token / 100 ms, assistant 1 / 50 ms. */
    int64_t in_ms = audio_bytes_ms((uint64_t)(st->in_audio_b64 / 4 * 3), RT_PCM_BYTES_PER_SEC);
    int64_t out_ms = audio_bytes_ms((uint64_t)(st->out_audio_b64 / 4 * 3), RT_PCM_BYTES_PER_SEC);
    int64_t in_audio = (in_ms + 99) / 100, out_audio = (out_ms + 49) / 50;
    int64_t in_text = meter_chars_tokens(st->in_text_chars);
    int64_t out_text = meter_chars_tokens(st->out_text_chars);
    m->total.input_tokens += in_audio + in_text;
    m->total.audio_input_tokens += in_audio;
    m->total.output_tokens += out_audio + out_text;
    m->total.audio_output_tokens += out_audio;
    m->estimated = true;
    memset(st, 0, sizeof(*st));
}

static const struct ws_meter_ops ws_realtime = {
    .name = "openai.realtime",
    .state_size = sizeof(struct rt_state),
    .by_unit = true,
    .text = rt_text,
    .finish = rt_finish,
};

/* ---- errors ------------------------------------------------------------------ */

json_t *openai_error_body(int status, const char *type, const char *code, const char *message)
{
    (void)status;
    return json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", message, "type", type, "param",
                     "code", code);
}

/* Realtime's error event (PROVIDERS.md §1.8). */
static json_t *ws_error(const char *type, const char *code, const char *message)
{
    return json_pack("{s:s,s:n,s:{s:s,s:s,s:s,s:n,s:n}}", "type", "error", "event_id", "error",
                     "type", type, "code", code, "message", message, "param", "event_id");
}

const char *openai_error_message(json_t *root)
{
    json_t *e = json_object_get(root, "error");
    if (json_is_string(e))
        return json_string_value(e);
    json_t *v = json_object_get(e, "message");
    if (v == NULL)
        v = json_object_get(root, "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- ephemeral tokens ------------------------------------------------------------ */

#define MINT_DEFAULT_TTL_S 60 /* DESIGN §4a: to connect */
#define MINT_DEFAULT_MODEL "gpt-realtime"

/* The GA form (POST /v1/realtime/client_secrets) carries the session config
 * under "session" and its lifetime in expires_after.seconds (10..7200); the
 * beta form (POST /v1/realtime/sessions) is the session config itself and
 * lives a minute. */
static bool mint_is_ga(const char *path, size_t len)
{
    static const char ga[] = "/v1/realtime/client_secrets";
    return len == sizeof(ga) - 1 && memcmp(path, ga, len) == 0;
}

static int mint_parse(const char *path, size_t path_len, const char *body, size_t len,
                      char model[MODEL_MAX], char **first_message, int *ttl_s, char *err,
                      size_t err_size)
{
    bool ga = mint_is_ga(path, path_len);
    json_t *root = len > 0 ? json_loadb(body, len, 0, NULL) : json_object();
    json_t *session = NULL, *msg = NULL;
    int rc = -1;
    *first_message = NULL;
    *ttl_s = MINT_DEFAULT_TTL_S;
    if (!json_is_object(root)) {
        snprintf(err, err_size, "the body must be a JSON object");
        goto done;
    }
    if (ga) {
        json_t *ea = json_object_get(root, "expires_after");
        json_t *secs = json_object_get(ea, "seconds");
        if (ea != NULL && !json_is_null(ea) &&
            (!json_is_integer(secs) || json_integer_value(secs) < 10 ||
             json_integer_value(secs) > 7200)) {
            snprintf(err, err_size, "expires_after.seconds must be an integer from 10 to 7200");
            goto done;
        }
        if (json_is_integer(secs))
            *ttl_s = (int)json_integer_value(secs);
        session = json_deep_copy(json_object_get(root, "session"));
        if (session == NULL)
            session = json_pack("{s:s}", "type", "realtime");
        const char *type = json_string_value(json_object_get(session, "type"));
        if (type != NULL && strcmp(type, "realtime") != 0) {
            snprintf(err, err_size,
                     "session.type \"%.32s\" is not minted by this proxy: use \"realtime\"", type);
            goto done;
        }
    } else {
        session = json_deep_copy(root);
    }
    if (!json_is_object(session)) {
        snprintf(err, err_size, "session must be an object");
        goto done;
    }
    json_t *m = json_object_get(session, "model");
    if (m != NULL && !json_is_string(m)) {
        snprintf(err, err_size, "session.model must be a string");
        goto done;
    }
    const char *name = m != NULL ? json_string_value(m) : MINT_DEFAULT_MODEL;
    meter_set_model(model, name, strlen(name));
    /* The model goes into the socket's URL; the rest of the config is the
     * session's first update. */
    json_object_del(session, "model");
    if (json_object_size(session) > 0) {
        msg = json_pack("{s:s,s:O}", "type", "session.update", "session", session);
        *first_message = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
        if (*first_message == NULL) {
            snprintf(err, err_size, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(msg);
    json_decref(session);
    json_decref(root);
    return rc;
}

static json_t *mint_reply(const char *path, size_t path_len, const char *body, size_t len,
                          const char *token, int64_t expires_at_s, const char *model)
{
    json_t *root = len > 0 ? json_loadb(body, len, 0, NULL) : json_object();
    json_t *out = NULL;
    if (!json_is_object(root))
        goto done;
    if (mint_is_ga(path, path_len)) {
        json_t *session = json_deep_copy(json_object_get(root, "session"));
        if (!json_is_object(session)) {
            json_decref(session);
            session = json_object();
        }
        json_object_set_new(session, "type", json_string("realtime"));
        json_object_set_new(session, "model", json_string(model));
        out = json_pack("{s:s,s:I,s:o}", "value", token, "expires_at", (json_int_t)expires_at_s,
                        "session", session);
    } else {
        out = json_deep_copy(root);
        json_object_set_new(out, "object", json_string("realtime.session"));
        json_object_set_new(out, "model", json_string(model));
        json_object_set_new(
            out, "client_secret",
            json_pack("{s:s,s:I}", "value", token, "expires_at", (json_int_t)expires_at_s));
    }
done:
    json_decref(root);
    return out;
}

static const struct provider_mint mint = {mint_parse, mint_reply};

/* ---- the declaration --------------------------------------------------------- */

static const struct provider_host hosts[] = {
    {"openai", "https://api.openai.com", false, "llm"},
};

static const struct provider_route routes[] = {
    {"/openai/v1", 7, 0},
    {"/v1", 0, 0},
};

/* A sideband socket attaches to a WebRTC call by id: wallet lines have no
 * calls of their own (/v1/realtime/calls is not served on them). */
static const char *const realtime_refused_query[] = {"call_id", NULL};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/v1/chat/completions", -1, "llm", &openai_meter_chat, NULL, 0, NULL, NULL},
    {"POST", "/v1/responses", -1, "llm", &meter_responses, NULL, 0, NULL, NULL},
    {"POST", "/v1/embeddings", -1, "embeddings", &meter_embeddings, NULL, 0, NULL, NULL},
    {"POST", "/v1/audio/speech", -1, "tts", &meter_speech, NULL, 0, NULL, NULL},
    {"POST", "/v1/audio/transcriptions", -1, "stt", &meter_transcription, NULL, 0, NULL, NULL},
    {"POST", "/v1/audio/translations", -1, "stt", &meter_transcription, NULL, 0, NULL, NULL},
    {"GET", "/v1/models", -1, "llm", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/models/{}", -1, "llm", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/realtime", -1, "realtime", NULL, &ws_realtime, PROVIDER_EP_WS,
     realtime_refused_query, "model"},
    {"POST", "/v1/realtime/client_secrets", -1, "realtime", NULL, NULL, PROVIDER_EP_MINT, NULL,
     NULL},
    {"POST", "/v1/realtime/sessions", -1, "realtime", NULL, NULL, PROVIDER_EP_MINT, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_SCHEME, "authorization", "Bearer"},
    {PROVIDER_CRED_SUBPROTOCOL, "openai-insecure-api-key.", NULL},
};

static const char *const request_ids[] = {"x-request-id", NULL};
static const char *const account_headers[] = {"openai-organization", "openai-project", NULL};
static const struct provider_platform_header platform_headers[] = {
    {"organization", "OpenAI-Organization"},
    {"project", "OpenAI-Project"},
};
static const char *const ws_forward[] = {"openai-beta", "openai-organization", "openai-project",
                                         "user-agent", NULL};
static const char *const ws_answer[] = {"realtime", NULL};

static const struct provider_check check = {
    "POST",
    "/v1/chat/completions",
    "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"ping\"}],"
    "\"max_tokens\":1}",
    "application/json",
    "a 1-token gpt-4o-mini completion",
};

const struct provider openai_provider = {
    .name = "openai",
    .display = "OpenAI",
    .slot = true,
    .hosts = hosts,
    .n_hosts = ARRAY_SIZE(hosts),
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .endpoints = endpoints,
    .n_endpoints = ARRAY_SIZE(endpoints),
    .creds = creds,
    .n_creds = ARRAY_SIZE(creds),
    .inject_header = "Authorization",
    .inject_scheme = "Bearer",
    .request_id_headers = request_ids,
    .wallet_request_headers = account_headers,
    .wallet_response_headers = account_headers,
    .platform_headers = platform_headers,
    .n_platform_headers = ARRAY_SIZE(platform_headers),
    .ws_forward_headers = ws_forward,
    .ws_answer_protocols = ws_answer,
    .key_env_example = "OPENAI_API_KEY",
    .error_body = openai_error_body,
    .ws_error = ws_error,
    .error_message = openai_error_message,
    .check = &check,
    .mint = &mint,
    .price_fields = PROVIDER_PRICE_INPUT | PROVIDER_PRICE_CACHED_INPUT | PROVIDER_PRICE_OUTPUT |
                    PROVIDER_PRICE_AUDIO_INPUT | PROVIDER_PRICE_AUDIO_OUTPUT |
                    PROVIDER_PRICE_CHARACTERS | PROVIDER_PRICE_AUDIO_MINUTE |
                    PROVIDER_PRICE_SESSION_MINUTE,
};
