// voice_agent.mjs - `voice-agent`: what a voice assistant does per call,
// through the proxy, with one X-Session-Id on every call of the
// conversation. A conversation (one iteration) has --turns turns:
//
//   microphone ──► Deepgram live (one socket for the conversation, PCM16
//                  16 kHz at real time the whole call: speech, then silence
//                  while the agent answers)
//   user stops ──► Finalize → final transcript
//              ──► OpenAI chat stream (the conversation so far + transcript)
//              ──► ElevenLabs stream-input (opened with the LLM request; the
//                  LLM's deltas are fed in as they arrive; EOS at the end)
//              ──► audio back
//
// Operations: `turn` (TTFB: the user stopped speaking → first audio byte
// of the reply, the latency a caller hears; total: → the reply's last
// audio), and its parts `stt` (Finalize → final transcript), `llm` (TTFT,
// stream end), `tts` (first text → first audio, → close); `conversation`
// (TTFB: connect → Deepgram open; total: the conversation).
import { PcmSource } from '../lib/audio.mjs';
import { paced, waitEvent } from '../lib/runner.mjs';
import { llmClient, chatOnce } from '../lib/llm.mjs';
import { deepgramLive, ttsSession } from '../lib/voice.mjs';
import { wsErrorKind, closeKind } from '../lib/errors.mjs';

const FRAME_MS = 100;

// An async iterable fed by push(); end() finishes it.
function channel() {
  const q = [];
  let done = false;
  let wake = null;
  return {
    push(v) { q.push(v); if (wake) { wake(); wake = null; } },
    end() { done = true; if (wake) { wake(); wake = null; } },
    async* [Symbol.asyncIterator]() {
      for (;;) {
        if (q.length) { yield q.shift(); continue; }
        if (done) return;
        await new Promise((r) => { wake = r; });
      }
    },
  };
}

export default {
  name: 'voice-agent',
  primary: 'turn',
  describe: (o) => `voice agent conversations of ${o.turns} turn(s): Deepgram live (${o.sttModel}) → OpenAI chat stream (${o.model}) → ElevenLabs stream-input (${o.ttsModel}), ${o.utterance} s utterances`,
  maxIterationS: (o) => o.turns * (o.utterance + 3 * o.timeout) + o.timeout,
  create(env) {
    const { opts, metrics, ledger } = env;
    const mic = new PcmSource(16000, FRAME_MS);
    const utterFrames = Math.max(1, Math.round((opts.utterance * 1000) / FRAME_MS));
    return async (vu, { signal, stopping }) => {
      vu.op = 'conversation';
      if (!vu.llm) vu.llm = llmClient(env);
      const sid = env.newSession(vu);
      const t0 = performance.now();
      let stt;
      try {
        stt = await deepgramLive(env, { sid, signal });
      } catch (e) {
        metrics.fail('conversation', e.kind || wsErrorKind(e), e.message);
        ledger.socketUnknown(sid, 'deepgram');
        return;
      }
      const openedAt = performance.now();
      const group = ledger.socketOpened(sid, 'deepgram');
      metrics.sessionOpened();
      // The microphone: real time for the whole conversation; speech while
      // `speaking`, silence otherwise.
      const mike = { speaking: false, spoken: 0, stop: false, uttered: null };
      const micDone = paced({
        frameMs: FRAME_MS,
        frames: Number.MAX_SAFE_INTEGER,
        signal,
        shouldStop: () => mike.stop || !stt.isOpen(),
        send: () => {
          stt.send(mic.frame(mike.spoken, mike.speaking));
          if (!mike.speaking) return;
          mike.spoken++;
          if (mike.spoken % utterFrames === 0) {
            mike.speaking = false;
            mike.uttered.resolve();
          }
        },
      });
      const messages = [{ role: 'system', content: 'You are a voice assistant on a phone line. Answer in one short sentence.' }];
      let failed = false;
      try {
        for (let t = 0; t < opts.turns && !signal.aborted && !stopping(); t++) {
          // The caller speaks.
          mike.uttered = waitEvent(signal, (opts.utterance + opts.timeout) * 1000, 'utterance sent');
          mike.speaking = true;
          await mike.uttered.promise;
          // The caller stops: the agent's latency starts here.
          const stopAt = performance.now();
          let transcript;
          try {
            transcript = await stt.finalize();
            const ms = performance.now() - stopAt;
            metrics.ok('stt', { ttfbMs: ms, totalMs: ms });
          } catch (e) {
            metrics.fail('stt', e.kind || 'error', e.message);
            metrics.fail('turn', 'stt failed', e.message, { derived: true });
            failed = true;
            break;
          }
          messages.push({ role: 'user', content: transcript || '(inaudible)' });
          // LLM and TTS in a pipeline: the TTS socket opens with the LLM
          // request and speaks the deltas as they come.
          const text = channel();
          const tts = ttsSession(env, { sid, op: 'tts', signal, text });
          const reply = await chatOnce(env, vu.llm, { op: 'llm', sid, messages, stream: true, signal, onDelta: (d) => text.push(d) });
          text.end();
          const spoken = await tts;
          if (!reply || !spoken.ok) {
            metrics.fail('turn', !reply ? 'llm failed' : 'tts failed', 'see the llm/tts rows', { derived: true });
            messages.pop();
            failed = true;
            break;
          }
          messages.push({ role: 'assistant', content: reply.text });
          if (messages.length > 9) messages.splice(1, 2);
          const end = performance.now();
          metrics.ok('turn', { ttfbMs: spoken.firstAudioAt - stopAt, totalMs: end - stopAt, bytes: spoken.bytes, audioSeconds: spoken.bytes / 32000 });
        }
      } catch (e) {
        metrics.fail('turn', e.kind || `error: ${e.message}`, e.message);
        failed = true;
      }
      mike.stop = true;
      await micDone;
      const end = await stt.close();
      if (end.metadata && typeof end.metadata.duration === 'number') group.audioSeconds += end.metadata.duration;
      else group.audioKnown = false;
      if (end.timedOut) metrics.fail('conversation', 'timeout: close', 'no close after CloseStream');
      else if (end.code !== 1000) metrics.fail('conversation', closeKind(end.code, end.reason), end.reason);
      else if (failed) metrics.fail('conversation', 'conversation with a failed turn', 'see the turn row', { derived: true });
      else metrics.ok('conversation', { ttfbMs: openedAt - t0, totalMs: performance.now() - t0 });
      metrics.sessionClosed();
    };
  },
};
