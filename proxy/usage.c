/* usage.c - the usage record's JSON form (DESIGN §5) and the writer thread
 * that batches records into the store (group commit), appends them to the
 * JSONL sink, and spools them to disk when the store fails.
 *
 * The JSONL file is opened once (its directory created at writer start) and
 * kept open: one write and one fdatasync per batch. Log rotation works both
 * ways: with copytruncate the O_APPEND descriptor simply continues at the new
 * end; when the file is renamed away (or deleted), a stat of the path at most
 * once per second sees another inode and the file is reopened, so lines go to
 * the old file for at most about a second. A failed write also reopens. */
#include "common.h"
#include "usage.h"
#include "config.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 256
/* Group commit: a batch that is not full waits this long for company
 * before it is written, so a busy proxy makes a few large transactions (and
 * fdatasyncs) a second instead of one per request. A usage_writer_sync()
 * caller or a stop cuts the wait short. */
#define LINGER_MS      2
#define RETRY_MS       1000  /* spool replay and store reconnect cadence */
#define BACKLOG_WARN   10000 /* first queue length that is logged */
#define STOP_ATTEMPTS  3     /* at shutdown, tries before records are given up */
#define JSON_FLAGS     JSON_COMPACT
#define CHARGED_UNSET  (-1) /* left on duplicates by the store (see process) */
#define SPOOL_SUFFIX   ".jsonl"
#define JSONL_CHECK_MS 1000 /* rotation check cadence */

static const char *const outcome_names[] = {
    [USAGE_OUTCOME_OK] = "ok",
    [USAGE_OUTCOME_CLIENT_DISCONNECT] = "client_disconnect",
    [USAGE_OUTCOME_UPSTREAM_ERROR] = "upstream_error",
    [USAGE_OUTCOME_TIMEOUT] = "timeout",
};

const char *usage_outcome_name(enum usage_outcome o)
{
    if ((size_t)o >= ARRAY_SIZE(outcome_names))
        return "ok";
    return outcome_names[o];
}

/* ---- JSON ---------------------------------------------------------------- */

/* Upper bound of usage_record_format's output (with its NUL) for any record:
 * a string byte becomes at most 6 bytes (\u00XX); keys, numbers and
 * punctuation take well under 1 KiB. */
#define FORMAT_MAX (6 * sizeof(struct usage_record) + 1024)

/* Proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's
 * days_from_civil inverse): plain arithmetic, where gmtime_r takes glibc's
 * timezone lock on every call. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* "YYYY-MM-DDTHH:MM:SS.fffZ" in UTC; returns the length. Years outside
 * 0..9999 (never a real timestamp) take the slow, general path. */
static size_t format_ts(int64_t ms, char out[80])
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t year;
    unsigned mon, mday;
    civil_from_days(days, &year, &mon, &mday);
    unsigned hh = (unsigned)(sod / 3600), mm = (unsigned)(sod / 60 % 60), ss = (unsigned)(sod % 60);
    if (year < 0 || year > 9999) {
        int n = snprintf(out, 80, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)year, mon,
                         mday, hh, mm, ss, (unsigned)rem);
        return n > 0 ? (size_t)MIN(n, 79) : 0;
    }
    char *p = put_digits(out, (unsigned)year, 4);
    *p++ = '-';
    p = put_digits(p, mon, 2);
    *p++ = '-';
    p = put_digits(p, mday, 2);
    *p++ = 'T';
    p = put_digits(p, hh, 2);
    *p++ = ':';
    p = put_digits(p, mm, 2);
    *p++ = ':';
    p = put_digits(p, ss, 2);
    *p++ = '.';
    p = put_digits(p, (unsigned)rem, 3);
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z". */
static MUST_CHECK int parse_ts(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return -1;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), 0 when the
 * byte at s does not start one. The rules jansson's decoder applies: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t len;
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0; /* continuation byte, or overlong 2-byte lead */
    len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (len == 0 || len > avail)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    return len;
}

/* Record strings are not guaranteed to be UTF-8: a value cut to its field
 * size may end mid-character, and a header may carry raw bytes. jansson
 * refuses such a string, which made the whole record unwritable (the batch
 * failed in the store and in the spool, forever). So every byte that is not
 * part of a valid sequence becomes '?', one for one: the length is kept, so
 * the text still fits its field when read back (spool replay). Both
 * usage_record_to_json and usage_record_format apply this. */
static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t len = utf8_seq_len(p, (size_t)(end - p));
        if (len == 0)
            return false;
        p += len;
    }
    return true;
}

/* A JSON string of a fixed-size field (NUL-terminated within size bytes or
 * filling it), invalid UTF-8 replaced as above. */
static json_t *json_text(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    char *q = copy;
    while (p < end) {
        size_t len = *p < 0x80 ? 1 : utf8_seq_len(p, (size_t)(end - p));
        if (len == 0) {
            *q++ = '?';
            p++;
            continue;
        }
        memcpy(q, p, len);
        q += len;
        p += len;
    }
    json_t *j = json_stringn(copy, n);
    free(copy);
    return j;
}

static json_t *str_or_null(const char *s, size_t size)
{
    return s[0] != '\0' ? json_text(s, size) : json_null();
}

#define FIELD(f) (f), sizeof(f)

/* Output cursor of usage_record_format; once full it stays full. */
struct out {
    char *p, *end;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || (size_t)(o->end - o->p) < n) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_i64(struct out *o, int64_t v)
{
    char tmp[24], *q = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--q = '-';
    put(o, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* A double exactly as jansson 2.14 dumps it (jsonp_dtostr): "%.17g", the
 * locale's decimal point turned back into '.', ".0" appended when there is
 * neither '.' nor 'e', and the exponent stripped of '+' and leading zeros. */
static void put_real(struct out *o, double v)
{
    if (v == 0.0 && !signbit(v)) {
        PUT_LIT(o, "0.0"); /* the usual audio_seconds: skip snprintf */
        return;
    }
    char buf[64];
    int n = snprintf(buf, sizeof(buf) - 3, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof(buf) - 3) {
        o->full = true; /* a finite double always fits; never happens */
        return;
    }
    size_t len = (size_t)n;
    const char *point = localeconv()->decimal_point;
    if (point[0] != '.') {
        char *pos = strchr(buf, point[0]);
        if (pos != NULL)
            *pos = '.';
    }
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    char *start = strchr(buf, 'e');
    if (start != NULL) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    put(o, buf, len);
}

/* A quoted, escaped JSON string as jansson dumps it with JSON_COMPACT:
 * '"', '\\' and control characters escaped (\uXXXX in upper-case hex where
 * there is no short form), everything else, 0x7F and UTF-8 included, as is;
 * invalid UTF-8 bytes become '?' (see utf8_valid). */
static void put_str(struct out *o, const char *s, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + strnlen(s, size);
    const unsigned char *run = p;
    PUT_LIT(o, "\"");
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            p++;
            continue;
        }
        size_t len = 0;
        if (c >= 0x80 && (len = utf8_seq_len(p, (size_t)(end - p))) != 0) {
            p += len;
            continue;
        }
        put(o, (const char *)run, (size_t)(p - run));
        char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 0xF]};
        size_t esc_len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c >= 0x80) {
                esc[0] = '?';
                esc_len = 1;
            } else {
                esc[1] = 'u';
                esc_len = 6;
            }
        }
        put(o, esc, esc_len);
        run = ++p;
    }
    put(o, (const char *)run, (size_t)(p - run));
    PUT_LIT(o, "\"");
}

static void put_str_or_null(struct out *o, const char *s, size_t size)
{
    if (s[0] != '\0')
        put_str(o, s, size);
    else
        PUT_LIT(o, "null");
}

/* Same members, order and text as usage_record_to_json + json_dumps
 * (JSON_COMPACT), without building a tree: this runs twice per record on
 * the writer thread. Writes a terminating NUL too (counted in size, not in
 * the result). */
int usage_record_format(const struct usage_record *r, char *buf, size_t size)
{
    struct out o = {buf, buf + size, false};
    char ts[80];
    size_t ts_len = format_ts(r->ts_ms, ts);
    const char *pname = provider_name(r->provider);
    if (pname == NULL)
        pname = "";
    const char *outcome = usage_outcome_name(r->outcome);

    PUT_LIT(&o, "{\"id\":");
    put_str(&o, FIELD(r->id));
    PUT_LIT(&o, ",\"ts\":\"");
    put(&o, ts, ts_len);
    PUT_LIT(&o, "\",\"tenant_id\":");
    put_str(&o, FIELD(r->tenant_id));
    PUT_LIT(&o, ",\"payer_id\":");
    put_str(&o, FIELD(r->payer_id));
    PUT_LIT(&o, ",\"key_id\":");
    put_str(&o, FIELD(r->key_id));
    PUT_LIT(&o, ",\"session_id\":");
    put_str_or_null(&o, FIELD(r->session_id));
    PUT_LIT(&o, ",\"provider\":");
    put_str(&o, pname, strlen(pname));
    PUT_LIT(&o, ",\"slot\":");
    if (r->has_slot)
        put_str(&o, pname, strlen(pname));
    else
        PUT_LIT(&o, "null");
    PUT_LIT(&o, ",\"line\":");
    put_str(&o, FIELD(r->line));
    PUT_LIT(&o, ",\"endpoint\":");
    put_str(&o, FIELD(r->endpoint));
    PUT_LIT(&o, ",\"model\":");
    put_str_or_null(&o, FIELD(r->model));
    if (r->billed_byok)
        PUT_LIT(&o, ",\"billed_to\":\"byok\",\"connection_id\":");
    else
        PUT_LIT(&o, ",\"billed_to\":\"wallet\",\"connection_id\":");
    put_str_or_null(&o, FIELD(r->connection_id));
    PUT_LIT(&o, ",\"status\":");
    put_i64(&o, r->status);
    PUT_LIT(&o, ",\"outcome\":");
    put_str(&o, outcome, strlen(outcome));
    if (r->estimated)
        PUT_LIT(&o, ",\"estimated\":true,\"fallback_reason\":");
    else
        PUT_LIT(&o, ",\"estimated\":false,\"fallback_reason\":");
    put_str_or_null(&o, FIELD(r->fallback_reason));
    PUT_LIT(&o, ",\"units\":{\"input_tokens\":");
    put_i64(&o, r->units.input_tokens);
    PUT_LIT(&o, ",\"cached_input_tokens\":");
    put_i64(&o, r->units.cached_input_tokens);
    PUT_LIT(&o, ",\"output_tokens\":");
    put_i64(&o, r->units.output_tokens);
    PUT_LIT(&o, ",\"audio_input_tokens\":");
    put_i64(&o, r->units.audio_input_tokens);
    PUT_LIT(&o, ",\"audio_output_tokens\":");
    put_i64(&o, r->units.audio_output_tokens);
    PUT_LIT(&o, ",\"characters\":");
    put_i64(&o, r->units.characters);
    PUT_LIT(&o, ",\"audio_seconds\":");
    put_real(&o, (double)r->units.audio_ms / 1000.0);
    PUT_LIT(&o, "},\"cost_micros\":");
    put_i64(&o, r->cost_micros);
    PUT_LIT(&o, ",\"charged\":{\"plan_credits_micros\":");
    put_i64(&o, r->charged_plan_credits_micros);
    PUT_LIT(&o, ",\"wallet_micros\":");
    put_i64(&o, r->charged_wallet_micros);
    PUT_LIT(&o, "},\"upstream_request_id\":");
    put_str_or_null(&o, FIELD(r->upstream_request_id));
    PUT_LIT(&o, ",\"ttfb_ms\":");
    if (r->ttfb_ms >= 0)
        put_i64(&o, r->ttfb_ms);
    else
        PUT_LIT(&o, "null");
    PUT_LIT(&o, ",\"duration_ms\":");
    put_i64(&o, r->duration_ms);
    put(&o, "}", 2); /* with the NUL */
    if (o.full)
        return -1;
    return (int)(o.p - buf - 1);
}

json_t *usage_record_to_json(const struct usage_record *r)
{
    char ts[80];
    format_ts(r->ts_ms, ts);
    const char *pname = provider_name(r->provider);
    if (pname == NULL)
        pname = "";

    json_t *units = json_object();
    json_t *charged = json_object();
    json_t *o = json_object();
    if (units == NULL || charged == NULL || o == NULL)
        goto failed;
    int bad = 0;
    bad |= json_object_set_new(units, "input_tokens", json_integer(r->units.input_tokens));
    bad |= json_object_set_new(units, "cached_input_tokens",
                               json_integer(r->units.cached_input_tokens));
    bad |= json_object_set_new(units, "output_tokens", json_integer(r->units.output_tokens));
    bad |=
        json_object_set_new(units, "audio_input_tokens", json_integer(r->units.audio_input_tokens));
    bad |= json_object_set_new(units, "audio_output_tokens",
                               json_integer(r->units.audio_output_tokens));
    bad |= json_object_set_new(units, "characters", json_integer(r->units.characters));
    bad |=
        json_object_set_new(units, "audio_seconds", json_real((double)r->units.audio_ms / 1000.0));
    bad |= json_object_set_new(charged, "plan_credits_micros",
                               json_integer(r->charged_plan_credits_micros));
    bad |= json_object_set_new(charged, "wallet_micros", json_integer(r->charged_wallet_micros));

    bad |= json_object_set_new(o, "id", json_text(FIELD(r->id)));
    bad |= json_object_set_new(o, "ts", json_string(ts));
    bad |= json_object_set_new(o, "tenant_id", json_text(FIELD(r->tenant_id)));
    bad |= json_object_set_new(o, "payer_id", json_text(FIELD(r->payer_id)));
    bad |= json_object_set_new(o, "key_id", json_text(FIELD(r->key_id)));
    bad |= json_object_set_new(o, "session_id", str_or_null(FIELD(r->session_id)));
    bad |= json_object_set_new(o, "provider", json_string(pname));
    bad |= json_object_set_new(o, "slot", r->has_slot ? json_string(pname) : json_null());
    bad |= json_object_set_new(o, "line", json_text(FIELD(r->line)));
    bad |= json_object_set_new(o, "endpoint", json_text(FIELD(r->endpoint)));
    bad |= json_object_set_new(o, "model", str_or_null(FIELD(r->model)));
    bad |= json_object_set_new(o, "billed_to", json_string(r->billed_byok ? "byok" : "wallet"));
    bad |= json_object_set_new(o, "connection_id", str_or_null(FIELD(r->connection_id)));
    bad |= json_object_set_new(o, "status", json_integer(r->status));
    bad |= json_object_set_new(o, "outcome", json_string(usage_outcome_name(r->outcome)));
    bad |= json_object_set_new(o, "estimated", json_boolean(r->estimated));
    bad |= json_object_set_new(o, "fallback_reason", str_or_null(FIELD(r->fallback_reason)));
    bad |= json_object_set_new(o, "units", units);
    units = NULL;
    bad |= json_object_set_new(o, "cost_micros", json_integer(r->cost_micros));
    bad |= json_object_set_new(o, "charged", charged);
    charged = NULL;
    bad |=
        json_object_set_new(o, "upstream_request_id", str_or_null(FIELD(r->upstream_request_id)));
    bad |=
        json_object_set_new(o, "ttfb_ms", r->ttfb_ms >= 0 ? json_integer(r->ttfb_ms) : json_null());
    bad |= json_object_set_new(o, "duration_ms", json_integer(r->duration_ms));
    if (bad)
        goto failed;
    return o;
failed:
    json_decref(units);
    json_decref(charged);
    json_decref(o);
    return NULL;
}

/* Copies a string member into out. Missing or null gives "" unless required.
 * Too long is an error: ids must never be silently truncated. */
static MUST_CHECK int get_str(json_t *obj, const char *key, char *out, size_t size, bool required)
{
    json_t *v = json_object_get(obj, key);
    out[0] = '\0';
    if (v == NULL || json_is_null(v))
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) >= size)
        return -1;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static MUST_CHECK int get_int(json_t *obj, const char *key, int64_t *out, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int usage_record_from_json(json_t *obj, struct usage_record *r)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(obj))
        return -1;
    char ts[40], provider[32], billed[16], outcome[32];
    if (get_str(obj, "id", r->id, sizeof(r->id), true) == -1 ||
        get_str(obj, "ts", ts, sizeof(ts), true) == -1 || parse_ts(ts, &r->ts_ms) == -1 ||
        get_str(obj, "tenant_id", r->tenant_id, sizeof(r->tenant_id), true) == -1 ||
        get_str(obj, "payer_id", r->payer_id, sizeof(r->payer_id), true) == -1 ||
        get_str(obj, "key_id", r->key_id, sizeof(r->key_id), false) == -1 ||
        get_str(obj, "session_id", r->session_id, sizeof(r->session_id), false) == -1 ||
        get_str(obj, "provider", provider, sizeof(provider), true) == -1 ||
        provider_parse(provider, &r->provider) == -1 ||
        get_str(obj, "line", r->line, sizeof(r->line), false) == -1 ||
        get_str(obj, "endpoint", r->endpoint, sizeof(r->endpoint), false) == -1 ||
        get_str(obj, "model", r->model, sizeof(r->model), false) == -1 ||
        get_str(obj, "billed_to", billed, sizeof(billed), true) == -1 ||
        get_str(obj, "connection_id", r->connection_id, sizeof(r->connection_id), false) == -1 ||
        get_str(obj, "outcome", outcome, sizeof(outcome), false) == -1 ||
        get_str(obj, "fallback_reason", r->fallback_reason, sizeof(r->fallback_reason), false) ==
            -1 ||
        get_str(obj, "upstream_request_id", r->upstream_request_id, sizeof(r->upstream_request_id),
                false) == -1)
        return -1;

    json_t *slot = json_object_get(obj, "slot");
    r->has_slot = json_is_string(slot);

    if (strcmp(billed, "byok") == 0)
        r->billed_byok = true;
    else if (strcmp(billed, "wallet") != 0)
        return -1;

    r->outcome = USAGE_OUTCOME_OK;
    if (outcome[0] != '\0') {
        size_t i = 0;
        while (i < ARRAY_SIZE(outcome_names) && strcmp(outcome_names[i], outcome) != 0)
            i++;
        if (i == ARRAY_SIZE(outcome_names))
            return -1;
        r->outcome = (enum usage_outcome)i;
    }

    int64_t status;
    if (get_int(obj, "status", &status, 0) == -1 || status < 0 || status > 999)
        return -1;
    r->status = (int)status;
    json_t *est = json_object_get(obj, "estimated");
    r->estimated = json_is_true(est);

    json_t *units = json_object_get(obj, "units");
    if (units != NULL && !json_is_null(units)) {
        if (!json_is_object(units))
            return -1;
        if (get_int(units, "input_tokens", &r->units.input_tokens, 0) == -1 ||
            get_int(units, "cached_input_tokens", &r->units.cached_input_tokens, 0) == -1 ||
            get_int(units, "output_tokens", &r->units.output_tokens, 0) == -1 ||
            get_int(units, "audio_input_tokens", &r->units.audio_input_tokens, 0) == -1 ||
            get_int(units, "audio_output_tokens", &r->units.audio_output_tokens, 0) == -1 ||
            get_int(units, "characters", &r->units.characters, 0) == -1)
            return -1;
        json_t *secs = json_object_get(units, "audio_seconds");
        if (secs != NULL && !json_is_null(secs)) {
            if (!json_is_number(secs))
                return -1;
            r->units.audio_ms = llround(json_number_value(secs) * 1000.0);
        }
    }

    json_t *charged = json_object_get(obj, "charged");
    if (charged != NULL && !json_is_null(charged)) {
        if (!json_is_object(charged) ||
            get_int(charged, "plan_credits_micros", &r->charged_plan_credits_micros, 0) == -1 ||
            get_int(charged, "wallet_micros", &r->charged_wallet_micros, 0) == -1)
            return -1;
    }
    if (get_int(obj, "cost_micros", &r->cost_micros, 0) == -1 ||
        get_int(obj, "ttfb_ms", &r->ttfb_ms, -1) == -1 ||
        get_int(obj, "duration_ms", &r->duration_ms, 0) == -1)
        return -1;
    return 0;
}

/* ---- writer -------------------------------------------------------------- */

struct qnode {
    struct qnode *next;
    struct usage_record rec;
};

/* Shared between submitters, sync callers and the writer thread; guarded by
 * mu. Sequence numbers count records: sync waits for processed >= the
 * submitted count it saw, which works because the queue is FIFO. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* writer: records queued, or stop */
    pthread_cond_t done_cv; /* sync/start: progress made */
    bool cv_monotonic;      /* work_cv re-initialised on CLOCK_MONOTONIC */
    struct qnode *head, *tail;
    size_t len;
    size_t backlog_warn_at;
    uint64_t submitted_seq, processed_seq;
    bool running, stopping, start_done, start_ok;
    bool warned_stopped;
    unsigned sync_waiters; /* usage_writer_sync() callers: no lingering */
    char *start_err;
    pthread_t thread;
} q = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .backlog_warn_at = BACKLOG_WARN,
};

static struct {
    _Atomic uint64_t submitted, written, duplicates, spooled, replayed, batches;
} stats;

/* Growable text buffer for JSON lines. */
struct linebuf {
    char *data;
    size_t len, cap;
};

/* Owned by the writer thread alone. */
static struct {
    const struct config *cfg;
    int jsonl_fd;           /* -1 = not open */
    int64_t jsonl_check_ms; /* next rotation check (mono) */
    struct linebuf lines;   /* reused by every batch */
    struct store *store;    /* NULL after a failure until reopened */
    int64_t next_open_ms;   /* earliest reopen attempt (mono) */
    bool spool_pending;     /* spool files may exist */
    int64_t next_replay_ms; /* mono */
    unsigned spool_seq;
} wr;

void usage_submit(const struct usage_record *r)
{
    struct qnode *n = malloc(sizeof(*n));
    if (n == NULL) {
        log_error("usage: out of memory queueing record %s; record lost", r->id);
        return;
    }
    n->next = NULL;
    n->rec = *r;
    atomic_fetch_add_explicit(&stats.submitted, 1, memory_order_relaxed);

    pthread_mutex_lock(&q.mu);
    if (q.tail != NULL)
        q.tail->next = n;
    else
        q.head = n;
    q.tail = n;
    q.len++;
    q.submitted_seq++;
    size_t len = q.len;
    bool warn = len >= q.backlog_warn_at;
    if (warn)
        q.backlog_warn_at *= 2;
    /* Once per stopped period, not per record. */
    bool warn_stopped = !q.running && !q.warned_stopped;
    if (warn_stopped)
        q.warned_stopped = true;
    /* The writer needs waking only for the first record of a batch (it
     * then lingers) and when a batch is full. */
    if (len == 1 || len == BATCH_MAX)
        pthread_cond_signal(&q.work_cv);
    pthread_mutex_unlock(&q.mu);

    if (warn)
        log_warn("usage: writer backlog is %zu records (the store is slow or down); "
                 "nothing is dropped",
                 len);
    if (warn_stopped)
        log_warn("usage: records are being queued while the writer is not running");
}

/* mkdir -p of dir itself (parents == false) or of the directory part of a
 * file path (parents == true). */
static MUST_CHECK int make_dirs(const char *path, bool parent_of_file)
{
    char *dir = strdup(path);
    int rc = -1;
    if (dir == NULL)
        return -1;
    if (parent_of_file) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir) {
            rc = 0;
            goto out;
        }
        *slash = '\0';
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) == -1 && errno != EEXIST)
            goto out;
        *p = '/';
    }
    if (mkdir(dir, 0750) == -1 && errno != EEXIST)
        goto out;
    rc = 0;
out:
    free(dir);
    return rc;
}

static MUST_CHECK int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static MUST_CHECK int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Appends the record's JSON text and a newline. */
static MUST_CHECK int linebuf_add_record(struct linebuf *b, const struct usage_record *r)
{
    if (b->cap - b->len < FORMAT_MAX) {
        size_t cap = MAX(b->cap * 2, b->len + FORMAT_MAX);
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    int n = usage_record_format(r, b->data + b->len, b->cap - b->len);
    if (n == -1)
        return -1; /* cannot happen: FORMAT_MAX bounds every record */
    b->data[b->len + (size_t)n] = '\n';
    b->len += (size_t)n + 1;
    return 0;
}

/* Opens the JSONL file for appending. O_APPEND is what makes copytruncate
 * work. A crash or a failed write may have left half a line at the end:
 * finish it, so the damage stays one unreadable line instead of also
 * spoiling the next record. */
static MUST_CHECK int jsonl_open(void)
{
    const char *path = wr.cfg->usage_jsonl_path;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1 && errno == ENOENT && make_dirs(path, true) == 0)
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640); /* dir removed */
    if (fd == -1)
        return -1;
    struct stat st;
    char last;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
        last != '\n' && write_all(fd, "\n", 1) == -1) {
        close(fd);
        return -1;
    }
    wr.jsonl_fd = fd;
    wr.jsonl_check_ms = mono_ms() + JSONL_CHECK_MS;
    return 0;
}

static void jsonl_close(void)
{
    if (wr.jsonl_fd != -1)
        close(wr.jsonl_fd);
    wr.jsonl_fd = -1;
}

/* True when the path no longer names the open file (renamed away or removed
 * by log rotation). Stats at most once per JSONL_CHECK_MS, not per batch. */
static bool jsonl_rotated(void)
{
    int64_t now = mono_ms();
    if (now < wr.jsonl_check_ms)
        return false;
    wr.jsonl_check_ms = now + JSONL_CHECK_MS;
    struct stat path_st, fd_st;
    if (stat(wr.cfg->usage_jsonl_path, &path_st) == -1 || fstat(wr.jsonl_fd, &fd_st) == -1)
        return true;
    return path_st.st_ino != fd_st.st_ino || path_st.st_dev != fd_st.st_dev;
}

/* Appends the newly written records (not those the store skipped as
 * duplicates, which still carry CHARGED_UNSET) to the JSONL sink: one write
 * and one fdatasync per batch. The store is the record of truth, so a
 * failure here is logged, not retried; the next batch reopens the file. */
static void jsonl_append(const struct usage_record *recs, size_t n)
{
    const char *path = wr.cfg->usage_jsonl_path;
    if (path == NULL || path[0] == '\0')
        return;
    struct linebuf *b = &wr.lines;
    b->len = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].charged_plan_credits_micros == CHARGED_UNSET)
            continue;
        if (linebuf_add_record(b, &recs[i]) == -1) {
            log_error("usage: out of memory formatting JSONL lines");
            return;
        }
    }
    if (b->len == 0)
        return;
    if (wr.jsonl_fd != -1 && jsonl_rotated()) {
        log_info("usage: the JSONL file %s was rotated; reopening it", path);
        jsonl_close();
    }
    if (wr.jsonl_fd == -1 && jsonl_open() == -1) {
        log_error("usage: opening the JSONL file %s failed: %s (records are in the store)", path,
                  strerror(errno));
        return;
    }
    if (write_all(wr.jsonl_fd, b->data, b->len) == -1 || fdatasync(wr.jsonl_fd) == -1) {
        log_error("usage: appending to the JSONL file %s failed: %s (records are in the store)",
                  path, strerror(errno));
        jsonl_close();
    }
}

/* Writes the batch to a new spool file, atomically (temp name, fsync,
 * rename, fsync of the directory), so a replay never sees half a file. */
static MUST_CHECK int spool_write(const struct usage_record *recs, size_t n)
{
    const char *dir = wr.cfg->usage_spool_dir;
    struct linebuf *b = &wr.lines;
    char path[4096], tmp[4096 + 8];
    int fd = -1, rc = -1;
    if (dir == NULL || dir[0] == '\0') {
        log_error("usage: the store failed and no spool directory is configured");
        return -1;
    }
    b->len = 0;
    for (size_t i = 0; i < n; i++) {
        if (linebuf_add_record(b, &recs[i]) == -1)
            goto out;
    }
    /* Zero-padded wall time first, so name order is write order. */
    snprintf(path, sizeof(path), "%s/usage-%016lld-%08ld-%08u" SPOOL_SUFFIX, dir,
             (long long)now_ms(), (long)getpid(), wr.spool_seq++);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (make_dirs(dir, false) == -1 ||
        (fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
        goto out;
    if (write_all(fd, b->data, b->len) == -1 || fsync(fd) == -1) {
        close(fd);
        fd = -1;
        unlink(tmp);
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) == -1) {
        unlink(tmp);
        goto out;
    }
    if (fsync_dir(dir) == -1)
        goto out; /* the file exists; only its durability is in doubt */
    rc = 0;
out:
    if (rc == -1)
        log_error("usage: spooling %zu records to %s failed: %s", n, dir, strerror(errno));
    return rc;
}

/* Opens the store if there is none, at most once per RETRY_MS. */
static bool have_store(void)
{
    if (wr.store != NULL)
        return true;
    int64_t now = mono_ms();
    if (now < wr.next_open_ms)
        return false;
    wr.next_open_ms = now + RETRY_MS;
    char *err = NULL;
    wr.store = store_open(wr.cfg, &err);
    if (wr.store == NULL) {
        log_error("usage: reopening the store failed: %s", err != NULL ? err : "unknown error");
        free(err);
        return false;
    }
    log_info("usage: store reopened");
    return true;
}

/* Drops the handle after a failure so the next attempt reconnects. */
static void drop_store(void)
{
    store_close(wr.store);
    wr.store = NULL;
    wr.next_open_ms = mono_ms() + RETRY_MS;
}

/* Writes and charges recs in one store transaction, then appends the new
 * ones to JSONL. *fresh gets the number newly written. -1 when the store
 * failed (nothing committed). */
static MUST_CHECK int commit_batch(struct usage_record *recs, size_t n, size_t *fresh)
{
    /* The store fills charged_* of every record it writes and leaves
     * duplicates alone, so the marker tells which lines are new. */
    for (size_t i = 0; i < n; i++) {
        recs[i].charged_plan_credits_micros = CHARGED_UNSET;
        recs[i].charged_wallet_micros = CHARGED_UNSET;
    }
    size_t dups = 0;
    if (!have_store() || store_usage_write(wr.store, recs, n, &dups) != STORE_OK) {
        if (wr.store != NULL)
            drop_store();
        for (size_t i = 0; i < n; i++) {
            recs[i].charged_plan_credits_micros = 0;
            recs[i].charged_wallet_micros = 0;
        }
        return -1;
    }
    size_t unset = 0;
    for (size_t i = 0; i < n; i++)
        unset += recs[i].charged_plan_credits_micros == CHARGED_UNSET;
    if (unset != dups)
        log_warn("usage: store reported %zu duplicates but left %zu records unmarked", dups, unset);
    atomic_fetch_add_explicit(&stats.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.written, n - dups, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.duplicates, dups, memory_order_relaxed);
    jsonl_append(recs, n);
    *fresh = n - dups;
    return 0;
}

/* Live batch: store, else spool. -1 only when both failed. */
static MUST_CHECK int process_batch(struct usage_record *recs, size_t n)
{
    size_t fresh;
    if (commit_batch(recs, n, &fresh) == 0)
        return 0;
    if (spool_write(recs, n) == -1)
        return -1;
    log_warn("usage: store unavailable, %zu records spooled for replay", n);
    atomic_fetch_add_explicit(&stats.spooled, n, memory_order_relaxed);
    if (!wr.spool_pending)
        wr.next_replay_ms = mono_ms() + RETRY_MS;
    wr.spool_pending = true;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_spool_name(const char *name)
{
    size_t len = strlen(name), slen = strlen(SPOOL_SUFFIX);
    return strncmp(name, "usage-", 6) == 0 && len > slen &&
           strcmp(name + len - slen, SPOOL_SUFFIX) == 0;
}

/* Reads one spool file into a record array; *bad counts unparseable lines. */
static MUST_CHECK int spool_read(const char *path, struct usage_record **out, size_t *n,
                                 size_t *bad)
{
    FILE *f = fopen(path, "re");
    *out = NULL;
    *n = 0;
    *bad = 0;
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    ssize_t len;
    int rc = -1;
    while ((len = getline(&line, &line_cap, f)) != -1) {
        if (len <= 1)
            continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)len, 0, &jerr);
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            struct usage_record *grown = realloc(*out, cap * sizeof(**out));
            if (grown == NULL) {
                json_decref(obj);
                goto out;
            }
            *out = grown;
        }
        if (obj == NULL || usage_record_from_json(obj, &(*out)[*n]) == -1)
            (*bad)++;
        else
            (*n)++;
        json_decref(obj);
    }
    rc = ferror(f) ? -1 : 0;
out:
    free(line);
    fclose(f);
    if (rc == -1) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* Replays one spool file; 0 when it is done with (removed or set aside). */
static MUST_CHECK int replay_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct usage_record *recs;
    size_t n, bad;
    if (spool_read(path, &recs, &n, &bad) == -1) {
        log_error("usage: reading spool file %s failed: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t fresh_total = 0;
    for (size_t off = 0; off < n; off += BATCH_MAX) {
        size_t fresh;
        /* Chunks committed before a failure are duplicates on the retry. */
        if (commit_batch(recs + off, MIN(BATCH_MAX, n - off), &fresh) == -1)
            goto out;
        fresh_total += fresh;
    }
    atomic_fetch_add_explicit(&stats.replayed, fresh_total, memory_order_relaxed);
    if (bad > 0) {
        /* Keep what could not be read for a human; never replay it again. */
        char aside[4096 + 8];
        snprintf(aside, sizeof(aside), "%s.bad", path);
        log_error("usage: spool file %s had %zu unreadable lines; kept as %s", path, bad, aside);
        if (rename(path, aside) == -1)
            goto out;
    } else if (unlink(path) == -1) {
        log_error("usage: removing replayed spool file %s failed: %s", path, strerror(errno));
        goto out;
    }
    if (fsync_dir(dir) == -1)
        log_warn("usage: fsync of spool directory %s failed: %s", dir, strerror(errno));
    log_info("usage: replayed spool file %s (%zu new, %zu already stored)", name, fresh_total,
             n - fresh_total);
    rc = 0;
out:
    free(recs);
    return rc;
}

/* Replays every spool file in name (= write) order; stops at the first
 * failure so later files never overtake an earlier one. */
static void replay_spool(void)
{
    const char *dir = wr.cfg->usage_spool_dir;
    wr.next_replay_ms = mono_ms() + RETRY_MS;
    if (dir == NULL || dir[0] == '\0') {
        wr.spool_pending = false;
        return;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT)
            log_error("usage: reading spool directory %s failed: %s", dir, strerror(errno));
        wr.spool_pending = errno != ENOENT;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool failed = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_spool_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                failed = true;
                break;
            }
            names = grown;
        }
        if ((names[n] = strdup(e->d_name)) == NULL) {
            failed = true;
            break;
        }
        n++;
    }
    closedir(d);
    if (!failed && n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n && !failed; i++)
        failed = replay_file(dir, names[i]) == -1;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    wr.spool_pending = failed;
}

/* Takes up to max records off the queue (caller holds q.mu). */
static size_t dequeue(struct usage_record *out, size_t max)
{
    size_t n = 0;
    while (n < max && q.head != NULL) {
        struct qnode *node = q.head;
        q.head = node->next;
        if (q.head == NULL)
            q.tail = NULL;
        out[n++] = node->rec;
        free(node);
        q.len--;
    }
    if (q.len < BACKLOG_WARN)
        q.backlog_warn_at = BACKLOG_WARN;
    return n;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(q.cv_monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void mark_processed(size_t n)
{
    pthread_mutex_lock(&q.mu);
    q.processed_seq += n;
    pthread_cond_broadcast(&q.done_cv);
    pthread_mutex_unlock(&q.mu);
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "usage-writer");
    struct usage_record *batch = malloc(BATCH_MAX * sizeof(*batch));
    char *err = NULL;
    wr.store = store_open(wr.cfg, &err);
    bool ok = wr.store != NULL && batch != NULL;
    if (ok) {
        const char *path = wr.cfg->usage_jsonl_path;
        /* Not fatal: the store is the record of truth, and every batch
         * tries to open the file again. */
        if (path != NULL && path[0] != '\0' && (make_dirs(path, true) == -1 || jsonl_open() == -1))
            log_error("usage: opening the JSONL file %s failed: %s", path, strerror(errno));
        replay_spool(); /* before any new record, so old ones go first */
    } else if (err == NULL) {
        err = strdup(batch == NULL ? "out of memory starting the usage writer"
                                   : "opening the store failed");
    }

    pthread_mutex_lock(&q.mu);
    q.start_done = true;
    q.start_ok = ok;
    q.start_err = ok ? NULL : err;
    pthread_cond_broadcast(&q.done_cv);
    pthread_mutex_unlock(&q.mu);
    if (!ok)
        goto out;

    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.head == NULL && !q.stopping) {
            if (!wr.spool_pending) {
                pthread_cond_wait(&q.work_cv, &q.mu);
                continue;
            }
            int64_t wait = wr.next_replay_ms - mono_ms();
            if (wait <= 0)
                break;
            struct timespec ts;
            deadline_in(&ts, wait);
            if (pthread_cond_timedwait(&q.work_cv, &q.mu, &ts) == ETIMEDOUT)
                break;
        }
        if (q.head != NULL && q.len < BATCH_MAX && !q.stopping && q.sync_waiters == 0) {
            struct timespec ts;
            deadline_in(&ts, LINGER_MS);
            while (q.len < BATCH_MAX && !q.stopping && q.sync_waiters == 0 &&
                   pthread_cond_timedwait(&q.work_cv, &q.mu, &ts) != ETIMEDOUT)
                ;
        }
        size_t n = dequeue(batch, BATCH_MAX);
        bool stopping = q.stopping;
        pthread_mutex_unlock(&q.mu);

        if (n > 0) {
            int attempts = 0;
            while (process_batch(batch, n) == -1) {
                /* Neither store nor spool took it: hold on and retry rather
                 * than drop, except at shutdown after a few tries. */
                if (stopping && ++attempts >= STOP_ATTEMPTS) {
                    log_error("usage: %zu records could be neither stored nor spooled; lost", n);
                    break;
                }
                pthread_mutex_lock(&q.mu);
                struct timespec ts;
                deadline_in(&ts, RETRY_MS);
                pthread_cond_timedwait(&q.work_cv, &q.mu, &ts);
                stopping = q.stopping;
                pthread_mutex_unlock(&q.mu);
            }
            mark_processed(n);
        }
        if (wr.spool_pending && (mono_ms() >= wr.next_replay_ms || (stopping && n == 0)))
            replay_spool();
        if (stopping && n == 0)
            break;
    }
out:
    store_close(wr.store);
    wr.store = NULL;
    jsonl_close();
    free(wr.lines.data);
    wr.lines = (struct linebuf){0};
    free(batch);
    return NULL;
}

int usage_writer_start(const struct config *cfg, char **err)
{
    *err = NULL;
    pthread_mutex_lock(&q.mu);
    if (q.running) {
        pthread_mutex_unlock(&q.mu);
        *err = strdup("the usage writer is already running");
        return -1;
    }
    if (!q.cv_monotonic) {
        /* Retry timing must not jump with the wall clock. Safe to swap here:
         * nobody waits on work_cv while the writer is not running, and
         * submitters only signal it under q.mu. */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_destroy(&q.work_cv);
        pthread_cond_init(&q.work_cv, &attr);
        pthread_condattr_destroy(&attr);
        q.cv_monotonic = true;
    }
    memset(&wr, 0, sizeof(wr));
    wr.cfg = cfg;
    wr.jsonl_fd = -1;
    q.start_done = false;
    q.start_err = NULL;
    q.warned_stopped = false;
    q.stopping = false;
    int rc = pthread_create(&q.thread, NULL, writer_main, NULL);
    if (rc != 0) {
        pthread_mutex_unlock(&q.mu);
        if (asprintf(err, "starting the usage writer thread failed: %s", strerror(rc)) == -1)
            *err = NULL;
        return -1;
    }
    while (!q.start_done)
        pthread_cond_wait(&q.done_cv, &q.mu);
    bool ok = q.start_ok;
    char *start_err = q.start_err;
    q.start_err = NULL;
    q.running = ok;
    pthread_mutex_unlock(&q.mu);
    if (!ok) {
        pthread_join(q.thread, NULL);
        *err = start_err;
        return -1;
    }
    return 0;
}

void usage_writer_stop(void)
{
    pthread_mutex_lock(&q.mu);
    if (!q.running || q.stopping) {
        pthread_mutex_unlock(&q.mu);
        return;
    }
    q.stopping = true;
    pthread_cond_signal(&q.work_cv);
    pthread_mutex_unlock(&q.mu);

    pthread_join(q.thread, NULL);

    pthread_mutex_lock(&q.mu);
    q.running = false;
    q.stopping = false;
    pthread_cond_broadcast(&q.done_cv); /* release sync callers */
    pthread_mutex_unlock(&q.mu);
}

void usage_writer_sync(void)
{
    pthread_mutex_lock(&q.mu);
    uint64_t target = q.submitted_seq;
    q.sync_waiters++;
    pthread_cond_signal(&q.work_cv); /* end a linger now */
    while (q.running && q.processed_seq < target)
        pthread_cond_wait(&q.done_cv, &q.mu);
    q.sync_waiters--;
    pthread_mutex_unlock(&q.mu);
}

void usage_writer_stats(struct usage_stats *out)
{
    out->submitted = atomic_load_explicit(&stats.submitted, memory_order_relaxed);
    out->written = atomic_load_explicit(&stats.written, memory_order_relaxed);
    out->duplicates = atomic_load_explicit(&stats.duplicates, memory_order_relaxed);
    out->spooled = atomic_load_explicit(&stats.spooled, memory_order_relaxed);
    out->replayed = atomic_load_explicit(&stats.replayed, memory_order_relaxed);
    out->batches = atomic_load_explicit(&stats.batches, memory_order_relaxed);
}
