/* route.h - the data plane's view of the provider registry (DESIGN §4,
 * §4a): path prefix -> provider, host and upstream path; the served
 * endpoint a request reaches; where the inbound proxy key sits; what of a
 * request never goes upstream (every credential position of every
 * provider, hop-by-hop headers); the injected key; the upstream base URL
 * (a region's host where keys are regional); the provider's error shape. Generic: what is
 * particular to a provider is in its declaration (provider.h). */
#ifndef BYOK_ROUTE_H
#define BYOK_ROUTE_H

#include "common.h"
#include "config.h"
#include "httpparse.h"
#include "provider.h"

#include <curl/curl.h>
#include <jansson.h>

struct route {
    const struct provider *provider;
    int host; /* index into provider->hosts */
    /* Path to append to the upstream base URL, e.g. "/v1/chat/completions"
     * for both "/v1/chat/completions" and "/<prefix>/v1/chat/completions".
     * Points into the request path. */
    const char *upstream_path;
    size_t upstream_path_len;
};

/* Builds the prefix table and the credential sets from the registry; call
 * once before any other route function (main, and unit tests). -1 with a
 * message when the registry is inconsistent. */
MUST_CHECK int route_init(char *err, size_t err_size);

/* "/<prefix>/, /v1/, ..." (every prefix served, for messages). */
const char *route_prefix_list(void);

/* Longest matching prefix; -1 when none (-> 404). */
MUST_CHECK int route_match(const char *path, size_t len, struct route *out);

/* The served endpoint of a request (method and path after the prefix, on
 * the route's host), or NULL. ws: an upgrade request, matched against the
 * WebSocket endpoints only. */
const struct provider_endpoint *route_endpoint(const struct route *rt, const char *method,
                                               size_t method_len, bool ws);

/* True when path has "." or ".." segments or a NUL / backslash: refused
 * (400) so a request cannot walk out of its provider's path space. */
bool route_path_unsafe(const char *path, size_t len);

/* The proxy key a client presented for provider p, from the first of the
 * provider's credential positions that holds one (subprotocols only when
 * ws). Points into the request head. */
struct route_key {
    const char *key; /* NULL when absent */
    size_t len;
    const struct provider_cred *cred; /* the position it came from */
};
void route_credential(const struct provider *p, const struct httpparse_request *h, bool ws,
                      struct route_key *out);

/* True when the named request header must not be forwarded upstream:
 * hop-by-hop headers, headers named in Connection, Host, Content-Length,
 * Transfer-Encoding, Expect, Accept-Encoding, the proxy's own
 * X-Session-Id, every credential header of every provider and api-key;
 * and on a wallet line (byok false) the provider's account-selecting
 * headers. */
bool route_strip_header(const struct provider *p, bool byok, const struct httpparse_request *h,
                        const struct httpparse_header *hd);

/* Writes the request's query without the parameters that carry
 * credentials (any provider's, names percent-decoded and matched without
 * regard to case) into out (NUL-terminated); returns its length (0: no
 * query). -1 when out is too small. */
MUST_CHECK int route_forward_query(const struct httpparse_request *h, char *out, size_t out_size);

#define ROUTE_ANSWER_MAX 64

/* The client's Sec-WebSocket-Protocol items that may go upstream (every
 * credential item removed: prefix forms without regard to case, and the
 * item after a pair name), comma-separated into out; answer gets the item
 * the proxy answers the client with, spelled as the client offered it (the
 * pair name the key came in, or one of the provider's answer protocols
 * offered), or "" for none. -1 when out is too small. */
MUST_CHECK int route_forward_protocols(const struct provider *p, const struct httpparse_request *h,
                                       const struct route_key *key, char *out, size_t out_size,
                                       char answer[ROUTE_ANSWER_MAX]);

/* True when the query holds a parameter a wallet line may not use on this
 * endpoint (ep->wallet_refused_query); *name gets it. */
bool route_wallet_refused_query(const struct provider_endpoint *ep,
                                const struct httpparse_request *h, const char **name);

/* How often the query names ep->model_query: 0 or 1, 2 meaning "more than
 * once", -1 when a value naming it does not percent-decode. */
int route_model_query_count(const struct provider_endpoint *ep, const struct httpparse_request *h);

/* The injected credential as a header name and value ("Bearer <key>") in
 * value (wiped by the caller). h may be NULL (no request to take a style
 * from). -1 when it does not fit. */
MUST_CHECK int route_inject_value(const struct provider *p, const struct httpparse_request *h,
                                  const char *key, const char **name, char *value,
                                  size_t value_size);

/* Appends the injected credential header to l. Returns the new list, or
 * NULL (l freed) on failure. Temporary copies are wiped. */
MUST_CHECK struct curl_slist *route_inject(const struct provider *p,
                                           const struct httpparse_request *h, struct curl_slist *l,
                                           const char *key);

/* The upstream base URL: the config's URL of the route's host, a region
 * template with {region} replaced (region re-checked). -1 when there is
 * none (no region, not configured) or it does not fit. */
MUST_CHECK int route_upstream_base(const struct config *cfg, const struct provider *p, int host,
                                   const char *region, char *out, size_t out_size);

/* The provider's error shape for an error the proxy produces. Caller owns
 * the result. */
json_t *route_error_body(const struct provider *p, int status, const char *type, const char *code,
                         const char *message);

#endif
