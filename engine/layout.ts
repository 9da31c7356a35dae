/**
 * CPU layout conversions at the boundary between PyTorch (NCHW activations, OIHW conv weights,
 * (in, out, kH, kW) transposed-conv weights) and the engine (NHWC, OHWI, [KH, KW, C] depthwise,
 * [Co, KH, KW, Ci] transposed). Used when loading and saving weights and images, never per step.
 */

type Floats = Float32Array | Float64Array;

/** Permutes a row-major array: out axis i is input axis perm[i]. */
export function permute<T extends Floats>(data: T, shape: readonly number[], perm: readonly number[]): { data: T; shape: number[] } {
  const rank = shape.length;
  if (perm.length !== rank || [...perm].sort().some((p, i) => p !== i)) throw new Error(`permute: ${JSON.stringify(perm)} is not a permutation of ${rank} axes`);
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new Error(`permute: data has ${data.length} elements, shape [${shape.join(', ')}] needs ${size}`);
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i]!;
  }
  const strides = perm.map((p) => inStrides[p]!);
  const out = new (data.constructor as { new (n: number): T })(size);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < size; o++) {
    let src = 0;
    for (let i = 0; i < rank; i++) src += idx[i]! * strides[i]!;
    out[o] = data[src]!;
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return { data: out, shape: outShape };
}

/** NCHW -> NHWC (activations, images). */
export const nchwToNhwc = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [0, 2, 3, 1]);
/** NHWC -> NCHW. */
export const nhwcToNchw = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [0, 3, 1, 2]);
/** conv2d weight OIHW -> OHWI. */
export const oihwToOhwi = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [0, 2, 3, 1]);
/** conv2d weight OHWI -> OIHW. */
export const ohwiToOihw = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [0, 3, 1, 2]);
/** depthwise weight [C, 1, KH, KW] -> [KH, KW, C]. */
export const depthwiseToHwc = <T extends Floats>(d: T, s: readonly number[]) => permute(d, [s[0]!, s[2]!, s[3]!], [1, 2, 0]);
/** depthwise weight [KH, KW, C] -> [C, 1, KH, KW]. */
export function depthwiseFromHwc<T extends Floats>(d: T, s: readonly number[]): { data: T; shape: number[] } {
  const r = permute(d, s, [2, 0, 1]);
  return { data: r.data, shape: [s[2]!, 1, s[0]!, s[1]!] };
}
/** ConvTranspose2d weight (in, out, kH, kW) -> [out, kH, kW, in]. */
export const convTransposeToInternal = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [1, 2, 3, 0]);
/** [out, kH, kW, in] -> ConvTranspose2d weight (in, out, kH, kW). */
export const convTransposeFromInternal = <T extends Floats>(d: T, s: readonly number[]) => permute(d, s, [3, 0, 1, 2]);
