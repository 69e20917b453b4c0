/* resolve.h - who is calling and which key pays (DESIGN §3).
 *
 * resolve_auth() turns a presented proxy key into a tenant; resolve_session()
 * is the one place that decides, for a tenant and a provider, which upstream
 * key is injected and who is billed: agency inheritance, per-slot BYOK with
 * platform fallback and session pinning. resolve_rule() is
 * the pure rule table both it and the admin's /resolve use.
 *
 * Each worker owns one struct resolver (no locking): keys and tenants are
 * cached and the cache is dropped whenever the global store generation moved
 * (every admin write bumps it), so a revoked key fails on the next request on
 * every worker. The balance gate (rule 4) is not taken here: the exchange
 * admits a wallet line once every stage passed (exchange.c, ledger.h). */
#ifndef BYOK_RESOLVE_H
#define BYOK_RESOLVE_H

#include "common.h"
#include "config.h"
#include "provider.h"
#include "crypto.h"
#include "session.h"
#include "store.h"

struct resolver;

/* cfg and store (the worker's own handle) are borrowed for the resolver's
 * lifetime. Caller frees with resolve_free(). */
MUST_CHECK struct resolver *resolve_new(const struct config *cfg, struct store *store);
void resolve_free(struct resolver *r);
/* The local pin table's TTL for this resolver's sessions (default
 * session_ttl_s). Fleet mode keeps pins in Redis and the local table as a
 * short cache of them. */
void resolve_set_pin_ttl(struct resolver *r, int seconds);
/* The worker's store handle the resolver reads through. */
struct store *resolve_store(struct resolver *r);

struct resolve_identity {
    char key_id[ID_MAX];
    struct store_tenant tenant;
    bool has_parent;
    struct store_tenant parent; /* valid when has_parent */
    struct store_byok tenant_byok;
    struct store_byok parent_byok; /* valid when has_parent */
};

enum resolve_status {
    RESOLVE_OK = 0,
    RESOLVE_UNAUTHORIZED,    /* unknown, malformed or revoked key */
    RESOLVE_NO_FUNDS,        /* balance gate (402; exchange.c's admission) */
    RESOLVE_NO_PLATFORM_KEY, /* the platform has no key for this provider */
    RESOLVE_STORE_ERROR,
};

MUST_CHECK enum resolve_status resolve_auth(struct resolver *r, const char *key, size_t len,
                                            struct resolve_identity *out);

struct resolve_decision {
    const struct provider *provider;
    bool byok; /* billed_to byok */
    char payer_id[ID_MAX];
    char connection_id[ID_MAX]; /* "" for platform */
    char fallback_reason[64];   /* "" when none */
    const char *reason;         /* static explanation, for /resolve and logs */
    bool new_session;           /* this request started the session */
    /* BYOK: the connection as stored (sealed), opened by resolve_open_key. */
    struct store_connection conn;
    /* Set by resolve_open_key(): the key to inject and its region. */
    const char *api_key;                /* platform: borrowed from cfg; byok: points at secret */
    const char *region;                 /* the key's region (providers with regions); else NULL */
    char secret[CRYPTO_SECRET_MAX + 1]; /* the opened BYOK key; wiped by resolve_done() */
};

/* Decides keys and payer for id's tenant and provider p: the pinned
 * decision of session_id when the session exists (sliding its TTL), else a
 * new decision for every slot, pinned when session_id is given. A BYOK line
 * uses its connection's current secret (so a rotation applies at once; a
 * connection deleted since the pin falls back to the platform key with
 * fallback_reason). session_id may be NULL (the request is its own session).
 * No secret is opened here: resolve_open_key() does that right before the
 * upstream request is built. */
MUST_CHECK enum resolve_status resolve_session(struct resolver *r,
                                               const struct resolve_identity *id,
                                               const struct provider *p, const char *session_id,
                                               struct resolve_decision *out);
/* The same, also giving the session's pin (every slot's decision), for an
 * ephemeral token that carries it to its session. */
MUST_CHECK enum resolve_status
resolve_session_pin(struct resolver *r, const struct resolve_identity *id, const struct provider *p,
                    const char *session_id, struct resolve_decision *out, struct session_pin *pin);
/* A decision from a pin carried by an ephemeral token: what resolve_session
 * does for a new session with that pin. */
MUST_CHECK enum resolve_status resolve_pinned(struct resolver *r, const struct session_pin *pin,
                                              const struct provider *p,
                                              struct resolve_decision *out);
/* The identity of the proxy key key_id without presenting its secret (an
 * ephemeral token minted with it): RESOLVE_UNAUTHORIZED when the key is
 * revoked or gone. */
MUST_CHECK enum resolve_status resolve_key_identity(struct resolver *r, const char *key_id,
                                                    struct resolve_identity *out);
/* Opens the decision's key (BYOK: decrypts the connection's secret into
 * d->secret). -1 when it cannot be opened. */
MUST_CHECK int resolve_open_key(struct resolver *r, struct resolve_decision *d);
/* Wipes the secret of a decision once the upstream request is built. */
void resolve_done(struct resolve_decision *d);

/* A session's pin written down for another instance (fleet mode's pins and
 * ephemeral tokens): compact JSON, slots by provider name, reasons by their
 * index in the rule table. malloc'd text (free()), NULL out of memory. */
char *resolve_pin_encode(const struct session_pin *pin);
/* Its inverse; a slot the text does not name runs on the platform key. -1
 * (and *out zeroed) on malformed text. */
MUST_CHECK int resolve_pin_decode(const char *text, size_t len, struct session_pin *out);

/* --- The rules of DESIGN §3.1-3.2 as a pure function ---------------------- */

struct resolve_inputs {
    const struct store_tenant *tenant;
    const struct store_tenant *parent; /* NULL unless tenant has an existing parent */
    const struct store_byok *tenant_byok;
    const struct store_byok *parent_byok; /* may be NULL when parent is NULL */
};

/* What the rules say for provider p, before any connection is opened. */
struct resolve_rule {
    bool byok; /* a connection is selected for p and BYOK is usable */
    char connection_id[ID_MAX];
    char owner_id[ID_MAX]; /* whose settings and connections apply */
    char payer_id[ID_MAX];
    const char *reason; /* static: why, in words (no secrets) */
};

void resolve_rule(const struct resolve_inputs *in, const struct provider *p,
                  struct resolve_rule *out);

#endif
