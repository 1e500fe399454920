/**
 * Independent identity check: face-api's 128-D recognizer (dlib ResNet-34 metric network, weights from
 * `@vladmandic/face-api/model/face_recognition_model*`). It shares no weights and no architecture with anything
 * the FALCO optimization uses (ArcFace IR-SE, e4e, StyleGAN2), so the optimization cannot have "fooled" it by
 * construction; that is what makes it an honest per-face privacy report.
 *
 * Distance is Euclidean between descriptors, and 0.6 is the recognizer's standard threshold (dlib's and
 * face-api's FaceMatcher default): below it, two faces are considered the same person.
 */
import { FaceApi, type FaceApiOptions } from '../../models/faceapi/index.js';
import type { Point } from './align.js';
import type { RgbImage } from './image-io.js';
import type { Box } from './types.js';

export const REIDENTIFICATION_THRESHOLD = 0.6;

export interface IdentityCheck {
  /** Euclidean distance between the two 128-D descriptors. */
  distance: number;
  /** distance < threshold: the recognizer still says "same person". */
  reidentified: boolean;
  threshold: number;
}

export function euclideanDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`descriptor lengths differ: ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

export function compareDescriptors(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  threshold = REIDENTIFICATION_THRESHOLD,
): IdentityCheck {
  if (!(threshold > 0)) throw new RangeError(`threshold must be positive, got ${threshold}`);
  const distance = euclideanDistance(a, b);
  return { distance, reidentified: distance < threshold, threshold };
}

export class IdentityChecker {
  readonly models: FaceApi;
  private readonly owned: boolean;

  constructor(models?: FaceApi | FaceApiOptions) {
    this.owned = !(models instanceof FaceApi);
    this.models = models instanceof FaceApi ? models : new FaceApi(models);
  }

  /** Descriptor of the face with these landmarks (face-api's own crop rule); throws if the face is off-image. */
  async descriptor(image: RgbImage, landmarks: readonly Point[]): Promise<Float32Array> {
    const d = await this.models.descriptor(image, landmarks);
    if (!d) throw new RangeError('the face lies outside the image; no descriptor');
    return d;
  }

  /**
   * distance(original, anonymized) for one face. The anonymized photo's landmarks are re-estimated inside the
   * original detection box (as a re-identification attempt would align on the new face); if that fails the
   * original landmarks are used.
   */
  async check(
    original: RgbImage,
    anonymized: RgbImage,
    face: { box: Box; landmarks: readonly Point[] },
    threshold = REIDENTIFICATION_THRESHOLD,
  ): Promise<IdentityCheck> {
    const a = await this.descriptor(original, face.landmarks);
    const lm = (await this.models.landmarks(anonymized, face.box)) ?? face.landmarks;
    const b = await this.descriptor(anonymized, lm);
    return compareDescriptors(a, b, threshold);
  }

  async close(): Promise<void> {
    if (this.owned) await this.models.close();
  }
}
