import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignFace } from '../../functions/pipeline/align.js';
import { FaceDetector, type DetectedFace } from '../../functions/pipeline/detect.js';
import {
  compareDescriptors,
  euclideanDistance,
  IdentityChecker,
  REIDENTIFICATION_THRESHOLD,
} from '../../functions/pipeline/identity.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { pasteFace } from '../../functions/pipeline/paste.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';

const models = new FaceApi({ threads: 2 });
const detector = new FaceDetector(models);
const identity = new IdentityChecker(models);
afterAll(() => models.close());

describe('independent identity check (face-api 128-D recognizer)', () => {
  const bytes = readFileSync(samplePath(1));
  let photo: RgbImage;
  let faces: DetectedFace[];
  beforeAll(async () => {
    photo = (await decodeImage(bytes)).image;
    faces = await detector.detect(photo);
    expect(faces.length).toBe(3);
  });

  it('says "same person" for a differently cropped and resized view of each face', async () => {
    for (const f of faces) {
      const b = f.box;
      const left = Math.max(0, Math.round(b.x - b.width * 0.6));
      const top = Math.max(0, Math.round(b.y - b.height * 0.4));
      const width = Math.round(b.width * 2.1);
      const height = Math.round(b.height * 1.9);
      const { data, info } = await sharp(bytes)
        .extract({ left, top, width, height })
        .resize({ width: Math.round(width * 0.55), kernel: 'lanczos3' })
        .raw()
        .toBuffer({ resolveWithObject: true });
      const view: RgbImage = { width: info.width, height: info.height, data: new Uint8Array(data) };
      const inView = await detector.detect(view);
      expect(inView.length).toBe(1);
      const a = await identity.descriptor(photo, f.landmarks);
      const c = compareDescriptors(a, await identity.descriptor(view, inView[0].landmarks));
      expect(c.reidentified).toBe(true);
      expect(c.distance).toBeLessThan(0.3);
    }
  });

  it('says "different" for the different people in the photo', async () => {
    const d = await Promise.all(faces.map((f) => identity.descriptor(photo, f.landmarks)));
    for (let i = 0; i < d.length; i++) {
      for (let j = i + 1; j < d.length; j++) {
        const c = compareDescriptors(d[i], d[j]);
        expect(c.reidentified).toBe(false);
        expect(c.distance).toBeGreaterThan(REIDENTIFICATION_THRESHOLD);
      }
    }
  });

  it('check(): distance 0 for an untouched photo, reidentified=false once the face is replaced by another person', async () => {
    const same = await identity.check(photo, photo, faces[0]);
    expect(same.distance).toBeLessThan(1e-6);
    expect(same.reidentified).toBe(true);
    // Replace face 0 by face 2 (a different person), aligned and pasted with our own pipeline.
    const donor = alignFace(photo, faces[2].landmarks, 256).crop;
    const target = alignFace(photo, faces[0].landmarks, 256);
    const swapped = pasteFace(photo, donor, target.alignment, faces[0].landmarks).image;
    const r = await identity.check(photo, swapped, faces[0]);
    expect(r.distance).toBeGreaterThan(REIDENTIFICATION_THRESHOLD);
    expect(r.reidentified).toBe(false);
  });

  it('verdicts(): an untouched face of a photo turned 90° (no EXIF) is recognisable to every recognizer', async () => {
    // Judged sideways (face-api's axis-aligned crop, landmarks re-estimated upright on a sideways face) the
    // distance of a face to itself came out large: an unchanged face would have passed as anonymous.
    const { data, info } = await sharp(bytes)
      .resize({ width: 960 })
      .rotate(90)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const turned: RgbImage = { width: info.width, height: info.height, data: new Uint8Array(data) };
    const found = (await detector.detect(turned)).filter((f) => f.angle !== 0);
    expect(found.length).toBeGreaterThanOrEqual(2);
    for (const f of found) {
      const v = await identity.verdicts(turned, turned, f);
      expect(v.length).toBeGreaterThanOrEqual(2);
      for (const r of v) {
        expect(r.recognisable).toBe(true);
        expect(r.distance).toBeLessThan(r.threshold / 4);
      }
    }
  });

  it('compareDescriptors validates its inputs', () => {
    expect(euclideanDistance([0, 3], [4, 0])).toBe(5);
    expect(() => euclideanDistance([1], [1, 2])).toThrow(/differ/);
    expect(() => compareDescriptors([1], [1], 0)).toThrow(RangeError);
  });
});
