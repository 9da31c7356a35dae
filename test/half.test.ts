/**
 * The f16 inference path (issue 22): f16 tensors, the cast and weight-folding kernels, the f16
 * storage variants of every kernel a fused CANet inference dispatches (conv2d, depthwise,
 * transposed conv and its fused argmax, channel padding, the channel copy, the FCA channel pool),
 * and the whole network (CANet.half()).
 *
 * Where the kernels run: on Mesa lavapipe (shader-f16) where it is installed, else on the default
 * adapter if it has shader-f16 (a hardware GPU); elsewhere every f16 test counts as skipped with
 * the reason. On SwiftShader (no shader-f16) asking for f16 must give a FeatureError naming the
 * adapter and the feature.
 *
 * References and tolerances: each kernel is compared with the float64 reference of test/ref/ fed
 * the f16-rounded inputs (and, for folded weights, round16(w * scale)); the only rounding left on
 * the GPU side is the f16 store of the output (at most 2^-11 = 4.9e-4 relative, round to nearest)
 * plus f32 accumulation, so the stated tolerance is 1e-3 relative (expectClose's floor: 1e-3 of
 * the largest magnitude). Computing in f32 from the unrounded inputs would fail it on most shapes.
 */
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine, LAVAPIPE_ICD, FeatureError, type Engine, type Tensor } from '../entry/node.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { copyChannelsInto } from '../engine/ops/concat.js';
import { channelAttentionInference } from '../engine/ops/fca.js';
import { cast, foldHalf } from '../engine/ops/half.js';
import { imageToTensor } from '../engine/ops/preprocess.js';
import { decodeHalf, encodeHalf, f32ToF16Bits, roundHalf } from '../engine/half-float.js';
import type { Program } from '../engine/program.js';
import { canet } from '../net/canet.js';
import { Segmenter } from '../net/segmenter.js';
import { loadModelBytes } from '../weights/model-bytes.js';
import { TextureUsage } from '../engine/gpu-constants.js';
import { readImage } from '../data/image-io.js';
import { suite } from './harness.js';
import { expectClose, randn } from './gpu.js';
import { refConv2d } from './ref/conv.js';
import { refDepthwise } from './ref/depthwise.js';
import { refConvTranspose } from './ref/conv-transpose.js';
import { refEpilogue } from './ref/epilogue.js';

const t = suite('half');

/** One f16 output rounding (2^-11 relative) plus f32 accumulation; see the file comment. */
const F16_TOL = 1e-3;

const r16 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a, roundHalf);
const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

// ------------------------------------------------------------------ CPU: binary16 codec

t('binary16 codec: exact values, round to nearest even, subnormals, overflow', () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
    [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [Infinity, 0x7c00],
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1); 1 + 3 * 2^-11 ties up to 1 + 2^-9.
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [1 / 3, 0x3555],
  ];
  for (const [v, bits] of cases) assert.is(f32ToF16Bits(v), bits, `f32ToF16Bits(${v})`);
  assert.ok(Number.isNaN(roundHalf(NaN)));
  const vals = [0.5, -1.25, 3.140625, 2 ** -20, 1000];
  assert.equal([...decodeHalf(encodeHalf(vals), vals.length)], vals);
  assert.is(encodeHalf([1, 2, 3]).length, 4, 'padded to whole words');
});

// ------------------------------------------------------------------ engines

/** An engine with shader-f16: lavapipe where installed, else the default adapter if it has it. */
let half: Engine | undefined;
let unavailable = '';
try {
  if (existsSync(LAVAPIPE_ICD)) half = await createEngine({ software: 'lavapipe', forceSoftware: true, quiet: true });
  else {
    const e = await createEngine({ quiet: true });
    if (e.hasF16) half = e;
    else {
      unavailable = `no adapter with shader-f16 here (lavapipe is not installed: no ${LAVAPIPE_ICD}; the default adapter '${e.adapter.description}' has no shader-f16)`;
      e.destroy();
    }
  }
  if (half && !half.hasF16) {
    unavailable = `the adapter '${half.adapter.description}' has no shader-f16`;
    half.destroy();
    half = undefined;
  }
} catch (e) {
  unavailable = (e as Error).message.split('\n')[0]!;
}
if (!half) console.log(`half: the f16 kernel tests are skipped: ${unavailable}`);

const onF16 = (name: string, fn: (e: Engine) => Promise<void>, opts?: { timeoutMs?: number }): void => {
  if (half) t(`f16: ${name}`, () => fn(half!), opts);
  else t.skip(`f16: ${name} (skipped: ${unavailable})`);
};

/** Runs `fn` with engine.run wrapped: returns its result and the programs it dispatched. */
async function dispatches<T>(e: Engine, fn: () => Promise<T>): Promise<{ result: T; programs: Program[] }> {
  const programs: Program[] = [];
  const run = e.run;
  e.run = function (this: Engine, p: Program) {
    programs.push(p);
    return run.call(this, p);
  };
  try {
    return { result: await fn(), programs };
  } finally {
    delete (e as { run?: unknown }).run;
  }
}

const upload = (e: Engine, data: ArrayLike<number>, shape: number[], dtype: 'f32' | 'f16'): Tensor => e.tensor(Float32Array.from(data), shape, dtype);

// ------------------------------------------------------------------ SwiftShader: the clear error

t('without shader-f16 (SwiftShader), asking for f16 is a FeatureError naming the adapter and the feature', async () => {
  const s = await createEngine({ software: 'swiftshader', forceSoftware: true, quiet: true });
  try {
    assert.not.ok(s.hasF16, 'SwiftShader has no shader-f16');
    const named = (what: RegExp) => (err: Error) =>
      err instanceof FeatureError && what.test(err.message) && /'shader-f16'/.test(err.message) && err.message.includes(s.adapter.description) && err.feature === 'shader-f16';
    assert.throws(() => s.empty([4], 'f16'), named(/^empty: /));
    assert.throws(() => s.tensor(new Float32Array(4), [4], 'f16'), named(/^empty: /));
    const x = s.tensor(new Float32Array(8), [8]);
    assert.throws(() => cast(x, 'f16'), named(/^cast: /));
    const model = canet(s, { width: 0.125, classes: 3 }).eval();
    try {
      assert.throws(() => model.half(), named(/^canet\.half: .*lavapipe/));
      assert.is(model.precision, 'f32', 'a refused half() leaves the model in f32');
      const img = s.empty([1, 32, 32, 3]);
      assert.throws(() => model.segment(img, { precision: 'f16' }), named(/^canet\.segment: /));
      assert.throws(() => new Segmenter(model, { width: 32, height: 32, precision: 'f16' }), named(/^Segmenter: /));
      img.dispose();
      // The engine stays usable: f32 inference still runs.
      const ids = await s.scope(() => model.segment(s.tensor(new Float32Array(32 * 32 * 3), [1, 32, 32, 3])).read());
      assert.is(ids.length, 32 * 32);
    } finally {
      model.dispose();
    }
  } finally {
    s.destroy();
  }
});

// ------------------------------------------------------------------ f16 kernels

onF16('tensors: upload rounds to nearest even, read returns the f16 values; byteLength is 2 per element', async (e) => {
  const data = Float32Array.from(randn(7, 1, -100, 100));
  const x = e.tensor(data, [7], 'f16');
  assert.is(x.byteLength, 14);
  assert.equal([...(await x.read())], [...r16(data)]);
  x.dispose();
});

onF16('cast f32 -> f16 -> f32 (vec4 and scalar sizes) equals round16 exactly', async (e) => {
  for (const n of [12, 7]) {
    const data = randn(n, n, -70000, 70000);
    const x = upload(e, data, [n], 'f32');
    const h = cast(x, 'f16');
    assert.is(h.dtype, 'f16');
    const back = cast(h, 'f32');
    const want = r16(Float32Array.from(data));
    assert.equal([...(await h.read())], [...want], `f16 n=${n}`);
    assert.equal([...(await back.read())], [...want], `back to f32 n=${n}`);
    [x, h, back].forEach((v) => v.dispose());
  }
});

onF16('foldHalf: round16(w * scale[c]) with the channel outermost (OHWI) and innermost (depthwise)', async (e) => {
  const [co, inner] = [5, 6];
  const w = randn(co * inner, 2, -2, 2);
  const scale = randn(co, 3, 0.1, 3);
  const aff = e.tensor(Float32Array.from([...scale, ...randn(co, 4)]), [2, co]);
  const wt = upload(e, w, [co, inner], 'f32');
  const outer = foldHalf(wt, aff, co, inner);
  const f32 = (v: number) => Math.fround(v);
  assert.equal([...(await outer.read())], [...w.map((v, i) => roundHalf(f32(f32(v) * f32(scale[Math.floor(i / inner)]!))))]);
  const innermost = foldHalf(wt, aff, co, 1);
  assert.equal([...(await innermost.read())], [...w.map((v, i) => roundHalf(f32(f32(v) * f32(scale[i % co]!))))]);
  [aff, wt, outer, innermost].forEach((v) => v.dispose());
});

/** conv2d cases: [N, H, W, Ci], [Co, KH, KW], stride, padding (scalar Ci 5, vec4 Ci 8, 1x1). */
const CONV_CASES: [number[], number[], number, number][] = [
  [[1, 7, 9, 5], [17, 3, 3], 1, 1],
  [[3, 9, 8, 8], [16, 3, 3], 2, 1],
  [[1, 6, 5, 8], [12, 1, 1], 1, 0],
];

onF16('conv2d: f16 x and w, f32 bias, f16 output; f32 image into f16 weights', async (e) => {
  for (const [xs, [co, kh, kw], stride, padding] of CONV_CASES) {
    const ws = [co, kh, kw, xs[3]!];
    const x = randn(prod(xs), 10, -2, 2);
    const w = randn(prod(ws), 11, -0.5, 0.5);
    const b = randn(co, 12);
    const want = refConv2d(r16(x), xs, r16(w), ws, b, { stride, padding });
    await e.scope(async () => {
      const y = conv2d(upload(e, x, xs, 'f16'), upload(e, w, ws, 'f16'), upload(e, b, [co], 'f32'), { stride, padding });
      assert.is(y.dtype, 'f16');
      expectClose(await y.read(), want.data, F16_TOL, `conv2d f16 ${xs} -> ${co} k${kh} s${stride}`);
      // The network's first layer: the f32 image, f16 weights: an f16 output.
      const want2 = refConv2d(Float32Array.from(x), xs, r16(w), ws, b, { stride, padding });
      const y2 = conv2d(upload(e, x, xs, 'f32'), upload(e, w, ws, 'f16'), upload(e, b, [co], 'f32'), { stride, padding });
      assert.is(y2.dtype, 'f16');
      expectClose(await y2.read(), want2.data, F16_TOL, `conv2d f32 x, f16 w ${xs}`);
    });
  }
});

onF16('conv2d epilogues in f16: shift + residual + relu6; sigmoid; FCA product (f16 as, f32 ac) into an f16 channel slice', async (e) => {
  const xs = [2, 6, 7, 8];
  const co = 16;
  const ws = [co, 3, 3, 8];
  const x = randn(prod(xs), 20, -1, 1);
  const w = randn(prod(ws), 21, -0.5, 0.5);
  const shift = randn(co, 22);
  const m = 2 * 6 * 7;
  const res = randn(m * co, 23);
  const as = randn(m, 24, 0, 1);
  const ac = randn(2 * co, 25, 0, 1);
  const base = refConv2d(r16(x), xs, r16(w), ws, null, { padding: 1 }).data;
  await e.scope(async () => {
    const xt = upload(e, x, xs, 'f16');
    const wt = upload(e, w, ws, 'f16');
    const bt = upload(e, shift, [co], 'f32');
    const y = conv2d(xt, wt, bt, { padding: 1 }, { act: 'relu6', residual: upload(e, res, [2, 6, 7, co], 'f16') });
    expectClose(await y.read(), refEpilogue(base, [2, 6, 7, co], { shift, residual: r16(res), act: 'relu6' }), F16_TOL, 'shift + residual + relu6');
    const s = conv2d(xt, wt, bt, { padding: 1 }, { act: 'sigmoid' });
    expectClose(await s.read(), refEpilogue(base, [2, 6, 7, co], { shift, act: 'sigmoid' }), F16_TOL, 'sigmoid');
    // FCA: y = relu(conv + shift) * (as * ac + 1), written into channels [8, 24) of a 32-channel f16 tensor.
    const cat = e.tensor(new Float32Array(m * 32), [2, 6, 7, 32], 'f16');
    conv2d(xt, wt, bt, { padding: 1 }, { act: 'relu', fca: { as: upload(e, as, [2, 6, 7], 'f16'), ac: upload(e, ac, [2, co], 'f32') }, into: { tensor: cat, channelOffset: 8 } });
    const got = await cat.read();
    const want = refEpilogue(base, [2, 6, 7, co], { shift, act: 'relu', as: r16(as), ac });
    const band = new Float64Array(m * co);
    for (let p = 0; p < m; p++) for (let c = 0; c < co; c++) band[p * co + c] = got[p * 32 + 8 + c]!;
    expectClose(band, want, F16_TOL, 'FCA product into a slice');
    for (let p = 0; p < m; p++) for (const c of [0, 7, 24, 31]) assert.is(got[p * 32 + c], 0, 'channels outside the slice untouched');
  });
});

onF16('depthwise: f16 x and w (vec4 C 8, scalar C 5), stride 1 and 2, shift + relu6', async (e) => {
  for (const [xs, stride] of [[[1, 9, 7, 8], 1], [[2, 8, 9, 5], 2]] as [number[], number][]) {
    const c = xs[3]!;
    const x = randn(prod(xs), 30, -2, 2);
    const w = randn(9 * c, 31, -1, 1);
    const shift = randn(c, 32);
    const g = { x: xs, k: [3, 3], stride: [stride, stride] as const, padding: [1, 1] as const, dilation: [1, 1] as const };
    const base = refDepthwise(g, r16(x), r16(w), null);
    const ho = Math.floor((xs[1]! - 1) / stride) + 1;
    const wo = Math.floor((xs[2]! - 1) / stride) + 1;
    await e.scope(async () => {
      const y = depthwiseConv2d(upload(e, x, xs, 'f16'), upload(e, w, [3, 3, c], 'f16'), upload(e, shift, [c], 'f32'), { stride, padding: 1 }, { act: 'relu6' });
      assert.is(y.dtype, 'f16');
      expectClose(await y.read(), refEpilogue(base, [xs[0]!, ho, wo, c], { shift, act: 'relu6' }), F16_TOL, `depthwise f16 ${xs} s${stride}`);
    });
  }
});

onF16('convTranspose2d: f16 (Ci 8; Ci 19 zero-padded to vec4 in f16), k3 s2 and k15 s8; fused argmax on f16', async (e) => {
  const cases: [number[], number, number, number, number][] = [
    // [x shape], co, k, stride, padding (output_padding = stride - 1)
    [[1, 5, 6, 8], 17, 3, 2, 1],
    [[1, 3, 4, 19], 19, 15, 8, 7],
  ];
  for (const [xs, co, k, s, pad] of cases) {
    const ci = xs[3]!;
    const x = randn(prod(xs), 40, -1, 1);
    const w = randn(co * k * k * ci, 41, -0.3, 0.3);
    const shift = randn(co, 42);
    const g = { x: xs, k: [co, k, k], stride: [s, s] as const, padding: [pad, pad] as const, outputPadding: [s - 1, s - 1] as const };
    const base = refConvTranspose(g, r16(x), r16(w), null);
    const [n, h, wd] = xs as [number, number, number];
    const outShape = [n, h * s, wd * s, co];
    await e.scope(async () => {
      const xt = upload(e, x, xs, 'f16');
      const wt = upload(e, w, [co, k, k, ci], 'f16');
      const bt = upload(e, shift, [co], 'f32');
      const opts = { stride: s, padding: pad, outputPadding: s - 1 };
      const y = convTranspose2d(xt, wt, bt, opts, { act: 'relu' });
      assert.is(y.dtype, 'f16');
      const want = refEpilogue(base, outShape, { shift, act: 'relu' });
      expectClose(await y.read(), want, F16_TOL, `convTranspose2d f16 ${xs} -> ${co} k${k} s${s}`);
      // Without relu, so that ties at 0 do not make the argmax ambiguous.
      const logits = refEpilogue(base, outShape, { shift });
      const ids = await convTranspose2dArgmax(xt, wt, bt, opts).read();
      let off = 0;
      for (let p = 0; p < ids.length; p++) {
        let best = 0;
        for (let c = 1; c < co; c++) if (logits[p * co + c]! > logits[p * co + best]!) best = c;
        // The kernel compares f32 values (not rounded): only near ties may differ.
        if (ids[p] !== best && Math.abs(logits[p * co + ids[p]!]! - logits[p * co + best]!) > 1e-5 * Math.abs(logits[p * co + best]!) + 1e-6) off++;
      }
      assert.is(off, 0, `argmax differs from the float64 reference at ${off} of ${ids.length} pixels`);
    });
  }
});

onF16('copyChannelsInto and the FCA channel pool on f16; odd f16 channel offsets refused', async (e) => {
  await e.scope(async () => {
    const src = randn(2 * 3 * 6, 50);
    const dst = e.tensor(new Float32Array(2 * 3 * 10), [2, 3, 10], 'f16');
    const st = upload(e, src, [2, 3, 6], 'f16');
    copyChannelsInto(st, dst, 4);
    const got = await dst.read();
    for (let p = 0; p < 6; p++) for (let c = 0; c < 10; c++) assert.is(got[p * 10 + c], c >= 4 ? roundHalf(src[p * 6 + c - 4]!) : 0);
    assert.throws(() => copyChannelsInto(st, dst, 3), /f16 channels are copied in pairs/);
    // Channel attention from channels [8, 16) of an f16 [2, 4, 5, 16] tensor, against float64.
    const x = randn(2 * 20 * 16, 51);
    const wfc = randn(64, 52, -0.5, 0.5);
    const bfc = randn(8, 53);
    const ac = await channelAttentionInference(upload(e, x, [2, 4, 5, 16], 'f16'), 8, upload(e, wfc, [8, 8], 'f32'), upload(e, bfc, [8], 'f32')).read();
    const xr = r16(x);
    const want = new Float64Array(16);
    for (let n = 0; n < 2; n++) {
      const v = new Float64Array(8);
      for (let c = 0; c < 8; c++) {
        let mx = -Infinity;
        let sm = 0;
        for (let q = 0; q < 20; q++) {
          const val = xr[(n * 20 + q) * 16 + 8 + c]!;
          mx = Math.max(mx, val);
          sm += val;
        }
        v[c] = mx + sm / 20;
      }
      for (let o = 0; o < 8; o++) {
        let z = 2 * bfc[o]!;
        for (let k = 0; k < 8; k++) z += wfc[o * 8 + k]! * v[k]!;
        want[n * 8 + o] = 1 / (1 + Math.exp(-z));
      }
    }
    // ac is f32: only the f16 input was rounded, which the reference saw too.
    expectClose(ac, want, 1e-5, 'channel attention from f16');
  });
});

onF16('f16 operands refuse autograd; bias and affine stay f32', async (e) => {
  await e.scope(() => {
    const x = e.tensor(new Float32Array(1 * 4 * 4 * 4), [1, 4, 4, 4], 'f16');
    const w = e.tensor(new Float32Array(4 * 9 * 4), [4, 3, 3, 4]);
    w.requiresGrad = true;
    assert.throws(() => conv2d(x, w, null, { padding: 1 }), /f16 operands have no gradient/);
    const wh = e.tensor(new Float32Array(4 * 9 * 4), [4, 3, 3, 4], 'f16');
    const bh = e.tensor(new Float32Array(4), [4], 'f16');
    assert.throws(() => conv2d(x, wh, bh, { padding: 1 }), /bias .* must be f32, got f16/);
  });
});

// ------------------------------------------------------------------ the whole network

const root = fileURLToPath(new URL('../../', import.meta.url));

onF16(
  'CANet.half(): the demo weights on the sample at 128x64 give the f32 class ids on >= 99.5% of pixels, through f16 kernels',
  async (e) => {
    const { model } = loadModelBytes(e, readFileSync(`${root}weights/demo.safetensors`));
    model.eval();
    const img = await readImage(`${root}weights/sample.png`);
    try {
      const x = imageToTensor(e, img, { outWidth: 128, outHeight: 64 }).keep();
      const f32 = await e.scope(() => model.segment(x).read());
      assert.is(model.half(), model);
      assert.is(model.precision, 'f16');
      const { result: f16, programs } = await dispatches(e, () => e.scope(() => model.segment(x).read()));
      // Every conv of the network ran its f16 storage variant (not silently the f32 one).
      const convs = programs.filter((p) => /^(conv2d_forward|depthwise_forward|conv_transpose_forward)$/.test(p.name));
      assert.ok(convs.length > 20, `${convs.length} conv dispatches`);
      for (const p of convs) assert.match(p.variant ?? '', /h:(x|xs|x4),(w|ws|wt|w4)/, `${p.name}|${p.variant} is not the f16 variant`);
      let same = 0;
      for (let i = 0; i < f32.length; i++) if (f32[i] === f16[i]) same++;
      const agree = same / f32.length;
      console.log(`half: f16 vs f32 class ids at 128x64 agree on ${(100 * agree).toFixed(2)}% of ${f32.length} pixels`);
      assert.ok(agree >= 0.995, `f16 and f32 class ids agree on ${(100 * agree).toFixed(2)}% of pixels (need >= 99.5%)`);
      // Back to f32, and a per-call override: the f32 ids again, exactly.
      model.float();
      assert.equal([...(await e.scope(() => model.segment(x).read()))], [...f32]);
      assert.equal([...(await e.scope(() => model.segment(x, { precision: 'f16' }).read()))], [...f16]);
      x.dispose();
    } finally {
      model.dispose();
    }
  },
  // The f16 variants compile here: a minute or two on a cold Mesa shader cache.
  { timeoutMs: 600_000 },
);

onF16('f16 where the workgroup-memory kernels are preferred (a GPU\'s default): the f16 convs keep their register kernels, which those f32-only kernels would break; the same ids', async (e) => {
  const { model } = loadModelBytes(e, readFileSync(`${root}weights/demo.safetensors`));
  const img = await readImage(`${root}weights/sample.png`);
  const keys = ['conv2d', 'convTranspose', 'depthwise'] as const;
  try {
    const x = imageToTensor(e, img, { outWidth: 128, outHeight: 64 }).keep();
    model.half();
    const plain = await e.scope(() => model.segment(x).read());
    for (const k of keys) e.prefer[k] = 'workgroup';
    const { result: preferred, programs } = await dispatches(e, () => e.scope(() => model.segment(x).read()));
    assert.equal([...preferred], [...plain]);
    assert.equal(programs.filter((p) => /_wg_|gemm/.test(p.name)).map((p) => p.name), [], 'a workgroup kernel ran on f16 tensors');
    x.dispose();
  } finally {
    for (const k of keys) delete e.prefer[k];
    model.dispose();
  }
}, { timeoutMs: 600_000 });

onF16('Segmenter { precision: \'f16\' } on a texture of the sample: the f32 Segmenter\'s ids on >= 99.5% of pixels; the model stays f32', async (e) => {
  const { model } = loadModelBytes(e, readFileSync(`${root}weights/demo.safetensors`));
  model.eval();
  const img = await readImage(`${root}weights/sample.png`);
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++) {
    for (let c = 0; c < 3; c++) rgba[4 * i + c] = img.data[img.channels * i + c]!;
    rgba[4 * i + 3] = 255;
  }
  const tex = e.device.createTexture({ size: [img.width, img.height, 1], format: 'rgba8unorm', usage: TextureUsage.COPY_SRC | TextureUsage.COPY_DST | TextureUsage.TEXTURE_BINDING });
  e.device.queue.writeTexture({ texture: tex }, rgba, { bytesPerRow: img.width * 4, rowsPerImage: img.height }, [img.width, img.height, 1]);
  const ids = async (precision: 'f32' | 'f16') => {
    const seg = new Segmenter(model, { width: 128, height: 64, precision, capture: false });
    try {
      const { result, programs } = await dispatches(e, async () => (await seg.segment(tex).ids.read()) as Int32Array);
      return { ids: result, half: programs.some((p) => /h:x,w/.test(p.variant ?? '')) };
    } finally {
      seg.destroy();
    }
  };
  try {
    const a = await ids('f32');
    const b = await ids('f16');
    assert.not.ok(a.half, 'the f32 Segmenter ran no f16 kernel');
    assert.ok(b.half, 'the f16 Segmenter ran the f16 kernels');
    assert.is(model.precision, 'f32', 'the option is per Segmenter, not a change of the model');
    let same = 0;
    for (let i = 0; i < a.ids.length; i++) if (a.ids[i] === b.ids[i]) same++;
    assert.ok(same / a.ids.length >= 0.995, `agree on ${(100 * same / a.ids.length).toFixed(2)}%`);
  } finally {
    tex.destroy();
    model.dispose();
  }
}, { timeoutMs: 600_000 });

onF16('CANet-ResNet-18 (width 0.125) runs half(): f16 convs, the stem max-pool in f32 between casts; ids agree with f32 on >= 95%', async (e) => {
  const model = canet(e, { backbone: 'resnet18', width: 0.125, classes: 5, seed: 2 }).eval();
  try {
    const x = upload(e, randn(64 * 64 * 3, 60, -2, 2), [1, 64, 64, 3], 'f32');
    const f32 = await e.scope(() => model.segment(x).read());
    const { result: f16, programs } = await dispatches(e, () => e.scope(() => model.half().segment(x).read()));
    assert.ok(programs.some((p) => p.name === 'conv2d_forward' && /h:x,w/.test(p.variant ?? '')));
    let same = 0;
    for (let i = 0; i < f32.length; i++) if (f32[i] === f16[i]) same++;
    // Random weights: many near ties between classes, so a looser bound than the demo's.
    assert.ok(same / f32.length >= 0.95, `agree on ${(100 * same / f32.length).toFixed(2)}%`);
    x.dispose();
  } finally {
    model.dispose();
  }
}, { timeoutMs: 600_000 });

// ------------------------------------------------------------------ the CLI

/** `canet segment` of the sample with the demo weights at 128x64 and `--precision f16`, on `gpu`. */
function cliSegment(gpu: 'swiftshader' | 'lavapipe'): { code: number | null; out: string; err: string; ids?: Buffer } {
  const work = mkdtempSync(join(tmpdir(), 'canet-half-'));
  try {
    const r = spawnSync(process.execPath, [`${root}bin/canet.js`, 'segment', `${root}weights/sample.png`, '--weights', `${root}weights/demo.safetensors`, '--size', '128x64', '--precision', 'f16', '--ids', '--out', work], {
      encoding: 'utf8', timeout: 300_000, env: { ...process.env, CANET_SOFTWARE_GPU: gpu, CANET_FORCE_SOFTWARE: '1', CANET_TUNING: join(work, 'tuning.json') },
    });
    const idsPath = join(work, 'sample_ids.png');
    return { code: r.status, out: r.stdout, err: r.stderr, ids: existsSync(idsPath) ? readFileSync(idsPath) : undefined };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

t('canet segment --precision f16 on SwiftShader: exit status 1 and the message names the adapter and shader-f16', () => {
  const r = cliSegment('swiftshader');
  assert.is(r.code, 1, r.out + r.err);
  assert.match(r.err, /canet\.half: f16 needs the WebGPU feature 'shader-f16', which the adapter 'SwiftShader[^']*' does not offer/);
  assert.is(r.ids, undefined, 'no output written');
});

if (half && /llvmpipe/.test(half.adapter.description))
  t('f16: canet segment --precision f16 on lavapipe writes the label PNGs', () => {
    const r = cliSegment('lavapipe');
    assert.is(r.code, 0, r.out + r.err);
    assert.match(r.out, /sample\.png: 512x256 at 128x64: decode \d+ ms, GPU \d+ ms/);
    assert.ok(r.ids && r.ids.length > 100, 'sample_ids.png written');
  }, { timeoutMs: 300_000 });
else t.skip(`f16: canet segment --precision f16 on lavapipe (skipped: ${half ? `the f16 adapter is '${half.adapter.description}', not lavapipe` : unavailable})`);

t.after(() => half?.destroy());

t.run();
