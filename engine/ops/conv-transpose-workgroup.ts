/**
 * The transposed convolution's kernels for real GPUs: conv2d's workgroup-memory GEMMs
 * (conv2d-workgroup.ts) in the geometry that makes each one a transposed convolution. With
 * oy = iy * stride - padding + ky relating the transposed convolution's input x and output y:
 * - forward:        y = conv2d's input gradient of "gy" = x: one stride phase of y per workgroup,
 *                   visiting only the taps that reach it (ceil(K / stride) per axis);
 * - input gradient: dx = a conv2d forward of gy (stride and padding the same, dilation 1);
 * - filter gradient: conv2d's filter gradient with x in the role of gy and gy in the role of x.
 * In all three the weights [Co, KH, KW, Ci] have their channel axes the other way round from
 * conv2d's view ('swapped'). Channel counts need no padding (scalar loads where not % 4).
 * The fused argmax (inference head) keeps its register kernel: it needs all classes of a pixel in
 * one invocation.
 */
import type { Engine } from '../engine.js';
import type { Tensor } from '../tensor.js';
import type { Geometry } from './conv2d.js';
import { defaultGemmTile, gemmFilterChunks, gemmFilterProgram, gemmForwardProgram, gemmInputProgram } from './conv2d-workgroup.js';
import type { Epilogue } from './epilogue.js';
import { sumColumns } from './reduce.js';

/** The transposed convolution's geometry (conv-transpose.ts): x [n, h, w, ci] -> y [n, ho, wo, co]. */
export interface TransposeGeometry {
  n: number; h: number; w: number; ci: number; co: number;
  kh: number; kw: number; sh: number; sw: number; ph: number; pw: number;
  ho: number; wo: number;
}

/**
 * Whether the transposed convolution runs these kernels: the `convTranspose` variant when forced
 * (engine.variants), else its default (real GPUs) unless the autotuner measured a register tile
 * faster for this kernel (`registerTuned`; see conv-transpose.ts's tuning candidates).
 */
export function convTransposeUsesWorkgroup(engine: Engine, registerTuned: boolean): boolean {
  const prefer = engine.variants.override('convTranspose');
  if (prefer !== undefined) return prefer === 'workgroup';
  return !registerTuned && engine.variants.defaultOf('convTranspose') === 'workgroup';
}

/** A conv2d geometry (groups 1, dilation 1, no slices) from its parts. */
function conv(t: TransposeGeometry, io: { h: number; w: number; ci: number; co: number; ho: number; wo: number; xstride: number }): Geometry {
  return {
    n: t.n, ...io, kh: t.kh, kw: t.kw, sh: t.sh, sw: t.sw, ph: t.ph, pw: t.pw, dh: 1, dw: 1,
    groups: 1, cig: io.ci, cog: io.co, xoff: 0, woff: 0,
  };
}

/** y = convTranspose2d(x, w) (+ bias, + epilogue); returns y, or the epilogue's target. */
export function convTransposeForwardWorkgroup(x: Tensor, w: Tensor, bias: Tensor | null, t: TransposeGeometry, epi: Epilogue | null): Tensor {
  const engine = x.engine;
  // conv2d's input-gradient frame: its "dx" is y (t.ho x t.wo, Co), its "gy" is x (t.h x t.w, Ci).
  const g = { ...conv(t, { h: t.ho, w: t.wo, ci: t.co, co: t.ci, ho: t.h, wo: t.w, xstride: t.co }), cig: t.co, cog: t.ci };
  const out = epi?.into ? null : engine.empty([t.n, t.ho, t.wo, t.co], 'f32');
  const tile = defaultGemmTile('input', t.n * Math.ceil(t.ho / t.sh) * Math.ceil(t.wo / t.sw), t.co);
  engine.run(gemmInputProgram(engine, g, x, w, null, false, tile, { name: 'conv_transpose_wg_forward', weights: 'swapped', store: { out, bias, epi } }));
  return out ?? epi!.into!.tensor;
}

/** dL/dx from gy (whose rows may be zero-padded to a multiple of 4 channels: its size gives the row stride). */
export function convTransposeBackwardInputWorkgroup(gy: Tensor, w: Tensor, t: TransposeGeometry): Tensor {
  const engine = gy.engine;
  // conv2d's forward frame: input gy (t.ho x t.wo, Co), output dx (t.h x t.w, Ci).
  const g = conv(t, { h: t.ho, w: t.wo, ci: t.co, co: t.ci, ho: t.h, wo: t.w, xstride: gy.size / (t.n * t.ho * t.wo) });
  const dx = engine.empty([t.n, t.h, t.w, t.ci], 'f32');
  const tile = defaultGemmTile('forward', t.n * t.h * t.w, t.ci);
  engine.run(gemmForwardProgram(engine, g, gy, w, null, dx, null, tile, { name: 'conv_transpose_wg_backward_input', weights: 'swapped' }));
  return dx;
}

/** dL/dw into `into` when given (gy's rows may be padded as for the input gradient). */
export function convTransposeBackwardFilterWorkgroup(x: Tensor, gy: Tensor, t: TransposeGeometry, into: Tensor | null): Tensor {
  const engine = x.engine;
  // conv2d's filter frame: pixels of x (its "gy", Ci channels), patches of gy (its "x", Co
  // channels, its padded row stride); the result [Ci][tap][Co] is stored as [Co, KH, KW, Ci].
  const g = { ...conv(t, { h: t.ho, w: t.wo, ci: gy.size / (t.n * t.ho * t.wo), co: t.ci, ho: t.h, wo: t.w, xstride: 0 }), cig: t.co };
  const tile = defaultGemmTile('filter', t.ci, t.kh * t.kw * t.co);
  const plan = gemmFilterChunks(engine, g, tile);
  const dw = into ?? engine.empty([t.co, t.kh, t.kw, t.ci], 'f32');
  const opts = { name: 'conv_transpose_wg_backward_filter', weights: 'swapped' } as const;
  if (plan.chunks === 1) {
    engine.run(gemmFilterProgram(engine, g, plan, x, gy, dw, tile, opts));
    return dw;
  }
  const size = t.co * t.kh * t.kw * t.ci;
  const partial = engine.empty([plan.chunks, size], 'f32');
  engine.run(gemmFilterProgram(engine, g, plan, x, gy, partial, tile, opts));
  sumColumns(partial, size, dw);
  partial.dispose();
  return dw;
}
