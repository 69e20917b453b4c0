/* store_cases.h - the store contract (store.h) as test cases shared by
 * every backend's unit tests (test_store_sqlite.c, test_store_redis.c):
 * what one backend does, the other must do exactly alike. A test file
 * that includes this one defines:
 *
 *   static struct store *case_store(void **state);
 *       the handle under test, on an empty store
 *   static char *case_stored_text(void **state, const char *id);
 *       the stored text of usage record id, read behind the store's back
 *       (caller frees)
 */
#ifndef BYOK_TEST_STORE_CASES_H
#define BYOK_TEST_STORE_CASES_H

#include "common.h"
#include "store.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct store *case_store(void **state);
static char *case_stored_text(void **state, const char *id);

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

static void test_tenant_crud(void **state)
{
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 100, 200), got;
    t.feature_byok = true;
    uint64_t gen = store_generation();
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_tenant_create(s, &t), STORE_ERR_EXISTS);

    assert_int_equal(store_tenant_get(s, "t1", &got), STORE_OK);
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
    /* Re-read into the struct whose id names it (the admin API does). */
    assert_int_equal(store_tenant_get(s, got.id, &got), STORE_OK);
    assert_string_equal(got.id, "t1");
    assert_string_equal(got.name, "Tenant t1");
    assert_int_equal(store_tenant_get(s, "nope", &got), STORE_ERR_NOT_FOUND);

    /* Update replaces the mutable fields but never the balances. */
    struct store_tenant u = tenant("t1", "agency", 999, 999);
    snprintf(u.name, sizeof(u.name), "Renamed");
    u.feature_agency = true;
    u.wallet_deduction = true;
    u.live_sessions = 3;
    assert_int_equal(store_tenant_update(s, &u), STORE_OK);
    assert_int_equal(store_tenant_get(s, "t1", &got), STORE_OK);
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
    assert_int_equal(store_tenant_update(s, &missing), STORE_ERR_NOT_FOUND);

    assert_int_equal(store_tenant_delete(s, "t1"), STORE_OK);
    assert_int_equal(store_tenant_get(s, "t1", &got), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_tenant_delete(s, "t1"), STORE_ERR_NOT_FOUND);
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
    struct store *s = case_store(state);
    const char *ids[] = {"b", "c", "a"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        struct store_tenant t = tenant(ids[i], "", 0, 0);
        assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    }
    struct id_list l = {0};
    assert_int_equal(store_tenant_list(s, collect_tenant, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], "a");
    assert_string_equal(l.ids[1], "b");
    assert_string_equal(l.ids[2], "c");
}

static void test_delete_with_subaccounts(void **state)
{
    struct store *s = case_store(state);
    struct store_tenant a = tenant("agency", "", 0, 0), s1 = tenant("sub1", "agency", 0, 0);
    a.feature_agency = true;
    assert_int_equal(store_tenant_create(s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(s, &s1), STORE_OK);
    struct store_key k = {.id = "k_agency", .tenant_id = "agency"};
    assert_int_equal(store_key_create(s, &k), STORE_OK);

    assert_int_equal(store_tenant_delete(s, "agency"), STORE_ERR_CONFLICT);
    struct store_tenant got;
    assert_int_equal(store_tenant_get(s, "agency", &got), STORE_OK);
    struct store_key kg;
    assert_int_equal(store_key_get(s, "k_agency", &kg), STORE_OK);

    assert_int_equal(store_tenant_delete(s, "sub1"), STORE_OK);
    assert_int_equal(store_tenant_delete(s, "agency"), STORE_OK);
    /* Its keys went with it. */
    assert_int_equal(store_key_get(s, "k_agency", &kg), STORE_ERR_NOT_FOUND);
}

static void test_topup(void **state)
{
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 10, 20), out;
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    assert_int_equal(store_tenant_topup(s, "t1", 1000, 50, &out), STORE_OK);
    assert_int_equal(out.wallet_micros, 1020);
    assert_int_equal(out.plan_credits_micros, 60);
    assert_int_equal(store_tenant_topup(s, "t1", -2000, 0, &out), STORE_OK);
    assert_int_equal(out.wallet_micros, -980);
    balances(s, "t1", 60, -980);
    assert_int_equal(store_tenant_topup(s, "nope", 1, 1, &out), STORE_ERR_NOT_FOUND);
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
    struct store *s = case_store(state);
    struct store_tenant t1 = tenant("t1", "", 0, 0), t2 = tenant("t2", "", 0, 0);
    assert_int_equal(store_tenant_create(s, &t1), STORE_OK);
    assert_int_equal(store_tenant_create(s, &t2), STORE_OK);

    struct store_key k1 = {
        .id = "k_one", .tenant_id = "t1", .label = "prod", .created_at_ms = 1000};
    struct store_key k2 = {.id = "k_two", .tenant_id = "t1", .label = "dev", .created_at_ms = 2000};
    memset(k1.hash, 0xaa, sizeof(k1.hash));
    memset(k2.hash, 0xbb, sizeof(k2.hash));
    assert_int_equal(store_key_create(s, &k2), STORE_OK);
    assert_int_equal(store_key_create(s, &k1), STORE_OK);
    assert_int_equal(store_key_create(s, &k1), STORE_ERR_EXISTS);
    struct store_key orphan = {.id = "k_orphan", .tenant_id = "ghost"};
    assert_int_equal(store_key_create(s, &orphan), STORE_ERR_NOT_FOUND);

    struct key_list l = {0};
    assert_int_equal(store_key_list(s, "t1", collect_key, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0].id, "k_one"); /* by creation time */
    assert_string_equal(l.keys[1].id, "k_two");
    assert_string_equal(l.keys[0].label, "prod");
    assert_memory_equal(l.keys[0].hash, k1.hash, 32);
    struct key_list empty = {0};
    assert_int_equal(store_key_list(s, "t2", collect_key, &empty), STORE_OK);
    assert_int_equal(empty.n, 0);

    struct store_key got;
    assert_int_equal(store_key_get(s, "k_two", &got), STORE_OK);
    assert_string_equal(got.tenant_id, "t1");
    assert_memory_equal(got.hash, k2.hash, 32);
    assert_int_equal(got.created_at_ms, 2000);
    assert_int_equal(got.revoked_at_ms, 0);
    assert_int_equal(store_key_get(s, "k_nope", &got), STORE_ERR_NOT_FOUND);

    /* Only the owning tenant can revoke; revoking again keeps the time. */
    assert_int_equal(store_key_revoke(s, "t2", "k_two"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_key_revoke(s, "t1", "k_nope"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_key_revoke(s, "t1", "k_two"), STORE_OK);
    assert_int_equal(store_key_get(s, "k_two", &got), STORE_OK);
    int64_t revoked = got.revoked_at_ms;
    assert_true(revoked > 0);
    assert_int_equal(store_key_revoke(s, "t1", "k_two"), STORE_OK);
    assert_int_equal(store_key_get(s, "k_two", &got), STORE_OK);
    assert_int_equal(got.revoked_at_ms, revoked);
    l.n = 0;
    assert_int_equal(store_key_list(s, "t1", collect_key, &l), STORE_OK);
    assert_int_equal(l.n, 2); /* revoked keys are still listed */
    assert_int_equal(l.keys[1].revoked_at_ms, revoked);
}

static void test_usage_idempotent(void **state)
{
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 100, 1000);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);

    struct usage_record r = record("u1", "t1", "t1", 1000, 30, false);
    size_t dups = 99;
    assert_int_equal(store_usage_write(s, &r, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 0);
    assert_int_equal(r.charged_plan_credits_micros, 30);
    assert_int_equal(r.charged_wallet_micros, 0);
    balances(s, "t1", 70, 1000);

    /* The same id again, alone and twice inside one batch: charged once. */
    struct usage_record again[3] = {record("u1", "t1", "t1", 1000, 30, false),
                                    record("u2", "t1", "t1", 1000, 5, false),
                                    record("u2", "t1", "t1", 1000, 5, false)};
    assert_int_equal(store_usage_write(s, again, 3, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 2);
    balances(s, "t1", 65, 1000);

    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, "t1", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
}

static void test_usage_charging(void **state)
{
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 50, 100);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);

    /* Plan credits first, the rest from the wallet. */
    struct usage_record r1 = record("u1", "t1", "t1", 1000, 80, false);
    assert_int_equal(store_usage_write(s, &r1, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r1.charged_plan_credits_micros, 50);
    assert_int_equal(r1.charged_wallet_micros, 30);
    balances(s, "t1", 0, 70);

    /* The wallet may go negative: a running session is not cut off. */
    struct usage_record r2 = record("u2", "t1", "t1", 1001, 100, false);
    assert_int_equal(store_usage_write(s, &r2, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r2.charged_plan_credits_micros, 0);
    assert_int_equal(r2.charged_wallet_micros, 100);
    balances(s, "t1", 0, -30);

    /* Negative plan credits are not drawn further. */
    struct store_tenant out;
    assert_int_equal(store_tenant_topup(s, "t1", 0, -10, &out), STORE_OK);
    struct usage_record r3 = record("u3", "t1", "t1", 1002, 7, false);
    assert_int_equal(store_usage_write(s, &r3, 1, NULL, NULL), STORE_OK);
    assert_int_equal(r3.charged_plan_credits_micros, 0);
    assert_int_equal(r3.charged_wallet_micros, 7);
    balances(s, "t1", -10, -37);

    /* BYOK lines and zero-cost lines charge nothing. */
    struct usage_record b[2] = {record("u4", "t1", "t1", 1003, 500, true),
                                record("u5", "t1", "t1", 1004, 0, false)};
    b[0].charged_wallet_micros = 123; /* overwritten with what was charged */
    assert_int_equal(store_usage_write(s, b, 2, NULL, NULL), STORE_OK);
    assert_int_equal(b[0].charged_plan_credits_micros, 0);
    assert_int_equal(b[0].charged_wallet_micros, 0);
    balances(s, "t1", -10, -37);

    /* The stored record carries what was charged. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, "t1", NULL, 0, &arr), STORE_OK);
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
    struct store *s = case_store(state);
    struct store_tenant a = tenant("agency", "", 0, 1000), s1 = tenant("sub", "agency", 0, 0);
    assert_int_equal(store_tenant_create(s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(s, &s1), STORE_OK);
    struct usage_record r = record("u1", "sub", "agency", 1000, 40, false);
    assert_int_equal(store_usage_write(s, &r, 1, NULL, NULL), STORE_OK);
    balances(s, "agency", 0, 960);
    balances(s, "sub", 0, 0);
}

static void test_usage_missing_payer(void **state)
{
    struct store *s = case_store(state);
    struct usage_record r = record("u1", "gone", "gone", 1000, 40, false);
    r.charged_wallet_micros = 77;
    size_t dups = 9;
    assert_int_equal(store_usage_write(s, &r, 1, &dups, NULL), STORE_OK);
    assert_int_equal(dups, 0);
    assert_int_equal(r.charged_plan_credits_micros, 0);
    assert_int_equal(r.charged_wallet_micros, 0);
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, "gone", NULL, 10, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
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
    struct store *s = case_store(state);
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
        assert_int_equal(store_tenant_create(s, &t), STORE_OK);
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
        assert_int_equal(store_usage_write(s, b, N, &dups, NULL), STORE_OK);
        assert_int_equal(dups, want_dups);
        for (size_t i = 0; i < N; i++) {
            assert_int_equal(b[i].charged_plan_credits_micros, want_plan[i]);
            assert_int_equal(b[i].charged_wallet_micros, want_wallet[i]);
        }
        for (size_t i = 0; i < np; i++) {
            if (m[i].exists)
                balances(s, m[i].id, m[i].plan, m[i].wallet);
        }
    }

    /* The stored rows carry the same amounts as the records. */
    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, NULL, NULL, 0, &arr), STORE_OK);
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
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 0, 0);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    const int64_t half = INT64_MAX / 2 + 1; /* two of them are 2^63 */
    struct usage_record b[2] = {record("u1", "t1", "t1", 1000, half, false),
                                record("u2", "t1", "t1", 1001, half, false)};
    assert_int_equal(store_usage_write(s, b, 2, NULL, NULL), STORE_OK);
    assert_int_equal(b[1].charged_wallet_micros, half);
    balances(s, "t1", 0, INT64_MIN);
}

static const char *rec_id(json_t *arr, size_t i)
{
    return json_string_value(json_object_get(json_array_get(arr, i), "id"));
}

static void test_usage_query(void **state)
{
    struct store *s = case_store(state);
    struct usage_record b[5] = {
        record("a1", "ta", "ta", 1000, 0, true), record("a2", "ta", "ta", 3000, 0, true),
        record("a3", "ta", "ta", 2000, 0, true), record("b1", "tb", "tb", 2500, 0, true),
        record("b2", "tb", "tb", 500, 0, true),
    };
    snprintf(b[0].session_id, sizeof(b[0].session_id), "s1");
    snprintf(b[2].session_id, sizeof(b[2].session_id), "s1");
    snprintf(b[3].session_id, sizeof(b[3].session_id), "s1");
    assert_int_equal(store_usage_write(s, b, 5, NULL, NULL), STORE_OK);

    json_t *arr = NULL;
    assert_int_equal(store_usage_query(s, NULL, NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 5);
    const char *all[] = {"a2", "b1", "a3", "a1", "b2"}; /* newest first */
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(rec_id(arr, i), all[i]);
    json_decref(arr);

    assert_int_equal(store_usage_query(s, "ta", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(rec_id(arr, 0), "a2");
    assert_string_equal(rec_id(arr, 2), "a1");
    json_decref(arr);

    assert_int_equal(store_usage_query(s, "ta", NULL, 2, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(rec_id(arr, 0), "a2");
    assert_string_equal(rec_id(arr, 1), "a3");
    json_decref(arr);

    assert_int_equal(store_usage_query(s, NULL, "s1", 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(rec_id(arr, 0), "b1");
    json_decref(arr);

    assert_int_equal(store_usage_query(s, "ta", "s1", 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(rec_id(arr, 0), "a3");
    assert_string_equal(rec_id(arr, 1), "a1");
    assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "model")) == false);
    json_decref(arr);

    assert_int_equal(store_usage_query(s, "nobody", NULL, 0, &arr), STORE_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
}

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
    struct store *s = case_store(state);
    create_tenants(s, 2);
    struct store_connection c = connection("c_1", "t1", P_AZURE_SPEECH, 0xa5), got;
    uint64_t gen = store_generation();
    assert_int_equal(store_connection_create(s, &c), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_create(s, &c), STORE_ERR_EXISTS);
    struct store_connection orphan = connection("c_x", "nope", P_OPENAI, 1);
    assert_int_equal(store_connection_create(s, &orphan), STORE_ERR_NOT_FOUND);

    assert_int_equal(store_connection_get(s, "t1", "c_1", &got), STORE_OK);
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
    assert_int_equal(store_connection_get(s, "t1", "c_nope", &got), STORE_ERR_NOT_FOUND);

    /* Rotate + rename: new sealed value, version, hint and name. */
    struct store_connection u = connection("c_1", "t1", P_AZURE_SPEECH, 0x11);
    snprintf(u.name, sizeof(u.name), "renamed");
    snprintf(u.region, sizeof(u.region), "westeurope");
    snprintf(u.key_hint, sizeof(u.key_hint), "wxyz");
    u.key_version = 3;
    gen = store_generation();
    assert_int_equal(store_connection_update(s, &u), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_get(s, "t1", "c_1", &got), STORE_OK);
    assert_string_equal(got.name, "renamed");
    assert_string_equal(got.region, "westeurope");
    assert_string_equal(got.key_hint, "wxyz");
    assert_int_equal(got.key_version, 3);
    assert_int_equal(got.sealed_len, u.sealed_len);
    assert_memory_equal(got.sealed, u.sealed, u.sealed_len);
    assert_ptr_equal(got.provider, P_AZURE_SPEECH);
    struct store_connection missing = connection("c_nope", "t1", P_OPENAI, 1);
    assert_int_equal(store_connection_update(s, &missing), STORE_ERR_NOT_FOUND);

    /* An OpenAI connection has no region. */
    struct store_connection o = connection("c_2", "t1", P_OPENAI, 2);
    assert_int_equal(store_connection_create(s, &o), STORE_OK);
    assert_int_equal(store_connection_get(s, "t1", "c_2", &got), STORE_OK);
    assert_string_equal(got.region, "");
    assert_ptr_equal(got.provider, P_OPENAI);
    struct store_connection e = connection("c_3", "t2", P_ELEVENLABS, 3);
    assert_int_equal(store_connection_create(s, &e), STORE_OK);

    struct conn_list l = {0};
    assert_int_equal(store_connection_list(s, "t1", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].id, "c_1");
    assert_string_equal(l.v[1].id, "c_2");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_connection_list(s, NULL, collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2].id, "c_3");
    assert_ptr_equal(l.v[2].provider, P_ELEVENLABS);

    gen = store_generation();
    assert_int_equal(store_connection_delete(s, "t1", "c_2"), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_connection_get(s, "t1", "c_2", &got), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_connection_delete(s, "t1", "c_2"), STORE_ERR_NOT_FOUND);
}

static void test_connection_cross_tenant(void **state)
{
    struct store *s = case_store(state);
    create_tenants(s, 2);
    struct store_connection c = connection("c_1", "t1", P_OPENAI, 7), got;
    assert_int_equal(store_connection_create(s, &c), STORE_OK);

    /* Another tenant's id behaves exactly like an id that does not exist. */
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(store_connection_get(s, "t2", "c_1", &got), STORE_ERR_NOT_FOUND);
    assert_int_not_equal(got.sealed[0], 7);
    assert_int_equal(store_connection_delete(s, "t2", "c_1"), STORE_ERR_NOT_FOUND);
    struct store_connection steal = connection("c_1", "t2", P_OPENAI, 9);
    assert_int_equal(store_connection_update(s, &steal), STORE_ERR_NOT_FOUND);
    struct conn_list l = {0};
    assert_int_equal(store_connection_list(s, "t2", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 0);

    /* Still intact for its owner. */
    assert_int_equal(store_connection_get(s, "t1", "c_1", &got), STORE_OK);
    assert_int_equal(got.sealed[0], 7);
}

static void test_byok_settings(void **state)
{
    struct store *s = case_store(state);
    create_tenants(s, 1);
    struct store_byok b;
    memset(&b, 0x5a, sizeof(b));
    /* No row: disabled, empty slots. */
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "");

    struct store_byok put = {0};
    put.enabled = true;
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(put.slots[S_AZURE_SPEECH], ID_MAX, "c_a");
    uint64_t gen = store_generation();
    assert_int_equal(store_byok_put(s, "t1", &put), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "c_o");
    assert_string_equal(b.slots[S_ELEVENLABS], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
    assert_true(b.updated_at_ms > 0);

    /* A second put replaces the whole row. */
    struct store_byok put2 = {0};
    snprintf(put2.slots[S_ELEVENLABS], ID_MAX, "c_e");
    assert_int_equal(store_byok_put(s, "t1", &put2), STORE_OK);
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_e");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "");

    assert_int_equal(store_byok_put(s, "nope", &put), STORE_ERR_NOT_FOUND);
}

static void test_connection_delete_clears_slots(void **state)
{
    struct store *s = case_store(state);
    create_tenants(s, 2);
    struct store_connection o = connection("c_o", "t1", P_OPENAI, 1);
    struct store_connection a = connection("c_a", "t1", P_AZURE_SPEECH, 2);
    assert_int_equal(store_connection_create(s, &o), STORE_OK);
    assert_int_equal(store_connection_create(s, &a), STORE_OK);
    struct store_byok put = {.enabled = true};
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(put.slots[S_AZURE_SPEECH], ID_MAX, "c_a");
    assert_int_equal(store_byok_put(s, "t1", &put), STORE_OK);
    /* A (mistaken) reference from another tenant is cleared too. */
    struct store_byok other = {.enabled = true};
    snprintf(other.slots[S_OPENAI], ID_MAX, "c_o");
    snprintf(other.slots[S_ELEVENLABS], ID_MAX, "c_keep");
    assert_int_equal(store_byok_put(s, "t2", &other), STORE_OK);

    assert_int_equal(store_connection_delete(s, "t1", "c_o"), STORE_OK);
    struct store_byok b;
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
    assert_int_equal(store_byok_get(s, "t2", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_keep");

    /* A refused cross-tenant delete clears nothing. */
    assert_int_equal(store_connection_delete(s, "t2", "c_a"), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_string_equal(b.slots[S_AZURE_SPEECH], "c_a");
}

static void test_tenant_delete_cascades(void **state)
{
    struct store *s = case_store(state);
    create_tenants(s, 2);
    struct store_connection c1 = connection("c_1", "t1", P_OPENAI, 1);
    struct store_connection c2 = connection("c_2", "t2", P_OPENAI, 2);
    assert_int_equal(store_connection_create(s, &c1), STORE_OK);
    assert_int_equal(store_connection_create(s, &c2), STORE_OK);
    struct store_byok put = {.enabled = true};
    snprintf(put.slots[S_OPENAI], ID_MAX, "c_1");
    assert_int_equal(store_byok_put(s, "t1", &put), STORE_OK);
    struct store_byok put2 = {.enabled = true};
    snprintf(put2.slots[S_OPENAI], ID_MAX, "c_1"); /* dangling once t1 goes */
    snprintf(put2.slots[S_ELEVENLABS], ID_MAX, "c_2");
    assert_int_equal(store_byok_put(s, "t2", &put2), STORE_OK);

    assert_int_equal(store_tenant_delete(s, "t1"), STORE_OK);
    struct store_connection got;
    assert_int_equal(store_connection_get(s, "t1", "c_1", &got), STORE_ERR_NOT_FOUND);
    struct conn_list l = {0};
    assert_int_equal(store_connection_list(s, NULL, collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].id, "c_2");
    struct store_byok b;
    assert_int_equal(store_byok_get(s, "t2", &b), STORE_OK);
    assert_string_equal(b.slots[S_OPENAI], "");
    assert_string_equal(b.slots[S_ELEVENLABS], "c_2");

    /* The rows are gone, not just hidden: a tenant re-created with the same
     * id starts without settings or connections. */
    struct store_tenant t = tenant("t1", "", 0, 0);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
    assert_int_equal(store_byok_get(s, "t1", &b), STORE_OK);
    assert_false(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_connection_list(s, "t1", collect_conn, &l), STORE_OK);
    assert_int_equal(l.n, 0);
}

static void test_secrets(void **state)
{
    struct store *s = case_store(state);
    unsigned char sealed[CRYPTO_SEALED_MAX], in[60];
    size_t len = 0;
    int version = 0;
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len),
                     STORE_ERR_NOT_FOUND);
    memset(in, 0x42, sizeof(in));
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 1, in, sizeof(in)), STORE_OK);
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 1);
    assert_int_equal(len, sizeof(in));
    assert_memory_equal(sealed, in, sizeof(in));
    /* Put replaces. */
    memset(in, 0x43, 50);
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 2, in, 50), STORE_OK);
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 2);
    assert_int_equal(len, 50);
    assert_memory_equal(sealed, in, 50);
    assert_int_equal(store_secret_get(s, "other", &version, sealed, &len), STORE_ERR_NOT_FOUND);
}

struct secret_seen {
    char names[4][ID_MAX];
    int versions[4];
    size_t lens[4];
    int n;
};

static void collect_secret(void *arg, const char *name, int key_version,
                           const unsigned char *sealed, size_t sealed_len)
{
    struct secret_seen *l = arg;
    assert_true(l->n < 4);
    assert_true(sealed_len > 0 && sealed[0] == (unsigned char)name[0]);
    snprintf(l->names[l->n], ID_MAX, "%s", name);
    l->versions[l->n] = key_version;
    l->lens[l->n++] = sealed_len;
}

/* Every secret, by name (what --import-sqlite copies). */
static void test_secret_list(void **state)
{
    struct store *s = case_store(state);
    struct secret_seen l = {0};
    assert_int_equal(store_secret_list(s, collect_secret, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    unsigned char b[40];
    memset(b, 'z', sizeof(b));
    assert_int_equal(store_secret_put(s, "zeta", 3, b, 20), STORE_OK);
    memset(b, 'a', sizeof(b));
    assert_int_equal(store_secret_put(s, "alpha", 1, b, 40), STORE_OK);
    assert_int_equal(store_secret_put(s, "alpha", 2, b, 30), STORE_OK); /* replaced */
    assert_int_equal(store_secret_list(s, collect_secret, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "alpha");
    assert_int_equal(l.versions[0], 2);
    assert_int_equal(l.lens[0], 30);
    assert_string_equal(l.names[1], "zeta");
    assert_int_equal(l.versions[1], 3);
    assert_int_equal(l.lens[1], 20);
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

/* The text a write gives back is the stored record's text, formatted after
 * charging: one line per record written, none for a duplicate, appended
 * after what the buffer held. Leaves t1 at plan 0, wallet 75 and the lines
 * in *lines (the caller frees them). */
static void usage_lines_body(void **state, struct usage_record_lines *out)
{
    struct store *s = case_store(state);
    struct store_tenant t = tenant("t1", "", 10, 100);
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);

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
    assert_int_equal(store_usage_write(s, b, 3, &dups, &lines), STORE_OK);
    assert_int_equal(dups, 1);
    assert_memory_equal(lines.data, prefix, sizeof(prefix) - 1);
    const char *ids[] = {"u1", "u2"};
    for (size_t i = 0; i < 2; i++) {
        char *line = nth_line(&lines, sizeof(prefix) - 1, i);
        assert_non_null(line);
        char *row = case_stored_text(state, ids[i]);
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
    assert_int_equal(store_usage_write(s, again, 2, &dups, &lines), STORE_OK);
    assert_int_equal(dups, 1);
    char *u3 = nth_line(&lines, before, 0);
    assert_non_null(u3);
    char *row = case_stored_text(state, "u3");
    assert_string_equal(u3, row);
    free(row);
    free(u3);
    assert_null(nth_line(&lines, before, 1));
    balances(s, "t1", 0, 75);
    *out = lines;
}

/* Re-sealing is all or nothing, connections first, then secrets. */
static void reseal_all_body(void **state)
{
    struct store *s = case_store(state);
    create_tenants(s, 2);
    struct store_connection cs[3] = {
        connection("c_1", "t1", P_OPENAI, 0x10),
        connection("c_2", "t1", P_ELEVENLABS, 0x20),
        connection("c_3", "t2", P_AZURE_SPEECH, 0x30),
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_connection_create(s, &cs[i]), STORE_OK);
    unsigned char pepper[48];
    memset(pepper, 0x77, sizeof(pepper));
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 1, pepper, sizeof(pepper)), STORE_OK);

    /* Failing on the second record leaves every row exactly as it was. */
    struct reseal_arg a = {.fail_at = 2};
    size_t count = 99;
    assert_int_equal(store_reseal_all(s, reseal_invert, &a, &count), STORE_ERR_INTERNAL);
    assert_int_equal(count, 0);
    assert_int_equal(a.calls, 2);
    struct store_connection got;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_connection_get(s, cs[i].tenant_id, cs[i].id, &got), STORE_OK);
        assert_int_equal(got.key_version, 1);
        assert_memory_equal(got.sealed, cs[i].sealed, cs[i].sealed_len);
    }
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t len;
    int version;
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 1);
    assert_memory_equal(sealed, pepper, sizeof(pepper));

    /* Failing on the last record (the secret) also rolls back the
     * connections already rewritten. */
    memset(&a, 0, sizeof(a));
    a.fail_at = 4;
    assert_int_equal(store_reseal_all(s, reseal_invert, &a, &count), STORE_ERR_INTERNAL);
    assert_int_equal(a.connections_seen, 3);
    assert_int_equal(a.secrets_seen, 1);
    assert_int_equal(store_connection_get(s, "t1", "c_1", &got), STORE_OK);
    assert_int_equal(got.key_version, 1);
    assert_memory_equal(got.sealed, cs[0].sealed, cs[0].sealed_len);

    /* The handle is still usable after a rollback, and a full run commits
     * every row. */
    memset(&a, 0, sizeof(a));
    uint64_t gen = store_generation();
    assert_int_equal(store_reseal_all(s, reseal_invert, &a, &count), STORE_OK);
    assert_true(store_generation() > gen);
    assert_int_equal(count, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_connection_get(s, cs[i].tenant_id, cs[i].id, &got), STORE_OK);
        assert_int_equal(got.key_version, 2);
        assert_int_equal(got.sealed_len, cs[i].sealed_len);
        for (size_t j = 0; j < got.sealed_len; j++)
            assert_int_equal(got.sealed[j], (unsigned char)~cs[i].sealed[j]);
        /* Everything else is untouched. */
        assert_string_equal(got.name, cs[i].name);
        assert_string_equal(got.key_hint, cs[i].key_hint);
    }
    assert_int_equal(store_secret_get(s, "proxy_key_hash", &version, sealed, &len), STORE_OK);
    assert_int_equal(version, 2);
    assert_int_equal(sealed[0], (unsigned char)~0x77);
}

#endif
