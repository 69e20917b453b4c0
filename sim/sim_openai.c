/* sim_openai.c - simulated OpenAI (PROVIDERS.md §1), text family:
 *
 *   POST /v1/chat/completions  JSON, or SSE chunks (role, one per token,
 *                              finish) then, with stream_options.
 *                              include_usage, the usage chunk
 *                              ("choices": [], every other chunk
 *                              "usage": null), then "data: [DONE]"
 *   POST /v1/responses         JSON, or named SSE events (response.created
 *                              ... response.output_text.delta per token ...
 *                              response.completed, usage in its response)
 *   POST /v1/embeddings        float arrays or base64 (encoding_format)
 *   GET  /v1/models[/{id}]
 *
 * Usage is exact by the simulator's count (sim_provider.h): input tokens =
 * words of the prompt (messages' content, or input + instructions), at
 * least 1; output tokens = the reply's tokens, simulate.reply_tokens capped
 * by max_completion_tokens / max_tokens / max_output_tokens (finish_reason
 * "length", status "incomplete"). Nothing is cached: cached_tokens 0. Keys:
 * Authorization: Bearer (a Realtime upgrade: also the browsers'
 * subprotocol); request ids in x-request-id. Audio and Realtime live in
 * sim_openai_audio.c and sim_openai_realtime.c, their routes merged here
 * (more_routes). */
#include "common.h"
#include "sim_openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#define FINGERPRINT "fp_byok_sim"

/* What a chat or responses reply keeps between its paced tokens. */
struct gen {
    enum sim_openai_flavor flavor;
    char id[48];
    char item_id[48];
    char model[MODEL_MAX];
    int64_t created;
    int64_t prompt; /* input tokens */
    size_t n;       /* output tokens */
    bool capped;    /* n was cut by the request's maximum */
    bool usage;     /* chat: include_usage */
    int64_t seq;    /* responses: sequence_number of the next event */
    char *text;     /* responses: the whole text (for the done events) */
};

static void gen_free(void *p)
{
    struct gen *g = p;
    if (g != NULL)
        free(g->text);
    free(g);
}

/* The reply's length: reply_tokens, or fewer when the first of keys the
 * body holds as a positive integer says so. */
static size_t reply_len(struct sim_request *r, const char *const *keys, bool *capped)
{
    int64_t n = sim_tunables(r)->reply_tokens;
    json_t *body = sim_json(r);
    *capped = false;
    for (; *keys != NULL; keys++) {
        json_t *v = json_object_get(body, *keys);
        if (json_is_integer(v) && json_integer_value(v) > 0) {
            if (json_integer_value(v) < n) {
                n = json_integer_value(v);
                *capped = true;
            }
            break;
        }
    }
    return (size_t)n;
}

static struct gen *gen_new(struct sim_request *r, enum sim_openai_flavor f, const char *prefix,
                           const char *const *max_keys)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->flavor = f;
    g->created = (int64_t)time(NULL);
    snprintf(g->id, sizeof(g->id), "%s%016llx", prefix, (unsigned long long)sim_rand(r));
    snprintf(g->item_id, sizeof(g->item_id), "msg_%016llx", (unsigned long long)sim_rand(r));
    snprintf(g->model, sizeof(g->model), "%s",
             json_string_value(json_object_get(sim_json(r), "model")));
    g->n = reply_len(r, max_keys, &g->capped);
    sim_set_state(r, g, gen_free);
    return g;
}

/* The request's model, or a 400 in the flavor's shape. */
static bool check_model(struct sim_request *r, enum sim_openai_flavor f)
{
    json_t *body = sim_json(r);
    if (body == NULL) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST,
                            "We could not parse the JSON body of your request.", f);
        return false;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    if (model == NULL || model[0] == '\0' || strlen(model) >= MODEL_MAX) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST, "you must provide a model parameter", f);
        return false;
    }
    return true;
}

/* ---- chat completions ------------------------------------------------------ */

static json_t *chat_usage(const struct gen *g)
{
    int64_t out = (int64_t)g->n;
    json_t *u = json_pack("{sI sI sI s{sI sI}}", "prompt_tokens", (json_int_t)g->prompt,
                          "completion_tokens", (json_int_t)out, "total_tokens",
                          (json_int_t)(g->prompt + out), "prompt_tokens_details", "cached_tokens",
                          (json_int_t)0, "audio_tokens", (json_int_t)0);
    if (g->flavor == SIM_OPENAI_DEEPSEEK) {
        json_object_set_new(u, "prompt_cache_hit_tokens", json_integer(0));
        json_object_set_new(u, "prompt_cache_miss_tokens", json_integer(g->prompt));
    } else {
        json_object_set_new(u, "completion_tokens_details",
                            json_pack("{sI sI sI sI}", "reasoning_tokens", (json_int_t)0,
                                      "audio_tokens", (json_int_t)0, "accepted_prediction_tokens",
                                      (json_int_t)0, "rejected_prediction_tokens", (json_int_t)0));
    }
    return u;
}

static json_t *chat_chunk(const struct gen *g, json_t *choices)
{
    json_t *o = json_pack("{ss ss sI ss ss so}", "id", g->id, "object", "chat.completion.chunk",
                          "created", (json_int_t)g->created, "model", g->model,
                          "system_fingerprint", FINGERPRINT, "choices", choices);
    if (g->flavor == SIM_OPENAI_OPENAI)
        json_object_set_new(o, "service_tier", json_string("default"));
    if (g->usage)
        json_object_set_new(o, "usage", json_null());
    return o;
}

static json_t *chat_choice(json_t *delta, const char *finish)
{
    return json_pack("[{sI so so so}]", "index", (json_int_t)0, "delta", delta, "logprobs",
                     json_null(), "finish_reason", finish ? json_string(finish) : json_null());
}

static void chat_token(struct sim_request *r, size_t i)
{
    struct gen *g = sim_state(r);
    sim_sse(r, NULL, chat_chunk(g, chat_choice(json_pack("{ss}", "content", sim_word(i)), NULL)));
}

static void chat_done(struct sim_request *r)
{
    struct gen *g = sim_state(r);
    sim_sse(r, NULL, chat_chunk(g, chat_choice(json_object(), g->capped ? "length" : "stop")));
    if (g->usage) {
        json_t *last = chat_chunk(g, json_array());
        json_object_set_new(last, "usage", chat_usage(g));
        sim_sse(r, NULL, last);
    }
    sim_stream_write(r, "data: [DONE]\n\n", 14);
}

static const struct sim_token_ops chat_ops = {chat_token, chat_done};

void sim_openai_chat(struct sim_request *r, enum sim_openai_flavor f)
{
    static const char *const max_keys[] = {"max_completion_tokens", "max_tokens", NULL};
    if (!check_model(r, f))
        return;
    json_t *body = sim_json(r);
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST, "Missing required parameter: 'messages'.", f);
        return;
    }
    struct gen *g = gen_new(r, f, "chatcmpl-", max_keys);
    if (g == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    g->prompt = MAX((int64_t)1, sim_count_json_words(messages));
    if (json_is_true(json_object_get(body, "stream"))) {
        g->usage =
            json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
        sim_stream_begin(r, 200, "text/event-stream; charset=utf-8", NULL, 0);
        json_t *role = json_pack("{ss ss}", "role", "assistant", "content", "");
        if (f == SIM_OPENAI_OPENAI)
            json_object_set_new(role, "refusal", json_null());
        sim_sse(r, NULL, chat_chunk(g, chat_choice(role, NULL)));
        sim_stream_tokens(r, g->n, &chat_ops);
        return;
    }
    char *text = sim_text(g->n);
    json_t *message = json_pack("{ss ss}", "role", "assistant", "content", text ? text : "");
    free(text);
    if (f == SIM_OPENAI_OPENAI) {
        json_object_set_new(message, "refusal", json_null());
        json_object_set_new(message, "annotations", json_array());
    }
    json_t *reply = json_pack(
        "{ss ss sI ss s[{sI so so ss}] so ss}", "id", g->id, "object", "chat.completion", "created",
        (json_int_t)g->created, "model", g->model, "choices", "index", (json_int_t)0, "message",
        message, "logprobs", json_null(), "finish_reason", g->capped ? "length" : "stop", "usage",
        chat_usage(g), "system_fingerprint", FINGERPRINT);
    if (f == SIM_OPENAI_OPENAI)
        json_object_set_new(reply, "service_tier", json_string("default"));
    sim_reply_json_after_tokens(r, g->n, 200, reply, NULL, 0);
}

static void chat(struct sim_request *r)
{
    sim_openai_chat(r, SIM_OPENAI_OPENAI);
}

/* ---- responses ------------------------------------------------------------- */

static json_t *responses_usage(const struct gen *g)
{
    return json_pack("{sI s{sI} sI s{sI} sI}", "input_tokens", (json_int_t)g->prompt,
                     "input_tokens_details", "cached_tokens", (json_int_t)0, "output_tokens",
                     (json_int_t)g->n, "output_tokens_details", "reasoning_tokens", (json_int_t)0,
                     "total_tokens", (json_int_t)(g->prompt + (int64_t)g->n));
}

static json_t *output_text(const char *text)
{
    return json_pack("{ss ss s[] s[]}", "type", "output_text", "text", text, "annotations",
                     "logprobs");
}

static json_t *message_item(const struct gen *g, const char *status, const char *text)
{
    json_t *content = json_array();
    if (text != NULL)
        json_array_append_new(content, output_text(text));
    return json_pack("{ss ss ss ss so}", "id", g->item_id, "type", "message", "status", status,
                     "role", "assistant", "content", content);
}

/* The response object; final: with its output and usage. */
static json_t *response_obj(struct sim_request *r, const struct gen *g, bool final)
{
    json_t *body = sim_json(r);
    const char *status = !final ? "in_progress" : g->capped ? "incomplete" : "completed";
    json_t *output = json_array();
    if (final)
        json_array_append_new(output, message_item(g, "completed", g->text ? g->text : ""));
    json_t *o = json_pack(
        "{ss ss sI ss ss so so so so sb ss so s{s{ss}} so sI sI}", "id", g->id, "object",
        "response", "created_at", (json_int_t)g->created, "status", status, "model", g->model,
        "output", output, "error", json_null(), "incomplete_details",
        final && g->capped ? json_pack("{ss}", "reason", "max_output_tokens") : json_null(),
        "usage", final ? responses_usage(g) : json_null(), "parallel_tool_calls", 1, "tool_choice",
        "auto", "tools", json_array(), "text", "format", "type", "text", "metadata", json_object(),
        "temperature", (json_int_t)1, "top_p", (json_int_t)1);
    json_t *instructions = json_object_get(body, "instructions");
    json_object_set(o, "instructions", instructions ? instructions : json_null());
    json_t *max = json_object_get(body, "max_output_tokens");
    json_object_set(o, "max_output_tokens", max ? max : json_null());
    json_object_set_new(o, "previous_response_id", json_null());
    json_object_set_new(o, "store", json_boolean(!json_is_false(json_object_get(body, "store"))));
    json_object_set_new(o, "truncation", json_string("disabled"));
    return o;
}

/* One named event: its type and sequence_number first, as OpenAI sends. */
static void responses_event(struct sim_request *r, const char *type, json_t *fields)
{
    struct gen *g = sim_state(r);
    json_t *o = json_pack("{ss sI}", "type", type, "sequence_number", (json_int_t)g->seq++);
    json_object_update(o, fields);
    json_decref(fields);
    sim_sse(r, type, o);
}

static void responses_token(struct sim_request *r, size_t i)
{
    struct gen *g = sim_state(r);
    responses_event(r, "response.output_text.delta",
                    json_pack("{ss sI sI ss s[]}", "item_id", g->item_id, "output_index",
                              (json_int_t)0, "content_index", (json_int_t)0, "delta", sim_word(i),
                              "logprobs"));
}

static void responses_done(struct sim_request *r)
{
    struct gen *g = sim_state(r);
    const char *text = g->text ? g->text : "";
    responses_event(r, "response.output_text.done",
                    json_pack("{ss sI sI ss s[]}", "item_id", g->item_id, "output_index",
                              (json_int_t)0, "content_index", (json_int_t)0, "text", text,
                              "logprobs"));
    responses_event(r, "response.content_part.done",
                    json_pack("{ss sI sI so}", "item_id", g->item_id, "output_index", (json_int_t)0,
                              "content_index", (json_int_t)0, "part", output_text(text)));
    responses_event(r, "response.output_item.done",
                    json_pack("{sI so}", "output_index", (json_int_t)0, "item",
                              message_item(g, "completed", text)));
    const char *terminal = g->capped ? "response.incomplete" : "response.completed";
    responses_event(r, terminal, json_pack("{so}", "response", response_obj(r, g, true)));
}

static const struct sim_token_ops responses_ops = {responses_token, responses_done};

static void responses(struct sim_request *r)
{
    static const char *const max_keys[] = {"max_output_tokens", NULL};
    if (!check_model(r, SIM_OPENAI_OPENAI))
        return;
    json_t *body = sim_json(r);
    json_t *input = json_object_get(body, "input");
    if (input == NULL) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST, "Missing required parameter: 'input'.",
                            SIM_OPENAI_OPENAI);
        return;
    }
    struct gen *g = gen_new(r, SIM_OPENAI_OPENAI, "resp_", max_keys);
    if (g == NULL || (g->text = sim_text(g->n)) == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    g->prompt = MAX((int64_t)1, sim_count_json_words(input) +
                                    sim_count_json_words(json_object_get(body, "instructions")));
    if (!json_is_true(json_object_get(body, "stream"))) {
        sim_reply_json_after_tokens(r, g->n, 200, response_obj(r, g, true), NULL, 0);
        return;
    }
    sim_stream_begin(r, 200, "text/event-stream; charset=utf-8", NULL, 0);
    responses_event(r, "response.created",
                    json_pack("{so}", "response", response_obj(r, g, false)));
    responses_event(r, "response.in_progress",
                    json_pack("{so}", "response", response_obj(r, g, false)));
    responses_event(r, "response.output_item.added",
                    json_pack("{sI so}", "output_index", (json_int_t)0, "item",
                              message_item(g, "in_progress", NULL)));
    responses_event(r, "response.content_part.added",
                    json_pack("{ss sI sI so}", "item_id", g->item_id, "output_index", (json_int_t)0,
                              "content_index", (json_int_t)0, "part", output_text("")));
    sim_stream_tokens(r, g->n, &responses_ops);
}

/* ---- embeddings ------------------------------------------------------------ */

/* A deterministic unit-ish vector for input i. */
static void vector(size_t i, int64_t dims, float *out)
{
    uint64_t s = 0x5eed0000u + i;
    for (int64_t d = 0; d < dims; d++)
        out[d] = (float)((double)(sim_rng_next(&s) >> 11) / 9007199254740992.0 - 0.5) / 16.0f;
}

static void embeddings(struct sim_request *r)
{
    if (!check_model(r, SIM_OPENAI_OPENAI))
        return;
    json_t *body = sim_json(r);
    json_t *input = json_object_get(body, "input");
    if (!json_is_string(input) && !(json_is_array(input) && json_array_size(input) > 0)) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST,
                            "'input' must be a string, or an array of strings or tokens",
                            SIM_OPENAI_OPENAI);
        return;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    json_t *dv = json_object_get(body, "dimensions");
    int64_t dims = json_is_integer(dv)              ? json_integer_value(dv)
                   : strstr(model, "large") != NULL ? 3072
                                                    : 1536;
    if (dims < 1 || dims > 8192) {
        sim_openai_error_as(r, SIM_ERR_BAD_REQUEST, "'dimensions' must be from 1 to 8192",
                            SIM_OPENAI_OPENAI);
        return;
    }
    /* One string, one token array, or a list of either. */
    bool one = json_is_string(input) || json_is_integer(json_array_get(input, 0));
    size_t n_inputs = one ? 1 : json_array_size(input);
    const char *fmt = json_string_value(json_object_get(body, "encoding_format"));
    bool b64 = fmt != NULL && strcmp(fmt, "base64") == 0;
    float *vec = malloc((size_t)dims * sizeof(float));
    char *enc = malloc(4 * (((size_t)dims * sizeof(float) + 2) / 3) + 1);
    json_t *data = json_array();
    if (vec == NULL || enc == NULL || data == NULL) {
        free(vec);
        free(enc);
        json_decref(data);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        vector(i, dims, vec);
        json_t *emb;
        if (b64) {
            EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)vec,
                            (int)((size_t)dims * sizeof(float)));
            emb = json_string(enc);
        } else {
            emb = json_array();
            for (int64_t d = 0; d < dims; d++)
                json_array_append_new(emb, json_real(vec[d]));
        }
        json_array_append_new(data, json_pack("{ss sI so}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", emb));
    }
    free(vec);
    free(enc);
    int64_t tokens = MAX((int64_t)1, sim_count_json_words(input));
    sim_reply_json(r, 200,
                   json_pack("{ss so ss s{sI sI}}", "object", "list", "data", data, "model", model,
                             "usage", "prompt_tokens", (json_int_t)tokens, "total_tokens",
                             (json_int_t)tokens),
                   NULL, 0);
}

/* ---- models ---------------------------------------------------------------- */

static json_t *model_obj(const char *id, const char *owner)
{
    return json_pack("{ss ss sI ss}", "id", id, "object", "model", "created",
                     (json_int_t)1700000000, "owned_by", owner);
}

void sim_openai_models(struct sim_request *r, const char *const *ids, const char *owner)
{
    json_t *data = json_array();
    for (; *ids != NULL; ids++)
        json_array_append_new(data, model_obj(*ids, owner));
    sim_reply_json(r, 200, json_pack("{ss so}", "object", "list", "data", data), NULL, 0);
}

/* Any id: the simulator serves every model name. */
void sim_openai_model(struct sim_request *r, const char *owner)
{
    sim_reply_json(r, 200, model_obj(sim_param(r), owner), NULL, 0);
}

static void models(struct sim_request *r)
{
    static const char *const ids[] = {"gpt-4o-mini",
                                      "gpt-4o",
                                      "gpt-4.1-mini",
                                      "gpt-4.1",
                                      "text-embedding-3-small",
                                      "text-embedding-3-large",
                                      NULL};
    sim_openai_models(r, ids, "system");
}

static void model(struct sim_request *r)
{
    sim_openai_model(r, "system");
}

/* ---- keys and errors ------------------------------------------------------- */

/* Whether the Sec-WebSocket-Protocol list offers "<prefix><non-empty>". */
static bool key_subprotocol(struct sim_request *r)
{
    static const char prefix[] = "openai-insecure-api-key.";
    size_t len = 0;
    const char *v = sim_header(r, "sec-websocket-protocol", &len);
    for (size_t at = 0; v != NULL && at < len;) {
        while (at < len && (v[at] == ' ' || v[at] == ','))
            at++;
        size_t n = 0;
        while (at + n < len && v[at + n] != ',' && v[at + n] != ' ')
            n++;
        if (n > sizeof(prefix) - 1 && strncasecmp(v + at, prefix, sizeof(prefix) - 1) == 0)
            return true;
        at += n;
    }
    return false;
}

bool sim_openai_authorized(struct sim_request *r)
{
    return sim_has_key(r, "authorization", "Bearer") ||
           (sim_head(r)->upgrade_websocket && key_subprotocol(r));
}

void sim_openai_error_as(struct sim_request *r, enum sim_error what, const char *detail,
                         enum sim_openai_flavor f)
{
    bool ds = f == SIM_OPENAI_DEEPSEEK;
    char message[512];
    const char *type = "invalid_request_error";
    json_t *code = json_null();
    int status = 400;
    struct http_kv extra[2];
    size_t n_extra = 0;
    switch (what) {
    case SIM_ERR_BAD_REQUEST:
        snprintf(message, sizeof(message), "%s", detail ? detail : "Invalid request.");
        break;
    case SIM_ERR_UNAUTHORIZED:
        status = 401;
        if (ds) {
            snprintf(message, sizeof(message),
                     "Authentication Fails, no api key provided (simulated DeepSeek)");
            type = "authentication_error";
            json_decref(code);
            code = json_string("invalid_request_error");
        } else {
            snprintf(message, sizeof(message),
                     "You didn't provide an API key. You need to provide your API key in an "
                     "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                     "YOUR_KEY). (simulated OpenAI)");
        }
        break;
    case SIM_ERR_NOT_FOUND:
        status = 404;
        snprintf(message, sizeof(message), "Invalid URL (%s)", detail ? detail : "");
        break;
    case SIM_ERR_RATE_LIMIT:
        status = 429;
        snprintf(message, sizeof(message),
                 ds ? "Rate Limit Reached (simulated DeepSeek)"
                    : "Rate limit reached for requests (simulated "
                      "OpenAI). Please try again in 1s.");
        type = ds ? "rate_limit_error" : "requests";
        json_decref(code);
        code = json_string("rate_limit_exceeded");
        extra[n_extra++] = (struct http_kv){"retry-after", "1"};
        if (!ds)
            extra[n_extra++] = (struct http_kv){"x-ratelimit-remaining-requests", "0"};
        break;
    case SIM_ERR_SERVER:
        status = 500;
        snprintf(message, sizeof(message),
                 ds ? "Server Error (simulated DeepSeek)"
                    : "The server had an error while processing your request. Sorry about that! "
                      "(simulated OpenAI)");
        type = ds ? "api_error" : "server_error";
        break;
    }
    sim_reply_json(r, status,
                   json_pack("{s{ss ss so so}}", "error", "message", message, "type", type, "param",
                             json_null(), "code", code),
                   extra, n_extra);
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    sim_openai_error_as(r, what, detail, SIM_OPENAI_OPENAI);
}

static const struct sim_route routes[] = {
    {"POST", "/v1/chat/completions", chat, NULL}, {"POST", "/v1/responses", responses, NULL},
    {"POST", "/v1/embeddings", embeddings, NULL}, {"GET", "/v1/models", models, NULL},
    {"GET", "/v1/models/{id}", model, NULL},
};

static const struct sim_route_table *const more_routes[] = {
    &sim_openai_audio_routes,
    &sim_openai_realtime_routes,
    NULL,
};

const struct sim_provider sim_openai = {
    .upstream = "openai",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .more_routes = more_routes,
    .authorized = sim_openai_authorized,
    .error = error,
    .request_id_header = "x-request-id",
    .request_id_prefix = "req_",
};
