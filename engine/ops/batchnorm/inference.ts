/**
 * BatchNorm on the running statistics: the saved statistics and normalise parameters of an
 * inference-mode batchNorm2d (bn_inference_params), and BatchNorm folded into a producer's
 * epilogue (bn_fold). Fixed algorithms: their WGSL lives in shaders/batchnorm.wgsl.
 */
import batchnorm from '../../../shaders/batchnorm.wgsl';
import { check, fmtShape } from '../../errors.js';
import { grid1d, read, readWrite } from '../../program.js';
import type { Tensor } from '../../tensor.js';
import { sectionSpec } from '../shader.js';
import { type Geometry, WG } from './layout.js';

const INFERENCE_PARAMS = {
  uniforms: { l: 'u32', c: 'u32', eps: 'f32' },
  bindings: { gamma: read('f32'), beta: read('f32'), running_mean: read('f32'), running_var: read('f32'), stats: readWrite('f32'), affine: readWrite('f32') },
} as const;

const FOLD = {
  uniforms: { c: 'u32', has_bias: 'u32', eps: 'f32' },
  // Without a conv bias, has_bias = 0 and gamma is bound as conv_bias (any buffer of C floats).
  bindings: { gamma: read('f32'), beta: read('f32'), running_mean: read('f32'), running_var: read('f32'), conv_bias: read('f32'), affine: readWrite('f32') },
} as const;

/** stats [mean; 0; invstd] and affine [gamma * invstd; mean; 0; beta], replicated to L floats, from the running statistics. */
export function inferenceParams(geo: Geometry, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, affine: Tensor, eps: number): void {
  const engine = gamma.engine;
  engine.run({
    name: 'bn_inference_params',
    // No variant: the WGSL has no compile-time input.
    shader: () => sectionSpec(INFERENCE_PARAMS, batchnorm, 'bn_inference_params', { WG }),
    uniforms: { l: geo.l, c: geo.c, eps },
    bindings: { gamma, beta, running_mean: runningMean, running_var: runningVar, stats, affine },
    dispatch: grid1d(geo.c, WG, engine.limits.maxComputeWorkgroupsPerDimension),
  });
}

/**
 * Inference BatchNorm folded into one per-channel affine [2, C] (row 0 scale, row 1 shift) for a
 * producer's epilogue (see epilogue.ts): y = conv(x) * scale + shift equals
 * BN(conv(x) + convBias) with the running statistics. `into` reuses a [2, C] tensor.
 */
export function bnFold(gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, eps: number, convBias: Tensor | null = null, into?: Tensor): Tensor {
  const op = 'bnFold';
  const c = gamma.shape[0]!;
  for (const [what, t] of [['gamma', gamma], ['beta', beta], ['runningMean', runningMean], ['runningVar', runningVar], ['convBias', convBias]] as const)
    if (t) check(t.rank === 1 && t.shape[0] === c && t.dtype === 'f32', op, () => `${what} ${t.name} must be f32 [${c}], got ${t.dtype} ${fmtShape(t.shape)}`);
  check(Number.isFinite(eps) && eps > 0, op, () => `eps must be positive, got ${eps}`);
  const engine = gamma.engine;
  const out = into ?? engine.empty([2, c], 'f32', `${op}.affine`);
  check(out.size === 2 * c, op, () => `into ${out.name} must be [2, ${c}], got ${fmtShape(out.shape)}`);
  engine.run({
    name: 'bn_fold',
    // No variant: the WGSL has no compile-time input.
    shader: () => sectionSpec(FOLD, batchnorm, 'bn_fold', { WG }),
    uniforms: { c, has_bias: convBias ? 1 : 0, eps },
    bindings: { gamma, beta, running_mean: runningMean, running_var: runningVar, conv_bias: convBias ?? gamma, affine: out },
    dispatch: grid1d(c, WG, engine.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}
