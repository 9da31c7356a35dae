/**
 * The pinhole camera of the synthetic street scenes and the three drawing primitives every object
 * is made of.
 */
import { Canvas, PX, type Shade } from './canvas.js';

/**
 * Pinhole camera looking down the street (+z), level, at height camH above the road and lateral
 * position camX. World X is across the street (road centre 0, +X to the right), v is height.
 */
export interface Camera {
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
export function drawBillboard(cv: Canvas, cam: Camera, z: number, xc: number, uMin: number, uMax: number, vMin: number, vMax: number, shade: Shade): void {
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
export function drawSidePlane(cv: Canvas, cam: Camera, xp: number, z0: number, z1: number, vMin: number, vMax: number, shade: Shade): void {
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
