'use strict';
/*
 * Draws docs/benchmarks.svg from a results file (default bench/results/latest.json): throughput of
 * each scenario beside the two ceilings measured in the same run, and enqueue-to-receipt latency
 * of the paced runs. Plain SVG, no dependencies.
 *
 *   node bench/chart.js [results.json] [out.svg]
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;');
const fmt = (n) => (n >= 10_000 ? `${Math.round(n / 1000)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(Math.round(n)));

/** A horizontal bar chart: rows of {label, value, note?, colour}. */
function bars(x, y, width, title, unit, rows, scale) {
  const labelWidth = 300;
  const barArea = width - labelWidth - 90;
  const max = scale ?? Math.max(...rows.map((row) => row.value));
  const out = [`<text x="${x}" y="${y}" class="title">${escape(title)}</text>`];
  rows.forEach((row, i) => {
    const top = y + 16 + i * 26;
    const w = Math.max(1, (Math.min(row.value, max) / max) * barArea);
    out.push(`<text x="${x}" y="${top + 14}" class="label">${escape(row.label)}</text>`);
    out.push(`<rect x="${x + labelWidth}" y="${top}" width="${w.toFixed(1)}" height="18" fill="${row.colour}"/>`);
    out.push(`<text x="${(x + labelWidth + w + 6).toFixed(0)}" y="${top + 14}" class="value">${escape(fmt(row.value))}${unit}${row.note ? ' ' + escape(row.note) : ''}</text>`);
  });
  return { svg: out.join('\n'), height: 16 + rows.length * 26 + 24 };
}

/** Reads a results file and writes the chart. */
function draw(input = path.join(root, 'bench', 'results', 'latest.json'), output = path.join(root, 'docs', 'benchmarks.svg')) {
  const r = JSON.parse(fs.readFileSync(input, 'utf8'));
  const grey = '#9aa5b1';
  const blue = '#2f6fde';
  const amber = '#d9822b';
  const parts = [];
  let y = 30;
  const width = 860;

  const pipeline = r.references.pipelineCeiling?.perSecond ?? 0;
  const previous = r.previous;
  const throughput = [
    { label: 'HTTP ceiling (undici Pool.request)', value: r.references.httpCeiling?.perSecond ?? 0, colour: grey },
    { label: 'pipeline ceiling (BullMQ+HMAC+undici+INSERT)', value: pipeline, colour: grey },
    { label: 'Bellhop burst, single publishes', value: r.burst?.perSecond ?? 0, colour: blue },
    ...(previous?.burst ? [{ label: '  previous release', value: previous.burst.perSecond, colour: grey }] : []),
    { label: 'target: burst, single publishes', value: Math.max(1200, 0.35 * pipeline), colour: amber, note: '(1,200/s and 0.35 of the pipeline)' },
    { label: 'Bellhop burst through batch publish', value: r.batch?.perSecond ?? 0, colour: blue },
    ...(previous?.batch ? [{ label: '  previous release', value: previous.batch.perSecond, colour: grey }] : []),
    { label: 'target: batch publish', value: Math.max(2500, 0.8 * pipeline), colour: amber, note: '(2,500/s and 0.8 of the pipeline)' },
    { label: 'Bellhop ingest (publishes accepted)', value: r.ingest?.perSecond ?? 0, colour: blue },
    ...(previous?.ingest ? [{ label: '  previous release', value: previous.ingest.perSecond, colour: grey }] : []),
    { label: 'target: ingest', value: 1500, colour: amber },
  ];
  const first = bars(20, y, width, `Per second, same run, same machine (${r.machine.cpus} vCPUs, Node ${r.machine.node})`, '/s', throughput);
  parts.push(first.svg);
  y += first.height + 10;

  const paced = (r.paced ?? []).flatMap((p) => [
    { label: `paced ${p.rate}/s: p50`, value: p.p50Ms, colour: blue },
    { label: `paced ${p.rate}/s: p95`, value: p.p95Ms, colour: blue },
    { label: `paced ${p.rate}/s: p99`, value: p.p99Ms, colour: blue },
  ]);
  if (paced.length) {
    const cap = 2000;
    const rows = [...paced.map((row) => (row.value > cap ? { ...row, note: '(off the scale)' } : row)), { label: 'target p99 at 500/s', value: 100, colour: amber }, { label: 'target p99 at 1,000/s', value: 250, colour: amber }];
    const second = bars(20, y, width, 'Enqueue → receipt latency, after warm-up (scale cut at 2 s)', ' ms', rows, cap);
    parts.push(second.svg);
    y += second.height;
  }

  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" viewBox="0 0 ${width} ${y + 10}" font-family="Helvetica, Arial, sans-serif">
  <style>.title{font-size:14px;font-weight:bold;fill:#1f2933}.label{font-size:12px;fill:#323f4b}.value{font-size:12px;fill:#1f2933}</style>
  <rect width="100%" height="100%" fill="#ffffff"/>
  ${parts.join('\n')}
  <text x="20" y="${y + 4}" class="label">${escape(`bench/results/latest.json, ${r.date.slice(0, 10)}`)}</text>
  </svg>
  `;
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, svg);
  return output;
}

module.exports = { draw };

if (require.main === module) {
  const written = draw(process.argv[2], process.argv[3]);
  console.log(`written ${path.relative(root, written)}`);
}
