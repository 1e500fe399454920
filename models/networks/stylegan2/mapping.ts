/**
 * genforce StyleGAN2 mapping network (pixel-norm + 8 equalized-lr dense layers with lr_mul 0.01,
 * leaky ReLU 0.2 × √2) and the truncation trick, used to sample FALCO's fake latent pool:
 * z [N, 512] → w [N, 512] → wp [N, L, 512] with wp = w_avg + ψ·(w − w_avg) on the first `layers` layers.
 * (Depth and widths come from `weights.arch`, inferred from the checkpoint; 8 and 512 for FALCO.)
 */
import * as E from '../../engine/index.js';
import type { Graph, Tensor } from '../../engine/index.js';
import {
  FALCO_TRUNCATION_LAYERS,
  FALCO_TRUNCATION_PSI,
  LRELU_GAIN,
  LRELU_SLOPE,
  MAPPING_LR_MUL,
  PIXELNORM_EPS,
} from './config.js';
import type { StyleGAN2Weights } from './weights.js';

export class MappingInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MappingInputError';
  }
}

const scaled = (src: Float32Array, scale: number): Float32Array => {
  const s = Math.fround(scale);
  return src.map((v) => v * s);
};

/** z [N, 512] → w [N, 512]. */
export function buildMapping(g: Graph, weights: StyleGAN2Weights, z: Tensor): Tensor {
  const { zDim, wDim, mappingLayers } = weights.arch;
  if (z.rank !== 2 || z.shape[1] !== zDim)
    throw new MappingInputError(`mapping expects z [N, ${zDim}], got ${z}`);
  return g.scope('mapping', () => {
    let x = E.div(z, E.sqrt(E.add(E.reduceMean(E.mul(z, z), [1], true), PIXELNORM_EPS)));
    for (let i = 0; i < mappingLayers; i++) {
      const p = `mapping.dense${i}`;
      const inDim = i === 0 ? zDim : wDim;
      const w = g.constant(
        scaled(weights.get(`${p}.weight`), (1 / Math.sqrt(inDim)) * MAPPING_LR_MUL),
        [wDim, inDim],
        `${p}.weight`,
      );
      const b = g.constant(scaled(weights.get(`${p}.bias`), MAPPING_LR_MUL), [wDim], `${p}.bias`);
      x = E.leakyRelu(E.linear(x, w, b), LRELU_SLOPE, LRELU_GAIN);
    }
    return x;
  });
}

export interface TruncationOptions {
  /** ψ (1 = no truncation). FALCO's fake pool uses 0.7. */
  psi?: number;
  /** How many leading W+ layers are truncated (genforce `get_w` default 18 = all at ≤1024 px). */
  layers?: number;
}

/** w [N, 512] → wp [N, L, 512], repeating w over the L layers and truncating towards `truncation.w_avg`. */
export function truncate(
  g: Graph,
  weights: StyleGAN2Weights,
  w: Tensor,
  opts: TruncationOptions = {},
): Tensor {
  const { numWLayers: L, wDim } = weights.arch;
  const psi = opts.psi ?? FALCO_TRUNCATION_PSI;
  const layers = Math.min(opts.layers ?? FALCO_TRUNCATION_LAYERS, L);
  if (!Number.isFinite(psi)) throw new MappingInputError(`truncation psi must be finite, got ${psi}`);
  if (!Number.isInteger(layers) || layers < 0)
    throw new MappingInputError(`truncation layers must be an integer ≥ 0, got ${opts.layers}`);
  const N = w.shape[0]!;
  const wp = E.expand(E.reshape(w, [N, 1, wDim]), [N, L, wDim]);
  if (psi === 1 || layers === 0) return wp;
  const coef = new Float32Array(L).map((_, l) => (l < layers ? psi : 1));
  const avg = g.constant(weights.get('truncation.w_avg'), [1, 1, wDim], 'truncation.w_avg');
  return E.add(avg, E.mul(E.sub(wp, avg), g.constant(coef, [1, L, 1], 'truncation.coefs')));
}
