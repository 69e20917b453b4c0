/* sim_openai.h - OpenAI's chat completions, models and error shape as the
 * simulator speaks them (sim_openai.c), shared with OpenAI-compatible
 * providers (sim_deepseek.c), which differ in a few usage fields and
 * their error vocabulary. */
#ifndef BYOK_SIM_OPENAI_H
#define BYOK_SIM_OPENAI_H

#include "common.h"
#include "sim_provider.h"

enum sim_openai_flavor {
    SIM_OPENAI_OPENAI = 0,
    SIM_OPENAI_DEEPSEEK, /* usage adds prompt_cache_hit_tokens / prompt_cache_miss_tokens */
};

/* POST .../chat/completions: JSON, or SSE with the usage chunk when
 * stream_options.include_usage is true, then [DONE]. */
void sim_openai_chat(struct sim_request *r, enum sim_openai_flavor f);
/* GET .../models (ids NULL-terminated, owned_by owner) and .../models/{id}. */
void sim_openai_models(struct sim_request *r, const char *const *ids, const char *owner);
void sim_openai_model(struct sim_request *r, const char *owner);
/* The error shape {"error":{"message","type","param","code"}}, in the
 * flavor's vocabulary. */
void sim_openai_error_as(struct sim_request *r, enum sim_error what, const char *detail,
                         enum sim_openai_flavor f);
/* Authorization: Bearer <non-empty>. */
bool sim_openai_authorized(struct sim_request *r);

#endif
