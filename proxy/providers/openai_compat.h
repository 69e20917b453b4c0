/* openai_compat.h - what OpenAI-compatible providers (DeepSeek) take from
 * the OpenAI module: its chat meter and error shape. Internal to
 * proxy/providers/. */
#ifndef BYOK_PROVIDERS_OPENAI_COMPAT_H
#define BYOK_PROVIDERS_OPENAI_COMPAT_H

#include "meter.h"
#include "provider.h"

/* POST /v1/chat/completions: usage from the reply or the stream's usage
 * chunk (asked for with stream_options.include_usage and dropped again when
 * the client did not ask), estimated from the text when cut. */
extern const struct meter_ops openai_meter_chat;

/* {"error":{"message","type","param","code"}} */
json_t *openai_error_body(int status, const char *type, const char *code, const char *message);
const char *openai_error_message(json_t *root);

#endif
