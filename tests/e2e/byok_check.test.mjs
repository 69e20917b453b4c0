// byok_check.test.mjs - POST /admin/tenants/{id}/byok/check (DESIGN §6):
// not_configured for empty slots; one tiny real call per configured slot
// through the configured upstreams (OpenAI: 1-token gpt-4o-mini completion;
// ElevenLabs: short TTS with eleven_turbo_v2_5; Azure: voices list) with
// the connection's key; ok, or error with the provider's reason; an Azure
// connection failure blames the region; the admin API and the data plane
// keep answering while a check waits on a slow provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { byokSetup, mkTenant, connect, canaryKey, setByok, line } from './lib/byok.mjs';
import { startProxy, newTenant } from './lib/proxy.mjs';
import { freePort, httpRequest, waitFor } from './lib/util.mjs';

let h;
before(async () => {
  h = await byokSetup({
    patch: (cfg) => {
      const base = cfg.upstreams.openai;
      cfg.upstreams.elevenlabs = `${base}/el`;
      cfg.upstreams.azure_speech_tts = `${base}/{region}/tts`;
      cfg.upstreams.azure_speech_stt = `${base}/{region}/stt`;
    },
  });
});
after(async () => { await h?.teardown(); });

const admin = () => h.proxy.admin;
const SLOTS = ['openai', 'elevenlabs', 'azure_speech'];
const EL_TTS = /^\/el\/v1\/text-to-speech\/[^/?]+(\/stream)?$/;
const AZ_VOICES = /^\/westeurope\/tts\/cognitiveservices\/voices\/list$/;

// The scripted ElevenLabs and Azure answers: ok for `good` keys, the
// provider's own 401 otherwise.
function scriptProviders(good) {
  h.mock.override({ path: EL_TTS, times: Infinity, handle: (ctx) => {
    if (good.has(ctx.req.headers['xi-api-key'])) {
      ctx.head(200, { 'content-type': 'audio/mpeg' });
      return ctx.end(Buffer.alloc(512, 7));
    }
    return ctx.json(401, { detail: { status: 'invalid_api_key', message: 'Invalid API key' } });
  } });
  h.mock.override({ path: AZ_VOICES, times: Infinity, handle: (ctx) => {
    if (good.has(ctx.req.headers['ocp-apim-subscription-key'])) {
      return ctx.json(200, [{ Name: 'Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)', ShortName: 'en-US-JennyNeural', Locale: 'en-US' }]);
    }
    return ctx.json(401, { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } });
  } });
}

function checkShape(res) {
  assert.deepEqual(Object.keys(res).sort(), [...SLOTS].sort(), `one entry per slot: ${JSON.stringify(res)}`);
  for (const s of SLOTS) {
    assert.ok(['ok', 'error', 'not_configured'].includes(res[s].status), `${s}.status: ${res[s].status}`);
    assert.ok('detail' in res[s], `${s}.detail present`);
  }
}

function pathOf(rec) {
  return rec.url.split('?')[0];
}

test('no slot configured: every slot not_configured, nothing sent upstream', async () => {
  const t = await mkTenant(h, { byok: true });
  await connect(h, t.tenantId); // a connection alone configures no slot
  await setByok(h, t.tenantId, true);
  const mark = h.mock.requests.length;
  const res = await admin().check(t.tenantId);
  checkShape(res);
  for (const s of SLOTS) assert.equal(res[s].status, 'not_configured', s);
  assert.equal(h.mock.since(mark).length, 0);
});

test('OpenAI slot: one 1-token gpt-4o-mini completion with the connection key; ok, then error with the provider reason', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, true, { openai: c.id });
  h.mock.acceptKeys = new Set([c.apiKey, h.proxy.platformKey]);
  try {
    let mark = h.mock.requests.length;
    const ok = await admin().check(t.tenantId);
    checkShape(ok);
    assert.equal(ok.openai.status, 'ok', JSON.stringify(ok.openai));
    assert.equal(ok.elevenlabs.status, 'not_configured');
    assert.equal(ok.azure_speech.status, 'not_configured');
    let got = h.mock.since(mark);
    assert.equal(got.length, 1, 'exactly one upstream request');
    assert.equal(got[0].method, 'POST');
    assert.equal(pathOf(got[0]), '/v1/chat/completions');
    assert.equal(got[0].headers.authorization, `Bearer ${c.apiKey}`);
    assert.equal(got[0].json?.model, 'gpt-4o-mini');
    assert.equal(got[0].json?.max_tokens, 1);
    assert.ok(!got[0].json?.stream, 'not streamed');

    // A key the provider rejects: error, with the provider's message (no key).
    const bad = canaryKey('rejected');
    await admin().patchConnection(t.tenantId, c.id, { api_key: bad });
    mark = h.mock.requests.length;
    const err = await admin().check(t.tenantId);
    checkShape(err);
    assert.equal(err.openai.status, 'error');
    assert.match(String(err.openai.detail), /Incorrect API key provided/, 'the provider\'s reason');
    assert.ok(!JSON.stringify(err).includes(bad), 'the key is not in the answer');
    got = h.mock.since(mark);
    assert.equal(got.length, 1);
    assert.equal(got[0].headers.authorization, `Bearer ${bad}`, 'the rotated key is checked');
    assert.equal(got[0].json?.max_tokens, 1);

    // Back to the good key: ok again.
    await admin().patchConnection(t.tenantId, c.id, { api_key: c.apiKey });
    assert.equal((await admin().check(t.tenantId)).openai.status, 'ok');
  } finally {
    h.mock.acceptKeys = null;
  }
});

test('all three slots: one call each through the configured upstreams (ElevenLabs TTS, Azure voices list)', async () => {
  const t = await mkTenant(h, { byok: true });
  const oa = await connect(h, t.tenantId);
  const el = await connect(h, t.tenantId, { provider: 'elevenlabs' });
  const az = await connect(h, t.tenantId, { provider: 'azure_speech', region: 'westeurope' });
  await setByok(h, t.tenantId, true, { openai: oa.id, elevenlabs: el.id, azure_speech: az.id });
  scriptProviders(new Set([el.apiKey, az.apiKey]));
  try {
    let mark = h.mock.requests.length;
    const res = await admin().check(t.tenantId);
    checkShape(res);
    for (const s of SLOTS) assert.equal(res[s].status, 'ok', `${s}: ${JSON.stringify(res[s])}`);
    let got = h.mock.since(mark);
    assert.equal(got.length, 3, `one request per slot: ${got.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const o = got.find((r) => pathOf(r) === '/v1/chat/completions');
    assert.ok(o, 'the OpenAI check');
    assert.equal(o.headers.authorization, `Bearer ${oa.apiKey}`);
    const e = got.find((r) => EL_TTS.test(pathOf(r)));
    assert.ok(e, 'the ElevenLabs check: POST /v1/text-to-speech/{voice}');
    assert.equal(e.method, 'POST');
    assert.equal(e.headers['xi-api-key'], el.apiKey);
    assert.equal(e.json?.model_id, 'eleven_turbo_v2_5');
    assert.ok(typeof e.json?.text === 'string' && e.json.text.length > 0 && e.json.text.length <= 64, 'a short text');
    const a = got.find((r) => AZ_VOICES.test(pathOf(r)));
    assert.ok(a, 'the Azure check: the voices list in the connection region');
    assert.equal(a.method, 'GET');
    assert.equal(a.headers['ocp-apim-subscription-key'], az.apiKey);

    // Rejected keys: each slot reports error with its provider's reason.
    await admin().patchConnection(t.tenantId, el.id, { api_key: canaryKey('elbad') });
    await admin().patchConnection(t.tenantId, az.id, { api_key: canaryKey('azbad') });
    mark = h.mock.requests.length;
    const res2 = await admin().check(t.tenantId);
    assert.equal(res2.openai.status, 'ok');
    assert.equal(res2.elevenlabs.status, 'error');
    assert.match(String(res2.elevenlabs.detail), /Invalid API key/);
    assert.equal(res2.azure_speech.status, 'error');
    assert.match(String(res2.azure_speech.detail), /Access denied|401/);
    got = h.mock.since(mark);
    assert.equal(got.length, 3);
  } finally {
    h.mock.clearOverrides();
  }
});

test('Azure: a connection failure says the region is probably wrong', async () => {
  const closed = await freePort();
  const p = await startProxy({ mockUrl: h.mock.url, patch: (cfg) => {
    cfg.upstreams.azure_speech_tts = `http://127.0.0.1:${closed}/{region}/tts`;
    cfg.upstreams.azure_speech_stt = `http://127.0.0.1:${closed}/{region}/stt`;
  } });
  try {
    const tenantId = `t_byok_chk_${closed}`;
    await p.admin.createTenant({ id: tenantId, name: tenantId, features: { byok: true, agency: false }, parent_id: null,
      wallet_deduction: false, plan_credits_micros: 0, wallet_micros: 0 });
    const az = await p.admin.createConnection(tenantId, { provider: 'azure_speech', name: 'az', api_key: canaryKey('az'), region: 'eastus' });
    await p.admin.putByok(tenantId, { enabled: true, slots: { azure_speech: az.id } });
    const res = await p.admin.check(tenantId);
    assert.equal(res.azure_speech.status, 'error');
    assert.match(String(res.azure_speech.detail), /region/i, `the detail blames the region: ${res.azure_speech.detail}`);
    assert.equal(res.openai.status, 'not_configured');
  } finally {
    await p.stop();
    p.remove();
  }
});

test('a check waiting on a slow provider blocks neither the admin API nor the data plane', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, true, { openai: c.id });
  let release;
  const released = new Promise((r) => { release = r; });
  h.mock.override({ path: '/v1/chat/completions', handle: async (ctx) => {
    await Promise.race([released, new Promise((r) => ctx.res.once('close', r))]);
    if (!ctx.res.destroyed) await ctx.json(200, { id: 'chatcmpl-slow', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'x' }, finish_reason: 'length' }],
      usage: { prompt_tokens: 8, completion_tokens: 1, total_tokens: 9 } });
  } });
  const mark = h.mock.requests.length;
  const pending = admin().check(t.tenantId);
  try {
    await waitFor(() => h.mock.since(mark).length === 1, { what: 'the check request at the mock' });
    assert.equal(h.mock.since(mark)[0].headers.authorization, `Bearer ${c.apiKey}`);
    // Meanwhile: the admin API answers...
    const g = await httpRequest(`${h.proxy.adminUrl}/admin/tenants/${t.tenantId}`, {
      headers: { authorization: `Bearer ${h.proxy.adminToken}` }, timeout: 5000 });
    assert.equal(g.status, 200);
    const hz = await httpRequest(`${h.proxy.adminUrl}/healthz`, { timeout: 5000 });
    assert.equal(hz.status, 200);
    // ...and the data plane serves, several times (every worker).
    const other = await newTenant(h.proxy);
    for (let i = 0; i < 4; i++) {
      const r = await httpRequest(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', timeout: 5000,
        headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'during check' }] } });
      assert.equal(r.status, 200);
    }
    // The BYOK tenant's own traffic too.
    await line(h, t, { key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
  } finally {
    release();
  }
  const res = await pending;
  assert.equal(res.openai.status, 'ok', JSON.stringify(res.openai));
});
