// http_strict.test.mjs - downstream HTTP/1.1 strictness (DESIGN §4c) with raw
// sockets: every ambiguous or malformed framing is refused with 400 (or
// 414/431/413) and the connection closed, with nothing sent upstream;
// pipelining, keep-alive, the header read deadline, HTTP/1.0, hop-by-hop
// headers, and an upstream reply with broken framing (502, connection dropped).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './lib/harness.mjs';
import { rawReply } from './lib/mock_openai.mjs';
import { rawExchange, rawConnection, parseResponses } from './lib/rawhttp.mjs';
import { waitFor } from './lib/util.mjs';

let h;
let t;
before(async () => {
  h = await setup({ limits: { header_timeout_ms: 500 } });
  t = await h.tenant();
});
after(async () => { await h?.teardown(); });

const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'strict' }] });
const LEN = Buffer.byteLength(BODY);
const HEX = LEN.toString(16);

// A request with the given header lines (besides Authorization) and raw body.
function req(lines, body = '', { target = '/v1/chat/completions', version = 'HTTP/1.1', auth = true } = {}) {
  const all = [...lines];
  if (auth) all.push(`Authorization: Bearer ${t.key}`);
  return `POST ${target} ${version}\r\n${all.join('\r\n')}\r\n\r\n${body}`;
}
const HOST = 'Host: 127.0.0.1';
const CT = 'Content-Type: application/json';

async function expectRefused(data, status) {
  const mark = h.mock.requests.length;
  const res = await rawExchange(h.proxy.port, data, { timeout: 3000 });
  const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.ok(responses.length >= 1, `a response arrived (got ${JSON.stringify(res.buf.toString('latin1').slice(0, 200))})`);
  assert.equal(responses[0].status, status, `status: ${responses[0].rawHead.split('\r\n')[0]}`);
  assert.equal(responses.length, 1, 'exactly one response');
  assert.ok(res.closed, 'connection closed by the proxy');
  assert.equal(h.mock.since(mark).length, 0, 'no upstream request');
  return responses[0];
}

test('control: the same request, well framed, is proxied (Content-Length and chunked)', async () => {
  for (const data of [
    req([HOST, CT, `Content-Length: ${LEN}`, 'Connection: close'], BODY),
    req([HOST, CT, 'Transfer-Encoding: chunked', 'Connection: close'], `${HEX}\r\n${BODY}\r\n0\r\n\r\n`),
  ]) {
    const mark = h.mock.requests.length;
    const res = await rawExchange(h.proxy.port, data);
    h.count(t);
    const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
    assert.equal(responses[0]?.status, 200, res.buf.toString('latin1').slice(0, 300));
    const [mr] = h.mock.since(mark);
    assert.deepEqual(mr.json, JSON.parse(BODY), 'body forwarded (de-chunked)');
    h.issued.get(t.tenantId).ids.push(responses[0].header('x-proxy-request-id'));
  }
});

const BAD_400 = [
  ['Content-Length together with Transfer-Encoding', [HOST, CT, `Content-Length: ${LEN}`, 'Transfer-Encoding: chunked'], `${HEX}\r\n${BODY}\r\n0\r\n\r\n`],
  ['Transfer-Encoding: gzip, chunked', [HOST, CT, 'Transfer-Encoding: gzip, chunked'], `${HEX}\r\n${BODY}\r\n0\r\n\r\n`],
  ['Transfer-Encoding: identity', [HOST, CT, 'Transfer-Encoding: identity', `Content-Length: ${LEN}`], BODY],
  ['Transfer-Encoding: chunked, chunked', [HOST, CT, 'Transfer-Encoding: chunked, chunked'], `${HEX}\r\n${BODY}\r\n0\r\n\r\n`],
  ['two Transfer-Encoding headers', [HOST, CT, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], `${HEX}\r\n${BODY}\r\n0\r\n\r\n`],
  ['duplicate Content-Length (same value)', [HOST, CT, `Content-Length: ${LEN}`, `Content-Length: ${LEN}`], BODY],
  ['duplicate Content-Length (different values)', [HOST, CT, `Content-Length: ${LEN}`, `Content-Length: ${LEN + 1}`], BODY],
  ['Content-Length list', [HOST, CT, `Content-Length: ${LEN}, ${LEN}`], BODY],
  ['Content-Length with letters', [HOST, CT, `Content-Length: ${LEN}a`], BODY],
  ['Content-Length with a sign', [HOST, CT, `Content-Length: +${LEN}`], BODY],
  ['negative Content-Length', [HOST, CT, 'Content-Length: -1'], BODY],
  ['empty Content-Length', [HOST, CT, 'Content-Length: '], BODY],
  ['whitespace before the colon', [HOST, 'Content-Type : application/json', `Content-Length: ${LEN}`], BODY],
  ['whitespace before the colon of Content-Length', [HOST, CT, `Content-Length : ${LEN}`], BODY],
  ['obs-fold', [HOST, CT, 'X-Folded: first', '  continued', `Content-Length: ${LEN}`], BODY],
  ['bare LF after the chunk size', [HOST, CT, 'Transfer-Encoding: chunked'], `${HEX}\n${BODY}\r\n0\r\n\r\n`],
  ['bare LF after the chunk data', [HOST, CT, 'Transfer-Encoding: chunked'], `${HEX}\r\n${BODY}\n0\r\n\r\n`],
  ['bare LF after the last chunk', [HOST, CT, 'Transfer-Encoding: chunked'], `${HEX}\r\n${BODY}\r\n0\n\r\n`],
  ['missing Host', [CT, `Content-Length: ${LEN}`], BODY],
  ['duplicate Host', [HOST, 'Host: other.example', CT, `Content-Length: ${LEN}`], BODY],
  ['header name with an underscore', [HOST, CT, 'X_Custom: 1', `Content-Length: ${LEN}`], BODY],
  ['Content_Length smuggling attempt', [HOST, CT, `Content_Length: ${LEN}`], BODY],
];

for (const [name, lines, body] of BAD_400) {
  test(`400: ${name}`, async () => {
    await expectRefused(req(lines, body), 400);
  });
}

test('414: request line too long', async () => {
  await expectRefused(req([HOST, CT, `Content-Length: ${LEN}`], BODY, { target: `/v1/chat/completions?pad=${'a'.repeat(9000)}` }), 414);
});

test('431: headers too large', async () => {
  await expectRefused(req([HOST, CT, `X-Big: ${'a'.repeat(40000)}`, `Content-Length: ${LEN}`], BODY), 431);
});

test('431: too many headers', async () => {
  const many = Array.from({ length: 150 }, (_, i) => `X-H${i}: ${i}`);
  await expectRefused(req([HOST, CT, ...many, `Content-Length: ${LEN}`], BODY), 431);
});

test('413: declared body over the limit is refused from the head', async () => {
  await expectRefused(req([HOST, CT, 'Content-Length: 40000000']), 413);
});

test('pipelining: two requests in one write are answered in order', async () => {
  const slowBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'first [[delay:150]]' }] });
  const fastBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'second' }] });
  const mark = h.mock.requests.length;
  const res = await rawExchange(h.proxy.port,
    req([HOST, CT, `Content-Length: ${Buffer.byteLength(slowBody)}`], slowBody) +
    req([HOST, CT, `Content-Length: ${Buffer.byteLength(fastBody)}`, 'Connection: close'], fastBody), { timeout: 5000 });
  h.count(t, 2);
  const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.equal(responses.length, 2, res.buf.toString('latin1').slice(0, 500));
  assert.equal(responses[0].status, 200);
  assert.equal(responses[1].status, 200);
  assert.equal(JSON.parse(responses[0].body).choices[0].message.content, 'reply to: first [[delay:150]]');
  assert.equal(JSON.parse(responses[1].body).choices[0].message.content, 'reply to: second');
  assert.ok(res.closed, 'Connection: close honoured after the second');
  assert.equal(h.mock.since(mark).length, 2);
  for (const r of responses) h.issued.get(t.tenantId).ids.push(r.header('x-proxy-request-id'));
});

test('keep-alive: several requests on one connection', async () => {
  const c = rawConnection(h.proxy.port);
  await c.ready;
  try {
    for (let i = 1; i <= 3; i++) {
      c.send(req([HOST, CT, `Content-Length: ${LEN}`], BODY));
      h.count(t);
      const rs = await c.responses(i);
      assert.equal(rs.length, i, `response ${i} arrived`);
      assert.equal(rs[i - 1].status, 200);
      assert.notEqual((rs[i - 1].header('connection') || '').toLowerCase(), 'close');
      h.issued.get(t.tenantId).ids.push(rs[i - 1].header('x-proxy-request-id'));
    }
    assert.equal(c.closed, false, 'connection kept open');
    // A streamed (chunked) response keeps the connection usable too.
    const streamBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true });
    c.send(req([HOST, CT, `Content-Length: ${Buffer.byteLength(streamBody)}`], streamBody));
    c.send(req([HOST, CT, `Content-Length: ${LEN}`], BODY));
    h.count(t, 2);
    const rs = await c.responses(5);
    assert.equal(rs.length, 5);
    assert.ok(rs[3].chunked && rs[3].body.toString().endsWith('data: [DONE]\n\n'));
    assert.equal(rs[4].status, 200);
    h.issued.get(t.tenantId).ids.push(rs[3].header('x-proxy-request-id'), rs[4].header('x-proxy-request-id'));
  } finally {
    c.close();
  }
});

test('header read deadline: a partial head is closed after limits.header_timeout_ms', async () => {
  const mark = h.mock.requests.length;
  const c = rawConnection(h.proxy.port);
  await c.ready;
  const started = Date.now();
  c.send(`POST /v1/chat/completions HTTP/1.1\r\n${HOST}\r\n`);
  assert.ok(await c.waitClosed(3000), 'closed within 3 s');
  const took = Date.now() - started;
  assert.ok(took >= 400, `not closed before the deadline (${took} ms)`);
  assert.equal(h.mock.since(mark).length, 0);

  // Slowloris: a byte every 50 ms does not extend the deadline.
  const s = rawConnection(h.proxy.port);
  await s.ready;
  const t0 = Date.now();
  const head = req([HOST, CT, `Content-Length: ${LEN}`], '');
  let i = 0;
  const drip = setInterval(() => { if (i < head.length && !s.closed) s.send(head[i++]); }, 50);
  try {
    assert.ok(await s.waitClosed(3000), 'slowloris connection closed');
    assert.ok(Date.now() - t0 < 2500);
  } finally {
    clearInterval(drip);
    s.close();
  }
  assert.equal(h.mock.since(mark).length, 0);
});

test('HTTP/1.0: answered without chunked framing, connection closed', async () => {
  let res = await rawExchange(h.proxy.port, req([HOST, CT, `Content-Length: ${LEN}`], BODY, { version: 'HTTP/1.0' }));
  h.count(t);
  let { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.equal(responses[0].status, 200);
  assert.ok(!responses[0].chunked, 'no chunked encoding for HTTP/1.0');
  assert.ok(res.closed);
  assert.equal(JSON.parse(responses[0].body).choices[0].message.content, 'reply to: strict');
  h.issued.get(t.tenantId).ids.push(responses[0].header('x-proxy-request-id'));

  const streamBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true });
  res = await rawExchange(h.proxy.port, req([HOST, CT, `Content-Length: ${Buffer.byteLength(streamBody)}`], streamBody, { version: 'HTTP/1.0' }));
  h.count(t);
  ({ responses } = parseResponses(res.buf, { eofSeen: res.closed }));
  assert.equal(responses[0].status, 200);
  assert.ok(!responses[0].chunked);
  assert.ok(responses[0].body.toString().endsWith('data: [DONE]\n\n'), 'close-delimited stream complete');
  h.issued.get(t.tenantId).ids.push(responses[0].header('x-proxy-request-id'));
});

test('hop-by-hop headers and those named in Connection are not forwarded', async () => {
  const mark = h.mock.requests.length;
  const res = await rawExchange(h.proxy.port, req([HOST, CT, `Content-Length: ${LEN}`,
    'Connection: close, X-Hop-Custom', 'X-Hop-Custom: drop-me', 'Keep-Alive: timeout=5', 'TE: trailers',
    'Proxy-Connection: keep-alive', 'Proxy-Authorization: Basic Zm9vOmJhcg==', 'X-End-To-End: keep-me', 'OpenAI-Organization: org-e2e'], BODY));
  h.count(t);
  const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.equal(responses[0].status, 200);
  h.issued.get(t.tenantId).ids.push(responses[0].header('x-proxy-request-id'));
  const [mr] = h.mock.since(mark);
  for (const hop of ['x-hop-custom', 'keep-alive', 'te', 'proxy-connection', 'proxy-authorization']) {
    assert.equal(mr.headers[hop], undefined, `${hop} not forwarded`);
  }
  assert.notEqual((mr.headers.connection || '').toLowerCase().includes('x-hop-custom'), true);
  assert.equal(mr.headers['x-end-to-end'], 'keep-me', 'end-to-end headers are forwarded');
  // A wallet line never lets the client pick where the platform's key acts.
  assert.equal(mr.headers['openai-organization'], undefined, 'OpenAI-Organization removed on a wallet line');
});

test('upstream reply with broken framing: 502, and that upstream connection is dropped', async () => {
  h.mock.override({ path: '/v1/chat/completions', handle: rawReply('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}').handle });
  const mark = h.mock.requests.length;
  const res = await rawExchange(h.proxy.port, req([HOST, CT, `Content-Length: ${LEN}`, 'Connection: close'], BODY));
  h.count(t);
  const { responses } = parseResponses(res.buf, { eofSeen: res.closed });
  assert.equal(responses[0]?.status, 502, res.buf.toString('latin1').slice(0, 300));
  h.issued.get(t.tenantId).ids.push(responses[0].header('x-proxy-request-id'));
  const [bad] = h.mock.since(mark);
  await waitFor(() => bad.socket.mockClosed, { timeout: 3000, what: 'the proxy to close the broken upstream connection' });
  const m2 = h.mock.requests.length;
  const ok = await rawExchange(h.proxy.port, req([HOST, CT, `Content-Length: ${LEN}`, 'Connection: close'], BODY));
  h.count(t);
  const r2 = parseResponses(ok.buf, { eofSeen: ok.closed }).responses[0];
  assert.equal(r2.status, 200);
  h.issued.get(t.tenantId).ids.push(r2.header('x-proxy-request-id'));
  assert.notEqual(h.mock.since(m2)[0].conn, bad.conn, 'a new upstream connection');
});

test('one record per proxied request, each once in JSONL', async () => {
  await h.checkAllRecords();
});
