/* sim_openai.h - OpenAI's chat completions, models and error shape as the
 * simulator speaks them (sim_openai.c), shared with OpenAI-compatible
 * providers (sim_deepseek.c), which differ in a few usage fields and
 * their error vocabulary; and the route tables of OpenAI's other files
 * (audio, Realtime). */
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
/* Authorization: Bearer <non-empty>; on a WebSocket upgrade also a
 * browser's "openai-insecure-api-key.<key>" subprotocol. */
bool sim_openai_authorized(struct sim_request *r);

/* Realtime usage (sim_openai_realtime.c), pure. The ledger is a socket's
 * conversation in tokens and the prefix a previous response read or wrote
 * (what the next one finds cached); a response's usage is its input read
 * at response.create and its output counted at its end. */
struct sim_rt_ledger {
    int64_t text, audio;               /* tokens of the conversation's items */
    int64_t cached_text, cached_audio; /* the prefix read or written before */
};
struct sim_rt_usage {
    int64_t in_text, in_audio, cached_text, cached_audio, out_text, out_audio;
};
/* The input side: instructions' words plus, when the response reads the
 * conversation, its tokens (cached: the prefix, at most the input). */
void sim_openai_rt_begin(const struct sim_rt_ledger *l, int64_t instructions, bool conversation,
                         struct sim_rt_usage *u);
/* The output side: out_text words and out_audio_ms of audio (1 token per
 * 50 ms); when the reply joins the conversation, the ledger grows by it
 * and everything u read or wrote becomes the cached prefix. */
void sim_openai_rt_end(struct sim_rt_ledger *l, struct sim_rt_usage *u, int64_t out_text,
                       int64_t out_audio_ms, bool conversation);
/* response.done's usage object (PROVIDERS.md §1.7). Caller owns it. */
json_t *sim_openai_rt_usage_json(const struct sim_rt_usage *u);

/* The audio routes (sim_openai_audio.c: speech, transcriptions,
 * translations) and the Realtime socket (sim_openai_realtime.c), merged
 * into the "openai" host. */
extern const struct sim_route_table sim_openai_audio_routes;
extern const struct sim_route_table sim_openai_realtime_routes;

#endif
