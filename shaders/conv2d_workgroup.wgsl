// conv2d's three GEMMs for real GPUs: implicit GEMM with workgroup-memory tiles.
//
// The register-tile kernels of conv2d.wgsl are shaped for CPU adapters (no workgroup memory, no
// barriers: SWIFTSHADER.md lessons 1-2). On a GPU the opposite holds: a workgroup computes a
// BM x BN output tile; per K-step of BK its invocations copy the BM x BK slice of A and the
// BK x BN slice of B from global memory into workgroup memory once (each element loaded by one
// invocation, vec4 along the contiguous channel axis where the channel count allows), then every
// invocation reads them TM + TN times per k for its TM x TN register micro-tile. Global traffic
// per multiply-add drops from ~2 loads to (1/BN + 1/BM). The loaders (LOAD, generated in
// engine/ops/conv2d-workgroup.ts) differ per GEMM; the compute step and the tile layout are shared.
//
// Layout in workgroup memory: a_sub[k * BM + row], b_sub[k * BN + col]. An invocation (tx, ty)
// owns rows ty + i*WGM and columns tx + j*WGN (strided, not contiguous), so at one k the
// invocations of a warp read consecutive b_sub words (no bank conflicts) and one a_sub word
// (a broadcast), and the stores of the epilogue are coalesced along the channels.
//
// No double buffering: with BK = 16 the two tiles take 8 KiB, and a second copy would halve the
// workgroups resident per SM on 64 KiB-per-SM parts for a latency that the other resident
// workgroups already hide; tuning the tile (engine/tune.ts) is the cheaper lever.
// Out-of-range rows, columns and K entries load as 0 (from a clamped, valid address), so the
// compute step has no bounds checks; the stores are guarded.

//# kernel conv2d_wg_forward
// y[m, co] = sum over k = (kh, kw, ci) of x_patch[m, k] * w[co, k]: A = x_patch (M = N*Ho*Wo
// pixels), B = w^T (N = Co/groups of one group); K is contiguous in both x (NHWC) and w (OHWI).
// The K loop runs in units of XT (vec4 when Ci/groups allows), BKV of them per step.
{{EP_DECLS}}
var<workgroup> a_sub: array<f32, {{A_SUB}}>;
var<workgroup> b_sub: array<f32, {{B_SUB}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // One tile per workgroup; the early return is uniform across the workgroup (before any barrier).
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.tiles) { return; }
  // Pixel tiles vary fastest: the workgroups running at once share one weight tile (in L2).
  let rest = t / p.tiles_m;
  let m0 = (t % p.tiles_m) * {{BM}}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * {{BN}}u;
  let xg = p.xoff + g * p.ck;
  let tx = li % {{WGN}}u;
  let ty = li / {{WGN}}u;
{{SETUP}}
  var acc: array<f32, {{ACC}}>;
  for (var k0 = 0u; k0 < p.kt; k0 = k0 + {{BKV}}u) {
{{LOAD}}
    workgroupBarrier();
{{COMPUTE}}
    workgroupBarrier();
  }
{{EPILOGUE}}
}

//# kernel conv2d_wg_backward_input
// dx[n, ih, iw, ci] = sum over taps and the group's co of gy[n, oh, ow, co] * w[co, kh, kw, ci],
// one stride phase (ih % sh, iw % sw) per workgroup, as in conv2d.wgsl's register kernel: the
// phase fixes which taps hit, so no multiply-add is spent on taps that do not. A = gy gathered
// (M = input pixels of the phase, K = (hitting tap, co), vec4 along co), B = w (N = Ci/groups,
// vec4 along ci). The K loop runs in units of A's vector, BKV per step. As a transposed
// convolution's forward it stores through the epilogue's helpers (EP_DECLS, empty for dx).
{{EP_DECLS}}
var<workgroup> a_sub: array<f32, {{A_SUB}}>;
var<workgroup> b_sub: array<f32, {{B_SUB}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.tiles) { return; }
  let phase = t / p.tiles_phase;
  let rh = phase / p.sw;
  let rw = phase % p.sw;
  let tp = t % p.tiles_phase;
  let rest = tp / p.tiles_m;
  let m0 = (tp % p.tiles_m) * {{BM}}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * {{BN}}u;
  let qm = p.n * p.hq * p.wq;
  let tx = li % {{WGN}}u;
  let ty = li / {{WGN}}u;
  // The taps that hit this phase: kh = kh0 + i*sth (i < nkh), kw likewise (see conv2d.wgsl).
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
  let qh0 = (i32(rh) + p.ph - i32(kh0 * p.dh)) / i32(p.sh);
  let qw0 = (i32(rw) + p.pw - i32(kw0 * p.dw)) / i32(p.sw);
  let kt = nkh * nkw * p.ck;
{{SETUP}}
  var acc: array<f32, {{ACC}}>;
  for (var k0 = 0u; k0 < kt; k0 = k0 + {{BKV}}u) {
{{LOAD}}
    workgroupBarrier();
{{COMPUTE}}
    workgroupBarrier();
  }
{{EPILOGUE}}
}

//# kernel conv2d_wg_backward_filter
// Partial filter gradients of one chunk of pixels: dw[chunk, co, k] = sum over its pixels q of
// gy[q, co] * x_patch[q, k]. A = gy^T (M = Co/groups, vec4 along co), B = x_patch (N = (kh, kw,
// ci), vec4 along ci), K = the chunk's pixels, BK per step; sumColumns adds the chunks.
var<workgroup> a_sub: array<f32, {{A_SUB}}>;
var<workgroup> b_sub: array<f32, {{B_SUB}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.total) { return; }
  let chunk = t / p.tiles;
  let tt = t % p.tiles;
  let rest = tt / p.tiles_m;
  let m0 = (tt % p.tiles_m) * {{BM}}u;
  let g = rest / p.tiles_n;
  let n0 = (rest % p.tiles_n) * {{BN}}u;
  let q0 = chunk * p.chunk;
  let q1 = min(p.m, q0 + p.chunk);
  let tx = li % {{WGN}}u;
  let ty = li / {{WGN}}u;
{{SETUP}}
  var acc: array<f32, {{ACC}}>;
  for (var k0 = q0; k0 < q1; k0 = k0 + {{BK}}u) {
{{LOAD}}
    workgroupBarrier();
{{COMPUTE}}
    workgroupBarrier();
  }
  let ob = chunk * p.wsize;
{{EPILOGUE}}
}
