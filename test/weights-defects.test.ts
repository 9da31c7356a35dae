/**
 * Weights files with defects, loaded into models (the parser's own cases are in
 * safetensors.test.ts): each defect the hardening issue lists, made in a real CANet file, is
 * refused with a SafetensorsError naming the problem and leaves the model exactly as it was; and
 * a fuzz of mutated model files, where every load either succeeds completely (the model then
 * holds exactly the file's values) or fails leaving the model untouched: never half-loaded.
 */
import * as assert from 'uvu/assert';
import { canet, canetStateShapes, ConvBNAct, loadModelBytes, ModelFileError, SeededRandom, ShapeError, type Engine, type Module, type StateDict } from '../entry/node.js';
import { serializeSafetensors } from '../weights/safetensors.js';
import { loadWeightsBytes, serializeStateDict } from '../weights/state.js';
import { parseSafetensors, SafetensorsError } from '../weights/safetensors.js';
import { suite } from './harness.js';
import { randn, rng, testEngine } from './gpu.js';

const t = suite('weights-defects');

interface Split {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Uint8Array;
}

function split(bytes: Uint8Array): Split {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.slice(8 + n) };
}

function join(header: unknown, data: Uint8Array, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };
const tensors = (s: Split): [string, Entry][] => Object.entries(s.header).filter(([k]) => k !== '__metadata__') as [string, Entry][];

async function snapshot(m: Module): Promise<StateDict> {
  return m.stateDict();
}

function sameState(a: StateDict, b: StateDict): string | null {
  for (const [name, t0] of a) {
    const t1 = b.get(name);
    if (!t1) return `${name} missing`;
    if (t0.data.length !== t1.data.length) return `${name}: length`;
    for (let i = 0; i < t0.data.length; i++) if (!Object.is(t0.data[i], t1.data[i])) return `${name}[${i}]: ${t0.data[i]} vs ${t1.data[i]}`;
  }
  return null;
}

t('each listed defect in a CANet weights file is refused by name and leaves the model unchanged', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 3, width: 0.125, seed: 4 });
  const good = serializeStateDict(await model.stateDict());
  const other = canet(e, { classes: 3, width: 0.125, seed: 5 });
  const before = await snapshot(other);
  const s = split(good);
  const list = tensors(s);
  const floats = list.filter(([, x]) => x.dtype === 'F32' && x.shape.length >= 1 && x.shape[0]! > 1);
  const [nameA, a] = floats[0]!;
  const [nameB, b] = floats[1]!;
  const [lastName, last] = list.reduce((p, q) => (q[1].data_offsets[1] > p[1].data_offsets[1] ? q : p));
  const withEntry = (name: string, entry: Partial<Entry>) => join({ ...s.header, [name]: { ...(s.header[name] as Entry), ...entry } }, s.data);
  const nanData = s.data.slice();
  new DataView(nanData.buffer).setFloat32(a.data_offsets[0] + 4, NaN, true);
  const infData = s.data.slice();
  new DataView(infData.buffer).setFloat32(b.data_offsets[0], -Infinity, true);
  const headerLen = good.length - 8 - s.data.length;

  const defects: [string, Uint8Array, RegExp][] = [
    ['truncated inside the header', good.subarray(0, 8 + Math.floor(headerLen / 2)), /header length \d+ runs past the end of the file/],
    ['truncated inside the data', good.subarray(0, good.length - 10), new RegExp(`data_offsets \\[${last.data_offsets.join(', ')}\\] run past the data section`)],
    ['header length beyond the file', join(s.header, s.data, good.length), /header length \d+ runs past the end of the file/],
    ['header JSON not an object', join('[1, 2, 3]', s.data), /must be a JSON object of tensors, got an array/],
    ['overlapping offsets', withEntry(nameB, { data_offsets: [a.data_offsets[0], a.data_offsets[0] + (b.data_offsets[1] - b.data_offsets[0])] }), /overlap/],
    ['offsets out of range', withEntry(lastName, { data_offsets: [last.data_offsets[0] + 8, last.data_offsets[1] + 8] }), /run past the data section/],
    ['unsupported dtype', withEntry(nameA, { dtype: 'C64' }), new RegExp(`tensor "${nameA.replace(/\./g, '\\.')}": unsupported dtype "C64"`)],
    ['shape product not matching the byte length', withEntry(nameA, { shape: [a.shape[0]! + 1, ...a.shape.slice(1)] }), new RegExp(`tensor "${nameA.replace(/\./g, '\\.')}": F32 shape .* needs \\d+ bytes .* hold \\d+`)],
    ['a NaN value', join(s.header, nanData), new RegExp(`tensor "${nameA.replace(/\./g, '\\.')}": non-finite value NaN at index 1 .*pass allowNonFinite`)],
    ['an -Infinity value', join(s.header, infData), new RegExp(`tensor "${nameB.replace(/\./g, '\\.')}": non-finite value -Infinity at index 0`)],
  ];
  for (const [what, bytes, re] of defects) {
    try {
      loadWeightsBytes(other, bytes);
      assert.unreachable(`${what}: loaded`);
    } catch (err) {
      assert.instance(err, SafetensorsError, `${what}: ${String(err)}`);
      assert.match((err as Error).message, re, `${what}: ${(err as Error).message}`);
    }
  }
  const diff = sameState(before, await snapshot(other));
  assert.is(diff, null, `the model changed after failed loads: ${diff}`);

  // allowNonFinite overrides the refusal, and loads the NaN where the file has it.
  loadWeightsBytes(other, join(s.header, nanData), { allowNonFinite: true });
  const loaded = (await other.stateDict()).get(nameA)!;
  assert.ok(Number.isNaN(loaded.data[1]) && loaded.data.filter(Number.isNaN).length === 1, 'allowNonFinite loads the NaN');
  // And a good file afterwards restores the model completely.
  loadWeightsBytes(other, good);
  assert.is(sameState(await snapshot(model), await snapshot(other)), null);
  model.dispose();
  other.dispose();
});

t('fuzz: 150 mutated model files load completely or not at all, never half', async () => {
  const e = await testEngine();
  const m = new ConvBNAct(e, { inChannels: 3, outChannels: 5, kernel: 3 }, 'relu', new SeededRandom(1));
  // Give the BN buffers values of their own so a partial load would show.
  const base = serializeStateDict(
    new Map([...(await m.stateDict())].map(([n, s0]) => [n, { ...s0, data: s0.dtype === 'F32' ? Float32Array.from(randn(s0.data.length, n.length, 0.5, 1.5)) : s0.data }])),
  );
  loadWeightsBytes(m, base);
  const r = rng(77);
  const int = (n: number) => Math.floor(r() * n);
  const s = split(base);
  const list = tensors(s);
  const mutate = (): Uint8Array => {
    const kind = int(7);
    if (kind === 0) return base.subarray(0, int(base.length));
    if (kind === 1) {
      const d = s.data.slice();
      d[int(d.length)] ^= 1 << int(8); // a value changes: must load, exactly
      return join(s.header, d);
    }
    if (kind === 2) return join(s.header, s.data, int(base.length * 2));
    const [name, entry] = list[int(list.length)]!;
    const edit: Partial<Entry> =
      kind === 3 ? { dtype: ['F16', 'BF16', 'I32', 'U8', 'BOOL', 'F64'][int(6)]! }
      : kind === 4 ? { shape: entry.shape.map((d) => (r() < 0.3 ? d + int(3) - 1 : d)) }
      : kind === 5 ? { data_offsets: [entry.data_offsets[0] + int(9) - 4, entry.data_offsets[1] + int(9) - 4] }
      : {};
    const header = { ...s.header, [name]: { ...entry, ...edit } };
    if (kind === 6) delete (header as Record<string, unknown>)[name];
    return join(header, s.data);
  };
  let loaded = 0;
  let refused = 0;
  for (let iter = 0; iter < 150; iter++) {
    const bytes = mutate();
    const before = await m.stateDict();
    let ok = false;
    try {
      loadWeightsBytes(m, bytes);
      ok = true;
    } catch (err) {
      if (!(err instanceof SafetensorsError) && !/^loadStateDict: /.test((err as Error).message)) assert.unreachable(`iteration ${iter}: ${(err as Error).stack}`);
    }
    const after = await m.stateDict();
    if (ok) {
      // Complete: the model holds exactly what the file holds (parsed the same way).
      const file = parseSafetensors(bytes).tensors;
      for (const [name, st] of after) {
        const f = file.get(name)!;
        assert.ok(f && st.data.every((v, i) => Object.is(v, Number(f.data[i]))), `iteration ${iter}: ${name} differs from the file it loaded`);
      }
      loaded++;
      loadWeightsBytes(m, base);
    } else {
      assert.is(sameState(before, after), null, `iteration ${iter}: a failed load changed the model`);
      refused++;
    }
  }
  console.log(`    weights-defects: fuzz of model files: ${loaded} loaded completely, ${refused} refused with the model unchanged`);
  assert.ok(loaded > 15 && refused > 60, `loaded ${loaded}, refused ${refused}: both must occur`);
  m.dispose();
});

// ---------------------------------------------------------------------------------------------
// Hostile model files and careless options (issue 24).

/** Live tensors, and GPU buffers handed out so far (created or from the pool): "nothing allocated" means both unchanged. */
const allocState = (e: Engine) => {
  const st = e.stats();
  return { live: st.liveTensors, handedOut: st.buffersCreated + st.poolHits };
};

/** A model file as `canet train` writes it: the state dict plus its configuration in the metadata. */
async function modelFile(e: Engine, cfg: { backbone?: 'mobilenetv2' | 'resnet18' | 'resnet101'; head?: 'compatible' | 'plain'; width: number; classes: number }, metaOverride?: Record<string, unknown>) {
  const m = canet(e, { ...cfg, seed: 2 });
  const state = await m.stateDict();
  m.dispose();
  const config = { backbone: cfg.backbone ?? 'mobilenetv2', head: cfg.head ?? 'compatible', width: cfg.width, classes: cfg.classes, ...metaOverride };
  return serializeStateDict(state, { metadata: { format: 'canet-gpu-model-1', canet: JSON.stringify(config) } });
}

t('the state dict of a configuration is known without building it (net/spec.ts), for every backbone and head', async () => {
  const e = await testEngine();
  const configs = [
    { backbone: 'mobilenetv2', head: 'compatible', width: 0.125, classes: 3 },
    { backbone: 'mobilenetv2', head: 'plain', width: 0.35, classes: 7 },
    { backbone: 'resnet18', head: 'compatible', width: 0.125, classes: 2 },
    { backbone: 'resnet18', head: 'plain', width: 0.3, classes: 1 },
    { backbone: 'resnet101', head: 'plain', width: 0.0625, classes: 4 },
    { backbone: 'resnet101', head: 'compatible', width: 0.0625, classes: 2 },
  ] as const;
  for (const cfg of configs) {
    const m = canet(e, cfg);
    const built = new Map([...(await m.stateDict())].map(([n, st]) => [n, st.shape]));
    m.dispose();
    assert.equal(canetStateShapes(cfg), built, JSON.stringify(cfg));
  }
  // The counts MAX_TENSORS is sized against (weights/safetensors.ts).
  assert.is(canetStateShapes({ backbone: 'resnet101', head: 'compatible' }).size, 683);
  assert.is(canetStateShapes({ backbone: 'mobilenetv2', head: 'compatible' }).size, 365);
});

t('hostile model file: metadata asking for a huge or unknown model is refused before anything is built', async () => {
  const e = await testEngine();
  // A small, valid file of a tiny model (~100 KB). Its metadata is rewritten to ask for more.
  const tiny = { width: 0.125, classes: 3 };
  const good = await modelFile(e, tiny);
  const { model } = loadModelBytes(e, good);
  model.dispose();
  const cases: [string, Record<string, unknown>, RegExp][] = [
    // Before: built a 4x-wide ResNet-101 (minutes, gigabytes), then failed on the tensors.
    ['a 4x-wide ResNet-101', { backbone: 'resnet101', width: 4 }, /do not match the model the metadata describes \(resnet101, compatible head, width 4, 3 classes\); nothing was built/],
    ['an absurd class count', { classes: 1_000_000 }, /classes must be an integer in \[1, 4096\], got 1000000/],
    ['more classes than the file has', { classes: 300 }, /wrong shape: fca\.conv_last\.0\.weight: expected \[300, 32, 3, 3\], got \[3, 32, 3, 3\]/],
    ['a width past the bound', { width: 1e6 }, /width must be a number in \(0, 4\], got 1000000/],
    ['a width as a string', { width: '0.125' }, /width must be a number/],
    ['an unknown backbone', { backbone: 'resnet50' }, /backbone must be one of mobilenetv2, resnet18, resnet101, got "resnet50"/],
    ['an unknown head', { head: 'fancy' }, /head must be one of compatible, plain, got "fancy"/],
    ['a non-integer class count', { classes: 2.5 }, /classes must be an integer/],
    // The CLI runs the network at the recorded input size: a 64k x 64k one is refused too.
    ['a huge input size', { inputSize: [65536, 65536] }, /inputSize must be \[width, height\], multiples of 32 in \[32, 8192\], got \[65536,65536\]/],
    ['an input size not a pair', { inputSize: 'big' }, /inputSize must be/],
    ['class names not strings', { classNames: [1, 2, 3] }, /classNames must be an array of at most 4096 strings/],
  ];
  const state = parseSafetensors(good).tensors;
  const raw = Object.fromEntries([...state].map(([n, x]) => [n, { data: x.data as Float32Array | Int32Array, shape: x.shape, dtype: x.data instanceof Int32Array ? ('I64' as const) : undefined }]));
  for (const [what, meta, re] of cases) {
    const bytes = serializeSafetensors(raw, { canet: JSON.stringify({ backbone: 'mobilenetv2', head: 'compatible', ...tiny, ...meta }) });
    const before = allocState(e);
    try {
      loadModelBytes(e, bytes);
      assert.unreachable(`${what}: loaded`);
    } catch (err) {
      assert.instance(err, ModelFileError, `${what}: ${(err as Error).stack}`);
      assert.match((err as Error).message, re, `${what}: ${(err as Error).message}`);
    }
    // Nothing allocated at all: not one GPU buffer was handed out, so nothing was built.
    assert.equal(allocState(e), before, `${what}: allocated before refusing`);
  }
  // Metadata that is not JSON, or not an object, names the entry (before: a raw SyntaxError / TypeError).
  for (const [md, re] of [
    [{ canet: '{"backbone":' }, /metadata "canet" is not valid JSON/],
    [{ canet: '[1]' }, /metadata "canet" must be a JSON object/],
    [{ config: 'null' }, /metadata "config" must be a JSON object, got null/],
    [{ config: '{"model":"x"}' }, /metadata "config"\.model must be a JSON object/],
  ] as [Record<string, string>, RegExp][]) {
    assert.throws(() => loadModelBytes(e, serializeSafetensors(raw, md)), (err: unknown) => err instanceof ModelFileError && re.test((err as Error).message));
  }
});

t('a construction that fails part way leaves no tensor alive', async () => {
  const e = await testEngine();
  // An engine that runs out of memory at the 150th parameter: the model is half built when it throws.
  let made = 0;
  const failing = new Proxy(e, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (key === 'tensor')
        return (...args: unknown[]) => {
          if (++made === 150) throw new Error('injected: out of memory');
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const before = e.stats().liveTensors;
  assert.throws(() => canet(failing, { classes: 3, width: 0.125 }), /injected: out of memory/);
  assert.ok(made === 150, `made ${made}`);
  assert.is(e.stats().liveTensors, before, 'a failed construction left tensors alive');
  // Options are refused before anything is made, unknown names included (before: ResNet-101 / the plain head).
  const start = allocState(e);
  for (const [opts, re] of [
    [{ backbone: 'resnet50' }, /canet: backbone must be one of mobilenetv2, resnet18, resnet101, got "resnet50"/],
    [{ head: 'Compatible' }, /canet: head must be one of compatible, plain/],
    [{ classes: 0 }, /canet: classes must be an integer in \[1, 4096\], got 0/],
    [{ classes: 5000 }, /classes must be an integer in \[1, 4096\], got 5000/],
    [{ width: 0 }, /canet: width must be a number in \(0, 4\], got 0/],
    [{ width: NaN }, /width must be a number in \(0, 4\], got NaN/],
  ] as [Record<string, unknown>, RegExp][]) {
    assert.throws(() => canet(e, opts as never), (err: unknown) => err instanceof ShapeError && re.test((err as Error).message));
  }
  assert.equal(allocState(e), start);
});

t('num_batches_tracked must be a non-negative integer scalar in range; errors echo clipped names and shapes', async () => {
  const e = await testEngine();
  const m = new ConvBNAct(e, { inChannels: 3, outChannels: 4, kernel: 1 }, 'relu', new SeededRandom(1));
  const state = await m.stateDict();
  const counter = '1.num_batches_tracked';
  const withCounter = (c: { data: Float32Array | Int32Array; shape: number[]; dtype?: 'F32' | 'I64' }) => {
    const tensors: Record<string, { data: Float32Array | Int32Array; shape: number[]; dtype?: 'F32' | 'I64' }> = {};
    for (const [n, st] of state) tensors[n] = n === counter ? c : { data: st.data, shape: st.shape, dtype: st.dtype };
    return serializeSafetensors(tensors);
  };
  const refused: [string, Uint8Array, RegExp][] = [
    ['negative', withCounter({ data: Int32Array.of(-1), shape: [], dtype: 'I64' }), /expected an integer count in \[0, 2147483647\], got -1/],
    ['fractional', withCounter({ data: Float32Array.of(2.5), shape: [] }), /got 2\.5/],
    ['huge', withCounter({ data: Float32Array.of(1e30), shape: [] }), /got 1\.0000000150474662e\+30/],
    ['shaped [1]', withCounter({ data: Int32Array.of(3), shape: [1], dtype: 'I64' }), /expected a scalar counter \(shape \[\]\), got \[1\]/],
    ['shaped [1, 1]', withCounter({ data: Int32Array.of(3), shape: [1, 1], dtype: 'I64' }), /expected a scalar counter/],
  ];
  for (const [what, bytes, re] of refused) {
    assert.throws(() => loadWeightsBytes(m, bytes), (err: unknown) => {
      const msg = (err as Error).message;
      if (!re.test(msg) || !msg.includes(counter)) throw new Error(`${what}: ${msg}`);
      return true;
    });
  }
  loadWeightsBytes(m, withCounter({ data: Int32Array.of(7), shape: [], dtype: 'I64' }));
  assert.equal(Array.from((await m.stateDict()).get(counter)!.data), [7]);
  loadWeightsBytes(m, withCounter({ data: Float32Array.of(9), shape: [] })); // an integral float count is a count
  assert.equal(Array.from((await m.stateDict()).get(counter)!.data), [9]);

  // A megabyte name and a two-million-dimension shape are echoed clipped.
  const tensors: Record<string, { data: Float32Array | Int32Array; shape: number[]; dtype?: 'F32' | 'I64' }> = {};
  for (const [n, st] of state) tensors[n] = { data: st.data, shape: st.shape, dtype: st.dtype };
  tensors['x'.repeat(1_000_000)] = { data: new Float32Array(1), shape: [1] };
  tensors['0.weight'] = { data: tensors['0.weight']!.data, shape: [...new Array(2_000_000).fill(1), ...tensors['0.weight']!.shape.filter((d) => d !== 1)] };
  try {
    loadWeightsBytes(m, serializeSafetensors(tensors));
    assert.unreachable('loaded');
  } catch (err) {
    const msg = (err as Error).message;
    assert.ok(msg.length < 2000, `a message of ${msg.length} characters`);
    assert.match(msg, /wrong shape: 0\.weight: expected \[4, 3, 1, 1\], got \[1, 1, 1, 1, 1, 1, 1, 1, \.\.\. \(2000002 dimensions\)\]/);
  }
  m.dispose();
});

t('fuzz: 60 model files with mutated configurations load completely or are refused with nothing allocated', async () => {
  const e = await testEngine();
  const tiny = { width: 0.125, classes: 3 };
  const base = await modelFile(e, tiny);
  const raw = Object.fromEntries([...parseSafetensors(base).tensors].map(([n, x]) => [n, { data: x.data as Float32Array | Int32Array, shape: x.shape, dtype: x.data instanceof Int32Array ? ('I64' as const) : undefined }]));
  const r = rng(24);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  // Each case builds at most the tiny model (~0.5 MB of parameters) or nothing: the hostile
  // values (a 4x ResNet-101, a million classes) are refused from the metadata and the header
  // alone, so every case is bounded by the file's own size (not asserted as time: see docs/testing.md).
  let loaded = 0;
  let refused = 0;
  for (let iter = 0; iter < 60; iter++) {
    const cfg: Record<string, unknown> = { backbone: 'mobilenetv2', head: 'compatible', ...tiny };
    for (let k = Math.floor(r() * 3); k > 0; k--) {
      const key = pick(['backbone', 'head', 'width', 'classes']);
      cfg[key] =
        key === 'backbone' ? pick(['mobilenetv2', 'resnet18', 'resnet101', 'resnet50', '', 7, null])
        : key === 'head' ? pick(['compatible', 'plain', 'Plain', {}, 1])
        : key === 'width' ? pick([0.125, 0.125, 0.25, 4, 1e9, -1, 0, '1', null, NaN])
        : pick([3, 3, 4, 19, 1e6, -3, 0, 2.5, '3', 4097]);
    }
    const bytes = serializeSafetensors(raw, { canet: JSON.stringify(cfg) });
    const before = allocState(e);
    try {
      const { model } = loadModelBytes(e, bytes);
      model.dispose();
      loaded++;
    } catch (err) {
      if (!(err instanceof ModelFileError)) assert.unreachable(`iteration ${iter}: ${JSON.stringify(cfg)}: ${(err as Error).stack}`);
      assert.equal(allocState(e), before, `iteration ${iter}: ${JSON.stringify(cfg)} allocated before being refused`);
      refused++;
    }
    assert.is(e.stats().liveTensors, before.live, `iteration ${iter}: tensors left alive`);
  }
  assert.ok(loaded > 10 && refused > 25, `loaded ${loaded}, refused ${refused}: both must occur`);
});

t.run();
