/* usage_journal.h - the usage queue's crash journal.
 *
 * A record is queued for the usage writer when its request ends (the client
 * has its reply) and committed a group-commit linger later. So that a
 * kill -9 in between loses nothing, every queued record is also copied, as
 * its spool line, into a ring in a file of /dev/shm mapped into memory
 * (usage.c names it after the spool directory), and the writer marks how
 * far the records are committed (or spooled). A store into shared memory:
 * no syscall per record. The file outlives the process, so the next
 * start copies the records after the mark into a spool file and the
 * writer's spool replay stores and charges them, each once (record ids are
 * idempotent in both stores; a record committed just before the kill comes
 * back a duplicate).
 *
 * Not against a power loss: the ring is in memory (the store's commits are
 * synced). Should it be on a disk's file system after all (a path passed
 * to usage_journal_open), a journal left by another boot
 * (/proc/sys/kernel/random/boot_id), whose pages may be torn, is set aside
 * unread.
 *
 * Not thread-safe: usage.c appends under its queue lock (a memcpy: the
 * line is formatted before), so the ring's order is the queue's, which the
 * writer's mark relies on (it covers a prefix of both). One process per
 * journal: an exclusive flock. */
#ifndef BYOK_USAGE_JOURNAL_H
#define BYOK_USAGE_JOURNAL_H

#include "common.h"
#include "usage_record.h"

/* The ring's capacity in bytes: ~8,000 records of ~1 KB, about half a
 * second at full load (the writer is normally a linger behind). A record
 * that finds the ring full is queued unjournaled (counted). Its pages are
 * in the proxy's RSS (shared memory). */
#define USAGE_JOURNAL_BYTES (8u * 1024u * 1024u)

/* What opening found. */
struct usage_journal_open {
    size_t recovered;      /* spool lines appended to the caller's buffer */
    bool truncated;        /* an entry could not be read: none after it was */
    bool set_aside;        /* a journal of another boot, or unreadable: renamed */
    char aside_path[4200]; /* ... to this (path.<ms>.stale) */
};

/* Opens path (creating the file, its blocks allocated so that a full file
 * system cannot fault a store; an existing one must be a regular file of
 * this user with mode 0600), takes it, and appends to
 * recovered the spool line of every record a previous process left past
 * its mark. boot_id: NULL for the kernel's (tests pass their own);
 * capacity: the ring's bytes (USAGE_JOURNAL_BYTES; tests pass less).
 * 0 when the journal is on; -1 with *err (caller frees) when it cannot be:
 * the writer then runs without it. The caller must store what was
 * recovered durably (a spool file) before it calls usage_journal_start. */
MUST_CHECK int usage_journal_open(const char *path, const char *boot_id, size_t capacity,
                                  struct usage_record_lines *recovered,
                                  struct usage_journal_open *found, char **err);
/* Empties the ring (the recovered records are the caller's now). */
void usage_journal_start(void);
/* Whether the journal is open; any thread may ask (a hint: the answer
 * that counts is the append's, under the caller's lock). */
bool usage_journal_on(void);
/* Copies a spool line (usage_record_format_spool's, '\n' included) into
 * the ring (caller serialises; format it before, outside the lock).
 * Returns the ring position after it, for usage_journal_done once its
 * record is committed or spooled; *journaled false (position unchanged)
 * when the journal is off or the ring is full. */
uint64_t usage_journal_append_line(const char *line, size_t len, bool *journaled);
/* Every record up to pos is committed or spooled (the writer thread). */
void usage_journal_done(uint64_t pos);
/* Unmaps and releases the file; what is past the mark stays for the next
 * start (a stop that gave records up). With nothing past it, the file is
 * removed. */
void usage_journal_close(void);

#endif
