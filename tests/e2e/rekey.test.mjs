// rekey.test.mjs - master-key rotation through the real binary: a proxy
// with BYOK connections and proxy keys is stopped, `--rotate-master-key`
// re-seals everything under a new key, and the proxy restarted with the new
// key serves the same BYOK key and accepts the same proxy keys; the old key
// no longer starts it; a wrong current key changes nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, proxyBin } from './lib/proxy.mjs';
import { httpRequest, randomHex } from './lib/util.mjs';

const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

// Runs the binary to completion with exactly the given BYOK_* variables.
function run(args, vars) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(BYOK_MASTER|BYOK_ADMIN|OPENAI_API_KEY)/.test(k)) delete env[k];
  Object.assign(env, vars);
  return new Promise((resolve) => {
    const child = spawn(proxyBin(), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('exit', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

async function chat(proxy, key) {
  return httpRequest(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'rekey' }] },
  });
}

test('rotation re-seals connections and keeps proxy keys working', { timeout: 90000 }, async () => {
  const mock = await startMockOpenAI();
  cleanup.push(() => mock.close());
  let proxy = await startProxy({ mockUrl: mock.url });
  const dir = proxy.dir;
  cleanup.push(async () => { await proxy.stop(); fs.rmSync(dir, { recursive: true, force: true }); });
  const secrets = proxy.secrets;
  const a = proxy.admin;

  await a.createTenant({ id: 'rk', name: 'Rekey', features: { byok: true }, wallet_micros: 1000000 });
  const k = await a.createKey('rk');
  const byokKey = `sk-byok-rekey-${randomHex(12)}`;
  const conn = await a.ok('POST', '/admin/tenants/rk/connections', { provider: 'openai', name: 'main', api_key: byokKey });
  await a.ok('PUT', '/admin/tenants/rk/byok', { enabled: true, slots: { openai: conn.id } });

  let mark = mock.requests.length;
  let r = await chat(proxy, k.key);
  assert.equal(r.status, 200);
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${byokKey}`);
  assert.equal(await proxy.stop(), 0);

  const newKey = crypto.randomBytes(32).toString('base64');
  const cfgFile = path.join(dir, 'config.json');

  // A wrong current key changes nothing.
  const wrong = await run(['--config', cfgFile, '--rotate-master-key'], {
    BYOK_MASTER_KEY: crypto.randomBytes(32).toString('base64'), BYOK_MASTER_KEY_NEW: newKey,
    OPENAI_API_KEY: secrets.platformKey,
  });
  assert.notEqual(wrong.code, 0, wrong.out);
  assert.ok(!wrong.out.includes(secrets.masterKey) && !wrong.out.includes(newKey), 'no key material printed');

  // The real rotation.
  const rot = await run(['--config', cfgFile, '--rotate-master-key'], {
    BYOK_MASTER_KEY: secrets.masterKey, BYOK_MASTER_KEY_NEW: newKey,
    OPENAI_API_KEY: secrets.platformKey, // the command reads the proxy's own config and environment
  });
  assert.equal(rot.code, 0, rot.out);
  assert.match(rot.out, /version 2/);
  assert.ok(!rot.out.includes(secrets.masterKey) && !rot.out.includes(newKey) && !rot.out.includes(byokKey));

  // The old key no longer starts the proxy: it cannot open the store's secrets.
  const old = await run(['--config', cfgFile], {
    BYOK_MASTER_KEY: secrets.masterKey, BYOK_ADMIN_TOKEN: secrets.adminToken, OPENAI_API_KEY: secrets.platformKey,
  });
  assert.notEqual(old.code, 0);
  assert.match(old.out, /master key/i);

  // The new key and version: same BYOK key upstream, same proxy key accepted.
  proxy = await startProxy({
    dir, secrets: { ...secrets, masterKey: newKey }, env: { BYOK_MASTER_KEY_VERSION: '2' },
  });
  mark = mock.requests.length;
  r = await chat(proxy, k.key);
  assert.equal(r.status, 200, String(r.body));
  assert.equal(r.headers['x-billed-to'], 'byok');
  assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${byokKey}`);
  const c2 = await proxy.admin.ok('GET', `/admin/tenants/rk/connections/${conn.id}`);
  assert.equal(c2.key_hint.slice(-4), byokKey.slice(-4));
});

// A connection sealed under another master key (a rotation that did not
// reach it): the seed's fallback to the platform key stands, but loudly.
test('an undecryptable connection: platform key with fallback_reason, one warning, a metric, /resolve says so', { timeout: 60000 }, async () => {
  const mock = await startMockOpenAI();
  cleanup.push(() => mock.close());
  let proxy = await startProxy({ mockUrl: mock.url });
  const dir = proxy.dir;
  cleanup.push(async () => { await proxy.stop(); fs.rmSync(dir, { recursive: true, force: true }); });
  const a = proxy.admin;
  await a.createTenant({ id: 'ur', name: 'Unreadable', features: { byok: true }, wallet_micros: 1000000 });
  const k = await a.createKey('ur');
  const conn = await a.ok('POST', '/admin/tenants/ur/connections', { provider: 'openai', name: 'main', api_key: `sk-ur-${randomHex(8)}` });
  await a.ok('PUT', '/admin/tenants/ur/byok', { enabled: true, slots: { openai: conn.id } });
  assert.equal(await proxy.stop(), 0);
  // What a half-finished rotation would leave: sealed under version 7.
  const db = path.join(dir, 'byok.db');
  const upd = spawnSync('sqlite3', [db, `UPDATE connections SET key_version = 7 WHERE id = '${conn.id}';`]);
  assert.equal(upd.status, 0, String(upd.stderr));
  proxy = await startProxy({ dir, secrets: proxy.secrets });
  const res = [];
  for (let i = 0; i < 3; i++) {
    const mark = mock.requests.length;
    const r = await chat(proxy, k.key);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-billed-to'], 'wallet');
    assert.equal(mock.since(mark)[0].headers.authorization, `Bearer ${proxy.platformKey}`);
    res.push(r.headers['x-proxy-request-id']);
  }
  const recs = await proxy.admin.waitRecords('ur', 3);
  for (const r of recs) assert.equal(r.fallback_reason, 'connection_unreadable');
  const warnings = proxy.logs().split('\n').filter((l) => l.includes(conn.id) && l.includes('cannot be decrypted'));
  assert.equal(warnings.length, 1, `one warning for the connection, not one per request:\n${warnings.join('\n')}`);
  const metrics = await fetch(`${proxy.adminUrl}/metrics`, { headers: { authorization: `Bearer ${proxy.secrets.adminToken}` } }).then((r) => r.text());
  assert.match(metrics, /^byok_connection_unreadable_total 3$/m);
  const why = await proxy.admin.resolve('ur', 'openai');
  assert.equal(why.billed_to, 'wallet');
  assert.equal(why.fallback_reason, 'connection_unreadable');
  assert.match(why.reason, /cannot be decrypted/);
  assert.match(why.reason, new RegExp(conn.id));
});
