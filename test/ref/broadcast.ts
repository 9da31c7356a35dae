/** float64 references for broadcasting ops (tests only): plain index arithmetic, no collapsing. */
import { refSum } from './elementwise.js';

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** NumPy broadcast of two shapes, or null when they do not broadcast. */
export function refBroadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let k = 0; k < r; k++) {
    const da = a[a.length - r + k] ?? 1;
    const db = b[b.length - r + k] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Row-major offset in `shape` of the multi-index `idx` of a (right-aligned) broadcast shape. */
function sourceOffset(idx: readonly number[], shape: readonly number[]): number {
  let off = 0;
  for (let k = 0; k < shape.length; k++) {
    const d = shape[k]!;
    const i = idx[idx.length - shape.length + k]!;
    off = off * d + (d === 1 ? 0 : i);
  }
  return off;
}

function forEachIndex(shape: readonly number[], f: (idx: number[], flat: number) => void): void {
  const idx = new Array<number>(shape.length).fill(0);
  const n = sizeOf(shape);
  for (let flat = 0; flat < n; flat++) {
    f(idx, flat);
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
}

/** f(a, b) elementwise with NumPy broadcasting. */
export function refBroadcastBinary(a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[], f: (u: number, v: number) => number): { data: Float64Array; shape: number[] } {
  const shape = refBroadcastShape(aShape, bShape);
  if (!shape) throw new Error(`reference: ${aShape} and ${bShape} do not broadcast`);
  const data = new Float64Array(sizeOf(shape));
  forEachIndex(shape, (idx, flat) => (data[flat] = f(a[sourceOffset(idx, aShape)]!, b[sourceOffset(idx, bShape)]!)));
  return { data, shape };
}

/** x broadcast to `shape`. */
export function refBroadcastTo(x: ArrayLike<number>, xShape: readonly number[], shape: readonly number[]): Float64Array {
  const data = new Float64Array(sizeOf(shape));
  forEachIndex(shape, (idx, flat) => (data[flat] = x[sourceOffset(idx, xShape)]!));
  return data;
}

/** x summed down to `shape` (compensated sums, so the reference is better than what it checks). */
export function refSumToShape(x: ArrayLike<number>, xShape: readonly number[], shape: readonly number[]): Float64Array {
  const terms: number[][] = Array.from({ length: sizeOf(shape) }, () => []);
  forEachIndex(xShape, (idx, flat) => terms[sourceOffset(idx, shape)]!.push(x[flat]!));
  return Float64Array.from(terms, (t) => refSum(t));
}
