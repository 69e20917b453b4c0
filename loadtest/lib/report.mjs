// report.mjs - the run's summary as a table on stdout and as a
// self-contained HTML page (inline SVG and CSS: no script, no fetch, no
// font from the network) with latency, throughput, active sessions and
// errors over time, latency per operation, the summary table, the
// exactness verdict and the run parameters. Never a key.
import { esc, fmtNum, lineChart, barChart, rangeBars } from './charts.mjs';

const ms = (v) => (v === null || v === undefined ? '–' : `${fmtNum(v)}`);

function bytesText(n) {
  if (!n) return '–';
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

// Operations in the order the scenario lists them, the primary first.
function opOrder(summary) {
  const names = Object.keys(summary.result.ops);
  const p = summary.result.primary;
  return [p, ...names.filter((n) => n !== p)].filter((n) => summary.result.ops[n]);
}

function pad(s, n, right = false) {
  s = String(s);
  return right ? s.padStart(n) : s.padEnd(n);
}

export function textReport(summary) {
  const r = summary.result;
  const out = [];
  out.push(`byok-proxy load test: ${summary.scenario} - ${summary.description}`);
  out.push(`${summary.params.concurrency} at once, ${summary.params.duration_s} s (ramp ${summary.params.ramp_s} s${summary.params.rate ? `, rate ${summary.params.rate}/s` : ''}); ran ${summary.elapsed_s} s, ${r.iterations} iteration(s), peak ${r.peak_active} session(s) open` +
    (summary.tenant_id ? `; tenant ${summary.tenant_id}` : ''));
  out.push('');
  const head = ['operation', 'count', 'ok', 'err', 'per s', 'TTFB p50', 'p95', 'p99', 'total p50', 'p95', 'p99', 'received'];
  const rows = opOrder(summary).map((n) => {
    const o = r.ops[n];
    return [n, o.count, o.ok, o.errors, fmtNum(o.per_second), ms(o.ttfb_ms.p50), ms(o.ttfb_ms.p95), ms(o.ttfb_ms.p99),
      ms(o.total_ms.p50), ms(o.total_ms.p95), ms(o.total_ms.p99), bytesText(o.bytes_received)];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => String(row[i]).length)));
  const line = (cells) => cells.map((c, i) => pad(c, widths[i], i > 0)).join('  ');
  out.push(line(head));
  for (const row of rows) out.push(line(row));
  out.push('(milliseconds; TTFB = first byte/token/audio of each operation, see the README for each scenario\'s definitions)');
  out.push('');
  if (r.errors.length) {
    out.push(`errors by kind (${r.errors_total}):`);
    for (const e of r.errors) {
      out.push(`  ${pad(e.count, 6, true)}  ${e.kind}  (${Object.entries(e.ops).map(([k, v]) => `${k} ${v}`).join(', ')})${e.example ? ` - ${e.example.split('\n')[0].slice(0, 120)}` : ''}`);
    }
  } else {
    out.push('errors: none');
  }
  out.push('');
  const x = summary.exactness;
  if (!x.checked) {
    out.push(`exactness: NOT CHECKED - ${x.reason}`);
  } else {
    out.push(`exactness: ${x.verdict} (${x.figures.records} record(s), Σ charged ${x.figures.charged_micros} µUSD, balance drop ${x.figures.balance_drop_micros} µUSD)`);
    for (const c of x.checks) out.push(`  ${c.pass ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
    if (x.note) out.push(`  note: ${x.note}`);
  }
  out.push('');
  const g = summary.generator;
  out.push(`load generator: event-loop delay p99 ${fmtNum(g.event_loop_delay_p99_ms)} ms, max ${fmtNum(g.event_loop_delay_max_ms)} ms; audio frames late by up to ${fmtNum(g.max_frame_lag_ms)} ms` +
    (g.saturated ? '\n  WARNING: the load generator was saturated: the latencies include its own delay (run fewer users per process, or several processes)' : ''));
  out.push(`verdict: ${summary.verdict}${summary.verdict_reasons.length ? ` - ${summary.verdict_reasons.join('; ')}` : ''}`);
  return out.join('\n');
}

const CSS = `
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f6f7f9; --card:#fff;
  --p50:#2563eb; --p95:#f59e0b; --p99:#dc2626; --ok:#059669; --bad:#dc2626; --act:#7c3aed; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 40px; }
header h1 { font-size: 22px; margin: 0 0 2px; }
header .sub { color: var(--muted); }
.verdict { display:flex; gap:12px; margin:16px 0; flex-wrap: wrap; }
.badge { border-radius:10px; padding:10px 16px; font-weight:600; color:#fff; display:flex; flex-direction:column; min-width: 200px; }
.badge small { font-weight:400; opacity:.9; }
.badge.warn { background: #d97706; }
.badge.pass { background: var(--ok); } .badge.fail { background: var(--bad); } .badge.none { background:#6b7280; }
.kpis { display:grid; grid-template-columns: repeat(auto-fit, minmax(150px,1fr)); gap:12px; margin: 8px 0 18px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.kpi .v { font-size: 24px; font-weight: 650; }
.kpi .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:14px 16px 8px; margin-bottom:16px; }
.card h2 { font-size: 15px; margin: 0 0 2px; }
.card .hint { color: var(--muted); font-size: 12px; margin-bottom: 6px; }
.legend { display:flex; gap:14px; font-size: 12px; color: var(--muted); margin: 2px 0 4px; flex-wrap: wrap; }
.legend i { display:inline-block; width:12px; height:3px; border-radius:2px; vertical-align: middle; margin-right:5px; }
.legend i.sq { height:10px; width:10px; }
svg.chart { width:100%; height:auto; display:block; }
svg .grid { stroke:#eef0f3; } svg .axis { stroke:#9ca3af; } svg .xtick { stroke:#9ca3af; }
svg .tick { fill:#6b7280; font-size: 11px; } svg .label { fill:#9ca3af; font-size: 11px; } svg .cat { fill: var(--fg); font-size: 12.5px; }
svg .line { fill:none; stroke-width:2.2; stroke-linejoin: round; stroke-linecap: round; }
svg .area { opacity:.14; stroke:none; }
svg .ramp { fill:#f3f4f6; } svg .end { stroke:#9ca3af; stroke-dasharray: 4 3; } svg .mark { fill:#9ca3af; font-size: 10.5px; }
svg .bar.p50 { fill: var(--p50); } svg .bar.p95 { fill: #93c5fd; } svg .p99 { stroke: var(--p99); stroke-width: 2.5; }
table { border-collapse: collapse; width:100%; font-variant-numeric: tabular-nums; }
th, td { text-align:right; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th:first-child, td:first-child { text-align:left; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
tr.primary td { font-weight: 650; }
td.err { color: var(--bad); font-weight: 600; }
ul.checks { list-style: none; padding: 0; margin: 4px 0 8px; }
ul.checks li { padding: 6px 0; border-bottom: 1px solid var(--line); display:flex; gap: 10px; }
ul.checks li:last-child { border-bottom: none; }
.mark { font-weight:700; width: 44px; flex: none; }
.mark.ok { color: var(--ok); } .mark.bad { color: var(--bad); }
.detail { color: var(--muted); }
dl.params { display:grid; grid-template-columns: max-content 1fr max-content 1fr max-content 1fr; gap: 4px 14px; margin: 6px 0 10px; }
@media (max-width: 900px) { dl.params { grid-template-columns: max-content 1fr; } }
dl.params dt { color: var(--muted); } dl.params dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.none { color: var(--muted); padding: 12px 0 16px; }
footer { color: var(--muted); font-size: 12px; margin-top: 10px; }
`;

function legend(items) {
  return `<div class="legend">${items.map(([name, color, sq]) => `<span><i class="${sq ? 'sq' : ''}" style="background:${color}"></i>${esc(name)}</span>`).join('')}</div>`;
}

export function htmlReport(summary) {
  const r = summary.result;
  const prim = r.ops[r.primary] || { ok: 0, ttfb_ms: {}, total_ms: {}, per_second: 0 };
  const series = r.series;
  const xMax = Math.max(1, series.length);
  const pt = (key) => series.map((s) => [s.t + 0.5, s[key]]);
  // The ramp (shaded) and the end of the duration (dashed: no iteration
  // starts after it; what runs then finishes).
  const marks = { ramp: summary.params.ramp_s || 0, end: summary.params.duration_s };
  const latency = lineChart({
    xMax,
    marks,
    yUnit: 'ms',
    series: [
      { name: 'TTFB p50', color: '#2563eb', points: pt('ttfb_p50') },
      { name: 'TTFB p95', color: '#f59e0b', points: pt('ttfb_p95') },
      { name: 'TTFB p99', color: '#dc2626', points: pt('ttfb_p99') },
      { name: 'total p50', color: '#64748b', dash: true, points: pt('total_p50') },
    ],
  });
  const throughput = barChart({
    xMax,
    marks,
    bars: series.map((s) => ({ x: s.t, stack: [{ v: s.done, color: '#10b981', name: `${r.primary} ok` }, { v: s.errors, color: '#ef4444', name: 'errors' }] })),
  });
  const active = lineChart({ xMax, marks, series: [{ name: 'active sessions', color: '#7c3aed', area: true, points: series.map((s) => [s.t + 0.5, s.active]) }] });
  const opNames = opOrder(summary);
  const byOp = rangeBars({
    rows: opNames.filter((n) => r.ops[n].ttfb_ms.count).map((n) => ({ label: n, p50: r.ops[n].ttfb_ms.p50, p95: r.ops[n].ttfb_ms.p95, p99: r.ops[n].ttfb_ms.p99 })),
  });
  const x = summary.exactness;
  const exBadge = !x.checked
    ? `<div class="badge none">Exactness not checked<small>${esc(x.reason)}</small></div>`
    : `<div class="badge ${x.verdict === 'PASS' ? 'pass' : 'fail'}">Exactness ${esc(x.verdict)}<small>${esc(x.figures.records)} records · Σ charged ${esc(x.figures.charged_micros)} µUSD · drop ${esc(x.figures.balance_drop_micros)} µUSD</small></div>`;
  const genBadge = summary.generator.saturated
    ? `<div class="badge warn">Load generator saturated<small>event-loop p99 ${esc(fmtNum(summary.generator.event_loop_delay_p99_ms))} ms · frames up to ${esc(fmtNum(summary.generator.max_frame_lag_ms))} ms late: latencies include its delay</small></div>`
    : '';
  const runBadge = `<div class="badge ${summary.verdict === 'PASS' ? 'pass' : 'fail'}">Run ${esc(summary.verdict)}<small>${esc(summary.verdict_reasons.join('; ') || `${r.errors_total} errors`)}</small></div>`;
  const kpi = (v, k) => `<div class="kpi"><div class="v">${v}</div><div class="k">${esc(k)}</div></div>`;
  const kpis = [
    kpi(esc(fmtNum(prim.per_second)), `${r.primary} / s`),
    kpi(`${esc(ms(prim.ttfb_ms.p50))}<small> ms</small>`, `${r.primary} TTFB p50`),
    kpi(`${esc(ms(prim.ttfb_ms.p99))}<small> ms</small>`, `${r.primary} TTFB p99`),
    kpi(`${esc(ms(prim.total_ms.p95))}<small> ms</small>`, `${r.primary} total p95`),
    kpi(esc(r.errors_total), 'errors'),
    kpi(esc(r.peak_active), 'peak sessions open'),
  ].join('');
  const rows = opNames.map((n) => {
    const o = r.ops[n];
    return `<tr class="${n === r.primary ? 'primary' : ''}"><td>${esc(n)}</td><td>${o.count}</td><td>${o.ok}</td><td class="${o.errors ? 'err' : ''}">${o.errors}</td><td>${esc(fmtNum(o.per_second))}</td>` +
      `<td>${ms(o.ttfb_ms.p50)}</td><td>${ms(o.ttfb_ms.p95)}</td><td>${ms(o.ttfb_ms.p99)}</td>` +
      `<td>${ms(o.total_ms.p50)}</td><td>${ms(o.total_ms.p95)}</td><td>${ms(o.total_ms.p99)}</td><td>${esc(bytesText(o.bytes_received))}</td></tr>`;
  }).join('');
  const errTotal = r.errors_total || 1;
  const errors = r.errors.length
    ? `<table><tr><th>kind</th><th>count</th><th>share</th><th>operations</th><th style="text-align:left">example</th></tr>${r.errors.map((e) =>
      `<tr><td>${esc(e.kind)}</td><td class="err">${e.count}</td><td>${Math.round((100 * e.count) / errTotal)} %</td><td>${esc(Object.entries(e.ops).map(([k, v]) => `${k} ${v}`).join(', '))}</td><td style="text-align:left;white-space:normal" class="detail">${esc((e.example || '').slice(0, 160))}</td></tr>`).join('')}</table>`
    : '<div class="none">No errors.</div>';
  const checks = !x.checked ? `<div class="none">${esc(x.reason)}</div>`
    : `<ul class="checks">${x.checks.map((c) => `<li><span class="mark ${c.pass ? 'ok' : 'bad'}">${c.pass ? '✓ ok' : '✗ FAIL'}</span><span><b>${esc(c.name)}</b><br><span class="detail">${esc(c.detail)}</span></span></li>`).join('')}</ul>` +
      (x.note ? `<div class="hint">${esc(x.note)}</div>` : '');
  const params = Object.entries(summary.params).filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(typeof v === 'object' ? JSON.stringify(v) : v)}</dd>`).join('');
  const g = summary.generator;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>byok-proxy load test · ${esc(summary.scenario)} · ${esc(summary.verdict)}</title>
<style>${CSS}</style></head>
<body><main>
<header><h1>Load test · ${esc(summary.scenario)}</h1>
<div class="sub">${esc(summary.description)}<br>${esc(summary.params.concurrency)} at once for ${esc(summary.params.duration_s)} s (ramp ${esc(summary.params.ramp_s)} s${summary.params.rate ? `, ${esc(summary.params.rate)}/s` : ''}) · ran ${esc(summary.elapsed_s)} s · ${esc(r.iterations)} iterations · ${esc(summary.started_at)}${summary.tenant_id ? ` · tenant ${esc(summary.tenant_id)}` : ''}</div></header>
<div class="verdict">${runBadge}${exBadge}${genBadge}</div>
<div class="kpis">${kpis}</div>
<div class="grid2">
<section class="card" id="latency"><h2>Latency over time</h2><div class="hint">${esc(r.primary)}: TTFB percentiles of the operations that finished in each second</div>
${legend([['TTFB p50', '#2563eb'], ['TTFB p95', '#f59e0b'], ['TTFB p99', '#dc2626'], ['total p50', '#64748b']])}${latency}</section>
<section class="card" id="throughput"><h2>Throughput</h2><div class="hint">${esc(r.primary)} finished per second, and errors</div>
${legend([[`${r.primary} ok`, '#10b981', true], ['errors', '#ef4444', true]])}${throughput}</section>
<section class="card" id="active"><h2>Active sessions</h2><div class="hint">the most sessions open at once in each second (calls, sockets, conversations; for chat, requests in flight)</div>${legend([['active sessions', '#7c3aed']])}${active}</section>
<section class="card" id="byop"><h2>TTFB by operation</h2><div class="hint">bar to p50, light bar to p95, red tick at p99 (ms)</div>${legend([['p50', '#2563eb', true], ['p95', '#93c5fd', true], ['p99', '#dc2626']])}${byOp}</section>
</div>
<section class="card" id="summary"><h2>Summary</h2><div class="hint">milliseconds; each operation's TTFB and total are measured from its own start</div>
<table><tr><th>operation</th><th>count</th><th>ok</th><th>errors</th><th>per s</th><th>TTFB p50</th><th>p95</th><th>p99</th><th>total p50</th><th>p95</th><th>p99</th><th>received</th></tr>${rows}</table></section>
<section class="card" id="errors"><h2>Errors by kind</h2>${errors}</section>
<section class="card" id="exactness"><h2>Exactness: the proxy's records and balances</h2><div class="hint">records in the store vs what this run did; Σ charged vs the balance drop</div>${checks}</section>
<section class="card" id="params"><h2>Run</h2><dl class="params">${params}</dl>
<div class="hint">Load generator: event-loop delay p99 ${esc(fmtNum(g.event_loop_delay_p99_ms))} ms (max ${esc(fmtNum(g.event_loop_delay_max_ms))} ms); audio frames late by up to ${esc(fmtNum(g.max_frame_lag_ms))} ms. Figures are only as good as the generator keeps time: a p99 delay near the latencies measured means the generator, not the proxy, is the bottleneck.</div></section>
<footer>byok-proxy loadtest · ${esc(summary.kit_version)} · generated ${esc(summary.finished_at)}</footer>
</main></body></html>
`;
}
