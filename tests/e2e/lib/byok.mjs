// byok.mjs - helpers for the BYOK tests (DESIGN §3, §6): a proxy whose
// config adds a platform-only provider (deepseek, on the same mock under
// /ds), tenants with plan features and parents, connections with canary
// keys, one data-plane call with what the mock received, and the checks
// every BYOK test makes: injected key, x-billed-to, the usage record's
// billing fields, /resolve, and which balances moved.
import assert from 'node:assert/strict';
import { setup } from './harness.mjs';
import { balances } from './proxy.mjs';
import { checkRecord, checkUpstreamAuth, costMicros, split } from './records.mjs';
import { httpRequest, randomHex } from './util.mjs';

export const DEEPSEEK_PRICES = { 'deepseek-chat': { input_per_1m: 270000, output_per_1m: 1100000 } };

// Usage the mock reports for every chat completion in the BYOK tests: no
// cached tokens (so OpenAI and DeepSeek meter the same units), costs large
// enough that a wrong charge shows.
export const CHAT_USAGE = { prompt_tokens: 1000, completion_tokens: 500, cached_tokens: 0 };
export const CHAT_UNITS = { input_tokens: 1000, output_tokens: 500 };
export const OPENAI_COST = costMicros('gpt-4o-mini', CHAT_UNITS); // 450
export const DEEPSEEK_COST = costMicros('deepseek-chat', CHAT_UNITS, DEEPSEEK_PRICES); // 820

const ENDPOINTS = {
  openai: { path: '/v1/chat/completions', upstream: '/v1/chat/completions', model: 'gpt-4o-mini', endpoint: '/v1/chat/completions' },
  deepseek: { path: '/deepseek/chat/completions', upstream: '/ds/chat/completions', model: 'deepseek-chat',
    // The contract does not say which path a DeepSeek record names.
    endpoint: ['/chat/completions', '/deepseek/chat/completions'] },
};

// setup() of harness.mjs plus: upstreams.deepseek = <mock>/ds, a canary
// DEEPSEEK_API_KEY, deepseek pricing, the mock's chat usage = CHAT_USAGE.
// opts.patch(cfg) and opts.env are applied after these.
export async function byokSetup(opts = {}) {
  const deepseekKey = `sk-ds-platform-canary-${randomHex(16)}`;
  const h = await setup({
    ...opts,
    env: { DEEPSEEK_API_KEY: deepseekKey, ...(opts.env || {}) },
    patch: (cfg) => {
      cfg.upstreams.deepseek = `${cfg.upstreams.openai}/ds`;
      cfg.platform_keys.deepseek = { key_env: 'DEEPSEEK_API_KEY' };
      cfg.pricing.deepseek = DEEPSEEK_PRICES;
      if (opts.patch) opts.patch(cfg);
    },
  });
  h.deepseekKey = deepseekKey;
  h.mock.prefixes['/ds'] = '/v1';
  h.mock.config.chat = { ...h.mock.config.chat, ...CHAT_USAGE };
  h.platformKeyOf = (provider) => (provider === 'deepseek' ? deepseekKey : h.proxy.platformKey);
  return h;
}

// A tenant with plan features, an optional parent, and (unless key:false)
// one proxy key; registered with the harness for checkAllRecords().
export async function mkTenant(h, { byok = false, agency = false, parent = null, walletDeduction = false,
  plan = 0, wallet = 10_000_000, key = true, name } = {}) {
  const tenantId = `t_byok_${randomHex(5)}`;
  await h.proxy.admin.createTenant({
    id: tenantId, name: name || tenantId, features: { byok, agency }, parent_id: parent,
    wallet_deduction: walletDeduction, plan_credits_micros: plan, wallet_micros: wallet,
  });
  const t = { tenantId };
  if (key) {
    const k = await h.proxy.admin.createKey(tenantId);
    t.keyId = k.id;
    t.key = k.key;
  }
  h.issued.set(tenantId, { tenant: t, ids: [], requests: 0 });
  return t;
}

export function canaryKey(what = 'byok') {
  return `sk-${what}-canary-${randomHex(16)}`;
}

// Creates a connection with a fresh canary key; checks the answer carries no
// secret. Returns the answer plus apiKey.
export async function connect(h, tenantId, { provider = 'openai', name, apiKey, region } = {}) {
  const key = apiKey || canaryKey(provider === 'openai' ? 'byok' : provider.replace('_', ''));
  const body = { provider, name: name || `${provider} ${randomHex(3)}`, api_key: key };
  if (region !== undefined) body.region = region;
  const r = await h.proxy.admin.req('POST', `/admin/tenants/${encodeURIComponent(tenantId)}/connections`, body);
  assert.equal(r.status, 201, `create connection: ${r.text}`);
  checkConnection(r.json, { provider, name: body.name, apiKey: key, region: region ?? null });
  assert.ok(!r.text.includes(key), 'the key is never returned');
  return { ...r.json, apiKey: key };
}

// A connection as the admin API shows it (DESIGN §6): no secret, key_hint =
// the last 4 characters.
export function checkConnection(c, { provider, name, apiKey, region }) {
  for (const f of ['id', 'provider', 'name', 'region', 'key_hint', 'created_at']) assert.ok(f in c, `connection has ${f}`);
  assert.equal(typeof c.id, 'string');
  assert.ok(c.id.length > 0);
  assert.equal(c.provider, provider);
  if (name !== undefined) assert.equal(c.name, name);
  assert.equal(c.region, region ?? null);
  assert.equal(typeof c.key_hint, 'string');
  assert.ok(c.key_hint.endsWith(apiKey.slice(-4)), `key_hint ${c.key_hint} shows the last 4 characters`);
  assert.ok(!c.key_hint.includes(apiKey.slice(-5)), 'key_hint shows no more than the last 4 characters');
  for (const f of ['api_key', 'key', 'secret', 'sealed']) assert.ok(!(f in c), `no ${f} field`);
  assert.ok(!JSON.stringify(c).includes(apiKey), 'no secret in the connection');
}

export function setByok(h, tenantId, enabled, slots = {}) {
  return h.proxy.admin.putByok(tenantId, { enabled, slots });
}

// One chat completion through the proxy for tenant t. provider: 'openai'
// (route /v1 or prefix '/openai/v1') or 'deepseek' (/deepseek/...).
// Returns { res, up: the upstream request the mock saw (or undefined), ups }.
// A request that reached the upstream is counted for checkAllRecords().
export async function call(h, t, { provider = 'openai', session, prefix, key, stream = false, content = 'hi' } = {}) {
  const ep = ENDPOINTS[provider];
  const path = prefix ? `${prefix}/chat/completions` : ep.path;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key ?? t.key}` };
  if (session !== undefined) headers['x-session-id'] = session;
  const mark = h.mock.requests.length;
  const res = await httpRequest(`${h.proxy.url}${path}`, { method: 'POST', headers,
    body: { model: ep.model, messages: [{ role: 'user', content }], ...(stream ? { stream: true } : {}) } });
  const ups = h.mock.since(mark);
  if (ups.length > 0 && h.issued.has(t.tenantId)) h.count(t, ups.length);
  return { res, up: ups[0], ups, provider };
}

// The checks of one served line: the mock got exactly one request, on the
// provider's upstream path, with `key`; the client saw x-billed-to; the
// usage record has the billing fields. Returns the record.
export async function expectLine(h, t, c, { key, billedTo, payerId, connectionId = null, fallbackReason = null,
  sessionId = null }) {
  const ep = ENDPOINTS[c.provider];
  assert.equal(c.res.status, 200, `served: ${c.res.body}`);
  assert.equal(c.ups.length, 1, 'exactly one upstream request');
  assert.equal(c.up.url.split('?')[0], ep.upstream, 'upstream path');
  const what = key === h.platformKeyOf(c.provider) ? `${c.provider} platform key injected` : 'the BYOK key injected';
  checkUpstreamAuth(c.up, { platformKey: key, proxyKey: t.key, what });
  assert.equal(c.res.headers['x-billed-to'], billedTo, 'x-billed-to');
  const id = c.res.headers['x-proxy-request-id'];
  assert.ok(id, 'x-proxy-request-id present');
  const rec = await h.proxy.admin.waitRecord(t.tenantId, id);
  checkRecord(rec, {
    tenantId: t.tenantId, keyId: t.keyId, payerId, sessionId, provider: c.provider, line: 'llm',
    endpoint: ep.endpoint, model: ep.model, units: CHAT_UNITS,
    prices: c.provider === 'deepseek' ? DEEPSEEK_PRICES : undefined,
    billedTo, connectionId, fallbackReason,
    upstreamRequestId: c.provider === 'openai' ? c.up.requestId : undefined,
  });
  assert.ok(rec.cost_micros > 0, 'cost_micros computed (BYOK lines too)');
  h.issued.get(t.tenantId).ids.push(id);
  return rec;
}

// Balances of the given tenants, by id.
export async function snap(h, ids) {
  const out = {};
  for (const id of ids) out[id] = balances(await h.proxy.admin.getTenant(id));
  return out;
}

// After a line: `charges` maps payer id -> cost charged (plan credits
// first); every other tenant of `before` is unchanged.
export async function expectMoved(h, before, charges = {}) {
  const after = await snap(h, Object.keys(before));
  for (const [id, b] of Object.entries(before)) {
    const cost = charges[id] ?? 0;
    const s = split(cost, b.plan);
    assert.deepEqual(after[id], { plan: b.plan - s.plan_credits_micros, wallet: b.wallet - s.wallet_micros },
      cost ? `payer ${id} charged ${cost} (plan credits first)` : `balances of ${id} untouched`);
  }
}

// One call plus every check: key, x-billed-to, record, balances of `watch`
// (the payer pays the line's cost when billed to the wallet; nobody else
// moves). Returns the record.
export async function line(h, t, { provider = 'openai', session, prefix, key, billedTo, payerId, connectionId = null,
  fallbackReason = null, watch = [] }) {
  const ids = [...new Set([t.tenantId, payerId, ...watch])];
  const before = await snap(h, ids);
  const c = await call(h, t, { provider, session, prefix });
  const rec = await expectLine(h, t, c, { key, billedTo, payerId, connectionId, fallbackReason, sessionId: session ?? null });
  await expectMoved(h, before, billedTo === 'wallet' ? { [payerId]: rec.cost_micros } : {});
  return rec;
}

// GET /resolve for a new session of tenantId and provider, checked against
// what is expected (and, by the callers, what the data plane then did).
export async function expectResolve(h, tenantId, provider, { billedTo, connectionId = null, payerId }) {
  const r = await h.proxy.admin.resolve(tenantId, provider);
  const slot = ['openai', 'elevenlabs', 'azure_speech'].includes(provider) ? provider : null;
  assert.equal(r.provider, provider, 'resolve.provider');
  assert.equal(r.slot, slot, 'resolve.slot');
  assert.equal(r.billed_to, billedTo, `resolve.billed_to (reason: ${r.reason})`);
  assert.equal(r.connection_id, connectionId, 'resolve.connection_id');
  assert.equal(r.payer_id, payerId, 'resolve.payer_id');
  assert.equal(typeof r.reason, 'string');
  assert.ok(r.reason.length > 0, 'resolve.reason explains');
  return r;
}

// An error the proxy produced itself in OpenAI's shape.
export function assertOpenAIError(res, status) {
  assert.equal(res.status, status, `status ${status}; body ${res.body}`);
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  const j = JSON.parse(res.body.toString('utf8'));
  assert.ok(j && typeof j.error === 'object', 'has an error object');
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  assert.equal(typeof j.error.type, 'string');
  assert.ok('code' in j.error, 'error.code present');
  return j.error;
}

export const sid = (what = 'conv') => `${what}-${randomHex(6)}`;
