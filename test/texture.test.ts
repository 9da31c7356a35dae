/**
 * Textures in and out on the GPU (Dawn textures in Node; the same code runs in the browser tests):
 * texture rows -> tensor against imageToTensor on the same bytes (bit for bit) and the float64
 * reference; the colorize kernels against engine/palette.ts `colorize`/`overlay` (the CPU
 * reference: exact for the palette lookup, within 1 level for the f32 blend); the Segmenter's
 * ownership of its textures; and the errors for unusable textures.
 */
import * as assert from 'uvu/assert';
import { createEngine, colorize, overlay, colorizeIds, colorizeToTexture, imageToTensor, IMAGENET_MEAN, IMAGENET_STD, ops, rowPitchWords, rowsToTexture, Segmenter, TextureUsage, textureToRows, textureToTensor, ShapeError, type Engine, type RgbaRows } from '../entry/node.js';
import { suite } from './harness.js';
import { expectClose, rng, testEngine } from './gpu.js';
import { refImageToTensor } from './ref/preprocess.js';

const t = suite('texture');
const bytes = (n: number, seed: number): Uint8Array => {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
};

function makeTexture(e: Engine, rgba: Uint8Array, w: number, h: number, format: GPUTextureFormat = 'rgba8unorm', usage = TextureUsage.COPY_SRC | TextureUsage.COPY_DST | TextureUsage.TEXTURE_BINDING): GPUTexture {
  const tex = e.device.createTexture({ size: [w, h, 1], format, usage, label: 'test input' });
  let data = rgba;
  if (format.startsWith('bgra')) {
    data = rgba.slice();
    for (let i = 0; i < data.length; i += 4) [data[i], data[i + 2]] = [rgba[i + 2]!, rgba[i]!];
  }
  e.device.queue.writeTexture({ texture: tex }, data as Uint8Array<ArrayBuffer>, { bytesPerRow: w * 4, rowsPerImage: h }, [w, h, 1]);
  return tex;
}

/** Reads an RGBA8 texture back (test only) as tightly packed bytes. */
async function readTexture(e: Engine, tex: GPUTexture): Promise<Uint8Array> {
  const pitch = rowPitchWords(tex.width) * 4;
  const buf = e.device.createBuffer({ size: pitch * tex.height, usage: 0x0001 | 0x0008 }); // MAP_READ | COPY_DST
  await e.flush();
  const enc = e.device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: buf, bytesPerRow: pitch, rowsPerImage: tex.height }, [tex.width, tex.height, 1]);
  e.device.queue.submit([enc.finish()]);
  await buf.mapAsync(0x0001);
  const raw = new Uint8Array(buf.getMappedRange().slice(0));
  buf.unmap();
  buf.destroy();
  const out = new Uint8Array(tex.width * tex.height * 4);
  for (let y = 0; y < tex.height; y++) out.set(raw.subarray(y * pitch, y * pitch + tex.width * 4), y * tex.width * 4);
  return out;
}

/** Unpacks RgbaRows to tight RGBA bytes. */
async function readRows(rows: RgbaRows): Promise<Uint8Array> {
  const words = (await rows.words.read()) as Uint32Array;
  const out = new Uint8Array(rows.width * rows.height * 4);
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  for (let y = 0; y < rows.height; y++) out.set(bytes.subarray(y * rows.pitch * 4, y * rows.pitch * 4 + rows.width * 4), y * rows.width * 4);
  return out;
}

/** The CLI's nearest resize of ids (cli/segment.ts), the reference for upsampled colours. */
function resizeIds(ids: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Int32Array {
  const out = new Int32Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    for (let x = 0; x < ow; x++) out[y * ow + x] = ids[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow))]!;
  }
  return out;
}

function randomIds(n: number, seed: number): Int32Array {
  const r = rng(seed);
  // Mostly real classes, some ignore (255), negative and out-of-range ids: all must be transparent.
  return Int32Array.from({ length: n }, () => {
    const u = r();
    return u < 0.8 ? Math.floor(r() * 19) : u < 0.9 ? 255 : u < 0.95 ? -1 - Math.floor(r() * 5) : 19 + Math.floor(r() * 300);
  });
}

t('texture rows -> tensor equals imageToTensor on the same bytes, bit for bit, rgba8unorm and bgra8unorm, resized and not', async () => {
  const e = await testEngine();
  for (const [w, h, ow, oh, format, seed] of [
    [37, 23, 64, 32, 'rgba8unorm', 1], [37, 23, 64, 32, 'bgra8unorm', 1], [65, 7, 65, 7, 'rgba8unorm', 2], [130, 66, 32, 32, 'rgba8unorm-srgb', 3],
  ] as const) {
    const rgba = bytes(w * h * 4, seed);
    const tex = makeTexture(e, rgba, w, h, format);
    await e.scope(async () => {
      const fromTexture = (await textureToTensor(e, tex, { outWidth: ow, outHeight: oh }).read()) as Float32Array;
      const fromBytes = (await imageToTensor(e, { data: rgba, width: w, height: h, channels: 4 }, { outWidth: ow, outHeight: oh }).read()) as Float32Array;
      let differ = 0;
      for (let i = 0; i < fromBytes.length; i++) if (fromTexture[i] !== fromBytes[i]) differ++;
      assert.is(differ, 0, `${format} ${w}x${h} -> ${ow}x${oh}: ${differ} floats differ from imageToTensor`);
      expectClose(fromTexture, refImageToTensor(rgba, w, h, 4, ow, oh, IMAGENET_MEAN, IMAGENET_STD), 1e-4, `${format} vs float64`);
    });
    tex.destroy();
  }
});

t('colorizeIds equals engine/palette.ts colorize exactly (ids -5..318 incl. 255), same size and upsampled nearest', async () => {
  const e = await testEngine();
  for (const [w, h, ow, oh, seed] of [[37, 5, 37, 5, 1], [37, 5, 75, 11, 2], [64, 32, 512, 256, 3], [1, 1, 3, 2, 4]] as const) {
    const ids = randomIds(w * h, seed);
    await e.scope(async () => {
      const rows = colorizeIds(e.tensor(ids, [1, h, w]), { width: ow, height: oh });
      assert.is(rows.pitch % 64, 0, 'rows are 256-byte aligned');
      const got = await readRows(rows);
      const want = colorize(resizeIds(ids, w, h, ow, oh), ow, oh);
      let differ = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) differ++;
      assert.is(differ, 0, `${w}x${h} -> ${ow}x${oh}: ${differ} bytes differ`);
    });
  }
});

t('colour overlay matches engine/palette.ts overlay within 1 level (f32 blend vs float64), bgra photo and output, u32 ids', async () => {
  const e = await testEngine();
  const [w, h, pw, ph] = [29, 13, 58, 26];
  const ids = randomIds(w * h, 7);
  const photo = bytes(pw * ph * 4, 8);
  for (const [opacity, bgra] of [[0.6, false], [0.35, true], [1, false], [0, true]] as const) {
    await e.scope(async () => {
      const tex = makeTexture(e, photo, pw, ph, bgra ? 'bgra8unorm' : 'rgba8unorm');
      const photoRows = textureToRows(e, tex);
      const rows = colorizeIds(e.tensor(Uint32Array.from(ids, (v) => v >>> 0), [h, w], 'u32'), { width: pw, height: ph, opacity, photo: photoRows, bgra });
      const got = await readRows(rows);
      if (bgra) for (let i = 0; i < got.length; i += 4) [got[i], got[i + 2]] = [got[i + 2]!, got[i]!];
      // u32 ids: negative ones wrap to huge values, still "no class".
      const want = overlay(photo, colorize(resizeIds(Int32Array.from(ids, (v) => (v < 0 ? 1e6 : v)), w, h, pw, ph), pw, ph), opacity);
      let worst = 0;
      let off = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(got[i]! - want[i]!);
        worst = Math.max(worst, d);
        if (d) off++;
      }
      assert.ok(worst <= 1, `opacity ${opacity}: max difference ${worst}`);
      assert.ok(off <= want.length / 100, `opacity ${opacity}: ${off} of ${want.length} bytes off by 1 (f32 rounding at .5 should be rare)`);
      if (opacity === 0 || opacity === 1) assert.is(off, 0, `opacity ${opacity} is exact`);
      tex.destroy();
    });
  }
});

t('labels alone: alpha = round(opacity * 255), transparent where there is no class', async () => {
  const e = await testEngine();
  const ids = Int32Array.from([0, 255, 13, -1]);
  await e.scope(async () => {
    const got = await readRows(colorizeIds(e.tensor(ids, [2, 2]), { opacity: 0.5 }));
    assert.equal(Array.from(got), [128, 64, 128, 128, 0, 0, 0, 0, 0, 0, 142, 128, 0, 0, 0, 0]);
  });
});

t('colorizeToTexture into an application texture and into an engine-owned one; textures read back equal the rows', async () => {
  const e = await testEngine();
  const ids = randomIds(20 * 9, 11);
  const want = colorize(ids, 20, 9);
  await e.scope(async () => {
    const x = e.tensor(ids, [1, 9, 20]);
    const appTex = e.device.createTexture({ size: [20, 9, 1], format: 'bgra8unorm', usage: TextureUsage.COPY_DST | TextureUsage.COPY_SRC, label: 'app target' });
    assert.is(colorizeToTexture(x, { target: appTex }), appTex);
    const bgr = await readTexture(e, appTex);
    for (let i = 0; i < bgr.length; i += 4) [bgr[i], bgr[i + 2]] = [bgr[i + 2]!, bgr[i]!];
    assert.equal(Array.from(bgr), Array.from(want), 'bgra8unorm target');
    const owned0 = e.ownedResources;
    const own = colorizeToTexture(x);
    assert.is(own.format, 'rgba8unorm');
    assert.is(e.ownedResources, owned0 + 1, 'the engine owns the texture it made');
    assert.equal(Array.from(await readTexture(e, own)), Array.from(want), 'engine texture');
    e.disown(own, true);
    assert.is(e.ownedResources, owned0);
    appTex.destroy();
  });
});

t('unusable textures are refused with the reason, before anything is recorded', async () => {
  const e = await testEngine();
  const noCopy = e.device.createTexture({ size: [8, 8, 1], format: 'rgba8unorm', usage: TextureUsage.TEXTURE_BINDING, label: 'camera' });
  const r8 = e.device.createTexture({ size: [8, 8, 1], format: 'r8unorm', usage: TextureUsage.COPY_SRC | TextureUsage.COPY_DST });
  const small = e.device.createTexture({ size: [4, 4, 1], format: 'rgba8unorm', usage: TextureUsage.COPY_DST });
  const dispatches = e.stats().dispatches;
  assert.throws(() => textureToTensor(e, noCopy), (err: Error) => err instanceof ShapeError && /textureToTensor: texture 'camera' \(rgba8unorm, 8x8\) lacks GPUTextureUsage.COPY_SRC .*add COPY_SRC/.test(err.message));
  assert.throws(() => textureToTensor(e, r8), /must be rgba8unorm or bgra8unorm .*got r8unorm/);
  await e.scope(async () => {
    const ids = e.tensor(new Int32Array(64), [8, 8]);
    assert.throws(() => colorizeToTexture(ids, { target: small }), /colorizeToTexture: texture \(rgba8unorm, 4x4\) is smaller than the 8x8 picture/);
    assert.throws(() => colorizeToTexture(ids, { target: noCopy }), /lacks GPUTextureUsage.COPY_DST/);
    assert.throws(() => colorizeIds(e.tensor(new Float32Array(4), [2, 2])), /colorizeIds: ids .* must be i32 or u32/);
    assert.throws(() => colorizeIds(ids, { opacity: 1.5 }), /opacity must be in \[0, 1\], got 1.5/);
    assert.throws(() => rowsToTexture(e, colorizeIds(ids), r8), /got r8unorm/);
  });
  assert.is(e.stats().dispatches, dispatches + 1, 'only the colorizeIds whose rows went to rowsToTexture ran');
  for (const x of [noCopy, r8, small]) x.destroy();
  await e.flush();
});

t('Segmenter on an application device: texture in, overlay texture out, owned textures freed by destroy(), device unharmed', async () => {
  const app = await testEngine(); // stands for the application: its device, its textures
  const e = await createEngine({ device: app.device });
  // A stand-in network: class = the brightest of R, G, B (argmax over channels), cheap and exact.
  const model = { engine: e, segment: (x: Parameters<typeof ops.argmax>[0]) => ops.argmax(x) };
  const [w, h] = [48, 20];
  const rgba = bytes(w * h * 4, 21);
  const tex = makeTexture(app, rgba, w, h, 'rgba8unorm');
  const seg = new Segmenter(model, { width: 32, height: 32 });
  const frame = seg.segment(tex, { opacity: 0.5 });
  assert.equal([frame.width, frame.height, frame.sourceWidth, frame.sourceHeight], [w, h, w, h]);
  assert.equal(frame.ids.shape, [1, 32, 32]);
  const ids = (await frame.ids.read()) as Int32Array;
  const x = await e.scope(async () => (await imageToTensor(e, { data: rgba, width: w, height: h, channels: 4 }, { outWidth: 32, outHeight: 32 }).read()) as Float32Array);
  for (let i = 0; i < 32 * 32; i++) {
    const v = [x[3 * i]!, x[3 * i + 1]!, x[3 * i + 2]!];
    assert.is(ids[i], v.indexOf(Math.max(...v)), `id at ${i}`);
  }
  const want = overlay(rgba, colorize(resizeIds(ids, 32, 32, w, h), w, h), 0.5);
  const got = await readTexture(e, frame.texture);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  assert.ok(worst <= 1, `overlay texture vs CPU overlay: max difference ${worst}`);
  // Recolouring reuses the texture; the ids buffer is the tensor's.
  const again = seg.recolor({ opacity: 1, overlay: false });
  assert.is(again.texture, frame.texture);
  assert.equal(Array.from(await readTexture(e, again.texture)), Array.from(colorize(resizeIds(ids, 32, 32, w, h), w, h)));
  assert.is(frame.ids.buffer.size >= 32 * 32 * 4, true);
  assert.is(e.ownedResources, 1, 'the output texture');
  const out = frame.texture;
  e.destroy();
  assert.is(e.ownedResources, 0);
  // The engine's texture is gone (using it is a validation error), the application's is not.
  app.device.pushErrorScope('validation');
  const enc = app.device.createCommandEncoder();
  const buf = app.device.createBuffer({ size: rowPitchWords(w) * 4 * h, usage: 0x0008 });
  enc.copyTextureToBuffer({ texture: out }, { buffer: buf, bytesPerRow: rowPitchWords(w) * 4 }, [w, h, 1]);
  app.device.queue.submit([enc.finish()]);
  const err = await app.device.popErrorScope();
  assert.ok(err, 'copying from the destroyed engine texture must fail');
  assert.match(err!.message, /destroyed/i);
  buf.destroy();
  assert.equal(Array.from((await readTexture(app, tex)).subarray(0, 16)), Array.from(rgba.subarray(0, 16)), 'the application texture is intact');
  tex.destroy();
  await app.flush();
});

t('Segmenter refuses what it cannot use, with the reason', async () => {
  const app = await testEngine();
  const model = { engine: app, segment: (x: Parameters<typeof ops.argmax>[0]) => ops.argmax(x) };
  assert.throws(() => new Segmenter(model, { width: 0, height: 32 }), /network input size must be positive integers, got 0x32/);
  const seg = new Segmenter(model, { width: 32, height: 32 });
  assert.throws(() => seg.recolor(), /no frame yet/);
  const tex = app.device.createTexture({ size: [8, 8, 1], format: 'rgba8unorm', usage: TextureUsage.COPY_SRC });
  assert.throws(() => seg.segment(tex, { opacity: 2 }), /opacity must be in \[0, 1\], got 2/);
  assert.throws(() => seg.segment({ width: 8, height: 8 } as unknown as ImageBitmap), /copyExternalImageToTexture refused the 8x8 source[\s\S]* or a GPUTexture/);
  assert.throws(() => seg.segment({ videoWidth: 0, videoHeight: 0 } as unknown as HTMLVideoElement), /the source has no pixels yet \(0x0\)/);
  seg.destroy();
  tex.destroy();
  assert.is(app.ownedResources, 0, 'destroy() freed the input texture made for the refused external copy');
  await app.flush();
});

t.run();
