// errors.test.mjs - errors: provider errors passed through unchanged (and
// SDK retries each metered), and the errors the proxy produces itself in
// OpenAI's shape: 401 (missing, wrong, revoked key), 402 balance gate, 404
// unknown route, 413 body too large, 502 upstream unreachable, 504 upstream
// timeout - none of which may reach the upstream (except 504, which must
// cancel it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { setup } from './lib/harness.mjs';
import { errorReply, hang } from './lib/mock_openai.mjs';
import { startProxy } from './lib/proxy.mjs';
import { httpRequest, freePort, waitFor } from './lib/util.mjs';
import { parseResponses } from './lib/rawhttp.mjs';

let h;
before(async () => { h = await setup({ limits: { max_body_bytes: 65536 } }); });
after(async () => { await h?.teardown(); });

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

function chatReq(key, body = CHAT, extra = {}) {
  const headers = { 'content-type': 'application/json', ...extra };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  return httpRequest(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers, body });
}

// An error the proxy produced itself: OpenAI's {"error":{message,type,code}}.
function assertOpenAIError(res, status) {
  assert.equal(res.status, status, `status ${status}; body ${res.body}`);
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  const j = JSON.parse(res.body.toString('utf8'));
  assert.ok(j && typeof j.error === 'object', 'has an error object');
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  assert.equal(typeof j.error.type, 'string');
  assert.ok('code' in j.error, 'error.code present');
  return j.error;
}

for (const [status, type, code] of [[401, 'invalid_request_error', 'invalid_api_key'], [429, 'requests', 'rate_limit_exceeded'], [500, 'server_error', null]]) {
  test(`provider ${status} passes through unchanged (status, body bytes, x-request-id)`, async () => {
    const t = await h.tenant();
    const e = errorReply(status, { type, code, message: `provider says ${status}` });
    mock().override({ path: '/v1/chat/completions', handle: e.handle });
    let mark = mock().requests.length;
    const r = await chatReq(t.key);
    h.count(t);
    const [mr] = mock().since(mark);
    assert.equal(r.status, status);
    assert.equal(r.body.toString('utf8'), e.body, 'body byte-identical');
    assert.equal(r.headers['x-request-id'], mr.requestId);
    await h.verify({ t, mockRec: mr, headers: r.headers, exp: {
      line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', status,
      outcome: status >= 500 ? ['ok', 'upstream_error'] : 'ok', units: {}, cost: 0,
    } });

    // The SDK (no retries) sees the provider's error and request id.
    mock().override({ path: '/v1/chat/completions', handle: e.handle });
    mark = mock().requests.length;
    await assert.rejects(h.sdk(t.key).chat.completions.create(CHAT), (err) => {
      assert.equal(err.status, status);
      assert.equal(err.requestID, mock().since(mark)[0].requestId);
      assert.equal(err.error?.code ?? null, code);
      assert.equal(err.error?.message, `provider says ${status}`);
      return true;
    });
    h.count(t);
    assert.equal(mock().since(mark).length, 1, 'maxRetries 0: one attempt');
  });
}

test('SDK retries: every attempt is a request with its own usage record', async () => {
  const t = await h.tenant();
  const e = errorReply(500, { type: 'server_error', message: 'try again', headers: { 'retry-after-ms': '5' } });
  mock().override({ path: '/v1/chat/completions', handle: e.handle, times: 3 });
  let mark = mock().requests.length;
  await assert.rejects(h.sdk(t.key, { maxRetries: 2 }).chat.completions.create(CHAT), (err) => err.status === 500);
  const attempts = mock().since(mark);
  assert.equal(attempts.length, 3, 'SDK default of 2 retries: 3 attempts reached the upstream');
  h.count(t, 3);
  const recs = await h.proxy.admin.waitRecords(t.tenantId, 3);
  assert.equal(recs.length, 3);
  assert.equal(new Set(recs.map((r) => r.id)).size, 3, 'distinct record ids');
  assert.deepEqual(recs.map((r) => r.upstream_request_id).sort(), attempts.map((a) => a.requestId).sort());
  assert.ok(recs.every((r) => r.status === 500));
  for (const r of recs) h.issued.get(t.tenantId).ids.push(r.id);

  // 429 then success: two records, the second with the usage.
  h.mock.config.chat = { ...h.mock.config.chat, prompt_tokens: 29, completion_tokens: 2, cached_tokens: 0 };
  mock().override({ path: '/v1/chat/completions', handle: errorReply(429, { type: 'requests', code: 'rate_limit_exceeded', headers: { 'retry-after-ms': '5' } }).handle });
  mark = mock().requests.length;
  const { data, response } = await h.sdk(t.key, { maxRetries: 2 }).chat.completions.create(CHAT).withResponse();
  assert.equal(data.usage.prompt_tokens, 29);
  const two = mock().since(mark);
  assert.equal(two.length, 2);
  h.count(t, 2);
  await h.verify({ t, mockRec: two[1], headers: response.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', units: { input_tokens: 29, output_tokens: 2 }, cost: 6, // 4 350 000 + 1 200 000 → 5.55 → 6
  } });
  const all = await h.proxy.admin.waitRecords(t.tenantId, 5);
  const first = all.find((r) => r.upstream_request_id === two[0].requestId);
  assert.ok(first, 'the 429 attempt has its own record');
  assert.equal(first.status, 429);
  h.issued.get(t.tenantId).ids.push(first.id);
});

test('401: missing, wrong and malformed proxy keys never reach the upstream', async () => {
  const t = await h.tenant();
  const mark = mock().requests.length;
  const cases = [
    null,
    'sk-not-a-proxy-key',
    t.key.slice(0, -1) + (t.key.at(-1) === 'A' ? 'B' : 'A'), // right id, wrong secret
    `${t.key}x`,
    '',
  ];
  for (const key of cases) {
    const r = await chatReq(key);
    const err = assertOpenAIError(r, 401);
    if (key) assert.ok(!r.body.toString().includes(key), 'the presented key is not echoed');
    assert.equal(err.type, 'invalid_request_error');
  }
  // A key in another provider's header is not an OpenAI credential.
  const r = await chatReq(null, CHAT, { 'x-api-key': t.key });
  assertOpenAIError(r, 401);
  assert.equal(mock().since(mark).length, 0, 'no upstream request');
});

test('401: a revoked key is refused on the very next request, on every worker and on open connections', async () => {
  const t = await h.tenant();
  // A keep-alive connection that was authorized before the revocation.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const viaAgent = () => new Promise((resolve, reject) => {
    const req = http.request(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', agent,
      headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' } }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts), port: req.socket?.localPort }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(CHAT));
  });
  try {
    const ok1 = await viaAgent();
    assert.equal(ok1.status, 200);
    h.count(t);
    // Warm both workers' caches with the key.
    for (let i = 0; i < 6; i++) {
      assert.equal((await chatReq(t.key)).status, 200);
      h.count(t);
    }
    await h.proxy.admin.revokeKey(t.tenantId, t.keyId);
    const mark = mock().requests.length;
    const again = await viaAgent();
    assertOpenAIError(again, 401);
    for (let i = 0; i < 8; i++) assertOpenAIError(await chatReq(t.key), 401);
    assert.equal(mock().since(mark).length, 0, 'nothing reached the upstream after the revocation');
  } finally {
    agent.destroy();
  }
});

test('404: a path outside every route prefix, in OpenAI shape; /v1/<unknown> is refused on a wallet line', async () => {
  const t = await h.tenant();
  const mark = mock().requests.length;
  for (const p of ['/nope', '/', '/v2/chat/completions', '/openai/v2/x']) {
    const r = await httpRequest(h.proxy.url + p, { method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' }, body: CHAT });
    assertOpenAIError(r, 404);
  }
  assert.equal(mock().since(mark).length, 0);
  // Unknown paths under /v1 belong to OpenAI, but the platform's key reaches
  // only the endpoints the proxy meters (DESIGN §4a): 403, nothing upstream,
  // no record.
  const r = await httpRequest(`${h.proxy.url}/v1/nope`, { method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' }, body: CHAT });
  const body = assertOpenAIError(r, 403);
  assert.equal(body.code, 'endpoint_not_allowed');
  assert.match(body.message, /POST \/v1\/nope/);
  assert.equal(mock().since(mark).length, 0, 'nothing went upstream');
});

test('402: zero balance is refused with x-should-retry false and no upstream request; a top-up lifts it', async () => {
  const t = await h.tenant({ plan: 0, wallet: 0 });
  const mark = mock().requests.length;
  const r = await chatReq(t.key);
  assertOpenAIError(r, 402);
  assert.equal(r.headers['x-should-retry'], 'false');
  // The SDK honours x-should-retry: false even with retries enabled.
  await assert.rejects(h.sdk(t.key, { maxRetries: 2 }).chat.completions.create(CHAT), (err) => err.status === 402);
  // A stream request is refused the same way before anything is streamed.
  const rs = await chatReq(t.key, { ...CHAT, stream: true });
  assertOpenAIError(rs, 402);
  assert.equal(mock().since(mark).length, 0, 'no upstream request');

  await h.proxy.admin.topup(t.tenantId, { wallet_micros: 1000, plan_credits_micros: 0 });
  const ok = await chatReq(t.key);
  h.count(t);
  assert.equal(ok.status, 200, 'new session after the top-up is allowed');
  await h.verify({ t, mockRec: mock().since(mark)[0], headers: ok.headers, exp: {
    line: 'llm', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini', units: null,
  } });
});

test('413: a body over limits.max_body_bytes is refused without an upstream request', async () => {
  const t = await h.tenant();
  const mark = mock().requests.length;
  const total = 200000;
  // The head declares the size; a first slice of the body follows. A proxy
  // may answer from the declared length at once; one that reads on gets the
  // rest of the body (in a single write, so the answer is not lost to a
  // reset caused by bytes still arriving after it closed).
  const res = await new Promise((resolve) => {
    const sock = net.connect(h.proxy.port, '127.0.0.1');
    const parts = [];
    sock.on('data', (d) => parts.push(d));
    sock.on('error', () => {});
    const kill = setTimeout(() => sock.destroy(), 5000);
    sock.on('close', () => { clearTimeout(kill); resolve({ buf: Buffer.concat(parts) }); });
    sock.on('connect', () => {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.key}\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
      sock.write(Buffer.alloc(1000, 0x61));
      setTimeout(() => { if (parts.length === 0 && !sock.destroyed) sock.write(Buffer.alloc(total - 1000, 0x61)); }, 1000);
    });
  });
  const { responses } = parseResponses(res.buf, { eofSeen: true });
  assert.ok(responses.length >= 1, `got a response (${res.buf.length} bytes)`);
  assertOpenAIError({ status: responses[0].status, headers: { 'content-type': responses[0].header('content-type') }, body: responses[0].body }, 413);
  assert.equal(mock().since(mark).length, 0, 'no upstream request');
});

test('502: upstream unreachable', async () => {
  const dead = await freePort(); // nothing listens there
  const p = await startProxy({ mockUrl: `http://127.0.0.1:${dead}`, limits: { upstream_connect_timeout_ms: 2000 } });
  try {
    const { newTenant } = await import('./lib/proxy.mjs');
    const t = await newTenant(p);
    const started = Date.now();
    const r = await httpRequest(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' }, body: CHAT });
    assertOpenAIError(r, 502);
    assert.ok(Date.now() - started < 5000, 'answered promptly');
    assert.ok(!r.body.toString().includes(p.platformKey));
    const recs = await p.admin.waitRecords(t.tenantId, 1);
    assert.equal(recs.length, 1);
    assert.equal(recs[0].status, 502);
    assert.equal(recs[0].outcome, 'upstream_error');
    assert.equal(recs[0].cost_micros, 0);
  } finally {
    assert.equal(await p.stop(), 0);
    p.remove();
  }
});

test('504: upstream timeout cancels the upstream request', async () => {
  const p = await startProxy({ mockUrl: h.mock.url, limits: { upstream_timeout_ms: 1000 } });
  try {
    const { newTenant } = await import('./lib/proxy.mjs');
    const t = await newTenant(p);
    mock().override({ path: '/v1/chat/completions', handle: hang().handle });
    const mark = mock().requests.length;
    const started = Date.now();
    const r = await httpRequest(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' }, body: CHAT });
    const took = Date.now() - started;
    assertOpenAIError(r, 504);
    assert.ok(took >= 900 && took < 5000, `timed out after the configured 1000 ms (took ${took})`);
    const [mr] = mock().since(mark);
    assert.ok(mr, 'the request reached the upstream');
    await waitFor(() => mr.closed, { timeout: 3000, what: 'upstream request closed by the proxy' });
    const recs = await p.admin.waitRecords(t.tenantId, 1);
    assert.equal(recs[0].status, 504);
    assert.equal(recs[0].outcome, 'timeout');
  } finally {
    mock().clearOverrides();
    assert.equal(await p.stop(), 0);
    p.remove();
  }
});

test('exactly one record per proxied request, each once in JSONL', async () => {
  await h.checkAllRecords();
});

function mock() {
  return h.mock;
}
