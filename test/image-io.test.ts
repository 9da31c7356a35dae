/**
 * PNG/JPEG reading and writing (data/image-io.ts). CPU only, files in a fresh temp folder.
 *
 * References: PNG must round-trip exactly; JPEG (lossy) within a stated mean error of the
 * encoded pixels. Palette, 16-bit and tRNS label files are built byte by byte here (pngjs
 * cannot write them), from the PNG specification's chunk layout.
 */
import * as assert from 'uvu/assert';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { decodeImage, encodePng, readImage, readLabelImage, writePng, ImageError } from '../data/image-io.js';
import { suite } from './harness.js';

const t = suite('image-io');

let dir = '';
t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'canet-image-io-'));
});
t.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Deterministic bytes (a small LCG): enough to make every value and filter type appear. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Expects `fn` to reject with an ImageError whose message matches every regex. */
async function rejects(fn: () => Promise<unknown>, ...res: RegExp[]): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof ImageError)) throw new Error(`expected an ImageError, got ${String(e)}`);
    for (const re of res) if (!re.test(e.message)) throw new Error(`message ${JSON.stringify(e.message)} does not match ${re}`);
    return;
  }
  throw new Error('expected a rejection');
}

// --- hand-built PNGs -----------------------------------------------------------------------

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Array.from(type, (ch) => ch.charCodeAt(0)), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A PNG from raw scanlines (filter type 0 prepended here) and extra chunks before IDAT. */
function buildPng(width: number, height: number, bitDepth: number, colorType: number, rows: Uint8Array[], extra: Uint8Array[] = []): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([bitDepth, colorType, 0, 0, 0], 8);
  const raw = new Uint8Array(rows.reduce((s, r) => s + r.length + 1, 0));
  let o = 0;
  for (const r of rows) {
    raw[o++] = 0;
    raw.set(r, o);
    o += r.length;
  }
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), ...extra, chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// --- tests ---------------------------------------------------------------------------------

t('PNG round trip is exact for 1, 3 and 4 channels at odd sizes', async () => {
  for (const [w, h, c] of [[7, 5, 3], [1, 1, 3], [13, 9, 4], [33, 17, 1], [5, 1, 4]] as const) {
    const data = pattern(w * h * c, w * 31 + c);
    const png = encodePng(data, w, h, c);
    if (c === 1) {
      const path = join(dir, `grey-${w}x${h}.png`);
      await writePng(path, data, w, h, 1);
      const lab = await readLabelImage(path);
      assert.is(lab.width, w);
      assert.is(lab.height, h);
      assert.equal(Array.from(lab.labels), Array.from(data));
      // As a photo, grey comes back as RGB with equal channels.
      const img = decodeImage(png);
      assert.is(img.channels, 3);
      for (let i = 0; i < w * h; i++) if (img.data[i * 3] !== data[i] || img.data[i * 3 + 2] !== data[i]) assert.unreachable(`grey pixel ${i}`);
      continue;
    }
    const img = decodeImage(png, 'mem');
    assert.equal([img.width, img.height, img.channels], [w, h, c]);
    assert.equal(Array.from(img.data), Array.from(data), `${w}x${h}x${c}`);
    const path = join(dir, `rt-${w}x${h}x${c}.png`);
    await writePng(path, data, w, h, c);
    const back = await readImage(path);
    assert.equal(Array.from(back.data), Array.from(data));
  }
  // Atomic writes leave no temporary files behind.
  const left = (await readdir(dir)).filter((f) => f.startsWith('.'));
  assert.equal(left, []);
});

t('JPEG decodes close to what was encoded (quality 95: mean error < 3 levels)', async () => {
  const w = 48;
  const h = 32;
  const rgba = new Uint8Array(w * h * 4);
  // Smooth gradients: JPEG's home ground, so the error bound is tight.
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) rgba.set([(x * 255) / (w - 1), (y * 255) / (h - 1), 128 + 60 * Math.sin(x / 7), 255], (y * w + x) * 4);
  const bytes = new Uint8Array(jpeg.encode({ width: w, height: h, data: rgba }, 95).data);
  const path = join(dir, 'photo.jpg');
  await writeFile(path, bytes);
  const img = await readImage(path);
  assert.equal([img.width, img.height, img.channels], [w, h, 3]);
  let err = 0;
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) err += Math.abs(img.data[i * 3 + c]! - rgba[i * 4 + c]!);
  const mean = err / (w * h * 3);
  assert.ok(mean < 3, `mean abs error ${mean.toFixed(2)}`);
});

t('format comes from the magic bytes, not the extension', async () => {
  const data = pattern(4 * 3 * 3, 5);
  const pngAsJpg = join(dir, 'really-a-png.jpg');
  await writeFile(pngAsJpg, encodePng(data, 4, 3, 3));
  assert.equal(Array.from((await readImage(pngAsJpg)).data), Array.from(data));
  const jpgAsPng = join(dir, 'really-a-jpeg.png');
  await writeFile(jpgAsPng, jpeg.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4).fill(200) }, 90).data);
  const img = await readImage(jpgAsPng);
  assert.equal([img.width, img.height, img.channels], [8, 8, 3]);
});

t('label maps: palette indices (not colours), low and 16-bit grey, tRNS ignored, RGB grey', async () => {
  // Palette with repeated colours: indices 1 and 3 are both black, so only the index is exact.
  const plte = chunk('PLTE', new Uint8Array([255, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 9, 9, 9]));
  const trns = chunk('tRNS', new Uint8Array([0, 128]));
  const palettePath = join(dir, 'palette.png');
  await writeFile(palettePath, buildPng(3, 2, 8, 3, [new Uint8Array([0, 1, 2]), new Uint8Array([3, 4, 1])], [plte, trns]));
  assert.equal(Array.from((await readLabelImage(palettePath)).labels), [0, 1, 2, 3, 4, 1]);

  // 4-bit grey: ids 0..15 stay ids (a photo decoder would scale them to 0..255).
  const fourBit = join(dir, 'grey4.png');
  await writeFile(fourBit, buildPng(4, 1, 4, 0, [new Uint8Array([0x01, 0xf7])]));
  assert.equal(Array.from((await readLabelImage(fourBit)).labels), [0, 1, 15, 7]);

  // 16-bit grey with a tRNS colour equal to one of the ids: values kept, transparency ignored.
  const sixteen = join(dir, 'grey16.png');
  await writeFile(sixteen, buildPng(3, 1, 16, 0, [new Uint8Array([0, 5, 0, 18, 0, 255])], [chunk('tRNS', new Uint8Array([0, 18]))]));
  assert.equal(Array.from((await readLabelImage(sixteen)).labels), [5, 18, 255]);
  const tooBig = join(dir, 'grey16-big.png');
  await writeFile(tooBig, buildPng(2, 1, 16, 0, [new Uint8Array([0, 1, 1, 0])]));
  await rejects(() => readLabelImage(tooBig), /grey16-big\.png/, /16-bit label value 256 at pixel \(1, 0\)/);

  // RGB with R = G = B: the first channel.
  const rgbGrey = join(dir, 'rgb-grey.png');
  await writePng(rgbGrey, new Uint8Array([7, 7, 7, 18, 18, 18]), 2, 1, 3);
  assert.equal(Array.from((await readLabelImage(rgbGrey)).labels), [7, 18]);
});

t('label maps: colour-coded RGB and JPEG are refused with an explanation', async () => {
  const colour = join(dir, 'colour-labels.png');
  await writePng(colour, new Uint8Array([128, 64, 128, 244, 35, 232]), 2, 1, 3);
  await rejects(() => readLabelImage(colour), /colour-labels\.png/, /colour label image \(pixel \(0, 0\) is RGB \(128, 64, 128\)\)/, /Convert colour-coded labels/);
  const jpg = join(dir, 'labels.jpg');
  await writeFile(jpg, jpeg.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4).fill(3) }, 90).data);
  await rejects(() => readLabelImage(jpg), /labels\.jpg: is a JPEG; label maps must be lossless PNGs/);
});

t('errors name the file: missing, directory, empty, text, other formats', async () => {
  await rejects(() => readImage(join(dir, 'nope.png')), /nope\.png: file not found/);
  await rejects(() => readLabelImage(join(dir, 'nope-label.png')), /nope-label\.png: file not found/);
  await mkdir(join(dir, 'folder.png'));
  await rejects(() => readImage(join(dir, 'folder.png')), /folder\.png: is a directory/);
  const empty = join(dir, 'empty.png');
  await writeFile(empty, new Uint8Array(0));
  await rejects(() => readImage(empty), /empty\.png: is empty \(0 bytes\)/);
  const text = join(dir, 'notes.png');
  await writeFile(text, 'these are not pixels\n');
  await rejects(() => readImage(text), /notes\.png: not a PNG or JPEG image \(first bytes 74 68 65 73/, /looks like text: "these are not pixels/);
  const gif = join(dir, 'anim.png');
  await writeFile(gif, 'GIF89a\x01\x00\x01\x00');
  await rejects(() => readImage(gif), /anim\.png: is a GIF image; only PNG and JPEG are supported/);
  assert.throws(() => decodeImage(new Uint8Array([1, 2, 3]), 'blob-7'), /^blob-7: not a PNG or JPEG image/);
});

t('truncated and corrupt PNG and JPEG files are reported as such', async () => {
  const png = encodePng(pattern(16 * 16 * 3, 9), 16, 16, 3);
  for (const keep of [png.length - 1, png.length - 12, Math.floor(png.length / 2), 40, 20, 5]) {
    const path = join(dir, `cut-${keep}.png`);
    await writeFile(path, png.subarray(0, keep));
    await rejects(() => readImage(path), new RegExp(`cut-${keep}\\.png: truncated PNG \\(${keep} bytes`));
  }
  // One flipped bit inside IDAT: the chunk checksum catches it.
  const bad = png.slice();
  bad[60] ^= 0x10;
  const badPath = join(dir, 'flipped.png');
  await writeFile(badPath, bad);
  await rejects(() => readImage(badPath), /flipped\.png: corrupt PNG/);

  const jpg = new Uint8Array(jpeg.encode({ width: 16, height: 16, data: pattern(16 * 16 * 4, 3) }, 90).data);
  for (const keep of [jpg.length - 2, Math.floor(jpg.length / 2), 100]) {
    const path = join(dir, `cut-${keep}.jpg`);
    await writeFile(path, jpg.subarray(0, keep));
    await rejects(() => readImage(path), new RegExp(`cut-${keep}\\.jpg: truncated JPEG \\(${keep} bytes`));
  }
});

t('encodePng and writePng refuse inconsistent sizes; writePng names an unwritable path', async () => {
  assert.throws(() => encodePng(new Uint8Array(11), 2, 2, 3), /data has 11 bytes, expected 2x2x3 = 12/);
  assert.throws(() => encodePng(new Uint8Array(4), 0, 2, 1), /width and height must be positive integers, got 0x2/);
  assert.throws(() => encodePng(new Uint8Array(8), 2, 2, 2 as 3), /channels must be 1, 3 or 4, got 2/);
  const path = join(dir, 'no-such-folder', 'x.png');
  await rejects(() => writePng(path, new Uint8Array(3), 1, 1, 3), /no-such-folder[/\\]x\.png: cannot write PNG/);
});

t.run();
