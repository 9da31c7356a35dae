/**
 * Training and evaluation data for the CLI: the synthetic street scenes (generated on the fly,
 * deterministic per seed) or image/label folders (decoded asynchronously, prefetched one batch
 * ahead so decoding overlaps the GPU's work).
 */
import { generateScene, syntheticSeeds } from '../data/synthetic.js';
import { findPairs, loadPair } from '../data/datasets.js';
import type { ImageReadOptions } from '../data/image-io.js';
import type { Sample } from '../net/train.js';
import { SeededRandom } from '../net/init.js';

export interface Dataset {
  readonly name: string;
  readonly size: number;
  get(i: number): Promise<Sample>;
}

export function syntheticDataset(count: number, split: 'train' | 'val', width: number, height: number): Dataset {
  const seeds = syntheticSeeds(count, split);
  return {
    name: `synthetic ${split} (${count} scenes, ${width}x${height})`,
    size: count,
    async get(i) {
      const s = generateScene(seeds[i]!, width, height);
      return { image: s.image, labels: s.labels, width, height };
    },
  };
}

export function folderDataset(root: string, split?: string, imageOpts: ImageReadOptions = {}): Dataset {
  const pairs = findPairs(root, split);
  return {
    name: `${root}${split ? ` (${split})` : ''}: ${pairs.length} pairs`,
    size: pairs.length,
    async get(i) {
      const p = await loadPair(pairs[i]!, imageOpts);
      return { image: p.image, labels: p.labels, width: p.width, height: p.height };
    },
  };
}

/** Sample indices of the batch at `step`: a fresh seeded permutation each epoch, so any step's batch is known without replaying earlier ones (exact resume). */
export function batchIndices(size: number, batch: number, step: number, seed: number): number[] {
  const out: number[] = [];
  const perEpoch = size;
  for (let k = 0; k < batch; k++) {
    const flat = step * batch + k;
    const epoch = Math.floor(flat / perEpoch);
    out.push(permutation(size, seed * 1_000_003 + epoch)[flat % perEpoch]!);
  }
  return out;
}

const permCache = new Map<string, number[]>();
function permutation(n: number, seed: number): number[] {
  const key = `${n}:${seed}`;
  let p = permCache.get(key);
  if (!p) {
    const rng = new SeededRandom(seed);
    p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    if (permCache.size > 4) permCache.clear();
    permCache.set(key, p);
  }
  return p;
}

/**
 * Loads batches one ahead: after step s is submitted to the GPU, `ahead(s + 1)` decodes the next
 * batch on the CPU while the GPU computes (the event loop is free while we wait for the GPU).
 */
export class Prefetcher {
  private next: { step: number; samples: Promise<Sample[]> } | null = null;
  constructor(private readonly data: Dataset, private readonly batch: number, private readonly seed: number) {}

  private load(step: number): Promise<Sample[]> {
    return Promise.all(batchIndices(this.data.size, this.batch, step, this.seed).map((i) => this.data.get(i)));
  }

  /** The samples of `step` (prefetched if ahead(step) ran). */
  take(step: number): Promise<Sample[]> {
    const ready = this.next?.step === step ? this.next.samples : this.load(step);
    this.next = null;
    return ready;
  }

  /** Starts loading `step` on the next turn of the event loop. */
  ahead(step: number): void {
    const samples = new Promise<Sample[]>((resolve, reject) => setImmediate(() => this.load(step).then(resolve, reject)));
    samples.catch(() => {}); // surfaces when (and if) take(step) is called
    this.next = { step, samples };
  }
}
