/**
 * Optimizer cases (SGD, Adam, AdamW against the float64 torch.optim references), run by
 * test/optim.test.ts (every configuration) and by the browser page (OPTIM_BROWSER), with the
 * helpers both use. Tolerance: rel err < 1e-5 with a floor of 5% of the largest magnitude (FLOOR).
 */
import { Adam, AdamW, SGD, type Engine, type Optimizer, type Tensor } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { RefAdam, RefSGD, type RefAdamOptions, type RefSGDOptions } from '../ref/optim.js';
import { expectEqual, f32Round, maxAbs } from './common.js';

export const SIZES = [1, 5, 1001];
/**
 * Relative error floor for optimizer results: parameters and gradients are O(1), so each f32 step
 * rounds at ~6e-8 absolute, and a result that cancels to near zero (p - lr * d, 0.9 * buf + g)
 * keeps that absolute error. Errors are measured against 5% of the largest magnitude instead of
 * against the tiny value itself: tol 1e-5 then allows ~5e-7 absolute near zero, 1e-5 relative elsewhere.
 */
export const FLOOR = 0.05;
export const close = (got: ArrayLike<number>, want: ArrayLike<number>, what: string): number => expectClose(got, want, 1e-5, what, FLOOR * maxAbs(want));

export type Config =
  | { kind: 'SGD'; opts: RefSGDOptions }
  | { kind: 'Adam' | 'AdamW'; opts: RefAdamOptions & { betas?: [number, number] } };

export const CONFIGS: Config[] = [
  { kind: 'SGD', opts: { lr: 0.1 } },
  { kind: 'SGD', opts: { lr: 0.1, weightDecay: 0.05 } },
  { kind: 'SGD', opts: { lr: 0.1, momentum: 0.9 } },
  { kind: 'SGD', opts: { lr: 0.1, momentum: 0.9, dampening: 0.3 } },
  { kind: 'SGD', opts: { lr: 0.1, momentum: 0.9, nesterov: true } },
  { kind: 'SGD', opts: { lr: 0.05, momentum: 0.9, weightDecay: 1e-2, nesterov: true } },
  { kind: 'Adam', opts: { lr: 0.01 } },
  { kind: 'Adam', opts: { lr: 0.01, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1 } },
  { kind: 'AdamW', opts: { lr: 0.01, weightDecay: 0.1 } },
];

/** What the browser page runs: SGD (momentum 0.9, Nesterov, weight decay) and Adam. */
export const OPTIM_BROWSER: Config[] = [CONFIGS[5]!, CONFIGS[6]!];

export function makeOptimizer(c: Config, params: Tensor[]): Optimizer {
  if (c.kind === 'SGD') return new SGD(params, c.opts);
  const { decoupled: _, ...o } = c.opts;
  return c.kind === 'Adam' ? new Adam(params, o) : new AdamW(params, { weightDecay: 0, ...o });
}

export function makeRef(c: Config, p: Float64Array): RefSGD | RefAdam {
  return c.kind === 'SGD' ? new RefSGD(p, { ...c.opts }) : new RefAdam(p, { ...c.opts, decoupled: c.kind === 'AdamW' });
}

/**
 * Gives `p` a fresh gradient as backward does: into its optimizer's gradient slot when it has one
 * (then a step where every parameter has one is a single fused update over the arena), else as a
 * tensor owned by p.
 */
export function setGrad(e: Engine, p: Tensor, g: Float32Array): void {
  if (p.gradSlot) {
    e.writeTensor(p.gradSlot, g);
    p.grad = p.gradSlot;
    return;
  }
  p.grad?.dispose();
  p.grad = e.tensor(g, p.shape).keep();
}

/**
 * 6 steps of `c` on parameters of 1, 5 and 1001 elements with a changing learning rate and one
 * skipped gradient, against the float64 reference: parameters, step counts and state buffers.
 * Returns the largest relative error; throws over the tolerance.
 */
export async function checkOptimConfig(e: Engine, c: Config): Promise<number> {
  return e.scope(async () => {
    const init = SIZES.map((n, k) => f32Round(randn(n, 1000 + k)));
    const params = SIZES.map((n, k) => e.tensor(Float32Array.from(init[k]!), [n]));
    const refs = init.map((p) => makeRef(c, Float64Array.from(p)));
    const opt = makeOptimizer(c, params);
    let worst = 0;
    const check = (got: ArrayLike<number>, want: ArrayLike<number>, what: string) => void (worst = Math.max(worst, close(got, want, what)));
    try {
      for (let step = 0; step < 6; step++) {
        // The learning rate changes every step (a schedule), and the 5-element parameter has
        // no gradient at step 2: it must be skipped, its step count not advanced.
        const lr = c.opts.lr * (1 - step / 8);
        opt.lr = lr;
        params.forEach((p, k) => {
          if (step === 2 && k === 1) return;
          const g = Float32Array.from(randn(p.size, 77 * step + k, -1, 1));
          setGrad(e, p, g);
          refs[k]!.opts.lr = lr;
          refs[k]!.step(g);
        });
        opt.step();
        opt.zeroGrad();
      }
      for (const [k, p] of params.entries()) check(await p.read(), refs[k]!.p, `param of ${p.size}`);
      const state = await opt.stateDict();
      for (const [k, ref] of refs.entries()) {
        const s = state.params[k]!;
        expectEqual([s.step], [k === 1 ? 5 : 6], 'step count');
        if (ref instanceof RefAdam) {
          check(s.buffers.exp_avg!, ref.m, `exp_avg of ${SIZES[k]}`);
          check(s.buffers.exp_avg_sq!, ref.v, `exp_avg_sq of ${SIZES[k]}`);
        } else if (ref.buf) check(s.buffers.momentum_buffer!, ref.buf, `momentum_buffer of ${SIZES[k]}`);
        else expectEqual(Object.keys(s.buffers), [], 'no buffer without momentum');
      }
      return worst;
    } finally {
      opt.dispose();
    }
  });
}
