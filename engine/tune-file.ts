/**
 * Tuning tables on disk (Node only; engine/tune.ts is the platform-neutral part). One JSON file
 * holds the winners of every adapter it has seen, so a machine with two GPUs, or SwiftShader next
 * to a real GPU, keeps both; saving merges this engine's entries into what the file has.
 */
import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Engine } from './engine.js';
import { type TuningTable, exportTuning, importTuning, isTuningTable } from './tune.js';
import { writeFileAtomic } from './atomic-file.js';

/** $CANET_TUNING, else $XDG_CACHE_HOME/canet-gpu/tuning.json, else ~/.cache/canet-gpu/tuning.json. */
export function defaultTuningFile(): string {
  if (process.env.CANET_TUNING) return process.env.CANET_TUNING;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'canet-gpu', 'tuning.json');
}

async function readTable(path: string): Promise<TuningTable | null> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return JSON.parse(text) as TuningTable;
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message}); delete it to start a new tuning table`);
  }
}

/** Loads this adapter's entries of `path` into engine.tuned; 0 when the file does not exist. */
export async function loadTuningFile(engine: Engine, path = defaultTuningFile()): Promise<number> {
  const table = await readTable(path);
  if (!table) return 0;
  try {
    return importTuning(engine, table);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Writes engine.tuned as this adapter's entries of `path` (atomically), keeping other adapters'. */
export async function saveTuningFile(engine: Engine, path = defaultTuningFile()): Promise<void> {
  const old = await readTable(path).catch(() => null);
  const table = isTuningTable(old) ? old : undefined;
  await fsp.mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(exportTuning(engine, table), null, 1) + '\n'));
}
