/* redis_async.h - one non-blocking Redis connection on an event base (fleet
 * mode, DESIGN §7b): hiredis's async API with its libevent adapter, so a
 * worker never blocks on Redis. Adds what hiredis 0.14 lacks:
 *
 *   - a deadline per command: a reply later than timeout_ms drops the
 *     connection (every pending command is answered "no reply") and a new
 *     one is made;
 *   - reconnection with backoff (100 ms doubling to 5 s), AUTH and SELECT
 *     on every connection, before any queued command;
 *   - Lua scripts by SHA (EVALSHA), sent again as EVAL when the server does
 *     not know them (NOSCRIPT: a restarted or flushed Redis);
 *   - cancellation: a caller that goes away before the reply cancels its
 *     request, and its callback is never called;
 *   - one log line per change of state (up, down), not per command.
 *
 * Callbacks run on the base's thread, never from inside the call that
 * queued the command. Not thread-safe: one per event base. */
#ifndef BYOK_REDIS_ASYNC_H
#define BYOK_REDIS_ASYNC_H

#include "common.h"

#include "redis_conn.h" /* struct redis_script */

#include <event2/event.h>
#include <hiredis/hiredis.h>

struct rasync;
struct rasync_req;

struct rasync_opts {
    const char *host; /* IPv4/IPv6 literal or name (resolved at connect) */
    int port;
    int db;               /* SELECT db; 0 = none sent */
    const char *password; /* AUTH; NULL = none (copied) */
    int timeout_ms;       /* per command */
    const char *name;     /* for log lines, e.g. "worker 0" */
    /* Loaded (SCRIPT LOAD) on every connection before any queued command,
     * so commands keep their order: a NOSCRIPT retry would run a script
     * after the commands queued behind it. Borrowed for the rasync's life. */
    const struct redis_script *const *scripts;
    size_t n_scripts;
    /* Called on the base's thread each time the connection is up again
     * (NULL: none): commands queued from it follow AUTH/SELECT/scripts. */
    void (*on_up)(void *arg);
    void *on_up_arg;
};

/* reply: the server's answer (borrowed for the call; an error reply is a
 * REDIS_REPLY_ERROR), or NULL when none came (down, timed out, dropped). */
typedef void (*rasync_cb)(void *arg, const redisReply *reply);

/* Starts connecting; NULL only when out of memory. */
MUST_CHECK struct rasync *rasync_new(struct event_base *base, const struct rasync_opts *opts);
/* Drops the connection; pending requests are not answered (cancel them
 * first, or let them see NULL before the owner goes). */
void rasync_free(struct rasync *r);
/* True while connected (AUTH/SELECT sent). */
bool rasync_up(const struct rasync *r);
/* True when every rasync of this process is up (none: true). Any thread:
 * the admin's /readyz asks it for the workers' connections. */
bool rasync_all_up(void);

/* Queues a command (argv borrowed for the call). NULL when Redis is down
 * right now (the caller decides at once: no callback will come). */
struct rasync_req *rasync_command(struct rasync *r, rasync_cb cb, void *arg, int argc,
                                  const char **argv, const size_t *argvlen);
/* EVALSHA script numkeys keys... args... (argv = keys then args). */
struct rasync_req *rasync_eval(struct rasync *r, const struct redis_script *script, rasync_cb cb,
                               void *arg, int numkeys, int argc, const char **argv,
                               const size_t *argvlen);
/* The request's callback will not be called. */
void rasync_cancel(struct rasync_req *q);

#endif
