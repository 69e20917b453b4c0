/* ephemeral.h - proxy-issued ephemeral tokens for browsers (DESIGN §4a): a
 * voice widget gets an "ek_…" token instead of a key. The token is single
 * use, expires, and carries what was decided when it was minted: the
 * tenant and proxy key, the session's pinned decision, the model and the
 * session config the caller posted (sent upstream as the session's first
 * message). Only a SHA-256 of each token is kept. Process-wide, shared by
 * the workers (sharded mutexes, held only for a copy); a restart forgets
 * every token (they live seconds to minutes).
 *
 * Fleet mode keeps the grants in Redis instead (fleet.h single-use values,
 * named by ephemeral_token_name, as ephemeral_grant_encode's text): a token
 * minted on one instance opens its session on any, once. */
#ifndef BYOK_EPHEMERAL_H
#define BYOK_EPHEMERAL_H

#include "common.h"
#include "provider.h"
#include "session.h"

#define EPHEMERAL_PREFIX    "ek_"
#define EPHEMERAL_TOKEN_MAX 64
#define EPHEMERAL_NAME_MAX  65 /* hex SHA-256 + NUL */
/* What a refused token is told. */
#define EPHEMERAL_UNKNOWN "the ephemeral token is unknown, expired or already used: mint a new one"

struct ephemeral_grant {
    const struct provider *provider;
    char tenant_id[ID_MAX];
    char key_id[ID_MAX];
    char session_id[SESSION_MAX]; /* X-Session-Id at the mint, "" none */
    struct session_pin pin;       /* the decision for every slot */
    char model[MODEL_MAX];
    char *first_message;   /* malloc'd, or NULL; freed by ephemeral_grant_free */
    int64_t expires_at_ms; /* Unix ms */
};

/* max_tokens bounds memory; a full table refuses new tokens. */
MUST_CHECK int ephemeral_init(size_t max_tokens);
void ephemeral_shutdown(void);

/* Stores g (takes ownership of g->first_message, also on failure) and
 * writes its token ("ek_" + 43 base64url characters) into token. -1 when
 * the table is full or randomness fails. */
MUST_CHECK int ephemeral_put(struct ephemeral_grant *g, char token[EPHEMERAL_TOKEN_MAX]);
/* Takes the grant of a token: found, not expired, and never taken before.
 * The caller frees out->first_message with ephemeral_grant_free. -1
 * otherwise (unknown, expired, already used). */
MUST_CHECK int ephemeral_take(const char *token, size_t len, struct ephemeral_grant *out);
void ephemeral_grant_free(struct ephemeral_grant *g);
/* A new token ("ek_" + 43 base64url characters of 32 random bytes); -1
 * when randomness fails. */
MUST_CHECK int ephemeral_token_new(char token[EPHEMERAL_TOKEN_MAX]);
/* The name a token is kept under: the hex SHA-256 of it (the token itself
 * is never stored). -1 when it is not a token. */
MUST_CHECK int ephemeral_token_name(const char *token, size_t len, char name[EPHEMERAL_NAME_MAX]);
/* A grant as text and back (JSON: provider, tenant, key, session, pin as
 * resolve_pin_encode's text, model, first_message, expires_at_ms). encode:
 * malloc'd (the caller wipes and frees it), NULL when out of memory.
 * decode: -1 when the text is not a grant of a known provider; the caller
 * frees out with ephemeral_grant_free. */
char *ephemeral_grant_encode(const struct ephemeral_grant *g);
MUST_CHECK int ephemeral_grant_decode(const char *text, size_t len, struct ephemeral_grant *out);
/* True when s looks like one of our tokens (the prefix). */
bool ephemeral_is_token(const char *s, size_t len);
/* Drops expired tokens (called from a timer). */
void ephemeral_sweep(void);
size_t ephemeral_count(void);

#endif
