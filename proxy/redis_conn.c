/* redis_conn.c - one synchronous hiredis connection with timeouts, AUTH,
 * SELECT, reconnect after failure, pipelining and EVALSHA (redis_conn.h). */
#include "common.h"
#include "redis_conn.h"
#include "secret.h"

#include <openssl/evp.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

struct redis_conn {
    redisContext *ctx; /* NULL after a failure until the next call reconnects */
    char *host;
    int port, db;
    char *password; /* secret_alloc() memory; NULL = no AUTH */
    int connect_timeout_ms, timeout_ms;
    char name[300]; /* "host:port" */
    bool was_connected;
    bool stale; /* answered READONLY (a primary turned replica): reconnect before the next call */
    unsigned long pending; /* commands queued whose replies were not read */
};

static _Atomic uint64_t reconnects;

void redis_script_init(struct redis_script *sc)
{
    if (sc->sha[0] != '\0')
        return;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    char hex[41];
    if (EVP_Digest(sc->text, strlen(sc->text), d, &dl, EVP_sha1(), NULL) != 1 || dl != 20) {
        /* EVALSHA then fails with NOSCRIPT and the script is loaded under
         * the name Redis gives it: slower, still correct. */
        log_error("redis: SHA-1 unavailable for script %s", sc->name);
        return;
    }
    for (unsigned i = 0; i < dl; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    memcpy(sc->sha, hex, sizeof(sc->sha));
}

/* --- commands ------------------------------------------------------------ */

void redis_cmd_start(struct redis_cmd *cmd)
{
    cmd->len = 0;
    cmd->argc = 0;
    cmd->oom = false;
}

void redis_cmd_free(struct redis_cmd *cmd)
{
    free(cmd->buf);
    free(cmd->off);
    free(cmd->arg_len);
    memset(cmd, 0, sizeof(*cmd));
}

int redis_cmd_add(struct redis_cmd *cmd, const void *p, size_t n)
{
    if (cmd->oom)
        return -1;
    if (cmd->argc == cmd->args_cap) {
        int cap = cmd->args_cap ? cmd->args_cap * 2 : 16;
        size_t *off = realloc(cmd->off, (size_t)cap * sizeof(*off));
        if (off != NULL)
            cmd->off = off;
        size_t *lens = off != NULL ? realloc(cmd->arg_len, (size_t)cap * sizeof(*lens)) : NULL;
        if (lens == NULL)
            goto oom;
        cmd->arg_len = lens;
        cmd->args_cap = cap;
    }
    if (cmd->cap - cmd->len < n + 1) {
        size_t cap = MAX(cmd->cap * 2, cmd->len + n + 256);
        char *buf = realloc(cmd->buf, cap);
        if (buf == NULL)
            goto oom;
        cmd->buf = buf;
        cmd->cap = cap;
    }
    if (n > 0)
        memcpy(cmd->buf + cmd->len, p, n);
    cmd->off[cmd->argc] = cmd->len;
    cmd->arg_len[cmd->argc] = n;
    cmd->argc++;
    cmd->len += n;
    return 0;
oom:
    cmd->oom = true;
    return -1;
}

int redis_cmd_str(struct redis_cmd *cmd, const char *s)
{
    return redis_cmd_add(cmd, s, strlen(s));
}

int redis_cmd_fmt(struct redis_cmd *cmd, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        cmd->oom = true;
        return -1;
    }
    if ((size_t)n < sizeof(small))
        return redis_cmd_add(cmd, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        cmd->oom = true;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = redis_cmd_add(cmd, big, (size_t)n);
    free(big);
    return rc;
}

int redis_cmd_i64(struct redis_cmd *cmd, int64_t v)
{
    return redis_cmd_fmt(cmd, "%" PRId64, v);
}

void redis_cmd_evalsha(struct redis_cmd *cmd, const struct redis_script *sc, int nkeys)
{
    redis_cmd_start(cmd);
    redis_cmd_str(cmd, "EVALSHA");
    redis_cmd_str(cmd, sc->sha[0] != '\0' ? sc->sha : "0");
    redis_cmd_fmt(cmd, "%d", nkeys);
}

/* --- the connection ------------------------------------------------------ */

const char *redis_conn_name(const struct redis_conn *c)
{
    return c->name;
}

uint64_t redis_conn_reconnects(void)
{
    return atomic_load_explicit(&reconnects, memory_order_relaxed);
}

void redis_conn_drop(struct redis_conn *c)
{
    if (c->ctx != NULL)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->pending = 0;
}

void redis_conn_settle(struct redis_conn *c)
{
    if (c->pending == 0)
        return;
    /* Queued commands may not even be sent yet: sent later, they would run
     * (a usage record committed behind the caller's back) and their
     * replies would answer the next caller's commands. */
    log_warn("store(redis): %lu queued commands abandoned; reconnecting to %s", c->pending,
             c->name);
    redis_conn_drop(c);
}

static struct timeval tv_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* One command on a fresh context, before it is handed out. -1 with a
 * message in err. */
static int setup_call(redisContext *ctx, const char *what, int argc, const char **argv, char *err,
                      size_t err_size)
{
    size_t lens[3];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(ctx, argc, argv, lens);
    if (r == NULL) {
        snprintf(err, err_size, "%s failed: %s", what, ctx->errstr);
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        /* Redis's own message (it never repeats the password). */
        snprintf(err, err_size, "%s refused: %.*s", what, (int)MIN(r->len, 160), r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* Connects, authenticates and selects the database. -1 with a message in
 * err (no secret in it). */
static int connect_now(struct redis_conn *c, char *err, size_t err_size)
{
    redis_conn_drop(c);
    redisContext *ctx = redisConnectWithTimeout(c->host, c->port, tv_ms(c->connect_timeout_ms));
    if (ctx == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (ctx->err) {
        snprintf(err, err_size, "connecting failed: %s", ctx->errstr);
        goto failed;
    }
    if (redisSetTimeout(ctx, tv_ms(c->timeout_ms)) != REDIS_OK) {
        snprintf(err, err_size, "setting the timeout failed: %s", ctx->errstr);
        goto failed;
    }
    /* A dead peer behind a silent network is found without a command. */
    (void)redisEnableKeepAlive(ctx);
    if (c->password != NULL) {
        const char *argv[] = {"AUTH", c->password};
        if (setup_call(ctx, "AUTH", 2, argv, err, err_size) == -1)
            goto failed;
    }
    if (c->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->db);
        const char *argv[] = {"SELECT", db};
        if (setup_call(ctx, "SELECT", 2, argv, err, err_size) == -1)
            goto failed;
    }
    /* Something that speaks Redis, and lets us in (NOAUTH otherwise). */
    const char *ping[] = {"PING"};
    if (setup_call(ctx, "PING", 1, ping, err, err_size) == -1)
        goto failed;
    c->ctx = ctx;
    if (c->was_connected)
        atomic_fetch_add_explicit(&reconnects, 1, memory_order_relaxed);
    c->was_connected = true;
    return 0;
failed:
    redisFree(ctx);
    return -1;
}

struct redis_conn *redis_conn_new(const struct redis_conn_opts *o, char **err)
{
    *err = NULL;
    struct redis_conn *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->host = strdup(o->host)) == NULL ||
        (o->password != NULL && (c->password = secret_strdup(o->password)) == NULL)) {
        redis_conn_free(c);
        *err = strdup("out of memory connecting to Redis");
        return NULL;
    }
    c->port = o->port;
    c->db = o->db;
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 1000;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 1000;
    snprintf(c->name, sizeof(c->name), strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host,
             c->port);
    char msg[256];
    if (connect_now(c, msg, sizeof(msg)) == -1) {
        if (asprintf(err, "Redis at %s: %s", c->name, msg) == -1)
            *err = NULL;
        redis_conn_free(c);
        return NULL;
    }
    return c;
}

void redis_conn_free(struct redis_conn *c)
{
    if (c == NULL)
        return;
    redis_conn_drop(c);
    free(c->host);
    secret_free(c->password);
    free(c);
}

int redis_conn_ready(struct redis_conn *c)
{
    if (c->ctx != NULL && c->stale)
        redis_conn_drop(c); /* the name may lead to the new primary now */
    c->stale = false;
    if (c->ctx != NULL)
        return 0;
    char msg[256];
    if (connect_now(c, msg, sizeof(msg)) == -1) {
        log_error("store(redis): reconnecting to %s: %s", c->name, msg);
        return -1;
    }
    log_info("store(redis): reconnected to %s", c->name);
    return 0;
}

int redis_conn_append(struct redis_conn *c, const struct redis_cmd *cmd)
{
    if (cmd->oom || cmd->argc == 0) {
        log_error("store(redis): out of memory building a command");
        redis_conn_settle(c); /* the pipeline it belonged to is abandoned */
        return -1;
    }
    if (redis_conn_ready(c) == -1)
        return -1;
    enum { STACK_ARGS = 32 };
    const char *argv_s[STACK_ARGS];
    const char **argv = argv_s;
    if (cmd->argc > STACK_ARGS && (argv = malloc((size_t)cmd->argc * sizeof(*argv))) == NULL) {
        log_error("store(redis): out of memory building a command");
        return -1;
    }
    for (int i = 0; i < cmd->argc; i++)
        argv[i] = cmd->buf + cmd->off[i];
    int rc = redisAppendCommandArgv(c->ctx, cmd->argc, argv, cmd->arg_len);
    if (argv != argv_s)
        free(argv);
    if (rc != REDIS_OK) {
        log_error("store(redis): queueing a command for %s failed: out of memory", c->name);
        redis_conn_drop(c); /* half a command may be queued */
        return -1;
    }
    c->pending++;
    return 0;
}

redisReply *redis_conn_reply(struct redis_conn *c, const char *what)
{
    if (c->ctx == NULL) {
        log_error("store(redis): %s: the connection to %s was lost", what, c->name);
        return NULL;
    }
    void *reply = NULL;
    if (redisGetReply(c->ctx, &reply) != REDIS_OK || reply == NULL) {
        bool timeout = c->ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
        log_error("store(redis): %s at %s failed: %s", what, c->name,
                  timeout ? "no reply within store.timeout_ms" : c->ctx->errstr);
        redis_conn_drop(c);
        return NULL;
    }
    if (c->pending > 0)
        c->pending--;
    redisReply *r = reply;
    if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "READONLY", 8) == 0)
        c->stale = true;
    return reply;
}

redisReply *redis_conn_call(struct redis_conn *c, const struct redis_cmd *cmd, const char *what)
{
    redis_conn_settle(c);
    if (redis_conn_append(c, cmd) == -1)
        return NULL;
    return redis_conn_reply(c, what);
}

int redis_conn_load(struct redis_conn *c, const struct redis_script *sc)
{
    struct redis_cmd cmd = {0};
    redis_cmd_start(&cmd);
    redis_cmd_str(&cmd, "SCRIPT");
    redis_cmd_str(&cmd, "LOAD");
    redis_cmd_str(&cmd, sc->text);
    redisReply *r = redis_conn_call(c, &cmd, "SCRIPT LOAD");
    redis_cmd_free(&cmd);
    int rc = -1;
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING)
        log_error("store(redis): loading script %s into %s failed: %.*s", sc->name, c->name,
                  r->type == REDIS_REPLY_ERROR ? (int)MIN(r->len, 200) : 0,
                  r->type == REDIS_REPLY_ERROR ? r->str : "");
    else if (strlen(sc->sha) != r->len || memcmp(sc->sha, r->str, r->len) != 0)
        log_error("store(redis): script %s loaded under another SHA-1 than computed", sc->name);
    else
        rc = 0;
    freeReplyObject(r);
    return rc;
}

redisReply *redis_conn_eval(struct redis_conn *c, const struct redis_script *sc,
                            const struct redis_cmd *cmd, const char *what)
{
    redisReply *r = redis_conn_call(c, cmd, what);
    if (r == NULL || !redis_reply_noscript(r))
        return r;
    freeReplyObject(r);
    if (redis_conn_load(c, sc) == -1)
        return NULL;
    return redis_conn_call(c, cmd, what);
}

/* --- replies ------------------------------------------------------------- */

bool redis_reply_is_error(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR;
}

bool redis_reply_noscript(const redisReply *r)
{
    return redis_reply_is_error(r) && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

bool redis_reply_is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r != NULL && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
           r->len == n && memcmp(r->str, s, n) == 0;
}

const redisReply *redis_hash_get(const redisReply *r, const char *field)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    size_t n = strlen(field);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == n && memcmp(k->str, field, n) == 0)
            return r->element[i + 1];
    }
    return NULL;
}

int redis_reply_i64(const redisReply *r, int64_t *out)
{
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return -1;
    char buf[24];
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    const char *p = buf[0] == '-' ? buf + 1 : buf;
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
        return -1;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

void redis_reply_text(const redisReply *r, char *out, size_t size)
{
    size_t n = 0;
    if (r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        n = MIN(r->len, size - 1);
    if (n > 0)
        memcpy(out, r->str, n);
    out[n] = '\0';
}
