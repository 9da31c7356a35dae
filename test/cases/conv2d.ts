/**
 * conv2d cases, run by test/conv2d.test.ts (every table, in each kernel mode of the variant
 * registry) and by the browser page (CONV2D_BROWSER_FORWARD, CONV2D_BROWSER_GRADS).
 *
 * Tolerances: forward f32 relative error < 1e-4, measured with a floor of 1e-2 * max|y| in the
 * denominator (outputs near zero come from cancelling sums of K terms each about max|y| / K in
 * size; f32 rounding leaves them ~1e-7 * max|y| * sqrt(K) off, which a 1e-3 floor would call a
 * 1e-4 "relative" error for K in the hundreds). Gradients: < 1e-3 against central differences of
 * the reference (gradCheck).
 */
import { ops, type Engine } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { gradCheck } from '../gradcheck.js';
import { refConv2d } from '../ref/conv.js';
import { expectEqual, f32Round, maxAbs, sizeOf, type Seeded } from './common.js';

export interface Conv2dCase {
  x: number[];
  w: number[];
  opts: ops.Conv2dOptions;
  bias: boolean;
}

export const describeConv2d = (c: Conv2dCase): string => `x ${JSON.stringify(c.x)} w ${JSON.stringify(c.w)} ${JSON.stringify(c.opts)}${c.bias ? ' +bias' : ''}`;

/** The GPU forward on f32-rounded inputs against the float64 reference; the largest relative error (throws over 1e-4). */
export async function checkConv2dForward(e: Engine, c: Conv2dCase, seed: number): Promise<number> {
  const xd = f32Round(randn(sizeOf(c.x), seed));
  const wd = f32Round(randn(sizeOf(c.w), seed + 1));
  const bd = c.bias ? f32Round(randn(c.w[0]!, seed + 2)) : null;
  const ref = refConv2d(xd, c.x, wd, c.w, bd, c.opts);
  return e.scope(async () => {
    const y = ops.conv2d(e.tensor(Float32Array.from(xd), c.x), e.tensor(Float32Array.from(wd), c.w), bd ? e.tensor(Float32Array.from(bd), [c.w[0]!]) : null, c.opts);
    expectEqual(y.shape, ref.shape, `output shape of ${describeConv2d(c)}`);
    return expectClose(await y.read(), ref.data, 1e-4, describeConv2d(c), 1e-2 * maxAbs(ref.data));
  });
}

/** x, w (and bias) gradients against central differences of the float64 reference; the largest error (throws over 1e-3). */
export function checkConv2dGrads(e: Engine, c: Conv2dCase, seed: number, maxElements = 48): Promise<number> {
  const inputs = [
    { name: 'x', shape: c.x, data: randn(sizeOf(c.x), seed) },
    { name: 'w', shape: c.w, data: randn(sizeOf(c.w), seed + 1) },
    ...(c.bias ? [{ name: 'bias', shape: [c.w[0]!], data: randn(c.w[0]!, seed + 2) }] : []),
  ];
  return gradCheck(e, {
    gpu: ([x, w, b]) => ops.conv2d(x!, w!, b ?? null, c.opts),
    ref: ([x, w, b]) => refConv2d(x!, c.x, w!, c.w, b ?? null, c.opts).data,
    inputs,
    tol: 1e-3,
    maxElements,
    seed,
  });
}

// Batch 1 and 3; Ci/Co in {1, 3, 5, 17, 96}; 7x9 and 33x17; kernels 1x1, 3x3, 5x5, 2x3; stride 1
// and 2; padding 0 and 1; dilation 2; groups 2 and 3; bias or not; vec4 (Ci/groups % 4 == 0) and
// scalar paths for both the reduction and the output channels.
export const CONV2D_FORWARD: Conv2dCase[] = [
  { x: [1, 7, 9, 3], w: [5, 3, 3, 3], opts: { padding: 1 }, bias: true },
  { x: [3, 7, 9, 1], w: [3, 3, 3, 1], opts: { stride: 2 }, bias: false },
  { x: [1, 33, 17, 17], w: [17, 3, 3, 17], opts: { stride: 2, padding: 1 }, bias: true },
  { x: [3, 7, 9, 5], w: [1, 1, 1, 5], opts: {}, bias: false },
  { x: [1, 33, 17, 96], w: [96, 1, 1, 96], opts: {}, bias: true },
  { x: [1, 7, 9, 96], w: [5, 3, 3, 96], opts: { padding: 1 }, bias: false },
  { x: [1, 7, 9, 17], w: [96, 3, 3, 17], opts: { stride: 2, padding: 1 }, bias: true },
  { x: [1, 33, 17, 4], w: [8, 5, 5, 4], opts: { padding: 1 }, bias: false },
  { x: [1, 33, 17, 5], w: [3, 3, 3, 5], opts: { dilation: 2, padding: 1 }, bias: true },
  { x: [3, 7, 9, 6], w: [10, 3, 3, 3], opts: { groups: 2, padding: 1 }, bias: true },
  { x: [1, 33, 17, 12], w: [12, 3, 3, 4], opts: { groups: 3, stride: 2, padding: 1 }, bias: false },
  { x: [3, 9, 7, 15], w: [6, 3, 3, 5], opts: { groups: 3, stride: 2, padding: 0 }, bias: true },
  { x: [1, 9, 7, 8], w: [16, 2, 3, 8], opts: { stride: [2, 1], padding: [1, 0], dilation: [1, 2] }, bias: true },
  { x: [1, 3, 3, 2], w: [2, 5, 5, 2], opts: { padding: 1 }, bias: false },
  // 1x1 convolutions: unpadded ones find each pixel's input offset once (stride 1: the pixel's own
  // index); padded ones take the general path, whose border outputs see only padding.
  { x: [3, 9, 7, 8], w: [5, 1, 1, 8], opts: { stride: 2 }, bias: true },
  { x: [3, 5, 7, 8], w: [6, 1, 1, 4], opts: { groups: 2 }, bias: false },
  { x: [2, 5, 7, 6], w: [7, 1, 1, 6], opts: { padding: 1 }, bias: true },
];

export const CONV2D_GRADS: Conv2dCase[] = [
  { x: [2, 7, 9, 3], w: [4, 3, 3, 3], opts: { stride: 2, padding: 1 }, bias: true },
  { x: [1, 7, 9, 5], w: [3, 3, 3, 5], opts: { dilation: 2, padding: 1 }, bias: false },
  { x: [2, 5, 7, 8], w: [8, 3, 3, 4], opts: { groups: 2, padding: 1 }, bias: true },
  { x: [1, 6, 5, 6], w: [9, 2, 3, 2], opts: { groups: 3, stride: [1, 2], padding: [1, 0] }, bias: false },
  { x: [2, 5, 5, 8], w: [12, 1, 1, 8], opts: {}, bias: true },
  { x: [1, 9, 8, 4], w: [4, 3, 3, 4], opts: { stride: 2, padding: 1, dilation: 2 }, bias: false },
  // Stride 3 with dilation 2: the taps that reach an input pixel recur every 3rd tap.
  { x: [1, 10, 11, 3], w: [2, 3, 3, 3], opts: { stride: 3, padding: 2, dilation: 2 }, bias: true },
];

/** The seeds the Node test gives the tables' entries (forward 100 + k, gradients 200 + k). */
export const CONV2D_FORWARD_SEED = 100;
export const CONV2D_GRADS_SEED = 200;

/** The page's forward cases: 3x3 pad 1 +bias, 3x3 stride 2 on 17 channels, groups 2 (batch 3). */
export const CONV2D_BROWSER_FORWARD: Seeded<Conv2dCase>[] = [0, 2, 9].map((k) => ({ c: CONV2D_FORWARD[k]!, seed: CONV2D_FORWARD_SEED + k }));
/** The page's gradient case: batch 2, 3x3 stride 2 pad 1, +bias. */
export const CONV2D_BROWSER_GRADS: Seeded<Conv2dCase>[] = [{ c: CONV2D_GRADS[0]!, seed: CONV2D_GRADS_SEED }];
