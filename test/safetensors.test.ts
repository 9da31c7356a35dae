/**
 * safetensors read/write (weights/safetensors.ts) and atomic files (weights/file.ts). CPU only.
 * The reference for the byte layout is a hand-written byte array; the same bytes were checked
 * once against the reference implementation (Python safetensors 0.8.0, `safetensors.numpy.save`).
 */
import * as assert from 'uvu/assert';
import { promises as fsp } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseSafetensors,
  serializeSafetensors,
  f32ToF16Bits,
  f16BitsToF32,
  SafetensorsError,
  MAX_HEADER_DEPTH,
  MAX_TENSORS,
  type SafeDType,
  type SafeTensorEntry,
} from '../weights/safetensors.js';
import { readSafetensorsFile, writeSafetensorsFile, TEMP_PREFIX } from '../weights/file.js';
import { stateDictFromParsed } from '../weights/state.js';
import { suite } from './harness.js';
import { rng } from './check.js';

const t = suite('safetensors');


const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));
const hex = (s: string) => s.match(/[0-9a-f]{2}/g)!.map((b) => parseInt(b, 16));

/** A file from a header (object, or raw text) and data bytes, with a correct length unless given. */
function build(header: unknown, data: ArrayLike<number> = [], headerLen?: number | bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const f32Bytes = (...v: number[]) => Array.from(new Uint8Array(new Float32Array(v).buffer));
const throwsSafe = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    if (!(e instanceof SafetensorsError)) throw new Error(`expected a SafetensorsError, got ${String(e)}`);
    if (!re.test(e.message)) throw new Error(`message ${JSON.stringify(e.message)} does not match ${re}`);
    return true;
  });

// ---------------------------------------------------------------------------------------------

// Hand-computed: 'b' I64 [1, -1] first (the writer orders by dtype I64 > F32 > I32 > F16, then
// name), then 'a' F32 [1, -2.5], then 'h' F16 [1]. JSON is 196 bytes, padded with 4 spaces to 200.
const REF_HEADER =
  '{"__metadata__":{"format":"pt"},' +
  '"b":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},' +
  '"a":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},' +
  '"h":{"dtype":"F16","shape":[1],"data_offsets":[24,26]}}    ';
const REF_BYTES = [
  ...[200, 0, 0, 0, 0, 0, 0, 0],
  ...ascii(REF_HEADER),
  ...[1, 0, 0, 0, 0, 0, 0, 0], // I64 1
  ...[255, 255, 255, 255, 255, 255, 255, 255], // I64 -1
  ...[0x00, 0x00, 0x80, 0x3f], // F32 1.0 = 0x3f800000
  ...[0x00, 0x00, 0x20, 0xc0], // F32 -2.5 = 0xc0200000 (sign, exponent 128, mantissa .25)
  ...[0x00, 0x3c], // F16 1.0 = 0x3c00
];

t('writes the hand-computed bytes, and reads them back', () => {
  assert.is(REF_HEADER.length, 200);
  const bytes = serializeSafetensors(
    { a: { data: new Float32Array([1, -2.5]), shape: [2] }, h: { data: new Float32Array([1]), shape: [1], dtype: 'F16' }, b: { data: new Int32Array([1, -1]), shape: [2], dtype: 'I64' } },
    { format: 'pt' },
  );
  assert.equal(Array.from(bytes), REF_BYTES);

  const r = parseSafetensors(new Uint8Array(REF_BYTES));
  assert.equal(r.metadata, { format: 'pt' });
  assert.equal([...r.tensors.keys()], ['b', 'a', 'h']); // data-offset order
  const b = r.tensors.get('b')!;
  assert.is(b.dtype, 'I64');
  assert.ok(b.data instanceof Int32Array);
  assert.equal(Array.from(b.data), [1, -1]);
  const a = r.tensors.get('a')!;
  assert.ok(a.data instanceof Float32Array);
  assert.equal([a.dtype, a.shape, Array.from(a.data)], ['F32', [2], [1, -2.5]]);
  assert.equal(Array.from(r.tensors.get('h')!.data), [1]);
  // ArrayBuffer input, and an input that is a view at an odd offset (data not 4-byte aligned).
  assert.equal(Array.from(parseSafetensors(new Uint8Array(REF_BYTES).buffer).tensors.get('a')!.data), [1, -2.5]);
  const shifted = new Uint8Array(REF_BYTES.length + 3);
  shifted.set(REF_BYTES, 3);
  assert.equal(Array.from(parseSafetensors(shifted.subarray(3)).tensors.get('a')!.data), [1, -2.5]);
  assert.equal(Array.from(parseSafetensors(new DataView(shifted.buffer, 3)).tensors.get('b')!.data), [1, -1]);
  // The result owns its memory: changing the input afterwards changes nothing.
  const input = new Uint8Array(REF_BYTES);
  const owned = parseSafetensors(input);
  input.fill(0);
  assert.equal(Array.from(owned.tensors.get('a')!.data), [1, -2.5]);
});

t('matches the reference on dtype order, empty tensors, scalars and empty files', () => {
  // Bytes of safetensors 0.8.0 for {a: I32 [1], z: F32 [1.0], c: F16 [1.0], b: I64 [1], e: F32 zeros(0, 3)}.
  const ref = hex(
    '18010000000000007b2262223a7b226474797065223a22493634222c227368617065223a5b315d2c22646174615f6f666673657473223a5b302c385d7d2c2265223a7b226474797065223a22463332222c227368617065223a5b302c335d2c22646174615f6f666673657473223a5b382c385d7d2c227a223a7b226474797065223a22463332222c227368617065223a5b315d2c22646174615f6f666673657473223a5b382c31325d7d2c2261223a7b226474797065223a22493332222c227368617065223a5b315d2c22646174615f6f666673657473223a5b31322c31365d7d2c2263223a7b226474797065223a22463136222c227368617065223a5b315d2c22646174615f6f666673657473223a5b31362c31385d7d7d2020202020202001000000000000000000803f01000000003c',
  );
  const mine = serializeSafetensors({
    a: { data: new Int32Array([1]), shape: [1] },
    z: { data: new Float32Array([1]), shape: [1] },
    c: { data: new Float32Array([1]), shape: [1], dtype: 'F16' },
    b: { data: new Int32Array([1]), shape: [1], dtype: 'I64' },
    e: { data: new Float32Array(0), shape: [0, 3] },
  });
  assert.equal(Array.from(mine), ref);
  assert.equal(parseSafetensors(mine).tensors.get('e')!.shape, [0, 3]);

  assert.equal(Array.from(serializeSafetensors({})), [8, 0, 0, 0, 0, 0, 0, 0, ...ascii('{}      ')]);
  const scalar = serializeSafetensors({ x: { data: new Float32Array([0]), shape: [] } }, {});
  assert.equal(Array.from(scalar.subarray(0, 8)), [72, 0, 0, 0, 0, 0, 0, 0]);
  assert.is(new TextDecoder().decode(scalar.subarray(8, 80)), '{"__metadata__":{},"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} ');
  const r = parseSafetensors(scalar);
  assert.equal(r.tensors.get('x')!.shape, []);
  assert.equal(r.metadata, {});
});

t('round trip of every dtype', () => {
  const f = new Float32Array([0, -0, 1.5, -3.25, 65504, 2 ** -24, 1e-30, 3.4e38]);
  const i = new Int32Array([0, 1, -1, 2147483647, -2147483648, 12345]);
  const bytes = serializeSafetensors(
    {
      'f32.weight': { data: f, shape: [2, 4] },
      'f16.weight': { data: f.slice(0, 6), shape: [3, 2], dtype: 'F16' },
      'i32.idx': { data: i, shape: [6] },
      'bn.num_batches_tracked': { data: i, shape: [2, 3], dtype: 'I64' },
      'ünïcödé/名前': { data: new Float32Array([7]), shape: [1, 1, 1] },
      ['x'.repeat(300) + '"\\\n']: { data: new Float32Array([8]), shape: [1] },
    },
    { format: 'pt', 'canet.note': 'round trip' },
  );
  const r = parseSafetensors(bytes);
  assert.equal(r.metadata, { format: 'pt', 'canet.note': 'round trip' });
  assert.equal(Array.from(r.tensors.get('f32.weight')!.data), Array.from(f));
  assert.ok(Object.is(r.tensors.get('f32.weight')!.data[1], -0));
  // Every value here is exactly representable in binary16.
  assert.equal(Array.from(r.tensors.get('f16.weight')!.data), Array.from(f.slice(0, 6)));
  assert.equal(r.tensors.get('f16.weight')!.dtype, 'F16');
  assert.equal(Array.from(r.tensors.get('i32.idx')!.data), Array.from(i));
  assert.equal(Array.from(r.tensors.get('bn.num_batches_tracked')!.data), Array.from(i));
  assert.equal(r.tensors.get('ünïcödé/名前')!.shape, [1, 1, 1]);
  assert.equal(Array.from(r.tensors.get('x'.repeat(300) + '"\\\n')!.data), [8]);

  // Dtypes we read but do not write: hand-built.
  const dv = new DataView(new ArrayBuffer(8 * 3 + 2 * 4 + 4 * 2 + 3 + 3));
  [0.1, -1e-300, 1e38].forEach((v, k) => dv.setFloat64(8 * k, v, true));
  [0x3f80, 0xc040, 0x0001, 0x8000].forEach((v, k) => dv.setUint16(24 + 2 * k, v, true));
  [4294967295, 7].forEach((v, k) => dv.setUint32(32 + 4 * k, v, true));
  [0, 128, 255].forEach((v, k) => dv.setUint8(40 + k, v));
  [-128, 127, -1].forEach((v, k) => dv.setInt8(43 + k, v));
  const other = parseSafetensors(
    build(
      {
        d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] },
        bf: { dtype: 'BF16', shape: [2, 2], data_offsets: [24, 32] },
        u32: { dtype: 'U32', shape: [2], data_offsets: [32, 40] },
        u8: { dtype: 'U8', shape: [3], data_offsets: [40, 43] },
        i8: { dtype: 'I8', shape: [3], data_offsets: [43, 46] },
      },
      new Uint8Array(dv.buffer),
    ),
  );
  const got = (n: string) => other.tensors.get(n)!.data;
  assert.ok(got('d') instanceof Float32Array);
  assert.equal(Array.from(got('d')), [Math.fround(0.1), -0, Math.fround(1e38)]);
  assert.equal(Array.from(got('bf')), [1, -3, 2 ** -133, -0]);
  assert.ok(got('u32') instanceof Uint32Array);
  assert.equal(Array.from(got('u32')), [4294967295, 7]);
  assert.ok(got('u8') instanceof Uint8Array);
  assert.equal(Array.from(got('u8')), [0, 128, 255]);
  assert.ok(got('i8') instanceof Int8Array);
  assert.equal(Array.from(got('i8')), [-128, 127, -1]);
});

// ---------------------------------------------------------------------------------------------

t('f16: every binary16 value converts to float32 and back to the same bits', () => {
  for (let h = 0; h < 65536; h++) {
    const v = f16BitsToF32(h);
    const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN16) {
      assert.ok(Number.isNaN(v), `0x${h.toString(16)} should be NaN`);
      const back = f32ToF16Bits(v);
      assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN must stay NaN, got 0x${back.toString(16)}`);
      continue;
    }
    const back = f32ToF16Bits(v);
    if (back !== h) assert.unreachable(`0x${h.toString(16)} -> ${v} -> 0x${back.toString(16)}`);
  }
  assert.is(f16BitsToF32(0x3c00), 1);
  assert.is(f16BitsToF32(0xc000), -2);
  assert.is(f16BitsToF32(0x7bff), 65504);
  assert.is(f16BitsToF32(0x0001), 2 ** -24);
  assert.is(f16BitsToF32(0x03ff), 1023 * 2 ** -24);
  assert.is(f16BitsToF32(0x0400), 2 ** -14);
  assert.is(f16BitsToF32(0x7c00), Infinity);
  assert.is(f16BitsToF32(0xfc00), -Infinity);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
});

t('f16: rounding to nearest, ties to even; subnormals; overflow', () => {
  const cases: [number, number][] = [
    [1 + 2 ** -11, 0x3c00], // halfway between 0x3c00 and 0x3c01: to even 0x3c00
    [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: to even 0x3c02
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway
    [-(1 + 3 * 2 ** -11), 0xbc02],
    [2 - 2 ** -12, 0x4000], // rounds up across the exponent boundary
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: tie, to even (zero)
    [2 ** -25 + 2 ** -40, 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 units: tie, to even 2
    [5 * 2 ** -25, 0x0002], // 2.5 units: tie, to even 2
    [(1023 + 0.5) * 2 ** -24, 0x0400], // largest subnormal + half: tie, rounds to the smallest normal
    [2 ** -14, 0x0400],
    [-(2 ** -24), 0x8001],
    [1e-45, 0x0000], // float32 subnormal
    [-1e-45, 0x8000],
    [65504, 0x7bff],
    [65519.99, 0x7bff],
    [65520, 0x7c00], // tie between 65504 and 2^16: to even, which is Infinity
    [1e10, 0x7c00],
    [-1e10, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [-0, 0x8000],
    [0, 0x0000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
  ];
  for (const [x, h] of cases) assert.is(f32ToF16Bits(x), h, `f32ToF16Bits(${x})`);
  const nan = f32ToF16Bits(NaN);
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0);
});

t('f16: random float32 values match a brute-force nearest-value search', () => {
  // All finite non-negative binary16 values in increasing order (bits 0..0x7bff are monotonic).
  const values = Array.from({ length: 0x7c00 }, (_, h) => f16BitsToF32(h));
  const nearest = (x: number): number => {
    const ax = Math.abs(x);
    const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
    if (ax >= 65520) return sign | 0x7c00;
    let lo = 0;
    let hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid]! <= ax) lo = mid;
      else hi = mid;
    }
    const dl = ax - values[lo]!;
    const dh = values[hi]! - ax;
    const pick = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
    return sign | pick;
  };
  const r = rng(1234);
  const u = new Uint32Array(1);
  const f = new Float32Array(u.buffer);
  for (let k = 0; k < 20000; k++) {
    // Exponents spread over the f16 range and a little beyond, random mantissas.
    const exp = 127 - 27 + Math.floor(r() * 46);
    u[0] = ((r() < 0.5 ? 1 : 0) << 31) | (exp << 23) | Math.floor(r() * 2 ** 23);
    const x = f[0]!;
    if (f32ToF16Bits(x) !== nearest(x)) assert.unreachable(`f32ToF16Bits(${x}) = 0x${f32ToF16Bits(x).toString(16)}, nearest is 0x${nearest(x).toString(16)}`);
  }
});

// ---------------------------------------------------------------------------------------------

const okEntry = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

t('refuses broken framing and headers', () => {
  throwsSafe(() => parseSafetensors(new Uint8Array(5)), /5 bytes, shorter than the 8-byte header length/);
  throwsSafe(() => parseSafetensors(build({ a: okEntry }, f32Bytes(1, 2), 1000)), /header length 1000 runs past the end of the file/);
  throwsSafe(() => parseSafetensors(build({ a: okEntry }, f32Bytes(1, 2), 100 * 1024 * 1024 + 1)), /header length 104857601 is absurd/);
  throwsSafe(() => parseSafetensors(build({}, [], 2n ** 64n - 1n)), /header length 18446744073709551615 is absurd/);
  const notUtf8 = build('{"\u00e9":1}');
  notUtf8[10] = 0xff; // breaks the two-byte sequence of é
  throwsSafe(() => parseSafetensors(notUtf8), /not valid UTF-8/);
  throwsSafe(() => parseSafetensors(build('{"a": {')), /header is not valid JSON/);
  throwsSafe(() => parseSafetensors(build('')), /header is not valid JSON/);
  throwsSafe(() => parseSafetensors(build([1, 2])), /must be a JSON object of tensors, got an array/);
  throwsSafe(() => parseSafetensors(build('null')), /got null/);
  throwsSafe(() => parseSafetensors(build('"' + 'x'.repeat(1000) + '"')), /got "x{40}"\.\.\.$/);
  throwsSafe(() => parseSafetensors(build({ __metadata__: [] })), /"__metadata__" must be an object of strings, got an array/);
  throwsSafe(() => parseSafetensors(build({ __metadata__: { epoch: 3 } })), /"__metadata__" value for key "epoch" must be a string, got 3/);
});

t('refuses malformed tensor entries, naming the tensor', () => {
  const one = (entry: unknown, data: ArrayLike<number> = f32Bytes(1, 2)) => () => parseSafetensors(build({ 'x.weight': entry }, data));
  throwsSafe(one(7), /tensor "x.weight": header entry must be an object .*got 7/);
  throwsSafe(one({ shape: [2], data_offsets: [0, 8] }), /tensor "x.weight": header entry has no "dtype"/);
  throwsSafe(one({ dtype: 'F32', data_offsets: [0, 8] }), /tensor "x.weight": header entry has no "shape"/);
  throwsSafe(one({ dtype: 'F32', shape: [2] }), /tensor "x.weight": header entry has no "data_offsets"/);
  throwsSafe(one({ ...okEntry, dtype: 4 }), /"dtype" must be a string, got 4/);
  throwsSafe(one({ ...okEntry, dtype: 'BOOL' }), /tensor "x.weight": unsupported dtype "BOOL" \(supported: F32, F16, BF16, F64, I32, I64, U8, I8, U32\)/);
  throwsSafe(one({ ...okEntry, dtype: 'toString' }), /unsupported dtype "toString"/);
  throwsSafe(one({ ...okEntry, shape: '2' }), /"shape" must be an array of integers, got "2"/);
  throwsSafe(one({ ...okEntry, shape: [2, -1] }), /shape \[2,-1\] has dimension 1 = -1, expected a non-negative integer/);
  throwsSafe(one({ ...okEntry, shape: [1.5] }), /dimension 0 = 1.5/);
  throwsSafe(one({ ...okEntry, shape: ['2'] }), /dimension 0 = "2"/);
  throwsSafe(one({ ...okEntry, data_offsets: [0] }), /"data_offsets" must be \[begin, end\], got \[0\]/);
  throwsSafe(one({ ...okEntry, data_offsets: { begin: 0 } }), /"data_offsets" must be \[begin, end\]/);
  throwsSafe(one({ ...okEntry, data_offsets: [-8, 0] }), /data_offsets \[-8,0\] must be two non-negative integers/);
  throwsSafe(one({ ...okEntry, data_offsets: [0, '8'] }), /must be two non-negative integers/);
  throwsSafe(one({ ...okEntry, data_offsets: [8, 0] }), /tensor "x.weight": data_offsets \[8, 0\] has begin > end/);
  throwsSafe(one({ ...okEntry, data_offsets: [4, 12] }), /data_offsets \[4, 12\] run past the data section \(8 bytes\)/);
  throwsSafe(one({ ...okEntry, shape: [3] }), /tensor "x.weight": F32 shape \[3\] needs 12 bytes \(3 x 4\), data_offsets \[0, 8\] hold 8/);
  throwsSafe(one({ ...okEntry, shape: [2 ** 40, 2 ** 40] }), /needs \d.* bytes/);
  throwsSafe(one({ dtype: 'F16', shape: [2], data_offsets: [0, 8] }), /F16 shape \[2\] needs 4 bytes \(2 x 2\)/);
  // Messages quote file content, clipped: a corrupt header may hold a huge array.
  const huge = one({ ...okEntry, shape: [...new Array<number>(10000).fill(1), -1] });
  throwsSafe(huge, /dimension 10000 = -1/);
  const msg = (() => {
    try {
      huge();
    } catch (e) {
      return (e as Error).message;
    }
    return '';
  })();
  assert.ok(msg.length < 400, `message of ${msg.length} characters`);
});

t('refuses overlapping tensors; allows holes and empty tensors anywhere', () => {
  const data = f32Bytes(1, 2, 3, 4);
  throwsSafe(
    () => parseSafetensors(build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, data)),
    /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/,
  );
  // A tensor inside another one's range (not just the neighbour) is caught too.
  throwsSafe(
    () =>
      parseSafetensors(
        build({ big: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, x: { dtype: 'F32', shape: [1], data_offsets: [12, 16] }, y: { dtype: 'U8', shape: [1], data_offsets: [5, 6] } }, data),
      ),
    /"big" \[0, 16\] and "y" \[5, 6\] overlap/,
  );
  throwsSafe(() => parseSafetensors(build({ a: okEntry, b: okEntry }, data)), /"a" \[0, 8\] and "b" \[0, 8\] overlap/);
  const r = parseSafetensors(
    build(
      { b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, e: { dtype: 'F32', shape: [2, 0], data_offsets: [2, 2] } },
      data,
    ),
  );
  assert.equal([...r.tensors.keys()], ['a', 'e', 'b']);
  assert.equal(Array.from(r.tensors.get('b')!.data), [4]);
  assert.is(r.tensors.get('e')!.data.length, 0);
});

t('refuses non-finite floats (unless allowed) and out-of-range integers', () => {
  const nanFile = build({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } }, f32Bytes(1, NaN, Infinity));
  throwsSafe(() => parseSafetensors(nanFile), /tensor "w": non-finite value NaN at index 1 \(F32, shape \[3\]\); pass allowNonFinite/);
  const allowed = parseSafetensors(nanFile, { allowNonFinite: true }).tensors.get('w')!.data;
  assert.ok(Number.isNaN(allowed[1]) && allowed[2] === Infinity);
  throwsSafe(() => parseSafetensors(build({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, [0, 0x3c, 0, 0xfc])), /tensor "h": non-finite value -Infinity at index 1/);
  throwsSafe(() => parseSafetensors(build({ h: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, [0xc0, 0x7f])), /tensor "h": non-finite value NaN at index 0/);

  const f64 = new DataView(new ArrayBuffer(16));
  f64.setFloat64(0, 1, true);
  f64.setFloat64(8, 1e300, true);
  throwsSafe(() => parseSafetensors(build({ d: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(f64.buffer))), /tensor "d": F64 value 1e\+300 at index 1 is outside the float32 range/);

  const i64 = (v: bigint) => {
    const dv = new DataView(new ArrayBuffer(16));
    dv.setBigInt64(8, v, true);
    return build({ 'bn.num_batches_tracked': { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(dv.buffer));
  };
  assert.equal(Array.from(parseSafetensors(i64(-2147483648n)).tensors.get('bn.num_batches_tracked')!.data), [0, -2147483648]);
  throwsSafe(() => parseSafetensors(i64(2147483648n)), /tensor "bn.num_batches_tracked": I64 value 2147483648 at index 1 does not fit in int32/);
  throwsSafe(() => parseSafetensors(i64(-2147483649n)), /I64 value -2147483649 at index 1/);
  throwsSafe(() => parseSafetensors(i64(2n ** 40n)), /I64 value 1099511627776/);
});

t('metadata keys are plain data (no prototype pollution)', () => {
  const r = parseSafetensors(build('{"__metadata__":{"__proto__":"x","constructor":"y"}}'));
  assert.is(Object.getPrototypeOf(r.metadata), Object.prototype);
  assert.equal(Object.keys(r.metadata).sort(), ['__proto__', 'constructor']);
  assert.is(Object.getOwnPropertyDescriptor(r.metadata, '__proto__')!.value, 'x');
  const back = parseSafetensors(serializeSafetensors({}, r.metadata)).metadata;
  assert.is(Object.getOwnPropertyDescriptor(back, '__proto__')!.value, 'x');
});

t('serialize refuses bad input, naming the tensor, and produces nothing', () => {
  const f = new Float32Array([1, 2, 3]);
  const ser = (tensors: Record<string, unknown>, meta?: Record<string, unknown>) => () => serializeSafetensors(tensors as never, meta as never);
  throwsSafe(ser({ w: { data: f, shape: [2, 2] } }), /tensor "w": shape \[2, 2\] has 4 elements, data has 3/);
  throwsSafe(ser({ w: { data: f, shape: [3, -1] } }), /tensor "w": shape must be an array of non-negative integers, got \[3,-1\]/);
  throwsSafe(ser({ w: { data: new Float64Array(3), shape: [3] } }), /tensor "w": data must be a Float32Array or an Int32Array, got Float64Array/);
  throwsSafe(ser({ w: { data: [1, 2, 3], shape: [3] } }), /got Array/);
  throwsSafe(ser({ w: { data: f, shape: [3], dtype: 'I64' } }), /tensor "w": dtype I64 needs an Int32Array, got a Float32Array/);
  throwsSafe(ser({ w: { data: new Int32Array(3), shape: [3], dtype: 'F16' } }), /dtype F16 needs a Float32Array/);
  throwsSafe(ser({ w: { data: f, shape: [3], dtype: 'BF16' } }), /tensor "w": cannot write dtype "BF16"/);
  throwsSafe(ser({ __metadata__: { data: f, shape: [3] } }), /tensor "__metadata__": the name is reserved/);
  throwsSafe(ser({ w: null }), /tensor "w": expected \{data, shape, dtype\?\}, got null/);
  throwsSafe(ser({ ok: { data: f, shape: [3] }, w: { data: new Float32Array([0, -Infinity]), shape: [2] } }), /tensor "w": non-finite value -Infinity at index 1/);
  throwsSafe(ser({ w: { data: new Float32Array([1, 65520]), shape: [2], dtype: 'F16' } }), /tensor "w": value 65520 at index 1 is outside the F16 range/);
  throwsSafe(ser({ w: { data: f, shape: [3] } }, { epoch: 3 }), /"__metadata__" value for key "epoch" must be a string/);
  const nan = serializeSafetensors({ w: { data: new Float32Array([NaN]), shape: [1] } }, undefined, { allowNonFinite: true });
  assert.ok(Number.isNaN(parseSafetensors(nan, { allowNonFinite: true }).tensors.get('w')!.data[0]));
});

// ---------------------------------------------------------------------------------------------

const DTYPES: readonly SafeDType[] = ['F32', 'F16', 'BF16', 'F64', 'I32', 'I64', 'U8', 'I8', 'U32'];
const ARRAY_OF: Record<SafeDType, new (n: number) => SafeTensorEntry['data']> = {
  F32: Float32Array, F16: Float32Array, BF16: Float32Array, F64: Float32Array, I32: Int32Array, I64: Int32Array, U8: Uint8Array, I8: Int8Array, U32: Uint32Array,
};

// ---------------------------------------------------------------------------------------------
// Hostile headers (issue 24): the cheapest file that costs the most. Each is refused by the one
// linear scan of the header text that runs before JSON.parse.

/** A shape nested `depth` levels inside the tensor's entry: `[[[...[1]...]]]`. */
const nestedShape = (depth: number) => `{"w":{"dtype":"F32","shape":${'['.repeat(depth)}1${']'.repeat(depth)},"data_offsets":[0,4]}}`;

t('hostile: deep nesting is refused before parsing, whatever the depth', () => {
  // 200k levels in a 400 KB file: before the fix, a RangeError (stack overflow) from the error
  // formatting instead of a SafetensorsError; a 100 MiB one took minutes and gigabytes.
  for (const depth of [MAX_HEADER_DEPTH, 1000, 200_000])
    throwsSafe(() => parseSafetensors(build(nestedShape(depth), f32Bytes(1))), new RegExp(`header nests deeper than ${MAX_HEADER_DEPTH} levels`));
  // Objects nest as arrays do, and in the metadata too; an unclosed run is refused just the same.
  throwsSafe(() => parseSafetensors(build(`{"__metadata__":${'{"a":'.repeat(50_000)}"x"${'}'.repeat(50_000)}}`)), /nests deeper than/);
  throwsSafe(() => parseSafetensors(build('['.repeat(1_000_000))), /nests deeper than/);
  // Up to the limit the usual message names the bad dimension (bounded, whatever the nesting).
  throwsSafe(() => parseSafetensors(build(nestedShape(MAX_HEADER_DEPTH - 3), f32Bytes(1))), /tensor "w": shape \[+1\]+ has dimension 0 = an array/);
  // Brackets inside strings are text, not nesting.
  const name = '[{'.repeat(100);
  const ok = parseSafetensors(build({ [name]: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, __metadata__: { k: '{['.repeat(100) } }, f32Bytes(2)));
  assert.equal(Array.from(ok.tensors.get(name)!.data), [2]);
});

t('hostile: duplicate keys are refused (the JSON parser would keep the last)', () => {
  const w = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  throwsSafe(() => parseSafetensors(build(`{"w":${w},"w":${w}}`, f32Bytes(1))), /header has the key "w" twice/);
  // Two metadata entries: the second would silently replace the first.
  throwsSafe(() => parseSafetensors(build(`{"__metadata__":{"canet":"a"},"w":${w},"__metadata__":{"canet":"b"}}`, f32Bytes(1))), /key "__metadata__" twice/);
  // The same key spelled with an escape is the same key.
  throwsSafe(() => parseSafetensors(build(`{"w":${w},"\\u0077":${w}}`, f32Bytes(1))), /key "w" twice/);
  // Within an entry, and within the metadata.
  throwsSafe(() => parseSafetensors(build(`{"w":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, f32Bytes(1))), /key "dtype" twice in one entry/);
  throwsSafe(() => parseSafetensors(build(`{"__metadata__":{"a":"1","a":"2"}}`)), /key "a" twice in one entry/);
  // The same key in different objects is fine, and so are keys that only look alike.
  const r = parseSafetensors(build(`{"__metadata__":{"dtype":"x"},"w":${w},"W":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32Bytes(1, 2)));
  assert.equal([...r.tensors.keys()], ['w', 'W']);
});

t('hostile: the tensor count is bounded (MAX_TENSORS, raised with maxTensors)', () => {
  // Empty tensors cost no data bytes: 100k of them is a 5 MB header of nothing.
  const many = (n: number) => `{${Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(',')}}`;
  throwsSafe(() => parseSafetensors(build(many(100_000))), new RegExp(`more than ${MAX_TENSORS} tensors.*maxTensors`));
  throwsSafe(() => parseSafetensors(build(many(MAX_TENSORS + 1))), /more than 16384 tensors/);
  assert.is(parseSafetensors(build(many(MAX_TENSORS))).tensors.size, MAX_TENSORS);
  assert.is(parseSafetensors(build(many(MAX_TENSORS + 1)), { maxTensors: MAX_TENSORS + 1 }).tensors.size, MAX_TENSORS + 1);
  // The metadata entry is not a tensor.
  assert.is(parseSafetensors(build(`{"__metadata__":{},${many(3).slice(1)}`), { maxTensors: 3 }).tensors.size, 3);
  throwsSafe(() => parseSafetensors(build(many(4)), { maxTensors: 3 }), /more than 3 tensors/);
});

t('hostile: what an error echoes from the file is truncated', () => {
  const long = 'n'.repeat(1_000_000);
  const msg = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('no error');
  };
  const cases = [
    msg(() => parseSafetensors(build({ [long]: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Array(8).fill(0)))),
    msg(() => parseSafetensors(build({ w: { dtype: 'F32', shape: new Array(2_000_000).fill(1).concat([2]), data_offsets: [0, 4] } }, f32Bytes(1)))),
    msg(() => parseSafetensors(build({ w: { dtype: long, shape: [1], data_offsets: [0, 4] } }, f32Bytes(1)))),
    msg(() => parseSafetensors(build(`{"w":${long}`))),
    // A U8 tensor is not a model weight: the refusal names it, truncated.
    msg(() => stateDictFromParsed(parseSafetensors(build({ [long]: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }, [7])))),
  ];
  for (const m of cases) assert.ok(m.length < 1000, `message of ${m.length} characters: ${m.slice(0, 120)}...`);
  assert.match(cases[4]!, /dtype U8 cannot hold model weights/);
});

t('fuzz: mutated files parse consistently or throw SafetensorsError', () => {
  const r = rng(20240607);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!; // undefined for an empty list
  // A base file with every read dtype, metadata, a hole and an empty tensor.
  const base = (() => {
    const head: Record<string, unknown> = { __metadata__: { format: 'pt', step: '12' } };
    const data: number[] = [];
    const add = (name: string, dtype: SafeDType, shape: number[], bytes: number[]) => {
      head[name] = { dtype, shape, data_offsets: [data.length, data.length + bytes.length] };
      data.push(...bytes);
    };
    add('conv.weight', 'F32', [2, 3], f32Bytes(1, -2, 3.5, 0.25, -0.125, 8));
    add('bn.num_batches_tracked', 'I64', [], [7, 0, 0, 0, 0, 0, 0, 0]);
    add('half', 'F16', [3], [0, 0x3c, 0x00, 0xc0, 0xff, 0x7b]);
    add('bf', 'BF16', [2], [0x80, 0x3f, 0x40, 0xc0]);
    data.push(9, 9, 9); // a hole
    add('d', 'F64', [1], Array.from(new Uint8Array(new Float64Array([0.5]).buffer)));
    add('idx', 'I32', [2], [1, 0, 0, 0, 255, 255, 255, 255]);
    add('u', 'U8', [1, 3], [1, 2, 3]);
    add('s', 'I8', [2], [0x80, 0x7f]);
    add('w', 'U32', [1], [1, 2, 3, 4]);
    add('empty', 'F32', [0, 5], []);
    return build(head, data);
  })();
  const baseParsed = parseSafetensors(base);
  assert.is(baseParsed.tensors.size, 10);
  const headerLen = Number(new DataView(base.buffer).getBigUint64(0, true));

  const mutations: ((b: Uint8Array) => Uint8Array)[] = [
    (b) => b.slice(0, int(b.length)), // truncation
    (b) => {
      const c = b.slice();
      const at = 8 + int(headerLen); // header byte
      c[at] = r() < 0.5 ? c[at]! ^ (1 << int(8)) : int(256);
      return c;
    },
    (b) => {
      const c = b.slice();
      const at = 8 + headerLen + int(b.length - 8 - headerLen); // data byte
      c[at] = c[at]! ^ (1 << int(8));
      return c;
    },
    (b) => {
      const c = b.slice();
      const v = pick([headerLen + int(17) - 8, int(b.length * 2), 2 ** 32 + headerLen, int(2 ** 32), 0, 2 ** 52]);
      new DataView(c.buffer).setBigUint64(0, BigInt(v), true);
      return c;
    },
    (b) => {
      // JSON edits: change a number, a dtype, delete or insert a character; header length fixed up.
      let text = new TextDecoder().decode(b.subarray(8, 8 + headerLen));
      const data = b.subarray(8 + headerLen);
      const kind = int(6);
      if (kind === 0) {
        const m = pick([...text.matchAll(/\d+/g)]);
        if (m) text = text.slice(0, m.index) + pick(['-1', '0', '1.5', '1e3', '99999999999999999999', String(int(64)), '"3"', 'null', '[]']) + text.slice(m.index! + m[0].length);
      } else if (kind === 1) {
        text = text.replace(new RegExp(`"${pick(DTYPES)}"`), `"${pick([...DTYPES, 'BOOL', 'f32', ''])}"`);
      } else if (kind === 2) {
        const at = int(text.length);
        text = text.slice(0, at) + text.slice(at + 1);
      } else if (kind === 3) {
        const at = int(text.length);
        text = text.slice(0, at) + pick(['{', '}', '[', ']', ',', ':', '"', '-', '0', 'e', '\\', '\u00ff', ' ']) + text.slice(at);
      } else if (kind === 4) {
        text = text.replace(/"shape":\[[^\]]*\]/, `"shape":[${int(4)},${int(4)}]`);
      } else {
        // Move one tensor's range, keeping its length: overlaps, holes, or past the end.
        const ranges = [...text.matchAll(/"data_offsets":\[(\d+),(\d+)\]/g)];
        const m = pick(ranges);
        const begin = int(80);
        if (m) text = text.slice(0, m.index) + `"data_offsets":[${begin},${begin + Number(m[2]) - Number(m[1])}]` + text.slice(m.index! + m[0].length);
      }
      const json = new TextEncoder().encode(text);
      const out = new Uint8Array(8 + json.length + data.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(r() < 0.9 ? json.length : json.length + int(9) - 4), true);
      out.set(json, 8);
      out.set(data, 8 + json.length);
      return out;
    },
    (b) => {
      const c = new Uint8Array(b.length + 1 + int(16));
      c.set(b);
      for (let i = b.length; i < c.length; i++) c[i] = int(256);
      return c;
    },
  ];

  // Hostile edits (issue 24), applied last so that the refusal can be asserted: nesting past
  // MAX_HEADER_DEPTH (up to 100k levels, a 200 KB header), a repeated tensor or metadata key.
  // Every case is at most ~250 KB and is refused by one linear scan of the header before
  // JSON.parse, so each costs well under 1 s and a few MB (not asserted: timings do not belong
  // in tests; the scan has no recursion and no per-level allocation beyond a stack entry).
  const rewrite = (b: Uint8Array, edit: (text: string) => string): Uint8Array => {
    const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
    if (b.length < 8 || n > b.length - 8) return b;
    return build(edit(new TextDecoder().decode(b.subarray(8, 8 + n))), b.subarray(8 + n));
  };
  const hostile: ((b: Uint8Array) => Uint8Array)[] = [
    (b) => rewrite(b, (text) => {
      const d = pick([MAX_HEADER_DEPTH, 50, 5000, 100_000]);
      return `{"x":${'['.repeat(d)}${']'.repeat(d)},${text.slice(1)}`;
    }),
    (b) => rewrite(b, (text) => {
      const m = pick([...text.matchAll(/"[^"]+":\{"dtype"[^}]*\}/g), ...text.matchAll(/"__metadata__":\{[^}]*\}/g)]);
      return m ? text.replace(/\}\s*$/, `,${m[0]}}`) : text;
    }),
  ];

  let parsed = 0;
  let refused = 0;
  let hostileRefused = 0;
  for (let iter = 0; iter < 600; iter++) {
    let bytes = base;
    for (let k = 1 + int(3); k > 0; k--) bytes = pick(mutations)(bytes);
    const beforeHostile = bytes;
    if (r() < 0.15) bytes = pick(hostile)(bytes);
    const isHostile = bytes !== beforeHostile;
    const allowNonFinite = r() < 0.3;
    // Sometimes a tensor-count limit below or near the base file's 10 tensors.
    const maxTensors = r() < 0.2 ? int(14) : undefined;
    let result;
    try {
      result = parseSafetensors(bytes, { allowNonFinite, maxTensors });
    } catch (e) {
      if (!(e instanceof SafetensorsError)) assert.unreachable(`iteration ${iter}: threw ${(e as Error)?.stack ?? e}, not a SafetensorsError`);
      assert.ok((e as Error).message.length < 2000, `iteration ${iter}: a message of ${(e as Error).message.length} characters`);
      refused++;
      if (isHostile) hostileRefused++;
      continue;
    }
    assert.not.ok(isHostile, `iteration ${iter}: a hostile edit (deep nesting or a duplicate key) was accepted`);
    if (maxTensors !== undefined) assert.ok(result.tensors.size <= maxTensors, `iteration ${iter}: ${result.tensors.size} tensors over the limit ${maxTensors}`);
    parsed++;
    for (const [name, ten] of result.tensors) {
      assert.ok(DTYPES.includes(ten.dtype), `${name}: dtype ${ten.dtype}`);
      assert.ok(ten.data instanceof ARRAY_OF[ten.dtype], `${name}: ${ten.dtype} decoded to ${ten.data.constructor.name}`);
      assert.ok(ten.shape.every((d) => Number.isSafeInteger(d) && d >= 0), `${name}: shape ${ten.shape}`);
      assert.is(ten.data.length, ten.shape.reduce((a, b) => a * b, 1), `${name}: data length vs shape ${ten.shape}`);
      if (!allowNonFinite && ten.data instanceof Float32Array) assert.ok(ten.data.every(Number.isFinite), `${name}: non-finite value passed`);
    }
    for (const v of Object.values(result.metadata)) assert.type(v, 'string');
  }
  // Both outcomes must actually occur, or the fuzzer is not exercising anything.
  assert.ok(parsed > 30 && refused > 300 && hostileRefused > 40, `parsed ${parsed}, refused ${refused} (hostile ${hostileRefused})`);
});

// ---------------------------------------------------------------------------------------------

let dir = '';
t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'canet-safetensors-'));
});
t.after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
const leftovers = async (d = dir) => (await readdir(d)).filter((f) => f.startsWith(TEMP_PREFIX));
const oneTensor = (v: number) => ({ w: { data: new Float32Array([v, v + 1]), shape: [2] } });

t('file: write then read; format errors name the path', async () => {
  const path = join(dir, 'model.safetensors');
  await writeSafetensorsFile(path, oneTensor(1), { format: 'pt' });
  const r = await readSafetensorsFile(path);
  assert.equal(Array.from(r.tensors.get('w')!.data), [1, 2]);
  assert.equal(r.metadata, { format: 'pt' });
  assert.equal(Array.from(await readFile(path)), Array.from(serializeSafetensors(oneTensor(1), { format: 'pt' })));
  assert.equal(await leftovers(), []);

  const bad = join(dir, 'bad.safetensors');
  await writeFile(bad, new Uint8Array([1, 2, 3]));
  const err = await readSafetensorsFile(bad).catch((e: unknown) => e);
  assert.ok(err instanceof SafetensorsError);
  assert.match((err as Error).message, `${bad}: file is 3 bytes`);
  const missing = await readSafetensorsFile(join(dir, 'missing.safetensors')).catch((e: unknown) => e);
  assert.match(String(missing), /ENOENT.*missing\.safetensors/);
});

t('file: a write removes what killed writers of the same file left behind, never a live writer\'s', async () => {
  const path = join(dir, 'stale.safetensors');
  // A pid far above Linux's default pid_max (4194304) belongs to no process.
  const dead = `${TEMP_PREFIX}stale.safetensors.4194999.abcdef`;
  const live = `${TEMP_PREFIX}stale.safetensors.${process.ppid}.abcdef`;
  const other = `${TEMP_PREFIX}another.safetensors.4194999.abcdef`;
  for (const f of [dead, live, other]) await writeFile(join(dir, f), new Uint8Array([1, 2, 3]));
  await writeSafetensorsFile(path, oneTensor(1));
  assert.equal((await leftovers()).sort(), [other, live].sort());
  for (const f of [live, other]) await rm(join(dir, f));
});

t('file: a write that fails before the rename leaves the old file and no temporary file', async () => {
  const path = join(dir, 'ckpt.safetensors');
  await writeSafetensorsFile(path, oneTensor(1));
  const old = await readFile(path);

  // Invalid tensors: refused before any file is created.
  const bad = await writeSafetensorsFile(path, { w: { data: new Float32Array(3), shape: [2] } }).catch((e: unknown) => e);
  assert.ok(bad instanceof SafetensorsError);
  assert.equal(await readFile(path), old);
  assert.equal(await leftovers(), []);

  // The process "dies" just before the rename: at that instant the target still holds the old
  // content and the complete new file sits in a temporary file; the error then cleans it up.
  const realRename = fsp.rename;
  let seen = false;
  fsp.rename = async (from, to) => {
    assert.is(String(to), path);
    assert.equal(await readFile(path), old);
    assert.equal(Array.from((await readSafetensorsFile(String(from))).tensors.get('w')!.data), [5, 6]);
    seen = true;
    throw Object.assign(new Error('simulated crash before rename'), { code: 'EIO' });
  };
  try {
    const err = await writeSafetensorsFile(path, oneTensor(5)).catch((e: unknown) => e);
    assert.match(String(err), /simulated crash before rename/);
  } finally {
    fsp.rename = realRename;
  }
  assert.ok(seen);
  assert.equal(await readFile(path), old);
  assert.equal(await leftovers(), []);

  // A rename the OS refuses (the target is a non-empty directory): same guarantees.
  const asDir = join(dir, 'is-a-dir.safetensors');
  await mkdir(asDir);
  await writeFile(join(asDir, 'keep'), 'x');
  const err = await writeSafetensorsFile(asDir, oneTensor(1)).catch((e: unknown) => e);
  assert.ok(err instanceof Error && /EISDIR|ENOTEMPTY|EEXIST|EPERM/.test(String((err as NodeJS.ErrnoException).code)), String(err));
  assert.equal(await readdir(asDir), ['keep']);
  assert.equal(await leftovers(), []);

  // A directory that does not exist: Node's error names the path, nothing is created.
  const noDir = await writeSafetensorsFile(join(dir, 'nope', 'x.safetensors'), oneTensor(1)).catch((e: unknown) => e);
  assert.match(String(noDir), /ENOENT/);

  // Concurrent writers to one target: the result is one writer's complete file.
  await Promise.all([1, 2, 3, 4].map((v) => writeSafetensorsFile(path, oneTensor(10 * v))));
  const final = Array.from((await readSafetensorsFile(path)).tensors.get('w')!.data);
  assert.ok([10, 20, 30, 40].includes(final[0]!) && final[1] === final[0]! + 1, String(final));
  assert.equal(await leftovers(), []);
});

t.run();
