/**
 * The FALCO step model's wiring, on demo-size networks (same code as production, small widths): the
 * mask keeps non-trainable rows exactly, the in-graph Adam update equals PyTorch's rule applied to the
 * model's own gradient, the loss is λ_id·id + λ_attr·attr, and the gradient matches finite differences
 * of the model's own loss.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { onnx } from '../../models/engine/proto.js';
import { DEMO_SIZES, arcfaceLayout, farlLayout, generatorLayout } from '../../models/bundle/demo-weights.js';
import { buildStepGraph, buildTargetsGraph, falcoWeightsFromStepMaps } from '../../models/falco/graphs.js';
import { specTensor } from '../../models/fixtures/spec.js';
import { rand } from '../helpers/gradcheck.js';

const mapOf = (entries: ReturnType<typeof generatorLayout>) =>
  new Map(entries.map((e) => [e.key, specTensor(e)]));

describe('step.onnx (demo sizes)', async () => {
  const w = falcoWeightsFromStepMaps({
    generator: mapOf(generatorLayout(DEMO_SIZES)),
    arcface: mapOf(arcfaceLayout(DEMO_SIZES)),
    farl: mapOf(farlLayout(DEMO_SIZES)),
  });
  const N = DEMO_SIZES.generator.resolution;
  const L = 10;
  const D = 512;
  const targets = await E.Session.create(E.toBytes(buildTargetsGraph(w)));
  const tgt = await targets.run({ image: rand(3 * N * N, 3, -1, 1) }, ['id', 'tokens']);
  const step = await E.Session.create(E.toBytes(buildStepGraph(w, { withGrad: true })));
  const real = rand(L * D, 11, -1, 1);
  const t = real.slice();
  t.set(rand(5 * D, 12, -1, 1), 3 * D);
  const mask = new Float32Array(L).map((_, i) => (i >= 3 && i < 8 ? 1 : 0));
  const m = rand(L * D, 13, -0.01, 0.01).map((x, i) => (mask[Math.floor(i / D)] ? x : 0));
  const v = rand(L * D, 14, 0, 1e-4).map((x, i) => (mask[Math.floor(i / D)] ? x : 0));
  const k = 3; // Adam step number
  const [bc1, bc2] = E.adamBiasCorrections(k);
  const feeds = (tt: Float32Array) => ({
    t: tt,
    real,
    mask,
    m,
    v,
    lr: Float32Array.of(0.01),
    bc1: Float32Array.of(bc1),
    bc2: Float32Array.of(bc2),
    target_id: tgt.id!.data,
    target_tokens: tgt.tokens!.data,
    margin: Float32Array.of(0.2),
    lambda_id: Float32Array.of(10),
    lambda_attr: Float32Array.of(0.1),
  });
  const out = await step.run(feeds(t));
  const grad = out.grad!.data;

  it('rows outside the trainable range get no gradient and stay exactly as they are', () => {
    for (let i = 0; i < L * D; i++) {
      if (mask[Math.floor(i / D)]) continue;
      expect(grad[i] === 0).toBe(true); // ±0
      expect(out.t_next!.data[i]).toBe(t[i]);
    }
    const inside = grad.slice(3 * D, 8 * D);
    expect(Math.max(...inside.map(Math.abs))).toBeGreaterThan(0);
  });

  it('the in-graph update is torch.optim.Adam applied to the model’s own gradient', () => {
    for (let i = 3 * D; i < 8 * D; i++) {
      const g = grad[i]!;
      const m1 = 0.9 * m[i]! + 0.1 * g;
      const v1 = 0.999 * v[i]! + 0.001 * g * g;
      const p1 = t[i]! - (0.01 / bc1) * (m1 / (Math.sqrt(v1) / bc2 + 1e-8));
      expect(out.m_next!.data[i]).toBeCloseTo(m1, 6);
      expect(out.v_next!.data[i]).toBeCloseTo(v1, 9);
      expect(Math.abs(out.t_next!.data[i]! - p1)).toBeLessThan(1e-6);
    }
  });

  it('loss = λ_id·id_loss + λ_attr·attr_loss, both non-negative', () => {
    const [loss, id, attr] = [out.loss!.data[0]!, out.id_loss!.data[0]!, out.attr_loss!.data[0]!];
    expect(id).toBeGreaterThanOrEqual(0);
    expect(attr).toBeGreaterThan(0);
    expect(loss).toBeCloseTo(10 * id + 0.1 * attr, 4);
  });

  it('the gradient matches central finite differences of the model’s own loss', async () => {
    // The L1 attribute loss and the leaky ReLUs are piecewise smooth: a finite difference crosses a few
    // kinks, which costs ~1e-3 of the gradient's scale in absolute terms. Errors are therefore measured
    // against the typical directional derivative (a wrong VJP is off by O(1) of it).
    const lossAt = async (tt: Float32Array) => (await step.run(feeds(tt), ['loss'])).loss!.data[0]!;
    const eps = 1e-3;
    const pairs: Array<[number, number]> = [];
    for (let d = 0; d < 4; d++) {
      const dir = rand(L * D, 100 + d, -1, 1).map((x, i) => (mask[Math.floor(i / D)] ? x : 0));
      const analytic = dir.reduce((s, x, i) => s + x * grad[i]!, 0);
      const numeric =
        ((await lossAt(t.map((x, i) => x + eps * dir[i]!))) -
          (await lossAt(t.map((x, i) => x - eps * dir[i]!)))) /
        (2 * eps);
      pairs.push([analytic, numeric]);
    }
    const scale = pairs.reduce((s, [a]) => s + Math.abs(a), 0) / pairs.length;
    for (const [a, n] of pairs)
      expect(Math.abs(a - n) / scale, `analytic ${a} vs numeric ${n}`).toBeLessThan(2e-2);
  });

  it('with gradRows [3, 8) the backward differentiates only the styles of rows 3–7', () => {
    // A style weight is read once by the forward and once more by the backward if its row's gradient is
    // computed. Rows outside [3, 8) must not be: their style gradients would be dropped anyway, and
    // computing them keeps full-resolution activations alive until the backward (the full-size step's
    // peak RSS fell from 4.27 to 3.12 GiB when they went).
    const model = onnx.ModelProto.decode(E.toBytes(buildStepGraph(w, { gradRows: [3, 8] })));
    const readers = (init: string) =>
      model.graph!.node!.filter((n) => n.input!.some((i) => i === init)).length;
    const rows: Array<[string, number]> = [];
    for (const init of model.graph!.initializer!.map((i) => i.name!)) {
      const conv = /^synthesis\.layer(\d+)\.style\.weight(?:_T)?$/.exec(init);
      const rgb = /^synthesis\.output(\d+)\.style\.weight(?:_T)?$/.exec(init);
      if (conv) rows.push([init, Number(conv[1])]);
      if (rgb) rows.push([init, 2 * Number(rgb[1]) + 1]);
    }
    expect(rows.length).toBe(L + 4); // 9 conv layers + 5 ToRGB at demo size (rows 0–9)
    for (const [init, row] of rows) expect(readers(init), init).toBe(row >= 3 && row < 8 ? 2 : 1);
  });
});
