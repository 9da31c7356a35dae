/**
 * Transposed convolution cases, run by test/conv-transpose.test.ts (every table, in each kernel
 * mode) and by the browser page (CONV_TRANSPOSE_BROWSER). Tolerances (relative, see expectClose
 * for the floor): forward outputs sum at most ceil(KH / stride) * ceil(KW / stride) * Ci products
 * and dx KH * KW * Co, asserted at 1e-4 (3e-4 for dx of the 15x15 kernel, see there); dw and db
 * sum over N * H * W pixels in chunks, asserted at 2e-4.
 */
import { backward, ops, type Engine } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { convTransposeOutShape, refConvTranspose, refConvTransposeBackward, type ConvTransposeGeometry } from '../ref/conv-transpose.js';
import { expectEqual, f32Round, sizeOf, type Seeded } from './common.js';

export interface ConvTransposeCase {
  x: [number, number, number, number];
  /** [Co, KH, KW] */
  k: [number, number, number];
  stride: [number, number];
  padding: [number, number];
  outputPadding: [number, number];
  bias: boolean;
}

const sq = (v: number): [number, number] => [v, v];
/** x shape, Co, square kernel, stride, padding, output padding, bias. */
export const mk = (x: ConvTransposeCase['x'], co: number, k: number, s: number, p: number, op: number, bias: boolean): ConvTransposeCase => ({
  x, k: [co, k, k], stride: sq(s), padding: sq(p), outputPadding: sq(op), bias,
});
export const describeConvTranspose = (c: ConvTransposeCase): string =>
  `x [${c.x}] w [${c.k},${c.x[3]}] s [${c.stride}] p [${c.padding}] op [${c.outputPadding}]${c.bias ? ' +bias' : ''}`;

/**
 * Forward (and, with `grads`, the backward kernels through autograd) vs the float64 reference;
 * returns the largest relative error, throws over the tolerance.
 */
export async function checkConvTranspose(e: Engine, c: ConvTransposeCase, seed: number, grads: boolean): Promise<number> {
  const g: ConvTransposeGeometry = c;
  const [co, kh, kw] = c.k;
  const ci = c.x[3];
  const xs = f32Round(randn(sizeOf(c.x), seed));
  const ws = f32Round(randn(co * kh * kw * ci, seed + 1));
  const bs = c.bias ? f32Round(randn(co, seed + 2)) : null;
  const outShape = convTransposeOutShape(g);
  const gys = f32Round(randn(sizeOf(outShape), seed + 3));
  const describe = describeConvTranspose;
  return e.scope(async () => {
    const x = e.tensor(Float32Array.from(xs), c.x);
    const w = e.tensor(Float32Array.from(ws), [co, kh, kw, ci]);
    const b = bs ? e.tensor(Float32Array.from(bs), [co]) : null;
    for (const tns of b ? [x, w, b] : [x, w]) tns.requiresGrad = grads;
    const y = ops.convTranspose2d(x, w, b, { stride: c.stride, padding: c.padding, outputPadding: c.outputPadding });
    expectEqual(y.shape, outShape, `shape ${describe(c)}`);
    let worst = expectClose(await y.read(), refConvTranspose(g, xs, ws, bs), 1e-4, `forward ${describe(c)}`);
    if (!grads) return worst;
    backward(y, { gradOutput: e.tensor(Float32Array.from(gys), outShape) });
    const want = refConvTransposeBackward(g, xs, ws, gys);
    // dx sums KH * KW * Co products: 4275 for the x8 head, whose random-sign sums cancel so much
    // that f32 rounding reaches 1.3e-4 of the result (plus floor); shorter sums stay under 1e-4.
    worst = Math.max(worst, expectClose(await x.grad!.read(), want.dx, kh * kw * co > 1000 ? 3e-4 : 1e-4, `dx ${describe(c)}`));
    expectEqual(w.grad!.shape, w.shape, `dw shape ${describe(c)}`);
    worst = Math.max(worst, expectClose(await w.grad!.read(), want.dw, 2e-4, `dw ${describe(c)}`));
    if (b) worst = Math.max(worst, expectClose(await b.grad!.read(), want.db, 2e-4, `db ${describe(c)}`));
    return worst;
  });
}

const seeded = (cases: ConvTransposeCase[], base: number): Seeded<ConvTransposeCase>[] => cases.map((c, i) => ({ c, seed: base + 10 * i }));

/** Forward k3 s2 p1 op1 (CANet up1/up2): channels 1, 3, 5, 17, 37 and 8, 12 (vec4), batch 1/2/3, 7x9, 5x7 and 33x17. */
export const CONV_TRANSPOSE_FORWARD_UP = seeded([
  mk([1, 7, 9, 3], 5, 3, 2, 1, 1, true),
  mk([3, 33, 17, 5], 3, 3, 2, 1, 1, false),
  mk([1, 7, 9, 17], 1, 3, 2, 1, 1, false),
  mk([1, 7, 9, 1], 17, 3, 2, 1, 1, true),
  mk([1, 33, 17, 8], 12, 3, 2, 1, 1, true),
  mk([3, 7, 9, 12], 8, 3, 2, 1, 1, false),
  // 37 output channels: three channel tiles of 16, the last one partial (stores skip its rest).
  mk([2, 5, 7, 5], 37, 3, 2, 1, 1, true),
], 100);

/** Forward k15 s8 p7 op7 (CANet x8 head), k4 s2 p1, k2 s2 p0, stride 1, padding 0/1. */
export const CONV_TRANSPOSE_FORWARD_KERNELS = seeded([
  mk([1, 3, 5, 19], 19, 15, 8, 7, 7, true),
  mk([3, 3, 5, 5], 3, 15, 8, 7, 7, false),
  mk([1, 7, 9, 4], 8, 15, 8, 7, 7, true),
  mk([1, 7, 9, 3], 5, 4, 2, 1, 0, true),
  mk([1, 33, 17, 8], 8, 4, 2, 1, 0, false),
  mk([3, 7, 9, 5], 17, 2, 2, 0, 0, true),
  mk([1, 33, 17, 3], 4, 2, 2, 0, 0, false),
  mk([1, 7, 9, 5], 3, 3, 1, 0, 0, false),
  mk([3, 7, 9, 3], 5, 3, 1, 1, 0, true),
], 200);

/** Forward: non-square kernel/stride/padding, a stride phase with no taps (k1 s2), large padding. */
export const CONV_TRANSPOSE_FORWARD_ODD = seeded([
  { x: [1, 7, 9, 3], k: [5, 3, 5], stride: [2, 3], padding: [1, 2], outputPadding: [1, 0], bias: true },
  { x: [3, 5, 4, 4], k: [4, 2, 3], stride: [1, 2], padding: [0, 1], outputPadding: [0, 1], bias: false },
  mk([1, 7, 9, 5], 3, 1, 2, 0, 1, true),
  mk([1, 9, 7, 3], 2, 5, 2, 3, 1, false),
], 300);

/**
 * Forward shapes with partial blocks of the lanes kernel (conv-transpose-lanes.ts): 33 channels
 * (blocks of 16, the last holding one), 20 in one block of 24 (vec4 stores, the last skipped) and
 * 19 (scalar stores), stride 4 (k7 p3 op3) and 8, phases whose pixel count is not a multiple of
 * the lanes (5x11, 9x13), and 20x37 (six workgroups a phase, the last partial).
 */
export const CONV_TRANSPOSE_FORWARD_LANES = seeded([
  mk([1, 5, 11, 4], 33, 3, 2, 1, 1, true),
  mk([2, 3, 7, 8], 24, 7, 4, 3, 3, false),
  mk([1, 9, 13, 12], 20, 15, 8, 7, 7, true),
  mk([1, 20, 37, 8], 16, 3, 2, 1, 1, true),
  mk([1, 4, 5, 19], 19, 15, 8, 7, 7, false),
], 600);

/** Backward kernels (dx, dw, db via autograd) on awkward and CANet shapes. */
export const CONV_TRANSPOSE_BACKWARD = seeded([
  mk([1, 7, 9, 3], 5, 3, 2, 1, 1, true),
  mk([3, 33, 17, 5], 3, 3, 2, 1, 1, true),
  mk([1, 7, 9, 8], 12, 3, 2, 1, 1, true),
  // CANet's x8 head at a small size and at one large enough for the big register tiles.
  mk([1, 3, 5, 19], 19, 15, 8, 7, 7, true),
  mk([2, 8, 16, 19], 19, 15, 8, 7, 7, true),
  // Large input-gradient tile with 16 channels (CANet's up1/up2 have 320 and 288).
  mk([1, 9, 11, 16], 12, 3, 2, 1, 1, false),
  mk([3, 7, 9, 3], 1, 4, 2, 1, 0, false),
  mk([1, 33, 17, 1], 4, 2, 2, 0, 0, true),
  mk([3, 7, 9, 5], 3, 3, 1, 1, 0, true),
  { x: [1, 7, 9, 3], k: [5, 3, 5], stride: [2, 3], padding: [1, 2], outputPadding: [1, 0], bias: true },
], 400);

/** What the browser page runs, forward and backward: k3 s2 p1 op1 (CANet up), 5 -> 3 channels, batch 3. */
export const CONV_TRANSPOSE_BROWSER: Seeded<ConvTransposeCase>[] = [CONV_TRANSPOSE_BACKWARD[1]!];
