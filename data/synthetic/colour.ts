/**
 * Colours of the synthetic street scenes: the RGB type, jitter and mixing, and the palettes of
 * materials (plaster, brick, paint, skin, foliage, asphalt...).
 */
import { Rng } from './random.js';

export type RGB = readonly [number, number, number];

export function jitter(rng: Rng, c: RGB, amount: number): RGB {
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

export function mixRGB(a: RGB, b: RGB, t: number): RGB {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

export const PLASTER: readonly RGB[] = [
  [205, 195, 175], [185, 175, 155], [220, 212, 195], [170, 162, 152], [195, 178, 160], [160, 150, 142], [212, 200, 165],
  [180, 145, 110], [150, 125, 105], [188, 188, 192], [200, 170, 150], [140, 140, 145],
];
export const BRICK: readonly RGB[] = [[150, 82, 62], [128, 70, 56], [162, 98, 72], [118, 78, 66]];
export const GLASS: readonly RGB[] = [[88, 110, 128], [70, 92, 112], [100, 118, 120], [60, 75, 90]];
export const CONCRETE: readonly RGB[] = [[150, 150, 148], [132, 132, 136], [165, 160, 150], [120, 118, 112]];
export const CAR_PAINT: readonly RGB[] = [
  [200, 202, 206], [28, 28, 32], [238, 238, 236], [150, 22, 24], [30, 52, 118], [92, 92, 96], [22, 72, 44], [198, 182, 142],
  [190, 120, 30], [64, 34, 24], [100, 132, 162], [120, 125, 130], [45, 45, 55],
];
export const BUS_PAINT: readonly RGB[] = [[200, 32, 30], [228, 188, 30], [30, 82, 170], [40, 140, 72], [236, 236, 232], [220, 110, 30]];
export const TRAM_PAINT: readonly RGB[] = [[236, 236, 228], [228, 192, 40], [182, 30, 32], [220, 225, 230]];
export const TRUCK_BOX: readonly RGB[] = [[236, 236, 236], [196, 198, 200], [220, 120, 30], [40, 72, 140], [180, 40, 40], [230, 220, 200]];
export const SKIN: readonly RGB[] = [[232, 192, 164], [204, 152, 120], [152, 102, 72], [102, 70, 50], [222, 178, 140]];
export const HAIR: readonly RGB[] = [[30, 22, 18], [70, 45, 25], [150, 110, 60], [200, 170, 110], [110, 110, 110], [20, 20, 20]];
export const CLOTH: readonly RGB[] = [
  [30, 30, 34], [200, 40, 40], [40, 70, 150], [230, 230, 225], [60, 120, 60], [200, 160, 40], [120, 40, 110], [90, 90, 95],
  [170, 110, 70], [40, 150, 170], [230, 120, 150], [60, 50, 40],
];
export const TROUSERS: readonly RGB[] = [[48, 58, 92], [28, 28, 30], [90, 90, 96], [170, 150, 115], [70, 56, 44], [36, 44, 70]];
export const FOLIAGE: readonly RGB[] = [[62, 102, 40], [50, 90, 44], [82, 112, 48], [44, 82, 36], [92, 118, 56], [70, 96, 30]];
export const GRASS: readonly RGB[] = [[122, 152, 72], [140, 160, 84], [152, 142, 102], [110, 142, 62], [132, 150, 92]];
export const ASPHALT: readonly RGB[] = [[72, 72, 77], [86, 85, 88], [62, 62, 67], [96, 93, 90], [80, 82, 86]];
export const PAVING: readonly RGB[] = [[162, 157, 150], [172, 162, 152], [150, 142, 142], [182, 152, 142], [142, 142, 147], [190, 180, 165]];
export const METAL: readonly RGB[] = [[120, 122, 126], [70, 72, 74], [150, 150, 150], [40, 56, 46], [50, 50, 54]];
export const FENCE_PAINT: readonly RGB[] = [[48, 78, 54], [110, 112, 116], [128, 96, 70], [60, 60, 64], [160, 140, 110]];
