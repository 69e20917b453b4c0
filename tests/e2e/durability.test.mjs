// durability.test.mjs - the SQLite store under a running proxy (DESIGN §7
// "Durability"): an outside sqlite3 read does not take the WAL away from the
// proxy (the proxy keeps its POSIX locks on the database: nothing but SQLite
// opens or closes the file), every acknowledged admin write survives kill -9,
// one proxy per store (a second one and --rotate-master-key refuse while it
// runs), a JSONL file cut by a crash restored from the store at start, and
// spooled records with impossible amounts are refused, logged and
// set aside instead of charged, and records still queued at a kill -9 come
// back from the queue journal, each recorded and charged once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, runBinary, balances, journalPath } from './lib/proxy.mjs';
import { freePort, httpRequest, randomHex, waitFor } from './lib/util.mjs';

const mockP = startMockOpenAI();
const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
  await (await mockP).close();
});

// Starts a proxy that the file's cleanup stops and removes.
async function proxy(opts = {}) {
  const p = await startProxy({ mockUrl: (await mockP).url, ...opts });
  cleanup.push(async () => { if (!p.exit) await p.stop(); });
  if (!opts.dir) cleanup.push(() => p.remove());
  return p;
}

function hasSqlite3() {
  try {
    execFileSync('sqlite3', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const NO_SQLITE3 = !hasSqlite3() && 'the sqlite3 CLI is not installed (scripts/setup.sh installs it)';

function chat(p, key) {
  return httpRequest(`${p.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'durable?' }] },
  });
}

const dbPath = (p) => p.config.store.path;
const inode = (f) => (fs.existsSync(f) ? fs.statSync(f).ino : null);

// The locks /proc/locks lists for a process: [{ kind: 'POSIX'|'FLOCK'|…, ino }].
function locksOf(pid) {
  return fs.readFileSync('/proc/locks', 'utf8').split('\n').map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 6 && f[4] === String(pid))
    .map((f) => ({ kind: f[1], mode: f[3], ino: Number(f[5].split(':')[2]) }));
}

function assertHoldsStore(p, what) {
  const locks = locksOf(p.pid);
  const db = inode(dbPath(p));
  assert.ok(locks.some((l) => l.kind === 'POSIX' && l.ino === db),
    `${what}: the proxy holds SQLite's POSIX lock on the database (inode ${db}); /proc/locks has ${JSON.stringify(locks)}`);
  const lockFile = inode(`${dbPath(p)}.lock`);
  assert.ok(locks.some((l) => l.kind === 'FLOCK' && l.mode === 'WRITE' && l.ino === lockFile),
    `${what}: the proxy holds the exclusive flock on ${dbPath(p)}.lock; /proc/locks has ${JSON.stringify(locks)}`);
}

function sqlite3(db, sql) {
  return execFileSync('sqlite3', [db, sql], { encoding: 'utf8' }).trim();
}

test('an outside sqlite3 read leaves the WAL to the proxy; acknowledged admin writes survive kill -9',
  { skip: NO_SQLITE3, timeout: 60000 }, async () => {
    const p = await proxy();
    const a = p.admin;
    const tenant = `dur_${randomHex(4)}`;
    await a.createTenant({ id: tenant, name: 'Durable', features: { byok: true }, wallet_micros: 1_000_000 });
    const doomed = await a.createKey(tenant, 'to revoke');
    assert.equal((await chat(p, doomed.key)).status, 200, 'the key works before it is revoked');
    await a.waitRecords(tenant, 1); // charged: the balances below are final
    const before = balances(await a.getTenant(tenant));

    const db = dbPath(p);
    const wal = { ino: inode(`${db}-wal`), shm: inode(`${db}-shm`) };
    assert.ok(wal.ino && wal.shm, 'the running proxy has its -wal and -shm files');
    assertHoldsStore(p, 'before the outside read');

    // What an operator does to look at the store. Closing the last
    // connection it knows of, sqlite3 checkpoints and deletes the WAL unless
    // it sees another process's lock on the database.
    assert.equal(sqlite3(db, `SELECT count(*) FROM tenants WHERE id = '${tenant}'`), '1');
    assert.equal(inode(`${db}-wal`), wal.ino, 'the -wal file is the same file after the outside read (not unlinked)');
    assert.equal(inode(`${db}-shm`), wal.shm, 'the -shm file is the same file after the outside read');
    assertHoldsStore(p, 'after the outside read');

    // Admin writes, each acknowledged (2xx) by the proxy.
    const fresh = await a.createKey(tenant, 'created after the read');
    await a.revokeKey(tenant, doomed.id);
    await a.topup(tenant, { wallet_micros: 2_000_000, plan_credits_micros: 300 });
    const conn = await a.createConnection(tenant, { provider: 'openai', name: 'durable', api_key: `sk-durable-${randomHex(12)}` });
    assert.equal(inode(`${db}-wal`), wal.ino, 'the writes went into the same -wal file');
    // An outsider sees them too: they are in the live WAL, not in a
    // deleted one only the proxy still holds.
    assert.equal(sqlite3(db, `SELECT revoked_at_ms > 0 FROM proxy_keys WHERE id = '${doomed.id}'`), '1');
    assert.equal(sqlite3(db, `SELECT count(*) FROM connections WHERE id = '${conn.id}'`), '1');
    assertHoldsStore(p, 'after the second outside read');

    p.child.kill('SIGKILL');
    assert.equal((await p.exited).signal, 'SIGKILL');

    const q = await proxy({ dir: p.dir, secrets: p.secrets });
    assert.equal((await chat(q, doomed.key)).status, 401, 'the revoked key stays revoked');
    const t = await q.admin.getTenant(tenant);
    assert.deepEqual(balances(t), { plan: before.plan + 300, wallet: before.wallet + 2_000_000 }, 'the topup is there');
    const c = await q.admin.getConnection(tenant, conn.id);
    assert.equal(c.id, conn.id, 'the connection is there');
    assert.equal((await chat(q, fresh.key)).status, 200, 'the key created after the read works');
    assert.equal(await q.stop(), 0);
  });

test('one proxy per store: a second proxy on the same store refuses to start, naming the first',
  { timeout: 60000 }, async () => {
    const p = await proxy();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-e2e-second-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    // Other ports, JSONL and spool: only the store is shared, so the lock is
    // what refuses.
    const cfg = { ...p.config, listen: `127.0.0.1:${await freePort()}`, admin_listen: `127.0.0.1:${await freePort()}`,
      usage: { jsonl_path: path.join(dir, 'usage.jsonl'), spool_dir: path.join(dir, 'spool') } };
    const cfgFile = path.join(dir, 'config.json');
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const r = await runBinary(['--config', cfgFile], {
      env: { BYOK_MASTER_KEY: p.masterKey, BYOK_ADMIN_TOKEN: p.adminToken, OPENAI_API_KEY: p.platformKey },
    });
    assert.notEqual(r.code, 0, `the second proxy exits non-zero; stderr: ${r.stderr}`);
    assert.ok(!r.timedOut, 'it exits on its own');
    assert.match(r.stderr, /in use by another byok-proxy/);
    assert.ok(r.stderr.includes(`pid ${p.pid}`), `the message names the running proxy's pid ${p.pid}: ${r.stderr}`);
    assert.ok(r.stderr.includes(dbPath(p)), 'the message names the store');
    // The first one is untouched.
    assertHoldsStore(p, 'after the refused start');
    assert.equal((await fetch(`${p.adminUrl}/healthz`)).status, 200);
  });

test('--rotate-master-key refuses while a proxy holds the store and works once it stopped',
  { timeout: 60000 }, async () => {
    const p = await proxy();
    await p.admin.createTenant({ id: 'rot', name: 'Rotate', wallet_micros: 1_000_000 });
    const k = await p.admin.createKey('rot');
    const newKey = crypto.randomBytes(32).toString('base64');
    const rotate = () => runBinary(['--config', p.configPath, '--rotate-master-key'], {
      env: { BYOK_MASTER_KEY: p.masterKey, BYOK_MASTER_KEY_NEW: newKey, OPENAI_API_KEY: p.platformKey },
      timeout: 20000,
    });

    let r = await rotate();
    assert.notEqual(r.code, 0, `refused while the proxy runs: ${r.stdout}${r.stderr}`);
    const out = r.stdout + r.stderr;
    assert.match(out, /nothing changed/);
    assert.ok(out.includes(`pid ${p.pid}`), `names the running proxy's pid: ${out}`);
    assert.match(out, /stop it before rotating/);
    assert.ok(!out.includes(p.masterKey) && !out.includes(newKey), 'no key material printed');
    assert.equal((await chat(p, k.key)).status, 200, 'the running proxy is untouched');

    assert.equal(await p.stop(), 0);
    r = await rotate();
    assert.equal(r.code, 0, `works once the proxy stopped: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /version 2/);

    const q = await proxy({ dir: p.dir, secrets: { ...p.secrets, masterKey: newKey }, env: { BYOK_MASTER_KEY_VERSION: '2' } });
    assert.equal((await chat(q, k.key)).status, 200, 'the proxy key works under the new master key');
    assert.equal(await q.stop(), 0);
  });

test('a JSONL file cut by a crash (lost lines and a torn one) is restored from the store at start, byte for byte',
  { timeout: 60000 }, async () => {
    const p = await proxy();
    const tenant = `jl_${randomHex(4)}`;
    await p.admin.createTenant({ id: tenant, name: 'JSONL', wallet_micros: 1_000_000 });
    const key = await p.admin.createKey(tenant, 'jsonl');
    for (let i = 0; i < 12; i++) assert.equal((await chat(p, key.key)).status, 200);
    await p.admin.waitRecords(tenant, 12);
    // The writer's batches and the JSONL's syncs (at most one a second,
    // whether or not more records come) are on /metrics.
    assert.ok(await p.metric('byok_usage_batches_total') >= 1);
    await waitFor(async () => await p.metric('byok_usage_jsonl_syncs_total') >= 1, { what: 'the JSONL synced within a second' });
    assert.equal(await p.stop(), 0);
    const file = p.config.usage.jsonl_path;
    const whole = fs.readFileSync(file, 'utf8');
    const lines = whole.split('\n').filter(Boolean);
    assert.equal(lines.filter((l) => JSON.parse(l).tenant_id === tenant).length, 12);

    // What a power loss can leave: the last three lines gone, the one
    // before them half written.
    const kept = lines.slice(0, -4);
    const torn = lines.at(-4).slice(0, 40);
    fs.writeFileSync(file, kept.map((l) => `${l}\n`).join('') + torn);

    const q = await proxy({ dir: p.dir, secrets: p.secrets });
    await waitFor(() => fs.readFileSync(file, 'utf8') === whole, { what: 'the JSONL file restored' });
    const logs = q.logs();
    assert.match(logs, /ended with 40 bytes of an incomplete line \(a torn write\); cut back/);
    assert.match(logs, /restored 4 lines to the JSONL file .* from the store/);
    assert.ok(!logs.includes(lines.at(-1)), 'no record text in the log');

    // The next start finds nothing to restore, and new records follow.
    assert.equal((await chat(q, key.key)).status, 200);
    await q.admin.waitRecords(tenant, 13);
    assert.equal(await q.stop(), 0);
    const again = await proxy({ dir: p.dir, secrets: p.secrets });
    assert.equal((await chat(again, key.key)).status, 200);
    await again.admin.waitRecords(tenant, 14);
    assert.equal(await again.stop(), 0);
    const final = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(final.slice(0, lines.length), lines, 'the restored lines stay as they were');
    const ids = final.map((l) => JSON.parse(l).id);
    assert.equal(new Set(ids).size, ids.length, 'every record once');
    assert.equal(final.filter((l) => JSON.parse(l).tenant_id === tenant).length, 14);
    assert.doesNotMatch(again.logs(), /restored \d+ line/);
  });

test('spooled records with negative or absurd amounts, a bad billed_to or no id are refused, logged and set aside',
  { timeout: 60000 }, async () => {
    const p = await proxy();
    const tenant = `sp_${randomHex(4)}`;
    await p.admin.createTenant({ id: tenant, name: 'Spool', wallet_micros: 1_000_000 });
    assert.equal(await p.stop(), 0);

    const rec = (id, extra = {}) => ({ id, ts: '2026-11-24T12:00:00.000Z', tenant_id: tenant, payer_id: tenant,
      key_id: 'k_x', provider: 'openai', line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini',
      billed_to: 'wallet', status: 200, outcome: 'ok', cost_micros: 7, ...extra });
    const good = rec(`ok_${randomHex(4)}`);
    const bad = [
      [rec(`neg_${randomHex(4)}`, { cost_micros: -5000 }), /cost_micros -5000 is negative/],
      [rec(`big_${randomHex(4)}`, { cost_micros: 10 ** 13 }), /cost_micros 10000000000000 is above the bound of 1000000000000/],
      [rec(`credit_${randomHex(4)}`, { billed_to: 'credit' }), /billed_to is neither/],
      [rec(`negunits_${randomHex(4)}`, { units: { audio_seconds: -60 } }), /audio_seconds is negative/],
      [(({ id, ...rest }) => rest)(rec('none')), /record \(no valid id\) refused: id missing/],
    ];
    const badLines = bad.map(([r]) => JSON.stringify(r));
    badLines.push('{"id": "torn_line", "ts": "2026-11-2');
    const spool = p.config.usage.spool_dir;
    fs.mkdirSync(spool, { recursive: true });
    const file = 'usage-0000000000000001-00000001-00000000.jsonl';
    fs.writeFileSync(path.join(spool, file), [JSON.stringify(good), ...badLines].map((l) => `${l}\n`).join(''));

    const q = await proxy({ dir: p.dir, secrets: p.secrets });
    const t = await q.admin.getTenant(tenant);
    assert.equal(balances(t).wallet, 1_000_000 - 7, 'only the valid record is charged; nothing is credited');
    const recs = await q.admin.usage({ tenant_id: tenant });
    assert.deepEqual(recs.map((r) => r.id), [good.id], 'only the valid record is stored');
    assert.deepEqual(fs.readdirSync(spool).sort(), ['rejected'], 'the spool file is done with; the refused lines are set aside');
    assert.deepEqual(fs.readFileSync(path.join(spool, 'rejected'), 'utf8').split('\n').filter(Boolean), badLines,
      'every refused line, as it was, in the rejected file');
    const logs = q.logs();
    for (const [r, why] of bad) {
      const line = logs.split('\n').find((l) => l.includes(r.id ? `record ${r.id} refused` : 'record (no valid id) refused'));
      assert.ok(line, `a log line names ${r.id || 'the record without id'}:\n${logs}`);
      assert.match(line, why);
      assert.match(line, /set aside in .*rejected/);
    }
    assert.match(logs, /line 7: record \(no valid id\) refused: not a JSON object/);
    const metrics = await (await fetch(`${q.adminUrl}/metrics`, { headers: { authorization: `Bearer ${q.adminToken}` } })).text();
    assert.match(metrics, /byok_usage_records_total\{state="rejected"\} 6/);

    // Nothing is replayed twice across a restart.
    assert.equal(await q.stop(), 0);
    const again = await proxy({ dir: p.dir, secrets: p.secrets });
    await waitFor(async () => (await again.admin.getTenant(tenant)) !== null, { what: 'the tenant' });
    assert.equal(balances(await again.admin.getTenant(tenant)).wallet, 1_000_000 - 7);
    assert.equal(fs.readFileSync(path.join(spool, 'rejected'), 'utf8').split('\n').filter(Boolean).length, 6);
    assert.equal(await again.stop(), 0);
  });

// An outside sqlite3 holding the write lock (BEGIN IMMEDIATE) until release().
async function holdWriteLock(db) {
  const child = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.stdin.write(".timeout 5000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await waitFor(() => out.includes('locked') || null, { what: `sqlite3 holding the write lock: ${out}` });
  return {
    async release() {
      child.stdin.end('ROLLBACK;\n.quit\n');
      await exited;
    },
  };
}

test('kill -9 while records wait in the queue: the next start records and charges each answered request once',
  { skip: NO_SQLITE3, timeout: 90000 }, async () => {
    const p = await proxy();
    const tenant = `jr_${randomHex(4)}`;
    await p.admin.createTenant({ id: tenant, name: 'Journal', wallet_micros: 10_000_000 });
    const key = await p.admin.createKey(tenant, 'journal');
    // One committed before, so the writer is warm and the balance settled.
    const first = await chat(p, key.key);
    assert.equal(first.status, 200);
    await p.admin.waitRecords(tenant, 1);
    const before = balances(await p.admin.getTenant(tenant));

    const lock = await holdWriteLock(p.config.store.path);
    let released = false;
    cleanup.push(async () => { if (!released) await lock.release(); });
    // Answered while the writer cannot commit (its transaction waits for the
    // lock): these records exist only in the queue and its journal. Four
    // clients at once, 60 requests in all.
    const answered = [];
    await Promise.all([0, 1, 2, 3].map(async () => {
      for (let i = 0; i < 15; i++) {
        const r = await chat(p, key.key);
        assert.equal(r.status, 200, `answered while the store is locked: ${r.text()}`);
        answered.push(r.headers['x-proxy-request-id']);
      }
    }));
    assert.equal(answered.length, 60);
    assert.ok(answered.every((id) => /^[0-9A-Z]{26}$/.test(id)), 'each answer names its record id');
    assert.equal(await p.metric('byok_usage_records_total\\{state="written"\\}'), 1,
      'none of them is committed yet (the store is locked)');

    p.child.kill('SIGKILL');
    assert.equal((await p.exited).signal, 'SIGKILL');
    const journal = journalPath(p.config.usage.spool_dir);
    assert.ok(fs.existsSync(journal), `the killed proxy left its queue journal ${journal}`);
    await lock.release();
    released = true;

    const q = await proxy({ dir: p.dir, secrets: p.secrets });
    assert.equal(await q.metric('byok_usage_journal_recovered_total'), 60,
      'the 60 queued records came back from the journal');
    const recs = await q.admin.waitRecords(tenant, 61);
    const ids = recs.map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'no record twice');
    assert.equal(recs.length, 61, 'exactly the 61 answered requests are recorded');
    for (const id of answered) assert.ok(ids.includes(id), `the answered request ${id} is recorded`);
    const after = balances(await q.admin.getTenant(tenant));
    const charged = recs.filter((r) => r.id !== first.headers['x-proxy-request-id'])
      .reduce((s, r) => s + r.charged.plan_credits_micros + r.charged.wallet_micros, 0);
    assert.ok(charged > 0, 'the recovered records are charged');
    assert.equal(before.wallet + before.plan - after.wallet - after.plan, charged,
      'the balances dropped by exactly what the recovered records say they charged');
    // The JSONL sink has each once too.
    await waitFor(() => {
      const lines = fs.readFileSync(q.config.usage.jsonl_path, 'utf8').split('\n').filter(Boolean);
      return lines.length >= 61 || null;
    }, { what: '61 JSONL lines' });
    const jsonl = fs.readFileSync(q.config.usage.jsonl_path, 'utf8').split('\n').filter(Boolean)
      .map((l) => JSON.parse(l).id);
    assert.equal(jsonl.length, 61);
    assert.equal(new Set(jsonl).size, 61);

    // A clean stop leaves nothing in the journal: the start after it
    // recovers none.
    assert.equal(await q.stop(), 0);
    const r = await proxy({ dir: p.dir, secrets: p.secrets });
    assert.equal(await r.metric('byok_usage_journal_recovered_total'), 0);
    assert.equal((await r.admin.usage({ tenant_id: tenant, limit: 1000 })).length, 61);
    assert.ok(fs.existsSync(journal), 'a running proxy has its journal');
    assert.equal(await r.stop(), 0);
    assert.ok(!fs.existsSync(journal), 'a clean stop removes it (nothing past the mark)');
  });
