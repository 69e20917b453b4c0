/* provider.h - the provider and slot vocabulary of DESIGN §2. */
#ifndef BYOK_PROVIDER_H
#define BYOK_PROVIDER_H

#include "common.h"

enum provider_id {
    PROVIDER_OPENAI = 0,
    PROVIDER_ELEVENLABS,
    PROVIDER_AZURE_SPEECH,
    PROVIDER_DEEPGRAM,
    PROVIDER_ANTHROPIC,
    PROVIDER_CARTESIA,
    PROVIDER_DEEPSEEK,
    PROVIDER__COUNT
};

/* Indexed by enum provider_id. These names are a contract: the keys of the
 * config's platform_keys and pricing, and the "provider" of usage records. */
extern const char *const provider_names[PROVIDER__COUNT];

/* "openai", "elevenlabs", ... ; never NULL for a valid id. */
const char *provider_name(enum provider_id p);
/* Returns -1 when name is not a provider. */
int provider_parse(const char *name, enum provider_id *out);
/* True for the BYOK-capable providers (openai, elevenlabs, azure_speech). */
bool provider_is_slot(enum provider_id p);

#endif
