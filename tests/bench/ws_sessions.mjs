// ws_sessions.mjs - N concurrent Realtime-style WebSocket sessions through
// byok-proxy on loopback, relaying audio frames both ways for a bounded time;
// reports the proxy's RSS and CPU, and frames relayed. Not part of ctest.
//
//   node tests/bench/ws_sessions.mjs [build/byok-proxy]
//   env: WS_SESSIONS (200), WS_SECONDS (15), WS_FPS (10 frames/s per direction),
//        WS_FRAME_BYTES (4800 bytes of PCM per frame = 100 ms at 24 kHz)
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const e2e = path.join(here, '..', 'e2e');
const require = createRequire(path.join(e2e, 'package.json'));
const { WebSocketServer, WebSocket } = require('ws');
const { startProxy } = await import(path.join(e2e, 'lib', 'proxy.mjs'));

const N = Number(process.env.WS_SESSIONS || 200);
const SECONDS = Number(process.env.WS_SECONDS || 15);
const FPS = Number(process.env.WS_FPS || 10);
const FRAME = Number(process.env.WS_FRAME_BYTES || 4800);
process.env.BYOK_PROXY_BIN = path.resolve(process.argv[2] || process.env.BYOK_PROXY_BIN || path.join(here, '..', '..', 'build', 'byok-proxy'));

// Upstream: answers every client frame with an audio delta of the same size.
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
await new Promise((r) => wss.once('listening', r));
const upstreamPort = wss.address().port;
let upFrames = 0;
wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'session.created' }));
  ws.on('message', (m) => {
    upFrames++;
    const msg = JSON.parse(m.toString());
    if (msg.type === 'input_audio_buffer.append') ws.send(JSON.stringify({ type: 'response.output_audio.delta', delta: msg.audio }));
  });
});

const proxy = await startProxy({ mockUrl: `http://127.0.0.1:${upstreamPort}`, patch: (cfg) => { cfg.log_level = 'warn'; } });
const cleanup = async () => { await proxy.stop().catch(() => {}); proxy.remove(); wss.close(); };
process.on('SIGINT', async () => { await cleanup(); process.exit(130); });

try {
  await proxy.admin.createTenant({ id: 'bench', name: 'bench', wallet_micros: 1e12 });
  const key = (await proxy.admin.createKey('bench')).key;
  const stat = () => {
    const s = fs.readFileSync(`/proc/${proxy.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${proxy.pid}/status`, 'utf8'))[1]);
    return { cpu: (Number(s[11]) + Number(s[12])) / 100, rssKiB: rss };
  };
  const idle = stat();

  const audio = Buffer.alloc(FRAME, 7).toString('base64');
  const frame = JSON.stringify({ type: 'input_audio_buffer.append', audio });
  let down = 0, opened = 0, failed = 0;
  const sockets = [];
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/v1/realtime?model=gpt-realtime`, { headers: { authorization: `Bearer ${key}` } });
    ws.on('message', () => { down++; });
    ws.on('error', () => { failed++; });
    sockets.push(new Promise((resolve) => { ws.once('open', () => { opened++; resolve(ws); }); ws.once('error', () => resolve(null)); }));
  }
  const open = (await Promise.all(sockets)).filter(Boolean);
  const t0 = Date.now();
  const start = stat();
  let peakRss = start.rssKiB;
  const timer = setInterval(() => {
    for (const ws of open) if (ws.readyState === WebSocket.OPEN) ws.send(frame);
    peakRss = Math.max(peakRss, stat().rssKiB);
  }, 1000 / FPS);
  await new Promise((r) => setTimeout(r, SECONDS * 1000)); // the run's length, by design
  clearInterval(timer);
  const end = stat();
  const elapsed = (Date.now() - t0) / 1000;
  for (const ws of open) ws.close(1000);
  await new Promise((r) => setTimeout(r, 500));

  const cpu = end.cpu - start.cpu;
  console.log(`sessions open: ${opened}/${N} (failed ${failed}), ${elapsed.toFixed(1)} s, ${FPS} frames/s each way of ${FRAME} B audio (${frame.length} B JSON)`);
  console.log(`frames: upstream received ${upFrames}, clients received ${down} (${(down / elapsed).toFixed(0)}/s)`);
  console.log(`proxy RSS: idle ${idle.rssKiB} KiB, during run ${end.rssKiB} KiB, peak ${peakRss} KiB -> ${((peakRss - idle.rssKiB) / Math.max(1, opened)).toFixed(1)} KiB per session`);
  console.log(`proxy CPU: ${cpu.toFixed(2)} s over ${elapsed.toFixed(1)} s = ${(100 * cpu / elapsed).toFixed(1)} % of one core`);
} finally {
  await cleanup();
}
