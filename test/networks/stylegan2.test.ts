import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { fixturesDir } from '../../models/fixtures/paths.js';
import { loadSpec, specTensor } from '../../models/fixtures/spec.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { DEMO_SIZES, generatorLayout } from '../../models/bundle/demo-weights.js';
import {
  type GeneratorArch,
  StyleGAN2WeightsError,
  SynthesisInputError,
  arch,
  buildGeneratorGraph,
  buildMappingGraph,
  buildSynthesis,
  expectedKeys,
  fullArch,
  inferArch,
  inferResolution,
  loadStyleGAN2Weights,
  selectGeneratorDict,
} from '../../models/networks/stylegan2/index.js';
import { gradCheck, rand } from '../helpers/gradcheck.js';
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

  // The 1024-px gradient is ill-conditioned at the ulp level, so its bar is measured per machine (the
  // case's ulp_probes, see models/parity/kinds/stylegan2.ts): on AVX2 the golden sits at 1.02e-3 relative
  // L2, above the fixed 1e-3, while 1-ulp nudges of wp move our own gradient by up to 7.2e-4. Shown to
  // fail with a 1 % error in the leaky-ReLU VJP's negative slope (relL2 5.4e-3 against a 2.2e-3 bar); a
  // 0.3 % error passes here and is caught by r64 above (1.1e-3 against 1e-3).
  it.runIf(process.env['FALCO_SLOW'] === '1')(
    'r1024: image_sub16, image_stats and grad_wp match',
    async () => {
      const checks = await handler(byName('stylegan2_r1024'), ctx);
      for (const c of checks) expect(c.pass, `${c.name} ${JSON.stringify(c.metrics)}`).toBe(true);
      const gr = checks.find((c) => c.name === 'grad_wp')!;
      expect(gr.metrics['ulpNoiseFloor']).toBeGreaterThan(0);
      expect(gr.metrics['cosine']).toBeGreaterThan(0.99999);
    },
  );
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
    expect(() =>
      inferResolution(new Map([['encoder.x', makeTensor('float32', [1], new Float32Array(1))]])),
    ).toThrow(StyleGAN2WeightsError);
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

/** The demo bundle's generator (64 px, 64 channels everywhere, 512-D W) as a key → tensor map. */
const demoGenerator = (): Map<string, Tensor> =>
  new Map(generatorLayout(DEMO_SIZES).map((e) => [e.key, specTensor(e) as Tensor]));

/** Pattern weights for any architecture (range rules as the fixture specs; values don't matter here). */
function syntheticGenerator(a: GeneratorArch): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, shape] of expectedKeys(a)) {
    let data: Float32Array;
    if (k.endsWith('.kernel'))
      data = Float32Array.from([1, 3, 3, 1].flatMap((u) => [1, 3, 3, 1].map((v) => (u * v) / 16)));
    else if (k.endsWith('style.bias')) data = pattern(k, shape, 0.9, 1.1);
    else if (k.endsWith('noise_strength')) data = Float32Array.of(0.1);
    else if (k.endsWith('.bias') || k.endsWith('w_avg')) data = pattern(k, shape, -0.1, 0.1);
    else data = pattern(k, shape, -Math.sqrt(3), Math.sqrt(3));
    m.set(k, makeTensor('float32', shape, data));
  }
  return m;
}

const loadError = (f: () => unknown): StyleGAN2WeightsError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(StyleGAN2WeightsError);
    return e as StyleGAN2WeightsError;
  }
  throw new Error('expected a StyleGAN2WeightsError');
};

describe('StyleGAN2 architecture inferred from the weights', () => {
  it('full-size specs infer the official architecture (channelsAt, 512-D, 8 mapping layers)', () => {
    for (const r of [64, 1024]) {
      const a = inferArch(loadSpec(join(dir, `stylegan2_genforce_r${r}.spec.json`)));
      expect(a).toEqual(fullArch(r));
    }
    expect(fullArch(1024).channels).toEqual([512, 512, 512, 512, 512, 256, 128, 64, 32]);
  });

  it('the demo generator (64 px, 64 channels): inferred widths, key set equal to the layout, renders a finite image', async () => {
    const w = loadStyleGAN2Weights(demoGenerator());
    expect(w.arch).toEqual({ ...fullArch(64), channels: [64, 64, 64, 64, 64] });
    const layout = generatorLayout(DEMO_SIZES);
    expect([...expectedKeys(w.arch).entries()].sort()).toEqual(
      layout.map((e) => [e.key, [...e.shape]]).sort(),
    );

    const s = await E.Session.create(E.toBytes(buildGeneratorGraph(w)), { provider: 'cpu' });
    const out = (await s.run({ wp: rand(10 * 512, 5, -1, 1) }))['image']!;
    await s.release();
    expect(out.dims).toEqual([1, 3, 64, 64]);
    expect(Array.from(out.data).every(Number.isFinite)).toBe(true);
    const [, std] = imageStats(out.data as Float32Array);
    // Pattern weights give an O(1) image; a dead (constant) one would mean a broken path.
    expect(std).toBeGreaterThan(0.1);
    expect(std).toBeLessThan(100);
  });

  it('d image / d wp of the demo generator matches central differences; a wrong VJP fails the same check', async () => {
    const w = loadStyleGAN2Weights(demoGenerator());
    const x0 = rand(10 * 512, 3, -1, 1);
    const fwd = await E.Session.create(E.toBytes(buildGeneratorGraph(w)), { provider: 'cpu' });
    const y0 = (await fwd.run({ wp: x0 }))['image']!.data as Float32Array;
    await fwd.release();
    type Patch = (g: E.Graph) => void;
    /**
     * Error of the directional derivatives relative to their RMS over the directions (not to each one:
     * some random directions give near-zero derivatives). Measured (8 directions, eps 2e-4): ~6e-3
     * for the true VJP, the floor of float32 forward rounding and leaky-ReLU kinks; ≥ 0.1 with the
     * demodulation gradient dropped or the leaky-ReLU slope 0.25 instead of 0.2 in the backward.
     * Subtracting the base image keeps the float32 loss sum near 0, so its rounding adds no noise.
     */
    const check = async (patch?: Patch) => {
      const r = await gradCheck(
        (g, [wp]) => {
          const y = buildSynthesis(g, w, wp!);
          patch?.(g);
          return E.sub(y, g.constant(y0, y.shape));
        },
        [{ shape: [1, 10, 512], data: x0 }],
        { eps: 2e-4, directions: 8 },
      );
      const rms = Math.sqrt(r.analytic.reduce((acc, a) => acc + a * a, 0) / r.analytic.length);
      expect(rms).toBeGreaterThan(1);
      return Math.max(...r.analytic.map((a, i) => Math.abs(a - r.numeric[i]!))) / rms;
    };
    /** Replace the VJP of every recorded `opName` node of the graph (forward unchanged). */
    const wrongVjp =
      (opName: string, vjp: (orig: E.OpDef<unknown>['vjp']) => E.OpDef<unknown>['vjp']): Patch =>
      (g) => {
        let n = 0;
        for (const e of g.tape)
          if (e.op.name === opName) {
            e.op = { ...e.op, vjp: vjp(e.op.vjp) };
            n++;
          }
        expect(n, opName).toBeGreaterThan(0);
      };
    expect(await check()).toBeLessThan(3e-2);
    const leaky = wrongVjp(
      'LeakyRelu',
      (orig) => (ctx, gys) => orig({ ...ctx, attrs: { ...(ctx.attrs as object), alpha: 0.25 } }, gys),
    );
    expect(await check(leaky)).toBeGreaterThan(6e-2);
    const noDemod = wrongVjp('Reciprocal', () => (ctx) => [E.mul(ctx.inputs[0]!, 0)]);
    expect(await check(noDemod)).toBeGreaterThan(6e-2);
  }, 60_000);

  it('a mis-shaped tensor of the demo generator is named precisely (its neighbours out-vote it)', () => {
    const m = demoGenerator();
    m.set('synthesis.layer5.weight', makeTensor('float32', [64, 32, 3, 3], new Float32Array(64 * 32 * 9)));
    m.delete('synthesis.output3.style.bias');
    m.set('synthesis.output3.bias', makeTensor('float32', [64], new Float32Array(64)));
    m.set('mapping.dense0.weight', makeTensor('float32', [512, 256], new Float32Array(512 * 256)));
    m.set('synthesis.layer2.extra', makeTensor('float32', [1], new Float32Array(1)));
    const e = loadError(() => loadStyleGAN2Weights(m));
    expect(e.missing).toEqual(['synthesis.output3.style.bias']);
    expect(e.unexpected).toEqual(['synthesis.layer2.extra']);
    expect(e.wrongShape.sort()).toEqual([
      'mapping.dense0.weight: expected [512, 512], got [512, 256]',
      'synthesis.layer5.weight: expected [64, 64, 3, 3], got [64, 32, 3, 3]',
      'synthesis.output3.bias: expected [3], got [64]',
    ]);
    expect(e.message).toContain(
      '64 px, channels 4:64 8:64 16:64 32:64 64:64, w 512, z 512, 8 mapping layers',
    );
  });

  it('a mis-shaped layer of the full-size r64 spec is still named precisely', () => {
    const m = new Map(loadSpec(join(dir, 'stylegan2_genforce_r64.spec.json')).entries());
    m.set(
      'synthesis.layer5.weight',
      makeTensor('float32', [256, 512, 3, 3], new Float32Array(256 * 512 * 9)),
    );
    const e = loadError(() => loadStyleGAN2Weights(m));
    expect([e.missing, e.unexpected]).toEqual([[], []]);
    expect(e.wrongShape).toEqual([
      'synthesis.layer5.weight: expected [512, 512, 3, 3], got [256, 512, 3, 3]',
    ]);
  });

  it('uneven widths and other latent sizes: built with anyLatentDim, rejected by default with the reason', async () => {
    const a: GeneratorArch = { ...arch(16), channels: [32, 16, 8], wDim: 32, zDim: 16, mappingLayers: 2 };
    const m = syntheticGenerator(a);
    const e = loadError(() => loadStyleGAN2Weights(m));
    expect(e.message).toContain('the tensors describe a 32-D W space');
    const w = loadStyleGAN2Weights(m, { anyLatentDim: true });
    expect(w.arch).toEqual(a);
    const ms = await E.Session.create(E.toBytes(buildMappingGraph(w, { psi: 0.7 })), { provider: 'cpu' });
    const wp = (await ms.run({ z: rand(16, 9) }))['wp']!;
    await ms.release();
    expect(wp.dims).toEqual([1, 6, 32]);
    const gs = await E.Session.create(E.toBytes(buildGeneratorGraph(w)), { provider: 'cpu' });
    const img = (await gs.run({ wp: wp.data as Float32Array }))['image']!;
    await gs.release();
    expect(img.dims).toEqual([1, 3, 16, 16]);
    expect(Array.from(img.data).every(Number.isFinite)).toBe(true);
  });

  it('a stray deeper mapping key makes a 9-layer mapping whose missing weight is reported', () => {
    const m = demoGenerator();
    m.set('mapping.dense8.bias', makeTensor('float32', [512], new Float32Array(512)));
    const e = loadError(() => loadStyleGAN2Weights(m));
    expect(e.missing).toEqual(['mapping.dense8.weight']);
    expect(e.message).toContain('9 mapping layers');
  });
});
