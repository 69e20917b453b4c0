/* admin_core.h - the admin API's framework, shared by its handler modules
 * (admin_tenants.c, admin_byok.c) and its dispatcher (admin.c): the admin
 * state, the per-request context, replies, errors, body parsing and field
 * checks. It calls no handler. Not a public interface. */
#ifndef BYOK_ADMIN_CORE_H
#define BYOK_ADMIN_CORE_H

#include "common.h"
#include "http.h"
#include "store.h"

#include <jansson.h>

#define ADMIN_MAX_PARAMS 2

struct config;
struct upstream_pool;
struct admin_check;

struct admin {
    const struct config *cfg;
    struct store *store;
    /* SHA-256 of the admin token. Only the digest is kept: comparing digests
     * in constant time does not leak the token's length either. */
    unsigned char token_hash[32];
    /* Check Status transfers run on the admin thread's own event base;
     * created on the first check, freed by admin_free(). */
    struct upstream_pool *pool;
    struct admin_check *checks; /* checks in flight (their clients wait); admin_byok.c */
    /* Fleet mode: a write's success is answered once this instance's
     * replica has it (follower_sync), else NULL. */
    struct follower *follower;
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

/* ---- replies: x is borrowed; each logs the request's one line ---------- */

/* The one log line of an answered request (method and path_log already
 * log_safe()'d): info for writes, debug for reads. */
void admin_log_reply(const char *method, const char *path_log, int status);
/* Takes ownership of body. Does nothing (but free body) once answered. */
void admin_reply_json(struct admin_ctx *x, int status, json_t *body, const struct http_kv *extra,
                      size_t n_extra);
/* A non-JSON body; text (len bytes) is borrowed for the call. */
void admin_reply_text(struct admin_ctx *x, int status, const char *content_type, const char *text,
                      size_t len);
/* {"error": {"code", "message"}}; code and msg are borrowed. */
void admin_reply_error(struct admin_ctx *x, int status, const char *code, const char *msg,
                       const struct http_kv *extra, size_t n_extra);
/* Wipes the raw request body in place: it may hold a provider key. */
void admin_wipe_body(struct http_request *req);

/* ---- errors ------------------------------------------------------------ */

/* Records the error to send (first one wins) and returns -1, so validation
 * helpers can be chained with ||. */
int admin_fail(struct admin_ctx *x, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
#define bad_request(x, ...) admin_fail((x), 400, "invalid_request", __VA_ARGS__)
/* Maps a store status to the error the client sees; what names the object
 * for 404 ("tenant \"t1\""). Returns -1. */
int admin_store_fail(struct admin_ctx *x, int rc, const char *what);

/* ---- values ------------------------------------------------------------ */

bool admin_valid_id(const char *s, size_t len);
/* ISO-8601 UTC with milliseconds into out: "2026-11-24T12:00:00.000Z". */
void admin_iso_time(int64_t ms, char out[32]);
/* New references (NULL when out of memory); admin_time_json(0) is null. */
json_t *admin_time_json(int64_t ms);
json_t *admin_byok_json(const struct store_byok *b);
/* Strict form decoding of a query value into out (NUL-terminated). */
MUST_CHECK int admin_query_decode(const char *s, size_t len, char *out, size_t out_size);

/* ---- request bodies: each records an admin_fail() and returns -1 -------- */

/* *out is owned by the caller (json_decref). */
int admin_read_body(struct admin_ctx *x, bool required, json_t **out);
int admin_check_fields(struct admin_ctx *x, json_t *obj, const char *prefix,
                       const char *const *allowed, size_t n);
/* Optional fields: absent or null leaves *out untouched and *present false. */
int admin_get_bool(struct admin_ctx *x, json_t *obj, const char *name, bool *out, bool *present);
int admin_get_text(struct admin_ctx *x, json_t *obj, const char *name, char *out, size_t size,
                   bool *present);
int admin_get_id(struct admin_ctx *x, json_t *obj, const char *name, char out[ID_MAX],
                 bool *present);
/* Loads the tenant named by the first path parameter; 404 if absent. */
int admin_load_tenant(struct admin_ctx *x, struct store_tenant *t);

#endif
