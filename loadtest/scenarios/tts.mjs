// tts.mjs - `tts-stream`: ElevenLabs stream-input sessions through the
// proxy. Each iteration opens one socket, sends a reply of about
// --tts-chars characters a few words at a time at an LLM's pace, then EOS,
// and receives the audio until isFinal and the server's close.
//
// Operation `tts`: TTFB = first text sent → first audio; total = → close.
import { ttsSession, paceWords } from '../lib/voice.mjs';

const SENTENCES = [
  'Thanks for calling, I can help you with that. ',
  'Your appointment is confirmed for Tuesday at ten in the morning. ',
  'The order left our warehouse yesterday and should arrive tomorrow. ',
  'Let me check that for you, it will only take a moment. ',
  'Is there anything else I can do for you today? ',
];

export function replyText(n, chars) {
  let s = '';
  for (let i = 0; s.length < chars; i++) s += SENTENCES[(n + i) % SENTENCES.length];
  return s;
}

export default {
  name: 'tts-stream',
  primary: 'tts',
  describe: (o) => `ElevenLabs stream-input sessions (${o.ttsModel}, voice ${o.voice}), ~${o.ttsChars} characters each at an LLM's pace`,
  maxIterationS: (o) => 3 * o.timeout,
  create(env) {
    const { opts, metrics } = env;
    return async (vu, { signal }) => {
      vu.op = 'tts';
      const sid = env.newSession(vu);
      metrics.sessionOpened();
      try {
        await ttsSession(env, { sid, op: 'tts', signal, text: paceWords(replyText(vu.id + vu.n, opts.ttsChars), { signal }) });
      } finally {
        metrics.sessionClosed();
      }
    };
  },
};
