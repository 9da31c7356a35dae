/**
 * Random numbers and procedural noise for the synthetic street scenes: the seeded PRNG and the
 * integer-hash noise that textures use.
 */


/** mulberry32, seeded through a hash so neighbouring seeds start far apart. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = hash3(seed, 0x2545f491, 0x9e3779b9) * 4294967296;
  }
  nextU32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  next(): number {
    return this.nextU32() / 4294967296;
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  sign(): 1 | -1 {
    return this.next() < 0.5 ? -1 : 1;
  }
}

/** Integer hash of three values to [0, 1): texture noise that needs no state and no order. */
export function hash3(a: number, b: number, c: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul((b | 0) + 0x165667b1, 0x85ebca77) ^ Math.imul((c | 0) + 0x9e3779b1, 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Smooth value noise in [0, 1) (bilinear over a unit lattice with smoothstep weights). */
export function valueNoise(x: number, y: number, salt: number): number {
  const ix = Math.floor(x);
  const iy = Math.floor(y);
  let fx = x - ix;
  let fy = y - iy;
  fx = fx * fx * (3 - 2 * fx);
  fy = fy * fy * (3 - 2 * fy);
  const a = hash3(ix, iy, salt);
  const b = hash3(ix + 1, iy, salt);
  const c = hash3(ix, iy + 1, salt);
  const d = hash3(ix + 1, iy + 1, salt);
  return a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy;
}

/**
 * x * x. Used instead of `x ** 2`, whose results V8 has in the past computed differently in
 * interpreted and optimised code: a seed must give the same bytes on its first and 100th call.
 */
export function sq(x: number): number {
  return x * x;
}

/** Fractional part, also for negative x. */
export function frac(x: number): number {
  return x - Math.floor(x);
}

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
export function segDist(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const ex = px - ax - t * dx;
  const ey = py - ay - t * dy;
  return Math.sqrt(ex * ex + ey * ey);
}
