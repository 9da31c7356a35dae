/**
 * The 19 Cityscapes evaluation classes ("train ids") and their official colours, with helpers to
 * turn a class-id map into a colour image, blend it over a photo and resize it. Platform-neutral.
 * It lives in engine/ because the engine's colour kernels (ops/colorize.ts) default to this
 * palette, and the engine imports nothing from the layers above it (scripts/check-imports.js).
 */

/** Label value meaning "no class here": excluded from the loss and from every metric. */
export const IGNORE_INDEX = 255;

/** Number of classes a model predicts (train ids 0..18). */
export const NUM_CLASSES = 19;

/** Class names by train id, spelled as in the Cityscapes scripts. */
export const CLASS_NAMES: readonly string[] = Object.freeze([
  'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation', 'terrain',
  'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle',
]);

/** Official Cityscapes colours (cityscapesscripts `labels.py`) by train id, as [r, g, b]. */
export const PALETTE: readonly (readonly [number, number, number])[] = Object.freeze([
  [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153], [250, 170, 30],
  [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142],
  [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
].map((c) => Object.freeze(c) as readonly [number, number, number]));

/** Train ids by name, for readable code (`CLASS.car === 13`). */
export const CLASS = Object.freeze({
  road: 0, sidewalk: 1, building: 2, wall: 3, fence: 4, pole: 5, trafficLight: 6, trafficSign: 7, vegetation: 8,
  terrain: 9, sky: 10, person: 11, rider: 12, car: 13, truck: 14, bus: 15, train: 16, motorcycle: 17, bicycle: 18,
} as const);

/** RGBA lookup for all 256 byte values: ids 0..18 get their colour, everything else transparent black. */
const LUT = (() => {
  const lut = new Uint8Array(256 * 4);
  PALETTE.forEach(([r, g, b], id) => lut.set([r, g, b, 255], id * 4));
  return lut;
})();

/**
 * Colours a class-id map with the Cityscapes palette.
 *
 * IGNORE_INDEX and any other id outside 0..18 become transparent black (alpha 0), so `overlay`
 * leaves the photo untouched there and a PNG viewer shows "no label".
 *
 * @param labels one class id per pixel, row-major, `width * height` entries
 * @returns RGBA bytes, `width * height * 4`
 */
export function colorize(labels: ArrayLike<number>, width: number, height: number): Uint8Array {
  checkSize('colorize', width, height);
  if (labels.length !== width * height)
    throw new RangeError(`colorize: labels has ${labels.length} entries, expected ${width}x${height} = ${width * height}`);
  const out = new Uint8Array(labels.length * 4);
  for (let i = 0; i < labels.length; i++) {
    const id = labels[i]!;
    // Ids outside a byte (Int32) or not whole (a Float32Array passed by mistake) must not alias
    // onto a real class, or onto another colour channel, through the LUT index.
    const k = id >= 0 && id < 256 && Number.isInteger(id) ? id * 4 : IGNORE_INDEX * 4;
    out[i * 4] = LUT[k]!;
    out[i * 4 + 1] = LUT[k + 1]!;
    out[i * 4 + 2] = LUT[k + 2]!;
    out[i * 4 + 3] = LUT[k + 3]!;
  }
  return out;
}

/**
 * Resizes a class-id map by nearest neighbour (ids must never be blended), e.g. from the network's
 * input size back to the photo's: `resizeClassIds(await ids.read(), 512, 256, photo.width, photo.height)`.
 * Each output pixel takes the id under its centre.
 *
 * @param ids `width * height` class ids, row-major (any integer array: a tensor's read() works as is)
 * @returns `outWidth * outHeight` ids as bytes (class ids are < 256)
 */
export function resizeClassIds(ids: ArrayLike<number>, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  checkSize('resizeClassIds', width, height);
  checkSize('resizeClassIds', outWidth, outHeight);
  if (ids.length !== width * height) throw new RangeError(`resizeClassIds: ids has ${ids.length} entries, expected ${width}x${height} = ${width * height}`);
  const out = new Uint8Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    const row = Math.min(height - 1, Math.floor(((y + 0.5) * height) / outHeight)) * width;
    for (let x = 0; x < outWidth; x++) out[y * outWidth + x] = ids[row + Math.min(width - 1, Math.floor(((x + 0.5) * width) / outWidth))]!;
  }
  return out;
}

/**
 * Blends a colourised label image over a photo: `out = (1 - a) * photo + a * label`, where
 * `a = alpha * labelAlpha / 255`, so transparent (ignored) label pixels show the photo unchanged.
 * The photo's own alpha is kept.
 *
 * @param rgba the photo, RGBA bytes
 * @param labelsRGBA output of `colorize`, same size
 * @param alpha label opacity in [0, 1]
 */
export function overlay(rgba: Uint8Array, labelsRGBA: Uint8Array, alpha: number): Uint8Array {
  if (rgba.length !== labelsRGBA.length)
    throw new RangeError(`overlay: photo has ${rgba.length} bytes but labels have ${labelsRGBA.length}; both must be RGBA of one size`);
  if (rgba.length % 4 !== 0) throw new RangeError(`overlay: ${rgba.length} bytes is not RGBA (not a multiple of 4)`);
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`overlay: alpha must be in [0, 1], got ${alpha}`);
  const out = new Uint8Array(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const a = (alpha * labelsRGBA[i + 3]!) / 255;
    out[i] = Math.round((1 - a) * rgba[i]! + a * labelsRGBA[i]!);
    out[i + 1] = Math.round((1 - a) * rgba[i + 1]! + a * labelsRGBA[i + 1]!);
    out[i + 2] = Math.round((1 - a) * rgba[i + 2]! + a * labelsRGBA[i + 2]!);
    out[i + 3] = rgba[i + 3]!;
  }
  return out;
}

function checkSize(fn: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new RangeError(`${fn}: width and height must be positive integers, got ${width}x${height}`);
}
