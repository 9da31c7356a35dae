/**
 * One training step of a segmentation model on the GPU (forward, loss, backward, optimizer update),
 * and batch upload with GPU-side augmentation. Platform-neutral: the CLI adds files and data.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { backward } from '../engine/autograd.js';
import { softmaxCrossEntropy } from '../engine/ops/loss.js';
import { imageToTensor, labelsToTensor, type CropWindow } from '../engine/ops/preprocess.js';
import type { Optimizer } from '../engine/optim.js';
import { SeededRandom } from './init.js';
import { ShapeError, fmtShape } from '../engine/errors.js';

export interface Sample {
  /** RGB bytes, height x width x 3 (or RGBA, height x width x 4, with `channels: 4`: ImageData's layout). */
  image: Uint8Array | Uint8ClampedArray;
  /** 3 (default) or 4 (alpha ignored). */
  channels?: 3 | 4;
  /** Train ids, height x width. */
  labels: Uint8Array;
  width: number;
  height: number;
}

export interface AugmentOptions {
  /** Random zoom in [1, maxScale]: a window of 1/scale of the image, resampled to the output size. */
  maxScale?: number;
  /** Mirror with probability 0.5. */
  flip?: boolean;
}

/** The window and mirror for one sample, drawn from `rng` (deterministic per seed). */
export function drawAugmentation(rng: SeededRandom, w: number, h: number, opts: AugmentOptions): { crop: CropWindow; flip: boolean } {
  const scale = 1 + rng.uniform() * Math.max(0, (opts.maxScale ?? 1) - 1);
  const cw = w / scale;
  const ch = h / scale;
  const crop = { x: rng.uniform() * (w - cw), y: rng.uniform() * (h - ch), width: cw, height: ch };
  const flip = opts.flip ? rng.uniform() < 0.5 : false;
  return { crop, flip };
}

/**
 * Uploads samples as a batch: images [N, H, W, 3] normalised and labels [N, H, W] u32, resized to
 * outW x outH, with augmentation drawn from `seed` when given (so a resumed run draws the same).
 * `into` writes them into existing tensors of those shapes (the fixed inputs of a captured step).
 */
export function uploadBatch(engine: Engine, samples: Sample[], outW: number, outH: number, augment?: AugmentOptions & { seed: number }, into?: { images: Tensor; labels: Tensor }): { images: Tensor; labels: Tensor } {
  const images = into?.images ?? engine.empty([samples.length, outH, outW, 3], 'f32', 'images');
  const labels = into?.labels ?? engine.empty([samples.length, outH, outW], 'u32', 'labels');
  const rng = augment ? new SeededRandom(augment.seed) : null;
  try {
    samples.forEach((s, i) => {
      const aug = rng ? drawAugmentation(rng, s.width, s.height, augment!) : { crop: undefined, flip: false };
      imageToTensor(engine, { data: s.image, width: s.width, height: s.height, channels: s.channels ?? 3 }, { outWidth: outW, outHeight: outH, crop: aug.crop, flip: aug.flip, into: { tensor: images, index: i } });
      labelsToTensor(engine, { data: s.labels, width: s.width, height: s.height }, { outWidth: outW, outHeight: outH, crop: aug.crop, flip: aug.flip, into: { tensor: labels, index: i } });
    });
  } catch (e) {
    // A refused sample leaves nothing allocated: the batch tensors made here go too.
    if (!into) {
      images.dispose();
      labels.dispose();
    }
    throw e;
  }
  return { images, labels };
}

export interface TrainableModel {
  forward(x: Tensor): Tensor;
  train(on?: boolean): unknown;
}

/**
 * Forward, cross-entropy, backward and one optimizer update, all recorded on the GPU with no
 * readback. Returns the loss (a one-element tensor the caller disposes or reads; see
 * checkLossFinite for the one readback per step that also reports invalid labels).
 */
export function trainStep(model: TrainableModel, optimizer: Optimizer, images: Tensor, labels: Tensor, opts: { ignoreIndex?: number; classWeights?: Tensor | null } = {}): Tensor {
  const engine = images.engine;
  // Checked before the forward pass, which in training mode would already move BatchNorm's
  // running statistics (and allocate) before the loss refused its labels.
  for (const [what, t] of [['images', images], ['labels', labels]] as const) {
    if (t.engine !== engine) throw new ShapeError(`trainStep: ${what} ${t.name} belongs to another engine than the images`);
    if (t.disposed) throw new ShapeError(`trainStep: ${what} ${t.name} ${fmtShape(t.shape)} was disposed`);
  }
  const [n, h, w] = images.shape;
  if (images.rank !== 4 || labels.rank !== 3 || labels.shape[0] !== n || labels.shape[1] !== h || labels.shape[2] !== w)
    throw new ShapeError(`trainStep: labels ${fmtShape(labels.shape)} must be [N, H, W] of images ${fmtShape(images.shape)}`);
  if (labels.dtype === 'f32') throw new ShapeError(`trainStep: labels ${labels.name} must be integer class ids (u32 or i32), got f32`);
  model.train(true);
  // A captured step replays on a model that evaluation may have switched to eval mode since.
  engine.onReplay(() => model.train(true));
  const loss = engine.scope(() => {
    optimizer.zeroGrad();
    const logits = model.forward(images);
    const l = softmaxCrossEntropy(logits, labels, { ignoreIndex: opts.ignoreIndex ?? 255, classWeights: opts.classWeights ?? null });
    backward(l);
    optimizer.step();
    return l;
  });
  return loss;
}
