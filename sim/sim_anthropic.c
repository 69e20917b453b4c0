/* sim_anthropic.c - simulated Anthropic (PROVIDERS.md §4.4):
 *
 *   POST /v1/messages               JSON, or the named SSE sequence
 *                                   message_start (usage: input side,
 *                                   output_tokens 1), content_block_start,
 *                                   ping, content_block_delta per token,
 *                                   content_block_stop, message_delta
 *                                   (cumulative usage), message_stop
 *   POST /v1/messages/count_tokens  {"input_tokens"}
 *   GET  /v1/models[/{id}]
 *
 * max_tokens is required (400 otherwise, as Anthropic answers); the reply
 * has min(reply_tokens, max_tokens) tokens (stop_reason "max_tokens" when
 * cut). input_tokens = words of system + messages, at least 1; no cache
 * reads or writes. Keys: x-api-key, or Authorization: Bearer (the 1.x SDK);
 * request ids in request-id, and in error bodies. */
#include "common.h"
#include "sim_provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msg {
    char id[48];
    char model[MODEL_MAX];
    int64_t input;
    size_t n;
    bool capped;
};

static json_t *usage(const struct msg *m, int64_t output)
{
    return json_pack("{sI sI sI sI ss}", "input_tokens", (json_int_t)m->input,
                     "cache_creation_input_tokens", (json_int_t)0, "cache_read_input_tokens",
                     (json_int_t)0, "output_tokens", (json_int_t)output, "service_tier",
                     "standard");
}

static const char *stop_reason(const struct msg *m)
{
    return m->capped ? "max_tokens" : "end_turn";
}

/* The prompt's tokens: system and messages. */
static int64_t input_tokens(json_t *body)
{
    return MAX((int64_t)1, sim_count_json_words(json_object_get(body, "system")) +
                               sim_count_json_words(json_object_get(body, "messages")));
}

/* model and messages present (count_tokens and messages); a 400 if not. */
static bool check_common(struct sim_request *r, json_t *body)
{
    if (body == NULL) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "The request body is not valid JSON.");
        return false;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    if (model == NULL || model[0] == '\0' || strlen(model) >= MODEL_MAX) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "model: Field required");
        return false;
    }
    if (!json_is_array(json_object_get(body, "messages"))) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "messages: Field required");
        return false;
    }
    return true;
}

static void event(struct sim_request *r, const char *type, json_t *fields)
{
    json_t *o = json_pack("{ss}", "type", type);
    json_object_update(o, fields);
    json_decref(fields);
    sim_sse(r, type, o);
}

static void token(struct sim_request *r, size_t i)
{
    event(r, "content_block_delta",
          json_pack("{sI s{ss ss}}", "index", (json_int_t)0, "delta", "type", "text_delta", "text",
                    sim_word(i)));
}

static void done(struct sim_request *r)
{
    struct msg *m = sim_state(r);
    event(r, "content_block_stop", json_pack("{sI}", "index", (json_int_t)0));
    event(r, "message_delta",
          json_pack("{s{ss so} so}", "delta", "stop_reason", stop_reason(m), "stop_sequence",
                    json_null(), "usage", usage(m, (int64_t)m->n)));
    event(r, "message_stop", json_object());
}

static const struct sim_token_ops stream_ops = {token, done};

static void messages(struct sim_request *r)
{
    json_t *body = sim_json(r);
    if (!check_common(r, body))
        return;
    json_t *max = json_object_get(body, "max_tokens");
    if (!json_is_integer(max) || json_integer_value(max) < 1) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "max_tokens: Field required (a positive integer)");
        return;
    }
    struct msg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_set_state(r, m, free);
    snprintf(m->id, sizeof(m->id), "msg_%016llx", (unsigned long long)sim_rand(r));
    snprintf(m->model, sizeof(m->model), "%s", json_string_value(json_object_get(body, "model")));
    m->input = input_tokens(body);
    int64_t n = sim_tunables(r)->reply_tokens;
    m->capped = json_integer_value(max) < n;
    m->n = (size_t)(m->capped ? json_integer_value(max) : n);

    if (json_is_true(json_object_get(body, "stream"))) {
        sim_stream_begin(r, 200, "text/event-stream; charset=utf-8", NULL, 0);
        event(r, "message_start",
              json_pack("{s{ss ss ss ss s[] sn sn so}}", "message", "id", m->id, "type", "message",
                        "role", "assistant", "model", m->model, "content", "stop_reason",
                        "stop_sequence", "usage", usage(m, 1)));
        event(r, "content_block_start",
              json_pack("{sI s{ss ss}}", "index", (json_int_t)0, "content_block", "type", "text",
                        "text", ""));
        event(r, "ping", json_object());
        sim_stream_tokens(r, m->n, &stream_ops);
        return;
    }
    char *text = sim_text(m->n);
    json_t *reply = json_pack("{ss ss ss ss s[{ss ss}] ss sn so}", "id", m->id, "type", "message",
                              "role", "assistant", "model", m->model, "content", "type", "text",
                              "text", text ? text : "", "stop_reason", stop_reason(m),
                              "stop_sequence", "usage", usage(m, (int64_t)m->n));
    free(text);
    sim_reply_json_after_tokens(r, m->n, 200, reply, NULL, 0);
}

static void count_tokens(struct sim_request *r)
{
    json_t *body = sim_json(r);
    if (!check_common(r, body))
        return;
    sim_reply_json(r, 200, json_pack("{sI}", "input_tokens", (json_int_t)input_tokens(body)), NULL,
                   0);
}

static json_t *model_obj(const char *id, const char *display)
{
    return json_pack("{ss ss ss ss}", "type", "model", "id", id, "display_name", display,
                     "created_at", "2026-01-01T00:00:00Z");
}

static void models(struct sim_request *r)
{
    static const char *const ids[][2] = {
        {"claude-sonnet-5-5", "Claude Sonnet 5.5"},
        {"claude-haiku-5-5", "Claude Haiku 5.5"},
        {"claude-opus-5-5", "Claude Opus 5.5"},
    };
    json_t *data = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
        json_array_append_new(data, model_obj(ids[i][0], ids[i][1]));
    sim_reply_json(r, 200,
                   json_pack("{so sb ss ss}", "data", data, "has_more", 0, "first_id", ids[0][0],
                             "last_id", ids[ARRAY_SIZE(ids) - 1][0]),
                   NULL, 0);
}

/* Any id: the simulator serves every model name. */
static void model(struct sim_request *r)
{
    sim_reply_json(r, 200, model_obj(sim_param(r), sim_param(r)), NULL, 0);
}

static bool authorized(struct sim_request *r)
{
    return sim_has_key(r, "x-api-key", NULL) || sim_has_key(r, "authorization", "Bearer");
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    static const struct {
        int status;
        const char *type, *message;
    } shapes[] = {
        [SIM_ERR_BAD_REQUEST] = {400, "invalid_request_error", "invalid request"},
        [SIM_ERR_UNAUTHORIZED] = {401, "authentication_error", "x-api-key header is required"},
        [SIM_ERR_NOT_FOUND] = {404, "not_found_error", "Not found"},
        [SIM_ERR_RATE_LIMIT] = {429, "rate_limit_error",
                                "Number of request tokens has exceeded your per-minute rate "
                                "limit (simulated Anthropic)"},
        [SIM_ERR_SERVER] = {500, "api_error", "Internal server error (simulated Anthropic)"},
    };
    char message[512];
    if (what == SIM_ERR_NOT_FOUND && detail != NULL)
        snprintf(message, sizeof(message), "Not found: %s", detail);
    else
        snprintf(message, sizeof(message), "%s",
                 what == SIM_ERR_BAD_REQUEST && detail ? detail : shapes[what].message);
    struct http_kv retry = {"retry-after", "1"};
    sim_reply_json(r, shapes[what].status,
                   json_pack("{ss s{ss ss} ss}", "type", "error", "error", "type",
                             shapes[what].type, "message", message, "request_id",
                             sim_request_id(r)),
                   &retry, what == SIM_ERR_RATE_LIMIT ? 1 : 0);
}

static const struct sim_route routes[] = {
    {"POST", "/v1/messages", messages, NULL},
    {"POST", "/v1/messages/count_tokens", count_tokens, NULL},
    {"GET", "/v1/models", models, NULL},
    {"GET", "/v1/models/{id}", model, NULL},
};

const struct sim_provider sim_anthropic = {
    .upstream = "anthropic",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "request-id",
    .request_id_prefix = "req_",
};
