/**
 * Gradient check: the analytic GPU gradient of L = sum(r * f(x)) (r a fixed random tensor, so
 * every output element matters) against central finite differences of the same L computed with
 * the float64 CPU reference. With a float64 reference the differences are exact to ~1e-9, so the
 * tolerance only has to cover the GPU's f32 arithmetic.
 */
// The platform-neutral engine API, so the browser test page can bundle this file too.
import type { Engine, Tensor } from '../entry/index.js';
import { backward } from '../entry/index.js';
import { expectClose, randn, rng } from './check.js';

export interface GradCheckInput {
  name: string;
  shape: number[];
  data: Float64Array;
  /** Check the gradient of this input (default true). */
  grad?: boolean;
}

export interface GradCheckOptions {
  /** GPU forward: receives the inputs as tensors that require grad. */
  gpu: (inputs: Tensor[]) => Tensor;
  /** float64 reference forward on the same (flattened, row-major) inputs. */
  ref: (inputs: Float64Array[]) => Float64Array;
  inputs: GradCheckInput[];
  /** Max relative error allowed (see expectClose). */
  tol: number;
  /** Finite-difference step (default 1e-5 relative to the value's scale). */
  eps?: number;
  /** Check at most this many elements per input (sampled), to bound reference cost. */
  maxElements?: number;
  seed?: number;
}

/** Returns the largest relative error seen (throws when one is over `tol`). */
export async function gradCheck(engine: Engine, opts: GradCheckOptions): Promise<number> {
  const { inputs, tol } = opts;
  const eps = opts.eps ?? 1e-5;
  const refOut = opts.ref(inputs.map((i) => i.data));
  const r = randn(refOut.length, opts.seed ?? 99, -1, 1);

  const analytic = await engine.scope(async () => {
    const ts = inputs.map((i) => {
      const t = engine.tensor(Float32Array.from(i.data), i.shape);
      t.requiresGrad = i.grad !== false;
      t.name = i.name;
      return t;
    });
    const out = opts.gpu(ts);
    if (out.size !== refOut.length) throw new Error(`gradCheck: GPU output has ${out.size} elements, reference ${refOut.length}`);
    const rt = engine.tensor(Float32Array.from(r), out.shape);
    backward(out, { gradOutput: rt });
    const grads: (Float32Array | null)[] = [];
    for (const t of ts) grads.push(t.grad ? ((await t.grad.read()) as Float32Array) : null);
    return grads;
  });

  const loss = (xs: Float64Array[]): number => {
    const y = opts.ref(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += r[i]! * y[i]!;
    return s;
  };

  const pick = rng((opts.seed ?? 99) + 1);
  let worst = 0;
  for (const [k, input] of inputs.entries()) {
    if (input.grad === false) continue;
    const g = analytic[k];
    if (!g) throw new Error(`gradCheck: no gradient reached input ${input.name}`);
    const n = input.data.length;
    const count = Math.min(n, opts.maxElements ?? 64);
    const idx = count === n ? [...Array(n).keys()] : Array.from({ length: count }, () => Math.floor(pick() * n));
    const numeric = new Float64Array(count);
    const got = new Float64Array(count);
    const xs = inputs.map((i) => Float64Array.from(i.data));
    idx.forEach((j, m) => {
      const x0 = xs[k]![j]!;
      const h = eps * Math.max(1, Math.abs(x0));
      xs[k]![j] = x0 + h;
      const lp = loss(xs);
      xs[k]![j] = x0 - h;
      const lm = loss(xs);
      xs[k]![j] = x0;
      numeric[m] = (lp - lm) / (2 * h);
      got[m] = g[j]!;
    });
    worst = Math.max(worst, expectClose(got, numeric, tol, `d/d${input.name}`));
  }
  return worst;
}
