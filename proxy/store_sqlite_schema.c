/* store_sqlite_schema.c - the SQLite store's schema: its versioned
 * migrations and the step that applies them. */
#include "common.h"
#include "provider.h"
#include "store_sqlite_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema migrations, applied in order, each in its own transaction; the
 * number applied is kept in PRAGMA user_version. Append new entries; never
 * edit one that has shipped. Plain CREATE (no IF NOT EXISTS) so that running
 * one twice would fail loudly instead of hiding a versioning bug. */
static const char *const migrations[] = {
    /* 1: tenants, proxy keys, usage records. */
    "CREATE TABLE tenants ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " feature_byok INTEGER NOT NULL DEFAULT 0,"
    " feature_agency INTEGER NOT NULL DEFAULT 0,"
    " parent_id TEXT," /* NULL = none; checked by the admin layer, not a FK */
    " wallet_deduction INTEGER NOT NULL DEFAULT 0,"
    " plan_credits_micros INTEGER NOT NULL DEFAULT 0,"
    " wallet_micros INTEGER NOT NULL DEFAULT 0,"
    " created_at_ms INTEGER NOT NULL,"
    " updated_at_ms INTEGER NOT NULL);"
    "CREATE INDEX tenants_parent ON tenants(parent_id);"
    "CREATE TABLE proxy_keys ("
    " id TEXT PRIMARY KEY,"
    " tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " label TEXT NOT NULL DEFAULT '',"
    " hash BLOB NOT NULL,"
    " created_at_ms INTEGER NOT NULL,"
    " revoked_at_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX proxy_keys_tenant ON proxy_keys(tenant_id, created_at_ms);"
    /* No FK to tenants: usage outlives a deleted tenant. */
    "CREATE TABLE usage ("
    " id TEXT PRIMARY KEY,"
    " ts_ms INTEGER NOT NULL,"
    " tenant_id TEXT NOT NULL,"
    " payer_id TEXT NOT NULL,"
    " key_id TEXT NOT NULL,"
    " session_id TEXT,"
    " provider TEXT NOT NULL,"
    " line TEXT NOT NULL,"
    " billed_to TEXT NOT NULL,"
    " cost_micros INTEGER NOT NULL,"
    " charged_plan_credits_micros INTEGER NOT NULL,"
    " charged_wallet_micros INTEGER NOT NULL,"
    " record TEXT NOT NULL);"
    "CREATE INDEX usage_tenant_ts ON usage(tenant_id, ts_ms);"
    "CREATE INDEX usage_session ON usage(session_id);"
    "CREATE INDEX usage_ts ON usage(ts_ms);",
    /* 2: BYOK connections (sealed secrets), BYOK settings, the proxy's own
     * sealed secrets. Slots are plain ids, not FKs: connection delete
     * clears them explicitly in its transaction. */
    "CREATE TABLE connections ("
    " id TEXT PRIMARY KEY,"
    " tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " provider TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " region TEXT,"
    " key_hint TEXT NOT NULL DEFAULT '',"
    " key_version INTEGER NOT NULL,"
    " sealed BLOB NOT NULL,"
    " created_at_ms INTEGER NOT NULL,"
    " updated_at_ms INTEGER NOT NULL);"
    "CREATE INDEX connections_tenant ON connections(tenant_id, created_at_ms);"
    "CREATE TABLE byok_settings ("
    " tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
    " enabled INTEGER NOT NULL DEFAULT 0,"
    " updated_at_ms INTEGER NOT NULL);"
    "CREATE TABLE secrets ("
    " name TEXT PRIMARY KEY,"
    " key_version INTEGER NOT NULL,"
    " sealed BLOB NOT NULL);",
    /* 3: BYOK slots as rows (slot provider name -> connection id), so a new
     * slot provider needs no schema change. Stores made by migration 2 as it
     * first shipped kept one column per slot ("slot_<name>"): slots_step()
     * moves them here and drops them. */
    "CREATE TABLE byok_slots ("
    " tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " provider TEXT NOT NULL,"
    " connection_id TEXT NOT NULL,"
    " PRIMARY KEY (tenant_id, provider));"
    "CREATE INDEX byok_slots_connection ON byok_slots(connection_id);",
    /* 4: tenant limits (DESIGN §6): live_sessions, 0 = none. */
    "ALTER TABLE tenants ADD COLUMN live_sessions INTEGER NOT NULL DEFAULT 0;",
    /* 5: the session index holds only records of a session: most records
     * have none, and each index a record goes into is a B-tree insert for
     * the usage writer. A query by session (session_id = ?) implies NOT
     * NULL, so SQLite still uses it. */
    ("DROP INDEX usage_session;"
     "CREATE INDEX usage_session ON usage(session_id) WHERE session_id IS NOT NULL;"),
};

static MUST_CHECK int user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Migration 3's data step: every "slot_<name>" column of byok_settings (the
 * first shipped shape of migration 2) becomes rows of byok_slots, and the
 * column goes. Generic over the names: no provider is named here. */
static MUST_CHECK int slots_step(sqlite3 *db)
{
    char cols[PROVIDER_SLOT_MAX * 2][64];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA table_info(byok_settings)", -1, &st, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW && n < ARRAY_SIZE(cols)) {
        const char *c = (const char *)sqlite3_column_text(st, 1);
        if (c == NULL || strncmp(c, "slot_", 5) != 0 || strlen(c) >= sizeof(cols[0]) ||
            strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(c))
            continue;
        snprintf(cols[n++], sizeof(cols[0]), "%s", c);
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        char sql[512];
        /* The names were checked to be [a-z0-9_]: safe to write into SQL. */
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO byok_slots (tenant_id, provider, connection_id)"
                 " SELECT tenant_id, '%s', %s FROM byok_settings WHERE %s IS NOT NULL AND %s != '';"
                 "ALTER TABLE byok_settings DROP COLUMN %s;",
                 cols[i] + 5, cols[i], cols[i], cols[i], cols[i]);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return -1;
    }
    return 0;
}

/* Brings the schema up to date. Several threads (and processes) may open the
 * same file at once: each step re-reads the version under BEGIN IMMEDIATE, so
 * exactly one of them applies it. */
int store_sqlite_migrate(sqlite3 *db, const char *path, char **err)
{
    const int latest = (int)ARRAY_SIZE(migrations);
    for (;;) {
        int v;
        if (user_version(db, &v) == -1)
            goto sql_failed;
        if (v > latest) {
            if (asprintf(err,
                         "the store %s has schema version %d, newer than this build knows (%d): "
                         "run a newer byok-proxy",
                         path, v, latest) == -1)
                *err = NULL;
            return -1;
        }
        if (v == latest)
            return 0;
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            goto sql_failed;
        if (user_version(db, &v) == -1)
            goto sql_rollback;
        if (v < latest) {
            char bump[64];
            snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
            if (sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
                (v + 1 == 3 && slots_step(db) == -1) ||
                sqlite3_exec(db, bump, NULL, NULL, NULL) != SQLITE_OK)
                goto sql_rollback;
            log_info("store(sqlite): applied schema migration %d", v + 1);
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            goto sql_rollback;
    }
sql_rollback:
    if (asprintf(err, "migrating the store %s failed: %s", path, sqlite3_errmsg(db)) == -1)
        *err = NULL;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
sql_failed:
    if (asprintf(err, "migrating the store %s failed: %s", path, sqlite3_errmsg(db)) == -1)
        *err = NULL;
    return -1;
}
