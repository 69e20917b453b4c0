// byok_secrets.test.mjs - canary secrets: every platform key, BYOK api_key
// (created, rotated, deleted), proxy key, the master key and the admin token
// are random strings, the proxy runs at log level debug through the kinds of
// traffic of the other BYOK tests (connections, resolution, pinned sessions,
// BYOK and wallet lines, Check Status, provider and proxy errors), and then
// none of them may appear in the logs, in any admin answer, in any usage
// record (admin and JSONL), in any data-plane answer, or in the SQLite files
// (main file and WAL, read raw): connection keys are sealed, proxy keys
// hashed, the master key and the admin token never stored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { byokSetup, mkTenant, connect, canaryKey, setByok, call, sid } from './lib/byok.mjs';
import { readJsonl } from './lib/proxy.mjs';
import { errorReply } from './lib/mock_openai.mjs';
import { httpRequest, randomHex } from './lib/util.mjs';

const platform = {
  elevenlabs: `el-platform-canary-${randomHex(16)}`,
  azure: `az-platform-canary-${randomHex(16)}`,
};

let h;
before(async () => {
  h = await byokSetup({
    env: { ELEVENLABS_API_KEY: platform.elevenlabs, AZURE_SPEECH_KEY: platform.azure },
    patch: (cfg) => {
      const base = cfg.upstreams.openai;
      cfg.log_level = 'debug';
      cfg.upstreams.elevenlabs = `${base}/el`;
      cfg.upstreams.azure_speech_tts = `${base}/{region}/tts`;
      cfg.upstreams.azure_speech_stt = `${base}/{region}/stt`;
      cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
      cfg.platform_keys.azure_speech = { key_env: 'AZURE_SPEECH_KEY', region: 'eastus' };
    },
  });
  h.proxy.admin.collect = [];
});
after(async () => { await h?.teardown(); });

function dbFiles(dir) {
  return fs.readdirSync(dir).filter((f) => f.startsWith('byok.db')).map((f) => ({ f, buf: fs.readFileSync(path.join(dir, f)) }));
}

test('no canary secret in logs, admin answers, usage records, error bodies or the SQLite files', async () => {
  const admin = h.proxy.admin;
  const bodies = []; // data-plane answers
  const dp = async (tenant, opts) => {
    const c = await call(h, tenant, opts);
    bodies.push(c.res.body.toString('latin1'));
    return c;
  };
  const secrets = {
    'openai platform key': h.proxy.platformKey,
    'deepseek platform key': h.deepseekKey,
    'elevenlabs platform key': platform.elevenlabs,
    'azure platform key': platform.azure,
    'master key': h.proxy.masterKey,
    'admin token': h.proxy.adminToken,
  };

  // Tenants: an agency with a subaccount, a standalone BYOK tenant, a broke one.
  const a = await mkTenant(h, { byok: true, agency: true });
  const s = await mkTenant(h, { parent: a.tenantId });
  const t = await mkTenant(h, { byok: true });
  const broke = await mkTenant(h, { wallet: 0 });
  for (const [n, x] of Object.entries({ a, s, t, broke })) {
    secrets[`proxy key ${n}`] = x.key;
    secrets[`proxy key ${n} (secret part)`] = x.key.slice(-43);
  }

  // Connections of every provider; one rotated, one deleted.
  const ca = await connect(h, a.tenantId);
  const ct = await connect(h, t.tenantId);
  const el = await connect(h, t.tenantId, { provider: 'elevenlabs' });
  const az = await connect(h, t.tenantId, { provider: 'azure_speech', region: 'westeurope' });
  const gone = await connect(h, t.tenantId);
  Object.assign(secrets, { 'byok key of a': ca.apiKey, 'byok key of t': ct.apiKey, 'elevenlabs byok key': el.apiKey,
    'azure byok key': az.apiKey, 'deleted byok key': gone.apiKey });
  const rotated = canaryKey('rotated');
  secrets['rotated byok key'] = rotated;
  await setByok(h, a.tenantId, true, { openai: ca.id });
  await setByok(h, t.tenantId, true, { openai: ct.id, elevenlabs: el.id, azure_speech: az.id });

  // Refused admin writes that carry keys.
  const refusedKey = canaryKey('refused');
  secrets['key of a refused connection'] = refusedKey;
  assert.equal((await admin.req('POST', `/admin/tenants/${t.tenantId}/connections`,
    { provider: 'azure_speech', name: 'bad', api_key: refusedKey, region: 'East US' })).status, 400);
  assert.equal((await admin.req('POST', `/admin/tenants/${t.tenantId}/connections`,
    { provider: 'nope', name: 'bad', api_key: refusedKey })).status, 400);
  assert.equal((await admin.req('PUT', `/admin/tenants/${s.tenantId}/byok`, { enabled: true, slots: { openai: ca.id } })).status, 403);

  // Traffic: BYOK lines in a pinned session, a rotation and a deletion mid-session.
  const session = sid();
  assert.equal((await dp(t, { session })).res.status, 200);
  assert.equal((await dp(t, { session, stream: true })).res.status, 200);
  assert.equal((await dp(t, { provider: 'deepseek', session })).res.status, 200);
  await admin.patchConnection(t.tenantId, ct.id, { api_key: rotated });
  const r1 = await dp(t, { session });
  assert.equal(r1.up.headers.authorization, `Bearer ${rotated}`);
  await setByok(h, t.tenantId, true, { openai: gone.id });
  const s2 = sid();
  assert.equal((await dp(t, { session: s2 })).up.headers.authorization, `Bearer ${gone.apiKey}`);
  await admin.deleteConnection(t.tenantId, gone.id);
  assert.equal((await dp(t, { session: s2 })).res.headers['x-billed-to'], 'wallet');
  // The subaccount on the owner's key; wallet lines; the gate; wrong keys.
  assert.equal((await dp(s, {})).up.headers.authorization, `Bearer ${ca.apiKey}`);
  assert.equal((await dp(s, { provider: 'deepseek' })).res.status, 200);
  assert.equal((await dp(broke, {})).res.status, 402);
  const wrong = `bpk_${randomHex(8)}_${randomHex(20)}`;
  secrets['wrong proxy key'] = wrong;
  assert.equal((await dp(t, { key: wrong })).res.status, 401);
  // The provider refuses the BYOK key: its error passes through (masked key only).
  h.mock.acceptKeys = new Set([h.proxy.platformKey, h.deepseekKey]);
  try {
    const refused = await dp(a, {});
    assert.equal(refused.res.status, 401);
    assert.match(refused.res.body.toString(), /Incorrect API key provided/);
    h.mock.override({ path: '/v1/chat/completions', handle: errorReply(500, { type: 'server_error', message: 'upstream broke' }).handle });
    assert.equal((await dp(t, {})).res.status, 500);
    // Check Status with rejected keys (the mock knows none of them).
    await setByok(h, t.tenantId, true, { openai: ct.id });
    const chk = await admin.check(t.tenantId);
    for (const slot of ['openai', 'elevenlabs', 'azure_speech']) assert.equal(chk[slot].status, 'error', slot);
    const chkA = await admin.check(a.tenantId);
    assert.equal(chkA.openai.status, 'error');
  } finally {
    h.mock.acceptKeys = null;
    h.mock.clearOverrides();
  }

  // Read everything back through the admin API.
  for (const x of [a, s, t, broke]) {
    await admin.req('GET', `/admin/tenants/${x.tenantId}`);
    await admin.req('GET', `/admin/tenants/${x.tenantId}/keys`);
    await admin.req('GET', `/admin/tenants/${x.tenantId}/connections`);
    await admin.req('GET', `/admin/tenants/${x.tenantId}/byok`);
    for (const p of ['openai', 'elevenlabs', 'azure_speech', 'deepseek']) await admin.req('GET', `/admin/tenants/${x.tenantId}/resolve?provider=${p}`);
  }
  for (const c of [ct, el, az, gone]) await admin.req('GET', admin.connectionPath(t.tenantId, c.id));
  await admin.req('GET', '/metrics');
  const recs = [];
  for (const x of [a, s, t, broke]) recs.push(...await admin.waitRecords(x.tenantId, h.issued.get(x.tenantId).requests));
  assert.equal(recs.length, 10, 'one record per upstream request');
  assert.ok(recs.some((r) => r.billed_to === 'byok') && recs.some((r) => r.fallback_reason === 'connection_deleted'));

  // The store files while running (WAL included), then after a clean stop.
  const running = dbFiles(h.proxy.dir);
  // POST …/keys shows a new proxy key once, by contract: every other answer is scanned.
  const keyCreations = admin.collect.filter((x) => x.method === 'POST' && /\/keys$/.test(x.path));
  assert.equal(keyCreations.length, 4, 'the four proxy keys were created');
  const adminText = admin.collect.filter((x) => !keyCreations.includes(x))
    .map((x) => `${x.method} ${x.path} ${x.status}\n${x.text}`).join('\n');
  assert.ok(admin.collect.length > 40, 'admin answers collected');
  assert.equal(await h.proxy.stop(), 0);
  const stopped = dbFiles(h.proxy.dir);
  const logs = h.proxy.logs();
  assert.ok(logs.length > 0, 'the proxy logged something');
  const jsonl = fs.readFileSync(h.proxy.jsonlPath, 'latin1');
  assert.ok(readJsonl(h.proxy.jsonlPath).length >= recs.length);
  const store = Buffer.concat([...running, ...stopped].map((x) => x.buf));
  // The files hold the data (the connection ids are stored), so absence means something.
  assert.ok(store.includes(Buffer.from(ct.id)), 'the store files were read');
  assert.ok(store.includes(Buffer.from(t.tenantId)));

  const places = {
    logs,
    'admin answers': adminText,
    'usage records (admin)': JSON.stringify(recs),
    'usage records (JSONL)': jsonl,
    'data-plane answers': bodies.join('\n'),
  };
  for (const [what, secret] of Object.entries(secrets)) {
    assert.ok(typeof secret === 'string' && secret.length >= 16, `${what} is a canary`);
    for (const [where, text] of Object.entries(places)) assert.ok(!text.includes(secret), `${what} must not appear in ${where}`);
    for (const enc of ['utf8', 'utf16le']) assert.ok(!store.includes(Buffer.from(secret, enc)), `${what} must not be in the SQLite files (${enc})`);
  }
  const rawMaster = Buffer.from(h.proxy.masterKey, 'base64');
  assert.equal(rawMaster.length, 32);
  assert.ok(!store.includes(rawMaster), 'the raw master key is not stored');
  assert.ok(!store.includes(Buffer.from(h.proxy.masterKey.replace(/=+$/, ''))), 'nor its base64 without padding');
});
