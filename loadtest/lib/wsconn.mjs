// wsconn.mjs - a raw `ws` client with what the scenarios need: open
// (bounded, refusal status as the error kind), every JSON message to a
// handler, and the close (code, reason) as a promise.
import WebSocket from 'ws';
import { wsErrorKind, failure } from './errors.mjs';
import { onAbort } from './runner.mjs';

export function wsConnect(url, { headers, protocols = [], ca, timeoutMs, signal }) {
  const ws = new WebSocket(url, protocols, { headers, ca, perMessageDeflate: false, handshakeTimeout: timeoutMs });
  const c = {
    ws,
    status: null, // the HTTP status of a refused upgrade
    closed: null, // Promise<{ code, reason }>
    opened: null,
  };
  ws.on('unexpected-response', (req, res) => {
    c.status = res.statusCode;
    res.resume();
    req.destroy();
    ws.emit('error', failure(`ws upgrade ${res.statusCode}`, `the upgrade was refused: ${res.statusCode}`));
  });
  c.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  let dispose = () => {};
  c.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', (e) => reject(Object.assign(e, { kind: wsErrorKind(e) })));
    dispose = onAbort(signal, () => reject(failure('aborted at run deadline: connecting')));
  });
  c.opened.then(dispose, dispose);
  ws.on('error', () => {}); // reported through `opened` or the close
  c.onJson = (fn) => ws.on('message', (data, binary) => {
    if (binary) return fn(null, data);
    let j;
    try { j = JSON.parse(data.toString('utf8')); } catch { j = undefined; }
    return fn(j, data);
  });
  c.send = (obj) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj));
  };
  c.isOpen = () => ws.readyState === WebSocket.OPEN;
  c.close = (code = 1000, reason = '') => {
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
  };
  c.terminate = () => ws.terminate();
  return c;
}

// Resolves with the close (or with null after ms, after terminating the
// socket: a peer that never closes does not hold the run).
export async function closeWithin(c, ms) {
  let t;
  const timer = new Promise((resolve) => { t = setTimeout(() => resolve(null), ms); });
  const r = await Promise.race([c.closed, timer]);
  clearTimeout(t);
  if (r === null) c.terminate();
  return r;
}
