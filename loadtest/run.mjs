#!/usr/bin/env node
// run.mjs - the load-test kit's command line: runs one scenario against a
// byok-proxy with the official provider SDKs, shows a live progress line,
// prints a summary table, optionally writes summary.json and report.html,
// and - with admin access - checks the proxy's exactness: the records of
// the run's own tenant against what the run did, and Σ charged against the
// balance drop.
//
// Exit status: 0 = the run passed (errors within --max-error-rate, and
// exactness PASS or not checked); 1 = it did not; 2 = it could not run
// (bad arguments, the proxy or the admin API unreachable).
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Metrics } from './lib/metrics.mjs';
import { runLoad, frameLag } from './lib/runner.mjs';
import { AdminClient, balancesOf } from './lib/admin.mjs';
import { Ledger, settle, check } from './lib/exactness.mjs';
import { textReport, htmlReport } from './lib/report.mjs';
import chat from './scenarios/chat.mjs';
import realtime from './scenarios/realtime.mjs';
import tts from './scenarios/tts.mjs';
import stt from './scenarios/stt.mjs';
import voiceAgent from './scenarios/voice_agent.mjs';

const KIT_VERSION = JSON.parse(fs.readFileSync(new URL('./package.json', import.meta.url), 'utf8')).version || '0';
const SCENARIOS = { chat, 'realtime-call': realtime, 'tts-stream': tts, 'stt-live': stt, 'voice-agent': voiceAgent };

const HELP = `byok-proxy load test: the official provider SDKs through the proxy.

  node loadtest/run.mjs --scenario NAME [options]

Scenarios: ${Object.keys(SCENARIOS).join(', ')}

Target
  --proxy URL             the proxy's data plane (default http://127.0.0.1:8080)
  --proxy-tls URL         its TLS listener (https://…): Realtime then uses the
                          official SDK's OpenAIRealtimeWS, which forces wss
  --ca FILE               CA certificate to trust for --proxy-tls
  --admin URL             the admin API (e.g. http://127.0.0.1:8081): the run
                          creates its own tenant and key and checks exactness
  --admin-token-env NAME  variable holding the admin token (default BYOK_ADMIN_TOKEN)
  --tenant ID             with --admin: use this existing tenant (a new key is made)
  --wallet-micros N       with --admin: the new tenant's wallet (default 100000000 = $100)
  --plan-credits-micros N with --admin: its plan credits (default 0)
  --key-env NAME          without --admin: variable holding a proxy key
  --key KEY               without --admin: a proxy key (visible in ps: prefer --key-env)
  --keep-key              do not revoke the run's proxy key at the end

Load
  --concurrency N         virtual users at once (default 4)
  --duration S            seconds during which iterations start (default 10)
  --ramp S                start the users evenly over the first S seconds (default 0)
  --rate R                start at most R iterations per second in all
  --max-iterations N      stop starting iterations after N
  --call-seconds S        realtime-call, stt-live: length of one call (default: --duration)
  --turns T               chat: requests per conversation (default 5);
                          voice-agent: turns per conversation (default 3)
  --utterance S           seconds of speech before each turn (default 1.5)
  --stream                chat: stream the replies (SSE, include_usage)
  --timeout S             per operation (default 30)

Models
  --model NAME            chat / voice-agent LLM (default gpt-4o-mini)
  --max-tokens N          max_completion_tokens (default 64)
  --realtime-model NAME   default gpt-realtime
  --realtime-client sdk|ws  default sdk with --proxy-tls, else ws
  --stt-model NAME        Deepgram (default nova-3)
  --tts-model NAME        ElevenLabs (default eleven_flash_v2_5)
  --voice ID              ElevenLabs voice (default 21m00Tcm4TlvDq8ikWAM)
  --tts-chars N           tts-stream: characters per session (default 120)

Output
  --report DIR            write DIR/report.html and DIR/summary.json
  --json                  print the summary JSON on stdout instead of the table
  --quiet                 no progress line
  --settle-timeout S      how long to wait for the records (default 30)
  --max-error-rate F      errors / operations allowed for a passing run (default 0)
`;

function fail(msg, code = 2) {
  process.stderr.write(`loadtest: ${msg}\n`);
  process.exit(code);
}

function num(v, name, { min = 0, max = Infinity, int = false } = {}) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    fail(`--${name} must be ${int ? 'an integer' : 'a number'} from ${min} to ${max} (got "${v}")`);
  }
  return n;
}

function parse(argv) {
  let a;
  try {
    a = parseArgs({
      args: argv,
      strict: true,
      options: {
        scenario: { type: 'string' }, proxy: { type: 'string' }, 'proxy-tls': { type: 'string' }, ca: { type: 'string' },
        admin: { type: 'string' }, 'admin-token-env': { type: 'string' }, tenant: { type: 'string' },
        'wallet-micros': { type: 'string' }, 'plan-credits-micros': { type: 'string' },
        key: { type: 'string' }, 'key-env': { type: 'string' }, 'keep-key': { type: 'boolean' },
        concurrency: { type: 'string' }, duration: { type: 'string' }, ramp: { type: 'string' }, rate: { type: 'string' },
        'max-iterations': { type: 'string' }, 'call-seconds': { type: 'string' }, turns: { type: 'string' },
        utterance: { type: 'string' }, stream: { type: 'boolean' }, timeout: { type: 'string' },
        model: { type: 'string' }, 'max-tokens': { type: 'string' }, 'realtime-model': { type: 'string' },
        'realtime-client': { type: 'string' }, 'stt-model': { type: 'string' }, 'tts-model': { type: 'string' },
        voice: { type: 'string' }, 'tts-chars': { type: 'string' },
        report: { type: 'string' }, json: { type: 'boolean' }, quiet: { type: 'boolean' },
        'settle-timeout': { type: 'string' }, 'max-error-rate': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    fail(`${e.message}\n(--help lists the options)`);
  }
  if (a.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (!a.scenario) fail(`--scenario is required: one of ${Object.keys(SCENARIOS).join(', ')}`);
  if (!SCENARIOS[a.scenario]) fail(`unknown scenario "${a.scenario}": one of ${Object.keys(SCENARIOS).join(', ')}`);
  const duration = num(a.duration, 'duration', { min: 0.1, max: 86400 }) ?? 10;
  const o = {
    scenario: a.scenario,
    proxy: (a.proxy || 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    proxyTls: a['proxy-tls'] ? a['proxy-tls'].replace(/\/+$/, '') : null,
    ca: a.ca || null,
    admin: a.admin ? a.admin.replace(/\/+$/, '') : null,
    adminTokenEnv: a['admin-token-env'] || 'BYOK_ADMIN_TOKEN',
    tenant: a.tenant || null,
    walletMicros: num(a['wallet-micros'], 'wallet-micros', { min: 0, max: 1e15, int: true }) ?? 100_000_000,
    planCreditsMicros: num(a['plan-credits-micros'], 'plan-credits-micros', { min: 0, max: 1e15, int: true }) ?? 0,
    key: a.key || null,
    keyEnv: a['key-env'] || null,
    keepKey: Boolean(a['keep-key']),
    concurrency: num(a.concurrency, 'concurrency', { min: 1, max: 20000, int: true }) ?? 4,
    duration,
    ramp: num(a.ramp, 'ramp', { min: 0, max: duration }) ?? 0,
    rate: num(a.rate, 'rate', { min: 0.001, max: 1e6 }) ?? null,
    maxIterations: num(a['max-iterations'], 'max-iterations', { min: 1, max: 1e9, int: true }) ?? Infinity,
    callSeconds: num(a['call-seconds'], 'call-seconds', { min: 0.5, max: 86400 }) ?? Math.max(0.5, duration),
    turns: num(a.turns, 'turns', { min: 1, max: 10000, int: true }) ?? (a.scenario === 'voice-agent' ? 3 : 5),
    utterance: num(a.utterance, 'utterance', { min: 0.1, max: 60 }) ?? 1.5,
    stream: Boolean(a.stream),
    timeout: num(a.timeout, 'timeout', { min: 1, max: 3600 }) ?? 30,
    model: a.model || 'gpt-4o-mini',
    maxTokens: num(a['max-tokens'], 'max-tokens', { min: 1, max: 100000, int: true }) ?? 64,
    realtimeModel: a['realtime-model'] || 'gpt-realtime',
    realtimeClient: a['realtime-client'] || null,
    sttModel: a['stt-model'] || 'nova-3',
    ttsModel: a['tts-model'] || 'eleven_flash_v2_5',
    voice: a.voice || '21m00Tcm4TlvDq8ikWAM',
    ttsChars: num(a['tts-chars'], 'tts-chars', { min: 1, max: 100000, int: true }) ?? 120,
    report: a.report || null,
    json: Boolean(a.json),
    quiet: Boolean(a.quiet),
    settleTimeout: num(a['settle-timeout'], 'settle-timeout', { min: 1, max: 3600 }) ?? 30,
    maxErrorRate: num(a['max-error-rate'], 'max-error-rate', { min: 0, max: 1 }) ?? 0,
  };
  if (['realtime-call', 'stt-live'].includes(o.scenario) && o.utterance > o.callSeconds) {
    fail(`--utterance ${o.utterance} s is longer than a call (--call-seconds ${o.callSeconds} s): no turn would fit`);
  }
  if (o.realtimeClient && !['sdk', 'ws'].includes(o.realtimeClient)) fail('--realtime-client must be sdk or ws');
  if (o.realtimeClient === 'sdk' && !o.proxyTls) fail('--realtime-client sdk needs --proxy-tls https://…: the official SDK forces wss');
  for (const [k, u] of [['proxy', o.proxy], ['proxy-tls', o.proxyTls], ['admin', o.admin]]) {
    if (!u) continue;
    let p;
    try { p = new URL(u); } catch { fail(`--${k} "${u}" is not a URL`); }
    if (k === 'proxy-tls' ? p.protocol !== 'https:' : !/^https?:$/.test(p.protocol)) fail(`--${k} must be an ${k === 'proxy-tls' ? 'https' : 'http(s)'} URL (got "${u}")`);
  }
  if (o.admin && (o.key || o.keyEnv)) fail('give either --admin (the run makes its own key) or --key/--key-env, not both');
  if (!o.admin && !o.key && !o.keyEnv) fail('a proxy key is needed: --admin URL (the run creates a tenant and a key), or --key-env NAME / --key KEY');
  if (o.tenant && !o.admin) fail('--tenant needs --admin');
  return o;
}

// Progress: once a second on stderr; a carriage-return line on a TTY.
function progressPrinter(metrics, quiet) {
  if (quiet) return { tick() {}, done() {} };
  const tty = process.stderr.isTTY;
  const f = (v) => (v === null ? '-' : `${Math.round(v)}ms`);
  return {
    tick() {
      const p = metrics.progress();
      const s = `[${p.elapsedS.toFixed(0).padStart(4)}s] active ${String(p.active).padStart(4)}  ${metrics.primary}/s ${p.rate.toFixed(1).padStart(7)}  ok ${p.ok}  errors ${p.errors}  TTFB p50 ${f(p.p50)} p99 ${f(p.p99)}`;
      if (tty) process.stderr.write(`\r${s}\x1b[K`);
      else process.stderr.write(`${s}\n`);
    },
    done() {
      if (tty) process.stderr.write('\n');
    },
  };
}

// How well the load generator itself kept up. Saturated: its event loop
// was late by 50 ms or more at p99, or an audio frame went out 200 ms or
// more late - then the latencies measured include the generator's own
// delay, and the figures say less about the proxy than they seem to.
function generatorHealth(loop) {
  const p99 = Math.round(loop.percentile(99) / 1e5) / 10;
  const max = Math.round(loop.max / 1e5) / 10;
  const lag = Math.round(frameLag.maxMs * 10) / 10;
  return {
    event_loop_delay_p99_ms: p99,
    event_loop_delay_max_ms: max,
    max_frame_lag_ms: lag,
    saturated: p99 >= 50 || lag >= 200,
    node: process.version,
  };
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const scenario = SCENARIOS[opts.scenario];
  const runId = crypto.randomBytes(3).toString('hex');
  const log = (m) => { if (!opts.quiet) process.stderr.write(`loadtest: ${m}\n`); };

  // The key: the run's own (admin) or the one given.
  let admin = null;
  let tenantId = null;
  let keyId = null;
  let key;
  let before = null;
  if (opts.admin) {
    const token = process.env[opts.adminTokenEnv];
    if (!token) fail(`--admin needs the admin token in the environment variable ${opts.adminTokenEnv} (or name another with --admin-token-env)`);
    admin = new AdminClient(opts.admin, token);
    try {
      if (opts.tenant) {
        await admin.getTenant(opts.tenant);
        tenantId = opts.tenant;
      } else {
        tenantId = `lt-${opts.scenario}-${runId}`;
        await admin.createTenant({
          id: tenantId, name: `loadtest ${opts.scenario} ${new Date().toISOString()}`,
          features: { byok: false, agency: false }, parent_id: null, wallet_deduction: false,
          wallet_micros: opts.walletMicros, plan_credits_micros: opts.planCreditsMicros,
        });
      }
      const k = await admin.createKey(tenantId, `loadtest ${runId}`);
      keyId = k.id;
      key = k.key;
      before = balancesOf(await admin.getTenant(tenantId));
    } catch (e) {
      fail(e.message);
    }
    log(`tenant ${tenantId} (${opts.tenant ? 'existing' : 'created'}), balance ${before.total} µUSD (plan ${before.plan}, wallet ${before.wallet}), key ${keyId}`);
  } else {
    key = opts.key || process.env[opts.keyEnv];
    if (!key) fail(`no proxy key in the environment variable ${opts.keyEnv}`);
  }

  // Is the proxy there at all? (A run against nothing would only count
  // connection errors.)
  try {
    await fetch(`${opts.proxy}/`, { signal: AbortSignal.timeout(5000) }).then((r) => r.arrayBuffer());
  } catch (e) {
    fail(`the proxy at ${opts.proxy} does not answer: ${e.cause?.code || e.cause?.message || e.message} (is it running? is --proxy its data-plane address?)`);
  }

  let ca;
  if (opts.ca) {
    try { ca = fs.readFileSync(opts.ca); } catch (e) { fail(`--ca ${opts.ca}: ${e.message}`); }
  }
  const metrics = new Metrics({ primary: scenario.primary });
  const ledger = new Ledger();
  const sessionSeq = new Map();
  const env = {
    opts,
    metrics,
    ledger,
    key,
    http: opts.proxy,
    ws: opts.proxy.replace(/^http/, 'ws'),
    https: opts.proxyTls,
    ca,
    runId,
    newSession(vu) {
      const n = (sessionSeq.get(vu.id) || 0) + 1;
      sessionSeq.set(vu.id, n);
      return `lt-${runId}-${vu.id}-${n}`;
    },
  };
  const description = scenario.describe(opts, env);
  log(`${opts.scenario}: ${description}; ${opts.concurrency} at once for ${opts.duration} s${opts.ramp ? ` (ramp ${opts.ramp} s)` : ''}${opts.rate ? `, at most ${opts.rate}/s` : ''}`);

  // An admin-run checks exactness against a snapshot taken now: from here
  // on the run owns the tenant's balance.
  if (admin) log('started');
  const startedAt = new Date();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const progress = progressPrinter(metrics, opts.quiet);
  const iterate = scenario.create(env);
  // Ctrl-C once: stop starting, let what runs finish, report (and check)
  // as usual. Twice: leave now.
  const stop = new AbortController();
  process.on('SIGINT', () => {
    if (stop.signal.aborted) process.exit(130);
    log('interrupted: no new iterations; finishing what runs (Ctrl-C again to quit at once)');
    stop.abort();
  });
  const run = await runLoad({
    stop: stop.signal,
    metrics,
    concurrency: opts.concurrency,
    durationS: opts.duration,
    rampS: opts.ramp,
    rate: opts.rate,
    maxIterations: opts.maxIterations,
    maxIterationS: scenario.maxIterationS(opts) + opts.ramp,
    iterate,
    onTick: () => progress.tick(),
  });
  progress.tick();
  progress.done();
  loop.disable();
  const elapsedMs = run.endedAt - run.startedAt;

  // Exactness.
  let exactness;
  if (admin) {
    log('waiting for the records to land');
    try {
      const settled = await settle(admin, tenantId, ledger, { timeoutMs: opts.settleTimeout * 1000, log });
      exactness = { checked: true, ...check(ledger, settled, before) };
    } catch (e) {
      exactness = { checked: true, verdict: 'FAIL', checks: [{ name: 'reading the records', pass: false, detail: e.message }], figures: {} };
    }
    if (!opts.keepKey) {
      try { await admin.revokeKey(tenantId, keyId); } catch (e) { log(`could not revoke the run's key ${keyId}: ${e.message}`); }
    }
  } else {
    exactness = { checked: false, reason: 'no admin access (--admin): the run measured only; records and balances were not compared' };
  }

  const result = metrics.toJSON({ durationMs: elapsedMs });
  let opsTotal = 0;
  for (const o of Object.values(result.ops)) opsTotal += o.count;
  const reasons = [];
  const rate = opsTotal ? result.errors_total / opsTotal : 0;
  if (result.errors_total > 0 && rate > opts.maxErrorRate) reasons.push(`${result.errors_total} error(s) in ${opsTotal} operation(s) (allowed rate ${opts.maxErrorRate})`);
  if (exactness.checked && exactness.verdict !== 'PASS') reasons.push('exactness FAIL');
  if (opsTotal === 0) reasons.push('no operation finished');
  if (run.stopped) reasons.push('interrupted');
  const verdict = reasons.length ? 'FAIL' : 'PASS';
  const summary = {
    tool: 'byok-proxy loadtest',
    kit_version: KIT_VERSION,
    run_id: runId,
    scenario: opts.scenario,
    description,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    elapsed_s: Math.round(elapsedMs / 100) / 10,
    tenant_id: tenantId,
    params: {
      proxy: opts.proxy, proxy_tls: opts.proxyTls, admin: opts.admin, concurrency: opts.concurrency, duration_s: opts.duration,
      ramp_s: opts.ramp, rate: opts.rate, max_iterations: Number.isFinite(opts.maxIterations) ? opts.maxIterations : null,
      call_seconds: ['realtime-call', 'stt-live'].includes(opts.scenario) ? opts.callSeconds : null,
      turns: ['chat', 'voice-agent'].includes(opts.scenario) ? opts.turns : null,
      utterance_s: ['realtime-call', 'stt-live', 'voice-agent'].includes(opts.scenario) ? opts.utterance : null,
      stream: opts.scenario === 'chat' ? opts.stream : null,
      model: ['chat', 'voice-agent'].includes(opts.scenario) ? opts.model : null,
      realtime_model: opts.scenario === 'realtime-call' ? opts.realtimeModel : null,
      stt_model: ['stt-live', 'voice-agent'].includes(opts.scenario) ? opts.sttModel : null,
      tts_model: ['tts-stream', 'voice-agent'].includes(opts.scenario) ? opts.ttsModel : null,
      timeout_s: opts.timeout,
      wallet_micros: admin && !opts.tenant ? opts.walletMicros : null,
      max_error_rate: opts.maxErrorRate,
    },
    result,
    exactness,
    generator: generatorHealth(loop),
    verdict,
    verdict_reasons: reasons,
    exit_code: verdict === 'PASS' ? 0 : 1,
  };

  if (opts.report) {
    fs.mkdirSync(opts.report, { recursive: true });
    fs.writeFileSync(path.join(opts.report, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    fs.writeFileSync(path.join(opts.report, 'report.html'), htmlReport(summary));
    log(`report: ${path.join(opts.report, 'report.html')}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else process.stdout.write(`${textReport(summary)}\n`);
  // SDK keep-alive sockets must not hold the process.
  process.exit(summary.exit_code);
}

main().catch((e) => fail(`${e.stack || e.message}`));
