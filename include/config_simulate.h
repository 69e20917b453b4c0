/* config_simulate.h - the config's "simulate" section: how simulated
 * upstreams (sim.h) behave, and whether their usage records charge
 * balances. Defaults at the top of the section, overrides per upstream
 * under "providers" (keys as in "upstreams": openai, azure_speech_tts, ...):
 *
 *   "simulate": {"charge": false, "tls": false, "seed": 42,
 *                "ttfb_ms": 0, "tokens_per_s": 0, "reply_tokens": 16,
 *                "audio_rtf": 0, "errors": {"429": 0, "500": 0, "reset": 0},
 *                "providers": {"openai": {"ttfb_ms": 300, "errors": {"429": 0.5}}}}
 *
 * An override replaces the keys it names (one error rate replaces that
 * status's rate only). Rates and the real-time factor are kept as integer
 * millionths. */
#ifndef BYOK_CONFIG_SIMULATE_H
#define BYOK_CONFIG_SIMULATE_H

#include "common.h"
#include "config_json.h"
#include "provider.h"

/* The placeholder platform key injected for a simulated provider that has
 * none configured (the simulator wants a key where the provider does). */
#define CONFIG_SIM_PLATFORM_KEY "sim-platform-key"

/* What a simulated reply may turn into instead of a success. */
enum config_sim_error {
    CONFIG_SIM_ERR_429 = 0, /* the provider's rate-limit error */
    CONFIG_SIM_ERR_500,     /* the provider's server error */
    CONFIG_SIM_ERR_RESET,   /* the connection cut in the middle of the reply */
    CONFIG_SIM_ERR_KINDS,
};

/* How one simulated upstream behaves. */
struct config_sim_tunables {
    int64_t ttfb_ms;       /* request complete -> first byte of the reply */
    int64_t tokens_per_s;  /* generated text tokens per second; 0 = all at once */
    int64_t reply_tokens;  /* tokens of a generated reply (fewer when the request caps it) */
    int64_t audio_rtf_ppm; /* audio real-time factor in millionths (wall-clock time per
                            * second of audio: 500000 = twice real time); 0 = all at once */
    int64_t error_ppm[CONFIG_SIM_ERR_KINDS]; /* per reply, in millionths; sum <= 10^6 */
};

struct config_simulate {
    bool present;  /* the file has a "simulate" section */
    bool charge;   /* records of simulated lines charge balances (default false) */
    bool tls;      /* serve over TLS with an ephemeral self-signed certificate (sim_tls.h) */
    bool seeded;   /* "seed" given: runs repeat; else one drawn at start */
    uint64_t seed; /* 0..2^63-1 */
    struct config_sim_tunables defaults;
    /* Per upstream host (registry order), the defaults with its overrides. */
    struct config_sim_tunables hosts[PROVIDER_MAX][PROVIDER_HOST_MAX];
};

/* Reads the section obj (borrowed; NULL: absent, everything default) into
 * out. -1 with the error in p->err, naming the key path ("simulate.…"). */
MUST_CHECK int config_simulate_parse(struct config_json *p, json_t *obj,
                                     struct config_simulate *out);

/* The tunables of an upstream host by its config key ("openai"); NULL for
 * an unknown key. */
const struct config_sim_tunables *config_simulate_tunables(const struct config_simulate *s,
                                                           const char *upstream_key);

#endif
