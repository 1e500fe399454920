/**
 * Face detection + 68-point landmarks on a decoded photo: face-api's SSD MobileNetV1 and FaceLandmark68Net,
 * ported to our ONNX engine (models/faceapi), forward only.
 */
import { FaceApi, type FaceApiOptions } from '../../models/faceapi/index.js';
import type { Point } from './align.js';
import type { RgbImage } from './image-io.js';
import { InputError, type Box } from './types.js';

export interface DetectFacesOptions {
  /** Minimum detector score in (0, 1). Default 0.5 (face-api's default minConfidence). */
  scoreThreshold?: number;
  /**
   * Smallest face kept, in pixels of the shorter box side. Default 0: every detected face is kept, because a
   * face that is skipped is a face that is published un-anonymized.
   */
  minFaceSize?: number;
  /** At most this many faces (highest scores). Default 100. */
  maxFaces?: number;
}

export interface DetectedFace {
  /** 0-based, in descending score order. */
  index: number;
  /** Detector box, continuous pixel coordinates. */
  box: Box;
  score: number;
  /** 68 iBUG points, continuous pixel coordinates. */
  landmarks: Point[];
}

function checkOptions(o: DetectFacesOptions): Required<DetectFacesOptions> {
  const scoreThreshold = o.scoreThreshold ?? 0.5;
  const minFaceSize = o.minFaceSize ?? 0;
  const maxFaces = o.maxFaces ?? 100;
  if (!(scoreThreshold > 0 && scoreThreshold < 1)) {
    throw new InputError('invalid-options', `scoreThreshold must be in (0, 1), got ${scoreThreshold}`);
  }
  if (!(minFaceSize >= 0 && Number.isFinite(minFaceSize))) {
    throw new InputError(
      'invalid-options',
      `minFaceSize must be a non-negative number of pixels, got ${minFaceSize}`,
    );
  }
  if (!(Number.isInteger(maxFaces) && maxFaces >= 1 && maxFaces <= 1000)) {
    throw new InputError('invalid-options', `maxFaces must be an integer in 1..1000, got ${maxFaces}`);
  }
  return { scoreThreshold, minFaceSize, maxFaces };
}

/** Owns the detector/landmark sessions; create once per process and reuse. */
export class FaceDetector {
  readonly models: FaceApi;
  private readonly owned: boolean;

  constructor(models?: FaceApi | FaceApiOptions) {
    this.owned = !(models instanceof FaceApi);
    this.models = models instanceof FaceApi ? models : new FaceApi(models);
  }

  async detect(image: RgbImage, options: DetectFacesOptions = {}): Promise<DetectedFace[]> {
    const opts = checkOptions(options);
    const raw = await this.models.detect(image, {
      minConfidence: opts.scoreThreshold,
      maxResults: opts.maxFaces,
    });
    const faces: DetectedFace[] = [];
    for (const d of raw) {
      if (Math.min(d.box.width, d.box.height) < opts.minFaceSize) continue;
      const landmarks = await this.models.landmarks(image, d.box);
      if (!landmarks) continue; // box entirely outside the image (cannot happen for clipped SSD boxes)
      faces.push({ index: faces.length, box: { ...d.box }, score: d.score, landmarks });
    }
    return faces;
  }

  async close(): Promise<void> {
    if (this.owned) await this.models.close();
  }
}
