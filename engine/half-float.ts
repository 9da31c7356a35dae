/**
 * IEEE 754 binary16 on the CPU, the one home of it: f16 tensor uploads and read-backs, and the F16
 * tensors of safetensors files. Rounding is to nearest, ties to even, as WGSL's f32 -> f16 conversion on
 * the adapters we test (lavapipe matched a step-rounded reference bit for bit); overflow gives infinity.
 */
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * The IEEE 754 binary16 bits (0..0xffff) nearest to `x` taken as float32 (`Math.fround(x)`), ties to
 * even. Handles subnormals, overflow to ±Infinity (from 65520 up), signed zero, and NaN (stays a
 * quiet NaN keeping the top payload bits).
 */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // binary16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal result: value = m16 * 2^-24 with m16 = m24 * 2^(e - 14), m24 the full significand.
    // Below 2^-25 (e < -10) everything rounds to zero; float32 subnormals land there too.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    let r = m >>> shift;
    if (rem > half || (rem === half && r & 1)) r++; // r = 0x400 is the smallest normal: still right
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to 0x7c00 (Infinity): exactly IEEE rounding.
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** The value of the binary16 bits `h` (low 16 bits used). Exact: every f16 is a float32. NaN payloads are not kept. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}


/** `v` rounded to the nearest binary16 value (as a number): the reference of f16 storage. */
export const roundHalf = (v: number): number => f16BitsToF32(f32ToF16Bits(v));

/** Encodes values as binary16, padded to an even count (GPU writes are whole 4-byte words). */
export function encodeHalf(data: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(data.length + (data.length & 1));
  for (let i = 0; i < data.length; i++) out[i] = f32ToF16Bits(data[i]!);
  return out;
}

/** Decodes `count` binary16 values. */
export function decodeHalf(bits: Uint16Array, count = bits.length): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = f16BitsToF32(bits[i]!);
  return out;
}
