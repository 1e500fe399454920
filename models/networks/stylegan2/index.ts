/**
 * FALCO's StyleGAN2 generator (genforce layout) on the engine. See synthesis.ts for the modulated
 * convolution scheme and weights.ts for checkpoint validation.
 */
import * as E from '../../engine/index.js';
import type { Tensor as CkptTensor } from '../../checkpoint/tensor.js';
import { buildMapping, truncate, type TruncationOptions } from './mapping.js';
import { buildSynthesis } from './synthesis.js';
import { type LoadStyleGAN2Options, loadStyleGAN2Weights, type StyleGAN2Weights } from './weights.js';

export * from './config.js';
export * from './weights.js';
export { buildSynthesis, SynthesisInputError, type SynthesisOptions } from './synthesis.js';
export { buildMapping, truncate, MappingInputError, type TruncationOptions } from './mapping.js';

export interface GeneratorGraphOptions {
  batch?: number;
  /** Also output `grad_wp` = d(Σ image·probe)/d wp, with `probe` [N,3,R,R] as a second input. */
  withProbeGrad?: boolean;
}

/** A standalone graph: input `wp` [N, L, w] → output `image` [N, 3, R, R] (+ `grad_wp`). */
export function buildGeneratorGraph(weights: StyleGAN2Weights, opts: GeneratorGraphOptions = {}): E.Graph {
  const a = weights.arch;
  const N = opts.batch ?? 1;
  const g = new E.Graph(`stylegan2_${a.resolution}`);
  const wp = g.input('wp', [N, a.numWLayers, a.wDim]);
  const image = buildSynthesis(g, weights, wp);
  g.output(image, 'image');
  if (opts.withProbeGrad) {
    const probe = g.input('probe', image.shape);
    const loss = E.reduceSum(E.mul(image, probe));
    g.output(E.grad(loss, [wp])[0]!, 'grad_wp');
  }
  return g;
}

/** A standalone graph: input `z` [N, z] → output `wp` [N, L, w] (mapping + truncation). */
export function buildMappingGraph(
  weights: StyleGAN2Weights,
  opts: TruncationOptions & { batch?: number } = {},
): E.Graph {
  const g = new E.Graph(`stylegan2_mapping_${weights.resolution}`);
  const z = g.input('z', [opts.batch ?? 1, weights.arch.zDim]);
  g.output(truncate(g, weights, buildMapping(g, weights, z), opts), 'wp');
  return g;
}

/** Convenience: validate a state dict (bare, or a full checkpoint with `generator_smooth.*`). */
export const generatorWeights = (
  map: ReadonlyMap<string, CkptTensor>,
  resolutionOrOptions?: number | LoadStyleGAN2Options,
): StyleGAN2Weights => loadStyleGAN2Weights(map, resolutionOrOptions);
