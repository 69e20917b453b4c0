// harness.mjs - per-file setup shared by the proxy tests: one mock, one
// proxy, SDK clients, and the bookkeeping behind "exactly one usage record
// per request" (every proxied request a test makes is noted here).
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startMockOpenAI } from './mock_openai.mjs';
import { startProxy, newTenant, balances, readJsonl } from './proxy.mjs';
import { checkRecord, checkUpstreamAuth } from './records.mjs';
import { waitFor } from './util.mjs';

export async function setup(proxyOpts = {}) {
  const mock = await startMockOpenAI();
  let proxy;
  try {
    proxy = await startProxy({ mockUrl: mock.url, ...proxyOpts });
  } catch (e) {
    await mock.close();
    throw e;
  }
  const h = {
    mock,
    proxy,
    // tenantId -> { tenant, ids: [record ids the client was told] }
    issued: new Map(),
    sdk(key, { prefix = '/v1', maxRetries = 0, headers } = {}) {
      return new OpenAI({ apiKey: key, baseURL: proxy.url + prefix, maxRetries, defaultHeaders: headers, timeout: 20000 });
    },
    async tenant(opts) {
      const t = await newTenant(proxy, opts);
      h.issued.set(t.tenantId, { tenant: t, ids: [], requests: 0 });
      return t;
    },
    // Notes a request made through the proxy for tenant t.
    count(t, n = 1) {
      h.issued.get(t.tenantId).requests += n;
    },
    async teardown() {
      try {
        if (proxy && !proxy.exit) await proxy.stop();
        proxy?.remove();
      } finally {
        await mock.close();
      }
    },
    // Common checks on one proxied request: what the mock received, the
    // headers the client got, and the usage record (returned).
    async verify({ t, mockRec, headers, exp }) {
      checkUpstreamAuth(mockRec, { platformKey: proxy.platformKey, proxyKey: t.key });
      const get = (n) => (typeof headers.get === 'function' ? headers.get(n) : headers[n]);
      assert.equal(get('x-billed-to'), 'wallet');
      const id = get('x-proxy-request-id');
      assert.ok(id, 'x-proxy-request-id present');
      const rec = await proxy.admin.waitRecord(t.tenantId, id);
      checkRecord(rec, { tenantId: t.tenantId, keyId: t.keyId, upstreamRequestId: mockRec.requestId, ...exp });
      h.issued.get(t.tenantId).ids.push(id);
      return rec;
    },
    // Balances moved by exactly what the tenant's records charged.
    async checkBalances(t, { plan, wallet }) {
      const recs = await proxy.admin.usage({ tenant_id: t.tenantId, limit: 1000 });
      const sumPlan = recs.reduce((s, r) => s + r.charged.plan_credits_micros, 0);
      const sumWallet = recs.reduce((s, r) => s + r.charged.wallet_micros, 0);
      const b = balances(await proxy.admin.getTenant(t.tenantId));
      assert.equal(b.plan, plan - sumPlan, 'plan credits moved by the charged amounts');
      assert.equal(b.wallet, wallet - sumWallet, 'wallet moved by the charged amounts');
      return { sumPlan, sumWallet };
    },
    // Every tenant has exactly as many records as requests were made, and
    // the JSONL sink holds each of them exactly once, equal to the store's.
    async checkAllRecords() {
      const all = [];
      for (const [tenantId, e] of h.issued) {
        const recs = await proxy.admin.usage({ tenant_id: tenantId, limit: 1000 });
        const unknown = recs.filter((r) => !e.ids.includes(r.id))
          .map((r) => `${r.id} ${r.endpoint} status=${r.status} outcome=${r.outcome} upstream=${r.upstream_request_id}`);
        assert.equal(recs.length, e.requests, `tenant ${tenantId}: one record per request` +
          ` (records not matched to a reply: ${unknown.join('; ') || 'none'})`);
        for (const id of e.ids) assert.equal(recs.filter((r) => r.id === id).length, 1, `record ${id} once`);
        all.push(...recs);
      }
      const lines = await waitFor(() => {
        const l = readJsonl(proxy.jsonlPath);
        return all.every((r) => l.some((x) => x.id === r.id)) ? l : null;
      }, { what: 'all records in the JSONL file' });
      for (const r of all) {
        const same = lines.filter((x) => x.id === r.id);
        assert.equal(same.length, 1, `record ${r.id} appears once in JSONL`);
        assert.deepEqual(same[0], r, 'JSONL line equals the stored record');
      }
      const ids = lines.map((x) => x.id);
      assert.equal(new Set(ids).size, ids.length, 'no id twice in JSONL');
    },
  };
  return h;
}
