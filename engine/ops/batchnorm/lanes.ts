/**
 * BatchNorm's lane kernels: per channel lane, the training statistics (bn_train_stats) and the
 * backward reductions (bn_train_grad) in one dispatch each, finish included, with the elementwise
 * pass that follows (normalise with the activation and a residual; dx through the activation's
 * gradient) fused into the same dispatch where that pays (see fuseLanePass).
 *
 * A lane is a vec4 of channels when C % 4 == 0 (lane j holds channels 4j..4j+3 of every row, a
 * group) or one channel (scalar lanes: the 1- and 19-channel layers, training with the pass fused
 * only). Both kernels come from one generator, `laneKernelWgsl`, whose parameters are the lane's
 * value width (1 or 4), how a lane's groups are shared out (serial or workgroup, with or without
 * subgroups) and the unroll of the group loop; the kernels supply what is summed and what follows.
 * Their WGSL lives wholly here (generated), not in shaders/batchnorm.wgsl.
 */
import { type BindingDecl, type ShaderSpec, grid1d, read, readWrite } from '../../program.js';
import type { Tensor } from '../../tensor.js';
import { type ActivationName, activationGradWgsl, activationWgsl } from '../activation.js';
import { generatedSpec, lines, vtype } from '../shader.js';
import { ENABLE_SUBGROUPS, useSubgroups, workgroupSumWgsl } from '../subgroup.js';
import type { Geometry, ParamGradDest } from './layout.js';
import { backwardDx } from './pointwise.js';

type Engine = Tensor['engine'];


/** Groups per block of the lane kernels' sums (per iteration of their unrolled loop: laneUnroll). */
const LANE_BLOCK = 64;
/** Invocations per lane in workgroup mode. */
const LANE_WG = 64;

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
 * a tree merge in workgroup memory (GPUs, which need the parallelism). The `bnReduce` variant
 * (engine.variants) overrides the choice (tests run both). llvmpipe keeps 'serial' too: a cold 256x128 b2 training
 * step there compiled its BN kernels in 0.14-0.67 s each serial against 0.3-1.5 s with the
 * workgroup merge (first call 20.5 s against 35.3 s) and ran no faster (2026-12-06).
 */
export type LaneReduce = 'serial' | 'workgroup';

export function laneReduce(engine: Engine): LaneReduce {
  // 'chunked' runs no lane kernels; where one runs anyway (a scalar-lane training pass), it takes the default.
  const v = engine.variants.choose('bnReduce');
  return v === 'chunked' ? (engine.variants.defaultOf('bnReduce') as LaneReduce) : v;
}

/**
 * Groups per iteration of a lane kernel's unrolled loop (before the one-group loop that finishes
 * a block): the `bnUnroll` variant (engine.variants; '1', '2', '4', ...: tests and measurements
 * force it), by default per kernel family. SwiftShader: 4 (loop trips cost ~10 ns there). llvmpipe: 1, no
 * unrolled loop at all: llvmpipe JIT-compiles a kernel at its first dispatch, and each unrolled
 * copy of the loads (with their robustness clamps) and of the activation gradient costs compile
 * time, which a cold Mesa cache makes the first cost (bench/RESULTS.md, 2026-12-06: BatchNorm
 * lane kernels on lavapipe, cold).
 */
function laneUnroll(engine: Engine): number {
  return Number(engine.variants.choose('bnUnroll'));
}

/**
 * Whether a lane kernel also does the elementwise pass that follows its reduction (normalise, or
 * dx), making the op one dispatch instead of two. The lane's invocations then walk the tensor a
 * second time: serial lanes (CPU adapters) always fuse; a GPU's workgroup lanes only for small
 * tensors (at most 16 vec4s per invocation), where the saved dispatch outweighs the lost
 * parallelism (a heuristic: not measured on a GPU here). The `bnFuse` variant (engine.variants:
 * 'fused' | 'separate') overrides it (tests run both).
 */
export function fuseLanePass(engine: Engine, mode: LaneReduce, geo: Geometry): boolean {
  const v = engine.variants.choose('bnFuse');
  if (v !== undefined) return v === 'fused';
  return mode === 'serial' || geo.rows <= 16 * 64;
}

/**
 * A lane kernel's lanes: vec4s of channels when C % 4 == 0, else single channels (scalar lanes,
 * always fused: their stats rows are not replicated to L floats, so only the lane kernels read
 * them). `count` lanes per row, `rs` the row stride of stats in lane units.
 */
function lanesOf(geo: Geometry): { count: number; rs: number; width: 1 | 4 } {
  return geo.c % 4 === 0 ? { count: geo.p4, rs: geo.p4, width: 4 } : { count: geo.c, rs: geo.l, width: 1 };
}

/** The compile-time shape of a lane kernel: every input of laneKernelWgsl but the kernel's own parts. */
interface LaneShape {
  /** Floats per lane value: 4 (vec4<f32>) or 1 (f32). */
  width: 1 | 4;
  mode: LaneReduce;
  /** Workgroup mode merges with subgroup operations (see subgroup.ts). */
  sg: boolean;
  /** Groups per trip of the unrolled group loop (1: none). */
  unroll: number;
}

function laneShape(engine: Engine, geo: Geometry): LaneShape {
  const mode = laneReduce(engine);
  // Only the workgroup mode merges across invocations; the serial mode has nothing to merge.
  return { width: lanesOf(geo).width, mode, sg: mode === 'workgroup' && useSubgroups(engine), unroll: laneUnroll(engine) };
}

/** The variant prefix of a lane kernel's shape (stable: the pipeline keys of the kernels before the generator). */
const shapeVariant = (s: LaneShape): string => `${s.mode}${s.sg ? ' sg' : ''} u${s.unroll} ${s.width === 1 ? 'f32' : 'vec4'}`;
/** The name suffix of a lane kernel's shape. */
const shapeName = (s: LaneShape): string => `${s.mode}${s.sg ? '_sg' : ''}${s.width === 1 ? '_scalar' : ''}`;

/** Lane steps of a lane kernel: 1 (serial) or the workgroup size. */
const laneStep = (mode: LaneReduce): number => (mode === 'serial' ? 1 : LANE_WG);

/** Workgroups of a lane kernel (serial: one invocation per lane, SERIAL_WG per workgroup; else a workgroup per lane). */
function laneDispatch(mode: LaneReduce, lanes: number, maxDim: number): [number, number] {
  return mode === 'serial' ? grid1d(lanes, SERIAL_WG, maxDim) : grid1d(lanes * LANE_WG, LANE_WG, maxDim);
}

/**
 * What one lane kernel reduces, in the types of its shape: the per-invocation partials are the
 * variables `vars` (declared by `partials`), merged across a workgroup by a tree in workgroup
 * memory (`tree`) or by subgroup sums (`subgroups`), then `finish` runs on every live lane with
 * `lead` (a WGSL bool) true in the one invocation that stores the per-channel results.
 */
interface LaneParts {
  /** Module-scope helpers (activation, moments). */
  decls: string;
  /** The invocation's walk over its groups (g from t by STEP), leaving its partials in variables. */
  partials: string;
  /** Tree merge: the workgroup arrays [name, type], the WGSL saving, merging (t, t + half) and loading them. */
  tree: { arrays: [string, string][]; save: string; merge: string; load: string };
  /** Subgroup merge: helpers (workgroupSumWgsl) and the WGSL replacing the tree. */
  subgroups: { helpers: string; reduce: string };
  finish(lead: string): string;
}

/**
 * THE lane reduction generator: a lane index per invocation (serial) or per workgroup, the kernel's
 * partials, their merge across the workgroup, the finish. `x`, `gamma`, ... are the kernel's own
 * bindings; `j` is the lane, `jj` a lane index always in bounds, `t` the invocation in its lane.
 */
function laneKernelWgsl(s: LaneShape, k: LaneParts): string {
  let shared = '';
  let sgParam = '';
  let index = `  let t = 0u;\n  let j = (wid.x + wid.y * nwg.x) * ${SERIAL_WG}u + lid.x;`;
  let reduce = '';
  let wg = SERIAL_WG;
  let lead = 'true';
  if (s.mode === 'workgroup') {
    wg = LANE_WG;
    index = '  let t = lid.x;\n  let j = wid.x + wid.y * nwg.x;';
    // Every invocation of the lane keeps the sums (a fused pass after the reduction uses them all);
    // the first one stores the per-channel results.
    lead = 't == 0u';
    if (s.sg) {
      shared = `${ENABLE_SUBGROUPS}\n${k.subgroups.helpers}`;
      sgParam = ', @builtin(subgroup_invocation_id) sgi: u32';
      reduce = k.subgroups.reduce;
    } else {
      shared = k.tree.arrays.map(([name, type]) => `var<workgroup> ${name}: array<${type}, ${wg}>;`).join('\n');
      reduce = [
        k.tree.save,
        `  for (var half = ${wg / 2}u; half > 0u; half = half / 2u) {`,
        '    workgroupBarrier();',
        `    if (t < half) { ${k.tree.merge} }`,
        '  }',
        '  workgroupBarrier();',
        k.tree.load,
      ].join('\n');
    }
  }
  return `${shared}
${k.decls}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>${sgParam}) {
${index}
  let live = j < p.p4;
  let jj = min(j, p.p4 - 1u);
${k.partials}
${reduce}
  if (!live) { return; }
${k.finish(lead)}
}`;
}

/**
 * A block's walk over the invocation's groups from g (by STEP) to g_end: `unroll` groups per trip
 * of a first loop, then one per trip; `body(g)` the WGSL for group g.
 */
function blockLoop(s: LaneShape, body: (g: string) => string): string {
  const step = laneStep(s.mode);
  const unrolled = s.unroll <= 1 ? [] : [
    `    for (; g + ${(s.unroll - 1) * step}u < g_end; g = g + ${s.unroll * step}u) {`,
    lines(s.unroll, (k) => `      { ${body(`(g + ${k * step}u)`)} }`),
    '    }',
  ];
  return [...unrolled, `    for (; g < g_end; g = g + ${step}u) {`, `      ${body('g')}`, '    }'].join('\n');
}

/**
 * Count, mean and M2 (sum of squared deviations from the mean) per lane value, and Chan, Golub and
 * LeVeque's pairwise merge: merging partial (n, mean, M2) never forms sum(x^2) - n mean^2, which
 * cancels catastrophically in f32 when |mean| >> std. (The chunked kernels' merge4 and merge1 in
 * shaders/batchnorm.wgsl are the same update for their fixed widths.)
 */
function momentsWgsl(v: string): string {
  return `struct Moments { n: ${v}, mean: ${v}, m2: ${v} }
fn merge(a: Moments, n: ${v}, mean: ${v}, m2: ${v}) -> Moments {
  let total = a.n + n;
  let w = n / max(total, ${v}(1.0));
  let d = mean - a.mean;
  return Moments(total, a.mean + d * w, a.m2 + m2 + d * d * a.n * w);
}`;
}

/**
 * bn_train_stats: training statistics in one dispatch, finish included (saved statistics
 * [pivot; dev; invstd] in rows of rs lanes, the running statistics updated as bn_stats_finish
 * does), then either the normalise parameters [a; pivot; dev; b] (`fused` false, for bn_affine) or
 * the normalise pass itself: y = act(x-hat * gamma + beta (+ res)) for the lane.
 * Sums are taken about each block's first value and the mean kept relative to the pivot (the
 * lane's value in group 0), as in bn_stats_partial.
 */
function trainStatsWgsl(s: LaneShape, fused: boolean, act: ActivationName, residual: boolean): string {
  const V = vtype(s.width);
  const step = laneStep(s.mode);
  const count = s.width === 4 ? '.x' : '';
  const partials = `  let pivot = x[jj];
  // Blocks of up to ${LANE_BLOCK} of this invocation's groups, each summed about its first value,
  // merged (Chan) pairwise like a binary counter: level k holds the merge of 2^k blocks, so the
  // rounding error grows with log(blocks), not with blocks (a running merge over the ~200 blocks
  // of a 3x64x65 batch already lost 2 ulps of the mean).
  var levels: array<Moments, 24>;
  var blocks = 0u;
  var g = t;
  while (g < p.groups) {
    let g0 = g;
    let g_end = min(p.groups, g0 + ${LANE_BLOCK}u * ${step}u);
    let shift = x[g0 * p.p4 + jj];
    var s1 = ${V}(0.0);
    var s2 = ${V}(0.0);
${blockLoop(s, (g) => `let d = x[${g} * p.p4 + jj] - shift; s1 = s1 + d; s2 = s2 + d * d;`)}
    let nb = f32((g_end - g0 + ${step}u - 1u) / ${step}u);
    var carry = Moments(${V}(nb), (shift - pivot) + s1 / nb, max(s2 - s1 * s1 / nb, ${V}(0.0)));
    var level = 0u;
    while (((blocks >> level) & 1u) != 0u) {
      let low = levels[level];
      carry = merge(low, carry.n, carry.mean, carry.m2);
      level = level + 1u;
    }
    levels[level] = carry;
    blocks = blocks + 1u;
  }
  var acc = Moments(${V}(0.0), ${V}(0.0), ${V}(0.0));
  for (var level = 0u; level < 24u; level = level + 1u) {
    if (((blocks >> level) & 1u) != 0u) {
      let lv = levels[level];
      acc = merge(acc, lv.n, lv.mean, lv.m2);
    }
  }
  var total = acc.n${count};
  var dev = acc.mean;
  var m2 = acc.m2;`;
  return laneKernelWgsl(s, {
    decls: `${momentsWgsl(V)}\nfn act(x: ${V}) -> ${V} {\n  return ${activationWgsl(act, V)};\n}`,
    partials,
    tree: {
      arrays: [['w_n', 'f32'], ['w_mean', V], ['w_m2', V]],
      save: '  w_n[t] = total; w_mean[t] = dev; w_m2[t] = m2;',
      merge: `let m = merge(Moments(${V}(w_n[t]), w_mean[t], w_m2[t]), ${V}(w_n[t + half]), w_mean[t + half], w_m2[t + half]); w_n[t] = m.n${count}; w_mean[t] = m.mean; w_m2[t] = m.m2;`,
      load: '  total = w_n[0]; dev = w_mean[0]; m2 = w_m2[0];',
    },
    // The workgroup's count, then its mean (as a deviation from the pivot: the counts weigh the
    // invocations' deviations), then M2 about that mean, each summed over the workgroup; exact
    // merges of (n, mean, M2), like Chan's, with no sum(x^2) - n mean^2.
    subgroups: {
      helpers: [workgroupSumWgsl('wg_sum_n', 'f32'), workgroupSumWgsl('wg_sum_mean', V), workgroupSumWgsl('wg_sum_m2', V)].join('\n'),
      reduce: [
        '  let wg_n = wg_sum_n(total, t, sgi);',
        '  let wg_dev = wg_sum_mean(total * dev, t, sgi) / max(wg_n, 1.0);',
        '  let dd = dev - wg_dev;',
        '  m2 = wg_sum_m2(m2 + total * dd * dd, t, sgi);',
        '  total = wg_n; dev = wg_dev;',
      ].join('\n'),
    },
    finish: (lead) => `  let invstd = inverseSqrt(m2 / max(total, 1.0) + p.eps);
  let a = gamma[j] * invstd;
  let b = beta[j];
  if (${lead}) {
    let unbiased = m2 / max(total - 1.0, 1.0);
    running_mean[j] = (1.0 - p.momentum) * running_mean[j] + p.momentum * (pivot + dev);
    running_var[j] = (1.0 - p.momentum) * running_var[j] + p.momentum * unbiased;
    stats[j] = pivot;
    stats[p.rs + j] = dev;
    stats[2u * p.rs + j] = invstd;
${fused ? '' : '    affine[j] = a;\n    affine[p.rs + j] = pivot;\n    affine[2u * p.rs + j] = dev;\n    affine[3u * p.rs + j] = b;'}
  }
${fused ? `  for (var q = t; q < p.groups; q = q + ${step}u) { let at = q * p.p4 + j; y[at] = act(((x[at] - pivot) - dev) * a + b${residual ? ' + res[at]' : ''}); }` : ''}`,
  });
}

/**
 * bn_train_grad: the backward reductions and their finish in one dispatch: per lane, sum(g') and
 * sum(g' (x - mean)) with g' = dL/dz, the gradient through the activation that followed the
 * normalisation (recomputed from its output y, activation.ts), summed in blocks of up to
 * LANE_BLOCK groups for precision; then dgamma, dbeta and the dx coefficients [a; pivot; d; b] as
 * bn_grad_finish (training: b = -a invstd sum(g' xhat) / n, d = -a sum(g') / n; inference 0, 0).
 * `dx` 'fused': the same invocations then write dx for their lane (as bn_backward_dx);
 * 'separate': the coefficients are stored for bn_backward_dx; 'none': neither.
 */
function trainGradWgsl(s: LaneShape, training: boolean, dx: 'none' | 'fused' | 'separate', act: ActivationName): string {
  const V = vtype(s.width);
  const step = laneStep(s.mode);
  const pivotOut = training ? 'pivot' : `${V}(0.0)`;
  return laneKernelWgsl(s, {
    decls: `fn act_grad(g: ${V}, y: ${V}) -> ${V} {\n  return ${activationGradWgsl(act, V)};\n}`,
    partials: `  let pivot = stats[jj];
  let dev = stats[p.rs + jj];
  var s1 = ${V}(0.0);
  var s2 = ${V}(0.0);
  var g = t;
  while (g < p.groups) {
    let g_end = min(p.groups, g + ${LANE_BLOCK}u * ${step}u);
    var b1 = ${V}(0.0);
    var b2 = ${V}(0.0);
${blockLoop(s, (g) => `let at = ${g} * p.p4 + jj; let gv = act_grad(gr[at], y[at]); b1 = b1 + gv; b2 = b2 + gv * ((x[at] - pivot) - dev);`)}
    s1 = s1 + b1;
    s2 = s2 + b2;
  }`,
    tree: {
      arrays: [['w_s1', V], ['w_s2', V]],
      save: '  w_s1[t] = s1; w_s2[t] = s2;',
      merge: 'w_s1[t] = w_s1[t] + w_s1[t + half]; w_s2[t] = w_s2[t] + w_s2[t + half];',
      load: '  s1 = w_s1[0]; s2 = w_s2[0];',
    },
    subgroups: {
      helpers: [workgroupSumWgsl('wg_sum_s1', V), workgroupSumWgsl('wg_sum_s2', V)].join('\n'),
      reduce: '  s1 = wg_sum_s1(s1, t, sgi);\n  s2 = wg_sum_s2(s2, t, sgi);',
    },
    finish: (lead) => `  let sg = s1;
  let invstd = stats[2u * p.rs + j];
  let sgxhat = s2 * invstd;
  let a = gamma[j] * invstd;
  let b = ${training ? '-a * invstd * sgxhat / p.n' : `${V}(0.0)`};
  let d = ${training ? '-a * sg / p.n' : `${V}(0.0)`} - b * dev;
  if (${lead}) {
    dgamma[j] = sgxhat;
    dbeta[j] = sg;
${dx === 'separate' ? `    coef[j] = a;\n    coef[p.rs + j] = ${pivotOut};\n    coef[2u * p.rs + j] = d;\n    coef[3u * p.rs + j] = b;` : ''}
  }
${dx === 'fused' ? `  let pv = ${pivotOut};\n  for (var q = t; q < p.groups; q = q + ${step}u) { let at = q * p.p4 + j; dx[at] = a * act_grad(gr[at], y[at]) + (x[at] - pv) * b + d; }` : ''}`,
  });
}

/**
 * Training statistics in one dispatch (bn_train_stats), one workgroup (or serial invocation) per lane.
 * With `out.y` (see fuseLanePass) the same dispatch normalises into out.y (act, residual) and the
 * normalise parameters are not stored; otherwise they go to out.affine for bn_affine.
 */
export function laneStatistics(geo: Geometry, x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, stats: Tensor, momentum: number, eps: number,
  out: { affine: Tensor } | { y: Tensor; act: ActivationName; residual: Tensor | null }): void {
  const engine = x.engine;
  const s = laneShape(engine, geo);
  const fused = 'y' in out;
  const act = fused ? out.act : 'none';
  const residual = fused ? out.residual : null;
  const ln = lanesOf(geo);
  const name = `${fused ? `bn_train_${act === 'none' ? '' : `${act}_`}${residual ? 'residual_' : ''}` : 'bn_train_stats_'}${shapeName(s)}`;
  // Every compile-time input of the generated WGSL: the lane shape (reduction mode, subgroups,
  // unroll, lane type), whether the normalise pass is fused, its activation and residual (BLOCK is
  // a constant).
  const variant = `${shapeVariant(s)} ${fused ? `fused ${act}${residual ? ' res' : ''}` : 'affine'}`;
  const shader = (): ShaderSpec => {
    const V = vtype(s.width);
    const outBindings: Record<string, BindingDecl> = fused ? { y: readWrite(V), ...(residual ? { res: read(V) } : {}) } : { affine: readWrite(V) };
    return generatedSpec({
      uniforms: { groups: 'u32', p4: 'u32', rs: 'u32', eps: 'f32', momentum: 'f32' },
      bindings: { x: read(V), gamma: read(V), beta: read(V), running_mean: readWrite(V), running_var: readWrite(V), stats: readWrite(V), ...outBindings },
    }, trainStatsWgsl(s, fused, act, !!residual));
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
    dispatch: laneDispatch(s.mode, ln.count, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: (fused ? 7 : 4) * x.size,
    bytes: (fused ? 3 + (residual ? 1 : 0) : 1) * x.byteLength,
  });
}

/**
 * Backward on lanes: the reductions with their finish in one dispatch (bn_train_grad), then dx,
 * both taking the activation's gradient from its output y on the fly.
 */
export function laneBackward(geo: Geometry, g: Tensor, x: Tensor, y: Tensor, gamma: Tensor, beta: Tensor, stats: Tensor, training: boolean, act: ActivationName, fuse: boolean, dest: ParamGradDest): (Tensor | null)[] {
  const engine = x.engine;
  const dgamma = dest.dgamma ?? engine.empty([geo.c], 'f32');
  const dbeta = dest.dbeta ?? engine.empty([geo.c], 'f32');
  const yb = act === 'none' ? g : y;
  const s = laneShape(engine, geo);
  const ln = lanesOf(geo);
  // dx in the reduction's own dispatch (fused; always for scalar lanes, see lanesOf), by
  // bn_backward_dx from stored coefficients, or not at all.
  const dxMode = !x.requiresGrad ? 'none' : fuse ? 'fused' : 'separate';
  const dx = dxMode === 'none' ? null : engine.empty(x.shape, 'f32');
  const coef = dxMode === 'separate' ? engine.empty([4, geo.l], 'f32') : null;
  const name = `${training ? 'bn_train_grad' : 'bn_eval_grad'}${dxMode === 'fused' ? '_dx' : ''}${dxMode === 'fused' && act !== 'none' ? `_${act}` : ''}_${shapeName(s)}`;
  // Every compile-time input of the generated WGSL: the lane shape, training (batch statistics) or
  // inference, what happens to dx, and the activation (its gradient is in the reduction whatever
  // dxMode is).
  const variant = `${shapeVariant(s)} ${training ? 'train' : 'eval'} dx-${dxMode} ${act}`;
  const shader = (): ShaderSpec => {
    const V = vtype(s.width);
    return generatedSpec({
      // n (the values per channel) only scales the training coefficients.
      uniforms: training ? { groups: 'u32', p4: 'u32', rs: 'u32', n: 'f32' } : { groups: 'u32', p4: 'u32', rs: 'u32' },
      // y: the activation's output (g itself without an activation).
      bindings: {
        gr: read(V), x: read(V), y: read(V), stats: read(V), gamma: read(V), dgamma: readWrite(V), dbeta: readWrite(V),
        ...(dxMode === 'fused' ? { dx: readWrite(V) } : dxMode === 'separate' ? { coef: readWrite(V) } : {}),
      },
    }, trainGradWgsl(s, training, dxMode, act));
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
    dispatch: laneDispatch(s.mode, ln.count, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: (dxMode === 'fused' ? 10 : 4) * x.size,
    bytes: (dxMode === 'fused' ? 7 : 3) * x.byteLength,
  });
  if (dx && coef) backwardDx(geo, g, x, coef, dx, act, yb);
  coef?.dispose();
  return [dx, gamma.requiresGrad ? dgamma : null, beta.requiresGrad ? dbeta : null];
}
