/** float64 reference for nn.Linear (tests only). */

/** y [n, out] = x [n, in] w^T + bias, with w [out, in] (PyTorch's layout) and bias [out] or null. */
export function refLinear(x: Float64Array, w: Float64Array, bias: Float64Array | null, n: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(n * outF);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outF; o++) {
      let s = bias ? bias[o]! : 0;
      for (let k = 0; k < inF; k++) s += x[r * inF + k]! * w[o * inF + k]!;
      y[r * outF + o] = s;
    }
  return y;
}
