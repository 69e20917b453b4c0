/* sim_deepseek.c - simulated DeepSeek (PROVIDERS.md §4.5): OpenAI-compatible
 * chat completions at /chat/completions and /v1/chat/completions (usage adds
 * prompt_cache_hit_tokens, always 0, and prompt_cache_miss_tokens = the
 * prompt), models at /models and /v1/models, Bearer keys, OpenAI's error
 * shape with DeepSeek's wording (its exact 429/500 bodies are unverified).
 * Not simulated: its queue's ": keep-alive" comments, /user/balance. */
#include "common.h"
#include "sim_openai.h"

static void chat(struct sim_request *r)
{
    sim_openai_chat(r, SIM_OPENAI_DEEPSEEK);
}

static void models(struct sim_request *r)
{
    static const char *const ids[] = {"deepseek-chat", "deepseek-reasoner", NULL};
    sim_openai_models(r, ids, "deepseek");
}

static void model(struct sim_request *r)
{
    sim_openai_model(r, "deepseek");
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    sim_openai_error_as(r, what, detail, SIM_OPENAI_DEEPSEEK);
}

static const struct sim_route routes[] = {
    {"POST", "/chat/completions", chat, NULL}, {"POST", "/v1/chat/completions", chat, NULL},
    {"GET", "/models", models, NULL},          {"GET", "/v1/models", models, NULL},
    {"GET", "/models/{id}", model, NULL},      {"GET", "/v1/models/{id}", model, NULL},
};

const struct sim_provider sim_deepseek = {
    .upstream = "deepseek",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .authorized = sim_openai_authorized,
    .error = error,
    .request_id_header = "x-request-id",
    .request_id_prefix = "",
};
