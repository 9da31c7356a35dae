/**
 * Fused epilogues for the convolution kernels (conv2d, depthwise, transposed conv): what happens
 * to an output value between the accumulator and memory. One generator serves every producer,
 * so conv + BatchNorm + activation (+ residual, + the FCA product) is one dispatch in inference,
 * and a producer can write straight into a channel slice of a larger tensor (concat without a
 * copy).
 *
 * Order, as CANet computes it: y = acc * scale[c] + shift[c]  (BN folded with the conv bias)
 *                              y = y + residual[m, c]         (MobileNetV2's and ResNet's skips)
 *                              y = act(y)                     (an activation of activation.ts)
 *                              y = y * (as[m] * ac[n, c] + 1) (FCA: F * A_s * A_c + F)
 * m is the flat output pixel (n, oy, ox) and c the output channel. Epilogues carry no autograd:
 * the ops accept them only while no graph is recorded (inference); training uses the separate
 * ops, whose backward kernels need the intermediate tensors anyway.
 */
import { check, fmtShape } from '../errors.js';
import { type BindingDecl, type ScalarType, read } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type ActivationName, activationWgsl } from './activation.js';
import { loadF32, storageType, storeAs } from './storage.js';

/** The activations an epilogue applies: those of the table in activation.ts. */
export type EpilogueActivation = ActivationName;

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

/**
 * The code generators of one epilogue for one kernel: called only inside the kernel's `shader()`
 * (a pipeline-cache miss), never per call.
 */
export interface EpilogueCode {
  /** Helper functions (insert at module scope; the bindings and uniforms are declared by the spec). */
  decls: string;
  /** Per-channel setup, hoisted out of pixel loops: defines `${name}_s` and `${name}_t`. */
  setup(c: string, name: string): string;
  /**
   * The value to store for accumulator `v` (f32) at pixel `m`, channel `c` (after `setup(c, name)`),
   * converted to the target's storage type (f16 targets: `vec4<f16>(...)`).
   */
  apply(v: string, m: string, c: string, name: string): string;
  /** A raw f32 value converted for a store into the target (no scale, shift or activation). */
  store(v: string): string;
  /** Element index (in units of the value type) of (m, c) in the target. */
  index(m: string, c: string): string;
}

/**
 * One epilogue for one kernel, per call: its declared interface (uniforms and bindings to merge
 * into the kernel's), their values by name, and a short `variant` naming every compile-time
 * choice of its code; the WGSL comes from `code()`, to be called inside `shader()` only.
 */
export interface EpiloguePlan {
  /**
   * The layout of the generated code, for the kernel's variant: value width, scale/shift kind,
   * activation, residual, FCA, and which uniforms exist (see `use`). Every input of `code()` that
   * is not a uniform value is in it; the kernel's variant must include it.
   */
  variant: string;
  /** Declared uniforms (append to the kernel's): only those the generated code reads. */
  uniforms: Readonly<Record<string, ScalarType>>;
  /** Declared storage bindings (append after the kernel's own). */
  bindings: Readonly<Record<string, BindingDecl>>;
  /** Values of `uniforms`, by name. */
  values: Readonly<Record<string, number>>;
  /** Tensors of `bindings`, by name. */
  tensors: Readonly<Record<string, Tensor>>;
  /** The tensor the kernel stores into (the output, or `into.tensor`). */
  target: Tensor;
  /** How the accumulator is scaled and shifted before the rest. */
  scaleShift: 'none' | 'bias' | 'affine';
  /** True when nothing follows the scale and shift (no activation, residual or FCA). */
  linear: boolean;
  /** The generators (WGSL text): inside `shader()` only. */
  code(): EpilogueCode;
}

/**
 * Which generators the kernel calls, so that the epilogue declares only the uniforms its code
 * reads: `index` (stores through `index()`: the output stride and offset) and `setup` (scale and
 * shift through `setup()`: the parameter offset and row). Both default to true.
 */
export interface EpilogueUse {
  index?: boolean;
  setup?: boolean;
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
  // Data operands and the target may be f16 (the f16 inference path); the affine stays f32.
  const float = (t: Tensor): boolean => t.dtype === 'f32' || t.dtype === 'f16';
  const dense = (what: string, t: Tensor, want: number[]) =>
    check(t.size === want.reduce((a, b) => a * b, 1) && float(t), op, () => `${what} ${t.name} must be f32 or f16 ${fmtShape(want)}, got ${t.dtype} ${fmtShape(t.shape)}`);
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
    check(t.rank === 4 && t.shape[0] === n && t.shape[1] === h && t.shape[2] === w && float(t), op, () =>
      `epilogue target ${t.name} must be f32 or f16 [${n}, ${h}, ${w}, >= ${c}], got ${t.dtype} ${fmtShape(t.shape)}`);
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

/** How an epilogue scales and shifts the accumulator, and whether anything follows (see EpiloguePlan). */
export function epilogueKind(e: Epilogue | null | undefined, bias: Tensor | null = null): { scaleShift: 'none' | 'bias' | 'affine'; linear: boolean } {
  return {
    scaleShift: e?.affine ? 'affine' : bias ? 'bias' : 'none',
    linear: (e?.act ?? 'none') === 'none' && !e?.residual && !e?.fca,
  };
}

/**
 * Plans the epilogue for a kernel storing values of `vec` channels each (f32 or vec4<f32>) of an
 * output of `shape` [N, H, W, C] into `out` (null when the epilogue writes `into` another tensor).
 * `bias` (when there is no affine) is an optional [C] tensor added to each channel. Cheap: the
 * WGSL is generated by `code()`.
 */
export function epiloguePlan(e: Epilogue | null | undefined, shape: readonly number[], out: Tensor | null, vec: 1 | 4, bias: Tensor | null = null, use: EpilogueUse = {}): EpiloguePlan {
  const [, h, w, c] = shape as [number, number, number, number];
  const vt = vec === 4 ? 'vec4<f32>' : 'f32';
  const ep = e ?? {};
  const act = ep.act ?? 'none';
  const useIndex = use.index ?? true;
  const useSetup = use.setup ?? true;
  const { scaleShift, linear } = epilogueKind(ep, bias);
  const target = ep.into?.tensor ?? out;
  if (!target) throw new Error('epiloguePlan: no output tensor and no `into` target');
  // (A class-id target, [N, H, W], is indexed by pixel alone.)
  const stride = target.rank === 4 ? target.shape[3]! : c;
  const offset = ep.into?.channelOffset ?? 0;

  // Declared uniforms: only those the generated code reads (each condition is in the variant).
  const uniforms: Record<string, ScalarType> = {};
  const values: Record<string, number> = {};
  const uniform = (name: string, v: number): void => {
    uniforms[name] = 'u32';
    values[name] = v;
  };
  if (ep.residual || ep.fca) uniform('ep_c', c); // output channels (row stride of the residual and the channel attention)
  if (ep.fca) uniform('ep_hw', h * w); // pixels per image (the batch row of the channel attention)
  if (useIndex) {
    uniform('ep_ostride', stride / vec); // row stride of the target, in value units
    uniform('ep_ooff', offset / vec); // first channel stored in the target (into.channelOffset), in value units
  }
  if (useSetup && scaleShift !== 'none') uniform('ep_poff', ep.paramOffset ?? 0); // first channel of the affine (or bias) read (paramOffset)
  if (useSetup && scaleShift === 'affine') uniform('ep_prow', ep.affine!.size / 2); // row length of the affine (its shift row starts there)

  const bindings: Record<string, BindingDecl> = {};
  const tensors: Record<string, Tensor> = {};
  // Each binding takes its tensor's storage type (f16 data on the f16 inference path).
  const bind = (name: string, t: Tensor, v: 1 | 4): void => {
    bindings[name] = read(storageType(t, v));
    tensors[name] = t;
  };
  if (ep.affine) bind('ep_aff', ep.affine, vec);
  else if (bias) bind('ep_bias', bias, vec);
  if (ep.residual) bind('ep_res', ep.residual, vec);
  if (ep.fca) {
    bind('ep_as', ep.fca.as, 1);
    bind('ep_ac', ep.fca.ac, vec);
  }
  // Storage types: -h and the f16 ones among the target (y), residual (r), spatial (s) and channel
  // (c) attention and bias or affine (b); nothing for all-f32 epilogues (their variants unchanged).
  const roles: [string, Tensor | null | undefined][] = [['y', target], ['r', ep.residual], ['s', ep.fca?.as], ['c', ep.fca?.ac], ['b', ep.affine ?? bias]];
  const half = roles.filter(([, t]) => t?.dtype === 'f16').map(([k]) => k).join('');
  // Every compile-time input of code(): vec, scaleShift, act, residual, fca, useIndex, useSetup, the f16 bindings.
  const variant = `ep${vec}${scaleShift[0]}-${act}${ep.residual ? '-res' : ''}${ep.fca ? '-fca' : ''}${useIndex ? '' : '-noidx'}${useSetup ? '' : '-nosetup'}${half ? `-h${half}` : ''}`;

  // Class-id targets (i32) store what the kernel computes from the values; float targets convert.
  const store = (v: string): string => (target.dtype === 'f16' ? storeAs(target, vec, v) : v);
  const code = (): EpilogueCode => {
    const decls: string[] = [];
    const body: string[] = ['  var r = v;'];
    const ld = (t: Tensor, v: 1 | 4, e: string): string => loadF32(t, v, e);
    if (ep.residual) body.push(`  r = r + ${ld(ep.residual, vec, `ep_res[(m * p.ep_c + c) / ${vec}u]`)};`);
    if (act !== 'none') body.push(`  { let x = r; r = ${activationWgsl(act, vt)}; }`);
    if (ep.fca) body.push(`  r = r * (${ld(ep.fca.as, 1, 'ep_as[m]')} * ${ld(ep.fca.ac, vec, `ep_ac[((m / p.ep_hw) * p.ep_c + c) / ${vec}u]`)} + 1.0);`);
    decls.push(`fn ep_finish(v: ${vt}, m: u32, c: u32) -> ${vt} {`, ...body, '  return r;', '}');
    return {
      decls: decls.join('\n'),
      setup: (ch, name) =>
        scaleShift === 'affine'
          ? `let ${name}_s = ${ld(ep.affine!, vec, `ep_aff[(p.ep_poff + ${ch}) / ${vec}u]`)}; let ${name}_t = ${ld(ep.affine!, vec, `ep_aff[(p.ep_prow + p.ep_poff + ${ch}) / ${vec}u]`)};`
          : scaleShift === 'bias'
            ? `let ${name}_s = ${vt}(1.0); let ${name}_t = ${ld(bias!, vec, `ep_bias[(p.ep_poff + ${ch}) / ${vec}u]`)};`
            : `let ${name}_s = ${vt}(1.0); let ${name}_t = ${vt}(0.0);`,
      apply: (v, m, ch, name) => {
        const lin = scaleShift === 'none' ? v : scaleShift === 'bias' ? `(${v}) + ${name}_t` : `(${v}) * ${name}_s + ${name}_t`;
        return store(linear ? lin : `ep_finish(${lin}, ${m}, ${ch})`);
      },
      store,
      index: (m, ch) => `(${m}) * p.ep_ostride + p.ep_ooff + (${ch}) / ${vec}u`,
    };
  };
  return { variant, uniforms, bindings, values, tensors, target, scaleShift, linear, code };
}
