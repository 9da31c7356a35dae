/**
 * Numeric safety beyond the per-op tests (softmax/cross-entropy at +-1e4 forward and loss
 * gradient: softmax.test.ts and loss.test.ts; batch norm over one pixel: batchnorm.test.ts;
 * checkLossFinite naming the step: loss.test.ts): the softmax backward at +-1e4, a whole CANet
 * training step where batch norm sees one pixel and constant input, and `canet train` stopping
 * cleanly at the first non-finite loss unless --continue-on-nan.
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ops, backward, canet, SGD, trainStep } from '../entry/node.js';
import { parseSafetensors } from '../weights/safetensors.js';
import { suite } from './harness.js';
import { rng, testEngine, expectClose } from './gpu.js';
import { refSoftmax } from './ref/softmax.js';

const t = suite('numeric-safety');

t('softmax backward at logits of +-1e4 is finite and equals y * (g - sum(g * y)) in float64 (rel err < 1e-5)', async () => {
  const e = await testEngine();
  for (const l of [3, 19, 70]) {
    const r = rng(l);
    const x = Float32Array.from({ length: 6 * l }, () => (r() < 0.4 ? 1e4 : r() < 0.5 ? -1e4 : 1e4 - 20 * r()));
    const g = Float32Array.from({ length: 6 * l }, () => 2 * r() - 1);
    const y = refSoftmax(x, l);
    const dx = new Float64Array(x.length);
    for (let row = 0; row < x.length; row += l) {
      let s = 0;
      for (let k = 0; k < l; k++) s += g[row + k]! * y[row + k]!;
      for (let k = 0; k < l; k++) dx[row + k] = y[row + k]! * (g[row + k]! - s);
    }
    await e.scope(async () => {
      const xt = e.tensor(x, [2, 3, l]);
      xt.requiresGrad = true;
      const yt = ops.softmax(xt);
      backward(yt, { gradOutput: e.tensor(g, [2, 3, l]) });
      const got = await xt.grad!.read();
      assert.ok(got.every(Number.isFinite), `softmax gradient finite, l = ${l}`);
      expectClose(await yt.read(), y, 1e-5, `softmax, l = ${l}`);
      expectClose(got, dx, 1e-5, `softmax gradient, l = ${l}`, 1e-6);
    });
  }
});

t('a CANet training step on constant images at 32x32 (batch norm over one pixel at 1/32): loss, gradients and updated weights all finite', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 3, width: 0.125, seed: 2 });
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  for (const value of [0, 2.5]) {
    const images = e.tensor(new Float32Array(32 * 32 * 3).fill(value), [1, 32, 32, 3]);
    const labels = e.tensor(new Int32Array(32 * 32).fill(1), [1, 32, 32]);
    const loss = trainStep(model, opt, images, labels);
    const lv = (await loss.read())[0]!;
    assert.ok(Number.isFinite(lv), `loss ${lv} for constant ${value}`);
    for (const [name, p] of model.namedParameters()) {
      assert.ok((await p.grad!.read()).every(Number.isFinite), `${name}: gradient not finite (constant ${value})`);
      assert.ok((await p.read()).every(Number.isFinite), `${name}: weights not finite after the update (constant ${value})`);
    }
    for (const [name, s] of await model.stateDict()) assert.ok(s.data.every(Number.isFinite), `${name}: state not finite (constant ${value})`);
    [images, labels, loss].forEach((x) => x.dispose());
  }
  model.eval();
  const y = e.scope(() => e.noGrad(() => model.forward(e.tensor(new Float32Array(32 * 32 * 3).fill(1), [1, 32, 32, 3]))));
  assert.ok((await y.read()).every(Number.isFinite), 'eval forward after training on constant images');
  y.dispose();
  opt.dispose();
  model.dispose();
}, { timeoutMs: 120_000 });

// ------------------------------------------------------------------------------ canet train

const bin = join(process.cwd(), 'bin', 'canet.js');
const work = mkdtempSync(join(tmpdir(), 'canet-nan-'));
// An absurd learning rate: step 1's update leaves finite but huge weights, step 2's loss is NaN.
const BLOWUP = ['train', '--synthetic', '8', '--val-synthetic', '0', '--size', '64x32', '--batch', '1', '--width', '0.125', '--head', 'plain', '--lr', '1e30', '--checkpoint-every', '1', '--steps', '5'];

function canetRun(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: work, encoding: 'utf8', timeout: 200_000, env: { ...process.env, CANET_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const metrics = (dir: string) => readFileSync(join(work, dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss: number | null; nonFinite?: boolean });

t('canet train stops cleanly at the first non-finite loss, naming the step; the last checkpoint stays good', () => {
  const r = canetRun([...BLOWUP, '--out', 'stop']);
  assert.is(r.code, 1, r.err + r.out);
  assert.match(r.err, /canet train: non-finite loss at step 2 \(NaN\); training stopped; the last good checkpoint is stop\/checkpoint\.safetensors \(step 1\)/);
  assert.match(r.err, /--continue-on-nan/);
  assert.ok(!/\n\s+at /.test(r.err), `stack trace printed: ${r.err}`);
  const m = metrics('stop');
  assert.equal(m.map((x) => x.step), [1], 'metrics stop at the last finite step');
  assert.ok(m.every((x) => Number.isFinite(x.loss)));
  // The checkpoint is a complete, finite file from step 1 (parseSafetensors refuses NaN/Inf).
  const ckpt = parseSafetensors(readFileSync(join(work, 'stop', 'checkpoint.safetensors')));
  assert.is(ckpt.metadata.step, '1');
  assert.ok(!existsSync(join(work, 'stop', 'model.safetensors')), 'no final model from a failed run');
}, { timeoutMs: 240_000 });

t('canet train --continue-on-nan trains on, records each non-finite step, and never writes a non-finite checkpoint or model', () => {
  const r = canetRun([...BLOWUP, '--out', 'cont', '--continue-on-nan']);
  assert.match(r.out, /step 2: non-finite loss \(NaN\); continuing \(--continue-on-nan\)/);
  assert.match(r.out, /4 step\(s\) had a non-finite loss \(first: step 2\)/);
  const m = metrics('cont');
  assert.equal(m.map((x) => x.step), [1, 2, 3, 4, 5], 'every step ran');
  assert.equal(m.filter((x) => x.nonFinite).map((x) => x.step), [2, 3, 4, 5]);
  assert.ok(m.filter((x) => x.nonFinite).every((x) => x.loss === null));
  // The weights are NaN after step 2: the checkpoint is still step 1's, and no model was written.
  assert.is(parseSafetensors(readFileSync(join(work, 'cont', 'checkpoint.safetensors'))).metadata.step, '1');
  assert.is(r.code, 1, r.err);
  assert.match(r.err, /the weights are non-finite after step 5; cont\/model\.safetensors was not written; the last good checkpoint is cont\/checkpoint\.safetensors \(step 1\)/);
  assert.ok(!existsSync(join(work, 'cont', 'model.safetensors')));
}, { timeoutMs: 240_000 });

t.run();
