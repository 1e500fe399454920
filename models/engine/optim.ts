/**
 * Optimizers as graph ops, so a single session.run does forward + backward + update. State (moments,
 * step count) and the learning rate are graph inputs; the host owns the schedule (MultiStepLR).
 */
import type { Tensor } from './graph.js';
import { add, div, mul, sqrt, sub } from './ops/elementwise.js';

export interface AdamOptions {
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/**
 * torch.optim.Adam (amsgrad=False, maximize=False), one step:
 *   g ← g + wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
 *   p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps)
 * `step` is t (1-based, after increment) as a float scalar input; `biasCorrections` are fed from the
 * host as [1−β1^t, √(1−β2^t)] to avoid Pow on a tensor exponent.
 */
export function adamStep(
  p: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  lr: Tensor,
  bc1: Tensor,
  bc2Sqrt: Tensor,
  o: AdamOptions = {},
): { p: Tensor; m: Tensor; v: Tensor } {
  const [b1, b2] = o.betas ?? [0.9, 0.999];
  const eps = o.eps ?? 1e-8;
  const gr = o.weightDecay ? add(grad, mul(p, o.weightDecay)) : grad;
  const m1 = add(mul(m, b1), mul(gr, 1 - b1));
  const v1 = add(mul(v, b2), mul(mul(gr, gr), 1 - b2));
  const denom = add(div(sqrt(v1), bc2Sqrt), eps);
  const p1 = sub(p, mul(div(lr, bc1), div(m1, denom)));
  return { p: p1, m: m1, v: v1 };
}

/** Host-side bias corrections for step t (1-based). Computed in float64 like PyTorch's Python floats. */
export function adamBiasCorrections(t: number, betas: [number, number] = [0.9, 0.999]): [number, number] {
  return [1 - betas[0] ** t, Math.sqrt(1 - betas[1] ** t)];
}

/**
 * torch.optim.SGD with momentum μ, dampening 0, no Nesterov: buf ← g (first step) else μ·buf + g;
 * p ← p − lr·buf. `first` is 1 on the first step else 0 (fed by the host).
 */
export function sgdStep(
  p: Tensor,
  grad: Tensor,
  lr: Tensor,
  o: { momentum?: number; buf?: Tensor; first?: Tensor } = {},
): { p: Tensor; buf?: Tensor } {
  if (!o.momentum || !o.buf || !o.first) return { p: sub(p, mul(lr, grad)) };
  // buf' = first·g + (1−first)·(μ·buf + g)  — a blend instead of a branch keeps the graph static.
  const cont = add(mul(o.buf, o.momentum), grad);
  const buf = add(mul(o.first, grad), mul(sub(1, o.first), cont));
  return { p: sub(p, mul(lr, buf)), buf };
}

/** torch.optim.lr_scheduler.MultiStepLR: lr = base · γ^(number of milestones ≤ epoch). */
export function multiStepLR(base: number, milestones: number[], gamma: number, epoch: number): number {
  return base * gamma ** milestones.filter((m) => m <= epoch).length;
}
