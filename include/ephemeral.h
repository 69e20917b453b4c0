/* ephemeral.h - proxy-issued ephemeral tokens for browsers (DESIGN §4a): a
 * voice widget gets an "ek_…" token instead of a key. The token is single
 * use, expires, and carries what was decided when it was minted: the
 * tenant and proxy key, the session's pinned decision, the model and the
 * session config the caller posted (sent upstream as the session's first
 * message). Only a SHA-256 of each token is kept. Process-wide, shared by
 * the workers (sharded mutexes, held only for a copy); a restart forgets
 * every token (they live seconds to minutes). */
#ifndef BYOK_EPHEMERAL_H
#define BYOK_EPHEMERAL_H

#include "common.h"
#include "provider.h"
#include "session.h"

#define EPHEMERAL_PREFIX    "ek_"
#define EPHEMERAL_TOKEN_MAX 64

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
/* True when s looks like one of our tokens (the prefix). */
bool ephemeral_is_token(const char *s, size_t len);
/* Drops expired tokens (called from a timer). */
void ephemeral_sweep(void);
size_t ephemeral_count(void);

#endif
