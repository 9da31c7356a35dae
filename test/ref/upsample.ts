/** float64 reference for bilinear resize (tests only): PyTorch's upsample_bilinear2d, written out. */

/** PyTorch's scale for an explicit output size, rounded to f32 as PyTorch's float kernels hold it. */
export function refScale(inSize: number, outSize: number, align: boolean): number {
  if (align) return outSize > 1 ? Math.fround((inSize - 1) / (outSize - 1)) : 0;
  return Math.fround(inSize / outSize);
}

/** Source indices i0, i1 and weight of i1 for output `dst` (area_pixel_compute_source_index + guard_index_and_lambda). */
export function refTap(dst: number, inSize: number, outSize: number, align: boolean): [number, number, number] {
  const scale = refScale(inSize, outSize, align);
  const src = align ? scale * dst : Math.max(scale * (dst + 0.5) - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  return [i0, i1, Math.min(Math.max(src - i0, 0), 1)];
}

/** Bilinear resize of NHWC `x` ([n, h, w, c]) to [n, outH, outW, c]. */
export function refResizeBilinear(x: ArrayLike<number>, shape: readonly number[], outH: number, outW: number, align: boolean): Float64Array {
  const [n, h, w, c] = shape as [number, number, number, number];
  const y = new Float64Array(n * outH * outW * c);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < outH; oy++) {
      const [y0, y1, ly] = refTap(oy, h, outH, align);
      for (let ox = 0; ox < outW; ox++) {
        const [x0, x1, lx] = refTap(ox, w, outW, align);
        for (let ch = 0; ch < c; ch++) {
          const at = (yy: number, xx: number) => x[((b * h + yy) * w + xx) * c + ch]!;
          y[((b * outH + oy) * outW + ox) * c + ch] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
        }
      }
    }
  return y;
}

/** The adjoint of refResizeBilinear: g [n, outH, outW, c] scattered back to [n, h, w, c]. */
export function refResizeBilinearBackward(g: ArrayLike<number>, shape: readonly number[], outH: number, outW: number, align: boolean): Float64Array {
  const [n, h, w, c] = shape as [number, number, number, number];
  const dx = new Float64Array(n * h * w * c);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < outH; oy++) {
      const [y0, y1, ly] = refTap(oy, h, outH, align);
      for (let ox = 0; ox < outW; ox++) {
        const [x0, x1, lx] = refTap(ox, w, outW, align);
        for (let ch = 0; ch < c; ch++) {
          const v = g[((b * outH + oy) * outW + ox) * c + ch]!;
          const add = (yy: number, xx: number, wt: number) => (dx[((b * h + yy) * w + xx) * c + ch]! += wt * v);
          add(y0, x0, (1 - ly) * (1 - lx));
          add(y0, x1, (1 - ly) * lx);
          add(y1, x0, ly * (1 - lx));
          add(y1, x1, ly * lx);
        }
      }
    }
  return dx;
}
