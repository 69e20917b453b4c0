/* anthropic.c - Anthropic (PROVIDERS.md §4.4): route /anthropic/v1,
 * x-api-key (the 1.x SDK sends Bearer), and the messages meter:
 *
 *   input_tokens = input + cache writes + cache reads (the whole prompt, like
 *   OpenAI's prompt_tokens), cached = cache reads. Streams: message_start
 *   gives the input side, message_delta the cumulative output (last wins).
 *   Cut before message_delta: the output is estimated from the streamed
 *   text, thinking and tool input (estimated); a non-stream reply cut
 *   before its usage, from its text and thinking as far as they came; an
 *   error event before message_start means nothing was consumed (zero
 *   units, not estimated).
 *   count_tokens is free at Anthropic: served, not metered. */
#include "common.h"
#include "meter.h"
#include "provider.h"

#include <string.h>

/* aux[0]: input_tokens without cache reads/writes; aux[1]: cache writes. */
#define ANTH_INPUT(m)       ((m)->aux[0])
#define ANTH_CACHE_WRITE(m) ((m)->aux[1])

/* Usage of a reply, message_start's message.usage or message_delta's usage.
 * Only the counts present as numbers are taken: message_delta always has the
 * cumulative output_tokens, and some API versions repeat the input side
 * there (possibly as null). */
static void usage(struct meter *m, const struct meter_obj *u)
{
    int64_t n;
    if (meter_obj_number(u, "input_tokens", &n))
        ANTH_INPUT(m) = n;
    if (meter_obj_number(u, "cache_creation_input_tokens", &n))
        ANTH_CACHE_WRITE(m) = n;
    if (meter_obj_number(u, "cache_read_input_tokens", &n))
        m->units.cached_input_tokens = n;
    if (meter_obj_number(u, "output_tokens", &n))
        m->units.output_tokens = n;
    m->units.input_tokens = ANTH_INPUT(m) + ANTH_CACHE_WRITE(m) + m->units.cached_input_tokens;
    m->got_usage = true;
}

static int request(struct meter *m, const char *body, size_t len, const char *ct, size_t ct_len,
                   char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    struct jspan checked; /* read from the bytes when the scanner is sure (jscan.h) */
    if (body != NULL && jscan_check(body, len, &checked)) {
        if (jscan_type(checked) != JSCAN_OBJECT)
            return -1;
        meter_span_take_model(m, jscan_get(checked, "model"));
        m->stream = jscan_type(jscan_get(checked, "stream")) == JSCAN_TRUE;
        m->prompt_chars = meter_span_content_chars(jscan_get(checked, "system"), 0) +
                          meter_span_content_chars(jscan_get(checked, "messages"), 0);
        return 0;
    }
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    meter_take_model(m, json_object_get(root, "model"));
    m->stream = json_is_true(json_object_get(root, "stream"));
    m->prompt_chars = meter_content_chars(json_object_get(root, "system"), 0) +
                      meter_content_chars(json_object_get(root, "messages"), 0);
    json_decref(root);
    return 0;
}

/* The whole reply is parsed: tool_use inputs are JSON objects that may hold
 * a raw "usage" key, so the last-key shortcut is not safe here, and replies
 * without embeddings are small. */
static void reply(struct meter *m, const char *body, size_t len)
{
    struct jspan checked;
    bool sure = jscan_check(body, len, &checked);
    /* Assigned apart: json_is_object evaluates its argument twice. */
    json_t *root = sure ? NULL : json_loadb(body, len, 0, NULL);
    if (sure) {
        meter_span_take_model(m, jscan_get(checked, "model"));
        struct jspan u = jscan_get(checked, "usage");
        if (jscan_type(u) == JSCAN_OBJECT) {
            usage(m, &(struct meter_obj){.span = u});
            m->usage_final = true;
        }
    } else if (json_is_object(root)) {
        meter_take_model(m, json_object_get(root, "model"));
        json_t *u = json_object_get(root, "usage");
        if (json_is_object(u)) {
            usage(m, &(struct meter_obj){.json = u});
            m->usage_final = true;
        }
    }
    json_decref(root);
    /* Cut before its usage (the upstream broke mid-body): the estimate
     * counts the text relayed, as for a cut stream (DESIGN §5). */
    if (!m->got_usage)
        m->output_chars = meter_scan_string_chars(body, len, "text") +
                          meter_scan_string_chars(body, len, "thinking");
}

/* message_start's model and message.usage, or message_delta's usage, from
 * checked bytes (jscan.h). */
static void usage_event_scan(struct meter *m, struct jspan root, bool start)
{
    struct jspan u;
    if (start) {
        struct jspan msg = jscan_get(root, "message");
        meter_span_take_model(m, jscan_get(msg, "model"));
        u = jscan_get(msg, "usage");
    } else {
        u = jscan_get(root, "usage");
    }
    if (jscan_type(u) == JSCAN_OBJECT) {
        usage(m, &(struct meter_obj){.span = u});
        m->usage_final |= !start;
    }
}

/* Named events: deltas are only scanned (text, thinking and tool-input JSON
 * are all output); the few events that carry usage are parsed. Unnamed
 * events are not Anthropic's wire format but are classified by their
 * "type" after a parse. */
static bool event(struct meter *m, const char *ev, const char *data, size_t len)
{
    json_t *root = NULL;
    const char *type = ev;
    if (type[0] == '\0') {
        root = json_loadb(data, len, 0, NULL);
        type = json_string_value(json_object_get(root, "type"));
        if (type == NULL)
            goto done;
    }
    if (strcmp(type, "content_block_delta") == 0) {
        m->output_chars += meter_scan_string_chars(data, len, "text") +
                           meter_scan_string_chars(data, len, "thinking") +
                           meter_scan_string_chars(data, len, "partial_json");
        goto done;
    }
    if (strcmp(type, "error") == 0) {
        m->stream_error = true;
        goto done;
    }
    bool start = strcmp(type, "message_start") == 0;
    if (!start && strcmp(type, "message_delta") != 0)
        goto done;
    struct jspan checked;
    if (root == NULL && jscan_check(data, len, &checked)) {
        usage_event_scan(m, checked, start);
        goto done;
    }
    if (root == NULL)
        root = json_loadb(data, len, 0, NULL);
    json_t *u;
    if (start) {
        json_t *msg = json_object_get(root, "message");
        meter_take_model(m, json_object_get(msg, "model"));
        u = json_object_get(msg, "usage");
    } else {
        u = json_object_get(root, "usage");
    }
    if (json_is_object(u)) {
        usage(m, &(struct meter_obj){.json = u});
        m->usage_final |= !start;
    }
done:
    json_decref(root);
    return false;
}

static bool finish(struct meter *m)
{
    if (m->usage_final)
        return false;
    if (m->got_usage) {
        /* message_start only: the input side is known, the output is at
         * least what was streamed. */
        m->units.output_tokens = MAX(m->units.output_tokens, meter_chars_tokens(m->output_chars));
        return true;
    }
    if (m->stream_error)
        return false; /* failed before message_start: nothing consumed */
    m->units.input_tokens = meter_chars_tokens(m->prompt_chars);
    m->units.output_tokens = meter_chars_tokens(m->output_chars);
    return true;
}

static const struct meter_ops meter_messages = {
    .name = "anthropic.messages",
    .flags = METER_F_JSON_REPLY | METER_F_SSE,
    .request_body = request,
    .response_json = reply,
    .sse_event = event,
    .finish = finish,
};

/* Anthropic's error types by status (PROVIDERS.md §4.4). */
static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    default:
        return "api_error";
    }
}

static json_t *error_body(int status, const char *type, const char *code, const char *message)
{
    (void)type;
    (void)code;
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", error_type(status),
                     "message", message);
}

static const char *error_message(json_t *root)
{
    json_t *v = json_object_get(json_object_get(root, "error"), "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const struct provider_host hosts[] = {
    {"anthropic", "https://api.anthropic.com", false, "llm"},
};

static const struct provider_route routes[] = {
    {"/anthropic/v1", 10, 0},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/v1/messages", -1, "llm", &meter_messages, NULL, 0, NULL, NULL},
    {"POST", "/v1/messages/count_tokens", -1, "llm", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/models", -1, "llm", NULL, NULL, 0, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_HEADER, "x-api-key", NULL},
    {PROVIDER_CRED_SCHEME, "authorization", "Bearer"},
};

static const char *const request_ids[] = {"request-id", "x-request-id", NULL};

const struct provider anthropic_provider = {
    .name = "anthropic",
    .display = "Anthropic",
    .hosts = hosts,
    .n_hosts = ARRAY_SIZE(hosts),
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .endpoints = endpoints,
    .n_endpoints = ARRAY_SIZE(endpoints),
    .creds = creds,
    .n_creds = ARRAY_SIZE(creds),
    .inject_header = "x-api-key",
    .request_id_headers = request_ids,
    .key_env_example = "ANTHROPIC_API_KEY",
    .error_body = error_body,
    .error_message = error_message,
    .price_fields = PROVIDER_PRICE_INPUT | PROVIDER_PRICE_CACHED_INPUT | PROVIDER_PRICE_OUTPUT,
};
