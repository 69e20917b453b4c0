// loadtest.test.mjs - the load-test kit (loadtest/run.mjs) run as a user
// runs it, as a subprocess, against the real proxy and the mocks
// (lib/loadstack.mjs): every scenario for a couple of seconds at
// concurrency 4 with admin access (exit 0, operations done, no errors,
// exactness PASS: records = what the run did, Σ charged = the balance
// drop), the kit's counts against what the mocks received, runs that must
// fail (a wallet of 1 µUSD: 402s and a socket ended for balance, counted by
// kind; a record the run did not make: exactness FAIL), a run without admin
// access, bad arguments, and the HTML report rendered in headless Chromium
// with a screenshot whose charts are drawn.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startLoadStack } from './lib/loadstack.mjs';
import { freePort, randomHex } from './lib/util.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const KIT = path.join(ROOT, 'loadtest/run.mjs');
const CHROMIUM = process.env.BYOK_CHROMIUM || '/usr/bin/chromium';
let stack;
let outDir;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'loadtest/node_modules/openai')),
    'loadtest/node_modules is missing: run `npm ci` in loadtest/ (scripts/test.sh does)');
  stack = await startLoadStack();
  outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-loadtest-'));
});

after(async () => {
  await stack?.close();
  if (outDir) fs.rmSync(outDir, { recursive: true, force: true });
});

// Runs the kit to its end (killed after `timeout` ms: a hung kit fails the
// test, it does not hold it). onStderr(text so far) may act on progress;
// onSpawn(child) gets the process (to signal it).
function kit(args, { env = {}, timeout = 40000, onStderr, onSpawn } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KIT, ...args], {
      env: { ...process.env, BYOK_ADMIN_TOKEN: stack.adminToken, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (onSpawn) onSpawn(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (onStderr) onStderr(stderr);
    });
    const t = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// A run with admin access writing its report to a fresh directory; returns
// the process result and summary.json.
async function adminRun(scenario, extra = [], opts = {}) {
  const dir = path.join(outDir, `${scenario}-${randomHex(3)}`);
  const r = await kit(['--scenario', scenario, '--proxy', stack.proxyUrl, '--admin', stack.adminUrl,
    '--concurrency', '4', '--report', dir, ...extra], opts);
  const file = path.join(dir, 'summary.json');
  assert.ok(fs.existsSync(file), `summary.json written (exit ${r.code}, ${r.signal || ''})\n${r.stderr}\n${r.stdout}`);
  return { ...r, dir, summary: JSON.parse(fs.readFileSync(file, 'utf8')) };
}

const checkNamed = (s, name) => s.exactness.checks.find((c) => c.name.startsWith(name));

// What every passing run shows: exit 0, the primary operation done, no
// error, every exactness check passed, money exact.
function expectPass(r, { primary, checks }) {
  const s = r.summary;
  const why = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.code, 0, `exit 0\n${why}`);
  assert.equal(s.verdict, 'PASS', why);
  assert.equal(s.result.primary, primary);
  assert.ok(s.result.ops[primary].ok > 0, `some ${primary} done`);
  assert.equal(s.result.errors_total, 0, `no errors: ${JSON.stringify(s.result.errors)}`);
  assert.equal(s.exactness.checked, true);
  assert.equal(s.exactness.verdict, 'PASS', JSON.stringify(s.exactness.checks, null, 1));
  for (const c of s.exactness.checks) assert.ok(c.pass, `${c.name}: ${c.detail}`);
  for (const name of ['each record id once', 'each record charged its cost', 'no record of the tenant that the run did not make', 'Σ charged = balance drop', ...checks]) {
    assert.ok(checkNamed(s, name), `check "${name}" made`);
  }
  const f = s.exactness.figures;
  assert.ok(f.records > 0, 'records written');
  assert.ok(f.charged_micros > 0, 'money moved');
  assert.equal(f.charged_micros, f.balance_drop_micros, 'Σ charged = balance drop');
  assert.equal(f.charged_micros, f.cost_micros, 'every record is a wallet record charged its cost');
  // The table on stdout says the same.
  assert.match(r.stdout, /exactness: PASS/);
  assert.match(r.stdout, /verdict: PASS/);
  return s;
}

test('chat, streamed: records = replies, tokens as the client saw them, Σ charged = drop; the mock saw every request', async () => {
  const mark = stack.mocks.openai.requests.length;
  // --rate bounds the run to ~600 records: the stray-record check (required
  // below) needs the tenant under the admin API's 1000-record page, which an
  // unbounded 2 s run can pass on a fast machine.
  const r = await adminRun('chat', ['--stream', '--duration', '2', '--turns', '3', '--rate', '100']);
  const s = expectPass(r, { primary: 'chat', checks: ['one record per HTTP reply', 'LLM tokens in the records'] });
  const chat = s.result.ops.chat;
  const upstream = stack.mocks.openai.since(mark).filter((q) => q.url.startsWith('/v1/chat/completions'));
  assert.equal(upstream.length, chat.count, 'the kit counted every request the upstream got');
  assert.ok(upstream.every((q) => q.json?.stream === true && q.json?.stream_options?.include_usage === true), 'streamed with include_usage');
  assert.ok(upstream.every((q) => q.headers['x-session-id'] === undefined), 'X-Session-Id is the proxy\'s: not forwarded');
  assert.equal(s.exactness.figures.http_replies, chat.ok);
  assert.equal(s.exactness.figures.records, chat.ok, 'one record per request');
  assert.ok(chat.ttfb_ms.p50 > 0 && chat.ttfb_ms.p99 >= chat.ttfb_ms.p50, 'TTFB percentiles');
  assert.ok(s.result.series.length >= 2 && s.result.series.some((x) => x.done > 0), 'a per-second series');
  // Progress went to stderr, once a second, as plain lines (not a TTY).
  assert.match(r.stderr, /\[\s+1s\] active\s+\d+\s+chat\/s\s+[\d.]+\s+ok \d+\s+errors 0\s+TTFB p50 (\d+ms|-) p99 (\d+ms|-)/);
});

test('chat, not streamed, at --rate 5/s: starts spaced by the rate, the same checks pass', async () => {
  const r = await adminRun('chat', ['--duration', '2', '--rate', '5']);
  const s = expectPass(r, { primary: 'chat', checks: ['one record per HTTP reply', 'LLM tokens in the records'] });
  // Slots every 200 ms from the start, none after 2 s: at most 10.
  assert.ok(s.result.iterations >= 8 && s.result.iterations <= 10, `${s.result.iterations} requests started`);
  assert.ok(s.result.series.every((x) => x.started <= 6), JSON.stringify(s.result.series.map((x) => x.started)));
});

test('realtime-call over the official SDK (wss, TLS listener): one record per response.done, sockets closed with final records', async () => {
  const mark = stack.mocks.realtime.sockets.length;
  const r = await adminRun('realtime-call', ['--duration', '2', '--utterance', '0.5', '--proxy-tls', stack.tlsUrl, '--ca', stack.caFile]);
  const s = expectPass(r, { primary: 'turn', checks: ['every socket closed with its records', 'Realtime: one record per response.done'] });
  assert.match(s.description, /official SDK OpenAIRealtimeWS over wss/);
  const ups = stack.mocks.realtime.socketsSince(mark);
  assert.equal(ups.length, s.result.ops.call.ok, 'one upstream socket per call');
  const responses = ups.reduce((n, u) => n + u.responses.length, 0);
  assert.equal(responses, s.result.ops.turn.ok, 'every response.done the upstream sent was a turn');
  // Audio went up at real time: 2 s calls of 100 ms frames of 24 kHz PCM16.
  for (const u of ups) assert.equal(u.audioAppendedBytes, 20 * 4800, 'the whole call\'s audio appended');
  assert.equal(s.exactness.figures.sockets_opened, 4);
});

test('tts-stream: ElevenLabs stream-input, characters recorded = characters sent', async () => {
  const mark = stack.mocks.elevenlabs.sockets.length;
  const r = await adminRun('tts-stream', ['--duration', '1.5', '--ramp', '1']);
  const s = expectPass(r, { primary: 'tts', checks: ['every socket closed with its records', 'TTS characters in the records'] });
  const ups = stack.mocks.elevenlabs.socketsSince(mark);
  assert.equal(ups.length, s.result.ops.tts.ok, 'one upstream socket per session');
  assert.ok(s.result.ops.tts.bytes_received > 0, 'audio received');
  const sent = ups.reduce((n, u) => n + u.characters, 0);
  // The kit's own count is of code points, billed at half for Flash v2.5
  // (+ the first " " of each socket): the mock's count is of characters.
  assert.match(checkNamed(s, 'TTS characters').detail, /^sent (\d+), recorded \1$/);
  assert.ok(sent > 0);
});

test('stt-live: Deepgram live over the SDK at real time, audio seconds recorded = Metadata durations', async () => {
  const mark = stack.mocks.deepgram.sockets.length;
  const r = await adminRun('stt-live', ['--duration', '2', '--utterance', '0.6']);
  const s = expectPass(r, { primary: 'final', checks: ['every socket closed with its records', 'STT audio seconds in the records'] });
  const ups = stack.mocks.deepgram.socketsSince(mark);
  assert.equal(ups.length, 4);
  const secs = ups.reduce((n, u) => n + u.audioSeconds, 0);
  assert.ok(Math.abs(secs - 8) < 0.2, `4 sessions × 2 s of audio streamed (${secs} s)`);
  assert.ok(ups.every((u) => u.control.filter((c) => c === 'Finalize').length >= 2), 'a Finalize per utterance');
  assert.equal(s.result.ops.final.ok, ups.reduce((n, u) => n + u.control.filter((c) => c === 'Finalize').length, 0), 'a final transcript per Finalize');
  // Socket records every second (usage.ws_interval_s = 1): more than the
  // two final ones per socket, still exactly accounted.
  assert.ok(s.exactness.figures.records > 2 * 4, `interval records too (${s.exactness.figures.records})`);
});

let agentReport;
test('voice-agent: STT → LLM stream → TTS per turn under one session id; stt, llm and tts records all exact', async () => {
  const r = await adminRun('voice-agent', ['--duration', '2', '--turns', '2', '--utterance', '0.6']);
  const s = expectPass(r, {
    primary: 'turn',
    checks: ['one record per HTTP reply', 'every socket closed with its records', 'LLM tokens in the records', 'TTS characters in the records', 'STT audio seconds in the records'],
  });
  for (const op of ['turn', 'stt', 'llm', 'tts', 'conversation']) assert.ok(s.result.ops[op]?.ok > 0, `${op} measured`);
  assert.equal(s.result.ops.turn.ok, s.result.ops.llm.ok);
  assert.equal(s.result.ops.turn.ok, s.result.ops.tts.ok);
  const lines = s.exactness.figures.records_by_line;
  assert.equal(lines.llm, s.result.ops.llm.ok, 'one llm record per turn');
  assert.ok(lines.stt >= s.result.ops.conversation.ok && lines.tts >= s.result.ops.tts.ok && lines.platform > 0, JSON.stringify(lines));
  agentReport = r.dir;
});

test('the HTML report renders in headless Chromium: charts drawn, verdicts shown, no key; a screenshot is saved', { timeout: 60000 }, async () => {
  assert.ok(agentReport, 'the voice-agent run wrote a report');
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium package (scripts/setup.sh --test does)`);
  const html = fs.readFileSync(path.join(agentReport, 'report.html'), 'utf8');
  assert.ok(!/https?:\/\/(?!127\.0\.0\.1)[a-z]/i.test(html.replace(/xmlns="[^"]*"/g, '')), 'no reference to anything off this machine');
  assert.ok(!html.includes(stack.adminToken), 'no admin token in the report');
  assert.ok(!/bpk_[A-Za-z0-9]/.test(html), 'no proxy key in the report');
  const { chromium } = createRequire(path.join(ROOT, 'loadtest/package.json'))('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests = [];
    page.on('request', (q) => requests.push(q.url()));
    await page.goto(`file://${path.join(agentReport, 'report.html')}`);
    assert.deepEqual(requests.filter((u) => !u.startsWith('file://')), [], 'the page fetches nothing');
    const dom = await page.evaluate(() => ({
      charts: document.querySelectorAll('svg.chart').length,
      latencyLines: [...document.querySelectorAll('#latency path.line')].map((p) => ({ s: p.dataset.series, d: p.getAttribute('d').length })),
      latencyPoints: document.querySelectorAll('#latency circle.pt').length,
      bars: document.querySelectorAll('#throughput rect.bar').length,
      activeArea: document.querySelectorAll('#active path.area').length,
      opBars: document.querySelectorAll('#byop rect.bar').length,
      rows: document.querySelectorAll('#summary tr').length,
      verdicts: [...document.querySelectorAll('.badge')].map((b) => b.textContent),
      checks: document.querySelectorAll('#exactness li').length,
      width: document.documentElement.scrollWidth,
    }));
    assert.equal(dom.charts, 4, 'four charts');
    for (const s of ['TTFB p50', 'TTFB p95', 'TTFB p99']) {
      assert.ok(dom.latencyLines.some((l) => l.s === s && l.d > 10), `the ${s} line is drawn: ${JSON.stringify(dom.latencyLines)}`);
    }
    assert.ok(dom.latencyPoints >= 6, 'latency points');
    assert.ok(dom.bars >= 2, 'throughput bars');
    assert.equal(dom.activeArea >= 1, true, 'active sessions area');
    assert.ok(dom.opBars >= 8, 'a p50 and a p95 bar per operation');
    assert.equal(dom.rows, 6, 'header + five operations in the table');
    assert.ok(dom.verdicts.some((v) => v.startsWith('Run PASS')) && dom.verdicts.some((v) => v.startsWith('Exactness PASS')), dom.verdicts.join(' | '));
    assert.ok(dom.checks >= 8, 'the exactness checks listed');
    assert.ok(dom.width <= 1280, 'no horizontal scrolling at 1280 px');
    // The screenshot: next to the binary under test (build/loadtest-report/)
    // for a person to look at, else in the temp dir.
    const shotDir = process.env.BYOK_PROXY_BIN ? path.join(path.dirname(path.resolve(process.env.BYOK_PROXY_BIN)), 'loadtest-report') : outDir;
    fs.mkdirSync(shotDir, { recursive: true });
    fs.copyFileSync(path.join(agentReport, 'report.html'), path.join(shotDir, 'report.html'));
    const png = path.join(shotDir, 'report.png');
    await page.screenshot({ path: png, fullPage: true });
    const buf = fs.readFileSync(png);
    assert.equal(buf.subarray(1, 4).toString('latin1'), 'PNG');
    const w = buf.readUInt32BE(16);
    const h = buf.readUInt32BE(20);
    assert.ok(w === 1280 && h > 1500, `a full page (${w}×${h})`);
    assert.ok(buf.length > 60000, `a non-trivial image (${buf.length} bytes)`);
    console.log(`# report screenshot: ${png} (${w}×${h}, ${buf.length} bytes)`);
  } finally {
    await browser.close();
  }
});

test('a wallet of 1 µUSD: the 402s are counted by kind, the run fails, the records are still exact', async () => {
  const r = await adminRun('chat', ['--duration', '1.5', '--wallet-micros', '1']);
  const s = r.summary;
  assert.equal(r.code, 1, `exit 1\n${r.stdout}`);
  assert.equal(s.verdict, 'FAIL');
  const e402 = s.result.errors.find((e) => e.kind === 'http 402 insufficient_balance');
  assert.ok(e402 && e402.count > 0, `402s counted by kind: ${JSON.stringify(s.result.errors)}`);
  assert.equal(e402.count, s.result.ops.chat.errors);
  assert.ok(s.result.ops.chat.ok >= 1 && s.result.ops.chat.ok <= 4, `the first requests are admitted, no more (${s.result.ops.chat.ok})`);
  assert.equal(s.exactness.verdict, 'PASS', 'refused requests wrote no record; the admitted ones did');
  assert.equal(s.exactness.figures.records, s.result.ops.chat.ok);
  assert.equal(s.exactness.figures.charged_micros, s.exactness.figures.balance_drop_micros);
  assert.match(r.stdout, /http 402 insufficient_balance/);
  assert.match(r.stdout, /verdict: FAIL - \d+ error\(s\)/);
});

test('a Realtime call whose wallet runs dry: ended with close 1008, others refused 402 at the upgrade, counted by kind', async () => {
  const r = await adminRun('realtime-call', ['--duration', '1.5', '--utterance', '0.3', '--wallet-micros', '1']);
  const s = r.summary;
  assert.equal(r.code, 1);
  const kinds = Object.fromEntries(s.result.errors.map((e) => [e.kind, e.count]));
  assert.ok(kinds['ws close 1008 insufficient_balance'] >= 1, JSON.stringify(kinds));
  assert.equal((kinds['ws upgrade 402'] || 0) + (kinds['ws close 1008 insufficient_balance'] || 0), s.result.errors_total, JSON.stringify(kinds));
  assert.equal(s.exactness.verdict, 'PASS', JSON.stringify(s.exactness.checks, null, 1));
  assert.ok(s.exactness.figures.sockets_opened >= 1);
});

test('a record the run did not make: exactness FAIL, naming it, and Σ charged ≠ drop', async () => {
  // The run's tenant, given; a second key of it makes one request while
  // the run is going (after its balance snapshot: the "started" line).
  const tenant = `lt-test-${randomHex(4)}`;
  await stack.proxy.admin.createTenant({ id: tenant, name: tenant, wallet_micros: 50_000_000 });
  const other = await stack.proxy.admin.createKey(tenant, 'not the kit');
  let started;
  const startedSeen = new Promise((resolve) => { started = resolve; });
  // At most ~200 records (--rate): the stray-record check needs the
  // tenant under the admin API's 1000-record page.
  const run = adminRun('chat', ['--duration', '2', '--rate', '100', '--tenant', tenant], {
    onStderr: (t) => { if (t.includes('loadtest: started')) started(); },
  });
  await startedSeen;
  const sdk = new OpenAI({ apiKey: other.key, baseURL: `${stack.proxyUrl}/v1`, maxRetries: 0 });
  const extra = await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'not part of the run' }] }).withResponse();
  const extraId = extra.response.headers.get('x-proxy-request-id');
  const r = await run;
  const s = r.summary;
  assert.equal(r.code, 1, r.stdout);
  assert.equal(s.exactness.verdict, 'FAIL');
  const stray = checkNamed(s, 'no record of the tenant that the run did not make');
  assert.equal(stray.pass, false);
  assert.match(stray.detail, new RegExp(`1 record\\(s\\) of other sessions, e\\.g\\. ${extraId}`));
  const money = checkNamed(s, 'Σ charged = balance drop');
  assert.equal(money.pass, false);
  assert.ok(s.exactness.figures.balance_drop_micros > s.exactness.figures.charged_micros, 'the drop includes what the stray record charged');
  assert.equal(checkNamed(s, 'one record per HTTP reply').pass, true, 'the run\'s own records are all there');
  assert.match(r.stdout, /exactness: FAIL/);
  assert.match(r.stdout, /FAIL {2}no record of the tenant that the run did not make/);
});

test('without admin access: measures only, says exactness was not checked', async () => {
  const t = `lt-key-${randomHex(4)}`;
  await stack.proxy.admin.createTenant({ id: t, name: t, wallet_micros: 10_000_000 });
  const k = await stack.proxy.admin.createKey(t, 'key-env');
  const dir = path.join(outDir, 'nokey');
  const r = await kit(['--scenario', 'chat', '--proxy', stack.proxyUrl, '--key-env', 'LT_PROXY_KEY', '--concurrency', '2', '--duration', '1', '--report', dir, '--json'],
    { env: { LT_PROXY_KEY: k.key, BYOK_ADMIN_TOKEN: '' } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const s = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual(JSON.parse(r.stdout), s, '--json prints the summary on stdout');
  assert.equal(s.exactness.checked, false);
  assert.match(s.exactness.reason, /no admin access/);
  assert.match(fs.readFileSync(path.join(dir, 'report.html'), 'utf8'), /Exactness not checked/);
  assert.ok(s.result.ops.chat.ok > 0);
  assert.ok(!fs.readFileSync(path.join(dir, 'summary.json'), 'utf8').includes(k.key), 'the key is not in the summary');
  assert.ok(!r.stdout.includes(k.key) && !r.stderr.includes(k.key), 'nor in the output');
});

test('bad arguments: exit 2 with a message that says what to do', async () => {
  const cases = [
    [['--scenario', 'nope'], /unknown scenario "nope": one of chat, realtime-call, tts-stream, stt-live, voice-agent/],
    [['--scenario', 'chat', '--concurrency', '0', '--key', 'x'], /--concurrency must be an integer from 1 to 20000/],
    [['--scenario', 'chat'], /a proxy key is needed: --admin URL/],
    [['--scenario', 'chat', '--admin', 'http://127.0.0.1:1', '--admin-token-env', 'LT_NO_SUCH_VAR'], /admin token in the environment variable LT_NO_SUCH_VAR/],
    [['--scenario', 'realtime-call', '--key', 'x', '--realtime-client', 'sdk'], /needs --proxy-tls/],
    [['--scenario', 'stt-live', '--key', 'x', '--call-seconds', '1', '--utterance', '2'], /no turn would fit/],
  ];
  for (const [args, re] of cases) {
    const r = await kit(args, { env: { LT_NO_SUCH_VAR: '' } });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const closed = await freePort(); // nothing listens there
  const down = await kit(['--scenario', 'chat', '--proxy', `http://127.0.0.1:${closed}`, '--key', 'x']);
  assert.equal(down.code, 2);
  assert.match(down.stderr, new RegExp(`the proxy at http://127\\.0\\.0\\.1:${closed} does not answer: ECONNREFUSED`));
});

test('Ctrl-C: no new iterations, the calls in progress end cleanly, the report and the exactness check still come', async () => {
  // Calls of 30 s over the raw ws client (no --proxy-tls); SIGINT once the
  // first progress line shows them open.
  let child;
  let interrupted = false;
  const r = await adminRun('realtime-call', ['--duration', '30', '--utterance', '0.4', '--concurrency', '3'], {
    onStderr: (t) => {
      if (!interrupted && /\[\s+\d+s\] active\s+3 /.test(t)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    },
    onSpawn: (c) => { child = c; },
    timeout: 25000,
  });
  const s = r.summary;
  assert.ok(interrupted, 'the run was interrupted');
  assert.equal(r.code, 1, r.stdout);
  assert.deepEqual(s.verdict_reasons, ['interrupted']);
  assert.ok(s.elapsed_s < 15, `it ended early (${s.elapsed_s} s)`);
  assert.equal(s.result.errors_total, 0, JSON.stringify(s.result.errors));
  assert.equal(s.result.ops.call.ok, 3, 'the three calls ended cleanly');
  assert.equal(s.exactness.verdict, 'PASS', JSON.stringify(s.exactness.checks, null, 1));
  assert.match(r.stderr, /interrupted: no new iterations/);
});
