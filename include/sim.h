/* sim.h - simulated upstreams: small servers that speak a provider's wire
 * protocol (PROVIDERS.md) closely enough for the official SDKs, reached
 * through the proxy's real upstream path (libcurl, the WebSocket client)
 * over loopback, so what is measured is what production runs. Behaviour
 * comes from the config's "simulate" section (config_simulate.h): time to
 * first byte, tokens per second, reply length, audio real-time factor,
 * error rates per status, a seed.
 *
 * Two ways to run it:
 *   - in the proxy: "upstreams": {"openai": "simulate"} starts the simulator
 *     in-process at start-up (main.c), one loopback listener on an
 *     ephemeral port per simulated upstream, and that upstream's URL is the
 *     listener's;
 *   - on its own: build/byok-sim (sim/main.c) prints the URL of each
 *     simulated upstream, for benchmarks and load tests with the proxy
 *     elsewhere ("upstreams": {"openai": "simulate:http://host:port"}).
 *
 * Each simulated upstream has its own thread and event base and answers
 * through the project's own HTTP/1.1 server (http.h) and WebSocket codec
 * (ws.h). The provider modules (sim/sim_<provider>.c) plug in through
 * sim_provider.h; sim/sim.c routes requests to them, checks keys, injects
 * errors and paces replies. */
#ifndef BYOK_SIM_H
#define BYOK_SIM_H

#include "common.h"
#include "config.h"

struct sim;

/* One upstream to simulate. */
struct sim_listen {
    const char *upstream; /* a key of "upstreams": "openai", "azure_speech_tts", ... */
    const char *addr;     /* "127.0.0.1:0" (port 0: the kernel picks one) */
};

/* Starts a listener per entry, each on its own thread. settings and limits
 * are borrowed for the simulator's life; listens for the call. The seed is
 * settings->seed when seeded, else one drawn now (sim_seed). NULL with a
 * message in err naming the upstream or address at fault. Caller frees
 * with sim_stop(). */
MUST_CHECK struct sim *sim_start(const struct config_simulate *settings,
                                 const struct config_limits *limits,
                                 const struct sim_listen *listens, size_t n, char *err,
                                 size_t err_size);
/* The base URL of the i-th upstream as started: "http://127.0.0.1:PORT"
 * ("https://" under simulate.tls),
 * with "/{region}" after it for a regional host (Azure: the region is the
 * first path segment). Borrowed for the simulator's life. */
const char *sim_url(const struct sim *s, size_t i);
/* simulate.tls: the PEM of the simulator's ephemeral self-signed
 * certificate, which every upstream serves (its URLs are https://); the one
 * trust anchor a client needs for them. NULL without TLS. Borrowed for the
 * simulator's life. */
const char *sim_ca_pem(const struct sim *s);
/* The seed the error draws use (settings->seed, or the one drawn). */
uint64_t sim_seed(const struct sim *s);
/* Closes the listeners and every connection (replies in flight are cut),
 * joins the threads and frees. sim_stop(NULL) is a no-op. */
void sim_stop(struct sim *s);

/* True when the simulator speaks this upstream ("openai"). */
bool sim_supports(const char *upstream);
/* The upstream keys it speaks, ", "-separated (for messages). */
const char *sim_supported(void);

#endif
