/**
 * Kernel programs, in the style of ONNX Runtime Web's WebGPU ops: a kernel is a pure function from
 * shapes and attributes to a description (WGSL, defines, uniforms, dispatch, cache key). The engine
 * compiles each distinct (kernel, defines) pair once and passes shapes as uniforms, so one pipeline
 * serves every size.
 *
 * WGSL conventions every shader follows:
 * - binding 0 is the uniform block `p` (a struct of 4-byte scalars, in the order of `uniforms`)
 *   when the program has uniforms; the program's `bindings` follow at 1, 2, ...
 * - `{{NAME}}` in the source is replaced by `defines[NAME]` before compilation (workgroup size,
 *   unroll factors, generated code); defines are part of the cache key, uniforms are not.
 * - 1-D kernels index with `flat_id(gid, nwg, WG)` from common.wgsl, because large tensors need
 *   more than 65535 workgroups and the runner folds them into a 2-D grid.
 */
import common from '../shaders/common.wgsl';
import type { Tensor } from './tensor.js';

export type UniformValue = number | { f32: number } | { i32: number };
/** Marks a uniform as f32 (plain numbers are u32). */
export const f32 = (v: number): UniformValue => ({ f32: v });
/** Marks a uniform as i32 (plain numbers are u32). */
export const i32 = (v: number): UniformValue => ({ i32: v });

export interface Program {
  /** Kernel name: the pipeline label, used in errors and profiles. */
  name: string;
  /** WGSL of this kernel (a section of a family file, see `kernelSection`). */
  source: string;
  defines?: Record<string, string | number>;
  uniforms?: UniformValue[];
  /** Storage buffers bound at 1..n in this order. */
  bindings: (Tensor | GPUBuffer)[];
  /** Workgroup counts; a count above the device limit in x is folded into y by the runner. */
  dispatch: [number, number?, number?];
  /** Useful work, for profiles: floating point operations and bytes moved. */
  flops?: number;
  bytes?: number;
}

/** Packs uniforms into a 16-byte-aligned block. */
export function packUniforms(values: readonly UniformValue[]): Uint8Array {
  const bytes = new Uint8Array(Math.max(16, Math.ceil((values.length * 4) / 16) * 16));
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform ${i}: ${v} is not a u32`);
      view.setUint32(i * 4, v, true);
    } else if ('f32' in v) view.setFloat32(i * 4, v.f32, true);
    else view.setInt32(i * 4, v.i32, true);
  });
  return bytes;
}

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

/** Full WGSL for a program: the common prelude, then the kernel with defines substituted. */
export function assembleWgsl(program: Pick<Program, 'source' | 'defines' | 'name'>): string {
  const defines = program.defines ?? {};
  const body = program.source.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = defines[key];
    if (v === undefined) throw new Error(`kernel ${program.name}: define {{${key}}} not given`);
    return String(v);
  });
  return common + '\n' + body;
}

/** Cache key: what the compiled shader depends on (never the sizes passed as uniforms). */
export function programKey(program: Pick<Program, 'name' | 'defines' | 'source'>): string {
  const d = program.defines;
  return d ? `${program.name}|${JSON.stringify(d)}` : program.name;
}

/** Workgroup grid for `threads` invocations of `wg` each: [x, y] with x under the device limit. */
export function grid1d(threads: number, wg: number, maxPerDim = 65535): [number, number] {
  const groups = Math.max(1, Math.ceil(threads / wg));
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}
