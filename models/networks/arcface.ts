/**
 * ArcFace IR-SE50 (`Backbone(112, 50, 'ir_se')`, the `model_ir_se50.pth` identity network of FALCO's
 * ID loss): IR-SE50 body → BN2d(512) → Dropout (identity at inference) → Flatten → Linear(512·7·7, 512)
 * → BN1d(512) → L2 normalisation. Built into a caller's graph so it can be differentiated with the
 * rest of the FALCO step (only input gradients: the weights are constants).
 */
import * as E from '../engine/index.js';
import { type PyValue, stateDict } from '../checkpoint/index.js';
import { type Ctx, bn, irse50Body, irse50BodyKeys, linear } from './irse50/backbone.js';
import { type KeySpec, type WeightMap, WeightsError, checkWeights, stripPrefix } from './irse50/weights.js';

export const ARCFACE_INPUT = 112;
export const ARCFACE_DIM = 512;

/** Every key (and shape) of a `model_ir_se50.pth` state dict, BatchNorm step counters aside. */
export function arcFaceKeys(): KeySpec {
  const spec = irse50BodyKeys();
  for (const s of ['weight', 'bias', 'running_mean', 'running_var']) spec.set(`output_layer.0.${s}`, [512]);
  spec.set('output_layer.3.weight', [ARCFACE_DIM, 512 * 7 * 7]);
  spec.set('output_layer.3.bias', [ARCFACE_DIM]);
  for (const s of ['weight', 'bias', 'running_mean', 'running_var'])
    spec.set(`output_layer.4.${s}`, [ARCFACE_DIM]);
  return spec;
}

/** Weights checked against the architecture (see `loadArcFaceWeights`). */
export interface ArcFaceWeights {
  readonly kind: 'arcface-irse50';
  readonly map: WeightMap;
}

/**
 * Validate an ArcFace state dict (from `stateDict(await loadCheckpoint('model_ir_se50.pth'))` or from a
 * fixture spec). `prefix` selects and strips a key prefix (e.g. "module."). Throws `WeightsError`
 * listing every missing / unexpected / mis-shaped key.
 */
export function loadArcFaceWeights(weights: WeightMap, opts: { prefix?: string } = {}): ArcFaceWeights {
  const map = opts.prefix ? stripPrefix(weights, opts.prefix) : weights;
  if (opts.prefix && map.size === 0)
    throw new WeightsError(`ArcFace: no weight key starts with "${opts.prefix}"`);
  checkWeights('ArcFace IR-SE50', map, arcFaceKeys());
  return { kind: 'arcface-irse50', map };
}

/** ArcFace weights from a loaded `model_ir_se50.pth` object (a plain state dict). */
export function arcFaceWeightsFromCheckpoint(obj: PyValue): ArcFaceWeights {
  return loadArcFaceWeights(stateDict(obj));
}

/**
 * Add ArcFace to `g`: `x` is an [N, 3, 112, 112] face in [-1, 1] (FALCO's id112 preprocessing);
 * returns the L2-normalised [N, 512] embedding.
 */
export function buildArcFace(g: E.Graph, weights: ArcFaceWeights | WeightMap, x: E.Tensor): E.Tensor {
  const w =
    'kind' in weights && weights.kind === 'arcface-irse50'
      ? weights
      : loadArcFaceWeights(weights as WeightMap);
  if (x.graph !== g) throw new E.ShapeError('buildArcFace: input tensor belongs to another graph');
  if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== ARCFACE_INPUT || x.shape[3] !== ARCFACE_INPUT)
    throw new E.ShapeError(`ArcFace expects an [N, 3, ${ARCFACE_INPUT}, ${ARCFACE_INPUT}] input, got ${x}`);
  const c: Ctx = { g, w: w.map, prefix: '' };
  return g.scope('arcface', () => {
    const { out } = irse50Body(c, x);
    let y = bn(c, out, 'output_layer.0');
    y = E.flatten(y, 1); // Flatten is a view of NCHW: channel-major, as the Linear weight expects.
    y = linear(c, y, 'output_layer.3');
    y = bn(c, y, 'output_layer.4');
    return l2Normalize(y);
  });
}

/**
 * Row-wise x / ‖x‖₂ exactly as the reference's `l2_norm` (torch.div by torch.norm, no epsilon): a
 * zero row gives NaN there and here alike.
 */
export function l2Normalize(x: E.Tensor): E.Tensor {
  return E.div(x, E.sqrt(E.reduceSum(E.mul(x, x), [1], true)));
}
