/**
 * `npm run bench -- small-faces`: below which face size, and past which in-plane turn, FALCO's landmark-driven
 * alignment and paste mask stop covering the face — the measurement behind `MIN_FALCO_FACE_PX` and
 * `MAX_LANDMARK_INCONSISTENCY` (functions/pipeline/face-method.ts).
 *
 * Ground truth: every face face-api finds in sample1-6 at full size (box + 68 landmarks). Each face is then
 * resampled (area prefilter) so that its detector box is W px wide, and the 68-point net is run on the scaled
 * ground-truth box (detection is the `detect` engineer's benchmark; this isolates the landmarks). Per W:
 * - `nme`: mean landmark error / inter-ocular distance (outer eye corners), in full-size pixels;
 * - `inner_cover`: fraction of the true inner face (convex hull of brows, eyes, nose, mouth) that the paste mask
 *   built from the estimated landmarks covers with alpha ≥ 0.5 — what decides whether a replaced face leaves
 *   real features behind; `face_cover` the same for the whole 68-point hull (jaw included);
 * - `inconsistency`: the mirrored-crop landmark disagreement (the run-time reliability signal);
 * - `id_distance`: face-api 128-D distance between the full-size face and the scaled face (how much identity
 *   the recognizer still reads at that size).
 * Then the same for in-plane turns of the full-size face (roll 0..180°, box kept upright at the face centre):
 * does the consistency signal flag the turns whose mask misses the face?
 * Each figure is the median and the 10 % quantile (worst tenth) over the faces.
 */
import { readFileSync } from 'node:fs';
import { ffhqAlignment, warpAffine, type Mat3, type Point } from '../../functions/pipeline/align.js';
import { landmarkInconsistency, maskBoxCoverage } from '../../functions/pipeline/face-method.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { euclideanDistance } from '../../functions/pipeline/identity.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { faceMask, maskAlphaAt, maskLines, convexHull } from '../../functions/pipeline/paste.js';
import { FaceApi } from '../../models/faceapi/index.js';
import type { Box } from '../../functions/pipeline/types.js';
import { samplePath } from '../faceapi/oracle.js';
import { report } from './report.js';

interface Truth {
  image: RgbImage;
  box: Box;
  landmarks: Point[];
  descriptor: Float32Array;
}

const quantile = (v: number[], q: number): number => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.floor(q * (s.length - 1))))]!;
};

function insideConvex(poly: readonly Point[], x: number, y: number): boolean {
  let sign = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i]!;
    const b = poly[(i + 1) % poly.length]!;
    const c = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
    if (c === 0) continue;
    const s = c > 0 ? 1 : -1;
    if (sign === 0) sign = s;
    else if (s !== sign) return false;
  }
  return true;
}

/** Fraction of the convex hull of `truth[from..68)` covered (alpha ≥ 0.5) by the paste mask of `est`. */
export function maskCoverage(truth: readonly Point[], est: readonly Point[], from: number): number {
  const hull = convexHull(truth.slice(from));
  let mask;
  let alignment;
  try {
    alignment = ffhqAlignment(est, 256);
    mask = faceMask(alignment, est);
  } catch {
    return 0;
  }
  const lines = maskLines(mask);
  const xs = hull.map((p) => p[0]);
  const ys = hull.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const step = Math.max(x1 - x0, y1 - y0) / 60;
  const [a, b, c, d, e, f] = alignment.forward;
  let inside = 0;
  let covered = 0;
  for (let y = y0; y <= y1; y += step)
    for (let x = x0; x <= x1; x += step) {
      if (!insideConvex(hull, x, y)) continue;
      inside++;
      if (maskAlphaAt(mask, lines, a * x + b * y + c, d * x + e * y + f) >= 0.5) covered++;
    }
  return inside ? covered / inside : 0;
}

const nme = (truth: readonly Point[], est: readonly Point[]): number => {
  const io = Math.hypot(truth[45]![0] - truth[36]![0], truth[45]![1] - truth[36]![1]);
  let s = 0;
  for (let k = 0; k < 68; k++) s += Math.hypot(est[k]![0] - truth[k]![0], est[k]![1] - truth[k]![1]);
  return s / 68 / io;
};

/**
 * The face region (box grown by 1× its size on every side) of `t.image`, mapped by `toSrc` (output pixel →
 * photo pixel) into an image of side `side`; returns the image and the inverse map photo → output.
 */
function resample(img: RgbImage, toSrc: Mat3, w: number, h: number): RgbImage {
  const dst: RgbImage = { width: w, height: h, data: new Uint8Array(w * h * 3) };
  warpAffine(img, dst, toSrc);
  return dst;
}

const apply = (m: Mat3, p: Point): Point => [
  m[0] * p[0] + m[1] * p[1] + m[2],
  m[3] * p[0] + m[4] * p[1] + m[5],
];

async function measure(
  models: FaceApi,
  t: Truth,
  img: RgbImage,
  toSrc: Mat3,
  box: Box,
): Promise<Record<string, number>> {
  const lmSmall = await models.landmarks(img, box);
  if (!lmSmall) return { nme: Infinity, inner: 0, face: 0, inconsistency: Infinity, id: Infinity };
  const est = lmSmall.map((p) => apply(toSrc, p));
  const inconsistency = await landmarkInconsistency(models, img, box, lmSmall);
  const desc = await models.descriptor(img, lmSmall);
  return {
    boxCover: maskBoxCoverage(box, lmSmall),
    nme: nme(t.landmarks, est),
    inner: maskCoverage(t.landmarks, est, 17),
    face: maskCoverage(t.landmarks, est, 0),
    inconsistency,
    id: desc ? euclideanDistance(desc, t.descriptor) : Infinity,
  };
}

function summarise(bench: string, key: Record<string, unknown>, rows: Array<Record<string, number>>): void {
  if (process.env['SMALL_FACES_ROWS'])
    for (const r of rows) console.log(JSON.stringify({ row: true, ...key, ...r }));
  const below = rows.filter((r) => r['inner']! < 0.9).length / rows.length;
  report(bench, 'inner_cover_below_0.9', below, 'fraction_of_faces', { ...key, faces: rows.length });
  const col = (k: string): number[] => rows.map((r) => r[k]!);
  const figs: Array<[string, string, string]> = [
    ['nme', 'nme', 'interocular'],
    ['inner', 'inner_cover', 'fraction'],
    ['face', 'face_cover', 'fraction'],
    ['inconsistency', 'inconsistency', 'box'],
    ['id', 'id_distance', 'faceapi128'],
  ];
  for (const [k, name, unit] of figs) {
    const v = col(k);
    // For coverage the bad tail is the low one; for errors the high one.
    const worst = k === 'inner' || k === 'face' ? quantile(v, 0.1) : quantile(v, 0.9);
    report(bench, name, quantile(v, 0.5), unit, { ...key, stat: 'median', faces: v.length });
    report(bench, name, worst, unit, { ...key, stat: 'worst10pct', faces: v.length });
  }
}

export default async function smallFaces(args: string[]): Promise<void> {
  const models = new FaceApi({ provider: 'cpu' });
  const detector = new FaceDetector(models);
  const truths: Truth[] = [];
  for (let i = 1; i <= 6; i++) {
    const { image } = await decodeImage(readFileSync(samplePath(i)));
    for (const f of await detector.detect(image)) {
      const descriptor = await models.descriptor(image, f.landmarks);
      if (descriptor) truths.push({ image, box: f.box, landmarks: f.landmarks, descriptor });
    }
  }
  const widths = args.length ? args.map(Number) : [16, 20, 24, 28, 32, 40, 48, 64, 96];
  for (const w of widths) {
    const rows: Array<Record<string, number>> = [];
    for (const t of truths) {
      const s = w / t.box.width; // output px per photo px
      // Output covers the box grown by one box size on each side.
      const ox = t.box.x - t.box.width;
      const oy = t.box.y - t.box.height;
      const ow = Math.max(8, Math.round(3 * t.box.width * s));
      const oh = Math.max(8, Math.round(3 * t.box.height * s));
      const toSrc: Mat3 = [1 / s, 0, ox, 0, 1 / s, oy, 0, 0, 1];
      const img = resample(t.image, toSrc, ow, oh);
      const box = {
        x: t.box.width * s,
        y: t.box.height * s,
        width: t.box.width * s,
        height: t.box.height * s,
      };
      rows.push(await measure(models, t, img, toSrc, box));
    }
    summarise('small-faces', { box_px: w }, rows);
  }
  // In-plane turns of the full-size face (scaled to a 128-px box so every face weighs the same).
  for (const deg of [0, 15, 30, 45, 60, 90, 135, 180]) {
    const rows: Array<Record<string, number>> = [];
    for (const t of truths) {
      const s = 128 / t.box.width;
      const cx = t.box.x + t.box.width / 2;
      const cy = t.box.y + t.box.height / 2;
      const side = Math.round(3 * 128);
      const th = (deg * Math.PI) / 180;
      const [co, si] = [Math.cos(th), Math.sin(th)];
      // output (u, v) → photo: centre + R(θ)·((u, v) − side/2)/s
      const toSrc: Mat3 = [
        co / s,
        -si / s,
        cx - ((co - si) * side) / 2 / s,
        si / s,
        co / s,
        cy - ((si + co) * side) / 2 / s,
        0,
        0,
        1,
      ];
      const img = resample(t.image, toSrc, side, side);
      const bw = t.box.width * s;
      const bh = t.box.height * s;
      const box = { x: side / 2 - bw / 2, y: side / 2 - bh / 2, width: bw, height: bh };
      rows.push(await measure(models, t, img, toSrc, box));
    }
    summarise('small-faces', { roll_deg: deg }, rows);
  }
  await models.close();
}
