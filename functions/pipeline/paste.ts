/**
 * Paste-back: puts a new aligned face (N×N, same alignment as the crop it replaces) into the photo through the
 * inverse transform, blended by a feathered mask that follows the face.
 *
 * The mask lives in crop space: the convex hull of the jaw line (landmarks 0–16), the eyebrows (17–26) and the
 * eyebrows lifted towards the hairline by `foreheadLift`·N (the generator also changes the forehead, and a
 * brow-level cut would leave the original forehead above a new face). Alpha at a point is
 *   smoothstep(clamp(d / (feather·N), 0, 1)),  d = distance to the hull boundary (inside), also clipped by the
 * distance to the crop square's border,
 * i.e. 1 in the face core, a C¹ ramp falling to exactly 0 on the hull. For a convex polygon the distance to the
 * boundary of an interior point is the minimum over edges of the distance to the edge's line, so alpha is exact
 * and cheap, with no blurred raster to warp. Because the ramp ends inside the hull (and inside the crop square)
 * there is no square edge and no hard seam; the ramp width scales with the face.
 *
 * Guarantee: photo pixels where alpha is 0 are never written, so in the returned RGB they are byte-identical to
 * the input. This holds for the decoded RGB and survives lossless encoding (PNG, lossless WebP). A lossy JPEG (or
 * lossy WebP) re-encode changes pixel values slightly everywhere in the image, inside and outside the faces;
 * that is the nature of lossy compression, not of paste-back. The alpha channel, if any, is copied unchanged.
 */
import { applyMat3, LANDMARK_GROUPS, warpAffine, type Alignment, type Point } from './align.js';
import { assertRgbImage, type RgbImage } from './image-io.js';

export interface MaskOptions {
  /** Ramp width as a fraction of the crop side N. Default 0.08. */
  feather?: number;
  /** How far the brow points are copied upwards (fraction of N) to include the forehead. Default 0.1. */
  foreheadLift?: number;
}

export interface FaceMask {
  /** Convex polygon in crop coordinates, counter-clockwise in image axes (y down). */
  polygon: Point[];
  featherPx: number;
  size: number;
}

export interface PasteRegion {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface PasteResult {
  image: RgbImage;
  /** Bounding region of the mask in the photo (half-open, integer pixels). */
  region: PasteRegion;
  /** Alpha (0..1) per pixel of `region`, row-major, (x1-x0)×(y1-y0); 0 = pixel untouched. */
  alpha: Float32Array;
  /** Number of pixels with alpha > 0. */
  maskedPixels: number;
}

/** Andrew's monotone chain; returns the hull without repeated endpoint. */
export function convexHull(points: readonly Point[]): Point[] {
  const pts = [...points].sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  if (pts.length < 3) return pts;
  const cross = (o: Point, a: Point, b: Point): number =>
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  lower.pop();
  upper.pop();
  return lower.concat(upper);
}

/** Builds the crop-space face mask from the photo-space landmarks. */
export function faceMask(
  alignment: Alignment,
  landmarks: readonly Point[],
  options: MaskOptions = {},
): FaceMask {
  if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
  const feather = options.feather ?? 0.08;
  const lift = options.foreheadLift ?? 0.1;
  if (!(feather > 0 && feather < 0.5)) throw new RangeError(`feather must be in (0, 0.5), got ${feather}`);
  if (!(lift >= 0 && lift < 0.5)) throw new RangeError(`foreheadLift must be in [0, 0.5), got ${lift}`);
  const n = alignment.size;
  const crop = landmarks.map((p) => applyMat3(alignment.forward, p));
  const pts: Point[] = crop.slice(LANDMARK_GROUPS.jaw[0], LANDMARK_GROUPS.jaw[1]);
  for (let k = LANDMARK_GROUPS.browLeft[0]; k < LANDMARK_GROUPS.browRight[1]; k++) {
    pts.push(crop[k]);
    // The crop is upright (FFHQ alignment), so "up the forehead" is simply −v.
    pts.push([crop[k][0], crop[k][1] - lift * n]);
  }
  const polygon = convexHull(pts);
  if (polygon.length < 3) throw new RangeError('landmarks are degenerate (mask has no area)');
  return { polygon, featherPx: feather * n, size: n };
}

/** Signed distance helper: inward edge normals for a convex polygon (either winding). */
function edgeLines(polygon: readonly Point[]): Array<[number, number, number]> {
  let area = 0;
  for (let i = 0; i < polygon.length; i++) {
    const a = polygon[i];
    const b = polygon[(i + 1) % polygon.length];
    area += a[0] * b[1] - b[0] * a[1];
  }
  const sign = area > 0 ? 1 : -1;
  const lines: Array<[number, number, number]> = [];
  for (let i = 0; i < polygon.length; i++) {
    const a = polygon[i];
    const b = polygon[(i + 1) % polygon.length];
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len = Math.hypot(dx, dy);
    if (len < 1e-9) continue;
    // Inward normal for positive (counter-clockwise in math axes) winding is (-dy, dx).
    const nx = (sign * -dy) / len;
    const ny = (sign * dx) / len;
    lines.push([nx, ny, -(nx * a[0] + ny * a[1])]);
  }
  return lines;
}

/** Mask alpha at a crop-space point (exported for tests and for the contact sheet). */
export function maskAlphaAt(
  mask: FaceMask,
  lines: Array<[number, number, number]>,
  u: number,
  v: number,
): number {
  let d = Math.min(u, v, mask.size - u, mask.size - v);
  for (const [nx, ny, c] of lines) {
    const e = nx * u + ny * v + c;
    if (e < d) d = e;
  }
  if (d <= 0) return 0;
  const t = d >= mask.featherPx ? 1 : d / mask.featherPx;
  return t * t * (3 - 2 * t);
}

export function maskLines(mask: FaceMask): Array<[number, number, number]> {
  return edgeLines(mask.polygon);
}

/**
 * Blends `face` (N×N, in the crop frame of `alignment`) into a copy of `photo`. `landmarks` are the photo-space
 * landmarks of the face being replaced (they define the mask).
 */
export function pasteFace(
  photo: RgbImage,
  face: RgbImage,
  alignment: Alignment,
  landmarks: readonly Point[],
  options: MaskOptions = {},
): PasteResult {
  assertRgbImage(photo, 'photo');
  assertRgbImage(face, 'face');
  if (face.width !== alignment.size || face.height !== alignment.size) {
    throw new RangeError(
      `face is ${face.width}×${face.height}, alignment expects ${alignment.size}×${alignment.size}`,
    );
  }
  const mask = faceMask(alignment, landmarks, options);
  const lines = maskLines(mask);
  const photoPoly = mask.polygon.map((p) => applyMat3(alignment.inverse, p));
  const region: PasteRegion = {
    x0: Math.max(0, Math.floor(Math.min(...photoPoly.map((p) => p[0])))),
    y0: Math.max(0, Math.floor(Math.min(...photoPoly.map((p) => p[1])))),
    x1: Math.min(photo.width, Math.ceil(Math.max(...photoPoly.map((p) => p[0])))),
    y1: Math.min(photo.height, Math.ceil(Math.max(...photoPoly.map((p) => p[1])))),
  };
  const rw = Math.max(0, region.x1 - region.x0);
  const rh = Math.max(0, region.y1 - region.y0);
  const alpha = new Float32Array(rw * rh);
  const out: RgbImage = { width: photo.width, height: photo.height, data: new Uint8Array(photo.data) };
  if (photo.alpha) out.alpha = new Uint8Array(photo.alpha);
  if (rw === 0 || rh === 0) return { image: out, region, alpha, maskedPixels: 0 };
  const [a, b, c, d, e, f] = alignment.forward;
  let masked = 0;
  const src = photo.data;
  const dst = out.data;
  warpAffine(face, out, alignment.forward, { region }, (pix, r, g, bl, px, py) => {
    const u = a * (px + 0.5) + b * (py + 0.5) + c;
    const v = d * (px + 0.5) + e * (py + 0.5) + f;
    const al = maskAlphaAt(mask, lines, u, v);
    if (al <= 0) return;
    alpha[(py - region.y0) * rw + (px - region.x0)] = al;
    masked++;
    const i = pix * 3;
    const blend = (o: number, n: number): number => {
      const x = o + al * (n - o);
      return x <= 0 ? 0 : x >= 255 ? 255 : Math.round(x);
    };
    dst[i] = blend(src[i], r);
    dst[i + 1] = blend(src[i + 1], g);
    dst[i + 2] = blend(src[i + 2], bl);
  });
  return { image: out, region, alpha, maskedPixels: masked };
}
