// Depthwise 2-D convolution for real GPUs: the input patch of a workgroup's output tile in
// workgroup memory (engine/ops/depthwise-workgroup.ts; the register-tile kernels of depthwise.wgsl
// stay the default on CPU adapters, where workgroup memory and barriers are slow).
//
// A workgroup owns TOH x TOW output pixels x CT channel vectors (V: vec4<f32> when C % 4 == 0).
// Its invocations first copy the PH x PW x CT input patch those outputs read, once each, with
// consecutive invocations on consecutive channel vectors of one pixel (coalesced loads from NHWC
// rows), padding as zeros; after one barrier each invocation computes a column of TOH outputs of
// one channel vector from the patch (each patch value is read by up to KH * KW outputs).

//# kernel depthwise_wg_forward
// Uniforms and bindings (x, wt, y, then the epilogue's) are declared in depthwise-workgroup.ts.
{{EP_DECLS}}
var<workgroup> x_patch: array<{{V}}, {{PATCH}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  // Uniform across the workgroup: returns before the barrier together.
  if (t >= p.tiles) { return; }
  let c0 = (t % p.tiles_c) * {{CT}}u;
  var rest = t / p.tiles_c;
  let ox0 = (rest % p.tiles_w) * {{TOW}}u;
  rest = rest / p.tiles_w;
  let oy0 = (rest % p.tiles_h) * {{TOH}}u;
  let n = rest / p.tiles_h;
  let iy0 = i32(oy0 * {{SH}}u) - p.pad_h;
  let ix0 = i32(ox0 * {{SW}}u) - p.pad_w;
  for (var i = li; i < {{PATCH}}u; i = i + {{WG}}u) {
    let cc = i % {{CT}}u;
    let pix = i / {{CT}}u;
    let iy = iy0 + i32(pix / {{PW}}u);
    let ix = ix0 + i32(pix % {{PW}}u);
    let ok = (u32(iy) < p.h) & (u32(ix) < p.w) & (c0 + cc < p.cv);
    x_patch[i] = select({{V}}(0.0), x[select(0u, ((n * p.h + u32(iy)) * p.w + u32(ix)) * p.cv + c0 + cc, ok)], ok);
  }
  workgroupBarrier();
  let cc = li % {{CT}}u;
  let tc = li / {{CT}}u;
  let c = min(c0 + cc, p.cv - 1u);
{{BODY}}
{{STORE}}
}
