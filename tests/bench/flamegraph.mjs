// flamegraph.mjs - renders folded stacks ("frame;frame;...;leaf count" per
// line, as run.sh's BENCH_PROFILE=1 writes them) as a self-contained SVG
// flame graph: the root at the bottom, each frame as wide as its share of the
// samples, one colour per library kind (kernel, the proxy's own code, other
// user code; kernel frames end in "_[k]"). No dependencies.
//
//   node tests/bench/flamegraph.mjs IN.folded OUT.svg [title]
import fs from 'node:fs';

const [input, output, title = 'byok-proxy'] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node flamegraph.mjs IN.folded OUT.svg [title]');
  process.exit(2);
}

// A tree of frames: { name, count, children: Map }.
const root = { name: 'all', count: 0, children: new Map() };
for (const line of fs.readFileSync(input, 'utf8').split('\n')) {
  const m = /^(.*) (\d+)$/.exec(line.trim());
  if (!m) continue;
  const n = Number(m[2]);
  root.count += n;
  let node = root;
  for (const f of m[1].split(';')) {
    let child = node.children.get(f);
    if (!child) node.children.set(f, (child = { name: f, count: 0, children: new Map() }));
    child.count += n;
    node = child;
  }
}
if (root.count === 0) {
  console.error(`flamegraph.mjs: no samples in ${input}`);
  process.exit(1);
}

const WIDTH = 1600;
const ROW = 17;
const MIN_PX = 1.0; // frames narrower than this (px) are not drawn
let depthMax = 0;
const rects = [];
const walk = (node, x, depth) => {
  const w = (node.count / root.count) * WIDTH;
  if (w < MIN_PX) return;
  depthMax = Math.max(depthMax, depth);
  rects.push({ node, x, w, depth });
  let cx = x;
  const kids = [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const k of kids) {
    walk(k, cx, depth + 1);
    cx += (k.count / root.count) * WIDTH;
  }
};
walk(root, 0, 0);

const HEADER = 40;
const height = HEADER + (depthMax + 1) * ROW + 10;
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
// Colour by kind of frame, varied a little by name so neighbours differ.
const hash = (s) => { let h = 0; for (const c of s) h = (h * 31 + c.charCodeAt(0)) >>> 0; return h; };
const colour = (name) => {
  const v = hash(name) % 40;
  if (name.endsWith('_[k]')) {
    return `rgb(${200 + (v % 40)},${120 + v},${60})`; // kernel: orange
  }
  if (/^(exchange|http|upstream|resolve|route|meter|usage|sse|dataplane|crypto|conn_|feed|deliver|send_some|on_|finish|start_upstream|read_|store|sq_|ledger|writer|process_input|dispatch|commit_batch|charge|pricing|metrics|fleet|live)/.test(name)) {
    return `rgb(${80 + v},${150 + v},${220})`; // the proxy's own code: blue
  }
  return `rgb(${210 + (v % 40)},${190 + v},${90})`; // libraries: yellow
};
const out = [];
out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="monospace" font-size="11">`);
out.push(`<rect width="100%" height="100%" fill="#fdfdf6"/>`);
out.push(`<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="15">${esc(title)}</text>`);
out.push(`<text x="${WIDTH / 2}" y="34" text-anchor="middle" fill="#555">${root.count} samples; width = share of CPU samples; kernel orange, byok-proxy blue, libraries yellow</text>`);
for (const { node, x, w, depth } of rects) {
  const y = height - 10 - (depth + 1) * ROW;
  const pct = ((node.count / root.count) * 100).toFixed(2);
  out.push(`<g><title>${esc(node.name)} (${node.count} samples, ${pct} %)</title>` +
    `<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 1}" fill="${colour(node.name)}" rx="2"/>`);
  const chars = Math.floor((w - 6) / 6.6);
  if (chars >= 3) {
    const label = node.name.length > chars ? node.name.slice(0, chars - 2) + '..' : node.name;
    out.push(`<text x="${(x + 3).toFixed(2)}" y="${y + ROW - 5}">${esc(label)}</text>`);
  }
  out.push('</g>');
}
out.push('</svg>');
fs.writeFileSync(output, out.join('\n') + '\n');
console.log(`flame graph: ${output} (${rects.length} frames drawn, ${root.count} samples)`);
