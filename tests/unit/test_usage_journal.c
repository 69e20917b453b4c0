/* test_usage_journal.c - the usage queue's crash journal: what a process
 * left past the writer's mark comes back (same boot), in order, as spool
 * lines that parse to the records; the ring wraps and fills; another boot's
 * journal or a foreign file is never read. Real files in a temp dir. */
#include "common.h"
#include "usage_journal.h"
#include "usage_record.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOOT  "11111111-2222-3333-4444-555555555555"
#define OTHER "99999999-2222-3333-4444-555555555555"
/* Small enough that a few hundred records wrap it. */
#define SMALL (3 * (USAGE_SPOOL_LINE_MAX + 64))

static char dir[256], path[320];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/byok-test-journal-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/queue.journal", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    usage_journal_close();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void record(struct usage_record *r, int i)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "01JDABCDEFGHJKMNPQRS%06d", i);
    r->ts_ms = 1795521600000 + i;
    snprintf(r->tenant_id, sizeof(r->tenant_id), "t1");
    snprintf(r->payer_id, sizeof(r->payer_id), "t1");
    snprintf(r->key_id, sizeof(r->key_id), "k_0123456789abcdef");
    r->provider = provider_find("openai");
    snprintf(r->line, sizeof(r->line), "llm");
    snprintf(r->endpoint, sizeof(r->endpoint), "/v1/chat/completions");
    snprintf(r->model, sizeof(r->model), "gpt-4o-mini");
    r->status = 200;
    r->units.input_tokens = 10 + i;
    r->units.output_tokens = 1;
    r->cost_micros = 3 + i;
    r->ttfb_ms = -1;
    r->duration_ms = 5;
    if (i % 3 == 0)
        snprintf(r->hold_id, sizeof(r->hold_id), "h_%d", i); /* a spool-only extra */
}

/* Journals record(i) as usage.c does (its spool line, formatted first):
 * the position after it, and *j whether it went in. */
static uint64_t append_try(int i, bool *j)
{
    struct usage_record r;
    char line[USAGE_SPOOL_LINE_MAX];
    record(&r, i);
    int n = usage_record_format_spool(&r, line, sizeof(line));
    assert_true(n > 0);
    return usage_journal_append_line(line, (size_t)n, j);
}

static uint64_t append(int i)
{
    bool j;
    uint64_t p = append_try(i, &j);
    assert_true(j);
    return p;
}

static void open_ok(const char *boot, size_t cap, struct usage_record_lines *got,
                    struct usage_journal_open *found)
{
    char *err = NULL;
    int rc = usage_journal_open(path, boot, cap, got, found, &err);
    if (rc != 0)
        fail_msg("usage_journal_open: %s", err != NULL ? err : "?");
    assert_true(usage_journal_on());
}

/* Each line of got parses back to record(first + k) with its spool extras,
 * in order; returns the count. */
static size_t check_lines(const struct usage_record_lines *got, int first)
{
    size_t n = 0;
    const char *p = got->data, *end = got->data + got->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        json_error_t jerr;
        json_t *obj = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        assert_non_null(obj);
        struct usage_record back, want;
        char why[192];
        assert_int_equal(usage_record_parse(obj, &back, why, sizeof(why)), 0);
        json_decref(obj);
        record(&want, first + (int)n);
        assert_string_equal(back.id, want.id);
        assert_int_equal(back.cost_micros, want.cost_micros);
        assert_int_equal(back.units.input_tokens, want.units.input_tokens);
        assert_string_equal(back.hold_id, want.hold_id);
        n++;
        p = nl + 1;
    }
    return n;
}

/* A "kill -9": the mapping goes away without a mark for what was queued. */
static void test_recovers_past_the_mark(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 0);
    assert_false(found.set_aside);
    usage_journal_start();
    uint64_t pos[10];
    for (int i = 0; i < 10; i++) {
        pos[i] = append(i);
        assert_true(i == 0 || pos[i] > pos[i - 1]);
    }
    usage_journal_done(pos[3]); /* 0..3 committed */
    usage_journal_close();
    assert_false(usage_journal_on());

    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 6);
    assert_false(found.truncated);
    assert_int_equal(check_lines(&got, 4), 6);
    /* Not started (the caller has not stored them yet): a second crash
     * gives them back again. */
    usage_journal_close();
    got.len = 0;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 6);
    assert_int_equal(check_lines(&got, 4), 6);
    /* Started: they are the caller's; new records go on after them. */
    usage_journal_start();
    uint64_t p100 = append(100);
    usage_journal_close();
    got.len = 0;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 1);
    assert_int_equal(check_lines(&got, 100), 1);
    usage_journal_start();
    usage_journal_done(p100 - 8); /* an older mark than the start's changes nothing */
    usage_journal_close();
    got.len = 0;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 0);
    /* Nothing past the mark: a close removes the file. */
    usage_journal_start();
    uint64_t p101 = append(101);
    usage_journal_close();
    assert_int_equal(access(path, F_OK), 0);
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    usage_journal_start();
    usage_journal_done(p101);
    usage_journal_close();
    assert_int_equal(access(path, F_OK), -1);
    usage_record_lines_free(&got);
}

/* Many laps of a small ring, the writer a few records behind: what comes
 * back is exactly the unmarked tail, across the wrap. */
static void test_wraps(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, SMALL, &got, &found);
    usage_journal_start();
    uint64_t pos[400];
    for (int i = 0; i < 400; i++) {
        pos[i] = append(i);
        if (i >= 2)
            usage_journal_done(pos[i - 2]);
    }
    assert_true(pos[399] > 20 * (uint64_t)SMALL / 10); /* it went round */
    usage_journal_close();
    open_ok(BOOT, SMALL, &got, &found);
    assert_int_equal(found.recovered, 2);
    assert_int_equal(check_lines(&got, 398), 2);
    usage_record_lines_free(&got);
}

/* The writer stuck: the ring fills, appends say so and move nothing, and
 * once the mark moves there is room again. */
static void test_full(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, SMALL, &got, &found);
    usage_journal_start();
    int taken = 0;
    uint64_t last = 0;
    for (int i = 0; i < 1000; i++) {
        bool j;
        uint64_t p = append_try(0, &j);
        if (!j) {
            assert_int_equal(p, last); /* unchanged */
            break;
        }
        last = p;
        taken++;
    }
    assert_true(taken > 2);
    assert_true(taken < 1000);
    bool j;
    (void)append_try(0, &j);
    assert_false(j);
    usage_journal_done(last); /* the writer caught up */
    (void)append(0);
    usage_record_lines_free(&got);
}

/* After a reboot the pages may be torn: never read, set aside. An empty
 * one of another boot is simply taken over. */
static void test_other_boot_set_aside(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(OTHER, USAGE_JOURNAL_BYTES, &got, &found);
    usage_journal_start();
    usage_journal_close();
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_false(found.set_aside); /* empty: nothing to lose */
    usage_journal_start();
    (void)append(7);
    usage_journal_close();

    open_ok(OTHER, USAGE_JOURNAL_BYTES, &got, &found);
    assert_true(found.set_aside);
    assert_int_equal(found.recovered, 0);
    assert_int_equal(got.len, 0);
    struct stat st;
    char aside[sizeof(found.aside_path)];
    snprintf(aside, sizeof(aside), "%s", found.aside_path);
    assert_non_null(strstr(aside, ".stale"));
    assert_int_equal(stat(aside, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    usage_journal_start();
    usage_journal_close();
    /* The new one is empty; the old one is still there for a human. */
    open_ok(OTHER, USAGE_JOURNAL_BYTES, &got, &found);
    assert_int_equal(found.recovered, 0);
    assert_false(found.set_aside);
    assert_int_equal(stat(aside, &st), 0);
    usage_record_lines_free(&got);
}

/* A file this code did not write (or a torn header) is set aside too. */
static void test_garbage_set_aside(void **state)
{
    (void)state;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    memset(junk, 'x', sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_true(found.set_aside);
    assert_int_equal(got.len, 0);
    usage_record_lines_free(&got);
}

/* An entry whose length is unreadable ends the recovery there. */
static void test_torn_entry(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    usage_journal_start();
    uint64_t p[3];
    for (int i = 0; i < 3; i++)
        p[i] = append(i);
    usage_journal_close();
    /* The second entry's header: header page + the first entry. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint32_t bad = 0;
    assert_int_equal(pwrite(fd, &bad, sizeof(bad), (off_t)(4096 + p[0] + 8)), (ssize_t)sizeof(bad));
    close(fd);
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    assert_true(found.truncated);
    assert_int_equal(found.recovered, 1);
    assert_int_equal(check_lines(&got, 0), 1);
    usage_record_lines_free(&got);
}

/* One process per journal; a file that is not ours is never read. */
static void test_lock_and_ownership(void **state)
{
    (void)state;
    struct usage_record_lines got = {0};
    struct usage_journal_open found;
    open_ok(BOOT, USAGE_JOURNAL_BYTES, &got, &found);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1); /* held */
    close(fd);
    usage_journal_start();
    (void)append(1); /* pending: the file stays */
    usage_journal_close();

    assert_int_equal(chmod(path, 0644), 0);
    char *err = NULL;
    assert_int_equal(usage_journal_open(path, BOOT, USAGE_JOURNAL_BYTES, &got, &found, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "mode 0600"));
    free(err);
    assert_false(usage_journal_on());

    char link[340];
    snprintf(link, sizeof(link), "%s/link.journal", dir);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(usage_journal_open(link, BOOT, USAGE_JOURNAL_BYTES, &got, &found, &err), -1);
    assert_non_null(err);
    free(err);
    assert_int_equal(usage_journal_open(path, NULL, 100, &got, &found, &err), -1); /* too small */
    free(err);
    usage_record_lines_free(&got);
}

/* Off: appends journal nothing. */
static void test_off(void **state)
{
    (void)state;
    bool j = true;
    assert_int_equal(append_try(1, &j), 0);
    assert_false(j);
    usage_journal_done(100);
    usage_journal_start();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recovers_past_the_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_boot_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_and_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
