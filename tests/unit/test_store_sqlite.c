/* test_store_sqlite.c - the SQLite store backend against a real database file
 * in a fresh temporary directory. */
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

static struct store_tenant tenant(const char *id, const char *parent, int64_t plan, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "Tenant %s", id);
    snprintf(t.parent_id, sizeof(t.parent_id), "%s", parent);
    t.plan_credits_micros = plan;
    t.wallet_micros = wallet;
    return t;
}

static struct usage_record record(const char *id, const char *tenant, const char *payer, int64_t ts,
                                  int64_t cost, bool byok)
{
    struct usage_record r = {0};
    snprintf(r.id, sizeof(r.id), "%s", id);
    r.ts_ms = ts;
    snprintf(r.tenant_id, sizeof(r.tenant_id), "%s", tenant);
    snprintf(r.payer_id, sizeof(r.payer_id), "%s", payer);
    snprintf(r.key_id, sizeof(r.key_id), "k_test");
    r.provider = P_OPENAI;
    snprintf(r.line, sizeof(r.line), "llm");
    snprintf(r.endpoint, sizeof(r.endpoint), "/v1/chat/completions");
    snprintf(r.model, sizeof(r.model), "gpt-4o-mini");
    r.billed_byok = byok;
    r.status = 200;
    r.cost_micros = cost;
    r.ttfb_ms = -1;
    return r;
}

static void balances(struct store *s, const char *id, int64_t plan, int64_t wallet)
{
    struct store_tenant t;
    assert_int_equal(store_tenant_get(s, id, &t), STORE_OK);
    assert_int_equal(t.plan_credits_micros, plan);
    assert_int_equal(t.wallet_micros, wallet);
}

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

static void test_tenant_crud(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 100, 200), got;
    t.feature_byok = true;
    uint64_t gen = store_generation();
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_ERR_EXISTS);

    assert_int_equal(store_tenant_get(f->s, "t1", &got), STORE_OK);
    assert_string_equal(got.id, "t1");
    assert_string_equal(got.name, "Tenant t1");
    assert_true(got.feature_byok);
    assert_false(got.feature_agency);
    assert_string_equal(got.parent_id, "");
    assert_false(got.wallet_deduction);
    assert_int_equal(got.plan_credits_micros, 100);
    assert_int_equal(got.wallet_micros, 200);
    assert_true(got.created_at_ms > 0);
    assert_int_equal(got.created_at_ms, got.updated_at_ms);
    assert_int_equal(got.live_sessions, 0);
    assert_int_equal(store_tenant_get(f->s, "nope", &got), STORE_ERR_NOT_FOUND);

    /* Update replaces the mutable fields but never the balances. */
    struct store_tenant u = tenant("t1", "agency", 999, 999);
    snprintf(u.name, sizeof(u.name), "Renamed");
    u.feature_agency = true;
    u.wallet_deduction = true;
    u.live_sessions = 3;
    assert_int_equal(store_tenant_update(f->s, &u), STORE_OK);
    assert_int_equal(store_tenant_get(f->s, "t1", &got), STORE_OK);
    assert_string_equal(got.name, "Renamed");
    assert_int_equal(got.live_sessions, 3);
    assert_false(got.feature_byok);
    assert_true(got.feature_agency);
    assert_true(got.wallet_deduction);
    assert_string_equal(got.parent_id, "agency");
    assert_int_equal(got.plan_credits_micros, 100);
    assert_int_equal(got.wallet_micros, 200);
    assert_true(got.updated_at_ms >= got.created_at_ms);
    struct store_tenant missing = tenant("nope", "", 0, 0);
    assert_int_equal(store_tenant_update(f->s, &missing), STORE_ERR_NOT_FOUND);

    assert_int_equal(store_tenant_delete(f->s, "t1"), STORE_OK);
    assert_int_equal(store_tenant_get(f->s, "t1", &got), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_tenant_delete(f->s, "t1"), STORE_ERR_NOT_FOUND);
}

struct id_list {
    char ids[8][ID_MAX];
    int n;
};

static void collect_tenant(void *arg, const struct store_tenant *t)
{
    struct id_list *l = arg;
    assert_true(l->n < 8);
    snprintf(l->ids[l->n++], ID_MAX, "%s", t->id);
}

static void test_tenant_list(void **state)
{
    struct fixture *f = *state;
    const char *ids[] = {"b", "c", "a"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        struct store_tenant t = tenant(ids[i], "", 0, 0);
        assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    }
    struct id_list l = {0};
    assert_int_equal(store_tenant_list(f->s, collect_tenant, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], "a");
    assert_string_equal(l.ids[1], "b");
    assert_string_equal(l.ids[2], "c");
}

static void test_delete_with_subaccounts(void **state)
{
    struct fixture *f = *state;
    struct store_tenant a = tenant("agency", "", 0, 0), s1 = tenant("sub1", "agency", 0, 0);
    a.feature_agency = true;
    assert_int_equal(store_tenant_create(f->s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(f->s, &s1), STORE_OK);
    struct store_key k = {.id = "k_agency", .tenant_id = "agency"};
    assert_int_equal(store_key_create(f->s, &k), STORE_OK);

    assert_int_equal(store_tenant_delete(f->s, "agency"), STORE_ERR_CONFLICT);
    struct store_tenant got;
    assert_int_equal(store_tenant_get(f->s, "agency", &got), STORE_OK);
    struct store_key kg;
    assert_int_equal(store_key_get(f->s, "k_agency", &kg), STORE_OK);

    assert_int_equal(store_tenant_delete(f->s, "sub1"), STORE_OK);
    assert_int_equal(store_tenant_delete(f->s, "agency"), STORE_OK);
    /* Its keys went with it. */
    assert_int_equal(store_key_get(f->s, "k_agency", &kg), STORE_ERR_NOT_FOUND);
}

static void test_topup(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 10, 20), out;
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    assert_int_equal(store_tenant_topup(f->s, "t1", 1000, 50, &out), STORE_OK);
    assert_int_equal(out.wallet_micros, 1020);
    assert_int_equal(out.plan_credits_micros, 60);
    assert_int_equal(store_tenant_topup(f->s, "t1", -2000, 0, &out), STORE_OK);
    assert_int_equal(out.wallet_micros, -980);
    balances(f->s, "t1", 60, -980);
    assert_int_equal(store_tenant_topup(f->s, "nope", 1, 1, &out), STORE_ERR_NOT_FOUND);
}

struct key_list {
    struct store_key keys[4];
    int n;
};

static void collect_key(void *arg, const struct store_key *k)
{
    struct key_list *l = arg;
    assert_true(l->n < 4);
    l->keys[l->n++] = *k;
}

static void test_keys(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t1 = tenant("t1", "", 0, 0), t2 = tenant("t2", "", 0, 0);
    assert_int_equal(store_tenant_create(f->s, &t1), STORE_OK);
    assert_int_equal(store_tenant_create(f->s, &t2), STORE_OK);

    struct store_key k1 = {
        .id = "k_one", .tenant_id = "t1", .label = "prod", .created_at_ms = 1000};
    struct store_key k2 = {.id = "k_two", .tenant_id = "t1", .label = "dev", .created_at_ms = 2000};
    memset(k1.hash, 0xaa, sizeof(k1.hash));
    memset(k2.hash, 0xbb, sizeof(k2.hash));
    assert_int_equal(store_key_create(f->s, &k2), STORE_OK);
    assert_int_equal(store_key_create(f->s, &k1), STORE_OK);
    assert_int_equal(store_key_create(f->s, &k1), STORE_ERR_EXISTS);
    struct store_key orphan = {.id = "k_orphan", .tenant_id = "ghost"};
    assert_int_equal(store_key_create(f->s, &orphan), STORE_ERR_NOT_FOUND);

    struct key_list l = {0};
    assert_int_equal(store_key_list(f->s, "t1", collect_key, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0].id, "k_one"); /* by creation time */
    assert_string_equal(l.keys[1].id, "k_two");
    assert_string_equal(l.keys[0].label, "prod");
    assert_memory_equal(l.keys[0].hash, k1.hash, 32);
    struct key_list empty = {0};
    assert_int_equal(store_key_list(f->s, "t2", collect_key, &empty), STORE_OK);
    assert_int_equal(empty.n, 0);

    struct store_key got;
    assert_int_equal(store_key_get(f->s, "k_two", &got), STORE_OK);
    assert_string_equal(got.tenant_id, "t1");
    assert_memory_equal(got.hash, k2.hash, 32);
    assert_int_equal(got.created_at_ms, 2000);
    assert_int_equal(got.revoked_at_ms, 0);
    assert_int_equal(store_key_get(f->s, "k_nope", &got), STORE_ERR_NOT_FOUND);

    /* Only the owning tenant can revoke; revoking again keeps the time. */
    assert_int_equal(store_key_revoke(f->s, "t2", "k_two"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_key_revoke(f->s, "t1", "k_nope"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_key_revoke(f->s, "t1", "k_two"), STORE_OK);
    assert_int_equal(store_key_get(f->s, "k_two", &got), STORE_OK);
    int64_t revoked = got.revoked_at_ms;
    assert_true(revoked > 0);
    assert_int_equal(store_key_revoke(f->s, "t1", "k_two"), STORE_OK);
    assert_int_equal(store_key_get(f->s, "k_two", &got), STORE_OK);
    assert_int_equal(got.revoked_at_ms, revoked);
    l.n = 0;
    assert_int_equal(store_key_list(f->s, "t1", collect_key, &l), STORE_OK);
    assert_int_equal(l.n, 2); /* revoked keys are still listed */
    assert_int_equal(l.keys[1].revoked_at_ms, revoked);
}

static void test_usage_idempotent(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 100, 1000);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);

    struct usage_record r = record("u1", "t1", "t1", 1000, 30, false);
    size_t dups = 99;
    assert_int_equal(store_usage_write(f->s, &r, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 0);
    assert_int_equal(r.charged_plan_credits_micros, 30);
    assert_int_equal(r.charged_wallet_micros, 0);
    balances(f->s, "t1", 70, 1000);

    /* The same id again, alone and twice inside one batch: charged once. */
    struct usage_record again[3] = {record("u1", "t1", "t1", 1000, 30, false),
                                    record("u2", "t1", "t1", 1000, 5, false),
                                    record("u2", "t1", "t1", 1000, 5, false)};
    assert_int_equal(store_usage_write(f->s, again, 3, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 2);
    balances(f->s, "t1", 65, 1000);

    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, "t1", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
}

static void test_usage_charging(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 50, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);

    /* Plan credits first, the rest from the wallet. */
    struct usage_record r1 = record("u1", "t1", "t1", 1000, 80, false);
    assert_int_equal(store_usage_write(f->s, &r1, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r1.charged_plan_credits_micros, 50);
    assert_int_equal(r1.charged_wallet_micros, 30);
    balances(f->s, "t1", 0, 70);

    /* The wallet may go negative: a running session is not cut off. */
    struct usage_record r2 = record("u2", "t1", "t1", 1001, 100, false);
    assert_int_equal(store_usage_write(f->s, &r2, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r2.charged_plan_credits_micros, 0);
    assert_int_equal(r2.charged_wallet_micros, 100);
    balances(f->s, "t1", 0, -30);

    /* Negative plan credits are not drawn further. */
    struct store_tenant out;
    assert_int_equal(store_tenant_topup(f->s, "t1", 0, -10, &out), STORE_OK);
    struct usage_record r3 = record("u3", "t1", "t1", 1002, 7, false);
    assert_int_equal(store_usage_write(f->s, &r3, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r3.charged_plan_credits_micros, 0);
    assert_int_equal(r3.charged_wallet_micros, 7);
    balances(f->s, "t1", -10, -37);

    /* BYOK lines and zero-cost lines charge nothing. */
    struct usage_record b[2] = {record("u4", "t1", "t1", 1003, 500, true),
                                record("u5", "t1", "t1", 1004, 0, false)};
    b[0].charged_wallet_micros = 123; /* overwritten with what was charged */
    assert_int_equal(store_usage_write(f->s, b, 2, NULL, NULL), STORE_OK);
    assert_int_equal(b[0].charged_plan_credits_micros, 0);
    assert_int_equal(b[0].charged_wallet_micros, 0);
    balances(f->s, "t1", -10, -37);

    /* The stored record carries what was charged. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, "t1", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 5);
    json_t *u1 = json_array_get(arr, 4);
    assert_string_equal(json_string_value(json_object_get(u1, "id")), "u1");
    json_t *charged = json_object_get(u1, "charged");
    assert_int_equal(json_integer_value(json_object_get(charged, "plan_credits_micros")), 50);
    assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")), 30);
    json_t *u4 = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(u4, "billed_to")), "byok");
    assert_int_equal(json_integer_value(json_object_get(u4, "cost_micros")), 500);
    json_decref(arr);
}

static void test_usage_subaccount_payer(void **state)
{
    struct fixture *f = *state;
    struct store_tenant a = tenant("agency", "", 0, 1000), s1 = tenant("sub", "agency", 0, 0);
    assert_int_equal(store_tenant_create(f->s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(f->s, &s1), STORE_OK);
    struct usage_record r = record("u1", "sub", "agency", 1000, 40, false);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
    balances(f->s, "agency", 0, 960);
    balances(f->s, "sub", 0, 0);
}

static void test_usage_missing_payer(void **state)
{
    struct fixture *f = *state;
    struct usage_record r = record("u1", "gone", "gone", 1000, 40, false);
    r.charged_wallet_micros = 77;
    size_t dups = 9;
    assert_int_equal(store_usage_write(f->s, &r, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 0);
    assert_int_equal(r.charged_plan_credits_micros, 0);
    assert_int_equal(r.charged_wallet_micros, 0);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, "gone", NULL, 10, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
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

/* The i-th line of b from byte off (NUL-terminated copy); NULL past the end. */
static char *nth_line(const struct usage_record_lines *b, size_t off, size_t i)
{
    const char *p = b->data + off, *end = b->data + b->len;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (p == end || nl == NULL)
            return NULL;
        if (i-- == 0)
            return strndup(p, (size_t)(nl - p));
        p = nl + 1;
    }
}

/* The text a write gives back is the stored row's text, formatted after
 * charging: one line per record written, none for a duplicate, appended
 * after what the buffer held; a failed write leaves the buffer alone. */
static void test_usage_lines(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 10, 100);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);

    struct usage_record_lines lines = {0};
    const char prefix[] = "kept\n";
    lines.data = malloc(sizeof(prefix));
    assert_non_null(lines.data);
    memcpy(lines.data, prefix, sizeof(prefix) - 1);
    lines.len = lines.cap = sizeof(prefix) - 1;

    struct usage_record b[3] = {record("u1", "t1", "t1", 1000, 30, false),
                                record("u2", "t1", "t1", 1001, 500, true),
                                record("u1", "t1", "t1", 1000, 30, false)};
    size_t dups;
    assert_int_equal(store_usage_write(f->s, b, 3, &dups, &lines), STORE_OK);
    assert_int_equal(dups, 1);
    assert_memory_equal(lines.data, prefix, sizeof(prefix) - 1);
    const char *ids[] = {"u1", "u2"};
    for (size_t i = 0; i < 2; i++) {
        char *line = nth_line(&lines, sizeof(prefix) - 1, i);
        assert_non_null(line);
        char *row = row_text(f->path, ids[i]);
        assert_string_equal(line, row);
        /* The record's final form, charged_* included. */
        char want[8192];
        assert_true(usage_record_format(&b[i], want, sizeof(want)) > 0);
        assert_string_equal(line, want);
        free(row);
        free(line);
    }
    assert_null(nth_line(&lines, sizeof(prefix) - 1, 2));
    char *u1 = nth_line(&lines, sizeof(prefix) - 1, 0);
    assert_non_null(strstr(u1, "\"charged\":{\"plan_credits_micros\":10,\"wallet_micros\":20}"));
    free(u1);

    /* Stored ids are duplicates on the next write: no line for them. */
    size_t before = lines.len;
    struct usage_record again[2] = {record("u1", "t1", "t1", 1000, 30, false),
                                    record("u3", "t1", "t1", 1002, 5, false)};
    assert_int_equal(store_usage_write(f->s, again, 2, &dups, &lines), STORE_OK);
    assert_int_equal(dups, 1);
    char *u3 = nth_line(&lines, before, 0);
    assert_non_null(u3);
    char *row = row_text(f->path, "u3");
    assert_string_equal(u3, row);
    free(row);
    free(u3);
    assert_null(nth_line(&lines, before, 1));
    balances(f->s, "t1", 0, 75);

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

/* Reference for charging: the per-record algorithm, one payer read per
 * record, that the batched version must reproduce exactly. */
struct model_payer {
    const char *id;
    int64_t plan, wallet;
    bool exists;
};

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Many payers interleaved in batches larger than the writer's, with plan
 * credits running out mid-batch, duplicates of stored records and inside
 * the batch, BYOK and zero-cost lines and a payer that does not exist. */
static void test_usage_batch_many_payers(void **state)
{
    struct fixture *f = *state;
    struct model_payer m[] = {
        {"p0", 5000, 100, true}, {"p1", 0, 0, true},      {"p2", -50, 1000, true},
        {"p3", 123, -7, true},   {"p4", 100000, 0, true}, {"p5", 1, 1, true},
        {"p6", 777, 777, true},  {"p7", 2500, 0, true},   {"p8", 0, 5000, true},
        {"p9", 40, 40, true},    {"gone", 0, 0, false},
    };
    const size_t np = ARRAY_SIZE(m);
    struct model_payer m0[ARRAY_SIZE(m)];
    memcpy(m0, m, sizeof(m));
    for (size_t i = 0; i < np; i++) {
        if (!m[i].exists)
            continue;
        struct store_tenant t = tenant(m[i].id, "", m[i].plan, m[i].wallet);
        assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    }
    enum { N = 300, BATCHES = 4 };
    char(*seen)[ID_MAX] = calloc(N * BATCHES, ID_MAX);
    struct usage_record *b = calloc(N, sizeof(*b));
    assert_non_null(seen);
    assert_non_null(b);
    size_t nseen = 0;
    for (int batch = 0; batch < BATCHES; batch++) {
        size_t want_dups = 0;
        int64_t want_plan[N], want_wallet[N];
        for (size_t i = 0; i < N; i++) {
            char id[ID_MAX];
            uint64_t k = rnd() % 10;
            if (k == 0 && nseen > 0) /* stored by an earlier batch */
                snprintf(id, sizeof(id), "%s", seen[rnd() % nseen]);
            else if (k == 1 && i > 0) /* earlier in this batch */
                snprintf(id, sizeof(id), "%s", b[rnd() % i].id);
            else
                snprintf(id, sizeof(id), "b%d-%zu", batch, i);
            struct model_payer *p = &m[rnd() % np];
            int64_t cost = rnd() % 7 == 0 ? 0 : (int64_t)(rnd() % 400);
            b[i] = record(id, p->id, p->id, 1000 + (int64_t)i, cost, rnd() % 5 == 0);
            /* What the caller passed in: must survive on a duplicate. */
            b[i].charged_plan_credits_micros = 1000000 + (int64_t)i;
            b[i].charged_wallet_micros = -1000000 - (int64_t)i;

            bool dup = false;
            for (size_t j = 0; j < nseen && !dup; j++)
                dup = strcmp(seen[j], id) == 0;
            if (dup) {
                want_dups++;
                want_plan[i] = b[i].charged_plan_credits_micros;
                want_wallet[i] = b[i].charged_wallet_micros;
                continue;
            }
            snprintf(seen[nseen++], ID_MAX, "%s", id);
            want_plan[i] = want_wallet[i] = 0;
            if (b[i].billed_byok || cost <= 0 || !p->exists)
                continue;
            int64_t from_plan = MIN(cost, MAX(p->plan, 0));
            want_plan[i] = from_plan;
            want_wallet[i] = cost - from_plan;
            p->plan -= from_plan;
            p->wallet -= cost - from_plan;
        }
        size_t dups = 0;
        assert_int_equal(store_usage_write(f->s, b, N, &dups, NULL), STORE_OK);
        assert_int_equal(dups, want_dups);
        for (size_t i = 0; i < N; i++) {
            assert_int_equal(b[i].charged_plan_credits_micros, want_plan[i]);
            assert_int_equal(b[i].charged_wallet_micros, want_wallet[i]);
        }
        for (size_t i = 0; i < np; i++) {
            if (m[i].exists)
                balances(f->s, m[i].id, m[i].plan, m[i].wallet);
        }
    }

    /* The stored rows carry the same amounts as the records. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), nseen);
    int64_t plan_sum = 0, wallet_sum = 0, want_plan_sum = 0, want_wallet_sum = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *c = json_object_get(json_array_get(arr, i), "charged");
        plan_sum += json_integer_value(json_object_get(c, "plan_credits_micros"));
        wallet_sum += json_integer_value(json_object_get(c, "wallet_micros"));
    }
    json_decref(arr);
    for (size_t i = 0; i < np; i++) {
        want_plan_sum += m0[i].plan - m[i].plan;
        want_wallet_sum += m0[i].wallet - m[i].wallet;
    }
    assert_int_equal(plan_sum, want_plan_sum);
    assert_int_equal(wallet_sum, want_wallet_sum);
    free(seen);
    free(b);
}

/* Wallet charges whose batch total does not fit in 64 bits are still exact
 * (the running sum is written back before it would overflow). */
static void test_usage_charge_overflow(void **state)
{
    struct fixture *f = *state;
    struct store_tenant t = tenant("t1", "", 0, 0);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    const int64_t half = INT64_MAX / 2 + 1; /* two of them are 2^63 */
    struct usage_record b[2] = {record("u1", "t1", "t1", 1000, half, false),
                                record("u2", "t1", "t1", 1001, half, false)};
    assert_int_equal(store_usage_write(f->s, b, 2, NULL, NULL), STORE_OK);
    assert_int_equal(b[1].charged_wallet_micros, half);
    balances(f->s, "t1", 0, INT64_MIN);
}

static const char *rec_id(json_t *arr, size_t i)
{
    return json_string_value(json_object_get(json_array_get(arr, i), "id"));
}

static void test_usage_query(void **state)
{
    struct fixture *f = *state;
    struct usage_record b[5] = {
        record("a1", "ta", "ta", 1000, 0, true), record("a2", "ta", "ta", 3000, 0, true),
        record("a3", "ta", "ta", 2000, 0, true), record("b1", "tb", "tb", 2500, 0, true),
        record("b2", "tb", "tb", 500, 0, true),
    };
    snprintf(b[0].session_id, sizeof(b[0].session_id), "s1");
    snprintf(b[2].session_id, sizeof(b[2].session_id), "s1");
    snprintf(b[3].session_id, sizeof(b[3].session_id), "s1");
    assert_int_equal(store_usage_write(f->s, b, 5, NULL, NULL), STORE_OK);

    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 5);
    const char *all[] = {"a2", "b1", "a3", "a1", "b2"}; /* newest first */
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(rec_id(arr, i), all[i]);
    json_decref(arr);

    assert_int_equal(store_usage_query(f->s, "ta", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(rec_id(arr, 0), "a2");
    assert_string_equal(rec_id(arr, 2), "a1");
    json_decref(arr);

    assert_int_equal(store_usage_query(f->s, "ta", NULL, 2, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(rec_id(arr, 0), "a2");
    assert_string_equal(rec_id(arr, 1), "a3");
    json_decref(arr);

    assert_int_equal(store_usage_query(f->s, NULL, "s1", 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(rec_id(arr, 0), "b1");
    json_decref(arr);

    assert_int_equal(store_usage_query(f->s, "ta", "s1", 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(rec_id(arr, 0), "a3");
    assert_string_equal(rec_id(arr, 1), "a1");
    assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "model")) == false);
    json_decref(arr);

    assert_int_equal(store_usage_query(f->s, "nobody", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
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

/* A connection with a recognisable (not really sealed) blob: the store
 * treats sealed bytes as opaque. */
static struct store_connection connection(const char *id, const char *tenant_id,
                                          const struct provider *p, unsigned char fill)
{
    struct store_connection c = {0};
    snprintf(c.id, sizeof(c.id), "%s", id);
    snprintf(c.tenant_id, sizeof(c.tenant_id), "%s", tenant_id);
    c.provider = p;
    snprintf(c.name, sizeof(c.name), "conn %s", id);
    if (p == P_AZURE_SPEECH)
        snprintf(c.region, sizeof(c.region), "eastus");
    snprintf(c.key_hint, sizeof(c.key_hint), "abcd");
    c.key_version = 1;
    c.sealed_len = 40 + fill % 7;
    memset(c.sealed, fill, c.sealed_len);
    return c;
}

static void create_tenants(struct store *s, int n)
{
    for (int i = 1; i <= n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t%d", i);
        struct store_tenant t = tenant(id, "", 0, 0);
        assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    }
}

struct conn_list {
    struct store_connection v[8];
    int n;
};

static void collect_conn(void *arg, const struct store_connection *c)
{
    struct conn_list *l = arg;
    assert_true(l->n < 8);
    l->v[l->n++] = *c;
}

static void test_connection_crud(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 2);
    struct store_connection c = connection("c_1", "t1", P_AZURE_SPEECH, 0xa5), got;
    uint64_t gen = store_generation();
    assert_int_equal(store_connection_create(f->s, &c), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_create(f->s, &c), STORE_ERR_EXISTS);
    struct store_connection orphan = connection("c_x", "nope", P_OPENAI, 1);
    assert_int_equal(store_connection_create(f->s, &orphan), STORE_ERR_NOT_FOUND);

    assert_int_equal(store_connection_get(f->s, "t1", "c_1", &got), STORE_OK);
    assert_string_equal(got.id, "c_1");
    assert_string_equal(got.tenant_id, "t1");
    assert_ptr_equal(got.provider, P_AZURE_SPEECH);
    assert_string_equal(got.name, "conn c_1");
    assert_string_equal(got.region, "eastus");
    assert_string_equal(got.key_hint, "abcd");
    assert_int_equal(got.key_version, 1);
    assert_int_equal(got.sealed_len, c.sealed_len);
    assert_memory_equal(got.sealed, c.sealed, c.sealed_len);
    assert_true(got.created_at_ms > 0);
    assert_int_equal(store_connection_get(f->s, "t1", "c_nope", &got), STORE_ERR_NOT_FOUND);

    /* Rotate + rename: new sealed value, version, hint and name. */
    struct store_connection u = connection("c_1", "t1", P_AZURE_SPEECH, 0x11);
    snprintf(u.name, sizeof(u.name), "renamed");
    snprintf(u.region, sizeof(u.region), "westeurope");
    snprintf(u.key_hint, sizeof(u.key_hint), "wxyz");
    u.key_version = 3;
    gen = store_generation();
    assert_int_equal(store_connection_update(f->s, &u), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_get(f->s, "t1", "c_1", &got), STORE_OK);
    assert_string_equal(got.name, "renamed");
    assert_string_equal(got.region, "westeurope");
    assert_string_equal(got.key_hint, "wxyz");
    assert_int_equal(got.key_version, 3);
    assert_int_equal(got.sealed_len, u.sealed_len);
    assert_memory_equal(got.sealed, u.sealed, u.sealed_len);
    assert_ptr_equal(got.provider, P_AZURE_SPEECH);
    struct store_connection missing = connection("c_nope", "t1", P_OPENAI, 1);
    assert_int_equal(store_connection_update(f->s, &missing), STORE_ERR_NOT_FOUND);

    /* An OpenAI connection has no region. */
    struct store_connection o = connection("c_2", "t1", P_OPENAI, 2);
    assert_int_equal(store_connection_create(f->s, &o), STORE_OK);
    assert_int_equal(store_connection_get(f->s, "t1", "c_2", &got), STORE_OK);
    assert_string_equal(got.region, "");
    assert_ptr_equal(got.provider, P_OPENAI);
    struct store_connection e = connection("c_3", "t2", P_ELEVENLABS, 3);
    assert_int_equal(store_connection_create(f->s, &e), STORE_OK);

    struct conn_list l = {0};
    assert_int_equal(store_connection_list(f->s, "t1", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].id, "c_1");
    assert_string_equal(l.v[1].id, "c_2");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_connection_list(f->s, NULL, collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2].id, "c_3");
    assert_ptr_equal(l.v[2].provider, P_ELEVENLABS);

    gen = store_generation();
    assert_int_equal(store_connection_delete(f->s, "t1", "c_2"), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_get(f->s, "t1", "c_2", &got), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_connection_delete(f->s, "t1", "c_2"), STORE_ERR_NOT_FOUND);
}

static void test_connection_cross_tenant(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 2);
    struct store_connection c = connection("c_1", "t1", P_OPENAI, 7), got;
    assert_int_equal(store_connection_create(f->s, &c), STORE_OK);

    /* Another tenant's id behaves exactly like an id that does not exist. */
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(store_connection_get(f->s, "t2", "c_1", &got), STORE_ERR_NOT_FOUND);
    assert_int_not_equal(got.sealed[0], 7);
    assert_int_equal(store_connection_delete(f->s, "t2", "c_1"), STORE_ERR_NOT_FOUND);
    struct store_connection steal = connection("c_1", "t2", P_OPENAI, 9);
    assert_int_equal(store_connection_update(f->s, &steal), STORE_ERR_NOT_FOUND);
    struct conn_list l = {0};
    assert_int_equal(store_connection_list(f->s, "t2", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 0);

    /* Still intact for its owner. */
    assert_int_equal(store_connection_get(f->s, "t1", "c_1", &got), STORE_OK);
    assert_int_equal(got.sealed[0], 7);
}

static void test_byok_settings(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 1);
    struct store_byok b;
    memset(&b, 0x5a, sizeof(b));
    /* No row: disabled, empty slots. */
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "");

    struct store_byok put = {0};
    put.enabled = true;
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(put.slots[S_AZURE_SPEECH], ID_MAX, "c_a");
    uint64_t gen = store_generation();
    assert_int_equal(store_byok_put(f->s, "t1", &put), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "c_o");
    assert_string_equal(b.slots[S_ELEVENLABS], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
    assert_true(b.updated_at_ms > 0);

    /* A second put replaces the whole row. */
    struct store_byok put2 = {0};
    snprintf(put2.slots[S_ELEVENLABS], ID_MAX, "c_e");
    assert_int_equal(store_byok_put(f->s, "t1", &put2), STORE_OK);
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_e");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "");

    assert_int_equal(store_byok_put(f->s, "nope", &put), STORE_ERR_NOT_FOUND);
}

static void test_connection_delete_clears_slots(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 2);
    struct store_connection o = connection("c_o", "t1", P_OPENAI, 1);
    struct store_connection a = connection("c_a", "t1", P_AZURE_SPEECH, 2);
    assert_int_equal(store_connection_create(f->s, &o), STORE_OK);
    assert_int_equal(store_connection_create(f->s, &a), STORE_OK);
    struct store_byok put = {.enabled = true};
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(put.slots[S_AZURE_SPEECH], ID_MAX, "c_a");
    assert_int_equal(store_byok_put(f->s, "t1", &put), STORE_OK);
    /* A (mistaken) reference from another tenant is cleared too. */
    struct store_byok other = {.enabled = true};
    snprintf(other.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(other.slots[S_ELEVENLABS], ID_MAX, "c_keep");
    assert_int_equal(store_byok_put(f->s, "t2", &other), STORE_OK);

    assert_int_equal(store_connection_delete(f->s, "t1", "c_o"), STORE_OK);
    struct store_byok b;
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
    assert_int_equal(store_byok_get(f->s, "t2", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_keep");

    /* A refused cross-tenant delete clears nothing. */
    assert_int_equal(store_connection_delete(f->s, "t2", "c_a"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
}

static void test_tenant_delete_cascades(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 2);
    struct store_connection c1 = connection("c_1", "t1", P_OPENAI, 1);
    struct store_connection c2 = connection("c_2", "t2", P_OPENAI, 2);
    assert_int_equal(store_connection_create(f->s, &c1), STORE_OK);
    assert_int_equal(store_connection_create(f->s, &c2), STORE_OK);
    struct store_byok put = {.enabled = true};
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_1");
    assert_int_equal(store_byok_put(f->s, "t1", &put), STORE_OK);
    struct store_byok put2 = {.enabled = true};
    snprintf(put2.slots[S_OPENAI], ID_MAX, "c_1"); /* dangling once t1 goes */
    snprintf(put2.slots[S_ELEVENLABS], ID_MAX, "c_2");
    assert_int_equal(store_byok_put(f->s, "t2", &put2), STORE_OK);

    assert_int_equal(store_tenant_delete(f->s, "t1"), STORE_OK);
    struct store_connection got;
    assert_int_equal(store_connection_get(f->s, "t1", "c_1", &got), STORE_ERR_NOT_FOUND);
    struct conn_list l = {0};
    assert_int_equal(store_connection_list(f->s, NULL, collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].id, "c_2");
    struct store_byok b;
    assert_int_equal(store_byok_get(f->s, "t2", &b), STORE_OK);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_2");

    /* The rows are gone, not just hidden: a tenant re-created with the same
     * id starts without settings or connections. */
    struct store_tenant t = tenant("t1", "", 0, 0);
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    assert_int_equal(store_byok_get(f->s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_connection_list(f->s, "t1", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 0);
}

static void test_secrets(void **state)
{
    struct fixture *f = *state;
    unsigned char sealed[CRYPTO_SEALED_MAX], in[60];
    size_t len = 0;
    int version = 0;
    assert_int_equal(store_secret_get(f->s, "proxy_key_hash", &version, sealed, &len),
                     STORE_ERR_NOT_FOUND);
    memset(in, 0x42, sizeof(in));
    assert_int_equal(store_secret_put(f->s, "proxy_key_hash", 1, in, sizeof(in)), STORE_OK);
    assert_int_equal(store_secret_get(f->s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 1);
    assert_int_equal(len, sizeof(in));
    assert_memory_equal(sealed, in, sizeof(in));
    /* Put replaces. */
    memset(in, 0x43, 50);
    assert_int_equal(store_secret_put(f->s, "proxy_key_hash", 2, in, 50), STORE_OK);
    assert_int_equal(store_secret_get(f->s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 2);
    assert_int_equal(len, 50);
    assert_memory_equal(sealed, in, 50);
    assert_int_equal(store_secret_get(f->s, "other", &version, sealed, &len), STORE_ERR_NOT_FOUND);
}

struct reseal_arg {
    int calls;
    int fail_at; /* 1-based call that fails; 0 = none */
    int secrets_seen;
    int connections_seen;
};

/* "Re-seals" by inverting every byte and bumping the version. */
static int reseal_invert(void *arg, const char *tenant_id, const char *id,
                         const unsigned char *sealed, size_t sealed_len, int version,
                         unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len, int *out_version)
{
    struct reseal_arg *a = arg;
    a->calls++;
    if (tenant_id[0] == '\0') {
        a->secrets_seen++;
        assert_string_equal(id, "proxy_key_hash");
    } else {
        a->connections_seen++;
        assert_memory_equal(id, "c_", 2);
    }
    if (a->calls == a->fail_at)
        return -1;
    for (size_t i = 0; i < sealed_len; i++)
        out[i] = (unsigned char)~sealed[i];
    *out_len = sealed_len;
    *out_version = version + 1;
    return 0;
}

static void test_reseal_all(void **state)
{
    struct fixture *f = *state;
    create_tenants(f->s, 2);
    struct store_connection cs[3] = {
        connection("c_1", "t1", P_OPENAI, 0x10),
        connection("c_2", "t1", P_ELEVENLABS, 0x20),
        connection("c_3", "t2", P_AZURE_SPEECH, 0x30),
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_connection_create(f->s, &cs[i]), STORE_OK);
    unsigned char pepper[48];
    memset(pepper, 0x77, sizeof(pepper));
    assert_int_equal(store_secret_put(f->s, "proxy_key_hash", 1, pepper, sizeof(pepper)), STORE_OK);

    /* Failing on the second record leaves every row exactly as it was. */
    struct reseal_arg a = {.fail_at = 2};
    size_t count = 99;
    assert_int_equal(store_reseal_all(f->s, reseal_invert, &a, &count), STORE_ERR_INTERNAL);
    assert_int_equal(count, 0);
    assert_int_equal(a.calls, 2);
    struct store_connection got;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_connection_get(f->s, cs[i].tenant_id, cs[i].id, &got), STORE_OK);
        assert_int_equal(got.key_version, 1);
        assert_memory_equal(got.sealed, cs[i].sealed, cs[i].sealed_len);
    }
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t len;
    int version;
    assert_int_equal(store_secret_get(f->s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 1);
    assert_memory_equal(sealed, pepper, sizeof(pepper));

    /* Failing on the last record (the secret) also rolls back the
     * connections already rewritten. */
    memset(&a, 0, sizeof(a));
    a.fail_at = 4;
    assert_int_equal(store_reseal_all(f->s, reseal_invert, &a, &count), STORE_ERR_INTERNAL);
    assert_int_equal(a.connections_seen, 3);
    assert_int_equal(a.secrets_seen, 1);
    assert_int_equal(store_connection_get(f->s, "t1", "c_1", &got), STORE_OK);
    assert_int_equal(got.key_version, 1);
    assert_memory_equal(got.sealed, cs[0].sealed, cs[0].sealed_len);

    /* The handle is still usable after a rollback, and a full run commits
     * every row. */
    memset(&a, 0, sizeof(a));
    uint64_t gen = store_generation();
    assert_int_equal(store_reseal_all(f->s, reseal_invert, &a, &count), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(count, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_connection_get(f->s, cs[i].tenant_id, cs[i].id, &got), STORE_OK);
        assert_int_equal(got.key_version, 2);
        assert_int_equal(got.sealed_len, cs[i].sealed_len);
        for (size_t j = 0; j < got.sealed_len; j++)
            assert_int_equal(got.sealed[j], (unsigned char)~cs[i].sealed[j]);
        /* Everything else is untouched. */
        assert_string_equal(got.name, cs[i].name);
        assert_string_equal(got.key_hint, cs[i].key_hint);
    }
    assert_int_equal(store_secret_get(f->s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 2);
    assert_int_equal(sealed[0], (unsigned char)~0x77);

    /* Nothing to re-seal: an empty store commits zero records. */
    char empty[160];
    snprintf(empty, sizeof(empty), "%s/empty.db", f->dir);
    char *err = NULL;
    struct store *s2 = store_sqlite_open(empty, &err);
    assert_non_null(s2);
    memset(&a, 0, sizeof(a));
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
    assert_int_equal(raw_user_version(f->path), 4);

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
    assert_int_equal(raw_user_version(path), 4);
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
    assert_int_equal(raw_user_version(path), 4);
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
    assert_int_equal(raw_user_version(path), 4);
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
        cmocka_unit_test_setup_teardown(test_reseal_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2_slot_columns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
