/* resolve.h - who is calling and which key pays (DESIGN §3).
 *
 * resolve_auth() turns a presented proxy key into a tenant; resolve_session()
 * is the one place that decides, for a tenant and a provider, which upstream
 * key is injected and who is billed. At this stage every provider runs on the
 * platform key (billed_to wallet); BYOK connections, agency inheritance and
 * session pinning grow inside resolve_session() without its callers changing.
 *
 * Each worker owns one struct resolver (no locking): keys and tenants are
 * cached and the cache is dropped whenever the global store generation moved
 * (every admin write bumps it), so a revoked key fails on the next request on
 * every worker. Payers' balances for the gate are kept too and re-read when
 * the store's balance generation moved (a charged batch was committed); a
 * payer with more than $1 is re-read at most once a second. */
#ifndef BYOK_RESOLVE_H
#define BYOK_RESOLVE_H

#include "common.h"
#include "config.h"
#include "provider.h"
#include "store.h"

struct resolver;

/* cfg and store (the worker's own handle) are borrowed for the resolver's
 * lifetime. Caller frees with resolve_free(). */
MUST_CHECK struct resolver *resolve_new(const struct config *cfg, struct store *store);
void resolve_free(struct resolver *r);

struct resolve_identity {
    char key_id[ID_MAX];
    struct store_tenant tenant;
    bool has_parent;
    struct store_tenant parent; /* valid when has_parent */
};

enum resolve_status {
    RESOLVE_OK = 0,
    RESOLVE_UNAUTHORIZED,    /* unknown, malformed or revoked key */
    RESOLVE_NO_FUNDS,        /* balance gate (402) */
    RESOLVE_NO_PLATFORM_KEY, /* the platform has no key for this provider */
    RESOLVE_STORE_ERROR,
};

MUST_CHECK enum resolve_status resolve_auth(struct resolver *r, const char *key, size_t len,
                                            struct resolve_identity *out);

struct resolve_decision {
    enum provider_id provider;
    bool byok;           /* billed_to byok */
    const char *api_key; /* borrowed from cfg (platform) for the request's lifetime */
    const char *region;  /* azure only; may be NULL */
    char payer_id[ID_MAX];
    char connection_id[ID_MAX]; /* "" for platform */
    char fallback_reason[64];   /* "" when none */
    const char *reason;         /* static explanation, for /resolve and logs */
};

/* Decides keys and payer for a new session (or request) of id's tenant to
 * provider p, and applies the balance gate to wallet lines. session_id may
 * be NULL. */
MUST_CHECK enum resolve_status resolve_session(struct resolver *r,
                                               const struct resolve_identity *id,
                                               enum provider_id p, const char *session_id,
                                               struct resolve_decision *out);

#endif
