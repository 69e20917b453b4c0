/* test_usage.c - the usage record JSON (DESIGN §5) and the writer thread:
 * group commit into a real SQLite store, JSONL sink, spool and replay. */
#include "common.h"
#include "config.h"
#include "store.h"
#include "usage.h"
#include "usage_record.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- JSON ---------------------------------------------------------------- */

static void full_record(struct usage_record *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "req_01JDABCDEFGHJKMNPQRSTVWXYZ");
    r->ts_ms = 1795521600000; /* 2026-11-24T12:00:00.000Z */
    snprintf(r->tenant_id, sizeof(r->tenant_id), "t1");
    snprintf(r->payer_id, sizeof(r->payer_id), "agency1");
    snprintf(r->key_id, sizeof(r->key_id), "k_0123456789abcdef");
    snprintf(r->session_id, sizeof(r->session_id), "conv-42");
    r->provider = provider_find("openai");
    snprintf(r->line, sizeof(r->line), "llm");
    snprintf(r->endpoint, sizeof(r->endpoint), "/v1/chat/completions");
    snprintf(r->model, sizeof(r->model), "gpt-4o-mini");
    r->billed_byok = true;
    snprintf(r->connection_id, sizeof(r->connection_id), "c_1");
    r->status = 200;
    r->outcome = USAGE_OUTCOME_CLIENT_DISCONNECT;
    r->estimated = true;
    snprintf(r->fallback_reason, sizeof(r->fallback_reason), "connection_deleted");
    r->units = (struct usage_units){12, 2, 5, 3, 4, 6, 1500};
    r->cost_micros = 5;
    r->charged_plan_credits_micros = 7;
    r->charged_wallet_micros = 8;
    snprintf(r->upstream_request_id, sizeof(r->upstream_request_id), "req_abc");
    r->ttfb_ms = 41;
    r->duration_ms = 380;
}

static void assert_keys(json_t *obj, const char *const *keys, size_t n)
{
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        assert_true(i < n);
        assert_string_equal(key, keys[i]);
        i++;
    }
    assert_int_equal(i, n);
}

static void test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_OK), "ok");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_CLIENT_DISCONNECT), "client_disconnect");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_UPSTREAM_ERROR), "upstream_error");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_TIMEOUT), "timeout");
}

static void test_json_shape(void **state)
{
    (void)state;
    struct usage_record r;
    full_record(&r);
    json_t *o = usage_record_to_json(&r);
    assert_non_null(o);
    static const char *const keys[] = {
        "id",
        "ts",
        "tenant_id",
        "payer_id",
        "key_id",
        "session_id",
        "provider",
        "slot",
        "line",
        "endpoint",
        "model",
        "billed_to",
        "connection_id",
        "status",
        "outcome",
        "estimated",
        "fallback_reason",
        "units",
        "cost_micros",
        "charged",
        "upstream_request_id",
        "ttfb_ms",
        "duration_ms",
    };
    assert_keys(o, keys, ARRAY_SIZE(keys));
    static const char *const unit_keys[] = {
        "input_tokens",        "cached_input_tokens", "output_tokens", "audio_input_tokens",
        "audio_output_tokens", "characters",          "audio_seconds",
    };
    assert_keys(json_object_get(o, "units"), unit_keys, ARRAY_SIZE(unit_keys));
    static const char *const charged_keys[] = {"plan_credits_micros", "wallet_micros"};
    assert_keys(json_object_get(o, "charged"), charged_keys, ARRAY_SIZE(charged_keys));

    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2026-11-24T12:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(o, "provider")), "openai");
    assert_string_equal(json_string_value(json_object_get(o, "slot")), "openai");
    assert_string_equal(json_string_value(json_object_get(o, "billed_to")), "byok");
    assert_string_equal(json_string_value(json_object_get(o, "outcome")), "client_disconnect");
    assert_true(json_is_true(json_object_get(o, "estimated")));
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "ttfb_ms")), 41);
    json_t *units = json_object_get(o, "units");
    assert_true(json_is_real(json_object_get(units, "audio_seconds")));
    assert_true(json_real_value(json_object_get(units, "audio_seconds")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(units, "cached_input_tokens")), 2);
    json_t *charged = json_object_get(o, "charged");
    assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")), 8);
    json_decref(o);

    /* Empty optional strings and ttfb -1 are null; no slot is null. */
    snprintf(r.id, sizeof(r.id), "x");
    r.session_id[0] = r.model[0] = r.connection_id[0] = '\0';
    r.fallback_reason[0] = r.upstream_request_id[0] = '\0';
    r.ttfb_ms = -1;
    r.billed_byok = false;
    r.provider = provider_find("deepgram");
    r.ts_ms = 1795521600123 + 86400000;
    o = usage_record_to_json(&r);
    const char *nulls[] = {"session_id",          "model",   "connection_id", "fallback_reason",
                           "upstream_request_id", "ttfb_ms", "slot"};
    for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
        assert_true(json_is_null(json_object_get(o, nulls[i])));
    assert_string_equal(json_string_value(json_object_get(o, "billed_to")), "wallet");
    assert_string_equal(json_string_value(json_object_get(o, "provider")), "deepgram");
    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2026-11-25T12:00:00.123Z");
    assert_keys(o, keys, ARRAY_SIZE(keys));
    json_decref(o);
}

static void roundtrip(const struct usage_record *r)
{
    json_t *o = usage_record_to_json(r);
    assert_non_null(o);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_error_t jerr;
    json_t *back = json_loads(text, 0, &jerr);
    free(text);
    assert_non_null(back);
    struct usage_record got;
    assert_int_equal(usage_record_from_json(back, &got), 0);
    json_decref(back);
    assert_memory_equal(&got, r, sizeof(got));
}

static void test_json_roundtrip(void **state)
{
    (void)state;
    struct usage_record r;
    full_record(&r);
    roundtrip(&r);

    full_record(&r);
    /* Whole fields cleared: the comparison below is bytewise. */
    memset(r.session_id, 0, sizeof(r.session_id));
    memset(r.model, 0, sizeof(r.model));
    memset(r.connection_id, 0, sizeof(r.connection_id));
    memset(r.fallback_reason, 0, sizeof(r.fallback_reason));
    memset(r.upstream_request_id, 0, sizeof(r.upstream_request_id));
    r.ttfb_ms = -1;
    r.billed_byok = false;
    r.estimated = false;
    r.outcome = USAGE_OUTCOME_TIMEOUT;
    r.provider = provider_find("azure_speech");
    r.units.audio_ms = 1234; /* not exact in binary floating point */
    r.ts_ms = 1795521600999;
    r.charged_wallet_micros = 3;
    roundtrip(&r);

    /* Socket records: seq and final; a BYOK call the proxy does not meter. */
    r.seq = 7;
    r.final = true;
    r.unmetered = true;
    roundtrip(&r);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    assert_non_null(o);
    return o;
}

static void test_json_from_tolerant_and_strict(void **state)
{
    (void)state;
    struct usage_record r;
    /* Only the essentials, everything else null or absent. */
    json_t *o = parse("{\"id\":\"u1\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\","
                      "\"payer_id\":\"p\",\"provider\":\"elevenlabs\",\"billed_to\":\"wallet\","
                      "\"slot\":null,\"model\":null,\"units\":null,\"charged\":null,"
                      "\"ttfb_ms\":null,\"session_id\":null,\"outcome\":null}");
    assert_int_equal(usage_record_from_json(o, &r), 0);
    json_decref(o);
    assert_string_equal(r.id, "u1");
    assert_int_equal(r.ts_ms, 1795521600000);
    assert_ptr_equal(r.provider, provider_find("elevenlabs"));
    assert_int_equal(r.ttfb_ms, -1);
    assert_string_equal(r.session_id, "");
    assert_int_equal(r.outcome, USAGE_OUTCOME_OK);

    const char *bad[] = {
        "[]",
        "{\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}", /* no id */
        "{\"id\":\"u\",\"ts\":\"yesterday\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"mistral\",\"billed_to\":\"wallet\"}",
        /* a record is never a credit: negative amounts are refused */
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"cost_micros\":-5}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"charged\":{\"wallet_micros\":-1}}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"units\":{\"characters\":-1}}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"credit\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"cost_micros\":\"5\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"outcome\":\"meh\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"units\":{\"input_tokens\":1.5}}",
        /* an id longer than ID_MAX is refused, never truncated */
        "{\"id\":\"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\","
        "\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        o = parse(bad[i]);
        assert_int_equal(usage_record_from_json(o, &r), -1);
        json_decref(o);
    }
}

/* Every record, live or replayed, is checked before it is charged: what is
 * refused and the reason given (field names and numbers only). */
static void test_record_check(void **state)
{
    (void)state;
    struct usage_record r;
    char why[192];
    full_record(&r);
    r.charged_plan_credits_micros = r.charged_wallet_micros = 0;
    assert_int_equal(usage_record_check(&r, why, sizeof(why)), 0);
    r.cost_micros = USAGE_AMOUNT_MAX; /* the bound itself is allowed */
    assert_int_equal(usage_record_check(&r, why, sizeof(why)), 0);

    static const struct {
        const char *what; /* field to spoil */
        int64_t value;
        const char *why;
    } cases[] = {
        {"cost", -5000, "cost_micros -5000 is negative (a record is never a credit)"},
        {"cost", USAGE_AMOUNT_MAX + 1,
         "cost_micros 1000000000001 is above the bound of 1000000000000"},
        {"cost", INT64_MIN, "cost_micros -9223372036854775808 is negative"},
        {"wallet", -1, "charged.wallet_micros -1 is negative"},
        {"plan", INT64_MAX, "charged.plan_credits_micros 9223372036854775807 is above"},
        {"chars", -1, "units.characters -1 is negative"},
        {"tokens", USAGE_UNITS_MAX + 1, "units.output_tokens 1000000000001 is above"},
        {"audio", -1, "units.audio_seconds (ms) -1 is negative"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        full_record(&r);
        r.charged_plan_credits_micros = r.charged_wallet_micros = 0;
        if (strcmp(cases[i].what, "cost") == 0)
            r.cost_micros = cases[i].value;
        else if (strcmp(cases[i].what, "wallet") == 0)
            r.charged_wallet_micros = cases[i].value;
        else if (strcmp(cases[i].what, "plan") == 0)
            r.charged_plan_credits_micros = cases[i].value;
        else if (strcmp(cases[i].what, "chars") == 0)
            r.units.characters = cases[i].value;
        else if (strcmp(cases[i].what, "tokens") == 0)
            r.units.output_tokens = cases[i].value;
        else
            r.units.audio_ms = cases[i].value;
        why[0] = '\0';
        assert_int_equal(usage_record_check(&r, why, sizeof(why)), -1);
        if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("case %zu: want \"%s...\", got \"%s\"", i, cases[i].why, why);
    }

    /* Ids: present and of the id alphabet; nothing of them is echoed. */
    const char *bad_ids[] = {"", "has space", "quote\"", "new\nline", "uni\xc3\xa9"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        full_record(&r);
        snprintf(r.id, sizeof(r.id), "%s", bad_ids[i]);
        assert_int_equal(usage_record_check(&r, why, sizeof(why)), -1);
        assert_string_equal(why, "id missing or malformed");
        assert_false(usage_record_id_valid(bad_ids[i]));
    }
    full_record(&r);
    r.payer_id[0] = '\0';
    assert_int_equal(usage_record_check(&r, why, sizeof(why)), -1);
    assert_string_equal(why, "payer_id missing or malformed");
    full_record(&r);
    r.provider = NULL;
    assert_int_equal(usage_record_check(&r, NULL, 0), -1); /* why may be NULL */

    /* The parse gives the reason too, and bounds audio_seconds before
     * rounding it (llround has no answer for 1e300). */
    static const struct {
        const char *json, *why;
    } parsed[] = {
        {"{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"credit\"}",
         "billed_to is neither \"byok\" nor \"wallet\""},
        {"{\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
         "id missing, not a string or too long"},
        {"{\"id\":\"\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
         "id missing or malformed"},
        {"{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"cost_micros\":-1}",
         "cost_micros -1 is negative (a record is never a credit)"},
        {"{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"units\":{\"audio_seconds\":1e300}}",
         "units.audio_seconds is above the bound of 1000000000"},
        {"{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"units\":{\"audio_seconds\":-0.5}}",
         "units.audio_seconds is negative"},
        {"{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
         "\"provider\":\"mistral\",\"billed_to\":\"wallet\"}",
         "provider missing or unknown"},
        {"[]", "not a JSON object"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(parsed); i++) {
        json_t *o = parse(parsed[i].json);
        why[0] = '\0';
        assert_int_equal(usage_record_parse(o, &r, why, sizeof(why)), -1);
        json_decref(o);
        if (strcmp(why, parsed[i].why) != 0)
            fail_msg("parse case %zu: want \"%s\", got \"%s\"", i, parsed[i].why, why);
    }
}

/* ---- hand-written serializer ---------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A random string for a field of this size: empty (null in JSON) a quarter
 * of the time, else a mix of plain ASCII, characters JSON escapes, valid
 * multi-byte UTF-8 and stray bytes that are not UTF-8. */
static void rand_str(char *out, size_t size)
{
    size_t target = rnd() % 4 == 0 ? 0 : (size_t)(rnd() % size);
    size_t n = 0;
    while (n < target) {
        char seq[4];
        size_t len = 1;
        uint32_t cp;
        switch (rnd() % 9) {
        case 0:
            seq[0] = (char)(1 + rnd() % 31); /* control */
            break;
        case 1:
            seq[0] = "\"\\/\x7f"[rnd() % 4];
            break;
        case 2:
            len = utf8_encode((uint32_t)(0x80 + rnd() % (0x800 - 0x80)), seq);
            break;
        case 3:
            do
                cp = (uint32_t)(0x800 + rnd() % (0x10000 - 0x800));
            while (cp >= 0xD800 && cp <= 0xDFFF);
            len = utf8_encode(cp, seq);
            break;
        case 4:
            len = utf8_encode((uint32_t)(0x10000 + rnd() % (0x110000 - 0x10000)), seq);
            break;
        case 5:
            seq[0] = (char)(0x80 + rnd() % 0x80); /* usually not UTF-8 */
            break;
        case 6:
            /* a valid sequence cut short, as truncation to a field leaves it */
            len = utf8_encode((uint32_t)(0x800 + rnd() % 0x1000), seq) - 1 - rnd() % 2;
            break;
        default:
            seq[0] = (char)(' ' + rnd() % 95);
        }
        if (n + len >= size)
            break;
        memcpy(out + n, seq, len);
        n += len;
    }
    out[n] = '\0';
}

static int64_t rand_i64(void)
{
    switch (rnd() % 8) {
    case 0:
        return INT64_MIN;
    case 1:
        return INT64_MAX;
    case 2:
        return 0;
    case 3:
        return -1 - (int64_t)(rnd() % 1000);
    case 4:
        return (int64_t)rnd();
    default:
        return (int64_t)(rnd() % 100000);
    }
}

static void rand_record(struct usage_record *r)
{
    memset(r, 0, sizeof(*r));
    rand_str(r->id, sizeof(r->id));
    /* Years 1..9999 mostly; now and then an absurd value. */
    r->ts_ms =
        rnd() % 50 == 0 ? rand_i64() : -62135596800000 + (int64_t)(rnd() % 315537897600000ULL);
    rand_str(r->tenant_id, sizeof(r->tenant_id));
    rand_str(r->payer_id, sizeof(r->payer_id));
    rand_str(r->key_id, sizeof(r->key_id));
    rand_str(r->session_id, sizeof(r->session_id));
    r->provider = provider_at(rnd() % provider_count());
    rand_str(r->line, sizeof(r->line));
    rand_str(r->endpoint, sizeof(r->endpoint));
    rand_str(r->model, sizeof(r->model));
    r->billed_byok = rnd() % 2;
    rand_str(r->connection_id, sizeof(r->connection_id));
    r->status = (int)(int32_t)rnd();
    r->outcome = (enum usage_outcome)(rnd() % 5);
    r->estimated = rnd() % 2;
    rand_str(r->fallback_reason, sizeof(r->fallback_reason));
    r->units = (struct usage_units){rand_i64(), rand_i64(), rand_i64(), rand_i64(),
                                    rand_i64(), rand_i64(), rand_i64()};
    r->cost_micros = rand_i64();
    r->charged_plan_credits_micros = rand_i64();
    r->charged_wallet_micros = rand_i64();
    rand_str(r->upstream_request_id, sizeof(r->upstream_request_id));
    r->ttfb_ms = rand_i64();
    r->duration_ms = rand_i64();
}

/* What json_dumps gives for the record, the reference. */
static char *jansson_text(const struct usage_record *r)
{
    json_t *o = usage_record_to_json(r);
    assert_non_null(o); /* even with invalid UTF-8 in the strings */
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(text);
    return text;
}

static void test_format_matches_jansson(void **state)
{
    (void)state;
    char buf[16384];
    for (int i = 0; i < 20000; i++) {
        struct usage_record r;
        rand_record(&r);
        char *want = jansson_text(&r);
        int n = usage_record_format(&r, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(want));
        if (memcmp(buf, want, (size_t)n + 1) != 0)
            fail_msg("record %d differs:\n jansson: %s\n format:  %s", i, want, buf);

        /* The timestamp is what gmtime gives (years 1..9999). */
        if (r.ts_ms >= -62135596800000 && r.ts_ms < 253402300800000) {
            time_t t = (time_t)((r.ts_ms - (((r.ts_ms % 1000) + 1000) % 1000)) / 1000);
            struct tm tm;
            assert_non_null(gmtime_r(&t, &tm));
            char ts[64];
            snprintf(ts, sizeof(ts), "\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(((r.ts_ms % 1000) + 1000) % 1000));
            assert_non_null(strstr(want, ts));
        }

        /* Every smaller buffer is refused without writing past its end
         * (exact-size heap buffers, so ASan sees an overrun). */
        if (i % 200 == 0) {
            for (size_t size = 0; size <= (size_t)n; size++) {
                char *small = malloc(size > 0 ? size : 1);
                assert_non_null(small);
                assert_int_equal(usage_record_format(&r, small, size), -1);
                free(small);
            }
            char *exact = malloc((size_t)n + 1);
            assert_non_null(exact);
            assert_int_equal(usage_record_format(&r, exact, (size_t)n + 1), n);
            assert_memory_equal(exact, want, (size_t)n + 1);
            free(exact);
        }
        free(want);
    }
}

/* Fixed cases, so the rules are visible and cannot drift with the random
 * generator: escapes, reals, and invalid UTF-8 replaced byte for byte. */
static void test_format_cases(void **state)
{
    (void)state;
    struct usage_record r;
    full_record(&r);
    char buf[8192];
    int n = usage_record_format(&r, buf, sizeof(buf));
    assert_true(n > 0);
    char *want = jansson_text(&r);
    assert_string_equal(buf, want);
    free(want);
    assert_non_null(strstr(buf, "\"audio_seconds\":1.5}"));

    static const struct {
        int64_t ms;
        const char *text;
    } reals[] = {{0, "0.0"},     {1500, "1.5"},   {100, "0.10000000000000001"},
                 {-1, "-0.001"}, {1234, "1.234"}, {INT64_MAX, "9223372036854776.0"}};
    for (size_t i = 0; i < ARRAY_SIZE(reals); i++) {
        r.units.audio_ms = reals[i].ms;
        assert_true(usage_record_format(&r, buf, sizeof(buf)) > 0);
        char key[64];
        snprintf(key, sizeof(key), "\"audio_seconds\":%s}", reals[i].text);
        if (strstr(buf, key) == NULL)
            fail_msg("audio_ms %lld: want %s in %s", (long long)reals[i].ms, key, buf);
        want = jansson_text(&r);
        assert_string_equal(buf, want);
        free(want);
    }

    static const struct {
        const char *in, *out;
    } strs[] = {
        {"gpt-4o\xe2\x82", "\"gpt-4o??\""}, /* cut mid-character */
        {"a\xffZ", "\"a?Z\""},              /* not UTF-8 at all */
        {"\xed\xa0\x80", "\"???\""},        /* surrogate */
        {"\xc0\xaf", "\"??\""},             /* overlong '/' */
        {"\xf4\x90\x80\x80", "\"????\""},   /* above U+10FFFF */
        {"\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xe2\x82\xac\xf0\x9f\x98\x80\""}, /* kept */
        {"q\"b\\s/\x7f", "\"q\\\"b\\\\s/\x7f\""},
        {"\x01\x1f\b\f\n\r\t", "\"\\u0001\\u001F\\b\\f\\n\\r\\t\""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        full_record(&r);
        snprintf(r.model, sizeof(r.model), "%s", strs[i].in);
        assert_true(usage_record_format(&r, buf, sizeof(buf)) > 0);
        char key[64];
        snprintf(key, sizeof(key), "\"model\":%s,", strs[i].out);
        if (strstr(buf, key) == NULL)
            fail_msg("model case %zu: want %s in %s", i, key, buf);
        want = jansson_text(&r);
        assert_string_equal(buf, want);
        free(want);
    }

    /* A replaced string keeps its length, so it reads back into its field. */
    full_record(&r);
    memset(r.model, 'm', sizeof(r.model) - 3);
    memcpy(r.model + sizeof(r.model) - 3, "\xe2\x82", 3);
    json_t *o = usage_record_to_json(&r);
    assert_non_null(o);
    struct usage_record back;
    assert_int_equal(usage_record_from_json(o, &back), 0);
    json_decref(o);
    assert_int_equal(strlen(back.model), sizeof(r.model) - 1);
    assert_memory_equal(back.model + sizeof(r.model) - 3, "??", 3);
}

/* ---- writer -------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char backend[16];
    char store_path[128];
    char jsonl_path[128];
    char spool_dir[128];
    struct config cfg;
    struct store *s; /* the test's own handle */
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-usage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->backend, sizeof(f->backend), "sqlite");
    snprintf(f->store_path, sizeof(f->store_path), "%s/byok.db", f->dir);
    snprintf(f->jsonl_path, sizeof(f->jsonl_path), "%s/logs/usage.jsonl", f->dir);
    snprintf(f->spool_dir, sizeof(f->spool_dir), "%s/spool", f->dir);
    /* Built by hand: only the fields the writer reads. */
    f->cfg.store_backend = f->backend;
    f->cfg.store_path = f->store_path;
    f->cfg.usage_jsonl_path = f->jsonl_path;
    f->cfg.usage_spool_dir = f->spool_dir;
    char *err = NULL;
    f->s = store_open(&f->cfg, &err);
    if (f->s == NULL)
        fail_msg("store_open: %s", err);
    struct store_tenant t = {.id = "payer", .name = "Payer", .wallet_micros = 1000000};
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    usage_writer_stop(); /* no-op when a test already stopped it */
    store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start_writer(struct fixture *f)
{
    char *err = NULL;
    if (usage_writer_start(&f->cfg, &err) == -1)
        fail_msg("usage_writer_start: %s", err);
}

static struct usage_record wallet_record(const char *id)
{
    struct usage_record r;
    full_record(&r);
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.tenant_id, sizeof(r.tenant_id), "payer");
    snprintf(r.payer_id, sizeof(r.payer_id), "payer");
    r.billed_byok = false;
    r.cost_micros = 1;
    r.charged_plan_credits_micros = r.charged_wallet_micros = 0;
    return r;
}

/* A spool line keeps the fleet hold a record releases (never a §5 line):
 * written with it, read back with it; without one, the line is the §5
 * line exactly. */
static void test_spool_line_hold_id(void **state)
{
    (void)state;
    struct usage_record r = wallet_record("01JSPOOLHOLD00000000000000");
    struct usage_record_lines plain = {0}, spool = {0};
    assert_true(usage_record_lines_add(&plain, &r) > 0);
    assert_true(usage_record_lines_add_spool(&spool, &r) > 0);
    assert_int_equal(plain.len, spool.len);
    assert_memory_equal(plain.data, spool.data, plain.len);
    snprintf(r.hold_id, sizeof(r.hold_id), "01JHOLD0000000000000000000");
    plain.len = spool.len = 0;
    assert_true(usage_record_lines_add(&plain, &r) > 0);
    for (int i = 0; i < 40; i++) /* the buffer grows as lines are added */
        assert_true(usage_record_lines_add_spool(&spool, &r) > 0);
    assert_null(memmem(plain.data, plain.len, "hold_id", 7));
    const char *first_nl = memchr(spool.data, '\n', spool.len);
    assert_non_null(first_nl);
    json_error_t jerr;
    json_t *obj = json_loadb(spool.data, (size_t)(first_nl - spool.data), 0, &jerr);
    assert_non_null(obj);
    struct usage_record back;
    char why[128];
    assert_int_equal(usage_record_parse(obj, &back, why, sizeof(why)), 0);
    assert_string_equal(back.hold_id, "01JHOLD0000000000000000000");
    assert_string_equal(back.id, r.id);
    json_decref(obj);
    assert_int_equal(spool.data[spool.len - 1], '\n');
    usage_record_lines_free(&plain);
    usage_record_lines_free(&spool);
}

/* A simulated line under simulate.charge false: its §5 line says
 * "simulated" only; its spool line also says "no_charge" (with or without a
 * hold), read back as such; a spool line cannot make a real record free. */
static void test_spool_line_no_charge(void **state)
{
    (void)state;
    struct usage_record r = wallet_record("01JSPOOLFREE00000000000000");
    r.simulated = true;
    r.no_charge = true;
    struct usage_record_lines plain = {0}, spool = {0};
    assert_true(usage_record_lines_add(&plain, &r) > 0);
    assert_non_null(memmem(plain.data, plain.len, "\"simulated\":true", 16));
    assert_null(memmem(plain.data, plain.len, "no_charge", 9));
    for (int with_hold = 0; with_hold < 2; with_hold++) {
        if (with_hold)
            snprintf(r.hold_id, sizeof(r.hold_id), "01JHOLD0000000000000000000");
        spool.len = 0;
        assert_true(usage_record_lines_add_spool(&spool, &r) > 0);
        assert_int_equal(spool.data[spool.len - 1], '\n');
        json_error_t jerr;
        json_t *obj = json_loadb(spool.data, spool.len - 1, 0, &jerr);
        assert_non_null(obj);
        struct usage_record back;
        char why[128];
        assert_int_equal(usage_record_parse(obj, &back, why, sizeof(why)), 0);
        assert_true(back.simulated);
        assert_true(back.no_charge);
        assert_string_equal(back.hold_id, with_hold ? "01JHOLD0000000000000000000" : "");
        /* The same line claiming a real upstream: refused, never free. */
        json_object_del(obj, "simulated");
        assert_int_equal(usage_record_parse(obj, &back, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "no_charge"));
        json_decref(obj);
    }
    usage_record_lines_free(&plain);
    usage_record_lines_free(&spool);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Number of JSONL lines; fails the test if an id appears twice or a line
 * is not a complete record. */
static size_t jsonl_count_unique(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    char **ids = NULL;
    size_t n = 0, cap = 0, line_cap = 0;
    char *line = NULL;
    while (getline(&line, &line_cap, fp) != -1) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        struct usage_record r;
        assert_int_equal(usage_record_from_json(o, &r), 0);
        json_decref(o);
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            ids = realloc(ids, cap * sizeof(*ids));
            assert_non_null(ids);
        }
        ids[n++] = strdup(r.id);
    }
    free(line);
    fclose(fp);
    if (n > 0) /* the writer creates the file at start: it may be empty */
        qsort(ids, n, sizeof(*ids), cmp_str);
    for (size_t i = 1; i < n; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return n;
}

static size_t db_count(struct fixture *f)
{
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static int64_t payer_wallet(struct fixture *f)
{
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->s, "payer", &t), STORE_OK);
    return t.wallet_micros;
}

static size_t spool_files(struct fixture *f)
{
    DIR *d = opendir(f->spool_dir);
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".jsonl") != NULL;
    closedir(d);
    return n;
}

struct submit_arg {
    int which, count;
};

static void *submit_thread(void *p)
{
    struct submit_arg *a = p;
    for (int i = 0; i < a->count; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "r-%d-%05d", a->which, i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
    return NULL;
}

#define PER_THREAD 700

static void test_writer_end_to_end(void **state)
{
    struct fixture *f = *state;
    struct usage_stats before, after;
    usage_writer_stats(&before);
    start_writer(f);
    usage_writer_sync(); /* nothing pending: returns at once */

    pthread_t th[2];
    struct submit_arg args[2] = {{0, PER_THREAD}, {1, PER_THREAD}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, submit_thread, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    usage_writer_sync();

    const size_t n = 2 * PER_THREAD;
    assert_int_equal(db_count(f), n);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n);
    assert_int_equal(payer_wallet(f), 1000000 - (int64_t)n);
    usage_writer_stats(&after);
    assert_int_equal(after.submitted - before.submitted, n);
    assert_int_equal(after.written - before.written, n);
    assert_int_equal(after.spooled - before.spooled, 0);
    /* Group commit: far fewer transactions than records. */
    assert_true(after.batches - before.batches >= n / 256);
    assert_true(after.batches - before.batches < n);

    /* A record submitted again is neither charged nor logged twice. */
    struct usage_record again = wallet_record("r-0-00000");
    usage_submit(&again);
    usage_writer_sync();
    usage_writer_stats(&after);
    assert_int_equal(after.duplicates - before.duplicates, 1);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n);
    assert_int_equal(payer_wallet(f), 1000000 - (int64_t)n);

    /* Records queued right before stop are written by the final batch. */
    for (int i = 0; i < 10; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "last-%d", i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
    usage_writer_stop();
    assert_int_equal(db_count(f), n + 10);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n + 10);

    /* The JSONL line is the final record: charged amounts filled in. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 1, &arr), STORE_OK);
    json_t *charged = json_object_get(json_array_get(arr, 0), "charged");
    assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")), 1);
    json_decref(arr);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

#define BREAK_STORE                                                                                \
    "CREATE TRIGGER store_down BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'down'); END;"
#define FIX_STORE "DROP TRIGGER store_down"

static void submit_range(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "%s-%03d", prefix, i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
}

/* Waits (bounded) until the writer reports at least `want` replayed
 * records since `base`. */
static void wait_replayed(uint64_t base, uint64_t want)
{
    int64_t deadline = mono_ms() + 15000;
    struct usage_stats st;
    for (;;) {
        usage_writer_stats(&st);
        if (st.replayed - base >= want)
            return;
        if (mono_ms() > deadline)
            fail_msg("replay did not happen: %llu of %llu",
                     (unsigned long long)(st.replayed - base), (unsigned long long)want);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_writer_spool_and_replay(void **state)
{
    struct fixture *f = *state;
    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);

    /* Store fails: records land in the spool, synced to disk. */
    exec_sql(f->store_path, BREAK_STORE);
    submit_range("a", 40);
    usage_writer_sync();
    usage_writer_stats(&st);
    assert_int_equal(st.spooled - base.spooled, 40);
    assert_int_equal(db_count(f), 0);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 0);
    assert_true(spool_files(f) >= 1);
    assert_int_equal(payer_wallet(f), 1000000);

    /* Store back: the writer replays on its own, once. */
    exec_sql(f->store_path, FIX_STORE);
    wait_replayed(base.replayed, 40);
    usage_writer_sync();
    assert_int_equal(db_count(f), 40);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 40);
    assert_int_equal(spool_files(f), 0);
    assert_int_equal(payer_wallet(f), 1000000 - 40);

    /* Down again across a restart: the final attempt at stop fails too, the
     * spool survives, and the next start replays it before returning. */
    exec_sql(f->store_path, BREAK_STORE);
    submit_range("b", 25);
    usage_writer_sync();
    usage_writer_stop();
    assert_true(spool_files(f) >= 1);
    assert_int_equal(db_count(f), 40);
    exec_sql(f->store_path, FIX_STORE);
    start_writer(f);
    assert_int_equal(db_count(f), 65);
    assert_int_equal(spool_files(f), 0);
    usage_writer_stop();

    assert_int_equal(jsonl_count_unique(f->jsonl_path), 65);
    assert_int_equal(payer_wallet(f), 1000000 - 65);
    usage_writer_stats(&st);
    assert_int_equal(st.replayed - base.replayed, 65);
    assert_int_equal(st.spooled - base.spooled, 65);
}

/* A spool file whose records were already committed (crash between commit
 * and unlink) is replayed as duplicates: nothing charged or logged twice. */
static void test_writer_replay_idempotent(void **state)
{
    struct fixture *f = *state;
    struct usage_record recs[3] = {wallet_record("d-1"), wallet_record("d-2"),
                                   wallet_record("d-3")};
    assert_int_equal(store_usage_write(f->s, recs, 2, NULL, NULL), STORE_OK);
    assert_int_equal(payer_wallet(f), 1000000 - 2);

    assert_int_equal(mkdir(f->spool_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/usage-0000000000000001-00000001-00000000.jsonl", f->spool_dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 3; i++) {
        json_t *o = usage_record_to_json(&recs[i]);
        char *text = json_dumps(o, JSON_COMPACT);
        fprintf(fp, "%s\n", text);
        free(text);
        json_decref(o);
    }
    fclose(fp);

    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);
    usage_writer_stats(&st);
    assert_int_equal(st.duplicates - base.duplicates, 2);
    assert_int_equal(st.replayed - base.replayed, 1);
    assert_int_equal(spool_files(f), 0);
    assert_int_equal(db_count(f), 3);
    assert_int_equal(payer_wallet(f), 1000000 - 3);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 1); /* only d-3 is new */
    usage_writer_stop();
}

/* simulate.charge false: a simulated wallet line is written priced and
 * uncharged, through the store and through the spool; a simulated line
 * under simulate.charge true (no_charge false) charges like any other. */
static void test_writer_no_charge(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    struct usage_record r = wallet_record("sim-free-1");
    r.simulated = r.no_charge = true;
    r.cost_micros = 7;
    usage_submit(&r);
    usage_writer_sync();
    assert_int_equal(payer_wallet(f), 1000000);
    /* Spooled and replayed: still free. */
    exec_sql(f->store_path, BREAK_STORE);
    r = wallet_record("sim-free-2");
    r.simulated = r.no_charge = true;
    r.cost_micros = 7;
    usage_submit(&r);
    usage_writer_sync();
    assert_true(spool_files(f) >= 1);
    usage_writer_stop();
    exec_sql(f->store_path, FIX_STORE);
    start_writer(f);
    assert_int_equal(spool_files(f), 0);
    assert_int_equal(db_count(f), 2);
    assert_int_equal(payer_wallet(f), 1000000);
    r = wallet_record("sim-charged");
    r.simulated = true;
    r.cost_micros = 7;
    usage_submit(&r);
    usage_writer_stop();
    assert_int_equal(payer_wallet(f), 1000000 - 7);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 3);
    size_t i;
    json_t *rec;
    json_array_foreach(arr, i, rec)
    {
        const char *id = json_string_value(json_object_get(rec, "id"));
        json_t *charged = json_object_get(rec, "charged");
        assert_true(json_is_true(json_object_get(rec, "simulated")));
        assert_null(json_object_get(rec, "no_charge"));
        assert_int_equal(json_integer_value(json_object_get(rec, "cost_micros")), 7);
        assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")),
                         strcmp(id, "sim-charged") == 0 ? 7 : 0);
    }
    json_decref(arr);
}

/* A record whose strings are not valid UTF-8 is written like any other
 * (jansson refusing it used to fail the whole batch, store and spool). */
static void test_writer_invalid_utf8(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    struct usage_record r = wallet_record("utf8-1");
    snprintf(r.model, sizeof(r.model), "gpt-4o\xe2\x82");
    snprintf(r.session_id, sizeof(r.session_id), "s\xff");
    usage_submit(&r);
    usage_writer_sync();
    assert_int_equal(db_count(f), 1);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 1);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 1, &arr), STORE_OK);
    json_t *rec = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(rec, "model")), "gpt-4o??");
    assert_string_equal(json_string_value(json_object_get(rec, "session_id")), "s?");
    json_decref(arr);
    usage_writer_stop();
}

static size_t file_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

/* logrotate either truncates the file in place (copytruncate) or renames it
 * away; both keep every line, none twice, and renaming gets a new file. */
static void test_writer_jsonl_rotation(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    submit_range("pre", 5);
    usage_writer_sync();
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 5);

    /* copytruncate: the next lines start the emptied file, no hole. */
    assert_int_equal(truncate(f->jsonl_path, 0), 0);
    submit_range("trunc", 3);
    usage_writer_sync();
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 3);

    /* rename: lines may go to the old file until the writer notices (at
     * most once per second), then to a new file at the path. */
    char old[256];
    snprintf(old, sizeof(old), "%s.1", f->jsonl_path);
    assert_int_equal(rename(f->jsonl_path, old), 0);
    int64_t deadline = mono_ms() + 15000;
    int sent = 0;
    while (file_lines(f->jsonl_path) == 0) {
        if (mono_ms() > deadline)
            fail_msg("the JSONL file was not reopened after a rename");
        char id[ID_MAX];
        snprintf(id, sizeof(id), "rot-%d", sent++);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
        usage_writer_sync();
    }
    usage_writer_stop();
    assert_int_equal(jsonl_count_unique(old) + jsonl_count_unique(f->jsonl_path), 3 + sent);
    assert_int_equal(db_count(f), 8 + sent);
}

static void test_writer_thread_name(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !found) {
        char path[300], comm[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *fp = fopen(path, "r");
        if (fp == NULL)
            continue;
        found = fgets(comm, sizeof(comm), fp) != NULL && strcmp(comm, "usage-writer\n") == 0;
        fclose(fp);
    }
    closedir(d);
    usage_writer_stop();
    assert_true(found);
}

/* Each JSONL line is the very text the store row holds (formatted once,
 * after charging), and a duplicate gets neither a charge nor a line. */
static void test_writer_jsonl_is_stored_text(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    struct usage_record recs[3] = {wallet_record("same-1"), wallet_record("same-2"),
                                   wallet_record("same-1")};
    for (size_t i = 0; i < 3; i++) {
        usage_submit(&recs[i]);
        usage_writer_sync(); /* the duplicate in a batch of its own */
    }
    usage_writer_stop();
    assert_int_equal(db_count(f), 2);
    assert_int_equal(payer_wallet(f), 1000000 - 2);

    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->store_path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT record FROM usage WHERE id = ?1", -1, &st, NULL), SQLITE_OK);
    FILE *fp = fopen(f->jsonl_path, "r");
    assert_non_null(fp);
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) != -1) {
        assert_true(len > 1 && line[len - 1] == '\n');
        line[len - 1] = '\0';
        const char *want_id = n == 0 ? "same-1" : "same-2";
        char id_member[64];
        snprintf(id_member, sizeof(id_member), "{\"id\":\"%s\",", want_id);
        assert_true(strncmp(line, id_member, strlen(id_member)) == 0);
        sqlite3_bind_text(st, 1, want_id, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal(line, (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        assert_non_null(
            strstr(line, "\"charged\":{\"plan_credits_micros\":0,\"wallet_micros\":1}"));
        n++;
    }
    assert_int_equal(n, 2);
    free(line);
    fclose(fp);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
/* ---- JSONL sync and repair ----------------------------------------------- */

static char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (cap - *len < 65536) {
            cap = cap * 2 + 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + *len, 1, cap - *len, fp);
        *len += got;
        if (got == 0)
            break;
    }
    assert_false(ferror(fp));
    fclose(fp);
    return buf;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* The ids of the JSONL file's lines, in file order, one per line. */
static char *file_ids(const char *path)
{
    size_t len;
    char *text = read_all(path, &len);
    char *out = malloc(len + 1);
    assert_non_null(out);
    size_t at = 0, o = 0;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        assert_non_null(nl);
        json_error_t jerr;
        json_t *obj = json_loadb(text + at, (size_t)(nl - (text + at)), 0, &jerr);
        assert_non_null(obj);
        const char *id = json_string_value(json_object_get(obj, "id"));
        assert_non_null(id);
        o += (size_t)sprintf(out + o, "%s\n", id);
        json_decref(obj);
        at = (size_t)(nl - text) + 1;
    }
    out[o] = '\0';
    free(text);
    return out;
}

/* The ids the store holds, in commit order (rowid order), one per line. */
static char *db_ids(struct fixture *f)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->store_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM usage ORDER BY rowid", -1, &st, NULL),
                     SQLITE_OK);
    size_t cap = 4096, o = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (cap - o < strlen(id) + 2) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        o += (size_t)sprintf(out + o, "%s\n", id);
    }
    out[o] = '\0';
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Offset of the start of line `line` (0-based) of text. */
static size_t line_start(const char *text, size_t len, size_t line)
{
    size_t at = 0;
    for (size_t i = 0; i < line; i++) {
        const char *nl = memchr(text + at, '\n', len - at);
        assert_non_null(nl);
        at = (size_t)(nl - text) + 1;
    }
    return at;
}

#define REPAIR_RECORDS 2600 /* more than two of the repair's pages (1000) */

/* A JSONL file that lost its last lines (a power loss within the sync
 * second, a kill -9 between the commit and the write, a torn write, or a
 * kill -9 during an earlier repair) gets them back from the store at the
 * next start: the same bytes, every record once, in commit order; a second
 * start changes nothing. */
static void test_writer_jsonl_repair(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    submit_range("rep", REPAIR_RECORDS);
    usage_writer_sync();
    usage_writer_stop();
    size_t full_len;
    char *full = read_all(f->jsonl_path, &full_len);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), REPAIR_RECORDS);
    char *want_ids = db_ids(f);
    char *got_ids = file_ids(f->jsonl_path);
    assert_string_equal(got_ids, want_ids); /* the writer appends in commit order */
    free(got_ids);

    /* Lines cut from the end, and whether half of the line before them is
     * left (a torn write). */
    static const struct {
        size_t lines;
        bool half;
    } cuts[] = {
        {1300, true},               /* two pages and a bit, torn */
        {1, false},                 /* one whole line */
        {0, true},                  /* only the last line torn */
        {REPAIR_RECORDS - 2, true}, /* one whole line left */
        {0, false},                 /* nothing lost: nothing to do */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cuts); i++) {
        size_t keep_lines = REPAIR_RECORDS - cuts[i].lines;
        size_t cut = line_start(full, full_len, keep_lines);
        if (cuts[i].half) {
            size_t prev = line_start(full, full_len, keep_lines - 1);
            cut = prev + (cut - prev) / 2;
        }
        assert_int_equal(truncate(f->jsonl_path, (off_t)cut), 0);
        start_writer(f);
        usage_writer_stop();
        size_t len;
        char *text = read_all(f->jsonl_path, &len);
        assert_int_equal(len, full_len);
        assert_memory_equal(text, full, full_len);
        free(text);
        assert_int_equal(jsonl_count_unique(f->jsonl_path), REPAIR_RECORDS);
        got_ids = file_ids(f->jsonl_path);
        assert_string_equal(got_ids, want_ids);
        free(got_ids);
    }
    /* Started again on a whole file: nothing added. */
    start_writer(f);
    usage_writer_stop();
    size_t len;
    char *text = read_all(f->jsonl_path, &len);
    assert_int_equal(len, full_len);
    free(text);
    free(want_ids);
    free(full);
}

/* store_usage_after() pages through the records after an id in commit
 * order, each line the stored text and '\n'; an unknown id is NOT_FOUND. */
static void test_store_usage_after(void **state)
{
    struct fixture *f = *state;
    struct usage_record recs[5];
    for (int i = 0; i < 5; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "z-%d", 4 - i); /* commit order is not id order */
        recs[i] = wallet_record(id);
    }
    struct usage_record_lines written = {0}, got = {0};
    assert_int_equal(store_usage_write(f->s, recs, 5, NULL, &written), STORE_OK);
    size_t at[6] = {0}; /* where each written line starts */
    for (int i = 0, k = 1; k < 6; i++)
        if (written.data[i] == '\n')
            at[k++] = (size_t)i + 1;

    char last[ID_MAX] = "unchanged";
    size_t n = 99;
    assert_int_equal(store_usage_after(f->s, "z-4", 2, &got, &n, last), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(last, "z-2");
    assert_int_equal(got.len, at[3] - at[1]);
    assert_memory_equal(got.data, written.data + at[1], got.len);
    assert_int_equal(store_usage_after(f->s, last, 2, &got, &n, last), STORE_OK); /* appends */
    assert_int_equal(n, 2);
    assert_string_equal(last, "z-0");
    assert_int_equal(got.len, at[5] - at[1]);
    assert_memory_equal(got.data, written.data + at[1], got.len);
    assert_int_equal(store_usage_after(f->s, "z-0", 2, &got, &n, last), STORE_OK);
    assert_int_equal(n, 0);
    assert_string_equal(last, "z-0");
    assert_int_equal(got.len, at[5] - at[1]);
    n = 99;
    assert_int_equal(store_usage_after(f->s, "nope", 2, &got, &n, last), STORE_ERR_NOT_FOUND);
    assert_int_equal(n, 0);
    assert_int_equal(got.len, at[5] - at[1]);
    usage_record_lines_free(&written);
    usage_record_lines_free(&got);
}

/* Puts three records in the store behind the writer's back, makes the
 * JSONL file hold `content`, and starts the writer: the file must be left
 * as it was, and the writer must run (a new record is appended). */
static void check_no_repair(struct fixture *f, const char *content)
{
    struct usage_record recs[3] = {wallet_record("st-1"), wallet_record("st-2"),
                                   wallet_record("st-3")};
    assert_int_equal(store_usage_write(f->s, recs, 3, NULL, NULL), STORE_OK);
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/logs", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(f->jsonl_path, content, strlen(content));

    start_writer(f);
    size_t len;
    char *text = read_all(f->jsonl_path, &len);
    assert_int_equal(len, strlen(content));
    assert_memory_equal(text, content, len);
    free(text);

    struct usage_record r = wallet_record("after-1");
    usage_submit(&r);
    usage_writer_sync();
    usage_writer_stop();
    text = read_all(f->jsonl_path, &len);
    assert_true(len > strlen(content));
    assert_memory_equal(text, content, strlen(content));
    assert_memory_equal(text + strlen(content), "{\"id\":\"after-1\",", 16);
    assert_int_equal(text[len - 1], '\n');
    assert_non_null(memchr(text + strlen(content), '\n', len - strlen(content)));
    assert_ptr_equal(memchr(text + strlen(content), '\n', len - strlen(content)),
                     text + len - 1); /* one line */
    free(text);
}

/* A last line the store does not know (a rotated file holding someone
 * else's record), or one that is not a record at all: no repair. */
static void test_writer_jsonl_repair_foreign(void **state)
{
    struct fixture *f = *state;
    struct usage_record foreign = wallet_record("foreign-1");
    struct usage_record_lines line = {0};
    assert_true(usage_record_lines_add(&line, &foreign) > 0);
    char *content = strndup(line.data, line.len);
    assert_non_null(content);
    usage_record_lines_free(&line);
    check_no_repair(f, content);
    free(content);
}

static void test_writer_jsonl_repair_unreadable(void **state)
{
    struct fixture *f = *state;
    check_no_repair(f, "not a record\n");
}

/* An empty file is not the place to dump the whole history. */
static void test_writer_jsonl_repair_empty(void **state)
{
    struct fixture *f = *state;
    check_no_repair(f, "");
}

/* Waits (bounded) until the writer reports more JSONL syncs than base;
 * returns how long that took from `since` (mono ms). */
static int64_t wait_jsonl_sync(uint64_t base, int64_t since)
{
    int64_t deadline = mono_ms() + 10000;
    struct usage_stats st;
    for (;;) {
        usage_writer_stats(&st);
        if (st.jsonl_syncs > base)
            return mono_ms() - since;
        if (mono_ms() > deadline)
            fail_msg("the JSONL file was not synced within 10 s");
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* A batch's lines are in the file (for any reader) as soon as the batch is
 * committed; the fdatasync follows about a second later, without another
 * record to prompt it. */
static void test_writer_jsonl_sync_periodic(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    struct usage_stats base, st;
    usage_writer_stats(&base);
    int64_t t0 = mono_ms();
    struct usage_record r = wallet_record("lone-1");
    usage_submit(&r);
    usage_writer_sync();
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 1);
    usage_writer_stats(&st);
    if (mono_ms() - t0 < 1000) /* JSONL_SYNC_MS: not yet due */
        assert_int_equal(st.jsonl_syncs, base.jsonl_syncs);
    int64_t took = wait_jsonl_sync(base.jsonl_syncs, t0);
    assert_true(took >= 1000); /* not before the second was up */
    usage_writer_stats(&st);
    assert_int_equal(st.jsonl_syncs - base.jsonl_syncs, 1);

    /* Busy: many batches, a sync a second at most. */
    usage_writer_stats(&base);
    t0 = mono_ms();
    int i = 0;
    while (mono_ms() - t0 < 1500) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "busy-%05d", i++);
        struct usage_record b = wallet_record(id);
        usage_submit(&b);
        usage_writer_sync(); /* a batch each */
    }
    int64_t elapsed = mono_ms() - t0;
    usage_writer_stats(&st);
    assert_true(st.batches - base.batches >= 10); /* far more batches than syncs */
    assert_true(st.jsonl_syncs - base.jsonl_syncs <= (uint64_t)(elapsed / 1000 + 1));
    usage_writer_stop();
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 1 + (size_t)i);
}

/* A clean stop syncs what the last batches wrote. */
static void test_writer_jsonl_sync_at_stop(void **state)
{
    struct fixture *f = *state;
    start_writer(f);
    struct usage_stats base, st;
    usage_writer_stats(&base);
    submit_range("stop", 3);
    usage_writer_sync();
    usage_writer_stop();
    usage_writer_stats(&st);
    assert_true(st.jsonl_syncs > base.jsonl_syncs);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 3);
}

static size_t rejected_lines(struct fixture *f, char ***out)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/rejected", f->spool_dir);
    FILE *fp = fopen(path, "r");
    *out = NULL;
    if (fp == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) != -1) {
        assert_true(len > 0 && line[len - 1] == '\n');
        line[len - 1] = '\0';
        *out = realloc(*out, (n + 1) * sizeof(**out));
        assert_non_null(*out);
        (*out)[n++] = strdup(line);
    }
    free(line);
    fclose(fp);
    return n;
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* A live record with an impossible amount is neither stored nor charged:
 * it goes to the rejected file, the rest of its batch goes on. */
static void test_writer_refuses_invalid(void **state)
{
    struct fixture *f = *state;
    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);
    struct usage_record recs[4] = {wallet_record("live-ok-1"), wallet_record("live-neg"),
                                   wallet_record("live-huge"), wallet_record("live-ok-2")};
    recs[1].cost_micros = -5000;
    recs[2].cost_micros = USAGE_AMOUNT_MAX + 1;
    for (size_t i = 0; i < ARRAY_SIZE(recs); i++)
        usage_submit(&recs[i]);
    usage_writer_sync();
    usage_writer_stop();
    assert_int_equal(db_count(f), 2);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 2);
    assert_int_equal(payer_wallet(f), 1000000 - 2);
    usage_writer_stats(&st);
    assert_int_equal(st.rejected - base.rejected, 2);
    char **lines;
    size_t n = rejected_lines(f, &lines);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lines[0], "\"id\":\"live-neg\""));
    assert_non_null(strstr(lines[0], "\"cost_micros\":-5000"));
    assert_non_null(strstr(lines[1], "\"id\":\"live-huge\""));
    free_lines(lines, n);
}

/* A spool file with refused lines: the rest is replayed, the refused lines
 * are set aside as they were (once, even though the first replay attempts
 * failed), never charged, and the file is done with. */
static void test_writer_spool_refuses_invalid(void **state)
{
    struct fixture *f = *state;
    struct usage_record ok = wallet_record("sp-ok");
    json_t *o = usage_record_to_json(&ok);
    char *ok_text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    const char *bad[] = {
        "{\"id\":\"sp-neg\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"payer\","
        "\"payer_id\":\"payer\",\"provider\":\"openai\",\"billed_to\":\"wallet\","
        "\"cost_micros\":-5000}",
        "{\"id\":\"sp-huge\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"payer\","
        "\"payer_id\":\"payer\",\"provider\":\"openai\",\"billed_to\":\"wallet\","
        "\"cost_micros\":10000000000000}",
        "{\"id\":\"sp-credit\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"payer\","
        "\"payer_id\":\"payer\",\"provider\":\"openai\",\"billed_to\":\"credit\","
        "\"cost_micros\":1}",
        ("{\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"payer\",\"payer_id\":\"payer\","
         "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"cost_micros\":1}"),
        "{\"id\":\"sp-torn\",\"ts\":\"2026-1",
    };
    assert_int_equal(mkdir(f->spool_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/usage-0000000000000001-00000001-00000000.jsonl", f->spool_dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", bad[0]);
    fprintf(fp, "%s\n", ok_text);
    for (size_t i = 1; i < ARRAY_SIZE(bad); i++)
        fprintf(fp, "%s\n", bad[i]);
    fclose(fp);
    free(ok_text);

    /* The store is down at start: the replay waits, nothing is set aside
     * yet. */
    exec_sql(f->store_path, BREAK_STORE);
    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);
    char **lines;
    assert_int_equal(rejected_lines(f, &lines), 0);
    assert_int_equal(spool_files(f), 1);
    exec_sql(f->store_path, FIX_STORE);
    wait_replayed(base.replayed, 1);
    usage_writer_stop();

    assert_int_equal(db_count(f), 1);
    assert_int_equal(payer_wallet(f), 1000000 - 1);
    assert_int_equal(spool_files(f), 0); /* no .bad either: the file is done with */
    size_t n = rejected_lines(f, &lines);
    assert_int_equal(n, ARRAY_SIZE(bad));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(lines[i], bad[i]);
    free_lines(lines, n);
    usage_writer_stats(&st);
    assert_int_equal(st.rejected - base.rejected, ARRAY_SIZE(bad));
}

static void test_writer_start_fails(void **state)
{
    struct fixture *f = *state;
    struct config cfg = f->cfg;
    char backend[16];
    snprintf(backend, sizeof(backend), "redis");
    cfg.store_backend = backend;
    char *err = NULL;
    assert_int_equal(usage_writer_start(&cfg, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "redis"));
    free(err);
    usage_writer_sync(); /* not running: must not block */
    /* A failed start leaves the writer startable. */
    start_writer(f);
    usage_writer_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_spool_line_hold_id),
        cmocka_unit_test(test_spool_line_no_charge),
        cmocka_unit_test(test_json_from_tolerant_and_strict),
        cmocka_unit_test(test_record_check),
        cmocka_unit_test(test_format_matches_jansson),
        cmocka_unit_test(test_format_cases),
        cmocka_unit_test_setup_teardown(test_writer_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_thread_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_spool_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_replay_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_no_charge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_is_stored_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_usage_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_repair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_repair_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_repair_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_repair_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_sync_periodic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_jsonl_sync_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_refuses_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_spool_refuses_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_start_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
