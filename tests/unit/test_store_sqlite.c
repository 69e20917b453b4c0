/* test_store_sqlite.c - the SQLite store backend against a real database file
 * in a fresh temporary directory: the cases every backend shares
 * (store_cases.h) and SQLite's own (migrations, locks, file handling). */
#include "common.h"
#include "config.h"
#include "store.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128]; /* in a subdirectory that does not exist yet */
    struct store *s;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/var/db/byok.db", f->dir);
    char *err = NULL;
    f->s = store_sqlite_open(f->path, &err);
    if (f->s == NULL)
        fail_msg("open: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The stored row's text of a record, read straight from the file. */
static char *row_text(const char *path, const char *id)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT record FROM usage WHERE id = ?1", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *text = strdup((const char *)sqlite3_column_text(st, 0));
    assert_non_null(text);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return text;
}

static struct store *case_store(void **state)
{
    return ((struct fixture *)*state)->s;
}

static char *case_stored_text(void **state, const char *id)
{
    return row_text(((struct fixture *)*state)->path, id);
}

#include "store_cases.h"

static void test_open_backends(void **state)
{
    struct fixture *f = *state;
    struct config cfg = {0};
    char backend[16], path[160];
    char *err = NULL;
    cfg.store_backend = backend;
    cfg.store_path = path;

    snprintf(backend, sizeof(backend), "redis");
    assert_null(store_open(&cfg, &err));
    assert_non_null(err);
    assert_string_equal(err, "the redis backend is not built yet");
    free(err);

    snprintf(backend, sizeof(backend), "mysql");
    assert_null(store_open(&cfg, &err));
    assert_non_null(strstr(err, "sqlite"));
    free(err);

    snprintf(backend, sizeof(backend), "sqlite");
    snprintf(path, sizeof(path), "%s/other.db", f->dir);
    struct store *s = store_open(&cfg, &err);
    assert_non_null(s);
    assert_int_equal(store_ping(s), STORE_OK);
    store_close(s);

    /* A directory is not a database: refused with a message naming it. */
    snprintf(path, sizeof(path), "%s", f->dir);
    assert_null(store_open(&cfg, &err));
    assert_non_null(strstr(err, f->dir));
    free(err);
}

/* A failing statement in the middle of a batch rolls all of it back. */
static void test_usage_batch_atomic(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 1000);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER no_bad BEFORE INSERT ON usage WHEN NEW.id = 'bad'"
                                  " BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    struct usage_record b[3] = {record("ok1", "t1", "t1", 1000, 10, false),
                                record("bad", "t1", "t1", 1001, 10, false),
                                record("ok2", "t1", "t1", 1002, 10, false)};
    b[0].charged_wallet_micros = -1;
    size_t dups;
    assert_int_equal(store_usage_write(f->s, b, 3, &dups, NULL), STORE_ERR_INTERNAL);
    balances(f->s, "t1", 0, 1000);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    assert_int_equal(b[0].charged_wallet_micros, -1); /* restored */

    /* The handle still works afterwards. */
    assert_int_equal(sqlite3_exec(db, "DROP TRIGGER no_bad", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_usage_write(f->s, b, 3, &dups, NULL), STORE_OK);
    balances(f->s, "t1", 0, 970);
}

/* The text a write gives back (store_cases.h); a failed write leaves the
 * buffer alone. */
static void test_usage_lines(void **state)
{
    struct fixture *f = *state;
    struct usage_record_lines lines;
    usage_lines_body(state, &lines);
    size_t dups, before;

    /* A failed batch gives nothing back. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER no_bad BEFORE INSERT ON usage WHEN NEW.id = 'bad'"
                                  " BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    before = lines.len;
    struct usage_record bad[2] = {record("u4", "t1", "t1", 1003, 5, false),
                                  record("bad", "t1", "t1", 1004, 5, false)};
    assert_int_equal(store_usage_write(f->s, bad, 2, &dups, &lines), STORE_ERR_INTERNAL);
    assert_int_equal(lines.len, before);
    balances(f->s, "t1", 0, 75);
    usage_record_lines_free(&lines);
    assert_null(lines.data);
    assert_int_equal(lines.len, 0);
}

static int raw_user_version(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Schema 5: records without a session stay out of the session index, and
 * a query by session still goes through it. */
static void test_session_index_partial(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND "
                                        "name = 'usage_session'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_non_null(
        strstr((const char *)sqlite3_column_text(st, 0), "WHERE session_id IS NOT NULL"));
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT record FROM usage WHERE "
                                        "session_id = ?2 ORDER BY ts_ms DESC, id DESC LIMIT ?3",
                                        -1, &st, NULL),
                     SQLITE_OK);
    bool uses = false;
    while (sqlite3_step(st) == SQLITE_ROW)
        uses = uses || strstr((const char *)sqlite3_column_text(st, 3), "usage_session") != NULL;
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_true(uses);
}

static void test_reopen(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 5, 6);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    struct usage_record r = record("u1", "t1", "t1", 1000, 1, false);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
    store_close(f->s);
    f->s = NULL;

    int v = raw_user_version(f->path);
    assert_true(v >= 1);

    /* Migrations use plain CREATE TABLE: re-running one would fail here. */
    char *err = NULL;
    f->s = store_sqlite_open(f->path, &err);
    if (f->s == NULL)
        fail_msg("reopen: %s", err);
    balances(f->s, "t1", 4, 6);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    assert_int_equal(raw_user_version(f->path), v);

    /* A database from a newer build is refused rather than misread. */
    store_close(f->s);
    f->s = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(store_sqlite_open(f->path, &err));
    assert_non_null(strstr(err, "newer"));
    free(err);
}

/* --- BYOK: connections, settings, secrets, re-sealing ------------------- */

static void test_reseal_all(void **state)
{
    struct fixture *f = *state;
    reseal_all_body(state);

    /* Nothing to re-seal: an empty store commits zero records. */
    struct reseal_arg a = {0};
    size_t count = 99;
    char empty[160];
    snprintf(empty, sizeof(empty), "%s/empty.db", f->dir);
    char *err = NULL;
    struct store *s2 = store_sqlite_open(empty, &err);
    assert_non_null(s2);
    assert_int_equal(store_reseal_all(s2, reseal_invert, &a, &count), STORE_OK);
    assert_int_equal(count, 0);
    assert_int_equal(a.calls, 0);
    store_close(s2);
}

/* Migration 1 exactly as it shipped: a database written by the build before
 * BYOK. */
static const char v1_schema[] =
    "CREATE TABLE tenants ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " feature_byok INTEGER NOT NULL DEFAULT 0,"
    " feature_agency INTEGER NOT NULL DEFAULT 0,"
    " parent_id TEXT,"
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
    "CREATE INDEX usage_ts ON usage(ts_ms);"
    "INSERT INTO tenants (id, name, feature_byok, plan_credits_micros, wallet_micros,"
    " created_at_ms, updated_at_ms) VALUES ('old', 'Old tenant', 1, 11, 22, 1000, 1000);"
    "INSERT INTO proxy_keys (id, tenant_id, label, hash, created_at_ms)"
    " VALUES ('k_old', 'old', 'legacy', zeroblob(32), 1000);"
    "PRAGMA user_version = 1;";

static void test_migration_from_v1(void **state)
{
    struct fixture *f = *state;
    /* A fresh store is at the latest version. */
    assert_int_equal(raw_user_version(f->path), 5);

    char path[160];
    snprintf(path, sizeof(path), "%s/v1.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(raw_user_version(path), 1);

    char *err = NULL;
    struct store *s = store_sqlite_open(path, &err);
    if (s == NULL)
        fail_msg("open v1: %s", err);
    assert_int_equal(raw_user_version(path), 5);
    /* Old rows kept. */
    struct store_tenant t;
    assert_int_equal(store_tenant_get(s, "old", &t), STORE_OK);
    assert_string_equal(t.name, "Old tenant");
    assert_int_equal(t.plan_credits_micros, 11);
    assert_int_equal(t.wallet_micros, 22);
    assert_int_equal(t.live_sessions, 0); /* migration 4's default */
    struct store_key k;
    assert_int_equal(store_key_get(s, "k_old", &k), STORE_OK);
    assert_string_equal(k.label, "legacy");
    /* And the new tables work for them. */
    struct store_connection c = connection("c_1", "old", P_OPENAI, 5), got;
    assert_int_equal(store_connection_create(s, &c), STORE_OK);
    assert_int_equal(store_connection_get(s, "old", "c_1", &got), STORE_OK);
    struct store_byok b = {.enabled = true};
    snprintf(b.slots[S_OPENAI], ID_MAX, "c_1");
    assert_int_equal(store_byok_put(s, "old", &b), STORE_OK);
    store_close(s);

    /* Reopening applies nothing twice. */
    s = store_sqlite_open(path, &err);
    if (s == NULL)
        fail_msg("reopen: %s", err);
    assert_int_equal(store_byok_get(s, "old", &b), STORE_OK);
    assert_string_equal(b.slots[S_OPENAI], "c_1");
    store_close(s);
    assert_int_equal(raw_user_version(path), 5);
}

/* Migration 2 as it first shipped kept one column per slot
 * ("slot_<provider>"); migration 3 moves them into byok_slots rows and drops
 * the columns. */
static void test_migration_from_v2_slot_columns(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/v2.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    const char *v2 =
        "CREATE TABLE connections (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES "
        "tenants(id) ON DELETE CASCADE, provider TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
        " region TEXT, key_hint TEXT NOT NULL DEFAULT '', key_version INTEGER NOT NULL,"
        " sealed BLOB NOT NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);"
        "CREATE INDEX connections_tenant ON connections(tenant_id, created_at_ms);"
        "CREATE TABLE byok_settings (tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE"
        " CASCADE, enabled INTEGER NOT NULL DEFAULT 0, slot_openai TEXT, slot_elevenlabs TEXT,"
        " slot_azure_speech TEXT, updated_at_ms INTEGER NOT NULL);"
        "CREATE TABLE secrets (name TEXT PRIMARY KEY, key_version INTEGER NOT NULL, sealed BLOB "
        "NOT NULL);"
        "INSERT INTO byok_settings (tenant_id, enabled, slot_openai, slot_elevenlabs,"
        " slot_azure_speech, updated_at_ms) VALUES ('old', 1, 'c_o', NULL, 'c_a', 5);"
        "PRAGMA user_version = 2;";
    assert_int_equal(sqlite3_exec(db, v2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    char *err = NULL;
    struct store *s = store_sqlite_open(path, &err);
    if (s == NULL)
        fail_msg("open v2: %s", err);
    assert_int_equal(raw_user_version(path), 5);
    struct store_byok b;
    assert_int_equal(store_byok_get(s, "old", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "c_o");
    assert_string_equal(b.slots[S_ELEVENLABS], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
    assert_int_equal(b.updated_at_ms, 5);
    store_close(s);

    /* The slot columns are gone. */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT slot_openai FROM byok_settings", -1, &st, NULL),
                     SQLITE_ERROR);
    sqlite3_close(db);
}

struct writer_arg {
    const char *path;
    int which;
    pthread_barrier_t *barrier;
    int rc;
};

#define THREAD_BATCHES 40
#define THREAD_BATCH   10

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    char *err = NULL;
    struct store *s = store_sqlite_open(a->path, &err);
    if (s == NULL) {
        free(err);
        a->rc = -1;
    } else if (a->which == 0) {
        struct store_tenant t = tenant("payer", "", 0, 100000);
        if (store_tenant_create(s, &t) != STORE_OK)
            a->rc = -1;
    }
    /* Both reach the barrier even after a failure, so neither hangs. */
    pthread_barrier_wait(a->barrier);
    for (int b = 0; b < THREAD_BATCHES && a->rc == 0; b++) {
        struct usage_record recs[THREAD_BATCH];
        for (int i = 0; i < THREAD_BATCH; i++) {
            char id[ID_MAX];
            snprintf(id, sizeof(id), "w%d-%d-%d", a->which, b, i);
            recs[i] = record(id, "payer", "payer", 1000 + b, 1, false);
        }
        size_t dups;
        if (store_usage_write(s, recs, THREAD_BATCH, &dups, NULL) != STORE_OK || dups != 0)
            a->rc = -1;
    }
    store_close(s);
    return NULL;
}

/* Two handles on two threads, both opened on a fresh file at the same time
 * (concurrent migration), then writing and charging the same payer. */
static void test_concurrent_handles(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/fresh/concurrent.db", f->dir);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
    struct writer_arg args[2] = {{path, 0, &barrier, 0}, {path, 1, &barrier, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer_thread, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(args[0].rc, 0);
    assert_int_equal(args[1].rc, 0);

    char *err = NULL;
    struct store *s = store_sqlite_open(path, &err);
    assert_non_null(s);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2 * THREAD_BATCHES * THREAD_BATCH);
    json_decref(arr);
    balances(s, "payer", 0, 100000 - 2 * THREAD_BATCHES * THREAD_BATCH);
    store_close(s);
}

/* A second handle on the same file (every worker's, the writer's reopen
 * after a failure) must not drop the POSIX locks the first one holds: with
 * them gone, another process (an operator's sqlite3) believes it is the
 * last user when it closes, checkpoints and deletes the WAL under the
 * proxy, whose later commits then go to an unlinked file. In WAL mode each
 * open handle holds SHARED on the database file: the lock-byte page's
 * shared range (sqlite.org/fileformat2.html: 510 bytes at 2^30 + 2). An
 * open file description lock conflicts with it even in this process. */
static bool shared_lock_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd != -1);
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000002, .l_len = 510};
    assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
    close(fd); /* drops this process's locks too: only at the end of a test */
    return fl.l_type != F_UNLCK;
}

static void test_second_handle_keeps_locks(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    struct store *again = store_sqlite_open(f->path, &err);
    assert_non_null(again);
    assert_int_equal(store_ping(f->s), STORE_OK);
    assert_int_equal(store_ping(again), STORE_OK);
    assert_true(shared_lock_held(f->path));
    store_close(again);
}

#define STORM_THREADS 8

struct storm_arg {
    const char *path;
    pthread_barrier_t *barrier;
    int rc;
};

static void *storm_thread(void *p)
{
    struct storm_arg *a = p;
    char *err = NULL;
    pthread_barrier_wait(a->barrier); /* all open at the same instant */
    struct store *s = store_sqlite_open(a->path, &err);
    if (s == NULL) {
        fprintf(stderr, "concurrent open: %s\n", err != NULL ? err : "?");
        free(err);
        a->rc = -1;
        return NULL;
    }
    a->rc = store_ping(s) == STORE_OK ? 0 : -1;
    store_close(s);
    return NULL;
}

/* Startup: every worker opens its handle on a database nobody created yet. */
static void test_concurrent_open_storm(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < 10; round++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/storm%d/byok.db", f->dir, round);
        pthread_barrier_t barrier;
        assert_int_equal(pthread_barrier_init(&barrier, NULL, STORM_THREADS), 0);
        struct storm_arg args[STORM_THREADS];
        pthread_t th[STORM_THREADS];
        for (int i = 0; i < STORM_THREADS; i++) {
            args[i] = (struct storm_arg){path, &barrier, 0};
            assert_int_equal(pthread_create(&th[i], NULL, storm_thread, &args[i]), 0);
        }
        for (int i = 0; i < STORM_THREADS; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            assert_int_equal(args[i].rc, 0);
        }
        pthread_barrier_destroy(&barrier);
        assert_int_equal(raw_user_version(path), raw_user_version(f->path));
    }
}

/* Does this process hold a POSIX (fcntl) lock on the file? /proc/locks
 * lines: "N: POSIX  ADVISORY  READ  <pid> <maj>:<min>:<inode> <start> <end>". */
static bool holds_posix_lock(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *fp = fopen("/proc/locks", "r");
    assert_non_null(fp);
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp) != NULL) {
        char kind[16], mode[16];
        long pid;
        unsigned long long ino;
        if (sscanf(line, "%*d: %15s %*s %15s %ld %*x:%*x:%llu", kind, mode, &pid, &ino) == 4)
            found = strcmp(kind, "POSIX") == 0 && pid == (long)getpid() && ino == st.st_ino;
    }
    fclose(fp);
    return found;
}

/* Nothing but SQLite opens or closes the database file: opening and closing
 * more handles (the writer reconnecting, a worker starting) never drops the
 * locks SQLite holds for the handles already open. Were one of them lost,
 * an outside sqlite3 would take the WAL for its own and delete it. */
static void test_handles_keep_locks(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_ping(f->s), STORE_OK);
    assert_true(holds_posix_lock(f->path));
    for (int i = 0; i < 3; i++) {
        char *err = NULL;
        struct store *s = store_sqlite_open(f->path, &err);
        assert_non_null(s);
        assert_int_equal(store_ping(s), STORE_OK);
        store_close(s);
        assert_true(holds_posix_lock(f->path));
    }
    assert_int_equal(store_ping(f->s), STORE_OK);
    assert_true(holds_posix_lock(f->path));
}

/* One process per store: an exclusive lock on "<path>.lock" with the
 * holder's pid, the database file created private before any connection. */
static void test_lock(void **state)
{
    struct fixture *f = *state;
    char path[160], lock_path[170];
    snprintf(path, sizeof(path), "%s/locked/dir/byok.db", f->dir);
    snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    struct store_lock *l = NULL, *l2 = NULL;
    char *err = NULL;
    assert_int_equal(store_sqlite_lock(path, &l, &err), 0);
    assert_non_null(l);
    assert_null(err);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 0);
    FILE *fp = fopen(lock_path, "r");
    assert_non_null(fp);
    long pid = 0;
    assert_int_equal(fscanf(fp, "%ld", &pid), 1);
    fclose(fp);
    assert_int_equal(pid, (long)getpid());

    /* Taken: refused, naming the holder (flock conflicts between two open
     * files even in one process). */
    assert_int_equal(store_sqlite_lock(path, &l2, &err), -1);
    assert_null(l2);
    assert_non_null(err);
    char want[64];
    snprintf(want, sizeof(want), "in use by another byok-proxy (pid %ld holds", (long)getpid());
    if (strstr(err, want) == NULL)
        fail_msg("want \"%s\" in \"%s\"", want, err);
    free(err);
    err = NULL;

    /* SQLite takes the empty file as a new database, and gives its -wal
     * and -shm the file's mode. */
    struct store *s = store_sqlite_open(path, &err);
    assert_non_null(s);
    assert_int_equal(store_ping(s), STORE_OK);
    char wal[180];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    store_close(s);

    store_sqlite_unlock(l);
    assert_int_equal(store_sqlite_lock(path, &l, &err), 0); /* free again */
    store_unlock(l);
    store_unlock(NULL);

    /* Through the backend switch: a fleet store (Redis) takes no lock. */
    struct config cfg = {0};
    char backend[16] = "redis";
    cfg.store_backend = backend;
    assert_int_equal(store_lock(&cfg, &l, &err), 0);
    assert_null(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_with_subaccounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_charging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_subaccount_payer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_missing_payer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_batch_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_batch_many_payers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_charge_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_handle_keeps_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handles_keep_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cross_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byok_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_delete_clears_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reseal_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_index_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2_slot_columns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
