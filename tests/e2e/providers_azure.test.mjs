// providers_azure.test.mjs - the /azure/tts and /azure/stt REST routes (DESIGN
// §3.5, §4) through the real binary against the recording Azure mock (all
// regions on one port under /{region}/tts|stt): the upstream region is the
// BYOK connection's or the platform key's and nothing in the request can
// choose another (Host, path tricks, query, headers); hostile regions are
// refused when a connection is saved; the proxy key is taken from the
// Ocp-Apim-Subscription-Key header or query parameter and removed from both;
// TTS characters (SSML text) and STT audio seconds (uploaded WAV) in the
// records; the voices list as an unmetered record; 401 in Azure's shape.
// Driven with fetch/raw HTTP: the Speech SDK talks WebSocket, not routed yet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { azureAudio, ssmlCharacters } from './lib/mock_voice.mjs';
import { providersSetup, expectInjected, expectRecord, expectProviderError } from './lib/providers.mjs';
import { mkTenant, connect, setByok, expectResolve, sid } from './lib/byok.mjs';
import { balances } from './lib/proxy.mjs';
import { rawExchange, parseResponses } from './lib/rawhttp.mjs';
import { makeWav, randomHex } from './lib/util.mjs';

let h;
let mock;
let trap; // a server that must never receive anything
const trapped = [];
before(async () => {
  h = await providersSetup({ providers: ['azure_speech'], azureRegion: 'eastus' });
  mock = h.mocks.azure_speech;
  // Keys are per region (PROVIDERS §3): a key in the wrong region gets 401.
  mock.acceptKeys = { eastus: [h.keys.azure_speech], westeurope: [] };
  trap = http.createServer((req, res) => { trapped.push(`${req.method} ${req.url}`); res.end('trap'); });
  await new Promise((r) => trap.listen(0, '127.0.0.1', r));
});
after(async () => {
  trap?.closeAllConnections();
  await new Promise((r) => (trap ? trap.close(r) : r()));
  await h?.teardown();
});

const PK = () => h.keys.azure_speech;
const TTS = '/cognitiveservices/v1';
const VOICES = '/cognitiveservices/voices/list';
const STT = '/speech/recognition/conversation/cognitiveservices/v1';
const tts = (p) => `${h.proxy.url}/azure/tts${p}`;
const stt = (p) => `${h.proxy.url}/azure/stt${p}`;
const ANY_LINE = ['tts', 'stt', 'llm', 'embeddings', 'realtime', 'platform'];
const KEYH = 'Ocp-Apim-Subscription-Key';

// Spoken text "Hello & welcome, Zoë! Bye." (an entity counts as one
// character; tags and attribute values count nothing).
const SSML = "<speak version='1.0' xml:lang='en-US'><voice name='en-US-JennyNeural'>Hello &amp; welcome, Zoë! "
  + "<break time='500ms'/>Bye.</voice></speak>";
const SSML_CHARS = [...'Hello & welcome, Zoë! Bye.'].length;

const ttsHeaders = (key, fmt = 'riff-24khz-16bit-mono-pcm') => ({
  [KEYH]: key, 'Content-Type': 'application/ssml+xml', 'X-Microsoft-OutputFormat': fmt, 'User-Agent': 'byok-e2e',
});
const sttHeaders = (key) => ({ ...(key ? { [KEYH]: key } : {}), 'Content-Type': 'audio/wav; codecs=audio/pcm; samplerate=16000' });

// The mock requests since mark, after the test notes them for tenant t (a
// request that reached the upstream has a record).
function upstreamSince(t, mark) {
  const ups = mock.since(mark);
  if (ups.length) h.count(t, ups.length);
  return ups;
}

async function azureTenant(region) {
  const t = await mkTenant(h, { byok: true });
  const c = await connect(h, t.tenantId, { provider: 'azure_speech', region });
  (mock.acceptKeys[region] ||= []).push(c.apiKey);
  await setByok(h, t.tenantId, true, { azure_speech: c.id });
  return { t, c };
}

test('sanity: SSML character count used below', () => {
  assert.equal(ssmlCharacters(SSML), SSML_CHARS);
});

test('TTS on the platform key: config region eastus, audio intact, SSML characters in the record', async () => {
  const t = await mkTenant(h);
  const mark = mock.requests.length;
  const res = await fetch(tts(TTS), { method: 'POST', headers: ttsHeaders(t.key), body: SSML });
  const audio = Buffer.from(await res.arrayBuffer());
  const [up] = upstreamSince(t, mark);
  assert.equal(res.status, 200);
  assert.deepEqual(audio, azureAudio('riff-24khz-16bit-mono-pcm', mock.config.tts.seconds), 'audio bytes intact');
  assert.equal(up.region, 'eastus');
  assert.equal(up.service, 'tts');
  assert.equal(up.sub, TTS);
  assert.equal(up.outputFormat, 'riff-24khz-16bit-mono-pcm', 'X-Microsoft-OutputFormat forwarded');
  assert.equal(up.body.toString('utf8'), SSML, 'SSML forwarded unchanged');
  expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
  await expectRecord(h, t, res.headers, {
    provider: 'azure_speech', line: 'tts', endpoint: [TTS, `/azure/tts${TTS}`], model: 'en-US-JennyNeural',
    units: { characters: SSML_CHARS },
  });
});

test('STT short audio on the platform key: region eastus, audio seconds of the uploaded WAV', async () => {
  const t = await mkTenant(h);
  const mark = mock.requests.length;
  const res = await fetch(`${stt(STT)}?language=en-US&format=detailed`, { method: 'POST', headers: sttHeaders(t.key), body: makeWav(2.5) });
  const j = await res.json();
  const [up] = upstreamSince(t, mark);
  assert.equal(res.status, 200);
  assert.equal(j.RecognitionStatus, 'Success');
  assert.equal(j.NBest[0].Display, mock.config.stt.text);
  assert.equal(up.region, 'eastus');
  assert.equal(up.service, 'stt');
  assert.equal(up.sub, STT);
  assert.equal(up.uploadSeconds, 2.5, 'the upload arrived whole');
  assert.deepEqual(up.query, { language: 'en-US', format: 'detailed' });
  expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
  await expectRecord(h, t, res.headers, {
    provider: 'azure_speech', line: 'stt', endpoint: [STT, `/azure/stt${STT}`], units: { audio_seconds: 2.5 },
  });
});

test('voices list: relayed, an unmetered record (no units, no cost)', async () => {
  const t = await mkTenant(h);
  const mark = mock.requests.length;
  const res = await fetch(tts(VOICES), { headers: { [KEYH]: t.key } });
  const j = await res.json();
  const [up] = upstreamSince(t, mark);
  assert.equal(res.status, 200);
  assert.deepEqual(j, mock.config.voices);
  assert.equal(up.region, 'eastus');
  assert.equal(up.sub, VOICES);
  expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
  await expectRecord(h, t, res.headers, {
    provider: 'azure_speech', line: ANY_LINE, endpoint: [VOICES, `/azure/tts${VOICES}`], model: null, units: {}, cost: 0,
  });
});

test('BYOK connection in westeurope: its key, its region, billed byok; platform tenants stay on eastus', async () => {
  const { t, c } = await azureTenant('westeurope');
  await expectResolve(h, t.tenantId, 'azure_speech', { billedTo: 'byok', connectionId: c.id, payerId: t.tenantId });
  const before = balances(await h.proxy.admin.getTenant(t.tenantId));
  const session = sid('az');
  const byokExp = { provider: 'azure_speech', billedTo: 'byok', connectionId: c.id, sessionId: session };

  let mark = mock.requests.length;
  const r1 = await fetch(tts(TTS), { method: 'POST', headers: { ...ttsHeaders(t.key, 'raw-16khz-16bit-mono-pcm'), 'X-Session-Id': session }, body: SSML });
  const audio = Buffer.from(await r1.arrayBuffer());
  let [up] = upstreamSince(t, mark);
  assert.equal(r1.status, 200);
  assert.deepEqual(audio, azureAudio('raw-16khz-16bit-mono-pcm', mock.config.tts.seconds));
  assert.equal(up.region, 'westeurope', 'the connection region');
  assert.ok(up.path.startsWith('/westeurope/tts/'), up.path);
  expectInjected(up, { name: KEYH, value: c.apiKey, proxyKey: t.key });
  assert.ok(!up.rawHeaders.join('\n').includes(PK()), 'no platform key on a BYOK request');
  const rec = await expectRecord(h, t, r1.headers, {
    ...byokExp, line: 'tts', endpoint: [TTS, `/azure/tts${TTS}`], model: 'en-US-JennyNeural', units: { characters: SSML_CHARS },
  });
  assert.ok(rec.cost_micros > 0, 'BYOK lines are priced too');

  mark = mock.requests.length;
  const r2 = await fetch(`${stt(STT)}?language=de-DE&format=simple`, { method: 'POST', headers: { ...sttHeaders(t.key), 'X-Session-Id': session }, body: makeWav(1) });
  assert.equal(r2.status, 200, await r2.text());
  [up] = upstreamSince(t, mark);
  assert.equal(up.region, 'westeurope');
  assert.equal(up.service, 'stt');
  expectInjected(up, { name: KEYH, value: c.apiKey, proxyKey: t.key });
  await expectRecord(h, t, r2.headers, { ...byokExp, line: 'stt', endpoint: [STT, `/azure/stt${STT}`], units: { audio_seconds: 1 } });

  mark = mock.requests.length;
  const r3 = await fetch(tts(VOICES), { headers: { [KEYH]: t.key, 'X-Session-Id': session } });
  assert.equal(r3.status, 200, await r3.text());
  [up] = upstreamSince(t, mark);
  assert.equal(up.region, 'westeurope');
  expectInjected(up, { name: KEYH, value: c.apiKey, proxyKey: t.key });
  await expectRecord(h, t, r3.headers, { ...byokExp, line: ANY_LINE, endpoint: [VOICES, `/azure/tts${VOICES}`], model: null, units: {}, cost: 0 });
  assert.deepEqual(balances(await h.proxy.admin.getTenant(t.tenantId)), before, 'BYOK lines charge nothing');

  // A tenant without BYOK at the same time: the platform key in eastus.
  const o = await mkTenant(h);
  mark = mock.requests.length;
  const r4 = await fetch(tts(VOICES), { headers: { [KEYH]: o.key } });
  assert.equal(r4.status, 200);
  [up] = upstreamSince(o, mark);
  assert.equal(up.region, 'eastus');
  expectInjected(up, { name: KEYH, value: PK(), proxyKey: o.key });
  await expectRecord(h, o, r4.headers, { provider: 'azure_speech', line: ANY_LINE, endpoint: [VOICES, `/azure/tts${VOICES}`], model: null, units: {}, cost: 0 });
});

test('proxy key in the query (as the Speech SDK sends it): accepted and removed from the forwarded query', async () => {
  const t = await mkTenant(h);
  const k = encodeURIComponent(t.key);
  const cases = [
    // key only in the query (browsers), between other parameters
    { url: `${stt(STT)}?language=en-US&${KEYH}=${k}&format=simple`, headers: sttHeaders(null), query: { language: 'en-US', format: 'simple' } },
    // header and query (Node SDK), plus the SDK's connection id
    { url: `${stt(STT)}?language=en-US&format=detailed&${KEYH}=${k}&X-ConnectionId=abc123`, headers: sttHeaders(t.key), query: { language: 'en-US', format: 'detailed', 'X-ConnectionId': 'abc123' } },
    // the parameter name in another case, first in the query
    { url: `${stt(STT)}?ocp-apim-subscription-key=${k}&language=fr-FR&format=simple`, headers: sttHeaders(null), query: { language: 'fr-FR', format: 'simple' } },
  ];
  for (const cs of cases) {
    const mark = mock.requests.length;
    const res = await fetch(cs.url, { method: 'POST', headers: cs.headers, body: makeWav(0.5) });
    const [up] = upstreamSince(t, mark);
    assert.equal(res.status, 200, `${cs.url}: ${await res.text()}`);
    assert.deepEqual(up.query, cs.query, 'forwarded query without the key');
    expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
    await expectRecord(h, t, res.headers, { provider: 'azure_speech', line: 'stt', endpoint: [STT, `/azure/stt${STT}`], units: { audio_seconds: 0.5 } });
  }
  // TTS voices list with the key only in the query.
  const mark = mock.requests.length;
  const res = await fetch(`${tts(VOICES)}?${KEYH}=${k}`);
  const [up] = upstreamSince(t, mark);
  assert.equal(res.status, 200);
  assert.deepEqual(up.query, {});
  expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
  await expectRecord(h, t, res.headers, { provider: 'azure_speech', line: ANY_LINE, endpoint: [VOICES, `/azure/tts${VOICES}`], model: null, units: {}, cost: 0 });
});

test('a query with a single parameter (?language=en-US) is forwarded', async () => {
  const t = await mkTenant(h);
  const mark = mock.requests.length;
  const res = await fetch(`${stt(STT)}?language=en-US`, { method: 'POST', headers: sttHeaders(t.key), body: makeWav(0.5) });
  const [up] = upstreamSince(t, mark);
  assert.equal(res.status, 200);
  const id = res.headers.get('x-proxy-request-id');
  h.issued.get(t.tenantId).ids.push(id);
  assert.deepEqual(up.query, { language: 'en-US' }, 'language= reached the provider (STT needs it)');
});

// Nothing the client sends picks the upstream region or host: each attempt
// is either refused by the proxy or served by eastus (the platform key's
// region), and the trap server (another host) never hears from the proxy.
test('the request cannot choose the region: Host header, path tricks, query, headers', async (tc) => {
  const t = await mkTenant(h);
  const trapHost = `127.0.0.1:${trap.address().port}`;
  const key = { [KEYH]: t.key };
  const attempts = [
    { what: 'Host of another region', path: `/azure/tts${VOICES}`, headers: { ...key, host: 'westeurope.tts.speech.microsoft.com' } },
    { what: 'Host of the trap', path: `/azure/tts${VOICES}`, headers: { ...key, host: trapHost } },
    { what: 'query region=evil', path: `/azure/tts${VOICES}?region=evil`, headers: key },
    { what: 'query region=westeurope', path: `/azure/tts${VOICES}?region=westeurope`, headers: key },
    { what: 'region headers', path: `/azure/tts${VOICES}`, headers: { ...key, 'Ocp-Apim-Subscription-Region': 'westeurope', 'X-Region': 'westeurope', 'X-Forwarded-Host': 'westeurope.tts.speech.microsoft.com' } },
    { what: 'dot segments', path: `/azure/tts/../../westeurope/tts${VOICES}`, headers: key },
    { what: 'encoded dot segments', path: `/azure/tts/%2e%2e/%2E%2E/westeurope/tts${VOICES}`, headers: key },
    { what: 'encoded slashes', path: `/azure/tts/..%2f..%2fwesteurope%2ftts${VOICES}`, headers: key },
    { what: 'backslashes', path: `/azure/tts/..\\..\\westeurope\\tts${VOICES}`, headers: key },
    { what: 'double slash', path: `/azure/tts//westeurope/tts${VOICES}`, headers: key },
    { what: 'userinfo-like', path: `/azure/tts@${trapHost}${VOICES}`, headers: key },
    { what: 'region in the prefix', path: `/azure/westeurope/tts${VOICES}`, headers: key },
    { what: 'prefix run-on', path: `/azure/ttswesteurope${VOICES}`, headers: key },
  ];
  for (const a of attempts) {
    const mark = mock.requests.length;
    const res = await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: h.proxy.port, path: a.path, method: 'GET', headers: a.headers, agent: false }, (r) => {
        const parts = [];
        r.on('data', (d) => parts.push(d));
        r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, body: Buffer.concat(parts) }));
      });
      req.on('error', reject);
      req.end();
    });
    const ups = upstreamSince(t, mark);
    for (const up of ups) {
      assert.equal(up.region, 'eastus', `${a.what}: served in eastus (got ${up.path})`);
      assert.ok(up.path.startsWith('/eastus/tts/'), `${a.what}: stays under the eastus TTS host: ${up.path}`);
      // (A segment such as "..%2f..%2fwesteurope" may pass as opaque text:
      // on the real hosts the region is the host name, which no path changes.)
      assert.ok(!up.path.split('/').some((seg) => seg === '..' || seg === '.'), `${a.what}: no dot segment upstream: ${up.path}`);
      expectInjected(up, { name: KEYH, value: PK(), proxyKey: t.key });
      if (res.headers['x-proxy-request-id']) h.issued.get(t.tenantId).ids.push(res.headers['x-proxy-request-id']);
    }
    if (ups.length === 0) assert.ok(res.status >= 400 && res.status < 500, `${a.what}: refused (${res.status})`);
    tc.diagnostic(`${a.what}: ${res.status}${ups.length ? ` served at ${ups[0].path}` : ' from the proxy'}`);
  }
  // Absolute-form request target naming another host.
  const mark = mock.requests.length;
  const raw = await rawExchange(h.proxy.port,
    `GET http://${trapHost}/azure/tts${VOICES} HTTP/1.1\r\nHost: ${trapHost}\r\n${KEYH}: ${t.key}\r\nConnection: close\r\n\r\n`);
  const ups = upstreamSince(t, mark);
  for (const up of ups) assert.equal(up.region, 'eastus', `absolute-form: ${up.path}`);
  const [r] = parseResponses(raw.buf, { eofSeen: raw.closed }).responses;
  assert.ok(r, 'an answer to the absolute-form request');
  if (ups.length) h.issued.get(t.tenantId).ids.push(r.header('x-proxy-request-id'));
  else assert.ok(r.status >= 400 && r.status < 500, `absolute-form refused (${r.status})`);
  assert.deepEqual(trapped, [], 'nothing reached another host');
});

test('hostile or display-name regions are refused when a connection is saved or changed (400)', async () => {
  const t = await mkTenant(h, { byok: true });
  const path = `/admin/tenants/${t.tenantId}/connections`;
  const post = (region) => h.proxy.admin.req('POST', path, { provider: 'azure_speech', name: `az ${randomHex(2)}`, api_key: `az-${randomHex(8)}`, region });
  const display = await post('East US');
  assert.equal(display.status, 400, display.text);
  assert.match(display.text, /eastus/, 'the message names the short form');
  const hostile = ['evil', 'EASTUS', 'eastus.evil.example', 'evil.example/x', '127.0.0.1:9', `127.0.0.1:${trap.address().port}`,
    'eastus/../westeurope', 'eastus?x=1', 'eastus#x', 'eastus@evil', ' eastus', 'eastus ', 'east us', 'eastus\n', 'eastus%2f', '', 'westeurope.', 42, true];
  for (const region of hostile) {
    const r = await post(region);
    assert.equal(r.status, 400, `region ${JSON.stringify(region)} refused: ${r.status} ${r.text}`);
  }
  const missing = await h.proxy.admin.req('POST', path, { provider: 'azure_speech', name: 'no region', api_key: 'az-x' });
  assert.equal(missing.status, 400, 'an Azure connection needs a region');
  const ok = await connect(h, t.tenantId, { provider: 'azure_speech', region: 'westeurope' });
  for (const region of ['evil', 'West Europe', 'eastus.evil.example']) {
    const r = await h.proxy.admin.req('PATCH', `${path}/${ok.id}`, { region });
    assert.equal(r.status, 400, `PATCH region ${region}: ${r.text}`);
  }
  assert.equal((await h.proxy.admin.getConnection(t.tenantId, ok.id)).region, 'westeurope', 'unchanged');
  const listed = await h.proxy.admin.ok('GET', path);
  const conns = Array.isArray(listed) ? listed : listed.connections;
  assert.deepEqual(conns.map((c) => c.region), ['westeurope'], 'no refused connection was stored');
});

test('bad, missing or misplaced proxy key: 401 in Azure shape, nothing upstream', async () => {
  const t = await mkTenant(h);
  const mark = mock.requests.length;
  const bad = `${t.key.slice(0, -4)}zzzz`;
  const tries = [
    fetch(tts(VOICES), { headers: { [KEYH]: bad } }),
    fetch(`${tts(VOICES)}?${KEYH}=${encodeURIComponent(bad)}`),
    fetch(tts(VOICES)),
    fetch(tts(TTS), { method: 'POST', headers: { 'Content-Type': 'application/ssml+xml', authorization: `Bearer ${t.key}` }, body: SSML }),
  ];
  for (const p of tries) {
    const res = await p;
    assert.equal(res.status, 401);
    assert.match(res.headers.get('content-type') || '', /^application\/json/);
    expectProviderError('azure_speech', 401, await res.text());
  }
  assert.equal(mock.since(mark).length, 0, 'nothing reached the upstream');
  assert.equal((await h.proxy.admin.usage({ tenant_id: t.tenantId, limit: 10 })).length, 0, 'no record');
});

test('one usage record per request, each once in the JSONL sink', async () => {
  await h.checkAllRecords();
});
