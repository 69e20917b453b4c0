// charts.mjs - small inline-SVG charts for the HTML report (no library, no
// network): a line chart over time, a bar chart over time, and horizontal
// bars per category with percentile markers. Every function returns an
// SVG string; numbers are escaped, text is escaped.

export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// A "nice" axis: ticks at 1, 2, 2.5 or 5 × 10^k covering [0, max].
export function niceTicks(max, count = 5) {
  if (!(max > 0)) return { max: 1, ticks: [0, 0.5, 1] };
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return { max: top, ticks };
}

export function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return v.toFixed(2).replace(/\.?0+$/, '') || '0';
}

const PAD = { l: 56, r: 16, t: 14, b: 34 };

function frame({ w, h, xMax, yMax, yTicks, yUnit, xLabel, marks }) {
  const pw = w - PAD.l - PAD.r;
  const ph = h - PAD.t - PAD.b;
  const X = (x) => PAD.l + (xMax > 0 ? (x / xMax) * pw : 0);
  const Y = (y) => PAD.t + ph - (yMax > 0 ? (y / yMax) * ph : 0);
  let g = '';
  if (marks?.ramp > 0) {
    g += `<rect class="ramp" x="${PAD.l}" y="${PAD.t}" width="${(X(Math.min(marks.ramp, xMax)) - PAD.l).toFixed(1)}" height="${ph}"><title>ramp: users starting</title></rect>`;
    g += `<text class="mark" x="${(PAD.l + 4).toFixed(1)}" y="${PAD.t + 11}">ramp</text>`;
  }
  if (marks?.end > 0 && marks.end < xMax) {
    g += `<line class="end" x1="${X(marks.end).toFixed(1)}" x2="${X(marks.end).toFixed(1)}" y1="${PAD.t}" y2="${PAD.t + ph}"><title>end of the duration: no new iterations</title></line>`;
    g += `<text class="mark" x="${(X(marks.end) + 4).toFixed(1)}" y="${PAD.t + 11}">end</text>`;
  }
  for (const t of yTicks) {
    g += `<line class="grid" x1="${PAD.l}" x2="${w - PAD.r}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}"/>`;
    g += `<text class="tick" x="${PAD.l - 8}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${esc(fmtNum(t))}${t === yTicks[yTicks.length - 1] && yUnit ? ` ${esc(yUnit)}` : ''}</text>`;
  }
  const xt = niceTicks(xMax, Math.min(8, Math.max(2, Math.floor(pw / 70))));
  for (const t of xt.ticks) {
    if (t > xMax + 1e-9) continue;
    g += `<line class="xtick" x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${PAD.t + ph}" y2="${PAD.t + ph + 4}"/>`;
    g += `<text class="tick" x="${X(t).toFixed(1)}" y="${PAD.t + ph + 17}" text-anchor="middle">${esc(fmtNum(t))}</text>`;
  }
  g += `<line class="axis" x1="${PAD.l}" x2="${w - PAD.r}" y1="${PAD.t + ph}" y2="${PAD.t + ph}"/>`;
  if (xLabel) g += `<text class="label" x="${w - PAD.r}" y="${h - 3}" text-anchor="end">${esc(xLabel)}</text>`;
  return { g, X, Y, pw, ph };
}

// series: [{ name, color, points: [[x, y|null], ...], dash?, area? }]
export function lineChart({ w = 560, h = 230, series, yUnit = '', xLabel = 'seconds into the run', xMax: xMaxIn, marks }) {
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const xMax = xMaxIn ?? Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const { max: yMax, ticks } = niceTicks(Math.max(0, ...all.map((p) => p[1])) * 1.05 || 1);
  const { g, X, Y, ph } = frame({ w, h, xMax, yMax, yTicks: ticks, yUnit, xLabel, marks });
  let body = '';
  for (const s of series) {
    // Segments of consecutive defined points.
    const segs = [];
    let cur = [];
    for (const [x, y] of s.points) {
      if (y === null || y === undefined) {
        if (cur.length) segs.push(cur);
        cur = [];
      } else cur.push([x, y]);
    }
    if (cur.length) segs.push(cur);
    for (const seg of segs) {
      const d = seg.map(([x, y], i) => `${i ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
      if (s.area && seg.length > 1) {
        body += `<path class="area" fill="${s.color}" d="${d}L${X(seg[seg.length - 1][0]).toFixed(1)},${(PAD.t + ph).toFixed(1)}L${X(seg[0][0]).toFixed(1)},${(PAD.t + ph).toFixed(1)}Z"/>`;
      }
      body += `<path class="line" data-series="${esc(s.name)}" stroke="${s.color}"${s.dash ? ' stroke-dasharray="5 4"' : ''} d="${d}"/>`;
      if (seg.length === 1 || seg.length <= 90) {
        for (const [x, y] of seg) {
          body += `<circle class="pt" cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="${seg.length === 1 ? 3 : 2.2}" fill="${s.color}"><title>${esc(s.name)} at ${esc(fmtNum(x))} s: ${esc(fmtNum(y))} ${esc(yUnit)}</title></circle>`;
        }
      }
    }
  }
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img">${g}${body}</svg>`;
}

// bars: [{ x, stack: [{ v, color, name }] }] - one column per second.
export function barChart({ w = 560, h = 230, bars, yUnit = '', xLabel = 'seconds into the run', xMax: xMaxIn, marks }) {
  const xMax = xMaxIn ?? Math.max(1, ...bars.map((b) => b.x + 1));
  const top = Math.max(0, ...bars.map((b) => b.stack.reduce((s, p) => s + p.v, 0)));
  const { max: yMax, ticks } = niceTicks(top * 1.05 || 1);
  const { g, X, Y } = frame({ w, h, xMax, yMax, yTicks: ticks, yUnit, xLabel, marks });
  const bw = Math.max(1, (X(1) - X(0)) * 0.78);
  let body = '';
  for (const b of bars) {
    let base = 0;
    for (const p of b.stack) {
      if (!(p.v > 0)) continue;
      const y0 = Y(base);
      const y1 = Y(base + p.v);
      body += `<rect class="bar" x="${(X(b.x) + (X(1) - X(0) - bw) / 2).toFixed(1)}" y="${y1.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0.5, y0 - y1).toFixed(1)}" fill="${p.color}"><title>${esc(p.name)} in second ${b.x}: ${esc(fmtNum(p.v))}</title></rect>`;
      base += p.v;
    }
  }
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img">${g}${body}</svg>`;
}

// rows: [{ label, p50, p95, p99, max? }] - a bar to p50, a lighter one to
// p95, a tick at p99: the latency of each operation at a glance.
export function rangeBars({ w = 560, rows, unit = 'ms' }) {
  const rowH = 30;
  const left = 150;
  const h = PAD.t + rows.length * rowH + PAD.b;
  const top = Math.max(1, ...rows.map((r) => r.p99 ?? r.p95 ?? r.p50 ?? 0));
  const { max, ticks } = niceTicks(top * 1.08);
  const pw = w - left - PAD.r - 40;
  const X = (v) => left + (v / max) * pw;
  let s = '';
  for (const t of ticks) {
    s += `<line class="grid" x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${PAD.t}" y2="${h - PAD.b}"/>`;
    s += `<text class="tick" x="${X(t).toFixed(1)}" y="${h - PAD.b + 16}" text-anchor="middle">${esc(fmtNum(t))}${t === ticks[ticks.length - 1] ? ` ${unit}` : ''}</text>`;
  }
  rows.forEach((r, i) => {
    const y = PAD.t + i * rowH + 6;
    s += `<text class="cat" x="${left - 10}" y="${y + 13}" text-anchor="end">${esc(r.label)}</text>`;
    if (r.p95 !== null && r.p95 !== undefined) s += `<rect class="bar p95" x="${left}" y="${y}" width="${Math.max(1, X(r.p95) - left).toFixed(1)}" height="18" rx="3"><title>p95 ${esc(fmtNum(r.p95))} ${unit}</title></rect>`;
    if (r.p50 !== null && r.p50 !== undefined) s += `<rect class="bar p50" x="${left}" y="${y}" width="${Math.max(1, X(r.p50) - left).toFixed(1)}" height="18" rx="3"><title>p50 ${esc(fmtNum(r.p50))} ${unit}</title></rect>`;
    if (r.p99 !== null && r.p99 !== undefined) {
      s += `<line class="p99" x1="${X(r.p99).toFixed(1)}" x2="${X(r.p99).toFixed(1)}" y1="${y - 3}" y2="${y + 21}"><title>p99 ${esc(fmtNum(r.p99))} ${unit}</title></line>`;
      s += `<text class="tick" x="${(X(r.p99) + 5).toFixed(1)}" y="${y + 13}">${esc(fmtNum(r.p99))}</text>`;
    }
  });
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img">${s}</svg>`;
}
