// runner.mjs - drives a scenario: `concurrency` virtual users (VUs), started
// evenly over `ramp` seconds, each running one iteration after another (a
// chat request, a call, a TTS session, a conversation) until `duration`
// seconds after the start; with `rate`, iteration starts are also spaced
// at most `rate` per second in all (a shared schedule), concurrency then
// being the cap on what runs at once.
//
// Bounded in count and time: no iteration starts after the duration, and
// every iteration gets an AbortSignal that fires at the hard deadline
// (duration + the longest an iteration may take); what is still running
// then is aborted and counted as an error, and run() returns.
import { setMaxListeners } from 'node:events';

// stop: an AbortSignal that ends the run early (Ctrl-C): no iteration
// starts after it; what runs finishes within its own bounds.
export async function runLoad({ metrics, concurrency, durationS, rampS, rate, maxIterationS, maxIterations = Infinity, iterate, onTick, stop }) {
  const t0 = performance.now();
  let stopStartsAt = t0 + durationS * 1000;
  const hardDeadline = stopStartsAt + maxIterationS * 1000;
  const abort = new AbortController();
  // Every operation in flight listens on it (hundreds at once is normal).
  setMaxListeners(0, abort.signal);
  const deadlineTimer = setTimeout(() => abort.abort(new Error('run deadline')), hardDeadline - t0);
  let stopped = false;
  const sleepers = new Set(); // VUs waiting for their start time
  if (stop) {
    stop.addEventListener('abort', () => {
      stopped = true;
      stopStartsAt = Math.min(stopStartsAt, performance.now());
      for (const wake of sleepers) wake();
    }, { once: true });
  }
  let started = 0;
  let nextSlot = t0; // rate schedule: when the next iteration may start
  const interval = rate ? 1000 / rate : 0;

  const tick = setInterval(() => {
    metrics.sample();
    if (onTick) onTick();
  }, 1000);

  // Waits for a start time (ramp, rate schedule), or the run's abort.
  const wait = (ms) => new Promise((resolve) => {
    if (ms <= 0 || abort.signal.aborted || stopped) return resolve();
    const done = () => {
      clearTimeout(t);
      abort.signal.removeEventListener('abort', done);
      sleepers.delete(done);
      resolve();
    };
    const t = setTimeout(done, ms);
    abort.signal.addEventListener('abort', done, { once: true });
    sleepers.add(done);
  });

  // Takes the next start slot; false when no iteration may start any more.
  const takeSlot = async () => {
    if (started >= maxIterations) return false;
    if (interval) {
      const slot = Math.max(nextSlot, performance.now());
      if (slot >= stopStartsAt) return false;
      nextSlot = slot + interval;
      await wait(slot - performance.now());
    }
    if (performance.now() >= stopStartsAt || abort.signal.aborted || started >= maxIterations) return false;
    started++;
    return true;
  };

  const vu = async (id) => {
    const state = { id, n: 0 };
    await wait(concurrency > 1 ? (rampS * 1000 * id) / concurrency : 0);
    while (await takeSlot()) {
      metrics.iterationStarted();
      state.n++;
      try {
        await iterate(state, { signal: abort.signal, stopping: () => stopped });
      } catch (e) {
        // A scenario records its own failures; this is what escaped it.
        metrics.fail(state.op || 'iteration', `exception: ${String(e?.message || e).split('\n')[0].slice(0, 80)}`, e?.stack);
      }
    }
    if (state.close) await state.close();
  };

  try {
    await Promise.all(Array.from({ length: concurrency }, (_, i) => vu(i)));
  } finally {
    clearTimeout(deadlineTimer);
    clearInterval(tick);
    metrics.sample();
  }
  return { startedAt: t0, endedAt: performance.now(), iterations: started, aborted: abort.signal.aborted, stopped };
}

// A promise that resolves once `fn()` is truthy, checked whenever
// `poke()` is called (events) - or rejects when `signal` aborts or `ms`
// passes. The way scenarios wait for a message: on the event, bounded.
export function waitEvent(signal, ms, what) {
  let resolveFn;
  let rejectFn;
  const p = new Promise((resolve, reject) => { resolveFn = resolve; rejectFn = reject; });
  const t = setTimeout(() => rejectFn(Object.assign(new Error(`timeout: ${what} (${Math.round(ms / 1000)} s)`), { kind: `timeout: ${what}` })), ms);
  const aborted = () => rejectFn(Object.assign(new Error(`aborted at the run deadline: ${what}`), { kind: `aborted at run deadline: ${what}` }));
  const dispose = onAbort(signal, aborted);
  const done = () => {
    clearTimeout(t);
    dispose();
  };
  p.then(done, done);
  p.catch(() => {});
  return { promise: p, resolve: resolveFn, reject: rejectFn };
}

// The latest any paced frame was sent, over the whole run: how well the
// load generator kept real time.
export const frameLag = { maxMs: 0 };

// Sends frames at real time: frame k at start + k*frameMs (drift-free:
// a late timer sends every frame that is due). Stops when `shouldStop()`
// or the signal aborts. Returns { frames, maxLagMs } once done.
export async function paced({ frameMs, frames, send, signal, shouldStop = () => false }) {
  const start = performance.now();
  let k = 0;
  let maxLag = 0;
  while (k < frames) {
    if (signal?.aborted || shouldStop()) break;
    const due = start + k * frameMs;
    const now = performance.now();
    if (now < due) {
      await new Promise((resolve) => setTimeout(resolve, due - now));
      continue;
    }
    maxLag = Math.max(maxLag, now - due);
    if (maxLag > frameLag.maxMs) frameLag.maxMs = maxLag;
    send(k);
    k++;
  }
  // The last frame plays for frameMs: the stream lasts until then.
  const end = start + k * frameMs;
  if (k === frames && !signal?.aborted && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, end - performance.now()));
  return { frames: k, maxLagMs: maxLag };
}

// Calls fn when the signal aborts (at once if it already has); returns
// the disposer, to call once the wait is over: a finished session must not
// stay reachable from the run's signal.
export function onAbort(signal, fn) {
  if (!signal) return () => {};
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}
