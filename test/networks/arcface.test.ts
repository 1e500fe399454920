/**
 * ArcFace IR-SE50: parity with the upstream goldens for every `arcface` case of the fixtures directory
 * (full-size network, pattern weights), and the weight loader's errors.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { PyOrderedDict, type PyValue } from '../../models/checkpoint/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { loadCases, requireFixturesDir } from '../../models/fixtures/index.js';
import { loadSpec } from '../../models/fixtures/spec.js';
import {
  arcFaceKeys,
  arcFaceWeightsFromCheckpoint,
  buildArcFace,
  l2Normalize,
  loadArcFaceWeights,
} from '../../models/networks/arcface.js';
import { WeightsError } from '../../models/networks/irse50/weights.js';
import arcfaceHandler from '../../models/parity/kinds/arcface.js';
import type { ParityCase } from '../../models/parity/types.js';

const dir = requireFixturesDir();
// Data-driven over the directory's cases.json (validated by the fixtures loader): any directory of
// this format works (FALCO_FIXTURES).
const cases = loadCases(dir).cases.filter((c) => c.kind === 'arcface') as unknown as ParityCase[];

describe('ArcFace parity (fixtures)', () => {
  it('the fixtures hold at least one arcface case', () => {
    expect(cases.length).toBeGreaterThan(0);
  });
  for (const c of cases) {
    it(`${c.name}: feat and grad_input within the README bars`, async () => {
      const checks = await arcfaceHandler(c, { dir, log: () => {} });
      const names = checks.map((k) => k.name).sort();
      expect(names).toEqual(Object.keys(c['expect'] as object).sort());
      for (const k of checks) {
        expect(k.pass, `${k.name}: ${JSON.stringify(k.metrics)}`).toBe(true);
        for (const v of Object.values(k.metrics)) expect(Number.isFinite(v)).toBe(true);
      }
      const feat = checks.find((k) => k.name === 'feat');
      if (feat) expect(feat.metrics['relMaxErr']).toBeLessThan(1e-4);
      const grad = checks.find((k) => k.name === 'grad_input');
      if (grad) {
        expect(grad.metrics['cosine']).toBeGreaterThan(0.9999);
        expect(grad.metrics['relL2']).toBeLessThan(1e-3);
      }
    });
  }
});

/** Shape-only stand-ins: validation reads shapes and dtypes, never data. */
function fakeWeights(): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, shape] of arcFaceKeys()) m.set(k, { dtype: 'float32', shape, data: new Float32Array(0) });
  return m;
}

describe('ArcFace weight loading', () => {
  it('accepts the fixture spec and a complete state dict with BatchNorm counters', () => {
    expect(loadArcFaceWeights(loadSpec(join(dir, 'arcface_irse50.spec.json'))).kind).toBe('arcface-irse50');
    const m = fakeWeights();
    m.set('input_layer.1.num_batches_tracked', makeTensor('int64', [], BigInt64Array.of(0n)));
    expect(() => loadArcFaceWeights(m)).not.toThrow();
    expect(arcFaceKeys().size).toBe(343);
  });

  it('lists missing, unexpected and mis-shaped keys in one error', () => {
    const m = fakeWeights();
    m.delete('body.7.shortcut_layer.0.weight');
    m.delete('output_layer.4.running_var');
    m.set('body.24.res_layer.0.weight', makeTensor('float32', [1], new Float32Array(1)));
    m.set('output_layer.3.weight', { dtype: 'float32', shape: [512, 512], data: new Float32Array(0) });
    let err: unknown;
    try {
      loadArcFaceWeights(m);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightsError);
    const we = err as WeightsError;
    expect(we.missing.sort()).toEqual(['body.7.shortcut_layer.0.weight', 'output_layer.4.running_var']);
    expect(we.unexpected).toEqual(['body.24.res_layer.0.weight']);
    expect(we.wrongShape).toHaveLength(1);
    expect(we.message).toMatch(/2 missing: .*body\.7\.shortcut_layer\.0\.weight/);
    expect(we.message).toMatch(/output_layer\.3\.weight \[512, 512\] \(expected \[512, 25088\]\)/);
  });

  it('points at a key prefix and strips it on request', () => {
    const m = new Map([...fakeWeights()].map(([k, v]) => [`module.${k}`, v]));
    expect(() => loadArcFaceWeights(m)).toThrow(/343 missing.*prefixed with "module\."/);
    expect(loadArcFaceWeights(m, { prefix: 'module.' }).map.size).toBe(343);
    expect(() => loadArcFaceWeights(m, { prefix: 'model.' })).toThrow(/no weight key starts with "model\."/);
  });

  it('rejects integer weights and a non-dict checkpoint', () => {
    const m = fakeWeights();
    m.set('input_layer.2.weight', makeTensor('int64', [64], new BigInt64Array(64)));
    expect(() => loadArcFaceWeights(m)).toThrow(/input_layer\.2\.weight has dtype int64/);
    expect(() => arcFaceWeightsFromCheckpoint([1, 2])).toThrow(/expects a dict/);
  });

  it('reads a plain state-dict checkpoint object (model_ir_se50.pth layout)', () => {
    const sd = new PyOrderedDict();
    for (const [k, v] of fakeWeights()) sd.set(k, v as unknown as PyValue);
    expect(arcFaceWeightsFromCheckpoint(sd).map.size).toBe(343);
  });

  it('shares weight constants when built twice in one graph (FALCO runs it on two faces)', () => {
    const w = loadArcFaceWeights(loadSpec(join(dir, 'arcface_irse50.spec.json')));
    const g = new E.Graph('twice');
    const bytes = () => [...g.initializers.values()].reduce((a, t) => a + t.data.byteLength, 0);
    const a = buildArcFace(g, w, g.input('a', [1, 3, 112, 112]));
    const once = bytes();
    const b = buildArcFace(g, w, g.input('b', [1, 3, 112, 112]));
    expect(once).toBeGreaterThan(170e6); // ~43.8 M float32 weights
    expect(bytes() - once).toBeLessThan(1024); // only new small scalars / shape constants
    expect(a.shape).toEqual([1, 512]);
    expect(b.shape).toEqual([1, 512]);
  });

  it('checks the input shape when building', () => {
    const g = new E.Graph('t');
    const w = loadArcFaceWeights(fakeWeights());
    expect(() => buildArcFace(g, w, g.input('x', [1, 3, 128, 128]))).toThrow(/\[N, 3, 112, 112\]/);
    const other = new E.Graph('o');
    expect(() => buildArcFace(g, w, other.input('x', [1, 3, 112, 112]))).toThrow(/another graph/);
  });
});

describe('l2Normalize', () => {
  it('divides each row by its 2-norm, with no epsilon', async () => {
    const g = new E.Graph('l2');
    const x = g.input('x', [2, 3]);
    g.output(l2Normalize(x), 'y');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    const { y } = await s.run({ x: Float32Array.of(3, 0, 4, 0, 0, 0) });
    expect([...y!.data.slice(0, 3)]).toEqual([0.6000000238418579, 0, 0.800000011920929]);
    // The reference divides 0 by 0 too: a zero feature is NaN there, not silently zero.
    expect(y!.data.slice(3).every(Number.isNaN)).toBe(true);
    await s.release();
  });
});
