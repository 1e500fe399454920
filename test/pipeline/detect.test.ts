import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { FaceDetector, type DetectedFace } from '../../functions/pipeline/detect.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import { InputError } from '../../functions/pipeline/types.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';

/** Faces per face-api demo photo, counted by eye (every visible face, including the profile in sample2). */
const EXPECTED_FACES: Record<number, number> = { 1: 3, 2: 3, 3: 3, 4: 4, 5: 5, 6: 4 };

const models = new FaceApi({ threads: 2 });
const detector = new FaceDetector(models);
// The SSD alone: what `scoreThreshold` means before score fusion (test/pipeline/detect-confirm.test.ts).
const ssdOnly = new FaceDetector(models, { confirm: false });
afterAll(async () => {
  await detector.close();
  await models.close();
});

function checkLandmarksInBox(f: DetectedFace): void {
  const { x, y, width: w, height: h } = f.box;
  // The jaw line of a turned head can poke out of the detector box; allow 20 % of the box per side.
  for (const [px, py] of f.landmarks) {
    expect(px).toBeGreaterThan(x - 0.2 * w);
    expect(px).toBeLessThan(x + 1.2 * w);
    expect(py).toBeGreaterThan(y - 0.2 * h);
    expect(py).toBeLessThan(y + 1.2 * h);
  }
  // Eyes, nose and mouth (27..67) sit inside the box proper; a profile face (sample2, left) has ~12-17 % of them
  // just outside, where the net extrapolates the hidden half of the face (17 % since the detector renders its
  // input with sharp instead of face-api's own resize: the box moved by a few pixels).
  const inner = f.landmarks.slice(27);
  const inside = inner.filter(([px, py]) => px >= x && px <= x + w && py >= y && py <= y + h).length;
  expect(inside / inner.length).toBeGreaterThan(0.8);
}

describe('detectFaces on the face-api sample photos', () => {
  it.each(Object.entries(EXPECTED_FACES))(
    'sample%s.jpg has %i faces, with plausible landmarks',
    async (n, count) => {
      const { image } = await decodeImage(readFileSync(samplePath(Number(n))));
      // The single whole-image pass ('single') is the frame the landmark net was validated in: its landmarks
      // must lie in their boxes. The multi-pass default must find the same faces with sane anatomy; its
      // landmarks of sample2's profile face (box from a pyramid pass) fall 83 % inside the box — a known
      // weakness, left to the detection work (face-method.ts sends untrusted landmarks to the fallback).
      for (const f of await detector.detect(image, { mode: 'single' })) checkLandmarksInBox(f);
      const faces = await detector.detect(image);
      expect(faces.length).toBe(count);
      for (const f of faces) {
        expect(f.landmarks).toHaveLength(68);
        expect(f.score).toBeGreaterThan(0.5);
        // Anatomy sanity: left eye left of right eye, mouth below the eyes.
        const eyeL = f.landmarks[36][0] + f.landmarks[39][0];
        const eyeR = f.landmarks[42][0] + f.landmarks[45][0];
        expect(eyeL).toBeLessThan(eyeR);
        expect(f.landmarks[57][1]).toBeGreaterThan(f.landmarks[27][1]);
      }
      // Distinct faces: no two boxes overlap much.
      for (let i = 0; i < faces.length; i++) {
        for (let j = i + 1; j < faces.length; j++) {
          const a = faces[i].box;
          const b = faces[j].box;
          const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
          const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
          expect(ix * iy).toBeLessThan(0.3 * Math.min(a.width * a.height, b.width * b.height));
        }
      }
    },
  );

  it('finds the same faces in a photo stored rotated with an EXIF orientation tag', async () => {
    // Store sample1 rotated 90° counter-clockwise and tag it "rotate 90° CW to display" (orientation 6).
    const stored = await sharp(readFileSync(samplePath(1)))
      .rotate(-90)
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 92 })
      .toBuffer();
    const { image, orientation } = await decodeImage(stored);
    expect([orientation, image.width, image.height]).toEqual([6, 1920, 1280]);
    expect((await detector.detect(image)).length).toBe(3);
  });

  it('honours scoreThreshold, minFaceSize and maxFaces', async () => {
    const { image } = await decodeImage(readFileSync(samplePath(2)));
    const all = await ssdOnly.detect(image, { scoreThreshold: 0.5 });
    expect(all.map((f) => f.score)).toEqual([...all.map((f) => f.score)].sort((a, b) => b - a));
    const strict = await ssdOnly.detect(image, { scoreThreshold: 0.9 });
    expect(strict.length).toBe(all.filter((f) => f.score > 0.9).length);
    expect(strict.length).toBeLessThan(all.length);
    // With fusion on, a face under the threshold stands only when the second detector confirmed it.
    const fused = await detector.detect(image, { scoreThreshold: 0.9 });
    expect(fused.every((f) => f.score > 0.9 || f.source.confirmedBy !== undefined)).toBe(true);
    expect(fused.length).toBeGreaterThanOrEqual(strict.length);
    const smallest = Math.min(...all.map((f) => Math.min(f.box.width, f.box.height)));
    const big = await detector.detect(image, { minFaceSize: smallest + 1 });
    expect(big.length).toBe(all.length - 1);
    expect((await detector.detect(image, { maxFaces: 1 })).length).toBe(1);
  });

  it('returns no faces for an image without any', async () => {
    const { image } = await decodeImage(
      await sharp({ create: { width: 640, height: 480, channels: 3, background: '#7a8b9c' } })
        .png()
        .toBuffer(),
    );
    expect(await detector.detect(image)).toEqual([]);
  });

  it('rejects invalid options with a typed error', async () => {
    const { image } = await decodeImage(
      await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
        .png()
        .toBuffer(),
    );
    for (const bad of [
      { scoreThreshold: 0 },
      { scoreThreshold: 1.5 },
      { minFaceSize: -1 },
      { maxFaces: 0 },
    ]) {
      await expect(detector.detect(image, bad)).rejects.toBeInstanceOf(InputError);
    }
  });
});
