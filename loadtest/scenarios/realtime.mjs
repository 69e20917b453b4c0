// realtime.mjs - `realtime-call`: each virtual user holds OpenAI Realtime
// calls of --call-seconds. The microphone streams PCM16 24 kHz at real time
// the whole call (100 ms input_audio_buffer.append frames: speech for
// --utterance seconds, then silence while the assistant answers); after
// each utterance the client commits and sends response.create, and
// receives the audio deltas and response.done. Turn detection is off
// (session.update), so turns are the client's and the counts exact.
//
// Transport: with the proxy's TLS listener (--proxy-tls https://…) the
// official SDK's OpenAIRealtimeWS (it forces wss); else a raw `ws` client
// speaking the same GA events to ws://…/v1/realtime (what a server-side
// agent does), with the proxy key as Authorization: Bearer.
//
// Operations: `turn` (TTFB: response.create → first audio delta; total: →
// response.done), `call` (TTFB: connect → session.created; total: the call).
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { PcmSource } from '../lib/audio.mjs';
import { paced, waitEvent, onAbort } from '../lib/runner.mjs';
import { wsConnect, closeWithin } from '../lib/wsconn.mjs';
import { wsErrorKind, closeKind, failure } from '../lib/errors.mjs';

const RATE = 24000;
const FRAME_MS = 100;

// Opens a Realtime socket; returns the same small interface either way.
function openRealtime(env, sid, signal) {
  const { opts } = env;
  const headers = { 'X-Session-Id': sid };
  const timeoutMs = opts.timeout * 1000;
  if (env.https && opts.realtimeClient !== 'ws') {
    const client = new OpenAI({ apiKey: env.key, baseURL: `${env.https}/v1`, maxRetries: 0 });
    const rt = new OpenAIRealtimeWS({ model: opts.realtimeModel, options: { ca: env.ca, headers, perMessageDeflate: false, handshakeTimeout: timeoutMs } }, client);
    const c = { transport: 'sdk', status: null };
    rt.on('error', () => {}); // server error events are read from 'event'; socket errors below
    rt.socket.on('unexpected-response', (req, res) => {
      c.status = res.statusCode;
      res.resume();
      req.destroy();
      rt.socket.emit('error', failure(`ws upgrade ${res.statusCode}`));
    });
    c.closed = new Promise((resolve) => rt.socket.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
    let dispose = () => {};
    c.opened = new Promise((resolve, reject) => {
      rt.socket.once('open', resolve);
      rt.socket.once('error', (e) => reject(Object.assign(e, { kind: wsErrorKind(e) })));
      dispose = onAbort(signal, () => reject(failure('aborted at run deadline: connecting')));
    });
    c.opened.then(dispose, dispose);
    c.onEvent = (fn) => rt.on('event', fn);
    c.send = (o) => { if (rt.socket.readyState === 1) rt.send(o); };
    c.isOpen = () => rt.socket.readyState === 1;
    c.close = () => { if (rt.socket.readyState <= 1) rt.close({ code: 1000, reason: 'call ended' }); };
    c.terminate = () => rt.socket.terminate();
    return c;
  }
  const url = `${env.ws}/v1/realtime?model=${encodeURIComponent(opts.realtimeModel)}`;
  const c = wsConnect(url, { headers: { ...headers, Authorization: `Bearer ${env.key}` }, timeoutMs, signal });
  c.transport = 'ws';
  c.onEvent = (fn) => c.onJson((j) => { if (j && typeof j.type === 'string') fn(j); });
  return c;
}

export default {
  name: 'realtime-call',
  primary: 'turn',
  describe: (o, env) => `OpenAI Realtime calls of ${o.callSeconds} s (${o.realtimeModel}; ${env.https && o.realtimeClient !== 'ws' ? 'official SDK OpenAIRealtimeWS over wss' : 'ws client over ws://'}), PCM16 24 kHz at real time, a turn every ${o.utterance} s of speech`,
  maxIterationS: (o) => o.callSeconds + 2 * o.timeout,
  create(env) {
    const { opts, metrics, ledger } = env;
    const mic = new PcmSource(RATE, FRAME_MS);
    const utterFrames = Math.max(1, Math.round((opts.utterance * 1000) / FRAME_MS));
    return async (vu, { signal, stopping }) => {
      vu.op = 'call';
      const sid = env.newSession(vu);
      const t0 = performance.now();
      const c = openRealtime(env, sid, signal);
      const created = waitEvent(signal, opts.timeout * 1000, 'session.created');
      let turn = null; // { start, first, bytes, done }
      let failed = null; // the first error event
      let audioIn = 0;
      let group = null;
      c.onEvent((e) => {
        switch (e.type) {
          case 'session.created':
            created.resolve(performance.now());
            break;
          case 'response.output_audio.delta':
          case 'response.audio.delta':
            if (turn) {
              if (turn.first === null) turn.first = performance.now();
              turn.bytes += Math.floor((e.delta?.length || 0) * 3 / 4);
            }
            break;
          case 'response.done':
            if (turn) {
              const usage = e.response?.usage;
              if (usage && group) group.responses.push(usage);
              const status = e.response?.status;
              if (status && status !== 'completed') metrics.fail('turn', `realtime response ${status}`, JSON.stringify(e.response?.status_details || {}));
              else metrics.ok('turn', { ttfbMs: (turn.first ?? performance.now()) - turn.start, totalMs: performance.now() - turn.start, bytes: turn.bytes, audioSeconds: turn.bytes / (RATE * 2) });
              turn.done.resolve();
              turn = null;
            }
            break;
          case 'error':
            // Counted once, as the call's failure, when the call ends.
            failed = failed || e;
            break;
          default:
        }
      });

      try {
        await c.opened;
      } catch (e) {
        metrics.fail('call', e.kind || wsErrorKind(e), e.message);
        // A refused upgrade may carry an upstream's refusal (a record); no
        // answer at all may have opened upstream: either way, "unknown".
        ledger.socketUnknown(sid, 'openai');
        c.terminate();
        return;
      }
      group = ledger.socketOpened(sid, 'openai');
      metrics.sessionOpened();
      // A close from the other side ends the turn that waits for its answer.
      let turnCut = false;
      c.closed.then((cl) => {
        if (!turn) return;
        turnCut = true;
        turn.done.reject(failure(closeKind(cl.code, cl.reason)));
      });
      try {
        const sessionAt = await created.promise;
        c.send({ type: 'session.update', session: { type: 'realtime', instructions: 'You are a friendly phone assistant. Answer briefly.', audio: { input: { turn_detection: null } } } });
        let spoken = 0;
        const callFrames = Math.round((opts.callSeconds * 1000) / FRAME_MS);
        const sent = await paced({
          frameMs: FRAME_MS,
          frames: callFrames,
          signal,
          shouldStop: () => !c.isOpen() || stopping(),
          send: () => {
            const speaking = turn === null;
            c.send({ type: 'input_audio_buffer.append', audio: mic.frame(spoken, speaking).toString('base64') });
            audioIn++;
            if (!speaking) return;
            spoken++;
            if (spoken % utterFrames === 0) {
              c.send({ type: 'input_audio_buffer.commit' });
              c.send({ type: 'response.create' });
              turn = { start: performance.now(), first: null, bytes: 0, done: waitEvent(signal, opts.timeout * 1000, 'response.done') };
            }
          },
        });
        // The last answer is heard out before hanging up.
        if (turn) {
          try {
            await turn.done.promise;
          } catch (e) {
            metrics.fail('turn', e.kind || 'timeout: response.done', e.message);
            turn = null;
          }
        }
        c.close();
        const closed = await closeWithin(c, opts.timeout * 1000);
        const total = performance.now() - t0;
        if (closed === null) metrics.fail('call', 'timeout: close', 'the socket did not close');
        else if (closed.code !== 1000 && closed.code !== 1005) metrics.fail('call', closeKind(closed.code, closed.reason), closed.reason, { derived: turnCut });
        else if (sent.frames < callFrames && !stopping()) metrics.fail('call', 'call cut short', `${sent.frames} of ${callFrames} frames sent`);
        else if (failed) metrics.fail('call', `realtime error ${failed.error?.code || failed.error?.type || 'error'}`, failed.error?.message);
        else metrics.ok('call', { ttfbMs: sessionAt - t0, totalMs: total });
      } catch (e) {
        metrics.fail(turn ? 'turn' : 'call', e.kind || `error: ${e.message}`, e.message);
        c.close();
        if ((await closeWithin(c, 2000)) === null) c.terminate();
      } finally {
        metrics.sessionClosed();
        vu.audioIn = (vu.audioIn || 0) + audioIn;
      }
    };
  },
};
