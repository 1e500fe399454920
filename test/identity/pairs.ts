/**
 * Identity pairs from the face-api sample photos (22 faces in sample1-6, assumed 22 different people), for
 * calibrating the privacy-check recognizers (test/bench/calibrate.ts) and for the tests.
 *
 * Per face: the original and five variants of the *same person* — alignment jitter (seeded random
 * shift/scale/rotation of the landmarks), the photo downscaled to 35 %, JPEG quality 15, mirrored, Gaussian
 * blur σ 2.5 px. Landmarks of the photo-level variants are re-estimated in the transformed detection box (as an
 * attacker would align on the picture they have). Negative controls (the face covered, hair and outline
 * kept): a solid magenta face pasted through the product's own feathered face mask ('paste-blob', the
 * demo bundle's failure case), a magenta blob and a flat skin-tone fill over the face polygon (jaw hull + brows
 * lifted to the forehead), and a coarse pixelation (8 blocks across the face) of the same region.
 */
import { readFileSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import { FaceDetector, type Rotation } from '../../functions/pipeline/detect.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { ffhqAlignment } from '../../functions/pipeline/align.js';
import { convexHull, pasteFace } from '../../functions/pipeline/paste.js';
import type { FaceApi } from '../../models/faceapi/index.js';
import type { FaceGeometry, Point } from '../../models/recognizers/index.js';
import { samplePath } from '../faceapi/oracle.js';

export interface SampleFace extends FaceGeometry {
  /** Identity label: `s<photo>f<index>`. */
  id: string;
  image: RgbImage;
  /** The quarter turn under which the detector judged the face upright (its landmarks come from that frame). */
  angle: Rotation;
}

export const VARIANTS = ['jitter', 'resize', 'jpeg', 'flip', 'blur'] as const;
export const CONTROLS = ['paste-blob', 'blob', 'fill', 'pixelate'] as const;
export type VariantName = (typeof VARIANTS)[number];
export type ControlName = (typeof CONTROLS)[number];

/** All faces of the six sample photos, detected and landmarked by our face-api port. */
export async function sampleFaces(models: FaceApi, photos = [1, 2, 3, 4, 5, 6]): Promise<SampleFace[]> {
  const det = new FaceDetector(models);
  const out: SampleFace[] = [];
  for (const n of photos) {
    const { image } = await decodeImage(readFileSync(samplePath(n)));
    for (const f of await det.detect(image))
      out.push({ id: `s${n}f${f.index}`, image, box: f.box, landmarks: f.landmarks, angle: f.angle });
  }
  return out;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function viaSharp(img: RgbImage, f: (s: Sharp) => Sharp): Promise<RgbImage> {
  const { data, info } = await f(
    sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }),
  )
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

function scaleBox(b: FaceGeometry['box'], s: number): FaceGeometry['box'] {
  return { x: b.x * s, y: b.y * s, width: b.width * s, height: b.height * s };
}

/**
 * One variant of a face. Photo-level variants are cached per photo (the same transformed photo serves every
 * face in it).
 */
export async function variant(
  models: FaceApi,
  face: SampleFace,
  kind: VariantName,
  cache = new Map<string, RgbImage>(),
): Promise<FaceGeometry & { image: RgbImage }> {
  if (kind === 'jitter') {
    const r = rng([...face.id].reduce((h, c) => h * 31 + c.charCodeAt(0), 7));
    const cx = face.box.x + face.box.width / 2;
    const cy = face.box.y + face.box.height / 2;
    const dx = (r() * 2 - 1) * 0.05 * face.box.width;
    const dy = (r() * 2 - 1) * 0.05 * face.box.height;
    const s = 1 + (r() * 2 - 1) * 0.06;
    const a = ((r() * 2 - 1) * 6 * Math.PI) / 180;
    const [c, sn] = [Math.cos(a) * s, Math.sin(a) * s];
    const landmarks = face.landmarks.map(([x, y]): Point => {
      const u = x - cx;
      const v = y - cy;
      return [cx + c * u - sn * v + dx, cy + sn * u + c * v + dy];
    });
    return { image: face.image, box: face.box, landmarks };
  }
  const key = `${kind}:${face.id.split('f')[0]}`;
  let image = cache.get(key);
  const scale = kind === 'resize' ? 0.35 : 1;
  if (!image) {
    const src = face.image;
    if (kind === 'resize')
      image = await viaSharp(src, (s) =>
        s.resize(Math.round(src.width * scale), Math.round(src.height * scale), { kernel: 'lanczos3' }),
      );
    else if (kind === 'jpeg') {
      const jpg = await sharp(src.data, { raw: { width: src.width, height: src.height, channels: 3 } })
        .jpeg({ quality: 15 })
        .toBuffer();
      image = (await decodeImage(jpg)).image;
    } else if (kind === 'blur') image = await viaSharp(src, (s) => s.blur(2.5));
    else image = await viaSharp(src, (s) => s.flop());
    cache.set(key, image);
  }
  const b = face.box;
  const box =
    kind === 'flip'
      ? { x: image.width - b.x - b.width, y: b.y, width: b.width, height: b.height }
      : kind === 'resize'
        ? scaleBox(b, image.width / face.image.width)
        : b;
  const landmarks = await models.landmarks(image, box);
  if (!landmarks) throw new Error(`${face.id} ${kind}: no landmarks`);
  return { image, box, landmarks };
}

/** The face polygon of the controls: jaw hull plus the brows lifted by 0.6 of the brow-to-chin height. */
export function facePolygon(lm: readonly Point[]): Point[] {
  const chin = lm[8]!;
  const brow: Point = [(lm[19]![0] + lm[24]![0]) / 2, (lm[19]![1] + lm[24]![1]) / 2];
  const up: Point = [(brow[0] - chin[0]) * 0.35, (brow[1] - chin[1]) * 0.35];
  const pts: Point[] = lm.slice(0, 17).map((p) => [p[0], p[1]] as Point);
  for (let k = 17; k < 27; k++) pts.push([lm[k]![0] + up[0], lm[k]![1] + up[1]]);
  return convexHull(pts);
}

function insideConvex(poly: readonly Point[], x: number, y: number): boolean {
  let sign = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i]!;
    const b = poly[(i + 1) % poly.length]!;
    const c = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
    if (c !== 0) {
      if (sign === 0) sign = Math.sign(c);
      else if (Math.sign(c) !== sign) return false;
    }
  }
  return true;
}

/** A copy of the photo with the face covered by a negative control. */
export function control(face: SampleFace, kind: ControlName): RgbImage {
  const src = face.image;
  if (kind === 'paste-blob') {
    // The product's own paste (FFHQ crop, feathered face mask) of a solid magenta face: the demo bundle's
    // failure case from issue #10.
    const n = 256;
    const magenta = new Uint8Array(n * n * 3);
    for (let i = 0; i < n * n; i++) magenta.set([255, 0, 255], i * 3);
    const alignment = ffhqAlignment(face.landmarks, n);
    return pasteFace(src, { width: n, height: n, data: magenta }, alignment, face.landmarks).image;
  }
  const out = { width: src.width, height: src.height, data: new Uint8Array(src.data) };
  const poly = facePolygon(face.landmarks);
  const xs = poly.map((p) => p[0]);
  const ys = poly.map((p) => p[1]);
  const x0 = Math.max(0, Math.floor(Math.min(...xs)));
  const x1 = Math.min(src.width, Math.ceil(Math.max(...xs)));
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(src.height, Math.ceil(Math.max(...ys)));
  const inside: number[] = [];
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) if (insideConvex(poly, x + 0.5, y + 0.5)) inside.push(y * src.width + x);
  const mean = [0, 0, 0];
  for (const p of inside) for (let c = 0; c < 3; c++) mean[c]! += src.data[p * 3 + c]!;
  const fill = kind === 'blob' ? [255, 0, 255] : mean.map((v) => Math.round(v / Math.max(1, inside.length)));
  if (kind !== 'pixelate') {
    for (const p of inside) for (let c = 0; c < 3; c++) out.data[p * 3 + c] = fill[c]!;
    return out;
  }
  const block = Math.max(2, Math.round((x1 - x0) / 8));
  const sums = new Map<number, number[]>();
  const bkey = (p: number) => {
    const x = p % src.width;
    const y = Math.floor(p / src.width);
    return Math.floor((y - y0) / block) * 100000 + Math.floor((x - x0) / block);
  };
  for (const p of inside) {
    const k = bkey(p);
    const s = sums.get(k) ?? [0, 0, 0, 0];
    for (let c = 0; c < 3; c++) s[c]! += src.data[p * 3 + c]!;
    s[3]!++;
    sums.set(k, s);
  }
  for (const p of inside) {
    const s = sums.get(bkey(p))!;
    for (let c = 0; c < 3; c++) out.data[p * 3 + c] = Math.round(s[c]! / s[3]!);
  }
  return out;
}
