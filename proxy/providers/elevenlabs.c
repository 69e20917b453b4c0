/* elevenlabs.c - ElevenLabs (PROVIDERS.md §2): route /elevenlabs/v1, the
 * served endpoints, xi-api-key (browsers: xi_api_key or authorization in
 * the first stream-input message), and the meters:
 *
 *   TTS REST      characters = the reply's character-cost header (what
 *                 ElevenLabs billed) when present; else the code points of
 *                 "text" x the model's credit rate, rounded up: 0.5 for model
 *                 ids containing "turbo" or "flash", 1 otherwise. model =
 *                 model_id, or eleven_multilingual_v2 (the API's default).
 *                 Estimated only when the request had no text and no header
 *                 came.
 *   stream-input  the code points of every "text" the client sent (the
 *                 first message too), at the model's credit rate; model =
 *                 the model_id query parameter or the default. */
#include "common.h"
#include "meter.h"
#include "provider.h"

#include <string.h>
#include <strings.h>

#define EL_DEFAULT_MODEL "eleven_multilingual_v2"

/* Characters billed for code_points characters of text with model: half,
 * rounded up, for turbo and flash models. */
static int64_t el_characters(const char *model, int64_t code_points)
{
    if (strstr(model, "turbo") != NULL || strstr(model, "flash") != NULL)
        return code_points / 2 + (code_points & 1);
    return code_points;
}

static int tts_request(struct meter *m, const char *body, size_t len, const char *ct, size_t ct_len,
                       char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    int rc = -1;
    if (!json_is_object(root))
        goto done;
    const json_t *text = json_object_get(root, "text");
    if (json_is_string(text)) {
        m->prompt_chars = meter_json_chars(text);
        m->have_text = true;
    }
    const json_t *id = json_object_get(root, "model_id");
    if (json_is_string(id) && json_string_length(id) > 0)
        meter_set_model(m->model, json_string_value(id), json_string_length(id));
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static void tts_header(struct meter *m, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    static const char cost[] = "character-cost";
    if (name_len != sizeof(cost) - 1 || strncasecmp(name, cost, name_len) != 0)
        return;
    int64_t n = meter_header_count(value, value_len);
    if (n >= 0)
        m->header_characters = n;
}

static bool tts_finish(struct meter *m)
{
    if (m->header_characters >= 0) {
        m->units.characters = m->header_characters;
        return false;
    }
    m->units.characters = el_characters(m->model, m->prompt_chars);
    return !m->have_text;
}

static const struct meter_ops meter_tts = {
    .name = "elevenlabs.tts",
    .default_model = EL_DEFAULT_MODEL,
    .request_body = tts_request,
    .response_header = tts_header,
    .finish = tts_finish,
};

/* --- stream-input ------------------------------------------------------------ */

struct si_state {
    int64_t code_points; /* of every text the client sent */
};

static void si_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                    bool complete)
{
    struct si_state *st = m->state;
    if (!from_client || !complete || memmem(data, len, "\"text\"", 6) == NULL)
        return;
    st->code_points += meter_message_chars(data, len, "text");
    /* Cumulative, so the half-credit rounding is applied once overall. */
    m->total.characters = el_characters(m->model, st->code_points);
}

static const struct ws_meter_ops ws_stream_input = {
    .name = "elevenlabs.stream_input",
    .state_size = sizeof(struct si_state),
    .default_model = EL_DEFAULT_MODEL,
    .text = si_text,
};

/* --- errors ------------------------------------------------------------------ */

static json_t *error_body(int status, const char *type, const char *code, const char *message)
{
    (void)status;
    (void)type;
    return json_pack("{s:{s:s,s:s}}", "detail", "status", code, "message", message);
}

/* detail as a string, {"status","message"}, or a 422 list [{"msg"}]. */
static const char *error_message(json_t *root)
{
    json_t *d = json_object_get(root, "detail");
    json_t *v = NULL;
    if (json_is_string(d))
        return json_string_value(d);
    if (json_is_object(d))
        v = json_object_get(d, "message");
    else if (json_is_array(d))
        v = json_object_get(json_array_get(d, 0), "msg");
    if (v == NULL)
        v = json_object_get(root, "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* --- the declaration --------------------------------------------------------- */

static const struct provider_host hosts[] = {
    {"elevenlabs", "https://api.elevenlabs.io", false, "tts"},
};

static const struct provider_route routes[] = {
    {"/elevenlabs/v1", 11, 0},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/v1/text-to-speech/{}", -1, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"POST", "/v1/text-to-speech/{}/stream", -1, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"POST", "/v1/text-to-speech/{}/with-timestamps", -1, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"POST", "/v1/text-to-speech/{}/stream/with-timestamps", -1, "tts", &meter_tts, NULL, 0, NULL,
     NULL},
    {"GET", "/v1/text-to-speech/{}/stream-input", -1, "tts", NULL, &ws_stream_input, PROVIDER_EP_WS,
     NULL, "model_id"},
    {"GET", "/v1/text-to-speech/{}/multi-stream-input", -1, "tts", NULL, &ws_stream_input,
     PROVIDER_EP_WS, NULL, "model_id"},
    {"GET", "/v1/voices", -1, "tts", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/voices/{}", -1, "tts", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/models", -1, "tts", NULL, NULL, 0, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_HEADER, "xi-api-key", NULL},
    {PROVIDER_CRED_FIRST_MESSAGE, "xi_api_key", NULL},
    {PROVIDER_CRED_FIRST_MESSAGE, "authorization", "Bearer"},
};

static const char *const extra_query[] = {"xi_api_key", "xi-api-key", NULL};
static const char *const request_ids[] = {"request-id", "x-request-id", NULL};
static const char *const ws_forward[] = {"user-agent", NULL};

static const struct provider_check check = {
    "POST",
    "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=mp3_22050_32",
    "{\"text\":\"ok\",\"model_id\":\"eleven_turbo_v2_5\"}",
    "application/json",
    "a short eleven_turbo_v2_5 speech request",
};

const struct provider elevenlabs_provider = {
    .name = "elevenlabs",
    .display = "ElevenLabs",
    .slot = true,
    .hosts = hosts,
    .n_hosts = ARRAY_SIZE(hosts),
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .endpoints = endpoints,
    .n_endpoints = ARRAY_SIZE(endpoints),
    .creds = creds,
    .n_creds = ARRAY_SIZE(creds),
    .extra_cred_query = extra_query,
    .inject_header = "xi-api-key",
    .request_id_headers = request_ids,
    .ws_forward_headers = ws_forward,
    .key_env_example = "ELEVENLABS_API_KEY",
    .error_body = error_body,
    .error_message = error_message,
    .check = &check,
    .price_fields = PROVIDER_PRICE_CHARACTERS | PROVIDER_PRICE_SESSION_MINUTE,
};
