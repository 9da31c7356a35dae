// Depthwise 2-D convolution, NHWC activations, weights [KH, KW, C] (engine/ops/depthwise.ts).
//
// V (a define) is vec4<f32> when C % 4 == 0 (one invocation owns 4 channels and loads them with
// one vec4 load) and f32 otherwise; `cv` is C / 4 or C accordingly. Every kernel is a skeleton
// around code generated in TypeScript (the BODY, STORE, ... defines): loops over the kernel
// window and the register tile are fully unrolled there, because SwiftShader pays ~10 ns per loop
// iteration and keeps private values in registers only at constant indices. The window structure
// (kernel size, strides and dilations, tile size) is compiled in, so rows and columns shared by
// the tile are loaded once; sizes and padding are uniforms (the filter gradient also takes the
// H-direction stride and dilation as uniforms).
//
// Padding never branches: loads use clamped (always valid) addresses and `select` zeroes the
// values that fall outside the image, with bounds tests joined by non-short-circuit `&`.

//# kernel depthwise_forward
// Invocation (n, tile of TH output rows x TW output columns, channel group c): the tile's outputs
// share the input rows and columns of their windows, so each loaded input vector feeds up to
// KH * KW * TH * TW / (window area) FMAs. Strides and dilations are compiled in so that rows and
// columns shared inside the tile are loaded once.
// Uniforms and bindings (x, wt, y, then the epilogue's) are declared in depthwise.ts.
// Bias or folded BatchNorm, activation...: the epilogue's helpers (engine/ops/epilogue.ts).
{{EP_DECLS}}
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let c = id % p.cv;
  var rest = id / p.cv;
  let tx = rest % p.tiles_w;
  rest = rest / p.tiles_w;
  let ty = rest % p.tiles_h;
  let n = rest / p.tiles_h;
  let ox0 = tx * {{TW}}u;
  let oy0 = ty * {{TH}}u;
  let ix0 = i32(ox0 * {{SW}}u) - p.pad_w;
  let iy0 = i32(oy0 * {{SH}}u) - p.pad_h;
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = {{V}}(0.0);
{{BODY}}
{{STORE}}
}

//# kernel depthwise_backward_input
// dx[n, iy, ix, c] = sum over (ky, kx) of gy[n, oy, ox, c] * w[ky, kx, c] where
// oy * SH = iy + pad_h - ky * DH and ox * SW = ix + pad_w - kx * DW (both integral, in range).
// Invocation (n, tile of TH x TW input pixels, c). The tile starts where (iy + pad_h) and
// (ix + pad_w) are multiples of the strides, so which (pixel, tap) pairs meet an output is known
// at compile time: no divisibility tests, and stride-2 tiles load only the outputs that
// contribute, each once for the whole tile.
// Uniforms and bindings (gy, wt, dx) are declared in depthwise.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let c = id % p.cv;
  var rest = id / p.cv;
  let tx = rest % p.tiles_w;
  rest = rest / p.tiles_w;
  let ty = rest % p.tiles_h;
  let n = rest / p.tiles_h;
  // First input row/column of the tile (may be negative: those are computed, never stored).
  let iy0 = i32(ty * {{TH}}u) - i32(p.pad_hmod);
  let ix0 = i32(tx * {{TW}}u) - i32(p.pad_wmod);
  // Output row/column reached by the tile's first row/column at tap 0: (i0 + pad) / stride, exact.
  let oyb = i32(ty * {{TH_OVER_SH}}u) + p.oy_shift;
  let oxb = i32(tx * {{TW_OVER_SW}}u) + p.ox_shift;
  let homax = i32(p.ho) - 1;
  let womax = i32(p.wo) - 1;
  let zero = {{V}}(0.0);
{{BODY}}
{{STORE}}
}

//# kernel depthwise_backward_filter
// Partial filter gradients: invocation (chunk, c) sums gy[n, oy, ox, c] * x[n, iy, ix, c] over the
// output rows [chunk * rows_per_chunk, ...) for every tap at once (KH * KW accumulators), walking
// each row in tiles of TW output columns so the input window loads are shared by the tile.
// Output [chunks, KH * KW, cv]; sumColumns finishes the sum over chunks.
// Uniforms and bindings (x, gy, partial) are declared in depthwise.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let c = id % p.cv;
  let chunk = id / p.cv;
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = {{V}}(0.0);
{{ACC_DECL}}
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.rows, r0 + p.rows_per_chunk);
  for (var r = r0; r < r1; r = r + 1u) {
    let n = r / p.ho;
    let oy = r % p.ho;
    let grow = r * p.wo * p.cv + c;
    let iy0 = i32(oy * p.stride_h) - p.pad_h;
{{ROW_SETUP}}
    for (var tx = 0u; tx < p.tiles_w; tx = tx + 1u) {
      let ox0 = tx * {{TW}}u;
      let ix0 = i32(ox0 * {{SW}}u) - p.pad_w;
{{BODY}}
    }
  }
{{STORE}}
}
