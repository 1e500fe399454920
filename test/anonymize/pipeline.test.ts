/**
 * The per-image pipeline on a toy-model bundle (real face-api nets, tiny contract models): what changes
 * in the photo, the report, determinism, options, the no-face and re-identification policies, progress.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { ffhqAlignment, cropBounds } from '../../functions/pipeline/align.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { loadCalibration } from '../../functions/pipeline/identity.js';
import { decodeImage, probeImage } from '../../functions/pipeline/image-io.js';
import { InputError, PrivacyError, type Anonymizer, type Progress } from '../../functions/pipeline/types.js';
import type { FalcoEngine } from '../../models/falco/engine.js';
import { editedCopy, noFaceJpeg, rgb, samplePng, toyBundle } from './helpers.js';

const FAST = { detect: { mode: 'fast' }, residualDetect: { mode: 'fast' } } as const;
let bundle: string;
let anon: Anonymizer & { engine: FalcoEngine };
let photo: Buffer;

beforeAll(async () => {
  bundle = (await toyBundle()).dir;
  // The detector's fast mode: these tests are about the optimisation and the policies, not detection recall
  // (test/anonymize/acceptance.test.ts runs the defaults).
  anon = await createAnonymizer({ bundleDir: bundle, warm: true, ...FAST });
  photo = await samplePng('sample2.jpg');
});
afterAll(async () => {
  await anon?.close();
});

describe('anonymize (toy bundle)', () => {
  it('changes every detected face region and no pixel outside the face crops', async () => {
    const progress: Progress[] = [];
    const res = await anon.anonymize(photo, { steps: 8, seed: 3 }, (p) => progress.push(p));
    expect(res.contentType).toBe('image/png');
    const r = res.report;
    const detector = new FaceDetector({ modelDir: join(bundle, 'faceapi') });
    const decoded = await decodeImage(photo);
    const faces = await detector.detect(decoded.image, { mode: 'fast' });
    await detector.close();
    expect(faces.length).toBeGreaterThanOrEqual(2);
    expect(r.outcome).toBe('ok');
    expect(r.faces.length).toBe(faces.length);
    expect(r.bundle.demo).toBe(true);
    const before = await rgb(photo);
    const after = await rgb(res.image);
    expect([after.width, after.height]).toEqual([before.width, before.height]);
    const boxes = faces.map((f) =>
      cropBounds(ffhqAlignment(f.landmarks, anon.engine.N), before.width, before.height),
    );
    let outside = 0;
    for (let y = 0; y < before.height; y++)
      for (let x = 0; x < before.width; x++) {
        const i = (y * before.width + x) * 3;
        if (
          before.data[i] === after.data[i] &&
          before.data[i + 1] === after.data[i + 1] &&
          before.data[i + 2] === after.data[i + 2]
        )
          continue;
        if (!boxes.some((b) => x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1)) outside++;
      }
    expect(outside).toBe(0);
    for (const [k, f] of faces.entries()) {
      // Mean absolute change over the inner face (eyes to mouth) must be large: the face was replaced.
      const xs = f.landmarks.slice(36, 68).map((p) => p[0]);
      const ys = f.landmarks.slice(36, 68).map((p) => p[1]);
      let sum = 0;
      let n = 0;
      for (let y = Math.floor(Math.min(...ys)); y < Math.ceil(Math.max(...ys)); y++)
        for (let x = Math.floor(Math.min(...xs)); x < Math.ceil(Math.max(...xs)); x++) {
          const i = (y * before.width + x) * 3;
          for (let c = 0; c < 3; c++) sum += Math.abs(before.data[i + c]! - after.data[i + c]!);
          n += 3;
        }
      expect(sum / n, `face ${k}`).toBeGreaterThan(15);
      const fr = r.faces[k]!;
      expect(fr.losses).toHaveLength(8);
      expect(fr.losses.flat().every(Number.isFinite)).toBe(true);
      expect(fr.attempts).toBe(1);
      expect(fr.reidentified).toBe(false);
      expect(fr.identityDistance).toBeGreaterThanOrEqual(0.6);
      expect(Object.keys(fr.timingsMs)).toEqual(
        expect.arrayContaining(['align', 'invert', 'targets', 'optimize', 'render', 'paste', 'verify']),
      );
    }
    // The optimisation moves the loss (toy G is smooth: 8 Adam steps must lower it on average).
    const drop = r.faces.map((f) => f.losses[0]![0] - f.losses.at(-1)![0]);
    expect(drop.filter((d) => d > 0).length).toBeGreaterThan(0);
    // Progress: monotone, per step, ends at 1.
    const fr = progress.map((p) => p.fraction);
    expect(fr.every((v, i) => i === 0 || v >= fr[i - 1]!)).toBe(true);
    expect(fr.at(-1)).toBe(1);
    expect(progress.filter((p) => p.stage === 'optimize').length).toBe(8 * faces.length);
    expect(progress.find((p) => p.stage === 'optimize')).toMatchObject({
      step: 1,
      steps: 8,
      face: 0,
      faces: faces.length,
    });
  });

  it('is deterministic for a seed', async () => {
    const a = await anon.anonymize(photo, { steps: 2, seed: 7, layers: [2, 6] });
    const b = await anon.anonymize(photo, { steps: 2, seed: 7, layers: [2, 6] });
    expect(Buffer.compare(a.image, b.image)).toBe(0);
    expect(a.report.faces.map((f) => f.losses)).toEqual(b.report.faces.map((f) => f.losses));
  });

  it('returns a photo without faces unchanged, re-encoded without metadata', async () => {
    const input = await noFaceJpeg();
    expect((await probeImage(input)).metadata.exif).toBe(true);
    const res = await anon.anonymize(input, { format: 'png' });
    expect(res.report.outcome).toBe('no_faces');
    expect(res.report.faces).toEqual([]);
    expect((await probeImage(res.image)).metadata).toEqual({
      exif: false,
      xmp: false,
      iptc: false,
      icc: false,
    });
    expect(Buffer.compare((await rgb(res.image)).data, (await rgb(input)).data)).toBe(0);
    const jpeg = await anon.anonymize(input);
    expect(jpeg.contentType).toBe('image/jpeg');
    expect((await probeImage(jpeg.image)).metadata.exif).toBe(false);
  });

  it('rejects bad options and bad images with InputError', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ steps: -1 }, /steps/],
      [{ steps: 2.5 }, /steps/],
      [{ layers: [5, 3] }, /layers/],
      [{ layers: [0, 99] }, /layers/],
      [{ idMargin: Number.NaN }, /idMargin/],
      [{ format: 'gif' }, /format/],
      [{ lambdaId: -1 }, /lambdaId/],
      [{ stepz: 3 }, /stepz is not an option/],
      [{ smallFaces: 'mosaic' }, /smallFaces must be one of falco, blur, pixelate, fill/],
      [{ onRecognisable: 'ignore' }, /onRecognisable must be one of fail, obscure/],
      [{ onResidual: 'keep' }, /onResidual must be one of anonymize, fail/],
    ];
    for (const [o, msg] of bad) {
      const err = await anon.anonymize(photo, o as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(o)).toBeInstanceOf(InputError);
      expect((err as InputError).code).toBe('invalid-options');
      expect((err as Error).message).toMatch(msg);
    }
    const notImage = await anon.anonymize(new TextEncoder().encode('hello'), {}).catch((e: unknown) => e);
    expect(notImage).toBeInstanceOf(InputError);
    expect((notImage as InputError).code).toBe('unsupported-image-type');
  });

  it('retries a re-identified face; onRecognisable fail fails the image, obscure (default) covers the face', async () => {
    // Thresholds no distance can pass: every attempt counts as re-identified.
    const strict = await editedCopy(bundle, (m) => {
      m.reid.retries = 1;
    });
    const cal = loadCalibration();
    const calibration = {
      ...cal,
      recognizers: Object.fromEntries(
        Object.entries(cal.recognizers).map(([k, r]) => [k, { ...r!, threshold: 100 }]),
      ),
    };
    const a = await createAnonymizer({ bundleDir: strict, ...FAST, identity: { calibration } });
    try {
      const steps: Progress[] = [];
      const err = await a
        .anonymize(photo, { steps: 2, onRecognisable: 'fail' }, (p) => steps.push(p))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PrivacyError);
      expect((err as Error).message).toMatch(/face 0 is still recognisable after 2 attempts/);
      // Two attempts of two steps each for face 0, then the image stops.
      expect(steps.filter((p) => p.stage === 'optimize' && p.face === 0).length).toBe(4);
      expect(steps.some((p) => p.face === 1)).toBe(false);

      const res = await a.anonymize(photo, { steps: 2 });
      expect(res.report.faces.length).toBeGreaterThanOrEqual(2);
      const after = await rgb(res.image);
      const generated = res.report.faces.filter((f) => f.attempts > 0);
      expect(generated.length).toBeGreaterThanOrEqual(2);
      for (const f of generated) {
        expect(f).toMatchObject({ method: 'pixelate', methodReason: 'recognisable', attempts: 2 });
        expect(f.reidentified).toBe(false);
        expect(f.recognizers?.[0]).toMatchObject({ recognizer: 'faceapi-128', threshold: 100 });
        // The box centre lies in a mosaic: few distinct colours over the face core.
        const colours = new Set<number>();
        const { x, y, width, height } = f.box;
        for (let v = Math.ceil(y + 0.3 * height); v < y + 0.7 * height; v++)
          for (let u = Math.ceil(x + 0.3 * width); u < x + 0.7 * width; u++) {
            const i = (v * after.width + u) * 3;
            colours.add((after.data[i]! << 16) | (after.data[i + 1]! << 8) | after.data[i + 2]!);
          }
        expect(colours.size, `face ${f.index}`).toBeLessThanOrEqual(9);
      }
    } finally {
      await a.close();
    }
  });

  it('keeps the real code outside the trainable layers', async () => {
    const e = anon.engine;
    const size = e.L * 512;
    const real = Float32Array.from({ length: size }, (_, i) => Math.sin(i));
    const fake = Float32Array.from({ length: size }, (_, i) => Math.cos(i));
    const t = await e.targets(new Float32Array(3 * e.N * e.N).fill(0.1));
    const res = await e.optimize({
      real,
      fake,
      targets: t,
      layers: [3, 5],
      steps: 3,
      lr: 0.01,
      lrMilestones: [0.75, 0.9],
      lrGamma: 0.8,
      margin: 0,
      lambdaId: 10,
      lambdaAttr: 0.1,
    });
    expect(Array.from(res.code.subarray(0, 3 * 512))).toEqual(Array.from(real.subarray(0, 3 * 512)));
    expect(Array.from(res.code.subarray(5 * 512))).toEqual(Array.from(real.subarray(5 * 512)));
    const moved = res.code.subarray(3 * 512, 5 * 512).some((v, i) => v !== fake[3 * 512 + i]);
    expect(moved).toBe(true);
    // Adam's first update is ≈ lr·sign(g): no trainable value moves by more than ~3 steps × lr.
    let maxMove = 0;
    for (let i = 3 * 512; i < 5 * 512; i++) maxMove = Math.max(maxMove, Math.abs(res.code[i]! - fake[i]!));
    expect(maxMove).toBeLessThan(0.0301);
    expect(maxMove).toBeGreaterThan(0.005);
  });
});
