/**
 * The IR-SE50 body shared by ArcFace (`Backbone(112, 50, 'ir_se')`, the identity network of FALCO's ID
 * loss) and the e4e encoder (`Encoder4Editing(50, 'ir_se')`).
 *
 * Architecture (facts from the pSp/e4e/FALCO model_irse.py & helpers.py):
 * - input layer: Conv3x3(3→64, pad 1, no bias) → BatchNorm2d → PReLU(64)
 * - body: 4 stages of `bottleneck_IR_SE` units, (in, depth, units) = (64,64,3) (64,128,4) (128,256,14)
 *   (256,512,3); the first unit of each stage has stride 2, the others stride 1.
 * - unit: shortcut = MaxPool2d(1, stride) when in == depth (a strided subsample), else
 *   Conv1x1(stride, no bias) → BN; residual = BN → Conv3x3 → PReLU → Conv3x3(stride) → BN → SE;
 *   output = residual + shortcut.
 * - SE: x · sigmoid(fc2(relu(fc1(mean_hw(x))))) with 1x1 convs, no bias, reduction 16.
 *
 * Every BatchNorm runs in inference mode and is folded into a per-channel scale and shift.
 */
import * as E from '../../engine/index.js';
import { type KeySpec, type WeightMap, f32, tensorF32 } from './weights.js';

export interface UnitDef {
  inC: number;
  depth: number;
  stride: number;
}

/** The 24 units of IR-50: index i is `body.i` in the state dict. */
export const IRSE50_UNITS: readonly UnitDef[] = (() => {
  const stages: Array<[number, number, number]> = [
    [64, 64, 3],
    [64, 128, 4],
    [128, 256, 14],
    [256, 512, 3],
  ];
  const units: UnitDef[] = [];
  for (const [inC, depth, n] of stages) {
    units.push({ inC, depth, stride: 2 });
    for (let i = 1; i < n; i++) units.push({ inC: depth, depth, stride: 1 });
  }
  return units;
})();

const SE_REDUCTION = 16;
const BN_EPS = 1e-5;

function bnKeys(spec: KeySpec, p: string, c: number): void {
  for (const s of ['weight', 'bias', 'running_mean', 'running_var']) spec.set(`${p}.${s}`, [c]);
}

/** Keys and shapes of the input layer and body (`input_layer.*`, `body.*`) under `prefix`. */
export function irse50BodyKeys(prefix = ''): KeySpec {
  const spec: KeySpec = new Map();
  spec.set(`${prefix}input_layer.0.weight`, [64, 3, 3, 3]);
  bnKeys(spec, `${prefix}input_layer.1`, 64);
  spec.set(`${prefix}input_layer.2.weight`, [64]);
  IRSE50_UNITS.forEach((u, i) => {
    const p = `${prefix}body.${i}`;
    if (u.inC !== u.depth) {
      spec.set(`${p}.shortcut_layer.0.weight`, [u.depth, u.inC, 1, 1]);
      bnKeys(spec, `${p}.shortcut_layer.1`, u.depth);
    }
    bnKeys(spec, `${p}.res_layer.0`, u.inC);
    spec.set(`${p}.res_layer.1.weight`, [u.depth, u.inC, 3, 3]);
    spec.set(`${p}.res_layer.2.weight`, [u.depth]);
    spec.set(`${p}.res_layer.3.weight`, [u.depth, u.depth, 3, 3]);
    bnKeys(spec, `${p}.res_layer.4`, u.depth);
    const r = u.depth / SE_REDUCTION;
    spec.set(`${p}.res_layer.5.fc1.weight`, [r, u.depth, 1, 1]);
    spec.set(`${p}.res_layer.5.fc2.weight`, [u.depth, r, 1, 1]);
  });
  return spec;
}

/** Graph-building context: the graph, the (validated) weights and the key prefix. */
export interface Ctx {
  g: E.Graph;
  w: WeightMap;
  prefix: string;
}

/**
 * Constants already made per graph, keyed by weight map + key + role. FALCO's step runs ArcFace twice
 * in one graph (generated and original face); sharing the initializers keeps one copy (~175 MB) instead
 * of two, lets the conv VJP's flipped-kernel cache hit, and reads each weight from a lazy map once.
 */
const constCache = new WeakMap<E.Graph, WeakMap<WeightMap, Map<string, E.Tensor>>>();

/** Memoise a constant derived from weight map `w` under `role` (which names the key) in graph `g`. */
export function cachedConstant(g: E.Graph, w: WeightMap, role: string, make: () => E.Tensor): E.Tensor {
  let byMap = constCache.get(g);
  if (!byMap) constCache.set(g, (byMap = new WeakMap()));
  let roles = byMap.get(w);
  if (!roles) byMap.set(w, (roles = new Map()));
  let t = roles.get(role);
  if (!t) roles.set(role, (t = make()));
  return t;
}

/** A frozen weight as a graph constant, named after its state-dict key (readable graphs, errors). */
export function param(c: Ctx, key: string, shape?: readonly number[]): E.Tensor {
  const full = c.prefix + key;
  return cachedConstant(c.g, c.w, `${full}[${shape?.join(',') ?? ''}]`, () => {
    const t = tensorF32(c.w, full);
    return c.g.constant(t.data, shape ?? t.shape, full);
  });
}

/**
 * PyTorch Linear (y = x·Wᵀ + b) with the transposed weight made once per graph (and optionally
 * scaled, for StyleGAN's equalized-lr EqualLinear: W·scale rounded to float32 as torch does).
 */
export function linear(c: Ctx, x: E.Tensor, key: string, scale = 1, bias = true): E.Tensor {
  const full = c.prefix + key;
  const wt = cachedConstant(c.g, c.w, `${full}.weight^T*${scale}`, () => {
    const { shape, data: w } = tensorF32(c.w, `${full}.weight`);
    const [out, inp] = shape as [number, number];
    const t = new Float32Array(out * inp);
    for (let o = 0; o < out; o++)
      for (let i = 0; i < inp; i++)
        t[i * out + o] = scale === 1 ? w[o * inp + i]! : Math.fround(w[o * inp + i]! * scale);
    return c.g.constant(t, [inp, out], `${full}.weight_T`);
  });
  const y = E.matmul(x, wt);
  return bias ? E.add(y, param(c, `${key}.bias`)) : y;
}

/**
 * BatchNorm (inference) folded to y = x·scale + shift, like the engine's `batchNorm` (float64 fold,
 * float32 constants), with the constants memoised per graph so repeated use of a network shares them.
 */
export function bn(c: Ctx, x: E.Tensor, key: string): E.Tensor {
  const k = c.prefix + key;
  const C = x.shape[1]!;
  const bshape = [C, ...Array<number>(x.rank - 2).fill(1)];
  const fold = (which: 'scale' | 'shift'): E.Tensor =>
    cachedConstant(c.g, c.w, `${k}#bn-${which}[${bshape.join(',')}]`, () => {
      const [w, b, m, v] = ['weight', 'bias', 'running_mean', 'running_var'].map((s) =>
        f32(c.w, `${k}.${s}`),
      ) as [Float32Array, Float32Array, Float32Array, Float32Array];
      if (m.length !== C) throw new E.ShapeError(`${k}: BatchNorm over ${m.length} channels applied to ${x}`);
      const out = new Float32Array(C);
      for (let i = 0; i < C; i++) {
        const s = w[i]! / Math.sqrt(v[i]! + BN_EPS);
        out[i] = which === 'scale' ? s : b[i]! - m[i]! * s;
      }
      return c.g.constant(out, bshape, `${k}.${which}`);
    });
  return E.add(E.mul(x, fold('scale')), fold('shift'));
}

function prelu(c: Ctx, x: E.Tensor, key: string): E.Tensor {
  const C = x.shape[1]!;
  return E.prelu(x, param(c, key, [C, 1, 1]));
}

/** Conv3x3(3→64) → BN → PReLU. */
export function inputLayer(c: Ctx, x: E.Tensor): E.Tensor {
  return c.g.scope('input_layer', () => {
    const y = E.conv2d(x, param(c, 'input_layer.0.weight'), undefined, { padding: 1 });
    return prelu(c, bn(c, y, 'input_layer.1'), 'input_layer.2.weight');
  });
}

function seModule(c: Ctx, x: E.Tensor, key: string): E.Tensor {
  // AdaptiveAvgPool2d(1) is a spatial mean; the two 1x1 convs act on a [N, C, 1, 1] tensor.
  let s = E.reduceMean(x, [2, 3], true);
  s = E.relu(E.conv2d(s, param(c, `${key}.fc1.weight`)));
  s = E.sigmoid(E.conv2d(s, param(c, `${key}.fc2.weight`)));
  return E.mul(x, s);
}

/** One `bottleneck_IR_SE` unit (`body.i`). */
export function irseUnit(c: Ctx, x: E.Tensor, i: number): E.Tensor {
  const u = IRSE50_UNITS[i]!;
  const p = `body.${i}`;
  return c.g.scope(p, () => {
    let shortcut: E.Tensor;
    if (u.inC === u.depth) {
      // MaxPool2d(kernel 1, stride s) takes every s-th pixel: a strided slice (identity for s = 1).
      shortcut =
        u.stride === 1 ? x : E.slice(x, [0, 0], [x.shape[2]!, x.shape[3]!], [2, 3], [u.stride, u.stride]);
    } else {
      shortcut = bn(
        c,
        E.conv2d(x, param(c, `${p}.shortcut_layer.0.weight`), undefined, { stride: u.stride }),
        `${p}.shortcut_layer.1`,
      );
    }
    let r = bn(c, x, `${p}.res_layer.0`);
    r = E.conv2d(r, param(c, `${p}.res_layer.1.weight`), undefined, { padding: 1 });
    r = prelu(c, r, `${p}.res_layer.2.weight`);
    r = E.conv2d(r, param(c, `${p}.res_layer.3.weight`), undefined, { padding: 1, stride: u.stride });
    r = bn(c, r, `${p}.res_layer.4`);
    r = seModule(c, r, `${p}.res_layer.5`);
    return E.add(r, shortcut);
  });
}

/**
 * Input layer + all 24 units. Returns the final feature map and the outputs of the units listed in
 * `taps` (e4e's FPN reads units 6, 20 and 23).
 */
export function irse50Body(
  c: Ctx,
  x: E.Tensor,
  taps: readonly number[] = [],
): { out: E.Tensor; taps: Map<number, E.Tensor> } {
  if (x.rank !== 4 || x.shape[1] !== 3)
    throw new E.ShapeError(`IR-SE50: expects an [N, 3, H, W] image, got ${x}`);
  let y = inputLayer(c, x);
  const tapped = new Map<number, E.Tensor>();
  for (let i = 0; i < IRSE50_UNITS.length; i++) {
    y = irseUnit(c, y, i);
    if (taps.includes(i)) tapped.set(i, y);
  }
  return { out: y, taps: tapped };
}
