/**
 * The tensor ops, exported as the package's `ops` namespace (entry/index.ts). The image, label,
 * texture and colour ops (imageToTensor, labelsToTensor, textureToTensor, colorizeIds, ...) are
 * also exported from entry/index.ts by name.
 */
export { fill, full, copyTensor as copy, add, sub, mul, binary, binaryOps, sumToShape, scale, axpyInPlace, addInPlace, sum, broadcastScalar, type BinaryOpName, type BinaryOpSpec } from './basic.js';
export { broadcastTo, broadcastShapes } from './broadcast.js';
export { concat, slice, permute } from './concat.js';
export { resizeBilinear, type ResizeOptions } from './upsample.js';
export { softmax, argmax } from './softmax.js';
export { fcaFuse } from './fca.js';
export { sumColumns } from './reduce.js';
export { conv2d, conv2dOutputSize, type Conv2dOptions } from './conv2d.js';
export { depthwiseConv2d, type DepthwiseOptions } from './depthwise.js';
export { convTranspose2d, type ConvTransposeOptions } from './conv-transpose.js';
export { unary, unaryOps, relu, relu6, sigmoid, leakyRelu, type UnaryOpName, type UnaryOpSpec } from './unary.js';
export { batchNorm2d, type BatchNormOptions } from './batchnorm.js';
export { globalAvgPool, globalMaxPool, maxPool2d, type MaxPoolOptions } from './pool.js';
export { linear } from './linear.js';
export { softmaxCrossEntropy, checkLossFinite, readLossStats, validateLabels, LossCheckError, type CrossEntropyOptions, type LossStats } from './loss.js';
export { imageToTensor, IMAGENET_MEAN, IMAGENET_STD, type ImageBytes, type PreprocessOptions } from './preprocess.js';
export { ConfusionMatrix, type SegmentationScores } from './metrics.js';
export { cast, foldHalf } from './half.js';
