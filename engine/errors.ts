import type { Tensor } from './tensor.js';

/**
 * Errors the engine throws, and the checks ops validate their arguments with (check,
 * checkOperands, checkFits, checkShapeArg, checkInt; fmtShape for messages). Shape and dtype
 * problems are caught in TypeScript before any dispatch, so a failed call records nothing and the
 * engine stays usable.
 */

/** A tensor argument has the wrong shape, rank or dtype for an op. */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** WebGPU reported a validation or out-of-memory error for recorded work. */
export class GPUExecutionError extends Error {
  override name = 'GPUExecutionError';
  constructor(message: string, readonly kind: 'validation' | 'out-of-memory' | 'internal', readonly kernels: string[]) {
    super(message);
  }
}

/**
 * The adapter lacks a WebGPU feature the call needs (f16 storage needs `shader-f16`). The message
 * names the adapter and the feature; nothing was recorded.
 */
export class FeatureError extends Error {
  override name = 'FeatureError';
  constructor(message: string, readonly feature: string, readonly adapter: string) {
    super(message);
  }
}

/** The engine was destroyed or its device was lost; create a new engine. */
export class EngineClosedError extends Error {
  override name = 'EngineClosedError';
}

export const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** Throws a ShapeError naming the op, the tensor and both shapes unless `ok`. */
export function check(ok: boolean, op: string, message: () => string): asserts ok {
  if (!ok) throw new ShapeError(`${op}: ${message()}`);
}

/**
 * Every tensor argument of an op must be live and belong to one engine: checked first, so a
 * disposed or foreign tensor is refused before anything is allocated or recorded (binding a
 * buffer of another device would fail only later, on the GPU, far from the call).
 */
export function checkOperands(op: string, ...tensors: (Tensor | null | undefined)[]): void {
  let first: Tensor | undefined;
  for (const t of tensors) {
    if (!t) continue;
    check(!t.disposed, op, () => `${t.name} ${fmtShape(t.shape)} was disposed`);
    first ??= t;
    check(t.engine === first.engine, op, () => `${t.name} belongs to another engine than ${first!.name}`);
  }
}

/**
 * A tensor of `shape` (4-byte elements) must fit one storage binding. Ops that allocate
 * intermediates before their output check every size first, so an impossible call dispatches
 * nothing.
 */
export function checkFits(op: string, limits: GPUSupportedLimits, shape: readonly number[], what = 'output'): void {
  const bytes = shape.reduce((a, b) => a * b, 1) * 4;
  const max = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  check(bytes <= max, op, () => `${what} ${fmtShape(shape)} needs ${bytes} bytes, over this adapter's maxStorageBufferBindingSize of ${max} bytes`);
}

/** A shape argument: an array of non-negative integers, else a ShapeError naming `op`. */
export function checkShapeArg(op: string, shape: readonly number[]): void {
  check(Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0), op, () => `shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
}

/** A positive (or, with allowZero, non-negative) integer, else a ShapeError naming `what`. */
export function checkInt(op: string, what: string, v: number, min = 1): void {
  check(Number.isInteger(v) && v >= min, op, () => `${what} must be an integer >= ${min}, got ${v}`);
}

/**
 * Reads a `number | [h, w]` option (stride, padding, dilation of the convolutions) as an [h, w]
 * pair of integers >= min, `dflt` for both when absent; else a ShapeError naming op and option.
 */
export function pairOption(op: string, name: string, v: number | [number, number] | undefined, dflt: number, min: number): [number, number] {
  const pr: [number, number] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  check(Array.isArray(pr) && pr.length === 2 && pr.every((d) => Number.isInteger(d) && d >= min), op, () =>
    `${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  return pr;
}
