// elevenlabs.mjs - a local stand-in for api.elevenlabs.io (PROVIDERS.md §2):
// TTS REST (plain, /stream chunked, /with-timestamps JSON, /stream/with-timestamps
// NDJSON) with character-cost / request-id headers, GET /v1/voices,
// GET /v1/models, GET /v1/user/subscription, and the stream-input WebSocket
// (key on the handshake or as xi_api_key / authorization in the first
// message). Errors in ElevenLabs' {"detail":{"status","message"}} shape.
import { startMock, header, authToken, fakeAudio } from './base.mjs';

function defaultConfig() {
  return {
    tts: { chunks: 4, chunkBytes: 4096 },
    // Bytes of audio per generated WS chunk.
    wsChunkBytes: 2048,
    voices: [
      { voice_id: '21m00Tcm4TlvDq8ikWAM', name: 'Rachel', category: 'premade' },
      { voice_id: 'EXAVITQu4vr4xnSDxMaL', name: 'Sarah', category: 'premade' },
    ],
  };
}

// Credits ElevenLabs charges for `text` with `model`: 0.5 per character for
// the Flash/Turbo v2.5 models, 1 otherwise (PROVIDERS.md §2.1), rounded up.
export function elevenCharacterCost(text, model) {
  const half = /^eleven_(flash|turbo)_v2_5$/.test(model || '');
  return half ? Math.ceil(text.length / 2) : text.length;
}

export function elevenError(status, code, message) {
  return { detail: { status: code, message } };
}

function credentials(rec) {
  const out = [];
  const xi = header(rec, 'xi-api-key');
  if (xi !== undefined) out.push({ in: 'header', name: 'xi-api-key', value: xi });
  const bearer = authToken(rec, 'Bearer');
  if (bearer !== undefined) out.push({ in: 'header', name: 'authorization', value: bearer });
  return out;
}

// The audio for one TTS request: `chunks` deterministic pieces.
export function elevenAudio(text, c) {
  const out = [];
  for (let i = 0; i < c.chunks; i++) out.push(fakeAudio(`11labs:${text}#${i}`, c.chunkBytes));
  return out;
}

function alignment(text) {
  const chars = [...text];
  return {
    characters: chars,
    character_start_times_seconds: chars.map((_, i) => i * 0.05),
    character_end_times_seconds: chars.map((_, i) => (i + 1) * 0.05),
  };
}

function ttsHeaders(rec, text, model, contentType) {
  return {
    'content-type': contentType,
    'character-cost': String(elevenCharacterCost(text, model)),
    'request-id': rec.requestId,
    'history-item-id': `hist_${rec.n}`,
    'current-concurrent-requests': '1',
    'maximum-concurrent-requests': '5',
  };
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  const key = mock.keyOf(rec);
  if (!mock.authorized(rec)) {
    const e = key === undefined
      ? elevenError(401, 'needs_authorization', 'Neither authorization header nor xi-api-key received, please provide one.')
      : elevenError(401, 'invalid_api_key', 'Invalid API key');
    return ctx.json(401, e, { 'request-id': rec.requestId });
  }
  const m = /^\/v1\/text-to-speech\/([^/]+)(\/stream)?(\/with-timestamps)?$/.exec(rec.path);
  if (m && rec.method === 'POST') {
    const text = rec.json?.text;
    if (typeof text !== 'string') {
      return ctx.json(422, { detail: [{ loc: ['body', 'text'], msg: 'field required', type: 'value_error.missing' }] });
    }
    const model = rec.json?.model_id || 'eleven_multilingual_v2';
    rec.voiceId = decodeURIComponent(m[1]);
    rec.characters = text.length;
    const audio = elevenAudio(text, mock.config.tts);
    const stream = Boolean(m[2]);
    const timestamps = Boolean(m[3]);
    if (timestamps && !stream) {
      const al = alignment(text);
      return ctx.json(200, { audio_base64: Buffer.concat(audio).toString('base64'), alignment: al, normalized_alignment: al },
        ttsHeaders(rec, text, model, 'application/json'));
    }
    if (timestamps) {
      ctx.head(200, { ...ttsHeaders(rec, text, model, 'application/json'), 'transfer-encoding': 'chunked' });
      for (const [i, a] of audio.entries()) {
        const al = i === 0 ? alignment(text) : null;
        await ctx.write(`${JSON.stringify({ audio_base64: a.toString('base64'), alignment: al, normalized_alignment: al })}\n`);
      }
      return ctx.end();
    }
    if (stream) {
      ctx.head(200, { ...ttsHeaders(rec, text, model, 'audio/mpeg'), 'transfer-encoding': 'chunked' });
      for (const a of audio) await ctx.write(a);
      return ctx.end();
    }
    return ctx.bytes(200, Buffer.concat(audio), ttsHeaders(rec, text, model, 'audio/mpeg'));
  }
  if (rec.method === 'GET' && rec.path === '/v1/voices') {
    return ctx.json(200, { voices: mock.config.voices }, { 'request-id': rec.requestId });
  }
  if (rec.method === 'GET' && rec.path === '/v1/models') {
    return ctx.json(200, [
      { model_id: 'eleven_turbo_v2_5', name: 'Eleven Turbo v2.5', can_do_text_to_speech: true, token_cost_factor: 0.5 },
      { model_id: 'eleven_flash_v2_5', name: 'Eleven Flash v2.5', can_do_text_to_speech: true, token_cost_factor: 0.5 },
      { model_id: 'eleven_multilingual_v2', name: 'Eleven Multilingual v2', can_do_text_to_speech: true, token_cost_factor: 1 },
    ], { 'request-id': rec.requestId });
  }
  if (rec.method === 'GET' && rec.path === '/v1/user/subscription') {
    return ctx.json(200, { tier: 'creator', character_count: 1234, character_limit: 100000, status: 'active', next_character_count_reset_unix: 1767225600 });
  }
  return ctx.json(404, elevenError(404, 'not_found', `mock: no route ${rec.method} ${rec.path}`));
}

const STREAM_INPUT = /^\/v1\/text-to-speech\/([^/]+)\/stream-input$/;

function handshake({ mock, rec }) {
  if (!STREAM_INPUT.test(rec.path)) return { status: 404, body: elevenError(404, 'not_found', 'mock: no such WebSocket') };
  // A key on the handshake is checked now; without one the first message must carry it.
  if (rec.credentials.length > 0 && !mock.authorized(rec)) return { status: 401, body: elevenError(401, 'invalid_api_key', 'Invalid API key') };
  return null;
}

// stream-input: every message with non-blank text produces one audio chunk
// (`try_trigger_generation`/`flush` too); {"text":""} (EOS) produces a last
// chunk, {"isFinal":true} and a normal close by the server. rec.textReceived
// holds the concatenated text, rec.characters its length (what the proxy
// meters: ElevenLabs sends no usage on this socket).
async function wsHandler(ctx) {
  const { rec, mock } = ctx;
  rec.voiceId = decodeURIComponent(STREAM_INPUT.exec(rec.path)[1]);
  rec.textReceived = '';
  rec.characters = 0;
  let first = true;
  let pending = '';
  let seq = 0;
  const chunk = async (text) => {
    const chars = [...text];
    await ctx.sendJson({
      audio: fakeAudio(`11labs-ws:${text}#${seq++}`, mock.config.wsChunkBytes).toString('base64'),
      isFinal: null,
      normalizedAlignment: { chars, charStartTimesMs: chars.map((_, i) => i * 50), charDurationsMs: chars.map(() => 50) },
      alignment: { chars, charStartTimesMs: chars.map((_, i) => i * 50), charDurationsMs: chars.map(() => 50) },
    });
  };
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    const msg = m.json;
    if (!msg || typeof msg !== 'object') {
      await ctx.sendJson({ message: 'Invalid message received', error: 'invalid_message', code: 1008 });
      await ctx.close(1008, 'invalid message');
      return;
    }
    if (first) {
      first = false;
      if (msg.xi_api_key !== undefined) rec.credentials.push({ in: 'message', name: 'xi_api_key', value: msg.xi_api_key });
      const ab = /^Bearer (.*)$/.exec(msg.authorization || '');
      if (ab) rec.credentials.push({ in: 'message', name: 'authorization', value: ab[1] });
      if (!mock.authorized(rec)) {
        // (The real server's exact wording here is not documented.)
        await ctx.sendJson({ message: 'Invalid API key', error: 'invalid_api_key', code: 1008 });
        await ctx.close(1008, 'Invalid API key');
        return;
      }
    }
    if (typeof msg.text !== 'string') continue;
    if (msg.text === '') {
      if (pending.trim()) await chunk(pending);
      await ctx.sendJson({ isFinal: true });
      await ctx.close(1000, '');
      return;
    }
    rec.textReceived += msg.text;
    rec.characters += msg.text.length;
    pending += msg.text;
    if (pending.trim() && (msg.flush || msg.try_trigger_generation || msg.text.trim())) {
      await chunk(pending);
      pending = '';
    }
  }
}

export function startMockElevenLabs(opts = {}) {
  return startMock({ name: 'elevenlabs', config: defaultConfig, credentials, http: httpHandler, handshake, ws: wsHandler, tls: opts.tls });
}
