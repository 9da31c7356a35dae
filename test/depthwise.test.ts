/**
 * Depthwise convolution: forward and both backward kernels against the float64 reference in
 * test/ref/depthwise.ts on awkward shapes (both the vec4 path, C % 4 == 0, and the scalar path;
 * the tables and the case runner are in test/cases/depthwise.ts, shared with the browser page),
 * gradCheck for dx, dw and db, and shape errors. Tolerances: forward and dx sum at most KH * KW
 * products per output, so f32 stays within 1e-5 relative (1e-4 asserted); dw and db sum over up
 * to N * Ho * Wo products in chunks, asserted at 2e-4.
 */
import * as assert from 'uvu/assert';
import { backward, ShapeError, type Engine } from '../entry/node.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { suite } from './harness.js';
import { randn, testEngine, forKernelMode, kernelModes, useKernelMode, modeSuffix, type KernelMode } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { depthwiseOutShape, refDepthwise, refDepthwiseBackward, type DepthwiseGeometry } from './ref/depthwise.js';
import { checkDepthwise, DEPTHWISE_BACKWARD, DEPTHWISE_FORWARD_3X3, DEPTHWISE_FORWARD_ODD } from './cases/depthwise.js';

const t = suite('depthwise');

/**
 * The forward kernels the forward tests run: the adapter's (null), then every other candidate of
 * the depthwiseTiles and depthwise variants (engine/variants.ts: other families' register tiles,
 * the workgroup-memory kernel written for GPUs), forced per engine.
 */
const FAMILIES = ['depthwiseTiles', 'depthwise'] as const;
const MODES = kernelModes(await testEngine(), ...FAMILIES);
const useTiles = (e: Engine, mode: KernelMode | null): void => useKernelMode(e, mode, FAMILIES);

t('reference: hand-computed 3x3 image, 2x2 filter, two channels, stride/padding/bias', () => {
  // Channel 0 of x is 1..9, channel 1 is 10 * that; filter 0 = [[1, 0], [0, -1]] (x[i, j] - x[i+1, j+1]),
  // filter 1 = [[0, 1], [0, 0]] (picks x[i, j+1]).
  const x = Float64Array.from({ length: 18 }, (_, i) => (Math.floor(i / 2) + 1) * (i % 2 ? 10 : 1));
  const w = Float64Array.from([1, 0, 0, 1, 0, 0, -1, 0]);
  const base = { x: [1, 3, 3, 2], k: [2, 2], dilation: [1, 1] } as const;
  const y = refDepthwise({ ...base, stride: [1, 1], padding: [0, 0] }, x, w, [0.5, 0]);
  assert.equal(Array.from(y), [-3.5, 20, -3.5, 30, -3.5, 50, -3.5, 60]);
  // Padding 1, stride 2: outputs at the corners see only the in-image taps.
  const y2 = refDepthwise({ ...base, stride: [2, 2], padding: [1, 1] }, x, w, null);
  assert.equal(Array.from(y2), [-1, 0, -3, 0, -7, 40, 5 - 9, 60]);
  // Dilation 2 on a 3x3 image with a 2x2 filter reaches the corners: one output.
  const y3 = refDepthwise({ ...base, stride: [1, 1], padding: [0, 0], dilation: [2, 2] }, x, w, null);
  assert.equal(Array.from(y3), [1 - 9, 30]);
});

t('reference backward equals central differences of the reference forward', () => {
  const g: DepthwiseGeometry = { x: [2, 5, 4, 3], k: [3, 2], stride: [2, 1], padding: [1, 0], dilation: [1, 2] };
  const x = randn(2 * 5 * 4 * 3, 1);
  const w = randn(3 * 2 * 3, 2);
  const gy = randn(depthwiseOutShape(g).reduce((a, b) => a * b, 1), 3);
  const loss = (xx: Float64Array, ww: Float64Array): number => refDepthwise(g, xx, ww, null).reduce((s, v, i) => s + v * gy[i]!, 0);
  const { dx, dw } = refDepthwiseBackward(g, x, w, gy);
  const h = 1e-6;
  for (const [arr, grad] of [[x, dx], [w, dw]] as const)
    for (let i = 0; i < arr.length; i += 3) {
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
  forKernelMode(t, mode)(`forward 3x3: channels 1, 3, 5, 17 (scalar) and 8, 96 (vec4), stride 1/2, padding 0/1, batch 1/3, 7x9 and 33x17 (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of DEPTHWISE_FORWARD_3X3) await checkDepthwise(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

for (const mode of MODES)
  forKernelMode(t, mode)(`forward: dilation 2, non-square kernels and strides, large padding, 1-pixel outputs (rel err < 1e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of DEPTHWISE_FORWARD_ODD) await checkDepthwise(e, c, seed, false);
    } finally {
      useTiles(e, null);
    }
  });

// The backward kernels have register tiles only: every tile family's (the workgroup kernel is a forward).
for (const mode of MODES.filter((m) => m?.family !== 'depthwise'))
  forKernelMode(t, mode)(`backward kernels (dx, dw, db via autograd) vs float64 reference on awkward shapes (dx < 1e-4, dw/db < 2e-4)${modeSuffix(mode)}`, async () => {
    const e = await testEngine();
    useTiles(e, mode);
    try {
      for (const { c, seed } of DEPTHWISE_BACKWARD) await checkDepthwise(e, c, seed, true);
    } finally {
      useTiles(e, null);
    }
  });

for (const ch of [3, 8])
  t(`gradCheck dx, dw, db: batch 2, 3x3 stride 2 padding 1, ${ch} channels (tol 1e-3)`, async () => {
    const e = await testEngine();
    const g: DepthwiseGeometry = { x: [2, 5, 7, ch], k: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1] };
    await gradCheck(e, {
      gpu: ([x, w, b]) => depthwiseConv2d(x!, w!, b!, { stride: 2, padding: 1 }),
      ref: ([x, w, b]) => refDepthwise(g, x!, w!, b!),
      inputs: [
        { name: 'x', shape: [2, 5, 7, ch], data: randn(2 * 5 * 7 * ch, 400 + ch) },
        { name: 'w', shape: [3, 3, ch], data: randn(9 * ch, 401 + ch) },
        { name: 'b', shape: [ch], data: randn(ch, 402 + ch) },
      ],
      tol: 1e-3,
      maxElements: 48,
    });
  });

t('gradients reach only the inputs that require them; no tensors leak', async () => {
  const e = await testEngine();
  const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
  for (const which of ['x', 'w', 'b'] as const) {
    const live = e.stats().liveTensors;
    await e.scope(async () => {
      const x = e.tensor(Float32Array.from(randn(size([1, 9, 7, 5]), 1)), [1, 9, 7, 5]);
      const w = e.tensor(Float32Array.from(randn(size([3, 3, 5]), 2)), [3, 3, 5]);
      const b = e.tensor(Float32Array.from(randn(size([5]), 3)), [5]);
      ({ x, w, b })[which].requiresGrad = true;
      const y = depthwiseConv2d(x, w, b, { stride: 2, padding: 1 });
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
    const w = e.tensor(new Float32Array(27), [3, 3, 3]);
    const before = e.stats().dispatches;
    const bad = (fn: () => unknown, re: RegExp): void =>
      assert.throws(fn, (err: Error) => err instanceof ShapeError && re.test(err.message), re.source);
    bad(() => depthwiseConv2d(e.tensor(new Float32Array(105), [5, 7, 3]), w, null), /depthwiseConv2d: input .*\(rank 4\), got \[5, 7, 3\]/);
    bad(() => depthwiseConv2d(x, e.tensor(new Float32Array(27), [9, 3]), null), /depthwiseConv2d: weight .*\(rank 3\), got \[9, 3\]/);
    bad(() => depthwiseConv2d(x, e.tensor(new Float32Array(36), [3, 3, 4]), null), /depthwiseConv2d: weight .*\[3, 3, 4\] must be \[KH, KW, 3\] .*\[1, 5, 7, 3\]/);
    bad(() => depthwiseConv2d(x, w, e.tensor(new Float32Array(4), [4])), /depthwiseConv2d: bias .* must be \[3\], got \[4\]/);
    bad(() => depthwiseConv2d(e.tensor(new Float32Array(0), [1, 0, 7, 3]), w, null), /depthwiseConv2d: input .*\[1, 0, 7, 3\] has a zero dimension/);
    bad(() => depthwiseConv2d(x, e.tensor(new Float32Array(0), [0, 3, 3]), null), /depthwiseConv2d: weight .*\[0, 3, 3\] has a zero kernel size/);
    bad(() => depthwiseConv2d(e.tensor(new Float32Array(12), [1, 2, 2, 3]), w, null), /depthwiseConv2d: output would be 0x0: input .*\[1, 2, 2, 3\]/);
    bad(() => depthwiseConv2d(x, w, null, { dilation: 4 }), /depthwiseConv2d: output would be -3x-1/);
    bad(() => depthwiseConv2d(x, w, null, { stride: 0 }), /depthwiseConv2d: stride must be an integer >= 1/);
    bad(() => depthwiseConv2d(x, w, null, { padding: [1, -1] }), /depthwiseConv2d: padding must be an integer >= 0/);
    bad(() => depthwiseConv2d(x, w, null, { stride: 1.5 }), /depthwiseConv2d: stride/);
    bad(() => depthwiseConv2d(e.tensor(new Int32Array(105), [1, 5, 7, 3]), w, null), /depthwiseConv2d: .* must be f32( or f16)?, got i32/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
