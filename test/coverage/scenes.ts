/**
 * Deterministic scene generator for the detection coverage benchmark and tests (issue #10).
 *
 * Scenes are built from face-api's six demo photos (npm package, 22 faces). Ground truth is what the current
 * detector finds on each photo at full size (face-api's SSD, single pass, where it is reliable: 22/22), carried
 * through each scene's geometry (scale, rotation, crop). Every random choice comes from a seeded PRNG, and
 * every pixel operation is either ours or a sharp operation with fixed parameters, so the same options give
 * the same scenes byte for byte (on one libvips version).
 *
 * Buckets:
 * - `size-N` (N = 16…96): every face cut out with context, scaled so its box is N px wide, scattered on a
 *   large textured canvas (12 MP by default): the crowd / street case.
 * - `rot-90`, `rot-180`, `rot-270`, `rot+30`, `rot-30`: the photos turned, no EXIF; `full`: as they are.
 * - `dark`, `blur`, `jpeg-q10`, `gray`, `occlude-eyes`, `occlude-mouth`: the photos degraded.
 * - `border`: one scene per face, cropped so the image border cuts 40 % off that face.
 * - `none-background`, `none-texture`, `none-gradient`: face-free images (false-positive buckets).
 */
import { readFileSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import type { RgbImage } from '../../functions/pipeline/image-io.js';
import type { Box } from '../../functions/pipeline/types.js';
import { FaceApi, type Point } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';
import { mulberry32 } from '../../functions/pipeline/prng.js';

export const SIZE_BUCKETS = [16, 20, 24, 32, 48, 64, 96] as const;
export const ROTATION_BUCKETS = ['rot-90', 'rot-180', 'rot-270', 'rot+30', 'rot-30'] as const;
export const DEGRADED_BUCKETS = [
  'dark',
  'blur',
  'jpeg-q10',
  'gray',
  'occlude-eyes',
  'occlude-mouth',
  'border',
] as const;
export const FACE_FREE_BUCKETS = ['none-background', 'none-texture', 'none-gradient'] as const;
export const ALL_BUCKETS: readonly string[] = [
  ...SIZE_BUCKETS.map((n) => `size-${n}`),
  'full',
  ...ROTATION_BUCKETS,
  ...DEGRADED_BUCKETS,
  ...FACE_FREE_BUCKETS,
];

export interface Scene {
  /** Unique, stable: `<bucket>/<detail>`. */
  name: string;
  bucket: string;
  image: RgbImage;
  /** Ground-truth face boxes in this image's pixels (empty for face-free scenes). */
  faces: Box[];
}

export interface SceneOptions {
  /** Buckets to build (default: all). */
  buckets?: readonly string[];
  /** PRNG seed (default 1). */
  seed?: number;
  /** Canvas of the `size-*` scenes (default 4000×3000, a 12-MP photo). */
  canvas?: { width: number; height: number };
  /** Demo photos used, 1..6 (default all). */
  samples?: readonly number[];
  /** Detector used for the ground truth (default: a private FaceApi, closed afterwards). */
  models?: FaceApi;
}

export interface SampleTruth {
  sample: number;
  image: RgbImage;
  faces: Array<{ box: Box; landmarks: Point[] }>;
}

/** Seeded PRNG (mulberry32), re-exported for the scene tests. */
export const prng = mulberry32;

async function decodeRaw(input: Sharp): Promise<RgbImage> {
  const { data, info } = await input
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

function fromRaw(img: RgbImage): Sharp {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  });
}

const truthCache = new Map<string, Promise<SampleTruth[]>>();

/** Full-size detections (+ landmarks) of the current detector on the demo photos: the ground truth. */
export function sampleTruth(
  samples: readonly number[] = [1, 2, 3, 4, 5, 6],
  models?: FaceApi,
): Promise<SampleTruth[]> {
  const key = samples.join(',');
  let p = truthCache.get(key);
  if (!p) {
    p = (async () => {
      const m = models ?? new FaceApi({ threads: 2 });
      try {
        const out: SampleTruth[] = [];
        for (const s of samples) {
          const image = await decodeRaw(sharp(readFileSync(samplePath(s))).rotate());
          const faces: SampleTruth['faces'] = [];
          for (const d of await m.detect(image)) {
            const landmarks = await m.landmarks(image, d.box);
            if (landmarks) faces.push({ box: d.box, landmarks });
          }
          out.push({ sample: s, image, faces });
        }
        return out;
      } finally {
        if (!models) await m.close();
      }
    })();
    truthCache.set(key, p);
    p.catch(() => truthCache.delete(key));
  }
  return p;
}

// ---------------------------------------------------------------- pixel helpers (ours: tiny and exact)

function crop(img: RgbImage, x: number, y: number, w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    const sy = Math.min(Math.max(y + r, 0), img.height - 1);
    for (let c = 0; c < w; c++) {
      const sx = Math.min(Math.max(x + c, 0), img.width - 1);
      const s = (sy * img.width + sx) * 3;
      const d = (r * w + c) * 3;
      data[d] = img.data[s];
      data[d + 1] = img.data[s + 1];
      data[d + 2] = img.data[s + 2];
    }
  }
  return { width: w, height: h, data };
}

function paste(dst: RgbImage, src: RgbImage, x: number, y: number): void {
  for (let r = 0; r < src.height; r++) {
    const dy = y + r;
    if (dy < 0 || dy >= dst.height) continue;
    for (let c = 0; c < src.width; c++) {
      const dx = x + c;
      if (dx < 0 || dx >= dst.width) continue;
      const s = (r * src.width + c) * 3;
      const d = (dy * dst.width + dx) * 3;
      dst.data[d] = src.data[s];
      dst.data[d + 1] = src.data[s + 1];
      dst.data[d + 2] = src.data[s + 2];
    }
  }
}

/** Fills a polygon (even-odd rule) with a colour. */
function fillPolygon(img: RgbImage, poly: readonly Point[], rgb: readonly [number, number, number]): void {
  const ys = poly.map((p) => p[1]);
  const xs = poly.map((p) => p[0]);
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(img.height - 1, Math.ceil(Math.max(...ys)));
  const x0 = Math.max(0, Math.floor(Math.min(...xs)));
  const x1 = Math.min(img.width - 1, Math.ceil(Math.max(...xs)));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let inside = false;
      for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
        const [xi, yi] = poly[i];
        const [xj, yj] = poly[j];
        if (yi > y + 0.5 !== yj > y + 0.5 && x + 0.5 < ((xj - xi) * (y + 0.5 - yi)) / (yj - yi) + xi)
          inside = !inside;
      }
      if (inside) img.data.set(rgb, (y * img.width + x) * 3);
    }
  }
}

/**
 * Smooth value noise (a few octaves) with a colour tint: a neutral photo-like background. Built at 1/`cell` of
 * the size (finest octave = one random value per low-res pixel) and upscaled by sharp (cubic), so a 12-MP canvas
 * costs a fraction of a second.
 */
async function noiseTexture(
  w: number,
  h: number,
  rnd: () => number,
  cell = 64,
  octaves = 4,
): Promise<RgbImage> {
  const fine = Math.max(1, cell >> (octaves - 1));
  const lw = Math.max(2, Math.ceil(w / fine));
  const lh = Math.max(2, Math.ceil(h / fine));
  const acc = new Float32Array(lw * lh * 3);
  let amp = 1;
  let total = 0;
  for (let o = 0; o < octaves; o++) {
    const step = 1 << (octaves - 1 - o); // low-res pixels per grid cell of this octave
    const gw = Math.ceil(lw / step) + 2;
    const gh = Math.ceil(lh / step) + 2;
    const grid = new Float32Array(gw * gh * 3);
    for (let i = 0; i < grid.length; i++) grid[i] = rnd();
    for (let y = 0; y < lh; y++) {
      const iy = Math.floor(y / step);
      const ty = y / step - iy;
      const sy = ty * ty * (3 - 2 * ty);
      for (let x = 0; x < lw; x++) {
        const ix = Math.floor(x / step);
        const tx = x / step - ix;
        const sx = tx * tx * (3 - 2 * tx);
        for (let c = 0; c < 3; c++) {
          const g00 = grid[(iy * gw + ix) * 3 + c];
          const g01 = grid[(iy * gw + ix + 1) * 3 + c];
          const g10 = grid[((iy + 1) * gw + ix) * 3 + c];
          const g11 = grid[((iy + 1) * gw + ix + 1) * 3 + c];
          const top = g00 + (g01 - g00) * sx;
          const bot = g10 + (g11 - g10) * sx;
          acc[(y * lw + x) * 3 + c] += amp * (top + (bot - top) * sy);
        }
      }
    }
    total += amp;
    amp *= 0.5;
  }
  const base = [60 + 120 * rnd(), 60 + 120 * rnd(), 60 + 120 * rnd()];
  const low = new Uint8Array(lw * lh * 3);
  for (let i = 0; i < lw * lh; i++) {
    const lum = acc[i * 3] / total;
    for (let c = 0; c < 3; c++) {
      const v = base[c] * (0.55 + 0.9 * lum) + 40 * (acc[i * 3 + c] / total - 0.5);
      low[i * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  if (lw === w && lh === h) return { width: w, height: h, data: low };
  return decodeRaw(
    fromRaw({ width: lw, height: lh, data: low }).resize(w, h, { kernel: 'cubic', fit: 'fill' }),
  );
}

async function patternTexture(kind: number, w: number, h: number, rnd: () => number): Promise<RgbImage> {
  const img = await noiseTexture(w, h, rnd, 32, 3);
  const col = (): [number, number, number] =>
    [rnd() * 255, rnd() * 255, rnd() * 255].map(Math.round) as [number, number, number];
  if (kind === 0) {
    // Stripes at an angle (fabric, blinds).
    const a = rnd() * Math.PI;
    const period = 8 + rnd() * 40;
    const [c1, c2] = [col(), col()];
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const t = (x * Math.cos(a) + y * Math.sin(a)) / period;
        const on = t - Math.floor(t) < 0.5;
        img.data.set(on ? c1 : c2, (y * w + x) * 3);
      }
  } else if (kind === 1) {
    // Random rectangles (windows, shelves, posters).
    for (let k = 0; k < 80; k++) {
      const rw = 10 + rnd() * w * 0.25;
      const rh = 10 + rnd() * h * 0.25;
      const x = rnd() * w;
      const y = rnd() * h;
      fillPolygon(
        img,
        [
          [x, y],
          [x + rw, y],
          [x + rw, y + rh],
          [x, y + rh],
        ],
        col(),
      );
    }
  } else if (kind === 2) {
    // Discs (balls, lamps, round objects: the shapes a face detector is most tempted by).
    for (let k = 0; k < 60; k++) {
      const r = 5 + rnd() * 60;
      const cx = rnd() * w;
      const cy = rnd() * h;
      const poly: Point[] = [];
      for (let i = 0; i < 24; i++)
        poly.push([cx + r * Math.cos((i / 24) * 2 * Math.PI), cy + r * Math.sin((i / 24) * 2 * Math.PI)]);
      fillPolygon(img, poly, col());
    }
  }
  return img;
}

function gradient(kind: number, w: number, h: number, rnd: () => number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  const c0 = [rnd() * 255, rnd() * 255, rnd() * 255];
  const c1 = [rnd() * 255, rnd() * 255, rnd() * 255];
  const a = rnd() * 2 * Math.PI;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let t: number;
      if (kind === 0) t = ((x - w / 2) * Math.cos(a) + (y - h / 2) * Math.sin(a)) / Math.hypot(w, h) + 0.5;
      else t = Math.hypot(x - w / 2, y - h / 2) / (0.5 * Math.hypot(w, h));
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.round(c0[c] + (c1[c] - c0[c]) * t);
    }
  return { width: w, height: h, data };
}

// ---------------------------------------------------------------- geometry

function scaleBox(b: Box, s: number, dx = 0, dy = 0): Box {
  return { x: b.x * s + dx, y: b.y * s + dy, width: b.width * s, height: b.height * s };
}

/** Box of a face after the photo (w×h) is turned `deg` clockwise about its centre onto a W×H canvas. */
function rotateBox(b: Box, deg: number, w: number, h: number, W: number, H: number): Box {
  const t = (deg * Math.PI) / 180;
  const dx = b.x + b.width / 2 - w / 2;
  const dy = b.y + b.height / 2 - h / 2;
  const cx = Math.cos(t) * dx - Math.sin(t) * dy + W / 2;
  const cy = Math.sin(t) * dx + Math.cos(t) * dy + H / 2;
  // A face turned by a quarter turn has its box sides swapped; a face tilted less keeps its upright size.
  const quarter = Math.round(deg / 90) % 2 !== 0;
  const bw = quarter ? b.height : b.width;
  const bh = quarter ? b.width : b.height;
  return { x: cx - bw / 2, y: cy - bh / 2, width: bw, height: bh };
}

function clipToImage(b: Box, w: number, h: number): Box {
  const x0 = Math.max(0, b.x);
  const y0 = Math.max(0, b.y);
  const x1 = Math.min(w, b.x + b.width);
  const y1 = Math.min(h, b.y + b.height);
  return { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) };
}

function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

// ---------------------------------------------------------------- buckets

async function sizeScene(
  truth: SampleTruth[],
  width: number,
  canvas: { width: number; height: number },
  rnd: () => number,
): Promise<Scene> {
  const img = await noiseTexture(canvas.width, canvas.height, rnd, 256, 5);
  const all = truth.flatMap((t) => t.faces.map((f) => ({ t, f })));
  const cols = Math.ceil(Math.sqrt((all.length * canvas.width) / canvas.height));
  const rows = Math.ceil(all.length / cols);
  const cw = canvas.width / cols;
  const ch = canvas.height / rows;
  // Cells in a shuffled order so neighbours are not always from the same photo.
  const cells = [...Array(cols * rows).keys()];
  for (let i = cells.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [cells[i], cells[j]] = [cells[j], cells[i]];
  }
  const faces: Box[] = [];
  for (let k = 0; k < all.length; k++) {
    const { t, f } = all[k];
    const s = width / f.box.width;
    // Context around the face: half a box each side, a bit more below (neck, shoulders), clipped to the photo.
    const mx = 0.5 * f.box.width;
    const x0 = Math.max(0, Math.floor(f.box.x - mx));
    const y0 = Math.max(0, Math.floor(f.box.y - 0.4 * f.box.height));
    const x1 = Math.min(t.image.width, Math.ceil(f.box.x + f.box.width + mx));
    const y1 = Math.min(t.image.height, Math.ceil(f.box.y + 1.6 * f.box.height));
    const pw = Math.max(1, Math.round((x1 - x0) * s));
    const ph = Math.max(1, Math.round((y1 - y0) * s));
    const patch = await decodeRaw(
      fromRaw(crop(t.image, x0, y0, x1 - x0, y1 - y0)).resize(pw, ph, { kernel: 'lanczos3' }),
    );
    const sx = pw / (x1 - x0);
    const sy = ph / (y1 - y0);
    const cell = cells[k];
    const cx = (cell % cols) * cw;
    const cy = Math.floor(cell / cols) * ch;
    const px = Math.round(cx + rnd() * Math.max(0, cw - pw));
    const py = Math.round(cy + rnd() * Math.max(0, ch - ph));
    paste(img, patch, px, py);
    faces.push({
      x: px + (f.box.x - x0) * sx,
      y: py + (f.box.y - y0) * sy,
      width: f.box.width * sx,
      height: f.box.height * sy,
    });
  }
  return { name: `size-${width}/canvas`, bucket: `size-${width}`, image: img, faces };
}

async function rotatedScene(t: SampleTruth, deg: number, bucket: string): Promise<Scene> {
  const image = await decodeRaw(fromRaw(t.image).rotate(deg, { background: { r: 128, g: 128, b: 128 } }));
  const faces = t.faces.map((f) =>
    rotateBox(f.box, deg, t.image.width, t.image.height, image.width, image.height),
  );
  return { name: `${bucket}/sample${t.sample}`, bucket, image, faces };
}

function occlude(t: SampleTruth, what: 'eyes' | 'mouth'): RgbImage {
  const img: RgbImage = { width: t.image.width, height: t.image.height, data: Uint8Array.from(t.image.data) };
  for (const f of t.faces) {
    const lm = f.landmarks;
    if (what === 'eyes') {
      // A black bar along the eye line, from outer eye corners, a third of the eye distance beyond each.
      const a = lm[36];
      const b = lm[45];
      const dx = b[0] - a[0];
      const dy = b[1] - a[1];
      const len = Math.hypot(dx, dy);
      const ux = dx / len;
      const uy = dy / len;
      const ext = len / 3;
      const half = len * 0.28;
      const p0: Point = [a[0] - ux * ext, a[1] - uy * ext];
      const p1: Point = [b[0] + ux * ext, b[1] + uy * ext];
      fillPolygon(
        img,
        [
          [p0[0] - uy * half, p0[1] + ux * half],
          [p1[0] - uy * half, p1[1] + ux * half],
          [p1[0] + uy * half, p1[1] - ux * half],
          [p0[0] + uy * half, p0[1] - ux * half],
        ],
        [12, 12, 12],
      );
    } else {
      // A surgical mask: the jaw line from ear to ear, closed across the nose bridge.
      const poly: Point[] = [lm[1], ...lm.slice(2, 15), lm[15], lm[29]];
      fillPolygon(img, poly, [168, 200, 222]);
    }
  }
  return img;
}

async function degradedScenes(t: SampleTruth, bucket: string): Promise<Scene[]> {
  const name = `${bucket}/sample${t.sample}`;
  const faces = t.faces.map((f) => ({ ...f.box }));
  const medianW = [...t.faces.map((f) => f.box.width)].sort((a, b) => a - b)[t.faces.length >> 1];
  switch (bucket) {
    case 'dark': {
      // ×0.25 in the encoded (sRGB) values, like a badly under-exposed shot.
      const data = Uint8Array.from(t.image.data, (v) => Math.round(v * 0.25));
      return [{ name, bucket, image: { ...t.image, data }, faces }];
    }
    case 'blur': {
      // Gaussian σ = 3 % of the face width (~5 px here): eyes and mouth become soft blobs.
      const image = await decodeRaw(fromRaw(t.image).blur(0.03 * medianW));
      return [{ name, bucket, image, faces }];
    }
    case 'jpeg-q10': {
      const bytes = await fromRaw(t.image).jpeg({ quality: 10 }).toBuffer();
      return [{ name, bucket, image: await decodeRaw(sharp(bytes)), faces }];
    }
    case 'gray': {
      const data = new Uint8Array(t.image.data.length);
      for (let i = 0; i < data.length; i += 3) {
        const y = Math.round(
          0.299 * t.image.data[i] + 0.587 * t.image.data[i + 1] + 0.114 * t.image.data[i + 2],
        );
        data[i] = data[i + 1] = data[i + 2] = y;
      }
      return [{ name, bucket, image: { ...t.image, data }, faces }];
    }
    case 'occlude-eyes':
      return [{ name, bucket, image: occlude(t, 'eyes'), faces }];
    case 'occlude-mouth':
      return [{ name, bucket, image: occlude(t, 'mouth'), faces }];
    case 'border': {
      // One scene per face: a window around it (up to 4 box widths), cut so the border cuts 40 % of the face
      // off (side by face index: left, top, right, bottom). Only that face is counted: a neighbour cut to a sliver
      // is not a face anyone could recognise, so it is neither required nor (in face scenes) penalised.
      const out: Scene[] = [];
      t.faces.forEach((f, i) => {
        const b = f.box;
        const W = t.image.width;
        const H = t.image.height;
        const side = (i + t.sample) % 4;
        // Up to 1.5 box widths / 1 box height of context, clipped to the photo; the cut side is exact.
        let x0 = Math.max(0, Math.round(b.x - 1.5 * b.width));
        let x1 = Math.min(W, Math.round(b.x + 2.5 * b.width));
        let y0 = Math.max(0, Math.round(b.y - b.height));
        let y1 = Math.min(H, Math.round(b.y + 2 * b.height));
        if (side === 0) x0 = Math.round(b.x + 0.4 * b.width);
        if (side === 1) y0 = Math.round(b.y + 0.4 * b.height);
        if (side === 2) x1 = Math.round(b.x + 0.6 * b.width);
        if (side === 3) y1 = Math.round(b.y + 0.6 * b.height);
        const image = crop(t.image, x0, y0, x1 - x0, y1 - y0);
        const box = clipToImage(scaleBox(b, 1, -x0, -y0), image.width, image.height);
        out.push({ name: `border/sample${t.sample}-face${i}`, bucket, image, faces: [box] });
      });
      return out;
    }
    default:
      throw new RangeError(`unknown bucket ${bucket}`);
  }
}

/** Crops of the photos that keep well clear of every face (walls, clothes, furniture, sky). */
function backgroundCrops(truth: SampleTruth[], rnd: () => number): Scene[] {
  const out: Scene[] = [];
  for (const t of truth) {
    const keepOut = t.faces
      .map((f) => scaleBox(f.box, 1, -0.6 * f.box.width, -0.6 * f.box.height))
      .map((b) => ({ ...b, width: b.width * 2.2, height: b.height * 2.2 }));
    let made = 0;
    for (let attempt = 0; attempt < 400 && made < 3; attempt++) {
      const w = Math.round(160 + rnd() * 340);
      const h = Math.round(w * (0.6 + rnd() * 0.8));
      if (w > t.image.width || h > t.image.height) continue;
      const x = Math.floor(rnd() * (t.image.width - w));
      const y = Math.floor(rnd() * (t.image.height - h));
      const box = { x, y, width: w, height: h };
      if (keepOut.some((k) => overlaps(k, box))) continue;
      out.push({
        name: `none-background/sample${t.sample}-${made}`,
        bucket: 'none-background',
        image: crop(t.image, x, y, w, h),
        faces: [],
      });
      made++;
    }
  }
  return out;
}

/** Builds the requested scenes, in bucket order. Deterministic for given options. */
export async function generateScenes(opts: SceneOptions = {}): Promise<Scene[]> {
  const buckets = opts.buckets ?? ALL_BUCKETS;
  for (const b of buckets)
    if (!ALL_BUCKETS.includes(b))
      throw new RangeError(`unknown bucket "${b}" (known: ${ALL_BUCKETS.join(', ')})`);
  const truth = await sampleTruth(opts.samples ?? [1, 2, 3, 4, 5, 6], opts.models);
  const canvas = opts.canvas ?? { width: 4000, height: 3000 };
  const seed = opts.seed ?? 1;
  const scenes: Scene[] = [];
  for (const bucket of buckets) {
    // One PRNG per bucket, so asking for a subset of buckets gives the same scenes as asking for all.
    const rnd = prng(seed * 1000003 + [...bucket].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7));
    if (bucket.startsWith('size-')) {
      scenes.push(await sizeScene(truth, Number(bucket.slice(5)), canvas, rnd));
    } else if (bucket === 'full') {
      for (const t of truth)
        scenes.push({
          name: `full/sample${t.sample}`,
          bucket,
          image: t.image,
          faces: t.faces.map((f) => ({ ...f.box })),
        });
    } else if (bucket.startsWith('rot')) {
      const deg = Number(bucket.slice(3));
      for (const t of truth) scenes.push(await rotatedScene(t, deg, bucket));
    } else if (bucket === 'none-background') {
      scenes.push(...backgroundCrops(truth, rnd));
    } else if (bucket === 'none-texture') {
      scenes.push({
        name: 'none-texture/noise-large',
        bucket,
        image: await noiseTexture(canvas.width, canvas.height, rnd, 192, 6),
        faces: [],
      });
      for (let k = 0; k < 6; k++)
        scenes.push({
          name: `none-texture/pattern${k}`,
          bucket,
          image: await patternTexture(k % 3, 1024, 768, rnd),
          faces: [],
        });
      scenes.push({
        name: 'none-texture/noise-fine',
        bucket,
        image: await noiseTexture(1024, 768, rnd, 8, 3),
        faces: [],
      });
    } else if (bucket === 'none-gradient') {
      for (let k = 0; k < 4; k++)
        scenes.push({
          name: `none-gradient/${k % 2 ? 'radial' : 'linear'}${k}`,
          bucket,
          image: gradient(k % 2, 1024, 768, rnd),
          faces: [],
        });
    } else {
      for (const t of truth) scenes.push(...(await degradedScenes(t, bucket)));
    }
  }
  return scenes;
}

/** PNG/JPEG bytes of a scene (for the CLI, the API and end-to-end tests). */
export function encodeScene(scene: Scene, format: 'png' | 'jpeg' = 'png'): Promise<Buffer> {
  const s = fromRaw(scene.image);
  return (format === 'png' ? s.png({ compressionLevel: 3 }) : s.jpeg({ quality: 92 })).toBuffer();
}

// ---------------------------------------------------------------- scoring

export function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

function centreIn(a: Box, b: Box): boolean {
  const cx = a.x + a.width / 2;
  const cy = a.y + a.height / 2;
  return cx >= b.x && cx <= b.x + b.width && cy >= b.y && cy <= b.y + b.height;
}

/**
 * A detection finds a ground-truth face when IoU ≥ 0.3, or when each box holds the other's centre (a tilted or
 * cut face is boxed differently by a detector but is the same face). One-to-one, greedy by IoU.
 */
export function matchFaces(
  found: readonly Box[],
  truth: readonly Box[],
): { hits: number; missed: Box[]; extra: Box[] } {
  const pairs: Array<[number, number, number]> = [];
  found.forEach((f, i) =>
    truth.forEach((t, j) => {
      const o = iou(f, t);
      if (o >= 0.3 || (centreIn(f, t) && centreIn(t, f))) pairs.push([o, i, j]);
    }),
  );
  pairs.sort((a, b) => b[0] - a[0]);
  const usedF = new Set<number>();
  const usedT = new Set<number>();
  for (const [, i, j] of pairs) {
    if (usedF.has(i) || usedT.has(j)) continue;
    usedF.add(i);
    usedT.add(j);
  }
  return {
    hits: usedT.size,
    missed: truth.filter((_, j) => !usedT.has(j)),
    extra: found.filter((_, i) => !usedF.has(i)),
  };
}
