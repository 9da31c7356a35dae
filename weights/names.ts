/**
 * Parameter-name mapping from torchvision's pretrained backbones to CANet's state_dict names
 * (see NETWORK.md), for loading ImageNet weights into the context branch.
 *
 * The mappers are strict: a name that is not a torchvision parameter or buffer of that model
 * throws a {@link WeightNameError} instead of returning null, so a checkpoint of the wrong model,
 * or one saved with a wrapper's prefix, fails loudly instead of loading nothing.
 */

/** A state_dict name is not one the mapper knows for the model it maps. */
export class WeightNameError extends Error {
  override name = 'WeightNameError';
}

const CANET_BACKBONE = 'context_branch.backbone.';
const BN = '(?:weight|bias|running_mean|running_var|num_batches_tracked)';

/**
 * CANet's split of torchvision MobileNetV2 `features[0:18]`: `layerN` holds features[start, end)
 * (strides 4, 8, 16, 32). features.18, the 1x1 conv to 1280 channels, is not used. PyTorch's
 * `Sequential[a:b]` keeps the original child keys, so block i keeps its index: features.5 is
 * layer2.5, not layer2.1.
 */
export const MOBILENETV2_LAYERS: readonly { layer: string; start: number; end: number }[] = [
  { layer: 'layer1', start: 0, end: 4 },
  { layer: 'layer2', start: 4, end: 7 },
  { layer: 'layer3', start: 7, end: 14 },
  { layer: 'layer4', start: 14, end: 18 },
];

// What torchvision's MobileNetV2 holds under each features.i: the stem and features.18 are
// Conv2dNormActivation (0 conv, 1 BN); features.1 is the expand-ratio-1 block without the 1x1
// expansion; the other inverted residuals are expand (conv.0), depthwise (conv.1), project (conv.2 + BN conv.3).
const MNV2_CONV_BN = new RegExp(`^(?:0\\.weight|1\\.${BN})$`);
const MNV2_BLOCK_T1 = new RegExp(`^conv\\.(?:0\\.0\\.weight|0\\.1\\.${BN}|1\\.weight|2\\.${BN})$`);
const MNV2_BLOCK = new RegExp(`^conv\\.(?:[01]\\.0\\.weight|[01]\\.1\\.${BN}|2\\.weight|3\\.${BN})$`);
const MNV2_CLASSIFIER = /^classifier\.1\.(?:weight|bias)$/;

function unknownName(model: string, name: string): never {
  const hint = /^(?:module|model|backbone)\./.test(name) ? ` (it has a wrapper prefix: strip "${name.split('.')[0]}." first)` : '';
  throw new WeightNameError(`${JSON.stringify(name)} is not a torchvision ${model} state_dict name${hint}`);
}

/**
 * Maps a torchvision MobileNetV2 state_dict name ('features.5.conv.0.0.weight') to the CANet name
 * ('context_branch.backbone.layer2.5.conv.0.0.weight'), or null for names CANet does not use
 * (features.18.*, classifier.*). Throws a {@link WeightNameError} for any other name.
 */
export function torchvisionMobileNetV2ToCANet(name: string): string | null {
  if (MNV2_CLASSIFIER.test(name)) return null;
  const m = /^features\.(0|[1-9]\d*)\.(.+)$/.exec(name);
  if (!m) return unknownName('MobileNetV2', name);
  const index = Number(m[1]);
  const rest = m[2]!;
  const pattern = index === 0 || index === 18 ? MNV2_CONV_BN : index === 1 ? MNV2_BLOCK_T1 : index <= 17 ? MNV2_BLOCK : undefined;
  if (!pattern?.test(rest)) return unknownName('MobileNetV2', name);
  if (index === 18) return null;
  const part = MOBILENETV2_LAYERS.find((p) => index >= p.start && index < p.end)!;
  return `${CANET_BACKBONE}${part.layer}.${index}.${rest}`;
}

// torchvision ResNet: BasicBlock (ResNet-18/34) has conv1..2/bn1..2, Bottleneck (ResNet-50/101/152)
// conv1..3/bn1..3; the first block of a stage may have a downsample (0 conv, 1 BN).
const RESNET_NAME = new RegExp(
  `^(?:conv1\\.weight|bn1\\.${BN}|layer[1-4]\\.(?:0|[1-9]\\d*)\\.(?:conv[123]\\.weight|bn[123]\\.${BN}|downsample\\.0\\.weight|downsample\\.1\\.${BN}))$`,
);
const RESNET_FC = /^fc\.(?:weight|bias)$/;

/**
 * Maps a torchvision ResNet state_dict name (conv1, bn1, layer1..4) to CANet's
 * 'context_branch.backbone.' + name, or null for the classifier (fc.*). Throws a
 * {@link WeightNameError} for any other name.
 */
export function torchvisionResNetToCANet(name: string): string | null {
  if (RESNET_FC.test(name)) return null;
  if (!RESNET_NAME.test(name)) return unknownName('ResNet', name);
  return CANET_BACKBONE + name;
}
