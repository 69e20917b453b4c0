// metrics.mjs - what a load run measures: per operation kind (a chat
// request, a Realtime turn, a TTS session, ...) counts, TTFB and total
// latency histograms, bytes and audio received, errors by kind; and per
// second of the run the same for the scenario's primary operation, plus the
// active sessions, so the report can draw them over time.
//
// Latencies go into log-bucketed histograms (1 % relative width): memory is
// bounded whatever the run's length and percentiles are within 1 % of the
// exact value. Min, max, sum and count are exact.

const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
// Values below 10 µs share bucket 0.
const FLOOR_MS = 0.01;

export class Histogram {
  constructor() {
    this.buckets = new Map();
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  static bucketOf(ms) {
    return ms <= FLOOR_MS ? 0 : 1 + Math.floor(Math.log(ms / FLOOR_MS) / LOG_GROWTH);
  }

  // The middle of a bucket (geometric), the value a percentile reports.
  static valueOf(b) {
    if (b === 0) return FLOOR_MS;
    return FLOOR_MS * GROWTH ** (b - 1) * Math.sqrt(GROWTH);
  }

  add(ms) {
    if (!Number.isFinite(ms) || ms < 0) return;
    const b = Histogram.bucketOf(ms);
    this.buckets.set(b, (this.buckets.get(b) || 0) + 1);
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  merge(h) {
    for (const [b, n] of h.buckets) this.buckets.set(b, (this.buckets.get(b) || 0) + n);
    this.count += h.count;
    this.sum += h.sum;
    this.min = Math.min(this.min, h.min);
    this.max = Math.max(this.max, h.max);
  }

  // p in [0, 100]. The value of the bucket holding the rank-th value,
  // clamped to the exact min and max; null when empty.
  percentile(p) {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const k of keys) {
      seen += this.buckets.get(k);
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, Histogram.valueOf(k)));
    }
    return this.max;
  }

  mean() {
    return this.count ? this.sum / this.count : null;
  }

  summary() {
    const r = (v) => (v === null ? null : Math.round(v * 10) / 10);
    return {
      count: this.count,
      min: r(this.count ? this.min : null),
      mean: r(this.mean()),
      p50: r(this.percentile(50)),
      p90: r(this.percentile(90)),
      p95: r(this.percentile(95)),
      p99: r(this.percentile(99)),
      max: r(this.count ? this.max : null),
    };
  }
}

class OpStats {
  constructor(name) {
    this.name = name;
    this.count = 0; // finished, ok or not
    this.ok = 0;
    this.errors = 0;
    this.ttfb = new Histogram();
    this.total = new Histogram();
    this.bytes = 0; // bytes of payload received (audio, text)
    this.audioSeconds = 0; // audio received, seconds (where known)
  }
}

class Second {
  constructor() {
    this.done = 0; // primary operations finished ok
    this.started = 0; // iterations started
    this.errors = 0;
    this.ttfb = new Histogram();
    this.total = new Histogram();
    this.active = 0; // most sessions open at once during the second
    this.bytes = 0;
  }
}

export class Metrics {
  // primary: the operation kind the per-second series and the progress
  // line follow (e.g. 'chat', 'turn').
  constructor({ primary, now = () => performance.now() }) {
    this.primary = primary;
    this.now = now;
    this.t0 = now();
    this.ops = new Map();
    this.errorKinds = new Map(); // kind -> { count, op, example }
    this.seconds = [];
    this.active = 0;
    this.peakActive = 0;
    this.iterations = 0;
  }

  op(name) {
    let o = this.ops.get(name);
    if (!o) {
      o = new OpStats(name);
      this.ops.set(name, o);
    }
    return o;
  }

  sec(t = this.now()) {
    const i = Math.max(0, Math.floor((t - this.t0) / 1000));
    while (this.seconds.length <= i) {
      // A second starts with the sessions still open from the last one.
      const n = new Second();
      n.active = this.active;
      this.seconds.push(n);
    }
    return this.seconds[i];
  }

  // One finished operation that succeeded. ttfbMs/totalMs measured from
  // the operation's own start; bytes/audioSeconds received.
  ok(name, { ttfbMs, totalMs, bytes = 0, audioSeconds = 0 } = {}) {
    const o = this.op(name);
    o.count++;
    o.ok++;
    if (ttfbMs !== undefined && ttfbMs !== null) o.ttfb.add(ttfbMs);
    if (totalMs !== undefined && totalMs !== null) o.total.add(totalMs);
    o.bytes += bytes;
    o.audioSeconds += audioSeconds;
    const s = this.sec();
    s.bytes += bytes;
    if (name === this.primary) {
      s.done++;
      if (ttfbMs !== undefined && ttfbMs !== null) s.ttfb.add(ttfbMs);
      if (totalMs !== undefined && totalMs !== null) s.total.add(totalMs);
    }
  }

  // One operation that failed, with the kind of failure ("http 402
  // insufficient_balance", "ws close 1008 insufficient_balance",
  // "timeout: no response.done", ...). detail: one line for the example.
  // derived: this operation failed because a part of it did (a voice
  // turn whose LLM call failed): counted in the operation's row, not again
  // among the errors by kind.
  fail(name, kind, detail, { derived = false } = {}) {
    const o = this.op(name);
    o.count++;
    o.errors++;
    if (derived) return;
    const e = this.errorKinds.get(kind) || { count: 0, ops: new Map(), example: null };
    e.count++;
    e.ops.set(name, (e.ops.get(name) || 0) + 1);
    if (!e.example && detail) e.example = String(detail).slice(0, 300);
    this.errorKinds.set(kind, e);
    this.sec().errors++;
  }

  sessionOpened() {
    this.active++;
    if (this.active > this.peakActive) this.peakActive = this.active;
    const s = this.sec();
    if (this.active > s.active) s.active = this.active;
  }

  sessionClosed() {
    this.active--;
  }

  iterationStarted() {
    this.iterations++;
    this.sec().started++;
  }

  // Called once a second (and at the end): makes sure every second of the
  // run has its entry, also one where nothing happened.
  sample() {
    this.sec();
  }

  totalErrors() {
    let n = 0;
    for (const e of this.errorKinds.values()) n += e.count;
    return n;
  }

  elapsedMs() {
    return this.now() - this.t0;
  }

  // The primary operation's figures so far (progress line).
  progress(windowSeconds = 1) {
    const o = this.op(this.primary);
    const i = Math.floor(this.elapsedMs() / 1000);
    // The last complete seconds (the current one is partial).
    let done = 0;
    let n = 0;
    for (let k = Math.max(0, i - windowSeconds); k < i && k < this.seconds.length; k++, n++) done += this.seconds[k].done;
    return {
      elapsedS: this.elapsedMs() / 1000,
      active: this.active,
      ok: o.ok,
      errors: this.totalErrors(),
      rate: n ? done / n : 0,
      p50: o.ttfb.percentile(50),
      p99: o.ttfb.percentile(99),
    };
  }

  // Plain data for summary.json and the report.
  toJSON({ durationMs } = {}) {
    const dur = (durationMs ?? this.elapsedMs()) / 1000;
    const ops = {};
    for (const [name, o] of this.ops) {
      ops[name] = {
        count: o.count,
        ok: o.ok,
        errors: o.errors,
        per_second: dur > 0 ? Math.round((o.ok / dur) * 100) / 100 : 0,
        ttfb_ms: o.ttfb.summary(),
        total_ms: o.total.summary(),
        bytes_received: o.bytes,
        audio_seconds_received: Math.round(o.audioSeconds * 1000) / 1000,
      };
    }
    const errors = [...this.errorKinds.entries()]
      .sort((a, b) => b[1].count - a[1].count)
      .map(([kind, e]) => ({ kind, count: e.count, ops: Object.fromEntries(e.ops), example: e.example }));
    const series = this.seconds.map((s, i) => ({
      t: i,
      done: s.done,
      started: s.started,
      errors: s.errors,
      active: s.active,
      bytes: s.bytes,
      ttfb_p50: round1(s.ttfb.percentile(50)),
      ttfb_p95: round1(s.ttfb.percentile(95)),
      ttfb_p99: round1(s.ttfb.percentile(99)),
      total_p50: round1(s.total.percentile(50)),
      total_p95: round1(s.total.percentile(95)),
      total_p99: round1(s.total.percentile(99)),
    }));
    const prim = this.op(this.primary);
    const dist = [];
    if (prim.ttfb.count) {
      for (const p of [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]) dist.push({ p, ms: round1(prim.ttfb.percentile(p)) });
    }
    return {
      primary: this.primary,
      iterations: this.iterations,
      peak_active: this.peakActive,
      ops,
      errors,
      errors_total: this.totalErrors(),
      series,
      primary_ttfb_distribution: dist,
    };
  }
}

function round1(v) {
  return v === null ? null : Math.round(v * 10) / 10;
}
