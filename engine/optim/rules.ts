/**
 * The update rules, with torch.optim's semantics: SGD (momentum, dampening, Nesterov, L2 weight
 * decay), Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay). Each
 * step is one fused kernel per parameter tensor or arena (kernels.ts, shaders/optim.wgsl);
 * hyper-parameters travel as uniforms, so changing `lr` every step compiles nothing new. The bias
 * corrections 1 - beta^t are computed on the CPU in float64 from the integer step counts and sent
 * as uniforms, which is more accurate than a pow() in f32 on the GPU and needs no readback.
 */
import type { Tensor } from '../tensor.js';
import { Optimizer } from './optimizer.js';
import type { LiveState } from './state.js';

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
