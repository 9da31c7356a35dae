/**
 * Model files: a safetensors file of the state dict (PyTorch names) whose metadata also records
 * how to build the model (backbone, classes, head, width, input size), plus a JSON sidecar a
 * person can read. `canet segment --weights FILE` needs nothing else.
 */
import { writeFile } from 'node:fs/promises';
import type { Engine } from '../engine/engine.js';
import { canet, type CANet, type CANetOptions } from '../net/canet.js';
import { parseSafetensors } from '../weights/safetensors.js';
import { writeFileAtomic } from '../weights/file.js';
import { readWeightsBytes } from '../weights/load-file.js';
import { serializeStateDict, stateDictFromParsed } from '../weights/state.js';
import { torchvisionMobileNetV2ToCANet, torchvisionResNetToCANet } from '../weights/names.js';
import type { StateDict } from '../net/module.js';

export interface ModelConfig {
  backbone: NonNullable<CANetOptions['backbone']>;
  classes: number;
  head: NonNullable<CANetOptions['head']>;
  width: number;
  /** Input size the model was trained at [width, height]. */
  inputSize?: [number, number];
  classNames?: string[];
  [extra: string]: unknown;
}

export async function saveModel(path: string, model: CANet, config: ModelConfig, opts: { dtype?: 'F32' | 'F16'; sidecar?: Record<string, unknown> } = {}): Promise<void> {
  const state = await model.stateDict();
  const bytes = serializeStateDict(state, { dtype: opts.dtype ?? 'F32', metadata: { format: 'canet-gpu-model-1', canet: JSON.stringify(config) } });
  await writeFileAtomic(path, bytes);
  const sidecar = path.replace(/\.safetensors$/, '') + '.json';
  await writeFile(sidecar, JSON.stringify({ ...config, ...(opts.sidecar ?? {}), dtype: opts.dtype ?? 'F32', parameters: model.numParameters() }, null, 2) + '\n');
}

/** Builds the model a weights file describes and loads it (strict). Checkpoints work too. */
export async function loadModel(engine: Engine, path: string, overrides: Partial<ModelConfig> = {}): Promise<{ model: CANet; config: ModelConfig }> {
  const parsed = parseSafetensors(await readWeightsBytes(path, 'weights'));
  const md = parsed.metadata;
  let config: ModelConfig | undefined;
  if (md.canet) config = JSON.parse(md.canet) as ModelConfig;
  else if (md.config) {
    const c = JSON.parse(md.config) as { model?: ModelConfig };
    config = c.model;
  }
  config = { backbone: 'mobilenetv2', classes: 19, head: 'compatible', width: 1, ...(config ?? {}), ...overrides };
  const model = canet(engine, { backbone: config.backbone, classes: config.classes, head: config.head, width: config.width });
  try {
    model.loadStateDict(stateDictFromParsed(parsed));
  } catch (e) {
    model.dispose();
    throw new Error(`weights ${path}: ${(e as Error).message}`);
  }
  return { model, config };
}

/**
 * Loads pretrained weights for a fresh model: a CANet state dict, or a torchvision MobileNetV2 /
 * ResNet ImageNet checkpoint (saved with safetensors) into the backbone alone. Returns what loaded.
 */
export async function loadPretrained(model: CANet, path: string): Promise<{ loaded: number; skipped: string[] }> {
  const parsed = parseSafetensors(await readWeightsBytes(path, 'pretrained weights'));
  let state: StateDict = stateDictFromParsed(parsed);
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
