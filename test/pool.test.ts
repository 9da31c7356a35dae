/** globalAvgPool, globalMaxPool and maxPool2d against float64 references of PyTorch's pooling. */
import * as assert from 'uvu/assert';
import { backward, ShapeError, type Tensor } from '../entry/node.js';
import { globalAvgPool, globalMaxPool, maxPool2d, type MaxPoolOptions } from '../engine/ops/pool.js';
import { kernelFamily } from '../engine/device-common.js';
import { suite } from './harness.js';
import { expectClose, randn, rng, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refGlobalAvgPool, refGlobalMaxPool, refMaxPool2d } from './ref/pool.js';

const t = suite('pool');

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const pair = (v: number | [number, number]): [number, number] => (Array.isArray(v) ? v : [v, v]);

/**
 * Distinct values 0.01 apart in random order: the argmax of every window is unique and no
 * finite-difference step (1e-5) can change it, so max pooling is differentiable at the test points.
 */
function distinct(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const v = Float64Array.from({ length: n }, (_, i) => (i - n / 2) * 0.01);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return Float64Array.from(Float32Array.from(v));
}

t('references are right on hand-computed cases', () => {
  const x = Float64Array.from([1, 5, 3, 2]);
  assert.equal(Array.from(refGlobalAvgPool(x, [1, 2, 2, 1])), [2.75]);
  assert.equal(Array.from(refGlobalMaxPool(x, [1, 2, 2, 1])), [5]);
  // Two channels interleaved: channel 0 is 1, 3; channel 1 is 5, 2.
  assert.equal(Array.from(refGlobalMaxPool(x, [1, 2, 1, 2])), [3, 5]);
  const g = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]); // 3x3 image, one channel
  assert.equal(refMaxPool2d(g, [1, 3, 3, 1], [2, 2], [1, 1], [0, 0]), { y: Float64Array.from([5, 6, 8, 9]), shape: [1, 2, 2, 1] });
  assert.equal(refMaxPool2d(g, [1, 3, 3, 1], [2, 2], [2, 2], [1, 1]), { y: Float64Array.from([1, 3, 7, 9]), shape: [1, 2, 2, 1] });
  assert.equal(refMaxPool2d(g, [1, 3, 3, 1], [3, 3], [2, 2], [1, 1]), { y: Float64Array.from([5, 6, 8, 9]), shape: [1, 2, 2, 1] });
});

// Batch 1, 2 and 3; channels 1, 3, 5, 8, 16, 17; odd sizes; [1, 64, 65, 8] and [2, 48, 40, 3]
// are split into chunks of pixels; [2, 1, 1, 4] is a single pixel.
const GLOBAL_SHAPES: number[][] = [[1, 7, 9, 3], [3, 7, 9, 5], [1, 33, 17, 17], [3, 5, 5, 1], [2, 9, 7, 16], [1, 64, 65, 8], [2, 48, 40, 3], [2, 1, 1, 4]];

t('global average and max pooling match float64 (avg rel err < 1e-5, max exact)', async () => {
  const e = await testEngine();
  for (const [k, shape] of GLOBAL_SHAPES.entries()) {
    const x = Float64Array.from(Float32Array.from(randn(sizeOf(shape), 30 + k, -3, 2)));
    await e.scope(async () => {
      const xt = e.tensor(Float32Array.from(x), shape);
      const avg = globalAvgPool(xt);
      assert.equal(avg.shape, [shape[0], shape[3]]);
      expectClose(await avg.read(), refGlobalAvgPool(x, shape), 1e-5, `avg ${shape}`);
      const max = globalMaxPool(xt);
      assert.equal(max.shape, [shape[0], shape[3]]);
      expectClose(await max.read(), refGlobalMaxPool(x, shape), 0, `max ${shape}`);
    });
  }
});

t('global pooling gradients vs finite differences of float64 (rel err < 1e-4)', async () => {
  const e = await testEngine();
  for (const [k, shape] of [[2, 5, 7, 3], [1, 3, 5, 8], [3, 3, 3, 5], [1, 40, 30, 4]].entries()) {
    const x = distinct(sizeOf(shape), 40 + k);
    await gradCheck(e, { gpu: ([a]) => globalAvgPool(a!), ref: ([a]) => refGlobalAvgPool(a!, shape), inputs: [{ name: 'x', shape, data: x }], tol: 1e-4, maxElements: 48, seed: k });
    await gradCheck(e, { gpu: ([a]) => globalMaxPool(a!), ref: ([a]) => refGlobalMaxPool(a!, shape), inputs: [{ name: 'x', shape, data: x }], tol: 1e-4, maxElements: 200, seed: k });
  }
});

const POOLS: MaxPoolOptions[] = [
  { kernel: 3, stride: 2, padding: 1 },
  { kernel: 2, stride: 2, padding: 0 },
  { kernel: 2 },
  { kernel: 3, stride: 1, padding: 1 },
  { kernel: 3, stride: 1, padding: 0 },
  { kernel: [3, 2], stride: [2, 1], padding: [1, 0] },
  { kernel: 5, stride: 3, padding: 2 },
  { kernel: 1, stride: 2 },
  { kernel: 9, stride: 2, padding: 4 },
  { kernel: 5, stride: 5, padding: 2 }, // stride block 5x5 > 16: the one-input-per-invocation backward
];
const POOL_SHAPES: number[][] = [[1, 7, 9, 3], [3, 7, 9, 5], [1, 33, 17, 17], [3, 5, 5, 1], [2, 11, 10, 8]];

// Both code shapes of the forward kernel (maxPool2d: 'unrolled' windows on SwiftShader and GPUs,
// 'rolled' rows on llvmpipe). On lavapipe only its own: the unrolled windows take minutes to
// compile there from a cold cache (bench/RESULTS.md), and they are checked on SwiftShader.
const engine0 = await testEngine();
const poolShapes = kernelFamily(engine0) === 'llvmpipe' ? [engine0.variants.defaultOf('poolShape')] : engine0.variants.candidates('poolShape');
for (const poolShape of poolShapes)
  t(`maxPool2d forward matches float64 exactly, with and without saving indices [${poolShape}]`, async () => {
    const e = await testEngine();
    e.prefer.poolShape = poolShape;
    try {
      for (const opts of POOLS)
        for (const [k, shape] of POOL_SHAPES.entries()) {
          const x = Float64Array.from(Float32Array.from(randn(sizeOf(shape), 50 + k, -2, 2)));
          const ref = refMaxPool2d(x, shape, pair(opts.kernel), pair(opts.stride ?? opts.kernel), pair(opts.padding ?? 0));
          await e.scope(async () => {
            const xt = e.tensor(Float32Array.from(x), shape);
            const y = maxPool2d(xt, opts);
            assert.equal(y.shape, ref.shape, `shape for ${JSON.stringify(opts)} on ${shape}`);
            expectClose(await y.read(), ref.y, 0, `${JSON.stringify(opts)} on ${shape}`);
            xt.requiresGrad = true; // the variant that also writes argmax indices
            expectClose(await maxPool2d(xt, opts).read(), ref.y, 0, `${JSON.stringify(opts)} on ${shape}, saving indices`);
          });
        }
    } finally {
      delete e.prefer.poolShape;
    }
  });

t('maxPool2d backward vs finite differences of float64 (rel err < 1e-4)', async () => {
  const e = await testEngine();
  const cases: [number[], MaxPoolOptions][] = [
    [[2, 7, 9, 3], { kernel: 3, stride: 2, padding: 1 }],
    [[1, 9, 7, 5], { kernel: 3, stride: 2, padding: 1 }],
    [[3, 6, 8, 4], { kernel: 2, stride: 2 }],
    [[1, 7, 9, 1], { kernel: 2, stride: 2 }],
    [[1, 5, 7, 8], { kernel: 3, stride: 1, padding: 1 }],
    [[2, 7, 6, 3], { kernel: [3, 2], stride: [2, 1], padding: [1, 0] }],
    [[1, 9, 9, 2], { kernel: 9, stride: 2, padding: 4 }],
    [[2, 5, 7, 3], { kernel: 3, stride: 2, padding: 0 }],
    [[1, 9, 8, 3], { kernel: 1, stride: 2 }],
    [[1, 12, 11, 4], { kernel: 5, stride: 5, padding: 2 }],
    [[2, 11, 12, 1], { kernel: [5, 3], stride: [5, 4], padding: [1, 1] }],
  ];
  for (const [k, [shape, opts]] of cases.entries()) {
    await gradCheck(e, {
      gpu: ([a]) => maxPool2d(a!, opts),
      ref: ([a]) => refMaxPool2d(a!, shape, pair(opts.kernel), pair(opts.stride ?? opts.kernel), pair(opts.padding ?? 0)).y,
      inputs: [{ name: 'x', shape, data: distinct(sizeOf(shape), 60 + k) }],
      tol: 1e-4,
      maxElements: 120,
      seed: k,
    });
  }
});

t('ties route the gradient to the first maximum; NaN propagates', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const ones = e.tensor(new Float32Array(16).fill(1), [1, 4, 4, 1]);
    ones.requiresGrad = true;
    backward(maxPool2d(ones, { kernel: 2 }), { gradOutput: e.tensor(Float32Array.from([1, 2, 3, 4]), [1, 2, 2, 1]) });
    assert.equal(Array.from(await ones.grad!.read()), [1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0]);
    const flat = e.tensor(new Float32Array(12).fill(2), [1, 3, 4, 1]);
    flat.requiresGrad = true;
    backward(globalMaxPool(flat), { gradOutput: e.tensor(Float32Array.from([5]), [1, 1]) });
    assert.equal(Array.from(await flat.grad!.read()), [5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    const withNaN = Float32Array.from({ length: 36 }, (_, i) => i);
    withNaN[7] = NaN; // pixel (0, 1), channel 3 of a [1, 3, 3, 4] tensor
    const xn = e.tensor(withNaN, [1, 3, 3, 4]);
    const gm = await globalMaxPool(xn).read();
    assert.ok(Number.isNaN(gm[3]) && gm[0] === 32 && gm[1] === 33, `global max: ${Array.from(gm)}`);
    const mp = await maxPool2d(xn, { kernel: 2, stride: 1 }).read();
    // Channel 3 of windows (0, 0) and (0, 1) holds the NaN; windows (1, *) and other channels do not.
    assert.ok(Number.isNaN(mp[3]) && Number.isNaN(mp[7]) && mp[11] === 31 && mp[15] === 35 && mp[0] === 16, `maxPool2d: ${Array.from(mp)}`);
  });
});

t('bad input throws a ShapeError naming the op, tensor and shapes before dispatching', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.tensor(new Float32Array(2 * 5 * 5 * 3), [2, 5, 5, 3]);
    const dispatches = e.stats().dispatches;
    const mp = (xx: Tensor, o: MaxPoolOptions) => () => maxPool2d(xx, o);
    for (const f of [globalAvgPool, globalMaxPool]) {
      assert.throws(() => f(e.tensor(new Float32Array(15), [5, 3])), (err: Error) => err instanceof ShapeError && /Pool: input .* must be \[N, H, W, C\], got \[5, 3\]/.test(err.message));
      assert.throws(() => f(e.tensor(new Float32Array(0), [1, 0, 4, 3])), /Pool: input .*\[1, 0, 4, 3\] is empty/);
      assert.throws(() => f(e.tensor(new Int32Array(4), [1, 2, 2, 1])), /Pool: .* must be f32, got i32/);
    }
    assert.throws(mp(e.tensor(new Float32Array(25), [5, 5, 1]), { kernel: 2 }), /maxPool2d: input .* must be \[N, H, W, C\], got \[5, 5, 1\]/);
    assert.throws(mp(x, { kernel: 0 }), /maxPool2d: kernel height must be an integer >= 1, got 0/);
    assert.throws(mp(x, { kernel: [2, 1.5] }), /maxPool2d: kernel width must be an integer >= 1, got 1.5/);
    assert.throws(mp(x, { kernel: 2, stride: 0 }), /maxPool2d: stride height must be an integer >= 1, got 0/);
    assert.throws(mp(x, { kernel: 2, padding: -1 }), /maxPool2d: padding height must be an integer >= 0, got -1/);
    assert.throws(mp(x, { kernel: 3, padding: 2 }), /maxPool2d: padding \[2, 2\] must be at most half of kernel \[3, 3\]/);
    assert.throws(mp(x, { kernel: 7 }), /maxPool2d: input .*\[2, 5, 5, 3\] with padding \[0, 0\] is smaller than kernel \[7, 7\]/);
    assert.throws(mp(x, { kernel: [2, 6] }), /maxPool2d: input .*\[2, 5, 5, 3\] .* is smaller than kernel \[2, 6\]/);
    assert.is(e.stats().dispatches, dispatches, 'nothing was dispatched');
  });
});

t('indices are only kept when a gradient can flow', async () => {
  const e = await testEngine();
  const x = e.tensor(Float32Array.from(randn(2 * 9 * 7 * 4, 70)), [2, 9, 7, 4]);
  const before = e.stats().liveTensors;
  for (const f of [(a: Tensor) => maxPool2d(a, { kernel: 3, stride: 2, padding: 1 }), globalMaxPool, globalAvgPool]) f(x).dispose();
  assert.is(e.stats().liveTensors, before, 'no saved tensors without grad');
  x.dispose();
});

t.run();
