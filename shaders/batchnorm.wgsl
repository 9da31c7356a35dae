// Batch normalisation over x [..., C]: per-channel statistics over every other axis.
//
// Layout: x is read as a run of "groups" of L = lcm(C, 4) floats (P = L / 4 vec4s). Lane e of every
// group holds channel e % C, so every kernel here reads x as vec4s whatever C is (the 19-class head
// included), and a per-channel vector replicated to L floats (L / C copies) lines up with the data
// lane for lane. Reductions keep one accumulator per lane; the per-channel finishing kernels merge
// the copies. Only the last group may be partial: there, lanes at or past `rem` hold no data.
//
// Reductions work in chunks of `gpc` groups, one invocation per (chunk, vec4 column); chunk
// results are merged a fixed number at a time. No workgroup memory and no barriers
// (SWIFTSHADER.md, lesson 2).

// How many data elements each lane e holds in the groups [chunk * gpc, min(groups, (chunk + 1) * gpc)).
// Counts follow from the chunk geometry, so no pass stores them.
fn lane_count4(chunk: u32, gpc: u32, groups: u32, rem: u32, e: vec4<u32>) -> vec4<f32> {
  let g0 = chunk * gpc;
  let g1 = min(groups, g0 + gpc);
  let short = vec4<bool>(g1 == groups) & (e >= vec4<u32>(rem));
  return vec4<f32>(f32(g1 - g0)) - select(vec4<f32>(0.0), vec4<f32>(1.0), short);
}

fn lane_count1(chunk: u32, gpc: u32, groups: u32, rem: u32, e: u32) -> f32 {
  let g0 = chunk * gpc;
  let g1 = min(groups, g0 + gpc);
  return f32(g1 - g0) - select(0.0, 1.0, (g1 == groups) & (e >= rem));
}

// Count, mean and M2 (sum of squared deviations from the mean) of a set of values.
struct Moments4 { n: vec4<f32>, mean: vec4<f32>, m2: vec4<f32> }
struct Moments1 { n: f32, mean: f32, m2: f32 }

// Chan, Golub and LeVeque's pairwise update: merging partial (n, mean, M2) never forms
// sum(x^2) - n mean^2, which cancels catastrophically in f32 when |mean| >> std.
fn merge4(a: Moments4, n: vec4<f32>, mean: vec4<f32>, m2: vec4<f32>) -> Moments4 {
  let total = a.n + n;
  let w = n / max(total, vec4<f32>(1.0));
  let d = mean - a.mean;
  return Moments4(total, a.mean + d * w, a.m2 + m2 + d * d * a.n * w);
}

fn merge1(a: Moments1, n: f32, mean: f32, m2: f32) -> Moments1 {
  let total = a.n + n;
  let w = n / max(total, 1.0);
  let d = mean - a.mean;
  return Moments1(total, a.mean + d * w, a.m2 + m2 + d * d * a.n * w);
}

//# kernel bn_stats_partial
// Mean and M2 per (chunk, lane). The sums are taken about the chunk's first value, and the mean
// is written as a deviation from the pivot, the channel's value in row 0 of x: every quantity
// merged later is then of the order of the spread of the data, not of its offset, so f32 keeps
// full precision when the data sit far from zero.
struct Params { groups: u32, p4: u32, rem: u32, gpc: u32, chunks: u32, n4: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> mean_p: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m2_p: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.chunks) { return; }
  let j = i % p.p4;
  let chunk = i / p.p4;
  let g0 = chunk * p.gpc;
  let g1 = min(p.groups, g0 + p.gpc);
  // Groups before full_end are complete; the last group of the tensor is handled after the loops.
  let full_end = min(g1, p.groups - 1u);
  let e = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
  let in_tail = e < vec4<u32>(p.rem);
  let ch = e % vec4<u32>(p.c);
  let pivot = vec4<f32>(x[ch.x / 4u][ch.x % 4u], x[ch.y / 4u][ch.y % 4u], x[ch.z / 4u][ch.z % 4u], x[ch.w / 4u][ch.w % 4u]);
  let shift = select(pivot, x[min(g0 * p.p4 + j, p.n4 - 1u)], in_tail | vec4<bool>(g0 < full_end));
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var g = g0;
  for (; g + {{UNROLL}}u <= full_end; g = g + {{UNROLL}}u) {
    let base = g * p.p4 + j;
{{ACCUMULATE}}
  }
  for (; g < full_end; g = g + 1u) {
    let d = x[g * p.p4 + j] - shift;
    s1 = s1 + d;
    s2 = s2 + d * d;
  }
  if (g1 == p.groups) {
    let d = select(vec4<f32>(0.0), x[min(g * p.p4 + j, p.n4 - 1u)] - shift, in_tail);
    s1 = s1 + d;
    s2 = s2 + d * d;
  }
  let inv = 1.0 / max(lane_count4(chunk, p.gpc, p.groups, p.rem, e), vec4<f32>(1.0));
  mean_p[i] = (shift - pivot) + s1 * inv;
  m2_p[i] = max(s2 - s1 * s1 * inv, vec4<f32>(0.0));
}

//# kernel bn_stats_combine
// Merges up to {{MERGE}} consecutive chunks per lane; the output chunk spans gpc * {{MERGE}} groups.
struct Params { groups: u32, p4: u32, rem: u32, gpc: u32, chunks: u32, out_chunks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mean_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> m2_in: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> mean_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m2_out: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.out_chunks) { return; }
  let j = i % p.p4;
  let oc = i / p.p4;
  let e = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
  var m = Moments4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  let k1 = min(p.chunks, (oc + 1u) * {{MERGE}}u);
  for (var k = oc * {{MERGE}}u; k < k1; k = k + 1u) {
    m = merge4(m, lane_count4(k, p.gpc, p.groups, p.rem, e), mean_in[k * p.p4 + j], m2_in[k * p.p4 + j]);
  }
  mean_out[i] = m.mean;
  m2_out[i] = m.m2;
}

//# kernel bn_stats_finish
// One invocation per channel: merges its lanes over the remaining chunks, then writes the saved
// statistics [pivot; dev; invstd] (mean = pivot + dev) and the normalise parameters
// [gamma * invstd; pivot; dev; beta], each replicated to L floats, and updates the running
// statistics in place as PyTorch does:
// running = (1 - momentum) * running + momentum * batch, with the unbiased variance M2 / (n - 1).
// For n == 1 that is 0 / 0 (PyTorch refuses such a batch); we use M2 / max(n - 1, 1) = 0 so
// the running variance stays finite.
struct Params { groups: u32, l: u32, c: u32, rem: u32, gpc: u32, chunks: u32, eps: f32, momentum: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean_p: array<f32>;
@group(0) @binding(3) var<storage, read> m2_p: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> affine: array<f32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg, {{WG}}u);
  if (c >= p.c) { return; }
  // m.mean is the deviation of the mean from the pivot (see bn_stats_partial).
  var m = Moments1(0.0, 0.0, 0.0);
  for (var e = c; e < p.l; e = e + p.c) {
    for (var k = 0u; k < p.chunks; k = k + 1u) {
      m = merge1(m, lane_count1(k, p.gpc, p.groups, p.rem, e), mean_p[k * p.l + e], m2_p[k * p.l + e]);
    }
  }
  let invstd = inverseSqrt(m.m2 / max(m.n, 1.0) + p.eps);
  let unbiased = m.m2 / max(m.n - 1.0, 1.0);
  let pivot = x[c];
  running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * (pivot + m.mean);
  running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
  let a = gamma[c] * invstd;
  let b = beta[c];
  for (var e = c; e < p.l; e = e + p.c) {
    stats[e] = pivot;
    stats[p.l + e] = m.mean;
    stats[2u * p.l + e] = invstd;
    affine[e] = a;
    affine[p.l + e] = pivot;
    affine[2u * p.l + e] = m.mean;
    affine[3u * p.l + e] = b;
  }
}

//# kernel bn_inference_params
// Inference: the same saved statistics and normalise parameters, from the running statistics
// (pivot = running mean, dev = 0).
struct Params { l: u32, c: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> affine: array<f32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg, {{WG}}u);
  if (c >= p.c) { return; }
  let mean = running_mean[c];
  let invstd = inverseSqrt(running_var[c] + p.eps);
  let a = gamma[c] * invstd;
  let b = beta[c];
  for (var e = c; e < p.l; e = e + p.c) {
    stats[e] = mean;
    stats[p.l + e] = 0.0;
    stats[2u * p.l + e] = invstd;
    affine[e] = a;
    affine[p.l + e] = mean;
    affine[2u * p.l + e] = 0.0;
    affine[3u * p.l + e] = b;
  }
}

//# kernel bn_fold
// Inference: BatchNorm (and the bias of the conv before it) folded into one per-channel affine
// for a producer's epilogue: scale = gamma / sqrt(var + eps), shift = beta + (bias - mean) * scale.
struct Params { c: u32, has_bias: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read> running_var: array<f32>;
// Without a conv bias, has_bias = 0 and gamma is bound here (any buffer of C floats).
@group(0) @binding(5) var<storage, read> conv_bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> affine: array<f32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg, {{WG}}u);
  if (c >= p.c) { return; }
  let scale = gamma[c] * inverseSqrt(running_var[c] + p.eps);
  let bias = select(0.0, conv_bias[c], p.has_bias != 0u);
  affine[c] = scale;
  affine[p.c + c] = beta[c] + (bias - running_mean[c]) * scale;
}

//# kernel bn_affine
// y = act(((x - pivot) - dev) * a + b (+ residual)) per lane, with params [a; pivot; dev; b] replicated to L floats.
// x - pivot is exact for data near the pivot (a data value of the channel), and dev is small, so
// x - mean keeps full precision even when |mean| >> std. Each invocation handles {{K}} groups of one
// vec4 column: the parameters are loaded once per {{K}} vec4s.
struct Params { n4: u32, p4: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
// A residual added before the activation (MobileNetV2's skip connection), when the op has one.
{{RES_DECL}}
// The activation that follows the normalisation (identity, relu, relu6, sigmoid).
fn act(x: vec4<f32>) -> vec4<f32> {
  return {{ACT}};
}
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.blocks) { return; }
  let j = i % p.p4;
  let base = (i / p.p4) * {{K}}u * p.p4 + j;
  let a = params[j];
  let pivot = params[p.p4 + j];
  let dev = params[2u * p.p4 + j];
  let b = params[3u * p.p4 + j];
{{APPLY}}
}

//# kernel bn_grad_partial
// Per (chunk, lane): sum(g) and sum(g * (x - mean)), the two reductions of the backward pass,
// with x - mean formed as (x - pivot) - dev as in the forward pass.
struct Params { groups: u32, p4: u32, rem: u32, gpc: u32, chunks: u32, n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gr: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> stats: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> sg_p: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> sgx_p: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.chunks) { return; }
  let j = i % p.p4;
  let chunk = i / p.p4;
  let g0 = chunk * p.gpc;
  let g1 = min(p.groups, g0 + p.gpc);
  let full_end = min(g1, p.groups - 1u);
  let e = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
  let in_tail = e < vec4<u32>(p.rem);
  let pivot = stats[j];
  let dev = stats[p.p4 + j];
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var g = g0;
  for (; g + {{UNROLL}}u <= full_end; g = g + {{UNROLL}}u) {
    let base = g * p.p4 + j;
{{ACCUMULATE}}
  }
  for (; g < full_end; g = g + 1u) {
    let at = g * p.p4 + j;
    let gv = gr[at];
    s1 = s1 + gv;
    s2 = s2 + gv * ((x[at] - pivot) - dev);
  }
  if (g1 == p.groups) {
    let at = min(g * p.p4 + j, p.n4 - 1u);
    let gv = select(vec4<f32>(0.0), gr[at], in_tail);
    s1 = s1 + gv;
    s2 = s2 + gv * select(vec4<f32>(0.0), (x[at] - pivot) - dev, in_tail);
  }
  sg_p[i] = s1;
  sgx_p[i] = s2;
}

//# kernel bn_grad_combine
// Sums up to {{MERGE}} consecutive chunks per lane.
struct Params { p4: u32, chunks: u32, out_chunks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sg_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sgx_in: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> sg_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> sgx_out: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.out_chunks) { return; }
  let j = i % p.p4;
  let oc = i / p.p4;
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  let k1 = min(p.chunks, (oc + 1u) * {{MERGE}}u);
  for (var k = oc * {{MERGE}}u; k < k1; k = k + 1u) {
    s1 = s1 + sg_in[k * p.p4 + j];
    s2 = s2 + sgx_in[k * p.p4 + j];
  }
  sg_out[i] = s1;
  sgx_out[i] = s2;
}

//# kernel bn_grad_finish
// One invocation per channel: dbeta = sum(g), dgamma = sum(g * xhat), and the dx coefficients
// [a; pivot; d - b dev; b] replicated to L floats, with dx = a g + b (x - mean) + d
// = a g + (x - pivot) b + (d - b dev). Training (the batch statistics depend on x): a = gamma invstd,
// b = -a invstd sum(g xhat) / n, d = -a sum(g) / n, i.e. dx = gamma invstd / n (n g - sum(g) -
// xhat sum(g xhat)). Inference: the rows are [a; 0; 0; 0], as bn_affine parameters dx = g a.
struct Params { l: u32, c: u32, chunks: u32, n: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sg_p: array<f32>;
@group(0) @binding(2) var<storage, read> sgx_p: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> coef: array<f32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg, {{WG}}u);
  if (c >= p.c) { return; }
  var sg = 0.0;
  var sgx = 0.0;
  for (var e = c; e < p.l; e = e + p.c) {
    for (var k = 0u; k < p.chunks; k = k + 1u) {
      sg = sg + sg_p[k * p.l + e];
      sgx = sgx + sgx_p[k * p.l + e];
    }
  }
  let invstd = stats[2u * p.l + c];
  let sgxhat = sgx * invstd;
  dgamma[c] = sgxhat;
  dbeta[c] = sg;
  let a = gamma[c] * invstd;
  let pivot = {{PIVOT}};
  let b = {{COEF_B}};
  let d = {{COEF_D}} - b * stats[p.l + c];
  for (var e = c; e < p.l; e = e + p.c) {
    coef[e] = a;
    coef[p.l + e] = pivot;
    coef[2u * p.l + e] = d;
    coef[3u * p.l + e] = b;
  }
}

//# kernel bn_backward_dx
// dx = a g' + (x - pivot) b + d per lane, coefficients [a; pivot; d; b] from bn_grad_finish or
// bn_train_grad, g' the gradient through the activation (recomputed from its output y; without an
// activation y is bound to g and unused). {{K}} groups of one vec4 column per invocation.
struct Params { n4: u32, p4: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gr: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> coef: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> y: array<vec4<f32>>;
fn act_grad(g: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
  let zero = vec4<f32>(0.0);
  return {{ACT_GRAD}};
}
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.p4 * p.blocks) { return; }
  let j = i % p.p4;
  let base = (i / p.p4) * {{K}}u * p.p4 + j;
  let a = coef[j];
  let pivot = coef[p.p4 + j];
  let d = coef[2u * p.p4 + j];
  let b = coef[3u * p.p4 + j];
{{APPLY}}
}

//# kernel bn_train_stats
// Training statistics in one dispatch, finish included (saved statistics, normalise parameters
// and running statistics, as bn_stats_finish). Lanes are vec4s of channels when C % 4 == 0
// (V = vec4: lane j holds channels 4j..4j+3 of every row, a group) and single channels otherwise
// (V = f32, fused only); p4 is the lanes per row, rs the row stride of stats in V units (the
// [3, L] layout of the other kernels). Two variants (see laneReduce in batchnorm.ts), by adapter:
// - serial (CPU adapters): one invocation per lane walks every group; no workgroup memory and no
//   barrier, which on SwiftShader would put the whole shader in a slow coroutine mode;
// - workgroup (GPUs): a workgroup per lane, each invocation every WG-th group, then the
//   (n, mean, M2) triples merged pairwise (Chan) in workgroup memory.
// Sums are taken about each invocation's first value and the mean kept relative to the pivot
// (the lane's value in group 0), as in bn_stats_partial.
// Fused (NORMALIZE set): the same invocations then write y = act(x-hat * gamma + beta (+ res))
// for their lane, so the forward is one dispatch; the normalise parameters are not stored.
struct Params { groups: u32, p4: u32, rs: u32, eps: f32, momentum: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{V}}>;
@group(0) @binding(2) var<storage, read> gamma: array<{{V}}>;
@group(0) @binding(3) var<storage, read> beta: array<{{V}}>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<{{V}}>;
@group(0) @binding(5) var<storage, read_write> running_var: array<{{V}}>;
@group(0) @binding(6) var<storage, read_write> stats: array<{{V}}>;
{{OUT_DECL}}
{{SHARED}}
fn act(x: {{V}}) -> {{V}} {
  return {{ACT}};
}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
{{INDEX}}
  let live = j < p.p4;
  let jj = min(j, p.p4 - 1u);
  let pivot = x[jj];
  // Blocks of up to {{BLOCK}} of this invocation's groups, each summed about its first value,
  // merged (Chan) pairwise like a binary counter: level k holds the merge of 2^k blocks, so the
  // rounding error grows with log(blocks), not with blocks (a running merge over the ~200 blocks
  // of a 3x64x65 batch already lost 2 ulps of the mean).
  var levels: array<{{MOM}}, 24>;
  var blocks = 0u;
  var g = t;
  while (g < p.groups) {
    let g0 = g;
    let g_end = min(p.groups, g0 + {{BLOCK}}u * {{STEP}}u);
    let shift = x[g0 * p.p4 + jj];
    var s1 = {{V}}(0.0);
    var s2 = {{V}}(0.0);
    for (; g + {{UNROLLM1}}u * {{STEP}}u < g_end; g = g + {{UNROLL}}u * {{STEP}}u) {
{{ACCUMULATE}}
    }
    for (; g < g_end; g = g + {{STEP}}u) {
      let d = x[g * p.p4 + jj] - shift;
      s1 = s1 + d;
      s2 = s2 + d * d;
    }
    let nb = f32((g_end - g0 + {{STEP}}u - 1u) / {{STEP}}u);
    var carry = {{MOM}}({{V}}(nb), (shift - pivot) + s1 / nb, max(s2 - s1 * s1 / nb, {{V}}(0.0)));
    var level = 0u;
    while (((blocks >> level) & 1u) != 0u) {
      let low = levels[level];
      carry = {{MERGE_FN}}(low, carry.n, carry.mean, carry.m2);
      level = level + 1u;
    }
    levels[level] = carry;
    blocks = blocks + 1u;
  }
  var acc = {{MOM}}({{V}}(0.0), {{V}}(0.0), {{V}}(0.0));
  for (var level = 0u; level < 24u; level = level + 1u) {
    if (((blocks >> level) & 1u) != 0u) {
      let lv = levels[level];
      acc = {{MERGE_FN}}(acc, lv.n, lv.mean, lv.m2);
    }
  }
  var total = acc.n{{X}};
  var dev = acc.mean;
  var m2 = acc.m2;
{{REDUCE}}
  if (!live) { return; }
  let invstd = inverseSqrt(m2 / max(total, 1.0) + p.eps);
  let a = gamma[j] * invstd;
  let b = beta[j];
  if ({{LEAD}}) {
    let unbiased = m2 / max(total - 1.0, 1.0);
    running_mean[j] = (1.0 - p.momentum) * running_mean[j] + p.momentum * (pivot + dev);
    running_var[j] = (1.0 - p.momentum) * running_var[j] + p.momentum * unbiased;
    stats[j] = pivot;
    stats[p.rs + j] = dev;
    stats[2u * p.rs + j] = invstd;
{{STORE_AFFINE}}
  }
{{NORMALIZE}}
}

//# kernel bn_train_grad
// The backward reductions and their finish in one dispatch when C % 4 == 0 (layout and variants
// as bn_train_stats): per lane, sum(g') and sum(g' (x - mean)) with g' = dL/dz, the gradient
// through the activation that followed the normalisation (recomputed from its output y, see
// ACT_GRAD); then dgamma, dbeta and the dx coefficients [a; pivot; d; b] as bn_grad_finish.
// Fused (APPLY_DX set): the same invocations then write dx for their lane (as bn_backward_dx), so
// the backward is one dispatch; the coefficients are not stored.
struct Params { groups: u32, p4: u32, rs: u32, n: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gr: array<{{V}}>;
@group(0) @binding(2) var<storage, read> x: array<{{V}}>;
@group(0) @binding(3) var<storage, read> y: array<{{V}}>;
@group(0) @binding(4) var<storage, read> stats: array<{{V}}>;
@group(0) @binding(5) var<storage, read> gamma: array<{{V}}>;
@group(0) @binding(6) var<storage, read_write> dgamma: array<{{V}}>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<{{V}}>;
{{OUT_DECL}}
{{SHARED}}
fn act_grad(g: {{V}}, y: {{V}}) -> {{V}} {
  let zero = {{V}}(0.0);
  return {{ACT_GRAD}};
}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
{{INDEX}}
  let live = j < p.p4;
  let jj = min(j, p.p4 - 1u);
  let pivot = stats[jj];
  let dev = stats[p.rs + jj];
  // Summed in blocks of up to {{BLOCK}} groups, for precision (as in bn_train_stats).
  var s1 = {{V}}(0.0);
  var s2 = {{V}}(0.0);
  var g = t;
  while (g < p.groups) {
    let g_end = min(p.groups, g + {{BLOCK}}u * {{STEP}}u);
    var b1 = {{V}}(0.0);
    var b2 = {{V}}(0.0);
    for (; g + {{UNROLLM1}}u * {{STEP}}u < g_end; g = g + {{UNROLL}}u * {{STEP}}u) {
{{ACCUMULATE}}
    }
    for (; g < g_end; g = g + {{STEP}}u) {
      let at = g * p.p4 + jj;
      let gv = act_grad(gr[at], y[at]);
      b1 = b1 + gv;
      b2 = b2 + gv * ((x[at] - pivot) - dev);
    }
    s1 = s1 + b1;
    s2 = s2 + b2;
  }
{{REDUCE}}
  if (!live) { return; }
  let sg = s1;
  let invstd = stats[2u * p.rs + j];
  let sgxhat = s2 * invstd;
  let a = gamma[j] * invstd;
  let b = {{COEF_B}};
  let d = {{COEF_D}} - b * dev;
  if ({{LEAD}}) {
    dgamma[j] = sgxhat;
    dbeta[j] = sg;
{{STORE_COEF}}
  }
{{APPLY_DX}}
}
