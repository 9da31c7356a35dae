/** fill, copy, add/sub/mul, scale, sum and the unary table, against float64 references. */
import * as assert from 'uvu/assert';
import { backward, ops } from '../entry/node.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refMap, refSum, refZip } from './ref/elementwise.js';
import { ACTIVATION_OPS, activations } from '../engine/ops/activation.js';

const t = suite('basic-ops');
const SHAPES = [[1], [3], [7, 9], [3, 5, 17], [2, 33, 17, 3]];

t('references are right on hand-computed cases', () => {
  assert.is(refSum([1, 2, 3.5]), 6.5);
  assert.is(refSum([1e16, 1, -1e16]), 1, 'compensated');
  assert.equal(Array.from(refZip(Float64Array.from([1, 2]), Float64Array.from([3, 4]), (a, b) => a * b)), [3, 8]);
  assert.equal(Array.from(refMap(Float64Array.from([-1, 2]), (v) => Math.max(v, 0))), [0, 2]);
  assert.is(ops.unaryOps.relu6.ref(7, 0), 6);
  assert.is(ops.unaryOps.sigmoid.ref(0, 0), 0.5);
  // The table's derivative from y against central differences of its float64 forward, off the kinks.
  for (const name of ACTIVATION_OPS) {
    const a = activations[name];
    for (const x of [-7.3, -1.1, -0.2, 0.3, 1.7, 5.1, 8.2]) {
      const h = 1e-6;
      const want = (a.ref(x + h) - a.ref(x - h)) / (2 * h);
      assert.ok(Math.abs(a.refGrad(a.ref(x)) - want) < 1e-6, `${name}'(${x}) from y: ${a.refGrad(a.ref(x))}, differences ${want}`);
    }
  }
});

t('add, sub, mul, scale match float64 on awkward shapes (rel err < 1e-6)', async () => {
  const e = await testEngine();
  for (const [k, shape] of SHAPES.entries()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = randn(n, 10 + k);
    const b = randn(n, 20 + k);
    await e.scope(async () => {
      const ta = e.tensor(Float32Array.from(a), shape);
      const tb = e.tensor(Float32Array.from(b), shape);
      const a32 = Float64Array.from(Float32Array.from(a));
      const b32 = Float64Array.from(Float32Array.from(b));
      expectClose(await ops.add(ta, tb).read(), refZip(a32, b32, (u, v) => u + v), 1e-6, `add ${shape}`);
      expectClose(await ops.sub(ta, tb).read(), refZip(a32, b32, (u, v) => u - v), 1e-6, `sub ${shape}`);
      expectClose(await ops.mul(ta, tb).read(), refZip(a32, b32, (u, v) => u * v), 1e-6, `mul ${shape}`);
      expectClose(await ops.scale(ta, -2.5).read(), refMap(a32, (u) => -2.5 * u), 1e-6, `scale ${shape}`);
    });
  }
});

t('fill, full and copy', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = ops.full(e, [3, 5], 0.25);
    assert.ok((await x.read()).every((v) => v === 0.25));
    const y = ops.copy(x);
    ops.fill(x, 2);
    assert.ok((await y.read()).every((v) => v === 0.25), 'copy is independent');
    assert.ok((await x.read()).every((v) => v === 2));
  });
});

t('sum matches a compensated float64 sum (rel err < 1e-5) from 1 to 1e6 elements', async () => {
  const e = await testEngine();
  for (const n of [1, 3, 5, 4097, 100003, 1000001]) {
    const x = randn(n, n, 0, 1);
    const x32 = Float32Array.from(x);
    await e.scope(async () => {
      const s = ops.sum(e.tensor(x32, [n]));
      expectClose(await s.read(), [refSum(x32)], 1e-5, `sum of ${n}`);
    });
  }
});

for (const name of Object.keys(ops.unaryOps) as ops.UnaryOpName[]) {
  t(`${name}: forward (rel err < 1e-5) and gradient vs finite differences (< 1e-3)`, async () => {
    const e = await testEngine();
    const spec = ops.unaryOps[name];
    const alpha = name === 'leakyRelu' ? 0.1 : 0;
    // Spread over the interesting range, kept away from kinks (0, 6) where differences are undefined.
    const x = randn(2 * 3 * 5 * 7, 7, -8, 8).map((v) => (Math.abs(v) < 0.05 || Math.abs(v - 6) < 0.05 ? v + 0.2 : v));
    await e.scope(async () => {
      const y = ops.unary(name, e.tensor(Float32Array.from(x), [2, 3, 5, 7]), alpha);
      expectClose(await y.read(), refMap(Float64Array.from(Float32Array.from(x)), (v) => spec.ref(v, alpha)), 1e-5, name);
    });
    await gradCheck(e, {
      gpu: ([a]) => ops.unary(name, a!, alpha),
      ref: ([a]) => refMap(a!, (v) => spec.ref(v, alpha)),
      inputs: [{ name: 'x', shape: [2, 3, 5, 7], data: x }],
      tol: 1e-3,
    });
  });
}

t('autograd: gradients of a small graph (x*y + x, summed) accumulate on the GPU', async () => {
  const e = await testEngine();
  const x = randn(13, 1);
  const y = randn(13, 2);
  await gradCheck(e, {
    gpu: ([a, b]) => ops.add(ops.mul(a!, b!), a!),
    ref: ([a, b]) => a!.map((v, i) => v * b![i]! + v),
    inputs: [{ name: 'x', shape: [13], data: x }, { name: 'y', shape: [13], data: y }],
    tol: 1e-4,
  });
  await e.scope(async () => {
    const a = e.tensor(Float32Array.from([1, 2, 3]), [3]);
    a.requiresGrad = true;
    // Two backward passes: the second accumulates into a.grad.
    backward(ops.sum(ops.add(a, a)));
    backward(ops.sum(ops.mul(a, a)));
    assert.equal(Array.from(await a.grad!.read()), [4, 6, 8], '2 + 2a accumulated');
  });
});

t('sumColumns sums every axis but the last (rel err < 1e-5)', async () => {
  const e = await testEngine();
  for (const [shape, seed] of [[[1], 1], [[7, 9], 2], [[2, 33, 17, 5], 3], [[3, 64, 65, 96], 4], [[100000, 3], 5]] as [number[], number][]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const cols = shape[shape.length - 1]!;
    const x = Float32Array.from(randn(n, seed));
    const want = new Float64Array(cols);
    for (let i = 0; i < n; i++) want[i % cols] += x[i]!;
    await e.scope(async () => expectClose(await ops.sumColumns(e.tensor(x, shape)).read(), want, 1e-5, `sumColumns ${shape}`));
  }
});

t.run();
