// Softmax cross-entropy (engine/ops/loss.ts). Logits are [pixels, K] with the class axis innermost
// (NHWC), so one invocation owns one pixel's contiguous row of K logits. The forward pass also
// writes the gradient of that row: backward is then a single scale by (upstream / sum of weights),
// which is known only after the reduction, with no second pass over the logits.
// Two forward kernels compute the same thing: ce_forward_unrolled (K a compile-time constant, up to
// 64 classes: the usual case) and ce_forward (any K, K a uniform).

//# kernel ce_forward
// Per pixel: (w[y] * (logsumexp(x) - x[y]), w[y]) into `terms` (summed by sumColumns afterwards),
// and, when {{WRITE_GRAD}}, the unnormalised gradient w[y] * (softmax(x) - onehot(y)).
// Ignored and invalid pixels contribute (0, 0) and a zero gradient row. Labels are read as u32
// bits: an i32 label below zero has its top bit set, so one `y < classes` test rejects both
// negative i32 and too-large labels.
// store_grad and class_weight come from engine/ops/loss.ts: they use the optional grad and
// class_weights bindings when the call has them, else do nothing and weigh 1.
{{GRAD_FN}}
{{WEIGHT_FN}}
const WRITE_GRAD: bool = {{WRITE_GRAD}};

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.pixels) { return; }
  let y = labels[i];
  let base = i * p.classes;
  let ignored = y == p.ignore_bits;
  let valid = (y < p.classes) & !ignored;
  if (!valid) {
    if (!ignored) { atomicAdd(&stats[1], 1u); }
    terms[i] = vec2<f32>(0.0);
    if (WRITE_GRAD) {
      for (var c = 0u; c < p.classes; c = c + 1u) { store_grad(base + c, 0.0); }
    }
    return;
  }
  // Subtracting the row max keeps every exp() argument <= 0: logits of +-1e4 give exp(-2e4) = 0
  // instead of inf, and the sum is at least 1, so log() never sees 0.
  var m = logits[base];
  for (var c = 1u; c < p.classes; c = c + 1u) { m = max(m, logits[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.classes; c = c + 1u) { s = s + exp(logits[base + c] - m); }
  let w = class_weight(y);
  // (m - x[y]) first: both are large for big logits and their difference is exact-ish in f32.
  let loss = (m - logits[base + y]) + log(s);
  terms[i] = vec2<f32>(w * loss, w);
  if (WRITE_GRAD) {
    let ws = w / s;
    for (var c = 0u; c < p.classes; c = c + 1u) {
      store_grad(base + c, exp(logits[base + c] - m) * ws - select(0.0, w, c == y));
    }
  }
}

//# kernel ce_forward_unrolled
// ce_forward with K = {{K}} fixed at compile time and the row code unrolled by the TS side: each
// logit is loaded once into a private array indexed by constants (registers), instead of three
// times through per-lane gathers. On SwiftShader this made the kernel ~2.5x faster at K = 19,
// as fast as an elementwise add over the logits. One pipeline per class count, which a model fixes.
{{GRAD_FN}}
{{WEIGHT_FN}}
const WRITE_GRAD: bool = {{WRITE_GRAD}};

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.pixels) { return; }
  let y = labels[i];
  let base = i * {{K}}u;
  let ignored = y == p.ignore_bits;
  let valid = (y < {{K}}u) & !ignored;
  if (!valid) {
    if (!ignored) { atomicAdd(&stats[1], 1u); }
    terms[i] = vec2<f32>(0.0);
    if (WRITE_GRAD) {
      {{ZERO_ROW}}
    }
    return;
  }
  var v: array<f32, {{K}}>;
  {{LOAD_ROW}}
  var m = v[0];
  {{ROW_MAX}}
  var s = 0.0;
  {{ROW_EXP}}
  let w = class_weight(y);
  let loss = (m - logits[base + y]) + log(s);
  terms[i] = vec2<f32>(w * loss, w);
  if (WRITE_GRAD) {
    let ws = w / s;
    {{STORE_GRAD}}
  }
}

//# kernel ce_finish
// loss = sum(w * l) / sum(w); an all-ignored batch has sum(w) = 0 and gives 0, not NaN.
// Writes element 0 only: element 1 of the same buffer holds the invalid-label count.
@compute @workgroup_size(1)
fn main() {
  let sw = sums[1];
  out[0] = select(0.0, sums[0] / sw, sw != 0.0);
}

//# kernel ce_backward
// dlogits = saved gradient * (upstream scalar / sum of weights), read on the GPU: no readback.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let sw = sums[1];
  dx[i] = grad[i] * select(0.0, upstream[0] / sw, sw != 0.0);
}
