/**
 * Checks of programs that declare their interface (engine/program.ts `Program`), shared by the
 * kernel-interface tests: run a few representative calls of some ops with `collectPrograms`, then
 * `checkPrograms` (each distinct `name|variant`) and `sectionCoverage` (every `//# kernel` section
 * of the shader families the tests own was produced by some call).
 */
import { Engine, kernelSection, type Program } from '../engine/entry-node.js';

type AnyProgram = Program;
const keyOf = (p: Program): string => (p.variant ? `${p.name}|${p.variant}` : p.name);

/**
 * Runs `fn` with `engine.run` wrapped so that every program it dispatches is recorded (and still
 * run: the engine compiles each pipeline and checks the values against the declaration), then
 * flushes. Returns the programs recorded, and what `fn` or the flush threw, if anything.
 */
export async function collectPrograms(engine: Engine, fn: () => unknown): Promise<{ programs: AnyProgram[]; error?: unknown }> {
  const programs: AnyProgram[] = [];
  const run = engine.run;
  engine.run = function (this: Engine, p: AnyProgram) {
    programs.push(p);
    return run.call(this, p);
  };
  try {
    await fn();
    await engine.flush();
    return { programs };
  } catch (error) {
    return { programs, error };
  } finally {
    // The wrapper is an own property shadowing the prototype's method.
    delete (engine as { run?: unknown }).run;
  }
}

/** WGSL with its `//` comments removed (so names mentioned in prose do not count as uses). */
const stripComments = (code: string): string => code.replace(/\/\/[^\n]*/g, '');

export interface CheckOptions {
  /**
   * Declared uniforms a kernel may leave unread, by program name; each entry should say why in a
   * comment where it is given. Everything else declared must be read.
   */
  unreadUniforms?: Readonly<Record<string, readonly string[]>>;
}

/**
 * The problems of one program's interface (empty when it is right):
 * 1. the generated WGSL holds one `struct Params` whose fields are the declared uniforms, in order
 *    and with their types (none without uniforms), and the kernel code declares no interface itself;
 * 2. every `p.X` the code reads is declared, and every declared uniform is read;
 * 3. every declared binding is used by the code (indexed, or passed by pointer);
 * 4. the uniform and binding names given are exactly the declared ones;
 * 5. `shader()` called twice gives the same WGSL.
 */
export function programProblems(p: AnyProgram, opts: CheckOptions = {}): string[] {
  const at = keyOf(p);
  const out: string[] = [];
  const spec = p.shader();
  const wgsl = Engine.wgslOf(p);
  if (Engine.wgslOf(p) !== wgsl) out.push(`${at}: shader() gives different WGSL on a second call`);
  const declared = Object.entries(spec.uniforms ?? {});
  const structs = [...wgsl.matchAll(/struct\s+Params\s*\{([^}]*)\}/g)];
  if (declared.length === 0) {
    if (structs.length) out.push(`${at}: declares no uniforms but its WGSL has a struct Params`);
  } else if (structs.length !== 1) {
    out.push(`${at}: WGSL has ${structs.length} struct Params, expected 1`);
  } else {
    const fields = [...structs[0]![1]!.matchAll(/(\w+)\s*:\s*(\w+)/g)].map((m) => `${m[1]}: ${m[2]}`);
    const want = declared.map(([n, t]) => `${n}: ${t}`);
    if (fields.join(', ') !== want.join(', ')) out.push(`${at}: struct Params is {${fields.join(', ')}}, declared {${want.join(', ')}}`);
  }
  const code = stripComments(spec.code);
  if (/struct\s+Params\b/.test(code)) out.push(`${at}: the kernel code declares its own struct Params`);
  if (/@binding\s*\(/.test(code)) out.push(`${at}: the kernel code declares its own @binding`);
  if (/\{\{\w+\}\}/.test(spec.code)) out.push(`${at}: the kernel code holds an unsubstituted define ${spec.code.match(/\{\{\w+\}\}/)![0]}`);
  const names = declared.map(([n]) => n);
  const read = new Set([...code.matchAll(/(?<![\w.])p\.(\w+)/g)].map((m) => m[1]!));
  for (const r of read) if (!names.includes(r)) out.push(`${at}: the code reads p.${r}, which is not declared`);
  const allowed = opts.unreadUniforms?.[p.name] ?? [];
  for (const n of names) if (!read.has(n) && !allowed.includes(n)) out.push(`${at}: uniform ${n} is declared but never read`);
  const bindings = Object.keys(spec.bindings);
  for (const b of bindings) if (!new RegExp(`(?:\\b${b}\\s*\\[|&${b}\\b)`).test(code)) out.push(`${at}: binding ${b} is declared but never used`);
  const same = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();
  const givenU = Object.keys(p.uniforms ?? {});
  if (!same(givenU, names)) out.push(`${at}: uniforms given [${givenU.join(', ')}], declared [${names.join(', ')}]`);
  const givenB = Object.keys(p.bindings);
  if (!same(givenB, bindings)) out.push(`${at}: bindings given [${givenB.join(', ')}], declared [${bindings.join(', ')}]`);
  return out;
}

/**
 * The problems of a set of programs: `programProblems` of one program per distinct key, and any
 * two programs with the same key whose WGSL differs (a compile-time choice missing from the variant).
 */
export function checkPrograms(programs: readonly AnyProgram[], opts: CheckOptions = {}): { keys: string[]; problems: string[] } {
  const byKey = new Map<string, { wgsl: string; first: AnyProgram }>();
  const problems: string[] = [];
  for (const p of programs) {
    const key = keyOf(p);
    const wgsl = Engine.wgslOf(p);
    const seen = byKey.get(key);
    if (!seen) {
      byKey.set(key, { wgsl, first: p });
      problems.push(...programProblems(p, opts));
    } else if (seen.wgsl !== wgsl) problems.push(`${key}: two programs with this key give different WGSL (a compile-time choice is missing from the variant)`);
  }
  return { keys: [...byKey.keys()], problems: [...new Set(problems)] };
}

/** The kernel names of a family file (its `//# kernel NAME` lines). */
export const sectionNames = (family: string): string[] => [...family.matchAll(/^\/\/# kernel\s+(\S+)/gm)].map((m) => m[1]!);

/** A regex matching the section's WGSL with any text in place of each `{{DEFINE}}`. */
function sectionPattern(family: string, name: string): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${kernelSection(family, name).split(/\{\{\w+\}\}/).map(escape).join('[\\s\\S]*?')}$`);
}

/**
 * Which sections of `families` (file name -> text) the programs' kernel code came from: the
 * sections no program produced, and the programs whose code matches no section.
 */
export function sectionCoverage(families: Readonly<Record<string, string>>, programs: readonly AnyProgram[]): { uncovered: string[]; unmatched: string[] } {
  const sections = Object.entries(families).flatMap(([file, text]) => sectionNames(text).map((name) => ({ id: `${file}: ${name}`, re: sectionPattern(text, name) })));
  const covered = new Set<string>();
  const unmatched = new Set<string>();
  const codes = new Map<string, string>();
  for (const p of programs) if (!codes.has(keyOf(p))) codes.set(keyOf(p), p.shader().code);
  for (const [key, code] of codes) {
    const hits = sections.filter((s) => s.re.test(code));
    if (!hits.length) unmatched.add(key);
    hits.forEach((s) => covered.add(s.id));
  }
  return { uncovered: sections.map((s) => s.id).filter((id) => !covered.has(id)), unmatched: [...unmatched] };
}
