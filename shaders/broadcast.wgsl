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
