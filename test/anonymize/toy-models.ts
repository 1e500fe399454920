/**
 * Tiny stand-ins for the five FALCO models with exactly the contract's tensor names and layouts, built
 * with our engine (so the step's backward pass and Adam are real graph autodiff, just on a toy "G").
 * They let the runtime, pool, pipeline and CLI be tested end to end in a second, independently of the
 * network graphs. Everything is a deterministic pattern.
 *
 *   G(w)     = upsample(tanh(flatten(w) · A)) : [1,L,512] → [1,3,N,N] (an 8×8 image upsampled)
 *   id(x)    = normalise(pool8(x) · B)
 *   tok(x)   = reshape(pool4(x) · C) : [1,T,D];   farl(x) = normalise(mean_T(tok(x)) · P)
 */
import * as E from '../../models/engine/index.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { join } from 'node:path';
import { MODEL_FILES } from '../../models/falco/contract.js';

export interface ToyOptions {
  resolution?: number;
  tokens?: [number, number];
}

export async function writeToyModels(dir: string, o: ToyOptions = {}): Promise<void> {
  const N = o.resolution ?? 32;
  const L = 2 * Math.log2(N) - 2;
  const [T, D] = o.tokens ?? [197, 8];
  const g8 = 8;
  const A = pattern('toy.A', L * 512 * 3 * g8 * g8, -0.05, 0.05);
  const B = pattern('toy.B', 3 * 64 * 512, -1, 1);
  const C = pattern('toy.C', 48 * T * D, -1, 1);
  const P = pattern('toy.P', D * 512, -1, 1);

  const G = (g: E.Graph, w: E.Tensor): E.Tensor => {
    const a = g.constant(A, [L * 512, 3 * g8 * g8], 'A');
    const small = E.reshape(E.tanh(E.matmul(E.reshape(w, [1, L * 512]), a)), [1, 3, g8, g8]);
    return E.resizeBilinear(small, N, N);
  };
  const l2 = (x: E.Tensor) => E.div(x, E.sqrt(E.reduceSum(E.mul(x, x), [1], true)));
  const idNet = (g: E.Graph, x: E.Tensor) =>
    l2(E.matmul(E.reshape(E.adaptiveAvgPool2d(x, 8), [1, 192]), g.constant(B, [192, 512], 'B')));
  const tokNet = (g: E.Graph, x: E.Tensor) =>
    E.reshape(E.matmul(E.reshape(E.adaptiveAvgPool2d(x, 4), [1, 48]), g.constant(C, [48, T * D], 'C')), [
      1,
      T,
      D,
    ]);

  {
    const g = new E.Graph('toy_render');
    g.output(G(g, g.input('wp', [1, L, 512])), 'image');
    E.save(g, join(dir, MODEL_FILES.render));
  }
  {
    const g = new E.Graph('toy_targets');
    const x = g.input('image', [1, 3, N, N]);
    const tok = tokNet(g, x);
    g.output(idNet(g, x), 'id');
    g.output(tok, 'tokens');
    g.output(l2(E.matmul(E.reduceMean(tok, [1]), g.constant(P, [D, 512], 'P'))), 'farl');
    E.save(g, join(dir, MODEL_FILES.targets));
  }
  {
    const g = new E.Graph('toy_encoder');
    const x = g.input('image', [1, 3, 256, 256]);
    const enc = g.constant(pattern('toy.enc', 192 * L * 512, -1, 1), [192, L * 512], 'enc');
    g.output(E.reshape(E.matmul(E.reshape(E.adaptiveAvgPool2d(x, 8), [1, 192]), enc), [1, L, 512]), 'wplus');
    E.save(g, join(dir, MODEL_FILES.encoder));
  }
  {
    const g = new E.Graph('toy_mapping');
    const z = g.input('z', [1, 512]);
    const psi = g.input('psi', []);
    const w = E.tanh(E.matmul(z, g.constant(pattern('toy.map', 512 * 512, -0.1, 0.1), [512, 512], 'map')));
    const avg = g.constant(pattern('toy.avg', 512, -0.2, 0.2), [1, 1, 512], 'avg');
    const wp = E.expand(E.reshape(w, [1, 1, 512]), [1, L, 512]);
    g.output(E.add(avg, E.mul(E.sub(wp, avg), psi)), 'wp');
    E.save(g, join(dir, MODEL_FILES.mapping));
  }
  {
    const g = new E.Graph('toy_step');
    const t = g.input('t', [1, L, 512]);
    const real = g.input('real', [1, L, 512]);
    const mask = g.input('mask', [1, L, 1]);
    const m = g.input('m', [1, L, 512]);
    const v = g.input('v', [1, L, 512]);
    const lr = g.input('lr', []);
    const bc1 = g.input('bc1', []);
    const bc2 = g.input('bc2', []);
    const tid = g.input('target_id', [1, 512]);
    const ttok = g.input('target_tokens', [1, T, D]);
    const margin = g.input('margin', []);
    const lid = g.input('lambda_id', []);
    const lat = g.input('lambda_attr', []);
    const w = E.add(E.mul(mask, t), E.mul(E.sub(1, mask), real));
    const img = G(g, w);
    const idLoss = E.abs(E.sub(E.reduceSum(E.mul(idNet(g, img), tid)), margin));
    const attr = E.reduceSum(E.reduceMean(E.abs(E.sub(tokNet(g, img), ttok)), [2]));
    const loss = E.add(E.mul(lid, idLoss), E.mul(lat, attr));
    const [gt] = E.grad(loss, [t]);
    const up = E.adamStep(t, gt!, m, v, lr, bc1, bc2);
    g.output(up.p, 't_next');
    g.output(up.m, 'm_next');
    g.output(up.v, 'v_next');
    g.output(loss, 'loss');
    g.output(idLoss, 'id_loss');
    g.output(attr, 'attr_loss');
    E.save(g, join(dir, MODEL_FILES.step));
  }
}
