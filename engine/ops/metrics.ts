/**
 * Confusion matrix and IoU for segmentation, accumulated on the GPU across batches: each batch adds
 * its pixels with atomics; one K*K readback at the end gives per-class IoU, mIoU and pixel accuracy.
 */
import metrics from '../../shaders/metrics.wgsl';
import type { Engine } from '../engine.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { fill } from './basic.js';
import { grid1d, read, readWrite } from '../program.js';
import { WG, sectionSpec } from './shader.js';
import type { Tensor } from '../tensor.js';

/** counts [K * K + 1]: counts[label * K + pred], then the invalid-label count. Ids are read as u32 bits. */
const CONFUSION_MATRIX = {
  uniforms: { n: 'u32', classes: 'u32', ignore_index: 'u32' },
  bindings: { pred: read('u32'), labels: read('u32'), counts: readWrite('atomic<u32>') },
} as const;

export interface SegmentationScores {
  /** counts[label][pred] */
  confusion: number[][];
  /** Per class: TP / (TP + FP + FN); NaN for a class absent from both labels and predictions. */
  iou: number[];
  /** Mean IoU over classes that occur (NaN entries skipped). */
  miou: number;
  pixelAccuracy: number;
  pixels: number;
  /** Pixels whose label was neither a class nor the ignore index. */
  invalidLabels: number;
}

export class ConfusionMatrix {
  private readonly counts: Tensor;
  constructor(readonly engine: Engine, readonly classes: number, readonly ignoreIndex = 255) {
    check(Number.isInteger(classes) && classes > 0, 'ConfusionMatrix', () => `classes must be a positive integer, got ${classes}`);
    this.counts = fill(engine.empty([classes * classes + 1], 'u32').keep(), 0);
  }

  /** Adds a batch: predicted ids and labels (i32/u32) of the same shape. */
  add(pred: Tensor, labels: Tensor): void {
    checkOperands('ConfusionMatrix.add', this.counts, pred, labels);
    check(pred.size === labels.size && pred.shape.every((d, i) => d === labels.shape[i]), 'ConfusionMatrix.add', () =>
      `predictions ${fmtShape(pred.shape)} and labels ${fmtShape(labels.shape)} must have the same shape`);
    for (const t of [pred, labels]) check(t.dtype !== 'f32', 'ConfusionMatrix.add', () => `${t.name} must hold integer class ids, got f32`);
    this.engine.run({
      name: 'confusion_matrix',
      shader: () => sectionSpec(CONFUSION_MATRIX, metrics, 'confusion_matrix', { WG }),
      uniforms: { n: pred.size, classes: this.classes, ignore_index: this.ignoreIndex },
      bindings: { pred, labels, counts: this.counts },
      dispatch: grid1d(pred.size, WG, this.engine.limits.maxComputeWorkgroupsPerDimension),
    });
  }

  reset(): void {
    fill(this.counts, 0);
  }

  /** Reads the counts back (one readback) and derives IoU, mIoU and pixel accuracy. */
  async scores(): Promise<SegmentationScores> {
    const raw = await this.counts.read();
    const K = this.classes;
    const confusion = Array.from({ length: K }, (_, y) => Array.from(raw.subarray(y * K, (y + 1) * K)));
    return scoresFromConfusion(confusion, raw[K * K]!);
  }

  dispose(): void {
    this.counts.dispose();
  }
}

/** IoU per class, mIoU over the classes that occur, and pixel accuracy from counts[label][pred]. */
export function scoresFromConfusion(confusion: number[][], invalidLabels = 0): SegmentationScores {
  const K = confusion.length;
  let pixels = 0;
  let correct = 0;
  const iou: number[] = [];
  for (let k = 0; k < K; k++) {
    const tp = confusion[k]![k]!;
    let fn = 0;
    let fp = 0;
    for (let j = 0; j < K; j++) {
      pixels += confusion[k]![j]!;
      if (j !== k) {
        fn += confusion[k]![j]!;
        fp += confusion[j]![k]!;
      }
    }
    correct += tp;
    iou.push(tp + fp + fn === 0 ? NaN : tp / (tp + fp + fn));
  }
  const present = iou.filter((v) => !Number.isNaN(v));
  return {
    confusion,
    iou,
    miou: present.length ? present.reduce((a, b) => a + b, 0) / present.length : NaN,
    pixelAccuracy: pixels ? correct / pixels : NaN,
    pixels,
    invalidLabels,
  };
}
