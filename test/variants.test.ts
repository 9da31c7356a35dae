/**
 * The kernel variant registry (engine/variants.ts): every family registered on each engine with its
 * candidates and default rule, overrides checked by name and value (through `engine.variants` and
 * the `engine.prefer` view), per engine and never global, describe() saying which variant runs and
 * why (tuned shapes included), and each candidate forced on a small call of its op changing the
 * kernels that run (their pipeline keys, name|variant).
 */
import * as assert from 'uvu/assert';
import { backward, Engine, type Tensor } from '../entry/node.js';
import { batchNorm2d } from '../engine/ops/batchnorm.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { convTranspose2d } from '../engine/ops/conv-transpose.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { maxPool2d } from '../engine/ops/pool.js';
import { sumColumns } from '../engine/ops/reduce.js';
import { sum } from '../engine/ops/basic.js';
import { programKey } from '../engine/program.js';
import { VARIANT_FAMILIES, VariantRegistry, type VariantFamilyName, variantCandidates } from '../engine/variants.js';
import { suite } from './harness.js';
import { lavapipeSkip, randn, testEngine } from './gpu.js';

const t = suite('variants');

const FAMILIES = Object.keys(VARIANT_FAMILIES) as VariantFamilyName[];
const adapter = (description: string, isSoftware: boolean) => ({ vendor: '', architecture: '', device: '', description, isSoftware });

t('every family is registered on each engine with its candidates, each described in one line', async () => {
  const e = await testEngine();
  assert.equal(e.variants.names(), FAMILIES);
  for (const f of FAMILIES) {
    assert.equal(e.variants.candidates(f), variantCandidates(f));
    const d = e.variants.describe().find((r) => r.family === f)!;
    assert.ok(d.description.length > 0 && !d.description.includes('\n'), f);
    for (const c of d.candidates) assert.ok(c.description.length > 0 && !c.description.includes('\n'), `${f}.${c.name}`);
  }
  assert.equal(e.variants.candidates('conv2dTile'), [], 'a free-form family has no candidates');
});

t('default rules follow the adapter: hardware, lavapipe, SwiftShader', () => {
  const gpu = new VariantRegistry({ adapter: adapter('Some GPU', false), features: new Set(['subgroups']) });
  const gpuNoSg = new VariantRegistry({ adapter: adapter('Some GPU', false), features: new Set() });
  const lavapipe = new VariantRegistry({ adapter: { ...adapter('llvmpipe (LLVM 15.0.6, 256 bits)', true), vendor: 'mesa' }, features: new Set(['subgroups']) });
  const swiftshader = new VariantRegistry({ adapter: adapter('SwiftShader driver 5.0.0', true), features: new Set(['subgroups']) });
  const pick = (r: VariantRegistry) => Object.fromEntries(FAMILIES.map((f) => [f, r.choose(f)]));
  assert.equal(pick(gpu), {
    family: 'gpu', conv2d: 'workgroup', conv2dLanes: undefined, conv2dLanesInput: 'off', conv2dTiles: 'gpu', conv2dTile: undefined, depthwise: 'workgroup', depthwiseTiles: 'gpu',
    convTranspose: 'workgroup', convTransposeTiles: 'gpu', subgroups: 'on', bnReduce: 'workgroup', bnFuse: undefined, bnUnroll: '4', poolShape: 'unrolled',
  });
  assert.is(gpuNoSg.choose('subgroups'), 'off', 'no subgroups without the feature');
  const lavapipeNoSg = new VariantRegistry({ adapter: { ...adapter('llvmpipe (LLVM 15.0.6, 256 bits)', true), vendor: 'mesa' }, features: new Set() });
  assert.is(lavapipeNoSg.choose('conv2d'), 'register', "llvmpipe's lanes kernels need subgroups");
  assert.is(lavapipeNoSg.choose('conv2dLanesInput'), 'off', 'the lanes input gradient follows the lanes kernels');
  assert.is(lavapipeNoSg.choose('convTranspose'), 'register', "llvmpipe's lanes kernels need subgroups");
  assert.equal(pick(lavapipe), {
    family: 'llvmpipe', conv2d: 'lanes', conv2dLanes: undefined, conv2dLanesInput: 'on', conv2dTiles: 'llvmpipe', conv2dTile: undefined, depthwise: 'register', depthwiseTiles: 'llvmpipe',
    convTranspose: 'lanes', convTransposeTiles: 'llvmpipe', subgroups: 'off', bnReduce: 'serial', bnFuse: undefined, bnUnroll: '1', poolShape: 'rolled',
  });
  assert.equal(pick(swiftshader), {
    family: 'swiftshader', conv2d: 'register', conv2dLanes: undefined, conv2dLanesInput: 'off', conv2dTiles: 'swiftshader', conv2dTile: undefined, depthwise: 'register', depthwiseTiles: 'swiftshader',
    convTranspose: 'register', convTransposeTiles: 'swiftshader', subgroups: 'off', bnReduce: 'serial', bnFuse: undefined, bnUnroll: '4', poolShape: 'unrolled',
  });
  // Rules read the other choices: forcing the family moves every family-derived default with it.
  swiftshader.set('family', 'llvmpipe');
  assert.is(swiftshader.choose('conv2dTiles'), 'llvmpipe');
  assert.is(swiftshader.choose('poolShape'), 'rolled');
  assert.is(swiftshader.defaultOf('family'), 'swiftshader', 'defaultOf ignores the override');
  swiftshader.set('conv2d', 'lanes');
  assert.is(swiftshader.choose('conv2dLanesInput'), 'on', 'forcing the lanes kernels brings their input gradient');
  swiftshader.set('conv2d', undefined);
  swiftshader.set('conv2dTiles', 'gpu');
  assert.is(swiftshader.choose('conv2dTiles'), 'gpu', 'an override beats the rule');
});

t('a wrong family or value is refused, naming the family and what it takes; nothing changes then', async () => {
  const e = await testEngine();
  try {
    assert.throws(() => e.variants.set('conv2d', 'bogus'), /engine\.variants\.conv2d is 'bogus'; it takes one of: workgroup, register/);
    assert.throws(() => e.variants.set('conv2dTiles', 'cpu'), /engine\.variants\.conv2dTiles is 'cpu'; it takes a kernel family: swiftshader, llvmpipe, gpu/);
    assert.throws(() => e.variants.set('conv2dd', 'workgroup'), /engine\.variants: no kernel variant family 'conv2dd'; the families are family, conv2d, /);
    assert.throws(() => e.variants.choose('bogus'), /no kernel variant family 'bogus'/);
    assert.throws(() => e.variants.set('bnUnroll', '0'), /engine\.variants\.bnUnroll: '0' is not a whole number of groups/);
    assert.throws(() => e.variants.set('conv2dTile', 'forward=8x4'), /engine\.variants\.conv2dTile: 'forward=8x4' is not a list of GEMM=RxC@W/);
    // The same checks through engine.prefer (a typo there used to be ignored silently).
    assert.throws(() => (e.prefer.subgroups = 'yes' as never), /engine\.prefer\.subgroups is 'yes'; it takes one of: on, off/);
    assert.throws(() => ((e.prefer as Record<string, string>).bnreduce = 'serial'), /engine\.prefer: no kernel variant family 'bnreduce'/);
    assert.throws(() => ((e.prefer as Record<string, unknown>).bnFuse = 1), /engine\.prefer\.bnFuse is 1; it takes one of: fused, separate/);
    assert.equal(e.variants.overridden(), {}, 'no refused value was kept');
    // Accepted values, and the view reading and clearing them.
    e.prefer.bnReduce = 'chunked';
    e.variants.set('bnUnroll', '2');
    e.variants.set('conv2dTile', 'forward=8x4@16,filter=4x4@64');
    assert.equal({ ...e.prefer }, { bnReduce: 'chunked', bnUnroll: '2', conv2dTile: 'forward=8x4@16,filter=4x4@64' });
    assert.ok('bnReduce' in e.prefer && !('bnFuse' in e.prefer));
    assert.is(e.variants.override('bnReduce'), 'chunked');
    delete e.prefer.bnReduce;
    e.variants.set('bnUnroll', undefined);
    assert.equal(e.variants.overridden(), { conv2dTile: 'forward=8x4@16,filter=4x4@64' });
  } finally {
    e.variants.clear();
  }
});

t('overrides and families registered are per engine, not global', async () => {
  const base = await testEngine();
  const other = new Engine({ device: base.device, ownsDevice: false, adapter: base.adapter });
  try {
    other.variants.set('conv2d', 'workgroup');
    assert.is(base.variants.override('conv2d'), undefined);
    other.variants.register('demoKernel', { description: 'a demo choice', candidates: { a: 'first', b: 'second' }, default: () => 'a', rule: 'always a' });
    assert.is(other.variants.choose('demoKernel'), 'a');
    other.variants.set('demoKernel', 'b');
    assert.is(other.variants.choose('demoKernel'), 'b');
    assert.throws(() => other.variants.set('demoKernel', 'c'), /demoKernel is 'c'; it takes one of: a, b/);
    assert.throws(() => base.variants.choose('demoKernel'), /no kernel variant family 'demoKernel'/);
    assert.throws(() => other.variants.register('demoKernel', { description: 'again', candidates: { a: '' }, default: () => 'a', rule: '' }), /'demoKernel' is registered already/);
    assert.throws(() => other.variants.register('loose', { description: 'neither', default: () => null, rule: '' }), /needs either candidates or check/);
    // The autotuner's table is per engine too.
    other.tuned.set('conv2d.forward demo', '4x4@64');
    assert.is(base.tuned.has('conv2d.forward demo'), false);
    assert.is(other.variants.tuned, other.tuned);
  } finally {
    other.destroy();
  }
});

t('describe(): each family, its candidates, the chosen one and why (default rule, override, tuned shapes)', async () => {
  const e = await testEngine();
  const key = 'conv2d.forward 1x5x5x4>6 k3x3 s1x1 p1x1 d1x1 g1';
  try {
    let d = Object.fromEntries(e.variants.describe().map((r) => [r.family, r]));
    assert.equal(Object.keys(d), FAMILIES);
    assert.is(d.conv2d!.reason, 'default');
    assert.is(d.conv2d!.chosen, e.variants.defaultOf('conv2d'));
    assert.is(d.bnFuse!.chosen, undefined, 'decided per call');
    assert.match(d.bnFuse!.rule, /per call/);
    e.variants.set('conv2d', 'workgroup');
    e.tuned.set(key, '4x4@64');
    e.tuned.set('convTranspose2d.forward 1x4x4x8>8 k3x3 s2x2 p1x1 o7x7', '2x4');
    d = Object.fromEntries(e.variants.describe().map((r) => [r.family, r]));
    assert.equal({ chosen: d.conv2d!.chosen, reason: d.conv2d!.reason }, { chosen: 'workgroup', reason: 'override' });
    assert.equal(d.conv2d!.candidates.map((c) => c.name), e.variants.candidates('conv2d'));
    assert.equal(d.conv2d!.tuned, { [key]: '4x4@64' });
    assert.equal(Object.keys(d.convTranspose!.tuned), ['convTranspose2d.forward 1x4x4x8>8 k3x3 s2x2 p1x1 o7x7']);
    assert.equal(d.depthwise!.tuned, {});
    const text = e.variants.format();
    assert.match(text, /^conv2d: workgroup \(override; 1 shapes tuned\)$/m);
    assert.match(text, /^bnFuse: \(per call\) \(default: per call/m);
    assert.is(text.split('\n').length, FAMILIES.length);
  } finally {
    e.variants.clear();
    e.tuned.delete(key);
    e.tuned.delete('convTranspose2d.forward 1x4x4x8>8 k3x3 s2x2 p1x1 o7x7');
  }
});

// ---------------------------------------------------------------- forcing a candidate changes what runs

/** The pipeline keys (name|variant) of the kernels `fn` records on `e`. */
async function kernelsOf(e: Engine, fn: () => unknown): Promise<string[]> {
  const keys = new Set<string>();
  const run = e.run;
  e.run = function (this: Engine, p: Parameters<typeof run>[0]) {
    keys.add(programKey(p));
    return run.call(this, p);
  };
  try {
    await e.scope(async () => {
      fn();
      await e.flush();
    });
  } finally {
    delete (e as { run?: unknown }).run;
  }
  return [...keys].sort();
}

const tensor = (e: Engine, shape: number[], seed: number, grad = false): Tensor => {
  const x = e.tensor(Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), seed)), shape);
  x.requiresGrad = grad;
  return x;
};

/** A small call of the op each family steers (forward and backward where the family covers both). */
const PROBES: Record<VariantFamilyName, (e: Engine) => void> = {
  family: (e) => backward(sum(conv2d(tensor(e, [2, 5, 5, 4], 1, true), tensor(e, [6, 3, 3, 4], 2, true), null, { padding: 1 }))),
  conv2d: (e) => backward(sum(conv2d(tensor(e, [2, 5, 5, 4], 1, true), tensor(e, [6, 3, 3, 4], 2, true), null, { padding: 1 }))),
  conv2dTiles: (e) => withRegister(e, 'conv2d', () => backward(sum(conv2d(tensor(e, [2, 5, 5, 4], 1, true), tensor(e, [6, 3, 3, 4], 2, true), null, { padding: 1 })))),
  conv2dTile: (e) => withRegister(e, 'conv2d', () => void conv2d(tensor(e, [2, 5, 5, 4], 1), tensor(e, [6, 3, 3, 4], 2), null, { padding: 1 })),
  conv2dLanes: (e) => void conv2d(tensor(e, [2, 5, 5, 4], 1), tensor(e, [6, 3, 3, 4], 2), null, { padding: 1 }), // (PROBE_CONTEXT)
  conv2dLanesInput: (e) => backward(sum(conv2d(tensor(e, [2, 5, 5, 4], 1, true), tensor(e, [6, 3, 3, 4], 2, true), null, { padding: 1 }))),
  depthwise: (e) => void depthwiseConv2d(tensor(e, [1, 9, 9, 8], 3), tensor(e, [3, 3, 8], 4), null, { padding: 1 }),
  depthwiseTiles: (e) => withRegister(e, 'depthwise', () => backward(sum(depthwiseConv2d(tensor(e, [1, 9, 9, 8], 3, true), tensor(e, [3, 3, 8], 4, true), null, { padding: 1, stride: 2 })))),
  convTranspose: (e) => void convTranspose2d(tensor(e, [1, 4, 4, 8], 5), tensor(e, [8, 3, 3, 8], 6), null, { stride: 2, padding: 1 }),
  convTransposeTiles: (e) => withRegister(e, 'convTranspose', () => backward(sum(convTranspose2d(tensor(e, [1, 4, 4, 8], 5, true), tensor(e, [8, 3, 3, 8], 6, true), null, { stride: 2, padding: 1 })))),
  subgroups: (e) => void sumColumns(tensor(e, [300, 8], 7)),
  bnReduce: (e) => bn(e),
  bnFuse: (e) => bn(e),
  bnUnroll: (e) => bn(e),
  poolShape: (e) => void maxPool2d(tensor(e, [1, 7, 9, 4], 8), { kernel: 3, stride: 2, padding: 1 }),
};

/** `fn` with `family` forced to `value`, then the override it had before. */
function forcing(e: Engine, family: 'conv2d' | 'depthwise' | 'convTranspose', value: string, fn: () => void): void {
  const before = e.variants.override(family);
  e.variants.set(family, value);
  try {
    fn();
  } finally {
    e.variants.set(family, before);
  }
}

/**
 * `fn` with `kind` forced to its register kernels: what the *Tiles and conv2dTile families choose
 * among. Without it the adapter's kernel kind (workgroup GEMMs on GPUs, conv2d's lanes on llvmpipe)
 * would run and the tiles' default could not be compared with forcing the same tiles.
 */
const withRegister = (e: Engine, kind: 'conv2d' | 'depthwise' | 'convTranspose', fn: () => void): void => forcing(e, kind, 'register', fn);

/**
 * Overrides a family's probe runs under, set for its whole test so that the default rule sees them
 * too: conv2dLanes and conv2dLanesInput refine the conv2d lanes kernels (and conv2dLanesInput's
 * rule follows conv2d's choice).
 */
const PROBE_CONTEXT: Partial<Record<VariantFamilyName, { conv2d: string }>> = { conv2dLanes: { conv2d: 'lanes' }, conv2dLanesInput: { conv2d: 'lanes' } };

function bn(e: Engine): void {
  const gamma = tensor(e, [8], 10, true);
  const beta = tensor(e, [8], 11, true);
  const mean = e.tensor(new Float32Array(8), [8]);
  const variance = e.tensor(Float32Array.from({ length: 8 }, () => 1), [8]);
  backward(sum(batchNorm2d(tensor(e, [2, 3, 4, 8], 9, true), gamma, beta, mean, variance, { training: true, act: 'relu' })));
}

/**
 * Candidates whose kernels may coincide on these probes, not compared: depthwise and transposed
 * convolutions have one register-tile table for SwiftShader and GPUs (only llvmpipe's differs);
 * conv2d's llvmpipe tiles are the GPUs' 4x4@64 below 1e8 FLOPs (a larger probe would compile
 * SwiftShader's 16x16 tiles for seconds).
 */
const MAY_COINCIDE: Partial<Record<VariantFamilyName, string[][]>> = {
  depthwiseTiles: [['swiftshader', 'gpu']],
  convTransposeTiles: [['swiftshader', 'gpu']],
  conv2dTiles: [['llvmpipe', 'gpu']],
};

/** The explicit value each free-form family is probed with (bnUnroll: '2'). */
const FREE_FORM_VALUE: Partial<Record<VariantFamilyName, string>> = { conv2dTile: 'forward=8x4@16', conv2dLanes: 'lanes1x4s1@8' };

/** Candidates not forced in the lavapipe run: those test/gpu.ts's forKernelMode skips there (checked on SwiftShader). */
const slowOnLavapipe = (family: VariantFamilyName, value: string): boolean => lavapipeSkip({ family, value }) !== undefined;

for (const family of FAMILIES) {
  const free = variantCandidates(family).length === 0;
  t(`forcing each candidate of ${family} changes the kernels its op runs${free ? ' (free-form: an explicit value against the default)' : ''}`, async () => {
    const e = await testEngine();
    if (family === 'subgroups' && !e.features.has('subgroups')) return; // 'on' cannot add the feature
    const values: string[] = free ? [FREE_FORM_VALUE[family] ?? '2'] : e.variants.candidates(family).filter((v) => !slowOnLavapipe(family, v));
    const runs = new Map<string, string>();
    const context = PROBE_CONTEXT[family];
    if (context) e.variants.set('conv2d', context.conv2d);
    try {
      for (const value of values) {
        e.variants.set(family, value);
        runs.set(value, (await kernelsOf(e, () => PROBES[family](e))).join(' '));
        e.variants.set(family, undefined);
      }
      const ran = (await kernelsOf(e, () => PROBES[family](e))).join(' ');
      if (free) assert.is.not(runs.get(values[0]!), ran, `${family}=${values[0]} ran the default kernels`);
      const alike = MAY_COINCIDE[family] ?? [];
      for (const [a, ka] of runs)
        for (const [b, kb] of runs)
          if (a < b && !alike.some((group) => group.includes(a) && group.includes(b)))
            assert.is.not(ka, kb, `${family}: ${a} and ${b} ran the same kernels: ${ka}`);
      // The default runs what forcing its candidate runs (the rule and the override agree).
      const dflt = e.variants.defaultOf(family);
      if (dflt !== undefined && runs.has(dflt)) assert.is(runs.get(dflt), ran, `${family}: the default ${dflt} against forcing it`);
    } finally {
      e.variants.set(family, undefined);
      if (context) e.variants.set('conv2d', undefined);
    }
  });
}

t.run();
