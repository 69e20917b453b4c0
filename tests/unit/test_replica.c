/* test_replica.c - the read-only copy of a store's tenant data (replica.h),
 * filled from a real SQLite store: whole loads, one-tenant refreshes
 * (revocation, deletion, new connection), the read-only handle, and readers
 * running while tenants are replaced. */
#include "common.h"
#include "replica.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128];
    struct store *src;
    struct replica *rp;
    struct store *r;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void add_tenant(struct store *s, const char *id, const char *parent, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "name of %s", id);
    snprintf(t.parent_id, sizeof(t.parent_id), "%s", parent);
    t.feature_byok = true;
    t.feature_agency = parent[0] == '\0';
    t.wallet_micros = wallet;
    t.live_sessions = 4;
    assert_int_equal(store_tenant_create(s, &t), STORE_OK);
}

static void add_key(struct store *s, const char *tenant, const char *kid)
{
    struct store_key k = {0};
    snprintf(k.id, sizeof(k.id), "%s", kid);
    snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", tenant);
    snprintf(k.label, sizeof(k.label), "label");
    memset(k.hash, kid[strlen(kid) - 1], sizeof(k.hash));
    k.created_at_ms = now_ms();
    assert_int_equal(store_key_create(s, &k), STORE_OK);
}

static void add_conn(struct store *s, const char *tenant, const char *cid)
{
    struct store_connection c = {0};
    snprintf(c.id, sizeof(c.id), "%s", cid);
    snprintf(c.tenant_id, sizeof(c.tenant_id), "%s", tenant);
    c.provider = P_OPENAI;
    snprintf(c.name, sizeof(c.name), "main");
    snprintf(c.key_hint, sizeof(c.key_hint), "abcd");
    c.key_version = 1;
    c.sealed_len = 40;
    memset(c.sealed, 7, c.sealed_len);
    c.created_at_ms = c.updated_at_ms = now_ms();
    assert_int_equal(store_connection_create(s, &c), STORE_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-replica-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/byok.db", f->dir);
    char *err = NULL;
    f->src = store_sqlite_open(f->path, &err);
    if (f->src == NULL)
        fail_msg("open: %s", err);
    add_tenant(f->src, "agency", "", 500);
    add_tenant(f->src, "sub", "agency", 0);
    add_key(f->src, "agency", "k_a1");
    add_key(f->src, "sub", "k_s1");
    add_key(f->src, "sub", "k_s2");
    add_conn(f->src, "agency", "c_1");
    struct store_byok b = {.enabled = true};
    snprintf(b.slots[S_OPENAI], ID_MAX, "c_1");
    assert_int_equal(store_byok_put(f->src, "agency", &b), STORE_OK);
    f->rp = replica_new();
    assert_non_null(f->rp);
    assert_int_equal(replica_load_all(f->rp, f->src), STORE_OK);
    f->r = replica_store(f->rp);
    assert_non_null(f->r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->r);
    replica_free(f->rp);
    store_close(f->src);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void count_key(void *arg, const struct store_key *k)
{
    (void)k;
    (*(int *)arg)++;
}

static void test_load_and_read(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(replica_tenants(f->rp), 2);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->r, "sub", &t), STORE_OK);
    assert_string_equal(t.parent_id, "agency");
    assert_int_equal(t.live_sessions, 4);
    struct store_key k;
    assert_int_equal(store_key_get(f->r, "k_s2", &k), STORE_OK);
    assert_string_equal(k.tenant_id, "sub");
    assert_int_equal(k.hash[0], '2');
    int n = 0;
    assert_int_equal(store_key_list(f->r, "sub", count_key, &n), STORE_OK);
    assert_int_equal(n, 2);
    struct store_connection c;
    assert_int_equal(store_connection_get(f->r, "agency", "c_1", &c), STORE_OK);
    assert_int_equal(c.sealed_len, 40);
    assert_int_equal(c.sealed[39], 7);
    assert_int_equal(store_connection_get(f->r, "sub", "c_1", &c), STORE_ERR_NOT_FOUND);
    struct store_byok b;
    assert_int_equal(store_byok_get(f->r, "agency", &b), STORE_OK);
    assert_true(b.enabled);
    assert_string_equal(b.slots[S_OPENAI], "c_1");
    assert_int_equal(store_tenant_get(f->r, "nobody", &t), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_key_get(f->r, "k_none", &k), STORE_ERR_NOT_FOUND);
    /* Read-only. */
    assert_int_equal(store_key_revoke(f->r, "sub", "k_s1"), STORE_ERR_INTERNAL);
}

static void test_refresh_one_tenant(void **state)
{
    struct fixture *f = *state;
    struct store_key k;
    /* A revocation is seen after the tenant's refresh, not before. */
    assert_int_equal(store_key_revoke(f->src, "sub", "k_s1"), STORE_OK);
    assert_int_equal(store_key_get(f->r, "k_s1", &k), STORE_OK);
    assert_int_equal(k.revoked_at_ms, 0);
    assert_int_equal(replica_load_tenant(f->rp, f->src, "sub"), STORE_OK);
    assert_int_equal(store_key_get(f->r, "k_s1", &k), STORE_OK);
    assert_true(k.revoked_at_ms > 0);
    /* A new connection and a new tenant. */
    add_conn(f->src, "agency", "c_2");
    assert_int_equal(replica_load_tenant(f->rp, f->src, "agency"), STORE_OK);
    struct store_connection c;
    assert_int_equal(store_connection_get(f->r, "agency", "c_2", &c), STORE_OK);
    add_tenant(f->src, "solo", "", 7);
    add_key(f->src, "solo", "k_o1");
    assert_int_equal(replica_load_tenant(f->rp, f->src, "solo"), STORE_OK);
    assert_int_equal(replica_tenants(f->rp), 3);
    assert_int_equal(store_key_get(f->r, "k_o1", &k), STORE_OK);
    /* A deleted tenant goes with its keys. */
    assert_int_equal(store_tenant_delete(f->src, "solo"), STORE_OK);
    assert_int_equal(replica_load_tenant(f->rp, f->src, "solo"), STORE_OK);
    assert_int_equal(replica_tenants(f->rp), 2);
    assert_int_equal(store_key_get(f->r, "k_o1", &k), STORE_ERR_NOT_FOUND);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->r, "solo", &t), STORE_ERR_NOT_FOUND);
}

struct reader {
    struct replica *rp;
    atomic_bool stop;
    atomic_long reads, missing;
};

static void *read_loop(void *arg)
{
    struct reader *rd = arg;
    struct store *h = replica_store(rd->rp);
    while (!atomic_load(&rd->stop)) {
        struct store_key k;
        struct store_tenant t;
        if (store_key_get(h, "k_s1", &k) != STORE_OK || store_tenant_get(h, "sub", &t) != STORE_OK)
            atomic_fetch_add(&rd->missing, 1);
        atomic_fetch_add(&rd->reads, 1);
    }
    store_close(h);
    return NULL;
}

/* Readers never see a tenant half replaced or missing while it is
 * refreshed (nor during a whole reload). */
static void test_readers_during_refresh(void **state)
{
    struct fixture *f = *state;
    struct reader rd = {.rp = f->rp};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, read_loop, &rd), 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(replica_load_tenant(f->rp, f->src, "sub"), STORE_OK);
        if (i % 50 == 0)
            assert_int_equal(replica_load_all(f->rp, f->src), STORE_OK);
    }
    atomic_store(&rd.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&rd.reads) > 0);
    /* A refresh swaps the tenant in one step; a whole reload rebuilds the
     * tables under one lock: neither shows a gap. */
    assert_int_equal(atomic_load(&rd.missing), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_one_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_during_refresh, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
