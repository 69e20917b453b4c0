// streams.mjs - the memory targets of DESIGN §9 on loopback: N concurrent
// open SSE streams through byok-proxy at ≤ 14 KiB of RSS each, and memory
// flat under slow readers. Run by run.sh at its end; runs alone as well:
//
//   node tests/bench/streams.mjs [path/to/byok-proxy]
//   env: BENCH_STREAMS (8000 open streams), STREAMS_BATCH (200 opened at a
//        time), STREAMS_TRICKLE_MS (5000: a content chunk on every held
//        stream this often), STREAMS_SLOW (50 slow readers), STREAMS_SLOW_SECONDS
//        (10), STREAMS_SLOW_READ (16384 bytes read per slow reader per 100 ms)
//
// Three processes: this one (the clients: raw HTTP/1.1 over node:net, one
// socket per stream), the upstream (this file again with STREAMS_ROLE=upstream,
// forked: a node:net server writing raw HTTP/1.1 chunked SSE, answering what
// the request's x-bench-stream header asks for) and the proxy (one worker,
// SQLite, JSONL sink, connection caps raised to fit N). Each phase has its
// own fresh proxy, so that neither sees the other's heap:
//
//   1. open streams: a warm stream, RSS idle; N streams opened in batches (each
//      batch once the previous one has its first chunk), RSS when every stream
//      has its first chunk and again once every stream has a trickled chunk;
//      (RSS open - RSS idle) / N against 14 KiB. The upstream then finishes
//      every stream (finish, usage, [DONE]); the proxy must write one record
//      per stream, "ok", with the upstream's token count.
//   2. slow readers: M streams the upstream writes without end, as fast as the
//      proxy takes them; each client reads STREAMS_SLOW_READ bytes every 100
//      ms. RSS sampled every 250 ms for STREAMS_SLOW_SECONDS from the moment
//      every upstream write has blocked once (the proxy's buffers and the
//      socket buffers are full: back-pressure reached the upstream); "flat" =
//      max - start ≤ 80 KiB × M (see FLAT_KIB). Then the clients leave: one
//      record per stream ("client_disconnect").
//
// Exit 1 when the usage records do not match or a stream fails; the memory
// verdicts are printed, not enforced (as run.sh's performance targets).
import { fork, spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const envInt = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v)) { console.error(`streams.mjs: ${name} must be a whole number`); process.exit(2); }
  return Number(v);
};
const N = envInt('BENCH_STREAMS', 8000);
const BATCH = Math.max(1, envInt('STREAMS_BATCH', 200));
const TRICKLE_MS = Math.max(100, envInt('STREAMS_TRICKLE_MS', 5000));
const M = envInt('STREAMS_SLOW', 50);
const SLOW_SECONDS = envInt('STREAMS_SLOW_SECONDS', 10);
const SLOW_READ = Math.max(1, envInt('STREAMS_SLOW_READ', 16384));
const TARGET_KIB = 14;           // DESIGN §9
// Slow readers, "flat": max - start ≤ 80 KiB per stream (3.9 MiB for 50),
// under a third of the 256 KiB client_high_watermark. At start the buffers
// the proxy may fill (up to the watermark per stream, then it pauses the
// upstream) are full already; what moves after that is allocator churn. A
// leak or a buffer that grows with the bytes relayed (~75 MiB in 10 s) would
// overshoot it within a second or two.
const FLAT_KIB = 80 * M;

// ---- the SSE wire format (PROVIDERS.md 1.1, stream_options.include_usage) ---
const CHUNK_HEAD = (id) => `{"id":"chatcmpl-${id}","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_bench","choices":`;
const ev = (id, choices, usage = 'null') => `data: ${CHUNK_HEAD(id)}${choices},"usage":${usage}}\n\n`;
const roleEv = (id) => ev(id, '[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]');
const wordEv = (id, w) => ev(id, `[{"index":0,"delta":{"content":"${w}"},"logprobs":null,"finish_reason":null}]`);
const finishEv = (id) => ev(id, '[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]');
const usageEv = (id, out) => ev(id, '[]', `{"prompt_tokens":12,"completion_tokens":${out},"total_tokens":${12 + out},"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`);
const DONE = 'data: [DONE]\n\n';
const chunk = (s) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;

if (process.env.STREAMS_ROLE === 'upstream') upstreamMain();
else await clientMain();

// ---- the upstream process ----------------------------------------------------
// x-bench-stream: "hold" - the head, the role chunk and one content chunk at
// once, then a content chunk every STREAMS_TRICKLE_MS until the parent says
// "finish" (finish_reason, usage with the content chunks sent, [DONE]); "flood" -
// content chunks without end, each write as soon as the previous one drained;
// anything else - a whole short stream at once. Requests on a kept-alive
// connection are answered in turn.
function upstreamMain() {
  const held = new Set();        // sockets of "hold" streams not finished yet
  const st = { accepted: 0, holds: 0, floods: 0, stalledFloods: 0, floodBytes: 0, tokens: 0 };
  let reqNo = 0;
  const FLOOD = chunk(wordEv('flood', 'x'.repeat(1000)).repeat(16));
  const HEAD = (id) => 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n' +
    `x-request-id: req_${id}\r\nTransfer-Encoding: chunked\r\n\r\n`;

  const finishHeld = (s) => {
    const id = s.streamId;
    s.write(chunk(finishEv(id) + usageEv(id, s.tokens) + DONE) + '0\r\n\r\n');
    st.tokens += s.tokens;
    held.delete(s);
    s.busy = false;
    parse(s);                    // a next request already in the buffer
  };
  const flood = (s) => {
    while (!s.destroyed) {
      st.floodBytes += FLOOD.length;
      if (!s.write(FLOOD)) {
        if (!s.stalled) { s.stalled = true; st.stalledFloods++; }
        s.once('drain', () => flood(s));
        return;
      }
    }
  };
  const answer = (s, mode) => {
    const id = `bench${++reqNo}`;
    s.busy = true;
    s.streamId = id;
    s.tokens = 1;
    if (mode === 'hold') {
      st.holds++;
      held.add(s);
      s.write(HEAD(id) + chunk(roleEv(id) + wordEv(id, 'Hi')));
    } else if (mode === 'flood') {
      st.floods++;
      s.write(HEAD(id) + chunk(roleEv(id)));
      flood(s);
    } else {
      s.write(HEAD(id) + chunk(roleEv(id) + wordEv(id, 'Hi') + finishEv(id) + usageEv(id, 1) + DONE) + '0\r\n\r\n');
      s.busy = false;
    }
  };
  // Takes one whole request (head and Content-Length body) off s.buf.
  const parse = (s) => {
    if (s.busy) return;
    const end = s.buf.indexOf('\r\n\r\n');
    if (end === -1) return;
    const head = s.buf.subarray(0, end).toString('latin1');
    const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] || 0);
    if (s.buf.length < end + 4 + len) return;
    s.buf = s.buf.subarray(end + 4 + len);
    answer(s, /\r\nx-bench-stream:\s*(\w+)/i.exec(head)?.[1]);
  };
  const srv = net.createServer({ noDelay: true }, (s) => {
    st.accepted++;
    s.buf = Buffer.alloc(0);
    s.on('data', (d) => { s.buf = s.buf.length ? Buffer.concat([s.buf, d]) : d; parse(s); });
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
  });
  const trickle = setInterval(() => {
    for (const s of held) { s.tokens++; s.write(chunk(wordEv(s.streamId, ' hi'))); }
  }, TRICKLE_MS);
  process.on('message', (m) => {
    if (m.cmd === 'finish') {
      const n = held.size;
      for (const s of [...held]) finishHeld(s);
      process.send({ ev: 'finish', n, tokens: st.tokens });
    } else if (m.cmd === 'stats') {
      process.send({ ev: 'stats', ...st, held: held.size });
    }
  });
  process.on('disconnect', () => { clearInterval(trickle); process.exit(0); });
  srv.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => process.send({ ev: 'listening', port: srv.address().port }));
}

// ---- the client process ------------------------------------------------------
function nofile() {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  const num = (v) => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: num(m[1]), hard: num(m[2]) };
}

// Under a soft descriptor limit below what this process needs, runs itself
// again under `ulimit -n <hard>` (bash), forwarding signals; the proxy and the
// upstream inherit the raised limit. Returns false when this process goes on.
async function reexecForDescriptors() {
  const { soft, hard } = nofile();
  // The proxy: 2 per stream + 256 idle upstream connections + 320 for the
  // rest (README "Configuration"); this process and the upstream: 1 per stream.
  const need = 2 * Math.max(N, M) + 256 + 320;
  if (hard < need) {
    console.error(`streams.mjs: ${Math.max(N, M)} streams need ${need} descriptors in the proxy; the hard limit is ${hard}` +
      ' (lower BENCH_STREAMS or raise the hard limit)');
    process.exit(2);
  }
  if (soft >= need) return false;
  if (process.env.STREAMS_REEXEC) {
    console.error(`streams.mjs: could not raise the descriptor limit to ${need} (soft ${soft})`);
    process.exit(2);
  }
  const child = spawn('bash', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'bash',
    String(hard === Infinity ? need : hard), process.execPath, ...process.argv.slice(1)],
  { stdio: 'inherit', env: { ...process.env, STREAMS_REEXEC: '1' } });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  const code = await new Promise((r) => child.on('exit', (c, s) => r(c ?? 128 + (os.constants.signals[s] || 0))));
  process.exit(code);
}

async function clientMain() {
  if (N === 0 && M === 0) { console.log('streams.mjs: BENCH_STREAMS=0 and STREAMS_SLOW=0: nothing to do'); return; }
  if (await reexecForDescriptors()) return;
  const e2e = path.join(here, '..', 'e2e');
  const { startProxy } = await import(path.join(e2e, 'lib', 'proxy.mjs'));
  const { waitFor } = await import(path.join(e2e, 'lib', 'util.mjs'));
  process.env.BYOK_PROXY_BIN = path.resolve(process.argv[2] || process.env.BYOK_PROXY_BIN || path.join(here, '..', '..', 'build', 'byok-proxy'));

  // State to stop on any exit: the proxy of the phase, the upstream, sockets.
  let proxy = null;
  let upstream = null;
  const sockets = new Set();
  let stopping = null;
  const stop = () => {
    stopping ??= (async () => {
      for (const s of sockets) s.destroy();
      if (proxy) { await proxy.stop().catch(() => {}); proxy.remove(); proxy = null; }
      if (upstream && upstream.exitCode === null) { upstream.kill('SIGTERM'); }
    })();
    return stopping;
  };
  // (timeout(1) signals its whole process group: the signal may come twice.)
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.on(sig, async () => {
      if (!stopping) console.error(`streams.mjs: ${sig}, stopping`);
      await stop();
      process.exit(code);
    });
  }

  // The upstream process and a request/answer channel to it.
  upstream = fork(self, [], { env: { ...process.env, STREAMS_ROLE: 'upstream' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  upstream.on('message', (m) => { const w = waiting.get(m.ev); if (w) { waiting.delete(m.ev); w(m); } });
  upstream.on('error', () => {});   // a send after its exit: ask() says so
  const ask = (cmd) => new Promise((resolve, reject) => {
    if (upstream.exitCode !== null || upstream.signalCode !== null) { reject(new Error('the upstream process exited')); return; }
    const t = setTimeout(() => { waiting.delete(cmd); reject(new Error(`upstream did not answer "${cmd}" in 10 s`)); }, 10000);
    waiting.set(cmd, (m) => { clearTimeout(t); resolve(m); });
    if (cmd !== 'listening') upstream.send({ cmd }, (e) => { if (e) { clearTimeout(t); waiting.delete(cmd); reject(e); } });
  });
  const upstreamPort = (await ask('listening')).port;

  const rssKiB = (pid) => {
    const txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/^VmRSS:\s+(\d+)/m.exec(txt)[1]), hwm: Number(/^VmHWM:\s+(\d+)/m.exec(txt)[1]) };
  };
  const mib = (kib) => (kib / 1024).toFixed(1);
  const jsonlRecords = () => {
    if (!fs.existsSync(proxy.jsonlPath)) return [];
    return fs.readFileSync(proxy.jsonlPath, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  };
  // The JSONL file's line count once it has at least `want` lines and has not
  // moved for 1 s (at most 30 s): the usage writer has caught up.
  const settledRecords = async (want) => {
    let last = -1;
    let since = Date.now();
    const deadline = Date.now() + 30000;
    for (;;) {
      const n = fs.existsSync(proxy.jsonlPath) ? fs.readFileSync(proxy.jsonlPath, 'utf8').split('\n').filter((l) => l.trim()).length : 0;
      if (n !== last) { last = n; since = Date.now(); }
      if ((n >= want && Date.now() - since >= 1000) || Date.now() > deadline) return jsonlRecords();
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  // A fresh proxy (one worker, caps raised to fit), a tenant and a key.
  const newProxy = async (streams) => {
    const cap = Math.max(8192, streams + 64);
    if (stopping) throw new Error('stopped');
    const p = await startProxy({
      mockUrl: `http://127.0.0.1:${upstreamPort}`,
      limits: { max_connections: cap, max_connections_per_client: cap },
      patch: (cfg) => { cfg.workers = 1; cfg.log_level = 'warn'; },
    });
    if (stopping) { await p.stop(); p.remove(); throw new Error('stopped'); }  // a signal came during the start
    proxy = p;
    await proxy.admin.createTenant({ id: 'bench', name: 'bench', features: { byok: false, agency: false }, parent_id: null,
      wallet_deduction: false, plan_credits_micros: 0, wallet_micros: 1e12 });
    return (await proxy.admin.createKey('bench')).key;
  };

  // One streamed request on its own socket. st.first: the head was 200 and
  // the first event arrived; st.events: events seen; st.ended: the chunked
  // body's end (or the socket's). With slow: no reading until st.readSome().
  const BODY = JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Tell me a story, slowly.' }] });
  const openStream = (key, mode, { slow = false } = {}) => {
    const st = { first: false, failed: null, events: 0, ended: false, bytes: 0, status: 0, sock: null };
    const s = net.connect({ host: '127.0.0.1', port: proxy.port, noDelay: true });
    st.sock = s;
    sockets.add(s);
    let head = '';
    let tail = '';
    const onData = (d) => {
      st.bytes += d.length;
      let text = d.toString('latin1');
      if (!st.status) {
        head += text;
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        st.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] || -1);
        if (st.status !== 200) { st.failed = `status ${st.status}: ${head.slice(0, 200)}`; s.destroy(); return; }
        text = head.slice(end + 4);
        head = '';
      }
      const all = tail + text;
      for (let i = all.indexOf('data: '); i !== -1; i = all.indexOf('data: ', i + 1)) if (i + 6 > tail.length) st.events++;
      if (st.events > 0) st.first = true;
      if (all.endsWith('\r\n0\r\n\r\n')) st.ended = true;
      tail = all.slice(-16);
    };
    s.on('error', (e) => { st.failed ??= e.message; });
    s.on('close', () => { sockets.delete(s); if (!st.ended && !st.failed && !st.closing) st.failed = 'closed early'; if (st.first) st.ended = true; });
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
      'Content-Type: application/json\r\nAccept: text/event-stream\r\n' +
      `x-bench-stream: ${mode}\r\nContent-Length: ${Buffer.byteLength(BODY)}\r\n\r\n${BODY}`);
    if (!slow) {
      s.on('data', onData);
    } else {
      // Paused mode: at most SLOW_READ bytes of what node has read ahead
      // (one socket read, up to 64 KiB) per call.
      const pull = () => { const n = Math.min(SLOW_READ, s.readableLength); if (n > 0) onData(s.read(n)); };
      // Until the first event: whatever comes (the head may come alone).
      const untilFirst = () => { pull(); if (!st.first && !st.failed) s.once('readable', untilFirst); };
      s.once('readable', untilFirst);
      st.readSome = pull;
    }
    st.close = () => { st.closing = true; s.destroy(); };
    return st;
  };
  const failures = (list) => list.filter((st) => st.failed);
  let status = 0;
  const fail = (msg) => { console.log(`FAIL: ${msg}`); status = 1; };

  try {
    // ---- 1. N open streams -----------------------------------------------------
    if (N > 0) {
      const key = await newProxy(N);
      console.log(`proxy: ${process.env.BYOK_PROXY_BIN}, pid ${proxy.pid}, 1 worker, max_connections ${proxy.config.limits.max_connections};` +
        ` descriptor limit ${nofile().soft}; upstream: node:net (pid ${upstream.pid}), a content chunk every ${TRICKLE_MS} ms`);
      const warm = openStream(key, 'short');
      await waitFor(() => warm.ended || warm.failed, { timeout: 10000, what: 'the warm stream' });
      if (warm.failed) throw new Error(`warm stream: ${warm.failed}`);
      warm.close();
      await settledRecords(1);
      const idle = rssKiB(proxy.pid);
      const t0 = Date.now();
      const streams = [];
      for (let i = 0; i < N; i += BATCH) {
        const batch = [];
        for (let j = i; j < Math.min(N, i + BATCH); j++) batch.push(openStream(key, 'hold'));
        streams.push(...batch);
        await waitFor(() => batch.every((st) => st.first || st.failed), { timeout: 30000, interval: 5,
          what: `the first chunk on streams ${i + 1}..${i + batch.length}` });
        if (failures(batch).length) break;
      }
      const opened = streams.filter((st) => st.first && !st.failed).length;
      const rampS = (Date.now() - t0) / 1000;
      const first = rssKiB(proxy.pid);
      const fds = await proxy.openFds().catch(() => '?');
      const up = await ask('stats');
      console.log(`opened ${opened}/${N} streams in ${rampS.toFixed(1)} s (batches of ${BATCH}); upstream holds ${up.held};` +
        ` proxy descriptors ${fds}`);
      if (opened !== N) {
        const f = failures(streams);
        fail(`${N - opened} stream(s) did not open (${f.length} failed; first: ${f[0]?.failed ?? 'no first chunk'})`);
      }
      // Once every stream has had one trickled chunk as well (buffers used once).
      let trickled = null;
      if (opened === N) {
        await waitFor(() => streams.every((st) => st.events >= 3 || st.failed), { timeout: 3 * TRICKLE_MS + 30000, interval: 50,
          what: 'a trickled chunk on every stream' });
        trickled = rssKiB(proxy.pid);
      }
      const open = Math.max(first.rss, trickled?.rss ?? 0);
      const perStream = (open - idle.rss) / Math.max(1, opened);
      console.log(`proxy RSS: idle ${idle.rss} KiB (after a warm stream), ${first.rss} KiB with ${opened} open` +
        (trickled ? `, ${trickled.rss} KiB after a trickled chunk on each` : '') + `; peak (VmHWM) ${rssKiB(proxy.pid).hwm} KiB`);
      console.log(`open streams: ${perStream.toFixed(1)} KiB of RSS per open stream ((${open} - ${idle.rss}) / ${opened});` +
        ` target ≤ ${TARGET_KIB} KiB: ${perStream <= TARGET_KIB ? 'met' : 'NOT met'}`);

      // The upstream finishes every stream; one "ok" record each.
      const fin = await ask('finish');
      await waitFor(() => streams.every((st) => st.ended || st.failed), { timeout: 60000, interval: 50, what: 'every stream to end' });
      const cut = streams.filter((st) => st.failed).length;
      if (cut) fail(`${cut} stream(s) broke before their end`);
      for (const st of streams) st.close();
      const recs = await settledRecords(1 + N);
      const held = recs.slice(1);
      const ok = held.filter((r) => r.outcome === 'ok' && r.estimated === false && r.status === 200).length;
      const tokens = held.reduce((a, r) => a + (r.units?.output_tokens || 0), 0);
      const verdict = recs.length === 1 + opened && ok === opened && tokens === fin.tokens;
      console.log(`usage records: ${recs.length} in JSONL for ${1 + opened} streams (warm + held), ${ok} "ok" and not estimated,` +
        ` output tokens ${tokens} (upstream sent ${fin.tokens}): ${verdict ? 'ok' : 'MISMATCH'}`);
      if (!verdict) fail('usage records do not match the streams');
      console.log(`proxy RSS after the streams closed: ${rssKiB(proxy.pid).rss} KiB`);
      await proxy.stop();
      proxy.remove();
      proxy = null;
    }

    // ---- 2. slow readers ---------------------------------------------------------
    if (M > 0) {
      const key = await newProxy(M);
      const warm = openStream(key, 'short');
      await waitFor(() => warm.ended || warm.failed, { timeout: 10000, what: 'the warm stream' });
      if (warm.failed) throw new Error(`warm stream: ${warm.failed}`);
      warm.close();
      await settledRecords(1);
      const base = rssKiB(proxy.pid).rss;
      const up0 = await ask('stats');
      const slow = [];
      for (let i = 0; i < M; i++) slow.push(openStream(key, 'flood', { slow: true }));
      await waitFor(() => slow.every((st) => st.first || st.failed), { timeout: 30000, what: 'the first bytes on every slow stream' });
      if (failures(slow).length) throw new Error(`slow stream: ${failures(slow)[0].failed}`);
      const reader = setInterval(() => { for (const st of slow) st.readSome(); }, 100);
      try {
        // Back-pressure reached the upstream: every flood write blocked once.
        let up;
        await waitFor(async () => { up = await ask('stats'); return up.stalledFloods - up0.stalledFloods >= M; },
          { timeout: 30000, interval: 50, what: 'every slow stream\'s upstream to block' });
        // And the proxy's own buffers filled: its writes go straight to the
        // kernel, so what it holds (up to the client watermark per stream)
        // piles up only once the kernel's socket buffers are full. The
        // window starts when its RSS moved less than 256 KiB in a second.
        const rssSeen = [];
        await waitFor(() => {
          rssSeen.push(rssKiB(proxy.pid).rss);
          return rssSeen.length > 4 && rssSeen[rssSeen.length - 1] - rssSeen[rssSeen.length - 5] < 256;
        }, { timeout: 20000, interval: 250, what: 'the proxy\'s RSS to settle with every slow stream blocked' });
        up = await ask('stats');
        const start = rssKiB(proxy.pid).rss;
        const read0 = slow.reduce((a, st) => a + st.bytes, 0);
        const sent0 = up.floodBytes;
        let max = start;
        const samples = [];
        const t0 = Date.now();
        for (let i = 1; i <= SLOW_SECONDS * 4; i++) {
          await new Promise((r) => setTimeout(r, t0 + i * 250 - Date.now())); // the sampling period, by design
          const r = rssKiB(proxy.pid).rss;
          samples.push(r);
          max = Math.max(max, r);
        }
        const end = samples[samples.length - 1] ?? start;
        up = await ask('stats');
        const read = slow.reduce((a, st) => a + st.bytes, 0) - read0;
        const sent = up.floodBytes - sent0;
        const secs = (Date.now() - t0) / 1000;
        console.log(`slow readers: ${M} streams, each read ${SLOW_READ} B per 100 ms; upstream blocked on every one, the proxy's RSS settled;` +
          ` in ${secs.toFixed(1)} s the upstream wrote ${mib(sent / 1024)} MiB, the clients read ${mib(read / 1024)} MiB` +
          ' (the difference is in the socket buffers, which the kernel grows, not in the proxy)');
        const wm = (proxy.config.limits?.client_high_watermark ?? 262144) / 1024;
        console.log(`proxy RSS: ${base} KiB before, ${start} KiB at start (buffers full: +${mib(start - base)} MiB,` +
          ` ${((start - base) / M).toFixed(0)} KiB per stream; client_high_watermark ${wm} KiB), max ${max} KiB,` +
          ` end ${end} KiB (sampled every 250 ms)`);
        console.log(`proxy RSS each second, KiB: ${samples.filter((_, i) => i % 4 === 3).join(' ')}`);
        console.log(`slow readers: max - start = ${mib(max - start)} MiB; target flat (≤ ${mib(FLAT_KIB)} MiB = ${M} × 80 KiB):` +
          ` ${max - start <= FLAT_KIB ? 'met' : 'NOT met'}`);
      } finally {
        clearInterval(reader);
      }
      for (const st of slow) st.close();
      const recs = await settledRecords(1 + M);
      const gone = recs.slice(1).filter((r) => r.outcome === 'client_disconnect').length;
      const verdict = recs.length === 1 + M && gone === M;
      console.log(`usage records: ${recs.length} in JSONL for ${1 + M} streams (warm + slow), ${gone} "client_disconnect":` +
        ` ${verdict ? 'ok' : 'MISMATCH'}`);
      if (!verdict) fail('usage records do not match the slow streams');
    }
  } catch (e) {
    fail(e.message);
  } finally {
    await stop();
  }
  process.exitCode = status;
}
