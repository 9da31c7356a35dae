// Row-wise ops over the last axis (class scores per pixel): softmax, its backward and argmax.
// Rows are many (pixels) and short (classes). Rows of up to 32 values run unrolled by TS (the BODY
// define) on groups of R = 4 / gcd(l, 4) rows: a group is exactly l * R / 4 whole vec4s, so even
// l = 19 is read and written with aligned vec4s and every value sits at a compile-time component
// (SWIFTSHADER.md lessons 1 and 3). Longer rows loop, one invocation per row, in vec4s when
// l % 4 == 0 (T = vec4<f32>, l counted in vec4s). `t` is the group (or row) of the invocation.

//# kernel softmax_rows
// y = exp(x - max) / sum(exp(x - max)): subtracting the row max keeps exp() in range for any logits.
struct Params { threads: u32, l: u32, n4: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> y: array<{{T}}>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}

//# kernel softmax_backward_rows
// dx = y * (g - sum(g * y)) per row.
struct Params { threads: u32, l: u32, n4: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<{{T}}>;
@group(0) @binding(2) var<storage, read> g: array<{{T}}>;
@group(0) @binding(3) var<storage, read_write> dx: array<{{T}}>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}

//# kernel argmax_rows
// Index of the row max, the first one on ties (strict > while scanning forward).
struct Params { threads: u32, l: u32, n4: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id(gid, nwg, {{WG}}u);
  if (t >= p.threads) { return; }
  {{BODY}}
}
