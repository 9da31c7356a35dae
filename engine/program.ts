/**
 * Kernel programs, in the style of ONNX Runtime Web's WebGPU ops: a kernel is a pure function from
 * shapes and attributes to a description (cache key, uniforms, bindings, dispatch). The engine
 * compiles each distinct key once and passes shapes as uniforms, so one pipeline serves every size.
 *
 * A program declares its interface: named, typed uniforms and named storage bindings with their
 * access and element type. On a pipeline-cache miss (and only then) the engine calls
 * `program.shader()`, generates `struct Params` and the binding declarations from that
 * declaration, and compiles. The values travel by name, so TypeScript and WGSL cannot disagree
 * by position, and the steady state never builds WGSL text: a 3x3 conv2d's generated source is
 * ~27,000 characters, which used to be rebuilt and serialised into its cache key on every call.
 *
 * WGSL conventions every shader follows:
 * - binding 0 is the uniform block `p` (struct `Params`, fields in declaration order) when the
 *   program has uniforms; the declared storage bindings follow at 1, 2, ...
 * - 1-D kernels index with `flat_id(gid, nwg, WG)` from common.wgsl: a program's grid1d spreads
 *   more workgroups than the device allows in x over a 2-D grid, and the kernel folds the index
 *   back. The engine folds nothing itself: a dispatch over maxComputeWorkgroupsPerDimension in
 *   any axis is refused with a ShapeError naming the kernel (Engine.run).
 */
import common from '../shaders/common.wgsl';
import type { Tensor } from './tensor.js';

export type ScalarType = 'u32' | 'i32' | 'f32';
export type Access = 'read' | 'read_write';

/** A storage binding: its access and the element type of its runtime-sized array (`array<T>`). */
export interface BindingDecl {
  access: Access;
  /** WGSL element type, e.g. `f32`, `vec4<f32>`, `u32`, `atomic<u32>`. */
  type: string;
}
/** A read-only storage binding of `array<type>`. */
export const read = (type: string): BindingDecl => ({ access: 'read', type });
/** A read-write storage binding of `array<type>`. */
export const readWrite = (type: string): BindingDecl => ({ access: 'read_write', type });

/** What a program compiles to: its declared interface and the WGSL that follows the prelude. */
export interface ShaderSpec {
  /** Fields of `struct Params` in order, name -> type. */
  uniforms?: Readonly<Record<string, ScalarType>>;
  /** Storage bindings 1..n in order, name -> declaration (`var<storage, access> name: array<type>`). */
  bindings: Readonly<Record<string, BindingDecl>>;
  /** The kernel's WGSL after the generated prelude: helpers and `fn main`. */
  code: string;
  /**
   * The code is written whole by the kernel's TypeScript (engine/ops/shader.ts `generatedSpec`),
   * not a section of a family file: the kernel-interface test does not look for it there.
   */
  generated?: boolean;
}

/**
 * A uniform value: a number, encoded as its declared type; or a function returning one, read at
 * each dispatch and again at every replay of a captured plan (a learning rate that changes each
 * step, say).
 */
export type UniformInput = number | (() => number);

export interface Program {
  /** Kernel name: the pipeline label, used in errors and profiles. */
  name: string;
  /**
   * The compile-time choices the WGSL depends on besides the name (a tile, vector widths, an
   * epilogue's layout), short and explicit: `name|variant` is the pipeline cache key. Never sizes,
   * which travel as uniforms. Two programs with the same key must produce the same shader.
   */
  variant?: string;
  /** Interface and WGSL; called only on a pipeline-cache miss. */
  shader: () => ShaderSpec;
  /** Values of the declared uniforms, by name. */
  uniforms?: Readonly<Record<string, UniformInput>>;
  /** Tensors (or raw buffers) for the declared storage bindings, by name. */
  bindings: Readonly<Record<string, Tensor | GPUBuffer>>;
  /** Workgroup counts, each within maxComputeWorkgroupsPerDimension (grid1d folds larger 1-D grids). */
  dispatch: [number, number?, number?];
  /** Useful work, for profiles: floating point operations and bytes moved. */
  flops?: number;
  bytes?: number;
}

/** Pipeline cache key of a program. */
export const programKey = (p: Pick<Program, 'name' | 'variant'>): string => (p.variant ? `${p.name}|${p.variant}` : p.name);

/** The generated prelude of a spec: `struct Params`, the uniform and storage bindings. */
export function interfaceWgsl(spec: Pick<ShaderSpec, 'uniforms' | 'bindings'>): string {
  const out: string[] = [];
  const uniforms = Object.entries(spec.uniforms ?? {});
  if (uniforms.length) {
    out.push(`struct Params {\n${uniforms.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}`);
    out.push('@group(0) @binding(0) var<uniform> p: Params;');
  }
  Object.entries(spec.bindings).forEach(([n, b], i) => out.push(`@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${n}: array<${b.type}>;`));
  return out.join('\n');
}

/** Whether a spec uses half precision (an f16 binding, or f16 in its code outside comments): it then needs `enable f16;`. */
export const usesF16 = (spec: Pick<ShaderSpec, 'bindings' | 'code'>): boolean =>
  Object.values(spec.bindings).some((b) => /\bf16\b/.test(b.type)) || /\bf16\b/.test(spec.code.replace(/\/\/[^\n]*/g, ''));

/**
 * Full WGSL of a spec: the common helpers, the generated interface, then the kernel's code; a
 * kernel with f16 storage starts with `enable f16;` (WGSL wants it before any declaration).
 */
export function assembleWgsl(spec: ShaderSpec): string {
  // WGSL wants enable directives (`enable subgroups;`, `enable f16;`) before any declaration:
  // a kernel's own ones move above the common prelude, and a kernel with f16 storage gets `enable f16;`.
  const enables: string[] = [];
  const code = spec.code.replace(/^[ \t]*enable\s+[\w\s,]+;[ \t]*$/gm, (d) => {
    enables.push(d.trim());
    return '';
  });
  if (usesF16(spec) && !enables.some((e) => /\bf16\b/.test(e))) enables.unshift('enable f16;');
  return `${enables.length ? `${[...new Set(enables)].join('\n')}\n` : ''}${common}\n${interfaceWgsl(spec)}\n${code}`;
}

/** Byte size of a uniform block of `count` 4-byte fields (16-byte aligned, at least 16). */
export const uniformBlockSize = (count: number): number => Math.max(16, Math.ceil((count * 4) / 16) * 16);

/**
 * Writes the uniform values of `names` (with `types`) into `view` at `at`. Throws a RangeError
 * naming the kernel and field for a missing value, a u32 that is not a non-negative integer
 * below 2^32, or an i32 out of range.
 */
export function writeUniforms(kernel: string, view: DataView, at: number, names: readonly string[], types: readonly ScalarType[], values: Readonly<Record<string, UniformInput>>): void {
  for (let i = 0; i < names.length; i++) {
    const raw = values[names[i]!];
    const v = typeof raw === 'function' ? raw() : raw;
    const o = at + i * 4;
    const type = types[i];
    if (type === 'f32') {
      if (typeof v !== 'number') throw new RangeError(`kernel ${kernel}: uniform ${names[i]} (f32) has no value`);
      view.setFloat32(o, v, true);
    } else if (type === 'u32') {
      if (!Number.isInteger(v) || v! < 0 || v! > 0xffffffff) throw new RangeError(`kernel ${kernel}: uniform ${names[i]} = ${v} is not a u32`);
      view.setUint32(o, v!, true);
    } else {
      if (!Number.isInteger(v) || v! < -0x80000000 || v! > 0x7fffffff) throw new RangeError(`kernel ${kernel}: uniform ${names[i]} = ${v} is not an i32`);
      view.setInt32(o, v!, true);
    }
  }
}

// ------------------------------------------------------------------ shared helpers

const sectionCache = new Map<string, Map<string, string>>();

/**
 * Returns one kernel of a family file. A family file holds shared helpers first, then kernels,
 * each starting at a line `//# kernel NAME`; the section is the shared part plus that kernel.
 */
export function kernelSection(family: string, name: string): string {
  let sections = sectionCache.get(family);
  if (!sections) {
    sections = new Map();
    const parts = family.split(/^\/\/# kernel\s+/m);
    const shared = parts[0]!;
    for (const part of parts.slice(1)) {
      const nl = part.indexOf('\n');
      sections.set(part.slice(0, nl).trim(), shared + '\n' + part.slice(nl + 1));
    }
    sectionCache.set(family, sections);
  }
  const src = sections.get(name);
  if (src === undefined) throw new Error(`no kernel '${name}' in shader family (have: ${[...sections.keys()].join(', ')})`);
  return src;
}

/** Workgroup grid for `threads` invocations of `wg` each: [x, y] with x under the device limit. */
export function grid1d(threads: number, wg: number, maxPerDim = 65535): [number, number] {
  const groups = Math.max(1, Math.ceil(threads / wg));
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}
