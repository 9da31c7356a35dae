/**
 * Synthetic street scenes with exact per-pixel Cityscapes train ids, for training and testing
 * CANet without downloading a dataset. Platform-neutral, pure CPU, deterministic per seed.
 *
 * A scene is laid out in metres from a seeded PRNG: a straight street seen from a car (road with
 * lanes and markings, sidewalks, facades, walls, fences, trees, terrain, parked and moving
 * vehicles, people, riders, poles, signs and traffic lights) and then rendered through a pinhole
 * camera. Every pixel write stores its colour and its class together behind a depth test, so the
 * label map is exactly what is visible: occlusion, gaps in a fence or between a bicycle's spokes
 * included. Lighting (exposure, colour temperature, sun side, cast shadows, haze) and sensor noise
 * change colours only, never labels.
 *
 * The layout never looks at the output size, so one seed is the same scene at 128x64 and at
 * 2048x1024 (only the sampling differs).
 */
import { CLASS } from '../engine/palette.js';

/** Output of {@link generateScene}. */
export interface SyntheticScene {
  /** RGB bytes, row-major, `height * width * 3`. */
  image: Uint8Array;
  /** One train id (0..18) per pixel, row-major, `height * width`. Never IGNORE_INDEX. */
  labels: Uint8Array;
}

/** Validation seeds are `SYNTHETIC_VAL_SEED_BASE + i`; training seeds are `0..count-1`. */
export const SYNTHETIC_VAL_SEED_BASE = 1_000_000;

/** Largest width or height accepted: bounds memory (a 8192x8192 scene is ~500 MB of buffers). */
const MAX_SIDE = 8192;

/**
 * Renders the street scene of `seed` at `width` x `height`.
 *
 * Deterministic: the same (seed, width, height) gives identical bytes on every call and
 * platform. Labels use only IEEE-exact arithmetic (+, -, *, /, sqrt, floor) and integer hashing,
 * so they are bit-identical in any JavaScript engine; the image also uses `Math.exp` (haze), which
 * engines other than V8 could round differently in the last bit, moving a byte by one level.
 *
 * @param seed integer in [0, 2^32); see {@link syntheticSeeds} for disjoint train/val seeds
 * @param width image width in pixels, 1..8192 (256x128 takes a few milliseconds)
 * @param height image height in pixels, 1..8192
 * @throws RangeError for a seed or size out of range
 */
export function generateScene(seed: number, width: number, height: number): SyntheticScene {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`generateScene: seed must be an integer in [0, 4294967295], got ${seed}`);
  for (const [name, v] of [['width', width], ['height', height]] as const)
    if (!Number.isInteger(v) || v < 1 || v > MAX_SIDE)
      throw new RangeError(`generateScene: ${name} must be an integer in [1, ${MAX_SIDE}], got ${v}`);
  const rng = new Rng(seed);
  const scene = layoutScene(rng);
  const cam: Camera = {
    w: width,
    h: height,
    f: scene.fRel * width,
    vx: scene.vxRel * width,
    hy: scene.hyRel * height,
    camH: scene.camH,
    camX: scene.camX,
  };
  const cv = new Canvas(width, height, scene.look);
  render(cv, cam, scene);
  return { image: finish(cv, scene.look, seed), labels: cv.labels };
}

/**
 * Seeds for a synthetic split, disjoint between splits: train is `0..count-1`, val is
 * `SYNTHETIC_VAL_SEED_BASE + 0..count-1`.
 *
 * @param count number of scenes, 0..1,000,000 (more would make the splits overlap)
 */
export function syntheticSeeds(count: number, split: 'train' | 'val'): number[] {
  if (!Number.isInteger(count) || count < 0 || count > SYNTHETIC_VAL_SEED_BASE)
    throw new RangeError(`syntheticSeeds: count must be an integer in [0, ${SYNTHETIC_VAL_SEED_BASE}], got ${count}`);
  if (split !== 'train' && split !== 'val') throw new RangeError(`syntheticSeeds: split must be 'train' or 'val', got ${String(split)}`);
  const base = split === 'train' ? 0 : SYNTHETIC_VAL_SEED_BASE;
  return Array.from({ length: count }, (_, i) => base + i);
}

// ---------------------------------------------------------------------------------------------
// Random numbers and procedural noise

/** mulberry32, seeded through a hash so neighbouring seeds start far apart. */
class Rng {
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
function hash3(a: number, b: number, c: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul((b | 0) + 0x165667b1, 0x85ebca77) ^ Math.imul((c | 0) + 0x9e3779b1, 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Smooth value noise in [0, 1) (bilinear over a unit lattice with smoothstep weights). */
function valueNoise(x: number, y: number, salt: number): number {
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
function sq(x: number): number {
  return x * x;
}

/** Fractional part, also for negative x. */
function frac(x: number): number {
  return x - Math.floor(x);
}

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
function segDist(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const ex = px - ax - t * dx;
  const ey = py - ay - t * dy;
  return Math.sqrt(ex * ex + ey * ey);
}

// ---------------------------------------------------------------------------------------------
// Colours

type RGB = readonly [number, number, number];

function jitter(rng: Rng, c: RGB, amount: number): RGB {
  const k = 1 + rng.range(-amount, amount);
  return [
    clamp255(c[0] * k + rng.range(-12, 12) * amount * 3),
    clamp255(c[1] * k + rng.range(-12, 12) * amount * 3),
    clamp255(c[2] * k + rng.range(-12, 12) * amount * 3),
  ];
}

function clamp255(x: number): number {
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

function mixRGB(a: RGB, b: RGB, t: number): RGB {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

const PLASTER: readonly RGB[] = [
  [205, 195, 175], [185, 175, 155], [220, 212, 195], [170, 162, 152], [195, 178, 160], [160, 150, 142], [212, 200, 165],
  [180, 145, 110], [150, 125, 105], [188, 188, 192], [200, 170, 150], [140, 140, 145],
];
const BRICK: readonly RGB[] = [[150, 82, 62], [128, 70, 56], [162, 98, 72], [118, 78, 66]];
const GLASS: readonly RGB[] = [[88, 110, 128], [70, 92, 112], [100, 118, 120], [60, 75, 90]];
const CONCRETE: readonly RGB[] = [[150, 150, 148], [132, 132, 136], [165, 160, 150], [120, 118, 112]];
const CAR_PAINT: readonly RGB[] = [
  [200, 202, 206], [28, 28, 32], [238, 238, 236], [150, 22, 24], [30, 52, 118], [92, 92, 96], [22, 72, 44], [198, 182, 142],
  [190, 120, 30], [64, 34, 24], [100, 132, 162], [120, 125, 130], [45, 45, 55],
];
const BUS_PAINT: readonly RGB[] = [[200, 32, 30], [228, 188, 30], [30, 82, 170], [40, 140, 72], [236, 236, 232], [220, 110, 30]];
const TRAM_PAINT: readonly RGB[] = [[236, 236, 228], [228, 192, 40], [182, 30, 32], [220, 225, 230]];
const TRUCK_BOX: readonly RGB[] = [[236, 236, 236], [196, 198, 200], [220, 120, 30], [40, 72, 140], [180, 40, 40], [230, 220, 200]];
const SKIN: readonly RGB[] = [[232, 192, 164], [204, 152, 120], [152, 102, 72], [102, 70, 50], [222, 178, 140]];
const HAIR: readonly RGB[] = [[30, 22, 18], [70, 45, 25], [150, 110, 60], [200, 170, 110], [110, 110, 110], [20, 20, 20]];
const CLOTH: readonly RGB[] = [
  [30, 30, 34], [200, 40, 40], [40, 70, 150], [230, 230, 225], [60, 120, 60], [200, 160, 40], [120, 40, 110], [90, 90, 95],
  [170, 110, 70], [40, 150, 170], [230, 120, 150], [60, 50, 40],
];
const TROUSERS: readonly RGB[] = [[48, 58, 92], [28, 28, 30], [90, 90, 96], [170, 150, 115], [70, 56, 44], [36, 44, 70]];
const FOLIAGE: readonly RGB[] = [[62, 102, 40], [50, 90, 44], [82, 112, 48], [44, 82, 36], [92, 118, 56], [70, 96, 30]];
const GRASS: readonly RGB[] = [[122, 152, 72], [140, 160, 84], [152, 142, 102], [110, 142, 62], [132, 150, 92]];
const ASPHALT: readonly RGB[] = [[72, 72, 77], [86, 85, 88], [62, 62, 67], [96, 93, 90], [80, 82, 86]];
const PAVING: readonly RGB[] = [[162, 157, 150], [172, 162, 152], [150, 142, 142], [182, 152, 142], [142, 142, 147], [190, 180, 165]];
const METAL: readonly RGB[] = [[120, 122, 126], [70, 72, 74], [150, 150, 150], [40, 56, 46], [50, 50, 54]];
const FENCE_PAINT: readonly RGB[] = [[48, 78, 54], [110, 112, 116], [128, 96, 70], [60, 60, 64], [160, 140, 110]];

// ---------------------------------------------------------------------------------------------
// Canvas: colour + label + depth, written together

/** Appearance parameters of the whole scene (colour only; labels never depend on them). */
interface Look {
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
const PX = { r: 0, g: 0, b: 0, a: 1 };

function setPx(c: RGB, k = 1): void {
  PX.r = c[0] * k;
  PX.g = c[1] * k;
  PX.b = c[2] * k;
}

/** A shader maps local metric coordinates to a class id (PX holds the colour) or -1 (nothing). */
type Shade = (u: number, v: number, mpp: number) => number;

let scratch: { rgb: Float32Array; depth: Float32Array } | undefined;

class Canvas {
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

// ---------------------------------------------------------------------------------------------
// Camera and the three drawing primitives

/**
 * Pinhole camera looking down the street (+z), level, at height camH above the road and lateral
 * position camX. World X is across the street (road centre 0, +X to the right), v is height.
 */
interface Camera {
  w: number;
  h: number;
  f: number; // focal length in pixels
  vx: number; // vanishing point, pixels
  hy: number; // horizon row, pixels
  camH: number;
  camX: number;
}

/** Nearest depth drawn; nearer geometry would project to enormous, meaningless sizes. */
const Z_NEAR = 0.5;

/**
 * A flat object facing the camera at depth z (a person, a vehicle's rear, a tree): `shade` gets
 * u = X - xc and v = height, over u in [uMin, uMax], v in [vMin, vMax].
 */
function drawBillboard(cv: Canvas, cam: Camera, z: number, xc: number, uMin: number, uMax: number, vMin: number, vMax: number, shade: Shade): void {
  if (z < Z_NEAR) return;
  const k = cam.f / z;
  const mpp = 1 / k;
  const fog = cv.fogAt(z);
  const ix0 = Math.max(0, Math.ceil(cam.vx + (xc + uMin - cam.camX) * k - 0.5));
  const ix1 = Math.min(cv.w - 1, Math.floor(cam.vx + (xc + uMax - cam.camX) * k - 0.5));
  const iy0 = Math.max(0, Math.ceil(cam.hy + (cam.camH - vMax) * k - 0.5));
  const iy1 = Math.min(cv.h - 1, Math.floor(cam.hy + (cam.camH - vMin) * k - 0.5));
  for (let iy = iy0; iy <= iy1; iy++) {
    const v = cam.camH - (iy + 0.5 - cam.hy) * mpp;
    for (let ix = ix0; ix <= ix1; ix++) {
      const i = iy * cv.w + ix;
      if (cv.depth[i]! < z) continue; // hidden: skip the shader, the costly part
      const u = (ix + 0.5 - cam.vx) * mpp + cam.camX - xc;
      PX.a = 1;
      const label = shade(u, v, mpp);
      if (label >= 0) cv.plot(i, label, z, fog);
    }
  }
}

/**
 * A vertical plane along the street at X = xp from depth z0 to z1 (a facade, a fence, a
 * vehicle's side): `shade` gets d = z - z0 and v = height, v in [vMin, vMax].
 */
function drawSidePlane(cv: Canvas, cam: Camera, xp: number, z0: number, z1: number, vMin: number, vMax: number, shade: Shade): void {
  const dx = xp - cam.camX;
  if (Math.abs(dx) < 1e-3) return; // seen edge-on: no area
  const zs = Math.max(z0, Z_NEAR);
  if (z1 <= zs) return;
  const a = cam.vx + (cam.f * dx) / zs;
  const b = cam.vx + (cam.f * dx) / z1;
  const ix0 = Math.max(0, Math.ceil(Math.min(a, b) - 0.5));
  const ix1 = Math.min(cv.w - 1, Math.floor(Math.max(a, b) - 0.5));
  for (let ix = ix0; ix <= ix1; ix++) {
    const sx = ix + 0.5 - cam.vx;
    if (sx * dx <= 0) continue;
    const z = (cam.f * dx) / sx;
    if (z < zs || z > z1) continue;
    const k = cam.f / z;
    const mpp = 1 / k;
    const fog = cv.fogAt(z);
    const iy0 = Math.max(0, Math.ceil(cam.hy + (cam.camH - vMax) * k - 0.5));
    const iy1 = Math.min(cv.h - 1, Math.floor(cam.hy + (cam.camH - vMin) * k - 0.5));
    for (let iy = iy0; iy <= iy1; iy++) {
      const i = iy * cv.w + ix;
      if (cv.depth[i]! < z) continue;
      const v = cam.camH - (iy + 0.5 - cam.hy) * mpp;
      PX.a = 1;
      const label = shade(z - z0, v, mpp);
      if (label >= 0) cv.plot(i, label, z, fog);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scene layout, in metres

interface Building {
  z0: number;
  z1: number;
  height: number;
  base: RGB;
  style: 'plaster' | 'brick' | 'glass';
  floorH: number;
  groundH: number;
  winW: number;
  winH: number;
  winPitch: number;
  winPhase: number;
  glass: RGB;
  frame: RGB;
  shop: RGB;
  salt: number;
}

interface Side {
  /** +1 right, -1 left. */
  s: 1 | -1;
  /** |X| of the road edge (curb) on this side. */
  curb: number;
  verge: number;
  sidewalk: number;
  /** |X| of the back of the sidewalk (facade line). */
  back: number;
  open: boolean;
  buildings: Building[];
  /** Open side: |X| where the tree line / hedge stands. */
  treeLine: number;
  treeLineH: number;
}

interface Item {
  /** Depth used to draw far-to-near (only matters for translucent pixels; the depth test does the rest). */
  z: number;
  draw: (cv: Canvas, cam: Camera) => void;
}

interface Scene {
  fRel: number;
  vxRel: number;
  hyRel: number;
  camH: number;
  camX: number;
  look: Look;
  zEnd: number;
  laneHalf: number;
  laneW: number;
  lanes: number;
  twoWay: boolean;
  left: Side;
  right: Side;
  asphalt: RGB;
  paving: RGB;
  curbStone: RGB;
  grass: RGB;
  paint: RGB;
  tileSize: number;
  crosswalkZ: number; // -1 when none
  tramX: number; // NaN when no rails
  dashPhase: number;
  pits: { x: number; z: number; r: number }[];
  shadows: { x0: number; x1: number; z0: number; z1: number }[];
  items: Item[];
}

function layoutScene(rng: Rng): Scene {
  const look = chooseLook(rng);
  const lanes = rng.pick([2, 2, 3, 4, 4]);
  const laneW = rng.range(2.9, 3.5);
  const laneHalf = (lanes * laneW) / 2;
  const twoWay = lanes !== 3 && rng.chance(0.75);
  const makeSide = (s: 1 | -1): Side => {
    const park = rng.chance(0.6) ? 2.2 : 0;
    const verge = rng.chance(0.35) ? rng.range(1, 2.5) : 0;
    const sidewalk = rng.range(2, 5);
    const curb = laneHalf + park;
    return {
      s, curb, verge, sidewalk, back: curb + verge + sidewalk, open: rng.chance(0.3), buildings: [],
      treeLine: 0, treeLineH: rng.range(5, 12),
    };
  };
  const left = makeSide(-1);
  const right = makeSide(1);
  // Drive in a right-hand lane of a two-way street, anywhere on a one-way street.
  const firstLane = twoWay ? lanes / 2 : 0;
  const camLane = rng.int(firstLane, lanes - 1);
  const laneCentre = (k: number) => -laneHalf + laneW * (k + 0.5);
  const scene: Scene = {
    fRel: rng.range(0.62, 0.85),
    vxRel: rng.range(0.44, 0.56),
    hyRel: rng.range(0.38, 0.5),
    camH: rng.range(1.2, 1.7),
    camX: laneCentre(camLane) + rng.range(-0.4, 0.4),
    look,
    zEnd: rng.range(70, 150),
    laneHalf, laneW, lanes, twoWay, left, right,
    asphalt: jitter(rng, rng.pick(ASPHALT), 0.08),
    paving: jitter(rng, rng.pick(PAVING), 0.06),
    curbStone: jitter(rng, [176, 176, 172], 0.05),
    grass: jitter(rng, rng.pick(GRASS), 0.08),
    paint: jitter(rng, [222, 222, 214], 0.04),
    tileSize: rng.range(0.3, 0.9),
    crosswalkZ: rng.chance(0.5) ? rng.range(9, 30) : -1,
    tramX: NaN,
    dashPhase: rng.range(0, 9),
    pits: [],
    shadows: [],
    items: [],
  };
  // Lane occupancy, so vehicles never overlap: per lane, [z0, z1] intervals.
  const occupied: [number, number][][] = Array.from({ length: lanes + 2 }, () => []);
  const laneIndex = (k: number) => k + 1; // 0 and lanes+1 are the parking strips
  const free = (slot: number, z0: number, z1: number) => occupied[slot]!.every(([a, b]) => z1 < a - 1 || z0 > b + 1);
  const take = (slot: number, z0: number, z1: number) => occupied[slot]!.push([z0, z1]);

  // The rest of the street: sides, then what stands and moves on it.
  for (const side of [left, right]) layoutSide(rng, scene, side);
  layoutBackdrop(rng, scene);

  // A tram on rails in one lane of about half the streets (rare in reality, but the class needs
  // examples).
  if (rng.chance(0.55)) {
    const k = twoWay ? rng.pick([lanes / 2 - 1, lanes / 2]) : rng.int(0, lanes - 1);
    scene.tramX = laneCentre(k);
    const len = rng.range(24, 34);
    const z0 = k === camLane ? rng.range(9, 22) : rng.range(3, 25);
    if (free(laneIndex(k), z0, z0 + len)) {
      take(laneIndex(k), z0, z0 + len);
      addVehicle(rng, scene, 'tram', scene.tramX, z0, twoWay && k < lanes / 2 ? -1 : 1, len);
    }
  }
  // Guaranteed guests keep the rare classes in most scenes; then ordinary traffic fills lanes.
  const wanted: VehicleKind[] = [];
  if (rng.chance(0.55)) wanted.push('bus');
  if (rng.chance(0.6)) wanted.push('truck');
  if (rng.chance(0.6)) wanted.push('motorcycle');
  if (rng.chance(0.4)) wanted.push('bicycle');
  for (const kind of wanted) {
    for (let attempt = 0; attempt < 8; attempt++) {
      const k = rng.int(0, lanes - 1);
      const len = vehicleLength(rng, kind);
      const z0 = k === camLane ? rng.range(7, 35) : rng.range(3, 40);
      if (!free(laneIndex(k), z0, z0 + len)) continue;
      take(laneIndex(k), z0, z0 + len);
      const x = laneCentre(k) + (kind === 'bicycle' || kind === 'motorcycle' ? rng.range(-0.8, 0.8) : rng.range(-0.25, 0.25));
      addVehicle(rng, scene, kind, x, z0, twoWay && k < lanes / 2 ? -1 : 1, len);
      break;
    }
  }
  for (let k = 0; k < lanes; k++) {
    let z = k === camLane ? rng.range(6, 16) : rng.range(2, 14);
    while (z < scene.zEnd * 0.75) {
      const kind: VehicleKind = rng.chance(0.86) ? 'car' : rng.pick(['truck', 'bus', 'motorcycle', 'van'] as const);
      const len = vehicleLength(rng, kind);
      if (rng.chance(0.72) && free(laneIndex(k), z, z + len)) {
        take(laneIndex(k), z, z + len);
        addVehicle(rng, scene, kind, laneCentre(k) + rng.range(-0.3, 0.3), z, twoWay && k < lanes / 2 ? -1 : 1, len);
      }
      z += len + rng.range(3, 22);
    }
  }
  // Parked rows along the curbs; the cars nearest to the camera are the biggest car regions.
  for (const side of [left, right]) {
    if (side.curb === laneHalf) continue;
    const slot = side.s > 0 ? lanes + 1 : 0;
    const x = side.s * (laneHalf + 1.1);
    const facing = side.s > 0 || !twoWay ? 1 : rng.chance(0.5) ? -1 : 1;
    let z = rng.range(1, 6);
    while (z < scene.zEnd * 0.8) {
      if (rng.chance(0.15)) {
        z += rng.range(4, 14);
        continue;
      }
      const kind: VehicleKind = rng.chance(0.9) ? 'car' : 'van';
      const len = vehicleLength(rng, kind);
      if (free(slot, z, z + len)) {
        take(slot, z, z + len);
        addVehicle(rng, scene, kind, x + rng.range(-0.15, 0.15), z, facing, len);
      }
      z += len + rng.range(0.6, 3);
    }
  }
  layoutStreetFurniture(rng, scene);
  layoutPeople(rng, scene);
  return scene;
}

function chooseLook(rng: Rng): Look {
  const kind = rng.pick(['clear', 'clear', 'hazy', 'overcast', 'dusk'] as const);
  const skies = {
    clear: [[62, 122, 200], [176, 204, 232]],
    hazy: [[118, 156, 200], [206, 216, 226]],
    overcast: [[150, 158, 172], [204, 208, 214]],
    dusk: [[72, 96, 156], [236, 178, 128]],
  } as const;
  const [top, horizon] = skies[kind];
  const warmth = kind === 'dusk' ? rng.range(0.05, 0.15) : rng.range(-0.08, 0.08);
  return {
    skyTop: jitter(rng, top, 0.08),
    skyHorizon: jitter(rng, horizon, 0.05),
    cloudCover: kind === 'overcast' ? rng.range(0.3, 0.7) : rng.range(0, 0.6),
    cloudColour: kind === 'dusk' ? [236, 200, 180] : [240, 242, 246],
    fogDist: rng.range(140, 420),
    exposure: rng.range(0.72, 1.18),
    tint: [1 + warmth, 1, 1 - warmth],
    noise: rng.range(1.5, 6),
    sunny: (kind === 'clear' || kind === 'dusk') && rng.chance(0.8),
    sunX: rng.sign(),
    shadowRatio: rng.range(0.25, 0.9),
  };
}

/** Facades (or, on an open side, terrain with a tree line), plus what fills the gaps. */
function layoutSide(rng: Rng, scene: Scene, side: Side): void {
  const s = side.s;
  if (side.open) {
    side.treeLine = side.back + rng.range(4, 16);
    const edge = rng.pick(['fence', 'fence', 'wall', 'hedge', 'none'] as const);
    if (edge !== 'none') addEdge(rng, scene, edge, s * side.back, 0, scene.zEnd);
    const trees = rng.int(3, 9);
    for (let i = 0; i < trees; i++) {
      const x = s * rng.range(side.back + 1.5, side.treeLine - 1);
      addTree(rng, scene, x, rng.range(4, scene.zEnd * 0.7));
    }
    for (let i = rng.int(0, 5); i > 0; i--) addBush(rng, scene, s * rng.range(side.back + 0.8, side.treeLine), rng.range(4, 50));
    // The tree line is one wide band of foliage: draw it first so everything else comes in front.
    const salt = rng.int(0, 1 << 30);
    const colour = jitter(rng, rng.pick(FOLIAGE), 0.1);
    const hBase = side.treeLineH;
    scene.items.push({
      z: 1e6,
      draw: (cv, cam) =>
        drawSidePlane(cv, cam, s * side.treeLine, 0, scene.zEnd, 0, hBase + 6, (d, v) => {
          const top = hBase * (0.7 + 0.6 * valueNoise(d * 0.12, 0, salt)) + 1.5 * valueNoise(d * 0.6, 3, salt);
          if (v > top) return -1;
          return foliage(colour, d, v, salt);
        }),
    });
    return;
  }
  let z = rng.range(-20, 0);
  while (z < scene.zEnd) {
    const len = rng.range(8, 32);
    const b: Building = makeBuilding(rng, z, z + len);
    side.buildings.push(b);
    z += len;
    if (rng.chance(0.28) && z < scene.zEnd - 10) {
      // A gap: a wall, fence or hedge on the facade line, greenery behind it, the building after
      // it shows its end wall.
      const gap = rng.range(4, 12);
      const fill = rng.pick(['wall', 'wall', 'fence', 'fence', 'hedge'] as const);
      addEdge(rng, scene, fill, s * side.back, z, z + gap);
      if (rng.chance(0.7)) addTree(rng, scene, s * (side.back + rng.range(1.5, 4)), z + gap * rng.range(0.2, 0.8));
      z += gap;
      if (z < scene.zEnd) {
        const next = makeBuilding(rng, z, z + rng.range(8, 32));
        side.buildings.push(next);
        const zEnd = z;
        scene.items.push({
          z: zEnd,
          draw: (cv, cam) =>
            drawBillboard(cv, cam, zEnd, s * side.back, s > 0 ? 0 : -14, s > 0 ? 14 : 0, 0, next.height, (u, v) =>
              facade(next, Math.abs(u), v, 0.92)),
        });
        z = next.z1;
      }
    }
  }
  // Front yards: low walls and fences just in front of some facades.
  if (rng.chance(0.6)) {
    for (let i = rng.int(1, 2); i > 0; i--) {
      const z0 = rng.range(2, 40);
      addEdge(rng, scene, rng.chance(0.55) ? 'wall' : 'fence', s * (side.back - 0.08), z0, z0 + rng.range(4, 18), 1.6);
    }
  }
  for (const b of side.buildings) {
    const lit = facadeLight(scene.look, -s);
    scene.items.push({ z: b.z1, draw: (cv, cam) => drawSidePlane(cv, cam, s * side.back, b.z0, b.z1, 0, b.height, (d, v) => facade(b, d, v, lit)) });
  }
}

/** Light factor of a vertical surface whose normal points along `normalX` (+1: toward +X). */
function facadeLight(look: Look, normalX: number): number {
  if (!look.sunny) return 1;
  return normalX === look.sunX ? 1.14 : 0.8;
}

function makeBuilding(rng: Rng, z0: number, z1: number): Building {
  const style = rng.pick(['plaster', 'plaster', 'plaster', 'brick', 'glass'] as const);
  const base = jitter(rng, rng.pick(style === 'brick' ? BRICK : style === 'glass' ? GLASS : PLASTER), 0.06);
  const floorH = rng.range(2.9, 3.6);
  return {
    z0, z1, style, base, floorH,
    height: rng.chance(0.15) ? rng.range(25, 45) : rng.range(7, 24),
    groundH: rng.range(3.5, 4.8),
    winW: style === 'glass' ? rng.range(1.2, 1.8) : rng.range(0.9, 1.5),
    winH: style === 'glass' ? floorH - 0.5 : rng.range(1.3, 1.8),
    winPitch: rng.range(2.0, 3.4),
    winPhase: rng.range(0, 3),
    glass: jitter(rng, [62, 74, 88], 0.12),
    frame: jitter(rng, rng.chance(0.6) ? [228, 226, 220] : [70, 66, 62], 0.05),
    shop: jitter(rng, rng.pick([[50, 56, 64], [90, 70, 50], [120, 30, 30], [40, 60, 90]] as const), 0.1),
    salt: rng.int(0, 1 << 30),
  };
}

/** Facade colour at distance d along the wall and height v; always class building. */
function facade(b: Building, d: number, v: number, light: number): number {
  if (v > b.height) return -1;
  const shadeAO = light * (0.84 + 0.16 * Math.min(1, v / 3));
  if (v > b.height - 0.45) {
    // Cornice: a band that sets off the roof line against the sky.
    setPx(b.base, shadeAO * 0.78);
    return CLASS.building;
  }
  const grain = 0.94 + 0.1 * hash3(Math.floor(d * 6), Math.floor(v * 6), b.salt);
  if (v < b.groundH) {
    // Ground floor: shop windows and doors between plain piers.
    const p = frac((d + b.winPhase) / (b.winPitch * 2));
    if (v > 0.5 && v < b.groundH - 0.6 && p > 0.12 && p < 0.88) {
      setPx(v > b.groundH - 1.1 ? b.shop : b.glass, shadeAO * (0.8 + 0.3 * (v / b.groundH)));
      return CLASS.building;
    }
    setPx(b.style === 'glass' ? b.frame : b.base, shadeAO * grain * 0.9);
    return CLASS.building;
  }
  const fv = (v - b.groundH) / b.floorH;
  const inFloor = (fv - Math.floor(fv)) * b.floorH;
  const p = frac((d + b.winPhase) / b.winPitch) * b.winPitch;
  if (b.style === 'glass') {
    const mullion = p < 0.12 || inFloor < 0.35;
    if (mullion) setPx(b.frame, shadeAO * 0.9);
    else setPx(b.glass, shadeAO * (0.75 + 0.45 * (inFloor / b.floorH)) * (0.9 + 0.2 * hash3(Math.floor(d / b.winPitch), Math.floor(fv), b.salt)));
    return CLASS.building;
  }
  const wy0 = 0.9;
  if (p < b.winW && inFloor > wy0 && inFloor < wy0 + b.winH) {
    const frameW = 0.09;
    if (p < frameW || p > b.winW - frameW || inFloor < wy0 + frameW || inFloor > wy0 + b.winH - frameW) setPx(b.frame, shadeAO);
    else {
      // Glass reflects the sky: brighter toward the top, some panes lit or curtained.
      const pane = hash3(Math.floor((d + b.winPhase) / b.winPitch), Math.floor(fv), b.salt);
      setPx(b.glass, shadeAO * (0.7 + 0.5 * ((inFloor - wy0) / b.winH)) * (pane > 0.9 ? 1.6 : 0.85 + 0.3 * pane));
    }
    return CLASS.building;
  }
  let g = grain;
  if (b.style === 'brick') {
    // Mortar lines every course: a texture only bricks have.
    const course = frac(v / 0.25);
    if (course < 0.14 || frac(d / 0.5 + (Math.floor(v / 0.25) % 2) * 0.5) < 0.06) g *= 1.25;
  } else if (inFloor < 0.18) g *= 0.92; // floor slab line
  setPx(b.base, shadeAO * g);
  return CLASS.building;
}

/** A wall, fence or hedge along the street at X = x from z0 to z1. */
function addEdge(rng: Rng, scene: Scene, kind: 'wall' | 'fence' | 'hedge', x: number, z0: number, z1: number, maxH = 3): void {
  const salt = rng.int(0, 1 << 30);
  const lit = facadeLight(scene.look, -Math.sign(x));
  if (kind === 'wall') {
    const h = rng.range(0.8, maxH);
    const c = jitter(rng, rng.pick(CONCRETE), 0.07);
    const block = rng.range(0.35, 0.7);
    scene.items.push({ z: z1, draw: (cv, cam) => drawSidePlane(cv, cam, x, z0, z1, 0, h, (d, v) => wallShade(c, d, v, h, block, salt, lit)) });
    return;
  }
  if (kind === 'hedge') {
    const h = rng.range(0.9, 1.9);
    const c = jitter(rng, rng.pick(FOLIAGE), 0.1);
    scene.items.push({
      z: z1,
      draw: (cv, cam) =>
        drawSidePlane(cv, cam, x, z0, z1, 0, h + 0.4, (d, v) => (v > h + 0.35 * (valueNoise(d * 1.3, 0, salt) - 0.5) ? -1 : foliage(c, d, v, salt))),
    });
    return;
  }
  const fence = makeFence(rng, lit, maxH);
  scene.items.push({ z: z1, draw: (cv, cam) => drawSidePlane(cv, cam, x, z0, z1, 0, fence.h, (d, v, mpp) => fenceShade(fence, d, v, mpp)) });
}

function wallShade(c: RGB, d: number, v: number, h: number, block: number, salt: number, light: number): number {
  const top = v > h - 0.12;
  const joint = frac(v / block) < 0.06 || frac(d / (block * 2.2) + (Math.floor(v / block) % 2) * 0.5) < 0.03;
  const stain = 0.92 + 0.14 * valueNoise(d * 0.8, v * 0.8, salt);
  setPx(c, light * stain * (top ? 1.15 : joint ? 0.82 : 1));
  return CLASS.wall;
}

interface Fence {
  h: number;
  colour: RGB;
  pitch: number;
  bar: number;
  postPitch: number;
  mesh: boolean;
}

function makeFence(rng: Rng, light: number, maxH: number): Fence {
  return {
    h: rng.range(0.9, Math.min(2.2, maxH)),
    colour: mixRGB([0, 0, 0], jitter(rng, rng.pick(FENCE_PAINT), 0.08), light),
    pitch: rng.range(0.1, 0.22),
    bar: rng.range(0.25, 0.5),
    postPitch: rng.range(2, 3),
    mesh: rng.chance(0.35),
  };
}

/** Posts, rails and pickets; gaps show what is behind. Far away the pickets blur into a veil. */
function fenceShade(f: Fence, d: number, v: number, mpp: number): number {
  if (v > f.h) return -1;
  const post = frac(d / f.postPitch) * f.postPitch < Math.max(0.08, mpp);
  const rail = v > f.h - 0.08 || (v > 0.12 && v < 0.2) || (f.mesh && Math.abs(v - f.h / 2) < 0.04);
  if (post || rail) {
    setPx(f.colour, 0.9);
    return CLASS.fence;
  }
  if (f.mesh || f.pitch < 2.5 * mpp) {
    // Too fine to resolve: a translucent veil, which is what a camera records.
    setPx(f.colour, 1.05);
    PX.a = f.mesh ? 0.45 : 0.7;
    return CLASS.fence;
  }
  if (frac(d / f.pitch) < f.bar + 0.25) {
    setPx(f.colour, 1);
    return CLASS.fence;
  }
  return -1;
}

/** Leaf texture: clumps of light and shade, with the top lit. */
function foliage(c: RGB, u: number, v: number, salt: number): number {
  const n = valueNoise(u * 2.2, v * 2.2, salt) * 0.6 + valueNoise(u * 7, v * 7, salt + 1) * 0.4;
  setPx(c, 0.62 + 0.62 * n);
  return CLASS.vegetation;
}

function addTree(rng: Rng, scene: Scene, x: number, z: number): void {
  const trunkH = rng.range(1.8, 3.5);
  const r = rng.range(1.5, 3.6);
  const trunkW = rng.range(0.12, 0.22);
  const bark = jitter(rng, [92, 72, 56], 0.12);
  const leaf = jitter(rng, rng.pick(FOLIAGE), 0.12);
  const salt = rng.int(0, 1 << 30);
  // Canopy blobs as flat (u, v, radius) triples: destructuring arrays in the pixel loop allocates.
  const n = rng.int(4, 7);
  const blobs = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) blobs.set([rng.range(-0.6, 0.6) * r, trunkH + r + rng.range(-0.5, 0.6) * r, r * rng.range(0.5, 0.8)], i * 3);
  const top = trunkH + 2.5 * r;
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, -1.5 * r, 1.5 * r, 0, top, (u, v, mpp) => {
        const wobble = v > trunkH * 0.8 ? 0.8 + 0.4 * valueNoise(u * 1.5, v * 1.5, salt) : 0;
        for (let i = 0; i < blobs.length; i += 3) {
          const du = u - blobs[i]!;
          const dv = v - blobs[i + 1]!;
          const rr = blobs[i + 2]! * wobble;
          if (du * du + dv * dv < rr * rr) {
            foliage(leaf, u, v, salt);
            const lift = 0.85 + 0.3 * ((v - trunkH) / (2.2 * r));
            PX.r *= lift;
            PX.g *= lift;
            PX.b *= lift;
            return CLASS.vegetation;
          }
        }
        // The trunk is vegetation too, as in Cityscapes.
        if (v < trunkH + r && Math.abs(u) < Math.max(trunkW * (1.2 - (0.4 * v) / trunkH), 0.5 * mpp)) {
          setPx(bark, 0.8 + 0.3 * valueNoise(u * 20, v * 3, salt));
          return CLASS.vegetation;
        }
        return -1;
      }),
  });
}

function addBush(rng: Rng, scene: Scene, x: number, z: number): void {
  const rx = rng.range(0.6, 1.6);
  const ry = rng.range(0.4, 1.0);
  const c = jitter(rng, rng.pick(FOLIAGE), 0.1);
  const salt = rng.int(0, 1 << 30);
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, -rx * 1.2, rx * 1.2, 0, ry * 2.2, (u, v) => {
        const e = sq(u / rx) + sq((v - ry * 0.9) / ry);
        if (e > 0.8 + 0.4 * valueNoise(u * 2, v * 2, salt)) return -1;
        return foliage(c, u, v, salt);
      }),
  });
}

/** Buildings (and some trees and a wall) across the far end of the street, and a hazy skyline. */
function layoutBackdrop(rng: Rng, scene: Scene): void {
  const z = scene.zEnd;
  // Wide enough for any camera in the layout's ranges: |X| / z <= (1 - vxRel) / fRel < 0.71.
  const span = z * 0.75 + 10;
  let x = -span;
  while (x < span) {
    const w = rng.range(6, 22);
    const x0 = x;
    if (rng.chance(0.18)) {
      addTree(rng, scene, x0 + w / 2, z - 1);
    } else {
      const b = makeBuilding(rng, 0, w);
      b.height = rng.range(8, 30);
      scene.items.push({ z, draw: (cv, cam) => drawBillboard(cv, cam, z, x0, 0, w, 0, b.height, (u, v) => facade(b, u, v, 0.95)) });
    }
    x += w;
  }
  // Sometimes a wall across the end of the street, in front of the backdrop.
  if (rng.chance(0.35)) addEdgeFront(rng, scene, z - 2, -span, span);
  if (rng.chance(0.5)) {
    const zs = z * 1.8;
    const c = jitter(rng, mixRGB(scene.look.skyHorizon, [120, 124, 130], 0.5), 0.05);
    const salt = rng.int(0, 1 << 30);
    scene.items.push({
      z: zs,
      draw: (cv, cam) =>
        drawBillboard(cv, cam, zs, 0, -zs, zs, 0, 70, (u, v) => {
          const block = Math.floor(u / 14);
          const h = 20 + 45 * hash3(block, 0, salt);
          if (v > h) return -1;
          setPx(c, 0.9 + 0.1 * hash3(block, 1, salt));
          return CLASS.building;
        }),
    });
  }
}

/** A wall facing the camera at depth z (across the far end of the street). */
function addEdgeFront(rng: Rng, scene: Scene, z: number, x0: number, x1: number): void {
  const h = rng.range(1.5, 3);
  const c = jitter(rng, rng.pick(CONCRETE), 0.07);
  const salt = rng.int(0, 1 << 30);
  scene.items.push({ z, draw: (cv, cam) => drawBillboard(cv, cam, z, 0, x0, x1, 0, h, (u, v) => wallShade(c, u, v, h, 0.5, salt, 0.95)) });
}

// ---------------------------------------------------------------------------------------------
// Vehicles

type VehicleKind = 'car' | 'van' | 'truck' | 'bus' | 'tram' | 'motorcycle' | 'bicycle';

function vehicleLength(rng: Rng, kind: VehicleKind): number {
  switch (kind) {
    case 'car':
      return rng.range(3.9, 4.9);
    case 'van':
      return rng.range(4.8, 5.6);
    case 'truck':
      return rng.range(7, 10);
    case 'bus':
      return rng.range(11, 13);
    case 'tram':
      return rng.range(24, 34);
    default:
      return 2;
  }
}

/** What a box vehicle looks like: one shader for its end (rear or front) and one for its side. */
interface Body {
  w: number;
  h: number;
  l: number;
  /** u across, v up; `front` says whether this end is the front. */
  end: (u: number, v: number, mpp: number, front: boolean) => number;
  /** s from the vehicle's front, v up. */
  side: (s: number, v: number, mpp: number) => number;
  /** Height drawn above h (pantograph, roof boxes). */
  extra: number;
}

/**
 * Places a vehicle at lateral position x whose nearest end is at depth z0. facing +1: driving
 * away (rear visible); -1: oncoming (front visible). Two-wheelers are drawn with their rider.
 */
function addVehicle(rng: Rng, scene: Scene, kind: VehicleKind, x: number, z0: number, facing: 1 | -1, len: number): void {
  if (kind === 'motorcycle' || kind === 'bicycle') {
    addTwoWheeler(rng, scene, kind, x, z0 + 1, true, facing);
    return;
  }
  const body = makeBody(rng, kind, len);
  scene.shadows.push({ x0: x - body.w / 2 - 0.15, x1: x + body.w / 2 + 0.15, z0: z0 - 0.25, z1: z0 + len * 0.95 });
  scene.items.push({
    z: z0,
    draw: (cv, cam) => {
      const xl = x - body.w / 2;
      const xr = x + body.w / 2;
      // Only the long side facing the camera can be seen.
      const xs = cam.camX < xl ? xl : cam.camX > xr ? xr : NaN;
      if (!Number.isNaN(xs)) {
        const light = facadeLight(scene.look, cam.camX < xl ? -1 : 1) * 0.95;
        drawSidePlane(cv, cam, xs, z0, z0 + body.l, 0, body.h + body.extra, (d, v, mpp) => {
          const label = body.side(facing > 0 ? body.l - d : d, v, mpp);
          if (label >= 0) {
            PX.r *= light;
            PX.g *= light;
            PX.b *= light;
          }
          return label;
        });
      }
      drawBillboard(cv, cam, z0, x, -body.w / 2, body.w / 2, 0, body.h + body.extra, (u, v, mpp) => body.end(u, v, mpp, facing < 0));
    },
  });
}

const TYRE: RGB = [26, 26, 28];
const RIM: RGB = [140, 142, 146];
const DARK: RGB = [36, 36, 40];
const RED_LIGHT: RGB = [205, 30, 28];
const HEAD_LIGHT: RGB = [236, 234, 214];
const PLATE: RGB = [225, 225, 215];
const ROOF: RGB = [170, 172, 175];
const RAIL: RGB = [150, 150, 152];
const DISPLAY_ON: RGB = [245, 160, 40];
const DISPLAY_OFF: RGB = [20, 20, 20];

/** Glass: dark, reflecting a little sky toward the top. */
function glass(v: number, v0: number, v1: number, tint: RGB = [48, 58, 70]): void {
  setPx(tint, 0.75 + 0.6 * Math.max(0, Math.min(1, (v - v0) / (v1 - v0))));
}

function wheelShade(s: number, v: number, sc: number, r: number): boolean {
  const d2 = sq(s - sc) + sq(v - r);
  if (d2 > r * r) return false;
  setPx(d2 < sq(r * 0.58) ? RIM : TYRE);
  return true;
}

function makeBody(rng: Rng, kind: Exclude<VehicleKind, 'motorcycle' | 'bicycle'>, l: number): Body {
  if (kind === 'car' || kind === 'van') return makeCar(rng, kind, l);
  if (kind === 'truck') return makeTruck(rng, l);
  if (kind === 'bus') return makeBus(rng, l);
  return makeTram(rng, l);
}

function makeCar(rng: Rng, kind: 'car' | 'van', l: number): Body {
  const van = kind === 'van';
  const w = van ? rng.range(1.9, 2.05) : rng.range(1.65, 1.9);
  const h = van ? rng.range(1.9, 2.3) : rng.range(1.38, 1.6);
  const belt = van ? 1.05 : rng.range(0.85, 0.95);
  const paint = jitter(rng, rng.pick(CAR_PAINT), 0.05);
  const hood = van ? 0.12 * l : rng.range(0.22, 0.3) * l;
  const trunk = van ? 0.02 * l : rng.range(0.1, 0.2) * l;
  const r = 0.31;
  const cabinTaper = van ? 0.08 : 0.22;
  const bodyShade = (v: number) => 0.78 + (0.3 * v) / h;
  return {
    w, h, l, extra: 0,
    end: (u, v, _mpp, front) => {
      const au = Math.abs(u);
      if (v < 0.36) {
        if (au > w / 2 - 0.28) {
          setPx(TYRE);
          return CLASS.car;
        }
        if (v < 0.17) return -1; // road visible under the car
        setPx(DARK, 1.3);
        return CLASS.car;
      }
      if (v < belt) {
        if (v > belt - 0.32 && v < belt - 0.12 && au > w / 2 - 0.4 && au < w / 2 - 0.05) setPx(front ? HEAD_LIGHT : RED_LIGHT);
        else if (au < 0.26 && v > 0.42 && v < 0.55) setPx(PLATE);
        else if (front && au < 0.45 && v > 0.5 && v < belt - 0.15) setPx(DARK);
        else setPx(paint, bodyShade(v));
        return CLASS.car;
      }
      const t = (v - belt) / (h - belt);
      const half = w / 2 - 0.08 - cabinTaper * t;
      if (au > half) return -1;
      if (au < half - 0.1 && t > 0.1 && t < 0.86) glass(v, belt, h);
      else setPx(paint, bodyShade(v));
      return CLASS.car;
    },
    side: (s, v) => {
      if (wheelShade(s, v, 0.85, r) || wheelShade(s, v, l - 0.9, r)) return CLASS.car;
      if (v < 0.2) return -1;
      if (v < belt) {
        if ((sq(s - 0.85) + sq(v - r) < sq(r + 0.08)) || (sq(s - l + 0.9) + sq(v - r) < sq(r + 0.08))) setPx(DARK);
        else setPx(paint, bodyShade(v) * (v < 0.32 ? 0.75 : 1));
        return CLASS.car;
      }
      const t = (v - belt) / (h - belt);
      const sFront = hood + t * (van ? 0.3 : 0.9);
      const sRear = l - trunk - t * (van ? 0.05 : 0.5);
      if (s < sFront || s > sRear) return -1;
      const mid = (sFront + sRear) / 2;
      if (t > 0.12 && t < 0.85 && s > sFront + 0.08 && s < sRear - 0.08 && Math.abs(s - mid) > 0.06) glass(v, belt, h);
      else setPx(paint, bodyShade(v));
      return CLASS.car;
    },
  };
}

function makeTruck(rng: Rng, l: number): Body {
  const w = 2.45;
  const h = rng.range(3.3, 3.9);
  const box = jitter(rng, rng.pick(TRUCK_BOX), 0.04);
  const cab = jitter(rng, rng.pick(CAR_PAINT), 0.05);
  const stripe = rng.chance(0.5) ? jitter(rng, rng.pick(BUS_PAINT), 0.05) : null;
  const cabL = 2.2;
  const cabH = Math.min(2.9, h - 0.3);
  return {
    w, h, l, extra: 0,
    end: (u, v, _mpp, front) => {
      const au = Math.abs(u);
      if (front) {
        if (v < 1.0 && au > w / 2 - 0.35) {
          setPx(TYRE);
          return CLASS.truck;
        }
        if (v < 0.45) return -1;
        if (v > cabH) {
          setPx(box, 0.95);
          return CLASS.truck;
        }
        if (v > 1.8 && v < cabH - 0.15 && au < w / 2 - 0.12) glass(v, 1.8, cabH);
        else if (v > 0.7 && v < 1.35 && au < 0.7) setPx(DARK, 1 + 0.4 * (frac(v / 0.1) < 0.5 ? 1 : 0));
        else if (v > 0.75 && v < 0.95 && au > w / 2 - 0.4) setPx(HEAD_LIGHT);
        else setPx(cab, 0.8 + 0.2 * (v / cabH));
        return CLASS.truck;
      }
      if (v < 1.0) {
        if (au > w / 2 - 0.55) {
          setPx(TYRE);
          return CLASS.truck;
        }
        if (v < 0.45) return -1;
        setPx(v > 0.55 && v < 0.7 && au > w / 2 - 0.9 ? RED_LIGHT : DARK);
        return CLASS.truck;
      }
      // Cargo doors: a centre split, lock bars, ribs.
      if (au < 0.025 || Math.abs(au - 0.35) < 0.03 || Math.abs(au - (w / 2 - 0.25)) < 0.03) setPx(box, 0.6);
      else setPx(box, 0.86 + 0.1 * (v / h) - (frac(v / 0.5) < 0.06 ? 0.08 : 0));
      return CLASS.truck;
    },
    side: (s, v) => {
      if (wheelShade(s, v, 1.3, 0.5) || wheelShade(s, v, l - 1.7, 0.5) || wheelShade(s, v, l - 0.65, 0.5)) return CLASS.truck;
      if (v < 0.45) return -1;
      if (s < cabL) {
        if (v > cabH) return -1;
        if (v > 1.75 && v < cabH - 0.15 && s > 0.25 && s < 1.7) glass(v, 1.75, cabH);
        else setPx(cab, 0.8 + 0.2 * (v / cabH));
        return CLASS.truck;
      }
      if (s < cabL + 0.15) {
        // The gap between cab and box: only the chassis rail shows.
        if (v < 0.6 || v > 1.0) return -1;
        setPx(DARK);
        return CLASS.truck;
      }
      if (v < 1.0) {
        setPx(DARK, 1.1);
        return CLASS.truck;
      }
      if (stripe && v > 1.9 && v < 2.35) setPx(stripe);
      else setPx(box, 0.88 + 0.1 * (v / h) - (frac(s / 0.6) < 0.05 ? 0.07 : 0));
      return CLASS.truck;
    },
  };
}

function makeBus(rng: Rng, l: number): Body {
  const w = 2.55;
  const h = rng.range(3.0, 3.3);
  const paint = jitter(rng, rng.pick(BUS_PAINT), 0.04);
  const accent = jitter(rng, rng.pick(BUS_PAINT), 0.04);
  const doors = [0.4, l / 2 - 0.65];
  return {
    w, h, l, extra: 0,
    end: (u, v, _mpp, front) => {
      const au = Math.abs(u);
      if (v < 1.0 && au > w / 2 - 0.45 && v < 0.95) {
        setPx(TYRE);
        return CLASS.bus;
      }
      if (v < 0.3) return -1;
      if (front) {
        if (v > 2.8 && v < 3.0 && au < 0.95) setPx(frac(u * 3) < 0.5 ? DISPLAY_ON : DISPLAY_OFF);
        else if (v > 1.0 && v < 2.75 && au < w / 2 - 0.1) glass(v, 1.0, 2.75);
        else if (v > 0.5 && v < 0.7 && au > w / 2 - 0.45) setPx(HEAD_LIGHT);
        else setPx(v < 0.45 ? DARK : paint);
        return CLASS.bus;
      }
      if (v > 1.9 && v < 2.75 && au < w / 2 - 0.2) glass(v, 1.9, 2.75);
      else if (v > 0.5 && v < 1.05 && au < 0.85) setPx(paint, frac(v / 0.08) < 0.5 ? 0.5 : 0.8);
      else if (v > 0.6 && v < 1.3 && au > w / 2 - 0.25) setPx(RED_LIGHT);
      else setPx(v > 1.3 && v < 1.45 ? accent : paint);
      return CLASS.bus;
    },
    side: (s, v) => {
      if (wheelShade(s, v, 2.6, 0.5) || wheelShade(s, v, l - 3, 0.5)) return CLASS.bus;
      if (v < 0.3 || v > h) return -1;
      if (v > h - 0.15) {
        setPx(ROOF);
        return CLASS.bus;
      }
      for (const d0 of doors) {
        if (s > d0 && s < d0 + 1.2 && v > 0.35 && v < 2.7) {
          if (Math.abs(s - d0 - 0.6) < 0.04) setPx(DARK);
          else glass(v, 0.35, 2.7);
          return CLASS.bus;
        }
      }
      if (v > 1.2 && v < 2.6) {
        if (frac(s / 1.35) < 0.09) setPx(DARK, 1.2);
        else glass(v, 1.2, 2.6);
        return CLASS.bus;
      }
      setPx(v > 0.85 && v < 1.05 ? accent : paint, 0.85 + 0.1 * (v / h));
      return CLASS.bus;
    },
  };
}

function makeTram(rng: Rng, l: number): Body {
  const w = 2.6;
  const h = 3.4;
  const paint = jitter(rng, rng.pick(TRAM_PAINT), 0.03);
  const band = jitter(rng, rng.pick([[200, 30, 30], [30, 80, 160], [40, 130, 70], [60, 60, 64]] as const), 0.05);
  const segment = rng.range(7.5, 10);
  const pantoS = l * rng.range(0.25, 0.45);
  return {
    w, h, l, extra: 1.7,
    end: (u, v, mpp, front) => {
      const au = Math.abs(u);
      if (v > h) {
        // Pantograph seen end-on: a bar with a thin frame below it.
        const t = Math.max(0.03, 0.5 * mpp);
        if ((Math.abs(v - (h + 1.55)) < t && au < 0.9) || (v < h + 1.55 && Math.abs(au - 0.45 * (1 - (v - h) / 1.55) - 0.1) < t)) {
          setPx(DARK);
          return CLASS.train;
        }
        if (v < h + 0.3 && au < 0.8) {
          setPx(ROOF);
          return CLASS.train;
        }
        return -1;
      }
      if (v < 0.3) return -1;
      if (v > 2.95 && v < 3.2 && au < 0.8) setPx(frac(u * 3) < 0.5 ? DISPLAY_ON : DISPLAY_OFF);
      else if (v > 1.25 && v < 2.9 && au < w / 2 - 0.15) glass(v, 1.25, 2.9);
      else if (v > 0.6 && v < 0.8 && au > w / 2 - 0.5) setPx(front ? HEAD_LIGHT : RED_LIGHT);
      else setPx(v < 0.9 ? band : paint, 0.85 + 0.1 * (v / h));
      return CLASS.train;
    },
    side: (s, v, mpp) => {
      if (v > h) {
        const t = Math.max(0.03, 0.5 * mpp);
        const ds = s - pantoS;
        // Pantograph from the side: a diamond of two arms under the contact bar.
        if (Math.abs(ds) < 0.8 && Math.abs(v - (h + 0.8 + 0.7 * (1 - Math.abs(ds) / 0.8))) < t) {
          setPx(DARK);
          return CLASS.train;
        }
        if (Math.abs(ds) < 1.1 && Math.abs(v - (h + 1.55)) < t) {
          setPx(DARK);
          return CLASS.train;
        }
        if (v < h + 0.3 && frac(s / segment) > 0.2 && frac(s / segment) < 0.6) {
          setPx(ROOF);
          return CLASS.train;
        }
        return -1;
      }
      if (v < 0.3) return -1;
      const seg = frac(s / segment) * segment;
      if (seg < 0.35 && s > 1) {
        setPx(DARK, 0.9);
        return CLASS.train;
      }
      if (seg > segment * 0.45 && seg < segment * 0.45 + 1.3 && v > 0.4 && v < 2.7) glass(v, 0.4, 2.7);
      else if (v > 1.25 && v < 2.6) {
        if (frac(s / 1.6) < 0.08) setPx(paint, 0.8);
        else glass(v, 1.25, 2.6);
      } else setPx(v < 0.9 ? band : paint, 0.85 + 0.1 * (v / h));
      return CLASS.train;
    },
  };
}

/** Bicycle frame tubes as segments (x0, y0, x1, y1), side view facing +u, metres. */
const BIKE_FRAME = (() => {
  const [R, B, S, H, F, Hb] = [[-0.52, 0.34], [-0.05, 0.3], [-0.2, 0.9], [0.36, 0.95], [0.52, 0.34], [0.33, 1.07]] as const;
  const segs = [[R, B], [R, S], [S, B], [S, H], [B, H], [H, F], [H, Hb]];
  return new Float64Array(segs.flatMap(([a, b]) => [a[0], a[1], b[0], b[1]]));
})();

/**
 * A bicycle or motorcycle with its rider (or parked, without one). sideOn: seen from the side
 * (crossing, or parked across the sidewalk); otherwise from behind or in front (riding along).
 */
function addTwoWheeler(rng: Rng, scene: Scene, kind: 'motorcycle' | 'bicycle', x: number, z: number, ridden: boolean, facing: 1 | -1, sideOn = false): void {
  const moto = kind === 'motorcycle';
  const label = moto ? CLASS.motorcycle : CLASS.bicycle;
  const frame = jitter(rng, moto ? rng.pick(CAR_PAINT) : rng.pick(CLOTH), 0.06);
  const jacket = jitter(rng, moto ? rng.pick([[30, 30, 34], [60, 60, 66], [120, 30, 30], [40, 50, 80]] as const) : rng.pick(CLOTH), 0.06);
  const trousers = jitter(rng, rng.pick(TROUSERS), 0.06);
  const helmet = jitter(rng, rng.pick(moto ? CAR_PAINT : HAIR), 0.06);
  const skin = rng.pick(SKIN);
  const dir = rng.sign();
  const s = rng.range(0.92, 1.08);
  if (moto) scene.shadows.push({ x0: x - 0.4, x1: x + 0.4, z0: z - 0.4, z1: z + 1.6 });
  const wheelR = moto ? 0.31 : 0.34;
  const hub = moto ? 0.7 : 0.52;
  // Rider pose: hip, shoulder, head, hand, knee, foot (side view, facing +u).
  const pose = moto
    ? { hip: [-0.25, 0.95], sh: [0.0, 1.5], head: [0.1, 1.7], hand: [0.5, 1.08], knee: [0.25, 0.75], foot: [0.1, 0.38] }
    : { hip: [-0.22, 1.0], sh: [0.08, 1.5], head: [0.18, 1.68], hand: [0.36, 1.06], knee: [0.15, 0.68], foot: [0.02, 0.2] };
  const headR = moto ? 0.15 : 0.11;
  const riderSide = (u: number, v: number, mpp: number): number => {
    const m = 0.5 * mpp; // limbs stay at least a pixel wide
    const [hx, hy] = pose.head;
    if (sq(u - hx * s) + sq(v - hy * s) < sq(headR * s)) {
      setPx(moto || v > hy * s ? helmet : skin);
      return CLASS.rider;
    }
    if (segDist(u, v, pose.hip[0]! * s, pose.hip[1]! * s, pose.sh[0]! * s, pose.sh[1]! * s) < Math.max(0.15 * s, m)) {
      setPx(jacket, 0.8 + 0.3 * ((v / s - 1) / 0.5));
      return CLASS.rider;
    }
    if (segDist(u, v, pose.sh[0]! * s, pose.sh[1]! * s, pose.hand[0]! * s, pose.hand[1]! * s) < Math.max(0.05 * s, m)) {
      setPx(jacket, 0.75);
      return CLASS.rider;
    }
    if (
      segDist(u, v, pose.hip[0]! * s, pose.hip[1]! * s, pose.knee[0]! * s, pose.knee[1]! * s) < Math.max(0.08 * s, m) ||
      segDist(u, v, pose.knee[0]! * s, pose.knee[1]! * s, pose.foot[0]! * s, pose.foot[1]! * s) < Math.max(0.06 * s, m)
    ) {
      setPx(trousers);
      return CLASS.rider;
    }
    return -1;
  };
  const bikeSide = (u: number, v: number, mpp: number): number => {
    const t = Math.max(moto ? 0.05 : 0.028, 0.55 * mpp);
    for (let c = -hub; c <= hub; c += 2 * hub) {
      const d = Math.sqrt(sq(u - c) + sq(v - wheelR));
      if (moto ? d < wheelR : Math.abs(d - wheelR + 0.02) < t * 1.3) {
        setPx(moto && d < wheelR * 0.55 ? RIM : TYRE);
        return label;
      }
      if (!moto && d < wheelR) {
        // Eight spokes along 0, 45, 90 and 135 degrees: plain arithmetic, no trigonometry.
        const dx = Math.abs(u - c);
        const dy = Math.abs(v - wheelR);
        const ts = Math.max(0.012, 0.3 * mpp);
        if (dx < ts || dy < ts || Math.abs(dx - dy) < ts * 1.41) {
          setPx(RIM, 0.9);
          return label;
        }
        // Between the spokes: a faint veil over what is behind, labelled bicycle as Cityscapes'
        // polygons do. It keeps the class a solid shape a small network can learn.
        setPx(DARK);
        PX.a = 0.3;
        return label;
      }
    }
    if (moto) {
      if (sq(u - 0.12) / 0.1 + sq(v - 0.85) / 0.016 < 1) setPx(frame);
      else if (u > -0.6 && u < 0 && v > 0.78 && v < 0.9) setPx(DARK);
      else if (u > -0.2 && u < 0.3 && v > 0.3 && v < 0.7) setPx(RIM, 0.85);
      else if (segDist(u, v, hub, wheelR, 0.5, 1.05) < t) setPx(RIM, 0.7);
      else if (segDist(u, v, -0.1, 0.35, -0.75, 0.45) < t * 0.8) setPx(RIM, 1.2);
      else if (u > -hub - 0.1 && u < -0.55 && v > 0.55 && v < 0.75) setPx(frame, 0.8);
      else return -1;
      return label;
    }
    for (let i = 0; i < BIKE_FRAME.length; i += 4) {
      if (segDist(u, v, BIKE_FRAME[i]!, BIKE_FRAME[i + 1]!, BIKE_FRAME[i + 2]!, BIKE_FRAME[i + 3]!) < t) {
        setPx(frame);
        return label;
      }
    }
    if (Math.abs(v - 0.95) < 0.03 + t * 0.5 && u > -0.32 && u < -0.1) {
      setPx(DARK);
      return label;
    }
    return -1;
  };
  // From behind or in front: a narrow wheel, the rider's back, shoulders and helmet.
  const riderEnd = (u: number, v: number, mpp: number): number => {
    const au = Math.abs(u);
    const m = 0.5 * mpp;
    if ((u * u) / sq(headR * s) + sq(v - 1.66 * s) / sq(headR * s * 1.1) < 1) {
      setPx(helmet);
      return CLASS.rider;
    }
    if (v > 0.95 * s && v < 1.55 * s && au < Math.max(0.22 * s - (0.05 * (1.55 * s - v)) / s, m)) {
      setPx(jacket, 0.8 + 0.3 * ((v / s - 0.95) / 0.6));
      return CLASS.rider;
    }
    if (v > 0.35 * s && v < 1.0 * s && au > 0.07 && au < Math.max(0.2 * s, 0.07 + m)) {
      setPx(trousers);
      return CLASS.rider;
    }
    return -1;
  };
  const bikeEnd = (u: number, v: number, mpp: number): number => {
    const au = Math.abs(u);
    const t = Math.max(moto ? 0.07 : 0.025, 0.5 * mpp);
    if (v < 2 * wheelR && au < t) {
      setPx(TYRE);
      return label;
    }
    if (Math.abs(v - 1.05) < Math.max(0.025, 0.5 * mpp) && au < (moto ? 0.4 : 0.3)) {
      setPx(DARK);
      return label;
    }
    if (moto && v > 0.45 && v < 0.95 && au < 0.22) {
      setPx(v > 0.8 && v < 0.88 && au < 0.08 ? (facing > 0 ? RED_LIGHT : HEAD_LIGHT) : frame, 0.9);
      return label;
    }
    if (!moto && v > 0.85 && v < 0.95 && au < 0.08) {
      setPx(DARK);
      return label;
    }
    return -1;
  };
  scene.items.push({
    z,
    draw: (cv, cam) => {
      if (sideOn) {
        drawBillboard(cv, cam, z, x, -1.2, 1.2, 0, 2, (u, v, mpp) => {
          const uu = u * dir;
          if (ridden) {
            const r = riderSide(uu, v, mpp);
            if (r >= 0) return r;
          }
          return bikeSide(uu, v, mpp);
        });
      } else {
        drawBillboard(cv, cam, z, x, -0.5, 0.5, 0, 2, (u, v, mpp) => {
          if (ridden) {
            const r = riderEnd(u, v, mpp);
            if (r >= 0) return r;
          }
          return bikeEnd(u, v, mpp);
        });
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// People, poles, signs, lights, sidewalk trees

function addPerson(rng: Rng, scene: Scene, x: number, z: number, crossing: boolean): void {
  const h = rng.range(1.55, 1.95);
  const s = h / 1.75;
  const shirt = jitter(rng, rng.pick(CLOTH), 0.08);
  const trousers = jitter(rng, rng.chance(0.2) ? rng.pick(CLOTH) : rng.pick(TROUSERS), 0.08);
  const skin = rng.pick(SKIN);
  const hair = rng.pick(HAIR);
  const stride = crossing ? rng.range(0.1, 0.3) : rng.range(0, 0.06);
  const coat = rng.chance(0.3) ? 0.5 : 0.86; // long coats reach the knees
  const bag = rng.chance(0.25) ? rng.sign() : 0;
  const bagC = jitter(rng, rng.pick([[60, 40, 30], [30, 30, 30], [150, 40, 40]] as const), 0.1);
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, -0.5 * s, 0.5 * s, 0, h, (u, v, mpp) => {
        const au = Math.abs(u);
        const m = 0.5 * mpp;
        const headC = h - 0.12 * s;
        const headR = 0.11 * s;
        if (u * u + sq((v - headC) * 0.9) < headR * headR) {
          setPx(v > headC + 0.02 * s ? hair : skin);
          return CLASS.person;
        }
        if (au < Math.max(0.05 * s, m) && v > h - 0.27 * s && v <= headC) {
          setPx(skin, 0.9);
          return CLASS.person;
        }
        const shoulder = h - 0.26 * s;
        if (v > coat * s && v < shoulder + 0.03 * s) {
          const t = (v - 0.86 * s) / (shoulder - 0.86 * s);
          const half = 0.15 * s + 0.06 * s * Math.max(0, t);
          if (au < Math.max(half, m)) {
            setPx(shirt, 0.82 + 0.25 * (1 - au / half) * 0.5 + 0.1 * Math.max(0, t));
            return CLASS.person;
          }
        }
        // Arms hang beside the torso, the hands in skin colour.
        if (au > 0.2 * s && au < 0.27 * s && v > 0.8 * s && v < shoulder) {
          setPx(v < 0.9 * s ? skin : shirt, 0.8);
          return CLASS.person;
        }
        if (bag && u * bag > 0.27 * s && u * bag < 0.42 * s && v > 0.7 * s && v < 1.0 * s) {
          setPx(bagC);
          return CLASS.person;
        }
        if (v <= 0.9 * s) {
          const spread = stride * (0.9 * s - v);
          const lw = Math.max(0.065 * s, m);
          if (Math.abs(u - 0.075 * s - spread) < lw || Math.abs(u + 0.075 * s + spread) < lw) {
            setPx(v < 0.06 * s ? DARK : trousers, 0.9);
            return CLASS.person;
          }
        }
        return -1;
      }),
  });
}

function addPole(rng: Rng, scene: Scene, x: number, z: number, towardRoad: number): void {
  const h = rng.range(6.5, 9.5);
  const w = rng.range(0.08, 0.13);
  const c = jitter(rng, rng.pick(METAL), 0.06);
  const arm = rng.range(1.2, 2.4);
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, -arm - 0.5, arm + 0.5, 0, h + 0.5, (u, v, mpp) => {
        const t = Math.max(w * (1.25 - (0.4 * v) / h), 0.55 * mpp);
        if (Math.abs(u) < t && v < h) {
          setPx(c, 0.85 + 0.25 * (u / t + 1) * 0.5);
          return CLASS.pole;
        }
        const ua = u * towardRoad;
        // Lamp arm and head: street lights are pole in Cityscapes.
        if (ua > 0 && ua < arm && Math.abs(v - h - 0.1 * (ua / arm)) < Math.max(0.05, 0.5 * mpp)) {
          setPx(c);
          return CLASS.pole;
        }
        if (ua > arm - 0.5 && ua < arm + 0.15 && v > h && v < h + 0.22) {
          setPx(v < h + 0.06 ? HEAD_LIGHT : c);
          return CLASS.pole;
        }
        return -1;
      }),
  });
}

function addSign(rng: Rng, scene: Scene, x: number, z: number): void {
  const h = rng.range(2.2, 3.1);
  const pw = Math.max(0.035, rng.range(0.03, 0.05));
  const c = jitter(rng, [150, 152, 156], 0.06);
  const plates: { v: number; shape: number; size: number }[] = [{ v: h - 0.35, shape: rng.int(0, 6), size: rng.range(0.55, 0.85) }];
  if (rng.chance(0.35)) plates.push({ v: h - 0.35 - 0.75, shape: rng.int(0, 6), size: rng.range(0.45, 0.65) });
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, -0.7, 0.7, 0, h + 0.2, (u, v, mpp) => {
        for (const p of plates) {
          const r = signPlate(p.shape, u, v - p.v, p.size / 2);
          if (r) return CLASS.trafficSign;
        }
        if (Math.abs(u) < Math.max(pw, 0.55 * mpp) && v < h) {
          setPx(c);
          return CLASS.pole;
        }
        return -1;
      }),
  });
}

const SIGN_RED: RGB = [200, 30, 36];
const SIGN_BLUE: RGB = [30, 70, 170];
const SIGN_WHITE: RGB = [238, 238, 234];
const SIGN_GREEN: RGB = [24, 110, 60];

/** One of seven plate designs centred at (0, 0) with half-size r; sets PX and returns true if hit. */
function signPlate(shape: number, u: number, v: number, r: number): boolean {
  const au = Math.abs(u);
  const d = Math.sqrt(u * u + v * v);
  switch (shape) {
    case 0: // prohibition: red ring, white disc, black bar
      if (d > r) return false;
      setPx(d > r * 0.78 ? SIGN_RED : Math.abs(v) < r * 0.12 && au < r * 0.55 ? DARK : SIGN_WHITE);
      return true;
    case 1: // mandatory: blue disc, white arrow
      if (d > r) return false;
      setPx((au < r * 0.12 && v < r * 0.35 && v > -r * 0.6) || (v > r * 0.1 && v < r * 0.6 && au < (r * 0.6 - v) * 0.9) ? SIGN_WHITE : SIGN_BLUE);
      return true;
    case 2: // warning: triangle point up, red border
    case 3: {
      // yield: point down
      const vv = shape === 2 ? v : -v;
      const edge = (r - vv) * 0.62; // half width at height vv
      if (vv < -r * 0.85 || vv > r || au > edge) return false;
      setPx(vv < -r * 0.65 || au > edge - r * 0.22 ? SIGN_RED : SIGN_WHITE);
      return true;
    }
    case 4: // stop: octagon
      if (au > r || Math.abs(v) > r || au + Math.abs(v) > r * 1.42) return false;
      setPx(Math.abs(v) < r * 0.13 && au < r * 0.7 ? SIGN_WHITE : SIGN_RED);
      return true;
    case 5: // information: blue square with white letter
      if (au > r * 0.9 || Math.abs(v) > r * 0.9) return false;
      setPx(au < r * 0.45 && Math.abs(v) < r * 0.55 && (u < -r * 0.2 || v > r * 0.3 || (Math.abs(v) < r * 0.1 && u < r * 0.3)) ? SIGN_WHITE : SIGN_BLUE);
      return true;
    default: // direction board: wide, white edge
      if (au > r * 1.6 || Math.abs(v) > r * 0.5) return false;
      setPx(au > r * 1.5 || Math.abs(v) > r * 0.4 ? SIGN_WHITE : SIGN_GREEN);
      return true;
  }
}

const LAMPS: readonly RGB[] = [[240, 40, 30], [250, 190, 40], [60, 230, 120]];

function addTrafficLight(rng: Rng, scene: Scene, x: number, z: number, towardRoad: number): void {
  const overhang = rng.chance(0.35);
  const h = overhang ? rng.range(5, 6) : rng.range(2.6, 3.6);
  const arm = overhang ? rng.range(2.5, 5) : 0;
  const pw = rng.range(0.06, 0.09);
  const housing = jitter(rng, rng.chance(0.7) ? [34, 36, 38] : [200, 170, 40], 0.06);
  const pc = jitter(rng, rng.pick(METAL), 0.06);
  const lit = rng.int(0, 2);
  const hx = towardRoad * arm; // housing centre
  const top = overhang ? h - 0.1 : h + 1.0;
  scene.items.push({
    z,
    draw: (cv, cam) =>
      drawBillboard(cv, cam, z, x, Math.min(0, hx) - 0.4, Math.max(0, hx) + 0.4, 0, top + 0.1, (u, v, mpp) => {
        // Housing: three lamps, one lit.
        const du = u - hx;
        const hb = top - 1.0;
        if (Math.abs(du) < 0.18 && v > hb && v < top) {
          const k = Math.floor((top - v) / 0.333);
          const cy = top - 0.1665 - 0.333 * k;
          if (du * du + sq(v - cy) < 0.1 * 0.1) setPx(LAMPS[k]!, k === lit ? 1 : 0.25);
          else setPx(housing);
          return CLASS.trafficLight;
        }
        const t = Math.max(pw, 0.55 * mpp);
        if (Math.abs(u) < t && v < (overhang ? h : hb)) {
          setPx(pc);
          return CLASS.pole;
        }
        if (overhang && u * towardRoad > 0 && Math.abs(u) < Math.abs(hx) && Math.abs(v - h) < Math.max(0.06, 0.5 * mpp)) {
          setPx(pc);
          return CLASS.pole;
        }
        return -1;
      }),
  });
}

function layoutStreetFurniture(rng: Rng, scene: Scene): void {
  for (const side of [scene.left, scene.right]) {
    const s = side.s;
    const nearCurb = side.curb + side.verge + 0.45;
    // Street lights at regular spacing.
    const pitch = rng.range(18, 32);
    for (let z = rng.range(2, 14); z < scene.zEnd * 0.9; z += pitch) addPole(rng, scene, s * nearCurb, z, -s);
    // Signs.
    for (let i = rng.int(0, 3); i > 0; i--) addSign(rng, scene, s * (nearCurb + rng.range(0, 0.4)), rng.range(5, 45));
    // Trees in pits (or in the verge) at regular spacing.
    if (rng.chance(0.55)) {
      const inVerge = side.verge > 0;
      const x = s * (inVerge ? side.curb + side.verge / 2 : side.curb + side.verge + Math.min(1.4, side.sidewalk / 2));
      const pitchT = rng.range(7, 14);
      for (let z = rng.range(2, 10); z < scene.zEnd * 0.8; z += pitchT) {
        addTree(rng, scene, x, z);
        if (!inVerge) scene.pits.push({ x, z, r: rng.range(0.5, 0.8) });
      }
    }
    // Bushes in the verge.
    if (side.verge > 0) for (let i = rng.int(0, 3); i > 0; i--) addBush(rng, scene, s * (side.curb + side.verge / 2), rng.range(4, 40));
    // Railing along the curb on some streets.
    if (rng.chance(0.15)) {
      const z0 = rng.range(3, 20);
      addEdge(rng, scene, 'fence', s * (side.curb + side.verge + 0.15), z0, z0 + rng.range(8, 30));
    }
    // Parked bicycles across the sidewalk; parked motorcycles in the parking strip.
    if (rng.chance(0.45))
      for (let i = rng.int(1, 4), z = rng.range(5, 25); i > 0; i--, z += rng.range(0.6, 1.2))
        addTwoWheeler(rng, scene, 'bicycle', s * (side.back - rng.range(0.8, 1.3)), z, false, 1, true);
    if (side.curb > scene.laneHalf && rng.chance(0.35))
      for (let i = rng.int(1, 3), z = rng.range(4, 20); i > 0; i--, z += rng.range(0.9, 1.5))
        addTwoWheeler(rng, scene, 'motorcycle', s * (side.curb - 1.1), z, false, 1, true);
  }
  // Traffic lights: at the crosswalk, else at an intersection further up.
  if (scene.crosswalkZ > 0 || rng.chance(0.75)) {
    const z = scene.crosswalkZ > 0 ? scene.crosswalkZ - 0.8 : rng.range(12, 40);
    for (const side of [scene.left, scene.right])
      if (rng.chance(0.8)) addTrafficLight(rng, scene, side.s * (side.curb + side.verge + 0.5), z, -side.s);
    if (rng.chance(0.3)) addTrafficLight(rng, scene, scene.right.curb + scene.right.verge + 0.5, z + rng.range(15, 30), -1);
  }
  // Bollards at the crosswalk.
  if (scene.crosswalkZ > 0 && rng.chance(0.5)) {
    const z = scene.crosswalkZ;
    for (const side of [scene.left, scene.right])
      for (let i = 0; i < 3; i++) {
        const x = side.s * (side.curb + side.verge + 0.3);
        const zz = z + i * 1.5;
        const c = jitter(rng, rng.pick(METAL), 0.05);
        scene.items.push({
          z: zz,
          draw: (cv, cam) =>
            drawBillboard(cv, cam, zz, x, -0.1, 0.1, 0, 0.95, (u, v) => {
              setPx(v > 0.75 && v < 0.85 ? SIGN_WHITE : c);
              return Math.abs(u) < 0.07 ? CLASS.pole : -1;
            }),
        });
      }
  }
}

function layoutPeople(rng: Rng, scene: Scene): void {
  for (const side of [scene.left, scene.right]) {
    const inner = side.curb + side.verge + 0.7;
    const outer = side.back - 0.4;
    let n = rng.int(1, 7);
    while (n-- > 0) {
      const z = rng.range(4, 45);
      const group = rng.chance(0.3) ? rng.int(2, 3) : 1;
      for (let g = 0; g < group; g++) addPerson(rng, scene, side.s * rng.range(inner, Math.max(inner, outer)), z + g * rng.range(0.4, 1.2), false);
    }
  }
  if (scene.crosswalkZ > 0) {
    for (let n = rng.int(0, 4); n > 0; n--) {
      const x = rng.range(-scene.laneHalf, scene.laneHalf);
      const z = scene.crosswalkZ + rng.range(0.5, 3.5);
      if (rng.chance(0.2)) addTwoWheeler(rng, scene, 'bicycle', x, z, true, 1, true);
      else addPerson(rng, scene, x, z, true);
    }
  }
  // Cyclists along the right edge and a crossing rider somewhere up the street.
  if (rng.chance(0.45)) addTwoWheeler(rng, scene, 'bicycle', scene.laneHalf - 0.6, rng.range(6, 30), true, 1);
  if (rng.chance(0.3)) addTwoWheeler(rng, scene, rng.chance(0.5) ? 'motorcycle' : 'bicycle', rng.range(-scene.laneHalf, scene.laneHalf), rng.range(10, 35), true, 1, true);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render(cv: Canvas, cam: Camera, scene: Scene): void {
  drawSkyGradient(cv, cam, scene.look);
  drawGround(cv, cam, scene);
  // Far to near, so translucent fence pixels blend over what is behind them. Stable sort keeps
  // layout order for equal depths, so the result does not depend on the engine's sort.
  const items = scene.items.map((it, i) => ({ it, i })).sort((a, b) => b.it.z - a.it.z || a.i - b.i);
  for (const { it } of items) it.draw(cv, cam);
  drawClouds(cv, cam, scene.look);
}

/**
 * The sky's colour ramp behind everything (class sky, infinitely far). Rows below the horizon
 * are all covered by ground, so they are skipped.
 */
function drawSkyGradient(cv: Canvas, cam: Camera, look: Look): void {
  const { w } = cv;
  const rows = Math.min(cv.h, Math.max(0, Math.ceil(cam.hy)));
  for (let iy = 0; iy < rows; iy++) {
    const t = Math.min(1, Math.max(0, (iy + 0.5) / Math.max(1, cam.hy)));
    const base = mixRGB(look.skyTop, look.skyHorizon, Math.sqrt(t));
    for (let ix = 0; ix < w; ix++) {
      const k = (iy * w + ix) * 3;
      cv.rgb[k] = base[0];
      cv.rgb[k + 1] = base[1];
      cv.rgb[k + 2] = base[2];
      cv.labels[iy * w + ix] = CLASS.sky;
    }
  }
}

/**
 * Clouds, added last and only where the sky is still visible (depth still infinite): most sky
 * pixels end up behind buildings and trees, and noise is the costly part. Clouds live in the
 * sky's angular coordinates, so they do not depend on the output size.
 */
function drawClouds(cv: Canvas, cam: Camera, look: Look): void {
  if (look.cloudCover <= 0) return;
  const { w } = cv;
  const rows = Math.min(cv.h, Math.max(0, Math.ceil(cam.hy)));
  const salt = Math.floor(look.fogDist * 1000);
  const threshold = 1 - look.cloudCover;
  for (let iy = 0; iy < rows; iy++) {
    const ay = (cam.hy - iy - 0.5) / cam.f;
    for (let ix = 0; ix < w; ix++) {
      const i = iy * w + ix;
      if (cv.depth[i] !== Infinity) continue;
      const ax = (ix + 0.5 - cam.vx) / cam.f;
      const coarse = valueNoise(ax * 4, ay * 9, salt) * 0.7;
      if (coarse + 0.3 <= threshold) continue; // the fine octave cannot lift it into a cloud
      const n = coarse + valueNoise(ax * 12, ay * 24, salt + 1) * 0.3;
      const c = Math.max(0, Math.min(1, (n - threshold) * 3));
      const k = i * 3;
      cv.rgb[k] += (look.cloudColour[0] - cv.rgb[k]!) * c;
      cv.rgb[k + 1] += (look.cloudColour[1] - cv.rgb[k + 1]!) * c;
      cv.rgb[k + 2] += (look.cloudColour[2] - cv.rgb[k + 2]!) * c;
    }
  }
}

/** Height of the building standing at depth z on `side` (0 in a gap or on an open side). */
function buildingHeightAt(side: Side, z: number): number {
  for (const b of side.buildings) if (z >= b.z0 && z < b.z1) return b.height;
  return 0;
}

function drawGround(cv: Canvas, cam: Camera, sc: Scene): void {
  const { w, h } = cv;
  const look = sc.look;
  const sunSide = look.sunX > 0 ? sc.right : sc.left;
  const rowShadows = new Float64Array(sc.shadows.length * 2);
  for (let iy = Math.max(0, Math.floor(cam.hy)); iy < h; iy++) {
    const dy = iy + 0.5 - cam.hy;
    if (dy <= 0) continue;
    const z = (cam.f * cam.camH) / dy;
    const mpp = z / cam.f;
    const fog = cv.fogAt(z);
    // Buildings on the sun's side shade a band of the street next to them.
    const shadowEdge = look.sunny ? sunSide.back - buildingHeightAt(sunSide, z) * look.shadowRatio : Infinity;
    // Vehicle shadows crossing this row, as X intervals: checking all of them per pixel is slow.
    let nRow = 0;
    for (const s of sc.shadows)
      if (z > s.z0 && z < s.z1) {
        rowShadows[nRow++] = s.x0;
        rowShadows[nRow++] = s.x1;
      }
    for (let ix = 0; ix < w; ix++) {
      const X = cam.camX + (ix + 0.5 - cam.vx) * mpp;
      const label = groundAt(sc, X, z, mpp);
      let k = look.sunny ? 1.08 : 1;
      if (X * look.sunX > shadowEdge) k *= 0.62;
      for (let j = 0; j < nRow; j += 2) if (X > rowShadows[j]! && X < rowShadows[j + 1]!) k *= 0.5;
      PX.r *= k;
      PX.g *= k;
      PX.b *= k;
      PX.a = 1;
      cv.plot(iy * w + ix, label, z, fog);
    }
  }
}

/** Class and colour (into PX) of the ground at (X, z). */
function groundAt(sc: Scene, X: number, z: number, mpp: number): number {
  const side = X < 0 ? sc.left : sc.right;
  const ax = Math.abs(X);
  const grain = 0.93 + 0.14 * hash3(Math.floor(X * 10), Math.floor(z * 10), 7);
  if (ax < side.curb) {
    // Road: asphalt, lane paint, crosswalk, tram rails, patches and wheel tracks.
    const line = Math.max(0.07, 0.35 * mpp);
    let paint = false;
    const lx = (X + sc.laneHalf) / sc.laneW;
    const nearest = Math.round(lx);
    const off = Math.abs(lx - nearest) * sc.laneW;
    if (off < line && nearest >= 0 && nearest <= sc.lanes) {
      const edge = nearest === 0 || nearest === sc.lanes;
      const centre = sc.twoWay && nearest === sc.lanes / 2;
      paint = edge || centre || frac((z + sc.dashPhase) / 9) < 0.35;
    }
    if (sc.crosswalkZ > 0 && z > sc.crosswalkZ && z < sc.crosswalkZ + 4 && ax < sc.laneHalf && frac(X / 1.0) < 0.5) paint = true;
    if (paint) {
      setPx(sc.paint, 0.85 + 0.15 * grain);
      return CLASS.road;
    }
    if (!Number.isNaN(sc.tramX)) {
      const r = Math.abs(Math.abs(X - sc.tramX) - 0.72);
      if (r < Math.max(0.05, 0.3 * mpp)) {
        setPx(RAIL, grain);
        return CLASS.road;
      }
    }
    const track = Math.abs(frac(lx) - 0.5) * sc.laneW;
    const worn = Math.abs(track - 0.85) < 0.3 ? 0.92 : 1;
    const patch = 0.94 + 0.12 * valueNoise(X * 0.35, z * 0.12, 11);
    setPx(sc.asphalt, grain * worn * patch);
    return CLASS.road;
  }
  if (ax < side.curb + side.verge) {
    setPx(sc.grass, grain * (0.85 + 0.3 * valueNoise(X * 2, z * 0.8, 13)));
    return CLASS.terrain;
  }
  if (ax < side.back || !side.open) {
    // Sidewalk (and, behind a gap in the facades, a paved courtyard of the same stone).
    for (const p of sc.pits)
      if (Math.abs(X - p.x) < p.r && Math.abs(z - p.z) < p.r) {
        setPx(sc.grass, grain * 0.8);
        return CLASS.terrain;
      }
    const fromCurb = ax - side.curb - side.verge;
    if (fromCurb < 0.2 && side.verge === 0) {
      setPx(sc.curbStone, grain);
      return CLASS.sidewalk;
    }
    const tile = frac(X / sc.tileSize) < 0.06 || frac(z / sc.tileSize) < 0.06;
    setPx(sc.paving, grain * (tile ? 0.86 : 1) * (0.95 + 0.1 * valueNoise(X * 0.5, z * 0.5, 17)));
    return CLASS.sidewalk;
  }
  setPx(sc.grass, grain * (0.8 + 0.35 * valueNoise(X * 1.5, z * 0.6, 19)));
  return CLASS.terrain;
}

/** Exposure, colour temperature and sensor noise, then 8-bit. Labels are not touched. */
function finish(cv: Canvas, look: Look, seed: number): Uint8Array {
  const n = cv.w * cv.h;
  const out = new Uint8Array(n * 3);
  // A clamped view rounds and saturates on store (round-half-even, as specified by ECMAScript).
  const px = new Uint8ClampedArray(out.buffer);
  const noise = new Rng(seed ^ 0x5bd1e995);
  const gr = look.exposure * look.tint[0];
  const gg = look.exposure * look.tint[1];
  const gb = look.exposure * look.tint[2];
  const sd = look.noise;
  // Luminance noise (sum of three uniform bytes: near-Gaussian, standard deviation `sd`) plus a
  // little independent chroma noise; two 32-bit draws per pixel give all six bytes.
  const lum = (2 * sd) / 255;
  const chroma = sd / 255;
  for (let i = 0; i < n; i++) {
    const a = noise.nextU32();
    const b = noise.nextU32();
    const l = ((a & 255) + ((a >>> 8) & 255) + ((a >>> 16) & 255) - 382.5) * lum;
    const k = i * 3;
    px[k] = cv.rgb[k]! * gr + l + ((a >>> 24) - 127.5) * chroma;
    px[k + 1] = cv.rgb[k + 1]! * gg + l + ((b & 255) - 127.5) * chroma;
    px[k + 2] = cv.rgb[k + 2]! * gb + l + (((b >>> 8) & 255) - 127.5) * chroma;
  }
  return out;
}
