/**
 * The pipeline batching the faces of an image (AnonymizerConfig.batchFaces, issue #15): over a demo-size
 * bundle (the real architectures at small size) built with a batched step model, a photo with several faces
 * anonymized with batches of 2 gives every face what it gets when faces run one at a time — losses to
 * float32 noise, output pixels within a rounding step — and the batched path really ran.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { batchFacesDefault, createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { buildFromCheckpoints } from '../../models/bundle/build.js';
import { DEMO_SIZES, writeDemoCheckpoints } from '../../models/bundle/demo-weights.js';
import { buildPool } from '../../models/bundle/pool.js';
import { rgb, samplePng } from './helpers.js';

const FAST = { detect: { mode: 'fast' }, residualDetect: { mode: 'fast' } } as const;

describe('batchFacesDefault', () => {
  it('is 1 on CPU, the largest batched model on CUDA, and FALCO_BATCH_FACES when set', () => {
    expect(batchFacesDefault('cpu', [2, 4], {})).toBe(1);
    expect(batchFacesDefault('cuda', [2, 4], {})).toBe(4);
    expect(batchFacesDefault('cuda', [], {})).toBe(1);
    expect(batchFacesDefault('cpu', [2], { FALCO_BATCH_FACES: '2' })).toBe(2);
    expect(() => batchFacesDefault('cpu', [2], { FALCO_BATCH_FACES: 'two' })).toThrow(/FALCO_BATCH_FACES/);
  });
});

describe('pipeline with batched faces (demo-size bundle with step_b2.onnx)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'falco-batch-faces-'));
  afterAll(() => rm(root, { recursive: true, force: true }));
  await writeDemoCheckpoints(join(root, 'ckpt'), DEMO_SIZES);
  const dir = join(root, 'bundle');
  await buildFromCheckpoints({ falcoDir: join(root, 'ckpt'), outDir: dir, demo: true, stepBatches: [2] });
  await buildPool(dir, { n: 8, seed: 1 });
  const single = await createAnonymizer({ bundleDir: dir, batchFaces: 1, ...FAST });
  const batched = await createAnonymizer({ bundleDir: dir, batchFaces: 2, ...FAST });
  afterAll(async () => {
    await single.close();
    await batched.close();
  });

  it('gives each face of a batch the result it gets alone', async () => {
    const photo = await samplePng('sample2.jpg');
    const spy = vi.spyOn(batched.engine, 'optimizeBatch');
    const options = { steps: 4, seed: 2 };
    const a = await single.anonymize(photo, options);
    const b = await batched.anonymize(photo, options);
    const falco = a.report.faces.filter((f) => f.losses.length > 0);
    expect(falco.length, 'faces through the generator').toBeGreaterThanOrEqual(2);
    // One batched call with every generator face, in groups of 2.
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]![0]).toHaveLength(falco.length);
    expect(spy.mock.calls[0]![1]).toEqual({ batch: 2 });
    expect(b.report.faces.map((f) => [f.index, f.method, f.attempts])).toEqual(
      a.report.faces.map((f) => [f.index, f.method, f.attempts]),
    );
    for (const [k, fa] of a.report.faces.entries()) {
      const fb = b.report.faces[k]!;
      expect(fb.losses.length, `face ${k} steps`).toBe(fa.losses.length);
      // Before any update the two runs differ only by the batched kernels' summation order (measured
      // ≤ 1e-6 relative); Adam's first, sign-like updates then amplify it (README, parity notes: measured
      // 1.0e-4 relative by step 3). A wrong fake, margin or λ moves the losses by whole percents.
      for (const [s, la] of fa.losses.entries())
        for (const [j, v] of la.entries())
          expect(Math.abs(fb.losses[s]![j]! - v), `face ${k} step ${s} loss ${j}`).toBeLessThanOrEqual(
            (s === 0 ? 1e-5 : 1e-3) * Math.abs(v) + 1e-7,
          );
      // The recognizers see the pasted pixels, which differ by at most a rounding step; face-api's 128-D
      // distance still moved by 0.012 on one face (measured), so the verdicts must agree and the distances
      // be close, not equal.
      expect(fb.reidentified, `face ${k} verdict`).toBe(fa.reidentified);
      const [ra, rb] = [fa.recognizers ?? [], fb.recognizers ?? []];
      expect(rb.length).toBe(ra.length);
      for (const [r, va] of ra.entries()) {
        const vb = rb[r]!;
        expect([vb.recognizer, vb.recognisable]).toEqual([va.recognizer, va.recognisable]);
        expect(Math.abs(vb.distance - va.distance), `face ${k} ${va.recognizer}`).toBeLessThan(0.05);
      }
    }
    // The pictures: the same to a rounding step of 8-bit output, and not the original.
    const [pa, pb, orig] = await Promise.all([rgb(a.image), rgb(b.image), rgb(photo)]);
    let maxDiff = 0;
    let changed = 0;
    for (let i = 0; i < pa.data.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(pa.data[i]! - pb.data[i]!));
      if (pb.data[i] !== orig.data[i]) changed++;
    }
    expect(maxDiff).toBeLessThanOrEqual(2);
    expect(changed).toBeGreaterThan(1000);
  });
});
