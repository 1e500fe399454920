/**
 * Batched faces: the step, targets, render and encoder models built for B faces give each face what B
 * single-face runs give it (to float32 noise: batched kernels may block their sums differently), with
 * per-face masks, margins, λs, learning rates and Adam states; a face fed lr 0 stays exactly where it is
 * while the others move on. Demo-size networks (the same code as production, small widths).
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import {
  DEMO_SIZES,
  arcfaceLayout,
  e4eLayout,
  farlLayout,
  generatorLayout,
} from '../../models/bundle/demo-weights.js';
import {
  buildEncoderGraph,
  buildRenderGraph,
  buildStepGraph,
  buildTargetsGraph,
  falcoWeightsFromMaps,
} from '../../models/falco/graphs.js';
import { specTensor } from '../../models/fixtures/spec.js';
import { rand } from '../helpers/gradcheck.js';

const mapOf = (entries: ReturnType<typeof generatorLayout>) =>
  new Map(entries.map((e) => [e.key, specTensor(e)]));

/** max |a − b| / max |b|: float32 noise is ~1e-7, a wrong face or row is O(1). */
const relMax = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / (s || 1);
};

const stack = (xs: Float32Array[]): Float32Array => {
  const out = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of xs) out.set(x, (o += x.length) - x.length);
  return out;
};
const part = (x: Float32Array, b: number, B: number): Float32Array => {
  const n = x.length / B;
  return x.slice(b * n, (b + 1) * n);
};

describe('batched faces (demo sizes)', async () => {
  const w = falcoWeightsFromMaps({
    generator: mapOf(generatorLayout(DEMO_SIZES)),
    arcface: mapOf(arcfaceLayout(DEMO_SIZES)),
    farl: mapOf(farlLayout(DEMO_SIZES)),
    e4e: mapOf(e4eLayout(DEMO_SIZES)),
  });
  const N = DEMO_SIZES.generator.resolution;
  const L = 10;
  const D = 512;
  const B = 3;
  const gradRows: [number, number] = [2, 8];
  const session = (g: E.Graph) => E.Session.create(E.toBytes(g));
  const [targets1, targetsB, step1, stepB] = await Promise.all([
    session(buildTargetsGraph(w)),
    session(buildTargetsGraph(w, N, B)),
    session(buildStepGraph(w, { withGrad: true, gradRows })),
    session(buildStepGraph(w, { withGrad: true, gradRows, batch: B })),
  ]);

  const images = [0, 1, 2].map((b) => rand(3 * N * N, 30 + b, -1, 1));
  const single = await Promise.all(images.map((im) => targets1.run({ image: im })));
  const batched = await targetsB.run({ image: stack(images) });

  it('targets: each face of a batch gets its single-face id, tokens and FaRL embedding', () => {
    for (const k of ['id', 'tokens', 'farl'])
      for (let b = 0; b < B; b++)
        expect(relMax(part(batched[k]!.data, b, B), single[b]![k]!.data), `${k} face ${b}`).toBeLessThan(
          1e-5,
        );
  });

  // Three faces with different codes, trainable rows, Adam states and settings; face 2 has stopped (lr 0).
  const layers: Array<[number, number]> = [
    [3, 8],
    [2, 5],
    [4, 6],
  ];
  const faces = layers.map(([a, b], f) => {
    const mask = new Float32Array(L).map((_, i) => (i >= a && i < b ? 1 : 0));
    const inMask = (x: Float32Array) => x.map((v, i) => (mask[Math.floor(i / D)] ? v : 0));
    return {
      t: rand(L * D, 40 + f, -1, 1),
      real: rand(L * D, 50 + f, -1, 1),
      mask,
      m: inMask(rand(L * D, 60 + f, -0.01, 0.01)),
      v: inMask(rand(L * D, 70 + f, 0, 1e-4)),
      lr: [0.01, 0.02, 0][f]!,
      k: [3, 7, 2][f]!,
      margin: [0, 0.2, -0.4][f]!,
      lambdaId: [10, 20, 5][f]!,
      lambdaAttr: [0.1, 0.2, 0.05][f]!,
    };
  });
  const feed = (fs: typeof faces, tg: Array<Record<string, E.Output>>) => {
    const bc = fs.map((f) => E.adamBiasCorrections(f.k));
    return {
      t: stack(fs.map((f) => f.t)),
      real: stack(fs.map((f) => f.real)),
      mask: stack(fs.map((f) => f.mask)),
      m: stack(fs.map((f) => f.m)),
      v: stack(fs.map((f) => f.v)),
      lr: Float32Array.from(fs.map((f) => f.lr)),
      bc1: Float32Array.from(bc.map((c) => c[0])),
      bc2: Float32Array.from(bc.map((c) => c[1])),
      target_id: stack(tg.map((t) => t.id!.data)),
      target_tokens: stack(tg.map((t) => t.tokens!.data)),
      margin: Float32Array.from(fs.map((f) => f.margin)),
      lambda_id: Float32Array.from(fs.map((f) => f.lambdaId)),
      lambda_attr: Float32Array.from(fs.map((f) => f.lambdaAttr)),
    };
  };
  const one = await Promise.all(faces.map((f, b) => step1.run(feed([f], [single[b]!]))));
  const all = await stepB.run(feed(faces, single));

  it('step: each face gets its single-face losses, gradient and Adam update', () => {
    for (let b = 0; b < B; b++) {
      for (const k of ['loss', 'id_loss', 'attr_loss', 'grad', 't_next', 'm_next', 'v_next'])
        expect(relMax(part(all[k]!.data, b, B), one[b]![k]!.data), `${k} face ${b}`).toBeLessThan(1e-5);
      // …and it is a different result for each face (a batch that mixed faces up would not be).
      if (b > 0) expect(relMax(one[b]!.grad!.data, one[0]!.grad!.data)).toBeGreaterThan(0.1);
    }
  });

  it('step: rows outside each face’s mask get no gradient; a face at lr 0 does not move', () => {
    for (let b = 0; b < B; b++) {
      const grad = part(all.grad!.data, b, B);
      const tNext = part(all.t_next!.data, b, B);
      for (let i = 0; i < L * D; i++)
        if (!faces[b]!.mask[Math.floor(i / D)]) {
          expect(grad[i] === 0).toBe(true);
          expect(tNext[i]).toBe(faces[b]!.t[i]);
        }
    }
    expect(part(all.t_next!.data, 2, B)).toEqual(faces[2]!.t);
    expect(relMax(part(all.t_next!.data, 0, B), faces[0]!.t)).toBeGreaterThan(1e-4);
  });

  it('render and encoder: each face of a batch gets its single-face output', async () => {
    const [r1, rB, e1, eB] = await Promise.all([
      session(buildRenderGraph(w)),
      session(buildRenderGraph(w, 2)),
      session(buildEncoderGraph(w)),
      session(buildEncoderGraph(w, 2)),
    ]);
    const codes = [faces[0]!.t, faces[1]!.t];
    const rs = await Promise.all(codes.map((wp) => r1.run({ wp })));
    const rb = await rB.run({ wp: stack(codes) });
    const crops = [0, 1].map((b) => rand(3 * 256 * 256, 80 + b, -1, 1));
    const es = await Promise.all(crops.map((image) => e1.run({ image })));
    const eb = await eB.run({ image: stack(crops) });
    for (let b = 0; b < 2; b++) {
      expect(relMax(part(rb.image!.data, b, 2), rs[b]!.image!.data)).toBeLessThan(1e-5);
      expect(relMax(part(eb.wplus!.data, b, 2), es[b]!.wplus!.data)).toBeLessThan(1e-5);
    }
  });
});
