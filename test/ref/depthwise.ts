/**
 * float64 reference for depthwise convolution (tests only): the textbook loops over output pixels
 * and taps, NHWC activations, weights [KH, KW, C], PyTorch's Conv2d(groups = C) semantics.
 */

export interface DepthwiseGeometry {
  /** [N, H, W, C] */
  x: readonly number[];
  /** [KH, KW] */
  k: readonly number[];
  stride: readonly [number, number];
  padding: readonly [number, number];
  dilation: readonly [number, number];
}

/** Output shape [N, Ho, Wo, C]. */
export function depthwiseOutShape(g: DepthwiseGeometry): number[] {
  const [n, h, w, c] = g.x as [number, number, number, number];
  const [kh, kw] = g.k as [number, number];
  const ho = Math.floor((h + 2 * g.padding[0] - g.dilation[0] * (kh - 1) - 1) / g.stride[0]) + 1;
  const wo = Math.floor((w + 2 * g.padding[1] - g.dilation[1] * (kw - 1) - 1) / g.stride[1]) + 1;
  return [n, ho, wo, c];
}

/** Calls fn(outIndex, inIndex, weightIndex, channel) for every (output, tap) pair inside the input. */
function forEachTap(g: DepthwiseGeometry, fn: (o: number, i: number, k: number, c: number) => void): void {
  const [n, h, w, c] = g.x as [number, number, number, number];
  const [kh, kw] = g.k as [number, number];
  const [, ho, wo] = depthwiseOutShape(g) as [number, number, number, number];
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < ho; oy++)
      for (let ox = 0; ox < wo; ox++)
        for (let ky = 0; ky < kh; ky++) {
          const iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0];
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1];
            if (ix < 0 || ix >= w) continue;
            for (let ch = 0; ch < c; ch++)
              fn(((b * ho + oy) * wo + ox) * c + ch, ((b * h + iy) * w + ix) * c + ch, (ky * kw + kx) * c + ch, ch);
          }
        }
}

/** y = depthwise(x, w) + bias. */
export function refDepthwise(g: DepthwiseGeometry, x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null): Float64Array {
  const shape = depthwiseOutShape(g);
  const c = shape[3]!;
  const y = new Float64Array(shape.reduce((a, b) => a * b, 1));
  if (bias) for (let i = 0; i < y.length; i++) y[i] = bias[i % c]!;
  forEachTap(g, (o, i, k) => (y[o] += x[i]! * w[k]!));
  return y;
}

/** Gradients of sum(gy * y) with respect to x, w and bias. */
export function refDepthwiseBackward(g: DepthwiseGeometry, x: ArrayLike<number>, w: ArrayLike<number>, gy: ArrayLike<number>): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const c = g.x[3]!;
  const dx = new Float64Array(g.x.reduce((a, b) => a * b, 1));
  const dw = new Float64Array(g.k[0]! * g.k[1]! * c);
  const db = new Float64Array(c);
  for (let i = 0; i < gy.length; i++) db[i % c] += gy[i]!;
  forEachTap(g, (o, i, k) => {
    dx[i] += gy[o]! * w[k]!;
    dw[k] += gy[o]! * x[i]!;
  });
  return { dx, dw, db };
}
