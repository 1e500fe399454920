import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  alignFace,
  applyMat3,
  ffhqAlignment,
  landmarksToCrop,
  multiplyMat3,
  unalignFace,
  warpAffine,
  type Point,
} from '../../functions/pipeline/align.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { faceMask, maskAlphaAt, maskLines } from '../../functions/pipeline/paste.js';
import { oracleDetect, samplePath, type OracleResult } from '../faceapi/oracle.js';

/** 68 landmarks with the eyes/mouth where we want them; other points on a plausible face outline. */
function syntheticLandmarks(eyeL: Point, eyeR: Point, mouthL: Point, mouthR: Point): Point[] {
  const lm: Point[] = [];
  for (let k = 0; k < 68; k++) lm.push([(eyeL[0] + eyeR[0]) / 2, (eyeL[1] + mouthL[1]) / 2]);
  for (let k = 36; k < 42; k++)
    lm[k] = [eyeL[0] + (k < 39 ? -1 : 1) * ((k % 3) - 1), eyeL[1] + (k % 2 ? 1 : -1)];
  // Make the 6 eye points average exactly to the eye centre.
  const fix = (s: number, c: Point): void => {
    const m = [0, 0];
    for (let k = s; k < s + 6; k++) {
      m[0] += lm[k][0] / 6;
      m[1] += lm[k][1] / 6;
    }
    for (let k = s; k < s + 6; k++) lm[k] = [lm[k][0] - m[0] + c[0], lm[k][1] - m[1] + c[1]];
  };
  for (let k = 42; k < 48; k++) lm[k] = [eyeR[0] + ((k % 3) - 1), eyeR[1] + (k % 2 ? 1 : -1)];
  fix(36, eyeL);
  fix(42, eyeR);
  lm[48] = mouthL;
  lm[54] = mouthR;
  return lm;
}

const rotate = (p: Point, th: number, o: Point): Point => {
  const dx = p[0] - o[0];
  const dy = p[1] - o[1];
  return [o[0] + Math.cos(th) * dx - Math.sin(th) * dy, o[1] + Math.sin(th) * dx + Math.cos(th) * dy];
};

describe('FFHQ alignment geometry', () => {
  const lm = syntheticLandmarks([100, 100], [140, 100], [105, 150], [135, 150]);

  it('reproduces the FFHQ quad for a hand-computed face', () => {
    // eyeAvg (120,100), eyeToEye (40,0), eyeToMouth (0,50): x = (90,0)/|.|·max(80, 90) = (90,0), y = (0,90),
    // c = (120,105) → quad TL (30,15), BL (30,195), BR (210,195), TR (210,15).
    const a = ffhqAlignment(lm, 256);
    const expected = [
      [30, 15],
      [30, 195],
      [210, 195],
      [210, 15],
    ];
    a.quad.forEach((p, i) => {
      expect(p[0]).toBeCloseTo(expected[i][0], 9);
      expect(p[1]).toBeCloseTo(expected[i][1], 9);
    });
    expect(a.scale).toBeCloseTo(180 / 256, 12);
    // The crop corners map to the quad corners, and the eye midpoint lands at the FFHQ position.
    const corners: Point[] = [
      [0, 0],
      [0, 256],
      [256, 256],
      [256, 0],
    ];
    corners.forEach((c, i) => {
      const p = applyMat3(a.inverse, c);
      expect(p[0]).toBeCloseTo(a.quad[i][0], 9);
      expect(p[1]).toBeCloseTo(a.quad[i][1], 9);
    });
    const eye = applyMat3(a.forward, [120, 100]);
    expect(eye[0]).toBeCloseTo(128, 9);
    expect(eye[1]).toBeCloseTo((85 / 180) * 256, 9);
  });

  it('forward and inverse are exact inverses, and alignment is rotation-equivariant', () => {
    const o: Point = [120, 120];
    for (const th of [0.3, -0.7, 1.9]) {
      const rot = lm.map((p) => rotate(p, th, o));
      const a = ffhqAlignment(rot, 512);
      const id = multiplyMat3(a.forward, a.inverse);
      [1, 0, 0, 0, 1, 0, 0, 0, 1].forEach((v, i) => expect(id[i]).toBeCloseTo(v, 12));
      // Rotating the face rotates the quad by the same angle: crop coordinates of the landmarks are unchanged.
      const ref = landmarksToCrop(ffhqAlignment(lm, 512), lm);
      landmarksToCrop(a, rot).forEach((p, i) => {
        expect(p[0]).toBeCloseTo(ref[i][0], 8);
        expect(p[1]).toBeCloseTo(ref[i][1], 8);
      });
    }
  });

  it('rejects degenerate input', () => {
    expect(() => ffhqAlignment(lm.slice(0, 5), 256)).toThrow(/68 landmarks/);
    expect(() =>
      ffhqAlignment(
        lm.map(() => [5, 5] as Point),
        256,
      ),
    ).toThrow(/degenerate/);
    expect(() => ffhqAlignment(lm, 0)).toThrow(RangeError);
  });

  it('prefilters when shrinking: a 1-px checkerboard becomes flat grey, not moiré', () => {
    const w = 512;
    const photo: RgbImage = { width: w, height: w, data: new Uint8Array(w * w * 3) };
    for (let y = 0; y < w; y++)
      for (let x = 0; x < w; x++)
        photo.data.fill((x + y) % 2 ? 255 : 0, (y * w + x) * 3, (y * w + x) * 3 + 3);
    // A face ~4× larger in the photo than in a 64-px crop, rotated to exercise non-axis sampling.
    const big = syntheticLandmarks([200, 220], [312, 220], [215, 360], [297, 360]).map((p) =>
      rotate(p, 0.4, [256, 256]),
    );
    const { crop, alignment } = alignFace(photo, big, 64);
    expect(alignment.scale).toBeGreaterThan(3);
    let maxDev = 0;
    for (let i = 0; i < crop.data.length; i++) maxDev = Math.max(maxDev, Math.abs(crop.data[i] - 127.5));
    expect(maxDev).toBeLessThan(20);
    // Plain bilinear (no prefilter) aliases badly on the same input: proves the test can fail.
    const plain: RgbImage = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
    warpAffine(photo, plain, alignment.inverse, { supersample: 1 });
    let plainDev = 0;
    for (let i = 0; i < plain.data.length; i++)
      plainDev = Math.max(plainDev, Math.abs(plain.data[i] - 127.5));
    expect(plainDev).toBeGreaterThan(60);
  });
});

describe('FFHQ padding of crops that leave the photo', () => {
  // Deterministic noise photo: mirroring keeps its full texture, FFHQ's blur + median fade must not.
  const w = 400;
  const photo: RgbImage = { width: w, height: w, data: new Uint8Array(w * w * 3) };
  let seed = 12345;
  for (let i = 0; i < photo.data.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    photo.data[i] = 60 + ((seed >>> 16) % 120);
  }
  // A face hugging the left edge: the quad reaches well into negative x.
  const lm = syntheticLandmarks([30, 200], [110, 200], [40, 300], [100, 300]);
  const N = 128;
  const plain = alignFace(photo, lm, N, { ffhqPadding: false });
  const ffhq = alignFace(photo, lm, N);
  const photoX = (u: number, v: number) => applyMat3(ffhq.alignment.inverse, [u + 0.5, v + 0.5])[0];

  it('blurs and fades the mirrored band, leaves the face interior untouched', () => {
    expect(ffhq.coverage).toBeLessThan(0.9);
    const roughness = (img: RgbImage, keep: (u: number, v: number) => boolean) => {
      let sum = 0;
      let n = 0;
      for (let v = 0; v < N; v++)
        for (let u = 1; u < N; u++) {
          if (!keep(u, v)) continue;
          sum += Math.abs(img.data[(v * N + u) * 3]! - img.data[(v * N + u - 1) * 3]!);
          n++;
        }
      return sum / n;
    };
    const padding = (u: number, v: number) => photoX(u, v) < -10;
    // The mirrored noise stays rough (as rough as the real part of the crop); FFHQ's treatment smooths it.
    const real = roughness(plain.crop, (u, v) => photoX(u, v) > 10);
    expect(roughness(plain.crop, padding)).toBeGreaterThan(0.8 * real);
    expect(roughness(ffhq.crop, padding)).toBeLessThan(0.2 * real);
    // Deep in the padding the colour is the photo's median (~120 for this noise).
    const deep = (v: number) => ffhq.crop.data[(v * N + 0) * 3]!;
    expect(Math.abs(deep(N / 2) - 120)).toBeLessThan(12);
    // The face centre (far from every padded side) is the same pixels with or without padding.
    let diff = 0;
    for (let v = N / 2 - 10; v < N / 2 + 10; v++)
      for (let u = N / 2; u < N / 2 + 20; u++)
        for (let c = 0; c < 3; c++)
          diff = Math.max(
            diff,
            Math.abs(ffhq.crop.data[(v * N + u) * 3 + c]! - plain.crop.data[(v * N + u) * 3 + c]!),
          );
    expect(diff).toBe(0);
  });

  it('does nothing for a face whose crop fits in the photo', () => {
    const inside = syntheticLandmarks([170, 180], [230, 180], [178, 250], [222, 250]);
    const a = alignFace(photo, inside, 64, { ffhqPadding: false });
    const b = alignFace(photo, inside, 64);
    expect(Buffer.from(b.crop.data).equals(Buffer.from(a.crop.data))).toBe(true);
  });
});

describe('alignment on a real photo (oracle landmarks)', () => {
  let photo: RgbImage;
  let oracle: OracleResult;
  beforeAll(async () => {
    const bytes = readFileSync(samplePath(1));
    photo = (await decodeImage(bytes)).image;
    oracle = await oracleDetect(bytes);
  });

  it('align → inverse warp round trip reproduces the face within a small pixel error', () => {
    expect(oracle.faces.length).toBe(3);
    for (const face of oracle.faces) {
      const lm = face.landmarks;
      const { crop, alignment, coverage } = alignFace(photo, lm, 256);
      expect(coverage).toBe(1);
      const back = unalignFace(photo, crop, alignment);
      // Compare inside the face mask core (alpha = 1), where paste-back fully uses the crop.
      const mask = faceMask(alignment, lm);
      const lines = maskLines(mask);
      let n = 0;
      let sum = 0;
      const errs: number[] = [];
      for (let y = 0; y < photo.height; y++) {
        for (let x = 0; x < photo.width; x++) {
          const [u, v] = applyMat3(alignment.forward, [x + 0.5, y + 0.5]);
          if (u < 0 || v < 0 || u > 256 || v > 256) continue;
          if (maskAlphaAt(mask, lines, u, v) < 1) continue;
          for (let c = 0; c < 3; c++) {
            const e = Math.abs(
              back.data[(y * photo.width + x) * 3 + c] - photo.data[(y * photo.width + x) * 3 + c],
            );
            sum += e;
            errs.push(e);
            n++;
          }
        }
      }
      errs.sort((a, b) => a - b);
      expect(n).toBeGreaterThan(3 * 5000);
      const mae = sum / n;
      const p99 = errs[Math.floor(errs.length * 0.99)];
      // Two bilinear resamplings blur slightly; a wrong transform would give errors of tens of levels.
      expect(mae).toBeLessThan(2.5);
      expect(p99).toBeLessThan(16);
    }
  });

  it('landmarks stay put through forward/inverse (geometric round trip < 1e-9 px)', () => {
    for (const face of oracle.faces) {
      const a = ffhqAlignment(face.landmarks, 1024);
      for (const p of face.landmarks) {
        const q = applyMat3(a.inverse, applyMat3(a.forward, p));
        expect(Math.hypot(q[0] - p[0], q[1] - p[1])).toBeLessThan(1e-9);
      }
    }
  });
});
