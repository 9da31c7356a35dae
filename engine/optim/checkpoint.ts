/**
 * An optimizer's state as plain data, for checkpoints (like torch's `optimizer.state_dict()`):
 * the snapshot types, the readback that makes one, and the checks and upload that restore one.
 */
import type { Engine } from '../engine.js';
import { check, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { AdamOptions, SGDOptions } from './rules.js';
import type { LiveState, ParamStore } from './state.js';

export type OptimizerKind = 'SGD' | 'Adam' | 'AdamW';

/** One parameter's state as plain data. */
export interface ParamState {
  /** Updates applied to this parameter so far. */
  step: number;
  /** GPU buffers by torch's names (`momentum_buffer`; `exp_avg`, `exp_avg_sq`), each the parameter's size. */
  buffers: Record<string, Float32Array>;
}

/**
 * A checkpointable snapshot of an optimizer (like torch's `optimizer.state_dict()`): the
 * hyper-parameters and, per parameter in constructor order, its state or null before its first update.
 */
export interface OptimizerState {
  kind: OptimizerKind;
  options: Required<SGDOptions> | Required<AdamOptions>;
  params: (ParamState | null)[];
}

/** Copies each parameter's live state to the CPU (one readback per buffer). */
export function readParamStates(state: readonly (LiveState | null)[]): Promise<(ParamState | null)[]> {
  return Promise.all(
    state.map(async (s) => {
      if (!s) return null;
      const buffers: Record<string, Float32Array> = {};
      for (const [name, t] of s.buffers) buffers[name] = (await t.read()) as Float32Array;
      return { step: s.step, buffers };
    }),
  );
}

/**
 * Checks a snapshot's per-parameter state against the optimizer's parameters and the buffer names
 * its rule keeps (`allowed`, `required`); throws a ShapeError naming the parameter and buffer.
 */
export function checkParamStates(
  op: string,
  s: OptimizerState,
  params: readonly Tensor[],
  buffers: { allowed: string[]; required: string[] },
): void {
  check(s.params.length === params.length, op, () => `state has ${s.params.length} parameters, optimizer has ${params.length}`);
  s.params.forEach((ps, i) => {
    if (!ps) return;
    const p = params[i]!;
    check(typeof ps.buffers === 'object' && ps.buffers !== null, op, () => `parameter ${i} (${p.name}): buffers must be an object of Float32Arrays`);
    check(Number.isInteger(ps.step) && ps.step >= 0, op, () => `parameter ${i} (${p.name}): step must be a non-negative integer, got ${ps.step}`);
    const { allowed, required } = buffers;
    const names = Object.keys(ps.buffers);
    check(names.every((n) => allowed.includes(n)) && required.every((n) => names.includes(n)), op, () =>
      `parameter ${i} (${p.name}): buffers must be ${required.length ? required.join(' and ') : `none or ${allowed.join(', ')}`}, got [${names.join(', ')}]`);
    for (const [name, data] of Object.entries(ps.buffers))
      check(data instanceof Float32Array && data.length === p.size, op, () =>
        `parameter ${i} (${p.name}): buffer ${name} must be a Float32Array of ${p.size} elements (shape ${fmtShape(p.shape)}), got ${(data as { length?: number })?.length ?? data}`);
  });
}

/** Uploads checked per-parameter state into the store's state slots, replacing each entry of `state`. */
export function writeParamStates(engine: Engine, store: ParamStore, params: readonly (ParamState | null)[], state: (LiveState | null)[]): void {
  state.forEach((_, i) => {
    const ps = params[i];
    if (!ps) return void (state[i] = null);
    const buffers = new Map<string, Tensor>();
    for (const [name, data] of Object.entries(ps.buffers)) {
      const t = store.stateSlot(i, name);
      engine.writeTensor(t, data);
      buffers.set(name, t);
    }
    state[i] = { step: ps.step, buffers };
  });
}
