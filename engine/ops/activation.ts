/**
 * The activations, one table (after webgpu-torch's op_table): each is declared once with its WGSL
 * forward, its WGSL gradient from the output y, and its float64 reference. Everything that applies
 * an activation derives from this table: the unary ops and their backward (unary.ts), the fused
 * producer epilogues (epilogue.ts), BatchNorm's fused activation and its backward (batchnorm/),
 * the test references (test/ref/epilogue.ts) and the lists of activations the tests iterate. So
 * adding an activation is one entry here (CONTRIBUTING.md, "Add a fusable activation").
 *
 * Contract of an entry:
 * - `forward(t)`: act(x) as a WGSL expression in `x` of the float type `t` ('f32', 'vec4<f32>',
 *   'f16', 'vec4<f16>'); constants as `${t}(...)` or abstract literals (`1.0`), so that one text
 *   serves every type without rewriting.
 * - `grad(t)`: dL/dx as a WGSL expression in `g` (dL/dy) and `y` (= act(x)) of type `t`. From y
 *   alone: the fused kernels keep the output, not the input (BatchNorm recomputes no x-hat for it,
 *   the unary backward needs no second copy). An activation whose derivative is not a function of
 *   its output (e.g. leaky relu with a learned slope, GELU) cannot be an entry; it stays a plain
 *   unary op.
 * - `ref(x)` and `refGrad(y)`: float64 references of act(x) and of act'(x) from y = act(x), for the
 *   tests (no GPU path reads them).
 */

export interface ActivationSpec {
  /** act(x): WGSL in `x` of the float type `t`. */
  forward(t: string): string;
  /** dL/dx from `g` = dL/dy and `y` = act(x): WGSL of the type `t`. */
  grad(t: string): string;
  /** float64 act(x), for tests. */
  ref(x: number): number;
  /** float64 act'(x) written in y = act(x), for tests. */
  refGrad(y: number): number;
}

const table = {
  relu: {
    forward: (t) => `max(x, ${t}(0.0))`,
    // y > 0 is the same set as x > 0.
    grad: (t) => `select(${t}(0.0), g, y > ${t}(0.0))`,
    ref: (x) => Math.max(x, 0),
    refGrad: (y) => (y > 0 ? 1 : 0),
  },
  relu6: {
    forward: (t) => `clamp(x, ${t}(0.0), ${t}(6.0))`,
    // 0 < y < 6 is the same set as 0 < x < 6.
    grad: (t) => `select(${t}(0.0), g, (y > ${t}(0.0)) & (y < ${t}(6.0)))`,
    ref: (x) => Math.min(Math.max(x, 0), 6),
    refGrad: (y) => (y > 0 && y < 6 ? 1 : 0),
  },
  sigmoid: {
    // exp(-|x|) never overflows; pick the branch by sign for full precision on both sides.
    forward: (t) => `select(exp(x) / (1.0 + exp(x)), 1.0 / (1.0 + exp(-x)), x >= ${t}(0.0))`,
    grad: () => 'g * y * (1.0 - y)',
    ref: (x) => 1 / (1 + Math.exp(-x)),
    refGrad: (y) => y * (1 - y),
  },
  tanh: {
    // sign(x) (1 - e) / (1 + e), e = exp(-2|x|) <= 1: never overflows. WGSL's builtin tanh takes its
    // accuracy from sinh and cosh, which implementations may compute as exp(x) and overflow.
    forward: () => 'sign(x) * ((1.0 - exp(-2.0 * abs(x))) / (1.0 + exp(-2.0 * abs(x))))',
    grad: () => 'g * (1.0 - y * y)',
    ref: (x) => Math.tanh(x),
    refGrad: (y) => 1 - y * y,
  },
} satisfies Record<string, ActivationSpec>;

/** An activation of the table. */
export type ActivationOp = keyof typeof table;
/** An activation, or none (the identity). */
export type ActivationName = 'none' | ActivationOp;

/** The table, by name. */
export const activations: Readonly<Record<ActivationOp, ActivationSpec>> = table;
/** The activations of the table, in table order (what the tests iterate). */
export const ACTIVATION_OPS = Object.keys(table) as readonly ActivationOp[];
/** Every accepted activation name: 'none' and the table's. */
export const ACTIVATION_NAMES: readonly ActivationName[] = ['none', ...ACTIVATION_OPS];

/** Whether `act` names an activation ('none' included). */
export const isActivation = (act: unknown): act is ActivationName => typeof act === 'string' && (act === 'none' || Object.hasOwn(table, act));

/** act(x) as WGSL in `x` of type `t` (`x` itself for 'none'). */
export const activationWgsl = (act: ActivationName, t: string): string => (act === 'none' ? 'x' : activations[act].forward(t));

/** dL/dx from `g` and `y` = act(x) as WGSL of type `t` (`g` itself for 'none'). */
export const activationGradWgsl = (act: ActivationName, t: string): string => (act === 'none' ? 'g' : activations[act].grad(t));

/** The float64 reference of act (the identity for 'none'), for tests. */
export const activationRef = (act: ActivationName): ((x: number) => number) => (act === 'none' ? (x) => x : activations[act].ref);
