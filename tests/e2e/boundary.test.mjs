// boundary.test.mjs - what a key may be used for (DESIGN §4a), through the
// real binary against the recording mocks of every provider: a wallet line
// (the platform's shared key) reaches only the endpoints the proxy meters -
// account endpoints, other methods and unknown paths get 403
// endpoint_not_allowed in the provider's shape with nothing sent upstream
// and no record; TRACE/CONNECT never pass, on any line; a BYOK line (the
// tenant's own key) may use any path, recorded with zero units and
// metered: false; OpenAI-Organization/OpenAI-Project are the platform's on
// wallet lines, the platform account's reply headers never reach a tenant;
// a wallet line for a model without a price is refused before anything is
// sent (403 model_not_priced) and a BYOK line is not; the refusals show in
// /metrics by reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { providersSetup, VOICE_PRICES } from './lib/providers.mjs';
import { mkTenant, connect, setByok } from './lib/byok.mjs';
import { checkRecord } from './lib/records.mjs';
import { httpRequest, randomHex } from './lib/util.mjs';

let h;
let dsKey;
before(async () => {
  dsKey = `sk-ds-platform-canary-${randomHex(16)}`;
  h = await providersSetup({
    env: { DEEPSEEK_API_KEY: dsKey },
    patch: (cfg) => {
      cfg.upstreams.deepseek = `${cfg.upstreams.openai}/ds`;
      cfg.platform_keys.deepseek = { key_env: 'DEEPSEEK_API_KEY' };
      cfg.pricing.deepseek = { 'deepseek-chat': { input_per_1m: 270000, output_per_1m: 1100000 } };
      // The platform's own organization, sent on wallet lines.
      cfg.platform_keys.openai.organization = 'org-platform';
    },
  });
  h.mock.prefixes['/ds'] = '/v1';
});
after(async () => { await h?.teardown(); });

// Every request any mock received so far, for "nothing went upstream".
function upstreamCount() {
  let n = h.mock.requests.length;
  for (const m of Object.values(h.mocks)) n += m.requests.length;
  return n;
}

function keyHeaders(provider, key) {
  switch (provider) {
    case 'elevenlabs': return { 'xi-api-key': key };
    case 'azure_speech': return { 'ocp-apim-subscription-key': key };
    case 'deepgram': return { authorization: `Token ${key}` };
    case 'anthropic': return { 'x-api-key': key };
    case 'cartesia': return { 'x-api-key': key };
    default: return { authorization: `Bearer ${key}` };
  }
}

// The message of a provider's error shape.
function errorOf(provider, body) {
  const j = JSON.parse(body);
  switch (provider) {
    case 'elevenlabs': return { code: j.detail.status, message: j.detail.message };
    case 'deepgram': return { code: j.err_code, message: j.err_msg };
    case 'anthropic': return { code: j.error.type, message: j.error.message, anthropic: true };
    case 'cartesia': return { code: j.code, message: j.error };
    case 'azure_speech': return { code: j.error.code, message: j.error.message };
    default: return { code: j.error.code, message: j.error.message };
  }
}

const REFUSED = [
  ['openai', 'GET', '/v1/files'],
  ['openai', 'POST', '/v1/files'],
  ['openai', 'POST', '/v1/batches'],
  ['openai', 'GET', '/v1/assistants'],
  ['openai', 'POST', '/v1/fine_tuning/jobs'],
  ['openai', 'GET', '/v1/organization/users'],
  ['openai', 'DELETE', '/v1/models/ft:gpt-4o-mini:acme'],
  ['openai', 'GET', '/v1/chat/completions/chatcmpl-123'],
  ['openai', 'POST', '/v1/realtime/calls'],
  ['openai', 'HEAD', '/v1/models'],
  ['openai', 'POST', '/v1/chat%2Fcompletions'],
  ['openai', 'POST', '/v1/Chat/Completions'],
  ['openai', 'POST', '/openai/v1/vector_stores'],
  ['elevenlabs', 'GET', '/elevenlabs/v1/history'],
  ['elevenlabs', 'POST', '/elevenlabs/v1/voices/add'],
  ['elevenlabs', 'GET', '/elevenlabs/v1/user'],
  ['elevenlabs', 'DELETE', '/elevenlabs/v1/voices/v1'],
  ['azure_speech', 'POST', '/azure/tts/speech/recognition/conversation/cognitiveservices/v1'],
  ['azure_speech', 'GET', '/azure/stt/cognitiveservices/voices/list'],
  ['deepgram', 'POST', '/deepgram/v1/projects/p1/keys'],
  ['deepgram', 'GET', '/deepgram/v1/projects'],
  ['deepgram', 'POST', '/deepgram/v1/auth/grant'],
  ['anthropic', 'POST', '/anthropic/v1/messages/batches'],
  ['anthropic', 'GET', '/anthropic/v1/files'],
  ['cartesia', 'POST', '/cartesia/access-token'],
  ['cartesia', 'POST', '/cartesia/voices/clone'],
  ['deepseek', 'GET', '/deepseek/user/balance'],
];

test('wallet line: account endpoints, other methods and unknown paths are refused (403 endpoint_not_allowed), nothing upstream, no record', async () => {
  const t = await h.tenant();
  const mark = upstreamCount();
  for (const [provider, method, path] of REFUSED) {
    const r = await httpRequest(h.proxy.url + path, {
      method, headers: { ...keyHeaders(provider, t.key), 'content-type': 'application/json' },
      body: ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : undefined,
    });
    assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.body}`);
    if (method === 'HEAD') continue;
    const e = errorOf(provider, r.body.toString());
    if (e.anthropic) assert.equal(e.code, 'permission_error', `${path}: Anthropic's type for 403`);
    else assert.equal(e.code, provider === 'azure_speech' ? '403' : 'endpoint_not_allowed', `${method} ${path}`);
    assert.ok(e.message.includes(method), `${method} ${path}: the message names the method: ${e.message}`);
    assert.ok(e.message.includes(path.slice(0, 40)), `${method} ${path}: the message names the path: ${e.message}`);
  }
  assert.equal(upstreamCount(), mark, 'nothing reached any upstream');
  const recs = await h.proxy.admin.usage({ tenant_id: t.tenantId });
  assert.equal(recs.length, 0, 'refusals write no record');
});

test('TRACE is never forwarded, not even on a BYOK line', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId, { apiKey: `sk-byok-${randomHex(8)}` });
  await setByok(h, t.tenantId, true, { openai: c.id });
  const mark = upstreamCount();
  const r = await httpRequest(`${h.proxy.url}/v1/models`, { method: 'TRACE', headers: { authorization: `Bearer ${t.key}` } });
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body).error.code, 'endpoint_not_allowed');
  assert.equal(upstreamCount(), mark);
});

test('served endpoints pass on a wallet line: GET /v1/models forwarded, recorded with zero units', async () => {
  const t = await h.tenant();
  const mark = h.mock.requests.length;
  const r = await httpRequest(`${h.proxy.url}/v1/models`, { headers: { authorization: `Bearer ${t.key}` } });
  h.count(t);
  assert.equal(r.status, 200);
  assert.equal(h.mock.since(mark).length, 1);
  const rec = await h.proxy.admin.waitRecord(t.tenantId, r.headers['x-proxy-request-id']);
  h.issued.get(t.tenantId).ids.push(rec.id);
  checkRecord(rec, { tenantId: t.tenantId, keyId: t.keyId, line: 'llm', endpoint: '/v1/models', model: null, units: {}, cost: 0 });
  assert.equal('metered' in rec, false, 'a served endpoint is not "unmetered"');
});

test('BYOK line: any path under the prefix is forwarded with the tenant\'s key, recorded metered: false with zero units', async () => {
  const t = await mkTenant(h, { byok: true });
  const byokKey = `sk-byok-${randomHex(8)}`;
  const c = await connect(h, t.tenantId, { apiKey: byokKey });
  await setByok(h, t.tenantId, true, { openai: c.id });
  for (const [method, path] of [['GET', '/v1/files'], ['DELETE', '/v1/files/file-1'], ['POST', '/v1/batches']]) {
    const mark = h.mock.requests.length;
    const r = await httpRequest(h.proxy.url + path, {
      method, headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
      body: method === 'POST' ? '{"input_file_id":"f"}' : undefined,
    });
    const [mr] = h.mock.since(mark);
    assert.ok(mr, `${method} ${path} forwarded`);
    assert.equal(mr.headers.authorization, `Bearer ${byokKey}`, 'the tenant\'s own key');
    assert.equal(r.status, 404, 'the provider\'s own answer passed through');
    assert.equal(r.headers['x-billed-to'], 'byok');
    const rec = await h.proxy.admin.waitRecord(t.tenantId, r.headers['x-proxy-request-id']);
    h.count(t);
    h.issued.get(t.tenantId).ids.push(rec.id);
    checkRecord(rec, {
      tenantId: t.tenantId, keyId: t.keyId, line: 'llm', endpoint: path, billedTo: 'byok', connectionId: c.id,
      status: 404, units: {}, cost: 0, metered: false, upstreamRequestId: mr.requestId,
    });
  }
});

test('OpenAI-Organization/Project: the platform\'s on wallet lines, the client\'s on BYOK; the platform account\'s reply headers never reach a tenant', async () => {
  h.mock.override({
    path: '/v1/models', times: 2,
    handle: (ctx) => ctx.json(200, { object: 'list', data: [] }, { 'openai-organization': 'org-platform-secret', 'openai-project': 'proj_p', 'openai-processing-ms': '5' }),
  });
  const t = await h.tenant();
  let mark = h.mock.requests.length;
  let r = await httpRequest(`${h.proxy.url}/v1/models`, {
    headers: { authorization: `Bearer ${t.key}`, 'OpenAI-Organization': 'org-victim', 'openai-project': 'proj_victim' },
  });
  h.count(t);
  h.issued.get(t.tenantId).ids.push(r.headers['x-proxy-request-id']);
  let [mr] = h.mock.since(mark);
  assert.equal(mr.headers['openai-organization'], 'org-platform', 'the platform\'s organization from the config');
  assert.equal(mr.headers['openai-project'], undefined, 'the client\'s project removed');
  assert.equal(r.headers['openai-organization'], undefined, 'the platform account\'s organization is not shown');
  assert.equal(r.headers['openai-project'], undefined);
  assert.equal(r.headers['openai-processing-ms'], '5', 'other headers pass');

  const b = await mkTenant(h, { byok: true });
  const c = await connect(h, b.tenantId, { apiKey: `sk-byok-${randomHex(8)}` });
  await setByok(h, b.tenantId, true, { openai: c.id });
  mark = h.mock.requests.length;
  r = await httpRequest(`${h.proxy.url}/v1/models`, {
    headers: { authorization: `Bearer ${b.key}`, 'OpenAI-Organization': 'org-mine', 'OpenAI-Project': 'proj_mine' },
  });
  [mr] = h.mock.since(mark);
  h.count(b);
  h.issued.get(b.tenantId).ids.push(r.headers['x-proxy-request-id']);
  assert.equal(mr.headers['openai-organization'], 'org-mine', 'a BYOK line chooses its own organization');
  assert.equal(mr.headers['openai-project'], 'proj_mine');
  assert.equal(r.headers['openai-organization'], 'org-platform-secret', 'its own account\'s headers reach it');
});

test('fail-closed pricing: a wallet line for a model without a price is refused before anything is sent; BYOK is not', async () => {
  const t = await h.tenant();
  const sdk = h.sdk(t.key);
  for (const model of ['gpt-4o-mini-2024-07-18', 'o3']) {
    const mark = h.mock.requests.length;
    const e = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).catch((x) => x);
    assert.ok(e instanceof OpenAI.APIError, `${model}: refused`);
    assert.equal(e.status, 403);
    assert.equal(e.code, 'model_not_priced');
    assert.match(e.message, new RegExp(`"${model}"`), 'names the model');
    assert.match(e.message, /pricing\.openai/, 'says how to fix it');
    assert.match(e.message, /BYOK/);
    assert.equal(e.headers.get('x-should-retry'), 'false');
    assert.equal(h.mock.since(mark).length, 0, 'nothing upstream');
  }
  // ElevenLabs: a model id with no price.
  const mark = h.mocks.elevenlabs.requests.length;
  const r = await httpRequest(`${h.proxy.url}/elevenlabs/v1/text-to-speech/voice1`, {
    method: 'POST', headers: { 'xi-api-key': t.key, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'hi', model_id: 'eleven_v9_unpriced' }),
  });
  assert.equal(r.status, 403);
  assert.equal(JSON.parse(r.body).detail.status, 'model_not_priced');
  assert.equal(h.mocks.elevenlabs.requests.length, mark);
  assert.equal((await h.proxy.admin.usage({ tenant_id: t.tenantId })).length, 0, 'no record');

  const b = await mkTenant(h, { byok: true });
  const c = await connect(h, b.tenantId, { apiKey: `sk-byok-${randomHex(8)}` });
  await setByok(h, b.tenantId, true, { openai: c.id });
  const res = await h.sdk(b.key).chat.completions.create({ model: 'o3', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  const rec = await h.proxy.admin.waitRecord(b.tenantId, res.response.headers.get('x-proxy-request-id'));
  h.count(b);
  h.issued.get(b.tenantId).ids.push(rec.id);
  assert.equal(rec.billed_to, 'byok');
  assert.equal(rec.model, 'o3');
  assert.equal(rec.cost_micros, 0, 'no price: cost 0, still recorded');
});

test('a wallet line names the model once: a repeated or undecodable model= is refused (400 invalid_model_parameter), nothing upstream', async () => {
  const t = await h.tenant();
  const mark = upstreamCount();
  for (const q of ['model=&model=nova-3', 'model=aura-asteria-en&MODEL=aura-2-thalia-en', 'mod%65l=a&model=b', 'model=nova%zz']) {
    const r = await httpRequest(`${h.proxy.url}/deepgram/v1/speak?${q}`, {
      method: 'POST', headers: { authorization: `Token ${t.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello' }),
    });
    assert.equal(r.status, 400, `${q}: ${r.status} ${r.body}`);
    const e = errorOf('deepgram', r.body.toString());
    assert.equal(e.code, 'invalid_model_parameter', q);
    assert.match(e.message, /model/, q);
  }
  assert.equal(upstreamCount(), mark, 'nothing reached any upstream');
  assert.equal((await h.proxy.admin.usage({ tenant_id: t.tenantId })).length, 0, 'no record');
});

test('/metrics: exchanges by provider, status class and billed_to; refusals by reason', async () => {
  const r = await fetch(`${h.proxy.adminUrl}/metrics`, { headers: { authorization: `Bearer ${h.proxy.adminToken}` } });
  const text = await r.text();
  const value = (re) => {
    const m = text.match(re);
    return m ? Number(m[1]) : 0;
  };
  assert.ok(value(/byok_refusals_total\{provider="openai",reason="endpoint_not_allowed"\} (\d+)/) >= 12, text);
  assert.ok(value(/byok_refusals_total\{provider="deepgram",reason="endpoint_not_allowed"\} (\d+)/) >= 3);
  assert.ok(value(/byok_refusals_total\{provider="openai",reason="model_not_priced"\} (\d+)/) >= 2);
  assert.ok(value(/byok_refusals_total\{provider="elevenlabs",reason="model_not_priced"\} (\d+)/) >= 1);
  assert.ok(value(/byok_exchanges_total\{provider="openai",class="2xx",billed_to="wallet"\} (\d+)/) >= 1);
  assert.ok(value(/byok_exchanges_total\{provider="openai",class="4xx",billed_to="byok"\} (\d+)/) >= 3);
  assert.match(text, /# TYPE byok_refusals_total counter/);
});

test('every record is exactly once in the store and the JSONL sink', async () => {
  await h.checkAllRecords();
});

// Keep VOICE_PRICES referenced: the setup prices every voice provider with it.
assert.ok(VOICE_PRICES.elevenlabs);
