/* sim_registry.c - the simulated upstreams, one line each (a module may
 * speak several upstream hosts). Adding one: its sim/sim_<provider>.c, a
 * line here, its tests (README "Simulated providers"). */
#include "common.h"
#include "sim_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

extern const struct sim_provider sim_openai;
extern const struct sim_provider sim_anthropic;
extern const struct sim_provider sim_deepseek;
extern const struct sim_provider sim_elevenlabs;
extern const struct sim_provider sim_cartesia;
extern const struct sim_provider sim_azure_tts;
extern const struct sim_provider sim_azure_stt;
extern const struct sim_provider sim_deepgram;

/* One line a module (clang-format would pack them). */
/* clang-format off */
static const struct sim_provider *const modules[] = {
    &sim_openai,
    &sim_anthropic,
    &sim_deepseek,
    &sim_elevenlabs,
    &sim_cartesia,
    &sim_azure_tts,
    &sim_azure_stt,
    &sim_deepgram,
};
/* clang-format on */

size_t sim_registry_count(void)
{
    return ARRAY_SIZE(modules);
}

const struct sim_provider *sim_registry_at(size_t i)
{
    return i < ARRAY_SIZE(modules) ? modules[i] : NULL;
}

const struct sim_provider *sim_registry_find(const char *upstream)
{
    for (size_t i = 0; i < ARRAY_SIZE(modules); i++)
        if (strcmp(modules[i]->upstream, upstream) == 0)
            return modules[i];
    return NULL;
}

bool sim_supports(const char *upstream)
{
    return sim_registry_find(upstream) != NULL;
}

static char supported[256];
static pthread_once_t supported_once = PTHREAD_ONCE_INIT;

static void supported_build(void)
{
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(modules) && n < sizeof(supported); i++)
        n += (size_t)snprintf(supported + n, sizeof(supported) - n, "%s%s", i ? ", " : "",
                              modules[i]->upstream);
}

const char *sim_supported(void)
{
    pthread_once(&supported_once, supported_build);
    return supported;
}
