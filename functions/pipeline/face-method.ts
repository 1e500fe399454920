/**
 * Per-face method choice (issue #10): is a detected face fit for the generator (FALCO: FFHQ alignment from the
 * 68 landmarks → e4e → optimisation → paste-back through a landmark mask), or must a fallback cover it?
 *
 * FALCO's paste mask is built from the landmarks, so a face whose landmarks are wrong gets a mask in the wrong
 * place and part of the real face stays in the photo. Two measured signals decide:
 *
 * - **Size.** Below `MIN_FALCO_FACE_PX` (the shorter side of the detector box) the 68-point net's landmarks
 *   stop being accurate enough for the mask to cover the inner face. The value comes from
 *   `npm run bench -- small-faces` (sample faces downscaled to a given box width; their landmarks compared
 *   with the full-size ones, and the fraction of the true inner face the resulting paste mask covers); the
 *   figures are quoted where the constant is defined.
 * - **Landmark consistency.** The landmark net has no confidence output. A face it understands gives the same
 *   landmarks on the mirrored crop (mirrored back, points swapped left↔right); a profile, a face turned upside
 *   down, a heavily occluded face or a false detection does not. The mean disagreement, as a fraction of the box
 *   side, is the unreliability measure (`landmarkInconsistency`); above `MAX_LANDMARK_INCONSISTENCY` the
 *   landmarks are not trusted. One extra landmark pass per face (~2 ms).
 * - **Mask over the box.** The paste mask built from the landmarks must cover the core of the detector box
 *   (`maskBoxCoverage` ≥ `MIN_MASK_BOX_COVER`): the box is found independently of the landmarks, so a mask that
 *   misses it will leave the real face in the photo. This is the signal that catches gross landmark failures;
 *   the consistency one catches most of the rest.
 *
 * Measured (`npm run bench -- small-faces`, 22 sample faces, 2-core CPU): with both gates, faces ≥ 32 px keep
 * FALCO in 104/110 cases and none of the kept ones has a mask covering < 80 % of its true inner face; faces
 * turned in-plane by more than 30° mostly go to the fallback (29/110 kept).
 */
import { clipBox, type FaceApi } from '../../models/faceapi/index.js';
import { ffhqAlignment, type Point } from './align.js';
import { faceMask, maskAlphaAt, maskLines } from './paste.js';
import type { RgbImage } from './image-io.js';
import type { Box } from './types.js';

/**
 * Smallest detector-box side (px) for which FALCO is used; below it the `smallFaces` fallback covers the face.
 * `npm run bench -- small-faces`: landmark error (mean / inter-ocular distance, median · worst tenth of 22
 * faces) is 0.151 · 0.298 at 16 px, 0.103 · 0.132 at 20, 0.071 · 0.096 at 24, 0.062 · 0.095 at 28,
 * 0.061 · 0.072 at 32, 0.041 · 0.059 at 40, 0.022 · 0.043 at 64. 32 px is the smallest size from which the
 * worst tenth stays under 0.08, the customary "landmarks failed" bar; below it FFHQ alignment (a similarity
 * fitted to eyes and mouth) is off by a tenth of the face and the mask misses features (at 20 px 4/22 masks
 * cover < 90 % of the inner face, one only 30 %).
 */
export const MIN_FALCO_FACE_PX = 32;

/** Mean |landmarks − mirrored landmarks| / box side above which the landmarks are judged unreliable. */
export const MAX_LANDMARK_INCONSISTENCY = 0.08;

/** Smallest `maskBoxCoverage` for which the landmarks are trusted (see the file comment). */
export const MIN_MASK_BOX_COVER = 0.7;

/**
 * iBUG-68 left↔right correspondence: index k on a mirrored face is index MIRROR_68[k] on the original.
 * Jaw 0..16 reversed, brows 17..21 ↔ 26..22, nose bridge fixed, nostrils 31..35 reversed, eyes 36..41 ↔ 45..42
 * (corner to corner, lids to lids), mouth outer 48..54 reversed and 55..59 reversed, inner 60..64 / 65..67.
 */
export const MIRROR_68: readonly number[] = (() => {
  const m = Array.from({ length: 68 }, (_, k) => k);
  const pair = (a: number, b: number): void => {
    m[a] = b;
    m[b] = a;
  };
  for (let k = 0; k <= 7; k++) pair(k, 16 - k);
  for (let k = 0; k < 5; k++) pair(17 + k, 26 - k);
  pair(31, 35);
  pair(32, 34);
  pair(36, 45);
  pair(37, 44);
  pair(38, 43);
  pair(39, 42);
  pair(40, 47);
  pair(41, 46);
  pair(48, 54);
  pair(49, 53);
  pair(50, 52);
  pair(55, 59);
  pair(56, 58);
  pair(60, 64);
  pair(61, 63);
  pair(65, 67);
  return m;
})();

export type QuarterTurn = 0 | 90 | 180 | 270;

/**
 * Crop-local position (in the w×h box) of a point of the box turned `angle` clockwise: the same convention as
 * the detector's `angle` (the turn under which the face is upright).
 */
function unturn(u: number, v: number, angle: QuarterTurn, w: number, h: number): [number, number] {
  if (angle === 90) return [v, h - u];
  if (angle === 180) return [w - u, h - v];
  if (angle === 270) return [w - v, u];
  return [u, v];
}

/** The integer box `b` of `img` turned `angle` clockwise (face upright) and mirrored left↔right. */
function uprightMirror(
  img: RgbImage,
  b: { x: number; y: number; width: number; height: number },
  angle: QuarterTurn,
): RgbImage {
  const [fw, fh] = angle % 180 ? [b.height, b.width] : [b.width, b.height];
  const out = new Uint8Array(fw * fh * 3);
  for (let v = 0; v < fh; v++)
    for (let u = 0; u < fw; u++) {
      const [lx, ly] = unturn(fw - u - 0.5, v + 0.5, angle, b.width, b.height);
      const s = ((b.y + Math.floor(ly)) * img.width + b.x + Math.floor(lx)) * 3;
      const d = (v * fw + u) * 3;
      out[d] = img.data[s]!;
      out[d + 1] = img.data[s + 1]!;
      out[d + 2] = img.data[s + 2]!;
    }
  return { width: fw, height: fh, data: out };
}

/**
 * Mean distance between the landmarks and the landmarks of the mirrored upright crop (mirrored back, left↔right
 * swapped), divided by the box side (√(w·h) of the clipped box). `angle`: the quarter turn under which the face
 * is upright (the detector's). ~0.02-0.05 for frontal faces of usable size; Infinity for a box off the image.
 */
export async function landmarkInconsistency(
  models: FaceApi,
  image: RgbImage,
  box: Box,
  landmarks: readonly Point[],
  angle: QuarterTurn = 0,
): Promise<number> {
  const b = clipBox(box, image.width, image.height);
  if (!b) return Infinity;
  const mirrored = uprightMirror(image, b, angle);
  const lm = await models.landmarks(mirrored, { x: 0, y: 0, width: mirrored.width, height: mirrored.height });
  if (!lm) return Infinity;
  let sum = 0;
  for (let k = 0; k < 68; k++) {
    const q = lm[MIRROR_68[k]!]!;
    const [lx, ly] = unturn(mirrored.width - q[0], q[1], angle, b.width, b.height);
    sum += Math.hypot(b.x + lx - landmarks[k]![0], b.y + ly - landmarks[k]![1]);
  }
  return sum / 68 / Math.sqrt(b.width * b.height);
}

export type MethodReason = 'small' | 'landmarks';

export interface MethodChoice {
  /** true: FALCO can replace this face; false: a fallback must cover it, for `reason`. */
  falco: boolean;
  reason?: MethodReason;
  /** Shorter side of the detector box, px. */
  sizePx: number;
  /** maskBoxCoverage(), when measured. */
  boxCover?: number;
  /** landmarkInconsistency(), when measured. */
  inconsistency?: number;
}

export interface MethodThresholds {
  minFacePx?: number;
  maxInconsistency?: number;
  minBoxCover?: number;
}

/**
 * Fraction of the detector box's core (the box inset by 20 % per side, a 30×30 grid) that the paste mask built
 * from `landmarks` covers with alpha ≥ 0.5. The box comes from the detector, independently of the landmarks, so
 * a mask that misses it means the landmarks (hence the alignment and the replacement) are elsewhere.
 * 0 for degenerate landmarks.
 */
export function maskBoxCoverage(box: Box, landmarks: readonly Point[]): number {
  let alignment;
  let mask;
  try {
    alignment = ffhqAlignment(landmarks, 256);
    mask = faceMask(alignment, landmarks);
  } catch {
    return 0;
  }
  const lines = maskLines(mask);
  const [a, b, c, d, e, f] = alignment.forward;
  const n = 30;
  let covered = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const x = box.x + box.width * (0.2 + (0.6 * (i + 0.5)) / n);
      const y = box.y + box.height * (0.2 + (0.6 * (j + 0.5)) / n);
      if (maskAlphaAt(mask, lines, a * x + b * y + c, d * x + e * y + f) >= 0.5) covered++;
    }
  return covered / (n * n);
}

/** Decides FALCO vs fallback for one detected face (see the file comment for the measured thresholds). */
export async function chooseMethod(
  models: FaceApi,
  image: RgbImage,
  face: { box: Box; landmarks: readonly Point[]; angle?: QuarterTurn },
  t: MethodThresholds = {},
): Promise<MethodChoice> {
  const minPx = t.minFacePx ?? MIN_FALCO_FACE_PX;
  const maxInc = t.maxInconsistency ?? MAX_LANDMARK_INCONSISTENCY;
  const minCover = t.minBoxCover ?? MIN_MASK_BOX_COVER;
  const sizePx = Math.min(face.box.width, face.box.height);
  if (sizePx < minPx) return { falco: false, reason: 'small', sizePx };
  const boxCover = maskBoxCoverage(face.box, face.landmarks);
  if (!(boxCover >= minCover)) return { falco: false, reason: 'landmarks', sizePx, boxCover };
  const inconsistency = await landmarkInconsistency(models, image, face.box, face.landmarks, face.angle ?? 0);
  if (!(inconsistency <= maxInc))
    return { falco: false, reason: 'landmarks', sizePx, boxCover, inconsistency };
  return { falco: true, sizePx, boxCover, inconsistency };
}
