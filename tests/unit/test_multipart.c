/* test_multipart.c - unit tests of the multipart/form-data reader
 * (multipart.h): header-value parameters, and the parts of a body in order.
 * The transcription meter's use of it is in test_meter_speech.c. */
#include "common.h"

#include "multipart.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

struct parts {
    char names[8][64];
    char data[8][64];
    size_t lens[8];
    int n;
};

static void collect(void *arg, const char *name, const char *data, size_t len)
{
    struct parts *p = arg;
    if (p->n >= 8)
        return;
    snprintf(p->names[p->n], sizeof(p->names[0]), "%s", name);
    snprintf(p->data[p->n], sizeof(p->data[0]), "%.*s", (int)MIN(len, 63), data);
    p->lens[p->n++] = len;
}

static void test_multipart(void **state)
{
    (void)state;
    char out[64];
    static const char ct[] = "multipart/form-data; charset=utf-8; Boundary=\"a b\"; x=1";
    assert_int_equal(multipart_param(ct, strlen(ct), "boundary", out, sizeof(out)), 0);
    assert_string_equal(out, "a b");
    assert_int_equal(multipart_param(ct, strlen(ct), "x", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(multipart_param(ct, strlen(ct), "charset", out, sizeof(out)), 0);
    assert_string_equal(out, "utf-8");
    assert_int_equal(multipart_param(ct, strlen(ct), "missing", out, sizeof(out)), -1);
    assert_int_equal(multipart_param(ct, strlen(ct), "boundary", out, 3), -1); /* too long */
    static const char cd[] = "form-data; name=\"file\"; filename=\"a;b.wav\"";
    assert_int_equal(multipart_param(cd, strlen(cd), "filename", out, sizeof(out)), 0);
    assert_string_equal(out, "a;b.wav");
    assert_int_equal(multipart_param(cd, strlen(cd), "name", out, sizeof(out)), 0);
    assert_string_equal(out, "file");
    assert_int_equal(multipart_param("form-data; name=", 16, "name", out, sizeof(out)), -1);
    assert_int_equal(multipart_param("form-data; name=\"\"", 18, "name", out, sizeof(out)), -1);

    /* Parts in order, names from Content-Disposition (any case); a part
     * without a name has ""; the body may open without a CRLF; the
     * closing delimiter ends it. */
    static const char body[] =
        "--XY\r\n"
        "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
        "whisper-1\r\n"
        "--XY\r\n"
        "CONTENT-DISPOSITION: form-data; name=language\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "en\r\n"
        "--XY\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "anon\r\n"
        "--XY--\r\n"
        "--XY\r\nContent-Disposition: form-data; name=\"late\"\r\n\r\nno\r\n";
    struct parts p = {0};
    assert_int_equal(
        multipart_parse(body, strlen(body), "multipart/form-data; boundary=XY", 32, collect, &p),
        0);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.names[0], "model");
    assert_string_equal(p.data[0], "whisper-1");
    assert_string_equal(p.names[1], "language");
    assert_string_equal(p.data[1], "en");
    assert_string_equal(p.names[2], "");
    assert_string_equal(p.data[2], "anon");
    assert_int_equal(p.lens[0], 9);
    assert_int_equal(p.lens[1], 2);
    assert_int_equal(p.lens[2], 4);

    /* A truncated last part is not reported. */
    memset(&p, 0, sizeof(p));
    size_t cut = (size_t)(strstr(body, "anon") - body) + 2;
    assert_int_equal(
        multipart_parse(body, cut, "multipart/form-data; boundary=XY", 32, collect, &p), 0);
    assert_int_equal(p.n, 2);

    /* Not multipart, no boundary, no delimiter in the body. */
    memset(&p, 0, sizeof(p));
    assert_int_equal(multipart_parse(body, strlen(body), "application/json", 16, collect, &p), -1);
    assert_int_equal(multipart_parse(body, strlen(body), "multipart/form-data", 19, collect, &p),
                     -1);
    assert_int_equal(
        multipart_parse(body, strlen(body), "multipart/form-data; boundary=ZZ", 32, collect, &p),
        -1);
    assert_int_equal(multipart_parse(NULL, 0, "multipart/form-data; boundary=XY", 32, collect, &p),
                     -1);
    assert_int_equal(p.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multipart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
