/**
 * Inputs whose tensors would not fit one storage binding. WebGPU's default
 * maxStorageBufferBindingSize is 128 MiB; a 2048x1024 CANet-MobileNetV2 needs a 192 MiB expanded
 * tensor (features.2) and 152 MiB of logits. segment() computes features.2's expansion and
 * depthwise conv in channel slices and fuses the head's argmax into its last kernel, so neither
 * tensor exists.
 *  - A device reporting a 9.5 MB limit at 512x256 takes the same paths as the default limit at
 *    2048x1024 (features.2, 12.6 MB, split in two; logits, 10 MB, never stored; the largest
 *    weight, conv_init's 4.7 MB, fits), and must give the same class ids as the real limits, bit
 *    for bit (both engines embed the same device, so only the limit differs).
 *  - A device requested with WebGPU's default limits segments a real 2048x1024 image (long:
 *    about a minute on SwiftShader); forward(), which must store the logits, is refused by name.
 */
import * as assert from 'uvu/assert';
import { create } from 'webgpu';
import { createEngine, ShapeError, canet, type Engine } from '../entry/node.js';
import { suite } from './harness.js';
import { randn, testEngine, withLimits } from './gpu.js';

const t = suite('large-input');
// Dawn's instance must outlive its devices (Node crashes when one is collected): keep it.
let instance: GPU | null = null;

async function segmentIds(e: Engine, head: 'compatible' | 'plain', w: number, h: number): Promise<{ ids: Int32Array; kernels: string[] }> {
  const model = canet(e, { classes: 19, head, seed: 7 }).eval();
  const kernels: string[] = [];
  const run0 = e.run.bind(e);
  e.run = (program) => {
    kernels.push(program.name);
    run0(program);
  };
  try {
    const x = e.tensor(Float32Array.from(randn(h * w * 3, 9)), [1, h, w, 3]);
    const ids = model.segment(x);
    assert.equal([...ids.shape], [1, h, w]);
    const out = (await ids.read()) as Int32Array;
    x.dispose();
    ids.dispose();
    return { ids: out, kernels };
  } finally {
    e.run = run0;
    model.dispose();
  }
}

t('a 9.5 MB binding limit at 512x256: features.2 in channel slices, argmax fused, the same ids as the real limits', async () => {
  const host = await testEngine();
  const real = await createEngine({ device: host.device });
  const tiny = await createEngine({ device: withLimits(host.device, { maxStorageBufferBindingSize: 9_500_000 }) });
  try {
    for (const head of ['compatible', 'plain'] as const) {
      const a = await segmentIds(real, head, 512, 256);
      const b = await segmentIds(tiny, head, 512, 256);
      const dw = (k: string[]) => k.filter((n) => n === 'depthwise_forward').length;
      assert.is(dw(b.kernels), dw(a.kernels) + 1, `${head}: features.2's depthwise conv runs in two slices`);
      assert.ok(!b.kernels.includes('argmax_rows'), `${head}: no separate argmax (the logits are never stored)`);
      assert.equal(Array.from(b.ids), Array.from(a.ids), `${head}: class ids`);
    }
    // forward() has to store the logits: refused, naming the limit.
    const model = canet(tiny, { classes: 19, seed: 7 }).eval();
    const x = tiny.tensor(new Float32Array(256 * 512 * 3), [1, 256, 512, 3]);
    assert.throws(() => tiny.noGrad(() => model.forward(x)), (err: unknown) => err instanceof ShapeError && /maxStorageBufferBindingSize/.test((err as Error).message));
    x.dispose();
    model.dispose();
  } finally {
    real.destroy();
    tiny.destroy();
  }
}, { timeoutMs: 300_000 });

t('a device with WebGPU default limits segments a 2048x1024 image (CANet-MobileNetV2, 19 classes)', async () => {
  await testEngine(); // points the Vulkan loader at the adapter the tests use
  instance ??= create([]) as GPU;
  const adapter = await instance.requestAdapter();
  assert.ok(adapter, 'an adapter');
  const device = await adapter!.requestDevice();
  assert.is(device.limits.maxStorageBufferBindingSize, 134217728, 'default limit: 128 MiB');
  const e = await createEngine({ device });
  try {
    const { ids, kernels } = await segmentIds(e, 'compatible', 2048, 1024);
    assert.ok(ids.every((v) => v >= 0 && v < 19), 'class ids in range');
    assert.ok(kernels.includes('conv_transpose_forward'), 'the x8 head ran');
    console.log(`large-input: 2048x1024 segmented on default limits with ${kernels.length} dispatches`);
  } finally {
    e.destroy();
    device.destroy();
  }
}, { timeoutMs: 600_000 });

t.run();
