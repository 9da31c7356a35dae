/**
 * BatchNorm by chunks, where the lane kernels do not apply (C % 4 != 0 outside a fused training
 * pass, or the `bnReduce` variant forced to 'chunked'): per-chunk partial passes, merge passes while
 * more than MERGE chunks remain, and a per-channel finish; forward (mean, M2, Chan's merge) and
 * backward (sum g, sum g (x - mean)). The partial and merge kernels have fixed algorithms and live
 * in shaders/batchnorm.wgsl (numeric defines only); the backward finish depends on training and is
 * generated here.
 */
import batchnorm from '../../../shaders/batchnorm.wgsl';
import { type ShaderSpec, grid1d, read, readWrite } from '../../program.js';
import type { Tensor } from '../../tensor.js';
import { generatedSpec, sectionSpec } from '../shader.js';
import { type Geometry, type ParamGradDest, WG } from './layout.js';
import { backwardDx, perLaneAffine } from './pointwise.js';

/** Chunks merged per invocation by the combine and finish kernels. */
const MERGE = 64;

const V4 = 'vec4<f32>';

const STATS_PARTIAL = {
  uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', n4: 'u32', c: 'u32' },
  bindings: { x: read(V4), mean_p: readWrite(V4), m2_p: readWrite(V4) },
} as const;
const STATS_COMBINE = {
  uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', out_chunks: 'u32' },
  bindings: { mean_in: read(V4), m2_in: read(V4), mean_out: readWrite(V4), m2_out: readWrite(V4) },
} as const;
const STATS_FINISH = {
  uniforms: { groups: 'u32', l: 'u32', c: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', eps: 'f32', momentum: 'f32' },
  bindings: {
    x: read('f32'), mean_p: read('f32'), m2_p: read('f32'), gamma: read('f32'), beta: read('f32'),
    running_mean: readWrite('f32'), running_var: readWrite('f32'), stats: readWrite('f32'), affine: readWrite('f32'),
  },
} as const;
const GRAD_PARTIAL = {
  uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', n4: 'u32' },
  bindings: { gr: read(V4), x: read(V4), stats: read(V4), sg_p: readWrite(V4), sgx_p: readWrite(V4) },
} as const;
const GRAD_COMBINE = {
  uniforms: { p4: 'u32', chunks: 'u32', out_chunks: 'u32' },
  bindings: { sg_in: read(V4), sgx_in: read(V4), sg_out: readWrite(V4), sgx_out: readWrite(V4) },
} as const;

/**
 * Partial (mean, M2) per chunk, merge passes while more than MERGE chunks remain, then the finish:
 * the saved statistics `stats`, the normalise parameters `affine` and the running statistics.
 */
export function batchStatistics(geo: Geometry, x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, affine: Tensor, momentum: number, eps: number): void {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let gpc = geo.gpc;
  let mean = engine.empty([chunks, geo.l], 'f32');
  let m2 = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_stats_partial',
    // No variant: the WGSL has no compile-time input (WG is a constant).
    shader: () => sectionSpec(STATS_PARTIAL, batchnorm, 'bn_stats_partial', { WG }),
    uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc, chunks, n4: geo.n4, c: geo.c },
    bindings: { x, mean_p: mean, m2_p: m2 },
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
      // No variant: the WGSL has no compile-time input (WG and MERGE are constants).
      shader: () => sectionSpec(STATS_COMBINE, batchnorm, 'bn_stats_combine', { WG, MERGE }),
      uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc, chunks, out_chunks: outChunks },
      bindings: { mean_in: mean, m2_in: m2, mean_out: mean2, m2_out: m22 },
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
      bytes: 4 * mean.byteLength,
    });
    mean.dispose();
    m2.dispose();
    [mean, m2, chunks, gpc] = [mean2, m22, outChunks, gpc * MERGE];
  }
  engine.run({
    name: 'bn_stats_finish',
    // No variant: the WGSL has no compile-time input.
    shader: () => sectionSpec(STATS_FINISH, batchnorm, 'bn_stats_finish', { WG }),
    uniforms: { groups: geo.groups, l: geo.l, c: geo.c, rem: geo.rem, gpc, chunks, eps, momentum },
    bindings: { x, mean_p: mean, m2_p: m2, gamma, beta, running_mean: runningMean, running_var: runningVar, stats, affine },
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  mean.dispose();
  m2.dispose();
}

/**
 * bn_grad_finish, one invocation per channel: dbeta = sum(g), dgamma = sum(g * xhat), and the dx
 * coefficients [a; pivot; d - b dev; b] replicated to L floats, with dx = a g + b (x - mean) + d
 * = a g + (x - pivot) b + (d - b dev). Training (the batch statistics depend on x): a = gamma invstd,
 * b = -a invstd sum(g xhat) / n, d = -a sum(g) / n, i.e. dx = gamma invstd / n (n g - sum(g) -
 * xhat sum(g xhat)). Inference: the rows are [a; 0; 0; 0], as bn_affine parameters dx = g a.
 */
function gradFinishWgsl(training: boolean): string {
  return `@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg, ${WG}u);
  if (c >= p.c) { return; }
  var sg = 0.0;
  var sgx = 0.0;
  for (var e = c; e < p.l; e = e + p.c) {
    for (var k = 0u; k < p.chunks; k = k + 1u) {
      sg = sg + sg_p[k * p.l + e];
      sgx = sgx + sgx_p[k * p.l + e];
    }
  }
  let invstd = stats[2u * p.l + c];
  let sgxhat = sgx * invstd;
  dgamma[c] = sgxhat;
  dbeta[c] = sg;
  let a = gamma[c] * invstd;
  let pivot = ${training ? 'stats[c]' : '0.0'};
  let b = ${training ? '-a * invstd * sgxhat / p.n' : '0.0'};
  let d = ${training ? '-a * sg / p.n' : '0.0'} - b * stats[p.l + c];
  for (var e = c; e < p.l; e = e + p.c) {
    coef[e] = a;
    coef[p.l + e] = pivot;
    coef[2u * p.l + e] = d;
    coef[3u * p.l + e] = b;
  }
}`;
}

/**
 * Gradients for x, gamma, beta: one fused reduction (sum g, sum g (x - mean)) per channel,
 * the per-channel finish (dgamma, dbeta, dx coefficients), then one elementwise pass for dx.
 */
export function batchNormBackward(geo: Geometry, g: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, stats: Tensor, training: boolean, dest: ParamGradDest): (Tensor | null)[] {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let sg = engine.empty([chunks, geo.l], 'f32');
  let sgx = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_grad_partial',
    // No variant: the WGSL has no compile-time input (WG is a constant).
    shader: () => sectionSpec(GRAD_PARTIAL, batchnorm, 'bn_grad_partial', { WG }),
    uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc: geo.gpc, chunks, n4: geo.n4 },
    bindings: { gr: g, x, stats, sg_p: sg, sgx_p: sgx },
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
      // No variant: the WGSL has no compile-time input (WG and MERGE are constants).
      shader: () => sectionSpec(GRAD_COMBINE, batchnorm, 'bn_grad_combine', { WG, MERGE }),
      uniforms: { p4: geo.p4, chunks, out_chunks: outChunks },
      bindings: { sg_in: sg, sgx_in: sgx, sg_out: sg2, sgx_out: sgx2 },
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
    });
    sg.dispose();
    sgx.dispose();
    [sg, sgx, chunks] = [sg2, sgx2, outChunks];
  }
  const dgamma = dest.dgamma ?? engine.empty([geo.c], 'f32');
  const dbeta = dest.dbeta ?? engine.empty([geo.c], 'f32');
  const coef = engine.empty([4, geo.l], 'f32');
  engine.run({
    name: training ? 'bn_grad_finish_train' : 'bn_grad_finish_eval',
    // No variant: the only compile-time input, training, is in the name.
    shader: (): ShaderSpec => generatedSpec({
      // n (the values per channel) only scales the training coefficients.
      uniforms: training ? { l: 'u32', c: 'u32', chunks: 'u32', n: 'f32' } : { l: 'u32', c: 'u32', chunks: 'u32' },
      bindings: { sg_p: read('f32'), sgx_p: read('f32'), stats: read('f32'), gamma: read('f32'), dgamma: readWrite('f32'), dbeta: readWrite('f32'), coef: readWrite('f32') },
    }, gradFinishWgsl(training)),
    uniforms: training ? { l: geo.l, c: geo.c, chunks, n: geo.rows } : { l: geo.l, c: geo.c, chunks },
    bindings: { sg_p: sg, sgx_p: sgx, stats, gamma, dgamma, dbeta, coef },
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  let dx: Tensor | null = null;
  if (x.requiresGrad) {
    dx = engine.empty(x.shape, 'f32');
    if (!training) perLaneAffine(geo, g, coef, dx); // coef [a; 0; 0; 0]: dx = g * gamma * invstd
    else backwardDx(geo, g, x, coef, dx, 'none', null);
  }
  return [dx, gamma.requiresGrad ? dgamma : null, beta.requiresGrad ? dbeta : null];
}
