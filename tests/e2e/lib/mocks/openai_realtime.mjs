// openai_realtime.mjs - a local stand-in for OpenAI's Realtime API
// (PROVIDERS.md §1.7-1.8): WebSocket /v1/realtime?model=… (session.created
// on connect; session.update, input_audio_buffer.*, conversation.item.create
// answered; response.create → response.created, output item/part events, a
// few response.output_audio.delta, response.done with usage), plus
// POST /v1/realtime/client_secrets (GA) and /v1/realtime/sessions (beta).
// Clients that ask for the beta interface (OpenAI-Beta: realtime=v1 header or
// openai-beta.realtime-v1 subprotocol) get the beta event names
// (response.audio.delta, ...). Key: Authorization: Bearer, or subprotocol
// openai-insecure-api-key.<key> (browsers). openai-node forces wss: start
// with { tls } and use mock.wssUrl / mock.httpsUrl.
import crypto from 'node:crypto';
import { startMock, header, authToken } from './base.mjs';
import { invalidKeyError, openaiError } from '../mock_openai.mjs';

function defaultConfig() {
  return {
    response: {
      audioDeltas: 3,
      deltaBytes: 4800, // 100 ms of 24 kHz 16-bit PCM
      transcript: 'Hello from the mock.',
      usage: {
        input_text_tokens: 40,
        input_audio_tokens: 60,
        cached_tokens: 16,
        cached_text_tokens: 16,
        cached_audio_tokens: 0,
        output_text_tokens: 12,
        output_audio_tokens: 90,
      },
    },
  };
}

const KEY_PROTOCOL = 'openai-insecure-api-key.';

function credentials(rec) {
  const out = [];
  const b = authToken(rec, 'Bearer');
  if (b !== undefined) out.push({ in: 'header', name: 'authorization', value: b });
  for (const p of rec.protocols || []) {
    if (p.startsWith(KEY_PROTOCOL)) out.push({ in: 'subprotocol', name: KEY_PROTOCOL, value: p.slice(KEY_PROTOCOL.length) });
  }
  return out;
}

// The usage object of response.done from the config numbers.
export function realtimeUsage(u) {
  const input = u.input_text_tokens + u.input_audio_tokens;
  const output = u.output_text_tokens + u.output_audio_tokens;
  return {
    total_tokens: input + output,
    input_tokens: input,
    output_tokens: output,
    input_token_details: {
      text_tokens: u.input_text_tokens,
      audio_tokens: u.input_audio_tokens,
      image_tokens: 0,
      cached_tokens: u.cached_tokens,
      cached_tokens_details: { text_tokens: u.cached_text_tokens, audio_tokens: u.cached_audio_tokens, image_tokens: 0 },
    },
    output_token_details: { text_tokens: u.output_text_tokens, audio_tokens: u.output_audio_tokens },
  };
}

const id = (p) => `${p}_${crypto.randomBytes(8).toString('hex')}`;

function sessionObject(model, beta) {
  if (beta) {
    return { id: id('sess'), object: 'realtime.session', model, modalities: ['text', 'audio'], voice: 'alloy',
      input_audio_format: 'pcm16', output_audio_format: 'pcm16', turn_detection: null, tools: [], instructions: '' };
  }
  return {
    type: 'realtime', object: 'realtime.session', id: id('sess'), model, output_modalities: ['audio'], instructions: '',
    tools: [], tool_choice: 'auto', max_output_tokens: 'inf', tracing: null, prompt: null, include: null,
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    audio: {
      input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: null, noise_reduction: null, turn_detection: null },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 },
    },
  };
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  const hdr = { 'x-request-id': rec.requestId };
  const key = mock.keyOf(rec);
  if (!mock.authorized(rec)) return ctx.json(401, invalidKeyError(key || ''), hdr);
  const expires = Math.floor(Date.now() / 1000) + (rec.json?.expires_after?.seconds ?? 600);
  if (rec.method === 'POST' && rec.path === '/v1/realtime/client_secrets') {
    const model = rec.json?.session?.model || 'gpt-realtime';
    return ctx.json(200, { value: id('ek'), expires_at: expires, session: { ...sessionObject(model, false), ...(rec.json?.session || {}) } }, hdr);
  }
  if (rec.method === 'POST' && rec.path === '/v1/realtime/sessions') {
    const model = rec.json?.model || 'gpt-4o-realtime-preview';
    return ctx.json(200, { ...sessionObject(model, true), client_secret: { value: id('ek'), expires_at: expires } }, hdr);
  }
  return ctx.json(404, openaiError(`Invalid URL (${rec.method} ${rec.path})`, 'invalid_request_error', null), hdr);
}

function handshake({ mock, rec }) {
  if (rec.path !== '/v1/realtime') return { status: 404, body: openaiError(`Invalid URL (GET ${rec.path})`, 'invalid_request_error', null) };
  const key = mock.keyOf(rec);
  if (!mock.authorized(rec)) return { status: 401, body: invalidKeyError(key || '') };
  if (!rec.query.model && !rec.query.intent && !rec.query.call_id) {
    return { status: 400, body: openaiError('Missing required parameter: model', 'invalid_request_error', 'missing_model') };
  }
  return null;
}

// Browsers offer "realtime" plus the key protocol: answer "realtime".
function selectProtocol(protocols) {
  if (protocols.includes('realtime')) return 'realtime';
  return protocols.find((p) => !p.startsWith(KEY_PROTOCOL));
}

// rec.beta: the client asked for the beta interface; rec.audioAppendedBytes:
// decoded bytes of input_audio_buffer.append; rec.responses: usage objects
// sent in response.done, in order.
async function wsHandler(ctx) {
  const { rec, mock } = ctx;
  rec.beta = header(rec, 'openai-beta') === 'realtime=v1' || (rec.protocols || []).includes('openai-beta.realtime-v1');
  rec.audioAppendedBytes = 0;
  rec.responses = [];
  const model = rec.query.model || 'gpt-realtime';
  const ev = (type, o = {}) => ctx.sendJson({ type, event_id: id('event'), ...o });
  const session = sessionObject(model, rec.beta);
  await ev('session.created', { session });
  const names = rec.beta
    ? { audioDelta: 'response.audio.delta', audioDone: 'response.audio.done', trDone: 'response.audio_transcript.done', itemAdded: 'conversation.item.created' }
    : { audioDelta: 'response.output_audio.delta', audioDone: 'response.output_audio.done', trDone: 'response.output_audio_transcript.done', itemAdded: 'conversation.item.added' };
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    const msg = m.json;
    if (!msg || typeof msg.type !== 'string') {
      await ev('error', { error: { type: 'invalid_request_error', code: 'invalid_json', message: 'Invalid JSON', param: null, event_id: null } });
      continue;
    }
    switch (msg.type) {
      case 'session.update':
        Object.assign(session, msg.session || {});
        await ev('session.updated', { session });
        break;
      case 'input_audio_buffer.append':
        rec.audioAppendedBytes += Buffer.from(msg.audio || '', 'base64').length;
        break;
      case 'input_audio_buffer.commit':
        await ev('input_audio_buffer.committed', { previous_item_id: null, item_id: id('item') });
        break;
      case 'input_audio_buffer.clear':
        await ev('input_audio_buffer.cleared');
        break;
      case 'conversation.item.create': {
        const item = { id: msg.item?.id || id('item'), status: 'completed', ...msg.item };
        await ev(names.itemAdded, { previous_item_id: msg.previous_item_id ?? null, item });
        if (!rec.beta) await ev('conversation.item.done', { previous_item_id: msg.previous_item_id ?? null, item });
        break;
      }
      case 'response.create':
        await respond(ctx, ev, names);
        break;
      case 'response.cancel':
        break;
      default:
        await ev('error', { error: { type: 'invalid_request_error', code: 'unknown_event', message: `mock: unhandled event ${msg.type}`, param: null, event_id: msg.event_id ?? null } });
    }
  }
}

async function respond(ctx, ev, names) {
  const { rec, mock } = ctx;
  const c = mock.config.response;
  const rid = id('resp');
  const itemId = id('item');
  const base = { id: rid, object: 'realtime.response', conversation_id: id('conv'), output_modalities: ['audio'], max_output_tokens: 'inf', metadata: null };
  await ev('response.created', { response: { ...base, status: 'in_progress', status_details: null, output: [], usage: null } });
  const item = { id: itemId, object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] };
  await ev('response.output_item.added', { response_id: rid, output_index: 0, item });
  const part = { type: 'output_audio', transcript: '' };
  await ev('response.content_part.added', { response_id: rid, item_id: itemId, output_index: 0, content_index: 0, part });
  const where = { response_id: rid, item_id: itemId, output_index: 0, content_index: 0 };
  for (let i = 0; i < c.audioDeltas; i++) {
    const pcm = Buffer.alloc(c.deltaBytes, i + 1);
    await ev(names.audioDelta, { ...where, delta: pcm.toString('base64') });
  }
  await ev(names.audioDone, where);
  await ev(names.trDone, { ...where, transcript: c.transcript });
  const donePart = { type: 'output_audio', transcript: c.transcript };
  await ev('response.content_part.done', { ...where, part: donePart });
  const doneItem = { ...item, status: 'completed', content: [donePart] };
  await ev('response.output_item.done', { response_id: rid, output_index: 0, item: doneItem });
  const usage = realtimeUsage(c.usage);
  rec.responses.push(usage);
  await ev('response.done', { response: { ...base, status: 'completed', status_details: null, output: [doneItem], usage } });
}

export function startMockRealtime(opts = {}) {
  return startMock({ name: 'openai_realtime', config: defaultConfig, credentials, http: httpHandler, handshake, ws: wsHandler, selectProtocol, tls: opts.tls });
}
