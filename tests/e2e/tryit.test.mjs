// tryit.test.mjs - the README's first command and its "Try it", as a
// newcomer runs them on a machine with no provider account: the config
// scripts/run.sh starts when OPENAI_API_KEY is not set
// (scripts/simulated-config.sh over the shipped config/byok-proxy.json:
// every provider simulated), then the walkthrough's steps with curl and the
// official openai SDK (examples/chat.mjs): a tenant, a proxy key, a chat
// completion, the SDK's reply and stream, the records and the balance.
// Only the listen ports and the store's paths differ from what run.sh
// starts (a test never takes the fixed ports 8080/8081).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy } from './lib/proxy.mjs';
import { startRunShProxy } from './lib/sim.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let proxy;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'examples/node_modules/openai')),
    'examples/node_modules is missing: run `npm ci` in examples/ (scripts/test.sh does)');
  proxy = await startRunShProxy(startProxy);
});

after(async () => {
  await proxy?.stop();
  proxy?.remove();
});

// The README's curl lines, with its ADMIN and AUTH.
function curl(...args) {
  const r = spawnSync('curl', ['-s', '--max-time', '20', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('run.sh with no provider key says it simulates, and starts on the shipped config with every provider simulated', () => {
  const logs = proxy.logs();
  for (const up of ['openai', 'elevenlabs', 'azure_speech_tts', 'azure_speech_stt', 'deepgram', 'anthropic', 'cartesia', 'deepseek']) {
    assert.match(logs, new RegExp(`simulate: upstream ${up} is simulated at http://127\\.0\\.0\\.1:\\d+`), up);
  }
  const run = fs.readFileSync(path.join(ROOT, 'scripts/run.sh'), 'utf8');
  assert.match(run, /every provider is SIMULATED/);
  assert.match(run, /scripts\/simulated-config\.sh config\/byok-proxy\.json/);
});

test('Try it: tenant, key, curl, the openai SDK, records and balance', () => {
  const ADMIN = proxy.adminUrl;
  const AUTH = `Authorization: Bearer ${proxy.adminToken}`;
  const json = ['-H', 'Content-Type: application/json'];
  const tenant = JSON.parse(curl('-XPOST', `${ADMIN}/admin/tenants`, '-H', AUTH, ...json,
    '-d', '{"id":"acme","name":"Acme","wallet_micros":5000000}'));
  assert.equal(tenant.wallet_micros, 5000000);
  const key = JSON.parse(curl('-XPOST', `${ADMIN}/admin/tenants/acme/keys`, '-H', AUTH, ...json,
    '-d', '{"label":"voice-bot"}'));
  assert.match(key.key, /^bpk_/);

  // curl, the data plane.
  const chat = JSON.parse(curl(`${proxy.url}/v1/chat/completions`, '-H', `Authorization: Bearer ${key.key}`, ...json,
    '-d', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'));
  assert.equal(chat.object, 'chat.completion');
  assert.ok(chat.choices[0].message.content.length > 0);
  assert.equal(chat.usage.completion_tokens, 24);

  // The official SDK (examples/chat.mjs), base URL and key changed only.
  const sdk = spawnSync(process.execPath, [path.join(ROOT, 'examples/chat.mjs')], {
    encoding: 'utf8', timeout: 30000,
    env: { ...process.env, PROXY_KEY: key.key, PROXY_URL: `${proxy.url}/v1` },
  });
  assert.equal(sdk.status, 0, sdk.stderr + sdk.stdout);
  assert.match(sdk.stdout, /^reply: {2}\S.+$/m);
  assert.match(sdk.stdout, /^billed: wallet, record [0-9A-Z]{26}$/m);
  assert.match(sdk.stdout, /^stream: \S.+$/m);
  const usages = [...sdk.stdout.matchAll(/^usage: {2}(\{.*\})$/gm)].map((m) => JSON.parse(m[1]));
  assert.equal(usages.length, 2);
  for (const u of usages) assert.equal(u.completion_tokens, 24);

  // What it cost: three records, marked simulated, charged (the demo
  // config charges simulated lines), and the balance moved by as much.
  const usage = JSON.parse(curl(`${ADMIN}/admin/usage?tenant_id=acme&limit=10`, '-H', AUTH));
  const recs = usage.records;
  assert.equal(recs.length, 3);
  let charged = 0;
  for (const r of recs) {
    assert.equal(r.simulated, true);
    assert.equal(r.line, 'llm');
    assert.equal(r.billed_to, 'wallet');
    assert.ok(r.cost_micros > 0);
    assert.equal(r.charged.wallet_micros + r.charged.plan_credits_micros, r.cost_micros);
    charged += r.cost_micros;
  }
  const after = JSON.parse(curl(`${ADMIN}/admin/tenants/acme`, '-H', AUTH));
  assert.equal(after.wallet_micros, 5000000 - charged);
  assert.equal(after.held_micros, 0);
  console.log(`# Try it: 3 records, Σ charged ${charged} micro-USD, wallet 5000000 → ${after.wallet_micros}`);
});
