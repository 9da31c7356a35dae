/**
 * Platform-neutral test helpers (seeded random data, tolerance checks): used by the Node tests and
 * bundled into the headless-Chromium test page, so both compare against float64 the same way.
 */

/** Seeded PRNG (mulberry32) so failures reproduce; each test picks its own seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform values in [lo, hi) as float64. */
export function randn(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/**
 * Max relative error of `actual` against the float64 `expected`: |a - e| / (|e| + floor), where
 * `floor` (default: 1e-3 of the reference's max magnitude) keeps near-zero entries from
 * dominating. Throws with the worst index when over `tol`.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'result', floor?: number): number {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]!));
  const fl = floor ?? Math.max(1e-3 * maxAbs, 1e-12);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const err = Number.isNaN(a) ? Infinity : Math.abs(a - e) / (Math.abs(e) + fl);
    if (err > worst || Number.isNaN(err)) {
      worst = err;
      at = i;
    }
  }
  if (!(worst <= tol)) throw new Error(`${what}: relative error ${worst.toExponential(2)} > ${tol} at index ${at} (got ${actual[at]}, expected ${expected[at]})`);
  return worst;
}
