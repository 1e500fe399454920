/**
 * The demo-weight layouts are derived from a size description; at full size they must be exactly the
 * golden fixtures' weight specs (key, shape, range, fixed values), which are the real checkpoints'
 * layouts. That is what makes the small demo checkpoints "the same architectures at small size".
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseSpec, type SpecEntry } from '../../models/fixtures/spec.js';
import { fixturePath } from '../../models/fixtures/paths.js';
import {
  DEMO_SIZES,
  FULL_SIZES,
  arcfaceLayout,
  e4eLayout,
  farlLayout,
  generatorLayout,
  type NetworkSizes,
} from '../../models/bundle/demo-weights.js';

function same(mine: SpecEntry[], file: string): void {
  const spec = parseSpec(JSON.parse(readFileSync(fixturePath(file), 'utf8')), file);
  const want = new Map(spec.map((e) => [e.key, e]));
  const got = new Map(mine.map((e) => [e.key, e]));
  expect([...got.keys()].filter((k) => !want.has(k))).toEqual([]);
  expect([...want.keys()].filter((k) => !got.has(k))).toEqual([]);
  for (const [k, w] of want) {
    const g = got.get(k)!;
    expect({ k, shape: g.shape }).toEqual({ k, shape: w.shape });
    if (w.values) expect({ k, values: g.values }).toEqual({ k, values: w.values });
    else expect({ k, lo: g.lo, hi: g.hi }).toEqual({ k, lo: w.lo, hi: w.hi });
  }
}

describe('demo-weight layouts at full size equal the fixture specs', () => {
  it('StyleGAN2 genforce 1024 px', () =>
    same(generatorLayout(FULL_SIZES), 'stylegan2_genforce_r1024.spec.json'));
  it('StyleGAN2 genforce 64 px (full width)', () => {
    const s: NetworkSizes = { ...FULL_SIZES, generator: { ...FULL_SIZES.generator, resolution: 64 } };
    same(generatorLayout(s), 'stylegan2_genforce_r64.spec.json');
  });
  it('ArcFace IR-SE50', () => same(arcfaceLayout(FULL_SIZES), 'arcface_irse50.spec.json'));
  it('e4e IR-SE50 (18 styles)', () => same(e4eLayout(FULL_SIZES), 'e4e_irse50.spec.json'));
  it('FaRL ViT-B/16', () => same(farlLayout(FULL_SIZES), 'farl_vitb16.spec.json'));
});

describe('demo sizes', () => {
  it('keep the key families and shrink the tensors', () => {
    const total = (es: SpecEntry[]) => es.reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);
    const g = generatorLayout(DEMO_SIZES);
    expect(g.find((e) => e.key === 'synthesis.layer8.weight')!.shape).toEqual([64, 64, 3, 3]);
    expect(g.some((e) => e.key === 'synthesis.output4.weight')).toBe(true);
    expect(g.some((e) => e.key === 'synthesis.output5.weight')).toBe(false);
    const e = e4eLayout(DEMO_SIZES);
    expect(e.find((x) => x.key === 'latent_avg')!.shape).toEqual([10, 512]);
    expect(e.some((x) => x.key === 'encoder.styles.9.linear.weight')).toBe(true);
    expect(e.some((x) => x.key === 'encoder.styles.10.linear.weight')).toBe(false);
    const f = farlLayout(DEMO_SIZES);
    expect(f.find((x) => x.key === 'visual.positional_embedding')!.shape).toEqual([197, 64]);
    expect(total(arcfaceLayout(DEMO_SIZES))).toBeLessThan(total(arcfaceLayout(FULL_SIZES)) / 10);
  });
});
