// live_sessions.test.mjs - tenant limits.live_sessions (DESIGN §6): at most N
// WebSocket sessions and streaming responses of a tenant open at once; the
// next gets 429 in the provider's shape (tenant_limit, x-should-retry: true,
// retry-after), nothing upstream; a subaccount also counts against its
// agency owner's limit; plain requests are not counted; a place freed is
// taken again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { providersSetup } from './lib/providers.mjs';
import { chatStreamEvents } from './lib/mock_openai.mjs';
import { httpRequest, waitFor, randomHex, makeWav } from './lib/util.mjs';

let h;
before(async () => { h = await providersSetup({ providers: ['deepgram'] }); });
after(async () => { await h?.teardown(); });

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

async function mkTenant({ limit, parent = null, agency = false } = {}) {
  const id = `t_live_${randomHex(5)}`;
  const body = { id, name: id, features: { byok: false, agency }, parent_id: parent, wallet_micros: 10_000_000 };
  if (limit !== undefined) body.limits = { live_sessions: limit };
  const t = await h.proxy.admin.createTenant(body);
  const k = await h.proxy.admin.createKey(id);
  return { tenantId: id, key: k.key, tenant: t };
}

// Upstream chat streams that stay open until released (all of them).
function holdStreams() {
  let release;
  const released = new Promise((r) => { release = r; });
  const open = [];
  h.mock.override({
    path: '/v1/chat/completions',
    times: Infinity,
    handle: async (ctx) => {
      const events = chatStreamEvents(ctx.rec, ctx.mock.config.chat);
      ctx.head(200, { 'content-type': 'text/event-stream' });
      await ctx.write(events[0].data);
      open.push(ctx.rec);
      await Promise.race([released, new Promise((r) => ctx.res.once('close', r))]);
      if (ctx.res.destroyed) return;
      for (const e of events.slice(1)) await ctx.write(e.data);
      await ctx.end();
    },
  });
  return { open, release: () => { release(); h.mock.clearOverrides(); } };
}

const stream = (t) => httpRequest(`${h.proxy.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
  body: { ...CHAT, stream: true } });
const plain = (t) => httpRequest(`${h.proxy.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` }, body: CHAT });

function assertTenantLimit(r) {
  assert.equal(r.status, 429, String(r.body));
  const j = JSON.parse(r.body);
  assert.equal(j.error.code, 'tenant_limit');
  assert.equal(r.headers['x-should-retry'], 'true');
  assert.equal(r.headers['retry-after'], '1');
  return j.error.message;
}

test('admin: limits.live_sessions is set on create and PATCH, read back, cleared with null, checked', async () => {
  const t = await mkTenant({ limit: 2 });
  assert.deepEqual(t.tenant.limits, { live_sessions: 2 });
  let r = await h.proxy.admin.patchTenant(t.tenantId, { limits: { live_sessions: 5 } });
  assert.deepEqual(r.limits, { live_sessions: 5 });
  r = await h.proxy.admin.patchTenant(t.tenantId, { name: 'renamed' });
  assert.deepEqual(r.limits, { live_sessions: 5 }, 'a PATCH without limits keeps them');
  r = await h.proxy.admin.patchTenant(t.tenantId, { limits: { live_sessions: null } });
  assert.deepEqual(r.limits, { live_sessions: null });
  for (const bad of [{ live_sessions: 0 }, { live_sessions: -1 }, { live_sessions: '3' }, { sessions: 3 }, 7]) {
    const res = await h.proxy.admin.req('PATCH', `/admin/tenants/${t.tenantId}`, { limits: bad });
    assert.equal(res.status, 400, `limits ${JSON.stringify(bad)}: ${res.text}`);
  }
});

test('limit 3: three streams open, the fourth gets 429 tenant_limit with nothing upstream; plain requests pass; a freed place is taken', async () => {
  const t = await mkTenant({ limit: 3 });
  const held = holdStreams();
  const running = [stream(t), stream(t), stream(t)];
  await waitFor(() => held.open.length === 3, { what: 'three streams upstream' });
  const mark = h.mock.requests.length;
  assertTenantLimit(await stream(t));
  assert.equal(h.mock.requests.length, mark, 'nothing upstream for the refused stream');
  // A WebSocket session counts too (refused at the handshake).
  const ws = new WebSocket(`ws://127.0.0.1:${h.proxy.port}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`,
    [], { headers: { authorization: `Token ${t.key}` } });
  const status = await new Promise((resolve) => { ws.on('unexpected-response', (req, res) => resolve(res.statusCode)); ws.on('open', () => resolve(101)); ws.on('error', () => resolve(-1)); });
  assert.equal(status, 429);
  h.mock.clearOverrides();
  assert.equal((await plain(t)).status, 200, 'a plain request is not a live session');
  held.release();
  for (const r of await Promise.all(running)) assert.equal(r.status, 200);
  assert.equal((await stream(t)).status, 200, 'places freed');
});

test('a subaccount counts against its agency owner: owner limit 2 over two subaccounts', async () => {
  const a = await mkTenant({ limit: 2, agency: true });
  const s1 = await mkTenant({ parent: a.tenantId });
  const s2 = await mkTenant({ parent: a.tenantId, limit: 10 });
  const held = holdStreams();
  const running = [stream(s1), stream(s2)];
  await waitFor(() => held.open.length === 2, { what: 'two streams upstream' });
  const msg = assertTenantLimit(await stream(s2));
  assert.match(msg, /agency owner/);
  assertTenantLimit(await stream(a));
  held.release();
  for (const r of await Promise.all(running)) assert.equal(r.status, 200);
  assert.equal((await stream(s1)).status, 200);
});

test('a Deepgram live socket holds its place until it closes', async () => {
  const t = await mkTenant({ limit: 1 });
  const url = `ws://127.0.0.1:${h.proxy.port}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`;
  const ws = new WebSocket(url, [], { headers: { authorization: `Token ${t.key}` } });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(makeWav(0.2).subarray(44));
  assertTenantLimit(await stream(t));
  const closed = new Promise((r) => ws.on('close', r));
  ws.close(1000);
  await closed;
  await waitFor(async () => (await stream(t)).status === 200, { what: 'the place freed by the closed socket' });
});
