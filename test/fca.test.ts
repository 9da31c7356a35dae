/**
 * fcaFuse (Y = F * As * Ac + F) and its backward against float64 references (the shapes and the
 * runners are in test/cases/fca.ts, shared with the browser page).
 */
import * as assert from 'uvu/assert';
import { ShapeError } from '../entry/node.js';
import { fcaFuse } from '../engine/ops/fca.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refFcaFuse, refFcaGrads } from './ref/fca.js';
import { checkFcaBackward, checkFcaForward, FCA_SHAPES } from './cases/fca.js';

const t = suite('fca');

t('reference is right on a hand-computed case', () => {
  // F = [1, 2 | 3, 4] (2 pixels, 2 channels), As = [0.5, 2], Ac = [1, 3].
  assert.equal(Array.from(refFcaFuse([1, 2, 3, 4], [0.5, 2], [1, 3], 1, 2, 2)), [1.5, 5, 9, 28]);
  const [dF, dAs, dAc] = refFcaGrads([1, 1, 1, 1], [1, 2, 3, 4], [0.5, 2], [1, 3], 1, 2, 2);
  assert.equal(Array.from(dF), [1.5, 2.5, 3, 7]);
  assert.equal(Array.from(dAs), [7, 15]);
  assert.equal(Array.from(dAc), [6.5, 9]);
});

t('forward matches float64 (rel err < 1e-6: two f32 roundings)', async () => {
  const e = await testEngine();
  for (const k of FCA_SHAPES.keys()) await checkFcaForward(e, k);
});

t('backward matches the exact float64 gradients (dF < 1e-6; dAs, dAc sums < 1e-5)', async () => {
  const e = await testEngine();
  for (const k of FCA_SHAPES.keys()) await checkFcaBackward(e, k);
});

t('gradients vs finite differences (< 1e-3), all inputs and F alone; [N,H,W] and [N,1,1,C] attention shapes', async () => {
  const e = await testEngine();
  for (const [n, h, w, c] of [[1, 3, 5, 5], [3, 3, 5, 17], [2, 3, 3, 8]] as const) {
    const ref = ([F, As, Ac]: Float64Array[]) => refFcaFuse(F!, As!, Ac!, n, h * w, c);
    for (const only of [false, true]) {
      await gradCheck(e, {
        gpu: ([F, As, Ac]) => fcaFuse(F!, As!, Ac!),
        ref,
        inputs: [
          { name: 'F', shape: [n, h, w, c], data: randn(n * h * w * c, 1) },
          { name: 'As', shape: [n, h, w, 1], data: randn(n * h * w, 2, 0, 1), grad: !only },
          { name: 'Ac', shape: [n, c], data: randn(n * c, 3, 0, 1), grad: !only },
        ],
        tol: 1e-3,
        maxElements: 32,
      });
    }
    await gradCheck(e, {
      gpu: ([F, As, Ac]) => fcaFuse(F!, As!, Ac!),
      ref,
      inputs: [
        { name: 'F', shape: [n, h, w, c], data: randn(n * h * w * c, 4) },
        { name: 'As', shape: [n, h, w], data: randn(n * h * w, 5, 0, 1) },
        { name: 'Ac', shape: [n, 1, 1, c], data: randn(n * c, 6, 0, 1) },
      ],
      tol: 1e-3,
      maxElements: 24,
    });
  }
});

t('bad input throws a ShapeError naming op, tensor and shapes, before any dispatch', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const F = e.empty([2, 7, 9, 5]);
    F.name = 'feat';
    const As = e.empty([2, 7, 9, 1]);
    As.name = 'sa';
    const Ac = e.empty([2, 5]);
    Ac.name = 'ca';
    const before = e.stats().dispatches;
    assert.throws(() => fcaFuse(e.empty([7, 9, 5]), As, Ac), (err: Error) => err instanceof ShapeError && /^fcaFuse: F \(.*\) must be \[N, H, W, C\], got \[7, 9, 5\]/.test(err.message));
    assert.throws(() => fcaFuse(F, e.empty([2, 7, 9, 2]), Ac), /fcaFuse: As \(.*\) must be \[2, 7, 9, 1\] \(spatial attention of F \[2, 7, 9, 5\]\), got \[2, 7, 9, 2\]/);
    assert.throws(() => fcaFuse(F, e.empty([2, 9, 7, 1]), Ac), /fcaFuse: As .* got \[2, 9, 7, 1\]/);
    assert.throws(() => fcaFuse(F, As, e.empty([2, 6])), /fcaFuse: Ac \(.*\) must be \[2, 5\] \(channel attention of F \[2, 7, 9, 5\]\), got \[2, 6\]/);
    assert.throws(() => fcaFuse(F, As, e.empty([1, 5])), /fcaFuse: Ac .* must be \[2, 5\].* got \[1, 5\]/);
    assert.throws(() => fcaFuse(e.empty([2, 0, 9, 5]), e.empty([2, 0, 9, 1]), Ac), /fcaFuse: F .* \[2, 0, 9, 5\] has a zero size/);
    assert.throws(() => fcaFuse(F, As, e.empty([2, 5], 'i32')), /fcaFuse: .* must be f32, got i32/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
