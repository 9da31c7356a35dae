/**
 * Class ids -> colours on the GPU: the palette lookup of engine/palette.ts `colorize`, optionally
 * blended over the photo as `overlay` does, written as packed RGBA8 rows that copy straight into a
 * texture an application draws. Ids are sampled nearest when the output is larger than the map.
 */
import { check, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { PALETTE } from '../palette.js';
import { checkTargetTexture, createOwnedTexture, rowPitchWords, rowsToTexture, type RgbaRows } from './texture.js';
import { WG, generatedSpec } from './shader.js';

// Declared interfaces: ids [N, in_h, in_w] (item batch_index) sampled
// nearest to out_w x out_h, written as packed words in rows `out_pitch` apart (b, g, r, a when
// out_bgra); `opacity` in [0, 1].
const COLORIZE_UNIFORMS = { in_w: 'u32', in_h: 'u32', batch_index: 'u32', out_w: 'u32', out_h: 'u32', out_pitch: 'u32', out_bgra: 'u32', opacity: 'f32' } as const;
const COLORIZE_IDS = { uniforms: COLORIZE_UNIFORMS, bindings: { ids: read('i32'), dst: readWrite('u32') } } as const;
/** The photo: packed words, photo_w x photo_h, rows `photo_pitch` apart, b, g, r, a when photo_bgra. */
const COLORIZE_OVERLAY = {
  uniforms: { ...COLORIZE_UNIFORMS, photo_w: 'u32', photo_h: 'u32', photo_pitch: 'u32', photo_bgra: 'u32' },
  bindings: { ids: read('i32'), photo: read('u32'), dst: readWrite('u32') },
} as const;

export interface ColorizeOptions {
  /** Output size (default the id map's); ids are sampled nearest. */
  width?: number;
  height?: number;
  /** Label opacity in [0, 1] (default 1). Over a photo: the blend weight; alone: the alpha channel. */
  opacity?: number;
  /** Blend the labels over this picture (any size; sampled nearest to the output size). */
  photo?: RgbaRows;
  /** Colours by class id as [r, g, b] bytes (default the Cityscapes palette); other ids are transparent black. */
  palette?: readonly (readonly [number, number, number])[];
  /** Write b, g, r, a (for a bgra8unorm texture) instead of r, g, b, a. */
  bgra?: boolean;
  /** Which map of an [N, H, W] batch (default 0). */
  batchIndex?: number;
}

type Palette = readonly (readonly [number, number, number])[];

/** A colour as its packed word (alpha 255). */
const packColour = (c: readonly [number, number, number]): number => ((255 << 24) | (c[2]! << 16) | (c[1]! << 8) | c[0]!) >>> 0;

/**
 * Checks the palette and returns its pipeline variant: the palette is compiled into the WGSL, so
 * the variant names its contents ('cityscapes' for the default, else the colours as hex).
 */
function paletteVariant(palette: Palette): string {
  check(palette.length >= 1 && palette.length <= 1024, 'colorizeIds', () => `palette must have 1 to 1024 colours, got ${palette.length}`);
  palette.forEach((c, i) =>
    check(c.length === 3 && c.every((v) => Number.isInteger(v) && v >= 0 && v <= 255), 'colorizeIds', () => `palette[${i}] must be three bytes, got ${JSON.stringify(c)}`),
  );
  if (palette === PALETTE) return 'cityscapes';
  return palette.map((c) => (packColour(c) & 0xffffff).toString(16).padStart(6, '0')).join('');
}

/**
 * The WGSL of colorize_ids or colorize_overlay for `palette` (generated here: the palette is
 * compiled in as K packed colours, alpha 255; it changes rarely, so one pipeline per palette costs
 * nothing, and no buffer has to be uploaded per frame). Ids are sampled nearest with integer
 * arithmetic, so the mapping is exactly floor((x + 0.5) * in / out), as the CPU resize in the CLI
 * does; ids outside 0..K-1 (the ignore label 255, say) are transparent black, as in
 * data/palette.ts. Output words are packed RGBA8 (little-endian r, g, b, a), in rows `out_pitch`
 * words apart so copyBufferToTexture can take them (bytesPerRow must be a multiple of 256).
 * - colorize_ids: labels alone, alpha = opacity * 255 (opacity 1: exactly data/palette.ts colorize).
 * - colorize_overlay: labels over a photo (packed RGBA/BGRA words, rows `photo_pitch` apart,
 *   sampled nearest): out = round((1 - a) * photo + a * label) with a = opacity * label alpha /
 *   255, the photo's alpha kept: data/palette.ts overlay(), in f32.
 */
function colorizeWgsl(kernel: 'colorize_ids' | 'colorize_overlay', palette: Palette): string {
  const store =
    kernel === 'colorize_ids'
      ? `let c = unpack_rgba(label_rgba(id));
  let a = floor(c.w * p.opacity + 0.5);
  dst[oy * p.out_pitch + ox] = store_word(pack_rgba(vec4<f32>(c.xyz, a), p.out_bgra != 0u));`
      : `let l = unpack_rgba(label_rgba(id));
  let pw = unpack_rgba(photo[nearest(oy, p.out_h, p.photo_h) * p.photo_pitch + nearest(ox, p.out_w, p.photo_w)]);
  let ph = select(pw, pw.zyxw, p.photo_bgra != 0u);
  let a = p.opacity * l.w / 255.0;
  let rgb = floor((1.0 - a) * ph.xyz + a * l.xyz + 0.5);
  dst[oy * p.out_pitch + ox] = store_word(pack_rgba(vec4<f32>(rgb, ph.w), p.out_bgra != 0u));`;
  return `const K: i32 = ${palette.length};
const PALETTE = array<u32, ${palette.length}>(${palette.map((c) => `${packColour(c)}u`).join(', ')});

fn nearest(o: u32, out_size: u32, in_size: u32) -> u32 {
  return min(((2u * o + 1u) * in_size) / (2u * out_size), in_size - 1u);
}

fn label_rgba(id: i32) -> u32 {
  return select(0u, PALETTE[clamp(id, 0, K - 1)], (id >= 0) & (id < K));
}

fn unpack_rgba(w: u32) -> vec4<f32> {
  return vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu), f32(w >> 24u));
}

fn pack_rgba(c: vec4<f32>, swap_rb: bool) -> vec4<u32> {
  let v = vec4<u32>(c);
  let s = select(v, v.zyxw, swap_rb);
  return s;
}

fn store_word(c: vec4<u32>) -> u32 {
  return c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, ${WG}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  let id = ids[(p.batch_index * p.in_h + nearest(oy, p.out_h, p.in_h)) * p.in_w + nearest(ox, p.out_w, p.in_w)];
  ${store}
}`;
}

/**
 * Colours an i32/u32 class-id map ([H, W] or [N, H, W]) into new RgbaRows (the caller disposes
 * `words`). Without a photo and with opacity 1 the bytes equal engine/palette.ts `colorize`.
 */
export function colorizeIds(ids: Tensor, opts: ColorizeOptions = {}): RgbaRows {
  const op = 'colorizeIds';
  const engine = ids.engine;
  check(ids.dtype === 'i32' || ids.dtype === 'u32', op, () => `ids ${ids.name} must be i32 or u32 class ids, got ${ids.dtype}`);
  check(ids.rank === 2 || ids.rank === 3, op, () => `ids ${ids.name} must be [H, W] or [N, H, W], got ${fmtShape(ids.shape)}`);
  const [n, h, w] = ids.rank === 2 ? [1, ids.shape[0]!, ids.shape[1]!] : (ids.shape as [number, number, number]);
  check(h > 0 && w > 0 && n > 0, op, () => `ids ${ids.name} ${fmtShape(ids.shape)} is empty`);
  const batchIndex = opts.batchIndex ?? 0;
  check(Number.isInteger(batchIndex) && batchIndex >= 0 && batchIndex < n, op, () => `batchIndex ${batchIndex} is outside the batch of ${n} in ${ids.name} ${fmtShape(ids.shape)}`);
  const outW = opts.width ?? w;
  const outH = opts.height ?? h;
  check(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0, op, () => `output size must be positive integers, got ${outW}x${outH}`);
  const opacity = opts.opacity ?? 1;
  check(opacity >= 0 && opacity <= 1, op, () => `opacity must be in [0, 1], got ${opacity}`);
  const palette = opts.palette ?? PALETTE;
  const variant = paletteVariant(palette);
  const pitch = rowPitchWords(outW);
  const out = engine.empty([pitch * outH], 'u32', 'colorized rows');
  const base = { in_w: w, in_h: h, batch_index: batchIndex, out_w: outW, out_h: outH, out_pitch: pitch, out_bgra: opts.bgra ? 1 : 0, opacity };
  const dispatch = grid1d(outW * outH, WG, engine.limits.maxComputeWorkgroupsPerDimension);
  const photo = opts.photo;
  if (photo) {
    check(photo.words.dtype === 'u32' && photo.words.size >= photo.pitch * photo.height && photo.width > 0 && photo.height > 0, op, () =>
      `photo ${photo.words.name} (${photo.words.size} words) cannot hold a ${photo.width}x${photo.height} picture with rows of ${photo.pitch} words`);
    engine.run({
      name: 'colorize_overlay',
      variant,
      shader: () => generatedSpec(COLORIZE_OVERLAY, colorizeWgsl('colorize_overlay', palette)),
      uniforms: { ...base, photo_w: photo.width, photo_h: photo.height, photo_pitch: photo.pitch, photo_bgra: photo.bgra ? 1 : 0 },
      bindings: { ids, photo: photo.words, dst: out },
      dispatch,
      bytes: outW * outH * 12,
    });
  } else {
    engine.run({
      name: 'colorize_ids',
      variant,
      shader: () => generatedSpec(COLORIZE_IDS, colorizeWgsl('colorize_ids', palette)),
      uniforms: base,
      bindings: { ids, dst: out },
      dispatch,
      bytes: outW * outH * 8,
    });
  }
  return { words: out, width: outW, height: outH, pitch, bgra: Boolean(opts.bgra) };
}

/**
 * Colours `ids` into a texture: `target` (rgba8unorm or bgra8unorm with COPY_DST, at least the
 * output size; the application's) or, without one, a new rgba8unorm texture of the output size
 * owned by the engine (free it with `engine.disown(texture, true)`, or engine.destroy()). For a
 * texture per frame, pass a target or use Segmenter, which reuses its own.
 */
export function colorizeToTexture(ids: Tensor, opts: ColorizeOptions & { target?: GPUTexture } = {}): GPUTexture {
  const engine = ids.engine;
  const [h, w] = ids.shape.slice(-2) as [number, number];
  // The target is checked before anything is recorded.
  const bgra = opts.target ? checkTargetTexture('colorizeToTexture', opts.target, opts.width ?? w, opts.height ?? h) : false;
  const rows = colorizeIds(ids, { ...opts, bgra });
  try {
    const texture = opts.target ?? createOwnedTexture(engine, rows.width, rows.height, 'labels');
    rowsToTexture(engine, rows, texture);
    return texture;
  } finally {
    rows.words.dispose();
  }
}
