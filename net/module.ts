/**
 * Modules: parameters, buffers and children under PyTorch state_dict names, train/eval modes, and
 * state dict export/import in PyTorch layouts (so `safetensors.torch.save_file(model.state_dict())`
 * from the reference CANet loads here, and what we save loads there).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { fmtShape } from '../engine/errors.js';
import {
  convTransposeFromInternal,
  convTransposeToInternal,
  depthwiseFromHwc,
  depthwiseToHwc,
  ohwiToOihw,
  oihwToOhwi,
} from '../engine/layout.js';

/** How a tensor's engine layout relates to PyTorch's (see engine/layout.ts). */
export type ParamLayout = 'plain' | 'conv' | 'depthwise' | 'convTranspose';

/** A tensor in a state dict, in PyTorch's layout. */
export interface StateTensor {
  dtype: 'F32' | 'I64';
  shape: number[];
  data: Float32Array | Int32Array;
}
export type StateDict = Map<string, StateTensor>;

export interface LoadReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
  /** Present under the right name with the wrong shape: "name: expected [..], got [..]". */
  mismatched: string[];
}

type Slot =
  | { kind: 'param' | 'buffer'; tensor: Tensor; torchShape: number[]; layout: ParamLayout }
  | { kind: 'counter'; get: () => number; set: (v: number) => void };

/** Engine shape for a PyTorch shape under a layout. */
export function engineShape(torchShape: readonly number[], layout: ParamLayout): number[] {
  const [a, b, c, d] = torchShape as [number, number, number, number];
  switch (layout) {
    case 'plain':
      return [...torchShape];
    case 'conv':
      return [a, c, d, b];
    case 'depthwise':
      return [c, d, a];
    case 'convTranspose':
      return [b, c, d, a];
  }
}

function toTorch(data: Float32Array, torchShape: number[], layout: ParamLayout): Float32Array {
  const es = engineShape(torchShape, layout);
  switch (layout) {
    case 'plain':
      return data;
    case 'conv':
      return ohwiToOihw(data, es).data;
    case 'depthwise':
      return depthwiseFromHwc(data, es).data;
    case 'convTranspose':
      return convTransposeFromInternal(data, es).data;
  }
}

function fromTorch(data: Float32Array, torchShape: number[], layout: ParamLayout): Float32Array {
  switch (layout) {
    case 'plain':
      return data;
    case 'conv':
      return oihwToOhwi(data, torchShape).data;
    case 'depthwise':
      return depthwiseToHwc(data, torchShape).data;
    case 'convTranspose':
      return convTransposeToInternal(data, torchShape).data;
  }
}

/** Largest BatchNorm counter loaded: an I64 file holds it, and saving it back through Int32 keeps it. */
const MAX_COUNTER = 2 ** 31 - 1;

/** A shape for a message, at most 8 dimensions shown (a file can claim millions). */
function shortShape(shape: readonly number[]): string {
  return shape.length > 8 ? `[${shape.slice(0, 8).join(', ')}, ... (${shape.length} dimensions)]` : fmtShape(shape);
}

/** Tensors made by the constructions in progress (innermost last); see {@link buildAtomically}. */
const building: Tensor[][] = [];

/**
 * Runs `build` (module constructors) and, if it throws, disposes every parameter and buffer the
 * modules it constructed had made, so that a failed construction leaves nothing allocated.
 * Nested builds hand their tensors to the enclosing one when they succeed.
 */
export function buildAtomically<T>(build: () => T): T {
  const made: Tensor[] = [];
  building.push(made);
  try {
    const result = build();
    building.pop();
    building[building.length - 1]?.push(...made);
    return result;
  } catch (e) {
    building.pop();
    for (const t of made) t.dispose();
    throw e;
  }
}

export abstract class Module {
  training = true;
  private readonly slots = new Map<string, Slot>();
  private readonly children = new Map<string, Module>();

  constructor(readonly engine: Engine) {}

  /** Registers a child module under `name` and returns it. */
  protected add<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** Registers a trainable parameter, initialised from `init` (engine layout). */
  protected param(name: string, torchShape: number[], layout: ParamLayout, init: Float32Array): Tensor {
    return this.slot('param', name, torchShape, layout, init);
  }

  /** Registers a buffer (saved in the state dict, never trained). */
  protected buffer(name: string, torchShape: number[], init: Float32Array): Tensor {
    return this.slot('buffer', name, torchShape, 'plain', init);
  }

  /** Registers an integer counter kept on the CPU (e.g. BN's num_batches_tracked, saved as I64). */
  protected counter(name: string, get: () => number, set: (v: number) => void): void {
    this.slots.set(name, { kind: 'counter', get, set });
  }

  private slot(kind: 'param' | 'buffer', name: string, torchShape: number[], layout: ParamLayout, init: Float32Array): Tensor {
    const t = this.engine.tensor(init, engineShape(torchShape, layout)).keep();
    building[building.length - 1]?.push(t);
    t.name = name;
    t.requiresGrad = kind === 'param';
    this.slots.set(name, { kind, tensor: t, torchShape, layout });
    return t;
  }

  /** Sets full names on every tensor (called once by the top-level model). */
  protected nameTensors(prefix = ''): void {
    for (const [name, s] of this.slots) if (s.kind !== 'counter') s.tensor.name = prefix + name;
    for (const [name, c] of this.children) c.nameTensors(`${prefix}${name}.`);
  }

  private *walk(prefix = ''): Generator<[string, Slot]> {
    for (const [name, s] of this.slots) yield [prefix + name, s];
    for (const [name, c] of this.children) yield* c.walk(`${prefix}${name}.`);
  }

  /** Modules below this one (depth first, this one first). */
  *modules(): Generator<Module> {
    yield this;
    for (const c of this.children.values()) yield* c.modules();
  }

  /** Trainable parameters with their state_dict names. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, s] of this.walk()) if (s.kind === 'param') out.push([name, s.tensor]);
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameter count as PyTorch counts it (weights and biases; running statistics excluded). */
  numParameters(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  /** Training mode: batch norm uses batch statistics and updates its running statistics. */
  train(on = true): this {
    for (const m of this.modules()) m.training = on;
    return this;
  }

  /** Inference mode: batch norm uses running statistics. */
  eval(): this {
    return this.train(false);
  }

  /** Every parameter and buffer, read back in PyTorch's layouts and names. */
  async stateDict(): Promise<StateDict> {
    const out: StateDict = new Map();
    for (const [name, s] of this.walk()) {
      if (s.kind === 'counter') {
        out.set(name, { dtype: 'I64', shape: [], data: Int32Array.of(s.get()) });
        continue;
      }
      const data = (await s.tensor.read()) as Float32Array;
      out.set(name, { dtype: 'F32', shape: [...s.torchShape], data: toTorch(data, s.torchShape, s.layout) });
    }
    return out;
  }

  /**
   * Loads a state dict (PyTorch names and layouts). Every name and shape is checked before anything
   * is written: in strict mode (default) any missing, unexpected or mis-shaped tensor throws an
   * Error listing all of them with both shapes, and the model is left unchanged; with
   * `strict: false` the good tensors load and the report lists the rest. `dryRun` checks and
   * reports without writing anything.
   */
  loadStateDict(state: StateDict | Record<string, StateTensor>, opts: { strict?: boolean; dryRun?: boolean } = {}): LoadReport {
    const strict = opts.strict ?? true;
    const given = state instanceof Map ? state : new Map(Object.entries(state));
    const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatched: [] };
    const writes: (() => void)[] = [];
    const expected = new Map(this.walk());
    for (const [name, slot] of expected) {
      const t = given.get(name);
      if (!t) {
        report.missing.push(name);
        continue;
      }
      if (slot.kind === 'counter') {
        // BatchNorm's num_batches_tracked: PyTorch saves a 0-d I64 tensor. A count is a
        // non-negative integer that an I64 file written back from Int32 holds exactly.
        const v = t.shape.length === 0 && t.data.length === 1 ? Number(t.data[0]) : NaN;
        if (t.shape.length !== 0) report.mismatched.push(`${name}: expected a scalar counter (shape []), got ${shortShape(t.shape)}`);
        else if (!(Number.isInteger(v) && v >= 0 && v <= MAX_COUNTER))
          report.mismatched.push(`${name}: expected an integer count in [0, ${MAX_COUNTER}], got ${v}`);
        else {
          writes.push(() => slot.set(v));
          report.loaded.push(name);
        }
        continue;
      }
      const same = t.shape.length === slot.torchShape.length && t.shape.every((d, i) => d === slot.torchShape[i]);
      if (!same) {
        report.mismatched.push(`${name}: expected ${fmtShape(slot.torchShape)}, got ${shortShape(t.shape)}`);
        continue;
      }
      if (!(t.data instanceof Float32Array)) {
        report.mismatched.push(`${name}: expected floating-point data, got ${t.dtype}`);
        continue;
      }
      const data = fromTorch(t.data, slot.torchShape, slot.layout);
      writes.push(() => this.engine.writeTensor(slot.tensor, data));
      report.loaded.push(name);
    }
    for (const name of given.keys()) if (!expected.has(name)) report.unexpected.push(name);
    // What the message echoes from the file is clipped: names and shapes can be megabytes long.
    const clipName = (line: string) => (line.length > 300 ? `${line.slice(0, 300)}...` : line);
    const problems = report.missing.length + report.unexpected.length + report.mismatched.length;
    if (strict && problems) {
      const lines = [
        ...report.mismatched.map((m) => `  wrong shape: ${clipName(m)}`),
        ...report.missing.map((m) => `  missing: ${m}`),
        ...report.unexpected.map((m) => `  unexpected: ${clipName(m)}`),
      ];
      const shown = lines.slice(0, 40).join('\n') + (lines.length > 40 ? `\n  ... and ${lines.length - 40} more` : '');
      throw new Error(`loadStateDict: ${problems} problem(s); nothing was loaded:\n${shown}`);
    }
    if (!opts.dryRun) for (const w of writes) w();
    return report;
  }

  /** Releases every parameter and buffer (and their gradients), and what modules derived from them. */
  dispose(): void {
    for (const m of this.modules()) m.releaseDerived();
    for (const [, s] of this.walk()) if (s.kind !== 'counter') s.tensor.dispose();
  }

  /** Frees tensors a module derived from its parameters (caches); called by dispose() for every module. */
  protected releaseDerived(): void {}
}

/**
 * Cache key of a value derived from `from` (a folded BatchNorm, an f16 weight copy): their ids
 * and write versions, so a write to any of them (loading weights, a training step) makes it stale.
 */
export function derivedKey(from: readonly (Tensor | null)[]): string {
  return from.map((t) => (t ? `${t.id}:${t.version}` : '-')).join(',');
}

/**
 * While a plan is being captured, makes it refuse to replay (naming `what`) once one of `from` is
 * written or `current()` says the derived value was replaced: the plan binds the derived tensor
 * as it was at capture. Outside a capture it registers nothing.
 */
export function guardDerived(engine: Engine, from: readonly (Tensor | null)[], current: () => boolean, what: () => string): void {
  if (!engine.capturing) return;
  const versions = from.map((t) => t?.version ?? -1);
  engine.onReplayCheck(() => (current() && from.every((t, i) => (t?.version ?? -1) === versions[i]) ? null : what()));
}

/**
 * Frees `inputs` once `out` is computed, unless a graph is being recorded (then backward needs
 * them). Inference chains use it so that only live activations hold GPU memory.
 */
export function release(out: Tensor, ...inputs: Tensor[]): Tensor {
  if (!out.requiresGrad) for (const t of inputs) if (t !== out) t.dispose();
  return out;
}

/** Children named '0', '1', ... applied in order (PyTorch's nn.Sequential naming). */
export class Sequential extends Module {
  private readonly layers: { forward(x: Tensor): Tensor }[] = [];
  constructor(engine: Engine, layers: (Module & { forward(x: Tensor): Tensor })[], firstIndex = 0) {
    super(engine);
    layers.forEach((l, i) => {
      this.add(String(firstIndex + i), l);
      this.layers.push(l);
    });
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const l of this.layers) {
      const next = l.forward(y);
      // Without a graph nothing needs the intermediate again: free it now, so inference peaks at
      // two live activations per chain instead of all of them.
      if (y !== x && next !== y && !next.requiresGrad) y.dispose();
      y = next;
    }
    return y;
  }
}
