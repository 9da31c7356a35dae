/** Node: load a safetensors weights file into a model (see loadWeightsBytes). */
import { readFile } from 'node:fs/promises';
import type { Module, LoadReport } from '../net/module.js';
import { loadWeightsBytes } from './state.js';

/** Reads a weights file; a failure names the file (`what path: no such file`). */
export async function readWeightsBytes(path: string, what = 'weights'): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new Error(`${what} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

export async function loadWeightsFile(model: Module, path: string, opts: { strict?: boolean; allowNonFinite?: boolean } = {}): Promise<LoadReport> {
  return loadWeightsBytes(model, await readWeightsBytes(path), opts);
}
