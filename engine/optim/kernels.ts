/**
 * The optimizers' update kernels (shaders/optim.wgsl): their declared interfaces and workgroup
 * size. Each is one elementwise pass over vec4s; the update rules (rules.ts) choose the kernel and
 * its uniforms, the base class (optimizer.ts) records it (and imports the WGSL).
 */
import { read, readWrite } from '../program.js';

/** The shared 1-D workgroup size (engine/ops/shader.ts). */
export { WG } from '../ops/shader.js';

// Declared interfaces of the update kernels (shaders/optim.wgsl). Every kernel updates vec4s
// [base, n4) of `param` (base offsets a dispatch covering one part of an arena); the
// hyper-parameters are uniforms, computed on the CPU in float64 where torch does.
export const OPTIM_KERNELS = {
  sgd: {
    uniforms: { n4: 'u32', base: 'u32', lr: 'f32', weight_decay: 'f32' },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>') },
  },
  /** `first`: the momentum buffer is fresh (selected, not multiplied: it may hold NaN bits). */
  sgd_momentum: {
    uniforms: { n4: 'u32', base: 'u32', lr: 'f32', weight_decay: 'f32', momentum: 'f32', one_minus_dampening: 'f32', nesterov: 'u32', first: 'u32' },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>'), momentum_buffer: readWrite('vec4<f32>') },
  },
  /**
   * Adam and AdamW: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t); Adam passes
   * l2 = weight_decay, decay = 1; AdamW l2 = 0, decay = 1 - lr * weight_decay. `first`: both
   * moments are fresh.
   */
  adam: {
    uniforms: {
      n4: 'u32', base: 'u32', step_size: 'f32', bc2_sqrt: 'f32', beta1: 'f32', one_minus_beta1: 'f32', beta2: 'f32', one_minus_beta2: 'f32',
      eps: 'f32', l2: 'f32', decay: 'f32', first: 'u32',
    },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>'), exp_avg: readWrite('vec4<f32>'), exp_avg_sq: readWrite('vec4<f32>') },
  },
} as const;
export type OptimKernel = keyof typeof OPTIM_KERNELS;
