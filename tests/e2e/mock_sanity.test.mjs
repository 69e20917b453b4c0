// mock_sanity.test.mjs - the harness tested on its own: the official OpenAI
// SDK pointed straight at the mock (no proxy), the raw HTTP helpers, the
// cost rule. When a proxy test fails and this one passes, the proxy is at fault.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';
import { startMockOpenAI, errorReply, slowChatStream, resetChatStream, chatStreamEvents, speechBytes } from './lib/mock_openai.mjs';
import { rawExchange, parseResponses } from './lib/rawhttp.mjs';
import { makeWav, wavSeconds, sseEvents, waitFor } from './lib/util.mjs';
import { costMicros, split } from './lib/records.mjs';

let mock;
let client;
before(async () => {
  mock = await startMockOpenAI();
  client = new OpenAI({ apiKey: 'sk-direct', baseURL: `${mock.url}/v1`, maxRetries: 0 });
});
after(async () => { await mock.close(); });

test('chat non-stream: usage and x-request-id', async () => {
  const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  assert.equal(data.usage.prompt_tokens, 17);
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 4);
  assert.equal(data.choices[0].message.content, 'reply to: hi');
  const rec = mock.requests.at(-1);
  assert.equal(response.headers.get('x-request-id'), rec.requestId);
  assert.equal(rec.headers.authorization, 'Bearer sk-direct');
});

test('chat stream: usage chunk only with include_usage', async () => {
  const s1 = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true });
  const c1 = [];
  for await (const c of s1) c1.push(c);
  assert.equal(c1.length, 6);
  assert.ok(c1.every((c) => c.usage === undefined));
  assert.equal(c1.map((c) => c.choices[0].delta.content ?? '').join(''), 'Hello there!');
  const s2 = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
  const c2 = [];
  for await (const c of s2) c2.push(c);
  assert.equal(c2.length, 7);
  assert.deepEqual(c2.at(-1).choices, []);
  assert.equal(c2.at(-1).usage.completion_tokens, 9);
  // Raw bytes equal what the mock records as sent.
  const r = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }) });
  const text = await r.text();
  assert.equal(text, mock.requests.at(-1).sent.join(''));
  assert.equal(sseEvents(text).events.length, 7); // 6 chunks + [DONE]
});

test('responses stream and non-stream', async () => {
  const resp = await client.responses.create({ model: 'gpt-4o', input: 'hi' });
  assert.equal(resp.output_text, 'Hi there');
  assert.equal(resp.usage.input_tokens, 31);
  const stream = await client.responses.create({ model: 'gpt-4o', input: 'hi', stream: true });
  const types = [];
  let usage;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.completed') usage = ev.response.usage;
  }
  assert.equal(types.at(-1), 'response.completed');
  assert.equal(usage.output_tokens, 12);
});

test('embeddings (SDK asks for base64 and decodes it)', async () => {
  const e = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
  assert.equal(e.data[0].embedding.length, 8);
  assert.equal(e.data[0].embedding[0], 1 / 16);
  assert.equal(mock.requests.at(-1).json.encoding_format, 'base64');
});

test('audio speech bytes and transcription', async () => {
  const sp = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'abc' });
  const bytes = Buffer.from(await sp.arrayBuffer());
  assert.deepEqual(bytes, Buffer.concat(speechBytes('abc', mock.config.speech)));
  const wav = makeWav(3);
  assert.equal(wavSeconds(wav), 3);
  const tr = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav, 'a.wav', { type: 'audio/wav' }) });
  assert.equal(tr.text, 'hello from the mock');
  assert.equal(tr.usage.seconds, 12);
  assert.equal(mock.requests.at(-1).uploadSeconds, 3);
  assert.equal(mock.requests.at(-1).form.model.text, 'whisper-1');
  const tt = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav, 'a.wav', { type: 'audio/wav' }), response_format: 'text' });
  assert.equal(String(tt).trim(), 'hello from the mock');
});

test('error override: SDK sees status and request id', async () => {
  const e = errorReply(429, { type: 'requests', code: 'rate_limit_exceeded', message: 'slow down' });
  mock.override({ path: '/v1/chat/completions', handle: e.handle });
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }), (err) => {
    assert.equal(err.status, 429);
    assert.equal(err.requestID, mock.requests.at(-1).requestId);
    return true;
  });
});

test('slow stream is held until released; reset stream truncates', async () => {
  const slow = slowChatStream({ chunksBefore: 2 });
  mock.override({ path: '/v1/chat/completions', handle: slow.handle });
  const r = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }) });
  const rec = await slow.reached;
  assert.equal(rec.sent.length, 2);
  slow.release();
  assert.match(await r.text(), /data: \[DONE\]\n\n$/);

  mock.override({ path: '/v1/chat/completions', handle: resetChatStream({ afterChunks: 2 }).handle });
  const r2 = await fetch(`${mock.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }) });
  let got = '';
  const dec = new TextDecoder();
  await assert.rejects((async () => { for await (const c of r2.body) got += dec.decode(c); })());
  assert.equal(got, mock.requests.at(-1).sent.join(''));
  assert.ok(!got.includes('[DONE]'));
});

test('raw exchange: pipelined requests parse in order, mock records close', async () => {
  const body = (t) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: t }] });
  const req = (t) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body(t))}\r\n\r\n${body(t)}`;
  const mark = mock.requests.length;
  const res = await rawExchange(mock.port, req('one') + req('two').replace('Host: x', 'Host: x\r\nConnection: close'));
  const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.equal(responses.length, 2);
  assert.equal(JSON.parse(responses[0].body).choices[0].message.content, 'reply to: one');
  assert.equal(JSON.parse(responses[1].body).choices[0].message.content, 'reply to: two');
  await waitFor(() => mock.since(mark).every((r) => r.closed), { what: 'mock saw both responses closed' });
});

test('chat stream events helper matches the include_usage rule', () => {
  const ev = chatStreamEvents({ n: 1, json: { stream_options: { include_usage: true } } }, mock.config.chat);
  assert.equal(ev.filter((e) => e.usage).length, 1);
  assert.ok(ev.slice(0, -2).every((e) => e.data.includes('"usage":null')));
});

test('cost rule: parts, cached price, half-up rounding once', () => {
  // 13×150000 + 4×75000 + 9×600000 = 7 650 000 → 7.65 → 8
  assert.equal(costMicros('gpt-4o-mini', { input_tokens: 17, cached_input_tokens: 4, output_tokens: 9 }), 8);
  // 23×2.5M + 8×1.25M + 12×10M = 187 500 000 → 187.5 → 188
  assert.equal(costMicros('gpt-4o', { input_tokens: 31, cached_input_tokens: 8, output_tokens: 12 }), 188);
  assert.equal(costMicros('tts-1', { characters: 10 }), 150);
  assert.equal(costMicros('whisper-1', { audio_seconds: 12 }), 1200);
  assert.deepEqual(split(8, 3), { plan_credits_micros: 3, wallet_micros: 5 });
  assert.deepEqual(split(8, 0), { plan_credits_micros: 0, wallet_micros: 8 });
});
