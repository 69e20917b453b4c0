/* meter.h - what one upstream call used (PROVIDERS.md §1-4): OpenAI chat,
 * responses, embeddings, speech and transcriptions (DeepSeek alike),
 * ElevenLabs TTS, Anthropic messages, Deepgram listen/speak, Cartesia TTS,
 * Azure Speech TTS/STT REST; streamed or not.
 *
 * The caller feeds the request (query, then body) once, the reply's
 * headers, then either the whole JSON reply or each SSE event, and calls
 * meter_finish() at the end. The rules per provider are in meter.c. */
#ifndef BYOK_METER_H
#define BYOK_METER_H

#include "common.h"
#include "provider.h"
#include "usage_record.h"

enum meter_kind {
    METER_NONE = 0,      /* not metered (e.g. GET /v1/models): a record with zero units */
    METER_CHAT,          /* /v1/chat/completions */
    METER_RESPONSES,     /* /v1/responses */
    METER_EMBEDDINGS,    /* /v1/embeddings */
    METER_SPEECH,        /* /v1/audio/speech */
    METER_TRANSCRIPTION, /* /v1/audio/transcriptions and /v1/audio/translations */
    /* Other providers (PROVIDERS.md §2-4); paths are after the route prefix. */
    METER_EL_TTS,       /* elevenlabs POST /v1/text-to-speech/{voice}[/stream][/with-timestamps] */
    METER_ANTHROPIC,    /* anthropic POST /v1/messages */
    METER_DG_LISTEN,    /* deepgram POST /v1/listen */
    METER_DG_SPEAK,     /* deepgram POST /v1/speak */
    METER_CARTESIA_TTS, /* cartesia POST /tts/bytes, /tts/sse */
    METER_AZURE_TTS,    /* azure_speech tts host POST /cognitiveservices/v1 (SSML) */
    METER_AZURE_STT, /* azure_speech stt host POST /speech/recognition/.../cognitiveservices/v1 */
};

/* Kind for a provider's path after its route prefix (no query). For
 * azure_speech, stt tells which host the route targets. Only POST requests
 * are metered by kind: the data plane passes METER_NONE for other methods. */
enum meter_kind meter_kind_for(enum provider_id p, bool azure_stt, const char *path, size_t len);

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
    int64_t upload_audio_ms; /* transcriptions, Deepgram listen, Azure STT: from the
                              * uploaded file (WAV or Ogg), -1 unknown */
    /* Other providers (see proxy/meter.c for the rules). */
    bool have_text;            /* TTS request carried its text (prompt_chars) */
    int64_t header_characters; /* character-cost / dg-char-count reply header, -1 none */
    int64_t anth_input_tokens; /* Anthropic input_tokens (without cache reads/writes) */
    int64_t anth_cache_write;  /* Anthropic cache_creation_input_tokens */
    bool usage_final;          /* Anthropic: final output count seen (message_delta / reply) */
    bool stream_error;         /* Anthropic stream: an error event arrived */
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

/* One response header of the upstream reply (name case-insensitive): reads
 * ElevenLabs' character-cost and Deepgram's dg-char-count. */
void meter_response_header(struct meter *m, const char *name, size_t name_len, const char *value,
                           size_t value_len);

/* The request's query string (without '?'), for parameters that carry the
 * model (Deepgram model=). Call before meter_request. */
void meter_request_query(struct meter *m, const char *query, size_t len);

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

/* Azure Speech: billable characters of an SSML document (text nodes,
 * entities as one character, markup free). */
int64_t meter_ssml_characters(const char *ssml, size_t len);

/* ElevenLabs: the characters billed for code_points characters of text
 * with model (half, rounded up, for turbo and flash models). */
int64_t meter_el_characters(const char *model, int64_t code_points);

/* Duration of a WAV (RIFF PCM) file in ms from its header, -1 if not WAV. */
int64_t meter_wav_duration_ms(const unsigned char *data, size_t len);

#endif
