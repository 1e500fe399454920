/**
 * The e4e encoder (`Encoder4Editing(50, 'ir_se')` of `e4e_ffhq_encode.pt`), which FALCO uses once per
 * face to invert the aligned 256×256 image into StyleGAN2's W+ space.
 *
 * Structure (facts from e4e's encoders/psp_encoders.py): an IR-SE50 body whose units 6, 20 and 23
 * give feature maps c1 (128 ch, 1/4), c2 (256 ch, 1/8) and c3 (512 ch, 1/16); an FPN
 * p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1) with bilinear align_corners=True
 * upsampling; `style_count` GradualStyleBlocks (stride-2 conv + LeakyReLU(0.01) chain down to 1×1,
 * then an equalized-lr linear) — block 0 on c3 gives the base code w0, blocks 1..2 on c3, 3..6 on p2
 * and 7.. on p1 give deltas, and at inference (ProgressiveStage.Inference) every layer i > 0 is
 * w0 + delta_i. `wplus = codes + latent_avg`.
 *
 * Forward-only: inversion runs once per face, so no gradient is built.
 */
import * as E from '../engine/index.js';
import { type PyValue, StateDictError, getPath, isTensor, stateDict } from '../checkpoint/index.js';
import type { Tensor as WeightTensor } from '../checkpoint/tensor.js';
import { type Ctx, irse50Body, irse50BodyKeys, linear, param } from './irse50/backbone.js';
import { type KeySpec, type WeightMap, WeightsError, checkWeights } from './irse50/weights.js';

export const E4E_INPUT = 256;
export const W_DIM = 512;
/** Style blocks [0, COARSE) read c3, [COARSE, MIDDLE) read p2, the rest p1. */
const COARSE = 3;
const MIDDLE = 7;
/** Body units whose outputs feed the FPN (c1, c2, c3). */
const TAP_C1 = 6;
const TAP_C2 = 20;
const TAP_C3 = 23;

/** Number of stride-2 convs of style block i: log2 of its input's side at 256 px (16, 32, 64). */
const convsOf = (i: number): number => (i < COARSE ? 4 : i < MIDDLE ? 5 : 6);

/** Keys and shapes of an e4e encoder with `styleCount` style blocks (18 for a 1024 px generator). */
export function e4eKeys(styleCount: number): KeySpec {
  const spec = irse50BodyKeys('encoder.');
  for (let i = 0; i < styleCount; i++) {
    for (let j = 0; j < convsOf(i); j++) {
      spec.set(`encoder.styles.${i}.convs.${2 * j}.weight`, [W_DIM, W_DIM, 3, 3]);
      spec.set(`encoder.styles.${i}.convs.${2 * j}.bias`, [W_DIM]);
    }
    spec.set(`encoder.styles.${i}.linear.weight`, [W_DIM, W_DIM]);
    spec.set(`encoder.styles.${i}.linear.bias`, [W_DIM]);
  }
  spec.set('encoder.latlayer1.weight', [512, 256, 1, 1]);
  spec.set('encoder.latlayer1.bias', [512]);
  spec.set('encoder.latlayer2.weight', [512, 128, 1, 1]);
  spec.set('encoder.latlayer2.bias', [512]);
  spec.set('latent_avg', [styleCount, W_DIM]);
  return spec;
}

/** Weights checked against the architecture (see `loadE4EWeights`). */
export interface E4EWeights {
  readonly kind: 'e4e-irse50';
  readonly map: WeightMap;
  /** Number of W+ layers (2·log2(generator size) − 2; 18 for FFHQ 1024). */
  readonly styleCount: number;
}

/**
 * Validate e4e weights: `encoder.*` keys as in the checkpoint's `state_dict` plus `latent_avg`
 * [styleCount, 512]. The style count is read from the keys (`encoder.styles.<i>`) and, when given,
 * must equal `expectStyles`. `decoder.*` keys (the generator, which e4e checkpoints also carry) are
 * ignored; anything else unknown is an error.
 */
export function loadE4EWeights(weights: WeightMap, opts: { expectStyles?: number } = {}): E4EWeights {
  let n = 0;
  for (const k of weights.keys()) {
    const m = /^encoder\.styles\.(\d+)\./.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  if (n === 0) {
    const sample = [...weights.keys()].slice(0, 5).join(', ');
    throw new WeightsError(
      `e4e: no "encoder.styles.<i>.*" weights found (keys start with: ${sample || 'none'})`,
    );
  }
  if (opts.expectStyles !== undefined && n !== opts.expectStyles)
    throw new WeightsError(`e4e: the weights have ${n} style blocks, expected ${opts.expectStyles}`);
  if (n <= MIDDLE)
    throw new WeightsError(`e4e: ${n} style blocks is too few (the encoder has at least ${MIDDLE + 1})`);
  checkWeights('e4e encoder', weights, e4eKeys(n), (k) => k.startsWith('decoder.'));
  return { kind: 'e4e-irse50', map: weights, styleCount: n };
}

/**
 * e4e weights from a loaded `e4e_ffhq_encode.pt`: `state_dict` (with `encoder.` keys) + top-level
 * `latent_avg`; `opts.stylegan_size` (dict or argparse Namespace), when present, fixes the style
 * count. Load the file with `select: (p) => !p.startsWith('state_dict.decoder.')` to skip the
 * generator's ~120 MB.
 */
export function e4eWeightsFromCheckpoint(obj: PyValue): E4EWeights {
  const map = new Map<string, WeightTensor>(stateDict(getPath(obj, 'state_dict')));
  for (const k of [...map.keys()]) if (!k.startsWith('encoder.')) map.delete(k);
  const avg = getPath(obj, 'latent_avg');
  if (!isTensor(avg)) throw new StateDictError('e4e checkpoint: latent_avg is not a tensor');
  map.set('latent_avg', avg);
  let expectStyles: number | undefined;
  if (obj instanceof Map && obj.has('opts')) {
    const o = obj.get('opts');
    const size = o instanceof Map ? o.get('stylegan_size') : undefined;
    if (typeof size === 'number' || typeof size === 'bigint')
      expectStyles = 2 * Math.round(Math.log2(Number(size))) - 2;
  }
  return loadE4EWeights(map, expectStyles === undefined ? {} : { expectStyles });
}

/** torch interpolate(mode='bilinear', align_corners=True) along one axis (the engine has the False variant). */
export function bilinearAlignCornersMatrix(inSize: number, outSize: number): E.ResampleMatrix {
  const m = new Float32Array(outSize * inSize);
  // PyTorch computes the ratio (in−1)/(out−1) and the source coordinate in float32.
  const ratio = outSize > 1 ? Math.fround((inSize - 1) / (outSize - 1)) : 0;
  for (let i = 0; i < outSize; i++) {
    const src = Math.fround(ratio * i);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = Math.fround(src - i0);
    m[i * inSize + i0] += 1 - l1;
    m[i * inSize + i1] += l1;
  }
  return { out: outSize, in: inSize, data: m };
}

/** FPN merge: bilinear (align_corners=True) upsampling of `x` to `y`'s size, plus `y`. */
function upsampleAdd(x: E.Tensor, y: E.Tensor): E.Tensor {
  const [H, W] = [y.shape[2]!, y.shape[3]!];
  const up = E.resample2d(
    x,
    bilinearAlignCornersMatrix(x.shape[2]!, H),
    bilinearAlignCornersMatrix(x.shape[3]!, W),
  );
  return E.add(up, y);
}

function styleBlock(c: Ctx, x: E.Tensor, i: number): E.Tensor {
  return c.g.scope(`styles.${i}`, () => {
    let y = x;
    for (let j = 0; j < convsOf(i); j++) {
      const k = `encoder.styles.${i}.convs.${2 * j}`;
      y = E.leakyRelu(
        E.conv2d(y, param(c, `${k}.weight`), param(c, `${k}.bias`), { stride: 2, padding: 1 }),
        0.01,
      );
    }
    if (y.shape[2] !== 1 || y.shape[3] !== 1)
      throw new E.ShapeError(`e4e style block ${i}: expected a 1×1 map, got ${y}`);
    y = E.reshape(y, [y.shape[0]!, W_DIM]);
    // EqualLinear(lr_mul=1): weight scaled by 1/sqrt(in_features) at run time, bias unscaled.
    return linear(c, y, `encoder.styles.${i}.linear`, 1 / Math.sqrt(W_DIM));
  });
}

/**
 * Add the e4e encoder to `g`: `x` is an [N, 3, 256, 256] aligned face in [-1, 1]; returns
 * `codes` [N, styleCount, 512] and `wplus = codes + latent_avg`.
 */
export function buildE4E(
  g: E.Graph,
  weights: E4EWeights | WeightMap,
  x: E.Tensor,
): { codes: E.Tensor; wplus: E.Tensor } {
  const w =
    'kind' in weights && weights.kind === 'e4e-irse50' ? weights : loadE4EWeights(weights as WeightMap);
  if (x.graph !== g) throw new E.ShapeError('buildE4E: input tensor belongs to another graph');
  if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== E4E_INPUT || x.shape[3] !== E4E_INPUT)
    throw new E.ShapeError(`e4e expects an [N, 3, ${E4E_INPUT}, ${E4E_INPUT}] input, got ${x}`);
  const c: Ctx = { g, w: w.map, prefix: '' };
  return g.scope('e4e', () => {
    const body = irse50Body({ ...c, prefix: 'encoder.' }, x, [TAP_C1, TAP_C2, TAP_C3]);
    const [c1, c2, c3] = [body.taps.get(TAP_C1)!, body.taps.get(TAP_C2)!, body.taps.get(TAP_C3)!];
    const lat = (k: string, t: E.Tensor) =>
      E.conv2d(t, param(c, `encoder.${k}.weight`), param(c, `encoder.${k}.bias`));
    const p2 = upsampleAdd(c3, lat('latlayer1', c2));
    const p1 = upsampleAdd(p2, lat('latlayer2', c1));
    const w0 = styleBlock(c, c3, 0);
    const layers: E.Tensor[] = [w0];
    for (let i = 1; i < w.styleCount; i++) {
      const feat = i < COARSE ? c3 : i < MIDDLE ? p2 : p1;
      layers.push(E.add(w0, styleBlock(c, feat, i)));
    }
    const codes = E.concat(
      layers.map((t) => E.unsqueeze(t, 1)),
      1,
    );
    const avg = param(c, 'latent_avg');
    return { codes, wplus: E.add(codes, avg) };
  });
}
