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
 *
 * This file is the public entry; the generator's parts are in data/synthetic/: random.ts (PRNG,
 * noise), colour.ts, canvas.ts (colour + label + depth), camera.ts (projection and the drawing
 * primitives), scene.ts (the scene record), layout.ts, scenery.ts, vehicles.ts, people.ts
 * (people and street furniture) and render.ts.
 */
import { Rng } from './synthetic/random.js';
import { Canvas } from './synthetic/canvas.js';
import type { Camera } from './synthetic/camera.js';
import { layoutScene } from './synthetic/layout.js';
import { finish, render } from './synthetic/render.js';

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
