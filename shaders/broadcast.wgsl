// Broadcasting and its reverse. Shapes arrive collapsed (engine/ops/broadcast.ts): size-1 axes of the
// output dropped and neighbouring axes with the same broadcast pattern merged, so RANK is small and
// axis 0 is the innermost. A broadcast axis has stride 0. The index arithmetic is generated in TS
// (the BODY define) because private arrays and loops are slow on SwiftShader; only constant
// field names of the uniform block appear in it.

//# kernel binary_broadcast
// out = a OP b (the EXPR define, in a and b). Vector mode (d0 % 4 == 0): each invocation writes a
// run of vec4s along axis 0; an operand that is contiguous along axis 0 is read as vec4s, one
// broadcast along it as one splatted scalar. Scalar mode: four consecutive outputs per invocation,
// stored as one vec4 (the tail lanes land in the buffer's slack).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  {{BODY}}
}

//# kernel expand
// out = a broadcast to the output shape (broadcastTo, and the backward of sumToShape).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  {{BODY}}
}

//# kernel sum_middle_partial
// x viewed as [outer, r, inner] with inner > 1; out[k, chunk, c] = sum of x[k, row, c] over the rows
// of one chunk. Neighbouring invocations read neighbouring columns (vec4 columns when inner % 4 == 0,
// T = vec4<f32>); a later pass sums the [outer, chunks, inner] partials. No workgroup memory.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let c = i % p.inner;
  let t = i / p.inner;
  let chunk = t % p.chunks;
  let k = t / p.chunks;
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.r, r0 + p.rows_per_chunk);
  let s = p.inner;
  var at = (k * p.r + r0) * s + c;
  var acc0 = {{T}}(0.0);
  var acc1 = {{T}}(0.0);
  var row = r0;
  // Four rows per iteration into two accumulators: fewer loop trips, and shorter dependency chains.
  for (; row + 4u <= r1; row = row + 4u) {
    acc0 = acc0 + x[at] + x[at + 2u * s];
    acc1 = acc1 + x[at + s] + x[at + 3u * s];
    at = at + 4u * s;
  }
  for (; row < r1; row = row + 1u) {
    acc0 = acc0 + x[at];
    at = at + s;
  }
  partial[(k * p.chunks + chunk) * p.inner + c] = acc0 + acc1;
}

//# kernel sum_rows_partial
// x viewed as [rows, r] (contiguous rows); out[row, chunk] = sum of one chunk of a row. With
// T = vec4<f32> (r % 4 == 0) sizes are in vec4s and the four lanes are added at the end.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let chunk = i % p.chunks;
  let row = i / p.chunks;
  let j0 = chunk * p.per_chunk;
  let j1 = min(p.r, j0 + p.per_chunk);
  let base = row * p.r;
  var acc0 = {{T}}(0.0);
  var acc1 = {{T}}(0.0);
  var j = j0;
  for (; j + 4u <= j1; j = j + 4u) {
    acc0 = acc0 + x[base + j] + x[base + j + 2u];
    acc1 = acc1 + x[base + j + 1u] + x[base + j + 3u];
  }
  for (; j < j1; j = j + 1u) { acc0 = acc0 + x[base + j]; }
  let acc = acc0 + acc1;
  partial[i] = {{HSUM}};
}

//# kernel sum_middle_sg
// sum_middle_partial with subgroups (engine/ops/subgroup.ts): one workgroup per output
// (k, chunk, c); its invocations take every {{WG}}-th row of the chunk, then wg_sum adds the
// workgroup's partials. For few columns over many rows (the loss's [pixels, 2] terms, a
// 19-channel bias gradient), where one invocation per column leaves a GPU idle.
{{ENABLE}}
{{WG_SUM}}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) sgi: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.outputs) { return; }
  let c = w % p.inner;
  let q = w / p.inner;
  let chunk = q % p.chunks;
  let k = q / p.chunks;
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.r, r0 + p.rows_per_chunk);
  let s = p.inner;
  var acc0 = {{T}}(0.0);
  var acc1 = {{T}}(0.0);
  var row = r0 + t;
  for (; row + {{WG}}u < r1; row = row + 2u * {{WG}}u) {
    acc0 = acc0 + x[(k * p.r + row) * s + c];
    acc1 = acc1 + x[(k * p.r + row + {{WG}}u) * s + c];
  }
  if (row < r1) { acc0 = acc0 + x[(k * p.r + row) * s + c]; }
  let total = wg_sum(acc0 + acc1, t, sgi);
  if (t == 0u) { partial[(k * p.chunks + chunk) * p.inner + c] = total; }
}

//# kernel sum_rows_sg
// sum_rows_partial with subgroups: one workgroup per (row, chunk), its invocations reading
// neighbouring units of the row, then wg_sum; HSUM adds a vec4's lanes.
{{ENABLE}}
{{WG_SUM}}
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) sgi: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.outputs) { return; }
  let chunk = w % p.chunks;
  let row = w / p.chunks;
  let j0 = chunk * p.per_chunk;
  let j1 = min(p.r, j0 + p.per_chunk);
  let base = row * p.r;
  var acc0 = {{T}}(0.0);
  var acc1 = {{T}}(0.0);
  var j = j0 + t;
  for (; j + {{WG}}u < j1; j = j + 2u * {{WG}}u) {
    acc0 = acc0 + x[base + j];
    acc1 = acc1 + x[base + j + {{WG}}u];
  }
  if (j < j1) { acc0 = acc0 + x[base + j]; }
  let acc = wg_sum(acc0 + acc1, t, sgi);
  if (t == 0u) { partial[w] = {{HSUM}}; }
}
