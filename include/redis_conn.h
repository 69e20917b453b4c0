/* redis_conn.h - one synchronous Redis connection (hiredis) for one thread:
 * connect and reconnect with timeouts, AUTH and SELECT; binary-safe commands
 * built argument by argument; pipelining (queue several, then read their
 * replies in order); Lua scripts run by EVALSHA and loaded again when Redis
 * answers NOSCRIPT.
 *
 * A connection that failed (I/O error, timeout, a reply that never came) is
 * dropped, because its stream of replies can no longer be trusted; the next
 * call connects again. So is one that answered READONLY (a primary demoted
 * by a failover), before its next command. Messages name host:port and what failed, never an
 * argument of a command (they carry sealed keys and balances) nor the
 * password. Not thread-safe: one connection per thread. */
#ifndef BYOK_REDIS_CONN_H
#define BYOK_REDIS_CONN_H

#include "common.h"

#include <hiredis/hiredis.h>

struct redis_conn_opts {
    const char *host;     /* name, IPv4 or IPv6 literal (no brackets) */
    int port;             /* 1..65535 */
    int db;               /* SELECTed after connecting when not 0 */
    const char *password; /* AUTH after connecting; NULL = none */
    int connect_timeout_ms;
    int timeout_ms; /* one reply (reads and writes) */
};

struct redis_conn;

/* A Lua script: its text and the SHA-1 EVALSHA names it by (lower-case
 * hex, computed from the text by redis_script_init()). */
struct redis_script {
    const char *name; /* for messages */
    const char *text;
    char sha[41];
};

/* Fills sc->sha. Call once before the script is used (idempotent). */
void redis_script_init(struct redis_script *sc);

/* One command's arguments, copied in (binary-safe). Start zeroed, reuse
 * with redis_cmd_start(), free with redis_cmd_free(). The add functions
 * return -1 when out of memory (the command is then unusable until the
 * next start). */
struct redis_cmd {
    char *buf; /* the arguments back to back */
    size_t len, cap;
    size_t *off, *arg_len;
    int argc, args_cap;
    bool oom;
};

void redis_cmd_start(struct redis_cmd *cmd);
void redis_cmd_free(struct redis_cmd *cmd);
int redis_cmd_add(struct redis_cmd *cmd, const void *p, size_t n);
int redis_cmd_str(struct redis_cmd *cmd, const char *s);
int redis_cmd_fmt(struct redis_cmd *cmd, const char *fmt, ...) PRINTF_LIKE(2, 3);
int redis_cmd_i64(struct redis_cmd *cmd, int64_t v);
/* Starts "EVALSHA <sha> <nkeys>"; the keys and arguments follow. */
void redis_cmd_evalsha(struct redis_cmd *cmd, const struct redis_script *sc, int nkeys);

/* Connects now (so a wrong address or password is reported at once).
 * opts is copied. NULL with *err set (caller frees) on failure. Caller
 * frees with redis_conn_free(). */
MUST_CHECK struct redis_conn *redis_conn_new(const struct redis_conn_opts *opts, char **err);
/* redis_conn_free(NULL) is a no-op. Wipes the password copy. */
void redis_conn_free(struct redis_conn *c);
/* "host:port" for messages. */
const char *redis_conn_name(const struct redis_conn *c);
/* Connected, or connects again now: -1 when that failed (logged). */
MUST_CHECK int redis_conn_ready(struct redis_conn *c);
/* Forgets the connection (after a failure); the next call reconnects. */
void redis_conn_drop(struct redis_conn *c);
/* Drops the connection when commands were queued and their replies not
 * all read (an operation that gave up half-way through its pipeline):
 * those must never run later. Called by redis_conn_call(); call it before
 * starting a pipeline. */
void redis_conn_settle(struct redis_conn *c);
/* Times the connection was made again after a drop (tests, metrics). */
uint64_t redis_conn_reconnects(void);

/* Queues cmd (copied; cmd may be reused at once). -1 when not connected
 * or out of memory (logged). */
MUST_CHECK int redis_conn_append(struct redis_conn *c, const struct redis_cmd *cmd);
/* The next reply of the queued commands, in order. NULL when the
 * connection failed (logged with `what`, connection dropped). Caller frees
 * with freeReplyObject(). */
MUST_CHECK redisReply *redis_conn_reply(struct redis_conn *c, const char *what);
/* append + reply: one round trip. */
MUST_CHECK redisReply *redis_conn_call(struct redis_conn *c, const struct redis_cmd *cmd,
                                       const char *what);
/* Runs an EVALSHA command built with redis_cmd_evalsha(sc, ...): when Redis
 * does not know the script (NOSCRIPT: restarted, failed over, SCRIPT
 * FLUSH), loads it and runs the command again once. Same reply contract
 * as redis_conn_call(). */
MUST_CHECK redisReply *redis_conn_eval(struct redis_conn *c, const struct redis_script *sc,
                                       const struct redis_cmd *cmd, const char *what);
/* SCRIPT LOAD of sc: 0, or -1 (logged). */
MUST_CHECK int redis_conn_load(struct redis_conn *c, const struct redis_script *sc);

/* Reply helpers. */
bool redis_reply_is_error(const redisReply *r);
/* A NOSCRIPT error reply. */
bool redis_reply_noscript(const redisReply *r);
/* A status or string reply equal to s. */
bool redis_reply_is(const redisReply *r, const char *s);
/* The value of field in an HGETALL reply (a flat array of field, value);
 * NULL when absent. Borrowed from r. */
const redisReply *redis_hash_get(const redisReply *r, const char *field);
/* A string (or integer) reply as int64: -1 unless it is exactly a decimal
 * integer (no spaces, no "+", no overflow). */
MUST_CHECK int redis_reply_i64(const redisReply *r, int64_t *out);
/* Copies a string reply into out (size bytes, NUL-terminated, cut when
 * longer); "" for a nil or absent one. */
void redis_reply_text(const redisReply *r, char *out, size_t size);

#endif
