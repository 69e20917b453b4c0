// simulate_voice.test.mjs - the simulated voice providers in the proxy
// (README "Simulated providers"): "upstreams": openai / elevenlabs /
// cartesia = "simulate", no platform key anywhere, the official SDKs and
// `ws` clients against the proxy (its TLS listener for the SDKs that force
// wss). Checked: the wire shapes the SDKs parse (OpenAI speech and
// transcription, Realtime GA over OpenAIRealtimeWS and beta over `ws` with
// server VAD and input transcription; ElevenLabs REST and stream-input with
// the key on the handshake or in the first message; Cartesia bytes, SSE and
// its SDK's WebSocket), audio lengths derived from the text / upload, the
// records (simulated: true, characters = what was sent, audio seconds = the
// upload's length, Realtime tokens = the usage the SDK saw), audio_rtf
// (1.0: 2 s of audio takes about 2 s; 0: at once), and a reset fault on a
// socket (the client gets 1011, the record upstream_error).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import OpenAI, { toFile } from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { ElevenLabsClient } from '@elevenlabs/elevenlabs-js';
import WebSocket from 'ws';
import { startProxy, newTenant } from './lib/proxy.mjs';
import { PRICES, costMicros } from './lib/records.mjs';
import { VOICE_PRICES } from './lib/providers.mjs';
import { makeTestCerts } from './lib/tls.mjs';
import { freePort, makeWav, wavSeconds, waitFor } from './lib/util.mjs';

// cartesia-js's ESM build cannot load `ws` on Node 20 (README): CommonJS build.
const Cartesia = createRequire(import.meta.url)('@cartesia/cartesia-js').default;

const RT_PRICE = { input_per_1m: 4000000, cached_input_per_1m: 400000, output_per_1m: 16000000,
  audio_input_per_1m: 32000000, audio_output_per_1m: 64000000 };
const OPENAI_PRICES = {
  ...PRICES,
  'gpt-4o-mini-tts': { input_per_1m: 600000, output_per_1m: 12000000, audio_output_per_1m: 12000000 },
  'gpt-4o-transcribe': { input_per_1m: 2500000, audio_input_per_1m: 6000000, output_per_1m: 10000000 },
  'gpt-realtime': RT_PRICE,
};
const codePoints = (s) => [...s].length;
const words = (s) => s.split(/\s+/).filter(Boolean).length;
// The simulator's speech timing: 15 characters a second, rounded up to ms.
const speechMs = (chars) => Math.ceil((chars * 1000) / 15 - 1e-9);

let certs;

async function startSimulated(simulate) {
  const tlsPort = await freePort();
  const proxy = await startProxy({
    env: { OPENAI_API_KEY: undefined },
    patch: (cfg) => {
      cfg.upstreams = { openai: 'simulate', elevenlabs: 'simulate', cartesia: 'simulate' };
      delete cfg.platform_keys;
      cfg.pricing = { openai: OPENAI_PRICES, elevenlabs: VOICE_PRICES.elevenlabs, cartesia: VOICE_PRICES.cartesia };
      cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: certs.certFile, key_file: certs.keyFile };
      cfg.simulate = simulate;
    },
  });
  proxy.tlsUrl = `https://127.0.0.1:${tlsPort}`;
  return proxy;
}

async function stopClean(proxy) {
  // Exit 0: a clean drain with the simulator stopped after the workers
  // (the sanitizer build also fails here on a leak).
  if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
  proxy?.remove();
}

// The tenant's records once there are at least n, with the predicate.
async function recordsOf(proxy, tenantId, n, pred = () => true) {
  return waitFor(async () => {
    const recs = (await proxy.admin.usage({ tenant_id: tenantId, limit: 1000 })).filter(pred);
    return recs.length >= n ? recs : null;
  }, { timeout: 15000, what: `${n} record(s) of ${tenantId}` });
}

function checkSimulated(r, { provider, line, model, units, prices }) {
  assert.equal(r.simulated, true, 'simulated: true');
  assert.equal(r.provider, provider);
  assert.equal(r.line, line);
  if (model) assert.equal(r.model, model);
  for (const [k, v] of Object.entries(units)) assert.equal(r.units[k], v, `units.${k}`);
  if (prices) assert.equal(r.cost_micros, costMicros(r.model, units, prices), 'cost_micros per the pricing rule');
  assert.deepEqual(r.charged, { plan_credits_micros: 0, wallet_micros: 0 }, 'simulate.charge false: nothing charged');
}

const openaiSdk = (proxy, key) => new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: key, maxRetries: 0, timeout: 30000 });

// A WebSocket client: every JSON message, open / close promises (a refused
// upgrade closes too).
function wsClient(url, opts = {}) {
  const ws = new WebSocket(url, opts.protocols || [], { headers: opts.headers, ca: opts.ca, perMessageDeflate: false });
  const c = { ws, got: [], at: [] };
  ws.on('message', (m) => {
    c.got.push(JSON.parse(m.toString()));
    c.at.push(performance.now());
  });
  ws.on('error', (e) => { c.error = e; });
  c.opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  c.opened.catch(() => {});
  c.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  c.send = (o) => ws.send(JSON.stringify(o));
  return c;
}

before(() => { certs = makeTestCerts(); });

describe('simulated voice, audio_rtf 0', () => {
  let proxy;
  before(async () => { proxy = await startSimulated({ seed: 21 }); });
  after(async () => { await stopClean(proxy); });

  test('OpenAI speech: WAV as long as the input takes to speak, mp3 frames, SSE usage; records count characters', async () => {
    const t = await newTenant(proxy);
    const openai = openaiSdk(proxy, t.key);
    const input = 'The quick brown fox jumps over the lazy dog.';
    const t0 = performance.now();
    const wav = Buffer.from(await (await openai.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: 'wav' })).arrayBuffer());
    const took = performance.now() - t0;
    assert.equal(wav.toString('latin1', 0, 4), 'RIFF');
    assert.equal(wav.readUInt32LE(24), 24000, '24 kHz');
    assert.equal(Math.round(wavSeconds(wav) * 1000), speechMs(codePoints(input)), 'the audio lasts as long as the text takes to speak');
    assert.ok(took < 3000, `audio_rtf 0: ${speechMs(input.length)} ms of audio in ${took.toFixed(0)} ms`);
    const mp3 = Buffer.from(await (await openai.audio.speech.create({ model: 'tts-1', voice: 'nova', input: 'héllo wörld' })).arrayBuffer());
    assert.equal(mp3[0], 0xff, 'an MPEG audio frame');
    assert.equal(mp3[1] & 0xe0, 0xe0);
    // stream_format sse (gpt-4o-mini-tts): deltas, then the usage the record takes.
    const res = await fetch(`${proxy.url}/v1/audio/speech`, {
      method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini-tts', voice: 'coral', input: 'Say it with feeling', stream_format: 'sse', response_format: 'pcm' }),
    });
    assert.equal(res.status, 200);
    const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => JSON.parse(e.slice(6)));
    const pcm = Buffer.concat(events.filter((e) => e.type === 'speech.audio.delta').map((e) => Buffer.from(e.audio, 'base64')));
    assert.equal(pcm.length, speechMs(19) * 48, 'PCM16 at 24 kHz');
    const done = events.at(-1);
    assert.equal(done.type, 'speech.audio.done');
    assert.deepEqual(done.usage, { input_tokens: 4, output_tokens: Math.ceil(speechMs(19) / 50), total_tokens: 4 + Math.ceil(speechMs(19) / 50) });

    const recs = await recordsOf(proxy, t.tenantId, 3);
    const byChars = Object.fromEntries(recs.map((r) => [r.units.characters, r]));
    checkSimulated(byChars[input.length], { provider: 'openai', line: 'tts', model: 'tts-1', units: { characters: input.length }, prices: OPENAI_PRICES });
    checkSimulated(byChars[11], { provider: 'openai', line: 'tts', model: 'tts-1', units: { characters: 11 }, prices: OPENAI_PRICES });
    const sse = recs.find((r) => r.model === 'gpt-4o-mini-tts');
    checkSimulated(sse, {
      provider: 'openai', line: 'tts', units: { characters: 0, input_tokens: 4, output_tokens: done.usage.output_tokens, audio_output_tokens: done.usage.output_tokens },
      prices: OPENAI_PRICES,
    });
  });

  test('OpenAI transcription: a WAV upload; duration usage, text from the upload, tokens usage; records', async () => {
    const t = await newTenant(proxy);
    const openai = openaiSdk(proxy, t.key);
    const three = makeWav(3);
    const r = await openai.audio.transcriptions.create({ file: await toFile(three, 'three.wav'), model: 'whisper-1' });
    assert.equal(words(r.text), 8, `one word per 400 ms: ${r.text}`);
    assert.deepEqual(r.usage, { type: 'duration', seconds: 3 });
    const text = await openai.audio.transcriptions.create({ file: await toFile(makeWav(2.5), 'a.wav'), model: 'whisper-1', response_format: 'text' });
    assert.equal(words(text), 7);
    const v = await openai.audio.transcriptions.create({
      file: await toFile(makeWav(2.5), 'b.wav'), model: 'whisper-1', response_format: 'verbose_json', timestamp_granularities: ['word'],
    });
    assert.equal(v.duration, 2.5);
    assert.equal(v.words.length, 7);
    assert.equal(v.segments[0].end, 2.5);
    const g = await openai.audio.transcriptions.create({ file: await toFile(makeWav(1.2), 'c.wav'), model: 'gpt-4o-transcribe', prompt: 'two words' });
    assert.deepEqual(g.usage, {
      type: 'tokens', input_tokens: 14, input_token_details: { text_tokens: 2, audio_tokens: 12 }, output_tokens: 3, total_tokens: 17,
    });
    const tr = await openai.audio.translations.create({ file: await toFile(makeWav(1), 'd.wav'), model: 'whisper-1' });
    assert.equal(words(tr.text), 3);
    assert.equal(tr.usage, undefined, 'translations report no usage');

    const recs = await recordsOf(proxy, t.tenantId, 5);
    const secs = recs.filter((x) => x.model === 'whisper-1').map((x) => x.units.audio_seconds).sort();
    // json: the reported 3 s; text, verbose_json: the upload's 2.5 s (the
    // usage's whole seconds for verbose: 3); translation: the upload's 1 s.
    assert.deepEqual(secs, [1, 2.5, 3, 3]);
    for (const x of recs.filter((y) => y.model === 'whisper-1')) {
      checkSimulated(x, { provider: 'openai', line: 'stt', units: { audio_seconds: x.units.audio_seconds }, prices: OPENAI_PRICES });
      assert.equal(x.estimated, false);
    }
    const tok = recs.find((x) => x.model === 'gpt-4o-transcribe');
    checkSimulated(tok, { provider: 'openai', line: 'stt', units: { input_tokens: 14, audio_input_tokens: 12, output_tokens: 3 }, prices: OPENAI_PRICES });
  });

  test('Realtime over the SDK (GA): session, audio in, two responses with audio deltas; records = the usage the SDK saw', async () => {
    const t = await newTenant(proxy);
    const client = new OpenAI({ apiKey: t.key, baseURL: `${proxy.tlsUrl}/v1`, maxRetries: 0 });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: certs.ca } }, client);
    const events = [];
    const failed = new Promise((resolve, reject) => rt.on('error', reject));
    failed.catch(() => {});
    rt.on('event', (e) => events.push(e));
    await Promise.race([new Promise((resolve, reject) => { rt.socket.once('open', resolve); rt.socket.once('error', reject); }), failed]);
    await Promise.race([waitFor(() => events.some((e) => e.type === 'session.created'), { what: 'session.created' }), failed]);
    rt.send({ type: 'session.update', session: { type: 'realtime', instructions: 'be brief please', audio: { input: { turn_detection: null } } } });
    rt.send({ type: 'input_audio_buffer.append', audio: makeWav(1, 24000).subarray(44).toString('base64') });
    rt.send({ type: 'input_audio_buffer.commit' });
    rt.send({ type: 'response.create' });
    const dones = () => events.filter((e) => e.type === 'response.done');
    await Promise.race([waitFor(() => dones().length === 1, { what: 'response.done 1' }), failed]);
    rt.send({ type: 'response.create' });
    await Promise.race([waitFor(() => dones().length === 2, { what: 'response.done 2' }), failed]);
    const closed = new Promise((resolve) => rt.socket.on('close', resolve));
    rt.close();
    await closed;

    assert.equal(events[0].type, 'session.created');
    assert.equal(events[0].session.type, 'realtime');
    assert.ok(events.some((e) => e.type === 'session.updated' && e.session.instructions === 'be brief please'));
    assert.ok(events.some((e) => e.type === 'input_audio_buffer.committed'));
    assert.ok(!events.some((e) => e.type === 'error'), JSON.stringify(events.find((e) => e.type === 'error')));
    const [d1, d2] = dones().map((e) => e.response);
    assert.equal(d1.status, 'completed');
    // The first response: its audio and transcript.
    const rid = d1.id;
    const deltas = events.filter((e) => e.type === 'response.output_audio.delta' && e.response_id === rid);
    const audio = Buffer.concat(deltas.map((e) => Buffer.from(e.delta, 'base64')));
    const transcript = events.filter((e) => e.type === 'response.output_audio_transcript.delta' && e.response_id === rid).map((e) => e.delta).join('');
    assert.equal(transcript, events.find((e) => e.type === 'response.output_audio_transcript.done' && e.response_id === rid).transcript);
    assert.equal(words(transcript), 16, 'reply_tokens words');
    const ms = speechMs(codePoints(transcript));
    assert.equal(audio.length, ms * 48, 'PCM16 24 kHz as long as the transcript takes to speak');
    assert.equal(deltas.length, Math.ceil(ms / 100), '100 ms deltas');
    // Usage from what was received and sent: 1 s in (10 tokens), 3
    // instruction words; 16 words and the audio's tokens out.
    const out = { text_tokens: 16, audio_tokens: Math.ceil(ms / 50) };
    assert.deepEqual(d1.usage.input_token_details, {
      text_tokens: 3, audio_tokens: 10, image_tokens: 0, cached_tokens: 0, cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 },
    });
    assert.deepEqual(d1.usage.output_token_details, out);
    assert.equal(d1.usage.total_tokens, 13 + 16 + out.audio_tokens);
    // The second re-reads the conversation: the first's input and output,
    // all of it cached.
    assert.equal(d2.usage.input_tokens, d1.usage.total_tokens);
    assert.equal(d2.usage.input_token_details.cached_tokens, d1.usage.total_tokens);
    assert.deepEqual(d2.usage.output_token_details, out);

    const recs = await recordsOf(proxy, t.tenantId, 2, (r) => r.line === 'realtime' && r.units.output_tokens > 0);
    recs.sort((a, b) => a.seq - b.seq);
    for (const [i, d] of [d1, d2].entries()) {
      const u = d.usage;
      const units = {
        input_tokens: u.input_tokens, cached_input_tokens: u.input_token_details.cached_tokens,
        audio_input_tokens: u.input_token_details.audio_tokens, output_tokens: u.output_tokens,
        audio_output_tokens: u.output_token_details.audio_tokens,
      };
      checkSimulated(recs[i], { provider: 'openai', line: 'realtime', model: 'gpt-realtime', units });
      assert.equal(recs[i].estimated, false);
    }
  });

  test('Realtime beta over ws: server VAD commits and answers, input transcription, beta event names', async () => {
    const t = await newTenant(proxy);
    const c = wsClient(`ws://127.0.0.1:${proxy.port}/v1/realtime?model=gpt-realtime`, {
      headers: { authorization: `Bearer ${t.key}`, 'OpenAI-Beta': 'realtime=v1' },
    });
    await c.opened;
    await waitFor(() => c.got.some((e) => e.type === 'session.created'), { what: 'session.created' });
    assert.equal(c.got[0].session.object, 'realtime.session');
    assert.equal(c.got[0].session.turn_detection.type, 'server_vad', 'server VAD on by default');
    c.send({ type: 'session.update', session: { input_audio_transcription: { model: 'gpt-4o-transcribe' }, modalities: ['text', 'audio'] } });
    // 1 s of speech (a tone), then 1 s of silence: speech_stopped after the
    // silence_duration_ms (beta 200), an automatic commit and response.
    const speech = makeWav(1, 24000).subarray(44);
    for (let i = 0; i < 10; i++) c.send({ type: 'input_audio_buffer.append', audio: speech.subarray(i * 4800, (i + 1) * 4800).toString('base64') });
    for (let i = 0; i < 10; i++) c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    await waitFor(() => c.got.some((e) => e.type === 'response.done'), { what: 'response.done' });
    c.ws.close(1000);
    await c.closed;
    const types = c.got.map((e) => e.type);
    const started = c.got.find((e) => e.type === 'input_audio_buffer.speech_started');
    const stopped = c.got.find((e) => e.type === 'input_audio_buffer.speech_stopped');
    assert.ok(started && stopped, types.join(' '));
    assert.ok(started.audio_start_ms === 0, `speech starts at 0 ms: ${started.audio_start_ms}`);
    assert.ok(stopped.audio_end_ms >= 900 && stopped.audio_end_ms <= 1000, `speech stops at the end of the tone: ${stopped.audio_end_ms}`);
    assert.ok(types.indexOf('input_audio_buffer.committed') > types.indexOf('input_audio_buffer.speech_stopped'));
    assert.ok(types.includes('conversation.item.created'), 'beta item event');
    const tr = c.got.find((e) => e.type === 'conversation.item.input_audio_transcription.completed');
    assert.ok(tr, 'input transcription');
    assert.equal(tr.usage.type, 'tokens');
    assert.ok(types.includes('response.audio.delta') && types.includes('response.audio_transcript.delta'), 'beta names');
    assert.ok(!types.includes('response.output_audio.delta'));
    const done = c.got.find((e) => e.type === 'response.done').response;
    // The committed audio (speech and the silence before the stop) is the input.
    const inAudio = done.usage.input_token_details.audio_tokens;
    assert.ok(inAudio >= 11 && inAudio <= 20, `input audio tokens ${inAudio}`);
    // Records: the transcription's tokens and the response's.
    const recs = await recordsOf(proxy, t.tenantId, 2, (r) => r.line === 'realtime' && r.units.output_tokens > 0);
    const sum = (k) => recs.reduce((s, r) => s + r.units[k], 0);
    assert.equal(sum('output_tokens'), done.usage.output_tokens + tr.usage.output_tokens);
    assert.equal(sum('input_tokens'), done.usage.input_tokens + tr.usage.input_tokens);
    for (const r of recs) assert.equal(r.simulated, true);
  });

  test('ElevenLabs REST (SDK, stream, with-timestamps): audio of the format, character-cost; records count characters', async () => {
    const t = await newTenant(proxy);
    const el = new ElevenLabsClient({ apiKey: t.key, baseUrl: `${proxy.url}/elevenlabs`, maxRetries: 0, timeoutInSeconds: 20 });
    const text = 'Hello wörld from the simulator';
    const { data, rawResponse } = await el.textToSpeech.convert('voice-1', { text, modelId: 'eleven_turbo_v2_5', outputFormat: 'pcm_16000' }).withRawResponse();
    const parts = [];
    for await (const p of data) parts.push(Buffer.from(p));
    const pcm = Buffer.concat(parts);
    assert.equal(pcm.length, speechMs(codePoints(text)) * 32, 'PCM16 at 16 kHz as long as the text takes to speak');
    assert.equal(rawResponse.headers.get('character-cost'), String(Math.ceil(codePoints(text) / 2)), 'turbo: half a credit a character');
    const res = await fetch(`${proxy.url}/elevenlabs/v1/text-to-speech/voice-1/stream?output_format=mp3_44100_128`, {
      method: 'POST', headers: { 'xi-api-key': t.key, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Streamed text' }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'audio/mpeg');
    const mp3 = Buffer.from(await res.arrayBuffer());
    assert.equal(mp3[0], 0xff);
    const ts = await el.textToSpeech.convertWithTimestamps('voice-1', { text: 'Timing', modelId: 'eleven_flash_v2_5' });
    assert.deepEqual(ts.alignment.characters, [...'Timing']);
    assert.equal(ts.alignment.characterEndTimesSeconds.at(-1), speechMs(6) / 1000);

    const recs = await recordsOf(proxy, t.tenantId, 3);
    const by = Object.fromEntries(recs.map((r) => [r.model, r]));
    checkSimulated(by.eleven_turbo_v2_5, { provider: 'elevenlabs', line: 'tts', units: { characters: Math.ceil(codePoints(text) / 2) }, prices: VOICE_PRICES.elevenlabs });
    checkSimulated(by.eleven_multilingual_v2, { provider: 'elevenlabs', line: 'tts', units: { characters: 13 }, prices: VOICE_PRICES.elevenlabs });
    checkSimulated(by.eleven_flash_v2_5, { provider: 'elevenlabs', line: 'tts', units: { characters: 3 }, prices: VOICE_PRICES.elevenlabs });
  });

  test('ElevenLabs stream-input: key on the handshake or in the first message; audio with alignment, isFinal, 1000; characters sent', async () => {
    for (const where of ['handshake', 'first message']) {
      const t = await newTenant(proxy);
      const url = `ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_multilingual_v2&output_format=pcm_16000`;
      const c = wsClient(url, where === 'handshake' ? { headers: { 'xi-api-key': t.key } } : {});
      await c.opened;
      const first = { text: ' ', voice_settings: { stability: 0.5 }, generation_config: { chunk_length_schedule: [50] } };
      if (where !== 'handshake') first.xi_api_key = t.key;
      c.send(first);
      c.send({ text: 'Hello wörld, ' });
      c.send({ text: 'this is streamed input.' });
      c.send({ text: '' });
      const closed = await c.closed;
      assert.equal(closed.code, 1000, `${where}: a normal close`);
      const audio = c.got.filter((m) => typeof m.audio === 'string');
      assert.ok(audio.length > 0);
      assert.deepEqual(c.got.at(-1), { isFinal: true });
      const pcm = Buffer.concat(audio.map((m) => Buffer.from(m.audio, 'base64')));
      // One generation (50 characters were never reached): everything sent.
      const spoken = ' Hello wörld, this is streamed input.';
      assert.equal(pcm.length, speechMs(codePoints(spoken)) * 32, `${where}: the audio of what was sent`);
      assert.equal(audio.flatMap((m) => m.alignment.chars).join(''), spoken, 'the alignment covers the text');
      const sent = codePoints(spoken);
      const [rec] = await recordsOf(proxy, t.tenantId, 1, (r) => r.line === 'tts');
      checkSimulated(rec, { provider: 'elevenlabs', line: 'tts', model: 'eleven_multilingual_v2', units: { characters: sent }, prices: VOICE_PRICES.elevenlabs });
    }
  });

  test('Cartesia: bytes (SDK) and SSE; its SDK\'s WebSocket over TLS: chunks per context, done; characters', async () => {
    const t = await newTenant(proxy);
    const cart = new Cartesia({ apiKey: t.key, baseURL: `${proxy.url}/cartesia`, maxRetries: 0 });
    const transcript = 'Cartesia says héllo';
    const res = await cart.tts.generate({
      model_id: 'sonic-2', transcript, voice: { mode: 'id', id: 'voice-1' },
      output_format: { container: 'wav', encoding: 'pcm_s16le', sample_rate: 22050 },
    });
    const wav = Buffer.from(await res.arrayBuffer());
    assert.equal(Math.round(wavSeconds(wav) * 22050), Math.floor((speechMs(codePoints(transcript)) * 22050) / 1000));
    const sse = await fetch(`${proxy.url}/cartesia/tts/sse`, {
      method: 'POST', headers: { 'x-api-key': t.key, 'cartesia-version': '2025-04-16', 'content-type': 'application/json' },
      body: JSON.stringify({ model_id: 'sonic-2', transcript: 'two words', voice: { mode: 'id', id: 'v' }, add_timestamps: true,
        output_format: { container: 'raw', encoding: 'pcm_f32le', sample_rate: 16000 } }),
    });
    const evs = (await sse.text()).split('\n\n').filter(Boolean).map((e) => JSON.parse(e.split('\n').find((l) => l.startsWith('data: ')).slice(6)));
    assert.equal(evs.at(-1).type, 'done');
    assert.deepEqual(evs.filter((e) => e.type === 'timestamps').flatMap((e) => e.word_timestamps.words), ['two', 'words']);
    const f32 = Buffer.concat(evs.filter((e) => e.type === 'chunk').map((e) => Buffer.from(e.data, 'base64')));
    assert.equal(f32.length, Math.floor((speechMs(9) * 16000) / 1000) * 4);

    const tls = new Cartesia({ apiKey: t.key, baseURL: `${proxy.tlsUrl}/cartesia`, maxRetries: 0 });
    const ws = await tls.tts.websocket({ ca: certs.ca });
    const closed = new Promise((resolve) => ws.socket.on('close', (code) => resolve(code)));
    const reqs = ['First context here', 'Zweiter Satz ✓'].map((tr, i) => ({
      model_id: 'sonic-2', transcript: tr, voice: { mode: 'id', id: 'voice-1' }, context_id: `ctx-${i}`,
      output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
    }));
    for (const r of reqs) {
      const got = [];
      for await (const e of ws.generate(r)) got.push(e);
      assert.equal(got.at(-1).type, 'done');
      assert.ok(got.every((e) => e.context_id === r.context_id));
      const pcm = Buffer.concat(got.filter((e) => e.type === 'chunk').map((e) => Buffer.from(e.audio)));
      assert.equal(pcm.length, speechMs(codePoints(r.transcript)) * 32);
    }
    ws.close();
    assert.equal(await closed, 1000);

    const recs = await recordsOf(proxy, t.tenantId, 3, (r) => r.line === 'tts');
    const chars = recs.map((r) => r.units.characters).sort((a, b) => a - b);
    const both = codePoints(reqs[0].transcript) + codePoints(reqs[1].transcript);
    assert.deepEqual(chars, [9, codePoints(transcript), both].sort((a, b) => a - b));
    for (const r of recs) checkSimulated(r, { provider: 'cartesia', line: 'tts', model: 'sonic-2', units: { characters: r.units.characters }, prices: VOICE_PRICES.cartesia });
  });

  test('the simulators want a key where the providers do', async () => {
    const urls = {};
    for (const m of proxy.logs().matchAll(/simulate: upstream (\w+) is simulated at (http:\/\/[^\s"]+)/g)) urls[m[1]] = m[2];
    assert.deepEqual(Object.keys(urls).sort(), ['cartesia', 'elevenlabs', 'openai']);
    const post = (url, headers = {}) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"text":"x"}' });
    let r = await post(`${urls.elevenlabs}/v1/text-to-speech/v`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).detail.status, 'needs_authorization');
    r = await post(`${urls.cartesia}/tts/bytes`);
    assert.equal(r.status, 401);
    r = await post(`${urls.openai}/v1/audio/speech`);
    assert.equal(r.status, 401);
    // The Realtime socket also takes the browsers' subprotocol key, and
    // answers "realtime".
    const c = wsClient(`${urls.openai.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, { protocols: ['realtime', 'openai-insecure-api-key.k'] });
    await c.opened;
    assert.equal(c.ws.protocol, 'realtime');
    await waitFor(() => c.got.length > 0, { what: 'session.created' });
    c.ws.close(1000);
    await c.closed;
  });
});

describe('audio_rtf 1.0 and a reset fault on sockets', () => {
  let proxy;
  before(async () => {
    proxy = await startSimulated({
      seed: 9,
      providers: { openai: { audio_rtf: 1.0, reply_tokens: 4 }, cartesia: { audio_rtf: 1.0 }, elevenlabs: { errors: { reset: 1 } } },
    });
  });
  after(async () => { await stopClean(proxy); });

  test('audio_rtf 1.0: 2 s of speech takes about 2 s to arrive (HTTP stream and socket)', async () => {
    const t = await newTenant(proxy);
    const input = 'Thirty characters of input ok'; // 29 + 1
    assert.equal(codePoints(`${input}.`), 30);
    const t0 = performance.now();
    const res = await fetch(`${proxy.url}/v1/audio/speech`, {
      method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: `${input}.`, response_format: 'pcm' }),
    });
    const pcm = Buffer.from(await res.arrayBuffer());
    const took = performance.now() - t0;
    assert.equal(pcm.length, 2000 * 48);
    // 20 pieces of 100 ms, the last due 1.9 s after the first.
    assert.ok(took >= 1850, `2 s of audio at rtf 1.0 arrived in ${took.toFixed(0)} ms`);
    const [rec] = await recordsOf(proxy, t.tenantId, 1);
    assert.ok(rec.duration_ms >= 1850, `the proxy saw it last ${rec.duration_ms} ms`);

    const c = wsClient(`ws://127.0.0.1:${proxy.port}/cartesia/tts/websocket`, { headers: { authorization: `Bearer ${t.key}` } });
    await c.opened;
    c.send({ model_id: 'sonic-2', transcript: `${input}.`, voice: { mode: 'id', id: 'v' }, context_id: 'pace',
      output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 } });
    await waitFor(() => c.got.some((m) => m.type === 'done'), { timeout: 10000, what: 'done' });
    const chunks = c.at.filter((_, i) => c.got[i].type === 'chunk');
    assert.equal(chunks.length, 20);
    const span = chunks.at(-1) - chunks[0];
    assert.ok(span >= 1800, `socket chunks over ${span.toFixed(0)} ms (1.9 s due)`);
    c.ws.close(1000);
    await c.closed;
    console.log(`audio_rtf 1.0: 2 s of speech over HTTP in ${took.toFixed(0)} ms, socket chunks over ${span.toFixed(0)} ms`);
  });

  test('audio_rtf 1.0 on Realtime: a response\'s audio deltas come in real time', async () => {
    const t = await newTenant(proxy);
    const c = wsClient(`ws://127.0.0.1:${proxy.port}/v1/realtime?model=gpt-realtime`, { headers: { authorization: `Bearer ${t.key}` } });
    await c.opened;
    await waitFor(() => c.got.some((e) => e.type === 'session.created'), { what: 'session.created' });
    c.send({ type: 'response.create' });
    await waitFor(() => c.got.some((e) => e.type === 'response.done'), { timeout: 10000, what: 'response.done' });
    c.ws.close(1000);
    await c.closed;
    const idx = c.got.map((e, i) => (e.type === 'response.output_audio.delta' ? i : -1)).filter((i) => i >= 0);
    const transcript = c.got.find((e) => e.type === 'response.output_audio_transcript.done').transcript;
    assert.equal(words(transcript), 4, 'reply_tokens 4');
    const ms = speechMs(codePoints(transcript));
    assert.equal(idx.length, Math.ceil(ms / 100));
    const span = c.at[idx.at(-1)] - c.at[idx[0]];
    const due = (idx.length - 1) * 100;
    assert.ok(span >= due - 100, `${idx.length} deltas over ${span.toFixed(0)} ms (${due} ms due)`);
    const done = c.got.find((e) => e.type === 'response.done').response;
    assert.equal(done.usage.output_token_details.audio_tokens, Math.ceil(ms / 50));
  });

  test('reset on a socket: half the audio, then the client gets 1011 and the record upstream_error', async () => {
    const t = await newTenant(proxy);
    const c = wsClient(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5&output_format=pcm_16000`,
      { headers: { 'xi-api-key': t.key } });
    await c.opened;
    const text = 'A sentence long enough for several chunks of audio.';
    c.send({ text: ' ' });
    c.send({ text, flush: true });
    const closed = await c.closed;
    assert.equal(closed.code, 1011, `closed ${closed.code} ${closed.reason}`);
    const audio = c.got.filter((m) => typeof m.audio === 'string');
    const sent = 1 + codePoints(text);
    const n = Math.ceil(speechMs(sent) / 100);
    assert.equal(audio.length, Math.floor(n / 2), 'half the pieces of the first generation');
    const [rec] = await recordsOf(proxy, t.tenantId, 1, (r) => r.line === 'tts');
    assert.equal(rec.simulated, true);
    assert.equal(rec.outcome, 'upstream_error');
    assert.equal(rec.units.characters, Math.ceil(sent / 2), 'the characters sent are still metered (turbo: half)');
    // The same fault cuts a streamed REST reply halfway.
    const res = await fetch(`${proxy.url}/elevenlabs/v1/text-to-speech/voice-1/stream?output_format=pcm_16000`, {
      method: 'POST', headers: { 'xi-api-key': t.key, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Cut me off please, halfway through.' }),
    });
    await assert.rejects(res.arrayBuffer());
    const recs = await recordsOf(proxy, t.tenantId, 2, (r) => r.line === 'tts');
    assert.ok(recs.every((r) => r.outcome === 'upstream_error'));
  });
});
