/**
 * Code generation for the kernels that declare their interface (engine/program.ts `Program`): a
 * kernel's WGSL is a section of a family file (see `kernelSection`) with its `{{NAME}}` defines
 * substituted, and its ShaderSpec is that code under the interface declared once, at module level,
 * next to the op. Called only from a program's `shader()`, that is only on a pipeline-cache miss,
 * so no WGSL text work happens per call. The one home of `{{NAME}}` substitution, and of the
 * small helpers that generated (unrolled) WGSL is written with.
 */
import { type ShaderSpec, kernelSection } from '../program.js';

/** A kernel's declared interface: the typed uniforms and the storage bindings, in order. */
export type Interface = Pick<ShaderSpec, 'uniforms' | 'bindings'>;

/** Section `name` of `family` with every `{{KEY}}` replaced by `defines[KEY]`; a missing define throws. */
export function section(family: string, name: string, defines: Readonly<Record<string, string | number>> = {}): string {
  return kernelSection(family, name).replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = defines[key];
    if (v === undefined) throw new Error(`kernel ${name}: define {{${key}}} not given`);
    return String(v);
  });
}

/** The ShaderSpec of section `name` of `family` under interface `decl`, defines substituted. */
export function sectionSpec(decl: Interface, family: string, name: string, defines?: Readonly<Record<string, string | number>>): ShaderSpec {
  return { ...decl, code: section(family, name, defines) };
}

// ------------------------------------------------------------------ helpers for generated WGSL

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
