// Softmax cross-entropy (engine/ops/loss.ts): the kernels after the forward pass, which is generated
// in loss.ts (ce_forward, ce_forward_unrolled) and also writes each row's unnormalised gradient.

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
