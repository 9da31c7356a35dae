// Image bytes -> normalised float NHWC, in one pass: unpack 8-bit RGB/RGBA (4 bytes per u32 word),
// sample a crop window (bilinear, PyTorch align_corners=false when the window is the whole image),
// optionally mirrored, scale to [0, 1], subtract the mean and divide by the std per channel.
// Images arrive as bytes, a quarter of the floats' size; augmentation costs nothing extra.

//# kernel image_to_tensor

fn byte_at(i: u32) -> f32 {
  return f32((src[i / 4u] >> ((i % 4u) * 8u)) & 0xffu);
}

fn texel(x: u32, y: u32) -> vec3<f32> {
  let base = (y * p.in_w + x) * p.channels;
  return vec3<f32>(byte_at(base), byte_at(base + 1u), byte_at(base + 2u));
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  let fx = select(ox, p.out_w - 1u - ox, p.flip != 0u);
  // PyTorch's align_corners=false source coordinate inside the crop window, clamped at 0.
  let sx = max(p.origin_x + (f32(fx) + 0.5) * p.scale_x - 0.5, 0.0);
  let sy = max(p.origin_y + (f32(oy) + 0.5) * p.scale_y - 0.5, 0.0);
  let x0 = min(u32(sx), p.in_w - 1u);
  let y0 = min(u32(sy), p.in_h - 1u);
  let x1 = min(x0 + 1u, p.in_w - 1u);
  let y1 = min(y0 + 1u, p.in_h - 1u);
  let lx = sx - f32(x0);
  let ly = sy - f32(y0);
  let top = mix(texel(x0, y0), texel(x1, y0), lx);
  let bottom = mix(texel(x0, y1), texel(x1, y1), lx);
  let rgb = mix(top, bottom, ly) / 255.0;
  let norm = (rgb - vec3<f32>(p.mean_r, p.mean_g, p.mean_b)) * vec3<f32>(p.inv_std_r, p.inv_std_g, p.inv_std_b);
  let o = ((p.batch_index * p.out_h + oy) * p.out_w + ox) * 3u;
  dst[o] = norm.x;
  dst[o + 1u] = norm.y;
  dst[o + 2u] = norm.z;
}

//# kernel labels_to_tensor
// 8-bit label map -> u32 labels [N, H, W] with the same crop window and mirror as the image,
// sampled nearest (labels must never be blended).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  let fx = select(ox, p.out_w - 1u - ox, p.flip != 0u);
  let x = min(u32(max(p.origin_x + (f32(fx) + 0.5) * p.scale_x, 0.0)), p.in_w - 1u);
  let y = min(u32(max(p.origin_y + (f32(oy) + 0.5) * p.scale_y, 0.0)), p.in_h - 1u);
  let b = y * p.in_w + x;
  dst[(p.batch_index * p.out_h + oy) * p.out_w + ox] = (src[b / 4u] >> ((b % 4u) * 8u)) & 0xffu;
}

//# kernel rgba_words_to_tensor
// Texture input: the rows of an rgba8unorm/bgra8unorm texture as copyTextureToBuffer leaves them
// (one u32 per texel, rows `pitch` words apart: bytesPerRow is padded to 256) -> the same
// normalised NHWC floats as image_to_tensor, by the same arithmetic in the same order, so a
// texture and the bytes of the same picture give bit-identical tensors.

fn texel(x: u32, y: u32) -> vec3<f32> {
  let w = src[y * p.pitch + x];
  let c = vec3<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu));
  return select(c, c.zyx, p.bgra != 0u);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  // Written exactly as in image_to_tensor (origin 0 here), so no compiler contracts it differently.
  let sx = max(p.origin_x + (f32(ox) + 0.5) * p.scale_x - 0.5, 0.0);
  let sy = max(p.origin_y + (f32(oy) + 0.5) * p.scale_y - 0.5, 0.0);
  let x0 = min(u32(sx), p.in_w - 1u);
  let y0 = min(u32(sy), p.in_h - 1u);
  let x1 = min(x0 + 1u, p.in_w - 1u);
  let y1 = min(y0 + 1u, p.in_h - 1u);
  let lx = sx - f32(x0);
  let ly = sy - f32(y0);
  let top = mix(texel(x0, y0), texel(x1, y0), lx);
  let bottom = mix(texel(x0, y1), texel(x1, y1), lx);
  let rgb = mix(top, bottom, ly) / 255.0;
  let norm = (rgb - vec3<f32>(p.mean_r, p.mean_g, p.mean_b)) * vec3<f32>(p.inv_std_r, p.inv_std_g, p.inv_std_b);
  let o = ((p.batch_index * p.out_h + oy) * p.out_w + ox) * 3u;
  dst[o] = norm.x;
  dst[o + 1u] = norm.y;
  dst[o + 2u] = norm.z;
}
