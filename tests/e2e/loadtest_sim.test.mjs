// loadtest_sim.test.mjs - the load-test kit against the proxy a newcomer
// starts with scripts/run.sh and no provider key: the shipped config with
// every provider simulated (scripts/simulated-config.sh), so the kit's
// official SDKs meet the simulator through the proxy's real upstream path.
// Every scenario for ~2 s at concurrency 4: exit 0, no errors, and the
// kit's exactness check passes (records = what it did, Σ charged = drop).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy } from './lib/proxy.mjs';
import { startRunShProxy } from './lib/sim.mjs';
import { randomHex } from './lib/util.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const KIT = path.join(ROOT, 'loadtest/run.mjs');
let proxy;
let outDir;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'loadtest/node_modules/openai')),
    'loadtest/node_modules is missing: run `npm ci` in loadtest/ (scripts/test.sh does)');
  // Quick replies: the test measures the kit and the proxy, not waits.
  proxy = await startRunShProxy(startProxy, (cfg) => { cfg.simulate = { ...cfg.simulate, ttfb_ms: 20, tokens_per_s: 0 }; });
  outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-loadtest-sim-'));
});

after(async () => {
  await proxy?.stop();
  proxy?.remove();
  if (outDir) fs.rmSync(outDir, { recursive: true, force: true });
});

function kit(args, timeout = 60000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KIT, ...args], {
      env: { ...process.env, BYOK_ADMIN_TOKEN: proxy.adminToken },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const SCENARIOS = [
  ['chat', ['--stream']],
  ['chat', []],
  ['realtime-call', ['--utterance', '0.5']],
  ['tts-stream', []],
  ['stt-live', ['--utterance', '0.5']],
  ['voice-agent', ['--utterance', '0.5', '--turns', '2']],
];

for (const [scenario, extra] of SCENARIOS) {
  test(`${scenario} ${extra.join(' ')} against the simulated providers: no errors, exactness PASS`, async () => {
    const dir = path.join(outDir, `${scenario}-${randomHex(3)}`);
    const r = await kit(['--scenario', scenario, '--proxy', proxy.url, '--admin', proxy.adminUrl,
      '--concurrency', '4', '--duration', '2', '--report', dir, ...extra]);
    const file = path.join(dir, 'summary.json');
    assert.ok(fs.existsSync(file), `summary.json (exit ${r.code})\n${r.stderr}\n${r.stdout}`);
    const s = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(s.result.errors_total, 0, JSON.stringify(s.result.errors));
    assert.ok(s.result.ops[s.result.primary].ok > 0, `some ${s.result.primary} done`);
    assert.equal(s.exactness.verdict, 'PASS', JSON.stringify(s.exactness.checks, null, 1));
    const f = s.exactness.figures;
    assert.ok(f.records > 0);
    assert.equal(f.charged_micros, f.balance_drop_micros, 'Σ charged = balance drop');
    console.log(`# ${scenario} ${extra.join(' ')}: ${s.result.ops[s.result.primary].ok} ${s.result.primary} ok, ${f.records} records, Σ charged ${f.charged_micros} = drop ${f.balance_drop_micros}`);
  });
}
