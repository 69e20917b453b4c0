/* test_ledger.c - the balance ledger (ledger.h) against a real SQLite store:
 * admission on available funds, holds that become exact charges, commits
 * that move a charge from reserved to the balance in one step, reads that
 * race a commit, spooled and replayed charges, invalidation. */
#include "common.h"
#include "ledger.h"
#include "providers_test.h"
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128];
    struct store *s;
    int seq;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void add_tenant(struct fixture *f, const char *id, int64_t plan, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "%s", id);
    t.plan_credits_micros = plan;
    t.wallet_micros = wallet;
    assert_int_equal(store_tenant_create(f->s, &t), STORE_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-ledger-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/byok.db", f->dir);
    char *err = NULL;
    f->s = store_sqlite_open(f->path, &err);
    if (f->s == NULL)
        fail_msg("open: %s", err);
    ledger_reset();
    add_tenant(f, "payer", 0, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    ledger_reset();
    free(f);
    return 0;
}

/* A wallet record of payer costing cost, releasing hold. */
static struct usage_record record(struct fixture *f, const char *payer, int64_t cost, int64_t hold)
{
    struct usage_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "rec-%d", ++f->seq);
    snprintf(r.tenant_id, sizeof(r.tenant_id), "%s", payer);
    snprintf(r.payer_id, sizeof(r.payer_id), "%s", payer);
    snprintf(r.key_id, sizeof(r.key_id), "k1");
    r.provider = P_OPENAI;
    snprintf(r.line, sizeof(r.line), "llm");
    snprintf(r.endpoint, sizeof(r.endpoint), "/v1/chat/completions");
    snprintf(r.model, sizeof(r.model), "gpt-4o-mini");
    r.status = 200;
    r.ttfb_ms = -1;
    r.cost_micros = cost;
    r.hold_micros = hold;
    return r;
}

/* What the writer does with a batch: begin, store, end. */
static void commit(struct fixture *f, struct usage_record *recs, size_t n)
{
    ledger_batch_begin(recs, n);
    assert_int_equal(store_usage_write(f->s, recs, n, NULL, NULL), STORE_OK);
    ledger_batch_end(recs, n, true);
}

static int64_t available(struct fixture *f, const char *payer)
{
    int64_t v = 0;
    assert_int_equal(ledger_available(f->s, payer, &v), 0);
    return v;
}

/* 1 micro-USD admits exactly one line; its release admits the next. */
static void test_admit_one(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ledger_admit(f->s, "payer", 10000), LEDGER_OK);
    assert_int_equal(ledger_held("payer"), 10000);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ledger_admit(f->s, "payer", 10000), LEDGER_NO_FUNDS);
    ledger_release("payer", 10000);
    assert_int_equal(ledger_held("payer"), 0);
    assert_int_equal(ledger_admit(f->s, "payer", 0), LEDGER_OK);
    assert_int_equal(ledger_admit(f->s, "nobody", 10), LEDGER_NO_PAYER);
}

/* The hold becomes the exact charge at submission, and the charge moves
 * into the balance at commit: available funds never jump up. */
static void test_hold_to_charge(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ledger_admit(f->s, "payer", 10000), LEDGER_OK);
    assert_int_equal(available(f, "payer"), 1 - 10000);
    struct usage_record r = record(f, "payer", 8, 10000);
    ledger_settle(&r);
    assert_int_equal(r.pending_micros, 8);
    assert_int_equal(r.hold_micros, 0);
    assert_int_equal(available(f, "payer"), -7);
    assert_int_equal(ledger_held("payer"), 8);
    commit(f, &r, 1);
    assert_int_equal(available(f, "payer"), -7);
    assert_int_equal(ledger_held("payer"), 0);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->s, "payer", &t), STORE_OK);
    assert_int_equal(t.wallet_micros, -7);
    assert_int_equal(ledger_admit(f->s, "payer", 1), LEDGER_NO_FUNDS);
    /* A BYOK record reserves nothing and releases its (zero) hold. */
    struct usage_record b = record(f, "payer", 500, 0);
    b.billed_byok = true;
    ledger_settle(&b);
    assert_int_equal(b.pending_micros, 0);
    commit(f, &b, 1);
    assert_int_equal(available(f, "payer"), -7);
}

/* A read of the balances while a batch of that payer commits cannot know
 * whether it saw the commit: it is read again once the batch is done, and
 * nothing is counted twice or lost. */
static void test_read_during_commit(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "p2", 0, 1000);
    struct usage_record r = record(f, "p2", 100, 0);
    ledger_settle(&r);
    ledger_batch_begin(&r, 1);
    assert_int_equal(store_usage_write(f->s, &r, 1, NULL, NULL), STORE_OK);
    /* First read of p2 after the store committed, before the batch ends:
     * the charge is in the balance and still reserved (counted twice, the
     * safe side), never missing. */
    assert_int_equal(available(f, "p2"), 1000 - 100 - 100);
    ledger_batch_end(&r, 1, true);
    assert_int_equal(available(f, "p2"), 900);

    /* A top-up while a batch is in flight is read after it. */
    struct usage_record r2 = record(f, "p2", 50, 0);
    ledger_settle(&r2);
    ledger_batch_begin(&r2, 1);
    struct store_tenant t;
    assert_int_equal(store_tenant_topup(f->s, "p2", 5000, 0, &t), STORE_OK);
    ledger_invalidate("p2");
    assert_int_equal(store_usage_write(f->s, &r2, 1, NULL, NULL), STORE_OK);
    ledger_batch_end(&r2, 1, true);
    assert_int_equal(available(f, "p2"), 900 + 5000 - 50);
}

/* A batch the store refused stays reserved while it sits in the spool; its
 * replay (records read back: nothing pending) moves it into the balance. */
static void test_spooled_then_replayed(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "p3", 0, 1000);
    assert_int_equal(available(f, "p3"), 1000);
    struct usage_record r = record(f, "p3", 300, 0);
    ledger_settle(&r);
    ledger_batch_begin(&r, 1);
    ledger_batch_end(&r, 1, false);
    assert_int_equal(available(f, "p3"), 700);
    struct usage_record kept = r; /* what the spool file holds */
    kept.pending_micros = 0;
    ledger_batch_spooled(&r, 1);
    assert_int_equal(available(f, "p3"), 700);
    assert_int_equal(ledger_held("p3"), 300);
    commit(f, &kept, 1);
    assert_int_equal(available(f, "p3"), 700);
    assert_int_equal(ledger_held("p3"), 0);
    /* Replayed twice (a crash between commit and unlink): a duplicate
     * charges nothing and changes nothing. */
    kept.charged_plan_credits_micros = kept.charged_wallet_micros = 0;
    commit(f, &kept, 1);
    assert_int_equal(available(f, "p3"), 700);
}

/* A batch whose outcome the writer could not know is spooled although the
 * store took it (Redis: the connection lost after the record script ran,
 * or a batch committed in part); its replay finds it a duplicate, which
 * charges nothing. Its reservation must still go (held back to 0), and the
 * balance, which has the charge, is read again: counted once. */
static void test_spooled_but_committed(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "p5", 0, 1000);
    assert_int_equal(available(f, "p5"), 1000);
    struct usage_record r = record(f, "p5", 300, 0);
    ledger_settle(&r);
    struct usage_record kept = r; /* what the spool file holds */
    kept.pending_micros = 0;
    ledger_batch_begin(&r, 1);
    struct usage_record in_store = kept; /* what the store committed */
    assert_int_equal(store_usage_write(f->s, &in_store, 1, NULL, NULL), STORE_OK);
    ledger_batch_end(&r, 1, false); /* the writer saw a failure */
    ledger_batch_spooled(&r, 1);
    assert_int_equal(ledger_held("p5"), 300);
    assert_int_equal(available(f, "p5"), 700);
    size_t dups = 0;
    ledger_batch_begin(&kept, 1);
    assert_int_equal(store_usage_write(f->s, &kept, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 1);
    ledger_batch_end(&kept, 1, true);
    assert_int_equal(ledger_held("p5"), 0);
    assert_int_equal(available(f, "p5"), 700);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->s, "p5", &t), STORE_OK);
    assert_int_equal(t.wallet_micros, 700);
}

/* A spool record of an earlier process (never reserved here) is charged
 * into a balance read before the replay. */
static void test_replay_of_earlier_process(void **state)
{
    struct fixture *f = *state;
    add_tenant(f, "p4", 0, 1000);
    assert_int_equal(available(f, "p4"), 1000);
    struct usage_record r = record(f, "p4", 250, 0);
    commit(f, &r, 1);
    assert_int_equal(available(f, "p4"), 750);
    assert_int_equal(ledger_held("p4"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admit_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_to_charge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_during_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spooled_then_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spooled_but_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_of_earlier_process, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
