/* fuzz_multipart.c - libFuzzer target for multipart/form-data: the first
 * input line is the Content-Type (so boundaries are found), the rest the
 * body. Every part reported lies inside the body; header parameters are
 * NUL-terminated within their buffer. */
#include "common.h"

#include "multipart.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct bounds {
    const char *body;
    size_t len;
    int parts;
};

static void on_part(void *arg, const char *name, const char *d, size_t n)
{
    struct bounds *b = arg;
    if (d < b->body || d + n > b->body + b->len || strlen(name) >= 64)
        abort();
    b->parts++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - in) : size;
    const char *body = nl ? nl + 1 : in + size;
    struct bounds b = {body, (size_t)(in + size - body), 0};
    if (multipart_parse(body, b.len, in, ct_len, on_part, &b) != 0 && b.parts != 0)
        abort(); /* a failed parse reports no part */
    char out[32];
    if (multipart_param(in, ct_len, "boundary", out, sizeof(out)) == 0 &&
        strlen(out) >= sizeof(out))
        abort();
    if (multipart_param(in, ct_len, "name", out, 1) == 0)
        abort(); /* no value fits in one byte with its NUL */
    return 0;
}
