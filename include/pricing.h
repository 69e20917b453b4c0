/* pricing.h - cost of a line item from the config's pricing table.
 *
 * Integer arithmetic only. Tokens and characters are priced per 1M units;
 * the sum of (units × price-per-1M) over all parts is divided by 1,000,000 and
 * rounded half up once at the end, so a request never loses its fractions
 * twice. Audio is priced per minute from audio_ms. Parts:
 *   text input  = input_tokens − cached_input_tokens − audio_input_tokens
 *   cached      = cached_input_tokens       (price falls back to input)
 *   audio in    = audio_input_tokens        (price falls back to input)
 *   text output = output_tokens − audio_output_tokens
 *   audio out   = audio_output_tokens       (price falls back to output)
 *   characters, audio minutes
 * Model lookup: exact name first, then the longest matching prefix entry
 * ("gpt-4o-mini*" matches "gpt-4o-mini-2024-07-18"), then the provider's "*"
 * entry. */
#ifndef BYOK_PRICING_H
#define BYOK_PRICING_H

#include "config.h"
#include "usage_record.h"

/* Borrowed from cfg; NULL when no entry matches. */
const struct config_price *pricing_find(const struct config *cfg, const struct provider *p,
                                        const char *model);
/* Cost in micro-USD; 0 when price is NULL. */
int64_t pricing_cost(const struct config_price *price, const struct usage_units *u);

#endif
