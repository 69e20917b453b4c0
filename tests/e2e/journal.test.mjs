// journal.test.mjs - the usage queue's crash journal (README "Durability and
// secrets"): a record is queued when its request ends and committed a
// linger later; a kill -9 in between must not lose it. Here the writer is
// held up for certain (an outside sqlite3 holds the database's write lock,
// so every record answered meanwhile is still queued), the proxy is killed,
// and the next start must record and charge every answered request exactly
// once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, balances, journalPath } from './lib/proxy.mjs';
import { httpRequest, randomHex, waitFor } from './lib/util.mjs';

const mockP = startMockOpenAI();
const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
  await (await mockP).close();
});

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
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'journaled?' }] },
  });
}

async function metric(p, name) {
  const r = await fetch(`${p.adminUrl}/metrics`, { headers: { authorization: `Bearer ${p.secrets.adminToken}` } });
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(await r.text());
  assert.ok(m, `${name} on /metrics`);
  return Number(m[1]);
}

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
    assert.equal(await metric(p, 'byok_usage_records_total\\{state="written"\\}'), 1,
      'none of them is committed yet (the store is locked)');

    p.child.kill('SIGKILL');
    assert.equal((await p.exited).signal, 'SIGKILL');
    const journal = journalPath(p.config.usage.spool_dir);
    assert.ok(fs.existsSync(journal), `the killed proxy left its queue journal ${journal}`);
    await lock.release();
    released = true;

    const q = await proxy({ dir: p.dir, secrets: p.secrets });
    assert.equal(await metric(q, 'byok_usage_journal_recovered_total'), 60,
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
    assert.equal(await metric(r, 'byok_usage_journal_recovered_total'), 0);
    assert.equal((await r.admin.usage({ tenant_id: tenant, limit: 1000 })).length, 61);
    assert.ok(fs.existsSync(journal), 'a running proxy has its journal');
    assert.equal(await r.stop(), 0);
    assert.ok(!fs.existsSync(journal), 'a clean stop removes it (nothing past the mark)');
  });
