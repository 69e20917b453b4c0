/* route.h - data-plane routing (DESIGN §4): path prefix → provider and
 * upstream path, where the inbound proxy key sits, and the provider's own
 * error shape for errors the proxy produces. */
#ifndef BYOK_ROUTE_H
#define BYOK_ROUTE_H

#include "common.h"
#include "http.h"
#include "meter.h"
#include "provider.h"

#include <jansson.h>

struct route {
    enum provider_id provider;
    /* Path to append to the upstream base URL, e.g. "/v1/chat/completions"
     * for both "/v1/chat/completions" and "/openai/v1/chat/completions".
     * Points into the request path. */
    const char *upstream_path;
    size_t upstream_path_len;
};

/* Returns -1 when no route matches (→ 404). Only providers whose data plane
 * is built are routed. */
MUST_CHECK int route_match(const char *path, size_t len, struct route *out);

/* What the meter reads for this route (OpenAI-shaped providers). */
enum meter_kind route_meter_kind(const struct route *rt);

/* True when path has "." or ".." segments or a NUL / backslash: refused
 * (400) so a request cannot walk out of its provider's path space. */
bool route_path_unsafe(const char *path, size_t len);

/* Finds the proxy key the client presented for provider p (e.g. the token of
 * "Authorization: Bearer <key>"). Points into the request head; *len 0 when
 * absent. */
const char *route_credential(enum provider_id p, const struct httpparse_request *h, size_t *len);

/* True when the named request header must not be forwarded upstream for
 * provider p: hop-by-hop headers, headers named in Connection, Host,
 * Content-Length, Transfer-Encoding, Expect, the inbound credential headers
 * and the proxy's own X-Session-Id. */
bool route_strip_header(enum provider_id p, const struct httpparse_request *h,
                        const struct httpparse_header *hd);

/* Error body in the provider's own shape. type/code as OpenAI spells them
 * ("invalid_request_error", "invalid_api_key"). Caller owns the result. */
json_t *route_error_body(enum provider_id p, int status, const char *type, const char *code,
                         const char *message);

#endif
