// mock_voice_sanity.test.mjs - the voice/LLM mocks tested on their own: each
// official SDK pointed straight at its mock (no proxy), one representative
// call per SDK, and the mock's record of where the SDK put its credential.
// When a proxy test of these providers fails and this file passes, the proxy
// is at fault.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import https from 'node:https';
import WebSocket from 'ws';
import { ElevenLabsClient } from '@elevenlabs/elevenlabs-js';
import sdk from 'microsoft-cognitiveservices-speech-sdk';
import { DeepgramClient } from '@deepgram/sdk';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import {
  startMockElevenLabs, elevenAudio, elevenCharacterCost,
  startMockAzure, azureUrl, ssmlCharacters,
  startMockDeepgram, startMockAnthropic, startMockCartesia, cartesiaAudio,
  startMockRealtime, realtimeUsage, makeTestCerts,
} from './lib/mock_voice.mjs';
import { makeWav, waitFor } from './lib/util.mjs';

// cartesia-js's ESM build looks for `ws` with require(), which ESM lacks, so
// on Node 20 (no global WebSocket) only its CommonJS build can open sockets.
const Cartesia = createRequire(import.meta.url)('@cartesia/cartesia-js').default;

const certs = makeTestCerts();
const byName = (rec, where) => rec.credentials.filter((c) => c.in === where);

// Opens a `ws` client and collects what it receives until the server closes.
function wsSession(url, opts = {}) {
  const ws = new WebSocket(url, opts.protocols || [], { headers: opts.headers, ca: opts.ca });
  const got = [];
  const s = { ws, got, error: null };
  ws.on('message', (d, binary) => got.push(binary ? d : JSON.parse(d.toString())));
  ws.on('error', (e) => { s.error = e; });
  // Resolves on close, also after a failed handshake (code 1006).
  s.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  s.opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  s.opened.catch(() => {});
  return s;
}

describe('ElevenLabs', { timeout: 20000 }, () => {
  let mock;
  let client;
  before(async () => {
    mock = await startMockElevenLabs();
    client = new ElevenLabsClient({ apiKey: 'xi-direct', baseUrl: mock.url, maxRetries: 0 });
  });
  after(() => mock.close());

  test('convert: audio bytes, character-cost and request-id, key in xi-api-key', async () => {
    const { data, rawResponse } = await client.textToSpeech.convert('voice-1', { text: 'Hello there', modelId: 'eleven_turbo_v2_5' }).withRawResponse();
    const parts = [];
    for await (const c of data) parts.push(Buffer.from(c));
    const rec = mock.requests.at(-1);
    assert.deepEqual(Buffer.concat(parts), Buffer.concat(elevenAudio('Hello there', mock.config.tts)));
    assert.equal(rawResponse.headers.get('character-cost'), String(elevenCharacterCost('Hello there', 'eleven_turbo_v2_5')));
    assert.equal(rawResponse.headers.get('character-cost'), '6');
    assert.equal(rawResponse.headers.get('request-id'), rec.requestId);
    assert.equal(rec.path, '/v1/text-to-speech/voice-1');
    assert.equal(rec.json.model_id, 'eleven_turbo_v2_5');
    assert.deepEqual(rec.credentials, [{ in: 'header', name: 'xi-api-key', value: 'xi-direct' }]);
  });

  test('stream: several chunks; with-timestamps JSON; voices and models', async () => {
    const s = await client.textToSpeech.stream('voice-1', { text: 'abc' });
    const parts = [];
    for await (const c of s) parts.push(Buffer.from(c));
    const rec = mock.requests.at(-1);
    assert.equal(rec.path, '/v1/text-to-speech/voice-1/stream');
    assert.equal(rec.sent.length, mock.config.tts.chunks);
    assert.deepEqual(Buffer.concat(parts), Buffer.concat(rec.sent));
    const t = await client.textToSpeech.convertWithTimestamps('voice-1', { text: 'Hi' });
    assert.deepEqual(t.alignment.characters, ['H', 'i']);
    assert.equal(Buffer.from(t.audioBase64, 'base64').length, mock.config.tts.chunks * mock.config.tts.chunkBytes);
    const v = await client.voices.getAll();
    assert.equal(v.voices[0].voiceId, mock.config.voices[0].voice_id);
    const models = await client.models.list();
    assert.ok(models.some((m) => m.modelId === 'eleven_turbo_v2_5'));
  });

  test('unaccepted key: 401 invalid_api_key in ElevenLabs shape', async () => {
    mock.acceptKeys = new Set(['xi-direct']);
    try {
      const bad = new ElevenLabsClient({ apiKey: 'xi-wrong', baseUrl: mock.url, maxRetries: 0 });
      await assert.rejects(bad.voices.getAll(), (e) => {
        assert.equal(e.statusCode, 401);
        assert.deepEqual(e.body, { detail: { status: 'invalid_api_key', message: 'Invalid API key' } });
        return true;
      });
      await client.voices.getAll();
    } finally {
      mock.acceptKeys = null;
    }
  });

  // elevenlabs-js has no client for stream-input: browsers and agents use a
  // plain WebSocket, as here.
  test('stream-input WS: key in the first message, audio chunks, isFinal, server closes', async () => {
    mock.acceptKeys = new Set(['xi-direct']);
    try {
      const s = wsSession(`${mock.wsUrl}/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5`);
      await s.opened;
      s.ws.send(JSON.stringify({ text: ' ', voice_settings: { stability: 0.5 }, xi_api_key: 'xi-direct' }));
      s.ws.send(JSON.stringify({ text: 'Hello ' }));
      s.ws.send(JSON.stringify({ text: 'world. ', flush: true }));
      s.ws.send(JSON.stringify({ text: '' }));
      const c = await s.closed;
      const rec = mock.sockets.at(-1);
      await rec.done;
      assert.equal(c.code, 1000);
      assert.equal(rec.closedBy, 'server');
      assert.deepEqual(byName(rec, 'message'), [{ in: 'message', name: 'xi_api_key', value: 'xi-direct' }]);
      assert.equal(rec.textReceived, ' Hello world. ');
      assert.equal(rec.query.model_id, 'eleven_turbo_v2_5');
      const audio = s.got.filter((m) => m.audio);
      assert.equal(audio.length, 2);
      assert.deepEqual(s.got.at(-1), { isFinal: true });
      assert.equal(rec.messages.length, 4);

      // A wrong key in the first message: error message and close 1008.
      const bad = wsSession(`${mock.wsUrl}/v1/text-to-speech/voice-1/stream-input`);
      await bad.opened;
      bad.ws.send(JSON.stringify({ text: ' ', xi_api_key: 'xi-wrong' }));
      assert.equal((await bad.closed).code, 1008);
      assert.equal(bad.got[0].error, 'invalid_api_key');
      // A wrong key on the handshake: upgrade refused with 401.
      const h = wsSession(`${mock.wsUrl}/v1/text-to-speech/voice-1/stream-input`, { headers: { 'xi-api-key': 'xi-wrong' } });
      await assert.rejects(h.opened, /401/);
      assert.equal(mock.sockets.at(-1).rejected.status, 401);
    } finally {
      mock.acceptKeys = null;
    }
  });
});

describe('Azure Speech', { timeout: 20000 }, () => {
  let mock;
  before(async () => {
    mock = await startMockAzure();
    mock.acceptKeys = { eastus: ['az-east'], westeurope: ['az-west'] };
  });
  after(() => mock.close());

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

  test('SDK STT over ws:// (universal v2): recognized text, key in header and query, region routed', async () => {
    const url = azureUrl(mock, { region: 'eastus', service: 'stt', path: '/stt/speech/universal/v2', scheme: 'ws' });
    const res = await recognize(url, 'az-east', makeWav(1));
    assert.equal(res.reason, sdk.ResultReason.RecognizedSpeech, res.errorDetails);
    assert.equal(res.text, mock.config.stt.text);
    const rec = mock.sockets.at(-1);
    assert.equal(rec.region, 'eastus');
    assert.equal(rec.sub, '/stt/speech/universal/v2');
    assert.equal(rec.query.language, 'en-US');
    assert.deepEqual(rec.credentials.map((c) => c.in).sort(), ['header', 'query']);
    assert.ok(rec.credentials.every((c) => c.value === 'az-east'));
    assert.equal(rec.audioBytes, 32000);
    assert.equal(rec.audioSeconds, 1);
    assert.deepEqual(rec.frames.slice(0, 3).map((f) => f.path), ['speech.config', 'speech.context', 'audio']);
  });

  test('SDK STT on the v1 conversation path', async () => {
    const url = azureUrl(mock, { region: 'westeurope', service: 'stt', path: '/speech/recognition/conversation/cognitiveservices/v1', scheme: 'ws' });
    const res = await recognize(url, 'az-west', makeWav(0.5));
    assert.equal(res.reason, sdk.ResultReason.RecognizedSpeech, res.errorDetails);
    assert.equal(mock.sockets.at(-1).region, 'westeurope');
    assert.equal(mock.sockets.at(-1).audioSeconds, 0.5);
  });

  test('SDK TTS over ws://: audio, SSML characters; a key of another region is refused', async () => {
    const url = azureUrl(mock, { region: 'eastus', service: 'tts', path: '/tts/cognitiveservices/websocket/v1', scheme: 'ws' });
    const res = await speak(url, 'az-east', 'hello world');
    assert.equal(res.reason, sdk.ResultReason.SynthesizingAudioCompleted, res.errorDetails);
    const rec = mock.sockets.at(-1);
    // The SDK asks for raw PCM and adds the RIFF header (44 bytes) itself.
    assert.equal(res.audioData.byteLength, 44 + mock.config.tts.seconds * 32000);
    assert.equal(rec.characters, 'hello world'.length);
    assert.equal(rec.region, 'eastus');
    assert.ok(byName(rec, 'header').length === 1 && byName(rec, 'query').length === 1);

    const wrong = azureUrl(mock, { region: 'westeurope', service: 'tts', path: '/tts/cognitiveservices/websocket/v1', scheme: 'ws' });
    const bad = await speak(wrong, 'az-east', 'hello');
    assert.equal(bad.reason, sdk.ResultReason.Canceled);
    assert.match(bad.errorDetails, /401/);
    assert.equal(mock.sockets.at(-1).rejected.status, 401);
  });

  test('REST: TTS SSML → audio, voices list, short-audio STT, token', async () => {
    const ssml = "<speak version='1.0' xml:lang='en-US'><voice name='en-US-JennyNeural'>Hi there!</voice></speak>";
    const tts = await fetch(azureUrl(mock, { region: 'eastus', service: 'tts', path: '/cognitiveservices/v1' }), {
      method: 'POST',
      headers: { 'Ocp-Apim-Subscription-Key': 'az-east', 'Content-Type': 'application/ssml+xml', 'X-Microsoft-OutputFormat': 'riff-16khz-16bit-mono-pcm' },
      body: ssml,
    });
    assert.equal(tts.status, 200);
    const audio = Buffer.from(await tts.arrayBuffer());
    assert.equal(audio.toString('latin1', 0, 4), 'RIFF');
    assert.equal(mock.requests.at(-1).characters, ssmlCharacters(ssml));
    assert.equal(mock.requests.at(-1).characters, 9);

    const voices = await fetch(azureUrl(mock, { region: 'eastus', service: 'tts', path: '/cognitiveservices/voices/list' }), { headers: { 'Ocp-Apim-Subscription-Key': 'az-east' } });
    assert.equal((await voices.json())[0].ShortName, 'en-US-JennyNeural');
    const wrongRegion = await fetch(azureUrl(mock, { region: 'westeurope', service: 'tts', path: '/cognitiveservices/voices/list' }), { headers: { 'Ocp-Apim-Subscription-Key': 'az-east' } });
    assert.equal(wrongRegion.status, 401);
    assert.match((await wrongRegion.json()).error.message, /wrong API endpoint/);

    const stt = await fetch(`${azureUrl(mock, { region: 'eastus', service: 'stt', path: '/speech/recognition/conversation/cognitiveservices/v1' })}?language=en-US&format=detailed`, {
      method: 'POST',
      headers: { 'Ocp-Apim-Subscription-Key': 'az-east', 'Content-Type': 'audio/wav; codecs=audio/pcm; samplerate=16000' },
      body: makeWav(2),
    });
    const j = await stt.json();
    assert.equal(j.RecognitionStatus, 'Success');
    assert.equal(j.NBest[0].Display, mock.config.stt.text);
    assert.equal(mock.requests.at(-1).uploadSeconds, 2);

    const tok = await fetch(azureUrl(mock, { region: 'eastus', service: 'sts', path: '/v1.0/issueToken' }), { method: 'POST', headers: { 'Ocp-Apim-Subscription-Key': 'az-east' } });
    const token = await tok.text();
    const withToken = await fetch(azureUrl(mock, { region: 'eastus', service: 'tts', path: '/cognitiveservices/voices/list' }), { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(withToken.status, 200);
  });
});

describe('Deepgram', { timeout: 20000 }, () => {
  let mock;
  let client;
  before(async () => {
    mock = await startMockDeepgram();
    mock.acceptKeys = ['dg-direct'];
    const environment = { base: mock.url, production: mock.wsUrl, agent: mock.wsUrl, agentRest: mock.url };
    client = new DeepgramClient({ apiKey: 'dg-direct', environment, maxRetries: 0, reconnect: false });
  });
  after(() => mock.close());

  test('prerecorded: metadata.duration of the WAV, key as Authorization: Token', async () => {
    const r = await client.listen.v1.media.transcribeFile(makeWav(2), { model: 'nova-3' });
    assert.equal(r.metadata.duration, 2);
    assert.equal(r.results.channels[0].alternatives[0].transcript, mock.config.listen.transcript);
    const rec = mock.requests.at(-1);
    assert.equal(rec.query.model, 'nova-3');
    assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', scheme: 'Token', value: 'dg-direct' }]);
  });

  test('speak: audio and dg-char-count', async () => {
    const { data, rawResponse } = await client.speak.v1.audio.generate({ text: 'Hello there', model: 'aura-2-thalia-en' }).withRawResponse();
    const bytes = Buffer.from(await data.arrayBuffer());
    assert.equal(bytes.length, mock.config.speak.chunks * mock.config.speak.chunkBytes);
    assert.equal(rawResponse.headers.get('dg-char-count'), '11');
    assert.equal(mock.requests.at(-1).characters, 11);
  });

  test('live: Results, then Metadata with duration on CloseStream, server closes', async () => {
    const conn = await client.listen.v1.connect({ model: 'nova-3', encoding: 'linear16', sample_rate: 16000 });
    const msgs = [];
    conn.on('message', (m) => msgs.push(m));
    const closed = new Promise((resolve) => conn.on('close', resolve));
    conn.connect();
    await conn.waitForOpen();
    const pcm = makeWav(1.5).subarray(44);
    for (let i = 0; i < pcm.length; i += 3200) conn.sendMedia(pcm.subarray(i, i + 3200));
    conn.sendCloseStream({ type: 'CloseStream' });
    await closed;
    const rec = mock.sockets.at(-1);
    await rec.done;
    assert.equal(rec.closedBy, 'server');
    assert.equal(rec.closeCode, 1000);
    assert.equal(rec.audioBytes, 48000);
    assert.deepEqual(rec.control, ['CloseStream']);
    assert.equal(msgs.at(-1).type, 'Metadata');
    assert.equal(msgs.at(-1).duration, 1.5);
    assert.ok(msgs.filter((m) => m.type === 'Results').length >= 2);
    assert.deepEqual(byName(rec, 'header'), [{ in: 'header', name: 'authorization', scheme: 'Token', value: 'dg-direct' }]);
  });

  test('errors in Deepgram shape; browser subprotocol key accepted', async () => {
    const bad = new DeepgramClient({ apiKey: 'dg-wrong', environment: { base: mock.url, production: mock.wsUrl }, maxRetries: 0 });
    await assert.rejects(bad.listen.v1.media.transcribeFile(makeWav(1), { model: 'nova-3' }), (e) => {
      assert.equal(e.statusCode, 401);
      assert.equal(e.body.err_code, 'INVALID_AUTH');
      assert.ok(e.body.request_id);
      return true;
    });
    const s = wsSession(`${mock.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`, { protocols: ['token', 'dg-direct'] });
    await s.opened;
    assert.equal(s.ws.protocol, 'token');
    s.ws.send(Buffer.alloc(32000));
    s.ws.send(JSON.stringify({ type: 'CloseStream' }));
    await s.closed;
    assert.equal(s.got.at(-1).duration, 1);
    assert.deepEqual(byName(mock.sockets.at(-1), 'subprotocol'), [{ in: 'subprotocol', name: 'token', value: 'dg-direct' }]);
  });
});

describe('Anthropic', { timeout: 20000 }, () => {
  let mock;
  let client;
  before(async () => {
    mock = await startMockAnthropic();
    mock.acceptKeys = ['ant-direct'];
    // authToken: null so an ANTHROPIC_AUTH_TOKEN in the environment cannot add a second credential.
    client = new Anthropic({ apiKey: 'ant-direct', authToken: null, baseURL: mock.url, maxRetries: 0 });
  });
  after(() => mock.close());

  test('messages: usage; sdk 1.x sends the API key as Authorization: Bearer', async () => {
    const m = await client.messages.create({ model: 'claude-mock-1', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(m.usage.input_tokens, 21);
    assert.equal(m.usage.cache_read_input_tokens, 3);
    assert.equal(m.content[0].text, 'Hello from the mock');
    const rec = mock.requests.at(-1);
    assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: 'ant-direct' }]);
    assert.ok(rec.headers['anthropic-version']);
  });

  test('stream: final usage from message_delta; x-api-key accepted too', async () => {
    mock.config.messages.output_tokens = 42;
    try {
      const s = client.messages.stream({ model: 'claude-mock-1', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
      const types = [];
      s.on('streamEvent', (e) => types.push(e.type));
      const fin = await s.finalMessage();
      assert.equal(fin.usage.output_tokens, 42);
      assert.equal(fin.content[0].text, 'Hello from the mock');
      assert.deepEqual([types[0], types.at(-2), types.at(-1)], ['message_start', 'message_delta', 'message_stop']);
    } finally {
      mock.resetConfig();
    }
    const r = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'ant-direct', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-mock-1', max_tokens: 8, messages: [] }),
    });
    assert.equal(r.status, 200);
    assert.deepEqual(mock.requests.at(-1).credentials, [{ in: 'header', name: 'x-api-key', value: 'ant-direct' }]);
    // A good key next to a stale one is refused: a proxy must strip the client's key.
    const both = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'ant-direct', authorization: 'Bearer proxy-key', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-mock-1', max_tokens: 8, messages: [] }),
    });
    assert.equal(both.status, 401);
    assert.equal(mock.requests.at(-1).credentials.length, 2);
  });

  test('unaccepted key: authentication_error shape', async () => {
    const bad = new Anthropic({ apiKey: 'ant-wrong', authToken: null, baseURL: mock.url, maxRetries: 0 });
    await assert.rejects(bad.messages.create({ model: 'claude-mock-1', max_tokens: 8, messages: [] }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'authentication_error');
      assert.equal(e.requestID, mock.requests.at(-1).requestId);
      return true;
    });
  });
});

describe('Cartesia', { timeout: 20000 }, () => {
  let mock;
  before(async () => {
    mock = await startMockCartesia({ tls: certs });
    mock.acceptKeys = ['cart-direct'];
  });
  after(() => mock.close());

  const body = (transcript, container = 'raw') => ({ model_id: 'sonic-2', transcript, voice: { mode: 'id', id: 'voice-1' }, output_format: { container, encoding: 'pcm_s16le', sample_rate: 16000 } });

  test('bytes and SSE over http; key as Authorization: Bearer', async () => {
    const client = new Cartesia({ apiKey: 'cart-direct', baseURL: mock.url, maxRetries: 0 });
    const r = await client.tts.generate(body('Hi there', 'wav'));
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), Buffer.concat(cartesiaAudio('Hi there', mock.config.tts, 'bytes')));
    const rec = mock.requests.at(-1);
    assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: 'cart-direct' }]);
    assert.ok(rec.headers['cartesia-version']);
    const sse = await client.tts.generateSSE(body('Hi there'));
    const types = [];
    for await (const e of sse) types.push(e.type);
    assert.deepEqual(types, ['chunk', 'chunk', 'chunk', 'done']);
    assert.equal(mock.requests.at(-1).characters, 8);
  });

  test('WebSocket over wss with the test CA: chunks then done', async () => {
    const client = new Cartesia({ apiKey: 'cart-direct', baseURL: mock.httpsUrl, maxRetries: 0 });
    const ws = await client.tts.websocket({ ca: certs.ca });
    const types = [];
    for await (const e of ws.generate(body('Hello over wss'))) types.push(e.type);
    ws.close();
    const rec = mock.sockets.at(-1);
    await rec.done;
    assert.deepEqual(types, ['chunk', 'chunk', 'chunk', 'done']);
    assert.equal(rec.tls, true);
    assert.equal(rec.characters, 'Hello over wss'.length);
    assert.deepEqual(byName(rec, 'header'), [{ in: 'header', name: 'authorization', value: 'cart-direct' }]);
    assert.equal(rec.closedBy, 'client');
    // Browser form: key in the query string.
    const s = wsSession(`${mock.wsUrl}/tts/websocket?api_key=cart-direct&cartesia_version=2025-04-16`);
    await s.opened;
    s.ws.send(JSON.stringify({ ...body('q'), context_id: 'c1' }));
    await waitFor(() => s.got.some((m) => m.type === 'done'), { what: 'Cartesia done message' });
    s.ws.close(1000);
    await s.closed;
    assert.deepEqual(byName(mock.sockets.at(-1), 'query'), [{ in: 'query', name: 'api_key', value: 'cart-direct' }]);
  });
});

describe('OpenAI Realtime', { timeout: 20000 }, () => {
  let mock;
  before(async () => {
    mock = await startMockRealtime({ tls: certs });
    mock.acceptKeys = ['sk-rt'];
  });
  after(() => mock.close());

  test('openai-node over wss with the test CA: session.created, response events, usage', async () => {
    const client = new OpenAI({ apiKey: 'sk-rt', baseURL: `${mock.httpsUrl}/v1`, maxRetries: 0 });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: certs.ca } }, client);
    const types = [];
    rt.on('event', (e) => types.push(e.type));
    const done = new Promise((resolve, reject) => { rt.on('response.done', resolve); rt.on('error', reject); });
    await new Promise((resolve, reject) => { rt.socket.once('open', resolve); rt.socket.once('error', reject); });
    rt.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    rt.send({ type: 'response.create' });
    const d = await done;
    rt.close();
    const rec = mock.sockets.at(-1);
    await rec.done;
    assert.deepEqual(d.response.usage, realtimeUsage(mock.config.response.usage));
    assert.equal(types[0], 'session.created');
    assert.equal(types.filter((t) => t === 'response.output_audio.delta').length, 3);
    assert.equal(rec.tls, true);
    assert.equal(rec.query.model, 'gpt-realtime');
    assert.equal(rec.audioAppendedBytes, 4800);
    assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: 'sk-rt' }]);
    assert.equal(rec.closedBy, 'client');
  });

  test('browser subprotocol key; beta event names; client_secrets; wrong key refused', async () => {
    const s = wsSession(`${mock.wssUrl}/v1/realtime?model=gpt-4o-realtime-preview`, { protocols: ['realtime', 'openai-insecure-api-key.sk-rt', 'openai-beta.realtime-v1'], ca: certs.ca });
    await s.opened;
    assert.equal(s.ws.protocol, 'realtime');
    s.ws.send(JSON.stringify({ type: 'response.create' }));
    await waitFor(() => s.got.some((m) => m.type === 'response.done'), { what: 'Realtime response.done' });
    s.ws.close();
    await s.closed;
    assert.ok(s.got.some((m) => m.type === 'response.audio.delta'));
    assert.deepEqual(mock.sockets.at(-1).credentials, [{ in: 'subprotocol', name: 'openai-insecure-api-key.', value: 'sk-rt' }]);

    const client = new OpenAI({ apiKey: 'sk-rt', baseURL: `${mock.url}/v1`, maxRetries: 0 });
    const cs = await client.realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' } });
    assert.match(cs.value, /^ek_/);

    const bad = wsSession(`${mock.wssUrl}/v1/realtime?model=gpt-realtime`, { headers: { Authorization: 'Bearer sk-wrong' }, ca: certs.ca });
    await assert.rejects(bad.opened, /401/);
  });
});

describe('harness', { timeout: 20000 }, () => {
  test('TLS helper: cert valid for 127.0.0.1 and localhost; NODE_EXTRA_CA_CERTS works for a child process', async () => {
    const srv = https.createServer({ cert: certs.cert, key: certs.key }, (req, res) => res.end('ok'));
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const body = await new Promise((resolve, reject) => {
          https.get({ host, port, ca: certs.ca, family: 4 }, (res) => {
            let b = '';
            res.on('data', (d) => { b += d; });
            res.on('end', () => resolve(b));
          }).on('error', reject);
        });
        assert.equal(body, 'ok');
      }
      // Without the CA the certificate is rejected.
      await assert.rejects(new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port }, resolve).on('error', reject)));
      const out = await new Promise((resolve, reject) => execFile(process.execPath,
        ['-e', `fetch('https://127.0.0.1:${port}/').then(r => r.text()).then(t => console.log(t))`],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.caFile } }, (e, stdout) => (e ? reject(e) : resolve(stdout))));
      assert.equal(out.trim(), 'ok');
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });

  test('WS overrides: refused handshake, scripted session, who closed', async () => {
    const mock = await startMockDeepgram();
    try {
      mock.override({ ws: true, path: '/v1/listen', handshake: () => ({ status: 429, body: { err_code: 'TOO_MANY', err_msg: 'slow down' } }) });
      const a = wsSession(`${mock.wsUrl}/v1/listen`);
      await assert.rejects(a.opened, /429/);
      assert.deepEqual(mock.sockets.at(-1).rejected, { status: 429, body: { err_code: 'TOO_MANY', err_msg: 'slow down' } });

      mock.override({ ws: true, handle: async (ctx) => { const m = await ctx.next(); await ctx.sendJson({ echo: m.json }); await ctx.close(4001, 'bye'); } });
      const b = wsSession(`${mock.wsUrl}/v1/listen`);
      await b.opened;
      b.ws.send(JSON.stringify({ hi: 1 }));
      const c = await b.closed;
      const rec = mock.sockets.at(-1);
      await rec.done;
      assert.deepEqual(b.got, [{ echo: { hi: 1 } }]);
      assert.deepEqual([c.code, c.reason], [4001, 'bye']);
      assert.equal(rec.closedBy, 'server');
      assert.deepEqual(rec.serverClose, { code: 4001, reason: 'bye' });

      // Built-in handler again; the client closes.
      const d = wsSession(`${mock.wsUrl}/v1/listen`);
      await d.opened;
      d.ws.close(4000, 'done here');
      await d.closed;
      const r2 = await mock.sockets.at(-1).done;
      assert.deepEqual([r2.closedBy, r2.closeCode, r2.closeReason], ['client', 4000, 'done here']);
    } finally {
      await mock.close();
    }
  });
});
