/**
 * Score fusion of detector families (functions/pipeline/detect.ts, models/blazeface, models/facemesh): the
 * SSD's weak candidates stand only when BlazeFace sees a face at the same box and the landmark net draws a
 * consistent face there (`verifyWeak`); faces the SSD does not see at all are proposed by BlazeFace and stand
 * only with FaceMesh's face flag as a third vote (`blazeProposals`). Real values: coverage scenes with
 * ground-truth boxes (test/coverage/scenes.ts), the same scene with fusion off, or with the face-flag vote
 * made blind, as the control.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BLAZEFACE_INPUT, BlazeFace, centredCrop } from '../../models/blazeface/index.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { FaceMesh } from '../../models/facemesh/index.js';
import type { Box } from '../../functions/pipeline/types.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';
import { generateScenes, matchFaces } from '../coverage/scenes.js';

const models = new FaceApi({ threads: 2 });
const blaze = new BlazeFace({ threads: 2 });
const fused = new FaceDetector(models, { confirm: blaze });
const ssdOnly = new FaceDetector(models, { confirm: false });
// The control for the third vote: a face flag that always says "face".
const blindFlag = { scoreAt: async () => 1, close: async () => {} } as unknown as FaceMesh;
const twoVotes = new FaceDetector(models, { confirm: blaze, mesh: blindFlag });
const noProposals = new FaceDetector(models, { confirm: blaze, mesh: false });
const noTilted = new FaceDetector(models, { confirm: blaze, tilted: false });
afterAll(async () => {
  await fused.close();
  await twoVotes.close();
  await noProposals.close();
  await noTilted.close();
  await models.close();
});
// The bench's canvas: the scenes below are the ones measured there.
const canvas = { width: 2000, height: 1500 };

describe('BlazeFace on our engine', () => {
  it('crops the square centred on a point, grey outside the photo', () => {
    const W = 64;
    const img = { width: W, height: W, data: new Uint8Array(W * W * 3) };
    for (let y = 0; y < W; y++)
      for (let x = 0; x < W; x++) img.data.fill(x * 4, (y * W + x) * 3, (y * W + x) * 3 + 3);
    // The square of side 256 centred at (32, 32): one input pixel per photo pixel, offset by 128 - 32.
    const x = centredCrop(img, 32, 32, BLAZEFACE_INPUT);
    const at = (i: number, j: number) => x[(i * BLAZEFACE_INPUT + j) * 3]!;
    expect(at(128, 128 + 5)).toBeCloseTo(((32 + 5) * 4) / 127.5 - 1, 2);
    expect(at(0, 0)).toBe(0);
    expect(at(128, 250)).toBe(0);
    // Turned 90° clockwise: the photo's x axis now runs down the crop's rows.
    const t = centredCrop(img, 32, 32, BLAZEFACE_INPUT, 1, BLAZEFACE_INPUT, 90);
    const tat = (i: number, j: number) => t[(i * BLAZEFACE_INPUT + j) * 3]!;
    expect(tat(128 + 5, 128)).toBeCloseTo(((32 + 5) * 4) / 127.5 - 1, 2);
    expect(tat(128, 128 + 5)).toBeCloseTo((32 * 4) / 127.5 - 1, 2);
  });

  it('scores the sample faces where they are, not beside them or on a blank photo', async () => {
    const { image } = await decodeImage(readFileSync(samplePath(1)));
    const faces = await models.detect(image);
    expect(faces.length).toBe(3);
    for (const f of faces) {
      expect(await blaze.scoreAt(image, f.box)).toBeGreaterThan(0.7);
      // Two face widths to the side: the crop still shows the face, but off centre, so it does not count.
      const beside = { ...f.box, x: f.box.x + 2 * f.box.width };
      expect(await blaze.scoreAt(image, beside)).toBeLessThan(0.5);
    }
    const grey = { width: 300, height: 300, data: new Uint8Array(300 * 300 * 3).fill(128) };
    expect(await blaze.scoreAt(grey, { x: 100, y: 100, width: 100, height: 100 })).toBeLessThan(0.3);
  }, 60_000);
});

describe('weak SSD candidates confirmed by BlazeFace', () => {
  it('finds the blurred face the SSD scores under 0.5, and only with fusion on', async () => {
    const [scene] = await generateScenes({ buckets: ['blur'], samples: [2], canvas, models });
    const on = await fused.detect(scene!.image, { mode: 'default' });
    const off = await ssdOnly.detect(scene!.image, { mode: 'default' });
    const boxes = (fs: typeof on) => fs.map((f) => f.box);
    expect(matchFaces(boxes(on), scene!.faces)).toMatchObject({ hits: 3, extra: [] });
    expect(matchFaces(boxes(off), scene!.faces).hits).toBe(2);
    const confirmed = on.filter((f) => f.source.confirmedBy);
    expect(confirmed).toHaveLength(1);
    expect(confirmed[0]!.score).toBeLessThan(0.5);
    expect(confirmed[0]!.source.confirmedBy!.score).toBeGreaterThanOrEqual(0.5);
  }, 120_000);

  it('a texture block that fools both detectors is rejected by the landmark vote', async () => {
    const scenes = await generateScenes({ buckets: ['none-texture'], canvas, models });
    const scene = scenes.find((s) => s.name === 'none-texture/pattern4')!;
    expect(await fused.detect(scene.image, { mode: 'default' })).toEqual([]);
  }, 120_000);
});

describe('faces the SSD does not see, proposed by BlazeFace', () => {
  it('the face flag scores the sample faces as faces and background as none', async () => {
    const mesh = new FaceMesh({ threads: 2 });
    try {
      const { image } = await decodeImage(readFileSync(samplePath(1)));
      for (const f of await models.detect(image))
        expect(await mesh.scoreAt(image, f.box)).toBeGreaterThan(0.9);
      // The top-left corner of sample1 (wall, no face).
      expect(await mesh.scoreAt(image, { x: 10, y: 10, width: 200, height: 200 })).toBeLessThan(0.1);
    } finally {
      await mesh.close();
    }
  }, 60_000);

  it('finds a face cut by the border that the SSD scores 0.00, and only with proposals', async () => {
    const scenes = await generateScenes({ buckets: ['border'], samples: [4], canvas, models });
    const scene = scenes.find((s) => s.name === 'border/sample4-face3')!;
    const on = await fused.detect(scene.image, { mode: 'default' });
    const off = await noProposals.detect(scene.image, { mode: 'default' });
    expect(
      matchFaces(
        off.map((f) => f.box),
        scene.faces,
      ).hits,
    ).toBe(0);
    expect(
      matchFaces(
        on.map((f) => f.box),
        scene.faces,
      ),
    ).toMatchObject({ hits: 1, extra: [] });
    expect(on[0]!.score).toBe(0);
    expect(on[0]!.source.confirmedBy!.faceMesh).toBeGreaterThanOrEqual(0.9);
  }, 180_000);

  it('hands and clothing BlazeFace proposes on sample1 are rejected by the face flag, not by the other votes', async () => {
    const [scene] = await generateScenes({ buckets: ['full'], samples: [1], canvas, models });
    const boxes = (fs: Array<{ box: Box }>) => fs.map((f) => f.box);
    const three = await fused.detect(scene!.image, { mode: 'default' });
    expect(matchFaces(boxes(three), scene!.faces)).toMatchObject({ hits: 3, extra: [] });
    // With a face flag that always says "face", BlazeFace re-centred and the landmark vote let non-faces through.
    const two = await twoVotes.detect(scene!.image, { mode: 'default' });
    expect(matchFaces(boxes(two), scene!.faces).extra.length).toBeGreaterThan(0);
  }, 180_000);
});

describe('the ±45° passes', () => {
  it('find the face looking down in a photo turned 30° that every other pass misses', async () => {
    const [scene] = await generateScenes({ buckets: ['rot+30'], samples: [2], canvas, models });
    const truth = scene!.faces[1]!;
    const covers = <T extends { box: Box }>(fs: T[]) =>
      fs.filter((f) => matchFaces([f.box], [truth]).hits === 1);
    expect(covers(await noTilted.detect(scene!.image, { mode: 'default' }))).toEqual([]);
    const on = await fused.detect(scene!.image, { mode: 'default' });
    expect(
      matchFaces(
        on.map((f) => f.box),
        scene!.faces,
      ),
    ).toMatchObject({ hits: 3, extra: [] });
    const [found] = covers(on);
    expect(found!.source.tilt).toBe(-45);
    expect(found!.score).toBeGreaterThanOrEqual(0.7);
  }, 240_000);
});
