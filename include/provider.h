/* provider.h - everything the proxy knows of one upstream API, declared in
 * one module per provider (proxy/providers/<name>.c) and listed once in the
 * registry (proxy/providers/registry.c). The core - routing, the data
 * plane, config, admin, Check Status, store, metrics - reads these
 * declarations and never names a provider.
 *
 * A provider declares:
 *   - its name (a contract: config keys, usage records) and whether it is a
 *     BYOK slot;
 *   - route prefixes on the proxy, each to one upstream host (Azure Speech
 *     has two: TTS and STT, both templates with {region});
 *   - its served endpoints (method + path pattern -> line, REST meter or
 *     WebSocket meter): on a wallet line nothing else is forwarded (DESIGN
 *     §4a);
 *   - where a client may put a credential (header, header with a scheme,
 *     query parameter, subprotocol, first WebSocket message) - the proxy key
 *     is taken from there and every such position is removed;
 *   - how the real key is injected, headers that must not cross a wallet
 *     line, the request-id headers of its replies;
 *   - its error shape, its Check Status call, its config keys and which
 *     pricing fields it bills.
 *
 * Adding a provider: one file in proxy/providers/, one line in registry.c,
 * its tests (README "Adding a provider"). */
#ifndef BYOK_PROVIDER_H
#define BYOK_PROVIDER_H

#include "common.h"

#include <jansson.h>

#define PROVIDER_MAX      16 /* providers in the registry, at most */
#define PROVIDER_SLOT_MAX 8  /* BYOK slots, at most */
#define PROVIDER_HOST_MAX 2  /* upstream hosts of one provider */
#define PROVIDER_HDR_MAX  4  /* platform headers of one provider (config) */

struct httpparse_request;
struct meter_ops;
struct ws_meter_ops;
struct provider;

/* Where a client may put a credential (PROVIDERS.md §0). Names are matched
 * as the provider matches them: header names and subprotocols without
 * regard to case, query names after percent-decoding and without regard to
 * case. */
enum provider_cred_kind {
    PROVIDER_CRED_HEADER = 0,       /* "<name>: <key>" */
    PROVIDER_CRED_SCHEME,           /* "<name>: <scheme> <key>" (Authorization) */
    PROVIDER_CRED_QUERY,            /* "?<name>=<key>" */
    PROVIDER_CRED_SUBPROTOCOL,      /* Sec-WebSocket-Protocol item "<name><key>" (a prefix) */
    PROVIDER_CRED_SUBPROTOCOL_PAIR, /* Sec-WebSocket-Protocol items "<name>", "<key>" */
    PROVIDER_CRED_FIRST_MESSAGE,    /* member "<name>" of the first WebSocket text message,
                                     * "<scheme> <key>" when scheme is set */
};

struct provider_cred {
    enum provider_cred_kind kind;
    const char *name;
    const char *scheme; /* SCHEME and FIRST_MESSAGE: "Bearer", "Token"; else NULL */
};

/* An upstream host: one key of the config's "upstreams". */
struct provider_host {
    const char *config_key;  /* "openai", "azure_speech_tts" */
    const char *default_url; /* "https://api.openai.com" */
    bool region;             /* a template with "{region}" (the key's region) */
    const char *line;        /* line of a call to an endpoint that declares none */
};

/* A path prefix on the proxy. Longest prefixes are tried first. */
struct provider_route {
    const char *prefix; /* matched at a segment boundary: "/openai/v1" */
    size_t strip;       /* bytes dropped before the path is appended upstream */
    int host;           /* index into hosts */
};

enum provider_endpoint_flags {
    PROVIDER_EP_WS = 1u << 0,   /* a WebSocket upgrade (method GET) */
    PROVIDER_EP_MINT = 1u << 1, /* mints an ephemeral token (DESIGN §4a): answered by the
                                 * proxy, nothing goes upstream */
};

/* A served endpoint (DESIGN §4a): what a wallet line may reach. */
struct provider_endpoint {
    const char *method;  /* "POST", "GET" */
    const char *pattern; /* the path after the route prefix; "{}" = one non-empty segment */
    int host;            /* only on this host (-1: any) */
    const char *line;    /* llm | embeddings | tts | stt | realtime */
    const struct meter_ops *meter;           /* REST metering; NULL: not metered */
    const struct ws_meter_ops *ws;           /* WebSocket metering (PROVIDER_EP_WS) */
    unsigned flags;                          /* PROVIDER_EP_* */
    const char *const *wallet_refused_query; /* query names refused on a wallet line (NULL) */
    /* The query parameter naming the model the call is priced at, or NULL.
     * A wallet line must name it at most once (DESIGN §4a: the model priced
     * is the model served). */
    const char *model_query;
};

/* A header the platform may set for its own account on wallet lines
 * (platform_keys.<name>.<config_key>), e.g. OpenAI-Organization. */
struct provider_platform_header {
    const char *config_key; /* "organization" */
    const char *header;     /* "OpenAI-Organization" */
};

/* BYOK Check Status: the cheapest call that proves a key works. */
struct provider_check {
    const char *method;       /* "POST" / "GET" */
    const char *path;         /* appended to the upstream base (with its query) */
    const char *body;         /* NULL: none */
    const char *content_type; /* of the body */
    const char *what;         /* "a 1-token gpt-4o-mini completion", for the detail */
};

/* Ephemeral tokens (DESIGN §4a): how a PROVIDER_EP_MINT request is read and
 * answered. The proxy keeps the decision; the provider's shape goes around
 * its own token. */
struct provider_mint {
    /* Reads a mint request (path after the prefix, body): the model, the
     * message to send upstream first when the session opens (a malloc'd
     * text, or NULL), the token's lifetime in seconds. -1 with a message
     * saying what is wrong. */
    int (*parse)(const char *path, size_t path_len, const char *body, size_t len,
                 char model[MODEL_MAX], char **first_message, int *ttl_s, char *err,
                 size_t err_size);
    /* The reply around token. Caller owns the result. */
    json_t *(*reply)(const char *path, size_t path_len, const char *body, size_t len,
                     const char *token, int64_t expires_at_s, const char *model);
};

/* Pricing fields a provider bills (struct config_price), as a bit set. */
enum provider_price_field {
    PROVIDER_PRICE_INPUT = 1u << 0,
    PROVIDER_PRICE_CACHED_INPUT = 1u << 1,
    PROVIDER_PRICE_OUTPUT = 1u << 2,
    PROVIDER_PRICE_AUDIO_INPUT = 1u << 3,
    PROVIDER_PRICE_AUDIO_OUTPUT = 1u << 4,
    PROVIDER_PRICE_CHARACTERS = 1u << 5,
    PROVIDER_PRICE_AUDIO_MINUTE = 1u << 6,
    PROVIDER_PRICE_SESSION_MINUTE = 1u << 7,
};

struct provider {
    const char *name;    /* contract: config keys, records ("openai") */
    const char *display; /* for people ("OpenAI") */
    bool slot;           /* BYOK-capable (DESIGN §2) */

    const struct provider_host *hosts;
    size_t n_hosts;
    const struct provider_route *routes;
    size_t n_routes;
    const struct provider_endpoint *endpoints;
    size_t n_endpoints;
    const struct provider_cred *creds; /* where the proxy key may be, in order */
    size_t n_creds;
    /* Query names that may carry a credential without being a place the
     * proxy key is taken from (Azure's "Authorization=Bearer%20..."):
     * removed too. NULL-terminated, may be NULL. */
    const char *const *extra_cred_query;

    /* The injected key: "<inject_header>: <inject_scheme> <key>" (scheme
     * NULL: the key alone). inject_pick, when set, chooses per request (a
     * provider that accepts two styles answers in the client's). */
    const char *inject_header;
    const char *inject_scheme;
    void (*inject_pick)(const struct httpparse_request *h, const char **header,
                        const char **scheme);

    /* Reply headers that carry the provider's request id, in preference
     * order; NULL-terminated. */
    const char *const *request_id_headers;
    /* Request headers removed on wallet lines (they would choose where the
     * platform's key acts) and reply headers never returned on them (they
     * identify the platform's account); NULL-terminated, may be NULL. */
    const char *const *wallet_request_headers;
    const char *const *wallet_response_headers;
    /* Headers the config may set for the platform's account on wallet lines. */
    const struct provider_platform_header *platform_headers;
    size_t n_platform_headers;
    /* Request headers passed to the upstream WebSocket handshake besides the
     * subprotocols (the rest of a browser's upgrade request stays here);
     * NULL-terminated. */
    const char *const *ws_forward_headers;
    /* Subprotocols the proxy answers the client with when offered (OpenAI's
     * "realtime"); NULL-terminated, may be NULL. */
    const char *const *ws_answer_protocols;

    /* Keys and connections carry a region (the upstream host depends on
     * it). check_region: 0 when valid, else -1 with a message naming the
     * expected form. */
    bool region;
    int (*check_region)(const char *region, char *err, size_t err_size);
    const char *region_example;  /* "eastus" */
    const char *key_env_example; /* "OPENAI_API_KEY", for config messages */

    /* The provider's error shape for an error the proxy produces. type and
     * code as OpenAI spells them ("invalid_request_error", "invalid_api_key").
     * Caller owns the result. */
    json_t *(*error_body)(int status, const char *type, const char *code, const char *message);
    /* The same error as one message of its WebSocket sessions (the proxy
     * ends a session: balance, access). NULL: error_body's shape. */
    json_t *(*ws_error)(const char *type, const char *code, const char *message);
    /* The message inside an error reply of this provider (borrowed from
     * root), or NULL. */
    const char *(*error_message)(json_t *root);

    const struct provider_check *check; /* slots: Check Status; else NULL */
    const struct provider_mint *mint;   /* with PROVIDER_EP_MINT endpoints; else NULL */
    unsigned price_fields;              /* PROVIDER_PRICE_* it bills */
};

/* --- the registry ---------------------------------------------------------- */

size_t provider_count(void);
/* i < provider_count(); never NULL. */
const struct provider *provider_at(size_t i);
/* Position in the registry (indexes arrays of per-provider state). */
size_t provider_index(const struct provider *p);
/* NULL when name is not a provider. */
const struct provider *provider_find(const char *name);
const char *provider_name(const struct provider *p);
/* True when p takes a credential in a position of this kind. */
bool provider_has_cred(const struct provider *p, enum provider_cred_kind kind);

/* BYOK slots, numbered in registry order. */
size_t provider_slot_count(void);
const struct provider *provider_slot_at(size_t i);
/* The slot number of p, or -1 when p is not a slot. */
int provider_slot_index(const struct provider *p);
/* "openai, elevenlabs, azure_speech" (for messages). */
const char *provider_slot_list(void);
/* "openai, elevenlabs, ..." (every provider, for messages). */
const char *provider_list(void);

/* Checks the registry once at start (prefix overlaps, host indexes, sizes);
 * -1 with a message in err. Called by main and the tests. */
MUST_CHECK int provider_registry_check(char *err, size_t err_size);

#endif
