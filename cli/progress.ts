/** Training progress: a redrawn bar on a TTY, plain log lines otherwise (CI logs, pipes). */

export interface ProgressState {
  step: number;
  total: number;
  loss: number;
  imagesPerSecond: number;
  extra?: string;
}

export class Progress {
  private readonly tty: boolean;
  private lastPlain = 0;
  private readonly started = Date.now();
  constructor(private readonly out: NodeJS.WriteStream = process.stdout, private readonly plainEveryMs = 5000) {
    this.tty = Boolean(out.isTTY);
  }

  update(s: ProgressState, force = false): void {
    const elapsed = (Date.now() - this.started) / 1000;
    const etaS = s.step > 0 ? (elapsed / s.step) * (s.total - s.step) : NaN;
    const text = `step ${s.step}/${s.total}  loss ${s.loss.toFixed(4)}  ${s.imagesPerSecond.toFixed(2)} img/s  ETA ${formatDuration(etaS)}${s.extra ? '  ' + s.extra : ''}`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((width * s.step) / Math.max(1, s.total));
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      if (s.step >= s.total) this.out.write('\n');
    } else if (force || Date.now() - this.lastPlain >= this.plainEveryMs || s.step >= s.total) {
      this.lastPlain = Date.now();
      this.out.write(text + '\n');
    }
  }

  /** A line that must not be overwritten by the bar. */
  log(line: string): void {
    this.out.write((this.tty ? '\r\x1b[K' : '') + line + '\n');
  }
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
