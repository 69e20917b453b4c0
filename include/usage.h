/* usage.h - the usage record of DESIGN §5 and the batching writer that
 * persists and charges it off the request path.
 *
 *   worker threads --usage_submit()--> queue --writer thread--> store batch
 *                                                 |  (one transaction: insert
 *                                                 |   record + charge payer,
 *                                                 |   idempotent on id)
 *                                                 +--> JSONL file (after commit)
 *                                                 +--> spool dir (fsync'd) when
 *                                                      the store fails; replayed
 *                                                      later, none lost */
#ifndef BYOK_USAGE_H
#define BYOK_USAGE_H

#include "common.h"
#include "provider.h"

#include <jansson.h>

struct config;

struct usage_units {
    int64_t input_tokens;        /* as reported, includes cached and audio input */
    int64_t cached_input_tokens; /* subset of input_tokens */
    int64_t output_tokens;       /* includes audio output tokens */
    int64_t audio_input_tokens;  /* subset of input_tokens */
    int64_t audio_output_tokens; /* subset of output_tokens */
    int64_t characters;
    int64_t audio_ms; /* audio duration in milliseconds; JSON: audio_seconds */
};

enum usage_outcome {
    USAGE_OUTCOME_OK = 0,
    USAGE_OUTCOME_CLIENT_DISCONNECT,
    USAGE_OUTCOME_UPSTREAM_ERROR,
    USAGE_OUTCOME_TIMEOUT,
};

struct usage_record {
    char id[ID_MAX];
    int64_t ts_ms; /* start of the request, Unix ms */
    char tenant_id[ID_MAX];
    char payer_id[ID_MAX];
    char key_id[ID_MAX];
    char session_id[SESSION_MAX]; /* "" = none (JSON null) */
    enum provider_id provider;
    bool has_slot; /* provider is a slot: JSON "slot" = provider name, else null */
    char line[16]; /* llm | embeddings | tts | stt | realtime | platform */
    char endpoint[PATH_MAX_];
    char model[MODEL_MAX];
    bool billed_byok;           /* billed_to: byok (true) | wallet (false) */
    char connection_id[ID_MAX]; /* "" = null */
    int status;
    enum usage_outcome outcome;
    bool estimated;
    char fallback_reason[64]; /* "" = null */
    struct usage_units units;
    int64_t cost_micros;
    int64_t charged_plan_credits_micros; /* filled by the writer */
    int64_t charged_wallet_micros;       /* filled by the writer */
    char upstream_request_id[128];       /* "" = null */
    int64_t ttfb_ms;                     /* -1 = null */
    int64_t duration_ms;
};

const char *usage_outcome_name(enum usage_outcome o);

/* The record as the JSON object of DESIGN §5. Caller owns the result
 * (json_decref). */
json_t *usage_record_to_json(const struct usage_record *r);
/* The record as compact JSON text, exactly what
 * json_dumps(usage_record_to_json(r), JSON_COMPACT) gives. Returns the
 * length, or -1 if size is too small. */
MUST_CHECK int usage_record_format(const struct usage_record *r, char *buf, size_t size);
/* Inverse of usage_record_to_json (spool replay). Returns -1 on a malformed
 * object. */
MUST_CHECK int usage_record_from_json(json_t *obj, struct usage_record *r);

/* Starts the writer thread. The store backend is opened by the writer thread
 * from cfg (borrowed for the lifetime of the writer). Replays the spool
 * directory first. Returns -1 with *err set (caller frees) on failure. */
MUST_CHECK int usage_writer_start(const struct config *cfg, char **err);
/* Queues a copy of r. Thread-safe, never blocks on I/O. */
void usage_submit(const struct usage_record *r);
/* Writes everything queued, then stops the thread. Safe to call once. */
void usage_writer_stop(void);
/* Blocks until every record submitted before the call is committed (or
 * spooled). For admin reads that must see a just-finished request, and tests. */
void usage_writer_sync(void);

/* Counters for /metrics. */
struct usage_stats {
    uint64_t submitted, written, duplicates, spooled, replayed, batches;
};
void usage_writer_stats(struct usage_stats *out);

#endif
