// ws_elevenlabs.test.mjs - ElevenLabs stream-input over WebSocket through
// the proxy (PROVIDERS.md §2.3): the proxy key in xi-api-key on the
// handshake; a key in the first message (xi_api_key / authorization) is
// removed before forwarding; the platform key or the tenant's BYOK
// connection is injected; audio frames come back intact; the record counts
// the characters sent at the model's credit rate. Browsers send no header:
// the proxy key in the first message (xi_api_key or authorization: Bearer)
// is authenticated there, and a wrong one is refused with close 1008.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startMockElevenLabs } from './lib/mock_voice.mjs';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy } from './lib/proxy.mjs';
import { waitFor, randomHex } from './lib/util.mjs';

let oa, el, proxy;
const PLATFORM_EL = `xi-platform-${randomHex(8)}`;

before(async () => {
  oa = await startMockOpenAI();
  el = await startMockElevenLabs();
  proxy = await startProxy({
    mockUrl: oa.url,
    env: { ELEVENLABS_API_KEY: PLATFORM_EL },
    patch: (cfg) => {
      cfg.upstreams.elevenlabs = el.url;
      cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
      cfg.pricing.elevenlabs = { eleven_turbo_v2_5: { characters_per_1m: 150000000 }, eleven_multilingual_v2: { characters_per_1m: 300000000 } };
    },
  });
});

after(async () => {
  await proxy?.stop();
  proxy?.remove();
  await el?.close();
  await oa?.close();
});

async function session(key, { model = 'eleven_turbo_v2_5', firstKey, firstAuth } = {}) {
  const q = model ? `?model_id=${model}` : '';
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input${q}`,
    key ? { headers: { 'xi-api-key': key } } : {});
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const first = { text: ' ', voice_settings: { stability: 0.5 } };
  if (firstKey) first.xi_api_key = firstKey;
  if (firstAuth) first.authorization = firstAuth;
  ws.send(JSON.stringify(first));
  ws.send(JSON.stringify({ text: 'Hello wörld ' }));
  ws.send(JSON.stringify({ text: '' }));
  await waitFor(() => got.some((m) => m.isFinal === true), { what: 'isFinal' });
  return { got, code: await closed };
}

test('platform key injected, first-message key removed, audio relayed, characters metered', async () => {
  await proxy.admin.createTenant({ id: 'el', name: 'EL', wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey('el')).key;
  const mark = el.sockets.length;
  const { got, code } = await session(k, { firstKey: k });
  assert.equal(code, 1000);
  const rec = el.socketsSince(mark)[0];
  await rec.done;
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'xi-api-key', value: PLATFORM_EL }],
    'only the injected key upstream: the proxy key left the handshake and the first message');
  assert.equal(rec.textReceived, ' Hello wörld ');
  const sent = rec.sent.map((x) => JSON.parse(x.data.toString()));
  assert.deepEqual(got, sent, 'the client got exactly the frames the upstream sent');
  assert.ok(got.some((m) => typeof m.audio === 'string'), 'audio relayed');
  const recs = await proxy.admin.waitRecords('el', 2);
  const line = recs.find((r) => r.line === 'tts');
  const plat = recs.find((r) => r.line === 'platform');
  // 13 code points sent (" " + "Hello wörld "), turbo bills half, rounded up.
  assert.equal(line.units.characters, 7);
  assert.equal(line.model, 'eleven_turbo_v2_5');
  assert.equal(line.cost_micros, Math.floor((7 * 150000000 + 500000) / 1000000));
  assert.equal(line.billed_to, 'wallet');
  assert.equal(line.provider, 'elevenlabs');
  assert.equal(line.slot, 'elevenlabs');
  assert.ok(plat);
});

test('BYOK: the tenant connection key goes upstream, billed byok; no model_id = multilingual v2', async () => {
  const byok = `xi-byok-${randomHex(8)}`;
  el.acceptKeys = [PLATFORM_EL, byok];
  await proxy.admin.createTenant({ id: 'elb', name: 'EL BYOK', features: { byok: true }, wallet_micros: 0 });
  const k = (await proxy.admin.createKey('elb')).key;
  const c = await proxy.admin.ok('POST', '/admin/tenants/elb/connections', { provider: 'elevenlabs', name: 'el', api_key: byok });
  await proxy.admin.ok('PUT', '/admin/tenants/elb/byok', { enabled: true, slots: { elevenlabs: c.id } });
  const mark = el.sockets.length;
  await session(k, { model: null });
  const rec = el.socketsSince(mark)[0];
  await rec.done;
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'xi-api-key', value: byok }]);
  const recs = await proxy.admin.waitRecords('elb', 2);
  const line = recs.find((r) => r.line === 'tts');
  assert.equal(line.billed_to, 'byok');
  assert.equal(line.connection_id, c.id);
  assert.equal(line.model, 'eleven_multilingual_v2');
  assert.equal(line.units.characters, 13);
});

test('a wrong proxy key is refused at the handshake in ElevenLabs shape; nothing upstream', async () => {
  const mark = el.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input`, { headers: { 'xi-api-key': 'bpk_nope' } });
  const res = await new Promise((resolve) => {
    ws.on('unexpected-response', (req, r) => {
      let body = '';
      r.on('data', (d) => { body += d; });
      r.on('end', () => { req.destroy(); resolve({ status: r.statusCode, body }); });
    });
    ws.on('error', () => resolve({ status: -1 }));
  });
  assert.equal(res.status, 401);
  assert.equal(typeof JSON.parse(res.body).detail.message, 'string');
  assert.equal(el.socketsSince(mark).length, 0);
});

// Browsers: no header, the proxy key only in the first message.
async function firstMessageSession(tenant, form) {
  await proxy.admin.createTenant({ id: tenant, name: tenant, wallet_micros: 5_000_000 });
  const k = (await proxy.admin.createKey(tenant)).key;
  el.acceptKeys = [PLATFORM_EL];
  const mark = el.sockets.length;
  const { got, code } = await session(null, form === 'bearer' ? { firstAuth: `Bearer ${k}` } : { firstKey: k });
  assert.equal(code, 1000);
  const socks = el.socketsSince(mark);
  assert.equal(socks.length, 1);
  const rec = socks[0];
  await rec.done;
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'xi-api-key', value: PLATFORM_EL }],
    'only the injected key upstream: the proxy key left the first message');
  assert.equal(rec.textReceived, ' Hello wörld ');
  const sent = rec.sent.map((x) => JSON.parse(x.data.toString()));
  assert.deepEqual(got, sent, 'the client got exactly the frames the upstream sent');
  assert.ok(got.some((m) => typeof m.audio === 'string'), 'audio relayed');
  const recs = await proxy.admin.waitRecords(tenant, 2);
  const line = recs.find((r) => r.line === 'tts');
  // 13 code points, the first message's " " counted once; turbo bills half, rounded up.
  assert.equal(line.units.characters, 7);
  assert.equal(line.model, 'eleven_turbo_v2_5');
  assert.equal(line.billed_to, 'wallet');
  assert.equal(line.status, 101);
  assert.ok(recs.find((r) => r.line === 'platform'));
}

test('no header, proxy key as xi_api_key in the first message: authenticated there, removed, metered', async () => {
  await firstMessageSession('elfirst', 'xi');
});

test('no header, proxy key as authorization: Bearer in the first message', async () => {
  await firstMessageSession('elbearer', 'bearer');
});

test('a wrong key in the first message: close 1008, nothing upstream', async () => {
  const mark = el.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5`);
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ text: ' ', xi_api_key: 'bpk_nope' }));
  const { code, reason } = await closed;
  assert.equal(code, 1008);
  assert.equal(reason, 'invalid or missing key');
  assert.equal(el.socketsSince(mark).length, 0);
});

test('no key anywhere: the first message without one is refused with 1008', async () => {
  const mark = el.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input`);
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ text: ' ' }));
  assert.equal(await closed, 1008);
  assert.equal(el.socketsSince(mark).length, 0);
});
