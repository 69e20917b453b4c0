/* test_usage.c - the usage record JSON (DESIGN §5) and the writer thread:
 * group commit into a real SQLite store, JSONL sink, spool and replay. */
#include "common.h"
#include "config.h"
#include "store.h"
#include "usage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- JSON ---------------------------------------------------------------- */

static void full_record(struct usage_record *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "req_01JDABCDEFGHJKMNPQRSTVWXYZ");
    r->ts_ms = 1795521600000; /* 2026-11-24T12:00:00.000Z */
    snprintf(r->tenant_id, sizeof(r->tenant_id), "t1");
    snprintf(r->payer_id, sizeof(r->payer_id), "agency1");
    snprintf(r->key_id, sizeof(r->key_id), "k_0123456789abcdef");
    snprintf(r->session_id, sizeof(r->session_id), "conv-42");
    r->provider = PROVIDER_OPENAI;
    r->has_slot = true;
    snprintf(r->line, sizeof(r->line), "llm");
    snprintf(r->endpoint, sizeof(r->endpoint), "/v1/chat/completions");
    snprintf(r->model, sizeof(r->model), "gpt-4o-mini");
    r->billed_byok = true;
    snprintf(r->connection_id, sizeof(r->connection_id), "c_1");
    r->status = 200;
    r->outcome = USAGE_OUTCOME_CLIENT_DISCONNECT;
    r->estimated = true;
    snprintf(r->fallback_reason, sizeof(r->fallback_reason), "connection_deleted");
    r->units = (struct usage_units){12, 2, 5, 3, 4, 6, 1500};
    r->cost_micros = 5;
    r->charged_plan_credits_micros = 7;
    r->charged_wallet_micros = 8;
    snprintf(r->upstream_request_id, sizeof(r->upstream_request_id), "req_abc");
    r->ttfb_ms = 41;
    r->duration_ms = 380;
}

static void assert_keys(json_t *obj, const char *const *keys, size_t n)
{
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        assert_true(i < n);
        assert_string_equal(key, keys[i]);
        i++;
    }
    assert_int_equal(i, n);
}

static void test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_OK), "ok");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_CLIENT_DISCONNECT), "client_disconnect");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_UPSTREAM_ERROR), "upstream_error");
    assert_string_equal(usage_outcome_name(USAGE_OUTCOME_TIMEOUT), "timeout");
}

static void test_json_shape(void **state)
{
    (void)state;
    struct usage_record r;
    full_record(&r);
    json_t *o = usage_record_to_json(&r);
    assert_non_null(o);
    static const char *const keys[] = {
        "id",
        "ts",
        "tenant_id",
        "payer_id",
        "key_id",
        "session_id",
        "provider",
        "slot",
        "line",
        "endpoint",
        "model",
        "billed_to",
        "connection_id",
        "status",
        "outcome",
        "estimated",
        "fallback_reason",
        "units",
        "cost_micros",
        "charged",
        "upstream_request_id",
        "ttfb_ms",
        "duration_ms",
    };
    assert_keys(o, keys, ARRAY_SIZE(keys));
    static const char *const unit_keys[] = {
        "input_tokens",        "cached_input_tokens", "output_tokens", "audio_input_tokens",
        "audio_output_tokens", "characters",          "audio_seconds",
    };
    assert_keys(json_object_get(o, "units"), unit_keys, ARRAY_SIZE(unit_keys));
    static const char *const charged_keys[] = {"plan_credits_micros", "wallet_micros"};
    assert_keys(json_object_get(o, "charged"), charged_keys, ARRAY_SIZE(charged_keys));

    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2026-11-24T12:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(o, "provider")), "openai");
    assert_string_equal(json_string_value(json_object_get(o, "slot")), "openai");
    assert_string_equal(json_string_value(json_object_get(o, "billed_to")), "byok");
    assert_string_equal(json_string_value(json_object_get(o, "outcome")), "client_disconnect");
    assert_true(json_is_true(json_object_get(o, "estimated")));
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "ttfb_ms")), 41);
    json_t *units = json_object_get(o, "units");
    assert_true(json_is_real(json_object_get(units, "audio_seconds")));
    assert_true(json_real_value(json_object_get(units, "audio_seconds")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(units, "cached_input_tokens")), 2);
    json_t *charged = json_object_get(o, "charged");
    assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")), 8);
    json_decref(o);

    /* Empty optional strings and ttfb -1 are null; no slot is null. */
    snprintf(r.id, sizeof(r.id), "x");
    r.session_id[0] = r.model[0] = r.connection_id[0] = '\0';
    r.fallback_reason[0] = r.upstream_request_id[0] = '\0';
    r.ttfb_ms = -1;
    r.has_slot = false;
    r.billed_byok = false;
    r.provider = PROVIDER_DEEPGRAM;
    r.ts_ms = 1795521600123 + 86400000;
    o = usage_record_to_json(&r);
    const char *nulls[] = {"session_id",          "model",   "connection_id", "fallback_reason",
                           "upstream_request_id", "ttfb_ms", "slot"};
    for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
        assert_true(json_is_null(json_object_get(o, nulls[i])));
    assert_string_equal(json_string_value(json_object_get(o, "billed_to")), "wallet");
    assert_string_equal(json_string_value(json_object_get(o, "provider")), "deepgram");
    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2026-11-25T12:00:00.123Z");
    assert_keys(o, keys, ARRAY_SIZE(keys));
    json_decref(o);
}

static void roundtrip(const struct usage_record *r)
{
    json_t *o = usage_record_to_json(r);
    assert_non_null(o);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_error_t jerr;
    json_t *back = json_loads(text, 0, &jerr);
    free(text);
    assert_non_null(back);
    struct usage_record got;
    assert_int_equal(usage_record_from_json(back, &got), 0);
    json_decref(back);
    assert_memory_equal(&got, r, sizeof(got));
}

static void test_json_roundtrip(void **state)
{
    (void)state;
    struct usage_record r;
    full_record(&r);
    roundtrip(&r);

    full_record(&r);
    /* Whole fields cleared: the comparison below is bytewise. */
    memset(r.session_id, 0, sizeof(r.session_id));
    memset(r.model, 0, sizeof(r.model));
    memset(r.connection_id, 0, sizeof(r.connection_id));
    memset(r.fallback_reason, 0, sizeof(r.fallback_reason));
    memset(r.upstream_request_id, 0, sizeof(r.upstream_request_id));
    r.ttfb_ms = -1;
    r.has_slot = false;
    r.billed_byok = false;
    r.estimated = false;
    r.outcome = USAGE_OUTCOME_TIMEOUT;
    r.provider = PROVIDER_AZURE_SPEECH;
    r.units.audio_ms = 1234; /* not exact in binary floating point */
    r.ts_ms = 1795521600999;
    r.charged_wallet_micros = -3;
    roundtrip(&r);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    assert_non_null(o);
    return o;
}

static void test_json_from_tolerant_and_strict(void **state)
{
    (void)state;
    struct usage_record r;
    /* Only the essentials, everything else null or absent. */
    json_t *o = parse("{\"id\":\"u1\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\","
                      "\"payer_id\":\"p\",\"provider\":\"elevenlabs\",\"billed_to\":\"wallet\","
                      "\"slot\":null,\"model\":null,\"units\":null,\"charged\":null,"
                      "\"ttfb_ms\":null,\"session_id\":null,\"outcome\":null}");
    assert_int_equal(usage_record_from_json(o, &r), 0);
    json_decref(o);
    assert_string_equal(r.id, "u1");
    assert_int_equal(r.ts_ms, 1795521600000);
    assert_int_equal(r.provider, PROVIDER_ELEVENLABS);
    assert_false(r.has_slot);
    assert_int_equal(r.ttfb_ms, -1);
    assert_string_equal(r.session_id, "");
    assert_int_equal(r.outcome, USAGE_OUTCOME_OK);

    const char *bad[] = {
        "[]",
        "{\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}", /* no id */
        "{\"id\":\"u\",\"ts\":\"yesterday\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"mistral\",\"billed_to\":\"wallet\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"credit\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"cost_micros\":\"5\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"outcome\":\"meh\"}",
        "{\"id\":\"u\",\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\",\"units\":{\"input_tokens\":1.5}}",
        /* an id longer than ID_MAX is refused, never truncated */
        "{\"id\":\"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\","
        "\"ts\":\"2026-11-24T12:00:00Z\",\"tenant_id\":\"t\",\"payer_id\":\"p\","
        "\"provider\":\"openai\",\"billed_to\":\"wallet\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        o = parse(bad[i]);
        assert_int_equal(usage_record_from_json(o, &r), -1);
        json_decref(o);
    }
}

/* ---- writer -------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char backend[16];
    char store_path[128];
    char jsonl_path[128];
    char spool_dir[128];
    struct config cfg;
    struct store *s; /* the test's own handle */
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
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-usage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->backend, sizeof(f->backend), "sqlite");
    snprintf(f->store_path, sizeof(f->store_path), "%s/byok.db", f->dir);
    snprintf(f->jsonl_path, sizeof(f->jsonl_path), "%s/logs/usage.jsonl", f->dir);
    snprintf(f->spool_dir, sizeof(f->spool_dir), "%s/spool", f->dir);
    /* Built by hand: only the fields the writer reads. */
    f->cfg.store_backend = f->backend;
    f->cfg.store_path = f->store_path;
    f->cfg.usage_jsonl_path = f->jsonl_path;
    f->cfg.usage_spool_dir = f->spool_dir;
    char *err = NULL;
    f->s = store_open(&f->cfg, &err);
    if (f->s == NULL)
        fail_msg("store_open: %s", err);
    struct store_tenant t = {.id = "payer", .name = "Payer", .wallet_micros = 1000000};
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    usage_writer_stop(); /* no-op when a test already stopped it */
    store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start_writer(struct fixture *f)
{
    char *err = NULL;
    if (usage_writer_start(&f->cfg, &err) == -1)
        fail_msg("usage_writer_start: %s", err);
}

static struct usage_record wallet_record(const char *id)
{
    struct usage_record r;
    full_record(&r);
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.tenant_id, sizeof(r.tenant_id), "payer");
    snprintf(r.payer_id, sizeof(r.payer_id), "payer");
    r.billed_byok = false;
    r.cost_micros = 1;
    r.charged_plan_credits_micros = r.charged_wallet_micros = 0;
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Number of JSONL lines; fails the test if an id appears twice or a line
 * is not a complete record. */
static size_t jsonl_count_unique(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    char **ids = NULL;
    size_t n = 0, cap = 0, line_cap = 0;
    char *line = NULL;
    while (getline(&line, &line_cap, fp) != -1) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        struct usage_record r;
        assert_int_equal(usage_record_from_json(o, &r), 0);
        json_decref(o);
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            ids = realloc(ids, cap * sizeof(*ids));
            assert_non_null(ids);
        }
        ids[n++] = strdup(r.id);
    }
    free(line);
    fclose(fp);
    qsort(ids, n, sizeof(*ids), cmp_str);
    for (size_t i = 1; i < n; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return n;
}

static size_t db_count(struct fixture *f)
{
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 0, &arr), STORE_OK);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static int64_t payer_wallet(struct fixture *f)
{
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->s, "payer", &t), STORE_OK);
    return t.wallet_micros;
}

static size_t spool_files(struct fixture *f)
{
    DIR *d = opendir(f->spool_dir);
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".jsonl") != NULL;
    closedir(d);
    return n;
}

struct submit_arg {
    int which, count;
};

static void *submit_thread(void *p)
{
    struct submit_arg *a = p;
    for (int i = 0; i < a->count; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "r-%d-%05d", a->which, i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
    return NULL;
}

#define PER_THREAD 700

static void test_writer_end_to_end(void **state)
{
    struct fixture *f = *state;
    struct usage_stats before, after;
    usage_writer_stats(&before);
    start_writer(f);
    usage_writer_sync(); /* nothing pending: returns at once */

    pthread_t th[2];
    struct submit_arg args[2] = {{0, PER_THREAD}, {1, PER_THREAD}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, submit_thread, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    usage_writer_sync();

    const size_t n = 2 * PER_THREAD;
    assert_int_equal(db_count(f), n);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n);
    assert_int_equal(payer_wallet(f), 1000000 - (int64_t)n);
    usage_writer_stats(&after);
    assert_int_equal(after.submitted - before.submitted, n);
    assert_int_equal(after.written - before.written, n);
    assert_int_equal(after.spooled - before.spooled, 0);
    /* Group commit: far fewer transactions than records. */
    assert_true(after.batches - before.batches >= n / 256);
    assert_true(after.batches - before.batches < n);

    /* A record submitted again is neither charged nor logged twice. */
    struct usage_record again = wallet_record("r-0-00000");
    usage_submit(&again);
    usage_writer_sync();
    usage_writer_stats(&after);
    assert_int_equal(after.duplicates - before.duplicates, 1);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n);
    assert_int_equal(payer_wallet(f), 1000000 - (int64_t)n);

    /* Records queued right before stop are written by the final batch. */
    for (int i = 0; i < 10; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "last-%d", i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
    usage_writer_stop();
    assert_int_equal(db_count(f), n + 10);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), n + 10);

    /* The JSONL line is the final record: charged amounts filled in. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(f->s, NULL, NULL, 1, &arr), STORE_OK);
    json_t *charged = json_object_get(json_array_get(arr, 0), "charged");
    assert_int_equal(json_integer_value(json_object_get(charged, "wallet_micros")), 1);
    json_decref(arr);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

#define BREAK_STORE                                                                                \
    "CREATE TRIGGER store_down BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'down'); END;"
#define FIX_STORE "DROP TRIGGER store_down"

static void submit_range(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[ID_MAX];
        snprintf(id, sizeof(id), "%s-%03d", prefix, i);
        struct usage_record r = wallet_record(id);
        usage_submit(&r);
    }
}

/* Waits (bounded) until the writer reports at least `want` replayed
 * records since `base`. */
static void wait_replayed(uint64_t base, uint64_t want)
{
    int64_t deadline = mono_ms() + 15000;
    struct usage_stats st;
    for (;;) {
        usage_writer_stats(&st);
        if (st.replayed - base >= want)
            return;
        if (mono_ms() > deadline)
            fail_msg("replay did not happen: %llu of %llu",
                     (unsigned long long)(st.replayed - base), (unsigned long long)want);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_writer_spool_and_replay(void **state)
{
    struct fixture *f = *state;
    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);

    /* Store fails: records land in the spool, synced to disk. */
    exec_sql(f->store_path, BREAK_STORE);
    submit_range("a", 40);
    usage_writer_sync();
    usage_writer_stats(&st);
    assert_int_equal(st.spooled - base.spooled, 40);
    assert_int_equal(db_count(f), 0);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 0);
    assert_true(spool_files(f) >= 1);
    assert_int_equal(payer_wallet(f), 1000000);

    /* Store back: the writer replays on its own, once. */
    exec_sql(f->store_path, FIX_STORE);
    wait_replayed(base.replayed, 40);
    usage_writer_sync();
    assert_int_equal(db_count(f), 40);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 40);
    assert_int_equal(spool_files(f), 0);
    assert_int_equal(payer_wallet(f), 1000000 - 40);

    /* Down again across a restart: the final attempt at stop fails too, the
     * spool survives, and the next start replays it before returning. */
    exec_sql(f->store_path, BREAK_STORE);
    submit_range("b", 25);
    usage_writer_sync();
    usage_writer_stop();
    assert_true(spool_files(f) >= 1);
    assert_int_equal(db_count(f), 40);
    exec_sql(f->store_path, FIX_STORE);
    start_writer(f);
    assert_int_equal(db_count(f), 65);
    assert_int_equal(spool_files(f), 0);
    usage_writer_stop();

    assert_int_equal(jsonl_count_unique(f->jsonl_path), 65);
    assert_int_equal(payer_wallet(f), 1000000 - 65);
    usage_writer_stats(&st);
    assert_int_equal(st.replayed - base.replayed, 65);
    assert_int_equal(st.spooled - base.spooled, 65);
}

/* A spool file whose records were already committed (crash between commit
 * and unlink) is replayed as duplicates: nothing charged or logged twice. */
static void test_writer_replay_idempotent(void **state)
{
    struct fixture *f = *state;
    struct usage_record recs[3] = {wallet_record("d-1"), wallet_record("d-2"),
                                   wallet_record("d-3")};
    assert_int_equal(store_usage_write(f->s, recs, 2, NULL), STORE_OK);
    assert_int_equal(payer_wallet(f), 1000000 - 2);

    assert_int_equal(mkdir(f->spool_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/usage-0000000000000001-00000001-00000000.jsonl", f->spool_dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 3; i++) {
        json_t *o = usage_record_to_json(&recs[i]);
        char *text = json_dumps(o, JSON_COMPACT);
        fprintf(fp, "%s\n", text);
        free(text);
        json_decref(o);
    }
    fclose(fp);

    struct usage_stats base, st;
    usage_writer_stats(&base);
    start_writer(f);
    usage_writer_stats(&st);
    assert_int_equal(st.duplicates - base.duplicates, 2);
    assert_int_equal(st.replayed - base.replayed, 1);
    assert_int_equal(spool_files(f), 0);
    assert_int_equal(db_count(f), 3);
    assert_int_equal(payer_wallet(f), 1000000 - 3);
    assert_int_equal(jsonl_count_unique(f->jsonl_path), 1); /* only d-3 is new */
    usage_writer_stop();
}

static void test_writer_start_fails(void **state)
{
    struct fixture *f = *state;
    struct config cfg = f->cfg;
    char backend[16];
    snprintf(backend, sizeof(backend), "redis");
    cfg.store_backend = backend;
    char *err = NULL;
    assert_int_equal(usage_writer_start(&cfg, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "redis"));
    free(err);
    usage_writer_sync(); /* not running: must not block */
    /* A failed start leaves the writer startable. */
    start_writer(f);
    usage_writer_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_json_from_tolerant_and_strict),
        cmocka_unit_test_setup_teardown(test_writer_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_spool_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_replay_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_start_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
