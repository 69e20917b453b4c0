/* fuzz_azure_speech.c - libFuzzer target for the Azure Speech parsers fed
 * by the network: the SSML character counter (and the voice it finds) and
 * the Speech SDK's framed binary audio, split into messages and chunks by
 * the input. The count never exceeds the code points of the text; the
 * frame reader counts no more audio than the payload bytes it was given,
 * whatever the split. */
#include "common.h"

#include "providers/azure_speech.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t frames(const uint8_t *in, size_t len, size_t chunk, size_t msg)
{
    struct azure_frames f;
    memset(&f, 0, sizeof(f));
    size_t off = 0;
    while (off < len) {
        size_t m = MIN(msg, len - off); /* one message */
        size_t at = 0;
        while (at < m) {
            size_t n = MIN(chunk, m - at);
            azure_frames_feed(&f, in + off + at, n, at, at + n == m);
            at += n;
        }
        off += m;
    }
    if (f.audio_bytes > len)
        abort();
    return f.audio_bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = 1 + data[0] % 64, msg = 1 + data[1] * 16;
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    char voice[MODEL_MAX] = "";
    int64_t n = azure_ssml_characters((const char *)in, len, voice);
    if (n < 0 || n > (int64_t)len || voice[MODEL_MAX - 1] != '\0')
        abort();
    /* The same messages split differently count the same audio. */
    if (frames(in, len, chunk, msg) != frames(in, len, len ? len : 1, msg))
        abort();
    char err[128];
    (void)azure_check_region((const char *)"eastus", err, sizeof(err));
    return 0;
}
