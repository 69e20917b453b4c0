/* fleet.c - a worker's per-request questions to Redis in fleet mode
 * (fleet.h): admission, holds and live-session leases through
 * store_redis's scripts, pins through the script below, all over
 * redis_async. */
#include "common.h"
#include "fleet.h"
#include "config.h"
#include "store_redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A session's pin, first come first served. KEYS: the pin. ARGV: text, ttl
 * ms. Reply: the text that stands (ours, or the one already there, whose
 * TTL is slid as a read would). */
static struct redis_script pin_put = {
    .name = "pin_put",
    .text = "local ttl = tonumber(ARGV[2])\n"
            "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then return ARGV[1] end\n"
            "redis.call('PEXPIRE', KEYS[1], ttl)\n"
            "return redis.call('GET', KEYS[1])\n",
};

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;
/* What every worker connection loads when it connects (redis_async.h). */
static const struct redis_script *scripts[6];

static void scripts_init(void)
{
    redis_script_init(&pin_put);
    scripts[4] = &pin_put;
    scripts[5] = store_redis_script(STORE_REDIS_SCRIPT_FUNDS);
    scripts[0] = store_redis_script(STORE_REDIS_SCRIPT_ADMIT);
    scripts[1] = store_redis_script(STORE_REDIS_SCRIPT_RELEASE);
    scripts[2] = store_redis_script(STORE_REDIS_SCRIPT_LIVE_ACQUIRE);
    scripts[3] = store_redis_script(STORE_REDIS_SCRIPT_LIVE_RENEW);
}

/* Releases whose outcome is unknown (Redis down when asked, or the
 * connection lost before the answer) wait here and are sent again once it
 * is back (RELEASE is idempotent), so a hold nobody settles does not stay
 * until it expires (balance.hold_ttl_s). Bounded: past it the oldest are
 * left to expire. */
#define FLEET_PENDING_RELEASES 4096

struct release_q;

struct release {
    char payer_id[ID_MAX];
    char hold_id[ID_MAX];
};

struct fleet {
    struct rasync *r;
    int64_t hold_ttl_ms;
    struct release *pending; /* ring of FLEET_PENDING_RELEASES, allocated on first use */
    size_t pending_head, pending_n;
    bool pending_full_logged;
    struct release_q *releasing; /* sent, not answered yet */
    /* Admissions asked in this loop turn, sent together at its end. */
    struct fleet_admission *queued, **queued_tail;
    struct event *admit_ev;
    struct admit_batch *admitting; /* sent, not answered yet */
};

static void resend_releases(void *arg);
static void releases_drop(struct fleet *f);
static void admit_flush(evutil_socket_t fd, short what, void *arg);
static void admissions_drop(struct fleet *f);

struct fleet *fleet_new(struct event_base *base, const struct config *cfg, const char *name)
{
    pthread_once(&scripts_once, scripts_init);
    char host[256], err[160];
    int port = 0, db = 0;
    if (config_parse_redis_url(cfg->store_url, host, sizeof(host), &port, &db, err, sizeof(err)) ==
        -1) {
        log_error("fleet: store.url: %s", err);
        return NULL;
    }
    struct fleet *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    struct rasync_opts o = {.on_up = resend_releases,
                            .on_up_arg = f,
                            .host = host,
                            .port = port,
                            .db = db,
                            .password = cfg->store_password,
                            .timeout_ms = cfg->store_timeout_ms > 0 ? cfg->store_timeout_ms : 1000,
                            .name = name,
                            .scripts = scripts,
                            .n_scripts = ARRAY_SIZE(scripts)};
    f->queued_tail = &f->queued;
    f->hold_ttl_ms = (int64_t)cfg->balance.hold_ttl_s * 1000;
    f->admit_ev = event_new(base, -1, 0, admit_flush, f);
    f->r = f->admit_ev != NULL ? rasync_new(base, &o) : NULL;
    if (f->r == NULL) {
        if (f->admit_ev != NULL)
            event_free(f->admit_ev);
        free(f);
        return NULL;
    }
    return f;
}

void fleet_free(struct fleet *f)
{
    if (f == NULL)
        return;
    releases_drop(f);
    admissions_drop(f);
    rasync_free(f->r);
    event_free(f->admit_ev);
    free(f->pending);
    free(f);
}

bool fleet_up(const struct fleet *f)
{
    return rasync_up(f->r);
}

/* --- admission ------------------------------------------------------------ */

/* Admissions asked during one turn of the event loop go to Redis together
 * at its end, in one call of the ADMIT script (at most ADMIT_BATCH each):
 * under load one script run, one reply and one AOF entry for many requests,
 * and no wait added (redis_async writes its commands at the turn's end
 * anyway). The script admits them in order, each as if alone, so the
 * §3.4 rule is the same as one call each. */
#define ADMIT_BATCH 64
#define ADMIT_KEYS  5 /* tenant, holds, holdamt, up to two live sets */

struct fleet_admission {
    struct fleet_admission *next; /* queued, then in its batch */
    fleet_admit_cb cb;            /* fleet_admit */
    fleet_live_cb leased_cb;      /* fleet_admit_leased */
    void *arg;
    bool cancelled;
    int nl; /* live sets: 0, 1 or 2 */
    char keys[ADMIT_KEYS][ID_MAX + 32];
    char hold_id[ID_MAX], lease_id[ID_MAX];
    char n[4], micros[24], ttl[24], lt[24], lo[24];
};

struct admit_batch {
    struct fleet *f;
    struct admit_batch *prev, *next; /* in f->admitting */
    struct rasync_req *req;
    struct fleet_admission *head;
};

/* Gives a its answer, unless it was cancelled. */
static void deliver(struct fleet_admission *a, enum fleet_status st, bool owner, int64_t avail)
{
    if (a->cancelled)
        return;
    if (a->leased_cb != NULL)
        a->leased_cb(a->arg, st, owner);
    else
        a->cb(a->arg, st == FLEET_LIMIT ? FLEET_DOWN : st, avail); /* no lease asked */
}

static void admissions_free(struct fleet_admission *a)
{
    while (a != NULL) {
        struct fleet_admission *next = a->next;
        free(a);
        a = next;
    }
}

static void batch_unlink(struct admit_batch *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        b->f->admitting = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
}

/* r: {status, available} per admission of the batch, in order. */
static void batch_reply(void *arg, const redisReply *r)
{
    struct admit_batch *b = arg;
    batch_unlink(b);
    size_t n = 0;
    for (struct fleet_admission *a = b->head; a != NULL; a = a->next)
        n++;
    bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 * n;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_error("fleet: admission script failed: %s", r->str);
    else if (r != NULL && !ok)
        log_error("fleet: admission script: unexpected reply");
    size_t i = 0;
    for (struct fleet_admission *a = b->head; a != NULL; a = a->next, i += 2) {
        enum fleet_status st = FLEET_DOWN;
        bool owner = false;
        int64_t avail = 0;
        if (ok && r->element[i]->type == REDIS_REPLY_STRING) {
            const char *s = r->element[i]->str;
            owner = strcmp(s, "owner_limit") == 0;
            st = strcmp(s, "admitted") == 0                ? FLEET_OK
                 : strcmp(s, "no_funds") == 0              ? FLEET_NO_FUNDS
                 : strcmp(s, "no_payer") == 0              ? FLEET_NO_PAYER
                 : owner || strcmp(s, "tenant_limit") == 0 ? FLEET_LIMIT
                                                           : FLEET_DOWN;
            if (r->element[i + 1]->type == REDIS_REPLY_INTEGER)
                avail = r->element[i + 1]->integer;
        }
        deliver(a, st, owner, avail);
    }
    admissions_free(b->head);
    free(b);
}

/* Sends up to ADMIT_BATCH queued admissions (cancelled ones are dropped:
 * never sent, they took no hold) in one call. */
static void send_batch(struct fleet *f)
{
    struct fleet_admission *head = NULL, **tail = &head;
    int n = 0, nk = 0, argc = 0;
    while (f->queued != NULL && n < ADMIT_BATCH) {
        struct fleet_admission *a = f->queued;
        f->queued = a->next;
        a->next = NULL;
        if (a->cancelled) {
            free(a);
            continue;
        }
        *tail = a;
        tail = &a->next;
        n++;
        nk += 3 + a->nl;
    }
    if (f->queued == NULL)
        f->queued_tail = &f->queued;
    if (head == NULL)
        return;
    const char *argv[ADMIT_BATCH * (ADMIT_KEYS + 8)];
    for (struct fleet_admission *a = head; a != NULL; a = a->next)
        for (int i = 0; i < 3 + a->nl; i++)
            argv[argc++] = a->keys[i];
    char lease_ms[24];
    lease_ms[fmt_u64(lease_ms, FLEET_LEASE_MS)] = '\0';
    for (struct fleet_admission *a = head; a != NULL; a = a->next) {
        argv[argc++] = a->n;
        argv[argc++] = a->hold_id;
        argv[argc++] = a->micros;
        argv[argc++] = a->ttl;
        if (a->nl > 0) {
            argv[argc++] = a->lease_id;
            argv[argc++] = lease_ms;
            argv[argc++] = a->lt;
            argv[argc++] = a->lo;
        }
    }
    struct admit_batch *b = calloc(1, sizeof(*b));
    if (b != NULL) {
        b->f = f;
        b->head = head;
        b->req = rasync_eval(f->r, store_redis_script(STORE_REDIS_SCRIPT_ADMIT), batch_reply, b, nk,
                             argc, argv, NULL);
    }
    if (b == NULL || b->req == NULL) { /* down since it was asked: nothing was sent */
        free(b);
        for (struct fleet_admission *a = head; a != NULL; a = a->next)
            deliver(a, FLEET_DOWN, false, 0);
        admissions_free(head);
        return;
    }
    b->next = f->admitting;
    if (b->next != NULL)
        b->next->prev = b;
    f->admitting = b;
}

static void admit_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    while (f->queued != NULL)
        send_batch(f);
}

/* The fleet goes: queued admissions are not sent, sent ones not answered. */
static void admissions_drop(struct fleet *f)
{
    admissions_free(f->queued);
    f->queued = NULL;
    f->queued_tail = &f->queued;
    while (f->admitting != NULL) {
        struct admit_batch *b = f->admitting;
        rasync_cancel(b->req);
        batch_unlink(b);
        admissions_free(b->head);
        free(b);
    }
}

/* Keys of payer_id into buf: tenant, holds, holdamt. */
static int hold_keys(const char *payer_id, char keys[3][ID_MAX + 32])
{
    return store_redis_tenant_key(keys[0], sizeof(keys[0]), payer_id, "tenant") == -1 ||
                   store_redis_tenant_key(keys[1], sizeof(keys[1]), payer_id, "holds") == -1 ||
                   store_redis_tenant_key(keys[2], sizeof(keys[2]), payer_id, "holdamt") == -1
               ? -1
               : 0;
}

static int live_keys(const char *tenant_id, const char *owner_id, char keys[2][ID_MAX + 32])
{
    if (store_redis_tenant_key(keys[0], sizeof(keys[0]), tenant_id, "live") == -1)
        return -1;
    if (owner_id == NULL || owner_id[0] == '\0')
        return 1;
    return store_redis_tenant_key(keys[1], sizeof(keys[1]), owner_id, "live") == -1 ? -1 : 2;
}

/* Queues a's admission (with, when lease is not NULL, the lease's keys and
 * arguments after the hold's) for the end of this loop turn. */
static enum fleet_status admit(struct fleet *f, const char *payer_id, const char *hold_id,
                               int64_t hold_micros, const struct fleet_lease *lease,
                               struct fleet_admission *a, struct fleet_admission **req)
{
    *req = NULL;
    if (hold_keys(payer_id, a->keys) == -1 || strlen(hold_id) >= sizeof(a->hold_id)) {
        free(a);
        return FLEET_NO_PAYER;
    }
    if (lease != NULL) {
        a->nl = live_keys(lease->tenant_id, lease->owner_id, a->keys + 3);
        if (a->nl < 0 || strlen(lease->lease_id) >= sizeof(a->lease_id)) {
            free(a);
            return FLEET_DOWN;
        }
    }
    if (!rasync_up(f->r)) {
        free(a);
        return FLEET_DOWN;
    }
    str_copy(a->hold_id, sizeof(a->hold_id), hold_id);
    a->n[fmt_u64(a->n, (uint64_t)a->nl)] = '\0';
    a->micros[fmt_u64(a->micros, (uint64_t)MAX(hold_micros, (int64_t)0))] = '\0';
    a->ttl[fmt_u64(a->ttl, (uint64_t)MAX(f->hold_ttl_ms, (int64_t)1000))] = '\0';
    if (lease != NULL) {
        str_copy(a->lease_id, sizeof(a->lease_id), lease->lease_id);
        a->lt[fmt_u64(a->lt, (uint64_t)MAX(lease->limit, (int64_t)0))] = '\0';
        a->lo[fmt_u64(a->lo, (uint64_t)MAX(lease->owner_limit, (int64_t)0))] = '\0';
    }
    if (f->queued == NULL)
        event_active(f->admit_ev, EV_TIMEOUT, 1);
    *f->queued_tail = a;
    f->queued_tail = &a->next;
    *req = a;
    return FLEET_PENDING;
}

enum fleet_status fleet_admit(struct fleet *f, const char *payer_id, const char *hold_id,
                              int64_t hold_micros, fleet_admit_cb cb, void *arg,
                              struct fleet_admission **req)
{
    struct fleet_admission *a = calloc(1, sizeof(*a));
    *req = NULL;
    if (a == NULL)
        return FLEET_DOWN;
    a->cb = cb;
    a->arg = arg;
    return admit(f, payer_id, hold_id, hold_micros, NULL, a, req);
}

enum fleet_status fleet_admit_leased(struct fleet *f, const char *payer_id, const char *hold_id,
                                     int64_t hold_micros, const struct fleet_lease *lease,
                                     fleet_live_cb cb, void *arg, struct fleet_admission **req)
{
    struct fleet_admission *a = calloc(1, sizeof(*a));
    *req = NULL;
    if (a == NULL)
        return FLEET_DOWN;
    a->leased_cb = cb;
    a->arg = arg;
    return admit(f, payer_id, hold_id, hold_micros, lease, a, req);
}

void fleet_admission_cancel(struct fleet_admission *a)
{
    if (a != NULL)
        a->cancelled = true;
}

/* fleet_available's question. */
struct admit_q {
    fleet_admit_cb cb;
    void *arg;
};

static void funds_reply(void *arg, const redisReply *r)
{
    struct admit_q *q = arg;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        q->cb(q->arg, FLEET_OK, r->integer);
    else if (r != NULL && r->type == REDIS_REPLY_NIL)
        q->cb(q->arg, FLEET_NO_PAYER, 0);
    else
        q->cb(q->arg, FLEET_DOWN, 0);
    free(q);
}

enum fleet_status fleet_available(struct fleet *f, const char *payer_id, fleet_admit_cb cb,
                                  void *arg, struct rasync_req **req)
{
    char keys[3][ID_MAX + 32];
    *req = NULL;
    if (hold_keys(payer_id, keys) == -1)
        return FLEET_NO_PAYER;
    const char *argv[] = {keys[0], keys[1], keys[2]};
    struct admit_q *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return FLEET_DOWN;
    q->cb = cb;
    q->arg = arg;
    *req = rasync_eval(f->r, store_redis_script(STORE_REDIS_SCRIPT_FUNDS), funds_reply, q, 3, 3,
                       argv, NULL);
    if (*req == NULL) {
        free(q);
        return FLEET_DOWN;
    }
    return FLEET_PENDING;
}

static void pending_add(struct fleet *f, const char *payer_id, const char *hold_id)
{
    if (f->pending == NULL &&
        (f->pending = calloc(FLEET_PENDING_RELEASES, sizeof(*f->pending))) == NULL)
        return; /* left to expire */
    if (f->pending_n == FLEET_PENDING_RELEASES) {
        if (!f->pending_full_logged)
            log_warn("fleet: %d hold releases wait for Redis; older ones are left to expire "
                     "(balance.hold_ttl_s)",
                     FLEET_PENDING_RELEASES);
        f->pending_full_logged = true;
        f->pending_head = (f->pending_head + 1) % FLEET_PENDING_RELEASES;
        f->pending_n--;
    }
    struct release *e = &f->pending[(f->pending_head + f->pending_n) % FLEET_PENDING_RELEASES];
    snprintf(e->payer_id, sizeof(e->payer_id), "%s", payer_id);
    snprintf(e->hold_id, sizeof(e->hold_id), "%s", hold_id);
    f->pending_n++;
}

/* A release on its way (the fleet frees those still out when it goes). */
struct release_q {
    struct fleet *f;
    struct release_q *prev, *next;
    struct rasync_req *req;
    struct release what;
};

static void release_unlink(struct release_q *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        q->f->releasing = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
}

/* The fleet goes: releases still out are never answered now. */
static void releases_drop(struct fleet *f)
{
    while (f->releasing != NULL) {
        struct release_q *q = f->releasing;
        rasync_cancel(q->req);
        release_unlink(q);
        free(q);
    }
}

static void send_release(struct fleet *f, const char *payer_id, const char *hold_id);

static void release_reply(void *arg, const redisReply *r)
{
    struct release_q *q = arg;
    release_unlink(q);
    if (r == NULL) /* no answer: it may not have run */
        pending_add(q->f, q->what.payer_id, q->what.hold_id);
    free(q);
}

static void send_release(struct fleet *f, const char *payer_id, const char *hold_id)
{
    char keys[3][ID_MAX + 32];
    struct release_q *q;
    if (hold_keys(payer_id, keys) == -1 || (q = malloc(sizeof(*q))) == NULL)
        return;
    q->f = f;
    snprintf(q->what.payer_id, sizeof(q->what.payer_id), "%s", payer_id);
    snprintf(q->what.hold_id, sizeof(q->what.hold_id), "%s", hold_id);
    const char *argv[] = {keys[1], keys[2], hold_id};
    q->req = rasync_eval(f->r, store_redis_script(STORE_REDIS_SCRIPT_RELEASE), release_reply, q, 2,
                         3, argv, NULL);
    if (q->req == NULL) {
        pending_add(f, payer_id, hold_id);
        free(q);
        return;
    }
    q->prev = NULL;
    q->next = f->releasing;
    if (q->next != NULL)
        q->next->prev = q;
    f->releasing = q;
}

/* The connection is back: the releases that waited go now (oldest first). */
static void resend_releases(void *arg)
{
    struct fleet *f = arg;
    size_t n = f->pending_n;
    f->pending_full_logged = false;
    for (size_t i = 0; i < n && f->pending_n > 0; i++) {
        struct release e = f->pending[f->pending_head];
        f->pending_head = (f->pending_head + 1) % FLEET_PENDING_RELEASES;
        f->pending_n--;
        send_release(f, e.payer_id, e.hold_id);
    }
}

void fleet_release(struct fleet *f, const char *payer_id, const char *hold_id)
{
    send_release(f, payer_id, hold_id);
}

size_t fleet_pending_releases(const struct fleet *f)
{
    return f->pending_n;
}

/* --- live sessions -------------------------------------------------------- */

struct live_q {
    fleet_live_cb cb;
    void *arg;
};

static void live_reply(void *arg, const redisReply *r)
{
    struct live_q *q = arg;
    enum fleet_status st = FLEET_DOWN;
    bool owner = false;
    if (r != NULL && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING)) {
        if (strcmp(r->str, "ok") == 0) {
            st = FLEET_OK;
        } else {
            st = FLEET_LIMIT;
            owner = strcmp(r->str, "owner") == 0;
        }
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_error("fleet: live-session script failed: %s", r->str);
    }
    q->cb(q->arg, st, owner);
    free(q);
}

enum fleet_status fleet_live_acquire(struct fleet *f, const char *tenant_id, int64_t limit,
                                     const char *owner_id, int64_t owner_limit,
                                     const char *lease_id, fleet_live_cb cb, void *arg,
                                     struct rasync_req **req)
{
    char keys[2][ID_MAX + 32], ttl[24], lt[24], lo[24];
    *req = NULL;
    int nk = live_keys(tenant_id, owner_id, keys);
    if (nk < 0)
        return FLEET_DOWN;
    snprintf(ttl, sizeof(ttl), "%d", FLEET_LEASE_MS);
    snprintf(lt, sizeof(lt), "%lld", (long long)MAX(limit, (int64_t)0));
    snprintf(lo, sizeof(lo), "%lld", (long long)MAX(owner_limit, (int64_t)0));
    const char *argv[6];
    int n = 0;
    for (int i = 0; i < nk; i++)
        argv[n++] = keys[i];
    argv[n++] = lease_id;
    argv[n++] = ttl;
    argv[n++] = lt;
    argv[n++] = lo;
    struct live_q *q = malloc(sizeof(*q));
    if (q == NULL)
        return FLEET_DOWN;
    q->cb = cb;
    q->arg = arg;
    *req = rasync_eval(f->r, store_redis_script(STORE_REDIS_SCRIPT_LIVE_ACQUIRE), live_reply, q, nk,
                       n, argv, NULL);
    if (*req == NULL) {
        free(q);
        return FLEET_DOWN;
    }
    return FLEET_PENDING;
}

void fleet_live_renew(struct fleet *f, const char *tenant_id, const char *owner_id,
                      const char *lease_id)
{
    char keys[2][ID_MAX + 32], ttl[24];
    int nk = live_keys(tenant_id, owner_id, keys);
    if (nk < 0)
        return;
    snprintf(ttl, sizeof(ttl), "%d", FLEET_LEASE_MS);
    const char *argv[4];
    int n = 0;
    for (int i = 0; i < nk; i++)
        argv[n++] = keys[i];
    argv[n++] = lease_id;
    argv[n++] = ttl;
    (void)rasync_eval(f->r, store_redis_script(STORE_REDIS_SCRIPT_LIVE_RENEW), NULL, NULL, nk, n,
                      argv, NULL);
}

void fleet_live_release(struct fleet *f, const char *tenant_id, const char *owner_id,
                        const char *lease_id)
{
    char keys[2][ID_MAX + 32];
    int nk = live_keys(tenant_id, owner_id, keys);
    for (int i = 0; i < nk; i++) {
        const char *argv[] = {"ZREM", keys[i], lease_id};
        (void)rasync_command(f->r, NULL, NULL, 3, argv, NULL);
    }
}

/* --- pins and single-use values ------------------------------------------- */

struct text_q {
    fleet_text_cb cb;
    void *arg;
    bool put_value; /* SET NX: "OK" = stored, nil = the name exists */
};

static void text_reply(void *arg, const redisReply *r)
{
    struct text_q *q = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            log_error("fleet: %s", r->str);
        q->cb(q->arg, FLEET_DOWN, NULL, 0);
    } else if (q->put_value) {
        q->cb(q->arg, r->type == REDIS_REPLY_NIL ? FLEET_ABSENT : FLEET_OK, NULL, 0);
    } else if (r->type == REDIS_REPLY_STRING) {
        q->cb(q->arg, FLEET_OK, r->str, r->len);
    } else {
        q->cb(q->arg, FLEET_ABSENT, NULL, 0);
    }
    free(q);
}

static struct text_q *text_q(fleet_text_cb cb, void *arg, bool put_value)
{
    struct text_q *q = malloc(sizeof(*q));
    if (q != NULL) {
        q->cb = cb;
        q->arg = arg;
        q->put_value = put_value;
    }
    return q;
}

static enum fleet_status sent(struct rasync_req *r, struct text_q *q, struct rasync_req **req)
{
    *req = r;
    if (r == NULL) {
        free(q);
        return FLEET_DOWN;
    }
    return FLEET_PENDING;
}

/* byok:{t:T}:pin:<session> */
static int pin_key(char *buf, size_t size, const char *tenant_id, const char *session_id)
{
    char what[SESSION_MAX + 8];
    snprintf(what, sizeof(what), "pin:%s", session_id);
    return store_redis_tenant_key(buf, size, tenant_id, what);
}

enum fleet_status fleet_pin_get(struct fleet *f, const char *tenant_id, const char *session_id,
                                int ttl_s, fleet_text_cb cb, void *arg, struct rasync_req **req)
{
    char key[ID_MAX + SESSION_MAX + 32], ttl[24];
    *req = NULL;
    struct text_q *q;
    if (pin_key(key, sizeof(key), tenant_id, session_id) == -1 ||
        (q = text_q(cb, arg, false)) == NULL)
        return FLEET_DOWN;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s * 1000);
    const char *argv[] = {"GETEX", key, "PX", ttl};
    return sent(rasync_command(f->r, text_reply, q, 4, argv, NULL), q, req);
}

enum fleet_status fleet_pin_put(struct fleet *f, const char *tenant_id, const char *session_id,
                                const char *text, int ttl_s, fleet_text_cb cb, void *arg,
                                struct rasync_req **req)
{
    char key[ID_MAX + SESSION_MAX + 32], ttl[24];
    *req = NULL;
    struct text_q *q;
    if (pin_key(key, sizeof(key), tenant_id, session_id) == -1 ||
        (q = text_q(cb, arg, false)) == NULL)
        return FLEET_DOWN;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s * 1000);
    const char *argv[] = {key, text, ttl};
    return sent(rasync_eval(f->r, &pin_put, text_reply, q, 1, 3, argv, NULL), q, req);
}

enum fleet_status fleet_value_put(struct fleet *f, const char *name, const char *text,
                                  int64_t ttl_ms, fleet_text_cb cb, void *arg,
                                  struct rasync_req **req)
{
    char key[256], ttl[24];
    *req = NULL;
    struct text_q *q;
    if ((size_t)snprintf(key, sizeof(key), STORE_REDIS_PREFIX "once:%s", name) >= sizeof(key) ||
        (q = text_q(cb, arg, true)) == NULL)
        return FLEET_DOWN;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)MAX(ttl_ms, (int64_t)1));
    const char *argv[] = {"SET", key, text, "NX", "PX", ttl};
    return sent(rasync_command(f->r, text_reply, q, 6, argv, NULL), q, req);
}

enum fleet_status fleet_value_take(struct fleet *f, const char *name, fleet_text_cb cb, void *arg,
                                   struct rasync_req **req)
{
    char key[256];
    *req = NULL;
    struct text_q *q;
    if ((size_t)snprintf(key, sizeof(key), STORE_REDIS_PREFIX "once:%s", name) >= sizeof(key) ||
        (q = text_q(cb, arg, false)) == NULL)
        return FLEET_DOWN;
    const char *argv[] = {"GETDEL", key};
    return sent(rasync_command(f->r, text_reply, q, 2, argv, NULL), q, req);
}
