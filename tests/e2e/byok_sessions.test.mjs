// byok_sessions.test.mjs - session pinning (DESIGN §3.3) and the balance gate
// (§3.4) through the real binary. A running session keeps the decision of
// its first request for every slot whatever changes meanwhile (toggle,
// slot, the owner's wallet_deduction); a new session id sees the change;
// a request without X-Session-Id is its own session; session ids are
// scoped to the tenant. Key rotation applies at once; a deleted pinned
// connection falls back to the platform key with fallback_reason. Wallet
// lines of new sessions are refused at zero balance, BYOK lines are not,
// and a running session is not cut off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  byokSetup, mkTenant, connect, canaryKey, setByok, call, line, expectResolve, assertOpenAIError, sid,
} from './lib/byok.mjs';

let h;
before(async () => { h = await byokSetup(); });
after(async () => { await h?.teardown(); });

const admin = () => h.proxy.admin;
const P = () => h.proxy.platformKey;

async function byokTenant(opts = {}) {
  const t = await mkTenant(h, { byok: true, ...opts });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, true, { openai: c.id });
  return { t, c };
}

// Shorthands: a BYOK line on connection c, a platform line, for tenant t.
const onByok = (t, c, payerId, session, extra = {}) => line(h, t, { session, key: c.apiKey, billedTo: 'byok', payerId, connectionId: c.id, ...extra });
const onWallet = (t, payerId, session, extra = {}) => line(h, t, { session, key: P(), billedTo: 'wallet', payerId, ...extra });

test('toggle off mid-session: the running session stays on BYOK, a new session and header-less requests do not', async () => {
  const { t, c } = await byokTenant();
  const s1 = sid();
  await onByok(t, c, t.tenantId, s1);
  await setByok(h, t.tenantId, false);
  await onByok(t, c, t.tenantId, s1);
  const s2 = sid();
  await onWallet(t, t.tenantId, s2);
  await onWallet(t, t.tenantId, undefined);
  await onByok(t, c, t.tenantId, s1);
  await onWallet(t, t.tenantId, s2);
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'wallet', payerId: t.tenantId });
});

test('toggle on mid-session: a session started on the wallet stays there; a new one is BYOK', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId);
  await setByok(h, t.tenantId, false, { openai: c.id });
  const s1 = sid();
  await onWallet(t, t.tenantId, s1);
  await setByok(h, t.tenantId, true);
  await onWallet(t, t.tenantId, s1);
  await onByok(t, c, t.tenantId, sid());
  await onByok(t, c, t.tenantId, undefined);
});

test('slot changed to another connection mid-session: the session keeps the first, a new one gets the second', async () => {
  const { t, c } = await byokTenant();
  const c2 = await connect(h, t.tenantId);
  const s1 = sid();
  await onByok(t, c, t.tenantId, s1);
  await setByok(h, t.tenantId, true, { openai: c2.id });
  await onByok(t, c, t.tenantId, s1);
  const s2 = sid();
  await onByok(t, c2, t.tenantId, s2);
  await onByok(t, c, t.tenantId, s1);
  await onByok(t, c2, t.tenantId, s2);
});

test('slot cleared mid-session: the session keeps its connection, a new one is on the platform key', async () => {
  const { t, c } = await byokTenant();
  const s1 = sid();
  await onByok(t, c, t.tenantId, s1);
  await setByok(h, t.tenantId, true, { openai: null });
  await onByok(t, c, t.tenantId, s1);
  await onWallet(t, t.tenantId, sid());
});

test('the decision for every slot is taken at the first request, whatever its provider', async () => {
  const { t, c } = await byokTenant();
  const s1 = sid();
  // The session starts with a platform-only provider...
  await line(h, t, { provider: 'deepseek', session: s1, key: h.deepseekKey, billedTo: 'wallet', payerId: t.tenantId });
  await setByok(h, t.tenantId, false);
  // ...and its first openai request, after the toggle went off, is still BYOK.
  await onByok(t, c, t.tenantId, s1);
  await onWallet(t, t.tenantId, sid());
});

test('agency: wallet_deduction flipped mid-session does not move a running subaccount session', async () => {
  const a = await mkTenant(h, { byok: true, agency: true });
  const ca = await connect(h, a.tenantId);
  await setByok(h, a.tenantId, true, { openai: ca.id });
  const s = await mkTenant(h, { parent: a.tenantId });
  const w = [a.tenantId, s.tenantId];
  const s1 = sid();
  await onByok(s, ca, a.tenantId, s1, { watch: w });
  await admin().patchTenant(a.tenantId, { wallet_deduction: true });
  await onByok(s, ca, a.tenantId, s1, { watch: w });
  const s2 = sid();
  await onWallet(s, a.tenantId, s2, { watch: w });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  // And back: the platform session stays on the platform, a new one is on A's key.
  await admin().patchTenant(a.tenantId, { wallet_deduction: false });
  await onWallet(s, a.tenantId, s2, { watch: w });
  await onByok(s, ca, a.tenantId, s1, { watch: w });
  await onByok(s, ca, a.tenantId, sid(), { watch: w });
});

test('rotation applies at once, to pinned sessions and new ones', async () => {
  const { t, c } = await byokTenant();
  const s1 = sid();
  await onByok(t, c, t.tenantId, s1);
  const rotated = { ...c, apiKey: canaryKey('rotated') };
  const r = await admin().patchConnection(t.tenantId, c.id, { api_key: rotated.apiKey });
  assert.ok(r.key_hint.endsWith(rotated.apiKey.slice(-4)));
  await onByok(t, rotated, t.tenantId, s1);
  await onByok(t, rotated, t.tenantId, sid());
  await onByok(t, rotated, t.tenantId, undefined);
  // Renaming changes nothing on the wire.
  await admin().patchConnection(t.tenantId, c.id, { name: 'renamed' });
  await onByok(t, rotated, t.tenantId, s1);
});

test('a deleted pinned connection: the session falls back to the platform key with fallback_reason', async () => {
  const { t, c } = await byokTenant();
  const s1 = sid();
  await onByok(t, c, t.tenantId, s1);
  await admin().deleteConnection(t.tenantId, c.id);
  await onWallet(t, t.tenantId, s1, { fallbackReason: 'connection_deleted' });
  await onWallet(t, t.tenantId, s1, { fallbackReason: 'connection_deleted' });
  // A new session: the slot is empty now, plain platform, no fallback.
  await onWallet(t, t.tenantId, sid());
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'wallet', payerId: t.tenantId });
});

test('a deleted pinned connection of the agency owner: the subaccount session falls back, the owner pays', async () => {
  const a = await mkTenant(h, { byok: true, agency: true });
  const ca = await connect(h, a.tenantId);
  await setByok(h, a.tenantId, true, { openai: ca.id });
  const s = await mkTenant(h, { parent: a.tenantId });
  const s1 = sid();
  await onByok(s, ca, a.tenantId, s1, { watch: [s.tenantId] });
  await admin().deleteConnection(a.tenantId, ca.id);
  await onWallet(s, a.tenantId, s1, { fallbackReason: 'connection_deleted', watch: [s.tenantId] });
});

test('session ids are scoped to the tenant: the same id in two tenants is two sessions', async () => {
  const { t: t1, c: c1 } = await byokTenant();
  const { t: t2, c: c2 } = await byokTenant();
  const t3 = await mkTenant(h); // no byok at all
  const shared = sid('shared');
  await onByok(t1, c1, t1.tenantId, shared);
  await onByok(t2, c2, t2.tenantId, shared);
  await onWallet(t3, t3.tenantId, shared);
  // t2's settings change: its session keeps c2, t1's is unaffected.
  await setByok(h, t2.tenantId, false);
  await onByok(t2, c2, t2.tenantId, shared);
  await onByok(t1, c1, t1.tenantId, shared);
  // t1 goes off and starts no new session; t3's request still is its own.
  await setByok(h, t1.tenantId, false);
  await onByok(t1, c1, t1.tenantId, shared);
  await onWallet(t3, t3.tenantId, shared);
  const recs = await admin().usage({ tenant_id: t1.tenantId, session_id: shared });
  assert.ok(recs.every((r) => r.tenant_id === t1.tenantId && r.key_id === t1.keyId));
});

test('balance gate: a wallet line of a new session at zero balance is refused with 402, nothing upstream', async () => {
  const t = await mkTenant(h, { plan: 0, wallet: 0 });
  const mark = h.mock.requests.length;
  for (const [provider, session] of [['openai', undefined], ['openai', sid()], ['deepseek', undefined]]) {
    const c = await call(h, t, { provider, session });
    const err = assertOpenAIError(c.res, 402);
    assert.equal(c.res.headers['x-should-retry'], 'false');
    assert.equal(c.res.headers['x-billed-to'], 'wallet', 'the 402 carries x-billed-to');
    assert.ok(!c.res.body.toString().includes(t.key), 'no key in the error');
    assert.equal(typeof err.message, 'string');
  }
  // Negative balances (plan credits positive but the sum ≤ 0) are refused too.
  const neg = await mkTenant(h, { plan: 100, wallet: 0 });
  await admin().topup(neg.tenantId, { wallet_micros: -100 });
  assertOpenAIError((await call(h, neg, {})).res, 402);
  // The SDK sees a 402 and does not retry.
  await assert.rejects(h.sdk(t.key, { maxRetries: 2 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 402);
  assert.equal(h.mock.since(mark).length, 0, 'nothing reached the upstream');
  assert.deepEqual((await admin().usage({ tenant_id: t.tenantId })).length, 0, 'no usage record for a refused request');
});

test('balance gate: a BYOK line is served at zero balance and moves nothing', async () => {
  const { t, c } = await byokTenant({ plan: 0, wallet: 0 });
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'byok', connectionId: c.id, payerId: t.tenantId });
  await onByok(t, c, t.tenantId, undefined);
  await onByok(t, c, t.tenantId, sid());
  // Its platform-only lines are wallet lines: refused at start.
  const ds = await call(h, t, { provider: 'deepseek', session: sid() });
  assertOpenAIError(ds.res, 402);
  assert.equal(ds.ups.length, 0);
  const b = await admin().getTenant(t.tenantId);
  assert.deepEqual([b.plan_credits_micros, b.wallet_micros], [0, 0]);
});

test("balance gate for a subaccount: the owner's balance counts, never the subaccount's", async () => {
  const a = await mkTenant(h, { byok: true, agency: true, walletDeduction: true, plan: 0, wallet: 0 });
  const ca = await connect(h, a.tenantId);
  await setByok(h, a.tenantId, true, { openai: ca.id });
  const s = await mkTenant(h, { parent: a.tenantId, plan: 0, wallet: 5_000_000 });
  // Owner broke, wallet_deduction on: S's wallet lines are refused though S has money.
  const r = await call(h, s, { session: sid() });
  assertOpenAIError(r.res, 402);
  assert.equal(r.ups.length, 0);
  // wallet_deduction off: S runs on A's key, served at A's zero balance.
  await admin().patchTenant(a.tenantId, { wallet_deduction: false });
  await onByok(s, ca, a.tenantId, sid(), { watch: [s.tenantId] });
  // S broke, A funded, wallet_deduction on: served, A pays.
  const s0 = await mkTenant(h, { parent: a.tenantId, plan: 0, wallet: 0 });
  await admin().patchTenant(a.tenantId, { wallet_deduction: true });
  await admin().topup(a.tenantId, { wallet_micros: 1_000_000 });
  await onWallet(s0, a.tenantId, sid(), { watch: [s0.tenantId] });
});

test('balance gate: a pinned session keeps its keys, not its credit: every new request is gated', async () => {
  const t = await mkTenant(h, { plan: 0, wallet: 500_000 });
  const s1 = sid();
  await onWallet(t, t.tenantId, s1);
  const b = await admin().getTenant(t.tenantId);
  await admin().topup(t.tenantId, { wallet_micros: -b.wallet_micros });
  const zero = await admin().getTenant(t.tenantId);
  assert.equal(zero.wallet_micros + zero.plan_credits_micros, 0);
  // Every new request of the pinned session, and new sessions, are refused.
  for (const session of [s1, sid(), undefined]) {
    const c = await call(h, t, { session });
    assertOpenAIError(c.res, 402);
    assert.equal(c.res.headers['x-should-retry'], 'false');
    assert.equal(c.ups.length, 0);
  }
  // A top-up lets the same session in again, on its pinned keys.
  await admin().topup(t.tenantId, { wallet_micros: 10_000_000 });
  await onWallet(t, t.tenantId, s1);
  await onWallet(t, t.tenantId, sid());
});

test('every tenant: one usage record per upstream request, each in the JSONL file once', async () => {
  await h.checkAllRecords();
});
