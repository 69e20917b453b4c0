// providers.mjs - helpers for the tests of the non-OpenAI REST routes
// (DESIGN §4: /elevenlabs, /azure/tts|stt, /deepgram, /anthropic, /cartesia):
// a proxy whose config points those upstreams at the recording mocks of
// mock_voice.mjs with canary platform keys and pricing, and the checks every
// such test makes: exactly the injected key reached the mock (and nothing of
// the proxy key), the reply's billing headers, the usage record, and the
// proxy's own errors in the provider's shape.
import assert from 'node:assert/strict';
import { setup } from './harness.mjs';
import {
  startMockElevenLabs, startMockAzure, startMockDeepgram, startMockAnthropic, startMockCartesia,
} from './mock_voice.mjs';
import { checkRecord } from './records.mjs';
import { randomHex } from './util.mjs';

// Integer micro-USD per provider (README "Pricing schema"), large enough that
// a wrong unit count shows in the cost.
export const VOICE_PRICES = {
  elevenlabs: {
    eleven_multilingual_v2: { characters_per_1m: 300000000 },
    eleven_turbo_v2_5: { characters_per_1m: 150000000 },
    'eleven_flash*': { characters_per_1m: 100000000 },
  },
  azure_speech: {
    '*': { characters_per_1m: 16000000, audio_per_minute: 16667 },
  },
  deepgram: {
    'nova-3': { audio_per_minute: 4300 },
    'aura-2*': { characters_per_1m: 30000000 },
  },
  anthropic: {
    'claude-*': { input_per_1m: 3000000, cached_input_per_1m: 300000, output_per_1m: 15000000 },
  },
  cartesia: {
    'sonic-2': { characters_per_1m: 65000000 },
  },
};

const STARTERS = {
  elevenlabs: startMockElevenLabs,
  azure_speech: startMockAzure,
  deepgram: startMockDeepgram,
  anthropic: startMockAnthropic,
  cartesia: startMockCartesia,
};

const KEY_ENV = {
  elevenlabs: 'ELEVENLABS_API_KEY',
  azure_speech: 'AZURE_SPEECH_KEY',
  deepgram: 'DEEPGRAM_API_KEY',
  anthropic: 'ANTHROPIC_API_KEY',
  cartesia: 'CARTESIA_API_KEY',
};

// Route prefix of each provider on the proxy (Azure: the TTS one).
export const PREFIX = {
  elevenlabs: '/elevenlabs',
  azure_tts: '/azure/tts',
  azure_stt: '/azure/stt',
  deepgram: '/deepgram',
  anthropic: '/anthropic',
  cartesia: '/cartesia',
};

// setup() of harness.mjs (the OpenAI mock and the proxy) plus one recording
// mock per provider in `providers`, each the upstream of its route, with a
// canary platform key (h.keys[provider]) and VOICE_PRICES. Azure's templates
// are <mock>/{region}/tts and <mock>/{region}/stt; the platform Azure key's
// region is `azureRegion`. opts.patch(cfg) and opts.env are applied last.
// h.mocks[provider], h.keys[provider], h.platformKeyOf(provider).
export async function providersSetup({ providers = Object.keys(STARTERS), azureRegion = 'eastus', patch, env, ...rest } = {}) {
  const mocks = {};
  const closeMocks = () => Promise.all(Object.values(mocks).map((m) => m.close()));
  try {
    for (const p of providers) mocks[p] = await STARTERS[p]();
  } catch (e) {
    await closeMocks();
    throw e;
  }
  const keys = Object.fromEntries(providers.map((p) => [p, `${p.replace('_', '')}-platform-canary-${randomHex(16)}`]));
  const keyEnv = Object.fromEntries(providers.map((p) => [KEY_ENV[p], keys[p]]));
  let h;
  try {
    h = await setup({
      ...rest,
      env: { ...keyEnv, ...(env || {}) },
      patch: (cfg) => {
        for (const p of providers) {
          const url = mocks[p].url;
          if (p === 'azure_speech') {
            cfg.upstreams.azure_speech_tts = `${url}/{region}/tts`;
            cfg.upstreams.azure_speech_stt = `${url}/{region}/stt`;
            cfg.platform_keys.azure_speech = { key_env: KEY_ENV[p], region: azureRegion };
          } else {
            cfg.upstreams[p] = url;
            cfg.platform_keys[p] = { key_env: KEY_ENV[p] };
          }
          cfg.pricing[p] = VOICE_PRICES[p];
        }
        if (patch) patch(cfg);
      },
    });
  } catch (e) {
    await closeMocks();
    throw e;
  }
  const teardown = h.teardown;
  h.teardown = async () => {
    try {
      await teardown();
    } finally {
      await closeMocks();
    }
  };
  h.mocks = mocks;
  h.keys = keys;
  h.platformKeyOf = (p) => (p === 'openai' ? h.proxy.platformKey : keys[p]);
  return h;
}

// What the mock received carries exactly one credential, `value`, in the
// header `name` (the injected key), and the proxy key appears nowhere: not
// in the URL, any header or the body. scheme: for Authorization headers, the
// expected "<scheme> " prefix of the raw header value.
export function expectInjected(rec, { name, value, proxyKey, scheme }) {
  assert.deepEqual(rec.credentials.map((c) => ({ in: c.in, name: c.name.toLowerCase(), value: c.value })),
    [{ in: 'header', name: name.toLowerCase(), value }], `exactly the injected key upstream, in ${name}`);
  const same = rec.rawHeaders.filter((_, i) => i % 2 === 0 && rec.rawHeaders[i].toLowerCase() === name.toLowerCase());
  assert.equal(same.length, 1, `exactly one ${name} header upstream`);
  if (scheme !== undefined) {
    const v = rec.headers[name.toLowerCase()];
    assert.equal(v, `${scheme} ${value}`, `${name} uses the ${scheme} scheme`);
  }
  const seen = [rec.url, rec.rawHeaders.join('\n'), rec.body ? rec.body.toString('latin1') : ''].join('\n');
  assert.ok(!seen.includes(proxyKey), 'the proxy key must not reach the upstream (url, headers, body)');
  // A URL-encoded copy would be as bad.
  assert.ok(!seen.includes(encodeURIComponent(proxyKey)), 'no URL-encoded proxy key upstream');
}

// Reads x-billed-to / x-proxy-request-id from a fetch Headers, a node
// headers object or a Map-like.
export function header(headers, name) {
  if (headers && typeof headers.get === 'function') return headers.get(name);
  const v = headers?.[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v ?? null;
}

// The reply's billing headers, then the usage record it names, checked with
// checkRecord (prices: the provider's VOICE_PRICES unless exp.prices);
// notes the id for checkAllRecords(). exp.line may be an array (any of:
// for unmetered calls, whose line the contract does not name). Returns the
// record.
export async function expectRecord(h, t, headers, exp) {
  const billedTo = exp.billedTo ?? 'wallet';
  assert.equal(header(headers, 'x-billed-to'), billedTo, 'x-billed-to');
  const id = header(headers, 'x-proxy-request-id');
  assert.ok(id, 'x-proxy-request-id present');
  const rec = await h.proxy.admin.waitRecord(t.tenantId, id);
  let line = exp.line;
  if (Array.isArray(line)) {
    assert.ok(line.includes(rec.line), `line ${rec.line} is one of ${line}`);
    line = rec.line;
  }
  checkRecord(rec, {
    tenantId: t.tenantId, keyId: t.keyId, prices: VOICE_PRICES[exp.provider], ...exp, line, billedTo,
  });
  h.issued.get(t.tenantId).ids.push(id);
  return rec;
}

// An error the proxy produced itself, in the provider's shape.
export function expectProviderError(provider, status, body) {
  const j = typeof body === 'string' || Buffer.isBuffer(body) ? JSON.parse(body.toString('utf8')) : body;
  const nonEmpty = (v, what) => {
    assert.equal(typeof v, 'string', `${what} is a string`);
    assert.ok(v.length > 0, `${what} is not empty`);
  };
  switch (provider) {
    case 'elevenlabs':
      assert.ok(j && typeof j.detail === 'object' && !Array.isArray(j.detail), `ElevenLabs {"detail":{...}}: ${JSON.stringify(j)}`);
      nonEmpty(j.detail.status, 'detail.status');
      nonEmpty(j.detail.message, 'detail.message');
      break;
    case 'anthropic':
      assert.equal(j?.type, 'error', `Anthropic {"type":"error",...}: ${JSON.stringify(j)}`);
      assert.equal(j.error?.type, status === 401 ? 'authentication_error' : j.error?.type);
      nonEmpty(j.error.type, 'error.type');
      nonEmpty(j.error.message, 'error.message');
      break;
    case 'deepgram':
      nonEmpty(j?.err_code, 'err_code');
      nonEmpty(j?.err_msg, 'err_msg');
      break;
    case 'azure_speech':
      assert.ok(j && typeof j.error === 'object', `Azure {"error":{...}}: ${JSON.stringify(j)}`);
      assert.equal(String(j.error.code), String(status), 'error.code is the status');
      nonEmpty(j.error.message, 'error.message');
      break;
    default:
      throw new Error(`no error shape known for ${provider}`);
  }
  return j;
}
