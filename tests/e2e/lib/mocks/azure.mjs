// azure.mjs - a local stand-in for Azure AI Speech (PROVIDERS.md §3), all
// regions on one port: everything is served under /{region}/tts/... and
// /{region}/stt/..., so a proxy configured with
// http://127.0.0.1:PORT/{region}/tts shows in rec.region where it routed.
// REST: TTS POST cognitiveservices/v1 (SSML in, audio out), voices list,
// STT short-audio POST speech/recognition/{mode}/cognitiveservices/v1 (WAV in,
// JSON out), token issueToken. WebSocket: the Speech SDK protocol for STT
// (stt/speech/universal/v2 and speech/recognition/{mode}/cognitiveservices/v1)
// and TTS (tts/cognitiveservices/websocket/v1), enough for the official SDK's
// recognizeOnceAsync and speakTextAsync to complete.
// The prefix stands for the host and the real path follows it unchanged, so
// wss://eastus.stt.speech.microsoft.com/stt/speech/universal/v2 is
// ws://127.0.0.1:PORT/eastus/stt/stt/speech/universal/v2 here, and
// https://eastus.tts.speech.microsoft.com/cognitiveservices/v1 is
// http://127.0.0.1:PORT/eastus/tts/cognitiveservices/v1 (azureUrl() builds them).
// Keys are per region: mock.acceptKeys may be a Set (any region) or
// { region: [keys] }; a key of another region gets Azure's 401.
import crypto from 'node:crypto';
import { startMock, header, authToken, pcmSine } from './base.mjs';
import { wavSeconds } from '../util.mjs';

function defaultConfig() {
  return {
    stt: {
      text: 'Hello from the mock.',
      hypothesis: 'hello from',
      // null: the phrase is sent when the client ends the audio (an empty
      // `audio` message); a number: once that many PCM bytes arrived.
      phraseAfterBytes: null,
    },
    tts: { seconds: 0.5, chunks: 3 },
    voices: [
      { Name: 'Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)', DisplayName: 'Jenny', ShortName: 'en-US-JennyNeural', Gender: 'Female', Locale: 'en-US', SampleRateHertz: '24000', VoiceType: 'Neural', Status: 'GA' },
      { Name: 'Microsoft Server Speech Text to Speech Voice (en-US, AvaMultilingualNeural)', DisplayName: 'Ava Multilingual', ShortName: 'en-US-AvaMultilingualNeural', Gender: 'Female', Locale: 'en-US', SampleRateHertz: '24000', VoiceType: 'Neural', Status: 'GA' },
    ],
  };
}

export const AZURE_401 = {
  error: {
    code: '401',
    message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.',
  },
};

// The mock URL standing for https://{region}.{service}.speech.microsoft.com{path}
// (scheme 'http' or 'ws').
export function azureUrl(mock, { region, service, path, scheme = 'http' }) {
  const base = scheme === 'ws' ? mock.wsUrl : scheme === 'wss' ? mock.wssUrl : scheme === 'https' ? mock.httpsUrl : mock.url;
  return `${base}/${region}/${service}${path}`;
}

// Splits /{region}/{tts|stt|sts}/rest into its parts (null if it does not fit).
export function azurePath(path) {
  const m = /^\/([a-z0-9]+)\/(tts|stt|sts)(\/.*)?$/.exec(path);
  return m ? { region: m[1], service: m[2], sub: m[3] || '/' } : null;
}

function credentials(rec) {
  const out = [];
  const h = header(rec, 'ocp-apim-subscription-key');
  if (h !== undefined) out.push({ in: 'header', name: 'Ocp-Apim-Subscription-Key', value: h });
  const b = authToken(rec, 'Bearer');
  if (b !== undefined) out.push({ in: 'header', name: 'authorization', value: b });
  for (const [k, v] of Object.entries(rec.query)) {
    if (k.toLowerCase() === 'ocp-apim-subscription-key') out.push({ in: 'query', name: k, value: v });
    if (k.toLowerCase() === 'authorization') out.push({ in: 'query', name: k, value: v.replace(/^Bearer /, '') });
  }
  return out;
}

function keyOk(mock, rec) {
  if (!mock.acceptKeys) return true;
  const keys = rec.credentials.map((c) => c.value);
  if (keys.length === 0) return false;
  const a = mock.acceptKeys;
  const set = a instanceof Set ? a : Array.isArray(a) ? new Set(a) : new Set(a[rec.region] || []);
  // Every credential the request carries must be good: a proxy that left a
  // stale key next to the injected one is caught here.
  return keys.every((k) => set.has(k) || (mock.tokens.get(k) === rec.region));
}

// Characters Azure bills for SSML: the text nodes (markup is free).
export function ssmlCharacters(ssml) {
  const text = ssml.replace(/<[^>]*>/g, '').replace(/&(lt|gt|amp|quot|apos);/g, '_');
  return [...text].length;
}

function makeWavHeader(dataLen, rate = 16000) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + dataLen, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(dataLen, 40);
  return h;
}

// The audio Azure returns for `format` (X-Microsoft-OutputFormat / SDK
// outputFormat): PCM sine, with a RIFF header for riff-* formats.
export function azureAudio(format, seconds) {
  const rate = Number(/(\d+)khz/.exec(format || '')?.[1] || 16) * 1000;
  const pcm = pcmSine(seconds, rate);
  return (format || '').startsWith('riff-') ? Buffer.concat([makeWavHeader(pcm.length, rate), pcm]) : pcm;
}

async function httpHandler(ctx) {
  const { rec, mock } = ctx;
  const p = azurePath(rec.path);
  if (!p) return ctx.json(404, { error: { code: '404', message: `mock: not under /{region}/tts|stt: ${rec.path}` } });
  Object.assign(rec, p);
  if (p.service === 'sts' && rec.method === 'POST' && p.sub === '/v1.0/issueToken') {
    if (!keyOk(mock, rec)) return ctx.json(401, AZURE_401);
    const token = `azure-token-${p.region}-${crypto.randomBytes(6).toString('hex')}`;
    mock.tokens.set(token, p.region);
    ctx.head(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(token) });
    return ctx.end(token);
  }
  if (!keyOk(mock, rec)) return ctx.json(401, AZURE_401);
  if (p.service === 'tts' && rec.method === 'POST' && p.sub === '/cognitiveservices/v1') {
    const ct = header(rec, 'content-type') || '';
    if (!ct.startsWith('application/ssml+xml')) return ctx.json(415, { error: { code: '415', message: 'Unsupported Media Type' } });
    const ssml = rec.body.toString('utf8');
    if (!/<speak[\s>]/.test(ssml)) {
      ctx.head(400, { 'content-length': 0 });
      return ctx.end();
    }
    rec.ssml = ssml;
    rec.characters = ssmlCharacters(ssml);
    const fmt = header(rec, 'x-microsoft-outputformat') || 'riff-16khz-16bit-mono-pcm';
    rec.outputFormat = fmt;
    const audio = azureAudio(fmt, mock.config.tts.seconds);
    const type = fmt.startsWith('riff-') ? 'audio/x-wav' : fmt.includes('mp3') ? 'audio/mpeg' : 'audio/x-raw';
    ctx.head(200, { 'content-type': type, 'transfer-encoding': 'chunked', 'x-requestid': rec.requestId });
    const step = Math.ceil(audio.length / mock.config.tts.chunks);
    for (let i = 0; i < audio.length; i += step) await ctx.write(audio.subarray(i, i + step));
    return ctx.end();
  }
  if (p.service === 'tts' && rec.method === 'GET' && p.sub === '/cognitiveservices/voices/list') {
    return ctx.json(200, mock.config.voices);
  }
  const stt = /^\/speech\/recognition\/(conversation|interactive|dictation)\/cognitiveservices\/v1$/.exec(p.sub);
  if (p.service === 'stt' && rec.method === 'POST' && stt) {
    rec.mode = stt[1];
    rec.uploadSeconds = wavSeconds(rec.body);
    const ticks = Math.round((rec.uploadSeconds ?? 1) * 1e7);
    const body = { RecognitionStatus: 'Success', DisplayText: mock.config.stt.text, Offset: 500000, Duration: Math.max(ticks - 500000, 0) };
    if (rec.query.format === 'detailed') {
      body.NBest = [{ Confidence: 0.97, Lexical: mock.config.stt.text.toLowerCase(), ITN: mock.config.stt.text, MaskedITN: mock.config.stt.text, Display: mock.config.stt.text }];
    }
    return ctx.json(200, body);
  }
  return ctx.json(404, { error: { code: '404', message: `mock: no route ${rec.method} ${rec.path}` } });
}

const STT_WS = /^\/(stt\/speech\/universal\/v2|speech\/recognition\/(interactive|conversation|dictation)\/cognitiveservices\/v1)$/;
const TTS_WS = /^\/tts\/cognitiveservices\/websocket\/v1$/;

function handshake({ mock, rec }) {
  const p = azurePath(rec.path);
  if (!p) return { status: 404, body: '' };
  Object.assign(rec, p);
  const ok = (p.service === 'stt' && STT_WS.test(p.sub)) || (p.service === 'tts' && TTS_WS.test(p.sub));
  if (!ok) return { status: 404, body: '' };
  if (!keyOk(mock, rec)) return { status: 401, body: AZURE_401 };
  return null;
}

// ---- Speech SDK WebSocket framing ----

// Parses one Speech SDK frame: { path, headers (lower-case names), body
// (string for text, Buffer for binary) }.
export function parseSpeechFrame(m) {
  let headText;
  let body;
  if (m.binary) {
    const hl = m.data.readUInt16BE(0);
    headText = m.data.subarray(2, 2 + hl).toString('latin1');
    body = m.data.subarray(2 + hl);
  } else {
    const i = m.text.indexOf('\r\n\r\n');
    headText = i === -1 ? m.text : m.text.slice(0, i);
    body = i === -1 ? '' : m.text.slice(i + 4);
  }
  const headers = {};
  for (const line of headText.split('\r\n')) {
    const c = line.indexOf(':');
    if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
  }
  return { path: (headers.path || '').toLowerCase(), headers, body };
}

function frameHeaders(path, requestId, extra = {}) {
  const h = { Path: path, 'X-RequestId': requestId, 'X-Timestamp': new Date().toISOString(), ...extra };
  return Object.entries(h).map(([k, v]) => `${k}:${v}`).join('\r\n');
}

export function speechTextFrame(path, requestId, body, contentType = 'application/json; charset=utf-8') {
  const b = typeof body === 'string' ? body : JSON.stringify(body);
  return `${frameHeaders(path, requestId, { 'Content-Type': contentType })}\r\n\r\n${b}`;
}

export function speechBinaryFrame(path, requestId, payload, extra = {}) {
  const head = Buffer.from(`${frameHeaders(path, requestId, extra)}\r\n`, 'latin1');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(head.length);
  return Buffer.concat([len, head, payload]);
}

const serviceTag = () => crypto.randomBytes(16).toString('hex');

async function wsHandler(ctx) {
  const { rec } = ctx;
  rec.frames = []; // parsed frames received, in order (binary bodies: length only)
  if (rec.service === 'stt') return sttSession(ctx);
  return ttsSession(ctx);
}

// STT: per request id, turn.start + speech.startDetected on the first audio,
// a hypothesis after the first PCM, then endDetected + phrase + turn.end when
// the audio ends (or phraseAfterBytes arrived). rec.audioBytes counts PCM
// bytes (WAV header excluded), rec.audioSeconds = bytes ÷ byte rate.
async function sttSession(ctx) {
  const { rec, mock } = ctx;
  rec.audioBytes = 0;
  rec.audioSeconds = 0;
  rec.turns = 0;
  const turns = new Map();
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    const f = parseSpeechFrame(m);
    rec.frames.push({ path: f.path, headers: f.headers, body: m.binary ? f.body.length : f.body });
    const rid = f.headers['x-requestid'];
    if (f.path !== 'audio' || !rid) continue;
    let t = turns.get(rid);
    if (!t) {
      t = { bytes: 0, byteRate: 32000, hyp: false, phrased: false, ended: false };
      turns.set(rid, t);
      rec.turns++;
      await ctx.send(speechTextFrame('turn.start', rid, { context: { serviceTag: serviceTag() } }));
      await ctx.send(speechTextFrame('speech.startDetected', rid, { Offset: 0 }));
    }
    let pcm = f.body;
    if (pcm.length >= 44 && pcm.toString('latin1', 0, 4) === 'RIFF') {
      t.byteRate = pcm.readUInt32LE(28) || t.byteRate;
      pcm = pcm.subarray(44);
    }
    t.bytes += pcm.length;
    rec.audioBytes += pcm.length;
    t.counted = t.bytes / t.byteRate;
    rec.audioSeconds = [...turns.values()].reduce((a, x) => a + (x.counted || 0), 0);
    const ticks = Math.round((t.bytes / t.byteRate) * 1e7);
    if (pcm.length > 0 && !t.hyp) {
      t.hyp = true;
      await ctx.send(speechTextFrame('speech.hypothesis', rid, { Text: mock.config.stt.hypothesis, Offset: 0, Duration: ticks }));
    }
    const after = mock.config.stt.phraseAfterBytes;
    const endOfAudio = f.body.length === 0;
    if (!t.phrased && (endOfAudio || (after !== null && t.bytes >= after))) {
      t.phrased = true;
      await ctx.send(speechTextFrame('speech.endDetected', rid, { Offset: ticks }));
      await ctx.send(speechTextFrame('speech.phrase', rid, { RecognitionStatus: 'Success', DisplayText: mock.config.stt.text, Offset: 0, Duration: ticks }));
      await ctx.send(speechTextFrame('turn.end', rid, {}));
    }
  }
}

// TTS: on each `ssml` message: turn.start, response (stream id), the audio in
// binary `audio` frames, audio.metadata (session end), turn.end.
// rec.ssml / rec.characters: what was asked (characters as billed).
async function ttsSession(ctx) {
  const { rec, mock } = ctx;
  rec.ssml = [];
  rec.characters = 0;
  let format = 'raw-16khz-16bit-mono-pcm';
  for (;;) {
    const m = await ctx.next();
    if (m === null) return;
    const f = parseSpeechFrame(m);
    rec.frames.push({ path: f.path, headers: f.headers, body: m.binary ? f.body.length : f.body });
    const rid = f.headers['x-requestid'];
    if (f.path === 'synthesis.context') {
      try { format = JSON.parse(f.body).synthesis?.audio?.outputFormat || format; } catch { /* keep default */ }
      rec.outputFormat = format;
      continue;
    }
    if (f.path !== 'ssml' || !rid) continue;
    rec.ssml.push(f.body);
    rec.characters += ssmlCharacters(f.body);
    const streamId = crypto.randomBytes(16).toString('hex').toUpperCase();
    const tag = serviceTag();
    await ctx.send(speechTextFrame('turn.start', rid, { context: { serviceTag: tag } }));
    await ctx.send(speechTextFrame('response', rid, { context: { serviceTag: tag }, audio: { type: 'inline', streamId } }));
    const audio = azureAudio(format.replace(/^riff-/, 'raw-'), mock.config.tts.seconds);
    const step = Math.ceil(audio.length / mock.config.tts.chunks);
    for (let i = 0; i < audio.length; i += step) {
      await ctx.send(speechBinaryFrame('audio', rid, audio.subarray(i, i + step), { 'X-StreamId': streamId }));
    }
    await ctx.send(speechTextFrame('audio.metadata', rid, { Metadata: [{ Type: 'SessionEnd', Data: { Offset: Math.round(mock.config.tts.seconds * 1e7) } }] }));
    await ctx.send(speechTextFrame('turn.end', rid, {}));
  }
}

export async function startMockAzure(opts = {}) {
  const mock = await startMock({ name: 'azure_speech', config: defaultConfig, credentials, http: httpHandler, handshake, ws: wsHandler, tls: opts.tls });
  mock.tokens = new Map(); // issued token -> region
  return mock;
}
