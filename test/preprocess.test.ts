/** Image bytes -> normalised NHWC tensor on the GPU, against a float64 reference. */
import * as assert from 'uvu/assert';
import { imageToTensor, labelsToTensor, IMAGENET_MEAN, IMAGENET_STD } from '../engine/ops/preprocess.js';
import { suite } from './harness.js';
import { expectClose, rng, testEngine } from './gpu.js';
import { refImageToTensor, refLabelsToTensor } from './ref/preprocess.js';

const t = suite('preprocess');
const bytes = (n: number, seed: number) => {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
};

t('reference on a hand-computed pixel', () => {
  // One white RGB pixel: (1 - mean) / std.
  const out = refImageToTensor([255, 255, 255], 1, 1, 3, 1, 1, IMAGENET_MEAN, IMAGENET_STD);
  assert.ok(Math.abs(out[0]! - (1 - 0.485) / 0.229) < 1e-12);
  // 2x1 -> 1x1 downscale samples the midpoint: average of the two pixels.
  const mid = refImageToTensor([0, 0, 0, 255, 255, 255], 2, 1, 3, 1, 1, [0, 0, 0], [1, 1, 1]);
  assert.ok(Math.abs(mid[0]! - 0.5) < 1e-12);
});

t('RGB and RGBA, same size and resized, odd sizes (rel err < 1e-4: f32 cancellation in v - mean)', async () => {
  const e = await testEngine();
  for (const [w, h, ch, ow, oh, seed] of [
    [7, 9, 3, 7, 9, 1], [33, 17, 4, 33, 17, 2], [33, 17, 3, 64, 32, 3], [65, 31, 4, 32, 16, 4], [5, 3, 3, 5, 3, 5],
  ] as const) {
    const data = bytes(w * h * ch, seed);
    const want = refImageToTensor(data, w, h, ch, ow, oh, IMAGENET_MEAN, IMAGENET_STD);
    await e.scope(async () => {
      const x = imageToTensor(e, { data, width: w, height: h, channels: ch }, { outWidth: ow, outHeight: oh });
      assert.equal(x.shape, [1, oh, ow, 3]);
      expectClose(await x.read(), want, 1e-4, `${w}x${h}x${ch} -> ${ow}x${oh}`);
    });
  }
});

t('writes image i of a batch in place', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const batch = e.empty([3, 4, 6, 3]);
    const imgs = [0, 1, 2].map((i) => bytes(6 * 4 * 3, 10 + i));
    imgs.forEach((data, i) => imageToTensor(e, { data, width: 6, height: 4, channels: 3 }, { into: { tensor: batch, index: i } }));
    const got = await batch.read();
    imgs.forEach((data, i) => {
      const want = refImageToTensor(data, 6, 4, 3, 6, 4, IMAGENET_MEAN, IMAGENET_STD);
      expectClose(got.subarray(i * 72, (i + 1) * 72), want, 1e-4, `image ${i}`);
    });
  });
});

t('augmentation: crop window and flip, image bilinear and labels nearest, in one batch', async () => {
  const e = await testEngine();
  const [w, h] = [37, 23];
  const img = bytes(w * h * 3, 21);
  const lab = Uint8Array.from(bytes(w * h, 22), (v) => v % 19);
  const cases = [
    { crop: { x: 3.5, y: 2, width: 24.25, height: 15 }, flip: true },
    { crop: { x: 0, y: 0, width: w, height: h }, flip: true },
    { crop: { x: 10, y: 5, width: 27, height: 18 }, flip: false },
  ];
  await e.scope(async () => {
    const images = e.empty([3, 12, 16, 3]);
    const labels = e.empty([3, 12, 16], 'u32');
    cases.forEach((c, i) => {
      imageToTensor(e, { data: img, width: w, height: h, channels: 3 }, { outWidth: 16, outHeight: 12, ...c, into: { tensor: images, index: i } });
      labelsToTensor(e, { data: lab, width: w, height: h }, { outWidth: 16, outHeight: 12, ...c, into: { tensor: labels, index: i } });
    });
    const gi = await images.read();
    const gl = await labels.read();
    cases.forEach((c, i) => {
      // Sample coordinates are f32 on the GPU: ~1e-7 px of rounding times a slope of up to
      // 4.4 per px gives ~1e-6 absolute near zero, hence the 0.01 floor (abs err < 1e-6 there).
      expectClose(gi.subarray(i * 576, (i + 1) * 576), refImageToTensor(img, w, h, 3, 16, 12, IMAGENET_MEAN, IMAGENET_STD, c.crop, c.flip), 1e-4, `image ${i}`, 0.01);
      assert.equal(Array.from(gl.subarray(i * 192, (i + 1) * 192)), refLabelsToTensor(lab, w, h, 16, 12, c.crop, c.flip), `labels ${i}`);
    });
  });
  assert.throws(() => imageToTensor(e, { data: img, width: w, height: h, channels: 3 }, { crop: { x: 30, y: 0, width: 10, height: 5 } }), /must lie inside the 37x23 image/);
  assert.throws(() => labelsToTensor(e, { data: lab.subarray(1), width: w, height: h }), /needs 851 bytes, got 850/);
});

t('bad images are refused before any upload', async () => {
  const e = await testEngine();
  assert.throws(() => imageToTensor(e, { data: new Uint8Array(10), width: 2, height: 2, channels: 3 }), /needs 12 bytes, got 10/);
  assert.throws(() => imageToTensor(e, { data: new Uint8Array(0), width: 0, height: 2, channels: 3 }), /positive integers, got 0x2/);
  assert.throws(() => imageToTensor(e, { data: new Uint8Array(8), width: 2, height: 2, channels: 2 as 3 }), /channels must be 3 \(RGB\) or 4/);
});

t('pixel data that is not 8-bit (a Float32Array of [0, 1], null, an Array) is refused with what to do', async () => {
  const e = await testEngine();
  const before = e.stats();
  // Before: a Float32Array of 12 values in [0, 1] passed the length check and gave a wrong image silently.
  const cases: [unknown, RegExp][] = [
    [new Float32Array(12).fill(0.5), /imageToTensor: data must be a Uint8Array or Uint8ClampedArray of 8-bit values \(0\.\.255\), got Float32Array; for float pixels in \[0, 1\] pass Uint8ClampedArray\.from/],
    [null, /data must be a Uint8Array .*got null/], // before: a raw TypeError
    [undefined, /got undefined/],
    [new Array(12).fill(1), /got Array/],
    [new Uint16Array(12), /got Uint16Array/],
  ];
  for (const [data, re] of cases) assert.throws(() => imageToTensor(e, { data: data as Uint8Array, width: 2, height: 2, channels: 3 }), (err: unknown) => err instanceof Error && err.name === 'ShapeError' && re.test(err.message));
  assert.throws(() => imageToTensor(e, null as never), /imageToTensor: expected an image \{data, width, height, channels\}, got null/);
  // Node Buffers and clamped arrays are 8-bit: accepted.
  imageToTensor(e, { data: Buffer.alloc(12), width: 2, height: 2, channels: 3 }).dispose();
  imageToTensor(e, { data: new Uint8ClampedArray(12), width: 2, height: 2, channels: 3 }).dispose();
  assert.is(e.stats().liveTensors, before.liveTensors);
});

t.run();
