/**
 * Code generation for the kernels that declare their interface (engine/program.ts `Program`). One
 * home per kernel (CONTRIBUTING.md, "One home per kernel"):
 * - a kernel with a fixed algorithm is a section of a family file (see `kernelSection`), whose
 *   only `{{NAME}}` defines are numbers (a workgroup size, a tile): `section` / `sectionSpec`;
 * - a kernel whose algorithm is generated (unrolled code, per-variant bodies, an element type
 *   chosen in TypeScript) is written wholly in its TypeScript file, entry point and helpers
 *   included: `generatedSpec`, with the helpers below.
 * Either way the ShaderSpec is that code under the interface declared once, at module level, next
 * to the op, and the prelude (struct Params, bindings) is generated from it. Called only from a
 * program's `shader()`, that is only on a pipeline-cache miss, so no WGSL text work happens per call.
 */
import { type ShaderSpec, kernelSection } from '../program.js';

/** A kernel's declared interface: the typed uniforms and the storage bindings, in order. */
export type Interface = Pick<ShaderSpec, 'uniforms' | 'bindings'>;

/** Defines of a fixed kernel's section: numbers only (workgroup sizes, tiles, unroll counts). */
export type NumericDefines = Readonly<Record<string, number>>;

/**
 * Section `name` of `family` with every `{{KEY}}` replaced by `defines[KEY]`. A missing define
 * throws, and so does a define that is not a finite number: a kernel whose WGSL needs text from
 * TypeScript is generated (`generatedSpec`), not a section.
 */
export function section(family: string, name: string, defines: NumericDefines = {}): string {
  for (const [key, v] of Object.entries(defines))
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new TypeError(`kernel ${name}: define {{${key}}} is ${JSON.stringify(v)}, not a number; a section takes numeric defines only (write a kernel that needs WGSL text from TypeScript with generatedSpec)`);
  return kernelSection(family, name).replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = defines[key];
    if (v === undefined) throw new Error(`kernel ${name}: define {{${key}}} not given`);
    return String(v);
  });
}

/** The ShaderSpec of section `name` of `family` under interface `decl`, numeric defines substituted. */
export function sectionSpec(decl: Interface, family: string, name: string, defines?: NumericDefines): ShaderSpec {
  return { ...decl, code: section(family, name, defines) };
}

/**
 * The ShaderSpec of a generated kernel: `code` is its whole WGSL after the prelude (helpers,
 * entry point, workgroup size), written by its TypeScript file; marked `generated` so that the
 * kernel-interface test does not look for it in the family files.
 */
export function generatedSpec(decl: Interface, code: string): ShaderSpec {
  return { ...decl, code, generated: true };
}

// ------------------------------------------------------------------ helpers for generated WGSL

/**
 * The shared helpers of a family file (what precedes its first `//# kernel`): a generated kernel
 * of a family whose fixed kernels share WGSL functions with it starts with these, so that each
 * helper keeps one home.
 */
export const familyHelpers = (family: string): string => family.split(/^\/\/# kernel\s+/m)[0]!;

/** Workgroup size of the 1-D kernels (one invocation per element or run of elements). */
export const WG = 64;

/**
 * The entry point of a 1-D kernel of `wg` invocations per workgroup (default WG): `index` (default
 * `i`) is the flat invocation index (`flat_id`, see grid1d), and invocations at or past
 * `p.${count}` (default `p.threads`) return at once. `body` is indented by two spaces.
 */
export const main1d = (body: string, { count = 'threads', index = 'i', wg = WG }: { count?: string; index?: string; wg?: number } = {}): string =>
  `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let ${index} = flat_id(gid, nwg, ${wg}u);
  if (${index} >= p.${count}) { return; }
  ${body}
}`;

/** 0, 1, ..., n - 1. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, k) => k);
/** `f(0)` to `f(n - 1)`, one per line: an unrolled loop. */
export const lines = (n: number, f: (i: number) => string): string => range(n).map(f).join('\n');
/** The f32 type of a value `v` wide (4: vec4, 1: scalar). */
export const vtype = (v: number): string => (v === 4 ? 'vec4<f32>' : 'f32');
/** Component c of a value of width v (the value itself for scalars). */
export const comp = (name: string, v: number, c: number): string => (v === 4 ? `${name}.${'xyzw'[c]}` : name);
/** Greatest common divisor (tap periods of strided, dilated convolutions). */
export const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
