/* provider.c - names of the providers and which of them are BYOK slots. */
#include "common.h"

#include "provider.h"

#include <string.h>

const char *const provider_names[PROVIDER__COUNT] = {
    [PROVIDER_OPENAI] = "openai",
    [PROVIDER_ELEVENLABS] = "elevenlabs",
    [PROVIDER_AZURE_SPEECH] = "azure_speech",
    [PROVIDER_DEEPGRAM] = "deepgram",
    [PROVIDER_ANTHROPIC] = "anthropic",
    [PROVIDER_CARTESIA] = "cartesia",
    [PROVIDER_DEEPSEEK] = "deepseek",
};

const char *provider_name(enum provider_id p)
{
    if ((unsigned)p >= PROVIDER__COUNT)
        return "unknown";
    return provider_names[p];
}

int provider_parse(const char *name, enum provider_id *out)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(provider_names); i++) {
        if (strcmp(name, provider_names[i]) == 0) {
            *out = (enum provider_id)i;
            return 0;
        }
    }
    return -1;
}

bool provider_is_slot(enum provider_id p)
{
    return p == PROVIDER_OPENAI || p == PROVIDER_ELEVENLABS || p == PROVIDER_AZURE_SPEECH;
}
