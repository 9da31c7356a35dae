// Transposed 2-D convolution (PyTorch ConvTranspose2d), engine weights [Co, KH, KW, Ci]: the weight
// packing pass. The convolution kernels themselves are generated in engine/ops/conv-transpose.ts.

//# kernel conv_transpose_pack
// dst[a, b, c, d] = src[a * s0 + b * s1 + c * s2 + d * s3] for d < d3 and 0 for d3 <= d < 4 * d3v:
// the weights permuted, the last axis zero-padded to a multiple of 4, so that the channel axis
// the other kernels reduce over can be read in vec4s whatever the channel count. One pass over
// the weights per call.
// Uniforms and bindings (src, dst) are declared in conv-transpose.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  // One vec4 (4 consecutive d) per invocation: a quarter of the index divisions of a per-float pass.
  let dv = i % p.d3v;
  var r = i / p.d3v;
  let c = r % p.d2;
  r = r / p.d2;
  let b = r % p.d1;
  let a = r / p.d1;
  let base = a * p.s0 + b * p.s1 + c * p.s2;
  let last = p.d3 - 1u;
  let d = vec4<u32>(dv * 4u, dv * 4u + 1u, dv * 4u + 2u, dv * 4u + 3u);
  let v = vec4<f32>(src[base + min(d.x, last) * p.s3], src[base + min(d.y, last) * p.s3],
                    src[base + min(d.z, last) * p.s3], src[base + min(d.w, last) * p.s3]);
  dst[i] = select(vec4<f32>(0.0), v, d < vec4<u32>(p.d3));
}
