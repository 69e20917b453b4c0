// util.mjs - small helpers shared by the e2e tests: free ports, bounded
// condition polling, process memory, WAV generation, raw node:http requests.
import net from 'node:net';
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

// A port picked below the kernel's ephemeral range (ip_local_port_range) and
// checked by binding it on 127.0.0.1: a port the kernel chose for bind(0)
// comes from that range, which is also where outgoing connections take their
// local ports, so a proxy's or mock's outgoing connection could take it
// between the pick and the proxy's own bind ("Address already in use" at
// start, seen in CI). Below the range only another listener can take it. A
// port this process already handed out is never handed out again.
const handedOut = new Set();
const [ephemeralLow] = (() => {
  try {
    return fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    return [32768];
  }
})();
const PICK_LOW = 10000;
const PICK_HIGH = Math.max(PICK_LOW + 1000, ephemeralLow) - 1;
function tryPort(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
async function pickPort() {
  for (let i = 0; i < 200; i++) {
    const port = PICK_LOW + crypto.randomInt(PICK_HIGH - PICK_LOW + 1);
    if (await tryPort(port)) return port;
  }
  throw new Error(`freePort: no free port in ${PICK_LOW}-${PICK_HIGH} after 200 tries`);
}

export async function freePort() {
  for (let i = 0; i < 100; i++) {
    const port = await pickPort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no free port in 100 tries');
}

// Polls fn (sync or async) until it returns a truthy value, which is
// returned. Throws after `timeout` ms, naming what was awaited. This is the
// only way tests wait: on a condition, with a deadline.
export async function waitFor(fn, { timeout = 10000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

// Resident set size of a process in bytes, from /proc/<pid>/status.
export function rssBytes(pid) {
  const txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(txt);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export function randomHex(bytes = 8) {
  return crypto.randomBytes(bytes).toString('hex');
}

// A PCM WAV file (mono, 16-bit) of exactly `seconds` seconds: a 440 Hz tone,
// so the upload is real audio a provider would accept.
export function makeWav(seconds, sampleRate = 16000) {
  const n = Math.round(seconds * sampleRate);
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / sampleRate)), i * 2);
  }
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

// Duration in seconds of a PCM WAV produced by makeWav (used by the mock).
export function wavSeconds(buf) {
  if (buf.length < 44 || buf.toString('latin1', 0, 4) !== 'RIFF') return null;
  const byteRate = buf.readUInt32LE(28);
  const dataLen = buf.readUInt32LE(40);
  return dataLen / byteRate;
}

// One request over a fresh TCP connection (agent: false), so successive calls
// spread over the proxy's workers (SO_REUSEPORT). Resolves with status,
// lower-cased headers and the raw body bytes.
export function httpRequest(url, { method = 'GET', headers = {}, body, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(parts), text: () => Buffer.concat(parts).toString('utf8'),
        json: () => JSON.parse(Buffer.concat(parts).toString('utf8')) }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.end(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    else req.end();
  });
}

// Splits an SSE byte stream into its events (each with its trailing blank
// line), so tests can compare what arrived event by event.
export function sseEvents(text) {
  const out = [];
  let rest = text;
  for (;;) {
    const i = rest.indexOf('\n\n');
    if (i === -1) break;
    out.push(rest.slice(0, i + 2));
    rest = rest.slice(i + 2);
  }
  return { events: out, rest };
}
