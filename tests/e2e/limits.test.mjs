// limits.test.mjs - what the proxy refuses before it knows who is asking
// (issue 9, part 4), through the real binary:
// - a request body must be whole within limits.body_timeout_ms of its head,
//   however it trickles (408, nothing upstream); the idle timeout between
//   bytes still applies;
// - open connections are capped in all (limits.max_connections) and per
//   client address (limits.max_connections_per_client): over a cap a plain
//   connection gets a fixed 503/429 with Retry-After without being read, a
//   TLS one is closed; a WebSocket session keeps its place until it ends;
//   counted in /metrics, logged at most once a second;
// - out of descriptors (ulimit -n), accept pauses instead of spinning, logs
//   once, and serves again when connections close;
// - ElevenLabs first-message sockets: the key's message must be whole within
//   2 s of the 101 and at most 64 KiB (close 1008 / 1009), nothing upstream,
//   no memory held;
// - unauthenticated 30 MiB uploads are refused on the head (401), with or
//   without Expect: 100-continue, without the proxy's memory growing.
// RSS and CPU figures are printed (console.log) for the closing note.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import WebSocket from 'ws';
import { startMockOpenAI } from './lib/mock_openai.mjs';
import { startProxy, newTenant, makeConfig, newSecrets, runBinary } from './lib/proxy.mjs';
import { parseResponses } from './lib/rawhttp.mjs';
import { makeTestCerts } from './lib/tls.mjs';
import { waitFor, rssBytes, randomHex, freePort } from './lib/util.mjs';

const MiB = 1024 * 1024;
const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
});

async function proxyWith(opts) {
  const proxy = await startProxy(opts);
  cleanups.push(async () => { await proxy.stop(); proxy.remove(); });
  return proxy;
}

// A TCP server standing for an upstream that must never be reached: it
// counts the connections it is offered and drops them.
async function countingUpstream() {
  let count = 0;
  const srv = net.createServer((s) => { count++; s.destroy(); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const up = { url: `http://127.0.0.1:${srv.address().port}`, get count() { return count; } };
  cleanups.push(() => new Promise((r) => srv.close(r)));
  return up;
}

// A raw client connection: bytes received, close seen (and when), errors
// recorded rather than thrown.
function connect(port, { host = '127.0.0.1', localAddress } = {}) {
  const c = { buf: Buffer.alloc(0), closed: false, closedAt: 0, error: null, firstByteAt: 0 };
  c.sock = net.connect({ port, host, localAddress });
  c.sock.on('data', (d) => { if (!c.firstByteAt) c.firstByteAt = Date.now(); c.buf = Buffer.concat([c.buf, d]); });
  c.sock.on('error', (e) => { c.error = e; });
  c.sock.on('close', () => { c.closed = true; c.closedAt = Date.now(); });
  c.ready = new Promise((resolve, reject) => { c.sock.once('connect', resolve); c.sock.once('error', reject); });
  c.responses = () => parseResponses(c.buf, { eofSeen: c.closed }).responses.filter((r) => r.complete);
  c.waitClosed = (what = 'the proxy to close the connection', timeout = 10000) =>
    waitFor(() => c.closed, { timeout, what });
  cleanups.push(async () => c.sock.destroy());
  return c;
}

// Opens a connection and proves the proxy accepted it: a request without a
// key gets its 401 and the connection stays open (keep-alive).
async function servedConn(port, opts) {
  const c = connect(port, opts);
  await c.ready;
  c.sock.write('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await waitFor(() => c.responses().length >= 1 || c.closed, { timeout: 5000, what: 'an answer' });
  const r = c.responses()[0];
  assert.ok(r, `the connection from ${opts?.localAddress || '127.0.0.1'} was served (got ${JSON.stringify(c.buf.toString('latin1').slice(0, 80))})`);
  assert.equal(r.status, 401);
  assert.equal(c.closed, false, 'kept alive');
  return c;
}

// A connection over a cap: the proxy answers without reading it and closes.
async function refusedConn(port, opts) {
  const c = connect(port, opts);
  await c.ready.catch(() => {});
  await c.waitClosed('the refused connection to be closed', 5000);
  return c;
}

async function metrics(proxy) {
  const r = await fetch(`${proxy.adminUrl}/metrics`, { headers: { authorization: `Bearer ${proxy.adminToken}` } });
  return r.text();
}

function metric(text, name, labels = '') {
  const re = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

function logLines(proxy, re) {
  return proxy.logs().split('\n').filter((l) => re.test(l));
}

// utime + stime of a process, in seconds (/proc/PID/stat fields 14, 15).
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
}

// Samples a process's RSS every 10 ms until stop(): { base, max, growth }.
function rssSampler(pid) {
  const base = rssBytes(pid);
  let max = base;
  const t = setInterval(() => { try { max = Math.max(max, rssBytes(pid)); } catch { /* exited */ } }, 10);
  return {
    stop() {
      clearInterval(t);
      try { max = Math.max(max, rssBytes(pid)); } catch { /* exited */ }
      return { base, max, growth: max - base };
    },
  };
}

const mib = (n) => (n / MiB).toFixed(1);

// ---------------------------------------------------------------------------
// 1. The total body deadline.

test('body deadline: a body trickled faster than the idle timeout is cut at limits.body_timeout_ms (408), nothing upstream', async () => {
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const proxy = await proxyWith({ mockUrl: mock.url, limits: { idle_timeout_ms: 1000, body_timeout_ms: 1500 } });
  const t = await newTenant(proxy);
  const head = (framing) => ['POST /v1/chat/completions HTTP/1.1', 'Host: 127.0.0.1',
    `Authorization: Bearer ${t.key}`, 'Content-Type: application/json', framing, '', ''].join('\r\n');

  for (const [framing, piece] of [['Content-Length: 400', '{'], ['Transfer-Encoding: chunked', '1\r\n{\r\n']]) {
    const mark = mock.requests.length;
    const c = connect(proxy.port);
    await c.ready;
    c.sock.write(head(framing));
    const t0 = Date.now();
    // One piece every 250 ms (a quarter of the idle timeout): at most 40
    // pieces (10 s), stopped by the proxy's answer.
    let sent = 0;
    const trickle = setInterval(() => {
      if (c.closed || c.firstByteAt || sent >= 40) return clearInterval(trickle);
      c.sock.write(piece);
      sent++;
    }, 250);
    await c.waitClosed('the 408 and the close', 10000);
    clearInterval(trickle);
    const answeredMs = c.firstByteAt - t0;
    const [r] = c.responses();
    assert.ok(r, `an answer (${framing})`);
    assert.equal(r.status, 408);
    assert.match(r.body.toString(), /limits\.body_timeout_ms/);
    assert.equal(r.header('connection'), 'close');
    assert.ok(answeredMs >= 1400 && answeredMs < 2500,
      `${framing}: 408 after ${answeredMs} ms: at the 1500 ms body deadline, not re-armed by the ${sent} pieces`);
    assert.ok(sent >= 4, `pieces kept coming before the deadline (${sent})`);
    assert.equal(mock.since(mark).length, 0, 'nothing went upstream');
    console.log(`body deadline (${framing}): ${sent} pieces at 250 ms, 408 after ${answeredMs} ms`);
  }

  // The idle timeout between body bytes is still there.
  const c = connect(proxy.port);
  await c.ready;
  c.sock.write(head('Content-Length: 10'));
  const t0 = Date.now();
  await c.waitClosed('the idle 408', 5000);
  const [r] = c.responses();
  assert.equal(r.status, 408);
  assert.match(r.body.toString(), /limits\.idle_timeout_ms/);
  assert.ok(c.firstByteAt - t0 >= 900 && c.firstByteAt - t0 < 1450, `idle 408 after ${c.firstByteAt - t0} ms`);

  // A slow body that is whole before the deadline is served.
  const mark = mock.requests.length;
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'slow but fine' }] });
  const ok = connect(proxy.port);
  await ok.ready;
  ok.sock.write(head(`Content-Length: ${Buffer.byteLength(body)}`));
  for (let i = 0; i < 4; i++) {
    ok.sock.write(body.slice((i * body.length) / 4, ((i + 1) * body.length) / 4));
    await new Promise((res) => setTimeout(res, 200));
  }
  await waitFor(() => ok.responses().length >= 1, { timeout: 5000, what: 'the answer to the slow body' });
  assert.equal(ok.responses()[0].status, 200);
  assert.equal(mock.since(mark).length, 1);
  ok.sock.destroy();
});

// ---------------------------------------------------------------------------
// 2. Connection caps.

test('caps: per client address (127.0.0.2 vs 127.0.0.3) and in all; 429/503 with retry-after unread, TLS closed; counted, logged once a second; a freed place is served', async () => {
  const certs = makeTestCerts();
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const tlsPort = await freePort();
  const proxy = await proxyWith({
    mockUrl: mock.url,
    limits: { max_connections: 4, max_connections_per_client: 2 },
    patch: (cfg) => { cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: certs.certFile, key_file: certs.keyFile }; },
  });

  const a1 = await servedConn(proxy.port, { localAddress: '127.0.0.2' });
  const a2 = await servedConn(proxy.port, { localAddress: '127.0.0.2' });
  const a3 = await refusedConn(proxy.port, { localAddress: '127.0.0.2' });
  const [r429] = a3.responses();
  assert.ok(r429, `a 429 before the close (got ${JSON.stringify(a3.buf.toString('latin1'))})`);
  assert.equal(r429.status, 429);
  assert.equal(r429.header('retry-after'), '1');
  assert.equal(r429.header('connection'), 'close');
  assert.equal(JSON.parse(r429.body).error.code, 'too_many_connections');

  // Another address has its own count...
  const b1 = await servedConn(proxy.port, { localAddress: '127.0.0.3' });
  const b2 = await servedConn(proxy.port, { localAddress: '127.0.0.3' });
  // ... and the process is full now: any address gets 503, TLS a close.
  const c1 = await refusedConn(proxy.port, { localAddress: '127.0.0.4' });
  const [r503] = c1.responses();
  assert.equal(r503?.status, 503);
  assert.equal(r503.header('retry-after'), '1');
  const tlsRes = await new Promise((resolve) => {
    const s = tls.connect({ port: tlsPort, host: '127.0.0.1', localAddress: '127.0.0.5', ca: certs.ca, servername: 'localhost' });
    s.on('secureConnect', () => { s.destroy(); resolve('handshake'); });
    s.on('error', (e) => resolve(`error ${e.code}`));
    s.on('close', () => resolve('closed'));
  });
  assert.notEqual(tlsRes, 'handshake', 'no TLS handshake over the cap');

  // A burst over the cap: each refused, the log says it at most once a second.
  const t0 = Date.now();
  const burst = [];
  for (let i = 0; i < 50; i++) burst.push(refusedConn(proxy.port, { localAddress: '127.0.0.6' }));
  const refused = await Promise.all(burst);
  assert.ok(refused.every((c) => c.responses()[0]?.status === 503));
  const seconds = Math.ceil((Date.now() - t0) / 1000) + 1;
  const lines = logLines(proxy, /refused: too many connections/);
  console.log(`caps: 53 connections refused (1 per address, 52 in all, 1 of them TLS) in ${Date.now() - t0} ms of burst; ${lines.length} log line(s)`);
  assert.ok(lines.length >= 1 && lines.length <= seconds + 2,
    `${lines.length} log lines for 53 refusals (at most one a second)`);

  const m = await metrics(proxy);
  assert.equal(metric(m, 'byok_refusals_total', '{provider="none",reason="max_connections_per_client"}'), 1);
  assert.equal(metric(m, 'byok_refusals_total', '{provider="none",reason="max_connections"}'), 52);

  // A place freed is a place served.
  a1.sock.destroy();
  await waitFor(async () => {
    const c = connect(proxy.port, { localAddress: '127.0.0.2' });
    await c.ready.catch(() => {});
    c.sock.write('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await waitFor(() => c.closed, { timeout: 3000 });
    return c.responses()[0]?.status === 401;
  }, { timeout: 5000, what: 'a new connection served once one closed' });
  for (const c of [a2, b1, b2]) c.sock.destroy();
});

test('caps: a WebSocket session keeps its place after the upgrade and gives it back when it ends', async () => {
  const up = await countingUpstream();
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const proxy = await proxyWith({
    mockUrl: mock.url,
    limits: { max_connections: 1, ws_first_message_timeout_ms: 1500 },
    env: { ELEVENLABS_API_KEY: `xi-${randomHex(8)}` },
    patch: (cfg) => {
      cfg.upstreams.elevenlabs = up.url;
      cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
    },
  });
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input`);
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve({ code, at: Date.now() })));
  ws.on('error', () => {});
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const c = await refusedConn(proxy.port);
  assert.equal(c.responses()[0]?.status, 503, 'the socket holds the only place');
  const { code } = await closed; // no key in time
  assert.equal(code, 1008);
  await waitFor(async () => {
    const s = connect(proxy.port);
    await s.ready.catch(() => {});
    s.sock.write('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await waitFor(() => s.closed, { timeout: 3000 });
    return s.responses()[0]?.status === 401;
  }, { timeout: 5000, what: 'the place back once the socket ended' });
  assert.equal(up.count, 0, 'nothing upstream');
});

// ---------------------------------------------------------------------------
// 3. Out of descriptors.

test('EMFILE: under ulimit -n 64, 150 connections pause accept (no spin, one log line) and it serves again once they close', async () => {
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const proxy = await proxyWith({ mockUrl: mock.url, nofile: 64, limits: { idle_timeout_ms: 30000 } });
  const limits = fs.readFileSync(`/proc/${proxy.pid}/limits`, 'utf8');
  assert.match(limits, /Max open files\s+64\s+64/, 'the proxy runs under ulimit -n 64');
  const conns = [];
  for (let i = 0; i < 150; i++) conns.push(connect(proxy.port));
  await Promise.all(conns.map((c) => c.ready.catch(() => {})));
  // Let the proxy take what it can, then measure its CPU over a window
  // while the rest wait in the backlog.
  await waitFor(() => /accept\(\) failed/.test(proxy.logs()), { timeout: 5000, what: 'the accept pause to be logged' });
  const cpu0 = cpuSeconds(proxy.pid);
  const w0 = Date.now();
  await new Promise((r) => setTimeout(r, 2000));
  const cpu = cpuSeconds(proxy.pid) - cpu0;
  const windowS = (Date.now() - w0) / 1000;
  const acceptLines = logLines(proxy, /accept/i).filter((l) => !/limits\.max_connections \(/.test(l));
  console.log(`EMFILE: proxy CPU ${cpu.toFixed(2)} s over ${windowS.toFixed(1)} s with 150 connections at ulimit -n 64; ${acceptLines.length} accept log line(s)`);
  assert.ok(cpu < 0.2, `proxy CPU ${cpu.toFixed(2)} s in ${windowS.toFixed(1)} s: no busy loop`);
  assert.ok(acceptLines.length >= 1 && acceptLines.length <= 3, `accept log lines: ${acceptLines.length}\n${acceptLines.join('\n')}`);
  assert.doesNotMatch(proxy.logs(), /Error from accept/);

  for (const c of conns) c.sock.destroy();
  // Served again: a request on a new connection is answered.
  await waitFor(async () => {
    const c = connect(proxy.port);
    await c.ready.catch(() => {});
    c.sock.write('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await waitFor(() => c.closed, { timeout: 3000 });
    return c.responses()[0]?.status === 401;
  }, { timeout: 10000, what: 'the data plane to answer again' });
  const m = await metrics(proxy);
  assert.ok(metric(m, 'byok_accept_paused_total') >= 1, 'pauses counted');
  const linesAfter = logLines(proxy, /accept\(\) failed/);
  assert.ok(linesAfter.length <= 4, `accept lines in the whole run: ${linesAfter.length}`);
});

// ---------------------------------------------------------------------------
// 4. ElevenLabs first-message sockets.

test('ElevenLabs first message: never sent / too slow → 1008 at 2 s, too big → 1009 at once; nothing upstream, no memory held', async () => {
  const up = await countingUpstream();
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const proxy = await proxyWith({
    mockUrl: mock.url,
    env: { ELEVENLABS_API_KEY: `xi-${randomHex(8)}` },
    patch: (cfg) => {
      cfg.upstreams.elevenlabs = up.url;
      cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
    },
  });
  const url = `ws://127.0.0.1:${proxy.port}/elevenlabs/v1/text-to-speech/voice-1/stream-input`;
  const open = async () => {
    const ws = new WebSocket(url);
    const s = { ws, closed: null };
    s.done = new Promise((resolve) => ws.on('close', (code, reason) => {
      s.closed = { code, reason: reason.toString(), at: Date.now() };
      resolve(s.closed);
    }));
    ws.on('error', () => {});
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    s.openedAt = Date.now();
    cleanups.push(async () => ws.terminate());
    return s;
  };

  // Never sent.
  const quiet = await open();
  const q = await quiet.done;
  assert.equal(q.code, 1008);
  const quietMs = q.at - quiet.openedAt;
  assert.ok(quietMs >= 1800 && quietMs < 3000, `closed ${quietMs} ms after the 101`);

  // Too slow: the message starts at once but its fragments trickle.
  const slow = await open();
  slow.ws.send('{"text":" ",', { fin: false });
  let frags = 0;
  const trickle = setInterval(() => {
    if (slow.closed || frags >= 20) return clearInterval(trickle);
    slow.ws.send(' ', { fin: false });
    frags++;
  }, 200);
  const s = await slow.done;
  clearInterval(trickle);
  assert.equal(s.code, 1008);
  const slowMs = s.at - slow.openedAt;
  assert.ok(slowMs >= 1800 && slowMs < 3000, `slow first message cut ${slowMs} ms after the 101 (${frags} fragments)`);

  // Within the size limit: read whole, judged on its key (a wrong one: 1008).
  const fits = await open();
  fits.ws.send(JSON.stringify({ text: 'x'.repeat(60 * 1024), xi_api_key: 'bpk_wrong' }));
  const f = await fits.done;
  assert.equal(f.code, 1008);
  assert.match(f.reason, /key/);

  // 64 KiB + 1 in fragments: 1009.
  const frag = await open();
  const big = Buffer.alloc(64 * 1024 + 1, 'a');
  for (let off = 0; off < big.length; off += 16384) {
    frag.ws.send(big.subarray(off, Math.min(big.length, off + 16384)).toString(), { fin: off + 16384 >= big.length });
  }
  assert.equal((await frag.done).code, 1009);

  // 20 sockets each sending a 16 MiB first message.
  const sampler = rssSampler(proxy.pid);
  const t0 = Date.now();
  // Each sends as soon as it is open (building 16 MiB frames takes the
  // client a while: opening all first would let the last ones time out).
  const huge = Buffer.alloc(16 * MiB, 'a');
  const bigs = [];
  for (let i = 0; i < 20; i++) {
    const b = await open();
    b.ws.send(huge, { binary: false });
    bigs.push(b);
  }
  const ends = await Promise.all(bigs.map((b) => b.done));
  const rss = sampler.stop();
  console.log(`ElevenLabs first message: 20 x 16 MiB → close ${[...new Set(ends.map((e) => e.code))].join(',')} in ${Date.now() - t0} ms; proxy RSS ${mib(rss.base)} → max ${mib(rss.max)} MiB (+${mib(rss.growth)})`);
  // 1009 (not the deadline's 1008): refused on the frame's announced size.
  assert.ok(ends.every((e) => e.code === 1009), `all 1009: ${ends.map((e) => e.code)}`);
  assert.ok(rss.growth < 8 * MiB, `RSS grew ${mib(rss.growth)} MiB`);

  assert.equal(up.count, 0, 'no upstream connection for any of them');
  const m = await metrics(proxy);
  assert.ok(metric(m, 'byok_refusals_total', '{provider="elevenlabs",reason="limits"}') >= 23);
});

// ---------------------------------------------------------------------------
// 5. Unauthenticated uploads.

// Sends a POST head (and, without Expect, the body as fast as the socket
// takes it) until the proxy answers and closes. Bounded: size bytes at most.
function upload(port, { size, expect }) {
  return new Promise((resolve) => {
    const c = connect(port);
    let written = 0;
    const piece = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!c.closed && !c.error && written < size) {
        const n = Math.min(piece.length, size - written);
        written += n;
        if (!c.sock.write(n === piece.length ? piece : piece.subarray(0, n))) return c.sock.once('drain', pump);
      }
    };
    c.ready.then(() => {
      c.sock.write(['POST /v1/audio/transcriptions HTTP/1.1', 'Host: 127.0.0.1',
        'Authorization: Bearer bpk_not_a_key', 'Content-Type: multipart/form-data; boundary=x',
        `Content-Length: ${size}`, ...(expect ? ['Expect: 100-continue'] : []), '', ''].join('\r\n'));
      if (!expect) pump();
    }, () => {});
    c.sock.on('close', () => resolve({ c, written }));
    setTimeout(() => { c.sock.destroy(); }, 20000);
  });
}

test('10 unauthenticated 30 MiB uploads (5 with Expect: 100-continue, 5 without): 401 on the head, no 100, body not read, RSS flat', async () => {
  const mock = await startMockOpenAI();
  cleanups.push(() => mock.close());
  const proxy = await proxyWith({ mockUrl: mock.url });
  const mark = mock.requests.length;
  const sampler = rssSampler(proxy.pid);
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => upload(proxy.port, { size: 30 * MiB, expect: i < 5 })));
  const rss = sampler.stop();
  const written = results.slice(5).map((r) => r.written);
  console.log(`unauthenticated uploads: 10 x 30 MiB in ${Date.now() - t0} ms; proxy RSS ${mib(rss.base)} → max ${mib(rss.max)} MiB (+${mib(rss.growth)}); client wrote ${written.map(mib).join(', ')} MiB before the close (no Expect)`);
  for (const [i, { c }] of results.entries()) {
    const text = c.buf.toString('latin1');
    assert.ok(!text.startsWith('HTTP/1.1 100'), `#${i}: no 100 Continue`);
    const [r] = c.responses();
    assert.equal(r?.status, 401, `#${i}: 401 on the head (got ${JSON.stringify(text.slice(0, 60))}, error ${c.error?.code})`);
  }
  assert.ok(written.every((w) => w < 30 * MiB), 'the proxy closed before taking the bodies');
  assert.ok(rss.growth < 8 * MiB, `RSS grew ${mib(rss.growth)} MiB`);
  assert.equal(mock.since(mark).length, 0);
});

// ---------------------------------------------------------------------------
// 6. The new keys are validated.

test('--check-config names a bad value of each new limits key', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'byok-e2e-limits-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const sec = newSecrets();
  const env = { BYOK_MASTER_KEY: sec.masterKey, BYOK_ADMIN_TOKEN: sec.adminToken, OPENAI_API_KEY: sec.platformKey };
  const check = async (limits) => {
    const { cfg } = await makeConfig(dir, { mockUrl: 'http://127.0.0.1:9', limits });
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    return runBinary(['--config', file, '--check-config'], { env });
  };
  const good = await check({ body_timeout_ms: 1500, max_connections: 100, max_connections_per_client: 10,
    ws_first_message_timeout_ms: 500, ws_first_message_max_bytes: 4096 });
  assert.equal(good.code, 0, good.stderr);
  for (const [limits, re] of [
    [{ body_timeout_ms: 50 }, /limits\.body_timeout_ms: 50 is out of range/],
    [{ max_connections: 0 }, /limits\.max_connections: 0 is out of range/],
    [{ max_connections_per_client: -1 }, /limits\.max_connections_per_client: -1 is out of range/],
    [{ max_connections: 10, max_connections_per_client: 11 }, /limits\.max_connections_per_client: 11 is larger than limits\.max_connections \(10\)/],
    [{ ws_first_message_timeout_ms: 'soon' }, /limits\.ws_first_message_timeout_ms: expected an integer/],
    [{ ws_first_message_max_bytes: 100 }, /limits\.ws_first_message_max_bytes: 100 is out of range/],
  ]) {
    const r = await check(limits);
    assert.equal(r.code, 1, JSON.stringify(limits));
    assert.match(r.stderr, re);
  }
});
