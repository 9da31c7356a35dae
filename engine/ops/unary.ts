/**
 * The unary ops: every activation of the table in activation.ts (relu, relu6, sigmoid, ...), whose
 * kernels, gradients and float64 references come from there, plus leakyRelu, whose slope is a
 * uniform and whose gradient is written in x (it is not fusable). Kernels, autograd and tests all
 * come from `unaryOps`.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type ActivationOp, ACTIVATION_OPS, activations } from './activation.js';
import { unaryKernel } from './basic.js';
import { WG, generatedSpec, main1d } from './shader.js';

export interface UnaryOpSpec {
  /** WGSL vec4 expression in `x` (and the uniform `alpha`). */
  forward: string;
  /** WGSL vec4 expression for dL/dx in `x`, `y` (forward output), `g` (dL/dy) and `alpha`. */
  backward: string;
  /** float64 reference and its derivative, for tests. */
  ref: (x: number, alpha: number) => number;
  refGrad: (x: number, alpha: number) => number;
}

/** unary_backward: dx from x, the forward output y and g, in vec4s (generated: the gradient expression is the op's). */
const UNARY_BACKWARD = {
  uniforms: { n4: 'u32', alpha: 'f32' },
  bindings: { xs: read('vec4<f32>'), ys: read('vec4<f32>'), gs: read('vec4<f32>'), dxs: readWrite('vec4<f32>') },
} as const;

const V4 = 'vec4<f32>';
const zero = `${V4}(0.0)`;

/** The unary op of an activation of the table: its vec4 kernels, its gradient from y. */
function activationOp(op: ActivationOp): UnaryOpSpec {
  const a = activations[op];
  return { forward: a.forward(V4), backward: a.grad(V4), ref: (x) => a.ref(x), refGrad: (x) => a.refGrad(a.ref(x)) };
}

const table = {
  ...(Object.fromEntries(ACTIVATION_OPS.map((op) => [op, activationOp(op)])) as Record<ActivationOp, UnaryOpSpec>),
  leakyRelu: {
    forward: `select(alpha * x, x, x > ${zero})`,
    backward: `select(alpha * g, g, x > ${zero})`,
    ref: (x, a) => (x > 0 ? x : a * x),
    refGrad: (x, a) => (x > 0 ? 1 : a),
  },
} satisfies Record<string, UnaryOpSpec>;

export type UnaryOpName = keyof typeof table;
export const unaryOps: Record<UnaryOpName, UnaryOpSpec> = table;

/** Applies a table op elementwise; records its gradient. */
export function unary(op: UnaryOpName, x: Tensor, alpha = 0): Tensor {
  check(Object.hasOwn(unaryOps, op), 'unary', () => `unknown op ${JSON.stringify(op)} (known: ${Object.keys(unaryOps).join(', ')})`);
  checkOperands(op, x);
  check(x.dtype === 'f32', op, () => `${x.name} must be f32, got ${x.dtype}`);
  const spec: UnaryOpSpec = unaryOps[op];
  const y = unaryKernel(op, x, spec.forward, alpha);
  return recordOp(y, op, [x], (g) => [unaryBackward(op, x, y, g, alpha)]);
}

function unaryBackward(op: UnaryOpName, x: Tensor, y: Tensor, g: Tensor, alpha: number): Tensor {
  const engine = x.engine;
  const dx = engine.empty(x.shape, 'f32');
  const n4 = Math.ceil(x.size / 4);
  engine.run({
    // The name carries the op, hence its gradient expression.
    name: `${op}_backward`,
    shader: () => generatedSpec(UNARY_BACKWARD, main1d(`let x = xs[i];
  let y = ys[i];
  let g = gs[i];
  let alpha = p.alpha;
  dxs[i] = ${unaryOps[op].backward};`, { count: 'n4' })),
    uniforms: { n4, alpha },
    bindings: { xs: x, ys: y, gs: g, dxs: dx },
    dispatch: grid1d(n4, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: 4 * x.byteLength,
  });
  return dx;
}

export const relu = (x: Tensor): Tensor => unary('relu', x);
export const relu6 = (x: Tensor): Tensor => unary('relu6', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => unary('leakyRelu', x, slope);
