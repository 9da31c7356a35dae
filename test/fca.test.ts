/** fcaFuse (Y = F * As * Ac + F) and its backward against float64 references. */
import * as assert from 'uvu/assert';
import { backward, ShapeError } from '../entry/node.js';
import { fcaFuse } from '../engine/ops/fca.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refFcaFuse, refFcaGrads } from './ref/fca.js';

const t = suite('fca');

// Channels: scalar blocks (1, 3, 5, 17) and vec4 blocks of one, two and four vec4s (4, 24, 16, 256).
const CASES: [number, number, number, number][] = [
  [1, 7, 9, 5],
  [3, 7, 9, 17],
  [3, 33, 17, 3],
  [1, 7, 9, 1],
  [3, 7, 9, 4],
  [1, 33, 17, 24],
  [3, 7, 9, 16],
  [1, 7, 9, 256],
];

const f32s = (n: number, seed: number, lo = -1, hi = 1) => Float64Array.from(Float32Array.from(randn(n, seed, lo, hi)));

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
  for (const [k, [n, h, w, c]] of CASES.entries()) {
    const F = f32s(n * h * w * c, 10 + k);
    const As = f32s(n * h * w, 20 + k, 0, 1);
    const Ac = f32s(n * c, 30 + k, 0, 1);
    await e.scope(async () => {
      const y = fcaFuse(e.tensor(Float32Array.from(F), [n, h, w, c]), e.tensor(Float32Array.from(As), [n, h, w, 1]), e.tensor(Float32Array.from(Ac), [n, c]));
      assert.equal(y.shape, [n, h, w, c]);
      expectClose(await y.read(), refFcaFuse(F, As, Ac, n, h * w, c), 1e-6, `fcaFuse [${n},${h},${w},${c}]`);
    });
  }
});

t('backward matches the exact float64 gradients (dF < 1e-6; dAs, dAc sums < 1e-5)', async () => {
  const e = await testEngine();
  for (const [k, [n, h, w, c]] of CASES.entries()) {
    const size = n * h * w * c;
    const F = f32s(size, 40 + k);
    const As = f32s(n * h * w, 50 + k, 0, 1);
    const Ac = f32s(n * c, 60 + k, 0, 1);
    // g > 0 and F > 0 here: the reductions then have no cancellation, so relative error is meaningful.
    const g = f32s(size, 70 + k, 0, 1);
    const Fp = F.map(Math.abs);
    const [dF, dAs, dAc] = refFcaGrads(g, Fp, As, Ac, n, h * w, c);
    await e.scope(async () => {
      const tf = e.tensor(Float32Array.from(Fp), [n, h, w, c]);
      const ts = e.tensor(Float32Array.from(As), [n, h, w, 1]);
      const tc = e.tensor(Float32Array.from(Ac), [n, c]);
      for (const x of [tf, ts, tc]) x.requiresGrad = true;
      backward(fcaFuse(tf, ts, tc), { gradOutput: e.tensor(Float32Array.from(g), [n, h, w, c]) });
      const what = `[${n},${h},${w},${c}]`;
      expectClose(await tf.grad!.read(), dF, 1e-6, `dF ${what}`);
      expectClose(await ts.grad!.read(), dAs, 1e-5, `dAs ${what}`);
      expectClose(await tc.grad!.read(), dAc, 1e-5, `dAc ${what}`);
    });
  }
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
