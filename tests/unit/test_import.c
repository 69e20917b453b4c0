/* test_import.c - `--import-sqlite`: a SQLite store copied into a real
 * redis-server, twice (nothing doubled), then refused as a whole when Redis
 * moved on; the command's refusals (not a fleet config, no such file, the
 * store in use). */
#include "common.h"
#include "config.h"
#include "import.h"
#include "store.h"
#include "store_redis.h"
#include "providers_test.h"
#include "redis_server_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static struct redis_server srv;
static char url[64];
static char backend[] = "redis";

struct fixture {
    char dir[64];
    char path[128];
    struct config cfg;
    struct store *sq, *rd;
    char *out; /* what the command printed */
    size_t out_len;
    FILE *outf;
};

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (redis_server_start(&srv) == -1) {
        redis_server_destroy(&srv);
        return -1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", srv.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_server_destroy(&srv);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/byok-import-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/byok.db", f->dir);
    f->cfg.store_backend = backend;
    f->cfg.store_url = url;
    f->cfg.store_connect_timeout_ms = 1000;
    f->cfg.store_timeout_ms = 2000;
    char *err = NULL;
    f->sq = store_sqlite_open(f->path, &err);
    assert_non_null(f->sq);
    f->rd = store_open_role(&f->cfg, STORE_ROLE_CONTROL, &err);
    if (f->rd == NULL)
        fail_msg("redis: %s", err);
    redisContext *c = redis_server_connect(&srv);
    redisReply *r = redisCommand(c, "FLUSHALL");
    freeReplyObject(r);
    redisFree(c);
    f->outf = open_memstream(&f->out, &f->out_len);
    assert_non_null(f->outf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->sq);
    store_close(f->rd);
    fclose(f->outf);
    free(f->out);
    nftw(f->dir, redis_server_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static const char *printed(struct fixture *f)
{
    fflush(f->outf);
    return f->out != NULL ? f->out : "";
}

static struct store_tenant tenant(const char *id, const char *parent, int64_t plan, int64_t wallet)
{
    struct store_tenant t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "Tenant %s", id);
    snprintf(t.parent_id, sizeof(t.parent_id), "%s", parent);
    t.plan_credits_micros = plan;
    t.wallet_micros = wallet;
    t.created_at_ms = 1000;
    t.updated_at_ms = 2000;
    return t;
}

/* The SQLite side: an agency with a subaccount, keys (one revoked),
 * connections, BYOK settings, the proxy-key hashing key. */
static void fill_sqlite(struct store *s)
{
    struct store_tenant a = tenant("agency", "", 500, 7000), sub = tenant("sub", "agency", 0, 0),
                        solo = tenant("solo", "", 0, -25);
    a.feature_agency = a.feature_byok = true;
    solo.feature_byok = true;
    assert_int_equal(store_tenant_create(s, &a), STORE_OK);
    assert_int_equal(store_tenant_create(s, &sub), STORE_OK);
    assert_int_equal(store_tenant_create(s, &solo), STORE_OK);
    struct store_key k1 = {
        .id = "k_a1", .tenant_id = "agency", .label = "prod", .created_at_ms = 10};
    struct store_key k2 = {.id = "k_s1", .tenant_id = "sub", .label = "bot", .created_at_ms = 11};
    struct store_key k3 = {
        .id = "k_s2", .tenant_id = "sub", .created_at_ms = 12, .revoked_at_ms = 13};
    memset(k1.hash, 0x11, sizeof(k1.hash));
    memset(k2.hash, 0x22, sizeof(k2.hash));
    memset(k3.hash, 0x33, sizeof(k3.hash));
    assert_int_equal(store_key_create(s, &k1), STORE_OK);
    assert_int_equal(store_key_create(s, &k2), STORE_OK);
    assert_int_equal(store_key_create(s, &k3), STORE_OK);
    struct store_connection c = {.id = "c_o",
                                 .tenant_id = "agency",
                                 .name = "agency openai",
                                 .key_hint = "abcd",
                                 .key_version = 1,
                                 .sealed_len = 45,
                                 .created_at_ms = 20,
                                 .updated_at_ms = 21};
    c.provider = P_OPENAI;
    memset(c.sealed, 0xab, c.sealed_len);
    assert_int_equal(store_connection_create(s, &c), STORE_OK);
    struct store_connection az = c;
    snprintf(az.id, sizeof(az.id), "c_az");
    snprintf(az.tenant_id, sizeof(az.tenant_id), "solo");
    snprintf(az.region, sizeof(az.region), "westeurope");
    az.provider = P_AZURE_SPEECH;
    memset(az.sealed, 0xcd, az.sealed_len);
    assert_int_equal(store_connection_create(s, &az), STORE_OK);
    struct store_byok b = {.enabled = true, .updated_at_ms = 30};
    snprintf(b.slots[S_OPENAI], ID_MAX, "c_o");
    assert_int_equal(store_byok_put(s, "agency", &b), STORE_OK);
    struct store_byok b2 = {.enabled = false, .updated_at_ms = 31};
    snprintf(b2.slots[S_AZURE_SPEECH], ID_MAX, "c_az");
    assert_int_equal(store_byok_put(s, "solo", &b2), STORE_OK);
    unsigned char pepper[60];
    memset(pepper, 0x77, sizeof(pepper));
    assert_int_equal(store_secret_put(s, "proxy_key_hash", 1, pepper, sizeof(pepper)), STORE_OK);
}

/* Redis holds exactly what SQLite holds. */
static void same_state(struct store *sq, struct store *rd)
{
    const char *ids[] = {"agency", "sub", "solo"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        struct store_tenant a, b;
        assert_int_equal(store_tenant_get(sq, ids[i], &a), STORE_OK);
        assert_int_equal(store_tenant_get(rd, ids[i], &b), STORE_OK);
        assert_memory_equal(&a, &b, sizeof(a));
        struct store_byok x, y;
        assert_int_equal(store_byok_get(sq, ids[i], &x), STORE_OK);
        assert_int_equal(store_byok_get(rd, ids[i], &y), STORE_OK);
        assert_memory_equal(&x, &y, sizeof(x));
    }
    const char *kids[] = {"k_a1", "k_s1", "k_s2"};
    for (size_t i = 0; i < ARRAY_SIZE(kids); i++) {
        struct store_key a, b;
        assert_int_equal(store_key_get(sq, kids[i], &a), STORE_OK);
        assert_int_equal(store_key_get(rd, kids[i], &b), STORE_OK);
        assert_memory_equal(&a, &b, sizeof(a));
    }
    const char *conns[][2] = {{"agency", "c_o"}, {"solo", "c_az"}};
    for (size_t i = 0; i < ARRAY_SIZE(conns); i++) {
        struct store_connection a, b;
        assert_int_equal(store_connection_get(sq, conns[i][0], conns[i][1], &a), STORE_OK);
        assert_int_equal(store_connection_get(rd, conns[i][0], conns[i][1], &b), STORE_OK);
        assert_memory_equal(&a, &b, sizeof(a));
    }
    unsigned char s1[CRYPTO_SEALED_MAX], s2[CRYPTO_SEALED_MAX];
    size_t l1, l2;
    int v1, v2;
    assert_int_equal(store_secret_get(sq, "proxy_key_hash", &v1, s1, &l1), STORE_OK);
    assert_int_equal(store_secret_get(rd, "proxy_key_hash", &v2, s2, &l2), STORE_OK);
    assert_int_equal(v1, v2);
    assert_int_equal(l1, l2);
    assert_memory_equal(s1, s2, l1);
}

static void test_copy_twice(void **state)
{
    struct fixture *f = *state;
    fill_sqlite(f->sq);
    struct import_summary sum;
    assert_int_equal(import_copy(f->sq, f->rd, f->outf, &sum), STORE_OK);
    assert_int_equal(sum.conflicts, 0);
    assert_int_equal(sum.tenants.created, 3);
    assert_int_equal(sum.keys.created, 3);
    assert_int_equal(sum.connections.created, 2);
    assert_int_equal(sum.byok.created, 2);
    assert_int_equal(sum.secrets.created, 1);
    same_state(f->sq, f->rd);
    /* The agency's subaccount is known to Redis: it cannot be deleted
     * first. */
    assert_int_equal(store_tenant_delete(f->rd, "agency"), STORE_ERR_CONFLICT);

    /* Again: everything already there, balances not doubled. */
    assert_int_equal(import_copy(f->sq, f->rd, f->outf, &sum), STORE_OK);
    assert_int_equal(sum.conflicts, 0);
    assert_int_equal(sum.tenants.created + sum.keys.created + sum.connections.created +
                         sum.byok.created + sum.secrets.created,
                     0);
    assert_int_equal(sum.tenants.same, 3);
    assert_int_equal(sum.keys.same, 3);
    assert_int_equal(sum.connections.same, 2);
    assert_int_equal(sum.byok.same, 2);
    assert_int_equal(sum.secrets.same, 1);
    same_state(f->sq, f->rd);

    /* A tenant added to SQLite since: only it is new. */
    struct store_tenant late = tenant("late", "", 1, 2);
    assert_int_equal(store_tenant_create(f->sq, &late), STORE_OK);
    assert_int_equal(import_copy(f->sq, f->rd, f->outf, &sum), STORE_OK);
    assert_int_equal(sum.tenants.created, 1);
    assert_int_equal(sum.tenants.same, 3);
}

/* Redis moved on (the fleet charged a tenant, revoked a key): the import
 * lists every difference and writes nothing at all, not even what is new. */
static void test_conflicts_write_nothing(void **state)
{
    struct fixture *f = *state;
    fill_sqlite(f->sq);
    struct import_summary sum;
    assert_int_equal(import_copy(f->sq, f->rd, f->outf, &sum), STORE_OK);
    struct store_tenant t;
    assert_int_equal(store_tenant_topup(f->rd, "agency", -100, 0, &t), STORE_OK);
    assert_int_equal(store_key_revoke(f->rd, "agency", "k_a1"), STORE_OK);
    struct store_byok b = {.enabled = true};
    snprintf(b.slots[S_AZURE_SPEECH], ID_MAX, "c_az");
    assert_int_equal(store_byok_put(f->rd, "solo", &b), STORE_OK);
    struct store_tenant late = tenant("late", "", 1, 2);
    assert_int_equal(store_tenant_create(f->sq, &late), STORE_OK);

    size_t before = strlen(printed(f));
    assert_int_equal(import_copy(f->sq, f->rd, f->outf, &sum), STORE_OK);
    assert_int_equal(sum.conflicts, 3);
    const char *msg = printed(f) + before;
    assert_non_null(strstr(msg, "tenant agency: wallet_micros (SQLite 7000, Redis 6900)"));
    assert_non_null(strstr(msg, "proxy key k_a1 of tenant agency: revoked in Redis only"));
    assert_non_null(strstr(msg, "BYOK settings of tenant solo"));
    assert_int_equal(store_tenant_get(f->rd, "late", &t), STORE_ERR_NOT_FOUND);
    assert_int_equal(store_tenant_get(f->rd, "agency", &t), STORE_OK);
    assert_int_equal(t.wallet_micros, 6900);
}

/* The command: refusals, then a full run with its summary. */
static void test_command(void **state)
{
    struct fixture *f = *state;
    fill_sqlite(f->sq);
    store_close(f->sq);
    f->sq = NULL;

    struct config sqlite_cfg = {0};
    assert_int_equal(import_sqlite(&sqlite_cfg, f->path, f->outf), 1);
    assert_non_null(strstr(printed(f), "store.backend must be \"redis\""));

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope.db", f->dir);
    assert_int_equal(import_sqlite(&f->cfg, missing, f->outf), 1);
    assert_non_null(strstr(printed(f), "nothing imported"));
    struct stat st;
    assert_int_equal(stat(missing, &st), -1); /* not created */

    /* A proxy holds the store: nothing imported. */
    struct store_lock *l = NULL;
    char *err = NULL;
    assert_int_equal(store_sqlite_lock(f->path, &l, &err), 0);
    assert_int_equal(import_sqlite(&f->cfg, f->path, f->outf), 1);
    assert_non_null(strstr(printed(f), "in use by another byok-proxy"));
    store_unlock(l);
    struct store_tenant t;
    assert_int_equal(store_tenant_get(f->rd, "agency", &t), STORE_ERR_NOT_FOUND);

    assert_int_equal(import_sqlite(&f->cfg, f->path, f->outf), 0);
    assert_non_null(strstr(printed(f), "tenants        3 new, 0 already there"));
    assert_int_equal(import_sqlite(&f->cfg, f->path, f->outf), 0);
    assert_non_null(strstr(printed(f), "tenants        0 new, 3 already there"));
    assert_int_equal(store_tenant_get(f->rd, "agency", &t), STORE_OK);
    assert_int_equal(t.wallet_micros, 7000);
    assert_int_equal(t.plan_credits_micros, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
