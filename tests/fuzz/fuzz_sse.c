/* fuzz_sse.c - libFuzzer target for the SSE parser (random splits, the raw
 * concatenation property, overflow) and for the meter of every kind fed
 * arbitrary bytes as request bodies (JSON, multipart, SSML, WAV/Ogg audio),
 * queries, reply headers, JSON replies and stream events. */
#include "common.h"

#include "meter.h"
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_ctx {
    struct meter meter;
    char *raw; /* concatenation of delivered raw events */
    size_t raw_len;
    int events;
};

static int on_event(void *arg, const struct sse_event *ev)
{
    struct fuzz_ctx *c = arg;
    if (ev->data[ev->data_len] != '\0' || strlen(ev->event) > ev->raw_len)
        abort();
    memcpy(c->raw + c->raw_len, ev->raw, ev->raw_len);
    c->raw_len += ev->raw_len;
    (void)meter_sse_event(&c->meter, ev->event, ev->data, ev->data_len);
    /* Sometimes stop from the callback, to exercise that path too. */
    return ++c->events == 1000 ? -1 : 0;
}

/* xorshift: piece sizes derived from the input, so runs are reproducible. */
static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fuzz_sse(uint8_t mode, uint8_t split, const char *in, size_t len)
{
    struct fuzz_ctx c;
    memset(&c, 0, sizeof(c));
    meter_init(&c.meter, (enum meter_kind)(mode % (METER_AZURE_STT + 1)));
    c.raw = malloc(len + 1);
    if (c.raw == NULL)
        return;
    /* Small limits reach the overflow path; large ones whole streams. */
    size_t max_event = (mode & 0x80) ? 16 + (size_t)split * 4 : 1 << 20;
    struct sse_parser *p = sse_new(max_event, on_event, &c);
    if (p == NULL) {
        free(c.raw);
        return;
    }
    uint32_t seed = 0x9e3779b9u ^ split ^ ((uint32_t)mode << 8);
    size_t at = 0;
    int rc = 0;
    while (at < len && rc == 0) {
        size_t step = split == 0 ? len - at : 1 + next_rand(&seed) % split;
        step = MIN(step, len - at);
        rc = sse_feed(p, in + at, step);
        at += step;
    }
    size_t plen;
    const char *pend = sse_pending(p, &plen);
    if (c.raw_len + plen != at || memcmp(c.raw, in, c.raw_len) != 0 ||
        memcmp(pend, in + c.raw_len, plen) != 0)
        abort(); /* delivered raw + pending must be exactly the input */
    (void)meter_finish(&c.meter);
    sse_free(p);
    free(c.raw);
}

/* Event names that select different meter paths. */
static const char *const event_names[] = {
    "", "response.completed", "message_start", "message_delta", "content_block_delta", "error",
};

/* Reply headers the meter reads, and one it must ignore. */
static const char *const header_names[] = {
    "character-cost",
    "DG-Char-Count",
    "dg-model-name",
    "content-type",
};

static void fuzz_meter(uint8_t mode, const char *in, size_t len)
{
    for (int k = METER_NONE; k <= METER_AZURE_STT; k++) {
        struct meter m;
        meter_init(&m, (enum meter_kind)k);
        char *rw = NULL;
        size_t rw_len = 0;
        const char *ct = "application/json";
        char ct_buf[512];
        if (k == METER_TRANSCRIPTION) {
            /* The content type is the first line of the input, so the
             * fuzzer can discover boundaries; else a fixed one. */
            const char *nl = memchr(in, '\n', MIN(len, sizeof(ct_buf) - 1));
            if (nl != NULL && (mode & 1)) {
                memcpy(ct_buf, in, (size_t)(nl - in));
                ct_buf[nl - in] = '\0';
                ct = ct_buf;
            } else {
                ct = "multipart/form-data; boundary=b";
            }
        } else if (k == METER_AZURE_TTS) {
            ct = "application/ssml+xml";
        }
        /* The query and a header value are the input's first line (or all
         * of it), so they reach the decoders with arbitrary bytes. */
        const char *nl = memchr(in, '\n', len);
        size_t first = nl ? (size_t)(nl - in) : len;
        meter_request_query(&m, in, first);
        if (meter_request(&m, in, len, ct, strlen(ct), &rw, &rw_len) == 0 && rw != NULL) {
            /* Caller-owned and NUL-terminated at its length. */
            if (rw_len == 0 || rw[rw_len] != '\0')
                abort();
        }
        free(rw);
        const char *hname = header_names[(mode >> 2) % ARRAY_SIZE(header_names)];
        meter_response_header(&m, hname, strlen(hname), in, first);
        meter_response_json(&m, in, len);
        const char *ev = (mode & 2) ? event_names[(mode >> 4) % ARRAY_SIZE(event_names)] : "";
        (void)meter_sse_event(&m, ev, in, len);
        bool estimated = meter_finish(&m);
        if (m.units.input_tokens < 0 || m.units.output_tokens < 0 || m.units.characters < 0 ||
            m.units.audio_ms < 0 || m.units.cached_input_tokens < 0 ||
            m.model[sizeof(m.model) - 1] != '\0')
            abort();
        /* A header-reported count is never an estimate. */
        if (m.header_characters >= 0 && estimated && (k == METER_EL_TTS || k == METER_DG_SPEAK))
            abort();
    }
    (void)meter_wav_duration_ms((const unsigned char *)in, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    uint8_t split = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    fuzz_sse(mode, split, in, len);
    fuzz_meter(mode, in, len);
    return 0;
}
