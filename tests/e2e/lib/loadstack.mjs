// loadstack.mjs - the proxy and its upstreams for the load-test kit's test
// (loadtest.test.mjs), in one place: the Node mocks of this directory,
// which record what they received, so the test can hold the kit's counts
// against the upstream's. The kit against the C simulator (the proxy
// scripts/run.sh starts without a provider key) is loadtest_sim.test.mjs.
//
//   kit (loadtest/run.mjs) ──► byok-proxy (plain + TLS listener, SQLite,
//                               the shipped pricing, socket records every
//                               second) ──► openai:     front ─┬─ HTTP → mock_openai (chat)
//                                                             └─ upgrade → Realtime mock
//                                       ──► elevenlabs: ElevenLabs mock (stream-input)
//                                       ──► deepgram:   Deepgram mock (live)
//
// The proxy has one upstream per provider host, and the OpenAI REST and
// Realtime mocks are two servers: `front` is that one host, a loopback TCP
// splitter that hands a connection whose first request is a WebSocket
// upgrade to the Realtime mock and any other to the REST mock (libcurl's
// keep-alive connections carry HTTP only; each upgrade has its own).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockOpenAI } from './mock_openai.mjs';
import { startMockRealtime, startMockElevenLabs, startMockDeepgram, makeTestCerts } from './mock_voice.mjs';
import { startProxy } from './proxy.mjs';
import { freePort, randomHex } from './util.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// The per-minute platform fee of a voice socket (`platform` line) in the
// test: not in the shipped config, added so platform records charge too.
export const SESSION_PER_MINUTE = 20000;

function splitter(restPort, wsPort) {
  const conns = new Set();
  const server = net.createServer((client) => {
    conns.add(client);
    client.on('close', () => conns.delete(client));
    client.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1 && head.length < 65536) return;
      client.off('data', onData);
      client.pause();
      const upgrade = /\r\nupgrade:[ \t]*websocket/i.test(head.subarray(0, end === -1 ? head.length : end).toString('latin1'));
      const up = net.connect(upgrade ? wsPort : restPort, '127.0.0.1');
      conns.add(up);
      up.on('close', () => { conns.delete(up); client.destroy(); });
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      up.write(head);
      client.pipe(up);
      up.pipe(client);
      client.resume();
    };
    client.on('data', onData);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => {
      for (const c of conns) c.destroy();
      server.close(() => r());
    }),
  })));
}

// Starts everything. opts.patch(cfg) last. Returns { proxy, proxyUrl,
// tlsUrl, caFile, adminUrl, adminToken, mocks, close() }.
export async function startLoadStack(opts = {}) {
  const shipped = JSON.parse(fs.readFileSync(path.join(ROOT, 'config/byok-proxy.json'), 'utf8'));
  const certs = makeTestCerts();
  const mocks = {};
  const closers = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    mocks.openai = await startMockOpenAI();
    closers.push(() => mocks.openai.close());
    mocks.realtime = await startMockRealtime();
    closers.push(() => mocks.realtime.close());
    mocks.elevenlabs = await startMockElevenLabs();
    closers.push(() => mocks.elevenlabs.close());
    mocks.deepgram = await startMockDeepgram();
    closers.push(() => mocks.deepgram.close());
    const front = await splitter(mocks.openai.port, mocks.realtime.port);
    closers.push(front.close);
    const tlsPort = await freePort();
    const keys = { ELEVENLABS_API_KEY: `el-platform-${randomHex(12)}`, DEEPGRAM_API_KEY: `dg-platform-${randomHex(12)}` };
    const proxy = await startProxy({
      mockUrl: front.url,
      env: keys,
      patch: (cfg) => {
        cfg.tls = { listen: `127.0.0.1:${tlsPort}`, cert_file: certs.certFile, key_file: certs.keyFile };
        cfg.upstreams.elevenlabs = mocks.elevenlabs.url;
        cfg.upstreams.deepgram = mocks.deepgram.url;
        cfg.platform_keys.elevenlabs = { key_env: 'ELEVENLABS_API_KEY' };
        cfg.platform_keys.deepgram = { key_env: 'DEEPGRAM_API_KEY' };
        cfg.usage.ws_interval_s = 1;
        cfg.pricing = {
          openai: shipped.pricing.openai,
          elevenlabs: shipped.pricing.elevenlabs,
          deepgram: shipped.pricing.deepgram,
        };
        for (const [p, m] of [['openai', 'gpt-realtime*'], ['elevenlabs', 'eleven_flash_v2_5*'], ['deepgram', 'nova-3*']]) {
          cfg.pricing[p][m] = { ...cfg.pricing[p][m], session_per_minute: SESSION_PER_MINUTE };
        }
        if (opts.patch) opts.patch(cfg);
      },
    });
    closers.push(async () => { await proxy.stop(); proxy.remove(); });
    // Every upstream accepts only the platform key the proxy injects.
    mocks.openai.acceptKeys = new Set([proxy.platformKey]);
    mocks.realtime.acceptKeys = [proxy.platformKey];
    mocks.elevenlabs.acceptKeys = [keys.ELEVENLABS_API_KEY];
    mocks.deepgram.acceptKeys = [keys.DEEPGRAM_API_KEY];
    return {
      proxy,
      proxyUrl: proxy.url,
      tlsUrl: `https://127.0.0.1:${tlsPort}`,
      caFile: certs.caFile,
      adminUrl: proxy.adminUrl,
      adminToken: proxy.adminToken,
      mocks,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
