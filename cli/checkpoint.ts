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
import { writeFileAtomic } from '../engine/atomic-file.js';
import { OPTIMIZER_PREFIX, serializeStateDict, stateDictFromParsed } from '../weights/state.js';
import type { StateDict } from '../net/module.js';
import { checkCANetOptions } from '../net/spec.js';
import { checkStateMatchesConfig, type ModelFileConfig } from '../weights/model-bytes.js';

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

/** A checkpoint whose content is not what `canet train` writes; the message names the file. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const posInt = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1;
const short = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
};

function parseJson(md: Record<string, string>, key: string, fallback: string): unknown {
  try {
    return JSON.parse(md[key] ?? fallback);
  } catch (e) {
    throw new CheckpointError(`metadata "${key}" is not valid JSON (${short((e as Error).message)})`);
  }
}

/** The run configuration fields a resume relies on; anything else in it is kept as it is. */
function checkConfig(config: unknown, step: number): Record<string, unknown> {
  if (!isObject(config)) throw new CheckpointError(`metadata "config" must be a JSON object, got ${short(config)}`);
  const bad = (field: string, want: string) => new CheckpointError(`metadata "config": ${field} must be ${want}, got ${short(field.split('.').reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), config))}`);
  const m = config.model;
  if (!isObject(m)) throw bad('model', 'an object');
  const problem = checkCANetOptions(m);
  if (problem) throw new CheckpointError(`metadata "config": model ${problem}`);
  const size = m.inputSize;
  if (!Array.isArray(size) || size.length !== 2 || !size.every((d) => posInt(d) && (d as number) % 32 === 0)) throw bad('model.inputSize', 'two positive multiples of 32');
  const d = config.data;
  if (!isObject(d) || (d.source !== 'synthetic' && d.source !== 'folder')) throw bad('data.source', '"synthetic" or "folder"');
  if (d.source === 'folder' && typeof d.dir !== 'string') throw bad('data.dir', 'a folder path');
  if (d.source === 'synthetic' && !posInt(d.synthetic)) throw bad('data.synthetic', 'a positive integer');
  if (!posInt(config.batch)) throw bad('batch', 'a positive integer');
  if (!posInt(config.steps) || (config.steps as number) < step) throw bad('steps', `an integer >= the checkpoint's step ${step}`);
  if (config.optimizer !== 'sgd' && config.optimizer !== 'adamw') throw bad('optimizer', '"sgd" or "adamw"');
  for (const k of ['lr', 'momentum', 'weightDecay', 'warmup', 'seed', 'scale']) if (typeof config[k] !== 'number' || !Number.isFinite(config[k])) throw bad(k, 'a finite number');
  return config;
}

function checkOptimizer(meta: unknown, parsed: ReturnType<typeof parseSafetensors>): OptimizerState | null {
  if (meta === null) return null;
  if (!isObject(meta) || !['SGD', 'Adam', 'AdamW'].includes(meta.kind as string) || !isObject(meta.options) || !Array.isArray(meta.params))
    throw new CheckpointError(`metadata "optimizer" must be null or {kind, options, params}, got ${short(meta)}`);
  return {
    kind: meta.kind as OptimizerState['kind'],
    options: meta.options as OptimizerState['options'],
    params: meta.params.map((p: unknown, i) => {
      if (p === null) return null;
      if (!isObject(p) || typeof p.step !== 'number' || !Number.isInteger(p.step) || p.step < 0 || !Array.isArray(p.buffers) || !p.buffers.every((b) => typeof b === 'string'))
        throw new CheckpointError(`metadata "optimizer": parameter ${i} must be null or {step, buffers}, got ${short(p)}`);
      const buffers: Record<string, Float32Array> = {};
      for (const b of p.buffers as string[]) {
        const t = parsed.tensors.get(`${OPTIMIZER_PREFIX}${i}.${b}`);
        if (!t || !(t.data instanceof Float32Array)) throw new CheckpointError(`optimizer buffer ${i}.${short(b)} is missing or not f32`);
        buffers[b] = t.data;
      }
      return { step: p.step, buffers };
    }),
  };
}

/**
 * Reads a training checkpoint. Every problem (unreadable, not safetensors, not a checkpoint,
 * damaged metadata) throws an Error whose message starts with `checkpoint PATH: `.
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`checkpoint ${path}: cannot read (${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a checkpoint file' : (e as Error).message})`);
  }
  try {
    const parsed = parseSafetensors(bytes);
    const md = parsed.metadata;
    if (md.format !== 'canet-gpu-checkpoint-1') throw new CheckpointError(`not a canet-gpu training checkpoint (metadata format is ${short(md.format)}); plain weights load with --weights or --pretrained`);
    const step = Number(md.step ?? 0);
    if (!Number.isInteger(step) || step < 0) throw new CheckpointError(`metadata "step" must be a non-negative integer, got ${short(md.step)}`);
    const config = checkConfig(parseJson(md, 'config', '{}'), step);
    const optimizer = checkOptimizer(parseJson(md, 'optimizer', 'null'), parsed);
    const state = stateDictFromParsed(parsed);
    // The model the config asks for must be the one the tensors hold, checked before it is built
    // (a small file must not make a resume build a huge network first).
    checkStateMatchesConfig(state, { backbone: 'mobilenetv2', head: 'compatible', width: 1, classes: 19, ...(config.model as Partial<ModelFileConfig>) });
    return { state, optimizer, meta: { step, config } };
  } catch (e) {
    throw new Error(`checkpoint ${path}: ${(e as Error).message}`, { cause: e });
  }
}
