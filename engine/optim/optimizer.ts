/**
 * The optimizer base class: parameter bookkeeping, the step loop (one fused update per arena when
 * every parameter of it is ready, else one per tensor with torch's per-parameter semantics),
 * zeroGrad, checkpoints and disposal. The update rules (SGD, Adam, AdamW) are in rules.ts, the
 * arenas and state buffers in state.ts, the snapshot format in checkpoint.ts.
 */
import optim from '../../shaders/optim.wgsl';
import type { Engine } from '../engine.js';
import { check, fmtShape } from '../errors.js';
import { grid1d, type UniformInput } from '../program.js';
import { sectionSpec } from '../ops/shader.js';
import type { Tensor } from '../tensor.js';
import { fill } from '../ops/basic.js';
import { checkParamStates, readParamStates, writeParamStates, type OptimizerKind, type OptimizerState } from './checkpoint.js';
import { OPTIM_KERNELS, WG, type OptimKernel } from './kernels.js';
import type { AdamOptions, SGDOptions } from './rules.js';
import { ParamStore, type LiveState, type Pack } from './state.js';

/** What SGD, Adam and AdamW share: parameter bookkeeping, state storage, zeroGrad, checkpoints. */
export abstract class Optimizer {
  /** Learning rate of the next step; set it from a schedule before each step (no recompilation). */
  lr: number;
  readonly params: readonly Tensor[];
  protected readonly engine: Engine;
  protected state: (LiveState | null)[];
  private disposed = false;

  protected constructor(readonly kind: OptimizerKind, params: Tensor[], lr: number) {
    const op = kind;
    check(Array.isArray(params) && params.length > 0, op, () => `needs at least one parameter tensor`);
    const seen = new Set<Tensor>();
    params.forEach((p, i) => {
      check(p.dtype === 'f32', op, () => `parameter ${i} (${p.name}) must be f32, got ${p.dtype}`);
      check(!p.disposed, op, () => `parameter ${i} (${p.name}) was disposed`);
      check(p.engine === params[0]!.engine, op, () => `parameter ${i} (${p.name}) belongs to another engine than ${params[0]!.name}`);
      check(!seen.has(p), op, () => `parameter ${i} (${p.name}) appears twice`);
      seen.add(p);
    });
    this.params = [...params];
    this.engine = params[0]!.engine;
    this.state = params.map(() => null);
    this.lr = lr;
    this.store = new ParamStore(this.engine, kind, this.params);
  }

  /** The arenas of the parameters, their gradients and their state buffers. */
  private readonly store: ParamStore;

  /**
   * One update over a whole pack, when every parameter in it has its gradient in its slot and the
   * same state (step count and buffers): then the per-tensor updates are one elementwise kernel
   * over the arenas. Returns false (nothing recorded) otherwise.
   */
  private fusedStep(pack: Pack, names: string[]): boolean {
    const first = this.state[pack.indices[0]!];
    for (const [k, i] of pack.indices.entries()) {
      const p = this.params[i]!;
      if (p.grad !== pack.slots[k] || p.gradSlot !== pack.slots[k]) return false;
      const s = this.state[i];
      if ((s?.step ?? 0) !== (first?.step ?? 0)) return false;
      for (const name of names) if ((s?.buffers.has(name) ?? false) !== (first?.buffers.has(name) ?? false)) return false;
      if (s && first && s.buffers.size !== first.buffers.size) return false;
    }
    const fresh = new Set<string>();
    for (const i of pack.indices) {
      const s = (this.state[i] ??= { step: 0, buffers: new Map() });
      for (const name of names) {
        if (s.buffers.has(name)) continue;
        s.buffers.set(name, this.store.stateSlot(i, name));
        fresh.add(name);
      }
      s.step++;
    }
    const states = pack.indices.map((i) => this.state[i]!);
    const s0 = states[0]!;
    const wholes = new Map([...s0.buffers.keys()].map((name) => [name, pack.state.get(name)!.whole] as const));
    // A replayed step advances the counts as this one did (the uniforms read them again).
    this.engine.onReplay(() => states.forEach((s) => s.step++));
    this.update(pack.params, pack.grads, { get step() { return s0.step; }, buffers: wholes }, fresh);
    // The kernel wrote the parameters through the arena: advance each one's version.
    const params = pack.indices.map((i) => this.params[i]!);
    const advance = (): void => params.forEach((p) => p.version++);
    advance();
    this.engine.onReplay(advance);
    return true;
  }

  /** Throws a RangeError unless the hyper-parameters are valid (checked at construction and each step). */
  protected abstract validate(): void;
  /** The resolved hyper-parameters, as stored in a checkpoint. */
  protected abstract options(): Required<SGDOptions> | Required<AdamOptions>;
  protected abstract setOptions(o: Record<string, unknown>): void;
  /** Names of the state buffers a parameter needs right now. */
  protected abstract bufferNames(): string[];
  /** Buffer names a checkpoint may hold for one parameter, and those it must hold. */
  protected abstract checkpointBuffers(): { allowed: string[]; required: string[] };
  /** Records the update of one parameter; `s.step` is already incremented. */
  protected abstract update(p: Tensor, g: Tensor, s: LiveState, fresh: Set<string>): void;

  /**
   * Updates every parameter that has a gradient (those with `grad === null` are skipped and their
   * step counts do not advance). Records GPU work only; nothing is read back.
   */
  step(): void {
    this.assertOpen();
    this.validate();
    const names = this.bufferNames();
    const todo: [Tensor, Tensor, number][] = [];
    // Validate everything before recording anything, so a bad gradient leaves no half-applied step.
    this.params.forEach((p, i) => {
      check(!p.disposed, this.kind, () => `parameter ${i} (${p.name}) was disposed`);
      const g = p.grad;
      if (!g) return;
      check(!g.disposed, this.kind, () => `gradient of parameter ${i} (${p.name}) was disposed`);
      check(g.dtype === 'f32' && g.size === p.size, this.kind, () =>
        `gradient of ${p.name} must be f32 with ${p.size} elements (shape ${fmtShape(p.shape)}), got ${g.dtype} ${fmtShape(g.shape)}`);
      todo.push([p, g, i]);
    });
    const fused = new Set<number>();
    for (const pack of this.store.packs) if (this.fusedStep(pack, names)) for (const i of pack.indices) fused.add(i);
    for (const [p, g, i] of todo) {
      if (fused.has(i)) continue;
      const s = (this.state[i] ??= { step: 0, buffers: new Map() });
      const fresh = new Set<string>();
      for (const name of names) {
        if (s.buffers.has(name)) continue;
        s.buffers.set(name, this.store.stateSlot(i, name));
        fresh.add(name);
      }
      s.step++;
      this.engine.onReplay(() => s.step++);
      this.update(p, g, s, fresh);
    }
  }

  /**
   * Drops every gradient (`grad = null`, buffers back to the pool), like torch's default
   * `zero_grad(set_to_none=True)`: the next backward takes ownership of its gradient tensors
   * instead of adding into zeroed ones, which saves a fill and an add per parameter. With
   * `setToNone = false` the gradients are zero-filled in place instead.
   */
  zeroGrad(setToNone = true): void {
    this.assertOpen();
    for (const p of this.params) {
      if (!p.grad) continue;
      if (setToNone) {
        // A slot stays with the optimizer, ready for the next backward.
        if (p.grad !== p.gradSlot) p.grad.dispose();
        p.grad = null;
      } else {
        fill(p.grad, 0);
      }
    }
  }

  /** Copies the optimizer state to the CPU (one readback per buffer) for a checkpoint. */
  async stateDict(): Promise<OptimizerState> {
    this.assertOpen();
    const params = await readParamStates(this.state);
    return { kind: this.kind, options: { ...this.options() }, params };
  }

  /**
   * Restores a {@link stateDict} snapshot (hyper-parameters included, as torch does), so training
   * resumes exactly. Validates everything before changing anything; throws a ShapeError naming
   * the parameter and buffer on a mismatch.
   */
  loadStateDict(s: OptimizerState): void {
    this.assertOpen();
    const op = `${this.kind}.loadStateDict`;
    check(s.kind === this.kind, op, () => `state was saved by ${s.kind}, not ${this.kind}`);
    checkParamStates(op, s, this.params, this.checkpointBuffers());
    const before = this.options();
    this.setOptions(s.options);
    try {
      this.validate();
    } catch (e) {
      this.setOptions(before);
      throw e;
    }
    writeParamStates(this.engine, this.store, s.params, this.state);
  }

  /**
   * Releases the gradient and state arenas; the optimizer is unusable afterwards. Parameters keep
   * their values (they stay in their arena until they are disposed) and lose gradients held in slots.
   */
  dispose(): void {
    if (this.disposed) return;
    this.store.dispose();
    this.state = this.params.map(() => null);
    this.disposed = true;
  }

  private assertOpen(): void {
    if (this.disposed) throw new Error(`${this.kind}: the optimizer was disposed`);
  }

  /** Records one elementwise update kernel over the vec4s of `bindings.param`; `uniforms`: all but n4 and base. */
  protected run(kernel: OptimKernel, bindings: Record<string, Tensor> & { param: Tensor }, uniforms: Record<string, UniformInput>): void {
    const param = bindings.param;
    const n4 = Math.ceil(param.size / 4);
    const slots = Object.keys(bindings).length;
    const maxDim = this.engine.limits.maxComputeWorkgroupsPerDimension;
    // A whole arena may hold more vec4s than one 2-D grid reaches (only under tiny reported limits).
    const perDispatch = maxDim * maxDim * WG;
    for (let base = 0; base < n4; base += perDispatch) {
      const count = Math.min(perDispatch, n4 - base);
      this.engine.run({
        name: kernel,
        shader: () => sectionSpec(OPTIM_KERNELS[kernel], optim, kernel, { WG }),
        uniforms: { n4, base, ...uniforms },
        bindings,
        dispatch: grid1d(count, WG, maxDim),
        bytes: (slots * 2 * param.byteLength * count) / n4,
      });
    }
  }
}
