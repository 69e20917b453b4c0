/* import.c - `--import-sqlite PATH`: a SQLite store's tenants, keys,
 * connections, BYOK settings and secrets copied into the fleet's Redis,
 * compared first, written only when nothing conflicts (import.h). Works on
 * the store interface alone: any backend to any backend. */
#include "common.h"
#include "import.h"
#include "config.h"
#include "crypto.h"
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Conflicts printed at most; the rest are counted. */
#define CONFLICTS_SHOWN 50

struct secret_copy {
    char name[ID_MAX];
    int version;
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t sealed_len;
};

/* Everything of one store that is imported, read into memory. */
struct snapshot {
    struct store_tenant *tenants;
    struct store_byok *byok; /* per tenant, same index */
    size_t n_tenants, cap_tenants;
    struct store_key *keys;
    size_t n_keys, cap_keys;
    struct store_connection *conns;
    size_t n_conns, cap_conns;
    struct secret_copy *secrets;
    size_t n_secrets, cap_secrets;
    bool oom;
};

/* Grows *v (elements of size sz) to hold one more; NULL when out of memory. */
static void *push(void **v, size_t *n, size_t *cap, size_t sz, bool *oom)
{
    if (*oom)
        return NULL;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 32;
        void *g = realloc(*v, c * sz);
        if (g == NULL) {
            *oom = true;
            return NULL;
        }
        *v = g;
        *cap = c;
    }
    return (char *)*v + (*n)++ * sz;
}

static void snap_tenant(void *arg, const struct store_tenant *t)
{
    struct snapshot *s = arg;
    struct store_tenant *d =
        push((void **)&s->tenants, &s->n_tenants, &s->cap_tenants, sizeof(*d), &s->oom);
    if (d != NULL)
        *d = *t;
}

static void snap_key(void *arg, const struct store_key *k)
{
    struct snapshot *s = arg;
    struct store_key *d = push((void **)&s->keys, &s->n_keys, &s->cap_keys, sizeof(*d), &s->oom);
    if (d != NULL)
        *d = *k;
}

static void snap_conn(void *arg, const struct store_connection *c)
{
    struct snapshot *s = arg;
    struct store_connection *d =
        push((void **)&s->conns, &s->n_conns, &s->cap_conns, sizeof(*d), &s->oom);
    if (d != NULL)
        *d = *c;
}

static void snap_secret(void *arg, const char *name, int version, const unsigned char *sealed,
                        size_t len)
{
    struct snapshot *s = arg;
    struct secret_copy *d =
        push((void **)&s->secrets, &s->n_secrets, &s->cap_secrets, sizeof(*d), &s->oom);
    if (d == NULL)
        return;
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->version = version;
    memcpy(d->sealed, sealed, len);
    d->sealed_len = len;
}

static void snapshot_free(struct snapshot *s)
{
    free(s->tenants);
    free(s->byok);
    free(s->keys);
    if (s->conns != NULL)
        crypto_wipe(s->conns, s->cap_conns * sizeof(*s->conns));
    free(s->conns);
    if (s->secrets != NULL)
        crypto_wipe(s->secrets, s->cap_secrets * sizeof(*s->secrets));
    free(s->secrets);
    memset(s, 0, sizeof(*s));
}

/* Reads everything of src. STORE_* code. */
static int snapshot_read(struct store *src, struct snapshot *s)
{
    int rc = store_tenant_list(src, snap_tenant, s);
    if (rc == STORE_OK && !s->oom)
        s->byok = calloc(s->n_tenants + 1, sizeof(*s->byok));
    if (s->byok == NULL)
        s->oom = true;
    for (size_t i = 0; i < s->n_tenants && rc == STORE_OK && !s->oom; i++) {
        rc = store_key_list(src, s->tenants[i].id, snap_key, s);
        if (rc == STORE_OK)
            rc = store_byok_get(src, s->tenants[i].id, &s->byok[i]);
    }
    if (rc == STORE_OK && !s->oom)
        rc = store_connection_list(src, NULL, snap_conn, s);
    if (rc == STORE_OK && !s->oom)
        rc = store_secret_list(src, snap_secret, s);
    if (rc == STORE_OK && s->oom) {
        log_error("import: out of memory reading the store");
        rc = STORE_ERR_INTERNAL;
    }
    return rc;
}

/* Conflict output: the first CONFLICTS_SHOWN are printed. */
struct report {
    FILE *out;
    size_t n;
};

static void conflict(struct report *r, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void conflict(struct report *r, const char *fmt, ...)
{
    if (r->n++ >= CONFLICTS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("  ", r->out);
    vfprintf(r->out, fmt, ap);
    fputc('\n', r->out);
    va_end(ap);
}

/* Appends ", what" to a list of differing fields. */
static void differs(char *buf, size_t size, const char *what)
{
    size_t n = strlen(buf);
    snprintf(buf + n, size - n, "%s%s", n ? ", " : "", what);
}

static void tenant_diff(const struct store_tenant *a, const struct store_tenant *b, char *d,
                        size_t size)
{
    char m[96];
    d[0] = '\0';
    if (strcmp(a->name, b->name) != 0)
        differs(d, size, "name");
    if (a->feature_byok != b->feature_byok || a->feature_agency != b->feature_agency)
        differs(d, size, "features");
    if (strcmp(a->parent_id, b->parent_id) != 0)
        differs(d, size, "parent_id");
    if (a->wallet_deduction != b->wallet_deduction)
        differs(d, size, "wallet_deduction");
    if (a->live_sessions != b->live_sessions)
        differs(d, size, "limits.live_sessions");
    if (a->plan_credits_micros != b->plan_credits_micros) {
        snprintf(m, sizeof(m), "plan_credits_micros (SQLite %lld, Redis %lld)",
                 (long long)a->plan_credits_micros, (long long)b->plan_credits_micros);
        differs(d, size, m);
    }
    if (a->wallet_micros != b->wallet_micros) {
        snprintf(m, sizeof(m), "wallet_micros (SQLite %lld, Redis %lld)",
                 (long long)a->wallet_micros, (long long)b->wallet_micros);
        differs(d, size, m);
    }
    if (a->created_at_ms != b->created_at_ms)
        differs(d, size, "created_at");
}

static void key_diff(const struct store_key *a, const struct store_key *b, char *d, size_t size)
{
    d[0] = '\0';
    if (strcmp(a->tenant_id, b->tenant_id) != 0)
        differs(d, size, "tenant");
    if (strcmp(a->label, b->label) != 0)
        differs(d, size, "label");
    if (!crypto_equal(a->hash, b->hash, sizeof(a->hash)))
        differs(d, size, "hash");
    if (a->created_at_ms != b->created_at_ms)
        differs(d, size, "created_at");
    if (a->revoked_at_ms != b->revoked_at_ms)
        differs(d, size,
                a->revoked_at_ms == 0   ? "revoked in Redis only"
                : b->revoked_at_ms == 0 ? "revoked in SQLite only"
                                        : "revoked_at");
}

static void conn_diff(const struct store_connection *a, const struct store_connection *b, char *d,
                      size_t size)
{
    d[0] = '\0';
    if (strcmp(a->tenant_id, b->tenant_id) != 0)
        differs(d, size, "tenant");
    if (a->provider != b->provider)
        differs(d, size, "provider");
    if (strcmp(a->name, b->name) != 0)
        differs(d, size, "name");
    if (strcmp(a->region, b->region) != 0)
        differs(d, size, "region");
    if (a->key_version != b->key_version || a->sealed_len != b->sealed_len ||
        !crypto_equal(a->sealed, b->sealed, a->sealed_len) || strcmp(a->key_hint, b->key_hint) != 0)
        differs(d, size, "key (rotated?)");
    if (a->created_at_ms != b->created_at_ms)
        differs(d, size, "created_at");
}

static bool byok_empty(const struct store_byok *b)
{
    if (b->enabled || b->updated_at_ms != 0)
        return false;
    for (size_t i = 0; i < PROVIDER_SLOT_MAX; i++)
        if (b->slots[i][0] != '\0')
            return false;
    return true;
}

static bool byok_same(const struct store_byok *a, const struct store_byok *b)
{
    if (a->enabled != b->enabled)
        return false;
    for (size_t i = 0; i < PROVIDER_SLOT_MAX; i++)
        if (strcmp(a->slots[i], b->slots[i]) != 0)
            return false;
    return true;
}

/* What to do with each entry of the snapshot: decided before anything is
 * written. */
enum plan_action { PLAN_SKIP = 0, PLAN_CREATE };

struct plan {
    unsigned char *tenants, *keys, *conns, *byok, *secrets; /* enum plan_action each */
};

static void plan_free(struct plan *p)
{
    free(p->tenants);
    free(p->keys);
    free(p->conns);
    free(p->byok);
    free(p->secrets);
}

/* A connection of dst found by id, whatever its tenant (connection ids
 * are global). */
static const struct store_connection *conn_find(const struct snapshot *all, const char *id)
{
    for (size_t i = 0; i < all->n_conns; i++)
        if (strcmp(all->conns[i].id, id) == 0)
            return &all->conns[i];
    return NULL;
}

/* Compares src's snapshot with dst: fills the plan, prints conflicts. */
static int compare(struct store *dst, const struct snapshot *s, struct plan *p, struct report *r,
                   struct import_summary *sum)
{
    char d[512];
    int rc;
    for (size_t i = 0; i < s->n_tenants; i++) {
        const struct store_tenant *a = &s->tenants[i];
        struct store_tenant b;
        rc = store_tenant_get(dst, a->id, &b);
        if (rc == STORE_ERR_NOT_FOUND) {
            p->tenants[i] = PLAN_CREATE;
            continue;
        }
        if (rc != STORE_OK)
            return rc;
        tenant_diff(a, &b, d, sizeof(d));
        if (d[0] != '\0')
            conflict(r, "tenant %s: %s", a->id, d);
        else
            sum->tenants.same++;
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct store_key *a = &s->keys[i];
        struct store_key b;
        rc = store_key_get(dst, a->id, &b);
        if (rc == STORE_ERR_NOT_FOUND) {
            p->keys[i] = PLAN_CREATE;
            continue;
        }
        if (rc != STORE_OK)
            return rc;
        key_diff(a, &b, d, sizeof(d));
        if (d[0] != '\0')
            conflict(r, "proxy key %s of tenant %s: %s", a->id, a->tenant_id, d);
        else
            sum->keys.same++;
    }
    struct snapshot theirs = {0};
    rc = store_connection_list(dst, NULL, snap_conn, &theirs);
    if (rc == STORE_OK && theirs.oom)
        rc = STORE_ERR_INTERNAL;
    for (size_t i = 0; i < s->n_conns && rc == STORE_OK; i++) {
        const struct store_connection *a = &s->conns[i];
        const struct store_connection *b = conn_find(&theirs, a->id);
        if (b == NULL) {
            p->conns[i] = PLAN_CREATE;
            continue;
        }
        conn_diff(a, b, d, sizeof(d));
        if (d[0] != '\0')
            conflict(r, "connection %s of tenant %s: %s", a->id, a->tenant_id, d);
        else
            sum->connections.same++;
    }
    snapshot_free(&theirs);
    if (rc != STORE_OK)
        return rc;
    for (size_t i = 0; i < s->n_tenants; i++) {
        if (byok_empty(&s->byok[i]))
            continue; /* nothing set in SQLite */
        struct store_byok b;
        rc = store_byok_get(dst, s->tenants[i].id, &b);
        if (rc != STORE_OK)
            return rc;
        if (byok_empty(&b))
            p->byok[i] = PLAN_CREATE;
        else if (byok_same(&s->byok[i], &b))
            sum->byok.same++;
        else
            conflict(r, "BYOK settings of tenant %s: the toggle or the slots differ",
                     s->tenants[i].id);
    }
    for (size_t i = 0; i < s->n_secrets; i++) {
        const struct secret_copy *a = &s->secrets[i];
        struct secret_copy b;
        rc = store_secret_get(dst, a->name, &b.version, b.sealed, &b.sealed_len);
        if (rc == STORE_ERR_NOT_FOUND) {
            p->secrets[i] = PLAN_CREATE;
            continue;
        }
        if (rc != STORE_OK)
            return rc;
        if (a->version != b.version || a->sealed_len != b.sealed_len ||
            !crypto_equal(a->sealed, b.sealed, a->sealed_len))
            conflict(r,
                     "secret %s: Redis has another one (a proxy already started on this Redis "
                     "made its own; proxy keys hashed with SQLite's would stop matching)",
                     a->name);
        else
            sum->secrets.same++;
        crypto_wipe(&b, sizeof(b));
    }
    return STORE_OK;
}

/* A write the comparison said would go through failed: something else
 * wrote Redis meanwhile, or Redis failed. */
static int written(int rc, const char *what, const char *id, FILE *out)
{
    if (rc == STORE_OK)
        return 0;
    fprintf(out, "byok-proxy: writing %s %s failed (%s); run the import again\n", what, id,
            rc == STORE_ERR_EXISTS      ? "it appeared in Redis meanwhile"
            : rc == STORE_ERR_NOT_FOUND ? "its tenant vanished from Redis meanwhile"
                                        : "store error, see the log");
    return -1;
}

static int apply(struct store *dst, const struct snapshot *s, const struct plan *p, FILE *out,
                 struct import_summary *sum)
{
    /* Secrets first: the proxy-key hashing key must be there before any
     * key hashed with it is usable. */
    for (size_t i = 0; i < s->n_secrets; i++) {
        if (p->secrets[i] != PLAN_CREATE)
            continue;
        const struct secret_copy *a = &s->secrets[i];
        if (written(store_secret_put(dst, a->name, a->version, a->sealed, a->sealed_len), "secret",
                    a->name, out) == -1)
            return -1;
        sum->secrets.created++;
    }
    /* Balances are set as they are in SQLite, never added. */
    for (size_t i = 0; i < s->n_tenants; i++) {
        if (p->tenants[i] != PLAN_CREATE)
            continue;
        if (written(store_tenant_create(dst, &s->tenants[i]), "tenant", s->tenants[i].id, out) ==
            -1)
            return -1;
        sum->tenants.created++;
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        if (p->keys[i] != PLAN_CREATE)
            continue;
        if (written(store_key_create(dst, &s->keys[i]), "proxy key", s->keys[i].id, out) == -1)
            return -1;
        sum->keys.created++;
    }
    for (size_t i = 0; i < s->n_conns; i++) {
        if (p->conns[i] != PLAN_CREATE)
            continue;
        if (written(store_connection_create(dst, &s->conns[i]), "connection", s->conns[i].id,
                    out) == -1)
            return -1;
        sum->connections.created++;
    }
    for (size_t i = 0; i < s->n_tenants; i++) {
        if (p->byok[i] != PLAN_CREATE)
            continue;
        if (written(store_byok_put(dst, s->tenants[i].id, &s->byok[i]), "BYOK settings of tenant",
                    s->tenants[i].id, out) == -1)
            return -1;
        sum->byok.created++;
    }
    return 0;
}

int import_copy(struct store *src, struct store *dst, FILE *out, struct import_summary *sum)
{
    struct snapshot s = {0};
    struct plan p = {0};
    struct report r = {.out = out};
    memset(sum, 0, sizeof(*sum));
    int rc = snapshot_read(src, &s);
    if (rc != STORE_OK)
        goto out;
    p.tenants = calloc(s.n_tenants + 1, 1);
    p.byok = calloc(s.n_tenants + 1, 1);
    p.keys = calloc(s.n_keys + 1, 1);
    p.conns = calloc(s.n_conns + 1, 1);
    p.secrets = calloc(s.n_secrets + 1, 1);
    if (p.tenants == NULL || p.byok == NULL || p.keys == NULL || p.conns == NULL ||
        p.secrets == NULL) {
        log_error("import: out of memory");
        rc = STORE_ERR_INTERNAL;
        goto out;
    }
    fprintf(out,
            "comparing %zu tenants, %zu proxy keys, %zu connections and %zu secrets with "
            "what Redis holds\n",
            s.n_tenants, s.n_keys, s.n_conns, s.n_secrets);
    rc = compare(dst, &s, &p, &r, sum);
    if (rc != STORE_OK)
        goto out;
    sum->conflicts = r.n;
    if (r.n > CONFLICTS_SHOWN)
        fprintf(out, "  ... and %zu more\n", r.n - CONFLICTS_SHOWN);
    if (r.n > 0)
        goto out; /* nothing written */
    if (apply(dst, &s, &p, out, sum) == -1)
        rc = STORE_ERR_INTERNAL;
out:
    plan_free(&p);
    snapshot_free(&s);
    return rc;
}

static void print_counts(FILE *out, const char *what, const struct import_counts *c)
{
    fprintf(out, "  %-14s %zu new, %zu already there\n", what, c->created, c->same);
}

int import_sqlite(const struct config *cfg, const char *path, FILE *out)
{
    struct store_lock *lock = NULL;
    struct store *src = NULL, *dst = NULL;
    char *err = NULL;
    int exit_code = 1;
    const char *backend = cfg->store_backend != NULL ? cfg->store_backend : "sqlite";
    if (strcmp(backend, "redis") != 0) {
        fprintf(out, "byok-proxy: --import-sqlite copies into a fleet store: the config's "
                     "store.backend must be \"redis\" (with store.url)\n");
        return 1;
    }
    /* The lock would create a missing file: a typo must not import an
     * empty store. */
    struct stat st;
    if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
        fprintf(out, "byok-proxy: nothing imported: %s is not a SQLite store (%s)\n", path,
                stat(path, &st) == -1 ? strerror(errno) : "not a regular file");
        return 1;
    }
    if (store_sqlite_lock(path, &lock, &err) == -1) {
        fprintf(out, "byok-proxy: nothing imported: %s; stop it before importing\n",
                err != NULL ? err : "cannot lock the SQLite store");
        goto out;
    }
    src = store_sqlite_open(path, &err);
    if (src == NULL) {
        fprintf(out, "byok-proxy: nothing imported: %s\n", err != NULL ? err : "cannot open");
        goto out;
    }
    dst = store_open_role(cfg, STORE_ROLE_CONTROL, &err);
    if (dst == NULL) {
        fprintf(out, "byok-proxy: nothing imported: %s\n", err != NULL ? err : "cannot open");
        goto out;
    }
    struct import_summary sum;
    int rc = import_copy(src, dst, out, &sum);
    if (rc != STORE_OK) {
        fprintf(out, "byok-proxy: the import failed: a store could not be read or written (see "
                     "the log); what was written is complete per entry: run it again\n");
        goto out;
    }
    if (sum.conflicts > 0) {
        fprintf(out,
                "byok-proxy: nothing imported: Redis already holds other data for the %zu "
                "entr%s above (was the fleet already running on it?). Overwriting could undo "
                "charges, topups or revocations made there; import into an empty Redis "
                "database (store.url redis://HOST:PORT/DB) or remove those entries first.\n",
                sum.conflicts, sum.conflicts == 1 ? "y" : "ies");
        goto out;
    }
    fprintf(out, "imported %s into %s:\n", path, cfg->store_url);
    print_counts(out, "tenants", &sum.tenants);
    print_counts(out, "proxy keys", &sum.keys);
    print_counts(out, "connections", &sum.connections);
    print_counts(out, "BYOK settings", &sum.byok);
    print_counts(out, "secrets", &sum.secrets);
    fprintf(out,
            "Balances are Redis's now (set as in SQLite, never added). Usage history "
            "stays in %s. Start the fleet with the same BYOK_MASTER_KEY (and "
            "BYOK_MASTER_KEY_VERSION) as the SQLite proxy.\n",
            path);
    exit_code = 0;
out:
    store_close(dst);
    store_close(src);
    store_unlock(lock);
    free(err);
    return exit_code;
}
