/**
 * Deterministic parameter initialisation from a seed, so two runs (and the browser and Node)
 * build the same network. Kaiming-normal for convolutions (fan_out, ReLU gain, as torchvision
 * initialises MobileNetV2 and ResNet), PyTorch's default uniform for linear layers.
 */

/** A seeded generator (mulberry32) with a Box-Muller normal sampler. */
export class SeededRandom {
  private state: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** A child generator: each parameter draws from its own stream, so adding a layer elsewhere does not shift it. */
  fork(key: string): SeededRandom {
    let h = this.state ^ 0x9e3779b9;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return new SeededRandom(h >>> 0);
  }
}

/** Kaiming normal, mode fan_out, gain sqrt(2): std = sqrt(2 / fan_out). */
export function kaimingNormal(rng: SeededRandom, n: number, fanOut: number): Float32Array {
  const std = Math.sqrt(2 / fanOut);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return out;
}

/** U(-bound, bound). */
export function uniform(rng: SeededRandom, n: number, bound: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * bound;
  return out;
}

export const constant = (n: number, v: number): Float32Array => new Float32Array(n).fill(v);
