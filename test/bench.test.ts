/** `node bench/run.js --quick` works and writes the JSON fields the README and issue tracker rely on. */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './harness.js';

const t = suite('bench');

t('bench/run.js --quick: one small case, JSON with the documented fields', () => {
  const json = join(mkdtempSync(join(tmpdir(), 'canet-bench-')), 'out.json');
  const r = spawnSync(process.execPath, ['bench/run.js', '--quick', '--iters', '1', '--json', json], { encoding: 'utf8', timeout: 180_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^adapter: /m);
  const doc = JSON.parse(readFileSync(json, 'utf8'));
  assert.ok(doc.adapter && doc.date);
  const [c] = doc.results;
  for (const k of ['model', 'backbone', 'mode', 'batch', 'size', 'iterations', 'firstMs', 'minMs', 'medianMs', 'maxMs', 'imagesPerSecond', 'peakGpuBytes', 'forwardGflopPerImage', 'gflops', 'dispatches', 'steadyBuffersCreated', 'steadyBindGroupsCreated'])
    assert.ok(k in c, `field ${k}`);
  // A steady-state inference is one fused pass: within issue 10's 90 dispatches, and everything
  // comes from the pool and the bind-group cache.
  assert.ok(c.dispatches <= 90, `${c.dispatches} dispatches`);
  // The CPU part of a call, op by op and replayed from a captured plan (issue 21): measured, and
  // the plan replays exactly the dispatches of the op-by-op call.
  assert.ok(typeof c.cpu_ms === 'number' && c.cpu_ms > 0, `cpu_ms ${c.cpu_ms}`);
  assert.ok(c.plan && typeof c.plan.cpu_ms === 'number' && c.plan.cpu_ms > 0 && c.plan.medianMs > 0, `plan ${JSON.stringify(c.plan)}`);
  assert.is(c.plan.dispatches, c.dispatches, 'dispatches per replay');
  assert.is(c.steadyBuffersCreated, 0, 'buffers created by a steady-state call');
  assert.is(c.steadyBindGroupsCreated, 0, 'bind groups created by a steady-state call');
  // 20.3 G multiply-adds at 1024x512 (NETWORK.md) is 2.54 GFLOP at 256x128 (x2 for FLOPs, /16 for pixels).
  assert.ok(Math.abs(c.forwardGflopPerImage - (2 * 20.3) / 16) < 0.05 * ((2 * 20.3) / 16), `forward ${c.forwardGflopPerImage} GFLOP`);
}, { timeoutMs: 240_000 });

t('bench/run.js and bench/kernels.js: --help prints the options and exits; an unknown option is refused before any work (it used to start the full benchmark)', () => {
  for (const program of ['bench/run.js', 'bench/kernels.js']) {
    const help = spawnSync(process.execPath, [program, '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.is(help.status, 0, help.stderr);
    assert.match(help.stdout, /usage: node bench\/(run|kernels)\.js/);
    assert.match(help.stdout, /--quick/);
    const bad = spawnSync(process.execPath, [program, '--sise', '64x32'], { encoding: 'utf8', timeout: 30_000 });
    assert.is(bad.status, 2, bad.stdout + bad.stderr);
    assert.match(bad.stderr, /unknown option --sise[\s\S]*usage:/);
    assert.not.match(bad.stdout, /adapter:/, 'it started');
  }
});

t.run();
