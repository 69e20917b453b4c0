/* meter.h - reads provider-reported usage out of OpenAI-shaped replies
 * (PROVIDERS.md §1.1–1.5) for chat completions, responses, embeddings,
 * audio/speech and audio/transcriptions, streamed or not.
 *
 * The caller feeds the request body once (to learn the model, whether the
 * client asked for stream usage, TTS input characters and the upload's
 * audio duration), then either the whole JSON reply or each SSE event. */
#ifndef BYOK_METER_H
#define BYOK_METER_H

#include "common.h"
#include "usage.h"

enum meter_kind {
    METER_NONE = 0,      /* not metered (e.g. GET /v1/models): a record with zero units */
    METER_CHAT,          /* /v1/chat/completions */
    METER_RESPONSES,     /* /v1/responses */
    METER_EMBEDDINGS,    /* /v1/embeddings */
    METER_SPEECH,        /* /v1/audio/speech */
    METER_TRANSCRIPTION, /* /v1/audio/transcriptions and /v1/audio/translations */
};

/* Path after the provider prefix, e.g. "/v1/chat/completions" (no query). */
enum meter_kind meter_kind_for_path(const char *path, size_t len);
/* "llm", "embeddings", "tts", "stt" or "llm" for METER_NONE. */
const char *meter_line_name(enum meter_kind k);

struct meter {
    enum meter_kind kind;
    char model[MODEL_MAX];
    bool stream;               /* request asked "stream": true */
    bool client_include_usage; /* request had stream_options.include_usage true */
    bool got_usage;            /* provider-reported usage was seen */
    struct usage_units units;
    /* Estimation material for aborted streams (chat/responses): characters of
     * the prompt and of the streamed output text. */
    int64_t prompt_chars;
    int64_t output_chars;
    int64_t upload_audio_ms; /* transcriptions: from the uploaded file, -1 unknown */
};

void meter_init(struct meter *m, enum meter_kind k);

/* Inspects the request body (JSON, or multipart/form-data for
 * transcriptions; content_type may be NULL). Fills model/stream/
 * client_include_usage/prompt_chars/characters/upload_audio_ms.
 *
 * For METER_CHAT with stream true, *rewritten is set to a new body (caller
 * frees with free()) that has stream_options.include_usage = true, when the
 * client did not already ask for it; else *rewritten is NULL and the body is
 * forwarded unchanged. Returns -1 if a JSON body does not parse (the request
 * is then forwarded unchanged and the provider answers). */
MUST_CHECK int meter_request(struct meter *m, const char *body, size_t len,
                             const char *content_type, size_t content_type_len, char **rewritten,
                             size_t *rewritten_len);

/* Whole (non-stream) JSON reply body. */
void meter_response_json(struct meter *m, const char *body, size_t len);

/* One SSE event of a streamed reply. Returns true when the event must be
 * dropped from what the client sees: the extra chat usage chunk
 * ("choices":[] with a usage object) when the client did not ask for it. */
bool meter_sse_event(struct meter *m, const char *event, const char *data, size_t data_len);

/* Called when the exchange ends. For METER_SPEECH the units are the
 * characters of the input; for METER_TRANSCRIPTION without reported usage,
 * the upload's duration. When no usage was reported for a chat/responses
 * stream, fills an estimate (≈ 4 characters per token) and returns true
 * (estimated). */
bool meter_finish(struct meter *m);

/* Duration of a WAV (RIFF PCM) file in ms from its header, -1 if not WAV. */
int64_t meter_wav_duration_ms(const unsigned char *data, size_t len);

#endif
