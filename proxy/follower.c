/* follower.c - keeps the replica current from the invalidation channel
 * (follower.h). One thread, one event base: a hiredis async connection in
 * subscribe mode, a control store handle (synchronous; this thread serves
 * no client) for the reads, timers for reconnection and for the whole
 * re-reads of a broken period. */
#include "common.h"
#include "follower.h"
#include "crypto.h"
#include "session.h"
#include "store.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define RELOAD_MS      1000 /* whole re-reads while the channel is down */

struct follower {
    const struct config *cfg;
    struct replica *rp;
    struct store *store; /* control role, this thread's */
    char host[256];
    int port;
    struct event_base *base;
    struct event *stop_ev, *retry_timer, *reload_timer;
    redisAsyncContext *ac;
    int backoff_ms;
    atomic_bool live;
    bool announced_down;
    bool subscribed; /* the subscription is confirmed (live once a re-read succeeded) */
    _Atomic uint64_t refreshes;
    pthread_t thread;
    /* follower_sync: this process's markers ("sync:<nonce>:<seq>"), and
     * the last one that came back through the channel. */
    char nonce[17];
    _Atomic uint64_t sync_next;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    uint64_t sync_seen;
    bool sync_ready;
};

/* A marker of ours came back: every message published before it has been
 * applied (one subscriber connection, in order). */
static void sync_seen(struct follower *f, const char *text)
{
    size_t nl = strlen(f->nonce);
    if (strncmp(text, f->nonce, nl) != 0 || text[nl] != ':')
        return; /* another instance's */
    uint64_t seq = strtoull(text + nl + 1, NULL, 10);
    pthread_mutex_lock(&f->sync_lock);
    if (seq > f->sync_seen)
        f->sync_seen = seq;
    pthread_cond_broadcast(&f->sync_cond);
    pthread_mutex_unlock(&f->sync_lock);
}

/* 0 when the whole replica was re-read. The store handle reconnects on the
 * call after a failed one: a dropped connection costs one retry. */
static int reload_all(struct follower *f, const char *why)
{
    int rc = replica_load_all(f->rp, f->store);
    if (rc != STORE_OK)
        rc = replica_load_all(f->rp, f->store);
    if (rc != STORE_OK) {
        log_warn("follower: re-reading every tenant (%s) failed; the replica is as it was", why);
        return -1;
    }
    atomic_fetch_add(&f->refreshes, replica_tenants(f->rp));
    store_generation_bump();
    return 0;
}

/* Subscribed and everything missed meanwhile re-read: the channel is
 * trusted from here. */
static void now_live(struct follower *f)
{
    evtimer_del(f->reload_timer);
    f->backoff_ms = BACKOFF_MIN_MS;
    atomic_store(&f->live, true);
    f->announced_down = false;
    log_info("follower: following %s", FOLLOWER_CHANNEL);
}

static void schedule_connect(struct follower *f);

static void went_down(struct follower *f, const char *why)
{
    f->ac = NULL;
    f->subscribed = false;
    if (atomic_exchange(&f->live, false) || !f->announced_down)
        log_warn("follower: the invalidation channel is down (%s): every tenant is re-read "
                 "each second until it is back",
                 why);
    f->announced_down = true;
    struct timeval tv = {RELOAD_MS / 1000, 0};
    evtimer_add(f->reload_timer, &tv);
    schedule_connect(f);
}

static void on_message(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    struct follower *f = privdata;
    redisReply *r = reply_;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        /* Anything published while we were away is lost: read it all
         * (else the reload timer keeps trying, and the channel becomes
         * trusted once one whole re-read succeeded). */
        f->subscribed = true;
        if (reload_all(f, "the channel is back") == 0)
            now_live(f);
        return;
    }
    if (strcmp(kind, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
        return;
    char id[ID_MAX + 8];
    snprintf(id, sizeof(id), "%.*s", (int)MIN(r->element[2]->len, sizeof(id) - 1),
             r->element[2]->str);
    if (strncmp(id, "sync:", 5) == 0) {
        sync_seen(f, id + 5);
        return;
    }
    if (strncmp(id, "pins:", 5) == 0) {
        /* An access change elsewhere (DESIGN §3.3): the cached pins go. */
        session_drop_tenant(id + 5);
        return;
    }
    if (replica_load_tenant(f->rp, f->store, id) != STORE_OK) {
        reload_all(f, "a tenant could not be re-read");
        return;
    }
    atomic_fetch_add(&f->refreshes, 1);
    store_generation_bump();
}

static void on_auth(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply_;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_error("follower: AUTH refused: %s", r->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct follower *f = ac->data;
    if (status != REDIS_OK)
        went_down(f, ac->errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct follower *f = ac->data;
    if (f != NULL)
        went_down(f, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct follower *f = arg;
    redisAsyncContext *ac = redisAsyncConnect(f->host, f->port);
    if (ac == NULL || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        went_down(f, why);
        return;
    }
    ac->data = f;
    if (redisLibeventAttach(ac, f->base) != REDIS_OK) {
        redisAsyncFree(ac);
        went_down(f, "cannot attach to the event base");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    f->ac = ac;
    if (f->cfg->store_password != NULL)
        redisAsyncCommand(ac, on_auth, f, "AUTH %s", f->cfg->store_password);
    redisAsyncCommand(ac, on_message, f, "SUBSCRIBE %s", FOLLOWER_CHANNEL);
}

static void schedule_connect(struct follower *f)
{
    struct timeval tv = {f->backoff_ms / 1000, (f->backoff_ms % 1000) * 1000};
    evtimer_add(f->retry_timer, &tv);
    f->backoff_ms = MIN(f->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct follower *f = arg;
    if (atomic_load(&f->live))
        return;
    if (reload_all(f, "the channel is down") == 0 && f->subscribed) {
        now_live(f);
        return;
    }
    struct timeval tv = {RELOAD_MS / 1000, 0};
    evtimer_add(f->reload_timer, &tv);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct follower *f = arg;
    if (f->ac != NULL) {
        f->ac->data = NULL;
        redisAsyncFree(f->ac);
        f->ac = NULL;
    }
    event_base_loopbreak(f->base);
}

static void *follow_main(void *arg)
{
    struct follower *f = arg;
    pthread_setname_np(pthread_self(), "follower");
    connect_cb(-1, 0, f);
    event_base_dispatch(f->base);
    return NULL;
}

static void follower_free(struct follower *f)
{
    if (f->stop_ev != NULL)
        event_free(f->stop_ev);
    if (f->retry_timer != NULL)
        event_free(f->retry_timer);
    if (f->reload_timer != NULL)
        event_free(f->reload_timer);
    if (f->base != NULL)
        event_base_free(f->base);
    if (f->sync_ready) {
        pthread_cond_destroy(&f->sync_cond);
        pthread_mutex_destroy(&f->sync_lock);
    }
    store_close(f->store);
    free(f);
}

struct follower *follower_start(const struct config *cfg, struct replica *rp, char **err)
{
    *err = NULL;
    struct follower *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        *err = strdup("out of memory starting the follower");
        return NULL;
    }
    f->cfg = cfg;
    f->rp = rp;
    f->backoff_ms = BACKOFF_MIN_MS;
    unsigned char nonce[8];
    pthread_condattr_t ca;
    if (crypto_random(nonce, sizeof(nonce)) == -1 || pthread_condattr_init(&ca) != 0)
        goto oom;
    for (size_t i = 0; i < sizeof(nonce); i++)
        snprintf(f->nonce + 2 * i, 3, "%02x", nonce[i]);
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool cond_ok = pthread_cond_init(&f->sync_cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cond_ok)
        goto oom;
    if (pthread_mutex_init(&f->sync_lock, NULL) != 0) {
        pthread_cond_destroy(&f->sync_cond);
        goto oom;
    }
    f->sync_ready = true;
    int db = 0;
    char perr[160];
    if (config_parse_redis_url(cfg->store_url, f->host, sizeof(f->host), &f->port, &db, perr,
                               sizeof(perr)) == -1) {
        if (asprintf(err, "store.url: %s", perr) == -1)
            *err = NULL;
        goto failed;
    }
    f->store = store_open_role(cfg, STORE_ROLE_CONTROL, err);
    if (f->store == NULL)
        goto failed;
    int rc = replica_load_all(rp, f->store);
    if (rc != STORE_OK) {
        *err = strdup("reading the tenants from the store failed (see the log)");
        goto failed;
    }
    atomic_store(&f->refreshes, replica_tenants(rp));
    f->base = event_base_new();
    if (f->base == NULL)
        goto oom;
    f->stop_ev = event_new(f->base, -1, 0, stop_cb, f);
    f->retry_timer = evtimer_new(f->base, connect_cb, f);
    f->reload_timer = evtimer_new(f->base, reload_cb, f);
    if (f->stop_ev == NULL || f->retry_timer == NULL || f->reload_timer == NULL)
        goto oom;
    if (pthread_create(&f->thread, NULL, follow_main, f) != 0) {
        *err = strdup("cannot start the follower thread");
        goto failed;
    }
    return f;
oom:
    *err = strdup("out of memory starting the follower");
failed:
    follower_free(f);
    return NULL;
}

void follower_stop(struct follower *f)
{
    if (f == NULL)
        return;
    event_active(f->stop_ev, 0, 0);
    pthread_join(f->thread, NULL);
    follower_free(f);
}

bool follower_live(const struct follower *f)
{
    return atomic_load(&f->live);
}

uint64_t follower_refreshes(const struct follower *f)
{
    return atomic_load(&f->refreshes);
}

int follower_sync(struct follower *f, struct store *s, int timeout_ms)
{
    if (f == NULL || !atomic_load(&f->live))
        return -1; /* the whole re-reads of a broken channel apply it (within a second) */
    uint64_t seq = atomic_fetch_add(&f->sync_next, 1) + 1;
    char msg[64];
    snprintf(msg, sizeof(msg), "sync:%s:%llu", f->nonce, (unsigned long long)seq);
    if (store_redis_publish(s, msg) != STORE_OK)
        return -1;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->sync_lock);
    int rc = 0;
    while (f->sync_seen < seq && rc == 0)
        rc = pthread_cond_timedwait(&f->sync_cond, &f->sync_lock, &until);
    bool seen = f->sync_seen >= seq;
    pthread_mutex_unlock(&f->sync_lock);
    return seen ? 0 : -1;
}
