/**
 * conv2d's forward GEMM shaped for llvmpipe (Mesa lavapipe): one output pixel per invocation, a
 * block of NB output channels per workgroup. The whole kernel (interface and WGSL) lives here.
 *
 * llvmpipe runs the invocations of a workgroup as the SIMD lanes of one vector (8 x f32 with
 * AVX2) and keeps NIR's divergence analysis: a storage load whose address is the same for every
 * lane (it depends only on workgroup_id, uniforms, loop counters and constants) is emitted as one
 * scalar load broadcast to the lanes, while a load whose address differs per lane becomes a
 * (masked) gather, or a per-lane loop of scalar loads with bounds checks
 * (gallivm/lp_bld_nir_soa.c, emit_load_mem). The register tiles of conv2d.ts index both operands
 * by the invocation, so every load there is divergent. Here:
 * - lanes run across output pixels (local_invocation_index), so the input load (a vec4 along
 *   the input channels) is the only divergent load, one per K-step of 4, and feeds NB channels;
 * - the channel block, the tap and the channel step are workgroup-uniform, so each weight load
 *   (vec4 along K of one output channel's OHWI row) is a scalar load broadcast to all lanes.
 * Per K-step of 4: one gather of 4 values per lane, NB uniform vec4 loads, 4*NB vector FMAs.
 *
 * Same uniforms and geometry as conv2d_forward (padding, stride, dilation, groups, input and
 * output channel slices, f16 operands), and the same fused epilogue (epilogue.ts). The stride-1
 * input gradient is the same GEMM of gy, reading w flipped and transposed (lanesInputProgram); the
 * filter gradient runs its lanes across k (lanesFilterProgram). Selected by conv2d.ts's chooseLanes
 * (`engine.prefer.conv2d = 'lanes'`, or the llvmpipe family's default; `conv2dLanesInput`).
 */
import type { Engine } from '../engine.js';
import { type Program, type ScalarType, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import { type Epilogue, epilogueAllowsVec4, epiloguePlan } from './epilogue.js';
import { generatedSpec, lines, range, vtype } from './shader.js';
import { halfTag, loadF32, storageType } from './storage.js';
import { ENABLE_SUBGROUPS } from './subgroup.js';
import type { Geometry } from './conv2d.js';

/**
 * A lanes launch: TM output pixels x NB output channels per invocation, WG invocations per
 * workgroup; with SG > 1 the weights of a K-step are loaded once per subgroup (each of SG lanes
 * loads NB/SG channels' vec4) and handed to every lane by subgroupBroadcast; SG 1 loads them in
 * every lane.
 */
export interface LanesTile {
  lanes: true;
  tm: number;
  nb: number;
  wg: number;
  sg: number;
}

/** True for a lanes tile (as opposed to a register or workgroup-memory tile). */
export const isLanesTile = (t: object): t is LanesTile => 'lanes' in t;

/** 'lanes2x16s8@64': the form used in variants and engine.prefer.conv2dLanes. */
export const formatLanesTile = (t: LanesTile): string => `lanes${t.tm}x${t.nb}s${t.sg}@${t.wg}`;

const pow2 = (v: number): boolean => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;

/** The subgroup size every subgroup of this device has at least (0 without the feature). */
export function minSubgroup(engine: Engine): number {
  if (!engine.features.has('subgroups')) return 0;
  const info = (engine.device as unknown as { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
  return info?.subgroupMinSize ?? 4;
}

/**
 * The tile a text names ('lanes2x16s8@64'), or null when it does not parse or this device cannot
 * run it (a broadcast width above its smallest subgroup).
 */
export function parseLanesTile(engine: Engine, v: string | undefined): LanesTile | null {
  const r = v ? /^lanes(\d+)x(\d+)s(\d+)@(\d+)$/.exec(v) : null;
  if (!r) return null;
  const [tm, nb, sg, wg] = r.slice(1).map(Number) as [number, number, number, number];
  const ok = tm >= 1 && tm <= 8 && pow2(nb) && nb <= 32 && pow2(sg) && sg <= Math.max(1, minSubgroup(engine)) && pow2(wg) && wg >= 8 && wg <= 256 && wg % sg === 0;
  return ok ? { lanes: true, tm, nb, wg, sg } : null;
}

/** The smallest power of two >= v (1 for v <= 1). */
export const pow2AtLeast = (v: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, v)));

/**
 * The entry point of a lanes kernel: `wg` invocations per workgroup, `li` the lane's local index,
 * `sgi` its subgroup invocation id where `sg` > 1 (broadcasts), `t` the flat workgroup index;
 * workgroups at or past `p.${count}` return at once (uniformly: the broadcasts below stay in
 * uniform control flow). `body` is indented by two spaces.
 */
export const lanesMain = (wg: number, sg: number, body: string, count = 'tiles'): string =>
  `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32${sg > 1 ? ', @builtin(subgroup_invocation_id) sgi: u32' : ''}) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.${count}) { return; }
${body}
}`;

/**
 * How NB per-channel operands that are the same for every lane reach the lanes: with SG > 1,
 * lane l of a subgroup loads rows `row(r)` = r * SG + l % SG (r < loads = ceil(NB / SG)) and
 * `value(j)` broadcasts row j's value from lane j % SG of load j / SG; with SG 1 every lane loads
 * all NB rows. `name` is the loaded values' prefix (`${name}_${r}`).
 */
export function broadcastRows(nb: number, sg: number, name: string): { loads: number; row: (r: number) => string; value: (j: number) => string } {
  if (sg <= 1) return { loads: nb, row: (r) => `${r}u`, value: (j) => `${name}_${j}` };
  return {
    loads: Math.ceil(nb / sg),
    row: (r) => `${r * sg}u + sgi % ${sg}u`,
    value: (j) => `subgroupBroadcast(${name}_${Math.floor(j / sg)}, ${j % sg}u)`,
  };
}

/**
 * The default lanes tile of a forward GEMM with `cog` output channels per group and `m` output
 * pixels: 2 pixels x 16 channels per lane (fewer channels when the group has fewer), the weights
 * broadcast across at most 8 lanes, 64 invocations per workgroup (fewer for GEMMs of few pixels,
 * whose workgroups would otherwise be mostly idle lanes).
 */
export function defaultLanesTile(engine: Engine, cog: number, m: number): LanesTile {
  const nb = Math.min(16, pow2AtLeast(cog));
  const sg = Math.min(8, nb, Math.max(1, minSubgroup(engine)));
  const tm = 2;
  const wg = Math.max(8, sg, Math.min(64, pow2AtLeast(Math.ceil(m / tm))));
  return { lanes: true, tm, nb, wg, sg };
}

/** Uniforms of conv2d_forward_lanes, in Params order. */
const LANES_UNIFORMS = {
  m: 'u32', howo: 'u32', wo: 'u32', h: 'u32', w: 'u32',
  ci_v: 'u32', // channels of x in XT units (row stride of x)
  xoff: 'u32', // first convolved channel of x in XT units (a slice of a concatenation)
  ck: 'u32', // Ci/groups in XT units (inner loop length)
  cog: 'u32', // Co/groups
  kw: 'u32', taps: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
  tiles_m: 'u32', tiles_n: 'u32', tiles: 'u32',
  krow: 'u32', // row stride of w: KH*KW*Ci/groups in XT units; flipped, in elements (KH*KW*cog here = w's KH*KW*Ci/groups)
  n_fast: 'u32', // 1: channel blocks vary fastest, 0: pixel blocks do
  woff: 'u32', // first weight row (a slice of the output channels)
} as const satisfies Record<string, ScalarType>;

/** The flipped kernel's: no output-channel slice (an input gradient has none). */
const { woff: _woff, ...FLIPPED_UNIFORMS } = LANES_UNIFORMS;

/** The forward program. `nFast` is conv2d.ts's channelsFastest (tile order), `flops` its count. */
export function lanesForwardProgram(engine: Engine, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor | null, epi: Epilogue | null,
  tile: LanesTile, nFast: number, flops: number): Program {
  return lanesGemmProgram(engine, g, x, w, bias, y, epi, tile, nFast, flops, false, false);
}

/**
 * The input gradient of a stride-1 convolution (geometry `g`, weights `w` [Co, KH, KW, Ci/groups]
 * as the forward has them), written into dx or added into it (`accumulate`: the gradient gathered
 * so far), or null where inputGradAsForward does not hold. It is a lanes forward convolution of
 * gy with the window flipped and the weights transposed, wT[g*cig + ci, kh, kw, co] =
 * w[g*cog + co, KH-1-kh, KW-1-kw, ci], which the kernel reads from w itself (`flipped`, see
 * lanesGemmProgram): no flipped copy, no extra dispatch.
 */
export function lanesInputProgram(engine: Engine, g: Geometry, gy: Tensor, w: Tensor, dx: Tensor, tile: LanesTile, nFast: number, flops: number, accumulate: boolean): Program | null {
  const gt = inputGradAsForward(g);
  return gt && lanesGemmProgram(engine, gt, gy, w, null, dx, null, tile, nFast, flops, accumulate, true);
}

/**
 * The lanes GEMM of lanesForwardProgram and lanesInputProgram: a forward convolution of x with
 * weights w, or, `flipped`, with the flipped transpose of w (x is then gy and `g` the
 * inputGradAsForward geometry, whose output channels are w's input channels).
 *
 * Flipped, the weight vector of a K-step (4 of the forward's input channels = 4 of w's output
 * channels, for one of w's input channels and the mirrored tap) is a column of w, KH*KW*Ci/groups
 * apart: each lane loads its 4 components as scalars. On llvmpipe that costs what the forward's
 * vec4 load does (a storage load whose address varies per lane is a per-lane loop over its
 * components, either way), and the broadcasts are the same.
 */
function lanesGemmProgram(engine: Engine, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor | null, epi: Epilogue | null,
  tile: LanesTile, nFast: number, flops: number, accumulate: boolean, flipped: boolean): Program {
  const vx = g.cig % 4 === 0 && g.xoff % 4 === 0 && g.xstride % 4 === 0 ? 4 : 1;
  // Flipped, w is read as scalars (its vec4 axis is not the K axis).
  const vw = flipped ? 1 : vx;
  const vy = g.cog % 4 === 0 && tile.nb % 4 === 0 && epilogueAllowsVec4(epi) ? 4 : 1;
  const { tm, nb, wg, sg } = tile;
  const m = g.n * g.ho * g.wo;
  const tilesM = Math.ceil(m / (wg * tm));
  const tilesN = Math.ceil(g.cog / nb);
  const tiles = tilesM * tilesN * g.groups;
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.co], y, vy as 1 | 4, bias);
  // Every compile-time input of the WGSL: the tile, the vector widths of x and y, the epilogue's
  // layout, the f16 bindings, the weight layout and whether y is added into.
  const variant = `${formatLanesTile(tile)} x${vx} y${vy} ${ep.variant}${halfTag({ x, w })}${flipped ? ' flip' : ''}${accumulate ? ' acc' : ''}`;
  if (accumulate && (epi || bias)) throw new Error('lanesGemmProgram: accumulate takes no epilogue or bias');
  if (flipped && (g.woff || g.xoff)) throw new Error('lanesGemmProgram: flipped weights take no channel slices');

  const shader = (): ShaderSpec => {
    const epc = ep.code();
    const xt = vx === 4 ? 'vec4<f32>' : 'f32';
    const mac = (a: string, b: string): string => (vx === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
    // Weight rows: loaded once per subgroup and broadcast (broadcastRows).
    const { loads, row: wrow, value: weight } = broadcastRows(nb, sg, 'wv');
    const code = `${sg > 1 ? `${ENABLE_SUBGROUPS}\n` : ''}${epc.decls}
${lanesMain(wg, sg, `  let ng = p.tiles / p.tiles_m;
  let n_fast = p.n_fast != 0u;
  let tgn = select(t / p.tiles_m, t % ng, n_fast);
  let mt = select(t % p.tiles_m, t / ng, n_fast);
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * ${nb}u;
  let xg = p.xoff + g * p.ck;
${lines(loads, (r) => flipped
    // The column of w holding channel n0 + .. of this group (w's rows g*ck*VX ..).
    ? `  let wr_${r} = g * p.ck * ${vx}u * p.krow + min(n0 + ${wrow(r)}, p.cog - 1u);`
    : `  let wr_${r} = (p.woff + g * p.cog + min(n0 + ${wrow(r)}, p.cog - 1u)) * p.krow;`)}
  // TM output pixels per lane, WG apart (clamped: the surplus lanes of the last block compute and do not store).
${lines(tm, (i) => `  let mi_${i} = mt * ${wg * tm}u + ${i * wg}u + li;
  let mm_${i} = min(mi_${i}, p.m - 1u); let r_${i} = mm_${i} % p.howo; let xb_${i} = (mm_${i} / p.howo) * p.h;
  let iy_${i} = i32((r_${i} / p.wo) * p.sh) - p.ph; let ix_${i} = i32((r_${i} % p.wo) * p.sw) - p.pw;`)}
${lines(tm, (i) => lines(nb, (j) => `  var acc_${i}_${j} = 0.0;`))}
  for (var tap = 0u; tap < p.taps; tap = tap + 1u) {
    // Taps falling into the padding read a valid address and are multiplied by 0.
    let dy = i32((tap / p.kw) * p.dh);
    let dx = i32((tap % p.kw) * p.dw);
${lines(tm, (i) => `    let yy_${i} = iy_${i} + dy; let xx_${i} = ix_${i} + dx; let ok_${i} = (u32(yy_${i}) < p.h) & (u32(xx_${i}) < p.w);
    let xo_${i} = select(0u, ((xb_${i} + u32(yy_${i})) * p.w + u32(xx_${i})) * p.ci_v + xg, ok_${i}); let xv_${i} = select(0.0, 1.0, ok_${i});`)}
${flipped ? '    // The mirrored tap: (KH-1-kh)*KW + KW-1-kw = taps-1-tap.\n    let wt = (p.taps - 1u - tap) * p.cog;' : '    let wt = tap * p.ck;'}
    for (var c = 0u; c < p.ck; c = c + 1u) {
${flipped ? `      let wc = wt + c * ${vx}u * p.krow;\n${lines(loads, (r) => `      let wv_${r} = ${vtype(vx)}(${range(vx).map((u) => loadF32(w, 1, `ws[wr_${r} + wc${u ? ` + ${u}u * p.krow` : ''}]`)).join(', ')});`)}`
    : lines(loads, (r) => `      let wv_${r} = ${loadF32(w, vx as 1 | 4, `ws[wr_${r} + wt + c]`)};`)}
${lines(tm, (i) => `      let a_${i}: ${xt} = ${loadF32(x, vx as 1 | 4, `xs[xo_${i} + c]`)} * xv_${i};`)}
${lines(nb, (j) => `      { let b = ${weight(j)};${range(tm).map((i) => ` acc_${i}_${j} += ${mac(`a_${i}`, 'b')};`).join('')} }`)}
    }
  }
${lines(nb / vy, (j) => `  let ch_${j} = g * p.cog + min(n0 + ${j * vy}u, p.cog - ${vy}u); ${epc.setup(`ch_${j}`, `e${j}`)}`)}
${lines(tm, (i) => `  if (mi_${i} < p.m) {
${lines(nb / vy, (j) => {
      const v = vy === 4 ? `vec4<f32>(${range(4).map((c) => `acc_${i}_${j * 4 + c}`).join(', ')})` : `acc_${i}_${j}`;
      const at = epc.index(`mi_${i}`, `ch_${j}`);
      return `    if (n0 + ${j * vy}u < p.cog) { ys[${at}] = ${accumulate ? `ys[${at}] + ` : ''}${epc.apply(v, `mi_${i}`, `ch_${j}`, `e${j}`)}; }`;
    })}
  }`)}`)}
`;
    return generatedSpec({
      uniforms: { ...(flipped ? FLIPPED_UNIFORMS : LANES_UNIFORMS), ...ep.uniforms },
      bindings: { xs: read(storageType(x, vx as 1 | 4)), ws: read(storageType(w, vw as 1 | 4)), ys: readWrite(storageType(ep.target, vy as 1 | 4)), ...ep.bindings },
    }, code);
  };

  return {
    // The register kernel's names (profiles and tests count convolutions by name); the variant,
    // which starts with 'lanes', tells them apart.
    name: flipped ? (accumulate ? 'conv2d_backward_input_accumulate' : 'conv2d_backward_input') : 'conv2d_forward',
    variant,
    shader,
    uniforms: {
      m, howo: g.ho * g.wo, wo: g.wo, h: g.h, w: g.w, ci_v: g.xstride / vx, xoff: g.xoff / vx, ck: g.cig / vx, cog: g.cog,
      kw: g.kw, taps: g.kh * g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
      tiles_m: tilesM, tiles_n: tilesN, tiles, krow: flipped ? g.kh * g.kw * g.cog : (g.kh * g.kw * g.cig) / vx, n_fast: nFast, ...(flipped ? {} : { woff: g.woff }),
      ...ep.values,
    },
    bindings: { xs: x, ws: w, ys: ep.target, ...ep.tensors },
    dispatch: grid1d(tiles * wg, wg, engine.limits.maxComputeWorkgroupsPerDimension),
    flops,
    bytes: x.byteLength + w.byteLength + m * g.co * dtypeBytes(ep.target.dtype) * (accumulate ? 2 : 1),
  };
}

/**
 * The geometry of a stride-1 convolution's input gradient as a forward convolution of gy with
 * the flipped, transposed weights (lanesInputProgram), or null where that does not hold (strides, slices, padding wider than
 * the dilated window).
 */
function inputGradAsForward(g: Geometry): Geometry | null {
  const ph = g.dh * (g.kh - 1) - g.ph;
  const pw = g.dw * (g.kw - 1) - g.pw;
  if (g.sh !== 1 || g.sw !== 1 || ph < 0 || pw < 0 || g.xoff !== 0 || g.woff !== 0 || g.xstride !== g.ci) return null;
  return {
    n: g.n, h: g.ho, w: g.wo, ci: g.co, co: g.ci, kh: g.kh, kw: g.kw,
    sh: 1, sw: 1, ph, pw, dh: g.dh, dw: g.dw,
    groups: g.groups, cig: g.cog, cog: g.cig, ho: g.h, wo: g.w, xstride: g.co, xoff: 0, woff: 0,
  };
}

/** Chunks of the pixel reduction of a lanes filter gradient, and pixels per chunk. */
export interface LanesFilterPlan {
  tile: LanesTile;
  /** Vector widths: gy along output channels (va), x and dw along k (vb). */
  va: number;
  vb: number;
  chunks: number;
  chunk: number;
}

/**
 * The filter gradient's lanes plan: each lane owns one k-slot (vb entries of k = (kh, kw, ci)) x
 * NB output channels; at least 16 workgroups over the chunks of pixels (each chunk at least 64
 * pixels), partial sums within 128 MiB.
 */
export function lanesFilterPlan(engine: Engine, g: Geometry, forward: LanesTile): LanesFilterPlan {
  const va = g.cog % 4 === 0 && g.co % 4 === 0 ? 4 : 1;
  const vb = g.cig % 4 === 0 && g.ci % 4 === 0 ? 4 : 1;
  const krow = g.kh * g.kw * g.cig;
  // Lanes across the k-slots: no more invocations than slots (a 1x1 layer of 16 channels has 4).
  const tile = { ...forward, wg: Math.max(8, forward.sg, Math.min(64, pow2AtLeast(Math.ceil(krow / vb)))) };
  const tiles = Math.ceil(krow / vb / tile.wg) * Math.ceil(g.cog / tile.nb) * g.groups;
  const pixels = g.n * g.ho * g.wo;
  const maxBytes = Math.min(128 << 20, engine.limits.maxStorageBufferBindingSize);
  // 16 workgroups keep llvmpipe's threads busy; fewer chunks mean fewer reduction dispatches.
  const want = Math.max(1, Math.min(Math.ceil(16 / tiles), Math.ceil(pixels / 64), Math.floor(maxBytes / (4 * g.co * krow))));
  const chunk = Math.ceil(pixels / want);
  return { tile, va, vb, chunks: Math.ceil(pixels / chunk), chunk };
}

/**
 * Partial filter gradients dw[chunk, co, k] = sum over the chunk's pixels m of gy[m, co] *
 * x_patch[m, k] (k = (kh, kw, ci) as in an OHWI row): lanes across k, NB output channels per
 * lane. At each pixel the NB values of gy are the same for every lane: with SG > 1 each lane of a
 * subgroup loads VA of them and subgroupBroadcast hands them out; the x load is one per lane.
 */
export function lanesFilterProgram(engine: Engine, g: Geometry, plan: LanesFilterPlan, gy: Tensor, x: Tensor, out: Tensor, flops: number): Program {
  const { tile, va, vb, chunks, chunk } = plan;
  const { nb, wg, sg } = tile;
  const krow = g.kh * g.kw * g.cig;
  const slots = krow / vb;
  const tilesK = Math.ceil(slots / wg);
  const tilesN = Math.ceil(g.cog / nb);
  const tiles = tilesK * tilesN * g.groups;
  const variant = `${formatLanesTile(tile)} a${va} b${vb}`;
  const shader = (): ShaderSpec => {
    const bt = vb === 4 ? 'vec4<f32>' : 'f32';
    const at = va === 4 ? 'vec4<f32>' : 'f32';
    // gy loads: with broadcasts lane l loads channels VA*(l % SG) + r*SG*VA ..; without, every lane loads all NB.
    const per = sg > 1 ? sg * va : va;
    const loads = Math.ceil(nb / per);
    const grow = (r: number): string => sg > 1 ? `${r * per}u + (sgi % ${sg}u) * ${va}u` : `${r * va}u`;
    const gval = (j: number): string => {
      const r = Math.floor(j / per);
      const lane = sg > 1 ? Math.floor((j % per) / va) : 0;
      const c = j % va;
      const v = va === 4 ? `gv_${r}.${'xyzw'[c]}` : `gv_${r}`;
      return sg > 1 ? `subgroupBroadcast(${v}, ${lane}u)` : v;
    };
    const code = `${sg > 1 ? `${ENABLE_SUBGROUPS}\n` : ''}
${lanesMain(wg, sg, `  let chunk = t / p.tiles;
  let tt = t % p.tiles;
  let kt = tt % p.tiles_k;
  let tgn = tt / p.tiles_k;
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * ${nb}u;
  // This lane's k-slot: a tap and VB channels of the group (clamped; the surplus lanes do not store).
  let slot = kt * ${wg}u + li;
  let ks = min(slot, p.slots - 1u) * ${vb}u;
  let tap = ks / p.cig;
  let dy = i32((tap / p.kw) * p.dh) - p.ph;
  let dx = i32((tap % p.kw) * p.dw) - p.pw;
  let xc = (g * p.cig + ks % p.cig) / ${vb}u;
${lines(loads, (r) => `  let gc_${r} = (g * p.cog + min(n0 + ${grow(r)}, p.cog - ${va}u)) / ${va}u;`)}
${lines(nb, (j) => `  var acc_${j} = ${bt}(0.0);`)}
  let q0 = chunk * p.chunk;
  let q1 = min(q0 + p.chunk, p.m);
  var ow = q0 % p.wo;
  var oh = (q0 / p.wo) % p.ho;
  var n = q0 / (p.wo * p.ho);
  for (var q = q0; q < q1; q = q + 1u) {
    let yy = i32(oh * p.sh) + dy;
    let xx = i32(ow * p.sw) + dx;
    let ok = (u32(yy) < p.h) & (u32(xx) < p.w);
    let xv: ${bt} = xs[select(0u, ((n * p.h + u32(yy)) * p.w + u32(xx)) * p.ci_v + xc, ok)] * select(0.0, 1.0, ok);
${lines(loads, (r) => `    let gv_${r}: ${at} = gys[q * p.co_v + gc_${r}];`)}
${lines(nb, (j) => `    acc_${j} += ${gval(j)} * xv;`)}
    let wrap_w = ow + 1u == p.wo;
    ow = select(ow + 1u, 0u, wrap_w);
    let oh1 = oh + select(0u, 1u, wrap_w);
    let wrap_h = oh1 == p.ho;
    oh = select(oh1, 0u, wrap_h);
    n = n + select(0u, 1u, wrap_h);
  }
  if (slot < p.slots) {
    let ob = chunk * p.wsize_v + slot;
${lines(nb, (j) => `    if (n0 + ${j}u < p.cog) { dws[ob + (g * p.cog + n0 + ${j}u) * p.krow_v] = acc_${j}; }`)}
  }`, 'total')}
`;
    return generatedSpec({
      uniforms: {
        m: 'u32', ho: 'u32', wo: 'u32', h: 'u32', w: 'u32', ci_v: 'u32', cig: 'u32', cog: 'u32', co_v: 'u32',
        kw: 'u32', sh: 'u32', sw: 'u32', ph: 'i32', pw: 'i32', dh: 'u32', dw: 'u32',
        slots: 'u32', krow_v: 'u32', wsize_v: 'u32', chunk: 'u32', tiles_k: 'u32', tiles_n: 'u32', tiles: 'u32', total: 'u32',
      },
      bindings: { gys: read(at), xs: read(bt), dws: readWrite(bt) },
    }, code);
  };
  return {
    name: 'conv2d_backward_filter', // (the variant starts with 'lanes')
    variant,
    shader,
    uniforms: {
      m: g.n * g.ho * g.wo, ho: g.ho, wo: g.wo, h: g.h, w: g.w, ci_v: g.ci / vb, cig: g.cig, cog: g.cog, co_v: g.co / va,
      kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw,
      slots, krow_v: krow / vb, wsize_v: (g.co * krow) / vb, chunk, tiles_k: tilesK, tiles_n: tilesN, tiles, total: tiles * chunks,
    },
    bindings: { gys: gy, xs: x, dws: out },
    dispatch: grid1d(tiles * chunks * wg, wg, engine.limits.maxComputeWorkgroupsPerDimension),
    flops,
    bytes: (gy.size + x.size + out.size) * 4,
  };
}
