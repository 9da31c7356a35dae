/**
 * Fused inference kernels: conv2d / depthwise / transposed-conv epilogues (folded BatchNorm,
 * bias, residual, activation, FCA product, writing into a channel slice), conv2d on a channel
 * slice of its input, bnFold, the fused channel attention, and whole networks fused vs unfused.
 *
 * References: the float64 producers of test/ref (conv, depthwise, conv-transpose) followed by the
 * float64 epilogue of test/ref/epilogue.ts (itself checked on a hand-computed case below).
 * Tolerance: f32 relative error < 1e-4 with a floor of 1e-2 * max|y|, as the conv2d tests (sums
 * of K terms that cancel); networks: fused vs unfused on the same GPU, rel. error < 1e-3 (dozens
 * of layers of f32 rounding in different orders).
 */
import * as assert from 'uvu/assert';
import { type Engine, type Tensor } from '../entry/node.js';
import { bnFold } from '../engine/ops/batchnorm.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import type { Epilogue, EpilogueActivation } from '../engine/ops/epilogue.js';
import { ACTIVATION_OPS } from '../engine/ops/activation.js';
import { channelAttentionInference } from '../engine/ops/fca.js';
import { argmax } from '../engine/ops/softmax.js';
import { resizeBilinear, resizeBilinearArgmax } from '../engine/ops/upsample.js';
import { canet, type CANetOptions } from '../net/canet.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine, forKernelMode } from './gpu.js';

/**
 * Makes the shared test engine's kernels take the code shapes of a kernel family, or 'workgroup':
 * the workgroup-memory kernels written for GPUs (engine.prefer.conv2d, .convTranspose, .depthwise), on any
 * adapter; null: its adapter's.
 */
async function useFamily(family: 'llvmpipe' | 'workgroup' | null): Promise<void> {
  const e = await testEngine();
  for (const key of ['family', 'conv2d', 'convTranspose', 'depthwise'] as const) delete e.prefer[key];
  if (family === 'workgroup') e.prefer.conv2d = e.prefer.convTranspose = e.prefer.depthwise = 'workgroup';
  else if (family) e.prefer.family = family;
}
const suffix = (mode: 'llvmpipe' | 'workgroup' | null): string => (mode ? `, ${mode} tiles` : '');
import { refConv2d } from './ref/conv.js';
import { convTransposeOutShape, refConvTranspose } from './ref/conv-transpose.js';
import { depthwiseOutShape, refDepthwise } from './ref/depthwise.js';
import { type RefEpilogue, refBnFold, refEpilogue, refPlaceChannels } from './ref/epilogue.js';
import { refGlobalAvgPool, refGlobalMaxPool } from './ref/pool.js';
import { refLinear } from './ref/linear.js';

const t = suite('fused');
const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const f32 = (d: Float64Array): Float64Array => Float64Array.from(Float32Array.from(d));
const maxAbs = (d: ArrayLike<number>): number => Array.from(d).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const up = (e: Engine, d: Float64Array, shape: readonly number[]): Tensor => e.tensor(Float32Array.from(d), shape);

/** Random epilogue parts for an output of `shape`, both as GPU tensors and as the reference's arrays. */
function makeEpilogue(e: Engine, shape: readonly number[], parts: { affine?: boolean; act?: EpilogueActivation; residual?: boolean; fca?: boolean }, seed: number): { gpu: Epilogue; ref: RefEpilogue } {
  const [n, h, w, c] = shape as [number, number, number, number];
  const gpu: Epilogue = { act: parts.act ?? 'none' };
  const ref: RefEpilogue = { act: parts.act ?? 'none' };
  if (parts.affine) {
    const scale = f32(randn(c, seed, 0.5, 1.5));
    const shift = f32(randn(c, seed + 1));
    [ref.scale, ref.shift] = [scale, shift];
    gpu.affine = e.tensor(Float32Array.from([...scale, ...shift]), [2, c]);
  }
  if (parts.residual) {
    ref.residual = f32(randn(size(shape), seed + 2));
    gpu.residual = up(e, ref.residual as Float64Array, shape);
  }
  if (parts.fca) {
    ref.as = f32(randn(n * h * w, seed + 3, 0, 1));
    ref.ac = f32(randn(n * c, seed + 4, 0, 1));
    gpu.fca = { as: up(e, ref.as as Float64Array, [n, h, w, 1]), ac: up(e, ref.ac as Float64Array, [n, c]) };
  }
  return { gpu, ref };
}

t('reference epilogue and BN fold on a hand-computed case', () => {
  // One image, one pixel pair, two channels: (y * s + t + r) -> relu6 -> * (as * ac + 1).
  const y = refEpilogue([1, -2, 3, 4], [1, 1, 2, 2], { scale: [2, 1], shift: [1, 0], residual: [0, 1, 0, 10], act: 'relu6', as: [0.5, 1], ac: [1, 0] });
  assert.equal(Array.from(y), [3 * 1.5, 0, 6 * 2, 6 * 1]);
  const { scale, shift } = refBnFold([2], [1], [3], [3], 1, [5]);
  assert.equal([scale[0], shift[0]], [1, 1 + 2 * 1]);
});

interface ConvCase {
  x: number[];
  w: number[];
  opts: { stride?: number; padding?: number; dilation?: number; groups?: number };
  parts: { affine?: boolean; bias?: boolean; act?: EpilogueActivation; residual?: boolean; fca?: boolean };
  /** Write into channels [offset, offset + Co) of a tensor with `total` channels. */
  into?: { total: number; offset: number };
  /** Convolve channels [offset, offset + Ci) of an input with `total` channels. */
  input?: { total: number; offset: number };
}

const convCases: ConvCase[] = [
  { x: [1, 7, 9, 8], w: [12, 3, 3, 8], opts: { padding: 1 }, parts: { affine: true, act: 'relu' } },
  { x: [3, 9, 7, 5], w: [6, 3, 3, 5], opts: { stride: 2, padding: 1 }, parts: { affine: true, act: 'relu6', residual: true } },
  { x: [2, 6, 5, 16], w: [16, 1, 1, 16], opts: {}, parts: { affine: true, residual: true } },
  { x: [2, 5, 6, 12], w: [8, 3, 3, 12], opts: { padding: 1 }, parts: { affine: true, act: 'relu', fca: true } },
  { x: [1, 8, 8, 4], w: [1, 3, 3, 4], opts: { padding: 1 }, parts: { affine: true, act: 'sigmoid' }, input: { total: 12, offset: 4 } },
  { x: [1, 5, 7, 3], w: [5, 3, 3, 3], opts: { padding: 1 }, parts: { bias: true, act: 'relu' }, input: { total: 7, offset: 2 } },
  { x: [2, 6, 6, 8], w: [8, 3, 3, 8], opts: { stride: 2, padding: 1 }, parts: { affine: true, act: 'relu' }, into: { total: 20, offset: 8 } },
  { x: [1, 6, 6, 8], w: [6, 3, 3, 8], opts: { padding: 1 }, parts: { affine: true, act: 'relu' }, into: { total: 11, offset: 3 } },
];

for (const mode of [null, 'llvmpipe', 'workgroup'] as const)
  forKernelMode(t, mode)(`conv2d epilogues: affine, bias, activations, residual, FCA, channel slices in and out${suffix(mode)}`, async () => {
    await useFamily(mode);
    try {
      const e = await testEngine();
      for (const [k, c] of convCases.entries()) {
        const seed = 100 + 10 * k;
        const inTotal = c.input?.total ?? c.x[3]!;
        const xFull = f32(randn(size([...c.x.slice(0, 3), inTotal]), seed));
        const xOff = c.input?.offset ?? 0;
        const xd = new Float64Array(size(c.x));
        for (let r = 0; r < size(c.x) / c.x[3]!; r++) for (let ch = 0; ch < c.x[3]!; ch++) xd[r * c.x[3]! + ch] = xFull[r * inTotal + xOff + ch]!;
        const wd = f32(randn(size(c.w), seed + 1));
        const bd = c.parts.bias ? f32(randn(c.w[0]!, seed + 2)) : null;
        const conv = refConv2d(xd, c.x, wd, c.w, bd, c.opts);
        await e.noGrad(() => e.scope(async () => {
          const { gpu, ref } = makeEpilogue(e, conv.shape, c.parts, seed + 3);
          let want = refEpilogue(conv.data, conv.shape, ref);
          let base: Float64Array | null = null;
          if (c.into) {
            base = f32(randn(size([...conv.shape.slice(0, 3), c.into.total]), seed + 9));
            gpu.into = { tensor: up(e, base, [...conv.shape.slice(0, 3), c.into.total]), channelOffset: c.into.offset };
            want = refPlaceChannels(base, c.into.total, want, conv.shape[3], c.into.offset);
          }
          const x = up(e, xFull, [...c.x.slice(0, 3), inTotal]);
          const y = conv2d(x, up(e, wd, c.w), bd ? up(e, bd, [c.w[0]!]) : null, { ...c.opts, inputChannels: c.input ? [xOff, c.x[3]!] : undefined }, gpu);
          if (c.into) assert.ok(y === gpu.into!.tensor, 'returns the target');
          expectClose(await y.read(), want, 1e-4, `conv2d case ${k}`, 1e-2 * maxAbs(want));
        }));
      }
    } finally {
      await useFamily(null);
    }
  });

t('every activation of the table in the conv2d epilogue (vec4 and scalar channels, after a folded BN and a residual) vs float64 (rel err < 1e-4)', async () => {
  const e = await testEngine();
  // The same convolutions as conv2d cases 0 and 5 (their pipelines shared where the activation is the same).
  const cases: ConvCase[] = [
    { x: [1, 7, 9, 8], w: [12, 3, 3, 8], opts: { padding: 1 }, parts: { affine: true, residual: true } },
    { x: [1, 5, 7, 3], w: [5, 3, 3, 3], opts: { padding: 1 }, parts: { bias: true } },
  ];
  for (const act of ACTIVATION_OPS)
    for (const [k, c] of cases.entries()) {
      const seed = 700 + 10 * k;
      const xd = f32(randn(size(c.x), seed));
      const wd = f32(randn(size(c.w), seed + 1));
      const bd = c.parts.bias ? f32(randn(c.w[0]!, seed + 2)) : null;
      const conv = refConv2d(xd, c.x, wd, c.w, bd, c.opts);
      await e.noGrad(() => e.scope(async () => {
        const { gpu, ref } = makeEpilogue(e, conv.shape, { ...c.parts, act }, seed + 3);
        const want = refEpilogue(conv.data, conv.shape, ref);
        const y = conv2d(up(e, xd, c.x), up(e, wd, c.w), bd ? up(e, bd, [c.w[0]!]) : null, c.opts, gpu);
        expectClose(await y.read(), want, 1e-4, `conv2d ${act} case ${k}`, 1e-2 * maxAbs(want));
      }));
    }
});

for (const mode of [null, 'llvmpipe', 'workgroup'] as const)
  forKernelMode(t, mode)(`depthwise and transposed-conv epilogues (folded BN, activation, channel slice)${suffix(mode)}`, async () => {
    await useFamily(mode);
    try {
      const e = await testEngine();
      const dwCases = [
        { x: [2, 9, 7, 8], k: [3, 3], stride: [2, 2] as [number, number], padding: [1, 1] as [number, number], parts: { affine: true, act: 'relu6' as const } },
        { x: [1, 6, 5, 5], k: [3, 3], stride: [1, 1] as [number, number], padding: [1, 1] as [number, number], parts: { affine: true, act: 'relu' as const, residual: true }, into: { total: 9, offset: 2 } },
      ];
      for (const [k, c] of dwCases.entries()) {
        const g = { x: c.x, k: c.k, stride: c.stride, padding: c.padding, dilation: [1, 1] as [number, number] };
        const xd = f32(randn(size(c.x), 300 + k));
        const wd = f32(randn(c.k[0]! * c.k[1]! * c.x[3]!, 310 + k));
        const shape = depthwiseOutShape(g);
        const y0 = refDepthwise(g, xd, wd, null);
        await e.noGrad(() => e.scope(async () => {
          const { gpu, ref } = makeEpilogue(e, shape, c.parts, 320 + k);
          let want = refEpilogue(y0, shape, ref);
          if (c.into) {
            const base = f32(randn(size([...shape.slice(0, 3), c.into.total]), 330 + k));
            gpu.into = { tensor: up(e, base, [...shape.slice(0, 3), c.into.total]), channelOffset: c.into.offset };
            want = refPlaceChannels(base, c.into.total, want, shape[3]!, c.into.offset);
          }
          const y = depthwiseConv2d(up(e, xd, c.x), up(e, wd, [c.k[0]!, c.k[1]!, c.x[3]!]), null, { stride: c.stride, padding: c.padding }, gpu);
          expectClose(await y.read(), want, 1e-4, `depthwise case ${k}`, 1e-2 * maxAbs(want));
        }));
      }
      const ctCases = [
        { x: [2, 4, 5, 8], co: 12, k: 3, s: 2, p: 1, op: 1, into: { total: 20, offset: 4 } },
        { x: [1, 3, 3, 5], co: 7, k: 15, s: 8, p: 7, op: 7, into: null },
      ];
      for (const [k, c] of ctCases.entries()) {
        const g = { x: c.x, k: [c.co, c.k, c.k], stride: [c.s, c.s] as [number, number], padding: [c.p, c.p] as [number, number], outputPadding: [c.op, c.op] as [number, number] };
        const xd = f32(randn(size(c.x), 400 + k));
        const wShape = [c.co, c.k, c.k, c.x[3]!];
        const wd = f32(randn(size(wShape), 410 + k));
        const shape = convTransposeOutShape(g);
        const y0 = refConvTranspose(g, xd, wd, null);
        await e.noGrad(() => e.scope(async () => {
          const { gpu, ref } = makeEpilogue(e, shape, { affine: true, act: 'relu' }, 420 + k);
          let want = refEpilogue(y0, shape, ref);
          if (c.into) {
            const base = f32(randn(size([...shape.slice(0, 3), c.into.total]), 430 + k));
            gpu.into = { tensor: up(e, base, [...shape.slice(0, 3), c.into.total]), channelOffset: c.into.offset };
            want = refPlaceChannels(base, c.into.total, want, shape[3]!, c.into.offset);
          }
          const y = convTranspose2d(up(e, xd, c.x), up(e, wd, wShape), null, { stride: c.s, padding: c.p, outputPadding: c.op }, gpu);
          expectClose(await y.read(), want, 1e-4, `convTranspose case ${k}`, 1e-2 * maxAbs(want));
        }));
      }
    } finally {
      await useFamily(null);
    }
  });

for (const llvm of [false, true])
  t(`argmax fused into the x8 transposed conv and into the bilinear x8 equals argmax of the stored outputs${llvm ? ', llvmpipe tiles' : ''}`, async () => {
    await useFamily(llvm ? 'llvmpipe' : null);
    try {
      const e = await testEngine();
      await e.noGrad(() => e.scope(async () => {
        for (const [k, co] of [[0, 19], [1, 5]] as const) {
          const x = up(e, f32(randn(2 * 3 * 5 * co, 500 + k)), [2, 3, 5, co]);
          const w = up(e, f32(randn(co * 15 * 15 * co, 510 + k, -0.2, 0.2)), [co, 15, 15, co]);
          const affine = e.tensor(Float32Array.from([...f32(randn(co, 520 + k, 0.5, 1.5)), ...f32(randn(co, 530 + k))]), [2, co]);
          const opts = { stride: 8, padding: 7, outputPadding: 7 };
          const ids = convTranspose2dArgmax(x, w, null, opts, { affine, act: 'relu' });
          assert.equal([...ids.shape], [2, 24, 40]);
          const want = argmax(convTranspose2d(x, w, null, opts, { affine, act: 'relu' }));
          assert.equal(Array.from(await ids.read()), Array.from(await want.read()), `deconv argmax K=${co}`);
        }
        // Random logits: ties between the top two are measure-zero, and the arithmetic is resize_axis's.
        for (const [k, [h, w, c]] of [[0, [4, 6, 19]], [1, [3, 5, 4]]] as const) {
          const z = up(e, f32(randn(2 * h * w * c, 540 + k)), [2, h, w, c]);
          const ids = resizeBilinearArgmax(z, 8 * h, 8 * w);
          const want = argmax(resizeBilinear(z, 8 * h, 8 * w));
          assert.equal(Array.from(await ids.read()), Array.from(await want.read()), `resize argmax ${h}x${w}x${c}`);
        }
      }));
    } finally {
      await useFamily(null);
    }
  });

for (const mode of [null, 'llvmpipe', 'workgroup'] as const)
  forKernelMode(t, mode)(`layers computed in channel slices: conv2d outputChannels and depthwise channels (float64)${suffix(mode)}`, async () => {
    await useFamily(mode);
    try {
      const e = await testEngine();
      await e.noGrad(() => e.scope(async () => {
        const xs = [2, 5, 7, 8];
        const wShape = [16, 1, 1, 8];
        const xd = f32(randn(size(xs), 600));
        const wd = f32(randn(size(wShape), 601));
        const scale = f32(randn(16, 602, 0.5, 1.5));
        const shift = f32(randn(16, 603));
        const full = refEpilogue(refConv2d(xd, xs, wd, wShape, null, {}).data, [2, 5, 7, 16], { scale, shift, act: 'relu6' });
        const affine = e.tensor(Float32Array.from([...scale, ...shift]), [2, 16]);
        const x = up(e, xd, xs);
        const w = up(e, wd, wShape);
        for (const [off, cnt] of [[4, 8], [12, 4], [0, 16], [3, 5]] as const) {
          const y = conv2d(x, w, null, { outputChannels: [off, cnt] }, { affine, act: 'relu6', paramOffset: off });
          assert.equal([...y.shape], [2, 5, 7, cnt]);
          const want = new Float64Array(2 * 5 * 7 * cnt).map((_, i) => full[Math.floor(i / cnt) * 16 + off + (i % cnt)]!);
          expectClose(await y.read(), want, 1e-4, `conv2d outputChannels [${off}, ${cnt}]`, 1e-2 * maxAbs(want));
        }
        // Depthwise on channels [8, 16) of a 24-channel layer, written into its slice of the output.
        const g = { x: [1, 9, 7, 24], k: [3, 3], stride: [2, 2] as [number, number], padding: [1, 1] as [number, number], dilation: [1, 1] as [number, number] };
        const dxd = f32(randn(size(g.x), 610));
        const dwd = f32(randn(9 * 24, 611));
        const dsc = f32(randn(24, 612, 0.5, 1.5));
        const dsh = f32(randn(24, 613));
        const dshape = depthwiseOutShape(g);
        const dfull = refEpilogue(refDepthwise(g, dxd, dwd, null), dshape, { scale: dsc, shift: dsh, act: 'relu6' });
        const part = new Float64Array(size(g.x) / 3).map((_, i) => dxd[Math.floor(i / 8) * 24 + 8 + (i % 8)]!);
        const out = e.tensor(new Float32Array(size(dshape)), dshape);
        depthwiseConv2d(up(e, part, [1, 9, 7, 8]), up(e, dwd, [3, 3, 24]), null, { stride: 2, padding: 1, channels: [8, 8] }, {
          affine: e.tensor(Float32Array.from([...dsc, ...dsh]), [2, 24]), act: 'relu6', paramOffset: 8, into: { tensor: out, channelOffset: 8 },
        });
        const got = await out.read();
        const want = new Float64Array(size(dshape)).map((_, i) => (i % 24 >= 8 && i % 24 < 16 ? dfull[i]! : 0));
        expectClose(got, want, 1e-4, 'depthwise channels [8, 8]', 1e-2 * maxAbs(want));
      }));
    } finally {
      await useFamily(null);
    }
  });

t('bnFold and the fused channel attention match float64', async () => {
  const e = await testEngine();
  for (const c of [5, 12]) {
    const [gm, bt, mu, vr, cb] = [randn(c, 1, 0.5, 2), randn(c, 2), randn(c, 3), randn(c, 4, 0.1, 3), randn(c, 5)].map(f32) as Float64Array[];
    const want = refBnFold(gm!, bt!, mu!, vr!, 1e-5, cb!);
    await e.scope(async () => {
      const a = bnFold(...([gm, bt, mu, vr].map((d) => up(e, d!, [c])) as [Tensor, Tensor, Tensor, Tensor]), 1e-5, up(e, cb!, [c]));
      expectClose(await a.read(), [...Array.from(want.scale), ...Array.from(want.shift)], 1e-5, `bnFold C=${c}`);
    });
  }
  // A_c = sigmoid(FC(max) + FC(avg)) on channels [off, off + C) of a wider tensor.
  for (const [n, h, w, c, total, off] of [[2, 3, 5, 8, 20, 12], [1, 4, 3, 5, 9, 1]] as const) {
    const xd = f32(randn(n * h * w * total, 50 + c));
    const xs = new Float64Array(n * h * w * c);
    for (let r = 0; r < n * h * w; r++) for (let ch = 0; ch < c; ch++) xs[r * c + ch] = xd[r * total + off + ch]!;
    const wd = f32(randn(c * c, 60 + c));
    const bd = f32(randn(c, 70 + c));
    const fa = refLinear(refGlobalMaxPool(xs, [n, h, w, c]), wd, bd, n, c, c);
    const fb = refLinear(refGlobalAvgPool(xs, [n, h, w, c]), wd, bd, n, c, c);
    const want = fa.map((v, i) => 1 / (1 + Math.exp(-(v + fb[i]!))));
    await e.noGrad(() => e.scope(async () => {
      const ac = channelAttentionInference(up(e, xd, [n, h, w, total]), off, up(e, wd, [c, c]), up(e, bd, [c]));
      expectClose(await ac.read(), want, 1e-5, `channel attention C=${c}`);
    }));
  }
});

t('epilogues refuse to run while a graph is recorded, and bad targets are named', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.tensor(new Float32Array(2 * 4 * 4 * 4), [2, 4, 4, 4]);
    const w = e.tensor(new Float32Array(4 * 9 * 4), [4, 3, 3, 4]);
    w.requiresGrad = true;
    assert.throws(() => conv2d(x, w, null, { padding: 1 }, { act: 'relu' }), /no gradient/);
    const before = e.stats().dispatches;
    e.noGrad(() => {
      assert.throws(() => conv2d(x, w, null, { padding: 1 }, { into: { tensor: e.empty([2, 4, 4, 6]), channelOffset: 4 } }), /do not fit/);
      assert.throws(() => conv2d(x, w, null, { padding: 1 }, { residual: e.empty([2, 4, 4, 3]) }), /residual/);
      assert.throws(() => conv2d(x, w, null, { inputChannels: [2, 4] }), /inputChannels/);
    });
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

/** Random BatchNorm statistics and affine parameters, so that folding really changes the numbers. */
function randomiseBatchNorms(model: ReturnType<typeof canet>, seed: number): void {
  let s = seed;
  for (const [name, p] of model.namedParameters())
    if (/\.(weight|bias)$/.test(name) && p.rank === 1) model.engine.writeTensor(p, Float32Array.from(randn(p.size, s++, name.endsWith('weight') ? 0.5 : -0.2, name.endsWith('weight') ? 1.5 : 0.2)));
  const state = model as unknown as { modules(): Iterable<{ runningMean?: Tensor; runningVar?: Tensor }> };
  for (const m of state.modules())
    if (m.runningMean && m.runningVar) {
      model.engine.writeTensor(m.runningMean, Float32Array.from(randn(m.runningMean.size, s++, -0.1, 0.1)));
      model.engine.writeTensor(m.runningVar, Float32Array.from(randn(m.runningVar.size, s++, 0.5, 2)));
    }
}

for (const opts of [
  { backbone: 'mobilenetv2', width: 0.25, head: 'compatible' },
  { backbone: 'mobilenetv2', width: 0.25, head: 'plain' },
  { backbone: 'resnet18', width: 0.25, head: 'compatible' },
] as CANetOptions[]) {
  t(`CANet-${opts.backbone} x${opts.width} (${opts.head} head): fused inference equals the unfused eval forward`, async () => {
    const e = await testEngine();
    const model = canet(e, { ...opts, classes: 5, seed: 3 });
    try {
      randomiseBatchNorms(model, 11);
      model.eval();
      const x = e.tensor(Float32Array.from(randn(2 * 64 * 64 * 3, 5)), [2, 64, 64, 3]).keep();
      // With grad mode on and parameters requiring grad, modules run the separate ops.
      const unfused = await e.scope(async () => (await model.forward(x).read()) as Float32Array);
      const s0 = e.stats();
      const fused = await e.noGrad(() => e.scope(async () => (await model.forward(x).read()) as Float32Array));
      const s1 = e.stats();
      expectClose(fused, unfused, 1e-3, 'fused vs unfused logits', 1e-2 * maxAbs(unfused));
      // Later runs: the folds are cached; from the third run on (the first allocated the folds),
      // every allocation gets the buffer it got before, so every bind group comes from the cache.
      const again = await e.noGrad(() => e.scope(async () => (await model.forward(x).read()) as Float32Array));
      const s2 = e.stats();
      expectClose(again, fused, 0, 'repeatable');
      assert.ok(s2.dispatches - s1.dispatches < s1.dispatches - s0.dispatches, `no folds on the second run (${s2.dispatches - s1.dispatches} vs ${s1.dispatches - s0.dispatches} dispatches)`);
      await e.noGrad(() => e.scope(async () => void (await model.forward(x).read())));
      const s3 = e.stats();
      assert.is(s3.bindGroupsCreated, s2.bindGroupsCreated, 'no bind groups created in steady state');
      assert.is(s3.buffersCreated, s2.buffersCreated, 'no buffers created in steady state');
      // Loading new BatchNorm statistics invalidates the folds.
      randomiseBatchNorms(model, 99);
      const unfused2 = await e.scope(async () => (await model.forward(x).read()) as Float32Array);
      const fused2 = await e.noGrad(() => e.scope(async () => (await model.forward(x).read()) as Float32Array));
      expectClose(fused2, unfused2, 1e-3, 'after new statistics', 1e-2 * maxAbs(unfused2));
      x.dispose();
    } finally {
      model.dispose();
    }
  }, { timeoutMs: 300_000 });
}

t.run();
