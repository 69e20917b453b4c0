// hygiene.test.mjs - credentials (DESIGN §4): names matched as the provider
// matches them (headers and subprotocols without regard to case, query
// names after percent-decoding); a credential in any position a provider
// accepts (api-key, x-api-key, xi-api-key, Ocp-Apim-Subscription-Key,
// Authorization in any scheme, query parameters, Deepgram's "bearer, <key>"
// subprotocol pair) never reaches an upstream; the proxy key is checked on
// the request head, before any body is read or "100 Continue" is sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { providersSetup } from './lib/providers.mjs';
import { rawExchange, parseResponses } from './lib/rawhttp.mjs';
import { httpRequest, makeWav, waitFor } from './lib/util.mjs';

let h;
before(async () => {
  h = await providersSetup({ providers: ['azure_speech', 'deepgram', 'anthropic'] });
});
after(async () => { await h?.teardown(); });

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

// Nothing of key anywhere in what a mock received.
function noKey(rec, key) {
  const seen = [rec.url, JSON.stringify(rec.rawHeaders || rec.headers), JSON.stringify(rec.protocols || []),
    rec.body ? rec.body.toString('latin1') : ''].join('\n');
  assert.ok(!seen.includes(key), `the proxy key reached the upstream: ${seen.slice(0, 400)}`);
}

test('every credential header of every provider is removed, whatever the route (api-key, x-api-key, xi-api-key, Ocp-Apim-Subscription-Key, Authorization)', async () => {
  const t = await h.tenant();
  const mark = h.mock.requests.length;
  const r = await httpRequest(`${h.proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${t.key}`, 'content-type': 'application/json',
      'api-key': t.key, 'X-API-KEY': t.key, 'xi-api-key': t.key, 'OCP-APIM-SUBSCRIPTION-KEY': t.key,
    },
    body: CHAT,
  });
  h.count(t);
  h.issued.get(t.tenantId).ids.push(r.headers['x-proxy-request-id']);
  assert.equal(r.status, 200);
  const [mr] = h.mock.since(mark);
  noKey(mr, t.key);
  for (const name of ['api-key', 'x-api-key', 'xi-api-key', 'ocp-apim-subscription-key']) assert.equal(mr.headers[name], undefined, name);
  assert.equal(mr.headers.authorization, `Bearer ${h.proxy.platformKey}`);

  // Anthropic: the key in x-api-key, an Authorization in another scheme.
  const am = h.mocks.anthropic.requests.length;
  const a = await httpRequest(`${h.proxy.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': t.key, authorization: `Basic ${Buffer.from(`u:${t.key}`).toString('base64')}`,
      'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude-sonnet-4', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
  });
  h.count(t);
  h.issued.get(t.tenantId).ids.push(a.headers['x-proxy-request-id']);
  assert.equal(a.status, 200, a.body.toString());
  const [ar] = h.mocks.anthropic.requests.slice(am);
  assert.equal(ar.headers.authorization, undefined, 'Authorization in any scheme is removed');
  assert.equal(ar.headers['x-api-key'], h.keys.anthropic);
  noKey(ar, t.key);
});

test('Azure: a percent-encoded query name is the same credential: found, and never forwarded', async () => {
  const t = await h.tenant();
  for (const q of ['Ocp%2DApim-Subscription-Key', 'ocp-apim-subscription-key', 'OCP-APIM-SUBSCRIPTION-KEY']) {
    const mark = h.mocks.azure_speech.requests.length;
    const url = `${h.proxy.url}/azure/stt/speech/recognition/conversation/cognitiveservices/v1?language=en-US&${q}=${encodeURIComponent(t.key)}&format=simple`;
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'audio/wav' }, body: makeWav(1) });
    assert.equal(r.status, 200, `${q}: ${await r.text()}`);
    h.count(t);
    h.issued.get(t.tenantId).ids.push(r.headers.get('x-proxy-request-id'));
    const [up] = h.mocks.azure_speech.requests.slice(mark);
    noKey(up, t.key);
    assert.match(up.url, /\?language=en-US&format=simple$/, `${q}: other parameters kept in order: ${up.url}`);
    assert.deepEqual(up.credentials, [{ in: 'header', name: 'Ocp-Apim-Subscription-Key', value: h.keys.azure_speech }]);
  }
  // The SDK's token form in the query is a credential too.
  const mark = h.mocks.azure_speech.requests.length;
  const r = await fetch(`${h.proxy.url}/azure/stt/speech/recognition/conversation/cognitiveservices/v1?Authorization=Bearer%20secret-token&language=en-US`,
    { method: 'POST', headers: { 'ocp-apim-subscription-key': t.key, 'content-type': 'audio/wav' }, body: makeWav(1) });
  assert.equal(r.status, 200);
  h.count(t);
  h.issued.get(t.tenantId).ids.push(r.headers.get('x-proxy-request-id'));
  const [up] = h.mocks.azure_speech.requests.slice(mark);
  assert.ok(!up.url.includes('secret-token') && !up.url.toLowerCase().includes('authorization'), up.url);
});

test('Deepgram browser "bearer, <key>" subprotocols: accepted, answered "bearer", nothing of the key upstream', async () => {
  const t = await h.tenant();
  const mark = h.mocks.deepgram.sockets.length;
  const ws = new WebSocket(`ws://127.0.0.1:${h.proxy.port}/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`, ['bearer', t.key]);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  assert.equal(ws.protocol, 'bearer');
  ws.send(Buffer.alloc(3200));
  ws.send(JSON.stringify({ type: 'CloseStream' }));
  await new Promise((resolve) => ws.on('close', resolve));
  const rec = h.mocks.deepgram.socketsSince(mark)[0];
  await rec.done;
  noKey(rec, t.key);
  assert.deepEqual(rec.credentials, [{ in: 'header', name: 'authorization', scheme: 'Token', value: h.keys.deepgram }]);
  const recs = await h.proxy.admin.waitRecords(t.tenantId, 2);
  h.count(t, 2);
  h.issued.get(t.tenantId).ids.push(...recs.map((r) => r.id));
});

const headOnly = (key, extra = []) => [
  'POST /v1/chat/completions HTTP/1.1', 'Host: x', ...(key ? [`Authorization: Bearer ${key}`] : []),
  'Content-Type: application/json', 'Content-Length: 30000000', ...extra, '', '',
].join('\r\n');

test('the proxy key is checked on the head: a bad key with Expect: 100-continue gets 401, no 100 Continue, no body read', async () => {
  const mark = h.mock.requests.length;
  const started = Date.now();
  const res = await rawExchange(h.proxy.port, headOnly('bpk_not_a_key', ['Expect: 100-continue']), { timeout: 5000 });
  assert.ok(res.closed, 'the proxy closed the connection (the announced body is never read)');
  assert.ok(Date.now() - started < 4000, 'answered at once, without waiting for the body');
  const text = res.buf.toString('latin1');
  assert.ok(!text.startsWith('HTTP/1.1 100'), 'no 100 Continue for a request that will be refused');
  const { responses } = parseResponses(res.buf, { eofSeen: true });
  assert.equal(responses.length, 1);
  assert.equal(responses[0].status, 401);
  assert.equal(JSON.parse(responses[0].body.toString()).error.code, 'invalid_api_key');
  assert.equal(h.mock.since(mark).length, 0);
});

test('no key at all, a 30 MB body announced and never sent: 401 at once', async () => {
  const res = await rawExchange(h.proxy.port, headOnly(null), { timeout: 5000 });
  assert.ok(res.closed);
  const { responses } = parseResponses(res.buf, { eofSeen: true });
  assert.equal(responses[0].status, 401);
  assert.match(JSON.parse(responses[0].body.toString()).error.message, /Authorization: Bearer <key>/, 'says where the key goes');
});

test('a good key with Expect: 100-continue gets its 100 Continue, then the answer', async () => {
  const t = await h.tenant();
  const head = ['POST /v1/chat/completions HTTP/1.1', 'Host: x', `Authorization: Bearer ${t.key}`, 'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(CHAT)}`, 'Expect: 100-continue', 'Connection: close', '', ''].join('\r\n');
  const net = await import('node:net');
  const s = net.connect(h.proxy.port, '127.0.0.1');
  let buf = '';
  s.on('data', (d) => { buf += d.toString('latin1'); });
  await new Promise((r) => s.once('connect', r));
  s.write(head);
  await waitFor(() => buf.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), { what: '100 Continue' });
  s.write(CHAT);
  await new Promise((r) => s.on('close', r));
  assert.match(buf, /HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/);
  h.count(t);
  const id = /x-proxy-request-id: (\S+)/i.exec(buf)[1];
  h.issued.get(t.tenantId).ids.push(id);
});

test('every record once in the store and the JSONL sink', async () => {
  await h.checkAllRecords();
});
