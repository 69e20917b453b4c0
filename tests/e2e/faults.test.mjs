// faults.test.mjs - faults with exact counts: for each way an upstream, the
// process or the store can fail, N requests on a wallet-billed tenant with a
// priced model, then exactly N records (store and JSONL, each id once), the
// right outcome/status/estimated on each, and Σ charged == the payer's
// balance drop (DESIGN §3 rule 4, §4c, §5, §7):
//   1-2  the upstream resets before the head / in the middle of a JSON body
//   3    the upstream resets in the middle of an SSE stream
//   4    the upstream stalls before the head / in the middle of a stream
//   5    SIGTERM with N streams in flight (drain, refuse, exit 0)
//   6    the store refuses writes (an outside sqlite3 holds the write lock):
//        records are spooled; kill -9, lock released, restart replays them
//        once (6), or the lock is released under the running proxy (6a); an
//        outside sqlite3 reader leaves the proxy's WAL alone (6c); kill -9
//        with the store up: no completed request loses its record (6b: the
//        queue journal gives back what the writer still held; measured and
//        printed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startMockOpenAI, chatStreamEvents, hang } from './lib/mock_openai.mjs';
import { startProxy, newTenant, balances } from './lib/proxy.mjs';
import { checkRecord, costMicros } from './lib/records.mjs';
import { waitFor, sseEvents } from './lib/util.mjs';

const N = 24;          // requests per fault
const CONC = 6;        // concurrent requests
const STALL_CONC = 12; // stalls each take upstream_timeout_ms
const UPSTREAM_TIMEOUT_MS = 1000;
const MODEL = 'gpt-4o'; // priced so that a few tokens cost whole micro-USD
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

let mock;
let proxy; // faults 1-4: a short upstream deadline
const tenants = []; // { t, n } of the shared proxy, rechecked after its exit
const tempProxies = [];
const figures = [];

before(async () => {
  mock = await startMockOpenAI();
  proxy = await startProxy({ mockUrl: mock.url, limits: { upstream_timeout_ms: UPSTREAM_TIMEOUT_MS } });
});

after(async () => {
  mock?.clearOverrides();
  for (const p of [proxy, ...tempProxies]) {
    if (!p) continue;
    if (!p.exit) await p.stop();
    p.remove();
  }
  await mock?.close();
  if (figures.length) console.log(`faults: figures\n${figures.map((f) => `  ${f}`).join('\n')}`);
});

// ---- clients ------------------------------------------------------------------

// The prompt of request i: distinct lengths, so every estimate differs.
function prompt(i) {
  return `fault request ${i}: ${'abcd'.repeat(40 + 3 * i)}`;
}

function chatBody(i, extra = {}) {
  return { model: MODEL, messages: [{ role: 'user', content: prompt(i) }], ...extra };
}

// One POST over a fresh connection. Never rejects: resolves with the status,
// headers, body, whether the body arrived whole (res.complete) and the
// error, if any. onData(text so far) sees the body as it arrives.
function send(p, key, body, { onData, timeout = 15000, path: urlPath = '/v1/chat/completions' } = {}) {
  return new Promise((resolve) => {
    const out = { status: 0, headers: {}, body: Buffer.alloc(0), text: '', complete: false, error: null, endedAt: 0 };
    const parts = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      out.body = Buffer.concat(parts);
      out.text = out.body.toString('utf8');
      out.id = out.headers['x-proxy-request-id'];
      out.endedAt = Date.now();
      resolve(out);
    };
    const req = http.request(`${p.url}${urlPath}`, {
      method: 'POST', agent: false,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      res.on('data', (d) => {
        parts.push(d);
        if (onData) onData(Buffer.concat(parts).toString('utf8'));
      });
      res.on('error', (e) => { out.error = e.message; });
      res.on('close', () => {
        out.complete = res.complete;
        finish();
      });
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`client timeout after ${timeout} ms`)));
    req.on('error', (e) => {
      out.error = out.error || e.message;
      finish();
    });
    req.end(JSON.stringify(body));
  });
}

// Runs fn(i) for i < n with at most conc at once; resolves with the results
// in order. Bounded: n calls, each bounded by its own timeout.
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

// ---- accounting ---------------------------------------------------------------

// Resolves with promise's value, or rejects after ms naming what.
function within(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function total(b) {
  return b.plan + b.wallet;
}

// Parsed JSONL lines; a line cut by a kill is reported, not thrown.
function jsonlLines(file) {
  if (!fs.existsSync(file)) return { lines: [], broken: 0 };
  const lines = [];
  let broken = 0;
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    try { lines.push(JSON.parse(l)); } catch { broken++; }
  }
  return { lines, broken };
}

function sumCharged(recs) {
  return recs.reduce((s, r) => ({ plan: s.plan + r.charged.plan_credits_micros, wallet: s.wallet + r.charged.wallet_micros }),
    { plan: 0, wallet: 0 });
}

// Exactly one record per request in the store and in the JSONL file, the
// record ids those the clients were told, Σ charged == the balance drop.
// ids: the x-proxy-request-id of every request (all distinct). expect(rec,
// i) checks one record of request i. Returns the figures.
async function checkExact(p, t, start, ids, expect, { what }) {
  assert.equal(ids.length, new Set(ids).size, `${what}: every reply has its own x-proxy-request-id`);
  assert.ok(ids.every((id) => typeof id === 'string' && id.length > 0), `${what}: every reply carries x-proxy-request-id`);
  const recs = await p.admin.waitRecords(t.tenantId, ids.length, { timeout: 15000 });
  assert.equal(recs.length, ids.length, `${what}: exactly one record per request in the store`);
  const byId = new Map(recs.map((r) => [r.id, r]));
  assert.equal(byId.size, recs.length, `${what}: no id twice in the store`);
  ids.forEach((id, i) => {
    const r = byId.get(id);
    assert.ok(r, `${what}: request ${i} (${id}) has its record`);
    expect(r, i);
  });
  const { lines } = await waitFor(() => {
    const j = jsonlLines(p.jsonlPath);
    return ids.every((id) => j.lines.some((x) => x.id === id)) ? j : null;
  }, { timeout: 10000, what: `${what}: every record in the JSONL file` });
  const mine = lines.filter((x) => x.tenant_id === t.tenantId);
  assert.equal(mine.length, ids.length, `${what}: exactly one JSONL line per request`);
  for (const x of mine) assert.deepEqual(x, byId.get(x.id), `${what}: JSONL line ${x.id} equals the stored record`);
  const charged = sumCharged(recs);
  const now = balances(await p.admin.getTenant(t.tenantId));
  const drop = total(start) - total(now);
  assert.equal(charged.plan + charged.wallet, drop, `${what}: Σ charged == balance drop`);
  assert.equal(charged.plan, start.plan - now.plan, `${what}: plan credits moved by what was charged to them`);
  assert.equal(charged.wallet, start.wallet - now.wallet, `${what}: wallet moved by what was charged to it`);
  const f = { what, requests: ids.length, records: recs.length, jsonl: mine.length, charged: charged.plan + charged.wallet, drop };
  figures.push(`${what}: N=${f.requests} records=${f.records} jsonl=${f.jsonl} Σcharged=${f.charged} drop=${f.drop}`);
  return f;
}

// A wallet tenant with some plan credits (the charges cross from plan to
// wallet during the run) and its starting balances.
async function walletTenant(p, { plan = 2000, wallet = 50_000_000 } = {}) {
  const t = await newTenant(p, { plan, wallet });
  return { t, start: { plan, wallet } };
}

// DESIGN §5 estimate of a cut chat: 4 characters per token of the prompt
// and of the relayed text.
function estimate(i, outChars) {
  const u = { input_tokens: Math.ceil(prompt(i).length / 4), output_tokens: Math.ceil(outChars / 4) };
  return { units: u, cost: costMicros(MODEL, u) };
}

// Characters of the "content" deltas in the SSE text the client received.
function relayedChars(text) {
  let n = 0;
  for (const ev of sseEvents(text).events) {
    const m = /^data: (.*)$/m.exec(ev);
    if (!m || m[1] === '[DONE]') continue;
    for (const c of JSON.parse(m[1]).choices || []) n += (c.delta?.content || '').length;
  }
  return n;
}

function baseExp(t, extra) {
  return { tenantId: t.tenantId, keyId: t.keyId, line: 'llm', endpoint: '/v1/chat/completions', model: MODEL, ...extra };
}

function openaiErrorCode(res) {
  try { return JSON.parse(res.text).error.code; } catch { return null; }
}

// ---- upstream misbehaviour ------------------------------------------------------

// A chat reply of the usual shape whose text is `content`.
function chatReplyJson(rec, content) {
  return JSON.stringify({
    id: `chatcmpl-fault${rec.n}`, object: 'chat.completion', created: 1700000000, model: rec.json?.model,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 500, completion_tokens: 200, total_tokens: 700 },
    service_tier: 'default', system_fingerprint: 'fp_mock',
  });
}

// A Responses API reply of the usual shape whose text is `text`.
function responsesReplyJson(rec, text) {
  return JSON.stringify({
    id: `resp_fault${rec.n}`, object: 'response', created_at: 1700000000, status: 'completed', model: rec.json?.model,
    output: [{ id: `msg_fault${rec.n}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }],
    usage: { input_tokens: 500, input_tokens_details: { cached_tokens: 0 }, output_tokens: 200, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 700 },
    error: null, incomplete_details: null, instructions: null, parallel_tool_calls: true, tool_choice: 'auto', tools: [],
  });
}

// A reply text per upstream request, of a length of its own.
function replyText(rec) {
  return `answer ${rec.n} `.padEnd(60 + (rec.n % 9) * 11, 'xyz');
}

// Writes the head and the first k events of the chat stream; returns them all.
async function streamFirst(ctx, k) {
  const events = chatStreamEvents(ctx.rec, ctx.mock.config.chat);
  ctx.head(200, SSE_HEADERS);
  for (const e of events.slice(0, k)) await ctx.write(e.data);
  return events;
}

const CUT_CONTENT = ['Once', ' upon', ' a time', ' there', ' was', ' a proxy', ' that', ' metered', ' everything', '.'];

test('1. upstream resets before the response head: 502, upstream_error, cost 0, nothing charged', async () => {
  const { t, start } = await walletTenant(proxy);
  tenants.push({ t, n: N });
  const mark = mock.requests.length;
  mock.override({ path: '/v1/chat/completions', times: Infinity, handle: (ctx) => { ctx.req.socket.resetAndDestroy(); } });
  let res;
  try {
    res = await load(N, CONC, (i) => send(proxy, t.key, chatBody(i)));
  } finally {
    mock.clearOverrides();
  }
  for (const r of res) {
    assert.equal(r.status, 502, `502 to the client (${r.error || r.text})`);
    assert.equal(openaiErrorCode(r), 'upstream_unreachable');
    assert.equal(r.headers['x-billed-to'], 'wallet');
  }
  const upstream = mock.since(mark).length;
  const f = await checkExact(proxy, t, start, res.map((r) => r.id), (rec) => {
    // No reply from the provider: nothing it could bill (README "Which
    // requests get a record": 502/504 from the proxy, zero units, cost 0).
    checkRecord(rec, baseExp(t, { status: 502, outcome: 'upstream_error', estimated: false, units: {}, cost: 0 }));
    assert.equal(rec.upstream_request_id, null);
  }, { what: 'reset before head' });
  assert.equal(f.charged, 0);
  assert.ok(upstream >= N, `every request reached the upstream (${upstream} upstream attempts for ${N} requests)`);
  console.log(`fault 1: ${N} requests, ${upstream} upstream attempts`);
});

// Even requests: chat completions; odd ones: the Responses API.
function jsonFaultRequest(p, t, i) {
  if (i % 2 === 0) return send(p, t.key, chatBody(i));
  return send(p, t.key, { model: MODEL, input: prompt(i) }, { path: '/v1/responses' });
}

test('2. upstream resets in the middle of a JSON body: the client sees it cut, the record is estimated from what was relayed', async () => {
  const { t, start } = await walletTenant(proxy);
  tenants.push({ t, n: N });
  mock.override({ path: /^\/v1\/(chat\/completions|responses)$/, times: Infinity, handle: async (ctx) => {
    const text = replyText(ctx.rec);
    const full = ctx.rec.url === '/v1/responses' ? responsesReplyJson(ctx.rec, text) : chatReplyJson(ctx.rec, text);
    // Cut after the message, before the usage the provider reports.
    const cut = full.indexOf('"usage"');
    ctx.head(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(full) });
    await ctx.write(full.slice(0, cut));
    ctx.req.socket.resetAndDestroy();
  } });
  const mark = mock.requests.length;
  let res;
  try {
    res = await load(N, CONC, (i) => jsonFaultRequest(proxy, t, i));
  } finally {
    mock.clearOverrides();
  }
  const ups = mock.since(mark);
  assert.equal(ups.length, N, 'one upstream request per request (the head had arrived: no retry)');
  const byReqId = new Map(ups.map((u) => [u.requestId, u]));
  await checkExact(proxy, t, start, res.map((r) => r.id), (rec, i) => {
    const r = res[i];
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'the client sees the body cut (Content-Length not reached)');
    const up = byReqId.get(rec.upstream_request_id);
    assert.ok(up, 'the record names its upstream request');
    assert.equal(r.text, up.sent.join(''), 'every byte the upstream sent was relayed, nothing added');
    // The reply's text was relayed whole; its usage was not.
    const content = replyText(up);
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'upstream_error', estimated: true,
      endpoint: i % 2 === 0 ? '/v1/chat/completions' : '/v1/responses', ...estimate(i, content.length) }));
  }, { what: 'reset mid JSON body' });
});

test('3. upstream resets mid-SSE before the usage chunk: truncated stream, no [DONE], estimated from the relayed deltas', async () => {
  mock.config.chat = { ...mock.config.chat, content: CUT_CONTENT };
  const { t, start } = await walletTenant(proxy);
  tenants.push({ t, n: N });
  // 1 role chunk + 2..9 content deltas, then a reset.
  const cutAfter = (n) => 3 + (n % 8);
  mock.override({ path: '/v1/chat/completions', times: Infinity, handle: async (ctx) => {
    await streamFirst(ctx, cutAfter(ctx.rec.n));
    ctx.req.socket.resetAndDestroy();
  } });
  const mark = mock.requests.length;
  let res;
  try {
    res = await load(N, CONC, (i) => send(proxy, t.key, chatBody(i, { stream: true })));
  } finally {
    mock.clearOverrides();
    mock.resetConfig();
  }
  const ups = new Map(mock.since(mark).map((u) => [u.requestId, u]));
  assert.equal(ups.size, N);
  await checkExact(proxy, t, start, res.map((r) => r.id), (rec, i) => {
    const r = res[i];
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'no clean chunked end');
    assert.ok(!r.text.includes('[DONE]'), 'no invented [DONE]');
    const up = ups.get(rec.upstream_request_id);
    assert.equal(r.text, up.sent.join(''), 'exactly the events the upstream sent');
    assert.equal(sseEvents(r.text).events.length, cutAfter(up.n));
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'upstream_error', estimated: true, ...estimate(i, relayedChars(r.text)) }));
    assert.ok(rec.units.output_tokens > 0, 'the relayed text is billed');
  }, { what: 'reset mid SSE' });
});

test('4a. upstream never answers: 504 after limits.upstream_timeout_ms, outcome timeout, cost 0', async () => {
  const { t, start } = await walletTenant(proxy);
  tenants.push({ t, n: N });
  mock.override({ path: '/v1/chat/completions', times: Infinity, handle: hang().handle });
  const mark = mock.requests.length;
  const t0 = Date.now();
  let res;
  try {
    res = await load(N, STALL_CONC, (i) => send(proxy, t.key, chatBody(i)));
  } finally {
    mock.clearOverrides();
  }
  const took = Date.now() - t0;
  for (const r of res) {
    assert.equal(r.status, 504, `504 (${r.error || r.text})`);
    assert.equal(openaiErrorCode(r), 'upstream_timeout');
  }
  const ups = mock.since(mark);
  assert.equal(ups.length, N);
  await waitFor(() => ups.every((u) => u.closed), { timeout: 5000, what: 'every stalled upstream request cancelled' });
  await checkExact(proxy, t, start, res.map((r) => r.id), (rec) => {
    checkRecord(rec, baseExp(t, { status: 504, outcome: 'timeout', estimated: false, units: {}, cost: 0 }));
    assert.ok(rec.duration_ms >= UPSTREAM_TIMEOUT_MS - 50, `cut at the deadline (${rec.duration_ms} ms)`);
  }, { what: 'stall before head' });
  assert.ok(took < 10 * UPSTREAM_TIMEOUT_MS, `bounded (${took} ms)`);
});

test('4b. upstream stops mid-stream: the stream is cut at the deadline, outcome timeout, estimated from the relayed deltas', async () => {
  mock.config.chat = { ...mock.config.chat, content: CUT_CONTENT };
  const { t, start } = await walletTenant(proxy);
  tenants.push({ t, n: N });
  const stallAfter = (n) => 2 + (n % 7);
  mock.override({ path: '/v1/chat/completions', times: Infinity, handle: async (ctx) => {
    await streamFirst(ctx, stallAfter(ctx.rec.n));
    await new Promise((r) => ctx.res.once('close', r));
  } });
  const mark = mock.requests.length;
  let res;
  try {
    res = await load(N, STALL_CONC, (i) => send(proxy, t.key, chatBody(i, { stream: true })));
  } finally {
    mock.clearOverrides();
    mock.resetConfig();
  }
  const ups = new Map(mock.since(mark).map((u) => [u.requestId, u]));
  assert.equal(ups.size, N);
  await waitFor(() => [...ups.values()].every((u) => u.closed), { timeout: 5000, what: 'every stalled upstream request cancelled' });
  await checkExact(proxy, t, start, res.map((r) => r.id), (rec, i) => {
    const r = res[i];
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'the stream is cut, not ended cleanly');
    assert.ok(!r.text.includes('[DONE]'), 'no invented [DONE]');
    const up = ups.get(rec.upstream_request_id);
    assert.equal(r.text, up.sent.join(''));
    assert.equal(sseEvents(r.text).events.length, stallAfter(up.n));
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'timeout', estimated: true, ...estimate(i, relayedChars(r.text)) }));
    assert.ok(rec.duration_ms >= UPSTREAM_TIMEOUT_MS - 50, `cut at the deadline (${rec.duration_ms} ms)`);
  }, { what: 'stall mid stream' });
});

// ---- the process ----------------------------------------------------------------

// Resolves true once a TCP connect to port is refused.
function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => { s.destroy(); resolve(false); });
    s.on('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  });
}

test('5. SIGTERM with N streams in flight: all complete, new connections refused, exit 0, N records, Σ charged == drop', async () => {
  const p = await startProxy({ mockUrl: mock.url });
  tempProxies.push(p);
  mock.config.chat = { prompt_tokens: 1200, completion_tokens: 300, cached_tokens: 200, content: CUT_CONTENT };
  const { t, start } = await walletTenant(p);
  const K = 3;
  let release;
  const gate = new Promise((r) => { release = r; });
  mock.override({ path: '/v1/chat/completions', times: N, handle: async (ctx) => {
    const events = await streamFirst(ctx, K);
    await Promise.race([gate, new Promise((r) => ctx.res.once('close', r))]);
    if (ctx.res.destroyed) return;
    for (const e of events.slice(K)) await ctx.write(e.data);
    await ctx.end();
  } });
  const mark = mock.requests.length;
  const started = [];
  const pending = [];
  try {
    for (let i = 0; i < N; i++) {
      let ok;
      started.push(new Promise((r) => { ok = r; }));
      pending.push(send(p, t.key, chatBody(i, { stream: true }), { onData: (s) => { if (sseEvents(s).events.length >= K) ok(); } }));
    }
    await within(Promise.all(started), 10000, `${N} streams in flight`);
    p.child.kill('SIGTERM');
    await waitFor(() => refused(p.port), { timeout: 5000, interval: 10, what: 'new connections refused after SIGTERM' });
    for (let k = 0; k < 3; k++) assert.equal(await refused(p.port), true, 'still refused while draining');
    const late = await send(p, t.key, chatBody(999));
    assert.equal(late.status, 0);
    assert.match(late.error, /ECONNREFUSED/, 'a new request is refused');
    assert.equal(p.exit, null, 'the proxy waits for its streams');
  } finally {
    release();
    mock.clearOverrides();
  }
  const res = await Promise.all(pending);
  mock.resetConfig();
  const exit = await within(p.exited, 20000, 'exit after the drain');
  assert.equal(exit.code, 0, `exit 0 (${JSON.stringify(exit)})\n${p.logs().slice(-2000)}`);
  const ups = new Map(mock.since(mark).map((u) => [u.requestId, u]));
  assert.equal(ups.size, N);
  for (const r of res) {
    assert.equal(r.status, 200);
    assert.equal(r.complete, true, `the stream completed during the drain (${r.error})`);
    assert.ok(r.text.endsWith('data: [DONE]\n\n'));
  }
  // The store after the exit: read it back through a restart on the same files.
  const again = await startProxy({ dir: p.dir, secrets: p.secrets });
  tempProxies.push(again);
  const units = { input_tokens: 1200, cached_input_tokens: 200, output_tokens: 300 };
  await checkExact(again, t, start, res.map((r) => r.id), (rec) => {
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'ok', estimated: false, units }));
    assert.ok(ups.has(rec.upstream_request_id));
  }, { what: 'SIGTERM drain' });
  assert.equal(await again.stop(), 0);
});

// ---- the store ---------------------------------------------------------------------

// An outside sqlite3 process holding the write lock of the database until
// release() (BEGIN IMMEDIATE: readers go on, every writer waits).
async function lockDatabase(dbPath) {
  const child = spawn('sqlite3', [dbPath], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  child.stdin.write('.timeout 5000\nBEGIN IMMEDIATE;\n.print locked\n');
  await waitFor(() => {
    if (err) throw Object.assign(new Error(`sqlite3: ${err}`), { fatal: true });
    return out.includes('locked');
  }, { timeout: 8000, what: 'the outside write lock' });
  return {
    async release() {
      child.stdin.end('ROLLBACK;\n.quit\n');
      const code = await within(exited, 5000, 'sqlite3 to exit');
      assert.equal(code, 0, `sqlite3 exit (${err})`);
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

function spoolRecords(dir) {
  if (!fs.existsSync(dir)) return [];
  const recs = [];
  for (const f of fs.readdirSync(dir)) {
    if (!/^usage-.*\.jsonl$/.test(f)) continue;
    for (const l of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (l.trim()) recs.push(JSON.parse(l));
  }
  return recs;
}

async function kill9(p) {
  p.child.kill('SIGKILL');
  const exit = await p.exited;
  assert.equal(exit.signal, 'SIGKILL');
}

test('6. store write-locked: the writer spools, kill -9, lock released, restart replays exactly N once; a second restart doubles nothing', async () => {
  mock.config.chat = { prompt_tokens: 900, completion_tokens: 150, cached_tokens: 0, content: ['ok'] };
  const p = await startProxy({ mockUrl: mock.url });
  tempProxies.push(p);
  const { t, start } = await walletTenant(p);
  const units = { input_tokens: 900, output_tokens: 150 };
  const spoolDir = p.config.usage.spool_dir;
  const lock = await lockDatabase(p.config.store.path);
  let res;
  const t0 = Date.now();
  try {
    res = await load(N, CONC, (i) => send(p, t.key, chatBody(i)));
    for (const r of res) assert.equal(r.status, 200, `requests are served while the store is locked (${r.error || r.text})`);
    // The writer waits out SQLite's busy timeout (5 s), then spools.
    await waitFor(() => spoolRecords(spoolDir).length >= N, { timeout: 20000, interval: 50, what: `${N} records spooled` });
    const spooled = spoolRecords(spoolDir);
    assert.equal(spooled.length, N, 'exactly N records spooled');
    assert.deepEqual(spooled.map((r) => r.id).sort(), res.map((r) => r.id).sort(), 'the spool holds each request once');
    assert.ok(spooled.every((r) => r.charged.plan_credits_micros === 0 && r.charged.wallet_micros === 0), 'spooled records are not charged yet');
    assert.equal((await p.admin.usage({ tenant_id: t.tenantId })).length, 0, 'nothing reached the store');
    await kill9(p);
  } finally {
    await lock.release().catch(() => lock.kill());
  }
  const spoolMs = Date.now() - t0;
  // Restart on the same files: the writer replays the spool before serving.
  const p2 = await startProxy({ dir: p.dir, secrets: p.secrets });
  tempProxies.push(p2);
  assert.equal(spoolRecords(spoolDir).length, 0, 'the spool was replayed and removed');
  const expect = (rec) => checkRecord(rec, baseExp(t, { status: 200, outcome: 'ok', estimated: false, units }));
  const f1 = await checkExact(p2, t, start, res.map((r) => r.id), expect, { what: 'spool replay after kill -9' });
  assert.ok(f1.charged > 0);
  assert.equal(await p2.stop(), 0);
  // Once more: nothing doubled.
  const p3 = await startProxy({ dir: p.dir, secrets: p.secrets });
  tempProxies.push(p3);
  const f2 = await checkExact(p3, t, start, res.map((r) => r.id), expect, { what: 'second restart' });
  assert.equal(f2.charged, f1.charged);
  assert.equal(await p3.stop(), 0);
  mock.resetConfig();
  console.log(`fault 6: store locked -> ${N} records spooled and the proxy killed after ${spoolMs} ms`);
});

test('6a. store write-locked, then released while the proxy runs: the writer replays the spool live, exactly once', async () => {
  mock.config.chat = { prompt_tokens: 800, completion_tokens: 90, cached_tokens: 0, content: ['ok'] };
  const p = await startProxy({ mockUrl: mock.url });
  tempProxies.push(p);
  const { t, start } = await walletTenant(p);
  const spoolDir = p.config.usage.spool_dir;
  const lock = await lockDatabase(p.config.store.path);
  let res;
  try {
    res = await load(N, CONC, (i) => send(p, t.key, chatBody(i)));
    for (const r of res) assert.equal(r.status, 200, `served while the store is locked (${r.error || r.text})`);
    await waitFor(() => spoolRecords(spoolDir).length >= N, { timeout: 20000, interval: 50, what: `${N} records spooled` });
    assert.equal(spoolRecords(spoolDir).length, N, 'exactly N records spooled');
  } finally {
    await lock.release().catch(() => lock.kill());
  }
  await waitFor(() => spoolRecords(spoolDir).length === 0, { timeout: 10000, interval: 50, what: 'the spool replayed' });
  // The writer is back on the store: later requests go straight to it.
  const more = await load(6, 3, (i) => send(p, t.key, chatBody(N + i)));
  for (const r of more) assert.equal(r.status, 200, `after the store came back (${r.text})\n${p.logs().slice(-3000)}`);
  const all = [...res, ...more];
  await checkExact(p, t, start, all.map((r) => r.id), (rec) => {
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'ok', estimated: false, units: { input_tokens: 800, output_tokens: 90 } }));
  }, { what: 'spool replayed live' });
  assert.equal(await p.stop(), 0);
  mock.resetConfig();
});

test('6c. an outside sqlite3 reads the database while the proxy runs: later records and charges survive kill -9', async () => {
  mock.config.chat = { prompt_tokens: 600, completion_tokens: 80, cached_tokens: 0, content: ['ok'] };
  const p = await startProxy({ mockUrl: mock.url });
  tempProxies.push(p);
  const { t, start } = await walletTenant(p);
  // An operator looks at the store. Its exit must not take the WAL away
  // from the running proxy (it would if the proxy held no lock on the file).
  const walBefore = fs.statSync(`${p.config.store.path}-wal`).ino;
  const look = spawn('sqlite3', [p.config.store.path, 'SELECT count(*) FROM tenants;'], { stdio: 'ignore' });
  assert.equal(await within(new Promise((r) => look.on('exit', r)), 5000, 'sqlite3 to exit'), 0);
  assert.ok(fs.existsSync(`${p.config.store.path}-wal`), 'the WAL is still there');
  assert.equal(fs.statSync(`${p.config.store.path}-wal`).ino, walBefore, 'the same WAL file');
  const res = await load(N, CONC, (i) => send(p, t.key, chatBody(i)));
  for (const r of res) assert.equal(r.status, 200);
  // Committed (readable through the admin API), then a crash.
  await p.admin.waitRecords(t.tenantId, N);
  await kill9(p);
  const p2 = await startProxy({ dir: p.dir, secrets: p.secrets });
  tempProxies.push(p2);
  await checkExact(p2, t, start, res.map((r) => r.id), (rec) => {
    checkRecord(rec, baseExp(t, { status: 200, outcome: 'ok', estimated: false, units: { input_tokens: 600, output_tokens: 80 } }));
  }, { what: 'outside reader, kill -9' });
  assert.equal(await p2.stop(), 0);
  mock.resetConfig();
});

test('6b. kill -9 under load with the store up: no completed request loses its record (the queue journal)', async () => {
  mock.config.chat = { prompt_tokens: 700, completion_tokens: 120, cached_tokens: 0, content: ['ok'] };
  const p = await startProxy({ mockUrl: mock.url });
  tempProxies.push(p);
  const { t, start } = await walletTenant(p);

  // How long a record waits in memory: from the end of its reply to the
  // moment it can be read from the store (queue + linger + commit).
  const lat = [];
  const warm = [];
  for (let i = 0; i < 10; i++) {
    const r = await send(p, t.key, chatBody(i));
    assert.equal(r.status, 200);
    warm.push(r.id);
    await waitFor(async () => (await p.admin.usage({ tenant_id: t.tenantId, limit: 1 }))[0]?.id === r.id,
      { timeout: 5000, interval: 1, what: 'the record committed' });
    lat.push(Date.now() - r.endedAt);
  }
  lat.sort((a, b) => a - b);

  // Load until well past the kill: 8 at a time, bounded in count.
  const LOAD = 400;
  const KILL_AFTER = 60;
  const done = [];
  let killed = false;
  let killAt = 0;
  const killing = (async () => {
    await waitFor(() => done.length >= KILL_AFTER, { timeout: 20000, interval: 2, what: `${KILL_AFTER} completed requests` });
    killed = true;
    killAt = Date.now();
    await kill9(p);
  })();
  const res = await load(LOAD, 8, async (i) => {
    if (killed) return null;
    const r = await send(p, t.key, chatBody(i), { timeout: 5000 });
    if (r.status === 200 && r.complete) done.push(r);
    return r;
  });
  await killing;
  const completed = done.map((r) => r.id);
  const seen = new Set([...warm, ...res.filter(Boolean).filter((r) => r.id).map((r) => r.id)]);

  const p2 = await startProxy({ dir: p.dir, secrets: p.secrets });
  tempProxies.push(p2);
  const recs = await p2.admin.usage({ tenant_id: t.tenantId, limit: 1000 });
  const ids = new Set(recs.map((r) => r.id));
  assert.equal(ids.size, recs.length, 'no id twice');
  for (const r of recs) {
    checkRecord(r, baseExp(t, { status: 200, outcome: 'ok', estimated: false, units: { input_tokens: 700, output_tokens: 120 } }));
  }
  for (const id of warm) assert.ok(ids.has(id), 'a record committed before the kill survives it');
  const lostReq = done.filter((r) => !ids.has(r.id));
  const lost = lostReq.map((r) => r.id);
  // A record is journaled before its reply leaves the proxy: the records the
  // writer still held at the kill come back at the next start.
  const window = lostReq.length ? killAt - Math.min(...lostReq.map((r) => r.endedAt)) : 0;
  assert.deepEqual(lost, [], `no completed request loses its record (lost ${lost.length}, the oldest ended ${window} ms before the kill)`);
  const keptEnds = done.filter((r) => ids.has(r.id)).map((r) => killAt - r.endedAt);
  const newestKept = keptEnds.length ? Math.min(...keptEnds) : null;
  const beyond = recs.filter((r) => !completed.includes(r.id) && !warm.includes(r.id)).length;
  const unseen = recs.filter((r) => !seen.has(r.id)).length;
  // What is there is charged exactly once: the charge commits with its record.
  const charged = sumCharged(recs);
  const now = balances(await p2.admin.getTenant(t.tenantId));
  assert.equal(charged.plan + charged.wallet, total(start) - total(now), 'Σ charged == balance drop for the records that survived');
  const { lines, broken } = jsonlLines(p.jsonlPath);
  const jsonlMine = lines.filter((x) => x.tenant_id === t.tenantId);
  const notInJsonl = recs.filter((r) => !jsonlMine.some((x) => x.id === r.id)).length;
  assert.ok(jsonlMine.every((x) => ids.has(x.id)), 'every JSONL line is a stored record');
  assert.equal(await p2.stop(), 0);
  mock.resetConfig();
  const median = lat[Math.floor(lat.length / 2)];
  const msg = `kill -9 with the store up: ${completed.length} requests completed (+10 before), ` +
    `${recs.length - 10} of their records after restart; ${lost.length} completed requests lost their record, ` +
    `${beyond} records of requests the client did not see complete (${unseen} without a reply head); ` +
    `the lost ones ended at most ${window} ms before the kill, the newest surviving one ${newestKept} ms before; ` +
    `JSONL: ${notInJsonl} stored records missing, ${broken} broken lines; ` +
    `idle writer, reply end -> readable in the store: median ${median} ms, max ${lat.at(-1)} ms (an admin read cuts the linger short: commit + JSONL write); ` +
    `Σ charged ${charged.plan + charged.wallet} == drop ${total(start) - total(now)}`;
  figures.push(msg);
  console.log(msg);
});

test('faults 1-4: after a graceful stop the JSONL file still holds exactly one line per request', async () => {
  assert.equal(await proxy.stop(), 0);
  const { lines, broken } = jsonlLines(proxy.jsonlPath);
  assert.equal(broken, 0);
  const ids = lines.map((x) => x.id);
  assert.equal(new Set(ids).size, ids.length, 'no id twice');
  for (const { t, n } of tenants) assert.equal(lines.filter((x) => x.tenant_id === t.tenantId).length, n, `tenant ${t.tenantId}`);
});
