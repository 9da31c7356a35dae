// conv2d on NHWC feature maps with OHWI weights, as implicit GEMMs (no im2col buffer).
//
// The unrolled register tiles (the SETUP, TAP, INNER and EPILOGUE defines) are generated in
// engine/ops/conv2d.ts: on SwiftShader a load whose address is not a compile-time constant is a
// per-lane emulated gather, so speed comes from making every loaded value feed many multiply-adds
// (large tiles), from private arrays indexed only by constants (they become registers), and from
// loops without barriers. The element types of the bindings are `f32` or `vec4<f32>`: vec4 along
// a channel axis when its size allows. Out-of-range rows and channels of a tile are
// clamped to valid addresses when loading and skipped when storing, so inner loops carry no
// bounds checks; taps that fall into the padding load a valid address and multiply it by 0.

//# kernel conv2d_forward
// y[m, co] = sum over k = (kh, kw, ci) of x_patch[m, k] * w[co, k] (+ bias[co]), m = (n, oh, ow).
// One invocation owns TM output pixels x TN output channels of one group; the reduction walks the
// taps and, inside each, the group's input channels, contiguous in both x (NHWC) and w (OHWI),
// so k is also the offset into a weight row.
// Uniforms and bindings (xs, ws, ys, then the epilogue's) are declared in conv2d.ts.
// Bias, folded BatchNorm, residual, FCA attention: the epilogue's helpers (engine/ops/epilogue.ts).
{{EP_DECLS}}
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.tiles) { return; }
  // Tile order (see channelsFastest in conv2d.ts): pixel tiles fastest keeps a weight tile hot while
  // the input streams by; channel tiles fastest keeps a pixel tile hot while the weights do.
  let ng = p.tiles / p.tiles_m;
  let n_fast = p.n_fast != 0u;
  let tgn = select(t / p.tiles_m, t % ng, n_fast);
  let m0 = select(t % p.tiles_m, t / ng, n_fast) * {{TM}}u;
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * {{TN}}u;
  let xg = p.xoff + g * p.ck;
{{SETUP}}
  var acc: array<f32, {{ACC}}>;
  // One flat loop over k = (tap, c): on SwiftShader a nested tap/channel loop pair ran up to 1.7x
  // slower (small Ci/groups) than recomputing the tap's pixel offsets every step. TAP decodes kk
  // into the tap and its channel c and finds each pixel's input offset (a 1x1 convolution without
  // padding has found them once in SETUP).
  let kt = p.taps * p.ck;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
{{TAP}}
    let wc = kk;
{{INNER}}
  }
{{EPILOGUE}}
}

//# kernel conv2d_backward_input
// dx[n, ih, iw, ci] = sum over taps and the group's co of gy[n, oh, ow, co] * w[co, kh, kw, ci]
// with ih = oh*sh - ph + kh*dh: a transposed convolution written as a gather. With stride s an
// input pixel receives only the taps with (ih + ph - kh*dh) % s == 0, which depends on ih % s
// alone; a tile is therefore cut from one stride phase (rh, rw) and visits only the taps that hit
// it (no multiply-adds wasted on the others).
// One invocation owns TM input pixels of one phase x TN input channels of one group; the
// reduction walks those taps and, inside each, the group's output channels (contiguous in gy).
// Uniforms and bindings (gys, ws, dxs) are declared in conv2d.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.tiles) { return; }
  // The phase varies slowest, so the invocations of a SIMD group nearly always share it and
  // take the same branches.
  let phase = t / p.tiles_phase;
  let rh = phase / p.sw;
  let rw = phase % p.sw;
  let tp = t % p.tiles_phase;
  let ng = p.tiles_phase / p.tiles_m;
  let n_fast = p.n_fast != 0u;
  let tgn = select(tp / p.tiles_m, tp % ng, n_fast);
  let m0 = select(tp % p.tiles_m, tp / ng, n_fast) * {{TM}}u;
  let g = tgn / p.tiles_n;
  let n0 = (tgn % p.tiles_n) * {{TN}}u;
  let qm = p.n * p.hq * p.wq;
  let gyg = g * p.ck;
{{SETUP}}
  var acc: array<{{BT}}, {{ACC}}>;
  // The taps that hit this phase: kh = kh0 + i*sth (i < nkh), kw likewise. (rh + ph - kh*dh) % sh
  // repeats with period sth, so the first one, if any, is below sth.
  var kh0 = p.kh;
  for (var k = min(p.kh, p.sth); k > 0u; k = k - 1u) {
    let nh = i32(rh) + p.ph - i32((k - 1u) * p.dh);
    if (nh == (nh / i32(p.sh)) * i32(p.sh)) { kh0 = k - 1u; }
  }
  var kw0 = p.kw;
  for (var k = min(p.kw, p.stw); k > 0u; k = k - 1u) {
    let nw = i32(rw) + p.pw - i32((k - 1u) * p.dw);
    if (nw == (nw / i32(p.sw)) * i32(p.sw)) { kw0 = k - 1u; }
  }
  let nkh = select(0u, (p.kh - kh0 + p.sth - 1u) / p.sth, kh0 < p.kh);
  let nkw = select(0u, (p.kw - kw0 + p.stw - 1u) / p.stw, kw0 < p.kw);
  // ih + ph - kh*dh = nh + sh*jh with nh divisible by sh, so oh = jh + nh / sh exactly.
  let qh0 = (i32(rh) + p.ph - i32(kh0 * p.dh)) / i32(p.sh);
  let qw0 = (i32(rw) + p.pw - i32(kw0 * p.dw)) / i32(p.sw);
  // One flat loop over (hitting tap, c), as in the forward kernel.
  let kt = nkh * nkw * p.ck;
  for (var kk = 0u; kk < kt; kk = kk + 1u) {
    let c = kk % p.ck;
    let ti = kk / p.ck;
    let iw = ti % nkw;
    let ih = ti / nkw;
    let kh = kh0 + ih * p.sth;
    let kw = kw0 + iw * p.stw;
    let qh = qh0 - i32(ih * p.qsh);
    let qw = qw0 - i32(iw * p.qsw);
{{TAP}}
    let wc = (gyg + c) * {{AV}}u * p.wrow_v + wt;
{{INNER}}
  }
{{EPILOGUE}}
}

//# kernel conv2d_backward_filter
// Partial filter gradients: dw[chunk, co, k] = sum over the pixels m of the chunk of
// gy[m, co] * x_patch[m, k], with k = (kh, kw, ci) flattened as in an OHWI weight row. The long
// reduction over N*Ho*Wo is split into chunks so that small layers still give every core work;
// a second pass (sumColumns) adds the chunks. One invocation owns TM output channels x TN entries
// of k and walks the pixels of its chunk, PIX at a time.
// Uniforms and bindings (gys, xs, dws) are declared in conv2d.ts.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.total) { return; }
  let chunk = t / p.tiles;
  let tt = t % p.tiles;
  let tgm = tt / p.tiles_n;
  let k0 = (tt % p.tiles_n) * {{TN}}u;
  let g = tgm / p.tiles_m;
  let c0 = (tgm % p.tiles_m) * {{TM}}u;
  let q0 = chunk * p.chunk;
  let q1 = min(p.m, q0 + p.chunk);
{{SETUP}}
  var acc: array<f32, {{ACC}}>;
  // (n, oh, ow) of pixel q, advanced with selects rather than divisions (in INNER).
  let hw = p.ho * p.wo;
  var n = q0 / hw;
  var oh = (q0 % hw) / p.wo;
  var ow = q0 % p.wo;
  for (var q = q0; q < q1; q = q + {{PIX}}u) {
{{INNER}}
  }
  let ob = chunk * p.wsize_v;
{{EPILOGUE}}
}
