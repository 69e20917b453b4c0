// records.mjs - the pricing the e2e configs use, the cost rule of
// pricing.h/DESIGN §5 re-implemented independently, and assertions on usage
// records and on what the mock upstream received.
import assert from 'node:assert/strict';

// Integer micro-USD; tokens/characters per 1M units, audio per minute.
export const PRICES = {
  'gpt-4o-mini': { input_per_1m: 150000, cached_input_per_1m: 75000, output_per_1m: 600000 },
  'gpt-4o': { input_per_1m: 2500000, cached_input_per_1m: 1250000, output_per_1m: 10000000 },
  'text-embedding-3-small': { input_per_1m: 20000 },
  'tts-1': { characters_per_1m: 15000000 },
  'whisper-1': { audio_per_minute: 6000 },
};

export const RECORD_KEYS = ['id', 'ts', 'tenant_id', 'payer_id', 'key_id', 'session_id', 'provider', 'slot', 'line',
  'endpoint', 'model', 'billed_to', 'connection_id', 'status', 'outcome', 'estimated', 'fallback_reason', 'units',
  'cost_micros', 'charged', 'upstream_request_id', 'ttfb_ms', 'duration_ms'].sort();
export const UNIT_KEYS = ['input_tokens', 'cached_input_tokens', 'output_tokens', 'audio_input_tokens',
  'audio_output_tokens', 'characters', 'audio_seconds'].sort();
export const CHARGED_KEYS = ['plan_credits_micros', 'wallet_micros'];
// DESIGN §5: members written only where they apply.
export const OPTIONAL_KEYS = ['metered', 'simulated', 'seq', 'final'];

export function units(partial = {}) {
  const u = Object.fromEntries(UNIT_KEYS.map((k) => [k, 0]));
  return { ...u, ...partial };
}

// The price entry of a model (README "Pricing schema"): the exact name, then
// the longest "prefix*" key, then "*"; null when none matches. A missing
// model (null) is looked up as "".
export function findPrice(prices, model) {
  const m = model ?? '';
  if (Object.prototype.hasOwnProperty.call(prices, m) && !m.endsWith('*')) return prices[m];
  let best = null;
  let bestLen = -1;
  for (const [k, v] of Object.entries(prices)) {
    if (!k.endsWith('*')) continue;
    const prefix = k.slice(0, -1);
    if (m.startsWith(prefix) && prefix.length > bestLen) {
      best = v;
      bestLen = prefix.length;
    }
  }
  return best;
}

// Sum over the parts of units × price per 1M (audio: seconds × per-minute
// price / 60, expressed in the same 1e-6 scale), divided by 1e6 and rounded
// half up once. Cached/audio prices fall back to the input/output price.
// prices: the provider's table (default: the OpenAI one above).
export function costMicros(model, partial, prices = PRICES) {
  const p = findPrice(prices, model);
  if (!p) return 0;
  const u = units(partial);
  const inP = p.input_per_1m ?? 0;
  const outP = p.output_per_1m ?? 0;
  let sum = 0;
  sum += (u.input_tokens - u.cached_input_tokens - u.audio_input_tokens) * inP;
  sum += u.cached_input_tokens * (p.cached_input_per_1m ?? inP);
  sum += u.audio_input_tokens * (p.audio_input_per_1m ?? inP);
  sum += (u.output_tokens - u.audio_output_tokens) * outP;
  sum += u.audio_output_tokens * (p.audio_output_per_1m ?? outP);
  sum += u.characters * (p.characters_per_1m ?? 0);
  sum += (u.audio_seconds * (p.audio_per_minute ?? 0) * 1e6) / 60;
  return Math.floor((sum + 500000) / 1e6);
}

// The expected split of a wallet charge: plan credits first, then wallet.
export function split(cost, planBefore) {
  const fromPlan = Math.min(cost, Math.max(planBefore, 0));
  return { plan_credits_micros: fromPlan, wallet_micros: cost - fromPlan };
}

// Checks one usage record against DESIGN §5. exp: tenantId, keyId,
// sessionId (null = none), line, endpoint, model, status, outcome (default
// ok; an array = any of), estimated (default false), units (partial; others must be 0; null =
// don't check), cost (default computed from units), charged, upstreamRequestId.
// BYOK fields (defaults: the platform-key OpenAI line): payerId (default
// tenantId), provider ('openai'), slot (default = provider for the three
// slots, else null), billedTo ('wallet'), connectionId (null),
// fallbackReason (null), prices (the table for the cost; default PRICES).
// endpoint may be an array (any of).
export function checkRecord(r, exp) {
  assert.deepEqual(Object.keys(r).filter((k) => !OPTIONAL_KEYS.includes(k)).sort(), RECORD_KEYS,
    'record has exactly the DESIGN §5 fields');
  if ('metered' in r) assert.equal(r.metered, false, 'metered is written only as false');
  if ('simulated' in r) assert.equal(r.simulated, true, 'simulated is written only as true');
  assert.equal('seq' in r, 'final' in r, 'seq and final come together (socket records)');
  if ('seq' in r) {
    assert.ok(Number.isInteger(r.seq) && r.seq >= 1, `seq ${r.seq} counts from 1`);
    assert.equal(typeof r.final, 'boolean');
  }
  if (exp.seq !== undefined) assert.equal(r.seq, exp.seq, 'seq');
  if (exp.final !== undefined) assert.equal(r.final, exp.final, 'final');
  if (exp.metered !== undefined) assert.equal(r.metered ?? true, exp.metered, 'metered');
  assert.equal(typeof r.id, 'string');
  assert.ok(r.id.length > 0);
  assert.ok(!Number.isNaN(Date.parse(r.ts)) && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(r.ts), `ts is ISO-8601 UTC: ${r.ts}`);
  assert.equal(r.tenant_id, exp.tenantId);
  assert.equal(r.payer_id, exp.payerId ?? exp.tenantId);
  assert.equal(r.key_id, exp.keyId);
  // A socket without X-Session-Id is a session of its own: "ws_<id>".
  const session = exp.sessionId !== undefined ? exp.sessionId : ('seq' in r ? /^ws_[0-9A-Z]{26}$/ : null);
  if (session instanceof RegExp) assert.match(r.session_id, session, 'session_id');
  else assert.equal(r.session_id, session, 'session_id');
  const provider = exp.provider ?? 'openai';
  const slot = exp.slot !== undefined ? exp.slot : (['openai', 'elevenlabs', 'azure_speech'].includes(provider) ? provider : null);
  const billedTo = exp.billedTo ?? 'wallet';
  assert.equal(r.provider, provider);
  assert.equal(r.slot, slot);
  assert.equal(r.line, exp.line);
  if (Array.isArray(exp.endpoint)) assert.ok(exp.endpoint.includes(r.endpoint), `endpoint ${r.endpoint} in ${exp.endpoint}`);
  else assert.equal(r.endpoint, exp.endpoint);
  if (exp.model !== undefined) assert.equal(r.model, exp.model);
  assert.equal(r.billed_to, billedTo, 'billed_to');
  assert.equal(r.connection_id, exp.connectionId ?? null, 'connection_id');
  assert.equal(r.status, exp.status ?? 200);
  if (Array.isArray(exp.outcome)) assert.ok(exp.outcome.includes(r.outcome), `outcome ${r.outcome} in ${exp.outcome}`);
  else assert.equal(r.outcome, exp.outcome ?? 'ok');
  assert.equal(r.estimated, exp.estimated ?? false);
  assert.equal(r.fallback_reason, exp.fallbackReason ?? null, 'fallback_reason');
  assert.deepEqual(Object.keys(r.units).sort(), UNIT_KEYS, 'units has exactly the DESIGN §5 fields');
  for (const k of UNIT_KEYS) assert.equal(typeof r.units[k], 'number', `units.${k} is a number`);
  if (exp.units !== null && exp.units !== undefined) {
    assert.deepEqual(r.units, units(exp.units), 'units as the mock reported them');
    const cost = exp.cost ?? costMicros(exp.model, exp.units, exp.prices);
    assert.equal(r.cost_micros, cost, 'cost_micros per the pricing rule');
  }
  assert.equal(typeof r.cost_micros, 'number');
  assert.deepEqual(Object.keys(r.charged).sort(), CHARGED_KEYS);
  if (exp.charged) assert.deepEqual(r.charged, exp.charged, 'charged split');
  if (billedTo === 'wallet') assert.equal(r.charged.plan_credits_micros + r.charged.wallet_micros, r.cost_micros, 'a wallet line is charged its cost');
  else assert.deepEqual(r.charged, { plan_credits_micros: 0, wallet_micros: 0 }, 'a BYOK line is charged nothing');
  if (exp.upstreamRequestId !== undefined) assert.equal(r.upstream_request_id, exp.upstreamRequestId);
  assert.equal(typeof r.ttfb_ms === 'number' || r.ttfb_ms === null, true, 'ttfb_ms number or null');
  if (exp.status === undefined || exp.status < 500) assert.equal(typeof r.ttfb_ms, 'number');
  assert.equal(typeof r.duration_ms, 'number');
  assert.ok(r.duration_ms >= 0);
  if (typeof r.ttfb_ms === 'number') assert.ok(r.ttfb_ms >= 0 && r.ttfb_ms <= r.duration_ms, '0 <= ttfb_ms <= duration_ms');
}

// The mock received the platform key (or, BYOK: the key given as
// platformKey) and nothing of the proxy key.
export function checkUpstreamAuth(mockRec, { platformKey, proxyKey, what = 'platform key injected' }) {
  assert.equal(mockRec.headers.authorization, `Bearer ${platformKey}`, what);
  const seen = [mockRec.url, mockRec.rawHeaders.join('\n'), mockRec.body ? mockRec.body.toString('latin1') : ''].join('\n');
  assert.ok(!seen.includes(proxyKey), 'proxy key must not reach the upstream (headers, url, body)');
  const authHeaders = mockRec.rawHeaders.filter((_, i) => i % 2 === 0 && mockRec.rawHeaders[i].toLowerCase() === 'authorization');
  assert.equal(authHeaders.length, 1, 'exactly one Authorization header upstream');
}
