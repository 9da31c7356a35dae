/** float64 reference for the FCA combination and its exact gradients (tests only). */

/** Y = F * As * Ac + F with F [n, hw, c] flattened, As [n, hw], Ac [n, c]. */
export function refFcaFuse(F: ArrayLike<number>, As: ArrayLike<number>, Ac: ArrayLike<number>, n: number, hw: number, c: number): Float64Array {
  const y = new Float64Array(n * hw * c);
  for (let b = 0; b < n; b++)
    for (let q = 0; q < hw; q++)
      for (let k = 0; k < c; k++) {
        const i = (b * hw + q) * c + k;
        y[i] = F[i]! * As[b * hw + q]! * Ac[b * c + k]! + F[i]!;
      }
  return y;
}

/** dF, dAs, dAc of sum(g * Y), written out from the definition. */
export function refFcaGrads(g: ArrayLike<number>, F: ArrayLike<number>, As: ArrayLike<number>, Ac: ArrayLike<number>, n: number, hw: number, c: number): [Float64Array, Float64Array, Float64Array] {
  const dF = new Float64Array(n * hw * c);
  const dAs = new Float64Array(n * hw);
  const dAc = new Float64Array(n * c);
  for (let b = 0; b < n; b++)
    for (let q = 0; q < hw; q++)
      for (let k = 0; k < c; k++) {
        const i = (b * hw + q) * c + k;
        dF[i] = g[i]! * (As[b * hw + q]! * Ac[b * c + k]! + 1);
        dAs[b * hw + q] += g[i]! * F[i]! * Ac[b * c + k]!;
        dAc[b * c + k] += g[i]! * F[i]! * As[b * hw + q]!;
      }
  return [dF, dAs, dAc];
}
