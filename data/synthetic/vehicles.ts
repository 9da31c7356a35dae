/**
 * Vehicles of the synthetic street scenes: cars, vans, trucks, buses, trams, motorcycles and
 * bicycles, and the shapes they are drawn from.
 */
import { CLASS } from '../../engine/palette.js';
import { Rng, frac, segDist, sq } from './random.js';
import { BUS_PAINT, CAR_PAINT, CLOTH, HAIR, type RGB, SKIN, TRAM_PAINT, TROUSERS, TRUCK_BOX, jitter } from './colour.js';
import { PX, setPx } from './canvas.js';
import { drawBillboard, drawSidePlane } from './camera.js';
import type { Scene } from './scene.js';
import { facadeLight } from './scenery.js';

export type VehicleKind = 'car' | 'van' | 'truck' | 'bus' | 'tram' | 'motorcycle' | 'bicycle';

export function vehicleLength(rng: Rng, kind: VehicleKind): number {
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
export function addVehicle(rng: Rng, scene: Scene, kind: VehicleKind, x: number, z0: number, facing: 1 | -1, len: number): void {
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
export const DARK: RGB = [36, 36, 40];
const RED_LIGHT: RGB = [205, 30, 28];
export const HEAD_LIGHT: RGB = [236, 234, 214];
const PLATE: RGB = [225, 225, 215];
const ROOF: RGB = [170, 172, 175];
export const RAIL: RGB = [150, 150, 152];
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
export function addTwoWheeler(rng: Rng, scene: Scene, kind: 'motorcycle' | 'bicycle', x: number, z: number, ridden: boolean, facing: 1 | -1, sideOn = false): void {
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
