/** float64 references of image/label preprocessing: crop window + flip + bilinear (PyTorch align_corners=false) + normalisation. */
export interface RefCrop { x: number; y: number; width: number; height: number }

export function refImageToTensor(
  data: ArrayLike<number>, w: number, h: number, ch: number, ow: number, oh: number,
  mean: readonly number[], std: readonly number[], crop: RefCrop = { x: 0, y: 0, width: w, height: h }, flip = false,
): Float64Array {
  const out = new Float64Array(ow * oh * 3);
  const px = (x: number, y: number, c: number) => data[(y * w + x) * ch + c]!;
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++) {
      const fx = flip ? ow - 1 - ox : ox;
      const sx = Math.max(crop.x + (fx + 0.5) * (crop.width / ow) - 0.5, 0);
      const sy = Math.max(crop.y + (oy + 0.5) * (crop.height / oh) - 0.5, 0);
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

/** Nearest-neighbour label sampling with the same window and flip. */
export function refLabelsToTensor(data: ArrayLike<number>, w: number, h: number, ow: number, oh: number, crop: RefCrop = { x: 0, y: 0, width: w, height: h }, flip = false): number[] {
  const out: number[] = [];
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++) {
      const fx = flip ? ow - 1 - ox : ox;
      const x = Math.min(Math.floor(Math.max(crop.x + (fx + 0.5) * (crop.width / ow), 0)), w - 1);
      const y = Math.min(Math.floor(Math.max(crop.y + (oy + 0.5) * (crop.height / oh), 0)), h - 1);
      out.push(data[y * w + x]!);
    }
  return out;
}
