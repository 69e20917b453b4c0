/* check.h - BYOK Check Status (DESIGN §6, POST /admin/tenants/{id}/byok/check):
 * one tiny real call per configured slot through the configured upstream
 * URL, run asynchronously on the caller's event base through an upstream
 * pool, reported per slot as ok / error (with the provider's reason) /
 * not_configured.
 *
 *   check_start --> per slot: open key, build headers, wipe key, upstream_start
 *                       |                                            |
 *                       |         on_head / on_data (first 8 KiB) <--+
 *                       v                                            |
 *                  deadline timer --cancel late calls--> finish <-- on_done (last)
 *                                                          |
 *                                                    done_cb(result)
 *
 * Each slot provider declares its call (struct provider_check): e.g. a
 * 1-token completion, a short speech request, a voices list on the key's
 * region. */
#ifndef BYOK_CHECK_H
#define BYOK_CHECK_H

#include "common.h"
#include "config.h"
#include "provider.h"
#include "store.h"
#include "upstream.h"

#include <event2/event.h>
#include <jansson.h>

#define CHECK_SLOTS       PROVIDER_SLOT_MAX /* indexed by slot number (provider.h) */
#define CHECK_DEADLINE_MS 10000             /* per call */
#define CHECK_DETAIL_MAX  300               /* longest provider message quoted in a detail */

enum check_target_kind {
    CHECK_TARGET_NOT_CONFIGURED = 0, /* the slot selects no connection */
    CHECK_TARGET_MISSING,            /* it selects a connection that does not exist */
    CHECK_TARGET_CONNECTION,         /* it selects conn */
};

struct check_target {
    enum check_target_kind kind;
    char connection_id[ID_MAX];   /* MISSING and CONNECTION: the selected id */
    struct store_connection conn; /* CONNECTION: the record (sealed key) */
};

struct check_run;

/* Receives the report {"<slot provider>":{…}, …}
 * (each {status, detail, connection_id?, http_status?}) and takes ownership
 * of it. Called exactly once, from a timer callback of the event base (never
 * from inside check_start or an upstream callback); the run is freed right
 * after it returns, so check_cancel() must not be called for it any more. */
typedef void (*check_done_cb)(json_t *report, void *arg);

/* Starts the calls for targets[CHECK_SLOTS] (copied) on pool, whose event
 * base is base; each call gets deadline_ms. Each connection's key is opened
 * only to build its request headers and wiped right after. pool, cfg and
 * base are borrowed until done_cb or check_cancel(). Returns NULL when out
 * of memory (nothing started, done_cb never called). */
MUST_CHECK struct check_run *check_start(struct upstream_pool *pool, struct event_base *base,
                                         const struct config *cfg,
                                         const struct check_target targets[CHECK_SLOTS],
                                         int deadline_ms, check_done_cb done_cb, void *arg);

/* Cancels the transfers still running and frees the run without calling
 * done_cb (the admin client went away). Never call from inside an upstream
 * callback. check_cancel(NULL) is a no-op. */
void check_cancel(struct check_run *r);

/* --- Pure helpers (exposed for unit tests) --------------------------------- */

/* Writes the check URL of slot provider p into out (its first host; region
 * for providers with regions, re-checked). -1 when p has no check call, the
 * region is refused, or out is too small. */
MUST_CHECK int check_build_url(const struct config *cfg, const struct provider *p,
                               const char *region, char *out, size_t out_size);

/* Extracts the provider's error message from an error reply body in its
 * own shape (provider->error_message), else the body text itself.
 * Control characters become spaces, the result is valid UTF-8 (invalid bytes
 * become '?') and at most CHECK_DETAIL_MAX bytes (cut at a character
 * boundary, "..." marks the cut). out gets "" when there is nothing. */
void check_error_message(const struct provider *p, const char *body, size_t len, char *out,
                         size_t out_size);

#endif
