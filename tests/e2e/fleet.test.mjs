// fleet.test.mjs - fleet mode (DESIGN §7b): one redis-server, two proxy
// instances A and B on it, all on 127.0.0.1. What is made through A works on
// B; a revocation on A is refused on B within 250 ms; holds are fleet-wide
// (50 concurrent new sessions split over A and B against 1 micro-USD admit
// exactly one); every record appears once in the stream byok:usage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startMockOpenAI, chatStreamEvents } from './lib/mock_openai.mjs';
import { startProxy, newSecrets } from './lib/proxy.mjs';
import { startRedis } from './lib/redis.mjs';
import { startMockElevenLabs } from './lib/mock_voice.mjs';
import WebSocket from 'ws';
import { httpRequest, waitFor, randomHex } from './lib/util.mjs';
import { rawExchange, parseResponses } from './lib/rawhttp.mjs';

let redis, mock, el, A, B;
const PLATFORM_EL = `xi-platform-${randomHex(8)}`;
const secrets = newSecrets();

before(async () => {
  redis = await startRedis({ appendonly: true, args: ['--appendfsync', 'always'] });
  mock = await startMockOpenAI();
  el = await startMockElevenLabs();
  el.acceptKeys = [PLATFORM_EL];
  const patch = (cfg) => {
    cfg.store = { backend: 'redis', url: redis.url(0) };
    cfg.upstreams.elevenlabs = el.url;
    cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
    cfg.pricing.elevenlabs = { eleven_turbo_v2_5: { characters_per_1m: 150000000 } };
  };
  const env = { ELEVENLABS_API_KEY: PLATFORM_EL };
  A = await startProxy({ mockUrl: mock.url, secrets, patch, env });
  B = await startProxy({ mockUrl: mock.url, secrets, patch, env });
});

after(async () => {
  for (const p of [A, B]) { await p?.stop(); p?.remove(); }
  await mock?.close();
  await el?.close();
  await redis?.stop();
  redis?.remove();
});

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
const chat = (p, key) => httpRequest(`${p.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: CHAT });

// Both instances know key (DESIGN §7b: within 250 ms of the admin reply):
// probed with an endpoint a wallet line is refused (403 after
// authentication, 401 before): no hold, no record.
async function known(key, timeout = 1000) {
  for (const p of [A, B]) {
    await waitFor(async () => (await httpRequest(`${p.url}/v1/files`, { headers: { authorization: `Bearer ${key}` } })).status !== 401,
      { timeout, interval: 5, what: 'the key known on every instance' });
  }
}

async function tenantOn(p, wallet = 10_000_000) {
  const id = `t_fleet_${randomHex(5)}`;
  await p.admin.createTenant({ id, name: id, features: { byok: false, agency: false }, wallet_micros: wallet });
  const k = await p.admin.createKey(id);
  await known(k.key);
  return { tenantId: id, key: k.key, keyId: k.id };
}

test('a tenant and key made through A work on B; a revocation on A is refused on B (target 250 ms)', async () => {
  const t = await tenantOn(A);
  const r = await chat(B, t.key);
  assert.equal(r.status, 200, String(r.body));
  const t0 = Date.now();
  await A.admin.revokeKey(t.tenantId, t.keyId);
  // DESIGN §7b: within 250 ms (measured and printed; the wait allows a
  // loaded CI machine a second).
  await waitFor(async () => (await chat(B, t.key)).status === 401, { timeout: 1000, interval: 5, what: 'B refuses the revoked key' });
  console.log(`# revocation on A refused on B after ${Date.now() - t0} ms`);
});

test('holds are fleet-wide: 50 concurrent new sessions over A and B against 1 micro-USD admit exactly one', async () => {
  const t = await tenantOn(A, 1);
  const res = await Promise.all(Array.from({ length: 50 }, (_, i) => chat(i % 2 ? A : B, t.key)));
  const ok = res.filter((r) => r.status === 200).length;
  const refused = res.filter((r) => r.status === 402).length;
  assert.equal(ok, 1, `admitted: ${ok}`);
  assert.equal(refused, 49);
  // Its record lands once in the stream, and the balance drop is its charge.
  const recs = await waitFor(async () => {
    const all = await A.admin.usage({ tenant_id: t.tenantId });
    return all.length === 1 ? all : null;
  }, { what: 'the one record' });
  const tn = await B.admin.getTenant(t.tenantId);
  assert.equal(tn.wallet_micros + tn.plan_credits_micros, 1 - recs[0].charged.wallet_micros - recs[0].charged.plan_credits_micros);
  const entries = await redis.command('XRANGE', 'byok:usage', '-', '+');
  const ids = entries.map((e) => String(e[1][1]));
  assert.equal(ids.filter((id) => id === recs[0].id).length, 1, 'once in byok:usage');
  console.log(`# 50 concurrent sessions over A and B at 1 micro-USD: admitted ${ok}, refused ${refused}`);
});

test('pins are fleet-wide: a session started on A keeps its BYOK key on B after the toggle; a new session on B sees the change', async () => {
  const id = `t_fleet_${randomHex(5)}`;
  await A.admin.createTenant({ id, name: id, features: { byok: true, agency: false }, wallet_micros: 10_000_000 });
  const k = await A.admin.createKey(id);
  await known(k.key);
  const own = `sk-own-${randomHex(8)}`;
  const c = await A.admin.createConnection(id, { provider: 'openai', name: 'own', api_key: own });
  await A.admin.putByok(id, { enabled: true, slots: { openai: c.id } });
  const call = (p, session) => httpRequest(`${p.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${k.key}`, 'x-session-id': session },
    body: CHAT });
  const s1 = `conv-${randomHex(4)}`;
  let mark = mock.requests.length;
  let r = await call(A, s1);
  assert.equal(r.headers['x-billed-to'], 'byok');
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${own}`);
  await B.admin.putByok(id, { enabled: false, slots: { openai: c.id } });
  // Within the invalidation window every instance sees the toggle.
  await waitFor(async () => (await B.admin.resolve(id, 'openai')).billed_to === 'wallet', { what: 'toggle seen' });
  mark = mock.requests.length;
  r = await call(B, s1);
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-billed-to'], 'byok', 'the pinned session keeps its keys on the other instance');
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${own}`);
  const s2 = `conv-${randomHex(4)}`;
  await waitFor(async () => (await call(B, `probe-${randomHex(3)}`)).headers['x-billed-to'] === 'wallet', { what: 'B decides new sessions on the new settings' });
  r = await call(B, s2);
  assert.equal(r.headers['x-billed-to'], 'wallet', 'a new session sees the change');
  r = await call(A, s2);
  assert.equal(r.headers['x-billed-to'], 'wallet', 'and keeps it on A');
});

// A small request is admitted with its body (README "Decisions"): one its
// body already refuses (an unpriced model) never asks Redis for a hold. An
// admission leaves the payer's hold total behind (byok:{t:P}:holdamt), so
// the key's absence shows none ran; the same request priced makes it.
test('a small request refused for its body (unpriced model) takes no hold in Redis', async () => {
  const t = await tenantOn(A);
  const holdamt = `byok:{t:${t.tenantId}}:holdamt`;
  const r = await httpRequest(`${A.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
    body: { ...CHAT, model: 'gpt-unpriced-x' } });
  assert.equal(r.status, 403, String(r.body));
  assert.equal(JSON.parse(r.body).error.code, 'model_not_priced');
  assert.equal(await redis.command('EXISTS', holdamt), 0, 'no admission for a request its body refuses');
  assert.equal((await chat(A, t.key)).status, 200);
  assert.equal(await redis.command('EXISTS', holdamt), 1, 'a priced one is admitted');
});

// A body that has not all arrived is not waited for: the admission is asked
// at the head, so a payer without funds is refused before the proxy reads
// an upload (here 1 MB announced, 100 bytes sent, the rest never).
test('a large body is admitted at its head: no funds answers 402 before the body is read', async () => {
  const t = await tenantOn(A, 0);
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${t.key}\r\n` +
    'Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n';
  const res = await rawExchange(A.port, [head, '{"model":"gpt-4o-mini","messages":[' + ' '.repeat(64)], { timeout: 4000 });
  const [resp] = parseResponses(res.buf, { eofSeen: res.closed }).responses;
  assert.ok(resp, `an answer before the body (got ${res.buf.length} bytes, closed: ${res.closed})`);
  assert.equal(resp.status, 402);
  assert.ok(res.closed, 'the connection closes: the announced body was not read');
});

test('live sessions are counted fleet-wide: limit 3, three streams open over A and B, the fourth (on either) gets 429', async () => {
  const id = `t_fleet_${randomHex(5)}`;
  await A.admin.createTenant({ id, name: id, features: { byok: false, agency: false }, wallet_micros: 10_000_000,
    limits: { live_sessions: 3 } });
  const k = await A.admin.createKey(id);
  await known(k.key);
  let release;
  const released = new Promise((r) => { release = r; });
  const open = [];
  mock.override({
    path: '/v1/chat/completions', times: Infinity,
    handle: async (ctx) => {
      const events = chatStreamEvents(ctx.rec, ctx.mock.config.chat);
      ctx.head(200, { 'content-type': 'text/event-stream' });
      await ctx.write(events[0].data);
      open.push(ctx.rec);
      await Promise.race([released, new Promise((r) => ctx.res.once('close', r))]);
      if (ctx.res.destroyed) return;
      for (const e of events.slice(1)) await ctx.write(e.data);
      await ctx.end();
    },
  });
  const stream = (p) => httpRequest(`${p.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${k.key}` },
    body: { ...CHAT, stream: true } });
  const running = [stream(A), stream(B), stream(A)];
  await waitFor(() => open.length === 3, { what: 'three streams upstream' });
  const held = (await A.admin.getTenant(id)).held_micros;
  assert.ok(held > 0, 'the three open streams hold funds');
  for (const p of [A, B]) {
    const r = await stream(p);
    assert.equal(r.status, 429, String(r.body));
    assert.equal(JSON.parse(r.body).error.code, 'tenant_limit');
    assert.equal(r.headers['x-should-retry'], 'true');
  }
  // The admission and the lease are one step: a stream refused at the
  // limit took no hold.
  assert.equal((await A.admin.getTenant(id)).held_micros, held);
  release();
  mock.clearOverrides();
  for (const r of await Promise.all(running)) assert.equal(r.status, 200);
  assert.equal((await stream(B)).status, 200, 'places freed fleet-wide');
});

test('an access change on A drops the session pins everywhere: a subaccount that left its agency gets no agency key on B', async () => {
  const a = `t_fleet_${randomHex(5)}`;
  await A.admin.createTenant({ id: a, name: a, features: { byok: true, agency: true }, wallet_micros: 10_000_000 });
  const own = `sk-agency-${randomHex(8)}`;
  const c = await A.admin.createConnection(a, { provider: 'openai', name: 'agency', api_key: own });
  await A.admin.putByok(a, { enabled: true, slots: { openai: c.id } });
  const s = `t_fleet_${randomHex(5)}`;
  await A.admin.createTenant({ id: s, name: s, features: { byok: false, agency: false }, parent_id: a, wallet_micros: 10_000_000 });
  const k = await A.admin.createKey(s);
  await known(k.key);
  const call = (p, session) => httpRequest(`${p.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${k.key}`, 'x-session-id': session },
    body: CHAT });
  const session = `conv-${randomHex(4)}`;
  let mark = mock.requests.length;
  assert.equal((await call(B, session)).headers['x-billed-to'], 'byok');
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${own}`);
  await A.admin.patchTenant(s, { parent_id: null });
  await A.admin.putByok(a, { enabled: false, slots: { openai: c.id } });
  await waitFor(async () => (await B.admin.resolve(s, 'openai')).payer_id === s, { what: 'B sees the move' });
  mark = mock.requests.length;
  const r = await call(B, session);
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-billed-to'], 'wallet', 'the pin went with the parent change, on every instance');
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${A.platformKey}`);
});

test('Redis down: /readyz 503 on every instance, wallet lines refused with 503 (retryable), then back', async () => {
  const t = await tenantOn(A);
  assert.equal((await chat(B, t.key)).status, 200);
  await redis.stop();
  try {
    for (const p of [A, B]) {
      await waitFor(async () => (await fetch(`${p.adminUrl}/readyz`)).status === 503, { what: 'readyz 503' });
    }
    const r = await chat(A, t.key);
    assert.equal(r.status, 503, String(r.body));
    assert.equal(r.headers['x-should-retry'], 'true');
  } finally {
    await redis.restart();
  }
  for (const p of [A, B]) {
    await waitFor(async () => (await fetch(`${p.adminUrl}/readyz`)).status === 200, { timeout: 15000, what: 'readyz 200 again' });
  }
  await waitFor(async () => (await chat(B, t.key)).status === 200, { timeout: 10000, what: 'served again' });
});

// A browser's ElevenLabs stream-input session: the proxy key in the first
// message; in fleet mode Redis admits it while the relay waits.
async function elFirstMessage(p, key) {
  const ws = new WebSocket(`ws://127.0.0.1:${p.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5`);
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ text: ' ', xi_api_key: key }));
  ws.send(JSON.stringify({ text: 'Hello there ' }));
  ws.send(JSON.stringify({ text: '' }));
  return { got, closed };
}

test('first-message sessions are admitted by Redis too: funded on B works; at zero funds refused (1008), nothing upstream', async () => {
  const t = await tenantOn(A);
  const ok = await elFirstMessage(B, t.key);
  const end = await ok.closed;
  assert.equal(end.code, 1000, JSON.stringify(end));
  assert.ok(ok.got.some((m) => typeof m.audio === 'string'), 'audio relayed');
  const recs = await waitFor(async () => {
    const r = await A.admin.usage({ tenant_id: t.tenantId });
    return r.some((x) => x.line === 'tts') ? r : null;
  }, { what: 'the tts record' });
  assert.ok(recs.find((x) => x.line === 'tts').cost_micros > 0);

  const poor = await tenantOn(A, 0);
  const mark = el.sockets.length;
  const no = await elFirstMessage(A, poor.key);
  const end2 = await no.closed;
  assert.equal(end2.code, 1008);
  assert.equal(end2.reason, 'insufficient_balance');
  assert.equal(el.sockets.length, mark, 'nothing upstream');
});
