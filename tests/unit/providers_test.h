/* providers_test.h - the registry's providers by name, for the unit tests
 * (the core names no provider; tests are about them). */
#ifndef BYOK_TESTS_PROVIDERS_TEST_H
#define BYOK_TESTS_PROVIDERS_TEST_H

#include "provider.h"

#define P_OPENAI       provider_find("openai")
#define P_ELEVENLABS   provider_find("elevenlabs")
#define P_AZURE_SPEECH provider_find("azure_speech")
#define P_DEEPGRAM     provider_find("deepgram")
#define P_ANTHROPIC    provider_find("anthropic")
#define P_CARTESIA     provider_find("cartesia")
#define P_DEEPSEEK     provider_find("deepseek")

/* Slot numbers (indexes of store_byok.slots and session pins). */
#define S_OPENAI       provider_slot_index(P_OPENAI)
#define S_ELEVENLABS   provider_slot_index(P_ELEVENLABS)
#define S_AZURE_SPEECH provider_slot_index(P_AZURE_SPEECH)

#endif
