/**
 * People, poles, signs, traffic lights and sidewalk trees of the synthetic street scenes.
 */
import { CLASS } from '../../engine/palette.js';
import { Rng, sq } from './random.js';
import { CLOTH, HAIR, METAL, type RGB, SKIN, TROUSERS, jitter } from './colour.js';
import { setPx } from './canvas.js';
import { drawBillboard } from './camera.js';
import type { Scene } from './scene.js';
import { addBush, addEdge, addTree } from './scenery.js';
import { DARK, HEAD_LIGHT, addTwoWheeler } from './vehicles.js';

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

export function layoutStreetFurniture(rng: Rng, scene: Scene): void {
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

export function layoutPeople(rng: Rng, scene: Scene): void {
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
