/**
 * Weights files with defects, loaded into models (the parser's own cases are in
 * safetensors.test.ts): each defect the hardening issue lists, made in a real CANet file, is
 * refused with a SafetensorsError naming the problem and leaves the model exactly as it was; and
 * a fuzz of mutated model files, where every load either succeeds completely (the model then
 * holds exactly the file's values) or fails leaving the model untouched: never half-loaded.
 */
import * as assert from 'uvu/assert';
import { canet, ConvBNAct, SeededRandom, type Module, type StateDict } from '../engine/entry-node.js';
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

t.run();
