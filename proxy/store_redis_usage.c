/* store_redis_usage.c - the Redis backend's money: usage records written
 * and charged by one atomic script call per payer (up to CALL_MAX records
 * each, the calls of a batch pipelined), each record all or nothing and
 * idempotent on its id; the charge computed in C by the policy of charge.h
 * and applied by compare-and-set; the usage query; the balance holds
 * (DESIGN §3.4, §7b).
 *
 * Why compare-and-set: the same policy code must decide for SQLite and
 * Redis (charge.h), so the script does not re-implement "plan credits
 * first, then the wallet". C reads the payer's balances and computes each
 * record's split; the script applies it only if what the split depends on
 * - the payer's plan credits - is still what C read, and moves the wallet
 * by the amount (so other instances charging the same payer's wallet do not
 * get in the way). If the plan credits moved (another instance drew on
 * them, a topup) nothing is done for that record and the script answers
 * the balances it found; C computes that record again from them in the
 * next round, up to CAS_ROUNDS (64). Records of one payer in one batch are
 * chained (each expects the plan credits the previous one leaves), so a
 * quiet payer costs one round trip per batch. A wallet that would leave
 * int64 ("saturate") is charged in "exact" mode instead: both balances
 * compared and set, the saturation computed by charge_apply().
 *
 * Why one call per payer: a script call costs Redis more than the few
 * commands a record needs inside it, and the records of one call share
 * their writes (one release of all their holds, one move of the balances,
 * one MSET of their marks, one ZADD per index). The payer's keys are the
 * money of the call; its other keys (the marks, the stream, the indexes)
 * are global, as they were with one call per record (README, Redis
 * Cluster). */
#include "common.h"
#include "store_redis.h"
#include "charge.h"
#include "store.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rounds of compare-and-set before a batch is given up (the writer then
 * spools it and replays it later: nothing is lost or charged twice). Each
 * round resolves at least the first pending record of every payer unless
 * another instance charged that payer within the same round trip. */
#define CAS_ROUNDS 64
/* Records per script call. Redis serves no one else while a call runs
 * (admissions wait behind it): 32 records take it about 0.2-0.4 ms, about
 * what the same records took per 16 KiB read as one call each, and the
 * fixed part of a call is then under 0.5 command per record (the CPU per
 * record is the same from 8 to 64 within the noise). */
#define CALL_MAX 32
static _Atomic uint64_t cas_conflicts;

uint64_t store_redis_cas_conflicts(void)
{
    return atomic_load_explicit(&cas_conflicts, memory_order_relaxed);
}

/* What the batch believes of one payer's balances: read once, then kept
 * up to date from what each record's answer said. */
struct payer {
    const char *id; /* borrowed from the batch; NULL = free slot */
    bool missing;   /* no such tenant (as far as we know) */
    bool answered;  /* a record of it was answered in this round */
    struct charge_balance bal;
};

enum rec_state {
    REC_TODO = 0,
    REC_OK,           /* recorded (and charged) by this call */
    REC_DUP,          /* its id was recorded before: nothing done */
    REC_DUP_IN_BATCH, /* its id appears earlier in this batch */
};

#define NO_REC ((size_t)-1)

struct rec_work {
    enum rec_state state;
    struct payer *payer; /* NULL: the record charges nothing */
    bool expect_missing; /* sent in "missing" mode */
    bool exact;          /* "saturate" once: charged in "exact" mode */
    struct charge_balance expect, after;
    size_t next; /* the next record with the same payer id, or NO_REC */
};

/* The records of one payer id, in batch order (a list through next). */
struct group {
    size_t head, tail;
};

/* One script call of a round: sent[first .. first + count). */
struct call {
    size_t first, count;
};

/* Open-addressing set of names (payer ids, record ids), sized for no
 * resizing: slots >= 2 n. */
struct name_slot {
    const char *name;
    size_t index;
};

/* The slot of name: its own when present, else a free one (name NULL). */
static struct name_slot *name_find(struct name_slot *t, size_t mask, const char *name)
{
    for (size_t i = (size_t)fnv1a_add(FNV1A_INIT, name) & mask;; i = (i + 1) & mask)
        if (t[i].name == NULL || strcmp(t[i].name, name) == 0)
            return &t[i];
}

static const char *mode_name(enum charge_result res, const struct rec_work *w)
{
    if (res == CHARGE_APPLIED)
        return w->exact ? "exact" : "plan";
    return res == CHARGE_PAYER_MISSING ? "missing" : "none";
}

/* Queues the record script call of records idx[0 .. k) (one payer id, in
 * batch order): computes each one's charge from its payer's belief (the
 * next one expects what it leaves) and formats its text, which carries
 * the amounts charged. */
static MUST_CHECK int send_call(struct redis_conn *c, struct redis_cmd *cmd,
                                struct usage_record_lines *text, struct usage_record *records,
                                struct rec_work *w, const size_t *idx, size_t k)
{
    const char *payer = records[idx[0]].payer_id;
    int nkeys = 5;
    for (size_t j = 0; j < k; j++)
        nkeys += records[idx[j]].session_id[0] != '\0' ? 3 : 2;
    redis_cmd_evalsha(cmd, store_redis_script(STORE_REDIS_SCRIPT_RECORD), nkeys);
    redis_cmd_str(cmd, STORE_REDIS_STREAM);
    redis_cmd_str(cmd, STORE_REDIS_PREFIX "usage:ts");
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:tenant", payer);
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:holds", payer);
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:holdamt", payer);
    for (size_t j = 0; j < k; j++) {
        const struct usage_record *r = &records[idx[j]];
        redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "rec:%s", r->id);
        redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:usage", r->tenant_id);
        if (r->session_id[0] != '\0')
            redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "usage:session:%s", r->session_id);
    }
    for (size_t j = 0; j < k; j++) {
        struct usage_record *r = &records[idx[j]];
        struct rec_work *wi = &w[idx[j]];
        struct payer *p = wi->payer;
        struct charge ch;
        enum charge_result res = charge_apply(r->billed_byok, r->no_charge, r->cost_micros,
                                              p != NULL && !p->missing ? &p->bal : NULL, &ch);
        r->charged_plan_credits_micros = ch.plan_credits_micros;
        r->charged_wallet_micros = ch.wallet_micros;
        wi->expect_missing = res == CHARGE_PAYER_MISSING;
        wi->expect = p != NULL ? p->bal : (struct charge_balance){0};
        wi->after = ch.after;
        if (res == CHARGE_APPLIED)
            p->bal = ch.after; /* the next record of p expects this */
        text->len = 0;
        int len = usage_record_lines_add(text, r);
        if (len == -1) {
            log_error("store(redis): out of memory formatting usage record %s", r->id);
            return -1;
        }
        redis_cmd_str(cmd, r->id);
        redis_cmd_add(cmd, text->data, (size_t)len);
        redis_cmd_i64(cmd, r->ts_ms);
        redis_cmd_str(cmd, r->hold_id);
        redis_cmd_str(cmd, mode_name(res, wi));
        redis_cmd_i64(cmd, wi->expect.plan_credits_micros);
        redis_cmd_i64(cmd, wi->expect.wallet_micros);
        redis_cmd_i64(cmd, wi->after.plan_credits_micros);
        redis_cmd_i64(cmd, wi->after.wallet_micros);
        /* >= 0: negating it is exact. */
        redis_cmd_i64(cmd, -r->charged_wallet_micros);
        redis_cmd_str(cmd, r->session_id[0] != '\0' ? "1" : "0");
    }
    return redis_conn_append(c, cmd);
}

/* Reads the balances of every payer not read yet, pipelined. */
static MUST_CHECK int load_payers(struct redis_conn *c, struct name_slot *payers, size_t slots,
                                  struct payer *pv)
{
    struct redis_cmd cmd = {0};
    size_t sent = 0;
    int rc = -1;
    for (size_t i = 0; i < slots; i++) {
        if (payers[i].name == NULL)
            continue;
        redis_cmd_start(&cmd);
        redis_cmd_str(&cmd, "HMGET");
        redis_cmd_fmt(&cmd, STORE_REDIS_PREFIX "{t:%s}:tenant", payers[i].name);
        redis_cmd_str(&cmd, "plan");
        redis_cmd_str(&cmd, "wallet");
        if (redis_conn_append(c, &cmd) == -1)
            goto out;
        sent++;
    }
    size_t k = 0;
    for (size_t i = 0; i < slots && k < sent; i++) {
        if (payers[i].name == NULL)
            continue;
        k++;
        redisReply *r = redis_conn_reply(c, "usage payer read");
        if (r == NULL)
            goto out;
        struct payer *p = &pv[payers[i].index];
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        p->missing = ok && r->element[0]->type == REDIS_REPLY_NIL;
        if (ok && !p->missing &&
            (redis_reply_i64(r->element[0], &p->bal.plan_credits_micros) == -1 ||
             redis_reply_i64(r->element[1], &p->bal.wallet_micros) == -1))
            ok = false;
        if (!ok) {
            log_error("store(redis): usage: the balances of a payer are unreadable");
            freeReplyObject(r);
            /* The other replies are still coming: this connection's
             * stream of replies is out of step. */
            redis_conn_drop(c);
            goto out;
        }
        freeReplyObject(r);
    }
    rc = 0;
out:
    redis_cmd_free(&cmd);
    return rc;
}

/* The first answer of a payer's records in a round puts its belief back
 * where the round started from (the sending had moved it along the chain);
 * every answer after that moves it from there, in order. So a record that
 * was not applied leaves the belief as the records before it left it. */
static void belief_round_start(struct rec_work *w)
{
    struct payer *p = w->payer;
    if (p == NULL || p->answered)
        return;
    p->answered = true;
    p->missing = w->expect_missing;
    if (!w->expect_missing)
        p->bal = w->expect;
}

/* One record's answer in the script's reply, applied to the record's
 * state and its payer's belief. 0 = handled, -1 = failure (logged). */
static int take_reply(const redisReply *r, struct rec_work *w, const char *id)
{
    struct payer *p = w->payer;
    belief_round_start(w);
    if (redis_reply_is(r, "ok")) {
        w->state = REC_OK;
        if (p != NULL && !w->expect_missing) {
            p->bal = w->after;
            p->missing = false;
        }
        return 0;
    }
    /* Not applied, the balances left as they were. */
    if (redis_reply_is(r, "duplicate")) {
        w->state = REC_DUP;
        return 0;
    }
    if (redis_reply_is(r, "saturate")) {
        w->exact = true;
        return 0;
    }
    if (redis_reply_is(r, "retry"))
        return 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        redis_reply_is(r->element[0], "conflict") && p != NULL) {
        atomic_fetch_add_explicit(&cas_conflicts, 1, memory_order_relaxed);
        if (r->element[1]->type == REDIS_REPLY_NIL) {
            p->missing = true;
            return 0;
        }
        if (redis_reply_i64(r->element[1], &p->bal.plan_credits_micros) == 0 &&
            redis_reply_i64(r->element[2], &p->bal.wallet_micros) == 0) {
            p->missing = false;
            return 0;
        }
    }
    char safe[ID_MAX];
    if (r->type == REDIS_REPLY_ERROR)
        log_error("store(redis): usage record %s: %.*s",
                  log_safe(id, strlen(id), safe, sizeof(safe)), (int)MIN(r->len, 200), r->str);
    else
        log_error("store(redis): usage record %s: unexpected reply",
                  log_safe(id, strlen(id), safe, sizeof(safe)));
    return -1;
}

/* The reply of one script call (records idx[0 .. k)). 1 = Redis needs the
 * script loaded (nothing done), 0 = handled, -1 = failure (logged; the
 * outcome of its records is unknown: a retry settles them by id). */
static int take_call_reply(const redisReply *r, struct usage_record *records, struct rec_work *w,
                           const size_t *idx, size_t k)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == k) {
        int rc = 0;
        for (size_t j = 0; j < k; j++)
            if (take_reply(r->element[j], &w[idx[j]], records[idx[j]].id) == -1)
                rc = -1;
        return rc;
    }
    if (redis_reply_noscript(r)) {
        for (size_t j = 0; j < k; j++)
            belief_round_start(&w[idx[j]]);
        return 1;
    }
    char safe[ID_MAX];
    const char *id = records[idx[0]].payer_id;
    if (r->type == REDIS_REPLY_ERROR)
        log_error("store(redis): usage records of payer %s: %.*s",
                  log_safe(id, strlen(id), safe, sizeof(safe)), (int)MIN(r->len, 200), r->str);
    else
        log_error("store(redis): usage records of payer %s: unexpected reply",
                  log_safe(id, strlen(id), safe, sizeof(safe)));
    return -1;
}

int store_redis_usage_write(struct store *s, struct usage_record *records, size_t n,
                            size_t *duplicates, struct usage_record_lines *lines)
{
    struct redis_conn *c = store_redis_conn(s);
    *duplicates = 0;
    if (c == NULL)
        return STORE_ERR_INTERNAL;
    if (n == 0)
        return STORE_OK;
    redis_conn_settle(c);
    int status = STORE_ERR_INTERNAL;
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    struct redis_cmd cmd = {0};
    struct usage_record_lines text = {0};
    int64_t *saved = malloc(2 * n * sizeof(*saved));
    struct rec_work *w = calloc(n, sizeof(*w));
    size_t *sent = malloc(n * sizeof(*sent));
    struct call *calls = malloc(n * sizeof(*calls));
    struct group *groups = malloc(n * sizeof(*groups));
    struct payer *pv = calloc(n, sizeof(*pv));
    struct name_slot *payers = calloc(slots, sizeof(*payers));
    struct name_slot *gnames = calloc(slots, sizeof(*gnames));
    struct name_slot *ids = calloc(slots, sizeof(*ids));
    if (saved == NULL || w == NULL || sent == NULL || calls == NULL || groups == NULL ||
        pv == NULL || payers == NULL || gnames == NULL || ids == NULL) {
        log_error("store(redis): out of memory writing usage");
        goto done;
    }
    size_t npayers = 0, ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        struct usage_record *r = &records[i];
        saved[2 * i] = r->charged_plan_credits_micros;
        saved[2 * i + 1] = r->charged_wallet_micros;
        w[i].next = NO_REC;
        struct name_slot *id = name_find(ids, slots - 1, r->id);
        if (id->name != NULL) {
            w[i].state = REC_DUP_IN_BATCH;
            continue;
        }
        id->name = r->id;
        id->index = i;
        struct name_slot *gs = name_find(gnames, slots - 1, r->payer_id);
        if (gs->name == NULL) {
            gs->name = r->payer_id;
            gs->index = ngroups;
            groups[ngroups++] = (struct group){.head = i, .tail = i};
        } else {
            w[groups[gs->index].tail].next = i;
            groups[gs->index].tail = i;
        }
        if (!charge_needed(r->billed_byok, r->no_charge, r->cost_micros))
            continue;
        struct name_slot *ps = name_find(payers, slots - 1, r->payer_id);
        if (ps->name == NULL) {
            ps->name = r->payer_id;
            ps->index = npayers;
            pv[npayers++].id = r->payer_id;
        }
        w[i].payer = &pv[ps->index];
    }
    if (npayers > 0 && load_payers(c, payers, slots, pv) == -1)
        goto done;

    size_t todo = n;
    for (int round = 0; round < CAS_ROUNDS && todo > 0; round++) {
        size_t nsent = 0, ncalls = 0;
        for (size_t g = 0; g < ngroups; g++) {
            size_t k = 0;
            for (size_t i = groups[g].head; i != NO_REC; i = w[i].next) {
                if (w[i].state == REC_TODO)
                    sent[nsent + k++] = i;
                if (k > 0 && (k == CALL_MAX || w[i].next == NO_REC)) {
                    if (send_call(c, &cmd, &text, records, w, &sent[nsent], k) == -1)
                        goto done;
                    calls[ncalls++] = (struct call){.first = nsent, .count = k};
                    nsent += k;
                    k = 0;
                }
            }
        }
        for (size_t p = 0; p < npayers; p++)
            pv[p].answered = false;
        bool load = false, failed = false;
        for (size_t k = 0; k < ncalls; k++) {
            /* A lost connection leaves the rest unknown (committed or not:
             * the retry finds out, by id); a refused call does not stop
             * the reading, so every record that went through is known. */
            redisReply *r = redis_conn_reply(c, "usage record");
            if (r == NULL)
                goto done;
            int t = take_call_reply(r, records, w, &sent[calls[k].first], calls[k].count);
            freeReplyObject(r);
            failed = failed || t == -1;
            load = load || t == 1;
        }
        if (failed ||
            (load && redis_conn_load(c, store_redis_script(STORE_REDIS_SCRIPT_RECORD)) == -1))
            goto done;
        todo = 0;
        for (size_t i = 0; i < n; i++)
            todo += w[i].state == REC_TODO;
    }
    if (todo > 0) {
        log_error("store(redis): usage: %zu records still contended after %d rounds of "
                  "compare-and-set; the batch is retried later",
                  todo, CAS_ROUNDS);
        goto done;
    }
    status = STORE_OK;
done:
    if (saved != NULL && w != NULL) {
        size_t dups = 0;
        for (size_t i = 0; i < n; i++) {
            struct usage_record *r = &records[i];
            if (w[i].state == REC_OK) {
                /* Committed, so its line goes out even when the batch as a
                 * whole failed (store.h). */
                if (lines != NULL && usage_record_lines_add(lines, r) == -1)
                    log_error("store(redis): out of memory: usage record %s is stored but "
                              "missing from the JSONL lines",
                              r->id);
                if (status == STORE_OK)
                    continue;
            } else {
                dups += w[i].state == REC_DUP || w[i].state == REC_DUP_IN_BATCH;
            }
            r->charged_plan_credits_micros = saved[2 * i];
            r->charged_wallet_micros = saved[2 * i + 1];
        }
        if (status == STORE_OK)
            *duplicates = dups;
    }
    redis_cmd_free(&cmd);
    usage_record_lines_free(&text);
    free(saved);
    free(w);
    free(sent);
    free(calls);
    free(groups);
    free(pv);
    free(payers);
    free(gnames);
    free(ids);
    return status;
}

/* The record texts of ids (an array reply), parsed and appended to arr;
 * only those of tenant_id when not NULL. Stops at limit (> 0) items in
 * arr. -1 when the connection failed. */
static MUST_CHECK int fetch_records(struct redis_conn *c, const redisReply *ids,
                                    const char *tenant_id, int limit, json_t *arr)
{
    if (ids->elements == 0)
        return 0;
    struct redis_cmd cmd = {0};
    redis_cmd_start(&cmd);
    redis_cmd_str(&cmd, "MGET");
    for (size_t i = 0; i < ids->elements; i++)
        redis_cmd_fmt(&cmd, STORE_REDIS_PREFIX "rec:%.*s", (int)ids->element[i]->len,
                      ids->element[i]->str);
    redisReply *r = redis_conn_call(c, &cmd, "usage query");
    redis_cmd_free(&cmd);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        log_error("store(redis): usage query at %s: unexpected reply", redis_conn_name(c));
        return -1;
    }
    for (size_t i = 0; i < r->elements && (limit <= 0 || json_array_size(arr) < (size_t)limit);
         i++) {
        const redisReply *t = r->element[i];
        json_error_t jerr;
        json_t *rec = t->type == REDIS_REPLY_STRING ? json_loadb(t->str, t->len, 0, &jerr) : NULL;
        if (rec == NULL) {
            log_error("store(redis): unreadable usage record skipped");
            continue;
        }
        const char *owner = json_string_value(json_object_get(rec, "tenant_id"));
        if (tenant_id != NULL && (owner == NULL || strcmp(owner, tenant_id) != 0)) {
            json_decref(rec);
            continue;
        }
        if (json_array_append_new(arr, rec) == -1) {
            log_error("store(redis): out of memory reading usage");
            continue;
        }
    }
    freeReplyObject(r);
    return 0;
}

/* Newest first (ts_ms, then id, descending: the order of the SQLite
 * backend), from the index the filters choose. Tenant and session
 * together: the session's index (sessions are per tenant, so other
 * tenants' records there are rare) filtered by tenant, page by page. */
int store_redis_usage_query(struct store *s, const char *tenant_id, const char *session_id,
                            int limit, json_t **out)
{
    struct redis_conn *c = store_redis_conn(s);
    *out = NULL;
    if (c == NULL)
        return STORE_ERR_INTERNAL;
    json_t *arr = json_array();
    if (arr == NULL)
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    const char *filter = tenant_id != NULL && session_id != NULL ? tenant_id : NULL;
    long page = filter != NULL ? MAX(limit, 100) : limit > 0 ? limit : -1;
    for (long start = 0;; start += page) {
        redis_cmd_start(&cmd);
        redis_cmd_str(&cmd, "ZREVRANGE");
        if (session_id != NULL)
            redis_cmd_fmt(&cmd, STORE_REDIS_PREFIX "usage:session:%s", session_id);
        else if (tenant_id != NULL)
            redis_cmd_fmt(&cmd, STORE_REDIS_PREFIX "{t:%s}:usage", tenant_id);
        else
            redis_cmd_str(&cmd, STORE_REDIS_PREFIX "usage:ts");
        redis_cmd_fmt(&cmd, "%ld", start);
        redis_cmd_fmt(&cmd, "%ld", page > 0 ? start + page - 1 : -1);
        redisReply *ids = redis_conn_call(c, &cmd, "usage query");
        if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
            if (ids != NULL) {
                log_error("store(redis): usage query at %s: unexpected reply", redis_conn_name(c));
                freeReplyObject(ids);
            }
            redis_cmd_free(&cmd);
            json_decref(arr);
            return STORE_ERR_INTERNAL;
        }
        int rc = fetch_records(c, ids, filter, limit, arr);
        bool last = page <= 0 || ids->elements < (size_t)page;
        freeReplyObject(ids);
        if (rc == -1) {
            redis_cmd_free(&cmd);
            json_decref(arr);
            return STORE_ERR_INTERNAL;
        }
        if (last || (limit > 0 && json_array_size(arr) >= (size_t)limit))
            break;
    }
    redis_cmd_free(&cmd);
    *out = arr;
    return STORE_OK;
}

/* --- balance holds --------------------------------------------------------- */

/* cmd = EVALSHA of a holds script with the payer's holds keys (and its
 * tenant hash first when with_tenant). */
static void cmd_holds(struct redis_cmd *cmd, enum store_redis_script id, const char *payer_id,
                      bool with_tenant)
{
    redis_cmd_evalsha(cmd, store_redis_script(id), with_tenant ? 3 : 2);
    if (with_tenant)
        redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:tenant", payer_id);
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:holds", payer_id);
    redis_cmd_fmt(cmd, STORE_REDIS_PREFIX "{t:%s}:holdamt", payer_id);
}

static int holds_failed(struct redis_conn *c, const char *what, redisReply *r)
{
    if (r == NULL)
        return STORE_ERR_INTERNAL;
    if (r->type == REDIS_REPLY_ERROR)
        log_error("store(redis): %s at %s: %.*s", what, redis_conn_name(c), (int)MIN(r->len, 200),
                  r->str);
    else
        log_error("store(redis): %s at %s: unexpected reply", what, redis_conn_name(c));
    freeReplyObject(r);
    return STORE_ERR_INTERNAL;
}

int store_redis_admit(struct store *s, const char *payer_id, const char *hold_id,
                      int64_t hold_micros, int64_t ttl_ms, enum store_redis_admit *out,
                      int64_t *available)
{
    struct redis_conn *c = store_redis_conn(s);
    if (c == NULL || hold_micros < 0 || ttl_ms <= 0 || hold_id[0] == '\0')
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    cmd_holds(&cmd, STORE_REDIS_SCRIPT_ADMIT, payer_id, true);
    redis_cmd_str(&cmd, "0"); /* no live sets */
    redis_cmd_str(&cmd, hold_id);
    redis_cmd_i64(&cmd, hold_micros);
    redis_cmd_i64(&cmd, ttl_ms);
    redisReply *r =
        redis_conn_eval(c, store_redis_script(STORE_REDIS_SCRIPT_ADMIT), &cmd, "hold admit");
    redis_cmd_free(&cmd);
    int64_t avail;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        redis_reply_i64(r->element[1], &avail) == -1)
        return holds_failed(c, "hold admit", r);
    if (redis_reply_is(r->element[0], "admitted"))
        *out = STORE_REDIS_ADMITTED;
    else if (redis_reply_is(r->element[0], "no_funds"))
        *out = STORE_REDIS_NO_FUNDS;
    else if (redis_reply_is(r->element[0], "no_payer"))
        *out = STORE_REDIS_NO_PAYER;
    else
        return holds_failed(c, "hold admit", r);
    if (available != NULL)
        *available = avail;
    freeReplyObject(r);
    return STORE_OK;
}

int store_redis_release(struct store *s, const char *payer_id, const char *hold_id, bool *released)
{
    struct redis_conn *c = store_redis_conn(s);
    if (c == NULL)
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    cmd_holds(&cmd, STORE_REDIS_SCRIPT_RELEASE, payer_id, false);
    redis_cmd_str(&cmd, hold_id);
    redisReply *r =
        redis_conn_eval(c, store_redis_script(STORE_REDIS_SCRIPT_RELEASE), &cmd, "hold release");
    redis_cmd_free(&cmd);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return holds_failed(c, "hold release", r);
    if (released != NULL)
        *released = r->integer > 0;
    freeReplyObject(r);
    return STORE_OK;
}

int store_redis_held(struct store *s, const char *payer_id, int64_t *held)
{
    struct redis_conn *c = store_redis_conn(s);
    if (c == NULL)
        return STORE_ERR_INTERNAL;
    struct redis_cmd cmd = {0};
    cmd_holds(&cmd, STORE_REDIS_SCRIPT_HELD, payer_id, false);
    redisReply *r =
        redis_conn_eval(c, store_redis_script(STORE_REDIS_SCRIPT_HELD), &cmd, "hold sum");
    redis_cmd_free(&cmd);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return holds_failed(c, "hold sum", r);
    *held = r->integer;
    freeReplyObject(r);
    return STORE_OK;
}
