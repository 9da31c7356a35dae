/**
 * Transposed convolution: forward and both backward kernels against the float64 scatter reference
 * in test/ref/conv-transpose.ts (CANet's k3 s2 p1 op1 and k15 s8 p7 op7, plus k4 s2 p1, k2 s2 p0,
 * stride 1, non-square and degenerate cases; scalar and vec4 channel counts; the tables and the
 * case runner are in test/cases/conv-transpose.ts, shared with the browser page), gradCheck for
 * dx, dw and db, and shape errors. Tolerances (relative, see expectClose for the floor): forward outputs
 * sum at most ceil(KH / stride) * ceil(KW / stride) * Ci products and dx KH * KW * Co, asserted at
 * 1e-4 (3e-4 for dx of the 15x15 kernel, see there); dw and db sum over N * H * W pixels in
 * chunks, asserted at 2e-4.
 */
import * as assert from 'uvu/assert';
import { backward, ShapeError, type Engine, type Tensor } from '../entry/node.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { suite } from './harness.js';
import { expectClose, kernelsRun, randn, testEngine, forKernelMode, kernelModes, useKernelMode, modeSuffix, withVariants, type KernelMode } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { convTransposeOutShape, refConvTranspose, refConvTransposeBackward, type ConvTransposeGeometry } from './ref/conv-transpose.js';
import { checkConvTranspose, mk, CONV_TRANSPOSE_BACKWARD, CONV_TRANSPOSE_FORWARD_KERNELS, CONV_TRANSPOSE_FORWARD_LANES, CONV_TRANSPOSE_FORWARD_ODD, CONV_TRANSPOSE_FORWARD_UP, type ConvTransposeCase } from './cases/conv-transpose.js';

const t = suite('conv-transpose');

/**
 * The kernels each test runs: the adapter's (null), then every other candidate of the
 * convTransposeTiles and convTranspose variants (engine/variants.ts: other families' register
 * tiles, the workgroup-memory GEMMs written for GPUs, conv-transpose-workgroup.ts), forced per engine.
 */
const FAMILIES = ['convTransposeTiles', 'convTranspose'] as const;
const MODES = kernelModes(await testEngine(), ...FAMILIES);
const useTiles = (e: Engine, mode: KernelMode | null): void => useKernelMode(e, mode, FAMILIES);

t('reference: hand-computed 2x2 input, 2x2 filter, stride 2/1, padding, output padding, two channels', () => {
  const x = [1, 2, 3, 4];
  const w = [1, 10, 100, 1000];
  const base = { x: [1, 2, 2, 1], k: [1, 2, 2], outputPadding: [0, 0] } as const;
  // Stride 2: the patches x[iy, ix] * w tile the 4x4 output without overlap.
  assert.equal(Array.from(refConvTranspose({ ...base, stride: [2, 2], padding: [0, 0] }, x, w, null)), [
    1, 10, 2, 20, 100, 1000, 200, 2000, 3, 30, 4, 40, 300, 3000, 400, 4000]);
  // Stride 1: they overlap; padding 1 crops to the centre; output padding 1 adds a zero row/column.
  assert.equal(Array.from(refConvTranspose({ ...base, stride: [1, 1], padding: [0, 0] }, x, w, [0.5])), [
    1.5, 12.5, 20.5, 103.5, 1234.5, 2040.5, 300.5, 3400.5, 4000.5]);
  assert.equal(Array.from(refConvTranspose({ ...base, stride: [1, 1], padding: [1, 1] }, x, w, null)), [1234]);
  assert.equal(Array.from(refConvTranspose({ ...base, stride: [2, 2], padding: [1, 1], outputPadding: [1, 1] }, x, w, null)), [
    1000, 200, 2000, 30, 4, 40, 3000, 400, 4000]);
  // Two input channels into two output channels: y[co] = sum over ci of x[ci] * w[co, ci] (1x1 kernel).
  assert.equal(Array.from(refConvTranspose({ x: [1, 1, 1, 2], k: [2, 1, 1], stride: [1, 1], padding: [0, 0], outputPadding: [0, 0] }, [1, 2], [3, 4, 5, 6], null)), [11, 17]);
});

t('reference backward equals central differences of the reference forward', () => {
  const g: ConvTransposeGeometry = { x: [2, 3, 2, 3], k: [2, 3, 4], stride: [2, 3], padding: [1, 1], outputPadding: [1, 2] };
  const x = randn(2 * 3 * 2 * 3, 1);
  const w = randn(2 * 3 * 4 * 3, 2);
  const gy = randn(convTransposeOutShape(g).reduce((a, b) => a * b, 1), 3);
  const loss = (xx: Float64Array, ww: Float64Array): number => refConvTranspose(g, xx, ww, null).reduce((s, v, i) => s + v * gy[i]!, 0);
  const { dx, dw } = refConvTransposeBackward(g, x, w, gy);
  const h = 1e-6;
  for (const [arr, grad] of [[x, dx], [w, dw]] as const)
    for (let i = 0; i < arr.length; i += 2) {
      const v = arr[i]!;
      arr[i] = v + h;
      const lp = loss(x, w);
      arr[i] = v - h;
      const lm = loss(x, w);
      arr[i] = v;
      assert.ok(Math.abs((lp - lm) / (2 * h) - grad[i]!) < 1e-6, `element ${i}`);
    }
});

for (const mode of MODES)
  forKernelMode(t, mode)(`forward k3 s2 p1 op1 (CANet up1/up2): channels 1, 3, 5, 17, 37 and 8, 12 (vec4), batch 1/2/3, 7x9, 5x7 and 33x17 (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of CONV_TRANSPOSE_FORWARD_UP) await checkConvTranspose(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

for (const mode of MODES)
  forKernelMode(t, mode)(`forward k15 s8 p7 op7 (CANet x8 head), k4 s2 p1, k2 s2 p0, stride 1, padding 0/1 (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of CONV_TRANSPOSE_FORWARD_KERNELS) await checkConvTranspose(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

for (const mode of MODES)
  forKernelMode(t, mode)(`forward: non-square kernel/stride/padding, a stride phase with no taps (k1 s2), large padding (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of CONV_TRANSPOSE_FORWARD_ODD) await checkConvTranspose(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

// The adapter's kernels and the lanes and register kinds (on either adapter, one is the default): the
// other kinds add compile time, not coverage of the lanes blocks.
for (const mode of MODES.filter((m) => m === null || m.value === 'lanes' || m.value === 'register'))
  forKernelMode(t, mode)(`forward: partial lanes blocks (33, 20 and 19 channels), stride 4 and 8, phases of 5x11, 9x13 and 20x37 pixels (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of CONV_TRANSPOSE_FORWARD_LANES) await checkConvTranspose(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

for (const mode of MODES)
  forKernelMode(t, mode)(`backward kernels (dx, dw, db via autograd) vs float64 reference on awkward and CANet shapes (dx < 1e-4, dw/db < 2e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of CONV_TRANSPOSE_BACKWARD) await checkConvTranspose(e, c, seed, true);
    } finally {
      useTiles(e, null);
    }
  });

const gradCases: [string, ConvTransposeCase][] = [
  ['k3 s2 p1 op1, 3 -> 5 channels', mk([2, 3, 4, 3], 5, 3, 2, 1, 1, true)],
  ['k3 s2 p1 op1, 8 -> 4 channels (vec4)', mk([2, 3, 3, 8], 4, 3, 2, 1, 1, true)],
  ['k15 s8 p7 op7, 3 -> 3 channels', mk([2, 2, 3, 3], 3, 15, 8, 7, 7, true)],
];
for (const [name, c] of gradCases)
  t(`gradCheck dx, dw, db: batch 2, ${name} (tol 1e-3)`, async () => {
    const e = await testEngine();
    const [co, kh, kw] = c.k;
    const ci = c.x[3];
    await gradCheck(e, {
      gpu: ([x, w, b]) => convTranspose2d(x!, w!, b!, { stride: c.stride, padding: c.padding, outputPadding: c.outputPadding }),
      ref: ([x, w, b]) => refConvTranspose(c, x!, w!, b!),
      inputs: [
        { name: 'x', shape: c.x, data: randn(c.x.reduce((a, b) => a * b, 1), 500 + kh) },
        { name: 'w', shape: [co, kh, kw, ci], data: randn(co * kh * kw * ci, 501 + kh) },
        { name: 'b', shape: [co], data: randn(co, 502 + kh) },
      ],
      tol: 1e-3,
      maxElements: 40,
    });
  });

t('lanes forward (conv-transpose-lanes.ts): fused epilogues (folded BN, activation, residual, FCA, channel slice; vec4 and scalar stores) and the fused argmax equal the register kernel (rel err < 1e-5)', async () => {
  const e = await testEngine();
  const up = (shape: number[], seed: number, lo = -1, hi = 1): Tensor => e.tensor(Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), seed, lo, hi)), shape);
  const run = async (prefer: 'lanes' | 'register', fn: () => Tensor): Promise<{ data: Float32Array | Int32Array; ran: string[] }> =>
    withVariants(e, { convTranspose: prefer }, async () => {
      let y: Tensor | undefined;
      const ran = kernelsRun(e, () => void (y = fn())).filter((n) => n.startsWith('conv_transpose_forward'));
      return { data: (await y!.read()) as Float32Array | Int32Array, ran };
    });
  await e.noGrad(() => e.scope(async () => {
    // [x, Co, kernel, stride]: 12 channels (vec4 stores), 7 (scalar), the x8 head's 19 (one block of 24).
    for (const [k, [xs, co, kk, s]] of ([[[2, 4, 5, 8], 12, 3, 2], [[1, 5, 3, 5], 7, 3, 2], [[1, 3, 4, 19], 19, 15, 8]] as const).entries()) {
      const opts = { stride: s, padding: (kk - 1) / 2, outputPadding: s - 1 };
      const [n, h, w] = xs;
      const [ho, wo] = [h * s, w * s];
      const x = up([...xs], 700 + k);
      const wt = up([co, kk, kk, xs[3]], 710 + k, -0.3, 0.3);
      const affine = e.tensor(Float32Array.from([...randn(co, 720 + k, 0.5, 1.5), ...randn(co, 730 + k)]), [2, co]);
      const residual = up([n, ho, wo, co], 740 + k);
      const fca = { as: up([n, ho, wo], 750 + k, 0, 1), ac: up([n, co], 760 + k, 0, 1) };
      for (const [what, epi] of [
        ['affine + relu6 + residual', () => ({ affine, act: 'relu6' as const, residual })],
        ['bias + sigmoid + FCA', () => ({ act: 'sigmoid' as const, fca })],
        ['affine + relu into channels [4, 4 + Co)', () => ({ affine, act: 'relu' as const, into: { tensor: up([n, ho, wo, co + 6], 770 + k), channelOffset: 4 } })],
      ] as const) {
        const make = (): Tensor => convTranspose2d(x, wt, what.startsWith('bias') ? up([co], 780 + k) : null, opts, epi());
        const want = await run('register', make);
        const got = await run('lanes', make);
        assert.equal(got.ran, ['conv_transpose_forward[lanes]'], `${what}: the lanes kernel ran`);
        assert.equal(want.ran, ['conv_transpose_forward'], `${what}: the register kernel ran`);
        expectClose(got.data, Float64Array.from(want.data), 1e-5, `${what}, ${co} channels k${kk} s${s}`);
      }
      const ids = (prefer: 'lanes' | 'register') => run(prefer, () => convTranspose2dArgmax(x, wt, null, opts, { affine, act: 'relu' }));
      const [a, b] = [await ids('register'), await ids('lanes')];
      assert.equal(b.ran, ['conv_transpose_forward[lanes]'], 'argmax: the lanes kernel ran');
      assert.equal(Array.from(b.data), Array.from(a.data), `argmax, ${co} channels k${kk} s${s}`);
    }
  }));
});

t('lanes: the llvmpipe default for the forward and the input gradient (with subgroups; the filter gradient keeps the register tiles); register forced, forced tiles, a tuned tile and the other families keep the register kernels', async () => {
  const e = await testEngine();
  const x = e.tensor(Float32Array.from(randn(1 * 4 * 5 * 8, 800)), [1, 4, 5, 8]);
  const w = e.tensor(Float32Array.from(randn(8 * 3 * 3 * 8, 801)), [8, 3, 3, 8]);
  const opts = { stride: 2, padding: 1, outputPadding: 1 };
  const forward = (): string[] => kernelsRun(e, () => convTranspose2d(x, w, null, opts).dispose()).filter((n) => n.startsWith('conv_transpose'));
  const lanes = e.features.has('subgroups') ? 'conv_transpose_forward[lanes]' : 'conv_transpose_forward';
  try {
    await withVariants(e, { family: 'llvmpipe' }, async () => {
      assert.equal(forward(), [lanes]);
      const xg = e.tensor(Float32Array.from(randn(x.size, 802)), x.shape);
      const wg = e.tensor(Float32Array.from(randn(w.size, 803)), w.shape);
      xg.requiresGrad = wg.requiresGrad = true;
      try {
        const y = convTranspose2d(xg, wg, null, opts);
        const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(1), y.shape) })).filter((n) => n.startsWith('conv_transpose_backward'));
        assert.equal(ran.sort(), ['conv_transpose_backward_filter', e.features.has('subgroups') ? 'conv_transpose_backward_input[lanes]' : 'conv_transpose_backward_input']);
      } finally {
        for (const tns of [xg, wg]) {
          tns.grad?.dispose();
          tns.dispose();
        }
      }
    });
    const key = 'convTranspose2d.forward 1x4x5x8>8 k3x3 s2x2 p1x1 o8x10';
    e.tuned.set(key, '2x2');
    try {
      await withVariants(e, { family: 'llvmpipe' }, async () => assert.equal(forward(), ['conv_transpose_forward'], 'a tuned register tile replaces the default'));
      await withVariants(e, { family: 'llvmpipe', convTranspose: 'lanes' }, async () => assert.equal(forward(), ['conv_transpose_forward[lanes]'], 'forcing lanes beats the tuned tile'));
    } finally {
      e.tuned.delete(key);
    }
    await withVariants(e, { family: 'llvmpipe', convTranspose: 'register' }, async () => assert.equal(forward(), ['conv_transpose_forward']));
    await withVariants(e, { family: 'llvmpipe', convTransposeTiles: 'llvmpipe' }, async () => assert.equal(forward(), ['conv_transpose_forward']));
    await withVariants(e, { family: 'swiftshader' }, async () => assert.equal(forward(), ['conv_transpose_forward']));
  } finally {
    x.dispose();
    w.dispose();
  }
});

t('gradients reach only the inputs that require them; no tensors leak', async () => {
  const e = await testEngine();
  const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
  for (const which of ['x', 'w', 'b'] as const) {
    const live = e.stats().liveTensors;
    await e.scope(async () => {
      const x = e.tensor(Float32Array.from(randn(size([1, 5, 7, 5]), 1)), [1, 5, 7, 5]);
      const w = e.tensor(Float32Array.from(randn(size([3, 3, 3, 5]), 2)), [3, 3, 3, 5]);
      const b = e.tensor(Float32Array.from(randn(size([3]), 3)), [3]);
      ({ x, w, b })[which].requiresGrad = true;
      const y = convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1 });
      backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(1), y.shape) });
      for (const [name, tns] of Object.entries({ x, w, b })) assert.is(tns.grad !== null, name === which, `${which}: grad of ${name}`);
      assert.is(e.stats().liveTensors > live, true);
    });
    await e.flush();
    assert.is(e.stats().liveTensors, live, `${which}: every temporary was disposed`);
  }
});

t('bad input throws ShapeError naming the op, tensor and shapes, before any dispatch', async () => {
  const e = await testEngine();
  await e.flush();
  e.scope(() => {
    const x = e.tensor(new Float32Array(1 * 5 * 7 * 3), [1, 5, 7, 3]);
    const w = e.tensor(new Float32Array(4 * 9 * 3), [4, 3, 3, 3]);
    const before = e.stats().dispatches;
    const bad = (fn: () => unknown, re: RegExp): void =>
      assert.throws(fn, (err: Error) => err instanceof ShapeError && re.test(err.message), re.source);
    bad(() => convTranspose2d(e.tensor(new Float32Array(105), [5, 7, 3]), w, null), /convTranspose2d: input .*\(rank 4\), got \[5, 7, 3\]/);
    bad(() => convTranspose2d(x, e.tensor(new Float32Array(27), [3, 3, 3]), null), /convTranspose2d: weight .*\(rank 4\), got \[3, 3, 3\]/);
    bad(() => convTranspose2d(x, e.tensor(new Float32Array(4 * 9 * 5), [4, 3, 3, 5]), null), /convTranspose2d: weight .*\[4, 3, 3, 5\] must be \[Co, KH, KW, 3\] .*\[1, 5, 7, 3\]/);
    bad(() => convTranspose2d(x, w, e.tensor(new Float32Array(3), [3])), /convTranspose2d: bias .* must be \[4\], got \[3\]/);
    bad(() => convTranspose2d(x, w, null, { stride: 2, outputPadding: 2 }), /convTranspose2d: outputPadding \[2, 2\] must be smaller than stride \[2, 2\]/);
    bad(() => convTranspose2d(x, w, null, { outputPadding: [0, 1] }), /convTranspose2d: outputPadding \[0, 1\] must be smaller than stride \[1, 1\]/);
    bad(() => convTranspose2d(x, w, null, { padding: 4 }), /convTranspose2d: output would be -1x1: input .*\[1, 5, 7, 3\]/);
    bad(() => convTranspose2d(e.tensor(new Float32Array(0), [0, 5, 7, 3]), w, null), /convTranspose2d: input .*\[0, 5, 7, 3\] has a zero dimension/);
    bad(() => convTranspose2d(x, e.tensor(new Float32Array(0), [0, 3, 3, 3]), null), /convTranspose2d: weight .*\[0, 3, 3, 3\] has a zero dimension/);
    bad(() => convTranspose2d(x, w, null, { stride: 0 }), /convTranspose2d: stride must be an integer >= 1/);
    bad(() => convTranspose2d(x, w, null, { padding: -1 }), /convTranspose2d: padding must be an integer >= 0/);
    bad(() => convTranspose2d(x, e.tensor(new Int32Array(108), [4, 3, 3, 3]), null), /convTranspose2d: .* must be f32( or f16)?, got i32/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
