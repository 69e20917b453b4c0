/* route.h - data-plane routing (DESIGN §4): path prefix → provider and
 * upstream path, where the inbound proxy key sits, and the provider's own
 * error shape for errors the proxy produces. */
#ifndef BYOK_ROUTE_H
#define BYOK_ROUTE_H

#include "common.h"
#include "config.h"
#include "http.h"
#include "meter.h"
#include "provider.h"
#include "upstream.h"

#include <jansson.h>

struct route {
    enum provider_id provider;
    /* Path to append to the upstream base URL, e.g. "/v1/chat/completions"
     * for both "/v1/chat/completions" and "/openai/v1/chat/completions".
     * Points into the request path. */
    const char *upstream_path;
    size_t upstream_path_len;
    bool azure_stt; /* azure_speech: the STT host (else TTS) */
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

/* Writes the request's query without the parameters that carry
 * credentials (Azure's Ocp-Apim-Subscription-Key, api_key, access_token,
 * ...) into out (NUL-terminated); returns its length (0: no query). */
size_t route_forward_query(const struct httpparse_request *h, char *out, size_t out_size);

/* Appends the header that carries key upstream for provider p (Bearer,
 * xi-api-key, Ocp-Apim-Subscription-Key, Token, x-api-key). Returns the new
 * list, or NULL (list freed) on failure. Temporary copies are wiped. */
MUST_CHECK struct curl_slist *route_inject(enum provider_id p, const struct httpparse_request *h,
                                           struct curl_slist *l, const char *key);

/* The upstream base URL of the route: the config's URL, or for Azure the
 * TTS/STT template with {region} replaced (region re-checked against the
 * allow-list). -1 when there is none (no region, not configured). */
MUST_CHECK int route_upstream_base(const struct config *cfg, const struct route *rt,
                                   const char *region, char *out, size_t out_size);

/* Error body in the provider's own shape. type/code as OpenAI spells them
 * ("invalid_request_error", "invalid_api_key"). Caller owns the result. */
json_t *route_error_body(enum provider_id p, int status, const char *type, const char *code,
                         const char *message);

#endif
