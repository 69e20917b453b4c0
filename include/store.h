/* store.h - persistence interface (DESIGN §7). One struct store per thread:
 * a backend handle is never shared between threads. Callers see only this
 * interface; store_sqlite.c (embedded default) and store_redis.c (fleet
 * mode, DESIGN §7b) implement it.
 *
 * Every function returns a STORE_* code (0 = ok). On STORE_ERR_INTERNAL a
 * message is logged by the backend (never containing secrets). */
#ifndef BYOK_STORE_H
#define BYOK_STORE_H

#include "common.h"
#include "crypto.h"
#include "provider.h"
#include "usage_record.h"

#include <jansson.h>

struct config;

enum store_status {
    STORE_OK = 0,
    STORE_ERR_NOT_FOUND,
    STORE_ERR_EXISTS,
    STORE_ERR_CONFLICT, /* e.g. deleting a tenant that still has subaccounts */
    STORE_ERR_INTERNAL,
    STORE_ERR_UNSUPPORTED, /* an optional operation this backend does not have */
};

struct store_tenant {
    char id[ID_MAX];
    char name[256];
    bool feature_byok;
    bool feature_agency;
    char parent_id[ID_MAX]; /* "" = none */
    bool wallet_deduction;
    int64_t plan_credits_micros;
    int64_t wallet_micros;
    /* limits.live_sessions (DESIGN §6): WebSocket sessions and streaming
     * responses open at once; 0 = no limit. */
    int64_t live_sessions;
    int64_t created_at_ms;
    int64_t updated_at_ms;
};

struct store_key {
    char id[ID_MAX];
    char tenant_id[ID_MAX];
    char label[128];
    unsigned char hash[32]; /* keyed hash of the whole key (crypto_key_hash) */
    int64_t created_at_ms;
    int64_t revoked_at_ms; /* 0 = active */
    int64_t last_used_ms;  /* not maintained on the hot path; 0 */
};

/* A tenant's stored provider credential (DESIGN §2). The secret is only
 * ever held sealed here (crypto_seal); key_hint is its last 4 characters. */
struct store_connection {
    char id[ID_MAX]; /* "c_" + ULID */
    char tenant_id[ID_MAX];
    const struct provider *provider; /* a slot (provider.h) */
    char name[128];
    char region[32]; /* providers with regional keys: short region; "" otherwise */
    char key_hint[8];
    int key_version; /* master key version it is sealed under */
    unsigned char sealed[CRYPTO_SEALED_MAX];
    size_t sealed_len;
    int64_t created_at_ms;
    int64_t updated_at_ms;
};

/* BYOK settings of a tenant: master toggle + per slot the connection id
 * ("" = none). Indexed by slot number (provider_slot_index). */
struct store_byok {
    bool enabled;
    char slots[PROVIDER_SLOT_MAX][ID_MAX];
    int64_t updated_at_ms;
};

struct store_ops;

struct store {
    const struct store_ops *ops;
};

/* One process per store (DESIGN §7). The SQLite backend takes an exclusive
 * flock(2) on "<path>.lock" next to the database (never on the database file:
 * SQLite's own POSIX locks live there) and writes the holder's pid in it;
 * the kernel drops it when the process ends, kill -9 included. It also
 * creates the database file (mode 0600; SQLite gives its -wal and -shm the
 * same mode) when there is none, so call it before the process's first
 * store_open(): once a connection exists, nothing but SQLite may open or
 * close the file (a close drops every POSIX lock the process holds on it).
 * A backend shared by a fleet (Redis) takes no lock: *out = NULL. -1 with
 * *err set (caller frees) when another process holds the store (naming its
 * pid when known) or the lock file cannot be made. Caller releases with
 * store_unlock() after its last store_close(). */
struct store_lock;
MUST_CHECK int store_lock(const struct config *cfg, struct store_lock **out, char **err);
/* Releases the lock and frees l. store_unlock(NULL) is a no-op. */
void store_unlock(struct store_lock *l);

/* Who opens a handle. The Redis backend serves the control side (admin
 * API, usage writer, tools such as --import-sqlite and
 * --rotate-master-key) through this synchronous interface; the data plane's
 * per-request path in fleet mode goes through each worker's asynchronous
 * Redis client instead (store_redis.h has its building blocks), so a data
 * plane open of a "redis" store is refused. SQLite serves both. */
enum store_role {
    STORE_ROLE_DATA_PLANE = 0,
    STORE_ROLE_CONTROL,
};

/* Opens a handle for the calling thread (creating/migrating the schema on
 * first use for SQLite; connecting for Redis). Returns NULL with *err set
 * (caller frees) on failure. Caller frees with store_close().
 * store_open() is store_open_role(cfg, STORE_ROLE_DATA_PLANE, err). */
MUST_CHECK struct store *store_open(const struct config *cfg, char **err);
MUST_CHECK struct store *store_open_role(const struct config *cfg, enum store_role role,
                                         char **err);
void store_close(struct store *s);

/* Readiness: can the backend answer a trivial query now? */
MUST_CHECK int store_ping(struct store *s);

MUST_CHECK int store_tenant_create(struct store *s, const struct store_tenant *t);
MUST_CHECK int store_tenant_get(struct store *s, const char *id, struct store_tenant *out);
/* Replaces the mutable fields (name, features, parent_id, wallet_deduction,
 * live_sessions) of an existing tenant; balances are only changed by topup and charging. */
MUST_CHECK int store_tenant_update(struct store *s, const struct store_tenant *t);
/* Deletes the tenant and its keys. STORE_ERR_CONFLICT while subaccounts
 * point at it. Usage records are kept. */
MUST_CHECK int store_tenant_delete(struct store *s, const char *id);
/* Adds to the balances atomically; *out gets the tenant after the change. */
MUST_CHECK int store_tenant_topup(struct store *s, const char *id, int64_t wallet_micros,
                                  int64_t plan_credits_micros, struct store_tenant *out);
/* Calls cb for every tenant (ordered by id). */
typedef void (*store_tenant_cb)(void *arg, const struct store_tenant *t);
MUST_CHECK int store_tenant_list(struct store *s, store_tenant_cb cb, void *arg);

MUST_CHECK int store_key_create(struct store *s, const struct store_key *k);
/* Active and revoked keys of a tenant, ordered by creation. */
typedef void (*store_key_cb)(void *arg, const struct store_key *k);
MUST_CHECK int store_key_list(struct store *s, const char *tenant_id, store_key_cb cb, void *arg);
/* Sets revoked_at; STORE_ERR_NOT_FOUND when the key is not the tenant's. */
MUST_CHECK int store_key_revoke(struct store *s, const char *tenant_id, const char *key_id);
/* Looks a key up by id (the id is embedded in the key, see crypto.h). The
 * caller compares the hash in constant time and checks revoked_at_ms. */
MUST_CHECK int store_key_get(struct store *s, const char *key_id, struct store_key *out);

/* Connections. create: STORE_ERR_NOT_FOUND when the tenant does not exist.
 * get: only the tenant's own (another tenant's id is NOT_FOUND). update
 * replaces name, region, key_hint, key_version and sealed of an existing
 * connection (rotate / rename). delete also clears every BYOK slot (of any
 * tenant) that selected it. */
MUST_CHECK int store_connection_create(struct store *s, const struct store_connection *c);
MUST_CHECK int store_connection_get(struct store *s, const char *tenant_id, const char *id,
                                    struct store_connection *out);
MUST_CHECK int store_connection_update(struct store *s, const struct store_connection *c);
MUST_CHECK int store_connection_delete(struct store *s, const char *tenant_id, const char *id);
/* Connections of one tenant (tenant_id non-NULL) or of all tenants (NULL),
 * ordered by creation. */
typedef void (*store_connection_cb)(void *arg, const struct store_connection *c);
MUST_CHECK int store_connection_list(struct store *s, const char *tenant_id, store_connection_cb cb,
                                     void *arg);

/* BYOK settings; a tenant without a row reads as disabled with empty slots
 * (STORE_OK). put: STORE_ERR_NOT_FOUND when the tenant does not exist. */
MUST_CHECK int store_byok_get(struct store *s, const char *tenant_id, struct store_byok *out);
MUST_CHECK int store_byok_put(struct store *s, const char *tenant_id, const struct store_byok *b);

/* Named sealed secrets of the proxy itself (the proxy-key hashing key).
 * get: STORE_ERR_NOT_FOUND when absent. */
MUST_CHECK int store_secret_get(struct store *s, const char *name, int *key_version,
                                unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len);
MUST_CHECK int store_secret_put(struct store *s, const char *name, int key_version,
                                const unsigned char *sealed, size_t sealed_len);
/* Calls cb for every secret, ordered by name (the sealed bytes borrowed for
 * the call). */
typedef void (*store_secret_cb)(void *arg, const char *name, int key_version,
                                const unsigned char *sealed, size_t sealed_len);
MUST_CHECK int store_secret_list(struct store *s, store_secret_cb cb, void *arg);

/* Re-seals, in ONE transaction, every connection and secret: fn(arg, ...)
 * gets each record and must write its new sealed form and version; any -1
 * from fn rolls everything back. *count gets the number re-sealed. */
typedef int (*store_reseal_fn)(void *arg, const char *tenant_id, const char *id,
                               const unsigned char *sealed, size_t sealed_len, int version,
                               unsigned char out[CRYPTO_SEALED_MAX], size_t *out_len,
                               int *out_version);
MUST_CHECK int store_reseal_all(struct store *s, store_reseal_fn fn, void *arg, size_t *count);

/* Inserts the records and charges wallet lines, all in one transaction,
 * by the policy of charge.h (plan credits first, then the wallet, which may
 * go negative; a payer that no longer exists leaves its records uncharged).
 * Idempotent on record id: a record whose id exists is skipped (counted in
 * *duplicates), charges nothing, and keeps its charged_* fields exactly as
 * passed in. Every record written gets what it was charged in charged_*,
 * and its §5 JSON text, formatted once after charging, is both what the
 * row stores and what is appended to *lines (when not NULL; borrowed for the
 * call): one line per record written, in batch order, none for a duplicate,
 * ready for the JSONL sink. On failure every record is left as passed in.
 * SQLite commits nothing of a failed batch and leaves *lines as it was.
 * Redis commits record by record (each one atomic: hold, charge, record,
 * stream), so a failed batch may be partly committed: *lines then gets
 * the lines of the records that were (batch order), and the caller retries
 * or spools the whole batch as if nothing had been - the committed ones
 * come back as duplicates, charged once (the id is the idempotency key). */
MUST_CHECK int store_usage_write(struct store *s, struct usage_record *records, size_t n,
                                 size_t *duplicates, struct usage_record_lines *lines);
/* For the JSONL repair at writer start (usage.c): appends to *lines
 * (borrowed for the call) the line of each of up to max records committed
 * after the record after_id, in commit order: its stored §5 text, exactly
 * what store_usage_write() gave the JSONL sink, and '\n'. *count gets the
 * number appended; last_id (ID_MAX bytes, caller's) the id of the last one,
 * the after_id of the next page (untouched when *count is 0). Fewer than
 * max means there are no more. STORE_ERR_NOT_FOUND when after_id is not in
 * the store; STORE_ERR_UNSUPPORTED when the backend keeps no commit order
 * to ask (Redis: the JSONL file is best effort in fleet mode). On any error
 * *lines is left as it was and *count is 0. */
MUST_CHECK int store_usage_after(struct store *s, const char *after_id, size_t max,
                                 struct usage_record_lines *lines, size_t *count, char *last_id);
/* Newest first. tenant_id/session_id NULL = any. Returns a JSON array of
 * record objects (usage_record_to_json shape); caller owns *out. */
MUST_CHECK int store_usage_query(struct store *s, const char *tenant_id, const char *session_id,
                                 int limit, json_t **out);

/* Backend vtable. */
struct store_ops {
    const char *name;
    void (*close)(struct store *s);
    int (*ping)(struct store *s);
    int (*tenant_create)(struct store *s, const struct store_tenant *t);
    int (*tenant_get)(struct store *s, const char *id, struct store_tenant *out);
    int (*tenant_update)(struct store *s, const struct store_tenant *t);
    int (*tenant_delete)(struct store *s, const char *id);
    int (*tenant_topup)(struct store *s, const char *id, int64_t wallet, int64_t plan,
                        struct store_tenant *out);
    int (*tenant_list)(struct store *s, store_tenant_cb cb, void *arg);
    int (*key_create)(struct store *s, const struct store_key *k);
    int (*key_list)(struct store *s, const char *tenant_id, store_key_cb cb, void *arg);
    int (*key_revoke)(struct store *s, const char *tenant_id, const char *key_id);
    int (*key_get)(struct store *s, const char *key_id, struct store_key *out);
    int (*usage_write)(struct store *s, struct usage_record *records, size_t n, size_t *duplicates,
                       struct usage_record_lines *lines);
    int (*usage_query)(struct store *s, const char *tenant_id, const char *session_id, int limit,
                       json_t **out);
    /* Optional: NULL = STORE_ERR_UNSUPPORTED. */
    int (*usage_after)(struct store *s, const char *after_id, size_t max,
                       struct usage_record_lines *lines, size_t *count, char *last_id);
    int (*connection_create)(struct store *s, const struct store_connection *c);
    int (*connection_get)(struct store *s, const char *tenant_id, const char *id,
                          struct store_connection *out);
    int (*connection_update)(struct store *s, const struct store_connection *c);
    int (*connection_delete)(struct store *s, const char *tenant_id, const char *id);
    int (*connection_list)(struct store *s, const char *tenant_id, store_connection_cb cb,
                           void *arg);
    int (*byok_get)(struct store *s, const char *tenant_id, struct store_byok *out);
    int (*byok_put)(struct store *s, const char *tenant_id, const struct store_byok *b);
    int (*secret_get)(struct store *s, const char *name, int *key_version,
                      unsigned char sealed[CRYPTO_SEALED_MAX], size_t *sealed_len);
    int (*secret_put)(struct store *s, const char *name, int key_version,
                      const unsigned char *sealed, size_t sealed_len);
    int (*secret_list)(struct store *s, store_secret_cb cb, void *arg);
    int (*reseal_all)(struct store *s, store_reseal_fn fn, void *arg, size_t *count);
};

/* SQLite backend constructor (store_sqlite.c). Never opens the file itself:
 * a missing file is created by SQLite with the default mode, so the proxy
 * creates it first (store_lock). */
MUST_CHECK struct store *store_sqlite_open(const char *path, char **err);
/* SQLite backend's store_lock() (store_sqlite.c). */
MUST_CHECK int store_sqlite_lock(const char *path, struct store_lock **out, char **err);
void store_sqlite_unlock(struct store_lock *l);

/* Global generation number: bumped by every admin write that changes what
 * the data plane resolves (tenants, keys); workers drop their caches when it
 * moved. */
uint64_t store_generation(void);
void store_generation_bump(void);

#endif
