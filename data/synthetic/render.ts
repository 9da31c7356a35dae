/**
 * Renders a laid-out synthetic scene: sky, road, sidewalks, then the items far to near; finish()
 * applies haze, exposure and sensor noise to the colours.
 */
import { CLASS } from '../../engine/palette.js';
import { Rng, frac, hash3, valueNoise } from './random.js';
import { mixRGB } from './colour.js';
import { Canvas, type Look, PX, setPx } from './canvas.js';
import type { Camera } from './camera.js';
import type { Scene, Side } from './scene.js';
import { RAIL } from './vehicles.js';

export function render(cv: Canvas, cam: Camera, scene: Scene): void {
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
export function finish(cv: Canvas, look: Look, seed: number): Uint8Array {
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
