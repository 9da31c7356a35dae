/**
 * Segmentation of GPU frames for WebGPU applications: a texture, ImageBitmap, VideoFrame, video or
 * canvas in; class ids (a tensor and its GPUBuffer) and a colour texture to draw out. No pixel
 * touches the CPU: external images reach an rgba8unorm texture with copyExternalImageToTexture,
 * every texture reaches the network through copyTextureToBuffer + the rgba_words_to_tensor kernel,
 * and colours go back with the colorize kernel + copyBufferToTexture.
 *
 * Ownership: the engine-made textures (the input copy of external images, the output texture)
 * belong to this Segmenter and are reused while the size stays the same; `destroy()` frees them
 * and engine.destroy() does too. The last frame's ids and photo rows belong to it as well and stay
 * valid until the next `segment()` or `destroy()`. Textures the application passes in (a source,
 * a `target`) stay the application's: nothing here destroys them.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { check } from '../engine/errors.js';
import { TextureUsage } from '../engine/gpu-constants.js';
import { colorizeIds, type ColorizeOptions } from '../engine/ops/colorize.js';
import { checkTargetTexture, createOwnedTexture, rowPitchWords, rowsToTensor, rowsToTexture, textureToRows, type RgbaRows } from '../engine/ops/texture.js';
import { PlannedCall } from '../engine/plan.js';

/** What `segment` accepts: a GPUTexture (rgba8unorm/bgra8unorm with COPY_SRC) or anything copyExternalImageToTexture takes. */
export type FrameSource = GPUTexture | GPUCopyExternalImageSource;

export interface SegmenterOptions {
  /** Network input size: every frame is resized to it on the GPU (multiples of 32 for CANet). */
  width: number;
  height: number;
  mean?: [number, number, number];
  std?: [number, number, number];
  palette?: ColorizeOptions['palette'];
  /**
   * Replay the network from a captured plan (engine.capture) once a frame size has been seen
   * twice: the CPU cost of a frame drops from recording ~65 dispatches to replaying them (see
   * bench/RESULTS.md). Default true; false records every frame op by op.
   */
  capture?: boolean;
  /**
   * Storage precision of the network: 'f16' runs it in half precision (weights and activations
   * in f16, f32 accumulation; see CANet.half) where the adapter has `shader-f16`, and is refused
   * with a FeatureError naming the adapter otherwise. Default: the model's own (CANet.precision,
   * 'f32' unless `model.half()` was called).
   */
  precision?: 'f32' | 'f16';
}

export interface FrameOptions {
  /** Label opacity in [0, 1] (default 0.5). */
  opacity?: number;
  /** Blend the labels over the frame (default true); false draws the labels alone. */
  overlay?: boolean;
  /** Size of the colour texture (default the source's size); ids are sampled nearest. */
  outputSize?: [number, number];
  /** Draw into this texture of the application's (rgba8unorm or bgra8unorm, COPY_DST) instead of the Segmenter's. */
  target?: GPUTexture;
}

export interface SegmentedFrame {
  /** Class ids, i32 [1, H, W] at the network size; `ids.buffer` is the GPUBuffer (row-major, H * W * 4 bytes; the buffer may be longer). Valid until the next segment() or destroy(). */
  ids: Tensor;
  /** The colour texture (the Segmenter's rgba8unorm one unless `target` was given). */
  texture: GPUTexture;
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
}

/**
 * A model that maps a [1, H, W, 3] image tensor to i32 [1, H, W] class ids (CANet.segment); it is
 * given `{ precision }` when the Segmenter's options name one.
 */
export interface SegmentationModel {
  readonly engine: Engine;
  segment(x: Tensor, opts?: { precision?: 'f32' | 'f16' }): Tensor;
}

const INPUT_USAGE = TextureUsage.COPY_DST | TextureUsage.COPY_SRC | TextureUsage.RENDER_ATTACHMENT | TextureUsage.TEXTURE_BINDING;

function isTexture(s: FrameSource): s is GPUTexture {
  return typeof (s as GPUTexture).createView === 'function' && typeof (s as GPUTexture).format === 'string';
}

/** Width and height of an external image, by the properties each kind has (no DOM globals needed). */
function externalSize(s: GPUCopyExternalImageSource): [number, number] {
  const o = s as unknown as Record<string, number | undefined>;
  const w = o.displayWidth ?? o.videoWidth ?? o.naturalWidth ?? o.width ?? 0;
  const h = o.displayHeight ?? o.videoHeight ?? o.naturalHeight ?? o.height ?? 0;
  return [w, h];
}

/** The network for one source size and byte order: fixed input rows and the call that segments them. */
interface Network {
  key: string;
  rows: RgbaRows;
  call: PlannedCall<Tensor>;
}

export class Segmenter {
  readonly engine: Engine;
  private input: GPUTexture | null = null;
  private output: GPUTexture | null = null;
  private network: Network | null = null;
  private last: { ids: Tensor; photo: RgbaRows; sourceWidth: number; sourceHeight: number } | null = null;

  constructor(readonly model: SegmentationModel, readonly options: SegmenterOptions) {
    this.engine = model.engine;
    const { width, height } = options;
    check(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0, 'Segmenter', () => `network input size must be positive integers, got ${width}x${height}`);
    const precision = options.precision;
    check(precision === undefined || precision === 'f32' || precision === 'f16', 'Segmenter', () => `precision must be 'f32' or 'f16', got ${JSON.stringify(precision)}`);
    if (precision === 'f16') this.engine.requireF16('Segmenter');
  }

  /**
   * Records the whole frame (input copy, network, colours) into the engine's batch; call
   * `engine.submit()` (or await `engine.flush()` to see errors) before drawing the texture.
   */
  segment(source: FrameSource, opts: FrameOptions = {}): SegmentedFrame {
    const engine = this.engine;
    const [sw, sh] = isTexture(source) ? [source.width, source.height] : externalSize(source);
    check(sw > 0 && sh > 0, 'Segmenter.segment', () => `the source has no pixels yet (${sw}x${sh}); wait for a video's loadeddata or an image's load event`);
    this.checkFrameOptions(opts, sw, sh);
    const texture = isTexture(source) ? source : this.copyExternal(source, sw, sh);
    this.last = null;
    const net = this.networkFor(texture);
    // The frame's texels into the network's fixed input rows, then the network itself: replayed
    // from a plan from the third frame of a size on (see PlannedCall).
    textureToRows(engine, texture, 'Segmenter.segment', net.rows.words);
    const ids = net.call.run();
    this.last = { ids, photo: net.rows, sourceWidth: sw, sourceHeight: sh };
    return this.recolor(opts);
  }

  /** The network for this texture's size and byte order (made on the first frame of each). */
  private networkFor(texture: GPUTexture): Network {
    const bgra = texture.format.startsWith('bgra');
    const key = `${texture.width}x${texture.height}${bgra ? ' bgra' : ''}`;
    if (this.network?.key === key) return this.network;
    this.dropNetwork();
    const engine = this.engine;
    const { width, height } = texture;
    const pitch = rowPitchWords(width);
    const rows: RgbaRows = { words: engine.empty([pitch * height], 'u32', 'segmenter input rows').keep(), width, height, pitch, bgra };
    const { width: outWidth, height: outHeight, mean, std, precision } = this.options;
    const modelOpts = precision ? { precision } : undefined;
    const call = new PlannedCall(engine, () => this.model.segment(rowsToTensor(engine, rows, { outWidth, outHeight, mean, std }), modelOpts), {
      label: `Segmenter ${key} -> ${outWidth}x${outHeight}`,
      capture: this.options.capture,
    });
    return (this.network = { key, rows, call });
  }

  /** Colours the last frame again (a new opacity, say) without running the network. */
  recolor(opts: FrameOptions = {}): SegmentedFrame {
    const last = this.last;
    check(last !== null, 'Segmenter.recolor', () => 'no frame yet: call segment() first');
    const { ids, photo, sourceWidth, sourceHeight } = last!;
    const [ow, oh] = this.checkFrameOptions(opts, sourceWidth, sourceHeight);
    const target = opts.target ?? this.outputTexture(ow, oh);
    const rows = colorizeIds(ids, {
      width: ow,
      height: oh,
      opacity: opts.opacity ?? 0.5,
      photo: opts.overlay === false ? undefined : photo,
      palette: this.options.palette,
      bgra: target.format.startsWith('bgra'),
    });
    try {
      rowsToTexture(this.engine, rows, target);
    } finally {
      rows.words.dispose();
    }
    return { ids, texture: target, width: ow, height: oh, sourceWidth, sourceHeight };
  }

  /** Frees the Segmenter's textures and the last frame's tensors (the engine stays usable). */
  destroy(): void {
    this.dropNetwork();
    for (const t of [this.input, this.output]) if (t) this.engine.disown(t, true);
    this.input = this.output = null;
  }

  /** Validates options before anything is recorded; returns the output size. */
  private checkFrameOptions(opts: FrameOptions, sw: number, sh: number): [number, number] {
    const [ow, oh] = opts.outputSize ?? [sw, sh];
    check(Number.isInteger(ow) && Number.isInteger(oh) && ow > 0 && oh > 0, 'Segmenter', () => `outputSize must be positive integers, got ${ow}x${oh}`);
    const opacity = opts.opacity ?? 0.5;
    check(opacity >= 0 && opacity <= 1, 'Segmenter', () => `opacity must be in [0, 1], got ${opacity}`);
    if (opts.target) checkTargetTexture('Segmenter', opts.target, ow, oh);
    return [ow, oh];
  }

  /** Frees the network state (its plan, its input rows, the last frame's ids). */
  private dropNetwork(): void {
    this.last = null;
    if (!this.network) return;
    this.network.call.dispose();
    this.network.rows.words.dispose();
    this.network = null;
  }

  private outputTexture(w: number, h: number): GPUTexture {
    if (this.output && this.output.width === w && this.output.height === h) return this.output;
    if (this.output) this.engine.disown(this.output, true);
    this.output = createOwnedTexture(this.engine, w, h, 'segmenter output');
    return this.output;
  }

  private copyExternal(source: GPUCopyExternalImageSource, w: number, h: number): GPUTexture {
    const engine = this.engine;
    const queue = engine.device.queue;
    check(typeof queue.copyExternalImageToTexture === 'function', 'Segmenter.segment', () => 'this WebGPU implementation has no copyExternalImageToTexture (Node): pass a GPUTexture');
    if (!this.input || this.input.width !== w || this.input.height !== h) {
      if (this.input) engine.disown(this.input, true);
      this.input = createOwnedTexture(engine, w, h, 'segmenter input', INPUT_USAGE);
    }
    // copyExternalImageToTexture runs on the queue at once, ahead of anything still being
    // recorded: submit first, so the previous frame's read of this texture comes before.
    engine.submit();
    try {
      queue.copyExternalImageToTexture({ source, flipY: false }, { texture: this.input, premultipliedAlpha: false }, [w, h, 1]);
    } catch (e) {
      // Dawn in Node has the method but no DOM image types; a browser throws for a closed VideoFrame, say.
      throw new TypeError(`Segmenter.segment: copyExternalImageToTexture refused the ${w}x${h} source (${(e as Error).message}); give an ImageBitmap, VideoFrame, video, image or canvas in a browser, or a GPUTexture`);
    }
    return this.input;
  }
}
