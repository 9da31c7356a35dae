/**
 * Batch normalisation (PyTorch's BatchNorm2d semantics) over NHWC tensors, or any [..., C].
 *
 * Training forward: one partial pass of per-chunk (mean, M2) over x, merged per channel with
 * Chan's formula (plus merge passes only for very long reductions), then one normalise pass.
 * Backward: one fused reduction of sum(g) and sum(g * xhat) per channel, then one elementwise pass.
 * Every pass reads x as vec4s whatever C is; see the layout note at the top of shaders/batchnorm.wgsl.
 */
import batchnorm from '../../shaders/batchnorm.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { f32, grid1d, kernelSection } from '../program.js';
import type { Tensor } from '../tensor.js';

/** Options of {@link batchNorm2d}. */
export interface BatchNormOptions {
  /** Normalise with the batch statistics and update the running ones (true), or use the running ones. */
  training: boolean;
  /** Weight of the batch statistic in the running average (PyTorch's momentum). Default 0.1. */
  momentum?: number;
  /** Added to the variance before the square root. Default 1e-5. */
  eps?: number;
}

const WG = 64;
/** Groups per loop iteration in the reductions (unrolled). */
const UNROLL = 4;
/**
 * Groups per invocation in the elementwise passes: the per-channel parameters are loaded once per
 * K data vec4s. K = 8 measured best on SwiftShader (1 and 2 were 1.5-3x slower, 4 and 16 about equal
 * or slower); with it the normalise pass runs at the speed of the engine's `scale` kernel and the
 * dx pass at the speed of `add`.
 */
const K = 8;
/**
 * The partial reductions aim for about this many invocations, each reading at least
 * MIN_GROUPS_PER_CHUNK groups. On SwiftShader (2 cores) fewer, longer chunks measured fastest
 * (1024 invocations beat 4096 and 16384 by 10-40% on 2x64x128x32, 1x32x64x576 and 1x128x256x19);
 * a hardware GPU needs far more invocations in flight to hide memory latency (not measured here:
 * no hardware adapter was available).
 */
const TARGET_INVOCATIONS = { software: 1024, hardware: 16384 };
const MIN_GROUPS_PER_CHUNK = { software: 64, hardware: 16 };
/** Chunks merged per invocation by the combine and finish kernels. */
const MERGE = 64;

/**
 * How x is cut up: groups of L = lcm(C, 4) floats, P = L / 4 vec4s each; the last group holds
 * `rem` data elements; reductions use `chunks` chunks of `gpc` groups.
 */
interface Geometry {
  c: number;
  rows: number;
  l: number;
  p4: number;
  groups: number;
  rem: number;
  n4: number;
  gpc: number;
  chunks: number;
}

function geometry(x: Tensor): Geometry {
  const c = x.shape[x.rank - 1]!;
  const l = c % 4 === 0 ? c : c % 2 === 0 ? 2 * c : 4 * c;
  const p4 = l / 4;
  const groups = Math.ceil(x.size / l);
  const rem = x.size - (groups - 1) * l;
  const kind = x.engine.adapter.isSoftware ? 'software' : 'hardware';
  const want = Math.max(1, Math.ceil(TARGET_INVOCATIONS[kind] / p4));
  const chunks0 = Math.min(want, Math.max(1, Math.floor(groups / MIN_GROUPS_PER_CHUNK[kind])));
  const gpc = Math.ceil(groups / chunks0);
  return { c, rows: x.size / c, l, p4, groups, rem, n4: Math.ceil(x.size / 4), gpc, chunks: Math.ceil(groups / gpc) };
}

const unrolled = (n: number, line: (k: number) => string): string => Array.from({ length: n }, (_, k) => line(k)).join('\n');

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
  const geo = geometry(x);
  // stats [pivot; dev; invstd] (mean = pivot + dev, pivot a data value of the channel) and
  // affine [gamma * invstd; pivot; dev; beta], each replicated to L floats.
  const stats = engine.empty([3, geo.l], 'f32', `${op}.stats`);
  const affine = engine.empty([4, geo.l], 'f32');
  if (training) batchStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, affine, momentum, eps);
  else {
    engine.run({
      name: 'bn_inference_params',
      source: kernelSection(batchnorm, 'bn_inference_params'),
      defines: { WG },
      uniforms: [geo.l, geo.c, f32(eps)],
      bindings: [gamma, beta, runningMean, runningVar, stats, affine],
      dispatch: grid1d(geo.c, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const y = engine.empty(x.shape, 'f32');
  perLaneAffine(geo, x, affine, y);
  affine.dispose();

  // The saved statistics belong to the enclosing scope, like every intermediate of the graph.
  const out = recordOp(y, op, [x, gamma, beta], (g) => {
    if (stats.disposed) throw new Error(`${op} backward: the saved batch statistics were disposed; call backward inside the scope that ran the forward pass`);
    return batchNormBackward(geo, g, x, gamma, beta, stats, training);
  });
  if (!out.node) stats.dispose();
  return out;
}

/** Partial (mean, M2) per chunk, merge passes while more than MERGE chunks remain, then the finish. */
function batchStatistics(geo: Geometry, x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, affine: Tensor, momentum: number, eps: number): void {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let gpc = geo.gpc;
  let mean = engine.empty([chunks, geo.l], 'f32');
  let m2 = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_stats_partial',
    source: kernelSection(batchnorm, 'bn_stats_partial'),
    defines: { WG, UNROLL, ACCUMULATE: unrolled(UNROLL, (k) => `    { let d = x[base + ${k}u * p.p4] - shift; s1 = s1 + d; s2 = s2 + d * d; }`) },
    uniforms: [geo.groups, geo.p4, geo.rem, gpc, chunks, geo.n4, geo.c],
    bindings: [x, mean, m2],
    dispatch: grid1d(geo.p4 * chunks, WG, maxDim),
    flops: 4 * x.size,
    bytes: x.byteLength,
  });
  while (chunks > MERGE) {
    const outChunks = Math.ceil(chunks / MERGE);
    const mean2 = engine.empty([outChunks, geo.l], 'f32');
    const m22 = engine.empty([outChunks, geo.l], 'f32');
    engine.run({
      name: 'bn_stats_combine',
      source: kernelSection(batchnorm, 'bn_stats_combine'),
      defines: { WG, MERGE },
      uniforms: [geo.groups, geo.p4, geo.rem, gpc, chunks, outChunks],
      bindings: [mean, m2, mean2, m22],
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
      bytes: 4 * mean.byteLength,
    });
    mean.dispose();
    m2.dispose();
    [mean, m2, chunks, gpc] = [mean2, m22, outChunks, gpc * MERGE];
  }
  engine.run({
    name: 'bn_stats_finish',
    source: kernelSection(batchnorm, 'bn_stats_finish'),
    defines: { WG },
    uniforms: [geo.groups, geo.l, geo.c, geo.rem, gpc, chunks, f32(eps), f32(momentum)],
    bindings: [x, mean, m2, gamma, beta, runningMean, runningVar, stats, affine],
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  mean.dispose();
  m2.dispose();
}

/** y = ((x - pivot) - dev) * a + b per lane, params [a; pivot; dev; b] replicated to L floats. */
function perLaneAffine(geo: Geometry, x: Tensor, params: Tensor, y: Tensor): void {
  const engine = x.engine;
  const blocks = Math.ceil(geo.groups / K);
  engine.run({
    name: 'bn_affine',
    source: kernelSection(batchnorm, 'bn_affine'),
    defines: { WG, K, APPLY: unrolled(K, (k) => `  { let at = base + ${k}u * p.p4; if (at < p.n4) { y[at] = ((x[at] - pivot) - dev) * a + b; } }`) },
    uniforms: [geo.n4, geo.p4, blocks],
    bindings: [x, params, y],
    dispatch: grid1d(geo.p4 * blocks, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 3 * x.size,
    bytes: 2 * x.byteLength,
  });
}

/**
 * Gradients for x, gamma, beta: one fused reduction (sum g, sum g (x - mean)) per channel,
 * the per-channel finish (dgamma, dbeta, dx coefficients), then one elementwise pass for dx.
 */
function batchNormBackward(geo: Geometry, g: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, stats: Tensor, training: boolean): (Tensor | null)[] {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let sg = engine.empty([chunks, geo.l], 'f32');
  let sgx = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_grad_partial',
    source: kernelSection(batchnorm, 'bn_grad_partial'),
    defines: {
      WG,
      UNROLL,
      ACCUMULATE: unrolled(UNROLL, (k) => `    { let at = base + ${k}u * p.p4; let gv = gr[at]; s1 = s1 + gv; s2 = s2 + gv * ((x[at] - pivot) - dev); }`),
    },
    uniforms: [geo.groups, geo.p4, geo.rem, geo.gpc, chunks, geo.n4],
    bindings: [g, x, stats, sg, sgx],
    dispatch: grid1d(geo.p4 * chunks, WG, maxDim),
    flops: 3 * x.size,
    bytes: 2 * x.byteLength,
  });
  while (chunks > MERGE) {
    const outChunks = Math.ceil(chunks / MERGE);
    const sg2 = engine.empty([outChunks, geo.l], 'f32');
    const sgx2 = engine.empty([outChunks, geo.l], 'f32');
    engine.run({
      name: 'bn_grad_combine',
      source: kernelSection(batchnorm, 'bn_grad_combine'),
      defines: { WG, MERGE },
      uniforms: [geo.p4, chunks, outChunks],
      bindings: [sg, sgx, sg2, sgx2],
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
    });
    sg.dispose();
    sgx.dispose();
    [sg, sgx, chunks] = [sg2, sgx2, outChunks];
  }
  const dgamma = engine.empty([geo.c], 'f32');
  const dbeta = engine.empty([geo.c], 'f32');
  const coef = engine.empty([4, geo.l], 'f32');
  engine.run({
    name: training ? 'bn_grad_finish_train' : 'bn_grad_finish_eval',
    source: kernelSection(batchnorm, 'bn_grad_finish'),
    defines: training
      ? { WG, PIVOT: 'stats[c]', COEF_B: '-a * invstd * sgxhat / p.n', COEF_D: '-a * sg / p.n' }
      : { WG, PIVOT: '0.0', COEF_B: '0.0', COEF_D: '0.0' },
    uniforms: [geo.l, geo.c, chunks, f32(geo.rows)],
    bindings: [sg, sgx, stats, gamma, dgamma, dbeta, coef],
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  let dx: Tensor | null = null;
  if (x.requiresGrad) {
    dx = engine.empty(x.shape, 'f32');
    if (!training) perLaneAffine(geo, g, coef, dx); // coef [a; 0; 0; 0]: dx = g * gamma * invstd
    else {
      const blocks = Math.ceil(geo.groups / K);
      engine.run({
        name: 'bn_backward_dx',
        source: kernelSection(batchnorm, 'bn_backward_dx'),
        defines: { WG, K, APPLY: unrolled(K, (k) => `  { let at = base + ${k}u * p.p4; if (at < p.n4) { dx[at] = a * gr[at] + (x[at] - pivot) * b + d; } }`) },
        uniforms: [geo.n4, geo.p4, blocks],
        bindings: [g, x, coef, dx],
        dispatch: grid1d(geo.p4 * blocks, WG, maxDim),
        flops: 5 * x.size,
        bytes: 3 * x.byteLength,
      });
    }
  }
  return [dx, gamma.requiresGrad ? dgamma : null, beta.requiresGrad ? dbeta : null];
}
