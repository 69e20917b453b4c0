// providers_elevenlabs.test.mjs - the /elevenlabs route (DESIGN §4) through the
// real binary with the official elevenlabs-js SDK against the recording mock:
// TTS bytes intact (plain, /stream relayed chunk by chunk, /with-timestamps),
// voices list, the platform key vs a BYOK connection key (DESIGN §3), the
// proxy key nowhere upstream, the usage record per meter.c's ElevenLabs rule
// (character-cost header, else code points × the model's credit rate,
// omitted model_id = eleven_multilingual_v2), 401 in ElevenLabs' shape, and a
// client that disconnects mid-stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { ElevenLabsClient } from '@elevenlabs/elevenlabs-js';
import { elevenAudio, elevenCharacterCost } from './lib/mock_voice.mjs';
import { providersSetup, expectInjected, expectRecord, expectProviderError, header } from './lib/providers.mjs';
import { mkTenant, connect, setByok, expectResolve, sid } from './lib/byok.mjs';
import { balances } from './lib/proxy.mjs';
import { httpRequest, waitFor } from './lib/util.mjs';

let h;
let mock;
before(async () => {
  h = await providersSetup({ providers: ['elevenlabs'] });
  mock = h.mocks.elevenlabs;
  // The mock answers 401 to any other key, and to a request carrying an
  // accepted key next to another one (a proxy key left in place).
  mock.acceptKeys = new Set([h.keys.elevenlabs]);
});
after(async () => { await h?.teardown(); });

const PK = () => h.keys.elevenlabs;
const base = () => `${h.proxy.url}/elevenlabs`;
const client = (key) => new ElevenLabsClient({ apiKey: key, baseUrl: base(), maxRetries: 0, timeoutInSeconds: 20 });
const codePoints = (s) => [...s].length;
const endpoint = (p) => [p, `/elevenlabs${p}`];

async function bytesOf(stream) {
  const parts = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

// A plain tenant (no BYOK) with a proxy key, registered for checkAllRecords().
const plainTenant = () => mkTenant(h);

test('TTS convert: audio bytes intact, platform key injected as xi-api-key, record from character-cost', async () => {
  const t = await plainTenant();
  const text = 'Hello there, general Kenobi.';
  const mark = mock.requests.length;
  const { data, rawResponse } = await client(t.key).textToSpeech
    .convert('voice-1', { text, modelId: 'eleven_turbo_v2_5', outputFormat: 'mp3_22050_32' }).withRawResponse();
  const audio = await bytesOf(data);
  h.count(t);
  const ups = mock.since(mark);
  assert.equal(ups.length, 1, 'one upstream request');
  const up = ups[0];
  assert.deepEqual(audio, Buffer.concat(elevenAudio(text, mock.config.tts)), 'audio bytes as the provider sent them');
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/text-to-speech/voice-1');
  assert.equal(up.json.text, text, 'body forwarded');
  assert.equal(up.json.model_id, 'eleven_turbo_v2_5');
  expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
  const cost = elevenCharacterCost(text, 'eleven_turbo_v2_5');
  assert.equal(rawResponse.headers.get('character-cost'), String(cost), 'provider headers relayed');
  assert.equal(rawResponse.headers.get('request-id'), up.requestId);
  await expectRecord(h, t, rawResponse.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-1'), model: 'eleven_turbo_v2_5',
    units: { characters: cost }, upstreamRequestId: up.requestId,
  });
});

test('a proxy key also sent as Authorization: Bearer is not forwarded either', async () => {
  const t = await plainTenant();
  const mark = mock.requests.length;
  const res = await httpRequest(`${base()}/v1/text-to-speech/voice-2`, {
    method: 'POST',
    headers: { 'xi-api-key': t.key, authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
    body: { text: 'abc', model_id: 'eleven_multilingual_v2' },
  });
  h.count(t);
  assert.equal(res.status, 200, res.body.toString());
  const [up] = mock.since(mark);
  expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
  assert.equal(up.headers.authorization, undefined, 'no Authorization header upstream');
  await expectRecord(h, t, res.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-2'), model: 'eleven_multilingual_v2',
    units: { characters: 3 }, upstreamRequestId: up.requestId,
  });
});

// The query is part of the request the provider must see (output_format
// decides what audio comes back); only credential parameters are removed.
test('query string forwarded: one parameter, several; credential parameters removed', async () => {
  const t = await plainTenant();
  const cases = [
    ['output_format=mp3_22050_32', { output_format: 'mp3_22050_32' }],
    ['output_format=pcm_16000&enable_logging=false', { output_format: 'pcm_16000', enable_logging: 'false' }],
    [`xi_api_key=${t.key}&output_format=ulaw_8000`, { output_format: 'ulaw_8000' }],
    [`output_format=ulaw_8000&xi-api-key=${t.key}`, { output_format: 'ulaw_8000' }],
  ];
  const got = [];
  for (const [q] of cases) {
    const mark = mock.requests.length;
    const res = await httpRequest(`${base()}/v1/text-to-speech/voice-q?${q}`, {
      method: 'POST', headers: { 'xi-api-key': t.key, 'content-type': 'application/json' }, body: { text: 'q' },
    });
    h.count(t);
    assert.equal(res.status, 200);
    const [up] = mock.since(mark);
    expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
    got.push(up.query);
  }
  assert.deepEqual(got, cases.map(([, exp]) => exp), 'the upstream query of each case');
});

test('/stream via the SDK: every chunk relayed, bytes intact', async () => {
  const t = await plainTenant();
  mock.config.tts = { chunks: 6, chunkBytes: 5000 };
  try {
    const text = 'Streaming is fun.';
    const mark = mock.requests.length;
    const { data, rawResponse } = await client(t.key).textToSpeech
      .stream('voice-s', { text, modelId: 'eleven_multilingual_v2' }).withRawResponse();
    const audio = await bytesOf(data);
    h.count(t);
    const [up] = mock.since(mark);
    assert.equal(up.path, '/v1/text-to-speech/voice-s/stream');
    assert.equal(up.sent.length, 6, 'the mock wrote 6 chunks');
    assert.deepEqual(audio, Buffer.concat(up.sent), 'relayed bytes equal what the provider wrote');
    expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
    await expectRecord(h, t, rawResponse.headers, {
      provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-s/stream'), model: 'eleven_multilingual_v2',
      units: { characters: elevenCharacterCost(text, 'eleven_multilingual_v2') }, upstreamRequestId: up.requestId,
    });
  } finally {
    mock.resetConfig();
  }
});

// The mock writes the next chunk only once the client has received the
// previous one: a proxy that buffered the reply would never pass a gate (each
// gate gives up after a deadline, and the test then fails on it). No
// character-cost header here, so the meter counts the text: omitted model_id
// = eleven_multilingual_v2, 1 credit per code point (not per UTF-16 unit, not
// per byte).
test('/stream relays each chunk as it arrives; no character-cost header: code points of the text, default model', async () => {
  const t = await plainTenant();
  const voice = 'voice-gated';
  const parts = [0, 1, 2, 3].map((i) => Buffer.alloc(3000 + i * 100, 0x41 + i));
  const gates = parts.map(() => {
    const g = {};
    g.promise = new Promise((resolve) => { g.open = () => { g.byClient = true; resolve(); }; });
    return g;
  });
  mock.override({
    path: `/v1/text-to-speech/${voice}/stream`,
    handle: async (ctx) => {
      ctx.head(200, { 'content-type': 'audio/mpeg', 'transfer-encoding': 'chunked', 'request-id': ctx.rec.requestId });
      for (let i = 0; i < parts.length; i++) {
        await ctx.write(parts[i]);
        if (i < parts.length - 1) {
          await Promise.race([gates[i].promise, new Promise((r) => setTimeout(r, 8000).unref())]);
        }
      }
      await ctx.end();
    },
  });
  const text = 'Grüße aus Köln 👋 — 東京';
  const mark = mock.requests.length;
  const res = await fetch(`${base()}/v1/text-to-speech/${voice}/stream`, {
    method: 'POST',
    headers: { 'xi-api-key': t.key, 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  h.count(t);
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const got = [];
  let total = 0;
  let passed = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    got.push(Buffer.from(value));
    total += value.length;
    while (passed < parts.length - 1 && total >= parts.slice(0, passed + 1).reduce((s, p) => s + p.length, 0)) {
      gates[passed].open();
      passed++;
    }
  }
  assert.deepEqual(gates.slice(0, -1).map((g) => Boolean(g.byClient)), [true, true, true],
    'each chunk reached the client before the provider wrote the next one');
  assert.deepEqual(Buffer.concat(got), Buffer.concat(parts), 'bytes intact');
  const [up] = mock.since(mark);
  assert.equal(up.json.model_id, undefined, 'the request named no model');
  assert.equal(res.headers.get('character-cost'), null, 'the provider sent no character-cost');
  assert.notEqual(codePoints(text), text.length, 'the text has characters outside the BMP');
  await expectRecord(h, t, res.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint(`/v1/text-to-speech/${voice}/stream`), model: 'eleven_multilingual_v2',
    units: { characters: codePoints(text) }, upstreamRequestId: up.requestId,
  });
});

test('no character-cost header with a Turbo model: half a credit per code point, rounded up', async () => {
  const t = await plainTenant();
  const voice = 'voice-noheader';
  mock.override({
    path: `/v1/text-to-speech/${voice}`,
    handle: (ctx) => ctx.bytes(200, Buffer.from('ID3fake-mp3'), { 'content-type': 'audio/mpeg' }),
  });
  const text = 'Ünïcödé, seven!';
  assert.equal(codePoints(text) % 2, 1, 'odd length: the rounding shows');
  const res = await httpRequest(`${base()}/v1/text-to-speech/${voice}`, {
    method: 'POST',
    headers: { 'xi-api-key': t.key, 'content-type': 'application/json' },
    body: { text, model_id: 'eleven_turbo_v2_5' },
  });
  h.count(t);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'ID3fake-mp3');
  await expectRecord(h, t, res.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint(`/v1/text-to-speech/${voice}`), model: 'eleven_turbo_v2_5',
    units: { characters: Math.ceil(codePoints(text) / 2) }, upstreamRequestId: null,
  });
});

test('/with-timestamps: JSON with alignment relayed, characters from character-cost', async () => {
  const t = await plainTenant();
  const text = 'Timing matters';
  const mark = mock.requests.length;
  const { data, rawResponse } = await client(t.key).textToSpeech
    .convertWithTimestamps('voice-t', { text, modelId: 'eleven_flash_v2_5' }).withRawResponse();
  h.count(t);
  const [up] = mock.since(mark);
  assert.equal(up.path, '/v1/text-to-speech/voice-t/with-timestamps');
  assert.deepEqual(data.alignment.characters, [...text]);
  assert.deepEqual(Buffer.from(data.audioBase64, 'base64'), Buffer.concat(elevenAudio(text, mock.config.tts)));
  expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
  await expectRecord(h, t, rawResponse.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-t/with-timestamps'), model: 'eleven_flash_v2_5',
    units: { characters: elevenCharacterCost(text, 'eleven_flash_v2_5') }, upstreamRequestId: up.requestId,
  });
});

test('voices list: relayed, a record with no units and no cost', async () => {
  const t = await plainTenant();
  const mark = mock.requests.length;
  const { data, rawResponse } = await client(t.key).voices.getAll().withRawResponse();
  h.count(t);
  const [up] = mock.since(mark);
  assert.equal(up.method, 'GET');
  assert.equal(up.path, '/v1/voices');
  assert.deepEqual(data.voices.map((v) => v.voiceId), mock.config.voices.map((v) => v.voice_id));
  expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: t.key });
  await expectRecord(h, t, rawResponse.headers, {
    provider: 'elevenlabs', line: ['tts', 'llm', 'stt', 'embeddings', 'realtime', 'platform'], endpoint: endpoint('/v1/voices'),
    model: null, units: {}, cost: 0, upstreamRequestId: up.requestId,
  });
});

test('BYOK tenant: its ElevenLabs connection key is injected, billed byok; the platform key for others', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId, { provider: 'elevenlabs' });
  mock.acceptKeys.add(c.apiKey);
  await setByok(h, t.tenantId, true, { elevenlabs: c.id });
  await expectResolve(h, t.tenantId, 'elevenlabs', { billedTo: 'byok', connectionId: c.id, payerId: t.tenantId });
  const before = balances(await h.proxy.admin.getTenant(t.tenantId));
  const text = 'My own key pays for this.';
  const session = sid('el');
  const sdk = new ElevenLabsClient({ apiKey: t.key, baseUrl: base(), maxRetries: 0, headers: { 'X-Session-Id': session } });
  let mark = mock.requests.length;
  const { data, rawResponse } = await sdk.textToSpeech.convert('voice-b', { text, modelId: 'eleven_multilingual_v2' }).withRawResponse();
  const audio = await bytesOf(data);
  h.count(t);
  let [up] = mock.since(mark);
  assert.deepEqual(audio, Buffer.concat(elevenAudio(text, mock.config.tts)));
  expectInjected(up, { name: 'xi-api-key', value: c.apiKey, proxyKey: t.key });
  assert.ok(!up.rawHeaders.join('\n').includes(PK()), 'no platform key on a BYOK request');
  const rec = await expectRecord(h, t, rawResponse.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-b'), model: 'eleven_multilingual_v2',
    units: { characters: codePoints(text) }, billedTo: 'byok', connectionId: c.id, sessionId: session,
    upstreamRequestId: up.requestId,
  });
  assert.ok(rec.cost_micros > 0, 'BYOK lines are priced too');
  // Same session, voices list: same key.
  mark = mock.requests.length;
  const v = await sdk.voices.getAll().withRawResponse();
  h.count(t);
  [up] = mock.since(mark);
  expectInjected(up, { name: 'xi-api-key', value: c.apiKey, proxyKey: t.key });
  assert.equal(header(v.rawResponse.headers, 'x-billed-to'), 'byok');
  await expectRecord(h, t, v.rawResponse.headers, {
    provider: 'elevenlabs', line: ['tts', 'llm', 'stt', 'embeddings', 'realtime', 'platform'], endpoint: endpoint('/v1/voices'),
    model: null, units: {}, cost: 0, billedTo: 'byok', connectionId: c.id, sessionId: session, upstreamRequestId: up.requestId,
  });
  assert.deepEqual(balances(await h.proxy.admin.getTenant(t.tenantId)), before, 'BYOK lines charge nothing');

  // A tenant without the byok feature: the platform key, billed to the wallet.
  const o = await plainTenant();
  mark = mock.requests.length;
  const r2 = await client(o.key).textToSpeech.convert('voice-b', { text, modelId: 'eleven_multilingual_v2' }).withRawResponse();
  await bytesOf(r2.data);
  h.count(o);
  [up] = mock.since(mark);
  expectInjected(up, { name: 'xi-api-key', value: PK(), proxyKey: o.key });
  const wrec = await expectRecord(h, o, r2.rawResponse.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint('/v1/text-to-speech/voice-b'), model: 'eleven_multilingual_v2',
    units: { characters: codePoints(text) }, upstreamRequestId: up.requestId,
  });
  assert.equal(wrec.cost_micros, rec.cost_micros, 'same price on both keys');
  assert.equal(wrec.charged.wallet_micros + wrec.charged.plan_credits_micros, wrec.cost_micros);
});

test('bad or missing proxy key: 401 in ElevenLabs shape, nothing upstream, no record', async () => {
  const t = await plainTenant();
  const mark = mock.requests.length;
  await assert.rejects(client(`${t.key.slice(0, -4)}zzzz`).textToSpeech.convert('voice-1', { text: 'x' }), (e) => {
    assert.equal(e.statusCode, 401);
    expectProviderError('elevenlabs', 401, e.body);
    return true;
  });
  const none = await httpRequest(`${base()}/v1/voices`, {});
  assert.equal(none.status, 401);
  assert.match(none.headers['content-type'] || '', /^application\/json/);
  expectProviderError('elevenlabs', 401, none.body);
  // The proxy key in the wrong place for this route (OpenAI style) is not a key.
  const wrongPlace = await httpRequest(`${base()}/v1/voices`, { headers: { authorization: `Bearer ${t.key}` } });
  assert.equal(wrongPlace.status, 401);
  expectProviderError('elevenlabs', 401, wrongPlace.body);
  assert.equal(mock.since(mark).length, 0, 'nothing reached the upstream');
  assert.equal((await h.proxy.admin.usage({ tenant_id: t.tenantId, limit: 10 })).length, 0, 'no record');
});

// The client goes away after the first chunk: the proxy cancels the upstream
// transfer (the mock sees its connection close before it finished) and
// writes one record with outcome client_disconnect and what was metered.
test('client disconnect on /stream: upstream closed, record outcome client_disconnect', async () => {
  const t = await plainTenant();
  const voice = 'voice-cut';
  const text = 'This will be cut short.';
  const first = Buffer.alloc(4096, 0x33);
  mock.override({
    path: `/v1/text-to-speech/${voice}/stream`,
    handle: async (ctx) => {
      ctx.head(200, {
        'content-type': 'audio/mpeg', 'transfer-encoding': 'chunked', 'request-id': ctx.rec.requestId,
        'character-cost': String(text.length),
      });
      await ctx.write(first);
      // Wait (bounded) for the proxy to drop the connection.
      await new Promise((resolve) => {
        if (ctx.res.destroyed) return resolve();
        ctx.res.once('close', resolve);
        setTimeout(resolve, 10000).unref();
      });
      if (!ctx.res.destroyed) {
        await ctx.write(Buffer.alloc(4096, 0x34));
        await ctx.end();
      }
    },
  });
  const mark = mock.requests.length;
  const got = await new Promise((resolve, reject) => {
    const req = http.request(`${base()}/v1/text-to-speech/${voice}/stream`, {
      method: 'POST', agent: false, headers: { 'xi-api-key': t.key, 'content-type': 'application/json' },
    }, (res) => {
      res.once('data', (d) => {
        req.destroy();
        resolve({ headers: res.headers, status: res.statusCode, first: d });
      });
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
    req.end(JSON.stringify({ text, model_id: 'eleven_multilingual_v2' }));
  });
  h.count(t);
  assert.equal(got.status, 200);
  assert.ok(got.first.length > 0);
  const up = await waitFor(() => {
    const r = mock.since(mark)[0];
    return r && r.closed ? r : null;
  }, { what: 'the mock to see the upstream connection close' });
  assert.equal(up.finished, false, 'the provider had not finished its reply');
  assert.equal(up.aborted, true, 'the upstream request was aborted');
  assert.equal(up.bytesSent, first.length, 'the mock wrote only the first chunk');
  await expectRecord(h, t, got.headers, {
    provider: 'elevenlabs', line: 'tts', endpoint: endpoint(`/v1/text-to-speech/${voice}/stream`), model: 'eleven_multilingual_v2',
    units: { characters: text.length }, outcome: 'client_disconnect', upstreamRequestId: up.requestId,
  });
});

test('one usage record per request, each once in the JSONL sink', async () => {
  await h.checkAllRecords();
});
