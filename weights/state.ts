/**
 * Between safetensors files and model state dicts (PyTorch names and layouts). Platform-neutral:
 * works on bytes, so browsers load weights fetched from their origin the same way Node loads files.
 */
import type { Module, StateDict, StateTensor } from '../net/module.js';
import { parseSafetensors, serializeSafetensors, quoteForMessage as quote, clipForMessage as clip, type ParsedSafetensors, type SafeTensorInput, SafetensorsError } from './safetensors.js';

/** Names starting with this hold training state (optimizer moments), not model weights. */
export const OPTIMIZER_PREFIX = '__optimizer__.';

/** The model tensors of a parsed file as a state dict (optimizer entries left out). */
export function stateDictFromParsed(parsed: ParsedSafetensors): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of parsed.tensors) {
    if (name.startsWith(OPTIMIZER_PREFIX)) continue;
    let entry: StateTensor;
    if (t.data instanceof Float32Array) entry = { dtype: 'F32', shape: t.shape, data: t.data };
    else if (t.data instanceof Int32Array) entry = { dtype: 'I64', shape: t.shape, data: t.data };
    else throw new SafetensorsError(`tensor ${quote(name)}: dtype ${t.dtype} cannot hold model weights (expected a float type, or an integer counter)`);
    out.set(name, entry);
  }
  return out;
}

/**
 * Loads safetensors bytes into a model by PyTorch state_dict name. Strict by default: any missing,
 * unexpected or mis-shaped tensor throws naming all of them, and the model is left unchanged.
 */
export function loadWeightsBytes(model: Module, bytes: Uint8Array | ArrayBuffer, opts: { strict?: boolean; allowNonFinite?: boolean } = {}) {
  const parsed = parseSafetensors(bytes, { allowNonFinite: opts.allowNonFinite });
  try {
    return model.loadStateDict(stateDictFromParsed(parsed), { strict: opts.strict });
  } catch (e) {
    // The usual cause: a model file (it records the network it holds) loaded into a network built
    // with other options. Say so, and name the call that builds the right one.
    const described = parsed.metadata.canet;
    if (described !== undefined && e instanceof Error)
      e.message += `\nThe file is a model file that describes its own network (${clip(described, 200)}): ` +
        `build that network and load it in one call with loadModelFile(engine, path) in Node or loadModelBytes(engine, bytes).`;
    throw e;
  }
}

/** Serialises a state dict (f32, or f16 to halve the size; counters stay I64). */
export function serializeStateDict(state: StateDict, opts: { dtype?: 'F32' | 'F16'; metadata?: Record<string, string>; extra?: Record<string, SafeTensorInput> } = {}): Uint8Array {
  const tensors: Record<string, SafeTensorInput> = {};
  for (const [name, t] of state) tensors[name] = { data: t.data, shape: t.shape, dtype: t.dtype === 'I64' ? 'I64' : (opts.dtype ?? 'F32') };
  Object.assign(tensors, opts.extra ?? {});
  return serializeSafetensors(tensors, opts.metadata);
}
