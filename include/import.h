/* import.h - `byok-proxy --config REDIS_CONFIG --import-sqlite PATH`
 * (DESIGN §7b, moving up from one machine): copies tenants (with their
 * balances), proxy keys (hashes), connections (still sealed), BYOK settings
 * and the proxy's sealed secrets from a SQLite store into the fleet's Redis.
 *
 * Idempotent, and safe: everything is compared first, and when Redis
 * already holds an entry with other data (a tenant whose balances moved
 * since, a key revoked there, another proxy-key hashing key...) nothing at
 * all is written and the differences are listed: overwriting could undo
 * charges or revocations made in the fleet, adding would double balances.
 * Entries Redis holds with the same data are left alone; the missing ones
 * are created. Usage history stays in SQLite. The SQLite store's lock is
 * held while it is read, so no proxy runs on it meanwhile. */
#ifndef BYOK_IMPORT_H
#define BYOK_IMPORT_H

#include "common.h"

#include <stdio.h>

struct config;
struct store;

/* What an import found and did, per kind of entry. */
struct import_counts {
    size_t created, same; /* written now; already in Redis with this data */
};

struct import_summary {
    struct import_counts tenants, keys, connections, byok, secrets;
    size_t conflicts; /* entries Redis holds with other data: nothing written */
};

/* Copies from src into dst (both open handles; borrowed), comparing first.
 * Conflicts are printed to out (ids and field names, numbers for balances,
 * never a secret or a hash) and nothing is written. STORE_OK with *sum
 * filled (conflicts counted) or a STORE_* error (logged). */
MUST_CHECK int import_copy(struct store *src, struct store *dst, FILE *out,
                           struct import_summary *sum);

/* The command: locks and opens the SQLite store at path, opens cfg's
 * store (which must be "redis") and imports. Prints what it did to out.
 * Returns the process exit code. */
int import_sqlite(const struct config *cfg, const char *path, FILE *out);

#endif
