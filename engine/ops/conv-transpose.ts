/**
 * Transposed 2-D convolution with PyTorch's ConvTranspose2d semantics (groups 1, dilation 1):
 * CANet's decoder upsamplers (k3 s2 p1 op1, and the x8 head k15 s8 p7 op7). NHWC activations,
 * engine weights [Co, KH, KW, Ci] (engine/layout.ts converts PyTorch's (in, out, kH, kW)).
 *
 * Every kernel (generated at the end of this file) is a gather with a register tile of outputs; none
 * uses atomics or scatters. The forward gives each invocation outputs of a single stride phase,
 * so it visits only the taps that reach them, ceil(K / stride) per axis (2x2 of the x8 head's
 * 15x15). The forward and input-gradient kernels reduce over channels in vec4s on both operands
 * into dot-product accumulators; channel counts that are not multiples of 4 are zero-padded by a
 * cheap pass (x, w or gy), and the input gradient reads the weights transposed to [KH, KW, Ci, Co].
 * On real GPUs all three take the workgroup-memory GEMMs of conv-transpose-workgroup.ts instead
 * (convTransposeUsesWorkgroup: unless a register tile was tuned faster, or engine.prefer says
 * otherwise; the fused argmax head keeps its register kernel); llvmpipe with subgroups takes the
 * lanes kernels of conv-transpose-lanes.ts for the forward and the input gradient (useLanes);
 * other CPU adapters keep these tiles.
 */
import convTransposeWgsl from '../../shaders/conv_transpose.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkFits, checkOperands, fmtShape, pairOption } from '../errors.js';
import { type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import { checkFloatOperands, halfTag, loadF32, resultDType, storageType } from './storage.js';
import type { Engine } from '../engine.js';
import { candidateList, scratchCase, tunedNumbers } from '../tune.js';
import { sumColumns } from './reduce.js';
import { type Epilogue, checkEpilogue, epilogueKind, epiloguePlan, hasEpilogue } from './epilogue.js';
import { WG, generatedSpec, main1d, section } from './shader.js';
import { kernelFamily, tileFamily } from '../device-common.js';
import type { LanesTile } from './conv2d-lanes.js';
import { transposeInputLanesProgram, transposeLanesProgram, transposeLanesTile } from './conv-transpose-lanes.js';
import { convTransposeBackwardFilterWorkgroup, convTransposeBackwardInputWorkgroup, convTransposeForwardWorkgroup, convTransposeUsesWorkgroup } from './conv-transpose-workgroup.js';

export interface ConvTransposeOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  outputPadding?: number | [number, number];
}

/**
 * Filter-gradient invocations to aim for before splitting the reduction into chunks (each chunk
 * adds a partial copy of dw to sum): a CPU adapter has a few cores, a GPU thousands of lanes.
 */
const filterGradThreads = (engine: Tensor['engine']): number => (engine.adapter.isSoftware ? 1024 : 16384);
/** Cap on the filter-gradient partials (floats), so huge layers do not allocate chunk copies freely. */
const FILTER_GRAD_MAX_PARTIAL = 1 << 24;

interface Geometry {
  n: number; h: number; w: number; ci: number; co: number;
  kh: number; kw: number; sh: number; sw: number; ph: number; pw: number;
  ho: number; wo: number;
}

/** `stored`: the channels the output tensor holds (1 for the fused argmax's class ids). */
function geometry(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvTransposeOptions, stored?: number): Geometry {
  const op = 'convTranspose2d';
  checkOperands(op, x, w, bias);
  // x and w may be f16 (the f16 inference path: no gradient); the bias stays f32.
  checkFloatOperands(op, [x, w]);
  if (bias) check(bias.dtype === 'f32', op, () => `bias ${bias.name} must be f32, got ${bias.dtype}`);
  check(x.rank === 4, op, () => `input ${x.name} must be [N, H, W, Ci] (rank 4), got ${fmtShape(x.shape)}`);
  check(w.rank === 4, op, () => `weight ${w.name} must be [Co, KH, KW, Ci] (rank 4), got ${fmtShape(w.shape)}`);
  const [n, h, wd, ci] = x.shape as [number, number, number, number];
  const [co, kh, kw, wci] = w.shape as [number, number, number, number];
  check(n > 0 && h > 0 && wd > 0 && ci > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} has a zero dimension`);
  check(co > 0 && kh > 0 && kw > 0, op, () => `weight ${w.name} ${fmtShape(w.shape)} has a zero dimension`);
  check(wci === ci, op, () => `weight ${w.name} ${fmtShape(w.shape)} must be [Co, KH, KW, ${ci}] for input ${x.name} ${fmtShape(x.shape)} with ${ci} channels`);
  if (bias) check(bias.rank === 1 && bias.shape[0] === co, op, () => `bias ${bias.name} must be [${co}], got ${fmtShape(bias.shape)}`);
  const [sh, sw] = pairOption(op, 'stride', opts.stride, 1, 1);
  const [ph, pw] = pairOption(op, 'padding', opts.padding, 0, 0);
  const [oph, opw] = pairOption(op, 'outputPadding', opts.outputPadding, 0, 0);
  check(oph < sh && opw < sw, op, () => `outputPadding [${oph}, ${opw}] must be smaller than stride [${sh}, ${sw}]`);
  const ho = (h - 1) * sh - 2 * ph + kh + oph;
  const wo = (wd - 1) * sw - 2 * pw + kw + opw;
  check(ho > 0 && wo > 0, op, () =>
    `output would be ${ho}x${wo}: input ${x.name} ${fmtShape(x.shape)} with kernel ${kh}x${kw}, stride [${sh}, ${sw}], padding [${ph}, ${pw}], outputPadding [${oph}, ${opw}]`);
  // Checked here: the forward pads x and w to vec4 channels before it allocates the output.
  checkFits(op, x.engine.limits, [n, ho, wo, stored ?? co]);
  return { n, h, w: wd, ci, co, kh, kw, sh, sw, ph, pw, ho, wo };
}

/**
 * Multiply-adds that really happen: (input, output) pixel pairs joined by a tap, per channel pair.
 * Counted per axis (rows x columns), so it is exact for any padding.
 */
function connectedFlops(g: Geometry): number {
  const axis = (len: number, s: number, p: number, k: number, out: number): number => {
    let pairs = 0;
    for (let i = 0; i < len; i++) for (let t = 0; t < k; t++) if (i * s - p + t >= 0 && i * s - p + t < out) pairs++;
    return pairs;
  };
  return 2 * g.n * g.ci * g.co * axis(g.h, g.sh, g.ph, g.kh, g.ho) * axis(g.w, g.sw, g.pw, g.kw, g.wo);
}

/** `base + k` for a compile-time k, written so negative k stays valid WGSL. */
const plus = (base: string, k: number): string => (k === 0 ? base : k > 0 ? `${base} + ${k}` : `${base} - ${-k}`);

/**
 * Transposed convolution: x [N, H, W, Ci] (NHWC), w [Co, KH, KW, Ci], bias [Co] or null ->
 * [N, Ho, Wo, Co] with Ho = (H - 1) * strideH - 2 * padH + KH + outputPaddingH (likewise Wo);
 * outputPadding must be smaller than stride, as in PyTorch. Records autograd for x, w and bias.
 * `epilogue`: as conv2d's (inference only; with `into` the target tensor is returned).
 */
export function convTranspose2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvTransposeOptions = {}, epilogue?: Epilogue | null): Tensor {
  const g = geometry(x, w, bias, opts);
  const inputs = bias ? [x, w, bias] : [x, w];
  if (hasEpilogue(epilogue)) {
    const op = 'convTranspose2d';
    checkEpilogue(op, epilogue, [g.n, g.ho, g.wo, g.co], inputs);
    check(!(bias && epilogue.affine), op, () => `bias ${bias!.name} and an epilogue affine were both given: fold the bias into the affine (bnFold)`);
    return convTransposeForward(x, w, bias, g, epilogue);
  }
  const out = convTransposeForward(x, w, bias, g, null);
  return recordOp(out, 'convTranspose2d', inputs, (gy, _accumulated, into) => {
    // Both gradient kernels read gy in vec4s over co; pad it once for both (it runs in a scope).
    const gy4 = (x.requiresGrad || w.requiresGrad) && g.co % 4 !== 0 ? padChannels(gy, g.co) : gy;
    return [
      x.requiresGrad ? convTransposeBackwardInput(gy4, w, g) : null,
      w.requiresGrad ? convTransposeBackwardFilter(x, gy4, g, into[1]) : null,
      bias?.requiresGrad ? sumColumns(gy, undefined, into[2]) : null,
    ];
  });
}

/**
 * Inference: class ids [N, Ho, Wo] (i32) = argmax over channels of convTranspose2d(x, w, bias)
 * with `epilogue` (folded BatchNorm, activation) applied, without ever storing the logits: the
 * x8 head's [N, H, W, K] output is the largest tensor of a segmentation and may not fit one
 * binding. Ties go to the lower channel, as argmax. Needs K <= 20 (one channel tile).
 */
export function convTranspose2dArgmax(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvTransposeOptions = {}, epilogue: Epilogue = {}): Tensor {
  const op = 'convTranspose2dArgmax';
  const g = geometry(x, w, bias, opts, 1);
  const inputs = bias ? [x, w, bias] : [x, w];
  check(!(x.engine.gradEnabled && inputs.some((t) => t.requiresGrad)), op, () => `class ids have no gradient: use it under engine.noGrad()`);
  checkEpilogue(op, epilogue, [g.n, g.ho, g.wo, g.co], inputs);
  check(!epilogue.into && !epilogue.residual && !epilogue.fca, op, () => `only an affine and an activation can precede the argmax`);
  check(!(bias && epilogue.affine), op, () => `bias ${bias!.name} and an epilogue affine were both given: fold the bias into the affine (bnFold)`);
  return convTransposeForward(x, w, bias, g, epilogue, true);
}

/** [d0, d1, d2, 4 * ceil(d3 / 4)] with element (a, b, c, d) = src[a*s0 + b*s1 + c*s2 + d*s3], zero for d >= d3. */
function pack(src: Tensor, dims: [number, number, number, number], strides: [number, number, number, number]): Tensor {
  const engine = src.engine;
  const [d0, d1, d2, d3] = dims;
  const d3v = Math.ceil(d3 / 4);
  const out = engine.empty([d0, d1, d2, d3v * 4], 'f32');
  const total = d0 * d1 * d2 * d3v;
  const [s0, s1, s2, s3] = strides;
  engine.run({
    name: 'conv_transpose_pack',
    // No variant: the WGSL has no compile-time input (WG is a constant).
    shader: () => ({
      uniforms: { d1: 'u32', d2: 'u32', d3v: 'u32', d3: 'u32', s0: 'u32', s1: 'u32', s2: 'u32', s3: 'u32', total: 'u32' },
      bindings: { src: read('f32'), dst: readWrite('vec4<f32>') },
      code: section(convTransposeWgsl, 'conv_transpose_pack', { WG }),
    }),
    uniforms: { d1, d2, d3v, d3, s0, s1, s2, s3, total },
    bindings: { src, dst: out },
    dispatch: grid1d(total, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: 4 * (src.size + out.size),
  });
  return out;
}

/**
 * src viewed as [rows, cols] with each row zero-padded to 4 * ceil(cols / 4) (NHWC channels):
 * x or gy with a channel count that is not a multiple of 4 made vec4-readable
 * (conv_transpose_pad_channels, generated: its element type varies).
 */
function padChannels(src: Tensor, cols: number): Tensor {
  const engine = src.engine;
  const rows = src.size / cols;
  const cv = Math.ceil(cols / 4);
  const out = engine.empty([rows, cv * 4], src.dtype);
  // The element type T (f32, or f16 on the f16 inference path) is the one compile-time input.
  const T = storageType(src, 1);
  engine.run({
    name: 'conv_transpose_pad_channels',
    variant: T === 'f32' ? undefined : T,
    // One vec4 per invocation and a single index division (this pass runs over the x8 head's 10
    // M-element gradient).
    shader: () =>
      generatedSpec(
        { uniforms: { cols: 'u32', cv: 'u32', total: 'u32' }, bindings: { src: read(T), dst: readWrite(`vec4<${T}>`) } },
        main1d(`let row = i / p.cv;
  let c0 = (i - row * p.cv) * 4u;
  let base = row * p.cols;
  let last = p.cols - 1u;
  let c = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
  let v = vec4<${T}>(src[base + min(c.x, last)], src[base + min(c.y, last)], src[base + min(c.z, last)], src[base + min(c.w, last)]);
  dst[i] = select(vec4<${T}>(0.0), v, c < vec4<u32>(p.cols));`, { count: 'total' }),
      ),
    uniforms: { cols, cv, total: rows * cv },
    bindings: { src, dst: out },
    dispatch: grid1d(rows * cv, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: src.byteLength + out.byteLength,
  });
  return out;
}

/**
 * Channel tile: a few fixed sizes, so that layers share pipelines (each is compiled once, and
 * fully unrolled tiles take seconds to compile on SwiftShader); 17-20 channels (the x8 head's 19
 * classes) get a tile of their own rather than a second, nearly empty one.
 */
function channelTile(c: number): number {
  return c > 20 ? 16 : [4, 8, 16, 20].find((t) => t >= c)!;
}

/**
 * Candidates of a tuning case: on GPUs the workgroup-memory kernel ('wg', conv-transpose-workgroup.ts)
 * first, as the default there, then the register tiles.
 */
const withWorkgroup = (engine: Engine, offer: boolean, def: string, others: string[]): string[] =>
  offer && kernelFamily(engine) === 'gpu' ? candidateList('wg', [def, ...others]) : candidateList(def, others);

/**
 * Forward register tile: TH x TP outputs of one stride phase times TCO output channels; `tuned`
 * when engine.tuned chose it (a register tile measured faster than the workgroup kernel on a GPU).
 */
function forwardTiles(engine: Engine, g: Geometry, argmax: boolean): { th: number; tp: number; tco: number; tuned: boolean } {
  const llvm = llvmTiles(engine);
  // llvmpipe: at most 8 channels a tile, except where the fused argmax needs them all.
  const tco = llvm && !argmax ? Math.min(8, channelTile(g.co)) : channelTile(g.co);
  const def = llvm ? LLVM_FORWARD : defaultForwardTiles(g, tco);
  const t = tunedNumbers(engine, () => tuneKey(argmax ? 'forward-argmax' : 'forward', g), (key) => scratchCase(engine, key,
    `convTranspose2d ${argmax ? 'forward+argmax' : 'forward'} ${fmtShape([g.n, g.h, g.w, g.ci])} -> ${g.co}, k${g.kh} s${g.sh}`,
    withWorkgroup(engine, !argmax, `${def.th}x${def.tp}`, llvm ? ['1x2', '1x4', '2x2', '2x4'] : ['2x4', '4x4', '2x8', '4x8']), [[g.n, g.h, g.w, g.ci], [g.co, g.kh, g.kw, g.ci]],
    ([x, w]) => { convTransposeForward(x!, w!, null, g, null, argmax); }), 2, 8);
  return t ? { th: t[0]!, tp: t[1]!, tco, tuned: true } : { ...def, tco, tuned: false };
}

/** Key of one transposed-convolution kernel in engine.tuned: the kernel and the whole geometry. */
const tuneKey = (kernel: string, g: Geometry): string =>
  `convTranspose2d.${kernel} ${g.n}x${g.h}x${g.w}x${g.ci}>${g.co} k${g.kh}x${g.kw} s${g.sh}x${g.sw} p${g.ph}x${g.pw} o${g.ho}x${g.wo}`;

/**
 * llvmpipe (Mesa lavapipe) compiles big unrolled tiles very slowly (LLVM; cold Mesa cache, 2 cores,
 * loaded host, 2026-12-06): the x8 head's forward (2 x 4 x 20 channels, 160 accumulators) took
 * 14.6 s to compile and the k3 s2 layers' (2 x 4 x 16) 12.5 s. With at most 8 channels a tile
 * (the fused argmax keeps all of them) 1x16x32x19 -> 19 k15 s8 compiled in 0.9 s (1 x 2), 1.6 s
 * (2 x 2), 1.5 s (1 x 4), 3.2 s (2 x 4) and ran 53, 33, 41, 28 ms: 2 x 2. The input gradient
 * takes 1 x 2 pixels x 8 channels.
 */
const LLVM_FORWARD = { th: 2, tp: 2 };
/**
 * vec4 accumulators of a filter-gradient tile on llvmpipe (64 elsewhere, see filterGradTiles):
 * cold, the 64-accumulator tiles (1 x 4 x 4, 3 x 1 x 5) took 2.5-2.8 s each to compile in a
 * 256x128 training step; forward + both gradients of 1x16x32x19 -> 19 k15 s8 and 1x32x64x64 -> 64
 * k3 s2 compiled in 2.5 / 2.9 s with 64, 1.2 / 1.1 s with 32, 1.4 / 0.6 s with 16, and ran 68 / 86,
 * 75 / 83, 78 / 87 ms: 32.
 */
const LLVM_FILTER_ACC = 32;
const LLVM_INPUT = { th: 1, tw: 2 };

/** Whether this engine's transposed convolutions take the llvmpipe tiles (its family, or the `convTransposeTiles` variant). */
const llvmTiles = (engine: Engine): boolean => tileFamily(engine, 'convTranspose') === 'llvmpipe';

function defaultForwardTiles(g: Geometry, tco: number): { th: number; tp: number } {
  // Measured on SwiftShader: 4 x 8 x 16 is best for k3 s2 320 -> 192 (about 15% over 4 x 4 or
  // 2 x 8), but a 512-accumulator tile takes seconds to compile (6.5 s in the demo network's first
  // inference), so only layers of 1e9 FLOPs a call get it, where they fill it. Everything else
  // takes 2 x 4 (2026-12-02): 1x32x64x64 -> 32 k3 s2 ran 27 ms against 39 ms for 4 x 4, compiling
  // in 1.0 s against 2.8 s; 2 x 2 is 1.3-1.5x slower. The x8 head (20-channel tile, 1x64x128x19 ->
  // 19, k15 s8, 2026-12-03, flat tap loop): forward 565-656 ms with 2 x 4 against 500-600 ms with
  // 4 x 4, which compiles 1.4 s longer, so 2 x 4; the fused argmax (inference) 513-526 against
  // 379 ms, and its 4 x 4 compiles in 0.8 s (0.4 s for 2 x 4), so 4 x 4 from 1e9 FLOPs.
  // 2026-12-04, quiet host, stores without a per-channel branch: the plain forward too takes 4 x 4
  // from 1e9 FLOPs (1024x512: 312-316 ms against 396-446 ms, first call 0.87 s against 0.70 s;
  // 4 x 8 runs 247-292 ms but compiles 0.6 s longer, left to the tuner). At 512x256 (4e8) 4 x 4
  // runs 68-76 ms against 89-114 ms but compiles 0.3 s longer: worth it only past ten calls.
  const fills = Math.ceil(g.ho / g.sh) >= 8 && Math.ceil(g.wo / g.sw) >= 16 && g.co >= 12;
  if (fills && tco <= 16 && connectedFlops(g) >= 1e9) return { th: 4, tp: 8 };
  if (fills && connectedFlops(g) >= 1e9) return { th: 4, tp: 4 };
  return { th: 2, tp: 4 };
}

/**
 * Input-gradient register tile: TH x TW input pixels times TCI input channels. 2 x 4 where it
 * fills (4 x 4 compiled in 1.5 s a variant, 4.5 s of a 256x128 training step's first call).
 */
function inputGradTiles(engine: Engine, g: Geometry): { th: number; tw: number; tci: number; tuned: boolean } {
  const large = g.h >= 8 && g.w >= 8 && g.ci >= 12;
  const llvm = llvmTiles(engine);
  const def = llvm ? { ...LLVM_INPUT, tci: Math.min(8, channelTile(g.ci)) } : { th: 2, tw: large ? 4 : 2, tci: channelTile(g.ci) };
  const cov = Math.ceil(g.co / 4);
  const t = tunedNumbers(engine, () => tuneKey('input', g), (key) => scratchCase(engine, key,
    `convTranspose2d input ${fmtShape([g.n, g.h, g.w, g.ci])} -> ${g.co}, k${g.kh} s${g.sh}`,
    withWorkgroup(engine, true, `${def.th}x${def.tw}`, llvm ? ['1x2', '2x2', '1x4', '2x4'] : ['2x2', '2x4', '4x2', '4x4']), [[g.n, g.ho, g.wo, 4 * cov], [g.co, g.kh, g.kw, g.ci]],
    ([gy4, w]) => { convTransposeBackwardInput(gy4!, w!, g); }), 2, 8);
  return t ? { th: t[0]!, tw: t[1]!, tci: def.tci, tuned: true } : { ...def, tuned: false };
}

/**
 * The lanes tile of a forward (conv-transpose-lanes.ts), or null for the register and workgroup
 * kernels: the `convTranspose` variant 'lanes' (forced on any adapter; the llvmpipe family's
 * default where the device has subgroups), unless register tiles are forced by family
 * (`convTransposeTiles`) or a register tile was measured for this shape (engine.tuned), or the
 * fused argmax has more channels than one block holds.
 */
function forwardLanes(engine: Engine, g: Geometry, argmax: boolean): LanesTile | null {
  if (!useLanes(engine, g, argmax ? 'forward-argmax' : 'forward')) return null;
  const tile = transposeLanesTile(engine, g);
  return argmax && tile.nb < g.co ? null : tile;
}

/** Whether `kernel` takes its lanes form (see forwardLanes; the input gradient: transposeInputLanesProgram). */
function useLanes(engine: Engine, g: Geometry, kernel: 'forward' | 'forward-argmax' | 'input'): boolean {
  const variants = engine.variants;
  const forced = variants.override('convTranspose');
  if (variants.choose('convTranspose') !== 'lanes' || (forced === undefined && variants.override('convTransposeTiles') !== undefined)) return false;
  return !(forced === undefined && engine.tuned.size > 0 && engine.tuned.has(tuneKey(kernel, g)));
}

/**
 * The forward's operands for the register and lanes kernels, which read vec4s along Ci: x and w
 * with their input channels zero-padded to a multiple of 4 (new tensors the caller disposes, or x
 * and w themselves), and the output: class ids for the argmax, else a new tensor, or null where
 * the epilogue writes into a slice of a larger one.
 */
function forwardOperands(x: Tensor, w: Tensor, g: Geometry, epi: Epilogue | null, argmax: boolean): { x4: Tensor; w4: Tensor; out: Tensor | null } {
  const engine = x.engine;
  const ciVec = g.ci % 4 === 0;
  return {
    x4: ciVec ? x : padChannels(x, g.ci),
    w4: ciVec ? w : padChannels(w, g.ci),
    out: argmax ? engine.empty([g.n, g.ho, g.wo], 'i32') : epi?.into ? null : engine.empty([g.n, g.ho, g.wo, g.co], resultDType(x, w)),
  };
}

function convTransposeForward(x: Tensor, w: Tensor, bias: Tensor | null, g: Geometry, epi: Epilogue | null, argmax = false): Tensor {
  const engine = x.engine;
  const lanes = forwardLanes(engine, g, argmax);
  if (lanes) {
    const { x4, w4, out } = forwardOperands(x, w, g, epi, argmax);
    engine.run(transposeLanesProgram(engine, g, { x4, w4, bias, argmax, flops: connectedFlops(g) }, out, epi, lanes));
    if (x4 !== x) x4.dispose();
    if (w4 !== w) w4.dispose();
    return out ?? epi!.into!.tensor;
  }
  const { th: TH, tp: TP, tco: TCO, tuned } = forwardTiles(engine, g, argmax);
  // The workgroup-memory kernels are f32 only: the f16 inference path keeps the register kernel.
  if (!argmax && x.dtype === 'f32' && w.dtype === 'f32' && convTransposeUsesWorkgroup(engine, tuned)) return convTransposeForwardWorkgroup(x, w, bias, g, epi);
  if (argmax) check(g.co <= TCO, 'convTranspose2dArgmax', () => `the fused argmax needs every channel in one tile (at most ${TCO}), got ${g.co}`);
  const civ = Math.ceil(g.ci / 4);
  const { x4, w4, out } = forwardOperands(x, w, g, epi, argmax);
  // A bare bias starts the accumulators, so the store loop only stores: it is a large share of
  // the x8 head's time (10 M scattered outputs; moving the bias out of it saved ~35%). Any other
  // epilogue is applied at the store.
  const kind = epilogueKind(epi, bias);
  const biasInAcc = kind.scaleShift === 'bias' && kind.linear;
  // The argmax stores class ids by pixel (no channel index); a bias in the accumulators is read
  // directly (no per-channel setup).
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.co], out, 1, bias, { index: !argmax, setup: !biasInAcc });
  const tilesY = Math.ceil(Math.ceil(g.ho / g.sh) / TH);
  const tilesX = Math.ceil(Math.ceil(g.wo / g.sw) / TP);
  const coTiles = Math.ceil(g.co / TCO);
  const threads = g.n * g.sh * g.sw * tilesY * tilesX * coTiles;
  // Every compile-time input of the generated WGSL: the tile (TH x TP outputs x TCO channels), the
  // argmax, the bias in the accumulators, the channel count when one tile holds them all (compiled
  // into the plain store; the argmax's store tests p.co instead), and the epilogue's layout.
  // and the f16 bindings (x4 and w4; the output's is in the epilogue's).
  const variant = `${TH}x${TP}x${TCO}${argmax ? ' argmax' : ''}${biasInAcc ? ' bacc' : ''}${coTiles === 1 && !argmax ? ` co${g.co}` : ''} ${ep.variant}${halfTag({ x4, w4 })}`;
  const shader = (): ShaderSpec => {
    const epc = ep.code();
    const setup: string[] = [];
    for (let j = 0; j < TCO; j++)
      setup.push(`  let co${j} = min(ct * ${TCO}u + ${j}u, p.co - 1u);`, `  let wo${j} = co${j} * wstride;`,
        biasInAcc ? `  let b${j} = ep_bias[co${j}];` : `  let b${j} = 0.0; ${epc.setup(`co${j}`, `e${j}`)}`);
    for (let r = 0; r < TH; r++) for (let m = 0; m < TP; m++) for (let j = 0; j < TCO; j++) setup.push(`  var a${r}_${m}_${j} = b${j};`);
    const rowSetup: string[] = [];
    for (let r = 0; r < TH; r++)
      rowSetup.push(`    let iy${r} = k0 + ${r} - jy;`, `    let rok${r} = (iy${r} >= 0) & (iy${r} <= hmax);`,
        `    let xr${r} = (n * p.h + u32(clamp(iy${r}, 0, hmax))) * p.w * p.civ;`);
    const colSetup: string[] = [];
    for (let m = 0; m < TP; m++)
      colSetup.push(`      let ix${m} = m0 + ${m} - jx;`, `      let cok${m} = (ix${m} >= 0) & (ix${m} <= wmax);`,
        `      let xc${m} = u32(clamp(ix${m}, 0, wmax)) * p.civ;`);
    const body: string[] = [];
    for (let r = 0; r < TH; r++)
      for (let m = 0; m < TP; m++) body.push(`        let x${r}_${m} = select(zero, ${loadF32(x4, 4, `x4[xr${r} + xc${m} + c]`)}, rok${r} & cok${m});`);
    for (let j = 0; j < TCO; j++) {
      body.push(`        { let v = ${loadF32(w4, 4, `w4[wo${j} + wk + c]`)};`);
      for (let r = 0; r < TH; r++) for (let m = 0; m < TP; m++) body.push(`          a${r}_${m}_${j} = a${r}_${m}_${j} + dot(x${r}_${m}, v);`);
      body.push(`        }`);
    }
    const store: string[] = [];
    for (let r = 0; r < TH; r++) {
      store.push(`  { let oy = phy + (ty * ${TH}u + ${r}u) * p.stride_h; if (oy < p.ho) { let yrow = (n * p.ho + oy) * p.wo;`);
      for (let m = 0; m < TP; m++) {
        store.push(`    { let ox = phx + (tx * ${TP}u + ${m}u) * p.stride_w; if (ox < p.wo) { let ym = yrow + ox;`);
        const value = (j: number): string => (biasInAcc ? epc.store(`a${r}_${m}_${j}`) : epc.apply(`a${r}_${m}_${j}`, 'ym', `co${j}`, `e${j}`));
        if (argmax) {
          // The first maximum over the channels (strict >, as argmax does), all in this tile.
          store.push(`      var best = ${value(0)}; var bi = 0i;`);
          for (let j = 1; j < TCO; j++) store.push(`      { let v = ${value(j)}; let take = (${j}u < p.co) & (v > best); best = select(best, v, take); bi = select(bi, ${j}i, take); }`);
          store.push(`      y[ym] = bi;`);
        } else if (coTiles === 1)
          // One channel tile holds them all: store exactly g.co values, with no per-channel branch
          // (the 1024x512 x8 head about 15% faster). The count is compiled in, so single-tile layers share a
          // pipeline only with layers of the same channel count; multi-tile ones keep the test.
          for (let j = 0; j < g.co; j++) store.push(`      y[${epc.index('ym', `co${j}`)}] = ${value(j)};`);
        else
          for (let j = 0; j < TCO; j++) store.push(`      if (ct * ${TCO}u + ${j}u < p.co) { y[${epc.index('ym', `co${j}`)}] = ${value(j)}; }`);
        store.push(`    } }`);
      }
      store.push(`  } }`);
    }
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', civ: 'u32', co: 'u32', ho: 'u32', wo: 'u32',
          kh: 'u32', kw: 'u32', stride_h: 'u32', stride_w: 'u32', pad_h: 'u32', pad_w: 'u32',
          tiles_y: 'u32', tiles_x: 'u32', co_tiles: 'u32', threads: 'u32',
          ...ep.uniforms,
        },
        // f32 outputs, or i32 class ids (the argmax over channels, see convTranspose2dArgmax); then the
        // epilogue's bindings: bias or folded BatchNorm, residual...
        bindings: { x4: read(storageType(x4, 4)), w4: read(storageType(w4, 4)), y: readWrite(argmax ? 'i32' : storageType(ep.target, 1)), ...ep.bindings },
      },
      forwardWgsl({
        TH, TP,
        SETUP: setup.join('\n'), ROW_SETUP: rowSetup.join('\n'), COL_SETUP: colSetup.join('\n'), BODY: body.join('\n'), STORE: store.join('\n'),
        EP_DECLS: epc.decls,
      }),
    );
  };
  engine.run({
    name: 'conv_transpose_forward',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, civ, co: g.co, ho: g.ho, wo: g.wo, kh: g.kh, kw: g.kw, stride_h: g.sh, stride_w: g.sw, pad_h: g.ph, pad_w: g.pw,
      tiles_y: tilesY, tiles_x: tilesX, co_tiles: coTiles, threads, ...ep.values,
    },
    bindings: { x4, w4, y: ep.target, ...ep.tensors },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: connectedFlops(g),
    bytes: x4.byteLength + w4.byteLength + g.n * g.ho * g.wo * g.co * dtypeBytes(ep.target.dtype),
  });
  if (x4 !== x) x4.dispose();
  if (w4 !== w) w4.dispose();
  return ep.target;
}

/** dL/dx = a strided convolution of gy with w (each input pixel gathers the outputs it reached). */
function convTransposeBackwardInput(gy4: Tensor, w: Tensor, g: Geometry): Tensor {
  const engine = gy4.engine;
  if (useLanes(engine, g, 'input')) {
    // wt [Ci, KH, KW, 4 * cov]: conv2d's OHWI weights of the convolution of gy that dx is.
    const wt = pack(w, [g.ci, g.kh, g.kw, g.co], [1, g.kw * g.ci, g.ci, g.kh * g.kw * g.ci]);
    const dx = engine.empty([g.n, g.h, g.w, g.ci], 'f32');
    engine.run(transposeInputLanesProgram(engine, g, gy4, wt, dx, connectedFlops(g)));
    wt.dispose();
    return dx;
  }
  const { th: TH, tw: TW, tci: TCI, tuned } = inputGradTiles(engine, g);
  if (convTransposeUsesWorkgroup(engine, tuned)) return convTransposeBackwardInputWorkgroup(gy4, w, g);
  const cov = Math.ceil(g.co / 4);
  // wt [KH, KW, Ci, 4 * cov]: w with co innermost, so both operands are vec4 along co.
  const wt = pack(w, [g.kh, g.kw, g.ci, g.co], [g.kw * g.ci, g.ci, 1, g.kh * g.kw * g.ci]);
  const dx = engine.empty([g.n, g.h, g.w, g.ci], 'f32');
  const rowTiles = Math.ceil(g.h / TH);
  const tilesW = Math.ceil(g.w / TW);
  const ciTiles = Math.ceil(g.ci / TCI);
  const threads = g.n * rowTiles * tilesW * ciTiles;

  // Every compile-time input of the generated WGSL: the tile (TH x TW pixels x TCI channels).
  const variant = `${TH}x${TW}x${TCI}`;
  const shader = (): ShaderSpec => {
    const setup: string[] = [];
    for (let j = 0; j < TCI; j++) setup.push(`  let wc${j} = min(ct * ${TCI}u + ${j}u, p.ci - 1u) * p.cov;`);
    for (let r = 0; r < TH; r++) for (let t = 0; t < TW; t++) for (let j = 0; j < TCI; j++) setup.push(`  var a${r}_${t}_${j} = 0.0;`);
    const rowSetup: string[] = [];
    for (let r = 0; r < TH; r++)
      rowSetup.push(`    let oy${r} = i32((iy0 + ${r}u) * p.stride_h + ky) - p.pad_h;`, `    let rok${r} = (oy${r} >= 0) & (oy${r} <= homax);`,
        `    let gr${r} = (n * p.ho + u32(clamp(oy${r}, 0, homax))) * p.wo * p.cov;`);
    const colSetup: string[] = [];
    for (let t = 0; t < TW; t++)
      colSetup.push(`      let ox${t} = i32((ix0 + ${t}u) * p.stride_w + kx) - p.pad_w;`, `      let cok${t} = (ox${t} >= 0) & (ox${t} <= womax);`,
        `      let gc${t} = u32(clamp(ox${t}, 0, womax)) * p.cov;`);
    const body: string[] = [];
    for (let r = 0; r < TH; r++) for (let t = 0; t < TW; t++) body.push(`        let g${r}_${t} = select(zero, gy4[gr${r} + gc${t} + c], rok${r} & cok${t});`);
    for (let j = 0; j < TCI; j++) {
      body.push(`        { let v = wt[wk + wc${j} + c];`);
      for (let r = 0; r < TH; r++) for (let t = 0; t < TW; t++) body.push(`          a${r}_${t}_${j} = a${r}_${t}_${j} + dot(g${r}_${t}, v);`);
      body.push(`        }`);
    }
    const store: string[] = [];
    for (let r = 0; r < TH; r++) {
      store.push(`  { let iy = iy0 + ${r}u; if (iy < p.h) { let xrow = (n * p.h + iy) * p.w;`);
      for (let t = 0; t < TW; t++) {
        store.push(`    { let ix = ix0 + ${t}u; if (ix < p.w) { let xo = (xrow + ix) * p.ci + ct * ${TCI}u;`);
        for (let j = 0; j < TCI; j++) store.push(`      if (ct * ${TCI}u + ${j}u < p.ci) { dx[xo + ${j}u] = a${r}_${t}_${j}; }`);
        store.push(`    } }`);
      }
      store.push(`  } }`);
    }
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', ci: 'u32', cov: 'u32', ho: 'u32', wo: 'u32', kh: 'u32', kw: 'u32',
          stride_h: 'u32', stride_w: 'u32', pad_h: 'i32', pad_w: 'i32', row_tiles: 'u32', tiles_w: 'u32', ci_tiles: 'u32', threads: 'u32',
        },
        bindings: { gy4: read('vec4<f32>'), wt: read('vec4<f32>'), dx: readWrite('f32') },
      },
      backwardInputWgsl({
        TH, TW, SETUP: setup.join('\n'), ROW_SETUP: rowSetup.join('\n'), COL_SETUP: colSetup.join('\n'), BODY: body.join('\n'), STORE: store.join('\n'),
      }),
    );
  };
  engine.run({
    name: 'conv_transpose_backward_input',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, ci: g.ci, cov, ho: g.ho, wo: g.wo, kh: g.kh, kw: g.kw, stride_h: g.sh, stride_w: g.sw, pad_h: g.ph, pad_w: g.pw,
      row_tiles: rowTiles, tiles_w: tilesW, ci_tiles: ciTiles, threads,
    },
    bindings: { gy4, wt, dx },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: connectedFlops(g),
    bytes: 4 * (gy4.size + wt.size + dx.size),
  });
  wt.dispose();
  return dx;
}

/**
 * Filter-gradient tile: KG taps along W x TCOV groups of 4 output channels x TCIV groups of 4 input
 * channels, chosen for the most MACs per vec4 loaded (16 * KG * TCOV * TCIV MACs per TCIV + KG *
 * TCOV loads, discounted by the padding wasted on partial tiles) within 64 vec4 accumulators
 * (more spill on SwiftShader and take seconds to compile). It picks 1 x 4 x 4 for k3 and
 * 3 x 1 x 5 for the x8 head; measured, each is as fast as or faster than the alternatives tried.
 */
function filterGradTiles(g: Geometry, cov: number, civ: number, maxAcc = 64): { kg: number; tcov: number; tciv: number } {
  const use = (n: number, t: number): number => n / (Math.ceil(n / t) * t);
  let best = { kg: 1, tcov: 1, tciv: 1 };
  let bestScore = 0;
  for (let kg = 1; kg <= g.kw; kg++)
    for (const tcov of [1, 2, 4])
      for (const tciv of new Set([1, 2, 4, Math.min(civ, 5)])) {
        if (4 * kg * tcov * tciv > maxAcc) continue;
        const score = ((kg * tcov * tciv) / (tciv + kg * tcov)) * use(g.kw, kg) * use(cov, tcov) * use(civ, tciv);
        if (score > bestScore + 1e-9) [best, bestScore] = [{ kg, tcov, tciv }, score];
      }
  return best;
}

/**
 * dL/dw: per-chunk partial sums over input pixels, then a column sum over chunks, into `into`
 * (a tensor of the weight's size, e.g. its optimizer slot) when given.
 */
function convTransposeBackwardFilter(x: Tensor, gy4: Tensor, g: Geometry, into: Tensor | null = null): Tensor {
  const engine = x.engine;
  if (convTransposeUsesWorkgroup(engine, false)) return convTransposeBackwardFilterWorkgroup(x, gy4, g, into);
  const civ = Math.ceil(g.ci / 4);
  const cov = Math.ceil(g.co / 4);
  const x4 = g.ci % 4 === 0 ? x : padChannels(x, g.ci);
  const llvm = llvmTiles(engine);
  const { kg: KG, tcov: TCOV, tciv: TCIV } = filterGradTiles(g, cov, civ, llvm ? LLVM_FILTER_ACC : 64);
  const kxGroups = Math.ceil(g.kw / KG);
  const coTiles = Math.ceil(cov / TCOV);
  const ciTiles = Math.ceil(civ / TCIV);
  const base = g.kh * kxGroups * coTiles * ciTiles;
  const rows = g.n * g.h;
  const size = g.co * g.kh * g.kw * g.ci;
  const wanted = Math.max(1, Math.min(rows, Math.ceil(filterGradThreads(engine) / base), Math.floor(FILTER_GRAD_MAX_PARTIAL / size)));
  const rowsPerChunk = Math.ceil(rows / wanted);
  const chunks = Math.ceil(rows / rowsPerChunk);
  const threads = chunks * base;
  const dw = into ?? engine.empty([g.co, g.kh, g.kw, g.ci], 'f32');
  const partial = chunks === 1 ? dw : engine.empty([chunks, size], 'f32');

  // Every compile-time input of the generated WGSL: the tile (KG taps x TCOV x TCIV vec4 groups).
  const variant = `${KG}x${TCOV}x${TCIV}`;
  const shader = (): ShaderSpec => {
    const setup: string[] = [];
    for (let m = 0; m < TCOV; m++) setup.push(`  let q${m} = min(cot * ${TCOV}u + ${m}u, p.cov - 1u);`);
    for (let k = 0; k < TCIV; k++) setup.push(`  let ck${k} = min(cit * ${TCIV}u + ${k}u, p.civ - 1u);`);
    const acc = (i: number, m: number, k: number, e: number): string => `a${i}_${m}_${k}_${e}`;
    for (let i = 0; i < KG; i++)
      for (let m = 0; m < TCOV; m++) for (let k = 0; k < TCIV; k++) for (let e = 0; e < 4; e++) setup.push(`  var ${acc(i, m, k, e)} = zero;`);
    const body: string[] = [];
    for (let k = 0; k < TCIV; k++) body.push(`      let xv${k} = x4[xo + ck${k}];`);
    for (let i = 0; i < KG; i++) {
      body.push(`      { let ox = ${plus('oxb', i)}; let ok = (ox >= 0) & (ox <= womax) & (kx0 + ${i}u < p.kw); let gb = grow + u32(clamp(ox, 0, womax)) * p.cov;`);
      for (let m = 0; m < TCOV; m++) {
        body.push(`        { let gv = select(zero, gy4[gb + q${m}], ok);`);
        for (let k = 0; k < TCIV; k++)
          for (let e = 0; e < 4; e++) body.push(`          ${acc(i, m, k, e)} = ${acc(i, m, k, e)} + gv * xv${k}.${'xyzw'[e]};`);
        body.push(`        }`);
      }
      body.push(`      }`);
    }
    const store: string[] = [];
    for (let i = 0; i < KG; i++)
      for (let m = 0; m < TCOV; m++)
        for (let k = 0; k < TCIV; k++)
          for (let e = 0; e < 4; e++)
            store.push(`  put(chunk, cot * ${TCOV}u + ${m}u, ky, kx0 + ${i}u, (cit * ${TCIV}u + ${k}u) * 4u + ${e}u, ${acc(i, m, k, e)});`);
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', ci: 'u32', civ: 'u32', co: 'u32', cov: 'u32', ho: 'u32', wo: 'u32', kh: 'u32', kw: 'u32',
          stride_h: 'u32', stride_w: 'u32', pad_h: 'i32', pad_w: 'i32', co_tiles: 'u32', ci_tiles: 'u32', kx_groups: 'u32',
          rows: 'u32', rows_per_chunk: 'u32', threads: 'u32',
        },
        bindings: { x4: read('vec4<f32>'), gy4: read('vec4<f32>'), partial: readWrite('f32') },
      },
      backwardFilterWgsl({
        KG, SETUP: setup.join('\n'), BODY: body.join('\n'), STORE: store.join('\n'),
      }),
    );
  };
  engine.run({
    name: 'conv_transpose_backward_filter',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, ci: g.ci, civ, co: g.co, cov, ho: g.ho, wo: g.wo, kh: g.kh, kw: g.kw, stride_h: g.sh, stride_w: g.sw, pad_h: g.ph, pad_w: g.pw,
      co_tiles: coTiles, ci_tiles: ciTiles, kx_groups: kxGroups, rows, rows_per_chunk: rowsPerChunk, threads,
    },
    bindings: { x4, gy4, partial },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: connectedFlops(g),
    bytes: 4 * (x4.size + gy4.size + partial.size),
  });
  if (x4 !== x) x4.dispose();
  if (partial === dw) return dw;
  // The chunk sums land in dw (it has the weight's shape; sumColumns only needs its size).
  sumColumns(partial, undefined, dw);
  partial.dispose();
  return dw;
}

// ------------------------------------------------------------------ kernels (generated WGSL)
// Every kernel is a gather: each invocation owns a register tile of outputs and sums what reaches
// them, so there are no atomics and no scatter. The register tile is generated here and fully
// unrolled (the setup, body and store code of each kernel): SwiftShader keeps private values in
// registers only at constant indices and pays ~10 ns per loop trip. Sizes, strides and padding are
// uniforms; taps and channels are runtime loops, except in the filter gradient, which unrolls the
// KW taps of a row. Loads outside the image use clamped addresses and are zeroed with `select`,
// never a branch.

/**
 * conv_transpose_forward: y[n, oy, ox, co] = bias[co] + sum of x[n, iy, ix, ci] * w[co, ky, kx, ci] over oy + pad_h - ky =
 * iy * stride_h and ox + pad_w - kx = ix * stride_w. All outputs of one stride phase (oy mod
 * stride_h, ox mod stride_w) use the same taps, ky = (oy + pad_h) mod stride_h + jy * stride_h
 * (likewise kx), ceil(K / stride) per axis at most, so an invocation owns outputs of one phase:
 * TH rows and TP columns of that phase's grid (stride apart in the image) times TCO output
 * channels, and loops over that phase's taps only (the x8 head, k15 s8: 2x2 taps, not 15x15).
 * The reduction over ci runs in vec4s on both sides, x4 [N, H, W, civ] and w4 [Co, KH, KW, civ]
 * (Ci zero-padded to 4 * civ when needed), into one scalar accumulator per (output, co) fed by
 * dot products: per step TH * TP + TCO vec4 loads feed 4 * TH * TP * TCO MACs, and each
 * accumulator update does 4 of them (measured 2x faster than vec4-over-co outer products).
 * Bias or folded BatchNorm, activation...: the epilogue's helpers (EP_DECLS).
 */
function forwardWgsl(d: { BODY: string; COL_SETUP: string; EP_DECLS: string; ROW_SETUP: string; SETUP: string; STORE: string; TH: number; TP: number }): string {
  return `${d.EP_DECLS}
${main1d(`let ct = id % p.co_tiles;
  var rest = id / p.co_tiles;
  let tx = rest % p.tiles_x;
  rest = rest / p.tiles_x;
  let ty = rest % p.tiles_y;
  rest = rest / p.tiles_y;
  let phx = rest % p.stride_w;
  rest = rest / p.stride_w;
  let phy = rest % p.stride_h;
  let n = rest / p.stride_h;
  let kyp = (phy + p.pad_h) % p.stride_h;
  let kxp = (phx + p.pad_w) % p.stride_w;
  let k0 = i32(ty * ${d.TH}u + (phy + p.pad_h) / p.stride_h);
  let m0 = i32(tx * ${d.TP}u + (phx + p.pad_w) / p.stride_w);
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = vec4<f32>(0.0);
  let wstride = p.kh * p.kw * p.civ;
${d.SETUP}
  // One flat loop over k = (tap row, tap column, c), recomputing the tap's offsets every step: a
  // nested tap/channel loop nest (2 x 2 x 5 trips for the x8 head) ran 1.5x slower on SwiftShader,
  // as conv2d_forward measured for its taps.
  let nky = select(0u, (p.kh - kyp + p.stride_h - 1u) / p.stride_h, kyp < p.kh);
  let nkx = select(0u, (p.kw - kxp + p.stride_w - 1u) / p.stride_w, kxp < p.kw);
  let kt = nky * nkx * p.civ;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let tap = kk / p.civ;
    let c = kk - tap * p.civ;
    let jyu = tap / nkx;
    let jxu = tap - jyu * nkx;
    let jy = i32(jyu);
    let jx = i32(jxu);
    let ky = kyp + jyu * p.stride_h;
    let kx = kxp + jxu * p.stride_w;
${d.ROW_SETUP}
${d.COL_SETUP}
    let wk = (ky * p.kw + kx) * p.civ;
${d.BODY}
  }
${d.STORE}`, { index: 'id' })}`;
}

/**
 * conv_transpose_backward_input: dx[n, iy, ix, ci] = sum of gy[n, iy * stride_h - pad_h + ky, ix * stride_w - pad_w + kx, co] *
 * w[co, ky, kx, ci]: a strided convolution of gy. Invocation: TH x TW input pixels times TCI
 * input channels. The reduction over co runs in vec4s on both sides, gy4 [N, Ho, Wo, cov] and
 * wt [KH, KW, Ci, cov] (Co zero-padded to 4 * cov when needed), into dot-product accumulators:
 * per step TH * TW + TCI vec4 loads feed 4 * TH * TW * TCI MACs. The taps are runtime loops, so
 * the unrolled body does not grow with the kernel size (a 15x15 kernel compiles as fast as 3x3).
 */
function backwardInputWgsl(d: { BODY: string; COL_SETUP: string; ROW_SETUP: string; SETUP: string; STORE: string; TH: number; TW: number }): string {
  return main1d(`let ct = id % p.ci_tiles;
  var rest = id / p.ci_tiles;
  let tx = rest % p.tiles_w;
  rest = rest / p.tiles_w;
  let rt = rest % p.row_tiles;
  let n = rest / p.row_tiles;
  let iy0 = rt * ${d.TH}u;
  let ix0 = tx * ${d.TW}u;
  let homax = i32(p.ho) - 1;
  let womax = i32(p.wo) - 1;
  let zero = vec4<f32>(0.0);
${d.SETUP}
  // One flat loop over k = (ky, kx, c), as in conv_transpose_forward (a loop nest with the short
  // channel loop innermost ran slower on SwiftShader).
  let kt = p.kh * p.kw * p.cov;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let tap = kk / p.cov;
    let c = kk - tap * p.cov;
    let ky = tap / p.kw;
    let kx = tap - ky * p.kw;
${d.ROW_SETUP}
${d.COL_SETUP}
    let wk = tap * p.ci * p.cov;
${d.BODY}
  }
${d.STORE}`, { index: 'id' });
}

/**
 * conv_transpose_backward_filter: Partial filter gradients: dw[co, ky, kx, ci] = sum of x[n, iy, ix, ci] *
 * gy[n, iy * stride_h - pad_h + ky, ix * stride_w - pad_w + kx, co] over the input rows of one
 * chunk. Invocation (chunk, ky, group of KG taps kx, TCOV groups of 4 output channels, TCIV
 * groups of 4 input channels): per input pixel it loads TCIV vec4s of x4 [N, H, W, civ] and
 * KG * TCOV vec4s of gy4 [N, Ho, Wo, cov] (channels zero-padded to multiples of 4 when needed)
 * and does 16 * KG * TCOV * TCIV MACs as vec4 (over co) FMAs. Output [chunks, Co, KH, KW, Ci];
 * sumColumns finishes the sum over chunks.
 */
function backwardFilterWgsl(d: { BODY: string; KG: number; SETUP: string; STORE: string }): string {
  return `// Stores the 4 output channels of v for one (co group, ky, kx, ci); padding is dropped.
fn put(chunk: u32, co4: u32, ky: u32, kx: u32, c: u32, v: vec4<f32>) {
  if ((co4 >= p.cov) | (c >= p.ci) | (kx >= p.kw)) { return; }
  for (var l = 0u; l < 4u; l = l + 1u) {
    let co = co4 * 4u + l;
    if (co < p.co) { partial[(((chunk * p.co + co) * p.kh + ky) * p.kw + kx) * p.ci + c] = v[l]; }
  }
}

${main1d(`let cit = id % p.ci_tiles;
  var rest = id / p.ci_tiles;
  let cot = rest % p.co_tiles;
  rest = rest / p.co_tiles;
  let kx0 = (rest % p.kx_groups) * ${d.KG}u;
  rest = rest / p.kx_groups;
  let ky = rest % p.kh;
  let chunk = rest / p.kh;
  let womax = i32(p.wo) - 1;
  let zero = vec4<f32>(0.0);
${d.SETUP}
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.rows, r0 + p.rows_per_chunk);
  for (var r = r0; r < r1; r = r + 1u) {
    let n = r / p.h;
    let oy = i32((r % p.h) * p.stride_h) - p.pad_h + i32(ky);
    if ((oy < 0) | (oy >= i32(p.ho))) { continue; }
    let grow = (n * p.ho + u32(oy)) * p.wo * p.cov;
    let xrow = r * p.w * p.civ;
    for (var ix = 0u; ix < p.w; ix = ix + 1u) {
      let xo = xrow + ix * p.civ;
      let oxb = i32(ix * p.stride_w + kx0) - p.pad_w;
${d.BODY}
    }
  }
${d.STORE}`, { index: 'id' })}`;
}
