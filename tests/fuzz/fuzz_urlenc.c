/* fuzz_urlenc.c - libFuzzer target for the query iterator and the
 * percent-decoder: pairs tile the query (raw extents in order, separated by
 * '&'), names and values lie inside their pair, a decode never writes past
 * its buffer and agrees with a byte-by-byte reference, and a name compared
 * after decoding matches its own decoded spelling. */
#include "common.h"

#include "urlenc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference: '+' -> ' ', %XX -> byte, anything else as is. */
static int ref_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            if (!isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i];
        }
        if (out[o - 1] == '\0')
            return -1;
    }
    return (int)o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *q = (const char *)data;
    struct urlenc_query it;
    struct urlenc_pair p;
    const char *at = q;
    urlenc_query_init(&it, q, size);
    while (urlenc_query_next(&it, &p)) {
        if (p.raw < at || p.raw + p.raw_len > q + size || p.raw_len == 0 ||
            memchr(p.raw, '&', p.raw_len) != NULL || p.name != p.raw ||
            p.name + p.name_len > p.raw + p.raw_len || p.value + p.value_len > p.raw + p.raw_len)
            abort();
        at = p.raw + p.raw_len;
        char a[256], b[256];
        size_t n = MIN(p.raw_len, (size_t)200);
        int got = urlenc_decode(p.raw, n, true, false, a, sizeof(a));
        int want = ref_decode(p.raw, n, b);
        if (got != want || (got > 0 && memcmp(a, b, (size_t)got) != 0))
            abort();
        if (got >= 0 && a[got] != '\0')
            abort();
        char name[128];
        int nl = urlenc_decode(p.name, p.name_len, true, false, name, sizeof(name));
        if (nl > 0 && memchr(name, '\0', (size_t)nl) == NULL && !urlenc_name_is(&p, name))
            abort();
    }
    char out[16];
    if (urlenc_query_get(q, size, "model", out, sizeof(out)) == 0 && strlen(out) >= sizeof(out))
        abort();
    return 0;
}
