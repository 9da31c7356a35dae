/** Node: weights and model files from disk (see loadWeightsBytes and loadModelBytes); errors name the file. */
import { readFile } from 'node:fs/promises';
import type { Engine } from '../engine/engine.js';
import type { Module, LoadReport } from '../net/module.js';
import type { CANet } from '../net/canet.js';
import { loadWeightsBytes } from './state.js';
import { loadModelBytes, type ModelFileConfig } from './model-bytes.js';

/** Reads a weights file; a failure names the file (`what path: no such file`). */
export async function readWeightsBytes(path: string, what = 'weights'): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a weights file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (e as Error).message;
    throw new Error(`${what} ${path}: ${why}`);
  }
}

/** Prefixes an error's message with the file it is about, keeping its class (ModelFileError, SafetensorsError). */
function naming(path: string, e: unknown): unknown {
  if (e instanceof Error && !e.message.startsWith(`weights ${path}: `)) e.message = `weights ${path}: ${e.message}`;
  return e;
}

/** Loads a safetensors file of PyTorch-named weights into a model you built (strict by default). */
export async function loadWeightsFile(model: Module, path: string, opts: { strict?: boolean; allowNonFinite?: boolean } = {}): Promise<LoadReport> {
  const bytes = await readWeightsBytes(path);
  try {
    return loadWeightsBytes(model, bytes, opts);
  } catch (e) {
    throw naming(path, e);
  }
}

/**
 * Builds the network a model file describes (as `canet train` writes them, and the bundled
 * `demoFiles().model`) and loads its weights: loadModelBytes on the file's bytes. The model comes
 * in eval mode. Checkpoints of `canet train` load too (their optimizer state is left out).
 */
export async function loadModelFile(engine: Engine, path: string, overrides: Partial<ModelFileConfig> = {}): Promise<{ model: CANet; config: ModelFileConfig }> {
  const bytes = await readWeightsBytes(path);
  try {
    return loadModelBytes(engine, bytes, overrides);
  } catch (e) {
    throw naming(path, e);
  }
}
