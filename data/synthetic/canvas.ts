/**
 * The canvas of a synthetic scene: colour, label and depth of every pixel, written together behind
 * a depth test, so the label map is exactly what is visible; and the scene's Look (lighting and
 * sensor parameters, which change colours only, never labels).
 */
import type { RGB } from './colour.js';

/** Appearance parameters of the whole scene (colour only; labels never depend on them). */
export interface Look {
  skyTop: RGB;
  skyHorizon: RGB;
  cloudCover: number; // 0..1
  cloudColour: RGB;
  fogDist: number; // metres; haze blends toward skyHorizon with distance
  exposure: number;
  tint: RGB; // per-channel gain (colour temperature)
  noise: number; // sensor noise standard deviation, in 0..255 units
  sunny: boolean;
  sunX: 1 | -1; // the sun is on this side of the street (+X = right)
  shadowRatio: number; // cast-shadow length per metre of building height
}

/**
 * Scratch pixel that shaders fill: one object reused for every pixel so the inner loops allocate
 * nothing. Generation is synchronous, so sharing it at module level is safe.
 */
export const PX = { r: 0, g: 0, b: 0, a: 1 };

export function setPx(c: RGB, k = 1): void {
  PX.r = c[0] * k;
  PX.g = c[1] * k;
  PX.b = c[2] * k;
}

/** A shader maps local metric coordinates to a class id (PX holds the colour) or -1 (nothing). */
export type Shade = (u: number, v: number, mpp: number) => number;

let scratch: { rgb: Float32Array; depth: Float32Array } | undefined;

export class Canvas {
  readonly rgb: Float32Array;
  readonly labels: Uint8Array;
  readonly depth: Float32Array;
  private readonly fogR: number;
  private readonly fogG: number;
  private readonly fogB: number;
  private readonly invFog: number;

  constructor(
    readonly w: number,
    readonly h: number,
    look: Look,
  ) {
    // The float buffers are scratch, reused across calls (allocating ~0.5 MB per scene showed
    // up as garbage-collector time); generation is synchronous, so sharing them is safe.
    const n = w * h;
    if (!scratch || scratch.depth.length < n) scratch = { rgb: new Float32Array(n * 3), depth: new Float32Array(n) };
    this.rgb = scratch.rgb.subarray(0, n * 3).fill(0);
    this.depth = scratch.depth.subarray(0, n).fill(Infinity);
    this.labels = new Uint8Array(n);
    [this.fogR, this.fogG, this.fogB] = look.skyHorizon;
    this.invFog = 1 / look.fogDist;
  }

  /** Haze blend factor at depth z (callers compute it once per billboard, column or row). */
  fogAt(z: number): number {
    return 1 - Math.exp(-z * this.invFog);
  }

  /**
   * Writes PX and `label` at pixel `i` if `z` is not behind what is there, hazed by `t` (from
   * `fogAt(z)`). PX.a < 1 blends over the current colour (fence mesh) but still takes the
   * pixel's label: the mesh is what is seen.
   */
  plot(i: number, label: number, z: number, t: number): void {
    if (z > this.depth[i]!) return;
    this.depth[i] = z;
    this.labels[i] = label;
    const k = i * 3;
    let r = PX.r + (this.fogR - PX.r) * t;
    let g = PX.g + (this.fogG - PX.g) * t;
    let b = PX.b + (this.fogB - PX.b) * t;
    const a = PX.a;
    if (a < 1) {
      r = this.rgb[k]! + (r - this.rgb[k]!) * a;
      g = this.rgb[k + 1]! + (g - this.rgb[k + 1]!) * a;
      b = this.rgb[k + 2]! + (b - this.rgb[k + 2]!) * a;
    }
    this.rgb[k] = r;
    this.rgb[k + 1] = g;
    this.rgb[k + 2] = b;
  }
}
