// Segmentation metrics on the GPU: a confusion matrix accumulated with atomics, so evaluation
// reads back K*K counts instead of every class-id map.

//# kernel confusion_matrix
// counts[label * K + pred] += 1 for every pixel whose label is not the ignore index. Labels
// outside [0, K) are counted at counts[K * K] (a flag the caller reports).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n) { return; }
  let y = labels[i];
  if (y == p.ignore_index) { return; }
  let k = pred[i];
  if (y >= p.classes || k >= p.classes) {
    atomicAdd(&counts[p.classes * p.classes], 1u);
    return;
  }
  atomicAdd(&counts[y * p.classes + k], 1u);
}
