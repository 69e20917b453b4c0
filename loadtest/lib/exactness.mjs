// exactness.mjs - did the proxy write exactly the records of what this run
// did, and did the balance drop by exactly what they charged?
//
// The Ledger notes, per session (X-Session-Id: the kit sets one on every
// call), what the client side knows for certain:
//   - HTTP: every reply that carried x-proxy-request-id names a record that
//     must exist (the proxy's refusals - 401/402/403/429 - carry none and
//     write none); a request that got no reply at all may or may not have one;
//   - sockets, per provider: how many opened (101), how many never got an
//     answer to their upgrade; and the units the client can count itself:
//     characters sent (ElevenLabs), the Metadata duration Deepgram reported,
//     the usage of each Realtime response.done.
// After the run, settle() polls the admin API (bounded) until every
// expected record is there and the tenant holds nothing, then check()
// compares: one record per reply id, each id once, per socket one final
// record per line and seq 1..n, the units, wallet records charged their
// cost, no record the run did not make, and Σ charged = the balance drop.

import { balancesOf, USAGE_PAGE_MAX } from './admin.mjs';

export class Ledger {
  constructor() {
    this.sessions = new Map();
  }

  session(sid) {
    let s = this.sessions.get(sid);
    if (!s) {
      s = { http: new Map(), httpUnknown: 0, sockets: new Map() };
      this.sessions.set(sid, s);
    }
    return s;
  }

  // A reply that named its record. usage: the units the client saw (an
  // OpenAI usage object), or null when it saw none.
  httpRecord(sid, id, { usage = null, status } = {}) {
    this.session(sid).http.set(id, { usage, status });
  }

  // A request whose reply never came (connection error, timeout).
  httpUnknown(sid) {
    this.session(sid).httpUnknown++;
  }

  socketGroup(sid, provider) {
    const s = this.session(sid);
    let g = s.sockets.get(provider);
    if (!g) {
      g = { opened: 0, unknown: 0, characters: 0, charactersKnown: true, audioSeconds: 0, audioKnown: true, responses: [] };
      s.sockets.set(provider, g);
    }
    return g;
  }

  // A socket that got its 101. Returns the group to note units in.
  socketOpened(sid, provider) {
    const g = this.socketGroup(sid, provider);
    g.opened++;
    return g;
  }

  // A socket whose upgrade got no answer (it may or may not have opened
  // upstream).
  socketUnknown(sid, provider) {
    this.socketGroup(sid, provider).unknown++;
  }

  counts() {
    let http = 0;
    let httpUnknown = 0;
    let sockets = 0;
    for (const s of this.sessions.values()) {
      http += s.http.size;
      httpUnknown += s.httpUnknown;
      for (const g of s.sockets.values()) sockets += g.opened;
    }
    return { sessions: this.sessions.size, http, httpUnknown, sockets };
  }
}

// Is a session's record set complete (every expected record present)?
function sessionComplete(s, recs) {
  const ids = new Set(recs.map((r) => r.id));
  for (const id of s.http.keys()) if (!ids.has(id)) return false;
  for (const [provider, g] of s.sockets) {
    if (g.opened === 0) continue;
    const mine = recs.filter((r) => r.provider === provider && r.seq !== undefined && r.seq !== null);
    const unitFinals = mine.filter((r) => r.line !== 'platform' && r.final === true).length;
    const platFinals = mine.filter((r) => r.line === 'platform' && r.final === true).length;
    if (unitFinals < g.opened || platFinals < g.opened) return false;
  }
  return true;
}

// Runs `fn` over items with at most `n` at once.
async function pool(items, n, fn) {
  const out = new Array(items.length);
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const k = i++;
      out[k] = await fn(items[k]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

// Polls until every session's records are complete and the tenant holds
// nothing (all charges committed), at most timeoutMs. Returns
// { bySession, tenant, complete, waitedMs, pendingSessions }.
export async function settle(admin, tenantId, ledger, { timeoutMs = 30000, pollMs = 200, log = () => {} } = {}) {
  const t0 = performance.now();
  const bySession = new Map();
  const pending = new Set(ledger.sessions.keys());
  let tenant = null;
  let truncated = [];
  for (;;) {
    const list = [...pending];
    await pool(list, 8, async (sid) => {
      const recs = await admin.usage({ tenantId, sessionId: sid, limit: USAGE_PAGE_MAX });
      bySession.set(sid, recs);
      if (sessionComplete(ledger.sessions.get(sid), recs)) pending.delete(sid);
    });
    tenant = await admin.getTenant(tenantId);
    const held = balancesOf(tenant).held;
    if (pending.size === 0 && held === 0) break;
    if (performance.now() - t0 > timeoutMs) {
      log(`exactness: gave up waiting after ${Math.round(timeoutMs / 1000)} s: ${pending.size} session(s) incomplete, ${held} micro-USD still held`);
      break;
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  // One last read of every session, now that nothing is held: a record
  // committed between a session's read and the balance read is not missed.
  await pool([...ledger.sessions.keys()], 8, async (sid) => {
    bySession.set(sid, await admin.usage({ tenantId, sessionId: sid, limit: USAGE_PAGE_MAX }));
  });
  tenant = await admin.getTenant(tenantId);
  truncated = [...bySession].filter(([, r]) => r.length >= USAGE_PAGE_MAX).map(([sid]) => sid);
  const tenantList = await admin.usage({ tenantId, limit: USAGE_PAGE_MAX });
  return { bySession, tenant, tenantList, complete: pending.size === 0, pendingSessions: [...pending], truncated, waitedMs: performance.now() - t0 };
}

const sumBy = (recs, f) => recs.reduce((s, r) => s + (f(r) || 0), 0);
const charged = (r) => (r.charged?.plan_credits_micros || 0) + (r.charged?.wallet_micros || 0);

// The checks, each { name, pass, detail }, and the figures behind them.
export function check(ledger, settled, before) {
  const checks = [];
  const add = (name, pass, detail) => checks.push({ name, pass: Boolean(pass), detail });
  const all = [];
  for (const recs of settled.bySession.values()) all.push(...recs);

  // 1. HTTP replies: one record each, found by the id the reply named.
  let expectedHttp = 0;
  let foundHttp = 0;
  let extraHttp = 0;
  let unknownHttp = 0;
  const missing = [];
  for (const [sid, s] of ledger.sessions) {
    const recs = settled.bySession.get(sid) || [];
    const httpRecs = recs.filter((r) => r.seq === undefined || r.seq === null);
    const ids = new Set(httpRecs.map((r) => r.id));
    for (const id of s.http.keys()) {
      expectedHttp++;
      if (ids.has(id)) foundHttp++;
      else if (missing.length < 5) missing.push(id);
    }
    const unmatched = httpRecs.filter((r) => !s.http.has(r.id)).length;
    unknownHttp += s.httpUnknown;
    extraHttp += Math.max(0, unmatched - s.httpUnknown);
  }
  if (expectedHttp || extraHttp) {
    add('one record per HTTP reply', foundHttp === expectedHttp && extraHttp === 0,
      `${expectedHttp} replies named a record, ${foundHttp} found` +
      (missing.length ? ` (missing e.g. ${missing.join(', ')})` : '') +
      `; ${extraHttp} HTTP record(s) no reply named` +
      (unknownHttp ? `; ${unknownHttp} request(s) got no reply (a record of theirs is allowed)` : ''));
  }

  // 2. Every record id once.
  const seen = new Map();
  for (const r of all) seen.set(r.id, (seen.get(r.id) || 0) + 1);
  const dups = [...seen].filter(([, n]) => n > 1);
  add('each record id once', dups.length === 0, dups.length ? `${dups.length} id(s) twice, e.g. ${dups[0][0]}` : `${seen.size} distinct ids`);

  // 3. Sockets: per session, provider and line, as many sessions ended
  // (final record) as opened, seq 1..n each.
  let socketsOpened = 0;
  let socketsClosed = 0;
  let seqBad = [];
  const units = { characters: [0, 0], audio: [0, 0], rtResponses: [0, 0], rtTokens: [0, 0] };
  for (const [sid, s] of ledger.sessions) {
    const recs = settled.bySession.get(sid) || [];
    for (const [provider, g] of s.sockets) {
      const mine = recs.filter((r) => r.provider === provider && r.seq !== undefined && r.seq !== null);
      socketsOpened += g.opened;
      const lines = new Map();
      for (const r of mine) {
        if (!lines.has(r.line)) lines.set(r.line, []);
        lines.get(r.line).push(r);
      }
      if (!lines.has('platform')) lines.set('platform', []);
      const unitLines = [...lines.keys()].filter((l) => l !== 'platform');
      if (g.opened && unitLines.length === 0) lines.set('(unit line)', []);
      let closedHere = Infinity;
      for (const [line, lr] of lines) {
        const finals = lr.filter((r) => r.final === true).length;
        const firsts = lr.filter((r) => r.seq === 1).length;
        const bySeq = new Map();
        for (const r of lr) bySeq.set(r.seq, (bySeq.get(r.seq) || 0) + 1);
        let monotone = true;
        const maxSeq = Math.max(0, ...bySeq.keys());
        for (let k = 2; k <= maxSeq; k++) if ((bySeq.get(k) || 0) > (bySeq.get(k - 1) || 0)) monotone = false;
        const okCount = finals >= g.opened && finals <= g.opened + g.unknown && firsts === finals;
        if (!okCount || !monotone) {
          seqBad.push(`${sid} ${provider}/${line}: ${g.opened} opened, ${finals} final, ${firsts} seq=1${monotone ? '' : ', seq gap'}`);
        }
        closedHere = Math.min(closedHere, Math.min(finals, g.opened));
      }
      socketsClosed += closedHere === Infinity ? 0 : closedHere;
      const unit = mine.filter((r) => r.line !== 'platform');
      if (provider === 'elevenlabs' && g.charactersKnown && g.opened) {
        units.characters[0] += g.characters;
        units.characters[1] += sumBy(unit, (r) => r.units?.characters);
      }
      if (provider === 'deepgram' && g.audioKnown && g.opened) {
        units.audio[0] += g.audioSeconds;
        units.audio[1] += sumBy(unit, (r) => r.units?.audio_seconds);
      }
      if (provider === 'openai' && g.opened) {
        units.rtResponses[0] += g.responses.length;
        units.rtResponses[1] += unit.filter((r) => r.final !== true).length;
        units.rtTokens[0] += sumBy(g.responses, (u) => (u.input_tokens || 0) + (u.output_tokens || 0));
        units.rtTokens[1] += sumBy(unit, (r) => (r.units?.input_tokens || 0) + (r.units?.output_tokens || 0));
      }
    }
  }
  if (socketsOpened) {
    add('every socket closed with its records (seq 1..n, one final per line)', seqBad.length === 0 && socketsClosed === socketsOpened,
      `${socketsOpened} socket(s) opened, ${socketsClosed} ended with final records` +
      (seqBad.length ? `; wrong: ${seqBad.slice(0, 3).join('; ')}` : ''));
  }

  // 4. Units: what the client counted = what the records say.
  let llmChecked = 0;
  const llmBad = [];
  const byId = new Map(all.map((r) => [r.id, r]));
  for (const s of ledger.sessions.values()) {
    for (const [id, e] of s.http) {
      if (!e.usage || !byId.has(id)) continue;
      const r = byId.get(id);
      llmChecked++;
      const u = e.usage;
      const want = { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens };
      const got = { input_tokens: r.units?.input_tokens, output_tokens: r.units?.output_tokens };
      if (want.input_tokens !== got.input_tokens || want.output_tokens !== got.output_tokens) {
        if (llmBad.length < 3) llmBad.push(`${id}: usage ${JSON.stringify(want)}, record ${JSON.stringify(got)}`);
      }
    }
  }
  if (llmChecked) add('LLM tokens in the records = the usage the client got', llmBad.length === 0, `${llmChecked} record(s) compared${llmBad.length ? `; differ: ${llmBad.join('; ')}` : ''}`);
  if (units.characters[0] || units.characters[1]) {
    add('TTS characters in the records = characters sent', units.characters[0] === units.characters[1],
      `sent ${units.characters[0]}, recorded ${units.characters[1]}`);
  }
  if (units.audio[0] || units.audio[1]) {
    const diff = Math.abs(units.audio[0] - units.audio[1]);
    add('STT audio seconds in the records = the Metadata durations Deepgram reported', diff < 0.002 * Math.max(1, ledger.sessions.size),
      `reported ${units.audio[0].toFixed(3)} s, recorded ${units.audio[1].toFixed(3)} s`);
  }
  if (units.rtResponses[0] || units.rtResponses[1]) {
    add('Realtime: one record per response.done, tokens as reported', units.rtResponses[0] === units.rtResponses[1] && units.rtTokens[0] === units.rtTokens[1],
      `${units.rtResponses[0]} response.done, ${units.rtResponses[1]} unit record(s); tokens reported ${units.rtTokens[0]}, recorded ${units.rtTokens[1]}`);
  }

  // 5. Each wallet record charged its cost, BYOK records nothing.
  const wrongCharge = all.filter((r) => (r.billed_to === 'wallet' ? charged(r) !== r.cost_micros : charged(r) !== 0));
  add('each record charged its cost (wallet) or nothing (byok)', wrongCharge.length === 0,
    wrongCharge.length ? `${wrongCharge.length} record(s) differ, e.g. ${wrongCharge[0].id}: cost ${wrongCharge[0].cost_micros}, charged ${charged(wrongCharge[0])}` : `${all.length} record(s)`);

  // 6. No record the run did not make (only checkable while the tenant has
  // fewer than a page of records: the admin API lists at most 1000).
  const mineIds = new Set(all.map((r) => r.id));
  let strayNote;
  if (settled.tenantList.length < USAGE_PAGE_MAX) {
    const stray = settled.tenantList.filter((r) => !mineIds.has(r.id));
    add('no record of the tenant that the run did not make', stray.length === 0,
      stray.length ? `${stray.length} record(s) of other sessions, e.g. ${stray[0].id} (session ${stray[0].session_id}, ${stray[0].endpoint})`
        : `the tenant has ${settled.tenantList.length} record(s), all of this run`);
  } else {
    strayNote = `the tenant has ${USAGE_PAGE_MAX} or more records: records outside this run's sessions could not be listed (the admin API returns at most ${USAGE_PAGE_MAX}); the balance check below still covers what they charged`;
  }

  // 7. Σ charged = the balance drop.
  const after = balancesOf(settled.tenant);
  const sumCharged = sumBy(all, charged);
  const drop = before.total - after.total;
  add('Σ charged = balance drop', sumCharged === drop && after.held === 0,
    `Σ charged ${sumCharged} µUSD (plan ${sumBy(all, (r) => r.charged?.plan_credits_micros)}, wallet ${sumBy(all, (r) => r.charged?.wallet_micros)}); ` +
    `balance ${before.total} → ${after.total} (drop ${drop})` + (after.held ? `; still held ${after.held}` : ''));

  if (!settled.complete) add('all records arrived in time', false, `${settled.pendingSessions.length} session(s) incomplete after ${Math.round(settled.waitedMs)} ms, e.g. ${settled.pendingSessions[0]}`);
  if (settled.truncated.length) add('each session fits in one page of records', false, `${settled.truncated.length} session(s) returned ${USAGE_PAGE_MAX} records: some may be missing`);

  const byLine = {};
  for (const r of all) byLine[r.line] = (byLine[r.line] || 0) + 1;
  return {
    verdict: checks.every((c) => c.pass) ? 'PASS' : 'FAIL',
    checks,
    note: strayNote,
    figures: {
      records: all.length,
      records_by_line: byLine,
      http_replies: expectedHttp,
      http_no_reply: unknownHttp,
      sockets_opened: socketsOpened,
      sessions: ledger.sessions.size,
      charged_micros: sumCharged,
      cost_micros: sumBy(all, (r) => r.cost_micros),
      balance_before_micros: before.total,
      balance_after_micros: after.total,
      balance_drop_micros: drop,
      waited_ms: Math.round(settled.waitedMs),
    },
  };
}
