/**
 * conv2d forward and backward against the float64 reference in test/ref/conv.ts.
 *
 * Tolerances: forward f32 relative error < 1e-4, measured with a floor of 1e-2 * max|y| in the
 * denominator (outputs near zero come from cancelling sums of K terms each about max|y| / K in
 * size; f32 rounding leaves them ~1e-7 * max|y| * sqrt(K) off, which a 1e-3 floor would call a
 * 1e-4 "relative" error for K in the hundreds). Gradients: < 1e-3 against central differences of
 * the reference (gradCheck).
 *
 * Both tile classes run on every adapter: the GPU tiles (4x4) over the whole shape matrix, the CPU
 * tiles (what SwiftShader uses: small ones under 1e8 FLOPs, and the large production ones forced
 * on a few cases, since their pipelines take seconds to compile on SwiftShader).
 */
import * as assert from 'uvu/assert';
import { Engine, ShapeError, backward } from '../entry/node.js';
import { type Conv2dOptions, conv2d, conv2dOutputSize } from '../engine/ops/conv2d.js';
import { kernelFamily } from '../engine/device-common.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine, forKernelMode, kernelModes, useKernelMode, withVariants, kernelsRun } from './gpu.js';
import type { VariantFamilyName } from '../engine/variants.js';
import { gradCheck } from './gradcheck.js';
import { refConv2d, refConv2dBackward } from './ref/conv.js';
import { type Conv2dCase, CONV2D_FORWARD, CONV2D_FORWARD_SEED, CONV2D_GRADS, CONV2D_GRADS_SEED, checkConv2dForward, checkConv2dGrads, describeConv2d } from './cases/conv2d.js';
import { f32Round, maxAbs, sizeOf } from './cases/common.js';
import { add, sum } from '../engine/ops/basic.js';
import { cast } from '../engine/ops/half.js';
import type { Tensor } from '../engine/tensor.js';

const t = suite('conv2d');
const testEngine0 = await testEngine();

type Case = Conv2dCase;
const size = sizeOf;
const FORWARD = CONV2D_FORWARD;
const GRADS = CONV2D_GRADS;

/** The float64-reference checks of the shared table (test/cases/conv2d.ts), asserting only. */
async function checkForward(e: Engine, c: Case, seed: number): Promise<void> {
  await checkConv2dForward(e, c, seed);
}
async function checkGrads(e: Engine, c: Case, seed: number, maxElements = 48): Promise<void> {
  await checkConv2dGrads(e, c, seed, maxElements);
}


t('float64 reference matches hand-computed convolutions', () => {
  // 3x3 ramp, 2x2 kernel [1, 0; 0, -1]: every output is x[i][j] - x[i+1][j+1] = -4.
  const a = refConv2d([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 3, 1], [1, 0, 0, -1], [1, 2, 2, 1], null);
  assert.equal(a.shape, [1, 2, 2, 1]);
  assert.equal(Array.from(a.data), [-4, -4, -4, -4]);
  // Stride 2 picks x at (0,0), (0,2), (2,0), (2,2) of a 4x4 ramp; a 1x1 weight of 2 doubles them.
  const b = refConv2d(Array.from({ length: 16 }, (_, i) => i), [1, 4, 4, 1], [2], [1, 1, 1, 1], null, { stride: 2 });
  assert.equal(Array.from(b.data), [0, 4, 16, 20]);
  // 1x3 row, two groups of one channel, kernel 1x3 dilated by 2 with padding 1: only the middle
  // tap lands inside (iw = -1 + 2*kw), so y = [x(1,c0) * a1 + 10, x(1,c1) * b1 + 20] = [3*2 + 10, 4*5 + 20].
  const c = refConv2d([1, 2, 3, 4, 5, 6], [1, 1, 3, 2], [1, 2, 3, 4, 5, 6], [2, 1, 3, 1], [10, 20], { groups: 2, dilation: [1, 2], padding: [0, 1] });
  assert.equal(c.shape, [1, 1, 1, 2]);
  assert.equal(Array.from(c.data), [16, 40]);
});

t('conv2dOutputSize follows floor((H + 2p - d(k-1) - 1)/s) + 1 and rejects empty outputs', () => {
  assert.equal(conv2dOutputSize(33, 17, 3, 3, { stride: 2, padding: 1 }), [17, 9]);
  assert.equal(conv2dOutputSize(7, 9, 3, 3, { dilation: 2 }), [3, 5]);
  assert.equal(conv2dOutputSize(7, 9, 1, 1), [7, 9]);
  assert.equal(conv2dOutputSize(9, 7, 2, 3, { stride: [2, 1], padding: [1, 0], dilation: [1, 2] }), [5, 3]);
  assert.throws(() => conv2dOutputSize(3, 3, 5, 5), (e: Error) => e instanceof ShapeError && /conv2d: .*empty output -1x-1/.test(e.message));
  assert.throws(() => conv2dOutputSize(0, 3, 1, 1), /conv2d: input height must be a positive integer, got 0/);
  assert.throws(() => conv2dOutputSize(3, 3, 1, -1), /conv2d: kernel width must be a positive integer, got -1/);
});

/**
 * SwiftShader's large unrolled tiles (16x16 to 32x16) take 13-100 s each to compile on a cold
 * lavapipe (LLVM): their code is checked on SwiftShader, where it runs; under
 * CANET_SOFTWARE_GPU=lavapipe those tests are counted as skipped.
 */
const tCpuTiles = forKernelMode(t, 'swiftshader');

/** Runs `fn` with `prefer` set on the engine's variants (kernel choices are per engine), then unset. */
const withPrefer = (e: Engine, prefer: { [F in VariantFamilyName]?: string }, fn: () => Promise<void>): Promise<void> => withVariants(e, prefer, fn);

/**
 * The kernel classes the forward and gradient tests run: the engine's defaults (null), then every
 * other candidate of the conv2dTiles and conv2d variants (engine/variants.ts): the register tiles
 * of the other adapter families, the workgroup-memory tiles of conv2d-workgroup.ts.
 */
const FAMILIES = ['conv2dTiles', 'conv2d'] as const;

for (const mode of kernelModes(await testEngine(), ...FAMILIES)) {
  const tt = forKernelMode(t, mode);
  const cls = mode ? `${mode.family}=${mode.value}` : 'default';
  const withTiles = async (e: Engine, fn: () => Promise<void>): Promise<void> => {
    useKernelMode(e, mode, FAMILIES);
    try {
      await fn();
    } finally {
      useKernelMode(e, null, FAMILIES);
    }
  };
  tt(`forward matches float64 (rel err < 1e-4), ${cls} tiles`, async () => {
    const e = await testEngine();
    await withTiles(e, async () => {
      for (const [k, c] of FORWARD.entries()) await checkForward(e, c, CONV2D_FORWARD_SEED + k);
    });
  });

  tt(`gradients of x, w and bias vs finite differences (< 1e-3), ${cls} tiles`, async () => {
    const e = await testEngine();
    await withTiles(e, async () => {
      for (const [k, c] of GRADS.entries()) await checkGrads(e, c, CONV2D_GRADS_SEED + k);
    });
  });
}

tCpuTiles('large CPU tiles with partial edges: forward and gradients', async () => {
  const e = await testEngine();
  // The tiles SwiftShader uses above 1e8 FLOPs (16x32 pixel x channel tiles, 32x16 filter tiles).
  // Co = 40 and Ci = 36 leave partial channel tiles, 7x9 pixels a partial pixel tile.
  await withPrefer(e, { conv2dTile: 'forward=16x32@16,input=16x32@16,filter=32x16@16' }, async () => {
    const c: Case = { x: [2, 7, 9, 36], w: [40, 3, 3, 36], opts: { stride: 1, padding: 1 }, bias: true };
    await checkForward(e, c, 300);
    await checkGrads(e, c, 301, 64);
  });
});

tCpuTiles('the 1x1 CPU forward tile (32 pixels x 16 channels) with partial edges', async () => {
  const e = await testEngine();
  // What SwiftShader uses for 1x1 convolutions above 1e8 FLOPs; 5x7x3 = 105 pixels and Co = 20
  // leave partial tiles on both sides.
  await withPrefer(e, { conv2dTile: 'forward=32x16@16,input=8x8@16,filter=8x8@16' }, async () => {
    await checkForward(e, { x: [3, 5, 7, 24], w: [20, 1, 1, 24], opts: {}, bias: true }, 310);
    await checkForward(e, { x: [1, 9, 5, 12], w: [36, 1, 1, 12], opts: { stride: 2 }, bias: false }, 311);
  });
});

/** The variants of a kernel kind for the gradient tests ('lanes' takes the stride-1 input gradient too: conv2dLanesInput's rule). */
const kindVariants = (kind: 'register' | 'lanes'): { conv2d: string } => ({ conv2d: kind });

t('lanes forward (conv2d-lanes.ts): named tiles with partial pixel and channel blocks, with and without subgroup broadcasts, against float64', async () => {
  const e = await testEngine();
  const broadcast = e.features.has('subgroups') ? ['lanes2x16s4@32', 'lanes1x32s4@64', 'lanes2x8s4@8'] : [];
  // 2x7x9 = 126 pixels and Co = 40 leave partial blocks on both sides; Ci/groups = 3 and Co/groups
  // = 5 take the scalar paths; a 1x1 stride 2 and a dilated 5x5 window.
  const cases: Case[] = [
    { x: [2, 7, 9, 36], w: [40, 3, 3, 36], opts: { padding: 1 }, bias: true },
    { x: [1, 9, 5, 12], w: [36, 1, 1, 12], opts: { stride: 2 }, bias: false },
    { x: [3, 5, 7, 6], w: [10, 3, 3, 3], opts: { groups: 2, padding: 1 }, bias: true },
    { x: [1, 11, 10, 8], w: [12, 5, 5, 8], opts: { stride: 2, padding: 3, dilation: 2 }, bias: false },
  ];
  for (const tile of ['lanes3x8s1@16', 'lanes1x4s1@8', ...broadcast])
    await withPrefer(e, { conv2d: 'lanes', conv2dLanes: tile }, async () => {
      for (const [k, c] of cases.entries()) await checkForward(e, c, 320 + k);
    });
  // The default tile (broadcasts where the adapter has subgroups), and that it is what ran.
  await withPrefer(e, { conv2d: 'lanes' }, async () => {
    for (const [k, c] of cases.entries()) await checkForward(e, c, 330 + k);
    const x = e.tensor(randn(2 * 5 * 5 * 8, 1), [2, 5, 5, 8]);
    const w = e.tensor(randn(6 * 3 * 3 * 8, 2), [6, 3, 3, 8]);
    try {
      assert.equal(kernelsRun(e, () => conv2d(x, w, null, { padding: 1 }).dispose()), ['conv2d_forward[lanes]']);
      // A malformed tile is refused when set, naming the family; a well-formed one the device cannot run, at the call.
      assert.throws(() => e.variants.set('conv2dLanes', 'lanes9'), /conv2dLanes.*'lanes9'.*not a lanes tile/);
      // A broadcast wider than the smallest subgroup this device promises is refused, not run wrongly.
      await withPrefer(e, { conv2dLanes: 'lanes1x16s64@64' }, async () => {
        assert.throws(() => conv2d(x, w, null), /is not a lanes tile this device runs/);
      });
    } finally {
      x.dispose();
      w.dispose();
    }
  });
});

t('lanes input gradient (w read flipped and transposed in the kernel): named tiles, awkward shapes, the whole dx against float64, and finite differences', async () => {
  const e = await testEngine();
  const broadcast = e.features.has('subgroups') ? ['lanes2x16s4@32', 'lanes1x8s4@8'] : [];
  // Stride 1 throughout: Co = 40 and 20 (vec4 along gy) against 5 and 10/2 (scalar); Ci/groups =
  // 36, 17, 12, 3 (partial channel blocks, scalar stores); a 2x3 window with uneven padding and
  // dilation (the flip must mirror each axis on its own), a dilated 5x5, a 1x1, groups 2, odd sizes.
  const cases: Case[] = [
    { x: [2, 7, 9, 36], w: [40, 3, 3, 36], opts: { padding: 1 }, bias: false },
    { x: [2, 6, 7, 17], w: [20, 2, 3, 17], opts: { padding: [1, 0], dilation: [1, 2] }, bias: false },
    { x: [1, 9, 5, 12], w: [5, 1, 1, 12], opts: {}, bias: false },
    { x: [3, 5, 7, 6], w: [10, 3, 3, 3], opts: { groups: 2, padding: 1 }, bias: false },
    { x: [1, 11, 10, 8], w: [12, 5, 5, 8], opts: { padding: 3, dilation: 2 }, bias: false },
  ];
  const dxOf = async (c: Case, seed: number): Promise<void> => {
    const xd = f32Round(randn(size(c.x), seed));
    const wd = f32Round(randn(size(c.w), seed + 1));
    const ref = refConv2d(xd, c.x, wd, c.w, null, c.opts);
    const gyd = f32Round(randn(ref.data.length, seed + 2));
    const want = refConv2dBackward(xd, c.x, wd, c.w, gyd, c.opts).dx;
    await e.scope(async () => {
      const x = e.tensor(Float32Array.from(xd), c.x);
      x.requiresGrad = true;
      const y = conv2d(x, e.tensor(Float32Array.from(wd), c.w), null, c.opts);
      const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(Float32Array.from(gyd), y.shape) })).filter((n) => n.startsWith('conv2d'));
      assert.equal(ran, ['conv2d_backward_input[lanes]'], `${describeConv2d(c)}: one lanes kernel, no weight flip`);
      expectClose(await x.grad!.read(), want, 1e-4, `dx of ${describeConv2d(c)}`, 1e-2 * maxAbs(want));
    });
  };
  for (const tile of ['lanes3x8s1@16', 'lanes1x4s1@8', ...broadcast])
    await withPrefer(e, { conv2d: 'lanes', conv2dLanes: tile }, async () => {
      for (const [k, c] of cases.entries()) await dxOf(c, 340 + 3 * k);
    });
  await withPrefer(e, { conv2d: 'lanes' }, async () => {
    for (const [k, c] of cases.entries()) await dxOf(c, 360 + 3 * k);
    for (const [k, c] of cases.entries()) await checkGrads(e, c, 380 + k);
    // Padding wider than the dilated window (a 1x1 padded by 1) is no forward of gy: the register kernel takes it.
    const c: Case = { x: [2, 5, 7, 8], w: [6, 1, 1, 8], opts: { padding: 1 }, bias: true };
    await checkGrads(e, c, 390);
    await e.scope(async () => {
      const x = e.tensor(randn(size(c.x), 391), c.x);
      x.requiresGrad = true;
      const y = conv2d(x, e.tensor(randn(size(c.w), 392), c.w), null, c.opts);
      assert.equal(kernelsRun(e, () => backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(1), y.shape) })).filter((n) => n.startsWith('conv2d')), ['conv2d_backward_input']);
    });
  });
});

t('lanes kernels: the llvmpipe family\'s default for the forward and both gradients (with subgroups); prefer register, conv2dLanesInput off, the other families and forced tiles keep the register kernels', async () => {
  const e = await testEngine();
  const x = e.tensor(randn(1 * 5 * 5 * 8, 3), [1, 5, 5, 8]);
  const w = e.tensor(randn(8 * 3 * 3 * 8, 4), [8, 3, 3, 8]);
  const forward = (): string[] => kernelsRun(e, () => conv2d(x, w, null, { padding: 1 }).dispose());
  try {
    await withPrefer(e, { family: 'llvmpipe' }, async () => {
      assert.equal(forward(), [e.features.has('subgroups') ? 'conv2d_forward[lanes]' : 'conv2d_forward']);
      // Gradients: both lanes forms by default; conv2dLanesInput 'off' gives the register input gradient back.
      const xg = e.tensor(randn(1 * 5 * 5 * 8, 5), [1, 5, 5, 8]);
      const wg = e.tensor(randn(8 * 3 * 3 * 8, 6), [8, 3, 3, 8]);
      xg.requiresGrad = wg.requiresGrad = true;
      try {
        const grads = (): string[] => {
          const y = conv2d(xg, wg, null, { padding: 1 });
          const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(1), y.shape) })).filter((n) => n.startsWith('conv2d'));
          for (const t of [xg, wg]) {
            t.grad?.dispose();
            t.grad = null;
          }
          return ran.sort();
        };
        assert.equal(grads(), e.features.has('subgroups') ? ['conv2d_backward_filter[lanes]', 'conv2d_backward_input[lanes]'] : ['conv2d_backward_filter', 'conv2d_backward_input']);
        await withPrefer(e, { conv2dLanesInput: 'off' }, async () =>
          assert.equal(grads(), e.features.has('subgroups') ? ['conv2d_backward_filter[lanes]', 'conv2d_backward_input'] : ['conv2d_backward_filter', 'conv2d_backward_input']));
      } finally {
        for (const t of [xg, wg]) {
          t.grad?.dispose();
          t.dispose();
        }
      }
    });
    // A measured tile for the shape (engine.tuned) replaces the lanes default, as any conv2d default.
    const key = 'conv2d.forward 1x5x5x8>8 k3x3 s1x1 p1x1 d1x1 g1';
    e.tuned.set(key, '4x4@64');
    try {
      await withPrefer(e, { family: 'llvmpipe' }, async () => assert.equal(forward(), ['conv2d_forward']));
      await withPrefer(e, { family: 'llvmpipe', conv2d: 'lanes' }, async () => assert.equal(forward(), ['conv2d_forward[lanes]'], 'forcing lanes beats the tuned tile'));
    } finally {
      e.tuned.delete(key);
    }
    await withPrefer(e, { family: 'llvmpipe', conv2d: 'register' }, async () => assert.equal(forward(), ['conv2d_forward']));
    await withPrefer(e, { family: 'llvmpipe', conv2dTiles: 'llvmpipe' }, async () => assert.equal(forward(), ['conv2d_forward']));
    await withPrefer(e, { family: 'swiftshader' }, async () => assert.equal(forward(), ['conv2d_forward']));
  } finally {
    x.dispose();
    w.dispose();
  }
});

t('lanes forward with every epilogue layout, channel slices and f16 operands: the register kernel\'s numbers', async () => {
  const e = await testEngine();
  const tensor = (shape: number[], seed: number): Tensor => e.tensor(Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), seed)), shape);
  await e.scope(async () => {
    const shape = [2, 6, 5, 8];
    const x = tensor(shape, 400);
    const w = tensor([8, 3, 3, 8], 401);
    const affine = tensor([2, 8], 402);
    const bias = tensor([8], 403);
    const residual = tensor(shape, 404);
    const fca = { as: tensor([2, 6, 5, 1], 405), ac: tensor([2, 8], 406) };
    const x12 = tensor([2, 6, 5, 12], 411);
    /** [name, call]: each returns the tensor it wrote. */
    const calls: [string, () => Tensor][] = [
      ['affine relu', () => conv2d(x, w, null, { padding: 1 }, { affine, act: 'relu' })],
      ['affine relu6 residual', () => conv2d(x, w, null, { padding: 1 }, { affine, act: 'relu6', residual })],
      ['affine sigmoid fca', () => conv2d(x, w, null, { padding: 1 }, { affine, act: 'sigmoid', fca })],
      ['bias residual', () => conv2d(x, w, bias, { padding: 1 }, { residual })],
      ['into offset 8', () => conv2d(x, w, null, { padding: 1 }, { affine, into: { tensor: tensor([2, 6, 5, 20], 412), channelOffset: 8 } })],
      ['into offset 3 (scalar stores)', () => conv2d(x, w, bias, { padding: 1 }, { act: 'relu', into: { tensor: tensor([2, 6, 5, 11], 413), channelOffset: 3 } })],
      ['outputChannels [8, 8]', () => conv2d(x, tensor([16, 1, 1, 8], 407), null, { outputChannels: [8, 8] }, { affine: tensor([2, 16], 408), act: 'relu' })],
      ['inputChannels [4, 8] stride 2', () => conv2d(x12, tensor([5, 3, 3, 8], 409), tensor([5], 410), { inputChannels: [4, 8], padding: 1, stride: 2 })],
    ];
    if (e.features.has('shader-f16')) {
      calls.push(['f16 x and w, affine relu', () => conv2d(cast(x, 'f16'), cast(w, 'f16'), null, { padding: 1 }, { affine, act: 'relu' })]);
      calls.push(['f16 x and w, residual', () => conv2d(cast(x, 'f16'), cast(w, 'f16'), bias, { padding: 1 }, { residual: cast(residual, 'f16') })]);
    }
    for (const [name, call] of calls) {
      const run = async (prefer: Record<string, string>): Promise<Float32Array> => {
        let out: Float32Array | undefined;
        await withPrefer(e, prefer, async () => {
          const y = e.noGrad(call);
          out = (y.dtype === 'f16' ? await e.noGrad(() => cast(y, 'f32')).read() : await y.read()) as Float32Array;
        });
        return out!;
      };
      const ref = await run({ conv2d: 'register' });
      const got = await run({ conv2d: 'lanes' });
      expectClose(got, ref, name.startsWith('f16') ? 2e-3 : 1e-5, `lanes vs register: ${name}`, name.startsWith('f16') ? 1e-2 : 1e-5);
    }
  });
});

t('forced tiles are per engine: engine.prefer.conv2dTiles names a family and conv2dTile explicit tiles; nonsense in either is refused by name', async () => {
  const e = await testEngine();
  const x = e.tensor(randn(2 * 5 * 5 * 4, 1), [2, 5, 5, 4]);
  const w = e.tensor(randn(6 * 3 * 3 * 4, 2), [6, 3, 3, 4]);
  try {
    // Refused when set (it used to be when a conv2d ran), and nothing is forced then.
    assert.throws(() => (e.prefer.conv2dTiles = 'bogus' as never), /engine\.prefer\.conv2dTiles is 'bogus'; it takes a kernel family: swiftshader, llvmpipe, gpu/);
    assert.throws(() => (e.prefer.conv2dTile = 'forward=16by32'), /engine\.prefer\.conv2dTile: 'forward=16by32' is not a list of GEMM=RxC@W/);
    assert.equal(e.variants.overridden(), {});
    // The same call with explicit tiles and with the family's: other kernels, the same numbers.
    const variants: string[] = [];
    const run = e.run;
    e.run = function (this: typeof e, p: Parameters<typeof run>[0]) {
      // (The adapter's default may be the lanes kernel: llvmpipe.)
      if (p.name.startsWith('conv2d_forward')) variants.push(`${p.name}|${p.variant ?? ''}`);
      return run.call(this, p);
    };
    try {
      const ref = await e.scope(() => conv2d(x, w, null, { padding: 1 }).read());
      await withPrefer(e, { conv2dTile: 'forward=8x4@16' }, async () => {
        expectClose(await e.scope(() => conv2d(x, w, null, { padding: 1 }).read()), ref, 1e-5, 'explicit 8x4 tile');
      });
      // Another family than the engine's own (small tiles: a quick compile on either adapter).
      const other = kernelFamily(e) === 'swiftshader' ? 'llvmpipe' : 'swiftshader';
      await withPrefer(e, { conv2dTiles: other }, async () => {
        expectClose(await e.scope(() => conv2d(x, w, null, { padding: 1 }).read()), ref, 1e-5, `${other} tiles`);
      });
    } finally {
      delete (e as { run?: unknown }).run;
    }
    assert.is(variants.length, 3);
    assert.is(new Set(variants).size, 3, `the forced tiles ran the kernels asked for: ${variants.join(' | ')}`);
  } finally {
    x.dispose();
    w.dispose();
  }
});

forKernelMode(t, 'workgroup')('kernel choice: workgroup GEMMs by default on GPUs, register tiles on CPU adapters; engine.prefer.conv2d and a tuned variant override', async () => {
  const base = await testEngine();
  const gpu = new Engine({ device: base.device, ownsDevice: false, adapter: { ...base.adapter, isSoftware: false } });
  /** The kernels of one forward and backward (x, w requiring grad) on engine `e`. */
  const ran = (e: Engine): Promise<string[]> => e.scope(async () => {
    const x = e.tensor(Float32Array.from(randn(2 * 6 * 5 * 4, 1)), [2, 6, 5, 4]);
    const w = e.tensor(Float32Array.from(randn(8 * 3 * 3 * 4, 2)), [8, 3, 3, 4]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const names = kernelsRun(e, () => backward(sum(conv2d(x, w, null, { padding: 1 }))));
    await e.sync();
    return names.filter((n) => n.startsWith('conv2d'));
  });
  const workgroup = ['conv2d_wg_forward', 'conv2d_wg_backward_input', 'conv2d_wg_backward_filter'];
  const register = ['conv2d_forward', 'conv2d_backward_input', 'conv2d_backward_filter'];
  assert.equal((await ran(gpu)).sort(), [...workgroup].sort(), 'GPU default');
  assert.equal((await ran(base)).sort(), [...register].sort(), 'CPU adapter default');
  gpu.prefer.conv2d = 'register';
  assert.equal((await ran(gpu)).sort(), [...register].sort(), 'prefer register on a GPU');
  base.prefer.conv2d = 'workgroup';
  try {
    assert.equal((await ran(base)).sort(), [...workgroup].sort(), 'prefer workgroup on a CPU adapter');
  } finally {
    delete base.prefer.conv2d;
  }
  // A tuned workgroup tile selects that kernel; one the engine cannot run (not a power of two) is ignored.
  const key = 'conv2d.forward 2x6x5x4>8 k3x3 s1x1 p1x1 d1x1 g1';
  try {
    base.tuned.set(key, 'wg32x32k16t4x4');
    assert.ok((await ran(base)).includes('conv2d_wg_forward'), 'tuned workgroup tile');
    base.tuned.set(key, 'wg24x32k16t4x4');
    assert.ok((await ran(base)).includes('conv2d_forward'), 'unusable tuned tile falls back to the default');
  } finally {
    base.tuned.delete(key);
  }
});

for (const kind of ['register', 'lanes'] as const) t(`filter gradient split into chunks (summed by sumColumns) and in one chunk, ${kind} kernels`, () => withPrefer(testEngine0, kindVariants(kind), async () => {
  const e = testEngine0;
  const filter = kind === 'lanes' ? 'conv2d_backward_filter[lanes]' : 'conv2d_backward_filter';
  // 2 x 16 x 16 output pixels and one small tile: the reduction is split; a 1x1x2 output is not.
  const c: Case = { x: [2, 16, 16, 3], w: [4, 3, 3, 3], opts: { padding: 1 }, bias: false };
  const names = await e.scope(async () => {
    const x = e.tensor(Float32Array.from(randn(size(c.x), 1)), c.x);
    const w = e.tensor(Float32Array.from(randn(size(c.w), 2)), c.w);
    w.requiresGrad = true;
    const y = conv2d(x, w, null, c.opts);
    const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(1), y.shape) }));
    assert.not.ok(x.grad, 'no gradient for an input that does not require grad');
    // dL/dw[co, kh, kw, ci] with gy = 1 is the sum of x over the tap's window: check one entry.
    const xd = Float32Array.from(randn(size(c.x), 1));
    const want = new Float64Array(size(c.w));
    for (let n = 0; n < 2; n++)
      for (let oh = 0; oh < 16; oh++)
        for (let ow = 0; ow < 16; ow++)
          for (let kh = 0; kh < 3; kh++)
            for (let kw = 0; kw < 3; kw++) {
              const ih = oh - 1 + kh;
              const iw = ow - 1 + kw;
              if (ih < 0 || ih >= 16 || iw < 0 || iw >= 16) continue;
              for (let ci = 0; ci < 3; ci++)
                for (let co = 0; co < 4; co++) want[((co * 3 + kh) * 3 + kw) * 3 + ci] += xd[((n * 16 + ih) * 16 + iw) * 3 + ci]!;
            }
    assert.equal([...w.grad!.shape], c.w, 'gradient has the weight shape');
    expectClose(await w.grad!.read(), want, 1e-5, 'chunked dW');
    return ran;
  });
  // The partial sums need a reduction pass after the filter-gradient kernel.
  assert.ok(names[0] === filter && names.length >= 2, `chunked path ran: ${names}`);
  assert.not.ok(names.some((n) => n.startsWith('conv2d_backward_input') || n.startsWith('conv2d_forward')), `no input gradient computed: ${names}`);
  const single = await e.scope(async () => {
    const x = e.tensor(Float32Array.from([1, 2, 3, 4]), [1, 1, 2, 2]);
    const w = e.tensor(Float32Array.from([1, 1]), [1, 1, 1, 2]);
    w.requiresGrad = true;
    const y = conv2d(x, w, null);
    const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(Float32Array.from([1, 10]), y.shape) }));
    assert.equal(Array.from(await w.grad!.read()), [1 + 30, 2 + 40]);
    return ran;
  });
  assert.equal(single, [filter], 'one chunk: no reduction pass');
}));

for (const kind of ['register', 'lanes'] as const) t(`only the gradients that are required are computed; bias gradient is sumColumns(gy), ${kind} kernels`, () => withPrefer(testEngine0, kindVariants(kind), async () => {
  const e = testEngine0;
  await e.scope(async () => {
    const x = e.tensor(Float32Array.from(randn(2 * 5 * 5 * 4, 7)), [2, 5, 5, 4]);
    const w = e.tensor(Float32Array.from(randn(8 * 3 * 3 * 4, 8)), [8, 3, 3, 4]);
    const b = e.tensor(new Float32Array(8), [8]);
    x.requiresGrad = true;
    b.requiresGrad = true;
    const y = conv2d(x, w, b, { padding: 1 });
    const gy = randn(y.size, 9);
    const ran = kernelsRun(e, () => backward(y, { gradOutput: e.tensor(Float32Array.from(gy), y.shape) }));
    // The lanes input gradient of a stride-1 convolution is a lanes forward of gy reading w flipped; nothing flips w first.
    assert.ok(ran.includes(kind === 'lanes' ? 'conv2d_backward_input[lanes]' : 'conv2d_backward_input'), `${ran}`);
    assert.is(ran.filter((n) => n.startsWith('conv2d')).length, 1, `one conv2d kernel: ${ran}`);
    assert.not.ok(ran.some((n) => n.startsWith('conv2d_backward_filter')), `no filter gradient: ${ran}`);
    assert.not.ok(w.grad);
    const want = new Float64Array(8);
    for (let i = 0; i < gy.length; i++) want[i % 8] += Math.fround(gy[i]!);
    expectClose(await b.grad!.read(), want, 1e-5, 'bias gradient');
  });
  // Under noGrad nothing is recorded.
  await e.scope(async () => {
    const x = e.tensor(new Float32Array(16), [1, 4, 4, 1]);
    x.requiresGrad = true;
    const y = e.noGrad(() => conv2d(x, e.tensor(new Float32Array(9), [1, 3, 3, 1]), null));
    assert.is(y.node, null);
  });
}));

t('a training-style loop creates no buffers after the first iteration', async () => {
  const e = await testEngine();
  const x = e.tensor(Float32Array.from(randn(1 * 9 * 7 * 8, 3)), [1, 9, 7, 8]);
  const w = e.tensor(Float32Array.from(randn(16 * 3 * 3 * 8, 4)), [16, 3, 3, 8]);
  w.requiresGrad = true;
  x.requiresGrad = true;
  const step = async (): Promise<void> => {
    await e.scope(async () => {
      const y = conv2d(x, w, null, { stride: 2, padding: 1 });
      backward(y, { gradOutput: e.tensor(new Float32Array(y.size).fill(0.5), y.shape) });
      await e.sync();
    });
    w.grad!.dispose();
    w.grad = null;
    x.grad!.dispose();
    x.grad = null;
  };
  await step();
  const before = e.stats().buffersCreated;
  await step();
  await step();
  assert.is(e.stats().buffersCreated, before);
  x.dispose();
  w.dispose();
});

t('bad input throws a ShapeError naming op, tensor and shapes before dispatching anything', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.tensor(new Float32Array(2 * 5 * 5 * 6), [2, 5, 5, 6]);
    x.name = 'feat';
    const w = e.tensor(new Float32Array(4 * 3 * 3 * 6), [4, 3, 3, 6]);
    w.name = 'kern';
    const bad: [() => unknown, RegExp][] = [
      [() => conv2d(e.tensor(new Float32Array(30), [5, 6]), w, null), /conv2d: input tensor#\d+ must be NHWC \[N, H, W, Ci\], got \[5, 6\]/],
      [() => conv2d(x, e.tensor(new Float32Array(18), [3, 6]), null), /conv2d: weight tensor#\d+ must be OHWI \[Co, KH, KW, Ci\/groups\], got \[3, 6\]/],
      [() => conv2d(x, e.tensor(new Float32Array(4 * 9 * 5), [4, 3, 3, 5]), null), /conv2d: weight tensor#\d+ has shape \[4, 3, 3, 5\], expected \[4, 3, 3, 6\] .*feat \[2, 5, 5, 6\]/],
      [() => conv2d(x, w, null, { groups: 4 }), /conv2d: input feat \[2, 5, 5, 6\]: Ci = 6 is not divisible by groups = 4/],
      [() => conv2d(x, e.tensor(new Float32Array(5 * 9 * 2), [5, 3, 3, 2]), null, { groups: 3 }), /conv2d: weight tensor#\d+ \[5, 3, 3, 2\]: Co = 5 is not divisible by groups = 3/],
      [() => conv2d(x, w, null, { groups: 2 }), /conv2d: weight kern has shape \[4, 3, 3, 6\], expected \[4, 3, 3, 3\]/],
      [() => conv2d(x, w, e.tensor(new Float32Array(5), [5])), /conv2d: bias tensor#\d+ has shape \[5\], expected \[4\]/],
      [() => conv2d(x, w, e.tensor(new Float32Array(4), [1, 4])), /conv2d: bias tensor#\d+ has shape \[1, 4\], expected \[4\]/],
      [() => conv2d(e.empty([0, 5, 5, 6]), w, null), /conv2d: input tensor#\d+ \[0, 5, 5, 6\] has a zero dimension/],
      [() => conv2d(x, e.empty([0, 3, 3, 6]), null), /conv2d: weight tensor#\d+ \[0, 3, 3, 6\] has a zero dimension/],
      [() => conv2d(x, w, null, { padding: -1 }), /conv2d: padding must be an integer >= 0 or a pair of them, got -1/],
      [() => conv2d(x, w, null, { stride: 0 }), /conv2d: stride must be an integer >= 1 or a pair of them, got 0/],
      [() => conv2d(x, w, null, { dilation: [1, 1.5] }), /conv2d: dilation must be an integer >= 1 or a pair of them, got \[1,1.5\]/],
      [() => conv2d(x, w, null, { groups: 0 }), /conv2d: groups must be an integer >= 1, got 0/],
      [() => conv2d(x, w, null, { dilation: 3 }), /conv2d: input 5x5 with kernel 3x3, padding 0x0, dilation 3x3 and stride 1x1 gives an empty output -1x-1/],
      [() => conv2d(x, e.tensor(new Int32Array(4 * 9 * 6), [4, 3, 3, 6]), null), /conv2d: tensor#\d+ must be f32( or f16)?, got i32/],
    ];
    await e.flush();
    const dispatched = e.stats().dispatches;
    for (const [fn, re] of bad) assert.throws(fn, (err: Error) => err instanceof ShapeError && re.test(err.message), `expected ${re}`);
    assert.is(e.stats().dispatches, dispatched, 'nothing dispatched');
  });
});



for (const kind of ['register', 'lanes'] as const) t(`grad input adds into the gradient x already gathered from its other consumers (no separate accumulation pass), matching finite differences, ${kind} kernels`, () => withPrefer(testEngine0, kindVariants(kind), async () => {
  const e = testEngine0;
  // y = conv_a(x) + x (a skip connection: the add's backward runs first and hands x its gradient)
  // and z = conv_a(x) + conv_b(x) with conv_b stride 2 padded back (two conv consumers).
  const xs = [2, 7, 9, 6];
  const wa = [6, 3, 3, 6];
  const optsA: Conv2dOptions = { padding: 1 };
  const refAdd = (a: Float64Array, b: Float64Array): Float64Array => a.map((v, i) => v + b[i]!);
  await e.scope(async () => {
    await gradCheck(e, {
      gpu: ([x, w]) => add(conv2d(x!, w!, null, optsA), x!),
      ref: ([x, w]) => refAdd(refConv2d(x!, xs, w!, wa, null, optsA).data, x!),
      inputs: [{ name: 'x', shape: xs, data: randn(size(xs), 31) }, { name: 'w', shape: wa, data: randn(size(wa), 32) }],
      tol: 1e-3,
      maxElements: 48,
    });
    const wb = [5, 3, 3, 6];
    const optsB: Conv2dOptions = { stride: 2, padding: 1 };
    const wc = [5, 1, 1, 6];
    await gradCheck(e, {
      gpu: ([x, w1, w2]) => add(conv2d(x!, w1!, null, optsB), conv2d(x!, w2!, null, { stride: 2 })),
      ref: ([x, w1, w2]) => refAdd(refConv2d(x!, xs, w1!, wb, null, optsB).data, refConv2d(x!, xs, w2!, wc, null, { stride: 2 }).data),
      inputs: [
        { name: 'x', shape: xs, data: randn(size(xs), 33) },
        { name: 'w1', shape: wb, data: randn(size(wb), 34) },
        { name: 'w2', shape: wc, data: randn(size(wc), 35) },
      ],
      tol: 1e-3,
      maxElements: 48,
    });
    // The skip connection's backward: the conv writes into x's gradient, nothing adds afterwards.
    const x = e.tensor(Float32Array.from(randn(size(xs), 36)), xs);
    x.requiresGrad = true;
    const w = e.tensor(Float32Array.from(randn(size(wa), 37)), wa);
    const loss = sum(add(conv2d(x, w, null, optsA), x));
    const names = kernelsRun(e, () => backward(loss));
    assert.ok(names.includes(kind === 'lanes' ? 'conv2d_backward_input_accumulate[lanes]' : 'conv2d_backward_input_accumulate'), names.join(', '));
    assert.not.ok(names.includes('axpy_inplace'), names.join(', '));
  });
}));

t.run();
