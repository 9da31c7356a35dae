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
import { decodeImage, encodePng, readImage, readLabelImage, writePng, ImageError, DEFAULT_MAX_PIXELS } from '../data/image-io.js';
import { suite } from './harness.js';
import { rng } from './check.js';

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

// --- hostile files (issue 24) ----------------------------------------------------------------

/** The same PNG with IHDR fields changed (checksum fixed up, so only the change is wrong). */
function patchIhdr(png: Uint8Array, edit: (ihdr: DataView) => void): Uint8Array {
  const out = png.slice();
  const view = new DataView(out.buffer);
  edit(new DataView(out.buffer, 16, 13));
  view.setUint32(29, crc32(out.subarray(12, 29)));
  return out;
}

/** The same JPEG with its frame header (SOF) claiming width x height. */
function patchSof(jpg: Uint8Array, width: number, height: number): Uint8Array {
  const out = jpg.slice();
  for (let at = 2; at + 9 < out.length; ) {
    const marker = out[at + 1]!;
    const len = (out[at + 2]! << 8) | out[at + 3]!;
    if (marker === 0xc0 || marker === 0xc2) {
      out[at + 5] = height >> 8;
      out[at + 6] = height & 255;
      out[at + 7] = width >> 8;
      out[at + 8] = width & 255;
      return out;
    }
    at += 2 + len;
  }
  throw new Error('no SOF marker');
}

const refusesSync = (fn: () => unknown, ...res: RegExp[]) => rejects(async () => fn(), ...res);

t('decompression bombs are refused from the header, before decoding, with the budget and how to raise it', async () => {
  // A 1-bit 8000x8000 PNG of zeros: 8 MB of scanlines deflate to ~8 KB; decoded as RGBA it is
  // 256 MB (before: decoded, 40 s; a 16000x16000 one took 173 s and 5.8 GB).
  const w = 8000;
  const bomb = buildPng(w, w, 1, 0, Array.from({ length: w }, () => new Uint8Array(w / 8)));
  assert.ok(bomb.length < 20_000, `bomb is ${bomb.length} bytes`);
  await refusesSync(() => decodeImage(bomb, 'bomb.png'), /^bomb\.png: PNG of 8000x8000 pixels \(64 megapixels\) is over the decoding budget of 40 megapixels; nothing was decoded\. .*raise the budget with the maxPixels option/);
  const path = join(dir, 'bomb.png');
  await writeFile(path, bomb);
  await rejects(() => readImage(path, { raiseWith: '--max-megapixels' }), /bomb\.png: PNG of 8000x8000 .*raise the budget with --max-megapixels/);
  await rejects(() => readLabelImage(path), /bomb\.png: PNG of 8000x8000 pixels .* over the decoding budget/);
  // The budget is the caller's: a small image over a small budget is refused, under it decodes.
  const small = encodePng(pattern(100 * 60 * 3, 1), 100, 60, 3);
  await refusesSync(() => decodeImage(small, 'small.png', { maxPixels: 5999 }), /100x60 pixels \(0\.0 megapixels\) is over the decoding budget of 0\.0 megapixels/);
  assert.is(decodeImage(small, 'small.png', { maxPixels: 6000 }).width, 100);
  assert.is(DEFAULT_MAX_PIXELS, 40_000_000);

  // JPEG: a 1 KB file whose frame header claims 16000x16000 (before: 58 s and 3.7 GB, then "corrupt JPEG").
  const jpg = new Uint8Array(jpeg.encode({ width: 16, height: 16, data: pattern(16 * 16 * 4, 3) }, 90).data);
  await refusesSync(() => decodeImage(patchSof(jpg, 16000, 16000), 'bomb.jpg'), /bomb\.jpg: JPEG of 16000x16000 pixels \(256 megapixels\) is over the decoding budget/);
  // Under the budget (or with it raised) the size is still checked against the bytes: at most 512 pixels per byte.
  await refusesSync(() => decodeImage(patchSof(jpg, 4000, 4000), 'forged.jpg'), /forged\.jpg: corrupt JPEG: its header claims 4000x4000 pixels, more than \d+ bytes can encode/);
  await refusesSync(() => decodeImage(patchSof(jpg, 16000, 16000), 'forged.jpg', { maxPixels: 1e9 }), /corrupt JPEG: its header claims 16000x16000/);
  assert.is(decodeImage(jpg, 'ok.jpg', { maxPixels: 256 }).width, 16);

  // A PNG whose image data is far too small for the size it claims is refused without inflating it.
  const forged = patchIhdr(small, (v) => v.setUint32(0, 1_000_000));
  await refusesSync(() => decodeImage(forged, 'forged.png', { maxPixels: 1e8 }), /forged\.png: corrupt PNG: \d+ bytes of image data cannot hold a 1000000x60 image/);
});

t('damaged PNG headers and chunks say what is wrong (not "unrecognised content at end of stream")', async () => {
  const png = encodePng(pattern(8 * 8 * 3, 5), 8, 8, 3);
  const cases: [string, Uint8Array, RegExp][] = [
    ['bit depth 7', patchIhdr(png, (v) => v.setUint8(8, 7)), /corrupt PNG: bit depth 7 is not valid for colour type 2 \(valid: 8, 16\)/],
    ['colour type 5', patchIhdr(png, (v) => v.setUint8(9, 5)), /corrupt PNG: colour type 5 does not exist/],
    ['interlace 2', patchIhdr(png, (v) => v.setUint8(12, 2)), /corrupt PNG: unknown interlace method 2/],
    ['compression 1', patchIhdr(png, (v) => v.setUint8(10, 1)), /corrupt PNG: unknown compression method 1/],
  ];
  // A bad checksum in the header, and in the image data (the chunk is named).
  const badHeader = png.slice();
  badHeader[30] ^= 1;
  cases.push(['IHDR checksum', badHeader, /corrupt PNG: checksum mismatch in the image header \(IHDR chunk\)/]);
  const badData = png.slice();
  badData[badData.length - 20] ^= 1; // the IDAT checksum (IEND is the last 12 bytes)
  cases.push(['IDAT checksum', badData, /corrupt PNG: checksum mismatch in the IDAT chunk at byte 33/]);
  for (const [what, bytes, re] of cases) await refusesSync(() => decodeImage(bytes, `${what}.png`), new RegExp(`^${what}\\.png: `), re);
});

t('fuzz: 300 PNGs and JPEGs with forged sizes and flipped bytes decode within the budget or are refused as ImageError', async () => {
  // Bounds per case: files are under 2 KB and the budget is 100k pixels, so whatever a case
  // decodes is at most 400 KB of RGBA; refusals happen from the header. Not timed (see docs/testing.md).
  const r = rng(2024);
  const int = (n: number) => Math.floor(r() * n);
  const png = encodePng(pattern(24 * 16 * 3, 8), 24, 16, 3);
  const jpg = new Uint8Array(jpeg.encode({ width: 24, height: 16, data: pattern(24 * 16 * 4, 6) }, 80).data);
  const maxPixels = 100_000;
  let decoded = 0;
  let refused = 0;
  for (let iter = 0; iter < 300; iter++) {
    const isPng = r() < 0.5;
    const side = () => [1, 24, 300, 317, 1000, 65535, 2 ** 31 - 1, 2 ** 32 - 1, 0][int(9)]!;
    let bytes = r() < 0.4 ? (isPng ? png : jpg)
      : isPng
      ? patchIhdr(png, (v) => (r() < 0.7 ? (v.setUint32(0, side()), v.setUint32(4, side())) : v.setUint8(8 + int(5), int(256))))
      : patchSof(jpg, side() & 0xffff, side() & 0xffff);
    if (r() < 0.3) {
      bytes = bytes.slice();
      bytes[int(bytes.length)] ^= 1 << int(8);
    }
    try {
      const img = decodeImage(bytes, `case-${iter}`, { maxPixels });
      assert.ok(img.width * img.height <= maxPixels, `iteration ${iter}: decoded ${img.width}x${img.height} over the budget`);
      assert.is(img.data.length, img.width * img.height * img.channels);
      decoded++;
    } catch (e) {
      if (!(e instanceof ImageError)) assert.unreachable(`iteration ${iter}: threw ${(e as Error)?.stack ?? e}, not an ImageError`);
      assert.ok((e as Error).message.startsWith(`case-${iter}: `), (e as Error).message);
      refused++;
    }
  }
  assert.ok(decoded > 20 && refused > 150, `decoded ${decoded}, refused ${refused}: both must occur`);
});


t.run();
