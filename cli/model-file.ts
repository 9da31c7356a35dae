/**
 * Model files: a safetensors file of the state dict (PyTorch names) whose metadata also records
 * how to build the model (backbone, classes, head, width, input size), plus a JSON sidecar a
 * person can read. `canet segment --weights FILE` needs nothing else.
 */
import { writeFile } from 'node:fs/promises';
import type { CANet } from '../net/canet.js';
import { modelFileBytes, type ModelFileConfig } from '../weights/model-bytes.js';
import { parseSafetensors } from '../weights/safetensors.js';
import { writeFileAtomic } from '../engine/atomic-file.js';
import { readWeightsBytes } from '../weights/load-file.js';
import { stateDictFromParsed } from '../weights/state.js';
import { torchvisionMobileNetV2ToCANet, torchvisionResNetToCANet } from '../weights/names.js';
import type { StateDict } from '../net/module.js';

/** How a model file's network is built (the same record as the browser's loadModelBytes reads). */
export type ModelConfig = ModelFileConfig;

export async function saveModel(path: string, model: CANet, config: ModelConfig, opts: { dtype?: 'F32' | 'F16'; sidecar?: Record<string, unknown> } = {}): Promise<void> {
  await writeFileAtomic(path, modelFileBytes(await model.stateDict(), config, opts.dtype));
  const sidecar = path.replace(/\.safetensors$/, '') + '.json';
  await writeFile(sidecar, JSON.stringify({ ...config, ...(opts.sidecar ?? {}), dtype: opts.dtype ?? 'F32', parameters: model.numParameters() }, null, 2) + '\n');
}

/**
 * Loads pretrained weights for a fresh model: a CANet state dict, or a torchvision MobileNetV2 /
 * ResNet ImageNet checkpoint (saved with safetensors) into the backbone alone. Returns what loaded.
 */
export async function loadPretrained(model: CANet, path: string): Promise<{ loaded: number; skipped: string[] }> {
  let parsed;
  let state: StateDict;
  try {
    parsed = parseSafetensors(await readWeightsBytes(path, 'pretrained weights'));
    state = stateDictFromParsed(parsed);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith('pretrained weights ') ? msg : `pretrained weights ${path}: ${msg}`, { cause: e });
  }
  const names = [...state.keys()];
  const torchvision = names.some((n) => n.startsWith('features.')) ? torchvisionMobileNetV2ToCANet : names.some((n) => /^layer\d\./.test(n)) ? torchvisionResNetToCANet : null;
  if (torchvision) {
    const mapped: StateDict = new Map();
    for (const [n, t] of state) {
      const to = torchvision(n);
      if (to) mapped.set(to, t);
    }
    state = mapped;
  }
  const check = model.loadStateDict(state, { strict: false, dryRun: true });
  if (check.mismatched.length) throw new Error(`pretrained weights ${path}: wrong shapes (nothing loaded):\n  ${check.mismatched.join('\n  ')}`);
  if (!check.loaded.length) throw new Error(`pretrained weights ${path}: no tensor name matches this model (first names: ${names.slice(0, 3).join(', ')})`);
  const report = model.loadStateDict(state, { strict: false });
  return { loaded: report.loaded.length, skipped: report.unexpected };
}
