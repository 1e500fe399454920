/**
 * FaRL ViT-B/16: parity with the upstream goldens for every `farl` case of the fixtures directory
 * (full-size network, pattern weights), finite-difference gradient checks of the encoder's own
 * primitives and of a tiny configuration, constant sharing, the weight loader's errors, and the
 * configuration inferred from the shapes (the demo bundle's 64-wide 2-block ViT: build, gradient, errors).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { saveCheckpoint } from '../../models/checkpoint/index.js';
import { makeTensor, numberToHalfBits, type Tensor } from '../../models/checkpoint/tensor.js';
import { loadCases, pattern, requireFixturesDir, specTensor } from '../../models/fixtures/index.js';
import { DEMO_SIZES, farlLayout } from '../../models/bundle/demo-weights.js';
import {
  FARL_VITB16,
  type FarlConfig,
  FarlWeightsError,
  buildFarl,
  farlCheckpointSelect,
  farlWeightShapes,
  inferFarlConfig,
  loadFarlCheckpoint,
  loadFarlWeights,
} from '../../models/networks/farl.js';
import { quickGelu, split } from '../../models/networks/vit/ops.js';
import farlHandler from '../../models/parity/kinds/farl.js';
import type { ParityCase } from '../../models/parity/types.js';
import { gradCheck } from '../helpers/gradcheck.js';

const dir = requireFixturesDir();
// Data-driven over the directory's cases.json (any directory of this format works: FALCO_FIXTURES).
const cases = loadCases(dir).cases.filter((c) => c.kind === 'farl') as unknown as ParityCase[];

describe('FaRL parity (fixtures)', () => {
  it('the fixtures hold at least one farl case', () => {
    expect(cases.length).toBeGreaterThan(0);
  });
  for (const c of cases) {
    it(`${c.name}: tokens and grad_input within the README bars`, async () => {
      const checks = await farlHandler(c, { dir, log: () => {} });
      expect(checks.map((k) => k.name).sort()).toEqual(Object.keys(c['expect'] as object).sort());
      for (const k of checks) {
        expect(k.pass, `${k.name}: ${JSON.stringify(k.metrics)}`).toBe(true);
        for (const v of Object.values(k.metrics)) expect(Number.isFinite(v)).toBe(true);
      }
      const tokens = checks.find((k) => k.name === 'tokens');
      if (tokens) expect(tokens.metrics['relMaxErr']).toBeLessThan(1e-4);
      const grad = checks.find((k) => k.name === 'grad_input');
      if (grad) {
        expect(grad.metrics['cosine']).toBeGreaterThan(0.9999);
        expect(grad.metrics['relL2']).toBeLessThan(1e-3);
      }
    });
  }
});

// A tiny ViT with the same structure: 2×2 patches of 8 px → 5 tokens, width 16, 2 heads, 2 blocks.
const TINY: FarlConfig = { resolution: 16, patch: 8, width: 16, layers: 2, heads: 2, outputDim: 4 };

function tinyMap(cfg: FarlConfig, prefix = 'visual.'): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, { shape }] of farlWeightShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const [lo, hi] =
      k.endsWith('ln_1.weight') || k.endsWith('ln_2.weight') || k === 'ln_pre.weight'
        ? [0.8, 1.2]
        : [-0.3, 0.3];
    m.set(prefix + k, makeTensor('float32', shape, pattern(`tiny.${k}`, n, lo, hi)));
  }
  return m;
}

describe('FaRL primitives and tiny encoder: gradients vs finite differences', () => {
  it('quickGelu VJP', async () => {
    const r = await gradCheck((_g, [x]) => quickGelu(x!), [{ shape: [4, 32], lo: -4, hi: 4 }], { eps: 1e-2 });
    expect(r.maxRelErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(5e-3);
  });

  it('quickGelu forward is x·σ(1.702x)', async () => {
    const g = new E.Graph('qg');
    const x = g.input('x', [5]);
    g.output(quickGelu(x), 'y');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    const xs = Float32Array.of(-3, -0.5, 0, 0.7, 2.5);
    const y = (await s.run({ x: xs })).y!.data;
    await s.release();
    xs.forEach((v, i) => expect(y[i]).toBeCloseTo(v / (1 + Math.exp(-1.702 * v)), 6));
  });

  it('split VJP (uneven parts, every part used with a different weight)', async () => {
    const r = await gradCheck(
      (_g, [x]) => {
        const [a, b, c] = split(x!, [2, 3, 1], 1);
        return E.concat([E.mul(a!, 2), E.mul(b!, b!), E.neg(c!)], 1);
      },
      [{ shape: [3, 6] }],
    );
    expect(r.maxRelErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(5e-3);
  });

  it('split rejects sizes that do not add up', () => {
    const g = new E.Graph('s');
    const x = g.input('x', [3, 6]);
    expect(() => split(x, [2, 2], 1)).toThrow(/do not add up/);
  });

  it('whole tiny encoder: input gradient', async () => {
    const w = loadFarlWeights(tinyMap(TINY), { config: TINY });
    const r = await gradCheck((g, [x]) => buildFarl(g, w, x!), [{ shape: [1, 3, 16, 16] }], {
      eps: 1e-2,
      directions: 3,
    });
    expect(r.maxRelErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(1e-2);
  });
});

describe('FaRL graph building', () => {
  it('two encoders in one graph share every weight initializer', () => {
    const w = loadFarlWeights(tinyMap(TINY), { config: TINY });
    const g = new E.Graph('two');
    const a = g.input('a', [1, 3, 16, 16]);
    const b = g.input('b', [1, 3, 16, 16]);
    const ta = buildFarl(g, w, a);
    const after1 = g.initializers.size;
    const tb = buildFarl(g, w, b);
    expect(ta.shape).toEqual([1, 5, 16]);
    expect(tb.shape).toEqual([1, 5, 16]);
    const big = [...g.initializers.values()].filter((i) => i.data.length > 16 * 3).length;
    expect(big).toBeGreaterThan(0);
    // Only small shape/axis constants may be new; no weight is duplicated.
    const newBig = [...g.initializers.values()].slice(after1).filter((i) => i.data.length > 16);
    expect(newBig).toEqual([]);
  });

  it('rejects an input of the wrong size', () => {
    const w = loadFarlWeights(tinyMap(TINY), { config: TINY });
    const g = new E.Graph('bad');
    expect(() => buildFarl(g, w, g.input('x', [1, 3, 32, 32]))).toThrow(/must be float32 \[N, 3, 16, 16\]/);
  });
});

describe('FaRL weight loading', () => {
  const cfg = { config: TINY };

  it('accepts visual.*, state_dict.visual.*, module.visual.* and bare keys; ignores the text tower', () => {
    const base = tinyMap(TINY);
    const variants: Map<string, Tensor>[] = [
      base,
      tinyMap(TINY, 'state_dict.visual.'),
      tinyMap(TINY, 'module.visual.'),
      tinyMap(TINY, 'state_dict.module.visual.'),
      tinyMap(TINY, ''),
    ];
    variants[1]!.set(
      'state_dict.transformer.resblocks.0.ln_1.weight',
      makeTensor('float32', [3], new Float32Array(3)),
    );
    variants[1]!.set('state_dict.logit_scale', makeTensor('float32', [], new Float32Array(1)));
    for (const m of variants) {
      const w = loadFarlWeights(m, cfg);
      expect(w.ignored).toEqual([]);
      expect(w.tensors.get('conv1.weight')!.data).toEqual(base.get('visual.conv1.weight')!.data);
    }
  });

  it('lists every missing key and every wrong shape in one error', () => {
    const m = tinyMap(TINY);
    m.delete('visual.transformer.resblocks.1.mlp.c_fc.bias');
    m.delete('visual.class_embedding');
    m.set('visual.ln_pre.weight', makeTensor('float32', [15], new Float32Array(15)));
    let err: unknown;
    try {
      loadFarlWeights(m, cfg);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FarlWeightsError);
    const e = err as FarlWeightsError;
    expect([...e.missing].sort()).toEqual([
      'visual.class_embedding',
      'visual.transformer.resblocks.1.mlp.c_fc.bias',
    ]);
    expect(e.badShapes).toEqual(['visual.ln_pre.weight: expected [16], got [15]']);
    expect(e.message).toMatch(/missing 2 key\(s\).*visual\.class_embedding/);
    expect(e.message).toMatch(
      /wrong shape\/dtype for 1 key\(s\): visual\.ln_pre\.weight: expected \[16\], got \[15\]/,
    );
  });

  it('reports unknown visual.* keys; fails on them only when strict', () => {
    const m = tinyMap(TINY);
    m.set('visual.mask_token', makeTensor('float32', [16], new Float32Array(16)));
    expect(loadFarlWeights(m, cfg).ignored).toEqual(['visual.mask_token']);
    expect(() => loadFarlWeights(m, { ...cfg, strict: true })).toThrow(
      /unexpected 1 key\(s\): visual\.mask_token/,
    );
  });

  it('ln_post / proj are optional but shape-checked', () => {
    const m = tinyMap(TINY);
    m.delete('visual.proj');
    m.delete('visual.ln_post.weight');
    expect(() => loadFarlWeights(m, cfg)).not.toThrow();
    m.set('visual.proj', makeTensor('float32', [4, 16], new Float32Array(64)));
    expect(() => loadFarlWeights(m, cfg)).toThrow(/visual\.proj: expected \[16, 4\], got \[4, 16\]/);
  });

  it('two source keys for one weight (visual.* and module.visual.*) are an error naming both', () => {
    const m = tinyMap(TINY);
    m.set('module.visual.conv1.weight', m.get('visual.conv1.weight')!);
    expect(() => loadFarlWeights(m, cfg)).toThrow(
      /keys visual\.conv1\.weight and module\.visual\.conv1\.weight both give/,
    );
  });

  it('a map without any FaRL key says what it expected and what it got', () => {
    const m = new Map<string, Tensor>([
      ['encoder.conv.weight', makeTensor('float32', [1], new Float32Array(1))],
    ]);
    expect(() => loadFarlWeights(m, cfg)).toThrow(
      /no FaRL visual-encoder weights found.*such as encoder\.conv\.weight/,
    );
  });

  it('rejects integer tensors and converts float16 to float32', () => {
    const m = tinyMap(TINY);
    m.set('visual.ln_pre.bias', makeTensor('int64', [16], new BigInt64Array(16)));
    expect(() => loadFarlWeights(m, cfg)).toThrow(
      /visual\.ln_pre\.bias: expected a floating-point tensor, got int64/,
    );
    const half = Uint16Array.from({ length: 16 }, (_, i) => numberToHalfBits(i / 4));
    m.set('visual.ln_pre.bias', makeTensor('float16', [16], half));
    expect(Array.from(loadFarlWeights(m, cfg).tensors.get('ln_pre.bias')!.data)).toEqual(
      Array.from({ length: 16 }, (_, i) => i / 4),
    );
  });

  it('a ViT-B/32 checkpoint is inferred as such, and named precisely against an explicit B/16 config', () => {
    const m = new Map<string, Tensor>();
    for (const [k, { shape }] of farlWeightShapes())
      m.set(`visual.${k}`, { dtype: 'float32', shape, data: new Float32Array(0) } as Tensor);
    m.set('visual.conv1.weight', {
      dtype: 'float32',
      shape: [768, 3, 32, 32],
      data: new Float32Array(0),
    } as Tensor);
    m.set('visual.positional_embedding', {
      dtype: 'float32',
      shape: [50, 768],
      data: new Float32Array(0),
    } as Tensor);
    expect(inferFarlConfig(m)).toEqual({ ...FARL_VITB16, patch: 32 });
    expect(() => loadFarlWeights(m, { config: FARL_VITB16 })).toThrow(
      /wrong shape\/dtype for 2 key\(s\): visual\.positional_embedding: expected \[197, 768\], got \[50, 768\], visual\.conv1\.weight: expected \[768, 3, 16, 16\], got \[768, 3, 32, 32\]/,
    );
  });

  describe('from a .pth checkpoint', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'farl-'));
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));

    it('loadFarlCheckpoint reads state_dict.visual.* and skips the text tower', async () => {
      const sd = tinyMap(TINY);
      sd.set('token_embedding.weight', makeTensor('float32', [7, 3], new Float32Array(21)));
      const file = join(tmp, 'farl_tiny.pth');
      await saveCheckpoint(file, { state_dict: sd, epoch: 64 });
      const w = await loadFarlCheckpoint(file, cfg);
      expect(w.tensors.get('transformer.resblocks.1.attn.in_proj_weight')!.data).toEqual(
        tinyMap(TINY).get('visual.transformer.resblocks.1.attn.in_proj_weight')!.data,
      );
      expect(farlCheckpointSelect('state_dict.visual.conv1.weight')).toBe(true);
      expect(farlCheckpointSelect('state_dict.token_embedding.weight')).toBe(false);
    });
  });
});

// ------------------------------------------------------------------------ small (demo) sizes

describe('FaRL configuration inferred from the shapes', () => {
  const shapesOnly = (cfg?: FarlConfig) => {
    const m = new Map<string, Tensor>();
    for (const [k, { shape }] of farlWeightShapes(cfg))
      m.set(`visual.${k}`, { dtype: 'float32', shape, data: new Float32Array(0) } as Tensor);
    return m;
  };
  const demoMap = () => new Map(farlLayout(DEMO_SIZES).map((e) => [e.key, specTensor(e) as Tensor]));

  it('ViT-B/16 shapes give exactly FARL_VITB16 (12 heads of 64, MLP 4W)', () => {
    expect(inferFarlConfig(shapesOnly())).toEqual(FARL_VITB16);
  });

  it('the demo layout: width 64, 2 blocks, 1 head, still 197 tokens at 224 px', () => {
    const w = loadFarlWeights(demoMap(), { strict: true });
    expect(w.config).toEqual({ resolution: 224, patch: 16, width: 64, layers: 2, heads: 1, outputDim: 512 });
    const g = new E.Graph('farl-demo');
    expect(buildFarl(g, w, g.input('x', [1, 3, 224, 224])).shape).toEqual([1, 197, 64]);
  });

  it('demo encoder: input gradient matches central finite differences', async () => {
    const w = loadFarlWeights(demoMap());
    const r = await gradCheck((g, [x]) => buildFarl(g, w, x!), [{ shape: [1, 3, 224, 224] }], {
      eps: 1e-2,
      directions: 3,
    });
    expect(r.maxRelErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(1e-2);
    expect(Math.max(...r.analytic.map(Math.abs))).toBeGreaterThan(1e-3);
  });

  it('heads follow CLIP (W / 64, at least 1), a non-4W MLP is read from c_fc, B/32-style grids work', () => {
    const cfg: FarlConfig = {
      resolution: 64,
      patch: 32,
      width: 128,
      layers: 3,
      heads: 2,
      outputDim: 8,
      mlpWidth: 96,
    };
    expect(inferFarlConfig(shapesOnly(cfg))).toEqual(cfg);
    const narrow: FarlConfig = { ...TINY, heads: 1 };
    expect(inferFarlConfig(tinyMap(TINY))).toEqual(narrow);
  });

  it('an inconsistent small checkpoint: the odd tensor is named against the inferred config', () => {
    const m = demoMap();
    m.set(
      'visual.transformer.resblocks.1.mlp.c_fc.weight',
      makeTensor('float32', [128, 64], new Float32Array(128 * 64)),
    );
    m.set('visual.ln_pre.weight', makeTensor('float32', [48], new Float32Array(48)));
    expect(() => loadFarlWeights(m)).toThrow(
      /^FaRL ViT \(width 64, 2 layers, patch 16, 224 px, inferred from the shapes\) weights do not fit: wrong shape\/dtype for 2 key\(s\): visual\.ln_pre\.weight: expected \[64\], got \[48\], visual\.transformer\.resblocks\.1\.mlp\.c_fc\.weight: expected \[256, 64\], got \[128, 64\]$/,
    );
  });

  it('an explicit config is checked against the shapes; impossible grids and head splits are refused', () => {
    expect(() => loadFarlWeights(demoMap(), { config: FARL_VITB16 })).toThrow(
      /missing 120 key\(s\): visual\.transformer\.resblocks\.2\..*wrong shape\/dtype for .*visual\.class_embedding: expected \[768\], got \[64\]/,
    );
    const m = demoMap();
    m.set('visual.positional_embedding', makeTensor('float32', [150, 64], new Float32Array(150 * 64)));
    expect(() => loadFarlWeights(m)).toThrow(
      /positional_embedding has 150 rows: not a class token plus a square grid/,
    );
    expect(() => inferFarlConfig(shapesOnly({ ...FARL_VITB16, width: 200, heads: 1 }))).not.toThrow();
    expect(() => loadFarlWeights(shapesOnly({ ...FARL_VITB16, width: 200, heads: 1 }))).toThrow(
      /bad FaRL config .*width 200 is not divisible by 3 heads/,
    );
  });
});
