/**
 * ArcFace IR-SE50: parity with the upstream goldens for every `arcface` case of the fixtures directory
 * (full-size network, pattern weights), the weight loader's errors, and the architecture inference on
 * small bodies in the official key layout (the demo bundle's, from models/bundle/demo-weights.ts):
 * shapes, a finite-difference input gradient, precise errors.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { PyOrderedDict, type PyValue } from '../../models/checkpoint/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { loadCases, requireFixturesDir } from '../../models/fixtures/index.js';
import { type SpecEntry, loadSpec, specTensor } from '../../models/fixtures/spec.js';
import { DEMO_SIZES, type NetworkSizes, arcfaceLayout } from '../../models/bundle/demo-weights.js';
import { IRSE50, sameIrseArch } from '../../models/networks/irse50/backbone.js';
import { gradCheck, rand } from '../helpers/gradcheck.js';
import {
  arcFaceKeys,
  inferArcFaceArch,
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

// ------------------------------------------------------------------------ small (demo) sizes

/** A checkpoint map in the official layout from the demo-bundle generator (pattern weights). */
const layoutMap = (entries: SpecEntry[]): Map<string, Tensor> =>
  new Map(entries.map((e) => [e.key, specTensor(e) as Tensor]));

/** Catch the error `f` throws (the test fails if it does not). */
function thrown(f: () => unknown): WeightsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(WeightsError);
    return e as WeightsError;
  }
  throw new Error('expected a WeightsError');
}

describe('ArcFace architecture inference', () => {
  it('recognises the full-size IR-SE50 exactly (units, strides, SE widths, stage ends)', () => {
    const a = inferArcFaceArch(fakeWeights());
    expect(sameIrseArch(a.body, IRSE50)).toBe(true);
    expect(a.body.stageEnds).toEqual([2, 6, 20, 23]);
    expect(a.body.units.map((u) => u.stride).join('')).toBe('211' + '2111' + '2' + '1'.repeat(13) + '211');
    expect([a.channels, a.embedding]).toEqual([512, 512]);
    expect(IRSE50.units[3]).toEqual({ inC: 64, depth: 128, stride: 2, se: 8 });
  });

  it('one mis-shaped conv of a full-size checkpoint is reported, not taken as another architecture', () => {
    const m = fakeWeights();
    m.set('body.3.res_layer.1.weight', {
      dtype: 'float32',
      shape: [256, 64, 3, 3],
      data: new Float32Array(0),
    });
    const e = thrown(() => loadArcFaceWeights(m));
    expect(e.missing).toEqual([]);
    expect(e.unexpected).toEqual([]);
    expect(e.wrongShape).toEqual(['body.3.res_layer.1.weight [256, 64, 3, 3] (expected [128, 64, 3, 3])']);
    expect(e.message).toMatch(/^ArcFace IR-SE50: weights do not match/);
  });

  it('the demo layout: 4 units 16→128, SE widths from fc1, and exactly its key set', () => {
    const m = layoutMap(arcfaceLayout(DEMO_SIZES));
    const w = loadArcFaceWeights(m);
    expect(w.arch.body.inputC).toBe(16);
    expect(w.arch.body.units).toEqual([
      { inC: 16, depth: 16, stride: 2, se: 1 },
      { inC: 16, depth: 32, stride: 2, se: 2 },
      { inC: 32, depth: 64, stride: 2, se: 4 },
      { inC: 64, depth: 128, stride: 2, se: 8 },
    ]);
    expect([w.arch.channels, w.arch.embedding]).toEqual([128, 512]);
    const spec = arcFaceKeys(w.arch);
    expect([...spec.keys()].sort()).toEqual([...m.keys()].sort());
    for (const [k, s] of spec) expect(m.get(k)!.shape, k).toEqual(s);
  });

  it('stride-1 units, a MaxPool shortcut inside a stage and SE reduction 4', () => {
    const sizes: NetworkSizes = {
      ...DEMO_SIZES,
      irse: {
        stages: [
          [8, 8, 2],
          [8, 16, 1],
          [16, 24, 3],
          [24, 32, 1],
        ],
        seReduction: 4,
      },
    };
    const w = loadArcFaceWeights(layoutMap(arcfaceLayout(sizes)));
    expect(w.arch.body.units.map((u) => [u.inC, u.depth, u.stride, u.se])).toEqual([
      [8, 8, 2, 2],
      [8, 8, 1, 2],
      [8, 16, 2, 4],
      [16, 24, 2, 6],
      [24, 24, 1, 6],
      [24, 24, 1, 6],
      [24, 32, 2, 8],
    ]);
    expect(w.arch.body.stageEnds).toEqual([1, 2, 5, 6]);
  });
});

describe('ArcFace at small size', () => {
  const demo = () => loadArcFaceWeights(layoutMap(arcfaceLayout(DEMO_SIZES)));

  it('builds and runs: [2, 3, 112, 112] → unit-norm [2, 512], one embedding per face', async () => {
    const w = demo();
    const g = new E.Graph('small');
    const x = g.input('x', [2, 3, 112, 112]);
    const y = buildArcFace(g, w, x);
    expect(y.shape).toEqual([2, 512]);
    g.output(y, 'y');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    const a = rand(3 * 112 * 112, 3);
    const b = rand(3 * 112 * 112, 4);
    const both = new Float32Array(2 * a.length);
    both.set(a);
    both.set(b, a.length);
    const out = (await s.run({ x: both })).y!.data;
    await s.release();
    for (const row of [out.subarray(0, 512), out.subarray(512)]) {
      expect(row.every(Number.isFinite)).toBe(true);
      expect(Math.hypot(...row)).toBeCloseTo(1, 5);
    }
    // Different faces give different embeddings (the batch rows are not mixed up or constant).
    const cos = out.subarray(0, 512).reduce((acc, v, i) => acc + v * out[512 + i]!, 0);
    expect(cos).toBeLessThan(0.9999);
  });

  it('input gradient matches central finite differences', async () => {
    const w = demo();
    // eps 1e-3: the error shrinks with eps (1.4e-2 at 1e-2, 2.4e-3 at 3e-3, 1.0e-3 at 1e-3 measured),
    // i.e. it is the finite difference's curvature error, not a wrong VJP.
    const r = await gradCheck((g, [x]) => buildArcFace(g, w, x!), [{ shape: [1, 3, 112, 112] }], {
      eps: 1e-3,
      directions: 3,
    });
    expect(r.maxRelErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(5e-3);
    expect(Math.max(...r.analytic.map(Math.abs))).toBeGreaterThan(1e-4);
  });

  it('a unit whose convs disagree: the odd tensor is named with the inferred body', () => {
    const m = layoutMap(arcfaceLayout(DEMO_SIZES));
    m.set('body.2.res_layer.3.weight', makeTensor('float32', [48, 64, 3, 3], new Float32Array(48 * 64 * 9)));
    const e = thrown(() => loadArcFaceWeights(m));
    expect(e.wrongShape).toEqual(['body.2.res_layer.3.weight [48, 64, 3, 3] (expected [64, 64, 3, 3])']);
    expect(e.missing).toEqual([]);
    expect(e.message).toMatch(/^ArcFace IR-SE \(input 16, 4 units, stage depths 16\/32\/64\/128\): /);
  });

  it('a missing conv, a stray unit and a wrong output Linear are listed together', () => {
    const m = layoutMap(arcfaceLayout(DEMO_SIZES));
    m.delete('body.1.res_layer.1.weight');
    m.set('body.9.res_layer.0.weight', makeTensor('float32', [4], new Float32Array(4)));
    m.set('output_layer.3.weight', makeTensor('float32', [512, 64 * 49], new Float32Array(512 * 64 * 49)));
    const e = thrown(() => loadArcFaceWeights(m));
    expect(e.missing).toEqual(['body.1.res_layer.1.weight']);
    expect(e.unexpected).toEqual(['body.9.res_layer.0.weight']);
    expect(e.wrongShape).toEqual(['output_layer.3.weight [512, 3136] (expected [512, 6272])']);
  });

  it('a body that does not reach 7×7 at 112 px is refused with the reason', () => {
    const three: NetworkSizes = {
      ...DEMO_SIZES,
      irse: {
        stages: [
          [16, 16, 1],
          [16, 32, 1],
          [32, 64, 1],
        ],
        seReduction: 16,
      },
    };
    expect(() => loadArcFaceWeights(layoutMap(arcfaceLayout(three)))).toThrow(
      /3 stride-2 stage\(s\) take the 112 px input to 14×14, but the output layer flattens a 7×7 map/,
    );
  });
});
