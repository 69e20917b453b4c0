/* sim_azure.h - simulated Azure AI Speech (PROVIDERS.md §3), shared by its
 * files: sim_azure.c (the TTS and STT hosts, REST, keys, errors),
 * sim_azure_ws.c (the Speech SDK's socket protocol, STT and TTS) and
 * sim_azure_proto.c (the pure pieces: the socket's message framing and the
 * output format names, unit-tested). */
#ifndef BYOK_SIM_AZURE_H
#define BYOK_SIM_AZURE_H

#include "common.h"
#include "sim_provider.h"
#include "sim_speech.h"

/* A phrase (final result) every this much audio: the simulator hears an
 * utterance break every 2 s of a continuous stream; a hypothesis every
 * 500 ms of audio in between. Interactive recognition (one phrase a turn)
 * waits for the end of the audio, at most 15 s. */
#define SIM_AZURE_PHRASE_MS      2000
#define SIM_AZURE_HYPOTHESIS_MS  500
#define SIM_AZURE_INTERACTIVE_MS 15000
/* Audio ticks (100 ns) of a millisecond. */
#define SIM_AZURE_TICKS_PER_MS 10000
/* The Speech SDK's audio when no WAV header says otherwise: 16 kHz, 16-bit,
 * mono. */
#define SIM_AZURE_SDK_BYTES_PER_SEC 32000
/* TTS: audio of one request is at most 10 minutes (Azure's limit); sent
 * in pieces of 100 ms. */
#define SIM_AZURE_TTS_MAX_MS   600000
#define SIM_AZURE_TTS_CHUNK_MS 100

/* ---- the socket's framing (sim_azure_proto.c) ------------------------------ */

#define SIM_AZURE_HDR_MAX 128

/* One Speech SDK message as read. */
struct sim_azure_msg {
    char path[SIM_AZURE_HDR_MAX];       /* lower case: "speech.config", "audio" */
    char request_id[SIM_AZURE_HDR_MAX]; /* X-RequestId; "" when absent */
    char content_type[SIM_AZURE_HDR_MAX];
    const uint8_t *body; /* borrowed from the message */
    size_t body_len;
};

/* Parses a text message (CRLF-separated "Name: value" headers, a blank
 * line, the body; no blank line: all headers, no body) or a binary one
 * ([2-byte big-endian length][that many bytes of headers][payload]).
 * Header names without regard to case; values trimmed; a value too long
 * for its field is cut. 0, or -1 when a binary message is shorter than its
 * header length says. */
MUST_CHECK int sim_azure_msg_parse(bool text, const uint8_t *data, size_t len,
                                   struct sim_azure_msg *out);

/* A text message from the service: Path, X-RequestId, X-Timestamp (ISO 8601
 * of now_ms, UTC), Content-Type application/json, a blank line, body.
 * NUL-terminated, *len its length. Caller frees with free(); NULL when out
 * of memory. */
char *sim_azure_text_msg(const char *path, const char *request_id, int64_t now_ms, const char *body,
                         size_t *len);
/* The header block of a binary message from the service (Path, X-RequestId,
 * X-StreamId when stream_id is not NULL, X-Timestamp, Content-Type), with
 * its 2-byte length in front, into out; the payload follows it. Returns its
 * length, 0 when out_size is too small. */
size_t sim_azure_binary_head(const char *path, const char *request_id, const char *stream_id,
                             int64_t now_ms, uint8_t *out, size_t out_size);

/* An output format name (X-Microsoft-OutputFormat, synthesis.context's
 * outputFormat): "riff-24khz-16bit-mono-pcm", "raw-8khz-8bit-mono-mulaw",
 * "audio-24khz-48kbitrate-mono-mp3", ... 0 with *out when the simulator
 * writes it, -1 otherwise (Opus, WebM, SILK, AMR, ...). */
MUST_CHECK int sim_azure_output_format(const char *name, struct sim_audio_format *out);
/* The formats it writes, for a message. */
#define SIM_AZURE_FORMATS                                                                          \
    "raw-/riff-{8khz,16khz,22050hz,24khz,44100hz,48khz}-16bit-mono-pcm, "                          \
    "raw-/riff-8khz-8bit-mono-{mulaw,alaw}, audio-{16,24,48}khz-<kbit>kbitrate-mono-mp3"

/* ---- shared by the REST and socket files ---------------------------------- */

/* An error reply in Azure's shape {"error":{"code":"<status>","message"}}
 * with any status (415 is not an enum sim_error). */
void sim_azure_error_status(struct sim_request *r, int status, const char *message);
/* The generated words of a phrase as Azure writes them: DisplayText (as
 * written), Lexical (lower case). */
json_t *sim_azure_phrase(const char *status, int64_t offset_ms, int64_t duration_ms,
                         size_t first_word, size_t words, bool detailed);

/* The socket routes (sim_azure_ws.c). */
void sim_azure_stt_socket(struct sim_request *r);
void sim_azure_tts_socket(struct sim_request *r);

#endif
