/* charge.h - the charging policy (DESIGN §5, §7): how a usage record's cost
 * is taken from its payer. Pure arithmetic on balances a backend has read
 * inside its transaction, so every store backend (SQLite, Redis) moves money
 * exactly alike; the backend only reads and writes the balances.
 *
 * The policy: BYOK lines and lines without a positive cost charge nothing,
 * nor do exempt lines: a simulated upstream's records under the config's
 * simulate.charge false (the record carries that as no_charge, decided when
 * it is made, so a replay charges what the line would have charged).
 * Plan credits go first, as far as they are positive; the rest comes from
 * the wallet, which may go negative (a running session is not cut off).
 * A payer that no longer exists (deleted while the request ran) is not
 * charged: the record is still written, uncharged.
 *
 * The split (what comes from plan credits, what from the wallet) depends on
 * the cost and the plan credits only, never on the wallet: a backend that
 * charges by compare-and-set (Redis, store_redis_usage.c) checks that the
 * plan credits are unchanged and moves the wallet by the amount, so
 * instances charging one payer at once do not collide over its wallet. */
#ifndef BYOK_CHARGE_H
#define BYOK_CHARGE_H

#include "common.h"

/* A payer's balances. */
struct charge_balance {
    int64_t plan_credits_micros;
    int64_t wallet_micros;
};

enum charge_result {
    CHARGE_NONE = 0,      /* nothing to charge: a BYOK or exempt line, or no positive cost */
    CHARGE_APPLIED,       /* the cost was taken from the payer */
    CHARGE_PAYER_MISSING, /* to charge, but the payer no longer exists: uncharged */
};

struct charge {
    int64_t plan_credits_micros; /* taken from plan credits, >= 0 */
    int64_t wallet_micros;       /* taken from the wallet, >= 0 */
    struct charge_balance after; /* the payer's balances after the charge */
};

/* Does a line with this billing, exemption and cost charge its payer at
 * all? A backend asks before it reads the payer's balances. */
bool charge_needed(bool billed_byok, bool exempt, int64_t cost_micros);

/* Applies the policy to one line. payer: the payer's current balances, or
 * NULL when the payer does not exist (borrowed for the call). out gets the
 * amounts taken (plan + wallet = cost when applied, both 0 otherwise) and the
 * balances after (= *payer when nothing is taken; zero for a missing payer).
 * A wallet that would fall below INT64_MIN stays at INT64_MIN. */
enum charge_result charge_apply(bool billed_byok, bool exempt, int64_t cost_micros,
                                const struct charge_balance *payer, struct charge *out);

#endif
