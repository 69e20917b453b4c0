/* meter.h - what one upstream call used. The rules of each provider live in
 * its module (proxy/providers/), behind struct meter_ops (REST) and struct
 * ws_meter_ops (WebSocket sessions); a served endpoint names its meter.
 * This module holds the state both kinds fill, the calls the transports
 * make, and the helpers provider meters share (JSON scanning, counts,
 * estimates).
 *
 * REST: the data plane feeds the request (query, then body) once, each
 * reply header, then either the whole JSON reply or each SSE event, and
 * calls meter_finish() at the end.
 *
 * WebSocket: the session feeds every text message and binary chunk both
 * ways; the meter keeps `total`, what the session used so far. A record is
 * written for what total grew since the last one: at each unit the meter
 * reports (ws_meter_unit: a completed response of a realtime model), else every
 * usage.ws_interval_s, and at the end after finish() estimated what the
 * provider did not report. */
#ifndef BYOK_METER_H
#define BYOK_METER_H

#include "common.h"
#include "jscan.h"
#include "usage_record.h"

#include <jansson.h>

struct meter;
struct ws_meter;

enum meter_flags {
    /* The whole JSON reply is what is metered: it is kept (up to the meter
     * limit) and read to its end even after the client left. */
    METER_F_JSON_REPLY = 1u << 0,
    /* SSE events of the reply are metered. */
    METER_F_SSE = 1u << 1,
};

struct meter_ops {
    const char *name;          /* "<provider>.<endpoint>", for logs and tests */
    unsigned flags;            /* METER_F_* */
    const char *default_model; /* the provider's model when the request names none */
    /* Each hook may be NULL (nothing to read there). */
    void (*request_query)(struct meter *m, const char *query, size_t len);
    /* The request body; for a rewrite (asking a stream for its usage) *rewritten gets
     * a malloc'd body. -1 when the body is not what the meter expects (it
     * is forwarded unchanged; the provider answers). */
    int (*request_body)(struct meter *m, const char *body, size_t len, const char *content_type,
                        size_t content_type_len, char **rewritten, size_t *rewritten_len);
    void (*response_header)(struct meter *m, const char *name, size_t name_len, const char *value,
                            size_t value_len);
    void (*response_json)(struct meter *m, const char *body, size_t len);
    /* true: drop the event from what the client sees. */
    bool (*sse_event)(struct meter *m, const char *event, const char *data, size_t len);
    /* Fills the units at the end; true when they are an estimate. */
    bool (*finish)(struct meter *m);
};

struct meter {
    const struct meter_ops *ops; /* NULL: not metered */
    char model[MODEL_MAX];
    bool stream;               /* request asked "stream": true */
    bool client_include_usage; /* request had stream_options.include_usage true */
    bool got_usage;            /* provider-reported usage was seen */
    bool usage_final;          /* the final count arrived (after a partial one) */
    bool stream_error;         /* an error event arrived before any usage */
    bool have_text;            /* a TTS request carried its text (prompt_chars) */
    struct usage_units units;
    /* Estimation material: characters of the prompt and of the streamed
     * output text. */
    int64_t prompt_chars;
    int64_t output_chars;
    int64_t upload_audio_ms;   /* from the uploaded file (WAV or Ogg), -1 unknown */
    int64_t header_characters; /* a reply header's character count, -1 none */
    int64_t aux[2];            /* the provider meter's own counters */
};

/* ops may be NULL (an unmetered call: zero units). */
void meter_init(struct meter *m, const struct meter_ops *ops);
void meter_request_query(struct meter *m, const char *query, size_t len);
MUST_CHECK int meter_request(struct meter *m, const char *body, size_t len,
                             const char *content_type, size_t content_type_len, char **rewritten,
                             size_t *rewritten_len);
void meter_response_header(struct meter *m, const char *name, size_t name_len, const char *value,
                           size_t value_len);
void meter_response_json(struct meter *m, const char *body, size_t len);
bool meter_sse_event(struct meter *m, const char *event, const char *data, size_t data_len);
/* True when the units are an estimate. Sets the default model when none
 * was seen. */
bool meter_finish(struct meter *m);
/* The model the request will be priced at: what it named, else the
 * provider's default, else "". */
const char *meter_model(const struct meter *m);
bool meter_wants_json(const struct meter *m);
bool meter_wants_sse(const struct meter *m);

/* --- WebSocket sessions ---------------------------------------------------- */

/* How a session ended, for the final estimate. */
struct ws_meter_end {
    int64_t wall_ms; /* from the upstream's accept to the end */
    uint64_t bytes_from_client, bytes_from_upstream;
    bool cut; /* not a close handshake */
};

struct ws_meter_ops {
    const char *name;  /* "<provider>.<socket>" */
    size_t state_size; /* bytes of m->state the meter owns (zeroed at start) */
    /* The meter reports its units itself (ws_meter_unit); otherwise the
     * session records every usage.ws_interval_s. */
    bool by_unit;
    /* Client text messages are held until whole and metered before they
     * are forwarded, so a message naming an unpriced model is refused
     * (for providers that name the model per message). */
    bool inspect_client_text;
    const char *default_model;
    void (*open)(struct ws_meter *m, const char *query, size_t len);
    void (*text)(struct ws_meter *m, bool from_client, const char *data, size_t len, bool complete);
    void (*binary)(struct ws_meter *m, bool from_client, const uint8_t *data, size_t len,
                   uint64_t message_off, bool last);
    /* Before a periodic record: bring total up to date. May be NULL. */
    void (*interval)(struct ws_meter *m);
    /* At the end: add an estimate for what the provider did not report
     * (set m->estimated). May be NULL. */
    void (*finish)(struct ws_meter *m, const struct ws_meter_end *end);
};

struct ws_meter {
    const struct ws_meter_ops *ops;
    char model[MODEL_MAX];
    struct usage_units total;    /* used since the session began */
    struct usage_units recorded; /* in records written so far */
    bool estimated;              /* total includes an estimate */
    bool model_changed;          /* a message named a (new) model */
    void *state;                 /* ops->state_size bytes, the meter's own */
    /* Set by the session: a unit is complete (by_unit meters). */
    void (*unit)(void *arg);
    void *unit_arg;
};

/* Allocates the meter's state; the model is the query parameter
 * model_query names (NULL: none), else what open() finds, else the
 * default. -1 when out of memory. */
MUST_CHECK int ws_meter_init(struct ws_meter *m, const struct ws_meter_ops *ops,
                             const char *model_query, const char *query, size_t query_len);
void ws_meter_free(struct ws_meter *m);
void ws_meter_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                   bool complete);
void ws_meter_binary(struct ws_meter *m, bool from_client, const uint8_t *data, size_t len,
                     uint64_t off, bool last);
void ws_meter_interval(struct ws_meter *m);
void ws_meter_finish(struct ws_meter *m, const struct ws_meter_end *end);
/* Units not yet recorded (total - recorded); marks them recorded. */
void ws_meter_take(struct ws_meter *m, struct usage_units *out);
/* A by_unit meter completed a unit: the session writes its record now. */
void ws_meter_unit(struct ws_meter *m);

/* --- helpers for provider meters ------------------------------------------- */

/* Unicode code points of UTF-8 text. */
int64_t meter_utf8_chars(const char *s, size_t len);
/* Code points of a JSON string (0 for anything else). */
int64_t meter_json_chars(const json_t *v);
/* Characters of prompt text: a string, an array of messages / items /
 * parts, or an object whose "text" and "content" hold text; depth-limited. */
int64_t meter_content_chars(const json_t *v, int depth);
/* Copies a model name, cut at a UTF-8 character boundary. */
void meter_set_model(char model[MODEL_MAX], const char *s, size_t len);
/* Takes v as the model when it is a string and none is set yet. */
void meter_take_model(struct meter *m, const json_t *v);
/* A non-negative count (integer or real) from a reply; anything else 0. */
int64_t meter_count(const json_t *v);
/* meter_count(obj.key[.sub]). */
int64_t meter_count_at(const json_t *obj, const char *key, const char *sub);
/* Seconds (a JSON number) as milliseconds, rounded; 0 when not positive. */
int64_t meter_seconds_ms(const json_t *v);
/* The object value of the first (or last) `"key":` in a JSON text, parsed
 * alone (the raw bytes `"key"` plus a colon can only be a key). Caller owns
 * the result; NULL when absent. key includes its quotes. */
json_t *meter_key_object(const char *body, size_t len, const char *key, bool last);
/* Where that object starts (its '{'), NULL when there is none. */
const char *meter_key_object_at(const char *body, size_t len, const char *key, bool last);
/* The object that starts at at (a meter_key_object_at answer; len: the
 * bytes from there to the text's end), parsed alone: NULL if it is not one. */
json_t *meter_object_at(const char *at, size_t len);

/* The same helpers on checked JSON bytes (jscan.h), which the hot paths
 * read without building a jansson tree; each answers as its json_t twin. */
int64_t meter_span_count(struct jspan v);
int64_t meter_span_content_chars(struct jspan v, int depth);
void meter_span_take_model(struct meter *m, struct jspan v);
/* A usage object either way: a jansson value, or (json NULL) checked bytes. */
struct meter_obj {
    const json_t *json;
    struct jspan span;
};
/* meter_count(obj.key[.sub]) of either kind. */
int64_t meter_obj_count_at(const struct meter_obj *o, const char *key, const char *sub);
/* true when obj.key is a number; *n its meter_count. */
bool meter_obj_number(const struct meter_obj *o, const char *key, int64_t *n);
/* True when the text holds a "usage" key whose value is an object. */
bool meter_has_usage_object(const char *d, size_t len);
/* Sum of the characters of every string value of `"key":` in a JSON text
 * (escapes count as one), without building a tree. For estimates. */
int64_t meter_scan_string_chars(const char *d, size_t len, const char *key);
/* A count in a reply header: digits, optionally a fraction (rounded up),
 * blanks around. -1 otherwise. */
int64_t meter_header_count(const char *v, size_t len);
/* ceil(n / 4): tokens estimated from characters. */
int64_t meter_chars_tokens(int64_t chars);
/* Characters of the string member `field` of a JSON text message. */
int64_t meter_message_chars(const char *data, size_t len, const char *field);

#endif
