// tls.test.mjs - the TLS listener (DESIGN §4b "tls"): a throwaway CA and
// server certificate are made with the openssl CLI; a raw https client and
// the official openai SDK (in a child process trusting the CA through
// NODE_EXTRA_CA_CERTS) talk to the proxy over TLS; the plain listener keeps
// working beside it; a bad key file refuses to start, naming the key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy } from './lib/proxy.mjs';
import { freePort, httpRequest } from './lib/util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
let dir, mock, proxy, tlsPort, key;

function makeCerts(d) {
  const o = (args) => execFileSync('openssl', args, { cwd: d, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', '2', '-subj', '/CN=byok-proxy test CA']);
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr',
    '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(path.join(d, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
}

function httpsPost(p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: tlsPort, path: p, method: 'POST',
      ca: fs.readFileSync(path.join(dir, 'ca.pem')),
      headers: { 'content-type': 'application/json', ...headers },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-tls-'));
  makeCerts(dir);
  mock = await startMockOpenAI();
  tlsPort = await freePort();
  proxy = await startProxy({
    mockUrl: mock.url,
    patch: (cfg) => {
      cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: path.join(dir, 'server.pem'), key_file: path.join(dir, 'server.key') };
    },
  });
  await proxy.admin.createTenant({ id: 'tls', name: 'TLS', wallet_micros: 10000000 });
  key = (await proxy.admin.createKey('tls')).key;
});

after(async () => {
  await proxy?.stop();
  proxy?.remove();
  await mock?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('https: chat completion through the TLS listener, record written, platform key injected', async () => {
  const mark = mock.requests.length;
  const r = await httpsPost('/v1/chat/completions',
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'over tls' }] },
    { authorization: `Bearer ${key}` });
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.headers['x-billed-to'], 'wallet');
  const [mr] = mock.since(mark);
  assert.equal(mr.headers.authorization, `Bearer ${proxy.platformKey}`);
  const sent = Buffer.concat(mr.sent.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x))));
  assert.ok(sent.length > 0);
  assert.equal(r.body.toString(), sent.toString(), 'client got exactly what the mock sent');
  const rec = await proxy.admin.waitRecord('tls', r.headers['x-proxy-request-id']);
  assert.equal(rec.status, 200);
  assert.equal(rec.outcome, 'ok');
});

test('the official openai SDK over https (CA trusted via NODE_EXTRA_CA_CERTS), stream and not', async () => {
  const script = `
    import OpenAI from 'openai';
    const c = new OpenAI({ baseURL: process.env.BASE, apiKey: process.env.KEY, maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk tls' }] });
    let text = '';
    const s = await c.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'sdk tls' }] });
    for await (const ch of s) text += ch.choices[0]?.delta?.content ?? '';
    console.log(JSON.stringify({ content: r.choices[0].message.content, streamed: text }));
  `;
  const out = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: here,
      env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem'), BASE: `https://127.0.0.1:${tlsPort}/v1`, KEY: key },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let o = '', e = '';
    child.stdout.on('data', (d) => { o += d; });
    child.stderr.on('data', (d) => { e += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('exit', (code) => { clearTimeout(t); code === 0 ? resolve(o) : reject(new Error(`sdk child exited ${code}: ${e}`)); });
  });
  const res = JSON.parse(out.trim().split('\n').pop());
  assert.equal(res.content, 'reply to: sdk tls');
  assert.ok(res.streamed.length > 0, 'streamed text arrived');
});

test('plain HTTP on the TLS port is refused without harm; the plain listener still serves', async () => {
  const sock = net.connect(tlsPort, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
  const closed = await new Promise((r) => { sock.on('close', () => r(true)); sock.on('error', () => {}); setTimeout(() => r(false), 5000); });
  assert.ok(closed, 'the proxy closes a non-TLS connection on its TLS port');
  const r = await httpRequest(`${proxy.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'plain' }] },
  });
  assert.equal(r.status, 200);
  assert.equal(proxy.exit, null, 'proxy still running');
});

test('a key file that does not match the certificate refuses to start, naming tls.key_file', async () => {
  const other = path.join(dir, 'other.key');
  execFileSync('openssl', ['genrsa', '-out', other, '2048'], { stdio: 'pipe' });
  const port = await freePort();
  const p = await startProxy({
    mockUrl: mock.url,
    waitHealthy: false,
    patch: (cfg) => { cfg.tls = { listen: `127.0.0.1:${port}`, cert_file: path.join(dir, 'server.pem'), key_file: other }; },
  });
  const code = await p.exited.then((e) => e.code);
  assert.notEqual(code, 0);
  assert.match(p.logs(), /tls\.key_file/);
  p.remove();
});
