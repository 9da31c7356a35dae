/**
 * The graph-free in-place kernels autograd itself needs: fill (zeroing gradients) and y += alpha * x
 * (accumulating them). They record no graph, so autograd can import them without importing the
 * ops that record into it (engine/ops/basic.ts re-exports them with the rest of the basic ops).
 */
import elementwise from '../../shaders/elementwise.wgsl';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { WG, sectionSpec } from './shader.js';

// Declared interfaces (shaders/elementwise.wgsl). Sizes are in vec4s: tensor buffers are pool
// buckets padded to 16 bytes.
const FILL = { uniforms: { n4: 'u32', value: 'f32' }, bindings: { y: readWrite('vec4<f32>') } } as const;
const AXPY_INPLACE = { uniforms: { n4: 'u32', alpha: 'f32' }, bindings: { xs: read('vec4<f32>'), ys: readWrite('vec4<f32>') } } as const;

function sameShape(op: string, a: Tensor, b: Tensor): void {
  check(a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]), op, () =>
    `${a.name} ${fmtShape(a.shape)} and ${b.name} ${fmtShape(b.shape)} must have the same shape`);
}

/** Refuses any tensor that is not f32, naming it. */
export function isF32(op: string, ...ts: Tensor[]): void {
  for (const t of ts) check(t.dtype === 'f32', op, () => `${t.name} must be f32, got ${t.dtype}`);
}

/** Fills `t` with `value` in place and returns it (integer tensors: zero only; the kernel writes f32 bits). */
export function fill(t: Tensor, value: number): Tensor {
  checkOperands('fill', t);
  check(t.dtype === 'f32' || value === 0, 'fill', () => `${t.name} is ${t.dtype}: only f32 tensors can be filled with ${value} (any tensor with 0)`);
  const n4 = Math.ceil(t.size / 4);
  t.engine.run({
    name: 'fill',
    shader: () => sectionSpec(FILL, elementwise, 'fill', { WG }),
    uniforms: { n4, value },
    bindings: { y: t },
    dispatch: grid1d(n4, WG, t.engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: t.byteLength,
  });
  return t;
}

/** y += alpha * x in place (no autograd: used for gradient accumulation and updates). */
export function axpyInPlace(y: Tensor, x: Tensor, alpha: number): Tensor {
  checkOperands('axpyInPlace', y, x);
  sameShape('axpyInPlace', y, x);
  isF32('axpyInPlace', y, x);
  const n4 = Math.ceil(y.size / 4);
  y.engine.run({
    name: 'axpy_inplace',
    shader: () => sectionSpec(AXPY_INPLACE, elementwise, 'axpy_inplace', { WG }),
    uniforms: { n4, alpha },
    bindings: { xs: x, ys: y },
    dispatch: grid1d(n4, WG, y.engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * y.size,
    bytes: 3 * y.byteLength,
  });
  return y;
}

/** y += x in place. */
export function addInPlace(y: Tensor, x: Tensor): Tensor {
  return axpyInPlace(y, x, 1);
}
