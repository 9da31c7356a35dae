/** float64 reference of image preprocessing: bilinear resize (PyTorch align_corners=false) + normalisation. */
export function refImageToTensor(
  data: ArrayLike<number>, w: number, h: number, ch: number, ow: number, oh: number,
  mean: readonly number[], std: readonly number[],
): Float64Array {
  const out = new Float64Array(ow * oh * 3);
  const px = (x: number, y: number, c: number) => data[(y * w + x) * ch + c]!;
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++) {
      const sx = Math.max((ox + 0.5) * (w / ow) - 0.5, 0);
      const sy = Math.max((oy + 0.5) * (h / oh) - 0.5, 0);
      const x0 = Math.min(Math.floor(sx), w - 1), y0 = Math.min(Math.floor(sy), h - 1);
      const x1 = Math.min(x0 + 1, w - 1), y1 = Math.min(y0 + 1, h - 1);
      const lx = sx - x0, ly = sy - y0;
      for (let c = 0; c < 3; c++) {
        const top = px(x0, y0, c) * (1 - lx) + px(x1, y0, c) * lx;
        const bot = px(x0, y1, c) * (1 - lx) + px(x1, y1, c) * lx;
        const v = (top * (1 - ly) + bot * ly) / 255;
        out[(oy * ow + ox) * 3 + c] = (v - mean[c]!) / std[c]!;
      }
    }
  return out;
}
