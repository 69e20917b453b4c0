// chat.mjs - OpenAI chat.completions through the proxy with the official
// SDK: each virtual user holds a conversation of --turns requests (one
// X-Session-Id, the history growing as a chat's does, capped), then starts
// the next. --stream: SSE with stream_options.include_usage. One
// iteration = one request.
import { llmClient, chatOnce } from '../lib/llm.mjs';

const QUESTIONS = [
  'What are your opening hours on Saturday?',
  'Can I move my appointment to next week?',
  'Do you deliver to the city centre?',
  'How do I reset my password?',
  'Is there a student discount?',
  'What is the status of order 4471?',
];

export default {
  name: 'chat',
  primary: 'chat',
  describe: (o) => `OpenAI chat.completions (${o.stream ? 'streamed' : 'not streamed'}, model ${o.model}), conversations of ${o.turns} request(s)`,
  // The longest one iteration may take: its request's timeout.
  maxIterationS: (o) => o.timeout,
  create(env) {
    const { opts } = env;
    return async (vu, { signal }) => {
      vu.op = 'chat';
      if (!vu.llm) vu.llm = llmClient(env);
      if (!vu.conv || vu.conv.turns >= opts.turns) {
        vu.conv = {
          sid: env.newSession(vu),
          turns: 0,
          messages: [{ role: 'system', content: 'You are a helpful assistant of a small shop. Answer in one or two sentences.' }],
        };
      }
      const c = vu.conv;
      c.messages.push({ role: 'user', content: QUESTIONS[(vu.id + c.turns) % QUESTIONS.length] });
      c.turns++;
      // For chat an "active session" is a request in flight.
      env.metrics.sessionOpened();
      let r;
      try {
        r = await chatOnce(env, vu.llm, { op: 'chat', sid: c.sid, messages: c.messages, stream: opts.stream, signal });
      } finally {
        env.metrics.sessionClosed();
      }
      if (r) c.messages.push({ role: 'assistant', content: r.text });
      else c.messages.pop();
      // A chat keeps its recent history, not all of it.
      if (c.messages.length > 9) c.messages.splice(1, 2);
    };
  },
};
