// simulate_speech.test.mjs - simulated Azure Speech and Deepgram in the proxy
// (README "Simulated providers"): "upstreams": {"azure_speech_tts",
// "azure_speech_stt", "deepgram": "simulate"}, no platform key anywhere (the
// placeholder key, and for Azure the placeholder region eastus), the official
// SDKs against the proxy: the Speech SDK's synthesizer and continuous and
// single-shot recognizers over the socket protocol, Azure's REST endpoints,
// Deepgram's prerecorded transcription, live socket and speak. Records carry
// "simulated": true, the units the proxy metered from what the simulator said
// (SSML characters, audio seconds sent, Metadata durations) and charge
// nothing by default; audio_rtf paces TTS audio; an injected reset on a live
// socket ends its record with upstream_error.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sdk from 'microsoft-cognitiveservices-speech-sdk';
import { DeepgramClient } from '@deepgram/sdk';
import { startProxy, newTenant, balances } from './lib/proxy.mjs';
import { costMicros } from './lib/records.mjs';
import { VOICE_PRICES } from './lib/providers.mjs';
import { inProcessUrls } from './lib/sim.mjs';
import { makeWav, wavSeconds } from './lib/util.mjs';

const PRICES = { azure_speech: VOICE_PRICES.azure_speech, deepgram: VOICE_PRICES.deepgram };
// The simulator's arithmetic (sim/sim_speech.h): 60 ms of speech a billed
// character, a transcript word per 400 ms of audio, a phrase / final result
// every 2 s of audio.
const MS_PER_CHAR = 60;
const words = (s) => s.split(/\s+/).filter(Boolean).length;
const wordsFor = (ms) => Math.ceil(ms / 400);

// A proxy with the speech providers simulated and nothing else configured for
// them: no platform_keys entry, no key in the environment.
async function startSimulated(simulate) {
  return startProxy({
    patch: (cfg) => {
      cfg.upstreams = { openai: 'simulate', azure_speech_tts: 'simulate', azure_speech_stt: 'simulate', deepgram: 'simulate' };
      delete cfg.platform_keys;
      Object.assign(cfg.pricing, PRICES);
      cfg.simulate = simulate;
    },
    env: { OPENAI_API_KEY: undefined, AZURE_SPEECH_KEY: undefined, DEEPGRAM_API_KEY: undefined },
  });
}

async function stopClean(proxy) {
  // Exit 0: a clean drain with the simulator stopped after the workers (the
  // sanitizer build also fails here on a leak).
  if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
  proxy?.remove();
}

const wsBase = (proxy) => `ws://127.0.0.1:${proxy.port}`;

function speechConfig(proxy, service, path, key) {
  const cfg = sdk.SpeechConfig.fromEndpoint(new URL(`${wsBase(proxy)}/azure/${service}/${service}${path}`), key);
  if (service === 'stt') cfg.speechRecognitionLanguage = 'en-US';
  return cfg;
}

// speakTextAsync over the proxy: the result and how long it took.
async function speak(proxy, key, text) {
  const s = new sdk.SpeechSynthesizer(speechConfig(proxy, 'tts', '/cognitiveservices/websocket/v1', key), null);
  const t0 = performance.now();
  try {
    const res = await new Promise((resolve, reject) => s.speakTextAsync(text, resolve, reject));
    return { res, ms: performance.now() - t0 };
  } finally {
    s.close();
  }
}

// Continuous recognition of pcm (16 kHz 16-bit mono) pushed in 100 ms pieces,
// then the end of the stream: every recognized result until the session stops.
async function recognizeContinuous(proxy, key, pcm) {
  const push = sdk.AudioInputStream.createPushStream(sdk.AudioStreamFormat.getWaveFormatPCM(16000, 16, 1));
  const r = new sdk.SpeechRecognizer(speechConfig(proxy, 'stt', '/speech/universal/v2', key), sdk.AudioConfig.fromStreamInput(push));
  const recognized = [];
  let hypotheses = 0;
  let canceled = null;
  r.recognizing = () => { hypotheses++; };
  r.recognized = (_, e) => recognized.push(e.result);
  r.canceled = (_, e) => { canceled = e; };
  const stopped = new Promise((resolve) => { r.sessionStopped = resolve; });
  try {
    await new Promise((resolve, reject) => r.startContinuousRecognitionAsync(resolve, reject));
    for (let i = 0; i < pcm.length; i += 3200) {
      const piece = pcm.subarray(i, Math.min(i + 3200, pcm.length));
      push.write(piece.buffer.slice(piece.byteOffset, piece.byteOffset + piece.length));
    }
    push.close();
    await stopped;
  } finally {
    r.close();
  }
  return { recognized, hypotheses, canceled };
}

function deepgram(proxy, key) {
  const ws = wsBase(proxy);
  return new DeepgramClient({
    apiKey: key,
    environment: { base: `${proxy.url}/deepgram`, production: `${ws}/deepgram`, agent: `${ws}/deepgram`, agentRest: `${proxy.url}/deepgram` },
    maxRetries: 0,
    reconnect: false,
  });
}

// A live session with the SDK: pcm in 100 ms frames, then CloseStream (unless
// the socket ends first). Every message and the close.
async function dgLive(proxy, key, pcm, query = {}) {
  const conn = await deepgram(proxy, key).listen.v1.connect({ model: 'nova-3', encoding: 'linear16', sample_rate: 16000, ...query });
  const msgs = [];
  conn.on('message', (m) => msgs.push(m));
  conn.on('error', () => {});
  const closed = new Promise((resolve) => conn.on('close', resolve));
  conn.connect();
  await conn.waitForOpen();
  try {
    for (let i = 0; i < pcm.length; i += 3200) conn.sendMedia(pcm.subarray(i, i + 3200));
    conn.sendCloseStream({ type: 'CloseStream' });
  } catch {
    // the socket ended under us (an injected reset)
  }
  const ev = await closed;
  return { msgs, code: ev?.code };
}

// The tenant's records once there are n: exactly n.
async function records(proxy, tenantId, n) {
  const recs = await proxy.admin.waitRecords(tenantId, n);
  assert.equal(recs.length, n, `exactly ${n} record(s): ${JSON.stringify(recs)}`);
  return recs;
}

// A simulated line's record: marked, the units metered, priced, charged
// nothing (simulate.charge false).
function checkLine(rec, { provider, line, endpoint, model, units, status = 200 }) {
  assert.equal(rec.simulated, true, 'simulated: true');
  assert.equal(rec.provider, provider);
  assert.equal(rec.line, line);
  assert.equal(rec.endpoint, endpoint);
  if (model !== undefined) assert.equal(rec.model, model);
  assert.equal(rec.billed_to, 'wallet');
  assert.equal(rec.status, status);
  assert.equal(rec.outcome, 'ok');
  assert.equal(rec.estimated, false, 'metered, not estimated');
  for (const [k, v] of Object.entries(units)) assert.equal(rec.units[k], v, `units.${k}`);
  const cost = costMicros(rec.model, units, PRICES[provider]);
  assert.ok(cost > 0, 'the line is priced');
  assert.equal(rec.cost_micros, cost, 'cost_micros per the pricing rule');
  assert.deepEqual(rec.charged, { plan_credits_micros: 0, wallet_micros: 0 }, 'charged nothing');
}

describe('simulated Azure Speech and Deepgram, audio_rtf 0', { timeout: 120000 }, () => {
  let proxy;
  before(async () => { proxy = await startSimulated({ seed: 5 }); });
  after(() => stopClean(proxy));

  test('Speech SDK synthesizer over the socket: audio of the SSML\'s length, characters metered, nothing charged', async () => {
    const t = await newTenant(proxy, { wallet: 1_000_000 });
    const text = 'Hello from the simulated Azure voice.';
    const { res, ms } = await speak(proxy, t.key, text);
    assert.equal(res.reason, sdk.ResultReason.SynthesizingAudioCompleted, res.errorDetails);
    // The SDK asks for raw 16 kHz PCM and adds the WAV header itself.
    const audioMs = text.length * MS_PER_CHAR;
    assert.equal(res.audioData.byteLength, 44 + audioMs * 32);
    assert.equal(res.audioDuration, audioMs * 10000, 'SessionEnd offset in ticks');
    assert.equal(wavSeconds(Buffer.from(res.audioData)), audioMs / 1000);
    assert.ok(ms < 1500, `audio_rtf 0: ${(audioMs / 1000).toFixed(2)} s of audio in ${ms.toFixed(0)} ms`);
    const recs = await records(proxy, t.tenantId, 2);
    const line = recs.find((r) => r.line === 'tts');
    checkLine(line, {
      provider: 'azure_speech', line: 'tts', endpoint: '/tts/cognitiveservices/websocket/v1',
      model: 'en-US-AvaMultilingualNeural', units: { characters: text.length }, status: 101,
    });
    const plat = recs.find((r) => r.line === 'platform');
    assert.equal(plat.simulated, true);
    assert.deepEqual(balances(await proxy.admin.getTenant(t.tenantId)), { plan: 0, wallet: 1_000_000 });
  });

  test('Speech SDK synthesizer: two utterances asked at once on one socket, spoken in turn', async () => {
    const t = await newTenant(proxy);
    const s = new sdk.SpeechSynthesizer(speechConfig(proxy, 'tts', '/cognitiveservices/websocket/v1', t.key), null);
    const texts = ['First sentence.', 'And a second, longer one.'];
    const results = await Promise.all(texts.map((x) => new Promise((resolve, reject) => s.speakTextAsync(x, resolve, reject))))
      .finally(() => s.close());
    results.forEach((res, i) => {
      assert.equal(res.reason, sdk.ResultReason.SynthesizingAudioCompleted, res.errorDetails);
      assert.equal(res.audioData.byteLength, 44 + texts[i].length * MS_PER_CHAR * 32, `utterance ${i}`);
    });
    const recs = await records(proxy, t.tenantId, 2);
    checkLine(recs.find((r) => r.line === 'tts'), {
      provider: 'azure_speech', line: 'tts', endpoint: '/tts/cognitiveservices/websocket/v1',
      units: { characters: texts.join('').length }, status: 101,
    });
  });

  test('Speech SDK continuous recognition over the socket: a phrase every 2 s, the rest at the end; audio seconds sent metered', async () => {
    const t = await newTenant(proxy);
    const pcm = makeWav(4.5).subarray(44);
    const { recognized, hypotheses, canceled } = await recognizeContinuous(proxy, t.key, pcm);
    assert.ok(!canceled || canceled.reason === sdk.CancellationReason.EndOfStream, canceled?.errorDetails);
    assert.deepEqual(recognized.map((r) => r.reason), Array(3).fill(sdk.ResultReason.RecognizedSpeech));
    assert.deepEqual(recognized.map((r) => [r.offset, r.duration]), [[0, 2e7], [2e7, 2e7], [4e7, 0.5e7]], 'offsets and durations in ticks');
    assert.deepEqual(recognized.map((r) => words(r.text)), [wordsFor(2000), wordsFor(2000), wordsFor(500)]);
    // The generated text runs on from phrase to phrase.
    assert.equal(recognized.map((r) => r.text).join(' '), 'Simulated replies come from the byok simulator, not from a model. Each');
    assert.ok(hypotheses >= 3, `hypotheses: ${hypotheses}`);
    const recs = await records(proxy, t.tenantId, 2);
    checkLine(recs.find((r) => r.line === 'stt'), {
      provider: 'azure_speech', line: 'stt', endpoint: '/stt/speech/universal/v2', units: { audio_seconds: 4.5 }, status: 101,
    });
  });

  test('Speech SDK recognizeOnce (interactive): one phrase of the whole file, then the turn ends', async () => {
    const t = await newTenant(proxy);
    const cfg = speechConfig(proxy, 'stt', '/speech/universal/v2', t.key);
    const r = new sdk.SpeechRecognizer(cfg, sdk.AudioConfig.fromWavFileInput(makeWav(3)));
    const res = await new Promise((resolve, reject) => r.recognizeOnceAsync(resolve, reject)).finally(() => r.close());
    assert.equal(res.reason, sdk.ResultReason.RecognizedSpeech, res.errorDetails);
    assert.equal(words(res.text), wordsFor(3000), res.text);
    assert.equal(res.duration, 3e7);
    const recs = await records(proxy, t.tenantId, 2);
    checkLine(recs.find((r) => r.line === 'stt'), {
      provider: 'azure_speech', line: 'stt', endpoint: '/stt/speech/universal/v2', units: { audio_seconds: 3 }, status: 101,
    });
  });

  test('Azure REST: TTS in the asked format (WAV, MP3), voices, short-audio STT (simple and detailed)', async () => {
    const t = await newTenant(proxy);
    const headers = { 'Ocp-Apim-Subscription-Key': t.key, 'Content-Type': 'application/ssml+xml' };
    const ssml = "<speak version='1.0' xml:lang='en-US'><voice name='en-US-JennyNeural'>Good morning &amp; welcome</voice></speak>";
    const chars = 'Good morning & welcome'.length;
    let r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/v1`, { method: 'POST', headers: { ...headers, 'X-Microsoft-OutputFormat': 'riff-24khz-16bit-mono-pcm' }, body: ssml });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'audio/x-wav');
    assert.match(r.headers.get('x-requestid'), /^[0-9a-f]{24}$/);
    const wav = Buffer.from(await r.arrayBuffer());
    assert.equal(wav.readUInt32LE(24), 24000, 'the asked sample rate');
    assert.equal(wavSeconds(wav), (chars * MS_PER_CHAR) / 1000);
    r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/v1`, { method: 'POST', headers: { ...headers, 'X-Microsoft-OutputFormat': 'audio-24khz-48kbitrate-mono-mp3' }, body: ssml });
    assert.equal(r.headers.get('content-type'), 'audio/mpeg');
    const mp3 = Buffer.from(await r.arrayBuffer());
    // 144-byte frames of 24 ms (MPEG-2 layer III), enough to cover the speech.
    assert.equal(mp3.length % 144, 0);
    assert.equal(mp3.length / 144, Math.ceil((chars * MS_PER_CHAR) / 24));
    assert.deepEqual([...mp3.subarray(0, 2)], [0xff, 0xf3]);
    // Not a simulated format, not SSML: Azure's 400 and 415, not metered as audio.
    r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/v1`, { method: 'POST', headers: { ...headers, 'X-Microsoft-OutputFormat': 'ogg-24khz-16bit-mono-opus' }, body: ssml });
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /not simulated/);
    r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/v1`, { method: 'POST', headers: { ...headers, 'Content-Type': 'text/plain' }, body: 'hi' });
    assert.equal(r.status, 415);
    await r.arrayBuffer();

    r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/voices/list`, { headers: { 'Ocp-Apim-Subscription-Key': t.key } });
    const voices = await r.json();
    assert.ok(voices.some((v) => v.ShortName === 'en-US-JennyNeural' && v.Locale === 'en-US'));

    const stt = `${proxy.url}/azure/stt/speech/recognition/conversation/cognitiveservices/v1`;
    const sttHeaders = { 'Ocp-Apim-Subscription-Key': t.key, 'Content-Type': 'audio/wav; codecs=audio/pcm; samplerate=16000' };
    r = await fetch(`${stt}?language=en-US`, { method: 'POST', headers: sttHeaders, body: makeWav(2) });
    const simple = await r.json();
    assert.deepEqual(simple, { RecognitionStatus: 'Success', Offset: 0, Duration: 2e7, DisplayText: 'Simulated replies come from the' });
    r = await fetch(`${stt}?language=en-US&format=detailed`, { method: 'POST', headers: sttHeaders, body: makeWav(1.2) });
    const detailed = await r.json();
    assert.equal(detailed.NBest[0].Display, 'Simulated replies come');
    assert.equal(detailed.NBest[0].Lexical, 'simulated replies come');
    r = await fetch(stt, { method: 'POST', headers: sttHeaders, body: makeWav(1) });
    assert.equal(r.status, 400, 'language is required');
    await r.arrayBuffer();

    // Records: 2 TTS (characters), 2 STT (the uploads' seconds); the
    // refused ones are recorded with nothing metered; the voices list.
    const recs = await records(proxy, t.tenantId, 8);
    const tts = recs.filter((x) => x.line === 'tts' && x.status === 200 && x.endpoint === '/cognitiveservices/v1');
    assert.equal(tts.length, 2);
    for (const x of tts) checkLine(x, { provider: 'azure_speech', line: 'tts', endpoint: '/cognitiveservices/v1', model: 'en-US-JennyNeural', units: { characters: chars } });
    const stts = recs.filter((x) => x.line === 'stt' && x.status === 200).sort((a, b) => a.units.audio_seconds - b.units.audio_seconds);
    assert.deepEqual(stts.map((x) => x.units.audio_seconds), [1.2, 2]);
    for (const x of stts) checkLine(x, { provider: 'azure_speech', line: 'stt', endpoint: '/speech/recognition/conversation/cognitiveservices/v1', units: { audio_seconds: x.units.audio_seconds } });
    assert.ok(recs.every((x) => x.simulated === true));
  });

  test('Deepgram prerecorded: metadata.duration is the WAV\'s length and the record\'s audio seconds', async () => {
    const t = await newTenant(proxy);
    const dg = deepgram(proxy, t.key);
    const r = await dg.listen.v1.media.transcribeFile(makeWav(2.5), { model: 'nova-3', smart_format: true });
    assert.equal(r.metadata.duration, 2.5);
    assert.equal(r.metadata.channels, 1);
    assert.match(r.metadata.sha256, /^[0-9a-f]{64}$/);
    const alt = r.results.channels[0].alternatives[0];
    assert.equal(alt.transcript, 'Simulated replies come from the byok simulator,');
    assert.equal(alt.words.length, wordsFor(2500));
    assert.equal(alt.words.at(-1).end, 2.5);
    assert.equal(alt.words[0].punctuated_word, 'Simulated');
    // A URL is not fetched: it holds reply_tokens (16) words of speech.
    const u = await dg.listen.v1.media.transcribeUrl({ url: 'https://example.com/call.wav', model: 'nova-3' });
    assert.equal(u.metadata.duration, 16 * 0.4);
    assert.equal(u.results.channels[0].alternatives[0].transcript, 'simulated replies come from the byok simulator not from a model each word is one token');
    const recs = await records(proxy, t.tenantId, 2);
    const by = Object.fromEntries(recs.map((x) => [x.units.audio_seconds, x]));
    checkLine(by[2.5], { provider: 'deepgram', line: 'stt', endpoint: '/v1/listen', model: 'nova-3', units: { audio_seconds: 2.5 } });
    checkLine(by[6.4], { provider: 'deepgram', line: 'stt', endpoint: '/v1/listen', model: 'nova-3', units: { audio_seconds: 6.4 } });
    assert.equal(by[2.5].upstream_request_id, r.metadata.request_id);
  });

  test('Deepgram live: interim and final Results paced by the audio, Finalize, Metadata with the duration, close 1000', async () => {
    const t = await newTenant(proxy);
    const pcm = makeWav(3).subarray(44);
    const { msgs, code } = await dgLive(proxy, t.key, pcm, { interim_results: true, vad_events: true, utterance_end_ms: 1000, punctuate: true });
    assert.equal(code, 1000);
    const types = msgs.map((m) => m.type);
    assert.equal(types[0], 'SpeechStarted');
    assert.equal(types.at(-1), 'Metadata');
    const finals = msgs.filter((m) => m.type === 'Results' && m.is_final);
    assert.deepEqual(finals.map((m) => [m.start, m.duration]), [[0, 2], [2, 1]]);
    assert.ok(finals.every((m) => m.speech_final && m.channel.alternatives[0].words.length === wordsFor(m.duration * 1000)));
    assert.equal(finals.map((m) => m.channel.alternatives[0].transcript).join(' '), 'Simulated replies come from the byok simulator, not');
    assert.equal(msgs.filter((m) => m.type === 'Results' && !m.is_final).length, 5, 'interim results every 500 ms of audio');
    assert.equal(msgs.filter((m) => m.type === 'UtteranceEnd').length, 2);
    const meta = msgs.at(-1);
    assert.equal(meta.duration, 3);
    const recs = await records(proxy, t.tenantId, 2);
    checkLine(recs.find((r) => r.line === 'stt'), {
      provider: 'deepgram', line: 'stt', endpoint: '/v1/listen', model: 'nova-3', units: { audio_seconds: 3 }, status: 101,
    });
    assert.equal(recs.find((r) => r.line === 'platform').simulated, true);
  });

  test('Deepgram live with Finalize and KeepAlive (a raw client, the token subprotocol)', async () => {
    const t = await newTenant(proxy);
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`${wsBase(proxy)}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`, ['token', t.key]);
    const got = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString())));
    const closed = new Promise((resolve) => ws.on('close', (c) => resolve(c)));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    assert.equal(ws.protocol, 'token');
    ws.send(makeWav(1.2).subarray(44));
    ws.send(JSON.stringify({ type: 'KeepAlive' }));
    ws.send(JSON.stringify({ type: 'Finalize' }));
    ws.send(JSON.stringify({ type: 'CloseStream' }));
    assert.equal(await closed, 1000);
    const results = got.filter((m) => m.type === 'Results');
    assert.equal(results.length, 1, 'no final before 2 s; Finalize gives one; nothing left at CloseStream');
    assert.deepEqual([results[0].is_final, results[0].from_finalize, results[0].duration], [true, true, 1.2]);
    assert.equal(got.at(-1).type, 'Metadata');
    assert.equal(got.at(-1).duration, 1.2);
    const recs = await records(proxy, t.tenantId, 2);
    assert.equal(recs.find((r) => r.line === 'stt').units.audio_seconds, 1.2);
  });

  test('Deepgram live: 10 s without audio or a message ends the socket (1011 NET-0001); KeepAlive keeps one open', async () => {
    const t = await newTenant(proxy);
    const { default: WebSocket } = await import('ws');
    const url = `${wsBase(proxy)}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`;
    const open = (ws) => new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const silent = new WebSocket(url, { headers: { authorization: `Token ${t.key}` } });
    const kept = new WebSocket(url, { headers: { authorization: `Token ${t.key}` } });
    await Promise.all([open(silent), open(kept)]);
    const t0 = performance.now();
    const keepAlive = setInterval(() => kept.send(JSON.stringify({ type: 'KeepAlive' })), 3000);
    try {
      const [code, reason] = await new Promise((resolve) => silent.on('close', (c, why) => resolve([c, why.toString()])));
      const after = performance.now() - t0;
      assert.equal(code, 1011);
      assert.match(reason, /^NET-0001/);
      assert.ok(after >= 9900 && after < 15000, `closed after ${after.toFixed(0)} ms`);
      assert.equal(kept.readyState, WebSocket.OPEN, 'the socket sending KeepAlive is still open');
    } finally {
      clearInterval(keepAlive);
    }
    kept.send(JSON.stringify({ type: 'CloseStream' }));
    assert.equal(await new Promise((resolve) => kept.on('close', resolve)), 1000);
    const recs = await records(proxy, t.tenantId, 4);
    const lines = recs.filter((r) => r.line === 'stt').map((r) => r.outcome).sort();
    assert.deepEqual(lines, ['ok', 'upstream_error'], 'the idle close is the upstream\'s error');
  });

  test('Deepgram speak: MP3 of the text\'s length, dg-char-count, characters metered', async () => {
    const t = await newTenant(proxy);
    const text = 'Your table for two is ready.';
    const { data, rawResponse } = await deepgram(proxy, t.key).speak.v1.audio.generate({ text, model: 'aura-2-thalia-en' }).withRawResponse();
    const bytes = Buffer.from(await data.arrayBuffer());
    assert.equal(rawResponse.headers.get('content-type'), 'audio/mpeg');
    assert.equal(rawResponse.headers.get('dg-char-count'), String(text.length));
    assert.equal(rawResponse.headers.get('dg-model-name'), 'aura-2-thalia-en');
    // 22050 Hz, 48 kbit/s: 156-byte frames of 576 samples.
    assert.equal(bytes.length, 156 * Math.ceil((text.length * MS_PER_CHAR * 22050) / 1000 / 576));
    const wav = await deepgram(proxy, t.key).speak.v1.audio.generate({ text, model: 'aura-2-thalia-en', encoding: 'linear16', sample_rate: 16000 });
    const wavBytes = Buffer.from(await wav.arrayBuffer());
    assert.equal(wavSeconds(wavBytes), (text.length * MS_PER_CHAR) / 1000);
    const recs = await records(proxy, t.tenantId, 2);
    for (const x of recs) checkLine(x, { provider: 'deepgram', line: 'tts', endpoint: '/v1/speak', model: 'aura-2-thalia-en', units: { characters: text.length } });
  });

  test('the simulator wants a key where each provider does: its own 401 otherwise', async () => {
    const urls = inProcessUrls(proxy);
    assert.deepEqual(Object.keys(urls).sort(), ['azure_speech_stt', 'azure_speech_tts', 'deepgram', 'openai']);
    assert.match(urls.azure_speech_tts, /^http:\/\/127\.0\.0\.1:\d+\/\{region\}$/);
    const tts = urls.azure_speech_tts.replace('{region}', 'westeurope');
    let r = await fetch(`${tts}/cognitiveservices/voices/list`);
    assert.equal(r.status, 401);
    assert.match((await r.json()).error.message, /Access denied/);
    r = await fetch(`${tts}/cognitiveservices/voices/list`, { headers: { 'Ocp-Apim-Subscription-Key': 'k' } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    r = await fetch(`${tts}/cognitiveservices/voices/list`, { headers: { Authorization: 'Bearer tok' } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    r = await fetch(`${tts}/cognitiveservices/voices/list?Ocp-Apim-Subscription-Key=k`);
    assert.equal(r.status, 200, 'the SDK\'s query form');
    await r.arrayBuffer();
    r = await fetch(`${urls.deepgram}/v1/listen`, { method: 'POST', body: makeWav(1) });
    assert.equal(r.status, 401);
    const e = await r.json();
    assert.equal(e.err_code, 'INVALID_AUTH');
    assert.equal(e.request_id, r.headers.get('dg-request-id'));
    r = await fetch(`${urls.deepgram}/v1/listen`, { method: 'POST', headers: { Authorization: 'Token k' }, body: makeWav(1) });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).metadata.duration, 1);
    r = await fetch(`${urls.deepgram}/v1/listen?callback=${encodeURIComponent('https://example.com/hooks/transcripts?id=1234')}`, {
      method: 'POST', headers: { Authorization: 'Token k' }, body: makeWav(1),
    });
    assert.equal(r.status, 400, 'callback= is not simulated: refused, not ignored');
    assert.match((await r.json()).err_msg, /callback/);
    r = await fetch(`${urls.deepgram}/v1/projects`, { headers: { Authorization: 'Token k' } });
    assert.equal(r.status, 404);
    assert.equal((await r.json()).err_code, 'NOT_FOUND');
  });
});

describe('audio_rtf 1: audio takes its own length', { timeout: 60000 }, () => {
  let proxy;
  before(async () => { proxy = await startSimulated({ seed: 6, audio_rtf: 1 }); });
  after(() => stopClean(proxy));

  test('Speech SDK synthesis and Deepgram speak of ~2 s of audio take at least ~1.9 s', async () => {
    const t = await newTenant(proxy);
    const text = 'Two seconds of speech, or so.....'; // 33 characters: 1.98 s
    const audioMs = text.length * MS_PER_CHAR;
    const { res, ms } = await speak(proxy, t.key, text);
    assert.equal(res.reason, sdk.ResultReason.SynthesizingAudioCompleted, res.errorDetails);
    assert.equal(res.audioData.byteLength, 44 + audioMs * 32);
    // Frame k is due k x 100 ms after the first: the clip less one frame.
    assert.ok(ms >= audioMs - 100, `${audioMs} ms of audio at rtf 1 in ${ms.toFixed(0)} ms`);
    assert.ok(ms < audioMs + 3000, `${ms.toFixed(0)} ms`);
    const t0 = performance.now();
    const audio = await deepgram(proxy, t.key).speak.v1.audio.generate({ text, model: 'aura-2-thalia-en', encoding: 'linear16', sample_rate: 16000 });
    const bytes = Buffer.from(await audio.arrayBuffer());
    const dgMs = performance.now() - t0;
    assert.equal(wavSeconds(bytes), audioMs / 1000);
    assert.ok(dgMs >= audioMs - 100, `Deepgram speak: ${audioMs} ms of audio in ${dgMs.toFixed(0)} ms`);
    const recs = await records(proxy, t.tenantId, 3);
    const speakRec = recs.find((x) => x.endpoint === '/v1/speak');
    assert.ok(speakRec.duration_ms >= audioMs - 100, `the proxy saw the reply last ${speakRec.duration_ms} ms`);
    console.log(`audio_rtf 1: ${audioMs} ms of audio: Speech SDK ${ms.toFixed(0)} ms, Deepgram speak ${dgMs.toFixed(0)} ms`);
  });
});

describe('injected faults', { timeout: 60000 }, () => {
  let proxy;
  before(async () => {
    proxy = await startSimulated({
      seed: 7,
      providers: { deepgram: { errors: { reset: 1 } }, azure_speech_tts: { errors: { 429: 1 } } },
    });
  });
  after(() => stopClean(proxy));

  test('reset on a Deepgram live socket: the first Results arrive, then the upstream vanishes; the record says upstream_error', async () => {
    const t = await newTenant(proxy);
    const { msgs, code } = await dgLive(proxy, t.key, makeWav(3).subarray(44));
    assert.deepEqual(msgs.map((m) => m.type), ['Results'], 'the first final result, then nothing');
    assert.notEqual(code, 1000, `the client saw the session fail (close ${code})`);
    const recs = await records(proxy, t.tenantId, 2);
    const line = recs.find((r) => r.line === 'stt');
    assert.equal(line.simulated, true);
    assert.equal(line.outcome, 'upstream_error');
    assert.ok(line.units.audio_seconds > 0, 'the streamed audio is still metered');
    assert.deepEqual(line.charged, { plan_credits_micros: 0, wallet_micros: 0 });
  });

  test('429 from simulated Azure TTS: Azure\'s error shape with Retry-After, nothing metered', async () => {
    const t = await newTenant(proxy);
    const r = await fetch(`${proxy.url}/azure/tts/cognitiveservices/v1`, {
      method: 'POST',
      headers: { 'Ocp-Apim-Subscription-Key': t.key, 'Content-Type': 'application/ssml+xml', 'X-Microsoft-OutputFormat': 'riff-16khz-16bit-mono-pcm' },
      body: "<speak version='1.0' xml:lang='en-US'><voice name='en-US-JennyNeural'>hi</voice></speak>",
    });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal((await r.json()).error.code, '429');
    const [rec] = await records(proxy, t.tenantId, 1);
    assert.equal(rec.simulated, true);
    assert.equal(rec.status, 429);
    assert.equal(rec.cost_micros, 0);
  });
});
