/** Host-side pieces of the FALCO runtime and the bundle manifest: no models needed. */
import { describe, expect, it } from 'vitest';
import { composeCode, lrMilestones, rankPool } from '../../models/falco/engine.js';
import { multiStepLR } from '../../models/engine/index.js';
import { BundleError, parseManifest } from '../../models/bundle/manifest.js';
import { gaussian, prng } from '../../models/bundle/pool.js';

describe('optimisation schedule', () => {
  it('uses FALCO milestones int(0.75·steps), int(0.9·steps) and ×0.8', () => {
    expect(lrMilestones([0.75, 0.9], 50)).toEqual([37, 45]);
    expect(lrMilestones([0.75, 0.9], 7)).toEqual([5, 6]);
    const ms = lrMilestones([0.75, 0.9], 50);
    const lrs = Array.from({ length: 50 }, (_, i) => multiStepLR(0.01, ms, 0.8, i));
    expect(lrs[36]).toBe(0.01);
    expect(lrs[37]).toBeCloseTo(0.008, 12);
    expect(lrs[45]).toBeCloseTo(0.0064, 12);
  });
  it('composes real outside and fake inside the trainable range', () => {
    const L = 4;
    const real = new Float32Array(L * 512).fill(1);
    const fake = new Float32Array(L * 512).fill(2);
    const c = composeCode(real, fake, [1, 3], L);
    expect([c[0], c[511], c[512], c[3 * 512 - 1], c[3 * 512]]).toEqual([1, 1, 2, 2, 1]);
    expect(() => composeCode(real, new Float32Array(3), [1, 3], L)).toThrow(/W\+ codes/);
  });
});

describe('fake pool', () => {
  it('ranks by cosine and breaks exact ties by seed', () => {
    const dim = 2;
    // 0 and 2 are identical directions (a tie); 1 is orthogonal; 3 opposite.
    const features = Float32Array.from([1, 0, 0, 1, 2, 0, -1, 0]);
    const pool = { n: 4, codes: new Float32Array(0), features, dim };
    const r = rankPool(pool, Float32Array.from([3, 0]), 0);
    expect(r.map((x) => x.index).slice(2)).toEqual([1, 3]);
    expect(new Set(r.slice(0, 2).map((x) => x.index))).toEqual(new Set([0, 2]));
    expect(r[0]!.similarity).toBeCloseTo(1, 6);
    const firsts = new Set(
      Array.from({ length: 16 }, (_, s) => rankPool(pool, Float32Array.from([1, 0]), s)[0]!.index),
    );
    expect(firsts).toEqual(new Set([0, 2]));
    expect(rankPool(pool, Float32Array.from([1, 0]), 5)).toEqual(
      rankPool(pool, Float32Array.from([1, 0]), 5),
    );
    expect(() => rankPool(pool, Float32Array.from([1, 0, 0]))).toThrow(/dimensions/);
  });
  it('samples z deterministically from N(0, 1)', () => {
    const a = gaussian(prng(42), 20000);
    expect(Array.from(gaussian(prng(42), 8))).toEqual(Array.from(a.subarray(0, 8)));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- deliberately malformed JSON
type Manifestish = Record<string, any>;

describe('manifest validation', () => {
  const valid = () => ({
    format: 'falco-bundle/1',
    id: 'x',
    name: 'x',
    demo: true,
    resolution: 64,
    wLayers: 10,
    trainableRange: { min: 0, max: 10 },
    tokens: [197, 64],
    components: Object.fromEntries(
      ['generator', 'e4e', 'arcface', 'farl', 'faceapi'].map((c) => [
        c,
        { source: 's', sha256: 'a'.repeat(64), license: 'MIT' },
      ]),
    ),
    models: Object.fromEntries(
      ['encoder', 'targets', 'step', 'render', 'mapping'].map((m) => [
        m,
        { file: `${m}.onnx`, sha256: 'b', bytes: 10 },
      ]),
    ),
    defaults: {
      steps: 50,
      lr: 0.01,
      lrMilestones: [0.75, 0.9],
      lrGamma: 0.8,
      lambdaId: 10,
      lambdaAttr: 0.1,
      idMargin: 0,
      layers: [3, 8],
      truncation: 0.7,
    },
    reid: { threshold: 0.6, retries: 2, marginStep: 0.2, lambdaIdFactor: 2 },
    pool: null,
  });
  it('accepts a valid manifest', () => {
    expect(parseManifest(valid()).defaults.layers).toEqual([3, 8]);
  });
  it.each([
    ['format', (m: Manifestish) => (m.format = 'other/1'), /format/],
    ['wLayers', (m: Manifestish) => (m.wLayers = 18), /wLayers is 18/],
    ['layers', (m: Manifestish) => (m.defaults.layers = [8, 3]), /defaults\.layers/],
    ['escaping path', (m: Manifestish) => (m.models.step.file = '../../etc/passwd'), /inside the bundle/],
    ['sha', (m: Manifestish) => (m.components.farl.sha256 = 'nope'), /components\.farl\.sha256/],
    ['steps', (m: Manifestish) => (m.defaults.steps = 'many'), /defaults\.steps/],
  ])('rejects a bad %s', (_n, edit, msg) => {
    const m = valid();
    edit(m);
    expect(() => parseManifest(m)).toThrow(BundleError);
    expect(() => parseManifest(m)).toThrow(msg);
  });
});
