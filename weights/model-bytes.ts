/**
 * A model from the bytes of a model file (safetensors whose metadata says how to build it, as
 * `canet train` writes them): what a browser does with weights fetched from its origin, and what
 * the CLI's loadModel does with a file. Platform-neutral.
 *
 * Nothing is built until the file is known to fit: the configuration is validated (known backbone
 * and head, bounded width and class count), and the file's tensors are compared, by name and
 * shape, with the state dict that configuration has (computed without building, net/spec.ts).
 * Since every tensor's bytes are in the file, a file that passes can only ask for a model as large
 * as itself: a 269 KB file can no longer make us build a 3 GB network before failing.
 */
import type { Engine } from '../engine/engine.js';
import type { StateDict } from '../net/module.js';
import { canet, type CANet, type CANetOptions } from '../net/canet.js';
import { canetStateShapes, checkCANetOptions, MAX_CLASSES } from '../net/spec.js';
import { parseSafetensors, quoteForMessage as quote, clipForMessage as clip } from './safetensors.js';
import { serializeStateDict, stateDictFromParsed } from './state.js';

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

/** A model file that cannot be loaded: its metadata or its tensors do not describe a buildable CANet. */
export class ModelFileError extends Error {
  override name = 'ModelFileError';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The configuration recorded in a file's metadata: `canet` (model files) or `config.model` (checkpoints). */
function configFromMetadata(md: Record<string, string>): Partial<ModelFileConfig> {
  const key = md.canet !== undefined ? 'canet' : md.config !== undefined ? 'config' : null;
  if (!key) return {};
  let v: unknown;
  try {
    v = JSON.parse(md[key]!);
  } catch (e) {
    throw new ModelFileError(`metadata "${key}" is not valid JSON (${clip((e as Error).message, 120)})`);
  }
  if (key === 'config') {
    if (!isPlainObject(v)) throw new ModelFileError(`metadata "config" must be a JSON object, got ${clip(JSON.stringify(v) ?? String(v), 80)}`);
    v = v.model ?? {};
  }
  if (!isPlainObject(v)) throw new ModelFileError(`metadata "${key}"${key === 'config' ? '.model' : ''} must be a JSON object, got ${clip(JSON.stringify(v) ?? String(v), 80)}`);
  return v as Partial<ModelFileConfig>;
}

/**
 * Builds the CANet a model file describes and loads its weights (strict: a missing, unexpected or
 * mis-shaped tensor throws naming it, and nothing stays allocated). `overrides` win over the file.
 * The model comes in **eval mode** (BatchNorm uses its running statistics), ready for inference:
 * call `model.train()` to fine-tune it. (A freshly built `canet()` is in training mode, as in PyTorch.)
 *
 * @throws SafetensorsError for a malformed file; ModelFileError for bad metadata, a configuration
 * out of bounds, or tensors that do not match it (all before anything is built); Error from
 * loadStateDict for bad values (a BatchNorm counter), after which the built model is disposed
 */
export function loadModelBytes(engine: Engine, bytes: Uint8Array | ArrayBuffer, overrides: Partial<ModelFileConfig> = {}): { model: CANet; config: ModelFileConfig } {
  const parsed = parseSafetensors(bytes);
  const fromFile = configFromMetadata(parsed.metadata);
  const config: ModelFileConfig = { backbone: 'mobilenetv2', classes: 19, head: 'compatible', width: 1, ...fromFile, ...overrides };
  const problem = checkCANetOptions(config) ?? checkExtras(config);
  if (problem) throw new ModelFileError(`model configuration: ${problem}`);
  const state = stateDictFromParsed(parsed);
  checkStateMatchesConfig(state, config);
  const model = canet(engine, { backbone: config.backbone, classes: config.classes, head: config.head, width: config.width });
  try {
    model.loadStateDict(state);
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  return { model, config };
}

/** Largest side of a recorded input size: the CLI runs the network at it unless told otherwise. */
export const MAX_INPUT_SIDE = 8192;

/** Why the recorded input size or class names cannot be used, or null. */
function checkExtras(config: ModelFileConfig): string | null {
  const size = config.inputSize as unknown;
  if (size !== undefined && !(Array.isArray(size) && size.length === 2 && size.every((d) => Number.isInteger(d) && d >= 32 && d <= MAX_INPUT_SIDE && d % 32 === 0)))
    return `inputSize must be [width, height], multiples of 32 in [32, ${MAX_INPUT_SIDE}], got ${clip(JSON.stringify(size) ?? String(size), 80)}`;
  const names = config.classNames as unknown;
  if (names != null && !(Array.isArray(names) && names.length <= MAX_CLASSES && names.every((n) => typeof n === 'string' && n.length <= 200)))
    return `classNames must be an array of at most ${MAX_CLASSES} strings (at most 200 characters each), got ${Array.isArray(names) ? `${names.length} entries` : clip(JSON.stringify(names) ?? String(names), 80)}`;
  return null;
}

/**
 * Refuses (ModelFileError) a state dict whose tensors are not exactly those of the configuration
 * (names and shapes), computed without building the model: call it before building.
 */
export function checkStateMatchesConfig(state: Map<string, { shape: number[] }>, config: Pick<ModelFileConfig, 'backbone' | 'head' | 'width' | 'classes'>): void {
  const expected = canetStateShapes(config);
  const lines: string[] = [];
  let problems = 0;
  const note = (line: string) => {
    if (problems++ < 20) lines.push(`  ${line}`);
  };
  const fmt = (shape: readonly number[]) => clip(`[${shape.join(', ')}]`, 80);
  for (const [name, shape] of expected) {
    const t = state.get(name);
    if (!t) note(`missing: ${name}`);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) note(`wrong shape: ${name}: expected ${fmt(shape)}, got ${fmt(t.shape)}`);
  }
  for (const name of state.keys()) if (!expected.has(name)) note(`unexpected: ${quote(name)}`);
  if (!problems) return;
  if (problems > 20) lines.push(`  ... and ${problems - 20} more`);
  const what = `${config.backbone}, ${config.head} head, width ${config.width}, ${config.classes} classes`;
  throw new ModelFileError(`the tensors do not match the model the metadata describes (${what}); nothing was built:\n${lines.join('\n')}`);
}

/**
 * The bytes of a model file for `model` (safetensors of its state dict, PyTorch names, with the
 * `canet` metadata entry saying how to build it): what `canet segment --weights` and
 * loadModelBytes load. Platform-neutral (a page downloads it as a Blob); reads the weights back
 * from the GPU. `extras` records the input size and class names beside the architecture.
 */
export async function serializeModel(model: CANet, extras: { inputSize?: [number, number]; classNames?: string[]; dtype?: 'F32' | 'F16' } = {}): Promise<Uint8Array> {
  const { backbone, classes, head, width } = model.options;
  const config: ModelFileConfig = { backbone, classes, head, width };
  if (extras.inputSize) config.inputSize = [...extras.inputSize];
  if (extras.classNames) config.classNames = [...extras.classNames];
  const problem = checkExtras(config);
  if (problem) throw new ModelFileError(`serializeModel: ${problem}`);
  return modelFileBytes(await model.stateDict(), config, extras.dtype);
}

/** The bytes of a model file: the state dict, and in the metadata the configuration that builds its network. */
export function modelFileBytes(state: StateDict, config: ModelFileConfig, dtype: 'F32' | 'F16' = 'F32'): Uint8Array {
  return serializeStateDict(state, { dtype, metadata: { format: 'canet-gpu-model-1', canet: JSON.stringify(config) } });
}
