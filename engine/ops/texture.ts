/**
 * Textures in and out of tensors, without the CPU: a texture's texels reach a storage buffer with
 * copyTextureToBuffer (rows padded to 256 bytes, as WebGPU requires) and a kernel turns those
 * packed RGBA8 words into a normalised NHWC tensor, resized to the model's input size; coloured
 * output goes the other way with copyBufferToTexture. Platform-neutral (Dawn in Node has
 * textures too); browser sources (video, ImageBitmap) reach a texture first, see net/segmenter.ts.
 */
import preprocess from '../../shaders/preprocess.wgsl';
import type { Engine } from '../engine.js';
import { ShapeError, check } from '../errors.js';
import { TextureUsage } from '../gpu-constants.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { IMAGENET_MEAN, IMAGENET_STD, RESAMPLE_NORMALISE_UNIFORMS } from './preprocess.js';
import { WG, sectionSpec } from './shader.js';

/**
 * rgba_words_to_tensor (shaders/preprocess.wgsl): texel rows `pitch` words apart, `bgra` byte
 * order; the rest as image_to_tensor (origin 0 and the whole-picture scale here).
 */
const RGBA_WORDS_TO_TENSOR = {
  uniforms: { in_w: 'u32', in_h: 'u32', pitch: 'u32', bgra: 'u32', out_w: 'u32', out_h: 'u32', batch_index: 'u32', ...RESAMPLE_NORMALISE_UNIFORMS },
  bindings: { src: read('u32'), dst: readWrite('f32') },
} as const;

/** An RGBA8 picture in a u32 tensor: one word per pixel (r in the low byte), rows `pitch` words apart. */
export interface RgbaRows {
  words: Tensor;
  width: number;
  height: number;
  /** Words per row, a multiple of 64 (256 bytes) so the rows can be copied to and from textures. */
  pitch: number;
  /** Bytes are b, g, r, a (a bgra8unorm texture) rather than r, g, b, a. */
  bgra: boolean;
}

/** Words per row for `width` pixels: bytesPerRow padded to WebGPU's 256-byte copy alignment. */
export function rowPitchWords(width: number): number {
  return Math.ceil((width * 4) / 256) * 64;
}

/** Formats whose bytes are RGBA8 in some order (sRGB variants copy their raw bytes unchanged). */
const RGBA8_FORMATS: Record<string, boolean> = { rgba8unorm: false, 'rgba8unorm-srgb': false, bgra8unorm: true, 'bgra8unorm-srgb': true };

function describe(texture: GPUTexture): string {
  return `texture${texture.label ? ` '${texture.label}'` : ''} (${texture.format}, ${texture.width}x${texture.height})`;
}

function checkTexture(op: string, texture: GPUTexture, usage: number, usageName: string, why: string): boolean {
  const bgra = RGBA8_FORMATS[texture.format];
  if (bgra === undefined) throw new ShapeError(`${op}: ${describe(texture)} must be rgba8unorm or bgra8unorm (or their -srgb forms), got ${texture.format}`);
  check(texture.dimension === '2d' && texture.sampleCount === 1, op, () => `${describe(texture)} must be a 2d, single-sampled texture (dimension ${texture.dimension}, sampleCount ${texture.sampleCount})`);
  check((texture.usage & usage) !== 0, op, () => `${describe(texture)} lacks GPUTextureUsage.${usageName} (usage is 0x${texture.usage.toString(16)}): ${why}`);
  return bgra;
}

/**
 * Records a copy of layer 0, mip 0 of `texture` into a new RgbaRows tensor, or into `into` (a u32
 * tensor of at least rowPitchWords(width) * height words: a fixed input of a captured plan). The
 * texture needs COPY_SRC usage. Work recorded before this call that writes the texture (a render
 * pass of the application's own) must be submitted first: the copy runs in the engine's next submit.
 */
export function textureToRows(engine: Engine, texture: GPUTexture, op = 'textureToRows', into?: Tensor): RgbaRows {
  const bgra = checkTexture(op, texture, TextureUsage.COPY_SRC, 'COPY_SRC', 'the engine reads it with copyTextureToBuffer; add COPY_SRC where you create it');
  const { width, height } = texture;
  const pitch = rowPitchWords(width);
  if (into) check(into.dtype === 'u32' && into.size >= pitch * height, op, () => `${into.name} (${into.size} ${into.dtype}) cannot hold the ${height} rows of ${pitch} words of ${describe(texture)}`);
  const words = into ?? engine.empty([pitch * height], 'u32', `${texture.label || 'texture'} rows`);
  engine.copyTextureToBuffer({ texture }, { buffer: words.buffer, bytesPerRow: pitch * 4, rowsPerImage: height }, [width, height, 1]);
  return { words, width, height, pitch, bgra };
}

export interface RowsToTensorOptions {
  /** Output size (default the picture's); resized bilinearly as PyTorch (align_corners=false). */
  outWidth?: number;
  outHeight?: number;
  mean?: [number, number, number];
  std?: [number, number, number];
  /** Write image `index` of an existing [N, outH, outW, 3] f32 tensor instead of a new one. */
  into?: { tensor: Tensor; index: number };
}

/** RGBA8 rows -> an ImageNet-normalised [1, H, W, 3] tensor: the same numbers as imageToTensor on the same bytes. */
export function rowsToTensor(engine: Engine, rows: RgbaRows, opts: RowsToTensorOptions = {}): Tensor {
  const op = 'rowsToTensor';
  const { width, height, pitch, words } = rows;
  check(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0, op, () => `picture size must be positive integers, got ${width}x${height}`);
  check(words.dtype === 'u32' && words.size >= pitch * height && pitch >= width, op, () => `${words.name} (${words.size} ${words.dtype}) cannot hold ${height} rows of ${pitch} words for a ${width}x${height} picture`);
  const outW = opts.outWidth ?? width;
  const outH = opts.outHeight ?? height;
  check(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0, op, () => `output size must be positive integers, got ${outW}x${outH}`);
  const mean = opts.mean ?? IMAGENET_MEAN;
  const std = opts.std ?? IMAGENET_STD;
  let out: Tensor;
  let index = 0;
  if (opts.into) {
    const { tensor, index: k } = opts.into;
    const ok = tensor.rank === 4 && tensor.shape[1] === outH && tensor.shape[2] === outW && tensor.shape[3] === 3 && tensor.dtype === 'f32' && Number.isInteger(k) && k >= 0 && k < tensor.shape[0]!;
    check(ok, op, () => `into: ${tensor.name} [${tensor.shape.join(', ')}] (${tensor.dtype}) cannot take item ${k} of shape [${outH}, ${outW}, 3] (f32)`);
    out = tensor;
    index = k;
  } else out = engine.empty([1, outH, outW, 3], 'f32');
  engine.run({
    name: 'rgba_words_to_tensor',
    shader: () => sectionSpec(RGBA_WORDS_TO_TENSOR, preprocess, 'rgba_words_to_tensor', { WG }),
    // Scales as f32(width / outW), the value image_to_tensor gets for a whole-image crop.
    uniforms: {
      in_w: width, in_h: height, pitch, bgra: rows.bgra ? 1 : 0, out_w: outW, out_h: outH, batch_index: index,
      origin_x: 0, origin_y: 0, scale_x: width / outW, scale_y: height / outH,
      mean_r: mean[0], mean_g: mean[1], mean_b: mean[2],
      inv_std_r: 1 / std[0], inv_std_g: 1 / std[1], inv_std_b: 1 / std[2],
    },
    bindings: { src: words, dst: out },
    dispatch: grid1d(outW * outH, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: width * height * 4 + outW * outH * 12,
  });
  return out;
}

/** A texture (rgba8unorm or bgra8unorm, COPY_SRC usage) -> a normalised [1, H, W, 3] tensor, on the GPU. */
export function textureToTensor(engine: Engine, texture: GPUTexture, opts: RowsToTensorOptions = {}): Tensor {
  const rows = textureToRows(engine, texture, 'textureToTensor');
  try {
    return rowsToTensor(engine, rows, opts);
  } finally {
    rows.words.dispose(); // safe: the kernel reading it is recorded before any reuse
  }
}

/**
 * Records a copy of `rows` into `texture` at the origin. The texture must be rgba8unorm or
 * bgra8unorm in the byte order of the rows, have COPY_DST usage and be at least as large.
 */
export function rowsToTexture(engine: Engine, rows: RgbaRows, texture: GPUTexture): void {
  const bgra = checkTargetTexture('rowsToTexture', texture, rows.width, rows.height);
  check(bgra === rows.bgra, 'rowsToTexture', () => `${describe(texture)} takes ${bgra ? 'BGRA' : 'RGBA'} bytes but the rows are ${rows.bgra ? 'BGRA' : 'RGBA'}`);
  engine.copyBufferToTexture({ buffer: rows.words.buffer, bytesPerRow: rows.pitch * 4, rowsPerImage: rows.height }, { texture }, [rows.width, rows.height, 1]);
}

/** Checks that `texture` can receive a width x height RGBA8 picture; returns whether it is BGRA. */
export function checkTargetTexture(op: string, texture: GPUTexture, width: number, height: number): boolean {
  const bgra = checkTexture(op, texture, TextureUsage.COPY_DST, 'COPY_DST', 'the engine writes it with copyBufferToTexture; add COPY_DST where you create it');
  check(texture.width >= width && texture.height >= height, op, () => `${describe(texture)} is smaller than the ${width}x${height} picture`);
  return bgra;
}

/** Usage of the textures the engine creates for output: drawable, copyable, renderable. */
export const OUTPUT_TEXTURE_USAGE = TextureUsage.TEXTURE_BINDING | TextureUsage.COPY_DST | TextureUsage.COPY_SRC | TextureUsage.RENDER_ATTACHMENT;

/**
 * A new rgba8unorm texture owned by the engine (engine.destroy() destroys it; so does
 * `engine.disown(texture, true)`), with `usage` (default OUTPUT_TEXTURE_USAGE).
 */
export function createOwnedTexture(engine: Engine, width: number, height: number, label: string, usage: number = OUTPUT_TEXTURE_USAGE): GPUTexture {
  check(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0, 'createOwnedTexture', () => `size must be positive integers, got ${width}x${height}`);
  const max = engine.limits.maxTextureDimension2D;
  check(width <= max && height <= max, 'createOwnedTexture', () => `${width}x${height} exceeds this device's maxTextureDimension2D (${max})`);
  return engine.own(engine.device.createTexture({ size: [width, height, 1], format: 'rgba8unorm', usage, label: `canet-gpu:${label}` }));
}
