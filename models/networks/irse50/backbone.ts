/**
 * The IR-SE body (IR-SE50 at full size) shared by ArcFace (`Backbone(112, 50, 'ir_se')`, the identity network of FALCO's ID
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
 *
 * The same code builds smaller bodies (the demo bundle's): `inferIrseArch` reads widths and depths off
 * the weight shapes, and validation then checks the complete key set of the inferred architecture, so
 * a full-size checkpoint is held to exactly the IR-SE50 key list.
 */
import * as E from '../../engine/index.js';
import { type KeySpec, type WeightMap, WeightsError, f32, shapeOf, tensorF32, vote } from './weights.js';

export interface UnitDef {
  inC: number;
  depth: number;
  stride: number;
  /** Width of the SE bottleneck (fc1 output channels): depth / 16 in the real network. */
  se: number;
}

/**
 * An IR-SE body: input-layer width and the unit list. A stage is a run of units opened by a stride-2
 * unit; `stageEnds[s]` is the index of the last unit of stage s (IR-SE50: 2, 6, 20, 23).
 */
export interface IrseArch {
  readonly inputC: number;
  readonly units: readonly UnitDef[];
  readonly stageEnds: readonly number[];
}

const SE_REDUCTION = 16;
const BN_EPS = 1e-5;
const seWidth = (depth: number): number => Math.max(1, Math.floor(depth / SE_REDUCTION));

function withStageEnds(inputC: number, units: UnitDef[]): IrseArch {
  const stageEnds: number[] = [];
  units.forEach((u, i) => {
    if (i > 0 && u.stride === 2) stageEnds.push(i - 1);
  });
  if (units.length) stageEnds.push(units.length - 1);
  return { inputC, units, stageEnds };
}

/**
 * Build an architecture from (inC, depth, units) stages as model_irse.py's `get_blocks` lists them:
 * the first unit of each stage has stride 2, the others stride 1 and in = depth.
 */
export function irseArchFromStages(
  stages: ReadonlyArray<readonly [inC: number, depth: number, units: number]>,
): IrseArch {
  const units: UnitDef[] = [];
  for (const [inC, depth, n] of stages) {
    units.push({ inC, depth, stride: 2, se: seWidth(depth) });
    for (let i = 1; i < n; i++) units.push({ inC: depth, depth, stride: 1, se: seWidth(depth) });
  }
  return withStageEnds(stages[0]?.[0] ?? 0, units);
}

/** IR-SE50: stages (64→64)×3, (64→128)×4, (128→256)×14, (256→512)×3. */
export const IRSE50: IrseArch = irseArchFromStages([
  [64, 64, 3],
  [64, 128, 4],
  [128, 256, 14],
  [256, 512, 3],
]);

/** The 24 units of IR-50: index i is `body.i` in the state dict. */
export const IRSE50_UNITS: readonly UnitDef[] = IRSE50.units;

const MAX_UNITS = 1024;
const BN_SUFFIXES = ['weight', 'bias', 'running_mean', 'running_var'] as const;

/** Dimension `dim` of `key`'s shape when the tensor exists with the expected rank. */
function dimOf(w: WeightMap, key: string, rank: number, dim: number): number | undefined {
  const s = shapeOf(w, key);
  return s && s.length === rank && s[dim]! > 0 ? s[dim] : undefined;
}

/** Every size-bearing reading of unit `p`'s depth (output channels), most telling first. */
function depthCandidates(w: WeightMap, p: string): Array<number | undefined> {
  return [
    dimOf(w, `${p}.res_layer.1.weight`, 4, 0),
    dimOf(w, `${p}.res_layer.3.weight`, 4, 0),
    dimOf(w, `${p}.res_layer.3.weight`, 4, 1),
    dimOf(w, `${p}.res_layer.2.weight`, 1, 0),
    ...BN_SUFFIXES.map((s) => dimOf(w, `${p}.res_layer.4.${s}`, 1, 0)),
    dimOf(w, `${p}.res_layer.5.fc1.weight`, 4, 1),
    dimOf(w, `${p}.res_layer.5.fc2.weight`, 4, 0),
    dimOf(w, `${p}.shortcut_layer.0.weight`, 4, 0),
    ...BN_SUFFIXES.map((s) => dimOf(w, `${p}.shortcut_layer.1.${s}`, 1, 0)),
  ];
}

/**
 * Infer the body's architecture from the shapes of `prefix`-ed keys (no tensor is materialised):
 * - input width: the input layer's conv/BN/PReLU sizes;
 * - units: `body.0 … body.(n−1)`, n = 1 + the largest i with a size-bearing `body.i` tensor;
 *   unit depth = the size most of its tensors agree on (res_layer.1's output channels first), so a
 *   single mis-shaped tensor is reported by validation rather than changing the architecture; a
 *   unit with no size-bearing tensor keeps the previous depth (its keys are then reported missing);
 * - inC = the previous unit's depth (the input width for unit 0); stride 2 on unit 0 and wherever
 *   the depth changes (the first unit of each `get_blocks` stage; true of IR-50/100/152);
 * - SE width: fc1's output channels (default depth / 16, at least 1).
 * Returns undefined when there is nothing to infer from (no input-layer and no body keys).
 */
export function inferIrseArch(w: WeightMap, prefix = ''): IrseArch | undefined {
  let n = 0;
  const indices = new Set<number>();
  const head = `${prefix}body.`;
  for (const k of w.keys()) {
    if (!k.startsWith(head)) continue;
    const m = /^(\d+)\./.exec(k.slice(head.length));
    if (m) indices.add(Number(m[1]));
  }
  for (const i of indices)
    if (i + 1 > n && depthCandidates(w, `${prefix}body.${i}`).some((d) => d !== undefined)) n = i + 1;
  // A stray huge index would otherwise make a million-unit spec; no IR-SE body comes near this.
  if (n > MAX_UNITS)
    throw new WeightsError(`IR-SE: ${prefix}body.${n - 1}.* implies ${n} units (more than ${MAX_UNITS})`);
  const inputC = vote([
    dimOf(w, `${prefix}input_layer.0.weight`, 4, 0),
    ...BN_SUFFIXES.map((s) => dimOf(w, `${prefix}input_layer.1.${s}`, 1, 0)),
    dimOf(w, `${prefix}input_layer.2.weight`, 1, 0),
  ]);
  if (n === 0 && inputC === undefined) return undefined;
  const c0 = inputC ?? vote([dimOf(w, `${prefix}body.0.res_layer.1.weight`, 4, 1)]) ?? IRSE50.inputC;
  const units: UnitDef[] = [];
  let prev = c0;
  for (let i = 0; i < n; i++) {
    const p = `${prefix}body.${i}`;
    const depth = vote(depthCandidates(w, p)) ?? prev;
    const se =
      vote([dimOf(w, `${p}.res_layer.5.fc1.weight`, 4, 0), dimOf(w, `${p}.res_layer.5.fc2.weight`, 4, 1)]) ??
      seWidth(depth);
    units.push({ inC: prev, depth, stride: i === 0 || depth !== prev ? 2 : 1, se });
    prev = depth;
  }
  return withStageEnds(c0, units);
}

/** Same input width and unit list. */
export const sameIrseArch = (a: IrseArch, b: IrseArch): boolean =>
  a.inputC === b.inputC &&
  a.units.length === b.units.length &&
  a.units.every((u, i) => {
    const v = b.units[i]!;
    return u.inC === v.inC && u.depth === v.depth && u.stride === v.stride && u.se === v.se;
  });

/** "IR-SE50", or e.g. "IR-SE (4 units, stages 16/32/64/128)" for another body. */
export function describeIrse(a: IrseArch): string {
  if (sameIrseArch(a, IRSE50)) return 'IR-SE50';
  const depths = a.stageEnds.map((e) => a.units[e]!.depth).join('/');
  return `IR-SE (input ${a.inputC}, ${a.units.length} units, stage depths ${depths})`;
}

/** Side of the body's output for an input of side `size` (each stride-2 unit: ⌈s/2⌉). */
export const irseOutputSide = (a: IrseArch, size: number): number =>
  a.units.reduce((s, u) => (u.stride === 2 ? Math.ceil(s / 2) : s), size);

function bnKeys(spec: KeySpec, p: string, c: number): void {
  for (const s of BN_SUFFIXES) spec.set(`${p}.${s}`, [c]);
}

/** Keys and shapes of the input layer and body (`input_layer.*`, `body.*`) of `arch` under `prefix`. */
export function irseBodyKeys(arch: IrseArch, prefix = ''): KeySpec {
  const spec: KeySpec = new Map();
  spec.set(`${prefix}input_layer.0.weight`, [arch.inputC, 3, 3, 3]);
  bnKeys(spec, `${prefix}input_layer.1`, arch.inputC);
  spec.set(`${prefix}input_layer.2.weight`, [arch.inputC]);
  arch.units.forEach((u, i) => {
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
    spec.set(`${p}.res_layer.5.fc1.weight`, [u.se, u.depth, 1, 1]);
    spec.set(`${p}.res_layer.5.fc2.weight`, [u.depth, u.se, 1, 1]);
  });
  return spec;
}

/** Keys and shapes of the full-size IR-SE50 input layer and body under `prefix`. */
export const irse50BodyKeys = (prefix = ''): KeySpec => irseBodyKeys(IRSE50, prefix);

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

/** Conv3x3(3→C) → BN → PReLU. */
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
export function irseUnit(c: Ctx, x: E.Tensor, i: number, u: UnitDef): E.Tensor {
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
 * Input layer + every unit of `arch` (weights already validated against `irseBodyKeys(arch)`).
 * Returns the final feature map and the outputs of the units listed in `taps` (e4e's FPN reads the
 * last unit of stages 1, 2 and 3: units 6, 20 and 23 of IR-SE50).
 */
export function irseBody(
  c: Ctx,
  arch: IrseArch,
  x: E.Tensor,
  taps: readonly number[] = [],
): { out: E.Tensor; taps: Map<number, E.Tensor> } {
  if (x.rank !== 4 || x.shape[1] !== 3)
    throw new E.ShapeError(`${describeIrse(arch)}: expects an [N, 3, H, W] image, got ${x}`);
  let y = inputLayer(c, x);
  const tapped = new Map<number, E.Tensor>();
  arch.units.forEach((u, i) => {
    y = irseUnit(c, y, i, u);
    if (taps.includes(i)) tapped.set(i, y);
  });
  return { out: y, taps: tapped };
}
