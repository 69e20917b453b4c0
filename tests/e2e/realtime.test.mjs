// realtime.test.mjs - OpenAI Realtime over WebSocket through the proxy: the
// official openai SDK (OpenAIRealtimeWS, which forces wss) against the
// proxy's TLS listener with a test CA, the browser-style subprotocol key,
// BYOK, proxy-issued ephemeral tokens (minted with the SDK, used as the SDK's
// apiKey and as a browser's subprotocol), the records a socket writes as it
// goes (one "realtime" record per response.done, a final one at the close,
// "platform" lines; seq/final; session ids), estimates for a response cut
// before its response.done, upstream close codes, a refused key, and no file
// descriptors left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import WebSocket from 'ws';
import { startMockRealtime, realtimeUsage, makeTestCerts } from './lib/mock_voice.mjs';
import { startProxy } from './lib/proxy.mjs';
import { checkRecord } from './lib/records.mjs';
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

// The proxy's open descriptors (from its /metrics: its /proc files are root's).
const fdCount = () => proxy.openFds();

function expectedCost(u) {
  const inText = u.input_text_tokens, inAudio = u.input_audio_tokens, cached = u.cached_tokens;
  const sum = (inText - cached) * PRICE.input_per_1m + cached * PRICE.cached_input_per_1m +
    inAudio * PRICE.audio_input_per_1m + u.output_text_tokens * PRICE.output_per_1m +
    u.output_audio_tokens * PRICE.audio_output_per_1m;
  return Math.floor((sum + 500000) / 1000000);
}

const sdkClient = (apiKey) => new OpenAI({ apiKey, baseURL: `https://127.0.0.1:${tlsPort}/v1`, maxRetries: 0 });

// An SDK session: one audio append and one response; resolves after
// response.done. responses: how many response.create to send.
async function sdkSession(apiKey, { responses = 1 } = {}) {
  const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: certs.ca } }, sdkClient(apiKey));
  const types = [];
  const dones = [];
  rt.on('event', (e) => types.push(e.type));
  rt.on('response.done', (d) => dones.push(d));
  const failed = new Promise((resolve, reject) => rt.on('error', reject));
  failed.catch(() => {});
  await Promise.race([new Promise((resolve, reject) => { rt.socket.once('open', resolve); rt.socket.once('error', reject); }), failed]);
  rt.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
  for (let i = 0; i < responses; i++) {
    rt.send({ type: 'response.create' });
    await Promise.race([waitFor(() => dones.length > i, { what: `response.done ${i + 1}` }), failed]);
  }
  return { rt, d: dones[0], dones, types };
}

// Records of a tenant's session, by line, ordered by seq.
async function sessionRecords(t, count) {
  const recs = await proxy.admin.waitRecords(t, count);
  assert.equal(recs.length, count, `exactly ${count} records: ${JSON.stringify(recs.map((r) => [r.line, r.seq, r.final]))}`);
  const by = (line) => recs.filter((r) => r.line === line).sort((a, b) => a.seq - b.seq);
  return { all: recs, line: by('realtime'), plat: by('platform') };
}

const wssUrl = (q = 'model=gpt-realtime') => `wss://127.0.0.1:${tlsPort}/v1/realtime?${q}`;

test('openai SDK over wss: platform key injected, frames intact; a record per response.done, a final one, platform lines', async () => {
  const markS = mock.sockets.length;
  const before = await fdCount();
  const { rt, d, types } = await sdkSession(key, { responses: 2 });
  rt.close();
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  assert.deepEqual(d.response.usage, realtimeUsage(mock.config.response.usage), 'usage reached the client intact');
  assert.equal(types[0], 'session.created');
  assert.equal(types.filter((t) => t === 'response.output_audio.delta').length, 6);
  assert.equal(rec.audioAppendedBytes, 4800, 'client frames reached the upstream intact');
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: proxy.platformKey }]);
  assert.ok(!JSON.stringify(rec.headers).includes(key), 'the proxy key never reaches the upstream');
  assert.equal(rec.query.model, 'gpt-realtime');

  // Two responses: two unit records as they happened, then the final one
  // (nothing left) and one platform line for the whole (short) session.
  const { all, line, plat } = await sessionRecords(tenant, 4);
  const u = mock.config.response.usage;
  const usage = {
    input_tokens: u.input_text_tokens + u.input_audio_tokens, cached_input_tokens: u.cached_tokens,
    audio_input_tokens: u.input_audio_tokens, output_tokens: u.output_text_tokens + u.output_audio_tokens,
    audio_output_tokens: u.output_audio_tokens,
  };
  const common = { tenantId: tenant, keyId: all[0].key_id, line: 'realtime', endpoint: '/v1/realtime', model: 'gpt-realtime', status: 101, prices: { 'gpt-realtime': PRICE } };
  checkRecord(line[0], { ...common, seq: 1, final: false, units: usage, cost: expectedCost(u) });
  // A socket record costs what the session's cost grew by (rounded once
  // over the session, so the records add up to the session's exact cost).
  const twice = Object.fromEntries(Object.entries(u).map(([k, v]) => [k, 2 * v]));
  checkRecord(line[1], { ...common, seq: 2, final: false, units: usage, cost: expectedCost(twice) - expectedCost(u) });
  checkRecord(line[2], { ...common, seq: 3, final: true, units: {}, cost: 0 });
  assert.equal(plat.length, 1);
  checkRecord(plat[0], { ...common, line: 'platform', seq: 1, final: true, units: null });
  assert.ok(plat[0].units.audio_seconds >= 0);
  const sessions = new Set(all.map((r) => r.session_id));
  assert.equal(sessions.size, 1, 'every record of the socket carries its session id');
  assert.match([...sessions][0], /^ws_[0-9A-Z]{26}$/);
  await waitFor(async () => (await fdCount()) <= before, { timeout: 5000, what: 'no fd left behind' });
});

test('browser subprotocol key (any case): removed upstream, the client gets "realtime"', async () => {
  for (const prefix of ['openai-insecure-api-key.', 'OpenAI-Insecure-Api-Key.']) {
    const markS = mock.sockets.length;
    const ws = new WebSocket(wssUrl(), ['realtime', `${prefix}${key}`, 'openai-beta.realtime-v1'], { ca: certs.ca });
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
    assert.ok(!JSON.stringify(rec.protocols || []).includes(key), 'no key in the upstream subprotocols');
    assert.ok(!JSON.stringify(rec.headers).includes(key), 'no key in the upstream headers');
    assert.equal(rec.closedBy, 'client');
  }
});

test('BYOK: the connection key goes upstream, the realtime lines are billed byok, the platform line wallet', async () => {
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
  const { line, plat } = await sessionRecords(t, 3);
  for (const r of line) {
    assert.equal(r.billed_to, 'byok');
    assert.equal(r.connection_id, c.id);
    assert.equal(r.charged.wallet_micros + r.charged.plan_credits_micros, 0);
  }
  assert.equal(plat[0].billed_to, 'wallet');
  assert.equal(plat[0].connection_id, null);
});

test('client vanishes mid-session: upstream closed, final record client_disconnect', async () => {
  const t = 'rt-cut';
  await proxy.admin.createTenant({ id: t, name: 'RT cut', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const before = await fdCount();
  const markS = mock.sockets.length;
  const ws = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${k}`, 'x-session-id': 'call-77' } });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await waitFor(() => mock.socketsSince(markS).length === 1, { what: 'upstream socket' });
  ws._socket.destroy(); // no close frame
  await mock.socketsSince(markS)[0].done;
  const { line, plat } = await sessionRecords(t, 2);
  assert.equal(line[0].outcome, 'client_disconnect');
  assert.equal(line[0].final, true);
  assert.equal(line[0].session_id, 'call-77', 'the X-Session-Id names the socket\'s records');
  assert.equal(plat[0].session_id, 'call-77');
  await waitFor(async () => (await fdCount()) <= before, { timeout: 5000, what: 'no fd left behind' });
});

for (const [code, outcome] of [[1000, 'ok'], [1011, 'upstream_error'], [4000, 'upstream_error']]) {
  test(`the upstream closes with ${code}: the client sees ${code}, the session ends ${outcome}`, async () => {
    const t = `rt-close-${code}`;
    await proxy.admin.createTenant({ id: t, name: t, wallet_micros: 5_000_000 });
    const k = (await proxy.admin.createKey(t)).key;
    let wsctx = null;
    mock.override({ ws: true, path: '/v1/realtime', handle: (ctx) => { wsctx = ctx; } });
    const ws = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
    const closed = new Promise((resolve) => ws.on('close', (c) => resolve(c)));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
    await wsctx.close(code, 'bye');
    assert.equal(await closed, code);
    const { line } = await sessionRecords(t, 2);
    assert.equal(line[0].outcome, outcome);
  });
}

test('a response cut before its response.done is estimated from what was relayed, never zero', async () => {
  const t = 'rt-est';
  await proxy.admin.createTenant({ id: t, name: 'RT est', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  let wsctx = null;
  mock.override({ ws: true, path: '/v1/realtime', handle: (ctx) => { wsctx = ctx; } });
  const ws = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  const closed = new Promise((resolve) => ws.on('close', (c) => resolve(c)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  // 1 s of user audio (24 kHz 16-bit), then a response that streams 0.5 s
  // of audio and 40 characters of transcript and dies.
  ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: Buffer.alloc(48000).toString('base64') }));
  await waitFor(() => wsctx.rec.messages.length >= 1, { what: 'append upstream' });
  await wsctx.sendJson({ type: 'response.created', response: { id: 'resp_x', status: 'in_progress' } });
  await wsctx.sendJson({ type: 'response.output_audio.delta', delta: Buffer.alloc(24000).toString('base64') });
  await wsctx.sendJson({ type: 'response.output_audio_transcript.delta', delta: 'x'.repeat(40) });
  await waitFor(() => got.length >= 3, { what: 'deltas relayed' });
  await wsctx.terminate();
  assert.equal(await closed, 1011);
  const { line } = await sessionRecords(t, 2);
  const r = line[0];
  assert.equal(r.outcome, 'upstream_error');
  assert.equal(r.estimated, true);
  // user audio 1000 ms / 100 ms = 10 tokens; assistant 500 ms / 50 ms = 10 audio + 10 text tokens.
  assert.equal(r.units.audio_input_tokens, 10);
  assert.equal(r.units.input_tokens, 10);
  assert.equal(r.units.audio_output_tokens, 10);
  assert.equal(r.units.output_tokens, 20);
  assert.ok(r.cost_micros > 0, 'an estimate is charged');
});

test('a wrong proxy key is refused at the handshake (401), nothing reaches the upstream', async () => {
  const markS = mock.sockets.length;
  const ws = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: 'Bearer bpk_wrong' } });
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

test('a sideband call_id is refused on a wallet line (403 endpoint_not_allowed), nothing upstream', async () => {
  const markS = mock.sockets.length;
  const ws = new WebSocket(wssUrl('call_id=rtc_other_tenant'), [], { ca: certs.ca, headers: { authorization: `Bearer ${key}` } });
  const res = await new Promise((resolve) => {
    ws.on('unexpected-response', (req, r) => {
      let b = '';
      r.on('data', (d) => { b += d; });
      r.on('end', () => resolve({ status: r.statusCode, body: JSON.parse(b) }));
    });
    ws.on('error', () => resolve({ status: -1 }));
  });
  assert.equal(res.status, 403);
  assert.equal(res.body.error.code, 'endpoint_not_allowed');
  assert.equal(mock.socketsSince(markS).length, 0);
});

// --- ephemeral tokens (DESIGN §4a) ----------------------------------------

test('ephemeral token via the SDK: minted by the proxy (nothing upstream, no record), used as the SDK apiKey, config applied', async () => {
  const t = 'rt-ek';
  await proxy.admin.createTenant({ id: t, name: 'RT ek', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const markR = mock.requests.length;
  const markS = mock.sockets.length;
  // Minted over the plain listener (the REST SDK takes no CA option).
  const rest = new OpenAI({ apiKey: k, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  const cs = await rest.realtime.clientSecrets.create({
    expires_after: { anchor: 'created_at', seconds: 120 },
    session: { type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' },
  });
  assert.match(cs.value, /^ek_[A-Za-z0-9_-]{43}$/);
  assert.ok(cs.expires_at > Date.now() / 1000 + 100 && cs.expires_at <= Date.now() / 1000 + 121, `expires_at ${cs.expires_at}`);
  assert.equal(cs.session.model, 'gpt-realtime');
  assert.equal(mock.requests.length, markR, 'minting sends nothing upstream');
  assert.ok(!JSON.stringify(cs).includes(proxy.platformKey), 'no provider key in the answer');

  // A widget: the token is its apiKey.
  const { rt, d } = await sdkSession(cs.value);
  rt.close();
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  assert.ok(d.response.usage);
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', value: proxy.platformKey }]);
  assert.ok(!JSON.stringify(rec.headers).includes(cs.value), 'the token never reaches the upstream');
  assert.equal(rec.query.model, 'gpt-realtime');
  // The posted session config is the session's first message upstream.
  assert.equal(rec.messages[0].json.type, 'session.update');
  assert.equal(rec.messages[0].json.session.instructions, 'Be brief.');
  assert.equal(rec.messages[0].json.session.type, 'realtime');
  const { line } = await sessionRecords(t, 3);
  assert.equal(line[0].tenant_id, t, 'billed to the tenant that minted');
  assert.ok(line[0].cost_micros > 0);

  // Single use.
  const again = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${cs.value}` } });
  const status = await new Promise((resolve) => {
    again.on('unexpected-response', (req, res) => resolve(res.statusCode));
    again.on('open', () => resolve(101));
    again.on('error', () => resolve(-1));
  });
  assert.equal(status, 401, 'a token opens one session');
});

test('ephemeral token in a browser subprotocol; beta /v1/realtime/sessions shape; a revoked key\'s token is refused', async () => {
  const t = 'rt-ek2';
  await proxy.admin.createTenant({ id: t, name: 'RT ek2', wallet_micros: 5_000_000 });
  const kk = await proxy.admin.createKey(t);
  const r = await fetch(`${proxy.url}/v1/realtime/sessions`, {
    method: 'POST', headers: { authorization: `Bearer ${kk.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-realtime', voice: 'alloy' }),
  });
  assert.equal(r.status, 200);
  const s = await r.json();
  assert.match(s.client_secret.value, /^ek_/);
  assert.equal(s.model, 'gpt-realtime');
  assert.equal(s.voice, 'alloy');
  const markS = mock.sockets.length;
  const ws = new WebSocket(wssUrl(), ['realtime', `openai-insecure-api-key.${s.client_secret.value}`], { ca: certs.ca });
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  assert.equal(ws.protocol, 'realtime');
  ws.send(JSON.stringify({ type: 'response.create' }));
  await waitFor(() => got.some((m) => m.type === 'response.done'), { what: 'response.done' });
  ws.close(1000);
  const rec = mock.socketsSince(markS)[0];
  await rec.done;
  assert.deepEqual(rec.messages[0].json, { type: 'session.update', session: { voice: 'alloy' } });
  assert.ok(!JSON.stringify(rec.protocols).includes('ek_'));

  // Minted, then the proxy key is revoked: the token dies with it.
  const r2 = await fetch(`${proxy.url}/v1/realtime/client_secrets`, {
    method: 'POST', headers: { authorization: `Bearer ${kk.key}`, 'content-type': 'application/json' }, body: '{}',
  });
  const tok = (await r2.json()).value;
  await proxy.admin.revokeKey(t, kk.id);
  const ws2 = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${tok}` } });
  const status = await new Promise((resolve) => {
    ws2.on('unexpected-response', (req, res) => resolve(res.statusCode));
    ws2.on('open', () => resolve(101));
    ws2.on('error', () => resolve(-1));
  });
  assert.equal(status, 401);
});

test('minting is refused for an unpriced model (403 model_not_priced) and for a bad body (400)', async () => {
  const bad = await fetch(`${proxy.url}/v1/realtime/client_secrets`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ session: { type: 'realtime', model: 'gpt-realtime-unpriced-2099' } }),
  });
  assert.equal(bad.status, 403);
  const j = await bad.json();
  assert.equal(j.error.code, 'model_not_priced');
  assert.match(j.error.message, /gpt-realtime-unpriced-2099/);
  const bad2 = await fetch(`${proxy.url}/v1/realtime/client_secrets`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ expires_after: { anchor: 'created_at', seconds: 99999 } }),
  });
  assert.equal(bad2.status, 400);
  assert.match((await bad2.json()).error.message, /expires_after/);
});

test('the upstream dies mid-session (TCP cut, no close frame): the client gets 1011, record upstream_error, no fd left', async () => {
  const t = 'rt-dies';
  await proxy.admin.createTenant({ id: t, name: 'RT dies', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(t)).key;
  const before = await fdCount();
  let wsctx = null;
  mock.override({ ws: true, path: '/v1/realtime', handle: (ctx) => { wsctx = ctx; } });
  const ws = new WebSocket(wssUrl(), [], { ca: certs.ca, headers: { authorization: `Bearer ${k}` } });
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await waitFor(() => wsctx !== null, { what: 'scripted upstream session' });
  await wsctx.terminate();
  assert.equal(await closed, 1011);
  const { line } = await sessionRecords(t, 2);
  assert.equal(line[0].outcome, 'upstream_error');
  await waitFor(async () => (await fdCount()) <= before, { timeout: 5000, what: 'no fd left behind' });
});
