// Data movement: concat, slice (and its backward) and permute. Every kernel moves 32-bit words as
// u32 so that any dtype is copied bit for bit. T is vec4<u32> where the layout keeps whole vec4s
// inside rows, u32 otherwise; the generated BODY does several elements per invocation in the
// scalar case (SWIFTSHADER.md: per-invocation overhead and gathers dominate these kernels).

//# kernel copy_rows
// dst[o * dst_row + dst_off + j] = src[o * src_row + src_off + j] for o < rows, j < len, in units
// of T: concat writes each input into its column band of the output, slice reads one band.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let e0 = i * {{PER}}u;
  var o = e0 / p.len;
  var j = e0 - o * p.len;
  // Unrolled elements e0, e0 + 1, ...; each write is guarded, since past `total` lie other
  // inputs' bands of the same output.
  {{BODY}}
}

//# kernel slice_backward
// dx[o * row + j] = g[o * len + j - off] for j in [off, off + len), else 0: the gradient of a
// slice, scattered into zeros in one pass over dx (units of T; scalar mode writes vec4s of four
// consecutive elements, the tail lanes into the buffer's slack).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  {{BODY}}
}

//# kernel permute
// out (collapsed dims d0..d5, d0 innermost) gathers x at sum of i_k * s_k, s_k being x's stride of
// the axis that becomes output axis k. Modes (the BODY define): vec4 in and out when axis 0 is
// contiguous in x; four strided loads into one vec4 store when only the output is; else four
// independently indexed elements into one vec4 store.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  {{BODY}}
}
