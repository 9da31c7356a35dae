#!/usr/bin/env node
// The device kit's last step (bench/device/run.sh): merges the per-case JSON files of bench/run.js
// into OUT/ours.json and compares them with the PyTorch peer's OUT/torch.json in OUT/summary.json,
// printing the table. Plain JavaScript with no imports outside Node, so the bundle runs it as is.
//   node combine.js --cases-dir DIR --torch OUT/torch.json --out OUT
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const casesDir = arg('cases-dir');
const torchFile = arg('torch');
const out = arg('out');
if (!casesDir || !out) {
  console.error('usage: node combine.js --cases-dir DIR [--torch FILE] --out OUTDIR');
  process.exit(2);
}

const caseKey = (mode, size, batch) => `${mode} ${size[0]}x${size[1]} b${batch}`;
const files = existsSync(casesDir) ? readdirSync(casesDir).filter((f) => f.endsWith('.json')).sort((a, b) => parseInt(a.match(/\d+/)) - parseInt(b.match(/\d+/))) : [];
const docs = files.map((f) => JSON.parse(readFileSync(join(casesDir, f), 'utf8')));
const ours = {
  date: new Date().toISOString(),
  adapter: docs[0]?.adapter ?? null,
  features: docs[0]?.features ?? [],
  results: docs.flatMap((d) => d.results),
};
writeFileSync(join(out, 'ours.json'), JSON.stringify(ours, null, 2) + '\n');

let torch = null;
if (torchFile && existsSync(torchFile)) torch = JSON.parse(readFileSync(torchFile, 'utf8'));
const peer = (variant, r) => torch?.results?.find((t) => t.variant === variant && caseKey(t.mode, t.size, t.batch) === caseKey(r.mode, r.size, r.batch));
const rows = ours.results.map((r) => {
  const row = {
    case: caseKey(r.mode, r.size, r.batch),
    oursMs: r.medianMs,
    oursPlanMs: r.plan?.medianMs ?? null,
    oursImagesPerSecond: r.imagesPerSecond,
    oursCpuMs: r.cpu_ms,
    oursGflops: r.gflops,
  };
  for (const v of ['eager', 'eager-tf32', 'compile']) {
    const t = peer(v, r);
    row[`torch_${v}_ms`] = t ? t.medianMs : null;
    // > 1: ours is faster (ours op by op, as model.forward runs).
    row[`ratio_${v}`] = t ? t.medianMs / r.medianMs : null;
  }
  // The same against ours replayed from a captured plan (engine.capture).
  const e = peer('eager', r);
  row.ratio_eager_plan = e && r.plan?.medianMs ? e.medianMs / r.plan.medianMs : null;
  return row;
});
const summary = {
  date: ours.date,
  adapter: ours.adapter?.description ?? null,
  torchGpu: torch?.gpu ?? null,
  torch: torch?.torch ?? null,
  torchError: torch?.error ?? null,
  torchErrors: torch?.errors ?? [],
  note: 'ms are medians of one call (a batch); ratio_X = PyTorch X ms / ours ms op by op (ratio_eager_plan: / ours replayed from a captured plan); > 1 means ours is faster',
  rows,
};
writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');

const f = (v, d = 2) => (v === null || v === undefined ? '-' : v.toFixed(d));
console.log(`\nours on ${summary.adapter}; PyTorch ${summary.torch ?? '(none)'} on ${summary.torchGpu ?? '(none)'}${summary.torchError ? `: ${summary.torchError}` : ''}`);
console.log(`${'case'.padEnd(22)} ${'ours ms'.padStart(9)} ${'plan ms'.padStart(9)} ${'img/s'.padStart(8)} ${'eager ms'.padStart(9)} ${'ratio'.padStart(6)} ${'r.plan'.padStart(6)} ${'tf32 ms'.padStart(9)} ${'ratio'.padStart(6)} ${'compile'.padStart(9)} ${'ratio'.padStart(6)}`);
for (const r of rows)
  console.log(`${r.case.padEnd(22)} ${f(r.oursMs).padStart(9)} ${f(r.oursPlanMs).padStart(9)} ${f(r.oursImagesPerSecond, 1).padStart(8)} ${f(r.torch_eager_ms).padStart(9)} ${f(r.ratio_eager).padStart(6)} ${f(r.ratio_eager_plan).padStart(6)} ${f(r['torch_eager-tf32_ms']).padStart(9)} ${f(r['ratio_eager-tf32']).padStart(6)} ${f(r.torch_compile_ms).padStart(9)} ${f(r.ratio_compile).padStart(6)}`);
for (const e of summary.torchErrors) console.log(`  PyTorch ${e.case}: ${e.error.split('\n')[0].slice(0, 200)}`);
