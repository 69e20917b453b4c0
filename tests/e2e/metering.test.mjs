// metering.test.mjs - what the provider bills, the proxy meters, whatever
// the client does (DESIGN §5), through the real binary and the recording
// mocks: a client that leaves after the head of a non-stream reply (or
// before it) does not shorten the metering - the proxy reads the reply on
// and meters it whole; audio length comes from the real format and the
// bytes sent (a forged WAV byte rate, extra chunks, a short data size
// change nothing); Deepgram live cut before its Metadata is estimated,
// never silently zero; ElevenLabs stream-input in the browsers'
// first-message mode meters every text, also those sent before the
// upstream socket opened.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { providersSetup, VOICE_PRICES } from './lib/providers.mjs';
import { checkRecord, costMicros } from './lib/records.mjs';
import { makeWav, waitFor } from './lib/util.mjs';

let h;
before(async () => {
  h = await providersSetup({ providers: ['azure_speech', 'deepgram', 'elevenlabs'] });
});
after(async () => { await h?.teardown(); });

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
const USAGE = { prompt_tokens: 1000, completion_tokens: 100000, total_tokens: 101000,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 } };

// A chat reply in two pieces: the head and a first part at once, the rest
// (with the usage) only when `gate` resolves.
function gatedChat(gate, { headFirst = true } = {}) {
  return async (ctx) => {
    if (!headFirst) await gate;
    ctx.head(200, { 'content-type': 'application/json' });
    await ctx.write('{"id":"chatcmpl-gated","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,');
    if (headFirst) await gate;
    await ctx.end(`"message":{"role":"assistant","content":"${'x'.repeat(2000)}"},"finish_reason":"stop"}],"usage":${JSON.stringify(USAGE)}}`);
  };
}

// A raw client that sends the request and vanishes right after the
// response head arrived (or before anything arrived).
function leavingClient(key, { afterHead = true } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(h.proxy.port, '127.0.0.1');
    let got = '';
    s.on('connect', () => {
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(CHAT)}\r\n\r\n${CHAT}`);
      if (!afterHead) setImmediate(() => { s.destroy(); resolve(''); });
    });
    s.on('data', (d) => {
      got += d.toString();
      if (afterHead && got.includes('\r\n\r\n')) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', () => {});
  });
}

for (const when of ['after the head', 'before the head']) {
  test(`a client that leaves ${when} of a non-stream reply: the reply is read on and metered whole`, async () => {
    const t = await h.tenant();
    let open;
    const gate = new Promise((r) => { open = r; });
    const mark = h.mock.requests.length;
    const gone = await h.proxy.metric('byok_client_disconnects_total');
    h.mock.override({ path: '/v1/chat/completions', handle: gatedChat(gate, { headFirst: when === 'after the head' }) });
    const head = await leavingClient(t.key, { afterHead: when === 'after the head' });
    if (when === 'after the head') assert.match(head, /^HTTP\/1\.1 200/);
    await waitFor(() => h.mock.since(mark).length === 1, { what: 'request upstream' });
    // The rest of the reply comes only once the proxy has seen the client
    // go: had it come first, the proxy would have written it all and the
    // outcome would rightly be ok.
    await waitFor(async () => await h.proxy.metric('byok_client_disconnects_total') === gone + 1,
      { what: 'the proxy to see the client leave' });
    open();
    const recs = await h.proxy.admin.waitRecords(t.tenantId, 1);
    h.count(t);
    h.issued.get(t.tenantId).ids.push(recs[0].id);
    const units = { input_tokens: 1000, output_tokens: 100000 };
    checkRecord(recs[0], {
      tenantId: t.tenantId, keyId: t.keyId, line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini',
      outcome: 'client_disconnect', status: 200, units, estimated: false,
      upstreamRequestId: h.mock.since(mark)[0].requestId,
    });
    assert.equal(recs[0].cost_micros, costMicros('gpt-4o-mini', units), 'billed whole: 60,150 micro-USD');
    assert.equal(recs[0].cost_micros, 60150);
  });
}

const sttUrl = () => `${h.proxy.url}/azure/stt/speech/recognition/conversation/cognitiveservices/v1?language=en-US`;
const sttHeaders = (key) => ({ 'Ocp-Apim-Subscription-Key': key, 'Content-Type': 'audio/wav; codecs=audio/pcm; samplerate=16000' });

// A WAV made of chunks: [id, body] pairs after "WAVE".
function wav(chunks) {
  const parts = [];
  for (const [id, body] of chunks) {
    const hd = Buffer.alloc(8);
    hd.write(id, 0, 'latin1');
    hd.writeUInt32LE(typeof body === 'number' ? body : body.length, 4);
    parts.push(hd);
    if (typeof body !== 'number') parts.push(body, Buffer.alloc(body.length % 2));
  }
  const all = Buffer.concat(parts);
  const riff = Buffer.alloc(12);
  riff.write('RIFF', 0);
  riff.writeUInt32LE(all.length + 4, 4);
  riff.write('WAVE', 8);
  return Buffer.concat([riff, all]);
}

function fmt({ rate = 16000, channels = 1, bits = 16, byteRate }) {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(1, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE(byteRate ?? rate * channels * bits / 8, 8);
  b.writeUInt16LE(channels * bits / 8, 12);
  b.writeUInt16LE(bits, 14);
  return b;
}

test('Azure STT: audio seconds from sample rate x size x channels and the bytes sent, never the declared byte rate', async () => {
  const t = await h.tenant();
  const pcm = (s) => Buffer.alloc(16000 * 2 * s);
  const cases = [
    ['byte_rate forged to 0x7fffffff', wav([['fmt ', fmt({ byteRate: 0x7fffffff })], ['data', pcm(60)]]), 60],
    ['LIST before, id3 after the data', wav([['LIST', Buffer.from('INFOISFT\x05\x00\x00\x00mock\x00', 'latin1')], ['fmt ', fmt({})], ['data', pcm(3)], ['id3 ', Buffer.alloc(10)]]), 3],
    ['data size 1 s, 5 s of audio follow', Buffer.concat([wav([['fmt ', fmt({})], ['data', 32000]]), pcm(5)]), 5],
    ['8 kHz stereo', wav([['fmt ', fmt({ rate: 8000, channels: 2 })], ['data', Buffer.alloc(8000 * 4 * 2)]]), 2],
  ];
  for (const [what, body, seconds] of cases) {
    const r = await fetch(sttUrl(), { method: 'POST', headers: sttHeaders(t.key), body });
    assert.equal(r.status, 200, `${what}: ${await r.text()}`);
    h.count(t);
    const rec = await h.proxy.admin.waitRecord(t.tenantId, r.headers.get('x-proxy-request-id'));
    h.issued.get(t.tenantId).ids.push(rec.id);
    assert.equal(rec.units.audio_seconds, seconds, what);
    assert.equal(rec.estimated, false, what);
    assert.equal(rec.cost_micros, costMicros(rec.model, { audio_seconds: seconds }, VOICE_PRICES.azure_speech), what);
  }
});

test('Deepgram live with opus cut before its Metadata: estimated from the session time, never zero', async () => {
  const t = await h.tenant();
  const mark = h.mocks.deepgram.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${h.proxy.port}/deepgram/v1/listen?model=nova-3&encoding=opus`, { headers: { authorization: `Token ${t.key}` } });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const opened = Date.now();
  for (let i = 0; i < 10; i++) ws.send(Buffer.alloc(200, i));
  await waitFor(() => h.mocks.deepgram.socketsSince(mark)[0]?.messages.length === 10, { what: 'audio upstream' });
  ws._socket.destroy(); // cut: no CloseStream, no Metadata
  const lived = Date.now() - opened;
  const recs = await h.proxy.admin.waitRecords(t.tenantId, 2);
  h.count(t, 2);
  h.issued.get(t.tenantId).ids.push(...recs.map((r) => r.id));
  const line = recs.find((r) => r.line === 'stt');
  assert.equal(line.outcome, 'client_disconnect');
  assert.equal(line.estimated, true, 'an estimate, and marked so');
  assert.ok(line.units.audio_seconds > 0, `never zero: ${line.units.audio_seconds}`);
  assert.ok(line.units.audio_seconds <= lived / 1000 + 0.5, `at most the session time: ${line.units.audio_seconds} s vs ${lived} ms`);
  assert.ok(line.cost_micros > 0);
});

test('ElevenLabs first-message mode: every text is metered, also those sent before the upstream opened', async () => {
  const t = await h.tenant();
  const mark = h.mocks.elevenlabs.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${h.proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_multilingual_v2`);
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const texts = Array.from({ length: 20 }, (_, i) => `part ${i} ünïcode `);
  ws.send(JSON.stringify({ text: ' ', xi_api_key: t.key }));
  for (const x of texts) ws.send(JSON.stringify({ text: x })); // before the upstream socket is open
  ws.send(JSON.stringify({ text: '' }));
  await waitFor(() => got.some((m) => m.isFinal === true), { what: 'isFinal' });
  assert.equal(await closed, 1000);
  const rec = h.mocks.elevenlabs.socketsSince(mark)[0];
  await rec.done;
  const all = ' ' + texts.join('');
  assert.equal(rec.textReceived, all, 'every text reached ElevenLabs, in order');
  assert.ok(!JSON.stringify(rec.messages.map((m) => m.text)).includes(t.key), 'the key left the first message');
  const recs = await h.proxy.admin.waitRecords(t.tenantId, 2);
  h.count(t, 2);
  h.issued.get(t.tenantId).ids.push(...recs.map((r) => r.id));
  const line = recs.find((r) => r.line === 'tts');
  assert.equal(line.units.characters, [...all].length, 'multilingual v2: one credit per character sent');
  assert.equal(line.seq, 1);
  assert.equal(line.final, true);
});

test('every record once in the store and the JSONL sink', async () => {
  await h.checkAllRecords();
});

// makeWav stays the helper of the other STT tests; this file builds its own.
assert.ok(makeWav);
