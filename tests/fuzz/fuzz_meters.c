/* fuzz_meters.c - libFuzzer target for every provider's meters (the usage
 * JSON and events each provider sends, the request bodies each reads):
 * every REST meter of every served endpoint fed arbitrary bytes as query,
 * request body (JSON, multipart, SSML, WAV/Ogg audio), reply header, JSON
 * reply and stream events; every socket meter fed them as query, text
 * messages both ways and binary messages in chunks. Units never go
 * negative, models stay terminated, a header-reported count is never an
 * estimate, a socket's recorded units never exceed its total. */
#include "common.h"

#include "meter.h"
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Event names that select different meter paths. */
static const char *const event_names[] = {
    "",      "response.completed",  "message_start",        "message_delta",
    "error", "content_block_delta", "transcript.text.done", "speech.audio.done",
};

/* Reply headers some meters read, and one they must ignore. */
static const char *const header_names[] = {"character-cost", "DG-Char-Count", "dg-model-name",
                                           "content-type"};

static const char *const content_types[] = {
    "application/json",
    "multipart/form-data; boundary=b",
    "application/ssml+xml",
    "audio/wav",
};

static void check_units(const struct usage_units *u)
{
    if (u->input_tokens < 0 || u->output_tokens < 0 || u->characters < 0 || u->audio_ms < 0 ||
        u->cached_input_tokens < 0 || u->audio_input_tokens < 0 || u->audio_output_tokens < 0)
        abort();
}

static void rest(const struct meter_ops *ops, uint8_t mode, const char *in, size_t len)
{
    struct meter m;
    char *rw = NULL;
    size_t rw_len = 0;
    char ct_buf[512];
    meter_init(&m, ops);
    /* The content type is the first line of the input when mode says so
     * (the fuzzer then finds boundaries), else a fixed one. */
    const char *nl = memchr(in, '\n', len);
    size_t first = nl ? (size_t)(nl - in) : len;
    const char *ct = content_types[(mode >> 1) % ARRAY_SIZE(content_types)];
    if ((mode & 1) && first < sizeof(ct_buf)) {
        memcpy(ct_buf, in, first);
        ct_buf[first] = '\0';
        ct = ct_buf;
    }
    meter_request_query(&m, in, first);
    if (meter_request(&m, in, len, ct, strlen(ct), &rw, &rw_len) == 0 && rw != NULL) {
        /* Caller-owned and NUL-terminated at its length. */
        if (rw_len == 0 || rw[rw_len] != '\0')
            abort();
    }
    free(rw);
    const char *hname = header_names[(mode >> 3) % ARRAY_SIZE(header_names)];
    meter_response_header(&m, hname, strlen(hname), in, first);
    meter_response_json(&m, in, len);
    const char *ev = event_names[(mode >> 5) % ARRAY_SIZE(event_names)];
    (void)meter_sse_event(&m, ev, in, len);
    bool estimated = meter_finish(&m);
    check_units(&m.units);
    if (m.model[sizeof(m.model) - 1] != '\0' || strlen(meter_model(&m)) >= MODEL_MAX)
        abort();
    /* A reply header's count is what the provider billed: never an estimate. */
    if (m.header_characters >= 0 && estimated && m.units.characters == m.header_characters)
        abort();
}

static int units_seen;

static void on_unit(void *arg)
{
    struct ws_meter *m = arg;
    struct usage_units u;
    ws_meter_take(m, &u);
    check_units(&u);
    units_seen++;
}

static void sock(const struct ws_meter_ops *ops, uint8_t mode, const uint8_t *in, size_t len)
{
    struct ws_meter m;
    const char *nl = memchr(in, '\n', len);
    size_t first = nl ? (size_t)(nl - (const char *)in) : len;
    if (ws_meter_init(&m, ops, (mode & 1) ? "model" : NULL, (const char *)in, first) == -1)
        return;
    m.unit = on_unit;
    m.unit_arg = &m;
    /* The rest: text messages both ways, then binary messages in chunks
     * whose sizes come from the input. */
    const uint8_t *rest = nl ? in + first + 1 : in + len;
    size_t rlen = (size_t)(in + len - rest);
    ws_meter_text(&m, (mode & 2) != 0, (const char *)rest, rlen, true);
    ws_meter_text(&m, (mode & 2) == 0, (const char *)rest, rlen, (mode & 4) != 0);
    size_t off = 0, chunk = 1 + (mode >> 3);
    uint64_t msg_off = 0;
    while (off < rlen) {
        size_t n = MIN(chunk, rlen - off);
        bool last = off + n == rlen || rest[off] == 0xff;
        ws_meter_binary(&m, true, rest + off, n, msg_off, last);
        msg_off = last ? 0 : msg_off + n;
        off += n;
        if (off % 64 == 0)
            ws_meter_interval(&m);
    }
    struct ws_meter_end end = {
        .wall_ms = (int64_t)rlen * 7, .bytes_from_client = rlen, .cut = mode & 1};
    ws_meter_interval(&m);
    ws_meter_finish(&m, &end);
    struct usage_units u;
    ws_meter_take(&m, &u);
    check_units(&u);
    if (m.model[sizeof(m.model) - 1] != '\0')
        abort();
    ws_meter_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (size_t e = 0; e < p->n_endpoints; e++) {
            if (p->endpoints[e].meter != NULL)
                rest(p->endpoints[e].meter, mode, in, len);
            if (p->endpoints[e].ws != NULL)
                sock(p->endpoints[e].ws, mode, data + 1, len);
        }
    }
    return 0;
}
