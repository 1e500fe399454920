/**
 * face-api (SSD MobileNetV1 detector, 68-point landmark net, 128-D recognizer) on our ONNX engine.
 *
 * Weights are read from the installed `@vladmandic/face-api/model` (MIT), never downloaded. Graphs are built
 * in memory on first use and run by onnxruntime. Host-side steps reproduce face-api's (preprocess.ts, anchor
 * decoding, NMS), with one deliberate difference each for boxes and landmarks, both sub-pixel corrections of
 * upstream rounding quirks (documented at `detect` and `landmarks`); the parity tests account for them.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as E from '../engine/index.js';
import {
  ATTRIBUTE_INPUT,
  buildAgeGender,
  buildFaceExpression,
  buildFaceLandmark68,
  buildFaceRecognition,
  buildSsdMobilenetV1,
  LANDMARK_INPUT,
  RECOGNITION_INPUT,
  SSD_ANCHORS,
  SSD_INPUT,
  ssdAnchors,
} from './nets.js';
import { cropPadResize, FACE_MEAN_RGB, squareLayout, type IntBox, type PixelSource } from './preprocess.js';
import { WeightMap } from './weights.js';

export type Point = [number, number];

export interface FaceBox {
  /** Continuous pixel coordinates in the image (x right, y down). */
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface RawDetection {
  box: FaceBox;
  score: number;
}

export interface DetectOptions {
  /** Minimum detection score, face-api's `minConfidence` (default 0.5). */
  minConfidence?: number;
  /** Maximum faces returned (default 100). */
  maxResults?: number;
  /** NMS IoU threshold (face-api: 0.5). */
  iouThreshold?: number;
}

export interface FaceApiOptions {
  /** Folder with the tfjs manifests (default: the installed @vladmandic/face-api/model). */
  modelDir?: string;
  /** onnxruntime intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  /** Default: FALCO_PROVIDER (see models/engine/runtime.ts), like the FALCO models. */
  provider?: 'auto' | 'cpu' | 'cuda';
  log?: (msg: string) => void;
}

export function defaultModelDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
}

export type NetName = 'ssd' | 'landmarks' | 'recognition' | 'expression' | 'ageGender';

/** Each net's weights manifest file in a face-api model directory. */
export const MANIFEST: Record<NetName, string> = {
  ssd: 'ssd_mobilenetv1_model-weights_manifest.json',
  landmarks: 'face_landmark_68_model-weights_manifest.json',
  recognition: 'face_recognition_model-weights_manifest.json',
  expression: 'face_expression_model-weights_manifest.json',
  ageGender: 'age_gender_model-weights_manifest.json',
};

/** face-api's seven expression classes, in the expression net's output order. */
export const EXPRESSIONS = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'] as const;
export type Expression = (typeof EXPRESSIONS)[number];

export interface RawAttributes {
  /** Age regression, years. */
  age: number;
  /** P(male) from the gender softmax. */
  male: number;
  /** Expression probabilities in EXPRESSIONS order. */
  expressions: number[];
}

/** Serialised ONNX for one net (exported so tooling can save it for inspection or a model bundle). */
export function buildFaceApiOnnx(
  net: NetName,
  modelDir = defaultModelDir(),
): { onnx: Uint8Array; weights: WeightMap } {
  const wm = WeightMap.load(join(modelDir, MANIFEST[net]));
  const builders: Record<NetName, (w: WeightMap) => E.Graph> = {
    ssd: buildSsdMobilenetV1,
    landmarks: buildFaceLandmark68,
    recognition: buildFaceRecognition,
    expression: buildFaceExpression,
    ageGender: buildAgeGender,
  };
  const g = builders[net](wm);
  return { onnx: E.toBytes(g), weights: wm };
}

function iou(a: Float32Array | number[], i: number, b: Float32Array | number[], j: number): number {
  // [ymin, xmin, ymax, xmax] rows; tolerant of swapped corners like face-api.
  const ay0 = Math.min(a[i], a[i + 2]);
  const ax0 = Math.min(a[i + 1], a[i + 3]);
  const ay1 = Math.max(a[i], a[i + 2]);
  const ax1 = Math.max(a[i + 1], a[i + 3]);
  const by0 = Math.min(b[j], b[j + 2]);
  const bx0 = Math.min(b[j + 1], b[j + 3]);
  const by1 = Math.max(b[j], b[j + 2]);
  const bx1 = Math.max(b[j + 1], b[j + 3]);
  const areaA = (ay1 - ay0) * (ax1 - ax0);
  const areaB = (by1 - by0) * (bx1 - bx0);
  if (areaA <= 0 || areaB <= 0) return 0;
  const inter =
    Math.max(Math.min(ay1, by1) - Math.max(ay0, by0), 0) *
    Math.max(Math.min(ax1, bx1) - Math.max(ax0, bx0), 0);
  return inter / (areaA + areaB - inter);
}

/** Greedy NMS over candidates above `minScore`, highest score first (face-api's procedure). */
export function nonMaxSuppression(
  boxes: Float32Array,
  scores: Float32Array,
  maxResults: number,
  iouThreshold: number,
  minScore: number,
): number[] {
  const order: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] > minScore) order.push(i);
  order.sort((p, q) => scores[q] - scores[p]);
  const kept: number[] = [];
  for (const c of order) {
    if (kept.length >= maxResults) break;
    if (kept.every((k) => iou(boxes, c * 4, boxes, k * 4) <= iouThreshold)) kept.push(c);
  }
  return kept;
}

/** The face box face-api's recognizer reads: dlib-style square from eye and mouth centres. */
export function recognitionBox(lm: readonly Point[], width: number, height: number): IntBox | null {
  const centre = (s: number, e: number): Point => {
    let x = 0;
    let y = 0;
    for (let k = s; k < e; k++) {
      x += lm[k][0];
      y += lm[k][1];
    }
    return [x / (e - s), y / (e - s)];
  };
  const le = centre(36, 42);
  const re = centre(42, 48);
  const mo = centre(48, 68);
  const dist = (Math.hypot(mo[0] - le[0], mo[1] - le[1]) + Math.hypot(mo[0] - re[0], mo[1] - re[1])) / 2;
  const size = Math.floor(dist / 0.45);
  const rx = (le[0] + re[0] + mo[0]) / 3;
  const ry = (le[1] + re[1] + mo[1]) / 3;
  const x = Math.floor(Math.max(0, rx - 0.5 * size));
  const y = Math.floor(Math.max(0, ry - 0.43 * size));
  return clipBox({ x, y, width: size, height: size }, width, height);
}

/**
 * The region face-api's age/gender and expression nets read for a face with landmarks (its `alignedRect`): the
 * landmarks' bounding box grown by 20 % of its width and height (centred), clipped to the image and floored.
 */
export function attributeBox(lm: readonly Point[], width: number, height: number): IntBox | null {
  const xs = lm.map((p) => p[0]);
  const ys = lm.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const y0 = Math.min(...ys);
  const w = Math.max(...xs) - x0;
  const h = Math.max(...ys) - y0;
  return clipBox({ x: x0 - 0.1 * w, y: y0 - 0.1 * h, width: 1.2 * w, height: 1.2 * h }, width, height);
}

/** face-api's clipAtImageBorders + floor; null when nothing is left. */
export function clipBox(b: FaceBox, width: number, height: number): IntBox | null {
  const x = Math.max(b.x, 0);
  const y = Math.max(b.y, 0);
  const w = Math.min(b.x + b.width - x, width - x);
  const h = Math.min(b.y + b.height - y, height - y);
  const r = { x: Math.floor(x), y: Math.floor(y), width: Math.floor(w), height: Math.floor(h) };
  return r.width > 0 && r.height > 0 ? r : null;
}

export class FaceApi {
  private sessions = new Map<NetName, Promise<E.Session>>();
  private anchors?: Float32Array;

  constructor(readonly options: FaceApiOptions = {}) {}

  private session(net: NetName): Promise<E.Session> {
    let s = this.sessions.get(net);
    if (!s) {
      s = (async () => {
        const { onnx, weights } = buildFaceApiOnnx(net, this.options.modelDir ?? defaultModelDir());
        if (net === 'ssd') this.anchors = ssdAnchors(weights);
        const log = this.options.log;
        return E.Session.create(onnx, {
          ...(this.options.provider ? { provider: this.options.provider } : {}),
          ...(this.options.threads ? { threads: this.options.threads } : {}),
          ...(log ? { log: (m: string) => log(`faceapi ${net}: ${m}`) } : {}),
        });
      })();
      this.sessions.set(net, s);
    }
    return s;
  }

  /** Builds all three sessions now (otherwise lazily on first use). */
  async warmup(): Promise<void> {
    await Promise.all((['ssd', 'landmarks', 'recognition'] as const).map((n) => this.session(n)));
  }

  /**
   * SSD detections in image pixels, highest score first.
   *
   * face-api maps the network's [0,1] box (relative to the padded square) to pixels through
   * `512 / round(side·512/max)` per axis, which stretches coordinates by up to ~0.1 % (2 px on a 1920-px photo);
   * we multiply by the padded side directly, which is exact. `upstreamBox` reproduces face-api's mapping.
   */
  async detect(img: PixelSource, options: DetectOptions = {}): Promise<RawDetection[]> {
    const minConfidence = options.minConfidence ?? 0.5;
    const maxResults = options.maxResults ?? 100;
    const iouThreshold = options.iouThreshold ?? 0.5;
    const layout = squareLayout(img.width, img.height, false);
    const input = cropPadResize(
      img,
      { x: 0, y: 0, width: img.width, height: img.height },
      layout,
      SSD_INPUT,
      [127.5, 127.5, 127.5],
      1 / 127.5,
    );
    const { boxes, scores } = await this.ssdDecoded(input);
    const keep = nonMaxSuppression(boxes, scores, maxResults, iouThreshold, minConfidence);
    const S = layout.side;
    return keep.map((i) => {
      const top = Math.max(0, boxes[i * 4]) * S;
      const left = Math.max(0, boxes[i * 4 + 1]) * S;
      const bottom = Math.min(1, boxes[i * 4 + 2]) * S;
      const right = Math.min(1, boxes[i * 4 + 3]) * S;
      return { box: { x: left, y: top, width: right - left, height: bottom - top }, score: scores[i] };
    });
  }

  /**
   * Runs the SSD on one prepared 512×512 input (NCHW, (v − 127.5) / 127.5) and decodes every anchor:
   * boxes as [ymin, xmin, ymax, xmax] rows relative to the input, and face scores (sigmoid). Callers that
   * tile or rotate the photo (functions/pipeline/detect.ts) prepare their own inputs and use this.
   */
  async ssdDecoded(input: Float32Array): Promise<{ boxes: Float32Array; scores: Float32Array }> {
    const session = await this.session('ssd');
    const out = await session.run({ image: input });
    const enc = out.box_encodings.data;
    const logits = out.class_logits.data;
    const anchors = this.anchors!;
    const boxes = new Float32Array(SSD_ANCHORS * 4);
    const scores = new Float32Array(SSD_ANCHORS);
    for (let i = 0; i < SSD_ANCHORS; i++) {
      const a = i * 4;
      const ah = anchors[a + 2] - anchors[a];
      const aw = anchors[a + 3] - anchors[a + 1];
      const acy = anchors[a] + ah / 2;
      const acx = anchors[a + 1] + aw / 2;
      const cy = (enc[a] / 10) * ah + acy;
      const cx = (enc[a + 1] / 10) * aw + acx;
      const hh = (Math.exp(enc[a + 2] / 5) * ah) / 2;
      const hw = (Math.exp(enc[a + 3] / 5) * aw) / 2;
      boxes[a] = cy - hh;
      boxes[a + 1] = cx - hw;
      boxes[a + 2] = cy + hh;
      boxes[a + 3] = cx + hw;
      scores[i] = 1 / (1 + Math.exp(-logits[i * 3 + 1]));
    }
    return { boxes, scores };
  }

  /**
   * 68 landmarks for a face box, in image pixels. face-api crops the floored box but then shifts the
   * landmarks by the unfloored box corner (up to 1 px off); we shift by the crop's actual corner.
   * Returns null when the box has no pixels inside the image.
   */
  async landmarks(img: PixelSource, box: FaceBox): Promise<Point[] | null> {
    const crop = clipBox(box, img.width, img.height);
    if (!crop) return null;
    const session = await this.session('landmarks');
    const layout = squareLayout(crop.width, crop.height, true);
    const input = cropPadResize(img, crop, layout, LANDMARK_INPUT, FACE_MEAN_RGB, 1 / 255);
    const out = (await session.run({ face: input })).landmarks.data;
    // face-api's postProcess: undo the (assumed symmetric) centring pad in scaled units, divide by scaled size.
    const s = LANDMARK_INPUT / Math.max(crop.width, crop.height);
    const sw = crop.width * s;
    const sh = crop.height * s;
    const padX = sw < sh ? Math.abs(sw - sh) / 2 : 0;
    const padY = sh < sw ? Math.abs(sw - sh) / 2 : 0;
    const pts: Point[] = [];
    for (let k = 0; k < 68; k++) {
      const rx = (out[2 * k] * LANDMARK_INPUT - padX) / sw;
      const ry = (out[2 * k + 1] * LANDMARK_INPUT - padY) / sh;
      pts.push([crop.x + rx * crop.width, crop.y + ry * crop.height]);
    }
    return pts;
  }

  /** 128-D descriptor of the face with these landmarks (face-api's dlib-aligned crop); null if off-image. */
  async descriptor(img: PixelSource, landmarks: readonly Point[]): Promise<Float32Array | null> {
    if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
    const box = recognitionBox(landmarks, img.width, img.height);
    if (!box) return null;
    return this.descriptorOfBox(img, box);
  }

  /** 128-D descriptor of an image region taken as the face crop (the whole image when box is omitted). */
  async descriptorOfBox(
    img: PixelSource,
    box: IntBox = { x: 0, y: 0, width: img.width, height: img.height },
  ): Promise<Float32Array> {
    const session = await this.session('recognition');
    const layout = squareLayout(box.width, box.height, true);
    const input = cropPadResize(img, box, layout, RECOGNITION_INPUT, FACE_MEAN_RGB, 1 / 255);
    return Float32Array.from((await session.run({ face: input })).descriptor.data);
  }

  /**
   * Age, gender and expression of an image region taken as the face crop (face-api's preprocessing: centred
   * square padding, 112 px, mean-RGB/255). `attributeBox` gives face-api's own region for a face.
   */
  async attributesOfBox(img: PixelSource, box: IntBox): Promise<RawAttributes> {
    const [ag, ex] = await Promise.all([this.session('ageGender'), this.session('expression')]);
    const layout = squareLayout(box.width, box.height, true);
    const input = cropPadResize(img, box, layout, ATTRIBUTE_INPUT, FACE_MEAN_RGB, 1 / 255);
    const a = await ag.run({ face: input });
    const e = await ex.run({ face: input });
    return {
      age: a.age.data[0] as number,
      male: a.gender.data[0] as number,
      expressions: Array.from(e.expressions.data as Float32Array),
    };
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }
}

/** face-api's own pixel mapping of a detection (see FaceApi.detect), for parity checks. */
export function upstreamBox(b: FaceBox, width: number, height: number): FaceBox {
  const S = Math.max(width, height);
  const rw = Math.round((width * SSD_INPUT) / S);
  const rh = Math.round((height * SSD_INPUT) / S);
  const fx = ((SSD_INPUT / rw) * width) / S;
  const fy = ((SSD_INPUT / rh) * height) / S;
  return { x: b.x * fx, y: b.y * fy, width: b.width * fx, height: b.height * fy };
}
