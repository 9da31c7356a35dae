/** float64 references for softmax and argmax over the last axis (tests only). */

/** Softmax of each row of length `l` (max subtracted, as any careful implementation must). */
export function refSoftmax(x: ArrayLike<number>, l: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += l) {
    let m = -Infinity;
    for (let k = 0; k < l; k++) m = Math.max(m, x[b + k]!);
    let s = 0;
    for (let k = 0; k < l; k++) s += Math.exp(x[b + k]! - m);
    for (let k = 0; k < l; k++) y[b + k] = Math.exp(x[b + k]! - m) / s;
  }
  return y;
}

/** First index of the max of each row of length `l`. */
export function refArgmax(x: ArrayLike<number>, l: number): Int32Array {
  const out = new Int32Array(x.length / l);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let k = 1; k < l; k++) if (x[r * l + k]! > x[r * l + best]!) best = k;
    out[r] = best;
  }
  return out;
}
