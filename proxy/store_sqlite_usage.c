/* store_sqlite_usage.c - the SQLite backend's money and usage records: the
 * batch transaction (records inserted, their payers charged by the policy
 * of charge.h, each record's §5 text formatted once for the row and the
 * JSONL sink), the usage query, and the records after a given one in
 * commit order (the JSONL repair at writer start). The handle and its
 * statements are store_sqlite.c's (store_sqlite.h). */
#include "common.h"
#include "store_sqlite.h"
#include "charge.h"
#include "store.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One payer's balances while a usage batch is charged: read once, charged
 * in memory in record order by the policy of charge.h, and written back
 * with one UPDATE before the COMMIT. Exact because BEGIN IMMEDIATE holds
 * the write lock: nobody else changes the row in between. */
struct payer {
    const char *id; /* borrowed from the batch; NULL = free slot */
    bool loaded;
    bool missing; /* no such tenant: its records go uncharged */
    bool dirty;   /* bal was charged: write it back */
    struct charge_balance bal;
};

/* Open-addressing table of the batch's payers, sized for no resizing. */
struct payer_table {
    struct payer *slots;
    size_t mask;
};

static struct payer *payer_slot(struct payer_table *t, const char *id)
{
    uint64_t h = fnv1a_add(FNV1A_INIT, id);
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        struct payer *p = &t->slots[i];
        if (p->id == NULL) {
            p->id = id;
            return p;
        }
        if (strcmp(p->id, id) == 0)
            return p;
    }
}

static MUST_CHECK int payer_load(struct sqlite_store *sq, struct payer *p)
{
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_PAYER_GET);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        p->bal.plan_credits_micros = sqlite3_column_int64(st, 0);
        p->bal.wallet_micros = sqlite3_column_int64(st, 1);
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    p->loaded = true;
    p->missing = rc == SQLITE_DONE; /* deleted while the request ran */
    return 0;
}

/* Writes the payer's balances back when the batch charged it. */
static MUST_CHECK int payer_flush(struct sqlite_store *sq, struct payer *p)
{
    if (!p->dirty)
        return 0;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_PAYER_SET);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->bal.plan_credits_micros);
    sqlite3_bind_int64(st, 3, p->bal.wallet_micros);
    int rc = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE)
        return -1;
    p->dirty = false;
    return 0;
}

/* Inserts the record unless its id exists; *inserted says which. Its JSON
 * text (it carries charged_*, so it is formatted after charging) is
 * appended to lines as the stored row's text and, when inserted, kept
 * there as its JSONL line; a duplicate's or a failure's is taken back. */
static MUST_CHECK int insert_record(struct sqlite_store *sq, const struct usage_record *r,
                                    struct usage_record_lines *lines, bool *inserted)
{
    size_t start = lines->len;
    int len = usage_record_lines_add(lines, r);
    if (len == -1) {
        log_error("store(sqlite): out of memory formatting usage record %s", r->id);
        return -1;
    }
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_USAGE_INSERT);
    if (st == NULL)
        goto failed;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->ts_ms);
    sqlite3_bind_text(st, 3, r->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->payer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->key_id, -1, SQLITE_STATIC);
    store_sqlite_bind_text_or_null(st, 6, r->session_id);
    const char *pname = provider_name(r->provider);
    sqlite3_bind_text(st, 7, pname != NULL ? pname : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, r->line, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->billed_byok ? "byok" : "wallet", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, r->cost_micros);
    sqlite3_bind_int64(st, 11, r->charged_plan_credits_micros);
    sqlite3_bind_int64(st, 12, r->charged_wallet_micros);
    sqlite3_bind_text(st, 13, lines->data + start, len, SQLITE_STATIC);
    int step = sqlite3_step(st);
    store_sqlite_stmt_done(st);
    if (step != SQLITE_DONE)
        goto failed;
    *inserted = sqlite3_changes(sq->db) == 1;
    if (!*inserted)
        lines->len = start;
    return 0;
failed:
    lines->len = start;
    return -1;
}

/* One statement per record: each record is charged tentatively (charged_*
 * must be in its text), inserted with ON CONFLICT DO NOTHING, and the
 * charge kept only when it was inserted, which leaves the balances exactly
 * as if a duplicate had been skipped beforehand. Duplicates get their
 * charged_* back as passed in; on failure every record is restored. */
int store_sqlite_usage_write(struct store *s, struct usage_record *records, size_t n,
                             size_t *duplicates, struct usage_record_lines *lines)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    struct payer_table payers = {0};
    int64_t *saved = NULL;
    size_t dups = 0;
    *duplicates = 0;
    if (n == 0)
        return STORE_OK;
    /* A caller that wants no lines still needs each row's text. */
    struct usage_record_lines *out = lines != NULL ? lines : &sq->scratch;
    size_t out_start = out->len;
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    saved = malloc(2 * n * sizeof(*saved));
    payers.slots = calloc(slots, sizeof(*payers.slots));
    payers.mask = slots - 1;
    if (saved == NULL || payers.slots == NULL) {
        log_error("store(sqlite): out of memory writing usage");
        free(saved);
        free(payers.slots);
        return STORE_ERR_INTERNAL;
    }
    for (size_t j = 0; j < n; j++) {
        saved[2 * j] = records[j].charged_plan_credits_micros;
        saved[2 * j + 1] = records[j].charged_wallet_micros;
    }
    if (store_sqlite_run(sq, ST_BEGIN) == -1) {
        (void)store_sqlite_fail(sq, "usage BEGIN");
        goto failed;
    }
    for (size_t i = 0; i < n; i++) {
        struct usage_record *r = &records[i];
        struct payer *p = NULL;
        if (charge_needed(r->billed_byok, r->no_charge, r->cost_micros)) {
            p = payer_slot(&payers, r->payer_id);
            if (!p->loaded && payer_load(sq, p) == -1) {
                (void)store_sqlite_fail(sq, "usage payer read");
                goto failed;
            }
        }
        struct charge c;
        enum charge_result res = charge_apply(r->billed_byok, r->no_charge, r->cost_micros,
                                              p != NULL && !p->missing ? &p->bal : NULL, &c);
        r->charged_plan_credits_micros = c.plan_credits_micros;
        r->charged_wallet_micros = c.wallet_micros;
        bool inserted;
        if (lines == NULL)
            out->len = 0;
        if (insert_record(sq, r, out, &inserted) == -1) {
            (void)store_sqlite_fail(sq, "usage write");
            goto failed;
        }
        if (!inserted) {
            dups++;
            r->charged_plan_credits_micros = saved[2 * i];
            r->charged_wallet_micros = saved[2 * i + 1];
        } else if (res == CHARGE_APPLIED) {
            p->bal = c.after;
            p->dirty = true;
        } else if (res == CHARGE_PAYER_MISSING) {
            char safe[ID_MAX];
            log_warn("usage %s: payer %s no longer exists, recorded uncharged", r->id,
                     log_safe(r->payer_id, strlen(r->payer_id), safe, sizeof(safe)));
        }
    }
    for (size_t j = 0; j < slots; j++) {
        if (payers.slots[j].id != NULL && payer_flush(sq, &payers.slots[j]) == -1) {
            (void)store_sqlite_fail(sq, "usage charge");
            goto failed;
        }
    }
    if (store_sqlite_run(sq, ST_COMMIT) == -1) {
        (void)store_sqlite_fail(sq, "usage COMMIT");
        goto failed;
    }
    *duplicates = dups;
    free(saved);
    free(payers.slots);
    return STORE_OK;
failed:
    store_sqlite_rollback(sq);
    for (size_t j = 0; j < n; j++) {
        records[j].charged_plan_credits_micros = saved[2 * j];
        records[j].charged_wallet_micros = saved[2 * j + 1];
    }
    out->len = out_start;
    free(saved);
    free(payers.slots);
    return STORE_ERR_INTERNAL;
}

int store_sqlite_usage_query(struct store *s, const char *tenant_id, const char *session_id,
                             int limit, json_t **out)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    *out = NULL;
    enum stmt_id id = tenant_id != NULL
                          ? (session_id != NULL ? ST_USAGE_Q_BOTH : ST_USAGE_Q_TENANT)
                          : (session_id != NULL ? ST_USAGE_Q_SESSION : ST_USAGE_Q_ALL);
    sqlite3_stmt *st = store_sqlite_stmt(sq, id);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    json_t *arr = json_array();
    if (arr == NULL)
        return STORE_ERR_INTERNAL;
    if (tenant_id != NULL)
        sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
    if (session_id != NULL)
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : -1); /* negative LIMIT = none */
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        json_error_t jerr;
        json_t *rec = text != NULL ? json_loads(text, 0, &jerr) : NULL;
        if (rec == NULL || json_array_append_new(arr, rec) == -1) {
            log_error("store(sqlite): unreadable usage record row skipped");
            continue;
        }
    }
    store_sqlite_stmt_done(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return store_sqlite_fail(sq, "usage query");
    }
    *out = arr;
    return STORE_OK;
}

/* Two statements, no transaction: the writer thread that asks is the
 * store's only writer of usage rows (one process per store), and rows are
 * never deleted, so after_id's rowid stays where it was between them. */
int store_sqlite_usage_after(struct store *s, const char *after_id, size_t max,
                             struct usage_record_lines *lines, size_t *count, char *last_id)
{
    struct sqlite_store *sq = store_sqlite_of(s);
    size_t start = lines->len, n = 0;
    int status = STORE_ERR_INTERNAL;
    *count = 0;
    sqlite3_stmt *st = store_sqlite_stmt(sq, ST_USAGE_ROWID);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, after_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_int64 after = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    store_sqlite_stmt_done(st);
    if (rc == SQLITE_DONE)
        return STORE_ERR_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return store_sqlite_fail(sq, "usage after (id)");
    st = store_sqlite_stmt(sq, ST_USAGE_AFTER);
    if (st == NULL)
        return STORE_ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)MIN(max, (size_t)INT64_MAX));
    char id[ID_MAX] = "";
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        const char *row_id = (const char *)sqlite3_column_text(st, 0);
        str_copy(id, sizeof(id), row_id);
        /* A line of its own or none: a text with a newline in it would
         * break the file's lines (the formatter never writes one). */
        if (text == NULL || len <= 0 || memchr(text, '\n', (size_t)len) != NULL) {
            log_error("store(sqlite): usage record %s has a malformed record column", id);
            goto out;
        }
        if (usage_record_lines_add_text(lines, text, (size_t)len) == -1) {
            log_error("store(sqlite): out of memory reading usage records");
            goto out;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        (void)store_sqlite_fail(sq, "usage after");
        goto out;
    }
    if (n > 0)
        str_copy(last_id, ID_MAX, id);
    *count = n;
    status = STORE_OK;
out:
    store_sqlite_stmt_done(st);
    if (status != STORE_OK)
        lines->len = start;
    return status;
}
