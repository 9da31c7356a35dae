/** A loss / mIoU curve as a self-contained SVG, from metrics.jsonl (no plotting dependency needed). */
import { readFile, writeFile } from 'node:fs/promises';

export async function writeCurve(metricsPath: string, svgPath: string): Promise<void> {
  const text = await readFile(metricsPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return ''; // nothing logged (a resume of a finished run)
    throw e;
  });
  const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss?: number; miou?: number });
  await writeFile(svgPath, curveSvg(lines));
}

export function curveSvg(rows: { step: number; loss?: number; miou?: number }[]): string {
  const W = 640, H = 320, L = 56, R = 56, T = 24, B = 40;
  const loss = rows.filter((r) => r.loss !== undefined && Number.isFinite(r.loss)) as { step: number; loss: number }[];
  const miou = rows.filter((r) => r.miou !== undefined && Number.isFinite(r.miou)) as { step: number; miou: number }[];
  const maxStep = Math.max(1, ...rows.map((r) => r.step));
  const maxLoss = Math.max(1e-9, ...loss.map((r) => r.loss));
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const yLoss = (v: number) => T + (H - T - B) * (1 - v / maxLoss);
  const yMiou = (v: number) => T + (H - T - B) * (1 - v);
  const path = (pts: [number, number][]) => pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${H}" fill="white"/>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#444"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#444"/><line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#444"/>
${ticks.map((t) => `<text x="${L - 6}" y="${yLoss(t * maxLoss) + 4}" text-anchor="end" fill="#1f77b4">${(t * maxLoss).toFixed(2)}</text><text x="${W - R + 6}" y="${yMiou(t) + 4}" fill="#d62728">${(100 * t).toFixed(0)}%</text>`).join('\n')}
${ticks.map((t) => `<text x="${x(t * maxStep)}" y="${H - B + 16}" text-anchor="middle">${Math.round(t * maxStep)}</text>`).join('')}
<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">step</text>
<text x="${L}" y="14" fill="#1f77b4">training loss</text><text x="${W - R}" y="14" text-anchor="end" fill="#d62728">validation mIoU</text>
<path d="${path(loss.map((r) => [x(r.step), yLoss(r.loss)]))}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
<path d="${path(miou.map((r) => [x(r.step), yMiou(r.miou)]))}" fill="none" stroke="#d62728" stroke-width="2"/>
${miou.map((r) => `<circle cx="${x(r.step)}" cy="${yMiou(r.miou)}" r="3" fill="#d62728"/>`).join('')}
</svg>
`;
}
