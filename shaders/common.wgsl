// Shared prelude, prepended to every kernel. Keep it small: helpers used by many families.

// Linear invocation index of a 1-D kernel dispatched on a folded 2-D grid (see grid1d in
// engine/program.ts): large tensors need more than 65535 workgroups in x.
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}
