/**
 * The state dict a CANet configuration has (PyTorch names and shapes), computed without building
 * the network: no GPU buffer, no initialisation, a few hundred small arrays. `loadModelBytes`
 * checks a file against it before building anything, so a small file asking for a huge model is
 * refused in microseconds instead of allocating gigabytes first. It mirrors the constructors in
 * canet.ts, mobilenetv2.ts, resnet.ts and layers.ts; test/model-weights.test.ts checks it against
 * built models of every backbone and head.
 */
import { SETTINGS, makeDivisible } from './mobilenetv2.js';
import type { BackboneName, HeadName } from './canet.js';

/** Name -> PyTorch shape ([] for BatchNorm's num_batches_tracked counter). */
export type StateShapes = Map<string, number[]>;

export const BACKBONES: readonly BackboneName[] = ['mobilenetv2', 'resnet18', 'resnet101'];
export const HEADS: readonly HeadName[] = ['compatible', 'plain'];
/** Most classes a CANet may have: well above any segmentation data set's label set (ADE20K-full: 3688). */
export const MAX_CLASSES = 4096;
/** Width multipliers accepted: (0, MAX_WIDTH]. */
export const MAX_WIDTH = 4;

function bn(s: StateShapes, p: string, c: number): void {
  s.set(`${p}weight`, [c]);
  s.set(`${p}bias`, [c]);
  s.set(`${p}running_mean`, [c]);
  s.set(`${p}running_var`, [c]);
  s.set(`${p}num_batches_tracked`, []);
}

/** ConvBNAct: conv at p0 (depthwise when groups = in = out > 1), BN at p1. */
function convBnAct(s: StateShapes, p: string, ci: number, co: number, k: number, groups = 1): void {
  s.set(`${p}0.weight`, groups > 1 && groups === ci && groups === co ? [co, 1, k, k] : [co, ci / groups, k, k]);
  bn(s, `${p}1.`, co);
}

/** DeConvBNAct(scale): transposed conv (k = 2 scale - 1, bias) then BN, under up_conv. */
function deconvBnAct(s: StateShapes, p: string, ci: number, co: number, scale: number): void {
  const k = 2 * scale - 1;
  s.set(`${p}up_conv.0.weight`, [ci, co, k, k]);
  s.set(`${p}up_conv.0.bias`, [co]);
  bn(s, `${p}up_conv.1.`, co);
}


function mobilenetv2(s: StateShapes, p: string, width: number): [number, number, number, number] {
  const cuts = [0, 4, 7, 14, 18];
  const at = (i: number) => `${p}layer${cuts.findIndex((c, j) => i >= c && i < cuts[j + 1]!) + 1}.${i}.`;
  let inp = makeDivisible(32 * width);
  convBnAct(s, at(0), 3, inp, 3);
  const out: number[] = [inp];
  let index = 1;
  for (const [t, c, n] of SETTINGS) {
    const oup = makeDivisible(c * width);
    for (let i = 0; i < n; i++, index++) {
      const hidden = Math.round(inp * t);
      const q = `${at(index)}conv.`;
      let j = 0;
      if (t !== 1) convBnAct(s, `${q}${j++}.`, inp, hidden, 1);
      convBnAct(s, `${q}${j++}.`, hidden, hidden, 3, hidden);
      s.set(`${q}${j++}.weight`, [oup, hidden, 1, 1]);
      bn(s, `${q}${j}.`, oup);
      out.push(oup);
      inp = oup;
    }
  }
  return [out[3]!, out[6]!, out[13]!, out[17]!];
}

function resnet(s: StateShapes, p: string, depth: 18 | 101 | 152, width: number): [number, number, number, number] {
  const bottleneck = depth !== 18;
  const blocks = depth === 18 ? [2, 2, 2, 2] : depth === 101 ? [3, 4, 23, 3] : [3, 8, 36, 3];
  const expansion = bottleneck ? 4 : 1;
  const w = (c: number) => Math.max(8, Math.round(c * width));
  s.set(`${p}conv1.weight`, [w(64), 3, 7, 7]);
  bn(s, `${p}bn1.`, w(64));
  let inp = w(64);
  const chans: number[] = [];
  blocks.forEach((n, i) => {
    const planes = w(64 * 2 ** i);
    const out = planes * expansion;
    for (let j = 0; j < n; j++) {
      const q = `${p}layer${i + 1}.${j}.`;
      const stride = j === 0 && i > 0 ? 2 : 1;
      if (bottleneck) {
        s.set(`${q}conv1.weight`, [planes, inp, 1, 1]);
        bn(s, `${q}bn1.`, planes);
        s.set(`${q}conv2.weight`, [planes, planes, 3, 3]);
        bn(s, `${q}bn2.`, planes);
        s.set(`${q}conv3.weight`, [out, planes, 1, 1]);
        bn(s, `${q}bn3.`, out);
      } else {
        s.set(`${q}conv1.weight`, [planes, inp, 3, 3]);
        bn(s, `${q}bn1.`, planes);
        s.set(`${q}conv2.weight`, [planes, planes, 3, 3]);
        bn(s, `${q}bn2.`, planes);
      }
      if (stride !== 1 || inp !== out) {
        s.set(`${q}downsample.0.weight`, [out, inp, 1, 1]);
        bn(s, `${q}downsample.1.`, out);
      }
      inp = out;
    }
    chans.push(inp);
  });
  return chans as [number, number, number, number];
}

/**
 * The names and PyTorch shapes of a torchvision ResNet's backbone tensors (conv1, bn1, layer1-4;
 * no fc) at width 1: used to state how many tensors the largest files hold.
 */
export function resnetStateShapes(depth: 18 | 101 | 152): StateShapes {
  const s: StateShapes = new Map();
  resnet(s, '', depth, 1);
  return s;
}

/** Why a CANet configuration cannot be built, or null: checked before building anything. */
export function checkCANetOptions(o: { backbone?: unknown; head?: unknown; width?: unknown; classes?: unknown }): string | null {
  if (o.backbone !== undefined && !BACKBONES.includes(o.backbone as BackboneName))
    return `backbone must be one of ${BACKBONES.join(', ')}, got ${describe(o.backbone)}`;
  if (o.head !== undefined && !HEADS.includes(o.head as HeadName)) return `head must be one of ${HEADS.join(', ')}, got ${describe(o.head)}`;
  if (o.classes !== undefined && !(typeof o.classes === 'number' && Number.isInteger(o.classes) && o.classes >= 1 && o.classes <= MAX_CLASSES))
    return `classes must be an integer in [1, ${MAX_CLASSES}], got ${describe(o.classes)}`;
  if (o.width !== undefined && !(typeof o.width === 'number' && o.width > 0 && o.width <= MAX_WIDTH))
    return `width must be a number in (0, ${MAX_WIDTH}], got ${describe(o.width)}`;
  return null;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v == null) return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}

/**
 * The state dict names and PyTorch shapes of `canet(engine, opts)`, in no particular order.
 * @throws Error for options the CANet constructor refuses
 */
export function canetStateShapes(opts: { backbone?: BackboneName; head?: HeadName; width?: number; classes?: number } = {}): StateShapes {
  const problem = checkCANetOptions(opts);
  if (problem) throw new Error(`canet: ${problem}`);
  const { backbone = 'mobilenetv2', head = 'compatible', width = 1, classes = 19 } = opts;
  const s: StateShapes = new Map();
  const spatial = makeDivisible(64 * width);
  const fused = 4 * spatial;
  const hid = makeDivisible(192 * width);
  convBnAct(s, 'spatial_branch.0.', 3, spatial, 3);
  convBnAct(s, 'spatial_branch.1.', spatial, 2 * spatial, 3);
  convBnAct(s, 'spatial_branch.2.', 2 * spatial, 4 * spatial, 3);
  const b = 'context_branch.backbone.';
  const [, , c16, c32] = backbone === 'mobilenetv2' ? mobilenetv2(s, b, width) : resnet(s, b, backbone === 'resnet18' ? 18 : 101, width);
  deconvBnAct(s, 'context_branch.up1.', c32, hid, 2);
  deconvBnAct(s, 'context_branch.up2.', hid + c16, fused, 2);
  convBnAct(s, 'fca.conv_init.', 2 * fused, fused, 3);
  convBnAct(s, 'fca.sa.0.', fused, 1, 3);
  s.set('fca.ca.fc.weight', [fused, fused]);
  s.set('fca.ca.fc.bias', [fused]);
  if (head === 'compatible') {
    convBnAct(s, 'fca.conv_last.', fused, classes, 3);
    deconvBnAct(s, 'up.', classes, classes, 8);
  } else {
    s.set('fca.conv_last.weight', [classes, fused, 3, 3]);
    s.set('fca.conv_last.bias', [classes]);
  }
  return s;
}
