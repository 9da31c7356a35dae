/**
 * Training checkpoints: one safetensors file holding the model's state dict under PyTorch names
 * (so a checkpoint is also a weights file), the optimizer's moment buffers under `__optimizer__.`
 * and the step, optimizer settings and run config as metadata. Written atomically (temp file +
 * rename): a run killed at any moment leaves the previous checkpoint intact.
 */
import { readFile } from 'node:fs/promises';
import type { Module } from '../net/module.js';
import type { Optimizer, OptimizerState } from '../engine/optim.js';
import { parseSafetensors, type SafeTensorInput } from '../weights/safetensors.js';
import { writeFileAtomic } from '../weights/file.js';
import { OPTIMIZER_PREFIX, serializeStateDict, stateDictFromParsed } from '../weights/state.js';
import type { StateDict } from '../net/module.js';

export interface CheckpointMeta {
  step: number;
  /** Free-form run configuration (model options, data, schedule), JSON-serialisable. */
  config: Record<string, unknown>;
}

export async function saveCheckpoint(path: string, model: Module, optimizer: Optimizer | null, meta: CheckpointMeta): Promise<void> {
  const state = await model.stateDict();
  const extra: Record<string, SafeTensorInput> = {};
  let optMeta: unknown = null;
  if (optimizer) {
    const s = await optimizer.stateDict();
    optMeta = {
      kind: s.kind,
      options: s.options,
      params: s.params.map((p, i) => {
        if (!p) return null;
        for (const [buf, data] of Object.entries(p.buffers)) extra[`${OPTIMIZER_PREFIX}${i}.${buf}`] = { data, shape: [data.length] };
        return { step: p.step, buffers: Object.keys(p.buffers) };
      }),
    };
  }
  const bytes = serializeStateDict(state, {
    extra,
    metadata: { format: 'canet-gpu-checkpoint-1', step: String(meta.step), config: JSON.stringify(meta.config), optimizer: JSON.stringify(optMeta) },
  });
  await writeFileAtomic(path, bytes);
}

export interface LoadedCheckpoint {
  state: StateDict;
  optimizer: OptimizerState | null;
  meta: CheckpointMeta;
}

export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(`checkpoint ${path}: cannot read (${(e as Error).message})`);
  }
  const parsed = parseSafetensors(bytes);
  const md = parsed.metadata;
  if (md.format !== 'canet-gpu-checkpoint-1') throw new Error(`checkpoint ${path}: not a canet-gpu training checkpoint (metadata format is ${JSON.stringify(md.format)}); plain weights load with --weights or --pretrained`);
  let optimizer: OptimizerState | null = null;
  const optMeta = JSON.parse(md.optimizer ?? 'null') as { kind: OptimizerState['kind']; options: OptimizerState['options']; params: ({ step: number; buffers: string[] } | null)[] } | null;
  if (optMeta) {
    optimizer = {
      kind: optMeta.kind,
      options: optMeta.options,
      params: optMeta.params.map((p, i) => {
        if (!p) return null;
        const buffers: Record<string, Float32Array> = {};
        for (const b of p.buffers) {
          const t = parsed.tensors.get(`${OPTIMIZER_PREFIX}${i}.${b}`);
          if (!t || !(t.data instanceof Float32Array)) throw new Error(`checkpoint ${path}: optimizer buffer ${i}.${b} is missing or not f32`);
          buffers[b] = t.data;
        }
        return { step: p.step, buffers };
      }),
    };
  }
  return { state: stateDictFromParsed(parsed), optimizer, meta: { step: Number(md.step ?? 0), config: JSON.parse(md.config ?? '{}') } };
}
