// Fully connected layer y = x w^T + b with x [N, In] and w [Out, In] (PyTorch's layout), and the
// product its backward pass needs. T is vec4<f32> when the contiguous axis allows vec4 loads
// (In % 4 == 0), else f32. Tiles are unrolled in TS (the BODY define); no workgroup memory.

//# kernel linear_forward
// Each invocation computes a TN x TO tile of y. x and w are both contiguous along In, the
// reduction axis, so both load as vec4 along it (SWIFTSHADER.md, lesson 5), and each loaded
// vector feeds TO (or TN) dot products.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let o0 = (i % p.o_blocks) * {{TO}}u;
  let n0 = (i / p.o_blocks) * {{TN}}u;
{{BODY}}
}

//# kernel linear_matmul
// c[m, j] = sum_k A(m, k) b[k, j] with b and c contiguous along j (T-typed) and A read as
// {{A_AT}}: dx = g w (A = g [N, Out], row-major) and dw = g^T x (A = g read transposed).
// Each invocation computes a TM x TJ tile of c; each A scalar feeds TJ vector multiply-adds.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let j0 = (i % p.j_blocks) * {{TJ}}u;
  let m0 = (i / p.j_blocks) * {{TM}}u;
{{BODY}}
}
