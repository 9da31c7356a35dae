/**
 * Storage element types of generated kernels: the one place where a binding's WGSL type, and the
 * conversions between it and the f32 the kernels compute in, come from a tensor's dtype.
 *
 * The f16 inference path (CANet.half()) stores weights and activations in f16 (half the memory
 * traffic) and computes in f32: a kernel loads `vec4<f32>(x[i])` from an f16 binding, accumulates
 * in f32 and stores `vec4<f16>(v)`. Each binding takes its tensor's own dtype, so one generator
 * serves every mix (an f32 image into a layer with f16 weights, an f32 bias beside f16 data), and
 * the kernel's variant names the bindings that are f16 (`halfTag`). Parameters of the epilogue
 * (the folded BatchNorm shift, a bias) stay f32: they are tiny and added to the f32 accumulator.
 */
import { check } from '../errors.js';
import type { DType, Tensor } from '../tensor.js';

/** Float dtypes a kernel may load as f32. */
export type FloatDType = 'f32' | 'f16';

const dt = (t: Tensor | DType): DType => (typeof t === 'string' ? t : t.dtype);

/** WGSL element type of a binding holding `t`'s dtype, `vec` lanes a value: f32, vec4<f32>, f16, vec4<f16>. */
export function storageType(t: Tensor | DType, vec: 1 | 4): string {
  const s = dt(t) === 'f16' ? 'f16' : 'f32';
  return vec === 4 ? `vec4<${s}>` : s;
}

/** Expression `e` (an element of a binding of `t`'s dtype) as f32 / vec4<f32>. */
export function loadF32(t: Tensor | DType, vec: 1 | 4, e: string): string {
  return dt(t) === 'f16' ? `${vec === 4 ? 'vec4<f32>' : 'f32'}(${e})` : e;
}

/** Expression `v` (f32 / vec4<f32>) converted for a store into a binding of `t`'s dtype. */
export function storeAs(t: Tensor | DType, vec: 1 | 4, v: string): string {
  return dt(t) === 'f16' ? `${storageType('f16', vec)}(${v})` : v;
}

/**
 * Variant tag of a kernel's bindings: '' when none holds f16, else ' h:' and the names of those
 * that do (the WGSL differs in their types and conversions).
 */
export function halfTag(bindings: Readonly<Record<string, Tensor | null | undefined>>): string {
  const half = Object.entries(bindings).filter(([, t]) => t?.dtype === 'f16').map(([n]) => n);
  return half.length ? ` h:${half.join(',')}` : '';
}

/** The dtype of a float op's result: f16 when any operand is f16 (the f16 inference path), else f32. */
export function resultDType(...operands: (Tensor | null | undefined)[]): FloatDType {
  return operands.some((t) => t?.dtype === 'f16') ? 'f16' : 'f32';
}

/**
 * Checks that `tensors` are f32, or f16 where the op runs the f16 inference path (f16 tensors
 * exist only on devices with shader-f16): then no graph may be recorded through them (f16 kernels
 * have no backward).
 */
export function checkFloatOperands(op: string, tensors: readonly (Tensor | null | undefined)[]): void {
  // The message offers f16 only where the device can have f16 tensors at all.
  const f16 = tensors.find((t) => t)?.engine.hasF16 ?? false;
  let half = false;
  for (const t of tensors) {
    if (!t) continue;
    check(t.dtype === 'f32' || (f16 && t.dtype === 'f16'), op, () => `${t.name} must be ${f16 ? 'f32 or f16' : 'f32'}, got ${t.dtype}`);
    half ||= t.dtype === 'f16';
  }
  if (!half) return;
  const engine = tensors.find((t) => t)!.engine;
  check(!(engine.gradEnabled && tensors.some((t) => t?.requiresGrad)), op, () =>
    `f16 operands have no gradient (the f16 path is for inference): use engine.noGrad(), or f32 tensors for training`);
}
