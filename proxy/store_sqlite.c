/* store_sqlite.c - the embedded SQLite store backend: one connection per
 * handle (per thread), WAL, versioned schema migrations, cached prepared
 * statements (every query's SQL in one table here), tenants, keys, BYOK
 * connections and settings, secrets. The usage half (records inserted and
 * their payers charged, queried, read back in commit order) is
 * store_sqlite_usage.c. */
#include "common.h"
#include "store_sqlite.h"
#include "store.h"
#include "store_sqlite_schema.h"
#include "fsutil.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* In WAL mode, synchronous=FULL syncs the WAL at every commit, so a commit
 * that returned (an acknowledged admin write, a charged batch) survives a
 * power loss too; NORMAL syncs only at checkpoints and may lose the last
 * commits. The cost is one fsync per transaction: the usage writer pays it
 * once per batch (README, "The SQLite store", has the figures). Overridable at build
 * time only to measure that (tests/bench/usage_writer.sh). */
#ifndef STORE_SQLITE_SYNCHRONOUS
#define STORE_SQLITE_SYNCHRONOUS "FULL"
#endif

#define TENANT_COLS                                                                                \
    "id, name, feature_byok, feature_agency, parent_id, wallet_deduction, plan_credits_micros,"    \
    " wallet_micros, created_at_ms, updated_at_ms, live_sessions"
#define KEY_COLS    "id, tenant_id, label, hash, created_at_ms, revoked_at_ms"
#define USAGE_ORDER " ORDER BY ts_ms DESC, id DESC LIMIT ?3"
#define CONN_COLS                                                                                  \
    "id, tenant_id, provider, name, region, key_hint, key_version, sealed, created_at_ms,"         \
    " updated_at_ms"
#define CONN_ORDER " ORDER BY created_at_ms, rowid"
static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PING] = "SELECT 1",
    [ST_TENANT_INSERT] =
        "INSERT INTO tenants (" TENANT_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    [ST_TENANT_GET] = "SELECT " TENANT_COLS " FROM tenants WHERE id = ?1",
    [ST_TENANT_UPDATE] =
        "UPDATE tenants SET name = ?2, feature_byok = ?3, feature_agency = ?4,"
        " parent_id = ?5, wallet_deduction = ?6, updated_at_ms = ?7, live_sessions = ?8"
        " WHERE id = ?1",
    [ST_TENANT_HAS_CHILDREN] = "SELECT 1 FROM tenants WHERE parent_id = ?1 LIMIT 1",
    [ST_TENANT_DELETE_KEYS] = "DELETE FROM proxy_keys WHERE tenant_id = ?1",
    [ST_TENANT_DELETE] = "DELETE FROM tenants WHERE id = ?1",
    [ST_TENANT_TOPUP] = "UPDATE tenants SET wallet_micros = wallet_micros + ?2,"
                        " plan_credits_micros = plan_credits_micros + ?3, updated_at_ms = ?4"
                        " WHERE id = ?1",
    [ST_TENANT_LIST] = "SELECT " TENANT_COLS " FROM tenants ORDER BY id",
    [ST_KEY_INSERT] = "INSERT INTO proxy_keys (" KEY_COLS ") VALUES (?1,?2,?3,?4,?5,?6)",
    [ST_KEY_LIST] = "SELECT " KEY_COLS " FROM proxy_keys WHERE tenant_id = ?1"
                    " ORDER BY created_at_ms, rowid",
    /* Revoking twice keeps the first time. */
    [ST_KEY_REVOKE] = "UPDATE proxy_keys SET revoked_at_ms = CASE WHEN revoked_at_ms = 0 THEN ?3"
                      " ELSE revoked_at_ms END WHERE id = ?1 AND tenant_id = ?2",
    [ST_KEY_GET] = "SELECT " KEY_COLS " FROM proxy_keys WHERE id = ?1",
    [ST_USAGE_INSERT] = "INSERT INTO usage (id, ts_ms, tenant_id, payer_id, key_id, session_id,"
                        " provider, line, billed_to, cost_micros, charged_plan_credits_micros,"
                        " charged_wallet_micros, record)"
                        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
                        " ON CONFLICT (id) DO NOTHING",
    [ST_PAYER_GET] = "SELECT plan_credits_micros, wallet_micros FROM tenants WHERE id = ?1",
    /* Balances computed by charge_apply() from what ST_PAYER_GET read in the
     * same transaction. */
    [ST_PAYER_SET] =
        "UPDATE tenants SET plan_credits_micros = ?2, wallet_micros = ?3 WHERE id = ?1",
    [ST_USAGE_Q_ALL] = "SELECT record FROM usage" USAGE_ORDER,
    [ST_USAGE_Q_TENANT] = "SELECT record FROM usage WHERE tenant_id = ?1" USAGE_ORDER,
    [ST_USAGE_Q_SESSION] = "SELECT record FROM usage WHERE session_id = ?2" USAGE_ORDER,
    [ST_USAGE_Q_BOTH] =
        "SELECT record FROM usage WHERE tenant_id = ?1 AND session_id = ?2" USAGE_ORDER,
    /* Another tenant's slot can only name one of these by mistake, but a
     * dangling id must never outlive its connection. */
    [ST_TENANT_CLEAR_SLOTS] = "DELETE FROM byok_slots WHERE tenant_id = ?1 OR connection_id IN"
                              " (SELECT id FROM connections WHERE tenant_id = ?1)",
    [ST_TENANT_DELETE_CONNS] = "DELETE FROM connections WHERE tenant_id = ?1",
    [ST_TENANT_DELETE_BYOK] = "DELETE FROM byok_settings WHERE tenant_id = ?1",
    [ST_CONN_INSERT] =
        "INSERT INTO connections (" CONN_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    [ST_CONN_GET] = "SELECT " CONN_COLS " FROM connections WHERE id = ?1 AND tenant_id = ?2",
    [ST_CONN_UPDATE] = "UPDATE connections SET name = ?3, region = ?4, key_hint = ?5,"
                       " key_version = ?6, sealed = ?7, updated_at_ms = ?8"
                       " WHERE id = ?1 AND tenant_id = ?2",
    [ST_CONN_DELETE] = "DELETE FROM connections WHERE id = ?1 AND tenant_id = ?2",
    [ST_CONN_LIST_TENANT] = "SELECT " CONN_COLS " FROM connections WHERE tenant_id = ?1" CONN_ORDER,
    [ST_CONN_LIST_ALL] = "SELECT " CONN_COLS " FROM connections" CONN_ORDER,
    [ST_CONN_RESEAL] = "UPDATE connections SET key_version = ?2, sealed = ?3 WHERE id = ?1",
    [ST_SLOTS_TOUCH] = "UPDATE byok_settings SET updated_at_ms = ?2 WHERE tenant_id IN"
                       " (SELECT tenant_id FROM byok_slots WHERE connection_id = ?1)",
    [ST_SLOTS_CLEAR] = "DELETE FROM byok_slots WHERE connection_id = ?1",
    [ST_BYOK_GET] = "SELECT enabled, updated_at_ms FROM byok_settings WHERE tenant_id = ?1",
    [ST_BYOK_SLOTS_GET] = "SELECT provider, connection_id FROM byok_slots WHERE tenant_id = ?1",
    [ST_BYOK_PUT] = "INSERT INTO byok_settings (tenant_id, enabled, updated_at_ms)"
                    " VALUES (?1,?2,?3) ON CONFLICT (tenant_id) DO UPDATE SET"
                    " enabled = excluded.enabled, updated_at_ms = excluded.updated_at_ms",
    [ST_BYOK_SLOTS_DELETE] = "DELETE FROM byok_slots WHERE tenant_id = ?1",
    [ST_BYOK_SLOT_INSERT] =
        "INSERT INTO byok_slots (tenant_id, provider, connection_id) VALUES (?1,?2,?3)",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_SECRET_GET] = "SELECT key_version, sealed FROM secrets WHERE name = ?1",
    [ST_SECRET_PUT] = "INSERT INTO secrets (name, key_version, sealed) VALUES (?1,?2,?3)"
                      " ON CONFLICT (name) DO UPDATE SET key_version = excluded.key_version,"
                      " sealed = excluded.sealed",
    [ST_SECRET_LIST] = "SELECT name, key_version, sealed FROM secrets ORDER BY name",
    /* usage is a rowid table whose rows are inserted in commit order and
     * never deleted or rebuilt: rowid order is commit order. */
    [ST_USAGE_ROWID] = "SELECT rowid FROM usage WHERE id = ?1",
    [ST_USAGE_AFTER] = "SELECT id, record FROM usage WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
};

int store_sqlite_fail(struct sqlite_store *sq, const char *what)
{
    log_error("store(sqlite): %s failed: %s", what, sqlite3_errmsg(sq->db));
    return STORE_ERR_INTERNAL;
}

sqlite3_stmt *store_sqlite_stmt(struct sqlite_store *sq, enum stmt_id id)
{
    if (sq->stmts[id] == NULL) {
        if (sqlite3_prepare_v3(sq->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &sq->stmts[id],
                               NULL) != SQLITE_OK) {
            (void)store_sqlite_fail(sq, "prepare");
            sq->stmts[id] = NULL;
            return NULL;
        }
    }
    return sq->stmts[id];
}

void store_sqlite_stmt_done(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int store_sqlite_run(struct sqlite_store *sq, enum stmt_id id)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, id);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

void store_sqlite_rollback(struct sqlite_store *sq)
{
    if (sqlite3_get_autocommit(sq->db))
        return; /* the failed statement already ended the transaction */
    if (store_sqlite_run(sq, ST_ROLLBACK) == -1)
        (void)store_sqlite_fail(sq, "ROLLBACK");
}

void store_sqlite_bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL || s[0] == '\0')
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void col_text(sqlite3_stmt *st, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, size, "%s", t != NULL ? (const char *)t : "");
}

static void read_tenant(sqlite3_stmt *st, struct store_tenant *t)
{
    memset(t, 0, sizeof(*t));
    col_text(st, 0, t->id, sizeof(t->id));
    col_text(st, 1, t->name, sizeof(t->name));
    t->feature_byok = sqlite3_column_int(st, 2) != 0;
    t->feature_agency = sqlite3_column_int(st, 3) != 0;
    col_text(st, 4, t->parent_id, sizeof(t->parent_id));
    t->wallet_deduction = sqlite3_column_int(st, 5) != 0;
    t->plan_credits_micros = sqlite3_column_int64(st, 6);
    t->wallet_micros = sqlite3_column_int64(st, 7);
    t->created_at_ms = sqlite3_column_int64(st, 8);
    t->updated_at_ms = sqlite3_column_int64(st, 9);
    t->live_sessions = sqlite3_column_int64(st, 10);
}

static MUST_CHECK int read_key(sqlite3_stmt *st, struct store_key *k)
{
    memset(k, 0, sizeof(*k));
    col_text(st, 0, k->id, sizeof(k->id));
    col_text(st, 1, k->tenant_id, sizeof(k->tenant_id));
    col_text(st, 2, k->label, sizeof(k->label));
    const void *hash = sqlite3_column_blob(st, 3);
    if (hash == NULL || sqlite3_column_bytes(st, 3) != (int)sizeof(k->hash)) {
        log_error("store(sqlite): key %s has a malformed hash column", k->id);
        return -1;
    }
    memcpy(k->hash, hash, sizeof(k->hash));
    k->created_at_ms = sqlite3_column_int64(st, 4);
    k->revoked_at_ms = sqlite3_column_int64(st, 5);
    return 0;
}

static void sq_close(struct store *s)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    for (size_t i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(sq->stmts[i]);
    sqlite3_close_v2(sq->db);
    usage_record_lines_free(&sq->scratch);
    free(sq);
}

static int sq_ping(struct store *s)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_PING);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    return rc == SQLITE_ROW ? STORE_OK : store_sqlite_fail(sq, "ping");
}

static int sq_tenant_create(struct store *s, const struct store_tenant *t)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_TENANT_INSERT);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, t->feature_byok);
    sqlite3_bind_int(st, 4, t->feature_agency);
    store_sqlite_bind_text_or_null(st, 5, t->parent_id);
    sqlite3_bind_int(st, 6, t->wallet_deduction);
    sqlite3_bind_int64(st, 7, t->plan_credits_micros);
    sqlite3_bind_int64(st, 8, t->wallet_micros);
    sqlite3_bind_int64(st, 9, t->created_at_ms != 0 ? t->created_at_ms : now);
    sqlite3_bind_int64(st, 10, t->updated_at_ms != 0 ? t->updated_at_ms : now);
    sqlite3_bind_int64(st, 11, t->live_sessions);
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(sq->db);
    store_sqlite_stmt_done(st);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return STORE_ERR_EXISTS;
    return store_sqlite_fail(sq, "tenant create");
}

static int sq_tenant_get(struct store *s, const char *id, struct store_tenant *out)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_TENANT_GET);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_tenant(st, out);
    store_sqlite_stmt_done(st);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_ERR_NOT_FOUND;
    return store_sqlite_fail(sq, "tenant get");
}

static int sq_tenant_update(struct store *s, const struct store_tenant *t)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_TENANT_UPDATE);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, t->feature_byok);
    sqlite3_bind_int(st, 4, t->feature_agency);
    store_sqlite_bind_text_or_null(st, 5, t->parent_id);
    sqlite3_bind_int(st, 6, t->wallet_deduction);
    sqlite3_bind_int64(st, 7, now_ms());
    sqlite3_bind_int64(st, 8, t->live_sessions);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "tenant update");
    return sqlite3_changes(sq->db) == 1 ? STORE_OK : STORE_ERR_NOT_FOUND;
}

/* Steps a statement bound with one id; 1 = a row, 0 = none, -1 = error. */
static int step_exists(struct sqlite_store *sq, enum stmt_id id, const char *arg)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, id);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int step_id(struct sqlite_store *sq, enum stmt_id id, const char *arg)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, id);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_tenant_delete(struct store *s, const char *id)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    int status = STORE_ERR_INTERNAL;
    if (store_sqlite_run(sq, ST_BEGIN) == -1)
        return store_sqlite_fail(sq, "BEGIN");
    int found = step_exists(sq, ST_TENANT_GET, id);
    if (found != 1) {
        status = found == 0 ? STORE_ERR_NOT_FOUND : store_sqlite_fail(sq, "tenant delete");
        goto failed;
    }
    int children = step_exists(sq, ST_TENANT_HAS_CHILDREN, id);
    if (children != 0) {
        status = children == 1 ? STORE_ERR_CONFLICT : store_sqlite_fail(sq, "tenant delete");
        goto failed;
    }
    /* Explicit rather than relying on the cascade, which needs
     * foreign_keys=ON on every connection that ever deletes. */
    if (step_id(sq, ST_TENANT_CLEAR_SLOTS, id) == -1 ||
        step_id(sq, ST_TENANT_DELETE_CONNS, id) == -1 ||
        step_id(sq, ST_TENANT_DELETE_BYOK, id) == -1 ||
        step_id(sq, ST_TENANT_DELETE_KEYS, id) == -1 || step_id(sq, ST_TENANT_DELETE, id) == -1) {
        status = store_sqlite_fail(sq, "tenant delete");
        goto failed;
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        status = store_sqlite_fail(sq, "COMMIT");
        goto failed;
    }
    return STORE_OK;
failed:
    store_sqlite_rollback(sq);
    return status;
}

static int sq_tenant_topup(struct store *s, const char *id, int64_t wallet, int64_t plan,
                           struct store_tenant *out)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    int status = STORE_ERR_INTERNAL;
    if (store_sqlite_run(sq, ST_BEGIN) == -1)
        return store_sqlite_fail(sq, "BEGIN");
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_TENANT_TOPUP);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, wallet);
    sqlite3_bind_int64(st, 3, plan);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE) {
        status = store_sqlite_fail(sq, "tenant topup");
        goto failed;
    }
    if (sqlite3_changes(sq->db) != 1) {
        status = STORE_ERR_NOT_FOUND;
        goto failed;
    }
    /* Read back inside the transaction: *out is exactly this change. */
    status = sq_tenant_get(s, id, out);
    if (status != STORE_OK)
        goto failed;
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        status = store_sqlite_fail(sq, "COMMIT");
        goto failed;
    }
    return STORE_OK;
failed:
    store_sqlite_rollback(sq);
    return status;
}

/* cb runs while the statement is stepping: it must not use this handle. */
static int sq_tenant_list(struct store *s, store_tenant_cb cb, void *arg)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_TENANT_LIST);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    int rc;
    struct store_tenant t;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_tenant(st, &t);
        cb(arg, &t);
    }
    store_sqlite_stmt_done(st);
    return rc == SQLITE_DONE ? STORE_OK : store_sqlite_fail(sq, "tenant list");
}

static int sq_key_create(struct store *s, const struct store_key *k)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_KEY_INSERT);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->label, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, k->hash, sizeof(k->hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, k->created_at_ms != 0 ? k->created_at_ms : now_ms());
    sqlite3_bind_int64(st, 6, k->revoked_at_ms);
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(sq->db);
    store_sqlite_stmt_done(st);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return STORE_ERR_EXISTS;
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        return STORE_ERR_NOT_FOUND; /* no such tenant */
    return store_sqlite_fail(sq, "key create");
}

/* cb runs while the statement is stepping: it must not use this handle. */
static int sq_key_list(struct store *s, const char *tenant_id, store_key_cb cb, void *arg)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_KEY_LIST);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    int rc;
    int status = STORE_OK;
    struct store_key k;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (read_key(st, &k) == -1) {
            status = STORE_ERR_INTERNAL;
            continue;
        }
        cb(arg, &k);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "key list");
    return status;
}

static int sq_key_revoke(struct store *s, const char *tenant_id, const char *key_id)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_KEY_REVOKE);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms());
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "key revoke");
    return sqlite3_changes(sq->db) == 1 ? STORE_OK : STORE_ERR_NOT_FOUND;
}

static int sq_key_get(struct store *s, const char *key_id, struct store_key *out)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_KEY_GET);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int status;
    if (rc == SQLITE_ROW)
        status = read_key(st, out) == 0 ? STORE_OK : STORE_ERR_INTERNAL;
    else if (rc == SQLITE_DONE)
        status = STORE_ERR_NOT_FOUND;
    else
        status = store_sqlite_fail(sq, "key get");
    store_sqlite_stmt_done(st);
    return status;
}

static int sq_connection_create(struct store *s, const struct store_connection *c);
static int sq_connection_get(struct store *s, const char *tenant_id, const char *id,
                             struct store_connection *out);
static int sq_connection_update(struct store *s, const struct store_connection *c);
static int sq_connection_delete(struct store *s, const char *tenant_id, const char *id);
static int sq_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb,
                              void *arg);
static int sq_byok_get(struct store *s, const char *tenant_id, struct store_byok *out);
static int sq_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b);
static int sq_secret_get(struct store *s, const char *name, int *key_version,
                         unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len);
static int sq_secret_put(struct store *s, const char *name, int key_version,
                         const unsigned char *sealed, size_t sealed_len);
static int sq_secret_list(struct store *s, store_secret_cb cb, void *arg);
static int sq_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count);

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .ping = sq_ping,
    .tenant_create = sq_tenant_create,
    .tenant_get = sq_tenant_get,
    .tenant_update = sq_tenant_update,
    .tenant_delete = sq_tenant_delete,
    .tenant_topup = sq_tenant_topup,
    .tenant_list = sq_tenant_list,
    .key_create = sq_key_create,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .key_get = sq_key_get,
    .usage_write = store_sqlite_usage_write,
    .usage_query = store_sqlite_usage_query,
    .usage_after = store_sqlite_usage_after,
    .connection_create = sq_connection_create,
    .connection_get = sq_connection_get,
    .connection_update = sq_connection_update,
    .connection_delete = sq_connection_delete,
    .connection_list = sq_connection_list,
    .byok_get = sq_byok_get,
    .byok_put = sq_byok_put,
    .secret_get = sq_secret_get,
    .secret_put = sq_secret_put,
    .secret_list = sq_secret_list,
    .reseal_all = sq_reseal_all,
};

/* --- BYOK: connections, settings, secrets, re-sealing ------------------- */

static struct sqlite_store *byok_sq(struct store *s)
{
    if (s == NULL || s->ops != &sqlite_ops) {
        log_error("store: BYOK operations need the sqlite backend");
        return NULL;
    }
    return store_sqlite_of(s);
}

/* Column order of CONN_COLS. -1 when the row is malformed (logged). */
static MUST_CHECK int read_connection(sqlite3_stmt *st, struct store_connection *c)
{
    memset(c, 0, sizeof(*c));
    col_text(st, 0, c->id, sizeof(c->id));
    col_text(st, 1, c->tenant_id, sizeof(c->tenant_id));
    const char *pname = (const char *)sqlite3_column_text(st, 2);
    col_text(st, 3, c->name, sizeof(c->name));
    col_text(st, 4, c->region, sizeof(c->region));
    col_text(st, 5, c->key_hint, sizeof(c->key_hint));
    c->key_version = sqlite3_column_int(st, 6);
    const void *sealed = sqlite3_column_blob(st, 7);
    int len = sqlite3_column_bytes(st, 7);
    c->created_at_ms = sqlite3_column_int64(st, 8);
    c->updated_at_ms = sqlite3_column_int64(st, 9);
    c->provider = provider_find(pname);
    if (c->provider == NULL || !c->provider->slot || sealed == NULL || len <= 0 ||
        (size_t)len > sizeof(c->sealed)) {
        log_error("store(sqlite): connection %s has a malformed row", c->id);
        return -1;
    }
    memcpy(c->sealed, sealed, (size_t)len);
    c->sealed_len = (size_t)len;
    return 0;
}

static bool connection_valid(const struct store_connection *c)
{
    return c->sealed_len > 0 && c->sealed_len <= sizeof(c->sealed) && c->provider != NULL &&
           c->provider->slot;
}

static int sq_connection_create(struct store *s, const struct store_connection *c)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL || !connection_valid(c))
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_CONN_INSERT);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, provider_name(c->provider), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
    store_sqlite_bind_text_or_null(st, 5, c->region);
    sqlite3_bind_text(st, 6, c->key_hint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, c->key_version);
    sqlite3_bind_blob(st, 8, c->sealed, (int)c->sealed_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, c->created_at_ms != 0 ? c->created_at_ms : now);
    sqlite3_bind_int64(st, 10, c->updated_at_ms != 0 ? c->updated_at_ms : now);
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(sq->db);
    store_sqlite_stmt_done(st);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return STORE_ERR_EXISTS;
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        return STORE_ERR_NOT_FOUND; /* no such tenant */
    return store_sqlite_fail(sq, "connection create");
}

static int sq_connection_get(struct store *s, const char *tenant_id, const char *id,
                             struct store_connection *out)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_CONN_GET);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    /* Scoped by tenant in the query itself: another tenant's id reads as
     * absent, never as someone else's row. */
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tenant_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int status;
    if (rc == SQLITE_ROW)
        status = read_connection(st, out) == 0 ? STORE_OK : STORE_ERR_INTERNAL;
    else if (rc == SQLITE_DONE)
        status = STORE_ERR_NOT_FOUND;
    else
        status = store_sqlite_fail(sq, "connection get");
    store_sqlite_stmt_done(st);
    return status;
}

static int sq_connection_update(struct store *s, const struct store_connection *c)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL || !connection_valid(c))
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_CONN_UPDATE);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
    store_sqlite_bind_text_or_null(st, 4, c->region);
    sqlite3_bind_text(st, 5, c->key_hint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, c->key_version);
    sqlite3_bind_blob(st, 7, c->sealed, (int)c->sealed_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, c->updated_at_ms != 0 ? c->updated_at_ms : now_ms());
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "connection update");
    return sqlite3_changes(sq->db) == 1 ? STORE_OK : STORE_ERR_NOT_FOUND;
}

static int sq_connection_delete(struct store *s, const char *tenant_id, const char *id)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    int status = STORE_ERR_INTERNAL;
    if (store_sqlite_run(sq, ST_BEGIN) == -1)
        return store_sqlite_fail(sq, "BEGIN");
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_CONN_DELETE);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tenant_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE) {
        status = store_sqlite_fail(sq, "connection delete");
        goto failed;
    }
    if (sqlite3_changes(sq->db) != 1) {
        status = STORE_ERR_NOT_FOUND;
        goto failed;
    }
    /* In the same transaction: no reader ever sees a slot naming a
     * connection that is gone. */
    for (int k = 0; k < 2; k++) {
        st = store_sqlite_stmt(sq, k == 0 ? ST_SLOTS_TOUCH : ST_SLOTS_CLEAR);
        if (st == NULL)
            goto failed;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (k == 0)
            sqlite3_bind_int64(st, 2, now_ms());
        rc = sqlite3_step(st);
        store_sqlite_stmt_done(st);
        if (rc != SQLITE_DONE) {
            status = store_sqlite_fail(sq, "connection delete (slots)");
            goto failed;
        }
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        status = store_sqlite_fail(sq, "COMMIT");
        goto failed;
    }
    return STORE_OK;
failed:
    store_sqlite_rollback(sq);
    return status;
}

/* cb runs while the statement is stepping: it must not use this handle. */
static int sq_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb,
                              void *arg)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st =
        store_sqlite_stmt(sq, tenant_id != NULL ? ST_CONN_LIST_TENANT : ST_CONN_LIST_ALL);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    if (tenant_id != NULL)
        sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    int rc;
    int status = STORE_OK;
    struct store_connection c;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (read_connection(st, &c) == -1) {
            status = STORE_ERR_INTERNAL;
            continue;
        }
        cb(arg, &c);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "connection list");
    return status;
}

/* Settings row and slot rows, read in one transaction. */
static int sq_byok_get(struct store *s, const char *tenant_id, struct store_byok *out)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (store_sqlite_run(sq, ST_BEGIN_READ) == -1)
        return store_sqlite_fail(sq, "BEGIN");
    int status = STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_BYOK_GET);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->enabled = sqlite3_column_int(st, 0) != 0;
        out->updated_at_ms = sqlite3_column_int64(st, 1);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        status = store_sqlite_fail(sq, "byok get");
        goto failed;
    }
    st = store_sqlite_stmt(sq, ST_BYOK_SLOTS_GET);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* A slot of a provider this build does not know is ignored. */
        int slot = provider_slot_index(provider_find((const char *)sqlite3_column_text(st, 0)));
        if (slot >= 0)
            col_text(st, 1, out->slots[slot], ID_MAX);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE) {
        status = store_sqlite_fail(sq, "byok get (slots)");
        goto failed;
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        status = store_sqlite_fail(sq, "COMMIT");
        goto failed;
    }
    return STORE_OK; /* no row: disabled, empty slots */
failed:
    store_sqlite_rollback(sq);
    memset(out, 0, sizeof(*out));
    return status;
}

static int sq_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    if (store_sqlite_run(sq, ST_BEGIN) == -1)
        return store_sqlite_fail(sq, "BEGIN");
    int status = STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_BYOK_PUT);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, b->enabled);
    sqlite3_bind_int64(st, 3, b->updated_at_ms != 0 ? b->updated_at_ms : now_ms());
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(sq->db);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE) {
        status = ext == SQLITE_CONSTRAINT_FOREIGNKEY ? STORE_ERR_NOT_FOUND /* no such tenant */
                                                     : store_sqlite_fail(sq, "byok put");
        goto failed;
    }
    if (step_id(sq, ST_BYOK_SLOTS_DELETE, tenant_id) == -1) {
        status = store_sqlite_fail(sq, "byok put (slots)");
        goto failed;
    }
    for (size_t i = 0; i < provider_slot_count(); i++) {
        if (b->slots[i][0] == '\0')
            continue;
        st = store_sqlite_stmt(sq, ST_BYOK_SLOT_INSERT);
        if (st == NULL)
            goto failed;
        sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, provider_slot_at(i)->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, b->slots[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        store_sqlite_stmt_done(st);
        if (rc != SQLITE_DONE) {
            status = store_sqlite_fail(sq, "byok put (slot)");
            goto failed;
        }
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        status = store_sqlite_fail(sq, "COMMIT");
        goto failed;
    }
    return STORE_OK;
failed:
    store_sqlite_rollback(sq);
    return status;
}

static int sq_secret_get(struct store *s, const char *name, int *key_version,
                         unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_SECRET_GET);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int status = STORE_OK;
    if (rc == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if (blob == NULL || len <= 0 || len > CRYPTO_SEALED_MAX) {
            log_error("store(sqlite): secret %s has a malformed row", name);
            status = STORE_ERR_INTERNAL;
        } else {
            *key_version = sqlite3_column_int(st, 0);
            memcpy(sealed, blob, (size_t)len);
            *sealed_len = (size_t)len;
        }
    } else if (rc == SQLITE_DONE) {
        status = STORE_ERR_NOT_FOUND;
    } else {
        status = store_sqlite_fail(sq, "secret get");
    }
    store_sqlite_stmt_done(st);
    return status;
}

static int sq_secret_put(struct store *s, const char *name, int key_version,
                         const unsigned char *sealed, size_t sealed_len)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL || sealed_len == 0 || sealed_len > CRYPTO_SEALED_MAX)
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_SECRET_PUT);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, key_version);
    sqlite3_bind_blob(st, 3, sealed, (int)sealed_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    return rc == SQLITE_DONE ? STORE_OK : store_sqlite_fail(sq, "secret put");
}

/* cb runs while the statement is stepping: it must not use this handle. */
static int sq_secret_list(struct store *s, store_secret_cb cb, void *arg)
{
    struct sqlite_store *sq = byok_sq(s);
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_SECRET_LIST);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    int rc;
    int status = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char name[ID_MAX];
        col_text(st, 0, name, sizeof(name));
        const void *blob = sqlite3_column_blob(st, 2);
        int len = sqlite3_column_bytes(st, 2);
        if (blob == NULL || len <= 0 || len > CRYPTO_SEALED_MAX) {
            log_error("store(sqlite): secret %s has a malformed row", name);
            status = STORE_ERR_INTERNAL;
            continue;
        }
        cb(arg, name, sqlite3_column_int(st, 1), blob, (size_t)len);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(sq, "secret list");
    return status;
}

/* One sealed record collected for re-sealing: the rows are read in full
 * before any is updated, so no UPDATE runs while a SELECT on the same
 * handle is still stepping. */
struct reseal_row {
    char tenant_id[ID_MAX]; /* "" for the proxy's own secrets */
    char id[ID_MAX];        /* connection id or secret name */
    int version;
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t sealed_len;
};

struct reseal_rows {
    struct reseal_row *v;
    size_t n, cap;
};

static struct reseal_row *reseal_push(struct reseal_rows *rows)
{
    if (rows->n == rows->cap) {
        size_t cap = rows->cap != 0 ? rows->cap * 2 : 64;
        struct reseal_row *grown = realloc(rows->v, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        rows->v = grown;
        rows->cap = cap;
    }
    struct reseal_row *r = &rows->v[rows->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

/* Reads every connection (secrets = false) or secret into rows. */
static MUST_CHECK int reseal_collect(struct sqlite_store *sq, bool secrets,
                                     struct reseal_rows *rows)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, secrets ? ST_SECRET_LIST : ST_CONN_LIST_ALL);
    if (st == NULL)
        return -1;
    int rc;
    int status = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct reseal_row *r = reseal_push(rows);
        if (r == NULL) {
            log_error("store(sqlite): out of memory re-sealing");
            status = -1;
            break;
        }
        const void *blob;
        int len;
        if (secrets) {
            col_text(st, 0, r->id, sizeof(r->id));
            r->version = sqlite3_column_int(st, 1);
            blob = sqlite3_column_blob(st, 2);
            len = sqlite3_column_bytes(st, 2);
        } else {
            col_text(st, 0, r->id, sizeof(r->id));
            col_text(st, 1, r->tenant_id, sizeof(r->tenant_id));
            r->version = sqlite3_column_int(st, 6);
            blob = sqlite3_column_blob(st, 7);
            len = sqlite3_column_bytes(st, 7);
        }
        /* A record that cannot be re-sealed would be lost with the old
         * key: stop rather than skip it. */
        if (blob == NULL || len <= 0 || len > CRYPTO_SEALED_MAX) {
            log_error("store(sqlite): %s %s has a malformed sealed value",
                      secrets ? "secret" : "connection", r->id);
            status = -1;
            break;
        }
        memcpy(r->sealed, blob, (size_t)len);
        r->sealed_len = (size_t)len;
    }
    store_sqlite_stmt_done(st);
    if (status == 0 && rc != SQLITE_DONE) {
        (void)store_sqlite_fail(sq, "reseal read");
        status = -1;
    }
    return status;
}

static MUST_CHECK int reseal_write(struct sqlite_store *sq, bool secret, const char *id,
                                   int version, const unsigned char *sealed, size_t len)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, secret ? ST_SECRET_PUT : ST_CONN_RESEAL);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, version);
    sqlite3_bind_blob(st, 3, sealed, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE || sqlite3_changes(sq->db) != 1)
        return -1;
    return 0;
}

static int sq_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count)
{
    struct sqlite_store *sq = byok_sq(s);
    struct reseal_rows conns = {0}, secrets = {0};
    unsigned char out[CRYPTO_SEALED_MAX];
    *count = 0;
    if (sq == NULL)
        return STORE_ERR_INTERNAL;
    int status = STORE_ERR_INTERNAL;
    if (store_sqlite_run(sq, ST_BEGIN) == -1) {
        (void)store_sqlite_fail(sq, "reseal BEGIN");
        goto done;
    }
    if (reseal_collect(sq, false, &conns) == -1 || reseal_collect(sq, true, &secrets) == -1)
        goto failed;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        const struct reseal_rows *rows = pass == 0 ? &conns : &secrets;
        for (size_t i = 0; i < rows->n; i++) {
            const struct reseal_row *r = &rows->v[i];
            size_t out_len = 0;
            int out_version = 0;
            if (fn(arg, r->tenant_id, r->id, r->sealed, r->sealed_len, r->version, out, &out_len,
                   &out_version) == -1)
                goto failed;
            if (out_len == 0 || out_len > sizeof(out)) {
                log_error("store(sqlite): re-sealing %s gave a malformed value", r->id);
                goto failed;
            }
            if (reseal_write(sq, pass == 1, r->id, out_version, out, out_len) == -1) {
                (void)store_sqlite_fail(sq, "reseal write");
                goto failed;
            }
            total++;
        }
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        (void)store_sqlite_fail(sq, "reseal COMMIT");
        goto failed;
    }
    *count = total;
    status = STORE_OK;
    goto done;
failed:
    store_sqlite_rollback(sq);
done:
    free(conns.v);
    free(secrets.v);
    return status;
}

static void sqlite_global_config(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *store_sqlite_open(const char *path, char **err)
{
    struct sqlite_store *sq = NULL;
    sqlite3 *db = NULL;
    const char *what = NULL;
    *err = NULL;

    if (fs_make_dirs(path, true) == -1) {
        if (asprintf(err, "cannot create the directory of the store %s: %s", path,
                     strerror(errno)) == -1)
            *err = NULL;
        goto failed;
    }
    /* No open() of our own here: other connections of this process may
     * have the file open, and closing any descriptor of it would drop their
     * POSIX locks (sqlite.org "How To Corrupt An SQLite Database File"
     * §2.2). store_sqlite_lock() created it with mode 0600 before the
     * first connection. */
    /* SQLite counts every allocation under a global mutex unless told not
     * to (SQLITE_CONFIG_MEMSTATUS); the proxy never reads the counts. Only
     * possible before SQLite's first use in the process: later calls are a
     * harmless SQLITE_MISUSE. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_global_config);
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        what = "open";
        goto sql_failed;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 5000);

    /* Switching to WAL needs a brief exclusive lock; another opener doing the
     * same at startup shows up as SQLITE_BUSY, hence the retry. */
    char *mode = NULL;
    for (int attempt = 0; attempt < 50; attempt++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW)
                mode = strdup((const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            break;
        sqlite3_sleep(20);
    }
    if (rc != SQLITE_ROW || mode == NULL || strcmp(mode, "wal") != 0) {
        free(mode);
        what = "enabling WAL";
        goto sql_failed;
    }
    free(mode);
    if (sqlite3_exec(db, "PRAGMA synchronous=" STORE_SQLITE_SYNCHRONOUS "; PRAGMA foreign_keys=ON;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        what = "setting pragmas";
        goto sql_failed;
    }
    if (store_sqlite_migrate(db, path, err) == -1)
        goto failed;

    sq = calloc(1, sizeof(*sq));
    if (sq == NULL) {
        *err = strdup("out of memory opening the store");
        goto failed;
    }
    sq->base.ops = &sqlite_ops;
    sq->db = db;
    return &sq->base;

sql_failed:
    if (asprintf(err, "SQLite store %s: %s failed: %s", path, what,
                 db != NULL ? sqlite3_errmsg(db) : "out of memory") == -1)
        *err = NULL;
failed:
    sqlite3_close_v2(db);
    return NULL;
}
