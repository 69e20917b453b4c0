/* fuzz_sse.c - libFuzzer target for the SSE parser (random splits, the raw
 * concatenation property, overflow), feeding its events to a provider's
 * stream meter (the per-provider meters themselves: fuzz_meters.c). */
#include "common.h"

#include "meter.h"
#include "provider.h"
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

/* The n-th REST meter of the registry that reads SSE events (cyclic). */
static const struct meter_ops *stream_meter(uint8_t n)
{
    const struct meter_ops *all[64];
    size_t count = 0;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *p = provider_at(i);
        for (size_t e = 0; e < p->n_endpoints && count < ARRAY_SIZE(all); e++)
            if (p->endpoints[e].meter != NULL && (p->endpoints[e].meter->flags & METER_F_SSE))
                all[count++] = p->endpoints[e].meter;
    }
    return count > 0 ? all[n % count] : NULL;
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
    meter_init(&c.meter, stream_meter(mode));
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    uint8_t split = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    fuzz_sse(mode, split, in, len);
    return 0;
}
