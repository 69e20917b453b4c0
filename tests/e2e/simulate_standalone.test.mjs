// simulate_standalone.test.mjs - build/byok-sim on its own (README
// "Simulated providers"): started with a config file or flags, its printed
// URLs answered with curl-like fetches, its keys checked, its faults
// repeatable for a seed, a proxy pointed at it with "simulate:<URL>"
// (records marked simulated), and the config errors of both binaries.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { startProxy, newTenant, runBinary, balances } from './lib/proxy.mjs';
import { simBin, startSim, SIM_PRICES } from './lib/sim.mjs';
import { freePort } from './lib/util.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-sim-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeConfig(name, obj) {
  const p = path.join(dir, name);
  fs.writeFileSync(p, JSON.stringify(obj));
  return p;
}

const chatBody = (content) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

async function chat(url, headers = { authorization: 'Bearer sk-anything' }, path_ = '/v1/chat/completions') {
  return fetch(`${url}${path_}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: chatBody('hello sim') });
}

test('byok-sim --config: prints a URL per upstream; each speaks its provider and wants its key', async () => {
  const cfg = writeConfig('sim.json', {
    upstreams: ['openai', 'anthropic', 'deepseek'],
    simulate: { seed: 9, reply_tokens: 4 },
  });
  const sim = await startSim(['--config', cfg]);
  try {
    assert.deepEqual(Object.keys(sim.urls), ['openai', 'anthropic', 'deepseek']);
    assert.equal(sim.seed, 9);
    let r = await chat(sim.urls.openai);
    assert.equal(r.status, 200);
    const j = await r.json();
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.choices[0].message.content.split(' ').length, 4);
    assert.deepEqual([j.usage.prompt_tokens, j.usage.completion_tokens], [2, 4]);
    r = await chat(sim.urls.openai, {});
    assert.equal(r.status, 401, 'no key: OpenAI\'s 401');
    assert.equal((await r.json()).error.type, 'invalid_request_error');
    r = await fetch(`${sim.urls.anthropic}/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': 'k', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-5-5', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).usage.output_tokens, 2);
    assert.match(r.headers.get('request-id'), /^req_/);
    r = await fetch(`${sim.urls.anthropic}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.type, 'authentication_error');
    r = await chat(sim.urls.deepseek, { authorization: 'Bearer k' }, '/chat/completions');
    assert.equal(r.status, 200);
    assert.equal((await r.json()).usage.prompt_cache_miss_tokens, 2);
    // curl, as an operator would.
    const curl = spawnSync('curl', ['-s', '-H', 'Authorization: Bearer k', `${sim.urls.openai}/v1/models`], { encoding: 'utf8' });
    if (curl.error?.code !== 'ENOENT') {
      assert.equal(curl.status, 0, curl.stderr);
      assert.equal(JSON.parse(curl.stdout).object, 'list');
    }
  } finally {
    assert.equal(await sim.stop(), 0, 'exits 0 on SIGTERM');
  }
});

test('byok-sim flags: --listen, --listen-base, --upstreams, --ttfb-ms', async () => {
  const port = await freePort();
  let sim = await startSim(['--upstreams', 'anthropic', '--listen', `anthropic=127.0.0.1:${port}`]);
  assert.deepEqual(sim.urls, { anthropic: `http://127.0.0.1:${port}` });
  await sim.stop();
  const base = await freePort();
  sim = await startSim(['--upstreams', 'openai', '--listen-base', `127.0.0.1:${base}`, '--ttfb-ms', '150']);
  try {
    assert.deepEqual(sim.urls, { openai: `http://127.0.0.1:${base}` });
    const t0 = performance.now();
    const r = await chat(sim.urls.openai);
    const ms = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.ok(ms >= 150, `answered after ${ms.toFixed(1)} ms with --ttfb-ms 150`);
  } finally {
    assert.equal(await sim.stop(), 0, sim.logs());
  }
});

// The status of 24 requests to a simulator with a 50% 429 rate.
async function faults(seed) {
  const cfg = writeConfig(`faults-${seed}.json`, {
    upstreams: ['deepseek'], simulate: { seed, errors: { 429: 0.5 } },
  });
  const sim = await startSim(['--config', cfg]);
  try {
    const out = [];
    for (let i = 0; i < 24; i++) {
      const r = await chat(sim.urls.deepseek, { authorization: 'Bearer k' }, '/chat/completions');
      await r.arrayBuffer();
      out.push(r.status);
    }
    return out.join(',');
  } finally {
    await sim.stop();
  }
}

test('faults repeat for a seed and differ for another', async () => {
  const a = await faults(42);
  const b = await faults(42);
  const c = await faults(43);
  assert.equal(a, b, 'seed 42 twice: the same statuses in the same order');
  assert.notEqual(a, c, 'seed 43: another sequence');
  assert.ok(a.includes('429') && a.includes('200'), `a 50% rate gives both: ${a}`);
});

test('a proxy pointed at byok-sim with "simulate:<URL>": placeholder key, records simulated, nothing charged', async () => {
  const sim = await startSim(['--upstreams', 'openai', '--reply-tokens', '3']);
  const proxy = await startProxy({
    patch: (cfg) => {
      cfg.upstreams = { openai: `simulate:${sim.urls.openai}` };
      delete cfg.platform_keys;
      cfg.pricing = SIM_PRICES;
    },
    env: { OPENAI_API_KEY: undefined },
  });
  try {
    const t = await newTenant(proxy, { wallet: 1000 });
    const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'via the proxy' }] });
    assert.equal(r.usage.completion_tokens, 3);
    const [rec] = await proxy.admin.waitRecords(t.tenantId, 1);
    assert.equal(rec.simulated, true);
    assert.deepEqual([rec.units.input_tokens, rec.units.output_tokens], [3, 3]);
    assert.ok(rec.cost_micros > 0);
    assert.deepEqual(rec.charged, { plan_credits_micros: 0, wallet_micros: 0 });
    assert.deepEqual(balances(await proxy.admin.getTenant(t.tenantId)), { plan: 0, wallet: 1000 });
  } finally {
    assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
    proxy.remove();
    assert.equal(await sim.stop(), 0, sim.logs());
  }
});

// The list of simulated upstreams a refusal names: what is simulated, not
// the refused one.
function assertSimulatedList(list) {
  const names = list.split(', ');
  for (const u of ['openai', 'anthropic', 'deepseek', 'elevenlabs', 'cartesia', 'azure_speech_tts', 'azure_speech_stt', 'deepgram']) {
    assert.ok(names.includes(u), `${u} in "${list}"`);
  }
}

test('config errors name the key: byok-sim and byok-proxy --check-config', () => {
  const bad = writeConfig('bad.json', { simulate: { errors: { 429: 2 } } });
  let r = spawnSync(simBin(), ['--config', bad], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /simulate\.errors\.429: 2 is out of range \(0\.\.1\)/);
  // An upstream the simulator does not speak (every real one is simulated
  // now: a name that is none of them).
  r = spawnSync(simBin(), ['--upstreams', 'nope'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  const speaks = /simulate nope: not simulated yet \(the simulator speaks: ([a-z_, ]+)\)/.exec(r.stderr);
  assert.ok(speaks, r.stderr);
  assertSimulatedList(speaks[1]);
  r = spawnSync(simBin(), ['--bogus'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 2);

  // Every upstream "simulate": the proxy accepts it (each has its simulator).
  const all = Object.fromEntries(['openai', 'elevenlabs', 'azure_speech_tts', 'azure_speech_stt', 'deepgram',
    'anthropic', 'cartesia', 'deepseek'].map((u) => [u, 'simulate']));
  const cfg = writeConfig('proxy.json', { upstreams: all, store: { backend: 'sqlite', path: path.join(dir, 'x.db') } });
  return runBinary(['--config', cfg, '--check-config']).then((res) => {
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout + res.stderr, /is valid/);
  });
});
