/* usage_record.c - the usage record's JSON forms (DESIGN §5): compact text
 * written without building a tree, a jansson object, and the parse back.
 * Pure: no I/O, no threads, no store; every sink (store row, JSONL line,
 * spool file, admin answer) gets its text from here. */
#include "common.h"
#include "usage_record.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define FORMAT_MAX USAGE_RECORD_TEXT_MAX

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
    char tmp[24];
    size_t n = 0;
    if (v < 0)
        tmp[n++] = '-';
    n += fmt_u64(tmp + n, v < 0 ? -(uint64_t)v : (uint64_t)v);
    put(o, tmp, n);
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
 * (JSON_COMPACT), without building a tree: it runs for every record the writer
 * handles. Writes a terminating NUL too (counted in size, not in
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
    if (r->provider != NULL && r->provider->slot)
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
    if (r->unmetered)
        PUT_LIT(&o, ",\"metered\":false");
    if (r->simulated)
        PUT_LIT(&o, ",\"simulated\":true");
    if (r->seq > 0) {
        PUT_LIT(&o, ",\"seq\":");
        put_i64(&o, r->seq);
        if (r->final)
            PUT_LIT(&o, ",\"final\":true");
        else
            PUT_LIT(&o, ",\"final\":false");
    }
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
    bad |= json_object_set_new(
        o, "slot", r->provider != NULL && r->provider->slot ? json_string(pname) : json_null());
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
    if (r->unmetered)
        bad |= json_object_set_new(o, "metered", json_false());
    if (r->simulated)
        bad |= json_object_set_new(o, "simulated", json_true());
    if (r->seq > 0) {
        bad |= json_object_set_new(o, "seq", json_integer(r->seq));
        bad |= json_object_set_new(o, "final", json_boolean(r->final));
    }
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

/* Says why a record is refused, in why (may be NULL); returns -1. The
 * reasons name fields and numbers only, never a string value. */
static PRINTF_LIKE(3, 4) int refuse(char *why, size_t why_size, const char *fmt, ...)
{
    if (why != NULL && why_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

bool usage_record_id_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static MUST_CHECK int check_range(const char *name, int64_t v, int64_t max, char *why,
                                  size_t why_size)
{
    if (v < 0)
        return refuse(why, why_size, "%s %lld is negative (a record is never a credit)", name,
                      (long long)v);
    if (v > max)
        return refuse(why, why_size, "%s %lld is above the bound of %lld", name, (long long)v,
                      (long long)max);
    return 0;
}

int usage_record_check(const struct usage_record *r, char *why, size_t why_size)
{
    if (!usage_record_id_valid(r->id))
        return refuse(why, why_size, "id missing or malformed");
    if (!usage_record_id_valid(r->tenant_id))
        return refuse(why, why_size, "tenant_id missing or malformed");
    if (!usage_record_id_valid(r->payer_id))
        return refuse(why, why_size, "payer_id missing or malformed");
    if (r->provider == NULL)
        return refuse(why, why_size, "no provider");
    if (r->ts_ms < 0)
        return refuse(why, why_size, "ts before 1970");
    const struct usage_units *u = &r->units;
    const struct {
        const char *name;
        int64_t v, max;
    } amounts[] = {
        {"cost_micros", r->cost_micros, USAGE_AMOUNT_MAX},
        {"charged.plan_credits_micros", r->charged_plan_credits_micros, USAGE_AMOUNT_MAX},
        {"charged.wallet_micros", r->charged_wallet_micros, USAGE_AMOUNT_MAX},
        {"units.input_tokens", u->input_tokens, USAGE_UNITS_MAX},
        {"units.cached_input_tokens", u->cached_input_tokens, USAGE_UNITS_MAX},
        {"units.output_tokens", u->output_tokens, USAGE_UNITS_MAX},
        {"units.audio_input_tokens", u->audio_input_tokens, USAGE_UNITS_MAX},
        {"units.audio_output_tokens", u->audio_output_tokens, USAGE_UNITS_MAX},
        {"units.characters", u->characters, USAGE_UNITS_MAX},
        {"units.audio_seconds (ms)", u->audio_ms, USAGE_UNITS_MAX},
    };
    for (size_t i = 0; i < ARRAY_SIZE(amounts); i++)
        if (check_range(amounts[i].name, amounts[i].v, amounts[i].max, why, why_size) == -1)
            return -1;
    /* Only a simulated line may be exempt: a spool line cannot make a real
     * one free. */
    if (r->no_charge && !r->simulated)
        return refuse(why, why_size, "no_charge on a record that is not simulated");
    return 0;
}

int usage_record_parse(json_t *obj, struct usage_record *r, char *why, size_t why_size)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(obj))
        return refuse(why, why_size, "not a JSON object");
    char ts[40], provider[32], billed[16], outcome[32];
    static const struct {
        const char *name;
        size_t off, size;
        bool required;
    } strs[] = {
#define STR_FIELD(f, req)                                                                          \
    {#f, offsetof(struct usage_record, f), sizeof(((struct usage_record *)0)->f), req}
        STR_FIELD(id, true),
        STR_FIELD(tenant_id, true),
        STR_FIELD(payer_id, true),
        STR_FIELD(key_id, false),
        STR_FIELD(session_id, false),
        STR_FIELD(line, false),
        STR_FIELD(endpoint, false),
        STR_FIELD(model, false),
        STR_FIELD(connection_id, false),
        STR_FIELD(fallback_reason, false),
        STR_FIELD(upstream_request_id, false),
        /* Spool lines only (usage_record_lines_add_spool): the fleet hold
         * the record releases when it is committed. */
        STR_FIELD(hold_id, false),
#undef STR_FIELD
    };
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
        if (get_str(obj, strs[i].name, (char *)r + strs[i].off, strs[i].size, strs[i].required) ==
            -1)
            return refuse(why, why_size, "%s %s", strs[i].name,
                          strs[i].required ? "missing, not a string or too long"
                                           : "not a string or too long");
    if (get_str(obj, "ts", ts, sizeof(ts), true) == -1 || parse_ts(ts, &r->ts_ms) == -1)
        return refuse(why, why_size, "ts missing or not a UTC time (YYYY-MM-DDTHH:MM:SS[.fff]Z)");
    if (get_str(obj, "provider", provider, sizeof(provider), true) == -1 ||
        (r->provider = provider_find(provider)) == NULL)
        return refuse(why, why_size, "provider missing or unknown");
    if (get_str(obj, "billed_to", billed, sizeof(billed), true) == -1 ||
        (strcmp(billed, "byok") != 0 && strcmp(billed, "wallet") != 0))
        return refuse(why, why_size, "billed_to is neither \"byok\" nor \"wallet\"");
    r->billed_byok = strcmp(billed, "byok") == 0;

    r->outcome = USAGE_OUTCOME_OK;
    if (get_str(obj, "outcome", outcome, sizeof(outcome), false) == -1)
        return refuse(why, why_size, "outcome is not a string");
    if (outcome[0] != '\0') {
        size_t i = 0;
        while (i < ARRAY_SIZE(outcome_names) && strcmp(outcome_names[i], outcome) != 0)
            i++;
        if (i == ARRAY_SIZE(outcome_names))
            return refuse(why, why_size, "outcome unknown");
        r->outcome = (enum usage_outcome)i;
    }

    int64_t status;
    if (get_int(obj, "status", &status, 0) == -1 || status < 0 || status > 999)
        return refuse(why, why_size, "status is not an integer in 0..999");
    r->status = (int)status;
    json_t *est = json_object_get(obj, "estimated");
    r->estimated = json_is_true(est);

    json_t *units = json_object_get(obj, "units");
    if (units != NULL && !json_is_null(units)) {
        if (!json_is_object(units))
            return refuse(why, why_size, "units is not an object");
        const struct {
            const char *name;
            int64_t *out;
        } ints[] = {
            {"input_tokens", &r->units.input_tokens},
            {"cached_input_tokens", &r->units.cached_input_tokens},
            {"output_tokens", &r->units.output_tokens},
            {"audio_input_tokens", &r->units.audio_input_tokens},
            {"audio_output_tokens", &r->units.audio_output_tokens},
            {"characters", &r->units.characters},
        };
        for (size_t i = 0; i < ARRAY_SIZE(ints); i++)
            if (get_int(units, ints[i].name, ints[i].out, 0) == -1)
                return refuse(why, why_size, "units.%s is not an integer", ints[i].name);
        json_t *secs = json_object_get(units, "audio_seconds");
        if (secs != NULL && !json_is_null(secs)) {
            if (!json_is_number(secs))
                return refuse(why, why_size, "units.audio_seconds is not a number");
            /* Bounded before llround, which has no answer for huge values. */
            double v = json_number_value(secs);
            if (!(v >= 0.0))
                return refuse(why, why_size, "units.audio_seconds is negative");
            if (v > (double)USAGE_UNITS_MAX / 1000.0)
                return refuse(why, why_size, "units.audio_seconds is above the bound of %lld",
                              (long long)(USAGE_UNITS_MAX / 1000));
            r->units.audio_ms = llround(v * 1000.0);
        }
    }

    json_t *charged = json_object_get(obj, "charged");
    if (charged != NULL && !json_is_null(charged)) {
        if (!json_is_object(charged) ||
            get_int(charged, "plan_credits_micros", &r->charged_plan_credits_micros, 0) == -1 ||
            get_int(charged, "wallet_micros", &r->charged_wallet_micros, 0) == -1)
            return refuse(why, why_size, "charged is not an object of integers");
    }
    int64_t seq = 0;
    if (get_int(obj, "cost_micros", &r->cost_micros, 0) == -1)
        return refuse(why, why_size, "cost_micros is not an integer");
    if (get_int(obj, "ttfb_ms", &r->ttfb_ms, -1) == -1 ||
        get_int(obj, "duration_ms", &r->duration_ms, 0) == -1)
        return refuse(why, why_size, "ttfb_ms or duration_ms is not an integer");
    if (get_int(obj, "seq", &seq, 0) == -1 || seq < 0 || seq > INT32_MAX)
        return refuse(why, why_size, "seq is not an integer in 0..2^31-1");
    r->seq = (int)seq;
    r->final = json_is_true(json_object_get(obj, "final"));
    r->unmetered = json_is_false(json_object_get(obj, "metered"));
    r->simulated = json_is_true(json_object_get(obj, "simulated"));
    r->no_charge = json_is_true(json_object_get(obj, "no_charge"));
    return usage_record_check(r, why, why_size);
}

int usage_record_from_json(json_t *obj, struct usage_record *r)
{
    return usage_record_parse(obj, r, NULL, 0);
}

/* Room for room more bytes at the end of b (at least doubling). */
static MUST_CHECK int lines_reserve(struct usage_record_lines *b, size_t room)
{
    if (b->cap - b->len >= room)
        return 0;
    size_t cap = MAX(b->cap * 2, b->len + room);
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int usage_record_lines_add(struct usage_record_lines *b, const struct usage_record *r)
{
    if (lines_reserve(b, FORMAT_MAX) == -1)
        return -1;
    int n = usage_record_format(r, b->data + b->len, b->cap - b->len);
    if (n == -1)
        return -1; /* cannot happen: FORMAT_MAX bounds every record */
    b->data[b->len + (size_t)n] = '\n';
    b->len += (size_t)n + 1;
    return n;
}

int usage_record_lines_add_text(struct usage_record_lines *b, const char *text, size_t len)
{
    if (lines_reserve(b, len + 1) == -1)
        return -1;
    memcpy(b->data + b->len, text, len);
    b->data[b->len + len] = '\n';
    b->len += len + 1;
    return 0;
}

int usage_record_format_spool(const struct usage_record *r, char *buf, size_t size)
{
    int n = usage_record_format(r, buf, size);
    if (n == -1)
        return -1;
    /* {...} -> {...,"hold_id":"<id>","no_charge":true}. Ids are
     * [A-Za-z0-9_-] (ULIDs): nothing to escape. */
    size_t id_len = strnlen(r->hold_id, sizeof(r->hold_id));
    for (size_t i = 0; i < id_len; i++) {
        char c = r->hold_id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            id_len = 0; /* not an id we made: left out (the hold then expires) */
            break;
        }
    }
    size_t at = (size_t)n - 1;                    /* the closing brace */
    size_t extra = (id_len > 0 ? id_len + 13 : 0) /* ,"hold_id":"" */
                   + (r->no_charge ? 17 : 0);     /* ,"no_charge":true */
    /* The extras, "}\n" and snprintf's NUL. */
    if (at + extra + 3 > size)
        return -1;
    int w = 0;
    if (id_len > 0)
        w += snprintf(buf + at, size - at, ",\"hold_id\":\"%.*s\"", (int)id_len, r->hold_id);
    if (r->no_charge)
        w += snprintf(buf + at + (size_t)w, size - at - (size_t)w, ",\"no_charge\":true");
    w += snprintf(buf + at + (size_t)w, size - at - (size_t)w, "}\n");
    return (int)(at + (size_t)w);
}

int usage_record_lines_add_spool(struct usage_record_lines *b, const struct usage_record *r)
{
    if (lines_reserve(b, USAGE_SPOOL_LINE_MAX) == -1)
        return -1;
    int n = usage_record_format_spool(r, b->data + b->len, b->cap - b->len);
    if (n == -1)
        return -1; /* cannot happen: USAGE_SPOOL_LINE_MAX bounds every line */
    b->len += (size_t)n;
    return n - 1;
}

void usage_record_lines_free(struct usage_record_lines *b)
{
    free(b->data);
    *b = (struct usage_record_lines){0};
}
