/**
 * Kernel tuning for the commands (engine/tune.ts): every command uses the winners already in the
 * tuning file for this adapter, and `--tune` first times the candidate tiles of the shapes this run
 * will use (minutes on SwiftShader, where each candidate compiles for seconds; a long training run
 * earns that back when a winner is faster) and adds them to the file. The file is a cache: one that
 * cannot be read is reported and the built-in tiles are used.
 */
import { existsSync } from 'node:fs';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { autotune } from '../engine/tune.js';
import { defaultTuningFile, loadTuningFile, saveTuningFile } from '../engine/tune-file.js';
import { UsageError, type FlagSpec } from './args.js';

export const tuningFlags: Record<string, FlagSpec> = {
  tune: { type: 'boolean', help: 'first time candidate kernel tiles for this run\'s shapes and keep the fastest in the tuning file (minutes on a software GPU)' },
  tuning: { type: 'string', help: 'tuning file (default: $CANET_TUNING or ~/.cache/canet-gpu/tuning.json); none: use the built-in tiles' },
};

/** A batch of black images [n, h, w, 3]: a tuning workload's input (kernel times do not depend on the values). */
export function blankImages(engine: Engine, n: number, w: number, h: number): Tensor {
  return engine.tensor(new Float32Array(n * h * w * 3), [n, h, w, 3]);
}

/**
 * Loads the tuning file's winners for this adapter and, with --tune, tunes `workload` (a function
 * that records the run's kernels once; autotune discards what it computes) and saves the winners.
 * `calls` is how often this run will repeat the workload: a tile replaces the default only if it
 * saves more than its compile time over that many calls (one image never pays for a compile).
 */
export async function applyTuning(engine: Engine, flags: Record<string, unknown>, workload: () => unknown, calls: number, log: (line: string) => void): Promise<void> {
  const file = flags.tuning === undefined ? defaultTuningFile() : String(flags.tuning);
  if (file === 'none') {
    if (flags.tune) throw new UsageError('--tune needs a tuning file to keep the winners in; drop --tuning none');
    return;
  }
  if (flags.tuning !== undefined && !flags.tune && !existsSync(file)) throw new UsageError(`--tuning ${file}: no such file (pass --tune to create it)`);
  try {
    const n = await loadTuningFile(engine, file);
    if (n) log(`tuning: ${n} tuned kernels for this adapter from ${file}`);
  } catch (e) {
    // importTuning refuses a bad table whole, so engine.tuned is as it was.
    log(`tuning: ignoring ${file}: ${(e as Error).message}`);
  }
  if (!flags.tune) return;
  const t0 = performance.now();
  const report = await autotune(engine, workload, { horizon: Math.max(1, calls) });
  await saveTuningFile(engine, file);
  const faster = report.filter((r) => r.speedup > 1.05).length;
  log(`tuning: timed ${report.length} kernels in ${((performance.now() - t0) / 1000).toFixed(0)} s (${faster} with a tile over 5% faster than the default); saved to ${file}`);
}
