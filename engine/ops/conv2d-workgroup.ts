/**
 * conv2d's three GEMMs (forward, input gradient, filter gradient) as implicit GEMMs with
 * workgroup-memory tiles, for real GPUs (the kernels at the end of this file). The same GEMM
 * decomposition as the register-tile kernels of conv2d.ts, which stay the default on CPU adapters
 * (SwiftShader, llvmpipe: workgroup memory and barriers are slow there, SWIFTSHADER.md); conv2d.ts
 * picks between them (`chooseTile`: the `conv2d` variant of engine.variants, a tuned variant, the adapter family)
 * and keeps validation, autograd and the tuning cases.
 *
 * The transposed convolutions reuse these GEMMs (conv-transpose-workgroup.ts): a transposed
 * convolution's forward is conv2d's input gradient, its input gradient a conv2d forward and its
 * filter gradient conv2d's, each with the weights' two channel axes exchanged (`WeightOrder`).
 *
 * A tile `wg64x64k16t4x4`: a workgroup computes 64 x 64 outputs of the GEMM in K-steps of 16,
 * each invocation a 4 x 4 register micro-tile, so (64/4) * (64/4) = 256 invocations. Sizes are
 * uniforms; the variant holds the tile, the vector widths and the epilogue's layout.
 */
import type { Engine } from '../engine.js';
import { type Program, type ScalarType, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type Epilogue, epiloguePlan } from './epilogue.js';
import { generatedSpec, range, lines, vtype, comp, gcd } from './shader.js';
import type { Conv2dKernel, Geometry } from './conv2d.js';

/**
 * WGSL: the taps of one stride phase of a strided convolution's input gradient, for the input
 * pixel at phase (rh, rw): the taps that hit it are kh = kh0 + i*sth (i < nkh), kw likewise, and
 * they read gy from (qh0, qw0) on. (rh + ph - kh*dh) % sh repeats with period sth, so the first
 * hitting tap, if any, is below sth; ih + ph - kh*dh = nh + sh*jh with nh divisible by sh, so
 * oh = jh + nh / sh exactly. One home for the register kernel (conv2d.ts) and the GEMM (here).
 */
export function phaseTapsWgsl(): string {
  return `  var kh0 = p.kh;
  for (var k = min(p.kh, p.sth); k > 0u; k = k - 1u) {
    let nh = i32(rh) + p.ph - i32((k - 1u) * p.dh);
    if (nh == (nh / i32(p.sh)) * i32(p.sh)) { kh0 = k - 1u; }
  }
  var kw0 = p.kw;
  for (var k = min(p.kw, p.stw); k > 0u; k = k - 1u) {
    let nw = i32(rw) + p.pw - i32((k - 1u) * p.dw);
    if (nw == (nw / i32(p.sw)) * i32(p.sw)) { kw0 = k - 1u; }
  }
  let nkh = select(0u, (p.kh - kh0 + p.sth - 1u) / p.sth, kh0 < p.kh);
  let nkw = select(0u, (p.kw - kw0 + p.stw - 1u) / p.stw, kw0 < p.kw);
  let qh0 = (i32(rh) + p.ph - i32(kh0 * p.dh)) / i32(p.sh);
  let qw0 = (i32(rw) + p.pw - i32(kw0 * p.dw)) / i32(p.sw);`;
}

/** Output tile of a workgroup (bm x bn), K-step (bk), register micro-tile of an invocation (tm x tn). */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

/**
 * How a GEMM indexes the weights [A, KH, KW, B]: 'ohwi' as conv2d's [Co, KH, KW, Ci/groups];
 * 'swapped' with the GEMM's two channel axes exchanged, as a transposed convolution's [Co, KH, KW,
 * Ci] appears to the conv2d GEMM that computes it (groups 1): the forward and input-gradient GEMMs
 * then read B along the other axis, and the filter gradient stores its result transposed.
 */
export type WeightOrder = 'ohwi' | 'swapped';

/** Extra choices of a GEMM launch beyond its geometry; the defaults are conv2d's. */
export interface GemmOptions {
  /** Kernel name (pipeline label, profiles). */
  name?: string;
  weights?: WeightOrder;
}

/** `all` without the fields named in `skip` (uniforms a variant's code does not read). */
function omit<T>(all: Readonly<Record<string, T>>, skip: readonly string[]): Record<string, T> {
  return Object.fromEntries(Object.entries(all).filter(([k]) => !skip.includes(k)));
}

/** True for a workgroup-memory tile (as opposed to conv2d.ts's register tile). */
export const isGemmTile = (t: object): t is GemmTile => 'bm' in t;

/** 'wg64x64k16t4x4': the form stored in engine.tuned and tuning files. */
export const formatGemmTile = (t: GemmTile): string => `wg${t.bm}x${t.bn}k${t.bk}t${t.tm}x${t.tn}`;

const pow2 = (v: number): boolean => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;

/** Invocations per workgroup of a tile. */
const invocations = (t: GemmTile): number => (t.bm / t.tm) * (t.bn / t.tn);

/**
 * Whether the engine can run a tile: powers of two, K-steps that hold whole vec4s, invocations
 * and workgroup memory within the device's limits.
 */
function fits(engine: Engine, t: GemmTile): boolean {
  const { bm, bn, bk, tm, tn } = t;
  if (![bm, bn, bk, tm, tn].every(pow2) || bk < 4 || bk > 32 || tm > 8 || tn > 8 || bm > 128 || bn > 128 || bm < tm || bn < tn) return false;
  const wg = invocations(t);
  return wg >= 32 && wg <= engine.limits.maxComputeInvocationsPerWorkgroup && (bm + bn) * bk * 4 <= engine.limits.maxComputeWorkgroupStorageSize;
}

/** The tile a tuned variant names, if it is one this engine can run; else null. */
export function parseGemmTile(engine: Engine, v: string | undefined): GemmTile | null {
  const r = v ? /^wg(\d+)x(\d+)k(\d+)t(\d+)x(\d+)$/.exec(v) : null;
  if (!r) return null;
  const [bm, bn, bk, tm, tn] = r.slice(1).map(Number) as [number, number, number, number, number];
  const t = { bm, bn, bk, tm, tn };
  return fits(engine, t) ? t : null;
}

/**
 * The tile without measurements: 64 x 64 outputs with 4 x 4 per invocation (256 invocations; each
 * value loaded into workgroup memory feeds 64 multiply-adds), halved on a side the GEMM does not
 * fill (Co/groups of 32 or less, small images), so that fewer invocations idle. Not measured on a
 * GPU yet (issue 23): the autotuner offers the other shapes beside it.
 */
export function defaultGemmTile(_kernel: Conv2dKernel, m: number, n: number): GemmTile {
  return { bm: m > 32 ? 64 : 32, bn: n > 32 ? 64 : 32, bk: 16, tm: 4, tn: 4 };
}

/** Workgroup tiles worth timing (autotune on GPUs), those the engine can run. */
export function gemmCandidates(engine: Engine): string[] {
  const shapes: GemmTile[] = [
    { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
    { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4 },
    { bm: 64, bn: 32, bk: 16, tm: 4, tn: 4 },
    { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
    { bm: 64, bn: 64, bk: 32, tm: 4, tn: 4 },
    { bm: 64, bn: 64, bk: 8, tm: 4, tn: 4 },
  ];
  return shapes.filter((t) => fits(engine, t)).map(formatGemmTile);
}

// ------------------------------------------------------------------ shared code generation

/** The numbers every kernel of the family is written with: sizes of the tile and of its workgroup arrays. */
function tileDefines(t: GemmTile): { BM: number; BN: number; BK: number; WG: number; WGN: number; ACC: number; A_SUB: number; B_SUB: number } {
  return { BM: t.bm, BN: t.bn, BK: t.bk, WG: invocations(t), WGN: t.bn / t.tn, ACC: t.tm * t.tn, A_SUB: t.bm * t.bk, B_SUB: t.bn * t.bk };
}

/**
 * The compute step: for each k of the step, TM values of A and TN of B from workgroup memory, TM x
 * TN multiply-adds. A constant-bound loop over k (GPU compilers unroll it; CPU adapters compile
 * it faster than the unrolled form), the micro-tile unrolled (its accumulators are registers).
 */
function computeStep(t: GemmTile): string {
  const wgm = t.bm / t.tm;
  const wgn = t.bn / t.tn;
  return [
    `    for (var k = 0u; k < ${t.bk}u; k = k + 1u) {`,
    `      let ak = k * ${t.bm}u + ty; let bk = k * ${t.bn}u + tx;`,
    lines(t.tm, (i) => `      let a_${i} = a_sub[ak + ${i * wgm}u];`),
    lines(t.tn, (j) => `      let b_${j} = b_sub[bk + ${j * wgn}u];`),
    lines(t.tm, (i) => lines(t.tn, (j) => `      acc[${i * t.tn + j}] = fma(a_${i}, b_${j}, acc[${i * t.tn + j}]);`)),
    `    }`,
  ].join('\n');
}

/**
 * Load slots: `count` vectors to copy per step, spread over the workgroup's invocations; slot s of
 * invocation li copies vector li + s*WG. `guard` is true when the last slot is not full.
 */
function slots(t: GemmTile, count: number): { n: number; guard: boolean } {
  const wg = invocations(t);
  return { n: Math.ceil(count / wg), guard: count % wg !== 0 };
}

/** Stores a loaded vector `v` of width `vec` into `array` at `index(c)` for each component c. */
const storeVec = (array: string, v: string, vec: number, index: (c: number) => string): string =>
  range(vec).map((c) => `${array}[${index(c)}] = ${comp(v, vec, c)};`).join(' ');

const grid = (engine: Engine, workgroups: number): [number, number] => grid1d(workgroups, 1, engine.limits.maxComputeWorkgroupsPerDimension);

const convFlops = (g: Geometry): number => 2 * g.n * g.ho * g.wo * g.co * g.kh * g.kw * g.cig;

// ------------------------------------------------------------------ forward

/** Uniforms of conv2d_wg_forward, in Params order. */
const FORWARD_UNIFORMS = {
  m: 'u32', // N*Ho*Wo (GEMM rows)
  howo: 'u32', wo: 'u32', h: 'u32', w: 'u32',
  ci_v: 'u32', // channels of x in XT units (row stride of x)
  xoff: 'u32', // first convolved channel of x in XT units (inputChannels)
  ck: 'u32', // Ci/groups in XT units
  cog: 'u32', // Co/groups (computed)
  kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  kt: 'u32', // KH*KW*Ci/groups in XT units: the K extent and the row stride of w
  tiles_m: 'u32', tiles_n: 'u32', tiles: 'u32',
  woff: 'u32', // first weight row (outputChannels)
} as const satisfies Record<string, ScalarType>;

/** y = conv2d(x, w) (+ bias, + epilogue) with workgroup tiles; y null when the epilogue writes `into`. */
export function gemmForwardProgram(engine: Engine, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor | null, epi: Epilogue | null, tile: GemmTile, opts: GemmOptions = {}): Program {
  // vec4 along K as in the register kernel: Ci/groups, the slice offset and the row stride all % 4.
  const vx = g.cig % 4 === 0 && g.xoff % 4 === 0 && g.xstride % 4 === 0 ? 4 : 1;
  // Swapped weights [Ci, KH, KW, Co] (groups 1) are contiguous along N: vec4 there when Co allows.
  const swapped = opts.weights === 'swapped';
  const vw = swapped ? (g.cog % 4 === 0 ? 4 : 1) : vx;
  const skip = swapped ? ['woff'] : [];
  const m = g.n * g.ho * g.wo;
  const tilesM = Math.ceil(m / tile.bm);
  const tilesN = Math.ceil(g.cog / tile.bn);
  const tiles = tilesM * tilesN * g.groups;
  // Scalar stores: an invocation's channels are strided (see the .wgsl), consecutive across invocations.
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.co], y, 1, bias);
  const variant = `${formatGemmTile(tile)} x${vx}${swapped ? ` sw${vw}` : ''} ${ep.variant}`;

  const shader = (): ShaderSpec => {
    const { bm, bn, bk, tm, tn } = tile;
    const bkv = bk / vx;
    const bnv = bn / vw;
    const wg = invocations(tile);
    const sa = slots(tile, bm * bkv);
    const sb = swapped ? slots(tile, bk * bnv) : slots(tile, bn * bkv);
    const xt = vtype(vx);
    const setup = [
      lines(sa.n, (s) =>
        `  let av_${s} = li + ${s * wg}u; let ar_${s} = av_${s} / ${bkv}u; let akq_${s} = av_${s} % ${bkv}u;\n` +
        `  let aok_${s} = (m0 + ar_${s} < p.m)${sa.guard ? ` & (ar_${s} < ${bm}u)` : ''}; let amm_${s} = min(m0 + ar_${s}, p.m - 1u);\n` +
        `  let arr_${s} = amm_${s} % p.howo; let axb_${s} = (amm_${s} / p.howo) * p.h;\n` +
        `  let aiy_${s} = i32((arr_${s} / p.wo) * p.sh) - p.ph; let aix_${s} = i32((arr_${s} % p.wo) * p.sw) - p.pw;`),
      swapped
        ? lines(sb.n, (s) =>
          `  let bv_${s} = li + ${s * wg}u; let bkr_${s} = bv_${s} / ${bnv}u; let bnq_${s} = bv_${s} % ${bnv}u;\n` +
          `  let bok_${s} = (n0 + bnq_${s} * ${vw}u < p.cog)${sb.guard ? ` & (bkr_${s} < ${bk}u)` : ''}; let bnc_${s} = min(n0 + bnq_${s} * ${vw}u, p.cog - ${vw}u) / ${vw}u;`)
        : lines(sb.n, (s) =>
          `  let bv_${s} = li + ${s * wg}u; let bc_${s} = bv_${s} / ${bkv}u; let bkq_${s} = bv_${s} % ${bkv}u;\n` +
          `  let bok_${s} = (n0 + bc_${s} < p.cog)${sb.guard ? ` & (bc_${s} < ${bn}u)` : ''}; let bw_${s} = (p.woff + g * p.cog + min(n0 + bc_${s}, p.cog - 1u)) * p.kt;`),
    ].join('\n');
    // Taps in the padding and K past the end load 0 from a valid address.
    const loadA = (s: number): string => {
      const body =
        `let kk = k0 + akq_${s}; let tap = kk / p.ck; let c = kk - tap * p.ck;\n` +
        `      let y = aiy_${s} + i32((tap / p.kw) * p.dh); let x = aix_${s} + i32((tap % p.kw) * p.dw);\n` +
        `      let ok = aok_${s} & (kk < p.kt) & (u32(y) < p.h) & (u32(x) < p.w);\n` +
        `      let v = select(${xt}(0.0), xs[select(0u, ((axb_${s} + u32(y)) * p.w + u32(x)) * p.ci_v + xg + c, ok)], ok);\n` +
        `      ${storeVec('a_sub', 'v', vx, (c) => `(akq_${s} * ${vx}u + ${c}u) * ${bm}u + ar_${s}`)}`;
      return sa.guard ? `    if (ar_${s} < ${bm}u) { ${body} }` : `    { ${body} }`;
    };
    const loadB = (s: number): string => {
      if (swapped) {
        // B[k = (tap, c)][n] = w[c, tap, n]: row (c * taps + tap) of Co/vw vectors; K in scalars here.
        const body =
          `let ks = k0 * ${vx}u + bkr_${s}; let ck = p.ck * ${vx}u; let tap = ks / ck; let c = ks - tap * ck; let ok = bok_${s} & (ks < p.kt * ${vx}u);\n` +
          `      let v = select(${vtype(vw)}(0.0), ws[select(0u, (c * (p.kt / p.ck) + tap) * (p.cog / ${vw}u) + bnc_${s}, ok)], ok);\n` +
          `      ${storeVec('b_sub', 'v', vw, (c) => `bkr_${s} * ${bn}u + bnq_${s} * ${vw}u + ${c}u`)}`;
        return sb.guard ? `    if (bkr_${s} < ${bk}u) { ${body} }` : `    { ${body} }`;
      }
      const body =
        `let kk = k0 + bkq_${s}; let v = select(${xt}(0.0), ws[bw_${s} + min(kk, p.kt - 1u)], bok_${s} & (kk < p.kt));\n` +
        `      ${storeVec('b_sub', 'v', vx, (c) => `(bkq_${s} * ${vx}u + ${c}u) * ${bn}u + bc_${s}`)}`;
      return sb.guard ? `    if (bc_${s} < ${bn}u) { ${body} }` : `    { ${body} }`;
    };
    const epc = ep.code();
    const wgm = bm / tm;
    const wgn = bn / tn;
    const epilogue = [
      lines(tn, (j) => `  let cn_${j} = n0 + tx + ${j * wgn}u; let ch_${j} = g * p.cog + min(cn_${j}, p.cog - 1u); ${epc.setup(`ch_${j}`, `e${j}`)}`),
      lines(tm, (i) => {
        const stores = range(tn).map((j) => `if (cn_${j} < p.cog) { ys[${epc.index(`m_${i}`, `ch_${j}`)}] = ${epc.apply(`acc[${i * tn + j}]`, `m_${i}`, `ch_${j}`, `e${j}`)}; }`);
        return `  { let m_${i} = m0 + ty + ${i * wgm}u; if (m_${i} < p.m) { ${stores.join(' ')} } }`;
      }),
    ].join('\n');
    return generatedSpec(
      {
        uniforms: { ...omit(FORWARD_UNIFORMS, skip), ...ep.uniforms },
        bindings: { xs: read(xt), ws: read(vtype(vw)), ys: readWrite('f32'), ...ep.bindings },
      },
      forwardWgsl({
        ...tileDefines(tile), BKV: bkv, SETUP: setup, LOAD: [lines(sa.n, loadA), lines(sb.n, loadB)].join('\n'),
        COMPUTE: computeStep(tile), EPILOGUE: epilogue, EP_DECLS: epc.decls,
      }),
    );
  };

  return {
    name: opts.name ?? 'conv2d_wg_forward',
    variant,
    shader,
    uniforms: {
      ...omit({
        m, howo: g.ho * g.wo, wo: g.wo, h: g.h, w: g.w, ci_v: g.xstride / vx, xoff: g.xoff / vx, ck: g.cig / vx, cog: g.cog,
        kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw, kt: (g.kh * g.kw * g.cig) / vx,
        tiles_m: tilesM, tiles_n: tilesN, tiles, woff: g.woff,
      }, skip),
      ...ep.values,
    },
    bindings: { xs: x, ws: w, ys: ep.target, ...ep.tensors },
    dispatch: grid(engine, tiles),
    flops: convFlops(g),
    bytes: (x.size + w.size + m * g.co) * 4,
  };
}

// ------------------------------------------------------------------ grad input

/** Uniforms of conv2d_wg_backward_input, in Params order. */
const INPUT_UNIFORMS = {
  n: 'u32', h: 'u32', w: 'u32',
  hq: 'u32', wq: 'u32', // phase grid: ceil(H / sh) x ceil(W / sw)
  ho: 'u32', wo: 'u32',
  ci: 'u32', // channels of dx (row stride)
  cig: 'u32', // Ci/groups
  cig_v: 'u32', // Ci/groups in BT units
  cog: 'u32', // Co/groups
  ck: 'u32', // Co/groups in AT units
  co_v: 'u32', // Co in AT units (row stride of gy)
  kh: 'u32', kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  wrow_v: 'u32', // KH*KW*Ci/groups in BT units (row stride of w)
  tiles_m: 'u32', tiles_n: 'u32', tiles_phase: 'u32', tiles: 'u32',
  sth: 'u32', stw: 'u32', // tap period: sh / gcd(sh, dh), sw / gcd(sw, dw)
  qsh: 'u32', qsw: 'u32', // oh - jh decreases by sth*dh/sh from one hitting tap to the next
} as const satisfies Record<string, ScalarType>;

/**
 * What the input-gradient GEMM stores: conv2d's dx (= or +=), or, for a transposed convolution's
 * forward, an output with bias and epilogue (`out` null when the epilogue writes `into`).
 */
export type GemmInputStore = { accumulate: boolean } | { out: Tensor | null; bias: Tensor | null; epi: Epilogue | null };

/** dx (= or +=) the input gradient of conv2d with workgroup tiles, one stride phase per workgroup. */
export function gemmInputProgram(engine: Engine, g: Geometry, gy: Tensor, w: Tensor, dx: Tensor | null, accumulate: boolean, tile: GemmTile, opts: GemmOptions & { store?: GemmInputStore } = {}): Program {
  const swapped = opts.weights === 'swapped';
  const va = g.cog % 4 === 0 ? 4 : 1; // K axis: output channels of the group (gy rows)
  // N axis: input channels of the group (w rows); swapped weights [N, KH, KW, K] are read along K instead.
  const vb = swapped ? va : g.cig % 4 === 0 ? 4 : 1;
  const store = opts.store ?? { accumulate };
  const ep = 'out' in store ? epiloguePlan(store.epi, [g.n, g.h, g.w, g.ci], store.out, 1, store.bias) : null;
  const skip = [...(swapped ? ['wrow_v', 'cig_v', 'cog'] : []), ...(ep ? ['ci'] : [])];
  const hq = Math.ceil(g.h / g.sh);
  const wq = Math.ceil(g.w / g.sw);
  const tilesM = Math.ceil((g.n * hq * wq) / tile.bm);
  const tilesN = Math.ceil(g.cig / tile.bn);
  const tilesPhase = tilesM * tilesN * g.groups;
  const tiles = tilesPhase * g.sh * g.sw;
  const name = opts.name ?? (accumulate ? 'conv2d_wg_backward_input_accumulate' : 'conv2d_wg_backward_input');
  const variant = `${formatGemmTile(tile)} a${va} b${vb}${swapped ? ' sw' : ''}${ep ? ` ${ep.variant}` : ''}`;

  const shader = (): ShaderSpec => {
    const { bm, bn, bk, tm, tn } = tile;
    const bkv = bk / va;
    const bnv = bn / vb;
    const wg = invocations(tile);
    const sa = slots(tile, bm * bkv);
    const sb = swapped ? slots(tile, bn * bkv) : slots(tile, bk * bnv);
    const setup = [
      lines(sa.n, (s) =>
        `  let av_${s} = li + ${s * wg}u; let ar_${s} = av_${s} / ${bkv}u; let akq_${s} = av_${s} % ${bkv}u;\n` +
        `  let aq_${s} = min(m0 + ar_${s}, qm - 1u); let ajw_${s} = aq_${s} % p.wq; let aqq_${s} = aq_${s} / p.wq; let ajh_${s} = aqq_${s} % p.hq;\n` +
        `  let aok_${s} = (m0 + ar_${s} < qm) & (rh + p.sh * ajh_${s} < p.h) & (rw + p.sw * ajw_${s} < p.w)${sa.guard ? ` & (ar_${s} < ${bm}u)` : ''};\n` +
        `  let agb_${s} = (aqq_${s} / p.hq) * p.ho;`),
      swapped
        ? lines(sb.n, (s) =>
          `  let bv_${s} = li + ${s * wg}u; let bc_${s} = bv_${s} / ${bkv}u; let bkq_${s} = bv_${s} % ${bkv}u;\n` +
          `  let bok_${s} = (n0 + bc_${s} < p.cig)${sb.guard ? ` & (bc_${s} < ${bn}u)` : ''}; let bw_${s} = min(n0 + bc_${s}, p.cig - 1u) * p.kh * p.kw;`)
        : lines(sb.n, (s) =>
          `  let bv_${s} = li + ${s * wg}u; let bkr_${s} = bv_${s} / ${bnv}u; let bnq_${s} = bv_${s} % ${bnv}u;\n` +
          `  let bok_${s} = (n0 + bnq_${s} * ${vb}u < p.cig)${sb.guard ? ` & (bkr_${s} < ${bk}u)` : ''}; let bnc_${s} = min(n0 + bnq_${s} * ${vb}u, p.cig - ${vb}u) / ${vb}u;`),
    ].join('\n');
    // K = (hitting tap ti, co): ti = (ih_t, iw_t) over nkh x nkw, A in AT units of co, B per scalar co.
    const loadA = (s: number): string => {
      const body =
        `let kk = k0 + akq_${s}; let ti = kk / p.ck; let c = kk - ti * p.ck;\n` +
        `      let oh = i32(ajh_${s}) + qh0 - i32((ti / nkw) * p.qsh); let ow = i32(ajw_${s}) + qw0 - i32((ti % nkw) * p.qsw);\n` +
        `      let ok = aok_${s} & (kk < kt) & (u32(oh) < p.ho) & (u32(ow) < p.wo);\n` +
        `      let v = select(${vtype(va)}(0.0), gys[select(0u, ((agb_${s} + u32(oh)) * p.wo + u32(ow)) * p.co_v + g * p.ck + c, ok)], ok);\n` +
        `      ${storeVec('a_sub', 'v', va, (c) => `(akq_${s} * ${va}u + ${c}u) * ${bm}u + ar_${s}`)}`;
      return sa.guard ? `    if (ar_${s} < ${bm}u) { ${body} }` : `    { ${body} }`;
    };
    const loadB = (s: number): string => {
      if (swapped) {
        // B[k = (tap, c)][n] = w[n, tap, c] (groups 1): contiguous along K, loaded in A's vectors.
        const body =
          `let kk = k0 + bkq_${s}; let ti = kk / p.ck; let c = kk - ti * p.ck; let kh = kh0 + (ti / nkw) * p.sth; let kw = kw0 + (ti % nkw) * p.stw;\n` +
          `      let ok = bok_${s} & (kk < kt); let v = select(${vtype(va)}(0.0), ws[select(0u, (bw_${s} + kh * p.kw + kw) * p.ck + c, ok)], ok);\n` +
          `      ${storeVec('b_sub', 'v', va, (c) => `(bkq_${s} * ${va}u + ${c}u) * ${bn}u + bc_${s}`)}`;
        return sb.guard ? `    if (bc_${s} < ${bn}u) { ${body} }` : `    { ${body} }`;
      }
      const body =
        `let ks = k0 * ${va}u + bkr_${s}; let ti = ks / p.cog; let co = ks - ti * p.cog;\n` +
        `      let kh = kh0 + (ti / nkw) * p.sth; let kw = kw0 + (ti % nkw) * p.stw; let ok = bok_${s} & (ks < kt * ${va}u);\n` +
        `      let v = select(${vtype(vb)}(0.0), ws[select(0u, (g * p.cog + co) * p.wrow_v + (kh * p.kw + kw) * p.cig_v + bnc_${s}, ok)], ok);\n` +
        `      ${storeVec('b_sub', 'v', vb, (c) => `bkr_${s} * ${bn}u + bnq_${s} * ${vb}u + ${c}u`)}`;
      return sb.guard ? `    if (bkr_${s} < ${bk}u) { ${body} }` : `    { ${body} }`;
    };
    const wgm = bm / tm;
    const wgn = bn / tn;
    // Every dx element has one owner invocation: adding into an existing gradient is a plain read-modify-write.
    const epc = ep?.code();
    const add = 'accumulate' in store && store.accumulate;
    const epilogue = [
      lines(tn, (j) => `  let cn_${j} = n0 + tx + ${j * wgn}u;` + (epc ? ` let ch_${j} = g * p.cig + min(cn_${j}, p.cig - 1u); ${epc.setup(`ch_${j}`, `e${j}`)}` : '')),
      lines(tm, (i) => {
        const stores = range(tn).map((j) => epc
          ? `if (cn_${j} < p.cig) { dxs[${epc.index('px', `ch_${j}`)}] = ${epc.apply(`acc[${i * tn + j}]`, 'px', `ch_${j}`, `e${j}`)}; }`
          : `if (cn_${j} < p.cig) { dxs[o + cn_${j}] = ${add ? `dxs[o + cn_${j}] + ` : ''}acc[${i * tn + j}]; }`);
        const at = epc ? `let px = ((qq / p.hq) * p.h + ih) * p.w + iw;` : `let o = (((qq / p.hq) * p.h + ih) * p.w + iw) * p.ci + g * p.cig;`;
        return `  { let q = m0 + ty + ${i * wgm}u; let qc = min(q, qm - 1u); let jw = qc % p.wq; let qq = qc / p.wq; let ih = rh + p.sh * (qq % p.hq); let iw = rw + p.sw * jw;\n` +
          `    if ((q < qm) & (ih < p.h) & (iw < p.w)) { ${at} ${stores.join(' ')} } }`;
      }),
    ].join('\n');
    return generatedSpec(
      {
        uniforms: { ...omit(INPUT_UNIFORMS, skip), ...ep?.uniforms },
        bindings: { gys: read(vtype(va)), ws: read(vtype(vb)), dxs: readWrite('f32'), ...ep?.bindings },
      },
      backwardInputWgsl({
        ...tileDefines(tile), BKV: bkv, SETUP: setup, LOAD: [lines(sa.n, loadA), lines(sb.n, loadB)].join('\n'), COMPUTE: computeStep(tile), EPILOGUE: epilogue,
        EP_DECLS: epc?.decls ?? '',
      }),
    );
  };

  return {
    name,
    variant,
    shader,
    uniforms: {
      ...omit({
        n: g.n, h: g.h, w: g.w, hq, wq, ho: g.ho, wo: g.wo, ci: g.ci, cig: g.cig, cig_v: g.cig / vb, cog: g.cog, ck: g.cog / va, co_v: g.co / va,
        kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
        wrow_v: (g.kh * g.kw * g.cig) / vb, tiles_m: tilesM, tiles_n: tilesN, tiles_phase: tilesPhase, tiles,
        sth: g.sh / gcd(g.sh, g.dh), stw: g.sw / gcd(g.sw, g.dw), qsh: g.dh / gcd(g.sh, g.dh), qsw: g.dw / gcd(g.sw, g.dw),
      }, skip),
      ...ep?.values,
    },
    bindings: { gys: gy, ws: w, dxs: ep ? ep.target : dx!, ...ep?.tensors },
    dispatch: grid(engine, tiles),
    flops: convFlops(g),
    bytes: (gy.size + w.size + (ep ? g.n * g.h * g.w * g.ci : dx!.size)) * 4,
  };
}

// ------------------------------------------------------------------ grad filter

/** How the filter gradient's reduction over pixels is split: tiles per chunk, chunks, pixels per chunk. */
export interface GemmFilterChunks {
  tilesM: number;
  tilesN: number;
  tiles: number;
  chunks: number;
  chunk: number;
}

/**
 * Chunks of the pixel reduction: enough workgroups to fill a large GPU (about 1024: 132 SMs of an
 * H100 with several resident each), each chunk at least 256 pixels (16 K-steps of 16), partial
 * sums at most 128 MiB.
 */
export function gemmFilterChunks(engine: Engine, g: Geometry, tile: GemmTile): GemmFilterChunks {
  const krow = g.kh * g.kw * g.cig;
  const tilesM = Math.ceil(g.cog / tile.bm);
  const tilesN = Math.ceil(krow / tile.bn);
  const tiles = tilesM * tilesN * g.groups;
  const pixels = g.n * g.ho * g.wo;
  const maxBytes = Math.min(128 << 20, engine.limits.maxStorageBufferBindingSize);
  const want = Math.max(1, Math.min(Math.ceil(1024 / tiles), Math.ceil(pixels / 256), Math.floor(maxBytes / (4 * g.co * krow))));
  const chunk = Math.ceil(pixels / want);
  return { tilesM, tilesN, tiles, chunks: Math.ceil(pixels / chunk), chunk };
}

/** Uniforms of conv2d_wg_backward_filter, in Params order. */
const FILTER_UNIFORMS = {
  m: 'u32', // N*Ho*Wo
  howo: 'u32', wo: 'u32', h: 'u32', w: 'u32',
  ci_v: 'u32', // Ci in BT units (row stride of x)
  cig: 'u32', cog: 'u32',
  co_v: 'u32', // Co in AT units (row stride of gy)
  kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  krow: 'u32', // KH*KW*Ci/groups (row length of dw)
  wsize: 'u32', // Co*KH*KW*Ci/groups (one chunk's partial)
  chunk: 'u32', // pixels per chunk
  tiles_m: 'u32', tiles_n: 'u32', tiles: 'u32',
  total: 'u32', // tiles * chunks
} as const satisfies Record<string, ScalarType>;

/** Partial filter gradients per chunk of pixels (or dw itself with one chunk), workgroup tiles. */
export function gemmFilterProgram(engine: Engine, g: Geometry, plan: GemmFilterChunks, gy: Tensor, x: Tensor, out: Tensor, tile: GemmTile, opts: GemmOptions = {}): Program {
  const swapped = opts.weights === 'swapped';
  const va = g.cog % 4 === 0 ? 4 : 1; // M axis: output channels (gy rows)
  const vb = g.cig % 4 === 0 ? 4 : 1; // N axis: k = (kh, kw, ci), vec4 along ci inside one tap
  const krow = g.kh * g.kw * g.cig;
  const { tilesM, tilesN, tiles, chunks, chunk } = plan;
  const variant = `${formatGemmTile(tile)} a${va} b${vb}${swapped ? ' sw' : ''}`;

  const shader = (): ShaderSpec => {
    const { bm, bn, bk, tm, tn } = tile;
    const bmv = bm / va;
    const bnv = bn / vb;
    const wg = invocations(tile);
    const sa = slots(tile, bk * bmv);
    const sb = slots(tile, bk * bnv);
    const setup = [
      lines(sa.n, (s) =>
        `  let av_${s} = li + ${s * wg}u; let akr_${s} = av_${s} / ${bmv}u; let amq_${s} = av_${s} % ${bmv}u;\n` +
        `  let aok_${s} = (m0 + amq_${s} * ${va}u < p.cog)${sa.guard ? ` & (akr_${s} < ${bk}u)` : ''}; let aga_${s} = (g * p.cog + min(m0 + amq_${s} * ${va}u, p.cog - ${va}u)) / ${va}u;`),
      // Each B column is one (tap, channel) for the whole reduction: its offsets are found once.
      lines(sb.n, (s) =>
        `  let bv_${s} = li + ${s * wg}u; let bkr_${s} = bv_${s} / ${bnv}u; let bnq_${s} = bv_${s} % ${bnv}u;\n` +
        `  let bok_${s} = (n0 + bnq_${s} * ${vb}u < p.krow)${sb.guard ? ` & (bkr_${s} < ${bk}u)` : ''}; let bkc_${s} = min(n0 + bnq_${s} * ${vb}u, p.krow - ${vb}u); let btap_${s} = bkc_${s} / p.cig;\n` +
        `  let bdy_${s} = i32((btap_${s} / p.kw) * p.dh) - p.ph; let bdx_${s} = i32((btap_${s} % p.kw) * p.dw) - p.pw; let bxc_${s} = (g * p.cig + bkc_${s} % p.cig) / ${vb}u;`),
    ].join('\n');
    const loadA = (s: number): string => {
      const body =
        `let q = k0 + akr_${s}; let ok = aok_${s} & (q < q1); let v = select(${vtype(va)}(0.0), gys[select(0u, q * p.co_v + aga_${s}, ok)], ok);\n` +
        `      ${storeVec('a_sub', 'v', va, (c) => `akr_${s} * ${bm}u + amq_${s} * ${va}u + ${c}u`)}`;
      return sa.guard ? `    if (akr_${s} < ${bk}u) { ${body} }` : `    { ${body} }`;
    };
    const loadB = (s: number): string => {
      const body =
        `let q = k0 + bkr_${s}; let qc = min(q, p.m - 1u); let r = qc % p.howo;\n` +
        `      let y = i32((r / p.wo) * p.sh) + bdy_${s}; let x = i32((r % p.wo) * p.sw) + bdx_${s}; let ok = bok_${s} & (q < q1) & (u32(y) < p.h) & (u32(x) < p.w);\n` +
        `      let v = select(${vtype(vb)}(0.0), xs[select(0u, (((qc / p.howo) * p.h + u32(y)) * p.w + u32(x)) * p.ci_v + bxc_${s}, ok)], ok);\n` +
        `      ${storeVec('b_sub', 'v', vb, (c) => `bkr_${s} * ${bn}u + bnq_${s} * ${vb}u + ${c}u`)}`;
      return sb.guard ? `    if (bkr_${s} < ${bk}u) { ${body} }` : `    { ${body} }`;
    };
    const wgm = bm / tm;
    const wgn = bn / tn;
    // Swapped (groups 1): column n = (tap, c) of row co lands at [c, tap, co] of a [K, KH, KW, M] gradient.
    const epilogue = [
      lines(tn, (j) => `  let cn_${j} = n0 + tx + ${j * wgn}u;` + (swapped ? ` let sw_${j} = ((cn_${j} % p.cig) * (p.krow / p.cig) + cn_${j} / p.cig) * p.cog;` : '')),
      lines(tm, (i) => {
        const stores = range(tn).map((j) => `if (cn_${j} < p.krow) { dws[${swapped ? `ob + sw_${j} + co` : `o + cn_${j}`}] = acc[${i * tn + j}]; }`);
        return `  { let co = m0 + ty + ${i * wgm}u; if (co < p.cog) { ${swapped ? '' : 'let o = ob + (g * p.cog + co) * p.krow; '}${stores.join(' ')} } }`;
      }),
    ].join('\n');
    return generatedSpec(
      {
        uniforms: FILTER_UNIFORMS,
        bindings: { gys: read(vtype(va)), xs: read(vtype(vb)), dws: readWrite('f32') },
      },
      backwardFilterWgsl({
        ...tileDefines(tile), SETUP: setup, LOAD: [lines(sa.n, loadA), lines(sb.n, loadB)].join('\n'), COMPUTE: computeStep(tile), EPILOGUE: epilogue,
      }),
    );
  };

  return {
    name: opts.name ?? 'conv2d_wg_backward_filter',
    variant,
    shader,
    uniforms: {
      m: g.n * g.ho * g.wo, howo: g.ho * g.wo, wo: g.wo, h: g.h, w: g.w, ci_v: g.ci / vb, cig: g.cig, cog: g.cog, co_v: g.co / va,
      kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
      krow, wsize: g.co * krow, chunk, tiles_m: tilesM, tiles_n: tilesN, tiles, total: tiles * chunks,
    },
    bindings: { gys: gy, xs: x, dws: out },
    dispatch: grid(engine, tiles * chunks),
    flops: convFlops(g),
    bytes: (gy.size + x.size + out.size) * 4,
  };
}

// ------------------------------------------------------------------ kernels (generated WGSL)
// conv2d's three GEMMs for real GPUs: implicit GEMM with workgroup-memory tiles.
//
// The register-tile kernels of conv2d.ts are shaped for CPU adapters (no workgroup memory, no
// barriers: SWIFTSHADER.md lessons 1-2). On a GPU the opposite holds: a workgroup computes a
// BM x BN output tile; per K-step of BK its invocations copy the BM x BK slice of A and the
// BK x BN slice of B from global memory into workgroup memory once (each element loaded by one
// invocation, vec4 along the contiguous channel axis where the channel count allows), then every
// invocation reads them TM + TN times per k for its TM x TN register micro-tile. Global traffic
// per multiply-add drops from ~2 loads to (1/BN + 1/BM). The loaders (LOAD, generated
// above) differ per GEMM; the compute step and the tile layout are shared.
//
// Layout in workgroup memory: a_sub[k * BM + row], b_sub[k * BN + col]. An invocation (tx, ty)
// owns rows ty + i*WGM and columns tx + j*WGN (strided, not contiguous), so at one k the
// invocations of a warp read consecutive b_sub words (no bank conflicts) and one a_sub word
// (a broadcast), and the stores of the epilogue are coalesced along the channels.
//
// No double buffering: with BK = 16 the two tiles take 8 KiB, and a second copy would halve the
// workgroups resident per SM on 64 KiB-per-SM parts for a latency that the other resident
// workgroups already hide; tuning the tile (engine/tune.ts) is the cheaper lever.
// Out-of-range rows, columns and K entries load as 0 (from a clamped, valid address), so the
// compute step has no bounds checks; the stores are guarded.

/**
 * conv2d_wg_forward: y[m, co] = sum over k = (kh, kw, ci) of x_patch[m, k] * w[co, k]: A = x_patch (M = N*Ho*Wo
 * pixels), B = w^T (N = Co/groups of one group); K is contiguous in both x (NHWC) and w (OHWI).
 * The K loop runs in units of XT (vec4 when Ci/groups allows), BKV of them per step.
 */
function forwardWgsl(d: GemmShell & { BKV: number; BM: number; BN: number; EP_DECLS: string }): string {
  return gemmShellWgsl(d, {
    decls: d.EP_DECLS,
    count: 'tiles',
    head: `  // Pixel tiles vary fastest: the workgroups running at once share one weight tile (in L2).
  let rest = t / p.tiles_m;
  let m0 = (t % p.tiles_m) * ${d.BM}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * ${d.BN}u;
  let xg = p.xoff + g * p.ck;`,
    loop: `var k0 = 0u; k0 < p.kt; k0 = k0 + ${d.BKV}u`,
  });
}

/**
 * conv2d_wg_backward_input: dx[n, ih, iw, ci] = sum over taps and the group's co of gy[n, oh, ow, co] * w[co, kh, kw, ci],
 * one stride phase (ih % sh, iw % sw) per workgroup, as in conv2d.ts's register kernel: the
 * phase fixes which taps hit, so no multiply-add is spent on taps that do not. A = gy gathered
 * (M = input pixels of the phase, K = (hitting tap, co), vec4 along co), B = w (N = Ci/groups,
 * vec4 along ci). The K loop runs in units of A's vector, BKV per step. As a transposed
 * convolution's forward it stores through the epilogue's helpers (EP_DECLS, empty for dx).
 */
function backwardInputWgsl(d: GemmShell & { BKV: number; BM: number; BN: number; EP_DECLS: string }): string {
  return gemmShellWgsl(d, {
    decls: d.EP_DECLS,
    count: 'tiles',
    head: `  let phase = t / p.tiles_phase;
  let rh = phase / p.sw;
  let rw = phase % p.sw;
  let tp = t % p.tiles_phase;
  let rest = tp / p.tiles_m;
  let m0 = (tp % p.tiles_m) * ${d.BM}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * ${d.BN}u;
  let qm = p.n * p.hq * p.wq;
${phaseTapsWgsl()}
  let kt = nkh * nkw * p.ck;`,
    loop: `var k0 = 0u; k0 < kt; k0 = k0 + ${d.BKV}u`,
  });
}

/**
 * conv2d_wg_backward_filter: Partial filter gradients of one chunk of pixels: dw[chunk, co, k] = sum over its pixels q of
 * gy[q, co] * x_patch[q, k]. A = gy^T (M = Co/groups, vec4 along co), B = x_patch (N = (kh, kw,
 * ci), vec4 along ci), K = the chunk's pixels, BK per step; sumColumns adds the chunks.
 */
function backwardFilterWgsl(d: GemmShell & { BK: number; BM: number; BN: number }): string {
  return gemmShellWgsl(d, {
    decls: '',
    count: 'total',
    head: `  let chunk = t / p.tiles;
  let tt = t % p.tiles;
  let rest = tt / p.tiles_m;
  let m0 = (tt % p.tiles_m) * ${d.BM}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * ${d.BN}u;
  let q0 = chunk * p.chunk;
  let q1 = min(p.m, q0 + p.chunk);`,
    loop: `var k0 = q0; k0 < q1; k0 = k0 + ${d.BK}u`,
    tail: '  let ob = chunk * p.wsize;',
  });
}

/** What the generators of the three GEMMs hand their shell (gemmShellWgsl). */
interface GemmShell {
  ACC: number;
  A_SUB: number;
  B_SUB: number;
  COMPUTE: string;
  EPILOGUE: string;
  LOAD: string;
  SETUP: string;
  WG: number;
  WGN: number;
}

/**
 * The shell the three GEMM kernels share: `decls` (the epilogue's helpers), the two workgroup
 * tiles, the entry point, one output tile per workgroup `t` (the early return at p.`count` is
 * uniform across the workgroup, before any barrier), `head` (the kernel's tile decode), the
 * invocation's place in the tile (tx, ty), SETUP, the accumulators, then the K loop (`loop`, the
 * for header) loading both tiles and computing between barriers, `tail` and the EPILOGUE.
 */
function gemmShellWgsl(d: GemmShell, k: { decls: string; count: string; head: string; loop: string; tail?: string }): string {
  return `${k.decls}
var<workgroup> a_sub: array<f32, ${d.A_SUB}>;
var<workgroup> b_sub: array<f32, ${d.B_SUB}>;

@compute @workgroup_size(${d.WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.${k.count}) { return; }
${k.head}
  let tx = li % ${d.WGN}u;
  let ty = li / ${d.WGN}u;
${d.SETUP}
  var acc: array<f32, ${d.ACC}>;
  for (${k.loop}) {
${d.LOAD}
    workgroupBarrier();
${d.COMPUTE}
    workgroupBarrier();
  }
${k.tail ?? ''}
${d.EPILOGUE}
}`;
}
