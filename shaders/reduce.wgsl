// Reductions. Each invocation sums a strided run of vec4s into a register, with no workgroup
// memory or barriers (barriers are costly on CPU adapters such as SwiftShader); passes repeat
// until one value is left. The strided walk keeps neighbouring invocations on neighbouring
// addresses, which real GPUs coalesce.

//# kernel sum_partial
// partial[i] = sum of x[k] for k = i, i + T, i + 2T, ... over n scalars (T invocations in all).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let n4 = p.n / 4u;
  var acc = vec4<f32>(0.0);
  for (var k = i; k < n4; k = k + p.threads) { acc = acc + xs[k]; }
  var s = acc.x + acc.y + acc.z + acc.w;
  // The last n % 4 scalars, added by invocation 0 only.
  if (i == 0u && p.n % 4u != 0u) {
    let tail = xs[n4];
    for (var j = 0u; j < p.n % 4u; j = j + 1u) { s = s + tail[j]; }
  }
  partial[i] = s;
}

