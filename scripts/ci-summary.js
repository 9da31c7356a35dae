#!/usr/bin/env node
// .ci/run's last step: one `N passed, N failed[, N skipped]` line over several test runs.
// Usage: node scripts/ci-summary.js NAME=LOG [NAME=LOG ...]; a NAME ending in `?` may be an
// empty log (a run that was skipped, and said so). Each log holds test/run.js's output, whose
// summary line is its last line of that form (npm may print more after a failure); a log
// without one (a run that died) counts as one failure. Exits 1 when anything failed.
import { readFileSync } from 'node:fs';

const SUMMARY = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;
const total = { passed: 0, failed: 0, skipped: 0 };
const parts = [];
for (const arg of process.argv.slice(2)) {
  const at = arg.indexOf('=');
  const optional = arg.slice(0, at).endsWith('?');
  const name = arg.slice(0, at).replace(/\?$/, '');
  let text = '';
  try {
    text = readFileSync(arg.slice(at + 1), 'utf8');
  } catch {
    // A missing log is treated as an empty one.
  }
  const m = text.split('\n').map((l) => l.trim()).reverse().map((l) => SUMMARY.exec(l)).find(Boolean);
  if (!m) {
    if (optional && !text.trim()) {
      parts.push(`${name}: skipped`);
      continue;
    }
    total.failed++;
    parts.push(`${name}: no summary line (the run died)`);
    continue;
  }
  total.passed += Number(m[1]);
  total.failed += Number(m[2]);
  total.skipped += Number(m[3] ?? 0);
  parts.push(`${name}: ${m[0]}`);
}
console.log(`ci: ${parts.join('; ')}`);
console.log(`${total.passed} passed, ${total.failed} failed` + (total.skipped ? `, ${total.skipped} skipped` : ''));
process.exit(total.failed ? 1 : 0);
