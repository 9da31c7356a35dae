// Transposed 2-D convolution (PyTorch ConvTranspose2d, groups 1, dilation 1), NHWC activations,
// engine weights [Co, KH, KW, Ci] (engine/ops/conv-transpose.ts).
//
// Every kernel is a gather: each invocation owns a register tile of outputs and sums what reaches
// them, so there are no atomics and no scatter. The register tile is generated in TypeScript and
// fully unrolled (the SETUP, BODY, STORE, ... defines): SwiftShader keeps private values in
// registers only at constant indices and pays ~10 ns per loop trip. Sizes, strides and padding
// are uniforms; taps and channels are runtime loops, except in the filter gradient, which
// unrolls the KW taps of a row. Loads outside the image use clamped addresses and are zeroed with
// `select`, never a branch.

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

//# kernel conv_transpose_pad_channels
// dst [rows, 4 * cv] = src [rows, cols] with each row zero-padded to a multiple of 4: x or gy
// with a channel count that is not a multiple of 4 made vec4-readable (T: f32, or f16 on the f16
// inference path). One vec4 per invocation
// and a single index division (this pass runs over the x8 head's 10 M-element gradient).
// Uniforms and bindings (src, dst) are declared in conv-transpose.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.total) { return; }
  let row = i / p.cv;
  let c0 = (i - row * p.cv) * 4u;
  let base = row * p.cols;
  let last = p.cols - 1u;
  let c = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
  let v = vec4<{{T}}>(src[base + min(c.x, last)], src[base + min(c.y, last)], src[base + min(c.z, last)], src[base + min(c.w, last)]);
  dst[i] = select(vec4<{{T}}>(0.0), v, c < vec4<u32>(p.cols));
}

//# kernel conv_transpose_forward
// y[n, oy, ox, co] = bias[co] + sum of x[n, iy, ix, ci] * w[co, ky, kx, ci] over oy + pad_h - ky =
// iy * stride_h and ox + pad_w - kx = ix * stride_w. All outputs of one stride phase (oy mod
// stride_h, ox mod stride_w) use the same taps, ky = (oy + pad_h) mod stride_h + jy * stride_h
// (likewise kx), ceil(K / stride) per axis at most, so an invocation owns outputs of one phase:
// TH rows and TP columns of that phase's grid (stride apart in the image) times TCO output
// channels, and loops over that phase's taps only (the x8 head, k15 s8: 2x2 taps, not 15x15).
// The reduction over ci runs in vec4s on both sides, x4 [N, H, W, civ] and w4 [Co, KH, KW, civ]
// (Ci zero-padded to 4 * civ when needed), into one scalar accumulator per (output, co) fed by
// dot products: per step TH * TP + TCO vec4 loads feed 4 * TH * TP * TCO MACs, and each
// accumulator update does 4 of them (measured 2x faster than vec4-over-co outer products).
// Uniforms and bindings (x4, w4, y: f32 outputs or i32 class ids, then the epilogue's) are
// declared in conv-transpose.ts. Bias or folded BatchNorm, activation...: the epilogue's helpers.
{{EP_DECLS}}
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let ct = id % p.co_tiles;
  var rest = id / p.co_tiles;
  let tx = rest % p.tiles_x;
  rest = rest / p.tiles_x;
  let ty = rest % p.tiles_y;
  rest = rest / p.tiles_y;
  let phx = rest % p.stride_w;
  rest = rest / p.stride_w;
  let phy = rest % p.stride_h;
  let n = rest / p.stride_h;
  let kyp = (phy + p.pad_h) % p.stride_h;
  let kxp = (phx + p.pad_w) % p.stride_w;
  let k0 = i32(ty * {{TH}}u + (phy + p.pad_h) / p.stride_h);
  let m0 = i32(tx * {{TP}}u + (phx + p.pad_w) / p.stride_w);
  let hmax = i32(p.h) - 1;
  let wmax = i32(p.w) - 1;
  let zero = vec4<f32>(0.0);
  let wstride = p.kh * p.kw * p.civ;
{{SETUP}}
  // One flat loop over k = (tap row, tap column, c), recomputing the tap's offsets every step: a
  // nested tap/channel loop nest (2 x 2 x 5 trips for the x8 head) ran 1.5x slower on SwiftShader,
  // as conv2d_forward measured for its taps.
  let nky = select(0u, (p.kh - kyp + p.stride_h - 1u) / p.stride_h, kyp < p.kh);
  let nkx = select(0u, (p.kw - kxp + p.stride_w - 1u) / p.stride_w, kxp < p.kw);
  let kt = nky * nkx * p.civ;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let tap = kk / p.civ;
    let c = kk - tap * p.civ;
    let jyu = tap / nkx;
    let jxu = tap - jyu * nkx;
    let jy = i32(jyu);
    let jx = i32(jxu);
    let ky = kyp + jyu * p.stride_h;
    let kx = kxp + jxu * p.stride_w;
{{ROW_SETUP}}
{{COL_SETUP}}
    let wk = (ky * p.kw + kx) * p.civ;
{{BODY}}
  }
{{STORE}}
}

//# kernel conv_transpose_backward_input
// dx[n, iy, ix, ci] = sum of gy[n, iy * stride_h - pad_h + ky, ix * stride_w - pad_w + kx, co] *
// w[co, ky, kx, ci]: a strided convolution of gy. Invocation: TH x TW input pixels times TCI
// input channels. The reduction over co runs in vec4s on both sides, gy4 [N, Ho, Wo, cov] and
// wt [KH, KW, Ci, cov] (Co zero-padded to 4 * cov when needed), into dot-product accumulators:
// per step TH * TW + TCI vec4 loads feed 4 * TH * TW * TCI MACs. The taps are runtime loops, so
// the unrolled body does not grow with the kernel size (a 15x15 kernel compiles as fast as 3x3).
// Uniforms and bindings (gy4, wt, dx) are declared in conv-transpose.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let ct = id % p.ci_tiles;
  var rest = id / p.ci_tiles;
  let tx = rest % p.tiles_w;
  rest = rest / p.tiles_w;
  let rt = rest % p.row_tiles;
  let n = rest / p.row_tiles;
  let iy0 = rt * {{TH}}u;
  let ix0 = tx * {{TW}}u;
  let homax = i32(p.ho) - 1;
  let womax = i32(p.wo) - 1;
  let zero = vec4<f32>(0.0);
{{SETUP}}
  // One flat loop over k = (ky, kx, c), as in conv_transpose_forward (a loop nest with the short
  // channel loop innermost ran slower on SwiftShader).
  let kt = p.kh * p.kw * p.cov;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let tap = kk / p.cov;
    let c = kk - tap * p.cov;
    let ky = tap / p.kw;
    let kx = tap - ky * p.kw;
{{ROW_SETUP}}
{{COL_SETUP}}
    let wk = tap * p.ci * p.cov;
{{BODY}}
  }
{{STORE}}
}

//# kernel conv_transpose_backward_filter
// Partial filter gradients: dw[co, ky, kx, ci] = sum of x[n, iy, ix, ci] *
// gy[n, iy * stride_h - pad_h + ky, ix * stride_w - pad_w + kx, co] over the input rows of one
// chunk. Invocation (chunk, ky, group of KG taps kx, TCOV groups of 4 output channels, TCIV
// groups of 4 input channels): per input pixel it loads TCIV vec4s of x4 [N, H, W, civ] and
// KG * TCOV vec4s of gy4 [N, Ho, Wo, cov] (channels zero-padded to multiples of 4 when needed)
// and does 16 * KG * TCOV * TCIV MACs as vec4 (over co) FMAs. Output [chunks, Co, KH, KW, Ci];
// sumColumns finishes the sum over chunks.
// Uniforms and bindings (x4, gy4, partial) are declared in conv-transpose.ts.

// Stores the 4 output channels of v for one (co group, ky, kx, ci); padding is dropped.
fn put(chunk: u32, co4: u32, ky: u32, kx: u32, c: u32, v: vec4<f32>) {
  if ((co4 >= p.cov) | (c >= p.ci) | (kx >= p.kw)) { return; }
  for (var l = 0u; l < 4u; l = l + 1u) {
    let co = co4 * 4u + l;
    if (co < p.co) { partial[(((chunk * p.co + co) * p.kh + ky) * p.kw + kx) * p.ci + c] = v[l]; }
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = flat_id(gid, nwg, {{WG}}u);
  if (id >= p.threads) { return; }
  let cit = id % p.ci_tiles;
  var rest = id / p.ci_tiles;
  let cot = rest % p.co_tiles;
  rest = rest / p.co_tiles;
  let kx0 = (rest % p.kx_groups) * {{KG}}u;
  rest = rest / p.kx_groups;
  let ky = rest % p.kh;
  let chunk = rest / p.kh;
  let womax = i32(p.wo) - 1;
  let zero = vec4<f32>(0.0);
{{SETUP}}
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.rows, r0 + p.rows_per_chunk);
  for (var r = r0; r < r1; r = r + 1u) {
    let n = r / p.h;
    let oy = i32((r % p.h) * p.stride_h) - p.pad_h + i32(ky);
    if ((oy < 0) | (oy >= i32(p.ho))) { continue; }
    let grow = (n * p.ho + u32(oy)) * p.wo * p.cov;
    let xrow = r * p.w * p.civ;
    for (var ix = 0u; ix < p.w; ix = ix + 1u) {
      let xo = xrow + ix * p.civ;
      let oxb = i32(ix * p.stride_w + kx0) - p.pad_w;
{{BODY}}
    }
  }
{{STORE}}
}
