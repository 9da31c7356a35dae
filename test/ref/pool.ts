/** float64 references for pooling over NHWC tensors (tests only), after PyTorch. */

/** [N,H,W,C] -> [N,C] mean over H, W. */
export function refGlobalAvgPool(x: Float64Array, [n, h, w, c]: readonly number[]): Float64Array {
  const out = new Float64Array(n! * c!);
  for (let b = 0; b < n!; b++)
    for (let q = 0; q < h! * w!; q++) for (let k = 0; k < c!; k++) out[b * c! + k] += x[(b * h! * w! + q) * c! + k]!;
  return out.map((v) => v / (h! * w!));
}

/** [N,H,W,C] -> [N,C] max over H, W. */
export function refGlobalMaxPool(x: Float64Array, [n, h, w, c]: readonly number[]): Float64Array {
  const out = new Float64Array(n! * c!).fill(-Infinity);
  for (let b = 0; b < n!; b++)
    for (let q = 0; q < h! * w!; q++) for (let k = 0; k < c!; k++) out[b * c! + k] = Math.max(out[b * c! + k]!, x[(b * h! * w! + q) * c! + k]!);
  return out;
}

/** PyTorch MaxPool2d (ceil_mode false, no dilation) on NHWC data; padding counts as -inf. */
export function refMaxPool2d(
  x: Float64Array,
  [n, h, w, c]: readonly number[],
  [kh, kw]: readonly [number, number],
  [sh, sw]: readonly [number, number],
  [ph, pw]: readonly [number, number],
): { y: Float64Array; shape: number[] } {
  const ho = Math.floor((h! + 2 * ph - kh) / sh) + 1;
  const wo = Math.floor((w! + 2 * pw - kw) / sw) + 1;
  const y = new Float64Array(n! * ho * wo * c!);
  for (let b = 0; b < n!; b++)
    for (let oh = 0; oh < ho; oh++)
      for (let ow = 0; ow < wo; ow++)
        for (let k = 0; k < c!; k++) {
          let best = -Infinity;
          for (let i = 0; i < kh; i++)
            for (let j = 0; j < kw; j++) {
              const ih = oh * sh - ph + i;
              const iw = ow * sw - pw + j;
              if (ih >= 0 && ih < h! && iw >= 0 && iw < w!) best = Math.max(best, x[((b * h! + ih) * w! + iw) * c! + k]!);
            }
          y[((b * ho + oh) * wo + ow) * c! + k] = best;
        }
  return { y, shape: [n!, ho, wo, c!] };
}
