/**
 * ArcFace IR-SE50 (`Backbone(112, 50, 'ir_se')`, the `model_ir_se50.pth` identity network of FALCO's
 * ID loss): IR-SE50 body → BN2d(512) → Dropout (identity at inference) → Flatten → Linear(512·7·7, 512)
 * → BN1d(512) → L2 normalisation. Smaller bodies (the demo bundle) are inferred from the weight shapes:
 * BN2d(C) → Linear(C·7·7, E) → BN1d(E) on any IR-SE body with 4 stride-2 stages (112 → 7). Built into a caller's graph so it can be differentiated with the
 * rest of the FALCO step (only input gradients: the weights are constants).
 */
import * as E from '../engine/index.js';
import { type PyValue, stateDict } from '../checkpoint/index.js';
import {
  type Ctx,
  type IrseArch,
  IRSE50,
  bn,
  describeIrse,
  inferIrseArch,
  irseBody,
  irseBodyKeys,
  irseOutputSide,
  linear,
} from './irse50/backbone.js';
import {
  type KeySpec,
  type WeightMap,
  WeightsError,
  checkWeights,
  shapeOf,
  stripPrefix,
  vote,
} from './irse50/weights.js';

export const ARCFACE_INPUT = 112;
/** Embedding size of the real network (the demo bundle's is the same). */
export const ARCFACE_DIM = 512;
/** The output layer flattens a 7×7 map: the body must take 112 px down to 7 (4 stride-2 stages). */
const OUT_SIDE = 7;

/** What varies between ArcFace sizes: the IR-SE body, its output channels C and the embedding E. */
export interface ArcFaceArch {
  readonly body: IrseArch;
  /** Channels of the body's output (the last unit's depth; BN2d(C) and Linear(C·49 → E)). */
  readonly channels: number;
  readonly embedding: number;
}

export const ARCFACE_IRSE50: ArcFaceArch = Object.freeze({
  body: IRSE50,
  channels: 512,
  embedding: ARCFACE_DIM,
});

const BN = ['weight', 'bias', 'running_mean', 'running_var'] as const;

/** Every key (and shape) of an ArcFace state dict, BatchNorm step counters aside (default: model_ir_se50.pth). */
export function arcFaceKeys(arch: ArcFaceArch = ARCFACE_IRSE50): KeySpec {
  const spec = irseBodyKeys(arch.body);
  const [C, D] = [arch.channels, arch.embedding];
  for (const s of BN) spec.set(`output_layer.0.${s}`, [C]);
  spec.set('output_layer.3.weight', [D, C * OUT_SIDE * OUT_SIDE]);
  spec.set('output_layer.3.bias', [D]);
  for (const s of BN) spec.set(`output_layer.4.${s}`, [D]);
  return spec;
}

/**
 * The architecture the weights describe: the IR-SE body from `inferIrseArch` (the full IR-SE50 when
 * there is no body key at all, so that e.g. a prefixed state dict is reported key by key against the
 * real network), C = the body's last depth, E = the size the output Linear/BN1d tensors agree on.
 */
export function inferArcFaceArch(map: WeightMap): ArcFaceArch {
  const body = inferIrseArch(map) ?? IRSE50;
  const channels = body.units.at(-1)?.depth ?? body.inputC;
  const s3 = shapeOf(map, 'output_layer.3.weight');
  const embedding =
    vote([
      s3?.length === 2 ? s3[0] : undefined,
      shapeOf(map, 'output_layer.3.bias')?.[0],
      ...BN.map((s) => shapeOf(map, `output_layer.4.${s}`)?.[0]),
    ]) ?? ARCFACE_DIM;
  return { body, channels, embedding };
}

/** "ArcFace IR-SE50" or the smaller body's description. */
const describe = (a: ArcFaceArch): string =>
  `ArcFace ${describeIrse(a.body)}${a.embedding !== ARCFACE_DIM ? `, ${a.embedding}-D embedding` : ''}`;

/** Weights checked against the architecture (see `loadArcFaceWeights`). */
export interface ArcFaceWeights {
  readonly kind: 'arcface-irse50';
  readonly map: WeightMap;
  /** Inferred from the weight shapes (ARCFACE_IRSE50 for model_ir_se50.pth). */
  readonly arch: ArcFaceArch;
}

/**
 * Validate an ArcFace state dict (from `stateDict(await loadCheckpoint('model_ir_se50.pth'))`, from a
 * fixture spec or a smaller demo checkpoint in the same layout). `prefix` selects and strips a key
 * prefix (e.g. "module."). The architecture is inferred from the shapes (`inferArcFaceArch`), then the
 * weights are checked against its complete key list: throws `WeightsError` listing every missing /
 * unexpected / mis-shaped key, or saying why the inferred body cannot feed the 7×7 output layer.
 */
export function loadArcFaceWeights(weights: WeightMap, opts: { prefix?: string } = {}): ArcFaceWeights {
  const map = opts.prefix ? stripPrefix(weights, opts.prefix) : weights;
  if (opts.prefix && map.size === 0)
    throw new WeightsError(`ArcFace: no weight key starts with "${opts.prefix}"`);
  const arch = inferArcFaceArch(map);
  checkWeights(describe(arch), map, arcFaceKeys(arch));
  const side = irseOutputSide(arch.body, ARCFACE_INPUT);
  if (side !== OUT_SIDE) {
    const strided = arch.body.units.filter((u) => u.stride === 2).length;
    throw new WeightsError(
      `${describe(arch)}: ${strided} stride-2 stage(s) take the ${ARCFACE_INPUT} px input to ${side}×${side}, ` +
        `but the output layer flattens a ${OUT_SIDE}×${OUT_SIDE} map (4 stride-2 stages)`,
    );
  }
  return { kind: 'arcface-irse50', map, arch };
}

/** ArcFace weights from a loaded `model_ir_se50.pth` object (a plain state dict). */
export function arcFaceWeightsFromCheckpoint(obj: PyValue): ArcFaceWeights {
  return loadArcFaceWeights(stateDict(obj));
}

/**
 * Add ArcFace to `g`: `x` is an [N, 3, 112, 112] face in [-1, 1] (FALCO's id112 preprocessing);
 * returns the L2-normalised [N, E] embedding (E = 512 for the real network).
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
    const { out } = irseBody(c, w.arch.body, x);
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
