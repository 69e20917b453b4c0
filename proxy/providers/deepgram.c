/* deepgram.c - Deepgram (PROVIDERS.md §4.1): route /deepgram/v1, keys as
 * "Authorization: Token" (temporary tokens as Bearer; browsers in the
 * subprotocol pair "token, <key>" / "bearer, <token>"), and the meters:
 *
 *   listen REST    audio = $.metadata.duration of the reply; without it, the
 *                  uploaded WAV/Ogg duration, else an estimate from the size.
 *                  model = the query's model= or "" (priced by "*").
 *   speak REST     characters = the dg-char-count header, else the code
 *                  points of "text". model = query model=, else the
 *                  dg-model-name header.
 *   listen socket  while it runs: the streamed audio from its bytes when the
 *                  encoding has a fixed byte rate (linear16, mulaw, alaw),
 *                  estimated; at the end the final Metadata's duration (not
 *                  estimated). Without Metadata: the streamed seconds, else
 *                  the session's wall-clock time (estimated).
 *   speak socket   the code points of every Speak message's text. */
#include "common.h"
#include "audio.h"
#include "meter.h"
#include "provider.h"
#include "urlenc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UNKNOWN_AUDIO_BYTES_PER_SEC 4000 /* an upload of unknown format: 32 kbit/s */

static void model_query(struct meter *m, const char *query, size_t len)
{
    char model[MODEL_MAX];
    if (urlenc_query_get(query, len, "model", model, sizeof(model)) == 0)
        meter_set_model(m->model, model, strlen(model));
}

/* --- listen ------------------------------------------------------------------- */

static int listen_request(struct meter *m, const char *body, size_t len, const char *ct,
                          size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    /* Audio, or {"url":...} (then only the reply knows). */
    if (body != NULL && len > 0 && body[0] != '{')
        m->aux[0] = (int64_t)len;
    if (body != NULL && len > 0)
        m->upload_audio_ms = audio_duration_ms((const uint8_t *)body, len);
    return 0;
}

/* $.metadata.duration; the metadata object opens the reply, so only it is
 * parsed when it has the duration (transcripts of long audio are large). */
static void listen_json(struct meter *m, const char *body, size_t len)
{
    json_t *root = NULL;
    json_t *meta = meter_key_object(body, len, "\"metadata\"", false);
    if (!json_is_number(json_object_get(meta, "duration"))) {
        json_decref(meta);
        meta = NULL;
        root = json_loadb(body, len, 0, NULL);
    }
    const json_t *d = json_object_get(meta ? meta : json_object_get(root, "metadata"), "duration");
    if (json_is_number(d)) {
        m->units.audio_ms = meter_seconds_ms(d);
        m->got_usage = true;
    }
    json_decref(meta);
    json_decref(root);
}

static bool listen_finish(struct meter *m)
{
    if (m->got_usage)
        return false;
    if (m->upload_audio_ms >= 0)
        m->units.audio_ms = m->upload_audio_ms;
    else
        m->units.audio_ms = audio_bytes_ms((uint64_t)m->aux[0], UNKNOWN_AUDIO_BYTES_PER_SEC);
    return true;
}

static const struct meter_ops meter_listen = {
    .name = "deepgram.listen",
    .flags = METER_F_JSON_REPLY,
    .request_query = model_query,
    .request_body = listen_request,
    .response_json = listen_json,
    .finish = listen_finish,
};

/* --- speak -------------------------------------------------------------------- */

static int speak_request(struct meter *m, const char *body, size_t len, const char *ct,
                         size_t ct_len, char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *text = json_object_get(root, "text");
    if (json_is_string(text)) {
        m->prompt_chars = meter_json_chars(text);
        m->have_text = true;
    }
    int rc = json_is_object(root) ? 0 : -1;
    json_decref(root);
    return rc;
}

static void speak_header(struct meter *m, const char *name, size_t name_len, const char *value,
                         size_t value_len)
{
    static const char count[] = "dg-char-count";
    static const char model[] = "dg-model-name";
    if (name_len != sizeof(count) - 1) /* both names are 13 bytes */
        return;
    if (strncasecmp(name, model, name_len) == 0) {
        /* The model actually used, when the query named none. */
        while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\r'))
            value_len--;
        if (m->model[0] == '\0' && value_len > 0)
            meter_set_model(m->model, value, value_len);
        return;
    }
    if (strncasecmp(name, count, name_len) != 0)
        return;
    int64_t n = meter_header_count(value, value_len);
    if (n >= 0)
        m->header_characters = n;
}

static bool speak_finish(struct meter *m)
{
    if (m->header_characters >= 0) {
        m->units.characters = m->header_characters;
        return false;
    }
    m->units.characters = m->prompt_chars;
    return !m->have_text;
}

static const struct meter_ops meter_speak = {
    .name = "deepgram.speak",
    .request_query = model_query,
    .request_body = speak_request,
    .response_header = speak_header,
    .finish = speak_finish,
};

/* --- listen socket ----------------------------------------------------------- */

struct live_state {
    int64_t bytes_per_sec; /* fixed-rate encodings; 0 otherwise */
    uint64_t audio_bytes;  /* binary payload the client streamed */
    bool metadata;         /* the final Metadata arrived */
};

static void live_open(struct ws_meter *m, const char *query, size_t len)
{
    struct live_state *st = m->state;
    char enc[32], rate[16], ch[8];
    if (urlenc_query_get(query, len, "encoding", enc, sizeof(enc)) == -1 ||
        urlenc_query_get(query, len, "sample_rate", rate, sizeof(rate)) == -1)
        return;
    if (urlenc_query_get(query, len, "channels", ch, sizeof(ch)) == -1)
        strcpy(ch, "1");
    long sr = strtol(rate, NULL, 10), nch = strtol(ch, NULL, 10);
    int sample_bytes = strcmp(enc, "linear16") == 0                            ? 2
                       : strcmp(enc, "linear32") == 0                          ? 4
                       : strcmp(enc, "mulaw") == 0 || strcmp(enc, "alaw") == 0 ? 1
                                                                               : 0;
    if (sample_bytes > 0 && sr > 0 && sr <= 192000 && nch > 0 && nch <= 16)
        st->bytes_per_sec = (int64_t)sr * sample_bytes * nch;
}

static void live_update(struct ws_meter *m)
{
    struct live_state *st = m->state;
    if (st->metadata || st->bytes_per_sec == 0)
        return;
    m->total.audio_ms = audio_bytes_ms(st->audio_bytes, (uint64_t)st->bytes_per_sec);
    m->estimated = m->total.audio_ms > 0;
}

static void live_binary(struct ws_meter *m, bool from_client, const uint8_t *data, size_t len,
                        uint64_t off, bool last)
{
    struct live_state *st = m->state;
    (void)data;
    (void)off;
    (void)last;
    if (from_client)
        st->audio_bytes += len;
}

static void live_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                      bool complete)
{
    struct live_state *st = m->state;
    if (from_client || !complete || memmem(data, len, "\"Metadata\"", 10) == NULL)
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    json_t *d = json_object_get(root, "duration");
    if (json_is_number(d) && json_number_value(d) > 0) {
        /* What Deepgram bills for the whole stream. */
        m->total.audio_ms = MAX(meter_seconds_ms(d), m->recorded.audio_ms);
        m->estimated = false;
        st->metadata = true;
    }
    json_decref(root);
}

static void live_finish(struct ws_meter *m, const struct ws_meter_end *end)
{
    struct live_state *st = m->state;
    if (st->metadata)
        return;
    if (st->bytes_per_sec > 0) {
        live_update(m);
    } else if (st->audio_bytes > 0) {
        /* An encoding without a fixed byte rate (opus, containers): the
         * session's wall clock, as streamed in real time. */
        m->total.audio_ms = MAX(m->total.audio_ms, end->wall_ms);
    }
    m->estimated = m->total.audio_ms > 0;
}

static const struct ws_meter_ops ws_listen = {
    .name = "deepgram.listen_socket",
    .state_size = sizeof(struct live_state),
    .open = live_open,
    .text = live_text,
    .binary = live_binary,
    .interval = live_update,
    .finish = live_finish,
};

/* --- speak socket ------------------------------------------------------------ */

static void speak_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                       bool complete)
{
    if (!from_client || !complete || memmem(data, len, "\"text\"", 6) == NULL)
        return;
    m->total.characters += meter_message_chars(data, len, "text");
}

static const struct ws_meter_ops ws_speak = {
    .name = "deepgram.speak_socket",
    .text = speak_text,
};

/* --- errors ------------------------------------------------------------------ */

static json_t *error_body(int status, const char *type, const char *code, const char *message)
{
    (void)status;
    (void)type;
    return json_pack("{s:s,s:s}", "err_code", code, "err_msg", message);
}

static const char *error_message(json_t *root)
{
    json_t *v = json_object_get(root, "err_msg");
    if (!json_is_string(v))
        v = json_object_get(root, "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* --- the declaration --------------------------------------------------------- */

static const struct provider_host hosts[] = {
    {"deepgram", "https://api.deepgram.com", false, "stt"},
};

static const struct provider_route routes[] = {
    {"/deepgram/v1", 9, 0},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/v1/listen", -1, "stt", &meter_listen, NULL, 0, NULL, "model"},
    {"POST", "/v1/speak", -1, "tts", &meter_speak, NULL, 0, NULL, "model"},
    {"GET", "/v1/listen", -1, "stt", NULL, &ws_listen, PROVIDER_EP_WS, NULL, "model"},
    {"GET", "/v1/speak", -1, "tts", NULL, &ws_speak, PROVIDER_EP_WS, NULL, "model"},
    {"GET", "/v1/models", -1, "stt", NULL, NULL, 0, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_SCHEME, "authorization", "Token"},
    {PROVIDER_CRED_SCHEME, "authorization", "Bearer"},
    {PROVIDER_CRED_SUBPROTOCOL_PAIR, "token", NULL},
    {PROVIDER_CRED_SUBPROTOCOL_PAIR, "bearer", NULL},
};

static const char *const request_ids[] = {"dg-request-id", "x-request-id", NULL};
static const char *const ws_forward[] = {"user-agent", NULL};

const struct provider deepgram_provider = {
    .name = "deepgram",
    .display = "Deepgram",
    .hosts = hosts,
    .n_hosts = ARRAY_SIZE(hosts),
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .endpoints = endpoints,
    .n_endpoints = ARRAY_SIZE(endpoints),
    .creds = creds,
    .n_creds = ARRAY_SIZE(creds),
    .inject_header = "Authorization",
    .inject_scheme = "Token",
    .request_id_headers = request_ids,
    .ws_forward_headers = ws_forward,
    .key_env_example = "DEEPGRAM_API_KEY",
    .error_body = error_body,
    .error_message = error_message,
    .price_fields =
        PROVIDER_PRICE_AUDIO_MINUTE | PROVIDER_PRICE_CHARACTERS | PROVIDER_PRICE_SESSION_MINUTE,
};
