// llm.mjs - one OpenAI chat completion through the proxy with the official
// SDK (stream or not), measured and noted in the ledger. Shared by the
// `chat` and `voice-agent` scenarios.
import OpenAI from 'openai';
import { httpErrorKind } from './errors.mjs';
import { onAbort } from './runner.mjs';

// One client per virtual user: it runs one request at a time, so the
// fetch wrapper's stamp is the time its current reply's head arrived.
export function llmClient(env) {
  const stamp = { at: 0 };
  const client = new OpenAI({
    apiKey: env.key,
    baseURL: `${env.http}/v1`,
    maxRetries: 0, // a load test counts what failed; it does not hide it behind retries
    timeout: env.opts.timeout * 1000,
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      stamp.at = performance.now();
      return r;
    },
  });
  return { client, stamp };
}

// Returns { text, usage } or null when it failed (the failure is counted
// under `op`). TTFB: first content token (stream) or the reply's head
// (non-stream). onDelta(text) gets each streamed piece as it arrives.
export async function chatOnce(env, llm, { op, sid, messages, stream, signal, onDelta }) {
  const { metrics, ledger, opts } = env;
  const t0 = performance.now();
  let firstAt = null;
  let text = '';
  let usage = null;
  let id = null;
  const body = { model: opts.model, messages, max_completion_tokens: opts.maxTokens };
  // A signal of the request's own, tied to the run's: the SDK never takes
  // its listener off the signal it is given, and the run's signal lives as
  // long as the run.
  const ac = new AbortController();
  const dispose = onAbort(signal, () => ac.abort());
  const reqOpts = { headers: { 'X-Session-Id': sid }, signal: ac.signal };
  try {
    if (stream) {
      const { data, response } = await llm.client.chat.completions
        .create({ ...body, stream: true, stream_options: { include_usage: true } }, reqOpts).withResponse();
      id = response.headers.get('x-proxy-request-id');
      for await (const chunk of data) {
        const d = chunk.choices?.[0]?.delta?.content;
        if (d) {
          if (firstAt === null) firstAt = performance.now();
          text += d;
          if (onDelta) onDelta(d);
        }
        if (chunk.usage) usage = chunk.usage;
      }
      if (firstAt === null) firstAt = performance.now();
    } else {
      const { data, response } = await llm.client.chat.completions.create(body, reqOpts).withResponse();
      firstAt = llm.stamp.at || performance.now();
      id = response.headers.get('x-proxy-request-id');
      text = data.choices?.[0]?.message?.content || '';
      usage = data.usage || null;
      if (onDelta && text) onDelta(text);
    }
  } catch (e) {
    dispose();
    const hid = id || e?.headers?.get?.('x-proxy-request-id');
    if (hid) ledger.httpRecord(sid, hid, { status: e?.status });
    else if (typeof e?.status !== 'number') ledger.httpUnknown(sid);
    metrics.fail(op, httpErrorKind(e), e?.message);
    return null;
  }
  dispose();
  if (!id) {
    ledger.httpUnknown(sid);
    metrics.fail(op, 'reply without x-proxy-request-id', 'the proxy names the record of every reply it relays');
    return null;
  }
  ledger.httpRecord(sid, id, { usage, status: 200 });
  const end = performance.now();
  metrics.ok(op, { ttfbMs: firstAt - t0, totalMs: end - t0, bytes: Buffer.byteLength(text) });
  return { text, usage };
}
