/**
 * e4e encoder: parity with the upstream goldens for every `e4e` case of the fixtures directory
 * (full-size encoder, pattern weights), the align_corners=True upsampling matrix, and the loaders.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { PyNamespace, PyOrderedDict, type PyValue } from '../../models/checkpoint/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { loadCases, requireFixturesDir } from '../../models/fixtures/index.js';
import { loadSpec } from '../../models/fixtures/spec.js';
import {
  bilinearAlignCornersMatrix,
  buildE4E,
  e4eKeys,
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
