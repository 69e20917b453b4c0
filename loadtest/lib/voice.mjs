// voice.mjs - the two voice sockets the scenarios share:
//
// ElevenLabs stream-input (`ttsSession`): the SDK (@elevenlabs/elevenlabs-js)
// has no client for this WebSocket, so it is driven with `ws` exactly as
// ElevenLabs documents it (PROVIDERS.md §2.3): a first message with " " and
// the voice settings, text pieces, {"text":""} (EOS), audio messages and
// {"isFinal":true} back, then the server's close. The proxy key goes in
// xi-api-key on the handshake.
//
// Deepgram live (`deepgramLive`): the official @deepgram/sdk
// (listen.v1.connect), PCM16 16 kHz, Results and Metadata back.
import { DeepgramClient } from '@deepgram/sdk';
import { wsConnect, closeWithin } from './wsconn.mjs';
import { closeKind, failure, wsErrorKind } from './errors.mjs';
import { waitEvent, onAbort } from './runner.mjs';

// Characters ElevenLabs bills for text of `codePoints` code points with
// `model` (PROVIDERS.md §2.1): half, rounded up, for Flash and Turbo v2.5.
export function elevenBilled(model, codePoints) {
  return /turbo|flash/.test(model) ? Math.ceil(codePoints / 2) : codePoints;
}

// One stream-input session: sends the pieces `text` yields (an async
// iterable, e.g. an LLM stream), then EOS; resolves with { ok,
// firstAudioAt, firstTextAt, bytes } after the server closed. Failures are
// counted under `op`. `opened` (optional) is awaited: the socket is opened
// before the first text is ready, as an agent does.
export async function ttsSession(env, { sid, op, signal, text }) {
  const { opts, metrics, ledger } = env;
  const voice = encodeURIComponent(opts.voice);
  const q = new URLSearchParams({ model_id: opts.ttsModel, output_format: 'pcm_16000' });
  const c = wsConnect(`${env.ws}/elevenlabs/v1/text-to-speech/${voice}/stream-input?${q}`, {
    headers: { 'xi-api-key': env.key, 'X-Session-Id': sid },
    timeoutMs: opts.timeout * 1000,
    signal,
  });
  const t0 = performance.now();
  let firstAudioAt = null;
  let firstTextAt = null;
  let bytes = 0;
  let final = false;
  let serverError = null;
  const finalSeen = waitEvent(signal, opts.timeout * 1000, 'isFinal');
  c.onJson((j) => {
    if (!j) return;
    if (typeof j.audio === 'string' && j.audio.length) {
      if (firstAudioAt === null) firstAudioAt = performance.now();
      bytes += Math.floor((j.audio.length * 3) / 4);
    }
    if (j.isFinal === true) {
      final = true;
      finalSeen.resolve();
    }
    if (j.error || (j.message && !j.audio)) serverError = serverError || j;
  });
  try {
    await c.opened;
  } catch (e) {
    metrics.fail(op, e.kind || wsErrorKind(e), e.message);
    ledger.socketUnknown(sid, 'elevenlabs');
    c.terminate();
    return { ok: false };
  }
  const group = ledger.socketOpened(sid, 'elevenlabs');
  let codePoints = 0;
  const send = (msg) => {
    c.send(msg);
    codePoints += [...msg.text].length;
  };
  try {
    send({ text: ' ', voice_settings: { stability: 0.5, similarity_boost: 0.8 }, generation_config: { chunk_length_schedule: [50, 90, 120, 150] } });
    for await (const piece of text) {
      if (!c.isOpen()) break;
      if (!piece) continue;
      if (firstTextAt === null) firstTextAt = performance.now();
      send({ text: piece, try_trigger_generation: true });
    }
    if (c.isOpen()) send({ text: '' });
    if (c.isOpen()) await Promise.race([finalSeen.promise, c.closed]);
  } catch (e) {
    // Counted with the close below.
    serverError = serverError || { message: e.message, kind: e.kind };
  }
  const closed = await closeWithin(c, opts.timeout * 1000);
  group.characters += elevenBilled(opts.ttsModel, codePoints);
  const end = performance.now();
  const start = firstTextAt ?? t0;
  if (closed === null) metrics.fail(op, 'timeout: close', 'the stream-input socket did not close');
  else if (closed.code !== 1000) metrics.fail(op, closeKind(closed.code, closed.reason), serverError ? JSON.stringify(serverError) : closed.reason);
  else if (serverError?.kind) metrics.fail(op, serverError.kind, serverError.message);
  else if (!final) metrics.fail(op, 'no isFinal', 'the socket closed without {"isFinal":true}');
  else if (firstAudioAt === null) metrics.fail(op, 'no audio', 'the socket closed without audio');
  else {
    metrics.ok(op, { ttfbMs: firstAudioAt - start, totalMs: end - start, bytes, audioSeconds: bytes / 32000 });
    return { ok: true, firstAudioAt, firstTextAt, bytes };
  }
  return { ok: false, firstAudioAt, firstTextAt, bytes };
}

// Pieces of `text` a few words at a time, one every `everyMs` (an LLM's
// pace), as an async iterable.
export async function* paceWords(text, { words = 3, everyMs = 40, signal } = {}) {
  const w = text.split(/(?<= )/);
  for (let i = 0; i < w.length; i += words) {
    if (signal?.aborted) return;
    if (i) await new Promise((r) => setTimeout(r, everyMs));
    yield w.slice(i, i + words).join('');
  }
}

// A Deepgram live socket through the official SDK. Resolves once open with
// { conn, onResult(fn), finalize() → Promise<final transcript>, close() →
// Promise<{ metadata, code }> } or throws an error with .kind.
export async function deepgramLive(env, { sid, signal }) {
  const { opts } = env;
  const dg = new DeepgramClient({
    apiKey: env.key,
    environment: { base: `${env.http}/deepgram`, production: `${env.ws}/deepgram`, agent: `${env.ws}/deepgram`, agentRest: `${env.http}/deepgram` },
  });
  const conn = await dg.listen.v1.connect({
    model: opts.sttModel,
    encoding: 'linear16',
    sample_rate: 16000,
    channels: 1,
    interim_results: 'true',
    headers: { 'X-Session-Id': sid },
    reconnectAttempts: 0, // one attempt: a load test counts a refusal, it does not retry it
    connectionTimeoutInSeconds: opts.timeout,
  });
  const s = {
    conn,
    metadata: null,
    firstResultAt: null,
    results: 0,
    error: null,
    waiters: [],
    closeEvent: null,
  };
  const closed = new Promise((resolve) => conn.on('close', (ev) => {
    s.closeEvent = ev;
    for (const w of s.waiters.splice(0)) w.reject(failure(closeKind(ev?.code, ev?.reason)));
    resolve(ev);
  }));
  conn.on('message', (m) => {
    if (m?.type === 'Results') {
      s.results++;
      if (s.firstResultAt === null) s.firstResultAt = performance.now();
      if (m.from_finalize === true) {
        const w = s.waiters.shift();
        if (w) w.resolve(m.channel?.alternatives?.[0]?.transcript ?? '');
      }
    } else if (m?.type === 'Metadata') {
      s.metadata = m;
    }
  });
  let dispose = () => {};
  const opened = new Promise((resolve, reject) => {
    conn.on('open', resolve);
    conn.on('error', (e) => {
      s.error = e;
      reject(Object.assign(e, { kind: wsErrorKind(e) }));
    });
    dispose = onAbort(signal, () => reject(failure('aborted at run deadline: connecting')));
  });
  opened.then(dispose, dispose);
  conn.connect();
  await opened;
  s.send = (buf) => {
    if (conn.readyState === 1) conn.sendMedia(buf);
  };
  s.isOpen = () => conn.readyState === 1;
  // Ends the utterance: the final transcript of what was sent.
  s.finalize = () => {
    const w = waitEvent(signal, opts.timeout * 1000, 'final Results after Finalize');
    s.waiters.push(w);
    conn.sendFinalize({ type: 'Finalize' });
    return w.promise;
  };
  // CloseStream, then Deepgram's Metadata and close (bounded).
  s.close = async () => {
    if (conn.readyState === 1) conn.sendCloseStream({ type: 'CloseStream' });
    let t;
    const timer = new Promise((resolve) => { t = setTimeout(() => resolve(null), opts.timeout * 1000); });
    const ev = await Promise.race([closed, timer]);
    clearTimeout(t);
    if (ev === null) conn.close();
    return { timedOut: ev === null, code: ev?.code, reason: ev?.reason, metadata: s.metadata };
  };
  return s;
}
