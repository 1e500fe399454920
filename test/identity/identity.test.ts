/**
 * The calibrated privacy check: the repository's calibration is sane (thresholds separate same-person and
 * different-people pairs of the samples), an unchanged face is recognisable to every policy recognizer, and a
 * face replaced by a magenta blob through the product's own paste mask — the case face-api's customary 0.6
 * threshold got wrong in issue #10 — is judged not recognisable by the calibrated policy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CALIBRATION_PATH,
  combinedVerdict,
  IdentityChecker,
  loadCalibration,
  POLICY_RECOGNIZERS,
} from '../../functions/pipeline/identity.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { control, sampleFaces, variant, type SampleFace } from './pairs.js';

const models = new FaceApi({ threads: 2 });
const checker = new IdentityChecker(models, { threads: 2 });
let faces: SampleFace[];
beforeAll(async () => {
  faces = await sampleFaces(models, [1, 4]);
}, 60_000);
afterAll(() => checker.close());

describe('calibration data', () => {
  it('has every policy recognizer, with thresholds between the measured same and different distances', () => {
    const c = loadCalibration(CALIBRATION_PATH);
    expect(c.faces).toBe(22);
    for (const name of POLICY_RECOGNIZERS) {
      const r = c.recognizers[name]!;
      expect(r, name).toBeDefined();
      expect(r.pairs.same).toBeGreaterThanOrEqual(300);
      expect(r.pairs.different).toBeGreaterThanOrEqual(8000);
      expect(r.threshold).toBeGreaterThan(r.same.median);
      expect(r.threshold).toBeLessThan(r.different.median);
      expect(r.falseMatchRate).toBeLessThanOrEqual(0.02);
      expect(r.falseNonMatchRate).toBeLessThanOrEqual(0.02);
      // Every negative control sits above the threshold.
      for (const [k, ctl] of Object.entries(r.controls)) expect(ctl.recognisable, `${name} ${k}`).toBe(0);
    }
    expect(c.policy?.falseNonMatchRate).toBe(0);
  });
});

describe('calibrated verdicts on sample pairs', () => {
  it('same person (JPEG q15 of the same photo) is recognisable; different people are not', async () => {
    for (const f of faces.slice(0, 3)) {
      const v = await variant(models, f, 'jpeg');
      const same = await checker.verdicts(f.image, v.image, f);
      expect(same.map((x) => x.recognizer)).toEqual([...POLICY_RECOGNIZERS]);
      for (const x of same) expect(x.recognisable, `${f.id} ${x.recognizer} ${x.distance}`).toBe(true);
      expect(combinedVerdict(same).recognisable).toBe(true);
    }
    // Different people: embed face A and face B with the recognizers directly.
    const c = checker.calibration;
    for (const name of POLICY_RECOGNIZERS) {
      const { openRecognizer } = await import('../../models/recognizers/index.js');
      const rec = openRecognizer(name, { faceapi: models, threads: 2 });
      const [a, b, d] = [faces[0]!, faces[1]!, faces[4]!];
      const ea = (await rec.embed(a.image, a))!;
      for (const o of [b, d]) {
        const dist = rec.distance(ea, (await rec.embed(o.image, o))!);
        expect(dist, `${name} ${a.id}/${o.id}`).toBeGreaterThan(c.recognizers[name]!.threshold);
      }
      if (name !== 'faceapi-128') await rec.close();
    }
  }, 120_000);

  it('an unchanged face is recognisable; a magenta blob pasted over it is not', async () => {
    for (const f of faces.slice(0, 4)) {
      const unchanged = await checker.verdicts(f.image, f.image, f);
      expect(unchanged.every((v) => v.recognisable && v.distance < 1e-3)).toBe(true);
      const blob = control(f, 'paste-blob');
      const verdicts = await checker.verdicts(f.image, blob, f);
      const combined = combinedVerdict(verdicts);
      expect(combined.recognisable, `${f.id}: ${combined.reason}`).toBe(false);
      for (const v of verdicts) {
        expect(v.distance).toBeGreaterThan(v.threshold);
        expect(v.falseMatchRate).toBeLessThan(0.02);
      }
    }
  }, 120_000);
});
