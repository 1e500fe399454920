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
 * Smaller encoders (the demo bundle) are inferred from the weight shapes (`inferE4EArch`): any IR-SE
 * body with 4 stride-2 stages (so c1/c2/c3 are still 64/32/16 px at 256 px), any style width, any
 * style count (coarse/middle/fine split fixed at 3/7 as upstream).
 *
 * Forward-only: inversion runs once per face, so no gradient is built.
 */
import * as E from '../engine/index.js';
import { type PyValue, StateDictError, getPath, isTensor, stateDict } from '../checkpoint/index.js';
import type { Tensor as WeightTensor } from '../checkpoint/tensor.js';
import {
  type Ctx,
  type IrseArch,
  IRSE50,
  describeIrse,
  inferIrseArch,
  irseBody,
  irseBodyKeys,
  linear,
  param,
} from './irse50/backbone.js';
import { type KeySpec, type WeightMap, WeightsError, checkWeights, shapeOf, vote } from './irse50/weights.js';

export const E4E_INPUT = 256;
/** W space width of the real network (and of every StyleGAN2 the product uses). */
export const W_DIM = 512;
/**
 * Style blocks [0, COARSE) read c3, [COARSE, MIDDLE) read p2, the rest p1: Encoder4Editing's fixed
 * `coarse_ind = 3`, `middle_ind = 7`. With fewer styles (a smaller generator) the later groups are
 * simply empty, as upstream (its forward only builds p2 / p1 when a block reads them).
 */
const COARSE = 3;
const MIDDLE = 7;
/** e4e taps the body after stages 1, 2, 3 (0-based) and needs exactly 4 stride-2 stages. */
const STAGES = 4;

/** What varies between e4e sizes (all inferred from the weight shapes by `inferE4EArch`). */
export interface E4EArch {
  readonly body: IrseArch;
  /** Style count (W+ layers): 18 for a 1024 px generator. */
  readonly styles: number;
  /** Width of the style blocks' convs (512 in the real network). */
  readonly styleWidth: number;
  /** Output width of the style blocks' EqualLinear and of latent_avg (512). */
  readonly wDim: number;
}

/** Body units whose outputs feed the FPN: c1, c2, c3 = last unit of stages 1, 2, 3 (IR-SE50: 6, 20, 23). */
function taps(body: IrseArch): [number, number, number] {
  const e = body.stageEnds;
  return [e[1]!, e[2]!, e[3]!];
}

/** Channels of c1, c2, c3 (IR-SE50: 128, 256, 512); c3's is also the FPN width. */
function tapChannels(body: IrseArch): [number, number, number] {
  return taps(body).map((i) => body.units[i]!.depth) as [number, number, number];
}

/**
 * Side of the map style block i reads at 256 px, and so its number of stride-2 convs (log2 of it, down
 * to 1×1): c3 16 → 4 convs, p2 32 → 5, p1 64 → 6 (GradualStyleBlock's `num_pools = log2(spatial)`).
 */
const featureSide = (i: number): number => (i < COARSE ? 16 : i < MIDDLE ? 32 : 64);
const convsOf = (i: number): number => Math.log2(featureSide(i));

/** Keys and shapes of an e4e encoder (`styleCount` style blocks at full size; 18 for a 1024 px generator). */
export function e4eKeys(arch: E4EArch | number): KeySpec {
  const a: E4EArch =
    typeof arch === 'number' ? { body: IRSE50, styles: arch, styleWidth: W_DIM, wDim: W_DIM } : arch;
  const spec = irseBodyKeys(a.body, 'encoder.');
  const [c1, c2, c3] = tapChannels(a.body);
  const w = a.styleWidth;
  for (let i = 0; i < a.styles; i++) {
    for (let j = 0; j < convsOf(i); j++) {
      // The first conv reads the feature map (c3 / FPN width), the others the block's own width.
      spec.set(`encoder.styles.${i}.convs.${2 * j}.weight`, [w, j === 0 ? c3 : w, 3, 3]);
      spec.set(`encoder.styles.${i}.convs.${2 * j}.bias`, [w]);
    }
    spec.set(`encoder.styles.${i}.linear.weight`, [a.wDim, w]);
    spec.set(`encoder.styles.${i}.linear.bias`, [a.wDim]);
  }
  spec.set('encoder.latlayer1.weight', [c3, c2, 1, 1]);
  spec.set('encoder.latlayer1.bias', [c3]);
  spec.set('encoder.latlayer2.weight', [c3, c1, 1, 1]);
  spec.set('encoder.latlayer2.bias', [c3]);
  spec.set('latent_avg', [a.styles, a.wDim]);
  return spec;
}

/** Weights checked against the architecture (see `loadE4EWeights`). */
export interface E4EWeights {
  readonly kind: 'e4e-irse50';
  readonly map: WeightMap;
  /** Number of W+ layers (2·log2(generator size) − 2; 18 for FFHQ 1024). */
  readonly styleCount: number;
  readonly arch: E4EArch;
}

/**
 * The architecture of e4e weights, from shapes only: the body by `inferIrseArch` (prefix `encoder.`;
 * the full IR-SE50 when there is no body key), the style count from the `encoder.styles.<i>` indices,
 * the style width from what the style convs' output channels agree on, the W width from the style
 * linears' output and latent_avg's second dimension.
 */
export function inferE4EArch(weights: WeightMap, styles: number): E4EArch {
  const body = inferIrseArch(weights, 'encoder.') ?? IRSE50;
  const widths: Array<number | undefined> = [];
  const wDims: Array<number | undefined> = [];
  for (let i = 0; i < styles; i++) {
    const s = shapeOf(weights, `encoder.styles.${i}.convs.0.weight`);
    widths.push(s?.length === 4 ? s[0] : undefined);
    const l = shapeOf(weights, `encoder.styles.${i}.linear.weight`);
    wDims.push(l?.length === 2 ? l[0] : undefined);
    if (l?.length === 2) widths.push(l[1]);
  }
  const avg = shapeOf(weights, 'latent_avg');
  wDims.push(avg?.length === 2 ? avg[1] : undefined);
  return { body, styles, styleWidth: vote(widths) ?? W_DIM, wDim: vote(wDims) ?? W_DIM };
}

/** "e4e IR-SE50" or the smaller encoder's description. */
function describe(a: E4EArch): string {
  const full = a.styleWidth === W_DIM && a.wDim === W_DIM;
  return `e4e encoder (${describeIrse(a.body)}${full ? '' : `, style width ${a.styleWidth}, W ${a.wDim}`})`;
}

/**
 * Validate e4e weights: `encoder.*` keys as in the checkpoint's `state_dict` plus `latent_avg`
 * [styleCount, W]. The architecture is read from the shapes (`inferE4EArch`; the style count from the
 * keys `encoder.styles.<i>`, which must equal `expectStyles` when given), then the weights are checked
 * against its complete key list. `decoder.*` keys (the generator, which e4e checkpoints also carry) are
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
  // A stray huge index would make a giant spec; W+ of a 2^k px generator has 2k − 2 ≤ 30 layers.
  if (n > 64)
    throw new WeightsError(`e4e: encoder.styles.${n - 1}.* implies ${n} style blocks (more than 64)`);
  const arch = inferE4EArch(weights, n);
  const what = describe(arch);
  const strided = arch.body.units.filter((u) => u.stride === 2).length;
  if (arch.body.stageEnds.length !== STAGES)
    throw new WeightsError(
      `${what}: the body has ${arch.body.stageEnds.length} stride-2 stage(s) (${strided} stride-2 unit(s)); ` +
        `e4e's FPN taps the ends of stages 2–4 and needs exactly ${STAGES}`,
    );
  checkWeights(what, weights, e4eKeys(arch), (k) => k.startsWith('decoder.'));
  return { kind: 'e4e-irse50', map: weights, styleCount: n, arch };
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

function styleBlock(c: Ctx, a: E4EArch, x: E.Tensor, i: number): E.Tensor {
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
    y = E.reshape(y, [y.shape[0]!, a.styleWidth]);
    // EqualLinear(lr_mul=1): weight scaled by 1/sqrt(in_features) at run time, bias unscaled.
    return linear(c, y, `encoder.styles.${i}.linear`, 1 / Math.sqrt(a.styleWidth));
  });
}

/**
 * Add the e4e encoder to `g`: `x` is an [N, 3, 256, 256] aligned face in [-1, 1]; returns
 * `codes` [N, styleCount, W] and `wplus = codes + latent_avg` (W = 512 for the real network).
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
  const a = w.arch;
  const [t1, t2, t3] = taps(a.body);
  return g.scope('e4e', () => {
    const body = irseBody({ ...c, prefix: 'encoder.' }, a.body, x, [t1, t2, t3]);
    const [c1, c2, c3] = [body.taps.get(t1)!, body.taps.get(t2)!, body.taps.get(t3)!];
    const lat = (k: string, t: E.Tensor) =>
      E.conv2d(t, param(c, `encoder.${k}.weight`), param(c, `encoder.${k}.bias`));
    // p2 / p1 are made only when a block reads them (as upstream; fewer styles leave them unused).
    let p2: E.Tensor | undefined;
    let p1: E.Tensor | undefined;
    const featureOf = (i: number): E.Tensor => {
      if (i < COARSE) return c3;
      p2 ??= upsampleAdd(c3, lat('latlayer1', c2));
      if (i < MIDDLE) return p2;
      return (p1 ??= upsampleAdd(p2, lat('latlayer2', c1)));
    };
    const w0 = styleBlock(c, a, c3, 0);
    const layers: E.Tensor[] = [w0];
    for (let i = 1; i < w.styleCount; i++) layers.push(E.add(w0, styleBlock(c, a, featureOf(i), i)));
    const codes = E.concat(
      layers.map((t) => E.unsqueeze(t, 1)),
      1,
    );
    const avg = param(c, 'latent_avg');
    return { codes, wplus: E.add(codes, avg) };
  });
}
