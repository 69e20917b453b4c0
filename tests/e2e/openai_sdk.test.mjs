// openai_sdk.test.mjs - the official OpenAI SDK (and raw fetch) through the
// proxy against the mock: every metered OpenAI endpoint, streaming with and
// without include_usage, the /openai/v1 prefix, X-Session-Id; for each
// request the injected platform key, the stripped proxy key, the reply
// headers, exactly one usage record with the right units/cost/charge, the
// balances and the JSONL sink.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { toFile } from 'openai';
import { setup } from './lib/harness.mjs';
import { speechBytes } from './lib/mock_openai.mjs';
import { makeWav, sseEvents } from './lib/util.mjs';
import { split } from './lib/records.mjs';

let h;
before(async () => { h = await setup(); });
after(async () => { await h?.teardown(); });

const WALLET = 10_000_000;
const isUsageChunk = (s) => typeof s === 'string' && s.startsWith('data: {') && s.includes('"choices":[]') && s.includes('"usage":{');

async function postRaw(path, key, body, headers = {}) {
  return fetch(h.proxy.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

test('chat non-stream: usage, cost, plan credits drawn before wallet', async () => {
  const t = await h.tenant({ plan: 3, wallet: WALLET });
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 17, completion_tokens: 9, cached_tokens: 4 };
  const mark = h.mock.requests.length;
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello proxy' }] };
  const { data, response } = await h.sdk(t.key).chat.completions.create(body).withResponse();
  h.count(t);
  const [mr] = h.mock.since(mark);
  assert.equal(h.mock.since(mark).length, 1);
  assert.equal(mr.url, '/v1/chat/completions');
  assert.deepEqual(mr.json, body, 'body forwarded unchanged');
  assert.equal(data.choices[0].message.content, 'reply to: hello proxy');
  assert.equal(data.usage.prompt_tokens, 17);
  assert.equal(response.headers.get('x-request-id'), mr.requestId, 'provider x-request-id passed through');
  const rec = await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini',
    units: { input_tokens: 17, cached_input_tokens: 4, output_tokens: 9 }, cost: 8, charged: split(8, 3),
  } });
  assert.deepEqual(rec.charged, { plan_credits_micros: 3, wallet_micros: 5 });
  await h.checkBalances(t, { plan: 3, wallet: WALLET });
});

test('chat stream without include_usage: client sees exactly the provider chunks minus the usage chunk', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 23, completion_tokens: 5, cached_tokens: 0 };
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream please' }], stream: true };

  // Raw bytes via fetch.
  let mark = h.mock.requests.length;
  const r = await postRaw('/v1/chat/completions', t.key, body);
  h.count(t);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  const text = await r.text();
  let [mr] = h.mock.since(mark);
  assert.equal(mr.json.stream_options?.include_usage, true, 'proxy asked upstream for usage');
  const { stream_options: _so, ...rest } = mr.json;
  assert.deepEqual(rest, body, 'the rest of the body is forwarded unchanged');
  assert.equal(mr.sent.filter(isUsageChunk).length, 1, 'mock sent a usage chunk');
  const expected = mr.sent.filter((s) => !isUsageChunk(s)).join('');
  assert.equal(text, expected, 'byte-identical to the upstream stream minus the usage chunk');
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  await h.verify({ t, mockRec: mr, headers: r.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', units: { input_tokens: 23, output_tokens: 5 }, cost: 6,
  } });

  // Same through the SDK's stream iterator.
  mark = h.mock.requests.length;
  const { data: stream, response } = await h.sdk(t.key).chat.completions.create(body).withResponse();
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  h.count(t);
  [mr] = h.mock.since(mark);
  const expectChunks = sseEvents(mr.sent.filter((s) => !isUsageChunk(s)).join('')).events
    .filter((e) => !e.includes('[DONE]')).map((e) => JSON.parse(e.slice('data: '.length)));
  assert.deepEqual(chunks, expectChunks, 'SDK yields exactly the non-usage chunks');
  assert.ok(chunks.every((c) => c.choices.length === 1), 'no choices:[] usage chunk reached the client');
  await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', units: { input_tokens: 23, output_tokens: 5 }, cost: 6,
  } });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('chat stream with include_usage: client sees the usage chunk', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 41, completion_tokens: 13, cached_tokens: 16 };
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'with usage' }], stream: true, stream_options: { include_usage: true } };
  let mark = h.mock.requests.length;
  const r = await postRaw('/v1/chat/completions', t.key, body);
  const text = await r.text();
  h.count(t);
  let [mr] = h.mock.since(mark);
  assert.deepEqual(mr.json, body);
  assert.equal(text, mr.sent.join(''), 'byte-identical to the upstream stream');
  // 25×150000 + 16×75000 + 13×600000 = 12 750 000 → 12.75 → 13
  const exp = { line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini',
    units: { input_tokens: 41, cached_input_tokens: 16, output_tokens: 13 }, cost: 13 };
  await h.verify({ t, mockRec: mr, headers: r.headers, exp });

  mark = h.mock.requests.length;
  const { data: stream, response } = await h.sdk(t.key).chat.completions.create(body).withResponse();
  let usage = null;
  for await (const c of stream) if (c.usage) usage = c.usage;
  h.count(t);
  [mr] = h.mock.since(mark);
  assert.equal(usage.prompt_tokens, 41);
  assert.equal(usage.prompt_tokens_details.cached_tokens, 16);
  await h.verify({ t, mockRec: mr, headers: response.headers, exp });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('responses API: non-stream and stream', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.responses = { ...h.mock.config.responses, input_tokens: 31, cached_tokens: 8, output_tokens: 12 };
  const exp = { line: 'llm', endpoint: '/v1/responses', model: 'gpt-4o',
    units: { input_tokens: 31, cached_input_tokens: 8, output_tokens: 12 }, cost: 188 };

  let mark = h.mock.requests.length;
  const { data, response } = await h.sdk(t.key).responses.create({ model: 'gpt-4o', input: 'hi' }).withResponse();
  h.count(t);
  let [mr] = h.mock.since(mark);
  assert.equal(data.output_text, 'Hi there');
  await h.verify({ t, mockRec: mr, headers: response.headers, exp });

  mark = h.mock.requests.length;
  const r = await postRaw('/v1/responses', t.key, { model: 'gpt-4o', input: 'hi', stream: true });
  const text = await r.text();
  h.count(t);
  [mr] = h.mock.since(mark);
  assert.equal(text, mr.sent.join(''), 'named SSE events relayed byte-identical');
  assert.equal(mr.json.stream_options, undefined, 'no chat-only stream_options added to /v1/responses');
  await h.verify({ t, mockRec: mr, headers: r.headers, exp });

  mark = h.mock.requests.length;
  const { data: stream, response: r2 } = await h.sdk(t.key).responses.create({ model: 'gpt-4o', input: 'hi', stream: true }).withResponse();
  const types = [];
  let usage = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.completed') usage = ev.response.usage;
  }
  h.count(t);
  [mr] = h.mock.since(mark);
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.equal(usage.input_tokens, 31);
  await h.verify({ t, mockRec: mr, headers: r2.headers, exp });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('embeddings', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.embeddings = { prompt_tokens: 1234, dims: 8 };
  const mark = h.mock.requests.length;
  const { data, response } = await h.sdk(t.key).embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] }).withResponse();
  h.count(t);
  const [mr] = h.mock.since(mark);
  assert.equal(data.data.length, 2);
  assert.equal(data.data[1].embedding[0], 1 / 16);
  // 1234 × 20000 = 24 680 000 → 24.68 → 25
  await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
    line: 'embeddings', endpoint: '/v1/embeddings', model: 'text-embedding-3-small', units: { input_tokens: 1234 }, cost: 25,
  } });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('audio speech: bytes relayed unchanged, characters metered', async () => {
  const t = await h.tenant({ wallet: WALLET });
  const input = 'The quick brown fox jumps over the lazy dog.';
  const mark = h.mock.requests.length;
  const resp = await h.sdk(t.key).audio.speech.create({ model: 'tts-1', voice: 'alloy', input });
  const bytes = Buffer.from(await resp.arrayBuffer());
  h.count(t);
  const [mr] = h.mock.since(mark);
  assert.deepEqual(bytes, Buffer.concat(speechBytes(input, h.mock.config.speech)), 'audio bytes identical');
  assert.deepEqual(bytes, Buffer.concat(mr.sent));
  assert.equal(resp.headers.get('content-type'), 'audio/mpeg');
  // 44 characters × 15 micro-USD
  await h.verify({ t, mockRec: mr, headers: resp.headers, exp: {
    line: 'tts', endpoint: '/v1/audio/speech', model: 'tts-1', units: { characters: input.length }, cost: input.length * 15,
  } });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('audio transcriptions: duration from the reply usage, or from the upload', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.transcription = { seconds: 12, text: 'hello from the mock' };
  const wav2 = makeWav(2);
  let mark = h.mock.requests.length;
  const { data, response } = await h.sdk(t.key).audio.transcriptions
    .create({ model: 'whisper-1', file: await toFile(wav2, 'two.wav', { type: 'audio/wav' }) }).withResponse();
  h.count(t);
  let [mr] = h.mock.since(mark);
  assert.equal(data.text, 'hello from the mock');
  assert.match(mr.headers['content-type'], /^multipart\/form-data; boundary=/);
  assert.deepEqual(mr.form.file.data, wav2, 'uploaded file forwarded byte-identical');
  // The reply says 12 s (usage type duration): 12 s × 6000/min = 1200.
  await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
    line: 'stt', endpoint: '/v1/audio/transcriptions', model: 'whisper-1', units: { audio_seconds: 12 }, cost: 1200,
  } });

  // response_format text carries no usage: the proxy measures the 3 s upload.
  const wav3 = makeWav(3);
  mark = h.mock.requests.length;
  const { data: txt, response: r2 } = await h.sdk(t.key).audio.transcriptions
    .create({ model: 'whisper-1', file: await toFile(wav3, 'three.wav', { type: 'audio/wav' }), response_format: 'text' }).withResponse();
  h.count(t);
  [mr] = h.mock.since(mark);
  assert.equal(String(txt).trim(), 'hello from the mock');
  assert.equal(mr.uploadSeconds, 3);
  await h.verify({ t, mockRec: mr, headers: r2.headers, exp: {
    line: 'stt', endpoint: '/v1/audio/transcriptions', model: 'whisper-1', units: { audio_seconds: 3 }, cost: 300,
  } });
  await h.checkBalances(t, { plan: 0, wallet: WALLET });
});

test('/openai/v1 prefix routes to the same upstream path', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 11, completion_tokens: 7, cached_tokens: 0 };
  const mark = h.mock.requests.length;
  const { response } = await h.sdk(t.key, { prefix: '/openai/v1' }).chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'prefixed' }] }).withResponse();
  h.count(t);
  const [mr] = h.mock.since(mark);
  assert.equal(mr.url, '/v1/chat/completions');
  // 11×150000 + 7×600000 = 5 850 000 → 5.85 → 6
  await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', units: { input_tokens: 11, output_tokens: 7 }, cost: 6,
  } });
});

test('X-Session-Id is recorded and filterable', async () => {
  const t = await h.tenant({ wallet: WALLET });
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 19, completion_tokens: 3, cached_tokens: 0 };
  const sessionId = `conv-e2e-${Date.now()}`;
  const client = h.sdk(t.key, { headers: { 'X-Session-Id': sessionId } });
  const ids = [];
  for (let i = 0; i < 2; i++) {
    const mark = h.mock.requests.length;
    const { response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `turn ${i}` }] }).withResponse();
    h.count(t);
    const [mr] = h.mock.since(mark);
    const rec = await h.verify({ t, mockRec: mr, headers: response.headers, exp: {
      line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', sessionId, units: { input_tokens: 19, output_tokens: 3 },
    } });
    ids.push(rec.id);
  }
  // One request without the header: session_id null.
  const mark = h.mock.requests.length;
  const { response } = await h.sdk(t.key).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'alone' }] }).withResponse();
  h.count(t);
  await h.verify({ t, mockRec: h.mock.since(mark)[0], headers: response.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', sessionId: null, units: { input_tokens: 19, output_tokens: 3 },
  } });
  const bySession = await h.proxy.admin.usage({ tenant_id: t.tenantId, session_id: sessionId });
  assert.deepEqual(bySession.map((r) => r.id).sort(), ids.sort());
  const all = await h.proxy.admin.usage({ tenant_id: t.tenantId });
  assert.ok(Date.parse(all[0].ts) >= Date.parse(all.at(-1).ts), 'newest first');
});

test('exactly one record per request, each once in the JSONL sink', async () => {
  await h.checkAllRecords();
});
