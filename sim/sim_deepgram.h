/* sim_deepgram.h - simulated Deepgram, shared by its files: sim_deepgram.c
 * (REST, keys, errors, the pieces of a transcript) and sim_deepgram_live.c
 * (the live transcription socket). */
#ifndef BYOK_SIM_DEEPGRAM_H
#define BYOK_SIM_DEEPGRAM_H

#include "common.h"
#include "sim_provider.h"
#include "sim_speech.h"

/* The model a request names (model=, else "base") and a stable made-up
 * UUID for it. */
struct sim_deepgram_model {
    char name[64];
    char uuid[40];
};
void sim_deepgram_model(struct sim_request *r, struct sim_deepgram_model *out);
/* {"name", "version", "arch"} of the model. */
json_t *sim_deepgram_model_info(const struct sim_deepgram_model *m);

/* The decoded query parameter name into out ("" when absent or too long). */
void sim_deepgram_query(struct sim_request *r, const char *name, char *out, size_t out_size);
/* True when the query has the parameter, whatever its value. */
bool sim_deepgram_query_has(struct sim_request *r, const char *name);
/* True when the query parameter is "true". */
bool sim_deepgram_query_true(struct sim_request *r, const char *name);
/* The byte rate of raw audio named by encoding=, sample_rate=, channels=
 * (linear16, linear32, mulaw, alaw); 0 for a known encoding without a
 * fixed one (flac, opus, ...) or no encoding. -1 for an unknown encoding or
 * a missing or out-of-range sample rate or channel count. */
MUST_CHECK int sim_deepgram_encoding(const char *encoding, const char *sample_rate,
                                     const char *channels, uint64_t *bytes_per_sec);

/* An alternative {transcript, confidence, words[{word, start, end,
 * confidence (, punctuated_word)}]} of generated words first .. first + n -
 * 1 spread evenly over start_ms .. end_ms. */
json_t *sim_deepgram_alternative(size_t first, size_t n, int64_t start_ms, int64_t end_ms,
                                 bool punctuate);
/* v as compact JSON with seconds written short (takes v). Caller frees
 * with free(); NULL when out of memory. */
char *sim_deepgram_dump(json_t *v);
/* "2026-12-06T14:12:18.690Z" of now. */
void sim_deepgram_created(char out[32]);
/* n bytes as lower-case hex into out (2n + 1 bytes). */
void sim_deepgram_hex(const unsigned char *md, size_t n, char *out);
/* Deepgram's error reply with any status and err_code. */
void sim_deepgram_error_status(struct sim_request *r, int status, const char *code,
                               const char *message);

/* WS /v1/listen (sim_deepgram_live.c). */
void sim_deepgram_live(struct sim_request *r);

#endif
