/** float64 references for concat, slice and permute (tests only), by explicit multi-indices. */
import { sizeOf } from './broadcast.js';

function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = flat % shape[k]!;
    flat = Math.floor(flat / shape[k]!);
  }
  return idx;
}

function ravel(idx: readonly number[], shape: readonly number[]): number {
  let off = 0;
  for (let k = 0; k < shape.length; k++) off = off * shape[k]! + idx[k]!;
  return off;
}

/** Concatenation of `xs` (with `shapes`) along `axis` (non-negative). */
export function refConcat(xs: readonly ArrayLike<number>[], shapes: readonly number[][], axis: number): { data: Float64Array; shape: number[] } {
  const shape = shapes[0]!.map((d, k) => (k === axis ? shapes.reduce((s, sh) => s + sh[axis]!, 0) : d));
  const data = new Float64Array(sizeOf(shape));
  for (let o = 0; o < data.length; o++) {
    const idx = unravel(o, shape);
    let i = 0;
    while (idx[axis]! >= shapes[i]![axis]!) idx[axis]! -= shapes[i++]![axis]!;
    data[o] = xs[i]![ravel(idx, shapes[i]!)]!;
  }
  return { data, shape };
}

/** x[..., start:start+length, ...] along `axis`. */
export function refSlice(x: ArrayLike<number>, shape: readonly number[], axis: number, start: number, length: number): Float64Array {
  const outShape = shape.map((d, k) => (k === axis ? length : d));
  const data = new Float64Array(sizeOf(outShape));
  for (let o = 0; o < data.length; o++) {
    const idx = unravel(o, outShape);
    idx[axis]! += start;
    data[o] = x[ravel(idx, shape)]!;
  }
  return data;
}

/** out[idx] = x[idx permuted back]: output axis k is input axis perm[k]. */
export function refPermute(x: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): Float64Array {
  const outShape = perm.map((a) => shape[a]!);
  const data = new Float64Array(sizeOf(shape));
  for (let o = 0; o < data.length; o++) {
    const idx = unravel(o, outShape);
    const src = new Array<number>(shape.length);
    perm.forEach((a, k) => (src[a] = idx[k]!));
    data[o] = x[ravel(src, shape)]!;
  }
  return data;
}
