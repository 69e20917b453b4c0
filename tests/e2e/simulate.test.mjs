// simulate.test.mjs - simulated upstreams in the proxy (README "Simulated
// providers"): "upstreams": {"openai"|"anthropic"|"deepseek": "simulate"},
// no platform key anywhere (not in the config, not in the environment), the
// official SDKs against the proxy. Replies come from the in-process
// simulator through the proxy's real upstream client; records carry
// "simulated": true and the exact usage the SDK saw; simulate.charge false
// prices lines without charging (no hold, no 402), charge true charges like
// any wallet line; ttfb_ms, tokens_per_s and the error rates are observed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startProxy, newTenant, balances } from './lib/proxy.mjs';
import { costMicros, units as allUnits } from './lib/records.mjs';
import { inProcessUrls, simulatedConfig, SIM_PRICES } from './lib/sim.mjs';

const words = (s) => s.split(/\s+/).filter(Boolean).length;

function clients(proxy, key) {
  return {
    openai: new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20000 }),
    deepseek: new OpenAI({ baseURL: `${proxy.url}/deepseek`, apiKey: key, maxRetries: 0, timeout: 20000 }),
    claude: new Anthropic({ baseURL: `${proxy.url}/anthropic`, apiKey: key, authToken: null, maxRetries: 0, timeout: 20000 }),
  };
}

async function startSimulated(simulate) {
  // No provider key in the environment: the simulated providers run on the
  // placeholder the proxy injects.
  return startProxy({ patch: simulatedConfig(simulate), env: { OPENAI_API_KEY: undefined } });
}

// The tenant's records once there are n (newest first).
async function records(proxy, tenantId, n) {
  const recs = await proxy.admin.waitRecords(tenantId, n);
  assert.equal(recs.length, n, `exactly ${n} record(s)`);
  return recs;
}

// A record of a simulated line: marked, exact units, priced.
function checkSimulated(r, { provider, model, endpoint, input, output, charged = false }) {
  assert.equal(r.simulated, true, 'simulated: true');
  assert.equal(r.provider, provider);
  assert.equal(r.endpoint, endpoint);
  assert.equal(r.model, model);
  assert.equal(r.billed_to, 'wallet');
  assert.equal(r.status, 200);
  assert.equal(r.outcome, 'ok');
  assert.equal(r.estimated, false);
  assert.deepEqual(r.units, allUnits({ input_tokens: input, output_tokens: output }));
  const cost = costMicros(model, { input_tokens: input, output_tokens: output }, SIM_PRICES[provider]);
  assert.ok(cost > 0, 'the line is priced');
  assert.equal(r.cost_micros, cost, 'cost_micros per the pricing rule');
  const sum = r.charged.plan_credits_micros + r.charged.wallet_micros;
  assert.equal(sum, charged ? cost : 0, charged ? 'charged its cost' : 'charged nothing');
}

describe('simulate.charge false (default)', () => {
  let proxy;
  before(async () => { proxy = await startSimulated({ seed: 7, reply_tokens: 12 }); });
  after(async () => {
    // Exit 0: a clean drain with the simulator stopped after the workers
    // (the sanitizer build also fails here on a leak).
    if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
    proxy?.remove();
  });

  test('chat: a JSON reply with exact usage; the record is simulated, priced, charged nothing', async () => {
    const t = await newTenant(proxy, { wallet: 5_000_000 });
    const { openai } = clients(proxy, t.key);
    const r = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'say hello to the world' }],
    });
    const text = r.choices[0].message.content;
    assert.equal(words(text), 12, `12 words: ${text}`);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [7, 12, 19]);
    assert.match(r._request_id, /^req_[0-9a-f]{24}$/, 'x-request-id as OpenAI names it');
    const [rec] = await records(proxy, t.tenantId, 1);
    checkSimulated(rec, { provider: 'openai', model: 'gpt-4o-mini', endpoint: '/v1/chat/completions', input: 7, output: 12 });
    assert.equal(rec.upstream_request_id, r._request_id);
    const after = await proxy.admin.getTenant(t.tenantId);
    assert.deepEqual(balances(after), { plan: 0, wallet: 5_000_000 }, 'the balance did not move');
    assert.equal(after.held_micros, 0, 'nothing held');
  });

  test('chat stream with include_usage: the usage chunk the SDK sees is what is recorded', async () => {
    const t = await newTenant(proxy);
    const { openai } = clients(proxy, t.key);
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'count to three please' }],
    });
    let text = '';
    let usage = null;
    let finish = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta?.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    assert.equal(words(text), 12);
    assert.equal(finish, 'stop');
    assert.deepEqual([usage.prompt_tokens, usage.completion_tokens], [4, 12]);
    const [rec] = await records(proxy, t.tenantId, 1);
    checkSimulated(rec, { provider: 'openai', model: 'gpt-4o-mini', endpoint: '/v1/chat/completions', input: 4, output: 12 });
  });

  test('chat stream without include_usage: no usage chunk reaches the SDK, the record is exact', async () => {
    const t = await newTenant(proxy);
    const { openai } = clients(proxy, t.key);
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'one two three four five' }],
    });
    let chunks = 0;
    let text = '';
    for await (const chunk of stream) {
      chunks++;
      // No usage reaches the client (the proxy asked for it upstream and
      // drops the usage chunk; the other chunks keep "usage": null).
      assert.ok(!chunk.usage, 'the client did not ask for usage');
      assert.ok(chunk.choices.length > 0, 'no empty-choices usage chunk');
      text += chunk.choices[0].delta?.content ?? '';
    }
    assert.equal(chunks, 14, 'role chunk, 12 tokens, finish chunk');
    assert.equal(words(text), 12);
    const [rec] = await records(proxy, t.tenantId, 1);
    checkSimulated(rec, { provider: 'openai', model: 'gpt-4o-mini', endpoint: '/v1/chat/completions', input: 5, output: 12 });
  });

  test('responses: JSON, and a stream whose response.completed carries the usage', async () => {
    const t = await newTenant(proxy);
    const { openai } = clients(proxy, t.key);
    const r = await openai.responses.create({ model: 'gpt-4o', instructions: 'answer kindly', input: 'what is a proxy' });
    assert.equal(r.status, 'completed');
    assert.equal(words(r.output_text), 12);
    assert.deepEqual([r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens], [6, 12, 18]);
    const stream = await openai.responses.create({
      model: 'gpt-4o', stream: true,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'stream this please' }] }],
    });
    let deltas = '';
    let completed = null;
    const types = [];
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') deltas += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.equal(words(deltas), 12);
    assert.equal(completed.output[0].content[0].text, deltas);
    assert.deepEqual([completed.usage.input_tokens, completed.usage.output_tokens], [3, 12]);
    const recs = await records(proxy, t.tenantId, 2);
    const byInput = Object.fromEntries(recs.map((x) => [x.units.input_tokens, x]));
    checkSimulated(byInput[6], { provider: 'openai', model: 'gpt-4o', endpoint: '/v1/responses', input: 6, output: 12 });
    checkSimulated(byInput[3], { provider: 'openai', model: 'gpt-4o', endpoint: '/v1/responses', input: 3, output: 12 });
  });

  test('embeddings (base64, decoded by the SDK) and models', async () => {
    const t = await newTenant(proxy);
    const { openai } = clients(proxy, t.key);
    const e = await openai.embeddings.create({ model: 'text-embedding-3-small', input: ['the first input', 'and the second one'] });
    assert.equal(e.data.length, 2);
    assert.equal(e.data[0].embedding.length, 1536);
    assert.ok(e.data[0].embedding.every((x) => Number.isFinite(x)));
    assert.deepEqual([e.usage.prompt_tokens, e.usage.total_tokens], [7, 7]);
    const d = await openai.embeddings.create({ model: 'text-embedding-3-small', input: 'short', dimensions: 8, encoding_format: 'float' });
    assert.equal(d.data[0].embedding.length, 8);
    const list = await openai.models.list();
    assert.ok(list.data.some((m) => m.id === 'gpt-4o-mini'), 'models.list');
    const m = await openai.models.retrieve('gpt-4o-mini');
    assert.equal(m.id, 'gpt-4o-mini');
    const recs = await records(proxy, t.tenantId, 4);
    const emb = recs.filter((x) => x.endpoint === '/v1/embeddings').sort((a, b) => b.units.input_tokens - a.units.input_tokens);
    assert.equal(emb.length, 2);
    assert.equal(emb[0].simulated, true);
    assert.equal(emb[0].units.input_tokens, 7);
    assert.equal(emb[0].cost_micros, costMicros('text-embedding-3-small', { input_tokens: 7 }));
    assert.equal(emb[1].units.input_tokens, 1);
    assert.ok(recs.filter((x) => x.endpoint.startsWith('/v1/models')).every((x) => x.simulated === true));
  });

  test('anthropic: messages create and stream (finalMessage) with exact usage', async () => {
    const t = await newTenant(proxy);
    const { claude } = clients(proxy, t.key);
    const msg = await claude.messages.create({
      model: 'claude-sonnet-5-5', max_tokens: 100, system: 'you are terse',
      messages: [{ role: 'user', content: 'hello claude' }],
    });
    assert.equal(msg.type, 'message');
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(words(msg.content[0].text), 12);
    assert.deepEqual([msg.usage.input_tokens, msg.usage.output_tokens], [5, 12]);
    assert.match(msg._request_id, /^req_[0-9a-f]{24}$/, 'request-id as Anthropic names it');
    const stream = claude.messages.stream({
      model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'text', text: 'stream it' }] }],
    });
    let text = '';
    stream.on('text', (d) => { text += d; });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'max_tokens', 'max_tokens caps the reply');
    assert.equal(words(text), 5);
    assert.deepEqual([final.usage.input_tokens, final.usage.output_tokens], [2, 5]);
    const recs = await records(proxy, t.tenantId, 2);
    const byOut = Object.fromEntries(recs.map((x) => [x.units.output_tokens, x]));
    checkSimulated(byOut[12], { provider: 'anthropic', model: 'claude-sonnet-5-5', endpoint: '/v1/messages', input: 5, output: 12 });
    checkSimulated(byOut[5], { provider: 'anthropic', model: 'claude-sonnet-5-5', endpoint: '/v1/messages', input: 2, output: 5 });
    assert.equal(byOut[12].upstream_request_id, msg._request_id);
  });

  test('deepseek through the OpenAI SDK: its usage fields, stream and JSON', async () => {
    const t = await newTenant(proxy);
    const { deepseek } = clients(proxy, t.key);
    const r = await deepseek.chat.completions.create({
      model: 'deepseek-chat', max_tokens: 9, messages: [{ role: 'user', content: 'hi deepseek' }],
    });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(words(r.choices[0].message.content), 9);
    assert.equal(r.usage.prompt_cache_hit_tokens, 0);
    assert.equal(r.usage.prompt_cache_miss_tokens, 2);
    const stream = await deepseek.chat.completions.create({
      model: 'deepseek-chat', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'a b c' }],
    });
    let usage = null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.deepEqual([usage.prompt_tokens, usage.completion_tokens, usage.prompt_cache_miss_tokens], [3, 12, 3]);
    const models = await deepseek.models.list();
    assert.ok(models.data.some((m) => m.id === 'deepseek-chat'));
    const recs = (await records(proxy, t.tenantId, 3)).filter((x) => x.line === 'llm' && x.model);
    const byOut = Object.fromEntries(recs.map((x) => [x.units.output_tokens, x]));
    checkSimulated(byOut[9], { provider: 'deepseek', model: 'deepseek-chat', endpoint: '/chat/completions', input: 2, output: 9 });
    checkSimulated(byOut[12], { provider: 'deepseek', model: 'deepseek-chat', endpoint: '/chat/completions', input: 3, output: 12 });
  });

  test('a tenant without funds is served: simulated lines are neither held nor refused', async () => {
    const t = await newTenant(proxy, { wallet: 0 });
    const { openai, claude } = clients(proxy, t.key);
    const r = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'free' }] });
    assert.equal(r.usage.completion_tokens, 12);
    await claude.messages.create({ model: 'claude-haiku-5-5', max_tokens: 50, messages: [{ role: 'user', content: 'free' }] });
    const recs = await records(proxy, t.tenantId, 2);
    for (const rec of recs) {
      assert.equal(rec.simulated, true);
      assert.ok(rec.cost_micros > 0);
      assert.deepEqual(rec.charged, { plan_credits_micros: 0, wallet_micros: 0 });
    }
    assert.deepEqual(balances(await proxy.admin.getTenant(t.tenantId)), { plan: 0, wallet: 0 });
  });

  test('the simulator wants a key where the provider does: its 401 otherwise', async () => {
    const urls = inProcessUrls(proxy);
    assert.deepEqual(Object.keys(urls).sort(), ['anthropic', 'deepseek', 'openai']);
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const post = (url, headers) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    let r = await post(`${urls.openai}/v1/chat/completions`, {});
    assert.equal(r.status, 401);
    const oe = await r.json();
    assert.equal(oe.error.type, 'invalid_request_error');
    assert.match(oe.error.message, /didn't provide an API key/);
    assert.match(r.headers.get('x-request-id'), /^req_/);
    r = await post(`${urls.openai}/v1/chat/completions`, { authorization: 'Basic abc' });
    assert.equal(r.status, 401, 'a key in another scheme is no key');
    r = await post(`${urls.openai}/v1/chat/completions`, { authorization: 'Bearer anything' });
    assert.equal(r.status, 200);
    r = await post(`${urls.anthropic}/v1/messages`, {});
    assert.equal(r.status, 401);
    const ae = await r.json();
    assert.equal(ae.type, 'error');
    assert.equal(ae.error.type, 'authentication_error');
    assert.match(ae.request_id, /^req_/);
    r = await post(`${urls.deepseek}/chat/completions`, {});
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.type, 'authentication_error');
    // An unknown path: the provider's 404.
    r = await fetch(`${urls.openai}/v1/files`, { headers: { authorization: 'Bearer k' } });
    assert.equal(r.status, 404);
    assert.match((await r.json()).error.message, /Invalid URL \(GET \/v1\/files\)/);
  });
});

describe('simulate.charge true, ttfb_ms, tokens_per_s', () => {
  let proxy;
  before(async () => {
    proxy = await startSimulated({
      charge: true, seed: 11,
      providers: { openai: { ttfb_ms: 300 }, anthropic: { tokens_per_s: 40, reply_tokens: 20 } },
    });
  });
  after(async () => {
    // Exit 0: a clean drain with the simulator stopped after the workers
    // (the sanitizer build also fails here on a leak).
    if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
    proxy?.remove();
  });

  test('the balance drops by the sum charged; a tenant without funds gets 402', async () => {
    const t = await newTenant(proxy, { wallet: 2_000_000 });
    const { openai, claude, deepseek } = clients(proxy, t.key);
    await openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'charge me' }] });
    await claude.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'charge me too' }] });
    await deepseek.chat.completions.create({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'and me' }] });
    const recs = await records(proxy, t.tenantId, 3);
    const want = {
      openai: ['gpt-4o', '/v1/chat/completions', 2, 16],
      anthropic: ['claude-sonnet-5-5', '/v1/messages', 3, 20],
      deepseek: ['deepseek-chat', '/chat/completions', 2, 16],
    };
    let sum = 0;
    for (const rec of recs) {
      const [model, endpoint, input, output] = want[rec.provider];
      checkSimulated(rec, { provider: rec.provider, model, endpoint, input, output, charged: true });
      sum += rec.charged.wallet_micros + rec.charged.plan_credits_micros;
    }
    assert.ok(sum > 0);
    const after = await proxy.admin.getTenant(t.tenantId);
    assert.deepEqual(balances(after), { plan: 0, wallet: 2_000_000 - sum }, 'the balance dropped by the sum charged');

    const broke = await newTenant(proxy, { wallet: 0 });
    const c = clients(proxy, broke.key);
    await assert.rejects(
      c.openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'no funds' }] }),
      (e) => e.status === 402 && e.code === 'insufficient_balance');
    await assert.rejects(
      c.claude.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'no funds' }] }),
      (e) => e.status === 402);
    assert.deepEqual(await proxy.admin.usage({ tenant_id: broke.tenantId }), [], 'a refused request writes no record');
  });

  test('ttfb_ms: the first byte of the reply comes no sooner (measured)', async () => {
    const t = await newTenant(proxy);
    const t0 = performance.now();
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'quick' }] }),
    });
    const head = performance.now() - t0;
    await res.text();
    assert.equal(res.status, 200);
    assert.ok(head >= 300, `head after ${head.toFixed(1)} ms, ttfb_ms is 300`);
    assert.ok(head < 5000, `head after ${head.toFixed(1)} ms`);
    const [rec] = await records(proxy, t.tenantId, 1);
    assert.ok(rec.ttfb_ms >= 300, `recorded ttfb_ms ${rec.ttfb_ms}`);
    console.log(`ttfb_ms 300: head after ${head.toFixed(1)} ms, recorded ttfb_ms ${rec.ttfb_ms}`);
  });

  test('tokens_per_s paces a stream, and a JSON reply arrives when its stream would end', async () => {
    const t = await newTenant(proxy);
    const { claude } = clients(proxy, t.key);
    // 20 tokens at 40/s: the last one 19 / 40 s = 475 ms after the first.
    const stream = claude.messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'pace' }] });
    const at = [];
    stream.on('text', () => at.push(performance.now()));
    const final = await stream.finalMessage();
    assert.equal(at.length, 20);
    assert.equal(final.usage.output_tokens, 20);
    const span = at.at(-1) - at[0];
    // Unpaced, the 20 tokens would come in one write (~0 ms apart); the
    // client's own scheduling may shift its first reading a little.
    assert.ok(span >= 400 && span < 3000, `20 tokens at 40/s over ${span.toFixed(1)} ms (expected ~475)`);
    const [streamed] = await records(proxy, t.tenantId, 1);
    assert.ok(streamed.duration_ms >= 475, `the proxy saw the stream last ${streamed.duration_ms} ms`);
    const t0 = performance.now();
    const msg = await claude.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 100, messages: [{ role: 'user', content: 'pace' }] });
    const whole = performance.now() - t0;
    assert.equal(msg.usage.output_tokens, 20);
    assert.ok(whole >= 475, `a JSON reply of 20 tokens at 40/s after ${whole.toFixed(1)} ms`);
    console.log(`tokens_per_s 40: stream of 20 tokens spans ${span.toFixed(1)} ms, JSON reply after ${whole.toFixed(1)} ms`);
  });
});

describe('error injection', () => {
  let proxy;
  before(async () => {
    proxy = await startSimulated({
      seed: 3,
      providers: { openai: { errors: { 429: 1 } }, anthropic: { errors: { 500: 1 } }, deepseek: { errors: { reset: 1 } } },
    });
  });
  after(async () => {
    // Exit 0: a clean drain with the simulator stopped after the workers
    // (the sanitizer build also fails here on a leak).
    if (proxy) assert.equal(await proxy.stop(), 0, proxy.logs().slice(-4000));
    proxy?.remove();
  });

  test('429 at rate 1: the SDK sees OpenAI\'s rate-limit error; 500: Anthropic\'s api_error', async () => {
    const t = await newTenant(proxy);
    const { openai, claude } = clients(proxy, t.key);
    await assert.rejects(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      (e) => {
        assert.ok(e instanceof OpenAI.RateLimitError, `a RateLimitError, got ${e.constructor.name}`);
        assert.equal(e.status, 429);
        assert.equal(e.code, 'rate_limit_exceeded');
        assert.equal(e.type, 'requests');
        assert.equal(e.headers.get('retry-after'), '1');
        return true;
      });
    await assert.rejects(
      claude.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
      (e) => {
        assert.ok(e instanceof Anthropic.InternalServerError, `an InternalServerError, got ${e.constructor.name}`);
        assert.equal(e.status, 500);
        assert.equal(e.error.type, 'error');
        assert.equal(e.error.error.type, 'api_error');
        return true;
      });
    const recs = await records(proxy, t.tenantId, 2);
    for (const rec of recs) {
      assert.equal(rec.simulated, true);
      assert.deepEqual(rec.units, allUnits(), 'an error consumed nothing');
      assert.equal(rec.cost_micros, 0);
    }
    assert.deepEqual(recs.map((r) => r.status).sort(), [429, 500]);
  });

  test('reset: the connection is cut mid-reply; the proxy records upstream_error', async () => {
    const t = await newTenant(proxy);
    const { deepseek } = clients(proxy, t.key);
    // A stream: cut after half its tokens.
    const stream = await deepseek.chat.completions.create({
      model: 'deepseek-chat', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'cut me' }],
    });
    let got = '';
    await assert.rejects((async () => {
      for await (const chunk of stream) got += chunk.choices[0]?.delta?.content ?? '';
    })());
    assert.equal(words(got), 8, `half of the 16 tokens arrived: ${got}`);
    // A JSON reply: cut halfway through its body.
    await assert.rejects(deepseek.chat.completions.create({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'cut' }] }));
    const recs = await records(proxy, t.tenantId, 2);
    for (const rec of recs) {
      assert.equal(rec.simulated, true);
      assert.equal(rec.outcome, 'upstream_error', `outcome of ${rec.endpoint}`);
    }
    const streamed = recs.find((r) => r.estimated);
    assert.ok(streamed, 'the cut stream is estimated (no usage chunk came)');
    assert.ok(streamed.units.output_tokens > 0);
  });
});
