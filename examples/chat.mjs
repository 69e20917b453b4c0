// chat.mjs - the README's "Try it": the official OpenAI SDK pointed at the
// proxy (base URL and proxy key are all that change). One reply whole, one
// streamed, each with the usage the provider reported and the headers the
// proxy adds (who pays, and the record's id).
//
//   PROXY_KEY=bpk_... node examples/chat.mjs
import OpenAI from 'openai';

if (!process.env.PROXY_KEY) {
  console.error('set PROXY_KEY to a proxy key (POST /admin/tenants/{id}/keys shows it once)');
  process.exit(2);
}
const openai = new OpenAI({
  baseURL: process.env.PROXY_URL || 'http://127.0.0.1:8080/v1',
  apiKey: process.env.PROXY_KEY,
  maxRetries: 0,
});
const messages = [{ role: 'user', content: 'Say hello to a new user of byok-proxy.' }];

const { data: reply, response } = await openai.chat.completions
  .create({ model: 'gpt-4o-mini', messages })
  .withResponse();
console.log(`reply:  ${reply.choices[0].message.content}`);
console.log(`usage:  ${JSON.stringify(reply.usage)}`);
console.log(`billed: ${response.headers.get('x-billed-to')}, record ${response.headers.get('x-proxy-request-id')}`);

const stream = await openai.chat.completions.create({
  model: 'gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true },
});
process.stdout.write('stream: ');
let usage = null;
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  if (chunk.usage) usage = chunk.usage;
}
console.log(`\nusage:  ${JSON.stringify(usage)}`);
