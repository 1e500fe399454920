/**
 * FalcoEngine.optimizeBatch over a demo-size bundle built with a batched step model (step_b2.onnx):
 * three faces with their own trainable rows, step counts and settings (a full group of two and a
 * padded group of one; face 1 stops two steps before face 0) give each face what `optimize` gives it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildFromCheckpoints } from '../../models/bundle/build.js';
import { DEMO_SIZES, writeDemoCheckpoints } from '../../models/bundle/demo-weights.js';
import { FALCO_DEFAULTS } from '../../models/falco/contract.js';
import { FalcoEngine, type OptimizeParams } from '../../models/falco/engine.js';
import { rand } from '../helpers/gradcheck.js';

describe('FalcoEngine.optimizeBatch (demo bundle with step_b2.onnx)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'falco-batch-'));
  afterAll(() => rm(root, { recursive: true, force: true }));
  await writeDemoCheckpoints(join(root, 'ckpt'), DEMO_SIZES);
  const dir = join(root, 'bundle');
  await buildFromCheckpoints({ falcoDir: join(root, 'ckpt'), outDir: dir, demo: true, stepBatches: [2] });
  const e = await FalcoEngine.open(dir);
  afterAll(() => e.close());
  const size = e.L * 512;
  const targets = await Promise.all([0, 1, 2].map((f) => e.targets(rand(3 * e.N * e.N, 90 + f, -1, 1))));
  const params: OptimizeParams[] = [0, 1, 2].map((f) => ({
    real: rand(size, 10 + f, -1, 1),
    fake: rand(size, 20 + f, -1, 1),
    targets: targets[f]!,
    layers: (
      [
        [3, 8],
        [2, 6],
        [4, 7],
      ] as Array<[number, number]>
    )[f]!,
    steps: [5, 3, 4][f]!,
    lr: [0.01, 0.02, 0.01][f]!,
    lrMilestones: FALCO_DEFAULTS.lrMilestones,
    lrGamma: FALCO_DEFAULTS.lrGamma,
    margin: [0, 0.2, -0.2][f]!,
    lambdaId: [10, 20, 10][f]!,
    lambdaAttr: [0.1, 0.1, 0.3][f]!,
  }));

  it('finds the batched model and gives each face its single-face result', async () => {
    expect(e.stepBatches()).toEqual([2]);
    const batched = await e.optimizeBatch(params);
    for (const [f, p] of params.entries()) {
      const single = await e.optimize(p);
      const b = batched[f]!;
      expect(b.losses.length, `face ${f} steps`).toBe(p.steps);
      for (let s = 0; s < p.steps; s++)
        for (let k = 0; k < 3; k++)
          expect(
            Math.abs(b.losses[s]![k]! - single.losses[s]![k]!),
            `face ${f} step ${s}`,
          ).toBeLessThanOrEqual(1e-5 * Math.abs(single.losses[s]![k]!) + 1e-7);
      let d = 0;
      for (let i = 0; i < size; i++) d = Math.max(d, Math.abs(b.code[i]! - single.code[i]!));
      expect(d, `face ${f} code`).toBeLessThan(1e-5);
      // Rows outside the face's layers are its real code, bit for bit.
      expect(Array.from(b.code.subarray(0, p.layers[0] * 512))).toEqual(
        Array.from(p.real.subarray(0, p.layers[0] * 512)),
      );
    }
  });

  it('says which batch sizes the bundle has when asked for another', async () => {
    await expect(e.optimizeBatch(params, { batch: 4 })).rejects.toThrow(/step_b4\.onnx.*it has 2/);
  });
});
