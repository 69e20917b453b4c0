// process.test.mjs - the binary as a process (DESIGN §4b): --check-config,
// refusing to start without a valid master key, graceful SIGTERM that lets an
// in-flight stream finish and persists its record, no secret in any log
// line, usage record or the store file, and secrets out of reach (DESIGN §7):
// wiped from /proc/PID/environ, no core file, not dumpable.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { startMockOpenAI, slowChatStream, errorReply } from './lib/mock_openai.mjs';
import { startProxy, runBinary, makeConfig, newSecrets, newTenant, readJsonl, proxyBin } from './lib/proxy.mjs';
import { checkRecord } from './lib/records.mjs';
import { httpRequest, sseEvents, randomHex, waitFor } from './lib/util.mjs';

const mockP = startMockOpenAI();
const tempDirs = [];
after(async () => {
  await (await mockP).close();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

async function configFile(patch) {
  const mock = await mockP;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-e2e-cfg-'));
  tempDirs.push(dir);
  const { cfg } = await makeConfig(dir, { mockUrl: mock.url, patch });
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

function envOf(s) {
  return { BYOK_MASTER_KEY: s.masterKey, BYOK_ADMIN_TOKEN: s.adminToken, OPENAI_API_KEY: s.platformKey };
}

test('--check-config: a good config exits 0', async () => {
  const r = await runBinary(['--config', await configFile(), '--check-config'], { env: envOf(newSecrets()) });
  assert.equal(r.code, 0, `exit 0; stderr: ${r.stderr}`);
});

test('--check-config: an unknown key exits 1 naming the key', async () => {
  let r = await runBinary(['--config', await configFile((c) => { c.bogus_top_key = 1; }), '--check-config'], { env: envOf(newSecrets()) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bogus_top_key/);
  r = await runBinary(['--config', await configFile((c) => { c.limits = { bogus_limit_ms: 5 }; }), '--check-config'], { env: envOf(newSecrets()) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bogus_limit_ms/);
  r = await runBinary(['--config', await configFile((c) => { c.upstreams.opnai = 'http://127.0.0.1:1'; }), '--check-config'], { env: envOf(newSecrets()) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /opnai/);
});

test('--check-config: a platform key variable missing from the environment is named', async () => {
  const v = `BYOK_E2E_MISSING_${randomHex(4).toUpperCase()}`;
  const r = await runBinary(['--config', await configFile((c) => { c.platform_keys.openai.key_env = v; }), '--check-config'], { env: envOf(newSecrets()) });
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(v), `stderr names ${v}: ${r.stderr}`);
});

test('refuses to start without a valid BYOK_MASTER_KEY', async () => {
  const mock = await mockP;
  const cases = [
    ['missing', undefined],
    ['16 bytes', crypto.randomBytes(16).toString('base64')],
    ['not base64', 'this is not base64 at all!!'],
  ];
  for (const [what, value] of cases) {
    const p = await startProxy({ mockUrl: mock.url, env: { BYOK_MASTER_KEY: value }, waitHealthy: false });
    tempDirs.push(p.dir);
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 5000);
    const exit = await p.exited;
    clearTimeout(timer);
    assert.notEqual(exit.signal, 'SIGKILL', `${what}: exited on its own`);
    assert.notEqual(exit.code, 0, `${what}: non-zero exit`);
    assert.match(p.stderr(), /BYOK_MASTER_KEY/, `${what}: the message names the variable`);
    if (value) assert.ok(!p.logs().includes(value), 'the bad key itself is not printed');
  }
});

test('SIGTERM during an in-flight stream: the stream completes, the record is persisted, exit 0', async () => {
  const mock = await mockP;
  const secrets = newSecrets();
  const p = await startProxy({ mockUrl: mock.url, secrets });
  tempDirs.push(p.dir);
  let restarted = null;
  try {
    const t = await newTenant(p);
    const slow = slowChatStream({ chunksBefore: 3 });
    mock.override({ path: '/v1/chat/completions', handle: slow.handle });
    const mark = mock.requests.length;
    const r = await fetch(`${p.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long answer' }], stream: true }),
    });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-proxy-request-id');
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let got = '';
    while (sseEvents(got).events.length < 3) {
      const { value, done } = await reader.read();
      assert.ok(!done);
      got += dec.decode(value, { stream: true });
    }
    p.child.kill('SIGTERM');
    // The upstream finishes 300 ms after the signal: the proxy must keep the
    // stream alive meanwhile (this delay is the scenario, not a wait).
    const releaser = setTimeout(() => slow.release(), 300);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += dec.decode(value, { stream: true });
      }
    } catch (e) {
      await p.exited;
      assert.fail(`the stream was cut during the drain (${e.message}; ${got.length} bytes arrived)\n--- proxy logs ---\n${p.logs()}`);
    } finally {
      clearTimeout(releaser);
    }
    const [mr] = mock.since(mark);
    const expected = mr.sent.filter((s) => !(typeof s === 'string' && s.includes('"choices":[]'))).join('');
    assert.equal(got, expected, 'the whole stream arrived');
    assert.ok(got.endsWith('data: [DONE]\n\n'));
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 20000);
    const exit = await p.exited;
    clearTimeout(timer);
    assert.equal(exit.code, 0, `exit code 0 (got ${JSON.stringify(exit)})\n${p.logs()}`);
    const lines = readJsonl(p.jsonlPath).filter((x) => x.id === id);
    assert.equal(lines.length, 1, 'record in the JSONL file after exit');
    checkRecord(lines[0], { tenantId: t.tenantId, keyId: t.keyId, line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini',
      units: { input_tokens: 17, cached_input_tokens: 4, output_tokens: 9 }, upstreamRequestId: mr.requestId });
    // And in the store: start again on the same files and read it back.
    restarted = await startProxy({ dir: p.dir, secrets });
    const recs = await restarted.admin.usage({ tenant_id: t.tenantId });
    assert.equal(recs.length, 1);
    assert.deepEqual(recs[0], lines[0], 'the store has the same record');
  } finally {
    mock.clearOverrides();
    if (!p.exit) await p.stop();
    if (restarted) assert.equal(await restarted.stop(), 0);
  }
});

test('no secret in logs, usage records or the store file (canary keys)', async () => {
  const mock = await mockP;
  const p = await startProxy({ mockUrl: mock.url, patch: (c) => { c.log_level = 'debug'; } });
  tempDirs.push(p.dir);
  const wrongKey = `sk-wrong-canary-${randomHex(12)}`;
  const wrongAdmin = `adm-wrong-canary-${randomHex(12)}`;
  let t;
  try {
    t = await newTenant(p);
    const post = (key, body, headers = {}) => httpRequest(`${p.url}/v1/chat/completions`, { method: 'POST',
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json', ...headers }, body });
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'canary' }] };
    assert.equal((await post(t.key, chat)).status, 200);
    assert.equal((await post(t.key, { ...chat, stream: true })).status, 200);
    assert.equal((await post(t.key, chat, { 'x-session-id': 'canary-session' })).status, 200);
    assert.equal((await post(wrongKey, chat)).status, 401);
    mock.override({ path: '/v1/chat/completions', handle: errorReply(401, { code: 'invalid_api_key', message: 'Incorrect API key provided' }).handle });
    assert.equal((await post(t.key, chat)).status, 401);
    assert.equal((await httpRequest(`${p.url}/nope?key=${t.key}`, { headers: { authorization: `Bearer ${t.key}` } })).status, 404);
    const bad = await fetch(`${p.adminUrl}/admin/tenants/${t.tenantId}`, { headers: { authorization: `Bearer ${wrongAdmin}` } });
    assert.equal(bad.status, 401);
    const okAdmin = await fetch(`${p.adminUrl}/admin/tenants/${t.tenantId}/keys`, { headers: { authorization: `Bearer ${p.adminToken}` } });
    assert.equal(okAdmin.status, 200);
    assert.ok(!(await okAdmin.text()).includes(t.key), 'key list carries no secret');
    await p.admin.waitRecords(t.tenantId, 4);
  } finally {
    mock.clearOverrides();
    assert.equal(await p.stop(), 0);
  }
  const secrets = { 'platform key': p.platformKey, 'proxy key': t.key, 'admin token': p.adminToken, 'master key': p.masterKey,
    'wrong proxy key': wrongKey, 'wrong admin token': wrongAdmin };
  const logs = p.logs();
  assert.ok(logs.length > 0, 'the proxy logged something');
  const jsonl = fs.existsSync(p.jsonlPath) ? fs.readFileSync(p.jsonlPath, 'utf8') : '';
  assert.ok(jsonl.length > 0);
  const store = fs.readdirSync(p.dir).filter((f) => f.startsWith('byok.db'))
    .map((f) => fs.readFileSync(path.join(p.dir, f)).toString('latin1')).join('');
  assert.ok(store.length > 0);
  for (const [what, s] of Object.entries(secrets)) {
    assert.ok(!logs.includes(s), `${what} must not appear in the logs`);
    assert.ok(!jsonl.includes(s), `${what} must not appear in usage records`);
    assert.ok(!store.includes(s), `${what} must not be stored in clear`);
  }
});

// The environment block /proc/PID/environ shows (the one the process was
// started with: unsetenv() alone leaves it there), as NAME -> value; null
// when it cannot be read (a non-dumpable process of another user).
function procEnviron(pid) {
  let raw;
  try {
    raw = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch (e) {
    if (e.code === 'EACCES' || e.code === 'EPERM') return null;
    throw e;
  }
  const env = new Map();
  for (const entry of raw.split('\0')) {
    const i = entry.indexOf('=');
    if (i > 0 && !env.has(entry.slice(0, i))) env.set(entry.slice(0, i), entry.slice(i + 1));
  }
  return Object.assign(env, { raw });
}

function assertEnvironClean(pid, secrets) {
  const env = procEnviron(pid);
  if (env === null) return; // unreadable: nothing to leak
  for (const [name, value] of Object.entries(secrets)) {
    assert.ok(!env.raw.includes(value), `${name}'s value is not in /proc/${pid}/environ`);
    if (env.has(name)) assert.equal(env.get(name), '', `${name} is wiped in place in /proc/${pid}/environ`);
  }
}

function procUid(pid) {
  return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

test('secrets leave /proc/PID/environ (wiped in place), core files are off', async () => {
  const mock = await mockP;
  const p = await startProxy({ mockUrl: mock.url });
  tempDirs.push(p.dir);
  try {
    assertEnvironClean(p.pid, { BYOK_MASTER_KEY: p.masterKey, BYOK_ADMIN_TOKEN: p.adminToken, OPENAI_API_KEY: p.platformKey });
    const limits = fs.readFileSync(`/proc/${p.pid}/limits`, 'utf8');
    assert.match(limits, /^Max core file size\s+0\s+0\s+bytes/m, 'RLIMIT_CORE is 0 (soft and hard)');
    if (procUid(p.pid) !== 0) {
      // Not dumpable: the kernel hands its /proc files to root.
      assert.equal(fs.statSync(`/proc/${p.pid}/environ`).uid, 0, '/proc/PID/environ belongs to root: not dumpable');
    }
    // Still serving with what it took out of the environment.
    const t = await newTenant(p);
    const r = await httpRequest(`${p.url}/v1/chat/completions`, { method: 'POST',
      headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'env' }] } });
    assert.equal(r.status, 200);
    assert.equal(mock.requests.at(-1).headers.authorization, `Bearer ${p.platformKey}`, 'the platform key still reaches upstream');
  } finally {
    assert.equal(await p.stop(), 0);
  }
});

function hasSetpriv() {
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Run as root, every /proc file is root's anyway: the proxy is started as
// another user (nobody) to see the kernel hand its files to root.
test('the process is not dumpable: its /proc files belong to root, not to the user it runs as',
  { skip: (process.getuid() !== 0 && 'covered by the test above when not run as root') ||
    (!hasSetpriv() && 'setpriv (util-linux) is not installed') }, async () => {
    const mock = await mockP;
    const secrets = newSecrets();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-e2e-nobody-'));
    tempDirs.push(dir);
    const { cfg, adminPort } = await makeConfig(dir, { mockUrl: mock.url });
    const cfgFile = path.join(dir, 'config.json');
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const NOBODY = 65534;
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(cfgFile, NOBODY, NOBODY);
    // A copy of the binary in nobody's directory: the checkout may sit under
    // a home directory nobody cannot enter.
    const bin = path.join(dir, 'byok-proxy');
    fs.copyFileSync(proxyBin(), bin);
    fs.chmodSync(bin, 0o755);
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/^(BYOK_|OPENAI_API_KEY)/.test(k)) delete env[k];
    Object.assign(env, { BYOK_MASTER_KEY: secrets.masterKey, BYOK_ADMIN_TOKEN: secrets.adminToken, OPENAI_API_KEY: secrets.platformKey });
    const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', bin, '--config', cfgFile],
      { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let logs = '';
    child.stdout.on('data', (d) => { logs += d; });
    child.stderr.on('data', (d) => { logs += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`).catch(() => null))?.status === 200,
        { timeout: 10000, what: `the proxy running as uid ${NOBODY} (logs: ${logs})` });
      assert.equal(procUid(child.pid), NOBODY, `the proxy runs as uid ${NOBODY}`);
      for (const f of ['environ', 'mem', 'fd']) {
        assert.equal(fs.statSync(`/proc/${child.pid}/${f}`).uid, 0, `/proc/PID/${f} belongs to root: the process is not dumpable`);
      }
      assertEnvironClean(child.pid, { BYOK_MASTER_KEY: secrets.masterKey, BYOK_ADMIN_TOKEN: secrets.adminToken, OPENAI_API_KEY: secrets.platformKey });
    } finally {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20000);
      const exit = await exited;
      clearTimeout(t);
      assert.equal(exit.code, 0, `clean exit; logs:\n${logs}`);
    }
  });
