/** float64 reference for conv2d (tests only): NHWC input, OHWI weights, stride/padding/dilation/groups, bias. */

export interface RefConvOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

const pair = (v: number | [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v;

interface Geometry {
  n: number; h: number; w: number; ci: number; co: number; kh: number; kw: number; cig: number; cog: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number; ho: number; wo: number;
}

function geometry(xShape: readonly number[], wShape: readonly number[], opts: RefConvOptions): Geometry {
  const [n, h, w, ci] = xShape as [number, number, number, number];
  const [co, kh, kw, cig] = wShape as [number, number, number, number];
  const [sh, sw] = pair(opts.stride, 1);
  const [ph, pw] = pair(opts.padding, 0);
  const [dh, dw] = pair(opts.dilation, 1);
  const groups = opts.groups ?? 1;
  if (cig * groups !== ci || co % groups !== 0) throw new Error(`refConv2d: bad channels Ci ${ci}, Co ${co}, weight Ci ${cig}, groups ${groups}`);
  const ho = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  if (ho < 1 || wo < 1) throw new Error(`refConv2d: empty output ${ho}x${wo}`);
  return { n, h, w, ci, co, kh, kw, cig, cog: co / groups, sh, sw, ph, pw, dh, dw, ho, wo };
}

/**
 * Calls fn(yIndex, xIndex, wIndex) for every (output element, tap) pair inside the input, in
 * output order then tap order; the group's Ci/groups channels start at xIndex in x and wIndex in w.
 */
function forEachTap(g: Geometry, fn: (yi: number, xi: number, wi: number) => void): void {
  for (let b = 0; b < g.n; b++)
    for (let oy = 0; oy < g.ho; oy++)
      for (let ox = 0; ox < g.wo; ox++)
        for (let o = 0; o < g.co; o++) {
          const c0 = Math.floor(o / g.cog) * g.cig;
          const yi = ((b * g.ho + oy) * g.wo + ox) * g.co + o;
          for (let ky = 0; ky < g.kh; ky++) {
            const iy = oy * g.sh - g.ph + ky * g.dh;
            if (iy < 0 || iy >= g.h) continue;
            for (let kx = 0; kx < g.kw; kx++) {
              const ix = ox * g.sw - g.pw + kx * g.dw;
              if (ix < 0 || ix >= g.w) continue;
              fn(yi, ((b * g.h + iy) * g.w + ix) * g.ci + c0, ((o * g.kh + ky) * g.kw + kx) * g.cig);
            }
          }
        }
}

/** Output [N, Ho, Wo, Co] of conv2d, computed directly from the definition in float64. */
export function refConv2d(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  bias: ArrayLike<number> | null,
  opts: RefConvOptions = {},
): { data: Float64Array; shape: [number, number, number, number] } {
  const g = geometry(xShape, wShape, opts);
  const out = new Float64Array(g.n * g.ho * g.wo * g.co);
  if (bias) for (let i = 0; i < out.length; i++) out[i] = bias[i % g.co]!;
  forEachTap(g, (yi, xi, wi) => {
    for (let c = 0; c < g.cig; c++) out[yi]! += x[xi + c]! * w[wi + c]!;
  });
  return { data: out, shape: [g.n, g.ho, g.wo, g.co] };
}

/** Gradients of sum(gy * conv2d(x, w)) with respect to x and w. */
export function refConv2dBackward(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  gy: ArrayLike<number>,
  opts: RefConvOptions = {},
): { dx: Float64Array; dw: Float64Array } {
  const g = geometry(xShape, wShape, opts);
  const dx = new Float64Array(g.n * g.h * g.w * g.ci);
  const dw = new Float64Array(g.co * g.kh * g.kw * g.cig);
  forEachTap(g, (yi, xi, wi) => {
    for (let c = 0; c < g.cig; c++) {
      dx[xi + c]! += gy[yi]! * w[wi + c]!;
      dw[wi + c]! += gy[yi]! * x[xi + c]!;
    }
  });
  return { dx, dw };
}
