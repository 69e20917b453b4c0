// errors.mjs - one short "kind" per failure, so the report can count
// errors by kind: "http 402 insufficient_balance", "http 429 tenant_limit",
// "ws upgrade 402", "ws close 1008 insufficient_balance", "timeout: ...",
// "connection ECONNREFUSED", "realtime error <code>".

// An error thrown by the openai SDK (APIError and friends) or fetch.
export function httpErrorKind(e) {
  if (e?.kind) return e.kind;
  const name = e?.constructor?.name || e?.name || '';
  if (name === 'APIConnectionTimeoutError' || e?.name === 'TimeoutError') return 'timeout: no reply';
  if (name === 'APIUserAbortError' || e?.name === 'AbortError') return 'aborted at run deadline';
  if (typeof e?.status === 'number') {
    const code = e.code || e.error?.code || e.error?.error?.code || e.error?.detail?.status;
    return `http ${e.status}${code ? ` ${code}` : ''}`;
  }
  if (name === 'APIConnectionError') {
    const c = e.cause?.code || e.cause?.cause?.code;
    return `connection ${c || 'error'}`;
  }
  const c = e?.cause?.code || e?.code;
  if (c) return `connection ${c}`;
  return `error: ${String(e?.message || e).split('\n')[0].slice(0, 60)}`;
}

// A WebSocket that failed before or at its upgrade ("Unexpected server
// response: 402" from ws) or whose connection failed.
export function wsErrorKind(e) {
  if (e?.kind) return e.kind;
  const m = /Unexpected server response: (\d+)/.exec(e?.message || '');
  if (m) return `ws upgrade ${m[1]}`;
  const c = e?.code || e?.cause?.code;
  if (c) return `connection ${c}`;
  return `ws error: ${String(e?.message || e).split('\n')[0].slice(0, 60)}`;
}

export function closeKind(code, reason) {
  return `ws close ${code}${reason ? ` ${String(reason).slice(0, 40)}` : ''}`;
}

// Thrown inside a scenario to fail an operation with a chosen kind.
export function failure(kind, message = kind) {
  return Object.assign(new Error(message), { kind });
}
