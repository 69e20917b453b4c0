/* charge.c - the charging policy shared by the store backends (charge.h). */
#include "common.h"
#include "charge.h"

#include <string.h>

bool charge_needed(bool billed_byok, bool exempt, int64_t cost_micros)
{
    return !billed_byok && !exempt && cost_micros > 0;
}

enum charge_result charge_apply(bool billed_byok, bool exempt, int64_t cost_micros,
                                const struct charge_balance *payer, struct charge *out)
{
    memset(out, 0, sizeof(*out));
    if (payer != NULL)
        out->after = *payer;
    if (!charge_needed(billed_byok, exempt, cost_micros))
        return CHARGE_NONE;
    if (payer == NULL)
        return CHARGE_PAYER_MISSING;
    /* Never more than the plan holds, and nothing from a plan at or below
     * zero (a negative topup may have put it there). */
    int64_t from_plan = MIN(cost_micros, MAX(payer->plan_credits_micros, 0));
    int64_t from_wallet = cost_micros - from_plan;
    out->plan_credits_micros = from_plan;
    out->wallet_micros = from_wallet;
    out->after.plan_credits_micros = payer->plan_credits_micros - from_plan; /* >= 0 */
    if (__builtin_sub_overflow(payer->wallet_micros, from_wallet, &out->after.wallet_micros))
        out->after.wallet_micros = INT64_MIN;
    return CHARGE_APPLIED;
}
