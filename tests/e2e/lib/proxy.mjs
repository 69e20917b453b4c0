// proxy.mjs - starts the real byok-proxy binary for a test: a temp dir with
// its config (free loopback ports, SQLite store, JSONL sink, upstreams at the
// mock), fresh random secrets in its environment, captured logs; plus a
// client for the admin API (DESIGN §6).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { freePort, waitFor, randomHex } from './util.mjs';
import { PRICES } from './records.mjs';

// The usage queue journal of a spool directory (proxy/usage.c:
// journal_path): /dev/shm/byok-proxy-usage-<FNV-1a 64 of its real path>.journal.
export function journalPath(spoolDir) {
  let h = 14695981039346656037n;
  for (const b of Buffer.from(fs.realpathSync(spoolDir))) h = ((h ^ BigInt(b)) * 1099511628211n) & 0xffffffffffffffffn;
  return `/dev/shm/byok-proxy-usage-${h.toString(16).padStart(16, '0')}.journal`;
}

export function proxyBin() {
  const bin = process.env.BYOK_PROXY_BIN;
  if (!bin) throw new Error('BYOK_PROXY_BIN is not set (path to the byok-proxy binary)');
  if (!fs.existsSync(bin)) throw new Error(`BYOK_PROXY_BIN=${bin} does not exist (build it first)`);
  return bin;
}

export function newSecrets() {
  return {
    masterKey: crypto.randomBytes(32).toString('base64'),
    adminToken: `adm-${randomHex(16)}`,
    platformKey: `sk-platform-canary-${randomHex(16)}`,
  };
}

// The config file of DESIGN §4b for a test. opts: mockUrl (the openai
// upstream), limits (merged into "limits"), patch(cfg) for anything else.
export async function makeConfig(dir, { mockUrl, limits, patch } = {}) {
  const port = await freePort();
  const adminPort = await freePort();
  const cfg = {
    listen: `127.0.0.1:${port}`,
    admin_listen: `127.0.0.1:${adminPort}`,
    workers: 2,
    store: { backend: 'sqlite', path: path.join(dir, 'byok.db') },
    usage: { jsonl_path: path.join(dir, 'usage.jsonl'), spool_dir: path.join(dir, 'spool') },
    upstreams: { openai: mockUrl },
    platform_keys: { openai: { key_env: 'OPENAI_API_KEY' } },
    session_ttl_s: 3600,
    pricing: { openai: PRICES },
  };
  if (limits) cfg.limits = { ...limits };
  if (patch) patch(cfg);
  return { cfg, port, adminPort };
}

// Starts the proxy and waits (bounded) until GET /healthz on the admin port
// answers 200. opts: mockUrl, limits, patch, secrets (reuse across restarts),
// dir (reuse a previous run's dir and config), env (extra/overriding
// variables; a value of undefined removes the variable), args (extra
// arguments), nofile (descriptor limit, `ulimit -n`), waitHealthy (default
// true).
export async function startProxy(opts = {}) {
  const bin = proxyBin();
  const secrets = opts.secrets || newSecrets();
  let dir = opts.dir;
  let cfg, port, adminPort;
  const configPath = dir ? path.join(dir, 'config.json') : null;
  if (dir && fs.existsSync(configPath)) {
    cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    port = Number(cfg.listen.split(':').pop());
    adminPort = Number(cfg.admin_listen.split(':').pop());
  } else {
    dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'byok-e2e-'));
    ({ cfg, port, adminPort } = await makeConfig(dir, opts));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  }
  const cfgFile = path.join(dir, 'config.json');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(BYOK_|OPENAI_API_KEY)/.test(k) && k !== 'BYOK_PROXY_BIN' && k !== 'BYOK_SOURCE_DIR') delete env[k];
  env.BYOK_MASTER_KEY = secrets.masterKey;
  env.BYOK_ADMIN_TOKEN = secrets.adminToken;
  env.OPENAI_API_KEY = secrets.platformKey;
  for (const [k, v] of Object.entries(opts.env || {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const args = ['--config', cfgFile, ...(opts.args || [])];
  // opts.nofile: start under `ulimit -n N` (soft and hard), through bash,
  // which then execs the proxy (same pid).
  const child = opts.nofile
    ? spawn('bash', ['-c', `ulimit -n ${Number(opts.nofile)} && exec "$0" "$@"`, bin, ...args],
      { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  let exit = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    exit = { code, signal };
    resolve(exit);
  }));
  const proxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    adminPort,
    adminToken: secrets.adminToken,
    platformKey: secrets.platformKey,
    masterKey: secrets.masterKey,
    secrets,
    dir,
    configPath: cfgFile,
    config: cfg,
    pid: child.pid,
    child,
    exited,
    get exit() { return exit; },
    logs: () => out + err,
    stdout: () => out,
    stderr: () => err,
    jsonlPath: cfg.usage?.jsonl_path,
    // SIGTERM, wait for the exit (bounded), return the exit code (or the
    // signal name when it died of one). SIGKILL after the deadline.
    async stop({ timeout = 25000 } = {}) {
      if (!exit) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), timeout);
        await exited;
        clearTimeout(t);
      }
      return exit.code ?? exit.signal;
    },
    // The value of NAME (a regexp: escape the braces of labels) on its
    // /metrics; throws when it is not there.
    async metric(name) {
      const r = await fetch(`${proxy.adminUrl}/metrics`, { headers: { authorization: `Bearer ${secrets.adminToken}` } });
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(await r.text());
      if (!m) throw new Error(`${name} missing from /metrics`);
      return Number(m[1]);
    },
    // Its open descriptors, as it reports them on /metrics (its /proc files
    // are root's: the process is not dumpable).
    openFds: () => proxy.metric('process_open_fds'),
    // Deletes the temp dir (after stop()), and the usage queue journal a
    // killed proxy may have left in /dev/shm for its spool directory.
    remove() {
      const spool = cfg.usage && cfg.usage.spool_dir;
      if (spool && fs.existsSync(spool)) fs.rmSync(journalPath(spool), { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  proxy.admin = new AdminClient(proxy.adminUrl, secrets.adminToken);
  if (opts.waitHealthy !== false) {
    try {
      await waitFor(async () => {
        if (exit) throw Object.assign(new Error('proxy exited'), { fatal: true });
        const r = await fetch(`${proxy.adminUrl}/healthz`).catch(() => null);
        return r && r.status === 200;
      }, { timeout: 10000, interval: 25, what: 'GET /healthz = 200' });
    } catch (e) {
      if (!exit) child.kill('SIGKILL');
      await exited;
      throw new Error(`byok-proxy did not become healthy: ${e.message}; exit=${JSON.stringify(exit)}\n--- logs ---\n${proxy.logs()}`);
    }
    if (exit) throw new Error(`byok-proxy exited during start: ${JSON.stringify(exit)}\n${proxy.logs()}`);
  }
  return proxy;
}

// Runs the binary to completion (e.g. --check-config) and returns
// { code, signal, stdout, stderr }.
export function runBinary(args, { env = {}, timeout = 10000 } = {}) {
  const bin = proxyBin();
  const full = { ...process.env };
  for (const k of Object.keys(full)) if (/^(BYOK_|OPENAI_API_KEY)/.test(k) && k !== 'BYOK_PROXY_BIN' && k !== 'BYOK_SOURCE_DIR') delete full[k];
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete full[k];
    else full[k] = v;
  }
  return new Promise((resolve) => {
    const child = spawn(bin, args, { env: full, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr, timedOut: signal === 'SIGKILL' });
    });
  });
}

export class AdminClient {
  constructor(baseUrl, token) {
    this.baseUrl = baseUrl;
    this.token = token;
    // When an array: every answer's { method, path, status, text } is
    // appended (the secrets test scans them all).
    this.collect = null;
  }

  async req(method, p, body) {
    const r = await fetch(this.baseUrl + p, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (this.collect) this.collect.push({ method, path: p, status: r.status, text });
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: r.status, json, text, headers: r.headers };
  }

  async ok(method, p, body) {
    const r = await this.req(method, p, body);
    if (r.status < 200 || r.status > 299) throw new Error(`admin ${method} ${p} -> ${r.status}: ${r.text}`);
    return r.json;
  }

  createTenant(body) {
    return this.ok('POST', '/admin/tenants', body);
  }

  getTenant(id) {
    return this.ok('GET', `/admin/tenants/${encodeURIComponent(id)}`);
  }

  topup(id, body) {
    return this.ok('POST', `/admin/tenants/${encodeURIComponent(id)}/topup`, body);
  }

  async createKey(tenantId, label = 'e2e') {
    const k = await this.ok('POST', `/admin/tenants/${encodeURIComponent(tenantId)}/keys`, { label });
    if (!k || typeof k.id !== 'string' || typeof k.key !== 'string') throw new Error(`createKey: unexpected answer ${JSON.stringify(k)}`);
    return k;
  }

  patchTenant(id, body) {
    return this.ok('PATCH', `/admin/tenants/${encodeURIComponent(id)}`, body);
  }

  // ---- BYOK (DESIGN §6): connections, settings, resolve, check ----

  createConnection(tenantId, body) {
    return this.ok('POST', `/admin/tenants/${encodeURIComponent(tenantId)}/connections`, body);
  }

  connectionPath(tenantId, cid) {
    return `/admin/tenants/${encodeURIComponent(tenantId)}/connections${cid === undefined ? '' : `/${encodeURIComponent(cid)}`}`;
  }

  getConnection(tenantId, cid) {
    return this.ok('GET', this.connectionPath(tenantId, cid));
  }

  patchConnection(tenantId, cid, body) {
    return this.ok('PATCH', this.connectionPath(tenantId, cid), body);
  }

  deleteConnection(tenantId, cid) {
    return this.ok('DELETE', this.connectionPath(tenantId, cid));
  }

  putByok(tenantId, body) {
    return this.ok('PUT', `/admin/tenants/${encodeURIComponent(tenantId)}/byok`, body);
  }

  getByok(tenantId) {
    return this.ok('GET', `/admin/tenants/${encodeURIComponent(tenantId)}/byok`);
  }

  resolve(tenantId, provider) {
    return this.ok('GET', `/admin/tenants/${encodeURIComponent(tenantId)}/resolve?provider=${encodeURIComponent(provider)}`);
  }

  check(tenantId) {
    return this.ok('POST', `/admin/tenants/${encodeURIComponent(tenantId)}/byok/check`);
  }

  revokeKey(tenantId, keyId) {
    return this.ok('DELETE', `/admin/tenants/${encodeURIComponent(tenantId)}/keys/${encodeURIComponent(keyId)}`);
  }

  // Records of GET /admin/usage (newest first).
  async usage(query = {}) {
    const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined)).toString();
    const j = await this.ok('GET', `/admin/usage${qs ? `?${qs}` : ''}`);
    if (!j || !Array.isArray(j.records)) throw new Error(`GET /admin/usage: no records array in ${JSON.stringify(j)}`);
    return j.records;
  }

  // Usage records are written off the request path: poll (bounded) until the
  // tenant has at least `count` records.
  async waitRecords(tenantId, count, { timeout = 10000 } = {}) {
    return waitFor(async () => {
      const recs = await this.usage({ tenant_id: tenantId, limit: 1000 });
      return recs.length >= count ? recs : null;
    }, { timeout, what: `${count} usage record(s) for tenant ${tenantId}` });
  }

  async waitRecord(tenantId, id, { timeout = 10000 } = {}) {
    return waitFor(async () => {
      const recs = await this.usage({ tenant_id: tenantId, limit: 1000 });
      return recs.find((r) => r.id === id) || null;
    }, { timeout, what: `usage record ${id}` });
  }
}

// Balances of a tenant as read back from the admin API (top level, or under
// "balances").
export function balances(t) {
  const src = t && (t.plan_credits_micros !== undefined ? t : t.balances || {});
  return { plan: src.plan_credits_micros, wallet: src.wallet_micros };
}

// A fresh tenant (plan features off, positive wallet by default) with one
// proxy key. Unique ids per call so every test has its own records.
export async function newTenant(proxy, { plan = 0, wallet = 10_000_000, name } = {}) {
  const tenantId = `t_e2e_${randomHex(5)}`;
  await proxy.admin.createTenant({
    id: tenantId, name: name || tenantId, features: { byok: false, agency: false }, parent_id: null,
    wallet_deduction: false, plan_credits_micros: plan, wallet_micros: wallet,
  });
  const k = await proxy.admin.createKey(tenantId);
  return { tenantId, keyId: k.id, key: k.key };
}

// Parsed lines of the JSONL usage sink (empty when the file does not exist yet).
export function readJsonl(p) {
  if (!fs.existsSync(p)) return [];
  return fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}
