// providers_platform_only.test.mjs - the platform-only REST routes (DESIGN §3:
// providers without a BYOK slot) through the real binary with the official
// SDKs against the recording mocks: Anthropic messages (non-stream and
// stream: tokens from usage / message_start / message_delta, cache counts),
// Deepgram prerecorded (metadata.duration) and speak (characters), Cartesia
// /tts/bytes and /tts/sse (transcript characters). Each always carries the
// platform key and is billed to the wallet, also inside a session whose
// OpenAI line runs on the tenant's own key. Proxy-made 401s in the
// provider's shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import Anthropic from '@anthropic-ai/sdk';
import { DeepgramClient } from '@deepgram/sdk';
import { cartesiaAudio, messageStreamEvents } from './lib/mock_voice.mjs';
import { providersSetup, expectInjected, expectRecord, expectProviderError, VOICE_PRICES } from './lib/providers.mjs';
import { mkTenant, connect, setByok, call, expectLine, expectResolve, CHAT_USAGE, sid } from './lib/byok.mjs';
import { costMicros } from './lib/records.mjs';
import { httpRequest, makeWav } from './lib/util.mjs';

// cartesia-js's ESM build cannot load `ws` on Node 20; REST works either
// way, the CommonJS build is used as the README says.
const Cartesia = createRequire(import.meta.url)('@cartesia/cartesia-js').default;

let h;
before(async () => {
  h = await providersSetup({ providers: ['anthropic', 'deepgram', 'cartesia'] });
  h.mock.config.chat = { ...h.mock.config.chat, ...CHAT_USAGE };
  for (const p of ['anthropic', 'deepgram', 'cartesia']) h.mocks[p].acceptKeys = new Set([h.keys[p]]);
});
after(async () => { await h?.teardown(); });

const MODEL = 'claude-e2e-test'; // priced by the "claude-*" entry
const ant = () => h.mocks.anthropic;
const dg = () => h.mocks.deepgram;
const cart = () => h.mocks.cartesia;
const withSession = (session) => (session ? { 'X-Session-Id': session } : {});

const anthropic = (key, session) => new Anthropic({
  apiKey: key, authToken: null, baseURL: `${h.proxy.url}/anthropic`, maxRetries: 0, timeout: 20000, defaultHeaders: withSession(session),
});
const deepgram = (key, session) => new DeepgramClient({
  apiKey: key, baseUrl: `${h.proxy.url}/deepgram`, maxRetries: 0, reconnect: false, headers: withSession(session),
});
const cartesia = (key, session) => new Cartesia({
  apiKey: key, baseURL: `${h.proxy.url}/cartesia`, maxRetries: 0, defaultHeaders: withSession(session),
});
const cartBody = (transcript, container = 'raw') => ({
  model_id: 'sonic-2', transcript, voice: { mode: 'id', id: 'voice-1' },
  output_format: { container, encoding: 'pcm_s16le', sample_rate: 16000 },
});

// Anthropic's record: input = input + cache writes + cache reads (the whole
// prompt), cached = cache reads (proxy/meter.c).
function anthropicUnits(c) {
  return {
    input_tokens: c.input_tokens + c.cache_creation_input_tokens + c.cache_read_input_tokens,
    cached_input_tokens: c.cache_read_input_tokens,
    output_tokens: c.output_tokens,
  };
}

function one(mock, mark) {
  const ups = mock.since(mark);
  assert.equal(ups.length, 1, 'exactly one upstream request');
  return ups[0];
}

// ---- the line checks, shared by the plain and the BYOK-session tests ----

async function anthropicMessage(t, { session, payerId } = {}) {
  const mark = ant().requests.length;
  const { data, response } = await anthropic(t.key, session)
    .messages.create({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  h.count(t);
  const up = one(ant(), mark);
  assert.equal(up.path, '/v1/messages');
  assert.equal(data.content[0].text, ant().config.messages.deltas.join(''));
  assert.ok(up.headers['anthropic-version'], 'anthropic-version forwarded');
  expectInjected(up, { name: 'x-api-key', value: h.keys.anthropic, proxyKey: t.key });
  assert.equal(up.headers.authorization, undefined, 'the SDK\'s Authorization: Bearer <proxy key> is not forwarded');
  return expectRecord(h, t, response.headers, {
    provider: 'anthropic', line: 'llm', endpoint: ['/v1/messages', '/anthropic/v1/messages'], model: MODEL,
    units: anthropicUnits(ant().config.messages), upstreamRequestId: up.requestId, sessionId: session, payerId,
  });
}

async function deepgramListen(t, { session, payerId, seconds = 3 } = {}) {
  const mark = dg().requests.length;
  const { data, rawResponse } = await deepgram(t.key, session).listen.v1.media
    .transcribeFile(makeWav(seconds), { model: 'nova-3', smart_format: true }).withRawResponse();
  h.count(t);
  const up = one(dg(), mark);
  assert.equal(up.path, '/v1/listen');
  assert.equal(data.metadata.duration, seconds);
  assert.equal(up.audioSeconds, seconds, 'the upload arrived whole');
  expectInjected(up, { name: 'authorization', value: h.keys.deepgram, proxyKey: t.key, scheme: 'Token' });
  return expectRecord(h, t, rawResponse.headers, {
    provider: 'deepgram', line: 'stt', endpoint: ['/v1/listen', '/deepgram/v1/listen'], model: 'nova-3',
    units: { audio_seconds: seconds }, sessionId: session, payerId,
  });
}

async function deepgramSpeak(t, { session, payerId } = {}) {
  const text = 'Hello there, how can I help?';
  const mark = dg().requests.length;
  const { data, rawResponse } = await deepgram(t.key, session).speak.v1.audio
    .generate({ text, model: 'aura-2-thalia-en' }).withRawResponse();
  const audio = Buffer.from(await data.arrayBuffer());
  h.count(t);
  const up = one(dg(), mark);
  assert.equal(up.path, '/v1/speak');
  assert.equal(audio.length, dg().config.speak.chunks * dg().config.speak.chunkBytes, 'audio intact');
  assert.equal(rawResponse.headers.get('dg-char-count'), String(text.length));
  expectInjected(up, { name: 'authorization', value: h.keys.deepgram, proxyKey: t.key, scheme: 'Token' });
  return expectRecord(h, t, rawResponse.headers, {
    provider: 'deepgram', line: 'tts', endpoint: ['/v1/speak', '/deepgram/v1/speak'], model: 'aura-2-thalia-en',
    units: { characters: text.length }, sessionId: session, payerId,
  });
}

async function cartesiaBytes(t, { session, payerId } = {}) {
  const transcript = 'Cartesia says héllo 👋';
  const mark = cart().requests.length;
  const r = await cartesia(t.key, session).tts.generate(cartBody(transcript, 'wav'));
  const audio = Buffer.from(await r.arrayBuffer());
  h.count(t);
  const up = one(cart(), mark);
  assert.equal(up.path, '/tts/bytes');
  assert.deepEqual(audio, Buffer.concat(cartesiaAudio(transcript, cart().config.tts, 'bytes')), 'audio intact');
  assert.ok(up.headers['cartesia-version'], 'cartesia-version forwarded');
  expectInjected(up, { name: 'authorization', value: h.keys.cartesia, proxyKey: t.key, scheme: 'Bearer' });
  return expectRecord(h, t, r.headers, {
    provider: 'cartesia', line: 'tts', endpoint: ['/tts/bytes', '/cartesia/tts/bytes'], model: 'sonic-2',
    units: { characters: [...transcript].length }, sessionId: session, payerId,
  });
}

// ---- Anthropic ----

test('Anthropic messages via the SDK: platform key as x-api-key, tokens and cache reads in the record', async () => {
  const t = await mkTenant(h);
  const rec = await anthropicMessage(t);
  assert.equal(rec.units.input_tokens, 24, '21 input + 3 cache reads');
  assert.equal(rec.cost_micros, costMicros(MODEL, anthropicUnits(ant().config.messages), VOICE_PRICES.anthropic));
  assert.ok(rec.cost_micros > 0);
});

test('Anthropic cache writes count in input_tokens', async () => {
  const t = await mkTenant(h);
  ant().config.messages.cache_creation_input_tokens = 5;
  try {
    const rec = await anthropicMessage(t);
    assert.equal(rec.units.input_tokens, 29);
    assert.equal(rec.units.cached_input_tokens, 3);
  } finally {
    ant().resetConfig();
  }
});

test('Anthropic stream via the SDK: events relayed, input from message_start, output from the last message_delta', async () => {
  const t = await mkTenant(h);
  ant().config.messages.output_tokens = 42;
  try {
    const mark = ant().requests.length;
    const s = anthropic(t.key).messages.stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    const types = [];
    s.on('streamEvent', (e) => types.push(e.type));
    const { response } = await s.withResponse();
    const fin = await s.finalMessage();
    h.count(t);
    const up = one(ant(), mark);
    assert.equal(up.json.stream, true);
    assert.equal(fin.usage.output_tokens, 42);
    assert.equal(fin.content[0].text, ant().config.messages.deltas.join(''));
    assert.deepEqual(types.filter((x) => x !== 'ping'), messageStreamEvents(up, ant().config.messages)
      .map((e) => /^event: (\S+)/.exec(e)[1]).filter((x) => x !== 'ping'), 'every event relayed, in order');
    expectInjected(up, { name: 'x-api-key', value: h.keys.anthropic, proxyKey: t.key });
    await expectRecord(h, t, response.headers, {
      provider: 'anthropic', line: 'llm', endpoint: ['/v1/messages', '/anthropic/v1/messages'], model: MODEL,
      units: anthropicUnits(ant().config.messages), upstreamRequestId: up.requestId,
    });
  } finally {
    ant().resetConfig();
  }
});

test('Anthropic stream with x-api-key in: the SSE bytes arrive unchanged', async () => {
  const t = await mkTenant(h);
  const mark = ant().requests.length;
  const res = await fetch(`${h.proxy.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': t.key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.text();
  h.count(t);
  const up = one(ant(), mark);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(text, up.sent.join(''), 'byte-identical event stream');
  expectInjected(up, { name: 'x-api-key', value: h.keys.anthropic, proxyKey: t.key });
  await expectRecord(h, t, res.headers, {
    provider: 'anthropic', line: 'llm', endpoint: ['/v1/messages', '/anthropic/v1/messages'], model: MODEL,
    units: anthropicUnits(ant().config.messages), upstreamRequestId: up.requestId,
  });
});

test('Anthropic: bad or missing proxy key → 401 authentication_error, nothing upstream', async () => {
  const t = await mkTenant(h);
  const mark = ant().requests.length;
  await assert.rejects(anthropic(`${t.key.slice(0, -4)}zzzz`).messages.create({ model: MODEL, max_tokens: 8, messages: [] }), (e) => {
    assert.equal(e.status, 401);
    expectProviderError('anthropic', 401, e.error);
    return true;
  });
  const none = await httpRequest(`${h.proxy.url}/anthropic/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: { model: MODEL, max_tokens: 8, messages: [] } });
  assert.equal(none.status, 401);
  expectProviderError('anthropic', 401, none.body);
  assert.equal(ant().since(mark).length, 0);
});

// ---- Deepgram ----

test('Deepgram prerecorded via the SDK: Authorization: Token <platform key>, metadata.duration as audio seconds', async () => {
  const t = await mkTenant(h);
  const rec = await deepgramListen(t, { seconds: 3 });
  assert.equal(rec.cost_micros, costMicros('nova-3', { audio_seconds: 3 }, VOICE_PRICES.deepgram));
  assert.ok(rec.cost_micros > 0);
});

test('Deepgram: the reported metadata.duration wins over the upload length', async () => {
  const t = await mkTenant(h);
  dg().override({
    path: '/v1/listen',
    handle: (ctx) => ctx.json(200, { metadata: { request_id: 'dg-req-fixed', duration: 4.25, channels: 1 }, results: { channels: [] } },
      { 'dg-request-id': 'dg-req-fixed' }),
  });
  const mark = dg().requests.length;
  const { rawResponse } = await deepgram(t.key).listen.v1.media.transcribeFile(makeWav(1), { model: 'nova-3' }).withRawResponse();
  h.count(t);
  one(dg(), mark);
  await expectRecord(h, t, rawResponse.headers, {
    provider: 'deepgram', line: 'stt', endpoint: ['/v1/listen', '/deepgram/v1/listen'], model: 'nova-3', units: { audio_seconds: 4.25 },
  });
});

test('Deepgram speak via the SDK: characters from dg-char-count', async () => {
  const t = await mkTenant(h);
  const rec = await deepgramSpeak(t);
  assert.ok(rec.cost_micros > 0);
});

test('Deepgram: the query (model=…) reaches the provider', async () => {
  const t = await mkTenant(h);
  let mark = dg().requests.length;
  await deepgram(t.key).listen.v1.media.transcribeFile(makeWav(1), { model: 'nova-3' }).withRawResponse().then((r) => h.issued.get(t.tenantId).ids.push(r.rawResponse.headers.get('x-proxy-request-id')));
  h.count(t);
  const single = one(dg(), mark).query;
  mark = dg().requests.length;
  await deepgram(t.key).listen.v1.media.transcribeFile(makeWav(1), { model: 'nova-3', punctuate: true }).withRawResponse().then((r) => h.issued.get(t.tenantId).ids.push(r.rawResponse.headers.get('x-proxy-request-id')));
  h.count(t);
  const two = one(dg(), mark).query;
  assert.deepEqual([single, two], [{ model: 'nova-3' }, { model: 'nova-3', punctuate: 'true' }], 'upstream query of each call');
});

test('Deepgram: bad or missing proxy key → 401 {err_code, err_msg}, nothing upstream', async () => {
  const t = await mkTenant(h);
  const mark = dg().requests.length;
  await assert.rejects(deepgram(`${t.key.slice(0, -4)}zzzz`).listen.v1.media.transcribeFile(makeWav(1), { model: 'nova-3' }), (e) => {
    assert.equal(e.statusCode, 401);
    expectProviderError('deepgram', 401, e.body);
    return true;
  });
  const none = await httpRequest(`${h.proxy.url}/deepgram/v1/listen`, { method: 'POST', headers: { 'content-type': 'audio/wav' }, body: makeWav(0.1) });
  assert.equal(none.status, 401);
  expectProviderError('deepgram', 401, none.body);
  assert.equal(dg().since(mark).length, 0);
});

// ---- Cartesia ----

test('Cartesia /tts/bytes via the SDK: Bearer in, Bearer <platform key> out, transcript characters', async () => {
  const t = await mkTenant(h);
  const rec = await cartesiaBytes(t);
  assert.ok(rec.cost_micros > 0);
});

test('Cartesia /tts/sse via the SDK: events relayed, transcript characters', async () => {
  const t = await mkTenant(h);
  const transcript = 'Streaming over SSE.';
  const mark = cart().requests.length;
  const { data, response } = await cartesia(t.key).tts.generateSSE(cartBody(transcript)).withResponse();
  const chunks = [];
  const types = [];
  for await (const e of data) {
    types.push(e.type);
    if (e.type === 'chunk') chunks.push(Buffer.from(e.data, 'base64'));
  }
  h.count(t);
  const up = one(cart(), mark);
  assert.deepEqual(types, ['chunk', 'chunk', 'chunk', 'done']);
  assert.deepEqual(Buffer.concat(chunks), Buffer.concat(cartesiaAudio(transcript, cart().config.tts, 'sse')));
  expectInjected(up, { name: 'authorization', value: h.keys.cartesia, proxyKey: t.key, scheme: 'Bearer' });
  await expectRecord(h, t, response.headers, {
    provider: 'cartesia', line: 'tts', endpoint: ['/tts/sse', '/cartesia/tts/sse'], model: 'sonic-2', units: { characters: transcript.length },
  });
});

test('Cartesia with X-API-Key in: the platform key goes out as X-API-Key', async () => {
  const t = await mkTenant(h);
  const mark = cart().requests.length;
  const res = await httpRequest(`${h.proxy.url}/cartesia/tts/bytes`, {
    method: 'POST', headers: { 'X-API-Key': t.key, 'Cartesia-Version': '2024-06-10', 'content-type': 'application/json' }, body: cartBody('older client'),
  });
  h.count(t);
  assert.equal(res.status, 200);
  const up = one(cart(), mark);
  expectInjected(up, { name: 'x-api-key', value: h.keys.cartesia, proxyKey: t.key });
  assert.equal(up.headers.authorization, undefined, 'no Authorization header added');
  assert.equal(up.headers['cartesia-version'], '2024-06-10');
  await expectRecord(h, t, res.headers, {
    provider: 'cartesia', line: 'tts', endpoint: ['/tts/bytes', '/cartesia/tts/bytes'], model: 'sonic-2', units: { characters: 'older client'.length },
  });
});

test('Cartesia: bad proxy key → 401, nothing upstream', async () => {
  const t = await mkTenant(h);
  const mark = cart().requests.length;
  await assert.rejects(cartesia(`${t.key.slice(0, -4)}zzzz`).tts.generate(cartBody('x')), (e) => {
    assert.equal(e.status, 401);
    return true;
  });
  assert.equal(cart().since(mark).length, 0);
});

// ---- upstream request ids (DESIGN §5 upstream_request_id) ----

test('upstream request ids: Deepgram dg-request-id is recorded', async () => {
  const t = await mkTenant(h);
  const mark = dg().requests.length;
  const { rawResponse } = await deepgram(t.key).speak.v1.audio.generate({ text: 'id please', model: 'aura-2-thalia-en' }).withRawResponse();
  h.count(t);
  const up = one(dg(), mark);
  const id = rawResponse.headers.get('x-proxy-request-id');
  h.issued.get(t.tenantId).ids.push(id);
  const rec = await h.proxy.admin.waitRecord(t.tenantId, id);
  assert.equal(rawResponse.headers.get('dg-request-id'), up.dgRequestId);
  assert.equal(rec.upstream_request_id, up.dgRequestId, 'the provider\'s request id, to correlate with its logs');
});

// ---- inside a BYOK session ----

// A BYOK tenant's session: OpenAI runs on its own key (billed byok); the
// platform-only providers in the same session run on the platform keys and
// are billed to the wallet (DESIGN §3.2: "mixed sessions are normal").
test('inside a BYOK session: OpenAI on the tenant key, Anthropic/Deepgram/Cartesia on platform keys, billed wallet', async () => {
  const t = await mkTenant(h, { byok: true, plan: 1000, wallet: 10_000_000 });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, true, { openai: c.id });
  for (const p of ['anthropic', 'deepgram', 'cartesia']) {
    await expectResolve(h, t.tenantId, p, { billedTo: 'wallet', payerId: t.tenantId });
  }
  const session = sid('mixed');
  const first = await call(h, t, { provider: 'openai', session });
  await expectLine(h, t, first, { key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id, sessionId: session });
  const wallet = [];
  wallet.push(await anthropicMessage(t, { session }));
  wallet.push(await deepgramListen(t, { session, seconds: 2 }));
  wallet.push(await deepgramSpeak(t, { session }));
  wallet.push(await cartesiaBytes(t, { session }));
  const again = await call(h, t, { provider: 'openai', session });
  await expectLine(h, t, again, { key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id, sessionId: session });
  for (const r of wallet) {
    assert.equal(r.billed_to, 'wallet');
    assert.equal(r.slot, null);
    assert.equal(r.connection_id, null);
    assert.equal(r.session_id, session);
    assert.ok(r.cost_micros > 0);
  }
  // Plan credits first, then the wallet; BYOK lines charge nothing.
  await h.checkBalances(t, { plan: 1000, wallet: 10_000_000 });
  const total = wallet.reduce((s, r) => s + r.cost_micros, 0);
  const recs = await h.proxy.admin.usage({ tenant_id: t.tenantId, limit: 100 });
  const charged = recs.reduce((s, r) => s + r.charged.plan_credits_micros + r.charged.wallet_micros, 0);
  assert.equal(charged, total, 'exactly the wallet lines were charged');
});

test('one usage record per request, each once in the JSONL sink', async () => {
  await h.checkAllRecords();
});
