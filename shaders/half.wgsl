// Conversions of the f16 inference path (engine/ops/half.ts, which also generates `cast`, whose
// element types vary); conversions round to nearest even.

//# kernel fold_half
// dst[i] = f16(src[i] * aff[c]) with c = (i / inner) % channels: a weight with its BatchNorm's
// per-output-channel scale (row 0 of a folded affine, see bnFold) multiplied in, in f32, and only
// then rounded to f16. `inner` is the number of weights per channel step: KH*KW*Ci for OHWI conv
// and conv-transpose weights (channel outermost), 1 for depthwise [KH, KW, C] (channel innermost).
// Uniforms and bindings (src, aff, dst) are declared in half.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let c = (i / p.inner) % p.channels;
  dst[i] = f16(src[i] * aff[c]);
}
