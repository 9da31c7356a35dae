/** Evaluation shared by `canet train` (periodic) and `canet eval`: GPU confusion matrix over a dataset. */
import type { Engine } from '../engine/engine.js';
import { ConfusionMatrix, type SegmentationScores } from '../engine/ops/metrics.js';
import type { CANet } from '../net/canet.js';
import { uploadBatch } from '../net/train.js';
import type { Dataset } from './data.js';

export interface EvalResult extends SegmentationScores {
  images: number;
  seconds: number;
  imagesPerSecond: number;
}

/** Runs the model (eval mode) over `data` at w x h, batches of `batch`, and scores it. */
export async function evaluate(engine: Engine, model: CANet, data: Dataset, w: number, h: number, batch: number, ignoreIndex = 255): Promise<EvalResult> {
  const wasTraining = model.training;
  model.eval();
  const cm = new ConfusionMatrix(engine, model.options.classes, ignoreIndex);
  const t0 = performance.now();
  try {
    for (let i = 0; i < data.size; i += batch) {
      const idx = Array.from({ length: Math.min(batch, data.size - i) }, (_, k) => i + k);
      const samples = await Promise.all(idx.map((k) => data.get(k)));
      engine.scope(() => {
        const { images, labels } = uploadBatch(engine, samples, w, h);
        cm.add(model.segment(images), labels);
      });
      await engine.flush();
    }
    const scores = await cm.scores();
    const seconds = (performance.now() - t0) / 1000;
    return { ...scores, images: data.size, seconds, imagesPerSecond: data.size / seconds };
  } finally {
    cm.dispose();
    model.train(wasTraining);
  }
}
