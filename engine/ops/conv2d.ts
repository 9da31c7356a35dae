/**
 * conv2d: NHWC input, OHWI weights, optional bias; stride, padding, dilation and groups.
 *
 * Forward and both backward passes are implicit GEMMs (no im2col buffer) whose register tiles are
 * generated here as unrolled WGSL, each kernel written whole at the end of this file.
 * - forward:      M = N*Ho*Wo pixels, N = Co, K = (kh, kw, ci): the reduction is contiguous in ci
 *                 for both x (NHWC) and w (OHWI), so both operands load as vec4 when Ci/groups % 4 == 0.
 * - grad input:   a transposed convolution written as a gather (each dx element sums its gy * w),
 *                 tiled by stride phase so that no multiply-add is wasted on taps that do not hit.
 * - grad filter:  M = Co, N = (kh, kw, ci), reduction over N*Ho*Wo split into chunks; the chunks'
 *                 partial sums are added by sumColumns.
 * - grad bias:    sumColumns(gy).
 * Tiles depend on the adapter (`chooseTile`): large ones on CPU adapters such as SwiftShader, where
 * every load is an emulated gather and must feed many multiply-adds; small ones with many
 * invocations on real GPUs. Real GPUs run the same GEMMs with workgroup-memory tiles by default
 * (conv2d-workgroup.ts); the register tiles stay their autotune candidates. llvmpipe runs the
 * forward and the filter gradient with the lanes kernels of conv2d-lanes.ts by default (one pixel
 * or k-slot per lane, the other operand broadcast across the subgroup; `chooseLanes`).
 */
import { recordOp } from '../autograd.js';
import type { Engine } from '../engine.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { type Program, type ScalarType, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import { type TuningCase, candidateList, scratchCase, tunedNumbers } from '../tune.js';
import { sumColumns } from './reduce.js';
import { type Epilogue, checkEpilogue, epilogueAllowsVec4, epiloguePlan, hasEpilogue } from './epilogue.js';
import { generatedSpec, main1d, range, lines, vtype, comp, gcd } from './shader.js';
import { type KernelFamily, kernelFamily, tileFamily } from '../device-common.js';
import { type GemmTile, defaultGemmTile, phaseTapsWgsl, formatGemmTile, gemmCandidates, gemmFilterChunks, gemmFilterProgram, gemmForwardProgram, gemmInputProgram, isGemmTile, parseGemmTile } from './conv2d-workgroup.js';
import { checkFloatOperands, halfTag, loadF32, resultDType, storageType } from './storage.js';
import { type LanesTile, defaultLanesTile, formatLanesTile, lanesFilterPlan, lanesFilterProgram, lanesForwardProgram, lanesInputProgram, parseLanesTile } from './conv2d-lanes.js';

/** Convolution hyper-parameters; a number means the same value for height and width. */
export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
  /**
   * Convolve only channels [offset, offset + count) of x, e.g. one part of a concatenation that
   * was written in place (inference only: no gradient flows through a slice).
   */
  inputChannels?: [number, number];
  /**
   * Compute only output channels [offset, offset + count) (rows of w; groups 1): the output has
   * `count` channels. With an epilogue, set its paramOffset to the same offset. Inference only,
   * for layers whose whole output would not fit one binding.
   */
  outputChannels?: [number, number];
}

/** Everything the kernels need to know about one convolution (validated). */
export interface Geometry {
  n: number; h: number; w: number; ci: number;
  co: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
  groups: number; cig: number; cog: number;
  ho: number; wo: number;
  /** Channels of x per pixel, and where the convolved ones start (inputChannels). */
  xstride: number; xoff: number;
  /** First weight row computed (outputChannels); co is then the number computed. */
  woff: number;
}

const OP = 'conv2d';

// ------------------------------------------------------------------ validation

function pair(name: string, v: number | [number, number] | undefined, dflt: number, min: number): [number, number] {
  const p = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  check(Array.isArray(p) && p.length === 2 && p.every((d) => Number.isInteger(d) && d >= min), OP, () =>
    `${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  return p as [number, number];
}

function parseOptions(opts?: Conv2dOptions | null): { stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number } {
  opts ??= {};
  const groups = opts.groups ?? 1;
  check(Number.isInteger(groups) && groups >= 1, OP, () => `groups must be an integer >= 1, got ${JSON.stringify(groups)}`);
  return {
    stride: pair('stride', opts.stride, 1, 1),
    padding: pair('padding', opts.padding, 0, 0),
    dilation: pair('dilation', opts.dilation, 1, 1),
    groups,
  };
}

/**
 * Output spatial size of a convolution: Ho = floor((H + 2*padH - dilH*(KH-1) - 1) / strideH) + 1,
 * and likewise Wo.
 * @throws ShapeError when a size or option is not a valid integer, or the output would be empty.
 */
export function conv2dOutputSize(h: number, w: number, kh: number, kw: number, opts?: Conv2dOptions): [number, number] {
  const { stride, padding, dilation } = parseOptions(opts);
  for (const [name, v] of [['input height', h], ['input width', w], ['kernel height', kh], ['kernel width', kw]] as const)
    check(Number.isInteger(v) && v >= 1, OP, () => `${name} must be a positive integer, got ${v}`);
  const ho = Math.floor((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const wo = Math.floor((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  check(ho >= 1 && wo >= 1, OP, () =>
    `input ${h}x${w} with kernel ${kh}x${kw}, padding ${padding.join('x')}, dilation ${dilation.join('x')} and ` +
    `stride ${stride.join('x')} gives an empty output ${ho}x${wo} (the dilated kernel is larger than the padded input)`);
  return [ho, wo];
}

function geometry(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Geometry {
  checkOperands(OP, x, w, bias);
  const { stride, padding, dilation, groups } = parseOptions(opts);
  check(x.rank === 4, OP, () => `input ${x.name} must be NHWC [N, H, W, Ci], got ${fmtShape(x.shape)}`);
  check(w.rank === 4, OP, () => `weight ${w.name} must be OHWI [Co, KH, KW, Ci/groups], got ${fmtShape(w.shape)}`);
  // x and w may be f16 (the f16 inference path: no gradient); the bias stays f32.
  checkFloatOperands(OP, [x, w]);
  if (bias) check(bias.dtype === 'f32', OP, () => `bias ${bias.name} must be f32, got ${bias.dtype}`);
  const [n, h, wd, xstride] = x.shape as [number, number, number, number];
  const [xoff, ci] = opts?.inputChannels ?? [0, xstride];
  check(Number.isInteger(xoff) && Number.isInteger(ci) && xoff >= 0 && ci > 0 && xoff + ci <= xstride, OP, () =>
    `inputChannels [${xoff}, ${ci}] must be an offset and a positive count within the ${xstride} channels of ${x.name} ${fmtShape(x.shape)}`);
  if (opts?.inputChannels) check(!(x.engine.gradEnabled && (x.requiresGrad || w.requiresGrad)), OP, () => `inputChannels has no gradient: use it under engine.noGrad()`);
  const [co, kh, kw, wci] = w.shape as [number, number, number, number];
  check(n > 0 && h > 0 && wd > 0 && ci > 0, OP, () => `input ${x.name} ${fmtShape(x.shape)} has a zero dimension`);
  check(co > 0 && kh > 0 && kw > 0 && wci > 0, OP, () => `weight ${w.name} ${fmtShape(w.shape)} has a zero dimension`);
  check(ci % groups === 0, OP, () => `input ${x.name} ${fmtShape(x.shape)}: Ci = ${ci} is not divisible by groups = ${groups}`);
  check(co % groups === 0, OP, () => `weight ${w.name} ${fmtShape(w.shape)}: Co = ${co} is not divisible by groups = ${groups}`);
  check(wci === ci / groups, OP, () =>
    `weight ${w.name} has shape ${fmtShape(w.shape)}, expected [${co}, ${kh}, ${kw}, ${ci / groups}] ` +
    `(Ci/groups = ${ci}/${groups}) for input ${x.name} ${fmtShape(x.shape)}`);
  if (bias) check(bias.rank === 1 && bias.shape[0] === co, OP, () => `bias ${bias.name} has shape ${fmtShape(bias.shape)}, expected [${co}]`);
  const [ho, wo] = conv2dOutputSize(h, wd, kh, kw, { stride, padding, dilation });
  const [woff, cout] = opts?.outputChannels ?? [0, co];
  if (opts?.outputChannels) {
    check(groups === 1 && Number.isInteger(woff) && Number.isInteger(cout) && woff >= 0 && cout > 0 && woff + cout <= co, OP, () =>
      `outputChannels [${woff}, ${cout}] must be an offset and a positive count within the ${co} rows of ${w.name} ${fmtShape(w.shape)} (groups 1)`);
    check(!(x.engine.gradEnabled && (x.requiresGrad || w.requiresGrad)), OP, () => `outputChannels has no gradient: use it under engine.noGrad()`);
  }
  return {
    n, h, w: wd, ci, co: cout, kh, kw,
    sh: stride[0], sw: stride[1], ph: padding[0], pw: padding[1], dh: dilation[0], dw: dilation[1],
    groups, cig: ci / groups, cog: cout / groups, ho, wo, xstride, xoff, woff,
  };
}

// ------------------------------------------------------------------ tiles

/** Register tile of a launch: GEMM rows x columns per invocation, invocations per workgroup. */
export interface Conv2dTile {
  tm: number;
  tn: number;
  wg: number;
}

/** The three GEMMs of a convolution: forward, input gradient, filter gradient. */
export type Conv2dKernel = 'forward' | 'input' | 'filter';

/**
 * Picks the tile of a GEMM with m rows and n columns (rows and columns loaded in vectors of vm and
 * vn; tm must be a multiple of vm for the filter kernel, tn of vn) for a convolution of `flops`.
 */
export type Conv2dTileChooser = (kernel: Conv2dKernel, m: number, n: number, vm: number, vn: number, flops: number, taps: number) => Conv2dTile;

const pow2AtLeast = (v: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, v)));
const fit = (size: number, vec: number, max: number): number => Math.max(vec, Math.min(max, pow2AtLeast(size)));

/**
 * CPU adapters (SwiftShader): every storage load is an emulated per-lane gather, so a tile of
 * TM x TN accumulators makes each loaded value feed up to max(TM, TN) multiply-adds. Constant-index
 * private arrays become SSA values, and pipeline compile time grows faster than the number of
 * values live across the loops (SwiftShader, 2 cores: 16x16 ~1 s, 16x32 ~2.5 s, 32x32 ~6 s).
 * 512 accumulators ran as fast as 1024 at less than half the compile time; the wide side is the
 * one whose loads need no per-tap bounds checks (channels). Convolutions under 1e8 FLOPs take an
 * 8-wide tile that compiles in a fraction of a second: there the compile would cost more than
 * the speed-up saves. A 1x1 forward (K = Ci, often short: 96 in MobileNetV2's expansions) takes
 * 32 pixels x 16 channels instead of 16 x 32: 3.5-3.7 against 3.0 GFLOP/s for 1x32x64x96 -> 576,
 * and 2.6-3.4 against 1.9-2.2 on the other MobileNetV2 1x1 shapes measured (2026-12-02).
 *
 * 512 accumulators only from 1e9 FLOPs (a call of a quarter second or more here): a 16x32 forward
 * compiles in 2.7 s against 0.9 s for 16x16, and every epilogue variant compiles again, while
 * 16x16 runs 6-25% slower (forward, 2026-12-02: 1x32x64x512 -> 256 3x3 4.7 vs 5.0 GFLOP/s,
 * 1x128x256x64 -> 128 3x3 s2 4.1 vs 5.4). Under 1e9 the slower calls cost less than the compile:
 * the first 256x128 inference of the demo network spent 17 s of its 18 s compiling.
 */
const cpuTile: Conv2dTileChooser = (kernel, m, n, vm, vn, flops, taps) => {
  if (flops < 1e9) {
    const side = flops < 1e8 ? 8 : 16;
    return kernel === 'filter' ? { tm: fit(m, vm, side), tn: fit(n, vn, side), wg: 16 } : { tm: side, tn: fit(n, vn, side), wg: 16 };
  }
  if (kernel === 'forward' && taps === 1) return { tm: 32, tn: fit(n, vn, 16), wg: 16 };
  return kernel === 'filter' ? { tm: fit(m, vm, 32), tn: fit(n, vn, 16), wg: 16 } : { tm: 16, tn: fit(n, vn, 32), wg: 16 };
};

/** Real GPUs: few registers per invocation, many invocations (no shared memory, no barriers). */
const gpuTile: Conv2dTileChooser = (_kernel, _m, _n, vm, vn) => ({ tm: Math.max(4, vm), tn: Math.max(4, vn), wg: 64 });

/**
 * llvmpipe (Mesa lavapipe): LLVM runs the invocations of a workgroup as SIMD lanes (8 x f32 with
 * AVX2), so each accumulator is a vector register per group of lanes, and compile time grows
 * steeply with the unrolled tile. Measured cold (empty Mesa cache, 2 cores, loaded host,
 * 2026-12-06), compile / steady run:
 * - SwiftShader's 16x16@16 took 13 s to compile (16x32 20-100 s); 4x4@64 0.3-1.0 s, 4x8@64
 *   0.45-1.8 s, 8x8@64 0.85-4.1 s, 16x8 and 8x16 2.5-4.5 s (and ran no faster than 8x8).
 * - 1x32x64x128 -> 128 3x3: 16x16@16 191 ms, 4x4@64 91-169, 4x8@64 84, 8x8@64 74-132.
 *   1x128x256x3 -> 32 3x3 s2: 4x4@64 20-25 ms, 4x8 13, 8x8 10. 1x16x32x512 -> 256 3x3 with the
 *   FCA epilogue (CANet's conv_init): 4x4 1.0 s / 311 ms, 4x8 1.8 s / 262 ms, 8x8 4.1 s / 257 ms
 *   (9.9 s to compile inside a whole cold inference).
 * So 4 pixels x 8 channels from 1e8 FLOPs (CANet-MobileNetV2 256x128: its two 3x3 layers that
 * SwiftShader gives 16x16 ran 180 ms with 4x4@64 against 127 ms with 16x16@16), and 4x4@64 below,
 * where the compile costs more than the speed-up saves. Backward GEMMs alike (8x8 input and filter
 * gradients compiled in 1.9-2.0 s cold).
 */
const llvmTile: Conv2dTileChooser = (kernel, m, n, vm, vn, flops) => {
  const [sm, sn] = flops >= 1e8 ? [4, 8] : [4, 4];
  return kernel === 'filter' ? { tm: fit(m, vm, sm), tn: fit(n, vn, sn), wg: 64 } : { tm: Math.max(sm, vm), tn: fit(n, vn, sn), wg: 64 };
};

const CHOOSERS: Record<KernelFamily, Conv2dTileChooser> = { swiftshader: cpuTile, llvmpipe: llvmTile, gpu: gpuTile };

/**
 * Register tiles named per GEMM in the `conv2dTile` variant (engine.variants), e.g.
 * 'forward=16x32@16,input=16x32@16,filter=32x16@16' (rows x columns @ invocations; a GEMM left
 * out takes its family's tile): tests exercise partial edges of tiles no default picks. Text
 * that does not parse is refused when set, naming it (engine/variants.ts).
 */
function explicitTile(engine: Engine, kernel: Conv2dKernel): Conv2dTile | null {
  const spec = engine.variants.choose('conv2dTile');
  if (spec === undefined) return null;
  for (const part of spec.split(',')) {
    const m = /^\s*(forward|input|filter)=(\d+)x(\d+)@(\d+)\s*$/.exec(part);
    if (!m) continue;
    if (m[1] === kernel) return { tm: Number(m[2]), tn: Number(m[3]), wg: Number(m[4]) };
  }
  return null;
}

/**
 * The tile without measurements: the one the `conv2dTile` variant names, else the family's
 * (the `conv2dTiles` variant forces a family on this engine, see tileFamily).
 */
function defaultTile(engine: Engine, kernel: Conv2dKernel, g: Geometry, m: number, n: number, vm: number, vn: number): Conv2dTile {
  return explicitTile(engine, kernel) ?? CHOOSERS[tileFamily(engine, 'conv2d')](kernel, m, n, vm, vn, convFlops(g), g.kh * g.kw);
}

/**
 * The kernel of one GEMM: a register tile (conv2d.ts) or a workgroup-memory tile
 * (conv2d-workgroup.ts). The `conv2d` variant forced to 'workgroup' or 'register' decides (tests
 * run both on every adapter); else a measured variant in engine.tuned; else the variant's default
 * rule (engine/variants.ts): workgroup tiles on real GPUs, register tiles on CPU adapters.
 */
function chooseTile(engine: Engine, kernel: Conv2dKernel, g: Geometry, m: number, n: number, vm: number, vn: number): Conv2dTile | GemmTile {
  const variants = engine.variants;
  const prefer = variants.override('conv2d');
  if (prefer === 'workgroup') return defaultGemmTile(kernel, m, n);
  const byAdapter = defaultTile(engine, kernel, g, m, n, vm, vn);
  // Forced register tiles (a family or explicit tiles) are what a test asked for: no tuning, no GEMM.
  if (prefer === 'register' || variants.override('conv2dTiles') !== undefined || variants.override('conv2dTile') !== undefined) return byAdapter;
  const dflt = variants.defaultOf('conv2d') === 'workgroup' ? defaultGemmTile(kernel, m, n) : byAdapter;
  const tuned = parseTile(engine, () => tileKey(kernel, g), (key) => tuningCase(engine, key, kernel, g, tileCandidates(engine, dflt, kernel, m, n, vm, vn)));
  // A measured tile that does not fit these vector widths (a hand-edited table) is ignored.
  if (tuned) return tuned.tm % vm === 0 && tuned.tn % vn === 0 ? tuned : dflt;
  return (engine.tuned.size ? parseGemmTile(engine, engine.tuned.get(tileKey(kernel, g))) : null) ?? dflt;
}

/**
 * The lanes kernel of one GEMM of the convolution `g` (conv2d-lanes.ts: the forward with one
 * pixel per lane and the weights broadcast across a subgroup; the stride-1 input gradient as such
 * a forward of gy, reading the weights flipped and transposed; the filter gradient with lanes
 * across k), or null for the register and workgroup tiles. The `conv2d` variant 'lanes' (forced
 * on any adapter; the llvmpipe family's default where the device has subgroups) takes all three,
 * unless register tiles are forced by family or by name; the input gradient unless
 * `conv2dLanesInput` is 'off'. The `conv2dLanes` variant names the tile ('lanes2x16s8@64').
 */
function chooseLanes(engine: Engine, g: Geometry, kernel: Conv2dKernel): LanesTile | null {
  const variants = engine.variants;
  const forcedRegister = variants.override('conv2d') === undefined && (variants.override('conv2dTiles') !== undefined || variants.override('conv2dTile') !== undefined);
  if (variants.choose('conv2d') !== 'lanes' || forcedRegister) return null;
  if (kernel === 'input' && variants.choose('conv2dLanesInput') !== 'on') return null;
  const named = variants.choose('conv2dLanes');
  if (named !== undefined) {
    const t = parseLanesTile(engine, named);
    if (!t) throw new Error(`engine.variants conv2dLanes: '${named}' is not a lanes tile this device runs: lanes{TM}x{NB}s{SG}@{WG} (TM 1-8; NB, SG, WG powers of two, NB <= 32, SG <= the smallest subgroup, WG 8-256 a multiple of SG)`);
    return t;
  }
  // The input gradient's GEMM: a pixel of dx per row, an input channel per column.
  const dflt = kernel === 'input' ? defaultLanesTile(engine, g.cig, g.n * g.h * g.w) : defaultLanesTile(engine, g.cog, g.n * g.ho * g.wo);
  // Forced lanes kernels are what a test asked for; otherwise nothing to look up unless something
  // was tuned or autotune is listening (this runs on every unplanned call: build no key before).
  if (variants.override('conv2d') !== undefined || (!engine.tuningSink && engine.tuned.size === 0)) return dflt;
  const key = tileKey(kernel, g);
  // autotune times the forward's and the input gradient's lanes tiles; the filter gradient's tile
  // sets its pixel chunks, so another would add a reduction dispatch (kept as the default).
  const sink = engine.tuningSink;
  if (sink && kernel !== 'filter' && !sink.has(key)) sink.set(key, () => tuningCase(engine, key, kernel, g, lanesCandidates(engine, dflt)));
  const tuned = engine.tuned.get(key);
  if (tuned === undefined) return dflt;
  // A measured lanes tile, or a measured register tile (null: chooseTile takes it), for this GEMM.
  return tuned.startsWith('lanes') ? (parseLanesTile(engine, tuned) ?? dflt) : null;
}

/**
 * Lanes tiles worth timing for one GEMM, the default first: one, two or four pixels per lane,
 * half or twice the channel block, and half or twice the workgroup (bench/RESULTS.md 2026-12-06:
 * 4x16 and 2x32 won in places and cost twice the compile, which the winner rule charges).
 */
function lanesCandidates(engine: Engine, d: LanesTile): string[] {
  const tiles: LanesTile[] = [
    { ...d, tm: 1 }, { ...d, tm: 4 },
    { ...d, nb: Math.max(d.sg, d.nb / 2) }, { ...d, nb: Math.min(32, d.nb * 2) },
    { ...d, wg: Math.max(8, d.sg, d.wg / 2) }, { ...d, wg: Math.min(256, d.wg * 2) },
  ];
  return candidateList(formatLanesTile(d), tiles.map(formatLanesTile).filter((v) => parseLanesTile(engine, v) !== null));
}

// ------------------------------------------------------------------ measured tiles (engine/tune.ts)

/** Key of one GEMM of one convolution in engine.tuned: the kernel and the whole geometry. */
function tileKey(kernel: Conv2dKernel, g: Geometry): string {
  return `conv2d.${kernel} ${g.n}x${g.h}x${g.w}x${g.ci}>${g.co} k${g.kh}x${g.kw} s${g.sh}x${g.sw} p${g.ph}x${g.pw} d${g.dh}x${g.dw} g${g.groups}`;
}

/** '16x32@16': 16 rows x 32 columns per invocation, 16 invocations per workgroup. */
const formatTile = (t: Conv2dTile): string => `${t.tm}x${t.tn}@${t.wg}`;

function parseTile(engine: Engine, key: () => string, make: (key: string) => TuningCase): Conv2dTile | null {
  const t = tunedNumbers(engine, key, make, 3, 256);
  return t && t[0]! <= 64 && t[1]! <= 64 && t[0]! * t[1]! <= 1024 ? { tm: t[0]!, tn: t[1]!, wg: t[2]! } : null;
}

/**
 * Tiles worth timing for one GEMM, the adapter's default first: on CPU adapters the register
 * tiles between 8x8 and 16x32 (compile time grows with the tile), on real GPUs small tiles with
 * 32-128 invocations per workgroup and the workgroup-memory tiles (`dflt` may be one). Each fits the vector widths (tm % vm, tn % vn) and is not
 * wider than the GEMM needs.
 */
function tileCandidates(engine: Engine, dflt: Conv2dTile | GemmTile, kernel: Conv2dKernel, m: number, n: number, vm: number, vn: number): string[] {
  const family = kernelFamily(engine);
  const shapes: [number, number, number][] = family === 'swiftshader'
    ? [[8, 8, 16], [16, 16, 16], kernel === 'filter' ? [32, 16, 16] : [16, 32, 16], [32, 16, 16]]
    : family === 'llvmpipe'
      ? [[4, 4, 64], [4, 8, 64], [8, 4, 64], [8, 8, 64], [8, 8, 32], [4, 4, 32]]
      : [[4, 4, 64], [4, 8, 64], [8, 4, 64], [8, 8, 64], [4, 4, 128], [2, 4, 128], [8, 8, 32]];
  const tiles = shapes.map(([tm, tn, wg]) => ({
    tm: kernel === 'filter' ? fit(m, vm, tm) : Math.max(vm, tm), tn: fit(n, vn, tn), wg,
  }));
  // GPUs also time the workgroup-memory tiles (conv2d-workgroup.ts), their default among them.
  const workgroup = family === 'gpu' ? gemmCandidates(engine) : [];
  return candidateList(isGemmTile(dflt) ? formatGemmTile(dflt) : formatTile(dflt), [...tiles.map(formatTile), ...workgroup]);
}

/** One GEMM of a convolution on scratch inputs, for autotune. */
function tuningCase(engine: Engine, key: string, kernel: Conv2dKernel, geo: Geometry, candidates: string[]): TuningCase {
  // Slices (inputChannels, outputChannels) do not change the GEMM: time it on whole tensors.
  const g: Geometry = { ...geo, xstride: geo.ci, xoff: 0, woff: 0 };
  const wShape = [g.co, g.kh, g.kw, g.cig];
  const label = `conv2d ${kernel} ${fmtShape([g.n, g.h, g.w, g.ci])} -> ${g.co}, ${g.kh}x${g.kw} s${g.sh}${g.groups > 1 ? ` groups ${g.groups}` : ''}`;
  return scratchCase(engine, key, label, candidates, [[g.n, g.h, g.w, g.ci], wShape, [g.n, g.ho, g.wo, g.co]], ([x, w, gy]) => {
    if (kernel === 'forward') engine.run(forwardProgram(engine, g, x!, w!, null, engine.empty([g.n, g.ho, g.wo, g.co], 'f32'), null));
    else if (kernel === 'input') conv2dBackwardInput(g, gy!, w!);
    else conv2dBackwardFilter(g, gy!, x!, wShape);
  });
}

/** FLOPs of the forward pass (each backward GEMM has the same count). */
const convFlops = (g: Geometry): number => 2 * g.n * g.ho * g.wo * g.co * g.kh * g.kw * g.cig;

/**
 * Tile order of the forward and input-gradient GEMMs (1: channel tiles vary fastest, 0: pixel
 * tiles do). Pixel tiles fastest keeps one weight tile in cache while the feature map streams
 * past once per weight tile; channel tiles fastest keeps one pixel tile in cache while all the
 * weights stream past once per pixel tile, which wins when the weights fit in a core's L2 and the
 * feature map is much larger (SwiftShader: 3x3 stride 2, 64 -> 128 channels on 512x256: 2.4 ->
 * 4.8 GFLOP/s; 3x3, 512 -> 256 channels on 128x64, 4.7 MB of weights: 4.9 -> 2.9 GFLOP/s).
 */
function channelsFastest(features: Tensor, w: Tensor): number {
  return w.byteLength <= 1 << 20 && features.byteLength >= 8 * w.byteLength ? 1 : 0;
}

// ------------------------------------------------------------------ code generation helpers

/** vec4 from four scalars, or the scalar. */
const pack = (vals: string[]): string => (vals.length === 4 ? `vec4<f32>(${vals.join(', ')})` : vals[0]!);

function grid(engine: Engine, invocations: number, wg: number): [number, number] {
  return grid1d(invocations, wg, engine.limits.maxComputeWorkgroupsPerDimension);
}

// ------------------------------------------------------------------ forward

/**
 * Uniforms of conv2d_forward, in Params order; `only` marks the fields a pointwise kernel does not
 * read: 'window' (read unless pointwise: the tap decode), 'corner' (read unless pointwise with
 * stride 1, where a pixel's input offset is its own index).
 */
const FORWARD_UNIFORMS: readonly [string, ScalarType, ('window' | 'corner')?][] = [
  ['m', 'u32'], ['howo', 'u32', 'corner'], ['wo', 'u32', 'corner'], ['h', 'u32', 'corner'], ['w', 'u32', 'corner'],
  ['ci_v', 'u32'], // channels of x in XT units (row stride of x)
  ['xoff', 'u32'], // first convolved channel of x in XT units (a slice of a concatenation)
  ['ck', 'u32'], // Ci/groups in XT units (inner loop length)
  ['cog', 'u32'], // Co/groups
  ['kw', 'u32', 'window'], ['taps', 'u32'], ['sh', 'u32', 'corner'], ['sw', 'u32', 'corner'], ['ph', 'i32', 'corner'], ['pw', 'i32', 'corner'],
  ['dh', 'u32', 'window'], ['dw', 'u32', 'window'],
  ['tiles_m', 'u32'], ['tiles_n', 'u32'], ['tiles', 'u32'],
  ['krow', 'u32'], // KH*KW*Ci/groups in XT units (row stride of w)
  ['n_fast', 'u32'], // 1: channel tiles vary fastest, 0: pixel tiles do
  ['woff', 'u32'], // first weight row (a slice of the output channels)
];

/** The fields of `fields` a kernel reads (`skip` names the groups it does not), with their types. */
function declared(fields: readonly [string, ScalarType, string?][], skip: readonly string[]): Record<string, ScalarType> {
  const out: Record<string, ScalarType> = {};
  for (const [name, type, only] of fields) if (!only || !skip.includes(only)) out[name] = type;
  return out;
}

/** The values of the declared fields only. */
function valuesOf(fields: readonly [string, ScalarType, string?][], skip: readonly string[], all: Record<string, number>): Record<string, number> {
  if (!skip.length) return all;
  const out: Record<string, number> = {};
  for (const [name, , only] of fields) if (!only || !skip.includes(only)) out[name] = all[name]!;
  return out;
}

function forwardProgram(engine: Engine, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor | null, epi: Epilogue | null): Program {
  // vec4 along K needs Ci/groups % 4 == 0 (then Ci % 4 == 0 too, so every row start is aligned).
  const vx = g.cig % 4 === 0 && g.xoff % 4 === 0 && g.xstride % 4 === 0 ? 4 : 1;
  const vy = g.cog % 4 === 0 && epilogueAllowsVec4(epi) ? 4 : 1;
  const m = g.n * g.ho * g.wo;
  const lanes = chooseLanes(engine, g, 'forward');
  if (lanes) return lanesForwardProgram(engine, g, x, w, bias, y, epi, lanes, channelsFastest(x, w), convFlops(g));
  // The workgroup-memory GEMMs are f32 only: the f16 inference path keeps the register tiles.
  const tile = x.dtype === 'f32' && w.dtype === 'f32' ? chooseTile(engine, 'forward', g, m, g.cog, 1, vy) : defaultTile(engine, 'forward', g, m, g.cog, 1, vy);
  if (isGemmTile(tile)) return gemmForwardProgram(engine, g, x, w, bias, y, epi, tile);
  const { tm, tn, wg } = tile;
  const tilesM = Math.ceil(m / tm);
  const tilesN = Math.ceil(g.cog / tn);
  const tiles = tilesM * tilesN * g.groups;

  // A 1x1 convolution without padding has one tap, always in range: each pixel's input offset is
  // found once, before the reduction, and with stride 1 it is the pixel's own index (no divisions).
  // SwiftShader, 1x32x32x1024 -> 1024 (the bench's matmul ceiling) 5-10% faster, 1x1 MobileNetV2
  // shapes 0-10% (2026-12-04, interleaved runs on a noisy host).
  const pointwise = g.kh * g.kw === 1 && g.ph === 0 && g.pw === 0;
  const unit = pointwise && g.sh === 1 && g.sw === 1;
  const skip = unit ? ['window', 'corner'] : pointwise ? ['window'] : [];
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.co], y, vy as 1 | 4, bias);
  // Every compile-time input of the generated WGSL: the tile (tm, tn, wg), the vector widths of x
  // and y, the pointwise cases (pw: one tap without padding, u: also stride 1) and the epilogue's layout.
  // and the f16 bindings (x and w here, the output's in the epilogue's).
  const variant = `${tm}x${tn}@${wg} x${vx} y${vy}${pointwise ? (unit ? ' pwu' : ' pw') : ''} ${ep.variant}${halfTag({ x, w })}`;

  const shader = (): ShaderSpec => {
    const nv = tn / vy;
    // Per pixel: batch row and top-left input corner (and, pointwise, the input offset itself).
    const pixelSetup = (i: number): string => {
      const mm = `min(m0 + ${i}u, p.m - 1u)`;
      if (unit) return `  let xo_${i} = ${mm} * p.ci_v + xg;`;
      const corner =
        `  let mm_${i} = ${mm}; let r_${i} = mm_${i} % p.howo; let xb_${i} = (mm_${i} / p.howo) * p.h;\n` +
        `  let iy_${i} = i32((r_${i} / p.wo) * p.sh) - p.ph; let ix_${i} = i32((r_${i} % p.wo) * p.sw) - p.pw;`;
      return pointwise ? `${corner}\n  let xo_${i} = ((xb_${i} + u32(iy_${i})) * p.w + u32(ix_${i})) * p.ci_v + xg;` : corner;
    };
    // Per output channel: its weight row.
    const setup = [
      lines(tm, pixelSetup),
      lines(tn, (j) => `  let wr_${j} = (p.woff + g * p.cog + min(n0 + ${j}u, p.cog - 1u)) * p.krow;`),
    ].join('\n');
    // Taps falling into the padding read a valid address and are multiplied by 0.
    const tap = pointwise ? `    let c = kk;` : [
      `    let tap = kk / p.ck; let c = kk - tap * p.ck; let dy = i32((tap / p.kw) * p.dh); let dx = i32((tap % p.kw) * p.dw);`,
      lines(tm, (i) =>
        `    let y_${i} = iy_${i} + dy; let x_${i} = ix_${i} + dx; let ok_${i} = (u32(y_${i}) < p.h) & (u32(x_${i}) < p.w);\n` +
        `    let xo_${i} = select(0u, ((xb_${i} + u32(y_${i})) * p.w + u32(x_${i})) * p.ci_v + xg, ok_${i}); let xv_${i} = select(0.0, 1.0, ok_${i});`),
    ].join('\n');
    const mac = (a: string, b: string): string => (vx === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
    const inner = [
      lines(tn, (j) => `    let b_${j} = ${loadF32(w, vx as 1 | 4, `ws[wr_${j} + wc]`)};`),
      lines(tm, (i) => `    let a_${i} = ${loadF32(x, vx as 1 | 4, `xs[xo_${i} + c]`)}${pointwise ? '' : ` * xv_${i}`};\n` + lines(tn, (j) => `    acc[${i * tn + j}] += ${mac(`a_${i}`, `b_${j}`)};`)),
    ].join('\n');
    // Partial channel tiles clamp the channel they read parameters for and skip the store.
    const epc = ep.code();
    const epilogue = [
      lines(nv, (j) => `  let ch_${j} = g * p.cog + min(n0 + ${j * vy}u, p.cog - ${vy}u); ${epc.setup(`ch_${j}`, `e${j}`)}`),
      lines(tm, (i) => {
        const mi = `m0 + ${i}u`;
        const stores = range(nv).map((j) =>
          `if (n0 + ${j * vy}u < p.cog) { ys[${epc.index(mi, `ch_${j}`)}] = ${epc.apply(pack(range(vy).map((c) => `acc[${i * tn + j * vy + c}]`)), mi, `ch_${j}`, `e${j}`)}; }`);
        return `  if (${mi} < p.m) { ${stores.join(' ')} }`;
      }),
    ].join('\n');
    return generatedSpec(
      {
        uniforms: { ...declared(FORWARD_UNIFORMS, skip), ...ep.uniforms },
        // The output (or the epilogue's target), then the epilogue's: bias, folded BatchNorm, residual, FCA attention.
        bindings: { xs: read(storageType(x, vx as 1 | 4)), ws: read(storageType(w, vx as 1 | 4)), ys: readWrite(storageType(ep.target, vy as 1 | 4)), ...ep.bindings },
      },
      forwardWgsl({
        WG: wg, TM: tm, TN: tn, ACC: tm * tn, SETUP: setup, TAP: tap, INNER: inner, EPILOGUE: epilogue, EP_DECLS: epc.decls,
      }),
    );
  };

  return {
    name: 'conv2d_forward',
    variant,
    shader,
    uniforms: {
      ...valuesOf(FORWARD_UNIFORMS, skip, {
        m, howo: g.ho * g.wo, wo: g.wo, h: g.h, w: g.w, ci_v: g.xstride / vx, xoff: g.xoff / vx, ck: g.cig / vx, cog: g.cog,
        kw: g.kw, taps: g.kh * g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
        tiles_m: tilesM, tiles_n: tilesN, tiles, krow: (g.kh * g.kw * g.cig) / vx, n_fast: channelsFastest(x, w), woff: g.woff,
      }),
      ...ep.values,
    },
    bindings: { xs: x, ws: w, ys: ep.target, ...ep.tensors },
    dispatch: grid(engine, tiles, wg),
    flops: convFlops(g),
    bytes: x.byteLength + w.byteLength + m * g.co * dtypeBytes(ep.target.dtype),
  };
}

// ------------------------------------------------------------------ grad input

/** Uniforms of conv2d_backward_input, in Params order. */
const INPUT_UNIFORMS = {
  n: 'u32', h: 'u32', w: 'u32',
  hq: 'u32', wq: 'u32', // phase grid: ceil(H / sh) x ceil(W / sw)
  ho: 'u32', wo: 'u32',
  ci_v: 'u32', // Ci in BT units (row stride of dx)
  cig: 'u32', // Ci/groups
  cig_v: 'u32', // Ci/groups in BT units
  ck: 'u32', // Co/groups in AT units (inner loop length)
  co_v: 'u32', // Co in AT units (row stride of gy)
  kh: 'u32', kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  wrow_v: 'u32', // KH*KW*Ci/groups in BT units (row stride of w)
  tiles_m: 'u32', tiles_n: 'u32', tiles_phase: 'u32', tiles: 'u32',
  n_fast: 'u32', // 1: channel tiles vary fastest within a phase, 0: pixel tiles do
  sth: 'u32', stw: 'u32', // tap period: sh / gcd(sh, dh), sw / gcd(sw, dw)
  qsh: 'u32', qsw: 'u32', // oh - jh decreases by sth*dh/sh from one hitting tap to the next
} as const satisfies Record<string, ScalarType>;

function backwardInputProgram(engine: Engine, g: Geometry, gy: Tensor, w: Tensor, dx: Tensor, accumulate: boolean): Program {
  const va = g.cog % 4 === 0 ? 4 : 1; // K axis: output channels of the group (gy rows)
  const vb = g.cig % 4 === 0 ? 4 : 1; // N axis: input channels of the group (w rows, dx rows)
  const hq = Math.ceil(g.h / g.sh);
  const wq = Math.ceil(g.w / g.sw);
  const tile = chooseTile(engine, 'input', g, g.n * hq * wq, g.cig, 1, vb);
  if (isGemmTile(tile)) return gemmInputProgram(engine, g, gy, w, dx, accumulate, tile);
  const { tm, tn, wg } = tile;
  const tilesM = Math.ceil((g.n * hq * wq) / tm);
  const tilesN = Math.ceil(g.cig / tn);
  const tilesPhase = tilesM * tilesN * g.groups;
  const tiles = tilesPhase * g.sh * g.sw;
  const name = accumulate ? 'conv2d_backward_input_accumulate' : 'conv2d_backward_input';
  // Every compile-time input of the generated WGSL: the tile, the vector widths of gy (K axis) and
  // of w and dx (N axis); whether dx is added into is in the name.
  const variant = `${tm}x${tn}@${wg} a${va} b${vb}`;
  const shader = (): ShaderSpec => {
    const nv = tn / vb;
    const setup = [
      lines(tm, (i) =>
        `  let q_${i} = min(m0 + ${i}u, qm - 1u); let jw_${i} = q_${i} % p.wq; let qq_${i} = q_${i} / p.wq; let jh_${i} = qq_${i} % p.hq;\n` +
        `  let nb_${i} = qq_${i} / p.hq; let ih_${i} = rh + p.sh * jh_${i}; let iw_${i} = rw + p.sw * jw_${i};\n` +
        `  let pv_${i} = (m0 + ${i}u < qm) & (ih_${i} < p.h) & (iw_${i} < p.w); let gb_${i} = nb_${i} * p.ho;`),
      lines(nv, (j) => `  let wn_${j} = min(n0 + ${j * vb}u, p.cig - ${vb}u) / ${vb}u;`),
    ].join('\n');
    const tap = [
      `    let wt = (kh * p.kw + kw) * p.cig_v;`,
      lines(tm, (i) =>
        `    let oh_${i} = i32(jh_${i}) + qh; let ow_${i} = i32(jw_${i}) + qw; let ok_${i} = pv_${i} & (u32(oh_${i}) < p.ho) & (u32(ow_${i}) < p.wo);\n` +
        `    let go_${i} = select(0u, ((gb_${i} + u32(oh_${i})) * p.wo + u32(ow_${i})) * p.co_v + gyg, ok_${i}); let gv_${i} = select(0.0, 1.0, ok_${i});`),
    ].join('\n');
    const inner = [
      lines(va, (u) => lines(nv, (j) => `    let b_${u}_${j} = ws[wc + ${u}u * p.wrow_v + wn_${j}];`)),
      lines(tm, (i) => `    let a_${i} = gys[go_${i} + c] * gv_${i};\n` +
        lines(nv, (j) => `    acc[${i * nv + j}] += ${range(va).map((u) => `${comp(`a_${i}`, va, u)} * b_${u}_${j}`).join(' + ')};`)),
    ].join('\n');
    // Every dx element has one owner invocation, so adding into an existing gradient is a plain read-modify-write.
    const store = (i: number, j: number): string =>
      `if (n0 + ${j * vb}u < p.cig) { dxs[o + ${j}u] = ${accumulate ? `dxs[o + ${j}u] + ` : ''}acc[${i * nv + j}]; }`;
    const epilogue = `  let dxc = (g * p.cig + n0) / ${vb}u;\n` + lines(tm, (i) =>
      `  if (pv_${i}) { let o = ((nb_${i} * p.h + ih_${i}) * p.w + iw_${i}) * p.ci_v + dxc; ${range(nv).map((j) => store(i, j)).join(' ')} }`);
    return generatedSpec(
      {
        uniforms: INPUT_UNIFORMS,
        bindings: { gys: read(vtype(va)), ws: read(vtype(vb)), dxs: readWrite(vtype(vb)) },
      },
      backwardInputWgsl({ WG: wg, TM: tm, TN: tn, ACC: tm * nv, BT: vtype(vb), AV: va, SETUP: setup, TAP: tap, INNER: inner, EPILOGUE: epilogue }),
    );
  };

  return {
    name,
    variant,
    shader,
    uniforms: {
      n: g.n, h: g.h, w: g.w, hq, wq, ho: g.ho, wo: g.wo, ci_v: g.ci / vb, cig: g.cig, cig_v: g.cig / vb, ck: g.cog / va, co_v: g.co / va,
      kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
      wrow_v: (g.kh * g.kw * g.cig) / vb, tiles_m: tilesM, tiles_n: tilesN, tiles_phase: tilesPhase, tiles, n_fast: channelsFastest(gy, w),
      sth: g.sh / gcd(g.sh, g.dh), stw: g.sw / gcd(g.sw, g.dw), qsh: g.dh / gcd(g.sh, g.dh), qsw: g.dw / gcd(g.sw, g.dw),
    },
    bindings: { gys: gy, ws: w, dxs: dx },
    dispatch: grid(engine, tiles, wg),
    flops: convFlops(g),
    bytes: (gy.size + w.size + dx.size) * 4,
  };
}

/** dL/dx, added into `into` (the gradient gathered so far, see GradNode) when it has dx's shape. */
function conv2dBackwardInput(g: Geometry, gy: Tensor, w: Tensor, into: Tensor | null = null): Tensor {
  const engine = gy.engine;
  const shape = [g.n, g.h, g.w, g.ci];
  const accumulate = into !== null && into.dtype === 'f32' && into.rank === 4 && into.shape.every((d, i) => d === shape[i]);
  const dx = accumulate ? into : engine.empty(shape, 'f32');
  // Stride 1: a lanes forward convolution of gy with the flipped, transposed weights (conv2d-lanes.ts; null otherwise).
  const lanes = g.sh === 1 && g.sw === 1 ? chooseLanes(engine, g, 'input') : null;
  const program = lanes && lanesInputProgram(engine, g, gy, w, dx, lanes, channelsFastest(gy, w), convFlops(g), accumulate);
  engine.run(program ?? backwardInputProgram(engine, g, gy, w, dx, accumulate));
  return dx;
}

// ------------------------------------------------------------------ grad filter

interface FilterPlan {
  va: number; // M axis (output channels, gy rows): vec4 when Co/groups % 4 == 0
  vb: number; // N axis (k = (kh, kw, ci)): vec4 along ci inside one tap when Ci/groups % 4 == 0
  krow: number;
  tile: Conv2dTile | GemmTile;
  tilesM: number;
  tilesN: number;
  tiles: number;
  chunks: number;
  /** Pixels per chunk. */
  chunk: number;
}

/**
 * Tiles and reduction chunks of the filter gradient: enough chunks that every core (or, on a real
 * GPU, every SM) has invocations, each chunk at least 64 pixels, partial sums at most 128 MiB.
 */
function filterPlan(engine: Engine, g: Geometry): FilterPlan {
  const va = g.cog % 4 === 0 ? 4 : 1;
  const vb = g.cig % 4 === 0 ? 4 : 1;
  const krow = g.kh * g.kw * g.cig;
  const tile = chooseTile(engine, 'filter', g, g.cog, krow, va, vb);
  if (isGemmTile(tile)) return { va, vb, krow, tile, ...gemmFilterChunks(engine, g, tile) };
  const tilesOf = (t: Conv2dTile): number => Math.ceil(g.cog / t.tm) * Math.ceil(krow / t.tn) * g.groups;
  const tilesM = Math.ceil(g.cog / tile.tm);
  const tilesN = Math.ceil(krow / tile.tn);
  const tiles = tilesOf(tile);
  const pixels = g.n * g.ho * g.wo;
  // The pixel chunks follow the default tile, not a measured one: a larger tuned tile (fewer
  // tiles) would otherwise split a gradient that ran in one pass, and each split adds a
  // reduction dispatch (the tuned 256x128 training step recorded 403, over issue 10's 400).
  // Candidates are timed with this chunking, so the tuner only keeps tiles that pay under it.
  const base = tilesOf(defaultTile(engine, 'filter', g, g.cog, krow, va, vb));
  const target = engine.adapter.isSoftware ? 256 : 32768;
  const maxBytes = Math.min(128 << 20, engine.limits.maxStorageBufferBindingSize);
  const want = Math.max(1, Math.min(Math.ceil(target / base), Math.ceil(pixels / 64), Math.floor(maxBytes / (4 * g.co * krow))));
  const chunk = Math.ceil(pixels / want);
  return { va, vb, krow, tile, tilesM, tilesN, tiles, chunks: Math.ceil(pixels / chunk), chunk };
}

/** Uniforms of conv2d_backward_filter, in Params order. */
const FILTER_UNIFORMS = {
  m: 'u32', ho: 'u32', wo: 'u32', h: 'u32', w: 'u32',
  ci_v: 'u32', // Ci in BT units (row stride of x)
  cig: 'u32', // Ci/groups
  cog: 'u32', // Co/groups
  co_v: 'u32', // Co in AT units (row stride of gy)
  kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  krow: 'u32', // KH*KW*Ci/groups (row length of dw)
  krow_v: 'u32', // the same in BT units
  wsize_v: 'u32', // Co*KH*KW*Ci/groups in BT units (one chunk's partial)
  chunk: 'u32', // pixels per chunk
  tiles_m: 'u32', tiles_n: 'u32', tiles: 'u32',
  total: 'u32', // tiles * chunks
} as const satisfies Record<string, ScalarType>;

function backwardFilterProgram(engine: Engine, g: Geometry, plan: FilterPlan, gy: Tensor, x: Tensor, out: Tensor): Program {
  if (isGemmTile(plan.tile)) return gemmFilterProgram(engine, g, plan, gy, x, out, plan.tile);
  const { va, vb, krow, tilesM, tilesN, tiles, chunks, chunk } = plan;
  const { tm, tn, wg } = plan.tile;
  // Four pixels per loop iteration (see `pixel` below).
  const pix = 4;
  // Every compile-time input of the generated WGSL: the tile, the vector widths of gy (M axis) and
  // of x and dw (N axis), the pixels per iteration.
  const variant = `${tm}x${tn}@${wg} a${va} b${vb} pix${pix}`;
  const shader = (): ShaderSpec => {
    const mv = tm / va;
    const nv = tn / vb;

    const setup = [
      lines(mv, (i) => `  let ga_${i} = (g * p.cog + min(c0 + ${i * va}u, p.cog - ${va}u)) / ${va}u;`),
      lines(nv, (j) =>
        `  let k_${j} = min(k0 + ${j * vb}u, p.krow - ${vb}u); let tap_${j} = k_${j} / p.cig;\n` +
        `  let dy_${j} = i32((tap_${j} / p.kw) * p.dh) - p.ph; let dx_${j} = i32((tap_${j} % p.kw) * p.dw) - p.pw;\n` +
        `  let xc_${j} = (g * p.cig + k_${j} % p.cig) / ${vb}u;`),
    ].join('\n');
    // Four pixels per loop iteration, as the 4-wide reduction of a dot product per accumulator:
    // vec4(a of pixels 0..3) . vec4(b of pixels 0..3). Scalar accumulators updated by dot products
    // (as in the forward kernel) ran 1.25-1.45x faster on SwiftShader than vec4 accumulators updated
    // by scalar x vec4 products, two pixels per iteration. Pixels past the chunk's end are masked.
    const pixel = (u: number): string => [
      `    let gq_${u} = min(q + ${u}u, q1 - 1u) * p.co_v; let in_${u} = q + ${u}u < q1;`,
      `    let ihb_${u} = i32(oh * p.sh); let iwb_${u} = i32(ow * p.sw); let xrow_${u} = n * p.h;`,
      `    { let wrap_w = ow + 1u == p.wo; ow = select(ow + 1u, 0u, wrap_w); let oh1 = oh + select(0u, 1u, wrap_w);`,
      `      let wrap_h = oh1 == p.ho; oh = select(oh1, 0u, wrap_h); n = n + select(0u, 1u, wrap_h); }`,
      lines(mv, (i) => `    let a_${u}_${i} = gys[gq_${u} + ga_${i}];`),
      lines(nv, (j) =>
        `    let y_${u}_${j} = ihb_${u} + dy_${j}; let x_${u}_${j} = iwb_${u} + dx_${j}; let ok_${u}_${j} = (u32(y_${u}_${j}) < p.h) & (u32(x_${u}_${j}) < p.w) & in_${u};\n` +
        `    let b_${u}_${j} = xs[select(0u, ((xrow_${u} + u32(y_${u}_${j})) * p.w + u32(x_${u}_${j})) * p.ci_v + xc_${j}, ok_${u}_${j})] * select(0.0, 1.0, ok_${u}_${j});`),
    ].join('\n');
    // Value of output channel i (resp. column j) at pixel u; building a vec4 from four of them is
    // free on SIMD-of-lanes adapters (a vec4 is four registers).
    const av = (u: number, i: number): string => comp(`a_${u}_${Math.floor(i / va)}`, va, i % va);
    const bv = (u: number, j: number): string => comp(`b_${u}_${Math.floor(j / vb)}`, vb, j % vb);
    const inner = [
      lines(pix, pixel),
      lines(tm, (i) => lines(tn, (j) =>
        `    acc[${i * tn + j}] += dot(vec4<f32>(${range(pix).map((u) => av(u, i)).join(', ')}), vec4<f32>(${range(pix).map((u) => bv(u, j)).join(', ')}));`)),
    ].join('\n');
    const epilogue = lines(tm, (i) => {
      const stores = range(nv).map((j) => `if (k0 + ${j * vb}u < p.krow) { dws[o + ${j}u] = ${pack(range(vb).map((c) => `acc[${i * tn + j * vb + c}]`))}; }`);
      return `  if (c0 + ${i}u < p.cog) { let o = ob + (g * p.cog + c0 + ${i}u) * p.krow_v + k0 / ${vb}u; ${stores.join(' ')} }`;
    });
    return generatedSpec(
      {
        uniforms: FILTER_UNIFORMS,
        bindings: { gys: read(vtype(va)), xs: read(vtype(vb)), dws: readWrite(vtype(vb)) },
      },
      backwardFilterWgsl({ WG: wg, TM: tm, TN: tn, ACC: tm * tn, PIX: pix, SETUP: setup, INNER: inner, EPILOGUE: epilogue }),
    );
  };

  return {
    name: 'conv2d_backward_filter',
    variant,
    shader,
    uniforms: {
      m: g.n * g.ho * g.wo, ho: g.ho, wo: g.wo, h: g.h, w: g.w, ci_v: g.ci / vb, cig: g.cig, cog: g.cog, co_v: g.co / va,
      kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
      krow, krow_v: krow / vb, wsize_v: (g.co * krow) / vb, chunk, tiles_m: tilesM, tiles_n: tilesN, tiles, total: tiles * chunks,
    },
    bindings: { gys: gy, xs: x, dws: out },
    dispatch: grid(engine, tiles * chunks, wg),
    flops: convFlops(g),
    bytes: (gy.size + x.size + out.size) * 4,
  };
}

/** dL/dw, written into `into` (a tensor of the weight's size, e.g. its optimizer slot) when given. */
function conv2dBackwardFilter(g: Geometry, gy: Tensor, x: Tensor, wShape: readonly number[], into: Tensor | null = null): Tensor {
  const engine = gy.engine;
  const lanes = chooseLanes(engine, g, 'filter');
  if (lanes) {
    // Lanes across k, the pixel chunks added by sumColumns (conv2d-lanes.ts).
    const lp = lanesFilterPlan(engine, g, lanes);
    const dw = into ?? engine.empty(wShape, 'f32');
    const wsize = g.co * g.kh * g.kw * g.cig;
    const partial = lp.chunks === 1 ? dw : engine.empty([lp.chunks, wsize], 'f32');
    engine.run(lanesFilterProgram(engine, g, lp, gy, x, partial, convFlops(g)));
    if (partial !== dw) {
      sumColumns(partial, wsize, dw);
      partial.dispose();
    }
    return dw;
  }
  const plan = filterPlan(engine, g);
  const dw = into ?? engine.empty(wShape, 'f32');
  if (plan.chunks === 1) {
    engine.run(backwardFilterProgram(engine, g, plan, gy, x, dw));
    return dw;
  }
  const wsize = g.co * plan.krow;
  const partial = engine.empty([plan.chunks, wsize], 'f32');
  engine.run(backwardFilterProgram(engine, g, plan, gy, x, partial));
  // The chunk sums land in dw (it has the weight's shape; sumColumns only needs its size).
  sumColumns(partial, wsize, dw);
  partial.dispose();
  return dw;
}

// ------------------------------------------------------------------ public op

/**
 * 2-D convolution: x [N,H,W,Ci] NHWC, w [Co,KH,KW,Ci/groups] (OHWI), bias [Co] or null
 * -> [N,Ho,Wo,Co] (sizes as in conv2dOutputSize). Records autograd; the backward computes only
 * the gradients of the inputs that require grad.
 *
 * `epilogue` (inference only: no graph may be recorded) fuses a per-channel affine (a folded
 * BatchNorm, replacing the bias), an activation, a residual add and the FCA product into the
 * store, and can write into a channel slice of another tensor; then that tensor is returned.
 * x and w may be f16 (with shader-f16; inference only): products accumulate in f32 and the output
 * is f16 (see engine/ops/storage.ts).
 * @throws ShapeError (before anything is recorded) for wrong ranks or dtypes, channel or group
 * mismatches, zero sizes, invalid options or an empty output.
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions, epilogue?: Epilogue | null): Tensor {
  const g = geometry(x, w, bias, opts);
  const engine = x.engine;
  const inputs = bias ? [x, w, bias] : [x, w];
  // A slice of the output channels reads the bias (or affine) from the same offset.
  if (g.woff) epilogue = { ...epilogue, paramOffset: epilogue?.paramOffset ?? g.woff };
  if (hasEpilogue(epilogue)) {
    checkEpilogue(OP, epilogue, [g.n, g.ho, g.wo, g.co], inputs);
    check(!(bias && epilogue.affine), OP, () => `bias ${bias!.name} and an epilogue affine were both given: fold the bias into the affine (bnFold)`);
    const y = epilogue.into ? null : engine.empty([g.n, g.ho, g.wo, g.co], resultDType(x, w));
    engine.run(forwardProgram(engine, g, x, w, bias, y, epilogue));
    return y ?? epilogue.into!.tensor;
  }
  // f16 operands give an f16 output (checkFloatOperands refused recording a graph through them).
  const y = engine.empty([g.n, g.ho, g.wo, g.co], resultDType(x, w));
  engine.run(forwardProgram(engine, g, x, w, bias, y, null));
  return recordOp(y, OP, inputs, (gy, accumulated, into) => [
    x.requiresGrad ? conv2dBackwardInput(g, gy, w, accumulated[0]) : null,
    w.requiresGrad ? conv2dBackwardFilter(g, gy, x, w.shape, into[1]) : null,
    ...(bias ? [bias.requiresGrad ? sumColumns(gy, g.co, into[2]) : null] : []),
  ]);
}

// ------------------------------------------------------------------ kernels (generated WGSL)
// conv2d on NHWC feature maps with OHWI weights, as implicit GEMMs (no im2col buffer).
//
// The unrolled register tiles (the SETUP, TAP, INNER and EPILOGUE code) are generated above: on
// SwiftShader a load whose address is not a compile-time constant is a
// per-lane emulated gather, so speed comes from making every loaded value feed many multiply-adds
// (large tiles), from private arrays indexed only by constants (they become registers), and from
// loops without barriers. The element types of the bindings are `f32` or `vec4<f32>`: vec4 along
// a channel axis when its size allows. Out-of-range rows and channels of a tile are
// clamped to valid addresses when loading and skipped when storing, so inner loops carry no
// bounds checks; taps that fall into the padding load a valid address and multiply it by 0.

/**
 * conv2d_forward: y[m, co] = sum over k = (kh, kw, ci) of x_patch[m, k] * w[co, k] (+ bias[co]), m = (n, oh, ow).
 * One invocation owns TM output pixels x TN output channels of one group; the reduction walks the
 * taps and, inside each, the group's input channels, contiguous in both x (NHWC) and w (OHWI),
 * so k is also the offset into a weight row.
 * Bias, folded BatchNorm, residual, FCA attention: the epilogue's helpers (engine/ops/epilogue.ts).
 */
function forwardWgsl(d: { ACC: number; EPILOGUE: string; EP_DECLS: string; INNER: string; SETUP: string; TAP: string; TM: number; TN: number; WG: number }): string {
  return `${d.EP_DECLS}
${main1d(`// Tile order (see channelsFastest in conv2d.ts): pixel tiles fastest keeps a weight tile hot while
  // the input streams by; channel tiles fastest keeps a pixel tile hot while the weights do.
  let ng = p.tiles / p.tiles_m;
  let n_fast = p.n_fast != 0u;
  let tgn = select(t / p.tiles_m, t % ng, n_fast);
  let m0 = select(t % p.tiles_m, t / ng, n_fast) * ${d.TM}u;
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * ${d.TN}u;
  let xg = p.xoff + g * p.ck;
${d.SETUP}
  var acc: array<f32, ${d.ACC}>;
  // One flat loop over k = (tap, c): on SwiftShader a nested tap/channel loop pair ran up to 1.7x
  // slower (small Ci/groups) than recomputing the tap's pixel offsets every step. TAP decodes kk
  // into the tap and its channel c and finds each pixel's input offset (a 1x1 convolution without
  // padding has found them once in SETUP).
  let kt = p.taps * p.ck;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
${d.TAP}
    let wc = kk;
${d.INNER}
  }
${d.EPILOGUE}`, { count: 'tiles', index: 't', wg: d.WG })}`;
}

/**
 * conv2d_backward_input: dx[n, ih, iw, ci] = sum over taps and the group's co of gy[n, oh, ow, co] * w[co, kh, kw, ci]
 * with ih = oh*sh - ph + kh*dh: a transposed convolution written as a gather. With stride s an
 * input pixel receives only the taps with (ih + ph - kh*dh) % s == 0, which depends on ih % s
 * alone; a tile is therefore cut from one stride phase (rh, rw) and visits only the taps that hit
 * it (no multiply-adds wasted on the others).
 * One invocation owns TM input pixels of one phase x TN input channels of one group; the
 * reduction walks those taps and, inside each, the group's output channels (contiguous in gy).
 */
function backwardInputWgsl(d: { ACC: number; AV: number; BT: string; EPILOGUE: string; INNER: string; SETUP: string; TAP: string; TM: number; TN: number; WG: number }): string {
  return main1d(`// The phase varies slowest, so the invocations of a SIMD group nearly always share it and
  // take the same branches.
  let phase = t / p.tiles_phase;
  let rh = phase / p.sw;
  let rw = phase % p.sw;
  let tp = t % p.tiles_phase;
  let ng = p.tiles_phase / p.tiles_m;
  let n_fast = p.n_fast != 0u;
  let tgn = select(tp / p.tiles_m, tp % ng, n_fast);
  let m0 = select(tp % p.tiles_m, tp / ng, n_fast) * ${d.TM}u;
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * ${d.TN}u;
  let qm = p.n * p.hq * p.wq;
  let gyg = g * p.ck;
${d.SETUP}
  var acc: array<${d.BT}, ${d.ACC}>;
  // The taps that hit this phase (phaseTapsWgsl).
${phaseTapsWgsl()}
  // One flat loop over (hitting tap, c), as in the forward kernel.
  let kt = nkh * nkw * p.ck;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let c = kk % p.ck;
    let ti = kk / p.ck;
    let iw = ti % nkw;
    let ih = ti / nkw;
    let kh = kh0 + ih * p.sth;
    let kw = kw0 + iw * p.stw;
    let qh = qh0 - i32(ih * p.qsh);
    let qw = qw0 - i32(iw * p.qsw);
${d.TAP}
    let wc = (gyg + c) * ${d.AV}u * p.wrow_v + wt;
${d.INNER}
  }
${d.EPILOGUE}`, { count: 'tiles', index: 't', wg: d.WG });
}

/**
 * conv2d_backward_filter: Partial filter gradients: dw[chunk, co, k] = sum over the pixels m of the chunk of
 * gy[m, co] * x_patch[m, k], with k = (kh, kw, ci) flattened as in an OHWI weight row. The long
 * reduction over N*Ho*Wo is split into chunks so that small layers still give every core work;
 * a second pass (sumColumns) adds the chunks. One invocation owns TM output channels x TN entries
 * of k and walks the pixels of its chunk, PIX at a time.
 */
function backwardFilterWgsl(d: { ACC: number; EPILOGUE: string; INNER: string; PIX: number; SETUP: string; TM: number; TN: number; WG: number }): string {
  return main1d(`let chunk = t / p.tiles;
  let tt = t % p.tiles;
  let tgm = tt / p.tiles_n;
  let k0 = (tt % p.tiles_n) * ${d.TN}u;
  let g = tgm / p.tiles_m;
  let c0 = (tgm % p.tiles_m) * ${d.TM}u;
  let q0 = chunk * p.chunk;
  let q1 = min(p.m, q0 + p.chunk);
${d.SETUP}
  var acc: array<f32, ${d.ACC}>;
  // (n, oh, ow) of pixel q, advanced with selects rather than divisions (in INNER).
  let hw = p.ho * p.wo;
  var n = q0 / hw;
  var oh = (q0 % hw) / p.wo;
  var ow = q0 % p.wo;
  for (var q = q0; q < q1; q = q + ${d.PIX}u) {
${d.INNER}
  }
  let ob = chunk * p.wsize_v;
${d.EPILOGUE}`, { count: 'total', index: 't', wg: d.WG });
}
