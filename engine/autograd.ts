/**
 * Reverse-mode autograd, micrograd-sized. An op that sees an input requiring grad (while grad
 * mode is on) stores a GradNode on its output: the inputs and a backward function that launches
 * GPU kernels. `backward(loss)` walks the graph in reverse topological order; gradients
 * accumulate on the GPU into `leaf.grad`. The heavy lifting lives in the kernels, not here.
 */
import { check, fmtShape } from './errors.js';
import type { Tensor } from './tensor.js';
import { addInPlace, fill } from './ops/accumulate.js';

export interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  /**
   * dL/d(output) -> dL/d(input i) for each input (null where none flows). Runs with grad off.
   * `accumulated[i]`, where given, is the gradient input i has gathered so far (from its other
   * consumers): a backward may add its contribution into that tensor in place and return it,
   * which saves the separate accumulation pass; it may also ignore it.
   * `into[i]`, where given, is where input i's gradient will end up (a parameter's slot in its
   * optimizer's gradient arena, see optim.ts): a backward may write the gradient straight into
   * that tensor (overwriting it whole) and return it, which saves a copy; it may also ignore it.
   */
  backward: (gradOut: Tensor, accumulated: readonly (Tensor | null)[], into: readonly (Tensor | null)[]) => readonly (Tensor | null)[];
}

/**
 * Copy elision in backward: offer leaves' optimizer slots as destinations (`into`), and hand
 * gradOut itself to the first input it passes through to. Off only to compare against the copying
 * path (each leaf's gradient copied into its slot, every pass-through copied), which computes the
 * same values bit for bit. @internal
 */
export const backwardCopyElision = { enabled: true };

/** Attaches a GradNode to `out` when grad mode is on and some input requires grad. Returns `out`. */
export function recordOp(out: Tensor, op: string, inputs: readonly Tensor[], backward: GradNode['backward']): Tensor {
  if (out.engine.gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward };
  }
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: CANet graphs are a few hundred nodes deep, fine for recursion, but a
  // user's long unrolled graph should not hit the call-stack limit.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i]!;
      if (child.requiresGrad && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse();
}

export interface BackwardOptions {
  /** dL/d(root); defaults to ones for a one-element root. */
  gradOutput?: Tensor;
  /** Keep the graph (saved tensors) for a second backward. */
  retainGraph?: boolean;
}

/** Computes gradients of `root` into `.grad` of every leaf tensor that requires grad. */
export function backward(root: Tensor, opts: BackwardOptions = {}): void {
  const engine = root.engine;
  check(root.requiresGrad, 'backward', () => `${root.name} does not require grad (no parameter took part in computing it)`);
  if (!opts.gradOutput)
    check(root.size === 1, 'backward', () => `${root.name} has shape ${fmtShape(root.shape)}; pass gradOutput for a non-scalar root`);
  else
    check(opts.gradOutput.size === root.size, 'backward', () => `gradOutput ${fmtShape(opts.gradOutput!.shape)} does not match ${root.name} ${fmtShape(root.shape)}`);

  const order = topoOrder(root);
  const slots = new Set<Tensor>();
  for (const t of order) if (!t.node && t.gradSlot) slots.add(t.gradSlot);
  const grads = new Map<Tensor, Tensor>();
  engine.noGrad(() => {
    grads.set(root, opts.gradOutput ?? fill(engine.empty(root.shape, 'f32').keep(), 1));
    for (const t of order) {
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.node) {
        // A leaf: accumulate into .grad, which the leaf owns, or into its optimizer's slot.
        if (t.grad) {
          addInPlace(t.grad, g);
          if (g !== opts.gradOutput) g.dispose();
        } else if (t.gradSlot && !t.gradSlot.disposed) {
          // Written there by the backward that produced it (see `into` below), or copied now.
          if (g !== t.gradSlot) {
            engine.copyBuffer(g, 0, t.gradSlot, 0, g.byteLength);
            if (g !== opts.gradOutput) g.dispose();
          }
          t.grad = t.gradSlot;
        } else {
          t.grad = g === opts.gradOutput ? engine.copy(g).keep() : g;
        }
        continue;
      }
      if (t.disposed) throw new Error(`backward: ${t.name} (output of ${t.node.op}) was disposed before backward`);
      const node = t.node;
      for (const input of node.inputs)
        if (input.disposed) throw new Error(`backward: input ${input.name} of ${node.op} was disposed before backward`);
      // Gradients gathered so far, offered for in-place accumulation (not for an input that
      // appears twice: its two contributions would both land in the same tensor).
      const accumulated = node.inputs.map((input) =>
        node.inputs.indexOf(input) === node.inputs.lastIndexOf(input) ? (grads.get(input) ?? null) : null);
      // Destinations: a leaf's optimizer slot, where its gradient would be copied otherwise, when
      // this is its first (and, within this node, only) contribution and it has no .grad yet.
      const into = node.inputs.map((input) =>
        backwardCopyElision.enabled && !input.node && input.requiresGrad && !input.grad && input.gradSlot && !input.gradSlot.disposed &&
        !grads.has(input) && node.inputs.indexOf(input) === node.inputs.lastIndexOf(input) ? input.gradSlot : null);
      const inGrads = engine.scope(() => node.backward(g, accumulated, into));
      // A backward may pass gradOut straight through (add) or return one tensor for two inputs
      // (x + x); each input's gradient must be its own tensor, since each is disposed on its own.
      // gradOut itself (ours unless the caller passed it) goes to the first input it flows to
      // unchanged (a residual add); only further ones get copies.
      const used = new Set<Tensor>();
      const merged: Tensor[] = [];
      let gHandedOn = false;
      node.inputs.forEach((input, i) => {
        let gi = inGrads[i];
        if (!gi || !input.requiresGrad) return;
        if (gi === accumulated[i]) return; // added in place by the backward
        check(gi.size === input.size, 'backward', () => `${node.op} returned grad ${fmtShape(gi!.shape)} for input ${input.name} ${fmtShape(input.shape)}`);
        if (gi === g && !gHandedOn && g !== opts.gradOutput && backwardCopyElision.enabled) gHandedOn = true;
        else if (gi === g || used.has(gi) || (isSlot(gi) && gi !== into[i])) gi = engine.copy(gi);
        used.add(gi);
        gi.keep();
        const prev = grads.get(input);
        if (prev) {
          addInPlace(prev, gi);
          merged.push(gi);
        } else grads.set(input, gi);
      });
      for (const gi of merged) gi.dispose();
      for (const [i, gi] of inGrads.entries()) if (gi && gi !== g && !used.has(gi) && gi !== accumulated[i] && !isSlot(gi)) gi.dispose();
      if (g !== opts.gradOutput && !gHandedOn) g.dispose();
      if (!opts.retainGraph) t.node = null;
    }
  });
  // Normally empty by now; a slot stays with its optimizer whatever happens.
  for (const g of grads.values()) if (!isSlot(g)) g.dispose();

  /** Whether `t` is some leaf's optimizer slot (never disposed here: the optimizer owns it). */
  function isSlot(t: Tensor): boolean {
    return slots.has(t);
  }
}
