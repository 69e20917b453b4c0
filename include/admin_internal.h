/* admin_internal.h - what the admin API's modules share: admin.c (tenants,
 * keys, usage, health, dispatch) and admin_byok.c (connections, BYOK
 * settings, resolution explain, Check Status). Not a public interface. */
#ifndef BYOK_ADMIN_INTERNAL_H
#define BYOK_ADMIN_INTERNAL_H

#include "common.h"
#include "admin.h"
#include "check.h"
#include "store.h"
#include "upstream.h"

#include <jansson.h>

#define ADMIN_MAX_SEGMENTS  8
#define ADMIN_MAX_PARAMS    2
#define USAGE_LIMIT_DEFAULT 100
#define USAGE_LIMIT_MAX     1000
/* Largest balance or top-up accepted: $1e9. Keeps balance arithmetic far
 * from int64 overflow however many top-ups are applied. */
#define BALANCE_MAX INT64_C(1000000000000000)

struct admin {
    const struct config *cfg;
    struct store *store;
    /* SHA-256 of the admin token. Only the digest is kept: comparing digests
     * in constant time does not leak the token's length either. */
    unsigned char token_hash[32];
    /* Check Status transfers run on the admin thread's own event base;
     * created on the first check, freed by admin_free(). */
    struct upstream_pool *pool;
    struct admin_check *checks; /* checks in flight (their clients wait) */
};

/* A Check Status request answered later, when its calls finished. */
struct admin_check {
    struct admin *a;
    struct http_conn *c;
    struct check_run *run;
    struct admin_check *prev, *next;
    char method[16];
    char path_log[160];
};

/* One request being handled. Handlers either answer with admin_reply_json() or
 * record an error with admin_fail(); the dispatcher sends that error. */
struct admin_ctx {
    struct admin *a;
    struct http_conn *c;
    struct http_request *req;
    char method[16];
    char path_log[160]; /* log_safe()'d path, for the one log line */
    bool responded;
    int err_status;
    char err_code[32];
    char err_msg[512];
    char params[ADMIN_MAX_PARAMS][ID_MAX]; /* ids captured from the path */
    /* The body may carry a provider key: parse errors must not quote it. */
    bool secret_body;
};

/* Records the error to send (first one wins) and returns -1, so validation
 * helpers can be chained with ||. */
int admin_fail(struct admin_ctx *x, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
#define bad_request(x, ...) admin_fail((x), 400, "invalid_request", __VA_ARGS__)

/* Helpers of admin.c: replies (x is borrowed; body: takes ownership),
 * errors, JSON body parsing and field checks that record an admin_fail(). */
void admin_reply_json(struct admin_ctx *x, int status, json_t *body, const struct http_kv *extra,
                      size_t n_extra);
int admin_store_fail(struct admin_ctx *x, int rc, const char *what);
bool admin_valid_id(const char *s, size_t len);
json_t *admin_time_json(int64_t ms);
json_t *admin_byok_json(const struct store_byok *b);
int admin_read_body(struct admin_ctx *x, bool required, json_t **out);
int admin_check_fields(struct admin_ctx *x, json_t *obj, const char *prefix,
                       const char *const *allowed, size_t n);
int admin_get_bool(struct admin_ctx *x, json_t *obj, const char *name, bool *out, bool *present);
int admin_get_text(struct admin_ctx *x, json_t *obj, const char *name, char *out, size_t size,
                   bool *present);
int admin_load_tenant(struct admin_ctx *x, struct store_tenant *t);
int admin_query_decode(const char *s, size_t len, char *out, size_t out_size);
/* Handlers of admin_byok.c, dispatched from admin.c's route table. */
void admin_conn_create(struct admin_ctx *x);
void admin_conn_list(struct admin_ctx *x);
void admin_conn_get(struct admin_ctx *x);
void admin_conn_patch(struct admin_ctx *x);
void admin_conn_delete(struct admin_ctx *x);
void admin_byok_get(struct admin_ctx *x);
void admin_byok_put(struct admin_ctx *x);
void admin_resolve(struct admin_ctx *x);
/* Detaches a Check Status in flight from its admin (admin_free). */
void admin_check_unlink(struct admin_check *ac);
void admin_byok_check(struct admin_ctx *x);

#endif
