/* usage_record.h - the usage record of DESIGN §5 and its codec: compact JSON
 * text (JSONL lines, store rows, spool files), a jansson object (admin
 * answers) and back (spool replay). Pure: no I/O, no threads, no store. */
#ifndef BYOK_USAGE_RECORD_H
#define BYOK_USAGE_RECORD_H

#include "common.h"
#include "provider.h"

#include <jansson.h>

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
    char session_id[SESSION_MAX];    /* "" = none (JSON null) */
    const struct provider *provider; /* "slot" = its name when it is a slot, else null */
    char line[16];                   /* llm | embeddings | tts | stt | realtime | platform */
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
    int64_t charged_plan_credits_micros; /* filled by the store when it charges */
    int64_t charged_wallet_micros;       /* filled by the store when it charges */
    char upstream_request_id[128];       /* "" = null */
    int64_t ttfb_ms;                     /* -1 = null */
    int64_t duration_ms;
    /* Optional members (DESIGN §5), written only where they apply. */
    bool unmetered; /* "metered": false - a BYOK call to an endpoint not metered */
    bool simulated; /* "simulated": true - a simulated upstream */
    int seq;        /* socket records: 1, 2, ... per line of the socket; 0 = none */
    bool final;     /* socket records: the last of its line */
    /* In memory only (never written): the balance ledger's bookkeeping
     * (ledger.h). hold_micros: the admission hold this record releases;
     * pending_micros: the charge it reserved until committed. */
    int64_t hold_micros;
    int64_t pending_micros;
};

/* "ok", "client_disconnect", ...; a static string, never NULL. */
const char *usage_outcome_name(enum usage_outcome o);

/* The record as the JSON object of DESIGN §5. Caller owns the result
 * (json_decref); NULL when out of memory. */
json_t *usage_record_to_json(const struct usage_record *r);
/* The record as compact JSON text, exactly what
 * json_dumps(usage_record_to_json(r), JSON_COMPACT) gives, NUL-terminated.
 * Returns the length, or -1 if size is too small. */
MUST_CHECK int usage_record_format(const struct usage_record *r, char *buf, size_t size);
/* Inverse of usage_record_to_json (spool replay). obj is borrowed. Returns
 * -1 on a malformed object. */
MUST_CHECK int usage_record_from_json(json_t *obj, struct usage_record *r);

/* Records as JSON lines (JSONL), one usage_record_format text and '\n' per
 * record, in a growable buffer that is reused from batch to batch: start it
 * zeroed, empty it with len = 0, free it with usage_record_lines_free(). */
struct usage_record_lines {
    char *data; /* not NUL-terminated */
    size_t len, cap;
};

/* Appends r's line. Returns the length of its JSON text (the line without
 * its '\n', which starts at data + the old len), or -1 out of memory (the
 * buffer is then unchanged). */
MUST_CHECK int usage_record_lines_add(struct usage_record_lines *b, const struct usage_record *r);
/* Frees the buffer and zeroes it; a zeroed buffer is a no-op. */
void usage_record_lines_free(struct usage_record_lines *b);

#endif
