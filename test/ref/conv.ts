/** float64 reference for conv2d (tests only): NHWC input, OHWI weights, stride/padding/dilation/groups, bias. */

export interface RefConvOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

const pair = (v: number | [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v;

/** Output [N, Ho, Wo, Co] of conv2d, computed directly from the definition in float64. */
export function refConv2d(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  bias: ArrayLike<number> | null,
  opts: RefConvOptions = {},
): { data: Float64Array; shape: [number, number, number, number] } {
  const [n, h, wd, ci] = xShape as [number, number, number, number];
  const [co, kh, kw, cig] = wShape as [number, number, number, number];
  const [sh, sw] = pair(opts.stride, 1);
  const [ph, pw] = pair(opts.padding, 0);
  const [dh, dw] = pair(opts.dilation, 1);
  const groups = opts.groups ?? 1;
  if (cig * groups !== ci || co % groups !== 0) throw new Error(`refConv2d: bad channels Ci ${ci}, Co ${co}, weight Ci ${cig}, groups ${groups}`);
  const cog = co / groups;
  const ho = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((wd + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  if (ho < 1 || wo < 1) throw new Error(`refConv2d: empty output ${ho}x${wo}`);
  const out = new Float64Array(n * ho * wo * co);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < ho; oy++)
      for (let ox = 0; ox < wo; ox++)
        for (let o = 0; o < co; o++) {
          const c0 = Math.floor(o / cog) * cig;
          let s = bias ? bias[o]! : 0;
          for (let ky = 0; ky < kh; ky++) {
            const iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= h) continue;
            for (let kx = 0; kx < kw; kx++) {
              const ix = ox * sw - pw + kx * dw;
              if (ix < 0 || ix >= wd) continue;
              const xo = ((b * h + iy) * wd + ix) * ci + c0;
              const wo_ = ((o * kh + ky) * kw + kx) * cig;
              for (let c = 0; c < cig; c++) s += x[xo + c]! * w[wo_ + c]!;
            }
          }
          out[((b * ho + oy) * wo + ox) * co + o] = s;
        }
  return { data: out, shape: [n, ho, wo, co] };
}
