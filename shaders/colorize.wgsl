// Class ids -> packed RGBA8 pixels (one u32 per pixel, little-endian r, g, b, a), in rows `pitch`
// words apart so copyBufferToTexture can take them (bytesPerRow must be a multiple of 256).
// The output may be larger than the id map: ids are sampled nearest, with integer arithmetic so
// the mapping is exactly floor((x + 0.5) * in / out), as the CPU resize in the CLI does.
// The palette is generated WGSL ({{PALETTE}}: K packed colours): it changes rarely, so one
// pipeline per palette costs nothing, and no buffer has to be uploaded per frame.

const K: i32 = {{K}};
const PALETTE = array<u32, {{K}}>({{PALETTE}});

fn nearest(o: u32, out_size: u32, in_size: u32) -> u32 {
  return min(((2u * o + 1u) * in_size) / (2u * out_size), in_size - 1u);
}

// Ids outside 0..K-1 (the ignore label 255, say) are transparent black, as in data/palette.ts.
fn label_rgba(id: i32) -> u32 {
  return select(0u, PALETTE[clamp(id, 0, K - 1)], (id >= 0) & (id < K));
}

fn unpack_rgba(w: u32) -> vec4<f32> {
  return vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu), f32(w >> 24u));
}

fn pack_rgba(c: vec4<f32>, swap_rb: bool) -> vec4<u32> {
  let v = vec4<u32>(c);
  let s = select(v, v.zyxw, swap_rb);
  return s;
}

fn store_word(c: vec4<u32>) -> u32 {
  return c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
}

//# kernel colorize_ids
// Labels alone: colour with alpha = opacity * 255 (opacity 1: exactly data/palette.ts colorize).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  let id = ids[(p.batch_index * p.in_h + nearest(oy, p.out_h, p.in_h)) * p.in_w + nearest(ox, p.out_w, p.in_w)];
  let c = unpack_rgba(label_rgba(id));
  let a = floor(c.w * p.opacity + 0.5);
  dst[oy * p.out_pitch + ox] = store_word(pack_rgba(vec4<f32>(c.xyz, a), p.out_bgra != 0u));
}

//# kernel colorize_overlay
// Labels over a photo (packed RGBA/BGRA words, rows `photo_pitch` apart, sampled nearest):
// out = round((1 - a) * photo + a * label) with a = opacity * label alpha / 255, the photo's
// alpha kept: data/palette.ts overlay(), in f32.
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.out_w * p.out_h) { return; }
  let ox = i % p.out_w;
  let oy = i / p.out_w;
  let id = ids[(p.batch_index * p.in_h + nearest(oy, p.out_h, p.in_h)) * p.in_w + nearest(ox, p.out_w, p.in_w)];
  let l = unpack_rgba(label_rgba(id));
  let pw = unpack_rgba(photo[nearest(oy, p.out_h, p.photo_h) * p.photo_pitch + nearest(ox, p.out_w, p.photo_w)]);
  let ph = select(pw, pw.zyxw, p.photo_bgra != 0u);
  let a = p.opacity * l.w / 255.0;
  let rgb = floor((1.0 - a) * ph.xyz + a * l.xyz + 0.5);
  dst[oy * p.out_pitch + ox] = store_word(pack_rgba(vec4<f32>(rgb, ph.w), p.out_bgra != 0u));
}
