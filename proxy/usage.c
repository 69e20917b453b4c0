/* usage.c - the usage writer thread: batches records into the store (group
 * commit; the store charges and gives back each new record's JSON text),
 * appends that text to the JSONL sink, and spools records to disk when the
 * store fails, replaying them later.
 *
 * The JSONL file is opened once (its directory created at writer start) and
 * kept open: one write per batch, and one fdatasync at most once a second
 * (JSONL_SYNC_MS after the first unsynced line, when the writer is busy or
 * idle), and always before the file is closed (rotation, a failed write, a
 * stop). The store already fsyncs each commit and is the record of truth; a
 * second fdatasync per batch was ~15 % of the proxy's CPU at one client
 * connection. So a kill -9 loses no line written (the page cache has it), a
 * power loss up to about a second of them: at writer start, the SQLite
 * store gives back every record committed after the file's last line and
 * they are appended again (jsonl_repair; a torn last line is cut first). In
 * fleet mode (Redis) there is no such repair: the file is best effort.
 *
 * Log rotation works both ways: with copytruncate the O_APPEND descriptor
 * simply continues at the new end; when the file is renamed away (or
 * deleted), a stat of the path at most once per second sees another inode
 * and the file is reopened, so lines go to the old file for at most about a
 * second. A failed write also reopens. */
#include "common.h"
#include "usage.h"
#include "config.h"
#include "fsutil.h"
#include "ledger.h"
#include "store.h"
#include "usage_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 256
/* Group commit: a batch that is not full waits this long for company
 * before it is written, so a busy proxy makes a few large transactions (and
 * their fsyncs) a second instead of one per request. A usage_writer_sync()
 * caller or a stop cuts the wait short. */
#define LINGER_MS 2
/* With the queue journal on (usage_journal.h), a queued record survives a
 * kill -9, so the batch may wait longer: fewer, larger transactions (each
 * one an fsync and the rewrite of every B-tree's last page). */
#define LINGER_JOURNALED_MS 10
#define RETRY_MS            1000  /* spool replay and store reconnect cadence */
#define BACKLOG_WARN        10000 /* first queue length that is logged */
#define STOP_ATTEMPTS       3     /* at shutdown, tries before records are given up */
#define SPOOL_SUFFIX        ".jsonl"
#define REJECTED_NAME       "rejected" /* in the spool dir: refused records, for a human */
#define JSONL_CHECK_MS      1000       /* rotation check cadence */
#define JSONL_SYNC_MS       1000       /* longest a written JSONL line stays unsynced */
/* A record's line is a few KB at most (usage_record.c's FORMAT_MAX): a
 * longer last line is not a record the repair could read. */
#define JSONL_LINE_MAX    (64 * 1024)
#define JSONL_REPAIR_PAGE 1000 /* lines the repair asks the store for at a time */
/* Queue nodes the writer handed back, kept for the next submits: a node is
 * ~1.3 KB (beyond malloc's per-thread cache) and was allocated by a worker
 * and freed by the writer, so each record paid the allocator's slow path
 * and an arena lock across threads. */
#define SPARE_NODES_MAX (2 * BATCH_MAX)

struct qnode {
    struct qnode *next;
    uint64_t jend; /* its end in the queue journal (usage_journal_append) */
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
    struct qnode *spare; /* free nodes (SPARE_NODES_MAX at most) */
    size_t n_spare;
    size_t backlog_warn_at;
    uint64_t submitted_seq, processed_seq;
    bool running, stopping, start_done, start_ok;
    bool warned_stopped;
    unsigned sync_waiters; /* usage_writer_sync() callers: no lingering */
    char *start_err;
    pthread_t thread;
} q = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .backlog_warn_at = BACKLOG_WARN,
};

static struct {
    _Atomic uint64_t submitted, written, duplicates, spooled, replayed, batches, rejected;
    _Atomic uint64_t jsonl_syncs, unjournaled, journal_recovered;
} stats;

/* Owned by the writer thread alone. */
static struct {
    const struct config *cfg;
    int jsonl_fd;                    /* -1 = not open */
    int64_t jsonl_check_ms;          /* next rotation check (mono) */
    bool jsonl_dirty;                /* lines written since the last fdatasync */
    int64_t jsonl_sync_ms;           /* when they are synced at the latest (mono) */
    struct usage_record_lines lines; /* reused by every batch */
    struct store *store;             /* NULL after a failure until reopened */
    int64_t next_open_ms;            /* earliest reopen attempt (mono) */
    bool spool_pending;              /* spool files may exist */
    int64_t next_replay_ms;          /* mono */
    unsigned spool_seq;
    bool journal_held; /* records were given up: the journal's mark stays */
} wr;

void usage_submit(const struct usage_record *r)
{
    pthread_mutex_lock(&q.mu);
    struct qnode *n = q.spare;
    if (n != NULL) {
        q.spare = n->next;
        q.n_spare--;
    }
    pthread_mutex_unlock(&q.mu);
    if (n == NULL)
        n = malloc(sizeof(*n));
    if (n == NULL) {
        log_error("usage: out of memory queueing record %s; record lost", r->id);
        return;
    }
    n->next = NULL;
    n->rec = *r;
    /* Its hold becomes its exact charge, reserved until committed. */
    ledger_settle(&n->rec);
    atomic_fetch_add_explicit(&stats.submitted, 1, memory_order_relaxed);
    /* Its journal line is formatted before the lock, and copied under it:
     * the journal's order is the queue's. */
    char line[USAGE_SPOOL_LINE_MAX];
    int line_len = usage_journal_on() ? usage_record_format_spool(&n->rec, line, sizeof(line)) : 0;

    pthread_mutex_lock(&q.mu);
    bool journaled = false;
    n->jend = usage_journal_append_line(line, line_len > 0 ? (size_t)line_len : 0, &journaled);
    if (!journaled && usage_journal_on())
        atomic_fetch_add_explicit(&stats.unjournaled, 1, memory_order_relaxed);
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
    /* The writer needs waking only for the first record of a batch (it
     * then lingers) and when a batch is full. */
    if (len == 1 || len == BATCH_MAX)
        pthread_cond_signal(&q.work_cv);
    pthread_mutex_unlock(&q.mu);

    if (warn)
        log_warn("usage: writer backlog is %zu records (the store is slow or down); "
                 "nothing is dropped",
                 len);
    if (warn_stopped)
        log_warn("usage: records are being queued while the writer is not running");
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

/* Puts the offset of the last '\n' in [from, end) of fd in *pos (-1: there
 * is none). Returns -1 (errno set) when a read failed. Reads backwards in
 * chunks, so a torn line costs a read of about its own length. */
static MUST_CHECK int jsonl_last_nl(int fd, off_t from, off_t end, off_t *pos)
{
    char buf[8192];
    *pos = -1;
    while (end > from) {
        size_t want = (size_t)MIN(end - from, (off_t)sizeof(buf));
        ssize_t got = pread(fd, buf, want, end - (off_t)want);
        if (got == -1 && errno == EINTR)
            continue;
        if (got != (ssize_t)want) {
            if (got >= 0)
                errno = EIO; /* the file shrank under us */
            return -1;
        }
        const char *nl = memrchr(buf, '\n', want);
        if (nl != NULL) {
            *pos = end - (off_t)want + (nl - buf);
            return 0;
        }
        end -= (off_t)want;
    }
    return 0;
}

/* Opens the JSONL file for appending. O_APPEND is what makes copytruncate
 * work. A crash or a failed write may have left half a line at the end: it
 * is cut back to the last complete line, so the damage never spoils the
 * next record's line; the repair at writer start (jsonl_repair) then
 * appends that record again, whole, from the store. */
static MUST_CHECK int jsonl_open(void)
{
    const char *path = wr.cfg->usage_jsonl_path;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1 && errno == ENOENT && fs_make_dirs(path, true) == 0)
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640); /* dir removed */
    if (fd == -1)
        return -1;
    struct stat st;
    char last;
    off_t nl;
    int e;
    if (fstat(fd, &st) == -1)
        goto failed;
    if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
        goto failed;
    if (st.st_size > 0 && last != '\n') {
        if (jsonl_last_nl(fd, 0, st.st_size, &nl) == -1 || ftruncate(fd, nl + 1) == -1)
            goto failed;
        log_warn("usage: the JSONL file %s ended with %lld bytes of an incomplete line (a torn "
                 "write); cut back to its last complete line",
                 path, (long long)(st.st_size - (nl + 1)));
    }
    wr.jsonl_fd = fd;
    wr.jsonl_check_ms = mono_ms() + JSONL_CHECK_MS;
    return 0;
failed:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* fdatasyncs the lines written since the last sync, if any. False (logged)
 * when it failed: those lines are in the store, and may be missing from the
 * file after a power loss. Not retried: after a failed fdatasync the kernel
 * may have dropped the pages, and a second call would report success. */
static bool jsonl_sync(void)
{
    bool dirty = wr.jsonl_dirty;
    wr.jsonl_dirty = false;
    if (!dirty || wr.jsonl_fd == -1)
        return true;
    if (fdatasync(wr.jsonl_fd) == -1) {
        log_error("usage: fdatasync of the JSONL file %s failed: %s (records are in the store)",
                  wr.cfg->usage_jsonl_path, strerror(errno));
        return false;
    }
    atomic_fetch_add_explicit(&stats.jsonl_syncs, 1, memory_order_relaxed);
    return true;
}

/* Syncs first: a stop, a rotation or a failed write leaves nothing
 * written unsynced behind. */
static void jsonl_close(void)
{
    if (wr.jsonl_fd == -1)
        return;
    (void)jsonl_sync(); /* a failure is logged; the file is closed anyway */
    close(wr.jsonl_fd);
    wr.jsonl_fd = -1;
}

/* Counts bytes just written as unsynced; the first of them starts the
 * JSONL_SYNC_MS wait. */
static void jsonl_mark_dirty(void)
{
    if (wr.jsonl_dirty)
        return;
    wr.jsonl_dirty = true;
    wr.jsonl_sync_ms = mono_ms() + JSONL_SYNC_MS;
}

/* Syncs once the oldest unsynced line has waited JSONL_SYNC_MS. Called
 * after each batch and when the writer wakes idle (its wait is bounded by
 * jsonl_sync_ms while lines are unsynced). A failure closes the file: the
 * next batch reopens it. */
static void jsonl_sync_due(void)
{
    if (wr.jsonl_dirty && mono_ms() >= wr.jsonl_sync_ms && !jsonl_sync())
        jsonl_close();
}

/* True when the path no longer names the open file (renamed away or removed
 * by log rotation). Stats at most once per JSONL_CHECK_MS, not per batch. */
static bool jsonl_rotated(void)
{
    int64_t now = mono_ms();
    if (now < wr.jsonl_check_ms)
        return false;
    wr.jsonl_check_ms = now + JSONL_CHECK_MS;
    struct stat path_st, fd_st;
    if (stat(wr.cfg->usage_jsonl_path, &path_st) == -1 || fstat(wr.jsonl_fd, &fd_st) == -1)
        return true;
    return path_st.st_ino != fd_st.st_ino || path_st.st_dev != fd_st.st_dev;
}

/* Appends the lines of a committed batch (wr.lines, as the store wrote
 * them: only records new to the store) to the JSONL sink: one write per
 * batch, synced at most once per JSONL_SYNC_MS (jsonl_sync_due). The store
 * is the record of truth, so a failure here is logged, not retried; the
 * next batch reopens the file. */
static void jsonl_append(void)
{
    const char *path = wr.cfg->usage_jsonl_path;
    const struct usage_record_lines *b = &wr.lines;
    if (path == NULL || path[0] == '\0' || b->len == 0)
        return;
    if (wr.jsonl_fd != -1 && jsonl_rotated()) {
        log_info("usage: the JSONL file %s was rotated; reopening it", path);
        jsonl_close();
    }
    if (wr.jsonl_fd == -1 && jsonl_open() == -1) {
        log_error("usage: opening the JSONL file %s failed: %s (records are in the store)", path,
                  strerror(errno));
        return;
    }
    if (write_all(wr.jsonl_fd, b->data, b->len) == -1) {
        log_error("usage: appending to the JSONL file %s failed: %s (records are in the store)",
                  path, strerror(errno));
        jsonl_close();
        return;
    }
    jsonl_mark_dirty();
    jsonl_sync_due();
}

/* The id of the JSONL file's last line into id[ID_MAX]; the file ends with
 * '\n' (jsonl_open cut any incomplete line). -1 with why[] set when the
 * line cannot be read or is not a usage record with a valid id. */
static MUST_CHECK int jsonl_last_id(int fd, off_t size, char *id, char *why, size_t why_size)
{
    off_t nl;
    char *line = NULL;
    json_t *obj = NULL;
    int rc = -1;
    off_t from = MAX((off_t)0, size - 1 - JSONL_LINE_MAX);
    if (jsonl_last_nl(fd, from, size - 1, &nl) == -1) {
        snprintf(why, why_size, "reading it failed: %s", strerror(errno));
        goto out;
    }
    if (nl == -1 && from > 0) {
        snprintf(why, why_size, "its last line is longer than any usage record");
        goto out;
    }
    size_t len = (size_t)(size - 1 - (nl + 1));
    line = malloc(len + 1);
    if (line == NULL || pread(fd, line, len, nl + 1) != (ssize_t)len) {
        snprintf(why, why_size, "reading its last line failed");
        goto out;
    }
    json_error_t jerr;
    obj = json_loadb(line, len, 0, &jerr);
    const char *s = json_string_value(json_object_get(obj, "id"));
    if (s == NULL || !usage_record_id_valid(s)) {
        snprintf(why, why_size, "its last line is not a usage record with an id");
        goto out;
    }
    str_copy(id, ID_MAX, s);
    rc = 0;
out:
    json_decref(obj);
    free(line);
    return rc;
}

/* At writer start, before any batch (so no new line can come between the
 * restored ones): appends to the JSONL file the lines of every record the
 * store committed after the file's last line, in commit order, a page at a
 * time, then syncs. They are the lines a crash or a power loss took between
 * the store's commit and the file (or from its unsynced second). An empty
 * file stays empty (it is not the place to dump the whole history); a last
 * line the store does not know (a rotated file, another database) or
 * cannot be read is logged, and nothing is added. A kill -9 at any point
 * leaves whole lines (or one torn line, cut at the next start) in commit
 * order, so the next start carries on from where this one stopped. */
static void jsonl_repair(void)
{
    const char *path = wr.cfg->usage_jsonl_path;
    char after[ID_MAX], last[ID_MAX], why[128];
    struct stat st;
    size_t restored = 0;
    if (fstat(wr.jsonl_fd, &st) == -1 || st.st_size == 0)
        return;
    if (jsonl_last_id(wr.jsonl_fd, st.st_size, after, why, sizeof(why)) == -1) {
        log_warn("usage: the JSONL file %s cannot be repaired from the store: %s; "
                 "no lines restored",
                 path, why);
        return;
    }
    for (;;) {
        size_t n;
        wr.lines.len = 0;
        int rc = store_usage_after(wr.store, after, JSONL_REPAIR_PAGE, &wr.lines, &n, last);
        if (rc == STORE_ERR_UNSUPPORTED)
            break; /* fleet mode: the file is best effort */
        if (rc == STORE_ERR_NOT_FOUND) {
            log_warn("usage: the JSONL file %s ends with record %s, which the store does not "
                     "hold (a rotated file, or another database?); no lines restored",
                     path, after);
            break;
        }
        if (rc != STORE_OK) {
            log_error("usage: reading the records after %s from the store failed; %zu lines "
                      "restored to the JSONL file %s before that",
                      after, restored, path);
            break;
        }
        if (n > 0 && write_all(wr.jsonl_fd, wr.lines.data, wr.lines.len) == -1) {
            log_error("usage: restoring lines to the JSONL file %s failed: %s (%zu restored "
                      "before that; records are in the store)",
                      path, strerror(errno), restored);
            jsonl_close();
            break;
        }
        if (n > 0)
            jsonl_mark_dirty();
        restored += n;
        if (n < JSONL_REPAIR_PAGE)
            break;
        memcpy(after, last, sizeof(after));
    }
    /* Pages are larger than batches: give the memory back. */
    usage_record_lines_free(&wr.lines);
    if (restored == 0)
        return;
    if (!jsonl_sync())
        jsonl_close();
    log_info("usage: restored %zu line%s to the JSONL file %s from the store (records "
             "committed after its last line)",
             restored, restored == 1 ? "" : "s", path);
}

/* Writes the batch to a new spool file, atomically (temp name, fsync,
 * rename, fsync of the directory), so a replay never sees half a file.
 * The records are uncharged (charged_* zero): the store charges them at
 * replay and formats their final text then. */
static MUST_CHECK int spool_file_write(const char *dir, const char *data, size_t len);

static MUST_CHECK int spool_write(const struct usage_record *recs, size_t n)
{
    const char *dir = wr.cfg->usage_spool_dir;
    struct usage_record_lines *b = &wr.lines;
    if (dir == NULL || dir[0] == '\0') {
        log_error("usage: the store failed and no spool directory is configured");
        return -1;
    }
    b->len = 0;
    for (size_t i = 0; i < n; i++) {
        if (usage_record_lines_add_spool(b, &recs[i]) == -1) {
            log_error("usage: out of memory spooling %zu records", n);
            return -1;
        }
    }
    if (spool_file_write(dir, b->data, b->len) == -1) {
        log_error("usage: spooling %zu records to %s failed: %s", n, dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Spool lines into a new spool file of dir. */
static MUST_CHECK int spool_file_write(const char *dir, const char *data, size_t len)
{
    char path[4096], tmp[4096 + 8];
    int fd = -1;
    /* Zero-padded wall time first, so name order is write order. */
    snprintf(path, sizeof(path), "%s/usage-%016lld-%08ld-%08u" SPOOL_SUFFIX, dir,
             (long long)now_ms(), (long)getpid(), wr.spool_seq++);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (fs_make_dirs(dir, false) == -1 ||
        (fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
        return -1;
    if (write_all(fd, data, len) == -1 || fsync(fd) == -1) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, path) == -1) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    /* On failure the file exists; only its durability is in doubt. */
    return fs_sync_dir(dir);
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
    wr.store = store_open_role(wr.cfg, STORE_ROLE_CONTROL, &err);
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
 * ones to JSONL with the text the store wrote for them. *fresh gets the
 * number newly written. -1 when the store failed (recs are left uncharged,
 * ready for the spool; with Redis, the records committed before the
 * failure are in the JSONL file and come back as duplicates). */
static MUST_CHECK int commit_batch(struct usage_record *recs, size_t n, size_t *fresh)
{
    /* Uncharged until the store says otherwise; a duplicate keeps this. */
    for (size_t i = 0; i < n; i++) {
        recs[i].charged_plan_credits_micros = 0;
        recs[i].charged_wallet_micros = 0;
    }
    size_t dups = 0;
    wr.lines.len = 0;
    if (!have_store())
        return -1;
    ledger_batch_begin(recs, n);
    bool ok = store_usage_write(wr.store, recs, n, &dups, &wr.lines) == STORE_OK;
    ledger_batch_end(recs, n, ok);
    if (!ok) {
        /* Redis commits record by record: the lines of the ones that went
         * through (only theirs; none with SQLite) go out now, since the
         * spool replay will find them duplicates. */
        jsonl_append();
        drop_store();
        return -1;
    }
    atomic_fetch_add_explicit(&stats.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.written, n - dups, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.duplicates, dups, memory_order_relaxed);
    jsonl_append();
    *fresh = n - dups;
    return 0;
}

/* Appends whole lines to the spool directory's "rejected" file and syncs
 * it. Refused records are rare: one open per call. */
static MUST_CHECK int rejected_append(const char *buf, size_t len)
{
    const char *dir = wr.cfg->usage_spool_dir;
    char path[4096];
    if (dir == NULL || dir[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    snprintf(path, sizeof(path), "%s/" REJECTED_NAME, dir);
    int fd = -1;
    if (fs_make_dirs(dir, false) == -1 ||
        (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) == -1)
        return -1;
    int rc = write_all(fd, buf, len) == -1 || fdatasync(fd) == -1 ? -1 : 0;
    int e = errno;
    close(fd);
    if (rc == 0 && fs_sync_dir(dir) == -1)
        log_warn("usage: fsync of spool directory %s failed: %s", dir, strerror(errno));
    errno = e;
    return rc;
}

/* Every record is checked before the store charges it (DESIGN §7: a
 * negative or absurd amount, a bad id...): a refused one is logged (its id,
 * what was wrong) and set aside in the rejected file, never stored or
 * charged. Compacts recs; returns how many are left. */
static size_t refuse_invalid(struct usage_record *recs, size_t n)
{
    struct usage_record_lines aside = {0};
    size_t kept = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        char why[192];
        if (usage_record_check(&recs[i], why, sizeof(why)) == 0) {
            if (kept != i)
                recs[kept] = recs[i];
            kept++;
            continue;
        }
        refused++;
        log_error("usage: record %s refused: %s; set aside in %s/" REJECTED_NAME,
                  usage_record_id_valid(recs[i].id) ? recs[i].id : "(malformed id)", why,
                  wr.cfg->usage_spool_dir ? wr.cfg->usage_spool_dir : "(no spool_dir)");
        if (usage_record_lines_add(&aside, &recs[i]) == -1)
            log_error("usage: out of memory setting record %s aside; it is lost",
                      usage_record_id_valid(recs[i].id) ? recs[i].id : "(malformed id)");
    }
    if (refused > 0) {
        atomic_fetch_add_explicit(&stats.rejected, refused, memory_order_relaxed);
        if (aside.len > 0 && rejected_append(aside.data, aside.len) == -1)
            log_error("usage: setting %zu refused records aside in %s/" REJECTED_NAME
                      " failed: %s; they are lost (their ids are logged above)",
                      refused, wr.cfg->usage_spool_dir ? wr.cfg->usage_spool_dir : "",
                      strerror(errno));
    }
    usage_record_lines_free(&aside);
    return kept;
}

/* Live batch: store, else spool. -1 only when both failed. */
static MUST_CHECK int process_batch(struct usage_record *recs, size_t n)
{
    size_t fresh;
    if ((n = refuse_invalid(recs, n)) == 0)
        return 0;
    if (commit_batch(recs, n, &fresh) == 0)
        return 0;
    if (spool_write(recs, n) == -1)
        return -1;
    ledger_batch_spooled(recs, n);
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

/* One refused line of a spool file: where it was and why. */
struct spool_refused_line {
    size_t line;
    char id[ID_MAX]; /* "" unless a well-formed id could be read */
    char why[192];
};

/* The refused lines of a spool file: their text (each line with its '\n')
 * and what the log will say of each. */
struct spool_refused {
    char *text;
    size_t len, cap;
    struct spool_refused_line *items;
    size_t n, items_cap;
};

static void spool_refused_free(struct spool_refused *b)
{
    free(b->text);
    free(b->items);
    *b = (struct spool_refused){0};
}

static MUST_CHECK int spool_refused_add(struct spool_refused *b, const char *line, size_t len,
                                        size_t lineno, json_t *obj, const char *why)
{
    bool nl = len == 0 || line[len - 1] != '\n';
    if (b->cap - b->len < len + nl) {
        size_t cap = MAX(b->cap * 2, b->len + len + nl + 256);
        char *t = realloc(b->text, cap);
        if (t == NULL)
            return -1;
        b->text = t;
        b->cap = cap;
    }
    if (b->n == b->items_cap) {
        size_t cap = b->items_cap ? b->items_cap * 2 : 8;
        struct spool_refused_line *it = realloc(b->items, cap * sizeof(*b->items));
        if (it == NULL)
            return -1;
        b->items = it;
        b->items_cap = cap;
    }
    memcpy(b->text + b->len, line, len);
    b->len += len;
    if (nl)
        b->text[b->len++] = '\n';
    b->items[b->n].line = lineno;
    b->items[b->n].id[0] = '\0';
    const char *id = json_string_value(json_object_get(obj, "id"));
    if (id != NULL && usage_record_id_valid(id))
        snprintf(b->items[b->n].id, sizeof(b->items[b->n].id), "%s", id);
    snprintf(b->items[b->n].why, sizeof(b->items[b->n].why), "%s", why);
    b->n++;
    return 0;
}

/* Reads one spool file into a record array; the lines that are not a
 * record usage_record_parse() accepts go to *refused. */
static MUST_CHECK int spool_read(const char *path, struct usage_record **out, size_t *n,
                                 struct spool_refused *refused)
{
    FILE *f = fopen(path, "re");
    *out = NULL;
    *n = 0;
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t line_cap = 0, cap = 0, lineno = 0;
    ssize_t len;
    int rc = -1;
    while ((len = getline(&line, &line_cap, f)) != -1) {
        lineno++;
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
        char why[192];
        if (obj == NULL)
            snprintf(why, sizeof(why), "not a JSON object");
        if (obj == NULL || usage_record_parse(obj, &(*out)[*n], why, sizeof(why)) == -1) {
            if (spool_refused_add(refused, line, (size_t)len, lineno, obj, why) == -1) {
                json_decref(obj);
                goto out;
            }
        } else {
            (*n)++;
        }
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

/* Replays one spool file; 0 when it is done with (removed). Its refused
 * lines are set aside in the rejected file (and logged) only once the rest
 * is committed, so a store still down logs nothing twice. */
static MUST_CHECK int replay_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct usage_record *recs;
    struct spool_refused refused = {0};
    size_t n;
    if (spool_read(path, &recs, &n, &refused) == -1) {
        log_error("usage: reading spool file %s failed: %s", path, strerror(errno));
        spool_refused_free(&refused);
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
    if (refused.n > 0) {
        /* Kept for a human, never replayed again (the name is no spool
         * file's), never charged. */
        if (rejected_append(refused.text, refused.len) == -1) {
            log_error("usage: setting %zu refused lines of spool file %s aside in %s/" REJECTED_NAME
                      " failed: %s; the file is kept",
                      refused.n, path, dir, strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < refused.n; i++)
            log_error("usage: spool file %s line %zu: record %s refused: %s; set aside in "
                      "%s/" REJECTED_NAME,
                      name, refused.items[i].line,
                      refused.items[i].id[0] != '\0' ? refused.items[i].id : "(no valid id)",
                      refused.items[i].why, dir);
        atomic_fetch_add_explicit(&stats.rejected, refused.n, memory_order_relaxed);
    }
    if (unlink(path) == -1) {
        log_error("usage: removing replayed spool file %s failed: %s", path, strerror(errno));
        goto out;
    }
    if (fs_sync_dir(dir) == -1)
        log_warn("usage: fsync of spool directory %s failed: %s", dir, strerror(errno));
    log_info("usage: replayed spool file %s (%zu new, %zu already stored, %zu refused)", name,
             fresh_total, n - fresh_total, refused.n);
    rc = 0;
out:
    free(recs);
    spool_refused_free(&refused);
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

/* Takes up to max records off the queue (caller holds q.mu); *jend: the
 * last one's end in the queue journal. */
static size_t dequeue(struct usage_record *out, size_t max, uint64_t *jend)
{
    size_t n = 0;
    while (n < max && q.head != NULL) {
        struct qnode *node = q.head;
        q.head = node->next;
        if (q.head == NULL)
            q.tail = NULL;
        *jend = node->jend;
        out[n++] = node->rec;
        if (q.n_spare < SPARE_NODES_MAX) {
            node->next = q.spare;
            q.spare = node;
            q.n_spare++;
        } else {
            free(node);
        }
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
    pthread_setname_np(pthread_self(), "usage-writer");
    struct usage_record *batch = malloc(BATCH_MAX * sizeof(*batch));
    char *err = NULL;
    wr.store = store_open_role(wr.cfg, STORE_ROLE_CONTROL, &err);
    bool ok = wr.store != NULL && batch != NULL;
    if (ok) {
        const char *path = wr.cfg->usage_jsonl_path;
        /* Not fatal: the store is the record of truth, and every batch
         * tries to open the file again. */
        if (path != NULL && path[0] != '\0') {
            if (fs_make_dirs(path, true) == -1 || jsonl_open() == -1)
                log_error("usage: opening the JSONL file %s failed: %s", path, strerror(errno));
            else
                jsonl_repair(); /* before any batch: restored lines come first */
        }
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
            /* Idle: wake for a spool replay or for unsynced JSONL lines,
             * whichever is due first. */
            int64_t due = wr.spool_pending ? wr.next_replay_ms : INT64_MAX;
            if (wr.jsonl_dirty)
                due = MIN(due, wr.jsonl_sync_ms);
            if (due == INT64_MAX) {
                pthread_cond_wait(&q.work_cv, &q.mu);
                continue;
            }
            int64_t wait = due - mono_ms();
            if (wait <= 0)
                break;
            struct timespec ts;
            deadline_in(&ts, wait);
            if (pthread_cond_timedwait(&q.work_cv, &q.mu, &ts) == ETIMEDOUT)
                break;
        }
        if (q.head != NULL && q.len < BATCH_MAX && !q.stopping && q.sync_waiters == 0) {
            struct timespec ts;
            deadline_in(&ts, usage_journal_on() ? LINGER_JOURNALED_MS : LINGER_MS);
            while (q.len < BATCH_MAX && !q.stopping && q.sync_waiters == 0 &&
                   pthread_cond_timedwait(&q.work_cv, &q.mu, &ts) != ETIMEDOUT)
                ;
        }
        uint64_t jend = 0;
        size_t n = dequeue(batch, BATCH_MAX, &jend);
        bool stopping = q.stopping;
        pthread_mutex_unlock(&q.mu);

        if (n > 0) {
            int attempts = 0;
            while (process_batch(batch, n) == -1) {
                /* Neither store nor spool took it: hold on and retry rather
                 * than drop, except at shutdown after a few tries. */
                if (stopping && ++attempts >= STOP_ATTEMPTS) {
                    if (usage_journal_on())
                        log_error("usage: %zu records could be neither stored nor spooled; "
                                  "those in the queue journal are replayed at the next start",
                                  n);
                    else
                        log_error("usage: %zu records could be neither stored nor spooled; lost",
                                  n);
                    wr.journal_held = true;
                    break;
                }
                pthread_mutex_lock(&q.mu);
                struct timespec ts;
                deadline_in(&ts, RETRY_MS);
                pthread_cond_timedwait(&q.work_cv, &q.mu, &ts);
                stopping = q.stopping;
                pthread_mutex_unlock(&q.mu);
            }
            if (!wr.journal_held)
                usage_journal_done(jend);
            mark_processed(n);
        }
        jsonl_sync_due();
        if (wr.spool_pending && (mono_ms() >= wr.next_replay_ms || (stopping && n == 0)))
            replay_spool();
        if (stopping && n == 0)
            break;
    }
out:
    store_close(wr.store);
    wr.store = NULL;
    jsonl_close();
    usage_record_lines_free(&wr.lines);
    free(batch);
    return NULL;
}

/* The queue journal's file: in memory (tmpfs), named after the spool
 * directory's real path, so a restart with the same configuration finds
 * it and two proxies with their own spool directories do not meet. */
#define JOURNAL_DIR "/dev/shm"

static MUST_CHECK int journal_path(const char *spool_dir, char *out, size_t size)
{
    char *real;
    if (fs_make_dirs(spool_dir, false) == -1 || (real = realpath(spool_dir, NULL)) == NULL)
        return -1;
    uint64_t h = fnv1a_add(FNV1A_INIT, real);
    free(real);
    snprintf(out, size, JOURNAL_DIR "/byok-proxy-usage-%016llx.journal", (unsigned long long)h);
    return 0;
}

/* Opens the queue journal (caller holds q.mu: no submit meanwhile) and
 * moves what a killed process left in it into a spool file, which the
 * writer replays first. Without a spool directory, or when it fails, the
 * writer runs without one (and the shorter linger). */
static void journal_open(void)
{
    const char *dir = wr.cfg->usage_spool_dir;
    char path[4096];
    if (dir == NULL || dir[0] == '\0')
        return;
    struct usage_record_lines found = {0};
    struct usage_journal_open info;
    char *err = NULL;
    int rc = journal_path(dir, path, sizeof(path));
    if (rc == -1 && asprintf(&err, "the spool directory %s: %s", dir, strerror(errno)) == -1)
        err = NULL;
    if (rc == -1 ||
        usage_journal_open(path, NULL, USAGE_JOURNAL_BYTES, &found, &info, &err) == -1) {
        log_error("usage: %s; running without the queue journal: a kill -9 loses the records "
                  "of the last few milliseconds",
                  err != NULL ? err : "opening the usage queue journal failed");
        free(err);
        usage_record_lines_free(&found);
        return;
    }
    if (info.set_aside)
        log_warn("usage: the queue journal held records of another boot of this machine "
                 "(its pages may not have reached the disk whole): set aside unread as %s",
                 info.aside_path);
    if (info.truncated)
        log_error("usage: the queue journal %s could not be read to its end; the records "
                  "past the first unreadable one are lost",
                  path);
    if (info.recovered > 0) {
        if (spool_file_write(dir, found.data, found.len) == -1) {
            /* They stay in the journal: the next start tries again. */
            log_error("usage: spooling the %zu records recovered from the queue journal failed: "
                      "%s; running without the journal",
                      info.recovered, strerror(errno));
            usage_journal_close();
            usage_record_lines_free(&found);
            return;
        }
        log_warn("usage: %zu records queued by a process that ended without committing them "
                 "recovered from the queue journal; they are replayed now",
                 info.recovered);
        atomic_fetch_add_explicit(&stats.journal_recovered, info.recovered, memory_order_relaxed);
    }
    usage_record_lines_free(&found);
    usage_journal_start();
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
    wr.jsonl_fd = -1;
    journal_open();
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
    if (!ok)
        usage_journal_close();
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
    usage_journal_close();
    q.running = false;
    q.stopping = false;
    while (q.spare != NULL) {
        struct qnode *n = q.spare;
        q.spare = n->next;
        free(n);
    }
    q.n_spare = 0;
    pthread_cond_broadcast(&q.done_cv); /* release sync callers */
    pthread_mutex_unlock(&q.mu);
}

void usage_writer_sync(void)
{
    pthread_mutex_lock(&q.mu);
    uint64_t target = q.submitted_seq;
    q.sync_waiters++;
    pthread_cond_signal(&q.work_cv); /* end a linger now */
    while (q.running && q.processed_seq < target)
        pthread_cond_wait(&q.done_cv, &q.mu);
    q.sync_waiters--;
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
    out->rejected = atomic_load_explicit(&stats.rejected, memory_order_relaxed);
    out->jsonl_syncs = atomic_load_explicit(&stats.jsonl_syncs, memory_order_relaxed);
    out->unjournaled = atomic_load_explicit(&stats.unjournaled, memory_order_relaxed);
    out->journal_recovered = atomic_load_explicit(&stats.journal_recovered, memory_order_relaxed);
}
