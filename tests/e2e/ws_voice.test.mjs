// ws_voice.test.mjs - the voice WebSocket relays other than OpenAI Realtime
// (DESIGN §4, §5; PROVIDERS.md §4.1, §4.2) through the real binary against
// the recording mocks: Deepgram live STT (official SDK with Authorization:
// Token, and the browser subprotocol pair "token, <key>") and Cartesia TTS
// (official SDK over the proxy's TLS listener, since cartesia-js forces wss;
// the `ws` package for the X-API-Key and ?api_key= forms). Checked: only the
// platform key reaches the mock, in the expected style; frames intact both
// ways; close codes relayed both ways; one session record (Deepgram: the
// final Metadata duration; Cartesia: transcript code points, model of the
// first message) plus one "platform" line, all billed to the wallet (also in
// a BYOK session); a wrong key refused at the handshake; a client that cuts
// its TCP connection gives "client_disconnect" and closes the upstream; no
// file descriptors left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { DeepgramClient } from '@deepgram/sdk';
import { cartesiaAudio, makeTestCerts } from './lib/mock_voice.mjs';
import { providersSetup, expectInjected, expectProviderError, VOICE_PRICES } from './lib/providers.mjs';
import { mkTenant, connect, setByok, sid } from './lib/byok.mjs';
import { checkRecord, costMicros } from './lib/records.mjs';
import { freePort, makeWav, waitFor } from './lib/util.mjs';

// cartesia-js's ESM build cannot load `ws` on Node 20 (README): CommonJS build.
const Cartesia = createRequire(import.meta.url)('@cartesia/cartesia-js').default;

// Platform fee per minute of an open voice session (the "platform" line).
const SESSION_PER_MINUTE = 20000;
const PRICES = {
  deepgram: { ...VOICE_PRICES.deepgram, 'nova-3': { ...VOICE_PRICES.deepgram['nova-3'], session_per_minute: SESSION_PER_MINUTE } },
  cartesia: { ...VOICE_PRICES.cartesia, 'sonic-2': { ...VOICE_PRICES.cartesia['sonic-2'], session_per_minute: SESSION_PER_MINUTE } },
};
const DG_ENDPOINT = ['/v1/listen', '/deepgram/v1/listen'];
const CART_ENDPOINT = ['/tts/websocket', '/cartesia/tts/websocket'];
const OUTCOMES = ['ok', 'client_disconnect', 'upstream_error', 'timeout'];
const DG_QUERY = { model: 'nova-3', encoding: 'linear16', sample_rate: '16000' };

let h;
let certs;
let tlsPort;
before(async () => {
  certs = makeTestCerts();
  tlsPort = await freePort();
  h = await providersSetup({
    providers: ['deepgram', 'cartesia'],
    patch: (cfg) => {
      cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: certs.certFile, key_file: certs.keyFile };
      cfg.pricing.deepgram = PRICES.deepgram;
      cfg.pricing.cartesia = PRICES.cartesia;
    },
  });
  for (const p of ['deepgram', 'cartesia']) h.mocks[p].acceptKeys = new Set([h.keys[p]]);
});
after(async () => { await h?.teardown(); });

const dg = () => h.mocks.deepgram;
const cart = () => h.mocks.cartesia;
const wsBase = () => `ws://127.0.0.1:${h.proxy.port}`;
const dgUrl = (q = DG_QUERY) => `${wsBase()}/deepgram/v1/listen?${new URLSearchParams(q)}`;

// The proxy's open descriptors (from its /metrics: its /proc files are root's).
const fdCount = () => h.proxy.openFds();

function noFdLeak(before) {
  return waitFor(async () => (await fdCount()) <= before, { timeout: 5000, what: `proxy fds back to ${before}` });
}

const deepgram = (key, headers) => new DeepgramClient({
  apiKey: key,
  environment: {
    base: `${h.proxy.url}/deepgram`, production: `${wsBase()}/deepgram`,
    agent: `${wsBase()}/deepgram`, agentRest: `${h.proxy.url}/deepgram`,
  },
  maxRetries: 0, reconnect: false, headers,
});

const cartBody = (transcript, extra = {}) => ({
  model_id: 'sonic-2', transcript, voice: { mode: 'id', id: 'voice-1' },
  output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 }, ...extra,
});
const codePoints = (s) => [...s].length;

// A `ws` client: every frame received (raw: { binary, data }), open and
// close promises. Also resolves `closed` after a refused handshake.
function wsClient(url, { protocols = [], headers, ca } = {}) {
  const ws = new WebSocket(url, protocols, { headers, ca, perMessageDeflate: false });
  const s = { ws, got: [], sent: [] };
  ws.on('message', (data, binary) => s.got.push({ binary, data: Buffer.from(data) }));
  ws.on('error', (e) => { s.error = e; });
  s.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  s.opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  s.opened.catch(() => {});
  s.send = (data) => {
    s.sent.push(data);
    ws.send(data);
  };
  s.texts = () => s.got.filter((m) => !m.binary).map((m) => m.data.toString('utf8'));
  return s;
}

// An upgrade the proxy must refuse: resolves with the HTTP status and body.
function refusedUpgrade(url, { protocols = [], headers } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers });
    ws.on('unexpected-response', (req, res) => {
      // Closing is the listener's job (ws does not): without this the client
      // keeps the connection open and the proxy rightly keeps its end.
      const sock = res.socket;
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString('utf8') });
        sock.destroy();
      });
    });
    ws.on('open', () => { ws.terminate(); reject(new Error('the proxy accepted the upgrade')); });
    ws.on('error', () => {});
  });
}

// The n records a tenant got since the last call (waited for, bounded):
// exactly n, each noted for checkAllRecords(). Returns { line, plat, all }.
async function takeRecords(t, n = 2) {
  const e = h.issued.get(t.tenantId);
  const recs = await h.proxy.admin.waitRecords(t.tenantId, e.ids.length + n);
  const fresh = recs.filter((r) => !e.ids.includes(r.id));
  assert.equal(fresh.length, n, `exactly ${n} new record(s): ${JSON.stringify(fresh)}`);
  e.ids.push(...fresh.map((r) => r.id));
  e.requests += n;
  return { line: fresh.find((r) => r.line !== 'platform'), plat: fresh.find((r) => r.line === 'platform'), all: fresh };
}

// The "platform" line of a session: the session's identity, billed to the
// wallet, audio_seconds = how long the session was open (no longer than the
// client saw it), priced by session_per_minute.
function checkPlatform(plat, line, t, { provider, maxMs }) {
  assert.ok(plat, 'a platform line for a session that opened');
  const secs = plat.units.audio_seconds;
  checkRecord(plat, {
    tenantId: t.tenantId, keyId: t.keyId, provider, line: 'platform', endpoint: line.endpoint, model: line.model,
    status: 101, outcome: OUTCOMES, sessionId: line.session_id, payerId: line.payer_id, billedTo: 'wallet',
    units: { audio_seconds: secs },
    cost: costMicros('session', { audio_seconds: secs }, { session: { audio_per_minute: SESSION_PER_MINUTE } }),
  });
  assert.ok(secs > 0, 'the session was open for some time');
  assert.ok(secs * 1000 <= maxMs, `platform seconds ${secs} within the client's session time ${maxMs} ms`);
}

// ---------------------------------------------------------------- Deepgram

// One live session with the official SDK: 1.5 s of PCM in 3200-byte frames,
// then CloseStream; the mock answers Results, a final Results and Metadata,
// and closes. Returns what both ends saw.
async function dgSdkSession(t, { headers } = {}) {
  const mark = dg().sockets.length;
  const started = Date.now();
  const conn = await deepgram(t.key, headers).listen.v1.connect({ model: 'nova-3', encoding: 'linear16', sample_rate: 16000 });
  const msgs = [];
  conn.on('message', (m) => msgs.push(m));
  const closed = new Promise((resolve) => conn.on('close', resolve));
  conn.connect();
  await conn.waitForOpen();
  const pcm = makeWav(1.5).subarray(44);
  const frames = [];
  for (let i = 0; i < pcm.length; i += 3200) frames.push(Buffer.from(pcm.subarray(i, i + 3200)));
  for (const f of frames) conn.sendMedia(f);
  conn.sendCloseStream({ type: 'CloseStream' });
  const ev = await closed;
  const ups = dg().socketsSince(mark);
  assert.equal(ups.length, 1, 'exactly one upstream socket');
  const rec = ups[0];
  await rec.done;
  return { rec, msgs, frames, closeCode: ev?.code, elapsed: Date.now() - started };
}

test('Deepgram SDK live: Token key swapped, frames intact both ways, stt record = Metadata duration, platform line', async () => {
  const t = await mkTenant(h);
  const fds = await fdCount();
  const { rec, msgs, frames, closeCode, elapsed } = await dgSdkSession(t);

  // Upstream: same path and query, exactly the platform key as Token, nothing of the proxy key.
  assert.equal(rec.path, '/v1/listen');
  assert.deepEqual(rec.query, DG_QUERY);
  expectInjected(rec, { name: 'authorization', value: h.keys.deepgram, proxyKey: t.key, scheme: 'Token' });
  assert.deepEqual(rec.protocols, [], 'no subprotocol upstream');

  // Client → upstream: every audio frame with its own boundaries and bytes, then CloseStream.
  const bin = rec.messages.filter((m) => m.binary);
  assert.equal(bin.length, frames.length, 'one upstream frame per client frame');
  bin.forEach((m, i) => assert.deepEqual(m.data, frames[i], `audio frame ${i} intact`));
  assert.equal(rec.audioBytes, 48000);
  assert.deepEqual(rec.messages.filter((m) => !m.binary).map((m) => m.json), [{ type: 'CloseStream' }]);
  // Upstream → client: every message, in order, unchanged.
  assert.deepEqual(msgs, rec.sent.map((s) => JSON.parse(s.data)), 'the client got exactly what the mock sent');
  assert.equal(msgs.at(-1).type, 'Metadata');
  assert.equal(msgs.at(-1).duration, 1.5);
  // The mock's close (1000 after Metadata) reached the client.
  assert.equal(rec.closedBy, 'server');
  assert.equal(rec.closeCode, 1000);
  assert.equal(closeCode, 1000, 'the client saw the upstream close code');

  const { line, plat } = await takeRecords(t, 2);
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, provider: 'deepgram', line: 'stt', endpoint: DG_ENDPOINT, model: 'nova-3',
    status: 101, outcome: 'ok', units: { audio_seconds: 1.5 }, prices: PRICES.deepgram,
  });
  assert.ok(line.cost_micros > 0);
  checkPlatform(plat, line, t, { provider: 'deepgram', maxMs: elapsed + 500 });
  await noFdLeak(fds);
});

test('Deepgram browser subprotocols "token, <key>": the client gets "token", none upstream; large frames intact; client close 1000 relayed', async () => {
  const t = await mkTenant(h);
  const fds = await fdCount();
  const mark = dg().sockets.length;
  const c = wsClient(dgUrl(), { protocols: ['token', t.key] });
  await c.opened;
  assert.equal(c.ws.protocol, 'token', 'the proxy answers "token"');
  const rec = await waitFor(() => dg().socketsSince(mark)[0], { what: 'upstream socket' });
  assert.deepEqual(rec.protocols, [], 'no subprotocol offered upstream');
  assert.equal(rec.headers['sec-websocket-protocol'], undefined);
  expectInjected(rec, { name: 'authorization', value: h.keys.deepgram, proxyKey: t.key, scheme: 'Token' });
  assert.deepEqual(rec.query, DG_QUERY);

  // A 10 s frame (relayed in pieces by the proxy, one frame to the mock), small ones, a control message.
  const pcm = makeWav(10).subarray(44);
  const frames = [Buffer.from(pcm), Buffer.from(pcm.subarray(0, 1000)), Buffer.alloc(1), Buffer.from(pcm.subarray(5, 16005))];
  for (const f of frames) c.send(f);
  c.send(JSON.stringify({ type: 'Finalize' }));
  await waitFor(() => c.texts().some((x) => JSON.parse(x).from_finalize === true), { what: 'the final Results of Finalize' });
  assert.equal(rec.messages.length, frames.length + 1);
  frames.forEach((f, i) => {
    assert.equal(rec.messages[i].binary, true);
    assert.deepEqual(rec.messages[i].data, f, `frame ${i} (${f.length} bytes) intact`);
  });
  assert.equal(rec.messages.at(-1).text, JSON.stringify({ type: 'Finalize' }));
  assert.deepEqual(c.texts(), rec.sent.map((s) => s.data), 'text frames byte for byte as the mock sent them');

  c.ws.close(1000, 'client done');
  assert.deepEqual(await c.closed, { code: 1000, reason: 'client done' });
  await rec.done;
  assert.equal(rec.closedBy, 'client');
  assert.equal(rec.closeCode, 1000);
  assert.equal(rec.closeReason, 'client done');

  const { line, plat } = await takeRecords(t, 2);
  // No Metadata was sent: the contract names no audio_seconds here, only a clean session.
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, provider: 'deepgram', line: 'stt', endpoint: DG_ENDPOINT, model: 'nova-3',
    status: 101, outcome: 'ok', units: null, estimated: line.estimated,
  });
  checkPlatform(plat, line, t, { provider: 'deepgram', maxMs: 60000 });
  await noFdLeak(fds);
});

test('Deepgram inside a BYOK session: still the platform key, both lines billed to the wallet', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, true, { openai: c.id });
  const session = sid('dg-live');
  const { rec, elapsed } = await dgSdkSession(t, { headers: { 'X-Session-Id': session } });
  expectInjected(rec, { name: 'authorization', value: h.keys.deepgram, proxyKey: t.key, scheme: 'Token' });
  assert.ok(!JSON.stringify(rec.headers).includes(c.apiKey), 'the tenant\'s OpenAI key is not used for Deepgram');
  const { line, plat } = await takeRecords(t, 2);
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, sessionId: session, provider: 'deepgram', line: 'stt', endpoint: DG_ENDPOINT,
    model: 'nova-3', status: 101, outcome: 'ok', units: { audio_seconds: 1.5 }, prices: PRICES.deepgram,
    billedTo: 'wallet', connectionId: null,
  });
  assert.equal(line.slot, null);
  checkPlatform(plat, line, t, { provider: 'deepgram', maxMs: elapsed + 500 });
  assert.equal(plat.session_id, session);
});

test('Deepgram: upstream close 4000 reaches the client; a client that drops its TCP connection closes the upstream (client_disconnect); no fd left', async () => {
  const t = await mkTenant(h);
  const fds = await fdCount();

  // The mock closes with 4000.
  let mark = dg().sockets.length;
  let wsctx = null;
  dg().override({ ws: true, path: '/v1/listen', handle: (ctx) => { wsctx = ctx; } });
  const a = wsClient(dgUrl(), { headers: { authorization: `Token ${t.key}` } });
  await a.opened;
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  await wsctx.close(4000, 'mock says bye');
  assert.deepEqual(await a.closed, { code: 4000, reason: 'mock says bye' });
  const ra = dg().socketsSince(mark)[0];
  assert.equal(ra.closedBy, 'server');
  assert.equal(ra.closeCode, 4000, 'the proxy answered the close with the same code');
  const first = await takeRecords(t, 2);
  assert.equal(first.line.status, 101);
  assert.equal(first.line.line, 'stt');

  // The client vanishes mid-stream, without a close frame.
  mark = dg().sockets.length;
  const b = wsClient(dgUrl(), { headers: { authorization: `Token ${t.key}` } });
  await b.opened;
  const rb = await waitFor(() => dg().socketsSince(mark)[0], { what: 'upstream socket' });
  b.send(Buffer.alloc(16000));
  await waitFor(() => b.got.length > 0, { what: 'a Results message' });
  b.ws._socket.destroy();
  await rb.done;
  assert.ok(rb.closed, 'the upstream socket was closed');
  assert.equal(rb.audioBytes, 16000);
  const second = await takeRecords(t, 2);
  assert.equal(second.line.outcome, 'client_disconnect');
  // No final Metadata arrived: the streamed audio is estimated from its
  // bytes (16000 B of 16 kHz mono linear16 = 0.5 s).
  assert.equal(second.line.estimated, true);
  assert.equal(second.line.units.audio_seconds, 0.5);
  assert.equal(second.line.status, 101);
  assert.equal(second.line.billed_to, 'wallet');
  assert.equal(second.line.model, 'nova-3');
  assert.equal(second.plat.billed_to, 'wallet');
  await noFdLeak(fds);
});

test('Deepgram: a wrong proxy key is refused with 401 at the handshake (header and subprotocol forms), nothing reaches the mock', async () => {
  const t = await mkTenant(h);
  const mark = dg().sockets.length;
  const fds = await fdCount();
  for (const opts of [{ headers: { authorization: 'Token bpk_wrong_key' } }, { protocols: ['token', 'bpk_wrong_key'] }, {}]) {
    const r = await refusedUpgrade(dgUrl(), opts);
    assert.equal(r.status, 401, JSON.stringify(opts));
    expectProviderError('deepgram', 401, r.body);
  }
  assert.equal(dg().socketsSince(mark).length, 0, 'no upstream socket');
  await noFdLeak(fds);
  // The proxy still serves: a right key right after.
  const c = wsClient(dgUrl(), { protocols: ['token', t.key] });
  await c.opened;
  c.send(JSON.stringify({ type: 'CloseStream' }));
  assert.equal((await c.closed).code, 1000);
  await takeRecords(t, 2);
});

// ---------------------------------------------------------------- Cartesia

test('Cartesia SDK over the proxy\'s TLS listener: Bearer out, frames intact, characters = code points of every transcript, platform line', async () => {
  const t = await mkTenant(h);
  const fds = await fdCount();
  const mark = cart().sockets.length;
  const started = Date.now();
  const client = new Cartesia({ apiKey: t.key, baseURL: `https://127.0.0.1:${tlsPort}/cartesia`, maxRetries: 0 });
  const ws = await client.tts.websocket({ ca: certs.ca });
  const closed = new Promise((resolve) => ws.socket.on('close', (code) => resolve(code)));
  const requests = [cartBody('Cartesia says héllo 👋', { context_id: 'ctx-a' }), cartBody('Zweiter Satz ✓', { context_id: 'ctx-b' })];
  const events = [];
  for (const r of requests) for await (const e of ws.generate(r)) events.push(e);
  ws.close();
  assert.equal(await closed, 1000);
  const ups = cart().socketsSince(mark);
  assert.equal(ups.length, 1, 'exactly one upstream socket');
  const rec = ups[0];
  await rec.done;
  const elapsed = Date.now() - started;

  assert.equal(rec.path, '/tts/websocket');
  expectInjected(rec, { name: 'authorization', value: h.keys.cartesia, proxyKey: t.key, scheme: 'Bearer' });
  assert.ok(rec.headers['cartesia-version'], 'cartesia-version forwarded');
  // What the SDK sent arrived unchanged; what the mock sent reached the SDK unchanged.
  assert.deepEqual(rec.messages.map((m) => m.json), requests);
  assert.deepEqual(events.map(({ audio, ...e }) => e), rec.sent.map((s) => JSON.parse(s.data)));
  const audio = events.filter((e) => e.type === 'chunk').map((e) => Buffer.from(e.audio));
  assert.deepEqual(audio, [
    ...cartesiaAudio(requests[0].transcript, cart().config.tts, 'ws0'),
    ...cartesiaAudio(requests[1].transcript, cart().config.tts, 'ws1'),
  ], 'audio intact');
  assert.equal(rec.closedBy, 'client');
  assert.equal(rec.closeCode, 1000);

  const chars = codePoints(requests[0].transcript) + codePoints(requests[1].transcript);
  assert.notEqual(chars, requests[0].transcript.length + requests[1].transcript.length, 'the texts tell code points from UTF-16 units');
  const { line, plat } = await takeRecords(t, 2);
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, provider: 'cartesia', line: 'tts', endpoint: CART_ENDPOINT, model: 'sonic-2',
    status: 101, outcome: 'ok', units: { characters: chars }, prices: PRICES.cartesia,
  });
  assert.ok(line.cost_micros > 0);
  checkPlatform(plat, line, t, { provider: 'cartesia', maxMs: elapsed + 500 });
  await noFdLeak(fds);
});

test('Cartesia X-API-Key in: X-API-Key out, text frames byte for byte, client close code relayed', async () => {
  const t = await mkTenant(h);
  const mark = cart().sockets.length;
  const c = wsClient(`${wsBase()}/cartesia/tts/websocket?cartesia_version=2024-06-10`,
    { headers: { 'X-API-Key': t.key, 'Cartesia-Version': '2024-06-10' } });
  await c.opened;
  const m1 = JSON.stringify(cartBody('Hello ', { context_id: 'k1', continue: true }));
  const m2 = JSON.stringify(cartBody('wörld 🌍', { context_id: 'k1', continue: false }));
  c.send(m1);
  c.send(m2);
  await waitFor(() => c.texts().some((x) => JSON.parse(x).type === 'done'), { what: 'Cartesia done' });
  const rec = cart().socketsSince(mark)[0];
  assert.deepEqual(rec.messages.map((m) => m.text), [m1, m2], 'client frames byte for byte');
  assert.deepEqual(c.texts(), rec.sent.map((s) => s.data), 'mock frames byte for byte');
  c.ws.close(4100, 'app says stop');
  assert.equal((await c.closed).code, 4100);
  await rec.done;
  assert.deepEqual([rec.closedBy, rec.closeCode, rec.closeReason], ['client', 4100, 'app says stop']);

  expectInjected(rec, { name: 'x-api-key', value: h.keys.cartesia, proxyKey: t.key });
  assert.equal(rec.headers.authorization, undefined, 'no Authorization header added');
  assert.equal(rec.headers['cartesia-version'], '2024-06-10');
  assert.deepEqual(rec.query, { cartesia_version: '2024-06-10' });

  const { line, plat } = await takeRecords(t, 2);
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, provider: 'cartesia', line: 'tts', endpoint: CART_ENDPOINT, model: 'sonic-2',
    status: 101, outcome: OUTCOMES, units: { characters: codePoints('Hello ') + codePoints('wörld 🌍') }, prices: PRICES.cartesia,
    seq: 1, final: true,
  });
  checkPlatform(plat, line, t, { provider: 'cartesia', maxMs: 60000 });
});

test('Cartesia: a message naming a model without a price ends the session (1008 model_not_priced) before it goes upstream', async () => {
  const t = await mkTenant(h);
  const mark = cart().sockets.length;
  const c = wsClient(`${wsBase()}/cartesia/tts/websocket?cartesia_version=2024-06-10`,
    { headers: { 'X-API-Key': t.key, 'Cartesia-Version': '2024-06-10' } });
  await c.opened;
  const m1 = JSON.stringify(cartBody('Hello ', { context_id: 'k1' }));
  c.send(m1);
  await waitFor(() => c.texts().some((x) => JSON.parse(x).type === 'done'), { what: 'Cartesia done' });
  c.send(JSON.stringify(cartBody('free speech?', { model_id: 'sonic-unpriced', context_id: 'k2' })));
  const closed = await c.closed;
  assert.deepEqual([closed.code, closed.reason], [1008, 'model_not_priced']);
  const rec = cart().socketsSince(mark)[0];
  await rec.done;
  assert.deepEqual(rec.messages.map((m) => m.text), [m1], 'the unpriced request never reached Cartesia');
  const { line } = await takeRecords(t, 2);
  assert.equal(line.units.characters, codePoints('Hello '), 'only the priced request is metered');
  assert.equal(line.model, 'sonic-2');
});

test('Cartesia browser ?api_key=: removed from the query, Bearer injected, the other parameters kept in order', async () => {
  const t = await mkTenant(h);
  const mark = cart().sockets.length;
  const c = wsClient(`${wsBase()}/cartesia/tts/websocket?cartesia_version=2025-04-16&api_key=${encodeURIComponent(t.key)}&x_client=web%20app`);
  await c.opened;
  c.send(JSON.stringify(cartBody('q', { context_id: 'c1' })));
  await waitFor(() => c.texts().some((x) => JSON.parse(x).type === 'done'), { what: 'Cartesia done' });
  c.ws.close(1000);
  await c.closed;
  const rec = cart().socketsSince(mark)[0];
  await rec.done;
  expectInjected(rec, { name: 'authorization', value: h.keys.cartesia, proxyKey: t.key, scheme: 'Bearer' });
  assert.equal(rec.url, '/tts/websocket?cartesia_version=2025-04-16&x_client=web%20app');
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: h.keys.cartesia }]);
  const { line, plat } = await takeRecords(t, 2);
  checkRecord(line, {
    tenantId: t.tenantId, keyId: t.keyId, provider: 'cartesia', line: 'tts', endpoint: CART_ENDPOINT, model: 'sonic-2',
    status: 101, outcome: 'ok', units: { characters: 1 }, prices: PRICES.cartesia,
  });
  checkPlatform(plat, line, t, { provider: 'cartesia', maxMs: 60000 });
});

test('Cartesia: upstream close 4000 reaches the client; a client cut mid-generation closes the upstream (client_disconnect, characters kept); no fd left', async () => {
  const t = await mkTenant(h);
  const fds = await fdCount();

  let mark = cart().sockets.length;
  let wsctx = null;
  cart().override({ ws: true, path: '/tts/websocket', handle: (ctx) => { wsctx = ctx; } });
  const a = wsClient(`${wsBase()}/cartesia/tts/websocket`, { headers: { authorization: `Bearer ${t.key}` } });
  await a.opened;
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  await wsctx.close(4000, 'quota');
  assert.deepEqual(await a.closed, { code: 4000, reason: 'quota' });
  assert.equal(cart().socketsSince(mark)[0].closeCode, 4000);
  await takeRecords(t, 2);

  // The mock answers the first chunk, then holds the rest: the client cuts its connection mid-generation.
  mark = cart().sockets.length;
  let release;
  const held = new Promise((r) => { release = r; });
  cart().override({
    ws: true, path: '/tts/websocket',
    handle: async (ctx) => {
      const m = await ctx.next();
      await ctx.sendJson({ type: 'chunk', data: 'AAAA', done: false, status_code: 206, context_id: m.json.context_id });
      await held;
    },
  });
  const b = wsClient(`${wsBase()}/cartesia/tts/websocket`, { headers: { authorization: `Bearer ${t.key}` } });
  await b.opened;
  const transcript = 'Ünïcode ✓ 🚀 text';
  b.send(JSON.stringify(cartBody(transcript, { context_id: 'cut' })));
  await waitFor(() => b.got.length === 1, { what: 'the first chunk' });
  b.ws._socket.destroy();
  const rb = cart().socketsSince(mark)[0];
  await rb.done;
  release();
  assert.ok(rb.closed, 'the upstream socket was closed');
  const { line, plat } = await takeRecords(t, 2);
  assert.equal(line.outcome, 'client_disconnect');
  assert.equal(line.status, 101);
  assert.equal(line.units.characters, codePoints(transcript));
  assert.equal(line.model, 'sonic-2');
  assert.equal(line.billed_to, 'wallet');
  assert.equal(plat.billed_to, 'wallet');
  await noFdLeak(fds);
});

test('Cartesia: a wrong proxy key is refused with 401 at the handshake (header, Bearer, query), nothing reaches the mock', async () => {
  const mark = cart().sockets.length;
  const fds = await fdCount();
  const url = `${wsBase()}/cartesia/tts/websocket`;
  for (const [u, headers] of [[url, { 'X-API-Key': 'bpk_wrong' }], [url, { authorization: 'Bearer bpk_wrong' }],
    [`${url}?api_key=bpk_wrong&cartesia_version=2025-04-16`, undefined], [url, undefined]]) {
    const r = await refusedUpgrade(u, { headers });
    assert.equal(r.status, 401, `${u} ${JSON.stringify(headers)}`);
    const j = JSON.parse(r.body);
    assert.equal(typeof j.error, 'string', `Cartesia error shape: ${r.body}`);
    assert.ok(j.error.length > 0);
  }
  assert.equal(cart().socketsSince(mark).length, 0, 'no upstream socket');
  await noFdLeak(fds);
});

test('one pair of records per session, each once in the JSONL sink', async () => {
  await h.checkAllRecords();
});
