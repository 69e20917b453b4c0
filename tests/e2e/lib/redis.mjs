// redis.mjs - a real redis-server for a test (DESIGN §8: started by the test
// on a free loopback port, in a temp dir, nothing saved unless asked), and a
// tiny RESP2 client to look at what the proxy wrote (binary-safe: bulk
// strings come back as Buffers). Every wait is bounded.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './util.mjs';

// Throws (with the fix) when redis-server is not installed: a missing
// server fails the test, it is never skipped silently.
export function redisServerBin() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('redis-server is not installed (scripts/setup.sh installs it: apt-get install redis-server)');
  }
  return 'redis-server';
}

// Starts redis-server and waits (bounded) until it answers PING.
// opts: port (default a free one), dir (default a new temp dir),
// appendonly (default false), args (extra arguments), timeout (ms).
// Returns { port, url(db), dir, pid, client(), command(...), stop(), kill(), restart(), remove(), logs() }.
// restart() starts it again on the same port and dir (after stop() or kill()).
export async function startRedis(opts = {}) {
  const bin = redisServerBin();
  const port = opts.port || await freePort();
  const dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'byok-redis-'));
  const logFile = path.join(dir, 'redis.log');
  let child = null;
  let exited = null;

  async function launch() {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', opts.appendonly ? 'yes' : 'no', '--dir', dir, '--logfile', logFile,
      '--daemonize', 'no', ...(opts.args || [])];
    child = spawn(bin, args, { stdio: 'ignore' });
    exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let gone = null;
    exited.then((e) => { gone = e; });
    await waitFor(async () => {
      if (gone) throw Object.assign(new Error(`redis-server exited: ${JSON.stringify(gone)}`), { fatal: true });
      const c = await connectRedis(port).catch(() => null);
      if (!c) return false;
      try {
        return (await c.command('PING')) === 'PONG';
      } finally {
        c.close();
      }
    }, { timeout: opts.timeout || 10000, interval: 50, what: `redis-server on port ${port} answering PING` })
      .catch((e) => {
        if (child.exitCode === null) child.kill('SIGKILL');
        throw new Error(`${e.message}\n--- ${logFile} ---\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''}`);
      });
  }

  async function stop({ timeout = 5000 } = {}) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), timeout);
    await exited;
    clearTimeout(t);
  }

  await launch();
  return {
    port,
    dir,
    get pid() { return child.pid; },
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    // A new client (caller closes it).
    client: () => connectRedis(port),
    // One command on a short-lived connection.
    async command(...args) {
      const c = await connectRedis(port);
      try {
        return await c.command(...args);
      } finally {
        c.close();
      }
    },
    stop,
    // kill -9: no shutdown, no last AOF rewrite; resolves once it is gone.
    async kill() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await stop();
      await launch();
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
    logs: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
  };
}

// A RESP2 connection. command(...args) resolves with the reply: status as a
// string, integer as a number, bulk string as a Buffer (null for nil), array
// as an array; an error reply rejects. Replies come in order (pipelining).
export function connectRedis(port, host = '127.0.0.1', { timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    const pending = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`connect to redis ${host}:${port} timed out`)); }, timeout);
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
      while (pending.length) pending.shift().reject(e);
    });
    sock.on('close', () => {
      while (pending.length) pending.shift().reject(new Error('redis connection closed'));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf, 0);
        if (!r) break;
        buf = buf.subarray(r.end);
        const p = pending.shift();
        if (!p) continue;
        if (r.value instanceof Error) p.reject(r.value);
        else p.resolve(r.value);
      }
    });
    sock.on('connect', () => {
      clearTimeout(timer);
      resolve({
        command(...args) {
          return new Promise((res, rej) => {
            pending.push({ resolve: res, reject: rej });
            sock.write(encodeCommand(args));
          });
        },
        close() { sock.end(); },
      });
    });
  });
}

function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

// One reply at buf[off]: { value, end } or null when incomplete.
function parseReply(buf, off) {
  const nl = buf.indexOf('\r\n', off);
  if (nl === -1) return null;
  const type = String.fromCharCode(buf[off]);
  const line = buf.toString('utf8', off + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+': return { value: line, end: next };
    case '-': return { value: new Error(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n === -1) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.subarray(next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n === -1) return { value: null, end: next };
      const out = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at);
        if (!r) return null;
        out.push(r.value);
        at = r.end;
      }
      return { value: out, end: at };
    }
    default:
      throw new Error(`redis: unexpected reply type ${JSON.stringify(type)}`);
  }
}

// Everything under a key prefix, as plain comparable data: { key: { type,
// value } } with hashes as objects, sets sorted, zsets as [member, score]
// pairs, streams as [fields] (entry ids dropped), strings as text, or hex
// when not printable (sealed keys, hashes).
export async function dumpRedis(server, prefix = 'byok:') {
  const c = await server.client();
  try {
    const keys = (await c.command('KEYS', `${prefix}*`)).map(String).sort();
    const out = {};
    const text = (b) => (b === null ? null : (/^[\x20-\x7e]*$/.test(b.toString('latin1')) ? b.toString('utf8') : `hex:${b.toString('hex')}`));
    for (const k of keys) {
      const type = await c.command('TYPE', k);
      let value;
      if (type === 'hash') {
        const a = await c.command('HGETALL', k);
        value = {};
        for (let i = 0; i < a.length; i += 2) value[String(a[i])] = text(a[i + 1]);
      } else if (type === 'set') {
        value = (await c.command('SMEMBERS', k)).map(text).sort();
      } else if (type === 'zset') {
        const a = await c.command('ZRANGE', k, 0, -1, 'WITHSCORES');
        value = [];
        for (let i = 0; i < a.length; i += 2) value.push([text(a[i]), Number(a[i + 1])]);
      } else if (type === 'string') {
        value = text(await c.command('GET', k));
      } else if (type === 'stream') {
        value = (await c.command('XRANGE', k, '-', '+')).map(([, f]) => f.map(text));
      } else {
        value = `(${type})`;
      }
      out[k] = { type, value };
    }
    return out;
  } finally {
    c.close();
  }
}
