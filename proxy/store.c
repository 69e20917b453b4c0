/* store.c - backend selection, the store_* wrappers over the backend vtable,
 * and the global cache generation number. */
#include "common.h"
#include "store.h"
#include "config.h"
#include "store_redis.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t generation = 1;

struct store *store_open(const struct config *cfg, char **err)
{
    return store_open_role(cfg, STORE_ROLE_DATA_PLANE, err);
}

struct store *store_open_role(const struct config *cfg, enum store_role role, char **err)
{
    *err = NULL;
    const char *backend = cfg->store_backend != NULL ? cfg->store_backend : "sqlite";
    if (strcmp(backend, "sqlite") == 0) {
        if (cfg->store_path == NULL || cfg->store_path[0] == '\0') {
            *err = strdup("store.path is required for the sqlite backend");
            return NULL;
        }
        return store_sqlite_open(cfg->store_path, err);
    }
    if (strcmp(backend, "redis") == 0) {
        if (role == STORE_ROLE_CONTROL)
            return store_redis_open(cfg, err);
        *err = strdup("the redis backend is not built yet");
        return NULL;
    }
    *err = strdup("store.backend must be \"sqlite\" or \"redis\"");
    return NULL;
}

int store_lock(const struct config *cfg, struct store_lock **out, char **err)
{
    *out = NULL;
    *err = NULL;
    const char *backend = cfg->store_backend != NULL ? cfg->store_backend : "sqlite";
    if (strcmp(backend, "sqlite") != 0)
        return 0; /* shared by design: no lock */
    if (cfg->store_path == NULL || cfg->store_path[0] == '\0') {
        *err = strdup("store.path is required for the sqlite backend");
        return -1;
    }
    return store_sqlite_lock(cfg->store_path, out, err);
}

void store_unlock(struct store_lock *l)
{
    store_sqlite_unlock(l);
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    s->ops->close(s);
}

int store_ping(struct store *s)
{
    return s->ops->ping(s);
}

/* Writes that change what the data plane resolves move the generation, so
 * every worker's cache is dropped whoever the caller was. */
static int bump_on_ok(int rc)
{
    if (rc == STORE_OK)
        store_generation_bump();
    return rc;
}

int store_tenant_create(struct store *s, const struct store_tenant *t)
{
    return bump_on_ok(s->ops->tenant_create(s, t));
}

int store_tenant_get(struct store *s, const char *id, struct store_tenant *out)
{
    return s->ops->tenant_get(s, id, out);
}

int store_tenant_update(struct store *s, const struct store_tenant *t)
{
    return bump_on_ok(s->ops->tenant_update(s, t));
}

int store_tenant_delete(struct store *s, const char *id)
{
    return bump_on_ok(s->ops->tenant_delete(s, id));
}

int store_tenant_topup(struct store *s, const char *id, int64_t wallet_micros,
                       int64_t plan_credits_micros, struct store_tenant *out)
{
    return bump_on_ok(s->ops->tenant_topup(s, id, wallet_micros, plan_credits_micros, out));
}

int store_tenant_list(struct store *s, store_tenant_cb cb, void *arg)
{
    return s->ops->tenant_list(s, cb, arg);
}

int store_key_create(struct store *s, const struct store_key *k)
{
    return bump_on_ok(s->ops->key_create(s, k));
}

int store_key_list(struct store *s, const char *tenant_id, store_key_cb cb, void *arg)
{
    return s->ops->key_list(s, tenant_id, cb, arg);
}

int store_key_revoke(struct store *s, const char *tenant_id, const char *key_id)
{
    return bump_on_ok(s->ops->key_revoke(s, tenant_id, key_id));
}

int store_key_get(struct store *s, const char *key_id, struct store_key *out)
{
    return s->ops->key_get(s, key_id, out);
}

int store_connection_create(struct store *s, const struct store_connection *c)
{
    return bump_on_ok(s->ops->connection_create(s, c));
}

int store_connection_get(struct store *s, const char *tenant_id, const char *id,
                         struct store_connection *out)
{
    return s->ops->connection_get(s, tenant_id, id, out);
}

int store_connection_update(struct store *s, const struct store_connection *c)
{
    return bump_on_ok(s->ops->connection_update(s, c));
}

int store_connection_delete(struct store *s, const char *tenant_id, const char *id)
{
    return bump_on_ok(s->ops->connection_delete(s, tenant_id, id));
}

int store_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb, void *arg)
{
    return s->ops->connection_list(s, tenant_id, cb, arg);
}

int store_byok_get(struct store *s, const char *tenant_id, struct store_byok *out)
{
    return s->ops->byok_get(s, tenant_id, out);
}

int store_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b)
{
    return bump_on_ok(s->ops->byok_put(s, tenant_id, b));
}

int store_secret_get(struct store *s, const char *name, int *key_version,
                     unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len)
{
    return s->ops->secret_get(s, name, key_version, sealed, sealed_len);
}

int store_secret_put(struct store *s, const char *name, int key_version,
                     const unsigned char *sealed, size_t sealed_len)
{
    return s->ops->secret_put(s, name, key_version, sealed, sealed_len);
}

int store_secret_list(struct store *s, store_secret_cb cb, void *arg)
{
    return s->ops->secret_list(s, cb, arg);
}

/* Every sealed record changed: cached connections are stale. */
int store_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count)
{
    size_t dummy;
    return bump_on_ok(s->ops->reseal_all(s, fn, arg, count != NULL ? count : &dummy));
}

int store_usage_write(struct store *s, struct usage_record *records, size_t n, size_t *duplicates,
                      struct usage_record_lines *lines)
{
    size_t dummy;
    return s->ops->usage_write(s, records, n, duplicates != NULL ? duplicates : &dummy, lines);
}

int store_usage_query(struct store *s, const char *tenant_id, const char *session_id, int limit,
                      json_t **out)
{
    return s->ops->usage_query(s, tenant_id, session_id, limit, out);
}

int store_usage_after(struct store *s, const char *after_id, size_t max,
                      struct usage_record_lines *lines, size_t *count, char *last_id)
{
    *count = 0;
    if (s->ops->usage_after == NULL)
        return STORE_ERR_UNSUPPORTED;
    return s->ops->usage_after(s, after_id, max, lines, count, last_id);
}

uint64_t store_generation(void)
{
    return atomic_load_explicit(&generation, memory_order_acquire);
}

void store_generation_bump(void)
{
    atomic_fetch_add_explicit(&generation, 1, memory_order_acq_rel);
}
