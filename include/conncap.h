/* conncap.h - caps on open downstream connections, shared by the threads
 * that accept them: at most max_total in all, and at most max_per_client
 * from one client address (an IPv4 address; an IPv6 address counts by its
 * /64, the block one subscriber usually gets; IPv4-mapped IPv6 as IPv4).
 * A connection enters when it is accepted and leaves when its socket
 * closes, whoever owns it by then (http.c, or a WebSocket session). */
#ifndef BYOK_CONNCAP_H
#define BYOK_CONNCAP_H

#include "common.h"

#include <sys/socket.h>

struct conncap;
struct conncap_entry;

/* One connection's place under the caps. All zero: none (leaving it is a
 * no-op), so an embedded slot needs no initialisation. */
struct conncap_slot {
    struct conncap *cap;
    struct conncap_entry *entry;
};

enum conncap_result {
    CONNCAP_OK = 0,
    CONNCAP_FULL,        /* max_total connections are open */
    CONNCAP_CLIENT_FULL, /* max_per_client are open from this address */
};

/* max_per_client 0: no per-address cap. Returns NULL when out of memory.
 * Caller frees with conncap_free() once every slot has left. */
MUST_CHECK struct conncap *conncap_new(size_t max_total, size_t max_per_client);
/* conncap_free(NULL) is a no-op. */
void conncap_free(struct conncap *cc);

/* Counts a new connection from sa (AF_INET or AF_INET6; another family
 * counts toward the total only). CONNCAP_OK fills *slot; anything else
 * leaves it zeroed and counts nothing. Out of memory for a new address is
 * CONNCAP_FULL (refuse rather than go uncounted). cc NULL: always OK. */
MUST_CHECK enum conncap_result conncap_enter(struct conncap *cc, const struct sockaddr *sa,
                                             struct conncap_slot *slot);
/* The connection closed: gives its place back and zeroes *slot. */
void conncap_leave(struct conncap_slot *slot);

/* Open connections counted now (all addresses); for tests and logs. */
size_t conncap_open(struct conncap *cc);

#endif
