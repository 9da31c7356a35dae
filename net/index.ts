/** Layers and models. */
export { Module, Sequential, type StateDict, type StateTensor, type LoadReport, type ParamLayout, engineShape } from './module.js';
export { Conv2d, DepthwiseConv2d, ConvTranspose2d, BatchNorm2d, Linear, Activation, ConvBNAct, DeConvBNAct, type ActivationName } from './layers.js';
export { MobileNetV2, InvertedResidual, makeDivisible } from './mobilenetv2.js';
export { ResNet, BasicBlock, Bottleneck, type ResNetDepth } from './resnet.js';
export { CANet, canet, SpatialBranch, ContextBranch, FCA, SpatialAttention, ChannelAttention, type CANetOptions, type BackboneName, type HeadName, type Precision, type SegmentOptions } from './canet.js';
export { SeededRandom } from './init.js';
