// Elementwise kernels. Tensor buffers are pool buckets padded to 16 bytes, so every kernel here
// works on vec4s over ceil(n / 4): the tail lanes read and write slack inside the same buffer.

//# kernel fill
struct Params { n4: u32, value: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { y[i] = vec4<f32>(p.value); }
}

//# kernel unary
// y = f(x) for an op of the unary table (engine/ops/unary.ts), {{EXPR}} in terms of x.
struct Params { n4: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> ys: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let x = xs[i];
  let alpha = p.alpha;
  ys[i] = {{EXPR}};
}

//# kernel unary_backward
// dx = g * f'(x, y) for an op of the unary table, {{GRAD}} in terms of x, y (the forward output) and g.
struct Params { n4: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ys: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dxs: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let x = xs[i];
  let y = ys[i];
  let g = gs[i];
  let alpha = p.alpha;
  dxs[i] = {{GRAD}};
}

//# kernel binary
// out = a OP b for same-shape tensors ({{EXPR}} in terms of a and b).
struct Params { n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> as_: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bs: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> outs: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i >= p.n4) { return; }
  let a = as_[i];
  let b = bs[i];
  outs[i] = {{EXPR}};
}

//# kernel axpy_inplace
// y += alpha * x (gradient accumulation, optimizer steps).
struct Params { n4: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> ys: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { ys[i] = ys[i] + p.alpha * xs[i]; }
}

//# kernel broadcast_scalar
// y = s[0] everywhere (seeding and routing scalar gradients without a readback).
struct Params { n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, {{WG}}u);
  if (i < p.n4) { y[i] = vec4<f32>(s[0]); }
}
