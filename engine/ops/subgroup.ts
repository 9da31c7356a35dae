/**
 * Subgroup reductions. Where the adapter has the `subgroups` feature (requested at device
 * creation, see device-common.ts), the reductions of BatchNorm (lane kernels in workgroup mode),
 * column and row sums (broadcast.ts: reduce.ts, bias gradients, the loss), global average pooling
 * and the FCA channel pooling have a variant in which a workgroup reduces one output with
 * `subgroupAdd` / `subgroupMax`, one barrier and one pass over per-subgroup slots, instead of a
 * tree in workgroup memory or one invocation walking everything. The existing kernels stay the
 * tested fallback; tests force both (`engine.variants.set('subgroups', 'on' | 'off')`).
 *
 * Subgroup size varies by adapter (SwiftShader 4, lavapipe 8 with AVX2, GPUs 16-128) and WebGPU
 * does not say how invocations map onto subgroups, so nothing here depends on either: each
 * subgroup's first invocation stores its subgroup's result at its own local index, and every
 * invocation then combines all WG slots in index order (deterministic, any size 4-128, any layout).
 */
import type { Tensor } from '../tensor.js';

type Engine = Tensor['engine'];

/**
 * Whether the engine's reductions use their subgroup variants: never without the adapter's
 * `subgroups` feature; else the `subgroups` variant, forced or its default per kernel family
 * (engine/variants.ts: on for GPUs only, with the measured reasons).
 */
export function useSubgroups(engine: Engine): boolean {
  if (!engine.features.has('subgroups')) return false;
  return engine.variants.choose('subgroups') === 'on';
}

/** Workgroup size of the subgroup reductions: one workgroup per output (or per output chunk). */
export const SG_WG = 64;

/** The WGSL directive a subgroup kernel starts with (assembleWgsl hoists it above the prelude). */
export const ENABLE_SUBGROUPS = 'enable subgroups;';

/**
 * A generated subgroup reduction kernel: the enable directive, `helpers` (workgroupSumWgsl and
 * friends), then the entry point of SG_WG invocations (`t` local index, `sgi` subgroup invocation
 * id) per workgroup, `w` the workgroup's flat index; workgroups at or past `p.${count}` return at
 * once. `body` is indented by two spaces.
 */
export const subgroupMain = (helpers: readonly string[], body: string, count = 'outputs'): string => `${ENABLE_SUBGROUPS}
${helpers.join('\n')}
@compute @workgroup_size(${SG_WG})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) sgi: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.${count}) { return; }
  ${body}
}`;

/**
 * WGSL of `fn NAME(v: T, t: u32, sgi: u32) -> T`: the sum of `v` over the workgroup's `wg`
 * invocations, returned to every one (t = local_invocation_index, sgi = subgroup_invocation_id).
 * Relies on WGSL's zero-initialised workgroup memory: call it at most once per invocation, in
 * uniform control flow (every invocation of the workgroup).
 */
export function workgroupSumWgsl(name: string, type: string, wg = SG_WG): string {
  return `var<workgroup> ${name}_slots: array<${type}, ${wg}>;
fn ${name}(v: ${type}, t: u32, sgi: u32) -> ${type} {
  let s = subgroupAdd(v);
  if (sgi == 0u) { ${name}_slots[t] = s; }
  workgroupBarrier();
  var acc = ${name}_slots[0];
  for (var k = 1u; k < ${wg}u; k = k + 1u) { acc = acc + ${name}_slots[k]; }
  return acc;
}`;
}

/**
 * WGSL of `fn NAME(v: T, t: u32) -> T`: the maximum of `v` over the workgroup. Every invocation
 * stores its subgroup's maximum (duplicates do not change a maximum); same calling rules as
 * workgroupSumWgsl.
 */
export function workgroupMaxWgsl(name: string, type: string, wg = SG_WG): string {
  return `var<workgroup> ${name}_slots: array<${type}, ${wg}>;
fn ${name}(v: ${type}, t: u32) -> ${type} {
  ${name}_slots[t] = subgroupMax(v);
  workgroupBarrier();
  var acc = ${name}_slots[0];
  for (var k = 1u; k < ${wg}u; k = k + 1u) { acc = max(acc, ${name}_slots[k]); }
  return acc;
}`;
}
