/**
 * Lays out a synthetic street scene in metres from the seeded PRNG: road and lanes, both sides
 * (facades or open terrain), the backdrop across the far end; vehicles, people and street
 * furniture come from vehicles.ts and people.ts. Never looks at the output size.
 */
import { CLASS } from '../../engine/palette.js';
import { Rng, hash3, valueNoise } from './random.js';
import { ASPHALT, FOLIAGE, GRASS, PAVING, jitter, mixRGB } from './colour.js';
import { type Look, setPx } from './canvas.js';
import { drawBillboard, drawSidePlane } from './camera.js';
import type { Building, Scene, Side } from './scene.js';
import { addBush, addEdge, addEdgeFront, addTree, facade, facadeLight, foliage, makeBuilding } from './scenery.js';
import { type VehicleKind, addVehicle, vehicleLength } from './vehicles.js';
import { layoutPeople, layoutStreetFurniture } from './people.js';

export function layoutScene(rng: Rng): Scene {
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
