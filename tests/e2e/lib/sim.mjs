// sim.mjs - the simulated upstreams (README "Simulated providers"): the
// standalone build/byok-sim started and read (its "<upstream> <url>" lines),
// the URLs of a proxy's in-process simulator read from its log, and the
// config a test proxy needs to run on simulated upstreams only.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PRICES } from './records.mjs';
import { waitFor } from './util.mjs';

export function simBin() {
  const bin = process.env.BYOK_SIM_BIN
    || (process.env.BYOK_PROXY_BIN && path.join(path.dirname(process.env.BYOK_PROXY_BIN), 'byok-sim'));
  if (!bin) throw new Error('BYOK_SIM_BIN is not set (path to the byok-sim binary)');
  if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist (build it first)`);
  return bin;
}

// Starts byok-sim with args and waits (bounded) for its "ready" line.
// Returns { urls: {upstream: url}, seed, ca (--tls: the certificate file),
// child, logs(), stop() }.
export async function startSim(args = []) {
  const child = spawn(simBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  let exit = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => { exit = { code, signal }; resolve(exit); }));
  const sim = {
    child,
    logs: () => out + err,
    get exit() { return exit; },
    exited,
    async stop() {
      if (!exit) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
      return exit.code ?? exit.signal;
    },
  };
  try {
    await waitFor(() => {
      if (exit) throw Object.assign(new Error(`byok-sim exited: ${JSON.stringify(exit)}\n${sim.logs()}`), { fatal: true });
      return /^ready seed=\d+$/m.test(out);
    }, { timeout: 10000, what: 'byok-sim to print "ready"' });
  } catch (e) {
    if (!exit) child.kill('SIGKILL');
    await exited;
    throw new Error(`byok-sim did not start: ${e.message}\n${sim.logs()}`);
  }
  sim.urls = {};
  for (const m of out.matchAll(/^(\w+) (https?:\/\/\S+)$/gm)) sim.urls[m[1]] = m[2];
  sim.ca = /^ca (.+)$/m.exec(out)?.[1] ?? null; // --tls: the certificate file
  sim.seed = Number(/^ready seed=(\d+)$/m.exec(out)[1]);
  return sim;
}

// The URLs of a proxy's in-process simulator, from its start-up log lines.
export function inProcessUrls(proxy) {
  const urls = {};
  for (const m of proxy.logs().matchAll(/simulate: upstream (\w+) is simulated at (https?:\/\/[^\s"]+)/g)) urls[m[1]] = m[2];
  return urls;
}

// Prices for what the simulated text providers serve.
export const SIM_PRICES = {
  openai: PRICES,
  anthropic: { 'claude-*': { input_per_1m: 3000000, cached_input_per_1m: 300000, output_per_1m: 15000000 } },
  deepseek: { 'deepseek-*': { input_per_1m: 270000, cached_input_per_1m: 70000, output_per_1m: 1100000 } },
};

// A startProxy() patch: openai, anthropic and deepseek simulated in the
// proxy, no platform keys configured, the given "simulate" section.
export function simulatedConfig(simulate) {
  return (cfg) => {
    cfg.upstreams = { openai: 'simulate', anthropic: 'simulate', deepseek: 'simulate' };
    delete cfg.platform_keys;
    cfg.pricing = SIM_PRICES;
    if (simulate) cfg.simulate = simulate;
  };
}

// The proxy scripts/run.sh starts without a provider key: the shipped
// config with every provider simulated (scripts/simulated-config.sh), only
// the listen ports and the store's paths the test's own. tune(cfg) may
// change it further. No platform key in the environment.
export async function startRunShProxy(startProxy, tune) {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
  const shipped = JSON.parse(execFileSync('bash', [path.join(root, 'scripts/simulated-config.sh'),
    path.join(root, 'config/byok-proxy.json')], { encoding: 'utf8' }));
  return startProxy({
    patch: (cfg) => {
      const keep = { listen: cfg.listen, admin_listen: cfg.admin_listen, store: cfg.store, usage: cfg.usage };
      for (const k of Object.keys(cfg)) delete cfg[k];
      Object.assign(cfg, shipped, keep);
      if (tune) tune(cfg);
    },
    env: { OPENAI_API_KEY: undefined },
  });
}
