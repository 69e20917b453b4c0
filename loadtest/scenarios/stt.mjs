// stt.mjs - `stt-live`: Deepgram live sessions through the proxy with the
// official SDK. Each session lasts --call-seconds: PCM16 16 kHz streamed at
// real time, --utterance seconds of speech then Finalize and silence until
// the final transcript is back, again and again; then CloseStream, Results
// and Metadata, and Deepgram's close.
//
// Operations: `final` (Finalize → the final Results: how long after the
// speaker stops the transcript is there), `session` (TTFB: connect →
// first Results; total: the session).
import { PcmSource } from '../lib/audio.mjs';
import { paced } from '../lib/runner.mjs';
import { deepgramLive } from '../lib/voice.mjs';
import { wsErrorKind, closeKind } from '../lib/errors.mjs';

const FRAME_MS = 100;

export default {
  name: 'stt-live',
  primary: 'final',
  describe: (o) => `Deepgram live sessions of ${o.callSeconds} s (${o.sttModel}), PCM16 16 kHz at real time, Finalize after every ${o.utterance} s of speech`,
  maxIterationS: (o) => o.callSeconds + 2 * o.timeout,
  create(env) {
    const { opts, metrics, ledger } = env;
    const mic = new PcmSource(16000, FRAME_MS);
    const utterFrames = Math.max(1, Math.round((opts.utterance * 1000) / FRAME_MS));
    return async (vu, { signal, stopping }) => {
      vu.op = 'session';
      const sid = env.newSession(vu);
      const t0 = performance.now();
      let s;
      try {
        s = await deepgramLive(env, { sid, signal });
      } catch (e) {
        metrics.fail('session', e.kind || wsErrorKind(e), e.message);
        ledger.socketUnknown(sid, 'deepgram');
        return;
      }
      const group = ledger.socketOpened(sid, 'deepgram');
      metrics.sessionOpened();
      try {
        let spoken = 0;
        let waiting = null; // the pending final, while silence streams
        const callFrames = Math.round((opts.callSeconds * 1000) / FRAME_MS);
        const finals = [];
        const sent = await paced({
          frameMs: FRAME_MS,
          frames: callFrames,
          signal,
          shouldStop: () => !s.isOpen() || stopping(),
          send: () => {
            const speaking = waiting === null;
            s.send(mic.frame(spoken, speaking));
            if (!speaking) return;
            spoken++;
            if (spoken % utterFrames === 0) {
              const at = performance.now();
              waiting = s.finalize().then(() => {
                const ms = performance.now() - at;
                metrics.ok('final', { ttfbMs: ms, totalMs: ms });
              }, (e) => metrics.fail('final', e.kind || 'error', e.message)).finally(() => { waiting = null; });
              finals.push(waiting);
            }
          },
        });
        await Promise.all(finals);
        const end = await s.close();
        if (end.metadata && typeof end.metadata.duration === 'number') group.audioSeconds += end.metadata.duration;
        else group.audioKnown = false;
        if (end.timedOut) metrics.fail('session', 'timeout: close', 'no close after CloseStream');
        else if (end.code !== 1000) metrics.fail('session', closeKind(end.code, end.reason), end.reason);
        else if (!end.metadata) metrics.fail('session', 'no Metadata', 'closed without Metadata');
        else if (sent.frames < callFrames && !stopping()) metrics.fail('session', 'session cut short', `${sent.frames} of ${callFrames} frames sent`);
        else metrics.ok('session', { ttfbMs: (s.firstResultAt ?? performance.now()) - t0, totalMs: performance.now() - t0, audioSeconds: 0 });
      } catch (e) {
        group.audioKnown = false;
        metrics.fail('session', e.kind || `error: ${e.message}`, e.message);
        s.conn.close();
      } finally {
        metrics.sessionClosed();
      }
    };
  },
};
