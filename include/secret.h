/* secret.h - secrets kept out of reach (DESIGN §7 "Secrets"): memory for key
 * material that never lands in a core dump, variables taken out of the
 * process environment (wiped in place, not only unset), and the process made
 * non-dumpable with no core file.
 *
 * Why in place: /proc/PID/environ shows the environment block the process
 * was started with, not what unsetenv() leaves in `environ`; only
 * overwriting the bytes of that block takes a secret out of it. */
#ifndef BYOK_SECRET_H
#define BYOK_SECRET_H

#include "common.h"

/* At start, before any secret is read: PR_SET_DUMPABLE 0 (no core file, no
 * /proc/PID/environ, mem or ptrace for other users: the /proc/PID files
 * become root's) and RLIMIT_CORE 0 (soft and hard). -1 with a message in err
 * when either call fails. */
MUST_CHECK int secret_harden_process(char *err, size_t err_size);

/* size zeroed bytes on pages of their own, excluded from core dumps
 * (MADV_DONTDUMP) and locked in RAM when RLIMIT_MEMLOCK allows (never an
 * error when not). One page at least: for a few long-lived keys, not for
 * data. NULL when out of memory. Caller frees with secret_free(). */
MUST_CHECK void *secret_alloc(size_t size);
/* Wipes and unmaps a secret_alloc() buffer. secret_free(NULL) is a no-op. */
void secret_free(void *p);
/* A NUL-terminated copy of s in secret_alloc() memory, or NULL when out of
 * memory. Caller frees with secret_free(). */
MUST_CHECK char *secret_strdup(const char *s);

/* Takes variable `name` out of the environment: copies its value into
 * secret_alloc() memory, overwrites the value bytes of every "name=" entry
 * in place, then unsetenv(). Returns the copy (caller frees with
 * secret_free()), or NULL when the variable is unset or out of memory
 * (*oom tells them apart when not NULL; the variable is wiped either way). */
MUST_CHECK char *secret_env_take(const char *name, bool *oom);
/* Wipes variable `name` in place and unsets it (its value already copied
 * elsewhere). No-op when unset. */
void secret_env_wipe(const char *name);

#endif
