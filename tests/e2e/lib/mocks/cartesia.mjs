// cartesia.mjs - a local stand-in for api.cartesia.ai (PROVIDERS.md §4.2):
// POST /tts/bytes (audio), POST /tts/sse (named SSE chunk events, then done),
// WebSocket /tts/websocket (per context: chunk messages, then done once the
// client sends continue:false, or per request without continue). Key:
// "Authorization: Bearer" (cartesia-js 3+/4), X-API-Key (older clients), or
// ?api_key= / ?access_token= on the WS URL (browsers). cartesia-js forces
// wss for the WebSocket: start this mock with { tls } for it.
import { startMock, header, authToken, fakeAudio, SSE_HEADERS } from './base.mjs';

function defaultConfig() {
  return { tts: { chunks: 3, chunkBytes: 4096 } };
}

export function cartesiaError(status, message) {
  return { error: message, status_code: status };
}

function credentials(rec) {
  const out = [];
  const b = authToken(rec, 'Bearer');
  if (b !== undefined) out.push({ in: 'header', name: 'authorization', value: b });
  const k = header(rec, 'x-api-key');
  if (k !== undefined) out.push({ in: 'header', name: 'x-api-key', value: k });
  for (const q of ['api_key', 'access_token']) {
    if (rec.query[q] !== undefined) out.push({ in: 'query', name: q, value: rec.query[q] });
  }
  return out;
}

export function cartesiaAudio(transcript, c, tag = 'bytes') {
  const out = [];
  for (let i = 0; i < c.chunks; i++) out.push(fakeAudio(`cartesia-${tag}:${transcript}#${i}`, c.chunkBytes));
  return out;
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  if (!mock.authorized(rec)) return ctx.json(401, cartesiaError(401, 'Invalid API key'));
  if (rec.method === 'POST' && (rec.path === '/tts/bytes' || rec.path === '/tts/sse')) {
    const t = rec.json?.transcript;
    if (typeof t !== 'string') return ctx.json(400, cartesiaError(400, 'transcript is required'));
    rec.characters = t.length;
    const audio = cartesiaAudio(t, mock.config.tts, rec.path === '/tts/bytes' ? 'bytes' : 'sse');
    if (rec.path === '/tts/bytes') {
      const wav = rec.json?.output_format?.container === 'wav';
      ctx.head(200, { 'content-type': wav ? 'audio/wav' : 'application/octet-stream', 'transfer-encoding': 'chunked' });
      for (const a of audio) await ctx.write(a);
      return ctx.end();
    }
    const contextId = rec.json?.context_id || `ctx_mock${rec.n}`;
    ctx.head(200, SSE_HEADERS);
    for (const a of audio) {
      await ctx.write(`event: chunk\ndata: ${JSON.stringify({ type: 'chunk', data: a.toString('base64'), done: false, status_code: 206, step_time: 12.5, context_id: contextId })}\n\n`);
    }
    await ctx.write(`event: done\ndata: ${JSON.stringify({ type: 'done', done: true, status_code: 200, context_id: contextId })}\n\n`);
    return ctx.end();
  }
  if (rec.method === 'GET' && rec.path === '/voices') {
    return ctx.json(200, { data: [{ id: 'a0e99841-438c-4a64-b679-ae501e7d6091', name: 'Mock Voice', language: 'en', is_public: true }], has_more: false, next_page: null });
  }
  return ctx.json(404, cartesiaError(404, `mock: no route ${rec.method} ${rec.path}`));
}

function handshake({ mock, rec }) {
  if (rec.path !== '/tts/websocket') return { status: 404, body: cartesiaError(404, 'not found') };
  if (!mock.authorized(rec)) return { status: 401, body: cartesiaError(401, 'Invalid API key') };
  return null;
}

// Each generation request (with a transcript) gets its audio as chunk
// messages; a context ends with done when a request has continue !== true.
// {cancel:true} ends the context quietly. rec.characters sums transcripts.
async function wsHandler(ctx) {
  const { rec, mock } = ctx;
  rec.characters = 0;
  rec.contexts = {};
  let seq = 0;
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    const msg = m.json;
    if (!msg || typeof msg !== 'object') {
      await ctx.sendJson({ type: 'error', status_code: 400, done: true, error: 'invalid JSON' });
      continue;
    }
    const cid = msg.context_id || `ctx_mock${rec.n}_${seq}`;
    if (msg.cancel) { delete rec.contexts[cid]; continue; }
    const t = typeof msg.transcript === 'string' ? msg.transcript : '';
    rec.characters += t.length;
    rec.contexts[cid] = (rec.contexts[cid] || '') + t;
    if (t) {
      for (const a of cartesiaAudio(t, mock.config.tts, `ws${seq++}`)) {
        await ctx.sendJson({ type: 'chunk', data: a.toString('base64'), done: false, status_code: 206, step_time: 10, context_id: cid });
      }
    }
    if (msg.flush) await ctx.sendJson({ type: 'flush_done', done: false, flush_done: true, flush_id: 1, status_code: 206, context_id: cid });
    if (msg.continue !== true) await ctx.sendJson({ type: 'done', done: true, status_code: 206, context_id: cid });
  }
}

export function startMockCartesia(opts = {}) {
  return startMock({ name: 'cartesia', config: defaultConfig, credentials, http: httpHandler, handshake, ws: wsHandler, tls: opts.tls });
}
