/**
 * Fused epilogues for the convolution kernels (conv2d, depthwise, transposed conv): what happens
 * to an output value between the accumulator and memory. One generator serves every producer,
 * so conv + BatchNorm + activation (+ residual, + the FCA product) is one dispatch in inference,
 * and a producer can write straight into a channel slice of a larger tensor (concat without a
 * copy).
 *
 * Order, as CANet computes it: y = acc * scale[c] + shift[c]  (BN folded with the conv bias)
 *                              y = y + residual[m, c]         (MobileNetV2's and ResNet's skips)
 *                              y = act(y)                     (relu / relu6 / sigmoid)
 *                              y = y * (as[m] * ac[n, c] + 1) (FCA: F * A_s * A_c + F)
 * m is the flat output pixel (n, oy, ox) and c the output channel. Epilogues carry no autograd:
 * the ops accept them only while no graph is recorded (inference); training uses the separate
 * ops, whose backward kernels need the intermediate tensors anyway.
 */
import { check, fmtShape } from '../errors.js';
import type { UniformValue } from '../program.js';
import type { Tensor } from '../tensor.js';
import { unaryOps } from './unary.js';

export type EpilogueActivation = 'none' | 'relu' | 'relu6' | 'sigmoid';

/** What a producer does after its reduction; every field optional. */
export interface Epilogue {
  /** [2, C]: row 0 the per-channel scale, row 1 the shift (see `bnFold`); replaces the bias. */
  affine?: Tensor | null;
  act?: EpilogueActivation;
  /** Added before the activation: a tensor of the output's own shape (dense). */
  residual?: Tensor | null;
  /** FCA product y * (as * ac + 1): as [N, H, W] or [N, H, W, 1], ac [N, C]. */
  fca?: { as: Tensor; ac: Tensor } | null;
  /** Write into channels [channelOffset, channelOffset + C) of `tensor` (same N, H, W). */
  into?: { tensor: Tensor; channelOffset: number } | null;
  /**
   * The output is channels [paramOffset, paramOffset + C) of a larger layer (one part of a layer
   * computed in channel slices): the affine (or bias) is the whole layer's, read from there.
   */
  paramOffset?: number;
}

/** The WGSL and bindings of one epilogue for one kernel. */
export interface EpilogueCode {
  /** Binding declarations and helper functions (insert at module scope). */
  decls: string;
  /** Struct fields for the kernel's Params (insert at its end). */
  params: string;
  /** Values of those fields (append to the kernel's uniforms). */
  uniforms: UniformValue[];
  /** Extra storage bindings, in order from `firstBinding`. */
  bindings: Tensor[];
  /** The tensor the kernel stores into (the output, or `into.tensor`). */
  target: Tensor;
  /** Per-channel setup, hoisted out of pixel loops: defines `${name}_s` and `${name}_t`. */
  setup(c: string, name: string): string;
  /** The value to store for accumulator `v` at pixel `m`, channel `c` (after `setup(c, name)`). */
  apply(v: string, m: string, c: string, name: string): string;
  /** Element index (in units of the value type) of (m, c) in the target. */
  index(m: string, c: string): string;
  /** How the accumulator is scaled and shifted before the rest. */
  scaleShift: 'none' | 'bias' | 'affine';
  /** True when nothing follows the scale and shift (no activation, residual or FCA). */
  linear: boolean;
}

const has = (e: Epilogue | null | undefined): e is Epilogue =>
  !!e && (!!e.affine || (e.act ?? 'none') !== 'none' || !!e.residual || !!e.fca || !!e.into || !!e.paramOffset);

/** True when `e` asks for anything beyond a plain store. */
export const hasEpilogue = has;

/**
 * Checks an epilogue against the output it applies to ([N, H, W, C]), naming the op and the
 * offending tensor. Also refuses to run while a graph is being recorded for `inputs`.
 */
export function checkEpilogue(op: string, e: Epilogue | null | undefined, shape: readonly number[], inputs: readonly Tensor[]): void {
  if (!has(e)) return;
  const [n, h, w, c] = shape as [number, number, number, number];
  const engine = inputs[0]!.engine;
  check(!(engine.gradEnabled && inputs.some((t) => t.requiresGrad)), op, () =>
    `a fused epilogue has no gradient: use it under engine.noGrad() (inference), or the separate ops for training`);
  const dense = (what: string, t: Tensor, want: number[]) =>
    check(t.size === want.reduce((a, b) => a * b, 1) && t.dtype === 'f32', op, () => `${what} ${t.name} must be f32 ${fmtShape(want)}, got ${t.dtype} ${fmtShape(t.shape)}`);
  const off = e.paramOffset ?? 0;
  check(Number.isInteger(off) && off >= 0, op, () => `epilogue paramOffset must be a non-negative integer, got ${off}`);
  if (e.affine)
    check(e.affine.dtype === 'f32' && e.affine.size % 2 === 0 && off + c <= e.affine.size / 2, op, () =>
      `epilogue affine ${e.affine!.name} must be f32 [2, >= ${off + c}] (channels [${off}, ${off + c})), got ${e.affine!.dtype} ${fmtShape(e.affine!.shape)}`);
  if (e.residual) dense('epilogue residual', e.residual, [n, h, w, c]);
  if (e.fca) {
    dense('epilogue FCA spatial attention', e.fca.as, [n, h, w]);
    dense('epilogue FCA channel attention', e.fca.ac, [n, c]);
  }
  if (e.into) {
    const t = e.into.tensor;
    const off = e.into.channelOffset;
    check(t.rank === 4 && t.shape[0] === n && t.shape[1] === h && t.shape[2] === w && t.dtype === 'f32', op, () =>
      `epilogue target ${t.name} must be f32 [${n}, ${h}, ${w}, >= ${c}], got ${t.dtype} ${fmtShape(t.shape)}`);
    check(Number.isInteger(off) && off >= 0 && off + c <= t.shape[3]!, op, () =>
      `epilogue target ${t.name} ${fmtShape(t.shape)}: channels [${off}, ${off + c}) do not fit`);
  }
}

/** Whether values of width `vec` (4: vec4 along channels) can be stored with this epilogue. */
export function epilogueAllowsVec4(e: Epilogue | null | undefined): boolean {
  if ((e?.paramOffset ?? 0) % 4 !== 0 || (e?.affine && (e.affine.size / 2) % 4 !== 0)) return false;
  if (!e?.into) return true;
  return e.into.channelOffset % 4 === 0 && e.into.tensor.shape[3]! % 4 === 0;
}

/**
 * Generates the epilogue for a kernel storing values of `vec` channels each (f32 or vec4<f32>)
 * of an output of `shape` [N, H, W, C] into `out` (null when the epilogue writes `into` another
 * tensor), with its extra bindings from `firstBinding`. `bias` (when there is no affine) is an
 * optional [C] tensor added to each channel.
 */
export function epilogueCode(e: Epilogue | null | undefined, shape: readonly number[], out: Tensor | null, vec: 1 | 4, firstBinding: number, bias: Tensor | null = null): EpilogueCode {
  const [, h, w, c] = shape as [number, number, number, number];
  const vt = vec === 4 ? 'vec4<f32>' : 'f32';
  const ep = e ?? {};
  const act = ep.act ?? 'none';
  const decls: string[] = [];
  const bindings: Tensor[] = [];
  const bind = (name: string, t: Tensor, type: string) => {
    decls.push(`@group(0) @binding(${firstBinding + bindings.length}) var<storage, read> ${name}: array<${type}>;`);
    bindings.push(t);
  };
  const scaleShift = ep.affine ? 'affine' : bias ? 'bias' : 'none';
  if (ep.affine) bind('ep_aff', ep.affine, vt);
  else if (bias) bind('ep_bias', bias, vt);
  if (ep.residual) bind('ep_res', ep.residual, vt);
  if (ep.fca) {
    bind('ep_as', ep.fca.as, 'f32');
    bind('ep_ac', ep.fca.ac, vt);
  }
  const body: string[] = ['  var r = v;'];
  if (ep.residual) body.push(`  r = r + ep_res[(m * p.ep_c + c) / ${vec}u];`);
  if (act !== 'none') body.push(`  { let x = r; r = ${unaryOps[act].forward.replaceAll('vec4<f32>', vt)}; }`);
  if (ep.fca) body.push(`  r = r * (ep_as[m] * ep_ac[((m / p.ep_hw) * p.ep_c + c) / ${vec}u] + 1.0);`);
  decls.push(`fn ep_finish(v: ${vt}, m: u32, c: u32) -> ${vt} {`, ...body, '  return r;', '}');

  const linear = act === 'none' && !ep.residual && !ep.fca;
  const target = ep.into?.tensor ?? out;
  if (!target) throw new Error('epilogueCode: no output tensor and no `into` target');
  // (A class-id target, [N, H, W], is indexed by pixel alone.)
  const stride = target.rank === 4 ? target.shape[3]! : c;
  const offset = ep.into?.channelOffset ?? 0;
  return {
    decls: decls.join('\n'),
    params: 'ep_c: u32, ep_hw: u32, ep_ostride: u32, ep_ooff: u32, ep_poff: u32, ep_prow: u32,',
    uniforms: [c, h * w, stride / vec, offset / vec, ep.paramOffset ?? 0, ep.affine ? ep.affine.size / 2 : c],
    bindings,
    target,
    setup: (ch, name) =>
      scaleShift === 'affine'
        ? `let ${name}_s = ep_aff[(p.ep_poff + ${ch}) / ${vec}u]; let ${name}_t = ep_aff[(p.ep_prow + p.ep_poff + ${ch}) / ${vec}u];`
        : scaleShift === 'bias'
          ? `let ${name}_s = ${vt}(1.0); let ${name}_t = ep_bias[(p.ep_poff + ${ch}) / ${vec}u];`
          : `let ${name}_s = ${vt}(1.0); let ${name}_t = ${vt}(0.0);`,
    apply: (v, m, ch, name) => {
      const lin = scaleShift === 'none' ? v : scaleShift === 'bias' ? `(${v}) + ${name}_t` : `(${v}) * ${name}_s + ${name}_t`;
      return linear ? lin : `ep_finish(${lin}, ${m}, ${ch})`;
    },
    index: (m, ch) => `(${m}) * p.ep_ostride + p.ep_ooff + (${ch}) / ${vec}u`,
    scaleShift,
    linear,
  };
}
