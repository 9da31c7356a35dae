/**
 * Code generation helpers of the kernels that declare their interface (engine/program.ts): used
 * inside a program's `shader()` only, that is on a pipeline-cache miss.
 */

/**
 * `source` with every `{{NAME}}` replaced by `defines[NAME]`; throws naming the kernel for a
 * define that is not given.
 */
export function fill(kernel: string, source: string, defines: Readonly<Record<string, string | number>>): string {
  return source.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = defines[key];
    if (v === undefined) throw new Error(`kernel ${kernel}: define {{${key}}} not given`);
    return String(v);
  });
}
