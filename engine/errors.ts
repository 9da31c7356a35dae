/**
 * Errors the engine throws. Shape and dtype problems are caught in TypeScript before any
 * dispatch, so a failed call records nothing and the engine stays usable.
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

/** The engine was destroyed or its device was lost; create a new engine. */
export class EngineClosedError extends Error {
  override name = 'EngineClosedError';
}

export const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** Throws a ShapeError naming the op, the tensor and both shapes unless `ok`. */
export function check(ok: boolean, op: string, message: () => string): asserts ok {
  if (!ok) throw new ShapeError(`${op}: ${message()}`);
}

/** A positive (or, with allowZero, non-negative) integer, else a ShapeError naming `what`. */
export function checkInt(op: string, what: string, v: number, min = 1): void {
  check(Number.isInteger(v) && v >= min, op, () => `${what} must be an integer >= ${min}, got ${v}`);
}
