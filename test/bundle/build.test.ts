/**
 * `models build` from checkpoints in the official file formats and key layouts: pattern-weight
 * checkpoints at demo size are written, read back by the checkpoint loader, and built into a bundle;
 * broken checkpoint sets fail with errors that list the offending files / keys.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadCheckpoint,
  stateDict,
  getPath,
  isTensor,
  saveCheckpoint,
  PyOrderedDict,
} from '../../models/checkpoint/index.js';
import { pattern } from '../../models/fixtures/pattern.js';
import {
  DEMO_SIZES,
  arcfaceLayout,
  e4eLayout,
  farlLayout,
  generatorLayout,
  writeDemoCheckpoints,
} from '../../models/bundle/demo-weights.js';
import { BundleError } from '../../models/bundle/manifest.js';
import {
  OFFICIAL_FILES,
  buildFromCheckpoints,
  loadGraphs,
  officialPaths,
} from '../../models/bundle/build.js';
import { buildPool } from '../../models/bundle/pool.js';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { samplePng } from '../anonymize/helpers.js';

let dir: string;
const sha = async (p: string) =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'falco-ckpt-'));
  await writeDemoCheckpoints(join(dir, 'demo'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Whether the network builders accept the narrow demo sizes (they must infer widths from shapes). */
async function demoSizesSupported(): Promise<boolean> {
  const d = await mkdtemp(join(tmpdir(), 'falco-probe-'));
  try {
    await (
      await loadGraphs()
    ).loadOfficialWeights(officialPaths(await writeDemoCheckpoints(d).then(() => d)));
    return true;
  } catch (e) {
    console.warn(
      `demo sizes not (yet) accepted by the network builders; end-to-end build test skipped:\n${(e as Error).message.slice(0, 400)}`,
    );
    return false;
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}
const supported = await demoSizesSupported();

describe('demo checkpoints in the official layouts', () => {
  it('are deterministic', async () => {
    const again = join(dir, 'again');
    await writeDemoCheckpoints(again);
    for (const f of Object.values(OFFICIAL_FILES))
      expect(await sha(join(again, f)), f).toBe(await sha(join(dir, 'demo', f)));
  });

  it('read back with the official nesting and the layout keys', async () => {
    const p = officialPaths(join(dir, 'demo'));
    const g = await loadCheckpoint(p.stylegan2);
    const gen = stateDict(getPath(g, 'generator_smooth'));
    expect([...gen.keys()]).toEqual(generatorLayout(DEMO_SIZES).map((e) => e.key));
    const w = gen.get('synthesis.layer3.weight')!;
    expect(w.shape).toEqual([64, 64, 3, 3]);
    expect(Array.from((w.data as Float32Array).subarray(0, 5))).toEqual(
      Array.from(pattern('synthesis.layer3.weight', 5, -Math.sqrt(3), Math.sqrt(3))),
    );
    const e = await loadCheckpoint(p.e4e);
    expect(isTensor(getPath(e, 'latent_avg'))).toBe(true);
    expect([...stateDict(getPath(e, 'state_dict')).keys()]).toEqual(
      e4eLayout(DEMO_SIZES)
        .map((x) => x.key)
        .filter((k) => k !== 'latent_avg'),
    );
    expect([...stateDict(await loadCheckpoint(p.arcface)).keys()]).toEqual(
      arcfaceLayout(DEMO_SIZES).map((x) => x.key),
    );
    expect([...stateDict(getPath(await loadCheckpoint(p.farl), 'state_dict')).keys()]).toEqual(
      farlLayout(DEMO_SIZES).map((x) => x.key),
    );
  });
});

describe('models build: errors', () => {
  it('lists every missing checkpoint file', async () => {
    const d = join(dir, 'partial');
    await writeDemoCheckpoints(d);
    await unlink(join(d, OFFICIAL_FILES.e4e));
    await unlink(join(d, OFFICIAL_FILES.farl));
    const err = await buildFromCheckpoints({ falcoDir: d, outDir: join(dir, 'never') }).catch(
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(BundleError);
    expect((err as Error).message).toContain(OFFICIAL_FILES.e4e);
    expect((err as Error).message).toContain(OFFICIAL_FILES.farl);
  });

  it('names unexpected and missing keys', async () => {
    const d = join(dir, 'badkeys');
    const p = await writeDemoCheckpoints(d);
    const sd = stateDict(await loadCheckpoint(p.arcface));
    const edited = new PyOrderedDict();
    for (const [k, v] of sd) if (k !== 'output_layer.3.bias') edited.set(k, v as never);
    edited.set('bogus.extra.weight', sd.get('output_layer.3.weight') as never);
    await saveCheckpoint(p.arcface, edited as never);
    const err = await buildFromCheckpoints({ falcoDir: d, outDir: join(dir, 'never') }).catch(
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/arcface[^\n]*missing/i);
    expect((err as Error).message).toContain('bogus.extra.weight');
    // Once the builders infer sizes, the one missing key is the only one listed for ArcFace.
    if (supported) expect((err as Error).message).toContain('output_layer.3.bias');
  });
});

describe.runIf(supported)('models build: end to end at demo size', () => {
  it('builds a bundle from the checkpoints and anonymizes a photo', async () => {
    const out = join(dir, 'bundle');
    const m = await buildFromCheckpoints({
      falcoDir: join(dir, 'demo'),
      outDir: out,
      name: 'demo',
      demo: true,
    });
    expect(m.resolution).toBe(DEMO_SIZES.generator.resolution);
    expect(m.tokens).toEqual([197, DEMO_SIZES.farl.width]);
    // The privacy check's second recognizer and the utility-check nets travel with the bundle.
    expect(m.components.human?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(join(out, 'human', 'faceres.json'))).toBe(true);
    expect(existsSync(join(out, 'human', 'blazeface.json'))).toBe(true);
    expect(existsSync(join(out, 'human', 'facemesh.json'))).toBe(true);
    expect(existsSync(join(out, 'faceapi', 'age_gender_model-weights_manifest.json'))).toBe(true);
    expect(existsSync(join(out, 'faceapi', 'face_expression_model-weights_manifest.json'))).toBe(true);
    await buildPool(out, { n: 4 });
    const a = await createAnonymizer({ bundleDir: out, warm: true });
    try {
      const res = await a.anonymize(await samplePng('sample2.jpg', 480), { steps: 3 });
      expect(res.report.outcome).toBe('ok');
      expect(res.report.faces.length).toBeGreaterThan(0);
      for (const f of res.report.faces) expect(f.losses.flat().every(Number.isFinite)).toBe(true);
    } finally {
      await a.close();
    }
  });
});
