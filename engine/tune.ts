/**
 * Autotuning: kernel variants picked per adapter by measurement, not by assumption.
 *
 * `autotune(engine, workload)` runs the workload once while ops report the tunable cases they meet
 * (today: the three GEMMs of every conv2d, keyed by their full geometry), then times each case's
 * candidate variants on scratch inputs of the same shapes and keeps the fastest in
 * `engine.tuned`. Later calls of the same shapes use the winners; other shapes keep the op's
 * per-adapter default. Every candidate is a variant the op's float64 reference tests run.
 * `engine.tuned` is the table of the engine's variant registry (engine/variants.ts), so
 * `engine.variants.describe()` lists the tuned shapes under their family beside the overrides and
 * default rules; forcing conv2d's or convTranspose's kernel kind there (a test, `bench --prefer`)
 * takes precedence over them.
 *
 * Compiling a candidate is the expensive part on CPU adapters (seconds per large tile on
 * SwiftShader), so tuning is explicit and its result is meant to be saved (`exportTuning`, or
 * `loadTuningFile`/`saveTuningFile` in Node) and loaded on later runs.
 */
import type { Engine } from './engine.js';
import type { Tensor } from './tensor.js';

/** One tunable kernel launch that an op met while autotune recorded the workload. */
export interface TuningCase {
  key: string;
  /** Human-readable description for reports (op, kernel and shape). */
  label: string;
  /** Variants to time (the op's default first); each is a value for engine.tuned. */
  candidates: string[];
  /** Records one launch of the case with the variant in engine.tuned (scratch inputs). */
  run(): void;
  /** Releases the scratch inputs. */
  dispose(): void;
}

export interface TuneOptions {
  /** Time keys that engine.tuned already has again (default false: keep them). */
  retune?: boolean;
  /** Timed rounds per candidate; the fastest round counts (default 3). */
  rounds?: number;
  /** Wall time a round aims for, in ms: short kernels are launched several times (default 30). */
  roundMs?: number;
  /** How much faster than the op's default a candidate must run to replace it (default 0.05: 5%). */
  minGain?: number;
  /**
   * Calls over which a candidate's pipeline compile time must pay for itself (default 1000): it
   * replaces the default only if it saves at least compileMs / horizon per call as well. On
   * SwiftShader a large tile compiles for seconds, which a kernel of microseconds never earns back.
   */
  horizon?: number;
  /** Progress lines (one per tuned case). */
  log?: (line: string) => void;
}

export interface TunedCase {
  key: string;
  label: string;
  /**
   * Milliseconds per launch of each candidate (fastest round), and what compiling it costs: the
   * longest compile of that kernel and variant seen in this autotune call, since a pipeline another
   * case compiled first is not free in a fresh process (and compiles again per epilogue there).
   */
  times: { variant: string; ms: number; compileMs: number }[];
  winner: string;
  /** The default variant's time over the winner's (1 when the default won). */
  speedup: number;
}

const now = (): number => performance.now();

/** Milliseconds per launch of `c` with the variant currently in engine.tuned, and its compile time. */
async function timeCase(engine: Engine, c: TuningCase, rounds: number, roundMs: number): Promise<{ ms: number; compileMs: number }> {
  const launch = async (n: number): Promise<number> => {
    const t0 = now();
    for (let i = 0; i < n; i++) engine.scope(() => c.run());
    await engine.sync();
    return (now() - t0) / n;
  };
  const c0 = engine.stats().compileMs;
  await launch(1); // compiles the pipeline: not timed
  const compileMs = engine.stats().compileMs - c0;
  const single = await launch(1);
  const n = Math.max(1, Math.min(64, Math.floor(roundMs / Math.max(single, 1e-3))));
  let best = single;
  for (let r = 1; r < rounds; r++) best = Math.min(best, await launch(n));
  return { ms: best, compileMs };
}

/**
 * The default (first) unless another candidate beats it by `minGain` and by its compile time over
 * `horizon` calls; the fastest of those that do. Noise-level wins keep the default.
 */
export function pickWinner(times: readonly { variant: string; ms: number; compileMs: number }[], minGain: number, horizon: number): { variant: string; ms: number } {
  const d = times[0]!;
  let best: { variant: string; ms: number } = d;
  for (const t of times.slice(1)) {
    const pays = d.ms - t.ms >= Math.max(minGain * d.ms, t.compileMs / horizon);
    if (pays && t.ms < best.ms) best = t;
  }
  return best;
}

/**
 * Runs `workload` once (its tensors are released), then measures the candidates of every tunable
 * case it met and stores the winners in engine.tuned. Returns what was measured, case by case.
 * The workload is whatever the application will run: a forward under noGrad for inference, a
 * training step (forward, backward, optimizer) for training.
 */
export async function autotune(engine: Engine, workload: () => unknown, opts: TuneOptions = {}): Promise<TunedCase[]> {
  const rounds = opts.rounds ?? 3;
  const roundMs = opts.roundMs ?? 30;
  const sink = new Map<string, () => TuningCase>();
  if (engine.tuningSink) throw new Error('autotune: this engine is already tuning (autotune calls do not nest)');
  engine.tuningSink = sink;
  try {
    await engine.scope(async () => {
      await workload();
    });
    await engine.sync();
  } finally {
    engine.tuningSink = null;
  }
  const report: TunedCase[] = [];
  const compileCost = new Map<string, number>();
  for (const [key, make] of sink) {
    if (engine.tuned.has(key) && !opts.retune) continue;
    const previous = engine.tuned.get(key);
    const c = make();
    try {
      const times: TunedCase['times'] = [];
      for (const variant of c.candidates) {
        engine.tuned.set(key, variant);
        const t = await timeCase(engine, c, rounds, roundMs);
        const kernelVariant = `${key.split(' ')[0]} ${variant}`;
        const compileMs = Math.max(t.compileMs, compileCost.get(kernelVariant) ?? 0);
        compileCost.set(kernelVariant, compileMs);
        times.push({ variant, ms: t.ms, compileMs });
      }
      const best = pickWinner(times, opts.minGain ?? 0.05, opts.horizon ?? 1000);
      engine.tuned.set(key, best.variant);
      const entry = { key, label: c.label, times, winner: best.variant, speedup: times[0]!.ms / best.ms };
      report.push(entry);
      opts.log?.(`${c.label}: ${best.variant} ${best.ms.toFixed(3)} ms (default ${c.candidates[0]} ${times[0]!.ms.toFixed(3)} ms, ${times.length} candidates)`);
    } catch (err) {
      if (previous === undefined) engine.tuned.delete(key);
      else engine.tuned.set(key, previous);
      throw err;
    } finally {
      c.dispose();
    }
  }
  return report;
}

/** Identifies an adapter in a tuning file: winners measured on one adapter say nothing of another. */
export function adapterKey(engine: Engine): string {
  const a = engine.adapter;
  return [a.vendor, a.architecture, a.device, a.description].map((s) => s || '-').join(' | ');
}

/** Saved tuning of one or more adapters. */
export interface TuningTable {
  format: 'canet-gpu-tuning/1';
  adapters: Record<string, Record<string, string>>;
}

const VARIANT = /^[0-9a-z@x.-]{1,40}$/;

/** engine.tuned as a table that can be stored (JSON) and loaded by importTuning. */
export function exportTuning(engine: Engine, into?: TuningTable): TuningTable {
  const table: TuningTable = into ?? { format: 'canet-gpu-tuning/1', adapters: {} };
  table.adapters[adapterKey(engine)] = Object.fromEntries([...engine.tuned].sort(([a], [b]) => (a < b ? -1 : 1)));
  return table;
}

/**
 * Loads the entries a table holds for this engine's adapter into engine.tuned (entries of other
 * adapters are ignored); returns how many. Throws on a table that is not one, before changing
 * anything. Ops check each variant when they use it and keep their default for one that does not
 * fit the shape.
 */
/** Whether `t` has the shape of a tuning table (format tag and an adapters object). */
export function isTuningTable(t: unknown): t is TuningTable {
  const x = t as TuningTable | null;
  return !!x && typeof x === 'object' && x.format === 'canet-gpu-tuning/1' && !!x.adapters && typeof x.adapters === 'object';
}

export function importTuning(engine: Engine, table: unknown): number {
  if (!isTuningTable(table)) {
    throw new Error(`importTuning: not a canet-gpu tuning table (expected {"format": "canet-gpu-tuning/1", "adapters": {...}})`);
  }
  const entries = table.adapters[adapterKey(engine)] ?? {};
  for (const [key, variant] of Object.entries(entries)) {
    if (typeof variant !== 'string' || !VARIANT.test(variant)) {
      throw new Error(`importTuning: entry ${JSON.stringify(key)} has variant ${JSON.stringify(variant)}, expected a string such as "16x32@16"`);
    }
  }
  for (const [key, variant] of Object.entries(entries)) engine.tuned.set(key, variant);
  return Object.keys(entries).length;
}

/**
 * For ops: a tuning case on zero-filled scratch tensors of the given shapes (timing does not
 * depend on the values); `run` records one launch with them.
 */
export function scratchCase(engine: Engine, key: string, label: string, candidates: string[], shapes: number[][], run: (inputs: Tensor[]) => void): TuningCase {
  const inputs = shapes.map((s) => engine.empty(s, 'f32'));
  return { key, label, candidates, run: () => run(inputs), dispose: () => inputs.forEach((t) => t.dispose()) };
}

/**
 * For ops: the numbers of engine.tuned's variant for a kernel ('4x8' -> [4, 8], '16x32@16' ->
 * [16, 32, 16]) when it has `count` of them, each a power of two up to `max`; else null (the op
 * keeps its default). While autotune records, the kernel is offered to it first (`make` builds
 * its case only if it is tuned). The key is built only when tuning is in use, so an untuned
 * engine pays nothing per call.
 */
export function tunedNumbers(engine: Engine, key: () => string, make: (key: string) => TuningCase, count: number, max = 64): number[] | null {
  if (!engine.tuningSink && engine.tuned.size === 0) return null;
  const k = key();
  const sink = engine.tuningSink;
  if (sink && !sink.has(k)) sink.set(k, () => make(k));
  const v = engine.tuned.get(k);
  if (!v || !/^\d+(x\d+)*(@\d+)?$/.test(v)) return null;
  const nums = v.split(/[x@]/).map(Number);
  return nums.length === count && nums.every((x) => x >= 1 && x <= max && (x & (x - 1)) === 0) ? nums : null;
}

/** For ops: the candidate list of a case, the default first, without repeats. */
export const candidateList = (def: string, others: readonly string[]): string[] => [...new Set([def, ...others])];
