/**
 * Op-argument fuzz: every public op in `ops` called with random, mostly wrong, arguments (shapes,
 * ranks, dtypes, options, disposed tensors, tensors of another engine). Each call must either
 *  - throw a ShapeError whose message starts with the op's name, having dispatched nothing and
 *    left no tensor behind (engine.stats() dispatches and liveTensors unchanged), or
 *  - return a result of the shape and dtype an independent oracle predicts, with the values of the
 *    float64 reference in test/ref/ (relative error < 1e-4; the references' own tests state why).
 * The oracle below is the documented contract of each op, written again from the docs, not
 * copied from the op's checks. Afterwards the engine must still compute correctly.
 */
import * as assert from 'uvu/assert';
import { canet, createEngine, ops, ShapeError, EngineClosedError, SGD, trainStep, uploadBatch, type Engine, type Tensor, type DType } from '../entry/node.js';
import { suite } from './harness.js';
import { rng, testEngine, expectClose } from './gpu.js';
import { refBroadcastBinary, refBroadcastShape, refBroadcastTo, refSumToShape, sizeOf } from './ref/broadcast.js';
import { refConcat, refSlice, refPermute } from './ref/concat.js';
import { refSoftmax, refArgmax } from './ref/softmax.js';
import { refResizeBilinear } from './ref/upsample.js';
import { refConv2d } from './ref/conv.js';
import { refDepthwise } from './ref/depthwise.js';
import { refConvTranspose } from './ref/conv-transpose.js';
import { refBatchNorm } from './ref/batchnorm.js';
import { refGlobalAvgPool, refGlobalMaxPool, refMaxPool2d } from './ref/pool.js';
import { refLinear } from './ref/linear.js';
import { refCrossEntropy } from './ref/loss.js';
import { refFcaFuse } from './ref/fca.js';
import { refImageToTensor } from './ref/preprocess.js';

const t = suite('op-fuzz');

/** A fuzz operand: the GPU tensor and its values as float64 (what the GPU holds, exactly). */
interface Operand {
  t: Tensor;
  shape: number[];
  dtype: DType;
  data: Float64Array;
  /** Disposed, or made by another engine (unusable together with this engine's tensors). */
  bad?: 'disposed' | 'foreign';
}

/** The oracle's verdict on one call. */
type Expect =
  | { kind: 'refuse' }
  | { kind: 'ok'; shape: number[]; dtype: DType; ref?: () => ArrayLike<number>; exact?: boolean; tol?: number; numbers?: boolean };

interface Case {
  op: string;
  describe: string;
  call: () => unknown;
  expect: Expect;
}

const refuse: Expect = { kind: 'refuse' };

type Pair = [number, number];
/** A documented "integer >= min, or a pair of them" option (default when undefined), or null. */
function pairOpt(v: unknown, dflt: number, min: number): Pair | null {
  const p = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((d) => Number.isInteger(d) && d >= min)) return null;
  return p as Pair;
}
const isInt = (v: unknown, min: number): v is number => Number.isInteger(v) && (v as number) >= min;
const f32s = (...ts: Operand[]) => ts.every((o) => o.dtype === 'f32');
/** No operand disposed, and all of one engine (a lone tensor of another engine is fine: the op runs there). */
const usable = (...ts: (Operand | null)[]) => {
  const given = ts.filter((o): o is Operand => o !== null);
  return given.every((o) => o.bad !== 'disposed') && given.every((o) => (o.bad === 'foreign') === (given[0]!.bad === 'foreign'));
};
const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function fuzzer(e: Engine, foreign: Engine, seed: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => r() < p;
  const live: Operand[] = [];

  const dim = () => (chance(0.05) ? 0 : pick([1, 1, 2, 3, 4, 5, 7]));
  const shapeOf = (rank: number) => Array.from({ length: rank }, dim);
  const anyShape = () => shapeOf(pick([0, 1, 2, 3, 4, 4, 4, 5]));

  function operand(shape: number[], dtype: DType = chance(0.85) ? 'f32' : pick(['i32', 'u32'] as const), from?: Engine): Operand {
    const n = sizeOf(shape);
    const data = new Float64Array(n);
    for (let i = 0; i < n; i++) data[i] = dtype === 'f32' ? Math.fround(4 * r() - 2) : dtype === 'i32' ? int(7) - 1 : int(6);
    const arr = dtype === 'f32' ? Float32Array.from(data) : dtype === 'i32' ? Int32Array.from(data) : Uint32Array.from(data);
    const t0 = (from ?? e).tensor(arr, shape, dtype);
    const o: Operand = { t: t0, shape, dtype, data };
    if (from) o.bad = 'foreign';
    else live.push(o);
    return o;
  }
  /** Usually a good operand of `shape`; sometimes disposed, foreign, or of another dtype. */
  function maybeBad(shape: number[], dtype: DType = 'f32', badness = 2.5): Operand {
    const u = r() / badness;
    if (u < 0.03) {
      const o = operand(shape, dtype);
      o.t.dispose();
      o.bad = 'disposed';
      return o;
    }
    if (u < 0.06) return operand(shape, dtype, foreign);
    return operand(shape, u < 0.12 ? pick(['f32', 'i32', 'u32'] as const) : dtype);
  }
  /** `shape` with probability p, else a random mutation of it (a dim changed, the rank changed). */
  function near(shape: number[], p = 0.7): number[] {
    if (chance(p)) return [...shape];
    const s = [...shape];
    const k = int(3);
    if (k === 0 && s.length) s[int(s.length)] = dim();
    else if (k === 1) s.splice(int(s.length + 1), 0, dim());
    else s.splice(int(Math.max(1, s.length)), 1);
    return s;
  }
  const junk = (): unknown => pick([-1, 0, 1.5, NaN, Infinity, '2', null, [1], [1, 2, 3], 2 ** 31, [2, -1]]);
  /** A value from `good` (usually) or junk; undefined sometimes (the default). */
  const opt = <T>(good: () => T): T | unknown => (chance(0.12) ? junk() : chance(0.15) ? undefined : good());

  const cases: (() => Case)[] = [];
  const add = (f: () => Case) => cases.push(f);

  // ---- elementwise
  // Every op of the binary table (engine/ops/basic.ts), against its float64 reference.
  for (const [op, { ref: f }] of Object.entries(ops.binaryOps) as [ops.BinaryOpName, ops.BinaryOpSpec][])
    add(() => {
      const a = maybeBad(anyShape());
      const bs = chance(0.5) ? near(a.shape) : chance(0.5) ? a.shape.map((d) => (chance(0.4) ? 1 : d)).slice(int(2)) : anyShape();
      const b = maybeBad(bs);
      const out = refBroadcastShape(a.shape, b.shape);
      const ok = usable(a, b) && f32s(a, b) && out;
      return {
        op, describe: `${op}(${a.shape}, ${b.shape})`, call: () => ops.binary(op, a.t, b.t),
        expect: ok ? { kind: 'ok', shape: out!, dtype: 'f32', ref: () => refBroadcastBinary(a.data, a.shape, b.data, b.shape, f).data } : refuse,
      };
    });
  add(() => {
    const x = maybeBad(anyShape());
    const alpha = pick([2, -0.5, 0, 1e3]);
    return { op: 'scale', describe: `scale(${x.shape}, ${alpha})`, call: () => ops.scale(x.t, alpha), expect: usable(x) && f32s(x) ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => x.data.map((v) => v * alpha) } : refuse };
  });
  const unaryRefs = {
    relu: (v: number) => Math.max(v, 0),
    relu6: (v: number) => Math.min(Math.max(v, 0), 6),
    sigmoid: (v: number) => 1 / (1 + Math.exp(-v)),
  };
  for (const [op, f] of Object.entries(unaryRefs))
    add(() => {
      const x = maybeBad(anyShape());
      return { op, describe: `${op}(${x.shape} ${x.dtype})`, call: () => (ops as unknown as Record<string, (x: Tensor) => Tensor>)[op]!(x.t), expect: usable(x) && f32s(x) ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => x.data.map(f) } : refuse };
    });
  add(() => {
    const x = maybeBad(anyShape());
    const slope = pick([0.01, 0.2]);
    return { op: 'leakyRelu', describe: `leakyRelu(${x.shape})`, call: () => ops.leakyRelu(x.t, slope), expect: usable(x) && f32s(x) ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => x.data.map((v) => (v > 0 ? v : slope * v)) } : refuse };
  });
  add(() => {
    const x = maybeBad(anyShape(), pick(['f32', 'i32', 'u32'] as const), 4);
    return { op: 'copy', describe: `copy(${x.shape} ${x.dtype})`, call: () => ops.copy(x.t), expect: usable(x) ? { kind: 'ok', shape: x.shape, dtype: x.dtype, ref: () => x.data, exact: true } : refuse };
  });
  add(() => {
    const x = maybeBad(anyShape());
    return { op: 'sum', describe: `sum(${x.shape})`, call: () => ops.sum(x.t), expect: usable(x) && f32s(x) ? { kind: 'ok', shape: [1], dtype: 'f32', ref: () => [x.data.reduce((s, v) => s + v, 0)], tol: 1e-4 } : refuse };
  });
  add(() => {
    const y = maybeBad(anyShape());
    const x = maybeBad(near(y.shape, 0.8));
    const alpha = pick([1, -2, 0.5]);
    const ok = usable(x, y) && f32s(x, y) && same(x.shape, y.shape);
    // In place: on success y holds y + alpha x, and the fuzz operand must say so too.
    const expected = ok ? y.data.map((v, i) => Math.fround(v + Math.fround(alpha * x.data[i]!))) : null;
    return {
      op: 'axpyInPlace', describe: `axpyInPlace(${y.shape}, ${x.shape})`,
      call: () => {
        const out = ops.axpyInPlace(y.t, x.t, alpha);
        if (expected) y.data = expected;
        return out;
      },
      expect: ok ? { kind: 'ok', shape: y.shape, dtype: 'f32', ref: () => expected! } : refuse,
    };
  });
  add(() => {
    const x = maybeBad(anyShape());
    const target = chance(0.6) ? x.shape.map((d) => (chance(0.4) ? 1 : d)).slice(int(3)) : anyShape();
    const ok = usable(x) && f32s(x) && target.length <= x.shape.length && target.every((d, k) => d === 1 || d === x.shape[x.shape.length - target.length + k]);
    return { op: 'sumToShape', describe: `sumToShape(${x.shape} -> ${target})`, call: () => ops.sumToShape(x.t, target), expect: ok ? { kind: 'ok', shape: target, dtype: 'f32', ref: () => refSumToShape(x.data, x.shape, target) } : refuse };
  });
  add(() => {
    const x = maybeBad(anyShape().slice(int(3)));
    const target = chance(0.6) ? [...shapeOf(int(2)), ...x.shape.map((d) => (d === 1 ? dim() : d))] : anyShape();
    const ok = usable(x) && f32s(x) && x.shape.length <= target.length && x.shape.every((d, k) => d === 1 || d === target[target.length - x.shape.length + k]);
    return { op: 'broadcastTo', describe: `broadcastTo(${x.shape} -> ${target})`, call: () => ops.broadcastTo(x.t, target), expect: ok ? { kind: 'ok', shape: target, dtype: 'f32', ref: () => refBroadcastTo(x.data, x.shape, target) } : refuse };
  });
  add(() => {
    const s = maybeBad(chance(0.7) ? pick([[1], [], [1, 1]]) : anyShape());
    const shape = chance(0.9) ? anyShape() : [2, -1];
    const ok = usable(s) && f32s(s) && sizeOf(s.shape) === 1 && shape.every((d) => isInt(d, 0));
    return { op: 'broadcastScalar', describe: `broadcastScalar(${s.shape} ${s.dtype} -> ${shape})`, call: () => ops.broadcastScalar(s.t, shape), expect: ok ? { kind: 'ok', shape, dtype: 'f32', ref: () => new Float64Array(sizeOf(shape)).fill(s.data[0]!) } : refuse };
  });
  add(() => {
    const x = maybeBad(anyShape(), pick(['f32', 'f32', 'i32'] as const));
    const v = pick([0, 1.5, -3]);
    const ok = usable(x) && (f32s(x) || v === 0);
    return {
      op: 'fill', describe: `fill(${x.shape} ${x.dtype})`,
      call: () => {
        const out = ops.fill(x.t, v);
        x.data = new Float64Array(x.data.length).fill(v);
        return out;
      },
      expect: ok ? { kind: 'ok', shape: x.shape, dtype: x.dtype, ref: () => new Float64Array(sizeOf(x.shape)).fill(v) } : refuse,
    };
  });
  add(() => {
    const shape = chance(0.85) ? anyShape() : pick([[-1], [1.5], [2 ** 31, 2 ** 31], [NaN]]);
    const ok = shape.every((d) => isInt(d, 0));
    return { op: 'full', describe: `full(${shape})`, call: () => ops.full(e, shape, 0.25), expect: ok ? { kind: 'ok', shape, dtype: 'f32', ref: () => new Float64Array(sizeOf(shape)).fill(0.25) } : refuse };
  });

  // ---- shape ops
  add(() => {
    const base = anyShape();
    const axis = chance(0.8) ? int(base.length + 2) - 1 - (chance(0.3) ? base.length : 0) : pick([1.5, NaN, 9]);
    const list = Array.from({ length: chance(0.05) ? 0 : 1 + int(3) }, () => maybeBad(base.map((d, k) => (k === ((axis as number) + base.length) % Math.max(1, base.length) ? dim() : d)).filter(() => chance(0.97))));
    const dtype0 = list[0]?.dtype;
    const r0 = list[0]?.shape.length ?? 0;
    const ax = Number.isInteger(axis) && axis >= -r0 && axis < r0 ? (axis + r0) % r0 : -1;
    const ok = list.length > 0 && r0 >= 1 && ax >= 0 && usable(...list) && list.every((o) => o.dtype === dtype0 && o.shape.length === r0 && o.shape.every((d, k) => k === ax || d === list[0]!.shape[k]));
    return {
      op: 'concat', describe: `concat([${list.map((o) => `[${o.shape}] ${o.dtype}`).join(', ')}], ${axis})`, call: () => ops.concat(list.map((o) => o.t), axis),
      expect: ok ? { kind: 'ok', ...refConcatOut(list, ax), dtype: dtype0!, exact: true } : refuse,
    };
  });
  add(() => {
    const x = maybeBad(anyShape(), pick(['f32', 'i32'] as const));
    const r0 = x.shape.length;
    const axis = chance(0.85) ? int(2 * r0 + 1) - r0 : pick([r0, 1.5]);
    const ax = Number.isInteger(axis) && axis >= -r0 && axis < r0 ? (axis + r0) % r0 : -1;
    const size = ax >= 0 ? x.shape[ax]! : 3;
    const start = chance(0.85) ? int(size + 1) : pick([-1, 0.5]);
    const length = chance(0.85) ? 1 + int(size + 1) : pick([0, -2, 1.5]);
    const ok = usable(x) && r0 >= 1 && ax >= 0 && isInt(start, 0) && isInt(length, 1) && start + length <= size;
    return {
      op: 'slice', describe: `slice(${x.shape}, axis ${axis}, ${start}, ${length})`, call: () => ops.slice(x.t, axis, start, length),
      expect: ok ? { kind: 'ok', shape: x.shape.map((d, k) => (k === ax ? length : d)), dtype: x.dtype, ref: () => refSlice(x.data, x.shape, ax, start, length), exact: true } : refuse,
    };
  });
  add(() => {
    const x = maybeBad(anyShape(), pick(['f32', 'u32'] as const));
    const r0 = x.shape.length;
    const perm = Array.from({ length: r0 }, (_, k) => k).sort(() => r() - 0.5);
    if (chance(0.2) && perm.length) perm[int(perm.length)] = pick([0, r0, -1, 1.5]);
    if (chance(0.05)) perm.push(r0);
    const ok = usable(x) && perm.length === r0 && [...perm].sort((a, b) => a - b).every((p, i) => p === i);
    return {
      op: 'permute', describe: `permute(${x.shape}, [${perm}])`, call: () => ops.permute(x.t, perm),
      expect: ok ? { kind: 'ok', shape: perm.map((p) => x.shape[p]!), dtype: x.dtype, ref: () => refPermute(x.data, x.shape, perm), exact: true } : refuse,
    };
  });

  // ---- rows
  for (const op of ['softmax', 'argmax'] as const)
    add(() => {
      const x = maybeBad(anyShape());
      const l = x.shape[x.shape.length - 1] ?? 0;
      const ok = usable(x) && f32s(x) && x.shape.length >= 1 && l >= 1;
      return {
        op, describe: `${op}(${x.shape})`, call: () => ops[op](x.t),
        expect: !ok ? refuse : op === 'softmax'
          ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => refSoftmax(x.data, l) }
          : { kind: 'ok', shape: x.shape.slice(0, -1), dtype: 'i32', ref: () => refArgmax(x.data, l), exact: true },
      };
    });
  add(() => {
    const x = maybeBad(anyShape());
    const cols = chance(0.8) ? (x.shape[x.shape.length - 1] ?? 1) : pick([0, 1.5, -1, 7, NaN]);
    const ok = usable(x) && f32s(x) && isInt(cols, 1) && sizeOf(x.shape) % cols === 0;
    return {
      op: 'sumColumns', describe: `sumColumns(${x.shape}, ${cols})`, call: () => ops.sumColumns(x.t, cols),
      expect: ok ? { kind: 'ok', shape: [cols], dtype: 'f32', ref: () => refSumToShape(x.data, [sizeOf(x.shape) / cols, cols], [cols]) } : refuse,
    };
  });

  // ---- NHWC image ops
  const nhwc = () => (chance(0.8) ? shapeOf(4) : anyShape());
  add(() => {
    const x = maybeBad(nhwc());
    const outH = chance(0.85) ? 1 + int(9) : pick([0, -1, 1.5, 2 ** 30]);
    const outW = chance(0.85) ? 1 + int(9) : pick([0, NaN, 2 ** 30]);
    const align = chance(0.5);
    const [n, h, w, c] = x.shape;
    const ok = usable(x) && f32s(x) && x.shape.length === 4 && h! >= 1 && w! >= 1 && isInt(outH, 1) && isInt(outW, 1);
    return {
      op: 'resizeBilinear', describe: `resizeBilinear(${x.shape} -> ${outH}x${outW}, align ${align})`, call: () => ops.resizeBilinear(x.t, outH, outW, { alignCorners: align }),
      expect: ok ? { kind: 'ok', shape: [n!, outH, outW, c!], dtype: 'f32', ref: () => refResizeBilinear(x.data, x.shape, outH, outW, align) } : refuse,
    };
  });
  for (const op of ['globalAvgPool', 'globalMaxPool'] as const)
    add(() => {
      const x = maybeBad(nhwc());
      const ok = usable(x) && f32s(x) && x.shape.length === 4 && sizeOf(x.shape) > 0;
      const ref = op === 'globalAvgPool' ? refGlobalAvgPool : refGlobalMaxPool;
      return { op, describe: `${op}(${x.shape})`, call: () => ops[op](x.t), expect: ok ? { kind: 'ok', shape: [x.shape[0]!, x.shape[3]!], dtype: 'f32', ref: () => ref(x.data, x.shape) } : refuse };
    });
  add(() => {
    const x = maybeBad(nhwc());
    const kernel = opt(() => (chance(0.7) ? 1 + int(3) : [1 + int(3), 1 + int(3)])) as number;
    const stride = opt(() => 1 + int(2)) as number | undefined;
    const padding = opt(() => int(2)) as number | undefined;
    const k = pairOpt(kernel, NaN, 1);
    const s = pairOpt(stride === undefined ? kernel : stride, NaN, 1);
    const p = pairOpt(padding, 0, 0);
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const ok = usable(x) && f32s(x) && x.shape.length === 4 && sizeOf(x.shape) > 0 && k && s && p && 2 * p[0] <= k[0] && 2 * p[1] <= k[1] && h + 2 * p[0] >= k[0] && w + 2 * p[1] >= k[1];
    const shape = ok ? [n, Math.floor((h + 2 * p![0] - k![0]) / s![0]) + 1, Math.floor((w + 2 * p![1] - k![1]) / s![1]) + 1, c] : [];
    return {
      op: 'maxPool2d', describe: `maxPool2d(${x.shape}, k ${JSON.stringify(kernel)} s ${JSON.stringify(stride)} p ${JSON.stringify(padding)})`,
      call: () => ops.maxPool2d(x.t, { kernel, stride, padding }),
      expect: ok ? { kind: 'ok', shape, dtype: 'f32', ref: () => refMaxPool2d(x.data, x.shape, k!, s!, p!).y } : refuse,
    };
  });
  add(() => {
    const x = maybeBad(nhwc());
    const c = x.shape[3] ?? 1;
    const g = maybeBad(chance(0.8) ? [...x.shape.slice(0, 3), 1] : near(x.shape.slice(0, 3)));
    const a = maybeBad(chance(0.8) ? [x.shape[0] ?? 1, c] : near([x.shape[0] ?? 1, 1, 1, c]));
    const [n, h, w] = x.shape as number[];
    const asOk = (g.shape.length === 4 && g.shape[3] === 1) || g.shape.length === 3;
    const acOk = (a.shape.length === 2 && a.shape[1] === c) || (a.shape.length === 4 && a.shape[1] === 1 && a.shape[2] === 1 && a.shape[3] === c);
    const ok = usable(x, g, a) && f32s(x, g, a) && x.shape.length === 4 && x.shape.every((d) => d >= 1) && asOk && g.shape[0] === n && g.shape[1] === h && g.shape[2] === w && acOk && a.shape[0] === n;
    return {
      op: 'fcaFuse', describe: `fcaFuse(${x.shape}, ${g.shape}, ${a.shape})`, call: () => ops.fcaFuse(x.t, g.t, a.t),
      expect: ok ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => refFcaFuse(x.data, g.data, a.data, n!, h! * w!, c) } : refuse,
    };
  });

  // ---- convolutions
  const convOpts = () => ({
    stride: opt(() => (chance(0.7) ? 1 + int(2) : [1 + int(2), 1 + int(2)])),
    padding: opt(() => int(3)),
    dilation: opt(() => 1 + int(2)),
  });
  add(() => {
    const x = maybeBad(nhwc());
    const ci = x.shape[3] ?? 1;
    const groups = chance(0.8) ? (chance(0.7) ? 1 : pick([1, ci, 2, 3].filter((gg) => gg >= 1))) : pick([0, 1.5, -1]);
    const cig = Number.isInteger(groups) && groups > 0 && ci % groups === 0 ? ci / groups : ci;
    const co = (Number.isInteger(groups) && groups > 0 ? groups : 1) * (1 + int(3));
    const w = maybeBad(chance(0.8) ? [co, 1 + int(3), 1 + int(3), cig] : near([co, 3, 3, cig]));
    const b = chance(0.5) ? null : maybeBad(chance(0.8) ? [w.shape[0] ?? 1] : anyShape());
    const o = convOpts();
    const stride = pairOpt(o.stride, 1, 1);
    const padding = pairOpt(o.padding, 0, 0);
    const dilation = pairOpt(o.dilation, 1, 1);
    const [n, h, wd] = x.shape as number[];
    const [wco, kh, kw, wci] = w.shape as number[];
    let shape: number[] | null = null;
    if (usable(x, w, b) && f32s(x, w, ...(b ? [b] : [])) && x.shape.length === 4 && w.shape.length === 4 && isInt(groups, 1) && stride && padding && dilation &&
      x.shape.every((d) => d > 0) && w.shape.every((d) => d > 0) && ci % groups === 0 && wco! % groups === 0 && wci === ci / groups && (!b || (b.shape.length === 1 && b.shape[0] === wco))) {
      const ho = Math.floor((h! + 2 * padding[0] - dilation[0] * (kh! - 1) - 1) / stride[0]) + 1;
      const wo = Math.floor((wd! + 2 * padding[1] - dilation[1] * (kw! - 1) - 1) / stride[1]) + 1;
      if (ho >= 1 && wo >= 1) shape = [n!, ho, wo, wco!];
    }
    return {
      op: 'conv2d', describe: `conv2d(${x.shape}, ${w.shape}, ${b ? b.shape : 'null'}, ${JSON.stringify({ ...o, groups })})`,
      call: () => ops.conv2d(x.t, w.t, b?.t ?? null, { ...o, groups } as never),
      expect: shape ? { kind: 'ok', shape, dtype: 'f32', ref: () => refConv2d(x.data, x.shape, w.data, w.shape, b?.data ?? null, { stride: stride!, padding: padding!, dilation: dilation!, groups }).data } : refuse,
    };
  });
  add(() => {
    const h = chance(0.85) ? 1 + int(9) : pick([0, -1, 1.5]);
    const w = chance(0.85) ? 1 + int(9) : pick([0, NaN]);
    const kh = 1 + int(4);
    const kw = chance(0.9) ? 1 + int(4) : 0;
    const o = convOpts();
    const stride = pairOpt(o.stride, 1, 1);
    const padding = pairOpt(o.padding, 0, 0);
    const dilation = pairOpt(o.dilation, 1, 1);
    let out: number[] | null = null;
    if (stride && padding && dilation && isInt(h, 1) && isInt(w, 1) && isInt(kw, 1)) {
      const ho = Math.floor((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
      const wo = Math.floor((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
      if (ho >= 1 && wo >= 1) out = [ho, wo];
    }
    return { op: 'conv2d', describe: `conv2dOutputSize(${h}, ${w}, ${kh}, ${kw}, ${JSON.stringify(o)})`, call: () => ops.conv2dOutputSize(h, w, kh, kw, o as never), expect: out ? { kind: 'ok', shape: out, dtype: 'f32', numbers: true } : refuse };
  });
  add(() => {
    const x = maybeBad(nhwc());
    const c = x.shape[3] ?? 1;
    const w = maybeBad(chance(0.8) ? [1 + int(3), 1 + int(3), c] : near([3, 3, c]));
    const b = chance(0.5) ? null : maybeBad(chance(0.8) ? [c] : anyShape());
    const o = convOpts();
    const stride = pairOpt(o.stride, 1, 1);
    const padding = pairOpt(o.padding, 0, 0);
    const dilation = pairOpt(o.dilation, 1, 1);
    const [n, h, wd] = x.shape as number[];
    const [kh, kw, wc] = w.shape as number[];
    let shape: number[] | null = null;
    if (usable(x, w, b) && f32s(x, w, ...(b ? [b] : [])) && x.shape.length === 4 && w.shape.length === 3 && stride && padding && dilation && x.shape.every((d) => d > 0) && kh! > 0 && kw! > 0 && wc === c && (!b || (b.shape.length === 1 && b.shape[0] === c))) {
      const ho = Math.floor((h! + 2 * padding[0] - dilation[0] * (kh! - 1) - 1) / stride[0]) + 1;
      const wo = Math.floor((wd! + 2 * padding[1] - dilation[1] * (kw! - 1) - 1) / stride[1]) + 1;
      if (ho >= 1 && wo >= 1) shape = [n!, ho, wo, c];
    }
    return {
      op: 'depthwiseConv2d', describe: `depthwiseConv2d(${x.shape}, ${w.shape}, ${b ? b.shape : 'null'}, ${JSON.stringify(o)})`,
      call: () => ops.depthwiseConv2d(x.t, w.t, b?.t ?? null, o as never),
      expect: shape ? { kind: 'ok', shape, dtype: 'f32', ref: () => refDepthwise({ x: x.shape, k: [kh!, kw!], stride: stride!, padding: padding!, dilation: dilation! }, x.data, w.data, b?.data ?? null) } : refuse,
    };
  });
  add(() => {
    const x = maybeBad(nhwc());
    const ci = x.shape[3] ?? 1;
    const w = maybeBad(chance(0.8) ? [1 + int(3), 1 + int(3), 1 + int(3), ci] : near([2, 3, 3, ci]));
    const b = chance(0.5) ? null : maybeBad(chance(0.8) ? [w.shape[0] ?? 1] : anyShape());
    const s0 = opt(() => 1 + int(3));
    const o = { stride: s0, padding: opt(() => int(2)), outputPadding: opt(() => (isInt(s0, 1) ? int(s0) : int(2))) };
    const stride = pairOpt(o.stride, 1, 1);
    const padding = pairOpt(o.padding, 0, 0);
    const outPad = pairOpt(o.outputPadding, 0, 0);
    const [n, h, wd] = x.shape as number[];
    const [co, kh, kw, wci] = w.shape as number[];
    let shape: number[] | null = null;
    if (usable(x, w, b) && f32s(x, w, ...(b ? [b] : [])) && x.shape.length === 4 && w.shape.length === 4 && stride && padding && outPad && x.shape.every((d) => d > 0) && w.shape.slice(0, 3).every((d) => d > 0) && wci === ci &&
      (!b || (b.shape.length === 1 && b.shape[0] === co)) && outPad[0] < stride[0] && outPad[1] < stride[1]) {
      const ho = (h! - 1) * stride[0] - 2 * padding[0] + kh! + outPad[0];
      const wo = (wd! - 1) * stride[1] - 2 * padding[1] + kw! + outPad[1];
      if (ho > 0 && wo > 0) shape = [n!, ho, wo, co!];
    }
    return {
      op: 'convTranspose2d', describe: `convTranspose2d(${x.shape}, ${w.shape}, ${b ? b.shape : 'null'}, ${JSON.stringify(o)})`,
      call: () => ops.convTranspose2d(x.t, w.t, b?.t ?? null, o as never),
      expect: shape ? { kind: 'ok', shape, dtype: 'f32', ref: () => refConvTranspose({ x: x.shape, k: [co!, kh!, kw!], stride: stride!, padding: padding!, outputPadding: outPad! }, x.data, w.data, b?.data ?? null) } : refuse,
    };
  });

  // ---- normalisation, linear, loss
  add(() => {
    const x = maybeBad(chance(0.7) ? shapeOf(4) : anyShape());
    const c = x.shape[x.shape.length - 1] ?? 1;
    const vec = () => maybeBad(chance(0.95) ? [c] : near([c], 0), 'f32', 0.3);
    const [g, bt, rm, rv0] = [vec(), vec(), vec(), vec()];
    // A running variance must be positive for the reference (and for any real model).
    const rv = rv0.dtype === 'f32' && !rv0.bad ? operand(rv0.shape, 'f32') : rv0;
    if (rv !== rv0) {
      rv.data = rv.data.map((v) => Math.fround(Math.abs(v) + 0.5));
      e.writeTensor(rv.t, Float32Array.from(rv.data));
    }
    const training = chance(0.5);
    const momentum = chance(0.9) ? pick([0.1, 0, 1]) : pick([-0.1, 1.5, NaN]);
    const eps = chance(0.9) ? pick([1e-5, 1e-3]) : pick([0, -1, NaN]);
    const vecsOk = [g, bt, rm, rv].every((o) => o.shape.length === 1 && o.shape[0] === c);
    const ok = usable(x, g, bt, rm, rv) && f32s(x, g, bt, rm, rv) && x.shape.length >= 2 && sizeOf(x.shape) > 0 && vecsOk && Number.isFinite(momentum) && momentum >= 0 && momentum <= 1 && Number.isFinite(eps) && eps > 0;
    const ref = ok ? refBatchNorm(x.data, c, g.data, bt.data, rm.data, rv.data, { training, momentum, eps }) : null;
    return {
      op: 'batchNorm2d', describe: `batchNorm2d(${x.shape}, [${g.shape}] [${bt.shape}] [${rm.shape}] [${rv.shape}], training ${training}, momentum ${momentum}, eps ${eps})`,
      call: () => {
        const y = ops.batchNorm2d(x.t, g.t, bt.t, rm.t, rv.t, { training, momentum, eps });
        if (ref) {
          rm.data = ref.runningMean.map(Math.fround);
          rv.data = ref.runningVar.map(Math.fround);
        }
        return y;
      },
      // Training-mode statistics of a handful of values: 1e-4 relative to the output range.
      expect: ok ? { kind: 'ok', shape: x.shape, dtype: 'f32', ref: () => ref!.y, tol: 1e-3 } : refuse,
    };
  });
  add(() => {
    const inF = 1 + int(6);
    const x = maybeBad(chance(0.8) ? [1 + int(3), inF] : anyShape());
    const w = maybeBad(chance(0.8) ? [1 + int(5), x.shape[1] ?? inF] : near([3, inF], 0));
    const b = chance(0.4) ? null : maybeBad(chance(0.8) ? [w.shape[0] ?? 1] : anyShape());
    const ok = usable(x, w, b) && f32s(x, w, ...(b ? [b] : [])) && x.shape.length === 2 && w.shape.length === 2 && sizeOf(x.shape) > 0 && sizeOf(w.shape) > 0 && w.shape[1] === x.shape[1] && (!b || (b.shape.length === 1 && b.shape[0] === w.shape[0]));
    return {
      op: 'linear', describe: `linear(${x.shape}, ${w.shape}, ${b ? b.shape : 'null'})`, call: () => ops.linear(x.t, w.t, b?.t ?? null),
      expect: ok ? { kind: 'ok', shape: [x.shape[0]!, w.shape[0]!], dtype: 'f32', ref: () => refLinear(x.data, w.data, b?.data ?? null, x.shape[0]!, x.shape[1]!, w.shape[0]!) } : refuse,
    };
  });
  add(() => {
    const logits = maybeBad(chance(0.8) ? shapeOf(pick([2, 4])) : anyShape());
    const k = logits.shape[logits.shape.length - 1] ?? 1;
    const pixShape = logits.shape.slice(0, -1);
    const labelsDtype = chance(0.9) ? pick(['i32', 'u32'] as const) : 'f32';
    const labels = (() => {
      const o = maybeBad(chance(0.85) ? pixShape : near(pixShape, 0), labelsDtype);
      if (o.dtype === 'f32' || o.bad) return o;
      o.data = o.data.map(() => (chance(0.1) ? 255 : int(Math.max(1, k))));
      e.writeTensor(o.t, o.dtype === 'i32' ? Int32Array.from(o.data) : Uint32Array.from(o.data));
      return o;
    })();
    const ignoreIndex = chance(0.9) ? 255 : pick([-1, 1.5, 2 ** 32]);
    const lo = labels.dtype === 'i32' ? -(2 ** 31) : 0;
    const hi = labels.dtype === 'i32' ? 2 ** 31 : 2 ** 32;
    const ok = usable(logits, labels) && f32s(logits) && logits.shape.length >= 1 && sizeOf(logits.shape) > 0 && (labels.dtype === 'i32' || labels.dtype === 'u32') && same(labels.shape, pixShape) && Number.isInteger(ignoreIndex) && ignoreIndex >= lo && ignoreIndex < hi;
    return {
      op: 'softmaxCrossEntropy', describe: `softmaxCrossEntropy(${logits.shape}, ${labels.shape} ${labels.dtype}, ignore ${ignoreIndex})`,
      call: () => ops.softmaxCrossEntropy(logits.t, labels.t, { ignoreIndex }),
      expect: ok ? { kind: 'ok', shape: [1], dtype: 'f32', ref: () => [refCrossEntropy(logits.data, labels.data, k, ignoreIndex).loss], tol: 1e-4 } : refuse,
    };
  });

  // ---- image upload
  add(() => {
    const width = chance(0.85) ? 1 + int(9) : pick([0, -2, 1.5, 2 ** 30]);
    const height = chance(0.85) ? 1 + int(9) : pick([0, NaN]);
    const channels = chance(0.85) ? pick([3, 4]) : pick([1, 2, 5, 0]);
    const n = Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 ? width * height * Math.max(channels, 0) : 0;
    const len = chance(0.9) ? Math.min(n, 4096) : int(50);
    const bytes = Uint8Array.from({ length: len }, () => int(256));
    // The documented pixel type is 8-bit (Uint8Array or Uint8ClampedArray); a Float32Array of
    // [0, 1] values, an Array or null must be refused (issue 24: the float array used to pass).
    const kind = chance(0.85) ? 'u8' : pick(['clamped', 'f32', 'array', 'null'] as const);
    const data = (kind === 'u8' ? bytes : kind === 'clamped' ? Uint8ClampedArray.from(bytes) : kind === 'f32' ? Float32Array.from(bytes, (v) => v / 255) : kind === 'array' ? Array.from(bytes) : null) as Uint8Array;
    const outWidth = chance(0.8) ? undefined : pick([1, 5, 0, -1, 2 ** 30]);
    const outHeight = chance(0.8) ? undefined : pick([2, 7, 0, 1.5]);
    const ow = outWidth ?? width;
    const oh = outHeight ?? height;
    const ok = (kind === 'u8' || kind === 'clamped') && (channels === 3 || channels === 4) && isInt(width, 1) && isInt(height, 1) && bytes.length === width * height * channels && isInt(ow, 1) && isInt(oh, 1);
    const mean = [0.485, 0.456, 0.406] as const;
    const std = [0.229, 0.224, 0.225] as const;
    return {
      op: 'imageToTensor', describe: `imageToTensor(${width}x${height}x${channels}, ${bytes.length} values as ${kind}, out ${outWidth}x${outHeight})`,
      call: () => ops.imageToTensor(e, { data, width, height, channels: channels as 3 }, { outWidth, outHeight }),
      expect: ok ? { kind: 'ok', shape: [1, oh, ow, 3], dtype: 'f32', ref: () => refImageToTensor(bytes, width, height, channels, ow, oh, [...mean], [...std]), tol: 1e-4 } : refuse,
    };
  });

  return {
    next: (): Case => pick(cases)(),
    ops: cases.length,
    /** Disposes every operand the fuzzer made. */
    cleanup: () => live.splice(0).forEach((o) => o.t.dispose()),
  };
}

/**
 * Error floor: 1% of the reference's largest magnitude, so entries near zero (sums of a few
 * terms of +-2 that cancel) are judged by f32's absolute accuracy, not by their tiny size.
 */
function floorOf(want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(want[i]!));
  return Math.max(1e-2 * m, 1e-6);
}

function refConcatOut(list: Operand[], axis: number): { shape: number[]; ref: () => Float64Array } {
  const out = refConcat(list.map((o) => o.data), list.map((o) => o.shape), axis);
  return { shape: out.shape, ref: () => out.data };
}

t('fuzz: 1000 random calls of every public op give a clean ShapeError (nothing dispatched, nothing leaked) or the reference result', async () => {
  const e = await testEngine();
  const foreign = await createEngine({ quiet: true });
  const f = fuzzer(e, foreign, Number(process.env.CANET_FUZZ_SEED ?? 20251124)); // other seeds: CANET_FUZZ_SEED
  const counts = { refused: 0, computed: 0, tooBig: 0, byOp: new Map<string, [number, number]>() };
  const maxBytes = Math.min(e.limits.maxStorageBufferBindingSize, e.limits.maxBufferSize);
  const started = Date.now();
  for (let iter = 0; iter < 1000; iter++) {
    const c = f.next();
    const where = `iteration ${iter}: ${c.describe}`;
    // An output over the binding limit must be refused by name of the limit, never allocated.
    const tooBig = c.expect.kind === 'ok' && !c.expect.numbers && sizeOf(c.expect.shape) * 4 > maxBytes;
    if (tooBig) c.expect = refuse;
    const before = e.stats();
    let result: unknown;
    let error: unknown = null;
    try {
      result = c.call();
    } catch (err) {
      error = err;
    }
    const tally = counts.byOp.get(c.op) ?? [0, 0];
    counts.byOp.set(c.op, tally);
    if (error) {
      if (c.expect.kind === 'ok') assert.unreachable(`${where}: refused a valid call: ${(error as Error)?.message ?? error}`);
      if (!(error instanceof ShapeError)) assert.unreachable(`${where}: threw ${(error as Error)?.stack ?? error}, not a ShapeError`);
      const msg = (error as Error).message;
      if (tooBig) assert.match(msg, /over this adapter's maxStorageBufferBindingSize/, where);
      else assert.ok(msg.startsWith(`${c.op}: `), `${where}: message does not name ${c.op}: ${msg}`);
      if (tooBig) counts.tooBig++;
      const after = e.stats();
      assert.is(after.dispatches, before.dispatches, `${where}: dispatched before refusing (${msg})`);
      assert.is(after.liveTensors, before.liveTensors, `${where}: left ${after.liveTensors - before.liveTensors} tensor(s) behind (${msg})`);
      counts.refused++;
      tally[0]++;
      continue;
    }
    const exp = c.expect;
    if (exp.kind === 'refuse') {
      assert.unreachable(`${where}: accepted an invalid call`);
      continue;
    }
    tally[1]++;
    counts.computed++;
    if (Array.isArray(result) && typeof result[0] === 'number') {
      assert.equal(result, exp.shape, `${where}: returned ${result}`);
      continue;
    }
    const y = result as Tensor;
    assert.equal([...y.shape], exp.shape, `${where}: output shape`);
    assert.is(y.dtype, exp.dtype, `${where}: output dtype`);
    if (exp.ref) {
      const got = await y.read();
      const want = exp.ref();
      if (exp.exact) assert.ok(got.length === want.length && got.every((v, i) => v === want[i]), `${where}: values differ from the reference`);
      else
        try {
          expectClose(got, want, exp.tol ?? 1e-4, where, floorOf(want));
        } catch (err) {
          assert.unreachable((err as Error).message);
        }
    }
    // Results that are not an operand (in-place ops return theirs) go back to the pool.
    if (!['fill', 'axpyInPlace'].includes(c.op)) y.dispose();
    if (iter % 50 === 49) f.cleanup();
  }
  f.cleanup();
  await e.flush(); // no GPU error left behind by anything recorded
  const summary = [...counts.byOp].map(([op, [rf, ok]]) => `${op} ${rf}/${ok}`).join(', ');
  console.log(`    op-fuzz: ${counts.refused} refused (${counts.tooBig} over the size limit), ${counts.computed} computed in ${((Date.now() - started) / 1000).toFixed(1)} s (refused/computed: ${summary})`);
  assert.ok(counts.refused > 150 && counts.computed > 150, `refused ${counts.refused}, computed ${counts.computed}: the fuzzer must exercise both`);
  for (const [op, [rf, ok]] of counts.byOp) assert.ok(rf > 0 && ok > 0, `${op}: refused ${rf}, computed ${ok}; both outcomes must occur`);

  // The engine still works: a small computation against its reference.
  const a = e.tensor([1, 2, 3, 4], [2, 2]);
  const s = ops.softmax(ops.scale(a, 2));
  expectClose(await s.read(), refSoftmax([2, 4, 6, 8], 2), 1e-6, 'softmax after the fuzz');
  a.dispose();
  s.dispose();
  foreign.destroy();
}, { timeoutMs: 300_000 });

t('a disposed tensor or one of another engine is refused by name, without leaking the output', async () => {
  const e = await testEngine();
  const other = await createEngine({ quiet: true });
  const a = e.tensor([1, 2, 3], [3]);
  const gone = e.tensor([1, 2, 3], [3]);
  gone.dispose();
  const theirs = other.tensor([1, 2, 3], [3]);
  const before = e.stats();
  for (const [what, fn] of [
    ['add with a disposed tensor', () => ops.add(a, gone)],
    ['add with another engine\'s tensor', () => ops.add(a, theirs)],
    ['relu of a disposed tensor', () => ops.relu(gone)],
    ['concat with another engine\'s tensor', () => ops.concat([a, theirs], 0)],
  ] as const) {
    try {
      fn();
      assert.unreachable(`${what} was accepted`);
    } catch (err) {
      assert.instance(err, ShapeError, `${what}: ${String(err)}`);
      assert.match((err as Error).message, /was disposed|belongs to another engine/, what);
    }
  }
  const after = e.stats();
  assert.is(after.liveTensors, before.liveTensors, 'outputs leaked');
  assert.is(after.dispatches, before.dispatches);
  assert.not.instance(new ShapeError('x'), EngineClosedError);
  a.dispose();
  other.destroy();
});

t('a refused model forward or segment allocates nothing (disposed input, another engine\'s, integers)', async () => {
  const e = await testEngine();
  const other = await createEngine({ quiet: true });
  const image = (eng: Engine, h: number, w: number) => eng.tensor(new Float32Array(h * w * 3), [1, h, w, 3]);
  const gone = image(e, 64, 64);
  gone.dispose();
  const goneOdd = image(e, 40, 72);
  goneOdd.dispose();
  const inputs: [string, Tensor][] = [
    ['a disposed input', gone],
    ['a disposed input to be padded', goneOdd],
    ["another engine's input", image(other, 64, 64)],
    ['an i32 input', e.empty([1, 64, 64, 3], 'i32')],
  ];
  for (const head of ['compatible', 'plain'] as const) {
    const m = canet(e, { classes: 3, width: 0.125, head, padInput: true });
    for (const training of [true, false]) {
      m.train(training);
      for (const [what, x] of inputs)
        for (const fn of ['forward', 'segment'] as const) {
          const where = `${head} head, ${training ? 'training' : 'eval'}: ${fn} of ${what}`;
          const before = e.stats();
          // Before: segment in eval mode left the folded BatchNorm or the FCA's concatenation
          // allocated, because the first op to refuse ran after them.
          assert.throws(() => m[fn](x), (err: unknown) => err instanceof ShapeError && (err as Error).message.startsWith(`canet.${fn}: `), where);
          const after = e.stats();
          assert.is(after.liveTensors, before.liveTensors, `${where}: left tensors behind`);
          assert.is(after.buffersCreated + after.poolHits, before.buffersCreated + before.poolHits, `${where}: allocated before refusing`);
          assert.is(after.dispatches, before.dispatches, `${where}: dispatched before refusing`);
        }
    }
    m.dispose();
  }
  inputs[3]![1].dispose();
  other.destroy();
});

t('a refused training step or batch upload allocates nothing and leaves BatchNorm statistics alone', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 3, width: 0.125, head: 'plain' });
  const opt = new SGD(m.parameters(), { lr: 0.1 });
  const images = e.tensor(new Float32Array(2 * 32 * 32 * 3).fill(0.5), [2, 32, 32, 3]);
  const labels = e.tensor(new Int32Array(2 * 32 * 32), [2, 32, 32]);
  const gone = e.tensor(new Int32Array(2 * 32 * 32), [2, 32, 32]);
  gone.dispose();
  const small = e.tensor(new Int32Array(32 * 32), [1, 32, 32]);
  const stats = async () => (await m.stateDict()).get('spatial_branch.0.1.running_mean')!.data.join(',');
  const runningMean = await stats();
  const cases: [string, () => unknown, RegExp][] = [
    // Before: the forward ran (allocating, and moving the running statistics) before the loss refused.
    ['disposed labels', () => trainStep(m, opt, images, gone), /trainStep: labels .* was disposed/],
    ['f32 labels', () => trainStep(m, opt, images, images), /trainStep: labels \[2, 32, 32, 3\] must be \[N, H, W\]/],
    ['labels of another size', () => trainStep(m, opt, images, small), /must be \[N, H, W\] of images/],
    // Before: the batch tensors stayed allocated when a sample was refused.
    ['a float image in a batch', () => uploadBatch(e, [{ image: new Float32Array(32 * 32 * 3) as unknown as Uint8Array, labels: new Uint8Array(32 * 32), width: 32, height: 32 }], 32, 32), /imageToTensor: data must be a Uint8Array/],
  ];
  for (const [what, fn, re] of cases) {
    const before = e.stats();
    assert.throws(fn, (err: unknown) => err instanceof ShapeError && re.test((err as Error).message), what);
    const after = e.stats();
    assert.is(after.liveTensors, before.liveTensors, `${what}: left tensors behind`);
    assert.is(after.dispatches, before.dispatches, `${what}: dispatched before refusing`);
  }
  assert.is(await stats(), runningMean, 'a refused step moved BatchNorm running statistics');
  opt.dispose();
  m.dispose();
  images.dispose();
  labels.dispose();
  small.dispose();
});

t.run();
