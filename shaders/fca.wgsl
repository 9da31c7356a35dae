// The FCA combination Y = F * As * Ac + F = F * (As * Ac + 1), F [N,H,W,C], As [N,H,W] (one value
// per pixel), Ac [N,C] (one per image and channel), and its backward. Vector mode (C % 4 == 0):
// an invocation owns a block of V vec4s of channels (V unrolled by TS in the BODY define).
// Scalar mode: forward takes four consecutive elements (F read and Y written as one vec4);
// backward a block of four channels guarded against C.

//# kernel fca_forward
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  {{BODY}}
}

//# kernel fca_backward
// One pass over g and F: dF = g * (As * Ac + 1) directly; dAs and dAc as partial sums, summed
// after. Invocation (n, chunk, block) walks the pixels of one chunk for one block of channels:
//   das_part[pixel, block] = sum over the block's channels of g * F * Ac
//   dac_part[n, chunk, c]  = sum over the chunk's pixels of g * F * As
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let b = i % p.nb;
  let t = i / p.nb;
  let chunk = t % p.chunks;
  let n = t / p.chunks;
  let p0 = chunk * p.per_chunk;
  let p1 = min(p.hw, p0 + p.per_chunk);
  {{BODY}}
}

//# kernel fca_channel_pool
// Inference channel attention, first half: s[n, c] = max over pixels + mean over pixels of X,
// X being channels [off, off + C) of a tensor with `stride` channels per pixel (the deep branch's
// part of the concatenation the FCA convolves). FC(max) + FC(avg) = W (max + avg) + 2 b, so one
// vector per image feeds the shared Linear. Invocation (n, channel group of T).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let c = i % p.cv;
  let n = i / p.cv;
  var at = n * p.hw * p.stride_v + p.off_v + c;
  // {{T}}(...) converts f16 storage to f32 (and is the identity on f32).
  var mx = {{T}}(x[at]);
  var sm = mx;
  for (var q = 1u; q < p.hw; q = q + 1u) {
    at = at + p.stride_v;
    let v = {{T}}(x[at]);
    mx = max(mx, v);
    sm = sm + v;
  }
  s[i] = mx + sm * p.inv_hw;
}

//# kernel fca_channel_pool_sg
// fca_channel_pool with subgroups (engine/ops/subgroup.ts): one workgroup per (image, channel
// vector), its invocations taking every {{WG}}-th pixel, then wg_max and wg_sum.
{{ENABLE}}
{{WG_SUM}}
{{WG_MAX}}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) sgi: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.threads) { return; }
  let c = w % p.cv;
  let n = w / p.cv;
  let base = n * p.hw * p.stride_v + p.off_v + c;
  // Every invocation starts from pixel 0 (hw >= {{WG}}: see fca.ts), so no identity is needed.
  var mx = x[base];
  var sm = {{T}}(0.0);
  for (var q = t; q < p.hw; q = q + {{WG}}u) {
    let v = x[base + q * p.stride_v];
    mx = max(mx, v);
    sm = sm + v;
  }
  let m = wg_max(mx, t);
  let total = wg_sum(sm, t, sgi);
  if (t == 0u) { s[w] = m + total * p.inv_hw; }
}

//# kernel fca_channel_fc
// Inference channel attention, second half: ac[n, o] = sigmoid(sum_k w[o, k] s[n, k] + 2 b[o]).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let o = i % p.c;
  let n = i / p.c;
  var acc = {{T}}(0.0);
  for (var k = 0u; k < p.kv; k = k + 1u) { acc = acc + s[n * p.kv + k] * w[o * p.kv + k]; }
  let z = {{SUM}} + 2.0 * b[o];
  // exp of a non-positive number never overflows.
  ac[i] = select(exp(z) / (1.0 + exp(z)), 1.0 / (1.0 + exp(-z)), z >= 0.0);
}
