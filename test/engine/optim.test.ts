/** Adam and SGD graph updates equal PyTorch's update rules on hand-computed cases. */
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';

async function adamModel(opts: E.AdamOptions) {
  const g = new E.Graph('adam');
  const p = g.input('p', [3]);
  const gr = g.input('g', [3]);
  const m = g.input('m', [3]);
  const v = g.input('v', [3]);
  const lr = g.input('lr', []);
  const bc1 = g.input('bc1', []);
  const bc2 = g.input('bc2', []);
  const r = E.adamStep(p, gr, m, v, lr, bc1, bc2, opts);
  g.output(r.p, 'p1');
  g.output(r.m, 'm1');
  g.output(r.v, 'v1');
  return E.Session.create(E.toBytes(g), { provider: 'cpu' });
}

describe('Adam (PyTorch semantics)', () => {
  it('matches torch.optim.Adam over three steps, including bias correction', async () => {
    const s = await adamModel({});
    // Hand computation with torch's formulas in float64, for p0 = [1, -2, 0.5], lr = 0.1,
    // gradients g1 = [0.5, -1, 2], g2 = [0.1, 0.2, -0.3], g3 = [-1, 0, 1].
    const grads = [
      [0.5, -1, 2],
      [0.1, 0.2, -0.3],
      [-1, 0, 1],
    ];
    let p = [1, -2, 0.5];
    let m = [0, 0, 0];
    let v = [0, 0, 0];
    let fp: Float32Array = Float32Array.from(p);
    let fm: Float32Array = new Float32Array(3);
    let fv: Float32Array = new Float32Array(3);
    for (let t = 1; t <= 3; t++) {
      const g = grads[t - 1]!;
      m = m.map((mi, i) => 0.9 * mi + 0.1 * g[i]!);
      v = v.map((vi, i) => 0.999 * vi + 0.001 * g[i]! ** 2);
      const bc1 = 1 - 0.9 ** t;
      const bc2 = 1 - 0.999 ** t;
      p = p.map((pi, i) => pi - (0.1 / bc1) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + 1e-8)));
      const [c1, c2] = E.adamBiasCorrections(t);
      const out = await s.run({
        p: fp,
        g: Float32Array.from(g),
        m: fm,
        v: fv,
        lr: Float32Array.of(0.1),
        bc1: Float32Array.of(c1),
        bc2: Float32Array.of(c2),
      });
      fp = out.p1!.data;
      fm = out.m1!.data;
      fv = out.v1!.data;
      for (let i = 0; i < 3; i++) expect(fp[i]).toBeCloseTo(p[i]!, 5);
    }
    // Adam's first step moves every coordinate by ≈ lr·sign(g): a sanity anchor independent of the formula above.
    expect(p[0]).toBeLessThan(1);
  });

  it('first step is lr·sign(grad) (the known closed form)', async () => {
    const s = await adamModel({});
    const [c1, c2] = E.adamBiasCorrections(1);
    const out = await s.run({
      p: Float32Array.of(0, 0, 0),
      g: Float32Array.of(3, -0.001, 50),
      m: new Float32Array(3),
      v: new Float32Array(3),
      lr: Float32Array.of(0.01),
      bc1: Float32Array.of(c1),
      bc2: Float32Array.of(c2),
    });
    expect([...out.p1!.data].map((x) => +x.toFixed(6))).toEqual([-0.01, 0.01, -0.01]);
  });

  it('weight decay adds wd·p to the gradient (L2, not decoupled)', async () => {
    const s = await adamModel({ weightDecay: 0.5 });
    const [c1, c2] = E.adamBiasCorrections(1);
    const out = await s.run({
      p: Float32Array.of(2, 2, 2),
      g: Float32Array.of(-1, 0, 1),
      m: new Float32Array(3),
      v: new Float32Array(3),
      lr: Float32Array.of(1),
      bc1: Float32Array.of(c1),
      bc2: Float32Array.of(c2),
    });
    // effective grads 0, 1, 2 → m = 0.1·g, first step = −sign → p = [2, 1, 1]
    expect([...out.m1!.data].map((x) => +x.toFixed(6))).toEqual([0, 0.1, 0.2]);
    expect([...out.p1!.data].map((x) => +x.toFixed(5))).toEqual([2, 1, 1]);
  });
});

describe('SGD (PyTorch semantics)', () => {
  it('momentum buffer starts at the first gradient, then μ·buf + g', async () => {
    const g = new E.Graph('sgd');
    const p = g.input('p', [2]);
    const gr = g.input('g', [2]);
    const buf = g.input('buf', [2]);
    const first = g.input('first', []);
    const lr = g.input('lr', []);
    const r = E.sgdStep(p, gr, lr, { momentum: 0.9, buf, first });
    g.output(r.p, 'p1');
    g.output(r.buf!, 'buf1');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    let o = await s.run({
      p: Float32Array.of(1, 1),
      g: Float32Array.of(1, -2),
      buf: Float32Array.of(99, 99),
      first: Float32Array.of(1),
      lr: Float32Array.of(0.1),
    });
    expect([...o.buf1!.data]).toEqual([1, -2]);
    expect([...o.p1!.data].map((x) => +x.toFixed(6))).toEqual([0.9, 1.2]);
    o = await s.run({
      p: o.p1!.data,
      g: Float32Array.of(1, 1),
      buf: o.buf1!.data,
      first: Float32Array.of(0),
      lr: Float32Array.of(0.1),
    });
    // buf = 0.9·[1,−2] + [1,1] = [1.9, −0.8]; p = [0.9−0.19, 1.2+0.08]
    expect([...o.buf1!.data].map((x) => +x.toFixed(6))).toEqual([1.9, -0.8]);
    expect([...o.p1!.data].map((x) => +x.toFixed(6))).toEqual([0.71, 1.28]);
  });
});

describe('MultiStepLR', () => {
  it('FALCO schedule: ×0.8 at 75% and 90% of 50 steps', () => {
    const ms = [Math.floor(0.75 * 50), Math.floor(0.9 * 50)];
    expect(E.multiStepLR(0.01, ms, 0.8, 0)).toBeCloseTo(0.01, 12);
    expect(E.multiStepLR(0.01, ms, 0.8, 36)).toBeCloseTo(0.01, 12);
    expect(E.multiStepLR(0.01, ms, 0.8, 37)).toBeCloseTo(0.008, 12);
    expect(E.multiStepLR(0.01, ms, 0.8, 45)).toBeCloseTo(0.0064, 12);
  });
});
