/**
 * The training step compared between Node and the page: a small CANet (same seed, so the same
 * initial weights on both sides), the same batch bytes (made once in Node and sent to the page),
 * two SGD steps; the losses before and after the first update are what is compared.
 * Platform-neutral, like kernel-checks.ts.
 */
import { canet, SGD, trainStep, uploadBatch, type Engine, type Sample } from '../../entry/index.js';

export const TRAIN_SETUP = {
  width: 64,
  height: 64,
  seeds: [11, 12],
  model: { classes: 19, width: 0.25, head: 'plain', seed: 5 } as const,
  sgd: { lr: 0.01, momentum: 0.9 },
};

/** Losses of two consecutive training steps (the second one sees the first update). */
export async function twoTrainingSteps(e: Engine, samples: Sample[]): Promise<number[]> {
  const model = canet(e, TRAIN_SETUP.model);
  const opt = new SGD(model.parameters(), TRAIN_SETUP.sgd);
  try {
    const losses: number[] = [];
    for (let step = 0; step < 2; step++) {
      const loss = e.scope(() => {
        const { images, labels } = uploadBatch(e, samples, TRAIN_SETUP.width, TRAIN_SETUP.height);
        return trainStep(model, opt, images, labels);
      });
      losses.push((await loss.read())[0]!);
      loss.dispose();
    }
    return losses;
  } finally {
    opt.dispose();
    model.dispose();
  }
}
