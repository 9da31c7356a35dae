/**
 * Where an optimizer keeps its parameters, gradients and per-parameter state on the GPU.
 *
 * The parameters are packed into arenas (Engine.pack: one buffer holding many tensors at aligned
 * offsets), with gradient and moment arenas of the same layout, so when every parameter of an
 * arena has a fresh gradient and the same step count (every step of a normal training loop) the
 * whole update is ONE dispatch over the arena instead of one per tensor (the gaps between slots
 * start as zeros and are never read as data: whatever a kernel's vec4 tail leaves there only
 * updates other gap values).
 *
 * The moment buffers are allocated once, at a parameter's first update, and reused in place, so a
 * training loop creates no buffers after its first step. Step counts are plain integers on the
 * CPU (as torch's default, non-capturable Adam keeps them).
 */
import type { Engine } from '../engine.js';
import type { Tensor } from '../tensor.js';

/** One parameter's live state: its update count and its state buffers by torch's names. */
export interface LiveState {
  step: number;
  buffers: Map<string, Tensor>;
}

/** Parameters sharing arenas: their data, gradient slots and (made on first use) state by name. */
export interface Pack {
  /** Indices into `params`. */
  indices: number[];
  params: Tensor;
  grads: Tensor;
  slots: Tensor[];
  state: Map<string, { whole: Tensor; parts: Tensor[] }>;
}

/** Bytes one arena may hold (and a binding may see). */
const ARENA_MAX_BYTES = 256 << 20;

/** The arenas of one optimizer's parameters; `kind` names the optimizer in errors. */
export class ParamStore {
  packs: Pack[];

  constructor(
    private readonly engine: Engine,
    private readonly kind: string,
    private readonly params: readonly Tensor[],
  ) {
    this.packs = this.packParams();
  }

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
  stateSlot(i: number, name: string): Tensor {
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
   * Releases the gradient and state arenas. Parameters keep their values (they stay in their
   * arena until they are disposed) and lose gradients held in slots.
   */
  dispose(): void {
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
  }
}
