// Row-wise ops over the last axis (class scores per pixel): softmax, its backward and argmax.
// Rows are many (pixels) and short (classes). Rows of up to 32 values run unrolled by TS (the BODY
// define) on groups of R = 4 / gcd(l, 4) rows: a group is exactly l * R / 4 whole vec4s, so even
// l = 19 is read and written with aligned vec4s and every value sits at a compile-time component
// (SWIFTSHADER.md lessons 1 and 3). Longer rows loop, one invocation per row, in vec4s when
// l % 4 == 0 (T = vec4<f32>, l counted in vec4s). `t` is the group (or row) of the invocation.

//# kernel softmax_rows
// y = exp(x - max) / sum(exp(x - max)): subtracting the row max keeps exp() in range for any logits.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}

//# kernel softmax_backward_rows
// dx = y * (g - sum(g * y)) per row.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}

//# kernel argmax_rows
// Index of the row max, the first one on ties (strict > while scanning forward).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}
