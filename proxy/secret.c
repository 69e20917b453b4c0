/* secret.c - secrets kept out of reach: process hardening (no core file,
 * not dumpable), memory excluded from core dumps, and variables taken out of
 * the process environment by wiping them in place (secret.h). */
#include "common.h"
#include "secret.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

extern char **environ;

/* In front of every secret_alloc() buffer, at the start of its mapping. 16
 * bytes, so what follows is aligned for anything. */
struct secret_head {
    size_t map_len;
    size_t pad;
};

int secret_harden_process(char *err, size_t err_size)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
        snprintf(err, err_size, "cannot make the process non-dumpable (prctl): %s",
                 strerror(errno));
        return -1;
    }
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) == -1) {
        snprintf(err, err_size, "cannot turn core files off (setrlimit RLIMIT_CORE): %s",
                 strerror(errno));
        return -1;
    }
    return 0;
}

void *secret_alloc(size_t size)
{
    static atomic_bool warned;
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    if (size > SIZE_MAX - sizeof(struct secret_head) - pg)
        return NULL;
    size_t len = (sizeof(struct secret_head) + size + pg - 1) / pg * pg;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    /* Core files are off already (secret_harden_process); this keeps the
     * keys out of one even if someone turns them back on. */
    if (madvise(base, len, MADV_DONTDUMP) == -1 && !atomic_exchange(&warned, true))
        log_warn("secret: MADV_DONTDUMP failed (%s): keys may appear in a core dump",
                 strerror(errno));
    /* Not swapped out, when RLIMIT_MEMLOCK allows; a few pages at most. */
    (void)mlock(base, len);
    struct secret_head *h = base;
    h->map_len = len;
    return h + 1;
}

void secret_free(void *p)
{
    if (p == NULL)
        return;
    struct secret_head *h = (struct secret_head *)p - 1;
    size_t len = h->map_len;
    OPENSSL_cleanse(h, len);
    (void)munlock(h, len);
    munmap(h, len);
}

char *secret_strdup(const char *s)
{
    size_t n = strlen(s);
    char *copy = secret_alloc(n + 1);
    if (copy != NULL)
        memcpy(copy, s, n + 1);
    return copy;
}

void secret_env_wipe(const char *name)
{
    size_t nlen = strlen(name);
    /* Every entry of that name (a parent may pass one twice), not only the
     * one getenv() finds. */
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, nlen) == 0 && (*e)[nlen] == '=') {
            char *v = *e + nlen + 1;
            OPENSSL_cleanse(v, strlen(v));
        }
    }
    unsetenv(name);
}

char *secret_env_take(const char *name, bool *oom)
{
    const char *val = getenv(name);
    char *copy = val != NULL ? secret_strdup(val) : NULL;
    if (oom != NULL)
        *oom = val != NULL && copy == NULL;
    secret_env_wipe(name);
    return copy;
}
