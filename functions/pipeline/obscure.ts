/**
 * Fallback covers for faces the generator cannot replace (too small, unreliable landmarks), for faces that stay
 * recognisable after FALCO's retries (`onRecognisable: 'obscure'`) and for faces the residual scan finds on the
 * output. Issue #10.
 *
 * Region: the detector box grown to the whole head-front — 25 % of its width on each side (cheeks, ears),
 * 45 % of its height upwards (forehead, hairline: SSD boxes stop at the brows) and 15 % downwards (chin) —
 * united with any extra region (the FALCO paste region when a replaced face is obscured), as a hard-edged
 * rectangle. Not the landmark hull: a fallback exists precisely because landmarks may be wrong, and the hull
 * leaves hair and outline, which recognizers use (face-api's 128-D net judged a face with its inner part
 * replaced by a blob "same person" at 0.559).
 *
 * Methods (strength measured by `npm run bench -- fallbacks`, figures in the README):
 * - `pixelate`: a mosaic of ~`PIXELATE_BLOCKS` blocks across the region's longer side (the face itself spans
 *   about 4), each block's mean shifted by seeded uniform noise (±`PIXELATE_NOISE` per channel). Few blocks
 *   because mosaics of many small blocks are re-identified by trained recognizers; the noise because even a
 *   coarse mosaic keeps the exact mean colours, which an attacker can match against candidate faces. The default.
 * - `fill`: the region's mean colour, flat: nothing of the face is left. The strongest, the least pleasant.
 * - `blur`: a Gaussian of σ = region side / 8 (three box passes). It keeps the face's layout and colours;
 *   on large faces it can leave a face recognisable, so it is never the default and a customer choosing it
 *   is told so in the API docs.
 */
import type { RgbImage } from './image-io.js';
import type { Box, FaceMethod } from './types.js';
import { mulberry32 as rng } from './prng.js';

export type FallbackMethod = Exclude<FaceMethod, 'falco'>;

export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export const PIXELATE_BLOCKS = 6;
export const PIXELATE_NOISE = 40;

/** The fallback region of a face (integer, half-open, clipped to the image); null when nothing is inside. */
export function fallbackRegion(box: Box, width: number, height: number, extra?: Rect): Rect | null {
  let x0 = box.x - 0.25 * box.width;
  let x1 = box.x + 1.25 * box.width;
  let y0 = box.y - 0.45 * box.height;
  let y1 = box.y + 1.15 * box.height;
  if (extra) {
    x0 = Math.min(x0, extra.x0);
    y0 = Math.min(y0, extra.y0);
    x1 = Math.max(x1, extra.x1);
    y1 = Math.max(y1, extra.y1);
  }
  const r = {
    x0: Math.max(0, Math.floor(x0)),
    y0: Math.max(0, Math.floor(y0)),
    x1: Math.min(width, Math.ceil(x1)),
    y1: Math.min(height, Math.ceil(y1)),
  };
  return r.x1 > r.x0 && r.y1 > r.y0 ? r : null;
}

const clamp8 = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

function pixelate(img: RgbImage, r: Rect, seed: number): void {
  const w = r.x1 - r.x0;
  const h = r.y1 - r.y0;
  const block = Math.max(1, Math.ceil(Math.max(w, h) / PIXELATE_BLOCKS));
  const rand = rng(seed);
  const d = img.data;
  for (let by = r.y0; by < r.y1; by += block)
    for (let bx = r.x0; bx < r.x1; bx += block) {
      const ex = Math.min(r.x1, bx + block);
      const ey = Math.min(r.y1, by + block);
      const sum = [0, 0, 0];
      for (let y = by; y < ey; y++)
        for (let x = bx; x < ex; x++) {
          const i = (y * img.width + x) * 3;
          sum[0] += d[i]!;
          sum[1] += d[i + 1]!;
          sum[2] += d[i + 2]!;
        }
      const n = (ex - bx) * (ey - by);
      const c = sum.map((s) => clamp8(s / n + (rand() * 2 - 1) * PIXELATE_NOISE));
      for (let y = by; y < ey; y++)
        for (let x = bx; x < ex; x++) {
          const i = (y * img.width + x) * 3;
          d[i] = c[0]!;
          d[i + 1] = c[1]!;
          d[i + 2] = c[2]!;
        }
    }
}

function fill(img: RgbImage, r: Rect): void {
  const d = img.data;
  const sum = [0, 0, 0];
  for (let y = r.y0; y < r.y1; y++)
    for (let x = r.x0; x < r.x1; x++) {
      const i = (y * img.width + x) * 3;
      sum[0] += d[i]!;
      sum[1] += d[i + 1]!;
      sum[2] += d[i + 2]!;
    }
  const n = (r.x1 - r.x0) * (r.y1 - r.y0);
  const c = sum.map((s) => clamp8(s / n));
  for (let y = r.y0; y < r.y1; y++)
    for (let x = r.x0; x < r.x1; x++) {
      const i = (y * img.width + x) * 3;
      d[i] = c[0]!;
      d[i + 1] = c[1]!;
      d[i + 2] = c[2]!;
    }
}

/** One box-filter pass of radius `rad` along rows (`horizontal`) or columns, inside the region, edge-clamped. */
function boxPass(img: RgbImage, r: Rect, rad: number, horizontal: boolean): void {
  const d = img.data;
  const len = horizontal ? r.x1 - r.x0 : r.y1 - r.y0;
  const lines = horizontal ? r.y1 - r.y0 : r.x1 - r.x0;
  const buf = new Float64Array(len * 3);
  const idx = (line: number, k: number): number =>
    horizontal ? ((r.y0 + line) * img.width + r.x0 + k) * 3 : ((r.y0 + k) * img.width + r.x0 + line) * 3;
  for (let line = 0; line < lines; line++) {
    for (let k = 0; k < len; k++) {
      const i = idx(line, k);
      buf[k * 3] = d[i]!;
      buf[k * 3 + 1] = d[i + 1]!;
      buf[k * 3 + 2] = d[i + 2]!;
    }
    // Running sum over [k − rad, k + rad], indices clamped to the line.
    const at = (k: number, c: number): number => buf[Math.min(len - 1, Math.max(0, k)) * 3 + c]!;
    const acc = [0, 0, 0];
    for (let c = 0; c < 3; c++) for (let k = -rad; k <= rad; k++) acc[c]! += at(k, c);
    const n = 2 * rad + 1;
    for (let k = 0; k < len; k++) {
      const i = idx(line, k);
      for (let c = 0; c < 3; c++) {
        d[i + c] = clamp8(acc[c]! / n);
        acc[c]! += at(k + rad + 1, c) - at(k - rad, c);
      }
    }
  }
}

function blur(img: RgbImage, r: Rect): void {
  const sigma = Math.max(r.x1 - r.x0, r.y1 - r.y0) / 8;
  // Three box passes of width w approximate a Gaussian of variance 3·(w² − 1)/12.
  const rad = Math.max(1, Math.round((Math.sqrt(4 * sigma * sigma + 1) - 1) / 2));
  for (let p = 0; p < 3; p++) {
    boxPass(img, r, rad, true);
    boxPass(img, r, rad, false);
  }
}

/** A copy of `image` with `region` covered by `method` (the alpha channel, if any, is kept). */
export function obscureRegion(image: RgbImage, region: Rect, method: FallbackMethod, seed = 0): RgbImage {
  const out: RgbImage = { width: image.width, height: image.height, data: new Uint8Array(image.data) };
  if (image.alpha) out.alpha = image.alpha;
  if (method === 'pixelate') pixelate(out, region, seed);
  else if (method === 'fill') fill(out, region);
  else if (method === 'blur') blur(out, region);
  else throw new RangeError(`unknown fallback method ${String(method)}`);
  return out;
}

/** Covers one face: region from its box (and `extra`), then `obscureRegion`. Returns the region covered. */
export function obscureFace(
  image: RgbImage,
  box: Box,
  method: FallbackMethod,
  seed = 0,
  extra?: Rect,
): { image: RgbImage; region: Rect | null } {
  const region = fallbackRegion(box, image.width, image.height, extra);
  if (!region) return { image, region };
  return { image: obscureRegion(image, region, method, seed), region };
}
