/**
 * safetensors files on disk (Node only; `weights/safetensors.ts` is the platform-neutral part).
 * Writes are atomic (engine/atomic-file.ts): a crash leaves the old file or the new one, never half.
 */
import { promises as fsp } from 'node:fs';
import { writeFileAtomic } from '../engine/atomic-file.js';
export { writeFileAtomic, TEMP_PREFIX } from '../engine/atomic-file.js';
import { parseSafetensors, serializeSafetensors, SafetensorsError, type ParseOptions, type ParsedSafetensors, type SafeTensorInput, type SerializeOptions } from './safetensors.js';

/**
 * Reads and parses a safetensors file (see {@link parseSafetensors} for dtypes and checks).
 * File-system errors (missing file, permissions) are Node's own, which name the path; format
 * errors are {@link SafetensorsError}s with the path in front of the message.
 */
export async function readSafetensorsFile(path: string, opts: ParseOptions = {}): Promise<ParsedSafetensors> {
  const bytes = await fsp.readFile(path);
  try {
    return parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), opts);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(`${path}: ${e.message}`, { cause: e });
    throw e;
  }
}

/**
 * Serializes `tensors` (see {@link serializeSafetensors}) and writes them to `path` atomically:
 * temporary file beside the target, fsync, rename, then fsync of the directory so the rename
 * itself survives a power cut. Validation happens before any file is created; on any error the
 * temporary file is removed and the target is untouched.
 */
export async function writeSafetensorsFile(path: string, tensors: Record<string, SafeTensorInput>, metadata?: Record<string, string>, opts: SerializeOptions = {}): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata, opts));
}
