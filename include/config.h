/* config.h - the JSON config file (DESIGN §4b), loaded and validated once at
 * startup; read-only afterwards and shared by every thread. */
#ifndef BYOK_CONFIG_H
#define BYOK_CONFIG_H

#include "common.h"
#include "config_simulate.h"
#include "provider.h"

/* Price of one model, integer micro-USD. Token and character prices are per
 * 1,000,000 units (gpt-4o-mini input = 150000, i.e. $0.15 / 1M tokens);
 * audio is per minute. A price of -1 means "not set" (see pricing.h for the
 * fallbacks). */
struct config_price {
    char *model;      /* exact model name, or a prefix ending in '*' ("gpt-4o-mini*") */
    size_t match_len; /* strlen(model), less the '*' of a prefix */
    bool prefix;      /* model ends in '*' */
    int64_t input_per_1m;
    int64_t cached_input_per_1m;
    int64_t output_per_1m;
    int64_t audio_input_per_1m;
    int64_t audio_output_per_1m;
    int64_t characters_per_1m;
    int64_t audio_per_minute;
    int64_t session_per_minute; /* `platform` line of voice sessions (later issues) */
};

struct config_provider_prices {
    struct config_price *prices;
    size_t n_prices;
};

struct config_platform_key {
    char *key_env; /* name of the environment variable (may be NULL: provider unused) */
    char *key;     /* its value, read at load (secret_alloc memory, out of core dumps);
                      wiped by config_free(); NULL when unset */
    char *region;  /* providers whose hosts depend on the key's region */
    /* Values of the provider's platform headers (provider.h), NULL unset. */
    char *headers[PROVIDER_HDR_MAX];
    /* key is CONFIG_SIM_PLATFORM_KEY: the provider is simulated and the
     * platform has no key of its own for it. */
    bool placeholder;
};

struct config_limits {
    size_t max_request_line;         /* 414 above (default 8192) */
    size_t max_header_bytes;         /* 431 above (default 32768) */
    size_t max_headers;              /* 431 above (default 100) */
    size_t max_body_bytes;           /* 413 above (default 33554432: audio uploads) */
    int header_timeout_ms;           /* request head must arrive within (default 10000) */
    int idle_timeout_ms;             /* keep-alive idle (default 60000) */
    int upstream_connect_timeout_ms; /* default 10000 */
    int upstream_timeout_ms;         /* whole-response deadline, 0 = none (default 600000) */
    int shutdown_timeout_ms;         /* drain deadline on SIGTERM (default 15000) */
    size_t client_high_watermark;    /* pause upstream above (default 262144) */
    /* The whole request body must arrive within this from the end of its
     * head, however it trickles (default 300000: 32 MiB at ~0.9 Mbit/s). */
    int body_timeout_ms;
    /* Open data-plane connections (plain, TLS and WebSocket sessions), in
     * the process and from one client address (IPv6: its /64); above
     * either a new connection is refused at accept (default 8192, 1024). */
    size_t max_connections;
    size_t max_connections_per_client;
    /* First-message credential sockets (the key in the first WebSocket
     * message): that message must be whole within this of the 101
     * (default 2000; else close 1008) and at most this big (default 65536;
     * else close 1009). */
    int ws_first_message_timeout_ms;
    size_t ws_first_message_max_bytes;
};

/* "balance" (DESIGN §3.4): what a wallet line holds while it runs. */
#define CONFIG_HOLD_LINES 7
struct config_balance {
    /* [0] "default", then llm, embeddings, tts, stt, realtime, platform. */
    int64_t hold_micros[CONFIG_HOLD_LINES];
    int64_t ws_grace_micros; /* a socket ends at available funds <= -this */
    int hold_ttl_s;          /* fleet mode: a hold of a dead instance expires */
};

/* What an "upstreams" entry names. */
enum config_upstream_kind {
    CONFIG_UPSTREAM_REAL = 0,   /* a base URL: the provider (or anything speaking it) */
    CONFIG_UPSTREAM_SIM_LOCAL,  /* "simulate": the simulator in this process (main.c starts it
                                 * and sets the URL with config_set_upstream) */
    CONFIG_UPSTREAM_SIM_REMOTE, /* "simulate:<URL>": a byok-sim elsewhere */
};

/* store.on_down (DESIGN §7b): what wallet lines do while Redis is unreachable. */
enum config_on_down {
    CONFIG_ON_DOWN_REFUSE_WALLET = 0, /* 503 in the provider's shape, x-should-retry: true */
    CONFIG_ON_DOWN_SERVE,             /* admitted without a hold, charged at replay */
};

struct config {
    char *path;                                      /* the file it was loaded from */
    char *listen;                                    /* "127.0.0.1:8080" */
    char *admin_listen;                              /* "127.0.0.1:8081" */
    char *tls_listen, *tls_cert_file, *tls_key_file; /* NULL when no "tls" */
    int workers;                                     /* 0 in the file = number of cores */
    char *store_backend;                             /* "sqlite" | "redis" */
    char *store_path;                                /* sqlite */
    char *store_url;                                 /* redis */
    /* Redis (fleet mode, DESIGN §7b); only with backend "redis". */
    char *store_password_env;     /* variable holding the Redis password; NULL = no AUTH */
    char *store_password;         /* its value (secret_alloc memory; config_free wipes it) */
    int store_connect_timeout_ms; /* connecting to Redis (default 1000) */
    int store_timeout_ms;         /* one command's reply (default 1000) */
    enum config_on_down store_on_down;
    char *usage_jsonl_path; /* may be NULL: no JSONL sink */
    char *usage_spool_dir;
    int usage_ws_interval_s; /* socket records every this many seconds (default 30) */
    /* Per provider (registry index) and host: base URL or region template
     * (NULL for a "simulate" entry until the simulator has started). */
    char *upstreams[PROVIDER_MAX][PROVIDER_HOST_MAX];
    enum config_upstream_kind upstream_kind[PROVIDER_MAX][PROVIDER_HOST_MAX];
    char *upstream_ca_file; /* NULL = system store */
    /* simulate.tls: the in-process simulator's certificate (PEM), the trust
     * anchor of the "simulate" hosts only; borrowed from the simulator (main.c
     * sets it after starting it). NULL otherwise. */
    const char *sim_ca_pem;
    struct config_platform_key platform_keys[PROVIDER_MAX];
    int session_ttl_s;
    char *log_level;
    struct config_limits limits;
    struct config_balance balance;
    struct config_provider_prices pricing[PROVIDER_MAX];
    struct config_simulate simulate; /* simulated upstreams' behaviour, charge policy */
};

/* The configured base URL (or template) of p's host; NULL when none. */
const char *config_upstream(const struct config *cfg, const struct provider *p, int host);
/* True when the host's upstream is simulated ("simulate" or "simulate:<URL>"):
 * its records are marked "simulated" (DESIGN §5). */
bool config_upstream_simulated(const struct config *cfg, const struct provider *p, int host);
/* The PEM to trust for p's host instead of upstream_ca_file / the system
 * store: the in-process simulator's certificate for a "simulate" host under
 * simulate.tls; NULL for every other host (verified as usual). */
const char *config_upstream_ca_pem(const struct config *cfg, const struct provider *p, int host);
/* Whether the records of a simulated line charge balances (and its wallet
 * lines take holds and are refused without funds): simulate.charge. */
bool config_simulated_charges(const struct config *cfg);
/* The simulator in this process has started: the base URL of a "simulate"
 * host (a region template for a regional host). Call before any thread reads
 * the config. -1 when out of memory. */
MUST_CHECK int config_set_upstream(struct config *cfg, size_t provider, size_t host,
                                   const char *url);
/* balance.hold_micros of a line (its own entry, else "default"). */
int64_t config_hold_micros(const struct config *cfg, const char *line);
/* The platform key entry of p (key NULL when the platform has none). */
const struct config_platform_key *config_platform_key(const struct config *cfg,
                                                      const struct provider *p);
/* The prices configured for p. */
const struct config_provider_prices *config_prices(const struct config *cfg,
                                                   const struct provider *p);

/* Loads and validates the file. On failure returns NULL and sets *err to a
 * message naming the bad key and what is expected (caller frees with free()).
 * Reads the platform keys from the environment variables the file names; a
 * variable named in the file but missing from the environment is an error.
 * Caller frees the result with config_free(). */
MUST_CHECK struct config *config_load(const char *path, char **err);
/* Same, from a JSON text (used by unit tests). */
MUST_CHECK struct config *config_parse(const char *json_text, char **err);
/* Wipes the platform keys and frees. config_free(NULL) is a no-op. */
void config_free(struct config *cfg);
/* Takes every secret the config named out of the process environment
 * (secret_env_wipe: overwritten in place, then unset): each platform key
 * variable. Call once the config is loaded (it holds the copies); a
 * config_load() after it would find the variables gone. */
void config_wipe_secret_env(const struct config *cfg);

/* Splits store.url, "redis://HOST[:PORT][/DB]" (HOST a name, an IPv4
 * address or a bracketed IPv6 one; PORT default 6379, DB default 0), into
 * its parts. Credentials in the URL are refused (the password comes from
 * store.password_env), as are rediss:// and anything after the DB. -1 with a
 * message in err (size err_size) that never repeats the URL. */
MUST_CHECK int config_parse_redis_url(const char *url, char *host, size_t host_size, int *port,
                                      int *db, char *err, size_t err_size);

/* Splits "host:port" (IPv4, [IPv6] or a name) into its parts. Returns -1 with a
 * message in err (size err_size) on a malformed address. */
MUST_CHECK int config_parse_address(const char *addr, char *host, size_t host_size, int *port,
                                    char *err, size_t err_size);

#endif
