/* ledger.h - the payers' available funds in this process (DESIGN §3.4):
 *
 *   available = plan credits + wallet (as committed in the store)
 *             - holds of the wallet lines still running
 *             - charges handed to the usage writer and not yet committed
 *
 * A wallet line is admitted only while available > 0, and takes its hold in
 * the same step (ledger_admit); so N concurrent requests against 1 micro-USD
 * admit exactly one. When the line writes its record the hold turns into the
 * record's exact charge (ledger_settle), and when the writer commits the
 * charge it leaves the ledger and enters the balance in one step under the
 * same lock (ledger_batch_end): available funds never jump up in between.
 *
 * One process holds a SQLite store at a time (store_sqlite_lock.c), so in
 * SQLite mode this process-wide table is the whole truth. Holds live as long
 * as their requests: a process that dies takes both with it. Thread-safe:
 * one mutex, held for a hash lookup (and, when a payer is first seen or was
 * invalidated, one store read). */
#ifndef BYOK_LEDGER_H
#define BYOK_LEDGER_H

#include "common.h"
#include "usage_record.h"

struct store;

enum ledger_status {
    LEDGER_OK = 0,
    LEDGER_NO_FUNDS,    /* available <= 0: 402 */
    LEDGER_NO_PAYER,    /* the payer does not exist */
    LEDGER_STORE_ERROR, /* its balances could not be read */
};

/* Admits a wallet line of payer_id when its available funds are > 0, and
 * takes a hold of hold_micros (>= 0) in the same step. s (the caller's
 * handle) reads the payer's balances when the ledger has none. */
MUST_CHECK enum ledger_status ledger_admit(struct store *s, const char *payer_id,
                                           int64_t hold_micros);
/* A hold taken by ledger_admit that no record will settle (the request was
 * refused later, or ended without a record). */
void ledger_release(const char *payer_id, int64_t hold_micros);
/* The payer's available funds now (reading its balances through s when the
 * ledger has none). -1 with *funds untouched when they cannot be read. */
MUST_CHECK int ledger_available(struct store *s, const char *payer_id, int64_t *funds);

/* The usage writer's side (usage.c). A record submitted: its hold
 * (r->hold_micros) is released and its charge (r->pending_micros, set here:
 * the cost of a wallet line, else 0) reserved until committed. */
void ledger_settle(struct usage_record *r);
/* Around one store transaction of records: begin before it, end after it
 * committed (charged_* filled by the store) or failed. */
void ledger_batch_begin(const struct usage_record *recs, size_t n);
void ledger_batch_end(struct usage_record *recs, size_t n, bool committed);
/* Records the store did not take went to the spool: their reserved charges
 * stay reserved until a replay commits them (pending_micros becomes 0). */
void ledger_batch_spooled(struct usage_record *recs, size_t n);

/* The payer's balances changed outside the writer (top-up) or it was
 * deleted: read them again on next use. */
void ledger_invalidate(const char *payer_id);
/* What the payer has reserved: holds + charges not yet committed (the
 * tenant read's held_micros). */
int64_t ledger_held(const char *payer_id);

/* Forgets everything (tests). */
void ledger_reset(void);

#endif
