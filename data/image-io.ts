/**
 * PNG and JPEG files to and from 8-bit pixel arrays (Node only): photos for training and
 * inference, and label maps (one class id per pixel).
 *
 * The format is recognised by its magic bytes, never by the file name, so a PNG saved as
 * `.jpg` still loads. Every failure is an {@link ImageError} whose message starts with the file
 * name and says what is wrong (missing, not an image, which format it is instead, truncated,
 * corrupt), because "invalid signature" from deep inside a decoder does not say which of ten
 * thousand dataset files is broken.
 *
 * Decoding uses pngjs and jpeg-js (pure JavaScript, no native build). Writes are atomic
 * (temporary file, fsync, rename; see `weights/file.ts`), so an interrupted export never leaves
 * a half-written PNG that a later run would trip over.
 */
import { promises as fsp } from 'node:fs';
import pngjs from 'pngjs';
import jpeg from 'jpeg-js';
import { writeFileAtomic } from '../engine/atomic-file.js';

const { PNG } = pngjs;

/** A decoded image: 8-bit channels, interleaved, row-major. */
export interface DecodedImage {
  /** `height * width * channels` bytes: RGB, or RGBA when the file has an alpha channel. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** A decoded label map: one class id per pixel, row-major. */
export interface LabelImage {
  labels: Uint8Array;
  width: number;
  height: number;
}

/** A file that cannot be read as the image it should be; the message starts with the file name. */
export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    /** The file (or the name given to {@link decodeImage}). */
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${problem}`, options);
  }
}

/**
 * Default decoding budget, in pixels: 40 megapixels, from the width and height in the file's
 * header (PNG IHDR, JPEG SOF) before any pixel is decoded. Every command resizes images to the
 * network size (512x256 by default; Cityscapes frames are 2 megapixels), and a 40-megapixel RGBA
 * decode already takes 160 MB; without a budget a 249 KB PNG of 16000x16000 decoded to 1 GB in
 * minutes. Raise it with the `maxPixels` option (the CLI's --max-megapixels).
 */
export const DEFAULT_MAX_PIXELS = 40_000_000;

/** Options of {@link decodeImage}, {@link readImage} and {@link readLabelImage}. */
export interface ImageReadOptions {
  /** Largest width x height decoded (default {@link DEFAULT_MAX_PIXELS}); refused from the header, before decoding. */
  maxPixels?: number;
  /** How the caller raises the budget, for the refusal's message (default: "the maxPixels option"). */
  raiseWith?: string;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

type Format = 'png' | 'jpeg';

/**
 * Decodes a PNG or JPEG (detected from the first bytes) to 8-bit RGB or RGBA.
 *
 * PNG: any colour type and bit depth; grey becomes RGB, palette entries are looked up, 16-bit
 * samples are scaled to 8 bits. `channels` is 4 when the file has alpha (an alpha channel or a
 * tRNS chunk), else 3. JPEG: baseline and progressive, grey or colour; always 3 channels.
 *
 * @param bytes the whole file
 * @param name used in error messages (a path, or how the caller knows these bytes)
 * @throws ImageError for anything that is not a readable PNG or JPEG
 */
export function decodeImage(bytes: Uint8Array, name = '<image bytes>', opts: ImageReadOptions = {}): DecodedImage {
  const format = sniff(bytes, name);
  if (format === 'jpeg') return decodeJpeg(bytes, name, opts);
  const png = readPng(bytes, name, false, opts);
  const n = png.width * png.height;
  if (png.alpha) return { data: new Uint8Array(png.data.buffer, png.data.byteOffset, n * 4), width: png.width, height: png.height, channels: 4 };
  const rgb = new Uint8Array(n * 3);
  const src = png.data;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    rgb[i * 3] = src[j]!;
    rgb[i * 3 + 1] = src[j + 1]!;
    rgb[i * 3 + 2] = src[j + 2]!;
  }
  return { data: rgb, width: png.width, height: png.height, channels: 3 };
}

/**
 * Reads and decodes a PNG or JPEG file (see {@link decodeImage}).
 *
 * @throws ImageError naming `path` when the file is missing, unreadable, a directory, not an
 * image, or a corrupt or truncated image
 */
export async function readImage(path: string, opts: ImageReadOptions = {}): Promise<DecodedImage> {
  return decodeImage(await readBytes(path), path, opts);
}

/** What {@link inspectImageFile} learns from a file without decoding it. */
export interface ImageInfo {
  format: 'png' | 'jpeg';
  /** From the header (0 for a JPEG whose frame header follows its first scan: known only by decoding). */
  width: number;
  height: number;
}

/**
 * Every check {@link readImage} makes before decoding (the file is readable, is a PNG or JPEG, its
 * header is sound, its size is within the budget, a PNG's chunks are intact), without decoding:
 * milliseconds per file, so a list of inputs can be checked before any of them costs GPU work.
 * A file that passes can still fail to decode (damaged compressed data is found only by inflating it).
 *
 * @throws ImageError naming `path`, as readImage would
 */
export async function inspectImageFile(path: string, opts: ImageReadOptions = {}): Promise<ImageInfo> {
  const bytes = await readBytes(path);
  if (sniff(bytes, path) === 'png') {
    const h = checkPngHeader(bytes, path, opts);
    return { format: 'png', width: h.width, height: h.height };
  }
  const size = checkJpegHeader(bytes, path, opts);
  return { format: 'jpeg', width: size?.width ?? 0, height: size?.height ?? 0 };
}

/**
 * Encodes 8-bit pixels as a PNG: 1 channel gives a greyscale PNG (label maps), 3 RGB, 4 RGBA.
 * Lossless: {@link decodeImage} (or {@link readLabelImage} for 1 channel) returns the same bytes.
 *
 * @param data `height * width * channels` bytes, interleaved, row-major
 * @throws RangeError when the sizes and the data length disagree
 */
export function encodePng(data: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new RangeError(`encodePng: width and height must be positive integers, got ${width}x${height}`);
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new RangeError(`encodePng: channels must be 1, 3 or 4, got ${String(channels)}`);
  if (data.length !== width * height * channels)
    throw new RangeError(`encodePng: data has ${data.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`);
  // PNG colour types: 0 grey, 2 RGB, 6 RGBA. Input and output types match, so pngjs copies rows
  // as they are instead of converting through RGBA.
  const colorType = channels === 1 ? 0 : channels === 3 ? 2 : 6;
  const buf = PNG.sync.write(
    { width, height, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) } as unknown as InstanceType<typeof PNG>,
    // Level 6 is zlib's default: level 9 (pngjs's choice) is several times slower for ~1% smaller files.
    { colorType, inputColorType: colorType, inputHasAlpha: channels === 4, bitDepth: 8, deflateLevel: 6 },
  );
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Encodes (see {@link encodePng}) and writes a PNG atomically: a temporary file beside `path`,
 * fsync, rename. The parent directory must exist.
 *
 * @throws RangeError for inconsistent sizes (before anything is written); ImageError naming
 * `path` when the file cannot be written
 */
export async function writePng(path: string, data: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Promise<void> {
  const bytes = encodePng(data, width, height, channels);
  try {
    await writeFileAtomic(path, bytes);
  } catch (e) {
    throw new ImageError(path, `cannot write PNG (${describeFsError(e)})`, { cause: e });
  }
}

/**
 * Reads a label map: a PNG whose pixel values are class ids.
 *
 * - greyscale (any bit depth; grey + alpha too): the grey value, never rescaled, so a 4-bit
 *   or 16-bit file keeps its ids (16-bit values must be below 256);
 * - palette: the palette index, not its colour (VOC / Mapillary style files);
 * - RGB / RGBA: the first channel, for ids stored as grey replicated into three channels. A
 *   colour-coded label image (one colour per class, as in the original CamVid release) is
 *   rejected: its first channel is not a class id, and training on it would be silently wrong.
 *
 * Alpha and tRNS transparency are ignored: a label is a value, not a colour.
 *
 * @throws ImageError naming `path`: missing or unreadable file, not a PNG (JPEG compression
 * alters ids at region edges, so JPEG label maps are refused), corrupt or truncated PNG,
 * 16-bit values above 255, colour-coded RGB
 */
export async function readLabelImage(path: string, opts: ImageReadOptions = {}): Promise<LabelImage> {
  const bytes = await readBytes(path);
  const format = sniff(bytes, path);
  if (format === 'jpeg')
    throw new ImageError(path, 'is a JPEG; label maps must be lossless PNGs (JPEG compression changes class ids along every region edge)');
  const png = readPng(bytes, path, true, opts);
  const n = png.width * png.height;
  const labels = new Uint8Array(n);
  const src = png.data;
  const rgb = png.colorType === 2 || png.colorType === 6;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const v = src[j]!;
    if ((rgb && (v !== src[j + 1] || v !== src[j + 2])) || v > 255) {
      const at = `pixel (${i % png.width}, ${Math.floor(i / png.width)})`;
      if (v > 255) throw new ImageError(path, `16-bit label value ${v} at ${at} does not fit a class id byte (0..255)`);
      throw new ImageError(
        path,
        `is a colour label image (${at} is RGB (${v}, ${src[j + 1]}, ${src[j + 2]})); label maps must hold class ids ` +
          'as grey levels, palette indices or RGB with R = G = B. Convert colour-coded labels to ids first',
      );
    }
    labels[i] = v;
  }
  return { labels, width: png.width, height: png.height };
}

// ---------------------------------------------------------------------------------------------

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    const buf = await fsp.readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new ImageError(path, describeFsError(e), { cause: e });
  }
}

function describeFsError(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'file not found';
  if (code === 'EISDIR') return 'is a directory, not an image file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'a parent of this path is not a directory';
  return (e as Error).message ?? String(e);
}

/** What the first bytes say the file is; throws for anything but PNG and JPEG. */
function sniff(bytes: Uint8Array, name: string): Format {
  if (bytes.length === 0) throw new ImageError(name, 'is empty (0 bytes), not an image');
  if (PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length < 8 && PNG_SIGNATURE.slice(0, bytes.length).every((b, i) => bytes[i] === b))
    throw new ImageError(name, `truncated PNG (${bytes.length} bytes, shorter than the PNG signature)`);
  const ascii = String.fromCharCode(...bytes.subarray(0, 12));
  const other: [boolean, string][] = [
    [ascii.startsWith('GIF8'), 'a GIF image'],
    [ascii.startsWith('BM'), 'a BMP image'],
    [ascii.startsWith('RIFF') && ascii.slice(8, 12) === 'WEBP', 'a WebP image'],
    [ascii.startsWith('II*\0') || ascii.startsWith('MM\0*'), 'a TIFF image'],
    [ascii.startsWith('\x89PNG'), 'a damaged PNG (its signature is wrong: the file was probably transferred as text)'],
  ];
  for (const [hit, what] of other) if (hit) throw new ImageError(name, `is ${what}; only PNG and JPEG are supported`);
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  const text = looksLikeText(bytes) ? `, looks like text: ${JSON.stringify(new TextDecoder().decode(bytes.subarray(0, 40)))}` : '';
  throw new ImageError(name, `not a PNG or JPEG image (first bytes ${head}${text})`);
}

function looksLikeText(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 256);
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (b < 9 || (b > 13 && b < 32 && b !== 27)) return false;
  }
  return true;
}

interface RawPng {
  width: number;
  height: number;
  /** RGBA, 4 values per pixel; 16-bit values when read for labels from a 16-bit file. */
  data: Uint8Array | Uint16Array;
  alpha: boolean;
  colorType: number;
}

/**
 * Decodes a PNG with pngjs. `forLabels`: keep sample values as stored (no rescaling of 1..4-bit
 * or 16-bit grey), read palette indices instead of colours, and ignore tRNS (which would turn
 * one grey value into transparent black, i.e. class 0).
 */
function readPng(bytes: Uint8Array, name: string, forLabels: boolean, opts: ImageReadOptions): RawPng {
  const header = checkPngHeader(bytes, name, opts);
  let input = bytes;
  if (forLabels) input = labelView(bytes, name, header.colorType);
  let png: { width: number; height: number; data: Buffer | Uint16Array; alpha: boolean };
  try {
    png = PNG.sync.read(Buffer.from(input.buffer, input.byteOffset, input.byteLength), { skipRescale: forLabels }) as unknown as typeof png;
  } catch (e) {
    throw new ImageError(name, describePngError(e, bytes), { cause: e });
  }
  const data = png.data instanceof Uint16Array ? png.data : new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength);
  return { width: png.width, height: png.height, data, alpha: Boolean(png.alpha), colorType: header.colorType };
}

/**
 * Refuses an image over the pixel budget, from its header: a decompression bomb (a small file
 * claiming a huge image) costs nothing. Also refuses sizes no codec can hold.
 */
function checkBudget(name: string, format: string, width: number, height: number, opts: ImageReadOptions): void {
  const max = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(max > 0)) throw new RangeError(`maxPixels must be a positive number, got ${String(max)}`);
  if (width * height > max) {
    const mp = (n: number) => `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} megapixels`;
    throw new ImageError(
      name,
      `${format} of ${width}x${height} pixels (${mp(width * height)}) is over the decoding budget of ${mp(max)}; ` +
        `nothing was decoded. If the image is genuine, raise the budget with ${opts.raiseWith ?? 'the maxPixels option'}`,
    );
  }
}

/** The PNG checks made before decoding (header, budget, chunk checksums, data size): cheap, nothing inflated. */
function checkPngHeader(bytes: Uint8Array, name: string, opts: ImageReadOptions): PngHeader {
  const header = pngHeader(bytes, name);
  checkBudget(name, 'PNG', header.width, header.height, opts);
  checkPngChunks(bytes, name, header);
  return header;
}

/** Valid bit depths per PNG colour type (PNG spec, table 11.1). */
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

interface PngHeader {
  width: number;
  height: number;
  colorType: number;
  bitDepth: number;
}

/** IHDR fields, checked before decoding so a corrupt header fails with a useful message. */
function pngHeader(bytes: Uint8Array, name: string): PngHeader {
  if (bytes.length < 33) throw new ImageError(name, `truncated PNG (${bytes.length} bytes, too short to hold the image header)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') throw new ImageError(name, 'corrupt PNG: the first chunk is not IHDR');
  if (view.getUint32(8) !== 13) throw new ImageError(name, `corrupt PNG: the IHDR chunk is ${view.getUint32(8)} bytes long, not 13`);
  if (crc32(bytes.subarray(12, 29)) !== view.getUint32(29)) throw new ImageError(name, 'corrupt PNG: checksum mismatch in the image header (IHDR chunk)');
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const [bitDepth, colorType, compression, filter, interlace] = bytes.subarray(24, 29) as unknown as number[];
  if (width === 0 || height === 0 || width > 2 ** 31 - 1 || height > 2 ** 31 - 1) throw new ImageError(name, `corrupt PNG: image size ${width}x${height}`);
  const depths = PNG_DEPTHS[colorType!];
  if (!depths) throw new ImageError(name, `corrupt PNG: colour type ${colorType} does not exist (valid: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA)`);
  if (!depths.includes(bitDepth!)) throw new ImageError(name, `corrupt PNG: bit depth ${bitDepth} is not valid for colour type ${colorType} (valid: ${depths.join(', ')})`);
  if (compression !== 0 || filter !== 0) throw new ImageError(name, `corrupt PNG: unknown ${compression !== 0 ? `compression method ${compression}` : `filter method ${filter}`}`);
  if (interlace !== 0 && interlace !== 1) throw new ImageError(name, `corrupt PNG: unknown interlace method ${interlace}`);
  return { width, height, colorType: colorType!, bitDepth: bitDepth! };
}

/**
 * One pass over the chunks before decoding: every checksum (a damaged chunk is named, where the
 * decoder would say "unrecognised content at end of stream"), and the compressed image data
 * against the size it claims: deflate expands at most 1032:1, so IDAT bytes that cannot inflate
 * to the header's image mean a forged or damaged file, refused without inflating anything. A
 * file cut short is left to the decoder (reported as truncated).
 */
function checkPngChunks(bytes: Uint8Array, name: string, header: PngHeader): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let idat = 0;
  let complete = false;
  let at = 8;
  while (at + 12 <= bytes.length) {
    const len = view.getUint32(at);
    const end = at + 12 + len;
    if (end > bytes.length) return; // truncated: the decoder reports it
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (crc32(bytes.subarray(at + 4, at + 8 + len)) !== view.getUint32(at + 8 + len))
      throw new ImageError(name, `corrupt PNG: checksum mismatch in the ${/^[A-Za-z]{4}$/.test(type) ? type : 'unnamed'} chunk at byte ${at}`);
    if (type === 'IDAT') idat += len;
    if (type === 'IEND') {
      complete = true;
      break;
    }
    at = end;
  }
  if (!complete) return; // truncated: the decoder reports it
  const rowBytes = Math.ceil((header.width * PNG_CHANNELS[header.colorType]! * header.bitDepth) / 8);
  const raw = header.height * (1 + rowBytes); // without interlacing; interlaced data is larger
  if (idat * 1032 + 1024 < raw)
    throw new ImageError(name, `corrupt PNG: ${idat} bytes of image data cannot hold a ${header.width}x${header.height} image (${raw} bytes uncompressed; deflate expands at most 1032:1)`);
}

function describePngError(e: unknown, bytes: Uint8Array): string {
  const msg = (e as Error).message ?? String(e);
  // pngjs reports a file cut short in several ways (missing IEND, short read, inflate error);
  // a file without its IEND trailer is truncated whatever the decoder tripped over first.
  if (!hasIend(bytes)) return `truncated PNG (${bytes.length} bytes; the file ends before its IEND chunk)`;
  if (/crc/i.test(msg)) return `corrupt PNG: checksum mismatch (${msg})`;
  return `corrupt PNG (${msg})`;
}

function hasIend(bytes: Uint8Array): boolean {
  // IEND is the last chunk: length 0, type "IEND", CRC ae 42 60 82.
  const n = bytes.length;
  return n >= 12 && bytes[n - 8] === 0x49 && bytes[n - 7] === 0x45 && bytes[n - 6] === 0x4e && bytes[n - 5] === 0x44;
}

/**
 * The PNG rewritten for reading labels: tRNS chunks dropped, and for palette files each PLTE
 * entry i replaced by the colour (i, i, i), so the decoder's colour lookup yields the index
 * itself in every channel. This is exact even for palettes with repeated colours, where mapping
 * colours back to indices would be ambiguous. The original PLTE checksum is verified first, so
 * corruption is still reported.
 */
function labelView(bytes: Uint8Array, name: string, colorType: number): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  let changed = false;
  let at = 8;
  while (at + 12 <= bytes.length) {
    const len = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const end = at + 12 + len;
    if (end > bytes.length) break; // truncated: let the decoder report it with the rest
    if (type === 'tRNS') {
      changed = true;
    } else if (type === 'PLTE' && colorType === 3) {
      if (crc32(bytes.subarray(at + 4, at + 8 + len)) !== view.getUint32(at + 8 + len))
        throw new ImageError(name, 'corrupt PNG: checksum mismatch in the palette (PLTE) chunk');
      const chunk = bytes.slice(at, end);
      for (let i = 0; i < len / 3; i++) chunk.fill(i, 8 + i * 3, 8 + i * 3 + 3);
      new DataView(chunk.buffer).setUint32(8 + len, crc32(chunk.subarray(4, 8 + len)));
      parts.push(chunk);
      changed = true;
    } else {
      parts.push(bytes.subarray(at, end));
    }
    at = end;
  }
  if (!changed) return bytes;
  if (at < bytes.length) parts.push(bytes.subarray(at));
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as used by PNG chunks (over type and data). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The frame size from a JPEG's SOF marker, read before decoding, or null if no frame header comes
 * before the first scan (the decoder then reports the file as corrupt).
 */
function jpegSize(bytes: Uint8Array): { width: number; height: number; huffman: boolean } | null {
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // markers without a length
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null; // start of scan / end of image: no frame header
    const len = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (at + 9 > bytes.length) return null;
      return { height: (bytes[at + 5]! << 8) | bytes[at + 6]!, width: (bytes[at + 7]! << 8) | bytes[at + 8]!, huffman: marker < 0xc8 };
    }
    at += 2 + len;
  }
  return null;
}

/** The JPEG checks made before decoding; the frame size, or null if no frame header precedes the first scan. */
function checkJpegHeader(bytes: Uint8Array, name: string, opts: ImageReadOptions): { width: number; height: number } | null {
  const size = jpegSize(bytes);
  if (size) {
    checkBudget(name, 'JPEG', size.width, size.height, opts);
    // Every 8x8 block of the first component costs at least one bit of entropy-coded data (a DC
    // code), so a file can hold at most 512 pixels per byte: a 2 KB file claiming 16000x16000 is
    // forged or damaged, and is refused before the decoder allocates for the size it claims.
    // (Arithmetic coding, SOF9 and up, can go below a bit per block; jpeg-js does not read it.)
    if (size.huffman && size.width * size.height > bytes.length * 512)
      throw new ImageError(name, `corrupt JPEG: its header claims ${size.width}x${size.height} pixels, more than ${bytes.length} bytes can encode`);
  }
  return size;
}

function decodeJpeg(bytes: Uint8Array, name: string, opts: ImageReadOptions): DecodedImage {
  checkJpegHeader(bytes, name, opts);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let img: { width: number; height: number; data: Uint8Array };
  try {
    // tolerantDecoding off: jpeg-js would otherwise fill a truncated scan with grey and succeed.
    // A file that decodes is accepted even with bytes after its end marker (phones append data).
    // The decoder's own limits follow the budget (it checks them too, if the header scan above
    // found no frame header).
    img = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: false,
      maxResolutionInMP: maxPixels / 1e6,
      maxMemoryUsageInMB: Math.max(2048, Math.ceil((maxPixels * 8) / 2 ** 20)),
    });
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    throw new ImageError(name, hasEoi(bytes) ? `corrupt JPEG (${msg})` : `truncated JPEG (${bytes.length} bytes; the file ends before its end-of-image marker)`, { cause: e });
  }
  if (!(img.width > 0 && img.height > 0) || img.data.length !== img.width * img.height * 3)
    throw new ImageError(name, `corrupt JPEG (decoded ${img.width}x${img.height} with ${img.data.length} bytes)`);
  return { data: img.data, width: img.width, height: img.height, channels: 3 };
}

/**
 * Whether an end-of-image marker (FF D9) is near the end of the file: used only to tell
 * "truncated" from "corrupt" once decoding has failed. Only the tail is searched, because an
 * embedded EXIF thumbnail has its own EOI early in the file.
 */
function hasEoi(bytes: Uint8Array): boolean {
  const from = Math.max(2, bytes.length - 4096);
  for (let i = bytes.length - 2; i >= from; i--) if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  return false;
}
