// admin.mjs - the few admin API calls the kit makes (DESIGN §6): a tenant
// of its own with a wallet, a proxy key for it (revoked after the run), the
// tenant's balances, and its usage records by session.
//
// The admin token is read from an environment variable (never a flag, so
// it stays out of `ps` and shell history) and never printed.

export class AdminClient {
  constructor(baseUrl, token, { timeoutMs = 15000 } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
    this.timeoutMs = timeoutMs;
  }

  async req(method, path, body) {
    let r;
    try {
      r = await fetch(this.baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new Error(`admin API ${method} ${this.baseUrl}${path}: ${e.cause?.code || e.name}: ${e.cause?.message || e.message}`);
    }
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (r.status < 200 || r.status > 299) {
      const msg = json?.error?.message || json?.message || text.slice(0, 200);
      const hint = r.status === 401 ? ' (is the admin token right? it is read from the variable named by --admin-token-env)' : '';
      throw Object.assign(new Error(`admin API ${method} ${path} -> ${r.status}: ${msg}${hint}`), { status: r.status });
    }
    return json;
  }

  createTenant(body) { return this.req('POST', '/admin/tenants', body); }
  getTenant(id) { return this.req('GET', `/admin/tenants/${encodeURIComponent(id)}`); }
  createKey(id, label) { return this.req('POST', `/admin/tenants/${encodeURIComponent(id)}/keys`, { label }); }
  revokeKey(id, kid) { return this.req('DELETE', `/admin/tenants/${encodeURIComponent(id)}/keys/${encodeURIComponent(kid)}`); }

  // Records newest first; limit 1..1000 (the API's bound).
  async usage({ tenantId, sessionId, limit = 1000 }) {
    const q = new URLSearchParams({ tenant_id: tenantId, limit: String(limit) });
    if (sessionId !== undefined) q.set('session_id', sessionId);
    const j = await this.req('GET', `/admin/usage?${q}`);
    if (!j || !Array.isArray(j.records)) throw new Error(`admin API GET /admin/usage: no "records" array in the answer`);
    return j.records;
  }
}

export const USAGE_PAGE_MAX = 1000;

// Plan credits + wallet, and what is held, of a tenant as the admin API
// shows it (top level, or under "balances").
export function balancesOf(t) {
  const src = t && (t.plan_credits_micros !== undefined ? t : t.balances || {});
  const plan = Number(src.plan_credits_micros ?? 0);
  const wallet = Number(src.wallet_micros ?? 0);
  const held = Number(t?.held_micros ?? src.held_micros ?? 0);
  return { plan, wallet, total: plan + wallet, held };
}
