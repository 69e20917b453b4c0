/* store_sqlite.h - what the two files of the SQLite store backend share:
 * the handle, its prepared statements and their helpers (store_sqlite.c,
 * which also holds tenants, keys, BYOK connections and settings, secrets)
 * and the usage half (store_sqlite_usage.c: records inserted and charged,
 * queried, read back in commit order). Nothing outside the backend includes
 * it: callers use store.h. */
#ifndef BYOK_STORE_SQLITE_H
#define BYOK_STORE_SQLITE_H

#include "common.h"
#include "store.h"

#include <sqlite3.h>

/* The backend's statements; their SQL is one table, stmt_sql in
 * store_sqlite.c, so every query of the store reads in one place. */
enum stmt_id {
    ST_BEGIN = 0,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_TENANT_INSERT,
    ST_TENANT_GET,
    ST_TENANT_UPDATE,
    ST_TENANT_HAS_CHILDREN,
    ST_TENANT_DELETE_KEYS,
    ST_TENANT_DELETE,
    ST_TENANT_TOPUP,
    ST_TENANT_LIST,
    ST_KEY_INSERT,
    ST_KEY_LIST,
    ST_KEY_REVOKE,
    ST_KEY_GET,
    ST_USAGE_INSERT,
    ST_PAYER_GET,
    ST_PAYER_SET,
    ST_USAGE_Q_ALL,
    ST_USAGE_Q_TENANT,
    ST_USAGE_Q_SESSION,
    ST_USAGE_Q_BOTH,
    ST_TENANT_CLEAR_SLOTS,
    ST_TENANT_DELETE_CONNS,
    ST_TENANT_DELETE_BYOK,
    ST_CONN_INSERT,
    ST_CONN_GET,
    ST_CONN_UPDATE,
    ST_CONN_DELETE,
    ST_CONN_LIST_TENANT,
    ST_CONN_LIST_ALL,
    ST_CONN_RESEAL,
    ST_SLOTS_TOUCH,
    ST_SLOTS_CLEAR,
    ST_BYOK_GET,
    ST_BYOK_SLOTS_GET,
    ST_BYOK_PUT,
    ST_BYOK_SLOTS_DELETE,
    ST_BYOK_SLOT_INSERT,
    ST_BEGIN_READ,
    ST_SECRET_GET,
    ST_SECRET_PUT,
    ST_SECRET_LIST,
    ST_USAGE_ROWID,
    ST_USAGE_AFTER,
    ST__COUNT
};

/* One handle: one connection, used by one thread. */
struct sqlite_store {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *stmts[ST__COUNT];    /* prepared on first use, reused after reset */
    struct usage_record_lines scratch; /* record texts when the caller wants no lines */
};

static inline struct sqlite_store *store_sqlite_of(struct store *s)
{
    return container_of(s, struct sqlite_store, base);
}

/* Logs "what failed" with SQLite's message; returns STORE_ERR_INTERNAL. */
int store_sqlite_fail(struct sqlite_store *sq, const char *what);
/* The cached statement, reset and unbound (borrowed: the handle owns it),
 * or NULL (logged). Give it back with store_sqlite_stmt_done(). */
sqlite3_stmt *store_sqlite_stmt(struct sqlite_store *sq, enum stmt_id id);
/* Resets after use so no read transaction stays open on an idle handle.
 * NULL is a no-op. */
void store_sqlite_stmt_done(sqlite3_stmt *st);
/* Runs a statement without result rows (BEGIN/COMMIT/ROLLBACK/…). */
MUST_CHECK int store_sqlite_run(struct sqlite_store *sq, enum stmt_id id);
/* Rolls back the open transaction, if a failed statement left one. */
void store_sqlite_rollback(struct sqlite_store *sq);
/* Binds s, or NULL when s is NULL or "" (s borrowed until the step). */
void store_sqlite_bind_text_or_null(sqlite3_stmt *st, int i, const char *s);

/* The usage half (store_sqlite_usage.c), called through the store vtable:
 * store_usage_write(), store_usage_query() and store_usage_after() of
 * store.h, with their contracts. */
int store_sqlite_usage_write(struct store *s, struct usage_record *records, size_t n,
                             size_t *duplicates, struct usage_record_lines *lines);
int store_sqlite_usage_query(struct store *s, const char *tenant_id, const char *session_id,
                             int limit, json_t **out);
int store_sqlite_usage_after(struct store *s, const char *after_id, size_t max,
                             struct usage_record_lines *lines, size_t *count, char *last_id);

#endif
