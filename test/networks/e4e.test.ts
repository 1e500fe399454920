/**
 * e4e encoder: parity with the upstream goldens for every `e4e` case of the fixtures directory
 * (full-size encoder, pattern weights), the align_corners=True upsampling matrix, the loaders, and the
 * architecture inference on small encoders in the official key layout (the demo bundle's).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { PyNamespace, PyOrderedDict, type PyValue } from '../../models/checkpoint/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { loadCases, requireFixturesDir } from '../../models/fixtures/index.js';
import { type SpecEntry, loadSpec, specTensor } from '../../models/fixtures/spec.js';
import { DEMO_SIZES, e4eLayout } from '../../models/bundle/demo-weights.js';
import { IRSE50, sameIrseArch } from '../../models/networks/irse50/backbone.js';
import { rand } from '../helpers/gradcheck.js';
import {
  bilinearAlignCornersMatrix,
  buildE4E,
  e4eKeys,
  inferE4EArch,
  e4eWeightsFromCheckpoint,
  loadE4EWeights,
} from '../../models/networks/e4e.js';
import { WeightsError } from '../../models/networks/irse50/weights.js';
import e4eHandler from '../../models/parity/kinds/e4e.js';
import type { ParityCase } from '../../models/parity/types.js';

const dir = requireFixturesDir();
// Data-driven over the directory's cases.json (validated by the fixtures loader): any directory of
// this format works (FALCO_FIXTURES).
const cases = loadCases(dir).cases.filter((c) => c.kind === 'e4e') as unknown as ParityCase[];

describe('e4e parity (fixtures)', () => {
  it('the fixtures hold at least one e4e case', () => {
    expect(cases.length).toBeGreaterThan(0);
  });
  for (const c of cases) {
    it(`${c.name}: codes and wplus within the README bars`, async () => {
      const checks = await e4eHandler(c, { dir, log: () => {} });
      expect(checks.map((k) => k.name).sort()).toEqual(Object.keys(c['expect'] as object).sort());
      for (const k of checks) {
        expect(k.pass, `${k.name}: ${JSON.stringify(k.metrics)}`).toBe(true);
        expect(k.metrics['relMaxErr']).toBeLessThan(1e-4);
        expect(k.metrics['maxAbsExpected']).toBeGreaterThan(0);
      }
    });
  }
});

describe('bilinearAlignCornersMatrix', () => {
  it('maps corners to corners and interpolates between them (torch align_corners=True)', () => {
    expect([...bilinearAlignCornersMatrix(2, 3).data]).toEqual([1, 0, 0.5, 0.5, 0, 1]);
    // 16 → 32 (the FPN's c3 → p2): out i samples in at i·15/31; rows sum to 1, ends are exact copies.
    const m = bilinearAlignCornersMatrix(16, 32);
    for (let i = 0; i < 32; i++) {
      const row = m.data.slice(i * 16, i * 16 + 16);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      const src = (i * 15) / 31;
      expect(row.reduce((a, w, j) => a + w * j, 0)).toBeCloseTo(src, 5);
    }
    expect(m.data[0]).toBe(1);
    expect(m.data[31 * 16 + 15]).toBe(1);
    expect([...bilinearAlignCornersMatrix(1, 4).data]).toEqual([1, 1, 1, 1]);
  });
});

/** Shape-only stand-ins: validation reads shapes and dtypes, never data. */
function fakeWeights(styles = 18): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, shape] of e4eKeys(styles)) m.set(k, { dtype: 'float32', shape, data: new Float32Array(0) });
  return m;
}

describe('e4e weight loading', () => {
  it('accepts the fixture spec (18 styles) and ignores decoder.* and BatchNorm counters', () => {
    const w = loadE4EWeights(loadSpec(join(dir, 'e4e_irse50.spec.json')));
    expect(w.styleCount).toBe(18);
    const m = fakeWeights();
    m.set('decoder.conv1.conv.weight', makeTensor('float32', [1], new Float32Array(1)));
    m.set('encoder.body.0.res_layer.0.num_batches_tracked', makeTensor('int64', [], BigInt64Array.of(1n)));
    expect(loadE4EWeights(m).styleCount).toBe(18);
    expect(loadE4EWeights(fakeWeights(14)).styleCount).toBe(14); // a 256 px generator's encoder
  });

  it('lists missing / unexpected / mis-shaped keys', () => {
    const m = fakeWeights();
    m.delete('latent_avg');
    m.delete('encoder.styles.9.convs.10.bias');
    m.set('encoder.styles.3.linear.weight', {
      dtype: 'float32',
      shape: [512, 256],
      data: new Float32Array(0),
    });
    m.set('encoder.output_layer.0.weight', makeTensor('float32', [1], new Float32Array(1)));
    let err: unknown;
    try {
      loadE4EWeights(m);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightsError);
    const we = err as WeightsError;
    expect(we.missing.sort()).toEqual(['encoder.styles.9.convs.10.bias', 'latent_avg']);
    expect(we.unexpected).toEqual(['encoder.output_layer.0.weight']);
    expect(we.message).toMatch(/encoder\.styles\.3\.linear\.weight \[512, 256\] \(expected \[512, 512\]\)/);
  });

  it('rejects weights with no style blocks or the wrong count', () => {
    expect(() =>
      loadE4EWeights(new Map([['input_layer.0.weight', makeTensor('float32', [1], new Float32Array(1))]])),
    ).toThrow(/no "encoder\.styles\.<i>\.\*" weights found \(keys start with: input_layer\.0\.weight\)/);
    expect(() => loadE4EWeights(fakeWeights(), { expectStyles: 14 })).toThrow(/18 style blocks, expected 14/);
  });

  it('reads a checkpoint object: state_dict (encoder.* + decoder.*), top-level latent_avg, opts', () => {
    const sd = new PyOrderedDict();
    for (const [k, v] of fakeWeights()) if (k !== 'latent_avg') sd.set(k, v);
    sd.set('decoder.style.1.weight', makeTensor('float32', [1], new Float32Array(1)));
    const ckpt = (opts: PyValue): PyValue =>
      new Map<PyValue, PyValue>([
        ['state_dict', sd],
        ['latent_avg', fakeWeights().get('latent_avg')! as unknown as PyValue],
        ['opts', opts],
      ]);
    expect(
      e4eWeightsFromCheckpoint(ckpt(new Map<PyValue, PyValue>([['stylegan_size', 1024]]))).styleCount,
    ).toBe(18);
    const ns = new PyNamespace([['stylegan_size', 256]]);
    expect(() => e4eWeightsFromCheckpoint(ckpt(ns))).toThrow(/18 style blocks, expected 14/);
    expect(() => e4eWeightsFromCheckpoint(new Map<PyValue, PyValue>([['state_dict', sd]]))).toThrow(
      /no key "latent_avg"/,
    );
  });

  it('checks the input shape when building', () => {
    const g = new E.Graph('t');
    expect(() => buildE4E(g, loadE4EWeights(fakeWeights()), g.input('x', [1, 3, 224, 224]))).toThrow(
      /\[N, 3, 256, 256\]/,
    );
  });
});

// ------------------------------------------------------------------------ small (demo) sizes

/** A checkpoint map in the official layout from the demo-bundle generator (pattern weights). */
const layoutMap = (entries: SpecEntry[]): Map<string, Tensor> =>
  new Map(entries.map((e) => [e.key, specTensor(e) as Tensor]));

function thrown(f: () => unknown): WeightsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(WeightsError);
    return e as WeightsError;
  }
  throw new Error('expected a WeightsError');
}

describe('e4e architecture inference', () => {
  it('recognises the full-size encoder: IR-SE50 taps 6/20/23, 512-wide blocks, W 512', () => {
    const a = inferE4EArch(fakeWeights(), 18);
    expect(sameIrseArch(a.body, IRSE50)).toBe(true);
    expect(a.body.stageEnds.slice(1)).toEqual([6, 20, 23]);
    expect([a.styles, a.styleWidth, a.wDim]).toEqual([18, 512, 512]);
    expect(e4eKeys(a)).toEqual(e4eKeys(18));
  });

  it('the demo layout: 10 styles, 64-wide blocks, exactly its key set (convs 4/5/6 by feature size)', () => {
    const m = layoutMap(e4eLayout(DEMO_SIZES));
    const w = loadE4EWeights(m, { expectStyles: 10 });
    expect([w.styleCount, w.arch.styleWidth, w.arch.wDim]).toEqual([10, 64, 512]);
    expect(w.arch.body.units.map((u) => u.depth)).toEqual([16, 32, 64, 128]);
    const spec = e4eKeys(w.arch);
    expect([...spec.keys()].sort()).toEqual([...m.keys()].sort());
    for (const [k, s] of spec) expect(m.get(k)!.shape, k).toEqual(s);
    expect(spec.get('encoder.styles.2.convs.6.weight')).toEqual([64, 64, 3, 3]);
    expect(spec.has('encoder.styles.2.convs.8.weight')).toBe(false); // c3 16 px: 4 convs
    expect(spec.has('encoder.styles.6.convs.8.weight')).toBe(true); // p2 32 px: 5 convs
    expect(spec.has('encoder.styles.7.convs.10.weight')).toBe(true); // p1 64 px: 6 convs
    expect(spec.get('encoder.latlayer2.weight')).toEqual([128, 32, 1, 1]);
  });
});

describe('e4e at small size', () => {
  it('runs: codes [1, 10, 512] with wplus = codes + latent_avg, distinct per-layer deltas', async () => {
    const m = layoutMap(e4eLayout(DEMO_SIZES));
    const w = loadE4EWeights(m);
    const g = new E.Graph('e4e-small');
    const x = g.input('x', [1, 3, 256, 256]);
    const { codes, wplus } = buildE4E(g, w, x);
    expect(codes.shape).toEqual([1, 10, 512]);
    g.output(codes, 'codes');
    g.output(wplus, 'wplus');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    const out = await s.run({ x: rand(3 * 256 * 256, 5) });
    await s.release();
    const c = out.codes!.data;
    const wp = out.wplus!.data;
    const avg = m.get('latent_avg')!.data as Float32Array;
    expect(c.every(Number.isFinite)).toBe(true);
    for (let i = 0; i < c.length; i += 97) expect(wp[i]).toBeCloseTo(c[i]! + avg[i]!, 5);
    // Layers differ from w0 (each adds its own delta): coarse, middle and fine blocks all contribute.
    for (const l of [1, 5, 9]) {
      const d = Math.max(...Array.from({ length: 512 }, (_, j) => Math.abs(c[l * 512 + j]! - c[j]!)));
      expect(d, `layer ${l}`).toBeGreaterThan(1e-4);
    }
  });

  it('fewer styles than the fine group needs (16 px generator, 6 styles): p1 is never built', () => {
    const m = layoutMap(e4eLayout({ ...DEMO_SIZES, generator: { ...DEMO_SIZES.generator, resolution: 16 } }));
    const w = loadE4EWeights(m);
    expect(w.styleCount).toBe(6);
    const g = new E.Graph('e4e-6');
    const { wplus } = buildE4E(g, w, g.input('x', [1, 3, 256, 256]));
    g.output(wplus, 'wplus');
    const bytes = Buffer.from(E.toBytes(g));
    expect(wplus.shape).toEqual([1, 6, 512]);
    expect(bytes.includes('encoder.latlayer1.weight')).toBe(true);
    expect(bytes.includes('encoder.latlayer2.weight')).toBe(false);
  });

  it('inconsistent small checkpoints: odd conv, missing conv, extra conv named precisely', () => {
    const m = layoutMap(e4eLayout(DEMO_SIZES));
    m.set(
      'encoder.styles.4.convs.0.weight',
      makeTensor('float32', [64, 32, 3, 3], new Float32Array(64 * 32 * 9)),
    );
    m.delete('encoder.styles.8.convs.10.weight');
    m.set(
      'encoder.styles.0.convs.8.weight',
      makeTensor('float32', [64, 64, 3, 3], new Float32Array(64 * 64 * 9)),
    );
    m.set(
      'encoder.body.1.res_layer.1.weight',
      makeTensor('float32', [32, 8, 3, 3], new Float32Array(32 * 8 * 9)),
    );
    const e = thrown(() => loadE4EWeights(m));
    expect(e.missing).toEqual(['encoder.styles.8.convs.10.weight']);
    expect(e.unexpected).toEqual(['encoder.styles.0.convs.8.weight']);
    expect(e.wrongShape.sort()).toEqual([
      'encoder.body.1.res_layer.1.weight [32, 8, 3, 3] (expected [32, 16, 3, 3])',
      'encoder.styles.4.convs.0.weight [64, 32, 3, 3] (expected [64, 128, 3, 3])',
    ]);
    expect(e.message).toMatch(
      /^e4e encoder \(IR-SE \(input 16, 4 units, stage depths 16\/32\/64\/128\), style width 64, W 512\)/,
    );
  });

  it('a body without 4 stride-2 stages is refused with the reason', () => {
    // e4eLayout itself refuses 3 stages: drop the demo's last unit (= its 4th stage) instead.
    const m = layoutMap(e4eLayout(DEMO_SIZES));
    for (const k of [...m.keys()]) if (k.startsWith('encoder.body.3.')) m.delete(k);
    expect(() => loadE4EWeights(m)).toThrow(/the body has 3 stride-2 stage\(s\).*needs exactly 4/);
  });
});
