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
    /* In memory and on spool lines only (never in a §5 record): the line is
     * priced but charges nothing - a simulated upstream under
     * simulate.charge false (charge.h). Only with simulated. */
    bool no_charge;
    int seq;    /* socket records: 1, 2, ... per line of the socket; 0 = none */
    bool final; /* socket records: the last of its line */
    /* In memory only (never written): the balance ledger's bookkeeping
     * (ledger.h). hold_micros: the admission hold this record releases;
     * pending_micros: the charge it reserved until committed. */
    int64_t hold_micros;
    int64_t pending_micros;
    /* In memory only (never written, not in spool files): fleet mode's
     * hold this record releases in the same atomic step as its charge
     * (store_redis.h, the RECORD script); "" = none. */
    char hold_id[ID_MAX];
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
 * -1 on a malformed object or one usage_record_check() refuses. */
MUST_CHECK int usage_record_from_json(json_t *obj, struct usage_record *r);
/* The same, saying why a record is refused in why (why_size bytes; may be
 * NULL): field names and numbers only, never a value of the record. */
MUST_CHECK int usage_record_parse(json_t *obj, struct usage_record *r, char *why, size_t why_size);

/* Largest amount a record may carry, in micro-USD: 10^12 = $1,000,000 in
 * one request or socket interval is a corrupt or forged record, never a real
 * charge. Units (tokens, characters, audio milliseconds) have the same
 * bound. */
#define USAGE_AMOUNT_MAX INT64_C(1000000000000)
#define USAGE_UNITS_MAX  INT64_C(1000000000000)

/* What every record must satisfy before the store charges it, whether it
 * comes from a request, the spool or a replay (DESIGN §7): record, tenant
 * and payer ids present and well formed, a provider, no amount or unit
 * negative or above its bound. (The charged amounts a record carries are
 * only checked for range: the store charges from cost_micros and billed_to
 * and writes its own.) 0, or -1 with why (as usage_record_parse). */
MUST_CHECK int usage_record_check(const struct usage_record *r, char *why, size_t why_size);
/* A record, tenant or payer id: 1..ID_MAX-1 of [A-Za-z0-9._-], what the
 * proxy makes (ULIDs) and the admin API accepts for tenants. Only such an id
 * is ever printed from a refused record. */
bool usage_record_id_valid(const char *s);

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
/* Appends a record's text already formatted (as a store keeps it) and
 * '\n'. 0, or -1 out of memory (the buffer is then unchanged). */
MUST_CHECK int usage_record_lines_add_text(struct usage_record_lines *b, const char *text,
                                           size_t len);
/* The same line for the spool: the §5 record plus, when the record releases
 * a fleet hold, its "hold_id", and "no_charge": true for a line that charges
 * nothing (neither ever in a §5 record; usage_record_parse reads them back),
 * so a replay releases the hold instead of leaving it to expire, and charges
 * what the line would have charged. Returns as usage_record_lines_add. */
MUST_CHECK int usage_record_lines_add_spool(struct usage_record_lines *b,
                                            const struct usage_record *r);
/* Upper bound of usage_record_format's output (with its NUL) for any
 * record: a string byte becomes at most 6 bytes (\u00XX); keys, numbers
 * and punctuation take well under 1 KiB. */
#define USAGE_RECORD_TEXT_MAX (6 * sizeof(struct usage_record) + 1024)
/* ... and of a spool line (its extras and '\n', and a NUL after it). */
#define USAGE_SPOOL_LINE_MAX (USAGE_RECORD_TEXT_MAX + ID_MAX + 64)
/* The spool line of usage_record_lines_add_spool, '\n' included, into buf
 * (followed by a NUL). Its length, or -1 when size is too small (never
 * with USAGE_SPOOL_LINE_MAX). */
MUST_CHECK int usage_record_format_spool(const struct usage_record *r, char *buf, size_t size);
/* Frees the buffer and zeroes it; a zeroed buffer is a no-op. */
void usage_record_lines_free(struct usage_record_lines *b);

#endif
