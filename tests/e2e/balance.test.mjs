// balance.test.mjs - money that holds (DESIGN §3.3-3.4, §5): the balance gate
// on available funds (plan credits + wallet - holds of running requests),
// holds that turn into exact charges, pinned sessions gated on every new
// request (their Deepgram calls too), running streams never cut off, BYOK
// lines without holds; sockets charged as they go and ended after the unit
// that takes the payer below -balance.ws_grace_micros (BYOK never); access
// changes that reach live sessions (revoked key, deleted tenant, new parent)
// and the pins they drop.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { providersSetup } from './lib/providers.mjs';
import { slowChatStream } from './lib/mock_openai.mjs';
import { startMockRealtime } from './lib/mock_voice.mjs';
import { startProxy, balances } from './lib/proxy.mjs';
import { httpRequest, waitFor, randomHex, makeWav } from './lib/util.mjs';

const LLM_HOLD = 7000; // balance.hold_micros.llm: a value of its own, to see it used
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
const funds = (t) => t.plan_credits_micros + t.wallet_micros;

async function mkTenant(proxy, { wallet = 10_000_000, plan = 0, features = {}, parent = null } = {}) {
  const id = `t_bal_${randomHex(5)}`;
  await proxy.admin.createTenant({ id, name: id, features: { byok: false, agency: false, ...features },
    parent_id: parent, plan_credits_micros: plan, wallet_micros: wallet });
  const k = await proxy.admin.createKey(id);
  return { tenantId: id, key: k.key, keyId: k.id };
}

// Σ charged over a tenant's records (as payer).
async function charged(proxy, tenantId) {
  const recs = await proxy.admin.usage({ tenant_id: tenantId, limit: 1000 });
  return { recs, sum: recs.reduce((s, r) => s + r.charged.plan_credits_micros + r.charged.wallet_micros, 0) };
}

describe('HTTP lines, and a Deepgram live socket charged by interval', () => {
  let h;
  before(async () => {
    h = await providersSetup({
      providers: ['deepgram'],
      patch: (cfg) => {
        cfg.balance = { hold_micros: { default: 10000, llm: LLM_HOLD } };
        cfg.usage.ws_interval_s = 1;
      },
    });
  });
  after(async () => { await h?.teardown(); });

  const chat = (t, { session, stream = false } = {}) => {
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${t.key}` };
    if (session) headers['x-session-id'] = session;
    return httpRequest(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers, body: { ...CHAT, ...(stream ? { stream: true } : {}) } });
  };

  test('50 concurrent new sessions against 1 micro-USD: exactly one admitted, the overdraft is one request', async () => {
    const t = await mkTenant(h.proxy, { wallet: 1 });
    const mark = h.mock.requests.length;
    const res = await Promise.all(Array.from({ length: 50 }, () => chat(t)));
    const ok = res.filter((r) => r.status === 200).length;
    const refused = res.filter((r) => r.status === 402);
    assert.equal(ok, 1, 'exactly one admitted');
    assert.equal(refused.length, 49, 'the rest refused with 402');
    for (const r of refused) assert.equal(r.headers['x-should-retry'], 'false');
    assert.equal(h.mock.since(mark).length, 1, 'one upstream request');
    const recs = await h.proxy.admin.waitRecords(t.tenantId, 1);
    assert.equal(recs.length, 1, 'a refused request writes no record');
    const after = await h.proxy.admin.getTenant(t.tenantId);
    assert.equal(funds(after), 1 - recs[0].cost_micros, 'the balance dropped by the one charge');
    assert.equal(after.held_micros, 0, 'no hold left');
    console.log(`# 50 concurrent sessions at 1 micro-USD: admitted ${ok}, refused ${refused.length}, ` +
      `wallet after ${after.wallet_micros} (one request costs ${recs[0].cost_micros})`);
  });

  test('a running wallet request holds balance.hold_micros (held_micros), its end charges the exact cost; BYOK holds nothing', async () => {
    const t = await mkTenant(h.proxy, { wallet: 100_000 });
    const slow = slowChatStream();
    h.mock.override({ path: '/v1/chat/completions', handle: slow.handle });
    const running = chat(t, { stream: true });
    await slow.reached;
    const during = await h.proxy.admin.getTenant(t.tenantId);
    assert.equal(during.held_micros, LLM_HOLD, 'the llm hold is taken while it runs');
    assert.equal(funds(during), 100_000, 'nothing charged yet');
    slow.release();
    assert.equal((await running).status, 200);
    const [rec] = await h.proxy.admin.waitRecords(t.tenantId, 1);
    await waitFor(async () => (await h.proxy.admin.getTenant(t.tenantId)).held_micros === 0, { what: 'hold released' });
    const after = await h.proxy.admin.getTenant(t.tenantId);
    assert.ok(rec.cost_micros > 0);
    assert.equal(funds(after), 100_000 - rec.cost_micros, 'the hold became the exact charge');

    // BYOK: no hold, even at a zero wallet.
    const b = await mkTenant(h.proxy, { wallet: 0, features: { byok: true } });
    const c = await h.proxy.admin.createConnection(b.tenantId, { provider: 'openai', name: 'own', api_key: `sk-own-${randomHex(8)}` });
    await h.proxy.admin.putByok(b.tenantId, { enabled: true, slots: { openai: c.id } });
    const slow2 = slowChatStream();
    h.mock.override({ path: '/v1/chat/completions', handle: slow2.handle });
    const byok = chat(b, { stream: true });
    await slow2.reached;
    assert.equal((await h.proxy.admin.getTenant(b.tenantId)).held_micros, 0, 'a BYOK line takes no hold');
    slow2.release();
    const r2 = await byok;
    assert.equal(r2.status, 200);
    assert.equal(r2.headers['x-billed-to'], 'byok');
  });

  test('a running stream is never cut off when the balance falls to zero under it', async () => {
    const t = await mkTenant(h.proxy, { wallet: 100_000 });
    const slow = slowChatStream();
    h.mock.override({ path: '/v1/chat/completions', handle: slow.handle });
    const running = chat(t, { stream: true });
    await slow.reached;
    await h.proxy.admin.topup(t.tenantId, { wallet_micros: -100_000 });
    assert.equal((await chat(t)).status, 402, 'a new request is refused meanwhile');
    slow.release();
    const r = await running;
    assert.equal(r.status, 200);
    assert.match(r.body.toString(), /data: \[DONE\]/, 'the stream ran to its end');
    const [rec] = await h.proxy.admin.waitRecords(t.tenantId, 1);
    await waitFor(async () => funds(await h.proxy.admin.getTenant(t.tenantId)) === -rec.cost_micros, { what: 'charged below zero' });
  });

  test('a pinned session keeps its keys, not its credit: each new request is gated, its Deepgram call too', async () => {
    const t = await mkTenant(h.proxy, { wallet: 5 }); // less than one request costs
    const session = `conv-${randomHex(4)}`;
    const first = await chat(t, { session });
    assert.equal(first.status, 200);
    const [rec] = await h.proxy.admin.waitRecords(t.tenantId, 1);
    await waitFor(async () => funds(await h.proxy.admin.getTenant(t.tenantId)) === 5 - rec.cost_micros, { what: 'charge committed' });
    const markO = h.mock.requests.length, markD = h.mocks.deepgram.requests.length;
    for (let i = 0; i < 5; i++) assert.equal((await chat(t, { session })).status, 402, `request ${i + 2} of the pinned session`);
    const dg = await httpRequest(`${h.proxy.url}/deepgram/v1/listen?model=nova-3`, {
      method: 'POST', headers: { authorization: `Token ${t.key}`, 'content-type': 'audio/wav', 'x-session-id': session },
      body: makeWav(0.5) });
    assert.equal(dg.status, 402, `deepgram in the pinned session: ${dg.body}`);
    assert.equal(JSON.parse(dg.body).err_code, 'insufficient_balance', "Deepgram's error shape");
    assert.equal(h.mock.since(markO).length + h.mocks.deepgram.since(markD).length, 0, 'nothing upstream');
    const after = await h.proxy.admin.getTenant(t.tenantId);
    assert.equal(funds(after), 5 - rec.cost_micros, 'the overdraft stopped at one request');
  });

  test('Deepgram live on the wallet: each interval record is charged while it streams; past zero it ends (1008), in Deepgram\'s shape', async () => {
    // nova-3 at 4300 micro-USD a minute: 10 s of audio cost 717.
    const t = await mkTenant(h.proxy, { wallet: 1000 });
    const ws = new WebSocket(`ws://127.0.0.1:${h.proxy.port}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`,
      [], { headers: { authorization: `Token ${t.key}` } });
    const texts = [];
    ws.on('message', (m, binary) => { if (!binary) texts.push(JSON.parse(m.toString())); });
    const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const tenSeconds = makeWav(10).subarray(44);
    ws.send(tenSeconds);
    // The first interval record is charged while the socket is still open.
    const first = await waitFor(async () => (await h.proxy.admin.usage({ tenant_id: t.tenantId })).find((r) => r.line === 'stt'),
      { what: 'first interval record' });
    assert.equal(first.final, false);
    assert.equal(ws.readyState, WebSocket.OPEN, 'still open: 1000 - 717 > 0');
    // The balance already moved by what the records written so far charged.
    await waitFor(async () => {
      const recs = await h.proxy.admin.usage({ tenant_id: t.tenantId });
      const sum = recs.reduce((a, r) => a + r.charged.plan_credits_micros + r.charged.wallet_micros, 0);
      return sum >= first.cost_micros && funds(await h.proxy.admin.getTenant(t.tenantId)) === 1000 - sum;
    }, { what: 'balance moved by the interval charges while the socket is open' });
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.send(tenSeconds);
    const end = await closed;
    assert.equal(end.code, 1008);
    assert.equal(end.reason, 'insufficient_balance');
    assert.equal(texts.at(-1)?.err_code, 'insufficient_balance', "the last message is Deepgram's error shape");
    const recs = await waitFor(async () => {
      const r = await h.proxy.admin.usage({ tenant_id: t.tenantId });
      return r.some((x) => x.line === 'stt' && x.final) ? r : null;
    }, { what: 'final stt record' });
    const sum = recs.reduce((a, r) => a + r.charged.plan_credits_micros + r.charged.wallet_micros, 0);
    const after = await h.proxy.admin.getTenant(t.tenantId);
    assert.equal(funds(after), 1000 - sum, 'Σ charged = balance drop');
    assert.ok(funds(after) <= 0 && funds(after) > -800, `overdraft bounded by one interval (${funds(after)})`);
  });

  test('a subaccount that left its agency does not keep the agency\'s BYOK key in a pinned session', async () => {
    const a = await mkTenant(h.proxy, { features: { byok: true, agency: true } });
    const ownKey = `sk-agency-${randomHex(8)}`;
    const c = await h.proxy.admin.createConnection(a.tenantId, { provider: 'openai', name: 'agency', api_key: ownKey });
    await h.proxy.admin.putByok(a.tenantId, { enabled: true, slots: { openai: c.id } });
    const s = await mkTenant(h.proxy, { parent: a.tenantId });
    const session = `conv-${randomHex(4)}`;
    let mark = h.mock.requests.length;
    const r1 = await chat(s, { session });
    assert.equal(r1.headers['x-billed-to'], 'byok');
    assert.equal(h.mock.since(mark)[0].headers.authorization, `Bearer ${ownKey}`);
    await h.proxy.admin.patchTenant(s.tenantId, { parent_id: null });
    await h.proxy.admin.putByok(a.tenantId, { enabled: false, slots: { openai: c.id } });
    mark = h.mock.requests.length;
    const r2 = await chat(s, { session });
    assert.equal(r2.status, 200);
    assert.equal(r2.headers['x-billed-to'], 'wallet', 'the pin was dropped with the parent change');
    assert.equal(h.mock.since(mark)[0].headers.authorization, `Bearer ${h.proxy.platformKey}`);
    const rec = await h.proxy.admin.waitRecord(s.tenantId, r2.headers['x-proxy-request-id']);
    assert.equal(rec.payer_id, s.tenantId, 'it pays for itself now');
  });
});

describe('WebSocket sessions', () => {
  const PRICE = { input_per_1m: 4000000, cached_input_per_1m: 400000, output_per_1m: 16000000,
    audio_input_per_1m: 32000000, audio_output_per_1m: 64000000 };
  // The mock's response.done usage at PRICE: 7974.4 micro-USD per response.
  const PER_RESPONSE = 7974;
  let mock, proxy;
  before(async () => {
    mock = await startMockRealtime();
    proxy = await startProxy({
      mockUrl: mock.url,
      patch: (cfg) => {
        cfg.pricing.openai['gpt-realtime'] = PRICE;
        cfg.usage.ws_interval_s = 3600;
      },
    });
  });
  after(async () => {
    await proxy?.stop();
    proxy?.remove();
    await mock?.close();
  });

  // A raw Realtime session on the plain listener: events in order, close.
  async function open(t, headers = {}) {
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, [],
      { headers: { authorization: `Bearer ${t.key}`, ...headers } });
    const events = [];
    ws.on('message', (m) => events.push(JSON.parse(m.toString())));
    const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    await waitFor(() => events.some((e) => e.type === 'session.created'), { what: 'session.created' });
    const respond = async () => {
      const n = events.filter((e) => e.type === 'response.done').length;
      ws.send(JSON.stringify({ type: 'response.create' }));
      await waitFor(() => events.filter((e) => e.type === 'response.done').length > n, { what: 'response.done' });
    };
    return { ws, events, closed, respond };
  }

  test('each response.done is charged as it goes; past the grace the session ends after that response', async () => {
    const t = await mkTenant(proxy, { wallet: 12_000 });
    const s = await open(t);
    await s.respond();
    // Charged while the session is open, not at its end.
    await waitFor(async () => funds(await proxy.admin.getTenant(t.tenantId)) === 12_000 - PER_RESPONSE,
      { what: 'first response charged while the socket is open' });
    s.ws.send(JSON.stringify({ type: 'response.create' }));
    const end = await s.closed;
    assert.equal(end.code, 1008);
    assert.equal(end.reason, 'insufficient_balance');
    const types = s.events.map((e) => e.type);
    const lastDone = types.lastIndexOf('response.done');
    assert.equal(types.filter((x) => x === 'response.done').length, 2, `the second response was delivered whole: ${types.join(' ')}`);
    const err = s.events[lastDone + 1];
    assert.equal(err?.type, 'error', 'a provider-shaped error event follows it');
    assert.equal(err.error.code, 'insufficient_balance');
    const { recs, sum } = await waitFor(async () => {
      const c = await charged(proxy, t.tenantId);
      return c.recs.some((r) => r.final && r.line === 'realtime') ? c : null;
    }, { what: 'final record' });
    const after = await proxy.admin.getTenant(t.tenantId);
    assert.equal(funds(after), 12_000 - sum, 'Σ charged = balance drop');
    const units = recs.filter((r) => r.line === 'realtime' && !r.final);
    assert.equal(units.length, 2, 'one record per response.done');
    // Each record's cost is what the session's cost grew by (no rounding per record).
    assert.equal(units.reduce((a, r) => a + r.cost_micros, 0), 2 * PER_RESPONSE + 1);
    assert.ok(funds(after) <= 0 && funds(after) > -PER_RESPONSE, 'overdraft bounded by one response');
    assert.equal(after.held_micros, 0);
    // A new session is refused at the handshake.
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, [], { headers: { authorization: `Bearer ${t.key}` } });
    const status = await new Promise((resolve) => { ws.on('unexpected-response', (req, res) => resolve(res.statusCode)); ws.on('error', () => resolve(-1)); });
    assert.equal(status, 402);
  });

  test('a BYOK session is never ended for balance', async () => {
    const t = await mkTenant(proxy, { wallet: 0, features: { byok: true } });
    const own = `sk-own-${randomHex(8)}`;
    mock.acceptKeys = null;
    const c = await proxy.admin.createConnection(t.tenantId, { provider: 'openai', name: 'own', api_key: own });
    await proxy.admin.putByok(t.tenantId, { enabled: true, slots: { openai: c.id } });
    const s = await open(t);
    for (let i = 0; i < 3; i++) await s.respond();
    assert.equal(s.ws.readyState, WebSocket.OPEN);
    s.ws.close(1000);
    assert.equal((await s.closed).code, 1000);
  });

  test('revoking the key, deleting the tenant or changing its parent closes its open sockets (1008) within a second', async () => {
    const t = await mkTenant(proxy);
    const s = await open(t);
    let t0 = Date.now();
    await proxy.admin.revokeKey(t.tenantId, t.keyId);
    let end = await s.closed;
    assert.equal(end.code, 1008);
    assert.equal(end.reason, 'access_revoked');
    assert.ok(end.at - t0 < 1000, `closed ${end.at - t0} ms after the revocation`);
    assert.equal(s.events.at(-1).error?.code, 'access_revoked');

    const d = await mkTenant(proxy);
    const s2 = await open(d);
    t0 = Date.now();
    await proxy.admin.req('DELETE', `/admin/tenants/${d.tenantId}`);
    end = await s2.closed;
    assert.equal(end.code, 1008);
    assert.ok(end.at - t0 < 1000, `closed ${end.at - t0} ms after the deletion`);

    const a = await mkTenant(proxy, { features: { agency: true } });
    const sub = await mkTenant(proxy, { parent: a.tenantId });
    const s3 = await open(sub);
    t0 = Date.now();
    await proxy.admin.patchTenant(sub.tenantId, { parent_id: null });
    end = await s3.closed;
    assert.equal(end.code, 1008);
    assert.equal(end.reason, 'access_changed');
    assert.ok(end.at - t0 < 1000, `closed ${end.at - t0} ms after the parent change`);
    // Each ended session still wrote its records.
    for (const id of [t.tenantId, sub.tenantId]) {
      await waitFor(async () => (await proxy.admin.usage({ tenant_id: id })).some((r) => r.final), { what: `final record of ${id}` });
    }
  });
});
