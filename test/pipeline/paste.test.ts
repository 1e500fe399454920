import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { alignFace, applyMat3, LANDMARK_GROUPS, type Point } from '../../functions/pipeline/align.js';
import { decodeImage, encodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import {
  convexHull,
  faceMask,
  maskAlphaAt,
  maskLines,
  pasteFace,
  type PasteResult,
} from '../../functions/pipeline/paste.js';
import { oracleDetect, samplePath, type OracleResult } from '../faceapi/oracle.js';

const N = 256;

function solid(n: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(n * n * 3);
  for (let i = 0; i < n * n; i++) data.set(rgb, i * 3);
  return { width: n, height: n, data };
}

/** Photo-space alpha of a paste (0 outside its region). */
function alphaAt(r: PasteResult, x: number, y: number): number {
  const { x0, y0, x1, y1 } = r.region;
  if (x < x0 || y < y0 || x >= x1 || y >= y1) return 0;
  return r.alpha[(y - y0) * (x1 - x0) + (x - x0)];
}

describe('paste-back', () => {
  let photo: RgbImage;
  let oracle: OracleResult;
  beforeAll(async () => {
    const bytes = readFileSync(samplePath(1));
    photo = (await decodeImage(bytes)).image;
    oracle = await oracleDetect(bytes);
    expect(oracle.faces.length).toBe(3);
  });

  it('convexHull returns the hull of a point set', () => {
    const hull = convexHull([
      [0, 0],
      [2, 0],
      [1, 1],
      [2, 2],
      [0, 2],
      [1, 0.5],
    ]);
    expect(hull).toHaveLength(4);
    expect(hull).toEqual(
      expect.arrayContaining([
        [0, 0],
        [2, 0],
        [2, 2],
        [0, 2],
      ]),
    );
  });

  it('changes every face and leaves every pixel outside the masks byte-identical (also after PNG)', async () => {
    let img = photo;
    const pastes: PasteResult[] = [];
    for (const face of oracle.faces) {
      const { alignment } = alignFace(img, face.landmarks, N);
      const r = pasteFace(img, solid(N, [0, 255, 0]), alignment, face.landmarks);
      expect(r.maskedPixels).toBeGreaterThan(5000);
      pastes.push(r);
      img = r.image;
    }
    let outside = 0;
    let changedInside = 0;
    let inside = 0;
    for (let y = 0; y < photo.height; y++) {
      for (let x = 0; x < photo.width; x++) {
        const i = (y * photo.width + x) * 3;
        const masked = pastes.some((r) => alphaAt(r, x, y) > 0);
        const same =
          img.data[i] === photo.data[i] &&
          img.data[i + 1] === photo.data[i + 1] &&
          img.data[i + 2] === photo.data[i + 2];
        if (!masked) {
          outside++;
          if (!same) throw new Error(`pixel (${x},${y}) outside every mask changed`);
        } else {
          inside++;
          if (!same) changedInside++;
        }
      }
    }
    expect(outside).toBeGreaterThan(photo.width * photo.height * 0.9);
    expect(changedInside / inside).toBeGreaterThan(0.95);
    // Face core is fully replaced: the pixel under the nose tip is pure green.
    for (const face of oracle.faces) {
      const [nx, ny] = face.landmarks[30].map(Math.floor);
      expect(
        Array.from(img.data.subarray((ny * photo.width + nx) * 3, (ny * photo.width + nx) * 3 + 3)),
      ).toEqual([0, 255, 0]);
    }
    // Lossless encoding keeps the promise for the file too.
    const decoded = (await decodeImage(await encodeImage(img, 'png'))).image;
    expect(Buffer.from(decoded.data).equals(Buffer.from(img.data))).toBe(true);
  });

  it('the mask follows the face: covers jaw, brows and forehead, is 0 on the crop border, and ramps smoothly', () => {
    for (const face of oracle.faces) {
      const lm = face.landmarks;
      const { alignment } = alignFace(photo, lm, N);
      const mask = faceMask(alignment, lm);
      const lines = maskLines(mask);
      // Every jaw and brow landmark lies on or inside the hull; face centre (nose) is in the full-alpha core.
      for (let k = LANDMARK_GROUPS.jaw[0]; k < LANDMARK_GROUPS.browRight[1]; k++) {
        const [u, v] = applyMat3(alignment.forward, lm[k]);
        for (const [nx, ny, c] of lines) expect(nx * u + ny * v + c).toBeGreaterThan(-1e-6);
      }
      const nose = applyMat3(alignment.forward, lm[30]);
      expect(maskAlphaAt(mask, lines, nose[0], nose[1])).toBe(1);
      // Zero all along the crop square border: no visible square.
      for (let t = 0; t <= N; t += 4) {
        for (const [u, v] of [
          [t, 0],
          [t, N],
          [0, t],
          [N, t],
        ] as Point[])
          expect(maskAlphaAt(mask, lines, u, v)).toBe(0);
      }
      // Ramp is gentle in photo pixels: smoothstep's max slope is 1.5 / (feather width in photo pixels).
      const r = pasteFace(photo, solid(N, [0, 0, 0]), alignment, lm);
      const w = r.region.x1 - r.region.x0;
      const h = r.region.y1 - r.region.y0;
      let maxStep = 0;
      for (let y = 0; y < h - 1; y++) {
        for (let x = 0; x < w - 1; x++) {
          const a = r.alpha[y * w + x];
          maxStep = Math.max(
            maxStep,
            Math.abs(a - r.alpha[y * w + x + 1]),
            Math.abs(a - r.alpha[(y + 1) * w + x]),
          );
        }
      }
      const featherPhotoPx = mask.featherPx * alignment.scale;
      expect(featherPhotoPx).toBeGreaterThan(10);
      expect(maxStep).toBeLessThan((1.5 / featherPhotoPx) * 1.1);
    }
  });

  it('pasting the unmodified aligned crop back is nearly invisible (seamless)', () => {
    for (const face of oracle.faces) {
      const { alignment, crop } = alignFace(photo, face.landmarks, N);
      const r = pasteFace(photo, crop, alignment, face.landmarks);
      let sum = 0;
      let n = 0;
      let max = 0;
      for (let y = r.region.y0; y < r.region.y1; y++) {
        for (let x = r.region.x0; x < r.region.x1; x++) {
          for (let c = 0; c < 3; c++) {
            const i = (y * photo.width + x) * 3 + c;
            const d = Math.abs(r.image.data[i] - photo.data[i]);
            sum += d;
            max = Math.max(max, d);
            n++;
          }
        }
      }
      expect(sum / n).toBeLessThan(1.5);
      expect(max).toBeLessThan(60);
    }
  });

  it('rejects a face of the wrong size', () => {
    const lm = oracle.faces[0].landmarks;
    const { alignment } = alignFace(photo, lm, N);
    expect(() => pasteFace(photo, solid(N / 2, [0, 0, 0]), alignment, lm)).toThrow(/expects 256×256/);
  });
});
