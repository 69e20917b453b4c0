/* pricing.c - finds a model's price in the config and turns usage units into
 * integer micro-USD, rounding once (half up) at the end. */
#include "common.h"

#include "pricing.h"

#include <string.h>

const struct config_price *pricing_find(const struct config *cfg, const struct provider *p,
                                        const char *model)
{
    if (cfg == NULL || p == NULL)
        return NULL;
    if (model == NULL)
        model = "";
    const struct config_provider_prices *pp = config_prices(cfg, p);
    const struct config_price *best = NULL;
    size_t len = strlen(model);
    for (size_t i = 0; i < pp->n_prices; i++) {
        const struct config_price *e = &pp->prices[i];
        if (e->model == NULL || e->match_len > len)
            continue;
        if (!e->prefix) {
            if (e->match_len == len && memcmp(model, e->model, len) == 0)
                return e; /* exact name wins over any prefix */
        } else if ((best == NULL || e->match_len > best->match_len) &&
                   memcmp(model, e->model, e->match_len) == 0) {
            /* "*" alone is a prefix of length 0: the provider's default,
             * chosen only when nothing longer matches. */
            best = e;
        }
    }
    return best;
}

/* A price that is not set (-1, or any negative) counts as 0. */
static uint64_t price_or(int64_t price, int64_t fallback)
{
    if (price >= 0)
        return (uint64_t)price;
    return fallback >= 0 ? (uint64_t)fallback : 0;
}

static uint64_t units_of(int64_t n)
{
    return n > 0 ? (uint64_t)n : 0;
}

/* Part of a total: units × price split into whole micro-USD (q) and the
 * remainder in 1/den micro-USD (r < den). 64×64 bits fit in 128. */
static void add_part(unsigned __int128 *q, uint64_t *r_scaled, uint64_t units, uint64_t price,
                     uint64_t den, uint64_t scale)
{
    unsigned __int128 t = (unsigned __int128)units * price;
    *q += t / den;
    *r_scaled += (uint64_t)(t % den) * scale;
}

int64_t pricing_cost(const struct config_price *price, const struct usage_units *u)
{
    if (price == NULL || u == NULL)
        return 0;
    /* Token and character parts are per 1M units, audio per 60000 ms: the
     * remainders are brought to the common denominator 6e10 (1e6 × 60000) so
     * the fractions of every part add up before the single rounding. */
    const uint64_t den_1m = 1000000u, den_min = 60000u;
    const uint64_t den = den_1m * den_min;

    uint64_t input = units_of(u->input_tokens);
    uint64_t cached = MIN(units_of(u->cached_input_tokens), input);
    uint64_t audio_in = MIN(units_of(u->audio_input_tokens), input - cached);
    uint64_t text_in = input - cached - audio_in;
    uint64_t output = units_of(u->output_tokens);
    uint64_t audio_out = MIN(units_of(u->audio_output_tokens), output);
    uint64_t text_out = output - audio_out;

    unsigned __int128 q = 0;
    uint64_t r = 0; /* in 1/6e10 micro-USD; at most 8 parts × 6e10 */
    add_part(&q, &r, text_in, price_or(price->input_per_1m, -1), den_1m, den_min);
    add_part(&q, &r, cached, price_or(price->cached_input_per_1m, price->input_per_1m), den_1m,
             den_min);
    add_part(&q, &r, audio_in, price_or(price->audio_input_per_1m, price->input_per_1m), den_1m,
             den_min);
    add_part(&q, &r, text_out, price_or(price->output_per_1m, -1), den_1m, den_min);
    add_part(&q, &r, audio_out, price_or(price->audio_output_per_1m, price->output_per_1m), den_1m,
             den_min);
    add_part(&q, &r, units_of(u->characters), price_or(price->characters_per_1m, -1), den_1m,
             den_min);
    add_part(&q, &r, units_of(u->audio_ms), price_or(price->audio_per_minute, -1), den_min, den_1m);

    q += r / den;
    if (r % den >= den / 2)
        q++; /* half up, once */
    return q > (unsigned __int128)INT64_MAX ? INT64_MAX : (int64_t)q;
}
