/**
 * Static scenery of the synthetic street scenes: facades and their lighting, walls, fences,
 * hedges, trees and bushes.
 */
import { CLASS } from '../../engine/palette.js';
import { Rng, frac, hash3, sq, valueNoise } from './random.js';
import { BRICK, CONCRETE, FENCE_PAINT, FOLIAGE, GLASS, PLASTER, type RGB, jitter, mixRGB } from './colour.js';
import { type Look, PX, setPx } from './canvas.js';
import { drawBillboard, drawSidePlane } from './camera.js';
import type { Building, Scene } from './scene.js';

/** Light factor of a vertical surface whose normal points along `normalX` (+1: toward +X). */
export function facadeLight(look: Look, normalX: number): number {
  if (!look.sunny) return 1;
  return normalX === look.sunX ? 1.14 : 0.8;
}

export function makeBuilding(rng: Rng, z0: number, z1: number): Building {
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
export function facade(b: Building, d: number, v: number, light: number): number {
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
export function addEdge(rng: Rng, scene: Scene, kind: 'wall' | 'fence' | 'hedge', x: number, z0: number, z1: number, maxH = 3): void {
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
export function foliage(c: RGB, u: number, v: number, salt: number): number {
  const n = valueNoise(u * 2.2, v * 2.2, salt) * 0.6 + valueNoise(u * 7, v * 7, salt + 1) * 0.4;
  setPx(c, 0.62 + 0.62 * n);
  return CLASS.vegetation;
}

export function addTree(rng: Rng, scene: Scene, x: number, z: number): void {
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

export function addBush(rng: Rng, scene: Scene, x: number, z: number): void {
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

/** A wall facing the camera at depth z (across the far end of the street). */
export function addEdgeFront(rng: Rng, scene: Scene, z: number, x0: number, x1: number): void {
  const h = rng.range(1.5, 3);
  const c = jitter(rng, rng.pick(CONCRETE), 0.07);
  const salt = rng.int(0, 1 << 30);
  scene.items.push({ z, draw: (cv, cam) => drawBillboard(cv, cam, z, 0, x0, x1, 0, h, (u, v) => wallShade(c, u, v, h, 0.5, salt, 0.95)) });
}
