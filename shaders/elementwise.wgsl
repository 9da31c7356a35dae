// Elementwise kernels. Tensor buffers are pool buckets padded to 16 bytes, so every kernel here
// works on vec4s over ceil(n / 4): the tail lanes read and write slack inside the same buffer.

//# kernel fill
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { y[i] = vec4<f32>(p.value); }
}

//# kernel axpy_inplace
// y += alpha * x (gradient accumulation, optimizer steps).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { ys[i] = ys[i] + p.alpha * xs[i]; }
}

//# kernel broadcast_scalar
// y = s[0] everywhere (seeding and routing scalar gradients without a readback).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { y[i] = vec4<f32>(s[0]); }
}
