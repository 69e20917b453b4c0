/* cartesia.c - Cartesia (PROVIDERS.md §4.2): route /cartesia, X-API-Key or
 * Bearer (answered in the style the client used), browsers' ?api_key= /
 * ?access_token= on the socket, and the meters: the code points of every
 * "transcript" (REST body, or each socket message); model = model_id, which
 * on the socket every message names: those messages are held until whole
 * and checked before they are forwarded. */
#include "common.h"
#include "httpparse.h"
#include "meter.h"
#include "provider.h"

#include <string.h>

static int tts_request(struct meter *m, const char *body, size_t len, const char *ct, size_t ct_len,
                       char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    const json_t *t = json_object_get(root, "transcript");
    if (json_is_string(t)) {
        m->prompt_chars = meter_json_chars(t);
        m->have_text = true;
    }
    meter_take_model(m, json_object_get(root, "model_id"));
    json_decref(root);
    return 0;
}

static bool tts_finish(struct meter *m)
{
    m->units.characters = m->prompt_chars;
    return !m->have_text;
}

/* /tts/sse carries audio chunks; the request has the characters. */
static const struct meter_ops meter_tts = {
    .name = "cartesia.tts",
    .request_body = tts_request,
    .finish = tts_finish,
};

static void ws_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                    bool complete)
{
    if (!from_client || !complete || memmem(data, len, "\"transcript\"", 12) == NULL)
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    m->total.characters += meter_json_chars(json_object_get(root, "transcript"));
    const json_t *model = json_object_get(root, "model_id");
    if (json_is_string(model) &&
        (strlen(m->model) != json_string_length(model) ||
         memcmp(m->model, json_string_value(model), json_string_length(model)) != 0)) {
        meter_set_model(m->model, json_string_value(model), json_string_length(model));
        m->model_changed = true;
    }
    json_decref(root);
}

static const struct ws_meter_ops ws_tts = {
    .name = "cartesia.tts_socket",
    .inspect_client_text = true,
    .text = ws_text,
};

static json_t *error_body(int status, const char *type, const char *code, const char *message)
{
    (void)status;
    (void)type;
    return json_pack("{s:s,s:s}", "error", message, "code", code);
}

/* The socket's error message: {"type":"error", ...} (PROVIDERS.md §4.2). */
static json_t *ws_error(const char *type, const char *code, const char *message)
{
    (void)type;
    return json_pack("{s:s,s:s,s:s}", "type", "error", "error", message, "code", code);
}

static const char *error_message(json_t *root)
{
    json_t *v = json_object_get(root, "error");
    if (json_is_object(v))
        v = json_object_get(v, "message");
    if (!json_is_string(v))
        v = json_object_get(root, "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Older API versions know X-API-Key, newer ones Bearer: answer in the
 * client's style. */
static void inject_pick(const struct httpparse_request *h, const char **header, const char **scheme)
{
    if (h != NULL && httpparse_find(h, "x-api-key") != NULL) {
        *header = "X-API-Key";
        *scheme = NULL;
    } else {
        *header = "Authorization";
        *scheme = "Bearer";
    }
}

static const struct provider_host hosts[] = {
    {"cartesia", "https://api.cartesia.ai", false, "tts"},
};

static const struct provider_route routes[] = {
    {"/cartesia", 9, 0},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/tts/bytes", -1, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"POST", "/tts/sse", -1, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"GET", "/tts/websocket", -1, "tts", NULL, &ws_tts, PROVIDER_EP_WS, NULL, NULL},
    {"GET", "/voices", -1, "tts", NULL, NULL, 0, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_HEADER, "x-api-key", NULL},
    {PROVIDER_CRED_SCHEME, "authorization", "Bearer"},
    {PROVIDER_CRED_QUERY, "api_key", NULL},
    {PROVIDER_CRED_QUERY, "access_token", NULL},
};

static const char *const request_ids[] = {"x-request-id", "request-id", NULL};
static const char *const ws_forward[] = {"cartesia-version", "user-agent", NULL};

const struct provider cartesia_provider = {
    .name = "cartesia",
    .display = "Cartesia",
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
    .inject_pick = inject_pick,
    .request_id_headers = request_ids,
    .ws_forward_headers = ws_forward,
    .key_env_example = "CARTESIA_API_KEY",
    .error_body = error_body,
    .ws_error = ws_error,
    .error_message = error_message,
    .price_fields = PROVIDER_PRICE_CHARACTERS | PROVIDER_PRICE_SESSION_MINUTE,
};
