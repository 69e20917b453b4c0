// ws_azure.test.mjs - the official Microsoft Speech SDK over WebSocket
// through the proxy (PROVIDERS.md §3.3-3.4): STT and TTS with the proxy key
// as the SDK's subscription key (Node sends it as a header and in the query:
// both removed), the resolved key injected, the host chosen by the key's
// region (platform eastus, a BYOK connection in westeurope), audio seconds
// from the framed audio and SSML characters in the records.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sdk from 'microsoft-cognitiveservices-speech-sdk';
import { providersSetup } from './lib/providers.mjs';
import { makeWav, randomHex } from './lib/util.mjs';

let h, mock;
before(async () => {
  h = await providersSetup({ providers: ['azure_speech'] });
  mock = h.mocks.azure_speech;
});
after(async () => { await h?.teardown(); });

const proxyUrl = (service, path) => `ws://127.0.0.1:${h.proxy.port}/azure/${service}/${service}${path}`;

const recognize = (url, key, wav) => new Promise((resolve, reject) => {
  const cfg = sdk.SpeechConfig.fromEndpoint(new URL(url), key);
  cfg.speechRecognitionLanguage = 'en-US';
  const r = new sdk.SpeechRecognizer(cfg, sdk.AudioConfig.fromWavFileInput(wav));
  r.recognizeOnceAsync((res) => { r.close(); resolve(res); }, (e) => { r.close(); reject(e); });
});
const speak = (url, key, text) => new Promise((resolve, reject) => {
  const cfg = sdk.SpeechConfig.fromEndpoint(new URL(url), key);
  const s = new sdk.SpeechSynthesizer(cfg, null);
  s.speakTextAsync(text, (res) => { s.close(); resolve(res); }, (e) => { s.close(); reject(e); });
});

const creds = (rec) => rec.credentials.map((c) => ({ ...c, name: c.name.toLowerCase() }));

async function tenant(id, extra = {}) {
  await h.proxy.admin.createTenant({ id, name: id, wallet_micros: 10_000_000, ...extra });
  return (await h.proxy.admin.createKey(id)).key;
}

test('STT (universal v2) with the platform key in eastus: recognized, key swapped, audio seconds metered', async () => {
  const key = await tenant('az-stt');
  const mark = mock.sockets.length;
  const res = await recognize(proxyUrl('stt', '/speech/universal/v2'), key, makeWav(1));
  assert.equal(res.reason, sdk.ResultReason.RecognizedSpeech, res.errorDetails);
  assert.equal(res.text, mock.config.stt.text);
  const rec = mock.socketsSince(mark)[0];
  await rec.done;
  assert.equal(rec.region, 'eastus');
  assert.equal(rec.sub, '/stt/speech/universal/v2');
  assert.equal(rec.query.language, 'en-US');
  assert.deepEqual(creds(rec), [{ in: 'header', name: 'ocp-apim-subscription-key', value: h.keys.azure_speech }],
    'only the injected key: the proxy key left both the header and the query');
  assert.ok(!rec.url.includes(key));
  assert.equal(rec.audioSeconds, 1);
  const recs = await h.proxy.admin.waitRecords('az-stt', 2);
  const line = recs.find((r) => r.line === 'stt');
  assert.ok(line, JSON.stringify(recs));
  assert.equal(line.provider, 'azure_speech');
  assert.equal(line.units.audio_seconds, 1);
  assert.equal(line.estimated, false);
  assert.equal(line.billed_to, 'wallet');
  assert.ok(recs.find((r) => r.line === 'platform'));
});

test('TTS with a BYOK connection in westeurope: routed there with its key, SSML characters metered, billed byok', async () => {
  const byok = `az-byok-${randomHex(8)}`;
  mock.acceptKeys = { eastus: [h.keys.azure_speech], westeurope: [byok] };
  const key = await tenant('az-tts', { features: { byok: true } });
  const c = await h.proxy.admin.ok('POST', '/admin/tenants/az-tts/connections', { provider: 'azure_speech', name: 'we', api_key: byok, region: 'westeurope' });
  await h.proxy.admin.ok('PUT', '/admin/tenants/az-tts/byok', { enabled: true, slots: { azure_speech: c.id } });
  const mark = mock.sockets.length;
  const res = await speak(proxyUrl('tts', '/cognitiveservices/websocket/v1'), key, 'hello world');
  assert.equal(res.reason, sdk.ResultReason.SynthesizingAudioCompleted, res.errorDetails);
  assert.equal(res.audioData.byteLength, 44 + mock.config.tts.seconds * 32000, 'audio intact');
  const rec = mock.socketsSince(mark)[0];
  await rec.done;
  assert.equal(rec.region, 'westeurope');
  assert.deepEqual(creds(rec), [{ in: 'header', name: 'ocp-apim-subscription-key', value: byok }]);
  const recs = await h.proxy.admin.waitRecords('az-tts', 2);
  const line = recs.find((r) => r.line === 'tts');
  assert.equal(line.units.characters, rec.characters);
  assert.equal(line.units.characters, 'hello world'.length);
  assert.equal(line.billed_to, 'byok');
  assert.equal(line.connection_id, c.id);
  assert.equal(recs.find((r) => r.line === 'platform').billed_to, 'wallet');
});

test('a wrong proxy key is refused before anything reaches the upstream', async () => {
  const mark = mock.sockets.length;
  const res = await speak(proxyUrl('tts', '/cognitiveservices/websocket/v1'), 'bpk_wrong', 'hello');
  assert.equal(res.reason, sdk.ResultReason.Canceled);
  assert.match(res.errorDetails, /401/);
  assert.equal(mock.socketsSince(mark).length, 0);
});
