/**
 * FFHQ face alignment (the crop StyleGAN2/e4e/FALCO were trained on), computed from 68-point landmarks, plus the
 * geometric warp used both to cut the aligned crop out of a photo and to put a crop back.
 *
 * The crop rectangle follows the FFHQ dataset recipe exactly (NVlabs ffhq-dataset `recreate_aligned_images`):
 *   eyeL = mean(lm[36..41]), eyeR = mean(lm[42..47]), eyeAvg = (eyeL+eyeR)/2, eyeToEye = eyeR-eyeL,
 *   mouthAvg = (lm[48]+lm[54])/2, eyeToMouth = mouthAvg-eyeAvg,
 *   x = eyeToEye - rot90(eyeToMouth), rot90(v) = (-v.y, v.x); x = x/|x| * max(2|eyeToEye|, 1.8|eyeToMouth|),
 *   y = rot90(x), c = eyeAvg + 0.1 eyeToMouth,
 *   quad = [c-x-y, c-x+y, c+x+y, c+x-y] = photo positions of the crop's top-left, bottom-left, bottom-right,
 *   top-right corners.
 * Because x ⟂ y and |x| = |y| the quad is a square, so the map crop→photo is a similarity (rotation + uniform
 * scale + translation): one 3×3 matrix holds it, and its inverse is exact. We keep both.
 *
 * Coordinates are continuous pixel coordinates: pixel (i, j) covers [i, i+1)×[j, j+1) and its centre is
 * (i+0.5, j+0.5). Landmarks from face-api are in the same convention (box-relative fractions × image size).
 *
 * Resampling (our own, not sharp's `affine`, which takes a 2×2 matrix plus offsets but has no supersampled
 * minification and no control of the reflection border we need): bilinear interpolation, and when the map shrinks
 * (more than one source pixel per output pixel) each output pixel averages a k×k grid of bilinear samples spread
 * over its footprint, k = ceil(shrink). That is an area (box) prefilter: the same effect FFHQ gets by first
 * shrinking the photo by an integer factor with an antialiasing filter and then transforming, but done in one pass
 * with no intermediate image, and without FFHQ's final 4096→N resize. Without it a 600-px face cut into a 256-px
 * crop would alias (moiré in hair, jagged edges) and the encoder/recognizers see a different face.
 *
 * Outside the photo, samples are mirrored (reflect padding). When the crop (plus FFHQ's border of 10 % of the quad
 * side) leaves the photo, `alignFace` also applies FFHQ's treatment of that padding (see `ffhqPaddedSource`): the
 * mirrored band is blurred and faded to the median colour, so the encoder and the recognisers see a plausible
 * backdrop instead of a mirrored half-face. The padding never reaches the output (paste-back keeps only the face
 * region). `coverage` reports how much of the crop came from real pixels.
 */
import { assertRgbImage, type RgbImage } from './image-io.js';

export type Point = [number, number];
/** Row-major 3×3 homogeneous matrix [a, b, c, d, e, f, g, h, i]; maps (x, y, 1). */
export type Mat3 = [number, number, number, number, number, number, number, number, number];

export interface Alignment {
  /** Output side N (crop is N×N). */
  size: number;
  /** Photo positions of the crop corners: top-left, bottom-left, bottom-right, top-right (FFHQ order). */
  quad: [Point, Point, Point, Point];
  /** photo → crop. */
  forward: Mat3;
  /** crop → photo. */
  inverse: Mat3;
  /** Photo pixels per crop pixel (>1: the face is larger in the photo than in the crop). */
  scale: number;
}

export interface AlignedFace {
  alignment: Alignment;
  crop: RgbImage;
  /** Fraction 0..1 of crop pixels whose centre maps inside the photo (1 = no padding was needed). */
  coverage: number;
}

/** 68-point iBUG/dlib landmark index ranges (half-open). */
export const LANDMARK_GROUPS = {
  jaw: [0, 17],
  browLeft: [17, 22],
  browRight: [22, 27],
  noseBridge: [27, 31],
  noseBottom: [31, 36],
  eyeLeft: [36, 42],
  eyeRight: [42, 48],
  mouthOuter: [48, 60],
  mouthInner: [60, 68],
} as const;

export function applyMat3(m: Mat3, p: Point): Point {
  const w = m[6] * p[0] + m[7] * p[1] + m[8];
  return [(m[0] * p[0] + m[1] * p[1] + m[2]) / w, (m[3] * p[0] + m[4] * p[1] + m[5]) / w];
}

export function multiplyMat3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++)
      r[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
  }
  return r as Mat3;
}

export function invertMat3(m: Mat3): Mat3 {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new RangeError('matrix is singular');
  const inv = [
    A,
    -(b * i - c * h),
    b * f - c * e,
    B,
    a * i - c * g,
    -(a * f - c * d),
    C,
    -(a * h - b * g),
    a * e - b * d,
  ];
  return inv.map((v) => v / det) as Mat3;
}

function mean(lm: readonly Point[], [s, e]: readonly [number, number]): Point {
  let x = 0;
  let y = 0;
  for (let k = s; k < e; k++) {
    x += lm[k][0];
    y += lm[k][1];
  }
  return [x / (e - s), y / (e - s)];
}

/** The FFHQ crop for 68 landmarks (see file comment). Throws RangeError on degenerate landmarks. */
export function ffhqAlignment(landmarks: readonly Point[], size: number): Alignment {
  if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
  if (!Number.isInteger(size) || size < 8)
    throw new RangeError(`crop size must be an integer ≥ 8, got ${size}`);
  for (const p of landmarks) {
    if (!Number.isFinite(p[0]) || !Number.isFinite(p[1]))
      throw new RangeError('landmarks must be finite numbers');
  }
  const eyeL = mean(landmarks, LANDMARK_GROUPS.eyeLeft);
  const eyeR = mean(landmarks, LANDMARK_GROUPS.eyeRight);
  const eyeAvg: Point = [(eyeL[0] + eyeR[0]) / 2, (eyeL[1] + eyeR[1]) / 2];
  const eyeToEye: Point = [eyeR[0] - eyeL[0], eyeR[1] - eyeL[1]];
  const mouthL = landmarks[48];
  const mouthR = landmarks[54];
  const mouthAvg: Point = [(mouthL[0] + mouthR[0]) / 2, (mouthL[1] + mouthR[1]) / 2];
  const eyeToMouth: Point = [mouthAvg[0] - eyeAvg[0], mouthAvg[1] - eyeAvg[1]];
  // x = eyeToEye - rot90(eyeToMouth), rot90(v) = (-v.y, v.x)
  let x: Point = [eyeToEye[0] + eyeToMouth[1], eyeToEye[1] - eyeToMouth[0]];
  const xn = Math.hypot(x[0], x[1]);
  const half = Math.max(
    Math.hypot(eyeToEye[0], eyeToEye[1]) * 2.0,
    Math.hypot(eyeToMouth[0], eyeToMouth[1]) * 1.8,
  );
  if (!(xn > 1e-6) || !(half > 1e-6))
    throw new RangeError('landmarks are degenerate (eyes and mouth coincide)');
  x = [(x[0] / xn) * half, (x[1] / xn) * half];
  const y: Point = [-x[1], x[0]];
  const c: Point = [eyeAvg[0] + eyeToMouth[0] * 0.1, eyeAvg[1] + eyeToMouth[1] * 0.1];
  const quad: [Point, Point, Point, Point] = [
    [c[0] - x[0] - y[0], c[1] - x[1] - y[1]],
    [c[0] - x[0] + y[0], c[1] - x[1] + y[1]],
    [c[0] + x[0] + y[0], c[1] + x[1] + y[1]],
    [c[0] + x[0] - y[0], c[1] + x[1] - y[1]],
  ];
  // crop (u, v) ∈ [0, N]² → photo: c + x(2u/N - 1) + y(2v/N - 1)
  const s = 2 / size;
  const inverse: Mat3 = [
    x[0] * s,
    y[0] * s,
    c[0] - x[0] - y[0],
    x[1] * s,
    y[1] * s,
    c[1] - x[1] - y[1],
    0,
    0,
    1,
  ];
  return { size, quad, forward: invertMat3(inverse), inverse, scale: (2 * half) / size };
}

export interface WarpOptions {
  /** Destination rectangle to fill (default: whole destination). */
  region?: { x0: number; y0: number; x1: number; y1: number };
  /** Override the automatic supersampling factor (1 = plain bilinear). */
  supersample?: number;
}

/** Mirrors an index into [0, n) ("symmetric" reflection: the edge pixel is repeated once, like np.pad symmetric). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * n;
  let k = i % period;
  if (k < 0) k += period;
  return k < n ? k : period - 1 - k;
}

/**
 * Adds the bilinear sample of `src` at continuous coordinate (x, y) (mirrored outside) to acc[0..2].
 */
function sampleBilinear(src: RgbImage, x: number, y: number, acc: Float64Array): void {
  const fx = x - 0.5;
  const fy = y - 0.5;
  const x0 = Math.floor(fx);
  const y0 = Math.floor(fy);
  const tx = fx - x0;
  const ty = fy - y0;
  const w = src.width;
  const h = src.height;
  const d = src.data;
  let xa = x0;
  let xb = x0 + 1;
  let ya = y0;
  let yb = y0 + 1;
  if (xa < 0 || xb >= w) {
    xa = reflect(xa, w);
    xb = reflect(xb, w);
  }
  if (ya < 0 || yb >= h) {
    ya = reflect(ya, h);
    yb = reflect(yb, h);
  }
  const i00 = (ya * w + xa) * 3;
  const i01 = (ya * w + xb) * 3;
  const i10 = (yb * w + xa) * 3;
  const i11 = (yb * w + xb) * 3;
  const w00 = (1 - tx) * (1 - ty);
  const w01 = tx * (1 - ty);
  const w10 = (1 - tx) * ty;
  const w11 = tx * ty;
  acc[0] += d[i00] * w00 + d[i01] * w01 + d[i10] * w10 + d[i11] * w11;
  acc[1] += d[i00 + 1] * w00 + d[i01 + 1] * w01 + d[i10 + 1] * w10 + d[i11 + 1] * w11;
  acc[2] += d[i00 + 2] * w00 + d[i01 + 2] * w01 + d[i10 + 2] * w10 + d[i11 + 2] * w11;
}

/** Source pixels per destination pixel of an affine map (geometric mean of the two axis scales). */
export function affineScale(dstToSrc: Mat3): number {
  return Math.sqrt(Math.abs(dstToSrc[0] * dstToSrc[4] - dstToSrc[1] * dstToSrc[3]));
}

/**
 * Generic affine warp: for each destination pixel centre p, reads src at dstToSrc·p. Calls `visit` with the
 * destination pixel index and the resampled RGB (floats 0..255, unrounded) so callers can blend; the default
 * writes rounded values into `dst`.
 */
export function warpAffine(
  src: RgbImage,
  dst: RgbImage,
  dstToSrc: Mat3,
  options: WarpOptions = {},
  visit?: (pixel: number, r: number, g: number, b: number, dx: number, dy: number) => void,
): void {
  assertRgbImage(src, 'warp source');
  if (dstToSrc[6] !== 0 || dstToSrc[7] !== 0 || dstToSrc[8] !== 1)
    throw new RangeError('warpAffine needs an affine matrix');
  const region = options.region ?? { x0: 0, y0: 0, x1: dst.width, y1: dst.height };
  const x0 = Math.max(0, Math.floor(region.x0));
  const y0 = Math.max(0, Math.floor(region.y0));
  const x1 = Math.min(dst.width, Math.ceil(region.x1));
  const y1 = Math.min(dst.height, Math.ceil(region.y1));
  const shrink = affineScale(dstToSrc);
  const k = Math.max(1, Math.min(16, options.supersample ?? Math.ceil(shrink - 1e-6)));
  const [a, b, c, d, e, f] = dstToSrc;
  const acc = new Float64Array(3);
  const inv = 1 / (k * k);
  const out = dst.data;
  for (let py = y0; py < y1; py++) {
    for (let px = x0; px < x1; px++) {
      acc[0] = 0;
      acc[1] = 0;
      acc[2] = 0;
      for (let sy = 0; sy < k; sy++) {
        const qy = py + (sy + 0.5) / k;
        for (let sx = 0; sx < k; sx++) {
          const qx = px + (sx + 0.5) / k;
          sampleBilinear(src, a * qx + b * qy + c, d * qx + e * qy + f, acc);
        }
      }
      const pix = py * dst.width + px;
      const r = acc[0] * inv;
      const g = acc[1] * inv;
      const bl = acc[2] * inv;
      if (visit) {
        visit(pix, r, g, bl, px, py);
      } else {
        out[pix * 3] = r <= 0 ? 0 : r >= 255 ? 255 : Math.round(r);
        out[pix * 3 + 1] = g <= 0 ? 0 : g >= 255 ? 255 : Math.round(g);
        out[pix * 3 + 2] = bl <= 0 ? 0 : bl >= 255 ? 255 : Math.round(bl);
      }
    }
  }
}

/**
 * FFHQ's padding of crops that leave the photo (`recreate_aligned_images`, enable_padding): the photo region
 * around the quad (border = max(round(0.1·qsize), 3)) is reflect-padded by at least round(0.3·qsize) on every
 * side, then blurred (Gaussian, σ = 0.02·qsize, weight clip(3·mask + 1, 0, 1)) and faded to the median colour
 * (weight clip(mask, 0, 1)), mask = how far a pixel lies into the padding (FFHQ's formula). Returns null when the
 * quad and its border fit in the photo (FFHQ pads only when a side needs more than border − 4 pixels).
 * `offset` is the photo position of the returned image's (0, 0).
 */
export function ffhqPaddedSource(
  photo: RgbImage,
  alignment: Alignment,
): { src: RgbImage; offset: Point } | null {
  const qsize = alignment.scale * alignment.size;
  const border = Math.max(Math.round(qsize * 0.1), 3);
  const xs = alignment.quad.map((p) => p[0]);
  const ys = alignment.quad.map((p) => p[1]);
  const qx0 = Math.floor(Math.min(...xs));
  const qy0 = Math.floor(Math.min(...ys));
  const qx1 = Math.ceil(Math.max(...xs));
  const qy1 = Math.ceil(Math.max(...ys));
  // FFHQ first crops to the quad ± border (clipped), then pads what is still missing.
  const cx0 = Math.max(qx0 - border, 0);
  const cy0 = Math.max(qy0 - border, 0);
  const cx1 = Math.min(qx1 + border, photo.width);
  const cy1 = Math.min(qy1 + border, photo.height);
  let pad = [
    Math.max(-(qx0 - cx0) + border, 0),
    Math.max(-(qy0 - cy0) + border, 0),
    Math.max(qx1 - cx0 - (cx1 - cx0) + border, 0),
    Math.max(qy1 - cy0 - (cy1 - cy0) + border, 0),
  ];
  if (Math.max(...pad) <= border - 4) return null;
  const minPad = Math.round(qsize * 0.3);
  pad = pad.map((v) => Math.max(v, minPad));
  const [pl, pt, pr, pb] = pad as [number, number, number, number];
  const cw = cx1 - cx0;
  const ch = cy1 - cy0;
  const w = cw + pl + pr;
  const h = ch + pt + pb;
  // np.pad(..., 'reflect'): mirror without repeating the edge pixel.
  const refl = (i: number, n: number) => {
    if (n === 1) return 0;
    const period = 2 * n - 2;
    let k = i % period;
    if (k < 0) k += period;
    return k < n ? k : period - k;
  };
  const img = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = cy0 + refl(y - pt, ch);
    for (let x = 0; x < w; x++) {
      const sx = cx0 + refl(x - pl, cw);
      const si = (sy * photo.width + sx) * 3;
      const di = (y * w + x) * 3;
      img[di] = photo.data[si]!;
      img[di + 1] = photo.data[si + 1]!;
      img[di + 2] = photo.data[si + 2]!;
    }
  }
  const blurred = gaussianBlur(img, w, h, qsize * 0.02);
  const median = [0, 1, 2].map((c) => channelMedian(img, c));
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const my = 1 - Math.min(y / pt, (h - 1 - y) / pb);
    for (let x = 0; x < w; x++) {
      const mask = Math.max(1 - Math.min(x / pl, (w - 1 - x) / pr), my);
      const wb = Math.min(Math.max(mask * 3 + 1, 0), 1);
      const wm = Math.min(Math.max(mask, 0), 1);
      for (let c = 0; c < 3; c++) {
        const i = (y * w + x) * 3 + c;
        let v = img[i]! + (blurred[i]! - img[i]!) * wb;
        v += (median[c]! - v) * wm;
        out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
      }
    }
  }
  return { src: { width: w, height: h, data: out }, offset: [cx0 - pl, cy0 - pt] };
}

/**
 * Gaussian blur of an interleaved RGB float image, approximated by three successive box blurs per axis
 * (box widths chosen to match σ², Kovesi's construction). FFHQ uses an exact Gaussian (scipy), but this
 * only softens a synthetic backdrop, and running sums make the cost independent of σ: an exact kernel took
 * ~10 s in JS for a 300-px-eyes face at a photo edge, this takes a fraction of a second. Borders reflect.
 */
function gaussianBlur(img: Float32Array, w: number, h: number, sigma: number): Float32Array {
  if (!(sigma > 0.5)) return img.slice();
  const n = 3;
  let wl = Math.floor(Math.sqrt((12 * sigma * sigma) / n + 1));
  if (wl % 2 === 0) wl--;
  const m = Math.round((12 * sigma * sigma - n * wl * wl - 4 * n * wl - 3 * n) / (-4 * wl - 4));
  const radii = [0, 1, 2].map((i) => ((i < m ? wl : wl + 2) - 1) / 2);
  const a = img.slice();
  const b = new Float32Array(img.length); // ping-pong: a → b (x), b → a (y)
  for (const r of radii) {
    boxPass(a, b, w, h, r, true);
    boxPass(b, a, w, h, r, false);
  }
  return a;
}

/** One box blur of radius r along x (horizontal) or y, reflecting at the borders, by running sums. */
function boxPass(
  src: Float32Array,
  dst: Float32Array,
  w: number,
  h: number,
  r: number,
  horizontal: boolean,
): void {
  const len = horizontal ? w : h;
  const lines = horizontal ? h : w;
  const stride = horizontal ? 3 : w * 3;
  const at = (line: number) => (horizontal ? line * w * 3 : line * 3);
  const sym = (i: number) => {
    const period = 2 * len;
    let j = i % period;
    if (j < 0) j += period;
    return j < len ? j : period - 1 - j;
  };
  const inv = 1 / (2 * r + 1);
  for (let line = 0; line < lines; line++) {
    const base = at(line);
    for (let c = 0; c < 3; c++) {
      let acc = 0;
      for (let t = -r; t <= r; t++) acc += src[base + sym(t) * stride + c]!;
      for (let i = 0; i < len; i++) {
        dst[base + i * stride + c] = acc * inv;
        acc += src[base + sym(i + r + 1) * stride + c]! - src[base + sym(i - r) * stride + c]!;
      }
    }
  }
}

/**
 * np.median of one channel of the padded image. Its values are the photo's 8-bit values, so a 256-bin
 * histogram gives the exact median (mean of the two middle values for an even count) without sorting
 * millions of floats.
 */
function channelMedian(img: Float32Array, c: number): number {
  const hist = new Float64Array(256);
  const n = img.length / 3;
  for (let i = 0; i < n; i++) hist[img[i * 3 + c]!]!++;
  const valueAt = (rank: number) => {
    let seen = 0;
    for (let v = 0; v < 256; v++) {
      seen += hist[v]!;
      if (seen > rank) return v;
    }
    return 255;
  };
  return n % 2 ? valueAt((n - 1) / 2) : (valueAt(n / 2 - 1) + valueAt(n / 2)) / 2;
}

/**
 * Cuts the aligned N×N crop out of the photo, with FFHQ's blurred/faded padding where the crop leaves the
 * photo (`ffhqPadding: false` keeps plain mirroring).
 */
export function alignFace(
  photo: RgbImage,
  landmarks: readonly Point[],
  size: number,
  options: { ffhqPadding?: boolean } = {},
): AlignedFace {
  assertRgbImage(photo, 'photo');
  const alignment = ffhqAlignment(landmarks, size);
  const crop: RgbImage = { width: size, height: size, data: new Uint8Array(size * size * 3) };
  const padded = options.ffhqPadding === false ? null : ffhqPaddedSource(photo, alignment);
  if (padded) {
    // Same map, read from the padded image: photo (x, y) is padded (x − ox, y − oy).
    const [ox, oy] = padded.offset;
    const m = alignment.inverse;
    warpAffine(padded.src, crop, [m[0], m[1], m[2] - ox, m[3], m[4], m[5] - oy, 0, 0, 1]);
  } else warpAffine(photo, crop, alignment.inverse);
  // Coverage: crop pixel centres whose photo position is inside the photo.
  let inside = 0;
  const [a, b, c, d, e, f] = alignment.inverse;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const x = a * (u + 0.5) + b * (v + 0.5) + c;
      const y = d * (u + 0.5) + e * (v + 0.5) + f;
      if (x >= 0 && y >= 0 && x < photo.width && y < photo.height) inside++;
    }
  }
  return { alignment, crop, coverage: inside / (size * size) };
}

/** Axis-aligned photo-space bounding box of the crop square (clamped to the photo), integer pixel bounds. */
export function cropBounds(
  alignment: Alignment,
  width: number,
  height: number,
): { x0: number; y0: number; x1: number; y1: number } {
  const xs = alignment.quad.map((p) => p[0]);
  const ys = alignment.quad.map((p) => p[1]);
  return {
    x0: Math.max(0, Math.floor(Math.min(...xs))),
    y0: Math.max(0, Math.floor(Math.min(...ys))),
    x1: Math.min(width, Math.ceil(Math.max(...xs))),
    y1: Math.min(height, Math.ceil(Math.max(...ys))),
  };
}

/**
 * Warps an N×N crop back into photo space over the crop's bounding box (the inverse of alignFace); pixels of
 * `photo` outside the rotated square keep their values. Returns a new image.
 */
export function unalignFace(photo: RgbImage, crop: RgbImage, alignment: Alignment): RgbImage {
  if (crop.width !== alignment.size || crop.height !== alignment.size) {
    throw new RangeError(
      `crop is ${crop.width}×${crop.height}, alignment expects ${alignment.size}×${alignment.size}`,
    );
  }
  const out: RgbImage = { width: photo.width, height: photo.height, data: new Uint8Array(photo.data) };
  const n = alignment.size;
  const [a, b, c, d, e, f] = alignment.forward;
  warpAffine(
    crop,
    out,
    alignment.forward,
    { region: cropBounds(alignment, photo.width, photo.height) },
    (pix, r, g, bl, px, py) => {
      const u = a * (px + 0.5) + b * (py + 0.5) + c;
      const v = d * (px + 0.5) + e * (py + 0.5) + f;
      if (u < 0 || v < 0 || u >= n || v >= n) return;
      out.data[pix * 3] = Math.round(Math.min(255, Math.max(0, r)));
      out.data[pix * 3 + 1] = Math.round(Math.min(255, Math.max(0, g)));
      out.data[pix * 3 + 2] = Math.round(Math.min(255, Math.max(0, bl)));
    },
  );
  return out;
}

/** Maps landmarks into crop coordinates. */
export function landmarksToCrop(alignment: Alignment, landmarks: readonly Point[]): Point[] {
  return landmarks.map((p) => applyMat3(alignment.forward, p));
}
