/**
 * The f16 inference path's conversions: `cast` between f32 and f16 tensors (the image into the
 * network, f16 features into an f32 head), and `foldHalf`, a weight with its BatchNorm's scale
 * multiplied in f32 and then rounded to f16 (so the rounding happens once, on the weight the
 * kernel really uses, and the f16 conv's epilogue only adds the shift in f32). No autograd: the
 * f16 path is inference only. Each needs the device's `shader-f16` (a FeatureError otherwise).
 */
import halfWgsl from '../../shaders/half.wgsl';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import type { FloatDType } from './storage.js';
import { WG, generatedSpec, main1d, sectionSpec } from './shader.js';


/** `total` values (or vec4s) converted (cast is generated here; fold_half is a section of shaders/half.wgsl). */
const CAST = (s: string, d: string) => ({ uniforms: { total: 'u32' }, bindings: { src: read(s), dst: readWrite(d) } }) as const;
/** `total` weights, `inner` weights per channel step, `channels` scales in row 0 of aff. */
const FOLD_HALF = { uniforms: { total: 'u32', inner: 'u32', channels: 'u32' }, bindings: { src: read('f32'), aff: read('f32'), dst: readWrite('f16') } } as const;

/**
 * `x` converted to `dtype` ('f32' or 'f16'; f32 -> f16 rounds to nearest even, values beyond
 * 65504 become infinite). Returns `x` itself when it already has that dtype. No autograd.
 */
export function cast(x: Tensor, dtype: FloatDType): Tensor {
  const op = 'cast';
  checkOperands(op, x);
  check(x.dtype === 'f32' || x.dtype === 'f16', op, () => `${x.name} must be f32 or f16, got ${x.dtype}`);
  check(dtype === 'f32' || dtype === 'f16', op, () => `the target dtype must be 'f32' or 'f16', got ${JSON.stringify(dtype)}`);
  if (x.dtype === dtype) return x;
  const engine = x.engine;
  engine.requireF16(op);
  check(!(engine.gradEnabled && x.requiresGrad), op, () => `a cast has no gradient (the f16 path is for inference): use engine.noGrad()`);
  const out = engine.empty(x.shape, dtype, `${x.name}.${dtype}`);
  // vec4 where the size allows (f16 vec4s are 8 bytes, so any multiple of 4 elements is aligned).
  const vec = x.size % 4 === 0;
  const total = vec ? x.size / 4 : x.size;
  const type = (d: string): string => (vec ? `vec4<${d}>` : d);
  engine.run({
    name: 'cast',
    variant: `${x.dtype}>${dtype}${vec ? ' v4' : ''}`,
    // dst[i] = D(src[i]), one value (or vec4) per invocation; conversions round to nearest even.
    shader: () => generatedSpec(CAST(type(x.dtype), type(dtype)), main1d(`dst[i] = ${type(dtype)}(src[i]);`, { count: 'total' })),
    uniforms: { total },
    bindings: { src: x, dst: out },
    dispatch: grid1d(total, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: x.byteLength + out.byteLength,
  });
  return out;
}

/**
 * f16(w * scale[c]) for a float32 weight `w` and `affine` [2, >= C] (row 0 the per-channel scale
 * of a folded BatchNorm, see bnFold; null: scale 1, a plain rounding). The channel of element i is
 * (i / inner) % C, C = `channels`: OHWI conv and conv-transpose weights have inner = KH*KW*Ci,
 * depthwise [KH, KW, C] inner = 1. No autograd.
 */
export function foldHalf(w: Tensor, affine: Tensor | null, channels: number, inner: number): Tensor {
  const op = 'foldHalf';
  checkOperands(op, w, affine);
  check(w.dtype === 'f32', op, () => `weight ${w.name} must be f32, got ${w.dtype}`);
  check(Number.isInteger(channels) && Number.isInteger(inner) && channels > 0 && inner > 0 && w.size % (channels * inner) === 0, op, () =>
    `weight ${w.name} ${fmtShape(w.shape)} is not a whole number of ${channels} channels x ${inner} weights`);
  if (!affine) return cast(w, 'f16');
  check(affine.dtype === 'f32' && affine.size >= 2 * channels, op, () => `affine ${affine.name} must be f32 [2, >= ${channels}], got ${affine.dtype} ${fmtShape(affine.shape)}`);
  const engine = w.engine;
  engine.requireF16(op);
  const out = engine.empty(w.shape, 'f16', `${w.name}.f16`);
  engine.run({
    name: 'fold_half',
    shader: () => sectionSpec(FOLD_HALF, halfWgsl, 'fold_half', { WG }),
    uniforms: { total: w.size, inner, channels },
    bindings: { src: w, aff: affine, dst: out },
    dispatch: grid1d(w.size, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: w.size,
    bytes: w.byteLength + out.byteLength,
  });
  return out;
}
