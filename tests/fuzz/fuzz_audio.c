/* fuzz_audio.c - libFuzzer target for the WAV and Ogg readers: any bytes as
 * a whole upload and as a stream's header. A duration is -1 or >= 0; a
 * parsed WAV header's data offset lies inside the input; a WAV whose data
 * fits its declared size gives the same duration with any bytes appended
 * that form well-formed chunks (a trailing LIST chunk). */
#include "common.h"

#include "audio.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t all = audio_duration_ms(data, size);
    int64_t wav = audio_wav_duration_ms(data, size);
    int64_t ogg = audio_ogg_duration_ms(data, size);
    if (all < -1 || wav < -1 || ogg < -1)
        abort();
    if (all != (wav >= 0 ? wav : ogg))
        abort();
    struct audio_wav w;
    if (audio_wav_header(data, size, &w) == 0) {
        if (w.data_offset > size)
            abort();
        if (w.bytes_per_sec != 0 &&
            w.bytes_per_sec != (uint64_t)w.sample_rate * w.channels * w.bits / 8)
            abort(); /* the rate is never the declared byte rate */
    }
    /* Appending a well-formed chunk after an exact data chunk changes nothing. */
    if (wav >= 0 && audio_wav_header(data, size, &w) == 0 &&
        w.data_offset + w.data_declared == size && (w.data_declared & 1) == 0) {
        uint8_t *more = malloc(size + 12);
        if (more == NULL)
            return 0;
        memcpy(more, data, size);
        memcpy(more + size, "LIST\x04\x00\x00\x00INFO", 12);
        if (audio_wav_duration_ms(more, size + 12) != wav)
            abort();
        free(more);
    }
    if (audio_bytes_ms(size, 0) != 0)
        abort();
    return 0;
}
