/**
 * float64 reference for transposed convolution (tests only), written as the scatter that defines
 * it (each input pixel adds x * w into a KH x KW patch of the output, PyTorch's ConvTranspose2d),
 * which is independent of the gather the GPU kernels use. NHWC, weights [Co, KH, KW, Ci].
 */

export interface ConvTransposeGeometry {
  /** [N, H, W, Ci] */
  x: readonly number[];
  /** [Co, KH, KW] */
  k: readonly number[];
  stride: readonly [number, number];
  padding: readonly [number, number];
  outputPadding: readonly [number, number];
}

/** Output shape [N, Ho, Wo, Co]. */
export function convTransposeOutShape(g: ConvTransposeGeometry): number[] {
  const [n, h, w] = g.x as [number, number, number, number];
  const [co, kh, kw] = g.k as [number, number, number];
  return [n, (h - 1) * g.stride[0] - 2 * g.padding[0] + kh + g.outputPadding[0], (w - 1) * g.stride[1] - 2 * g.padding[1] + kw + g.outputPadding[1], co];
}

/** Calls fn(outIndex, inIndex, weightIndex) for every (input, tap, ci, co) that lands inside the output. */
function forEachScatter(g: ConvTransposeGeometry, fn: (o: number, i: number, k: number) => void): void {
  const [n, h, w, ci] = g.x as [number, number, number, number];
  const [co, kh, kw] = g.k as [number, number, number];
  const [, ho, wo] = convTransposeOutShape(g) as [number, number, number, number];
  for (let b = 0; b < n; b++)
    for (let iy = 0; iy < h; iy++)
      for (let ix = 0; ix < w; ix++)
        for (let ky = 0; ky < kh; ky++) {
          const oy = iy * g.stride[0] - g.padding[0] + ky;
          if (oy < 0 || oy >= ho) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ox = ix * g.stride[1] - g.padding[1] + kx;
            if (ox < 0 || ox >= wo) continue;
            for (let o = 0; o < co; o++)
              for (let c = 0; c < ci; c++)
                fn(((b * ho + oy) * wo + ox) * co + o, ((b * h + iy) * w + ix) * ci + c, ((o * kh + ky) * kw + kx) * ci + c);
          }
        }
}

/** y = convTranspose(x, w) + bias. */
export function refConvTranspose(g: ConvTransposeGeometry, x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null): Float64Array {
  const shape = convTransposeOutShape(g);
  const co = shape[3]!;
  const y = new Float64Array(shape.reduce((a, b) => a * b, 1));
  if (bias) for (let i = 0; i < y.length; i++) y[i] = bias[i % co]!;
  forEachScatter(g, (o, i, k) => (y[o] += x[i]! * w[k]!));
  return y;
}

/** Gradients of sum(gy * y) with respect to x, w and bias. */
export function refConvTransposeBackward(g: ConvTransposeGeometry, x: ArrayLike<number>, w: ArrayLike<number>, gy: ArrayLike<number>): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const co = g.k[0]!;
  const dx = new Float64Array(g.x.reduce((a, b) => a * b, 1));
  const dw = new Float64Array(co * g.k[1]! * g.k[2]! * g.x[3]!);
  const db = new Float64Array(co);
  for (let i = 0; i < gy.length; i++) db[i % co] += gy[i]!;
  forEachScatter(g, (o, i, k) => {
    dx[i] += gy[o]! * w[k]!;
    dw[k] += gy[o]! * x[i]!;
  });
  return { dx, dw, db };
}
