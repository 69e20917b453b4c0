// rawhttp.mjs - raw TCP exchanges with the proxy for the framing tests
// (node's http client refuses to send malformed requests, which is the point
// of those tests) and a small HTTP/1.x response parser.
import net from 'node:net';

// Connects, writes `data` (a string/Buffer, or an array written one part at
// a time), collects everything until the server closes or `timeout` ms pass.
// Resolves with { buf, closed, closedAfterMs } — never rejects on a reset,
// which is recorded in `error` instead.
export function rawExchange(port, data, { timeout = 5000, host = '127.0.0.1' } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const parts = [];
    let error = null;
    let done = false;
    const sock = net.connect(port, host);
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ buf: Buffer.concat(parts), closed, closedAfterMs: Date.now() - started, error });
    };
    const timer = setTimeout(() => finish(false), timeout);
    sock.on('data', (d) => parts.push(d));
    sock.on('error', (e) => { error = e; });
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      for (const p of Array.isArray(data) ? data : [data]) sock.write(p);
    });
  });
}

// An open raw connection for keep-alive/pipelining tests: send() writes,
// next(n) waits until n complete responses have been parsed (or the deadline).
export function rawConnection(port, host = '127.0.0.1') {
  const sock = net.connect(port, host);
  let buf = Buffer.alloc(0);
  let closed = false;
  let error = null;
  const waiters = new Set();
  const wake = () => { for (const w of [...waiters]) w(); };
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake(); });
  sock.on('error', (e) => { error = e; });
  sock.on('close', () => { closed = true; wake(); });
  const ready = new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return {
    sock,
    ready,
    send: (d) => sock.write(d),
    get closed() { return closed; },
    get error() { return error; },
    get buf() { return buf; },
    // Resolves with the parsed responses once `count` are complete, or once
    // the connection closed, or at the deadline (whatever was complete then).
    responses(count, timeout = 10000) {
      return new Promise((resolve) => {
        const check = () => {
          const { responses } = parseResponses(buf, { eofSeen: closed });
          const complete = responses.filter((r) => r.complete);
          if (complete.length >= count || closed) {
            waiters.delete(check);
            clearTimeout(t);
            resolve(complete);
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          resolve(parseResponses(buf, { eofSeen: closed }).responses.filter((r) => r.complete));
        }, timeout);
        waiters.add(check);
        check();
      });
    },
    waitClosed(timeout = 5000) {
      return new Promise((resolve) => {
        if (closed) return resolve(true);
        const t = setTimeout(() => { waiters.delete(check); resolve(false); }, timeout);
        const check = () => { if (closed) { clearTimeout(t); waiters.delete(check); resolve(true); } };
        waiters.add(check);
      });
    },
    close: () => sock.destroy(),
  };
}

// Parses consecutive HTTP/1.x responses from buf. A body is delimited by
// Content-Length, chunked framing (complete only with the terminating 0
// chunk), or the end of the connection (eofSeen). `requestMethods` lets a
// HEAD answer have no body (unused by the tests so far).
export function parseResponses(buf, { eofSeen = false } = {}) {
  const responses = [];
  let off = 0;
  while (off < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (headEnd === -1) break;
    const head = buf.toString('latin1', off, headEnd);
    const lines = head.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      const name = l.slice(0, c).toLowerCase();
      const value = l.slice(c + 1).trim();
      (headers[name] ??= []).push(value);
    }
    const status = Number(m[2]);
    const r = { version: m[1], status, reason: m[3] ?? '', headers, rawHead: head,
      header: (n) => headers[n.toLowerCase()]?.join(', '), body: Buffer.alloc(0), complete: false, chunked: false };
    let p = headEnd + 4;
    const te = r.header('transfer-encoding');
    const cl = r.header('content-length');
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      r.complete = true;
    } else if (te && /chunked/i.test(te)) {
      r.chunked = true;
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le === -1) break;
        const size = parseInt(buf.toString('latin1', p, le).split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        if (size === 0) {
          const end = buf.indexOf('\r\n\r\n', le, 'latin1');
          const simpleEnd = buf.toString('latin1', le, le + 4) === '\r\n\r\n';
          if (simpleEnd || end !== -1) {
            p = simpleEnd ? le + 4 : end + 4;
            r.complete = true;
          }
          break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      r.body = Buffer.concat(parts);
      if (!r.complete) { responses.push(r); return { responses, rest: buf.subarray(off) }; }
    } else if (cl !== undefined) {
      const n = Number(cl);
      r.body = buf.subarray(p, Math.min(buf.length, p + n));
      if (p + n <= buf.length) { r.complete = true; p += n; } else { responses.push(r); return { responses, rest: buf.subarray(off) }; }
    } else {
      // Close-delimited (HTTP/1.0 style): complete only once the peer closed.
      r.body = buf.subarray(p);
      r.complete = eofSeen;
      p = buf.length;
    }
    responses.push(r);
    off = p;
  }
  return { responses, rest: buf.subarray(off) };
}
