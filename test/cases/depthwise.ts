/**
 * Depthwise convolution cases, run by test/depthwise.test.ts (every table, in each kernel mode)
 * and by the browser page (DEPTHWISE_BROWSER). Tolerances: forward and dx sum at most KH * KW
 * products per output, so f32 stays within 1e-5 relative (1e-4 asserted); dw and db sum over up
 * to N * Ho * Wo products in chunks, asserted at 2e-4.
 */
import { backward, ops, type Engine } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { depthwiseOutShape, refDepthwise, refDepthwiseBackward, type DepthwiseGeometry } from '../ref/depthwise.js';
import { expectEqual, f32Round, sizeOf, type Seeded } from './common.js';

export interface DepthwiseCase {
  x: [number, number, number, number];
  k: [number, number];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  bias: boolean;
}

export const describeDepthwise = (c: DepthwiseCase): string =>
  `x [${c.x}] k ${c.k.join('x')} s [${c.stride}] p [${c.padding}] d [${c.dilation}]${c.bias ? ' +bias' : ''}`;

/**
 * Forward (and, with `grads`, the backward kernels through autograd) vs the float64 reference;
 * returns the largest relative error, throws over the tolerance.
 */
export async function checkDepthwise(e: Engine, c: DepthwiseCase, seed: number, grads: boolean): Promise<number> {
  const g: DepthwiseGeometry = c;
  const ch = c.x[3];
  const xs = f32Round(randn(sizeOf(c.x), seed));
  const ws = f32Round(randn(c.k[0] * c.k[1] * ch, seed + 1));
  const bs = c.bias ? f32Round(randn(ch, seed + 2)) : null;
  const outShape = depthwiseOutShape(g);
  const gys = f32Round(randn(sizeOf(outShape), seed + 3));
  const opts: ops.DepthwiseOptions = { stride: c.stride, padding: c.padding, dilation: c.dilation };
  return e.scope(async () => {
    const x = e.tensor(Float32Array.from(xs), c.x);
    const w = e.tensor(Float32Array.from(ws), [c.k[0], c.k[1], ch]);
    const b = bs ? e.tensor(Float32Array.from(bs), [ch]) : null;
    for (const tns of b ? [x, w, b] : [x, w]) tns.requiresGrad = grads;
    const y = ops.depthwiseConv2d(x, w, b, opts);
    expectEqual(y.shape, outShape, `shape ${describeDepthwise(c)}`);
    let worst = expectClose(await y.read(), refDepthwise(g, xs, ws, bs), 1e-4, `forward ${describeDepthwise(c)}`);
    if (!grads) return worst;
    backward(y, { gradOutput: e.tensor(Float32Array.from(gys), outShape) });
    const want = refDepthwiseBackward(g, xs, ws, gys);
    worst = Math.max(worst, expectClose(await x.grad!.read(), want.dx, 1e-4, `dx ${describeDepthwise(c)}`));
    expectEqual(w.grad!.shape, w.shape, `dw shape ${describeDepthwise(c)}`);
    worst = Math.max(worst, expectClose(await w.grad!.read(), want.dw, 2e-4, `dw ${describeDepthwise(c)}`));
    if (b) worst = Math.max(worst, expectClose(await b.grad!.read(), want.db, 2e-4, `db ${describeDepthwise(c)}`));
    return worst;
  });
}

/**
 * Forward 3x3: channels 1, 3, 5, 17 (scalar) and 8, 96 (vec4), every (stride, padding) of 1/2 and
 * 0/1 meeting both sizes (7x9, 33x17) and both batch sizes (1, 3) across the channel counts.
 */
export const DEPTHWISE_FORWARD_3X3: Seeded<DepthwiseCase>[] = [1, 3, 5, 17, 8, 96].flatMap((ch, ci) =>
  ([[1, 0], [1, 1], [2, 0], [2, 1]] as const).map(([s, p], si) => {
    const big = (ci + si) % 2 === 0;
    const c: DepthwiseCase = { x: [big ? 3 : 1, big ? 33 : 7, big ? 17 : 9, ch], k: [3, 3], stride: [s, s], padding: [p, p], dilation: [1, 1], bias: ci % 2 === 1 };
    return { c, seed: 100 + 4 * ci + si };
  }),
);

/** Forward: dilation 2, non-square kernels and strides, large padding, 1-pixel outputs. */
export const DEPTHWISE_FORWARD_ODD: Seeded<DepthwiseCase>[] = (
  [
    { x: [1, 33, 17, 5], k: [3, 3], stride: [1, 1], padding: [2, 2], dilation: [2, 2], bias: true },
    { x: [3, 7, 9, 8], k: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [2, 2], bias: false },
    { x: [1, 7, 9, 3], k: [5, 3], stride: [2, 1], padding: [2, 0], dilation: [1, 1], bias: true },
    { x: [1, 9, 7, 4], k: [1, 7], stride: [1, 3], padding: [0, 3], dilation: [1, 1], bias: false },
    { x: [1, 3, 3, 4], k: [3, 3], stride: [1, 1], padding: [0, 0], dilation: [1, 1], bias: true },
    { x: [1, 2, 2, 1], k: [3, 3], stride: [2, 2], padding: [2, 2], dilation: [1, 1], bias: false },
  ] as DepthwiseCase[]
).map((c, i) => ({ c, seed: 200 + 10 * i }));

/** Backward kernels (dx, dw, db via autograd) on awkward shapes. */
export const DEPTHWISE_BACKWARD: Seeded<DepthwiseCase>[] = (
  [
    { x: [1, 7, 9, 3], k: [3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], bias: true },
    { x: [3, 33, 17, 5], k: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], bias: true },
    { x: [1, 33, 17, 17], k: [3, 3], stride: [2, 2], padding: [0, 0], dilation: [1, 1], bias: false },
    { x: [3, 7, 9, 8], k: [3, 3], stride: [1, 1], padding: [0, 0], dilation: [1, 1], bias: true },
    { x: [1, 33, 17, 96], k: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], bias: true },
    { x: [1, 9, 11, 4], k: [3, 3], stride: [1, 1], padding: [2, 2], dilation: [2, 2], bias: false },
    { x: [1, 7, 9, 1], k: [5, 3], stride: [2, 3], padding: [2, 1], dilation: [1, 1], bias: true },
  ] as DepthwiseCase[]
).map((c, i) => ({ c, seed: 300 + 10 * i }));

/** What the browser page runs, forward and backward: 3x3 stride 2 pad 1 +bias, 5 (scalar, batch 3) and 96 (vec4) channels. */
export const DEPTHWISE_BROWSER: Seeded<DepthwiseCase>[] = [DEPTHWISE_BACKWARD[1]!, DEPTHWISE_BACKWARD[4]!];
