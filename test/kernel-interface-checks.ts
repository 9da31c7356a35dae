/**
 * Checks of programs that declare their interface (engine/program.ts `Program`), used by
 * test/kernel-interface.test.ts: run representative calls of the ops with `collectPrograms`, then
 * `checkPrograms` (each distinct `name|variant`) and `sectionCoverage` (every `//# kernel` section
 * of the shader files was produced by some call, and every program came from a section).
 */
import { Engine, Tensor, kernelSection, type Program } from '../entry/node.js';
import { programKey } from '../engine/program.js';

/** A program as dispatched, with the WGSL its `shader()` gave at that moment. */
export interface Dispatched {
  program: Program;
  wgsl: string;
}

/** The record of a program dispatched now. */
export const dispatched = (program: Program): Dispatched => ({ program, wgsl: Engine.wgslOf(program) });

/** Longest variant accepted: a variant names compile-time choices, short and explicit. */
const MAX_VARIANT = 120;

/**
 * Runs `fn` with `engine.run` replaced by a recorder: every program it dispatches is recorded with
 * its WGSL at that moment, and each distinct WGSL is validated by the device's shader compiler
 * front end (`createShaderModule` and its compilation messages: WGSL syntax, types, uniformity),
 * but no pipeline is built and nothing is dispatched. Then flushes. Returns the programs recorded,
 * in call order, and what `fn`, the flush or the validation threw, if anything.
 *
 * Why no pipelines: these checks are about the text and the declared interface, and on a software
 * GPU a pipeline costs 0.1-1 s of backend compilation (SwiftShader's or LLVM's), most of this
 * file's time (130 pipelines, 59 s of a SwiftShader run; 297, 271 s on a cold lavapipe). Whether
 * each kernel compiles and computes the right numbers on the adapter is the family tests' job
 * (float64 references, finite differences), which build these same pipelines.
 *
 * The tensors a recorded program would write still get their version advanced, as a dispatch
 * does, so caches derived from a tensor (a folded BatchNorm) see the same writes and the calls
 * take the same paths as a real run. Values read back would be stale: the calls read nothing.
 */
export async function collectPrograms(engine: Engine, fn: () => unknown): Promise<{ programs: Dispatched[]; error?: unknown }> {
  const programs: Dispatched[] = [];
  const validated = new Map<string, Promise<string | null>>();
  engine.run = function (this: Engine, p: Program) {
    const d = dispatched(p);
    programs.push(d);
    if (!validated.has(d.wgsl)) validated.set(d.wgsl, compileErrors(engine.device, d.wgsl).then((e) => (e ? `${programKey(p)}: ${e}` : null)));
    const declared = p.shader().bindings;
    for (const [name, b] of Object.entries(p.bindings)) if (declared[name]?.access === 'read_write' && b instanceof Tensor) b.version++;
  };
  try {
    await fn();
    await engine.flush();
    const errors = (await Promise.all(validated.values())).filter((e): e is string => e !== null);
    if (errors.length) throw new Error(`WGSL the compiler refused:\n${errors.join('\n')}`);
    return { programs };
  } catch (error) {
    return { programs, error };
  } finally {
    // The recorder is an own property shadowing the prototype's method.
    delete (engine as { run?: unknown }).run;
  }
}

/** The error messages of the device's WGSL front end for `code`, joined, or null when it accepts it. */
async function compileErrors(device: GPUDevice, code: string): Promise<string | null> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code });
  const [info, scope] = await Promise.all([module.getCompilationInfo(), device.popErrorScope()]);
  const messages = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
  if (scope && !messages.length) messages.push(scope.message);
  return messages.length ? messages.join('; ') : null;
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
 *    and with their types (no uniform block without uniforms), and the kernel code declares no
 *    interface itself;
 * 2. every `p.X` the code reads is declared, and every declared uniform is read;
 * 3. every declared binding is used by the code (indexed, or passed by pointer);
 * 4. the uniform and binding names given are exactly the declared ones, the values numbers (or
 *    functions returning one);
 * 5. `shader()` gives the same WGSL at every call, and the same as `atDispatch` (what it gave when
 *    the program was dispatched) where that is given;
 * 6. the variant is short.
 */
export function programProblems(p: Program, opts: CheckOptions = {}, atDispatch?: string): string[] {
  const at = programKey(p);
  const out: string[] = [];
  const spec = p.shader();
  const wgsl = Engine.wgslOf(p);
  if (Engine.wgslOf(p) !== wgsl) out.push(`${at}: shader() gives different WGSL on a second call`);
  if (atDispatch !== undefined && atDispatch !== wgsl) out.push(`${at}: shader() gives different WGSL than when the program was dispatched`);
  if ((p.variant?.length ?? 0) > MAX_VARIANT) out.push(`${at}: the variant is longer than ${MAX_VARIANT} characters`);
  const declared = Object.entries(spec.uniforms ?? {});
  const structs = [...wgsl.matchAll(/struct\s+Params\s*\{([^}]*)\}/g)];
  if (declared.length === 0) {
    if (structs.length || /var<uniform>/.test(wgsl)) out.push(`${at}: declares no uniforms but its WGSL has a uniform block`);
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
  for (const [n, v] of Object.entries(p.uniforms ?? {}))
    if (typeof v !== 'number' && typeof v !== 'function') out.push(`${at}: uniform ${n} is given ${JSON.stringify(v)}, not a number`);
  const givenB = Object.keys(p.bindings);
  if (!same(givenB, bindings)) out.push(`${at}: bindings given [${givenB.join(', ')}], declared [${bindings.join(', ')}]`);
  return out;
}

/**
 * The problems of a set of dispatched programs: `programProblems` of one program per distinct key,
 * and any two programs with the same key whose WGSL differed at dispatch (a compile-time choice
 * missing from the variant: a pipeline silently reused for the wrong kernel).
 */
export function checkPrograms(programs: readonly Dispatched[], opts: CheckOptions = {}): { keys: string[]; problems: string[] } {
  const byKey = new Map<string, string>();
  const problems: string[] = [];
  for (const { program, wgsl } of programs) {
    const key = programKey(program);
    const seen = byKey.get(key);
    if (seen === undefined) {
      byKey.set(key, wgsl);
      problems.push(...programProblems(program, opts, wgsl));
    } else if (seen !== wgsl) problems.push(`${key}: two programs with this key give different WGSL (a compile-time choice is missing from the variant)`);
  }
  return { keys: [...byKey.keys()], problems: [...new Set(problems)] };
}

/** The kernel names of a family file (its `//# kernel NAME` lines). */
export const sectionNames = (family: string): string[] => [...family.matchAll(/^\/\/# kernel\s+(\S+)/gm)].map((m) => m[1]!);

/** A number as `section` writes a define (String of a finite number). */
const NUMBER = '-?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?';

/** A regex matching the section's WGSL with a number in place of each `{{DEFINE}}`. */
function sectionPattern(family: string, name: string): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${kernelSection(family, name).split(/\{\{\w+\}\}/).map(escape).join(NUMBER)}$`);
}

/**
 * Where a section of a family file uses a define as anything but a number (engine/ops/shader.ts:
 * a section's defines are numbers; a kernel needing WGSL text from TypeScript is generated): a
 * define alone on its line (a statement or declaration spliced in), or in a type or call position
 * (`{{T}}(0.0)`, `vec4<{{T}}>`, `x: {{T}}`). One line per use found, `file: kernel: {{NAME}} in "line"`.
 */
export function textDefineUses(families: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (const [file, text] of Object.entries(families))
    for (const name of sectionNames(text)) {
      for (const line of kernelSection(text, name).split('\n'))
        for (const m of line.matchAll(/\{\{(\w+)\}\}/g)) {
          const before = line.slice(0, m.index).trimEnd();
          const after = line.slice(m.index! + m[0].length).trimStart();
          const alone = before === '' && (after === '' || after.startsWith('//'));
          if (alone || /[:<]$/.test(before) || /^[(<]/.test(after)) out.push(`${file}: ${name}: ${m[0]} in "${line.trim()}"`);
        }
    }
  return out;
}

/**
 * Which sections of `families` (file name -> text) the programs' kernel code came from: the
 * sections no program produced, and the programs whose code matches no section (generated
 * kernels, `ShaderSpec.generated`, are not looked for).
 */
export function sectionCoverage(families: Readonly<Record<string, string>>, programs: readonly Dispatched[]): { uncovered: string[]; unmatched: string[] } {
  const sections = Object.entries(families).flatMap(([file, text]) => sectionNames(text).map((name) => ({ id: `${file}: ${name}`, re: sectionPattern(text, name) })));
  const covered = new Set<string>();
  const unmatched = new Set<string>();
  const codes = new Map<string, string>();
  for (const { program } of programs) {
    if (codes.has(programKey(program))) continue;
    const spec = program.shader();
    // A generated kernel is written whole by its TypeScript: no section to find.
    if (!spec.generated) codes.set(programKey(program), spec.code);
  }
  for (const [key, code] of codes) {
    const hits = sections.filter((s) => s.re.test(code));
    if (!hits.length) unmatched.add(key);
    hits.forEach((s) => covered.add(s.id));
  }
  return { uncovered: sections.map((s) => s.id).filter((id) => !covered.has(id)), unmatched: [...unmatched] };
}
