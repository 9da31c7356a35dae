// Bilinear resize of NHWC maps with PyTorch's F.interpolate(mode='bilinear') formulas. The one-axis
// passes (forward and backward, the backward as gathers: no atomics) are generated in
// engine/ops/upsample.ts and start with this file's helpers; resize_argmax is fixed. scale is
// in/out (align_corners=false) or (in-1)/(out-1) (align_corners=true, 0 for a one-pixel output),
// computed in f32 on the CPU as PyTorch does.

struct Tap { i0: u32, i1: u32, lam: f32 }

// The two source indices and the weight of the second for output index `dst` along one axis.
// align_corners=false clamps negative source coordinates to 0 (PyTorch's area_pixel_compute_source_index);
// i0 is clamped to size - 1 against rounding, as PyTorch's guard_index_and_lambda does.
fn source_tap(dst: u32, scale: f32, align: u32, size: u32) -> Tap {
  let d = f32(dst);
  let s = select(max(scale * (d + 0.5) - 0.5, 0.0), scale * d, align != 0u);
  let i0 = min(u32(floor(s)), size - 1u);
  let i1 = min(i0 + 1u, size - 1u);
  return Tap(i0, i1, s - f32(i0));
}

//# kernel resize_argmax
// Class ids of the bilinear resize of logits z [N, in_h, in_w, K] to [N, out_h, out_w]: per
// output pixel, each class's interpolated logit (x pass then y pass, PyTorch's order and
// resize_axis's arithmetic) and the first maximum (strict >, as argmax). The full-size logits,
// the largest tensor of a segmentation, are never stored.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.threads) { return; }
  let ox = i % p.out_w;
  let r = i / p.out_w;
  let oy = r % p.out_h;
  let n = r / p.out_h;
  let ty = source_tap(oy, p.scale_y, p.align, p.in_h);
  let tx = source_tap(ox, p.scale_x, p.align, p.in_w);
  let row0 = (n * p.in_h + ty.i0) * p.in_w;
  let row1 = (n * p.in_h + ty.i1) * p.in_w;
  let a00 = (row0 + tx.i0) * p.k;
  let a01 = (row0 + tx.i1) * p.k;
  let a10 = (row1 + tx.i0) * p.k;
  let a11 = (row1 + tx.i1) * p.k;
  let wx = 1.0 - tx.lam;
  let wy = 1.0 - ty.lam;
  var best = 0.0;
  var bi = 0i;
  for (var c = 0u; c < p.k; c = c + 1u) {
    let top = wx * z[a00 + c] + tx.lam * z[a01 + c];
    let bottom = wx * z[a10 + c] + tx.lam * z[a11 + c];
    let v = wy * top + ty.lam * bottom;
    let take = (c == 0u) | (v > best);
    best = select(best, v, take);
    bi = select(bi, i32(c), take);
  }
  ids[i] = bi;
}
