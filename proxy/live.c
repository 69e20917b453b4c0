/* live.c - live-session counts per tenant (live.h). */
#include "common.h"
#include "live.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

struct entry {
    struct entry *next;
    char tenant_id[ID_MAX];
    int64_t open;
};

static struct {
    pthread_mutex_t mu;
    struct entry *buckets[BUCKETS];
} lv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct entry *find(const char *id, bool create)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    struct entry **b = &lv.buckets[h % BUCKETS];
    struct entry *e = *b;
    while (e != NULL && strcmp(e->tenant_id, id) != 0)
        e = e->next;
    if (e != NULL || !create)
        return e;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", id);
    e->next = *b;
    *b = e;
    return e;
}

int live_acquire(const char *tenant_id, int64_t limit, const char *owner_id, int64_t owner_limit,
                 struct live_slot *out, const char **which)
{
    memset(out, 0, sizeof(*out));
    *which = NULL;
    bool has_owner = owner_id != NULL && owner_id[0] != '\0';
    int rc = -1;
    pthread_mutex_lock(&lv.mu);
    struct entry *t = find(tenant_id, true);
    struct entry *o = has_owner ? find(owner_id, true) : NULL;
    if (t == NULL || (has_owner && o == NULL)) {
        *which = "out of memory";
    } else if (limit > 0 && t->open >= limit) {
        *which = tenant_id;
    } else if (o != NULL && owner_limit > 0 && o->open >= owner_limit) {
        *which = owner_id;
    } else {
        t->open++;
        if (o != NULL)
            o->open++;
        rc = 0;
    }
    pthread_mutex_unlock(&lv.mu);
    if (rc == 0) {
        snprintf(out->tenant_id, sizeof(out->tenant_id), "%s", tenant_id);
        if (has_owner)
            snprintf(out->owner_id, sizeof(out->owner_id), "%s", owner_id);
        out->held = true;
    }
    return rc;
}

void live_release(struct live_slot *slot)
{
    if (!slot->held)
        return;
    pthread_mutex_lock(&lv.mu);
    struct entry *t = find(slot->tenant_id, false);
    if (t != NULL && t->open > 0)
        t->open--;
    if (slot->owner_id[0] != '\0') {
        struct entry *o = find(slot->owner_id, false);
        if (o != NULL && o->open > 0)
            o->open--;
    }
    pthread_mutex_unlock(&lv.mu);
    slot->held = false;
}

int64_t live_count(const char *tenant_id)
{
    pthread_mutex_lock(&lv.mu);
    struct entry *e = find(tenant_id, false);
    int64_t n = e != NULL ? e->open : 0;
    pthread_mutex_unlock(&lv.mu);
    return n;
}
