/** Node: load a safetensors weights file into a model (see loadWeightsBytes). */
import { readFile } from 'node:fs/promises';
import type { Module, LoadReport } from '../net/module.js';
import { loadWeightsBytes } from './state.js';

export async function loadWeightsFile(model: Module, path: string, opts: { strict?: boolean; allowNonFinite?: boolean } = {}): Promise<LoadReport> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(`weights ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return loadWeightsBytes(model, bytes, opts);
}
