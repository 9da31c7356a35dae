/**
 * Depthwise 2-D convolution (one KH x KW filter per channel), NHWC, weights [KH, KW, C]: the 3x3
 * stride-1 and stride-2 layers of MobileNetV2, and any kernel size, stride, padding and dilation.
 *
 * Kernels (generated at the end of this file) are register-tiled: an invocation owns 4 channels
 * (a vec4, when C % 4 == 0; one channel otherwise) times a block of adjacent outputs (4 x 4 in the forward) that
 * share their input windows, so each input vector loaded feeds several FMAs. The window loops
 * are unrolled here in TypeScript, so a pipeline is compiled per (kernel size, strides,
 * dilations, vec4 or scalar, output tile, fused epilogue: bias or folded BatchNorm, activation,
 * ...); sizes and padding are uniforms. On real GPUs the f32 forward takes the workgroup-memory
 * kernel of depthwise-workgroup.ts instead (depthwiseWorkgroupTile). The input gradient is a
 * gather (no atomics); the filter gradient sums chunks of output rows in parallel and finishes
 * with sumColumns.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape, pairOption } from '../errors.js';
import { type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import { checkFloatOperands, halfTag, loadF32, resultDType, storageType } from './storage.js';
import { sumColumns } from './reduce.js';
import { type Epilogue, checkEpilogue, epilogueAllowsVec4, epiloguePlan, hasEpilogue } from './epilogue.js';
import { WG, generatedSpec, main1d, range } from './shader.js';
import { type KernelFamily, tileFamily } from '../device-common.js';
import { depthwiseForwardWorkgroupProgram, depthwiseWorkgroupTile } from './depthwise-workgroup.js';

export interface DepthwiseOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  /**
   * x holds channels [offset, offset + count) of a wider layer, whose weights [KH, KW, C'] (and
   * bias or epilogue affine) this call reads at that offset. Inference only: one part of a layer
   * computed in channel slices because its input would not fit one binding.
   */
  channels?: [number, number];
}

/**
 * Register tiles, measured on SwiftShader (process CPU time, 3x3, the MobileNetV2 shapes of the
 * commit report): forward 4 rows x 4 columns (8 x 4 ran 1.1-1.3x faster on 1x128x256x96 s2 and
 * 1x64x128x144 s1, but compiled in 1.6-1.8 s against 0.4-0.5 s, per stride and epilogue variant,
 * for a kernel that is 4% of an inference; 2 x 4 compiles in 0.25 s and runs 1.1-1.6x slower than
 * 4 x 4; 1 x 4 is 2.7x slower than 8 x 4); input gradient 4 x 4 pixels, rounded up to multiples of
 * the strides (8 x 8 saved ~10% of the backward but took seconds longer to compile); filter
 * gradient 4 columns per step.
 */
const FWD_TILE_H = 4;
const FWD_TILE_W = 4;
const BWD_INPUT_TILE = 4;
const BWD_FILTER_TILE = 4;

/**
 * Forward tile (output rows x columns per invocation; `strided` for strides above 1 where it
 * differs) and input-gradient tile side.
 */
export interface DepthwiseTiles {
  fwdH: number;
  fwdW: number;
  strided?: [number, number];
  bwdInput: number;
}

/**
 * Tiles by kernel family (engine/device-common.ts). SwiftShader and GPUs: the measurements
 * above. llvmpipe (LLVM compiles the unrolled window slowly; cold Mesa cache, 2 cores, loaded
 * host, 2026-12-06): the 4 x 4 forward took 22.5 s (stride 2) and 7.2 s (stride 1) to compile in
 * a 256x128 inference. 3x3 relu6, compile / run: stride 2 1x64x128x144: 1 x 2 1.2 s / 5.8 ms,
 * 2 x 2 2.7 s / 3.9 ms, 1 x 4 2.3 s / 5.9 ms, 2 x 4 4.6 s / 4.4 ms; stride 1 1x32x64x192:
 * 1 x 2 1.1 s / 8.1 ms, 2 x 2 1.4 s / 6.8 ms, 2 x 4 2.4 s / 4.0 ms. So 2 x 2, and 1 x 2 strided.
 */
const TILES: Record<KernelFamily, DepthwiseTiles> = {
  swiftshader: { fwdH: FWD_TILE_H, fwdW: FWD_TILE_W, bwdInput: BWD_INPUT_TILE },
  gpu: { fwdH: FWD_TILE_H, fwdW: FWD_TILE_W, bwdInput: BWD_INPUT_TILE },
  llvmpipe: { fwdH: 2, fwdW: 2, strided: [1, 2], bwdInput: 2 },
};

/** The engine's tiles: its family's, or the family the `depthwiseTiles` variant names (tests). */
const tilesOf = (engine: Tensor['engine']): DepthwiseTiles => TILES[tileFamily(engine, 'depthwise')];
/**
 * Filter-gradient invocations to aim for: enough to fill a GPU, few enough partials to sum
 * (on SwiftShader 8192 also beat 1024: finer chunks balance the cores better).
 */
const FILTER_GRAD_THREADS = 8192;

/** Everything a depthwise kernel needs to know about one call (depthwise-workgroup.ts reads it too). */
export interface Geometry {
  n: number; h: number; w: number; c: number;
  kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
  ho: number; wo: number;
  /** 4 when C % 4 == 0 (vec4 over channels), else 1. */
  vec: 1 | 4;
  /** Channels of the weights per tap, and the first one used (the `channels` option). */
  wc: number; woff: number;
}

function geometry(x: Tensor, w: Tensor, bias: Tensor | null, opts: DepthwiseOptions): Geometry {
  const op = 'depthwiseConv2d';
  checkOperands(op, x, w, bias);
  // x and w may be f16 (the f16 inference path: no gradient); the bias stays f32.
  checkFloatOperands(op, [x, w]);
  if (bias) check(bias.dtype === 'f32', op, () => `bias ${bias.name} must be f32, got ${bias.dtype}`);
  check(x.rank === 4, op, () => `input ${x.name} must be [N, H, W, C] (rank 4), got ${fmtShape(x.shape)}`);
  check(w.rank === 3, op, () => `weight ${w.name} must be [KH, KW, C] (rank 3), got ${fmtShape(w.shape)}`);
  const [n, h, wd, c] = x.shape as [number, number, number, number];
  const [kh, kw, wc] = w.shape as [number, number, number];
  check(n > 0 && h > 0 && wd > 0 && c > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} has a zero dimension`);
  check(kh > 0 && kw > 0, op, () => `weight ${w.name} ${fmtShape(w.shape)} has a zero kernel size`);
  const [woff, count] = opts.channels ?? [0, wc];
  if (opts.channels) {
    check(Number.isInteger(woff) && woff >= 0 && count === c && woff + c <= wc, op, () =>
      `channels [${woff}, ${count}] must name the ${c} channels of ${x.name} ${fmtShape(x.shape)} inside the ${wc} of weight ${w.name} ${fmtShape(w.shape)}`);
    check(!(x.engine.gradEnabled && (x.requiresGrad || w.requiresGrad)), op, () => `channels has no gradient: use it under engine.noGrad()`);
  } else check(wc === c, op, () => `weight ${w.name} ${fmtShape(w.shape)} must be [KH, KW, ${c}] for input ${x.name} ${fmtShape(x.shape)} with ${c} channels`);
  if (bias) check(bias.rank === 1 && bias.shape[0] === wc, op, () => `bias ${bias.name} must be [${wc}], got ${fmtShape(bias.shape)}`);
  const [sh, sw] = pairOption(op, 'stride', opts.stride, 1, 1);
  const [ph, pw] = pairOption(op, 'padding', opts.padding, 0, 0);
  const [dh, dw] = pairOption(op, 'dilation', opts.dilation, 1, 1);
  const ho = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((wd + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  check(ho > 0 && wo > 0, op, () =>
    `output would be ${ho}x${wo}: input ${x.name} ${fmtShape(x.shape)} is smaller than the dilated kernel ${(kh - 1) * dh + 1}x${(kw - 1) * dw + 1} with padding [${ph}, ${pw}]`);
  return { n, h, w: wd, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, vec: c % 4 === 0 && wc % 4 === 0 && woff % 4 === 0 ? 4 : 1, wc, woff };
}

const vecType = (g: Geometry): string => (g.vec === 4 ? 'vec4<f32>' : 'f32');
const uniqueSorted = (xs: number[]): number[] => [...new Set(xs)].sort((a, b) => a - b);
/** `base + k` for a compile-time k, written so negative k stays valid WGSL. */
const plus = (base: string, k: number): string => (k === 0 ? base : k > 0 ? `${base} + ${k}` : `${base} - ${-k}`);

/**
 * Depthwise convolution: x [N, H, W, C] (NHWC), w [KH, KW, C], bias [C] or null ->
 * [N, Ho, Wo, C] with Ho = floor((H + 2 * padH - dilH * (KH - 1) - 1) / strideH) + 1 (as PyTorch's
 * Conv2d with groups = C). Records autograd for x, w and bias. `epilogue`: as conv2d's (inference
 * only; with `into` the target tensor is returned).
 */
export function depthwiseConv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: DepthwiseOptions = {}, epilogue?: Epilogue | null): Tensor {
  const g = geometry(x, w, bias, opts);
  const inputs = bias ? [x, w, bias] : [x, w];
  // A slice of the channels reads the bias (or affine) from the same offset.
  if (g.woff) epilogue = { ...epilogue, paramOffset: epilogue?.paramOffset ?? g.woff };
  if (hasEpilogue(epilogue)) {
    const op = 'depthwiseConv2d';
    checkEpilogue(op, epilogue, [g.n, g.ho, g.wo, g.c], inputs);
    check(!(bias && epilogue.affine), op, () => `bias ${bias!.name} and an epilogue affine were both given: fold the bias into the affine (bnFold)`);
    return depthwiseForward(x, w, bias, { ...g, vec: epilogueAllowsVec4(epilogue) ? g.vec : 1 }, epilogue);
  }
  const out = depthwiseForward(x, w, bias, g, null);
  return recordOp(out, 'depthwiseConv2d', inputs, (gy, _accumulated, into) => [
    x.requiresGrad ? depthwiseBackwardInput(gy, w, g) : null,
    w.requiresGrad ? depthwiseBackwardFilter(x, gy, g, into[1]) : null,
    bias?.requiresGrad ? sumColumns(gy, undefined, into[2]) : null,
  ]);
}

function depthwiseForward(x: Tensor, w: Tensor, bias: Tensor | null, g: Geometry, epi: Epilogue | null): Tensor {
  const engine = x.engine;
  const out = epi?.into ? null : engine.empty([g.n, g.ho, g.wo, g.c], resultDType(x, w));
  // The workgroup-memory kernel is f32 only: the f16 inference path keeps the register kernel.
  const wgTile = x.dtype === 'f32' && w.dtype === 'f32' ? depthwiseWorkgroupTile(engine, g) : null;
  if (wgTile) {
    engine.run(depthwiseForwardWorkgroupProgram(engine, g, x, w, bias, out, epi, wgTile));
    return out ?? epi!.into!.tensor;
  }
  // Fixed tile sizes, even for images smaller than a tile (the extra outputs are computed and
  // not stored): one pipeline per window geometry instead of one per small image size.
  const tiles = tilesOf(engine);
  const [TH, TW] = (g.sh > 1 || g.sw > 1) && tiles.strided ? tiles.strided : [tiles.fwdH, tiles.fwdW];
  const cv = g.c / g.vec;
  const tilesW = Math.ceil(g.wo / TW);
  const tilesH = Math.ceil(g.ho / TH);
  const threads = g.n * tilesH * tilesW * cv;
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.c], out, g.vec, bias);
  const V = vecType(g);
  // Every compile-time input of the generated WGSL: the vector width, the tile, the window (kernel
  // size, strides, dilations) and the epilogue's layout.
  // size, strides, dilations), the epilogue's layout and the f16 bindings (x and w; y's in the epilogue's).
  const variant = `v${g.vec} t${TH}x${TW} k${g.kh}x${g.kw} s${g.sh}x${g.sw} d${g.dh}x${g.dw} ${ep.variant}${halfTag({ x, w })}`;

  const shader = (): ShaderSpec => {
    // Input row i / column j of the tile window (relative to iy0 / ix0) feeds output row r / column
    // t through tap ky / kx when i = r * SH + ky * DH / j = t * SW + kx * DW; only the rows and
    // columns that some pair reaches are loaded, each once.
    const hits = (tile: number, k: number, st: number, d: number): Map<number, [number, number][]> => {
      const m = new Map<number, [number, number][]>();
      for (let o = 0; o < tile; o++) for (let kk = 0; kk < k; kk++) {
        const at = o * st + kk * d;
        if (!m.has(at)) m.set(at, []);
        m.get(at)!.push([o, kk]);
      }
      return new Map([...m.entries()].sort((p, q) => p[0] - q[0]));
    };
    const rowHits = hits(TH, g.kh, g.sh, g.dh);
    const colHits = hits(TW, g.kw, g.sw, g.dw);
    const body: string[] = [];
    for (let r = 0; r < TH; r++) for (let t = 0; t < TW; t++) body.push(`  var a${r}_${t} = zero;`);
    for (let ky = 0; ky < g.kh; ky++) for (let kx = 0; kx < g.kw; kx++) body.push(`  let w${ky}_${kx} = ${loadF32(w, g.vec, `wt[${ky * g.kw + kx}u * p.wcv + p.wcoff + c]`)};`);
    for (const j of colHits.keys())
      body.push(`  let ok${j} = (${plus('ix0', j)} >= 0) & (${plus('ix0', j)} <= wmax);`, `  let cj${j} = u32(clamp(${plus('ix0', j)}, 0, wmax)) * p.cv;`);
    for (const [i, rs] of rowHits) {
      body.push(`  {`, `    let iy = ${plus('iy0', i)};`, `    let rok = (iy >= 0) & (iy <= hmax);`,
        `    let row = (n * p.h + u32(clamp(iy, 0, hmax))) * p.w * p.cv + c;`);
      for (const [j, cs] of colHits) {
        body.push(`    { let v = select(zero, ${loadF32(x, g.vec, `x[row + cj${j}]`)}, rok & ok${j});`);
        for (const [r, ky] of rs) for (const [t, kx] of cs) body.push(`      a${r}_${t} = a${r}_${t} + v * w${ky}_${kx};`);
        body.push(`    }`);
      }
      body.push(`  }`);
    }
    const epc = ep.code();
    const store: string[] = [`  let ch = c * ${g.vec}u; ${epc.setup('ch', 'e')}`];
    for (let r = 0; r < TH; r++) {
      store.push(`  if (oy0 + ${r}u < p.ho) {`, `    let mrow = (n * p.ho + oy0 + ${r}u) * p.wo + ox0;`);
      for (let t = 0; t < TW; t++) store.push(`    if (ox0 + ${t}u < p.wo) { y[${epc.index(`mrow + ${t}u`, 'ch')}] = ${epc.apply(`a${r}_${t}`, `mrow + ${t}u`, 'ch', 'e')}; }`);
      store.push(`  }`);
    }
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', tiles_w: 'u32', tiles_h: 'u32', pad_h: 'i32', pad_w: 'i32', threads: 'u32',
          wcv: 'u32', // weight channels per tap, in V units
          wcoff: 'u32', // the first weight channel used, in V units (a channel slice of a layer)
          ...ep.uniforms,
        },
        // The output (or the epilogue's target), then the epilogue's: bias or folded BatchNorm, residual...
        bindings: { x: read(storageType(x, g.vec)), wt: read(storageType(w, g.vec)), y: readWrite(storageType(ep.target, g.vec)), ...ep.bindings },
      },
      forwardWgsl({
        V, TW, TH, SW: g.sw, SH: g.sh, BODY: body.join('\n'), STORE: store.join('\n'), EP_DECLS: epc.decls,
      }),
    );
  };
  engine.run({
    name: 'depthwise_forward',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, cv, ho: g.ho, wo: g.wo, tiles_w: tilesW, tiles_h: tilesH, pad_h: g.ph, pad_w: g.pw, threads,
      wcv: g.wc / g.vec, wcoff: g.woff / g.vec, ...ep.values,
    },
    bindings: { x, wt: w, y: ep.target, ...ep.tensors },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * g.n * g.ho * g.wo * g.c * g.kh * g.kw,
    bytes: x.byteLength + w.byteLength + g.n * g.ho * g.wo * g.c * dtypeBytes(ep.target.dtype),
  });
  return ep.target;
}

/**
 * For a tile of `tile` inputs starting where (i + pad) is a multiple of `s`: input o meets
 * output `base + d` through tap k when o - k * dil = d * s. Returns d -> [o, k] pairs.
 */
function gatherTaps(tile: number, k: number, s: number, dil: number): Map<number, [number, number][]> {
  const m = new Map<number, [number, number][]>();
  for (let o = 0; o < tile; o++)
    for (let kk = 0; kk < k; kk++) {
      const num = o - kk * dil;
      if (num % s !== 0) continue;
      const d = num / s;
      if (!m.has(d)) m.set(d, []);
      m.get(d)!.push([o, kk]);
    }
  return new Map([...m.entries()].sort((p, q) => p[0] - q[0]));
}

/** dL/dx: a gather over the outputs each input pixel reached (no atomics). */
function depthwiseBackwardInput(gy: Tensor, w: Tensor, g: Geometry): Tensor {
  const engine = gy.engine;
  const dx = engine.empty([g.n, g.h, g.w, g.c], 'f32');
  // Multiples of the strides, so the tile's phase on the output grid is fixed.
  const side = tilesOf(gy.engine).bwdInput;
  const TH = Math.ceil(side / g.sh) * g.sh;
  const TW = Math.ceil(side / g.sw) * g.sw;
  const cv = g.c / g.vec;
  const phMod = g.ph % g.sh;
  const pwMod = g.pw % g.sw;
  const tilesH = Math.ceil((g.h + phMod) / TH);
  const tilesW = Math.ceil((g.w + pwMod) / TW);
  const threads = g.n * tilesH * tilesW * cv;
  const V = vecType(g);
  // Every compile-time input of the generated WGSL: the vector width, the tile (which follows from
  // the strides) and the window (kernel size, strides, dilations).
  const variant = `v${g.vec} t${TH}x${TW} k${g.kh}x${g.kw} s${g.sh}x${g.sw} d${g.dh}x${g.dw}`;

  const shader = (): ShaderSpec => {
    const rows = gatherTaps(TH, g.kh, g.sh, g.dh);
    const cols = gatherTaps(TW, g.kw, g.sw, g.dw);
    const body: string[] = [];
    for (let r = 0; r < TH; r++) for (let t = 0; t < TW; t++) body.push(`  var a${r}_${t} = zero;`);
    const usedW = new Set<string>();
    for (const rs of rows.values()) for (const [, ky] of rs) for (const cs of cols.values()) for (const [, kx] of cs) usedW.add(`${ky}_${kx}`);
    for (const k of usedW) {
      const [ky, kx] = k.split('_').map(Number) as [number, number];
      body.push(`  let w${k} = wt[${ky * g.kw + kx}u * p.cv + c];`);
    }
    for (const dc of cols.keys()) {
      const i = dc - Math.min(...cols.keys());
      body.push(`  let okc${i} = (${plus('oxb', dc)} >= 0) & (${plus('oxb', dc)} <= womax);`, `  let cc${i} = u32(clamp(${plus('oxb', dc)}, 0, womax)) * p.cv;`);
    }
    for (const [dr, rs] of rows) {
      body.push(`  {`, `    let oy = ${plus('oyb', dr)};`, `    let rok = (oy >= 0) & (oy <= homax);`,
        `    let row = (n * p.ho + u32(clamp(oy, 0, homax))) * p.wo * p.cv + c;`);
      for (const [dc, cs] of cols) {
        const i = dc - Math.min(...cols.keys());
        body.push(`    { let v = select(zero, gy[row + cc${i}], rok & okc${i});`);
        for (const [r, ky] of rs) for (const [t, kx] of cs) body.push(`      a${r}_${t} = a${r}_${t} + v * w${ky}_${kx};`);
        body.push(`    }`);
      }
      body.push(`  }`);
    }
    const store: string[] = [];
    for (let r = 0; r < TH; r++) {
      store.push(`  { let iy = ${plus('iy0', r)}; if ((iy >= 0) & (iy < i32(p.h))) {`, `    let xrow = (n * p.h + u32(iy)) * p.w;`);
      for (let t = 0; t < TW; t++) store.push(`    { let ix = ${plus('ix0', t)}; if ((ix >= 0) & (ix < i32(p.w))) { dx[(xrow + u32(ix)) * p.cv + c] = a${r}_${t}; } }`);
      store.push(`  } }`);
    }
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', tiles_w: 'u32', tiles_h: 'u32',
          pad_hmod: 'u32', pad_wmod: 'u32', // padding modulo the strides: where the first tile starts
          oy_shift: 'i32', ox_shift: 'i32', // (padding - pad_hmod) / stride: the output row (column) of the first tile
          threads: 'u32',
        },
        bindings: { gy: read(V), wt: read(V), dx: readWrite(V) },
      },
      backwardInputWgsl({
        V, TH, TW, TH_OVER_SH: TH / g.sh, TW_OVER_SW: TW / g.sw, BODY: body.join('\n'), STORE: store.join('\n'),
      }),
    );
  };
  engine.run({
    name: 'depthwise_backward_input',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, cv, ho: g.ho, wo: g.wo, tiles_w: tilesW, tiles_h: tilesH, pad_hmod: phMod, pad_wmod: pwMod,
      oy_shift: (g.ph - phMod) / g.sh, ox_shift: (g.pw - pwMod) / g.sw, threads,
    },
    bindings: { gy, wt: w, dx },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * g.n * g.ho * g.wo * g.c * g.kh * g.kw,
    bytes: 4 * (gy.size + w.size + dx.size),
  });
  return dx;
}

/**
 * dL/dw: per-chunk partial sums over output pixels, then a column sum over chunks, into `into`
 * (a tensor of the weight's size, e.g. its optimizer slot) when given.
 */
function depthwiseBackwardFilter(x: Tensor, gy: Tensor, g: Geometry, into: Tensor | null = null): Tensor {
  const engine = x.engine;
  const TW = BWD_FILTER_TILE;
  const cv = g.c / g.vec;
  const rows = g.n * g.ho;
  const chunks = Math.max(1, Math.min(rows, Math.ceil(FILTER_GRAD_THREADS / cv)));
  const rowsPerChunk = Math.ceil(rows / chunks);
  const used = Math.ceil(rows / rowsPerChunk);
  const threads = used * cv;
  const taps = g.kh * g.kw;
  const dw = into ?? engine.empty([g.kh, g.kw, g.c], 'f32');
  const partial = used === 1 ? dw : engine.empty([used, taps * g.c], 'f32');
  const V = vecType(g);
  // Every compile-time input of the generated WGSL: the vector width, the tile, the kernel size
  // and the W-direction stride and dilation (the H-direction ones are uniforms).
  const variant = `v${g.vec} t${TW} k${g.kh}x${g.kw} sw${g.sw} dw${g.dw}`;

  const shader = (): ShaderSpec => {
    const cols = uniqueSorted(Array.from({ length: TW * g.kw }, (_, i) => Math.floor(i / g.kw) * g.sw + (i % g.kw) * g.dw));
    const acc: string[] = [];
    for (let k = 0; k < taps; k++) acc.push(`  var a${k} = zero;`);
    const rowSetup: string[] = [];
    for (let ky = 0; ky < g.kh; ky++)
      rowSetup.push(`    let ry${ky} = iy0 + ${ky} * i32(p.dil_h);`, `    let rok${ky} = (ry${ky} >= 0) & (ry${ky} <= hmax);`,
        `    let xrow${ky} = (n * p.h + u32(clamp(ry${ky}, 0, hmax))) * p.w * p.cv + c;`);
    const body: string[] = [];
    // Output columns past Wo get a zero gradient, so their (clamped) input loads add nothing.
    for (let t = 0; t < TW; t++) body.push(`      let g${t} = select(zero, gy[grow + min(ox0 + ${t}u, p.wo - 1u) * p.cv], ox0 + ${t}u < p.wo);`);
    for (const j of cols)
      body.push(`      let ok${j} = (${plus('ix0', j)} >= 0) & (${plus('ix0', j)} <= wmax);`, `      let cj${j} = u32(clamp(${plus('ix0', j)}, 0, wmax)) * p.cv;`);
    for (let ky = 0; ky < g.kh; ky++)
      for (const j of cols) {
        body.push(`      { let v = select(zero, x[xrow${ky} + cj${j}], rok${ky} & ok${j});`);
        for (let t = 0; t < TW; t++)
          for (let kx = 0; kx < g.kw; kx++) if (t * g.sw + kx * g.dw === j) body.push(`        a${ky * g.kw + kx} = a${ky * g.kw + kx} + v * g${t};`);
        body.push(`      }`);
      }
    const store = range(taps).map((k) => `  partial[(chunk * ${taps}u + ${k}u) * p.cv + c] = a${k};`);
    return generatedSpec(
      {
        uniforms: {
          h: 'u32', w: 'u32', cv: 'u32', ho: 'u32', wo: 'u32', tiles_w: 'u32',
          stride_h: 'u32', dil_h: 'u32', pad_h: 'i32', pad_w: 'i32', rows: 'u32', rows_per_chunk: 'u32', threads: 'u32',
        },
        bindings: { x: read(V), gy: read(V), partial: readWrite(V) },
      },
      backwardFilterWgsl({
        V, TW, SW: g.sw, ACC_DECL: acc.join('\n'), ROW_SETUP: rowSetup.join('\n'), BODY: body.join('\n'), STORE: store.join('\n'),
      }),
    );
  };
  engine.run({
    name: 'depthwise_backward_filter',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, cv, ho: g.ho, wo: g.wo, tiles_w: Math.ceil(g.wo / TW), stride_h: g.sh, dil_h: g.dh, pad_h: g.ph, pad_w: g.pw,
      rows, rows_per_chunk: rowsPerChunk, threads,
    },
    bindings: { x, gy, partial },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * g.n * g.ho * g.wo * g.c * taps,
    bytes: 4 * (x.size + gy.size + partial.size),
  });
  if (partial === dw) return dw;
  // The chunk sums land in dw (it has the weight's shape; sumColumns only needs its size).
  sumColumns(partial, undefined, dw);
  partial.dispose();
  return dw;
}

// ------------------------------------------------------------------ kernels (generated WGSL)
// V is vec4<f32> when C % 4 == 0 (one invocation owns 4 channels and loads them with one vec4
// load) and f32 otherwise; `cv` is C / 4 or C accordingly. Loops over the kernel window and the
// register tile are fully unrolled by the functions above, because SwiftShader pays ~10 ns per
// loop iteration and keeps private values in registers only at constant indices. The window
// structure (kernel size, strides and dilations, tile size) is compiled in, so rows and columns
// shared by the tile are loaded once; sizes and padding are uniforms (the filter gradient also
// takes the H-direction stride and dilation as uniforms). Padding never branches: loads use
// clamped (always valid) addresses and `select` zeroes the values that fall outside the image,
// with bounds tests joined by non-short-circuit `&`.

/**
 * WGSL (a main1d body's first lines): the invocation `id`'s channel vector c, tile column tx, tile
 * row ty and image n, c fastest; the forward and the input gradient tile alike.
 */
const TILE_DECODE = `let c = id % p.cv;
  var rest = id / p.cv;
  let tx = rest % p.tiles_w;
  rest = rest / p.tiles_w;
  let ty = rest % p.tiles_h;
  let n = rest / p.tiles_h;`;

/**
 * depthwise_forward: Invocation (n, tile of TH output rows x TW output columns, channel group c): the tile's outputs
 * share the input rows and columns of their windows, so each loaded input vector feeds up to
 * KH * KW * TH * TW / (window area) FMAs. Strides and dilations are compiled in so that rows and
 * columns shared inside the tile are loaded once.
 * Bias or folded BatchNorm, activation...: the epilogue's helpers (engine/ops/epilogue.ts).
 */
function forwardWgsl(d: { BODY: string; EP_DECLS: string; SH: number; STORE: string; SW: number; TH: number; TW: number; V: string }): string {
  return `${d.EP_DECLS}
${main1d(`${TILE_DECODE}
  let ox0 = tx * ${d.TW}u;
  let oy0 = ty * ${d.TH}u;
  let ix0 = i32(ox0 * ${d.SW}u) - p.pad_w;
  let iy0 = i32(oy0 * ${d.SH}u) - p.pad_h;
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = ${d.V}(0.0);
${d.BODY}
${d.STORE}`, { index: 'id' })}`;
}

/**
 * depthwise_backward_input: dx[n, iy, ix, c] = sum over (ky, kx) of gy[n, oy, ox, c] * w[ky, kx, c] where
 * oy * SH = iy + pad_h - ky * DH and ox * SW = ix + pad_w - kx * DW (both integral, in range).
 * Invocation (n, tile of TH x TW input pixels, c). The tile starts where (iy + pad_h) and
 * (ix + pad_w) are multiples of the strides, so which (pixel, tap) pairs meet an output is known
 * at compile time: no divisibility tests, and stride-2 tiles load only the outputs that
 * contribute, each once for the whole tile.
 */
function backwardInputWgsl(d: { BODY: string; STORE: string; TH: number; TH_OVER_SH: number; TW: number; TW_OVER_SW: number; V: string }): string {
  return main1d(`${TILE_DECODE}
  // First input row/column of the tile (may be negative: those are computed, never stored).
  let iy0 = i32(ty * ${d.TH}u) - i32(p.pad_hmod);
  let ix0 = i32(tx * ${d.TW}u) - i32(p.pad_wmod);
  // Output row/column reached by the tile's first row/column at tap 0: (i0 + pad) / stride, exact.
  let oyb = i32(ty * ${d.TH_OVER_SH}u) + p.oy_shift;
  let oxb = i32(tx * ${d.TW_OVER_SW}u) + p.ox_shift;
  let homax = i32(p.ho) - 1;
  let womax = i32(p.wo) - 1;
  let zero = ${d.V}(0.0);
${d.BODY}
${d.STORE}`, { index: 'id' });
}

/**
 * depthwise_backward_filter: Partial filter gradients: invocation (chunk, c) sums gy[n, oy, ox, c] * x[n, iy, ix, c] over the
 * output rows [chunk * rows_per_chunk, ...) for every tap at once (KH * KW accumulators), walking
 * each row in tiles of TW output columns so the input window loads are shared by the tile.
 * Output [chunks, KH * KW, cv]; sumColumns finishes the sum over chunks.
 */
function backwardFilterWgsl(d: { ACC_DECL: string; BODY: string; ROW_SETUP: string; STORE: string; SW: number; TW: number; V: string }): string {
  return main1d(`let c = id % p.cv;
  let chunk = id / p.cv;
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = ${d.V}(0.0);
${d.ACC_DECL}
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.rows, r0 + p.rows_per_chunk);
  for (var r = r0; r < r1; r = r + 1u) {
    let n = r / p.ho;
    let oy = r % p.ho;
    let grow = r * p.wo * p.cv + c;
    let iy0 = i32(oy * p.stride_h) - p.pad_h;
${d.ROW_SETUP}
    for (var tx = 0u; tx < p.tiles_w; tx = tx + 1u) {
      let ox0 = tx * ${d.TW}u;
      let ix0 = i32(ox0 * ${d.SW}u) - p.pad_w;
${d.BODY}
    }
  }
${d.STORE}`, { index: 'id' });
}
