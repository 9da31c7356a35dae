/**
 * float64 references of torch.optim's update rules (SGD, Adam, AdamW; tests only). Each holds
 * the parameter and its state and applies one step per call, in torch's order of operations.
 */

export interface RefSGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

export class RefSGD {
  buf: Float64Array | null = null;
  constructor(public p: Float64Array, public opts: RefSGDOptions) {}

  step(g: ArrayLike<number>): void {
    const { lr, momentum = 0, dampening = 0, nesterov = false, weightDecay = 0 } = this.opts;
    const first = this.buf === null;
    if (momentum !== 0 && first) this.buf = new Float64Array(this.p.length);
    for (let i = 0; i < this.p.length; i++) {
      let d = g[i]! + weightDecay * this.p[i]!;
      if (momentum !== 0) {
        const b = first ? d : momentum * this.buf![i]! + (1 - dampening) * d;
        this.buf![i] = b;
        d = nesterov ? d + momentum * b : b;
      }
      this.p[i] = this.p[i]! - lr * d;
    }
  }
}

export interface RefAdamOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** AdamW: decoupled weight decay. */
  decoupled?: boolean;
}

export class RefAdam {
  m: Float64Array;
  v: Float64Array;
  t = 0;
  constructor(public p: Float64Array, public opts: RefAdamOptions) {
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
  }

  step(g: ArrayLike<number>): void {
    const { lr, betas: [b1, b2] = [0.9, 0.999], eps = 1e-8, weightDecay = 0, decoupled = false } = this.opts;
    this.t++;
    const bc1 = 1 - b1 ** this.t;
    const bc2 = 1 - b2 ** this.t;
    for (let i = 0; i < this.p.length; i++) {
      let gi = g[i]!;
      if (decoupled) this.p[i] = this.p[i]! * (1 - lr * weightDecay);
      else gi += weightDecay * this.p[i]!;
      this.m[i] = b1 * this.m[i]! + (1 - b1) * gi;
      this.v[i] = b2 * this.v[i]! + (1 - b2) * gi * gi;
      this.p[i] = this.p[i]! - (lr / bc1) * (this.m[i]! / (Math.sqrt(this.v[i]!) / Math.sqrt(bc2) + eps));
    }
  }
}
