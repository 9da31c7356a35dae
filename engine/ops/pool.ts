/**
 * Pooling over NHWC tensors: global average and max pooling ([N, H, W, C] -> [N, C], CANet's
 * channel attention) and PyTorch's MaxPool2d (ResNet's stem). Channels are processed four at a
 * time (vec4) when C % 4 == 0.
 */
import { recordOp } from '../autograd.js';
import { check, checkInt, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type Interface, WG, generatedSpec, lines, main1d } from './shader.js';
import { SG_WG, subgroupMain, useSubgroups, workgroupSumWgsl } from './subgroup.js';

/** Pixels per loop iteration in the global reductions (unrolled). */
const UNROLL = 4;
/** Pixels written per invocation by the global pooling backward passes. */
const K = 8;
/**
 * maxPool2d's backward takes blocks of stride-height x stride-width inputs per invocation, one
 * accumulator each, up to this many (register budget, SWIFTSHADER.md lesson 3); larger strides
 * use the one-input-per-invocation kernel.
 */
const MAX_BLOCK = 16;
/**
 * Global reductions split H*W into chunks until about this many invocations run, with at least
 * MIN_PIXELS_PER_CHUNK pixels each. On SwiftShader 256-1024 invocations measured 10-50% faster than
 * 4096-16384 (1x64x128x256, 2x32x64x96, 1x128x256x19); hardware GPUs need many more in flight
 * (the hardware value is not measured: no hardware adapter was available).
 */
const TARGET_INVOCATIONS = { software: 1024, hardware: 16384 };
const MIN_PIXELS_PER_CHUNK = 32;

/** WGSL types for V channels per invocation. */
interface Vec {
  v: 1 | 4;
  T: string;
  U: string;
  B: string;
}

function vecFor(c: number): Vec {
  return c % 4 === 0 ? { v: 4, T: 'vec4<f32>', U: 'vec4<u32>', B: 'vec4<bool>' } : { v: 1, T: 'f32', U: 'u32', B: 'bool' };
}

/** Variant tag of the channel vector width. */
const vtag = (vec: Vec): string => (vec.v === 4 ? 'v4' : 's');

// Declared interfaces, by channel vector type (the kernels are generated below). `cv` = C / V channel vectors;
// `total` = invocations; `hw` = H * W pixels.
/** `ppc` pixels per chunk; `scale` 1 / hw when one chunk covers the image (no finishing pass), else 1. */
const GLOBAL_AVG_PARTIAL = (v: Vec) =>
  ({ uniforms: { hw: 'u32', cv: 'u32', ppc: 'u32', chunks: 'u32', total: 'u32', scale: 'f32' }, bindings: { x: read(v.T), out: readWrite(v.T) } }) as const;
/** global_avg_sg: `total` = N * cv workgroups, `scale` = 1 / hw. */
const GLOBAL_AVG_SG = (v: Vec) => ({ uniforms: { hw: 'u32', cv: 'u32', total: 'u32', scale: 'f32' }, bindings: { x: read(v.T), out: readWrite(v.T) } }) as const;
/** `scale` = 1 / hw. */
const GLOBAL_AVG_FINISH = (v: Vec) =>
  ({ uniforms: { cv: 'u32', chunks: 'u32', total: 'u32', scale: 'f32' }, bindings: { part: read(v.T), out: readWrite(v.T) } }) as const;
/** `blocks` of K pixels per image; `scale` = 1 / hw. */
const GLOBAL_AVG_BACKWARD = (v: Vec) =>
  ({ uniforms: { hw: 'u32', cv: 'u32', blocks: 'u32', total: 'u32', scale: 'f32' }, bindings: { g: read(v.T), dx: readWrite(v.T) } }) as const;
const GLOBAL_MAX_PARTIAL = (v: Vec) =>
  ({
    uniforms: { hw: 'u32', cv: 'u32', ppc: 'u32', chunks: 'u32', total: 'u32' },
    bindings: { x: read(v.T), out: readWrite(v.T), out_idx: readWrite(v.U) },
  }) as const;
const GLOBAL_MAX_FINISH = (v: Vec) =>
  ({
    uniforms: { cv: 'u32', chunks: 'u32', total: 'u32' },
    bindings: { part: read(v.T), part_idx: read(v.U), out: readWrite(v.T), out_idx: readWrite(v.U) },
  }) as const;
const GLOBAL_MAX_BACKWARD = (v: Vec) =>
  ({ uniforms: { hw: 'u32', cv: 'u32', blocks: 'u32', total: 'u32' }, bindings: { g: read(v.T), idx: read(v.U), dx: readWrite(v.T) } }) as const;
/**
 * `ow_blocks` blocks of OWP outputs per row; `neg_inf` = -Infinity, a uniform because WGSL constant
 * expressions cannot hold infinities. `idx` (the argmax window positions) only when saved.
 */
const MAX_POOL_FORWARD_UNIFORMS = { h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', pad_h: 'u32', pad_w: 'u32', ow_blocks: 'u32', total: 'u32', neg_inf: 'f32' } as const;
const MAX_POOL_FORWARD = (v: Vec, saveIdx: boolean): Interface => ({
  uniforms: MAX_POOL_FORWARD_UNIFORMS,
  bindings: saveIdx ? { x: read(v.T), y: readWrite(v.T), idx: readWrite(v.U) } : { x: read(v.T), y: readWrite(v.T) },
});
/** `bh` x `bw` blocks of SH x SW inputs. */
const MAX_POOL_BACKWARD_BLOCKED = (v: Vec) =>
  ({
    uniforms: { h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', bh: 'u32', bw: 'u32', total: 'u32' },
    bindings: { g: read(v.T), idx: read(v.U), dx: readWrite(v.T) },
  }) as const;
const MAX_POOL_BACKWARD = (v: Vec) =>
  ({
    uniforms: { h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', pad_h: 'u32', pad_w: 'u32', total: 'u32' },
    bindings: { g: read(v.T), idx: read(v.U), dx: readWrite(v.T) },
  }) as const;

function checkNhwc(op: string, x: Tensor): [number, number, number, number] {
  checkOperands(op, x);
  check(x.rank === 4, op, () => `input ${x.name} must be [N, H, W, C], got ${fmtShape(x.shape)}`);
  check(x.size > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} is empty`);
  check(x.dtype === 'f32', op, () => `${x.name} must be f32, got ${x.dtype}`);
  return x.shape as [number, number, number, number];
}

/** Chunks of H*W for a global reduction over n images of cv channel vectors. */
function chunking(x: Tensor, n: number, hw: number, cv: number): { ppc: number; chunks: number } {
  const target = TARGET_INVOCATIONS[x.engine.adapter.isSoftware ? 'software' : 'hardware'];
  const want = Math.max(1, Math.ceil(target / (n * cv)));
  const chunks0 = Math.min(want, Math.max(1, Math.floor(hw / MIN_PIXELS_PER_CHUNK)));
  const ppc = Math.ceil(hw / chunks0);
  return { ppc, chunks: Math.ceil(hw / ppc) };
}

/**
 * Global average pooling: [N,H,W,C] -> [N,C], the mean over H and W.
 * @throws ShapeError for a rank other than 4, an empty or non-f32 input.
 */
export function globalAvgPool(x: Tensor): Tensor {
  const [n, h, w, c] = checkNhwc('globalAvgPool', x);
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  const vec = vecFor(c);
  const cv = c / vec.v;
  const hw = h * w;
  const out = engine.empty([n, c], 'f32');
  // With subgroups (subgroup.ts), a workgroup per (image, channel vector) in one pass.
  const sg = useSubgroups(engine) && hw >= SG_WG;
  const { ppc, chunks } = sg ? { ppc: hw, chunks: 1 } : chunking(x, n, hw, cv);
  const part = chunks === 1 ? out : engine.empty([n, chunks, c], 'f32');
  if (sg)
    engine.run({
      name: 'global_avg_sg',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_AVG_SG(vec), globalAvgSgWgsl(vec)),
      uniforms: { hw, cv, total: n * cv, scale: 1 / hw },
      bindings: { x, out },
      dispatch: grid1d(n * cv * SG_WG, SG_WG, maxDim),
      flops: x.size,
      bytes: x.byteLength,
    });
  else
    engine.run({
      name: 'global_avg_partial',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_AVG_PARTIAL(vec), globalAvgPartialWgsl(vec)),
      uniforms: { hw, cv, ppc, chunks, total: n * chunks * cv, scale: chunks === 1 ? 1 / hw : 1 },
      bindings: { x, out: part },
      dispatch: grid1d(n * chunks * cv, WG, maxDim),
      flops: x.size,
      bytes: x.byteLength,
    });
  if (chunks > 1) {
    engine.run({
      name: 'global_avg_finish',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_AVG_FINISH(vec), globalAvgFinishWgsl(vec)),
      uniforms: { cv, chunks, total: n * cv, scale: 1 / hw },
      bindings: { part, out },
      dispatch: grid1d(n * cv, WG, maxDim),
    });
    part.dispose();
  }
  return recordOp(out, 'globalAvgPool', [x], (g) => {
    const dx = engine.empty(x.shape, 'f32');
    const blocks = Math.ceil(hw / K);
    engine.run({
      name: 'global_avg_backward',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_AVG_BACKWARD(vec), globalAvgBackwardWgsl()),
      uniforms: { hw, cv, blocks, total: n * blocks * cv, scale: 1 / hw },
      bindings: { g, dx },
      dispatch: grid1d(n * blocks * cv, WG, maxDim),
      bytes: x.byteLength,
    });
    return [dx];
  });
}

/**
 * Global max pooling: [N,H,W,C] -> [N,C]; backward routes the gradient to the (first) argmax position.
 * @throws ShapeError for a rank other than 4, an empty or non-f32 input.
 */
export function globalMaxPool(x: Tensor): Tensor {
  const [n, h, w, c] = checkNhwc('globalMaxPool', x);
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  const vec = vecFor(c);
  const cv = c / vec.v;
  const hw = h * w;
  const { ppc, chunks } = chunking(x, n, hw, cv);
  const out = engine.empty([n, c], 'f32');
  const idx = engine.empty([n, c], 'u32');
  const single = chunks === 1;
  const part = single ? out : engine.empty([n, chunks, c], 'f32');
  const partIdx = single ? idx : engine.empty([n, chunks, c], 'u32');
  engine.run({
    name: 'global_max_partial',
    variant: vtag(vec),
    shader: () => generatedSpec(GLOBAL_MAX_PARTIAL(vec), globalMaxPartialWgsl(vec)),
    uniforms: { hw, cv, ppc, chunks, total: n * chunks * cv },
    bindings: { x, out: part, out_idx: partIdx },
    dispatch: grid1d(n * chunks * cv, WG, maxDim),
    flops: x.size,
    bytes: x.byteLength,
  });
  if (!single) {
    engine.run({
      name: 'global_max_finish',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_MAX_FINISH(vec), globalMaxFinishWgsl(vec)),
      uniforms: { cv, chunks, total: n * cv },
      bindings: { part, part_idx: partIdx, out, out_idx: idx },
      dispatch: grid1d(n * cv, WG, maxDim),
    });
    part.dispose();
    partIdx.dispose();
  }
  const y = recordOp(out, 'globalMaxPool', [x], (g) => {
    if (idx.disposed) throw new Error(`globalMaxPool backward: the saved argmax indices were disposed; call backward inside the scope that ran the forward pass`);
    const dx = engine.empty(x.shape, 'f32');
    const blocks = Math.ceil(hw / K);
    engine.run({
      name: 'global_max_backward',
      variant: vtag(vec),
      shader: () => generatedSpec(GLOBAL_MAX_BACKWARD(vec), globalMaxBackwardWgsl(vec)),
      uniforms: { hw, cv, blocks, total: n * blocks * cv },
      bindings: { g, idx, dx },
      dispatch: grid1d(n * blocks * cv, WG, maxDim),
      bytes: x.byteLength,
    });
    return [dx];
  });
  if (!y.node) idx.dispose();
  return y;
}

/** Options of {@link maxPool2d} (PyTorch's MaxPool2d without dilation, ceil_mode false). */
export interface MaxPoolOptions {
  /** Window size, square or [height, width]. */
  kernel: number | [number, number];
  /** Step between windows; defaults to the kernel size (as PyTorch). */
  stride?: number | [number, number];
  /** Implicit -inf border on each side; at most half the kernel size. Default 0. */
  padding?: number | [number, number];
}

/** A window option as [height, width]: a number or a pair of numbers, else a ShapeError naming it. */
function pair(op: string, name: string, v: number | [number, number]): [number, number] {
  check(typeof v === 'number' || (Array.isArray(v) && v.length === 2), op, () => `${name} must be a number or a pair [height, width], got ${JSON.stringify(v)}`);
  return Array.isArray(v) ? [v[0], v[1]] : [v, v];
}

/**
 * 2-D max pooling: [N,H,W,C] -> [N,Ho,Wo,C] with Ho = floor((H + 2 pad - k) / stride) + 1, PyTorch
 * MaxPool2d semantics (padding counts as -inf; the first maximum in the window wins; NaN
 * propagates) — ResNet's stem uses k3 s2 p1. Backward routes each gradient to its argmax.
 * @throws ShapeError for a rank other than 4, an empty or non-f32 input, a kernel or stride below
 *   1, padding below 0 or above half the kernel, or an input smaller than one window.
 */
export function maxPool2d(x: Tensor, opts: MaxPoolOptions): Tensor {
  const op = 'maxPool2d';
  const [n, h, w, c] = checkNhwc(op, x);
  const [kh, kw] = pair(op, 'kernel', opts.kernel);
  const [sh, sw] = pair(op, 'stride', opts.stride === undefined ? opts.kernel : opts.stride);
  const [ph, pw] = pair(op, 'padding', opts.padding === undefined ? 0 : opts.padding);
  checkInt(op, 'kernel height', kh);
  checkInt(op, 'kernel width', kw);
  checkInt(op, 'stride height', sh);
  checkInt(op, 'stride width', sw);
  checkInt(op, 'padding height', ph, 0);
  checkInt(op, 'padding width', pw, 0);
  check(2 * ph <= kh && 2 * pw <= kw, op, () => `padding [${ph}, ${pw}] must be at most half of kernel [${kh}, ${kw}] (PyTorch's rule: a window is never all padding)`);
  check(h + 2 * ph >= kh && w + 2 * pw >= kw, op, () =>
    `input ${x.name} ${fmtShape(x.shape)} with padding [${ph}, ${pw}] is smaller than kernel [${kh}, ${kw}]: output would be empty`);
  const ho = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const wo = Math.floor((w + 2 * pw - kw) / sw) + 1;

  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  const vec = vecFor(c);
  const cv = c / vec.v;
  const saveIdx = engine.gradEnabled && x.requiresGrad;
  // Neighbouring outputs share input columns when the kernel is wider than the stride; small
  // windows compute 4 outputs per invocation (fewer loads per output), large ones fewer so the
  // unrolled code and the live registers stay bounded.
  const area = kh * kw;
  // llvmpipe (lavapipe) JIT-compiles each kernel at its first dispatch, and compile time grows with
  // the unrolled window: there one output per invocation and a loop over the window rows (only
  // the kw taps of a row unrolled): the `poolShape` variant's default (engine.variants), which an
  // override forces. Measured in bench/RESULTS.md (2026-12-06, max pool on a cold lavapipe).
  const rolled = engine.variants.choose('poolShape') === 'rolled';
  const owp = rolled ? 1 : Math.min(area <= 16 ? 4 : area <= 49 ? 2 : 1, 1 << Math.ceil(Math.log2(wo)));
  const owBlocks = Math.ceil(wo / owp);
  const y = engine.empty([n, ho, wo, c], 'f32');
  const idx = saveIdx ? engine.empty([n, ho, wo, c], 'u32') : null;
  const total = n * ho * owBlocks * cv;
  engine.run({
    name: 'max_pool_forward',
    variant: `${vtag(vec)}-k${kh}x${kw}-s${sh}x${sw}-o${owp}${rolled ? '-rows' : ''}${saveIdx ? '-idx' : ''}`,
    shader: () => generatedSpec(MAX_POOL_FORWARD(vec, saveIdx), maxPoolForwardWgsl(vec, kh, kw, sh, sw, owp, saveIdx, rolled)),
    uniforms: { h, w, cv, ho, wo, pad_h: ph, pad_w: pw, ow_blocks: owBlocks, total, neg_inf: -Infinity },
    bindings: idx ? { x, y, idx } : { x, y },
    dispatch: grid1d(total, WG, maxDim),
    flops: n * ho * wo * c * area,
    bytes: x.byteLength + y.byteLength,
  });
  return recordOp(y, op, [x], (g) => {
    if (idx!.disposed) throw new Error(`${op} backward: the saved argmax indices were disposed; call backward inside the scope that ran the forward pass`);
    const dx = engine.empty(x.shape, 'f32');
    if (sh * sw <= MAX_BLOCK) {
      const [bh, bw] = [Math.ceil(h / sh), Math.ceil(w / sw)];
      engine.run({
        name: 'max_pool_backward_blocked',
        variant: `${vtag(vec)}-k${kh}x${kw}-s${sh}x${sw}-p${ph}x${pw}`,
        shader: () => generatedSpec(MAX_POOL_BACKWARD_BLOCKED(vec), maxPoolBackwardBlockedWgsl(vec, [kh, kw], [sh, sw], [ph, pw])),
        uniforms: { h, w, cv, ho, wo, bh, bw, total: n * bh * bw * cv },
        bindings: { g, idx: idx!, dx },
        dispatch: grid1d(n * bh * bw * cv, WG, maxDim),
        bytes: x.byteLength + 2 * y.byteLength,
      });
    } else {
      engine.run({
        name: 'max_pool_backward',
        variant: `${vtag(vec)}-k${kh}x${kw}-s${sh}x${sw}`,
        shader: () => generatedSpec(MAX_POOL_BACKWARD(vec), maxPoolBackwardWgsl(vec, kh, kw, sh, sw)),
        uniforms: { h, w, cv, ho, wo, pad_h: ph, pad_w: pw, total: x.size / vec.v },
        bindings: { g, idx: idx!, dx },
        dispatch: grid1d(x.size / vec.v, WG, maxDim),
        bytes: x.byteLength + 2 * y.byteLength,
      });
    }
    return [dx];
  });
}

/**
 * Unrolled window scan for `owp` outputs: each input column of a kernel row is loaded once and
 * offered to every output whose window holds it. Rows are unrolled too unless the kernel is tall.
 */
function maxPoolForwardBody(vec: Vec, kh: number, kw: number, sw: number, owp: number, saveIdx: boolean, rolledRows = false): string {
  const out: string[] = [];
  // As PyTorch: the maximum starts at -inf with the index of the window's first in-image tap
  // (padding never exceeds half the kernel, so that tap exists); a tap takes the place when it
  // is larger or NaN, so ties keep the first and out-of-image taps (-inf) never win.
  for (let o = 0; o < owp; o++)
    out.push(`  var best${o} = ${vec.T}(p.neg_inf);`, `  var idx${o} = ${vec.U}(u32(max(0, -ih0) * ${kw} + max(0, -(iw0 + ${o * sw}))));`);
  const unrollRows = kh <= 7 && !rolledRows;
  const row = (r: string): string[] => {
    const body = [
      `    let ih = ih0 + ${r};`,
      `    let okh = (ih >= 0) & (ih <= hmax);`,
      `    let row = (n * p.h + u32(clamp(ih, 0, hmax))) * p.w;`,
    ];
    for (let cc = 0; cc < (owp - 1) * sw + kw; cc++) {
      body.push(
        `    {`,
        `      let iw = iw0 + ${cc};`,
        `      let ok = okh & (iw >= 0) & (iw <= wmax);`,
        `      let v = select(${vec.T}(p.neg_inf), x[(row + u32(clamp(iw, 0, wmax))) * p.cv + j], ok);`,
      );
      for (let o = 0; o < owp; o++) {
        const k = cc - o * sw;
        if (k < 0 || k >= kw) continue;
        body.push(
          `      { let t = (v > best${o}) | is_nan(v);`,
          `        best${o} = select(best${o}, v, t); idx${o} = select(idx${o}, ${vec.U}(u32(${r} * ${kw} + ${k})), t); }`,
        );
      }
      body.push(`    }`);
    }
    return body;
  };
  if (unrollRows) for (let r = 0; r < kh; r++) out.push('  {', ...row(String(r)), '  }');
  else out.push(`  for (var r = 0; r < ${kh}; r = r + 1) {`, ...row('r'), '  }');
  out.push(`  let obase = ((n * p.ho + oh) * p.wo + ow0) * p.cv + j;`);
  for (let o = 0; o < owp; o++) {
    const store = [`y[obase + ${o}u * p.cv] = best${o};`];
    if (saveIdx) store.push(`idx[obase + ${o}u * p.cv] = idx${o};`);
    out.push(o === 0 ? `  ${store.join(' ')}` : `  if (ow0 + ${o}u < p.wo) { ${store.join(' ')} }`);
  }
  return out.join('\n');
}

/**
 * Unrolled gather for a block of sh x sw inputs (one per stride phase). Input row ih0 + u meets
 * output row oh_base - t at window row u + (ph mod sh) + t sh, so the rows t with a window row in
 * [0, kh) for some u are the candidates, and each (input, candidate) pair has a constant window
 * position; the same holds for columns.
 */
function maxPoolBackwardBlockedBody(vec: Vec, [kh, kw]: [number, number], [sh, sw]: [number, number], [ph, pw]: [number, number]): string {
  const phase = [ph % sh, pw % sw];
  const candidates = (k: number, s: number, m: number) => {
    const ts: number[] = [];
    for (let t = -Math.floor((s - 1 + m) / s); t <= Math.floor((k - 1 - m) / s); t++) ts.push(t);
    return ts;
  };
  const rows = candidates(kh, sh, phase[0]!);
  const cols = candidates(kw, sw, phase[1]!);
  const out: string[] = [];
  for (let u = 0; u < sh; u++) for (let v = 0; v < sw; v++) out.push(`  var acc${u}_${v} = ${vec.T}(0.0);`);
  rows.forEach((t, a) =>
    out.push(
      `  let oh${a} = oh_base - (${t});`,
      `  let okh${a} = (oh${a} >= 0) & (oh${a} < ho);`,
      `  let orow${a} = (n * p.ho + u32(clamp(oh${a}, 0, ho - 1))) * p.wo;`,
    ),
  );
  cols.forEach((t, b) =>
    out.push(
      `  let ow${b} = ow_base - (${t});`,
      `  let okw${b} = (ow${b} >= 0) & (ow${b} < wo);`,
      `  let ocol${b} = u32(clamp(ow${b}, 0, wo - 1));`,
    ),
  );
  rows.forEach((t, a) =>
    cols.forEach((s, b) => {
      const pairs: string[] = [];
      for (let u = 0; u < sh; u++)
        for (let v = 0; v < sw; v++) {
          const wr = u + phase[0]! + t * sh;
          const wc = v + phase[1]! + s * sw;
          if (wr >= 0 && wr < kh && wc >= 0 && wc < kw) pairs.push(`    acc${u}_${v} = acc${u}_${v} + select(${vec.T}(0.0), gv, iv == ${vec.U}(${wr * kw + wc}u));`);
        }
      if (!pairs.length) return;
      out.push(
        `  { let o = (orow${a} + ocol${b}) * p.cv + j;`,
        `    let gv = select(${vec.T}(0.0), g[o], okh${a} & okw${b});`,
        `    let iv = idx[o];`,
        ...pairs,
        `  }`,
      );
    }),
  );
  for (let u = 0; u < sh; u++)
    for (let v = 0; v < sw; v++)
      out.push(`  if ((ih0 + ${u}u < p.h) & (iw0 + ${v}u < p.w)) { dx[((n * p.h + ih0 + ${u}u) * p.w + iw0 + ${v}u) * p.cv + j] = acc${u}_${v}; }`);
  return out.join('\n');
}

/** Unrolled gather over the ceil(kh / sh) x ceil(kw / sw) outputs whose window can hold the input. */
function maxPoolBackwardBody(vec: Vec, kh: number, kw: number, sh: number, sw: number): string {
  const th = Math.ceil(kh / sh);
  const tw = Math.ceil(kw / sw);
  const out: string[] = [];
  for (let a = 0; a < th; a++)
    out.push(
      `  let oh${a} = oh_hi - ${a};`,
      `  let kh${a} = ih + i32(p.pad_h) - oh${a} * ${sh};`,
      `  let okh${a} = (oh${a} >= 0) & (oh${a} < ho) & (kh${a} < ${kh});`,
      `  let orow${a} = (n * p.ho + u32(clamp(oh${a}, 0, ho - 1))) * p.wo;`,
    );
  for (let b = 0; b < tw; b++)
    out.push(
      `  let ow${b} = ow_hi - ${b};`,
      `  let kw${b} = iw + i32(p.pad_w) - ow${b} * ${sw};`,
      `  let okw${b} = (ow${b} >= 0) & (ow${b} < wo) & (kw${b} < ${kw});`,
      `  let ocol${b} = u32(clamp(ow${b}, 0, wo - 1));`,
    );
  for (let a = 0; a < th; a++)
    for (let b = 0; b < tw; b++)
      out.push(
        `  { let o = (orow${a} + ocol${b}) * p.cv + j;`,
        `    let hit = ${vec.B}(okh${a} & okw${b}) & (idx[o] == ${vec.U}(u32(kh${a} * ${kw} + kw${b})));`,
        `    acc = acc + select(${vec.T}(0.0), g[o], hit); }`,
      );
  return out.join('\n');
}

// ------------------------------------------------------------------ kernels (generated WGSL)
// Each invocation handles one channel vector (Vec: vec4 when C % 4 == 0). Max pooling follows
// PyTorch: the first maximum in scan order wins, NaN propagates, and the backward pass routes the
// gradient to that position (argmax indices saved by the forward pass). WGSL lets compilers assume
// floats are never NaN (SwiftShader folds v != v to false), so NaN is tested on the bits: is_nan.

const isNanWgsl = (v: Vec): string => `fn is_nan(v: ${v.T}) -> ${v.B} { return (bitcast<${v.U}>(v) & ${v.U}(0x7fffffffu)) > ${v.U}(0x7f800000u); }`;

/**
 * global_avg_partial: the sum over the pixels [chunk * ppc, min(hw, (chunk + 1) * ppc)) of image
 * n, times `scale` (1 / hw when one chunk covers the image, so no finishing pass is needed; else
 * 1), UNROLL pixels per iteration.
 */
const globalAvgPartialWgsl = (v: Vec): string =>
  main1d(`let j = i % p.cv;
  let r = i / p.cv;
  let chunk = r % p.chunks;
  let base = (r / p.chunks) * p.hw * p.cv + j;
  let p1 = min(p.hw, (chunk + 1u) * p.ppc);
  var acc = ${v.T}(0.0);
  var q = chunk * p.ppc;
  for (; q + ${UNROLL}u <= p1; q = q + ${UNROLL}u) {
    let at = base + q * p.cv;
${lines(UNROLL, (k) => `    acc = acc + x[at + ${k}u * p.cv];`)}
  }
  for (; q < p1; q = q + 1u) { acc = acc + x[base + q * p.cv]; }
  out[i] = acc * p.scale;`, { count: 'total' });

/**
 * global_avg_sg: global average with subgroups (subgroup.ts): one workgroup per (image, channel
 * vector), its invocations taking every SG_WG-th pixel, then wg_sum; one pass, no partials.
 */
const globalAvgSgWgsl = (v: Vec): string =>
  subgroupMain(
    [workgroupSumWgsl('wg_sum', v.T)],
    `let base = (w / p.cv) * p.hw * p.cv + w % p.cv;
  var acc = ${v.T}(0.0);
  for (var q = t; q < p.hw; q = q + ${SG_WG}u) { acc = acc + x[base + q * p.cv]; }
  let total = wg_sum(acc, t, sgi);
  if (t == 0u) { out[w] = total * p.scale; }`,
    'total',
  );

/** global_avg_finish: sums the chunk sums of each (n, channel vector) and scales by 1 / hw. */
const globalAvgFinishWgsl = (v: Vec): string =>
  main1d(`let base = (i / p.cv) * p.chunks * p.cv + i % p.cv;
  var acc = ${v.T}(0.0);
  for (var k = 0u; k < p.chunks; k = k + 1u) { acc = acc + part[base + k * p.cv]; }
  out[i] = acc * p.scale;`, { count: 'total' });

/** The start of the global pooling backward passes: invocation (n, block of K pixels, channel vector j). */
const globalBackwardHead = `let j = i % p.cv;
  let r = i / p.cv;
  let n = r / p.blocks;
  let q0 = (r % p.blocks) * ${K}u;`;

/** global_avg_backward: dx[n, q, c] = g[n, c] / hw; each invocation writes K pixels of one channel vector. */
const globalAvgBackwardWgsl = (): string =>
  main1d(`${globalBackwardHead}
  let gv = g[n * p.cv + j] * p.scale;
  let base = n * p.hw * p.cv + j;
${lines(K, (k) => `  if (q0 + ${k}u < p.hw) { dx[base + (q0 + ${k}u) * p.cv] = gv; }`)}`, { count: 'total' });

/** global_max_partial: the maximum and its first pixel index over the pixels [chunk * ppc, ...) of image n. */
const globalMaxPartialWgsl = (v: Vec): string => `${isNanWgsl(v)}
${main1d(`let j = i % p.cv;
  let r = i / p.cv;
  let chunk = r % p.chunks;
  let base = (r / p.chunks) * p.hw * p.cv + j;
  let p1 = min(p.hw, (chunk + 1u) * p.ppc);
  var q = chunk * p.ppc;
  var best = x[base + q * p.cv];
  var idx = ${v.U}(q);
  q = q + 1u;
  for (; q + ${UNROLL}u <= p1; q = q + ${UNROLL}u) {
    let at = base + q * p.cv;
${lines(UNROLL, (k) => `    { let v = x[at + ${k}u * p.cv]; let take = (v > best) | (is_nan(v) & !is_nan(best));
      best = select(best, v, take); idx = select(idx, ${v.U}(q + ${k}u), take); }`)}
  }
  for (; q < p1; q = q + 1u) {
    let v = x[base + q * p.cv];
    let take = (v > best) | (is_nan(v) & !is_nan(best));
    best = select(best, v, take);
    idx = select(idx, ${v.U}(q), take);
  }
  out[i] = best;
  out_idx[i] = idx;`, { count: 'total' })}`;

/** global_max_finish: merges the chunk maxima in pixel order, so ties keep the first index. */
const globalMaxFinishWgsl = (v: Vec): string => `${isNanWgsl(v)}
${main1d(`let base = (i / p.cv) * p.chunks * p.cv + i % p.cv;
  var best = part[base];
  var idx = part_idx[base];
  for (var k = 1u; k < p.chunks; k = k + 1u) {
    let v = part[base + k * p.cv];
    let take = (v > best) | (is_nan(v) & !is_nan(best));
    best = select(best, v, take);
    idx = select(idx, part_idx[base + k * p.cv], take);
  }
  out[i] = best;
  out_idx[i] = idx;`, { count: 'total' })}`;

/**
 * global_max_backward: dx[n, q, c] = g[n, c] where q is the saved argmax pixel of (n, c), else 0:
 * one pass that writes every element (cheaper than zero-filling and scattering); K pixels per
 * invocation.
 */
const globalMaxBackwardWgsl = (v: Vec): string =>
  main1d(`${globalBackwardHead}
  let gv = g[n * p.cv + j];
  let iv = idx[n * p.cv + j];
  let base = n * p.hw * p.cv + j;
${lines(K, (k) => `  if (q0 + ${k}u < p.hw) { dx[base + (q0 + ${k}u) * p.cv] = select(${v.T}(0.0), gv, iv == ${v.U}(q0 + ${k}u)); }`)}`, { count: 'total' });

/**
 * max_pool_forward: each invocation computes `owp` adjacent outputs along the width for one
 * channel vector (maxPoolForwardBody: the window unrolled, input columns shared by neighbouring
 * windows loaded once). Out-of-image taps count as -inf (they never win); `idx` (when saved) is
 * the window position kh * KW + kw of the maximum. neg_inf is a uniform because WGSL constant
 * expressions cannot hold infinities.
 */
const maxPoolForwardWgsl = (v: Vec, kh: number, kw: number, sh: number, sw: number, owp: number, saveIdx: boolean, rolled: boolean): string => `${isNanWgsl(v)}
${main1d(`let j = i % p.cv;
  var r = i / p.cv;
  let ow0 = (r % p.ow_blocks) * ${owp}u;
  r = r / p.ow_blocks;
  let oh = r % p.ho;
  let n = r / p.ho;
  let ih0 = i32(oh * ${sh}u) - i32(p.pad_h);
  let iw0 = i32(ow0 * ${sw}u) - i32(p.pad_w);
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
${maxPoolForwardBody(v, kh, kw, sw, owp, saveIdx, rolled)}`, { count: 'total' })}`;

/**
 * max_pool_backward_blocked: gather form (no float atomics in WGSL): each input element sums the
 * gradients of the outputs whose window holds it and whose saved argmax is this position. An
 * invocation takes a block of sh x sw inputs, one per stride phase: with kernel, stride and
 * padding fixed when the code is generated, the window position of every (input, output) pair is
 * a constant, only real pairs are emitted, and each candidate output's g and idx are loaded once
 * per block (k3 s2 p1: 4 outputs for 4 inputs, against 4 outputs for each input one at a time).
 * oh_base (ow_base) is the output row (column) at stride phase 0 of the block; the candidates lie
 * around it.
 */
const maxPoolBackwardBlockedWgsl = (v: Vec, [kh, kw]: [number, number], [sh, sw]: [number, number], [ph, pw]: [number, number]): string =>
  main1d(`let j = i % p.cv;
  var r = i / p.cv;
  let bw = r % p.bw;
  r = r / p.bw;
  let bh = r % p.bh;
  let n = r / p.bh;
  let ih0 = bh * ${sh}u;
  let iw0 = bw * ${sw}u;
  let ho = i32(p.ho);
  let wo = i32(p.wo);
  let oh_base = i32(bh) + ${Math.floor(ph / sh)};
  let ow_base = i32(bw) + ${Math.floor(pw / sw)};
${maxPoolBackwardBlockedBody(v, [kh, kw], [sh, sw], [ph, pw])}`, { count: 'total' });

/**
 * max_pool_backward: the fallback for strides whose sh x sw block would hold too many
 * accumulators: one input per invocation, gathering from the ceil(kh / sh) x ceil(kw / sw) outputs
 * that can hold it; oh_hi (ow_hi) is the last output row (column) whose window can reach this
 * input, earlier ones follow.
 */
const maxPoolBackwardWgsl = (v: Vec, kh: number, kw: number, sh: number, sw: number): string =>
  main1d(`let j = i % p.cv;
  var r = i / p.cv;
  let iw = i32(r % p.w);
  r = r / p.w;
  let ih = i32(r % p.h);
  let n = r / p.h;
  let oh_hi = (ih + i32(p.pad_h)) / ${sh};
  let ow_hi = (iw + i32(p.pad_w)) / ${sw};
  let ho = i32(p.ho);
  let wo = i32(p.wo);
  var acc = ${v.T}(0.0);
${maxPoolBackwardBody(v, kh, kw, sh, sw)}
  dx[i] = acc;`, { count: 'total' });
