/**
 * Utility check: what FALCO promises to keep (age, gender, expression, head pose), measured by networks the
 * optimisation never sees — face-api's age/gender net (TinyXception) and expression net (its own dense-block
 * extractor), ported to our engine (models/faceapi) — plus head pose from the 68 landmarks. The pipeline
 * measures the original and the anonymized face and reports both side by side.
 *
 * Head pose method: a generic 3-D face (six points: nose tip, chin, outer eye corners, mouth corners; the
 * commonly used anthropometric mean-face coordinates) is fitted to the matching landmarks under scaled
 * orthographic projection (least-squares 2×3 linear map, rows normalised and re-orthogonalised into a
 * rotation), and the rotation is read as R = Rz(roll)·Ry(yaw)·Rx(−pitch) in a camera frame with x to the
 * image right, y up and z towards the viewer. Signs: yaw > 0 when the nose points to the image's right,
 * pitch > 0 when it points up, roll > 0 when the face is turned counter-clockwise on screen. Orthographic
 * fitting ignores perspective, which is small at portrait distances; accuracy is a few degrees, enough to
 * compare an original with its replacement.
 */
import { attributeBox, EXPRESSIONS, FaceApi, type FaceApiOptions } from '../../models/faceapi/index.js';
import type { Point } from './align.js';
import type { RgbImage } from './image-io.js';
import { uprightView, type Rotation } from './detect.js';
import type { AttributeChange, Box, FaceAttributes } from './types.js';

/** Mean-face 3-D points (arbitrary units, x right, y up, z towards the viewer) and their iBUG-68 indices. */
const MODEL_POINTS: ReadonlyArray<[number, [number, number, number]]> = [
  [30, [0, 0, 0]], // nose tip
  [8, [0, -330, -65]], // chin
  [36, [-225, 170, -135]], // outer corner of the image-left eye
  [45, [225, 170, -135]], // outer corner of the image-right eye
  [48, [-150, -150, -125]], // image-left mouth corner
  [54, [150, -150, -125]], // image-right mouth corner
];

const DEG = 180 / Math.PI;

/** Solves the 3×3 system A·x = b (Cramer's rule; A is the small normal matrix). */
function solve3(A: number[][], b: number[]): number[] {
  const det = (m: number[][]) =>
    m[0]![0]! * (m[1]![1]! * m[2]![2]! - m[1]![2]! * m[2]![1]!) -
    m[0]![1]! * (m[1]![0]! * m[2]![2]! - m[1]![2]! * m[2]![0]!) +
    m[0]![2]! * (m[1]![0]! * m[2]![1]! - m[1]![1]! * m[2]![0]!);
  const d = det(A);
  return [0, 1, 2].map((k) => det(A.map((row, i) => row.map((v, j) => (j === k ? b[i]! : v)))) / d);
}

const norm = (v: number[]) => Math.hypot(v[0]!, v[1]!, v[2]!);
const scale = (v: number[], s: number) => v.map((x) => x * s);
const cross = (a: number[], b: number[]) => [
  a[1]! * b[2]! - a[2]! * b[1]!,
  a[2]! * b[0]! - a[0]! * b[2]!,
  a[0]! * b[1]! - a[1]! * b[0]!,
];

/** Head pose in degrees from 68 landmarks (method in the file comment). */
export function headPose(landmarks: readonly Point[]): { yaw: number; pitch: number; roll: number } {
  if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
  const X = MODEL_POINTS.map(([, p]) => p);
  // Image y points down; the model's y points up.
  const x = MODEL_POINTS.map(([k]) => [landmarks[k]![0], -landmarks[k]![1]] as const);
  const n = X.length;
  const mX = [0, 1, 2].map((j) => X.reduce((s, p) => s + p[j]!, 0) / n);
  const mx = [0, 1].map((j) => x.reduce((s, p) => s + p[j]!, 0) / n);
  const Xc = X.map((p) => p.map((v, j) => v - mX[j]!));
  const xc = x.map((p) => p.map((v, j) => v - mx[j]!));
  // Normal equations: (XcᵀXc)·mᵢ = Xcᵀ·xcᵢ for each image axis i.
  const XtX = [0, 1, 2].map((i) => [0, 1, 2].map((j) => Xc.reduce((s, p) => s + p[i]! * p[j]!, 0)));
  const rows = [0, 1].map((a) =>
    solve3(
      XtX,
      [0, 1, 2].map((i) => Xc.reduce((s, p, k) => s + p[i]! * xc[k]![a]!, 0)),
    ),
  );
  const r1 = scale(rows[0]!, 1 / norm(rows[0]!));
  let r2 = scale(rows[1]!, 1 / norm(rows[1]!));
  const r3u = cross(r1, r2);
  const r3 = scale(r3u, 1 / norm(r3u));
  r2 = cross(r3, r1);
  // R = [r1; r2; r3] = Rz(roll)·Ry(yaw)·Rx(p) with p = −pitch.
  const yaw = Math.asin(Math.max(-1, Math.min(1, -r3[0]!))) * DEG;
  const p = Math.atan2(r3[1]!, r3[2]!) * DEG;
  const roll = Math.atan2(r2[0]!, r1[0]!) * DEG;
  return { yaw, pitch: -p, roll };
}

/** Owns (or shares) the face-api sessions for the attribute nets; create once per process. */
export class AttributeMeter {
  readonly models: FaceApi;
  private readonly owned: boolean;

  constructor(models?: FaceApi | FaceApiOptions) {
    this.owned = !(models instanceof FaceApi);
    this.models = models instanceof FaceApi ? models : new FaceApi(models);
  }

  /**
   * Age, gender, expression (face-api's nets on face-api's own face region for these landmarks) and head pose.
   * Throws RangeError when the face region has no pixels inside the image.
   */
  async measureAttributes(
    image: RgbImage,
    face: { box: Box; landmarks: readonly Point[] },
  ): Promise<FaceAttributes> {
    const box = attributeBox(face.landmarks, image.width, image.height);
    if (!box) throw new RangeError('the face lies outside the image; no attributes');
    const raw = await this.models.attributesOfBox(image, box);
    let best = 0;
    raw.expressions.forEach((p, i) => {
      if (p > raw.expressions[best]!) best = i;
    });
    const male = raw.male > 0.5;
    return {
      age: raw.age,
      gender: male ? 'male' : 'female',
      genderScore: male ? raw.male : 1 - raw.male,
      expression: EXPRESSIONS[best]!,
      expressionScore: raw.expressions[best]!,
      expressions: Object.fromEntries(EXPRESSIONS.map((e, i) => [e, raw.expressions[i]!])),
      pose: headPose(face.landmarks),
    };
  }

  /**
   * The utility check of one replaced face: its attributes on the original and on the anonymized image, both
   * measured the same way — the 68-point net run inside the detector box (no new detection), then the nets on
   * face-api's region for those landmarks — so the anonymized side is measured on its own pixels (pose and face
   * region follow the new face, as face-api would measure it) and an unchanged face reports no change at all,
   * whatever procedure gave the detector's landmarks. A face found turned (`angle` ≠ 0) is measured in its
   * upright view (detect.ts `uprightView`): the nets were trained on upright faces.
   * Throws RangeError when the face has no pixels inside the image or no landmarks are found.
   */
  async compare(
    original: RgbImage,
    anonymized: RgbImage,
    face: { box: Box; landmarks: readonly Point[]; angle?: Rotation },
  ): Promise<{ original: FaceAttributes; anonymized: FaceAttributes; change: AttributeChange }> {
    // The same face geometry gives the same crop of both photos (angle 0: the photos themselves).
    const box = uprightView(original, face).box;
    const measure = async (photo: RgbImage): Promise<FaceAttributes> => {
      const view = uprightView(photo, face).image;
      const landmarks = await this.models.landmarks(view, box);
      if (!landmarks) throw new RangeError('the face lies outside the image; no attributes');
      return this.measureAttributes(view, { box, landmarks });
    };
    const before = await measure(original);
    const after = await measure(anonymized);
    return { original: before, anonymized: after, change: attributeChange(before, after) };
  }

  /** Creates the attribute nets' sessions now (otherwise on the first face measured). */
  async warmup(): Promise<void> {
    const one: RgbImage = { width: 1, height: 1, data: new Uint8Array(3) };
    await this.models.attributesOfBox(one, { x: 0, y: 0, width: 1, height: 1 });
  }

  async close(): Promise<void> {
    if (this.owned) await this.models.close();
  }
}

/** Side-by-side comparison for reports: how far the anonymized face moved from the original. */
export function attributeChange(original: FaceAttributes, anonymized: FaceAttributes): AttributeChange {
  return {
    ageDelta: anonymized.age - original.age,
    genderKept: original.gender === anonymized.gender,
    expressionKept: original.expression === anonymized.expression,
    poseDeltaDeg: Math.max(
      Math.abs(anonymized.pose.yaw - original.pose.yaw),
      Math.abs(anonymized.pose.pitch - original.pose.pitch),
      Math.abs(anonymized.pose.roll - original.pose.roll),
    ),
  };
}
