/**
 * Per-face method choice (functions/pipeline/face-method.ts) on a real sample face with the real face-api nets:
 * a big frontal face goes to FALCO, the same face shrunk below MIN_FALCO_FACE_PX is 'small', landmarks that
 * miss the box are 'landmarks', and a face turned with its photo is found upright by the detector's frame vote.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { FaceDetector, uprightFrame, type DetectedFace } from '../../functions/pipeline/detect.js';
import {
  chooseMethod,
  landmarkInconsistency,
  maskBoxCoverage,
  MIN_FALCO_FACE_PX,
  MIRROR_68,
} from '../../functions/pipeline/face-method.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';

let models: FaceApi;
let image: RgbImage;
let face: DetectedFace;

beforeAll(async () => {
  models = new FaceApi();
  image = (await decodeImage(readFileSync(samplePath(1)))).image;
  const faces = await new FaceDetector(models).detect(image, { mode: 'fast' });
  face = faces[0]!;
});
afterAll(async () => {
  await models?.close();
});

/** The image turned 90° clockwise: photo (x, y) → (h − 1 − y, x). */
function turned(img: RgbImage): RgbImage {
  const w = img.height;
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++)
      data.set(
        img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3),
        (x * w + (w - 1 - y)) * 3,
      );
  return { width: w, height: img.width, data };
}

describe('face method choice', () => {
  it('MIRROR_68 is a left/right involution that fixes the midline', () => {
    expect(MIRROR_68.every((j, k) => MIRROR_68[j] === k)).toBe(true);
    for (const mid of [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]) expect(MIRROR_68[mid]).toBe(mid);
    expect([MIRROR_68[0], MIRROR_68[36], MIRROR_68[48]]).toEqual([16, 45, 54]);
  });

  it('a full-size frontal face: consistent landmarks whose mask covers the box → falco', async () => {
    expect(face.box.width).toBeGreaterThan(100);
    const inc = await landmarkInconsistency(models, image, face.box, face.landmarks);
    expect(inc).toBeLessThan(0.05);
    expect(maskBoxCoverage(face.box, face.landmarks)).toBeGreaterThan(0.8);
    expect(await chooseMethod(models, image, face)).toMatchObject({ falco: true });
  });

  it('below the measured size → small; landmarks off the box → landmarks', async () => {
    const small = {
      ...face,
      box: { ...face.box, width: MIN_FALCO_FACE_PX - 1, height: MIN_FALCO_FACE_PX - 1 },
    };
    expect(await chooseMethod(models, image, small)).toMatchObject({ falco: false, reason: 'small' });
    const shifted = {
      box: face.box,
      landmarks: face.landmarks.map(([x, y]) => [x + face.box.width, y] as [number, number]),
    };
    expect(maskBoxCoverage(shifted.box, shifted.landmarks)).toBe(0);
    expect(await chooseMethod(models, image, shifted)).toMatchObject({ falco: false, reason: 'landmarks' });
  });

  it('a face in a photo turned 90°: the frame vote finds the turn that makes it upright, and its landmarks', async () => {
    // The least tilted face of sample1 (eye line within 5° of level), turned with the photo.
    const faces = await new FaceDetector(models).detect(image, { mode: 'fast' });
    const level = faces.find((f) => {
      const eye = (i: number[]) =>
        i.reduce((a, k) => [a[0] + f.landmarks[k]![0] / 6, a[1] + f.landmarks[k]![1] / 6], [0, 0]);
      const [l, r] = [eye([36, 37, 38, 39, 40, 41]), eye([42, 43, 44, 45, 46, 47])];
      return Math.abs(Math.atan2(r[1]! - l[1]!, r[0]! - l[0]!)) < (5 * Math.PI) / 180;
    })!;
    expect(level).toBeDefined();
    const up = turned(image);
    const H = image.height;
    const at = ([x, y]: readonly [number, number]): [number, number] => [H - y, x];
    const b = level.box;
    const box = { x: H - b.y - b.height, y: b.x, width: b.height, height: b.width };
    const truth = level.landmarks.map(at);
    const side = Math.sqrt(box.width * box.height);
    const err = (lm: readonly (readonly [number, number])[]) =>
      lm.reduce((a, p, k) => a + Math.hypot(p[0] - truth[k]![0], p[1] - truth[k]![1]), 0) / 68 / side;
    // The photo is turned 90° clockwise, so the face is upright under a further 270°.
    const vote = (await uprightFrame(models, up, box, 0))!;
    expect(vote.angle).toBe(270);
    expect(err(vote.landmarks)).toBeLessThan(0.03);
    // What the upright-trained net draws on the sideways face, taken at face value, is far off.
    const naive = (await models.landmarks(up, box))!;
    expect(err(naive)).toBeGreaterThan(0.1);
    expect(
      await chooseMethod(models, up, { box, landmarks: vote.landmarks, angle: vote.angle }),
    ).toMatchObject({
      falco: true,
    });
  });

  it('a turned face found upright in its frame (detector angle) is judged in that frame', async () => {
    // Half size keeps the detector's turned passes cheap; the faces stay ~80 px.
    const half = (
      await decodeImage(
        await sharp(readFileSync(samplePath(1)))
          .resize({ width: 960 })
          .png()
          .toBuffer(),
      )
    ).image;
    const up = turned(half);
    const found = await new FaceDetector(models).detect(up);
    const big = found.filter((f) => f.angle !== 0 && f.box.width > 60);
    expect(big.length).toBeGreaterThan(0);
    for (const f of big) {
      expect(await landmarkInconsistency(models, up, f.box, f.landmarks, f.angle)).toBeLessThan(0.06);
      // The same landmarks judged as if the face were upright disagree with their mirror image.
      expect(await landmarkInconsistency(models, up, f.box, f.landmarks, 0)).toBeGreaterThan(0.08);
    }
    const choices = await Promise.all(big.map((f) => chooseMethod(models, up, f)));
    expect(choices.filter((c) => c.falco).length).toBeGreaterThanOrEqual(Math.ceil(big.length / 2));
  });
});
