/**
 * The transposed convolution's forward shaped for llvmpipe (Mesa lavapipe), after conv2d's lanes
 * kernels (conv2d-lanes.ts, bench/RESULTS.md 2026-12-06): one output pixel per SIMD lane, a block
 * of NB output channels per workgroup, the weights of a K-step loaded once per subgroup and handed
 * to every lane by `subgroupBroadcast` with a constant lane (llvmpipe does not scalarise a
 * lane-uniform storage load; a broadcast is an extract and a splat). The whole kernel
 * (interface and WGSL) lives here.
 *
 * As the register kernel of conv-transpose.ts, a workgroup holds outputs of one stride phase
 * (oy mod stride_h, ox mod stride_w), so it visits only the taps that reach them, ceil(K / stride)
 * per axis (2x2 of the x8 head's 15x15), and the tap is the same for every lane: the weight row
 * offset is workgroup-uniform, the input pixel is the lane's own. Channels reduce in vec4s on both
 * operands (x and w zero-padded to a multiple of 4 input channels by conv-transpose.ts).
 * Per lane per K-step of 4 input channels: TM input vec4 loads and ceil(NB / SG) weight vec4
 * loads feed TM * NB dot products (2 x 16, SG 8: 4 loads per 32, the register tile 2x2x8's 12 per 32).
 *
 * Keeps what the register kernel has: bias, the fused epilogue (folded BatchNorm, activation,
 * residual, FCA, a channel slice of a larger output), f16 operands, and the fused argmax of the
 * inference head (class ids; every channel in one lane: NB >= Co). The input gradient is
 * conv2d's lanes forward (transposeInputLanesProgram); the filter gradient keeps the register tiles.
 */
import type { Engine } from '../engine.js';
import { type Program, type ShaderSpec, grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import type { Geometry as ConvGeometry } from './conv2d.js';
import { type LanesTile, broadcastRows, defaultLanesTile, formatLanesTile, lanesForwardProgram, lanesMain, minSubgroup, pow2AtLeast } from './conv2d-lanes.js';
import type { TransposeGeometry } from './conv-transpose-workgroup.js';
import { type Epilogue, epilogueAllowsVec4, epiloguePlan } from './epilogue.js';
import { generatedSpec, lines, range } from './shader.js';
import { halfTag, loadF32, storageType } from './storage.js';
import { ENABLE_SUBGROUPS } from './subgroup.js';


/**
 * Output pixel slots of one stride phase (the phase grid ceil(Ho / stride_h) x ceil(Wo / stride_w)
 * per image; slots past the image in the later phases compute and do not store).
 */
const phasePixels = (g: TransposeGeometry): number => g.n * Math.ceil(g.ho / g.sh) * Math.ceil(g.wo / g.sw);

/**
 * The tile: 2 pixels per lane; NB output channels a multiple of the broadcast width (and of 4):
 * up to 32 channels in one block (the x8 head's 19 in one block of 24, not two of 16, and the
 * fused argmax needs them all in one lane), else 16 as conv2d's lanes; the weights broadcast
 * across at most 8 lanes; 64 invocations a workgroup, fewer where a phase has few pixels.
 */
export function transposeLanesTile(engine: Engine, g: TransposeGeometry): LanesTile {
  const sg = Math.min(8, Math.max(1, minSubgroup(engine)));
  const step = Math.max(4, sg);
  const nb = g.co <= 32 ? Math.ceil(g.co / step) * step : 16;
  const tm = 2;
  const wg = Math.max(8, sg, Math.min(64, pow2AtLeast(Math.ceil(phasePixels(g) / tm))));
  return { lanes: true, tm, nb, wg, sg };
}

/** The operands of a lanes forward: x4 and w4 with vec4 input channels, the flop count. */
export interface TransposeLanesCall {
  x4: Tensor;
  w4: Tensor;
  bias: Tensor | null;
  /** Class ids [N, Ho, Wo] (the fused argmax) instead of values. */
  argmax: boolean;
  flops: number;
}

/**
 * conv_transpose_forward (variant 'lanes…'): y[n, oy, ox, co] = bias[co] + sum of
 * x[n, iy, ix, ci] * w[co, ky, kx, ci] over oy + pad_h - ky = iy * stride_h and
 * ox + pad_w - kx = ix * stride_w, then the epilogue; or, with `argmax`, the first channel of the
 * largest value per pixel. Workgroup t: output channel block (fastest), a block of WG * TM pixel
 * slots of one phase, the phase. Lane pixel slot s = (image, qy, qx) of the phase grid:
 * oy = phy + qy * stride_h, and the tap jy (ky = kyp + jy * stride_h, kyp = (phy + pad_h) mod
 * stride_h) reads input row iy = qy + (phy + pad_h) / stride_h - jy (likewise columns).
 * Out-of-image taps read a valid address and are multiplied by 0.
 */
export function transposeLanesProgram(engine: Engine, g: TransposeGeometry, call: TransposeLanesCall, out: Tensor | null, epi: Epilogue | null, tile: LanesTile): Program {
  const { x4, w4, bias, argmax, flops } = call;
  const { tm, nb, wg, sg } = tile;
  if (argmax && nb < g.co) throw new Error(`transposeLanesProgram: the fused argmax needs every channel in one block (NB ${nb} < ${g.co})`);
  const civ = Math.ceil(g.ci / 4);
  const vy = !argmax && g.co % 4 === 0 && epilogueAllowsVec4(epi) ? 4 : 1;
  const phaseRows = Math.ceil(g.ho / g.sh);
  const phaseCols = Math.ceil(g.wo / g.sw);
  const count = phasePixels(g);
  const tilesM = Math.ceil(count / (wg * tm));
  const tilesN = Math.ceil(g.co / nb);
  const tiles = g.sh * g.sw * tilesM * tilesN;
  // The argmax stores class ids by pixel (no channel index).
  const ep = epiloguePlan(epi, [g.n, g.ho, g.wo, g.co], out, vy, bias, { index: !argmax });
  // Every compile-time input of the WGSL: the tile, the argmax, the output's vector width, the
  // epilogue's layout and the f16 bindings (x4 and w4; the output's is in the epilogue's).
  const variant = `${formatLanesTile(tile)}${argmax ? ' argmax' : ''} y${vy} ${ep.variant}${halfTag({ x4, w4 })}`;

  const shader = (): ShaderSpec => {
    const epc = ep.code();
    const { loads, row, value: weight } = broadcastRows(nb, sg, 'wv');
    const value = (i: number, j: number): string => epc.apply(`acc_${i}_${j}`, `m_${i}`, `ch_${j}`, `e${j}`);
    const store = argmax
      // The first maximum over the channels (strict >, as argmax does).
      ? (i: number): string => `    var best = ${value(i, 0)}; var bi = 0i;
${lines(nb - 1, (k) => `    { let v = ${value(i, k + 1)}; let take = (${k + 1}u < p.co) & (v > best); best = select(best, v, take); bi = select(bi, ${k + 1}i, take); }`)}
    ys[m_${i}] = bi;`
      : (i: number): string => lines(nb / vy, (j) => {
        const v = vy === 4 ? `vec4<f32>(${range(4).map((c) => `acc_${i}_${j * 4 + c}`).join(', ')})` : `acc_${i}_${j}`;
        return `    if (n0 + ${j * vy}u < p.co) { ys[${epc.index(`m_${i}`, `ch_${j}`)}] = ${epc.apply(v, `m_${i}`, `ch_${j}`, `e${j}`)}; }`;
      });
    const code = `${sg > 1 ? `${ENABLE_SUBGROUPS}\n` : ''}${epc.decls}
${lanesMain(wg, sg, `  let n0 = (t % p.tiles_n) * ${nb}u;
  let rest = t / p.tiles_n;
  let mt = rest % p.tiles_m;
  let phase = rest / p.tiles_m;
  let phx = phase % p.sw;
  let phy = phase / p.sw;
  // This phase's taps: ky = kyp + jy * stride_h for jy < nky (likewise kx).
  let kyp = (phy + p.ph) % p.sh;
  let kxp = (phx + p.pw) % p.sw;
  let nky = select(0u, (p.kh - kyp + p.sh - 1u) / p.sh, kyp < p.kh);
  let nkx = select(0u, (p.kw - kxp + p.sw - 1u) / p.sw, kxp < p.kw);
  let iyb = (phy + p.ph) / p.sh;
  let ixb = (phx + p.pw) / p.sw;
${lines(loads, (r) => `  let wr_${r} = min(n0 + ${row(r)}, p.co - 1u) * p.krow;`)}
  // TM pixel slots per lane, WG apart (clamped: the surplus lanes compute and do not store).
${lines(tm, (i) => `  let s_${i} = mt * ${wg * tm}u + ${i * wg}u + li;
  let ss_${i} = min(s_${i}, p.count - 1u); let r_${i} = ss_${i} % p.phase_px; let img_${i} = ss_${i} / p.phase_px;
  let qy_${i} = r_${i} / p.phase_cols; let qx_${i} = r_${i} % p.phase_cols;
  let oy_${i} = phy + qy_${i} * p.sh; let ox_${i} = phx + qx_${i} * p.sw;
  let ok_${i} = (s_${i} < p.count) & (oy_${i} < p.ho) & (ox_${i} < p.wo);
  let m_${i} = (img_${i} * p.ho + oy_${i}) * p.wo + ox_${i};
  let iy_${i} = i32(qy_${i} + iyb); let ix_${i} = i32(qx_${i} + ixb); let xb_${i} = img_${i} * p.h;`)}
${lines(tm, (i) => lines(nb, (j) => `  var acc_${i}_${j} = 0.0;`))}
  let taps = nky * nkx;
  for (var tap = 0u; tap < taps; tap = tap + 1u) {
    let jy = tap / nkx;
    let jx = tap - jy * nkx;
    let wt = ((kyp + jy * p.sh) * p.kw + kxp + jx * p.sw) * p.civ;
${lines(tm, (i) => `    let yy_${i} = iy_${i} - i32(jy); let xx_${i} = ix_${i} - i32(jx); let in_${i} = (u32(yy_${i}) < p.h) & (u32(xx_${i}) < p.w);
    let xo_${i} = select(0u, ((xb_${i} + u32(yy_${i})) * p.w + u32(xx_${i})) * p.civ, in_${i}); let xv_${i} = select(0.0, 1.0, in_${i});`)}
    for (var c = 0u; c < p.civ; c = c + 1u) {
${lines(loads, (r) => `      let wv_${r} = ${loadF32(w4, 4, `ws[wr_${r} + wt + c]`)};`)}
${lines(tm, (i) => `      let a_${i} = ${loadF32(x4, 4, `xs[xo_${i} + c]`)} * xv_${i};`)}
${lines(nb, (j) => `      { let b = ${weight(j)};${range(tm).map((i) => ` acc_${i}_${j} += dot(a_${i}, b);`).join('')} }`)}
    }
  }
${lines(nb / vy, (j) => `  let ch_${j} = min(n0 + ${j * vy}u, p.co - ${vy}u); ${epc.setup(`ch_${j}`, `e${j}`)}`)}
${lines(tm, (i) => `  if (ok_${i}) {
${store(i)}
  }`)}`)}
`;
    return generatedSpec({
      uniforms: {
        h: 'u32', w: 'u32', civ: 'u32', co: 'u32', ho: 'u32', wo: 'u32', kh: 'u32', kw: 'u32',
        sh: 'u32', sw: 'u32', ph: 'u32', pw: 'u32',
        phase_cols: 'u32', // columns of a phase's grid, ceil(Wo / stride_w)
        phase_px: 'u32', // pixel slots of a phase per image
        count: 'u32', // pixel slots of a phase, all images
        krow: 'u32', // KH * KW * civ (row stride of w4, in vec4s)
        tiles_m: 'u32', tiles_n: 'u32', tiles: 'u32',
        ...ep.uniforms,
      },
      bindings: { xs: read(storageType(x4, 4)), ws: read(storageType(w4, 4)), ys: readWrite(argmax ? 'i32' : storageType(ep.target, vy)), ...ep.bindings },
    }, code);
  };

  return {
    // The register kernel's name (profiles and tests count transposed convolutions by name); the
    // variant, which starts with 'lanes', tells them apart.
    name: 'conv_transpose_forward',
    variant,
    shader,
    uniforms: {
      h: g.h, w: g.w, civ, co: g.co, ho: g.ho, wo: g.wo, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw,
      phase_cols: phaseCols, phase_px: phaseRows * phaseCols, count, krow: g.kh * g.kw * civ,
      tiles_m: tilesM, tiles_n: tilesN, tiles, ...ep.values,
    },
    bindings: { xs: x4, ws: w4, ys: ep.target, ...ep.tensors },
    dispatch: grid1d(tiles * wg, wg, engine.limits.maxComputeWorkgroupsPerDimension),
    flops,
    bytes: x4.byteLength + w4.byteLength + g.n * g.ho * g.wo * (argmax ? 1 : g.co) * dtypeBytes(ep.target.dtype),
  };
}

/**
 * The input gradient as conv2d's lanes forward (conv2d-lanes.ts): dx[n, iy, ix, ci] = sum of
 * gy[n, iy * stride_h - pad_h + ky, ix * stride_w - pad_w + kx, co] * w[co, ky, kx, ci] is a
 * strided convolution of gy (channels zero-padded to 4 * cov, as gy4 is) with the weights read as
 * [Ci, KH, KW, 4 * cov] (`wt`, conv-transpose.ts's pack: the register kernel packs too, the other
 * way round, so the dispatch count is the same).
 */
export function transposeInputLanesProgram(engine: Engine, g: TransposeGeometry, gy4: Tensor, wt: Tensor, dx: Tensor, flops: number): Program {
  const cp = 4 * Math.ceil(g.co / 4);
  const cg: ConvGeometry = {
    n: g.n, h: g.ho, w: g.wo, ci: cp, co: g.ci, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, ph: g.ph, pw: g.pw, dh: 1, dw: 1,
    groups: 1, cig: cp, cog: g.ci, ho: g.h, wo: g.w, xstride: cp, xoff: 0, woff: 0,
  };
  // Named as the register kernel it replaces (profiles count it there); the variant starts with 'lanes'.
  return { ...lanesForwardProgram(engine, cg, gy4, wt, null, dx, null, defaultLanesTile(engine, g.ci, g.n * g.h * g.w), 0, flops), name: 'conv_transpose_backward_input' };
}
