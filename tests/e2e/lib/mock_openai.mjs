// mock_openai.mjs - a local stand-in for api.openai.com. It records every
// request it receives (method, url, headers, raw body, its connection, when
// it was closed) and answers the endpoints the proxy meters with replies shaped
// like OpenAI's (PROVIDERS.md §1), with usage numbers the test chooses.
// Tests script failures through override(): error statuses, slow or reset
// streams, a reply that never comes, huge streams, broken framing.
// mock.prefixes maps a path prefix onto another for the built-in endpoints
// (e.g. {'/ds': '/v1'}: a second, OpenAI-shaped provider on the same
// server); mock.acceptKeys (a Set of bearer tokens, null = any) makes the
// built-in endpoints answer OpenAI's 401 to any other key.
import http from 'node:http';
import crypto from 'node:crypto';
import { wavSeconds } from './util.mjs';

const CREATED = 1700000000;

// Default usage numbers; tests overwrite mock.config.* to get distinct values.
function defaultConfig() {
  return {
    chat: { prompt_tokens: 17, completion_tokens: 9, cached_tokens: 4, content: ['Hel', 'lo', ' there', '!'] },
    responses: { input_tokens: 31, cached_tokens: 8, output_tokens: 12, reasoning_tokens: 0, deltas: ['Hi', ' there'] },
    embeddings: { prompt_tokens: 6, dims: 8 },
    speech: { chunks: 3, chunkBytes: 8192 },
    transcription: { seconds: 12, text: 'hello from the mock' },
  };
}

export async function startMockOpenAI() {
  const requests = [];
  const overrides = [];
  let n = 0;
  let connSeq = 0;
  const server = http.createServer();
  server.keepAliveTimeout = 60000;
  const mock = {
    url: null,
    port: 0,
    requests,
    config: defaultConfig(),
    prefixes: {},
    acceptKeys: null,
    // A scripted answer for the next matching requests. spec: { path?: string
    // | RegExp, times?: number (default 1, Infinity = until cleared),
    // handle: async (ctx) => void }.
    override(spec) {
      overrides.push({ times: 1, ...spec });
    },
    clearOverrides() {
      overrides.length = 0;
    },
    resetConfig() {
      mock.config = defaultConfig();
    },
    // Requests received after `mark` (a previous requests.length).
    since(mark) {
      return requests.slice(mark);
    },
    async close() {
      overrides.length = 0;
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };

  server.on('connection', (sock) => {
    sock.mockConnId = ++connSeq;
    sock.on('close', () => { sock.mockClosed = true; });
  });

  server.on('request', (req, res) => {
    const id = ++n;
    const rec = {
      n: id,
      requestId: `req_mock_${id}`,
      method: req.method,
      url: req.url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      conn: req.socket.mockConnId,
      socket: req.socket,
      receivedAt: Date.now(),
      body: null,
      json: null,
      sent: [], // body pieces written, in order (strings or Buffers)
      bytesSent: 0,
      closed: false,
      closedAt: null,
      aborted: false, // closed before the response was finished
      finished: false,
    };
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
      const ct = req.headers['content-type'] || '';
      if (ct.includes('application/json')) {
        try { rec.json = JSON.parse(rec.body.toString('utf8')); } catch { rec.json = null; }
      } else if (ct.startsWith('multipart/form-data')) {
        rec.form = parseMultipart(rec.body, ct);
      }
      dispatch(mock, overrides, rec, req, res).catch((e) => {
        rec.handlerError = e;
        if (!res.headersSent) { res.statusCode = 599; res.end(String(e)); } else res.destroy();
      });
    });
  });

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  mock.port = server.address().port;
  mock.url = `http://127.0.0.1:${mock.port}`;
  return mock;
}

async function dispatch(mock, overrides, rec, req, res) {
  const rawPath = rec.url.split('?')[0];
  const ctx = makeCtx(mock, rec, req, res);
  for (let i = 0; i < overrides.length; i++) {
    const o = overrides[i];
    const match = o.path === undefined || (o.path instanceof RegExp ? o.path.test(rawPath) : o.path === rawPath);
    if (!match) continue;
    if (--o.times <= 0) overrides.splice(i, 1);
    return o.handle(ctx);
  }
  let path = rawPath;
  for (const [from, to] of Object.entries(mock.prefixes)) {
    if (rawPath.startsWith(`${from}/`)) {
      path = to + rawPath.slice(from.length);
      break;
    }
  }
  if (mock.acceptKeys) {
    const key = bearerToken(rec);
    if (!mock.acceptKeys.has(key)) return ctx.json(401, invalidKeyError(key));
  }
  if (req.method === 'POST' && path === '/v1/chat/completions') return chat(ctx);
  if (req.method === 'POST' && path === '/v1/responses') return responses(ctx);
  if (req.method === 'POST' && path === '/v1/embeddings') return embeddings(ctx);
  if (req.method === 'POST' && path === '/v1/audio/speech') return speech(ctx);
  if (req.method === 'POST' && path === '/v1/audio/transcriptions') return transcription(ctx);
  if (req.method === 'GET' && path === '/v1/models') {
    return ctx.json(200, { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: CREATED, owned_by: 'system' }] });
  }
  return ctx.json(404, openaiError(`Invalid URL (${req.method} ${path})`, 'invalid_request_error', null));
}

export function openaiError(message, type, code) {
  return { error: { message, type, param: null, code } };
}

// The token of "Authorization: Bearer <token>" of a recorded request ('' if none).
export function bearerToken(rec) {
  const m = /^Bearer (.*)$/.exec(rec.headers.authorization || '');
  return m ? m[1] : '';
}

// OpenAI's answer to a wrong key: the key is shown masked, as the real API does.
export function invalidKeyError(key) {
  const masked = key.length > 8 ? `${key.slice(0, 3)}${'*'.repeat(8)}${key.slice(-4)}` : '****';
  return openaiError(`Incorrect API key provided: ${masked}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    'invalid_request_error', 'invalid_api_key');
}

function makeCtx(mock, rec, req, res) {
  const ctx = {
    mock, rec, req, res,
    head(status, headers = {}) {
      res.writeHead(status, { 'x-request-id': rec.requestId, ...headers });
    },
    // Writes one body piece and resolves once node handed it to the kernel
    // (waiting for 'drain' when the socket is full: the mock itself obeys
    // back-pressure, so a proxy that stops reading stalls it).
    write(data) {
      rec.sent.push(data);
      rec.bytesSent += Buffer.byteLength(data);
      return new Promise((resolve) => {
        if (res.destroyed) return resolve(false);
        const ok = res.write(data, () => {
          if (ok) resolve(true);
        });
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
  };
  return ctx;
}

function lastUserText(json) {
  const msgs = json?.messages || [];
  const m = msgs[msgs.length - 1];
  if (!m) return '';
  return typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
}

function chatUsage(c) {
  return {
    prompt_tokens: c.prompt_tokens,
    completion_tokens: c.completion_tokens,
    total_tokens: c.prompt_tokens + c.completion_tokens,
    prompt_tokens_details: { cached_tokens: c.cached_tokens, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

// The SSE events of a chat stream, as OpenAI sends them: role chunk, content
// chunks, finish chunk, then (only with include_usage) "usage":null on every
// chunk and one extra chunk with "choices":[] and the usage, then [DONE].
export function chatStreamEvents(rec, c) {
  const includeUsage = rec.json?.stream_options?.include_usage === true;
  const model = rec.json?.model || 'gpt-4o-mini';
  const base = { id: `chatcmpl-mock${rec.n}`, object: 'chat.completion.chunk', created: CREATED, model, service_tier: 'default', system_fingerprint: 'fp_mock' };
  const chunk = (choices) => {
    const o = { ...base, choices };
    if (includeUsage) o.usage = null;
    return { data: `data: ${JSON.stringify(o)}\n\n`, usage: false };
  };
  const ev = [chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }])];
  for (const piece of c.content) ev.push(chunk([{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }]));
  ev.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
  if (includeUsage) {
    ev.push({ data: `data: ${JSON.stringify({ ...base, choices: [], usage: chatUsage(c) })}\n\n`, usage: true });
  }
  ev.push({ data: 'data: [DONE]\n\n', usage: false, done: true });
  return ev;
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

async function chat(ctx) {
  const { rec, mock } = ctx;
  const c = mock.config.chat;
  const text = lastUserText(rec.json);
  const delay = /\[\[delay:(\d+)\]\]/.exec(text);
  if (delay) await new Promise((r) => setTimeout(r, Number(delay[1])));
  if (rec.json?.stream) {
    ctx.head(200, SSE_HEADERS);
    for (const e of chatStreamEvents(rec, c)) await ctx.write(e.data);
    return ctx.end();
  }
  return ctx.json(200, {
    id: `chatcmpl-mock${rec.n}`,
    object: 'chat.completion',
    created: CREATED,
    model: rec.json?.model || 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: `reply to: ${text}`, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: chatUsage(c),
    service_tier: 'default',
    system_fingerprint: 'fp_mock',
  });
}

function responsesUsage(c) {
  return {
    input_tokens: c.input_tokens,
    input_tokens_details: { cached_tokens: c.cached_tokens },
    output_tokens: c.output_tokens,
    output_tokens_details: { reasoning_tokens: c.reasoning_tokens },
    total_tokens: c.input_tokens + c.output_tokens,
  };
}

// Named SSE events of a Responses stream ending with response.completed,
// the only event that carries usage.
export function responsesStreamEvents(rec, c) {
  const model = rec.json?.model || 'gpt-4o';
  const id = `resp_mock${rec.n}`;
  const itemId = `msg_mock${rec.n}`;
  const text = c.deltas.join('');
  const resp = (status, output, usage) => ({ id, object: 'response', created_at: CREATED, status, model, output, usage,
    error: null, incomplete_details: null, instructions: null, parallel_tool_calls: true, tool_choice: 'auto', tools: [] });
  const part = (t) => ({ type: 'output_text', text: t, annotations: [] });
  const item = (status, content) => ({ id: itemId, type: 'message', status, role: 'assistant', content });
  const list = [
    ['response.created', { response: resp('in_progress', [], null) }],
    ['response.in_progress', { response: resp('in_progress', [], null) }],
    ['response.output_item.added', { output_index: 0, item: item('in_progress', []) }],
    ['response.content_part.added', { item_id: itemId, output_index: 0, content_index: 0, part: part('') }],
    ...c.deltas.map((d) => ['response.output_text.delta', { item_id: itemId, output_index: 0, content_index: 0, delta: d }]),
    ['response.output_text.done', { item_id: itemId, output_index: 0, content_index: 0, text }],
    ['response.content_part.done', { item_id: itemId, output_index: 0, content_index: 0, part: part(text) }],
    ['response.output_item.done', { output_index: 0, item: item('completed', [part(text)]) }],
    ['response.completed', { response: resp('completed', [item('completed', [part(text)])], responsesUsage(c)) }],
  ];
  return list.map(([type, o], i) => ({ type, data: `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: i, ...o })}\n\n` }));
}

async function responses(ctx) {
  const { rec, mock } = ctx;
  const c = mock.config.responses;
  if (rec.json?.stream) {
    ctx.head(200, SSE_HEADERS);
    for (const e of responsesStreamEvents(rec, c)) await ctx.write(e.data);
    return ctx.end();
  }
  const text = c.deltas.join('');
  return ctx.json(200, {
    id: `resp_mock${rec.n}`, object: 'response', created_at: CREATED, status: 'completed', model: rec.json?.model || 'gpt-4o',
    output: [{ id: `msg_mock${rec.n}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }],
    usage: responsesUsage(c), error: null, incomplete_details: null, instructions: null, parallel_tool_calls: true, tool_choice: 'auto', tools: [],
  });
}

async function embeddings(ctx) {
  const { rec, mock } = ctx;
  const c = mock.config.embeddings;
  const inputs = Array.isArray(rec.json?.input) ? rec.json.input : [rec.json?.input];
  const vec = Array.from({ length: c.dims }, (_, i) => (i + 1) / 16);
  const b64 = Buffer.from(new Float32Array(vec).buffer).toString('base64');
  return ctx.json(200, {
    object: 'list',
    data: inputs.map((_, i) => ({ object: 'embedding', index: i, embedding: rec.json?.encoding_format === 'base64' ? b64 : vec })),
    model: rec.json?.model || 'text-embedding-3-small',
    usage: { prompt_tokens: c.prompt_tokens, total_tokens: c.prompt_tokens },
  });
}

// Deterministic "audio" derived from the input text, so tests can compare
// bytes; sent chunked in several pieces like OpenAI's streamed TTS.
export function speechBytes(input, c) {
  const out = [];
  for (let i = 0; i < c.chunks; i++) {
    const seed = crypto.createHash('sha256').update(`${input}#${i}`).digest();
    const b = Buffer.alloc(c.chunkBytes);
    for (let j = 0; j < b.length; j++) b[j] = seed[j % 32] ^ (j & 0xff);
    out.push(b);
  }
  return out;
}

async function speech(ctx) {
  const { rec, mock } = ctx;
  const fmt = rec.json?.response_format || 'mp3';
  ctx.head(200, { 'content-type': fmt === 'mp3' ? 'audio/mpeg' : `audio/${fmt}`, 'transfer-encoding': 'chunked' });
  for (const b of speechBytes(rec.json?.input ?? '', mock.config.speech)) await ctx.write(b);
  return ctx.end();
}

async function transcription(ctx) {
  const { rec, mock } = ctx;
  const c = mock.config.transcription;
  const form = rec.form || {};
  rec.uploadSeconds = form.file ? wavSeconds(form.file.data) : null;
  const fmt = form.response_format?.text || 'json';
  if (fmt === 'text') {
    const body = `${c.text}\n`;
    ctx.head(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    return ctx.end(body);
  }
  return ctx.json(200, { text: c.text, usage: { type: 'duration', seconds: c.seconds } });
}

// Minimal multipart/form-data parser: { name: { text, data, filename, type } }.
export function parseMultipart(body, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!m) return {};
  const boundary = Buffer.from(`--${m[1] || m[2]}`);
  const out = {};
  let pos = body.indexOf(boundary);
  while (pos !== -1) {
    const start = pos + boundary.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headEnd = body.indexOf('\r\n\r\n', start);
    if (headEnd === -1) break;
    const head = body.subarray(start + 2, headEnd).toString('utf8');
    const next = body.indexOf(boundary, headEnd + 4);
    if (next === -1) break;
    const data = body.subarray(headEnd + 4, next - 2);
    const name = /name="([^"]*)"/i.exec(head)?.[1];
    const filename = /filename="([^"]*)"/i.exec(head)?.[1];
    const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1];
    if (name !== undefined) out[name] = { data, text: data.toString('utf8'), filename, type };
    pos = next;
  }
  return out;
}

// ---- scripted behaviours for override() ----

// A provider error passed through by the proxy: OpenAI's shape, pretty-printed
// the way api.openai.com does, so byte-for-byte comparison means something.
export function errorReply(status, { type = 'invalid_request_error', code = null, message, headers = {} } = {}) {
  const body = `{\n    "error": {\n        "message": ${JSON.stringify(message ?? `mock error ${status}`)},\n        "type": ${JSON.stringify(type)},\n        "param": null,\n        "code": ${JSON.stringify(code)}\n    }\n}\n`;
  return {
    body,
    handle: (ctx) => ctx.json(status, body, headers),
  };
}

// A chat stream that sends `chunksBefore` events, then waits until the test
// calls release() to send the rest. `reached` resolves once the first part
// is written.
export function slowChatStream({ chunksBefore = 3 } = {}) {
  let release;
  const released = new Promise((r) => { release = r; });
  let reachedResolve;
  const reached = new Promise((r) => { reachedResolve = r; });
  return {
    release: () => release(),
    reached,
    handle: async (ctx) => {
      const events = chatStreamEvents(ctx.rec, ctx.mock.config.chat);
      ctx.head(200, SSE_HEADERS);
      for (const e of events.slice(0, chunksBefore)) await ctx.write(e.data);
      reachedResolve(ctx.rec);
      await Promise.race([released, new Promise((r) => ctx.res.once('close', r))]);
      if (ctx.res.destroyed) return;
      for (const e of events.slice(chunksBefore)) await ctx.write(e.data);
      await ctx.end();
    },
  };
}

// A chat stream cut after `afterChunks` events: the socket is destroyed
// once those bytes were handed to the kernel (no chunked terminator).
export function resetChatStream({ afterChunks = 3 } = {}) {
  return {
    handle: async (ctx) => {
      const events = chatStreamEvents(ctx.rec, ctx.mock.config.chat);
      ctx.head(200, SSE_HEADERS);
      for (const e of events.slice(0, afterChunks)) await ctx.write(e.data);
      ctx.rec.resetAt = Date.now();
      ctx.res.socket.destroy();
    },
  };
}

// Never answers (until the peer goes away).
export function hang() {
  return { handle: (ctx) => new Promise((r) => ctx.res.once('close', r)) };
}

// A chat stream of about totalBytes of SSE, written as fast as the proxy
// reads it: rec.bytesSent shows how far the upstream got.
export function bigChatStream({ totalBytes, pieceChars = 4000 }) {
  return {
    handle: async (ctx) => {
      const { rec } = ctx;
      const includeUsage = rec.json?.stream_options?.include_usage === true;
      const model = rec.json?.model || 'gpt-4o-mini';
      const base = { id: `chatcmpl-big${rec.n}`, object: 'chat.completion.chunk', created: CREATED, model };
      const mk = (choices, extra = {}) => `data: ${JSON.stringify({ ...base, choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;
      const piece = mk([{ index: 0, delta: { content: 'x'.repeat(pieceChars) }, finish_reason: null }]);
      ctx.head(200, SSE_HEADERS);
      rec.pieces = 0;
      await ctx.write(mk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
      // Batch several events per write to keep the mock cheap.
      const batch = piece.repeat(16);
      while (rec.bytesSent + batch.length < totalBytes) {
        if (!(await ctx.write(batch))) return;
        rec.pieces += 16;
      }
      await ctx.write(mk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
      if (includeUsage) {
        const u = { prompt_tokens: 10, completion_tokens: rec.pieces, total_tokens: 10 + rec.pieces };
        await ctx.write(`data: ${JSON.stringify({ ...base, choices: [], usage: u })}\n\n`);
      }
      await ctx.write('data: [DONE]\n\n');
      await ctx.end();
    },
  };
}

// Writes raw bytes as the whole "response" (broken framing), leaving the
// connection open so the test can see whether the proxy drops it.
export function rawReply(bytes) {
  return {
    handle: (ctx) => {
      ctx.rec.raw = true;
      ctx.res.socket.write(bytes);
      return new Promise(() => {});
    },
  };
}
