/**
 * Batch normalisation (PyTorch's BatchNorm2d semantics) over NHWC tensors, or any [..., C].
 *
 * Training: per channel lane, one dispatch that reduces (mean, M2) with Chan's merge and then
 * normalises (activation and residual fused), and one backward dispatch that reduces sum(g') and
 * sum(g' xhat) and then writes dx (see fuseLanePass: on GPUs large tensors keep the elementwise
 * pass as its own kernel). Where lanes do not apply: per-chunk partial passes, merges, a finish and
 * an elementwise pass. Chunked passes read x as vec4s whatever C is; see the layout note at the top
 * of shaders/batchnorm.wgsl.
 */
import batchnorm from '../../shaders/batchnorm.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { type BindingDecl, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type ActivationName, ACTIVATION_NAMES, activationGradWgsl, activationWgsl, isActivation } from './activation.js';
import { unary } from './unary.js';
import { add } from './basic.js';
import { section } from './shader.js';
import { kernelFamily } from '../device-common.js';
import { ENABLE_SUBGROUPS, useSubgroups, workgroupSumWgsl } from './subgroup.js';

/** Options of {@link batchNorm2d}. */
export interface BatchNormOptions {
  /** Normalise with the batch statistics and update the running ones (true), or use the running ones. */
  training: boolean;
  /** Weight of the batch statistic in the running average (PyTorch's momentum). Default 0.1. */
  momentum?: number;
  /** Added to the variance before the square root. Default 1e-5. */
  eps?: number;
  /** Activation applied to the normalised output, fused into the same kernels (and backward). Default 'none'. */
  act?: BatchNormActivation;
  /** A tensor of x's shape added to the normalised output before the activation (a skip connection), in the same pass. */
  residual?: Tensor | null;
}

/** The activations BatchNorm fuses: those of the table in activation.ts. */
export type BatchNormActivation = ActivationName;

const WG = 64;
/** Groups per loop iteration in the reductions (unrolled). */
const UNROLL = 4;
/**
 * Groups per invocation in the elementwise passes: the per-channel parameters are loaded once per
 * K data vec4s. K = 8 measured best on SwiftShader (1 and 2 were 1.5-3x slower, 4 and 16 about equal
 * or slower); with it the normalise pass runs at the speed of the engine's `scale` kernel and the
 * dx pass at the speed of `add`.
 */
const K = 8;
/**
 * The partial reductions aim for about this many invocations, each reading at least
 * MIN_GROUPS_PER_CHUNK groups. On SwiftShader (2 cores) fewer, longer chunks measured fastest
 * (1024 invocations beat 4096 and 16384 by 10-40% on 2x64x128x32, 1x32x64x576 and 1x128x256x19);
 * a hardware GPU needs far more invocations in flight to hide memory latency (not measured here:
 * no hardware adapter was available).
 */
const TARGET_INVOCATIONS = { software: 1024, hardware: 16384 };
const MIN_GROUPS_PER_CHUNK = { software: 64, hardware: 16 };
/** Chunks merged per invocation by the combine and finish kernels. */
const MERGE = 64;

/**
 * How x is cut up: groups of L = lcm(C, 4) floats, P = L / 4 vec4s each; the last group holds
 * `rem` data elements; reductions use `chunks` chunks of `gpc` groups.
 */
interface Geometry {
  c: number;
  rows: number;
  l: number;
  p4: number;
  groups: number;
  rem: number;
  n4: number;
  gpc: number;
  chunks: number;
}

function geometry(x: Tensor): Geometry {
  const c = x.shape[x.rank - 1]!;
  const l = c % 4 === 0 ? c : c % 2 === 0 ? 2 * c : 4 * c;
  const p4 = l / 4;
  const groups = Math.ceil(x.size / l);
  const rem = x.size - (groups - 1) * l;
  const kind = x.engine.adapter.isSoftware ? 'software' : 'hardware';
  const want = Math.max(1, Math.ceil(TARGET_INVOCATIONS[kind] / p4));
  const chunks0 = Math.min(want, Math.max(1, Math.floor(groups / MIN_GROUPS_PER_CHUNK[kind])));
  const gpc = Math.ceil(groups / chunks0);
  return { c, rows: x.size / c, l, p4, groups, rem, n4: Math.ceil(x.size / 4), gpc, chunks: Math.ceil(groups / gpc) };
}

const unrolled = (n: number, line: (k: number) => string): string => Array.from({ length: n }, (_, k) => line(k)).join('\n');

/**
 * Batch normalisation with learned scale and shift.
 *
 * x [N,H,W,C] (or any [..., C]: statistics over every axis but the last), gamma/beta/runningMean/runningVar [C].
 * training: normalise with the batch mean and biased variance over N,H,W; update runningMean/runningVar IN PLACE on the GPU
 * with momentum as PyTorch: running = (1 - m) * running + m * batch, using the UNBIASED batch variance (n/(n-1)) for runningVar
 * (for a single value per channel, where that is undefined, the biased variance 0 is used).
 * inference: normalise with the running statistics. Records autograd for x, gamma, beta (the running buffers never require grad).
 *
 * @throws ShapeError for a rank below 2, an empty tensor, [C] vectors of the wrong shape, non-f32 data,
 *   running buffers aliasing another argument, or momentum outside [0, 1] / eps not positive.
 */
export function batchNorm2d(x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, opts: BatchNormOptions): Tensor {
  const op = 'batchNorm2d';
  checkOperands(op, x, gamma, beta, runningMean, runningVar);
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  check(x.rank >= 2, op, () => `input ${x.name} must be [N, H, W, C] (or [..., C] of rank >= 2), got ${fmtShape(x.shape)}`);
  check(x.size > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} is empty: no statistics to normalise with`);
  const c = x.shape[x.rank - 1]!;
  for (const [what, t] of [['gamma', gamma], ['beta', beta], ['runningMean', runningMean], ['runningVar', runningVar]] as const)
    check(t.rank === 1 && t.shape[0] === c, op, () => `${what} ${t.name} must be [${c}] (the channels of ${x.name} ${fmtShape(x.shape)}), got ${fmtShape(t.shape)}`);
  for (const t of [x, gamma, beta, runningMean, runningVar]) check(t.dtype === 'f32', op, () => `${t.name} must be f32, got ${t.dtype}`);
  // The running buffers are written in place: WebGPU forbids binding a written buffer twice.
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const)
    for (const other of [x, gamma, beta, what === 'runningMean' ? runningVar : runningMean])
      check(t !== other, op, () => `${what} ${t.name} must be its own tensor, not also passed as another argument`);
  check(Number.isFinite(momentum) && momentum >= 0 && momentum <= 1, op, () => `momentum must be in [0, 1], got ${momentum}`);
  check(Number.isFinite(eps) && eps > 0, op, () => `eps must be positive, got ${eps}`);

  const engine = x.engine;
  const training = opts.training;
  const act = opts.act ?? 'none';
  check(isActivation(act), op, () => `act must be one of ${ACTIVATION_NAMES.join(', ')}, got ${JSON.stringify(act)}`);
  const geo = geometry(x);
  // Lane reductions: one dispatch each way with the activation (and a residual) fused in, when
  // C % 4 == 0 (vec4 lanes) or, in training with the elementwise pass fused, for any C (scalar
  // lanes: the 1- and 19-channel layers). Otherwise the chunked passes and a separate activation op.
  const fuse = fuseLanePass(engine, laneReduce(engine), geo);
  const lanes = engine.prefer.bnReduce !== 'chunked' && (geo.c % 4 === 0 || (training && fuse));
  const residual = opts.residual ?? null;
  if (residual) {
    checkOperands(op, residual);
    check(residual.dtype === 'f32' && residual.rank === x.rank && residual.shape.every((d, i) => d === x.shape[i]), op, () =>
      `residual ${residual.name} must be f32 of the input's shape ${fmtShape(x.shape)}, got ${residual.dtype} ${fmtShape(residual.shape)}`);
    check(residual !== runningMean && residual !== runningVar, op, () => `residual ${residual.name} must not be a running statistic`);
  }
  // The residual joins the fused pass when nothing follows it; otherwise (and for the chunked
  // path) the separate ops compose it.
  if (residual && (act !== 'none' || !lanes)) {
    const z = add(batchNorm2d(x, gamma, beta, runningMean, runningVar, { ...opts, act: 'none', residual: null }), residual);
    return act === 'none' ? z : unary(act, z);
  }
  if (act !== 'none' && !lanes) return unary(act, batchNorm2d(x, gamma, beta, runningMean, runningVar, { ...opts, act: 'none' }));
  // stats [pivot; dev; invstd] (mean = pivot + dev, pivot a data value of the channel) and
  // affine [gamma * invstd; pivot; dev; beta], each replicated to L floats.
  const stats = engine.empty([3, geo.l], 'f32', `${op}.stats`);
  const y = engine.empty(x.shape, 'f32');
  if (training && lanes && fuse) {
    laneStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, momentum, eps, { y, act, residual });
  } else {
    const affine = engine.empty([4, geo.l], 'f32');
    if (training && lanes) laneStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, momentum, eps, { affine });
    else if (training) batchStatistics(geo, x, gamma, beta, runningMean, runningVar, stats, affine, momentum, eps);
    else {
      engine.run({
        name: 'bn_inference_params',
        // No variant: the WGSL has no compile-time input.
        shader: () => ({
          uniforms: { l: 'u32', c: 'u32', eps: 'f32' },
          bindings: { gamma: read('f32'), beta: read('f32'), running_mean: read('f32'), running_var: read('f32'), stats: readWrite('f32'), affine: readWrite('f32') },
          code: section(batchnorm, 'bn_inference_params', { WG }),
        }),
        uniforms: { l: geo.l, c: geo.c, eps },
        bindings: { gamma, beta, running_mean: runningMean, running_var: runningVar, stats, affine },
        dispatch: grid1d(geo.c, WG, engine.limits.maxComputeWorkgroupsPerDimension),
      });
    }
    perLaneAffine(geo, x, affine, y, act, residual);
    affine.dispose();
  }

  // The saved statistics belong to the enclosing scope, like every intermediate of the graph.
  const out = recordOp(y, op, residual ? [x, gamma, beta, residual] : [x, gamma, beta], (g, _accumulated, into) => {
    if (stats.disposed) throw new Error(`${op} backward: the saved batch statistics were disposed; call backward inside the scope that ran the forward pass`);
    // dgamma and dbeta go straight to their destinations (optimizer slots) when offered.
    const dest = { dgamma: into[1] ?? null, dbeta: into[2] ?? null };
    const grads = lanes ? laneBackward(geo, g, x, y, gamma, beta, stats, training, act, fuse, dest) : batchNormBackward(geo, g, x, gamma, beta, stats, training, dest);
    // With nothing after the sum (act 'none'), the residual's gradient is the output's.
    return residual ? [...grads, residual.requiresGrad ? g : null] : grads;
  });
  if (!out.node) stats.dispose();
  return out;
}

/**
 * Inference BatchNorm folded into one per-channel affine [2, C] (row 0 scale, row 1 shift) for a
 * producer's epilogue (see epilogue.ts): y = conv(x) * scale + shift equals
 * BN(conv(x) + convBias) with the running statistics. `into` reuses a [2, C] tensor.
 */
export function bnFold(gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, eps: number, convBias: Tensor | null = null, into?: Tensor): Tensor {
  const op = 'bnFold';
  const c = gamma.shape[0]!;
  for (const [what, t] of [['gamma', gamma], ['beta', beta], ['runningMean', runningMean], ['runningVar', runningVar], ['convBias', convBias]] as const)
    if (t) check(t.rank === 1 && t.shape[0] === c && t.dtype === 'f32', op, () => `${what} ${t.name} must be f32 [${c}], got ${t.dtype} ${fmtShape(t.shape)}`);
  check(Number.isFinite(eps) && eps > 0, op, () => `eps must be positive, got ${eps}`);
  const engine = gamma.engine;
  const out = into ?? engine.empty([2, c], 'f32', `${op}.affine`);
  check(out.size === 2 * c, op, () => `into ${out.name} must be [2, ${c}], got ${fmtShape(out.shape)}`);
  engine.run({
    name: 'bn_fold',
    // No variant: the WGSL has no compile-time input.
    shader: () => ({
      uniforms: { c: 'u32', has_bias: 'u32', eps: 'f32' },
      // Without a conv bias, has_bias = 0 and gamma is bound as conv_bias (any buffer of C floats).
      bindings: { gamma: read('f32'), beta: read('f32'), running_mean: read('f32'), running_var: read('f32'), conv_bias: read('f32'), affine: readWrite('f32') },
      code: section(batchnorm, 'bn_fold', { WG }),
    }),
    uniforms: { c, has_bias: convBias ? 1 : 0, eps },
    bindings: { gamma, beta, running_mean: runningMean, running_var: runningVar, conv_bias: convBias ?? gamma, affine: out },
    dispatch: grid1d(c, WG, engine.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}

/** Groups per loop iteration of the one-dispatch reductions, and per block of their sums. */
const LANE_UNROLL = 4;
const LANE_BLOCK = 64;

/**
 * Groups per iteration of a lane kernel's unrolled loop (before the one-group loop that finishes
 * a block), by kernel family, or `engine.prefer.bnUnroll` ('1', '2', '4', ...; tests and
 * measurements force it). SwiftShader: LANE_UNROLL (loop trips cost ~10 ns there). llvmpipe: 1, no
 * unrolled loop at all: llvmpipe JIT-compiles a kernel at its first dispatch, and each unrolled
 * copy of the loads (with their robustness clamps) and of the activation gradient costs compile
 * time, which a cold Mesa cache makes the first cost (bench/RESULTS.md, 2026-12-06: BatchNorm
 * lane kernels on lavapipe, cold).
 */
function laneUnroll(engine: Tensor['engine']): number {
  const forced = Number(engine.prefer.bnUnroll);
  if (Number.isInteger(forced) && forced >= 1) return forced;
  return kernelFamily(engine) === 'llvmpipe' ? 1 : LANE_UNROLL;
}

/** The unrolled loop of a lane kernel: `unroll` copies of `line(k)` per trip, or nothing for 1. */
function unrolledLaneLoop(unroll: number, step: number, line: (k: number) => string): string {
  if (unroll <= 1) return '';
  return [`    for (; g + ${(unroll - 1) * step}u < g_end; g = g + ${unroll * step}u) {`, unrolled(unroll, line), '    }'].join('\n');
}

/**
 * Lanes per workgroup of a serial lane kernel: SwiftShader runs a workgroup on one core, 4
 * invocations per SIMD row, so 4 lanes a workgroup spreads a 32-channel layer (8 lanes) over both
 * cores. A/B on one CANet training step at 256x128 batch 2 (timestamp queries, same load): BN time
 * 1.12-1.18 s with 4, 1.17-1.19 with 8, 2.2-2.9 with 64, 2.1-3.2 with 1 or 2.
 */
const SERIAL_WG = 4;

/**
 * How the one-dispatch reductions (bn_train_stats, bn_train_grad) share a lane's groups:
 * 'serial', one invocation per lane walking all of them (CPU adapters: a few cores need little
 * parallelism, and a workgroup barrier costs SwiftShader 1.6-2x on the whole shader, measured
 * here as 10x slower BN passes than the serial walk), or 'workgroup', 64 invocations per lane and
 * a tree merge in workgroup memory (GPUs, which need the parallelism). `engine.prefer.bnReduce`
 * overrides the choice (tests run both). llvmpipe keeps 'serial' too: a cold 256x128 b2 training
 * step there compiled its BN kernels in 0.14-0.67 s each serial against 0.3-1.5 s with the
 * workgroup merge (first call 20.5 s against 35.3 s) and ran no faster (2026-12-06).
 */
export type LaneReduce = 'serial' | 'workgroup';

function laneReduce(engine: Tensor['engine']): LaneReduce {
  const v = engine.prefer.bnReduce;
  return v === 'serial' || v === 'workgroup' ? v : engine.adapter.isSoftware ? 'serial' : 'workgroup';
}

/**
 * Whether a lane kernel's workgroup merge uses subgroup operations (see subgroup.ts): only the
 * workgroup mode merges across invocations; the serial mode has nothing to merge.
 */
const laneSubgroups = (engine: Tensor['engine'], mode: LaneReduce): boolean => mode === 'workgroup' && useSubgroups(engine);

/**
 * The defines that make a lane kernel serial or workgroup-parallel; `shared` declares the
 * workgroup arrays (WGN: their length), `merge` is the WGSL of one tree step (t, t + half).
 * With `sg` (workgroup mode only), the merge is `sg.reduce` over the subgroup helpers `sg.helpers`
 * instead of the tree: one barrier per merged quantity, then a pass over per-subgroup slots.
 */
function laneDefines(mode: LaneReduce, shared: string, save: string, merge: string, load: string, sg: { helpers: string; reduce: string } | null = null): Record<string, string | number> {
  if (mode === 'serial')
    return { WG: SERIAL_WG, STEP: 1, SHARED: '', SG_PARAM: '', INDEX: `  let t = 0u;\n  let j = (wid.x + wid.y * nwg.x) * ${SERIAL_WG}u + lid.x;`, REDUCE: '', LEAD: 'true' };
  const wg = 64;
  const index = '  let t = lid.x;\n  let j = wid.x + wid.y * nwg.x;';
  if (sg)
    return { WG: wg, STEP: wg, SHARED: `${ENABLE_SUBGROUPS}\n${sg.helpers}`, SG_PARAM: ', @builtin(subgroup_invocation_id) sgi: u32', INDEX: index, REDUCE: sg.reduce, LEAD: 't == 0u' };
  return {
    WG: wg,
    STEP: wg,
    SHARED: shared.replaceAll('WGN', String(wg)),
    SG_PARAM: '',
    INDEX: index,
    REDUCE: [
      save,
      `  for (var half = ${wg / 2}u; half > 0u; half = half / 2u) {`,
      '    workgroupBarrier();',
      `    if (t < half) { ${merge} }`,
      '  }',
      '  workgroupBarrier();',
      load,
    ].join('\n'),
    // Every invocation of the lane keeps the sums (a fused pass after the reduction uses them all);
    // the first one stores the per-channel results.
    LEAD: 't == 0u',
  };
}

/** Lane steps of a lane kernel: 1 (serial) or the workgroup size. */
const laneStep = (mode: LaneReduce): number => (mode === 'serial' ? 1 : 64);

/**
 * Whether a lane kernel also does the elementwise pass that follows its reduction (normalise, or
 * dx), making the op one dispatch instead of two. The lane's invocations then walk the tensor a
 * second time: serial lanes (CPU adapters) always fuse; a GPU's workgroup lanes only for small
 * tensors (at most 16 vec4s per invocation), where the saved dispatch outweighs the lost
 * parallelism (a heuristic: not measured on a GPU here). `engine.prefer.bnFuse` ('fused' |
 * 'separate') overrides it (tests run both).
 */
function fuseLanePass(engine: Tensor['engine'], mode: LaneReduce, geo: Geometry): boolean {
  const v = engine.prefer.bnFuse;
  if (v === 'fused' || v === 'separate') return v === 'fused';
  return mode === 'serial' || geo.rows <= 16 * 64;
}

/**
 * A lane kernel's lanes: vec4s of channels when C % 4 == 0, else single channels (scalar lanes,
 * always fused: their stats rows are not replicated to L floats, so only the lane kernels read
 * them). `count` lanes per row, `rs` the row stride of stats in lane units.
 */
function lanesOf(geo: Geometry): { count: number; rs: number; scalar: boolean } {
  return geo.c % 4 === 0 ? { count: geo.p4, rs: geo.p4, scalar: false } : { count: geo.c, rs: geo.l, scalar: true };
}

/**
 * The lane type of a lane kernel and its helpers: V the value type, MOM and MERGE_FN the moments
 * struct and merge of that width (batchnorm.wgsl), X the scalar component of a count.
 */
function laneTypes(scalar: boolean): { V: string; MOM: string; MERGE_FN: string; X: string } {
  return scalar ? { V: 'f32', MOM: 'Moments1', MERGE_FN: 'merge1', X: '' } : { V: 'vec4<f32>', MOM: 'Moments4', MERGE_FN: 'merge4', X: '.x' };
}

/** Workgroups of a lane kernel (serial: one invocation per lane, SERIAL_WG per workgroup; else a workgroup of 64 per lane). */
function laneDispatch(mode: LaneReduce, lanes: number, maxDim: number): [number, number] {
  return mode === 'serial' ? grid1d(lanes, SERIAL_WG, maxDim) : grid1d(lanes * 64, 64, maxDim);
}

/**
 * Training statistics in one dispatch (bn_train_stats), one workgroup (or serial invocation) per lane.
 * With `out` (see fuseLanePass) the same dispatch normalises into out.y (act, residual) and the
 * normalise parameters are not stored; otherwise they go to out.affine for bn_affine.
 */
function laneStatistics(geo: Geometry, x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, momentum: number, eps: number,
  out: { affine: Tensor } | { y: Tensor; act: BatchNormActivation; residual: Tensor | null }): void {
  const engine = x.engine;
  const mode = laneReduce(engine);
  const fused = 'y' in out;
  const act = fused ? out.act : 'none';
  const residual = fused ? out.residual : null;
  const ln = lanesOf(geo);
  const sg = laneSubgroups(engine, mode);
  const name = `${fused ? `bn_train_${act === 'none' ? '' : `${act}_`}${residual ? 'residual_' : ''}` : 'bn_train_stats_'}${mode}${sg ? '_sg' : ''}${ln.scalar ? '_scalar' : ''}`;
  // Every compile-time input of the generated WGSL: the reduction mode (and subgroups), the lane
  // type, whether the normalise pass is fused, its activation and residual, the lane loop's unroll
  // (BLOCK is a constant).
  const unroll = laneUnroll(engine);
  const variant = `${mode}${sg ? ' sg' : ''} u${unroll} ${ln.scalar ? 'f32' : 'vec4'} ${fused ? `fused ${act}${residual ? ' res' : ''}` : 'affine'}`;
  const shader = (): ShaderSpec => {
    const t = laneTypes(ln.scalar);
    const { V } = t;
    const lane = laneDefines(
      mode,
      `var<workgroup> w_n: array<f32, WGN>;\nvar<workgroup> w_mean: array<${V}, WGN>;\nvar<workgroup> w_m2: array<${V}, WGN>;`,
      '  w_n[t] = total; w_mean[t] = dev; w_m2[t] = m2;',
      `let m = ${t.MERGE_FN}(${t.MOM}(${V}(w_n[t]), w_mean[t], w_m2[t]), ${V}(w_n[t + half]), w_mean[t + half], w_m2[t + half]); w_n[t] = m.n${t.X}; w_mean[t] = m.mean; w_m2[t] = m.m2;`,
      '  total = w_n[0]; dev = w_mean[0]; m2 = w_m2[0];',
      // Subgroups: the workgroup's count, then its mean (as a deviation from the pivot: the
      // counts weigh the invocations' deviations), then M2 about that mean, each summed over the
      // workgroup; exact merges of (n, mean, M2), like Chan's, with no sum(x^2) - n mean^2.
      sg ? {
        helpers: [workgroupSumWgsl('wg_sum_n', 'f32'), workgroupSumWgsl('wg_sum_mean', V), workgroupSumWgsl('wg_sum_m2', V)].join('\n'),
        reduce: [
          '  let wg_n = wg_sum_n(total, t, sgi);',
          '  let wg_dev = wg_sum_mean(total * dev, t, sgi) / max(wg_n, 1.0);',
          '  let dd = dev - wg_dev;',
          '  m2 = wg_sum_m2(m2 + total * dd * dd, t, sgi);',
          '  total = wg_n; dev = wg_dev;',
        ].join('\n'),
      } : null,
    );
    const step = laneStep(mode);
    const res = residual ? ' + res[at]' : '';
    const outBindings: Record<string, BindingDecl> = fused ? { y: readWrite(V), ...(residual ? { res: read(V) } : {}) } : { affine: readWrite(V) };
    return {
      uniforms: { groups: 'u32', p4: 'u32', rs: 'u32', eps: 'f32', momentum: 'f32' },
      bindings: { x: read(V), gamma: read(V), beta: read(V), running_mean: readWrite(V), running_var: readWrite(V), stats: readWrite(V), ...outBindings },
      code: section(batchnorm, 'bn_train_stats', {
        ...lane, ...t, BLOCK: LANE_BLOCK,
        ACT: activationWgsl(act, V),
        STORE_AFFINE: fused ? '' : '    affine[j] = a;\n    affine[p.rs + j] = pivot;\n    affine[2u * p.rs + j] = dev;\n    affine[3u * p.rs + j] = b;',
        NORMALIZE: fused ? `  for (var q = t; q < p.groups; q = q + ${step}u) { let at = q * p.p4 + j; y[at] = act(((x[at] - pivot) - dev) * a + b${res}); }` : '',
        UNROLLED: unrolledLaneLoop(unroll, step, (k) => `      { let d = x[(g + ${k * step}u) * p.p4 + jj] - shift; s1 = s1 + d; s2 = s2 + d * d; }`),
      }),
    };
  };
  engine.run({
    name,
    variant,
    shader,
    uniforms: { groups: geo.rows, p4: ln.count, rs: ln.rs, eps, momentum },
    bindings: {
      x, gamma, beta, running_mean: runningMean, running_var: runningVar, stats,
      ...(fused ? { y: out.y, ...(residual ? { res: residual } : {}) } : { affine: out.affine }),
    },
    dispatch: laneDispatch(mode, ln.count, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: (fused ? 7 : 4) * x.size,
    bytes: (fused ? 3 + (residual ? 1 : 0) : 1) * x.byteLength,
  });
}

/** Where the backward writes dgamma and dbeta ([C] each, e.g. optimizer slots); null: new tensors. */
interface ParamGradDest {
  dgamma: Tensor | null;
  dbeta: Tensor | null;
}

/**
 * Backward when C % 4 == 0: the reductions with their finish in one dispatch (bn_train_grad),
 * then dx, both taking the activation's gradient from its output y on the fly.
 */
function laneBackward(geo: Geometry, g: Tensor, x: Tensor, y: Tensor, gamma: Tensor, beta: Tensor, stats: Tensor, training: boolean, act: BatchNormActivation, fuse: boolean, dest: ParamGradDest): (Tensor | null)[] {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  const dgamma = dest.dgamma ?? engine.empty([geo.c], 'f32');
  const dbeta = dest.dbeta ?? engine.empty([geo.c], 'f32');
  const yb = act === 'none' ? g : y;
  const mode = laneReduce(engine);
  const ln = lanesOf(geo);
  // dx in the reduction's own dispatch (fused; always for scalar lanes, see lanesOf), by
  // bn_backward_dx from stored coefficients, or not at all.
  const dxMode = !x.requiresGrad ? 'none' : fuse ? 'fused' : 'separate';
  const dx = dxMode === 'none' ? null : engine.empty(x.shape, 'f32');
  const coef = dxMode === 'separate' ? engine.empty([4, geo.l], 'f32') : null;
  const sg = laneSubgroups(engine, mode);
  const name = `${training ? 'bn_train_grad' : 'bn_eval_grad'}${dxMode === 'fused' ? '_dx' : ''}${dxMode === 'fused' && act !== 'none' ? `_${act}` : ''}_${mode}${sg ? '_sg' : ''}${ln.scalar ? '_scalar' : ''}`;
  // Every compile-time input of the generated WGSL: the reduction mode (and subgroups), the lane
  // loop's unroll, the lane type, training (batch statistics) or inference, what happens to dx, and
  // the activation (its gradient is in the reduction whatever dxMode is).
  const unroll = laneUnroll(engine);
  const variant = `${mode}${sg ? ' sg' : ''} u${unroll} ${ln.scalar ? 'f32' : 'vec4'} ${training ? 'train' : 'eval'} dx-${dxMode} ${act}`;
  const shader = (): ShaderSpec => {
    const t = laneTypes(ln.scalar);
    const { V } = t;
    const pivotOut = training ? 'pivot' : `${V}(0.0)`;
    const lane = laneDefines(
      mode,
      `var<workgroup> w_s1: array<${V}, WGN>;\nvar<workgroup> w_s2: array<${V}, WGN>;`,
      '  w_s1[t] = s1; w_s2[t] = s2;',
      'w_s1[t] = w_s1[t] + w_s1[t + half]; w_s2[t] = w_s2[t] + w_s2[t + half];',
      '  s1 = w_s1[0]; s2 = w_s2[0];',
      sg ? {
        helpers: [workgroupSumWgsl('wg_sum_s1', V), workgroupSumWgsl('wg_sum_s2', V)].join('\n'),
        reduce: '  s1 = wg_sum_s1(s1, t, sgi);\n  s2 = wg_sum_s2(s2, t, sgi);',
      } : null,
    );
    const step = laneStep(mode);
    return {
      // n (the values per channel) only scales the training coefficients.
      uniforms: training ? { groups: 'u32', p4: 'u32', rs: 'u32', n: 'f32' } : { groups: 'u32', p4: 'u32', rs: 'u32' },
      // y: the activation's output (g itself without an activation).
      bindings: {
        gr: read(V), x: read(V), y: read(V), stats: read(V), gamma: read(V), dgamma: readWrite(V), dbeta: readWrite(V),
        ...(dxMode === 'fused' ? { dx: readWrite(V) } : dxMode === 'separate' ? { coef: readWrite(V) } : {}),
      },
      code: section(batchnorm, 'bn_train_grad', {
        ...t,
        ...lane, BLOCK: LANE_BLOCK, ACT_GRAD: activationGradWgsl(act, V),
        UNROLLED: unrolledLaneLoop(unroll, step, (k) => `      { let at = (g + ${k * step}u) * p.p4 + jj; let gv = act_grad(gr[at], y[at]); b1 = b1 + gv; b2 = b2 + gv * ((x[at] - pivot) - dev); }`),
        ...(training
          ? { COEF_B: '-a * invstd * sgxhat / p.n', COEF_D: '-a * sg / p.n' }
          : { COEF_B: `${V}(0.0)`, COEF_D: `${V}(0.0)` }),
        STORE_COEF: dxMode === 'separate' ? `    coef[j] = a;\n    coef[p.rs + j] = ${pivotOut};\n    coef[2u * p.rs + j] = d;\n    coef[3u * p.rs + j] = b;` : '',
        APPLY_DX: dxMode === 'fused'
          ? `  let pv = ${pivotOut};\n  for (var q = t; q < p.groups; q = q + ${step}u) { let at = q * p.p4 + j; dx[at] = a * act_grad(gr[at], y[at]) + (x[at] - pv) * b + d; }`
          : '',
      }),
    };
  };
  engine.run({
    name,
    variant,
    shader,
    uniforms: training ? { groups: geo.rows, p4: ln.count, rs: ln.rs, n: geo.rows } : { groups: geo.rows, p4: ln.count, rs: ln.rs },
    bindings: {
      gr: g, x, y: yb, stats, gamma, dgamma, dbeta,
      ...(dxMode === 'fused' ? { dx: dx! } : coef ? { coef } : {}),
    },
    dispatch: laneDispatch(mode, ln.count, maxDim),
    flops: (dxMode === 'fused' ? 10 : 4) * x.size,
    bytes: (dxMode === 'fused' ? 7 : 3) * x.byteLength,
  });
  if (dx && coef) backwardDx(geo, g, x, coef, dx, act, yb);
  coef?.dispose();
  return [dx, gamma.requiresGrad ? dgamma : null, beta.requiresGrad ? dbeta : null];
}

/**
 * dx = a act'(g) + (x - pivot) b + d from stored coefficients (bn_backward_dx). `y`: the
 * activation's output (g without an activation), or null for the plain dx = a g + ... of the
 * chunked path, which reads no y.
 */
function backwardDx(geo: Geometry, g: Tensor, x: Tensor, coef: Tensor, dx: Tensor, act: BatchNormActivation, y: Tensor | null): void {
  const blocks = Math.ceil(geo.groups / K);
  const name = y ? (act === 'none' ? 'bn_backward_dx' : `bn_backward_dx_${act}`) : 'bn_backward_dx';
  // Every compile-time input of the generated WGSL: the activation, and whether g' is act_grad(g, y)
  // or g itself (plain, no y binding); K is a constant.
  const variant = y ? `act ${act}` : 'plain';
  x.engine.run({
    name,
    variant,
    shader: () => ({
      uniforms: { n4: 'u32', p4: 'u32', blocks: 'u32' },
      bindings: { gr: read('vec4<f32>'), x: read('vec4<f32>'), coef: read('vec4<f32>'), dx: readWrite('vec4<f32>'), ...(y ? { y: read('vec4<f32>') } : {}) },
      code: section(batchnorm, 'bn_backward_dx', {
        WG, K, ACT_GRAD: activationGradWgsl(y ? act : 'none', 'vec4<f32>'),
        APPLY: unrolled(K, (k) => `  { let at = base + ${k}u * p.p4; if (at < p.n4) { dx[at] = a * ${y ? 'act_grad(gr[at], y[at])' : 'gr[at]'} + (x[at] - pivot) * b + d; } }`),
      }),
    }),
    uniforms: { n4: geo.n4, p4: geo.p4, blocks },
    bindings: { gr: g, x, coef, dx, ...(y ? { y } : {}) },
    dispatch: grid1d(geo.p4 * blocks, WG, x.engine.limits.maxComputeWorkgroupsPerDimension),
    flops: (y ? 6 : 5) * x.size,
    bytes: (y ? 4 : 3) * x.byteLength,
  });
}

/** Partial (mean, M2) per chunk, merge passes while more than MERGE chunks remain, then the finish. */
function batchStatistics(geo: Geometry, x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, affine: Tensor, momentum: number, eps: number): void {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let gpc = geo.gpc;
  let mean = engine.empty([chunks, geo.l], 'f32');
  let m2 = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_stats_partial',
    // No variant: the WGSL has no compile-time input (WG and UNROLL are constants).
    shader: () => ({
      uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', n4: 'u32', c: 'u32' },
      bindings: { x: read('vec4<f32>'), mean_p: readWrite('vec4<f32>'), m2_p: readWrite('vec4<f32>') },
      code: section(batchnorm, 'bn_stats_partial', {
        WG, UNROLL, ACCUMULATE: unrolled(UNROLL, (k) => `    { let d = x[base + ${k}u * p.p4] - shift; s1 = s1 + d; s2 = s2 + d * d; }`),
      }),
    }),
    uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc, chunks, n4: geo.n4, c: geo.c },
    bindings: { x, mean_p: mean, m2_p: m2 },
    dispatch: grid1d(geo.p4 * chunks, WG, maxDim),
    flops: 4 * x.size,
    bytes: x.byteLength,
  });
  while (chunks > MERGE) {
    const outChunks = Math.ceil(chunks / MERGE);
    const mean2 = engine.empty([outChunks, geo.l], 'f32');
    const m22 = engine.empty([outChunks, geo.l], 'f32');
    engine.run({
      name: 'bn_stats_combine',
      // No variant: the WGSL has no compile-time input (WG and MERGE are constants).
      shader: () => ({
        uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', out_chunks: 'u32' },
        bindings: { mean_in: read('vec4<f32>'), m2_in: read('vec4<f32>'), mean_out: readWrite('vec4<f32>'), m2_out: readWrite('vec4<f32>') },
        code: section(batchnorm, 'bn_stats_combine', { WG, MERGE }),
      }),
      uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc, chunks, out_chunks: outChunks },
      bindings: { mean_in: mean, m2_in: m2, mean_out: mean2, m2_out: m22 },
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
      bytes: 4 * mean.byteLength,
    });
    mean.dispose();
    m2.dispose();
    [mean, m2, chunks, gpc] = [mean2, m22, outChunks, gpc * MERGE];
  }
  engine.run({
    name: 'bn_stats_finish',
    // No variant: the WGSL has no compile-time input.
    shader: () => ({
      uniforms: { groups: 'u32', l: 'u32', c: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', eps: 'f32', momentum: 'f32' },
      bindings: {
        x: read('f32'), mean_p: read('f32'), m2_p: read('f32'), gamma: read('f32'), beta: read('f32'),
        running_mean: readWrite('f32'), running_var: readWrite('f32'), stats: readWrite('f32'), affine: readWrite('f32'),
      },
      code: section(batchnorm, 'bn_stats_finish', { WG }),
    }),
    uniforms: { groups: geo.groups, l: geo.l, c: geo.c, rem: geo.rem, gpc, chunks, eps, momentum },
    bindings: { x, mean_p: mean, m2_p: m2, gamma, beta, running_mean: runningMean, running_var: runningVar, stats, affine },
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  mean.dispose();
  m2.dispose();
}

/** y = act(((x - pivot) - dev) * a + b) per lane, params [a; pivot; dev; b] replicated to L floats. */
function perLaneAffine(geo: Geometry, x: Tensor, params: Tensor, y: Tensor, act: BatchNormActivation = 'none', residual: Tensor | null = null): void {
  const engine = x.engine;
  const blocks = Math.ceil(geo.groups / K);
  const name = `bn_affine${act === 'none' ? '' : `_${act}`}${residual ? '_residual' : ''}`;
  engine.run({
    name,
    // Every compile-time input of the generated WGSL: the activation and the residual (K is a constant).
    variant: `${act}${residual ? ' res' : ''}`,
    shader: () => {
      const res = residual ? ' + res[at]' : '';
      return {
        uniforms: { n4: 'u32', p4: 'u32', blocks: 'u32' },
        // res: a residual added before the activation (MobileNetV2's skip connection), when the op has one.
        bindings: { x: read('vec4<f32>'), params: read('vec4<f32>'), y: readWrite('vec4<f32>'), ...(residual ? { res: read('vec4<f32>') } : {}) },
        code: section(batchnorm, 'bn_affine', {
          WG, K, ACT: activationWgsl(act, 'vec4<f32>'),
          APPLY: unrolled(K, (k) => `  { let at = base + ${k}u * p.p4; if (at < p.n4) { y[at] = act(((x[at] - pivot) - dev) * a + b${res}); } }`),
        }),
      };
    },
    uniforms: { n4: geo.n4, p4: geo.p4, blocks },
    bindings: { x, params, y, ...(residual ? { res: residual } : {}) },
    dispatch: grid1d(geo.p4 * blocks, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 3 * x.size,
    bytes: 2 * x.byteLength,
  });
}

/**
 * Gradients for x, gamma, beta: one fused reduction (sum g, sum g (x - mean)) per channel,
 * the per-channel finish (dgamma, dbeta, dx coefficients), then one elementwise pass for dx.
 */
function batchNormBackward(geo: Geometry, g: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, stats: Tensor, training: boolean, dest: ParamGradDest): (Tensor | null)[] {
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let chunks = geo.chunks;
  let sg = engine.empty([chunks, geo.l], 'f32');
  let sgx = engine.empty([chunks, geo.l], 'f32');
  engine.run({
    name: 'bn_grad_partial',
    // No variant: the WGSL has no compile-time input (WG and UNROLL are constants).
    shader: () => ({
      uniforms: { groups: 'u32', p4: 'u32', rem: 'u32', gpc: 'u32', chunks: 'u32', n4: 'u32' },
      bindings: { gr: read('vec4<f32>'), x: read('vec4<f32>'), stats: read('vec4<f32>'), sg_p: readWrite('vec4<f32>'), sgx_p: readWrite('vec4<f32>') },
      code: section(batchnorm, 'bn_grad_partial', {
        WG,
        UNROLL,
        ACCUMULATE: unrolled(UNROLL, (k) => `    { let at = base + ${k}u * p.p4; let gv = gr[at]; s1 = s1 + gv; s2 = s2 + gv * ((x[at] - pivot) - dev); }`),
      }),
    }),
    uniforms: { groups: geo.groups, p4: geo.p4, rem: geo.rem, gpc: geo.gpc, chunks, n4: geo.n4 },
    bindings: { gr: g, x, stats, sg_p: sg, sgx_p: sgx },
    dispatch: grid1d(geo.p4 * chunks, WG, maxDim),
    flops: 3 * x.size,
    bytes: 2 * x.byteLength,
  });
  while (chunks > MERGE) {
    const outChunks = Math.ceil(chunks / MERGE);
    const sg2 = engine.empty([outChunks, geo.l], 'f32');
    const sgx2 = engine.empty([outChunks, geo.l], 'f32');
    engine.run({
      name: 'bn_grad_combine',
      // No variant: the WGSL has no compile-time input (WG and MERGE are constants).
      shader: () => ({
        uniforms: { p4: 'u32', chunks: 'u32', out_chunks: 'u32' },
        bindings: { sg_in: read('vec4<f32>'), sgx_in: read('vec4<f32>'), sg_out: readWrite('vec4<f32>'), sgx_out: readWrite('vec4<f32>') },
        code: section(batchnorm, 'bn_grad_combine', { WG, MERGE }),
      }),
      uniforms: { p4: geo.p4, chunks, out_chunks: outChunks },
      bindings: { sg_in: sg, sgx_in: sgx, sg_out: sg2, sgx_out: sgx2 },
      dispatch: grid1d(geo.p4 * outChunks, WG, maxDim),
    });
    sg.dispose();
    sgx.dispose();
    [sg, sgx, chunks] = [sg2, sgx2, outChunks];
  }
  const dgamma = dest.dgamma ?? engine.empty([geo.c], 'f32');
  const dbeta = dest.dbeta ?? engine.empty([geo.c], 'f32');
  const coef = engine.empty([4, geo.l], 'f32');
  const finish = training ? 'bn_grad_finish_train' : 'bn_grad_finish_eval';
  engine.run({
    name: finish,
    // No variant: the only compile-time input, training, is in the name.
    shader: (): ShaderSpec => ({
      // n (the values per channel) only scales the training coefficients.
      uniforms: training ? { l: 'u32', c: 'u32', chunks: 'u32', n: 'f32' } : { l: 'u32', c: 'u32', chunks: 'u32' },
      bindings: { sg_p: read('f32'), sgx_p: read('f32'), stats: read('f32'), gamma: read('f32'), dgamma: readWrite('f32'), dbeta: readWrite('f32'), coef: readWrite('f32') },
      code: section(batchnorm, 'bn_grad_finish', training
        ? { WG, PIVOT: 'stats[c]', COEF_B: '-a * invstd * sgxhat / p.n', COEF_D: '-a * sg / p.n' }
        : { WG, PIVOT: '0.0', COEF_B: '0.0', COEF_D: '0.0' }),
    }),
    uniforms: training ? { l: geo.l, c: geo.c, chunks, n: geo.rows } : { l: geo.l, c: geo.c, chunks },
    bindings: { sg_p: sg, sgx_p: sgx, stats, gamma, dgamma, dbeta, coef },
    dispatch: grid1d(geo.c, WG, maxDim),
  });
  let dx: Tensor | null = null;
  if (x.requiresGrad) {
    dx = engine.empty(x.shape, 'f32');
    if (!training) perLaneAffine(geo, g, coef, dx); // coef [a; 0; 0; 0]: dx = g * gamma * invstd
    else backwardDx(geo, g, x, coef, dx, 'none', null);
  }
  return [dx, gamma.requiresGrad ? dgamma : null, beta.requiresGrad ? dbeta : null];
}
