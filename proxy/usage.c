/* usage.c - the usage record's JSON form (DESIGN §5) and the writer thread
 * that batches records into the store (group commit), appends them to the
 * JSONL sink, and spools them to disk when the store fails. */
#include "common.h"
#include "usage.h"
#include "config.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX     256
#define RETRY_MS      1000  /* spool replay and store reconnect cadence */
#define BACKLOG_WARN  10000 /* first queue length that is logged */
#define STOP_ATTEMPTS 3     /* at shutdown, tries before records are given up */
#define JSON_FLAGS    JSON_COMPACT
#define CHARGED_UNSET (-1) /* left on duplicates by the store (see process) */
#define SPOOL_SUFFIX  ".jsonl"

static const char *const outcome_names[] = {
    [USAGE_OUTCOME_OK] = "ok",
    [USAGE_OUTCOME_CLIENT_DISCONNECT] = "client_disconnect",
    [USAGE_OUTCOME_UPSTREAM_ERROR] = "upstream_error",
    [USAGE_OUTCOME_TIMEOUT] = "timeout",
};

const char *usage_outcome_name(enum usage_outcome o)
{
    if ((size_t)o >= ARRAY_SIZE(outcome_names))
        return "ok";
    return outcome_names[o];
}

/* ---- JSON ---------------------------------------------------------------- */

static void format_ts(int64_t ms, char out[80])
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z". */
static MUST_CHECK int parse_ts(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return -1;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
}

static json_t *str_or_null(const char *s)
{
    return s[0] != '\0' ? json_string(s) : json_null();
}

json_t *usage_record_to_json(const struct usage_record *r)
{
    char ts[80];
    format_ts(r->ts_ms, ts);
    const char *pname = provider_name(r->provider);
    if (pname == NULL)
        pname = "";

    json_t *units = json_object();
    json_t *charged = json_object();
    json_t *o = json_object();
    if (units == NULL || charged == NULL || o == NULL)
        goto failed;
    int bad = 0;
    bad |= json_object_set_new(units, "input_tokens", json_integer(r->units.input_tokens));
    bad |= json_object_set_new(units, "cached_input_tokens",
                               json_integer(r->units.cached_input_tokens));
    bad |= json_object_set_new(units, "output_tokens", json_integer(r->units.output_tokens));
    bad |=
        json_object_set_new(units, "audio_input_tokens", json_integer(r->units.audio_input_tokens));
    bad |= json_object_set_new(units, "audio_output_tokens",
                               json_integer(r->units.audio_output_tokens));
    bad |= json_object_set_new(units, "characters", json_integer(r->units.characters));
    bad |=
        json_object_set_new(units, "audio_seconds", json_real((double)r->units.audio_ms / 1000.0));
    bad |= json_object_set_new(charged, "plan_credits_micros",
                               json_integer(r->charged_plan_credits_micros));
    bad |= json_object_set_new(charged, "wallet_micros", json_integer(r->charged_wallet_micros));

    bad |= json_object_set_new(o, "id", json_string(r->id));
    bad |= json_object_set_new(o, "ts", json_string(ts));
    bad |= json_object_set_new(o, "tenant_id", json_string(r->tenant_id));
    bad |= json_object_set_new(o, "payer_id", json_string(r->payer_id));
    bad |= json_object_set_new(o, "key_id", json_string(r->key_id));
    bad |= json_object_set_new(o, "session_id", str_or_null(r->session_id));
    bad |= json_object_set_new(o, "provider", json_string(pname));
    bad |= json_object_set_new(o, "slot", r->has_slot ? json_string(pname) : json_null());
    bad |= json_object_set_new(o, "line", json_string(r->line));
    bad |= json_object_set_new(o, "endpoint", json_string(r->endpoint));
    bad |= json_object_set_new(o, "model", str_or_null(r->model));
    bad |= json_object_set_new(o, "billed_to", json_string(r->billed_byok ? "byok" : "wallet"));
    bad |= json_object_set_new(o, "connection_id", str_or_null(r->connection_id));
    bad |= json_object_set_new(o, "status", json_integer(r->status));
    bad |= json_object_set_new(o, "outcome", json_string(usage_outcome_name(r->outcome)));
    bad |= json_object_set_new(o, "estimated", json_boolean(r->estimated));
    bad |= json_object_set_new(o, "fallback_reason", str_or_null(r->fallback_reason));
    bad |= json_object_set_new(o, "units", units);
    units = NULL;
    bad |= json_object_set_new(o, "cost_micros", json_integer(r->cost_micros));
    bad |= json_object_set_new(o, "charged", charged);
    charged = NULL;
    bad |= json_object_set_new(o, "upstream_request_id", str_or_null(r->upstream_request_id));
    bad |=
        json_object_set_new(o, "ttfb_ms", r->ttfb_ms >= 0 ? json_integer(r->ttfb_ms) : json_null());
    bad |= json_object_set_new(o, "duration_ms", json_integer(r->duration_ms));
    if (bad)
        goto failed;
    return o;
failed:
    json_decref(units);
    json_decref(charged);
    json_decref(o);
    return NULL;
}

/* Copies a string member into out. Missing or null gives "" unless required.
 * Too long is an error: ids must never be silently truncated. */
static MUST_CHECK int get_str(json_t *obj, const char *key, char *out, size_t size, bool required)
{
    json_t *v = json_object_get(obj, key);
    out[0] = '\0';
    if (v == NULL || json_is_null(v))
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) >= size)
        return -1;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static MUST_CHECK int get_int(json_t *obj, const char *key, int64_t *out, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int usage_record_from_json(json_t *obj, struct usage_record *r)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(obj))
        return -1;
    char ts[40], provider[32], billed[16], outcome[32];
    if (get_str(obj, "id", r->id, sizeof(r->id), true) == -1 ||
        get_str(obj, "ts", ts, sizeof(ts), true) == -1 || parse_ts(ts, &r->ts_ms) == -1 ||
        get_str(obj, "tenant_id", r->tenant_id, sizeof(r->tenant_id), true) == -1 ||
        get_str(obj, "payer_id", r->payer_id, sizeof(r->payer_id), true) == -1 ||
        get_str(obj, "key_id", r->key_id, sizeof(r->key_id), false) == -1 ||
        get_str(obj, "session_id", r->session_id, sizeof(r->session_id), false) == -1 ||
        get_str(obj, "provider", provider, sizeof(provider), true) == -1 ||
        provider_parse(provider, &r->provider) == -1 ||
        get_str(obj, "line", r->line, sizeof(r->line), false) == -1 ||
        get_str(obj, "endpoint", r->endpoint, sizeof(r->endpoint), false) == -1 ||
        get_str(obj, "model", r->model, sizeof(r->model), false) == -1 ||
        get_str(obj, "billed_to", billed, sizeof(billed), true) == -1 ||
        get_str(obj, "connection_id", r->connection_id, sizeof(r->connection_id), false) == -1 ||
        get_str(obj, "outcome", outcome, sizeof(outcome), false) == -1 ||
        get_str(obj, "fallback_reason", r->fallback_reason, sizeof(r->fallback_reason), false) ==
            -1 ||
        get_str(obj, "upstream_request_id", r->upstream_request_id, sizeof(r->upstream_request_id),
                false) == -1)
        return -1;

    json_t *slot = json_object_get(obj, "slot");
    r->has_slot = json_is_string(slot);

    if (strcmp(billed, "byok") == 0)
        r->billed_byok = true;
    else if (strcmp(billed, "wallet") != 0)
        return -1;

    r->outcome = USAGE_OUTCOME_OK;
    if (outcome[0] != '\0') {
        size_t i = 0;
        while (i < ARRAY_SIZE(outcome_names) && strcmp(outcome_names[i], outcome) != 0)
            i++;
        if (i == ARRAY_SIZE(outcome_names))
            return -1;
        r->outcome = (enum usage_outcome)i;
    }

    int64_t status;
    if (get_int(obj, "status", &status, 0) == -1 || status < 0 || status > 999)
        return -1;
    r->status = (int)status;
    json_t *est = json_object_get(obj, "estimated");
    r->estimated = json_is_true(est);

    json_t *units = json_object_get(obj, "units");
    if (units != NULL && !json_is_null(units)) {
        if (!json_is_object(units))
            return -1;
        if (get_int(units, "input_tokens", &r->units.input_tokens, 0) == -1 ||
            get_int(units, "cached_input_tokens", &r->units.cached_input_tokens, 0) == -1 ||
            get_int(units, "output_tokens", &r->units.output_tokens, 0) == -1 ||
            get_int(units, "audio_input_tokens", &r->units.audio_input_tokens, 0) == -1 ||
            get_int(units, "audio_output_tokens", &r->units.audio_output_tokens, 0) == -1 ||
            get_int(units, "characters", &r->units.characters, 0) == -1)
            return -1;
        json_t *secs = json_object_get(units, "audio_seconds");
        if (secs != NULL && !json_is_null(secs)) {
            if (!json_is_number(secs))
                return -1;
            r->units.audio_ms = llround(json_number_value(secs) * 1000.0);
        }
    }

    json_t *charged = json_object_get(obj, "charged");
    if (charged != NULL && !json_is_null(charged)) {
        if (!json_is_object(charged) ||
            get_int(charged, "plan_credits_micros", &r->charged_plan_credits_micros, 0) == -1 ||
            get_int(charged, "wallet_micros", &r->charged_wallet_micros, 0) == -1)
            return -1;
    }
    if (get_int(obj, "cost_micros", &r->cost_micros, 0) == -1 ||
        get_int(obj, "ttfb_ms", &r->ttfb_ms, -1) == -1 ||
        get_int(obj, "duration_ms", &r->duration_ms, 0) == -1)
        return -1;
    return 0;
}

/* ---- writer -------------------------------------------------------------- */

struct qnode {
    struct qnode *next;
    struct usage_record rec;
};

/* Shared between submitters, sync callers and the writer thread; guarded by
 * mu. Sequence numbers count records: sync waits for processed >= the
 * submitted count it saw, which works because the queue is FIFO. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* writer: records queued, or stop */
    pthread_cond_t done_cv; /* sync/start: progress made */
    bool cv_monotonic;      /* work_cv re-initialised on CLOCK_MONOTONIC */
    struct qnode *head, *tail;
    size_t len;
    size_t backlog_warn_at;
    uint64_t submitted_seq, processed_seq;
    bool running, stopping, start_done, start_ok;
    bool warned_stopped;
    char *start_err;
    pthread_t thread;
} q = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .backlog_warn_at = BACKLOG_WARN,
};

static struct {
    _Atomic uint64_t submitted, written, duplicates, spooled, replayed, batches;
} stats;

/* Owned by the writer thread alone. */
static struct {
    const struct config *cfg;
    struct store *store;    /* NULL after a failure until reopened */
    int64_t next_open_ms;   /* earliest reopen attempt (mono) */
    bool spool_pending;     /* spool files may exist */
    int64_t next_replay_ms; /* mono */
    unsigned spool_seq;
} wr;

void usage_submit(const struct usage_record *r)
{
    struct qnode *n = malloc(sizeof(*n));
    if (n == NULL) {
        log_error("usage: out of memory queueing record %s; record lost", r->id);
        return;
    }
    n->next = NULL;
    n->rec = *r;
    atomic_fetch_add_explicit(&stats.submitted, 1, memory_order_relaxed);

    pthread_mutex_lock(&q.mu);
    if (q.tail != NULL)
        q.tail->next = n;
    else
        q.head = n;
    q.tail = n;
    q.len++;
    q.submitted_seq++;
    size_t len = q.len;
    bool warn = len >= q.backlog_warn_at;
    if (warn)
        q.backlog_warn_at *= 2;
    /* Once per stopped period, not per record. */
    bool warn_stopped = !q.running && !q.warned_stopped;
    if (warn_stopped)
        q.warned_stopped = true;
    pthread_cond_signal(&q.work_cv);
    pthread_mutex_unlock(&q.mu);

    if (warn)
        log_warn("usage: writer backlog is %zu records (the store is slow or down); "
                 "nothing is dropped",
                 len);
    if (warn_stopped)
        log_warn("usage: records are being queued while the writer is not running");
}

/* mkdir -p of dir itself (parents == false) or of the directory part of a
 * file path (parents == true). */
static MUST_CHECK int make_dirs(const char *path, bool parent_of_file)
{
    char *dir = strdup(path);
    int rc = -1;
    if (dir == NULL)
        return -1;
    if (parent_of_file) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir) {
            rc = 0;
            goto out;
        }
        *slash = '\0';
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) == -1 && errno != EEXIST)
            goto out;
        *p = '/';
    }
    if (mkdir(dir, 0750) == -1 && errno != EEXIST)
        goto out;
    rc = 0;
out:
    free(dir);
    return rc;
}

static MUST_CHECK int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static MUST_CHECK int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Growable text buffer for JSON lines. */
struct linebuf {
    char *data;
    size_t len, cap;
};

static MUST_CHECK int linebuf_add_record(struct linebuf *b, const struct usage_record *r)
{
    json_t *obj = usage_record_to_json(r);
    char *text = obj != NULL ? json_dumps(obj, JSON_FLAGS) : NULL;
    json_decref(obj);
    if (text == NULL)
        return -1;
    size_t n = strlen(text);
    if (b->len + n + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + n + 1 + 4096);
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            free(text);
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, n);
    b->data[b->len + n] = '\n';
    b->len += n + 1;
    free(text);
    return 0;
}

/* Appends the newly written records (not those the store skipped as
 * duplicates, which still carry CHARGED_UNSET) to the JSONL sink: one write
 * and one fdatasync per batch. The store is the record of truth, so a
 * failure here is logged, not retried. */
static void jsonl_append(const struct usage_record *recs, size_t n)
{
    const char *path = wr.cfg->usage_jsonl_path;
    if (path == NULL || path[0] == '\0')
        return;
    struct linebuf b = {0};
    int fd = -1;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].charged_plan_credits_micros == CHARGED_UNSET)
            continue;
        if (linebuf_add_record(&b, &recs[i]) == -1) {
            log_error("usage: out of memory formatting JSONL lines");
            goto out;
        }
    }
    if (b.len == 0)
        goto out;
    if (make_dirs(path, true) == -1 ||
        (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) == -1 ||
        write_all(fd, b.data, b.len) == -1 || fdatasync(fd) == -1) {
        log_error("usage: appending to the JSONL file %s failed: %s (records are in the store)",
                  path, strerror(errno));
    }
out:
    if (fd != -1)
        close(fd);
    free(b.data);
}

/* Writes the batch to a new spool file, atomically (temp name, fsync,
 * rename, fsync of the directory), so a replay never sees half a file. */
static MUST_CHECK int spool_write(const struct usage_record *recs, size_t n)
{
    const char *dir = wr.cfg->usage_spool_dir;
    struct linebuf b = {0};
    char path[4096], tmp[4096 + 8];
    int fd = -1, rc = -1;
    if (dir == NULL || dir[0] == '\0') {
        log_error("usage: the store failed and no spool directory is configured");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (linebuf_add_record(&b, &recs[i]) == -1)
            goto out;
    }
    /* Zero-padded wall time first, so name order is write order. */
    snprintf(path, sizeof(path), "%s/usage-%016lld-%08ld-%08u" SPOOL_SUFFIX, dir,
             (long long)now_ms(), (long)getpid(), wr.spool_seq++);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (make_dirs(dir, false) == -1 ||
        (fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
        goto out;
    if (write_all(fd, b.data, b.len) == -1 || fsync(fd) == -1) {
        close(fd);
        fd = -1;
        unlink(tmp);
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) == -1) {
        unlink(tmp);
        goto out;
    }
    if (fsync_dir(dir) == -1)
        goto out; /* the file exists; only its durability is in doubt */
    rc = 0;
out:
    if (rc == -1)
        log_error("usage: spooling %zu records to %s failed: %s", n, dir, strerror(errno));
    free(b.data);
    return rc;
}

/* Opens the store if there is none, at most once per RETRY_MS. */
static bool have_store(void)
{
    if (wr.store != NULL)
        return true;
    int64_t now = mono_ms();
    if (now < wr.next_open_ms)
        return false;
    wr.next_open_ms = now + RETRY_MS;
    char *err = NULL;
    wr.store = store_open(wr.cfg, &err);
    if (wr.store == NULL) {
        log_error("usage: reopening the store failed: %s", err != NULL ? err : "unknown error");
        free(err);
        return false;
    }
    log_info("usage: store reopened");
    return true;
}

/* Drops the handle after a failure so the next attempt reconnects. */
static void drop_store(void)
{
    store_close(wr.store);
    wr.store = NULL;
    wr.next_open_ms = mono_ms() + RETRY_MS;
}

/* Writes and charges recs in one store transaction, then appends the new
 * ones to JSONL. *fresh gets the number newly written. -1 when the store
 * failed (nothing committed). */
static MUST_CHECK int commit_batch(struct usage_record *recs, size_t n, size_t *fresh)
{
    /* The store fills charged_* of every record it writes and leaves
     * duplicates alone, so the marker tells which lines are new. */
    for (size_t i = 0; i < n; i++) {
        recs[i].charged_plan_credits_micros = CHARGED_UNSET;
        recs[i].charged_wallet_micros = CHARGED_UNSET;
    }
    size_t dups = 0;
    if (!have_store() || store_usage_write(wr.store, recs, n, &dups) != STORE_OK) {
        if (wr.store != NULL)
            drop_store();
        for (size_t i = 0; i < n; i++) {
            recs[i].charged_plan_credits_micros = 0;
            recs[i].charged_wallet_micros = 0;
        }
        return -1;
    }
    size_t unset = 0;
    for (size_t i = 0; i < n; i++)
        unset += recs[i].charged_plan_credits_micros == CHARGED_UNSET;
    if (unset != dups)
        log_warn("usage: store reported %zu duplicates but left %zu records unmarked", dups, unset);
    atomic_fetch_add_explicit(&stats.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.written, n - dups, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.duplicates, dups, memory_order_relaxed);
    jsonl_append(recs, n);
    *fresh = n - dups;
    return 0;
}

/* Live batch: store, else spool. -1 only when both failed. */
static MUST_CHECK int process_batch(struct usage_record *recs, size_t n)
{
    size_t fresh;
    if (commit_batch(recs, n, &fresh) == 0)
        return 0;
    if (spool_write(recs, n) == -1)
        return -1;
    log_warn("usage: store unavailable, %zu records spooled for replay", n);
    atomic_fetch_add_explicit(&stats.spooled, n, memory_order_relaxed);
    if (!wr.spool_pending)
        wr.next_replay_ms = mono_ms() + RETRY_MS;
    wr.spool_pending = true;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_spool_name(const char *name)
{
    size_t len = strlen(name), slen = strlen(SPOOL_SUFFIX);
    return strncmp(name, "usage-", 6) == 0 && len > slen &&
           strcmp(name + len - slen, SPOOL_SUFFIX) == 0;
}

/* Reads one spool file into a record array; *bad counts unparseable lines. */
static MUST_CHECK int spool_read(const char *path, struct usage_record **out, size_t *n,
                                 size_t *bad)
{
    FILE *f = fopen(path, "re");
    *out = NULL;
    *n = 0;
    *bad = 0;
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    ssize_t len;
    int rc = -1;
    while ((len = getline(&line, &line_cap, f)) != -1) {
        if (len <= 1)
            continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)len, 0, &jerr);
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            struct usage_record *grown = realloc(*out, cap * sizeof(**out));
            if (grown == NULL) {
                json_decref(obj);
                goto out;
            }
            *out = grown;
        }
        if (obj == NULL || usage_record_from_json(obj, &(*out)[*n]) == -1)
            (*bad)++;
        else
            (*n)++;
        json_decref(obj);
    }
    rc = ferror(f) ? -1 : 0;
out:
    free(line);
    fclose(f);
    if (rc == -1) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* Replays one spool file; 0 when it is done with (removed or set aside). */
static MUST_CHECK int replay_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct usage_record *recs;
    size_t n, bad;
    if (spool_read(path, &recs, &n, &bad) == -1) {
        log_error("usage: reading spool file %s failed: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t fresh_total = 0;
    for (size_t off = 0; off < n; off += BATCH_MAX) {
        size_t fresh;
        /* Chunks committed before a failure are duplicates on the retry. */
        if (commit_batch(recs + off, MIN(BATCH_MAX, n - off), &fresh) == -1)
            goto out;
        fresh_total += fresh;
    }
    atomic_fetch_add_explicit(&stats.replayed, fresh_total, memory_order_relaxed);
    if (bad > 0) {
        /* Keep what could not be read for a human; never replay it again. */
        char aside[4096 + 8];
        snprintf(aside, sizeof(aside), "%s.bad", path);
        log_error("usage: spool file %s had %zu unreadable lines; kept as %s", path, bad, aside);
        if (rename(path, aside) == -1)
            goto out;
    } else if (unlink(path) == -1) {
        log_error("usage: removing replayed spool file %s failed: %s", path, strerror(errno));
        goto out;
    }
    if (fsync_dir(dir) == -1)
        log_warn("usage: fsync of spool directory %s failed: %s", dir, strerror(errno));
    log_info("usage: replayed spool file %s (%zu new, %zu already stored)", name, fresh_total,
             n - fresh_total);
    rc = 0;
out:
    free(recs);
    return rc;
}

/* Replays every spool file in name (= write) order; stops at the first
 * failure so later files never overtake an earlier one. */
static void replay_spool(void)
{
    const char *dir = wr.cfg->usage_spool_dir;
    wr.next_replay_ms = mono_ms() + RETRY_MS;
    if (dir == NULL || dir[0] == '\0') {
        wr.spool_pending = false;
        return;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT)
            log_error("usage: reading spool directory %s failed: %s", dir, strerror(errno));
        wr.spool_pending = errno != ENOENT;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool failed = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_spool_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                failed = true;
                break;
            }
            names = grown;
        }
        if ((names[n] = strdup(e->d_name)) == NULL) {
            failed = true;
            break;
        }
        n++;
    }
    closedir(d);
    if (!failed && n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n && !failed; i++)
        failed = replay_file(dir, names[i]) == -1;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    wr.spool_pending = failed;
}

/* Takes up to max records off the queue (caller holds q.mu). */
static size_t dequeue(struct usage_record *out, size_t max)
{
    size_t n = 0;
    while (n < max && q.head != NULL) {
        struct qnode *node = q.head;
        q.head = node->next;
        if (q.head == NULL)
            q.tail = NULL;
        out[n++] = node->rec;
        free(node);
        q.len--;
    }
    if (q.len < BACKLOG_WARN)
        q.backlog_warn_at = BACKLOG_WARN;
    return n;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(q.cv_monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void mark_processed(size_t n)
{
    pthread_mutex_lock(&q.mu);
    q.processed_seq += n;
    pthread_cond_broadcast(&q.done_cv);
    pthread_mutex_unlock(&q.mu);
}

static void *writer_main(void *arg)
{
    (void)arg;
    struct usage_record *batch = malloc(BATCH_MAX * sizeof(*batch));
    char *err = NULL;
    wr.store = store_open(wr.cfg, &err);
    bool ok = wr.store != NULL && batch != NULL;
    if (ok) {
        replay_spool(); /* before any new record, so old ones go first */
    } else if (err == NULL) {
        err = strdup(batch == NULL ? "out of memory starting the usage writer"
                                   : "opening the store failed");
    }

    pthread_mutex_lock(&q.mu);
    q.start_done = true;
    q.start_ok = ok;
    q.start_err = ok ? NULL : err;
    pthread_cond_broadcast(&q.done_cv);
    pthread_mutex_unlock(&q.mu);
    if (!ok)
        goto out;

    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.head == NULL && !q.stopping) {
            if (!wr.spool_pending) {
                pthread_cond_wait(&q.work_cv, &q.mu);
                continue;
            }
            int64_t wait = wr.next_replay_ms - mono_ms();
            if (wait <= 0)
                break;
            struct timespec ts;
            deadline_in(&ts, wait);
            if (pthread_cond_timedwait(&q.work_cv, &q.mu, &ts) == ETIMEDOUT)
                break;
        }
        size_t n = dequeue(batch, BATCH_MAX);
        bool stopping = q.stopping;
        pthread_mutex_unlock(&q.mu);

        if (n > 0) {
            int attempts = 0;
            while (process_batch(batch, n) == -1) {
                /* Neither store nor spool took it: hold on and retry rather
                 * than drop, except at shutdown after a few tries. */
                if (stopping && ++attempts >= STOP_ATTEMPTS) {
                    log_error("usage: %zu records could be neither stored nor spooled; lost", n);
                    break;
                }
                pthread_mutex_lock(&q.mu);
                struct timespec ts;
                deadline_in(&ts, RETRY_MS);
                pthread_cond_timedwait(&q.work_cv, &q.mu, &ts);
                stopping = q.stopping;
                pthread_mutex_unlock(&q.mu);
            }
            mark_processed(n);
        }
        if (wr.spool_pending && (mono_ms() >= wr.next_replay_ms || (stopping && n == 0)))
            replay_spool();
        if (stopping && n == 0)
            break;
    }
out:
    store_close(wr.store);
    wr.store = NULL;
    free(batch);
    return NULL;
}

int usage_writer_start(const struct config *cfg, char **err)
{
    *err = NULL;
    pthread_mutex_lock(&q.mu);
    if (q.running) {
        pthread_mutex_unlock(&q.mu);
        *err = strdup("the usage writer is already running");
        return -1;
    }
    if (!q.cv_monotonic) {
        /* Retry timing must not jump with the wall clock. Safe to swap here:
         * nobody waits on work_cv while the writer is not running, and
         * submitters only signal it under q.mu. */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_destroy(&q.work_cv);
        pthread_cond_init(&q.work_cv, &attr);
        pthread_condattr_destroy(&attr);
        q.cv_monotonic = true;
    }
    memset(&wr, 0, sizeof(wr));
    wr.cfg = cfg;
    q.start_done = false;
    q.start_err = NULL;
    q.warned_stopped = false;
    q.stopping = false;
    int rc = pthread_create(&q.thread, NULL, writer_main, NULL);
    if (rc != 0) {
        pthread_mutex_unlock(&q.mu);
        if (asprintf(err, "starting the usage writer thread failed: %s", strerror(rc)) == -1)
            *err = NULL;
        return -1;
    }
    while (!q.start_done)
        pthread_cond_wait(&q.done_cv, &q.mu);
    bool ok = q.start_ok;
    char *start_err = q.start_err;
    q.start_err = NULL;
    q.running = ok;
    pthread_mutex_unlock(&q.mu);
    if (!ok) {
        pthread_join(q.thread, NULL);
        *err = start_err;
        return -1;
    }
    return 0;
}

void usage_writer_stop(void)
{
    pthread_mutex_lock(&q.mu);
    if (!q.running || q.stopping) {
        pthread_mutex_unlock(&q.mu);
        return;
    }
    q.stopping = true;
    pthread_cond_signal(&q.work_cv);
    pthread_mutex_unlock(&q.mu);

    pthread_join(q.thread, NULL);

    pthread_mutex_lock(&q.mu);
    q.running = false;
    q.stopping = false;
    pthread_cond_broadcast(&q.done_cv); /* release sync callers */
    pthread_mutex_unlock(&q.mu);
}

void usage_writer_sync(void)
{
    pthread_mutex_lock(&q.mu);
    uint64_t target = q.submitted_seq;
    while (q.running && q.processed_seq < target)
        pthread_cond_wait(&q.done_cv, &q.mu);
    pthread_mutex_unlock(&q.mu);
}

void usage_writer_stats(struct usage_stats *out)
{
    out->submitted = atomic_load_explicit(&stats.submitted, memory_order_relaxed);
    out->written = atomic_load_explicit(&stats.written, memory_order_relaxed);
    out->duplicates = atomic_load_explicit(&stats.duplicates, memory_order_relaxed);
    out->spooled = atomic_load_explicit(&stats.spooled, memory_order_relaxed);
    out->replayed = atomic_load_explicit(&stats.replayed, memory_order_relaxed);
    out->batches = atomic_load_explicit(&stats.batches, memory_order_relaxed);
}
