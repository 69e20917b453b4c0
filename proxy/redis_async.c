/* redis_async.c - a non-blocking Redis connection on an event base
 * (redis_async.h).
 *
 *   DOWN --connect--> CONNECTING --connected--> UP --error/timeout--> DOWN
 *     ^                     |                                          |
 *     +---- backoff timer --+------------------------------------------+
 *
 * Every queued request is on r->pending in send order; hiredis answers in
 * that order, so the head is the oldest: one timer at its deadline is
 * enough. Dropping the connection (redisAsyncFree) makes hiredis call every
 * pending callback with no reply.
 *
 * Commands queued during one turn of the event loop are written together at
 * its end (flush_ev, made active at the first): one write for all of them,
 * and no write event armed and disarmed per command, nor the loop turn it
 * would take to fire. */
#include "common.h"
#include "redis_async.h"

#include <hiredis/async.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum rstate { R_DOWN = 0, R_CONNECTING, R_UP };

struct rasync_req {
    struct rasync *r;
    struct rasync_req *prev, *next; /* in r->pending */
    rasync_cb cb;                   /* NULL once cancelled */
    void *arg;
    int64_t deadline; /* mono ms */
    /* Kept for an EVAL after NOSCRIPT: the script and a copy of argv (in
     * the same allocation as the request). */
    const struct redis_script *script;
    int numkeys, argc;
    char **argv;
    size_t *argvlen;
    bool retried;
};

/* Arguments of a command sent without allocating (more: allocated). */
#define SEND_ARGS_STACK 48

struct rasync {
    struct event_base *base;
    struct rasync_opts o;
    char *host, *password, *name;
    redisAsyncContext *ac;
    enum rstate state;
    bool was_up;    /* for one log line per change */
    bool announced; /* the current down period was logged */
    int backoff_ms;
    struct event *retry_timer;
    struct event *deadline_timer;
    struct event *flush_ev; /* active when commands wait for this turn's end */
    struct rasync_req *head, *tail;
};

/* Connections of this process that are not up (rasync_all_up). */
static atomic_int not_up;

static void set_state(struct rasync *r, enum rstate s)
{
    if ((r->state == R_UP) != (s == R_UP))
        atomic_fetch_add_explicit(&not_up, s == R_UP ? -1 : 1, memory_order_relaxed);
    r->state = s;
}

static void unlink_req(struct rasync *r, struct rasync_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else if (r->head == q)
        r->head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else if (r->tail == q)
        r->tail = q->prev;
    q->prev = q->next = NULL;
}

static void free_req(struct rasync_req *q)
{
    free(q);
}

static void arm_deadline(struct rasync *r)
{
    if (r->head == NULL) {
        evtimer_del(r->deadline_timer);
        return;
    }
    int64_t left = MAX((int64_t)1, r->head->deadline - mono_ms());
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    evtimer_add(r->deadline_timer, &tv);
}

static void schedule_retry(struct rasync *r)
{
    struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
    evtimer_add(r->retry_timer, &tv);
    r->backoff_ms = MIN(r->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void went_down(struct rasync *r, const char *why)
{
    set_state(r, R_DOWN);
    r->ac = NULL;
    if (r->was_up || !r->announced)
        log_warn("redis (%s): %s:%d is down: %s; reconnecting", r->name, r->host, r->o.port, why);
    r->was_up = false;
    r->announced = true;
    schedule_retry(r);
}

static int send_req(struct rasync *r, struct rasync_req *q);

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    struct rasync_req *q = privdata;
    struct rasync *r = q->r;
    redisReply *reply = reply_;
    unlink_req(r, q);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && q->script != NULL && !q->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && r->state == R_UP) {
        /* The server forgot the script (restart, SCRIPT FLUSH): the text
         * once more, as EVAL; the server caches it again. */
        q->retried = true;
        if (send_req(r, q) == 0) {
            arm_deadline(r);
            return;
        }
        reply = NULL;
    }
    if (q->cb != NULL)
        q->cb(q->arg, reply);
    free_req(q);
    arm_deadline(r);
}

static void on_auth(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    struct rasync *r = privdata;
    redisReply *reply = reply_;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        log_error("redis (%s): setting the connection up (AUTH, SELECT, SCRIPT LOAD) failed: %s",
                  r->name, reply->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rasync *r = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        went_down(r, ac->errstr);
        return;
    }
    set_state(r, R_UP);
    r->backoff_ms = BACKOFF_MIN_MS;
    if (!r->was_up)
        log_info("redis (%s): connected to %s:%d", r->name, r->host, r->o.port);
    r->was_up = true;
    r->announced = false;
    if (r->o.on_up != NULL)
        r->o.on_up(r->o.on_up_arg);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rasync *r = ac->data;
    if (r == NULL)
        return; /* rasync_free */
    went_down(r, status == REDIS_OK ? "connection closed" : ac->errstr);
}

/* hiredis's event hooks on the base (what its libevent adapter does), with
 * persistent events and their state kept here: hiredis asks to read again
 * after every read, and a non-persistent event deleted as it fires and
 * added back costs an epoll_ctl each time; this costs nothing when nothing
 * changes. */
struct hiredis_hooks {
    redisAsyncContext *ac;
    struct event *rev, *wev;
    bool reading, writing;
};

static void hook_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleRead(((struct hiredis_hooks *)arg)->ac);
}

static void hook_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleWrite(((struct hiredis_hooks *)arg)->ac);
}

/* Arms or disarms ev, tracked in *armed: no call when nothing changes. */
static void hook_arm(struct event *ev, bool *armed, bool on)
{
    if (on == *armed)
        return;
    if (on && event_add(ev, NULL) == -1)
        return;
    if (!on)
        event_del(ev);
    *armed = on;
}

static void hook_add_read(void *arg)
{
    struct hiredis_hooks *h = arg;
    hook_arm(h->rev, &h->reading, true);
}

static void hook_del_read(void *arg)
{
    struct hiredis_hooks *h = arg;
    hook_arm(h->rev, &h->reading, false);
}

static void hook_add_write(void *arg)
{
    struct hiredis_hooks *h = arg;
    hook_arm(h->wev, &h->writing, true);
}

static void hook_del_write(void *arg)
{
    struct hiredis_hooks *h = arg;
    hook_arm(h->wev, &h->writing, false);
}

static void hook_cleanup(void *arg)
{
    struct hiredis_hooks *h = arg;
    event_free(h->rev);
    event_free(h->wev);
    free(h);
}

/* Reads and writes watched from the start, as hiredis's adapter does (the
 * write event sees the connect complete). */
static int hooks_attach(redisAsyncContext *ac, struct event_base *base)
{
    struct hiredis_hooks *h = calloc(1, sizeof(*h));
    if (h == NULL || ac->ev.data != NULL) {
        free(h);
        return -1;
    }
    h->ac = ac;
    h->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, hook_read_cb, h);
    h->wev = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, hook_write_cb, h);
    if (h->rev == NULL || h->wev == NULL) {
        if (h->rev != NULL)
            event_free(h->rev);
        if (h->wev != NULL)
            event_free(h->wev);
        free(h);
        return -1;
    }
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    ac->ev.data = h;
    hook_add_read(h);
    hook_add_write(h);
    return 0;
}

static void connect_now(struct rasync *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->o.port);
    if (ac == NULL) {
        went_down(r, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(r, why);
        return;
    }
    ac->data = r;
    if (hooks_attach(ac, r->base) == -1) {
        redisAsyncFree(ac);
        went_down(r, "cannot attach to the event base");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    set_state(r, R_CONNECTING);
    /* Queued now, sent first once connected. */
    if (r->password != NULL)
        redisAsyncCommand(ac, on_auth, r, "AUTH %s", r->password);
    if (r->o.db > 0)
        redisAsyncCommand(ac, on_auth, r, "SELECT %d", r->o.db);
    for (size_t i = 0; i < r->o.n_scripts; i++)
        redisAsyncCommand(ac, on_auth, r, "SCRIPT LOAD %s", r->o.scripts[i]->text);
}

/* The end of the loop turn in which commands were queued: hiredis writes
 * them all now (what its write event would do one turn later). A write
 * that does not finish leaves hiredis's write event armed. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rasync *r = arg;
    if (r->state == R_UP && r->ac != NULL)
        redisAsyncHandleWrite(r->ac);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

/* The oldest request is late: the connection is dropped (every pending
 * request gets no reply) and made again. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rasync *r = arg;
    if (r->head == NULL || r->head->deadline > mono_ms()) {
        arm_deadline(r);
        return;
    }
    redisAsyncContext *ac = r->ac;
    if (ac == NULL)
        return;
    log_warn("redis (%s): no reply within %d ms: dropping the connection", r->name,
             r->o.timeout_ms);
    r->was_up = true; /* the down line follows */
    ac->data = NULL;  /* no disconnect callback into a half-torn state */
    redisAsyncFree(ac);
    went_down(r, "timeout");
}

struct rasync *rasync_new(struct event_base *base, const struct rasync_opts *opts)
{
    struct rasync *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    atomic_fetch_add_explicit(&not_up, 1, memory_order_relaxed); /* R_DOWN */
    r->base = base;
    r->o = *opts;
    r->host = strdup(opts->host);
    r->name = strdup(opts->name != NULL ? opts->name : "redis");
    r->password = opts->password != NULL ? strdup(opts->password) : NULL;
    r->retry_timer = evtimer_new(base, retry_cb, r);
    r->deadline_timer = evtimer_new(base, deadline_cb, r);
    r->flush_ev = event_new(base, -1, 0, flush_cb, r);
    r->backoff_ms = BACKOFF_MIN_MS;
    if (r->host == NULL || r->name == NULL || (opts->password != NULL && r->password == NULL) ||
        r->retry_timer == NULL || r->deadline_timer == NULL || r->flush_ev == NULL) {
        rasync_free(r);
        return NULL;
    }
    if (r->o.timeout_ms <= 0)
        r->o.timeout_ms = 1000;
    connect_now(r);
    return r;
}

void rasync_free(struct rasync *r)
{
    if (r == NULL)
        return;
    for (struct rasync_req *q = r->head; q != NULL; q = q->next)
        q->cb = NULL;
    if (r->ac != NULL) {
        r->ac->data = NULL;
        redisAsyncFree(r->ac); /* on_reply frees every pending request */
    }
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    if (r->deadline_timer != NULL)
        event_free(r->deadline_timer);
    if (r->flush_ev != NULL)
        event_free(r->flush_ev);
    if (r->state != R_UP)
        atomic_fetch_sub_explicit(&not_up, 1, memory_order_relaxed);
    if (r->password != NULL)
        memset(r->password, 0, strlen(r->password));
    free(r->password);
    free(r->host);
    free(r->name);
    free(r);
}

bool rasync_up(const struct rasync *r)
{
    return r->state == R_UP;
}

bool rasync_all_up(void)
{
    return atomic_load_explicit(&not_up, memory_order_relaxed) == 0;
}

static int send_req(struct rasync *r, struct rasync_req *q)
{
    int rc;
    if (q->script == NULL) {
        rc = redisAsyncCommandArgv(r->ac, on_reply, q, q->argc, (const char **)q->argv, q->argvlen);
    } else {
        /* EVALSHA sha numkeys ... (or EVAL text numkeys ... after NOSCRIPT) */
        int n = q->argc + 3;
        const char *v_stack[SEND_ARGS_STACK];
        size_t vl_stack[SEND_ARGS_STACK];
        const char **v = v_stack;
        size_t *vl = vl_stack;
        char nk[24];
        if (n > SEND_ARGS_STACK) {
            v = malloc((size_t)n * sizeof(*v));
            vl = malloc((size_t)n * sizeof(*vl));
            if (v == NULL || vl == NULL) {
                free(v);
                free(vl);
                return -1;
            }
        }
        v[0] = q->retried ? "EVAL" : "EVALSHA";
        vl[0] = strlen(v[0]);
        v[1] = q->retried ? q->script->text : q->script->sha;
        vl[1] = strlen(v[1]);
        v[2] = nk;
        vl[2] = fmt_u64(nk, (uint64_t)MAX(q->numkeys, 0));
        for (int i = 0; i < q->argc; i++) {
            v[3 + i] = q->argv[i];
            vl[3 + i] = q->argvlen[i];
        }
        rc = redisAsyncCommandArgv(r->ac, on_reply, q, n, v, vl);
        if (v != v_stack) {
            free(v);
            free(vl);
        }
    }
    if (rc != REDIS_OK)
        return -1;
    q->deadline = mono_ms() + r->o.timeout_ms;
    q->prev = r->tail;
    if (r->tail != NULL)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    event_active(r->flush_ev, EV_TIMEOUT, 1);
    return 0;
}

/* The request and its copy of argv in one allocation: the struct, argc
 * pointers, argc lengths, then the NUL-terminated texts. */
static struct rasync_req *queue(struct rasync *r, const struct redis_script *script, int numkeys,
                                rasync_cb cb, void *arg, int argc, const char **argv,
                                const size_t *argvlen)
{
    if (r->state != R_UP || r->ac == NULL || argc < 0)
        return NULL;
    size_t head = sizeof(struct rasync_req) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    size_t total = head;
    for (int i = 0; i < argc; i++)
        total += (argvlen != NULL ? argvlen[i] : strlen(argv[i])) + 1;
    struct rasync_req *q = malloc(total);
    if (q == NULL)
        return NULL;
    memset(q, 0, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->script = script;
    q->numkeys = numkeys;
    q->argc = argc;
    q->argv = (char **)(q + 1);
    q->argvlen = (size_t *)(q->argv + argc);
    char *text = (char *)q + head;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        memcpy(text, argv[i], n);
        text[n] = '\0';
        q->argv[i] = text;
        q->argvlen[i] = n;
        text += n + 1;
    }
    if (send_req(r, q) == -1) {
        free_req(q);
        return NULL;
    }
    arm_deadline(r);
    return q;
}

struct rasync_req *rasync_command(struct rasync *r, rasync_cb cb, void *arg, int argc,
                                  const char **argv, const size_t *argvlen)
{
    return queue(r, NULL, 0, cb, arg, argc, argv, argvlen);
}

struct rasync_req *rasync_eval(struct rasync *r, const struct redis_script *script, rasync_cb cb,
                               void *arg, int numkeys, int argc, const char **argv,
                               const size_t *argvlen)
{
    return queue(r, script, numkeys, cb, arg, argc, argv, argvlen);
}

void rasync_cancel(struct rasync_req *q)
{
    if (q != NULL)
        q->cb = NULL;
}
