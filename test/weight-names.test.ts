/** torchvision -> CANet parameter names (weights/names.ts). Expected names are written out by hand from NETWORK.md. */
import * as assert from 'uvu/assert';
import { torchvisionMobileNetV2ToCANet as mnv2, torchvisionResNetToCANet as resnet, WeightNameError, MOBILENETV2_LAYERS } from '../weights/names.js';
import { suite } from './harness.js';

const t = suite('weight-names');
const B = 'context_branch.backbone.';

const throwsName = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    if (!(e instanceof WeightNameError)) throw new Error(`expected a WeightNameError, got ${String(e)}`);
    if (!re.test(e.message)) throw new Error(`message ${JSON.stringify(e.message)} does not match ${re}`);
    return true;
  });

t('MobileNetV2: features split into layer1..4 at 0:4, 4:7, 7:14, 14:18, keeping block indices (Sequential slicing keeps keys)', () => {
  const cases: [string, string | null][] = [
    ['features.0.0.weight', `${B}layer1.0.0.weight`],
    ['features.0.1.running_var', `${B}layer1.0.1.running_var`],
    ['features.1.conv.0.0.weight', `${B}layer1.1.conv.0.0.weight`],
    ['features.1.conv.1.weight', `${B}layer1.1.conv.1.weight`],
    ['features.1.conv.2.num_batches_tracked', `${B}layer1.1.conv.2.num_batches_tracked`],
    ['features.3.conv.3.bias', `${B}layer1.3.conv.3.bias`], // last of layer1
    ['features.4.conv.0.0.weight', `${B}layer2.4.conv.0.0.weight`], // first of layer2
    ['features.5.conv.0.0.weight', `${B}layer2.5.conv.0.0.weight`],
    ['features.6.conv.1.1.running_mean', `${B}layer2.6.conv.1.1.running_mean`], // last of layer2
    ['features.7.conv.1.0.weight', `${B}layer3.7.conv.1.0.weight`], // first of layer3
    ['features.13.conv.2.weight', `${B}layer3.13.conv.2.weight`], // last of layer3
    ['features.14.conv.0.1.weight', `${B}layer4.14.conv.0.1.weight`], // first of layer4
    ['features.17.conv.3.running_var', `${B}layer4.17.conv.3.running_var`], // last of layer4
    ['features.18.0.weight', null], // 1x1 conv to 1280: unused
    ['features.18.1.bias', null],
    ['classifier.1.weight', null],
    ['classifier.1.bias', null],
  ];
  for (const [from, to] of cases) assert.is(mnv2(from), to, from);
  assert.equal(
    MOBILENETV2_LAYERS.map((l) => [l.start, l.end]),
    [[0, 4], [4, 7], [7, 14], [14, 18]],
  );
});

t('MobileNetV2: every name of the torchvision state_dict maps, onto distinct names', () => {
  // torchvision mobilenet_v2().state_dict() names, generated from its structure: 314 entries.
  const bn = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'];
  const names: string[] = ['features.0.0.weight', ...bn.map((p) => `features.0.1.${p}`)];
  names.push('features.1.conv.0.0.weight', ...bn.map((p) => `features.1.conv.0.1.${p}`), 'features.1.conv.1.weight', ...bn.map((p) => `features.1.conv.2.${p}`));
  for (let i = 2; i <= 17; i++)
    for (const [conv, norm] of [['conv.0.0', 'conv.0.1'], ['conv.1.0', 'conv.1.1'], ['conv.2', 'conv.3']])
      names.push(`features.${i}.${conv}.weight`, ...bn.map((p) => `features.${i}.${norm}.${p}`));
  names.push('features.18.0.weight', ...bn.map((p) => `features.18.1.${p}`), 'classifier.1.weight', 'classifier.1.bias');
  assert.is(names.length, 314);
  const mapped = names.map(mnv2);
  assert.is(mapped.filter((m) => m === null).length, 8);
  const used = mapped.filter((m): m is string => m !== null);
  assert.is(new Set(used).size, used.length);
  assert.ok(used.every((m) => /^context_branch\.backbone\.layer[1-4]\.\d+\./.test(m)));
});

t('MobileNetV2: names of other models or wrappers are refused, not dropped', () => {
  throwsName(() => mnv2('module.features.0.0.weight'), /"module\.features\.0\.0\.weight" is not a torchvision MobileNetV2 state_dict name \(it has a wrapper prefix: strip "module\." first\)/);
  throwsName(() => mnv2('features.19.0.weight'), /"features\.19\.0\.weight" is not a torchvision MobileNetV2/);
  throwsName(() => mnv2('features.01.conv.0.0.weight'), /not a torchvision MobileNetV2/);
  throwsName(() => mnv2('features.2.block.0.0.weight'), /not a torchvision MobileNetV2/); // MobileNetV3
  throwsName(() => mnv2('features.1.conv.3.weight'), /not a torchvision MobileNetV2/); // t=1 block has no conv.3
  throwsName(() => mnv2('features.0.2.weight'), /not a torchvision MobileNetV2/); // ReLU6 has no parameters
  throwsName(() => mnv2('classifier.0.weight'), /not a torchvision MobileNetV2/); // Dropout
  throwsName(() => mnv2('fc.weight'), /not a torchvision MobileNetV2/);
  throwsName(() => mnv2(''), /"" is not/);
});

t('ResNet: prefix everything but fc', () => {
  const cases: [string, string | null][] = [
    ['conv1.weight', `${B}conv1.weight`],
    ['bn1.running_mean', `${B}bn1.running_mean`],
    ['bn1.num_batches_tracked', `${B}bn1.num_batches_tracked`],
    ['layer1.0.conv1.weight', `${B}layer1.0.conv1.weight`],
    ['layer2.0.downsample.0.weight', `${B}layer2.0.downsample.0.weight`],
    ['layer2.0.downsample.1.bias', `${B}layer2.0.downsample.1.bias`],
    ['layer3.22.conv3.weight', `${B}layer3.22.conv3.weight`], // ResNet-101's layer3 has 23 blocks
    ['layer4.1.bn2.running_var', `${B}layer4.1.bn2.running_var`],
    ['fc.weight', null],
    ['fc.bias', null],
  ];
  for (const [from, to] of cases) assert.is(resnet(from), to, from);
  throwsName(() => resnet('module.conv1.weight'), /"module\.conv1\.weight" is not a torchvision ResNet state_dict name \(it has a wrapper prefix/);
  throwsName(() => resnet('layer5.0.conv1.weight'), /not a torchvision ResNet/);
  throwsName(() => resnet('layer1.0.conv4.weight'), /not a torchvision ResNet/);
  throwsName(() => resnet('layer1.0.downsample.2.weight'), /not a torchvision ResNet/);
  throwsName(() => resnet('features.0.0.weight'), /not a torchvision ResNet/);
  throwsName(() => resnet('fc.running_mean'), /not a torchvision ResNet/);
});

t.run();
