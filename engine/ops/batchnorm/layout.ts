/**
 * How BatchNorm cuts x [..., C] up, shared by its algorithms: groups of L = lcm(C, 4) floats,
 * P = L / 4 vec4s each, so that every kernel reads x as vec4s whatever C is and a per-channel
 * vector replicated to L floats lines up with the data lane for lane (see the layout note at the
 * top of shaders/batchnorm.wgsl); the last group holds `rem` data elements; the chunked
 * reductions use `chunks` chunks of `gpc` groups.
 */
import type { Tensor } from '../../tensor.js';

/** Workgroup size of the one-invocation-per-item kernels. */
export const WG = 64;

/**
 * The chunked reductions aim for about this many invocations, each reading at least
 * MIN_GROUPS_PER_CHUNK groups. On SwiftShader (2 cores) fewer, longer chunks measured fastest
 * (1024 invocations beat 4096 and 16384 by 10-40% on 2x64x128x32, 1x32x64x576 and 1x128x256x19);
 * a hardware GPU needs far more invocations in flight to hide memory latency (not measured here:
 * no hardware adapter was available).
 */
const TARGET_INVOCATIONS = { software: 1024, hardware: 16384 };
const MIN_GROUPS_PER_CHUNK = { software: 64, hardware: 16 };

export interface Geometry {
  /** Channels. */
  c: number;
  /** Values per channel (x.size / C). */
  rows: number;
  /** Floats per group, lcm(C, 4). */
  l: number;
  /** vec4s per group. */
  p4: number;
  groups: number;
  /** Data elements in the last group. */
  rem: number;
  /** vec4s of x. */
  n4: number;
  /** Groups per chunk of the chunked reductions. */
  gpc: number;
  chunks: number;
}

export function geometry(x: Tensor): Geometry {
  const c = x.shape[x.rank - 1]!;
  const l = c % 4 === 0 ? c : c % 2 === 0 ? 2 * c : 4 * c;
  const p4 = l / 4;
  const groups = Math.ceil(x.size / l);
  const rem = x.size - (groups - 1) * l;
  const kind = x.engine.adapter.isSoftware ? 'software' : 'hardware';
  const want = Math.max(1, Math.ceil(TARGET_INVOCATIONS[kind] / p4));
  const chunks0 = Math.min(want, Math.max(1, Math.floor(groups / MIN_GROUPS_PER_CHUNK[kind])));
  const gpc = Math.ceil(groups / chunks0);
  return { c, rows: x.size / c, l, p4, groups, rem, n4: Math.ceil(x.size / 4), gpc, chunks: Math.ceil(groups / gpc) };
}

/** Where the backward writes dgamma and dbeta ([C] each, e.g. optimizer slots); null: new tensors. */
export interface ParamGradDest {
  dgamma: Tensor | null;
  dbeta: Tensor | null;
}
