// Optimizer updates (engine/optim.ts): one fused kernel per parameter tensor reads the parameter,
// its gradient and its state once and writes them back once. Every hyper-parameter is a uniform,
// so a schedule that changes lr each step reuses the same pipeline. Buffers are pool buckets
// padded to 16 bytes, so vec4 access over ceil(n / 4) stays in bounds; the tail lanes update
// slack that nothing reads. `base` offsets a dispatch that covers one part of a tensor (more vec4s
// than one dispatch's grid). Formulas and operation order follow torch.optim (foreach=False).

//# kernel sgd
// p -= lr * (g + weight_decay * p)
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = p.base + flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let w = param[i];
  let d = grad[i] + p.weight_decay * w;
  param[i] = w - p.lr * d;
}

//# kernel sgd_momentum
// d = g + wd * p; buf = first ? d : momentum * buf + (1 - dampening) * d;
// p -= lr * (nesterov ? d + momentum * buf : buf). 1 - dampening comes from the CPU (float64), as
// torch computes it from a Python float: in f32, 1 - f32(x) loses up to 1e-5 relative.
// `first` selects instead of multiplying: a fresh buffer holds recycled bits, maybe NaN, and
// 0 * NaN is NaN.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = p.base + flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let w = param[i];
  let d = grad[i] + p.weight_decay * w;
  var b = d;
  if (p.first == 0u) { b = p.momentum * momentum_buffer[i] + p.one_minus_dampening * d; }
  momentum_buffer[i] = b;
  let dir = select(b, d + p.momentum * b, p.nesterov != 0u);
  param[i] = w - p.lr * dir;
}

//# kernel adam
// Adam and AdamW in one kernel: Adam passes l2 = weight_decay, decay = 1 (decay added to the
// gradient); AdamW passes l2 = 0, decay = 1 - lr * weight_decay (decoupled, applied to p first).
// step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) come from the CPU in float64,
// where the integer step count lives, so no pow() runs here. 1 - beta is also computed there:
// 1 - f32(0.999) is 1.3e-5 off 0.001 in relative terms.
//   g = grad + l2 * p; m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g * g;
//   p = p * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps)
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = p.base + flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let w = param[i];
  let g = grad[i] + p.l2 * w;
  let fresh = p.first != 0u;
  let m0 = select(exp_avg[i], vec4<f32>(0.0), fresh);
  let v0 = select(exp_avg_sq[i], vec4<f32>(0.0), fresh);
  let m = p.beta1 * m0 + p.one_minus_beta1 * g;
  let v = p.beta2 * v0 + p.one_minus_beta2 * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = w * p.decay - p.step_size * m / (sqrt(v) / p.bc2_sqrt + p.eps);
}
