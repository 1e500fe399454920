/**
 * Independent identity check: face-api's 128-D recognizer (dlib ResNet-34 metric network, weights from
 * `@vladmandic/face-api/model/face_recognition_model*`). It shares no weights and no architecture with anything
 * the FALCO optimization uses (ArcFace IR-SE, e4e, StyleGAN2), so the optimization cannot have "fooled" it by
 * construction; that is what makes it an honest per-face privacy report.
 *
 * Distance is Euclidean between descriptors, and 0.6 is the recognizer's standard threshold (dlib's and
 * face-api's FaceMatcher default): below it, two faces are considered the same person.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clipBox, FaceApi, type FaceApiOptions } from '../../models/faceapi/index.js';
import {
  euclideanDistance,
  openRecognizer,
  POLICY_RECOGNIZERS,
  type Recognizer,
  type RecognizerName,
  type RecognizerOptions,
} from '../../models/recognizers/index.js';
import type { Point } from './align.js';
import { uprightView, type Rotation } from './detect.js';
import type { RgbImage } from './image-io.js';
import type { Box, RecognizerVerdict } from './types.js';

export const REIDENTIFICATION_THRESHOLD = 0.6;

export interface IdentityCheck {
  /** Euclidean distance between the two 128-D descriptors. */
  distance: number;
  /** distance < threshold: the recognizer still says "same person". */
  reidentified: boolean;
  threshold: number;
}

export { euclideanDistance };

export function compareDescriptors(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  threshold = REIDENTIFICATION_THRESHOLD,
): IdentityCheck {
  if (!(threshold > 0)) throw new RangeError(`threshold must be positive, got ${threshold}`);
  const distance = euclideanDistance(a, b);
  return { distance, reidentified: distance < threshold, threshold };
}

export interface IdentityCheckerOptions extends Omit<RecognizerOptions, 'faceapi'> {
  /** Recognizers the verdicts use (default: every calibrated one in the policy, POLICY_RECOGNIZERS). */
  recognizers?: readonly RecognizerName[];
  /** Calibration (default: the repository's, models/recognizers/calibration.json). */
  calibration?: Calibration;
}

/** Options that read the recognizers from a model bundle (`<bundle>/human`, copied by the bundle build). */
export function identityOptionsForBundle(bundleDir: string): IdentityCheckerOptions {
  return { humanModelDir: join(bundleDir, 'human') };
}

export class IdentityChecker {
  readonly models: FaceApi;
  private readonly owned: boolean;
  private readonly recognizerSet = new Map<RecognizerName, Recognizer>();
  private calibrationCache?: Calibration;

  constructor(
    models?: FaceApi | FaceApiOptions,
    private readonly options: IdentityCheckerOptions = {},
  ) {
    this.owned = !(models instanceof FaceApi);
    this.models = models instanceof FaceApi ? models : new FaceApi(models);
    if (options.calibration) this.calibrationCache = options.calibration;
  }

  get calibration(): Calibration {
    this.calibrationCache ??= loadCalibration();
    return this.calibrationCache;
  }

  /** Original photos' embeddings, reused across a face's retries (the original does not change). */
  private readonly originals = new WeakMap<RgbImage, Map<string, Float32Array | null>>();

  private async originalEmbedding(
    rec: Recognizer,
    image: RgbImage,
    face: { box: Box; landmarks: readonly Point[] },
  ): Promise<Float32Array | null> {
    let m = this.originals.get(image);
    if (!m) this.originals.set(image, (m = new Map()));
    const key = `${rec.name}:${face.landmarks.map((p) => `${p[0]},${p[1]}`).join(';')}`;
    if (!m.has(key)) m.set(key, await rec.embed(image, face));
    return m.get(key)!;
  }

  private recognizer(name: RecognizerName): Recognizer {
    let r = this.recognizerSet.get(name);
    if (!r) {
      const { recognizers: _r, calibration: _c, ...o } = this.options;
      r = openRecognizer(name, { ...o, faceapi: this.models });
      this.recognizerSet.set(name, r);
    }
    return r;
  }

  /**
   * Every policy recognizer's calibrated verdict on original vs anonymized for one face. The anonymized face is
   * aligned on landmarks re-estimated inside the original box (as a re-identification attempt would); the
   * original ones are used when that fails. A recognizer whose crop leaves the image compares the box
   * contents instead (face-api) or is reported recognisable (fail safe) when it cannot embed at all.
   */
  async verdicts(
    originalPhoto: RgbImage,
    anonymizedPhoto: RgbImage,
    detected: { box: Box; landmarks: readonly Point[]; angle?: Rotation },
  ): Promise<RecognizerVerdict[]> {
    const cal = this.calibration;
    const names = this.options.recognizers ?? POLICY_RECOGNIZERS;
    // Recognizers and the landmark net are trained on upright faces: a face of a turned photo is judged in the
    // frame where it is upright (the detector's `angle`). Judged sideways, face-api's axis-aligned crop and the
    // landmarks re-estimated on the output are wrong, the distance comes out large, and an unchanged face
    // would pass as "not recognisable".
    const view = uprightView(originalPhoto, detected);
    const original = view.image;
    const anonymized = uprightView(anonymizedPhoto, detected).image;
    const face = { box: view.box, landmarks: view.landmarks };
    const lm = (await this.models.landmarks(anonymized, face.box)) ?? face.landmarks;
    const out: RecognizerVerdict[] = [];
    for (const name of names) {
      const c = cal.recognizers[name];
      if (!c)
        throw new Error(`recognizer ${name} has no calibration; run npm run bench -- calibrate --write`);
      const rec = this.recognizer(name);
      let a = await this.originalEmbedding(rec, original, face);
      let b = a && (await rec.embed(anonymized, { box: face.box, landmarks: lm }));
      if ((!a || !b) && name === 'faceapi-128') {
        const box = clipBox(face.box, original.width, original.height);
        if (box) {
          a = await this.models.descriptorOfBox(original, box);
          b = await this.models.descriptorOfBox(anonymized, box);
        }
      }
      const distance = a && b ? rec.distance(a, b) : 0;
      out.push({
        recognizer: name,
        distance,
        threshold: c.threshold,
        falseMatchRate: c.falseMatchRate,
        recognisable: distance < c.threshold,
      });
    }
    return out;
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
    originalPhoto: RgbImage,
    anonymizedPhoto: RgbImage,
    detected: { box: Box; landmarks: readonly Point[]; angle?: Rotation },
    threshold = REIDENTIFICATION_THRESHOLD,
  ): Promise<IdentityCheck> {
    // Judged upright, as in verdicts().
    const view = uprightView(originalPhoto, detected);
    const original = view.image;
    const anonymized = uprightView(anonymizedPhoto, detected).image;
    const face = { box: view.box, landmarks: view.landmarks };
    const a = await this.descriptor(original, face.landmarks);
    const lm = (await this.models.landmarks(anonymized, face.box)) ?? face.landmarks;
    const b = await this.descriptor(anonymized, lm);
    return compareDescriptors(a, b, threshold);
  }

  async close(): Promise<void> {
    for (const r of this.recognizerSet.values()) await r.close();
    this.recognizerSet.clear();
    if (this.owned) await this.models.close();
  }
}

// ---------------------------------------------------------------- calibrated verdicts (issue #10)

/** Where the calibration lives in the repository (written by `npm run bench -- calibrate --write`). */
export const CALIBRATION_PATH = fileURLToPath(
  new URL('../../models/recognizers/calibration.json', import.meta.url),
);

export interface RecognizerCalibration {
  metric: 'euclidean' | 'cosine';
  threshold: number;
  /** Different-people pairs with distance < threshold, over all such pairs. */
  falseMatchRate: number;
  /** Same-person pairs with distance ≥ threshold, over all such pairs. */
  falseNonMatchRate: number;
  equalErrorRate: number;
  pairs: { same: number; different: number };
  same: { median: number; p98: number; max: number };
  different: { min: number; p02: number; median: number };
  /** Distances original → face covered by a control; `recognisable` = fraction below the threshold. */
  controls: Record<string, { min: number; median: number; max: number; recognisable: number }>;
  zoom?: number;
  /** face-api only: the rates at its customary 0.6. */
  atDefault060?: { falseMatchRate: number; falseNonMatchRate: number };
}

export interface Calibration {
  format: 'falco-reid-calibration/1';
  generatedBy: string;
  faces: number;
  variants: string[];
  controls: string[];
  /** Weight of FNMR against FMR in the threshold rule. */
  fnmrWeight: number;
  recognizers: Partial<Record<RecognizerName, RecognizerCalibration>>;
  /** The combined policy's figures on the same pairs (any policy recognizer says "same" → recognisable). */
  policy?: {
    rule: 'any';
    recognizers: RecognizerName[];
    thresholds: Record<string, number | undefined>;
    falseMatchRate: number;
    falseNonMatchRate: number;
    pairs: { same: number; different: number };
  };
}

let repoCalibration: Calibration | undefined;

/** Reads and checks a calibration file (default: the repository's). */
export function loadCalibration(path = CALIBRATION_PATH): Calibration {
  if (path === CALIBRATION_PATH && repoCalibration) return repoCalibration;
  const c = JSON.parse(readFileSync(path, 'utf8')) as Calibration;
  if (c.format !== 'falco-reid-calibration/1')
    throw new Error(`${path}: unknown calibration format ${String(c.format)}`);
  for (const [name, r] of Object.entries(c.recognizers))
    if (!(r && r.threshold > 0 && r.falseMatchRate >= 0 && r.falseMatchRate <= 1))
      throw new Error(`${path}: recognizer ${name} has an invalid threshold or false-match rate`);
  if (path === CALIBRATION_PATH) repoCalibration = c;
  return c;
}

export { POLICY_RECOGNIZERS };

export interface CombinedVerdict {
  /** The policy's answer: is this face still recognisable? */
  recognisable: boolean;
  /** Which recognizers said "same person". */
  by: RecognizerName[];
  /** Human-readable reason for reports and errors. */
  reason: string;
}

/**
 * Combined verdict over the recognizers' calibrated verdicts: recognisable when ANY recognizer still says
 * "same person". Any, not a vote: each recognizer's threshold already sits above 98 % of the same-person
 * distances, and a face one strong recognizer can match is a face a determined attacker can match.
 */
export function combinedVerdict(verdicts: readonly RecognizerVerdict[]): CombinedVerdict {
  if (!verdicts.length) throw new RangeError('no recognizer verdicts to combine');
  const by = verdicts.filter((v) => v.recognisable).map((v) => v.recognizer as RecognizerName);
  const fmt = (v: RecognizerVerdict) =>
    `${v.recognizer} ${v.distance.toFixed(3)} ${v.recognisable ? '<' : '≥'} ${v.threshold}`;
  return {
    recognisable: by.length > 0,
    by,
    reason: verdicts.map(fmt).join(', '),
  };
}

/** The policy's calibrated figures (for reports and the calibration bench). */
export function combine(cal: Calibration, names: readonly RecognizerName[] = POLICY_RECOGNIZERS) {
  return {
    rule: 'any' as const,
    recognizers: names.filter((n) => cal.recognizers[n]),
    thresholds: Object.fromEntries(names.map((n) => [n, cal.recognizers[n]?.threshold])),
  };
}
