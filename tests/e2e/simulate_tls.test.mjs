// simulate_tls.test.mjs - simulate.tls (README "Simulated providers"): the
// simulator serves https:// and wss:// with an ephemeral self-signed
// certificate, so a load test measures the proxy's upstream path with TLS
// as production runs it. In the proxy ("upstreams": "simulate"): the
// official OpenAI SDK (stream) and an ElevenLabs stream-input socket work
// through it, records simulated; the log names https:// URLs and the sim
// port refuses plain HTTP. Standalone (byok-sim --tls --cert-out): a proxy
// with "simulate:https://..." and upstream_ca_file = that file works, and
// without it refuses with the provider's 502 (its log: certificate problem):
// verification is on.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { startProxy, newTenant } from './lib/proxy.mjs';
import { inProcessUrls, startSim, SIM_PRICES } from './lib/sim.mjs';
import { VOICE_PRICES } from './lib/providers.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-sim-tls-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const words = (s) => s.split(/\s+/).filter(Boolean).length;

async function streamChat(proxy, key) {
  const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20000 });
  const stream = await openai.chat.completions.create({
    model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'over tls please' }],
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.delta?.content ?? '';
  }
  return { text, usage };
}

async function stopClean(proxy) {
  if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
  proxy?.remove();
}

describe('simulate.tls in the proxy', () => {
  let proxy;
  before(async () => {
    proxy = await startProxy({
      env: { OPENAI_API_KEY: undefined },
      patch: (cfg) => {
        cfg.upstreams = { openai: 'simulate', elevenlabs: 'simulate' };
        delete cfg.platform_keys;
        cfg.pricing = { openai: SIM_PRICES.openai, elevenlabs: VOICE_PRICES.elevenlabs };
        cfg.simulate = { tls: true, seed: 5, reply_tokens: 6 };
      },
    });
  });
  after(async () => { await stopClean(proxy); });

  test('the simulated upstreams are https://, and their ports speak only TLS', async () => {
    const urls = inProcessUrls(proxy);
    assert.deepEqual(Object.keys(urls).sort(), ['elevenlabs', 'openai']);
    for (const u of Object.values(urls)) assert.match(u, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(proxy.logs(), /simulate: TLS on/);
    // Plain HTTP to the sim's port: no answer (the TLS listener drops it).
    const plain = urls.openai.replace('https://', 'http://');
    await assert.rejects(fetch(`${plain}/v1/models`, { headers: { authorization: 'Bearer k' } }));
    // Node's default trust store does not know the ephemeral certificate.
    await assert.rejects(fetch(`${urls.openai}/v1/models`, { headers: { authorization: 'Bearer k' } }),
      (e) => /SELF_SIGNED|CERT/.test(String(e.cause?.code)));
  });

  test('OpenAI SDK chat stream through the proxy over TLS; the record is simulated', async () => {
    const t = await newTenant(proxy);
    const { text, usage } = await streamChat(proxy, t.key);
    assert.equal(words(text), 6);
    assert.deepEqual([usage.prompt_tokens, usage.completion_tokens], [3, 6]);
    const [rec] = await proxy.admin.waitRecords(t.tenantId, 1);
    assert.equal(rec.simulated, true);
    assert.equal(rec.status, 200);
    assert.equal(rec.outcome, 'ok');
    assert.deepEqual([rec.units.input_tokens, rec.units.output_tokens], [3, 6]);
  });

  test('ElevenLabs stream-input socket through the proxy (wss:// upstream); the record is simulated', async () => {
    const t = await newTenant(proxy);
    const url = `ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input?model_id=eleven_multilingual_v2&output_format=pcm_16000`;
    const ws = new WebSocket(url, [], { headers: { 'xi-api-key': t.key }, perMessageDeflate: false });
    const got = [];
    ws.on('message', (m) => got.push(JSON.parse(m.toString())));
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send(JSON.stringify({ text: ' ', generation_config: { chunk_length_schedule: [50] } }));
    ws.send(JSON.stringify({ text: 'Hello over TLS.' }));
    ws.send(JSON.stringify({ text: '' }));
    assert.equal(await closed, 1000, 'a normal close');
    assert.ok(got.some((m) => typeof m.audio === 'string' && m.audio.length > 0), 'audio came');
    assert.deepEqual(got.at(-1), { isFinal: true });
    const recs = await proxy.admin.waitRecords(t.tenantId, 1);
    const rec = recs.find((r) => r.line === 'tts');
    assert.ok(rec, JSON.stringify(recs));
    assert.equal(rec.simulated, true);
    assert.equal(rec.provider, 'elevenlabs');
    assert.equal(rec.units.characters, [...' Hello over TLS.'].length);
  });
});

describe('standalone byok-sim --tls', () => {
  let sim;
  const certFile = path.join(dir, 'sim-ca.pem');
  before(async () => { sim = await startSim(['--tls', '--cert-out', certFile, '--upstreams', 'openai', '--reply-tokens', '4']); });
  after(async () => { if (sim) assert.equal(await sim.stop(), 0, sim.logs()); });

  test('prints an https URL and the certificate file', () => {
    assert.match(sim.urls.openai, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(sim.ca, certFile);
    assert.match(fs.readFileSync(certFile, 'utf8'), /^-----BEGIN CERTIFICATE-----/);
  });

  test('a proxy on "simulate:https://..." with upstream_ca_file = that file works', async () => {
    const proxy = await startProxy({
      env: { OPENAI_API_KEY: undefined },
      patch: (cfg) => {
        cfg.upstreams = { openai: `simulate:${sim.urls.openai}` };
        cfg.upstream_ca_file = certFile;
        delete cfg.platform_keys;
        cfg.pricing = SIM_PRICES;
      },
    });
    try {
      const t = await newTenant(proxy);
      const { text, usage } = await streamChat(proxy, t.key);
      assert.equal(words(text), 4);
      assert.equal(usage.completion_tokens, 4);
      const [rec] = await proxy.admin.waitRecords(t.tenantId, 1);
      assert.equal(rec.simulated, true);
      assert.equal(rec.status, 200);
    } finally {
      await stopClean(proxy);
    }
  });

  test('without the CA the proxy refuses: 502 in OpenAI\'s shape, certificate not verified', async () => {
    const proxy = await startProxy({
      env: { OPENAI_API_KEY: undefined },
      patch: (cfg) => {
        cfg.upstreams = { openai: `simulate:${sim.urls.openai}` };
        delete cfg.upstream_ca_file;
        delete cfg.platform_keys;
        cfg.pricing = SIM_PRICES;
      },
    });
    try {
      const t = await newTenant(proxy);
      const r = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      const body = await r.text();
      assert.equal(r.status, 502, body);
      const j = JSON.parse(body);
      // OpenAI's error shape; the client is not told why, the operator's
      // log is: libcurl refused the certificate (verification is on).
      assert.equal(j.error?.type, 'upstream_error', body);
      assert.equal(j.error.code, 'upstream_unreachable', body);
      assert.match(proxy.logs(), /upstream openai failed: SSL certificate problem: self-signed certificate/);
    } finally {
      await stopClean(proxy);
    }
  });
});
