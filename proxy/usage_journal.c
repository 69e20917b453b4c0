/* usage_journal.c - the usage queue's crash journal (usage_journal.h): a
 * ring of spool lines in a mapped file, a mark the writer moves, and the
 * recovery of what a killed process left past its mark.
 *
 * File: one header page, then the ring. Positions are logical byte offsets
 * that only grow (the ring offset is position % capacity). An entry is a
 * 16-byte header (its own position, its length) and its spool line, padded
 * to 8 bytes; an entry never wraps: one that would not fit before the end
 * leaves a wrap marker (length WRAP_LEN) there, or nothing when even the
 * header would not fit. head is stored after the entry is whole, so
 * recovery reads exactly the entries from done to head.
 *
 * The file is on tmpfs (usage.c puts it in /dev/shm): a ring on a disk's
 * file system was written back by the kernel all the time (~20 MB/s at
 * full load) and its pages, write-protected after each writeback, faulted
 * again on the request path (+5 us a record at 16 connections). tmpfs keeps
 * it in memory, which is all a kill -9 needs, and a reboot clears it. */
#include "common.h"
#include "usage_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC     "BYOKJRN1"
#define VERSION   1u
#define HDR_BYTES 4096u
#define ENTRY_HDR 16u
#define WRAP_LEN  UINT32_MAX
#define BOOT_MAX  48
/* The largest entry (the longest line and its header): a ring holds two at least. */
#define ENTRY_MAX (ENTRY_HDR + ((USAGE_SPOOL_LINE_MAX + 7u) & ~(size_t)7u))

struct header {
    char magic[8];
    uint32_t version;
    uint32_t unused;
    uint64_t capacity;
    char boot_id[BOOT_MAX];
    _Atomic uint64_t head; /* end of the last whole entry */
    _Atomic uint64_t done; /* records before it are committed or spooled */
};

struct entry {
    uint64_t pos;
    uint32_t len;
    uint32_t unused;
};

static struct {
    int fd;
    char *map; /* NULL = off */
    size_t map_len;
    struct header *hdr;
    char *ring;
    uint64_t capacity;
    uint64_t head;   /* appenders' copy of hdr->head */
    uint64_t resume; /* where the recovered entries end */
    char path[4096];
    _Atomic bool on; /* map != NULL, for readers outside the caller's lock */
} jr = {.fd = -1};

static uint64_t align8(uint64_t n)
{
    return (n + 7u) & ~(uint64_t)7u;
}

static void kernel_boot_id(char *out)
{
    out[0] = '\0';
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return;
    ssize_t n = read(fd, out, BOOT_MAX - 1);
    close(fd);
    if (n <= 0) {
        out[0] = '\0';
        return;
    }
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

static void unmap(void)
{
    if (jr.map != NULL)
        munmap(jr.map, jr.map_len);
    jr.map = NULL;
    jr.hdr = NULL;
    jr.ring = NULL;
}

/* populate: the ring's pages faulted in now, not one by one on the
 * request path (its first lap cost a worker ~10 us a record). */
static MUST_CHECK int map_file(size_t len, bool populate)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0),
                   jr.fd, 0);
    if (m == MAP_FAILED)
        return -1;
    jr.map = m;
    jr.map_len = len;
    jr.hdr = m;
    jr.ring = jr.map + HDR_BYTES;
    return 0;
}

/* The entries from done to head as spool lines into out, their count in
 * *n; *truncated when one could not be read (nothing after it can be).
 * -1 when the positions are not what this code writes (nothing added). */
static MUST_CHECK int read_entries(struct usage_record_lines *out, size_t *n, bool *truncated)
{
    const struct header *h = jr.hdr;
    uint64_t cap = h->capacity, p = atomic_load(&h->done), head = atomic_load(&h->head);
    size_t start = out->len;
    *n = 0;
    if (p > head || head - p > cap || (p & 7u) != 0)
        return -1;
    while (p < head) {
        uint64_t off = p % cap;
        if (cap - off < ENTRY_HDR) {
            p += cap - off;
            continue;
        }
        struct entry e;
        memcpy(&e, jr.ring + off, sizeof(e));
        if (e.pos == p && e.len == WRAP_LEN) {
            p += cap - off;
            continue;
        }
        const char *text = jr.ring + off + ENTRY_HDR;
        if (e.pos != p || e.len == 0 || e.len > cap - off - ENTRY_HDR ||
            e.len > USAGE_SPOOL_LINE_MAX || text[e.len - 1] != '\n' ||
            memchr(text, '\n', e.len - 1) != NULL) {
            *truncated = true;
            break;
        }
        if (usage_record_lines_add_text(out, text, e.len - 1) == -1) {
            out->len = start;
            *n = 0;
            return -1;
        }
        (*n)++;
        p += align8(ENTRY_HDR + e.len);
    }
    return 0;
}

static bool header_ok(const struct header *h, size_t file_len)
{
    return memcmp(h->magic, MAGIC, sizeof(h->magic)) == 0 && h->version == VERSION &&
           h->capacity >= 2 * ENTRY_MAX && h->capacity % 8 == 0 &&
           h->capacity == file_len - HDR_BYTES;
}

int usage_journal_open(const char *path, const char *boot_id, size_t capacity,
                       struct usage_record_lines *recovered, struct usage_journal_open *found,
                       char **err)
{
    char boot[BOOT_MAX];
    const char *what = "opening";
    const char *why = NULL; /* instead of errno's text */
    size_t start = recovered->len;
    *found = (struct usage_journal_open){0};
    *err = NULL;
    usage_journal_close();
    capacity = (size_t)align8(capacity);
    if (capacity < 2 * ENTRY_MAX) {
        errno = EINVAL;
        goto fail;
    }
    if (boot_id != NULL)
        snprintf(boot, sizeof(boot), "%s", boot_id);
    else
        kernel_boot_id(boot);
    if (boot[0] == '\0') {
        /* Without it a journal could not be told from another boot's. */
        what = "reading the boot id for";
        errno = ENOENT;
        goto fail;
    }
    jr.fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (jr.fd == -1)
        goto fail;
    what = "locking";
    if (flock(jr.fd, LOCK_EX | LOCK_NB) == -1) {
        if (errno == EWOULDBLOCK)
            why = "another process holds it";
        goto fail;
    }
    struct stat st;
    what = "reading";
    if (fstat(jr.fd, &st) == -1)
        goto fail;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        /* A shared directory (/dev/shm): only a file of our own is read. */
        what = "trusting";
        why = "not a regular file of this user with mode 0600";
        goto fail;
    }
    uint64_t resume = 0; /* where the old ring ends: the new one goes on there */
    if ((size_t)st.st_size > HDR_BYTES) {
        if (map_file((size_t)st.st_size, false) == -1)
            goto fail;
        bool ok = header_ok(jr.hdr, (size_t)st.st_size);
        bool empty = ok && atomic_load(&jr.hdr->head) == atomic_load(&jr.hdr->done);
        bool readable = ok && !empty && strcmp(jr.hdr->boot_id, boot) == 0 &&
                        read_entries(recovered, &found->recovered, &found->truncated) == 0;
        if (ok && (empty || readable)) {
            resume = align8(atomic_load(&jr.hdr->head));
        } else {
            /* Another boot's (its pages may be torn), or not ours: kept for
             * a human, never read. */
            unmap();
            snprintf(found->aside_path, sizeof(found->aside_path), "%s.%lld.stale", path,
                     (long long)now_ms());
            what = "setting aside";
            if (rename(path, found->aside_path) == -1)
                goto fail;
            found->set_aside = true;
            close(jr.fd);
            jr.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            what = "recreating";
            if (jr.fd == -1 || flock(jr.fd, LOCK_EX | LOCK_NB) == -1)
                goto fail;
        }
        unmap();
    }
    /* Every block allocated now: a store into a hole of a full disk would
     * be a SIGBUS. */
    what = "allocating";
    size_t len = HDR_BYTES + capacity;
    if (ftruncate(jr.fd, (off_t)len) == -1)
        goto fail;
    int rc = posix_fallocate(jr.fd, 0, (off_t)len);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    what = "mapping";
    if (map_file(len, true) == -1)
        goto fail;
    if (!header_ok(jr.hdr, len) || jr.hdr->capacity != capacity) {
        /* New, or resized: what it held is in recovered already. */
        memcpy(jr.hdr->magic, MAGIC, sizeof(jr.hdr->magic));
        jr.hdr->version = VERSION;
        jr.hdr->capacity = capacity;
        atomic_store(&jr.hdr->done, resume);
    }
    /* done stays where it was until usage_journal_start: the recovered
     * records are only here until the caller has stored them. */
    atomic_store(&jr.hdr->head, resume);
    snprintf(jr.hdr->boot_id, sizeof(jr.hdr->boot_id), "%s", boot);
    jr.capacity = capacity;
    jr.head = jr.resume = resume;
    snprintf(jr.path, sizeof(jr.path), "%s", path);
    atomic_store(&jr.on, true);
    return 0;
fail:;
    int e = errno;
    unmap();
    if (jr.fd != -1)
        close(jr.fd);
    jr.fd = -1;
    recovered->len = start;
    found->recovered = 0;
    if (asprintf(err, "%s the usage queue journal %s failed: %s", what, path,
                 why != NULL ? why : strerror(e)) == -1)
        *err = NULL;
    return -1;
}

void usage_journal_start(void)
{
    usage_journal_done(jr.resume);
}

bool usage_journal_on(void)
{
    return atomic_load_explicit(&jr.on, memory_order_relaxed);
}

uint64_t usage_journal_append_line(const char *line, size_t len, bool *journaled)
{
    *journaled = false;
    if (jr.map == NULL)
        return 0;
    if (len == 0 || len > USAGE_SPOOL_LINE_MAX || line[len - 1] != '\n')
        return jr.head; /* not a spool line: recovery could not read it back */
    uint64_t need = align8(ENTRY_HDR + len);
    uint64_t cap = jr.capacity, p = jr.head, done = atomic_load(&jr.hdr->done);
    uint64_t off = p % cap;
    uint64_t skip = cap - off < need ? cap - off : 0;
    if (p + skip + need - done > cap)
        return jr.head; /* full: the writer is far behind */
    if (skip > 0) {
        if (skip >= ENTRY_HDR) {
            struct entry wrap = {.pos = p, .len = WRAP_LEN};
            memcpy(jr.ring + off, &wrap, sizeof(wrap));
        }
        p += skip;
        off = 0;
    }
    memcpy(jr.ring + off + ENTRY_HDR, line, len);
    struct entry e = {.pos = p, .len = (uint32_t)len};
    memcpy(jr.ring + off, &e, sizeof(e));
    jr.head = p + need;
    atomic_store_explicit(&jr.hdr->head, jr.head, memory_order_release);
    *journaled = true;
    return jr.head;
}

void usage_journal_done(uint64_t pos)
{
    if (jr.map != NULL && pos > atomic_load_explicit(&jr.hdr->done, memory_order_relaxed))
        atomic_store_explicit(&jr.hdr->done, pos, memory_order_release);
}

void usage_journal_close(void)
{
    /* Nothing left past the mark (a clean stop): the file goes, so that
     * stopped proxies leave no memory behind in /dev/shm. */
    if (jr.map != NULL && atomic_load(&jr.hdr->done) == atomic_load(&jr.hdr->head) &&
        jr.path[0] != '\0')
        unlink(jr.path);
    atomic_store(&jr.on, false);
    unmap();
    if (jr.fd != -1)
        close(jr.fd); /* releases the flock */
    jr.fd = -1;
    jr.capacity = jr.head = jr.resume = 0;
    jr.path[0] = '\0';
}
