/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written in plain
 * TypeScript over Uint8Array so the same code runs in Node and in browsers (no Node imports here;
 * `weights/file.ts` adds the file system).
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON mapping each tensor
 * name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the first byte after
 * the header) plus an optional `"__metadata__": {string: string}`, then the raw little-endian data.
 *
 * Reading validates everything before decoding anything, so a bad file throws one
 * `SafetensorsError` naming the problem and never yields a partial result. Writing produces the
 * same bytes as the reference implementation (safetensors 0.8, checked byte for byte in
 * `test/safetensors.test.ts`).
 */
import { f16BitsToF32, f32ToF16Bits } from '../engine/half-float.js';

/** Element types this module reads. Floats decode to float32, I32/I64 to Int32Array. */
export type SafeDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'U8' | 'I8' | 'U32';

/** Element types this module writes (the ones the engine produces). */
export type SafeWriteDType = 'F32' | 'F16' | 'I32' | 'I64';

/** One decoded tensor. `dtype` is the type stored in the file; `data` is row-major, decoded. */
export interface SafeTensorEntry {
  dtype: SafeDType;
  shape: number[];
  /** F32/F16/BF16/F64: Float32Array; I32/I64: Int32Array; U8: Uint8Array; I8: Int8Array; U32: Uint32Array. */
  data: Float32Array | Int32Array | Uint32Array | Uint8Array | Int8Array;
}

/** A parsed file: tensors in data-offset order, and the `__metadata__` strings ({} when absent). */
export interface ParsedSafetensors {
  tensors: Map<string, SafeTensorEntry>;
  metadata: Record<string, string>;
}

/** A tensor to write. `dtype` defaults to F32 for a Float32Array and I32 for an Int32Array. */
export interface SafeTensorInput {
  data: Float32Array | Int32Array;
  shape: readonly number[];
  /** F16 needs a Float32Array (rounded to nearest even); I64 needs an Int32Array (sign-extended). */
  dtype?: SafeWriteDType;
}

/** Options for {@link parseSafetensors}. */
export interface ParseOptions {
  /** Accept NaN and ±Infinity in float tensors (refused by default: they mean a diverged run). */
  allowNonFinite?: boolean;
  /**
   * Most tensors a header may declare ({@link MAX_TENSORS} by default). Raise it for a file of a
   * larger model than any this package builds.
   */
  maxTensors?: number;
}

/** Options for {@link serializeSafetensors}. */
export interface SerializeOptions {
  /** Write NaN and ±Infinity (refused by default so a diverged run cannot overwrite a good checkpoint). */
  allowNonFinite?: boolean;
}

/** The bytes are not a valid safetensors file, or the tensors given cannot be written as one. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The header is JSON held in memory; real headers are kilobytes, so a larger one means a corrupt length. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Deepest nesting of JSON arrays and objects a header may have. A valid header nests 3 deep (the
 * header object, a tensor's entry, its shape or offsets); the reference parser refuses deep
 * nesting too. The check runs on the raw text before JSON.parse, so a header of a million '['
 * costs one linear scan, not a recursion per level.
 */
export const MAX_HEADER_DEPTH = 8;

/**
 * Most tensors a header may declare by default. The largest model this package builds,
 * CANet-ResNet101 with the compatible head, has 683 state-dict entries (344 weights and biases,
 * 339 BatchNorm buffers and counters; net/spec.ts computes them, test/weights-defects.test.ts
 * checks the count); a training checkpoint adds two Adam moments per weight (1371 entries), and a
 * torchvision ResNet-152 file for --pretrained has 932. 16384 is over 10x the largest, while the
 * per-tensor work of a hostile header at the limit (validate, sort, decode) stays in milliseconds.
 * Raise it with the `maxTensors` parse option.
 */
export const MAX_TENSORS = 16384;

const DTYPE_BYTES: Record<SafeDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8, U8: 1, I8: 1, U32: 4 };
const FLOAT_DTYPES = new Set<SafeDType>(['F32', 'F16', 'BF16', 'F64']);
const METADATA_KEY = '__metadata__';

function fail(message: string): never {
  throw new SafetensorsError(message);
}

// Typed arrays use the host's byte order; the format is little-endian. Every host we target is
// little-endian, but the DataView paths keep a big-endian host correct rather than silently wrong.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// float16 conversions

// One home for binary16 on the CPU: engine/half-float.ts (the engine's f16 tensors use it too).
export { f32ToF16Bits, f16BitsToF32 };

// Decoding a checkpoint's F16 tensors element by element through f16BitsToF32 is several times
// slower than one table lookup; the table is 256 KiB, built on first use.
let f16Table: Float32Array | undefined;
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

// ---------------------------------------------------------------------------------------------
// parsing

interface HeaderEntry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  begin: number;
  end: number;
}

/** A short description of a JSON value for messages (a corrupt header can hold megabyte strings). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}...` : JSON.stringify(v);
  return String(v);
}
/** @internal Caps text built from file content: a corrupt header can hold huge arrays or names. */
export const clipForMessage = (s: string, max = 200): string => (s.length > max ? `${s.slice(0, max)}...` : s);
/** @internal A name from a file, quoted for a message: at most ~200 characters of it (names can be megabytes). */
export const quoteForMessage = (name: string): string => JSON.stringify(name.length > 200 ? name.slice(0, 200) : name).slice(0, 203) + (name.length > 200 ? '...' : '');
const json = (v: unknown): string => clipForMessage(JSON.stringify(v));
const fmtShape = (shape: readonly unknown[]): string => clipForMessage(`[${shape.join(', ')}]`);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * One linear pass over the header text, before JSON.parse and before any recursive work: refuses
 * nesting deeper than {@link MAX_HEADER_DEPTH}, more than `maxTensors` top-level keys, and a key
 * repeated within one object (JSON.parse would keep the last silently; the format forbids
 * duplicates, and two `__metadata__` entries or two entries for one tensor mean a forged or
 * corrupt file). Each refusal stops the scan where it is found. Malformed JSON is left to
 * JSON.parse, whose message is more precise.
 */
function scanHeader(text: string, maxTensors: number): void {
  // One set of keys per open object (null for arrays); keys are compared decoded, so "a" and
  // "\u0061" are the same key. Total work and memory are linear in the text.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  let tensors = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const keys = stack[stack.length - 1];
      if (keys && expectKey) {
        let key = text.slice(start + 1, i);
        if (escaped) {
          try {
            key = JSON.parse(text.slice(start, i + 1)) as string;
          } catch {
            return; // malformed: JSON.parse reports it
          }
        }
        if (keys.has(key))
          fail(`header has the key ${quoteForMessage(key)} twice${stack.length === 1 ? '' : ' in one entry'} (at character ${start}): duplicate keys are not allowed`);
        keys.add(key);
        if (stack.length === 1 && key !== METADATA_KEY && ++tensors > maxTensors)
          fail(`header declares more than ${maxTensors} tensors; no model needs that many (raise the limit with the maxTensors option if this file is genuine)`);
        expectKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_HEADER_DEPTH) fail(`header nests deeper than ${MAX_HEADER_DEPTH} levels (at character ${i}); a safetensors header nests 3`);
      stack.push(c === 0x7b ? new Set() : null);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
}

function parseEntry(name: string, raw: unknown, dataBytes: number): HeaderEntry {
  const where = `tensor ${quoteForMessage(name)}`;
  if (!isPlainObject(raw)) return fail(`${where}: header entry must be an object with dtype, shape and data_offsets, got ${describe(raw)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (dtype === undefined) fail(`${where}: header entry has no "dtype"`);
  if (shape === undefined) fail(`${where}: header entry has no "shape"`);
  if (offsets === undefined) fail(`${where}: header entry has no "data_offsets"`);
  if (typeof dtype !== 'string') return fail(`${where}: "dtype" must be a string, got ${describe(dtype)}`);
  if (!Object.prototype.hasOwnProperty.call(DTYPE_BYTES, dtype))
    fail(`${where}: unsupported dtype ${describe(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  if (!Array.isArray(shape)) return fail(`${where}: "shape" must be an array of integers, got ${describe(shape)}`);
  shape.forEach((d: unknown, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      fail(`${where}: shape ${json(shape)} has dimension ${i} = ${describe(d)}, expected a non-negative integer`);
  });
  if (!Array.isArray(offsets) || offsets.length !== 2)
    return fail(`${where}: "data_offsets" must be [begin, end], got ${json(offsets)}`);
  const [begin, end] = offsets as unknown[];
  if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < 0)
    return fail(`${where}: data_offsets ${json(offsets)} must be two non-negative integers`);
  if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] has begin > end`);
  if (end > dataBytes) fail(`${where}: data_offsets [${begin}, ${end}] run past the data section (${dataBytes} bytes)`);
  const size = DTYPE_BYTES[dtype as SafeDType];
  // A product past 2^53 is inexact but still far above any real byte length, so the check holds.
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  if (numel * size !== end - begin)
    fail(`${where}: ${dtype} shape ${fmtShape(shape)} needs ${numel * size} bytes (${numel} x ${size}), data_offsets [${begin}, ${end}] hold ${end - begin}`);
  return { name, dtype: dtype as SafeDType, shape: (shape as number[]).slice(), begin, end };
}

function parseMetadata(raw: unknown): Record<string, string> {
  if (!isPlainObject(raw)) return fail(`"${METADATA_KEY}" must be an object of strings, got ${describe(raw)}`);
  for (const [k, v] of Object.entries(raw)) if (typeof v !== 'string') fail(`"${METADATA_KEY}" value for key ${quoteForMessage(k)} must be a string, got ${describe(v)}`);
  // Object.fromEntries defines own properties, so a key named "__proto__" stays a plain key.
  return Object.fromEntries(Object.entries(raw as Record<string, string>));
}

/** Copies `len` bytes at `at` into a fresh buffer (aligned for any view, and not aliasing the input). */
function copyBytes(bytes: Uint8Array, at: number, len: number): ArrayBuffer {
  return bytes.slice(at, at + len).buffer;
}

function decode(bytes: Uint8Array, at: number, t: HeaderEntry, numel: number): SafeTensorEntry['data'] {
  const len = t.end - t.begin;
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, len);
  switch (t.dtype) {
    case 'U8':
      return new Uint8Array(copyBytes(bytes, at, len));
    case 'I8':
      return new Int8Array(copyBytes(bytes, at, len));
    case 'F32':
    case 'I32':
    case 'U32': {
      const Ctor = t.dtype === 'F32' ? Float32Array : t.dtype === 'I32' ? Int32Array : Uint32Array;
      if (HOST_LITTLE_ENDIAN) return new Ctor(copyBytes(bytes, at, len));
      const out = new Ctor(numel);
      for (let i = 0; i < numel; i++) out[i] = t.dtype === 'F32' ? view.getFloat32(4 * i, true) : t.dtype === 'I32' ? view.getInt32(4 * i, true) : view.getUint32(4 * i, true);
      return out;
    }
    case 'F16': {
      const table = f16ToF32Table();
      const out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) out[i] = table[view.getUint16(2 * i, true)]!;
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the bits into place, no rounding involved.
      const out = new Float32Array(numel);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < numel; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'F64': {
      const out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) {
        const v = view.getFloat64(8 * i, true);
        out[i] = v;
        // Rounding to float32 is expected; turning a finite value into Infinity is data loss.
        if (Number.isFinite(v) && !Number.isFinite(out[i]!))
          fail(`tensor ${quoteForMessage(t.name)}: F64 value ${v} at index ${i} is outside the float32 range`);
      }
      return out;
    }
    case 'I64': {
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const lo = view.getInt32(8 * i, true);
        const hi = view.getInt32(8 * i + 4, true);
        // In int32 range exactly when the high word is the sign extension of the low word.
        if (hi !== lo >> 31) fail(`tensor ${quoteForMessage(t.name)}: I64 value ${view.getBigInt64(8 * i, true)} at index ${i} does not fit in int32`);
        out[i] = lo;
      }
      return out;
    }
  }
}

/**
 * Parses a safetensors file held in memory. Float tensors (F32, F16, BF16, F64) decode to
 * Float32Array, I32 and I64 to Int32Array (I64 values must fit in int32: PyTorch stores
 * `num_batches_tracked` as I64), U8/I8/U32 keep their type. The result never aliases `bytes`.
 *
 * Throws a {@link SafetensorsError} naming the problem (and the tensor, where there is one) for a
 * truncated file, a bad header length, a header that is not UTF-8 JSON of the expected form, an
 * unsupported dtype, bad shapes or offsets, a size that disagrees with the shape, overlapping
 * tensors, an I64 or F64 value out of range, or NaN/Infinity in a float tensor (unless
 * `opts.allowNonFinite`). Gaps between tensors are allowed.
 */
export function parseSafetensors(input: ArrayBuffer | ArrayBufferView, opts: ParseOptions = {}): ParsedSafetensors {
  // Any view (Buffer, DataView, a Uint8Array from another realm) is read as its bytes, uncopied.
  const bytes = ArrayBuffer.isView(input) ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength) : new Uint8Array(input);
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const lenView = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lenLo = lenView.getUint32(0, true);
  const lenHi = lenView.getUint32(4, true);
  const headerLen = lenHi * 2 ** 32 + lenLo; // exact below 2^53; above that it is absurd anyway
  if (headerLen > MAX_HEADER_BYTES) fail(`header length ${lenView.getBigUint64(0, true)} is absurd (limit ${MAX_HEADER_BYTES} bytes): not a safetensors file, or a corrupt one`);
  if (8 + headerLen > bytes.length) fail(`header length ${headerLen} runs past the end of the file (${bytes.length} bytes): truncated file?`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    return fail(`header (${headerLen} bytes) is not valid UTF-8`);
  }
  const maxTensors = opts.maxTensors ?? MAX_TENSORS;
  if (!(maxTensors >= 0)) fail(`maxTensors must be a non-negative number, got ${String(maxTensors)}`);
  scanHeader(text, maxTensors);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON: ${clipForMessage((e as Error).message)}`);
  }
  if (!isPlainObject(json)) return fail(`header must be a JSON object of tensors, got ${describe(json)}`);

  const dataStart = 8 + headerLen;
  const dataBytes = bytes.length - dataStart;
  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(raw);
    else entries.push(parseEntry(name, raw, dataBytes));
  }

  // Overlap check on byte ranges: sort by begin, every non-empty range must start at or after the
  // furthest end seen so far. Empty tensors occupy no bytes and cannot overlap anything.
  const ordered = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let furthest: HeaderEntry | undefined;
  for (const t of ordered) {
    if (t.begin === t.end) continue;
    if (furthest && t.begin < furthest.end)
      fail(`tensors ${quoteForMessage(furthest.name)} [${furthest.begin}, ${furthest.end}] and ${quoteForMessage(t.name)} [${t.begin}, ${t.end}] overlap in the data section`);
    if (!furthest || t.end > furthest.end) furthest = t;
  }

  const tensors = new Map<string, SafeTensorEntry>();
  for (const t of ordered) {
    const numel = (t.end - t.begin) / DTYPE_BYTES[t.dtype];
    const data = decode(bytes, dataStart + t.begin, t, numel);
    if (FLOAT_DTYPES.has(t.dtype) && !opts.allowNonFinite) {
      const bad = firstNonFinite(data as Float32Array);
      if (bad >= 0) fail(`tensor ${quoteForMessage(t.name)}: non-finite value ${data[bad]} at index ${bad} (${t.dtype}, shape ${fmtShape(t.shape)}); pass allowNonFinite to accept`);
    }
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data });
  }
  return { tensors, metadata };
}

function firstNonFinite(a: ArrayLike<number>): number {
  // x - x is 0 for finite x and NaN for NaN and ±Infinity: one cheap test for both.
  for (let i = 0; i < a.length; i++) if (a[i]! - a[i]! !== 0) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// writing

// The reference writer orders tensors by dtype, descending in its enum order (I64, F32, I32, F16
// for ours), then by name. Besides matching its bytes, larger elements first keeps every tensor's
// data aligned to its element size, since the data section starts at a multiple of 8.
const WRITE_RANK: Record<SafeWriteDType, number> = { I64: 3, F32: 2, I32: 1, F16: 0 };

/** Compares by Unicode code point, which is UTF-8 byte order (the reference sorts names as bytes). */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d) return d;
  }
}

interface Planned {
  name: string;
  dtype: SafeWriteDType;
  shape: number[];
  data: Float32Array | Int32Array;
  begin: number;
  end: number;
}

function planTensor(name: string, t: SafeTensorInput, allowNonFinite: boolean): Omit<Planned, 'begin' | 'end'> {
  const where = `tensor ${quoteForMessage(name)}`;
  if (name === METADATA_KEY) fail(`${where}: the name is reserved for the metadata`);
  if (!isPlainObject(t)) fail(`${where}: expected {data, shape, dtype?}, got ${describe(t)}`);
  const { data, shape } = t;
  if (!(data instanceof Float32Array) && !(data instanceof Int32Array))
    fail(`${where}: data must be a Float32Array or an Int32Array, got ${(data as object | undefined)?.constructor?.name ?? describe(data)}`);
  const dtype: SafeWriteDType = t.dtype ?? (data instanceof Float32Array ? 'F32' : 'I32');
  if (!Object.prototype.hasOwnProperty.call(WRITE_RANK, dtype)) fail(`${where}: cannot write dtype "${dtype}" (writable: ${Object.keys(WRITE_RANK).join(', ')})`);
  const wantFloat = dtype === 'F32' || dtype === 'F16';
  if (wantFloat !== data instanceof Float32Array) fail(`${where}: dtype ${dtype} needs ${wantFloat ? 'a Float32Array' : 'an Int32Array'}, got a ${data.constructor.name}`);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    fail(`${where}: shape must be an array of non-negative integers, got ${json(shape)}`);
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel !== data.length) fail(`${where}: shape ${fmtShape(shape)} has ${numel} elements, data has ${data.length}`);
  if (wantFloat) {
    const bad = allowNonFinite ? -1 : firstNonFinite(data);
    if (bad >= 0) fail(`${where}: non-finite value ${data[bad]} at index ${bad}; pass allowNonFinite to write it`);
    if (dtype === 'F16')
      for (let i = 0; i < data.length; i++) {
        // 65520 and above round to Infinity in binary16: refuse rather than change the weights.
        if (Number.isFinite(data[i]!) && Math.abs(data[i]!) >= 65520) fail(`${where}: value ${data[i]} at index ${i} is outside the F16 range (max 65504)`);
      }
  }
  return { name, dtype, shape: shape.slice(), data };
}

function writeData(out: Uint8Array, at: number, t: Planned): void {
  const view = new DataView(out.buffer, out.byteOffset + at, t.end - t.begin);
  const n = t.data.length;
  switch (t.dtype) {
    case 'F32':
    case 'I32':
      if (HOST_LITTLE_ENDIAN) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
      else if (t.dtype === 'F32') for (let i = 0; i < n; i++) view.setFloat32(4 * i, t.data[i]!, true);
      else for (let i = 0; i < n; i++) view.setInt32(4 * i, t.data[i]!, true);
      return;
    case 'F16':
      for (let i = 0; i < n; i++) view.setUint16(2 * i, f32ToF16Bits(t.data[i]!), true);
      return;
    case 'I64':
      for (let i = 0; i < n; i++) {
        const v = t.data[i]!;
        view.setInt32(8 * i, v, true);
        view.setInt32(8 * i + 4, v < 0 ? -1 : 0, true);
      }
      return;
  }
}

/**
 * Serializes tensors (and optional string metadata) to safetensors bytes, byte-identical to the
 * reference implementation: tensors ordered by dtype (I64, F32, I32, F16) then name, compact JSON
 * header padded with spaces to a multiple of 8 bytes, little-endian data.
 *
 * Throws a {@link SafetensorsError} naming the tensor for a shape that disagrees with the data
 * length, a data type that does not match the dtype, the reserved name `__metadata__`, a
 * non-string metadata value, NaN/Infinity (unless `opts.allowNonFinite`), or an F16 value past
 * 65504. Nothing is produced unless every tensor is valid.
 */
export function serializeSafetensors(tensors: Record<string, SafeTensorInput>, metadata?: Record<string, string>, opts: SerializeOptions = {}): Uint8Array {
  if (!isPlainObject(tensors)) fail(`tensors must be an object mapping names to {data, shape, dtype?}, got ${describe(tensors)}`);
  if (metadata !== undefined) parseMetadata(metadata);
  const planned = Object.entries(tensors)
    .map(([name, t]) => planTensor(name, t, !!opts.allowNonFinite))
    .sort((a, b) => WRITE_RANK[b.dtype] - WRITE_RANK[a.dtype] || compareCodePoints(a.name, b.name));

  let offset = 0;
  const layout: Planned[] = planned.map((t) => {
    const begin = offset;
    offset += t.data.length * DTYPE_BYTES[t.dtype];
    return { ...t, begin, end: offset };
  });
  // Built by hand rather than with JSON.stringify on an object, which would move integer-like
  // names ("0", "1") to the front and break the offset order the reference writes.
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"${METADATA_KEY}":${JSON.stringify(metadata)}`);
  for (const t of layout) parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${t.begin},${t.end}]}`);
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLen = Math.ceil(json.length / 8) * 8;
  if (headerLen > MAX_HEADER_BYTES) fail(`header would be ${headerLen} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`);

  const out = new Uint8Array(8 + headerLen + offset);
  const head = new DataView(out.buffer);
  head.setUint32(0, headerLen, true);
  head.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  for (const t of layout) writeData(out, 8 + headerLen + t.begin, t);
  return out;
}
