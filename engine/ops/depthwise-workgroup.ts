/**
 * Depthwise convolution's forward for real GPUs: the input patch of each workgroup's output tile
 * kept in workgroup memory (forwardWgsl, at the end of this file). depthwise.ts keeps validation,
 * autograd, the backward kernels and the register-tile forward that CPU adapters run; it calls
 * this one where `depthwiseWorkgroupTile` gives a tile.
 */
import type { Engine } from '../engine.js';
import { type Program, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type Epilogue, epiloguePlan } from './epilogue.js';
import { generatedSpec } from './shader.js';
import type { Geometry } from './depthwise.js';


/** A workgroup's outputs: TOH rows x TOW columns x CT channel vectors. */
export interface DepthwiseWorkgroupTile {
  toh: number;
  tow: number;
  ct: number;
}

const pow2AtLeast = (v: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, v)));

/** Input rows (or columns) the outputs of a tile side read. */
const span = (outs: number, k: number, s: number, d: number): number => (outs - 1) * s + (k - 1) * d + 1;

/**
 * The tile, or null for the register kernel: the `depthwise` variant (engine.variants: forced,
 * else workgroup tiles on real GPUs only). 8 channel vectors (32 channels: 128 contiguous
 * bytes of an NHWC pixel) by 8 columns, fewer channels where the layer has fewer (more columns
 * then, 32-64 invocations); as many rows (8 down to 1) as keep the patch within 16 KiB (and the
 * device's limit). Null when one row does not fit (a huge dilated window).
 */
export function depthwiseWorkgroupTile(engine: Engine, g: Geometry): DepthwiseWorkgroupTile | null {
  if (engine.variants.choose('depthwise') !== 'workgroup') return null;
  const ct = Math.min(8, pow2AtLeast(g.c / g.vec));
  const tow = Math.min(32, Math.max(8, 64 / ct));
  const budget = Math.min(16384, engine.limits.maxComputeWorkgroupStorageSize);
  for (let toh = 8; toh >= 1; toh /= 2) {
    const bytes = span(toh, g.kh, g.sh, g.dh) * span(tow, g.kw, g.sw, g.dw) * ct * g.vec * 4;
    if (bytes <= budget) return { toh, tow, ct };
  }
  return null;
}

/** Uniforms of depthwise_wg_forward, in Params order. */
const UNIFORMS = {
  h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32',
  tiles_c: 'u32', tiles_w: 'u32', tiles_h: 'u32', tiles: 'u32',
  pad_h: 'i32', pad_w: 'i32',
  wcv: 'u32', // weight channels per tap, in V units
  wcoff: 'u32', // the first weight channel used, in V units (a channel slice of a layer)
} as const;

/** y = depthwiseConv2d(x, w) (+ bias, + epilogue) with the patch in workgroup memory; y null when the epilogue writes `into`. */
export function depthwiseForwardWorkgroupProgram(engine: Engine, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor | null, epi: Epilogue | null, tile: DepthwiseWorkgroupTile): Program {
  const { toh, tow, ct } = tile;
  const cv = g.c / g.vec;
  const tilesC = Math.ceil(cv / ct);
  const tilesW = Math.ceil(g.wo / tow);
  const tilesH = Math.ceil(g.ho / toh);
  const tiles = g.n * tilesH * tilesW * tilesC;
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.c], y, g.vec, bias);
  const V = g.vec === 4 ? 'vec4<f32>' : 'f32';
  // Every compile-time input of the WGSL: vector width, tile, window (kernel, strides, dilations), epilogue.
  const variant = `v${g.vec} t${toh}x${tow}x${ct} k${g.kh}x${g.kw} s${g.sh}x${g.sw} d${g.dh}x${g.dw} ${ep.variant}`;

  const shader = (): ShaderSpec => {
    const ph = span(toh, g.kh, g.sh, g.dh);
    const pw = span(tow, g.kw, g.sw, g.dw);
    const body: string[] = [`  let pb = tc * ${g.sw * ct}u + cc;`];
    for (let ky = 0; ky < g.kh; ky++) for (let kx = 0; kx < g.kw; kx++) body.push(`  let w${ky}_${kx} = wt[${ky * g.kw + kx}u * p.wcv + p.wcoff + c];`);
    for (let r = 0; r < toh; r++) {
      const terms: string[] = [];
      for (let ky = 0; ky < g.kh; ky++)
        for (let kx = 0; kx < g.kw; kx++) terms.push(`x_patch[pb + ${((r * g.sh + ky * g.dh) * pw + kx * g.dw) * ct}u] * w${ky}_${kx}`);
      body.push(`  var a${r} = ${V}(0.0);`, ...terms.map((term) => `  a${r} = a${r} + ${term};`));
    }
    const epc = ep.code();
    const store = [`  let ch = c * ${g.vec}u; ${epc.setup('ch', 'e')}`, `  let ox = ox0 + tc;`, `  let live = (ox < p.wo) & (c0 + cc < p.cv);`];
    for (let r = 0; r < toh; r++)
      store.push(`  if (live & (oy0 + ${r}u < p.ho)) { let m = (n * p.ho + oy0 + ${r}u) * p.wo + ox; y[${epc.index('m', 'ch')}] = ${epc.apply(`a${r}`, 'm', 'ch', 'e')}; }`);
    return generatedSpec(
      {
        uniforms: { ...UNIFORMS, ...ep.uniforms },
        bindings: { x: read(V), wt: read(V), y: readWrite(V), ...ep.bindings },
      },
      forwardWgsl({
        WG: ct * tow, V, CT: ct, TOW: tow, TOH: toh, SH: g.sh, SW: g.sw, PW: pw, PATCH: ph * pw * ct,
        BODY: body.join('\n'), STORE: store.join('\n'), EP_DECLS: epc.decls,
      }),
    );
  };

  return {
    name: 'depthwise_wg_forward',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, cv, ho: g.ho, wo: g.wo, tiles_c: tilesC, tiles_w: tilesW, tiles_h: tilesH, tiles, pad_h: g.ph, pad_w: g.pw,
      wcv: g.wc / g.vec, wcoff: g.woff / g.vec, ...ep.values,
    },
    bindings: { x, wt: w, y: ep.target, ...ep.tensors },
    dispatch: grid1d(tiles, 1, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * g.n * g.ho * g.wo * g.c * g.kh * g.kw,
    bytes: 4 * (x.size + w.size + g.n * g.ho * g.wo * g.c),
  };
}

/**
 * depthwise_wg_forward, for real GPUs: the input patch of a workgroup's output tile in workgroup
 * memory (the register-tile kernels of depthwise.ts stay the default on CPU adapters, where
 * workgroup memory and barriers are slow). A workgroup of d.WG = CT * TOW invocations owns TOH x
 * TOW output pixels x CT channel vectors (V: vec4<f32> when C % 4 == 0). Its invocations first
 * copy the PH x PW x CT input patch those outputs read, once each, with consecutive invocations on
 * consecutive channel vectors of one pixel (coalesced loads from NHWC rows), padding as zeros;
 * after one barrier each invocation computes a column of TOH outputs of one channel vector from
 * the patch (each patch value is read by up to KH * KW outputs).
 */
function forwardWgsl(d: { WG: number; BODY: string; CT: number; EP_DECLS: string; PATCH: number; PW: number; SH: number; STORE: string; SW: number; TOH: number; TOW: number; V: string }): string {
  return `${d.EP_DECLS}
var<workgroup> x_patch: array<${d.V}, ${d.PATCH}>;

@compute @workgroup_size(${d.WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  // Uniform across the workgroup: returns before the barrier together.
  if (t >= p.tiles) { return; }
  let c0 = (t % p.tiles_c) * ${d.CT}u;
  var rest = t / p.tiles_c;
  let ox0 = (rest % p.tiles_w) * ${d.TOW}u;
  rest = rest / p.tiles_w;
  let oy0 = (rest % p.tiles_h) * ${d.TOH}u;
  let n = rest / p.tiles_h;
  let iy0 = i32(oy0 * ${d.SH}u) - p.pad_h;
  let ix0 = i32(ox0 * ${d.SW}u) - p.pad_w;
  for (var i = li; i < ${d.PATCH}u; i = i + ${d.WG}u) {
    let cc = i % ${d.CT}u;
    let pix = i / ${d.CT}u;
    let iy = iy0 + i32(pix / ${d.PW}u);
    let ix = ix0 + i32(pix % ${d.PW}u);
    let ok = (u32(iy) < p.h) & (u32(ix) < p.w) & (c0 + cc < p.cv);
    x_patch[i] = select(${d.V}(0.0), x[select(0u, ((n * p.h + u32(iy)) * p.w + u32(ix)) * p.cv + c0 + cc, ok)], ok);
  }
  workgroupBarrier();
  let cc = li % ${d.CT}u;
  let tc = li / ${d.CT}u;
  let c = min(c0 + cc, p.cv - 1u);
${d.BODY}
${d.STORE}
}`;
}
