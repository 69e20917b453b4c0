// deepgram.mjs - a local stand-in for api.deepgram.com (PROVIDERS.md §4.1):
// prerecorded STT POST /v1/listen (JSON with metadata.duration), live STT
// WebSocket /v1/listen (Results per audio batch, a final Results and
// Metadata with the duration on CloseStream, then a server close), TTS
// POST /v1/speak (audio, dg-char-count). Key: "Authorization: Token <key>"
// (or Bearer <jwt>), browser WS subprotocols ["token", key] / ["bearer", jwt].
// Errors: {"err_code","err_msg","request_id"}.
import crypto from 'node:crypto';
import { startMock, header, authToken, fakeAudio } from './base.mjs';
import { wavSeconds } from '../util.mjs';

function defaultConfig() {
  return {
    listen: {
      transcript: 'hello from the mock',
      // Duration reported for non-WAV uploads (WAV uploads: their length).
      duration: 2.5,
    },
    live: {
      // A Results message after every this many audio bytes.
      resultsEveryBytes: 16000,
      // Audio format when the URL does not say (encoding=linear16&sample_rate=…).
      sampleRate: 16000,
      channels: 1,
    },
    speak: { chunks: 3, chunkBytes: 4096 },
  };
}

export function deepgramError(status, errCode, errMsg, requestId = crypto.randomUUID()) {
  return { err_code: errCode, err_msg: errMsg, request_id: requestId };
}

function credentials(rec) {
  const out = [];
  const t = authToken(rec, 'Token');
  if (t !== undefined) out.push({ in: 'header', name: 'authorization', scheme: 'Token', value: t });
  const b = authToken(rec, 'Bearer');
  if (b !== undefined) out.push({ in: 'header', name: 'authorization', scheme: 'Bearer', value: b });
  const p = rec.protocols || [];
  for (let i = 0; i + 1 < p.length; i++) {
    if (p[i] === 'token' || p[i] === 'bearer') out.push({ in: 'subprotocol', name: p[i], value: p[i + 1] });
  }
  return out;
}

function metadata(rec, duration, channels = 1) {
  return {
    transaction_key: 'deprecated',
    request_id: rec.dgRequestId,
    sha256: crypto.createHash('sha256').update(String(rec.n)).digest('hex'),
    created: new Date(rec.receivedAt).toISOString(),
    duration,
    channels,
    models: ['mock-model-uuid'],
    model_info: { 'mock-model-uuid': { name: rec.query.model || 'nova-3', version: '2025-01-01', arch: 'mock' } },
  };
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  rec.dgRequestId = crypto.randomUUID();
  const hdr = { 'dg-request-id': rec.dgRequestId };
  if (!mock.authorized(rec)) {
    return ctx.json(401, deepgramError(401, 'INVALID_AUTH', 'Invalid credentials.', rec.dgRequestId), hdr);
  }
  if (rec.method === 'POST' && rec.path === '/v1/listen') {
    const c = mock.config.listen;
    const ct = header(rec, 'content-type') || '';
    const wav = ct.includes('json') ? null : wavSeconds(rec.body);
    rec.audioSeconds = wav ?? c.duration;
    const words = c.transcript.split(' ').map((w, i) => ({ word: w, start: i * 0.4, end: i * 0.4 + 0.35, confidence: 0.99 }));
    return ctx.json(200, {
      metadata: metadata(rec, rec.audioSeconds),
      results: { channels: [{ alternatives: [{ transcript: c.transcript, confidence: 0.99, words }] }] },
    }, hdr);
  }
  if (rec.method === 'POST' && rec.path === '/v1/speak') {
    const text = rec.json?.text;
    if (typeof text !== 'string') return ctx.json(400, deepgramError(400, 'Bad Request', 'text is required', rec.dgRequestId), hdr);
    rec.characters = text.length;
    const model = rec.query.model || 'aura-2-thalia-en';
    const enc = rec.query.encoding;
    ctx.head(200, {
      ...hdr,
      'content-type': enc === 'linear16' ? 'audio/wav' : 'audio/mpeg',
      'dg-char-count': String(text.length),
      'dg-model-name': model,
      'dg-model-uuid': 'mock-model-uuid',
      'transfer-encoding': 'chunked',
    });
    const c = mock.config.speak;
    for (let i = 0; i < c.chunks; i++) await ctx.write(fakeAudio(`dg:${text}#${i}`, c.chunkBytes));
    return ctx.end();
  }
  return ctx.json(404, deepgramError(404, 'NOT_FOUND', `mock: no route ${rec.method} ${rec.path}`, rec.dgRequestId), hdr);
}

function handshake({ mock, rec }) {
  if (rec.path !== '/v1/listen') return { status: 404, body: deepgramError(404, 'NOT_FOUND', 'mock: no such WebSocket') };
  if (!mock.authorized(rec)) return { status: 401, body: deepgramError(401, 'INVALID_AUTH', 'Invalid credentials.') };
  return null;
}

// Browser clients offer ["token", key]: answer "token" (never echo the key).
function selectProtocol(protocols) {
  if (protocols.includes('token')) return 'token';
  if (protocols.includes('bearer')) return 'bearer';
  return protocols[0];
}

// Live STT. rec.audioBytes / rec.audioSeconds: what arrived; rec.control:
// the JSON control messages (KeepAlive, Finalize, CloseStream) in order.
async function wsHandler(ctx) {
  const { rec, mock } = ctx;
  rec.dgRequestId = crypto.randomUUID();
  const c = mock.config.live;
  const rate = Number(rec.query.sample_rate) || c.sampleRate;
  const channels = Number(rec.query.channels) || c.channels;
  const bytesPerSecond = rate * 2 * channels;
  rec.audioBytes = 0;
  rec.audioSeconds = 0;
  rec.control = [];
  let sinceResult = 0;
  let lastEnd = 0;
  const results = (isFinal, extra = {}) => {
    const end = rec.audioBytes / bytesPerSecond;
    const msg = {
      type: 'Results',
      channel_index: [0, channels],
      duration: end - lastEnd,
      start: lastEnd,
      is_final: isFinal,
      speech_final: isFinal,
      channel: { alternatives: [{ transcript: mock.config.listen.transcript, confidence: 0.98, words: [] }] },
      metadata: { request_id: rec.dgRequestId, model_info: { name: rec.query.model || 'nova-3', version: '2025-01-01', arch: 'mock' }, model_uuid: 'mock-model-uuid' },
      from_finalize: false,
      ...extra,
    };
    if (isFinal) lastEnd = end;
    return ctx.sendJson(msg);
  };
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    if (m.binary) {
      rec.audioBytes += m.data.length;
      rec.audioSeconds = rec.audioBytes / bytesPerSecond;
      sinceResult += m.data.length;
      if (sinceResult >= c.resultsEveryBytes) {
        sinceResult = 0;
        await results(false);
      }
      continue;
    }
    const msg = m.json;
    rec.control.push(msg?.type ?? null);
    if (msg?.type === 'Finalize') {
      await results(true, { from_finalize: true });
    } else if (msg?.type === 'CloseStream') {
      await results(true);
      await ctx.sendJson({ type: 'Metadata', ...metadata(rec, rec.audioSeconds, channels) });
      await ctx.close(1000, '');
      return;
    }
  }
}

export function startMockDeepgram(opts = {}) {
  return startMock({ name: 'deepgram', config: defaultConfig, credentials, http: httpHandler, handshake, ws: wsHandler, selectProtocol, tls: opts.tls });
}
