/**
 * Optimizers with torch.optim's semantics: SGD (momentum, dampening, Nesterov, L2 weight decay),
 * Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay). Each step is
 * one fused kernel per parameter tensor (shaders/optim.wgsl); hyper-parameters travel as uniforms,
 * so changing `lr` every step compiles nothing new.
 *
 * Storage: the optimizer packs its parameters into arenas (Engine.pack: one buffer holding many
 * tensors at aligned offsets), with gradient and moment arenas of the same layout, so when every
 * parameter of an arena has a fresh gradient and the same step count (every step of a normal
 * training loop) the whole update is ONE dispatch over the arena instead of one per tensor (the
 * gaps between slots start as zeros and are never read as data: whatever a kernel's vec4 tail
 * leaves there only updates other gap values). Otherwise (some parameter
 * without a gradient, uneven step counts) each tensor is updated on its own, with torch's
 * per-parameter semantics.
 *
 * State: the moment buffers live on the GPU, allocated once at a parameter's first update and
 * reused in place, so a training loop creates no buffers after its first step. Step counts are
 * plain integers on the CPU (as torch's default, non-capturable Adam keeps them): the bias
 * corrections 1 - beta^t are computed from them in float64 and sent as uniforms, which is more
 * accurate than a pow() in f32 on the GPU and needs no readback.
 */
import optim from '../shaders/optim.wgsl';
import type { Engine } from './engine.js';
import { check, fmtShape } from './errors.js';
import { grid1d, read, readWrite, type UniformInput } from './program.js';
import { WG, sectionSpec } from './ops/shader.js';
import type { Tensor } from './tensor.js';
import { fill } from './ops/basic.js';

// Declared interfaces of the update kernels (shaders/optim.wgsl). Every kernel updates vec4s
// [base, n4) of `param` (base offsets a dispatch covering one part of an arena); the
// hyper-parameters are uniforms, computed on the CPU in float64 where torch does.
const OPTIM_KERNELS = {
  sgd: {
    uniforms: { n4: 'u32', base: 'u32', lr: 'f32', weight_decay: 'f32' },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>') },
  },
  /** `first`: the momentum buffer is fresh (selected, not multiplied: it may hold NaN bits). */
  sgd_momentum: {
    uniforms: { n4: 'u32', base: 'u32', lr: 'f32', weight_decay: 'f32', momentum: 'f32', one_minus_dampening: 'f32', nesterov: 'u32', first: 'u32' },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>'), momentum_buffer: readWrite('vec4<f32>') },
  },
  /**
   * Adam and AdamW: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t); Adam passes
   * l2 = weight_decay, decay = 1; AdamW l2 = 0, decay = 1 - lr * weight_decay. `first`: both
   * moments are fresh.
   */
  adam: {
    uniforms: {
      n4: 'u32', base: 'u32', step_size: 'f32', bc2_sqrt: 'f32', beta1: 'f32', one_minus_beta1: 'f32', beta2: 'f32', one_minus_beta2: 'f32',
      eps: 'f32', l2: 'f32', decay: 'f32', first: 'u32',
    },
    bindings: { param: readWrite('vec4<f32>'), grad: read('vec4<f32>'), exp_avg: readWrite('vec4<f32>'), exp_avg_sq: readWrite('vec4<f32>') },
  },
} as const;
type OptimKernel = keyof typeof OPTIM_KERNELS;

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

export interface AdamOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

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

interface LiveState {
  step: number;
  buffers: Map<string, Tensor>;
}

/** Parameters sharing arenas: their data, gradient slots and (made on first use) state by name. */
interface Pack {
  /** Indices into `params`. */
  indices: number[];
  params: Tensor;
  grads: Tensor;
  slots: Tensor[];
  state: Map<string, { whole: Tensor; parts: Tensor[] }>;
}

/** Bytes one arena may hold (and a binding may see). */
const ARENA_MAX_BYTES = 256 << 20;

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
    this.packs = this.packParams();
  }

  private packs: Pack[];

  /** Splits the parameters into arenas under the binding limit and moves them there. */
  private packParams(): Pack[] {
    const limits = this.engine.limits;
    const maxBytes = Math.min(ARENA_MAX_BYTES, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const align = Math.max(256, limits.minStorageBufferOffsetAlignment);
    const groups: number[][] = [];
    let bytes = Infinity;
    this.params.forEach((p, i) => {
      const b = Math.ceil(Math.max(16, p.byteLength) / align) * align;
      if (bytes + b > maxBytes) groups.push([]), (bytes = 0);
      groups[groups.length - 1]!.push(i);
      bytes += b;
    });
    return groups.map((indices) => {
      const tensors = indices.map((i) => this.params[i]!);
      const params = this.engine.pack(tensors).keep();
      const { whole: grads, parts: slots } = this.engine.arena(tensors.map((t) => t.shape), tensors.map((t) => `${t.name}.grad`));
      grads.keep();
      slots.forEach((slot, k) => {
        slot.keep();
        tensors[k]!.gradSlot = slot;
      });
      return { indices, params, grads, slots, state: new Map() };
    });
  }

  /** The pack and slot of parameter i. */
  private slotOf(i: number): [Pack, number] {
    for (const pack of this.packs) {
      const k = pack.indices.indexOf(i);
      if (k >= 0) return [pack, k];
    }
    throw new Error(`${this.kind}: parameter ${i} is in no arena`);
  }

  /** The state buffer `name` of parameter i: its slot in the pack's arena for that name (made zero-filled on first use). */
  private stateSlot(i: number, name: string): Tensor {
    const [pack, k] = this.slotOf(i);
    let arena = pack.state.get(name);
    if (!arena) {
      // A plan would zero this state and take the first-step path at every replay.
      if (this.engine.capturing) throw new Error(`${this.kind}: the optimizer state (${name}) is created by the first step; run one step before capturing a training step`);
      const tensors = pack.indices.map((j) => this.params[j]!);
      const made = this.engine.arena(tensors.map((t) => t.shape), tensors.map((t) => `${t.name}.${name}`));
      made.whole.keep();
      made.parts.forEach((t) => t.keep());
      pack.state.set(name, (arena = made));
    }
    return arena.parts[k]!;
  }

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
        s.buffers.set(name, this.stateSlot(i, name));
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
    for (const pack of this.packs) if (this.fusedStep(pack, names)) for (const i of pack.indices) fused.add(i);
    for (const [p, g, i] of todo) {
      if (fused.has(i)) continue;
      const s = (this.state[i] ??= { step: 0, buffers: new Map() });
      const fresh = new Set<string>();
      for (const name of names) {
        if (s.buffers.has(name)) continue;
        s.buffers.set(name, this.stateSlot(i, name));
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
    const params = await Promise.all(
      this.state.map(async (s) => {
        if (!s) return null;
        const buffers: Record<string, Float32Array> = {};
        for (const [name, t] of s.buffers) buffers[name] = (await t.read()) as Float32Array;
        return { step: s.step, buffers };
      }),
    );
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
    check(s.params.length === this.params.length, op, () => `state has ${s.params.length} parameters, optimizer has ${this.params.length}`);
    s.params.forEach((ps, i) => {
      if (!ps) return;
      const p = this.params[i]!;
      check(typeof ps.buffers === 'object' && ps.buffers !== null, op, () => `parameter ${i} (${p.name}): buffers must be an object of Float32Arrays`);
      check(Number.isInteger(ps.step) && ps.step >= 0, op, () => `parameter ${i} (${p.name}): step must be a non-negative integer, got ${ps.step}`);
      const { allowed, required } = this.checkpointBuffers();
      const names = Object.keys(ps.buffers);
      check(names.every((n) => allowed.includes(n)) && required.every((n) => names.includes(n)), op, () =>
        `parameter ${i} (${p.name}): buffers must be ${required.length ? required.join(' and ') : `none or ${allowed.join(', ')}`}, got [${names.join(', ')}]`);
      for (const [name, data] of Object.entries(ps.buffers))
        check(data instanceof Float32Array && data.length === p.size, op, () =>
          `parameter ${i} (${p.name}): buffer ${name} must be a Float32Array of ${p.size} elements (shape ${fmtShape(p.shape)}), got ${(data as { length?: number })?.length ?? data}`);
    });
    const before = this.options();
    this.setOptions(s.options);
    try {
      this.validate();
    } catch (e) {
      this.setOptions(before);
      throw e;
    }
    this.state.forEach((_, i) => {
      const ps = s.params[i];
      if (!ps) return void (this.state[i] = null);
      const buffers = new Map<string, Tensor>();
      for (const [name, data] of Object.entries(ps.buffers)) {
        const t = this.stateSlot(i, name);
        this.engine.writeTensor(t, data);
        buffers.set(name, t);
      }
      this.state[i] = { step: ps.step, buffers };
    });
  }

  /**
   * Releases the gradient and state arenas; the optimizer is unusable afterwards. Parameters keep
   * their values (they stay in their arena until they are disposed) and lose gradients held in slots.
   */
  dispose(): void {
    if (this.disposed) return;
    for (const pack of this.packs) {
      pack.indices.forEach((i, k) => {
        const p = this.params[i]!;
        if (p.grad === pack.slots[k]) p.grad = null;
        if (p.gradSlot === pack.slots[k]) p.gradSlot = null;
      });
      for (const t of [pack.params, pack.grads, ...pack.slots]) t.dispose();
      for (const a of pack.state.values()) for (const t of [a.whole, ...a.parts]) t.dispose();
    }
    this.packs = [];
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

function finite(kind: string, what: string, v: unknown, min: number, maxExclusive = Infinity): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v >= maxExclusive)
    throw new RangeError(`${kind}: ${what} must be a finite number in [${min}, ${maxExclusive === Infinity ? '∞' : maxExclusive}), got ${v}`);
}

/**
 * Stochastic gradient descent as torch.optim.SGD: with weight decay wd, momentum mu,
 * dampening tau: d = g + wd * p; buf = d on a parameter's first step, else mu * buf + (1 - tau) * d;
 * p -= lr * (nesterov ? d + mu * buf : buf) (plain `p -= lr * d` when mu = 0).
 */
export class SGD extends Optimizer {
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;

  constructor(params: Tensor[], opts: SGDOptions) {
    super('SGD', params, opts.lr);
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = opts.weightDecay ?? 0;
    this.validate();
  }

  protected validate(): void {
    finite('SGD', 'lr', this.lr, 0);
    finite('SGD', 'momentum', this.momentum, 0);
    finite('SGD', 'dampening', this.dampening, -Infinity);
    finite('SGD', 'weightDecay', this.weightDecay, 0);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0))
      throw new RangeError(`SGD: nesterov needs momentum > 0 and dampening 0, got momentum ${this.momentum}, dampening ${this.dampening}`);
  }

  protected options(): Required<SGDOptions> {
    return { lr: this.lr, momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov, weightDecay: this.weightDecay };
  }

  protected setOptions(o: Record<string, unknown>): void {
    this.lr = o.lr as number;
    this.momentum = o.momentum as number;
    this.dampening = o.dampening as number;
    this.nesterov = o.nesterov as boolean;
    this.weightDecay = o.weightDecay as number;
  }

  protected bufferNames(): string[] {
    // As torch: momentum 0 keeps no buffer; a buffer made earlier is kept (and used again if
    // momentum is turned back on).
    return this.momentum !== 0 ? ['momentum_buffer'] : [];
  }

  protected checkpointBuffers(): { allowed: string[]; required: string[] } {
    return { allowed: ['momentum_buffer'], required: [] };
  }

  protected update(p: Tensor, g: Tensor, s: LiveState, fresh: Set<string>): void {
    if (this.momentum === 0) {
      this.run('sgd', { param: p, grad: g }, { lr: () => this.lr, weight_decay: () => this.weightDecay });
      return;
    }
    this.run('sgd_momentum', { param: p, grad: g, momentum_buffer: s.buffers.get('momentum_buffer')! }, {
      lr: () => this.lr,
      weight_decay: () => this.weightDecay,
      momentum: () => this.momentum,
      one_minus_dampening: () => 1 - this.dampening,
      nesterov: () => (this.nesterov ? 1 : 0),
      first: fresh.has('momentum_buffer') ? 1 : 0,
    });
  }
}

/** Shared by Adam and AdamW: they differ only in where weight decay enters. */
abstract class AdamBase extends Optimizer {
  betas: [number, number];
  eps: number;
  weightDecay: number;

  protected constructor(kind: 'Adam' | 'AdamW', params: Tensor[], opts: AdamOptions, defaultDecay: number) {
    super(kind, params, opts.lr);
    this.betas = opts.betas ? [opts.betas[0], opts.betas[1]] : [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? defaultDecay;
    this.validate();
  }

  protected validate(): void {
    finite(this.kind, 'lr', this.lr, 0);
    if (!Array.isArray(this.betas) || this.betas.length !== 2) throw new RangeError(`${this.kind}: betas must be [beta1, beta2], got ${this.betas}`);
    finite(this.kind, 'betas[0]', this.betas[0], 0, 1);
    finite(this.kind, 'betas[1]', this.betas[1], 0, 1);
    finite(this.kind, 'eps', this.eps, 0);
    finite(this.kind, 'weightDecay', this.weightDecay, 0);
  }

  protected options(): Required<AdamOptions> {
    return { lr: this.lr, betas: [this.betas[0], this.betas[1]], eps: this.eps, weightDecay: this.weightDecay };
  }

  protected setOptions(o: Record<string, unknown>): void {
    this.lr = o.lr as number;
    const b = o.betas as [number, number];
    this.betas = Array.isArray(b) ? [b[0], b[1]] : b;
    this.eps = o.eps as number;
    this.weightDecay = o.weightDecay as number;
  }

  protected bufferNames(): string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }

  protected checkpointBuffers(): { allowed: string[]; required: string[] } {
    return { allowed: ['exp_avg', 'exp_avg_sq'], required: ['exp_avg', 'exp_avg_sq'] };
  }

  protected abstract decoupled(): boolean;

  protected update(p: Tensor, g: Tensor, s: LiveState, fresh: Set<string>): void {
    const decoupled = this.decoupled();
    this.run('adam', { param: p, grad: g, exp_avg: s.buffers.get('exp_avg')!, exp_avg_sq: s.buffers.get('exp_avg_sq')! }, {
      // Functions: a captured training step reads the schedule's lr and the step count at each replay.
      step_size: () => this.lr / (1 - this.betas[0] ** s.step),
      bc2_sqrt: () => Math.sqrt(1 - this.betas[1] ** s.step),
      beta1: () => this.betas[0],
      one_minus_beta1: () => 1 - this.betas[0],
      beta2: () => this.betas[1],
      one_minus_beta2: () => 1 - this.betas[1],
      eps: () => this.eps,
      l2: () => (decoupled ? 0 : this.weightDecay),
      decay: () => (decoupled ? 1 - this.lr * this.weightDecay : 1),
      // Both moments are created together, so one flag serves both.
      first: fresh.has('exp_avg') ? 1 : 0,
    });
  }
}

/**
 * Adam as torch.optim.Adam (amsgrad off): L2 weight decay is added to the gradient, and the
 * update is p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
export class Adam extends AdamBase {
  constructor(params: Tensor[], opts: AdamOptions) {
    super('Adam', params, opts, 0);
  }
  protected decoupled(): boolean {
    return false;
  }
}

/**
 * AdamW as torch.optim.AdamW: decoupled weight decay p *= 1 - lr * wd before the Adam update
 * (the gradient itself is not decayed). weightDecay defaults to 0.01, as torch's.
 */
export class AdamW extends AdamBase {
  constructor(params: Tensor[], opts: AdamOptions) {
    super('AdamW', params, opts, 0.01);
  }
  protected decoupled(): boolean {
    return true;
  }
}
