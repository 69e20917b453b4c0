/* test_check.c - the pure parts of Check Status: the URL of each slot's
 * call (the region never chooses a host outside the template) and the
 * provider's reason pulled out of its error shape. */
#include "common.h"
#include "check.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static struct config cfg_with(const char *openai, const char *el, const char *tts)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.upstreams[provider_index(P_OPENAI)][0] = (char *)openai;
    c.upstreams[provider_index(P_ELEVENLABS)][0] = (char *)el;
    c.upstreams[provider_index(P_AZURE_SPEECH)][0] = (char *)tts;
    return c;
}

static void test_urls(void **state)
{
    (void)state;
    struct config c = cfg_with("http://127.0.0.1:9/oa", "https://api.elevenlabs.io",
                               "http://127.0.0.1:9/{region}/tts");
    char url[512];
    assert_int_equal(check_build_url(&c, P_OPENAI, NULL, url, sizeof(url)), 0);
    assert_string_equal(url, "http://127.0.0.1:9/oa/v1/chat/completions");
    assert_int_equal(check_build_url(&c, P_ELEVENLABS, NULL, url, sizeof(url)), 0);
    assert_string_equal(url, "https://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"
                             "?output_format=mp3_22050_32");
    assert_int_equal(check_build_url(&c, P_AZURE_SPEECH, "westeurope", url, sizeof(url)), 0);
    assert_string_equal(url, "http://127.0.0.1:9/westeurope/tts/cognitiveservices/voices/list");

    /* A region outside the allow-list never becomes part of a URL. */
    const char *hostile[] = {"East US", "eastus.evil.com", "169.254.169.254#",
                             "",        "eastus/..",       "EASTUS"};
    for (size_t i = 0; i < ARRAY_SIZE(hostile); i++)
        assert_int_equal(check_build_url(&c, P_AZURE_SPEECH, hostile[i], url, sizeof(url)), -1);
    /* Not a slot; too small a buffer. */
    assert_int_equal(check_build_url(&c, P_DEEPGRAM, NULL, url, sizeof(url)), -1);
    assert_int_equal(check_build_url(&c, P_OPENAI, NULL, url, 10), -1);
}

static void test_error_messages(void **state)
{
    (void)state;
    char out[CHECK_DETAIL_MAX + 1];
    const char *oa = "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":"
                     "\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
    check_error_message(P_OPENAI, oa, strlen(oa), out, sizeof(out));
    assert_string_equal(out, "Incorrect API key provided");

    const char *el =
        "{\"detail\":{\"status\":\"invalid_api_key\",\"message\":\"Invalid API key\"}}";
    check_error_message(P_ELEVENLABS, el, strlen(el), out, sizeof(out));
    assert_string_equal(out, "Invalid API key");
    const char *el422 = "{\"detail\":[{\"loc\":[\"body\",\"text\"],\"msg\":\"field required\","
                        "\"type\":\"value_error.missing\"}]}";
    check_error_message(P_ELEVENLABS, el422, strlen(el422), out, sizeof(out));
    assert_string_equal(out, "field required");

    const char *az = "{\"error\":{\"code\":\"401\",\"message\":\"Access denied due to invalid "
                     "subscription key or wrong API endpoint.\"}}";
    check_error_message(P_AZURE_SPEECH, az, strlen(az), out, sizeof(out));
    assert_string_equal(out,
                        "Access denied due to invalid subscription key or wrong API endpoint.");

    /* Not JSON: the text itself, control characters as spaces. */
    const char *html = "<html>\n<body>Bad Gateway</body></html>";
    check_error_message(P_OPENAI, html, strlen(html), out, sizeof(out));
    assert_null(strchr(out, '\n'));
    assert_non_null(strstr(out, "Bad Gateway"));

    /* Long messages are cut at CHECK_DETAIL_MAX, at a character boundary. */
    char big[2000];
    strcpy(big, "{\"error\":{\"message\":\"");
    size_t n = strlen(big);
    for (int i = 0; i < 400; i++) {
        big[n++] = (char)0xc3; /* "é" */
        big[n++] = (char)0xa9;
    }
    strcpy(big + n, "\"}}");
    check_error_message(P_OPENAI, big, strlen(big), out, sizeof(out));
    assert_true(strlen(out) <= CHECK_DETAIL_MAX);
    assert_non_null(strstr(out, "..."));
    /* No half character: every 0xc3 is followed by 0xa9. */
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p == 0xc3)
            assert_int_equal((unsigned char)p[1], 0xa9);

    check_error_message(P_OPENAI, "", 0, out, sizeof(out));
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_error_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
