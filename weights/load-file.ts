/** Node: load a safetensors weights file into a model (see loadWeightsBytes). */
import { readFile } from 'node:fs/promises';
import type { Module, LoadReport } from '../net/module.js';
import { loadWeightsBytes } from './state.js';

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

export async function loadWeightsFile(model: Module, path: string, opts: { strict?: boolean; allowNonFinite?: boolean } = {}): Promise<LoadReport> {
  return loadWeightsBytes(model, await readWeightsBytes(path), opts);
}
