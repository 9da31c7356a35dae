/**
 * What the case tables (test/cases/<family>.ts) share. A table module is platform-neutral: it
 * imports the engine only through entry/index.ts (which the browser page's bundle maps to the
 * shipped library), test/check.ts and the float64 references, so the Node test of the family and
 * the headless-Chromium page (test/browser/kernel-checks.ts) run the same cases with the same
 * data, runner and tolerances.
 */

/** A case of a table with the seed of its random data (the Node test and the page use the same). */
export interface Seeded<C> {
  c: C;
  seed: number;
}

export const sizeOf = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
export const f32Round = (a: ArrayLike<number>): Float64Array => Float64Array.from(Float32Array.from(a));
export const maxAbs = (a: ArrayLike<number>): number => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Throws unless `actual` equals `expected` element by element (a shape, a count, a name list). */
export function expectEqual(actual: readonly unknown[], expected: readonly unknown[], what: string): void {
  if (actual.length !== expected.length || actual.some((v, i) => v !== expected[i]))
    throw new Error(`${what}: got [${actual.join(', ')}], expected [${expected.join(', ')}]`);
}
