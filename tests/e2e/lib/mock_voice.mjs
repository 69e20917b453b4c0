// mock_voice.mjs - one import for the voice/LLM provider mocks (one file per
// provider under lib/mocks/, all built on lib/mocks/base.mjs) and the TLS
// helper. See tests/e2e/README.md for what each mock records and answers.
export { startMock, fakeAudio, pcmSine } from './mocks/base.mjs';
export { startMockElevenLabs, elevenCharacterCost, elevenError, elevenAudio } from './mocks/elevenlabs.mjs';
export { startMockAzure, azureUrl, azurePath, azureAudio, ssmlCharacters, parseSpeechFrame, speechTextFrame, speechBinaryFrame, AZURE_401 } from './mocks/azure.mjs';
export { startMockDeepgram, deepgramError } from './mocks/deepgram.mjs';
export { startMockAnthropic, anthropicError, messageStreamEvents } from './mocks/anthropic.mjs';
export { startMockCartesia, cartesiaError, cartesiaAudio } from './mocks/cartesia.mjs';
export { startMockRealtime, realtimeUsage } from './mocks/openai_realtime.mjs';
export { makeTestCerts } from './tls.mjs';
