/** float64 references for elementwise ops and reductions (tests only). */
export const refMap = (x: Float64Array, f: (v: number) => number): Float64Array => x.map(f);
export const refZip = (a: Float64Array, b: Float64Array, f: (u: number, v: number) => number): Float64Array => a.map((u, i) => f(u, b[i]!));

/** Neumaier-compensated sum: the reference must be more accurate than what it checks. */
export function refSum(x: ArrayLike<number>): number {
  let s = 0;
  let c = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const t = s + v;
    c += Math.abs(s) >= Math.abs(v) ? s - t + v : v - t + s;
    s = t;
  }
  return s + c;
}
