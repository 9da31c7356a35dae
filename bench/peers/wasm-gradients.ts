/**
 * The three gradient kernels a CANet training step needs that TF.js 4.22's WASM backend does not
 * have (Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropInput, DepthwiseConv2dNativeBackpropFilter),
 * registered for 'wasm' and composed from kernels it does have (pad, strided slice, matMul,
 * depthwise conv, sums). Without them the WASM peer could only run inference. They are
 * straightforward rather than fast, so the WASM training time is an upper bound on what TF.js WASM
 * would take with native kernels; the peer's equivalence check (`--check`) verifies them through a
 * whole training step against our engine.
 */
import type * as tfjs from '@tensorflow/tfjs-core';
import type { TF } from './canet-tfjs.js';

type T4 = tfjs.Tensor4D;

interface ConvGeometry {
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  outHeight: number;
  outWidth: number;
  top: number;
  left: number;
}

function geometry(tf: TF, xShape: number[], filterShape: number[], strides: number | [number, number], pad: unknown, dimRoundingMode: unknown, depthwise: boolean): ConvGeometry {
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad as 'valid',
    dimRoundingMode as 'floor' | undefined,
    depthwise,
  );
  return {
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
  };
}

/**
 * x zero-padded by (top, left) and cut or padded at the bottom/right to exactly the rows/columns
 * the taps read: (out-1)*stride + k.
 */
function padForTaps(tf: TF, x: T4, g: ConvGeometry): T4 {
  const [, h, w] = x.shape;
  const needH = (g.outHeight - 1) * g.strideHeight + g.filterHeight;
  const needW = (g.outWidth - 1) * g.strideWidth + g.filterWidth;
  let p = tf.pad(x, [[0, 0], [g.top, Math.max(0, needH - g.top - h)], [g.left, Math.max(0, needW - g.left - w)], [0, 0]]);
  if (p.shape[1] > needH || p.shape[2] > needW) p = tf.slice(p, [0, 0, 0, 0], [-1, needH, needW, -1]);
  return p;
}

/** The input pixels tap (i, j) reads for every output pixel: [N, outH, outW, C]. */
function tap(tf: TF, xp: T4, g: ConvGeometry, i: number, j: number): T4 {
  const [n, , , c] = xp.shape;
  return tf.stridedSlice(
    xp,
    [0, i, j, 0],
    [n, i + (g.outHeight - 1) * g.strideHeight + 1, j + (g.outWidth - 1) * g.strideWidth + 1, c],
    [1, g.strideHeight, g.strideWidth, 1],
  ) as T4;
}

/** dW[i, j, ci, co] = sum over pixels of x(tap i, j)[ci] * dy[co]: one matMul per tap. */
function conv2dBackpropFilter(tf: TF, x: T4, dy: T4, filterShape: number[], g: ConvGeometry): tfjs.Tensor {
  const [, , ci, co] = filterShape as [number, number, number, number];
  const dyFlat = tf.reshape(dy, [-1, co]);
  // A 1x1 stride-1 convolution (most of MobileNetV2's) reads x itself: one matMul, no slicing.
  if (g.filterHeight === 1 && g.filterWidth === 1 && g.strideHeight === 1 && g.strideWidth === 1 && g.top === 0 && g.left === 0 && x.shape[1] === g.outHeight && x.shape[2] === g.outWidth)
    return tf.reshape(tf.matMul(tf.reshape(x, [-1, ci]), dyFlat, true, false), filterShape);
  const xp = padForTaps(tf, x, g);
  const taps: tfjs.Tensor[] = [];
  for (let i = 0; i < g.filterHeight; i++)
    for (let j = 0; j < g.filterWidth; j++) taps.push(tf.matMul(tf.reshape(tap(tf, xp, g, i, j), [-1, ci]), dyFlat, true, false));
  return tf.reshape(tf.stack(taps), filterShape);
}

/** dW[i, j, c] = sum over pixels of x(tap i, j)[c] * dy[c]. */
function depthwiseBackpropFilter(tf: TF, x: T4, dy: T4, filterShape: number[], g: ConvGeometry): tfjs.Tensor {
  const xp = padForTaps(tf, x, g);
  const taps: tfjs.Tensor[] = [];
  for (let i = 0; i < g.filterHeight; i++) for (let j = 0; j < g.filterWidth; j++) taps.push(tf.sum(tf.mul(tap(tf, xp, g, i, j), dy), [0, 1, 2]));
  return tf.reshape(tf.stack(taps), filterShape);
}

/**
 * dx of a depthwise conv: spread dy onto the stride grid (zeros between), then a stride-1
 * depthwise conv with the spatially flipped filter over that grid padded by k-1-pad before.
 */
function depthwiseBackpropInput(tf: TF, dy: T4, filter: T4, inputShape: number[], g: ConvGeometry): tfjs.Tensor {
  const [n, oh, ow, c] = dy.shape;
  const [, h, w] = inputShape as [number, number, number, number];
  let u: T4 = dy;
  if (g.strideHeight > 1) u = tf.reshape(tf.pad(tf.reshape(u, [n, oh, 1, ow, c]), [[0, 0], [0, 0], [0, g.strideHeight - 1], [0, 0], [0, 0]]), [n, oh * g.strideHeight, ow, c]);
  if (g.strideWidth > 1) u = tf.reshape(tf.pad(tf.reshape(u, [n, oh * g.strideHeight, ow, 1, c]), [[0, 0], [0, 0], [0, 0], [0, g.strideWidth - 1], [0, 0]]), [n, oh * g.strideHeight, ow * g.strideWidth, c]);
  const before = [g.filterHeight - 1 - g.top, g.filterWidth - 1 - g.left] as const;
  const needH = h + g.filterHeight - 1;
  const needW = w + g.filterWidth - 1;
  let p = tf.pad(u, [[0, 0], [before[0], Math.max(0, needH - before[0] - u.shape[1])], [before[1], Math.max(0, needW - before[1] - u.shape[2])], [0, 0]]);
  if (p.shape[1] > needH || p.shape[2] > needW) p = tf.slice(p, [0, 0, 0, 0], [-1, needH, needW, -1]);
  return tf.depthwiseConv2d(p, tf.reverse(filter, [0, 1]), 1, 'valid');
}

interface KernelArgs {
  inputs: Record<string, tfjs.TensorInfo | undefined>;
  attrs?: Record<string, unknown>;
}

/** Registers the three kernels for the 'wasm' backend (once; later calls do nothing). */
export function registerWasmGradientKernels(tf: TF): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  // Kernels are handed the op's input Tensors (TensorInfos in general): the composed ops need Tensors.
  const tensor = (t: tfjs.TensorInfo) => ((t as { rank?: number }).rank != null ? t : tf.engine().makeTensorFromTensorInfo(t)) as T4;
  const attr = <T>(a: KernelArgs['attrs'], k: string) => (a ?? {})[k] as T;
  const check = (name: string, dilations: unknown) => {
    const d = dilations ?? 1;
    if (!(d === 1 || (Array.isArray(d) && d.every((v) => v === 1)))) throw new Error(`${name} (peer kernel for wasm): dilations other than 1 are not implemented`);
  };
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }: KernelArgs) =>
      tf.tidy(() => {
        if (attr<string>(attrs, 'dataFormat') === 'NCHW') throw new Error('Conv2DBackpropFilter (peer kernel for wasm): NCHW is not implemented');
        const x = tensor(inputs.x!);
        const dy = tensor(inputs.dy!);
        const filterShape = attr<number[]>(attrs, 'filterShape');
        const g = geometry(tf, x.shape, filterShape, attr(attrs, 'strides'), attr(attrs, 'pad'), attr(attrs, 'dimRoundingMode'), false);
        return conv2dBackpropFilter(tf, x, dy, filterShape, g);
      }) as unknown as tfjs.TensorInfo,
  });
  tf.registerKernel({
    kernelName: 'DepthwiseConv2dNativeBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }: KernelArgs) =>
      tf.tidy(() => {
        check('DepthwiseConv2dNativeBackpropFilter', attr(attrs, 'dilations'));
        const x = tensor(inputs.x!);
        const dy = tensor(inputs.dy!);
        const filterShape = attr<number[]>(attrs, 'filterShape');
        if (filterShape[3] !== 1) throw new Error('DepthwiseConv2dNativeBackpropFilter (peer kernel for wasm): channel multiplier other than 1 is not implemented');
        const g = geometry(tf, x.shape, filterShape, attr(attrs, 'strides'), attr(attrs, 'pad'), attr(attrs, 'dimRoundingMode'), true);
        return depthwiseBackpropFilter(tf, x, dy, filterShape, g);
      }) as unknown as tfjs.TensorInfo,
  });
  tf.registerKernel({
    kernelName: 'DepthwiseConv2dNativeBackpropInput',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }: KernelArgs) =>
      tf.tidy(() => {
        check('DepthwiseConv2dNativeBackpropInput', attr(attrs, 'dilations'));
        const dy = tensor(inputs.dy!);
        const filter = tensor(inputs.filter!);
        if (filter.shape[3] !== 1) throw new Error('DepthwiseConv2dNativeBackpropInput (peer kernel for wasm): channel multiplier other than 1 is not implemented');
        const inputShape = attr<number[]>(attrs, 'inputShape');
        const g = geometry(tf, inputShape, filter.shape, attr(attrs, 'strides'), attr(attrs, 'pad'), attr(attrs, 'dimRoundingMode'), true);
        return depthwiseBackpropInput(tf, dy, filter, inputShape, g);
      }) as unknown as tfjs.TensorInfo,
  });
}
