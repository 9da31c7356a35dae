/** linear (nn.Linear) against a float64 reference. */
import * as assert from 'uvu/assert';
import { ShapeError } from '../entry/node.js';
import { linear } from '../engine/ops/linear.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refLinear } from './ref/linear.js';

const t = suite('linear');
const asF32 = (a: Float64Array): Float64Array => Float64Array.from(Float32Array.from(a));

t('reference is right on a hand-computed case', () => {
  const y = refLinear(Float64Array.from([1, 2]), Float64Array.from([3, 4, 5, 6, 0, 1]), Float64Array.from([1, 0, -1]), 1, 2, 3);
  assert.equal(Array.from(y), [12, 17, 1]);
  assert.equal(Array.from(refLinear(Float64Array.from([1, 2, 3, 4]), Float64Array.from([1, -1]), null, 2, 2, 1)), [-1, -1]);
});

// [N, In, Out]: CANet's 256 x 256 at batch 1 and 3, and awkward sizes (In % 4 != 0 takes the scalar path).
const CASES: [number, number, number][] = [[1, 256, 256], [3, 256, 256], [1, 1, 1], [3, 3, 5], [2, 5, 17], [5, 17, 3], [7, 8, 12], [4, 12, 7], [9, 33, 6]];

t('forward matches float64 with and without bias (rel err < 1e-4)', async () => {
  const e = await testEngine();
  for (const [k, [n, inF, outF]] of CASES.entries()) {
    const x = asF32(randn(n * inF, 10 + k));
    const w = asF32(randn(outF * inF, 20 + k, -0.2, 0.2));
    const b = asF32(randn(outF, 30 + k));
    await e.scope(async () => {
      const xt = e.tensor(Float32Array.from(x), [n, inF]);
      const wt = e.tensor(Float32Array.from(w), [outF, inF]);
      const y = linear(xt, wt, e.tensor(Float32Array.from(b), [outF]));
      assert.equal(y.shape, [n, outF]);
      expectClose(await y.read(), refLinear(x, w, b, n, inF, outF), 1e-4, `linear ${n}x${inF} -> ${outF}`);
      expectClose(await linear(xt, wt, null).read(), refLinear(x, w, null, n, inF, outF), 1e-4, `linear ${n}x${inF} -> ${outF}, no bias`);
    });
  }
});

t('gradients of x, w and bias vs finite differences of float64 (rel err < 1e-4)', async () => {
  const e = await testEngine();
  const cases: [number, number, number, boolean][] = [[3, 5, 7, true], [1, 8, 4, false], [2, 17, 3, true], [5, 4, 4, true], [3, 12, 9, false], [1, 3, 1, true], [2, 256, 8, true]];
  for (const [k, [n, inF, outF, withBias]] of cases.entries()) {
    const inputs = [
      { name: 'x', shape: [n, inF], data: randn(n * inF, 40 + k) },
      { name: 'w', shape: [outF, inF], data: randn(outF * inF, 50 + k, -0.5, 0.5) },
      ...(withBias ? [{ name: 'bias', shape: [outF], data: randn(outF, 60 + k) }] : []),
    ];
    await gradCheck(e, {
      gpu: ([x, w, b]) => linear(x!, w!, b ?? null),
      ref: ([x, w, b]) => refLinear(x!, w!, b ?? null, n, inF, outF),
      inputs,
      tol: 1e-4,
      maxElements: 64,
      seed: k,
    });
  }
});

t('bad input throws a ShapeError naming the op, tensor and shapes before dispatching', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.tensor(new Float32Array(2 * 5), [2, 5]);
    const w = e.tensor(new Float32Array(3 * 5), [3, 5]);
    const dispatches = e.stats().dispatches;
    assert.throws(() => linear(e.tensor(new Float32Array(5), [5]), w, null), (err: Error) => err instanceof ShapeError && /linear: input .* must be \[N, In\], got \[5\]/.test(err.message));
    assert.throws(() => linear(x, e.tensor(new Float32Array(15), [3, 5, 1]), null), /linear: weight .* must be \[Out, In\], got \[3, 5, 1\]/);
    assert.throws(() => linear(x, e.tensor(new Float32Array(12), [3, 4]), null), /linear: weight .*\[3, 4\] must be \[Out, 5\] to match input .*\[2, 5\]/);
    assert.throws(() => linear(x, w, e.tensor(new Float32Array(5), [5])), /linear: bias .* must be \[3\] \(the rows of weight .*\[3, 5\]\), got \[5\]/);
    assert.throws(() => linear(e.tensor(new Float32Array(0), [0, 5]), w, null), /linear: input .*\[0, 5\] is empty/);
    assert.throws(() => linear(x, e.tensor(new Float32Array(0), [0, 5]), null), /linear: weight .*\[0, 5\] is empty/);
    assert.throws(() => linear(x, e.tensor(new Int32Array(15), [3, 5]), null), /linear: .* must be f32, got i32/);
    assert.is(e.stats().dispatches, dispatches, 'nothing was dispatched');
  });
});

t.run();
