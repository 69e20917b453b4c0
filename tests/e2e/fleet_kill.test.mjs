// fleet_kill.test.mjs - fleet mode (DESIGN §7b) under faults, with exact
// counts: one redis-server (AOF, appendfsync always) and two proxy
// instances A and B on it, all on 127.0.0.1, started and stopped here.
//   1  400 mixed requests over A and B (chat JSON, chat SSE with
//      include_usage, embeddings; wallet, plan credits + wallet, a
//      subaccount paid by its agency, BYOK): every 2xx has exactly one entry
//      in the stream byok:usage, no id twice, Σ charged per payer = its
//      balance drop, BYOK lines charge nothing.
//   2  kill -9 of redis-server in the middle of a load over A and B: /readyz
//      503 on both while it is down, redis restarted on its AOF, spools
//      replayed: the same exact counts, and no hold left behind.
//   3  kill -9 of an instance with records in its spool (requests admitted
//      with a hold and still running when Redis died, and wallet and BYOK
//      lines served with store.on_down "serve" while it was down): restarted
//      on the same dir, it replays each record once; a second restart changes
//      nothing.
// The client learns a record's id from the x-proxy-request-id header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, newSecrets } from './lib/proxy.mjs';
import { startRedis } from './lib/redis.mjs';
import { httpRequest, waitFor, randomHex } from './lib/util.mjs';

const CONC = 16;
const CHAT_MODEL = 'gpt-4o'; // 128 micro-USD per chat with the mock's default usage
const EMB_MODEL = 'text-embedding-3-small';
const EMB_TOKENS = 5000; // 100 micro-USD per embeddings call

let redis, mock, A, B;
const secrets = newSecrets();
const extra = []; // instances started by a test, stopped in after()

const patchFor = (onDown) => (cfg) => {
  cfg.store = { backend: 'redis', url: redis.url(0), ...(onDown ? { on_down: onDown } : {}) };
};

before(async () => {
  redis = await startRedis({ appendonly: true, args: ['--appendfsync', 'always'] });
  mock = await startMockOpenAI();
  mock.config.embeddings.prompt_tokens = EMB_TOKENS;
  A = await startProxy({ mockUrl: mock.url, secrets, patch: patchFor() });
  B = await startProxy({ mockUrl: mock.url, secrets, patch: patchFor() });
});

after(async () => {
  for (const p of [A, B, ...extra]) {
    if (!p) continue;
    if (!p.exit) await p.stop();
    p.remove();
  }
  await mock?.close();
  await redis?.stop();
  redis?.remove();
});

// ---- tenants ----------------------------------------------------------------------

// Every instance knows key: probed with an endpoint a wallet line is
// refused (403 after authentication, 401 before; no hold, no record). A
// BYOK line goes through to the mock's 404 and is recorded (metered:
// false): the ids of such probes go to probes.
async function known(key, instances, probes) {
  for (const p of instances) {
    await waitFor(async () => {
      const r = await httpRequest(`${p.url}/v1/files`, { headers: { authorization: `Bearer ${key}` } });
      if (r.headers['x-proxy-request-id']) probes.add(r.headers['x-proxy-request-id']);
      return r.status !== 401;
    }, { timeout: 2000, interval: 5, what: 'the key known on every instance' });
  }
}

// The clients of one test: a wallet tenant, one with plan credits that run
// out during the test (so both plan credits and wallet are charged), a
// subaccount whose agency pays, and a BYOK tenant (its own OpenAI
// connection in the openai slot). Each client: { name, tenantId, payerId,
// key, byok }. payers: the tenants whose balances move (or must not).
async function makeClients(instances, { plan = 5_000 } = {}) {
  const adm = instances[0].admin;
  const tag = randomHex(4);
  const mk = async (name, body) => {
    const id = `t_kill_${name}_${tag}`;
    await adm.createTenant({ id, name: id, features: { byok: false, agency: false }, wallet_micros: 50_000_000, ...body });
    return id;
  };
  const wallet = await mk('w', {});
  const credits = await mk('pc', { plan_credits_micros: plan, wallet_micros: 20_000_000 });
  const agency = await mk('ag', { features: { byok: false, agency: true } });
  const sub = await mk('sub', { parent_id: agency });
  const own = await mk('byok', { features: { byok: true, agency: false } });
  const c = await adm.createConnection(own, { provider: 'openai', name: 'own', api_key: `sk-own-${randomHex(8)}` });
  await adm.putByok(own, { enabled: true, slots: { openai: c.id } });
  // Keys last: once an instance knows a key it has read its tenant's
  // settings written before it.
  const clients = [];
  for (const [name, tenantId, payerId, byok] of [['wallet', wallet, wallet, false], ['credits', credits, credits, false],
    ['sub', sub, agency, false], ['byok', own, own, true]]) {
    const k = await adm.createKey(tenantId);
    clients.push({ name, tenantId, payerId, key: k.key, byok });
  }
  const probes = new Set();
  for (const cl of clients) await known(cl.key, instances, probes);
  const payers = [wallet, credits, agency, own];
  return { clients, payers, probes, tenantIds: new Set(clients.map((cl) => cl.tenantId)) };
}

async function balancesOf(p, ids) {
  const out = {};
  for (const id of ids) {
    const t = await p.admin.getTenant(id);
    out[id] = { plan: t.plan_credits_micros, wallet: t.wallet_micros, held: t.held_micros };
  }
  return out;
}

// ---- requests ---------------------------------------------------------------------

const KINDS = ['json', 'sse', 'emb'];

// One request of a kind; never rejects. delayMs: the mock answers a chat
// that late (keeps requests in flight).
async function send(p, client, kind, i, { delayMs = 0 } = {}) {
  const content = `kill test ${i}${delayMs ? ` [[delay:${delayMs}]]` : ''}`;
  const [urlPath, body] = kind === 'emb'
    ? ['/v1/embeddings', { model: EMB_MODEL, input: content }]
    : ['/v1/chat/completions', { model: CHAT_MODEL, messages: [{ role: 'user', content }],
      ...(kind === 'sse' ? { stream: true, stream_options: { include_usage: true } } : {}) }];
  const out = { i, client, kind, inst: p === A ? 'A' : p === B ? 'B' : 'C', status: 0, id: null, billedTo: null, error: null };
  try {
    const r = await httpRequest(`${p.url}${urlPath}`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${client.key}` }, body, timeout: 20000 });
    out.status = r.status;
    out.id = r.headers['x-proxy-request-id'] || null;
    out.billedTo = r.headers['x-billed-to'] || null;
    out.retry = r.headers['x-should-retry'];
    out.text = r.body.toString('utf8');
    if (r.status === 200) {
      // The whole reply arrived: a stream to its end, JSON parseable.
      if (kind === 'sse') assert.ok(out.text.endsWith('data: [DONE]\n\n'), `request ${i}: the stream ended`);
      else JSON.parse(out.text);
    }
  } catch (e) {
    out.error = e.message;
  }
  return out;
}

// fn(i) for i < n, at most conc at once; results in order. Bounded: n
// calls, each bounded by its own timeout.
async function load(n, conc, fn) {
  const results = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker));
  return results;
}

async function readyz(p) {
  const r = await fetch(`${p.adminUrl}/readyz`).catch(() => null);
  return r ? r.status : 0;
}

// ---- the stream and the money -------------------------------------------------------

// Every entry of byok:usage: { entry, id, rec }.
async function streamEntries() {
  const raw = await redis.command('XRANGE', 'byok:usage', '-', '+');
  return raw.map(([entry, f]) => {
    const m = {};
    for (let k = 0; k < f.length; k += 2) m[String(f[k])] = String(f[k + 1]);
    return { entry: String(entry), id: m.id, rec: JSON.parse(m.record) };
  });
}

function spoolFiles(p) {
  const dir = p.config.usage.spool_dir;
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => /^usage-.*\.jsonl$/.test(f)).map((f) => path.join(dir, f));
}

function spoolLines(p) {
  const out = [];
  for (const f of spoolFiles(p)) {
    for (const l of fs.readFileSync(f, 'utf8').split('\n')) if (l.trim()) out.push(JSON.parse(l));
  }
  return out;
}

// The exact counts of DESIGN §7b for the requests ok (2xx, each with its
// x-proxy-request-id): each in byok:usage exactly once, no entry of these
// tenants without a 2xx, no id twice in the whole stream, per payer Σ
// charged (plan credits and wallet separately) = the balance drop from
// `start`, BYOK lines billed "byok" and charging nothing, and no hold or
// reservation left (held_micros 0 on every instance in `instances`).
async function checkExact(set, start, ok, instances, what) {
  const want = new Map(ok.map((r) => [r.id, r]));
  assert.equal(want.size, ok.length, `${what}: a distinct x-proxy-request-id on every 2xx`);
  for (const r of ok) assert.match(String(r.id), /^\S+$/, `${what}: request ${r.i} has a record id`);
  let entries;
  await waitFor(async () => {
    entries = await streamEntries();
    const seen = new Set(entries.map((e) => e.id));
    return ok.every((r) => seen.has(r.id));
  }, { timeout: 20000, interval: 50, what: `${what}: every 2xx in byok:usage` });
  const count = new Map();
  for (const e of entries) count.set(e.id, (count.get(e.id) || 0) + 1);
  const twice = [...count].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `${what}: no id twice in byok:usage`);
  const ours = entries.filter((e) => set.tenantIds.has(e.rec.tenant_id) && !set.probes.has(e.id));
  const stray = ours.filter((e) => !want.has(e.id)).map((e) => e.id);
  assert.deepEqual(stray, [], `${what}: no entry without a 2xx`);
  assert.equal(ours.length, ok.length, `${what}: one entry per 2xx`);
  for (const e of ours) {
    const r = want.get(e.id);
    assert.equal(e.rec.id, e.id, 'the entry names its record');
    assert.equal(e.rec.tenant_id, r.client.tenantId);
    assert.equal(e.rec.payer_id, r.client.payerId);
    assert.equal(e.rec.billed_to, r.billedTo, `${what}: the record is billed as the reply said`);
    assert.equal(e.rec.billed_to, r.client.byok ? 'byok' : 'wallet');
    assert.equal(e.rec.status, 200);
    assert.equal(e.rec.outcome, 'ok');
    assert.ok(e.rec.cost_micros > 0, `${what}: priced (${e.rec.cost_micros})`);
    if (r.client.byok) assert.deepEqual(e.rec.charged, { plan_credits_micros: 0, wallet_micros: 0 }, 'BYOK lines charge nothing');
    else assert.equal(e.rec.charged.plan_credits_micros + e.rec.charged.wallet_micros, e.rec.cost_micros, `${what}: charged its cost`);
  }
  // Nothing held or reserved any more, on any instance (the fleet's holds
  // in Redis plus each instance's uncommitted and spooled charges).
  let after;
  let where;
  await waitFor(async () => {
    for (const p of instances) {
      where = p;
      after = await balancesOf(p, set.payers);
      if (set.payers.some((id) => after[id].held !== 0)) return false;
    }
    return true;
  }, { timeout: 15000, interval: 50, what: `${what}: held_micros 0 on every instance` }).catch((e) => {
    const replays = where.logs().split('\n').filter((l) => /spool/.test(l)).join('\n');
    throw new Error(`${e.message}: ${JSON.stringify(after)} (on ${where.url}); its spool log:\n${replays}`);
  });
  let charged = 0;
  let drop = 0;
  const perPayer = {};
  for (const id of set.payers) {
    const mine = ours.filter((e) => e.rec.payer_id === id);
    const plan = mine.reduce((s, e) => s + e.rec.charged.plan_credits_micros, 0);
    const wallet = mine.reduce((s, e) => s + e.rec.charged.wallet_micros, 0);
    const d = { plan: start[id].plan - after[id].plan, wallet: start[id].wallet - after[id].wallet };
    assert.deepEqual({ plan, wallet }, d, `${what}: payer ${id}: Σ charged (plan credits, wallet) = the balance drop`);
    charged += plan + wallet;
    drop += d.plan + d.wallet;
    perPayer[id] = { entries: mine.length, plan, wallet };
  }
  return { entries: ours.length, charged, drop, perPayer };
}

// ---- 1 ------------------------------------------------------------------------------

test('1. 400 mixed requests over A and B: Σ charged over the stream = the balance drop, one entry per id', async () => {
  const N = 400;
  const set = await makeClients([A, B]);
  const start = await balancesOf(A, set.payers);
  const nc = set.clients.length;
  // Every client sends every kind through both instances.
  const res = await load(N, CONC, (i) => send(Math.floor(i / (nc * KINDS.length)) % 2 ? A : B,
    set.clients[i % nc], KINDS[Math.floor(i / nc) % KINDS.length], i));
  const bad = res.filter((r) => r.status !== 200);
  assert.deepEqual(bad.map((r) => `${r.i}: ${r.status} ${r.error || r.text}`), [], 'every request served');
  const f = await checkExact(set, start, res, [A, B], 'mixed load');
  const credits = f.perPayer[set.clients.find((c) => c.name === 'credits').payerId];
  assert.ok(credits.plan > 0 && credits.wallet > 0, `plan credits and wallet both charged (${JSON.stringify(credits)})`);
  const byokEntries = f.perPayer[set.clients.find((c) => c.byok).payerId].entries;
  assert.ok(byokEntries > 0);
  assert.equal(f.charged, f.drop);
  const kinds = KINDS.map((k) => `${k} ${res.filter((r) => r.kind === k).length}`).join(', ');
  console.log(`# mixed: ${N} requests (${kinds}; A ${res.filter((r) => r.inst === 'A').length}, B ${res.filter((r) => r.inst === 'B').length}), ` +
    `2xx ${res.length - bad.length}, entries ${f.entries} (byok ${byokEntries}), Σ charged ${f.charged} micro-USD ` +
    `(plan credits ${credits.plan} + wallet of the credits tenant ${credits.wallet} among them), drop ${f.drop}`);
});

// ---- 2 ------------------------------------------------------------------------------

test('2. kill -9 of Redis mid-load, restart on its AOF: every 2xx once in the stream, Σ charged = drop, no hold left', async () => {
  const N = 320;          // requests
  const KILL_AFTER = 100; // completed requests when Redis is killed
  const DOWN_BUDGET = 60; // requests started while it is down; the rest wait for it
  const set = await makeClients([A, B]);
  const start = await balancesOf(A, set.payers);
  const nc = set.clients.length;
  let done = 0;
  let openGate;
  const gate = new Promise((r) => { openGate = r; });
  let phase = 'before';
  const readyAt = { A: null, B: null };
  const sent = async (i) => {
    if (i >= KILL_AFTER + DOWN_BUDGET) await gate;
    const p = i % 2 ? A : B;
    const client = set.clients[Math.floor(i / 2) % nc];
    const kind = KINDS[Math.floor(i / (2 * nc)) % KINDS.length];
    const at = phase;
    const r = await send(p, client, kind, i, { delayMs: 10 + (i % 7) * 10 });
    r.phase = at;
    done++;
    return r;
  };
  const chaos = (async () => {
    try {
      await waitFor(() => done >= KILL_AFTER, { timeout: 30000, what: `${KILL_AFTER} requests done` });
      await redis.kill();
      phase = 'down';
      for (const p of [A, B]) await waitFor(async () => (await readyz(p)) === 503, { timeout: 10000, what: '/readyz 503 while Redis is down' });
      // Every request started before the gate has ended (Redis still down).
      await waitFor(() => done >= KILL_AFTER + DOWN_BUDGET, { timeout: 30000, what: 'the requests of the outage ended' });
      assert.equal(await readyz(A), 503);
      assert.equal(await readyz(B), 503);
    } finally {
      await redis.restart();
      phase = 'restarted';
      const t0 = Date.now();
      try {
        for (const [name, p] of [['A', A], ['B', B]]) {
          await waitFor(async () => (await readyz(p)) === 200, { timeout: 15000, what: '/readyz 200 again' });
          readyAt[name] = Date.now() - t0;
        }
        phase = 'after'; // both say ready
      } finally {
        openGate();
      }
    }
  })();
  const [res] = await Promise.all([load(N, CONC, sent), chaos]);
  const ok = res.filter((r) => r.status === 200);
  const refused = res.filter((r) => r.status === 503);
  const other = res.filter((r) => r.status !== 200 && r.status !== 503);
  assert.deepEqual(other.map((r) => `${r.i}: ${r.status} ${r.error || r.text}`), [], 'only 200 and 503');
  for (const r of refused) {
    assert.equal(r.retry, 'true', '503 says retry');
    assert.equal(r.client.byok, false, 'BYOK lines are served while Redis is down');
    assert.equal(JSON.parse(r.text).error.code, 'store_unavailable');
  }
  assert.ok(refused.length > 0, 'some wallet lines refused while Redis was down');
  assert.ok(ok.some((r) => r.phase === 'down' && r.client.byok), 'BYOK lines served while it was down');
  assert.ok(ok.some((r) => r.phase === 'after'), 'served after it came back');
  // An instance that says ready serves: once /readyz answered 200 on both,
  // no wallet line is refused for want of Redis (HAProxy puts a replica back
  // in rotation on that answer; docker/haproxy.cfg).
  const refusedAfter = refused.filter((r) => r.phase === 'after');
  assert.deepEqual(refusedAfter.map((r) => `${r.i} on ${r.inst}`), [], 'nothing refused after /readyz 200');
  // Spools replayed (and removed) on both instances.
  await waitFor(() => spoolFiles(A).length === 0 && spoolFiles(B).length === 0, { timeout: 20000, interval: 50, what: 'both spools replayed' });
  const f = await checkExact(set, start, ok, [A, B], 'Redis kill -9');
  assert.equal(f.charged, f.drop);
  const logs = A.logs() + B.logs();
  const spooled = (logs.match(/records spooled for replay/g) || []).length;
  console.log(`# redis kill -9: ${N} requests, 2xx ${ok.length} (while down ${ok.filter((r) => r.phase === 'down').length}), ` +
    `refused 503 ${refused.length} (after /readyz 200: ${refusedAfter.length}), entries ${f.entries}, Σ charged ${f.charged}, drop ${f.drop}; ` +
    `batches spooled ${spooled}; /readyz 200 again after ${readyAt.A} ms (A), ${readyAt.B} ms (B)`);
});

// ---- 3 ------------------------------------------------------------------------------

test('3. kill -9 of an instance holding records in its spool: replayed once when it restarts, and a second restart changes nothing', async () => {
  const SLOW = 8; // admitted (a hold each) and running when Redis dies
  const M = 24;   // served while Redis is down (store.on_down "serve", BYOK)
  const C = await startProxy({ mockUrl: mock.url, secrets, patch: patchFor('serve') });
  extra.push(C);
  const set = await makeClients([A, C]);
  const start = await balancesOf(A, set.payers);
  const walletClients = set.clients.filter((c) => !c.byok);
  const marker = `slow-${randomHex(4)}`;
  const mark = mock.requests.length;
  const slow = Array.from({ length: SLOW }, (_, k) => send(C, walletClients[k % walletClients.length], k % 2 ? 'sse' : 'json',
    `${marker}-${k}`, { delayMs: 1500 }));
  await waitFor(() => mock.since(mark).filter((u) => JSON.stringify(u.json || {}).includes(marker)).length === SLOW,
    { timeout: 10000, what: 'the slow requests upstream' });
  // Their holds are in Redis now.
  const holdsBefore = {};
  for (const id of set.payers) holdsBefore[id] = await redis.command('ZCARD', `byok:{t:${id}}:holds`);
  assert.equal(Object.values(holdsBefore).reduce((s, n) => s + n, 0), SLOW, 'one hold per slow request');
  await redis.kill();
  let redisUp = false;
  let C2;
  try {
    await waitFor(async () => (await readyz(C)) === 503, { timeout: 10000, what: 'C: /readyz 503' });
    const down = await load(M, 8, (i) => send(C, set.clients[i % set.clients.length], KINDS[Math.floor(i / set.clients.length) % KINDS.length], `down-${i}`));
    const slowRes = await Promise.all(slow);
    const all = [...slowRes, ...down];
    assert.deepEqual(all.filter((r) => r.status !== 200).map((r) => `${r.i}: ${r.status} ${r.error || r.text}`), [],
      'served: the slow ones admitted before, the others with on_down "serve" or BYOK');
    // All of them in C's spool, uncharged; the slow ones name their hold.
    await waitFor(() => {
      const ids = new Set(spoolLines(C).map((l) => l.id));
      return all.every((r) => ids.has(r.id));
    }, { timeout: 20000, interval: 50, what: 'every record in C\'s spool' });
    const lines = spoolLines(C);
    assert.equal(lines.length, all.length, 'each record spooled once');
    assert.ok(spoolFiles(C).length > 0);
    for (const l of lines) assert.deepEqual(l.charged, { plan_credits_micros: 0, wallet_micros: 0 }, 'spooled records are not charged yet');
    const withHold = lines.filter((l) => l.hold_id);
    assert.deepEqual(withHold.map((l) => l.id).sort(), slowRes.map((r) => r.id).sort(), 'the slow records carry their holds');
    const files = spoolFiles(C).length;
    // kill -9 with the spool full, then Redis back (on its AOF), then C again
    // on the same dir and secrets.
    C.child.kill('SIGKILL');
    assert.equal((await C.exited).signal, 'SIGKILL');
    await redis.restart();
    redisUp = true;
    await waitFor(async () => (await readyz(A)) === 200, { timeout: 15000, what: 'A: /readyz 200' });
    assert.ok(spoolFiles(C).length > 0, 'the spool survived the kill');
    C2 = await startProxy({ dir: C.dir, secrets });
    extra.push(C2);
    await waitFor(() => spoolFiles(C2).length === 0, { timeout: 20000, interval: 50, what: 'C\'s spool replayed after the restart' });
    const f = await checkExact(set, start, all, [A, C2], 'instance kill -9 with a spool');
    for (const id of set.payers) assert.equal(await redis.command('ZCARD', `byok:{t:${id}}:holds`), 0, `no hold of ${id} left in Redis`);
    const replayed = (C2.logs().match(/replayed spool file/g) || []).length;
    assert.equal(replayed, files, 'each spool file replayed once');
    // Once more (kill -9 again): nothing doubled, nothing moved.
    const entriesBefore = (await streamEntries()).length;
    const balBefore = await balancesOf(A, set.payers);
    C2.child.kill('SIGKILL');
    await C2.exited;
    const C3 = await startProxy({ dir: C.dir, secrets });
    extra.push(C3);
    assert.equal(spoolFiles(C3).length, 0);
    const g = await checkExact(set, start, all, [A, C3], 'second restart');
    assert.deepEqual(g, f, 'the same figures after a second restart');
    assert.equal((await streamEntries()).length, entriesBefore, 'no entry added');
    assert.deepEqual(await balancesOf(A, set.payers), balBefore, 'no balance moved');
    assert.equal(await C3.stop(), 0);
    console.log(`# instance kill -9: ${all.length} records spooled (${SLOW} admitted with a hold before Redis died, ${M} served while down) ` +
      `in ${files} file(s), replayed ${f.entries} once, Σ charged ${f.charged}, drop ${f.drop}; second restart: entries ${g.entries}, Σ ${g.charged}`);
  } finally {
    if (!redisUp) await redis.restart();
  }
});
