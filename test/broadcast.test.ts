/** Broadcasting binary ops (the table of engine/ops/basic.ts: add, sub, mul), broadcastTo and sumToShape against float64 references. */
import * as assert from 'uvu/assert';
import { ops, ShapeError, type Engine, type Tensor } from '../entry/node.js';
import { broadcastTo, sumToShape } from '../engine/ops/broadcast.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refBroadcastBinary, refBroadcastTo, refSumToShape, sizeOf } from './ref/broadcast.js';

const t = suite('broadcast');

/** Every op of the binary table (engine/ops/basic.ts): name, the op, its float64 reference. */
const BINARY = (Object.keys(ops.binaryOps) as ops.BinaryOpName[]).map(
  (name) => [name, (a: Tensor, b: Tensor) => ops.binary(name, a, b), ops.binaryOps[name].ref] as const,
);

const up = (e: Engine, shape: number[], seed: number, lo = -1): { t: Tensor; x: Float64Array } => {
  const x = Float64Array.from(Float32Array.from(randn(sizeOf(shape), seed, lo)));
  return { t: e.tensor(Float32Array.from(x), shape), x };
};

t('references are right on hand-computed cases', () => {
  const r = refBroadcastBinary([1, 2], [2, 1], [10, 20, 30], [3], (a, b) => a + b);
  assert.equal(r.shape, [2, 3]);
  assert.equal(Array.from(r.data), [11, 21, 31, 12, 22, 32]);
  assert.equal(Array.from(refSumToShape([1, 2, 3, 4, 5, 6], [2, 3], [3])), [5, 7, 9]);
  assert.equal(Array.from(refSumToShape([1, 2, 3, 4, 5, 6], [2, 3], [2, 1])), [6, 15]);
  assert.equal(Array.from(refBroadcastTo([1, 2], [2, 1], [2, 2])), [1, 1, 2, 2]);
});

// Pairs cover: per-channel [N,1,1,C] and [C] (vec4 and scalar C), per-pixel [N,H,W,1], two-sided
// broadcasts, a scalar, rank differences, and six alternating axes (the collapsed maximum).
const PAIRS: [number[], number[]][] = [
  [[2, 7, 9, 5], [2, 1, 1, 5]],
  [[2, 7, 9, 5], [2, 7, 9, 1]],
  [[2, 7, 9, 8], [2, 1, 1, 8]],
  [[3, 7, 9, 8], [3, 7, 9, 1]],
  [[3, 1, 5], [4, 1]],
  [[1], [3, 5, 17]],
  [[3, 5, 17], [17]],
  [[1, 7, 9, 1], [3, 1, 1, 17]],
  [[2, 1, 3, 1, 2, 1], [1, 3, 1, 2, 1, 3]],
  [[33, 17, 3], [1, 33, 17, 3]],
  [[4], [4]],
  [[2, 3, 16], [16]], // runs of four vec4s per invocation
  [[2, 5, 4], [2, 1, 4]], // one vec4 per invocation
];

t('the binary ops (add, sub, mul: every op of the table) broadcast like NumPy (rel err < 1e-6: one f32 rounding)', async () => {
  const e = await testEngine();
  for (const [k, [sa, sb]] of PAIRS.entries()) {
    await e.scope(async () => {
      const a = up(e, sa, 100 + k);
      const b = up(e, sb, 200 + k);
      for (const [name, f, g] of BINARY) {
        const want = refBroadcastBinary(a.x, sa, b.x, sb, g);
        for (const [x, y, w] of [[a.t, b.t, want], [b.t, a.t, refBroadcastBinary(b.x, sb, a.x, sa, g)]] as const) {
          const out = f(x, y);
          assert.equal(out.shape, w.shape, `${name} ${sa} ${sb} shape`);
          expectClose(await out.read(), w.data, 1e-6, `${name} ${fmt(x.shape)} ${fmt(y.shape)}`);
        }
      }
    });
  }
});

const fmt = (s: readonly number[]) => `[${s.join(',')}]`;

t('sumToShape matches compensated float64 sums (rel err < 1e-5) in one and several passes', async () => {
  const e = await testEngine();
  const cases: [number[], number[]][] = [
    [[2, 7, 9, 5], [5]],
    [[2, 7, 9, 5], [1, 1, 1, 5]],
    [[2, 7, 9, 5], [2, 1, 1, 5]],
    [[2, 7, 9, 5], [2, 7, 9, 1]],
    [[3, 7, 9, 8], [3, 7, 9, 1]],
    [[2, 7, 9, 8], [2, 1, 1, 8]],
    [[2, 7, 9, 5], [7, 1, 5]],
    [[2, 7, 9, 5], [2, 1, 9, 1]],
    [[2, 7, 9, 5], [1]],
    [[3, 5, 17], [3, 5, 17]],
    [[3, 64, 65, 96], [96]],
    [[2, 33, 65, 8], [2, 1, 1, 8]],
    [[100003], [1]],
    [[2, 40000], [2, 1]],
    [[3, 4099, 1], [3, 1, 1]],
    [[2, 5, 2001], [2, 5, 1]],
  ];
  for (const [k, [xs, s]] of cases.entries()) {
    await e.scope(async () => {
      // Values in [0, 1): a sum of signed terms can cancel to near zero, where no relative bound holds.
      const x = up(e, xs, 300 + k, 0);
      const out = sumToShape(x.t, s);
      assert.equal(out.shape, s);
      expectClose(await out.read(), refSumToShape(x.x, xs, s), 1e-5, `sumToShape ${fmt(xs)} -> ${fmt(s)}`);
    });
  }
  await e.scope(async () => {
    const empty = sumToShape(e.tensor(new Float32Array(0), [0, 5]), [5]);
    assert.equal(Array.from(await empty.read()), [0, 0, 0, 0, 0], 'a sum over nothing is zero');
  });
});

t('broadcastTo copies along broadcast axes (exact)', async () => {
  const e = await testEngine();
  for (const [k, [xs, s]] of ([[[5], [2, 7, 9, 5]], [[2, 7, 9, 1], [2, 7, 9, 5]], [[3, 1, 8], [2, 3, 4, 8]], [[1], [3, 3]]] as [number[], number[]][]).entries()) {
    await e.scope(async () => {
      const x = up(e, xs, 400 + k);
      expectClose(await broadcastTo(x.t, s).read(), refBroadcastTo(x.x, xs, s), 0, `broadcastTo ${fmt(xs)} -> ${fmt(s)}`);
    });
  }
});

t('gradients of the broadcast binary ops (every op of the table), sumToShape and broadcastTo vs finite differences (< 1e-3)', async () => {
  const e = await testEngine();
  const small: [number[], number[]][] = [
    [[2, 3, 5, 5], [2, 1, 1, 5]],
    [[2, 3, 5, 4], [2, 3, 5, 1]],
    [[3, 1, 5], [4, 1]],
    [[1], [3, 5]],
  ];
  for (const [k, [sa, sb]] of small.entries()) {
    for (const [name, f, g] of BINARY) {
      await gradCheck(e, {
        gpu: ([a, b]) => f(a!, b!),
        ref: ([a, b]) => refBroadcastBinary(a!, sa, b!, sb, g).data,
        inputs: [
          { name: `a${fmt(sa)}`, shape: sa, data: randn(sizeOf(sa), 500 + k) },
          { name: `b${fmt(sb)}`, shape: sb, data: randn(sizeOf(sb), 600 + k) },
        ],
        tol: 1e-3,
        maxElements: 32,
      }).catch((err: Error) => {
        throw new Error(`${name}: ${err.message}`);
      });
    }
  }
  await gradCheck(e, {
    gpu: ([x]) => sumToShape(x!, [2, 1, 5, 1]),
    ref: ([x]) => refSumToShape(x!, [2, 3, 5, 4], [2, 1, 5, 1]),
    inputs: [{ name: 'x', shape: [2, 3, 5, 4], data: randn(120, 7) }],
    tol: 1e-3,
    maxElements: 32,
  });
  await gradCheck(e, {
    gpu: ([x]) => broadcastTo(x!, [2, 3, 5, 4]),
    ref: ([x]) => refBroadcastTo(x!, [3, 1, 4], [2, 3, 5, 4]),
    inputs: [{ name: 'x', shape: [3, 1, 4], data: randn(12, 8) }],
    tol: 1e-3,
  });
});

t('bad input throws a ShapeError naming op, tensors and shapes, before any dispatch', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const a = e.empty([2, 7, 9, 5]);
    a.name = 'lhs';
    const b = e.empty([2, 7, 9, 4]);
    b.name = 'rhs';
    const before = e.stats().dispatches;
    assert.throws(() => ops.add(a, b), (err: Error) => err instanceof ShapeError && /^add: lhs \[2, 7, 9, 5\] and rhs \[2, 7, 9, 4\] do not broadcast: axis -1 is 5 vs 4/.test(err.message));
    assert.throws(() => ops.mul(e.empty([3, 2]), e.empty([3])), /mul: .*\[3, 2\].*\[3\] do not broadcast: axis -1 is 2 vs 3/);
    assert.throws(() => ops.sub(e.empty([3]), e.empty([3], 'i32')), /sub: .* must be f32, got i32/);
    assert.throws(() => sumToShape(a, [7, 9, 4]), /sumToShape: lhs \[2, 7, 9, 5\] cannot be summed down to \[7, 9, 4\]: axis -1 is 4 vs 5/);
    assert.throws(() => sumToShape(a, [1, 2, 7, 9, 5]), /sumToShape: .*the smaller shape has more axes/);
    assert.throws(() => sumToShape(a, [2, -7, 9, 5]), /sumToShape: target shape must be non-negative integers/);
    assert.throws(() => broadcastTo(a, [2, 7, 9, 10]), /broadcastTo: lhs \[2, 7, 9, 5\] does not broadcast to \[2, 7, 9, 10\]: axis -1 is 5 vs 10/);
    assert.throws(() => ops.add(e.empty([2, 1, 2, 1, 2, 1, 2]), e.empty([1, 2, 1, 2, 1, 2, 1])), /add: .* with 7 alternating broadcast axes; at most 6/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
