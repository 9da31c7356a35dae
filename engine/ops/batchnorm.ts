/**
 * Batch normalisation (PyTorch's BatchNorm2d semantics) over NHWC tensors, or any [..., C]: the
 * op, its checks, its choice of algorithm and its autograd. The algorithms live in batchnorm/:
 * - lanes.ts: per channel lane, one dispatch that reduces (mean, M2) with Chan's merge and then
 *   normalises (activation and residual fused), and one backward dispatch that reduces sum(g') and
 *   sum(g' xhat) and then writes dx (see fuseLanePass: on GPUs large tensors keep the elementwise
 *   pass as its own kernel); serial lanes, or a workgroup per lane merged by a tree or subgroups;
 * - chunked.ts: where lanes do not apply, per-chunk partial passes, merges and a finish;
 * - pointwise.ts: the elementwise passes (normalise, dx) after a reduction that did not fuse them;
 * - inference.ts: parameters from the running statistics, and BatchNorm folded into a producer's
 *   epilogue (bnFold);
 * - layout.ts: how x is cut into groups of lcm(C, 4) floats (see the layout note at the top of
 *   shaders/batchnorm.wgsl).
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { type ActivationName, ACTIVATION_NAMES, isActivation } from './activation.js';
import { unary } from './unary.js';
import { add } from './basic.js';
import { geometry } from './batchnorm/layout.js';
import { fuseLanePass, laneBackward, laneReduce, laneStatistics } from './batchnorm/lanes.js';
import { batchNormBackward, batchStatistics } from './batchnorm/chunked.js';
import { perLaneAffine } from './batchnorm/pointwise.js';
import { inferenceParams } from './batchnorm/inference.js';

export { bnFold } from './batchnorm/inference.js';
export type { LaneReduce } from './batchnorm/lanes.js';

/** Options of {@link batchNorm2d}. */
export interface BatchNormOptions {
  /** Normalise with the batch statistics and update the running ones (true), or use the running ones. */
  training: boolean;
  /** Weight of the batch statistic in the running average (PyTorch's momentum). Default 0.1. */
  momentum?: number;
  /** Added to the variance before the square root. Default 1e-5. */
  eps?: number;
  /** Activation applied to the normalised output, fused into the same kernels (and backward). Default 'none'. */
  act?: BatchNormActivation;
  /** A tensor of x's shape added to the normalised output before the activation (a skip connection), in the same pass. */
  residual?: Tensor | null;
}

/** The activations BatchNorm fuses: those of the table in activation.ts. */
export type BatchNormActivation = ActivationName;

/**
 * Batch normalisation with learned scale and shift.
 *
 * x [N,H,W,C] (or any [..., C]: statistics over every axis but the last), gamma/beta/runningMean/runningVar [C].
 * training: normalise with the batch mean and biased variance over N,H,W; update runningMean/runningVar IN PLACE on the GPU
 * with momentum as PyTorch: running = (1 - m) * running + m * batch, using the UNBIASED batch variance (n/(n-1)) for runningVar
 * (for a single value per channel, where that is undefined, the biased variance 0 is used).
 * inference: normalise with the running statistics. Records autograd for x, gamma, beta (the running buffers never require grad).
 *
 * @throws ShapeError for a rank below 2, an empty tensor, [C] vectors of the wrong shape, non-f32 data,
 *   running buffers aliasing another argument, or momentum outside [0, 1] / eps not positive.
 */
export function batchNorm2d(x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, opts: BatchNormOptions): Tensor {
  const op = 'batchNorm2d';
  checkOperands(op, x, gamma, beta, runningMean, runningVar);
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  check(x.rank >= 2, op, () => `input ${x.name} must be [N, H, W, C] (or [..., C] of rank >= 2), got ${fmtShape(x.shape)}`);
  check(x.size > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} is empty: no statistics to normalise with`);
  const c = x.shape[x.rank - 1]!;
  for (const [what, t] of [['gamma', gamma], ['beta', beta], ['runningMean', runningMean], ['runningVar', runningVar]] as const)
    check(t.rank === 1 && t.shape[0] === c, op, () => `${what} ${t.name} must be [${c}] (the channels of ${x.name} ${fmtShape(x.shape)}), got ${fmtShape(t.shape)}`);
  for (const t of [x, gamma, beta, runningMean, runningVar]) check(t.dtype === 'f32', op, () => `${t.name} must be f32, got ${t.dtype}`);
  // The running buffers are written in place: WebGPU forbids binding a written buffer twice.
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const)
    for (const other of [x, gamma, beta, what === 'runningMean' ? runningVar : runningMean])
      check(t !== other, op, () => `${what} ${t.name} must be its own tensor, not also passed as another argument`);
  check(Number.isFinite(momentum) && momentum >= 0 && momentum <= 1, op, () => `momentum must be in [0, 1], got ${momentum}`);
  check(Number.isFinite(eps) && eps > 0, op, () => `eps must be positive, got ${eps}`);

  const engine = x.engine;
  const training = opts.training;
  const act = opts.act ?? 'none';
  check(isActivation(act), op, () => `act must be one of ${ACTIVATION_NAMES.join(', ')}, got ${JSON.stringify(act)}`);
  const geo = geometry(x);
  // Lane reductions: one dispatch each way with the activation (and a residual) fused in, when
  // C % 4 == 0 (vec4 lanes) or, in training with the elementwise pass fused, for any C (scalar
  // lanes: the 1- and 19-channel layers). Otherwise the chunked passes and a separate activation op.
  const fuse = fuseLanePass(engine, laneReduce(engine), geo);
  const lanes = engine.variants.choose('bnReduce') !== 'chunked' && (geo.c % 4 === 0 || (training && fuse));
  const residual = opts.residual ?? null;
  if (residual) {
    checkOperands(op, residual);
    check(residual.dtype === 'f32' && residual.rank === x.rank && residual.shape.every((d, i) => d === x.shape[i]), op, () =>
      `residual ${residual.name} must be f32 of the input's shape ${fmtShape(x.shape)}, got ${residual.dtype} ${fmtShape(residual.shape)}`);
    check(residual !== runningMean && residual !== runningVar, op, () => `residual ${residual.name} must not be a running statistic`);
  }
  // The residual joins the fused pass when nothing follows it; otherwise (and for the chunked
  // path) the separate ops compose it.
  if (residual && (act !== 'none' || !lanes)) {
    const z = add(batchNorm2d(x, gamma, beta, runningMean, runningVar, { ...opts, act: 'none', residual: null }), residual);
    return act === 'none' ? z : unary(act, z);
  }
  if (act !== 'none' && !lanes) return unary(act, batchNorm2d(x, gamma, beta, runningMean, runningVar, { ...opts, act: 'none' }));
  // stats [pivot; dev; invstd] (mean = pivot + dev, pivot a data value of the channel) and
  // affine [gamma * invstd; pivot; dev; beta], each replicated to L floats.
  const stats = engine.empty([3, geo.l], 'f32', `${op}.stats`);
  const y = engine.empty(x.shape, 'f32');
  if (training && lanes && fuse) {
    laneStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, momentum, eps, { y, act, residual });
  } else {
    const affine = engine.empty([4, geo.l], 'f32');
    if (training && lanes) laneStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, momentum, eps, { affine });
    else if (training) batchStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, affine, momentum, eps);
    else inferenceParams(geo, gamma, beta, runningMean, runningVar, stats, affine, eps);
    perLaneAffine(geo, x, affine, y, act, residual);
    affine.dispose();
  }

  // The saved statistics belong to the enclosing scope, like every intermediate of the graph.
  const out = recordOp(y, op, residual ? [x, gamma, beta, residual] : [x, gamma, beta], (g, _accumulated, into) => {
    if (stats.disposed) throw new Error(`${op} backward: the saved batch statistics were disposed; call backward inside the scope that ran the forward pass`);
    // dgamma and dbeta go straight to their destinations (optimizer slots) when offered.
    const dest = { dgamma: into[1] ?? null, dbeta: into[2] ?? null };
    const grads = lanes ? laneBackward(geo, g, x, y, gamma, beta, stats, training, act, fuse, dest) : batchNormBackward(geo, g, x, gamma, beta, stats, training, dest);
    // With nothing after the sum (act 'none'), the residual's gradient is the output's.
    return residual ? [...grads, residual.requiresGrad ? g : null] : grads;
  });
  if (!out.node) stats.dispose();
  return out;
}
