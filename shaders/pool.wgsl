// Pooling over NHWC tensors. Each invocation handles V channels: V = 4 (T = vec4<f32>,
// U = vec4<u32>, B = vec4<bool>) when C % 4 == 0, else V = 1 (f32, u32, bool); `cv` = C / V.
// Max pooling follows PyTorch: the first maximum in scan order wins, NaN propagates, and the
// backward pass routes the gradient to that position (argmax indices saved by the forward pass).
// WGSL lets compilers assume floats are never NaN (SwiftShader folds v != v to false), so NaN
// is tested on the bits: is_nan(v), defined in each kernel that needs it.

//# kernel global_avg_partial
// Sum over the pixels [chunk * ppc, min(hw, (chunk + 1) * ppc)) of image n, times `scale`
// (1 / hw when one chunk covers the image, so no finishing pass is needed; else 1).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  let r = i / p.cv;
  let chunk = r % p.chunks;
  let base = (r / p.chunks) * p.hw * p.cv + j;
  let p1 = min(p.hw, (chunk + 1u) * p.ppc);
  var acc = {{T}}(0.0);
  var q = chunk * p.ppc;
  for (; q + {{UNROLL}}u <= p1; q = q + {{UNROLL}}u) {
    let at = base + q * p.cv;
{{ACCUMULATE}}
  }
  for (; q < p1; q = q + 1u) { acc = acc + x[base + q * p.cv]; }
  out[i] = acc * p.scale;
}

//# kernel global_avg_sg
// Global average with subgroups (engine/ops/subgroup.ts): one workgroup per (image, channel
// vector), its invocations taking every {{WG}}-th pixel, then wg_sum; one pass, no partials.
{{ENABLE}}
{{WG_SUM}}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) sgi: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.total) { return; }
  let base = (w / p.cv) * p.hw * p.cv + w % p.cv;
  var acc = {{T}}(0.0);
  for (var q = t; q < p.hw; q = q + {{WG}}u) { acc = acc + x[base + q * p.cv]; }
  let total = wg_sum(acc, t, sgi);
  if (t == 0u) { out[w] = total * p.scale; }
}

//# kernel global_avg_finish
// Sums the chunk sums of each (n, channel vector) and scales by 1 / hw.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let base = (i / p.cv) * p.chunks * p.cv + i % p.cv;
  var acc = {{T}}(0.0);
  for (var k = 0u; k < p.chunks; k = k + 1u) { acc = acc + part[base + k * p.cv]; }
  out[i] = acc * p.scale;
}

//# kernel global_avg_backward
// dx[n, q, c] = g[n, c] / hw; each invocation writes {{K}} pixels of one channel vector.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  let r = i / p.cv;
  let n = r / p.blocks;
  let q0 = (r % p.blocks) * {{K}}u;
  let gv = g[n * p.cv + j] * p.scale;
  let base = n * p.hw * p.cv + j;
{{STORE}}
}

//# kernel global_max_partial
// Maximum and its first pixel index over the pixels [chunk * ppc, ...) of image n.
fn is_nan(v: {{T}}) -> {{B}} { return (bitcast<{{U}}>(v) & {{U}}(0x7fffffffu)) > {{U}}(0x7f800000u); }
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  let r = i / p.cv;
  let chunk = r % p.chunks;
  let base = (r / p.chunks) * p.hw * p.cv + j;
  let p1 = min(p.hw, (chunk + 1u) * p.ppc);
  var q = chunk * p.ppc;
  var best = x[base + q * p.cv];
  var idx = {{U}}(q);
  q = q + 1u;
  for (; q + {{UNROLL}}u <= p1; q = q + {{UNROLL}}u) {
    let at = base + q * p.cv;
{{ACCUMULATE}}
  }
  for (; q < p1; q = q + 1u) {
    let v = x[base + q * p.cv];
    let take = (v > best) | (is_nan(v) & !is_nan(best));
    best = select(best, v, take);
    idx = select(idx, {{U}}(q), take);
  }
  out[i] = best;
  out_idx[i] = idx;
}

//# kernel global_max_finish
// Merges the chunk maxima in pixel order, so ties keep the first index.
fn is_nan(v: {{T}}) -> {{B}} { return (bitcast<{{U}}>(v) & {{U}}(0x7fffffffu)) > {{U}}(0x7f800000u); }
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let base = (i / p.cv) * p.chunks * p.cv + i % p.cv;
  var best = part[base];
  var idx = part_idx[base];
  for (var k = 1u; k < p.chunks; k = k + 1u) {
    let v = part[base + k * p.cv];
    let take = (v > best) | (is_nan(v) & !is_nan(best));
    best = select(best, v, take);
    idx = select(idx, part_idx[base + k * p.cv], take);
  }
  out[i] = best;
  out_idx[i] = idx;
}

//# kernel global_max_backward
// dx[n, q, c] = g[n, c] where q is the saved argmax pixel of (n, c), else 0: one pass that writes
// every element (cheaper than zero-filling and scattering); {{K}} pixels per invocation.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  let r = i / p.cv;
  let n = r / p.blocks;
  let q0 = (r % p.blocks) * {{K}}u;
  let gv = g[n * p.cv + j];
  let iv = idx[n * p.cv + j];
  let base = n * p.hw * p.cv + j;
{{STORE}}
}

//# kernel max_pool_forward
// Each invocation computes {{OWP}} adjacent outputs along the width for one channel vector; the
// window loops are unrolled in TS (the BODY define), and input columns shared by neighbouring windows
// are loaded once. Out-of-image taps count as -inf (they never win); `idx` (when saved) is the
// window position kh * KW + kw of the maximum. neg_inf is a uniform because WGSL constant
// expressions cannot hold infinities.
fn is_nan(v: {{T}}) -> {{B}} { return (bitcast<{{U}}>(v) & {{U}}(0x7fffffffu)) > {{U}}(0x7f800000u); }
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  var r = i / p.cv;
  let ow0 = (r % p.ow_blocks) * {{OWP}}u;
  r = r / p.ow_blocks;
  let oh = r % p.ho;
  let n = r / p.ho;
  let ih0 = i32(oh * {{SH}}u) - i32(p.pad_h);
  let iw0 = i32(ow0 * {{SW}}u) - i32(p.pad_w);
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
{{BODY}}
}

//# kernel max_pool_backward_blocked
// Gather form (no float atomics in WGSL): each input element sums the gradients of the outputs
// whose window holds it and whose saved argmax is this position. An invocation takes a block of
// SH x SW inputs, one per stride phase: with kernel, stride and padding fixed when the code is
// generated (the BODY define), the window position of every (input, output) pair is a constant,
// only real pairs are emitted, and each candidate output's g and idx are loaded once per block
// (k3 s2 p1: 4 outputs for 4 inputs, against 4 outputs for each input one at a time).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  var r = i / p.cv;
  let bw = r % p.bw;
  r = r / p.bw;
  let bh = r % p.bh;
  let n = r / p.bh;
  let ih0 = bh * {{SH}}u;
  let iw0 = bw * {{SW}}u;
  let ho = i32(p.ho);
  let wo = i32(p.wo);
  // Output row (column) at stride phase 0 of this block; the candidates lie around it.
  let oh_base = i32(bh) + {{OH_SHIFT}};
  let ow_base = i32(bw) + {{OW_SHIFT}};
{{BODY}}
}

//# kernel max_pool_backward
// Fallback for strides whose SH x SW block would hold too many accumulators: one input per
// invocation, gathering from the ceil(KH / SH) x ceil(KW / SW) outputs that can hold it.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j = i % p.cv;
  var r = i / p.cv;
  let iw = i32(r % p.w);
  r = r / p.w;
  let ih = i32(r % p.h);
  let n = r / p.h;
  // The last output row/column whose window can reach this input; earlier ones follow.
  let oh_hi = (ih + i32(p.pad_h)) / {{SH}};
  let ow_hi = (iw + i32(p.pad_w)) / {{SW}};
  let ho = i32(p.ho);
  let wo = i32(p.wo);
  var acc = {{T}}(0.0);
{{BODY}}
  dx[i] = acc;
}
