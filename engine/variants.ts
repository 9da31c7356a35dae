/**
 * Kernel variants: the one place that answers "which kernel runs, and why".
 *
 * Ops choose between kernels of the same contract (register tiles or workgroup-memory GEMMs,
 * subgroup reductions or trees, unrolled or rolled loops). Each such choice is a family, declared
 * once in VARIANT_FAMILIES with its named candidates (one line each), or, for a free-form value,
 * how the value is checked, and its default rule: a function of the engine's adapter. Every
 * engine has its own VariantRegistry (`engine.variants`): ops ask it (`choose`, `override`), tests
 * and benchmarks force a candidate through it (`set`; a wrong family or value throws, naming the
 * allowed ones), and it holds the autotuner's measured choices per shape (`tuned`, which
 * `engine.tuned` is). `describe()` lists every family, its candidates, the chosen one and why.
 * Nothing here is process-global: an override on one engine leaves the others alone.
 *
 * A new candidate of a family is one line in its `candidates` (and the op's selection function
 * taking it); test/gpu.ts's kernelModes hands it to the op's tests without further edits.
 */
import { type KernelFamily, adapterFamily } from './device-common.js';
import type { AdapterSummary } from './engine.js';

/** What default rules read: the engine's adapter and features, and its other choices. */
export interface VariantTarget {
  readonly adapter: AdapterSummary;
  readonly features: ReadonlySet<string>;
}

/** How a family is declared (see VARIANT_FAMILIES). */
export interface VariantFamilySpec {
  /** One line: what the choice decides. */
  description: string;
  /** The named candidates, each with a one-line description. Absent for a free-form family. */
  candidates?: Readonly<Record<string, string>>;
  /** What the candidates are, in errors ("it takes a kernel family: ..."); default "one of". */
  noun?: string;
  /** A free-form family: null when `value` is acceptable, else what is wrong with it. */
  check?: (value: string) => string | null;
  /**
   * The default rule: the variant the engine takes without an override, or null where the op
   * decides per call (by shape).
   */
  default: (r: VariantRegistry) => string | null;
  /** The default rule in words (describe()). */
  rule: string;
  /** Prefixes of the engine.tuned keys whose measured variants refine this family per shape. */
  tunedPrefixes?: readonly string[];
}

const FAMILY_CANDIDATES: Readonly<Record<KernelFamily, string>> = {
  swiftshader: 'SwiftShader and other CPU JITs: large fully unrolled register tiles, no barriers',
  llvmpipe: 'Mesa lavapipe: moderate tiles, loops instead of full unrolls (compile time first)',
  gpu: 'hardware adapters',
};

/** The engine's kernel family (the `family` choice); typed here so that the rules below need no inference. */
function familyOf(r: VariantRegistry): KernelFamily {
  return r.choose('family');
}

/**
 * The default kernel kind of conv2d and of the transposed convolution: the workgroup-memory GEMMs
 * on GPUs, the lanes kernels on llvmpipe with subgroups, register tiles on other CPU adapters.
 */
function convKindDefault(r: VariantRegistry): 'workgroup' | 'lanes' | 'register' {
  const family = familyOf(r);
  if (family === 'gpu') return 'workgroup';
  return family === 'llvmpipe' && r.target.features.has('subgroups') ? 'lanes' : 'register';
}

/** conv2d's kernel kind (the `conv2d` choice), typed like familyOf. */
function conv2dKindOf(r: VariantRegistry): string {
  return r.choose('conv2d');
}

/** A family of register tiles of one op: the engine's kernel family unless forced. */
const tileFamily = (op: string) => ({
  description: `the kernel family whose register tiles ${op} takes`,
  candidates: FAMILY_CANDIDATES,
  noun: 'a kernel family',
  default: familyOf,
  rule: "the engine's kernel family",
});

/**
 * Where the adapter has the `subgroups` feature: GPUs on; SwiftShader off (its subgroup is one
 * 4-wide register and any barrier puts the whole shader in a slow coroutine mode, SWIFTSHADER.md
 * lesson 2); llvmpipe: off, see bench/RESULTS.md (2026-12-06, subgroups).
 */
const SUBGROUPS_ON: Readonly<Record<KernelFamily, boolean>> = { swiftshader: false, llvmpipe: false, gpu: true };

/** Every variant family, by name (the keys of `engine.prefer`). */
export const VARIANT_FAMILIES = {
  family: {
    description: 'the code-shape rules (tiles, unrolls, reductions) every op follows',
    candidates: FAMILY_CANDIDATES,
    noun: 'a kernel family',
    default: (r) => adapterFamily(r.target.adapter),
    rule: "the adapter's: gpu for hardware, llvmpipe for lavapipe, swiftshader for other CPU adapters",
  },
  conv2d: {
    description: 'the kernel of each conv2d GEMM (forward, input and filter gradients)',
    candidates: {
      workgroup: 'workgroup-memory GEMM tiles (conv2d-workgroup.ts)',
      register: 'register tiles of the conv2dTiles family (conv2d.ts)',
      lanes: 'one output pixel (filter gradient: one k-slot) per SIMD lane, the shared operand loaded once per subgroup and handed out by subgroupBroadcast (conv2d-lanes.ts); forward, filter gradient and (conv2dLanesInput) the stride-1 input gradient',
    },
    default: convKindDefault,
    rule: 'workgroup on GPUs; lanes on llvmpipe with subgroups (bench/RESULTS.md 2026-12-06: 2-3.5x its register tiles); register on other CPU adapters; a tuned tile per shape replaces it',
    tunedPrefixes: ['conv2d.'],
  },
  conv2dLanes: {
    description: "the lanes kernels' tile, lanes{TM}x{NB}s{SG}@{WG}: TM pixels x NB channels per lane, subgroup SG, WG invocations",
    check: (v) => (/^lanes\d+x\d+s\d+@\d+$/.test(v) ? null : 'is not a lanes tile: lanes{TM}x{NB}s{SG}@{WG}, e.g. lanes2x16s8@64'),
    default: () => null,
    rule: "per call: 2 pixels x 16 channels at the device's subgroup size, fewer channels for narrow layers (conv2d-lanes.ts)",
  },
  conv2dLanesInput: {
    description: 'whether the lanes kernels also take the stride-1 input gradient (a lanes forward of gy reading the weights flipped and transposed)',
    candidates: { off: 'the register tiles', on: 'the lanes forward of gy, w read flipped and transposed in the kernel (no extra dispatch)' },
    default: (r) => (conv2dKindOf(r) === 'lanes' ? 'on' : 'off'),
    rule: "on wherever conv2d's choice is lanes (by default llvmpipe with subgroups): 2x the register input gradient there and no extra dispatch (bench/RESULTS.md 2026-12-06, 21:30); off elsewhere, where the register or workgroup tiles take every GEMM",
  },
  conv2dTiles: tileFamily('conv2d'),
  conv2dTile: {
    description: "explicit conv2d register tiles per GEMM, e.g. 'forward=16x32@16,input=8x8@16'",
    check: (v) =>
      v.split(',').every((part) => /^\s*(forward|input|filter)=(\d+)x(\d+)@(\d+)\s*$/.test(part)) ? null : 'is not a list of GEMM=RxC@W (GEMM forward, input or filter)',
    default: () => null,
    rule: "none: the conv2dTiles family's tiles",
  },
  depthwise: {
    description: 'the depthwise forward kernel',
    candidates: {
      workgroup: 'input patches in workgroup memory (depthwise-workgroup.ts)',
      register: 'register tiles of the depthwiseTiles family (depthwise.ts)',
    },
    default: (r) => (familyOf(r) === 'gpu' ? 'workgroup' : 'register'),
    rule: 'workgroup on GPUs, register on CPU adapters',
  },
  depthwiseTiles: tileFamily('depthwise'),
  convTranspose: {
    description: 'the transposed-convolution forward and input-gradient kernels',
    candidates: {
      workgroup: 'workgroup-memory GEMMs per stride phase (conv-transpose-workgroup.ts)',
      register: 'register tiles of the convTransposeTiles family (conv-transpose.ts)',
      lanes: 'one output pixel per SIMD lane, the weights loaded once per subgroup and handed out by subgroupBroadcast (conv-transpose-lanes.ts): the forward, and the input gradient as conv2d\'s lanes forward; the filter gradient keeps the register tiles',
    },
    default: convKindDefault,
    rule: 'workgroup on GPUs; lanes on llvmpipe with subgroups (bench/RESULTS.md 2026-12-06 21:28: kernels 2-4x its register tiles, inference 1.25x, training 1.15x); register on other CPU adapters; a tuned register tile per shape replaces workgroup and lanes',
    tunedPrefixes: ['convTranspose2d.'],
  },
  convTransposeTiles: tileFamily('convTranspose'),
  subgroups: {
    description: 'subgroup reductions (BatchNorm lanes, column and row sums, pooling; subgroup.ts)',
    candidates: { on: 'subgroupAdd / subgroupMax, one barrier', off: 'trees in workgroup memory or serial walks' },
    default: (r) => (r.target.features.has('subgroups') && SUBGROUPS_ON[familyOf(r)] ? 'on' : 'off'),
    rule: "on for GPUs with the 'subgroups' feature, else off ('on' cannot add the feature)",
  },
  bnReduce: {
    description: 'how the one-dispatch BatchNorm reductions share a lane (batchnorm/lanes.ts)',
    candidates: {
      serial: 'one invocation walks the lane',
      workgroup: '64 invocations per lane, merged in workgroup memory',
      chunked: 'no lane kernels: chunked passes and a separate activation',
    },
    default: (r) => (r.target.adapter.isSoftware ? 'serial' : 'workgroup'),
    rule: 'serial on CPU adapters, workgroup on GPUs',
  },
  bnFuse: {
    description: "whether a BatchNorm lane kernel also does the elementwise pass after its reduction",
    candidates: { fused: 'one dispatch', separate: 'a second dispatch for the elementwise pass' },
    default: () => null,
    rule: 'per call: fused for serial lanes, and for workgroup lanes up to 1024 rows',
  },
  bnUnroll: {
    description: 'groups per iteration of the BatchNorm lane kernels\' unrolled loop',
    check: (v) => (/^[1-9]\d{0,2}$/.test(v) ? null : 'is not a whole number of groups from 1 (no unrolled loop)'),
    default: (r) => (familyOf(r) === 'llvmpipe' ? '1' : '4'),
    rule: '1 on llvmpipe (compile time), else 4',
  },
  poolShape: {
    description: 'the max-pool forward kernel (pool.ts)',
    candidates: { unrolled: 'whole window unrolled, up to 4 outputs per invocation', rolled: 'one output per invocation, a loop over window rows' },
    default: (r) => (familyOf(r) === 'llvmpipe' ? 'rolled' : 'unrolled'),
    rule: 'rolled on llvmpipe (compile time), else unrolled',
  },
} as const satisfies Record<string, VariantFamilySpec>;

export type VariantFamilyName = keyof typeof VARIANT_FAMILIES;

/** The values a family takes: its candidates' names, or any string for a free-form family. */
export type VariantOf<F extends VariantFamilyName> = (typeof VARIANT_FAMILIES)[F] extends { candidates: infer C } ? keyof C & string : string;

/** What choose() gives: always a value, except for families whose default is decided per call. */
export type ChosenVariant<F extends VariantFamilyName> = null extends ReturnType<(typeof VARIANT_FAMILIES)[F]['default']> ? VariantOf<F> | undefined : VariantOf<F>;

/** The candidates of a family, in declaration order ([] for a free-form family). */
export function variantCandidates<F extends VariantFamilyName>(family: F): VariantOf<F>[] {
  const spec: VariantFamilySpec = VARIANT_FAMILIES[family];
  return Object.keys(spec.candidates ?? {}) as VariantOf<F>[];
}

/** One family as describe() reports it. */
export interface VariantReport {
  family: string;
  description: string;
  /** Name and description of each candidate ([] for a free-form family). */
  candidates: { name: string; description: string }[];
  /** The variant the engine takes (undefined: decided per call, see `rule`). */
  chosen: string | undefined;
  /** 'override': set on this engine; 'default': the default rule's. */
  reason: 'override' | 'default';
  /** The default rule in words. */
  rule: string;
  /** Measured variants per shape (engine.tuned keys of this family), which replace the default for their shapes. */
  tuned: Record<string, string>;
}

/** The typed view of the overrides that `engine.prefer` is (each key a family, checked on set). */
export type PreferView = { -readonly [F in VariantFamilyName]?: VariantOf<F> };

export class VariantRegistry {
  /**
   * Measured kernel choices by case key (e.g. a conv2d GEMM's geometry) -> variant (e.g.
   * '16x32@16'): filled by autotune, saved and loaded with exportTuning/importTuning. Ops use them
   * where no override is set; describe() lists them under their family.
   */
  readonly tuned = new Map<string, string>();
  private readonly families = new Map<string, VariantFamilySpec>();
  private readonly overrides = new Map<string, string>();
  private preferView: PreferView | null = null;

  constructor(readonly target: VariantTarget) {
    for (const [name, spec] of Object.entries(VARIANT_FAMILIES)) this.families.set(name, spec);
  }

  /**
   * Adds a family to this engine's registry (VARIANT_FAMILIES are registered already). For code
   * outside the engine with kernel choices of its own; refused if the name is taken.
   */
  register(name: string, spec: VariantFamilySpec): void {
    if (this.families.has(name)) throw new Error(`engine.variants: a family '${name}' is registered already`);
    if (!spec.candidates === !spec.check) throw new Error(`engine.variants: family '${name}' needs either candidates or check`);
    this.families.set(name, spec);
  }

  /** The registered family names. */
  names(): string[] {
    return [...this.families.keys()];
  }

  /** The candidates of a family ([] for a free-form one). */
  candidates<F extends VariantFamilyName>(family: F): VariantOf<F>[];
  candidates(family: string): string[];
  candidates(family: string): string[] {
    return Object.keys(this.spec(family, 'engine.variants').candidates ?? {});
  }

  /** The variant the engine takes: the override, else the default rule's (undefined: the op decides per call). */
  choose<F extends VariantFamilyName>(family: F): ChosenVariant<F>;
  choose(family: string): string | undefined;
  choose(family: string): string | undefined {
    const forced = this.overrides.get(family);
    if (forced !== undefined) return forced;
    return this.spec(family, 'engine.variants').default(this) ?? undefined;
  }

  /** The override set on this engine, or undefined (ops that treat a forced choice specially ask this). */
  override<F extends VariantFamilyName>(family: F): VariantOf<F> | undefined;
  override(family: string): string | undefined;
  override(family: string): string | undefined {
    this.spec(family, 'engine.variants');
    return this.overrides.get(family);
  }

  /** The default rule's variant, whatever the override. */
  defaultOf<F extends VariantFamilyName>(family: F): ChosenVariant<F>;
  defaultOf(family: string): string | undefined;
  defaultOf(family: string): string | undefined {
    return this.spec(family, 'engine.variants').default(this) ?? undefined;
  }

  /**
   * Forces `value` for `family` on this engine (undefined clears it). Throws, naming the family
   * and the values it takes, for an unknown family or a value it does not take.
   */
  set<F extends VariantFamilyName>(family: F, value: VariantOf<F> | undefined): void;
  set(family: string, value: string | undefined): void;
  set(family: string, value: string | undefined): void {
    this.setFrom('engine.variants', family, value);
  }

  /** Clears the override of `family`, or every override. */
  clear(family?: string): void {
    if (family === undefined) this.overrides.clear();
    else this.set(family, undefined);
  }

  /** The overrides set on this engine, by family. */
  overridden(): Record<string, string> {
    return Object.fromEntries(this.overrides);
  }

  /** Every family: its candidates, the variant chosen and why, the default rule, and tuned shapes. */
  describe(): VariantReport[] {
    return [...this.families].map(([family, spec]) => {
      const forced = this.overrides.get(family);
      const prefixes = spec.tunedPrefixes ?? [];
      return {
        family,
        description: spec.description,
        candidates: Object.entries(spec.candidates ?? {}).map(([name, description]) => ({ name, description })),
        chosen: forced ?? spec.default(this) ?? undefined,
        reason: forced !== undefined ? 'override' : 'default',
        rule: spec.rule,
        tuned: Object.fromEntries([...this.tuned].filter(([key]) => prefixes.some((p) => key.startsWith(p)))),
      };
    });
  }

  /** describe() as text, one family a line (bench and CLI reports). */
  format(): string {
    return this.describe()
      .map((d) => {
        const tuned = Object.keys(d.tuned).length;
        const why = d.reason === 'override' ? 'override' : `default: ${d.rule}`;
        return `${d.family}: ${d.chosen ?? '(per call)'} (${why}${tuned ? `; ${tuned} shapes tuned` : ''})`;
      })
      .join('\n');
  }

  /** @internal engine.prefer: the overrides as an object whose writes and deletes go through set(). */
  prefer(): PreferView {
    return (this.preferView ??= new Proxy({} as PreferView, {
      get: (_, key) => (typeof key === 'string' ? this.overrides.get(key) : undefined),
      set: (_, key, value) => {
        this.setFrom('engine.prefer', String(key), value as string | undefined);
        return true;
      },
      deleteProperty: (_, key) => {
        this.setFrom('engine.prefer', String(key), undefined);
        return true;
      },
      has: (_, key) => typeof key === 'string' && this.overrides.has(key),
      ownKeys: () => [...this.overrides.keys()],
      getOwnPropertyDescriptor: (_, key) => {
        const value = typeof key === 'string' ? this.overrides.get(key) : undefined;
        return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true };
      },
    }));
  }

  private spec(family: string, where: string): VariantFamilySpec {
    const spec = this.families.get(family);
    if (!spec) throw new Error(`${where}: no kernel variant family '${family}'; the families are ${this.names().join(', ')}`);
    return spec;
  }

  private setFrom(where: string, family: string, value: string | undefined): void {
    const spec = this.spec(family, where);
    if (value === undefined) {
      this.overrides.delete(family);
      return;
    }
    if (spec.candidates) {
      const names = Object.keys(spec.candidates);
      if (typeof value !== 'string' || !names.includes(value))
        throw new Error(`${where}.${family} is ${quote(value)}; it takes ${spec.noun ?? 'one of'}: ${names.join(', ')}`);
    } else {
      const wrong = typeof value === 'string' ? spec.check!(value) : 'is not a string';
      if (wrong) throw new Error(`${where}.${family}: ${quote(value)} ${wrong}`);
    }
    this.overrides.set(family, value);
  }
}

/** A value in an error message: a string in single quotes, anything else as JSON. */
const quote = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));
