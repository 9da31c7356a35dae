/**
 * BatchNorm cases, run by test/batchnorm.test.ts (every table, in each lane mode: serial,
 * workgroup and subgroup reductions, elementwise pass fused or separate) and by the browser page
 * (BATCHNORM_BROWSER_*). Forward against the float64 reference of PyTorch's BatchNorm2d
 * (test/ref/batchnorm.ts), backward against its finite differences (gradCheck). Tolerances
 * (relative, see expectClose), in BN_TOL:
 * - training y 3e-4: outputs that cancel to near zero (x-hat * gamma = -beta) carry 1-3 f32 ulps of
 *   gamma and beta, which the 1e-3-of-max floor turns into up to ~2e-4 (seen with scalar lanes,
 *   C = 3); running statistics 1e-4;
 * - inference y 1e-4, running statistics left exactly as they were;
 * - gradients 2e-3: dx in training mode is a difference of O(1) terms that nearly cancel (the sum
 *   over the batch of dx is 0); 2e-3 covers f32 rounding of those terms with margin.
 */
import { ops, type Engine, type Tensor } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { gradCheck } from '../gradcheck.js';
import { refBatchNorm } from '../ref/batchnorm.js';
import { expectEqual, f32Round, sizeOf, type Seeded } from './common.js';

export const BN_TOL = { trainY: 3e-4, stats: 1e-4, inferY: 1e-4, grad: 2e-3 } as const;

/** Per-channel parameters and running statistics, rounded to f32 (what the GPU gets). */
export interface BatchNormParams {
  gamma: Float64Array;
  beta: Float64Array;
  rm: Float64Array;
  rv: Float64Array;
}

/** gamma in [0.5, 1.5], beta in [-1, 1], running mean in [-0.5, 0.5], running variance in [0.5, 2] (seeds seed..seed+3). */
export function bnParams(c: number, seed: number): BatchNormParams {
  return {
    gamma: f32Round(randn(c, seed, 0.5, 1.5)),
    beta: f32Round(randn(c, seed + 1)),
    rm: f32Round(randn(c, seed + 2, -0.5, 0.5)),
    rv: f32Round(randn(c, seed + 3, 0.5, 2)),
  };
}

export function uploadBnParams(e: Engine, p: BatchNormParams): { gamma: Tensor; beta: Tensor; rm: Tensor; rv: Tensor } {
  const c = p.gamma.length;
  return {
    gamma: e.tensor(Float32Array.from(p.gamma), [c]),
    beta: e.tensor(Float32Array.from(p.beta), [c]),
    rm: e.tensor(Float32Array.from(p.rm), [c]),
    rv: e.tensor(Float32Array.from(p.rv), [c]),
  };
}

const channels = (shape: readonly number[]): number => shape[shape.length - 1]!;

/**
 * Forward shapes: batch 1 and 3, channels 1, 2, 3, 5, 16, 17 and 576, odd spatial sizes, rank 2
 * and 4, and [3, 64, 65, 8], long enough per channel to need the chunk-merging passes.
 */
export const BN_SHAPES: readonly (readonly number[])[] = [
  [1, 7, 9, 3],
  [3, 7, 9, 5],
  [1, 33, 17, 17],
  [3, 5, 5, 1],
  [2, 3, 3, 2],
  [1, 9, 7, 16],
  [7, 5],
  [1, 3, 5, 576],
  [3, 64, 65, 8],
];

/** Training forward: parameters from the seed, the two batches from seed + 100 and seed + 200. */
export const BN_TRAINING_FORWARD: Seeded<readonly number[]>[] = BN_SHAPES.map((c, k) => ({ c, seed: 100 + k }));
/** Inference forward: parameters from the seed, the input from seed + 100. */
export const BN_INFERENCE_FORWARD: Seeded<readonly number[]>[] = BN_SHAPES.map((c, k) => ({ c, seed: 400 + k }));

/**
 * Training forward, two calls on the same parameters (momentum 0.3, eps 1e-5): y and the running
 * statistics after each against float64. Returns the largest relative error, throws over BN_TOL.
 */
export async function checkBnTrainingForward(e: Engine, shape: readonly number[], seed: number): Promise<number> {
  const c = channels(shape);
  const n = sizeOf(shape);
  const p = bnParams(c, seed);
  const x1 = f32Round(randn(n, seed + 100, -2, 3));
  const x2 = f32Round(randn(n, seed + 200, -1, 1));
  const opts: ops.BatchNormOptions = { training: true, momentum: 0.3, eps: 1e-5 };
  return e.scope(async () => {
    const g = uploadBnParams(e, p);
    const r1 = refBatchNorm(x1, c, p.gamma, p.beta, p.rm, p.rv, opts);
    const y1 = ops.batchNorm2d(e.tensor(Float32Array.from(x1), [...shape]), g.gamma, g.beta, g.rm, g.rv, opts);
    let worst = expectClose(await y1.read(), r1.y, BN_TOL.trainY, `y after 1 call ${shape}`);
    worst = Math.max(worst, expectClose(await g.rm.read(), r1.runningMean, BN_TOL.stats, `runningMean after 1 call ${shape}`));
    worst = Math.max(worst, expectClose(await g.rv.read(), r1.runningVar, BN_TOL.stats, `runningVar after 1 call ${shape}`));
    const r2 = refBatchNorm(x2, c, p.gamma, p.beta, r1.runningMean, r1.runningVar, opts);
    const y2 = ops.batchNorm2d(e.tensor(Float32Array.from(x2), [...shape]), g.gamma, g.beta, g.rm, g.rv, opts);
    worst = Math.max(worst, expectClose(await y2.read(), r2.y, BN_TOL.trainY, `y after 2 calls ${shape}`));
    worst = Math.max(worst, expectClose(await g.rm.read(), r2.runningMean, BN_TOL.stats, `runningMean after 2 calls ${shape}`));
    return Math.max(worst, expectClose(await g.rv.read(), r2.runningVar, BN_TOL.stats, `runningVar after 2 calls ${shape}`));
  });
}

/**
 * Inference forward (eps 1e-3): y against float64, and the running statistics left bit for bit as
 * they were. Returns the largest relative error, throws over BN_TOL.
 */
export async function checkBnInferenceForward(e: Engine, shape: readonly number[], seed: number): Promise<number> {
  const c = channels(shape);
  const p = bnParams(c, seed);
  const x = f32Round(randn(sizeOf(shape), seed + 100, -2, 2));
  const opts: ops.BatchNormOptions = { training: false, eps: 1e-3 };
  return e.scope(async () => {
    const g = uploadBnParams(e, p);
    const r = refBatchNorm(x, c, p.gamma, p.beta, p.rm, p.rv, opts);
    const y = ops.batchNorm2d(e.tensor(Float32Array.from(x), [...shape]), g.gamma, g.beta, g.rm, g.rv, opts);
    const worst = expectClose(await y.read(), r.y, BN_TOL.inferY, `y ${shape}`);
    expectEqual(Array.from(await g.rm.read()), Array.from(Float32Array.from(p.rm)), `runningMean unchanged ${shape}`);
    expectEqual(Array.from(await g.rv.read()), Array.from(Float32Array.from(p.rv)), `runningVar unchanged ${shape}`);
    return worst;
  });
}

/** A gradient case: x, gamma and beta (x's gradient unchecked with gradX false), with an optional fused activation. */
export interface BnGradCase {
  shape: readonly number[];
  training: boolean;
  gradX?: boolean;
  act?: NonNullable<ops.BatchNormOptions['act']>;
}

export const describeBnGrad = (c: BnGradCase): string =>
  `[${c.shape}] ${c.training ? 'training' : 'inference'}${c.act && c.act !== 'none' ? ` +${c.act}` : ''}${c.gradX === false ? ' (no dx)' : ''}`;

/** The float64 form of a fused activation (the unary op table's reference; identity for 'none'). */
export function bnActRef(act: BnGradCase['act'] = 'none'): (v: number) => number {
  if (act === 'none') return (v) => v;
  const spec = ops.unaryOps[act];
  return (v) => spec.ref(v, 0);
}

/**
 * gradCheck of batchNorm2d (momentum 0.1, eps 1e-5, the case's activation) for x, gamma, beta:
 * parameters from the seed, x from seed + 10; the running buffers are made fresh inside the GPU
 * forward. The reference recomputes the batch statistics for every perturbed input, so the finite
 * differences see the dependence of mean and variance on x, as the analytic backward must.
 * Returns the largest relative error, throws over BN_TOL.grad.
 */
export function checkBnGrad(e: Engine, bc: BnGradCase, seed: number): Promise<number> {
  const shape = [...bc.shape];
  const c = channels(shape);
  const p = bnParams(c, seed);
  const act = bc.act ?? 'none';
  const opts = { training: bc.training, momentum: 0.1, eps: 1e-5, act };
  const actRef = bnActRef(act);
  return gradCheck(e, {
    gpu: ([x, gamma, beta]) => {
      const rm = e.tensor(Float32Array.from(p.rm), [c]);
      const rv = e.tensor(Float32Array.from(p.rv), [c]);
      return ops.batchNorm2d(x!, gamma!, beta!, rm, rv, opts);
    },
    ref: ([x, gamma, beta]) => refBatchNorm(x!, c, gamma!, beta!, p.rm, p.rv, opts).y.map(actRef),
    inputs: [
      { name: 'x', shape, data: randn(sizeOf(shape), seed + 10, -2, 2), grad: bc.gradX !== false },
      { name: 'gamma', shape: [c], data: p.gamma },
      { name: 'beta', shape: [c], data: p.beta },
    ],
    tol: BN_TOL.grad,
    maxElements: 40,
    seed,
  });
}

/** Training backward: scalar (C = 3, 5, 17) and vec4 (C = 8) lanes, one case without dx. */
export const BN_TRAINING_BACKWARD: Seeded<BnGradCase>[] = [
  { c: { shape: [2, 5, 7, 3], training: true }, seed: 1 },
  { c: { shape: [2, 3, 5, 5], training: true }, seed: 2 },
  { c: { shape: [2, 3, 3, 8], training: true }, seed: 3 },
  { c: { shape: [1, 9, 7, 17], training: true }, seed: 4 },
  { c: { shape: [3, 5, 3, 3], training: true, gradX: false }, seed: 5 },
];

/** Inference backward. */
export const BN_INFERENCE_BACKWARD: Seeded<BnGradCase>[] = [
  { c: { shape: [2, 5, 7, 3], training: false }, seed: 6 },
  { c: { shape: [1, 3, 5, 8], training: false }, seed: 7 },
  { c: { shape: [2, 3, 3, 5], training: false, gradX: false }, seed: 8 },
];

/** What the browser page runs, forward: [3, 7, 9, 5] (scalar lanes, batch 3) and [3, 64, 65, 8] (needs the chunk merge). */
export const BATCHNORM_BROWSER_TRAINING: Seeded<readonly number[]>[] = [BN_TRAINING_FORWARD[1]!, BN_TRAINING_FORWARD[8]!];
export const BATCHNORM_BROWSER_INFERENCE: Seeded<readonly number[]>[] = [BN_INFERENCE_FORWARD[1]!, BN_INFERENCE_FORWARD[8]!];
/** What the browser page runs, backward: [2, 3, 3, 8] in training (vec4 lanes). */
export const BATCHNORM_BROWSER_BACKWARD: Seeded<BnGradCase>[] = [BN_TRAINING_BACKWARD[2]!];
