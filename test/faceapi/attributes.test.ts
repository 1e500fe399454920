/**
 * Utility-check nets (face-api's age/gender and expression nets on our engine) against upstream face-api on
 * tfjs, fed the same crops; head pose from landmarks against synthetic projections with known angles; and the
 * attributes on the sample faces being sane.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { AttributeMeter, headPose } from '../../functions/pipeline/attributes.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { attributeBox, FaceApi } from '../../models/faceapi/index.js';
import type { IntBox } from '../../models/faceapi/preprocess.js';
import { oracleAttributes, samplePath } from './oracle.js';

function cut(img: RgbImage, b: IntBox): RgbImage {
  const out: RgbImage = { width: b.width, height: b.height, data: new Uint8Array(b.width * b.height * 3) };
  for (let y = 0; y < b.height; y++)
    out.data.set(
      img.data.subarray(((b.y + y) * img.width + b.x) * 3, ((b.y + y) * img.width + b.x + b.width) * 3),
      y * b.width * 3,
    );
  return out;
}

const models = new FaceApi({ threads: 2 });
afterAll(() => models.close());

describe('age/gender and expression nets vs upstream face-api', () => {
  it('match on the faces of sample1 (face-api region, incl. a non-square crop)', async () => {
    const { image } = await decodeImage(readFileSync(samplePath(1)));
    const faces = await new FaceDetector(models).detect(image);
    expect(faces.length).toBe(3);
    for (const f of faces) {
      const box = attributeBox(f.landmarks, image.width, image.height)!;
      const crop = cut(image, box);
      const ours = await models.attributesOfBox(crop, { x: 0, y: 0, width: crop.width, height: crop.height });
      const ref = await oracleAttributes(crop);
      expect(Math.abs(ours.age - ref.age)).toBeLessThan(0.05);
      expect(Math.abs(ours.male - ref.male)).toBeLessThan(1e-3);
      ours.expressions.forEach((p, i) => expect(Math.abs(p - ref.expressions[i]!)).toBeLessThan(1e-3));
      // In-image and cut-out crops are the same pixels.
      const inPlace = await models.attributesOfBox(image, box);
      expect(inPlace.age).toBeCloseTo(ours.age, 4);
    }
  }, 120_000);
});

describe('head pose from landmarks', () => {
  /** Orthographic projection of the pose model points with known angles, into a 68-point array. */
  function synthetic(yaw: number, pitch: number, roll: number): Array<[number, number]> {
    const d = Math.PI / 180;
    const [a, b, c] = [-pitch * d, yaw * d, roll * d];
    const Rx = [
      [1, 0, 0],
      [0, Math.cos(a), -Math.sin(a)],
      [0, Math.sin(a), Math.cos(a)],
    ];
    const Ry = [
      [Math.cos(b), 0, Math.sin(b)],
      [0, 1, 0],
      [-Math.sin(b), 0, Math.cos(b)],
    ];
    const Rz = [
      [Math.cos(c), -Math.sin(c), 0],
      [Math.sin(c), Math.cos(c), 0],
      [0, 0, 1],
    ];
    const mm = (A: number[][], B: number[][]) =>
      A.map((r) => B[0]!.map((_, j) => r.reduce((s, v, k) => s + v * B[k]![j]!, 0)));
    const R = mm(Rz, mm(Ry, Rx));
    const pts: Record<number, number[]> = {
      30: [0, 0, 0],
      8: [0, -330, -65],
      36: [-225, 170, -135],
      45: [225, 170, -135],
      48: [-150, -150, -125],
      54: [150, -150, -125],
    };
    const lm: Array<[number, number]> = Array.from({ length: 68 }, () => [0, 0]);
    for (const [k, p] of Object.entries(pts)) {
      const q = R.map((r) => r[0]! * p[0]! + r[1]! * p[1]! + r[2]! * p[2]!);
      lm[Number(k)] = [500 + 0.4 * q[0]!, 400 - 0.4 * q[1]!];
    }
    return lm;
  }

  it('recovers known yaw, pitch and roll', () => {
    for (const [y, p, r] of [
      [0, 0, 0],
      [25, 0, 0],
      [-30, 10, 5],
      [10, -15, -20],
    ] as const) {
      const pose = headPose(synthetic(y, p, r));
      expect(pose.yaw).toBeCloseTo(y, 1);
      expect(pose.pitch).toBeCloseTo(p, 1);
      expect(pose.roll).toBeCloseTo(r, 1);
    }
  });

  it('mirroring the face negates yaw and roll', async () => {
    const { image } = await decodeImage(readFileSync(samplePath(2)));
    const [f] = await new FaceDetector(models).detect(image);
    const pose = headPose(f!.landmarks);
    // Mirror: x → W − x, and the iBUG indices swap sides.
    const swap = (k: number): number => {
      const pairs: Array<[number, number]> = [];
      for (let i = 0; i < 8; i++) pairs.push([i, 16 - i]);
      for (let i = 0; i < 5; i++) pairs.push([17 + i, 26 - i]);
      pairs.push([36, 45], [37, 44], [38, 43], [39, 42], [40, 47], [41, 46], [31, 35], [32, 34]);
      pairs.push([48, 54], [49, 53], [50, 52], [55, 59], [56, 58], [60, 64], [61, 63], [65, 67]);
      for (const [a, b] of pairs) if (k === a) return b;
      for (const [a, b] of pairs) if (k === b) return a;
      return k;
    };
    const mirrored = f!.landmarks.map((_, k): [number, number] => {
      const p = f!.landmarks[swap(k)]!;
      return [image.width - p[0], p[1]];
    });
    const m = headPose(mirrored);
    expect(m.yaw).toBeCloseTo(-pose.yaw, 5);
    expect(m.roll).toBeCloseTo(-pose.roll, 5);
    expect(m.pitch).toBeCloseTo(pose.pitch, 5);
  });
});

describe('measureAttributes on the sample faces', () => {
  it('adult ages, female (the samples show women), plausible poses (sample2 looks down), a known expression', async () => {
    const meter = new AttributeMeter(models);
    let n = 0;
    let female = 0;
    for (const s of [1, 2, 3]) {
      const { image } = await decodeImage(readFileSync(samplePath(s)));
      // face-api's own path (one SSD pass, landmarks in its box), as upstream face-api would measure them.
      const found = [];
      for (const d of await models.detect(image, { minConfidence: 0.5 })) {
        const landmarks = await models.landmarks(image, d.box);
        if (landmarks) found.push({ box: d.box, landmarks });
      }
      for (const f of found) {
        const a = await meter.measureAttributes(image, f);
        n++;
        if (a.gender === 'female') female++;
        expect(a.age).toBeGreaterThan(15);
        expect(a.age).toBeLessThan(50);
        expect(a.genderScore).toBeGreaterThanOrEqual(0.5);
        expect(['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised']).toContain(
          a.expression,
        );
        expect(a.expressionScore).toBeGreaterThan(1 / 7);
        expect(Math.abs(a.pose.yaw)).toBeLessThan(75);
        expect(Math.abs(a.pose.pitch)).toBeLessThan(60);
        expect(Math.abs(a.pose.roll)).toBeLessThan(60);
        // sample2: all three women look down at their phones/knees.
        if (s === 2) expect(a.pose.pitch).toBeLessThan(-5);
      }
    }
    expect(n).toBe(9);
    expect(female / n).toBeGreaterThanOrEqual(0.8);
  }, 120_000);
});
