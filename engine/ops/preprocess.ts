/**
 * Image input on the GPU: 8-bit RGB or RGBA bytes -> an ImageNet-normalised NHWC float tensor in
 * one kernel, with an optional bilinear resize. Only the bytes cross the bus (4x less than floats).
 */
import preprocess from '../../shaders/preprocess.wgsl';
import type { Engine } from '../engine.js';
import { ShapeError, check, checkOperands } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import { WG, sectionSpec } from './shader.js';
import type { Tensor } from '../tensor.js';

/**
 * Declared interfaces (shaders/preprocess.wgsl). Source bytes arrive packed four to a u32 word.
 * The crop window starts at (origin_x, origin_y) and steps scale_x, scale_y source pixels per
 * output pixel; `flip` mirrors horizontally; `batch_index` is the item of the output batch.
 */
/** The crop window and the normalisation: the last fields of both image kernels' Params (rgba_words_to_tensor too, engine/ops/texture.ts). */
export const RESAMPLE_NORMALISE_UNIFORMS = {
  origin_x: 'f32', origin_y: 'f32', scale_x: 'f32', scale_y: 'f32',
  mean_r: 'f32', mean_g: 'f32', mean_b: 'f32',
  inv_std_r: 'f32', inv_std_g: 'f32', inv_std_b: 'f32',
} as const;
const IMAGE_TO_TENSOR = {
  uniforms: { in_w: 'u32', in_h: 'u32', channels: 'u32', out_w: 'u32', out_h: 'u32', batch_index: 'u32', flip: 'u32', ...RESAMPLE_NORMALISE_UNIFORMS },
  bindings: { src: read('u32'), dst: readWrite('f32') },
} as const;
const LABELS_TO_TENSOR = {
  uniforms: {
    in_w: 'u32', in_h: 'u32', out_w: 'u32', out_h: 'u32', batch_index: 'u32', flip: 'u32',
    origin_x: 'f32', origin_y: 'f32', scale_x: 'f32', scale_y: 'f32',
  },
  bindings: { src: read('u32'), dst: readWrite('u32') },
} as const;

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

export interface ImageBytes {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA; alpha ignored). */
  channels: 3 | 4;
}

export interface PreprocessOptions {
  /** Output size (default: the image's). */
  outWidth?: number;
  outHeight?: number;
  mean?: [number, number, number];
  std?: [number, number, number];
  /** Write image i of a batch into this existing [N, outH, outW, 3] tensor instead of a new one. */
  into?: { tensor: Tensor; index: number };
  /** Source window to sample (augmentation: random scale + crop); default the whole image. */
  crop?: CropWindow;
  /** Mirror horizontally (augmentation). */
  flip?: boolean;
}

/** A window of the source image in pixels (fractional allowed), resampled to the output size. */
export interface CropWindow {
  x: number;
  y: number;
  width: number;
  height: number;
}

function checkCrop(op: string, crop: CropWindow, w: number, h: number): void {
  const { x, y, width, height } = crop;
  check([x, y, width, height].every(Number.isFinite) && width > 0 && height > 0 && x >= 0 && y >= 0 && x + width <= w + 1e-6 && y + height <= h + 1e-6, op, () =>
    `crop window ${JSON.stringify(crop)} must lie inside the ${w}x${h} image`);
}

/** Packs bytes into u32 words (zero-padded to a multiple of 4) and uploads them. */
function uploadBytes(engine: Engine, data: Uint8Array | Uint8ClampedArray): Tensor {
  const padded = new Uint8Array(Math.ceil(data.length / 4) * 4);
  padded.set(data);
  return engine.tensor(new Uint32Array(padded.buffer), [padded.length / 4], 'u32');
}

/** Resolves `into` / a new tensor of [1, ...shape] for a batch writer. */
function target(engine: Engine, op: string, into: { tensor: Tensor; index: number } | undefined, shape: number[], dtype: 'f32' | 'u32'): [Tensor, number] {
  if (!into) return [engine.empty([1, ...shape], dtype), 0];
  const { tensor, index } = into;
  checkOperands(op, tensor);
  check(tensor.engine === engine, op, () => `into: ${tensor.name} belongs to another engine`);
  const ok = tensor.rank === shape.length + 1 && shape.every((d, i) => tensor.shape[i + 1] === d) && tensor.dtype === dtype && Number.isInteger(index) && index >= 0 && index < tensor.shape[0]!;
  check(ok, op, () => `into: ${tensor.name} [${tensor.shape.join(', ')}] (${tensor.dtype}) cannot take item ${index} of shape [${shape.join(', ')}] (${dtype})`);
  return [tensor, index];
}

/** "Uint8Array", "Float32Array", "null", ...: what a caller passed as pixel data (typed arrays of any realm). */
function kindOf(v: unknown): string {
  if (v === null || typeof v !== 'object') return v === null ? 'null' : typeof v;
  return Object.prototype.toString.call(v).slice(8, -1);
}

function validate(img: ImageBytes): void {
  if (typeof img !== 'object' || img === null) throw new ShapeError(`imageToTensor: expected an image {data, width, height, channels}, got ${kindOf(img)}`);
  const kind = kindOf(img.data);
  // A Float32Array of [0, 1] values used to be read as bytes and give a wrong image silently.
  if (kind !== 'Uint8Array' && kind !== 'Uint8ClampedArray')
    throw new ShapeError(
      `imageToTensor: data must be a Uint8Array or Uint8ClampedArray of 8-bit values (0..255), got ${kind}` +
        (/Float(32|64)Array|^Array$/.test(kind) ? '; for float pixels in [0, 1] pass Uint8ClampedArray.from(data, (v) => v * 255)' : ''),
    );
  const { data, width, height, channels } = img;
  if (!(channels === 3 || channels === 4)) throw new ShapeError(`imageToTensor: channels must be 3 (RGB) or 4 (RGBA), got ${channels}`);
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0))
    throw new ShapeError(`imageToTensor: image size must be positive integers, got ${width}x${height}`);
  if (data.length !== width * height * channels)
    throw new ShapeError(`imageToTensor: ${width}x${height}x${channels} image needs ${width * height * channels} bytes, got ${data.length}`);
}

/** Uploads an 8-bit image and returns it normalised as [1, H, W, 3] (or writes it into `into`). */
export function imageToTensor(engine: Engine, img: ImageBytes, opts: PreprocessOptions = {}): Tensor {
  validate(img);
  const outW = opts.outWidth ?? img.width;
  const outH = opts.outHeight ?? img.height;
  check(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0, 'imageToTensor', () => `output size must be positive integers, got ${outW}x${outH}`);
  const mean = opts.mean ?? IMAGENET_MEAN;
  const std = opts.std ?? IMAGENET_STD;
  const crop = opts.crop ?? { x: 0, y: 0, width: img.width, height: img.height };
  checkCrop('imageToTensor', crop, img.width, img.height);
  const [out, index] = target(engine, 'imageToTensor', opts.into, [outH, outW, 3], 'f32');
  const src = uploadBytes(engine, img.data);
  engine.run({
    name: 'image_to_tensor',
    shader: () => sectionSpec(IMAGE_TO_TENSOR, preprocess, 'image_to_tensor', { WG }),
    uniforms: {
      in_w: img.width, in_h: img.height, channels: img.channels, out_w: outW, out_h: outH, batch_index: index, flip: opts.flip ? 1 : 0,
      origin_x: crop.x, origin_y: crop.y, scale_x: crop.width / outW, scale_y: crop.height / outH,
      mean_r: mean[0], mean_g: mean[1], mean_b: mean[2],
      inv_std_r: 1 / std[0], inv_std_g: 1 / std[1], inv_std_b: 1 / std[2],
    },
    bindings: { src, dst: out },
    dispatch: grid1d(outW * outH, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: img.data.length + outW * outH * 12,
  });
  src.dispose();
  return out;
}

export interface LabelBytes {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Uploads an 8-bit label map as u32 labels [1, H, W] (or into image `index` of a batch), with the
 * same crop window and flip as the matching imageToTensor call, sampled nearest.
 */
export function labelsToTensor(engine: Engine, labels: LabelBytes, opts: Omit<PreprocessOptions, 'mean' | 'std'> = {}): Tensor {
  const { data, width, height } = labels;
  check(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0, 'labelsToTensor', () => `label map size must be positive integers, got ${width}x${height}`);
  check(data.length === width * height, 'labelsToTensor', () => `${width}x${height} label map needs ${width * height} bytes, got ${data.length}`);
  const outW = opts.outWidth ?? width;
  const outH = opts.outHeight ?? height;
  check(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0, 'labelsToTensor', () => `output size must be positive integers, got ${outW}x${outH}`);
  const crop = opts.crop ?? { x: 0, y: 0, width, height };
  checkCrop('labelsToTensor', crop, width, height);
  const [out, index] = target(engine, 'labelsToTensor', opts.into, [outH, outW], 'u32');
  const src = uploadBytes(engine, data);
  engine.run({
    name: 'labels_to_tensor',
    shader: () => sectionSpec(LABELS_TO_TENSOR, preprocess, 'labels_to_tensor', { WG }),
    uniforms: {
      in_w: width, in_h: height, out_w: outW, out_h: outH, batch_index: index, flip: opts.flip ? 1 : 0,
      origin_x: crop.x, origin_y: crop.y, scale_x: crop.width / outW, scale_y: crop.height / outH,
    },
    bindings: { src, dst: out },
    dispatch: grid1d(outW * outH, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: data.length + outW * outH * 4,
  });
  src.dispose();
  return out;
}
