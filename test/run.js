#!/usr/bin/env node
// Runs the built tests (dist/test/*.test.js) in one process under uvu and ends with the line
// `N passed, N failed` that CI reads. `node test/run.js conv pool` runs only files matching.
// Long tests (`*.long.test.ts`: minutes of soak) run by default, as in CI; CANET_SKIP_LONG=1
// leaves them out of a local run.
import { readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist', 'test');
if (!existsSync(dir)) {
  console.error('dist/test is missing: run `npm run build` (npm test does it for you).');
  process.exit(1);
}
const filters = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => !filters.length || filters.some((p) => f.includes(p)))
  .filter((f) => !(process.env.CANET_SKIP_LONG === '1' && f.includes('.long.')))
  .sort();

globalThis.UVU_DEFER = 1;
globalThis.UVU_QUEUE = [];
const counts = (globalThis.__canetCounts ??= { passed: 0, failed: 0, skipped: 0 });
const started = Date.now();
for (const [i, f] of files.entries()) {
  globalThis.UVU_INDEX = i;
  globalThis.UVU_QUEUE.push([f.replace(/\.js$/, '')]);
  try {
    await import(pathToFileURL(join(dir, f)).href);
  } catch (e) {
    counts.failed++;
    console.error(`\n${f}: failed to load: ${e?.stack ?? e}`);
  }
}
// Time each file (its suites run between the two markers) so the slowest show at the end: CI has a budget.
const fileSecs = [];
for (const group of globalThis.UVU_QUEUE) {
  const name = group[0];
  let t0 = 0;
  group.splice(1, 0, async () => ((t0 = Date.now()), [[], 0, 0, 0]));
  group.push(async () => (fileSecs.push([name, (Date.now() - t0) / 1000]), [[], 0, 0, 0]));
}
const { exec } = await import('uvu');
await exec();
const secs = ((Date.now() - started) / 1000).toFixed(1);
fileSecs.sort((a, b) => b[1] - a[1]);
console.log('slowest files: ' + fileSecs.slice(0, 8).map(([n, s]) => `${n} ${s.toFixed(0)} s`).join(', '));
console.log(`${files.length} test files in ${secs} s`);
console.log(`${counts.passed} passed, ${counts.failed} failed` + (counts.skipped ? `, ${counts.skipped} skipped` : ''));
process.exit(counts.failed ? 1 : 0);
