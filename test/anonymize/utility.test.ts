/**
 * Issue #10 item 7, the utility check, end to end on the demo bundle: every face FALCO replaced carries
 * `attributes` whose `original` is what AttributeMeter measures directly on the input face and whose
 * `anonymized` is what it measures on the returned pixels (PNG out, so the returned pixels are the measured
 * ones) — recomputed here, independently of the pipeline's call. Fallback-covered faces carry none. A face
 * found turned is measured upright: its attributes equal those of the same face in the upright photo.
 */
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { AttributeMeter, attributeChange } from '../../functions/pipeline/attributes.js';
import type { Point } from '../../functions/pipeline/align.js';
import { FaceDetector, uprightView } from '../../functions/pipeline/detect.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import type { Anonymizer, FaceAttributes } from '../../functions/pipeline/types.js';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { FaceApi, MANIFEST } from '../../models/faceapi/index.js';
import { SAMPLES } from './helpers.js';

let anon: Anonymizer;
let models: FaceApi;
let meter: AttributeMeter;
let dir: string;

beforeAll(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'falco-utility-')), 'demo');
  await buildDemoBundle({ outDir: dir, poolSize: 8 });
  anon = await createAnonymizer({ bundleDir: dir, warm: true });
  models = new FaceApi({ modelDir: join(dir, 'faceapi') });
  meter = new AttributeMeter(models);
}, 600_000);
afterAll(async () => {
  await anon?.close();
  await models?.close();
});

async function sample(width: number): Promise<Buffer> {
  return sharp(readFileSync(join(SAMPLES, 'sample1.jpg')))
    .resize({ width })
    .png()
    .toBuffer();
}

/** Same measurement, to float32 rounding (the same nets on the same pixels). */
function expectSame(got: FaceAttributes, want: FaceAttributes): void {
  expect(got.gender).toBe(want.gender);
  expect(got.expression).toBe(want.expression);
  expect(got.age).toBeCloseTo(want.age, 4);
  expect(got.genderScore).toBeCloseTo(want.genderScore, 5);
  expect(got.expressionScore).toBeCloseTo(want.expressionScore, 5);
  for (const [k, p] of Object.entries(want.expressions!)) expect(got.expressions![k]).toBeCloseTo(p, 5);
  for (const k of ['yaw', 'pitch', 'roll'] as const) expect(got.pose[k]).toBeCloseTo(want.pose[k], 3);
}

describe('utility check in the pipeline (demo bundle)', () => {
  it('reports, per FALCO face, the attributes of the input face and of the returned pixels', async () => {
    const png = await sample(640);
    const res = await anon.anonymize(png, { steps: 2, seed: 1, format: 'png' });
    const input = (await decodeImage(png)).image;
    const output = (await decodeImage(res.image)).image;
    const falco = res.report.faces.filter((f) => f.method === 'falco');
    expect(falco.length).toBe(3);
    // The faces as the detector gives them (same defaults as the pipeline; deterministic), with their landmarks.
    const detected = await new FaceDetector(models).detect(input);
    for (const f of falco) {
      const a = f.attributes!;
      expect(a).toBeDefined();
      const face = detected.find((d) => d.box.x === f.box.x && d.box.y === f.box.y)!;
      expect(face).toBeDefined();
      // Measured here directly: the meter on the face's upright view of the input and of the output, with the
      // 68 landmarks of each inside the detector box.
      const view = uprightView(input, face);
      const outView = uprightView(output, face).image;
      const before = await models.landmarks(view.image, view.box);
      const after = await models.landmarks(outView, view.box);
      const wantOriginal = await meter.measureAttributes(view.image, { box: view.box, landmarks: before! });
      const wantAnonymized = await meter.measureAttributes(outView, { box: view.box, landmarks: after! });
      expectSame(a.original, wantOriginal);
      expectSame(a.anonymized, wantAnonymized);
      expect(a.change).toEqual(attributeChange(a.original, a.anonymized));
      // Same procedure on both sides: an unchanged face reports no change at all.
      const same = await meter.compare(input, input, face);
      expectSame(same.anonymized, same.original);
      expect(same.change).toMatchObject({
        ageDelta: 0,
        genderKept: true,
        expressionKept: true,
        poseDeltaDeg: 0,
      });
      // The demo bundle's abstract renders do not keep the face: the two sides must differ (a pipeline that
      // measured the original twice would report no change).
      expect(Math.abs(a.change.ageDelta)).toBeGreaterThan(0.5);
      // Sanity of the real face (sample1: three young women, adults).
      expect(a.original.gender).toBe('female');
      expect(a.original.age).toBeGreaterThan(15);
      expect(a.original.age).toBeLessThan(50);
    }
    expect(res.report.timingsMs['attributes']).toBeGreaterThan(0);
  }, 300_000);

  it('does not measure fallback-covered faces', async () => {
    // sample1 at 300 px: its faces are ~28 px wide, under the FALCO size, so the fallback covers them.
    const res = await anon.anonymize(await sample(300), { steps: 2, seed: 1, format: 'png' });
    const fallback = res.report.faces.filter((f) => f.method !== 'falco');
    expect(fallback.length).toBeGreaterThan(0);
    for (const f of fallback) expect(f.attributes).toBeUndefined();
  }, 300_000);
});

describe('a bundle built before the utility check', () => {
  it('without the attribute nets still anonymizes, with no attributes and a log line saying why', async () => {
    const old = join(await mkdtemp(join(tmpdir(), 'falco-utility-old-')), 'demo');
    await cp(dir, old, { recursive: true });
    for (const n of ['ageGender', 'expression'] as const) await rm(join(old, 'faceapi', MANIFEST[n]));
    const logs: string[] = [];
    const a = await createAnonymizer({ bundleDir: old, engine: { log: (m) => logs.push(m) } });
    try {
      const res = await a.anonymize(await sample(640), { steps: 1, seed: 1, format: 'png' });
      expect(res.report.faces.some((f) => f.method === 'falco')).toBe(true);
      expect(res.report.faces.every((f) => f.attributes === undefined)).toBe(true);
      expect(logs.join('\n')).toMatch(/no face-api attribute nets/);
    } finally {
      await a.close();
    }
  }, 300_000);
});

describe('AttributeMeter.compare on a face found turned', () => {
  it('measures it upright: the same attributes as the face in the upright photo', async () => {
    const upright = (await decodeImage(await sample(640))).image;
    const d = (await models.detect(upright))[0]!;
    const landmarks = (await models.landmarks(upright, d.box))!;
    const want = await meter.measureAttributes(upright, { box: d.box, landmarks });
    // The photo turned 90° clockwise: the face is upright again after a 270° clockwise turn.
    const { data, info } = await sharp(await sample(640))
      .rotate(90)
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const turned: RgbImage = { width: info.width, height: info.height, data: new Uint8Array(data) };
    const H = upright.height;
    const turn = ([x, y]: Point): Point => [H - y, x];
    const box = { x: H - (d.box.y + d.box.height), y: d.box.x, width: d.box.height, height: d.box.width };
    const got = await meter.compare(turned, turned, { box, landmarks: landmarks.map(turn), angle: 270 });
    expectSame(got.original, want);
    // Measured in the photo's frame (angle 0), the sideways face reads differently: the turn matters.
    const sideways = await meter.measureAttributes(turned, { box, landmarks: landmarks.map(turn) });
    expect(Math.abs(sideways.pose.roll - want.pose.roll)).toBeGreaterThan(45);
  }, 120_000);
});
