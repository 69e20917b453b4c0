/* fuzz_jscan.c - libFuzzer target for the allocation-free JSON reader
 * (jscan.h), differential against jansson: on any bytes, whatever the
 * scanner is sure of (the whole text, or the value that starts it) jansson
 * parses, and every value reads the same both ways (types, members with
 * the last duplicate kept, elements, decoded strings and their code points,
 * numbers). */
#include "common.h"

#include "../unit/jscan_test.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    if (jscan_test_compare(s, size, false) == -1 || jscan_test_compare(s, size, true) == -1)
        abort();
    return 0;
}
