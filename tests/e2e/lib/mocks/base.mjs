// base.mjs - the recording server every voice/LLM mock is built on: HTTP and
// WebSocket on one loopback port (plus, on request, a second TLS port with
// the same handlers and records). It records every HTTP request (method, url,
// headers, raw body, what was sent back, when it closed) and every WebSocket
// (handshake url/headers/subprotocols, each message both ways, close code,
// reason and who closed), and lets tests script replies with override().
// Provider files (elevenlabs.mjs, azure.mjs, ...) add the built-in endpoints.
import http from 'node:http';
import https from 'node:https';
import { WebSocketServer } from 'ws';

// Starts a mock. spec:
//   name               provider name (for messages)
//   config()           fresh default config object (mock.config, resetConfig())
//   credentials(rec)   [{ in: 'header'|'query'|'subprotocol'|'message', name, value }]
//                      found in a request or handshake record
//   http(ctx)          built-in HTTP handler (after overrides)
//   handshake(ctx)     built-in WS handshake check: return null to accept or
//                      { status, headers?, body? } to refuse the upgrade
//   ws(ctx)            built-in WS session handler (after the upgrade)
//   selectProtocol(protocols, rec)  subprotocol to answer (default: the first)
//   tls                { cert, key } (PEM): also listen with TLS (mock.httpsUrl / wssUrl)
export async function startMock(spec) {
  const requests = [];
  const sockets = [];
  const overrides = [];
  let n = 0;
  let connSeq = 0;
  const servers = [];
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 64 * 1024 * 1024,
    handleProtocols: (protocols, req) => {
      const list = [...protocols];
      const chosen = (mock.selectProtocol || spec.selectProtocol || ((l) => l[0]))(list, req.mockRec);
      return chosen === undefined || chosen === null ? false : chosen;
    },
  });

  const mock = {
    name: spec.name,
    url: null,
    wsUrl: null,
    httpsUrl: null,
    wssUrl: null,
    port: 0,
    tlsPort: 0,
    requests,
    sockets,
    config: spec.config ? spec.config() : {},
    // null = any key is accepted; a Set (or array) of keys = the built-in
    // endpoints answer the provider's 401 to any other key.
    acceptKeys: null,
    selectProtocol: null,
    // A scripted answer for the next matching requests or WebSockets. spec:
    // { path?: string | RegExp (matched against the path without query),
    //   ws?: boolean (true: applies to WebSocket upgrades, default false),
    //   times?: number (default 1, Infinity = until cleared),
    //   handshake?: (ctx) => null | { status, headers, body }  (ws only),
    //   handle?: async (ctx) => void }  (ws without handle: built-in session)
    override(o) {
      overrides.push({ times: 1, ws: false, ...o });
    },
    clearOverrides() {
      overrides.length = 0;
    },
    resetConfig() {
      mock.config = spec.config ? spec.config() : {};
    },
    // Records after a mark (a previous requests.length / sockets.length).
    since(mark) {
      return requests.slice(mark);
    },
    socketsSince(mark) {
      return sockets.slice(mark);
    },
    // The first credential value a record carried (undefined if none).
    keyOf(rec) {
      return rec.credentials[0]?.value;
    },
    accepts(key) {
      if (!mock.acceptKeys) return true;
      const set = mock.acceptKeys instanceof Set ? mock.acceptKeys : new Set(mock.acceptKeys);
      return key !== undefined && set.has(key);
    },
    // With acceptKeys set: the record carries at least one credential and
    // every one is accepted (a proxy key left beside the injected key fails).
    authorized(rec) {
      if (!mock.acceptKeys) return true;
      return rec.credentials.length > 0 && rec.credentials.every((c) => mock.accepts(c.value));
    },
    async close() {
      overrides.length = 0;
      for (const c of wss.clients) c.terminate();
      for (const s of servers) s.closeAllConnections();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };

  const onConnection = (sock) => {
    sock.mockConnId = ++connSeq;
    sock.on('close', () => { sock.mockClosed = true; });
  };

  const onRequest = (req, res) => {
    const rec = baseRecord(++n, req);
    rec.kind = 'http';
    rec.body = null;
    rec.json = null;
    rec.sent = []; // body pieces written, in order (strings or Buffers)
    rec.bytesSent = 0;
    rec.status = null;
    rec.closed = false;
    rec.closedAt = null;
    rec.aborted = false; // closed before the response was finished
    rec.finished = false;
    rec.credentials = safeCredentials(spec, rec);
    requests.push(rec);
    res.on('finish', () => { rec.finished = true; });
    res.on('close', () => {
      rec.closed = true;
      rec.closedAt = Date.now();
      rec.aborted = !res.writableFinished;
    });
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('error', () => {});
    req.on('end', () => {
      rec.body = Buffer.concat(parts);
      if ((req.headers['content-type'] || '').includes('json')) {
        try { rec.json = JSON.parse(rec.body.toString('utf8')); } catch { rec.json = null; }
      }
      dispatchHttp(mock, spec, overrides, rec, req, res).catch((e) => {
        rec.handlerError = e;
        if (!res.headersSent) { res.statusCode = 599; res.end(String(e?.stack || e)); } else res.destroy();
      });
    });
  };

  const onUpgrade = (req, socket, head) => {
    const rec = baseRecord(++n, req);
    rec.kind = 'ws';
    rec.protocols = (req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim()).filter(Boolean);
    rec.protocol = null; // the one the mock answered
    rec.credentials = safeCredentials(spec, rec);
    rec.rejected = null; // { status, body } when the upgrade was refused
    rec.messages = []; // received: { binary, data: Buffer, text?, json?, at }
    rec.sent = []; // sent: { binary, data, at }
    rec.open = false;
    rec.closed = false;
    rec.closedAt = null;
    rec.closeCode = null;
    rec.closeReason = null;
    rec.closedBy = null; // 'client' | 'server' | 'abnormal' (no close frame) | null
    rec.serverClose = null; // { code, reason } when the mock initiated the close
    let doneResolve;
    Object.defineProperty(rec, 'done', { value: new Promise((r) => { doneResolve = r; }), enumerable: false });
    sockets.push(rec);
    req.mockRec = rec;
    socket.on('error', () => {});

    const path = rec.path;
    let o = null;
    for (let i = 0; i < overrides.length; i++) {
      const c = overrides[i];
      if (!c.ws || !pathMatches(c.path, path)) continue;
      if (--c.times <= 0) overrides.splice(i, 1);
      o = c;
      break;
    }
    const hctx = { mock, rec, req };
    let refusal = null;
    try {
      refusal = o?.handshake ? o.handshake(hctx) : (spec.handshake ? spec.handshake(hctx) : null);
    } catch (e) {
      rec.handlerError = e;
      refusal = { status: 500, body: String(e) };
    }
    if (refusal) {
      rec.rejected = { status: refusal.status, body: refusal.body ?? '' };
      const body = typeof refusal.body === 'string' || Buffer.isBuffer(refusal.body) ? refusal.body
        : refusal.body === undefined ? '' : JSON.stringify(refusal.body);
      const headers = { 'content-type': 'application/json', ...(refusal.headers || {}), 'content-length': Buffer.byteLength(body), connection: 'close' };
      const lines = [`HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status] || 'Error'}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
      rec.closed = true;
      rec.closedAt = Date.now();
      doneResolve(rec);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      rec.open = true;
      rec.protocol = ws.protocol || null;
      const ctx = wsContext(mock, rec, ws, req);
      ws.on('message', (data, isBinary) => {
        const m = { binary: isBinary, data: Buffer.from(data), at: Date.now() };
        if (!isBinary) {
          m.text = m.data.toString('utf8');
          try { m.json = JSON.parse(m.text); } catch { m.json = undefined; }
        }
        rec.messages.push(m);
        ctx._push(m);
      });
      ws.on('error', (e) => { rec.wsError = e.message; });
      ws.on('close', (code, reason) => {
        rec.closed = true;
        rec.closedAt = Date.now();
        rec.closeCode = code;
        rec.closeReason = reason.toString('utf8');
        if (rec.serverClose) rec.closedBy = 'server';
        else if (code === 1006) rec.closedBy = 'abnormal';
        else rec.closedBy = 'client';
        ctx._push(null);
        doneResolve(rec);
      });
      const handle = o?.handle || spec.ws;
      if (!handle) { ctx.close(1011, 'no handler'); return; }
      Promise.resolve().then(() => handle(ctx)).catch((e) => {
        rec.handlerError = e;
        if (ws.readyState === ws.OPEN) ctx.close(1011, 'mock handler error');
      });
    });
  };

  const plain = http.createServer();
  servers.push(plain);
  if (spec.tls) servers.push(https.createServer({ cert: spec.tls.cert, key: spec.tls.key }));
  for (const s of servers) {
    s.keepAliveTimeout = 60000;
    s.on('connection', onConnection);
    s.on('secureConnection', onConnection);
    s.on('request', onRequest);
    s.on('upgrade', onUpgrade);
    await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  }
  mock.port = plain.address().port;
  mock.url = `http://127.0.0.1:${mock.port}`;
  mock.wsUrl = `ws://127.0.0.1:${mock.port}`;
  if (spec.tls) {
    mock.tlsPort = servers[1].address().port;
    mock.httpsUrl = `https://127.0.0.1:${mock.tlsPort}`;
    mock.wssUrl = `wss://127.0.0.1:${mock.tlsPort}`;
  }
  return mock;
}

function baseRecord(id, req) {
  const u = new URL(req.url, 'http://mock.invalid');
  const rec = {
    n: id,
    requestId: `req_mock_${id}`,
    method: req.method,
    url: req.url,
    path: u.pathname,
    query: Object.fromEntries(u.searchParams),
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    tls: Boolean(req.socket.encrypted),
    conn: req.socket.mockConnId,
    receivedAt: Date.now(),
  };
  Object.defineProperty(rec, 'socket', { value: req.socket, enumerable: false });
  return rec;
}

function safeCredentials(spec, rec) {
  try {
    return spec.credentials ? spec.credentials(rec) : [];
  } catch {
    return [];
  }
}

function pathMatches(p, path) {
  return p === undefined || (p instanceof RegExp ? p.test(path) : p === path);
}

async function dispatchHttp(mock, spec, overrides, rec, req, res) {
  const ctx = httpContext(mock, rec, req, res);
  for (let i = 0; i < overrides.length; i++) {
    const o = overrides[i];
    if (o.ws || !pathMatches(o.path, rec.path)) continue;
    if (--o.times <= 0) overrides.splice(i, 1);
    return o.handle(ctx);
  }
  return spec.http(ctx);
}

function httpContext(mock, rec, req, res) {
  const ctx = {
    mock, rec, req, res,
    head(status, headers = {}) {
      rec.status = status;
      res.writeHead(status, headers);
    },
    // Writes one body piece and resolves once node handed it to the kernel
    // (waiting for 'drain' when the socket is full: the mock obeys
    // back-pressure, so a proxy that stops reading stalls it).
    write(data) {
      rec.sent.push(data);
      rec.bytesSent += Buffer.byteLength(data);
      return new Promise((resolve) => {
        if (res.destroyed) return resolve(false);
        const ok = res.write(data, () => { if (ok) resolve(true); });
        if (!ok) {
          const onDrain = () => { res.off('close', onDrain); res.off('drain', onDrain); resolve(!res.destroyed); };
          res.once('drain', onDrain);
          res.once('close', onDrain);
        }
      });
    },
    end(data) {
      if (data !== undefined) { rec.sent.push(data); rec.bytesSent += Buffer.byteLength(data); }
      return new Promise((resolve) => res.end(data, resolve));
    },
    json(status, obj, headers = {}) {
      const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
      ctx.head(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
      return ctx.end(body);
    },
    bytes(status, buf, headers = {}) {
      ctx.head(status, { 'content-length': buf.length, ...headers });
      return ctx.end(buf);
    },
  };
  return ctx;
}

function wsContext(mock, rec, ws, req) {
  const queue = [];
  const waiters = [];
  let ended = false;
  const ctx = {
    mock, rec, ws, req,
    _push(m) {
      if (m === null) ended = true;
      if (waiters.length) waiters.shift()(m);
      else if (m !== null) queue.push(m);
      if (ended) while (waiters.length) waiters.shift()(null);
    },
    // The next message received (in order), or null once the socket closed.
    next() {
      if (queue.length) return Promise.resolve(queue.shift());
      if (ended) return Promise.resolve(null);
      return new Promise((r) => waiters.push(r));
    },
    // Sends a frame (string = text, Buffer = binary) and records it; resolves
    // when ws handed it to the socket (false if the socket is gone).
    send(data) {
      const binary = Buffer.isBuffer(data);
      if (ws.readyState !== ws.OPEN) return Promise.resolve(false);
      rec.sent.push({ binary, data, at: Date.now() });
      return new Promise((resolve) => ws.send(data, { binary }, (err) => resolve(!err)));
    },
    sendJson(obj) {
      return ctx.send(JSON.stringify(obj));
    },
    // Closes from the mock's side (recorded as closedBy 'server').
    close(code = 1000, reason = '') {
      if (!rec.serverClose) rec.serverClose = { code, reason };
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
      return rec.done;
    },
    // Drops the TCP connection without a close frame.
    terminate() {
      if (!rec.serverClose) rec.serverClose = { code: null, reason: 'terminated' };
      ws.terminate();
      return rec.done;
    },
    get isOpen() {
      return ws.readyState === ws.OPEN;
    },
  };
  return ctx;
}

// ---- helpers shared by provider mocks ----

export function header(rec, name) {
  const v = rec.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

// "Authorization: <scheme> <token>" → token, if the scheme matches (case-insensitive).
export function authToken(rec, scheme) {
  const m = /^(\S+)\s+(.*)$/.exec(header(rec, 'authorization') || '');
  return m && m[1].toLowerCase() === scheme.toLowerCase() ? m[2] : undefined;
}

// Deterministic bytes derived from a seed string, so tests compare audio.
export function fakeAudio(seed, nbytes) {
  const b = Buffer.alloc(nbytes);
  let h = 2166136261;
  for (const c of Buffer.from(seed)) h = Math.imul(h ^ c, 16777619) >>> 0;
  for (let i = 0; i < nbytes; i++) {
    h = Math.imul(h ^ i, 16777619) >>> 0;
    b[i] = h & 0xff;
  }
  return b;
}

// 16-bit mono PCM sine (440 Hz) of `seconds` at `rate`: "audio" a real
// decoder accepts.
export function pcmSine(seconds, rate = 16000) {
  const n = Math.round(seconds * rate);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  return b;
}

export function splitBuffer(buf, parts) {
  const out = [];
  const size = Math.ceil(buf.length / parts);
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
