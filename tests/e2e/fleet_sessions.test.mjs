// fleet_sessions.test.mjs - fleet mode (DESIGN §7b) for what a session
// carries from one instance to another: an ephemeral token minted on A opens
// its Realtime session on B, once, with the decision it was minted with; a
// browser's first-message socket on B continues a session pinned on A; a
// connection rotated through B is the key A injects. One redis-server, two
// proxy instances A and B on it, all on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startMockRealtime, startMockElevenLabs } from './lib/mock_voice.mjs';
import { startProxy, newSecrets } from './lib/proxy.mjs';
import { startRedis } from './lib/redis.mjs';
import { httpRequest, waitFor, randomHex } from './lib/util.mjs';

const RT_PRICE = { input_per_1m: 4000000, cached_input_per_1m: 400000, output_per_1m: 16000000,
  audio_input_per_1m: 32000000, audio_output_per_1m: 64000000 };
const PLATFORM_EL = `xi-platform-${randomHex(8)}`;
const secrets = newSecrets();
let redis, rt, el, A, B;

before(async () => {
  redis = await startRedis({ appendonly: true, args: ['--appendfsync', 'always'] });
  rt = await startMockRealtime();
  el = await startMockElevenLabs();
  const patch = (cfg) => {
    cfg.store = { backend: 'redis', url: redis.url(0) };
    cfg.upstreams.elevenlabs = el.url;
    cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
    cfg.pricing.openai['gpt-realtime'] = RT_PRICE;
    cfg.pricing.elevenlabs = { eleven_turbo_v2_5: { characters_per_1m: 150000000 } };
  };
  const env = { ELEVENLABS_API_KEY: PLATFORM_EL };
  A = await startProxy({ mockUrl: rt.url, secrets, patch, env });
  B = await startProxy({ mockUrl: rt.url, secrets, patch, env });
});

after(async () => {
  for (const p of [A, B]) { await p?.stop(); p?.remove(); }
  await rt?.close();
  await el?.close();
  await redis?.stop();
  redis?.remove();
});

// Both instances know the key (the admin write's invalidation reached B).
async function known(key) {
  for (const p of [A, B]) {
    await waitFor(async () => (await httpRequest(`${p.url}/v1/files`, { headers: { authorization: `Bearer ${key}` } })).status !== 401,
      { timeout: 1000, interval: 5, what: 'the key known on every instance' });
  }
}

// A BYOK tenant made through A: own connections for OpenAI and ElevenLabs,
// BYOK on for both slots.
async function byokTenant() {
  const id = `t_fs_${randomHex(5)}`;
  await A.admin.createTenant({ id, name: id, features: { byok: true, agency: false }, wallet_micros: 10_000_000 });
  const k = await A.admin.createKey(id);
  await known(k.key);
  const ownOpenai = `sk-own-${randomHex(8)}`;
  const ownEl = `xi-own-${randomHex(8)}`;
  const co = await A.admin.createConnection(id, { provider: 'openai', name: 'own', api_key: ownOpenai });
  const ce = await A.admin.createConnection(id, { provider: 'elevenlabs', name: 'own', api_key: ownEl });
  const slots = { openai: co.id, elevenlabs: ce.id };
  await A.admin.putByok(id, { enabled: true, slots });
  return { id, key: k.key, ownOpenai, ownEl, slots, co, ce };
}

// BYOK toggled off through p, and seen by both instances.
async function byokOff(p, t) {
  await p.admin.putByok(t.id, { enabled: false, slots: t.slots });
  for (const q of [A, B]) {
    await waitFor(async () => (await q.admin.resolve(t.id, 'openai')).billed_to === 'wallet', { what: 'the toggle seen everywhere' });
  }
}

const mint = (p, key, headers = {}) => httpRequest(`${p.url}/v1/realtime/client_secrets`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
  body: { session: { type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' } },
});

// Opens a Realtime socket with a token; resolves to the upgrade's status
// (101, or the refusal's) and, when open, runs one response to its end.
function realtime(p, token) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${p.port}/v1/realtime?model=gpt-realtime`, [], { headers: { authorization: `Bearer ${token}` } });
    const got = [];
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    ws.on('error', (e) => resolve({ status: -1, body: String(e) }));
    ws.on('message', (m) => {
      const e = JSON.parse(m.toString());
      got.push(e);
      if (e.type === 'response.done') ws.close(1000);
    });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'response.create' })));
    ws.on('close', () => resolve({ status: 101, got }));
  });
}

test('an ephemeral token minted on A opens its session on B once, with the decision it was minted with', async () => {
  const t = await byokTenant();
  rt.acceptKeys = [t.ownOpenai, secrets.platformKey];
  const r = await mint(A, t.key, { 'x-session-id': `conv-${randomHex(4)}` });
  assert.equal(r.status, 200, String(r.body));
  assert.equal(r.headers['x-billed-to'], 'byok');
  const token = JSON.parse(r.body).value;
  assert.match(token, /^ek_[A-Za-z0-9_-]{43}$/);
  // Only the token's hash is a key in Redis; the token is nowhere there.
  const keys = (await redis.command('KEYS', '*')).map(String);
  assert.ok(keys.some((k) => k.startsWith('byok:once:')), keys.join(' '));
  assert.ok(!keys.some((k) => k.includes(token) || k.includes(token.slice(3))), 'the token is not a key');
  for (const k of keys.filter((x) => x.startsWith('byok:once:'))) {
    assert.ok(!String(await redis.command('GET', k)).includes(token.slice(3)), 'nor a value');
  }
  // The tenant turns BYOK off after the mint: the session keeps its pin.
  await byokOff(B, t);
  const mark = rt.sockets.length;
  const s = await realtime(B, token);
  assert.equal(s.status, 101, s.body);
  assert.ok(s.got.some((e) => e.type === 'response.done'));
  const up = rt.socketsSince(mark);
  assert.equal(up.length, 1);
  assert.deepEqual(up[0].credentials, [{ in: 'header', name: 'authorization', value: t.ownOpenai }]);
  // The posted session config went upstream first.
  await up[0].done;
  assert.equal(up[0].messages[0].json.type, 'session.update');
  assert.equal(up[0].messages[0].json.session.instructions, 'Be brief.');
  // Single use, fleet-wide.
  for (const p of [A, B]) {
    const again = await realtime(p, token);
    assert.equal(again.status, 401, `a used token on ${p === A ? 'A' : 'B'}`);
    assert.match(again.body, /unknown, expired or already used/);
  }
  assert.equal(rt.sockets.length, mark + 1, 'nothing more upstream');
  // The session's records: its Realtime line on the pinned BYOK key (the
  // platform line of session time is the platform's, DESIGN §3).
  const recs = await B.admin.waitRecords(t.id, 3);
  const line = recs.filter((x) => x.line === 'realtime');
  assert.ok(line.length >= 1 && line.every((x) => x.billed_to === 'byok' && x.connection_id === t.co.id), JSON.stringify(recs));
  assert.ok(line.some((x) => x.units.output_tokens > 0), 'the response metered');
});

test('a token is taken once even when both instances race for it', async () => {
  const id = `t_fs_${randomHex(5)}`;
  await A.admin.createTenant({ id, name: id, features: { byok: false, agency: false }, wallet_micros: 10_000_000 });
  const k = await A.admin.createKey(id);
  await known(k.key);
  rt.acceptKeys = [secrets.platformKey];
  let opened = 0;
  let refused = 0;
  for (let round = 0; round < 5; round++) {
    const r = await mint(B, k.key);
    assert.equal(r.status, 200, String(r.body));
    const token = JSON.parse(r.body).value;
    const res = await Promise.all([A, B, A, B].map((p) => realtime(p, token)));
    opened += res.filter((x) => x.status === 101).length;
    refused += res.filter((x) => x.status === 401).length;
  }
  assert.equal(opened, 5, 'one session per token');
  assert.equal(refused, 15);
  console.log(`# 5 tokens, 4 concurrent opens each over A and B: ${opened} sessions, ${refused} refused`);
});

test('a first-message socket on B continues a session pinned on A (its X-Session-Id looked up in Redis)', async () => {
  const t = await byokTenant();
  el.acceptKeys = [t.ownEl, PLATFORM_EL];
  const session = `call-${randomHex(4)}`;
  let mark = el.requests.length;
  const r = await httpRequest(`${A.url}/elevenlabs/v1/text-to-speech/voice-1`, {
    method: 'POST',
    headers: { 'xi-api-key': t.key, 'content-type': 'application/json', 'x-session-id': session },
    body: { text: 'Hi.', model_id: 'eleven_turbo_v2_5' },
  });
  assert.equal(r.status, 200, String(r.body));
  assert.equal(r.headers['x-billed-to'], 'byok');
  assert.equal(el.since(mark)[0].credentials[0].value, t.ownEl);
  await byokOff(A, t);
  // A browser on B: the proxy key in the first message, the session's id on
  // the upgrade. B has never seen the session: its pin comes from Redis.
  mark = el.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${B.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5`,
    { headers: { 'x-session-id': session } });
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ text: ' ', xi_api_key: t.key }));
  ws.send(JSON.stringify({ text: 'Hello there ' }));
  ws.send(JSON.stringify({ text: '' }));
  assert.equal(await closed, 1000);
  const up = el.socketsSince(mark);
  assert.equal(up.length, 1);
  assert.deepEqual(up[0].credentials.map((c) => c.value), [t.ownEl], 'the pinned BYOK key, not the platform key');
  // A new session on B decides on the new settings.
  mark = el.sockets.length;
  const ws2 = new WebSocket(`ws://127.0.0.1:${B.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_turbo_v2_5`,
    { headers: { 'x-session-id': `call-${randomHex(4)}` } });
  const closed2 = new Promise((resolve) => ws2.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws2.once('open', resolve); ws2.once('error', reject); });
  ws2.send(JSON.stringify({ text: ' ', xi_api_key: t.key }));
  ws2.send(JSON.stringify({ text: '' }));
  assert.equal(await closed2, 1000);
  assert.deepEqual(el.socketsSince(mark)[0].credentials.map((c) => c.value), [PLATFORM_EL]);
});

test('a connection rotated through B is the key A injects next', async () => {
  const t = await byokTenant();
  const rotated = `xi-rot-${randomHex(8)}`;
  el.acceptKeys = [t.ownEl, rotated, PLATFORM_EL];
  const tts = () => httpRequest(`${A.url}/elevenlabs/v1/text-to-speech/voice-1`, {
    method: 'POST', headers: { 'xi-api-key': t.key, 'content-type': 'application/json' },
    body: { text: 'Hi.', model_id: 'eleven_turbo_v2_5' },
  });
  let mark = el.requests.length;
  assert.equal((await tts()).status, 200);
  assert.equal(el.since(mark)[0].credentials[0].value, t.ownEl);
  await B.admin.patchConnection(t.id, t.ce.id, { api_key: rotated });
  const t0 = Date.now();
  await waitFor(async () => {
    mark = el.requests.length;
    const r = await tts();
    return r.status === 200 && el.since(mark)[0].credentials[0].value === rotated;
  }, { timeout: 1000, interval: 5, what: 'A injects the rotated key' });
  console.log(`# rotation on B injected by A after ${Date.now() - t0} ms`);
});

test('Redis down: minting and taking tokens answer 503 (retryable), nothing upstream', async () => {
  const id = `t_fs_${randomHex(5)}`;
  await A.admin.createTenant({ id, name: id, features: { byok: false, agency: false }, wallet_micros: 10_000_000 });
  const k = await A.admin.createKey(id);
  await known(k.key);
  const r = await mint(A, k.key);
  assert.equal(r.status, 200);
  const token = JSON.parse(r.body).value;
  const mark = rt.sockets.length;
  await redis.stop();
  try {
    for (const p of [A, B]) {
      await waitFor(async () => (await fetch(`${p.adminUrl}/readyz`)).status === 503, { timeout: 5000, what: 'readyz 503' });
    }
    const m = await mint(B, k.key);
    assert.equal(m.status, 503, String(m.body));
    assert.equal(m.headers['x-should-retry'], 'true');
    const s = await realtime(B, token);
    assert.equal(s.status, 503, s.body);
    assert.equal(rt.sockets.length, mark, 'nothing upstream');
  } finally {
    await redis.restart();
  }
  for (const p of [A, B]) {
    await waitFor(async () => (await fetch(`${p.adminUrl}/readyz`)).status === 200, { timeout: 15000, what: 'readyz 200 again' });
  }
  // The token minted before is still there (AOF), and opens its session
  // (once this instance's workers are back on Redis: until then 503).
  let s;
  await waitFor(async () => (s = await realtime(A, token)).status !== 503, { timeout: 10000, what: 'the token taken' });
  assert.equal(s.status, 101, s.body);
});
