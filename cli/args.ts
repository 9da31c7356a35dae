/** A small, strict command-line parser: known flags only, typed values, and a usage text per command. */

export interface FlagSpec {
  type: 'string' | 'number' | 'boolean';
  help: string;
  default?: string | number | boolean;
  /** For numbers: must be an integer >= this. */
  minInt?: number;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Parsed {
  positional: string[];
  flags: Record<string, string | number | boolean | undefined>;
  help: boolean;
}

export function parseCommand(spec: CommandSpec, argv: string[]): Parsed {
  const flags: Parsed['flags'] = {};
  for (const [k, f] of Object.entries(spec.flags)) flags[k] = f.default;
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const [rawKey, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    const key = rawKey;
    const f = spec.flags[key];
    if (!f) throw new UsageError(`canet ${spec.name}: unknown option --${key} (see canet ${spec.name} --help)`);
    if (f.type === 'boolean') {
      flags[key] = inline === undefined ? true : inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`canet ${spec.name}: --${key} needs a value`);
    if (f.type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new UsageError(`canet ${spec.name}: --${key} must be a number, got '${value}'`);
      if (f.minInt !== undefined && (!Number.isInteger(n) || n < f.minInt))
        throw new UsageError(`canet ${spec.name}: --${key} must be an integer >= ${f.minInt}, got '${value}'`);
      flags[key] = n;
    } else flags[key] = value;
  }
  return { positional, flags, help };
}

export function usage(spec: CommandSpec): string {
  const lines = [`canet ${spec.name}: ${spec.summary}`, '', `usage: ${spec.usage}`, '', 'options:'];
  for (const [k, f] of Object.entries(spec.flags)) {
    const arg = f.type === 'boolean' ? '' : f.type === 'number' ? ' N' : ' VALUE';
    const def = f.default !== undefined && f.default !== false ? ` (default ${f.default})` : '';
    lines.push(`  --${k}${arg}`.padEnd(26) + f.help + def);
  }
  lines.push('  --help'.padEnd(26) + 'this text');
  return lines.join('\n');
}

/** The --max-megapixels flag of the commands that read images (the decoding budget, data/image-io.ts). */
export const maxMegapixelsFlag: Record<string, FlagSpec> = {
  'max-megapixels': { type: 'number', help: 'largest image decoded, in megapixels (refused from its header above this)', default: 40 },
};

/** The image-reading options of the --max-megapixels flag. */
export function imageBudget(flags: Record<string, unknown>): { maxPixels: number; raiseWith: string } {
  const mp = Number(flags['max-megapixels'] ?? 40);
  if (!(mp > 0)) throw new UsageError(`--max-megapixels must be a positive number, got '${flags['max-megapixels']}'`);
  return { maxPixels: mp * 1e6, raiseWith: '--max-megapixels' };
}

/** The --precision flag of the commands that run inference (CANet.half: f16 where the adapter has shader-f16). */
export const precisionFlag: Record<string, FlagSpec> = {
  precision: { type: 'string', help: "inference storage precision, f32 or f16 (f16 needs an adapter with shader-f16, e.g. CANET_SOFTWARE_GPU=lavapipe)", default: 'f32' },
};

/** The value of --precision: 'f32' or 'f16'. */
export function parsePrecision(flags: Record<string, unknown>): 'f32' | 'f16' {
  const v = String(flags.precision ?? 'f32');
  if (v !== 'f32' && v !== 'f16') throw new UsageError(`--precision must be f32 or f16, got '${v}'`);
  return v;
}

/** Parses "WxH" (e.g. 512x256) into [width, height]. */
export function parseSize(s: string, what = '--size'): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (!m) throw new UsageError(`${what} must be WIDTHxHEIGHT, e.g. 512x256; got '${s}'`);
  const w = Number(m[1]);
  const h = Number(m[2]);
  if (w <= 0 || h <= 0) throw new UsageError(`${what} must be positive, got '${s}'`);
  return [w, h];
}
