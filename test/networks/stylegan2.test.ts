import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { fixturesDir } from '../../models/fixtures/paths.js';
import { loadSpec } from '../../models/fixtures/spec.js';
import {
  StyleGAN2WeightsError,
  SynthesisInputError,
  arch,
  buildMappingGraph,
  buildSynthesis,
  expectedKeys,
  inferResolution,
  loadStyleGAN2Weights,
  selectGeneratorDict,
} from '../../models/networks/stylegan2/index.js';
import handler, { imageStats, subsample } from '../../models/parity/kinds/stylegan2.js';
import type { ParityCase } from '../../models/parity/types.js';

const dir = fixturesDir();
const cases = (JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as { cases: ParityCase[] }).cases;
const ctx = { dir, log: () => {} };
const byName = (n: string) => {
  const c = cases.find((x) => x.name === n);
  if (!c) throw new Error(`no case ${n}`);
  return c;
};

describe('StyleGAN2 (genforce) parity', () => {
  it('r64: image and grad_wp match the upstream goldens', async () => {
    const checks = await handler(byName('stylegan2_r64'), ctx);
    expect(checks.map((c) => c.name).sort()).toEqual(['grad_wp', 'image', 'image_stats']);
    for (const c of checks) expect(c.pass, `${c.name} ${JSON.stringify(c.metrics)}`).toBe(true);
    const img = checks.find((c) => c.name === 'image')!;
    expect(img.metrics['relMaxErr']).toBeLessThan(1e-5);
    const gr = checks.find((c) => c.name === 'grad_wp')!;
    expect(gr.metrics['cosine']).toBeGreaterThan(0.99999);
  });

  it.runIf(process.env['FALCO_SLOW'] === '1')('r1024: image_sub16, image_stats and grad_wp match', async () => {
    const checks = await handler(byName('stylegan2_r1024'), ctx);
    for (const c of checks) expect(c.pass, `${c.name} ${JSON.stringify(c.metrics)}`).toBe(true);
  });
});

describe('StyleGAN2 weights', () => {
  const spec = () => loadSpec(join(dir, 'stylegan2_genforce_r64.spec.json'));
  const copy = (): Map<string, Tensor> => new Map(spec().entries());

  it('knows the genforce layout: 10 W+ layers at 64 px, 18 at 1024 px; keys equal the spec keys', () => {
    expect(arch(64).numWLayers).toBe(10);
    expect(arch(256).numWLayers).toBe(14);
    expect(arch(1024).numWLayers).toBe(18);
    for (const r of [64, 1024]) {
      const s = loadSpec(join(dir, `stylegan2_genforce_r${r}.spec.json`));
      expect([...expectedKeys(r).keys()].sort()).toEqual([...s.keys()].sort());
      for (const [k, shape] of expectedKeys(r)) expect([...s.shapeOf(k)!], k).toEqual(shape);
      expect(inferResolution(s)).toBe(r);
    }
  });

  it('lists missing, unexpected and wrongly shaped keys in one error', () => {
    const m = copy();
    m.delete('synthesis.layer3.noise');
    m.set('synthesis.layer99.weight', makeTensor('float32', [1], new Float32Array(1)));
    m.set('synthesis.output2.bias', makeTensor('float32', [4], new Float32Array(4)));
    let err: unknown;
    try {
      loadStyleGAN2Weights(m, 64);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StyleGAN2WeightsError);
    const e = err as StyleGAN2WeightsError;
    expect(e.missing).toEqual(['synthesis.layer3.noise']);
    expect(e.unexpected).toEqual(['synthesis.layer99.weight']);
    expect(e.message).toContain('synthesis.layer3.noise');
    expect(e.message).toContain('synthesis.layer99.weight');
    expect(e.message).toContain('synthesis.output2.bias: expected [3], got [4]');
  });

  it('rejects a checkpoint of another resolution and infers nothing from a foreign dict', () => {
    expect(() => loadStyleGAN2Weights(spec(), 128)).toThrow(/missing keys/);
    expect(() => inferResolution(new Map([['encoder.x', makeTensor('float32', [1], new Float32Array(1))]]))).toThrow(
      StyleGAN2WeightsError,
    );
  });

  it('takes the generator_smooth.* sub-dict of a flattened full checkpoint', () => {
    const full = new Map<string, Tensor>();
    for (const [k, v] of spec()) {
      full.set(`generator_smooth.${k}`, v);
      full.set(`generator.${k}`, v);
    }
    full.set('discriminator.x', makeTensor('float32', [1], new Float32Array(1)));
    const d = selectGeneratorDict(full);
    expect(d.size).toBe(spec().size);
    expect(loadStyleGAN2Weights(full).resolution).toBe(64);
  });

  it('rejects a W+ code of the wrong shape', () => {
    const w = loadStyleGAN2Weights(spec(), 64);
    const g = new E.Graph('bad');
    expect(() => buildSynthesis(g, w, g.input('wp', [1, 18, 512]))).toThrow(SynthesisInputError);
  });

  it('mapping + truncation: psi=1 repeats w; psi=0 gives w_avg on the truncated layers only', async () => {
    const w = loadStyleGAN2Weights(spec(), 64);
    const z = new Float32Array(512).map((_, i) => Math.sin(i));
    const run = async (psi: number, layers: number) => {
      const s = await E.Session.create(E.toBytes(buildMappingGraph(w, { psi, layers })), { provider: 'cpu' });
      const out = (await s.run({ z }))['wp']!;
      await s.release();
      return out;
    };
    const free = await run(1, 18);
    expect(free.dims).toEqual([1, 10, 512]);
    expect(free.data.slice(0, 512)).toEqual(free.data.slice(9 * 512));
    const trunc = await run(0, 4);
    const avg = w.get('truncation.w_avg');
    for (let i = 0; i < 512; i++) expect(trunc.data[3 * 512 + i]).toBeCloseTo(avg[i]!, 6);
    // Untruncated layers go through w_avg + (w − w_avg)·1 like upstream: equal up to rounding.
    for (let i = 4 * 512; i < 5 * 512; i++) expect(trunc.data[i]).toBeCloseTo(free.data[i]!, 5);
    expect(Array.from(free.data).every(Number.isFinite)).toBe(true);
  });

  it('subsample / stats helpers', () => {
    const img = Float32Array.from({ length: 3 * 4 * 4 }, (_, i) => i);
    expect(Array.from(subsample(img, 3, 4, 2))).toEqual([0, 2, 8, 10, 16, 18, 24, 26, 32, 34, 40, 42]);
    const st = imageStats(Float32Array.of(1, 2, 3, 4));
    expect(Array.from(st)).toEqual([2.5, Math.sqrt(5 / 3), 1, 4]);
  });
});
