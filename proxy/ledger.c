/* ledger.c - the payers' available funds in this process (ledger.h).
 *
 * One entry per payer seen: its balances as last read from the store
 * (funds = plan credits + wallet), what its running lines hold and its
 * uncommitted charges reserve (reserved), and the charges of records that
 * went to the spool (spooled). The balances are read once and then follow
 * every commit of the writer, which subtracts what it charged while it
 * releases the reservation: both under the one mutex, so the gate never
 * sees a charge twice or not at all.
 *
 * A read of the balances that runs while a batch of that payer is being
 * committed cannot know whether it saw the commit: the entry is then read
 * again once the batch is done (stale_after_commit), and the commit's own
 * subtraction is skipped for it. */
#include "common.h"
#include "ledger.h"
#include "charge.h"
#include "store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

struct entry {
    struct entry *next;
    char payer_id[ID_MAX];
    bool loaded;             /* funds is valid */
    bool stale_after_commit; /* read during a commit: read again after it */
    unsigned committing;     /* records of this payer in a store transaction now */
    int64_t funds;           /* plan credits + wallet, as committed */
    int64_t reserved;        /* holds + charges not yet committed */
    int64_t spooled;         /* charges spooled, not yet replayed */
};

static struct {
    pthread_mutex_t mu;
    struct entry *buckets[BUCKETS];
    bool warned_negative;
} lg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t bucket_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

/* Caller holds lg.mu. NULL only when out of memory (create) or absent. */
static struct entry *find(const char *payer_id, bool create)
{
    size_t b = bucket_of(payer_id);
    struct entry *e = lg.buckets[b];
    while (e != NULL && strcmp(e->payer_id, payer_id) != 0)
        e = e->next;
    if (e != NULL || !create || payer_id[0] == '\0')
        return e;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    str_copy(e->payer_id, sizeof(e->payer_id), payer_id);
    e->next = lg.buckets[b];
    lg.buckets[b] = e;
    return e;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Caller holds lg.mu. Bookkeeping that went below zero is a bug: clamp and
 * say so once, rather than hand the payer free funds. */
static void unreserve(struct entry *e, int64_t micros)
{
    e->reserved -= micros;
    if (e->reserved < 0) {
        if (!lg.warned_negative)
            log_error("ledger: reservations of payer %s fell below zero (%lld); reset to 0",
                      e->payer_id, (long long)e->reserved);
        lg.warned_negative = true;
        e->reserved = 0;
    }
}

/* Caller holds lg.mu: the entry's balances, read when it has none. */
static enum ledger_status load(struct store *s, struct entry *e)
{
    if (e->loaded)
        return LEDGER_OK;
    if (s == NULL)
        return LEDGER_STORE_ERROR;
    struct store_tenant t;
    int rc = store_tenant_get(s, e->payer_id, &t);
    if (rc == STORE_ERR_NOT_FOUND)
        return LEDGER_NO_PAYER;
    if (rc != STORE_OK)
        return LEDGER_STORE_ERROR;
    e->funds = sat_add(t.plan_credits_micros, t.wallet_micros);
    e->loaded = true;
    e->stale_after_commit = e->committing > 0;
    return LEDGER_OK;
}

static int64_t available(const struct entry *e)
{
    return sat_add(sat_add(e->funds, -e->reserved), -e->spooled);
}

enum ledger_status ledger_admit(struct store *s, const char *payer_id, int64_t hold_micros)
{
    pthread_mutex_lock(&lg.mu);
    struct entry *e = find(payer_id, true);
    enum ledger_status st = e != NULL ? load(s, e) : LEDGER_STORE_ERROR;
    if (st == LEDGER_OK && available(e) <= 0)
        st = LEDGER_NO_FUNDS;
    if (st == LEDGER_OK)
        e->reserved = sat_add(e->reserved, MAX(hold_micros, (int64_t)0));
    pthread_mutex_unlock(&lg.mu);
    return st;
}

void ledger_release(const char *payer_id, int64_t hold_micros)
{
    if (hold_micros <= 0)
        return;
    pthread_mutex_lock(&lg.mu);
    struct entry *e = find(payer_id, false);
    if (e != NULL)
        unreserve(e, hold_micros);
    pthread_mutex_unlock(&lg.mu);
}

int ledger_available(struct store *s, const char *payer_id, int64_t *funds)
{
    pthread_mutex_lock(&lg.mu);
    struct entry *e = find(payer_id, true);
    int rc = e != NULL && load(s, e) == LEDGER_OK ? 0 : -1;
    if (rc == 0)
        *funds = available(e);
    pthread_mutex_unlock(&lg.mu);
    return rc;
}

void ledger_settle(struct usage_record *r)
{
    int64_t charge =
        charge_needed(r->billed_byok, r->no_charge, r->cost_micros) ? r->cost_micros : 0;
    r->pending_micros = charge;
    if (charge == 0 && r->hold_micros <= 0)
        return;
    pthread_mutex_lock(&lg.mu);
    /* Created if need be: a charge must stay reserved until committed even
     * when the payer's balances were never read here. */
    struct entry *e = find(r->payer_id, true);
    if (e != NULL) {
        e->reserved = sat_add(e->reserved, charge);
        unreserve(e, MAX(r->hold_micros, (int64_t)0));
    } else {
        r->pending_micros = 0;
    }
    pthread_mutex_unlock(&lg.mu);
    r->hold_micros = 0;
}

void ledger_batch_begin(const struct usage_record *recs, size_t n)
{
    pthread_mutex_lock(&lg.mu);
    for (size_t i = 0; i < n; i++) {
        struct entry *e = find(recs[i].payer_id, true);
        if (e != NULL)
            e->committing++;
    }
    pthread_mutex_unlock(&lg.mu);
}

void ledger_batch_end(struct usage_record *recs, size_t n, bool committed)
{
    pthread_mutex_lock(&lg.mu);
    for (size_t i = 0; i < n; i++) {
        struct usage_record *r = &recs[i];
        struct entry *e = find(r->payer_id, false);
        if (e == NULL)
            continue;
        if (committed) {
            int64_t charged = sat_add(r->charged_plan_credits_micros, r->charged_wallet_micros);
            if (e->loaded && !e->stale_after_commit)
                e->funds = sat_add(e->funds, -charged);
            if (r->pending_micros > 0) {
                unreserve(e, r->pending_micros);
            } else {
                /* A replayed record: what was spooled for it is its charge
                 * (ledger_settle), whatever the store charged now. A
                 * duplicate charged nothing now: the store took it before
                 * (a batch whose outcome the writer could not know), so
                 * the balance read here may miss its charge: read again. */
                int64_t was = charge_needed(r->billed_byok, r->no_charge, r->cost_micros)
                                  ? r->cost_micros
                                  : 0;
                e->spooled -= MIN(e->spooled, MAX(was, (int64_t)0));
                if (charged < was)
                    e->stale_after_commit = true;
            }
            r->pending_micros = 0;
        }
        if (e->committing > 0)
            e->committing--;
        if (e->committing == 0 && e->stale_after_commit) {
            e->loaded = false;
            e->stale_after_commit = false;
        }
    }
    pthread_mutex_unlock(&lg.mu);
}

void ledger_batch_spooled(struct usage_record *recs, size_t n)
{
    pthread_mutex_lock(&lg.mu);
    for (size_t i = 0; i < n; i++) {
        struct usage_record *r = &recs[i];
        struct entry *e = r->pending_micros > 0 ? find(r->payer_id, false) : NULL;
        if (e != NULL) {
            unreserve(e, r->pending_micros);
            e->spooled = sat_add(e->spooled, r->pending_micros);
        }
        r->pending_micros = 0;
    }
    pthread_mutex_unlock(&lg.mu);
}

void ledger_invalidate(const char *payer_id)
{
    pthread_mutex_lock(&lg.mu);
    struct entry *e = find(payer_id, false);
    if (e != NULL) {
        if (e->committing > 0)
            e->stale_after_commit = true;
        else
            e->loaded = false;
    }
    pthread_mutex_unlock(&lg.mu);
}

int64_t ledger_held(const char *payer_id)
{
    pthread_mutex_lock(&lg.mu);
    struct entry *e = find(payer_id, false);
    int64_t held = e != NULL ? sat_add(e->reserved, e->spooled) : 0;
    pthread_mutex_unlock(&lg.mu);
    return held;
}

void ledger_reset(void)
{
    pthread_mutex_lock(&lg.mu);
    for (size_t i = 0; i < BUCKETS; i++) {
        struct entry *e = lg.buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        lg.buckets[i] = NULL;
    }
    lg.warned_negative = false;
    pthread_mutex_unlock(&lg.mu);
}
