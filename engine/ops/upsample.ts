/**
 * Bilinear resize of NHWC feature maps with PyTorch's F.interpolate(mode='bilinear') formulas.
 * Bilinear interpolation is separable, so forward and backward both run as one-axis passes: the
 * y axis of an NHWC map has rows of W*C contiguous floats, which are vec4-aligned even when C is
 * not (19 classes, say), so the pass over the full-size tensor can use vec4 loads; the order of
 * the passes is chosen by a small cost model. The forward x-then-y order is PyTorch's own
 * evaluation order, h0l*(w0l*v00 + w1l*v01) + h1l*(w0l*v10 + w1l*v11). The backward is a gather
 * over the outputs that read each input (no atomics). An axis whose size does not change is the
 * identity and is skipped.
 */
import upsampleWgsl from '../../shaders/upsample.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkFits, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { runLength } from './broadcast.js';
import { WG, familyHelpers, generatedSpec, main1d, range, sectionSpec } from './shader.js';


// Declared interfaces. The axis passes are generated here (with source_tap, the helper of
// shaders/upsample.wgsl), resize_argmax is a section of that file. One axis pass views its input
// as [a, in_size, b] and its output as [a, out_size, b]; `b` is in units of the element type T
// (vec4<f32> or f32); `scale` is the forward's source step (f32, as PyTorch computes it); `align`
// is align_corners.
const RESIZE_AXIS = (t: string) =>
  ({
    uniforms: { threads: 'u32', b: 'u32', in_size: 'u32', out_size: 'u32', scale: 'f32', align: 'u32' },
    bindings: { x: read(t), y: readWrite('vec4<f32>') },
  }) as const;
/** g is the forward's output [a, out_size, b], dx its input [a, in_size, b]. */
const RESIZE_AXIS_BACKWARD = (t: string) =>
  ({
    uniforms: { threads: 'u32', b: 'u32', in_size: 'u32', out_size: 'u32', scale: 'f32', align: 'u32' },
    bindings: { g: read(t), dx: readWrite(t) },
  }) as const;
/** `k` classes; z [N, in_h, in_w, k] -> ids [N, out_h, out_w]. */
const RESIZE_ARGMAX = {
  uniforms: { threads: 'u32', k: 'u32', in_h: 'u32', in_w: 'u32', out_h: 'u32', out_w: 'u32', scale_y: 'f32', scale_x: 'f32', align: 'u32' },
  bindings: { z: read('f32'), ids: readWrite('i32') },
} as const;

export interface ResizeOptions {
  /** PyTorch's align_corners (default false: pixel centres, negative source coordinates clamped to 0). */
  alignCorners?: boolean;
}

type Shape4 = [number, number, number, number];

/** PyTorch's area_pixel_compute_scale for an explicit output size, rounded to f32 as the kernel uses it. */
function axisScale(inSize: number, outSize: number, align: boolean): number {
  if (align) return outSize > 1 ? Math.fround((inSize - 1) / (outSize - 1)) : 0;
  return Math.fround(inSize / outSize);
}

/**
 * One pass over one axis: it reads a tensor viewed as [a, from, b] and writes [a, to, b] (`b` is
 * the run of floats per index along the axis). `scale` is the forward's, in either direction.
 */
interface AxisPass {
  a: number;
  from: number;
  to: number;
  b: number;
  scale: number;
}

/**
 * Relative cost of a pass producing `elements` floats with `taps` reads each: a vec4 read costs
 * about as much as a scalar one on SwiftShader (SWIFTSHADER.md lesson 1), so vec4 passes count 1/4.
 */
const passCost = (elements: number, b: number, taps: number): number => (elements * taps) / (b % 4 === 0 ? 4 : 1);

/**
 * The passes in the cheaper order for going from NHWC shape `from` to `to`; `taps(from, to)` is
 * the reads per written element of a pass along an axis of those sizes. Identity axes are left out.
 */
function planPasses(from: Shape4, to: Shape4, scaleY: number, scaleX: number, taps: (from: number, to: number) => number): AxisPass[] {
  const [n, h0, w0, c] = from;
  const [, h1, w1] = to;
  const xPass = (rows: number): AxisPass => ({ a: n * rows, from: w0, to: w1, b: c, scale: scaleX });
  const yPass = (width: number): AxisPass => ({ a: n, from: h0, to: h1, b: width * c, scale: scaleY });
  if (h0 === h1 && w0 === w1) return [];
  if (h0 === h1) return [xPass(h0)];
  if (w0 === w1) return [yPass(w0)];
  const xThenY = [xPass(h0), yPass(w1)];
  const yThenX = [yPass(w0), xPass(h1)];
  const cost = (ps: AxisPass[]) => ps.reduce((s, p) => s + passCost(p.a * p.to * p.b, p.b, taps(p.from, p.to)), 0);
  // Ties go to x then y: PyTorch's order of operations.
  return cost(xThenY) <= cost(yThenX) ? xThenY : yThenX;
}

/** Runs the forward or backward kernel of each pass in turn, the last writing a tensor of `finalShape`; intermediates are freed. */
function runPasses(x: Tensor, passes: AxisPass[], finalShape: readonly number[], align: boolean, backward: boolean): Tensor {
  const engine = x.engine;
  passes.forEach((ps, k) => checkFits('resizeBilinear', engine.limits, k === passes.length - 1 ? finalShape : [ps.a, ps.to, ps.b], k === passes.length - 1 ? 'output' : 'intermediate'));
  let cur = x;
  passes.forEach((ps, k) => {
    const last = k === passes.length - 1;
    const next = engine.empty(last ? finalShape : [ps.a, ps.to, ps.b], 'f32');
    if (backward) axisBackward(cur, next, ps, align);
    else axisForward(cur, next, ps, align);
    if (cur !== x) cur.dispose();
    cur = next;
  });
  return cur;
}

/**
 * resize_axis: one axis of the forward (bilinear is separable, and PyTorch's own evaluation order
 * is the x pass then the y pass): x viewed as [a, in, b] -> y [a, out, b] with
 * y[a, o, c] = (1 - lam) * x[a, i0, c] + lam * x[a, i1, c]. Vector mode (b % 4 == 0, b counted in
 * vec4s): `per` consecutive vec4s of one row per invocation, sharing one tap. Scalar mode: four
 * consecutive elements per invocation, stored as one vec4 (tail lanes land in the slack).
 */
function axisForward(x: Tensor, y: Tensor, ps: AxisPass, align: boolean): void {
  const engine = x.engine;
  const n = y.size;
  if (n === 0) return;
  const vec = ps.b % 4 === 0;
  const per = vec ? runLength(ps.b / 4) : 1;
  const threads = Math.ceil(n / 4 / per);
  engine.run({
    name: 'resize_axis',
    variant: vec ? `v${per}` : 's',
    shader: () => {
      // Scalar mode: one index decomposition per invocation (integer division is slow on CPU
      // adapters), stepped with carries from lane to lane; reads clamped for the tail lanes.
      const scalarBody = [
        'let e0 = i * 4u;',
        'var c = e0 % p.b;',
        'let r = e0 / p.b;',
        'var o = r % p.out_size;',
        'var a = r / p.out_size;',
        'let last = arrayLength(&x) - 1u;',
        'var v: vec4<f32>;',
        ...range(4).map((u) =>
          [
            '{',
            '    let t = source_tap(o, p.scale, p.align, p.in_size);',
            '    let base = a * p.in_size * p.b + c;',
            `    v[${u}] = (1.0 - t.lam) * x[min(base + t.i0 * p.b, last)] + t.lam * x[min(base + t.i1 * p.b, last)];`,
            u < 3 ? '    c = c + 1u; let wc = c == p.b; c = select(c, 0u, wc); o = select(o, o + 1u, wc); let wo = o == p.out_size; o = select(o, 0u, wo); a = select(a, a + 1u, wo);' : '',
            '  }',
          ].join('\n  '),
        ),
        'y[i] = v;',
      ].join('\n  ');
      const vecBody = [
        `let e0 = i * ${per}u;`,
        'let c = e0 % p.b;',
        'let r = e0 / p.b;',
        'let base = (r / p.out_size) * p.in_size * p.b + c;',
        'let t = source_tap(r % p.out_size, p.scale, p.align, p.in_size);',
        'let w0 = 1.0 - t.lam;',
        'let s0 = base + t.i0 * p.b;',
        'let s1 = base + t.i1 * p.b;',
        ...range(per).map((k) => `y[e0 + ${k}u] = w0 * x[s0 + ${k}u] + t.lam * x[s1 + ${k}u];`),
      ].join('\n  ');
      const t = vec ? 'vec4<f32>' : 'f32';
      return generatedSpec(RESIZE_AXIS(t), `${familyHelpers(upsampleWgsl)}\n${main1d(vec ? vecBody : scalarBody)}`);
    },
    uniforms: { threads, b: vec ? ps.b / 4 : ps.b, in_size: ps.from, out_size: ps.to, scale: ps.scale, align: align ? 1 : 0 },
    bindings: { x, y },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 3 * n,
    bytes: 4 * n + x.byteLength,
  });
}

/**
 * resize_axis_backward: g viewed as [a, from, b] (from: the forward's output size, b in units of
 * the element type) -> dx [a, to, b], with dx[a, i, c] = sum over the outputs o that read input i
 * of w(o, i) * g[a, o, c], for `per` consecutive c per invocation (they share the weights). The
 * outputs reading i form a contiguous run (the source index is monotone in o); the loop walks that
 * run, found by inverting the source formula, plus a margin, and recomputes each weight exactly as
 * the forward does, so the margin only costs zero-weight iterations.
 */
function axisBackward(g: Tensor, dx: Tensor, ps: AxisPass, align: boolean): void {
  const engine = g.engine;
  const vec = ps.b % 4 === 0;
  const bu = vec ? ps.b / 4 : ps.b;
  const per = runLength(bu);
  const threads = (ps.a * ps.to * bu) / per;
  if (threads === 0) return;
  engine.run({
    name: 'resize_axis_backward',
    variant: `${vec ? 'v' : 's'}${per}`,
    shader: () => {
      const T = vec ? 'vec4<f32>' : 'f32';
      const body = [
        ...range(per).map((k) => `var acc${k} = ${T}(0.0);`),
        'for (var o = u32(lo); o <= u32(hi); o = o + 1u) {',
        '    let t = source_tap(o, p.scale, p.align, p.in_size);',
        '    let w = select(0.0, 1.0 - t.lam, t.i0 == i) + select(0.0, t.lam, t.i1 == i);',
        ...range(per).map((k) => `    acc${k} = acc${k} + w * g[at + ${k}u];`),
        '    at = at + p.b;',
        '  }',
        ...range(per).map((k) => `  dx[idx * ${per}u + ${k}u] = acc${k};`),
      ].join('\n  ');
      // Outputs whose source coordinate lies in [i - 1, i + 1): o in [below, above) with the
      // formula inverted; floor and ceil widen the run by up to one output each side, which absorbs
      // rounding. The last input also takes the clamped taps at the far edge.
      return generatedSpec(RESIZE_AXIS_BACKWARD(T), `${familyHelpers(upsampleWgsl)}\n${main1d(`let c = idx * ${per}u % p.b;
  let r = idx * ${per}u / p.b;
  let i = r % p.in_size;
  let a = r / p.in_size;
  let last = f32(p.out_size - 1u);
  var lo = 0.0;
  var hi = last;
  if (p.scale > 0.0) {
    let inv = 1.0 / p.scale;
    let fi = f32(i);
    let below = select((fi - 0.5) * inv - 0.5, (fi - 1.0) * inv, p.align != 0u);
    let above = select((fi + 1.5) * inv - 0.5, (fi + 1.0) * inv, p.align != 0u);
    lo = clamp(floor(below), 0.0, last);
    hi = clamp(ceil(above), 0.0, last);
    hi = select(hi, last, i == p.in_size - 1u);
  }
  var at = (a * p.out_size + u32(lo)) * p.b + c;
  ${body}`, { index: 'idx' })}`);
    },
    uniforms: { threads, b: bu, in_size: ps.to, out_size: ps.from, scale: ps.scale, align: align ? 1 : 0 },
    bindings: { g, dx },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 4 * ps.a * ps.b * ps.from,
    bytes: 4 * ps.a * ps.b * (2 * ps.from + ps.to),
  });
}

/** Forward reads per output: two. Backward: the run of outputs reading one input, plus the margin. */
const forwardTaps = (): number => 2;
const backwardTaps = (from: number, to: number): number => 2 * Math.max(1, from / to) + 2;

/**
 * Bilinear resize of [N,H,W,C] to [N,outH,outW,C] with PyTorch's F.interpolate(mode='bilinear')
 * formulas: align_corners=false (default) samples at src = (dst + 0.5) * in/out - 0.5 clamped at 0,
 * alignCorners samples at dst * (in-1)/(out-1). Backward: gathers over the contributing outputs.
 */
export function resizeBilinear(x: Tensor, outH: number, outW: number, opts: ResizeOptions = {}): Tensor {
  checkOperands('resizeBilinear', x);
  const op = 'resizeBilinear';
  check(x.rank === 4, op, () => `${x.name} must be [N, H, W, C], got ${fmtShape(x.shape)}`);
  check(x.dtype === 'f32', op, () => `${x.name} must be f32, got ${x.dtype}`);
  const inShape = x.shape as Shape4;
  const [n, h, w, c] = inShape;
  check(h >= 1 && w >= 1, op, () => `${x.name} ${fmtShape(x.shape)} has no pixels to interpolate from`);
  check(Number.isInteger(outH) && outH >= 1 && Number.isInteger(outW) && outW >= 1, op, () =>
    `output size must be positive integers, got ${outH} x ${outW} for ${x.name} ${fmtShape(x.shape)}`);
  const align = opts.alignCorners === true;
  const sy = axisScale(h, outH, align);
  const sx = axisScale(w, outW, align);
  const outShape: Shape4 = [n, outH, outW, c];
  const out = copyIfIdentity(x, outShape) ?? runPasses(x, planPasses(inShape, outShape, sy, sx, forwardTaps), outShape, align, false);
  return recordOp(out, 'resizeBilinear', [x], (g) => [
    copyIfIdentity(g, inShape) ?? runPasses(g, planPasses(outShape, inShape, sy, sx, backwardTaps), inShape, align, true),
  ]);
}

/** A copy of t when the resize does not change its size (both axes are then the identity). */
function copyIfIdentity(t: Tensor, shape: Shape4): Tensor | null {
  if (t.shape[1] !== shape[1] || t.shape[2] !== shape[2]) return null;
  const out = t.engine.empty(shape, 'f32');
  t.engine.copyBuffer(t, 0, out, 0, t.byteLength);
  return out;
}

/**
 * Inference: class ids [N, outH, outW] (i32) = argmax over channels of resizeBilinear(z, outH,
 * outW), in one kernel that never stores the resized logits (the plain head's x8 output is the
 * largest tensor of a segmentation and may not fit one binding). Ties go to the lower channel.
 */
export function resizeBilinearArgmax(z: Tensor, outH: number, outW: number, opts: ResizeOptions = {}): Tensor {
  const op = 'resizeBilinearArgmax';
  checkOperands(op, z);
  check(z.rank === 4 && z.dtype === 'f32', op, () => `input ${z.name} must be f32 NHWC [N, H, W, C], got ${z.dtype} ${fmtShape(z.shape)}`);
  const [n, h, w, c] = z.shape as Shape4;
  check(n > 0 && h > 0 && w > 0 && c > 0, op, () => `input ${z.name} ${fmtShape(z.shape)} has a zero dimension`);
  for (const [what, v] of [['outH', outH], ['outW', outW]] as const) check(Number.isInteger(v) && v >= 1, op, () => `${what} must be a positive integer, got ${v}`);
  checkFits(op, z.engine.limits, [n, outH, outW], 'output');
  const align = opts.alignCorners ?? false;
  const engine = z.engine;
  const ids = engine.empty([n, outH, outW], 'i32');
  const threads = n * outH * outW;
  engine.run({
    name: 'resize_argmax',
    shader: () => sectionSpec(RESIZE_ARGMAX, upsampleWgsl, 'resize_argmax', { WG }),
    uniforms: { threads, k: c, in_h: h, in_w: w, out_h: outH, out_w: outW, scale_y: axisScale(h, outH, align), scale_x: axisScale(w, outW, align), align: align ? 1 : 0 },
    bindings: { z, ids },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 7 * threads * c,
    bytes: z.byteLength + 4 * threads,
  });
  return ids;
}
