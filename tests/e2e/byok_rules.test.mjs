// byok_rules.test.mjs - the resolution table of DESIGN §3 through the real
// binary: standalone tenants (toggle, slots, plan feature), agency owners
// and subaccounts (wallet_deduction, owner lacking agency or byok, the
// subaccount's own settings ignored), a platform-only provider (deepseek)
// in a BYOK session, mixed sessions. For every line: the key the mock
// received, x-billed-to, the usage record's billing fields, which balances
// moved, and that GET /resolve announced the same. Then the admin side:
// connections, ownership 400s, cross-tenant 404s, Azure region checks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  byokSetup, mkTenant, connect, canaryKey, setByok, call, line, expectResolve, sid, OPENAI_COST, DEEPSEEK_COST,
} from './lib/byok.mjs';

let h;
before(async () => { h = await byokSetup(); });
after(async () => { await h?.teardown(); });

const admin = () => h.proxy.admin;
const P = () => h.proxy.platformKey;

// A standalone tenant with the byok feature and an OpenAI connection.
async function byokTenant({ enabled = true, selectOpenai = true, ...opts } = {}) {
  const t = await mkTenant(h, { byok: true, ...opts });
  const c = await connect(h, t.tenantId);
  const s = await setByok(h, t.tenantId, enabled, { openai: selectOpenai ? c.id : null });
  assert.equal(s.enabled, enabled);
  assert.equal(s.slots.openai, selectOpenai ? c.id : null);
  return { t, c };
}

// An agency owner A (features as given, BYOK on with an OpenAI connection
// when it has byok) and a subaccount S of A.
// A plan that lost byok or agency after the subaccount joined (a parent must
// have agency when the subaccount is attached, DESIGN §6).
async function agency({ byok = true, agency: isAgency = true, walletDeduction = false, sub = {}, owner = {} } = {}) {
  const a = await mkTenant(h, { byok: true, agency: true, walletDeduction, ...owner });
  const ca = await connect(h, a.tenantId);
  await setByok(h, a.tenantId, true, { openai: ca.id });
  const s = await mkTenant(h, { parent: a.tenantId, ...sub });
  if (!byok || !isAgency) await admin().patchTenant(a.tenantId, { features: { byok, agency: isAgency } });
  return { a, ca, s };
}

test('standalone, toggle on, slot set: own key, billed byok, nothing moves; /openai/v1 and the SDK too', async () => {
  const { t, c } = await byokTenant({ plan: 300 });
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'byok', connectionId: c.id, payerId: t.tenantId });
  const rec = await line(h, t, { key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
  assert.equal(rec.cost_micros, OPENAI_COST, 'cost computed for insight');
  await line(h, t, { prefix: '/openai/v1', key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });

  // The official SDK sees x-billed-to and gets its answer.
  const mark = h.mock.requests.length;
  const { data, response } = await h.sdk(t.key).chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk' }] }).withResponse();
  h.count(t);
  assert.equal(data.choices[0].message.content, 'reply to: sdk');
  assert.equal(response.headers.get('x-billed-to'), 'byok');
  assert.equal(h.mock.since(mark)[0].headers.authorization, `Bearer ${c.apiKey}`);
  const r2 = await admin().waitRecord(t.tenantId, response.headers.get('x-proxy-request-id'));
  assert.equal(r2.billed_to, 'byok');
  h.issued.get(t.tenantId).ids.push(r2.id);
  const b = await admin().getTenant(t.tenantId);
  assert.equal(b.plan_credits_micros, 300);
  assert.equal(b.wallet_micros, 10_000_000);

  // The provider refuses the tenant's own key: its error passes through, billed byok, nothing charged.
  h.mock.acceptKeys = new Set([P()]);
  let refused;
  try {
    refused = await call(h, t, {});
  } finally {
    h.mock.acceptKeys = null;
  }
  assert.equal(refused.res.status, 401);
  assert.match(refused.res.body.toString(), /Incorrect API key provided/);
  assert.equal(refused.up.headers.authorization, `Bearer ${c.apiKey}`);
  assert.equal(refused.res.headers['x-billed-to'], 'byok');
  const rr = await admin().waitRecord(t.tenantId, refused.res.headers['x-proxy-request-id']);
  assert.equal(rr.status, 401);
  assert.equal(rr.billed_to, 'byok');
  assert.equal(rr.connection_id, c.id);
  assert.deepEqual(rr.charged, { plan_credits_micros: 0, wallet_micros: 0 });
  h.issued.get(t.tenantId).ids.push(rr.id);
  const b2 = await admin().getTenant(t.tenantId);
  assert.deepEqual([b2.plan_credits_micros, b2.wallet_micros], [300, 10_000_000]);

  const got = await admin().getByok(t.tenantId);
  assert.equal(got.enabled, true);
  assert.deepEqual(got.slots, { openai: c.id, elevenlabs: null, azure_speech: null });
});

test('standalone, toggle off (slot still set): platform key, wallet, the tenant pays', async () => {
  const { t } = await byokTenant({ enabled: false, plan: 100 });
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'wallet', payerId: t.tenantId });
  const rec = await line(h, t, { key: P(), billedTo: 'wallet', payerId: t.tenantId });
  assert.deepEqual(rec.charged, { plan_credits_micros: 100, wallet_micros: OPENAI_COST - 100 }, 'plan credits first');
  assert.equal((await admin().getByok(t.tenantId)).enabled, false);
});

test('standalone, toggle on, openai slot empty (another slot set): platform for openai', async () => {
  const t = await mkTenant(h, { byok: true });
  const el = await connect(h, t.tenantId, { provider: 'elevenlabs' });
  const openaiConn = await connect(h, t.tenantId); // exists, but is not selected
  const s = await setByok(h, t.tenantId, true, { elevenlabs: el.id });
  assert.equal(s.slots.openai, null);
  assert.equal(s.slots.elevenlabs, el.id);
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'wallet', payerId: t.tenantId });
  await expectResolve(h, t.tenantId, 'elevenlabs', { billedTo: 'byok', connectionId: el.id, payerId: t.tenantId });
  await expectResolve(h, t.tenantId, 'azure_speech', { billedTo: 'wallet', payerId: t.tenantId });
  const rec = await line(h, t, { key: P(), billedTo: 'wallet', payerId: t.tenantId });
  assert.notEqual(rec.connection_id, openaiConn.id);

  // A partial PUT changes only the slots it names.
  const s2 = await setByok(h, t.tenantId, true, { openai: openaiConn.id });
  assert.deepEqual(s2.slots, { openai: openaiConn.id, elevenlabs: el.id, azure_speech: null });
  await line(h, t, { key: openaiConn.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: openaiConn.id });
});

test('feature byok missing: PUT /byok is 403, and settings made before a downgrade are not used', async () => {
  const plain = await mkTenant(h);
  const r = await admin().req('PUT', `/admin/tenants/${plain.tenantId}/byok`, { enabled: true, slots: { openai: null } });
  assert.equal(r.status, 403, r.text);
  await expectResolve(h, plain.tenantId, 'openai', { billedTo: 'wallet', payerId: plain.tenantId });
  await line(h, plain, { key: P(), billedTo: 'wallet', payerId: plain.tenantId });

  // Fully set up, then the plan loses byok: platform keys; regains it: BYOK.
  const { t, c } = await byokTenant();
  await admin().patchTenant(t.tenantId, { features: { byok: false, agency: false } });
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'wallet', payerId: t.tenantId });
  await line(h, t, { key: P(), billedTo: 'wallet', payerId: t.tenantId });
  const r2 = await admin().req('PUT', `/admin/tenants/${t.tenantId}/byok`, { enabled: true, slots: { openai: c.id } });
  assert.equal(r2.status, 403, r2.text);
  await admin().patchTenant(t.tenantId, { features: { byok: true, agency: false } });
  await expectResolve(h, t.tenantId, 'openai', { billedTo: 'byok', connectionId: c.id, payerId: t.tenantId });
  await line(h, t, { key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
});

test('agency, wallet_deduction off: the subaccount runs on the owner\'s key, billed byok, payer the owner', async () => {
  const { a, ca, s } = await agency({ sub: { wallet: 0 } });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'byok', connectionId: ca.id, payerId: a.tenantId });
  const rec = await line(h, s, { key: ca.apiKey, billedTo: 'byok', payerId: a.tenantId, connectionId: ca.id, watch: [a.tenantId] });
  assert.equal(rec.tenant_id, s.tenantId);
  // A platform-only provider of the subaccount: platform key, the owner pays, S's balances never move.
  await expectResolve(h, s.tenantId, 'deepseek', { billedTo: 'wallet', payerId: a.tenantId });
  const ds = await line(h, s, { provider: 'deepseek', key: h.deepseekKey, billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });
  assert.equal(ds.cost_micros, DEEPSEEK_COST);
});

test('agency, wallet_deduction on: the subaccount runs on platform keys, the owner pays, S does not', async () => {
  const { a, s } = await agency({ walletDeduction: true, owner: { plan: 200 }, sub: { plan: 1000, wallet: 1000 } });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  const rec = await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });
  assert.deepEqual(rec.charged, { plan_credits_micros: 200, wallet_micros: OPENAI_COST - 200 }, "owner's plan credits first");
  // The owner itself is unaffected by its own wallet_deduction: BYOK.
  const aKey = (await admin().getByok(a.tenantId)).slots.openai;
  await expectResolve(h, a.tenantId, 'openai', { billedTo: 'byok', connectionId: aKey, payerId: a.tenantId });
});

test('owner lacking agency: its subaccount runs on platform keys, the owner pays', async () => {
  const { a, s } = await agency({ agency: false });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });
});

test('parent rules: a parent_id must name an agency tenant that is not a subaccount (400 naming why)', async () => {
  const plain = await mkTenant(h, { byok: true, key: false });
  const a = await mkTenant(h, { agency: true, key: false });
  const s = await mkTenant(h, { parent: a.tenantId, key: false });
  const cases = [
    [{ parent_id: plain.tenantId }, /does not have the agency feature/],
    [{ parent_id: s.tenantId }, /is itself a subaccount/],
    [{ parent_id: 'no_such_tenant' }, /does not exist/],
  ];
  for (const [body, why] of cases) {
    const r = await admin().req('POST', '/admin/tenants', { id: `t_child_${Math.random().toString(16).slice(2, 8)}`,
      name: 'child', features: { byok: false, agency: false }, ...body });
    assert.equal(r.status, 400, `create with ${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error.message, why);
    const p = await admin().req('PATCH', `/admin/tenants/${plain.tenantId}`, body);
    if (body.parent_id !== plain.tenantId) {
      assert.equal(p.status, 400, `patch with ${JSON.stringify(body)}: ${p.text}`);
      assert.match(p.json.error.message, why);
    }
  }
  // An agency owner with subaccounts cannot become a subaccount itself.
  const a2 = await mkTenant(h, { agency: true, key: false });
  const p = await admin().req('PATCH', `/admin/tenants/${a.tenantId}`, { parent_id: a2.tenantId });
  assert.equal(p.status, 400);
  assert.match(p.json.error.message, /owns subaccounts/);
});

test('owner lacking byok: its subaccount runs on platform keys, the owner pays', async () => {
  const { a, s } = await agency({ byok: false });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });
});

test("a subaccount's own BYOK settings are ignored: owner's key, or platform, never its own", async () => {
  const { a, ca, s } = await agency({ sub: { byok: true } });
  const cs = await connect(h, s.tenantId);
  await setByok(h, s.tenantId, true, { openai: cs.id });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'byok', connectionId: ca.id, payerId: a.tenantId });
  await line(h, s, { key: ca.apiKey, billedTo: 'byok', payerId: a.tenantId, connectionId: ca.id, watch: [a.tenantId] });

  // The owner's toggle off: platform (S's own toggle is still on).
  await setByok(h, a.tenantId, false);
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });

  // The owner's toggle on, its openai slot empty: platform.
  await setByok(h, a.tenantId, true, { openai: null });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });

  // The owner's slot back, wallet_deduction on: platform.
  await setByok(h, a.tenantId, true, { openai: ca.id });
  await admin().patchTenant(a.tenantId, { wallet_deduction: true });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'wallet', payerId: a.tenantId });
  await line(h, s, { key: P(), billedTo: 'wallet', payerId: a.tenantId, watch: [s.tenantId] });

  // S detached from the agency: now a standalone tenant, its own settings apply.
  await admin().patchTenant(s.tenantId, { parent_id: null });
  await expectResolve(h, s.tenantId, 'openai', { billedTo: 'byok', connectionId: cs.id, payerId: s.tenantId });
  await line(h, s, { key: cs.apiKey, billedTo: 'byok', payerId: s.tenantId, connectionId: cs.id, watch: [a.tenantId] });
});

test('platform-only provider in a BYOK session: deepseek on the platform key and the wallet', async () => {
  const { t, c } = await byokTenant({ plan: 0 });
  await expectResolve(h, t.tenantId, 'deepseek', { billedTo: 'wallet', payerId: t.tenantId });
  const session = sid();
  // The session starts with deepseek; openai in the same session is still BYOK.
  const ds = await line(h, t, { provider: 'deepseek', session, key: h.deepseekKey, billedTo: 'wallet', payerId: t.tenantId });
  assert.equal(ds.cost_micros, DEEPSEEK_COST);
  await line(h, t, { session, key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
});

test('mixed session: openai on BYOK and deepseek on the wallet under one X-Session-Id', async () => {
  const { t, c } = await byokTenant();
  const session = sid('mixed');
  await line(h, t, { session, key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
  await line(h, t, { provider: 'deepseek', session, key: h.deepseekKey, billedTo: 'wallet', payerId: t.tenantId });
  await line(h, t, { session, key: c.apiKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });
  const recs = await admin().usage({ tenant_id: t.tenantId, session_id: session });
  assert.equal(recs.length, 3);
  assert.deepEqual(recs.map((r) => `${r.provider}:${r.billed_to}`).sort(), ['deepseek:wallet', 'openai:byok', 'openai:byok']);
  const b = await admin().getTenant(t.tenantId);
  assert.equal(b.wallet_micros, 10_000_000 - DEEPSEEK_COST, 'only the deepseek line was charged');
});

test('connections: create/list/read/rename/rotate/delete, never the key', async () => {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId, { name: 'main' });
  const list = await admin().getConnection(t.tenantId);
  const items = Array.isArray(list) ? list : list.connections;
  assert.ok(Array.isArray(items), `list answer: ${JSON.stringify(list)}`);
  assert.deepEqual(items.map((x) => x.id), [c.id]);
  assert.ok(!JSON.stringify(list).includes(c.apiKey));
  const one = await admin().getConnection(t.tenantId, c.id);
  assert.equal(one.id, c.id);
  assert.equal(one.key_hint, c.key_hint);
  assert.ok(!JSON.stringify(one).includes(c.apiKey));

  const renamed = await admin().patchConnection(t.tenantId, c.id, { name: 'renamed' });
  assert.equal(renamed.name, 'renamed');
  assert.equal(renamed.key_hint, c.key_hint, 'rename keeps the key');
  const newKey = `${canaryKey('rot')}wxyz`;
  const rotated = await admin().patchConnection(t.tenantId, c.id, { api_key: newKey });
  assert.ok(rotated.key_hint.endsWith('wxyz'), 'rotation shows the new hint');
  assert.ok(!JSON.stringify(rotated).includes(newKey));
  await setByok(h, t.tenantId, true, { openai: c.id });
  await line(h, t, { key: newKey, billedTo: 'byok', payerId: t.tenantId, connectionId: c.id });

  await admin().deleteConnection(t.tenantId, c.id);
  assert.equal((await admin().req('GET', admin().connectionPath(t.tenantId, c.id))).status, 404);
  assert.equal((await admin().getByok(t.tenantId)).slots.openai, null, 'deleting a selected connection clears the slot');
  await line(h, t, { key: P(), billedTo: 'wallet', payerId: t.tenantId });
});

test('ownership: another tenant\'s or another provider\'s connection in a slot is 400; cross-tenant ids are 404', async () => {
  const t1 = await mkTenant(h, { byok: true });
  const t2 = await mkTenant(h, { byok: true });
  const c1 = await connect(h, t1.tenantId, { name: 'secret-name-of-t1' });
  const el2 = await connect(h, t2.tenantId, { provider: 'elevenlabs' });
  const c2 = await connect(h, t2.tenantId);

  const put = (tenantId, slots) => admin().req('PUT', `/admin/tenants/${tenantId}/byok`, { enabled: true, slots });
  const cross = await put(t2.tenantId, { openai: c1.id });
  assert.equal(cross.status, 400, cross.text);
  assert.ok(!cross.text.includes(t1.tenantId) && !cross.text.includes('secret-name-of-t1'), 'the 400 tells nothing of the other tenant');
  const unknown = await put(t2.tenantId, { openai: 'c_does_not_exist' });
  assert.equal(unknown.status, 400, unknown.text);
  const wrongProvider = await put(t2.tenantId, { openai: el2.id });
  assert.equal(wrongProvider.status, 400, wrongProvider.text);
  const wrongProvider2 = await put(t2.tenantId, { elevenlabs: c2.id });
  assert.equal(wrongProvider2.status, 400, wrongProvider2.text);
  const s = await admin().getByok(t2.tenantId);
  assert.deepEqual(s.slots, { openai: null, elevenlabs: null, azure_speech: null }, 'refused PUTs changed nothing');
  await expectResolve(h, t2.tenantId, 'openai', { billedTo: 'wallet', payerId: t2.tenantId });

  // c1 through t2's paths: 404, and c1 untouched.
  for (const [method, body] of [['GET'], ['PATCH', { name: 'x' }], ['PATCH', { api_key: 'sk-hijack-0000' }], ['DELETE']]) {
    const r = await admin().req(method, admin().connectionPath(t2.tenantId, c1.id), body);
    assert.equal(r.status, 404, `${method} cross-tenant: ${r.text}`);
    assert.ok(!r.text.includes('secret-name-of-t1') && !r.text.includes(c1.key_hint), 'no data of the other tenant');
  }
  const still = await admin().getConnection(t1.tenantId, c1.id);
  assert.equal(still.name, 'secret-name-of-t1');
  assert.equal(still.key_hint, c1.key_hint);
  const list2 = await admin().getConnection(t2.tenantId);
  assert.ok(!JSON.stringify(list2).includes(c1.id), "t2's list does not show t1's connection");

  // Unknown tenants: 404 on every BYOK path.
  const nobody = 't_nobody_here';
  for (const [method, p, body] of [
    ['GET', `/admin/tenants/${nobody}/connections`],
    ['POST', `/admin/tenants/${nobody}/connections`, { provider: 'openai', name: 'x', api_key: 'sk-x-0000' }],
    ['GET', `/admin/tenants/${nobody}/connections/${c1.id}`],
    ['GET', `/admin/tenants/${nobody}/byok`],
    ['PUT', `/admin/tenants/${nobody}/byok`, { enabled: true, slots: {} }],
    ['GET', `/admin/tenants/${nobody}/resolve?provider=openai`],
    ['POST', `/admin/tenants/${nobody}/byok/check`],
  ]) {
    const r = await admin().req(method, p, body);
    assert.equal(r.status, 404, `${method} ${p}: ${r.text}`);
  }
  // t2 can still select its own connection.
  await put(t2.tenantId, { openai: c2.id }).then((r) => assert.equal(r.status, 200, r.text));
  await line(h, t2, { key: c2.apiKey, billedTo: 'byok', payerId: t2.tenantId, connectionId: c2.id });
});

test('Azure region: short names accepted; display names, hosts and the like refused with the expected form', async () => {
  const t = await mkTenant(h, { byok: true });
  const ok = await connect(h, t.tenantId, { provider: 'azure_speech', region: 'westeurope' });
  assert.equal(ok.region, 'westeurope');
  const bad = ['East US', 'eastus.evil.com', '169.254.169.254#', 'EASTUS', 'eastus/', 'eastus ', 'east us'];
  for (const region of bad) {
    const key = `sk-azure-canary-${region.length}`;
    const r = await admin().req('POST', `/admin/tenants/${t.tenantId}/connections`, { provider: 'azure_speech', name: 'az', api_key: key, region });
    assert.equal(r.status, 400, `region ${JSON.stringify(region)}: ${r.text}`);
    assert.match(r.text, /short|lower/i, `the message names the expected form: ${r.text}`);
    assert.match(r.text, /eastus|westeurope/, `the message gives an example: ${r.text}`);
    assert.ok(!r.text.includes(key), 'the key is not echoed');
  }
  // A display name: the message names its short form (not just an example).
  const display = await admin().req('POST', `/admin/tenants/${t.tenantId}/connections`, { provider: 'azure_speech', name: 'az', api_key: 'sk-az-1234', region: 'North Europe' });
  assert.equal(display.status, 400);
  assert.match(display.text, /northeurope/, `North Europe → the message names "northeurope": ${display.text}`);
  const none = await admin().req('POST', `/admin/tenants/${t.tenantId}/connections`, { provider: 'azure_speech', name: 'az', api_key: 'sk-az-1234' });
  assert.equal(none.status, 400, `an Azure connection needs a region: ${none.text}`);
  // A rotation cannot smuggle a bad region in either.
  const patch = await admin().req('PATCH', admin().connectionPath(t.tenantId, ok.id), { region: 'eastus.evil.com' });
  assert.ok(patch.status === 400, `PATCH region eastus.evil.com: ${patch.status} ${patch.text}`);
  assert.equal((await admin().getConnection(t.tenantId, ok.id)).region, 'westeurope');
  const list = await admin().getConnection(t.tenantId);
  assert.equal((Array.isArray(list) ? list : list.connections).length, 1, 'no refused connection was stored');
});

test('every tenant: one usage record per upstream request, each in the JSONL file once', async () => {
  await h.checkAllRecords();
});
