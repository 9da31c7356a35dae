/** softmax (forward, backward) and argmax over the last axis against float64 references. */
import * as assert from 'uvu/assert';
import { ShapeError } from '../entry/node.js';
import { argmax, softmax } from '../engine/ops/softmax.js';
import { suite } from './harness.js';
import { expectClose, randn, rng, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { sizeOf } from './ref/broadcast.js';
import { refArgmax, refSoftmax } from './ref/softmax.js';

const t = suite('softmax');

// Row lengths: unrolled groups of four rows (odd), two rows (2 mod 4) and one row (0 mod 4), up to
// 32; looped rows beyond, scalar and vec4. Row counts of 63 and 15 leave a partial last group.
const LENGTHS = [1, 3, 5, 17, 19, 31, 2, 6, 30, 4, 8, 32, 33, 36, 100];

t('references are right on hand-computed cases', () => {
  expectClose(refSoftmax([0, Math.log(3), 1, 1], 2), [0.25, 0.75, 0.5, 0.5], 1e-15);
  expectClose(refSoftmax([1e4, -1e4], 2), [1, 0], 0);
  assert.equal(Array.from(refArgmax([1, 3, 3, 2, 0, 0, 0, -1], 4)), [1, 0]);
});

t('softmax matches float64 on rows of every kind (rel err < 1e-5)', async () => {
  const e = await testEngine();
  for (const [k, l] of LENGTHS.entries()) {
    for (const shape of [[1, 7, 9, l], [3, 5, l]]) {
      const x = Float32Array.from(randn(sizeOf(shape), 10 * k + shape.length, -6, 6));
      await e.scope(async () => {
        const y = softmax(e.tensor(x, shape));
        assert.equal(y.shape, shape);
        expectClose(await y.read(), refSoftmax(x, l), 1e-5, `softmax ${shape}`);
      });
    }
  }
});

t('softmax of logits of +-1e4 is finite and exact (no NaN), unrolled and looped rows', async () => {
  const e = await testEngine();
  for (const l of [4, 5, 40, 41]) {
    const x = new Float32Array(3 * l).fill(-1e4);
    x[0] = 1e4; // row 0: one dominant logit
    x[1] = 1e4 - 1; // and one close behind
    for (let k = 0; k < l; k++) x[l + k] = 1e4; // row 1: all equal and huge
    x[2 * l + l - 1] = -1e4 + 2; // row 2: all hugely negative, the last a little less so
    await e.scope(async () => {
      const y = await softmax(e.tensor(x, [3, l])).read();
      assert.ok(y.every((v) => Number.isFinite(v)), `finite for l = ${l}`);
      expectClose(y, refSoftmax(x, l), 1e-5, `softmax of +-1e4, l = ${l}`);
    });
  }
});

t('softmax gradient vs finite differences (< 1e-3)', async () => {
  const e = await testEngine();
  for (const [shape, seed] of [[[2, 3, 5], 1], [[3, 8], 2], [[2, 17], 3], [[3, 6], 6], [[2, 40], 4], [[2, 37], 5]] as [number[], number][]) {
    await gradCheck(e, {
      gpu: ([x]) => softmax(x!),
      ref: ([x]) => refSoftmax(x!, shape[shape.length - 1]!),
      inputs: [{ name: `x[${shape}]`, shape, data: randn(sizeOf(shape), seed, -3, 3) }],
      tol: 1e-3,
      maxElements: 40,
    });
  }
});

t('argmax returns the first index of the max (ties everywhere), as i32 of shape x.shape[:-1]', async () => {
  const e = await testEngine();
  for (const [k, l] of [...LENGTHS, 37].entries()) {
    const shape = [3, 7, l];
    const r = rng(100 + k);
    // Values from {0, 1, 2}: most rows hold the max several times.
    const x = Float32Array.from({ length: sizeOf(shape) }, () => Math.floor(3 * r()));
    await e.scope(async () => {
      const out = argmax(e.tensor(x, shape));
      assert.is(out.dtype, 'i32');
      assert.equal(out.shape, [3, 7]);
      assert.equal(Array.from(await out.read()), Array.from(refArgmax(x, l)), `argmax l = ${l}`);
    });
  }
  await e.scope(async () => {
    const out = argmax(e.tensor(Float32Array.from([-3, 1e4, -1e4, 1e4]), [4]));
    assert.equal(out.shape, []);
    assert.equal(Array.from(await out.read()), [1]);
  });
});

t('bad input throws a ShapeError naming op, tensor and shape, before any dispatch', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const before = e.stats().dispatches;
    const z = e.empty([3, 0]);
    z.name = 'logits';
    assert.throws(() => softmax(z), (err: Error) => err instanceof ShapeError && /^softmax: logits \[3, 0\] has an empty last axis/.test(err.message));
    assert.throws(() => argmax(z), /argmax: logits \[3, 0\] has an empty last axis/);
    assert.throws(() => softmax(e.empty([])), /softmax: .* is a scalar \(shape \[\]\)/);
    assert.throws(() => softmax(e.empty([3, 4], 'i32')), /softmax: .* must be f32, got i32/);
    assert.throws(() => argmax(e.empty([3, 4], 'u32')), /argmax: .* must be f32, got u32/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
