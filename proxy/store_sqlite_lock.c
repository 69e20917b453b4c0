/* store_sqlite_lock.c - one process per SQLite store (DESIGN §7): an
 * exclusive flock(2) on "<path>.lock" for the process's life, with the
 * holder's pid in it for the message a second process gets. The proxy and
 * --rotate-master-key take it before their first connection; it also lets
 * the balance ledger (ledger.h) be the whole truth in SQLite mode. */
#include "common.h"
#include "store.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct store_lock {
    int fd; /* "<path>.lock", flock(LOCK_EX) held */
};

/* The pid written in a lock file, or 0 when unreadable. */
static long lock_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = NULL;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

int store_sqlite_lock(const char *path, struct store_lock **out, char **err)
{
    char *lock_path = NULL;
    int fd = -1;
    *out = NULL;
    *err = NULL;

    if (fs_make_dirs(path, true) == -1) {
        if (asprintf(err, "cannot create the directory of the store %s: %s", path,
                     strerror(errno)) == -1)
            *err = NULL;
        goto failed;
    }
    if (asprintf(&lock_path, "%s.lock", path) == -1) {
        lock_path = NULL;
        *err = strdup("out of memory locking the store");
        goto failed;
    }
    /* A file of its own: flock() on the database file would be fine with
     * SQLite's fcntl() locks, but a second descriptor of it is exactly what
     * must not exist. O_CLOEXEC: no child may inherit the lock. */
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1) {
        if (asprintf(err, "cannot open the store's lock file %s: %s", lock_path, strerror(errno)) ==
            -1)
            *err = NULL;
        goto failed;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? lock_holder(fd) : 0;
        int n;
        if (e != EWOULDBLOCK)
            n = asprintf(err, "cannot lock the store's lock file %s: %s", lock_path, strerror(e));
        else if (pid > 0)
            n = asprintf(err,
                         "the store %s is in use by another byok-proxy (pid %ld holds %s): one "
                         "process per store",
                         path, pid, lock_path);
        else
            n = asprintf(err,
                         "the store %s is in use by another byok-proxy (another process holds "
                         "%s): one process per store",
                         path, lock_path);
        if (n == -1)
            *err = NULL;
        goto failed;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == -1 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("store(sqlite): cannot write our pid into %s: %s", lock_path, strerror(errno));

    /* Nobody else holds the store and this process has no connection yet:
     * the one moment the file may be created by hand, with a mode that
     * keeps balances and key hashes private (its -wal and -shm copy it).
     * O_EXCL: an existing file is never opened here. */
    int db_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (db_fd != -1) {
        close(db_fd);
    } else if (errno != EEXIST) {
        if (asprintf(err, "cannot create the store %s: %s", path, strerror(errno)) == -1)
            *err = NULL;
        goto failed;
    }
    struct store_lock *l = malloc(sizeof(*l));
    if (l == NULL) {
        *err = strdup("out of memory locking the store");
        goto failed;
    }
    l->fd = fd;
    *out = l;
    free(lock_path);
    return 0;
failed:
    if (fd != -1)
        close(fd); /* drops the flock, if taken */
    free(lock_path);
    return -1;
}

void store_sqlite_unlock(struct store_lock *l)
{
    if (l == NULL)
        return;
    /* The file stays: removing it would let a starting process lock a
     * fresh file while another still holds the old one. */
    close(l->fd);
    free(l);
}
