/**
 * A model from the bytes of a model file (safetensors whose metadata says how to build it, as
 * `canet train` writes them): what a browser does with weights fetched from its origin, and what
 * the CLI's loadModel does with a file. Platform-neutral.
 */
import type { Engine } from '../engine/engine.js';
import { canet, type CANet, type CANetOptions } from '../net/canet.js';
import { parseSafetensors } from './safetensors.js';
import { stateDictFromParsed } from './state.js';

/** How a model file's network is built (its `canet` metadata entry). */
export interface ModelFileConfig {
  backbone: NonNullable<CANetOptions['backbone']>;
  classes: number;
  head: NonNullable<CANetOptions['head']>;
  width: number;
  /** Input size the model was trained at, [width, height]. */
  inputSize?: [number, number];
  classNames?: string[];
  [extra: string]: unknown;
}

/**
 * Builds the CANet a model file describes and loads its weights (strict: a missing, unexpected or
 * mis-shaped tensor throws naming it, and nothing stays allocated). `overrides` win over the file.
 */
export function loadModelBytes(engine: Engine, bytes: Uint8Array | ArrayBuffer, overrides: Partial<ModelFileConfig> = {}): { model: CANet; config: ModelFileConfig } {
  const parsed = parseSafetensors(bytes);
  const md = parsed.metadata;
  let fromFile: Partial<ModelFileConfig> = {};
  // Model files carry `canet`; checkpoints carry the training config with a `model` entry.
  if (md.canet) fromFile = JSON.parse(md.canet) as ModelFileConfig;
  else if (md.config) fromFile = (JSON.parse(md.config) as { model?: ModelFileConfig }).model ?? {};
  const config: ModelFileConfig = { backbone: 'mobilenetv2', classes: 19, head: 'compatible', width: 1, ...fromFile, ...overrides };
  const model = canet(engine, { backbone: config.backbone, classes: config.classes, head: config.head, width: config.width });
  try {
    model.loadStateDict(stateDictFromParsed(parsed));
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, config };
}
