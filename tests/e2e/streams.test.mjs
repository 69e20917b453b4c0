// streams.test.mjs - streaming failure modes and back-pressure: a client
// that goes away mid-stream (the proxy cancels the upstream and records an
// estimate), an upstream that resets mid-stream (the client sees the
// truncation, nothing invented), and a slow reader of a large stream (the
// proxy pauses the upstream instead of buffering: memory stays flat).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setup } from './lib/harness.mjs';
import { slowChatStream, resetChatStream, bigChatStream } from './lib/mock_openai.mjs';
import { waitFor, rssBytes, sseEvents } from './lib/util.mjs';

let h;
before(async () => { h = await setup(); });
after(async () => { await h?.teardown(); });

const STREAM = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'tell me a long story about a proxy' }], stream: true };

function post(key, body, signal) {
  return fetch(`${h.proxy.url}/v1/chat/completions`, {
    method: 'POST', signal,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

test('client disconnect mid-stream: upstream cancelled promptly, record client_disconnect + estimated', async () => {
  const t = await h.tenant();
  const slow = slowChatStream({ chunksBefore: 3 });
  h.mock.override({ path: '/v1/chat/completions', handle: slow.handle });
  const mark = h.mock.requests.length;
  const ac = new AbortController();
  const r = await post(t.key, STREAM, ac.signal);
  h.count(t);
  assert.equal(r.status, 200);
  const id = r.headers.get('x-proxy-request-id');
  assert.ok(id);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let got = '';
  while (sseEvents(got).events.length < 3) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before the first events arrived');
    got += dec.decode(value, { stream: true });
  }
  const [mr] = h.mock.since(mark);
  assert.equal(got, mr.sent.join(''), 'the events sent so far arrived unbuffered');
  assert.equal(mr.closed, false);
  const abortedAt = Date.now();
  ac.abort();
  await waitFor(() => mr.closed, { timeout: 2000, what: 'the proxy to close the upstream request' });
  assert.ok(mr.aborted, 'upstream response was cut, not finished');
  assert.ok(mr.closedAt - abortedAt < 1500, `upstream closed ${mr.closedAt - abortedAt} ms after the client left`);
  const rec = await h.proxy.admin.waitRecord(t.tenantId, id);
  h.issued.get(t.tenantId).ids.push(id);
  assert.equal(rec.outcome, 'client_disconnect');
  assert.equal(rec.estimated, true, 'no usage arrived: estimate');
  assert.equal(rec.status, 200);
  assert.equal(rec.upstream_request_id, mr.requestId);
  assert.ok(rec.units.input_tokens > 0, 'estimate counts the prompt');
  assert.ok(rec.units.output_tokens > 0, 'estimate counts the streamed text');
  assert.equal(rec.charged.plan_credits_micros + rec.charged.wallet_micros, rec.cost_micros);
  slow.release();
});

test('upstream reset mid-stream: client sees a truncated prefix, no [DONE], record upstream_error', async () => {
  const t = await h.tenant();
  // Raw fetch: the body read must fail (no clean chunked end).
  h.mock.override({ path: '/v1/chat/completions', handle: resetChatStream({ afterChunks: 3 }).handle });
  let mark = h.mock.requests.length;
  const r = await post(t.key, STREAM);
  h.count(t);
  assert.equal(r.status, 200);
  const id = r.headers.get('x-proxy-request-id');
  let got = '';
  const dec = new TextDecoder();
  await assert.rejects((async () => { for await (const c of r.body) got += dec.decode(c, { stream: true }); })(),
    'reading the body fails: the truncation is visible to the client');
  let [mr] = h.mock.since(mark);
  const sent = mr.sent.join('');
  assert.ok(got.length > 0, 'what was sent before the reset was relayed');
  assert.ok(sent.startsWith(got), 'what arrived is a prefix of what the upstream sent');
  assert.ok(!got.includes('[DONE]'), 'no invented [DONE]');
  let rec = await h.proxy.admin.waitRecord(t.tenantId, id);
  h.issued.get(t.tenantId).ids.push(id);
  assert.equal(rec.outcome, 'upstream_error');
  assert.equal(rec.estimated, true);
  assert.equal(rec.upstream_request_id, mr.requestId);

  // The SDK: iteration throws or ends early, never yields the full stream.
  h.mock.override({ path: '/v1/chat/completions', handle: resetChatStream({ afterChunks: 3 }).handle });
  mark = h.mock.requests.length;
  const { data: stream, response } = await h.sdk(t.key).chat.completions.create(STREAM).withResponse();
  h.count(t);
  const chunks = [];
  let threw = false;
  try {
    for await (const c of stream) chunks.push(c);
  } catch {
    threw = true;
  }
  [mr] = h.mock.since(mark);
  const sentChunks = sseEvents(mr.sent.join('')).events.map((e) => JSON.parse(e.slice(6)));
  assert.ok(threw || chunks.length <= sentChunks.length, 'truncated');
  assert.deepEqual(chunks, sentChunks.slice(0, chunks.length), 'SDK saw a prefix of the upstream chunks');
  assert.ok(!chunks.some((c) => c.choices[0]?.finish_reason), 'no finish chunk was invented');
  rec = await h.proxy.admin.waitRecord(t.tenantId, response.headers.get('x-proxy-request-id'));
  h.issued.get(t.tenantId).ids.push(rec.id);
  assert.equal(rec.outcome, 'upstream_error');
});

test('slow reader: the proxy pauses the upstream, memory stays bounded', { timeout: 120000 }, async (tc) => {
  const t = await h.tenant();
  const TOTAL = 64 * 1024 * 1024;
  // Warm the proxy up (connection pools, allocator) before the baseline.
  const warm = await post(t.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'warm' }] });
  await warm.text();
  h.count(t);
  const base = rssBytes(h.proxy.pid);
  let maxRss = base;
  const sampler = setInterval(() => { try { maxRss = Math.max(maxRss, rssBytes(h.proxy.pid)); } catch { /* exited */ } }, 10);
  h.mock.override({ path: '/v1/chat/completions', handle: bigChatStream({ totalBytes: TOTAL }).handle });
  const mark = h.mock.requests.length;
  const body = JSON.stringify(STREAM);
  h.count(t);
  const sock = net.connect(h.proxy.port, '127.0.0.1');
  let received = 0;
  let tail = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d) => {
    received += d.length;
    tail = Buffer.concat([tail, d]).subarray(-64);
  });
  sock.on('close', () => { closed = true; });
  try {
    await new Promise((r) => sock.once('connect', r));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await waitFor(() => received > 0, { what: 'first bytes of the stream' });
    sock.pause();
    const [mr] = await waitFor(() => h.mock.since(mark).length && h.mock.since(mark), { what: 'upstream request' });
    // Wait until the upstream stalls: bytesSent unchanged for 500 ms.
    let last = -1;
    let since = Date.now();
    await waitFor(() => {
      if (mr.bytesSent !== last) { last = mr.bytesSent; since = Date.now(); return false; }
      return Date.now() - since >= 500;
    }, { timeout: 20000, interval: 25, what: 'the upstream to stall while the client does not read' });
    const stalledAt = mr.bytesSent;
    const pausedRss = rssBytes(h.proxy.pid);
    assert.ok(stalledAt < TOTAL / 2, `upstream stalled at ${stalledAt} of ${TOTAL} bytes (the proxy stopped reading)`);
    assert.ok(!mr.finished);
    // Now read everything, slowly at first (bursts), then at full speed.
    for (let i = 0; i < 20 && !closed; i++) {
      sock.resume();
      await new Promise((r) => setTimeout(r, 5));
      sock.pause();
      await new Promise((r) => setTimeout(r, 20));
    }
    sock.resume();
    await waitFor(() => tail.toString('latin1').endsWith('data: [DONE]\n\n\r\n0\r\n\r\n'), { timeout: 60000, what: 'the whole stream to arrive' });
    assert.ok(mr.finished, 'upstream finished');
    assert.ok(received >= TOTAL, `received ${received} bytes`);
    const grow = maxRss - base;
    tc.diagnostic(`upstream stalled at ${(stalledAt / 1048576).toFixed(1)} MiB of ${TOTAL / 1048576} MiB; RSS growth max ${(grow / 1048576).toFixed(1)} MiB`);
    // Under ASan freed memory sits in the allocator's quarantine, so RSS
    // says nothing about what the proxy holds; the stall above is the proof
    // of back-pressure there.
    if (!process.env.BYOK_SANITIZER) assert.ok(grow < 24 * 1024 * 1024, `proxy RSS grew ${(grow / 1048576).toFixed(1)} MiB (paused: ${((pausedRss - base) / 1048576).toFixed(1)} MiB) for a ${TOTAL / 1048576} MiB stream`);
  } finally {
    clearInterval(sampler);
    sock.destroy();
  }
  const recs = await h.proxy.admin.waitRecords(t.tenantId, 2);
  const big = recs.find((r) => r.upstream_request_id === h.mock.since(mark)[0].requestId);
  assert.ok(big);
  assert.equal(big.outcome, 'ok');
  h.issued.get(t.tenantId).ids.push(big.id);
});

test('one record per request, each once in JSONL', async () => {
  await h.checkAllRecords();
});
