/* usage.h - the batching writer that persists and charges usage records
 * (usage_record.h) off the request path.
 *
 *   worker threads --usage_submit()--> queue --writer thread--> store batch
 *                        |             (+ its copy in the queue journal,
 *                        |              usage_journal.h: a kill -9 before the
 *                        |              commit loses nothing; replayed via
 *                        |              the spool at the next start)
 *                                                 |  (one transaction: insert
 *                                                 |   record + charge payer,
 *                                                 |   idempotent on id; gives
 *                                                 |   back the new records'
 *                                                 |   JSON text)
 *                                                 +--> JSONL file (that same
 *                                                 |    text, after commit;
 *                                                 |    synced once a second;
 *                                                 |    its tail restored from
 *                                                 |    the SQLite store at
 *                                                 |    start)
 *                                                 +--> spool dir (fsync'd) when
 *                                                      the store fails; replayed
 *                                                      later, none lost
 *
 * Every record, live or replayed, is checked first (usage_record_check): a
 * refused one is logged and appended to "<spool_dir>/rejected" for a human,
 * never stored or charged. */
#ifndef BYOK_USAGE_H
#define BYOK_USAGE_H

#include "common.h"
#include "usage_record.h"

struct config;

/* Starts the writer thread. The store backend is opened by the writer thread
 * from cfg (borrowed for the lifetime of the writer). Opens the queue
 * journal in the spool directory (what a killed process left there goes to
 * a spool file) and replays the spool directory first. Returns -1 with *err set (caller frees) on
 * failure. */
MUST_CHECK int usage_writer_start(const struct config *cfg, char **err);
/* Queues a copy of r. Thread-safe, never blocks on I/O. */
void usage_submit(const struct usage_record *r);
/* Writes everything queued, then stops the thread. Safe to call once. */
void usage_writer_stop(void);
/* Blocks until every record submitted before the call is committed (or
 * spooled). For admin reads that must see a just-finished request, and tests. */
void usage_writer_sync(void);

/* Counters for /metrics. */
struct usage_stats {
    uint64_t submitted, written, duplicates, spooled, replayed, batches;
    uint64_t rejected;    /* refused by usage_record_check(): set aside, never charged */
    uint64_t jsonl_syncs; /* fdatasyncs of the JSONL file (at most one a second, and at close) */
    uint64_t unjournaled; /* queued while the queue journal was full (usage_journal.h) */
    uint64_t journal_recovered; /* records a killed process left, replayed from the journal */
};
void usage_writer_stats(struct usage_stats *out);

#endif
