// anthropic.mjs - a local stand-in for api.anthropic.com (PROVIDERS.md §4.4):
// POST /v1/messages non-stream (usage) and stream (message_start with usage,
// content_block_*, ping, message_delta with cumulative output_tokens,
// message_stop), POST /v1/messages/count_tokens, GET /v1/models. Key:
// x-api-key (or Authorization: Bearer). Errors
// {"type":"error","error":{"type","message"},"request_id"}.
import { startMock, header, authToken, SSE_HEADERS } from './base.mjs';

function defaultConfig() {
  return {
    messages: {
      input_tokens: 21,
      output_tokens: 7,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 3,
      deltas: ['Hello', ' from', ' the mock'],
    },
  };
}

export function anthropicError(type, message, requestId) {
  return { type: 'error', error: { type, message }, request_id: requestId };
}

function credentials(rec) {
  const out = [];
  const k = header(rec, 'x-api-key');
  if (k !== undefined) out.push({ in: 'header', name: 'x-api-key', value: k });
  const b = authToken(rec, 'Bearer');
  if (b !== undefined) out.push({ in: 'header', name: 'authorization', value: b });
  return out;
}

function usage(c, outputTokens = c.output_tokens) {
  return {
    input_tokens: c.input_tokens,
    cache_creation_input_tokens: c.cache_creation_input_tokens,
    cache_read_input_tokens: c.cache_read_input_tokens,
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
}

// The named SSE events of a Messages stream, as Anthropic sends them.
// message_delta carries the cumulative output_tokens (c.output_tokens).
export function messageStreamEvents(rec, c) {
  const model = rec.json?.model || 'claude-sonnet-4-5';
  const id = `msg_mock${rec.n}`;
  const ev = (type, o) => `event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`;
  const list = [
    ev('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: usage(c, 1) } }),
    ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    ev('ping', {}),
  ];
  for (const d of c.deltas) list.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: d } }));
  list.push(ev('content_block_stop', { index: 0 }));
  list.push(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: c.output_tokens } }));
  list.push(ev('message_stop', {}));
  return list;
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  const hdr = { 'request-id': rec.requestId };
  const key = mock.keyOf(rec);
  if (!mock.authorized(rec)) {
    const msg = key === undefined ? 'x-api-key header is required' : 'invalid x-api-key';
    return ctx.json(401, anthropicError('authentication_error', msg, rec.requestId), hdr);
  }
  const c = mock.config.messages;
  if (rec.method === 'POST' && rec.path === '/v1/messages') {
    if (!rec.json || typeof rec.json.max_tokens !== 'number') {
      return ctx.json(400, anthropicError('invalid_request_error', 'max_tokens: Field required', rec.requestId), hdr);
    }
    if (rec.json.stream) {
      ctx.head(200, { ...SSE_HEADERS, ...hdr });
      for (const e of messageStreamEvents(rec, c)) await ctx.write(e);
      return ctx.end();
    }
    return ctx.json(200, {
      id: `msg_mock${rec.n}`, type: 'message', role: 'assistant', model: rec.json.model,
      content: [{ type: 'text', text: c.deltas.join('') }],
      stop_reason: 'end_turn', stop_sequence: null, usage: usage(c),
    }, hdr);
  }
  if (rec.method === 'POST' && rec.path === '/v1/messages/count_tokens') {
    return ctx.json(200, { input_tokens: c.input_tokens }, hdr);
  }
  if (rec.method === 'GET' && rec.path === '/v1/models') {
    return ctx.json(200, { data: [{ type: 'model', id: 'claude-sonnet-4-5', display_name: 'Claude Sonnet 4.5', created_at: '2025-09-29T00:00:00Z' }], has_more: false, first_id: 'claude-sonnet-4-5', last_id: 'claude-sonnet-4-5' }, hdr);
  }
  return ctx.json(404, anthropicError('not_found_error', `mock: no route ${rec.method} ${rec.path}`, rec.requestId), hdr);
}

export function startMockAnthropic(opts = {}) {
  return startMock({ name: 'anthropic', config: defaultConfig, credentials, http: httpHandler, tls: opts.tls });
}
