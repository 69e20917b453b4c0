/* test_jscan.c - unit tests of the allocation-free JSON reader (jscan.h)
 * against jansson: what it is sure of jansson parses to the same values
 * (hand-written texts, 20,000 generated ones and their mutants); what it is
 * unsure of is either invalid for jansson too or past a stated limit; and
 * the OpenAI chat and responses and the Anthropic meters read the same
 * request, reply and stream events whether they take the scanner's path or
 * jansson's. */
#include "common.h"

#include "jscan.h"
#include "jscan_test.h"
#include "meter_test.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int compare_str(const char *s)
{
    return jscan_test_compare(s, strlen(s), false);
}

/* --- texts it is sure of --------------------------------------------------- */

static void test_sure(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        /* Duplicates: the last one is the value. */
        "{\"model\":\"a\",\"model\":\"b\",\"x\":{\"k\":1,\"k\":[2]}}",
        /* Escapes and UTF-8 in values. */
        "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"}",
        "{\"s\":\"\\u00e9\\u20AC\\ud83d\\ude00 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
        "{\"s\":\"\\u0001\\u001f\\u007f\\uFFFF\\uDBFF\\uDFFF\"}",
        "{\"s\":\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\xe0\xa0\x80\xf0\x90\x80\x80\"}",
        /* Numbers of every form within the limits. */
        ("[0,-0,1,-1,123456789012345678,-123456789012345678,0.5,-0.0,1e5,1E+5,1e-5,2.5e99,"
         "1.7976931348623157e30,0.000000000000000000000000000001]"),
        "[true,false,null,[[[]]],{\"a\":{\"b\":{\"c\":{}}}}]",
        /* Keys: empty, with UTF-8, with a slash. */
        "{\"\":1,\"\xc3\xa9\":2,\"a/b\":3}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
        int rc = compare_str(texts[i]);
        if (rc != 1)
            fail_msg("case %zu: %s (%d)", i, texts[i], rc);
    }
    /* The last duplicate wins; a member of a nested object is not the
     * outer object's. */
    struct jspan root;
    const char *t = "{\"m\":\"first\",\"o\":{\"m\":\"inner\"},\"m\":\"last\"}";
    assert_true(jscan_check(t, strlen(t), &root));
    struct jspan m = jscan_get(root, "m");
    assert_int_equal(m.len, 6);
    assert_memory_equal(m.p, "\"last\"", 6);
    assert_null(jscan_get(root, "x").p);
    assert_null(jscan_get(jscan_get(root, "m"), "m").p); /* not an object */
    /* A long key (the fuzzer's find: the comparison once cut keys at 255
     * bytes) and a long string. */
    char long_key[1024];
    int n = snprintf(long_key, sizeof(long_key), "{\"%0300d\":1,\"s\":\"%0300d\",\"%0300d\":2}", 7,
                     8, 7);
    assert_true(n > 0 && (size_t)n < sizeof(long_key));
    assert_int_equal(compare_str(long_key), 1);
    /* Exactly 64 levels are read; one more is not. */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    assert_int_equal(compare_str(deep), 1);
}

/* --- texts it is unsure of ------------------------------------------------- */

/* t is not taken by the scanner; jansson parses it (a limit case) or
 * refuses it too (an invalid one). */
static void assert_unsure(const char *t, bool jansson_parses, size_t i)
{
    const char *kind = jansson_parses ? "limit" : "invalid";
    struct jspan v;
    if (jscan_check(t, strlen(t), &v))
        fail_msg("%s case %zu taken: %s", kind, i, t);
    json_t *j = json_loadb(t, strlen(t), 0, NULL);
    if ((j != NULL) != jansson_parses)
        fail_msg("%s case %zu: jansson %s it: %s", kind, i, j != NULL ? "parses" : "refuses", t);
    json_decref(j);
}

static void test_unsure(void **state)
{
    (void)state;
    /* Invalid JSON: jansson refuses each as well. */
    static const char *const invalid[] = {
        "",
        "   ",
        "\"top-level string\"",
        "42",
        "true",
        "{\"a\":1,}",
        "[1,]",
        "{'a':1}",
        "{\"a\" 1}",
        "{\"a\":1}}",
        "{\"a\":1} x",
        "[01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[1e]",
        "[+1]",
        "[NaN]",
        "[Infinity]",
        "[tru]",
        "[nulll]",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\xc0\x80\"}",         /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}",     /* a surrogate in UTF-8 */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* over U+10FFFF */
        "{\"a\":\"\xe2\x82\"}",         /* cut sequence */
        "{\"a\":\"\x80\"}",
        "\xef\xbb\xbf{}", /* a byte order mark */
        "{\"a\":1",
        "[\"unterminated]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(invalid); i++)
        assert_unsure(invalid[i], false, i);
    /* Valid for jansson, past the scanner's limits: jansson decides. */
    static const char *const limits[] = {
        "{\"mo\\u0064el\":\"x\"}", /* an escape in a key */
        "[1234567890123456789]",   /* 19 digits */
        "[1e100]",                 /* a three-digit exponent */
        "[0.00000000000000000000000000000000000000000000000000000000000000001]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++)
        assert_unsure(limits[i], true, i);
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    assert_int_equal(compare_str(deep), 0);
    /* A prefix: what follows the value is not read. */
    const char *t = "{\"a\":[1,2]} trailing, not JSON";
    struct jspan v;
    assert_false(jscan_check(t, strlen(t), &v));
    assert_true(jscan_check_prefix(t, strlen(t), &v));
    assert_int_equal(v.len, 11);
    assert_int_equal(jscan_test_compare(t, strlen(t), true), 1);
}

/* --- generated texts ----------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

struct text {
    char buf[8192];
    size_t len;
};

static void put_s(struct text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n < sizeof(t->buf)) {
        memcpy(t->buf + t->len, s, n);
        t->len += n;
    }
}

static void blank(struct text *t)
{
    static const char *const b[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    put_s(t, b[next_rand() % ARRAY_SIZE(b)]);
}

static void gen_string(struct text *t, bool key)
{
    static const char *const pieces[] = {
        "a",        "model",        "content",          "text",          " ",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\\\"",          "\\\\",
        "\\n",      "\\u00e9",      "\\ud83d\\ude00",   "\\u0041",       "\\/",
        "\\t",      "usage",        "\\u20ac",          "prompt_tokens",
    };
    put_s(t, "\"");
    int n = (int)(next_rand() % 4);
    for (int i = 0; i < n; i++) {
        const char *p = pieces[next_rand() % ARRAY_SIZE(pieces)];
        if (key && strchr(p, '\\') != NULL)
            p = "k";
        put_s(t, p);
    }
    put_s(t, "\"");
}

static void gen_number(struct text *t)
{
    char num[64];
    switch (next_rand() % 5) {
    case 0:
        snprintf(num, sizeof(num), "%u", next_rand() % 1000);
        break;
    case 1:
        snprintf(num, sizeof(num), "-%u%09u", next_rand() % 1000000000, next_rand() % 1000000000);
        break;
    case 2:
        snprintf(num, sizeof(num), "%u.%u", next_rand() % 100, next_rand() % 100000);
        break;
    case 3:
        snprintf(num, sizeof(num), "%u.%ue%s%u", next_rand() % 10, next_rand() % 100,
                 next_rand() % 2 ? "-" : "+", next_rand() % 99);
        break;
    default:
        snprintf(num, sizeof(num), "%uE%u", next_rand() % 10, next_rand() % 30);
        break;
    }
    put_s(t, num);
}

static void gen_value(struct text *t, int depth)
{
    unsigned kind = next_rand() % (depth > 5 ? 5 : 8);
    switch (kind) {
    case 0:
        gen_string(t, false);
        break;
    case 1:
        gen_number(t);
        break;
    case 2:
        put_s(t, "true");
        break;
    case 3:
        put_s(t, "false");
        break;
    case 4:
        put_s(t, "null");
        break;
    case 5:
    case 6: {
        put_s(t, "{");
        int n = (int)(next_rand() % 5);
        for (int i = 0; i < n; i++) {
            if (i > 0)
                put_s(t, ",");
            blank(t);
            gen_string(t, true);
            blank(t);
            put_s(t, ":");
            blank(t);
            gen_value(t, depth + 1);
            blank(t);
        }
        put_s(t, "}");
        break;
    }
    default: {
        put_s(t, "[");
        int n = (int)(next_rand() % 5);
        for (int i = 0; i < n; i++) {
            if (i > 0)
                put_s(t, ",");
            blank(t);
            gen_value(t, depth + 1);
            blank(t);
        }
        put_s(t, "]");
        break;
    }
    }
}

static void test_generated(void **state)
{
    (void)state;
    static const char junk[] = "{}[],:\"\\u0 1e.-x\x80\xc3\xed\xff\n";
    size_t sure = 0, mutants_sure = 0;
    for (int i = 0; i < 20000; i++) {
        /* The top level is an object or an array, blanks around. */
        struct text top = {.len = 0};
        blank(&top);
        bool obj = next_rand() % 2;
        put_s(&top, obj ? "{\"k\":" : "[");
        gen_value(&top, 0);
        put_s(&top, obj ? "}" : "]");
        blank(&top);
        int rc = jscan_test_compare(top.buf, top.len, false);
        if (rc != 1)
            fail_msg("generated text %d (%d): %.*s", i, rc, (int)top.len, top.buf);
        sure++;
        /* Mutants: whatever the scanner is sure of, jansson reads the same. */
        for (int k = 0; k < 4; k++) {
            struct text mut = top;
            size_t at = next_rand() % mut.len;
            switch (next_rand() % 3) {
            case 0:
                mut.buf[at] = junk[next_rand() % (sizeof(junk) - 1)];
                break;
            case 1:
                memmove(mut.buf + at, mut.buf + at + 1, mut.len - at - 1);
                mut.len--;
                break;
            default:
                if (mut.len + 1 < sizeof(mut.buf)) {
                    memmove(mut.buf + at + 1, mut.buf + at, mut.len - at);
                    mut.buf[at] = junk[next_rand() % (sizeof(junk) - 1)];
                    mut.len++;
                }
                break;
            }
            int mrc = jscan_test_compare(mut.buf, mut.len, k % 2 == 1);
            if (mrc == -1)
                fail_msg("mutant of text %d disagrees: %.*s", i, (int)mut.len, mut.buf);
            mutants_sure += mrc == 1;
        }
    }
    assert_int_equal(sure, 20000);
    /* Some mutants stay valid (a digit for a digit, a blank removed). */
    assert_true(mutants_sure > 1000);
}

/* --- the chat meter on either path ---------------------------------------- */

/* The text with `"\u0078":0,` after its first '{' (or, when at is given,
 * after that '{'): a member no meter reads, whose escaped key sends the
 * text to jansson's path. */
static char *with_marker(const char *text, const char *at)
{
    const char *brace = at != NULL ? strstr(text, at) : strchr(text, '{');
    assert_non_null(brace);
    if (at != NULL)
        brace = strchr(brace, '{');
    size_t head = (size_t)(brace - text) + 1;
    static const char marker[] = "\"\\u0078\":0,";
    char *out = malloc(strlen(text) + sizeof(marker));
    assert_non_null(out);
    memcpy(out, text, head);
    strcpy(out + head, marker);
    strcat(out, text + head);
    return out;
}

static void assert_same_meter(const struct meter *a, const struct meter *b, const char *what)
{
    if (strcmp(a->model, b->model) != 0 || a->stream != b->stream ||
        a->client_include_usage != b->client_include_usage || a->prompt_chars != b->prompt_chars ||
        a->output_chars != b->output_chars || a->got_usage != b->got_usage ||
        a->usage_final != b->usage_final || memcmp(a->aux, b->aux, sizeof(a->aux)) != 0 ||
        memcmp(&a->units, &b->units, sizeof(a->units)) != 0)
        fail_msg("%s: the scanner's path and jansson's read differently", what);
}

static void test_chat_request_paths(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"}]}",
        "{\"model\":\"gpt\\u002d4o\",\"model\":\"last \\u00e9\\ud83d\\ude00\",\"stream\":true,"
        "\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":\"a\\nb\"},{\"text\":7}]}]}",
        "{\"model\":5,\"stream\":\"true\",\"messages\":\"plain \xc3\xa9\"}",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":null,\"messages\":[]}",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":7}",
        "{\"stream\":true,\"messages\":[[[[[[\"too deep\"]]]]],{\"content\":{\"content\":{\"text\":"
        "\"x\"}}}]}",
        "{\"model\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
        "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e"
        "9"
        "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e"
        "9"
        "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e"
        "9"
        "\\u00e9 a model name longer than the field\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        char *slow_body = with_marker(bodies[i], NULL);
        struct jspan v;
        /* The two paths: the scanner is sure of one text, not of the other. */
        assert_true(jscan_check(bodies[i], strlen(bodies[i]), &v));
        assert_false(jscan_check(slow_body, strlen(slow_body), &v));
        struct meter fast, slow;
        char *rw_fast = NULL, *rw_slow = NULL;
        size_t n_fast = 0, n_slow = 0;
        meter_init(&fast, OPS_CHAT);
        meter_init(&slow, OPS_CHAT);
        assert_int_equal(request(&fast, bodies[i], &rw_fast, &n_fast),
                         request(&slow, slow_body, &rw_slow, &n_slow));
        char what[64];
        snprintf(what, sizeof(what), "request %zu", i);
        assert_same_meter(&fast, &slow, what);
        /* The same rewrite: both or neither, the same JSON but the marker. */
        assert_int_equal(rw_fast != NULL, rw_slow != NULL);
        if (rw_fast != NULL) {
            json_t *a = json_loadb(rw_fast, n_fast, 0, NULL),
                   *b = json_loadb(rw_slow, n_slow, 0, NULL);
            assert_non_null(a);
            assert_non_null(b);
            assert_int_equal(json_object_del(b, "x"), 0);
            if (!json_equal(a, b))
                fail_msg("%s: rewrites differ", what);
            json_decref(a);
            json_decref(b);
        }
        free(rw_fast);
        free(rw_slow);
        free(slow_body);
    }
}

static void test_chat_reply_paths(void **state)
{
    (void)state;
    static const char *const usages[] = {
        "{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,"
        "\"prompt_tokens_details\":{\"cached_tokens\":4,\"audio_tokens\":2},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":1,\"audio_tokens\":3}}",
        "{\"prompt_tokens\":12.9,\"completion_tokens\":-5,\"prompt_cache_hit_tokens\":6}",
        "{\"prompt_tokens\":1e20,\"completion_tokens\":2.5e3,\"prompt_tokens\":7}",
        "{\"prompt_tokens\":\"12\",\"completion_tokens\":null,\"prompt_tokens_details\":[]}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(usages); i++) {
        char reply[1024], chunk[1024];
        snprintf(reply, sizeof(reply),
                 "{\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"message\":{\"content\":"
                 "\"Hi\"}}],\"usage\":%s}",
                 usages[i]);
        snprintf(chunk, sizeof(chunk),
                 "{\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":%s}", usages[i]);
        char *slow_reply = with_marker(reply, "\"usage\"");
        char *slow_chunk = with_marker(chunk, NULL);
        struct jspan v;
        const char *u_fast = strstr(reply, "\"usage\":") + 8,
                   *u_slow = strstr(slow_reply, "\"usage\":") + 8;
        assert_true(jscan_check_prefix(u_fast, strlen(u_fast), &v));
        assert_false(jscan_check_prefix(u_slow, strlen(u_slow), &v));
        assert_true(jscan_check(chunk, strlen(chunk), &v));
        assert_false(jscan_check(slow_chunk, strlen(slow_chunk), &v));
        struct meter fast, slow;
        char what[64];
        for (int known = 0; known < 2; known++) {
            meter_init(&fast, OPS_CHAT);
            meter_init(&slow, OPS_CHAT);
            if (known) {
                assert_int_equal(request(&fast, "{\"model\":\"m\"}", NULL, NULL), 0);
                assert_int_equal(request(&slow, "{\"model\":\"m\"}", NULL, NULL), 0);
            }
            response(&fast, reply);
            response(&slow, slow_reply);
            snprintf(what, sizeof(what), "reply %zu (model %s)", i, known ? "known" : "from reply");
            assert_same_meter(&fast, &slow, what);
        }
        meter_init(&fast, OPS_CHAT);
        meter_init(&slow, OPS_CHAT);
        assert_int_equal(request(&fast, "{\"stream\":true}", NULL, NULL), 0);
        assert_int_equal(request(&slow, "{\"stream\":true}", NULL, NULL), 0);
        assert_int_equal(sse(&fast, "", chunk), sse(&slow, "", slow_chunk));
        snprintf(what, sizeof(what), "stream chunk %zu", i);
        assert_same_meter(&fast, &slow, what);
        free(slow_reply);
        free(slow_chunk);
    }
}

/* A request body read by ops on the scanner's path and, with the marker,
 * on jansson's: the same meter. */
static void assert_same_request(const struct meter_ops *ops, const char *body, const char *what)
{
    char *slow_body = with_marker(body, NULL);
    struct jspan v;
    assert_true(jscan_check(body, strlen(body), &v));
    assert_false(jscan_check(slow_body, strlen(slow_body), &v));
    struct meter fast, slow;
    meter_init(&fast, ops);
    meter_init(&slow, ops);
    assert_int_equal(request(&fast, body, NULL, NULL), request(&slow, slow_body, NULL, NULL));
    assert_same_meter(&fast, &slow, what);
    free(slow_body);
}

/* Anthropic: the request, a reply, and the two events that carry usage. */
static void test_anthropic_paths(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"claude-sonnet-4\",\"system\":\"Be brief.\",\"messages\":[{\"role\":"
        "\"user\",\"content\":\"hi \\u00e9\"}],\"stream\":true}",
        "{\"model\":\"c\",\"system\":[{\"type\":\"text\",\"text\":\"a\"},{\"text\":\"bc\"}],"
        "\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":\"\\ud83d\\ude00\"}]}],"
        "\"model\":\"last\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++)
        assert_same_request(OPS_ANTHROPIC, bodies[i], "anthropic request");
    static const char *const usages[] = {
        ("{\"input_tokens\":10,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":4,"
         "\"output_tokens\":7}"),
        "{\"input_tokens\":null,\"output_tokens\":7.9,\"cache_read_input_tokens\":\"4\"}",
        "{\"output_tokens\":-2,\"input_tokens\":5,\"input_tokens\":6}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(usages); i++) {
        char text[1024];
        struct meter fast, slow;
        /* A whole reply. */
        snprintf(text, sizeof(text),
                 "{\"id\":\"msg\",\"model\":\"claude\",\"content\":[{\"type\":\"text\","
                 "\"text\":\"Hi\"}],\"usage\":%s}",
                 usages[i]);
        char *slow_text = with_marker(text, NULL);
        meter_init(&fast, OPS_ANTHROPIC);
        meter_init(&slow, OPS_ANTHROPIC);
        response(&fast, text);
        response(&slow, slow_text);
        assert_same_meter(&fast, &slow, "anthropic reply");
        free(slow_text);
        /* message_start, then message_delta. */
        char start[1024], delta[1024];
        snprintf(start, sizeof(start),
                 "{\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":%s}}",
                 usages[i]);
        snprintf(delta, sizeof(delta), "{\"type\":\"message_delta\",\"usage\":%s}", usages[i]);
        char *slow_start = with_marker(start, NULL), *slow_delta = with_marker(delta, NULL);
        struct jspan v;
        assert_true(jscan_check(start, strlen(start), &v));
        assert_false(jscan_check(slow_start, strlen(slow_start), &v));
        meter_init(&fast, OPS_ANTHROPIC);
        meter_init(&slow, OPS_ANTHROPIC);
        sse(&fast, "message_start", start);
        sse(&slow, "message_start", slow_start);
        assert_same_meter(&fast, &slow, "anthropic message_start");
        sse(&fast, "message_delta", delta);
        sse(&slow, "message_delta", slow_delta);
        assert_same_meter(&fast, &slow, "anthropic message_delta");
        free(slow_start);
        free(slow_delta);
    }
}

/* OpenAI responses: the request and the terminal event, named or not. */
static void test_responses_paths(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"gpt-4.1\",\"input\":\"Say hi \\u00e9\",\"instructions\":\"brief\"}",
        ("{\"model\":\"gpt-4.1\",\"stream\":true,\"input\":[{\"role\":\"user\",\"content\":"
         "[{\"type\":\"input_text\",\"text\":\"abc\"}]}],\"instructions\":5}"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++)
        assert_same_request(OPS_RESPONSES, bodies[i], "responses request");
    static const char *const events[] = {
        ("{\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1\",\"output\":[],"
         "\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":2},"
         "\"output_tokens\":4}}}"),
        ("{\"type\":\"response.incomplete\",\"response\":{\"model\":\"m\",\"usage\":{"
         "\"input_tokens\":1.5,\"output_tokens\":2}}}"),
        ("{\"type\":\"response.created\",\"response\":{\"model\":\"m\",\"usage\":{"
         "\"input_tokens\":3}}}"),
        ("{\"type\":\"response.completed.but.a.much.longer.type.than.any\",\"response\":{"
         "\"usage\":{\"input_tokens\":3}}}"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(events); i++) {
        char *slow_event = with_marker(events[i], NULL);
        for (int named = 0; named < 2; named++) {
            const char *name = named ? "response.completed" : "";
            struct meter fast, slow;
            meter_init(&fast, OPS_RESPONSES);
            meter_init(&slow, OPS_RESPONSES);
            sse(&fast, name, events[i]);
            sse(&slow, name, slow_event);
            char what[64];
            snprintf(what, sizeof(what), "responses event %zu (%s)", i,
                     named ? "named" : "unnamed");
            assert_same_meter(&fast, &slow, what);
            if (i == 0)
                assert_int_equal(fast.units.input_tokens, 9);
        }
        free(slow_event);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sure),
        cmocka_unit_test(test_unsure),
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_chat_request_paths),
        cmocka_unit_test(test_chat_reply_paths),
        cmocka_unit_test(test_anthropic_paths),
        cmocka_unit_test(test_responses_paths),
    };
    return cmocka_run_group_tests(tests, setup_routes, NULL);
}
