// realtime.test.mjs - OpenAI Realtime over WebSocket through the proxy: the
// official openai SDK (OpenAIRealtimeWS, which forces wss) against the
// proxy's TLS listener with a test CA, the browser-style subprotocol key,
// BYOK, the usage records (one "realtime" line per session with the summed
// response.done usage, plus a "platform" line), sockets closed by either
// side, a refused key, and no file descriptors left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import WebSocket from 'ws';
import { startMockRealtime, realtimeUsage, makeTestCerts } from './lib/mock_voice.mjs';
import { startProxy } from './lib/proxy.mjs';
import { freePort, waitFor, randomHex } from './lib/util.mjs';

const PRICE = { input_per_1m: 4000000, cached_input_per_1m: 400000, output_per_1m: 16000000,
  audio_input_per_1m: 32000000, audio_output_per_1m: 64000000, session_per_minute: 20000 };
let certs, mock, proxy, tlsPort, tenant, key;

before(async () => {
  certs = makeTestCerts();
  mock = await startMockRealtime();
  tlsPort = await freePort();
  proxy = await startProxy({
    mockUrl: mock.url,
    patch: (cfg) => {
      cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: certs.certFile, key_file: certs.keyFile };
      cfg.pricing.openai['gpt-realtime'] = PRICE;
    },
  });
  mock.acceptKeys = [proxy.platformKey];
  tenant = 'rt';
  await proxy.admin.createTenant({ id: tenant, name: 'Realtime', features: { byok: true }, wallet_micros: 10_000_000 });
  key = (await proxy.admin.createKey(tenant)).key;
});

after(async () => {
  await proxy?.stop();
  proxy?.remove();
  await mock?.close();
});

function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function expectedCost(u) {
  const inText = u.input_text_tokens, inAudio = u.input_audio_tokens, cached = u.cached_tokens;
  const sum = (inText - cached) * PRICE.input_per_1m + cached * PRICE.cached_input_per_1m +
    inAudio * PRICE.audio_input_per_1m + u.output_text_tokens * PRICE.output_per_1m +
    u.output_audio_tokens * PRICE.audio_output_per_1m;
  return Math.floor((sum + 500000) / 1000000);
}

async function sdkSession(apiKey) {
  const client = new OpenAI({ apiKey, baseURL: `https://127.0.0.1:${tlsPort}/v1`, maxRetries: 0 });
  const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: certs.ca } }, client);
  const types = [];
  rt.on('event', (e) => types.push(e.type));
  const done = new Promise((resolve, reject) => { rt.on('response.done', resolve); rt.on('error', reject); });
  await new Promise((resolve, reject) => { rt.socket.once('open', resolve); rt.socket.once('error', reject); });
  rt.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
  rt.send({ type: 'response.create' });
  const d = await done;
  return { rt, d, types };
}

async function recordsFor(t, n) {
  return proxy.admin.waitRecords(t, n);
}

test('openai SDK over wss: platform key injected, frames intact, realtime + platform records', async () => {
  const markS = mock.sockets.length;
  const before = fdCount(proxy.pid);
  const { rt, d, types } = await sdkSession(key);
  rt.close();
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  assert.deepEqual(d.response.usage, realtimeUsage(mock.config.response.usage), 'usage reached the client intact');
  assert.equal(types[0], 'session.created');
  assert.equal(types.filter((t) => t === 'response.output_audio.delta').length, 3);
  assert.equal(rec.audioAppendedBytes, 4800, 'client frames reached the upstream intact');
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: proxy.platformKey }]);
  assert.ok(!JSON.stringify(rec.headers).includes(key), 'the proxy key never reaches the upstream');
  assert.equal(rec.query.model, 'gpt-realtime');

  const recs = await recordsFor(tenant, 2);
  const line = recs.find((r) => r.line === 'realtime');
  const plat = recs.find((r) => r.line === 'platform');
  assert.ok(line && plat, JSON.stringify(recs));
  const u = mock.config.response.usage;
  assert.equal(line.units.input_tokens, u.input_text_tokens + u.input_audio_tokens);
  assert.equal(line.units.cached_input_tokens, u.cached_tokens);
  assert.equal(line.units.audio_input_tokens, u.input_audio_tokens);
  assert.equal(line.units.output_tokens, u.output_text_tokens + u.output_audio_tokens);
  assert.equal(line.units.audio_output_tokens, u.output_audio_tokens);
  assert.equal(line.cost_micros, expectedCost(u));
  assert.equal(line.billed_to, 'wallet');
  assert.equal(line.model, 'gpt-realtime');
  assert.equal(line.status, 101);
  assert.equal(line.outcome, 'ok');
  assert.equal(plat.billed_to, 'wallet');
  assert.ok(plat.units.audio_seconds >= 0);
  await waitFor(() => fdCount(proxy.pid) <= before, { timeout: 5000, what: 'no fd left behind' });
});

test('browser subprotocol key: removed upstream, the client gets "realtime"', async () => {
  const markS = mock.sockets.length;
  const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime?model=gpt-realtime`,
    ['realtime', `openai-insecure-api-key.${key}`, 'openai-beta.realtime-v1'], { ca: certs.ca });
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  assert.equal(ws.protocol, 'realtime');
  ws.send(JSON.stringify({ type: 'response.create' }));
  await waitFor(() => got.some((m) => m.type === 'response.done'), { what: 'response.done' });
  ws.close(1000);
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: proxy.platformKey }]);
  assert.ok(!(rec.protocols || []).some((p) => p.includes(key)), 'no key in the upstream subprotocols');
  assert.equal(rec.closedBy, 'client');
});

test('BYOK: the connection key goes upstream, the realtime line is billed byok, platform line wallet', async () => {
  const byokKey = `sk-byok-rt-${randomHex(8)}`;
  mock.acceptKeys = [proxy.platformKey, byokKey];
  const t = 'rt-byok';
  await proxy.admin.createTenant({ id: t, name: 'RT BYOK', features: { byok: true }, wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const c = await proxy.admin.ok('POST', `/admin/tenants/${t}/connections`, { provider: 'openai', name: 'rt', api_key: byokKey });
  await proxy.admin.ok('PUT', `/admin/tenants/${t}/byok`, { enabled: true, slots: { openai: c.id } });
  const markS = mock.sockets.length;
  const { rt } = await sdkSession(k);
  rt.close();
  await mock.socketsSince(markS)[0].done;
  assert.deepEqual(mock.socketsSince(markS)[0].credentials, [{ in: 'header', name: 'authorization', value: byokKey }]);
  const recs = await recordsFor(t, 2);
  const line = recs.find((r) => r.line === 'realtime');
  const plat = recs.find((r) => r.line === 'platform');
  assert.equal(line.billed_to, 'byok');
  assert.equal(line.connection_id, c.id);
  assert.equal(line.charged.wallet_micros + line.charged.plan_credits_micros, 0);
  assert.equal(plat.billed_to, 'wallet');
  assert.equal(plat.connection_id, null);
});

test('client vanishes mid-session: upstream closed, record client_disconnect; upstream closes: relayed', async () => {
  const t = 'rt-cut';
  await proxy.admin.createTenant({ id: t, name: 'RT cut', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const before = fdCount(proxy.pid);

  let markS = mock.sockets.length;
  const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime?model=gpt-realtime`, [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await waitFor(() => mock.socketsSince(markS).length === 1, { what: 'upstream socket' });
  ws._socket.destroy(); // no close frame
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  const recs = await recordsFor(t, 1);
  assert.equal(recs.find((r) => r.line === 'realtime').outcome, 'client_disconnect');

  // The upstream closes with a code: the client sees the same code.
  markS = mock.sockets.length;
  let wsctx = null;
  mock.override({ ws: true, path: '/v1/realtime', handle: (ctx) => { wsctx = ctx; } });
  const ws2 = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime?model=gpt-realtime`, [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
  const closed = new Promise((resolve) => ws2.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws2.once('open', resolve); ws2.once('error', reject); });
  await waitFor(() => mock.socketsSince(markS).length === 1, { what: 'upstream socket' });
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  await wsctx.close(4000, 'bye');
  assert.equal(await closed, 4000);
  await waitFor(async () => (await proxy.admin.usage({ tenant_id: t })).filter((r) => r.line === 'realtime').length === 2,
    { what: 'second session record' });
  await waitFor(() => fdCount(proxy.pid) <= before, { timeout: 5000, what: 'no fd left behind' });
});

test('a wrong proxy key is refused at the handshake (401), nothing reaches the upstream', async () => {
  const markS = mock.sockets.length;
  const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime?model=gpt-realtime`, [], { ca: certs.ca, headers: { authorization: 'Bearer bpk_wrong' } });
  const status = await new Promise((resolve) => {
    ws.on('unexpected-response', (req, res) => resolve(res.statusCode));
    ws.on('error', () => resolve(-1));
  });
  assert.equal(status, 401);
  assert.equal(mock.socketsSince(markS).length, 0);
  // A plain TCP probe to show the listener is still healthy.
  const s = net.connect(tlsPort, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.destroy();
});

test('minting a client secret goes through with the platform key and is recorded as a realtime line', async () => {
  const t = 'rt-mint';
  await proxy.admin.createTenant({ id: t, name: 'RT mint', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const markR = mock.requests.length;
  const client = new OpenAI({ apiKey: k, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  const cs = await client.realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' } });
  assert.match(cs.value, /^ek_/);
  const [mr] = mock.requests.slice(markR);
  assert.equal(mr.headers.authorization, `Bearer ${proxy.platformKey}`);
  const recs = await proxy.admin.waitRecords(t, 1);
  assert.equal(recs[0].line, 'realtime');
  assert.equal(recs[0].endpoint, '/v1/realtime/client_secrets');
  assert.equal(recs[0].billed_to, 'wallet');
});

test('the upstream dies mid-session (TCP cut, no close frame): the client gets 1011, record upstream_error, no fd left', async () => {
  const t = 'rt-dies';
  await proxy.admin.createTenant({ id: t, name: 'RT dies', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const before = fdCount(proxy.pid);
  let wsctx = null;
  mock.override({ ws: true, path: '/v1/realtime', handle: (ctx) => { wsctx = ctx; } });
  const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/v1/realtime?model=gpt-realtime`, [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  await wsctx.terminate();
  assert.equal(await closed, 1011);
  const recs = await proxy.admin.waitRecords(t, 2);
  assert.equal(recs.find((r) => r.line === 'realtime').outcome, 'upstream_error');
  await waitFor(() => fdCount(proxy.pid) <= before, { timeout: 5000, what: 'no fd left behind' });
});
