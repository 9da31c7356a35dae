/** concat, slice and permute against float64 references (pure copies: results must be exact). */
import * as assert from 'uvu/assert';
import { ShapeError, type Engine, type Tensor } from '../entry/node.js';
import { concat, permute, slice } from '../engine/ops/concat.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { sizeOf } from './ref/broadcast.js';
import { refConcat, refPermute, refSlice } from './ref/concat.js';

const t = suite('concat');

const up = (e: Engine, shape: number[], seed: number): { t: Tensor; x: Float64Array } => {
  const x = Float64Array.from(Float32Array.from(randn(sizeOf(shape), seed)));
  return { t: e.tensor(Float32Array.from(x), shape), x };
};
const fmt = (s: readonly number[]) => `[${s.join(',')}]`;

async function expectExact(got: Tensor, want: ArrayLike<number>, wantShape: readonly number[], what: string): Promise<void> {
  assert.equal(got.shape, wantShape, `${what}: shape`);
  const g = await got.read();
  for (let i = 0; i < want.length; i++) if (g[i] !== want[i]) throw new Error(`${what}: element ${i} is ${g[i]}, expected ${want[i]}`);
}

t('references are right on hand-computed cases', () => {
  const c = refConcat([[1, 2, 3, 4], [5, 6]], [[2, 2], [2, 1]], 1);
  assert.equal(c.shape, [2, 3]);
  assert.equal(Array.from(c.data), [1, 2, 5, 3, 4, 6]);
  assert.equal(Array.from(refSlice([1, 2, 3, 4, 5, 6], [2, 3], 1, 1, 2)), [2, 3, 5, 6]);
  assert.equal(Array.from(refPermute([1, 2, 3, 4, 5, 6], [2, 3], [1, 0])), [1, 4, 2, 5, 3, 6]);
});

t('concat matches the reference exactly: channels 3+5+17, vec4 channels, middle and outer axes, i32', async () => {
  const e = await testEngine();
  const cases: [number[][], number][] = [
    [[[1, 7, 9, 3], [1, 7, 9, 5], [1, 7, 9, 17]], -1],
    [[[3, 7, 9, 3], [3, 7, 9, 5], [3, 7, 9, 17]], 3],
    [[[3, 7, 9, 4], [3, 7, 9, 8], [3, 7, 9, 12]], -1], // vec4 kernel
    [[[2, 3, 9, 5], [2, 4, 9, 5], [2, 1, 9, 5]], 1], // few rows: copyBufferToBuffer per row
    [[[17, 3, 5], [17, 4, 5], [17, 1, 5]], -2], // many rows, scalar kernel
    [[[2, 7, 9, 5], [3, 7, 9, 5]], 0], // contiguous
    [[[33, 17, 3]], -1], // one tensor: a copy
  ];
  for (const [k, [shapes, axis]] of cases.entries()) {
    await e.scope(async () => {
      const ins = shapes.map((s, i) => up(e, s, 10 * k + i));
      const want = refConcat(ins.map((i) => i.x), shapes, axis < 0 ? axis + shapes[0]!.length : axis);
      await expectExact(concat(ins.map((i) => i.t), axis), want.data, want.shape, `concat ${shapes.map(fmt).join(' ')} axis ${axis}`);
    });
  }
  await e.scope(async () => {
    const a = e.tensor(Int32Array.from([1, -2, 3, 2147483647]), [2, 2]);
    const b = e.tensor(Int32Array.from([-5, 6]), [2, 1]);
    const c = concat([a, b], 1);
    assert.is(c.dtype, 'i32');
    assert.equal(Array.from(await c.read()), [1, -2, -5, 3, 2147483647, 6]);
  });
});

t('slice matches the reference exactly on every axis, vec4 and scalar bands', async () => {
  const e = await testEngine();
  const cases: [number[], number, number, number][] = [
    [[3, 7, 9, 17], -1, 3, 5],
    [[3, 7, 9, 16], -1, 4, 8], // vec4 kernel
    [[3, 33, 17, 5], 1, 10, 7],
    [[3, 33, 17, 5], 2, 16, 1],
    [[3, 7, 9, 5], 0, 1, 2],
    [[2, 7, 9, 5], 1, 0, 3], // few rows
    [[7, 9], 1, 0, 9], // the whole axis
  ];
  for (const [k, [shape, axis, start, len]] of cases.entries()) {
    await e.scope(async () => {
      const x = up(e, shape, 100 + k);
      const ax = axis < 0 ? axis + shape.length : axis;
      await expectExact(slice(x.t, axis, start, len), refSlice(x.x, shape, ax, start, len), shape.map((d, i) => (i === ax ? len : d)), `slice ${fmt(shape)} axis ${axis} [${start}, +${len})`);
    });
  }
});

t('permute matches the reference exactly: rank 4, vec4 paths, size-1 axes, rank 6, i32', async () => {
  const e = await testEngine();
  const cases: [number[], number[]][] = [
    [[2, 7, 9, 5], [0, 3, 1, 2]],
    [[3, 7, 9, 5], [0, 2, 3, 1]],
    [[2, 7, 9, 5], [3, 2, 1, 0]],
    [[2, 7, 9, 5], [1, 0, 2, 3]],
    [[1, 7, 8, 3], [0, 3, 1, 2]], // output rows of 56: four strided loads per vec4 store
    [[2, 4, 3, 8], [1, 0, 2, 3]], // contiguous inner run of 24: vec4 in and out
    [[2, 1, 9, 1], [3, 2, 0, 1]], // size-1 axes vanish: a transpose of 2 x 9
    [[2, 7, 9, 5], [0, 1, 2, 3]], // identity: a copy
    [[2, 3, 2, 3, 2, 3], [5, 4, 3, 2, 1, 0]], // six axes that cannot merge
  ];
  for (const [k, [shape, perm]] of cases.entries()) {
    await e.scope(async () => {
      const x = up(e, shape, 200 + k);
      await expectExact(permute(x.t, perm), refPermute(x.x, shape, perm), perm.map((a) => shape[a]!), `permute ${fmt(shape)} by ${fmt(perm)}`);
    });
  }
  await e.scope(async () => {
    const x = e.tensor(Int32Array.from([1, 2, 3, 4, 5, -6]), [2, 3]);
    assert.equal(Array.from(await permute(x, [1, 0]).read()), [1, 4, 2, 5, 3, -6]);
  });
});

t('gradients of concat, slice and permute vs finite differences (< 1e-4)', async () => {
  const e = await testEngine();
  const shapes = [[2, 3, 5, 3], [2, 3, 5, 5], [2, 3, 5, 1]];
  await gradCheck(e, {
    gpu: (xs) => concat(xs, -1),
    ref: (xs) => refConcat(xs, shapes, 3).data,
    inputs: shapes.map((s, i) => ({ name: `x${i}`, shape: s, data: randn(sizeOf(s), 30 + i) })),
    tol: 1e-4,
    maxElements: 24,
  });
  const mid = [[2, 3, 5, 4], [2, 2, 5, 4]];
  await gradCheck(e, {
    gpu: (xs) => concat(xs, 1),
    ref: (xs) => refConcat(xs, mid, 1).data,
    inputs: mid.map((s, i) => ({ name: `m${i}`, shape: s, data: randn(sizeOf(s), 40 + i) })),
    tol: 1e-4,
    maxElements: 24,
  });
  for (const [shape, axis, start, len] of [[[3, 5, 7], -1, 2, 3], [[3, 5, 8], -1, 4, 4], [[11, 5, 3], 1, 1, 3], [[2, 5, 3], 0, 1, 1]] as [number[], number, number, number][]) {
    await gradCheck(e, {
      gpu: ([x]) => slice(x!, axis, start, len),
      ref: ([x]) => refSlice(x!, shape, axis < 0 ? axis + shape.length : axis, start, len),
      inputs: [{ name: `x${fmt(shape)}`, shape, data: randn(sizeOf(shape), 50) }],
      tol: 1e-4,
      maxElements: 32,
    });
  }
  await gradCheck(e, {
    gpu: ([x]) => permute(x!, [0, 3, 1, 2]),
    ref: ([x]) => refPermute(x!, [2, 3, 5, 4], [0, 3, 1, 2]),
    inputs: [{ name: 'x', shape: [2, 3, 5, 4], data: randn(120, 60) }],
    tol: 1e-4,
    maxElements: 32,
  });
});

t('bad input throws a ShapeError naming op, tensor and shapes, before any dispatch', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const a = e.empty([2, 7, 9, 5]);
    a.name = 'a';
    const b = e.empty([2, 7, 8, 3]);
    b.name = 'b';
    const before = e.stats().dispatches;
    assert.throws(() => concat([a, b], -1), (err: Error) => err instanceof ShapeError && /^concat: b \(tensor 1\) has shape \[2, 7, 8, 3\], expected \[2, 7, 9, \*\]/.test(err.message));
    assert.throws(() => concat([a, e.empty([2, 7, 9])], -1), /concat: .* has shape \[2, 7, 9\], expected \[2, 7, 9, \*\]/);
    assert.throws(() => concat([a, e.empty([2, 7, 9, 5], 'i32')], -1), /concat: .* is i32 but a \(tensor 0\) is f32/);
    assert.throws(() => concat([], 0), /concat: needs at least one tensor/);
    assert.throws(() => concat([a], 4), /concat: axis 4 is out of range for a \[2, 7, 9, 5\] \(rank 4: axis must be an integer in \[-4, 3\]\)/);
    assert.throws(() => concat([a], -5), /concat: axis -5 is out of range/);
    assert.throws(() => slice(a, 1, 5, 3), /slice: \[5, 8\) is outside axis 1 of a \[2, 7, 9, 5\] \(size 7\)/);
    assert.throws(() => slice(a, 1, 0, 0), /slice: length must be an integer >= 1, got 0/);
    assert.throws(() => slice(a, 1, -1, 2), /slice: start must be an integer >= 0, got -1/);
    assert.throws(() => slice(a, 7, 0, 1), /slice: axis 7 is out of range/);
    assert.throws(() => permute(a, [0, 3, 1]), /permute: \[0,3,1\] is not a permutation of the 4 axes of a \[2, 7, 9, 5\]/);
    assert.throws(() => permute(a, [0, 3, 1, 1]), /permute: \[0,3,1,1\] is not a permutation/);
    assert.throws(() => permute(a, [0, 3, 1, 2.5]), /permute: .* is not a permutation/);
    assert.throws(() => permute(e.empty([2, 3, 2, 3, 2, 3, 2]), [6, 5, 4, 3, 2, 1, 0]), /permute: .* leaves 7 axes that cannot be merged; at most 6/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
