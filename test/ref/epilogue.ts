/**
 * float64 reference of a fused epilogue (tests only), applied to a reference producer's output y
 * [N, H, W, C]: y * scale + shift, + residual, activation, * (as * ac + 1), in that order (the
 * order engine/ops/epilogue.ts documents). Plus the folded-BatchNorm affine it uses. The activations'
 * float64 references are the table's (engine/ops/activation.ts).
 */
import { type ActivationName, activationRef } from '../../engine/ops/activation.js';

export interface RefEpilogue {
  scale?: ArrayLike<number>;
  shift?: ArrayLike<number>;
  residual?: ArrayLike<number>;
  act?: ActivationName;
  as?: ArrayLike<number>;
  ac?: ArrayLike<number>;
}

export function refEpilogue(y: ArrayLike<number>, shape: readonly number[], e: RefEpilogue): Float64Array {
  const [n, h, w, c] = shape as [number, number, number, number];
  const hw = h * w;
  const out = new Float64Array(n * hw * c);
  const act = activationRef(e.act ?? 'none');
  for (let m = 0; m < n * hw; m++)
    for (let ch = 0; ch < c; ch++) {
      const i = m * c + ch;
      let v = y[i]! * (e.scale ? e.scale[ch]! : 1) + (e.shift ? e.shift[ch]! : 0);
      if (e.residual) v += e.residual[i]!;
      v = act(v);
      if (e.as && e.ac) v *= e.as[m]! * e.ac[Math.floor(m / hw) * c + ch]! + 1;
      out[i] = v;
    }
  return out;
}

/** scale = gamma / sqrt(var + eps), shift = beta + (bias - mean) * scale. */
export function refBnFold(gamma: ArrayLike<number>, beta: ArrayLike<number>, mean: ArrayLike<number>, variance: ArrayLike<number>, eps: number, bias: ArrayLike<number> | null): { scale: Float64Array; shift: Float64Array } {
  const c = gamma.length;
  const scale = new Float64Array(c);
  const shift = new Float64Array(c);
  for (let i = 0; i < c; i++) {
    scale[i] = gamma[i]! / Math.sqrt(variance[i]! + eps);
    shift[i] = beta[i]! + ((bias ? bias[i]! : 0) - mean[i]!) * scale[i]!;
  }
  return { scale, shift };
}

/** Places y [N, H, W, C] into channels [offset, offset + C) of a [N, H, W, total] copy of `base`. */
export function refPlaceChannels(base: ArrayLike<number>, total: number, y: ArrayLike<number>, c: number, offset: number): Float64Array {
  const out = Float64Array.from(base);
  const rows = y.length / c;
  for (let r = 0; r < rows; r++) for (let ch = 0; ch < c; ch++) out[r * total + offset + ch] = y[r * c + ch]!;
  return out;
}
