/* deepseek.c - DeepSeek (PROVIDERS.md §4.5): OpenAI-compatible at
 * /deepseek (paths with and without /v1), Bearer keys, OpenAI's chat meter
 * and error shape. The balance endpoint is not served on wallet lines. */
#include "common.h"
#include "openai_compat.h"

static const struct provider_host hosts[] = {
    {"deepseek", "https://api.deepseek.com", false, "llm"},
};

static const struct provider_route routes[] = {
    {"/deepseek", 9, 0},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/chat/completions", -1, "llm", &openai_meter_chat, NULL, 0, NULL, NULL},
    {"POST", "/v1/chat/completions", -1, "llm", &openai_meter_chat, NULL, 0, NULL, NULL},
    {"GET", "/models", -1, "llm", NULL, NULL, 0, NULL, NULL},
    {"GET", "/v1/models", -1, "llm", NULL, NULL, 0, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_SCHEME, "authorization", "Bearer"},
};

static const char *const request_ids[] = {"x-request-id", NULL};

const struct provider deepseek_provider = {
    .name = "deepseek",
    .display = "DeepSeek",
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
    .key_env_example = "DEEPSEEK_API_KEY",
    .error_body = openai_error_body,
    .error_message = openai_error_message,
    .price_fields = PROVIDER_PRICE_INPUT | PROVIDER_PRICE_CACHED_INPUT | PROVIDER_PRICE_OUTPUT,
};
