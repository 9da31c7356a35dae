/**
 * Image input on the GPU: 8-bit RGB or RGBA bytes -> an ImageNet-normalised NHWC float tensor in
 * one kernel, with an optional bilinear resize. Only the bytes cross the bus (4x less than floats).
 */
import preprocess from '../../shaders/preprocess.wgsl';
import type { Engine } from '../engine.js';
import { ShapeError, check, checkOperands } from '../errors.js';
import { f32, grid1d, kernelSection } from '../program.js';
import type { Tensor } from '../tensor.js';

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

function validate(img: ImageBytes): void {
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
    source: kernelSection(preprocess, 'image_to_tensor'),
    defines: { WG: 64 },
    uniforms: [img.width, img.height, img.channels, outW, outH, index, opts.flip ? 1 : 0,
      f32(crop.x), f32(crop.y), f32(crop.width / outW), f32(crop.height / outH),
      f32(mean[0]), f32(mean[1]), f32(mean[2]), f32(1 / std[0]), f32(1 / std[1]), f32(1 / std[2])],
    bindings: [src, out],
    dispatch: grid1d(outW * outH, 64, engine.limits.maxComputeWorkgroupsPerDimension),
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
    source: kernelSection(preprocess, 'labels_to_tensor'),
    defines: { WG: 64 },
    uniforms: [width, height, outW, outH, index, opts.flip ? 1 : 0, f32(crop.x), f32(crop.y), f32(crop.width / outW), f32(crop.height / outH)],
    bindings: [src, out],
    dispatch: grid1d(outW * outH, 64, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: data.length + outW * outH * 4,
  });
  src.dispose();
  return out;
}
